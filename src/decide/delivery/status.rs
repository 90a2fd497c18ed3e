//! What an environment's state shows: its phase, its conditions (`Progressing`, `Degraded`,
//! `RolledBack`, `AwaitingApproval`), and which release each Deployment runs and where the
//! Service sends traffic.

use std::collections::BTreeMap;

use super::Serving;
use super::health::Placement;
use crate::api::application::{EnvironmentState, HistoryKind, Phase};
use crate::api::conditions::{
    self, AWAITING_APPROVAL_CONDITION, DEGRADED, Desired, PROGRESSING, ROLLED_BACK_CONDITION,
};
use crate::api::environment::StrategyType;
use crate::api::reasons::{
    AWAITING_APPROVAL, NO_RELEASE, ROLLED_BACK, ROLLOUT_STARTED, ROLLOUT_SUCCEEDED, STABILIZING,
    VERIFYING,
};
use crate::api::{Condition, Time};

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
pub(super) fn conditions(state: &EnvironmentState, awaiting: bool, now: &Time) -> Vec<Condition> {
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
pub(super) fn placements(state: &EnvironmentState) -> (BTreeMap<Placement, String>, Serving) {
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
