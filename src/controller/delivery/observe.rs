//! Observe: what delivery decides from, read from the shared caches and the run registry and
//! turned into plain data (`decide::delivery::pipeline::Pipeline`). Nothing here decides.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus,
};
use kube::{Resource, ResourceExt};

use super::{Context, children_of};
use crate::adapters::runs::Progress;
use crate::adapters::verification::Report;
use crate::api::application::Slot;
use crate::api::labels::{ENVIRONMENT_LABEL, RELEASE_ANNOTATION, SLOT_LABEL};
use crate::api::{Application, Release, Time};
use crate::controller::release::oldest_first;
use crate::decide::delivery::VerificationReport;
use crate::decide::delivery::health::{DeploymentFacts, PodFacts, Workload};
use crate::decide::delivery::pipeline::{Listed, ReleaseFacts};
use crate::decide::delivery::retain::{Child, Kind, TestPodFacts};
use crate::decide::delivery::runs::{CheckCounts, RunKey, RunProgress, RunReport};
use crate::decide::release::outside_repository;
use crate::desired::verification::{Outcome, is_test_pod};

/// What delivery decides from, besides the Application and its stored status.
pub(super) struct Observed {
    pub environments: Vec<Listed>,
    pub releases: Vec<ReleaseFacts>,
    pub children: Vec<Child>,
    pub test_pods: Vec<TestPodFacts>,
    pub runs: BTreeMap<RunKey, RunProgress>,
}

/// Observes the Application's environments of `order`, its children and its runs. An
/// Environment whose target namespace is not the one `checked` (consent and readiness were
/// checked for that one) is observed as unreadable: left as it is in this pass.
pub(super) async fn observe(
    context: &Context,
    app: &Application,
    namespace: &str,
    (order, checked): (&[String], &BTreeMap<String, String>),
    releases: &[Release],
) -> Observed {
    let name = app.name_any();
    let mut environments = Vec::with_capacity(order.len());
    for env in order {
        let environment = context.caches.environments.get(namespace, env).await;
        let environment = environment
            .as_ref()
            .and_then(|e| e.0.as_ref().ok())
            .filter(|e| {
                let target = e.target_namespace().unwrap_or(namespace);
                checked.get(env).map(String::as_str) == Some(target)
            })
            .cloned();
        let workload = match environment.as_ref().and_then(|e| e.target_namespace()) {
            Some(target) => workload(context, namespace, &name, env, target).await,
            None => Workload::default(),
        };
        environments.push(Listed {
            name: env.clone(),
            environment,
            workload,
        });
    }
    let children = &context.caches.children;
    let deployments = children_of(&children.deployments, namespace, &name, None).await;
    let services = children_of(&children.services, namespace, &name, None).await;
    let workloads = deployments
        .iter()
        .map(|d| child(Kind::Deployment, d.as_ref()))
        .chain(services.iter().map(|s| child(Kind::Service, s.as_ref())))
        .collect();
    // A pod with a test pod's labels that is not Ferry's is not one: its outcome is never read
    // and Ferry never deletes it. Creating the test pod under its name then fails the
    // verification (`apply::start_test_pod`).
    let test_pods = children_of(&children.pods, namespace, &name, None)
        .await
        .iter()
        .filter(|p| is_test_pod(p) && super::test_pod_not_ours(p, app).is_none())
        .map(|p| test_pod_facts(p))
        .collect();
    let runs = context
        .external
        .runs
        .progress(|k| k.of_application(namespace, &name))
        .into_iter()
        .map(|(key, progress)| (key, run_progress(progress)))
        .collect();
    Observed {
        environments,
        releases: release_facts(context, app, namespace, releases).await,
        children: workloads,
        test_pods,
        runs,
    }
}

/// The Application's Releases, oldest first, with when each was created and when its commit
/// was seen (its BuildJob's creation).
async fn release_facts(
    context: &Context,
    app: &Application,
    namespace: &str,
    releases: &[Release],
) -> Vec<ReleaseFacts> {
    let mut facts = Vec::with_capacity(releases.len());
    for name in oldest_first(releases) {
        let Some(release) = releases
            .iter()
            .find(|r| r.metadata.name.as_ref() == Some(&name))
        else {
            continue;
        };
        let mut commit_seen = None;
        if let Some(job) = &release.spec.build_job
            && let Some(job) = context.caches.buildjobs.get(namespace, job).await
        {
            commit_seen = job.meta().creation_timestamp.as_ref().map(|t| Time(t.0));
        }
        facts.push(ReleaseFacts {
            name,
            uid: release.metadata.uid.clone(),
            digest: release.content_digest(),
            image: release.spec.image.clone(),
            run: release.fixed_run().cloned(),
            outside_repository: outside_repository(&release.spec, &app.spec.image.repository),
            created: release
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| Time(t.0)),
            commit_seen,
        });
    }
    facts
}

fn child(kind: Kind, object: &impl Resource) -> Child {
    let meta = object.meta();
    Child {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        environment: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(ENVIRONMENT_LABEL))
            .cloned(),
    }
}

fn test_pod_facts(pod: &Pod) -> TestPodFacts {
    let Child {
        namespace,
        name,
        environment,
        ..
    } = child(Kind::Deployment, pod);
    TestPodFacts {
        namespace,
        name,
        environment,
        created: pod.metadata.creation_timestamp.as_ref().map(|t| Time(t.0)),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        outcome: match crate::desired::verification::outcome(pod) {
            Outcome::Passed { message } => VerificationReport::Passed { message },
            Outcome::Failed { message, log } => VerificationReport::Failed { message, log },
            Outcome::Running => VerificationReport::Running,
        },
    }
}

fn run_progress(progress: Progress) -> RunProgress {
    match progress {
        Progress::Check(figures) => RunProgress::Check(CheckCounts {
            requests: figures.requests,
            failed: figures.failed,
            p95: figures.p95,
            first_failure: figures
                .first_failure
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(Time),
            last_failure: figures.last_failure_detail,
        }),
        Progress::Verification(report) => RunProgress::Verification(match report {
            Report::Running => RunReport::Running,
            Report::Passed { message } => RunReport::Passed { message },
            Report::Failed { message } => RunReport::Failed { message },
        }),
    }
}

/// The Deployments and pods of one environment in its target namespace, from the caches.
async fn workload(
    context: &Context,
    namespace: &str,
    app: &str,
    env: &str,
    target: &str,
) -> Workload {
    let children = &context.caches.children;
    let deployments = children_of(&children.deployments, namespace, app, Some(env))
        .await
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(target))
        .map(|d| (placement(d.as_ref()), deployment_facts(d)))
        .collect();
    let pods = children_of(&children.pods, namespace, app, Some(env))
        .await
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(target) && !is_test_pod(p))
        .map(|p| pod_facts(p))
        .collect();
    Workload { deployments, pods }
}

fn placement(object: &impl Resource) -> Option<Slot> {
    let labels = object.meta().labels.as_ref()?;
    match labels.get(SLOT_LABEL)?.as_str() {
        "blue" => Some(Slot::Blue),
        "green" => Some(Slot::Green),
        _ => None,
    }
}

fn deployment_facts(d: &Deployment) -> DeploymentFacts {
    let status = d.status.clone().unwrap_or_default();
    let release = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RELEASE_ANNOTATION))
        .cloned();
    DeploymentFacts {
        release,
        generation: d.metadata.generation,
        observed_generation: status.observed_generation,
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
    }
}

/// A pod of an Application as its cache holds it: its spec is most of its size and only a test
/// pod's deadline is read of it (`pod_facts`, `test_pod_facts`), so the rest is dropped.
pub fn trim_pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::PodSpec {
            active_deadline_seconds: spec.active_deadline_seconds,
            ..Default::default()
        };
    }
    pod.status = pod.status.take().map(trimmed_status);
}

/// What `pod_facts` and `verification::outcome` read of a pod's status: its phase, reason and
/// message, its conditions (type, status, reason, message), and per container its name,
/// readiness, restarts, and state and last state (waiting: reason and message; terminated:
/// exit code, reason, message, finish time). Images, IDs, addresses, resources and times go.
fn trimmed_status(status: PodStatus) -> PodStatus {
    let state = |s: ContainerState| ContainerState {
        running: None,
        waiting: s.waiting.map(|w| ContainerStateWaiting {
            reason: w.reason,
            message: w.message,
        }),
        terminated: s.terminated.map(|t| ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: t.reason,
            message: t.message,
            finished_at: t.finished_at,
            ..ContainerStateTerminated::default()
        }),
    };
    PodStatus {
        phase: status.phase,
        reason: status.reason,
        message: status.message,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(|containers| {
            containers
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    ready: c.ready,
                    restart_count: c.restart_count,
                    state: c.state.map(state),
                    last_state: c.last_state.map(state),
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    }
}

fn pod_facts(pod: &Pod) -> PodFacts {
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unschedulable = conditions
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default());
    let waiting = containers.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        Some((
            waiting.reason.clone().unwrap_or_default(),
            waiting.message.clone().unwrap_or_default(),
        ))
    });
    let last_exit = containers.iter().find_map(|c| {
        let terminated = c.last_state.as_ref()?.terminated.as_ref()?;
        Some((
            terminated.exit_code,
            terminated.finished_at.as_ref().map(|t| Time(t.0)),
        ))
    });
    PodFacts {
        name: pod.name_any(),
        placement: placement(pod),
        release: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RELEASE_ANNOTATION))
            .cloned(),
        ready,
        restarts: containers.iter().map(|c| c.restart_count).sum(),
        waiting,
        last_exit,
        unschedulable,
        deleting: pod.metadata.deletion_timestamp.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::{pod_facts, test_pod_facts, trim_pod};

    /// What the delivery decides from is the same whether the pod is held whole or trimmed.
    #[test]
    fn a_trimmed_pod_tells_everything_a_whole_one_does() {
        let pods: Vec<Pod> = [
            r#"{"metadata": {"name": "web-dev-1", "namespace": "shop",
                 "labels": {"ferry.dev/environment": "dev", "ferry.dev/slot": "blue"},
                 "annotations": {"ferry.dev/release": "web-1.0.0"}},
                "spec": {"containers": [{"name": "app", "image": "r/web@sha256:1",
                   "env": [{"name": "COLOR", "value": "blue"}]}], "nodeName": "n"},
                "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}],
                  "conditions": [{"type": "Ready", "status": "True"}],
                  "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 3, "finishedAt": "2026-12-07T10:00:00Z"}}}]}}"#,
            r#"{"metadata": {"name": "web-dev-verify", "namespace": "shop",
                 "creationTimestamp": "2026-12-07T10:00:00Z",
                 "labels": {"ferry.dev/environment": "dev", "ferry.dev/verification": "true"}},
                "spec": {"activeDeadlineSeconds": 60, "restartPolicy": "Never",
                   "containers": [{"name": "test", "image": "busybox"}]},
                "status": {"phase": "Failed", "reason": "DeadlineExceeded",
                  "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no node"}]}}"#,
            r#"{"metadata": {"name": "web-dev-verify-2", "namespace": "shop",
                 "creationTimestamp": "2026-12-07T10:00:00Z",
                 "labels": {"ferry.dev/environment": "dev", "ferry.dev/verification": "true"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "verify", "image": "busybox"}]},
                "status": {"phase": "Failed", "hostIP": "10.0.0.2", "startTime": "2026-12-07T10:00:01Z",
                  "qosClass": "BestEffort",
                  "conditions": [{"type": "Ready", "status": "False", "reason": "PodFailed",
                    "lastTransitionTime": "2026-12-07T10:00:09Z"}],
                  "containerStatuses": [{"name": "verify", "image": "busybox", "imageID": "sha256:1",
                    "containerID": "containerd://1", "ready": false, "restartCount": 0, "started": false,
                    "state": {"terminated": {"exitCode": 1, "reason": "Failed", "message": "GET /verify.html: 404",
                      "startedAt": "2026-12-07T10:00:02Z", "finishedAt": "2026-12-07T10:00:08Z",
                      "containerID": "containerd://1"}}}]}}"#,
            r#"{"metadata": {"name": "web-dev-verify-3", "namespace": "shop",
                 "labels": {"ferry.dev/environment": "dev", "ferry.dev/verification": "true"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "verify", "image": "busybox"}]},
                "status": {"phase": "Failed", "reason": "Evicted",
                  "message": "The node was low on resource: memory."}}"#,
        ]
        .iter()
        .map(|json| serde_json::from_str(json).expect("a pod"))
        .collect();
        for pod in pods {
            let mut trimmed = pod.clone();
            trim_pod(&mut trimmed);
            assert!(
                trimmed
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.containers.is_empty()),
                "the spec is trimmed"
            );
            assert_eq!(pod_facts(&trimmed), pod_facts(&pod));
            assert_eq!(
                format!("{:?}", test_pod_facts(&trimmed)),
                format!("{:?}", test_pod_facts(&pod))
            );
        }
    }
}
