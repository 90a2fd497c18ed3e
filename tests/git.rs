//! Ferry's git adapter and fetch step against a real git server: the e2e cluster's
//! `gitserver` (a front for `git http-backend`) on loopback, fed by the `git` command line.
//!
//! Needs `git` and `go` on the PATH; the server is built once per test binary.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::adapters::git::{self, Credentials, GitError, GixRemote, Remote, RemoteRefs};
use ferry::build::fetch;

const TIMEOUT: Duration = Duration::from_secs(10);

#[path = "support/gitserver.rs"]
mod gitserver;
#[path = "support/hosts.rs"]
mod hosts;
use gitserver::{GitServer, TempDir, WorkingCopy, free_port};
use hosts::silent_host;

/// The repository at `url`, with `credentials`, sent over plain `http://` only if `insecure`.
fn at<'a>(url: &'a str, credentials: Option<&'a Credentials>, insecure: bool) -> Remote<'a> {
    Remote {
        url,
        credentials,
        insecure,
    }
}

async fn head(url: &str, branch: &str) -> Result<git::BranchHead, GitError> {
    GixRemote::new(TIMEOUT, git::CONCURRENT_LISTINGS)
        .head(at(url, None, false), branch)
        .await
}

#[tokio::test]
async fn the_branch_head_is_seen_and_a_new_commit_after_a_push() {
    let server = GitServer::start(None);
    let work = WorkingCopy::new();
    let first = work.commit("first", "a.txt", "1");
    work.push(&server.url("app"), "main");
    let seen = head(&server.url("app"), "main").await.unwrap();
    assert_eq!(seen.commit, first);
    assert!(seen.tags.is_empty(), "{seen:?}");

    let second = work.commit("second", "a.txt", "2");
    work.push(&server.url("app"), "main");
    let seen = head(&server.url("app"), "main").await.unwrap();
    assert_eq!(seen.commit, second, "the new commit must be seen");
}

#[tokio::test]
async fn tags_on_the_head_are_listed_and_tags_elsewhere_are_not() {
    let server = GitServer::start(None);
    let work = WorkingCopy::new();
    work.commit("old", "a.txt", "1");
    work.git(&["tag", "v0.9.0"]);
    work.git(&["tag", "-a", "v0.9.1", "-m", "annotated, old"]);
    let tip = work.commit("new", "a.txt", "2");
    work.git(&["tag", "v1.2.0"]);
    work.git(&["tag", "-a", "v1.2.0-annotated", "-m", "annotated"]);
    work.push(&server.url("app"), "main");
    work.push(&server.url("app"), "--tags");
    // Another branch with a tag of its own: neither is the head of main.
    work.git(&["checkout", "--quiet", "-b", "feature"]);
    work.commit("feature", "b.txt", "x");
    work.git(&["tag", "v2.0.0"]);
    work.push(&server.url("app"), "feature");
    work.push(&server.url("app"), "--tags");

    let seen = head(&server.url("app"), "main").await.unwrap();
    assert_eq!(
        seen,
        git::BranchHead {
            commit: tip,
            tags: vec!["v1.2.0".into(), "v1.2.0-annotated".into()],
        }
    );
}

#[tokio::test]
async fn an_unreachable_server_a_missing_repository_and_a_missing_branch_have_their_categories() {
    let nobody = format!("http://127.0.0.1:{}/app.git", free_port());
    let error = head(&nobody, "main").await.unwrap_err();
    assert_eq!(error.category(), "RepositoryUnreachable", "{error}");
    assert!(error.is_transient());

    let server = GitServer::start(None);
    let error = head(&server.url("missing"), "main").await.unwrap_err();
    assert_eq!(error.category(), "NotAGitRepository", "{error}");

    let work = WorkingCopy::new();
    work.commit("first", "a.txt", "1");
    work.push(&server.url("app"), "main");
    let error = head(&server.url("app"), "release").await.unwrap_err();
    assert_eq!(error.category(), "BranchNotFound", "{error}");
    assert!(error.to_string().contains("release"), "{error}");

    let error = head("git@github.com:org/app.git", "main")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "InvalidRepositoryUrl", "{error}");
}

/// The test git server speaks plain http: credentials go to it only with `insecure`.
#[tokio::test]
async fn a_server_requiring_credentials_refuses_wrong_ones_without_the_password_in_the_message() {
    let server = GitServer::start(Some("ci:right-password"));
    let work = WorkingCopy::new();
    let tip = work.commit("first", "a.txt", "1");
    work.push(&server.url_as("app", "ci:right-password"), "main");
    let remote = GixRemote::new(TIMEOUT, git::CONCURRENT_LISTINGS);

    let wrong = Credentials::new("ci", "wrong-password-4711");
    let error = remote
        .head(at(&server.url("app"), Some(&wrong), true), "main")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "AuthenticationRefused", "{error}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("wrong-password-4711"), "{shown}");

    let error = remote
        .head(at(&server.url("app"), None, false), "main")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "AuthenticationRefused", "{error}");
    assert!(
        error.to_string().contains("requires credentials"),
        "{error}"
    );

    // A password in the URL itself is not shown either.
    let error = remote
        .head(
            at(&server.url_as("app", "ci:url-password-0815"), None, true),
            "main",
        )
        .await
        .unwrap_err();
    assert_eq!(error.category(), "AuthenticationRefused", "{error}");
    assert!(!format!("{error} {error:?}").contains("url-password-0815"));

    let right = Credentials::new("ci", "right-password");
    let seen = remote
        .head(at(&server.url("app"), Some(&right), true), "main")
        .await
        .unwrap();
    assert_eq!(seen.commit, tip);
}

/// A loopback port that records the head of every request made to it and answers none: it
/// shows what a client sent, or that it sent nothing.
struct Witness {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Witness {
    /// Asserts that a request carried HTTP basic credentials.
    fn saw_basic_auth(&self) {
        let requests = self.requests();
        assert!(
            requests
                .iter()
                .any(|r| r.to_ascii_lowercase().contains("authorization: basic")),
            "{requests:?}"
        );
    }

    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // Lives as long as the test process; it only ever reads.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    head.extend_from_slice(&buffer[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
            }
        });
        Self { port, requests }
    }

    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}/app.git", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn credentials_go_over_plain_http_only_when_the_source_says_insecure() {
    let server = GitServer::start(Some("ci:pw-in-clear-2718"));
    let work = WorkingCopy::new();
    let tip = work.commit("first", "a.txt", "1");
    work.git(&["tag", "v1.0.0"]);
    work.push(&server.url_as("app", "ci:pw-in-clear-2718"), "main");
    work.push(&server.url_as("app", "ci:pw-in-clear-2718"), "--tags");
    let remote = GixRemote::new(TIMEOUT, git::CONCURRENT_LISTINGS);
    let right = Credentials::new("ci", "pw-in-clear-2718");

    // The right credentials for a server that wants them, but over plain http: refused,
    // by the branch look-up and by the tag look-up alike.
    let url = server.url("app");
    let error = remote
        .head(at(&url, Some(&right), false), "main")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "CredentialsInClear", "{error}");
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("spec.source.insecure"),
        "{error}"
    );
    let error = remote
        .tags_at(at(&url, Some(&right), false), &tip)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "CredentialsInClear", "{error}");
    let in_url = server.url_as("app", "ci:pw-in-clear-2718");
    let error = remote
        .head(at(&in_url, None, false), "main")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "CredentialsInClear", "{error}");
    assert!(!format!("{error} {error:?}").contains("pw-in-clear-2718"));

    // With the source's consent they are sent, and the server answers.
    let seen = remote
        .head(at(&url, Some(&right), true), "main")
        .await
        .unwrap();
    assert_eq!(seen.commit, tip);
    let tags = remote
        .tags_at(at(&url, Some(&right), true), &tip)
        .await
        .unwrap();
    assert_eq!(tags, ["v1.0.0"]);

    // Refused means nothing reached the network: not a connection, let alone the password.
    let witness = Witness::start();
    for (url, credentials) in [
        (witness.url(""), Some(&right)),
        (witness.url("ci:pw-in-clear-2718@"), None),
    ] {
        let error = remote
            .head(at(&url, credentials, false), "main")
            .await
            .unwrap_err();
        assert_eq!(error.category(), "CredentialsInClear", "{error}");
    }
    assert_eq!(witness.requests(), Vec::<String>::new());
    // The witness does see what is sent: with `insecure`, the credentials go with the first
    // request.
    remote
        .head(at(&witness.url(""), Some(&right), true), "main")
        .await
        .unwrap_err();
    witness.saw_basic_auth();
}

#[test]
fn the_fetch_step_sends_credentials_over_plain_http_only_with_insecure() {
    let witness = Witness::start();
    let dest = TempDir::new("checkout");
    let credentials = Credentials::new("ci", "pw-in-clear-2718");
    let url = witness.url("");
    let commit = "1234567890123456789012345678901234567890";
    let checkout = dest.0.join("src");
    let request = fetch::Request {
        insecure: false,
        ..fetch_request(&url, commit, &checkout, Some(&credentials), None)
    };
    let error = fetch::fetch(&request).unwrap_err();
    assert_eq!(error.category(), "CredentialsInClear", "{error}");
    assert_eq!(witness.requests(), Vec::<String>::new());
    assert!(
        !checkout.exists(),
        "nothing was prepared for a refused fetch"
    );

    // Through the command line, as the build pod runs it, without `--insecure`.
    let credentials_dir = TempDir::new("credentials");
    std::fs::write(credentials_dir.0.join("username"), "ci\n").unwrap();
    std::fs::write(credentials_dir.0.join("password"), "pw-in-clear-2718\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["build", "fetch"])
        .arg(format!("--url={url}"))
        .arg(format!("--commit={commit}"))
        .arg(format!("--dest={}", dest.0.join("cli").display()))
        .arg(format!("--credentials={}", credentials_dir.0.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CredentialsInClear"), "{stderr}");
    assert!(!stderr.contains("pw-in-clear-2718"), "{stderr}");
    assert_eq!(witness.requests(), Vec::<String>::new());

    // With the source's consent the request goes out, credentials included.
    let request = fetch::Request {
        insecure: true,
        dest: &dest.0.join("insecure"),
        ..request
    };
    fetch::fetch(&request).unwrap_err();
    witness.saw_basic_auth();
}

fn fetch_request<'a>(
    url: &'a str,
    commit: &'a str,
    dest: &'a Path,
    credentials: Option<&'a Credentials>,
    since: Option<&'a str>,
) -> fetch::Request<'a> {
    fetch::Request {
        url,
        commit,
        dest,
        credentials,
        // The test git server speaks plain http.
        insecure: credentials.is_some(),
        since,
        timeout: TIMEOUT,
    }
}

#[test]
fn fetch_checks_out_exactly_the_commit_asked_for() {
    let server = GitServer::start(None);
    let work = WorkingCopy::new();
    let first = work.commit("first", "app.txt", "version one\n");
    work.commit("second", "app.txt", "version two\n");
    work.push(&server.url("app"), "main");

    // Not the branch head: fetched by its id.
    let dest = TempDir::new("checkout");
    let checkout = dest.0.join("src");
    let url = server.url("app");
    let fetched = fetch::fetch(&fetch_request(&url, &first, &checkout, None, None)).unwrap();
    assert_eq!(fetched.commit, first);
    assert_eq!(
        std::fs::read_to_string(checkout.join("app.txt")).unwrap(),
        "version one\n"
    );
    assert_eq!(fetched.messages, vec!["first".to_owned()]);
    // The checkout is a git repository at that commit, with nothing changed.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&checkout)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(git(&["rev-parse", "HEAD"]), first);
    assert_eq!(git(&["status", "--porcelain"]), "");
}

#[test]
fn fetch_refuses_a_commit_that_does_not_exist_and_a_busy_destination() {
    let server = GitServer::start(None);
    let work = WorkingCopy::new();
    work.commit("first", "app.txt", "1");
    work.push(&server.url("app"), "main");
    let url = server.url("app");

    let dest = TempDir::new("checkout");
    let missing = "1234567890123456789012345678901234567890";
    let error =
        fetch::fetch(&fetch_request(&url, missing, &dest.0.join("a"), None, None)).unwrap_err();
    assert_eq!(error.category(), "CommitNotFound", "{error}");

    std::fs::write(dest.0.join("occupied"), "x").unwrap();
    let head = work.git(&["rev-parse", "HEAD"]);
    let error = fetch::fetch(&fetch_request(&url, &head, &dest.0, None, None)).unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");

    let error =
        fetch::fetch(&fetch_request(&url, "main", &dest.0.join("b"), None, None)).unwrap_err();
    assert!(error.to_string().contains("40 hex digits"), "{error}");
}

#[test]
fn fetch_reports_the_work_items_since_the_previous_release() {
    let server = GitServer::start(Some("ci:pw-for-fetch"));
    let work = WorkingCopy::new();
    work.commit("PROJ-1 before the previous release", "a.txt", "0");
    let previous = work.commit("released #1", "a.txt", "1");
    work.commit("Fix #12", "a.txt", "2");
    let tip = work.commit("PROJ-7: add a page", "a.txt", "3");
    work.push(&server.url_as("app", "ci:pw-for-fetch"), "main");

    let dest = TempDir::new("checkout");
    let credentials_dir = TempDir::new("credentials");
    std::fs::write(credentials_dir.0.join("username"), "ci\n").unwrap();
    std::fs::write(credentials_dir.0.join("password"), "pw-for-fetch\n").unwrap();
    let report = dest.0.join("report.json");
    let checkout = dest.0.join("src");
    // Through the command line, as the build pod runs it.
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["build", "fetch"])
        .arg(format!("--url={}", server.url("app")))
        .arg(format!("--commit={tip}"))
        .arg(format!("--dest={}", checkout.display()))
        .arg(format!("--credentials={}", credentials_dir.0.display()))
        .arg("--insecure")
        .arg(format!("--since={previous}"))
        .arg(format!("--report={}", report.display()))
        .env_remove("HOME")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: fetch::Report =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report,
        fetch::Report {
            commit: tip.clone(),
            work_items: vec!["#12".into(), "PROJ-7".into()],
            history_complete: true,
        }
    );

    // Wrong credentials: one line on stderr naming the category, no password, exit 1.
    std::fs::write(credentials_dir.0.join("password"), "not-the-pw-31337\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["build", "fetch"])
        .arg(format!("--url={}", server.url("app")))
        .arg(format!("--commit={tip}"))
        .arg(format!("--dest={}", dest.0.join("again").display()))
        .arg(format!("--credentials={}", credentials_dir.0.display()))
        .arg("--insecure")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("AuthenticationRefused"), "{stderr}");
    assert!(!stderr.contains("not-the-pw-31337"), "{stderr}");
}

/// A host that never answers ties up at most `CONCURRENT_LISTINGS` listings, threads and
/// connections at once, however many Applications ask; the others wait for a turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_a_host_that_never_answers_are_bounded() {
    let (url, accepted) = silent_host();
    let remote = GixRemote::new(Duration::from_secs(2), 2);
    let listings: Vec<_> = (0..6)
        .map(|_| {
            let (remote, url) = (remote.clone(), url.clone());
            tokio::spawn(async move { remote.head(at(&url, None, false), "main").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let open = accepted.lock().unwrap().len();
    println!(
        "measured: connections to a silent git host with 6 listings asked, 2 allowed = {open}"
    );
    assert_eq!(open, 2, "only two listings may run at once");
    for listing in listings {
        let outcome = listing.await.unwrap();
        assert!(
            matches!(outcome, Err(GitError::Unreachable { .. })),
            "{outcome:?}"
        );
    }
    // Every listing had its turn in the end.
    assert!(accepted.lock().unwrap().len() >= 6);
}

/// A host that never answers takes at most its share of the turns: another host's listings
/// still run while it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_answers_does_not_starve_the_others() {
    let (down, at_down) = silent_host();
    let (other, at_other) = silent_host();
    let remote = GixRemote::new(Duration::from_secs(2), 100).per_host(2);
    let listings: Vec<_> = [&down; 6]
        .into_iter()
        .chain([&other; 2])
        .map(|url| {
            let (remote, url) = (remote.clone(), url.clone());
            tokio::spawn(async move { remote.head(at(&url, None, false), "main").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (down_open, other_open) = (
        at_down.lock().unwrap().len(),
        at_other.lock().unwrap().len(),
    );
    println!(
        "measured: connections to a down host / another host, 6 and 2 listings, 2 per host = {down_open} / {other_open}"
    );
    assert_eq!((down_open, other_open), (2, 2));
    for listing in listings {
        listing.await.unwrap().unwrap_err();
    }
}
