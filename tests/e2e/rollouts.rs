//! Rollouts on the real cluster, driven only as a user drives them: Environments, an
//! Application and hand-made Releases whose images are the test server's, applied to the API
//! server. Each scenario has its own namespace with one Environment `dev` (the first stage, so
//! the newest Release of the Application runs there: Deployment and Service `web-dev`, or with
//! BlueGreen Deployments `web-dev-blue|green`) and one Application `web` whose source is a
//! branch the git server does not have (so Ferry builds nothing and only the scenario's
//! Releases run). Deadlines are short: progressDeadline 20s, stabilizationWindow 10s, an HTTP
//! check of /healthz every second (timeout 1s, maxErrorRate 10%).
//!
//! - good-rolling / good-bluegreen: two good releases in turn: Healthy each time,
//!   current/previous right, history newest first, the Service answers with the new version
//!   only (BlueGreen: the slot flips, the Service's selector follows it).
//! - never-ready: /ready answers 503: rolled back at the progress deadline, the verdict names
//!   readiness.
//! - crash: the container exits 1 at start: rolled back within 30 s of the first crash.
//! - image-pull: a digest the registry does not have: rolled back, the verdict names the pull.
//! - http-500: /healthz answers 500 3 s after the start, /ready stays 200: rolled back by the
//!   HTTP check (`ErrorRateExceeded`).
//! - slow: /healthz takes 1.5 s, maxLatencyP95 700ms: rolled back (`LatencyExceeded`).
//! - no-auto-rollback: a release that never becomes ready with rollback.automatic false:
//!   Degraded, stays so, the old pods still serve.
//! - zero-failures-rolling / -bluegreen: a client sends ~20 requests/s through the Service all
//!   through a failed rollout and its rollback: no request fails.
//! - restore-rolling / -bluegreen: a release that answers 500 once ready, under the client:
//!   failure signal → verdict, verdict → the previous release serving all traffic.
//! - controller-restart: the leader is killed mid-rollout: the rollout finishes, one history
//!   entry for it.
//!
//! What is asserted is what Ferry promises (the phase, the verdict's signal, the history, what
//! answers), never one interleaving of a correct rollout.

use std::sync::Arc;
use std::time::Duration;

use ferry::api::application::{EnvironmentState, HistoryKind, Outcome, Phase, Slot, Verdict};
use ferry::api::environment::{
    Approval, HealthPolicy, HttpCheck, RollbackPolicy, ServiceRequest, Strategy, StrategyType,
};
use ferry::api::{Application, Environment, EnvironmentSpec, Release, ReleaseSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use sha2::Digest;

use crate::git::{WorkingCopy, repository_url};
use crate::harness::{Cluster, Judged, Res, Scenario, Suite, seconds_between, two};
use crate::images::{self, Behaviour, missing, testserver};
use crate::net::{Load, answers, epoch, tally};
use crate::{case, ensure, fail};

const APP: &str = "web";
const ENV: &str = "dev";
const WORKLOAD: &str = "web-dev";
/// The repository the Applications name, and a branch it does not have.
const SOURCE_REPO: &str = "e2e-rollouts";
const SOURCE_BRANCH: &str = "no-builds";

pub fn suite() -> Suite {
    Suite {
        name: "rollouts",
        before: Some(|cluster| Box::pin(source_repo(cluster))),
        parallel: vec![
            case!("good-rolling", good_rolling, 240),
            case!("good-bluegreen", good_bluegreen, 240),
            case!("never-ready", never_ready, 180),
            case!("crash", crash, 180),
            case!("image-pull", image_pull, 180),
            case!("http-500", http_500, 180),
            case!("slow", slow, 180),
            case!("no-auto-rollback", no_auto_rollback, 180),
        ],
        alone: vec![
            case!("zero-failures-rolling", zero_failures_rolling, 180),
            case!("zero-failures-bluegreen", zero_failures_bluegreen, 180),
            case!("restore-rolling", restore_rolling, 180),
            case!("restore-bluegreen", restore_bluegreen, 180),
            case!("controller-restart", controller_restart, 300),
        ],
    }
}

/// The repository every scenario's Application names, with a `main` branch and no
/// `no-builds`: pushed once, before the scenarios (forced: on a kept cluster it is there
/// already, and what it holds does not matter).
pub async fn source_repo(cluster: Cluster) -> Res {
    let work = WorkingCopy::new().await?;
    work.write(
        "README",
        "The rollout scenarios' Applications name this repository's branch no-builds, which it does not have.\n",
    )?;
    work.commit("no builds here").await?;
    work.push(&repository_url(&cluster, SOURCE_REPO), &["+main"])
        .await
}

/// The environment's entry in the Application's status.
fn state_of(app: &Application) -> Option<&EnvironmentState> {
    app.status
        .as_ref()?
        .environments
        .iter()
        .find(|e| e.name == ENV)
}

/// The failed verdict: a rollback's `cause`, or the degraded rollout's own verdict (a rollback
/// is a rollout of its own, with its own verdict).
fn failure(state: &EnvironmentState) -> Option<&Verdict> {
    let rollout = state.rollout.as_ref()?;
    if rollout.kind == HistoryKind::Rollback {
        rollout.cause.as_ref()
    } else {
        rollout.verdict.as_ref()
    }
}

/// One line of the environment's state for the log.
fn show(state: &EnvironmentState) -> String {
    let rollout = state.rollout.as_ref().map(|r| {
        format!(
            "{{release {}, from {:?}, kind {:?}, strategy {:?}, slot {:?}, started {}, ready {:?}, verdict {:?}}}",
            r.release,
            r.from,
            r.kind,
            r.strategy,
            r.slot,
            r.started.0,
            r.ready.as_ref().map(|t| t.0.to_string()),
            r.verdict.as_ref().map(|v| (v.healthy, &v.reason, &v.message)),
        )
    });
    format!(
        "status of {ENV}: phase {:?}, current {:?}, previous {:?}, slot {:?}, rejected {:?}, rollout {}",
        state.phase,
        state.current,
        state.previous,
        state.slot,
        state.rejected,
        rollout.unwrap_or_else(|| "none".into())
    )
}

/// Whether `ended` is another ending of a rollout than `wanted`.
fn other_ending(wanted: Phase, ended: Phase) -> bool {
    let endings = [Phase::Healthy, Phase::RolledBack, Phase::Degraded];
    wanted != ended && endings.contains(&wanted) && endings.contains(&ended)
}

/// One scenario's Application `web` in `dev`.
struct Web {
    s: Arc<Scenario>,
    /// The release rolled out last, and when it was applied.
    rolling: String,
    released_at: jiff::Timestamp,
}

/// How an Environment of a scenario differs from the default one.
struct Env {
    strategy: StrategyType,
    automatic: bool,
    window: &'static str,
    deadline: &'static str,
    p95: Option<&'static str>,
    interval: &'static str,
    timeout: &'static str,
}

impl Default for Env {
    fn default() -> Self {
        Self {
            strategy: StrategyType::RollingUpdate,
            automatic: true,
            window: "10s",
            deadline: "20s",
            p95: None,
            interval: "1s",
            timeout: "1s",
        }
    }
}

fn duration(text: &str) -> Res<kube::core::Duration> {
    text.parse()
        .map_err(|e| format!("duration {text}: {e:?}").into())
}

impl Web {
    /// The Environment and the Application, applied; the Environment Ready.
    async fn new(s: Arc<Scenario>, env: Env) -> Res<Self> {
        let spec = EnvironmentSpec {
            target_namespace: None,
            upstream: None,
            approval: Approval::default(),
            strategy: Strategy {
                type_: env.strategy,
            },
            health: HealthPolicy {
                progress_deadline: duration(env.deadline)?,
                stabilization_window: duration(env.window)?,
                max_restarts: 2,
                http_checks: vec![HttpCheck {
                    request: ServiceRequest {
                        path: "/healthz".into(),
                        port: Some("http".into()),
                    },
                    interval: duration(env.interval)?,
                    timeout: duration(env.timeout)?,
                    max_error_rate: "10%".into(),
                    max_latency_p95: env.p95.map(duration).transpose()?,
                }],
            },
            rollback: RollbackPolicy {
                automatic: env.automatic,
            },
            verification: None,
        };
        s.apply(&Environment::new(ENV, spec)).await?;
        s.until_environment_ready(ENV).await?;
        s.say(format!(
            "applied Environment {ENV}: {:?}, progressDeadline {}, stabilizationWindow {}, automatic rollback {}{}",
            env.strategy,
            env.deadline,
            env.window,
            env.automatic,
            env.p95.map(|p| format!(", maxLatencyP95 {p}")).unwrap_or_default()
        ));
        let git = &s.cluster.git_url;
        let registry = &s.cluster.registry;
        // Its Releases are imported test server images, which must be in its repository; its
        // branch does not exist, so nothing is built or pushed there.
        let images = images::repository(&s.cluster);
        let app: Application = serde_yaml::from_str(&format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: {APP}}}
spec:
  source: {{url: "{git}/{SOURCE_REPO}.git", branch: {SOURCE_BRANCH}, pollInterval: 10m}}
  build: {{builderImage: "{registry}/busybox:1.35", script: "true", baseImage: "{registry}/busybox:1.35", entrypoint: [/srv/start]}}
  image: {{repository: "{images}", insecure: true}}
  run:
    replicas: 2
    ports: [{{name: http, port: 8080}}]
    readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1, failureThreshold: 1}}
  environments: [{{name: {ENV}}}]
"#
        ))?;
        s.apply(&app).await?;
        s.say(format!(
            "applied Application {APP} (source branch {SOURCE_BRANCH}, which does not exist: nothing is built)"
        ));
        Ok(Self {
            s,
            rolling: String::new(),
            released_at: jiff::Timestamp::now(),
        })
    }

    /// The test server `version` behaving so, pushed.
    async fn image(&self, behaviour: Behaviour, version: &str) -> Res<String> {
        testserver(&self.s.cluster, behaviour, version).await
    }

    /// Applies Release `web-VERSION` with `image` (a made-up commit).
    async fn release(&mut self, version: &str, image: &str) -> Res {
        let digest = sha2::Sha256::digest(format!("{} {version} {image}", self.s.ns));
        let commit: String = hex::encode(digest).chars().take(40).collect();
        let name = format!("{APP}-{version}");
        // Made by hand, so imported: the API server checks that it names its creator.
        let importer = self.s.cluster.whoami().await?;
        let release = Release::new(
            &name,
            ReleaseSpec {
                application: APP.into(),
                version: version.into(),
                commit,
                image: image.into(),
                build_job: None,
                imported_by: Some(importer),
                work_items: Vec::new(),
                notes: None,
                run: None,
            },
        );
        self.s.apply(&release).await?;
        self.rolling = name;
        self.released_at = jiff::Timestamp::now();
        self.s
            .say(format!("applied Release {APP}-{version} ({image})"));
        Ok(())
    }

    async fn state(&self) -> Res<EnvironmentState> {
        let app: Application = self
            .s
            .get(APP)
            .await?
            .ok_or("the Application web does not exist")?;
        Ok(state_of(&app).cloned().unwrap_or_default())
    }

    /// Waits until `dev` is `want` with `release` current; gives up when the rollout of the
    /// release rolled last ended otherwise.
    async fn phase_is(&self, want: Phase, release: &str, timeout: u64) -> Res<EnvironmentState> {
        let (release, rolling) = (release.to_owned(), self.rolling.clone());
        let what = format!("{ENV} to be {want:?} with {release}");
        self.s
            .until::<Application, _>(APP, &what, secs(timeout), move |app| {
                let Some(state) = state_of(app) else {
                    return Judged::Wait;
                };
                let Some(phase) = state.phase else {
                    return Judged::Wait;
                };
                if phase == want && state.current.as_deref() == Some(release.as_str()) {
                    return Judged::Done(state.clone());
                }
                let judged = failure(state).is_some()
                    || state.rollout.as_ref().is_some_and(|r| r.verdict.is_some());
                let about = state.rollout.as_ref().is_some_and(|r| {
                    r.release == rolling || r.from.as_deref() == Some(rolling.as_str())
                });
                if other_ending(want, phase) && judged && about {
                    return Judged::Never(format!(
                        "{ENV} ended {phase:?} (current {:?}) instead of {want:?}: {}",
                        state.current,
                        failure(state).map(|v| v.message.as_str()).unwrap_or("")
                    ));
                }
                Judged::Wait
            })
            .await
    }

    /// `web-VERSION` becomes Healthy in dev; prints the time it took.
    async fn healthy(&self, version: &str) -> Res<EnvironmentState> {
        let release = format!("{APP}-{version}");
        let state = self.phase_is(Phase::Healthy, &release, 120).await?;
        let rollout = state.rollout.clone().ok_or("no rollout in the status")?;
        self.s.measured(
            format!("{:?} Release applied → Healthy", rollout.strategy),
            two(seconds_between(&self.released_at, &jiff::Timestamp::now())),
            "s",
        );
        self.s.say(show(&state));
        ensure!(
            rollout.release == release,
            "rollout.release is {}, not {release}",
            rollout.release
        );
        ensure!(
            rollout.verdict.as_ref().is_some_and(|v| v.healthy),
            "rollout.verdict.healthy is not true"
        );
        Ok(state)
    }

    /// A first good release `version`, Healthy: what the scenarios start from.
    async fn start(&mut self, version: &str) -> Res<String> {
        let image = self.image(Behaviour::Ok, version).await?;
        self.release(version, &image).await?;
        self.healthy(version).await?;
        Ok(image)
    }

    /// The checks every failed rollout with automatic rollback shares; returns the failed
    /// verdict.
    async fn rolled_back(&self, bad: &str, good: &str) -> Res<(EnvironmentState, Verdict)> {
        let (bad, good) = (format!("{APP}-{bad}"), format!("{APP}-{good}"));
        let state = self.phase_is(Phase::RolledBack, &good, 120).await?;
        self.s.say(show(&state));
        let verdict = failure(&state).cloned().ok_or("no failed verdict")?;
        ensure!(!verdict.healthy, "the verdict is not unhealthy");
        let kind = state.rollout.as_ref().map(|r| r.kind);
        ensure!(
            kind == Some(HistoryKind::Rollback),
            "the rollout is a {kind:?}, not a Rollback"
        );
        ensure!(
            state.rejected.contains(&bad),
            "rejected does not name {bad}: {:?}",
            state.rejected
        );
        let outcome = state
            .history
            .iter()
            .find(|h| h.release == bad)
            .map(|h| h.outcome);
        ensure!(
            outcome == Some(Outcome::Failed),
            "the newest history entry of {bad} has outcome {outcome:?}, not Failed"
        );
        self.s.say(format!(
            "history: {:?}",
            state
                .history
                .iter()
                .map(|h| (&h.release, &h.from, h.kind, h.outcome))
                .collect::<Vec<_>>()
        ));
        self.s
            .say(format!("verdict: {}: {}", verdict.reason, verdict.message));
        Ok((state, verdict))
    }

    async fn service_ip(&self) -> Res<String> {
        let service: Service = self
            .s
            .get(WORKLOAD)
            .await?
            .ok_or_else(|| format!("no Service {WORKLOAD}"))?;
        service
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| format!("Service {WORKLOAD} has no cluster IP").into())
    }

    fn url(ip: &str) -> String {
        format!("http://{ip}:8080/")
    }

    /// 20 answers in a row of the Service, all from `version`, within 20 s (a pod that just
    /// left the endpoints may still get a request until kube-proxy has caught up; the
    /// client-side measurements are what time that).
    async fn only_version(&self, version: &str) -> Res {
        let ip = self.service_ip().await?;
        let url = Self::url(&ip);
        let netns = self.s.cluster.netns.clone();
        let want = version.to_owned();
        let got = self
            .s
            .poll(
                &format!("Service {WORKLOAD} to answer with {version} only"),
                secs(30),
                secs(1),
                || {
                    let (netns, url, want) = (netns.clone(), url.clone(), want.clone());
                    async move {
                        let got = answers(&netns, &url, 20).await?;
                        let all = got.iter().all(|a| a.ok_from(&want));
                        if all {
                            Ok(Some(tally(&got)))
                        } else {
                            Err(tally(&got).into())
                        }
                    }
                },
            )
            .await?;
        self.s.say(format!("Service {WORKLOAD} ({ip}): {got}"));
        Ok(())
    }

    /// The names of the pods that run `image`.
    async fn pods_running(&self, image: &str) -> Res<Vec<Pod>> {
        let pods = self.s.api::<Pod>().list(&ListParams::default()).await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.as_deref())
                    == Some(image)
            })
            .collect())
    }

    /// The slot in the status, its Deployment runs `version`, the Service selects it.
    async fn bluegreen_slot_serves(&self, version: &str) -> Res<Slot> {
        let state = self.state().await?;
        let slot = state.slot.ok_or("the status has no slot")?;
        let name = format!(
            "{WORKLOAD}-{}",
            match slot {
                Slot::Blue => "blue",
                Slot::Green => "green",
            }
        );
        let deployment: Deployment = self
            .s
            .get(&name)
            .await?
            .ok_or_else(|| format!("no Deployment {name}"))?;
        let image = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default();
        let release: Release = self
            .s
            .get(&format!("{APP}-{version}"))
            .await?
            .ok_or("no such Release")?;
        ensure!(
            image == release.spec.image,
            "Deployment {name} runs {image}, not {APP}-{version}'s image"
        );
        let service: Service = self.s.get(WORKLOAD).await?.ok_or("no Service")?;
        let selected = service
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("ferry.dev/release").cloned())
            .unwrap_or_default();
        ensure!(
            selected == format!("{APP}-{version}"),
            "Service {WORKLOAD} selects release '{selected}', not {APP}-{version}"
        );
        Ok(slot)
    }

    /// The failed verdict's own signal → verdict.
    fn measure_signal(&self, strategy: &str, verdict: &Verdict) {
        match &verdict.signal_time {
            Some(signal) => self.s.measured(
                format!("{strategy} failure signal → verdict"),
                two(seconds_between(&signal.0, &verdict.time.0)),
                "s",
            ),
            None => self.s.note("the verdict has no signalTime"),
        }
    }

    /// The verdict's message matches one of `words` (case-insensitive).
    fn verdict_says(verdict: &Verdict, words: &[&str]) -> Res {
        let message = verdict.message.to_lowercase();
        ensure!(
            words.iter().any(|w| message.contains(w)),
            "the verdict message names none of {words:?}: {}",
            verdict.message
        );
        Ok(())
    }

    /// When the rollout (not the rollback) of `release` started, from its history entry.
    fn started_of(state: &EnvironmentState, release: &str) -> Option<jiff::Timestamp> {
        state
            .history
            .iter()
            .find(|h| h.release == release && h.kind != HistoryKind::Rollback)
            .map(|h| h.time.0)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// --- the scenarios --------------------------------------------------------------------------

/// Two good releases in turn.
async fn good(s: Arc<Scenario>, strategy: StrategyType) -> Res {
    let mut web = Web::new(
        s,
        Env {
            strategy,
            ..Env::default()
        },
    )
    .await?;
    let state = {
        web.start("1.0.0").await?;
        web.state().await?
    };
    ensure!(
        state.previous.is_none(),
        "previous is {:?} after the first rollout",
        state.previous
    );
    web.only_version("1.0.0").await?;
    let bluegreen = strategy == StrategyType::BlueGreen;
    let slot1 = if bluegreen {
        let slot = web.bluegreen_slot_serves("1.0.0").await?;
        web.s.say(format!("slot {slot:?} serves 1.0.0"));
        Some(slot)
    } else {
        None
    };
    let v2 = web.image(Behaviour::Ok, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let state = web.healthy("2.0.0").await?;
    let (one, two_) = (format!("{APP}-1.0.0"), format!("{APP}-2.0.0"));
    ensure!(
        state.previous.as_ref() == Some(&one),
        "previous is {:?}, not {one}",
        state.previous
    );
    let rollout = state.rollout.clone().ok_or("no rollout")?;
    ensure!(
        rollout.from.as_ref() == Some(&one),
        "rollout.from is {:?}, not {one}",
        rollout.from
    );
    ensure!(
        rollout.kind == HistoryKind::Rollout,
        "rollout.kind is {:?}",
        rollout.kind
    );
    ensure!(
        rollout.strategy == strategy,
        "rollout.strategy is {:?}, not {strategy:?}",
        rollout.strategy
    );
    ensure!(rollout.ready.is_some(), "rollout.ready is not set");
    web.only_version("2.0.0").await?;
    // History, newest first: 2.0.0 replacing 1.0.0, then 1.0.0, both succeeded rollouts.
    let history = &state.history;
    web.s.say(format!(
        "history: {:?}",
        history
            .iter()
            .map(|h| (&h.release, &h.from, h.kind, h.outcome))
            .collect::<Vec<_>>()
    ));
    let newest = history.first().ok_or("no history")?;
    ensure!(
        newest.release == two_
            && newest.from.as_ref() == Some(&one)
            && newest.kind == HistoryKind::Rollout
            && newest.outcome == Outcome::Succeeded,
        "the newest history entry is not 2.0.0's succeeded rollout from 1.0.0: {newest:?}"
    );
    let second = history.get(1).ok_or("one history entry only")?;
    ensure!(
        second.release == one
            && second.kind == HistoryKind::Rollout
            && second.outcome == Outcome::Succeeded,
        "the second history entry is not 1.0.0's succeeded rollout: {second:?}"
    );
    ensure!(
        !history.iter().any(|h| h.outcome == Outcome::InProgress),
        "a history entry is still InProgress"
    );
    ensure!(
        state.rejected.is_empty(),
        "rejected is not empty: {:?}",
        state.rejected
    );
    if let Some(slot1) = slot1 {
        let slot2 = web.bluegreen_slot_serves("2.0.0").await?;
        web.s.say(format!("slot {slot2:?} serves 2.0.0"));
        ensure!(slot2 != slot1, "the slot stayed {slot1:?}");
    } else {
        let deployment: Deployment = web
            .s
            .get(WORKLOAD)
            .await?
            .ok_or_else(|| format!("no Deployment {WORKLOAD}"))?;
        let unavailable = deployment
            .spec
            .and_then(|s| s.strategy)
            .and_then(|s| s.rolling_update)
            .and_then(|r| r.max_unavailable);
        ensure!(
            unavailable == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0)),
            "Deployment {WORKLOAD} has maxUnavailable {unavailable:?}, not 0"
        );
    }
    Ok(())
}

async fn good_rolling(s: Arc<Scenario>) -> Res {
    good(s, StrategyType::RollingUpdate).await
}

async fn good_bluegreen(s: Arc<Scenario>) -> Res {
    good(s, StrategyType::BlueGreen).await
}

async fn never_ready(s: Arc<Scenario>) -> Res {
    let mut web = Web::new(s, Env::default()).await?;
    web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::NeverReady, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let (state, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    Web::verdict_says(&verdict, &["ready", "readiness"])?;
    // Rolled back at the deadline: not before it, and not long after.
    let started =
        Web::started_of(&state, &format!("{APP}-2.0.0")).ok_or("no history entry of 2.0.0")?;
    let took = seconds_between(&started, &verdict.time.0);
    web.s
        .measured("never-ready rollout started → verdict", two(took), "s");
    ensure!(
        took >= 19.0,
        "the verdict came {took:.2} s after the start, before the deadline"
    );
    ensure!(
        took <= 35.0,
        "the verdict came {took:.2} s after the start, long after the deadline"
    );
    web.only_version("1.0.0").await
}

async fn crash(s: Arc<Scenario>) -> Res {
    let mut web = Web::new(s, Env::default()).await?;
    web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::Crash, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    // The first crash: the earliest finishedAt of a container that ran the image, watched
    // until the verdict (a restarted container keeps only its last termination, so look
    // often).
    let mut first: Option<jiff::Timestamp> = None;
    let deadline = std::time::Instant::now() + secs(60);
    loop {
        // Until a failed verdict: right after the apply, the status still shows 1.0.0's
        // healthy one.
        let state = web.state().await.ok();
        if state.as_ref().and_then(failure).is_some_and(|v| !v.healthy) {
            break;
        }
        for pod in web.pods_running(&v2).await? {
            let statuses = pod.status.and_then(|s| s.container_statuses);
            for c in statuses.into_iter().flatten() {
                let last = c.last_state.and_then(|s| s.terminated);
                let now = c.state.and_then(|s| s.terminated);
                for finished in [last, now]
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.finished_at)
                {
                    if first.is_none_or(|f| finished.0 < f) {
                        first = Some(finished.0);
                    }
                }
            }
        }
        if std::time::Instant::now() > deadline {
            fail!("no verdict within 60 s (first crash seen: {first:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    Web::verdict_says(&verdict, &["crash", "restart", "exit"])?;
    match first {
        Some(first) => {
            let took = seconds_between(&first, &verdict.time.0);
            web.s.say(format!(
                "the first crash: a container finished at {first}; the verdict at {}",
                verdict.time.0
            ));
            web.s
                .measured("crash loop: signal → verdict", two(took), "s");
            ensure!(
                took <= 30.0,
                "rolled back {took:.2} s after the first crash, not within 30 s"
            );
        }
        None => web.s.note("the verdict came before a crash was seen"),
    }
    web.measure_signal("RollingUpdate", &verdict);
    web.only_version("1.0.0").await
}

async fn image_pull(s: Arc<Scenario>) -> Res {
    let mut web = Web::new(s, Env::default()).await?;
    web.start("1.0.0").await?;
    let v2 = missing(&web.s.cluster);
    web.release("2.0.0", &v2).await?;
    let (state, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    Web::verdict_says(&verdict, &["pull", "image"])?;
    if let Some(started) = Web::started_of(&state, &format!("{APP}-2.0.0")) {
        web.s.measured(
            "image pull error rollout started → verdict",
            two(seconds_between(&started, &verdict.time.0)),
            "s",
        );
    }
    web.measure_signal("RollingUpdate", &verdict);
    web.only_version("1.0.0").await
}

async fn http_500(s: Arc<Scenario>) -> Res {
    let mut web = Web::new(s, Env::default()).await?;
    web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::FailAfter(3), "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let (_, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    Web::verdict_says(&verdict, &["healthz", "50", "error"])?;
    // The HTTP check, not readiness, failed it (/ready stays 200). Whether the rollback's own
    // ready time is recorded before the phase reads RolledBack is one interleaving of a correct
    // rollback, not a promise.
    ensure!(
        verdict.reason == "ErrorRateExceeded",
        "the verdict's reason is {}, not ErrorRateExceeded",
        verdict.reason
    );
    web.measure_signal("RollingUpdate", &verdict);
    web.only_version("1.0.0").await
}

async fn slow(s: Arc<Scenario>) -> Res {
    // Answers slower than the p95 threshold, well within the requests' timeout: a slow
    // release, not a failing one. The threshold leaves room for the test server itself (a
    // shell per request) with the other scenarios running on 2 cores.
    let env = Env {
        p95: Some("700ms"),
        interval: "2s",
        timeout: "2s",
        window: "20s",
        ..Env::default()
    };
    let mut web = Web::new(s, env).await?;
    web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::Slow(1500), "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let (_, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    Web::verdict_says(&verdict, &["p95", "latency"])?;
    web.measure_signal("RollingUpdate", &verdict);
    web.only_version("1.0.0").await
}

async fn no_auto_rollback(s: Arc<Scenario>) -> Res {
    let env = Env {
        automatic: false,
        ..Env::default()
    };
    let mut web = Web::new(s, env).await?;
    let v1 = web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::NeverReady, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let state = web
        .s
        .until::<Application, _>(APP, "dev to be Degraded", secs(90), |app| {
            match state_of(app).and_then(|s| s.phase) {
                Some(Phase::Degraded) => Judged::Done(state_of(app).cloned().unwrap_or_default()),
                Some(Phase::RolledBack) => {
                    Judged::Never("rolled back although rollback.automatic is false".into())
                }
                _ => Judged::Wait,
            }
        })
        .await?;
    web.s.say(show(&state));
    ensure!(
        state
            .rollout
            .as_ref()
            .and_then(|r| r.verdict.as_ref())
            .is_some_and(|v| !v.healthy),
        "the verdict is not unhealthy"
    );
    let bad = format!("{APP}-2.0.0");
    ensure!(
        state.rejected.contains(&bad),
        "rejected does not name {bad}: {:?}",
        state.rejected
    );
    // It stays so: no rollback comes later, the old release's pods still serve.
    tokio::time::sleep(secs(10)).await;
    let later = web.state().await?;
    ensure!(
        later.phase == Some(Phase::Degraded),
        "10 s later {ENV} is {:?}, not Degraded",
        later.phase
    );
    ensure!(
        !later
            .history
            .iter()
            .any(|h| h.release == format!("{APP}-1.0.0") && h.kind == HistoryKind::Rollback),
        "the history records a rollback"
    );
    let old = web.pods_running(&v1).await?.len();
    let new = web.pods_running(&v2).await?.len();
    web.s
        .say(format!("pods of {APP}-1.0.0: {old}, of {APP}-2.0.0: {new}"));
    ensure!(old >= 2, "only {old} pod(s) of {APP}-1.0.0 are left");
    web.only_version("1.0.0").await
}

/// 1.0.0 Healthy with `strategy` and answering alone, and a client sending to its Service for
/// 3 s already.
async fn serving_under_client(s: Arc<Scenario>, strategy: StrategyType) -> Res<(Web, Load)> {
    let mut web = Web::new(
        s,
        Env {
            strategy,
            ..Env::default()
        },
    )
    .await?;
    web.start("1.0.0").await?;
    web.only_version("1.0.0").await?;
    let url = Web::url(&web.service_ip().await?);
    let load = Load::start(&web.s.cluster.netns, &url, 20).await?;
    web.s.say(format!(
        "client: requests to {url}, ~20/s, from the node's network namespace"
    ));
    tokio::time::sleep(secs(3)).await;
    Ok((web, load))
}

/// The client all through a failed rollout and its rollback.
async fn zero_failures(s: Arc<Scenario>, strategy: StrategyType) -> Res {
    let (mut web, mut load) = serving_under_client(s, strategy).await?;
    let v2 = web.image(Behaviour::NeverReady, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    web.rolled_back("2.0.0", "1.0.0").await?;
    // The rollback's own changes (scaling down, switching back) come after the verdict.
    tokio::time::sleep(secs(10)).await;
    load.stop().await;
    web.s.say(load.summary());
    let failures = load.failures();
    web.s.measured(
        format!("failed requests during a failed {strategy:?}"),
        failures.len(),
        "",
    );
    for f in failures.iter().take(20) {
        web.s.say(format!(
            "failed: start {:.3} code {} took {:.3}",
            f.start, f.code, f.took
        ));
    }
    let requests = load.records().len();
    ensure!(requests >= 200, "too few requests to tell: {requests}");
    ensure!(
        failures.is_empty(),
        "{} request(s) failed during the failed {strategy:?} and its rollback",
        failures.len()
    );
    Ok(())
}

async fn zero_failures_rolling(s: Arc<Scenario>) -> Res {
    zero_failures(s, StrategyType::RollingUpdate).await
}

async fn zero_failures_bluegreen(s: Arc<Scenario>) -> Res {
    zero_failures(s, StrategyType::BlueGreen).await
}

/// A release that serves 500 once ready: signal → verdict, verdict → the previous release
/// serving all traffic.
async fn restore(s: Arc<Scenario>, strategy: StrategyType) -> Res {
    let (mut web, mut load) = serving_under_client(s, strategy).await?;
    let v2 = web.image(Behaviour::FailAfter(0), "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let (_, verdict) = web.rolled_back("2.0.0", "1.0.0").await?;
    let at = epoch(&verdict.time.0);
    web.s
        .poll(
            "only 1.0.0 to answer the client after the verdict",
            secs(60),
            Duration::from_millis(500),
            || {
                let found = load.only_from("1.0.0", at);
                async move { Ok(found) }
            },
        )
        .await?;
    tokio::time::sleep(secs(5)).await;
    load.stop().await;
    web.s.say(load.summary());
    let back = load
        .only_from("1.0.0", at)
        .ok_or("1.0.0 does not answer alone any more")?;
    // The verdict's time has whole seconds: a restore within that second reads as 0 s. As the
    // client saw it: from the verdict to its first request of the unbroken run of 200s from
    // the previous release.
    web.s.measured(
        format!("{strategy:?} verdict → previous release serving all traffic"),
        two((back - at).max(0.0)),
        "s",
    );
    let state = web.state().await?;
    match state.rollout.as_ref().and_then(|r| r.ready.as_ref()) {
        Some(ready) => web.s.measured(
            format!("{strategy:?} verdict → rollback ready (Ferry's own record)"),
            two(seconds_between(&verdict.time.0, &ready.0)),
            "s",
        ),
        None => web.s.note("the rollback has no ready time"),
    }
    let records = load.records();
    match records.iter().find(|a| a.code != 200) {
        Some(first) => web.s.measured(
            format!("{strategy:?} client's first failed request → verdict"),
            two(at - first.start),
            "s",
        ),
        None => web
            .s
            .note("the client saw no failed request: the failing release never served it"),
    }
    web.measure_signal(&format!("{strategy:?}"), &verdict);
    web.s.measured(
        format!("{strategy:?} requests without an HTTP answer during the failed rollout"),
        records.iter().filter(|a| a.code == 0).count(),
        "",
    );
    Ok(())
}

async fn restore_rolling(s: Arc<Scenario>) -> Res {
    restore(s, StrategyType::RollingUpdate).await
}

async fn restore_bluegreen(s: Arc<Scenario>) -> Res {
    restore(s, StrategyType::BlueGreen).await
}

/// The leader is killed while 2.0.0 is in its stabilization window; the next leader finishes
/// the same rollout and records it once.
async fn controller_restart(s: Arc<Scenario>) -> Res {
    let env = Env {
        window: "20s",
        ..Env::default()
    };
    let mut web = Web::new(s, env).await?;
    web.start("1.0.0").await?;
    let v2 = web.image(Behaviour::Ok, "2.0.0").await?;
    web.release("2.0.0", &v2).await?;
    let two_ = format!("{APP}-2.0.0");
    let rolling = two_.clone();
    let state = web
        .s
        .until::<Application, _>(
            APP,
            "the rollout of web-2.0.0 to be ready and without a verdict",
            secs(60),
            move |app| match state_of(app).and_then(|s| s.rollout.as_ref()) {
                Some(r) if r.release == rolling && r.ready.is_some() && r.verdict.is_none() => {
                    Judged::Done(state_of(app).cloned().unwrap_or_default())
                }
                Some(r) if r.release == rolling && r.verdict.is_some() => Judged::Never(
                    "the rollout had its verdict before it was seen in its window".into(),
                ),
                _ => Judged::Wait,
            },
        )
        .await?;
    let started = state.rollout.as_ref().map(|r| r.started.clone());
    let cluster = web.s.cluster.clone();
    let (pod, holder) = cluster.leader_pod().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.system);
    pods.delete(&pod, &DeleteParams::default()).await?;
    web.s.say(format!(
        "killed the leader {pod} (Lease holder {holder:?}) during the stabilization window of {two_}"
    ));
    web.healthy("2.0.0").await?;
    cluster.controller_available(secs(120)).await?;
    // A duplicate written by the new leader would come within this.
    tokio::time::sleep(secs(10)).await;
    let state = web.state().await?;
    let entries = state
        .history
        .iter()
        .filter(|h| h.release == two_ && h.kind == HistoryKind::Rollout)
        .count();
    web.s.say(format!(
        "history: {:?}",
        state
            .history
            .iter()
            .map(|h| (&h.release, &h.from, h.kind, h.outcome, h.time.0.to_string()))
            .collect::<Vec<_>>()
    ));
    ensure!(
        entries == 1,
        "{entries} history entries record the rollout of {two_}"
    );
    ensure!(
        state.phase == Some(Phase::Healthy) && state.current.as_ref() == Some(&two_),
        "{ENV} is {:?} with {:?} 10 s later",
        state.phase,
        state.current
    );
    if state.rollout.as_ref().map(|r| r.started.clone()) == started {
        web.s
            .say("the new leader went on with the same rollout (same start)");
    } else {
        web.s
            .note("the new leader started the rollout again (another start)");
    }
    Ok(())
}
