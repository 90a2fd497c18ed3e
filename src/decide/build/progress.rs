//! How far a build has come, from its pod: which step runs, which failed and why, and what
//! the publish step reported.
//!
//! The pod runs `fetch`, `build` and `publish` in order (`desired::build_pod`). The first
//! step that ends with a non-zero exit code, or cannot start because its image cannot be
//! pulled, fails the build at once with a reason naming that step; a pod stopped at its
//! deadline fails with `TimedOut`. When every step succeeded, the publish step's termination
//! message names the image it pushed — which the controller does not trust until it has seen
//! the digest in the registry itself ([`Verification`]).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::api::Time;
use crate::api::buildjob::BuildFailure;
use crate::api::conditions::truncate;
use crate::api::reasons::{
    FETCH_FAILED, IMAGE_NOT_VERIFIED, IMAGE_PULL_FAILED, POD_FAILED, PUBLISH_FAILED, Reason,
    SCRIPT_FAILED, TIMED_OUT,
};

/// The exit code of a container the kubelet killed (128 + SIGKILL).
const KILLED: i32 = 137;

/// The longest log tail a failure keeps in the BuildJob status.
pub const LOG_TAIL_BYTES: usize = 4096;

/// A build pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One step (container) of the build pod as the kubelet reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Not started: waiting for the step before it, or for its image.
    Waiting {
        reason: Option<String>,
    },
    Running,
    Terminated {
        exit_code: i32,
        /// The termination message: what the step wrote there, or the tail of its log.
        message: Option<String>,
        finished: Option<Time>,
    },
}

/// The build pod as the reconciler found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub phase: PodPhase,
    /// `status.reason`, such as `DeadlineExceeded`.
    pub reason: Option<String>,
    pub started: Option<Time>,
    /// Every step in the order it runs: `(name, state)`.
    pub steps: Vec<(String, StepState)>,
}

impl PodFacts {
    /// The facts of a build pod as the API server reports it: its init containers then its
    /// containers, in the order of its spec (a step the kubelet has not reported yet is
    /// waiting).
    pub fn of(pod: &Pod) -> PodFacts {
        let status = pod.status.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let reported = |statuses: &Option<Vec<ContainerStatus>>, name: &str| {
            statuses
                .iter()
                .flatten()
                .find(|s| s.name == name)
                .map(step_state)
                .unwrap_or(StepState::Waiting { reason: None })
        };
        let steps = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.name.clone(),
                    reported(&status.init_container_statuses, &c.name),
                )
            })
            .chain(spec.containers.iter().map(|c| {
                (
                    c.name.clone(),
                    reported(&status.container_statuses, &c.name),
                )
            }))
            .collect();
        PodFacts {
            phase: match status.phase.as_deref() {
                Some("Running") => PodPhase::Running,
                Some("Succeeded") => PodPhase::Succeeded,
                Some("Failed") => PodPhase::Failed,
                _ => PodPhase::Pending,
            },
            reason: status.reason,
            started: status.start_time,
            steps,
        }
    }
}

fn step_state(status: &ContainerStatus) -> StepState {
    let state = status.state.clone().unwrap_or_default();
    if let Some(done) = state.terminated {
        return StepState::Terminated {
            exit_code: done.exit_code,
            message: done.message,
            finished: done.finished_at,
        };
    }
    if state.running.is_some() {
        return StepState::Running;
    }
    StepState::Waiting {
        reason: state.waiting.and_then(|w| w.reason),
    }
}

/// What the registry said about the image the publish step reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The manifest digest exists in the registry.
    Found,
    /// The registry answered that it does not.
    Missing,
    /// The registry could not be asked; try again later.
    Unavailable(String),
}

/// Where the build stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// There is no build pod yet: create it.
    CreatePod,
    /// The pod works; `step` is the one running, if any has started.
    Running {
        step: Option<String>,
        started: Option<Time>,
    },
    /// Every step succeeded and the publish step reported `image`; verify it.
    Verify {
        image: String,
        started: Option<Time>,
    },
    /// The image could not be verified yet; ask the registry again later.
    VerifyLater { image: String, why: String },
    /// The image is in the registry: the build succeeded.
    Succeeded {
        image: String,
        started: Option<Time>,
        finished: Option<Time>,
    },
    Failed {
        failure: BuildFailure,
        started: Option<Time>,
        finished: Option<Time>,
    },
}

/// Waiting reasons that mean a step's image will not start by itself.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// The reason a failure of step `name` carries.
fn step_reason(name: &str) -> Reason {
    match name {
        "fetch" => FETCH_FAILED,
        "build" => SCRIPT_FAILED,
        "publish" => PUBLISH_FAILED,
        _ => POD_FAILED,
    }
}

fn failure(step: &str, reason: Reason, message: String, log: Option<&str>) -> BuildFailure {
    BuildFailure {
        step: step.to_owned(),
        reason: reason.name.to_owned(),
        message,
        log_tail: log.map(tail),
    }
}

/// The last [`LOG_TAIL_BYTES`] of a log, cut on a line boundary where one is near.
pub fn tail(log: &str) -> String {
    tail_of(log, LOG_TAIL_BYTES)
}

/// The last `max` bytes of a log, cut on a line boundary where one is near.
pub fn tail_of(log: &str, max: usize) -> String {
    let log = log.trim_end();
    if log.len() <= max {
        return log.to_owned();
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let cut = &log[start..];
    match cut.find('\n') {
        Some(newline) if newline < 200 => cut[newline + 1..].to_owned(),
        _ => cut.to_owned(),
    }
}

/// The error Ferry's fetch or publish step reported in its termination message, if it did.
fn reported_error(message: &str) -> Option<String> {
    let reported: serde_json::Value = serde_json::from_str(message.trim()).ok()?;
    Some(reported.get("error")?.as_str()?.to_owned())
}

/// The image the publish step reported in its termination message, if it is an image of
/// `repository` by digest. Anything else the pod says is not believed.
pub fn reported_image(message: &str, repository: &str) -> Option<String> {
    let reported: serde_json::Value = serde_json::from_str(message.trim()).ok()?;
    let image = reported.get("image")?.as_str()?;
    let digest = image.strip_prefix(repository)?.strip_prefix("@sha256:")?;
    let well_formed = digest.len() == 64
        && digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    well_formed.then(|| image.to_owned())
}

/// Where the build of `repository`'s image stands, from its pod and, once the publish step
/// reported an image, from the registry's answer about it.
pub fn progress(
    pod: Option<&PodFacts>,
    repository: &str,
    verification: Option<&Verification>,
) -> Progress {
    let Some(pod) = pod else {
        return Progress::CreatePod;
    };
    let started = pod.started.clone();
    let last_finish = pod.steps.iter().rev().find_map(|(_, s)| match s {
        StepState::Terminated { finished, .. } => finished.clone(),
        _ => None,
    });
    let failed = |failure| Progress::Failed {
        failure,
        started: started.clone(),
        finished: last_finish.clone(),
    };
    // At the deadline the kubelet fails the pod (`DeadlineExceeded`) and kills the step that
    // runs (exit 137): that is a timeout, not the step's own failure. A killed step of a pod
    // not yet failed is waited on, so the first sight of the kill is not taken for a failure.
    let killed = |state: &StepState| matches!(state, StepState::Terminated { exit_code, .. } if *exit_code == KILLED);
    let timed_out =
        pod.phase == PodPhase::Failed && pod.reason.as_deref() == Some("DeadlineExceeded");
    let running = pod
        .steps
        .iter()
        .find_map(|(name, s)| (matches!(s, StepState::Running) || killed(s)).then(|| name.clone()));
    if timed_out {
        let step = running.unwrap_or_else(|| "pod".to_owned());
        let message = "the build ran longer than build.timeout and was stopped".to_owned();
        return failed(failure(&step, TIMED_OUT, message, None));
    }
    for (name, state) in &pod.steps {
        match state {
            StepState::Terminated { .. } if killed(state) && pod.phase != PodPhase::Failed => {}
            StepState::Terminated {
                exit_code, message, ..
            } if *exit_code != 0 => {
                let reason = step_reason(name);
                let what = if name == "build" {
                    format!("the build script exited with {exit_code}")
                } else {
                    format!("step {name} exited with {exit_code}")
                };
                // Ferry's own steps report a failure as `{"error": .., "reason": ..}`; a
                // script's message is the tail of its log.
                let reported = message.as_deref().and_then(reported_error);
                let log = reported.as_deref().or(message.as_deref());
                let summary = log
                    .and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty()))
                    .map(|last| format!("{what}: {}", truncate(last.trim(), 300)))
                    .unwrap_or(what);
                return failed(failure(name, reason, summary, log));
            }
            StepState::Waiting {
                reason: Some(reason),
            } if PULL_FAILURES.contains(&reason.as_str()) => {
                return failed(failure(
                    name,
                    IMAGE_PULL_FAILED,
                    format!(
                        "the image of step {name} cannot be pulled ({reason}); check the image reference and that the node can reach its registry"
                    ),
                    None,
                ));
            }
            _ => {}
        }
    }
    match pod.phase {
        PodPhase::Failed => {
            let message = format!(
                "the build pod failed ({})",
                pod.reason.as_deref().unwrap_or("no reason given")
            );
            let step = running.unwrap_or_else(|| "pod".to_owned());
            failed(failure(&step, POD_FAILED, message, None))
        }
        PodPhase::Succeeded => {
            let message = pod.steps.iter().find_map(|(name, s)| match s {
                StepState::Terminated { message, .. } if name == "publish" => message.clone(),
                _ => None,
            });
            let Some(image) = message
                .as_deref()
                .and_then(|m| reported_image(m, repository))
            else {
                return failed(failure(
                    "publish",
                    PUBLISH_FAILED,
                    format!("the publish step did not report an image of {repository} by digest"),
                    message.as_deref(),
                ));
            };
            match verification {
                None => Progress::Verify { image, started },
                Some(Verification::Found) => Progress::Succeeded {
                    image,
                    started,
                    finished: last_finish,
                },
                Some(Verification::Missing) => failed(failure(
                    "publish",
                    IMAGE_NOT_VERIFIED,
                    format!("the publish step reported {image}, but the registry does not have it"),
                    None,
                )),
                Some(Verification::Unavailable(why)) => Progress::VerifyLater {
                    image,
                    why: why.clone(),
                },
            }
        }
        PodPhase::Pending | PodPhase::Running => Progress::Running {
            step: running,
            started,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "registry.local/team-a/shop";
    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn done(exit_code: i32, message: &str) -> StepState {
        StepState::Terminated {
            exit_code,
            message: (!message.is_empty()).then(|| message.to_owned()),
            finished: Some(at(20)),
        }
    }

    fn waiting(reason: &str) -> StepState {
        StepState::Waiting {
            reason: Some(reason.to_owned()),
        }
    }

    fn pod(phase: PodPhase, steps: [StepState; 3]) -> PodFacts {
        let [fetch, build, publish] = steps;
        PodFacts {
            phase,
            reason: None,
            started: Some(at(10)),
            steps: vec![
                ("fetch".into(), fetch),
                ("build".into(), build),
                ("publish".into(), publish),
            ],
        }
    }

    fn reported() -> String {
        format!(r#"{{"digest":"sha256:{DIGEST}","image":"{REPO}@sha256:{DIGEST}"}}"#)
    }

    fn failure_of(progress: Progress) -> BuildFailure {
        match progress {
            Progress::Failed { failure, .. } => failure,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn a_refused_push_reads_as_the_publish_steps_error_not_its_json() {
        let report = r#"{"error":"registry r:5001 refused pushing (HTTP 401): check the push Secret's credentials","reason":"RegistryRefused"}"#;
        let refused = pod(
            PodPhase::Failed,
            [done(0, ""), done(0, ""), done(1, report)],
        );
        let failure = failure_of(progress(Some(&refused), REPO, None));
        assert_eq!(failure.reason, "PublishFailed");
        assert_eq!(
            failure.message,
            "step publish exited with 1: registry r:5001 refused pushing (HTTP 401): check the push Secret's credentials"
        );
        assert!(!failure.log_tail.unwrap_or_default().contains('{'));
    }

    #[test]
    fn a_failing_step_fails_the_build_with_its_reason_and_log() {
        let cases = [
            (
                "fetch",
                [
                    done(1, "fatal: repository not found"),
                    waiting("PodInitializing"),
                    waiting("PodInitializing"),
                ],
                "FetchFailed",
                "step fetch exited with 1: fatal: repository not found",
            ),
            (
                "build",
                [
                    done(0, ""),
                    done(2, "ok 1\nFAIL test_cart\n"),
                    waiting("PodInitializing"),
                ],
                "ScriptFailed",
                "the build script exited with 2: FAIL test_cart",
            ),
            (
                "publish",
                [
                    done(0, ""),
                    done(0, ""),
                    done(1, "registry refused the push: 401"),
                ],
                "PublishFailed",
                "step publish exited with 1: registry refused the push: 401",
            ),
        ];
        for (step, steps, reason, message) in cases {
            let failure = failure_of(progress(Some(&pod(PodPhase::Failed, steps)), REPO, None));
            assert_eq!(failure.step, step);
            assert_eq!(failure.reason, reason, "{step}");
            assert_eq!(failure.message, message, "{step}");
            assert!(failure.log_tail.is_some(), "{step}");
        }
    }

    #[test]
    fn an_image_that_cannot_be_pulled_fails_at_once() {
        let steps = [
            done(0, ""),
            waiting("ImagePullBackOff"),
            waiting("PodInitializing"),
        ];
        let failure = failure_of(progress(Some(&pod(PodPhase::Pending, steps)), REPO, None));
        assert_eq!(
            (failure.step.as_str(), failure.reason.as_str()),
            ("build", "ImagePullFailed")
        );
    }

    #[test]
    fn a_pod_stopped_at_its_deadline_times_out_in_the_step_that_ran() {
        let mut facts = pod(
            PodPhase::Failed,
            [done(0, ""), StepState::Running, waiting("PodInitializing")],
        );
        facts.reason = Some("DeadlineExceeded".into());
        let failure = failure_of(progress(Some(&facts), REPO, None));
        assert_eq!(
            (failure.step.as_str(), failure.reason.as_str()),
            ("build", "TimedOut")
        );
        // As the e2e cluster reports it: the running step killed (137) at the deadline.
        let mut killed = pod(
            PodPhase::Failed,
            [
                done(0, ""),
                done(137, "a very long test"),
                waiting("PodInitializing"),
            ],
        );
        killed.reason = Some("DeadlineExceeded".into());
        let failure = failure_of(progress(Some(&killed), REPO, None));
        assert_eq!(
            (failure.step.as_str(), failure.reason.as_str()),
            ("build", "TimedOut")
        );
        // Seen before the pod is marked failed, the kill is waited on, not taken for the
        // script's failure.
        killed.phase = PodPhase::Running;
        killed.reason = None;
        assert!(matches!(
            progress(Some(&killed), REPO, None),
            Progress::Running { step: Some(step), .. } if step == "build"
        ));
    }

    #[test]
    fn a_published_image_is_trusted_only_once_verified() {
        let succeeded = pod(
            PodPhase::Succeeded,
            [done(0, ""), done(0, ""), done(0, &reported())],
        );
        let image = format!("{REPO}@sha256:{DIGEST}");
        assert!(
            matches!(progress(Some(&succeeded), REPO, None), Progress::Verify { image: i, .. } if i == image)
        );
        assert!(matches!(
            progress(Some(&succeeded), REPO, Some(&Verification::Found)),
            Progress::Succeeded { .. }
        ));
        assert!(matches!(
            progress(
                Some(&succeeded),
                REPO,
                Some(&Verification::Unavailable("connection refused".into()))
            ),
            Progress::VerifyLater { .. }
        ));
        let failure = failure_of(progress(
            Some(&succeeded),
            REPO,
            Some(&Verification::Missing),
        ));
        assert_eq!(failure.reason, "ImageNotVerified");
    }

    #[test]
    fn what_the_pod_reports_is_believed_only_for_this_repository_by_digest() {
        let cases = [
            ("the expected image", reported(), true),
            (
                "another repository",
                reported().replace("team-a/shop", "team-b/shop"),
                false,
            ),
            ("a tag", format!(r#"{{"image":"{REPO}:latest"}}"#), false),
            (
                "a short digest",
                format!(r#"{{"image":"{REPO}@sha256:abc"}}"#),
                false,
            ),
            ("not JSON", "pushed!".to_owned(), false),
        ];
        for (name, message, believed) in cases {
            assert_eq!(reported_image(&message, REPO).is_some(), believed, "{name}");
        }
    }

    #[test]
    fn a_pod_at_work_names_its_running_step() {
        let facts = pod(
            PodPhase::Pending,
            [done(0, ""), StepState::Running, waiting("PodInitializing")],
        );
        assert_eq!(
            progress(Some(&facts), REPO, None),
            Progress::Running {
                step: Some("build".into()),
                started: Some(at(10))
            }
        );
        assert_eq!(progress(None, REPO, None), Progress::CreatePod);
    }

    #[test]
    fn the_facts_follow_the_pods_status_in_step_order() {
        let pod: Pod = serde_yaml::from_str(
            r#"
spec:
  initContainers: [{name: fetch}, {name: build}]
  containers: [{name: publish}]
status:
  phase: Failed
  reason: DeadlineExceeded
  startTime: "2026-01-01T00:00:10Z"
  initContainerStatuses:
  - {name: build, image: b, imageID: "", ready: false, restartCount: 0, state: {running: {}}}
  - {name: fetch, image: f, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 0, finishedAt: "2026-01-01T00:00:20Z"}}}
"#,
        )
        .unwrap();
        let facts = PodFacts::of(&pod);
        assert_eq!(facts.phase, PodPhase::Failed);
        assert_eq!(facts.reason.as_deref(), Some("DeadlineExceeded"));
        let names: Vec<&str> = facts.steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["fetch", "build", "publish"]);
        assert!(matches!(
            facts.steps[0].1,
            StepState::Terminated { exit_code: 0, .. }
        ));
        assert_eq!(facts.steps[1].1, StepState::Running);
        assert_eq!(facts.steps[2].1, StepState::Waiting { reason: None });
        let failure = failure_of(progress(Some(&facts), REPO, None));
        assert_eq!(
            (failure.step.as_str(), failure.reason.as_str()),
            ("build", "TimedOut")
        );
    }

    #[test]
    fn a_long_log_keeps_its_last_four_kilobytes_from_a_line_start() {
        let log: String = (0..2000).map(|n| format!("line {n}\n")).collect();
        let kept = tail(&log);
        assert!(kept.len() <= LOG_TAIL_BYTES);
        assert!(kept.starts_with("line "), "{}", &kept[..20]);
        assert!(kept.ends_with("line 1999"));
    }
}
