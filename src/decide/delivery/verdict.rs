//! The verdict of a rollout: healthy once its window (and verification) passed, making its
//! release current; or failed at the first signal, rejecting the release and rolling back to
//! the release that was healthy before it (a rollback, judged like any rollout) unless
//! automatic rollback is off or there is none. Each verdict closes its history entry.

use std::time::Duration;

use super::health::{CheckFigures, Signal, show};
use super::{Finished, Policy, REJECTED_LIMIT, Work, promotion};
use crate::api::application::{HistoryEntry, HistoryKind, Outcome, Rollout, Verdict};
use crate::api::reasons::{ROLLBACK_FAILED, ROLLED_BACK, ROLLOUT_FAILED, ROLLOUT_SUCCEEDED};

impl Work {
    /// The window passed with nothing wrong.
    pub(super) fn healthy(
        &mut self,
        mut rollout: Rollout,
        checks: &[CheckFigures],
        window: Duration,
    ) {
        let figures: Vec<String> = checks
            .iter()
            .map(|c| {
                let p95 = c
                    .counts
                    .p95
                    .map(|p| format!(", p95 {}", show(p)))
                    .unwrap_or_default();
                format!(
                    "{} of {} requests to {} failed{p95}",
                    c.counts.failed, c.counts.requests, c.path
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
    pub(super) fn fail(&mut self, mut rollout: Rollout, signal: Signal, policy: &Policy) {
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
                    pin_reason: None,
                    record: None,
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
    pub(super) fn close_entry(
        &mut self,
        rollout: &Rollout,
        outcome: Outcome,
        failure: Option<&str>,
    ) {
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
