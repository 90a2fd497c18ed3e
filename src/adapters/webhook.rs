//! Push webhooks: GitHub-, GitLab- and Gitea-style push events, verified against the
//! Application's webhook Secret, become a [`PushedCommit`] for the controller.
//!
//! The endpoint is anonymous, so it must not be an oracle: **every request that is refused
//! before its signature verifies gets the same answer** ([`REFUSED`]: 403, one fixed body),
//! whether the namespace or Application does not exist, the Application has no webhook
//! Secret, the Secret has no key, the signature is missing or wrong, the event header is
//! missing, the body is too large or too slow. From outside, "no such Application" and "wrong
//! key" look alike. The reason is kept for the operator in the log and in the bounded `result`
//! label of `ferry_webhook_requests_total` ([`Outcome::result`]).
//!
//! [`check_headers`] runs on the headers alone, before the HTTP layer reads any of the body;
//! [`receive`] judges the whole request, in this order, answering as soon as one step refuses:
//!
//! 1. size: a body over [`MAX_BODY`] is `Oversized` (the HTTP layer refuses a larger
//!    `Content-Length` without reading, and stops reading a chunked body there);
//! 2. provider, from the event header (`X-Gitea-Event`, `X-Gitlab-Event`, `X-GitHub-Event`;
//!    Gitea also sends GitHub's headers, so it is asked first); none is `Unrecognised`;
//! 3. signature header present, else `Unsigned`, before anything is looked up;
//! 4. the Application's key through [`WebhookKeys`]: an Application that does not exist, has
//!    no `webhookSecret`, or whose Secret or key `secret` is missing (or that Ferry may not
//!    read) is `UnknownApplication`;
//! 5. verification in constant time: GitHub `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`,
//!    Gitea `X-Gitea-Signature: <hex HMAC-SHA256>`, GitLab `X-Gitlab-Token: <secret>`
//!    (compared as SHA-256 digests, so not even its length leaks); a mismatch is `Forged`;
//! 6. only then the JSON, to a sender that has proved it holds the key: an event that is not a
//!    push (GitHub's `ping`) is `Ignored`; a push without ref, commit or repository is
//!    `Malformed` (400, with the reason, for the sender's delivery log); a push to another
//!    branch, or one deleting the branch, is `Ignored`; the branch's push is `Accepted`.
//!
//! Nothing here logs a body, a signature or a secret.

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The largest body accepted (GitHub caps its payloads at 25 MB; a push of a few commits is a
/// few KiB, so 1 MiB leaves room for hundreds of commits).
pub const MAX_BODY: usize = 1 << 20;

/// What the controller receives: build `commit` of this Application (if it has not already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedCommit {
    pub namespace: String,
    pub application: String,
    /// 40 hex digits, lower case.
    pub commit: String,
}

/// What verifying a push for one Application needs.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// `spec.source.branch`.
    pub branch: String,
    /// The value of key `secret` in the `spec.source.webhookSecret` Secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("branch", &self.branch)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a target could not be found, for the log (the caller gets the same answer for all).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("Application not found")]
    NoApplication,
    #[error("the Application has no spec.source.webhookSecret")]
    NoWebhookSecret,
    #[error("Secret {0} not found or has no key `secret`")]
    NoKey(String),
    /// The API server refused Ferry the read: answered as an unknown Application, since a
    /// distinct answer would tell which namespaces or Secrets exist.
    #[error("Ferry may not read the Application or its Secret: {0}")]
    Forbidden(String),
    /// The API server did not answer (or refused Ferry): try again later.
    #[error("cannot read the Application or its Secret: {0}")]
    Unavailable(String),
}

/// Finds the branch and key of an Application's webhook. The controller uses
/// [`KubeWebhookKeys`]; tests can use a map.
pub trait WebhookKeys: Send + Sync {
    fn target<'a>(
        &'a self,
        namespace: &'a str,
        application: &'a str,
    ) -> BoxFuture<'a, Result<WebhookTarget, LookupError>>;
}

/// [`WebhookKeys`] from the API server: the Application, then its webhook Secret, both read
/// live (a Secret just created or rotated is used at once).
#[derive(Clone)]
pub struct KubeWebhookKeys {
    pub client: kube::Client,
}

impl WebhookKeys for KubeWebhookKeys {
    fn target<'a>(
        &'a self,
        namespace: &'a str,
        application: &'a str,
    ) -> BoxFuture<'a, Result<WebhookTarget, LookupError>> {
        Box::pin(async move {
            use crate::api::{Application, Secret};
            let unavailable = |e: kube::Error| match &e {
                kube::Error::Api(status) if status.code == 403 => {
                    LookupError::Forbidden(e.to_string())
                }
                _ => LookupError::Unavailable(e.to_string()),
            };
            let apps: kube::Api<Application> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let app = apps
                .get_opt(application)
                .await
                .map_err(unavailable)?
                .ok_or(LookupError::NoApplication)?;
            let source = &app.spec.source;
            let name = source
                .webhook_secret
                .clone()
                .ok_or(LookupError::NoWebhookSecret)?;
            let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
            let secret = secrets.get_opt(&name).await.map_err(unavailable)?;
            let key = secret
                .and_then(|s| s.data)
                .and_then(|mut data| data.remove("secret"))
                .filter(|key| !key.0.is_empty())
                .ok_or(LookupError::NoKey(name))?;
            Ok(WebhookTarget {
                branch: source.branch.clone(),
                secret: key.0,
            })
        })
    }
}

/// Which kind of server sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        }
    }
}

/// The request as the HTTP layer saw it; header names are matched case-insensitively.
pub struct Request<'a> {
    pub namespace: &'a str,
    pub application: &'a str,
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
}

/// How one request ended; the metric label and the HTTP answer follow from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A push to the Application's branch: the commit was handed to the controller.
    Accepted(PushedCommit),
    /// Verified, but builds nothing: another branch, a deleted branch, not a push event.
    Ignored(String),
    Unsigned,
    Forged,
    Oversized,
    /// The body did not arrive within the HTTP layer's time limit.
    TooSlow,
    /// No event header of a known provider.
    Unrecognised,
    /// A verified request whose body is not a push event Ferry can read.
    Malformed(String),
    UnknownApplication,
    /// The namespace is served by another shard of Ferry (`decide::shard`), named here.
    OtherShard(crate::decide::shard::Shard),
    /// The Application could not be read, or the controller is not taking pushes.
    Unavailable,
    /// Too many webhook requests are being served at once: the sender retries.
    Busy,
}

/// The one answer to every refusal before a signature verifies (see the module
/// documentation): the same status and body, whatever the reason.
pub const REFUSED: (u16, &str) = (
    403,
    "refused: not a verified push for this webhook (check the URL, the event, the size and the secret)\n",
);

impl Outcome {
    /// The `result` label of `ferry_webhook_requests_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Ignored(_) => "ignored",
            Self::Unsigned => "unsigned",
            Self::Forged => "forged",
            Self::Oversized => "oversized",
            Self::TooSlow => "too_slow",
            Self::Unrecognised => "unrecognised",
            Self::Malformed(_) => "malformed",
            Self::UnknownApplication => "unknown_application",
            Self::OtherShard(_) => "other_shard",
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
        }
    }

    /// The HTTP status and a short body for the sender (shown in its delivery log). Every
    /// refusal before the signature verifies is [`REFUSED`]; only a sender that proved it holds
    /// the key learns more.
    pub fn answer(&self) -> (u16, String) {
        match self {
            Self::Accepted(push) => (202, format!("build of {} requested\n", push.commit)),
            Self::Ignored(why) => (202, format!("nothing to build: {why}\n")),
            Self::Unsigned
            | Self::Forged
            | Self::Oversized
            | Self::TooSlow
            | Self::Unrecognised
            | Self::UnknownApplication => (REFUSED.0, REFUSED.1.to_owned()),
            Self::Malformed(why) => (400, format!("malformed push event: {why}\n")),
            // The rule that splits namespaces between shards is public: saying which shard
            // serves a namespace tells nothing about its Applications.
            Self::OtherShard(shard) => (
                421,
                format!(
                    "this namespace is served by shard {shard} of Ferry: send its pushes to that shard's webhook\n"
                ),
            ),
            Self::Unavailable | Self::Busy => (503, "try again later\n".into()),
        }
    }
}

/// What the headers say: the sender's provider, its event and the signature it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    pub provider: Provider,
    pub event: &'a str,
    pub signature: &'a str,
}

/// Judges the headers alone, so that the HTTP layer can refuse before reading the body: a
/// known provider's event header and its signature header must be there.
pub fn check_headers(headers: &axum::http::HeaderMap) -> Result<Signed<'_>, Outcome> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let (provider, event) = if let Some(event) = header("x-gitea-event") {
        (Provider::Gitea, event)
    } else if let Some(event) = header("x-gitlab-event") {
        (Provider::GitLab, event)
    } else if let Some(event) = header("x-github-event") {
        (Provider::GitHub, event)
    } else {
        return Err(Outcome::Unrecognised);
    };
    let signature = match provider {
        Provider::GitHub => header("x-hub-signature-256"),
        Provider::Gitea => header("x-gitea-signature").or(header("x-hub-signature-256")),
        Provider::GitLab => header("x-gitlab-token"),
    };
    let signature = signature.ok_or(Outcome::Unsigned)?;
    Ok(Signed {
        provider,
        event,
        signature,
    })
}

/// Judges one request (see the module documentation for the order). `Accepted` carries the
/// commit the caller is to send to the controller.
pub async fn receive(keys: &dyn WebhookKeys, request: &Request<'_>) -> Outcome {
    if request.body.len() > MAX_BODY {
        return Outcome::Oversized;
    }
    let Signed {
        provider,
        event,
        signature,
    } = match check_headers(request.headers) {
        Ok(signed) => signed,
        Err(refused) => return refused,
    };
    let target = match keys.target(request.namespace, request.application).await {
        Ok(target) => target,
        // The HTTP layer's span names the Application.
        Err(LookupError::Unavailable(why)) => {
            tracing::warn!(error = %why, "webhook: cannot look up the Application's webhook secret");
            return Outcome::Unavailable;
        }
        Err(why) => {
            tracing::info!(reason = %why, "webhook: no key to verify against");
            return Outcome::UnknownApplication;
        }
    };
    if !verifies(provider, &target.secret, signature, request.body) {
        return Outcome::Forged;
    }
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event.eq_ignore_ascii_case("push"),
        Provider::GitLab => event.eq_ignore_ascii_case("Push Hook"),
    };
    if !is_push {
        return Outcome::Ignored(format!(
            "{} event {event:?} is not a push",
            provider.as_str()
        ));
    }
    let push = match parse_push(provider, request.body) {
        Ok(push) => push,
        Err(why) => return Outcome::Malformed(why),
    };
    let wanted = format!("refs/heads/{}", target.branch);
    if push.git_ref != wanted {
        return Outcome::Ignored(format!(
            "{} is not the Application's branch {}",
            push.git_ref, target.branch
        ));
    }
    if push.after.bytes().all(|b| b == b'0') {
        return Outcome::Ignored(format!("{} was deleted", push.git_ref));
    }
    Outcome::Accepted(PushedCommit {
        namespace: request.namespace.to_owned(),
        application: request.application.to_owned(),
        commit: push.after,
    })
}

/// Whether `signature` proves that the holder of `secret` sent `body`, in constant time.
pub fn verifies(provider: Provider, secret: &[u8], signature: &str, body: &[u8]) -> bool {
    match provider {
        Provider::GitLab => {
            // GitLab sends the secret itself. Comparing digests keeps the comparison's time
            // independent of the secret's length too.
            let sent = Sha256::digest(signature.as_bytes());
            let want = Sha256::digest(secret);
            sent.ct_eq(&want).into()
        }
        Provider::GitHub | Provider::Gitea => {
            let hex_mac = signature.strip_prefix("sha256=").unwrap_or(signature);
            let Ok(sent) = hex::decode(hex_mac) else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            // `verify_slice` compares in constant time.
            mac.verify_slice(&sent).is_ok()
        }
    }
}

/// The parts of a push event Ferry uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The URLs the repository can be cloned from, as the sender names them.
    pub clone_urls: Vec<String>,
    /// The full ref name, `refs/heads/main`.
    pub git_ref: String,
    /// The commit the ref points at after the push (all zeros when it was deleted).
    pub after: String,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    /// GitLab: the commit checked out after the push, also present when `after` is not.
    checkout_sha: Option<String>,
    repository: Option<Repository>,
    /// GitLab names the clone URLs on the project too.
    project: Option<Repository>,
}

#[derive(Deserialize, Default)]
struct Repository {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
}

/// Parses a push event's body.
pub fn parse_push(provider: Provider, body: &[u8]) -> Result<Push, String> {
    let payload: PushPayload =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON push event: {e}"))?;
    let git_ref = payload.git_ref.ok_or("no \"ref\"")?;
    let after = match provider {
        Provider::GitLab => payload.after.or(payload.checkout_sha),
        Provider::GitHub | Provider::Gitea => payload.after,
    }
    .ok_or("no \"after\" commit")?
    .to_ascii_lowercase();
    if after.len() != 40 || !after.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("\"after\" is not a commit id of 40 hex digits".into());
    }
    let mut clone_urls = Vec::new();
    for repo in [payload.repository, payload.project].into_iter().flatten() {
        for url in [
            repo.clone_url,
            repo.git_http_url,
            repo.ssh_url,
            repo.git_ssh_url,
        ]
        .into_iter()
        .flatten()
        {
            if !clone_urls.contains(&url) {
                clone_urls.push(url);
            }
        }
    }
    if clone_urls.is_empty() {
        return Err("no repository clone URL".into());
    }
    Ok(Push {
        clone_urls,
        git_ref,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_signature(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature(b"s3cret", body);
        assert!(verifies(Provider::GitHub, b"s3cret", &good, body));
        assert!(!verifies(Provider::GitHub, b"other", &good, body));
        assert!(!verifies(Provider::GitHub, b"s3cret", &good, b"{}"));
        assert!(!verifies(Provider::GitHub, b"s3cret", "sha256=zz", body));
        assert!(!verifies(Provider::GitHub, b"s3cret", "", body));
        // Gitea sends the bare hex digest.
        let bare = good.trim_start_matches("sha256=");
        assert!(verifies(Provider::Gitea, b"s3cret", bare, body));
        assert!(verifies(Provider::GitLab, b"token", "token", body));
        assert!(!verifies(Provider::GitLab, b"token", "token ", body));
        assert!(!verifies(Provider::GitLab, b"token", "", body));
    }

    #[test]
    fn push_events_of_each_provider_parse() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let github = format!(
            r#"{{"ref":"refs/heads/main","after":"{sha}","repository":{{"clone_url":"https://h/a.git","ssh_url":"git@h:a.git"}}}}"#
        );
        let gitlab = format!(
            r#"{{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"{sha}","project":{{"git_http_url":"https://h/a.git"}},"repository":{{"git_http_url":"https://h/a.git","git_ssh_url":"git@h:a.git"}}}}"#
        );
        for (provider, body) in [
            (Provider::GitHub, github.clone()),
            (Provider::Gitea, github),
            (Provider::GitLab, gitlab),
        ] {
            let push = parse_push(provider, body.as_bytes()).unwrap();
            assert_eq!(push.git_ref, "refs/heads/main");
            assert_eq!(push.after, sha);
            assert_eq!(push.clone_urls, ["https://h/a.git", "git@h:a.git"]);
        }
        for (body, why) in [
            ("not json", "not a JSON"),
            (r#"{"after":"x"}"#, "no \"ref\""),
            (r#"{"ref":"refs/heads/main"}"#, "no \"after\""),
            (r#"{"ref":"r","after":"abc"}"#, "40 hex"),
            (
                r#"{"ref":"r","after":"0123456789abcdef0123456789abcdef01234567"}"#,
                "clone URL",
            ),
        ] {
            let error = parse_push(Provider::GitHub, body.as_bytes()).unwrap_err();
            assert!(error.contains(why), "{body}: {error}");
        }
    }

    #[test]
    fn a_target_does_not_show_its_secret_when_debugged() {
        let target = WebhookTarget {
            branch: "main".into(),
            secret: b"topsecret".to_vec(),
        };
        assert!(!format!("{target:?}").contains("topsecret"));
    }
}
