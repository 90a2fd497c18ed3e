//! Deletions: what the pipeline decided goes (`decide::delivery::retain`), and every workload
//! of a deleted Application. A 404 means done.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, children_of};
use crate::controller::delete_in_background;

/// Deletes the `K` `namespace/name` in the background.
pub(super) async fn delete<K>(context: &Context, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = context.api(namespace);
    delete_in_background(&api, namespace, name).await?;
    Ok(())
}

/// Deletes the Deployment or Service `namespace/name` in the background; a refusal says that
/// the namespace has not granted Ferry its workloads (`Error::on_workload`).
pub(super) async fn delete_workload<K>(
    context: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    delete::<K>(context, namespace, name)
        .await
        .map_err(|e| e.on_workload(namespace, &context.config.service_account))
}

/// Deletes every Deployment and Service of the Application, in any namespace.
pub(super) async fn delete_all(context: &Context, namespace: &str, app: &str) -> Result<(), Error> {
    let children = &context.caches.children;
    for d in children_of(&children.deployments, namespace, app, None) {
        let ns = d.namespace().unwrap_or_default();
        delete_workload::<Deployment>(context, &ns, &d.name_any()).await?;
    }
    for s in children_of(&children.services, namespace, app, None) {
        let ns = s.namespace().unwrap_or_default();
        delete_workload::<Service>(context, &ns, &s.name_any()).await?;
    }
    Ok(())
}

/// Whether any workload of the Application is left, in any namespace.
pub(super) fn has_children(context: &Context, namespace: &str, app: &str) -> bool {
    let children = &context.caches.children;
    !children_of(&children.deployments, namespace, app, None).is_empty()
        || !children_of(&children.services, namespace, app, None).is_empty()
}
