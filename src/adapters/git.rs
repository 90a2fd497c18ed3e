//! Git over smart HTTP(S), with gitoxide: what a branch points at, without cloning.
//!
//! [`RemoteRefs::head`] asks the server for its ref advertisement (protocol v2 `ls-refs`, or
//! the v0/v1 advertisement an older server sends) restricted to `refs/heads/<branch>` and
//! `refs/tags/`, and returns the branch's commit with the tags that point at it (annotated tags
//! peeled to their commit). No objects are downloaded and nothing is written to disk, so the
//! controller can poll with a read-only root filesystem.
//!
//! Commit messages need objects, which a ref advertisement does not carry; the build pod's
//! fetch step has them and reports the work items it finds (`crate::build::fetch`), so the
//! controller never downloads a repository.
//!
//! Every request has a timeout. Credentials are sent as HTTP basic authentication over
//! `https://`, and over plain `http://` only when the source says `insecure` (an in-cluster
//! server): otherwise the request is refused before any connection
//! ([`GitError::CredentialsInClear`]). They never appear in an error message: errors name the
//! URL without its user information, and every message is scrubbed of the password before it
//! leaves this module.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use futures::future::BoxFuture;
use gix::bstr::{BStr, ByteSlice};
use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::TransportWithoutIO;
use gix::protocol::transport::client::blocking_io::http;

use crate::api::reasons::{
    ADDRESS_REFUSED, AUTHENTICATION_REFUSED, BRANCH_NOT_FOUND, CREDENTIALS_IN_CLEAR,
    GIT_PROTOCOL_ERROR, INVALID_REPOSITORY_URL, NOT_A_GIT_REPOSITORY, REPOSITORY_UNREACHABLE,
    Reason,
};
use crate::api::shared::url_has_user;

/// How long one HTTP request of a ref listing may take, connection included.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(20);
/// How many listings run at once, whatever the number of Applications: each holds a thread of
/// tokio's blocking pool (gitoxide speaks git over blocking I/O) until its requests end, even
/// when the caller gave up on it; their requests share one HTTP client (`git_http`). More wait
/// for a turn, so a slow or dead git host ties up at most this many threads and connections.
pub const CONCURRENT_LISTINGS: usize = 16;
/// How many of them may go to one host: a host that is down or slow holds at most this many
/// turns, and the other hosts' listings still run.
pub const LISTINGS_PER_HOST: usize = 4;
/// How long connecting to the server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Username and password for HTTP basic authentication, from the credentials Secret's
/// `username` and `password` keys. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Reads `username` and `password` files from a directory (a mounted Secret). Trailing
    /// line breaks are dropped: `echo secret > password` is a common way to write them.
    pub fn from_dir(dir: &std::path::Path) -> std::io::Result<Self> {
        let read = |key: &str| -> std::io::Result<String> {
            let text = std::fs::read_to_string(dir.join(key)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot read {key} in {}: {e}", dir.display()),
                )
            })?;
            Ok(text.trim_end_matches(['\r', '\n']).to_owned())
        };
        Ok(Self::new(read("username")?, read("password")?))
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub(crate) fn account(&self) -> gix::sec::identity::Account {
        gix::sec::identity::Account {
            username: self.username.clone(),
            password: self.password.clone(),
            oauth_refresh_token: None,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a branch points at on the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchHead {
    /// The commit `refs/heads/<branch>` names, 40 hex digits.
    pub commit: String,
    /// Tags (names without `refs/tags/`, sorted) pointing at that commit, directly or through
    /// an annotated tag.
    pub tags: Vec<String>,
}

/// Why a repository could not be read. Messages name the URL without user information and
/// never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("repository {url} is unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("repository {url} {}", if *.had_credentials {
        "refused the credentials from the credentials Secret"
    } else {
        "requires credentials: set spec.source.credentialsSecret"
    })]
    AuthenticationRefused { url: String, had_credentials: bool },
    #[error("{url} is not a git repository: {cause}")]
    NotARepository { url: String, cause: String },
    #[error("branch {branch} does not exist in {url}")]
    BranchNotFound { url: String, branch: String },
    #[error("commit {commit} does not exist in {url}")]
    CommitNotFound { url: String, commit: String },
    #[error("{url} is not a URL Ferry can read: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "repository {url} is plain http://, so its credentials would be sent unencrypted; \
        nothing was sent: use an https:// URL, or set spec.source.insecure: true for a git \
        server on a private network"
    )]
    CredentialsInClear { url: String },
    #[error("repository {url} is not fetched: {refused}")]
    AddressRefused {
        url: String,
        refused: crate::adapters::address::AddressRefused,
    },
    #[error("reading {url} failed: {cause}")]
    Protocol { url: String, cause: String },
    #[error("checking out {commit} into {dest}: {cause}")]
    Checkout {
        commit: String,
        dest: String,
        cause: String,
    },
}

impl GitError {
    /// The reason an Application's `Ready` condition gives when its branch cannot be read.
    /// A branch look-up neither checks out nor asks for one commit, so the errors of the fetch
    /// step share the reason of an unexpected answer.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unreachable { .. } => REPOSITORY_UNREACHABLE,
            Self::AuthenticationRefused { .. } => AUTHENTICATION_REFUSED,
            Self::NotARepository { .. } => NOT_A_GIT_REPOSITORY,
            Self::BranchNotFound { .. } => BRANCH_NOT_FOUND,
            Self::InvalidUrl { .. } => INVALID_REPOSITORY_URL,
            Self::AddressRefused { .. } => ADDRESS_REFUSED,
            Self::CredentialsInClear { .. } => CREDENTIALS_IN_CLEAR,
            Self::Protocol { .. } | Self::CommitNotFound { .. } | Self::Checkout { .. } => {
                GIT_PROTOCOL_ERROR
            }
        }
    }

    /// A stable PascalCase name for metric labels and the fetch step's message: the reason's
    /// name, or a finer one for the fetch step's own failures.
    pub fn category(&self) -> &'static str {
        match self {
            Self::CommitNotFound { .. } => "CommitNotFound",
            Self::Checkout { .. } => "CheckoutFailed",
            _ => self.reason().name,
        }
    }

    /// Whether trying again later may help (with backoff): the server was down or slow, or
    /// spoke in a way we did not expect. A refusal, a missing branch or a bad URL needs a
    /// person to change something, though polling notices when they have.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Protocol { .. })
    }
}

/// A repository to list refs of: its URL, the credentials to send, and whether they may go
/// over plain `http://` (the source's `insecure`); without it they go only over `https://`.
#[derive(Clone, Copy, Debug)]
pub struct Remote<'a> {
    pub url: &'a str,
    pub credentials: Option<&'a Credentials>,
    pub insecure: bool,
}

/// Lists what a remote branch points at. The controller holds one behind an `Arc<dyn _>` so
/// that tests can give it another.
pub trait RemoteRefs: Send + Sync {
    /// The commit of `refs/heads/<branch>` at `remote` and the tags pointing at it.
    fn head<'a>(
        &'a self,
        remote: Remote<'a>,
        branch: &'a str,
    ) -> BoxFuture<'a, Result<BranchHead, GitError>>;

    /// The tags at `remote` that point at `commit` (directly or through an annotated tag),
    /// sorted: the version of a Release comes from them.
    fn tags_at<'a>(
        &'a self,
        remote: Remote<'a>,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, GitError>>;
}

/// The real [`RemoteRefs`]: gitoxide over HTTP(S) through one shared client (`git_http`), on
/// tokio's blocking thread pool, at most a bounded number of listings at once.
#[derive(Clone, Debug)]
pub struct GixRemote {
    /// Timeout of each HTTP request (a listing takes one or two).
    timeout: Duration,
    /// One permit per listing that may run; held by the listing's thread until it ends.
    turns: Arc<tokio::sync::Semaphore>,
    /// The same per host (scheme and authority, without user information), made on first use.
    hosts: Arc<Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    per_host: usize,
}

impl Default for GixRemote {
    fn default() -> Self {
        Self::new(LIST_TIMEOUT, CONCURRENT_LISTINGS)
    }
}

impl RemoteRefs for GixRemote {
    fn head<'a>(
        &'a self,
        remote: Remote<'a>,
        branch: &'a str,
    ) -> BoxFuture<'a, Result<BranchHead, GitError>> {
        let branch = branch.to_owned();
        self.blocking(remote, move |remote, timeout| {
            branch_head(remote, &branch, timeout)
        })
    }

    fn tags_at<'a>(
        &'a self,
        remote: Remote<'a>,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, GitError>> {
        let commit = commit.to_owned();
        self.blocking(remote, move |remote, timeout| {
            let refs = list_refs(remote, &["refs/tags/".to_owned()], timeout)?;
            Ok(tags_pointing_at(&refs, &commit))
        })
    }
}

impl GixRemote {
    /// Listings with this per-request timeout, at most `concurrent` at once (at least one), and
    /// at most [`LISTINGS_PER_HOST`] of them to one host.
    pub fn new(timeout: Duration, concurrent: usize) -> Self {
        Self {
            timeout,
            turns: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
            hosts: Arc::default(),
            per_host: LISTINGS_PER_HOST.min(concurrent).max(1),
        }
    }

    /// The same, with at most `per_host` listings to one host.
    pub fn per_host(self, per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            ..self
        }
    }

    /// The turns of the host of `url`.
    fn host_turns(&self, url: &str) -> Arc<tokio::sync::Semaphore> {
        let shown = redact_url(url);
        let host = match shown.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => shown,
        };
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_host)))
            .clone()
    }

    /// Runs a blocking listing on tokio's blocking pool: gitoxide's transport is blocking, and
    /// a listing must not stall the runtime. It waits for a turn first; the turn goes with
    /// the thread, so a listing the caller stopped waiting for still counts until it ends.
    fn blocking<'a, T: Send + 'static>(
        &self,
        remote: Remote<'_>,
        list: impl FnOnce(Remote<'_>, Duration) -> Result<T, GitError> + Send + 'static,
    ) -> BoxFuture<'a, Result<T, GitError>> {
        let (url, credentials, insecure) = (
            remote.url.to_owned(),
            remote.credentials.cloned(),
            remote.insecure,
        );
        let (timeout, turns, host) = (self.timeout, self.turns.clone(), self.host_turns(&url));
        Box::pin(async move {
            let shown = redact_url(&url);
            // The host's turn first, so that listings waiting for a busy host hold no turn
            // another host could use.
            let (Ok(host_turn), Ok(turn)) =
                (host.acquire_owned().await, turns.acquire_owned().await)
            else {
                return Err(GitError::Unreachable {
                    url: shown,
                    cause: "no turn to list refs (the controller is shutting down)".to_owned(),
                });
            };
            let task = tokio::task::spawn_blocking(move || {
                let _turns = (host_turn, turn);
                let remote = Remote {
                    url: &url,
                    credentials: credentials.as_ref(),
                    insecure,
                };
                list(remote, timeout)
            });
            // Two requests at most, each bounded by `timeout`; this is only a backstop.
            match tokio::time::timeout(timeout * 3, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(GitError::Protocol {
                    url: shown,
                    cause: format!("the listing task failed: {join}"),
                }),
                Err(_) => Err(GitError::Unreachable {
                    url: shown,
                    cause: format!("no answer within {:?}", timeout * 3),
                }),
            }
        })
    }
}

/// Blocking: the commit of `refs/heads/<branch>` at `remote` and the tags pointing at it.
pub fn branch_head(
    remote: Remote<'_>,
    branch: &str,
    timeout: Duration,
) -> Result<BranchHead, GitError> {
    let refs = list_refs(
        remote,
        &[format!("refs/heads/{branch}"), "refs/tags/".to_owned()],
        timeout,
    )?;
    head_of(&refs, branch).ok_or_else(|| GitError::BranchNotFound {
        url: redact_url(remote.url),
        branch: branch.to_owned(),
    })
}

/// A ref of the advertisement: its full name, the object it names and, for an annotated tag,
/// the object the tag points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    pub name: String,
    pub object: String,
    pub peeled: Option<String>,
}

impl RemoteRef {
    /// The commit (or other object) this ref finally names.
    fn target(&self) -> &str {
        self.peeled.as_deref().unwrap_or(&self.object)
    }
}

/// Picks the branch's commit and the tags pointing at it out of an advertisement.
pub fn head_of(refs: &[RemoteRef], branch: &str) -> Option<BranchHead> {
    let full = format!("refs/heads/{branch}");
    let commit = refs.iter().find(|r| r.name == full)?.target().to_owned();
    let tags = tags_pointing_at(refs, &commit);
    Some(BranchHead { commit, tags })
}

/// The names of the tags among `refs` that point at `commit`, sorted and deduplicated.
pub fn tags_pointing_at(refs: &[RemoteRef], commit: &str) -> Vec<String> {
    let mut tags: Vec<String> = refs
        .iter()
        .filter(|r| r.target() == commit)
        .filter_map(|r| r.name.strip_prefix("refs/tags/"))
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Blocking: the refs at `remote` whose names start with one of `prefixes` (the server may
/// filter by them; the result is filtered here too). Credentials over plain `http://` without
/// `insecure` are refused before any connection.
pub fn list_refs(
    remote: Remote<'_>,
    prefixes: &[String],
    timeout: Duration,
) -> Result<Vec<RemoteRef>, GitError> {
    let Remote {
        url,
        credentials,
        insecure,
    } = remote;
    let context = ErrorContext::new(url, credentials);
    let parsed = parse_http_url(url)?;
    refuse_credentials_in_clear(&parsed, &context, insecure)?;
    refuse_address(url)?;
    let mut transport = http::connect_http(
        super::git_http::SharedHttp::new(timeout),
        parsed,
        gix::protocol::transport::Protocol::V2,
        false,
    );
    if let Some(credentials) = credentials {
        transport
            .set_identity(credentials.account())
            .map_err(|e| context.protocol(&e))?;
    }
    let mut progress = gix::progress::Discard;
    let mut handshake = gix::protocol::handshake(
        &mut transport,
        gix::protocol::transport::Service::UploadPack,
        refuse_credential_prompts,
        Vec::new(),
        &mut progress,
    )
    .map_err(|e| context.classify(&e))?;
    let refs = match handshake.refs.take() {
        // Protocol v0/v1 servers advertise every ref in the handshake.
        Some(refs) => refs,
        None => {
            let mut ref_prefixes = gix::protocol::ls_refs::RefPrefixes::new();
            ref_prefixes.extend(prefixes.iter().map(|p| p.as_str().into()));
            gix::protocol::LsRefsCommand::new(
                Some(ref_prefixes),
                &handshake.capabilities,
                ("agent", Some(user_agent())),
            )
            .invoke_blocking(&mut transport, &mut progress, false)
            .map_err(|e| context.classify(&e))?
        }
    };
    Ok(refs
        .into_iter()
        .filter_map(remote_ref)
        .filter(|r| prefixes.iter().any(|p| r.name.starts_with(p.as_str())))
        .collect())
}

fn remote_ref(r: Ref) -> Option<RemoteRef> {
    let name = |n: &BStr| n.to_str().ok().map(str::to_owned);
    match r {
        Ref::Direct {
            full_ref_name,
            object,
        } => Some(RemoteRef {
            name: name(full_ref_name.as_ref())?,
            object: object.to_string(),
            peeled: None,
        }),
        Ref::Peeled {
            full_ref_name,
            tag,
            object,
        } => Some(RemoteRef {
            name: name(full_ref_name.as_ref())?,
            object: tag.to_string(),
            peeled: Some(object.to_string()),
        }),
        Ref::Symbolic {
            full_ref_name,
            tag,
            object,
            ..
        } => Some(RemoteRef {
            name: name(full_ref_name.as_ref())?,
            object: tag.unwrap_or(object).to_string(),
            peeled: tag.map(|_| object.to_string()),
        }),
        Ref::Unborn { .. } => None,
    }
}

/// Installs ring as rustls' process-wide crypto provider, once: reqwest is built without a
/// provider of its own (see Cargo.toml), and kube already brings ring.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// HTTP options for gitoxide's reqwest backend, which the build pod's fetch uses (listings go
/// through `git_http`): every request is bounded by `timeout`
/// (connecting by `CONNECT_TIMEOUT`). gitoxide ignores the generic low-speed settings with
/// this backend, so the bound is set on the client itself.
pub(crate) fn transport_options(timeout: Duration) -> http::Options {
    install_crypto_provider();
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            // Names are resolved through the address policy at the moment of connecting too,
            // so a name that changes its answer after `refuse_address` is still refused.
            Ok(builder
                .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                .timeout(timeout)
                .dns_resolver(Arc::new(crate::adapters::address::GuardedResolver)))
        })),
        configure_request: None,
    };
    http::Options {
        user_agent: Some(user_agent()),
        backend: Some(Arc::new(Mutex::new(backend))),
        ..Default::default()
    }
}

pub(crate) fn user_agent() -> String {
    format!("git/ferry-{}", env!("CARGO_PKG_VERSION"))
}

/// The credential callback gitoxide calls when the server answers 401: credentials, if any,
/// were already sent with the first request, so there is nothing else to offer. Refusing here
/// also keeps gitoxide from running `git credential` helpers or prompting.
pub(crate) fn refuse_credential_prompts(
    _action: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    Ok(None)
}

/// Refuses to send credentials (the Secret's, or a user in the URL) over plain `http://`
/// unless the source says `insecure`; checked before any connection, so nothing is sent.
/// (Listings follow no redirect, `git_http`; the fetch step's gitoxide refuses one from
/// `https://` to `http://`.)
pub(crate) fn refuse_credentials_in_clear(
    parsed: &gix::Url,
    context: &ErrorContext,
    insecure: bool,
) -> Result<(), GitError> {
    if parsed.scheme == gix::url::Scheme::Http && context.had_credentials && !insecure {
        return Err(GitError::CredentialsInClear {
            url: context.url.clone(),
        });
    }
    Ok(())
}

/// Refuses a URL whose host is, or resolves to, an address the controller may not reach
/// (`adapters::address`), before any connection; blocking (it may resolve the name).
pub(crate) fn refuse_address(url: &str) -> Result<(), GitError> {
    let Some(host) = crate::adapters::address::url_host(url) else {
        return Ok(());
    };
    crate::adapters::address::check_host(crate::adapters::address::policy(), host).map_err(
        |refused| GitError::AddressRefused {
            url: redact_url(url),
            refused,
        },
    )
}

/// Only HTTP(S) URLs: the other transports need an `ssh` binary or have no timeouts.
pub(crate) fn parse_http_url(url: &str) -> Result<gix::Url, GitError> {
    let invalid = |reason: String| GitError::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    let parsed = gix::url::parse(url.as_bytes().as_bstr())
        .map_err(|_| invalid("it does not parse as a git URL".to_owned()))?;
    match parsed.scheme {
        gix::url::Scheme::Http | gix::url::Scheme::Https => Ok(parsed),
        other => Err(invalid(format!(
            "only http:// and https:// repositories are supported, not {}",
            other.as_str()
        ))),
    }
}

/// `url` without user information (`https://user:pw@host/x` becomes `https://host/x`).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(slash) => rest.split_at(slash),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Turns gitoxide's errors into [`GitError`]s for one URL, scrubbed of secrets.
pub(crate) struct ErrorContext {
    url: String,
    secrets: Vec<String>,
    had_credentials: bool,
}

impl ErrorContext {
    pub(crate) fn new(url: &str, credentials: Option<&Credentials>) -> Self {
        let mut secrets: Vec<String> = credentials
            .map(|c| c.password.clone())
            .into_iter()
            .collect();
        // A password written into the URL itself.
        if let Some((_, rest)) = url.split_once("://")
            && let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| !s.is_empty());
        Self {
            url: redact_url(url),
            secrets,
            had_credentials: credentials.is_some() || url_has_user(url),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Every error gitoxide's error graph holds, each followed by its chain of sources.
    fn causes(error: &gix::Error) -> Vec<&(dyn std::error::Error + 'static)> {
        let mut all = Vec::new();
        for e in error.iter_errors() {
            let mut next = Some(e);
            while let Some(cause) = next {
                all.push(cause);
                next = cause.source();
            }
        }
        all
    }

    /// The error's causes on one line, without secrets.
    pub(crate) fn describe(&self, error: &gix::Error) -> String {
        self.join(error.iter_errors())
    }

    fn join<'e>(
        &self,
        errors: impl IntoIterator<Item = &'e (dyn std::error::Error + 'static)>,
    ) -> String {
        let mut parts: Vec<String> = Vec::new();
        for e in errors {
            let mut next = Some(e);
            while let Some(cause) = next {
                let text = cause.to_string();
                if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                next = cause.source();
            }
        }
        self.scrub(&parts.join(": "))
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        super::scrub(text, &self.secrets)
    }

    pub(crate) fn protocol(&self, error: &(dyn std::error::Error + 'static)) -> GitError {
        GitError::Protocol {
            url: self.url.clone(),
            cause: self.join([error]),
        }
    }

    fn refused(&self) -> GitError {
        GitError::AuthenticationRefused {
            url: self.url.clone(),
            had_credentials: self.had_credentials,
        }
    }

    /// Sorts an error into the categories callers act on, from what its causes say: an HTTP
    /// status, a refused or timed-out connection, or gitoxide's own classification.
    pub(crate) fn classify(&self, error: &gix::Error) -> GitError {
        let url = self.url.clone();
        for e in Self::causes(error) {
            if let Some(e) = e.downcast_ref::<reqwest::Error>() {
                match e.status().map(|s| s.as_u16()) {
                    Some(401 | 403) => return self.refused(),
                    Some(404) => {
                        return GitError::NotARepository {
                            url,
                            cause: "the server answered 404 Not Found".to_owned(),
                        };
                    }
                    Some(status) if status >= 500 => {
                        return GitError::Unreachable {
                            url,
                            cause: format!("the server answered {status}"),
                        };
                    }
                    _ if e.is_connect() || e.is_timeout() => {
                        return GitError::Unreachable {
                            url,
                            cause: self.join([e as &(dyn std::error::Error + 'static)]),
                        };
                    }
                    _ => {}
                }
            }
            if e.downcast_ref::<gix::protocol::transport::client::AuthenticationRequired>()
                .is_some()
            {
                return self.refused();
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    PermissionDenied => return self.refused(),
                    ConnectionRefused | ConnectionReset | TimedOut | HostUnreachable
                    | NetworkUnreachable => {
                        return GitError::Unreachable {
                            url,
                            cause: self.join([io as &(dyn std::error::Error + 'static)]),
                        };
                    }
                    _ => {}
                }
            }
        }
        if error.is_unauthenticated() || error.is_permission_denied() {
            return self.refused();
        }
        let cause = self.describe(error);
        // A server that answers, but not as a git server does (an HTML page, a login form):
        // gitoxide checks the content type of the advertisement.
        if cause.to_ascii_lowercase().contains("content-type") {
            return GitError::NotARepository { url, cause };
        }
        if error.is_retryable() {
            return GitError::Unreachable { url, cause };
        }
        GitError::Protocol { url, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_at_a_link_local_address_is_refused_before_any_connection() {
        for url in [
            "http://169.254.169.254/latest/meta-data.git",
            "https://user:pw@[fe80::1]:8443/a.git",
            "http://[::ffff:169.254.169.254]/a.git",
        ] {
            let remote = Remote {
                url,
                credentials: None,
                insecure: true,
            };
            let error = list_refs(remote, &[], Duration::from_secs(1)).unwrap_err();
            assert_eq!(error.reason().name, "AddressRefused", "{url}: {error}");
            assert!(!error.is_transient(), "{url}");
            assert!(!error.to_string().contains("pw"), "{error}");
        }
    }

    fn r(name: &str, object: &str, peeled: Option<&str>) -> RemoteRef {
        RemoteRef {
            name: name.into(),
            object: object.into(),
            peeled: peeled.map(Into::into),
        }
    }

    #[test]
    fn the_head_carries_lightweight_and_peeled_annotated_tags_only_of_its_commit() {
        let refs = [
            r("refs/heads/main", "c1", None),
            r("refs/heads/main2", "c9", None),
            r("refs/tags/v1.0.0", "c0", None),
            r("refs/tags/v1.1.0", "c1", None),
            r("refs/tags/v1.1.0-annotated", "t1", Some("c1")),
            r("refs/tags/pointing-at-tag-object", "c1x", Some("c2")),
        ];
        assert_eq!(
            head_of(&refs, "main"),
            Some(BranchHead {
                commit: "c1".into(),
                tags: vec!["v1.1.0".into(), "v1.1.0-annotated".into()],
            })
        );
        assert_eq!(head_of(&refs, "mai"), None, "no prefix matches");
        assert_eq!(head_of(&refs, "other"), None);
    }

    #[test]
    fn urls_lose_their_user_information_in_messages() {
        for (url, want) in [
            (
                "https://u:pw@git.example/a.git",
                "https://git.example/a.git",
            ),
            ("http://token@host:8080/x", "http://host:8080/x"),
            ("https://host/a@b.git", "https://host/a@b.git"),
            ("https://host", "https://host"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn credentials_do_not_show_their_password_when_debugged() {
        let shown = format!("{:?}", Credentials::new("ci", "hunter2"));
        assert!(
            shown.contains("ci") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_http_url("https://h/r.git").is_ok());
        assert!(parse_http_url("http://h:1/r.git").is_ok());
        for url in [
            "git@github.com:a/b.git",
            "ssh://h/r.git",
            "git://h/r",
            "/srv/r.git",
        ] {
            let error = parse_http_url(url).unwrap_err();
            assert_eq!(error.reason(), INVALID_REPOSITORY_URL, "{url}");
            assert_eq!(error.category(), "InvalidRepositoryUrl", "{url}");
        }
    }

    /// The Application controller writes an error's reason into the Application's `Ready`
    /// condition as it is; it must be one listed for Applications.
    #[test]
    fn every_error_gives_an_application_reason() {
        let (url, cause) = ("http://h/r.git".to_owned(), "x".to_owned());
        let errors = [
            GitError::Unreachable {
                url: url.clone(),
                cause: cause.clone(),
            },
            GitError::AuthenticationRefused {
                url: url.clone(),
                had_credentials: true,
            },
            GitError::NotARepository {
                url: url.clone(),
                cause: cause.clone(),
            },
            GitError::BranchNotFound {
                url: url.clone(),
                branch: "main".into(),
            },
            GitError::CommitNotFound {
                url: url.clone(),
                commit: "abc".into(),
            },
            GitError::InvalidUrl {
                url: url.clone(),
                reason: cause.clone(),
            },
            GitError::CredentialsInClear { url: url.clone() },
            GitError::Protocol {
                url: url.clone(),
                cause: cause.clone(),
            },
            GitError::Checkout {
                commit: "abc".into(),
                dest: "/w".into(),
                cause,
            },
        ];
        for error in errors {
            assert!(error.reason().kinds.contains(&"Application"), "{error:?}");
        }
    }

    #[test]
    fn credentials_over_plain_http_are_refused_before_any_connection_unless_insecure() {
        // Nothing listens on port 9 (discard) at a documentation address: a connection
        // attempt would be Unreachable, not CredentialsInClear.
        let url = "http://192.0.2.1:9/shop.git";
        let credentials = Credentials::new("ci", "hunter2");
        let list = |url, credentials, insecure| {
            let remote = Remote {
                url,
                credentials,
                insecure,
            };
            list_refs(remote, &[], Duration::from_millis(200))
        };
        let error = list(url, Some(&credentials), false).unwrap_err();
        assert_eq!(error.reason(), CREDENTIALS_IN_CLEAR, "{error}");
        assert!(!error.is_transient());
        assert!(
            error.to_string().contains("spec.source.insecure"),
            "{error}"
        );
        let error = list("http://ci:hunter2@192.0.2.1:9/shop.git", None, false).unwrap_err();
        assert_eq!(error.reason(), CREDENTIALS_IN_CLEAR, "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        // With the consent, or without credentials, the request is made (and fails here).
        for (credentials, insecure) in [(Some(&credentials), true), (None, false)] {
            let error = list(url, credentials, insecure).unwrap_err();
            assert_ne!(error.reason(), CREDENTIALS_IN_CLEAR, "{error}");
        }
    }

    #[test]
    fn scrubbing_removes_passwords_from_the_url_and_the_credentials() {
        let context = ErrorContext::new(
            "https://u:inurl@h/r.git",
            Some(&Credentials::new("u", "fromsecret")),
        );
        let text = context.scrub("GET https://u:inurl@h/r.git with fromsecret failed");
        assert!(
            !text.contains("inurl") && !text.contains("fromsecret"),
            "{text}"
        );
        assert_eq!(context.url(), "https://h/r.git");
    }
}
