//! What of an Application's objects outlives a pass of the pipeline.
//!
//! - **Workloads** (Deployments and Services): those an environment keeps (`Kept::workloads`,
//!   by namespace and name) and every one of an environment that could not be decided now
//!   (its Environment is missing or unreadable): an environment entry removed, or a namespace
//!   the environment no longer targets, leaves objects that go.
//! - **Test pods**: the newest of each listed environment is kept with its log for a person to
//!   read (a failed one above all); so are those of the verifications under way (just created,
//!   perhaps not observed yet) and those of undecided environments. The rest go.

use std::collections::BTreeSet;

use super::VerificationReport;
use crate::api::Time;

/// What a pass keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// Deployments and Services, by (namespace, name), whatever their kind.
    pub workloads: BTreeSet<(String, String)>,
    /// Test pods of the verifications under way, by name.
    pub test_pods: BTreeSet<String>,
    /// Environments that could not be decided: everything of theirs stays as it is.
    pub untouched: BTreeSet<String>,
}

/// A Deployment or a Service of the Application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// Its environment label.
    pub environment: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    Service,
}

/// A test pod of the Application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPodFacts {
    pub namespace: String,
    pub name: String,
    /// Its environment label.
    pub environment: Option<String>,
    pub created: Option<Time>,
    pub deleting: bool,
    /// Where its test stands (`desired::verification::outcome`).
    pub outcome: VerificationReport,
}

/// The Deployments and Services to delete.
pub fn workloads(children: &[Child], kept: &Kept) -> Vec<Child> {
    children
        .iter()
        .filter(|c| {
            !kept
                .workloads
                .contains(&(c.namespace.clone(), c.name.clone()))
                && !c
                    .environment
                    .as_ref()
                    .is_some_and(|e| kept.untouched.contains(e))
        })
        .cloned()
        .collect()
}

/// The names of the test pods to delete; `listed` are the Application's environments.
pub fn test_pods(pods: &[TestPodFacts], listed: &[&str], kept: &Kept) -> Vec<String> {
    let mut pods: Vec<&TestPodFacts> = pods.iter().filter(|p| !p.deleting).collect();
    // Newest first: the first of each environment is kept. The sort is stable, so pods of
    // the same second keep the order they were observed in.
    pods.sort_by_key(|p| std::cmp::Reverse(p.created.as_ref().map(|t| t.0)));
    let mut newest_seen: BTreeSet<String> = BTreeSet::new();
    let mut deleted = Vec::new();
    for pod in pods {
        let env = pod.environment.clone().unwrap_or_default();
        let newest = listed.contains(&env.as_str()) && newest_seen.insert(env.clone());
        if newest || kept.test_pods.contains(&pod.name) || kept.untouched.contains(&env) {
            continue;
        }
        deleted.push(pod.name.clone());
    }
    deleted
}
