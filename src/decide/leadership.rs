//! Who leads: the decision behind Lease-based leader election, so that several controller
//! replicas can run and at most one reconciles at any moment.
//!
//! Time here is never another replica's wall clock. Each replica keeps what it last read of
//! the Lease (an [`Observed`] record) and the [`Moment`] on its *own* monotonic clock at which
//! that record last changed; a standby takes the Lease over only once the record has stood
//! unchanged for a whole lease duration on that clock, as client-go's `leaderelection` does
//! with `observedRecord` and `observedTime`. The `renewTime` a holder writes is only a hint for
//! people: a holder whose clock runs an hour behind is not taken over while it renews, and one
//! whose clock runs an hour ahead does not keep the standbys waiting for that hour.
//!
//! The two sides count from opposite ends of a request, so that each errs towards safety:
//! - a standby stamps a read with the moment its response *arrived* (the holder's renewal
//!   reached the API server no later than that), then waits the lease duration;
//! - the holder counts its lease from the moment *before* it sent its last successful renewal
//!   (the API server stored it no earlier than that), and stops leading [`MARGIN`] before the
//!   lease duration is up, leaving that margin for writes already in flight to land.
//!
//! So the holder stops at least a third of a lease before any standby can start, whatever the
//! wall clocks say. The shell (`controller/leader.rs`) reads the clock and the API; this module
//! only decides.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// The shortest lease: renewals happen every third of it, so shorter would mean a renewal a
/// second or more often, and network hiccups of a second would cost the leadership.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(3);

/// The longest lease: how long the controllers may stand still after a leader dies without
/// releasing the Lease. Nobody wants more than an hour of that, and the cap keeps every sum of
/// moments and durations, and `leaseDurationSeconds` (an i32), far from overflowing.
pub const MAX_LEASE_DURATION: Duration = Duration::from_secs(60 * 60);

/// The part of the lease the holder gives up at the end: it stops leading at two thirds of the
/// duration after its last successful renewal began, so that a write sent just before it
/// stopped still lands well before any standby may take over.
pub const MARGIN: u32 = 3;

/// A reading of this replica's own monotonic clock, as the time since an origin of its own
/// choosing. Moments of different replicas are never compared; that is the point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(Duration);

impl Moment {
    /// The moment `elapsed` after this replica's origin.
    pub const fn after_origin(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// How long after the origin this moment is.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// The moment `duration` later. Saturates instead of overflowing: a moment that far away
    /// never comes, which is what it means.
    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }
}

/// The Lease as read: its content and its resourceVersion. Any write shows in one or the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub resource_version: Option<String>,
    pub spec: LeaseSpec,
}

/// What this replica last saw of the Lease, and since when it has looked like that.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub record: Record,
    /// When the record last changed, on this replica's clock.
    pub since: Moment,
}

/// Folds a read of the Lease (`None`: there is none) made at `at` into what was observed
/// before: a changed record starts a new observation, an unchanged one keeps its `since`.
pub fn observe(previous: Option<Observed>, read: Option<Record>, at: Moment) -> Option<Observed> {
    let record = read?;
    match previous {
        Some(previous) if previous.record == record => Some(previous),
        _ => Some(Observed { record, since: at }),
    }
}

/// What a replica should do with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// The holder has not renewed it for a lease duration, or released it: take it over.
    TakeOver,
    /// Someone else holds it: wait, at least until `until` unless it changes meanwhile.
    Follow { holder: String, until: Moment },
}

/// Decides from what replica `me` observed what it does at `now`. `ours` is our own lease
/// duration, the floor of how long a standby waits whatever the record says.
pub fn decide(observed: Option<&Observed>, me: &str, now: Moment, ours: Duration) -> LeaseAction {
    let Some(observed) = observed else {
        return LeaseAction::Create;
    };
    let spec = &observed.record.spec;
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return LeaseAction::TakeOver;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let until = observed.since.plus(standby_wait(spec, ours));
    if now < until {
        LeaseAction::Follow {
            holder: holder.to_owned(),
            until,
        }
    } else {
        LeaseAction::TakeOver
    }
}

/// How long a standby waits on an unchanged record: the longer of the holder's duration and
/// ours. A duration above [`MAX_LEASE_DURATION`] was written by no Ferry replica (they cap it),
/// and is capped too, so that one odd write cannot keep every standby waiting for decades.
fn standby_wait(spec: &LeaseSpec, ours: Duration) -> Duration {
    let theirs = spec
        .lease_duration_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(Duration::ZERO, Duration::from_secs)
        .min(MAX_LEASE_DURATION);
    theirs.max(ours)
}

/// When the holder must have stopped leading, its lease counted from `renewal_started` (the
/// moment before its last successful write of the Lease).
pub fn stop_leading_by(renewal_started: Moment, duration: Duration) -> Moment {
    renewal_started.plus(duration - duration / MARGIN)
}

/// When the holder renews next after a successful renewal begun at `renewal_started`: a third
/// into the lease, so that two more attempts fit before [`stop_leading_by`].
pub fn renew_at(renewal_started: Moment, duration: Duration) -> Moment {
    renewal_started.plus(duration / 3)
}

/// The Lease spec after `action` by `me`, from the spec as read. `wall` is the wall clock,
/// written to `acquireTime` and `renewTime` for people to read; no replica's decision uses it.
pub fn next_spec(
    lease: Option<&LeaseSpec>,
    action: &LeaseAction,
    me: &str,
    wall: Timestamp,
    duration: Duration,
) -> Option<LeaseSpec> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let transitions = lease.and_then(|l| l.lease_transitions).unwrap_or(0);
    match action {
        LeaseAction::Follow { .. } => None,
        LeaseAction::Renew => {
            let previous = lease.and_then(|l| l.renew_time.as_ref()).map(|t| t.0);
            Some(LeaseSpec {
                renew_time: Some(MicroTime(later_than(previous, wall))),
                lease_duration_seconds: Some(seconds),
                ..lease.cloned().unwrap_or_default()
            })
        }
        LeaseAction::Create | LeaseAction::TakeOver => Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(if *action == LeaseAction::Create {
                0
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }),
    }
}

/// A renewal time that differs from the previous one even when the wall clock stood still or
/// went back: the API server skips a write that changes nothing, and a renewal that changes
/// nothing is, to a standby, no renewal at all.
fn later_than(previous: Option<Timestamp>, wall: Timestamp) -> Timestamp {
    // A millisecond, not a nanosecond: MicroTime is stored to the microsecond.
    let step = jiff::SignedDuration::from_millis(1);
    match previous.and_then(|p| p.checked_add(step).ok()) {
        Some(floor) if floor > wall => floor,
        _ => wall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIFTEEN: Duration = Duration::from_secs(15);

    fn at(second: u64) -> Moment {
        Moment::after_origin(Duration::from_secs(second))
    }

    fn wall(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// A Lease held by `holder` whose renewTime says `renewed` (a wall-clock second).
    fn held_by(holder: &str, renewed: i64, version: &str) -> Record {
        Record {
            resource_version: Some(version.to_owned()),
            spec: LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(wall(renewed))),
                ..LeaseSpec::default()
            },
        }
    }

    /// The wall clock in these cases reads 1_000_000; the monotonic clock is what counts.
    const NOW: i64 = 1_000_000;

    #[test]
    fn leadership_follows_the_locally_observed_record() {
        // (name, record, first seen at, now, want)
        let follow = |until| LeaseAction::Follow {
            holder: "b".into(),
            until: at(until),
        };
        let cases = [
            ("no lease yet", None, 0, 100, LeaseAction::Create),
            (
                "our own lease, even with an ancient renewTime",
                Some(held_by("a", NOW - 86_400, "1")),
                0,
                100,
                LeaseAction::Renew,
            ),
            (
                "released",
                Some(held_by("", NOW, "1")),
                99,
                100,
                LeaseAction::TakeOver,
            ),
            (
                "unchanged for less than the duration",
                Some(held_by("b", NOW, "1")),
                90,
                100,
                follow(105),
            ),
            (
                "unchanged for more than the duration",
                Some(held_by("b", NOW, "1")),
                80,
                100,
                LeaseAction::TakeOver,
            ),
            (
                "unchanged for exactly the duration",
                Some(held_by("b", NOW, "1")),
                85,
                100,
                LeaseAction::TakeOver,
            ),
            (
                "renewTime an hour in the past (skewed holder), just seen",
                Some(held_by("b", NOW - 3_600, "1")),
                100,
                100,
                follow(115),
            ),
            (
                "renewTime an hour in the future (skewed holder), unchanged for longer than the duration",
                Some(held_by("b", NOW + 3_600, "1")),
                80,
                100,
                LeaseAction::TakeOver,
            ),
            (
                "renewTime an hour in the future, unchanged for less than the duration",
                Some(held_by("b", NOW + 3_600, "1")),
                95,
                100,
                follow(110),
            ),
        ];
        for (name, record, seen, now, want) in cases {
            let observed = observe(None, record, at(seen));
            assert_eq!(
                decide(observed.as_ref(), "a", at(now), FIFTEEN),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_changed_record_restarts_the_observation_and_an_unchanged_one_does_not() {
        let first = observe(None, Some(held_by("b", NOW, "1")), at(10));
        let same = observe(first.clone(), Some(held_by("b", NOW, "1")), at(20));
        assert_eq!(same.as_ref().map(|o| o.since), Some(at(10)), "unchanged");

        let renewed = observe(same.clone(), Some(held_by("b", NOW + 5, "2")), at(24));
        assert_eq!(renewed.as_ref().map(|o| o.since), Some(at(24)), "renewed");
        assert_eq!(
            decide(renewed.as_ref(), "a", at(30), FIFTEEN),
            LeaseAction::Follow {
                holder: "b".into(),
                until: at(39)
            },
            "a renewal seen at 24 holds the standby until 39, whatever the 10 before"
        );

        // A holder whose clock went back writes an older renewTime: still a change.
        let back = observe(renewed, Some(held_by("b", NOW - 600, "3")), at(26));
        assert_eq!(
            back.as_ref().map(|o| o.since),
            Some(at(26)),
            "clock went back"
        );

        // Any write shows in the resourceVersion even if the spec reads the same.
        let rewritten = observe(same, Some(held_by("b", NOW, "9")), at(27));
        assert_eq!(
            rewritten.map(|o| o.since),
            Some(at(27)),
            "new resourceVersion"
        );

        assert_eq!(observe(first, None, at(30)), None, "deleted");
    }

    #[test]
    fn a_standby_waits_the_longer_of_the_two_durations_capped_at_the_maximum() {
        let with = |seconds: Option<i32>| Observed {
            record: Record {
                spec: LeaseSpec {
                    lease_duration_seconds: seconds,
                    ..held_by("b", NOW, "1").spec
                },
                ..Record::default()
            },
            since: at(0),
        };
        let until = |observed: Observed| match decide(Some(&observed), "a", at(0), FIFTEEN) {
            LeaseAction::Follow { until, .. } => until.since_origin().as_secs(),
            other => panic!("expected to follow, got {other:?}"),
        };
        assert_eq!(until(with(Some(60))), 60, "theirs is longer");
        assert_eq!(until(with(Some(5))), 15, "ours is longer");
        assert_eq!(until(with(None)), 15, "theirs unset");
        assert_eq!(until(with(Some(-7))), 15, "theirs negative");
        assert_eq!(until(with(Some(i32::MAX))), 3_600, "theirs absurd");
    }

    #[test]
    fn the_leader_stops_a_third_of_a_lease_before_a_standby_may_start() {
        let started = at(100);
        assert_eq!(stop_leading_by(started, FIFTEEN), at(110));
        assert_eq!(renew_at(started, FIFTEEN), at(105));
        // The standby saw the renewal no earlier than it began: its wait ends at 115 or later.
        let seen = observe(None, Some(held_by("b", NOW, "1")), started);
        assert_eq!(
            decide(seen.as_ref(), "a", at(110), FIFTEEN),
            LeaseAction::Follow {
                holder: "b".into(),
                until: at(115)
            }
        );
        // Far moments saturate instead of panicking.
        let far = Moment::after_origin(Duration::MAX);
        assert_eq!(stop_leading_by(far, MAX_LEASE_DURATION), far);
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let lease = LeaseSpec {
            lease_transitions: Some(3),
            ..held_by("b", 80, "1").spec
        };
        let taken = next_spec(
            Some(&lease),
            &LeaseAction::TakeOver,
            "a",
            wall(100),
            FIFTEEN,
        )
        .expect("a takeover writes");
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        let renewed = next_spec(Some(&taken), &LeaseAction::Renew, "a", wall(105), FIFTEEN)
            .expect("a renewal writes");
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.renew_time, Some(MicroTime(wall(105))));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        let follow = LeaseAction::Follow {
            holder: "b".into(),
            until: at(1),
        };
        assert_eq!(
            next_spec(Some(&lease), &follow, "a", wall(100), FIFTEEN),
            None
        );
    }

    #[test]
    fn a_renewal_changes_the_record_even_when_the_wall_clock_stands_still_or_goes_back() {
        let held = held_by("a", 100, "1").spec;
        for (name, now) in [("stood still", 100), ("went back", 40)] {
            let renewed = next_spec(Some(&held), &LeaseAction::Renew, "a", wall(now), FIFTEEN)
                .expect("a renewal writes");
            let time = renewed.renew_time.expect("a renewal time").0;
            assert!(time > wall(100), "{name}: {time}");
            assert!(
                time < wall(101),
                "{name}: a step of a millisecond, not more"
            );
        }
    }

    #[test]
    fn the_duration_written_never_overflows_i32() {
        let spec = next_spec(None, &LeaseAction::Create, "a", wall(0), Duration::MAX)
            .expect("a creation writes");
        assert_eq!(spec.lease_duration_seconds, Some(i32::MAX));
    }
}
