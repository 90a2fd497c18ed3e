//! The one registry of what Ferry runs beside rollouts, outside Kubernetes: the HTTP checks of
//! a stabilization window (`http_check`) and the GETs of a verification (`verification`), each
//! one tokio task, under a key of the caller's type (the controller's is
//! `decide::delivery::runs::RunKey`: namespace, application, environment, release, rollout
//! start, what).
//!
//! Data flow: a reconcile calls [`Runs::ensure_check`] or [`Runs::ensure_gets`] on every pass;
//! a run under that key with the same target (or GETs) is left alone, one with another is
//! stopped and replaced by a fresh one. A check's task writes its figures, a verification's
//! task its report; [`Runs::progress`] reads a snapshot of the runs a predicate selects.
//! [`Runs::stop`] and [`Runs::retain`] abort tasks, and dropping [`Runs`] aborts every task:
//! a run never outlives its entry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use super::http_check::{self, Figures, Record, Target};
use super::verification::{self, Get, Report};
use super::{Task, lock};

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// An HTTP check's figures so far.
    Check(Figures),
    /// A verification's report.
    Verification(Report),
}

/// One run. Dropping it stops its task.
enum Entry {
    Check {
        target: Target,
        record: Arc<Mutex<Record>>,
        _task: Option<Task>,
    },
    Verification {
        gets: Vec<Get>,
        report: Arc<Mutex<Report>>,
        _task: Option<Task>,
    },
}

impl Entry {
    fn progress(&self) -> Progress {
        match self {
            Entry::Check { record, .. } => Progress::Check(lock(record).figures()),
            Entry::Verification { report, .. } => Progress::Verification(lock(report).clone()),
        }
    }
}

/// The runs, by key. Two shared HTTP clients serve them all (their user agents tell the
/// application which part of Ferry asks).
pub struct Runs<K> {
    checks: Result<reqwest::Client, String>,
    verifications: Result<reqwest::Client, String>,
    running: Mutex<BTreeMap<K, Entry>>,
}

impl<K> Default for Runs<K> {
    fn default() -> Self {
        Self {
            checks: http_check::client(concat!("ferry-http-check/", env!("CARGO_PKG_VERSION"))),
            verifications: http_check::client(concat!(
                "ferry-verification/",
                env!("CARGO_PKG_VERSION")
            )),
            running: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<K: Debug> Debug for Runs<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = lock(&self.running);
        let keys: Vec<&K> = running.keys().collect();
        f.debug_struct("Runs").field("running", &keys).finish()
    }
}

/// Spawns `task` on the current tokio runtime; outside one, logs an error and gives `None`.
fn spawn<F>(key: &impl Debug, what: &str, task: F) -> Option<Task>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Some(Task::from(runtime.spawn(task))),
        Err(e) => {
            tracing::error!(?key, error = %e, "{what} not started: no tokio runtime");
            None
        }
    }
}

impl<K: Ord + Clone + Debug> Runs<K> {
    /// Starts sending to `target` under `key`, unless a check with that key and the same
    /// target runs already: then nothing happens, so a reconcile can call it on every pass. A
    /// run under `key` with another target is stopped and replaced, with fresh figures. Must be
    /// called within a tokio runtime; outside one, nothing is started and an error is logged.
    pub fn ensure_check(&self, key: K, target: Target) {
        let mut running = lock(&self.running);
        if matches!(running.get(&key), Some(Entry::Check { target: t, .. }) if *t == target) {
            return;
        }
        let record = Arc::new(Mutex::new(Record::default()));
        let task = match &self.checks {
            Err(detail) => {
                lock(&record).figures.last_failure_detail = Some(detail.clone());
                None
            }
            Ok(client) => {
                let task = http_check::run(client.clone(), target.clone(), record.clone());
                let Some(task) = spawn(&key, "HTTP check", task) else {
                    return;
                };
                Some(task)
            }
        };
        tracing::debug!(?key, url = target.url(), "HTTP check started");
        // Replacing drops the previous run, which aborts its task.
        running.insert(
            key,
            Entry::Check {
                target,
                record,
                _task: task,
            },
        );
    }

    /// Starts sending `gets` under `key`, unless a run with that key and the same GETs exists
    /// already (running or finished): then nothing happens, so a reconcile can call it on every
    /// pass and a finished run keeps its report. A run under `key` with other GETs is stopped
    /// and replaced by a fresh one. No GETs pass at once. Must be called within a tokio
    /// runtime; outside one, nothing is started and an error is logged.
    pub fn ensure_gets(&self, key: K, gets: Vec<Get>) {
        let mut running = lock(&self.running);
        if matches!(running.get(&key), Some(Entry::Verification { gets: g, .. }) if *g == gets) {
            return;
        }
        let report = Arc::new(Mutex::new(Report::Running));
        let task = match (&self.verifications, gets.is_empty()) {
            (_, true) => {
                *lock(&report) = Report::Passed {
                    message: "no requests to send".to_owned(),
                };
                None
            }
            // Not the application's fault, but nothing was verified: the release must not
            // pass, and the message says why.
            (Err(detail), false) => {
                *lock(&report) = Report::Failed {
                    message: verification::bounded(format!("no request sent: {detail}")),
                };
                None
            }
            (Ok(client), false) => {
                let task = verification::verify(client.clone(), gets.clone(), report.clone());
                let Some(task) = spawn(&key, "verification", task) else {
                    return;
                };
                Some(task)
            }
        };
        tracing::debug!(?key, requests = gets.len(), "verification started");
        running.insert(
            key,
            Entry::Verification {
                gets,
                report,
                _task: task,
            },
        );
    }

    /// Records under `key` a verification that failed before it could start (a test pod the
    /// API server refused, say), so its report says why instead of waiting for the timeout.
    pub fn failed_to_start(&self, key: K, message: String) {
        lock(&self.running).insert(
            key,
            Entry::Verification {
                gets: Vec::new(),
                report: Arc::new(Mutex::new(Report::Failed {
                    message: verification::bounded(message),
                })),
                _task: None,
            },
        );
    }

    /// The figures of the check under `key` so far; `None` if no check runs under it.
    pub fn figures(&self, key: &K) -> Option<Figures> {
        match lock(&self.running).get(key)?.progress() {
            Progress::Check(figures) => Some(figures),
            Progress::Verification(_) => None,
        }
    }

    /// Where the verification under `key` stands; `None` if there is none.
    pub fn report(&self, key: &K) -> Option<Report> {
        match lock(&self.running).get(key)?.progress() {
            Progress::Verification(report) => Some(report),
            Progress::Check(_) => None,
        }
    }

    /// How every run whose key `select` picks stands.
    pub fn progress(&self, select: impl Fn(&K) -> bool) -> BTreeMap<K, Progress> {
        lock(&self.running)
            .iter()
            .filter(|(key, _)| select(key))
            .map(|(key, entry)| (key.clone(), entry.progress()))
            .collect()
    }

    /// Stops and forgets the run under `key`.
    pub fn stop(&self, key: &K) {
        lock(&self.running).remove(key);
    }

    /// Stops and forgets every run whose key `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        lock(&self.running).retain(|key, _| keep(key));
    }

    /// Stops and forgets every run.
    pub fn clear(&self) {
        lock(&self.running).clear();
    }

    /// The keys of the runs, running or finished.
    pub fn keys(&self) -> Vec<K> {
        lock(&self.running).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_can_be_shared_by_the_controller() {
        fn shared<T: Default + Send + Sync + Debug + 'static>() {}
        shared::<Runs<String>>();
    }

    #[tokio::test]
    async fn no_gets_pass_at_once() {
        let runs = Runs::default();
        runs.ensure_gets("k", Vec::new());
        assert!(
            matches!(runs.report(&"k"), Some(Report::Passed { .. })),
            "{:?}",
            runs.report(&"k")
        );
    }

    #[tokio::test]
    async fn a_check_and_a_verification_of_one_application_stop_together() {
        let runs = Runs::default();
        let target = Target::new(
            "127.0.0.1",
            9,
            "/",
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(1),
        );
        let Ok(target) = target else {
            panic!("{target:?}");
        };
        runs.ensure_check(("shop", "check"), target.clone());
        runs.ensure_gets(("shop", "verify"), Vec::new());
        runs.failed_to_start(("web", "verify"), "refused".into());
        runs.retain(|(app, _)| *app != "shop");
        assert_eq!(runs.keys(), vec![("web", "verify")]);
    }
}
