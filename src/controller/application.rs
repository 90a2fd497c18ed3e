//! Reconciles Applications: resolves the Environments, Releases and Secrets an Application
//! names and reports whether it can be delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::Stream;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::delivery;
use super::environment::target_namespace;
use super::error::succeeded;
use super::events::{publish, readable};
use super::records;
use super::relations::related;
use super::release::{newest, releases_of};
use super::secrets;
use super::sources::{Looked, SourceKey};
use super::status;
use super::{Context, Error, Guarded, next_action};
use crate::api::BuildJob;
use crate::api::application::EnvironmentEntry;
use crate::api::conditions::{self, READY};
use crate::api::managers::FieldManager;
use crate::api::reasons::RECONFIGURED;
use crate::api::{Application, Environment, Release};
use crate::decide::application::{
    self as decide, Action as Act, EnvironmentFacts, LiveTarget, Observed, environment_readiness,
};
use crate::decide::build::objects::buildjob_for;
use crate::decide::environment::{consents, upstream_of};
use crate::decide::events::Announcement;
use crate::decide::release::outside_repository;
use crate::decide::run_spec;
use crate::decide::secrets::{SecretAccess, source_blocker};
use crate::desired::workload::Workload;

/// Declares what an Application's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<Application>>,
    context: &Arc<Context>,
    environments: impl Stream<Item = Arc<Guarded<Environment>>> + Send + 'static,
    releases: impl Stream<Item = Arc<Guarded<Release>>> + Send + 'static,
) -> Controller<Guarded<Application>> {
    // An Environment appearing, disappearing or changing readiness changes whether the
    // Applications that list it can be delivered.
    let apps = context.caches.applications.clone();
    let by_environment = move |env: Arc<Guarded<Environment>>| {
        let name = env.name_any();
        related(&apps, env.namespace().as_deref(), |app: &Application| {
            app.spec.environments.iter().any(|e| e.name == name)
        })
    };
    // A Release appearing or going away decides whether a pin on it can be honoured, and
    // which is its Application's latest.
    let apps = context.caches.applications.clone();
    let by_release = move |release: Arc<Guarded<Release>>| {
        let name = release.name_any();
        let owner = release.0.as_ref().ok().map(|r| r.spec.application.clone());
        related(
            &apps,
            release.namespace().as_deref(),
            |app: &Application| {
                let pinned =
                    |e: &EnvironmentEntry| e.pin.as_ref().is_some_and(|p| p.release == name);
                owner.as_deref() == app.metadata.name.as_deref()
                    || app.spec.environments.iter().any(pinned)
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
    if app.metadata.deletion_timestamp.is_some() {
        // Its workloads in other namespaces go with it (owner references cannot reach them).
        delivery::finalize(&context, app, &namespace).await?;
        return Ok(Action::await_change());
    }

    let environments = environment_facts(&context, &namespace, app).await?;
    // The namespace each Environment deploys into, as checked just now: delivery applies
    // there only. An Environment whose target changed since is left for the next pass (its
    // change wakes this Application), so a switch between the check and the apply is never
    // applied to unchecked.
    let checked: BTreeMap<String, String> = environments
        .iter()
        .map(|(name, facts)| {
            let target = facts.target.as_ref().map(|t| t.namespace.clone());
            (name.clone(), target.unwrap_or_else(|| namespace.clone()))
        })
        .collect();
    let releases = release_owners(&context, &namespace).await;
    let secrets = secrets::access(&context, &namespace, &app.secret_refs()).await?;
    let looked = look_up_source(&context, &namespace, app, &secrets).await?;
    let builds = build_names(&context, &namespace, app).await;
    let mine = releases_of(&context, &namespace, &app.name_any()).await;
    let released: BTreeSet<String> = mine.iter().map(|r| r.spec.commit.clone()).collect();
    let unconfigured: BTreeSet<String> = mine
        .iter()
        .filter(|r| r.fixed_run().is_none())
        .map(|r| r.name_any())
        .collect();
    let outside_repository: BTreeSet<String> = mine
        .iter()
        .filter(|r| outside_repository(&r.spec, &app.spec.image.repository))
        .map(|r| r.name_any())
        .collect();
    let invalid_run = invalid_run(&context, &namespace, app).await;
    let decision = decide::status(
        &Observed {
            app,
            namespace: &namespace,
            environments: &environments,
            secrets: &secrets,
            releases: &releases,
            source: looked.as_ref().map(|l| &l.head),
            builds: &builds,
            released: &released,
            newest: newest(&mine),
            unconfigured: &unconfigured,
            outside_repository: &outside_repository,
            invalid_run,
        },
        &context.clock.now(),
    );
    let mut status = decision.status.clone();
    records::restore(&context, app, &namespace, &mut status).await?;
    let mut delivered = None;
    for action in &decision.actions {
        match action {
            Act::CreateBuildJob { commit } => create_buildjob(&context, app, commit).await?,
            Act::CreateRelease { release, from } => {
                create_release(&context, app, release, from).await?;
            }
            Act::Deliver { order } => {
                if !app.spec.environments.is_empty() {
                    delivery::ensure_finalizer(&context, app).await?;
                }
                let (environments, requeue) = delivery::deliver(
                    &context,
                    app,
                    &namespace,
                    (order, &checked),
                    &mine,
                    &status.environments,
                )
                .await?;
                status = decide::with_environments(status, &app.name_any(), environments);
                delivered = requeue;
            }
        }
    }
    let recorded = records::write(&context, app, &namespace, &mut status).await;
    let written = status::write(&context, app, app.status.as_ref(), &status).await?;
    records::settle(&context, app, &namespace, (&status, &written, recorded)).await;

    succeeded(&context, app);
    let poll = looked.map(|l| l.next_look);
    Ok(next_action(
        written,
        [decision.requeue_after, poll, delivered]
            .into_iter()
            .flatten()
            .min(),
    ))
}

/// The first listed environment whose workload cannot be made from the spec
/// (`decide::run_spec::check`), with the message naming the field.
async fn invalid_run(
    context: &Context,
    namespace: &str,
    app: &Application,
) -> Option<(String, String)> {
    for entry in &app.spec.environments {
        let Some(environment) = context
            .caches
            .environments
            .get(namespace, &entry.name)
            .await
        else {
            continue;
        };
        let Ok(environment) = &environment.0 else {
            continue;
        };
        let target = environment.target_namespace().unwrap_or(namespace);
        let w = Workload::of(app, entry, environment, target);
        if let Err(message) = run_spec::check(
            &w,
            &environment.spec.health,
            environment.spec.verification.as_ref(),
        ) {
            return Some((entry.name.clone(), message));
        }
    }
    None
}

/// The head of the Application's branch, shared with every Application on the same
/// repository, branch and credentials (`sources.rs`); not looked up while the credentials
/// would go unencrypted or their Secret cannot be used (`decide::secrets::source_blocker`,
/// whose blocker the decision names). A reconcile waits for a look-up only so long
/// (`sources::LOOK_UP_WAIT`); a first one that takes longer leaves the branch as the stored
/// status said it, and the look-up's end reconciles the Application again.
async fn look_up_source(
    context: &Context,
    namespace: &str,
    app: &Application,
    secrets: &SecretAccess,
) -> Result<Option<Looked>, Error> {
    let source = &app.spec.source;
    let repository = &source.repository;
    if source_blocker(repository, secrets, namespace).is_some() {
        return Ok(None);
    }
    let credentials =
        secrets::git_credentials(context, namespace, &repository.credentials_secret).await?;
    let key = SourceKey {
        url: repository.url.clone(),
        branch: source.branch.clone(),
        credentials: repository
            .credentials_secret
            .as_ref()
            .map(|s| format!("{namespace}/{s}")),
        insecure: repository.insecure,
    };
    let looked = context
        .external
        .sources
        .head(
            &key,
            (
                namespace,
                &app.name_any(),
                app.metadata.uid.as_deref().unwrap_or_default(),
            ),
            source.poll_interval.into(),
            context.external.remote.clone(),
            credentials,
            context.metrics.clone(),
        )
        .await;
    // A first look-up still under way: the branch as the stored status last said it.
    Ok(looked.or_else(|| {
        decide::source_as_stored(app).map(|head| Looked {
            head,
            next_look: source.poll_interval.into(),
        })
    }))
}

/// Creates the BuildJob of `commit`; one that exists already (a webhook and a poll raced, or
/// another replica) is fine.
async fn create_buildjob(context: &Context, app: &Application, commit: &str) -> Result<(), Error> {
    let Some(job) = buildjob_for(app, commit) else {
        return Ok(());
    };
    let namespace = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    match context
        .api::<BuildJob>(&namespace)
        .create(&FieldManager::Application.create(), &job)
        .await
    {
        Ok(_) => {
            tracing::info!(buildjob = %name, %commit, "new commit; build created");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(Error::act(format!("creating BuildJob {namespace}/{name}"))(
            error,
        )),
    }
}

/// Creates the Release of a changed run configuration and says so on the Application; one
/// that exists already (made in an earlier pass the cache has not shown yet) is fine.
async fn create_release(
    context: &Context,
    app: &Application,
    release: &Release,
    from: &str,
) -> Result<(), Error> {
    let namespace = release.namespace().ok_or(Error::MissingNamespace)?;
    let name = release.name_any();
    match context
        .api::<Release>(&namespace)
        .create(&FieldManager::Application.create(), release)
        .await
    {
        Ok(_) => {
            tracing::info!(release = %name, "run configuration changed; release created");
            let announcement = Announcement {
                severity: RECONFIGURED.severity,
                reason: RECONFIGURED.name.to_owned(),
                note: format!(
                    "spec.run changed: Release {name} runs the image of {from} with the new run configuration, promoted through the environments like a new commit"
                ),
            };
            publish(context, &app.object_ref(&()), &announcement).await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(Error::act(format!("creating Release {namespace}/{name}"))(
            error,
        )),
    }
}

/// The names of the Application's BuildJobs, from the shared cache.
async fn build_names(context: &Context, namespace: &str, app: &Application) -> BTreeSet<String> {
    let name = app.name_any();
    context
        .caches
        .buildjobs
        .in_namespace(namespace)
        .await
        .into_iter()
        .filter(|j| j.0.as_ref().is_ok_and(|j| j.spec.application == name))
        .map(|j| j.name_any())
        .collect()
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
            conditions::find(&status.common.conditions, READY).cloned()
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
