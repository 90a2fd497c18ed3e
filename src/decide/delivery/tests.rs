use super::health::{DeploymentFacts, PodFacts};
use super::runs::CheckCounts;
use super::*;
use crate::api::application::{Outcome, Slot};
use crate::api::conditions::{AWAITING_APPROVAL_CONDITION, DEGRADED, PROGRESSING};
use crate::api::reasons::{CRASH_LOOP, ERROR_RATE_EXCEEDED, PROGRESS_DEADLINE_EXCEEDED};

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000 + second).unwrap_or_default())
}

fn health() -> HealthPolicy {
    HealthPolicy {
        progress_deadline: Duration::from_secs(20).into(),
        stabilization_window: Duration::from_secs(10).into(),
        ..HealthPolicy::default()
    }
}

fn wanted(release: &str) -> Option<Wanted> {
    Some(Wanted {
        release: release.to_owned(),
        reason: "newest release".to_owned(),
        pinned: false,
        kind: HistoryKind::Rollout,
        actor: Some("ferry".to_owned()),
    })
}

/// A Deployment at `placement` running `release` with `ready` of 2 pods ready.
fn deployment(release: &str, ready: i32) -> DeploymentFacts {
    DeploymentFacts {
        release: Some(release.to_owned()),
        generation: Some(1),
        observed_generation: Some(1),
        replicas: 2,
        updated: 2,
        ready,
        available: ready,
    }
}

struct Env {
    state: EnvironmentState,
    strategy: StrategyType,
    automatic: bool,
    health: HealthPolicy,
    verification: Option<Duration>,
    report: Option<VerificationReport>,
    awaiting: bool,
    history_limit: usize,
}

impl Env {
    fn new(strategy: StrategyType) -> Self {
        Env {
            state: EnvironmentState {
                name: "dev".to_owned(),
                ..EnvironmentState::default()
            },
            strategy,
            automatic: true,
            health: health(),
            verification: None,
            report: None,
            awaiting: false,
            history_limit: HISTORY_LIMIT,
        }
    }

    /// Decides at `second` with `workload`, keeps the new state, and returns the plan.
    fn step(
        &mut self,
        second: i64,
        want: Option<Wanted>,
        workload: &Workload,
        checks: &[CheckFigures],
    ) -> Plan {
        let plan = plan(
            &Observed {
                state: &self.state,
                policy: Policy {
                    strategy: self.strategy,
                    health: &self.health,
                    automatic_rollback: self.automatic,
                    verification: self.verification,
                },
                choice: promotion::Choice {
                    candidate: want.as_ref().map(|w| w.release.clone()),
                    wanted: want.filter(|_| !self.awaiting),
                    awaiting_approval: self.awaiting,
                },
                history_limit: self.history_limit,
                replicas: &|_| 2,
                workload,
                checks,
                verification: self.report.clone(),
            },
            &at(second),
        );
        self.state = plan.state.clone();
        plan
    }
}

fn workload(deployments: Vec<(Placement, DeploymentFacts)>, pods: Vec<PodFacts>) -> Workload {
    Workload {
        deployments: deployments.into_iter().collect(),
        pods,
    }
}

fn crashing(release: &str, placement: Placement) -> PodFacts {
    PodFacts {
        name: format!("{release}-pod"),
        placement,
        release: Some(release.to_owned()),
        restarts: 1,
        waiting: Some(("CrashLoopBackOff".to_owned(), "back-off 10s".to_owned())),
        last_exit: Some((1, Some(at(3)))),
        ..PodFacts::default()
    }
}

/// Whether one of `events` is an Event with `reason`.
fn announces(events: &[Told], reason: &str) -> bool {
    events.iter().any(|e| e.announcement.reason == reason)
}

/// A RollingUpdate of `release` whose pods crash-loop: none of the 2 is ready.
fn crash_looping(release: &str) -> Workload {
    workload(
        vec![(None, deployment(release, 0))],
        vec![crashing(release, None)],
    )
}

/// Brings `release` to Healthy with a RollingUpdate: start, ready, window over.
fn healthy(env: &mut Env, release: &str, start: i64) {
    let empty = Workload::default();
    env.step(start, wanted(release), &empty, &[]);
    let ready = workload(vec![(None, deployment(release, 2))], vec![]);
    env.step(start + 2, wanted(release), &ready, &[]);
    let plan = env.step(start + 13, wanted(release), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Healthy), "{release}");
}

#[test]
fn a_good_release_rolls_out_waits_through_the_window_and_becomes_healthy() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    let plan = env.step(0, wanted("web-1.0.0"), &Workload::default(), &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    assert_eq!(
        plan.deployments,
        BTreeMap::from([(None, "web-1.0.0".to_owned())])
    );
    assert_eq!(plan.serving, Serving::All);
    assert_eq!(plan.events[0].announcement.reason, "RolloutStarted");
    // The deadline is the next look, not a poll.
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));

    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    let plan = env.step(4, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(
        plan.state.rollout.as_ref().and_then(|r| r.ready.clone()),
        Some(at(4))
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    let plan = env.step(9, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(
        plan.state.phase,
        Some(Phase::Progressing),
        "window not over"
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
    let plan = env.step(14, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Healthy));
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    assert_eq!(plan.state.history.len(), 1);
    assert_eq!(plan.state.history[0].outcome, Outcome::Succeeded);
    assert_eq!(plan.events[0].announcement.reason, "RolloutSucceeded");

    // Nothing changes in steady state: no new history, no events.
    let plan = env.step(100, wanted("web-1.0.0"), &ready, &[]);
    assert!(plan.events.is_empty());
    assert_eq!(plan.state.history.len(), 1);
}

#[test]
fn a_crash_loop_rolls_back_at_once_and_the_release_is_not_tried_again() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    healthy(&mut env, "web-1.0.0", 0);
    let rolling = crash_looping("web-2.0.0");
    env.step(20, wanted("web-2.0.0"), &Workload::default(), &[]);
    let plan = env.step(23, wanted("web-2.0.0"), &rolling, &[]);
    assert_eq!(plan.state.phase, Some(Phase::RolledBack));
    assert_eq!(plan.state.rejected, vec!["web-2.0.0".to_owned()]);
    let rollout = plan
        .state
        .rollout
        .clone()
        .unwrap_or_else(|| panic!("no rollout"));
    assert_eq!(rollout.kind, HistoryKind::Rollback);
    assert_eq!(rollout.release, "web-1.0.0");
    let cause = rollout.cause.unwrap_or_else(|| panic!("no cause"));
    assert_eq!(cause.reason, CRASH_LOOP.name);
    assert_eq!(cause.signal_time, Some(at(3)));
    assert_eq!(
        plan.deployments,
        BTreeMap::from([(None, "web-1.0.0".to_owned())]),
        "the Deployment goes back to the healthy release"
    );
    assert!(announces(&plan.events, "RolledBack"));
    let failed = &plan.state.history[1];
    assert_eq!(
        (failed.release.as_str(), failed.outcome),
        ("web-2.0.0", Outcome::Failed)
    );
    assert!(
        failed.reason.contains("keeps crashing"),
        "{}",
        failed.reason
    );
    assert_eq!(plan.state.history[0].kind, HistoryKind::Rollback);

    // The rollback is judged like a rollout; restored once web-1.0.0 is all ready again.
    let back = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    let plan = env.step(30, wanted("web-2.0.0"), &back, &[]);
    assert_eq!(
        plan.finished.iter().find_map(|f| f.restored_after),
        Some(27.0),
        "from the crash at 3 to 30"
    );
    let plan = env.step(41, wanted("web-2.0.0"), &back, &[]);
    assert_eq!(plan.state.phase, Some(Phase::RolledBack));
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    assert_eq!(plan.state.history[0].outcome, Outcome::Succeeded);
    // The newest release is still the rejected one: nothing starts again.
    let plan = env.step(60, wanted("web-2.0.0"), &back, &[]);
    assert!(plan.events.is_empty());
    assert_eq!(plan.state.history.len(), 3);
    // A newer release goes through.
    let plan = env.step(70, wanted("web-3.0.0"), &back, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    assert_eq!(
        plan.state.rollout.map(|r| r.from),
        Some(Some("web-1.0.0".to_owned()))
    );
}

#[test]
fn pods_not_ready_by_the_deadline_fail_at_the_deadline() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    healthy(&mut env, "web-1.0.0", 0);
    let stuck = workload(
        vec![(None, deployment("web-2.0.0", 0))],
        vec![PodFacts {
            name: "web-2-a".to_owned(),
            release: Some("web-2.0.0".to_owned()),
            ..PodFacts::default()
        }],
    );
    env.step(20, wanted("web-2.0.0"), &stuck, &[]);
    let plan = env.step(35, wanted("web-2.0.0"), &stuck, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
    let plan = env.step(40, wanted("web-2.0.0"), &stuck, &[]);
    let cause = plan.state.rollout.and_then(|r| r.cause);
    assert_eq!(
        cause.map(|c| (c.reason, c.message)),
        Some((
            PROGRESS_DEADLINE_EXCEEDED.name.to_owned(),
            "0 of 2 pods of web-2.0.0 ready after the progress deadline (20s); pod web-2-a is running but not ready (its readiness probe fails)".to_owned()
        ))
    );
}

#[test]
fn blue_green_switches_when_ready_and_flips_back_on_failure() {
    let mut env = Env::new(StrategyType::BlueGreen);
    // The first release goes to blue and is served at once: nothing else could serve.
    let plan = env.step(0, wanted("web-1.0.0"), &Workload::default(), &[]);
    assert_eq!(plan.serving, Serving::Release("web-1.0.0".to_owned()));
    let blue = (Some(Slot::Blue), deployment("web-1.0.0", 2));
    env.step(
        2,
        wanted("web-1.0.0"),
        &workload(vec![blue.clone()], vec![]),
        &[],
    );
    let plan = env.step(
        13,
        wanted("web-1.0.0"),
        &workload(vec![blue.clone()], vec![]),
        &[],
    );
    assert_eq!(plan.state.slot, Some(Slot::Blue));

    // The second goes to green beside it; the Service stays on blue until green is ready.
    let plan = env.step(
        20,
        wanted("web-2.0.0"),
        &workload(vec![blue.clone()], vec![]),
        &[],
    );
    assert_eq!(
        plan.deployments,
        BTreeMap::from([
            (Some(Slot::Blue), "web-1.0.0".to_owned()),
            (Some(Slot::Green), "web-2.0.0".to_owned())
        ])
    );
    assert_eq!(plan.serving, Serving::Release("web-1.0.0".to_owned()));
    let both = workload(
        vec![
            blue.clone(),
            (Some(Slot::Green), deployment("web-2.0.0", 2)),
        ],
        vec![],
    );
    let plan = env.step(25, wanted("web-2.0.0"), &both, &[]);
    assert_eq!(plan.serving, Serving::Release("web-2.0.0".to_owned()));
    assert!(plan.checks.is_some(), "checks run through the window");

    // Errors through the Service: the verdict flips the Service back in the same decision,
    // and green goes.
    let failing = CheckFigures {
        path: "/healthz".to_owned(),
        interval: Duration::from_secs(1),
        max_error_rate: 5.0,
        max_latency_p95: None,
        counts: CheckCounts {
            requests: 4,
            failed: 2,
            p95: None,
            first_failure: Some(at(26)),
            last_failure: Some("HTTP 500".to_owned()),
        },
    };
    let plan = env.step(28, wanted("web-2.0.0"), &both, &[failing]);
    assert_eq!(plan.state.phase, Some(Phase::RolledBack));
    assert_eq!(plan.serving, Serving::Release("web-1.0.0".to_owned()));
    assert_eq!(
        plan.deployments,
        BTreeMap::from([(Some(Slot::Blue), "web-1.0.0".to_owned())])
    );
    let rollout = plan
        .state
        .rollout
        .clone()
        .unwrap_or_else(|| panic!("no rollout"));
    assert_eq!(rollout.ready, Some(at(28)), "restored with the verdict");
    assert_eq!(
        rollout.cause.map(|c| c.reason),
        Some(ERROR_RATE_EXCEEDED.name.to_owned())
    );
    assert_eq!(
        plan.finished.iter().find_map(|f| f.restored_after),
        Some(2.0)
    );
}

#[test]
fn without_automatic_rollback_a_failed_rollout_stays_degraded_as_it_is() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.automatic = false;
    healthy(&mut env, "web-1.0.0", 0);
    let rolling = crash_looping("web-2.0.0");
    env.step(20, wanted("web-2.0.0"), &Workload::default(), &[]);
    let plan = env.step(23, wanted("web-2.0.0"), &rolling, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Degraded));
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    assert_eq!(
        plan.deployments,
        BTreeMap::from([(None, "web-2.0.0".to_owned())]),
        "left as it is: maxUnavailable 0 keeps the old pods serving"
    );
    assert!(announces(&plan.events, "RolloutFailed"));
    let degraded = plan.state.conditions.iter().find(|c| c.type_ == DEGRADED);
    assert_eq!(degraded.map(|c| c.reason.as_str()), Some(CRASH_LOOP.name));

    // A person pins the healthy release: it is rolled out (verified) again.
    let pin = Some(Wanted {
        release: "web-1.0.0".to_owned(),
        reason: "INC-7: back to 1.0.0".to_owned(),
        pinned: true,
        kind: HistoryKind::ManualRollback,
        actor: Some("kubectl".to_owned()),
    });
    let plan = env.step(40, pin, &rolling, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    assert_eq!(plan.state.history[0].kind, HistoryKind::ManualRollback);
    assert_eq!(plan.state.history[0].actor.as_deref(), Some("kubectl"));
    assert!(
        plan.events
            .iter()
            .any(|e| e.announcement.reason == "ManualRollback"
                && e.announcement.note.contains("pinned by kubectl")),
        "{:?}",
        plan.events
    );
}

#[test]
fn a_first_rollout_that_fails_is_degraded_and_a_later_good_release_goes_through() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    let rolling = crash_looping("web-1.0.0");
    env.step(0, wanted("web-1.0.0"), &Workload::default(), &[]);
    let plan = env.step(3, wanted("web-1.0.0"), &rolling, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Degraded));
    assert!(
        plan.events[0]
            .announcement
            .note
            .contains("no healthy release to go back to")
    );
    let plan = env.step(10, wanted("web-1.0.0"), &rolling, &[]);
    assert!(plan.events.is_empty(), "the failed release is not retried");
    healthy(&mut env, "web-1.1.0", 20);
    assert_eq!(env.state.current.as_deref(), Some("web-1.1.0"));
}

#[test]
fn a_pinned_release_that_failed_here_is_tried_once_per_pin() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    healthy(&mut env, "web-1.0.0", 0);
    let pin = |reason: &str| {
        Some(Wanted {
            release: "web-2.0.0".to_owned(),
            reason: reason.to_owned(),
            pinned: true,
            kind: HistoryKind::Override,
            actor: Some("kubectl".to_owned()),
        })
    };
    let rolling = crash_looping("web-2.0.0");
    env.step(20, pin("CHG-1"), &Workload::default(), &[]);
    env.step(22, pin("CHG-1"), &rolling, &[]);
    let back = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.step(25, pin("CHG-1"), &back, &[]);
    let plan = env.step(40, pin("CHG-1"), &back, &[]);
    assert_eq!(plan.state.phase, Some(Phase::RolledBack));
    let plan = env.step(50, pin("CHG-1"), &back, &[]);
    assert!(plan.events.is_empty(), "the same pin does not loop");
    let plan = env.step(60, pin("CHG-2: fixed config"), &back, &[]);
    assert_eq!(
        plan.state.phase,
        Some(Phase::Progressing),
        "a new pin tries again"
    );
}

#[test]
fn history_is_bounded() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    for i in 0..25 {
        healthy(&mut env, &format!("web-1.{i}.0"), i * 20);
    }
    assert_eq!(env.state.history.len(), HISTORY_LIMIT);
    assert_eq!(env.state.history[0].release, "web-1.24.0");
    assert_eq!(env.state.previous.as_deref(), Some("web-1.23.0"));
}

/// Brings `release` through its window with a verification configured; returns the plan of
/// the step where the window ended (verification started).
fn through_the_window(env: &mut Env, release: &str, start: i64) -> Plan {
    let empty = Workload::default();
    env.step(start, wanted(release), &empty, &[]);
    let ready = workload(vec![(None, deployment(release, 2))], vec![]);
    env.step(start + 2, wanted(release), &ready, &[]);
    env.step(start + 13, wanted(release), &ready, &[])
}

#[test]
fn verification_runs_after_the_window_and_its_pass_makes_the_release_current() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.verification = Some(Duration::from_secs(30));
    let plan = through_the_window(&mut env, "web-1.0.0", 0);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    assert_eq!(
        plan.state.current, None,
        "not current before it is verified"
    );
    assert_eq!(
        plan.verify,
        Some(("web-1.0.0".to_owned(), at(0))),
        "the shell is told to verify this rollout"
    );
    let progressing = plan
        .state
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING);
    assert_eq!(progressing.map(|c| c.reason.as_str()), Some("Verifying"));
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.report = Some(VerificationReport::Running);
    let plan = env.step(20, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    env.report = Some(VerificationReport::Passed {
        message: "test pod exited 0".to_owned(),
    });
    let plan = env.step(21, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Healthy));
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    let run = plan.state.rollout.and_then(|r| r.verification).unwrap();
    assert_eq!(run.passed, Some(true));
    assert_eq!(plan.verify, None);
    assert!(announces(&plan.events, "VerificationPassed"));
}

#[test]
fn a_failed_verification_rolls_back_rejects_and_keeps_the_log_tail() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.verification = Some(Duration::from_secs(30));
    env.report = Some(VerificationReport::Passed {
        message: "ok".to_owned(),
    });
    through_the_window(&mut env, "web-1.0.0", 0);
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.step(14, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(env.state.current.as_deref(), Some("web-1.0.0"));

    env.report = None;
    through_the_window(&mut env, "web-2.0.0", 100);
    env.report = Some(VerificationReport::Failed {
        message: "test pod exited 1".to_owned(),
        log: Some("wget: server returned error: HTTP/1.1 404 Not Found".to_owned()),
    });
    let both = workload(vec![(None, deployment("web-2.0.0", 2))], vec![]);
    let plan = env.step(115, wanted("web-2.0.0"), &both, &[]);
    assert_eq!(plan.state.phase, Some(Phase::RolledBack));
    assert_eq!(plan.state.rejected, ["web-2.0.0"]);
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    let failed = plan
        .state
        .history
        .iter()
        .find(|h| h.release == "web-2.0.0")
        .unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(
        failed
            .reason
            .contains("verification failed: test pod exited 1")
    );
    assert!(announces(&plan.events, "VerificationFailed"));
    let cause = plan.state.rollout.and_then(|r| r.cause).unwrap();
    assert_eq!(cause.reason, "VerificationFailed");
    assert!(cause.log.unwrap().contains("404 Not Found"));
    // The failed rollout's log tail was kept on its verdict's way: the rollback's cause
    // carries the verdict, the Release status the verification.
    assert!(announces(&plan.events, "RolledBack"));
}

#[test]
fn a_verification_that_never_finishes_fails_at_its_timeout() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.automatic = false;
    env.verification = Some(Duration::from_secs(5));
    through_the_window(&mut env, "web-1.0.0", 0);
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.report = Some(VerificationReport::Running);
    let plan = env.step(17, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Progressing));
    let plan = env.step(18, wanted("web-1.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Degraded));
    let run = plan.state.rollout.and_then(|r| r.verification).unwrap();
    assert_eq!(run.passed, Some(false));
    assert!(run.message.unwrap().contains("did not finish within 5s"));
}

#[test]
fn a_manual_environment_waits_with_its_candidate_and_says_so_once() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    healthy(&mut env, "web-1.0.0", 0);
    env.awaiting = true;
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    let plan = env.step(30, wanted("web-2.0.0"), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::AwaitingApproval));
    assert_eq!(plan.state.candidate.as_deref(), Some("web-2.0.0"));
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    assert_eq!(
        plan.deployments,
        BTreeMap::from([(None, "web-1.0.0".to_owned())])
    );
    let awaiting = plan
        .state
        .conditions
        .iter()
        .find(|c| c.type_ == AWAITING_APPROVAL_CONDITION)
        .unwrap();
    assert_eq!(awaiting.status, "True");
    assert!(awaiting.message.contains("web-2.0.0"));
    assert_eq!(
        plan.events
            .iter()
            .filter(|e| e.announcement.reason == "AwaitingApproval")
            .count(),
        1
    );
    let again = env.step(31, wanted("web-2.0.0"), &ready, &[]);
    assert!(again.events.is_empty(), "said once: {:?}", again.events);

    // A newer candidate replaces it: the first is recorded as superseded.
    let plan = env.step(40, wanted("web-3.0.0"), &ready, &[]);
    assert_eq!(plan.state.candidate.as_deref(), Some("web-3.0.0"));
    let skipped = &plan.state.history[0];
    assert_eq!(
        (skipped.release.as_str(), skipped.kind, skipped.outcome),
        ("web-2.0.0", HistoryKind::Superseded, Outcome::Skipped)
    );
    assert!(skipped.reason.contains("web-3.0.0"));
}

#[test]
fn a_pinned_environment_is_pinned_once_its_pin_is_healthy() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    let pin = || {
        Some(Wanted {
            release: "web-1.0.0".to_owned(),
            reason: "CHG-1".to_owned(),
            pinned: true,
            kind: HistoryKind::Approval,
            actor: Some("kubectl-client-side-apply".to_owned()),
        })
    };
    env.step(0, pin(), &Workload::default(), &[]);
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.step(2, pin(), &ready, &[]);
    let plan = env.step(13, pin(), &ready, &[]);
    assert_eq!(plan.state.phase, Some(Phase::Pinned));
    let entry = &plan.state.history[0];
    assert_eq!(
        (entry.kind, entry.outcome, entry.actor.as_deref()),
        (
            HistoryKind::Approval,
            Outcome::Succeeded,
            Some("kubectl-client-side-apply")
        )
    );
}

#[test]
fn a_newer_release_waits_for_the_verdict_and_the_skipped_one_is_superseded() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.step(0, wanted("web-1.0.0"), &Workload::default(), &[]);
    let half = workload(vec![(None, deployment("web-1.0.0", 1))], vec![]);
    // Two newer releases arrive while 1.0.0 rolls out: no half rollout.
    let plan = env.step(1, wanted("web-2.0.0"), &half, &[]);
    assert_eq!(
        plan.state.rollout.as_ref().map(|r| r.release.as_str()),
        Some("web-1.0.0")
    );
    assert_eq!(plan.state.candidate.as_deref(), Some("web-2.0.0"));
    env.step(2, wanted("web-3.0.0"), &half, &[]);
    let ready = workload(vec![(None, deployment("web-1.0.0", 2))], vec![]);
    env.step(3, wanted("web-3.0.0"), &ready, &[]);
    let plan = env.step(14, wanted("web-3.0.0"), &ready, &[]);
    assert_eq!(plan.state.current.as_deref(), Some("web-1.0.0"));
    assert_eq!(
        plan.state.rollout.as_ref().map(|r| r.release.as_str()),
        Some("web-3.0.0"),
        "the newest wins once the rollout under way has its verdict"
    );
    let superseded: Vec<&str> = plan
        .state
        .history
        .iter()
        .filter(|h| h.kind == HistoryKind::Superseded)
        .map(|h| h.release.as_str())
        .collect();
    assert_eq!(superseded, ["web-2.0.0"]);
}

#[test]
fn the_history_limit_is_the_applications() {
    let mut env = Env::new(StrategyType::RollingUpdate);
    env.history_limit = 3;
    for (i, release) in ["web-1", "web-2", "web-3", "web-4"].iter().enumerate() {
        healthy(&mut env, release, i as i64 * 100);
    }
    assert_eq!(env.state.history.len(), 3);
    assert_eq!(env.state.history[0].release, "web-4");
}
