//! Health signals: from what the shell observed of a rollout's Deployment, its pods and its
//! HTTP checks (plain data), whether the release is ready, and the first signal that it is
//! not healthy, with its figures.
//!
//! Three kinds of signal, the ones a platform team asks for:
//! - the release cannot serve: a crash loop, an image that cannot be pulled, a pod nobody can
//!   schedule, a container that cannot start (seen at once, never waited out), or pods not
//!   ready by the progress deadline, or no longer ready during the window;
//! - it serves errors: the HTTP checks' error rate over `maxErrorRate`;
//! - it serves slowly: their p95 latency over `maxLatencyP95`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::runs::CheckCounts;
use crate::api::Time;
use crate::api::application::Slot;
use crate::api::reasons::{
    CONTAINER_NOT_STARTING, CRASH_LOOP, ERROR_RATE_EXCEEDED, IMAGE_PULL_FAILED, LATENCY_EXCEEDED,
    PROGRESS_DEADLINE_EXCEEDED, READINESS_LOST, Reason, TOO_MANY_RESTARTS, UNSCHEDULABLE,
};

/// Where a Deployment sits: the one `RollingUpdate` Deployment (`None`) or a `BlueGreen` slot.
pub type Placement = Option<Slot>;

/// A Deployment as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentFacts {
    /// The Release its pod template runs (its `ferry.dev/release` annotation).
    pub release: Option<String>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    /// `status.replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`.
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

/// A pod as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub placement: Placement,
    /// The Release it runs (its `ferry.dev/release` annotation).
    pub release: Option<String>,
    pub ready: bool,
    /// Restarts of its containers, summed.
    pub restarts: i32,
    /// A container waiting: its reason and message (`CrashLoopBackOff`, `ErrImagePull`, ...).
    pub waiting: Option<(String, String)>,
    /// The last termination of a container: exit code and when it finished.
    pub last_exit: Option<(i32, Option<Time>)>,
    /// Why the scheduler cannot place it, when it says `Unschedulable`.
    pub unschedulable: Option<String>,
    /// Being deleted: no longer part of the rollout.
    pub deleting: bool,
}

/// The workload of one Application in one Environment, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub deployments: BTreeMap<Placement, DeploymentFacts>,
    pub pods: Vec<PodFacts>,
}

/// One HTTP check's thresholds and figures so far.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckFigures {
    pub path: String,
    pub interval: Duration,
    /// `maxErrorRate` as a percentage.
    pub max_error_rate: f64,
    pub max_latency_p95: Option<Duration>,
    /// Its requests, failures and latency so far.
    pub counts: CheckCounts,
}

/// A sign that a release is not healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub reason: Reason,
    /// The signal with its figures, for a person.
    pub message: String,
    /// When it was first visible, if the cluster says (a container's exit, say).
    pub time: Option<Time>,
}

impl Signal {
    fn new(reason: Reason, message: String, time: Option<Time>) -> Self {
        Self {
            reason,
            message,
            time,
        }
    }
}

/// `"5%"` as 5.0; a value the schema would refuse counts as 0%, the strict side.
pub fn percentage(text: &str) -> f64 {
    text.trim_end_matches('%').trim().parse().unwrap_or(0.0)
}

/// Whether the Deployment at a placement runs `release` with all `replicas` updated and ready,
/// and nothing else: the release serves all the traffic the Deployment gets.
pub fn all_ready(workload: &Workload, placement: Placement, release: &str, replicas: i32) -> bool {
    let Some(d) = workload.deployments.get(&placement) else {
        return false;
    };
    d.release.as_deref() == Some(release)
        && d.observed_generation >= d.generation
        && d.updated == replicas
        && d.ready >= replicas
        && d.available >= replicas
        && d.replicas == replicas
}

/// The pods of `release` at `placement` that still count (not being deleted).
fn pods_of<'a>(
    workload: &'a Workload,
    placement: Placement,
    release: &'a str,
) -> impl Iterator<Item = &'a PodFacts> + 'a {
    workload.pods.iter().filter(move |p| {
        p.placement == placement && p.release.as_deref() == Some(release) && !p.deleting
    })
}

/// The first signal, among the pods of `release`, that ends a rollout at once: waiting for the
/// deadline would only delay a verdict that cannot change.
pub fn fail_fast(
    workload: &Workload,
    placement: Placement,
    release: &str,
    max_restarts: i32,
) -> Option<Signal> {
    let mut restarts = 0;
    for pod in pods_of(workload, placement, release) {
        restarts += pod.restarts;
        if let Some((reason, message)) = &pod.waiting {
            let exit = pod.last_exit.as_ref();
            let signal = match reason.as_str() {
                "CrashLoopBackOff" => Some(Signal::new(
                    CRASH_LOOP,
                    format!(
                        "pod {} keeps crashing: its container exited with code {} and was restarted {} time{}",
                        pod.name,
                        exit.map_or("?".to_owned(), |(code, _)| code.to_string()),
                        pod.restarts,
                        if pod.restarts == 1 { "" } else { "s" }
                    ),
                    exit.and_then(|(_, at)| at.clone()),
                )),
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => Some(Signal::new(
                    IMAGE_PULL_FAILED,
                    format!(
                        "pod {} cannot pull its image ({reason}): {message}",
                        pod.name
                    ),
                    None,
                )),
                "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                    Some(Signal::new(
                        CONTAINER_NOT_STARTING,
                        format!(
                            "pod {} cannot start its container ({reason}): {message}",
                            pod.name
                        ),
                        None,
                    ))
                }
                _ => None,
            };
            if signal.is_some() {
                return signal;
            }
        }
        if let Some(message) = &pod.unschedulable {
            return Some(Signal::new(
                UNSCHEDULABLE,
                format!("pod {} cannot be scheduled: {message}", pod.name),
                None,
            ));
        }
    }
    (restarts > max_restarts).then(|| {
        Signal::new(
            TOO_MANY_RESTARTS,
            format!(
                "containers of {release} restarted {restarts} times, more than maxRestarts ({max_restarts})"
            ),
            None,
        )
    })
}

/// The deadline passed with the pods not all ready: how far they got.
pub fn deadline_passed(
    workload: &Workload,
    placement: Placement,
    release: &str,
    replicas: i32,
    deadline: Duration,
) -> Signal {
    let ready = pods_of(workload, placement, release)
        .filter(|p| p.ready)
        .count();
    let waiting = pods_of(workload, placement, release).find(|p| !p.ready);
    let hint = match waiting {
        Some(pod) => match &pod.waiting {
            Some((reason, _)) => format!("; pod {} is waiting ({reason})", pod.name),
            None => format!(
                "; pod {} is running but not ready (its readiness probe fails)",
                pod.name
            ),
        },
        None => String::new(),
    };
    Signal::new(
        PROGRESS_DEADLINE_EXCEEDED,
        format!(
            "{ready} of {replicas} pods of {release} ready after the progress deadline ({}){hint}",
            show(deadline)
        ),
        None,
    )
}

/// Pods that were all ready are not any more, during the stabilization window.
pub fn readiness_lost(
    workload: &Workload,
    placement: Placement,
    release: &str,
    replicas: i32,
) -> Signal {
    let ready = pods_of(workload, placement, release)
        .filter(|p| p.ready)
        .count();
    Signal::new(
        READINESS_LOST,
        format!(
            "{ready} of {replicas} pods of {release} ready during the stabilization window; they were all ready before"
        ),
        None,
    )
}

/// The first HTTP check that fails. Before the window ends (`final_ = false`), only what can
/// no longer pass: more failures than the whole window may hold, or (with enough requests)
/// a p95 over the limit. At its end, the figures as they are.
pub fn checks_failing(checks: &[CheckFigures], window: Duration, final_: bool) -> Option<Signal> {
    checks.iter().find_map(|c| {
        let n = &c.counts;
        let rate = if n.requests == 0 {
            0.0
        } else {
            n.failed as f64 * 100.0 / n.requests as f64
        };
        // The requests the whole window will hold, and the failures they may include.
        let expected = (window.as_secs_f64() / c.interval.as_secs_f64().max(0.001))
            .ceil()
            .max(1.0);
        let budget = (c.max_error_rate / 100.0 * expected).floor() as u64;
        let errors = (final_ && rate > c.max_error_rate) || n.failed > budget;
        if errors && n.failed > 0 {
            let last = n
                .last_failure
                .as_deref()
                .map(|l| format!("; last: {l}"))
                .unwrap_or_default();
            return Some(Signal::new(
                ERROR_RATE_EXCEEDED,
                format!(
                    "{} of {} requests to {} failed ({} > {}){last}",
                    n.failed,
                    n.requests,
                    c.path,
                    percent(rate),
                    percent(c.max_error_rate)
                ),
                n.first_failure.clone(),
            ));
        }
        let (Some(p95), Some(max)) = (n.p95, c.max_latency_p95) else {
            return None;
        };
        let enough = final_ || n.requests >= 10;
        (enough && p95 > max).then(|| {
            Signal::new(
                LATENCY_EXCEEDED,
                format!(
                    "p95 latency of {} was {} over {} requests (> {})",
                    c.path,
                    show(p95),
                    n.requests,
                    show(max)
                ),
                None,
            )
        })
    })
}

/// A percentage for messages: `15%`, `2.5%`.
fn percent(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}%")
    } else {
        format!("{rounded:.1}%")
    }
}

/// A duration for messages: `300ms`, `20s`, `2m`, `1m30s`.
pub fn show(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    if !millis.is_multiple_of(1000) {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    let seconds = duration.as_secs();
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, release: &str) -> PodFacts {
        PodFacts {
            name: name.to_owned(),
            release: Some(release.to_owned()),
            ..PodFacts::default()
        }
    }

    fn with_pods(pods: Vec<PodFacts>) -> Workload {
        Workload {
            pods,
            ..Workload::default()
        }
    }

    fn check(requests: u64, failed: u64, p95_ms: u64) -> CheckFigures {
        CheckFigures {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(1),
            max_error_rate: 5.0,
            max_latency_p95: Some(Duration::from_millis(300)),
            counts: CheckCounts {
                requests,
                failed,
                p95: Some(Duration::from_millis(p95_ms)),
                first_failure: None,
                last_failure: (failed > 0).then(|| "HTTP 500".to_owned()),
            },
        }
    }

    #[test]
    fn a_crash_loop_pull_error_or_unschedulable_pod_is_a_signal_at_once() {
        let cases = [
            ("CrashLoopBackOff", CRASH_LOOP),
            ("ImagePullBackOff", IMAGE_PULL_FAILED),
            ("ErrImagePull", IMAGE_PULL_FAILED),
            ("CreateContainerConfigError", CONTAINER_NOT_STARTING),
        ];
        for (waiting, want) in cases {
            let mut p = pod("web-1", "web-2.0.0");
            p.waiting = Some((waiting.to_owned(), "back-off".to_owned()));
            p.last_exit = Some((1, None));
            let signal = fail_fast(&with_pods(vec![p]), None, "web-2.0.0", 2);
            assert_eq!(signal.map(|s| s.reason), Some(want), "{waiting}");
        }
        let mut p = pod("web-1", "web-2.0.0");
        p.unschedulable = Some("0/1 nodes are available: 1 Insufficient cpu".to_owned());
        let signal = fail_fast(&with_pods(vec![p]), None, "web-2.0.0", 2);
        assert_eq!(signal.map(|s| s.reason), Some(UNSCHEDULABLE));
    }

    #[test]
    fn the_old_release_or_a_terminating_pod_gives_no_signal() {
        let mut old = pod("web-old", "web-1.0.0");
        old.waiting = Some(("CrashLoopBackOff".to_owned(), String::new()));
        let mut leaving = pod("web-2", "web-2.0.0");
        leaving.waiting = Some(("CrashLoopBackOff".to_owned(), String::new()));
        leaving.deleting = true;
        let workload = with_pods(vec![old, leaving, pod("web-3", "web-2.0.0")]);
        assert_eq!(fail_fast(&workload, None, "web-2.0.0", 2), None);
    }

    #[test]
    fn restarts_count_across_pods_against_max_restarts() {
        let mut a = pod("web-a", "web-2.0.0");
        a.restarts = 2;
        let mut b = pod("web-b", "web-2.0.0");
        b.restarts = 1;
        let workload = with_pods(vec![a, b]);
        assert_eq!(fail_fast(&workload, None, "web-2.0.0", 3), None);
        let signal = fail_fast(&workload, None, "web-2.0.0", 2).map(|s| s.message);
        assert_eq!(
            signal.as_deref(),
            Some("containers of web-2.0.0 restarted 3 times, more than maxRestarts (2)")
        );
    }

    #[test]
    fn a_crash_loop_names_its_exit_code_and_time() {
        let mut p = pod("web-1", "web-2.0.0");
        p.waiting = Some(("CrashLoopBackOff".to_owned(), String::new()));
        p.restarts = 1;
        let at = Time(jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default());
        p.last_exit = Some((3, Some(at.clone())));
        let signal = fail_fast(&with_pods(vec![p]), None, "web-2.0.0", 2);
        let signal = signal.unwrap_or_else(|| panic!("no signal"));
        assert_eq!(
            signal.message,
            "pod web-1 keeps crashing: its container exited with code 3 and was restarted 1 time"
        );
        assert_eq!(signal.time, Some(at));
    }

    #[test]
    fn all_ready_needs_every_replica_of_the_release_and_nothing_else() {
        let facts = DeploymentFacts {
            release: Some("web-2.0.0".to_owned()),
            generation: Some(3),
            observed_generation: Some(3),
            replicas: 2,
            updated: 2,
            ready: 2,
            available: 2,
        };
        let workload = |f: DeploymentFacts| Workload {
            deployments: BTreeMap::from([(None, f)]),
            pods: Vec::new(),
        };
        assert!(all_ready(&workload(facts.clone()), None, "web-2.0.0", 2));
        assert!(!all_ready(&workload(facts.clone()), None, "web-1.0.0", 2));
        let old_pod_left = DeploymentFacts {
            replicas: 3,
            ..facts.clone()
        };
        assert!(!all_ready(&workload(old_pod_left), None, "web-2.0.0", 2));
        let not_seen = DeploymentFacts {
            observed_generation: Some(2),
            ..facts.clone()
        };
        assert!(!all_ready(&workload(not_seen), None, "web-2.0.0", 2));
        assert!(!all_ready(
            &workload(facts),
            Some(Slot::Blue),
            "web-2.0.0",
            2
        ));
    }

    #[test]
    fn errors_fail_early_only_once_the_window_cannot_pass() {
        let window = Duration::from_secs(20);
        // 20 requests expected, 5% of them: one failure may pass, two cannot.
        assert_eq!(checks_failing(&[check(5, 1, 10)], window, false), None);
        let signal = checks_failing(&[check(6, 2, 10)], window, false);
        assert_eq!(
            signal.map(|s| s.message).as_deref(),
            Some("2 of 6 requests to /healthz failed (33.3% > 5%); last: HTTP 500")
        );
        // At the end, the rate as it is.
        let signal = checks_failing(&[check(20, 3, 10)], window, true);
        assert_eq!(
            signal.map(|s| s.message).as_deref(),
            Some("3 of 20 requests to /healthz failed (15% > 5%); last: HTTP 500")
        );
        assert_eq!(checks_failing(&[check(20, 1, 10)], window, true), None);
    }

    #[test]
    fn slow_answers_fail_on_p95_with_enough_requests() {
        let window = Duration::from_secs(20);
        assert_eq!(checks_failing(&[check(5, 0, 900)], window, false), None);
        let signal = checks_failing(&[check(12, 0, 900)], window, false);
        assert_eq!(
            signal.map(|s| (s.reason, s.message)),
            Some((
                LATENCY_EXCEEDED,
                "p95 latency of /healthz was 900ms over 12 requests (> 300ms)".to_owned()
            ))
        );
        assert_eq!(checks_failing(&[check(12, 0, 250)], window, true), None);
    }

    #[test]
    fn durations_and_percentages_read_as_written() {
        assert_eq!(show(Duration::from_millis(300)), "300ms");
        assert_eq!(show(Duration::from_secs(20)), "20s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(percentage("5%"), 5.0);
        assert_eq!(percentage("0.5%"), 0.5);
        assert_eq!(percent(2.5), "2.5%");
    }
}
