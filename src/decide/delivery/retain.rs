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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Option<Time> {
        jiff::Timestamp::from_second(1_800_000_000 + second)
            .ok()
            .map(Time)
    }

    fn deployment(namespace: &str, name: &str, env: &str) -> Child {
        Child {
            kind: Kind::Deployment,
            namespace: namespace.into(),
            name: name.into(),
            environment: Some(env.into()),
        }
    }

    fn service(namespace: &str, name: &str, env: &str) -> Child {
        Child {
            kind: Kind::Service,
            ..deployment(namespace, name, env)
        }
    }

    fn kept(workloads: &[(&str, &str)], test_pods: &[&str], untouched: &[&str]) -> Kept {
        Kept {
            workloads: workloads
                .iter()
                .map(|(n, m)| (n.to_string(), m.to_string()))
                .collect(),
            test_pods: test_pods.iter().map(|p| p.to_string()).collect(),
            untouched: untouched.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn workloads_nobody_keeps_are_deleted_but_never_those_of_an_undecided_environment() {
        let dev = deployment("team-a-dev", "shop-dev", "dev");
        let dev_service = service("team-a-dev", "shop-dev", "dev");
        let blue = deployment("team-a-dev", "shop-dev-blue", "dev");
        let moved = deployment("team-a-old", "shop-dev", "dev");
        let removed = deployment("team-a-qa", "shop-qa", "qa");
        let staging = deployment("team-a-staging", "shop-staging", "staging");
        let cases: Vec<(&str, Vec<Child>, Kept, Vec<Child>)> = vec![
            (
                "what an environment keeps stays, Deployment and Service of one name alike",
                vec![dev.clone(), dev_service.clone()],
                kept(&[("team-a-dev", "shop-dev")], &[], &[]),
                vec![],
            ),
            (
                "a slot the environment no longer runs goes",
                vec![dev.clone(), blue.clone()],
                kept(&[("team-a-dev", "shop-dev")], &[], &[]),
                vec![blue.clone()],
            ),
            (
                "a workload left in a namespace the environment no longer targets goes",
                vec![dev.clone(), moved.clone()],
                kept(&[("team-a-dev", "shop-dev")], &[], &[]),
                vec![moved.clone()],
            ),
            (
                "the workload of an environment entry that was removed goes",
                vec![dev.clone(), removed.clone()],
                kept(&[("team-a-dev", "shop-dev")], &[], &[]),
                vec![removed.clone()],
            ),
            (
                "an environment that cannot be decided keeps everything it has",
                vec![dev.clone(), staging.clone()],
                kept(&[("team-a-dev", "shop-dev")], &[], &["staging"]),
                vec![],
            ),
            (
                "nothing kept, as for a deleted Application, deletes everything",
                vec![dev.clone(), dev_service.clone(), staging.clone()],
                Kept::default(),
                vec![dev.clone(), dev_service.clone(), staging.clone()],
            ),
        ];
        for (name, children, kept, deleted) in cases {
            assert_eq!(workloads(&children, &kept), deleted, "{name}");
        }
    }

    fn pod(name: &str, env: &str, created: i64) -> TestPodFacts {
        TestPodFacts {
            namespace: "team-a".into(),
            name: name.into(),
            environment: Some(env.into()),
            created: at(created),
            deleting: false,
            outcome: VerificationReport::Running,
        }
    }

    #[test]
    fn the_newest_test_pod_of_each_environment_stays_with_those_under_way_and_undecided() {
        let deleting = TestPodFacts {
            deleting: true,
            ..pod("dev-0", "dev", 0)
        };
        let cases: Vec<(&str, Vec<TestPodFacts>, Kept, Vec<&str>)> = vec![
            (
                "the newest of each listed environment stays, older ones go",
                vec![
                    pod("dev-1", "dev", 1),
                    pod("dev-3", "dev", 3),
                    pod("prod-2", "prod", 2),
                    pod("dev-2", "dev", 2),
                ],
                Kept::default(),
                vec!["dev-2", "dev-1"],
            ),
            (
                "the pod of a verification under way stays though it is not the newest",
                vec![pod("dev-1", "dev", 1), pod("dev-3", "dev", 3)],
                kept(&[], &["dev-1"], &[]),
                vec![],
            ),
            (
                "the pods of an environment that cannot be decided all stay",
                vec![pod("prod-1", "prod", 1), pod("prod-2", "prod", 2)],
                kept(&[], &[], &["prod"]),
                vec![],
            ),
            (
                "an environment no longer listed keeps none",
                vec![pod("qa-1", "qa", 1), pod("qa-2", "qa", 2)],
                Kept::default(),
                vec!["qa-2", "qa-1"],
            ),
            (
                "a pod being deleted neither counts as the newest nor is deleted again",
                vec![pod("dev-1", "dev", 1), deleting.clone()],
                Kept::default(),
                vec![],
            ),
        ];
        for (name, pods, kept, deleted) in cases {
            assert_eq!(test_pods(&pods, &["dev", "prod"], &kept), deleted, "{name}");
        }
    }
}
