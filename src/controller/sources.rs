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

use futures::channel::mpsc;
use tracing::Instrument;

use crate::adapters::git::{BranchHead, Credentials, Remote, RemoteRefs};
use crate::decide::application::SourceHead;
use crate::decide::backoff;
use crate::telemetry::Metrics;

/// How long a reconcile waits for a look-up before it goes on without it. A git server that
/// answers slowly, or not at all (a listing may take `adapters::git::LIST_TIMEOUT`, and
/// waits its turn behind others on the same host), must hold up builds of its branches only,
/// never the rollouts, verdicts and promotions the same reconcile decides: those go on with
/// the last answer, and the Application is reconciled again when the look-up ends.
pub const LOOK_UP_WAIT: Duration = Duration::from_secs(2);

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
    /// Held while a look-up runs: asks on one key wait for the one under way instead of
    /// starting their own. The failures in a row, for backoff.
    looking: tokio::sync::Mutex<u32>,
    /// The last answer, and until when it stands; readable while a look-up runs.
    last: Mutex<Option<(SourceHead, Instant)>>,
}

/// The shared look-ups, and the Applications a webhook asked to look at now.
pub struct Sources {
    entries: Mutex<HashMap<SourceKey, Arc<Entry>>>,
    pushed: Mutex<HashSet<(String, String)>>,
    /// Which Application (by UID) asked about which key: a few bytes per Application.
    asked: Mutex<HashSet<(String, SourceKey)>>,
    /// Where the Applications (namespace, name) go on without a look-up that outlasted
    /// [`LOOK_UP_WAIT`] are sent when it ends, to be reconciled again.
    woken: mpsc::UnboundedSender<(String, String)>,
}

/// One Application's view of its branch: the head (or why it is unknown) and when to look
/// again.
pub struct Looked {
    pub head: SourceHead,
    pub next_look: Duration,
}

/// Who asks for a branch head: the Application's namespace, name and UID.
pub type Asker<'a> = (&'a str, &'a str, &'a str);

impl Sources {
    /// Shared look-ups; an Application that went on without one is sent to `woken` when it
    /// ends.
    pub fn new(woken: mpsc::UnboundedSender<(String, String)>) -> Self {
        Self {
            entries: Mutex::default(),
            pushed: Mutex::default(),
            asked: Mutex::default(),
            woken,
        }
    }

    /// A push webhook for `namespace/application` arrived: its next look-up goes to the git
    /// server whatever the age of the last one.
    pub fn pushed(&self, namespace: &str, application: &str) {
        lock(&self.pushed).insert((namespace.to_owned(), application.to_owned()));
    }

    /// The head of `key`, looked up if the last answer is older than `interval`, a push for
    /// the Application arrived, or the Application (by UID) asks about `key` for the first
    /// time (a new Application, or one deleted and created again, must not build a head
    /// another one saw up to a poll interval ago); otherwise the last answer.
    ///
    /// A look-up that takes longer than [`LOOK_UP_WAIT`] goes on without the caller, who gets
    /// the last answer instead (none, on a first ask or a push, whose answer must be new) and
    /// is sent to `woken` when it ends.
    pub async fn head(
        &self,
        key: &SourceKey,
        (namespace, application, uid): Asker<'_>,
        interval: Duration,
        remote: Arc<dyn RemoteRefs>,
        credentials: Option<Credentials>,
        metrics: Arc<Metrics>,
    ) -> Option<Looked> {
        let pushed = lock(&self.pushed).remove(&(namespace.to_owned(), application.to_owned()));
        let first = lock(&self.asked).insert((uid.to_owned(), key.clone()));
        let look_now = pushed || first;
        let entry = lock(&self.entries).entry(key.clone()).or_default().clone();
        if !look_now && let Some(looked) = standing(&entry) {
            return Some(looked);
        }
        let mut task = tokio::spawn(
            look_up(
                entry.clone(),
                (key.clone(), look_now, interval),
                remote,
                credentials,
                metrics,
            )
            .in_current_span(),
        );
        match tokio::time::timeout(LOOK_UP_WAIT, &mut task).await {
            Ok(Ok(looked)) => Some(looked),
            // The look-up's task cannot panic on input; if it ended otherwise, the last answer
            // stands and the next reconcile asks again.
            Ok(Err(_)) => (!look_now).then(|| last(&entry, interval)).flatten(),
            Err(_) => {
                let woken = self.woken.clone();
                let asker = (namespace.to_owned(), application.to_owned());
                tokio::spawn(async move {
                    let _ = task.await;
                    // A closed channel is a controller that has stopped.
                    let _ = woken.unbounded_send(asker);
                });
                (!look_now).then(|| last(&entry, interval)).flatten()
            }
        }
    }
}

/// The last answer, if it still stands.
fn standing(entry: &Entry) -> Option<Looked> {
    let now = Instant::now();
    let last = lock(&entry.last);
    let (head, until) = last.as_ref()?;
    (*until > now).then(|| Looked {
        head: head.clone(),
        next_look: *until - now,
    })
}

/// The last answer, standing or not, to go on with until the look-up under way ends (which
/// reconciles the Application again, so the next look is at most `interval` away).
fn last(entry: &Entry, interval: Duration) -> Option<Looked> {
    let last = lock(&entry.last);
    let (head, _) = last.as_ref()?;
    Some(Looked {
        head: head.clone(),
        next_look: interval,
    })
}

/// The look-up of `key`, after the one under way if any (whose answer is taken instead,
/// unless `look_now`).
async fn look_up(
    entry: Arc<Entry>,
    (key, look_now, interval): (SourceKey, bool, Duration),
    remote: Arc<dyn RemoteRefs>,
    credentials: Option<Credentials>,
    metrics: Arc<Metrics>,
) -> Looked {
    let mut failures = entry.looking.lock().await;
    if !look_now && let Some(looked) = standing(&entry) {
        return looked;
    }
    let at = Remote {
        url: &key.url,
        credentials: credentials.as_ref(),
        insecure: key.insecure,
    };
    let answer = remote.head(at, &key.branch).await;
    let (head, wait) = match answer {
        Ok(BranchHead { commit, tags }) => {
            metrics.source_lookup("head");
            *failures = 0;
            (SourceHead::Commit { commit, tags }, jittered(interval))
        }
        Err(error) => {
            metrics.source_lookup(error.category());
            *failures = failures.saturating_add(1);
            let retry = backoff::delay(*failures, fastrand::f64()).min(interval);
            // Said once per streak: a host that stays down must not fill the log with a
            // line per Application per retry (the status and the metric say it anyway).
            if *failures == 1 {
                tracing::info!(error = %error, ?retry, "cannot read the branch head");
            } else {
                tracing::debug!(error = %error, ?retry, failures = *failures, "cannot read the branch head");
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
    *lock(&entry.last) = Some((head.clone(), Instant::now() + wait));
    Looked {
        head,
        next_look: wait,
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
