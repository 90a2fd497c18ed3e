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

/// Deletes the Deployment or Service `namespace/name` in the background. RBAC refusing it
/// (the namespace has not granted Ferry, or took the grant back) is not an error: the object is
/// left where it is, and what was refused is returned, so that one object Ferry may not delete
/// (say a Deployment someone labelled as Ferry's in their own namespace) never stalls the
/// Application or its deletion.
pub(super) async fn delete_workload<K>(
    context: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match delete::<K>(context, namespace, name).await {
        Ok(()) => Ok(None),
        Err(error) => match error.rbac_refusal() {
            Some(what) => {
                let left = format!(
                    "{what} was refused, so it is left in place; {}, or delete it yourself",
                    crate::decide::environment::not_granted(
                        namespace,
                        &context.config.service_account
                    )
                    .message
                );
                tracing::warn!(%left, "a workload Ferry may not delete");
                Ok(Some(left))
            }
            None => Err(error),
        },
    }
}

/// Deletes every Deployment and Service of the Application, in any namespace; returns what
/// Ferry was refused ([`delete_workload`]).
pub(super) async fn delete_all(
    context: &Context,
    namespace: &str,
    app: &str,
) -> Result<Vec<String>, Error> {
    let children = &context.caches.children;
    let mut refused = Vec::new();
    for d in children_of(&children.deployments, namespace, app, None).await {
        let ns = d.namespace().unwrap_or_default();
        refused.extend(delete_workload::<Deployment>(context, &ns, &d.name_any()).await?);
    }
    for s in children_of(&children.services, namespace, app, None).await {
        let ns = s.namespace().unwrap_or_default();
        refused.extend(delete_workload::<Service>(context, &ns, &s.name_any()).await?);
    }
    Ok(refused)
}

/// How many workloads of the Application are left, in any namespace.
pub(super) async fn children_left(context: &Context, namespace: &str, app: &str) -> usize {
    let children = &context.caches.children;
    children_of(&children.deployments, namespace, app, None)
        .await
        .len()
        + children_of(&children.services, namespace, app, None)
            .await
            .len()
}
