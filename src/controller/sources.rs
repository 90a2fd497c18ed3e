//! Noticing commits: the head of each (repository, branch) looked up on the git server at most
//! once per poll interval, however many Applications build it, and at once after a push
//! webhook for one of them.
//!
//! Entries are keyed by URL, branch, the credentials Secret (namespace and name) and
//! `insecure`, so an Application never sees a head looked up with another namespace's
//! credentials, or with a consent to plain http it did not give. Look-ups of one key run one
//! at a time, and an ask takes the answer of one under way when that one started after it. A
//! failed look-up is retried with the per-key backoff of `decide::backoff`, capped by the poll
//! interval: however many Applications ask, only a push or an Application asking for the first
//! time looks sooner. A reconcile waits for a look-up at most [`LOOK_UP_WAIT`].

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
    /// The last answer; readable while a look-up runs.
    last: Mutex<Option<Answer>>,
}

#[derive(Clone)]
struct Answer {
    head: SourceHead,
    /// When the look-up that gave it started: it counts for an ask made no later.
    started: Instant,
    /// Until when it stands.
    until: Instant,
}

/// The shared look-ups, and the Applications a webhook asked to look at now.
pub struct Sources {
    entries: Mutex<HashMap<SourceKey, Arc<Entry>>>,
    pushed: Mutex<HashSet<(String, String)>>,
    /// Which Application (by UID) asked about which key, and, until it has one, since when it
    /// waits for an answer of its own (one started after its first ask): a few bytes per
    /// Application.
    asked: Mutex<HashMap<(String, SourceKey), Option<Instant>>>,
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

    /// The head of `key`: the last answer while it stands; otherwise, or after a push for the
    /// Application, or until the Application (by UID) has had an answer about `key` (a new
    /// Application, or one deleted and created again, must not build a head another one saw
    /// up to a poll interval ago), the answer of a look-up started since.
    ///
    /// A look-up that takes longer than [`LOOK_UP_WAIT`] goes on without the caller, who is
    /// sent to `woken` when it ends and meanwhile gets the last answer: none for an
    /// Application still waiting for its first, whatever it asks in between.
    pub async fn head(
        &self,
        key: &SourceKey,
        (namespace, application, uid): Asker<'_>,
        interval: Duration,
        remote: Arc<dyn RemoteRefs>,
        credentials: Option<Credentials>,
        metrics: Arc<Metrics>,
    ) -> Option<Looked> {
        let now = Instant::now();
        let pushed = lock(&self.pushed).remove(&(namespace.to_owned(), application.to_owned()));
        let asker = (uid.to_owned(), key.clone());
        // Since when the answer must be new: a first ask (until it has its answer) or a push.
        let first = *lock(&self.asked).entry(asker.clone()).or_insert(Some(now));
        let since = if pushed { Some(now) } else { first };
        let entry = lock(&self.entries).entry(key.clone()).or_default().clone();
        let answered = |looked: Looked| {
            if let Some(waiting) = lock(&self.asked).get_mut(&asker) {
                *waiting = None;
            }
            Some(looked)
        };
        if let Some(looked) = answer(&entry, since) {
            return answered(looked);
        }
        let mut task = tokio::spawn(
            look_up(
                entry.clone(),
                (key.clone(), since, interval),
                remote,
                credentials,
                metrics,
            )
            .in_current_span(),
        );
        match tokio::time::timeout(LOOK_UP_WAIT, &mut task).await {
            Ok(Ok(looked)) => return answered(looked),
            // The look-up's task cannot panic on input; if it ended otherwise, the last answer
            // stands and the next reconcile asks again.
            Ok(Err(_)) => {}
            Err(_) => {
                let woken = self.woken.clone();
                let asker = (namespace.to_owned(), application.to_owned());
                tokio::spawn(async move {
                    let _ = task.await;
                    // A closed channel is a controller that has stopped.
                    let _ = woken.unbounded_send(asker);
                });
            }
        }
        // An Application still waiting for its first answer gets none; one that had answers
        // goes on with the last (a push's look-up wakes it with the new one).
        first.is_none().then(|| last(&entry, interval)).flatten()
    }
}

/// The last answer, if it still stands and (with `since`) its look-up started no earlier.
fn answer(entry: &Entry, since: Option<Instant>) -> Option<Looked> {
    let now = Instant::now();
    let last = lock(&entry.last);
    let answer = last.as_ref()?;
    let new_enough = since.is_none_or(|since| answer.started >= since);
    (answer.until > now && new_enough).then(|| Looked {
        head: answer.head.clone(),
        next_look: answer.until - now,
    })
}

/// The last answer, standing or not, to go on with until the look-up under way ends (which
/// reconciles the Application again, so the next look is at most `interval` away).
fn last(entry: &Entry, interval: Duration) -> Option<Looked> {
    let last = lock(&entry.last);
    Some(Looked {
        head: last.as_ref()?.head.clone(),
        next_look: interval,
    })
}

/// The look-up of `key`, after the one under way if any (whose answer is taken instead if it
/// still stands and, with `since`, started no earlier).
async fn look_up(
    entry: Arc<Entry>,
    (key, since, interval): (SourceKey, Option<Instant>, Duration),
    remote: Arc<dyn RemoteRefs>,
    credentials: Option<Credentials>,
    metrics: Arc<Metrics>,
) -> Looked {
    let mut failures = entry.looking.lock().await;
    if let Some(looked) = answer(&entry, since) {
        return looked;
    }
    let started = Instant::now();
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
    *lock(&entry.last) = Some(Answer {
        head: head.clone(),
        started,
        until: Instant::now() + wait,
    });
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::StreamExt;
    use futures::future::BoxFuture;

    use super::{SourceKey, Sources};
    use crate::adapters::git::{BranchHead, GitError, Remote, RemoteRefs};
    use crate::decide::application::SourceHead;
    use crate::telemetry::Metrics;

    /// A git server whose branch points at `head`, and that answers only once let through
    /// while `holding` (a server that is slow, or silent for a while).
    struct Server {
        head: Mutex<String>,
        holding: AtomicBool,
        let_through: tokio::sync::Semaphore,
        listings: AtomicUsize,
    }

    impl RemoteRefs for Server {
        fn head<'a>(
            &'a self,
            _: Remote<'a>,
            _: &'a str,
        ) -> BoxFuture<'a, Result<BranchHead, GitError>> {
            Box::pin(async move {
                self.listings.fetch_add(1, Ordering::SeqCst);
                if self.holding.load(Ordering::SeqCst) {
                    self.let_through.acquire().await.expect("open").forget();
                }
                let commit = self.head.lock().expect("head").clone();
                Ok(BranchHead {
                    commit,
                    tags: vec![],
                })
            })
        }

        fn tags_at<'a>(
            &'a self,
            _: Remote<'a>,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<String>, GitError>> {
            Box::pin(async { Ok(vec![]) })
        }
    }

    /// A new Application never builds a head looked up before it asked, even when its own
    /// look-up outlasts the wait and it asks again meanwhile (its status write reconciles it
    /// at once); it is woken when the look-up ends and then gets the new head. An Application
    /// that had answers goes on with the standing one, and a push looks again.
    #[tokio::test(start_paused = true)]
    async fn a_new_application_waits_for_an_answer_of_its_own() {
        let (woken_tx, mut woken) = futures::channel::mpsc::unbounded();
        let sources = Sources::new(woken_tx);
        let server = Arc::new(Server {
            head: Mutex::default(),
            holding: AtomicBool::new(false),
            let_through: tokio::sync::Semaphore::new(0),
            listings: AtomicUsize::new(0),
        });
        let key = SourceKey {
            url: "https://git.example/shop.git".into(),
            branch: "main".into(),
            credentials: None,
            insecure: false,
        };
        let interval = Duration::from_secs(60);
        let ask = |uid: &'static str| {
            let (sources, server, key) = (&sources, server.clone(), key.clone());
            async move {
                let looked = sources
                    .head(
                        &key,
                        ("team-a", uid, uid),
                        interval,
                        server,
                        None,
                        Arc::new(Metrics::default()),
                    )
                    .await;
                looked.map(|l| match l.head {
                    SourceHead::Commit { commit, .. } => commit,
                    SourceHead::Failed { message, .. } => message,
                })
            }
        };
        *server.head.lock().expect("head") = "c1".into();
        assert_eq!(ask("a").await.as_deref(), Some("c1"));

        // The branch moves on while the server holds every answer.
        *server.head.lock().expect("head") = "c2".into();
        server.holding.store(true, Ordering::SeqCst);
        assert_eq!(ask("b").await, None, "a first ask that outlasts the wait");
        assert_eq!(ask("b").await, None, "not c1, seen before b asked");
        assert_eq!(ask("a").await.as_deref(), Some("c1"), "the standing answer");

        server.let_through.add_permits(1);
        assert_eq!(woken.next().await, Some(("team-a".into(), "b".into())));
        assert_eq!(ask("b").await.as_deref(), Some("c2"));
        assert_eq!(
            server.listings.load(Ordering::SeqCst),
            2,
            "b's second ask took the answer of the look-up under way"
        );

        server.holding.store(false, Ordering::SeqCst);
        *server.head.lock().expect("head") = "c3".into();
        assert_eq!(ask("a").await.as_deref(), Some("c2"), "one poll interval");
        sources.pushed("team-a", "a");
        assert_eq!(ask("a").await.as_deref(), Some("c3"), "a push looks again");
    }
}
