//! Delivery to every environment of one Application, as one decision: the environments in
//! pipeline order (each after its upstream), their workloads, test pods and runs as observed,
//! and the time in; their new states and the typed [`Action`]s that make the cluster so out.
//!
//! Per environment: promotion chooses (`promotion::choose`, with the releases that failed
//! upstream of it), `plan` decides the rollout, and its plan becomes actions: apply the
//! Deployments and the Service, delete the Deployments it no longer lists, keep the HTTP
//! checks and the verification of the rollout under way running, record its Events and count
//! its metrics. Across environments ([`pipeline`]):
//! - a release that failed in an environment counts as failed in every environment
//!   downstream of it (`failed_upstream`);
//! - Deployments and Services of the Application that no environment keeps are deleted, but
//!   never those of an environment that cannot be decided now (`retain::workloads`);
//! - test pods are deleted but the newest of each listed environment, those of the
//!   verifications under way and those of undecided environments (`retain::test_pods`);
//! - runs no rollout needs any more are stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::health::{CheckFigures, Placement, Workload, percentage};
use super::retain::{self, Child, TestPodFacts};
use super::runs::{Run, RunKey, RunProgress, RunReport};
use super::{
    Finished, Observed, Plan, Policy, Serving, Told, VerificationReport, identity, plan, promotion,
};
use crate::api::application::{EnvironmentEntry, EnvironmentState, HistoryKind, Rollout, RunSpec};
use crate::api::{Application, Environment, Time};
use crate::decide::Decision;
use crate::decide::run_spec;
use crate::desired::verification::{TestPod, test_pod_name};
use crate::desired::workload::{self, Workload as Desired};

/// One environment of the pipeline as the shell observed it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub name: String,
    /// Its Environment, when it exists and Ferry can read it.
    pub environment: Option<Environment>,
    /// Its Deployments and pods (test pods aside) in its target namespace.
    pub workload: Workload,
}

/// A Release of the Application.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReleaseFacts {
    pub name: String,
    /// Its `metadata.uid` and content digest (`Release::content_digest`), to tell it from a
    /// Release made again under the same name (`identity`).
    pub uid: Option<String>,
    pub digest: Option<String>,
    pub image: String,
    /// The run configuration it fixes; a Release without one is never rolled out.
    pub run: Option<RunSpec>,
    /// Ferry did not build it and its image is not in the Application's repository
    /// (`decide::release::outside_repository`): never promoted or rolled out.
    pub outside_repository: bool,
    /// When the Release was created, and when its commit was seen (its BuildJob's creation).
    pub created: Option<Time>,
    pub commit_seen: Option<Time>,
}

/// What the pipeline looks at.
pub struct Pipeline<'a> {
    pub app: &'a Application,
    /// The Application's namespace.
    pub namespace: &'a str,
    /// The listed environments, in pipeline order.
    pub environments: &'a [Listed],
    /// The environments' states as stored (`decide::application` lists every listed one).
    pub stored: &'a [EnvironmentState],
    /// The Application's Releases, oldest first.
    pub releases: &'a [ReleaseFacts],
    /// The Application's Deployments and Services, in any namespace.
    pub children: &'a [Child],
    /// The Application's test pods.
    pub test_pods: &'a [TestPodFacts],
    /// The Application's runs, as they stand.
    pub runs: &'a BTreeMap<RunKey, RunProgress>,
}

/// One GET of a verification, through the environment's Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Get {
    pub port: u16,
    pub path: String,
    pub expect_status: u16,
}

/// What the shell does, in this order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Apply the Deployment at `placement` of `environment`, running `release`: its image
    /// with the run configuration it fixes.
    ApplyDeployment {
        environment: String,
        namespace: String,
        name: String,
        placement: Placement,
        release: String,
        image: String,
        run: Box<RunSpec>,
    },
    /// The Release a Deployment should run no longer exists, or fixes no run configuration:
    /// the Deployment is left as it is.
    LeaveDeployment {
        environment: String,
        release: String,
    },
    DeleteDeployment {
        namespace: String,
        name: String,
    },
    /// Apply the Service of `environment`, sending traffic as `serving` says, with the ports
    /// of `run` (the run configuration of the release that gets the traffic). Its cluster IP
    /// is where the environment's checks and verification GETs go.
    ApplyService {
        environment: String,
        namespace: String,
        serving: Serving,
        run: Box<RunSpec>,
    },
    DeleteService {
        namespace: String,
        name: String,
    },
    /// Keep the HTTP check `key` running through the Service of `environment`.
    EnsureCheck {
        environment: String,
        key: RunKey,
        port: u16,
        path: String,
        interval: Duration,
        timeout: Duration,
    },
    /// Create the test pod of the verification `key`, in the Application's namespace.
    StartTestPod {
        key: RunKey,
        pod: TestPod,
    },
    /// Keep the verification GETs `key` running through the Service of `environment`.
    SendGets {
        environment: String,
        key: RunKey,
        gets: Vec<Get>,
    },
    /// Record an Event on the Application about `environment`.
    Tell {
        environment: String,
        told: Told,
    },
    /// Count a rollout started into `environment`.
    CountStarted {
        environment: String,
        kind: HistoryKind,
    },
    /// Count a verdict or a rollback.
    CountFinished {
        environment: String,
        finished: Finished,
    },
    /// Observe how long a release took to be healthy in `environment`: seconds from its
    /// Release's creation and from its commit being seen.
    CountLeadTime {
        environment: String,
        since_release: Option<f64>,
        since_commit: Option<f64>,
    },
    /// Stop a run no rollout needs any more.
    StopRun {
        key: RunKey,
    },
    /// Delete a test pod, in the Application's namespace.
    DeleteTestPod {
        name: String,
    },
}

/// Decides every environment of the pipeline at `now`: the new states (every stored state,
/// the decided ones replaced, new ones after them) and the actions.
pub fn pipeline(input: &Pipeline, now: &Time) -> Decision<Vec<EnvironmentState>, Action> {
    let app = input.app;
    let name = app.metadata.name.as_deref().unwrap_or_default();
    // A Release that is not what an environment rolled out under its name is never rolled
    // out, and the workloads running it are left as they are (`identity`).
    let changed = identity::changed(input.stored, input.releases);
    let facts: Vec<ReleaseFacts> = input
        .releases
        .iter()
        .filter(|r| !changed.contains(&r.name))
        .cloned()
        .collect();
    // A Release that fixes no run configuration is never promoted: Ferry makes one from it
    // that does (`build::objects::reconfigured`). Nor is one Ferry did not build whose image
    // is outside the Application's repository (its Release says `ImageOutsideRepository`).
    let releases: Vec<String> = input
        .releases
        .iter()
        .filter(|r| r.run.is_some() && !r.outside_repository)
        .map(|r| r.name.clone())
        .collect();
    let mut states = input.stored.to_vec();
    let mut actions = Vec::new();
    let mut requeue: Option<Duration> = None;
    let mut keep = retain::Kept::default();
    let mut failed = FailedUpstream::default();
    let mut runs_kept: BTreeSet<RunKey> = BTreeSet::new();
    for listed in input.environments {
        let env = listed.name.as_str();
        let entry = app.spec.environments.iter().find(|e| e.name == env);
        let setup = listed
            .environment
            .as_ref()
            .and_then(|e| Some((e, e.target_namespace()?)));
        let (Some(entry), Some((environment, target))) = (entry, setup) else {
            keep.untouched.insert(env.to_owned());
            continue;
        };
        let spec = &environment.spec;
        let w = Desired::of(app, entry, environment, target);
        let stored = states
            .iter()
            .find(|e| e.name == env)
            .cloned()
            .unwrap_or_else(|| EnvironmentState {
                name: env.to_owned(),
                ..EnvironmentState::default()
            });
        let failed_upstream = failed.of(spec.upstream.as_deref());
        let mut choice = choose(
            entry,
            environment,
            &stored,
            &states,
            &failed_upstream,
            &releases,
        );
        // A changed Release keeps its place in the order (what runs is not "older" than
        // anything) but is neither rolled out nor offered. A pin on one says so here too.
        let mut held_back = None;
        if choice
            .wanted
            .as_ref()
            .is_some_and(|w| changed.contains(&w.release))
        {
            held_back = choice.wanted.take().filter(|w| w.pinned).map(|w| w.release);
        }
        if choice
            .candidate
            .as_ref()
            .is_some_and(|c| changed.contains(c))
        {
            choice.candidate = None;
            choice.awaiting_approval = false;
        }
        let scope = (input.namespace, name, env);
        let checks = figures(&stored, environment, input.runs, scope);
        let report = verification_report(input, &stored, environment, scope);
        let mut plan = plan(
            &Observed {
                state: &stored,
                policy: Policy {
                    strategy: spec.strategy.type_,
                    health: &spec.health,
                    automatic_rollback: spec.rollback.automatic,
                    verification: spec.verification.as_ref().map(|v| v.timeout.into()),
                },
                choice,
                history_limit: usize::try_from(app.spec.history_limit).unwrap_or(1),
                replicas: &|release| {
                    workload::replicas(entry, run_of(&facts, release).unwrap_or(&app.spec.run))
                },
                workload: &listed.workload,
                checks: &checks,
                verification: report,
            },
            now,
        );
        plan.state.bound = identity::bind(&stored.bound, &plan.state, input.releases);
        plan.events.extend(identity::note(
            &mut plan.state,
            &stored,
            (input.releases, held_back.as_deref()),
            now,
        ));
        workload_actions(&w, &plan, &facts, &listed.workload, &mut actions);
        if !plan.deployments.is_empty() {
            keep.workloads
                .insert((target.to_owned(), workload::base_name(name, env)));
        }
        for placement in plan.deployments.keys() {
            keep.workloads.insert((
                target.to_owned(),
                workload::deployment_name(name, env, *placement),
            ));
        }
        if let Some(rollout) = plan
            .state
            .rollout
            .as_ref()
            .filter(|_| plan.checks.is_some())
        {
            let run = run_of(&facts, &rollout.release).unwrap_or(&app.spec.run);
            for (key, check) in check_actions(run, environment, scope, rollout) {
                runs_kept.insert(key);
                actions.extend(check);
            }
        }
        if let Some(rollout) = plan
            .state
            .rollout
            .as_ref()
            .filter(|_| plan.verify.is_some())
        {
            let key = RunKey::of(scope, rollout, Run::Verification);
            runs_kept.insert(key.clone());
            keep.test_pods
                .insert(test_pod_name(name, env, &key.to_string()));
            actions.extend(start_verification(input, &w, environment, rollout, key));
        }
        actions.extend(told_and_counted(env, &plan, &facts, now));
        failed.record(env, failed_upstream, &plan.state.rejected);
        requeue = [requeue, plan.requeue_after].into_iter().flatten().min();
        match states.iter_mut().find(|e| e.name == env) {
            Some(state) => *state = plan.state,
            None => states.push(plan.state),
        }
    }
    for key in input.runs.keys().filter(|k| !runs_kept.contains(k)) {
        actions.push(Action::StopRun { key: key.clone() });
    }
    let listed: Vec<&str> = input.environments.iter().map(|e| e.name.as_str()).collect();
    for pod in retain::test_pods(input.test_pods, &listed, &keep) {
        actions.push(Action::DeleteTestPod { name: pod });
    }
    // A Deployment an environment deleted already (a slot it no longer runs) is not deleted
    // twice.
    let deleted: Vec<Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::DeleteDeployment { .. }))
        .cloned()
        .collect();
    for child in retain::workloads(input.children, &keep) {
        let (namespace, name) = (child.namespace, child.name);
        let delete = match child.kind {
            retain::Kind::Deployment => Action::DeleteDeployment { namespace, name },
            retain::Kind::Service => Action::DeleteService { namespace, name },
        };
        if !deleted.contains(&delete) {
            actions.push(delete);
        }
    }
    Decision {
        status: states,
        actions,
        requeue_after: requeue,
    }
}

/// The HTTP checks of `rollout` (one run key each) and the action that keeps each running; a
/// check whose port names no port of the Application has no action.
fn check_actions(
    run: &RunSpec,
    environment: &Environment,
    scope: (&str, &str, &str),
    rollout: &Rollout,
) -> Vec<(RunKey, Option<Action>)> {
    let checks = environment.spec.health.http_checks.iter().enumerate();
    checks
        .map(|(i, check)| {
            let key = RunKey::of(scope, rollout, Run::Check(i));
            let action = run_spec::request_port(run, &check.request)
                .ok()
                .map(|port| Action::EnsureCheck {
                    environment: scope.2.to_owned(),
                    key: key.clone(),
                    port: u16::try_from(port).unwrap_or_default(),
                    path: check.request.path.clone(),
                    interval: check.interval.into(),
                    timeout: check.timeout.into(),
                });
            (key, action)
        })
        .collect()
}

/// The plan's Events, and its metrics: rollouts finished (with the lead time of a release
/// that became healthy) and started.
fn told_and_counted(env: &str, plan: &Plan, releases: &[ReleaseFacts], now: &Time) -> Vec<Action> {
    let mut actions: Vec<Action> = plan
        .events
        .iter()
        .map(|told| Action::Tell {
            environment: env.to_owned(),
            told: told.clone(),
        })
        .collect();
    for finished in &plan.finished {
        actions.push(Action::CountFinished {
            environment: env.to_owned(),
            finished: finished.clone(),
        });
        if finished.kind == HistoryKind::Rollout && finished.healthy {
            actions.extend(lead_time(env, &finished.release, releases, now));
        }
    }
    if let Some(kind) = plan.started {
        actions.push(Action::CountStarted {
            environment: env.to_owned(),
            kind,
        });
    }
    actions
}

/// The releases that failed in each environment decided so far or upstream of it.
#[derive(Default)]
struct FailedUpstream(BTreeMap<String, BTreeSet<String>>);

impl FailedUpstream {
    /// The releases that failed upstream of an environment whose upstream is `upstream`.
    fn of(&self, upstream: Option<&str>) -> BTreeSet<String> {
        upstream
            .and_then(|up| self.0.get(up))
            .cloned()
            .unwrap_or_default()
    }

    /// `env` was decided: what failed upstream of it and what it rejected failed by it.
    fn record(&mut self, env: &str, upstream: BTreeSet<String>, rejected: &[String]) {
        let mut failed = upstream;
        failed.extend(rejected.iter().cloned());
        self.0.insert(env.to_owned(), failed);
    }
}

/// Which release the environment should run and which waits (`promotion::choose`), with the
/// pin's writer from its `by`. `decided` holds the states decided
/// so far in this pass: upstreams come first, so a release that just became healthy upstream
/// is promoted in the same pass.
fn choose(
    entry: &EnvironmentEntry,
    environment: &Environment,
    stored: &EnvironmentState,
    decided: &[EnvironmentState],
    failed_upstream: &BTreeSet<String>,
    releases: &[String],
) -> promotion::Choice {
    let spec = &environment.spec;
    let upstream = spec
        .upstream
        .as_deref()
        .and_then(|up| Some((up, decided.iter().find(|e| e.name == up)?)));
    let rejected_upstream = |release: &str| failed_upstream.contains(release);
    promotion::choose(&promotion::Stage {
        approval: spec.approval,
        upstream,
        pin: entry.pin.as_ref().map(|pin| promotion::PinRequest {
            release: &pin.release,
            reason: &pin.reason,
            actor: pin.by.as_deref(),
        }),
        state: stored,
        releases,
        rejected_upstream: &rejected_upstream,
    })
}

/// The figures of the HTTP checks of the stored rollout in its window, if any.
fn figures(
    state: &EnvironmentState,
    environment: &Environment,
    runs: &BTreeMap<RunKey, RunProgress>,
    scope: (&str, &str, &str),
) -> Vec<CheckFigures> {
    let Some(rollout) = state
        .rollout
        .as_ref()
        .filter(|r| r.verdict.is_none() && r.ready.is_some())
    else {
        return Vec::new();
    };
    environment
        .spec
        .health
        .http_checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            let counts = match runs.get(&RunKey::of(scope, rollout, Run::Check(i))) {
                Some(RunProgress::Check(counts)) => counts.clone(),
                _ => Default::default(),
            };
            CheckFigures {
                path: check.request.path.clone(),
                interval: check.interval.into(),
                max_error_rate: percentage(&check.max_error_rate),
                max_latency_p95: check.max_latency_p95.map(Into::into),
                counts,
            }
        })
        .collect()
}

/// Where the verification of the stored rollout stands, once it started: its test pod's
/// outcome (or the API server's refusal to create it), or its GETs' report.
fn verification_report(
    input: &Pipeline,
    state: &EnvironmentState,
    environment: &Environment,
    scope: (&str, &str, &str),
) -> Option<VerificationReport> {
    let rollout = state.rollout.as_ref()?;
    rollout.verification.as_ref()?;
    let key = RunKey::of(scope, rollout, Run::Verification);
    let Some(verification) = &environment.spec.verification else {
        return Some(VerificationReport::Running);
    };
    let run = match input.runs.get(&key) {
        Some(RunProgress::Verification(report)) => Some(report),
        _ => None,
    };
    if verification.image.is_some() {
        if let Some(RunReport::Failed { message }) = run {
            return Some(VerificationReport::Failed {
                message: message.clone(),
                log: None,
            });
        }
        let name = test_pod_name(&key.application, &key.environment, &key.to_string());
        let pod = input
            .test_pods
            .iter()
            .find(|p| p.name == name && p.namespace == input.namespace);
        return Some(pod.map_or(VerificationReport::Running, |p| p.outcome.clone()));
    }
    Some(match run {
        Some(RunReport::Passed { message }) => VerificationReport::Passed {
            message: message.clone(),
        },
        Some(RunReport::Failed { message }) => VerificationReport::Failed {
            message: message.clone(),
            log: None,
        },
        Some(RunReport::Running) | None => VerificationReport::Running,
    })
}

/// Applies the plan's Deployments, deletes the environment's Deployments it no longer lists,
/// and applies the Service in front of them once something runs.
fn workload_actions(
    w: &Desired,
    plan: &Plan,
    releases: &[ReleaseFacts],
    observed: &Workload,
    actions: &mut Vec<Action>,
) {
    let app = w.app.metadata.name.as_deref().unwrap_or_default();
    for (placement, release) in &plan.deployments {
        let found = releases.iter().find(|r| &r.name == release);
        let Some((found, run)) = found.and_then(|r| Some((r, r.run.as_ref()?))) else {
            actions.push(Action::LeaveDeployment {
                environment: w.environment.to_owned(),
                release: release.clone(),
            });
            continue;
        };
        actions.push(Action::ApplyDeployment {
            environment: w.environment.to_owned(),
            namespace: w.namespace.to_owned(),
            name: workload::deployment_name(app, w.environment, *placement),
            placement: *placement,
            release: release.clone(),
            image: found.image.clone(),
            run: Box::new(run.clone()),
        });
    }
    for placement in observed.deployments.keys() {
        if !plan.deployments.contains_key(placement) {
            actions.push(Action::DeleteDeployment {
                namespace: w.namespace.to_owned(),
                name: workload::deployment_name(app, w.environment, *placement),
            });
        }
    }
    // Nothing runs yet (no release chosen): no Service in front of nothing. Its ports are
    // those of the release that gets the traffic: with `RollingUpdate`, the one rolling out
    // (else the one running).
    let traffic = match &plan.serving {
        Serving::Release(release) => Some(release),
        Serving::All => plan
            .state
            .rollout
            .as_ref()
            .map(|r| &r.release)
            .filter(|r| plan.deployments.values().any(|d| d == *r))
            .or_else(|| plan.deployments.values().next()),
    };
    if let Some(run) = traffic.and_then(|r| run_of(releases, r)) {
        actions.push(Action::ApplyService {
            environment: w.environment.to_owned(),
            namespace: w.namespace.to_owned(),
            serving: plan.serving.clone(),
            run: Box::new(run.clone()),
        });
    }
}

/// The run configuration `release` fixes, if it is a Release of the Application that fixes
/// one.
fn run_of<'a>(releases: &'a [ReleaseFacts], release: &str) -> Option<&'a RunSpec> {
    releases
        .iter()
        .find(|r| r.name == release)
        .and_then(|r| r.run.as_ref())
}

/// Starts (or keeps running) the verification of `rollout`: its test pod in the Application's
/// namespace, unless it exists, or its GETs through the Service.
fn start_verification(
    input: &Pipeline,
    w: &Desired,
    environment: &Environment,
    rollout: &Rollout,
    key: RunKey,
) -> Option<Action> {
    let verification = environment.spec.verification.as_ref()?;
    let run = run_of(input.releases, &rollout.release).unwrap_or(&input.app.spec.run);
    if let Some(image) = &verification.image {
        let name = test_pod_name(&key.application, &key.environment, &key.to_string());
        if input
            .test_pods
            .iter()
            .any(|p| p.name == name && p.namespace == input.namespace)
        {
            return None;
        }
        let port = run_spec::tcp_port(run, None).unwrap_or(80);
        let service = workload::base_name(&key.application, w.environment);
        return Some(Action::StartTestPod {
            pod: TestPod {
                environment: w.environment.to_owned(),
                release: rollout.release.clone(),
                run: key.to_string(),
                image: image.clone(),
                command: verification.command.clone(),
                service_url: format!("http://{service}.{}.svc:{port}", w.namespace),
                timeout: verification.timeout.into(),
            },
            key,
        });
    }
    let gets = verification
        .http_gets
        .iter()
        .filter_map(|get| {
            let port = run_spec::request_port(run, &get.request).ok()?;
            Some(Get {
                port: u16::try_from(port).ok()?,
                path: get.request.path.clone(),
                expect_status: u16::try_from(get.expect_status).ok()?,
            })
        })
        .collect();
    Some(Action::SendGets {
        environment: w.environment.to_owned(),
        key,
        gets,
    })
}

/// How long `release` took from its Release's creation, and from its commit being seen, to
/// healthy in `env`; nothing when the Release is gone.
fn lead_time(env: &str, release: &str, releases: &[ReleaseFacts], now: &Time) -> Option<Action> {
    let record = releases.iter().find(|r| r.name == release)?;
    let since = |t: &Time| now.0.duration_since(t.0).as_secs_f64().max(0.0);
    Some(Action::CountLeadTime {
        environment: env.to_owned(),
        since_release: record.created.as_ref().map(since),
        since_commit: record.commit_seen.as_ref().map(since),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::{BoundRelease, Rollout};

    /// dev -> staging -> prod, as a user would write them.
    const SHOP: &str = r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: shop, namespace: team-a, uid: "0000-1"}
spec:
  source: {url: "http://git.local/shop.git"}
  build: {builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}
  image: {repository: registry.local/team-a/shop}
  run: {ports: [{name: http, port: 8080}]}
  environments: [{name: dev}, {name: staging}, {name: prod}]
"#;

    fn app() -> Application {
        serde_yaml::from_str(SHOP).unwrap()
    }

    fn environment(yaml: &str) -> Listed {
        let environment: Environment = serde_yaml::from_str(yaml).unwrap();
        Listed {
            name: environment.metadata.name.clone().unwrap_or_default(),
            environment: Some(environment),
            workload: Workload::default(),
        }
    }

    fn pipeline_of_three() -> Vec<Listed> {
        vec![
            environment(
                "{metadata: {name: dev, namespace: team-a}, spec: {targetNamespace: team-a-dev}}",
            ),
            environment(
                "{metadata: {name: staging, namespace: team-a}, spec: {targetNamespace: team-a-staging, upstream: dev}}",
            ),
            environment(
                "{metadata: {name: prod, namespace: team-a}, spec: {targetNamespace: team-a-prod, upstream: staging}}",
            ),
        ]
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    /// An environment that runs `current`, healthy, with `rejected` failed in it.
    fn state(name: &str, current: &str, rejected: &[&str]) -> EnvironmentState {
        EnvironmentState {
            name: name.into(),
            current: Some(current.into()),
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
            ..EnvironmentState::default()
        }
    }

    /// dev, staging and prod all running `release`, healthy.
    fn all_running(release: &str) -> [EnvironmentState; 3] {
        ["dev", "staging", "prod"].map(|env| state(env, release, &[]))
    }

    /// What `rolling` says when no environment rolls anything out.
    fn none_rolling() -> [(String, Option<String>); 3] {
        ["dev", "staging", "prod"].map(|env| (env.to_owned(), None))
    }

    fn releases(names: &[&str]) -> Vec<ReleaseFacts> {
        names
            .iter()
            .map(|n| ReleaseFacts {
                name: n.to_string(),
                image: format!("registry.local/team-a/shop@sha256:{n}"),
                run: Some(app().spec.run),
                ..ReleaseFacts::default()
            })
            .collect()
    }

    fn decide(
        environments: &[Listed],
        stored: &[EnvironmentState],
        released: &[&str],
        runs: &BTreeMap<RunKey, RunProgress>,
    ) -> Decision<Vec<EnvironmentState>, Action> {
        decide_releases(&app(), environments, stored, &releases(released), runs)
    }

    /// The pipeline of `app` with these releases, nothing else observed.
    fn decide_releases(
        app: &Application,
        environments: &[Listed],
        stored: &[EnvironmentState],
        releases: &[ReleaseFacts],
        runs: &BTreeMap<RunKey, RunProgress>,
    ) -> Decision<Vec<EnvironmentState>, Action> {
        pipeline(
            &Pipeline {
                app,
                namespace: "team-a",
                environments,
                stored,
                releases,
                children: &[],
                test_pods: &[],
                runs,
            },
            &now(),
        )
    }

    /// The release each environment started rolling out, if any.
    fn rolling(states: &[EnvironmentState]) -> Vec<(String, Option<String>)> {
        states
            .iter()
            .map(|s| {
                let rollout = s.rollout.as_ref().filter(|r| r.verdict.is_none());
                (s.name.clone(), rollout.map(|r| r.release.clone()))
            })
            .collect()
    }

    #[test]
    fn a_release_that_failed_anywhere_upstream_is_not_promoted() {
        let cases = [
            (
                "a release healthy upstream is promoted to the next stage",
                &["shop-1", "shop-2"][..],
                [
                    state("dev", "shop-2", &[]),
                    state("staging", "shop-1", &[]),
                    state("prod", "shop-1", &[]),
                ],
                [None, Some("shop-2"), None],
            ),
            (
                "a release that failed in staging is not promoted to prod, though staging runs it under a pin",
                &["shop-1", "shop-2"],
                [
                    state("dev", "shop-2", &[]),
                    state("staging", "shop-2", &["shop-2"]),
                    state("prod", "shop-1", &[]),
                ],
                [None, None, None],
            ),
            (
                "a release that failed in dev is not promoted two stages down",
                &["shop-1", "shop-2"],
                [
                    state("dev", "shop-1", &["shop-2"]),
                    state("staging", "shop-2", &[]),
                    state("prod", "shop-1", &[]),
                ],
                [None, None, None],
            ),
            (
                "a newer release than the one that failed upstream goes through",
                &["shop-1", "shop-2", "shop-3"],
                [
                    state("dev", "shop-3", &["shop-2"]),
                    state("staging", "shop-3", &[]),
                    state("prod", "shop-1", &[]),
                ],
                [None, None, Some("shop-3")],
            ),
        ];
        for (name, released, stored, expected) in cases {
            let decision = decide(&pipeline_of_three(), &stored, released, &BTreeMap::new());
            let expected: Vec<(String, Option<String>)> = ["dev", "staging", "prod"]
                .iter()
                .zip(expected)
                .map(|(e, r)| (e.to_string(), r.map(str::to_owned)))
                .collect();
            assert_eq!(rolling(&decision.status), expected, "{name}");
        }
    }

    /// `releases(names)` with a UID and content digest each, `u-<name>` and `d-<name>`.
    fn identified(names: &[&str]) -> Vec<ReleaseFacts> {
        releases(names)
            .into_iter()
            .map(|r| ReleaseFacts {
                uid: Some(format!("u-{}", r.name)),
                digest: Some(format!("d-{}", r.name)),
                ..r
            })
            .collect()
    }

    #[test]
    fn an_environment_binds_what_it_runs_by_uid_and_digest() {
        let stored = [
            state("dev", "shop-2", &[]),
            state("staging", "shop-1", &[]),
            state("prod", "shop-1", &[]),
        ];
        let decision = decide_releases(
            &app(),
            &pipeline_of_three(),
            &stored,
            &identified(&["shop-1", "shop-2"]),
            &BTreeMap::new(),
        );
        let bound = |env: usize| {
            decision.status[env]
                .bound
                .iter()
                .map(|b| (b.name.as_str(), b.uid.as_str(), b.digest.as_str()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bound(0), [("shop-2", "u-shop-2", "d-shop-2")]);
        // staging starts rolling out shop-2 from shop-1: both are bound.
        assert_eq!(
            bound(1),
            [
                ("shop-1", "u-shop-1", "d-shop-1"),
                ("shop-2", "u-shop-2", "d-shop-2")
            ]
        );
    }

    #[test]
    fn a_release_made_again_under_its_name_is_never_rolled_out_and_what_runs_stays() {
        let bound = |name: &str| BoundRelease {
            name: name.into(),
            uid: format!("u-{name}"),
            digest: format!("d-{name}"),
        };
        let with = |mut state: EnvironmentState, names: &[&str]| {
            state.bound = names.iter().map(|n| bound(n)).collect();
            state
        };
        let stored = vec![
            with(state("dev", "shop-2", &[]), &["shop-2"]),
            with(state("staging", "shop-1", &[]), &["shop-1"]),
            with(state("prod", "shop-1", &[]), &["shop-1"]),
        ];
        for (what, remade) in [
            (
                "deleted and made again",
                ReleaseFacts {
                    uid: Some("u-other".into()),
                    ..identified(&["shop-2"])[0].clone()
                },
            ),
            (
                "same UID, other content",
                ReleaseFacts {
                    digest: Some("d-other".into()),
                    image: "registry.local/team-a/shop@sha256:evil".into(),
                    ..identified(&["shop-2"])[0].clone()
                },
            ),
        ] {
            let facts = vec![identified(&["shop-1"])[0].clone(), remade];
            let decision = decide_releases(
                &app(),
                &pipeline_of_three(),
                &stored,
                &facts,
                &BTreeMap::new(),
            );
            // Not promoted to staging, and dev's Deployment is left as it is.
            assert_eq!(rolling(&decision.status), none_rolling(), "{what}");
            let applied = applied(&decision.actions);
            assert!(
                !applied.iter().any(|(_, release, _)| release == "shop-2"),
                "{what}: {applied:?}"
            );
            assert!(
                decision.actions.iter().any(|a| matches!(a,
                    Action::LeaveDeployment { environment, release } if environment == "dev" && release == "shop-2")),
                "{what}: {:?}",
                decision.actions
            );
            // staging and prod go on running shop-1.
            assert!(applied.contains(&("prod".to_owned(), "shop-1".to_owned(), None)));
            // dev says so: a condition, and a Warning Event once.
            let dev = &decision.status[0];
            let condition = dev
                .conditions
                .iter()
                .find(|c| c.type_ == "ReleaseChanged")
                .expect("ReleaseChanged");
            assert!(
                condition.status == "True" && condition.message.contains("shop-2"),
                "{what}: {condition:?}"
            );
            assert_eq!(dev.bound, [bound("shop-2")], "the old binding stays");
            let told = |actions: &[Action]| {
                actions
                    .iter()
                    .filter(|a| matches!(a, Action::Tell { told, .. } if told.announcement.reason == "ReleaseChanged"))
                    .count()
            };
            assert_eq!(told(&decision.actions), 1, "{what}");
            let again = decide_releases(
                &app(),
                &pipeline_of_three(),
                &decision.status,
                &facts,
                &BTreeMap::new(),
            );
            assert_eq!(told(&again.actions), 0, "{what}: said once");
            assert!(
                again.status[0]
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "ReleaseChanged"),
                "{what}: the condition stays"
            );
        }
    }

    #[test]
    fn a_pin_on_a_release_made_again_is_held_back_and_said_where_it_is_pinned() {
        let mut app = app();
        app.spec.environments[2].pin =
            serde_yaml::from_str("{release: shop-2, reason: CHG-2, by: alice}").unwrap();
        let mut dev = state("dev", "shop-2", &[]);
        dev.bound = vec![BoundRelease {
            name: "shop-2".into(),
            uid: "u-shop-2".into(),
            digest: "d-shop-2".into(),
        }];
        let stored = [
            dev,
            state("staging", "shop-1", &["shop-2"]),
            state("prod", "shop-1", &[]),
        ];
        let mut facts = identified(&["shop-1", "shop-2"]);
        facts[1].uid = Some("u-other".into());
        let decision = decide_releases(
            &app,
            &pipeline_of_three(),
            &stored,
            &facts,
            &BTreeMap::new(),
        );
        assert_eq!(rolling(&decision.status), none_rolling());
        let prod = &decision.status[2];
        let changed = prod
            .conditions
            .iter()
            .find(|c| c.type_ == "ReleaseChanged")
            .expect("prod, which pins it, says so");
        assert!(
            changed.message.contains("shop-2, pinned here"),
            "{}",
            changed.message
        );
    }

    #[test]
    fn who_pinned_is_the_pins_by_never_a_field_manager() {
        let mut app = app();
        app.spec.environments[2].pin =
            serde_yaml::from_str("{release: shop-1, reason: CHG-1, by: alice@example.com}")
                .unwrap();
        // A field manager's name is the client's choice: it must not be taken for the approver.
        app.metadata.managed_fields = serde_yaml::from_str(
            r#"[{manager: kubectl, operation: Apply, fieldsType: FieldsV1,
                fieldsV1: {"f:spec": {"f:environments": {"k:{\"name\":\"prod\"}": {"f:pin": {}}}}}}]"#,
        )
        .unwrap();
        let stored = [
            state("dev", "shop-2", &[]),
            state("staging", "shop-2", &[]),
            state("prod", "shop-2", &[]),
        ];
        // What prod's history starts with: the rollout the pin asks for.
        let started = |app: &Application| {
            let releases = releases(&["shop-1", "shop-2"]);
            let decision = decide_releases(
                app,
                &pipeline_of_three(),
                &stored,
                &releases,
                &BTreeMap::new(),
            );
            decision.status[2].history[0].clone()
        };
        let entry = started(&app);
        assert_eq!(entry.release, "shop-1", "the pin rolls prod back");
        assert_eq!(entry.actor.as_deref(), Some("alice@example.com"));

        // A pin written before pins carried `by` names no one.
        app.spec.environments[2].pin.as_mut().unwrap().by = None;
        assert_eq!(started(&app).actor, None);
    }

    /// The Deployments the decision applies: (environment, release, the value of env var
    /// `MODE` in the run configuration it applies with).
    fn applied(actions: &[Action]) -> Vec<(String, String, Option<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ApplyDeployment {
                    environment,
                    release,
                    run,
                    ..
                } => Some((
                    environment.clone(),
                    release.clone(),
                    run.env
                        .iter()
                        .find(|e| e.name == "MODE")
                        .and_then(|e| e.value.clone()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn what_runs_is_the_run_configuration_of_the_release_not_the_application_s() {
        // The Application's spec.run was edited after shop-1 was released: every environment
        // still runs shop-1 as shop-1 fixes it, and its Service keeps shop-1's ports.
        let mut edited = app();
        edited.spec.run.env = vec![k8s_openapi::api::core::v1::EnvVar {
            name: "MODE".into(),
            value: Some("edited".into()),
            value_from: None,
        }];
        edited.spec.run.ports[0].port = 9999;
        let stored = all_running("shop-1");
        let decide = |releases: &[ReleaseFacts]| {
            decide_releases(
                &edited,
                &pipeline_of_three(),
                &stored,
                releases,
                &BTreeMap::new(),
            )
        };
        let decision = decide(&releases(&["shop-1"]));
        let unchanged = |env: &str| (env.to_owned(), "shop-1".to_owned(), None);
        assert_eq!(
            applied(&decision.actions),
            [unchanged("dev"), unchanged("staging"), unchanged("prod")]
        );
        let ports: Vec<i32> = decision
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::ApplyService { run, .. } => Some(run.ports[0].port),
                _ => None,
            })
            .collect();
        assert_eq!(ports, [8080, 8080, 8080]);

        // The Release of the new configuration rolls out where the newest release goes first,
        // with what it fixes, and nowhere else yet.
        let mut released = releases(&["shop-1", "shop-1-run.1"]);
        released[1].run = Some(edited.spec.run.clone());
        let decision = decide(&released);
        assert_eq!(
            rolling(&decision.status)[0].1.as_deref(),
            Some("shop-1-run.1")
        );
        assert_eq!(
            applied(&decision.actions),
            [
                ("dev".into(), "shop-1-run.1".into(), Some("edited".into())),
                unchanged("staging"),
                unchanged("prod")
            ]
        );
    }

    /// What keeps a release out of every environment: it fixes no run configuration, or it
    /// names an image outside the Application's repository (an import). Dev does not take the
    /// newest release if it is such a one.
    #[test]
    fn what_keeps_a_release_out_of_the_pipeline() {
        type KeepOut = fn(&mut ReleaseFacts);
        let keep_out: [(&str, KeepOut); 2] = [
            ("no run configuration", |r| r.run = None),
            ("image outside the repository", |r| {
                r.outside_repository = true
            }),
        ];
        for (what, keep_out) in keep_out {
            let mut released = releases(&["shop-1", "shop-2"]);
            keep_out(&mut released[1]);
            let decision = decide_with(&all_running("shop-1"), &released);
            assert_eq!(rolling(&decision.status), none_rolling(), "{what}");
        }
    }

    #[test]
    fn a_running_release_that_fixes_no_run_configuration_is_left_as_it_runs() {
        // Made by an older Ferry.
        let mut released = releases(&["shop-1"]);
        released[0].run = None;
        let decision = decide_with(&all_running("shop-1"), &released);
        assert!(applied(&decision.actions).is_empty());
        let left = decision
            .actions
            .iter()
            .filter(|a| matches!(a, Action::LeaveDeployment { .. }))
            .count();
        assert_eq!(left, 3, "{:?}", decision.actions);
    }

    #[test]
    fn a_running_release_outside_the_repository_is_not_promoted_from_there() {
        let mut released = releases(&["shop-1", "shop-2"]);
        released[1].outside_repository = true;
        // dev runs it already (imported before the repository changed): staging does not
        // take it from there, and dev goes to the newest release it may run, as from any
        // release that is not (or no longer) one it may run.
        let stored = [
            state("dev", "shop-2", &[]),
            state("staging", "shop-1", &[]),
            state("prod", "shop-1", &[]),
        ];
        let decision = decide_with(&stored, &released);
        assert_eq!(
            rolling(&decision.status),
            [
                ("dev".to_owned(), Some("shop-1".to_owned())),
                ("staging".to_owned(), None),
                ("prod".to_owned(), None)
            ]
        );
        let candidates: Vec<_> = decision
            .status
            .iter()
            .map(|s| s.candidate.clone())
            .collect();
        assert!(
            !candidates.contains(&Some("shop-2".to_owned())),
            "{candidates:?}"
        );
        // The same releases in the repository: promoted as usual.
        released[1].outside_repository = false;
        let decision = decide_with(&stored, &released);
        assert_eq!(
            rolling(&decision.status)[1],
            ("staging".to_owned(), Some("shop-2".to_owned()))
        );
    }

    fn decide_with(
        stored: &[EnvironmentState],
        releases: &[ReleaseFacts],
    ) -> Decision<Vec<EnvironmentState>, Action> {
        decide_releases(
            &app(),
            &pipeline_of_three(),
            stored,
            releases,
            &BTreeMap::new(),
        )
    }

    #[test]
    fn an_environment_that_cannot_be_decided_keeps_its_state_and_its_workload() {
        let mut environments = pipeline_of_three();
        environments[2].environment = None;
        let stored = all_running("shop-1");
        let app = app();
        let children = [Child {
            kind: retain::Kind::Deployment,
            namespace: "team-a-prod".into(),
            name: "shop-prod".into(),
            environment: Some("prod".into()),
        }];
        let decision = pipeline(
            &Pipeline {
                app: &app,
                namespace: "team-a",
                environments: &environments,
                stored: &stored,
                releases: &releases(&["shop-1"]),
                children: &children,
                test_pods: &[],
                runs: &BTreeMap::new(),
            },
            &now(),
        );
        assert_eq!(decision.status[2], stored[2]);
        assert!(
            !decision
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteDeployment { .. })),
            "{:?}",
            decision.actions
        );
    }

    #[test]
    fn the_runs_of_a_rollout_that_ended_are_stopped_and_those_under_way_kept() {
        let mut environments = vec![environment(
            "{metadata: {name: dev, namespace: team-a}, spec: {targetNamespace: team-a-dev, health: {httpChecks: [{path: /healthz}]}}}",
        )];
        // shop-2 is up and ready, in its stabilization window.
        environments[0].workload.deployments.insert(
            None,
            super::super::health::DeploymentFacts {
                release: Some("shop-2".into()),
                generation: Some(1),
                observed_generation: Some(1),
                replicas: 1,
                updated: 1,
                ready: 1,
                available: 1,
            },
        );
        let started = now();
        let rollout = Rollout {
            release: "shop-2".into(),
            from: Some("shop-1".into()),
            kind: HistoryKind::Rollout,
            strategy: Default::default(),
            slot: None,
            reason: "newest".into(),
            started: started.clone(),
            ready: Some(started.clone()),
            verdict: None,
            cause: None,
            verification: None,
        };
        let stored = [EnvironmentState {
            rollout: Some(rollout.clone()),
            ..state("dev", "shop-1", &[])
        }];
        let scope = ("team-a", "shop", "dev");
        let under_way = RunKey::of(scope, &rollout, Run::Check(0));
        let ended = RunKey::of(
            scope,
            &Rollout {
                release: "shop-1".into(),
                ..rollout.clone()
            },
            Run::Check(0),
        );
        let runs = BTreeMap::from([
            (under_way.clone(), RunProgress::Check(Default::default())),
            (ended.clone(), RunProgress::Check(Default::default())),
        ]);
        let decision = decide(&environments, &stored, &["shop-1", "shop-2"], &runs);
        let stopped: Vec<&RunKey> = decision
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::StopRun { key } => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, [&ended]);
        assert!(decision.actions.iter().any(
            |a| matches!(a, Action::EnsureCheck { key, port: 8080, .. } if *key == under_way)
        ));
    }
}
