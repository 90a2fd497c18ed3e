//! Noticing commits: the head of each (repository, branch) looked up on the git server at most
//! once per poll interval, however many Applications build it, and at once after a push
//! webhook for one of them.
//!
//! Entries are keyed by URL, branch, the credentials Secret (namespace and name) and
//! `insecure`, so an Application never sees a head looked up with another namespace's
//! credentials, or with a consent to plain http it did not give. Concurrent
//! reconciles of Applications on one key wait for the one look-up under way instead of
//! starting their own. A failed look-up is retried with the per-key backoff of
//! `decide::backoff`, capped by the poll interval: however many Applications ask, only a push
//! or an Application asking for the first time looks sooner.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::adapters::git::{BranchHead, Credentials, Remote, RemoteRefs};
use crate::decide::application::SourceHead;
use crate::decide::backoff;
use crate::telemetry::Metrics;

/// Which look-up an Application shares.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SourceKey {
    pub url: String,
    pub branch: String,
    /// `namespace/name` of the credentials Secret, if any.
    pub credentials: Option<String>,
    /// Whether the credentials may go over plain `http://` (the source's `insecure`).
    pub insecure: bool,
}

#[derive(Default)]
struct Entry {
    /// The last answer, and until when it stands.
    last: Option<(SourceHead, Instant)>,
    failures: u32,
}

/// The shared look-ups, and the Applications a webhook asked to look at now.
#[derive(Default)]
pub struct Sources {
    entries: Mutex<HashMap<SourceKey, Arc<tokio::sync::Mutex<Entry>>>>,
    pushed: Mutex<HashSet<(String, String)>>,
    /// Which Application (by UID) asked about which key: a few bytes per Application.
    asked: Mutex<HashSet<(String, SourceKey)>>,
}

/// One Application's view of its branch: the head (or why it is unknown) and when to look
/// again.
pub struct Looked {
    pub head: SourceHead,
    pub next_look: Duration,
}

impl Sources {
    /// A push webhook for `namespace/application` arrived: its next look-up goes to the git
    /// server whatever the age of the last one.
    pub fn pushed(&self, namespace: &str, application: &str) {
        lock(&self.pushed).insert((namespace.to_owned(), application.to_owned()));
    }

    /// The head of `key`, looked up if the last answer is older than `interval`, a push for
    /// `(namespace, application)` arrived, or the Application with UID `uid` asks about `key`
    /// for the first time (a new Application, or one deleted and created again, must not build
    /// a head another one saw up to a poll interval ago); otherwise the last answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn head(
        &self,
        key: &SourceKey,
        (namespace, application, uid): (&str, &str, &str),
        interval: Duration,
        remote: &dyn RemoteRefs,
        credentials: Option<&Credentials>,
        metrics: &Metrics,
    ) -> Looked {
        let pushed = lock(&self.pushed).remove(&(namespace.to_owned(), application.to_owned()));
        let first = lock(&self.asked).insert((uid.to_owned(), key.clone()));
        let look_now = pushed || first;
        let entry = lock(&self.entries).entry(key.clone()).or_default().clone();
        let mut entry = entry.lock().await;
        let now = Instant::now();
        if let Some((head, until)) = &entry.last
            && (*until > now && !look_now)
        {
            return Looked {
                head: head.clone(),
                next_look: *until - now,
            };
        }
        let at = Remote {
            url: &key.url,
            credentials,
            insecure: key.insecure,
        };
        let answer = remote.head(at, &key.branch).await;
        let (head, wait) = match answer {
            Ok(BranchHead { commit, tags }) => {
                metrics.source_lookup("head");
                entry.failures = 0;
                (SourceHead::Commit { commit, tags }, jittered(interval))
            }
            Err(error) => {
                metrics.source_lookup(error.category());
                entry.failures = entry.failures.saturating_add(1);
                let retry = backoff::delay(entry.failures, fastrand::f64()).min(interval);
                // Said once per streak: a host that stays down must not fill the log with a
                // line per Application per retry (the status and the metric say it anyway).
                if entry.failures == 1 {
                    tracing::info!(error = %error, ?retry, "cannot read the branch head");
                } else {
                    tracing::debug!(error = %error, ?retry, failures = entry.failures, "cannot read the branch head");
                }
                (
                    SourceHead::Failed {
                        reason: error.reason(),
                        message: error.to_string(),
                    },
                    retry,
                )
            }
        };
        entry.last = Some((head.clone(), Instant::now() + wait));
        Looked {
            head,
            next_look: wait,
        }
    }
}

/// The poll interval with ±10% jitter, so Applications created together do not poll together.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
