//! A Release is a record; it is ready once it belongs to an Application that exists.

use super::build::naming::short_commit;
use super::{Blocker, Decision, Readiness, readiness, whole_seconds};
use crate::api::conditions;
use crate::api::reasons::{APPLICATION_NOT_FOUND, RECORDED};
use crate::api::release::ReleaseState;
use crate::api::{Release, ReleaseStatus, Time};

/// What the reconciler observed for one Release.
pub struct Observed<'a> {
    pub release: &'a Release,
    pub namespace: &'a str,
    pub application_exists: bool,
}

/// The Release's new status.
pub fn status(observed: &Observed, now: &Time) -> Decision<ReleaseStatus> {
    let release = observed.release;
    let spec = &release.spec;
    let generation = release.metadata.generation;
    let current = release.status.clone().unwrap_or_default();
    let state = if observed.application_exists {
        Readiness::Ready {
            reason: RECORDED,
            message: format!(
                "version {} of {} at commit {}",
                spec.version,
                spec.application,
                short_commit(&spec.commit)
            ),
        }
    } else {
        Readiness::Blocked(Blocker::new(
            APPLICATION_NOT_FOUND,
            format!(
                "Application \"{}\" does not exist in namespace \"{}\"; this release cannot be deployed until it does",
                spec.application, observed.namespace
            ),
        ))
    };
    let deployed: Vec<&str> = current
        .environments
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                ReleaseState::Deployed | ReleaseState::Promoted | ReleaseState::Deploying
            )
        })
        .map(|e| e.name.as_str())
        .collect();
    Decision::status(ReleaseStatus {
        observed_generation: generation,
        conditions: conditions::merge(
            &current.conditions,
            &readiness(&state),
            generation,
            &whole_seconds(now),
        ),
        summary: (!deployed.is_empty()).then(|| deployed.join(",")),
        ..current
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STALLED, find, is_true};

    fn release() -> Release {
        serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {name: shop-1.4.2, namespace: team-a, generation: 1}
spec:
  application: shop
  version: 1.4.2
  commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
  image: registry.local/team-a/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000
"#,
        )
        .unwrap()
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn a_release_of_an_existing_application_is_recorded() {
        let release = release();
        let status = status(
            &Observed {
                release: &release,
                namespace: "team-a",
                application_exists: true,
            },
            &now(),
        )
        .status;
        let ready = find(&status.conditions, READY).unwrap();
        assert_eq!(ready.reason, "Recorded");
        assert!(ready.message.contains("9fceb02"));
    }

    #[test]
    fn a_release_without_its_application_is_stalled() {
        let release = release();
        let status = status(
            &Observed {
                release: &release,
                namespace: "team-a",
                application_exists: false,
            },
            &now(),
        )
        .status;
        assert!(!is_true(&status.conditions, READY));
        assert_eq!(
            find(&status.conditions, STALLED).unwrap().reason,
            "ApplicationNotFound"
        );
    }
}
