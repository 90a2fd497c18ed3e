//! Act: runs the pipeline's actions in their order. Server-side apply of the Deployments and
//! Services (a Service's cluster IP is where its environment's checks and verification GETs
//! go), the runs started (`adapters::runs`), the test pods created, the Events recorded and the
//! metrics counted; deletions go through `prune.rs`. An error stops the pass before the status
//! is written, so the next pass decides again from the same stored state.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::{Resource, ResourceExt};

use super::prune::{delete, delete_workload};
use super::{Context, Error, test_pod_not_ours};
use crate::adapters::http_check::Target;
use crate::adapters::verification::Get as Request;
use crate::api::application::{HistoryKind, RunSpec};
use crate::api::labels::RELEASE_LABEL;
use crate::api::managers::FieldManager;
use crate::api::reasons::{POD_NOT_OWNED, Reason, WORKLOAD_LEFT_IN_PLACE};
use crate::api::{Application, Release};
use crate::controller::events::{publish, publish_about};
use crate::controller::managers;
use crate::decide::delivery::pipeline::{Action, Get, Listed};
use crate::decide::delivery::runs::RunKey;
use crate::decide::delivery::verify::{TestPodRefused, test_pod_refused};
use crate::decide::delivery::{Serving, Told};
use crate::decide::events::Announcement;
use crate::decide::ownership::workload_not_ours;
use crate::desired::verification::test_pod;
use crate::desired::workload::{self, Running, Workload, release_label_value};

/// Runs `actions` for `app`; `environments` are those the actions were decided from.
pub(super) async fn run(
    context: &Context,
    app: &Application,
    namespace: &str,
    environments: &[Listed],
    actions: &[Action],
) -> Result<(), Error> {
    // Each environment's Service address, once applied.
    let mut addresses: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for action in actions {
        match action {
            Action::ApplyDeployment {
                environment,
                namespace: target,
                name,
                placement,
                release,
                image,
                run,
            } => {
                let Some(w) = workload_of(app, environments, environment, target) else {
                    continue;
                };
                let desired = workload::deployment(
                    &w,
                    &Running {
                        release,
                        image,
                        run,
                        replicas: workload::replicas(w.entry, run),
                        slot: *placement,
                    },
                );
                let desired = crate::desired::applied::fingerprinted(desired);
                let cached = &context.caches.children.deployments;
                if already_applied(cached, target, name, &desired)
                    .await
                    .is_some()
                {
                    continue;
                }
                let deployments = context.api::<Deployment>(target);
                ensure_ours(&deployments, name, app, environment).await?;
                managers::apply(&deployments, name, FieldManager::Application, &desired)
                    .await
                    .map_err(|e| {
                        Error::act(format!("applying Deployment {target}/{name}"))(e)
                            .on_workload(target, &context.config.service_account)
                    })?;
            }
            Action::LeaveDeployment { release, .. } => {
                tracing::warn!(%release, "the Release of a running workload does not exist or fixes no run configuration; left as it is");
            }
            Action::DeleteDeployment { namespace, name } => {
                if let Some(left) = delete_workload::<Deployment>(context, namespace, name).await? {
                    warn_about(context, app, WORKLOAD_LEFT_IN_PLACE, &left).await;
                }
            }
            Action::ApplyService {
                environment,
                namespace: target,
                serving,
                run,
            } => {
                let Some(w) = workload_of(app, environments, environment, target) else {
                    continue;
                };
                let address = apply_service(context, &w, serving, run).await?;
                addresses.insert(environment, address);
            }
            Action::DeleteService { namespace, name } => {
                if let Some(left) = delete_workload::<Service>(context, namespace, name).await? {
                    warn_about(context, app, WORKLOAD_LEFT_IN_PLACE, &left).await;
                }
            }
            Action::EnsureCheck {
                environment,
                key,
                port,
                path,
                interval,
                timeout,
            } => {
                let Some(ip) = addresses.get(environment.as_str()).cloned().flatten() else {
                    // No Service to send through: the check cannot run.
                    context.external.runs.stop(key);
                    continue;
                };
                match Target::new(&ip, *port, path, *interval, *timeout) {
                    Ok(target) => context.external.runs.ensure_check(key.clone(), target),
                    Err(error) => tracing::warn!(%error, "cannot send HTTP check"),
                }
            }
            Action::StartTestPod { key, pod } => {
                let Some(pod) = test_pod(app, pod) else {
                    continue;
                };
                start_test_pod(context, app, namespace, key, &pod).await?;
            }
            Action::SendGets {
                environment,
                key,
                gets,
            } => {
                if let Some(Some(ip)) = addresses.get(environment.as_str()) {
                    context
                        .external
                        .runs
                        .ensure_gets(key.clone(), requests(ip, gets));
                }
            }
            Action::Tell { environment, told } => announce(context, app, environment, told).await,
            Action::CountStarted { environment, kind } => {
                context.metrics.rollout_started(environment, *kind);
            }
            Action::CountFinished {
                environment,
                finished,
            } => context.metrics.rollout_finished(environment, finished),
            Action::CountLeadTime {
                environment,
                since_release,
                since_commit,
            } => context
                .metrics
                .release_healthy(environment, *since_release, *since_commit),
            Action::StopRun { key } => context.external.runs.stop(key),
            Action::DeleteTestPod { name } => delete::<Pod>(context, namespace, name).await?,
        }
    }
    Ok(())
}

/// The workload of `app` in `environment` as decided, whose objects go in `target`.
fn workload_of<'a>(
    app: &'a Application,
    environments: &'a [Listed],
    environment: &str,
    target: &'a str,
) -> Option<Workload<'a>> {
    let entry = app
        .spec
        .environments
        .iter()
        .find(|e| e.name == environment)?;
    let listed = environments.iter().find(|e| e.name == environment)?;
    Some(Workload::of(
        app,
        entry,
        listed.environment.as_ref()?,
        target,
    ))
}

/// Applies the environment's Service, sending traffic as `serving` says; returns its cluster
/// IP.
async fn apply_service(
    context: &Context,
    w: &Workload<'_>,
    serving: &Serving,
    run: &RunSpec,
) -> Result<Option<String>, Error> {
    let Some(mut service) = workload::service(w, run, None) else {
        return Ok(None);
    };
    if let (Serving::Release(release), Some(spec)) = (serving, service.spec.as_mut())
        && let Some(selector) = spec.selector.as_mut()
    {
        selector.insert(RELEASE_LABEL.to_owned(), release_label_value(release));
    }
    let service = crate::desired::applied::fingerprinted(service);
    let name = service.name_any();
    let cached = &context.caches.children.services;
    if let Some(held) = already_applied(cached, w.namespace, &name, &service).await {
        return Ok(cluster_ip(&held));
    }
    let services = context.api::<Service>(w.namespace);
    ensure_ours(&services, &name, w.app, w.environment).await?;
    let applied = managers::apply(&services, &name, FieldManager::Application, &service)
        .await
        .map_err(|e| {
            Error::act(format!("applying Service {}/{name}", w.namespace))(e)
                .on_workload(w.namespace, &context.config.service_account)
        })?;
    Ok(cluster_ip(&applied))
}

fn cluster_ip(service: &Service) -> Option<String> {
    let ip = service.spec.as_ref()?.cluster_ip.as_ref()?;
    (ip != "None").then(|| ip.clone())
}

/// The cached `namespace/name` if it already holds all of `desired` (`desired::applied`,
/// fingerprint included): applying it again would change nothing, so nothing is sent. The
/// cached copy carries Ferry's labels and fingerprint, so it is one Ferry applied; the live
/// ownership check (`ensure_ours`) runs only before a write. An object last written by an
/// older Ferry has no fingerprint, so it is applied once (and its old field manager released).
async fn already_applied<K>(
    cache: &crate::controller::cache::View<K>,
    namespace: &str,
    name: &str,
    desired: &K,
) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + 'static,
{
    let held = cache.get(namespace, name).await?;
    let holds = match (serde_json::to_value(&*held), serde_json::to_value(desired)) {
        (Ok(actual), Ok(desired)) => crate::desired::applied::holds(&actual, &desired),
        _ => false,
    };
    holds.then_some(held)
}

/// Refuses to apply over the object `name` of `api` when it exists and is not Ferry's
/// workload of `app` in `environment` (`decide::ownership::workload_not_ours`). Read live, not
/// from the cache: the cache holds only objects with Ferry's labels, without managed fields.
async fn ensure_ours<K>(
    api: &kube::Api<K>,
    name: &str,
    app: &Application,
    environment: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    let existing = api
        .get_opt(name)
        .await
        .map_err(Error::observe(format!("{kind} {name}")))?;
    let app_namespace = app.metadata.namespace.as_deref().unwrap_or_default();
    let app_name = app.metadata.name.as_deref().unwrap_or_default();
    match existing
        .and_then(|o| workload_not_ours(&kind, o.meta(), app_namespace, app_name, environment))
    {
        Some(why) => Err(Error::WorkloadNotOwned(format!("{environment}: {why}"))),
        None => Ok(()),
    }
}

/// The verification GETs, through the Service at `ip`.
fn requests(ip: &str, gets: &[Get]) -> Vec<Request> {
    gets.iter()
        .filter_map(
            |get| match Request::new(ip, get.port, &get.path, get.expect_status) {
                Ok(request) => Some(request),
                Err(error) => {
                    tracing::warn!(%error, "cannot send a verification request");
                    None
                }
            },
        )
        .collect()
}

/// Creates the test pod of the verification `key`; a refusal for good fails the verification
/// (`test_pod_refused`), through its run's report.
async fn start_test_pod(
    context: &Context,
    app: &Application,
    namespace: &str,
    key: &RunKey,
    pod: &Pod,
) -> Result<(), Error> {
    let name = pod.name_any();
    let pods = context.api::<Pod>(namespace);
    match pods.create(&FieldManager::Application.create(), pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => {
            match test_pod_refused(status.code, &status.message, namespace, &name) {
                // Ferry's own from an earlier pass, or someone else's, which is never trusted:
                // the verification fails, the pod is left alone.
                TestPodRefused::Exists => {
                    let existing = pods
                        .get_opt(&name)
                        .await
                        .map_err(Error::observe(format!("the pod {namespace}/{name}")))?;
                    if let Some(why) = existing.and_then(|p| test_pod_not_ours(&p, app)) {
                        tracing::warn!(%why, "a test pod's name is taken by a pod that is not Ferry's");
                        warn_about(context, app, POD_NOT_OWNED, &why).await;
                        context.external.runs.failed_to_start(key.clone(), why);
                    }
                    Ok(())
                }
                TestPodRefused::Fails(message) => {
                    context.external.runs.failed_to_start(key.clone(), message);
                    Ok(())
                }
                TestPodRefused::Retry => Err(Error::act(format!(
                    "creating the verification pod {namespace}/{name}"
                ))(kube::Error::Api(status))),
            }
        }
        Err(error) => Err(Error::act(format!(
            "creating the verification pod {namespace}/{name}"
        ))(error)),
    }
}

/// A Warning Event on the Application about an object of its own: one under one of its names
/// that is not Ferry's, or one Ferry may not delete.
pub(super) async fn warn_about(context: &Context, app: &Application, reason: Reason, why: &str) {
    let announcement = Announcement {
        severity: reason.severity,
        reason: reason.name.to_owned(),
        note: why.to_owned(),
    };
    publish(context, &app.object_ref(&()), &announcement).await;
}

/// Publishes an Event on the Application about `env`, its note prefixed with the environment.
async fn announce(context: &Context, app: &Application, env: &str, told: &Told) {
    // The part of the Application the Event is about (kubelet's `spec.containers{name}`
    // convention), so that `kubectl get events --field-selector` can pick one environment's.
    let reference = ObjectReference {
        field_path: Some(format!("spec.environments{{{env}}}")),
        ..app.object_ref(&())
    };
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
