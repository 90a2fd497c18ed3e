//! Judging the rollout under way from what was observed (`health`): progress until every pod
//! of the release is ready (failing fast on a crash loop, a pull error, an unschedulable pod,
//! and at the progress deadline), then the stabilization window (readiness held, restarts under
//! `maxRestarts`, HTTP checks under their thresholds), then the verification if the
//! Environment has one (`verify`), then the verdict (`verdict`).

use std::time::Duration;

use super::health::{self, CheckFigures, Signal};
use super::{Finished, Observed, Work};
use crate::api::Time;
use crate::api::application::{HistoryKind, Rollout};
use crate::api::environment::StrategyType;
use crate::api::reasons::{ROLLED_BACK, STABILIZING};

impl Work {
    /// Judges the rollout under way, if any.
    pub(super) fn judge(&mut self, observed: &Observed, now: &Time) {
        let Some(mut rollout) = self.state.rollout.clone() else {
            return;
        };
        if rollout.verdict.is_some() {
            return;
        }
        let health = observed.policy.health;
        let replicas = (observed.replicas)(&rollout.release);
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
        if let Some(short) = observed.checks.iter().find(|c| c.counts.requests < 3) {
            let grace = window.max(Duration::from_secs(10));
            if stable < window + grace {
                self.requeue_in(short.interval.max(Duration::from_secs(1)));
                return;
            }
            let last = short
                .counts
                .last_failure
                .as_deref()
                .map(|l| format!(" (last: {l})"))
                .unwrap_or_default();
            let signal = Signal {
                reason: crate::api::reasons::ERROR_RATE_EXCEEDED,
                message: format!(
                    "only {} requests to {} were answered in the stabilization window and its grace period{last}",
                    short.counts.requests, short.path
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

    /// All the pods of the rollout are ready: the window starts (and with `BlueGreen` the
    /// Service switches to them). For a rollback, the previous release serves all traffic
    /// again.
    pub(super) fn ready(&mut self, mut rollout: Rollout, now: &Time) {
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
}

/// How long from `since` to `now` (zero if `since` is later).
pub(super) fn elapsed(since: &Time, now: &Time) -> Duration {
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
