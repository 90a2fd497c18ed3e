//! Delivery: one Application in one Environment. Which release should run there, how the
//! rollout under way stands, its verdict, and the rollback a failed verdict starts; and from
//! that, which Deployments run which release and what the Service sends traffic to.
//!
//! A rollout goes through three stages, each judged from what was observed (`health`):
//! 1. **Progress**: until the release's pods are all ready. A crash loop, a pull error, an
//!    unschedulable pod or a container that cannot start fails it at once; the progress
//!    deadline fails it if it is still not ready then.
//! 2. **Stabilization window**: from the moment they were all ready (with `BlueGreen`, the
//!    moment the Service switched to them). Readiness must hold, restarts stay under
//!    `maxRestarts`, and the HTTP checks stay under their error rate and p95 latency.
//! 3. **Verdict**: healthy at the end of the window; otherwise failed at the first signal,
//!    with the signal and its figures. A failed rollout goes back to the release that was
//!    healthy before it (a rollback, judged like any rollout) unless automatic rollback is off
//!    or there is none, in which case the environment stays `Degraded` as it is.
//!
//! Everything a rollout needs to carry on after a restart of the controller is in the
//! environment's status (`Rollout`): its start (the deadline counts from it), its ready time
//! (the window counts from it), the strategy and slot it started with. The time is an input,
//! so deadlines and windows become computed requeues.

pub mod health;

use std::collections::BTreeMap;
use std::time::Duration;

use self::health::{CheckFigures, Placement, Signal, Workload, show};
use super::events::Announcement;
use super::whole_seconds;
use crate::api::application::{
    EnvironmentState, HistoryEntry, HistoryKind, Outcome, Phase, Rollout, Slot, Verdict,
};
use crate::api::conditions::{self, Desired};
use crate::api::environment::{HealthPolicy, StrategyType};
use crate::api::reasons::{
    NO_RELEASE, ROLLBACK_FAILED, ROLLED_BACK, ROLLOUT_FAILED, ROLLOUT_STARTED, ROLLOUT_SUCCEEDED,
    Reason, STABILIZING,
};
use crate::api::{Condition, Time};

/// History entries kept per environment.
pub const HISTORY_LIMIT: usize = 20;
/// Rejected releases remembered per environment.
pub const REJECTED_LIMIT: usize = 20;

/// The per-environment condition types.
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const ROLLED_BACK_CONDITION: &str = "RolledBack";

/// How the Environment rolls out and judges.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    pub strategy: StrategyType,
    pub health: &'a HealthPolicy,
    pub automatic_rollback: bool,
}

/// The release the environment should run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub release: String,
    /// "newest release", or the pin's reason.
    pub reason: String,
    /// A person chose it (a pin): it is rolled out even if it failed here before, once.
    pub pinned: bool,
}

/// What the shell observed for one environment.
pub struct Observed<'a> {
    /// The environment's state as stored in the Application's status.
    pub state: &'a EnvironmentState,
    pub policy: Policy<'a>,
    pub wanted: Option<Wanted>,
    /// Pods per Deployment in this environment.
    pub replicas: i32,
    pub workload: &'a Workload,
    /// The figures of the HTTP checks of the rollout in its window (empty without checks).
    pub checks: &'a [CheckFigures],
}

/// Where the Service sends traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serving {
    /// To every pod of the environment (`RollingUpdate`: old and new pods while it rolls).
    All,
    /// Only to the pods of this release (`BlueGreen`).
    Release(String),
}

/// A rollout that reached a verdict, a rollback that started (`kind: Rollback` without
/// `restored_after`) or one that restored the previous release (with it), for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub strategy: StrategyType,
    pub kind: HistoryKind,
    pub healthy: bool,
    pub reason: &'static str,
    /// For a rollback that restored the previous release: seconds from the failure signal
    /// (or the verdict, when the signal has no time) to all traffic on it again.
    pub restored_after: Option<f64>,
}

/// An Event about a rollout: what it says, the Release it is about and whether it is about a
/// rollout or a rollback (the Event's `related` object and its action, so that Events about
/// different releases are never folded into one series).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Told {
    pub announcement: Announcement,
    pub release: String,
    pub kind: HistoryKind,
}

/// What the environment should look like, and what to tell.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub state: EnvironmentState,
    /// The release each Deployment runs, with `replicas` pods. Deployments of the
    /// environment not listed are deleted.
    pub deployments: BTreeMap<Placement, String>,
    pub serving: Serving,
    /// The rollout whose HTTP checks should run now: (release, its start), a key that is new
    /// for every rollout.
    pub checks: Option<(String, Time)>,
    pub events: Vec<Told>,
    pub finished: Vec<Finished>,
    pub requeue_after: Option<Duration>,
}

/// Decides one environment at `now`.
pub fn plan(observed: &Observed, now: &Time) -> Plan {
    let mut work = Work {
        state: observed.state.clone(),
        stamp: whole_seconds(now),
        events: Vec::new(),
        finished: Vec::new(),
        requeue: None,
    };
    let idle = work
        .state
        .rollout
        .as_ref()
        .is_none_or(|r| r.verdict.is_some());
    if idle
        && let Some(wanted) = &observed.wanted
        && should_start(&work.state, wanted)
    {
        work.start(wanted, &observed.policy);
    }
    work.judge(observed, now);
    // A rollback judged at once: with BlueGreen the previous release is still up and ready,
    // so the Service switches back in this very decision.
    if work.state.rollout.as_ref().is_some_and(|r| {
        r.kind == HistoryKind::Rollback && r.verdict.is_none() && r.ready.is_none()
    }) {
        work.judge(observed, now);
    }
    let phase = phase(&work.state);
    if phase == Phase::Pending && observed.wanted.is_none() {
        work.state.candidate = None;
    }
    work.state.phase = Some(phase);
    work.state.conditions = conditions(&work.state, &work.stamp);
    let (deployments, serving) = placements(&work.state);
    let checks = work.state.rollout.as_ref().and_then(|r| {
        (r.verdict.is_none() && r.ready.is_some()).then(|| (r.release.clone(), r.started.clone()))
    });
    Plan {
        deployments,
        serving,
        checks,
        events: work.events,
        finished: work.finished,
        requeue_after: work.requeue,
        state: work.state,
    }
}

/// Whether `wanted` should start rolling out now that nothing is.
fn should_start(state: &EnvironmentState, wanted: &Wanted) -> bool {
    // What runs (or was last tried and left degraded) is what is wanted already.
    let frozen = state.rollout.as_ref().filter(|r| {
        r.verdict.as_ref().is_some_and(|v| !v.healthy) && r.kind == HistoryKind::Rollout
    });
    let target = match frozen {
        Some(r) => Some(&r.release),
        None => state.current.as_ref(),
    };
    if target == Some(&wanted.release) {
        return false;
    }
    if !state.rejected.contains(&wanted.release) {
        return true;
    }
    // A release that failed here comes back only when a person pins it, once per pin.
    wanted.pinned
        && !state.history.iter().any(|h| {
            h.release == wanted.release
                && h.kind == HistoryKind::Pin
                && h.outcome == Outcome::Failed
                && h.reason.starts_with(&wanted.reason)
        })
}

/// The status being decided, and what the decision tells.
struct Work {
    state: EnvironmentState,
    /// Now, to the second, for what is stored.
    stamp: Time,
    events: Vec<Told>,
    finished: Vec<Finished>,
    requeue: Option<Duration>,
}

impl Work {
    fn requeue_in(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(200));
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn tell(&mut self, reason: Reason, note: String, release: &str, kind: HistoryKind) {
        self.events.push(Told {
            announcement: Announcement {
                severity: reason.severity,
                reason: reason.name.to_owned(),
                note,
            },
            release: release.to_owned(),
            kind,
        });
    }

    fn record(&mut self, entry: HistoryEntry) {
        self.state.history.insert(0, entry);
        self.state.history.truncate(HISTORY_LIMIT);
    }

    /// Starts rolling out `wanted`.
    fn start(&mut self, wanted: &Wanted, policy: &Policy) {
        let from = self.state.current.clone();
        let slot = match policy.strategy {
            StrategyType::RollingUpdate => None,
            // Back to what runs already: its own slot. Otherwise the slot beside it.
            StrategyType::BlueGreen if from.as_ref() == Some(&wanted.release) => {
                self.state.slot.or(Some(Slot::Blue))
            }
            StrategyType::BlueGreen => Some(self.state.slot.map_or(Slot::Blue, Slot::other)),
        };
        let kind = if wanted.pinned {
            HistoryKind::Pin
        } else {
            HistoryKind::Rollout
        };
        self.state.rollout = Some(Rollout {
            release: wanted.release.clone(),
            from: from.clone(),
            kind: HistoryKind::Rollout,
            strategy: policy.strategy,
            slot,
            reason: wanted.reason.clone(),
            started: self.stamp.clone(),
            ready: None,
            verdict: None,
            cause: None,
        });
        self.record(HistoryEntry {
            release: wanted.release.clone(),
            from: from.clone(),
            time: self.stamp.clone(),
            kind,
            outcome: Outcome::InProgress,
            reason: wanted.reason.clone(),
        });
        let replacing = from.map(|f| format!(", replacing {f}")).unwrap_or_default();
        self.tell(
            ROLLOUT_STARTED,
            format!(
                "rolling out {}{replacing} with {:?}: {}",
                wanted.release, policy.strategy, wanted.reason
            ),
            &wanted.release,
            HistoryKind::Rollout,
        );
    }

    /// Judges the rollout under way, if any.
    fn judge(&mut self, observed: &Observed, now: &Time) {
        let Some(rollout) = self.state.rollout.clone() else {
            return;
        };
        if rollout.verdict.is_some() {
            return;
        }
        let health = observed.policy.health;
        let replicas = observed.replicas;
        let workload = observed.workload;
        let ready_now = health::all_ready(workload, rollout.slot, &rollout.release, replicas);
        let since = |t: &Time| elapsed(t, now);

        if let Some(signal) = health::fail_fast(
            workload,
            rollout.slot,
            &rollout.release,
            health.max_restarts,
        ) {
            return self.fail(rollout, signal, &observed.policy);
        }
        let deadline: Duration = health.progress_deadline.into();
        let window: Duration = health.stabilization_window.into();
        let Some(ready) = rollout.ready.clone() else {
            if ready_now {
                self.ready(rollout, now);
                // The window starts now; its end, or the first check, is the next look.
                self.requeue_in(window.min(first_look(observed.checks)));
                return;
            }
            let waited = since(&rollout.started);
            if waited >= deadline {
                let signal = health::deadline_passed(
                    workload,
                    rollout.slot,
                    &rollout.release,
                    replicas,
                    deadline,
                );
                return self.fail(rollout, signal, &observed.policy);
            }
            self.requeue_in(deadline - waited);
            return;
        };
        if !ready_now {
            let signal = health::readiness_lost(workload, rollout.slot, &rollout.release, replicas);
            return self.fail(rollout, signal, &observed.policy);
        }
        let stable = since(&ready);
        let over = stable >= window;
        if let Some(signal) = health::checks_failing(observed.checks, window, over) {
            return self.fail(rollout, signal, &observed.policy);
        }
        if !over {
            self.requeue_in((window - stable).min(first_look(observed.checks)));
            return;
        }
        // A check that has sent too few requests to judge (the controller restarted late in
        // the window, say) gets a little longer; one that sends none at all fails.
        if let Some(short) = observed.checks.iter().find(|c| c.requests < 3) {
            let grace = window.max(Duration::from_secs(10));
            if stable < window + grace {
                self.requeue_in(short.interval.max(Duration::from_secs(1)));
                return;
            }
            let last = short
                .last_failure
                .as_deref()
                .map(|l| format!(" (last: {l})"))
                .unwrap_or_default();
            let signal = Signal {
                reason: crate::api::reasons::ERROR_RATE_EXCEEDED,
                message: format!(
                    "only {} requests to {} were answered in the stabilization window and its grace period{last}",
                    short.requests, short.path
                ),
                time: None,
            };
            return self.fail(rollout, signal, &observed.policy);
        }
        self.healthy(rollout, observed.checks, window);
    }

    /// All the pods of the rollout are ready: the window starts (and with `BlueGreen` the
    /// Service switches to them). For a rollback, the previous release serves all traffic
    /// again.
    fn ready(&mut self, mut rollout: Rollout, now: &Time) {
        rollout.ready = Some(self.stamp.clone());
        if rollout.kind == HistoryKind::Rollback {
            let cause = rollout.cause.as_ref();
            let from = cause
                .and_then(|c| c.signal_time.as_ref())
                .or(cause.map(|c| &c.time));
            self.finished.push(Finished {
                strategy: rollout.strategy,
                kind: HistoryKind::Rollback,
                healthy: true,
                reason: ROLLED_BACK.name,
                restored_after: from.map(|f| elapsed(f, now).as_secs_f64()),
            });
        }
        let note = match rollout.strategy {
            StrategyType::BlueGreen => format!(
                "{} is ready and the Service switched to it; stabilization window under way",
                rollout.release
            ),
            StrategyType::RollingUpdate => format!(
                "all pods of {} are ready; stabilization window under way",
                rollout.release
            ),
        };
        self.tell(STABILIZING, note, &rollout.release, rollout.kind);
        self.state.rollout = Some(rollout);
    }

    /// The window passed with nothing wrong.
    fn healthy(&mut self, mut rollout: Rollout, checks: &[CheckFigures], window: Duration) {
        let figures: Vec<String> = checks
            .iter()
            .map(|c| {
                let p95 = c
                    .p95
                    .map(|p| format!(", p95 {}", show(p)))
                    .unwrap_or_default();
                format!(
                    "{} of {} requests to {} failed{p95}",
                    c.failed, c.requests, c.path
                )
            })
            .collect();
        let checked = if figures.is_empty() {
            String::new()
        } else {
            format!("; {}", figures.join("; "))
        };
        let message = format!("ready and stable for {}{checked}", show(window));
        rollout.verdict = Some(Verdict {
            healthy: true,
            reason: ROLLOUT_SUCCEEDED.name.to_owned(),
            time: self.stamp.clone(),
            signal_time: None,
            message: message.clone(),
        });
        self.close_entry(&rollout, Outcome::Succeeded, None);
        if rollout.kind == HistoryKind::Rollout {
            if self.state.current.as_ref() != Some(&rollout.release) {
                self.state.previous = self.state.current.take();
            }
            self.state.current = Some(rollout.release.clone());
            self.tell(
                ROLLOUT_SUCCEEDED,
                format!("{} is healthy: {message}", rollout.release),
                &rollout.release,
                rollout.kind,
            );
        } else {
            self.tell(
                ROLLOUT_SUCCEEDED,
                format!(
                    "{} is healthy again after the rollback: {message}",
                    rollout.release
                ),
                &rollout.release,
                rollout.kind,
            );
        }
        self.state.slot = rollout.slot;
        if rollout.kind == HistoryKind::Rollout {
            self.finished.push(Finished {
                strategy: rollout.strategy,
                kind: HistoryKind::Rollout,
                healthy: true,
                reason: ROLLOUT_SUCCEEDED.name,
                restored_after: None,
            });
        }
        self.state.rollout = Some(rollout);
    }

    /// A signal ends the rollout: roll back when allowed and possible, else stay degraded.
    fn fail(&mut self, mut rollout: Rollout, signal: Signal, policy: &Policy) {
        let verdict = Verdict {
            healthy: false,
            reason: signal.reason.name.to_owned(),
            time: self.stamp.clone(),
            signal_time: signal.time.clone(),
            message: signal.message.clone(),
        };
        self.close_entry(&rollout, Outcome::Failed, Some(&signal.message));
        let failed = rollout.release.clone();
        if rollout.kind == HistoryKind::Rollback {
            self.tell(
                ROLLBACK_FAILED,
                format!(
                    "rolling back to {failed} failed too: {}; pin a release to recover",
                    signal.message
                ),
                &failed,
                HistoryKind::Rollback,
            );
            self.finished.push(Finished {
                strategy: rollout.strategy,
                kind: HistoryKind::Rollout,
                healthy: false,
                reason: ROLLBACK_FAILED.name,
                restored_after: None,
            });
            rollout.verdict = Some(verdict);
            self.state.rollout = Some(rollout);
            return;
        }
        self.state.rejected.retain(|r| r != &failed);
        self.state.rejected.insert(0, failed.clone());
        self.state.rejected.truncate(REJECTED_LIMIT);
        let back_to = rollout.from.clone().filter(|from| from != &failed);
        self.finished.push(Finished {
            strategy: rollout.strategy,
            kind: HistoryKind::Rollout,
            healthy: false,
            reason: signal.reason.name,
            restored_after: None,
        });
        match back_to {
            Some(previous) if policy.automatic_rollback => {
                self.finished.push(Finished {
                    strategy: rollout.strategy,
                    kind: HistoryKind::Rollback,
                    healthy: false,
                    reason: signal.reason.name,
                    restored_after: None,
                });
                let reason = format!("{failed} failed: {}", signal.message);
                self.record(HistoryEntry {
                    release: previous.clone(),
                    from: Some(failed.clone()),
                    time: self.stamp.clone(),
                    kind: HistoryKind::Rollback,
                    outcome: Outcome::InProgress,
                    reason: reason.clone(),
                });
                self.tell(
                    ROLLED_BACK,
                    format!("{reason}; rolling back to {previous}"),
                    &failed,
                    HistoryKind::Rollout,
                );
                self.state.rollout = Some(Rollout {
                    release: previous,
                    from: Some(failed),
                    kind: HistoryKind::Rollback,
                    strategy: rollout.strategy,
                    slot: self.state.slot,
                    reason,
                    started: self.stamp.clone(),
                    ready: None,
                    verdict: None,
                    cause: Some(verdict),
                });
            }
            back_to => {
                let why = if back_to.is_none() {
                    "there is no healthy release to go back to"
                } else {
                    "automatic rollback is off"
                };
                self.tell(
                    ROLLOUT_FAILED,
                    format!(
                        "{failed} failed: {}; {why}, so the environment stays degraded until a release is pinned",
                        signal.message
                    ),
                    &failed,
                    HistoryKind::Rollout,
                );
                rollout.verdict = Some(verdict);
                self.state.rollout = Some(rollout);
            }
        }
    }

    /// Gives the history entry of `rollout` its outcome (the newest entry of its release, still
    /// in progress).
    fn close_entry(&mut self, rollout: &Rollout, outcome: Outcome, failure: Option<&str>) {
        let entry = self.state.history.iter_mut().find(|h| {
            h.release == rollout.release
                && h.outcome == Outcome::InProgress
                && (h.kind == HistoryKind::Rollback) == (rollout.kind == HistoryKind::Rollback)
        });
        if let Some(entry) = entry {
            entry.outcome = outcome;
            if let Some(failure) = failure {
                entry.reason = format!("{}; failed: {failure}", entry.reason);
            }
        }
    }
}

/// How long from `since` to `now` (zero if `since` is later).
fn elapsed(since: &Time, now: &Time) -> Duration {
    let seconds = now.0.duration_since(since.0).as_secs_f64();
    Duration::from_secs_f64(seconds.max(0.0))
}

/// How soon checks' figures are worth a look: every interval, at most once a second.
fn first_look(checks: &[CheckFigures]) -> Duration {
    checks
        .iter()
        .map(|c| c.interval.max(Duration::from_secs(1)))
        .min()
        .unwrap_or(Duration::MAX)
}

/// Where the environment stands.
pub fn phase(state: &EnvironmentState) -> Phase {
    match &state.rollout {
        None if state.current.is_some() => Phase::Healthy,
        None => Phase::Pending,
        Some(r) => match (&r.verdict, r.kind) {
            (None, HistoryKind::Rollback) => Phase::RolledBack,
            (None, _) => Phase::Progressing,
            (Some(v), HistoryKind::Rollback) if v.healthy => Phase::RolledBack,
            (Some(v), _) if v.healthy => Phase::Healthy,
            (Some(_), _) => Phase::Degraded,
        },
    }
}

/// The environment's conditions: `Progressing`, `Degraded` and `RolledBack`, each with the
/// reason and message of the rollout that set it.
fn conditions(state: &EnvironmentState, now: &Time) -> Vec<Condition> {
    let rollout = state.rollout.as_ref();
    let progressing = match rollout {
        Some(r) if r.verdict.is_none() => {
            let reason = if r.ready.is_some() {
                STABILIZING
            } else {
                ROLLOUT_STARTED
            };
            Desired::new(
                PROGRESSING,
                true,
                reason.name,
                format!("rolling out {}: {}", r.release, r.reason),
            )
        }
        Some(r) => {
            let verdict = r.verdict.as_ref();
            Desired::new(
                PROGRESSING,
                false,
                verdict.map_or(ROLLOUT_SUCCEEDED.name, |v| v.reason.as_str()),
                verdict.map(|v| v.message.clone()).unwrap_or_default(),
            )
        }
        None => Desired::new(
            PROGRESSING,
            false,
            NO_RELEASE.name,
            "no release has been chosen for this environment yet",
        ),
    };
    let degraded = match rollout.and_then(|r| r.verdict.as_ref().filter(|v| !v.healthy)) {
        Some(v) => Desired::new(DEGRADED, true, v.reason.as_str(), v.message.clone()),
        None => Desired::new(DEGRADED, false, ROLLOUT_SUCCEEDED.name, ""),
    };
    let rolled_back = match rollout.filter(|r| r.kind == HistoryKind::Rollback) {
        Some(r) => Desired::new(
            ROLLED_BACK_CONDITION,
            true,
            ROLLED_BACK.name,
            format!("back on {}: {}", r.release, r.reason),
        ),
        None => Desired::new(ROLLED_BACK_CONDITION, false, ROLLOUT_SUCCEEDED.name, ""),
    };
    conditions::merge(
        &state.conditions,
        &[progressing, degraded, rolled_back],
        None,
        now,
    )
}

/// Which release each Deployment runs and where the Service sends traffic, from the state:
/// the healthy release where it runs, and the rollout under way (or left degraded) where it
/// runs; everything else goes.
fn placements(state: &EnvironmentState) -> (BTreeMap<Placement, String>, Serving) {
    let mut deployments = BTreeMap::new();
    if let Some(current) = &state.current {
        deployments.insert(state.slot, current.clone());
    }
    let active = state.rollout.as_ref().filter(|r| {
        r.verdict
            .as_ref()
            .is_none_or(|v| !v.healthy && r.kind == HistoryKind::Rollout)
    });
    let Some(rollout) = active else {
        let serving = match (&state.current, state.slot) {
            (Some(current), Some(_)) => Serving::Release(current.clone()),
            _ => Serving::All,
        };
        return (deployments, serving);
    };
    deployments.insert(rollout.slot, rollout.release.clone());
    let serving = match rollout.strategy {
        StrategyType::RollingUpdate => Serving::All,
        StrategyType::BlueGreen => match &state.current {
            Some(current) if rollout.ready.is_none() => Serving::Release(current.clone()),
            _ => Serving::Release(rollout.release.clone()),
        },
    };
    (deployments, serving)
}

#[cfg(test)]
mod tests;
