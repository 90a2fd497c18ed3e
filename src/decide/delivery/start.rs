//! Starting a rollout: whether the release promotion chose should start now that nothing rolls
//! out (`should_start`: not what runs already, not a release that failed here unless a person
//! pins it, once per pin), and the start itself: the `Rollout` record with its slot, the
//! history entry and the Event that names the kind of change.

use super::{Policy, Wanted, Work, promotion};
use crate::api::application::{
    EnvironmentState, HistoryEntry, HistoryKind, Outcome, Rollout, Slot,
};
use crate::api::environment::StrategyType;
use crate::api::reasons::{
    APPROVED, MANUAL_ROLLBACK, PIN_OVERRIDE, PINNED, PROMOTED, ROLLOUT_STARTED,
};

/// Whether `wanted` should start rolling out now that nothing is.
pub(super) fn should_start(state: &EnvironmentState, wanted: &Wanted) -> bool {
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
    // A release that failed here comes back only when a person pins it, once per pin: not
    // again under the pin it failed under (the same reason, as its history entry recorded it).
    wanted.pinned
        && !state.history.iter().any(|h| {
            h.release == wanted.release
                && h.outcome == Outcome::Failed
                && h.pin_reason.as_ref() == Some(&wanted.reason)
        })
}

impl Work {
    /// Starts rolling out the release promotion chose, if it should start now that nothing
    /// rolls out; says whether it did.
    pub(super) fn start_wanted(&mut self, choice: &promotion::Choice, policy: &Policy) -> bool {
        match &choice.wanted {
            Some(wanted) if should_start(&self.state, wanted) => {
                self.start(wanted, policy);
                true
            }
            _ => false,
        }
    }

    /// Starts rolling out `wanted`.
    pub(super) fn start(&mut self, wanted: &Wanted, policy: &Policy) {
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
            pin_reason: wanted.pinned.then(|| wanted.reason.clone()),
            record: None,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;

    fn wanted(release: &str, pin: Option<&str>) -> Wanted {
        Wanted {
            release: release.into(),
            reason: pin.unwrap_or("shop-2 is the newest release").into(),
            pinned: pin.is_some(),
            kind: if pin.is_some() {
                HistoryKind::Override
            } else {
                HistoryKind::Rollout
            },
            actor: None,
        }
    }

    /// A failed rollout of `release`, under a pin with `pin` as its reason if any.
    fn failed(release: &str, pin: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            from: Some("shop-1".into()),
            time: Time(jiff::Timestamp::UNIX_EPOCH),
            kind: if pin.is_some() {
                HistoryKind::Override
            } else {
                HistoryKind::Rollout
            },
            outcome: Outcome::Failed,
            reason: format!("{}; failed: crash loop", pin.unwrap_or("newest")),
            actor: None,
            pin_reason: pin.map(str::to_owned),
            record: None,
        }
    }

    #[test]
    fn a_release_that_failed_here_starts_again_only_under_a_new_pin() {
        let cases = [
            (
                "a release that never failed here starts",
                None,
                vec![],
                true,
            ),
            (
                "a release that failed here does not start by itself",
                None,
                vec![failed("shop-2", None)],
                false,
            ),
            (
                "a pin of a release that failed here starts it",
                Some("INC-7 retry"),
                vec![failed("shop-2", None)],
                true,
            ),
            (
                "the pin it failed under does not start it again",
                Some("INC-7 retry"),
                vec![
                    failed("shop-2", None),
                    failed("shop-2", Some("INC-7 retry")),
                ],
                false,
            ),
            (
                "a pin whose reason begins like the failed pin's is another pin",
                Some("INC-7"),
                vec![
                    failed("shop-2", None),
                    failed("shop-2", Some("INC-7 retry")),
                ],
                true,
            ),
            (
                "the same pin's failure of another release does not count",
                Some("INC-7 retry"),
                vec![
                    failed("shop-2", None),
                    failed("shop-3", Some("INC-7 retry")),
                ],
                true,
            ),
        ];
        for (name, pin, history, starts) in cases {
            let state = EnvironmentState {
                name: "prod".into(),
                current: Some("shop-1".into()),
                rejected: vec!["shop-2".into()]
                    .into_iter()
                    .filter(|_| !history.is_empty())
                    .collect(),
                history,
                ..EnvironmentState::default()
            };
            assert_eq!(
                should_start(&state, &wanted("shop-2", pin)),
                starts,
                "{name}"
            );
        }
    }
}
