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
//! One file per stage, each adding its steps to [`Work`] (the state being decided): `start`
//! (whether and how a rollout starts), `judge` (progress and the window, from `health`),
//! `verify`, `verdict` (healthy, or failed and rolled back), `candidate` (what waits, what
//! was superseded) and `status` (phase, conditions, which Deployment runs what). [`plan`]
//! decides one environment with them.
//!
//! [`pipeline`] is the decision the shell calls: every environment of an Application in
//! pipeline order, with what failed upstream of each, turned into typed actions (apply and
//! delete Deployments and Services, keep checks and verifications running, create and delete
//! test pods, Events, metrics). `retain` says which workloads and test pods outlive a pass,
//! `runs` names what runs beside a rollout (`RunKey`).
//!
//! Everything a rollout needs to carry on after a restart of the controller is in the
//! environment's status (`Rollout`): its start (the deadline counts from it), its ready time
//! (the window counts from it), the strategy and slot it started with. The time is an input,
//! so deadlines and windows become computed requeues.

mod candidate;
pub mod health;
mod identity;
mod judge;
pub mod pipeline;
pub mod promotion;
pub mod retain;
pub mod runs;
mod start;
mod status;
mod verdict;
pub mod verify;

use std::collections::BTreeMap;
use std::time::Duration;

use self::health::{CheckFigures, Placement, Workload};
pub use self::pipeline::{Action, pipeline};
pub use self::status::phase;
use self::status::{conditions, placements};
use super::events::Announcement;
use super::whole_seconds;
use crate::api::Time;
use crate::api::application::{EnvironmentState, HistoryEntry, HistoryKind, Phase};
use crate::api::environment::{HealthPolicy, StrategyType};
use crate::api::reasons::Reason;

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
    /// Who asked: `ferry`, or the pin's `by` (the user who wrote it).
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
    /// Pods per Deployment of a release in this environment (the entry's override, else what
    /// the release's run configuration says).
    pub replicas: &'a dyn Fn(&str) -> i32,
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
}

#[cfg(test)]
mod tests;
