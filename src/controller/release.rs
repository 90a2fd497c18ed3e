//! Reconciles Releases: a Release is a record, ready once its Application exists.

use std::sync::Arc;

use futures::Stream;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::cache::View;
use super::error::succeeded;
use super::events::readable;
use super::relations::related;
use super::status;
use super::{Context, Error, Guarded, next_action};
use crate::api::{Application, Release};
use crate::decide::release::{self as decide, Observed};

/// Declares what a Release's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<Release>>,
    releases: View<Guarded<Release>>,
    applications: impl Stream<Item = Arc<Guarded<Application>>> + Send + 'static,
) -> Controller<Guarded<Release>> {
    // Its Application appearing or going away changes whether the Release can be deployed.
    let by_application = move |app: Arc<Guarded<Application>>| {
        let name = app.name_any();
        related(&releases, app.namespace().as_deref(), |r: &Release| {
            r.spec.application == name
        })
    };
    controller.watches_shared_stream(applications, by_application)
}

#[instrument(skip(object, context), fields(namespace = object.namespace(), name = %object.name_any()))]
pub(super) async fn reconcile(
    object: Arc<Guarded<Release>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let Some(release) = readable(&object, &context).await else {
        return Ok(Action::await_change());
    };
    let _timer = context.metrics.reconcile_started("Release");
    let namespace = release.namespace().ok_or(Error::MissingNamespace)?;

    let application = context
        .caches
        .applications
        .get(&namespace, &release.spec.application)
        .await;
    let application_exists = application.is_some();
    let readable = application.as_ref().and_then(|a| a.0.as_ref().ok());
    let environments = readable
        .and_then(|a| a.status.as_ref())
        .map(|s| s.environments.clone())
        .unwrap_or_default();
    let decision = decide::status(
        &Observed {
            release,
            namespace: &namespace,
            application_exists,
            application_run: readable.map(|a| &a.spec.run),
            application_repository: readable.map(|a| a.spec.image.repository.as_str()),
            environments: &environments,
        },
        &context.clock.now(),
    );
    let written =
        status::write(&context, release, release.status.as_ref(), &decision.status).await?;

    succeeded(&context, release);
    Ok(next_action(written, decision.requeue_after))
}

/// Whether the Application exists, from the shared cache.
/// The Releases of `application` in `namespace` that Ferry can read, from the shared cache.
pub(super) async fn releases_of(
    context: &Context,
    namespace: &str,
    application: &str,
) -> Vec<Release> {
    context
        .caches
        .releases
        .in_namespace(namespace)
        .await
        .iter()
        .filter_map(|r| r.0.as_ref().ok())
        .filter(|r| r.spec.application == application)
        .cloned()
        .collect()
}

/// The order of releases: by creation, then (for two created within the same second, the
/// precision the API server keeps) by name.
fn age(release: &Release) -> (Option<jiff::Timestamp>, Option<&str>) {
    let created = release.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (created, release.metadata.name.as_deref())
}

/// The newest of `releases`: the last of [`oldest_first`], so `latestRelease` and the release a
/// first stage takes are the same one.
pub(super) fn newest(releases: &[Release]) -> Option<&Release> {
    releases.iter().max_by_key(|r| age(r))
}

/// The names of the releases, oldest first.
pub(super) fn oldest_first(releases: &[Release]) -> Vec<String> {
    let mut ordered: Vec<&Release> = releases.iter().collect();
    ordered.sort_by_key(|r| age(r));
    ordered
        .into_iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

pub(super) async fn application_exists(context: &Context, namespace: &str, name: &str) -> bool {
    context
        .caches
        .applications
        .get(namespace, name)
        .await
        .is_some()
}
