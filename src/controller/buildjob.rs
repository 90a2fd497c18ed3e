//! Reconciles BuildJobs: checks that a build can start (its Application and Secrets exist)
//! and keeps the outcome of a finished build.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use tracing::instrument;

use super::application::secret_keys;
use super::release::application_exists;
use super::{Context, Error, Guarded, readable, related, secret_metadata, succeeded, write_status};
use crate::api::{Application, BuildJob, Secret};
use crate::decide::buildjob::{self as decide, Observed};

const RESYNC: Duration = Duration::from_secs(300);

/// Declares what a BuildJob's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<BuildJob>>,
    context: &Arc<Context>,
    applications: impl Stream<Item = Arc<Guarded<Application>>> + Send + 'static,
    config: watcher::Config,
) -> Controller<Guarded<BuildJob>> {
    // A build waits for its Application...
    let jobs = controller.store();
    let by_application = move |app: Arc<Guarded<Application>>| {
        let name = app.name_any();
        related(&jobs, app.namespace().as_deref(), |j: &BuildJob| {
            j.spec.application == name
        })
    };
    // ...and for the Secrets it names.
    let jobs = controller.store();
    let by_secret = move |secret: PartialObjectMeta<Secret>| {
        let name = secret.name_any();
        related(&jobs, secret.namespace().as_deref(), |j: &BuildJob| {
            j.secret_refs().iter().any(|(_, s)| *s == name)
        })
    };
    controller
        .watches_shared_stream(applications, by_application)
        .watches(secret_metadata(context), config, by_secret)
}

#[instrument(skip(object, context), fields(namespace = object.namespace(), name = %object.name_any()))]
pub(super) async fn reconcile(
    object: Arc<Guarded<BuildJob>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let Some(job) = readable(&object, &context).await else {
        return Ok(Action::await_change());
    };
    let _timer = context.metrics.reconcile_started("BuildJob");
    let namespace = job.namespace().ok_or(Error::MissingNamespace)?;

    let application_exists = application_exists(&context, &namespace, &job.spec.application).await;
    let secrets = secret_keys(&context, &namespace, &job.secret_refs()).await?;
    let status = decide::status(
        &Observed {
            job,
            namespace: &namespace,
            application_exists,
            secrets: &secrets,
        },
        &context.clock.now(),
    );
    write_status(&context, job, job.status.as_ref(), &status, |s| {
        &s.conditions
    })
    .await?;

    succeeded(&context, job);
    Ok(Action::requeue(RESYNC))
}
