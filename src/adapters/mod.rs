//! I/O outside Kubernetes. Each adapter speaks one foreign protocol behind a small trait or
//! plain function, so that `decide` never sees it, and turns its failures into errors with a
//! stable category, so that callers never see a protocol library's types.
//!
//! - [`address`]: which addresses the controller may connect to for a URL a user wrote.
//! - [`git`]: a remote's refs over smart HTTP (a branch's commit and its tags).
//! - [`webhook`]: push webhooks (GitHub, GitLab, Gitea), verified in constant time.
//! - [`registry`]: an OCI registry through `oci-client`: blobs, manifests, credentials from a
//!   dockerconfigjson, and [`registry::manifest_exists`] for verifying a pushed image.
//! - [`http_check`]: a rollout's HTTP checks through the application's Service, and their
//!   figures (failures by kind, p95 latency) for the health verdict.
//! - [`verification`]: an Environment's verification GETs through the Service, each tried a
//!   few times, and whether every one answered as expected.
//! - [`runs`]: the one registry of the checks' and verifications' tasks, by a typed key.

pub mod address;
pub mod git;
pub mod git_http;
pub mod http_check;
pub mod registry;
pub mod runs;
pub mod verification;
pub mod webhook;

use std::sync::{Mutex, MutexGuard};

use tokio::task::{AbortHandle, JoinHandle};

/// `text` on one line, with every non-empty secret in `secrets` replaced by `<redacted>`: how
/// every adapter's error text leaves it, so no credential reaches a log, status or Event.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.replace(['\n', '\r'], " ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

/// A lock that a panicked holder did not spoil: every write under these locks leaves the data
/// consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A background task that is aborted when this handle is dropped: the HTTP checks and
/// verifications stop when their owner forgets them.
#[derive(Debug)]
pub(crate) struct Task(AbortHandle);

impl<T> From<JoinHandle<T>> for Task {
    fn from(handle: JoinHandle<T>) -> Self {
        Task(handle.abort_handle())
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}
