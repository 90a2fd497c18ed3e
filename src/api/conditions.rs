//! Every condition type Ferry writes, and the one place that merges a freshly decided set of
//! conditions into the existing ones.
//!
//! Ferry follows kstatus (kubernetes-sigs/cli-utils): every object carries `Ready`, and
//! `Reconciling` or `Stalled` are present and `True` only while something is abnormal, so
//! `kubectl wait --for=condition=Ready`, Argo CD and Flux read Ferry objects without plugins.
//! A condition keeps its `lastTransitionTime` until its status flips, so a steady state writes
//! nothing. The status of every kind starts with the same two fields, [`CommonStatus`].

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use super::{Condition, Time};

// kstatus, on every kind.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

// BuildJob.
pub const SUCCEEDED: &str = "Succeeded";

// Each of an Application's environments (`status.environments[].conditions`). The last two
// are spelt like the reasons `RolledBack` and `AwaitingApproval`, hence the suffix, and so is
// `ReleaseChanged`.
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const ROLLED_BACK_CONDITION: &str = "RolledBack";
pub const AWAITING_APPROVAL_CONDITION: &str = "AwaitingApproval";
/// Present (`True`) only while a Release the environment bound differs from what it was
/// (`decide::delivery::identity`).
pub const RELEASE_CHANGED_CONDITION: &str = "ReleaseChanged";

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

/// A condition as a decision function states it: no time and no generation yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn status_str(&self) -> &'static str {
        if self.status { TRUE } else { FALSE }
    }
}

/// Merges the desired conditions into `existing`.
///
/// The result holds exactly the desired types, in the order given. A condition whose status
/// did not change keeps its `lastTransitionTime`; one that flipped, or is new, gets `now`.
/// Reason, message and `observedGeneration` always follow the desired state.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let previous = existing.iter().find(|c| c.type_ == want.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == want.status_str() => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: want.type_.to_owned(),
                status: want.status_str().to_owned(),
                reason: want.reason.clone(),
                message: truncate(&want.message, 1024),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// What the status of every Ferry kind starts with, the two fields kstatus reads: the generation
/// of the spec it describes and the conditions. Each status flattens it in and says which
/// conditions its kind carries with [`CommonStatus::describe_conditions`].
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, and `Stalled` or `Reconciling` while something is abnormal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl CommonStatus {
    /// The status of `generation` with the `desired` conditions merged into the `existing`
    /// ones (see [`merge`]).
    pub fn decided(
        existing: &[Condition],
        desired: &[Desired],
        generation: Option<i64>,
        now: &Time,
    ) -> Self {
        Self {
            observed_generation: generation,
            conditions: merge(existing, desired, generation, now),
        }
    }

    /// A schema transform for a status that flattens this in: `description` becomes the
    /// description of its `conditions`, naming the conditions of that kind.
    pub fn describe_conditions(description: &'static str) -> impl FnMut(&mut Schema) {
        move |schema| {
            if let Some(conditions) = schema
                .get_mut("properties")
                .and_then(|properties| properties.get_mut("conditions"))
                .and_then(|conditions| conditions.as_object_mut())
            {
                conditions.insert("description".to_owned(), description.into());
            }
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// Cuts a message to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    /// The conditions after `first` was decided at generation 1 and time 10, then `second` at
    /// `generation` and time 20.
    fn merged_twice(first: &[Desired], second: &[Desired], generation: i64) -> Vec<Condition> {
        let before = merge(&[], first, Some(1), &at(10));
        merge(&before, second, Some(generation), &at(20))
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        for (first, second) in [(true, true), (false, false), (true, false), (false, true)] {
            let after = merged_twice(
                &[Desired::new(READY, first, "Before", "before")],
                &[Desired::new(READY, second, "After", "after")],
                2,
            );
            let case = format!("{first} then {second}");
            let moved = if first == second { at(10) } else { at(20) };
            assert_eq!(after[0].last_transition_time, moved, "{case}");
            assert_eq!(after[0].status, if second { TRUE } else { FALSE }, "{case}");
            assert_eq!(after[0].reason, "After", "{case}");
            assert_eq!(after[0].message, "after", "{case}");
            assert_eq!(after[0].observed_generation, Some(2), "{case}");
        }
    }

    #[test]
    fn conditions_no_longer_desired_are_dropped() {
        let after = merged_twice(
            &[
                Desired::new(READY, false, "X", ""),
                Desired::new(STALLED, true, "X", ""),
            ],
            &[Desired::new(READY, true, "Ok", "")],
            1,
        );
        assert_eq!(after.len(), 1);
        assert!(find(&after, STALLED).is_none());
    }

    #[test]
    fn the_common_status_stands_at_the_top_of_each_kinds_status() {
        let status = crate::api::ReleaseStatus {
            common: CommonStatus::decided(
                &[],
                &[Desired::new(READY, true, "Recorded", "")],
                Some(3),
                &at(10),
            ),
            summary: Some("dev=Deployed".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["observedGeneration"], 3);
        assert_eq!(json["conditions"][0]["type"], READY);
        assert_eq!(json["summary"], "dev=Deployed");
        let read: crate::api::ReleaseStatus = serde_json::from_value(json).unwrap();
        assert_eq!(read, status);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "é".repeat(600);
        let cut = truncate(&message, 1024);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
    }
}
