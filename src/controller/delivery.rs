//! Delivery, the I/O around `decide::delivery`: for each environment an Application goes
//! through, observe its workload (Deployments, pods and Service from their label-selected
//! caches, HTTP check figures from `adapters::http_check`), decide, and make the workload so
//! (server-side apply of the Deployments and the Service, deletion of what is no longer
//! wanted), then announce what changed.
//!
//! The workload lives in the Environment's target namespace, usually not the Application's,
//! so it cannot carry an owner reference: every child carries the labels of its Application
//! (`desired::workload::child_labels`), is found by them, and is deleted when its environment
//! entry goes away or, through the finalizer [`FINALIZER`], when the Application is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::api::Patch;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::events::publish_about;
use super::managers;
use super::release::oldest_first;
use super::{Context, Error, delete_in_background};
use crate::adapters::http_check::Target;
use crate::adapters::verification::{Get, Report};
use crate::api::application::{EnvironmentState, HistoryKind, Slot};
use crate::api::environment::HttpCheck;
use crate::api::labels::{
    APPLICATION_LABEL, APPLICATION_NAMESPACE_LABEL, ENVIRONMENT_LABEL, RELEASE_ANNOTATION,
    RELEASE_LABEL, SLOT_LABEL,
};
use crate::api::managers::FieldManager;
use crate::api::{Application, ApplicationStatus, Environment, Release, Time};
use crate::decide::delivery::health::{
    CheckFigures, DeploymentFacts, PodFacts, Workload as Observed, percentage,
};
use crate::decide::delivery::{self, Plan, Policy, Serving, VerificationReport, promotion};
use crate::decide::events::Announcement;
use crate::desired::verification::{Outcome, TestPod, is_test_pod};
use crate::desired::workload::{self, Running, Workload, release_label_value};

/// The finalizer that deletes an Application's workloads in other namespaces with it.
pub use crate::api::labels::WORKLOADS_FINALIZER as FINALIZER;

/// The caches of the objects Ferry runs applications as, selected by Ferry's labels.
#[derive(Clone)]
pub struct Children {
    pub deployments: super::cache::View<Deployment>,
    pub services: super::cache::View<Service>,
    pub pods: super::cache::View<Pod>,
}

/// Whether `object` belongs to the Application `app` of `namespace` (and environment `env`).
fn belongs(object: &impl Resource, namespace: &str, app: &str, env: Option<&str>) -> bool {
    let labels = object.meta().labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(APPLICATION_NAMESPACE_LABEL) == Some(namespace)
        && label(APPLICATION_LABEL) == Some(app)
        && env.is_none_or(|e| label(ENVIRONMENT_LABEL) == Some(e))
}

/// The objects of a cache that belong to the Application (in any namespace).
fn children_of<K>(
    view: &super::cache::View<K>,
    namespace: &str,
    app: &str,
    env: Option<&str>,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    view.store()
        .state()
        .into_iter()
        .filter(|o| belongs(o.as_ref(), namespace, app, env))
        .collect()
}

/// The Application the child labels of an object name, for watch mappers.
pub fn owner_of(
    object: &impl Resource,
) -> Option<kube::runtime::reflector::ObjectRef<super::Guarded<Application>>> {
    let labels = object.meta().labels.as_ref()?;
    let namespace = labels.get(APPLICATION_NAMESPACE_LABEL)?;
    let app = labels.get(APPLICATION_LABEL)?;
    Some(kube::runtime::reflector::ObjectRef::new(app).within(namespace))
}

/// Delivers to each environment of `order` and returns the soonest requeue any asks for.
/// The new environment states go into `status`.
pub async fn deliver(
    context: &Context,
    app: &Application,
    namespace: &str,
    order: &[String],
    releases: &[Release],
    status: &mut ApplicationStatus,
) -> Result<Option<Duration>, Error> {
    let name = app.name_any();
    let images: BTreeMap<&str, &str> = releases
        .iter()
        .filter_map(|r| Some((r.metadata.name.as_deref()?, r.spec.image.as_str())))
        .collect();
    let ordered = oldest_first(releases);
    let mut requeue: Option<Duration> = None;
    let mut keep: BTreeSet<(String, String)> = BTreeSet::new();
    let mut running_checks = BTreeSet::new();
    let mut verifying_now = BTreeSet::new();
    // The test pods of the verifications under way.
    let mut verifying_pods: BTreeSet<String> = BTreeSet::new();
    // Environments that cannot be decided now keep their workloads as they are.
    let mut untouched: BTreeSet<String> = BTreeSet::new();
    // Per environment, the releases that failed in it or upstream of it.
    let mut failed_by_now: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for env_name in order {
        let environment = context.caches.environments.get(namespace, env_name).await;
        let environment = environment.as_ref().and_then(|e| e.0.as_ref().ok());
        let entry = app.spec.environments.iter().find(|e| &e.name == env_name);
        let target = environment.and_then(|e| e.target_namespace().map(str::to_owned));
        let (Some(environment), Some(entry), Some(target)) = (environment, entry, target) else {
            untouched.insert(env_name.clone());
            continue;
        };
        let spec = &environment.spec;
        let w = Workload::of(app, entry, environment, &target);
        let stored = status
            .environments
            .iter()
            .find(|e| &e.name == env_name)
            .cloned()
            .unwrap_or_else(|| EnvironmentState {
                name: env_name.clone(),
                ..EnvironmentState::default()
            });
        let failed_upstream = spec
            .upstream
            .as_ref()
            .and_then(|up| failed_by_now.get(up))
            .cloned()
            .unwrap_or_default();
        let choice = choose(
            app,
            entry,
            environment,
            &Promotable {
                stored: &stored,
                decided: &status.environments,
                failed_upstream: &failed_upstream,
                releases: &ordered,
            },
        );
        let observed = observe(context, namespace, &name, env_name, &target);
        let check_prefix = format!("{namespace}/{name}/{env_name}/");
        let checks = figures(context, &check_prefix, &stored, environment);
        let verifying = verification_key(&check_prefix, &stored);
        let report = verifying
            .as_ref()
            .map(|key| verification_report(context, app, namespace, env_name, key, environment));
        let plan = delivery::plan(
            &delivery::Observed {
                state: &stored,
                policy: Policy {
                    strategy: spec.strategy.type_,
                    health: &spec.health,
                    automatic_rollback: spec.rollback.automatic,
                    verification: spec.verification.as_ref().map(|v| v.timeout.into()),
                },
                choice,
                history_limit: usize::try_from(app.spec.history_limit).unwrap_or(1),
                replicas: workload::replicas(&w),
                workload: &observed,
                checks: &checks,
                verification: report,
            },
            &context.clock.now(),
        );
        let cluster_ip = apply(context, &w, &plan, &images, &observed).await?;
        if !plan.deployments.is_empty() {
            keep.insert((target.clone(), workload::base_name(&name, env_name)));
        }
        for placement in plan.deployments.keys() {
            keep.insert((
                target.clone(),
                workload::deployment_name(&name, env_name, *placement),
            ));
        }
        if let (Some((release, started)), Some(ip)) = (&plan.checks, &cluster_ip) {
            for (i, check) in spec.health.http_checks.iter().enumerate() {
                let key = check_key(&check_prefix, release, started, i);
                ensure_check(context, app, check, ip, &key);
                running_checks.insert(key);
            }
        }
        if let Some((release, started)) = &plan.verify {
            let key = run_key(&check_prefix, release, started, "verify");
            verifying_now.insert(key.clone());
            verifying_pods.insert(crate::desired::verification::test_pod_name(
                &name, env_name, &key,
            ));
            start_verification(
                context,
                app,
                namespace,
                &Verifying {
                    env: env_name,
                    target: &target,
                    release,
                    key: &key,
                    cluster_ip: cluster_ip.as_deref(),
                },
                environment,
            )
            .await?;
        }
        announce(context, app, env_name, &plan).await;
        for finished in &plan.finished {
            context.metrics.rollout_finished(env_name, finished);
            if finished.kind == HistoryKind::Rollout && finished.healthy {
                observe_lead_time(context, namespace, env_name, &finished.release, releases).await;
            }
        }
        if let Some(kind) = plan.started {
            context.metrics.rollout_started(env_name, kind);
        }
        let mut failed = failed_upstream.clone();
        failed.extend(plan.state.rejected.iter().cloned());
        failed_by_now.insert(env_name.clone(), failed);
        requeue = [requeue, plan.requeue_after].into_iter().flatten().min();
        match status.environments.iter_mut().find(|e| &e.name == env_name) {
            Some(state) => *state = plan.state,
            None => status.environments.push(plan.state),
        }
    }
    context
        .checks
        .retain(&format!("{namespace}/{name}/"), &running_checks);
    context
        .verifications
        .retain(&format!("{namespace}/{name}/"), &verifying_now);
    prune_verification_pods(
        context,
        namespace,
        &name,
        order,
        &verifying_pods,
        &untouched,
    )
    .await?;
    prune(context, namespace, &name, &keep, &untouched).await?;
    status.summary = crate::decide::application::summary(&name, &status.environments);
    Ok(requeue)
}

/// Observes how long `release` took from its Release's creation, and from its commit being
/// seen (its BuildJob's creation), to healthy in `env`.
async fn observe_lead_time(
    context: &Context,
    namespace: &str,
    env: &str,
    release: &str,
    releases: &[Release],
) {
    let Some(record) = releases
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(release))
    else {
        return;
    };
    let now = context.clock.now();
    let since = |t: &jiff::Timestamp| now.0.duration_since(*t).as_secs_f64().max(0.0);
    let created = record
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| since(&t.0));
    let mut seen = None;
    if let Some(job) = &record.spec.build_job
        && let Some(job) = context.caches.buildjobs.get(namespace, job).await
    {
        seen = job.meta().creation_timestamp.as_ref().map(|t| since(&t.0));
    }
    context.metrics.release_healthy(env, created, seen);
}

/// What promotion looks at for one environment, besides its entry and Environment.
struct Promotable<'a> {
    /// The environment's stored state.
    stored: &'a EnvironmentState,
    /// The states decided so far in this pass: upstreams come first (pipeline order), so a
    /// release that just became healthy upstream is promoted in the same pass.
    decided: &'a [EnvironmentState],
    /// The releases that failed upstream of the environment.
    failed_upstream: &'a BTreeSet<String>,
    /// Every release of the Application, oldest first.
    releases: &'a [String],
}

/// Which release the environment should run and which waits (`promotion::choose`), with the
/// pin's writer read from the Application's managed fields.
fn choose(
    app: &Application,
    entry: &crate::api::application::EnvironmentEntry,
    environment: &Environment,
    input: &Promotable,
) -> promotion::Choice {
    let spec = &environment.spec;
    let upstream = spec
        .upstream
        .as_deref()
        .and_then(|up| Some((up, input.decided.iter().find(|e| e.name == up)?)));
    let rejected_upstream = |release: &str| input.failed_upstream.contains(release);
    let actor = entry
        .pin
        .as_ref()
        .and_then(|_| promotion::pin_writer(app.managed_fields(), &entry.name));
    promotion::choose(&promotion::Stage {
        approval: spec.approval,
        upstream,
        pin: entry.pin.as_ref().map(|pin| promotion::PinRequest {
            release: &pin.release,
            reason: &pin.reason,
            actor: actor.as_deref(),
        }),
        state: input.stored,
        releases: input.releases,
        rejected_upstream: &rejected_upstream,
    })
}

/// Starts (or keeps running) one HTTP check of a rollout through the Service at `ip`.
fn ensure_check(context: &Context, app: &Application, check: &HttpCheck, ip: &str, key: &str) {
    let Ok(port) = workload::check_port(app, check) else {
        return;
    };
    let port = u16::try_from(port).unwrap_or_default();
    match Target::new(
        ip,
        port,
        &check.path,
        check.interval.into(),
        check.timeout.into(),
    ) {
        Ok(target) => context.checks.ensure(key, target),
        Err(error) => tracing::warn!(%error, "cannot send HTTP check"),
    }
}

/// The key of one HTTP check of one rollout: new for every rollout, so figures never mix.
fn check_key(prefix: &str, release: &str, started: &Time, index: usize) -> String {
    run_key(prefix, release, started, &index.to_string())
}

/// The key of something that runs for one rollout (a check, its verification).
fn run_key(prefix: &str, release: &str, started: &Time, what: &str) -> String {
    format!("{prefix}{release}@{}/{what}", started.0.as_second())
}

/// The key of the verification of the environment's rollout, once it started.
fn verification_key(prefix: &str, state: &EnvironmentState) -> Option<String> {
    let rollout = state.rollout.as_ref()?;
    rollout.verification.as_ref()?;
    Some(run_key(
        prefix,
        &rollout.release,
        &rollout.started,
        "verify",
    ))
}

/// A verification to run: for which rollout, and where its Service is.
struct Verifying<'a> {
    env: &'a str,
    target: &'a str,
    release: &'a str,
    key: &'a str,
    cluster_ip: Option<&'a str>,
}

/// Where the verification under `key` stands: the test pod's state, or the GETs' report.
fn verification_report(
    context: &Context,
    app: &Application,
    namespace: &str,
    env: &str,
    key: &str,
    environment: &Environment,
) -> VerificationReport {
    let Some(verification) = &environment.spec.verification else {
        return VerificationReport::Running;
    };
    if verification.image.is_some() {
        if let Some(Report::Failed { message }) = context.verifications.report(key) {
            return VerificationReport::Failed { message, log: None };
        }
        let (_, pod) = test_pod_of(context, app, namespace, env, key);
        return match pod.map(|p| crate::desired::verification::outcome(&p)) {
            Some(Outcome::Passed { message }) => VerificationReport::Passed { message },
            Some(Outcome::Failed { message, log }) => VerificationReport::Failed { message, log },
            Some(Outcome::Running) | None => VerificationReport::Running,
        };
    }
    match context.verifications.report(key) {
        Some(Report::Passed { message }) => VerificationReport::Passed { message },
        Some(Report::Failed { message }) => VerificationReport::Failed { message, log: None },
        Some(Report::Running) | None => VerificationReport::Running,
    }
}

/// The name of the test pod of the verification under `key`, and the pod as the cache has it.
fn test_pod_of(
    context: &Context,
    app: &Application,
    namespace: &str,
    env: &str,
    key: &str,
) -> (String, Option<Arc<Pod>>) {
    let name = crate::desired::verification::test_pod_name(&app.name_any(), env, key);
    let pod = context
        .children
        .pods
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new(&name).within(namespace));
    (name, pod)
}

/// Starts (or keeps running) the verification of a rollout: its test pod in the
/// Application's namespace, or its GETs through the Service.
async fn start_verification(
    context: &Context,
    app: &Application,
    namespace: &str,
    run: &Verifying<'_>,
    environment: &Environment,
) -> Result<(), Error> {
    let Some(verification) = &environment.spec.verification else {
        return Ok(());
    };
    let service = workload::base_name(&app.name_any(), run.env);
    if let Some(image) = &verification.image {
        let (name, known) = test_pod_of(context, app, namespace, run.env, run.key);
        if known.is_some() {
            return Ok(());
        }
        let port = workload::tcp_port(app, None).unwrap_or(80);
        let service_url = format!("http://{service}.{}.svc:{port}", run.target);
        let Some(pod) = crate::desired::verification::test_pod(&TestPod {
            app,
            environment: run.env,
            release: run.release,
            run: run.key,
            image,
            command: verification.command.as_deref(),
            service_url: &service_url,
            timeout: verification.timeout.into(),
        }) else {
            return Ok(());
        };
        match context
            .api::<Pod>(namespace)
            .create(&FieldManager::Application.create(), &pod)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            // Refused for good (no grant to create pods here, a policy, an invalid image
            // reference): the verification fails with the API server's words, not at its
            // timeout. Anything else is retried.
            Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
                let grant = if status.code == 403 {
                    format!(
                        "; Ferry creates test pods only in namespaces that grant it: kubectl -n {namespace} create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=<ferry's namespace>:ferry"
                    )
                } else {
                    String::new()
                };
                context.verifications.failed_to_start(
                    run.key,
                    format!("the test pod {name} was refused: {}{grant}", status.message),
                );
                Ok(())
            }
            Err(error) => Err(Error::act(format!(
                "creating the verification pod {namespace}/{name}"
            ))(error)),
        }
    } else {
        let Some(ip) = run.cluster_ip else {
            return Ok(());
        };
        let gets = verification
            .http_gets
            .iter()
            .filter_map(|get| {
                let port = workload::tcp_port(app, get.port.as_deref()).ok()?;
                let port = u16::try_from(port).ok()?;
                let status = u16::try_from(get.expect_status).ok()?;
                match Get::new(ip, port, &get.path, status) {
                    Ok(get) => Some(get),
                    Err(error) => {
                        tracing::warn!(%error, "cannot send a verification request");
                        None
                    }
                }
            })
            .collect();
        context.verifications.ensure(run.key, gets);
        Ok(())
    }
}

/// Deletes the Application's verification pods but the newest of each listed environment
/// (kept with its log for a person to read, the failed ones above all), those in `keep` (just
/// created, perhaps not in the cache yet) and those of `untouched` environments.
async fn prune_verification_pods(
    context: &Context,
    namespace: &str,
    app: &str,
    listed: &[String],
    keep: &BTreeSet<String>,
    untouched: &BTreeSet<String>,
) -> Result<(), Error> {
    let pods: Api<Pod> = context.api(namespace);
    let mut test_pods: Vec<Arc<Pod>> = children_of(&context.children.pods, namespace, app, None)
        .into_iter()
        .filter(|p| is_test_pod(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    // Newest first: the first of each environment is kept.
    test_pods
        .sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let mut newest_seen: BTreeSet<String> = BTreeSet::new();
    for pod in test_pods {
        let env = pod.environment().unwrap_or_default();
        let newest = listed.contains(&env) && newest_seen.insert(env.clone());
        if newest || keep.contains(&pod.name_any()) || untouched.contains(&env) {
            continue;
        }
        delete_in_background(&pods, namespace, &pod.name_any()).await?;
    }
    Ok(())
}

/// The figures of the HTTP checks of the rollout in its window, if any.
fn figures(
    context: &Context,
    prefix: &str,
    state: &EnvironmentState,
    environment: &Environment,
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
            let key = check_key(prefix, &rollout.release, &rollout.started, i);
            let figures = context.checks.figures(&key).unwrap_or_default();
            CheckFigures {
                path: check.path.clone(),
                interval: check.interval.into(),
                max_error_rate: percentage(&check.max_error_rate),
                max_latency_p95: check.max_latency_p95.map(Into::into),
                requests: figures.requests,
                failed: figures.failed,
                p95: figures.p95,
                first_failure: figures
                    .first_failure
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(Time),
                last_failure: figures.last_failure_detail,
            }
        })
        .collect()
}

/// The Deployments and pods of one environment, from the caches.
fn observe(context: &Context, namespace: &str, app: &str, env: &str, target: &str) -> Observed {
    let children = &context.children;
    let deployments = children_of(&children.deployments, namespace, app, Some(env))
        .iter()
        .filter(|d| d.ns() == target)
        .map(|d| (placement(d.as_ref()), deployment_facts(d)))
        .collect();
    let pods = children_of(&children.pods, namespace, app, Some(env))
        .iter()
        .filter(|p| p.ns() == target && !is_test_pod(p))
        .map(|p| pod_facts(p))
        .collect();
    Observed { deployments, pods }
}

fn placement(object: &impl Resource) -> Option<Slot> {
    let labels = object.meta().labels.as_ref()?;
    match labels.get(SLOT_LABEL)?.as_str() {
        "blue" => Some(Slot::Blue),
        "green" => Some(Slot::Green),
        _ => None,
    }
}

fn deployment_facts(d: &Deployment) -> DeploymentFacts {
    let status = d.status.clone().unwrap_or_default();
    let release = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RELEASE_ANNOTATION))
        .cloned();
    DeploymentFacts {
        release,
        generation: d.metadata.generation,
        observed_generation: status.observed_generation,
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
    }
}

fn pod_facts(pod: &Pod) -> PodFacts {
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unschedulable = conditions
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default());
    let waiting = containers.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        Some((
            waiting.reason.clone().unwrap_or_default(),
            waiting.message.clone().unwrap_or_default(),
        ))
    });
    let last_exit = containers.iter().find_map(|c| {
        let terminated = c.last_state.as_ref()?.terminated.as_ref()?;
        Some((
            terminated.exit_code,
            terminated.finished_at.as_ref().map(|t| Time(t.0)),
        ))
    });
    PodFacts {
        name: pod.name_any(),
        placement: placement(pod),
        release: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RELEASE_ANNOTATION))
            .cloned(),
        ready,
        restarts: containers.iter().map(|c| c.restart_count).sum(),
        waiting,
        last_exit,
        unschedulable,
        deleting: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// Makes the environment's workload as the plan says: applies its Deployments and Service,
/// deletes the Deployments it no longer lists. Returns the Service's cluster IP.
async fn apply(
    context: &Context,
    w: &Workload<'_>,
    plan: &Plan,
    images: &BTreeMap<&str, &str>,
    observed: &Observed,
) -> Result<Option<String>, Error> {
    let app = w.app.name_any();
    let deployments: Api<Deployment> = context.api(w.namespace);
    for (placement, release) in &plan.deployments {
        let Some(image) = images.get(release.as_str()) else {
            // A Release deleted while it runs: leave its Deployment as it is.
            tracing::warn!(%release, "the Release of a running workload does not exist; left as it is");
            continue;
        };
        let desired = workload::deployment(
            w,
            &Running {
                release,
                image,
                replicas: workload::replicas(w),
                slot: *placement,
            },
        );
        let name = workload::deployment_name(&app, w.environment, *placement);
        managers::apply(&deployments, &name, FieldManager::Application, &desired)
            .await
            .map_err(Error::act(format!(
                "applying Deployment {}/{name}",
                w.namespace
            )))?;
    }
    for placement in observed.deployments.keys() {
        if !plan.deployments.contains_key(placement) {
            let name = workload::deployment_name(&app, w.environment, *placement);
            delete_in_background(&deployments, w.namespace, &name).await?;
        }
    }
    // Nothing runs yet (no release chosen): no Service in front of nothing.
    if plan.deployments.is_empty() {
        return Ok(None);
    }
    let Some(mut service) = workload::service(w, None) else {
        return Ok(None);
    };
    if let (Serving::Release(release), Some(spec)) = (&plan.serving, service.spec.as_mut())
        && let Some(selector) = spec.selector.as_mut()
    {
        selector.insert(RELEASE_LABEL.to_owned(), release_label_value(release));
    }
    let name = service.name_any();
    let services = context.api::<Service>(w.namespace);
    let applied = managers::apply(&services, &name, FieldManager::Application, &service)
        .await
        .map_err(Error::act(format!(
            "applying Service {}/{name}",
            w.namespace
        )))?;
    Ok(applied
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| ip != "None"))
}

/// Deletes the Application's Deployments and Services that are not in `keep` (namespace,
/// name) and not of an `untouched` environment: those of an environment entry removed, or
/// left in a namespace the environment no longer targets. Empty sets delete them all.
pub async fn prune(
    context: &Context,
    namespace: &str,
    app: &str,
    keep: &BTreeSet<(String, String)>,
    untouched: &BTreeSet<String>,
) -> Result<(), Error> {
    let children = &context.children;
    let kept = |o: &dyn ResourceLike| {
        keep.contains(&(o.ns(), o.name()))
            || o.environment().is_some_and(|e| untouched.contains(&e))
    };
    for d in children_of(&children.deployments, namespace, app, None) {
        if !kept(d.as_ref()) {
            let api: Api<Deployment> = context.api(&d.ns());
            delete_in_background(&api, &d.ns(), &d.name()).await?;
        }
    }
    for s in children_of(&children.services, namespace, app, None) {
        if !kept(s.as_ref()) {
            let api: Api<Service> = context.api(&s.ns());
            delete_in_background(&api, &s.ns(), &s.name()).await?;
        }
    }
    Ok(())
}

/// Whether any workload of the Application is left, in any namespace.
pub fn has_children(context: &Context, namespace: &str, app: &str) -> bool {
    let children = &context.children;
    !children_of(&children.deployments, namespace, app, None).is_empty()
        || !children_of(&children.services, namespace, app, None).is_empty()
}

/// The namespace and name of a child, whatever its kind.
trait ResourceLike {
    fn ns(&self) -> String;
    fn name(&self) -> String;
    fn environment(&self) -> Option<String>;
}

impl<K: Resource> ResourceLike for K {
    fn ns(&self) -> String {
        self.meta().namespace.clone().unwrap_or_default()
    }
    fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }
    fn environment(&self) -> Option<String> {
        self.meta().labels.as_ref()?.get(ENVIRONMENT_LABEL).cloned()
    }
}

/// Publishes the plan's Events on the Application, each prefixed with its environment.
async fn announce(context: &Context, app: &Application, env: &str, plan: &Plan) {
    // The part of the Application the Event is about (kubelet's `spec.containers{name}`
    // convention): kube's recorder folds Events with the same reason, action and objects into
    // one series, and the same release going through dev and prod must make two.
    let reference = ObjectReference {
        field_path: Some(format!("spec.environments{{{env}}}")),
        ..app.object_ref(&())
    };
    for told in &plan.events {
        let event = &told.announcement;
        let announcement = Announcement {
            note: format!("{env}: {}", event.note),
            ..event.clone()
        };
        tracing::info!(environment = %env, reason = %event.reason, note = %event.note, "delivery");
        let related = ObjectReference {
            api_version: Some(Release::api_version(&()).into_owned()),
            kind: Some(Release::kind(&()).into_owned()),
            namespace: app.namespace(),
            name: Some(told.release.clone()),
            ..ObjectReference::default()
        };
        let action = match told.kind {
            HistoryKind::Rollback => "Rollback",
            _ => "Rollout",
        };
        publish_about(context, &reference, Some(related), action, &announcement).await;
    }
}

/// Adds the finalizer to an Application that has environments, so its workloads in other
/// namespaces are deleted with it.
pub async fn ensure_finalizer(context: &Context, app: &Application) -> Result<(), Error> {
    if app.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = app.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set_finalizers(context, app, finalizers).await
}

/// Deletes every workload of a deleted Application, then lets it go.
pub async fn finalize(context: &Context, app: &Application, namespace: &str) -> Result<(), Error> {
    let name = app.name_any();
    prune(
        context,
        namespace,
        &name,
        &BTreeSet::new(),
        &BTreeSet::new(),
    )
    .await?;
    context
        .checks
        .retain(&format!("{namespace}/{name}/"), &BTreeSet::new());
    if has_children(context, namespace, &name) {
        // Deleted, but the caches have not heard yet: their deletions wake us again.
        return Ok(());
    }
    if app.finalizers().iter().any(|f| f == FINALIZER) {
        let finalizers = app
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        set_finalizers(context, app, finalizers).await?;
    }
    Ok(())
}

async fn set_finalizers(
    context: &Context,
    app: &Application,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    // The resourceVersion makes this a compare-and-swap: a finalizer list changed meanwhile
    // is not overwritten.
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": app.resource_version(),
        }
    });
    context
        .api::<Application>(&namespace)
        .patch(
            &name,
            &FieldManager::Application.patch(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::act(format!(
            "updating the finalizers of Application {namespace}/{name}"
        )))?;
    Ok(())
}
