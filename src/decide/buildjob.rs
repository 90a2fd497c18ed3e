//! Where a BuildJob stands before and around its build pod.
//!
//! A build can start only when its Application exists and the Secrets it names hold the
//! keys they need. A finished build (Succeeded or Failed) keeps its outcome.

use super::secrets::{self, SecretAccess};
use super::{Blocker, Decision, Readiness, readiness, whole_seconds};
use crate::api::buildjob::BuildPhase;
use crate::api::conditions::{self, Desired, READY, SUCCEEDED};
use crate::api::reasons::{APPLICATION_NOT_FOUND, BUILD_FAILED, BUILD_PENDING, BUILD_SUCCEEDED};
use crate::api::{BuildJob, BuildJobStatus, Time};

/// What the reconciler observed for one BuildJob.
pub struct Observed<'a> {
    pub job: &'a BuildJob,
    pub namespace: &'a str,
    pub application_exists: bool,
    pub secrets: &'a SecretAccess,
}

/// The BuildJob's new status.
pub fn status(observed: &Observed, now: &Time) -> Decision<BuildJobStatus> {
    let job = observed.job;
    let generation = job.metadata.generation;
    let current = job.status.clone().unwrap_or_default();
    let mut recheck = None;
    let wanted = match current.phase {
        Some(BuildPhase::Succeeded) => {
            let image = current.image.clone().unwrap_or_default();
            finished(true, BUILD_SUCCEEDED.name, &format!("built {image}"))
        }
        Some(BuildPhase::Failed) => match &current.failure {
            Some(failure) => finished(false, &failure.reason, &failure.message),
            None => finished(false, BUILD_FAILED.name, "the build failed"),
        },
        Some(BuildPhase::Pending | BuildPhase::Running) | None => {
            let state = match blocker(observed) {
                Some(blocker) => {
                    if secrets::is_about_secrets(&blocker) {
                        recheck = Some(secrets::RECHECK);
                    }
                    Readiness::Blocked(blocker)
                }
                None => Readiness::InProgress {
                    reason: BUILD_PENDING,
                    message: "waiting for a build pod".to_owned(),
                },
            };
            let mut wanted = readiness(&state);
            wanted.push(Desired::new(
                SUCCEEDED,
                false,
                BUILD_PENDING.name,
                "the build has not finished",
            ));
            wanted
        }
    };
    let status = BuildJobStatus {
        observed_generation: generation,
        conditions: conditions::merge(
            &current.conditions,
            &wanted,
            generation,
            &whole_seconds(now),
        ),
        phase: current.phase.or(Some(BuildPhase::Pending)),
        ..current
    };
    Decision::status(status).requeue_after(recheck)
}

/// The conditions of a finished build: `Succeeded` says how it ended, `Ready` follows it.
fn finished(succeeded: bool, reason: &str, message: &str) -> Vec<Desired> {
    vec![
        Desired::new(READY, succeeded, reason, message),
        Desired::new(SUCCEEDED, succeeded, reason, message),
    ]
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
    secrets::check(
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

    fn job() -> BuildJob {
        serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: BuildJob
metadata: {name: shop-9fceb02, namespace: team-a, generation: 1}
spec:
  application: shop
  commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
  source: {url: "http://git.local/shop.git"}
  build: {builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}
  image: {repository: registry.local/team-a/shop, pushSecret: reg}
"#,
        )
        .unwrap()
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn a_build_with_a_missing_push_secret_is_stalled_not_failed() {
        let job = job();
        let status = status(
            &Observed {
                job: &job,
                namespace: "team-a",
                application_exists: true,
                secrets: &SecretAccess::Read(Default::default()),
            },
            &now(),
        )
        .status;
        assert_eq!(
            find(&status.conditions, STALLED).unwrap().reason,
            "SecretNotFound"
        );
        assert_eq!(status.phase, Some(BuildPhase::Pending));
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
        let status = status(
            &Observed {
                job: &job,
                namespace: "team-a",
                application_exists: true,
                secrets: &SecretAccess::Read(Default::default()),
            },
            &now(),
        )
        .status;
        assert!(!is_true(&status.conditions, READY));
        assert_eq!(
            find(&status.conditions, SUCCEEDED).unwrap().reason,
            "ScriptFailed"
        );
        assert!(find(&status.conditions, STALLED).is_none());
    }
}
