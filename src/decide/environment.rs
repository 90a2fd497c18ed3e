//! Whether an Environment can take releases: its upstream chain resolves without a cycle, its
//! target namespace consents to deployments from the Environment's namespace, and that
//! namespace granted Ferry the right to write Deployments and Services there.
//!
//! Consent is the annotation `ferry.dev/allow-deploy-from` on the target namespace, listing
//! the namespaces (comma-separated) whose Environments may deploy into it. A target namespace
//! that does not exist gets the same answer as one that does not consent, so that a tenant
//! cannot learn from Ferry which namespaces exist.
//!
//! Ferry's own ServiceAccount may write workloads only where a namespace bound the
//! `ferry-deployer` ClusterRole to it (its own namespace included): consent says which
//! namespaces' Environments may deploy here, the binding that Ferry may write here at all.

use std::collections::{BTreeMap, BTreeSet};

use super::{Blocker, Decision, Readiness, readiness, whole_seconds};
use crate::api::CommonStatus;
use crate::api::labels::CONSENT_ANNOTATION;
use crate::api::reasons::{
    DEPLOYMENT_NOT_GRANTED, READY, TARGET_NAMESPACE_NOT_CONSENTING, UPSTREAM_CYCLE,
    UPSTREAM_NOT_FOUND,
};
use crate::api::{EnvironmentSpec, EnvironmentStatus, Time};

/// The target namespace as the controller found it, read live from the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetNamespace {
    Missing,
    Present {
        annotations: BTreeMap<String, String>,
    },
}

/// What the reconciler observed for one Environment.
pub struct Observed<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub generation: Option<i64>,
    pub target_namespace: &'a str,
    pub target: TargetNamespace,
    /// Whether Ferry may write Deployments and Services in the target namespace (asked of the
    /// API server's authorizer); `None` when not asked (the namespace does not consent).
    pub granted: Option<bool>,
    /// Ferry's ServiceAccount as `namespace:name`, for the command that grants it.
    pub service_account: &'a str,
    /// Every Environment in the namespace (this one included): name to upstream.
    pub upstreams: &'a BTreeMap<String, Option<String>>,
    pub current: Option<&'a EnvironmentStatus>,
}

/// The upstream of an Environment of the namespace, `None` for a first stage. An Environment
/// Ferry cannot read (`spec` is `None`) still exists: it counts as a first stage, so that it
/// neither hides a cycle behind it nor makes its downstreams' upstream "missing".
pub fn upstream_of(spec: Option<&EnvironmentSpec>) -> Option<String> {
    spec.and_then(|s| s.upstream.clone())
}

/// The chain of Environments from the first stage down to `name`, or why there is none.
pub fn pipeline(
    name: &str,
    upstreams: &BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, Blocker> {
    let mut chain = vec![name.to_owned()];
    let mut seen = BTreeSet::from([name.to_owned()]);
    let mut here = name.to_owned();
    while let Some(Some(up)) = upstreams.get(&here) {
        if !upstreams.contains_key(up) {
            return Err(Blocker::new(
                UPSTREAM_NOT_FOUND,
                format!(
                    "upstream Environment \"{up}\" of \"{here}\" does not exist in this namespace; create it or correct spec.upstream"
                ),
            ));
        }
        if !seen.insert(up.clone()) {
            chain.push(up.clone());
            chain.reverse();
            return Err(Blocker::new(
                UPSTREAM_CYCLE,
                format!(
                    "upstreams form a cycle ({}); a release could never enter it: make one of them the first stage by removing its spec.upstream",
                    chain.join(" -> ")
                ),
            ));
        }
        chain.push(up.clone());
        here = up.clone();
    }
    chain.reverse();
    Ok(chain)
}

/// Whether `target` lets Environments of `source_namespace` deploy into it: the annotation
/// `ferry.dev/allow-deploy-from` lists it (comma-separated). An Environment deploying into its
/// own namespace needs no consent. Labels do not count: a label value cannot hold a list, and
/// one way to consent is easier to audit.
pub fn consents(target: &TargetNamespace, target_name: &str, source_namespace: &str) -> bool {
    if target_name == source_namespace {
        return true;
    }
    match target {
        TargetNamespace::Missing => false,
        TargetNamespace::Present { annotations } => annotations
            .get(CONSENT_ANNOTATION)
            .is_some_and(|v| v.split(',').any(|n| n.trim() == source_namespace)),
    }
}

/// Why Environments of `source_namespace` may not deploy into `target_name`, with the command
/// that grants consent. Worded the same whether or not the namespace exists.
pub fn not_consenting(target_name: &str, source_namespace: &str) -> Blocker {
    Blocker::new(
        TARGET_NAMESPACE_NOT_CONSENTING,
        format!(
            "namespace \"{target_name}\" does not exist or does not allow deployments from namespace \"{source_namespace}\"; its administrator grants them with: kubectl annotate namespace {target_name} {CONSENT_ANNOTATION}={source_namespace}"
        ),
    )
}

/// How long an Environment whose target namespace has not granted Ferry waits before it asks
/// again: RoleBindings are not watched.
pub const GRANT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Why Ferry may not deploy into `target_name`, with the one command that grants it.
pub fn not_granted(target_name: &str, service_account: &str) -> Blocker {
    Blocker::new(
        DEPLOYMENT_NOT_GRANTED,
        format!(
            "Ferry may not write Deployments and Services in namespace \"{target_name}\"; its administrator grants it with: {}",
            super::grant_command(target_name, service_account, "deployer")
        ),
    )
}

/// The Environment's new status.
pub fn status(observed: &Observed, now: &Time) -> Decision<EnvironmentStatus> {
    let chain = pipeline(observed.name, observed.upstreams);
    let state = match &chain {
        Err(blocker) => Readiness::Blocked(blocker.clone()),
        Ok(_)
            if !consents(
                &observed.target,
                observed.target_namespace,
                observed.namespace,
            ) =>
        {
            Readiness::Blocked(not_consenting(
                observed.target_namespace,
                observed.namespace,
            ))
        }
        Ok(_) if observed.granted != Some(true) => Readiness::Blocked(not_granted(
            observed.target_namespace,
            observed.service_account,
        )),
        Ok(chain) => Readiness::Ready {
            reason: READY,
            message: format!(
                "deploys into namespace \"{}\"; pipeline {}",
                observed.target_namespace,
                chain.join(" -> ")
            ),
        },
    };
    let existing = observed
        .current
        .map(|s| s.common.conditions.as_slice())
        .unwrap_or_default();
    let waits_for_grant =
        matches!(&state, Readiness::Blocked(b) if b.reason == DEPLOYMENT_NOT_GRANTED);
    let mut decision = Decision::status(EnvironmentStatus {
        common: CommonStatus::decided(
            existing,
            &readiness(&state),
            observed.generation,
            &whole_seconds(now),
        ),
        target_namespace: Some(observed.target_namespace.to_owned()),
        pipeline: chain.unwrap_or_default(),
    });
    if waits_for_grant {
        decision.requeue_after = Some(GRANT_RECHECK);
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STALLED, find, is_true};

    fn upstreams(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(n, u)| (n.to_string(), u.map(str::to_owned)))
            .collect()
    }

    fn present(annotations: &[(&str, &str)]) -> TargetNamespace {
        TargetNamespace::Present {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The Environment prod at its first generation, deploying into its own namespace
    /// team-a, with no status yet.
    fn prod(upstreams: &BTreeMap<String, Option<String>>) -> Observed<'_> {
        Observed {
            name: "prod",
            namespace: "team-a",
            generation: Some(1),
            target_namespace: "team-a",
            target: present(&[]),
            granted: Some(true),
            service_account: "ferry-system:ferry",
            upstreams,
            current: None,
        }
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn the_pipeline_runs_from_the_first_stage_down() {
        let ups = upstreams(&[
            ("dev", None),
            ("staging", Some("dev")),
            ("prod", Some("staging")),
        ]);
        assert_eq!(pipeline("prod", &ups).unwrap(), ["dev", "staging", "prod"]);
        assert_eq!(pipeline("dev", &ups).unwrap(), ["dev"]);
    }

    #[test]
    fn a_missing_upstream_blocks() {
        let ups = upstreams(&[("prod", Some("staging"))]);
        let blocker = pipeline("prod", &ups).unwrap_err();
        assert_eq!(blocker.reason, UPSTREAM_NOT_FOUND);
        assert!(blocker.message.contains("\"staging\""));
    }

    #[test]
    fn a_cycle_blocks_and_names_its_members() {
        let ups = upstreams(&[("a", Some("c")), ("b", Some("a")), ("c", Some("b"))]);
        let blocker = pipeline("a", &ups).unwrap_err();
        assert_eq!(blocker.reason, UPSTREAM_CYCLE);
        assert!(
            blocker.message.contains("a -> b -> c -> a"),
            "{}",
            blocker.message
        );
    }

    #[test]
    fn consent_is_needed_only_for_another_namespace() {
        let none = present(&[]);
        assert!(consents(&none, "team-a", "team-a"));
        assert!(!consents(&none, "prod", "team-a"));
        assert!(consents(
            &present(&[(CONSENT_ANNOTATION, "team-b, team-a")]),
            "prod",
            "team-a"
        ));
        assert!(!consents(
            &present(&[(CONSENT_ANNOTATION, "team-ab")]),
            "prod",
            "team-a"
        ));
        assert!(!consents(&TargetNamespace::Missing, "prod", "team-a"));
    }

    #[test]
    fn a_missing_target_reads_like_one_that_does_not_consent() {
        let ups = upstreams(&[("prod", None)]);
        let message = |target| {
            let observed = Observed {
                target_namespace: "elsewhere",
                target,
                ..prod(&ups)
            };
            let status = status(&observed, &now()).status;
            let stalled = find(&status.common.conditions, STALLED).unwrap().clone();
            (stalled.reason, stalled.message)
        };
        assert_eq!(message(TargetNamespace::Missing), message(present(&[])));
    }

    #[test]
    fn an_unreadable_environment_counts_as_a_first_stage() {
        let spec = |upstream: Option<&str>| EnvironmentSpec {
            upstream: upstream.map(str::to_owned),
            ..serde_yaml::from_str("{}").unwrap()
        };
        let cases = [
            ("unreadable", None, None),
            ("a first stage", Some(spec(None)), None),
            ("with an upstream", Some(spec(Some("dev"))), Some("dev")),
        ];
        for (name, spec, want) in cases {
            assert_eq!(upstream_of(spec.as_ref()).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_non_consenting_target_stalls_the_environment_with_the_fix() {
        let ups = upstreams(&[("prod", None)]);
        let observed = Observed {
            generation: Some(3),
            target_namespace: "team-a-prod",
            ..prod(&ups)
        };
        let status = status(&observed, &now()).status;
        let stalled = find(&status.common.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, "TargetNamespaceNotConsenting");
        assert!(
            stalled
                .message
                .contains("kubectl annotate namespace team-a-prod")
        );
        assert!(!is_true(&status.common.conditions, READY));
        assert_eq!(status.common.observed_generation, Some(3));
    }

    #[test]
    fn a_resolved_environment_is_ready_and_shows_its_pipeline() {
        let ups = upstreams(&[("dev", None), ("prod", Some("dev"))]);
        let status = status(&prod(&ups), &now()).status;
        assert!(is_true(&status.common.conditions, READY));
        assert!(find(&status.common.conditions, STALLED).is_none());
        assert_eq!(status.pipeline, ["dev", "prod"]);
    }

    #[test]
    fn a_target_that_did_not_grant_ferry_stalls_the_environment_with_the_command() {
        let ups = upstreams(&[("dev", None), ("prod", Some("dev"))]);
        for granted in [Some(false), None] {
            let decision = status(
                &Observed {
                    granted,
                    service_account: "ferry-system:shop-ferry",
                    ..prod(&ups)
                },
                &now(),
            );
            let stalled = find(&decision.status.common.conditions, STALLED).unwrap();
            assert_eq!(stalled.reason, "DeploymentNotGranted");
            assert!(
                stalled.message.contains(
                    "kubectl -n team-a create rolebinding shop-ferry-deployer --clusterrole=shop-ferry-deployer --serviceaccount=ferry-system:shop-ferry"
                ),
                "{}",
                stalled.message
            );
            assert!(!is_true(&decision.status.common.conditions, READY));
            assert_eq!(decision.requeue_after, Some(GRANT_RECHECK), "asked again");
        }
        // Consent comes first: a namespace that does not consent says so, whatever the grant.
        let observed = Observed {
            target_namespace: "team-a-prod",
            granted: None,
            ..prod(&ups)
        };
        let stalled = status(&observed, &now()).status;
        let stalled = find(&stalled.common.conditions, STALLED).unwrap().clone();
        assert_eq!(stalled.reason, "TargetNamespaceNotConsenting");
    }
}
