//! Promotion: which release an environment should run, and which one waits to come.
//!
//! The first stage takes the newest release of the Application. A later stage takes what its
//! upstream runs, once it is healthy and verified there (an upstream's `current` is set only by
//! such a verdict), and only when it is newer than what runs here: a rollback upstream is not
//! passed on. An `Automatic` environment rolls its candidate out at once; a `Manual` one shows
//! it and waits for a person to pin it. A `Manual` first stage (no upstream) is a gate on
//! every release: the newest release is its candidate and waits for a pin like any other. A pin overrides both: pinning the candidate approves
//! it, pinning an older release rolls back by hand, pinning a release that failed upstream or
//! here is an override, recorded as such. A release that failed here is never the candidate
//! again.

use crate::api::application::{EnvironmentState, HistoryKind};
use crate::api::environment::Approval;

use super::Wanted;

/// The actor recorded for what Ferry does by itself.
pub const FERRY: &str = "ferry";

/// A pin of the environment's entry, with who wrote it.
#[derive(Clone, Debug)]
pub struct PinRequest<'a> {
    pub release: &'a str,
    pub reason: &'a str,
    /// Who wrote the pin: its `by`, the user the API server authenticated (`ferry-approve`
    /// refuses any other name). `None` for a pin written before pins carried `by`.
    pub actor: Option<&'a str>,
}

/// What promotion looks at for one environment.
pub struct Stage<'a> {
    pub approval: Approval,
    /// The upstream environment's name and state; `None` for the first stage.
    pub upstream: Option<(&'a str, &'a EnvironmentState)>,
    pub pin: Option<PinRequest<'a>>,
    pub state: &'a EnvironmentState,
    /// Every release of the Application, oldest first: "newer" and "older" mean this order,
    /// and the last is the newest (what the first stage takes).
    pub releases: &'a [String],
    /// Whether a release failed in an environment upstream of this one.
    pub rejected_upstream: &'a dyn Fn(&str) -> bool,
}

/// What the environment should run, and what waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub wanted: Option<Wanted>,
    /// A release that should come here and is not running or rolling out yet.
    pub candidate: Option<String>,
    /// The candidate waits for a person's approval (a pin).
    pub awaiting_approval: bool,
}

/// Chooses for one environment.
pub fn choose(stage: &Stage) -> Choice {
    let state = stage.state;
    let position = |release: &str| stage.releases.iter().position(|r| r == release);
    let newer_than_current = |release: &str| match (position(release), &state.current) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(p), Some(current)) => position(current).is_none_or(|c| p > c),
    };
    let promotable = match stage.upstream {
        None => stage.releases.last().map(String::as_str),
        Some((_, upstream)) => upstream.current.as_deref(),
    };
    let promotable = promotable
        .filter(|r| newer_than_current(r))
        .filter(|r| !state.rejected.iter().any(|x| x == r))
        .filter(|r| !(stage.rejected_upstream)(r));
    if let Some(pin) = &stage.pin {
        let older = match (
            position(pin.release),
            state.current.as_deref().and_then(position),
        ) {
            (Some(p), Some(c)) => p < c,
            _ => false,
        };
        let failed_here = state.rejected.iter().any(|r| r == pin.release);
        let kind = if (stage.rejected_upstream)(pin.release) || failed_here {
            HistoryKind::Override
        } else if promotable == Some(pin.release) && stage.approval == Approval::Manual {
            // What the environment waits for: a person approved it.
            HistoryKind::Approval
        } else if older {
            HistoryKind::ManualRollback
        } else {
            HistoryKind::Pin
        };
        return Choice {
            wanted: Some(Wanted {
                release: pin.release.to_owned(),
                reason: pin.reason.to_owned(),
                pinned: true,
                kind,
                actor: pin.actor.map(str::to_owned),
            }),
            candidate: promotable.filter(|p| *p != pin.release).map(str::to_owned),
            awaiting_approval: false,
        };
    }
    let Some(release) = promotable else {
        return Choice {
            wanted: None,
            candidate: None,
            awaiting_approval: false,
        };
    };
    let (kind, reason) = match stage.upstream {
        None => (
            HistoryKind::Rollout,
            format!("{release} is the newest release"),
        ),
        Some((name, _)) => (
            HistoryKind::Promotion,
            format!("{release} is healthy and verified in {name}"),
        ),
    };
    match stage.approval {
        // With or without an upstream: a first stage that needs approval lets no release in
        // by itself either.
        Approval::Manual => Choice {
            wanted: None,
            candidate: Some(release.to_owned()),
            awaiting_approval: true,
        },
        Approval::Automatic => Choice {
            wanted: Some(Wanted {
                release: release.to_owned(),
                reason,
                pinned: false,
                kind,
                actor: Some(FERRY.to_owned()),
            }),
            candidate: Some(release.to_owned()),
            awaiting_approval: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn releases() -> Vec<String> {
        ["shop-1", "shop-2", "shop-3"]
            .iter()
            .map(|r| (*r).to_owned())
            .collect()
    }

    fn running(current: Option<&str>) -> EnvironmentState {
        EnvironmentState {
            name: "env".to_owned(),
            current: current.map(str::to_owned),
            ..EnvironmentState::default()
        }
    }

    fn never(_: &str) -> bool {
        false
    }

    fn stage<'a>(
        approval: Approval,
        upstream: Option<(&'a str, &'a EnvironmentState)>,
        state: &'a EnvironmentState,
        releases: &'a [String],
        pin: Option<PinRequest<'a>>,
    ) -> Stage<'a> {
        Stage {
            approval,
            upstream,
            pin,
            state,
            releases,
            rejected_upstream: &never,
        }
    }

    /// A later stage, right below `dev`, that no one pinned.
    fn below_dev<'a>(
        approval: Approval,
        dev: &'a EnvironmentState,
        here: &'a EnvironmentState,
        releases: &'a [String],
    ) -> Stage<'a> {
        stage(approval, Some(("dev", dev)), here, releases, None)
    }

    #[test]
    fn an_automatic_first_stage_takes_the_newest_release() {
        let releases = releases();
        let here = running(Some("shop-2"));
        let choice = choose(&stage(Approval::Automatic, None, &here, &releases, None));
        let wanted = choice.wanted.unwrap();
        assert_eq!(wanted.release, "shop-3");
        assert_eq!(wanted.kind, HistoryKind::Rollout);
        assert_eq!(choice.candidate.as_deref(), Some("shop-3"));
        assert!(
            !choice.awaiting_approval,
            "an automatic first stage never waits"
        );
    }

    /// `Manual` without an upstream used to mean nothing (the newest release came at once);
    /// it now makes every release wait for a pin, as in any other Manual stage.
    #[test]
    fn a_manual_first_stage_makes_every_release_wait_for_approval() {
        let releases = releases();
        let pin = |release| PinRequest {
            release,
            reason: "CHG-7",
            actor: Some("kubectl"),
        };
        struct Case {
            name: &'static str,
            current: Option<&'static str>,
            pin: Option<&'static str>,
            /// (release, kind) rolled out, if any.
            wanted: Option<(&'static str, HistoryKind)>,
            candidate: Option<&'static str>,
            awaiting: bool,
        }
        let cases = [
            Case {
                name: "nothing runs yet: the newest release waits",
                current: None,
                pin: None,
                wanted: None,
                candidate: Some("shop-3"),
                awaiting: true,
            },
            Case {
                name: "an older release runs: the newest waits, the old one stays",
                current: Some("shop-2"),
                pin: None,
                wanted: None,
                candidate: Some("shop-3"),
                awaiting: true,
            },
            Case {
                name: "the newest release runs: nothing waits",
                current: Some("shop-3"),
                pin: None,
                wanted: None,
                candidate: None,
                awaiting: false,
            },
            Case {
                name: "pinning the candidate approves it",
                current: Some("shop-2"),
                pin: Some("shop-3"),
                wanted: Some(("shop-3", HistoryKind::Approval)),
                candidate: None,
                awaiting: false,
            },
            Case {
                name: "pinning an older release rolls back by hand; the newest still waits",
                current: Some("shop-2"),
                pin: Some("shop-1"),
                wanted: Some(("shop-1", HistoryKind::ManualRollback)),
                candidate: Some("shop-3"),
                awaiting: false,
            },
        ];
        for case in cases {
            let here = running(case.current);
            let choice = choose(&stage(
                Approval::Manual,
                None,
                &here,
                &releases,
                case.pin.map(pin),
            ));
            let wanted = choice.wanted.as_ref().map(|w| (w.release.as_str(), w.kind));
            assert_eq!(wanted, case.wanted, "{}", case.name);
            assert_eq!(choice.candidate.as_deref(), case.candidate, "{}", case.name);
            assert_eq!(choice.awaiting_approval, case.awaiting, "{}", case.name);
        }
    }

    #[test]
    fn an_automatic_stage_promotes_what_is_healthy_upstream_and_a_manual_one_waits() {
        let releases = releases();
        let dev = running(Some("shop-2"));
        let here = running(Some("shop-1"));
        let auto = choose(&below_dev(Approval::Automatic, &dev, &here, &releases));
        let wanted = auto.wanted.unwrap();
        assert_eq!(
            (wanted.release.as_str(), wanted.kind),
            ("shop-2", HistoryKind::Promotion)
        );
        assert!(wanted.reason.contains("healthy and verified in dev"));
        let manual = choose(&below_dev(Approval::Manual, &dev, &here, &releases));
        assert_eq!(manual.wanted, None);
        assert_eq!(manual.candidate.as_deref(), Some("shop-2"));
        assert!(manual.awaiting_approval);
    }

    #[test]
    fn an_older_release_upstream_is_not_passed_on_and_nothing_waits() {
        let releases = releases();
        let dev = running(Some("shop-1"));
        let here = running(Some("shop-2"));
        let choice = choose(&below_dev(Approval::Automatic, &dev, &here, &releases));
        assert_eq!(
            choice,
            Choice {
                wanted: None,
                candidate: None,
                awaiting_approval: false
            }
        );
    }

    #[test]
    fn a_release_that_failed_here_or_upstream_is_never_the_candidate() {
        let releases = releases();
        let dev = running(Some("shop-3"));
        let mut here = running(Some("shop-1"));
        here.rejected = vec!["shop-3".to_owned()];
        let choice = choose(&below_dev(Approval::Manual, &dev, &here, &releases));
        assert_eq!(choice.candidate, None);
        let here = running(Some("shop-1"));
        let upstream_failed = |r: &str| r == "shop-3";
        let choice = choose(&Stage {
            rejected_upstream: &upstream_failed,
            ..below_dev(Approval::Manual, &dev, &here, &releases)
        });
        assert_eq!(choice.candidate, None);
    }

    #[test]
    fn a_pin_is_an_approval_a_manual_rollback_an_override_or_a_plain_pin() {
        let releases = releases();
        let staging = running(Some("shop-3"));
        let here = running(Some("shop-2"));
        let pin = |release| PinRequest {
            release,
            reason: "CHG-1",
            actor: Some("kubectl-client-side-apply"),
        };
        let kind_of = |release, rejected: &dyn Fn(&str) -> bool| {
            let choice = choose(&Stage {
                rejected_upstream: rejected,
                ..stage(
                    Approval::Manual,
                    Some(("staging", &staging)),
                    &here,
                    &releases,
                    Some(pin(release)),
                )
            });
            let wanted = choice.wanted.unwrap();
            assert!(wanted.pinned);
            assert_eq!(wanted.actor.as_deref(), Some("kubectl-client-side-apply"));
            assert_eq!(wanted.reason, "CHG-1");
            (wanted.kind, choice.candidate)
        };
        assert_eq!(kind_of("shop-3", &never), (HistoryKind::Approval, None));
        assert_eq!(
            kind_of("shop-1", &never),
            (HistoryKind::ManualRollback, Some("shop-3".to_owned()))
        );
        assert_eq!(
            kind_of("shop-2", &never),
            (HistoryKind::Pin, Some("shop-3".to_owned()))
        );
        let failed_in_staging = |r: &str| r == "shop-1";
        assert_eq!(
            kind_of("shop-1", &failed_in_staging).0,
            HistoryKind::Override
        );
    }
}
