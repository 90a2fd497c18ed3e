//! Reconciles Applications: resolves the Environments, Releases and Secrets an Application
//! names and reports whether it can be delivered.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::Stream;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::environment::target_namespace;
use super::error::succeeded;
use super::relations::related;
use super::status::{self, readable};
use super::{Context, Error, Guarded, next_action};
use crate::api::application::EnvironmentEntry;
use crate::api::conditions::{self, READY};
use crate::api::{Application, Environment, Release, Secret};
use crate::decide::application::{
    self as decide, EnvironmentFacts, LiveTarget, Observed, environment_readiness,
};
use crate::decide::environment::{consents, upstream_of};
use crate::decide::secrets::{SecretAccess, SecretKeys};

/// Declares what an Application's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<Application>>,
    context: &Arc<Context>,
    environments: impl Stream<Item = Arc<Guarded<Environment>>> + Send + 'static,
    releases: impl Stream<Item = Arc<Guarded<Release>>> + Send + 'static,
) -> Controller<Guarded<Application>> {
    // An Environment appearing, disappearing or changing readiness changes whether the
    // Applications that list it can be delivered.
    let apps = context.caches.applications.store().clone();
    let by_environment = move |env: Arc<Guarded<Environment>>| {
        let name = env.name_any();
        related(&apps, env.namespace().as_deref(), |app: &Application| {
            app.spec.environments.iter().any(|e| e.name == name)
        })
    };
    // A Release appearing or going away decides whether a pin on it can be honoured.
    let apps = context.caches.applications.store().clone();
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
    controller
        .watches_shared_stream(environments, by_environment)
        .watches_shared_stream(releases, by_release)
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

    let environments = environment_facts(&context, &namespace, app).await?;
    let releases = release_owners(&context, &namespace).await;
    let secrets = secret_access(&context, &namespace, &app.secret_refs()).await?;
    let decision = decide::status(
        &Observed {
            app,
            namespace: &namespace,
            environments: &environments,
            secrets: &secrets,
            releases: &releases,
        },
        &context.clock.now(),
    );
    let written = status::write(&context, app, app.status.as_ref(), &decision.status).await?;

    succeeded(&context, app);
    Ok(next_action(written, decision.requeue_after))
}

/// The Environments of a namespace from the shared cache; for those `app` lists that deploy
/// into another namespace, that namespace's consent read live.
async fn environment_facts(
    context: &Context,
    namespace: &str,
    app: &Application,
) -> Result<BTreeMap<String, EnvironmentFacts>, Error> {
    let mut facts = BTreeMap::new();
    // Several environments may deploy into one namespace: read each namespace once.
    let mut consent: BTreeMap<String, bool> = BTreeMap::new();
    for guard in context.caches.environments.in_namespace(namespace).await {
        let name = guard.name_any();
        let env = guard.0.as_ref().ok();
        let ready = env.and_then(|e| {
            let status = e.status.as_ref()?;
            conditions::find(&status.conditions, READY).cloned()
        });
        let listed = app.spec.environments.iter().any(|e| e.name == name);
        let target = match env.and_then(Environment::target_namespace) {
            Some(target) if listed && target != namespace => {
                let consents = match consent.get(target) {
                    Some(known) => *known,
                    None => {
                        let live = target_namespace(context, target).await?;
                        let given = consents(&live, target, namespace);
                        consent.insert(target.to_owned(), given);
                        given
                    }
                };
                Some(LiveTarget {
                    namespace: target.to_owned(),
                    consents,
                })
            }
            _ => None,
        };
        let readiness =
            environment_readiness(ready.as_ref(), guard.meta().generation, env.is_some());
        let upstream = upstream_of(env.map(|e| &e.spec));
        facts.insert(
            name,
            EnvironmentFacts {
                upstream,
                readiness,
                target,
            },
        );
    }
    Ok(facts)
}

/// The Releases of a namespace, name to Application, from the shared cache.
async fn release_owners(context: &Context, namespace: &str) -> BTreeMap<String, String> {
    context
        .caches
        .releases
        .in_namespace(namespace)
        .await
        .into_iter()
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

/// The key names of the named Secrets that exist, read with one `get` each (values are
/// dropped at once), or that the namespace has not granted Ferry access to its Secrets.
pub(super) async fn secret_access(
    context: &Context,
    namespace: &str,
    references: &[(&'static str, &str)],
) -> Result<SecretAccess, Error> {
    let api = context.api::<Secret>(namespace);
    let mut keys = SecretKeys::new();
    for (_, name) in references {
        if keys.contains_key(*name) {
            continue;
        }
        let secret = match api.get_opt(name).await {
            Ok(secret) => secret,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Ok(SecretAccess::NotGranted {
                    service_account: context.service_account.clone(),
                });
            }
            Err(error) => return Err(Error::observe(format!("Secret {namespace}/{name}"))(error)),
        };
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
    Ok(SecretAccess::Read(keys))
}
