//! Which Event a status change deserves.
//!
//! Events announce transitions, never steady states: one when the `Ready` condition changes
//! its status or its reason. Its type comes from the reason's severity (`api::reasons`): a
//! stalled object always warns, since a person must act; a reason Ferry does not define (a
//! build step's own failure reason, say) warns when the object is not ready.

use crate::api::Condition;
use crate::api::conditions::TRUE;
use crate::api::reasons::{Reason, Severity};

/// An Event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub severity: Severity,
    pub reason: String,
    pub note: String,
}

/// The Event for `Ready` going from `before` to `after`, if it changed status or reason.
pub fn ready_changed(
    before: Option<&Condition>,
    after: Option<&Condition>,
    stalled: bool,
) -> Option<Announcement> {
    let after = after?;
    let changed = before.is_none_or(|b| b.status != after.status || b.reason != after.reason);
    changed.then(|| Announcement {
        severity: severity(&after.reason, after.status == TRUE, stalled),
        reason: after.reason.clone(),
        note: after.message.clone(),
    })
}

/// The severity of an Event about `reason`, for an object that is `ready` or not and
/// `stalled` or not.
pub fn severity(reason: &str, ready: bool, stalled: bool) -> Severity {
    if stalled {
        return Severity::Warning;
    }
    match Reason::named(reason) {
        Some(known) => known.severity,
        None if ready => Severity::Normal,
        None => Severity::Warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;
    use crate::api::conditions::FALSE;

    fn ready(status: &str, reason: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: "why".into(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn the_severity_follows_the_reason() {
        let cases = [
            (
                "a known normal reason",
                "Ready",
                true,
                false,
                Severity::Normal,
            ),
            (
                "progress is normal",
                "BuildPending",
                false,
                false,
                Severity::Normal,
            ),
            (
                "a known warning",
                "BuildFailed",
                false,
                false,
                Severity::Warning,
            ),
            (
                "stalled always warns",
                "WaitingForEnvironments",
                false,
                true,
                Severity::Warning,
            ),
            (
                "an unknown failure warns",
                "ScriptFailed",
                false,
                false,
                Severity::Warning,
            ),
            (
                "an unknown success is normal",
                "Deployed",
                true,
                false,
                Severity::Normal,
            ),
            (
                "a name ending in Failed means nothing by itself",
                "Ready",
                true,
                false,
                Severity::Normal,
            ),
        ];
        for (name, reason, is_ready, stalled, want) in cases {
            assert_eq!(severity(reason, is_ready, stalled), want, "{name}");
        }
    }

    #[test]
    fn only_a_transition_is_announced() {
        let stalled = ready(FALSE, "SecretNotFound");
        let fixed = ready(TRUE, "Ready");
        let cases = [
            ("first status", None, Some(&fixed), true),
            ("same status and reason", Some(&fixed), Some(&fixed), false),
            ("status flips", Some(&stalled), Some(&fixed), true),
            ("no Ready condition", Some(&fixed), None, false),
        ];
        for (name, before, after, want) in cases {
            assert_eq!(
                ready_changed(before, after, false).is_some(),
                want,
                "{name}"
            );
        }
        let other_reason = ready(FALSE, "SecretInvalid");
        let event = ready_changed(Some(&stalled), Some(&other_reason), true).unwrap();
        assert_eq!(event.reason, "SecretInvalid");
        assert_eq!(event.severity, Severity::Warning);
    }
}
