//! Reconciles BuildJobs: checks that a build can start (its Application and Secrets exist)
//! and keeps the outcome of a finished build.

use std::sync::Arc;

use futures::Stream;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::application::secret_access;
use super::error::succeeded;
use super::relations::related;
use super::release::application_exists;
use super::status::{self, readable};
use super::{Context, Error, Guarded, next_action};
use crate::api::{Application, BuildJob};
use crate::decide::buildjob::{self as decide, Observed};

/// Declares what a BuildJob's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<BuildJob>>,
    applications: impl Stream<Item = Arc<Guarded<Application>>> + Send + 'static,
) -> Controller<Guarded<BuildJob>> {
    // A build waits for its Application.
    let jobs = controller.store();
    let by_application = move |app: Arc<Guarded<Application>>| {
        let name = app.name_any();
        related(&jobs, app.namespace().as_deref(), |j: &BuildJob| {
            j.spec.application == name
        })
    };
    controller.watches_shared_stream(applications, by_application)
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
    let secrets = secret_access(&context, &namespace, &job.secret_refs()).await?;
    let decision = decide::status(
        &Observed {
            job,
            namespace: &namespace,
            application_exists,
            secrets: &secrets,
            // Build pods are not run yet: the fetch and publish steps land first.
            pod: None,
            verification: None,
            release: None,
        },
        &context.clock.now(),
    );
    let written = status::write(&context, job, job.status.as_ref(), &decision.status).await?;

    succeeded(&context, job);
    Ok(next_action(written, decision.requeue_after))
}
