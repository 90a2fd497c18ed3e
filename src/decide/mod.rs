//! Pure decision logic: observed state and the time in, a [`Decision`] out (the new status,
//! the actions to take, when to look again). No kube client, no tokio, no clock: the time is
//! an input like any other fact, and `tests/purity.rs` fails the build if a file here imports
//! one of them. Every function here is tested with plain data.
//!
//! Each kind has one file. What they share: a [`Blocker`] is something only a person can fix
//! (a missing Environment, a Secret without the expected key), and [`readiness`] turns "ready"
//! or "blocked" into the kstatus conditions every Ferry object carries. The rules the shell
//! applies around every reconcile (which Event a transition deserves, how long to back off)
//! live here too, in `events` and `backoff`.

pub mod application;
pub mod backoff;
pub mod build;
pub mod buildjob;
pub mod delivery;
pub mod environment;
pub mod events;
pub mod leadership;
pub mod ownership;
pub mod records;
pub mod release;
pub mod run_spec;
pub mod secrets;
pub mod shard;

use std::time::Duration;

use crate::api::Time;
use crate::api::conditions::{Desired, READY, RECONCILING, STALLED};
use crate::api::reasons::Reason;

/// What a decision function returns: the status to write, the actions to take, and when to
/// look again even if nothing changes (a deadline, a window closing, a Secret that has no
/// watch). `None` means only a change wakes the object again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<S, A = NoAction> {
    pub status: S,
    pub actions: Vec<A>,
    pub requeue_after: Option<Duration>,
}

impl<S, A> Decision<S, A> {
    /// A decision that only writes a status.
    pub fn status(status: S) -> Self {
        Self {
            status,
            actions: Vec::new(),
            requeue_after: None,
        }
    }

    /// The same decision, looked at again after `after` at the latest.
    pub fn requeue_after(mut self, after: Option<Duration>) -> Self {
        self.requeue_after = match (self.requeue_after, after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

/// The actions of a kind that acts only through its status (today every kind: builds and
/// rollouts bring their own action types). It has no values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAction {}

/// Something that stops an object from making progress until a person changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// The reason, used for the condition and the Event.
    pub reason: Reason,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Blocker {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The one command that grants Ferry's ServiceAccount (`namespace:name`) the ClusterRole
/// `<name>-<role>` in `namespace`: the ClusterRoles are named after the ServiceAccount
/// (`ferry` → `ferry-tenant`, a Helm release `shop-ferry` → `shop-ferry-tenant`), as the
/// manifests and the chart name them.
pub fn grant_command(namespace: &str, service_account: &str, role: &str) -> String {
    let name = service_account
        .rsplit_once(':')
        .map_or(service_account, |(_, name)| name);
    format!(
        "kubectl -n {namespace} create rolebinding {name}-{role} --clusterrole={name}-{role} --serviceaccount={service_account}"
    )
}

/// Where an object stands, in kstatus terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Everything it needs exists and it has done its work.
    Ready { reason: Reason, message: String },
    /// Work is under way; nothing is wrong.
    InProgress { reason: Reason, message: String },
    /// It cannot proceed until a person fixes something.
    Blocked(Blocker),
}

/// The kstatus conditions for a readiness: `Ready`, plus `Reconciling` while in progress or
/// `Stalled` while blocked. Absent conditions mean "not abnormal", as kstatus reads them.
pub fn readiness(state: &Readiness) -> Vec<Desired> {
    match state {
        Readiness::Ready { reason, message } => {
            vec![Desired::new(READY, true, reason.name, message.clone())]
        }
        Readiness::InProgress { reason, message } => vec![
            Desired::new(READY, false, reason.name, message.clone()),
            Desired::new(RECONCILING, true, reason.name, message.clone()),
        ],
        Readiness::Blocked(blocker) => vec![
            Desired::new(READY, false, blocker.reason.name, blocker.message.clone()),
            Desired::new(STALLED, true, blocker.reason.name, blocker.message.clone()),
        ],
    }
}

/// `now` cut to whole seconds, the precision the API server stores: a status that holds a
/// finer time would differ from its own read-back and be written again on every pass.
pub fn whole_seconds(now: &Time) -> Time {
    let seconds = now.0.as_second();
    Time(jiff::Timestamp::from_second(seconds).unwrap_or(now.0))
}

/// Joins names as "a, b and c" for messages.
pub fn join_names(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_joined_for_messages() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(join_names(&names(&["a"])), "\"a\"");
        assert_eq!(
            join_names(&names(&["a", "b", "c"])),
            "\"a\", \"b\" and \"c\""
        );
    }

    #[test]
    fn a_blocked_object_is_not_ready_and_stalled() {
        let blocker = Blocker::new(crate::api::reasons::UPSTREAM_CYCLE, "fix it");
        let conditions = readiness(&Readiness::Blocked(blocker));
        assert_eq!(conditions.len(), 2);
        assert!(!conditions[0].status);
        assert_eq!(conditions[1].type_, STALLED);
        assert!(conditions[1].status);
    }

    #[test]
    fn the_sooner_requeue_wins() {
        let cases = [
            ("none and none", None, None, None),
            ("only the first", Some(5), None, Some(5)),
            ("only the second", None, Some(7), Some(7)),
            ("the sooner of two", Some(9), Some(4), Some(4)),
        ];
        for (name, first, second, want) in cases {
            let decision = Decision::<(), NoAction>::status(())
                .requeue_after(first.map(Duration::from_secs))
                .requeue_after(second.map(Duration::from_secs));
            assert_eq!(
                decision.requeue_after,
                want.map(Duration::from_secs),
                "{name}"
            );
        }
    }
}
