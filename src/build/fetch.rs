//! `ferry build fetch`: the build pod's first step. Checks one commit out into the shared
//! workspace, with gitoxide, and reports the work items of the commits since the previous
//! Release.
//!
//! The commit is fetched by its id at depth 1: git's HTTP backend serves any commit reachable
//! from a ref to protocol v2 clients. A server that refuses (protocol v0 without
//! `uploadpack.allowReachableSHA1InWant`) gets a second, full fetch of its branches and tags.
//! Either way the checkout is verified: `HEAD` must be the commit asked for, or the step fails.
//!
//! Release notes need the messages of the commits after the previous Release's commit
//! (`--since`). A ref listing cannot give them, and the controller should not download
//! repositories, so this step, which downloads the objects anyway, fetches up to
//! [`HISTORY_DEPTH`] commits of history when `--since` is given, extracts the work items with
//! [`crate::decide::build::work_items::referenced`] and writes them as JSON to `--report`
//! (the container's termination message, `/dev/termination-log`, which the controller reads
//! from the pod status; bounded to the kubelet's 4 KiB).
//!
//! It runs as an unprivileged user with a read-only root filesystem and no usable `HOME`:
//! the repository is opened isolated from the environment and from global and system git
//! configuration, and credentials come only from `--credentials` (a mounted basic-auth
//! Secret), never from credential helpers or prompts. They are sent over `https://`, and over
//! plain `http://` only with `--insecure` (the source's `insecure`); otherwise the step fails
//! before connecting.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gix::bstr::ByteSlice;

use crate::adapters::git::{
    Credentials, ErrorContext, GitError, parse_http_url, refuse_address, refuse_credential_prompts,
    refuse_credentials_in_clear, transport_options,
};

/// How long one HTTP request of the fetch may take, the pack download included. The build's
/// own deadline bounds the whole step.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// How many commits of history are fetched to find the previous Release's commit.
pub const HISTORY_DEPTH: u32 = 100;
/// The kubelet keeps at most this much of a termination message.
pub const REPORT_LIMIT: usize = 4096;

/// What to fetch, and where.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The commit's full id, 40 hex digits.
    pub commit: &'a str,
    /// An empty or missing directory that becomes the checkout (with its `.git`).
    pub dest: &'a Path,
    pub credentials: Option<&'a Credentials>,
    /// Whether credentials may go over plain `http://` (the source's `insecure`).
    pub insecure: bool,
    /// The previous Release's commit: messages are collected after it, up to `commit`.
    pub since: Option<&'a str>,
    pub timeout: Duration,
}

/// What the fetch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The commit checked out, as read back from `HEAD`.
    pub commit: String,
    /// Messages of the commits after `since` up to and including `commit`, oldest first (as
    /// `work_items::referenced` takes them); only `commit`'s own message without `since`.
    pub messages: Vec<String>,
    /// False when `since` was not met within the history fetched (it is older than
    /// [`HISTORY_DEPTH`] commits, or not an ancestor at all).
    pub history_complete: bool,
}

/// The report the controller reads from the fetch step's termination message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub commit: String,
    pub work_items: Vec<String>,
    pub history_complete: bool,
}

impl Report {
    pub fn new(fetched: &Fetched) -> Self {
        Self {
            commit: fetched.commit.clone(),
            work_items: crate::decide::build::work_items::referenced(
                fetched.messages.iter().map(String::as_str),
            ),
            history_complete: fetched.history_complete,
        }
    }

    /// JSON of at most [`REPORT_LIMIT`] bytes: work items are dropped from the end until it fits.
    pub fn to_json(&self) -> String {
        let mut report = self.clone();
        loop {
            let json = serde_json::to_string(&report).unwrap_or_default();
            if json.len() <= REPORT_LIMIT || report.work_items.is_empty() {
                return json;
            }
            report.work_items.pop();
        }
    }
}

/// Fetches `request.commit` and checks it out into `request.dest`.
pub fn fetch(request: &Request<'_>) -> Result<Fetched, GitError> {
    let context = ErrorContext::new(request.url, request.credentials);
    let checkout_error = |cause: String| GitError::Checkout {
        commit: request.commit.to_owned(),
        dest: request.dest.display().to_string(),
        cause: context.scrub(&cause),
    };
    let parsed = parse_http_url(request.url)?;
    refuse_credentials_in_clear(&parsed, &context, request.insecure)?;
    refuse_address(request.url)?;
    let id = parse_commit(request.commit).map_err(|e| checkout_error(e.to_owned()))?;
    let since = request
        .since
        .map(parse_commit)
        .transpose()
        .map_err(|e| checkout_error(format!("--since: {e}")))?;
    prepare_destination(request.dest).map_err(checkout_error)?;

    let repo = gix::ThreadSafeRepository::init_opts(
        request.dest,
        gix::create::Kind::WithWorktree,
        gix::create::Options::default(),
        // No ~/.gitconfig, /etc/gitconfig or GIT_* variables: the step's environment is not
        // the user's, and HOME may be unset or read-only.
        // The reflog of HEAD needs a committer; there is no user to take it from.
        gix::open::Options::isolated()
            .config_overrides(["user.name=Ferry", "user.email=ferry@ferry.invalid"]),
    )
    .map_err(|e| checkout_error(context.describe(&e)))?
    .to_thread_local();

    let depth = match since {
        Some(since) if since != id => HISTORY_DEPTH,
        _ => 1,
    };
    let by_id = fetch_into(
        &repo,
        request,
        &context,
        &[request.commit.to_owned()],
        gix::remote::fetch::Shallow::DepthAtRemote(
            std::num::NonZeroU32::new(depth).unwrap_or(std::num::NonZeroU32::MIN),
        ),
    );
    match by_id {
        Ok(()) => {}
        // The server is there and speaks git but would not send the commit by its id: fetch
        // what it advertises and look for the commit there.
        Err(GitError::Protocol { .. }) => {
            fetch_into(
                &repo,
                request,
                &context,
                &[
                    "+refs/heads/*:refs/remotes/origin/*".to_owned(),
                    "+refs/tags/*:refs/tags/*".to_owned(),
                ],
                gix::remote::fetch::Shallow::NoChange,
            )?;
        }
        Err(other) => return Err(other),
    }

    let not_found = || GitError::CommitNotFound {
        url: context.url().to_owned(),
        commit: request.commit.to_owned(),
    };
    let commit = repo.find_commit(id).map_err(|_| not_found())?;
    let tree = commit
        .tree_id()
        .map_err(|e| checkout_error(context.describe(&e)))?;
    check_out(&repo, tree.detach()).map_err(|e| checkout_error(context.describe(&e)))?;
    repo.reference(
        "HEAD",
        id,
        gix::refs::transaction::PreviousValue::Any,
        format!("ferry: checkout {id}"),
    )
    .map_err(|e| checkout_error(context.describe(&e)))?;

    // Read back what was checked out rather than trusting the steps above.
    let head = repo
        .head_id()
        .map_err(|e| checkout_error(context.describe(&e)))?
        .detach();
    if head != id {
        return Err(checkout_error(format!(
            "HEAD is {head} after the checkout, not the commit asked for"
        )));
    }
    let (messages, history_complete) = messages_since(&repo, id, since);
    Ok(Fetched {
        commit: head.to_string(),
        messages,
        history_complete,
    })
}

fn parse_commit(commit: &str) -> Result<gix::ObjectId, &'static str> {
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a commit is given by its full id, 40 hex digits");
    }
    gix::ObjectId::from_hex(commit.to_ascii_lowercase().as_bytes())
        .map_err(|_| "a commit is given by its full id, 40 hex digits")
}

fn prepare_destination(dest: &Path) -> Result<(), String> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err("the destination is not empty".to_owned());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| format!("cannot create the destination: {e}"))
        }
        Err(e) => Err(format!("cannot read the destination: {e}")),
    }
}

fn fetch_into(
    repo: &gix::Repository,
    request: &Request<'_>,
    context: &ErrorContext,
    refspecs: &[String],
    shallow: gix::remote::fetch::Shallow,
) -> Result<(), GitError> {
    let remote = repo
        .remote_at(request.url)
        .and_then(|r| {
            r.with_refspecs(
                refspecs.iter().map(String::as_str),
                gix::remote::Direction::Fetch,
            )
        })
        .map_err(|e| context.classify(&e))?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let mut connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| context.classify(&e))?;
    if let Some(credentials) = request.credentials {
        connection
            .transport_mut()
            .set_identity(credentials.account())
            .map_err(|e| context.protocol(&e))?;
    }
    let interrupt = AtomicBool::new(false);
    connection
        .with_credentials(refuse_credential_prompts)
        .with_transport_options(Box::new(transport_options(request.timeout)))
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| context.classify(&e))?
        .with_shallow(shallow)
        .receive(gix::progress::Discard, &interrupt)
        .map_err(|e| context.classify(&e))?;
    Ok(())
}

/// Writes the tree's files into the work tree and the matching index, so that `git status` in
/// the checkout is clean (builds that run `git describe` or check for changes rely on it).
fn check_out(repo: &gix::Repository, tree: gix::ObjectId) -> gix::Result<()> {
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| gix::Error::from_error(std::io::Error::other("no work tree")))?;
    let mut index = repo.index_from_tree(&tree)?;
    let mut options =
        repo.checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?;
    options.destination_is_initially_empty = true;
    let interrupt = AtomicBool::new(false);
    let outcome = gix::worktree::state::checkout(
        &mut index,
        workdir,
        repo.objects
            .clone()
            .into_arc()
            .map_err(gix::Error::from_error)?,
        &gix::progress::Discard,
        &gix::progress::Discard,
        &interrupt,
        options,
    )?;
    if let Some(error) = outcome.errors.first() {
        return Err(gix::Error::from_error(std::io::Error::other(format!(
            "{} files could not be written, the first is {}: {}",
            outcome.errors.len(),
            error.path,
            error.error
        ))));
    }
    if let Some(collision) = outcome.collisions.first() {
        return Err(gix::Error::from_error(std::io::Error::other(format!(
            "{} paths collide on this filesystem, the first is {}",
            outcome.collisions.len(),
            collision.path
        ))));
    }
    index.write(Default::default())?;
    Ok(())
}

/// Messages from `id` back to (not including) `since`, oldest first, at most
/// [`HISTORY_DEPTH`]; whether `since` was met. Without `since`, only `id`'s own message.
fn messages_since(
    repo: &gix::Repository,
    id: gix::ObjectId,
    since: Option<gix::ObjectId>,
) -> (Vec<String>, bool) {
    let message = |commit: &gix::Commit<'_>| {
        commit
            .message_raw_sloppy()
            .to_str_lossy()
            .trim_end()
            .to_owned()
    };
    let Some(since) = since else {
        let own = repo.find_commit(id).map(|c| vec![message(&c)]);
        return (own.unwrap_or_default(), true);
    };
    let (mut messages, complete) = newest_first_since(repo, id, since, message);
    messages.reverse();
    (messages, complete)
}

fn newest_first_since(
    repo: &gix::Repository,
    id: gix::ObjectId,
    since: gix::ObjectId,
    message: impl Fn(&gix::Commit<'_>) -> String,
) -> (Vec<String>, bool) {
    let mut messages = Vec::new();
    let Ok(walk) = repo.rev_walk([id]).all() else {
        return (messages, false);
    };
    for info in walk {
        // The walk ends with an error where the shallow history ends.
        let Ok(info) = info else {
            return (messages, false);
        };
        if info.id == since {
            return (messages, true);
        }
        if messages.len() >= HISTORY_DEPTH as usize {
            return (messages, false);
        }
        match info.object() {
            Ok(commit) => messages.push(message(&commit)),
            Err(_) => return (messages, false),
        }
    }
    // The whole history was walked without meeting `since`: it is not an ancestor.
    (messages, false)
}

/// The command line of the step: `ferry build fetch --url --commit --dest [--credentials]
/// [--insecure] [--since] [--report]`. Returns one line saying what went wrong.
pub fn run(
    url: &str,
    commit: &str,
    dest: &Path,
    (credentials, insecure): (Option<&Path>, bool),
    since: Option<&str>,
    report: Option<&Path>,
) -> Result<Fetched, String> {
    let credentials = credentials
        .map(Credentials::from_dir)
        .transpose()
        .map_err(|e| format!("cannot read the git credentials: {e}"))?;
    let fetched = fetch(&Request {
        url,
        commit,
        dest,
        credentials: credentials.as_ref(),
        insecure,
        since,
        timeout: FETCH_TIMEOUT,
    })
    .map_err(|e| format!("{}: {e}", e.category()))?;
    if let Some(path) = report {
        write_report(path, &Report::new(&fetched))?;
    }
    Ok(fetched)
}

fn write_report(path: &Path, report: &Report) -> Result<(), String> {
    std::fs::write(path, report.to_json()).map_err(|e| {
        format!(
            "cannot write the report to {}: {e}",
            PathBuf::from(path).display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_full_hex_ids() {
        assert!(parse_commit("0123456789abcdef0123456789ABCDEF01234567").is_ok());
        for bad in [
            "",
            "abc123",
            "main",
            "0123456789abcdef0123456789abcdef0123456g",
        ] {
            assert!(parse_commit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_report_fits_a_termination_message() {
        let report = Report {
            commit: "a".repeat(40),
            work_items: (0..1000).map(|i| format!("PROJECT-{i:06}")).collect(),
            history_complete: true,
        };
        let json = report.to_json();
        assert!(json.len() <= REPORT_LIMIT, "{}", json.len());
        let back: Report = serde_json::from_str(&json).unwrap();
        assert!(back.work_items.len() > 100 && back.work_items[0] == "PROJECT-000000");
    }

    #[test]
    fn the_report_carries_work_items_of_the_messages() {
        let fetched = Fetched {
            commit: "c".repeat(40),
            messages: vec!["Fix #12".into(), "PROJ-7: add the page".into()],
            history_complete: true,
        };
        let report = Report::new(&fetched);
        assert_eq!(
            report.work_items,
            vec!["#12".to_owned(), "PROJ-7".to_owned()]
        );
        assert!(report.to_json().contains("\"workItems\""));
    }
}
