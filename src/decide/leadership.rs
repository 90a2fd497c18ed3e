//! Who leads: the decision behind Lease-based leader election, so that several controller
//! replicas can run and exactly one reconciles.
//!
//! A replica holds the Lease while it renews it within `leaseDurationSeconds`; another replica
//! takes it over only once the holder has let it expire, or released it (an empty holder).

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// What a replica should do with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// The holder let it expire or released it: take it over.
    TakeOver,
    /// Someone else holds it: wait.
    Follow { holder: String },
}

/// Decides from the Lease as read (if any) what replica `me` does at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseAction {
    let Some(lease) = lease else {
        return LeaseAction::Create;
    };
    let holder = lease.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return LeaseAction::TakeOver;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let duration = i64::from(lease.lease_duration_seconds.unwrap_or(15).max(1));
    let renewed = lease
        .renew_time
        .as_ref()
        .or(lease.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(renewed) if renewed.as_second() + duration > now.as_second() => LeaseAction::Follow {
            holder: holder.to_owned(),
        },
        _ => LeaseAction::TakeOver,
    }
}

/// The Lease spec after `action` by `me` at `now`, from the Lease as read.
pub fn next_spec(
    lease: Option<&LeaseSpec>,
    action: &LeaseAction,
    me: &str,
    now: Timestamp,
    duration_seconds: i32,
) -> Option<LeaseSpec> {
    let now = MicroTime(now);
    let transitions = lease.and_then(|l| l.lease_transitions).unwrap_or(0);
    match action {
        LeaseAction::Follow { .. } => None,
        LeaseAction::Renew => Some(LeaseSpec {
            renew_time: Some(now),
            lease_duration_seconds: Some(duration_seconds),
            ..lease.cloned().unwrap_or_default()
        }),
        LeaseAction::Create | LeaseAction::TakeOver => Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(if *action == LeaseAction::Create {
                0
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn leadership_follows_the_lease() {
        let cases = [
            ("no lease yet", None, 100, LeaseAction::Create),
            (
                "we hold it",
                Some(held_by("a", 95)),
                100,
                LeaseAction::Renew,
            ),
            (
                "another holds a fresh lease",
                Some(held_by("b", 95)),
                100,
                LeaseAction::Follow { holder: "b".into() },
            ),
            (
                "another let it expire",
                Some(held_by("b", 80)),
                100,
                LeaseAction::TakeOver,
            ),
            (
                "expiry is exclusive",
                Some(held_by("b", 85)),
                100,
                LeaseAction::TakeOver,
            ),
            (
                "released",
                Some(held_by("", 99)),
                100,
                LeaseAction::TakeOver,
            ),
        ];
        for (name, lease, now, want) in cases {
            assert_eq!(decide(lease.as_ref(), "a", at(now)), want, "{name}");
        }
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let lease = LeaseSpec {
            lease_transitions: Some(3),
            ..held_by("b", 80)
        };
        let taken = next_spec(Some(&lease), &LeaseAction::TakeOver, "a", at(100), 15).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        let renewed = next_spec(Some(&taken), &LeaseAction::Renew, "a", at(105), 15).unwrap();
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
    }
}
