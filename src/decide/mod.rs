//! Pure decision logic: observed state and the time in, new status out. No kube client, no
//! clock; every function here is tested with plain data.
//!
//! Each kind has one file. What they share: a [`Blocker`] is something only a person can fix
//! (a missing Environment, a Secret without the expected key), and [`readiness`] turns "ready"
//! or "blocked" into the kstatus conditions every Ferry object carries.

pub mod application;
pub mod buildjob;
pub mod environment;
pub mod leadership;
pub mod release;
pub mod secrets;

use crate::api::Time;
use crate::api::conditions::{Desired, READY, RECONCILING, STALLED};

/// Something that stops an object from making progress until a person changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// CamelCase reason, used for the condition and the Event.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Blocker {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Where an object stands, in kstatus terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Everything it needs exists and it has done its work.
    Ready {
        reason: &'static str,
        message: String,
    },
    /// Work is under way; nothing is wrong.
    InProgress {
        reason: &'static str,
        message: String,
    },
    /// It cannot proceed until a person fixes something.
    Blocked(Blocker),
}

/// The kstatus conditions for a readiness: `Ready`, plus `Reconciling` while in progress or
/// `Stalled` while blocked. Absent conditions mean "not abnormal", as kstatus reads them.
pub fn readiness(state: &Readiness) -> Vec<Desired> {
    match state {
        Readiness::Ready { reason, message } => {
            vec![Desired::new(READY, true, *reason, message.clone())]
        }
        Readiness::InProgress { reason, message } => vec![
            Desired::new(READY, false, *reason, message.clone()),
            Desired::new(RECONCILING, true, *reason, message.clone()),
        ],
        Readiness::Blocked(blocker) => vec![
            Desired::new(READY, false, blocker.reason, blocker.message.clone()),
            Desired::new(STALLED, true, blocker.reason, blocker.message.clone()),
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
        let conditions = readiness(&Readiness::Blocked(Blocker::new("X", "fix it")));
        assert_eq!(conditions.len(), 2);
        assert!(!conditions[0].status);
        assert_eq!(conditions[1].type_, STALLED);
        assert!(conditions[1].status);
    }
}
