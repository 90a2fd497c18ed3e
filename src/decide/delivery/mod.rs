//! Delivery: one Application in one Environment. Which release should run there, how the
//! rollout under way stands, its verdict, and the rollback a failed verdict starts; and from
//! that, which Deployments run which release and what the Service sends traffic to.
//!
//! A rollout goes through these stages, each judged from what was observed (`health`):
//! 1. **Progress**: until the release's pods are all ready. A crash loop, a pull error, an
//!    unschedulable pod or a container that cannot start fails it at once; the progress
//!    deadline fails it if it is still not ready then.
//! 2. **Stabilization window**: from the moment they were all ready (with `BlueGreen`, the
//!    moment the Service switched to them). Readiness must hold, restarts stay under
//!    `maxRestarts`, and the HTTP checks stay under their error rate and p95 latency.
//! 3. **Verification** (when the Environment has one): a test pod or HTTP GETs after the
//!    window, within its timeout; readiness and the checks are still judged meanwhile.
//! 4. **Verdict**: healthy once the window (and the verification) passed; otherwise failed at
//!    the first signal, with the signal and its figures. A failed rollout goes back to the
//!    release that was healthy before it (a rollback, judged like any rollout) unless
//!    automatic rollback is off or there is none, in which case the environment stays
//!    `Degraded` as it is.
//!
//! Which release should run comes from `promotion`; a newer one waits for the verdict of the
//! rollout under way, then starts in the same decision.
//!
//! Everything a rollout needs to carry on after a restart of the controller is in the
//! environment's status (`Rollout`): its start (the deadline counts from it), its ready time
//! (the window counts from it), the strategy and slot it started with. The time is an input,
//! so deadlines and windows become computed requeues.

pub mod health;
pub mod promotion;

use std::collections::BTreeMap;
use std::time::Duration;

use self::health::{CheckFigures, Placement, Signal, Workload, show};
use super::events::Announcement;
use super::whole_seconds;
use crate::api::application::{
    EnvironmentState, HistoryEntry, HistoryKind, Outcome, Phase, Rollout, Slot, Verdict,
    VerificationRun,
};
use crate::api::conditions::{
    self, AWAITING_APPROVAL_CONDITION, DEGRADED, Desired, PROGRESSING, ROLLED_BACK_CONDITION,
};
use crate::api::environment::{HealthPolicy, StrategyType};
use crate::api::reasons::{
    APPROVED, AWAITING_APPROVAL, MANUAL_ROLLBACK, NO_RELEASE, PIN_OVERRIDE, PINNED, PROMOTED,
    ROLLBACK_FAILED, ROLLED_BACK, ROLLOUT_FAILED, ROLLOUT_STARTED, ROLLOUT_SUCCEEDED, Reason,
    STABILIZING, SUPERSEDED, VERIFICATION_FAILED, VERIFICATION_PASSED, VERIFYING,
};
use crate::api::{Condition, Time};

/// History entries kept per environment unless the Application says otherwise.
pub const HISTORY_LIMIT: usize = 20;
/// Rejected releases remembered per environment.
pub const REJECTED_LIMIT: usize = 20;

/// How the Environment rolls out and judges.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    pub strategy: StrategyType,
    pub health: &'a HealthPolicy,
    pub automatic_rollback: bool,
    /// How long the Environment's verification may take, when it has one.
    pub verification: Option<Duration>,
}

/// The release the environment should run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub release: String,
    /// "newest release", or the pin's reason.
    pub reason: String,
    /// A person chose it (a pin): it is rolled out even if it failed here before, once.
    pub pinned: bool,
    /// What kind of change rolling it out is: `Rollout`, `Promotion`, or for a pin `Approval`,
    /// `Pin`, `ManualRollback` or `Override`.
    pub kind: HistoryKind,
    /// Who asked: `ferry`, or the field manager that wrote the pin.
    pub actor: Option<String>,
}

/// What the shell found of the verification of the rollout under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerificationReport {
    Running,
    Passed {
        message: String,
    },
    Failed {
        message: String,
        log: Option<String>,
    },
}

/// What the shell observed for one environment.
pub struct Observed<'a> {
    /// The environment's state as stored in the Application's status.
    pub state: &'a EnvironmentState,
    pub policy: Policy<'a>,
    /// What promotion chose (`promotion::choose`).
    pub choice: promotion::Choice,
    /// How many history entries to keep.
    pub history_limit: usize,
    /// Pods per Deployment in this environment.
    pub replicas: i32,
    pub workload: &'a Workload,
    /// The figures of the HTTP checks of the rollout in its window (empty without checks).
    pub checks: &'a [CheckFigures],
    /// The verification of the rollout under way, once it was started.
    pub verification: Option<VerificationReport>,
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
    pub release: String,
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
    /// The rollout whose verification should run now: (release, its start).
    pub verify: Option<(String, Time)>,
    /// A rollout started into this environment, of this kind (for the promotion metrics).
    pub started: Option<HistoryKind>,
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
        history_limit: observed.history_limit.max(1),
        started: None,
    };
    let choice = &observed.choice;
    let idle = idle_now(&work.state);
    if idle {
        work.start_wanted(choice, &observed.policy);
    }
    work.judge(observed, now);
    // The rollout under way just had its verdict: a newer release that waited starts now.
    if !idle && idle_now(&work.state) && work.start_wanted(choice, &observed.policy) {
        work.judge(observed, now);
    }
    // A rollback judged at once: with BlueGreen the previous release is still up and ready,
    // so the Service switches back in this very decision.
    if work.state.rollout.as_ref().is_some_and(|r| {
        r.kind == HistoryKind::Rollback && r.verdict.is_none() && r.ready.is_none()
    }) {
        work.judge(observed, now);
    }
    work.wait_for(choice);
    let pinned = choice.wanted.as_ref().filter(|w| w.pinned);
    let phase = match phase(&work.state) {
        Phase::Healthy
            if pinned.is_some_and(|p| work.state.current.as_ref() == Some(&p.release)) =>
        {
            Phase::Pinned
        }
        Phase::Healthy | Phase::Pending | Phase::RolledBack
            if choice.awaiting_approval
                && work.state.candidate.is_some()
                && idle_now(&work.state) =>
        {
            Phase::AwaitingApproval
        }
        phase => phase,
    };
    work.state.phase = Some(phase);
    work.state.conditions = conditions(&work.state, choice.awaiting_approval, &work.stamp);
    let (deployments, serving) = placements(&work.state);
    let under_way = work.state.rollout.as_ref().filter(|r| r.verdict.is_none());
    let checks = under_way
        .filter(|r| r.ready.is_some())
        .map(|r| (r.release.clone(), r.started.clone()));
    let verify = under_way
        .filter(|r| r.verification.as_ref().is_some_and(|v| v.passed.is_none()))
        .map(|r| (r.release.clone(), r.started.clone()));
    Plan {
        deployments,
        serving,
        checks,
        verify,
        started: work.started,
        events: work.events,
        finished: work.finished,
        requeue_after: work.requeue,
        state: work.state,
    }
}

/// Whether no rollout is under way.
fn idle_now(state: &EnvironmentState) -> bool {
    state.rollout.as_ref().is_none_or(|r| r.verdict.is_some())
}

/// Whether a history entry records a person's pin.
fn is_pin(kind: HistoryKind) -> bool {
    matches!(
        kind,
        HistoryKind::Pin
            | HistoryKind::Approval
            | HistoryKind::ManualRollback
            | HistoryKind::Override
    )
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
                && is_pin(h.kind)
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
    history_limit: usize,
    started: Option<HistoryKind>,
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
        self.state.history.truncate(self.history_limit);
    }

    /// Sets the candidate: the release that should come here and is not running or rolling
    /// out. A candidate replaced before it was rolled out is recorded as superseded; a new one
    /// that waits for approval is announced.
    fn wait_for(&mut self, choice: &promotion::Choice) {
        let rolling = self
            .state
            .rollout
            .as_ref()
            .filter(|r| r.verdict.is_none())
            .map(|r| r.release.clone());
        let candidate = choice
            .candidate
            .clone()
            .filter(|c| Some(c) != self.state.current.as_ref() && Some(c) != rolling.as_ref());
        let before = self.state.candidate.clone();
        let tried_here = before.as_ref().is_some_and(|old| {
            self.state
                .history
                .iter()
                .any(|h| &h.release == old && h.kind != HistoryKind::Superseded)
        });
        if let Some(old) = &before
            && candidate.as_ref() != Some(old)
            && !tried_here
            && let Some(by) = candidate.as_ref().or(rolling.as_ref())
        {
            let reason = format!("superseded by {by} before it was rolled out here");
            self.record(HistoryEntry {
                release: old.clone(),
                from: self.state.current.clone(),
                time: self.stamp.clone(),
                kind: HistoryKind::Superseded,
                outcome: Outcome::Skipped,
                reason: reason.clone(),
                actor: Some(promotion::FERRY.to_owned()),
            });
            self.tell(
                SUPERSEDED,
                format!("{old} was {reason}"),
                old,
                HistoryKind::Rollout,
            );
        }
        if choice.awaiting_approval
            && let Some(new) = &candidate
            && before.as_ref() != Some(new)
        {
            self.tell(
                AWAITING_APPROVAL,
                format!(
                    "{new} is ready to come here and waits for approval: pin it, with a reason, in the Application's entry for this environment"
                ),
                new,
                HistoryKind::Rollout,
            );
        }
        self.state.candidate = candidate;
    }

    /// Starts rolling out the release promotion chose, if it should start now that nothing
    /// rolls out; says whether it did.
    fn start_wanted(&mut self, choice: &promotion::Choice, policy: &Policy) -> bool {
        match &choice.wanted {
            Some(wanted) if should_start(&self.state, wanted) => {
                self.start(wanted, policy);
                true
            }
            _ => false,
        }
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
            verification: None,
        });
        self.started = Some(wanted.kind);
        self.record(HistoryEntry {
            release: wanted.release.clone(),
            from: from.clone(),
            time: self.stamp.clone(),
            kind: wanted.kind,
            outcome: Outcome::InProgress,
            reason: wanted.reason.clone(),
            actor: wanted.actor.clone(),
        });
        let replacing = from.map(|f| format!(", replacing {f}")).unwrap_or_default();
        let by = wanted
            .actor
            .as_deref()
            .filter(|_| wanted.pinned)
            .map(|a| format!(" (pinned by {a})"))
            .unwrap_or_default();
        let (reason, what) = match wanted.kind {
            HistoryKind::Promotion => (PROMOTED, "promoting"),
            HistoryKind::Approval => (APPROVED, "approved: rolling out"),
            HistoryKind::Pin => (PINNED, "pinned: rolling out"),
            HistoryKind::ManualRollback => (MANUAL_ROLLBACK, "rolling back by hand to"),
            HistoryKind::Override => (
                PIN_OVERRIDE,
                "override: rolling out a release that failed before,",
            ),
            _ => (ROLLOUT_STARTED, "rolling out"),
        };
        self.tell(
            reason,
            format!(
                "{what} {}{replacing} with {:?}{by}: {}",
                wanted.release, policy.strategy, wanted.reason
            ),
            &wanted.release,
            HistoryKind::Rollout,
        );
    }

    /// Judges the rollout under way, if any.
    fn judge(&mut self, observed: &Observed, now: &Time) {
        let Some(mut rollout) = self.state.rollout.clone() else {
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
        if rollout.kind == HistoryKind::Rollout
            && let Some(timeout) = observed.policy.verification
        {
            match self.verify(rollout, observed, timeout, now) {
                Some(verified) => rollout = verified,
                None => return,
            }
        }
        self.healthy(rollout, observed.checks, window);
    }

    /// The verification stage, once the window passed: starts it, waits for it, fails the
    /// rollout when it fails or times out. Returns the rollout when it passed.
    fn verify(
        &mut self,
        mut rollout: Rollout,
        observed: &Observed,
        timeout: Duration,
        now: &Time,
    ) -> Option<Rollout> {
        let Some(mut run) = rollout.verification.clone() else {
            rollout.verification = Some(VerificationRun {
                started: self.stamp.clone(),
                passed: None,
                finished: None,
                message: None,
                log: None,
            });
            self.tell(
                VERIFYING,
                format!(
                    "{} passed its stabilization window; verifying it (timeout {})",
                    rollout.release,
                    show(timeout)
                ),
                &rollout.release,
                HistoryKind::Rollout,
            );
            self.state.rollout = Some(rollout);
            self.requeue_in(Duration::from_secs(1));
            return None;
        };
        if run.passed == Some(true) {
            return Some(rollout);
        }
        let failure = match &observed.verification {
            Some(VerificationReport::Passed { message }) => {
                run.passed = Some(true);
                run.finished = Some(self.stamp.clone());
                run.message = Some(message.clone());
                self.tell(
                    VERIFICATION_PASSED,
                    format!("{} passed its verification: {message}", rollout.release),
                    &rollout.release,
                    HistoryKind::Rollout,
                );
                rollout.verification = Some(run);
                return Some(rollout);
            }
            Some(VerificationReport::Failed { message, log }) => (message.clone(), log.clone()),
            _ if elapsed(&run.started, now) >= timeout => (
                format!("the verification did not finish within {}", show(timeout)),
                None,
            ),
            _ => {
                self.state.rollout = Some(rollout);
                self.requeue_in(Duration::from_secs(1));
                return None;
            }
        };
        let (message, log) = failure;
        run.passed = Some(false);
        run.finished = Some(self.stamp.clone());
        run.message = Some(message.clone());
        run.log = log;
        rollout.verification = Some(run);
        self.tell(
            VERIFICATION_FAILED,
            format!("{} failed its verification: {message}", rollout.release),
            &rollout.release,
            HistoryKind::Rollout,
        );
        let signal = Signal {
            reason: VERIFICATION_FAILED,
            message: format!("verification failed: {message}"),
            time: None,
        };
        self.fail(rollout, signal, &observed.policy);
        None
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
                release: rollout.release.clone(),
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
            log: None,
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
                release: rollout.release.clone(),
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
            log: rollout
                .verification
                .as_ref()
                .filter(|v| v.passed == Some(false))
                .and_then(|v| v.log.clone()),
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
                release: rollout.release.clone(),
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
            release: rollout.release.clone(),
            strategy: rollout.strategy,
            kind: HistoryKind::Rollout,
            healthy: false,
            reason: signal.reason.name,
            restored_after: None,
        });
        match back_to {
            Some(previous) if policy.automatic_rollback => {
                self.finished.push(Finished {
                    release: rollout.release.clone(),
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
                    actor: Some(promotion::FERRY.to_owned()),
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
                    verification: None,
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
fn conditions(state: &EnvironmentState, awaiting: bool, now: &Time) -> Vec<Condition> {
    let rollout = state.rollout.as_ref();
    let progressing = match rollout {
        Some(r) if r.verdict.is_none() => {
            let reason = if r.verification.is_some() {
                VERIFYING
            } else if r.ready.is_some() {
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
    let awaiting = match state.candidate.as_ref().filter(|_| awaiting) {
        Some(candidate) => Desired::new(
            AWAITING_APPROVAL_CONDITION,
            true,
            AWAITING_APPROVAL.name,
            format!(
                "{candidate} waits for approval: pin it, with a reason, in the Application's entry for {}",
                state.name
            ),
        ),
        None => Desired::new(
            AWAITING_APPROVAL_CONDITION,
            false,
            NO_RELEASE.name,
            "no release waits for approval",
        ),
    };
    conditions::merge(
        &state.conditions,
        &[progressing, degraded, rolled_back, awaiting],
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
