//! Delivery, the I/O around `decide::delivery::pipeline`: for the environments an Application
//! goes through, in pipeline order,
//! 1. **observe** (`observe.rs`): the caches and the run registry as plain data: each
//!    environment's Deployments and pods, the Application's Deployments, Services and test
//!    pods anywhere, its Releases, how its HTTP checks and verifications stand;
//! 2. **decide** (`decide::delivery::pipeline`): the new per-environment states and the
//!    actions, every domain rule included (which workloads and test pods stay, what failed
//!    upstream, when a verification fails);
//! 3. **act** (`apply.rs`, `prune.rs`): the actions in their order: server-side apply of the
//!    Deployments and Services, deletions, the runs started and stopped, the Events and the
//!    metrics. The Application reconciler writes the status once, with the new states.
//!
//! The workload lives in the Environment's target namespace, usually not the Application's,
//! so it cannot carry an owner reference: every child carries the labels of its Application
//! (`desired::workload::child_labels`), is found by them, and is deleted when its environment
//! entry goes away or, through the finalizer `finalize::FINALIZER`, when the
//! Application is deleted.

mod apply;
mod finalize;
mod observe;
mod prune;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Resource;

pub use self::finalize::{ensure_finalizer, finalize};
pub use self::observe::trim_pod;
use super::{Context, Error};
use crate::api::application::EnvironmentState;
use crate::api::labels::{
    APPLICATION_LABEL, APPLICATION_NAMESPACE_LABEL, ENVIRONMENT_LABEL, MANAGED_BY,
    MANAGED_BY_LABEL, VERIFICATION_LABEL,
};
use crate::api::{Application, Release};
use crate::decide::delivery;
use crate::decide::ownership::pod_not_ours;

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

/// Why `pod` is not a test pod Ferry made for `app`, if it is not (`decide::ownership`).
fn test_pod_not_ours(pod: &Pod, app: &Application) -> Option<String> {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let namespace = app.metadata.namespace.as_deref().unwrap_or_default();
    let uid = app.metadata.uid.as_deref().unwrap_or_default();
    pod_not_ours(
        &pod.metadata,
        uid,
        &[
            (MANAGED_BY_LABEL, MANAGED_BY),
            (VERIFICATION_LABEL, "true"),
            (APPLICATION_NAMESPACE_LABEL, namespace),
            (APPLICATION_LABEL, name),
        ],
    )
}

/// The objects of a cache that belong to the Application (in any namespace), once the cache
/// has synced: before its first list every workload would look missing (judged as lost
/// readiness, or counted as gone by the finalizer), as it did to a newly elected leader.
async fn children_of<K>(
    view: &super::cache::View<K>,
    namespace: &str,
    app: &str,
    env: Option<&str>,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    view.group(&application_key(namespace, app))
        .await
        .into_iter()
        .filter(|o| belongs(o.as_ref(), namespace, app, env))
        .collect()
}

/// The group (`cache::GroupOf`) of the workloads of Application `app` of `namespace`.
fn application_key(namespace: &str, app: &str) -> String {
    format!("{namespace}/{app}")
}

/// The group of a workload in the caches: the Application its labels name, wherever it runs.
pub fn application_of<K: Resource>(object: &K) -> Option<String> {
    let owner = owner_of(object)?;
    Some(application_key(
        owner.namespace.as_deref().unwrap_or_default(),
        &owner.name,
    ))
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

/// Delivers to each environment of `order` (observe, decide, act) and returns the new states
/// of the environments (`stored`, the decided ones replaced) and the soonest requeue any asks
/// for.
pub async fn deliver(
    context: &Context,
    app: &Application,
    namespace: &str,
    (order, checked): (&[String], &BTreeMap<String, String>),
    releases: &[Release],
    stored: &[EnvironmentState],
) -> Result<(Vec<EnvironmentState>, Option<Duration>), Error> {
    let observed = observe::observe(context, app, namespace, (order, checked), releases).await;
    let decision = delivery::pipeline(
        &delivery::pipeline::Pipeline {
            app,
            namespace,
            environments: &observed.environments,
            stored,
            releases: &observed.releases,
            children: &observed.children,
            test_pods: &observed.test_pods,
            runs: &observed.runs,
        },
        &context.clock.now(),
    );
    apply::run(
        context,
        app,
        namespace,
        &observed.environments,
        &decision.actions,
    )
    .await?;
    Ok((decision.status, decision.requeue_after))
}
