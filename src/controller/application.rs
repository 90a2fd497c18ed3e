//! Reconciles Applications: resolves the Environments and Secrets an Application names and
//! reports whether it can be delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use tracing::instrument;

use super::{Context, Error, Guarded, readable, related, secret_metadata, succeeded, write_status};
use crate::api::application::EnvironmentEntry;
use crate::api::conditions::{self, READY};
use crate::api::{Application, Environment, Release, Secret};
use crate::decide::application::{
    self as decide, EnvironmentFacts, EnvironmentReadiness, Observed,
};
use crate::decide::secrets::SecretKeys;

/// How often an Application is looked at again with nothing changed, to catch what no watch
/// reports.
const RESYNC: Duration = Duration::from_secs(300);

/// Declares what an Application's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<Application>>,
    context: &Arc<Context>,
    environments: impl Stream<Item = Arc<Guarded<Environment>>> + Send + 'static,
    releases: impl Stream<Item = Arc<Guarded<Release>>> + Send + 'static,
    config: watcher::Config,
) -> Controller<Guarded<Application>> {
    // An Environment appearing, disappearing or changing readiness changes whether the
    // Applications that list it can be delivered.
    let apps = context.applications.clone();
    let by_environment = move |env: Arc<Guarded<Environment>>| {
        let name = env.name_any();
        related(&apps, env.namespace().as_deref(), |app: &Application| {
            app.spec.environments.iter().any(|e| e.name == name)
        })
    };
    // A Release appearing or going away decides whether a pin on it can be honoured.
    let apps = context.applications.clone();
    let by_release = move |release: Arc<Guarded<Release>>| {
        let name = release.name_any();
        related(
            &apps,
            release.namespace().as_deref(),
            |app: &Application| {
                let pinned =
                    |e: &EnvironmentEntry| e.pin.as_ref().is_some_and(|p| p.release == name);
                app.spec.environments.iter().any(pinned)
            },
        )
    };
    // A Secret appearing or changing its keys unblocks the Applications that name it.
    let apps = context.applications.clone();
    let by_secret = move |secret: PartialObjectMeta<Secret>| {
        let name = secret.name_any();
        related(&apps, secret.namespace().as_deref(), |app: &Application| {
            app.secret_refs().iter().any(|(_, s)| *s == name)
        })
    };
    controller
        .watches_shared_stream(environments, by_environment)
        .watches_shared_stream(releases, by_release)
        .watches(secret_metadata(context), config, by_secret)
}

#[instrument(skip(object, context), fields(namespace = object.namespace(), name = %object.name_any()))]
pub(super) async fn reconcile(
    object: Arc<Guarded<Application>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let Some(app) = readable(&object, &context).await else {
        return Ok(Action::await_change());
    };
    let _timer = context.metrics.reconcile_started("Application");
    let namespace = app.namespace().ok_or(Error::MissingNamespace)?;

    let environments = environment_facts(&context, &namespace).await;
    let releases = release_owners(&context, &namespace).await;
    let secrets = secret_keys(&context, &namespace, &app.secret_refs()).await?;
    let status = decide::status(
        &Observed {
            app,
            namespace: &namespace,
            environments: &environments,
            secrets: &secrets,
            releases: &releases,
        },
        &context.clock.now(),
    );
    write_status(&context, app, app.status.as_ref(), &status, |s| {
        &s.conditions
    })
    .await?;

    succeeded(&context, app);
    Ok(Action::requeue(RESYNC))
}

/// The Environments of a namespace, from the shared cache.
async fn environment_facts(
    context: &Context,
    namespace: &str,
) -> BTreeMap<String, EnvironmentFacts> {
    // Before the cache has its first full list every Environment would look missing.
    context.environments_synced.wait().await;
    context
        .environments
        .state()
        .into_iter()
        .filter(|env| env.namespace().as_deref() == Some(namespace))
        .map(|guard| {
            let Ok(env) = &guard.0 else {
                let facts = EnvironmentFacts {
                    upstream: None,
                    readiness: EnvironmentReadiness::NotReady("InvalidObject".to_owned()),
                };
                return (guard.name_any(), facts);
            };
            let conditions = env
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            // A Ready condition about an older generation says nothing about the spec now.
            let readiness = match conditions::find(conditions, READY) {
                Some(ready) if ready.observed_generation != env.metadata.generation => {
                    EnvironmentReadiness::Pending
                }
                Some(ready) if ready.status == conditions::TRUE => EnvironmentReadiness::Ready,
                Some(ready) => EnvironmentReadiness::NotReady(ready.reason.clone()),
                None => EnvironmentReadiness::Pending,
            };
            (
                env.name_any(),
                EnvironmentFacts {
                    upstream: env.spec.upstream.clone(),
                    readiness,
                },
            )
        })
        .collect()
}

/// The Releases of a namespace, name to Application, from the shared cache.
async fn release_owners(context: &Context, namespace: &str) -> BTreeMap<String, String> {
    context.releases_synced.wait().await;
    context
        .releases
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace))
        .map(|r| {
            // A Release Ferry cannot read still exists; whose it is stays unknown.
            let owner =
                r.0.as_ref()
                    .map(|r| r.spec.application.clone())
                    .unwrap_or_default();
            (r.name_any(), owner)
        })
        .collect()
}

/// The key names of the named Secrets that exist. Values are dropped right away.
pub(super) async fn secret_keys(
    context: &Context,
    namespace: &str,
    references: &[(&'static str, &str)],
) -> Result<SecretKeys, Error> {
    let api = context.api::<Secret>(namespace);
    let mut keys = SecretKeys::new();
    for (_, name) in references {
        if keys.contains_key(*name) {
            continue;
        }
        let secret = api
            .get_opt(name)
            .await
            .map_err(Error::observe(format!("Secret {namespace}/{name}")))?;
        if let Some(secret) = secret {
            let names = secret
                .data
                .into_iter()
                .flat_map(|d| d.into_keys())
                .chain(secret.string_data.into_iter().flat_map(|d| d.into_keys()))
                .collect();
            keys.insert((*name).to_owned(), names);
        }
    }
    Ok(keys)
}
