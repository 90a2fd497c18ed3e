//! Reconciles Environments: resolves the upstream chain and checks that the target namespace
//! consents and has granted Ferry the right to write workloads there.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use tracing::instrument;

use super::error::succeeded;
use super::events::readable;
use super::relations::related;
use super::status;
use super::{Context, Error, Guarded, next_action};
use crate::api::{Environment, Namespace};
use crate::decide::environment::{self as decide, Observed, TargetNamespace, upstream_of};

/// Declares what an Environment's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<Environment>>,
    context: &Arc<Context>,
    environments: impl Stream<Item = Arc<Guarded<Environment>>> + Send + 'static,
    config: watcher::Config,
) -> Controller<Guarded<Environment>> {
    // Whether an upstream chain resolves, or loops, depends on every Environment of the
    // namespace: a change to one re-checks its siblings.
    let envs = context.caches.environments.clone();
    let siblings = move |changed: Arc<Guarded<Environment>>| {
        related(&envs, changed.namespace().as_deref(), |_: &Environment| {
            true
        })
    };
    // A target namespace appearing or consenting unblocks the Environments aimed at it, in
    // whichever namespace they are.
    let envs = context.caches.environments.clone();
    let by_namespace = move |ns: PartialObjectMeta<Namespace>| {
        let name = ns.name_any();
        related(&envs, None, |env: &Environment| {
            env.target_namespace() == Some(name.as_str())
        })
    };
    let namespaces = Api::<PartialObjectMeta<Namespace>>::all(context.client.clone());
    controller
        .watches_shared_stream(environments, siblings)
        .watches(namespaces, config, by_namespace)
}

#[instrument(skip(object, context), fields(namespace = object.namespace(), name = %object.name_any()))]
pub(super) async fn reconcile(
    object: Arc<Guarded<Environment>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let Some(env) = readable(&object, &context).await else {
        return Ok(Action::await_change());
    };
    let _timer = context.metrics.reconcile_started("Environment");
    let namespace = env.namespace().ok_or(Error::MissingNamespace)?;
    let name = env.name_any();
    let target_name = env.target_namespace().unwrap_or(&namespace).to_owned();

    let upstreams = upstreams(&context, &namespace, env).await;
    let target = target_namespace(&context, &target_name).await?;
    let granted = if decide::consents(&target, &target_name, &namespace) {
        Some(workloads_granted(&context, &target_name).await?)
    } else {
        None
    };
    let decision = decide::status(
        &Observed {
            name: &name,
            namespace: &namespace,
            generation: env.metadata.generation,
            target_namespace: &target_name,
            target,
            granted,
            service_account: &context.config.service_account,
            upstreams: &upstreams,
            current: env.status.as_ref(),
        },
        &context.clock.now(),
    );
    let written = status::write(&context, env, env.status.as_ref(), &decision.status).await?;

    succeeded(&context, env);
    Ok(next_action(written, decision.requeue_after))
}

/// Every Environment of the namespace, name to upstream, from the shared cache; `env` itself
/// as it is now, since the cache may lag behind the object being reconciled.
async fn upstreams(
    context: &Context,
    namespace: &str,
    env: &Environment,
) -> BTreeMap<String, Option<String>> {
    let mut upstreams: BTreeMap<String, Option<String>> = context
        .caches
        .environments
        .in_namespace(namespace)
        .await
        .into_iter()
        .map(|e| {
            (
                e.name_any(),
                upstream_of(e.0.as_ref().ok().map(|e| &e.spec)),
            )
        })
        .collect();
    upstreams.insert(env.name_any(), env.spec.upstream.clone());
    upstreams
}

/// A namespace's consent annotations, read live from the API server, never from a cache or
/// an Environment's status: consent is checked against the namespace as it is when Ferry is
/// about to rely on it.
pub(super) async fn target_namespace(
    context: &Context,
    name: &str,
) -> Result<TargetNamespace, Error> {
    let api = Api::<Namespace>::all(context.client.clone());
    let namespace = api
        .get_metadata_opt(name)
        .await
        .map_err(Error::observe(format!("Namespace {name}")))?;
    Ok(match namespace {
        None => TargetNamespace::Missing,
        Some(ns) => TargetNamespace::Present {
            annotations: ns.metadata.annotations.unwrap_or_default(),
        },
    })
}

/// Whether Ferry's ServiceAccount may write Deployments and Services in `namespace` (every verb
/// it uses: `create` and `patch` for a server-side apply, `delete` to clean up), as the API
/// server's authorizer answers it now: granted by a RoleBinding to the `ferry-deployer`
/// ClusterRole, never by Ferry's own ClusterRole.
pub(super) async fn workloads_granted(context: &Context, namespace: &str) -> Result<bool, Error> {
    let reviews = Api::<SelfSubjectAccessReview>::all(context.client.clone());
    let asked = [("apps", "deployments"), ("", "services")]
        .into_iter()
        .flat_map(|kind| ["create", "patch", "delete"].map(move |verb| (kind, verb)));
    for ((group, resource), verb) in asked {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_owned()),
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::observe(format!(
                "whether Ferry may {verb} {resource} in namespace {namespace}"
            )))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            return Ok(false);
        }
    }
    Ok(true)
}
