//! Reconciles BuildJobs: runs the build pod, follows its steps, verifies the pushed image in
//! the registry itself, makes the Release, and prunes old builds.
//!
//! What happens is decided by `decide::buildjob`; this file observes (the build pod from its
//! cache, the registry, the tags on the commit) and acts (creates the pod or the Release,
//! deletes pruned BuildJobs). Every object it creates has a deterministic name, so a second
//! create after a restart, or by a second replica, is refused by the API server instead of
//! made twice: one pod per BuildJob, one Release per commit.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::cache::View;
use super::error::succeeded;
use super::events::readable;
use super::relations::related;
use super::release::{application_exists, newest, releases_of};
use super::secrets;
use super::status::{self, Written};
use super::{Context, Error, Guarded, delete_in_background, next_action};
use crate::adapters::git::Remote;
use crate::adapters::registry::{self, Credentials as RegistryCredentials};
use crate::api::buildjob::BuildPhase;
use crate::api::labels::{BUILDJOB_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use crate::api::managers::FieldManager;
use crate::api::reasons::{BUILD_FAILED, Reason};
use crate::api::{Application, BuildJob, BuildJobStatus, Release, Time};
use crate::build::fetch::Report;
use crate::decide::Decision;
use crate::decide::build::objects::{Finished, release_for, to_prune};
use crate::decide::build::progress::{PodFacts, StepState, Verification};
use crate::decide::buildjob::{self as decide, Action as Act, Observed};
use crate::decide::ownership::pod_not_ours;
use crate::desired::build_pod::build_pod;

/// Declares what a BuildJob's state depends on besides itself.
pub(super) fn relate(
    controller: Controller<Guarded<BuildJob>>,
    jobs: View<Guarded<BuildJob>>,
    applications: impl Stream<Item = Arc<Guarded<Application>>> + Send + 'static,
    pods: impl Stream<Item = Arc<Pod>> + Send + 'static,
) -> Controller<Guarded<BuildJob>> {
    // A build waits for its Application.
    let by_application = move |app: Arc<Guarded<Application>>| {
        let name = app.name_any();
        related(&jobs, app.namespace().as_deref(), |j: &BuildJob| {
            j.spec.application == name
        })
    };
    controller
        .watches_shared_stream(applications, by_application)
        // Every change of a build pod (a step starting or ending) is a change of its build.
        .owns_shared_stream(pods)
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

    let application = context
        .caches
        .applications
        .get(&namespace, &job.spec.application)
        .await;
    let application_exists = application_exists(&context, &namespace, &job.spec.application).await;
    let secrets = secrets::access(&context, &namespace, &job.secret_refs()).await?;
    let pod = context
        .caches
        .build_pods
        .get(&namespace, &job.name_any())
        .await;
    // A pod under the build pod's name counts only if it is the one Ferry made for this
    // BuildJob (its UID as controller, Ferry's labels): anyone who may create pods here could
    // have made one first, with a fake publish step.
    let foreign = pod
        .as_deref()
        .and_then(|p| build_pod_not_ours(&p.metadata, job));
    let facts = pod
        .as_deref()
        .filter(|_| foreign.is_none())
        .map(PodFacts::of);
    let releases = releases_of(&context, &namespace, &job.spec.application).await;
    // Whatever its name, one commit gets one Release.
    let release = releases
        .iter()
        .find(|r| r.spec.commit == job.spec.commit)
        .map(|r| r.name_any());
    // Why the name is taken, if creating the pod finds it taken by a pod that is not Ferry's.
    let taken;
    let mut observed = Observed {
        job,
        namespace: &namespace,
        application_exists,
        application: application.as_deref().and_then(|a| a.0.as_ref().ok()),
        secrets: &secrets,
        pod: facts.as_ref(),
        foreign_pod: foreign.as_deref(),
        verification: None,
        release: release.as_deref(),
    };
    let now = context.clock.now();
    let mut decision = decide::status(&observed, &now);
    // The pod is created before the other actions: a name taken by a pod that is not Ferry's
    // (not in the cache, which holds only pods with Ferry's labels) fails the build now.
    // A pod that cannot be created is retried with backoff, after the status is written.
    let mut created = Ok(());
    if decision.actions.contains(&Act::CreatePod) {
        taken = match create_pod(&context, &namespace, job, &releases).await {
            Ok(taken) => taken,
            Err(error) => {
                created = Err(error);
                None
            }
        };
        if let Some(why) = &taken {
            tracing::warn!(%why, "the build pod's name is taken by a pod that is not Ferry's");
            observed.foreign_pod = Some(why);
            decision = decide::status(&observed, &now);
        }
    }
    // The pod said it pushed an image: ask the registry, then decide with its answer.
    let asked = decision.actions.iter().find_map(|a| match a {
        Act::Verify { image } => Some(image.clone()),
        _ => None,
    });
    let verification;
    if let Some(image) = asked {
        verification = verify(&context, &namespace, job, &image).await?;
        observed.verification = Some(&verification);
        decision = decide::status(&observed, &now);
    }

    // The status is written even when an action failed, so that what Ferry knows shows; the
    // failure is then retried with backoff.
    let acted = act(
        &context,
        job,
        &mut decision,
        application.as_deref(),
        facts.as_ref(),
    )
    .await;
    let before = job.status.as_ref().and_then(|s| s.phase);
    let written = status::write(&context, job, job.status.as_ref(), &decision.status).await?;
    created?;
    acted?;
    if finished(decision.status.phase.as_ref()) {
        if !finished(before.as_ref()) && written == Written::Stored {
            count_finished(&context, &decision.status);
        }
        // On every reconcile of a finished build, not only when it finishes: two builds
        // finishing together may each find the other still running in the cache, and the
        // status write each makes brings it back here once the cache has caught up.
        if let Some(app) = application.as_deref().and_then(|a| a.0.as_ref().ok()) {
            prune(&context, &namespace, app, job, &decision.status).await?;
        }
    }

    succeeded(&context, job);
    Ok(next_action(written, decision.requeue_after))
}

/// Carries out the decision's actions; a Release made is recorded in its status.
async fn act(
    context: &Context,
    job: &BuildJob,
    decision: &mut Decision<BuildJobStatus, Act>,
    application: Option<&Guarded<Application>>,
    pod: Option<&PodFacts>,
) -> Result<(), Error> {
    for action in decision.actions.clone() {
        match action {
            // Created by `reconcile` before the other actions.
            Act::CreatePod => {}
            Act::CreateRelease { image } => {
                // Without its Application a build makes no Release (it would be orphaned);
                // deleting the Application deletes its BuildJobs anyway.
                if let Some(app) = application.and_then(|a| a.0.as_ref().ok()) {
                    let name = create_release(context, app, job, &image, pod).await?;
                    decision.status.release = Some(name);
                }
            }
            Act::Verify { .. } => {}
        }
    }
    Ok(())
}

fn finished(phase: Option<&BuildPhase>) -> bool {
    matches!(phase, Some(BuildPhase::Succeeded | BuildPhase::Failed))
}

/// `ferry_builds_total{outcome}` and the build's duration.
fn count_finished(context: &Context, status: &BuildJobStatus) {
    let outcome = match (&status.phase, &status.failure) {
        (Some(BuildPhase::Succeeded), _) => "Succeeded",
        (_, Some(failure)) => Reason::named(&failure.reason).map_or(BUILD_FAILED.name, |r| r.name),
        _ => BUILD_FAILED.name,
    };
    let seconds = match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) => Some(end.0.duration_since(start.0).as_secs_f64()),
        _ => None,
    };
    context.metrics.build_finished(outcome, seconds);
}

/// Why `pod` is not the build pod Ferry made for `job`, if it is not (`decide::ownership`).
fn build_pod_not_ours(pod: &ObjectMeta, job: &BuildJob) -> Option<String> {
    let name = job.name_any();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    pod_not_ours(
        pod,
        uid,
        &[
            (MANAGED_BY_LABEL, MANAGED_BY),
            (BUILDJOB_LABEL, name.as_str()),
        ],
    )
}

/// Creates the build pod; the newest of the Application's `releases` bounds the history the
/// fetch step reads for work items. Returns why the pod under its name is not Ferry's, when
/// one exists already and is not.
async fn create_pod(
    context: &Context,
    namespace: &str,
    job: &BuildJob,
    releases: &[Release],
) -> Result<Option<String>, Error> {
    let since = newest(releases)
        .map(|r| r.spec.commit.clone())
        .filter(|commit| *commit != job.spec.commit);
    let Some(pod) = build_pod(job, &context.config.build, since.as_deref()) else {
        return Ok(None);
    };
    let name = job.name_any();
    let api = context.api::<Pod>(namespace);
    match api.create(&FieldManager::BuildJob.create(), &pod).await {
        Ok(_) => {
            tracing::info!("build pod created");
            Ok(None)
        }
        // A pod of that name exists: Ferry's own (made by this replica before a restart, or by
        // another; the watch brings it), or someone else's, which is never trusted.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api
                .get_opt(&name)
                .await
                .map_err(Error::observe(format!("the pod {namespace}/{name}")))?;
            Ok(existing.and_then(|p| build_pod_not_ours(&p.metadata, job)))
        }
        Err(error) => Err(Error::act(format!("creating build pod {namespace}/{name}"))(error)),
    }
}

/// Asks the registry, with the push Secret's credentials, whether the image the publish step
/// reported exists. A registry that cannot be asked is asked again later.
async fn verify(
    context: &Context,
    namespace: &str,
    job: &BuildJob,
    image: &str,
) -> Result<Verification, Error> {
    let repository = &job.spec.image.repository;
    let Some(digest) = image.rsplit_once('@').map(|(_, d)| d.to_owned()) else {
        return Ok(Verification::Missing);
    };
    let credentials = match &job.spec.image.push_secret {
        None => RegistryCredentials::anonymous(),
        Some(secret) => {
            let host = registry::parse_reference(repository)
                .map(|r| r.resolve_registry().to_owned())
                .unwrap_or_default();
            match secrets::registry_credentials(context, namespace, secret, &host).await? {
                Ok(credentials) => credentials,
                Err(why) => return Ok(Verification::Unavailable(why)),
            }
        }
    };
    let answer =
        registry::manifest_exists(repository, &digest, &credentials, job.spec.image.insecure).await;
    Ok(match answer {
        Ok(true) => Verification::Found,
        Ok(false) => Verification::Missing,
        Err(error) => Verification::Unavailable(error.to_string()),
    })
}

/// Makes the Release of a verified build and returns its name: the version from the tags on
/// the commit (asked of the git server now, so a tag pushed with the commit counts), the work
/// items from the fetch step's report.
async fn create_release(
    context: &Context,
    app: &Application,
    job: &BuildJob,
    image: &str,
    pod: Option<&PodFacts>,
) -> Result<String, Error> {
    let namespace = job.namespace().ok_or(Error::MissingNamespace)?;
    let credentials =
        secrets::git_credentials(context, &namespace, &job.spec.source.credentials_secret).await?;
    let source = Remote {
        url: &job.spec.source.url,
        credentials: credentials.as_ref(),
        insecure: job.spec.source.insecure,
    };
    let tags = context
        .external
        .remote
        .tags_at(source, &job.spec.commit)
        .await
        .map_err(Error::Tags)?;
    let work_items = pod
        .and_then(fetch_report)
        .map(|r| r.work_items)
        .unwrap_or_default();
    let Some(release) = release_for(app, job, image, &tags, work_items) else {
        return Err(Error::MissingNamespace);
    };
    let name = release.name_any();
    let api = context.api::<Release>(&namespace);
    match api.create(&FieldManager::BuildJob.create(), &release).await {
        Ok(_) => {
            tracing::info!(release = %name, "release created");
            let seen = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if let Some(seen) = seen {
                let now: Time = context.clock.now();
                context
                    .metrics
                    .release_created(now.0.duration_since(seen).as_secs_f64());
            }
            Ok(name)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Made already: by this build before a restart, or of the same commit otherwise.
            let existing = context.caches.releases.get(&namespace, &name).await;
            let same_commit = existing
                .as_deref()
                .and_then(|r| r.0.as_ref().ok())
                .is_some_and(|r| r.spec.commit == job.spec.commit);
            if same_commit {
                Ok(name)
            } else {
                Err(Error::act(format!(
                    "creating Release {namespace}/{name}: a Release of that name exists (of \
                     another commit, or not cached yet)"
                ))(kube::Error::Api(status)))
            }
        }
        Err(error) => Err(Error::act(format!("creating Release {namespace}/{name}"))(
            error,
        )),
    }
}

/// What the fetch step reported in its termination message.
fn fetch_report(pod: &PodFacts) -> Option<Report> {
    pod.steps.iter().find_map(|(name, state)| match state {
        StepState::Terminated {
            exit_code: 0,
            message: Some(message),
            ..
        } if name == "fetch" => serde_json::from_str(message.trim()).ok(),
        _ => None,
    })
}

/// Deletes the oldest finished BuildJobs of `app` beyond its `buildHistoryLimit`, with their
/// pods (owned by them). Releases are never deleted here.
///
/// `current` is the BuildJob being reconciled, with the status just decided (the cache may
/// not hold it yet).
async fn prune(
    context: &Context,
    namespace: &str,
    app: &Application,
    current: &BuildJob,
    status: &BuildJobStatus,
) -> Result<(), Error> {
    let name = app.name_any();
    let current_name = current.name_any();
    let finished_at = |job: &BuildJob, status: &BuildJobStatus| Finished {
        name: job.name_any(),
        at: status
            .completion_time
            .clone()
            .or_else(|| job.meta().creation_timestamp.clone())
            .unwrap_or(Time(jiff::Timestamp::UNIX_EPOCH)),
    };
    let mut finished_jobs: Vec<Finished> = context
        .caches
        .buildjobs
        .in_namespace(namespace)
        .await
        .into_iter()
        .filter_map(|j| {
            let job = j.0.as_ref().ok()?;
            let status = job.status.as_ref()?;
            let mine = job.spec.application == name && job.name_any() != current_name;
            (mine && finished(status.phase.as_ref())).then(|| finished_at(job, status))
        })
        .collect();
    finished_jobs.push(finished_at(current, status));
    let limit = usize::try_from(app.spec.build_history_limit).unwrap_or(1);
    let api = context.api::<BuildJob>(namespace);
    for pruned in to_prune(finished_jobs, limit) {
        if delete_in_background(&api, namespace, &pruned).await? {
            tracing::info!(buildjob = %pruned, "pruned a finished build");
        }
    }
    Ok(())
}
