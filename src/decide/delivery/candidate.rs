//! The candidate: the release that should come to an environment and neither runs nor rolls
//! out there. A candidate replaced before it was rolled out is recorded as `Superseded`; a new
//! one that waits for a person's approval is announced once.

use super::{Work, promotion};
use crate::api::application::{HistoryEntry, HistoryKind, Outcome};
use crate::api::reasons::{AWAITING_APPROVAL, SUPERSEDED};

impl Work {
    /// Sets the candidate: the release that should come here and is not running or rolling
    /// out. A candidate replaced before it was rolled out is recorded as superseded; a new one
    /// that waits for approval is announced.
    pub(super) fn wait_for(&mut self, choice: &promotion::Choice) {
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
                pin_reason: None,
                record: None,
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
}
