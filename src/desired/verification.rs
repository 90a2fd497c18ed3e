//! The test pod of an Environment's verification, and what its state means.
//!
//! Data flow: once a rollout has stabilized, the controller builds the pod with [`test_pod`]
//! (the Application, the environment, the release, a run key of its choosing, the
//! verification's image, command and timeout, and the Service's URL) and creates it in the
//! Application's namespace; on every pass it reads the pod back with [`outcome`]: still
//! running, passed (exit 0), or failed with a message and the tail of the pod's log.
//!
//! The pod meets the `restricted` Pod Security Standard, like the build pod, never restarts,
//! and is stopped by the kubelet at the verification's timeout (`activeDeadlineSeconds`). Its
//! container's log tail becomes its termination message when it fails
//! (`FallbackToLogsOnError`), so the controller reads the log from the pod's status and needs
//! no access to `pods/log`.
//!
//! Its labels name the Application and the environment, so the controller's pod watch finds
//! it and maps it to its Application, but not `app.kubernetes.io/name`: where the
//! environment's target namespace is the Application's own, the Service (which selects by that
//! label) must not send the application's traffic to the test pod. It carries
//! [`VERIFICATION_LABEL`] instead, by which [`is_test_pod`] tells it from the application's
//! pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, EnvVar, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::workload::{APP_USER, base_name, child_labels};
use super::{restricted_pod, restricted_writable, short_hash};
use crate::api::conditions::truncate;
use crate::api::labels::{NAME_LABEL, RELEASE_ANNOTATION, VERIFICATION_LABEL};
use crate::api::{Application, controlled_by};
use crate::decide::build::progress::tail_of;

/// The test pod's only container.
pub const TEST_CONTAINER: &str = "verify";
/// The environment variable holding the Service's URL; `$(SERVICE_URL)` in the command is
/// expanded by the kubelet.
pub const SERVICE_URL: &str = "SERVICE_URL";
/// The longest log tail an outcome keeps, in bytes.
pub const LOG_TAIL_BYTES: usize = 2048;

/// What a smoke test needs and a node can spare beside the application it tests.
const REQUESTS: (&str, &str) = ("50m", "64Mi");
const LIMITS: (&str, &str) = ("1", "512Mi");
/// The longest pod name: a DNS label, as the pod's hostname is its name.
const MAX_NAME: usize = 63;
/// The longest reason or message from the pod's status an outcome quotes, in bytes.
const MAX_QUOTE: usize = 256;
/// A test pod stops quickly: it serves nothing.
const TERMINATION_GRACE_SECONDS: i64 = 5;

/// Everything the test pod is made of but its owner: what the delivery decision asks for
/// (`Action::StartTestPod`).
#[derive(Clone, Debug, PartialEq)]
pub struct TestPod {
    pub environment: String,
    /// The release under test (the pod's `RELEASE_ANNOTATION`).
    pub release: String,
    /// A key of this verification run (for example release and rollout start): a new run gets
    /// a new pod name.
    pub run: String,
    pub image: String,
    /// The container's command; `None` runs the image's entrypoint.
    pub command: Option<Vec<String>>,
    /// `http://<app>-<env>.<targetNamespace>.svc:<port>`, the container's `SERVICE_URL`.
    pub service_url: String,
    /// How long the pod may run (its `activeDeadlineSeconds`, rounded up, at least 1 s).
    pub timeout: Duration,
}

/// `<app>-<env>-verify-<10 hex digits>`, at most 63 characters. The hash is of application,
/// environment and run together: where long names are cut to fit, two runs of different
/// environments still get different names.
pub fn test_pod_name(app: &str, environment: &str, run: &str) -> String {
    let mut parts = Vec::new();
    for part in [app, environment, run] {
        parts.extend_from_slice(part.as_bytes());
        // A separator no name holds, so ("a-b", "c") and ("a", "b-c") differ.
        parts.push(0);
    }
    let suffix = format!("-verify-{}", short_hash(&parts));
    let prefix: String = base_name(app, environment)
        .chars()
        .take(MAX_NAME - suffix.len())
        .collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// Whether `pod` is a test pod (and not one of the application's).
pub fn is_test_pod(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(VERIFICATION_LABEL))
        .is_some_and(|value| value == "true")
}

/// The test pod, owned by `owner`, in its namespace, named and labelled after it; `None` when
/// the Application has no name, namespace or UID yet (it has not been stored).
pub fn test_pod(owner: &Application, input: &TestPod) -> Option<Pod> {
    let app = owner.metadata.name.as_deref()?;
    let namespace = owner.metadata.namespace.as_deref()?;
    // The Application is the pod's controller, so a watch of the pods Applications own sees
    // it. It does not block the Application's deletion: that would need the right to update
    // the Application's finalizers, and a test pod is worth nothing once its Application is
    // gone.
    let owner = OwnerReference {
        block_owner_deletion: Some(false),
        ..controlled_by(owner)?
    };
    let mut labels = child_labels(namespace, app, &input.environment);
    labels.remove(NAME_LABEL);
    labels.insert(VERIFICATION_LABEL.to_owned(), "true".to_owned());
    let deadline = input
        .timeout
        .as_secs()
        .saturating_add(u64::from(input.timeout.subsec_nanos() > 0))
        .max(1);
    let container = Container {
        name: TEST_CONTAINER.to_owned(),
        image: Some(input.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: input.command.clone(),
        env: Some(vec![EnvVar {
            name: SERVICE_URL.to_owned(),
            value: Some(input.service_url.clone()),
            value_from: None,
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(REQUESTS)),
            limits: Some(quantities(LIMITS)),
            ..ResourceRequirements::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        // Test images write where they like (caches, reports, temporary files).
        security_context: Some(restricted_writable()),
        ..Container::default()
    };
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(test_pod_name(app, &input.environment, &input.run)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                RELEASE_ANNOTATION.to_owned(),
                input.release.clone(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(i64::try_from(deadline).unwrap_or(i64::MAX)),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(restricted_pod(APP_USER)),
            ..PodSpec::default()
        }),
        status: None,
    })
}

fn quantities((cpu, memory): (&str, &str)) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// Where a test pod stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished: pending, pulling its image or running.
    Running,
    /// Its test exited 0, for example "test pod shop-dev-verify-0123456789 exited 0".
    Passed { message: String },
    /// It failed, will not start, or was stopped at its deadline; `log` is the tail of its log
    /// (at most [`LOG_TAIL_BYTES`]) when the kubelet kept one.
    Failed {
        message: String,
        log: Option<String>,
    },
}

/// Waiting reasons that mean the test container will not start by itself: its image cannot be
/// pulled, or its spec cannot be made into a container. Waiting would only end at the deadline.
const CANNOT_START: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What `pod`'s status says about the verification.
pub fn outcome(pod: &Pod) -> Outcome {
    let name = truncate(pod.metadata.name.as_deref().unwrap_or("?"), MAX_NAME);
    let Some(status) = &pod.status else {
        return Outcome::Running;
    };
    let state = status
        .container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == TEST_CONTAINER)
        .and_then(|s| s.state.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let log = terminated
        .and_then(|t| t.message.as_deref())
        .map(|message| tail_of(&printable(message), LOG_TAIL_BYTES))
        .filter(|log| !log.is_empty());
    match status.phase.as_deref() {
        Some("Succeeded") => {
            return Outcome::Passed {
                message: format!("test pod {name} exited 0"),
            };
        }
        Some("Failed") => {
            let message = if status.reason.as_deref() == Some("DeadlineExceeded") {
                let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                match deadline {
                    Some(seconds) => {
                        format!("test pod {name} did not finish within {}", human(seconds))
                    }
                    None => format!("test pod {name} did not finish within its deadline"),
                }
            } else if let Some(done) = terminated {
                match done.reason.as_deref().map(quote) {
                    // "Error" says nothing the exit code does not.
                    Some(reason) if reason != "Error" => {
                        format!("test pod {name} exited {} ({reason})", done.exit_code)
                    }
                    _ => format!("test pod {name} exited {}", done.exit_code),
                }
            } else {
                // Failed without its container ending, such as an eviction.
                let why = [status.reason.as_deref(), status.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .map(quote)
                    .collect::<Vec<_>>()
                    .join(": ");
                match why.is_empty() {
                    true => format!("test pod {name} failed"),
                    false => format!("test pod {name} failed: {why}"),
                }
            };
            return Outcome::Failed { message, log };
        }
        _ => {}
    }
    match state {
        Some(ContainerState {
            waiting: Some(waiting),
            ..
        }) => match waiting.reason.as_deref() {
            Some(reason) if CANNOT_START.contains(&reason) => {
                let message = match waiting.message.as_deref().map(quote) {
                    Some(detail) if !detail.is_empty() => {
                        format!("test pod {name} cannot start: {reason}: {detail}")
                    }
                    _ => format!("test pod {name} cannot start: {reason}"),
                };
                Outcome::Failed { message, log: None }
            }
            _ => Outcome::Running,
        },
        _ => Outcome::Running,
    }
}

/// A reason or message from the pod's status on one line, bounded.
fn quote(text: &str) -> String {
    truncate(&text.replace(['\n', '\r'], " "), MAX_QUOTE)
}

/// `text` without control characters other than newlines and tabs (a log may hold terminal
/// escapes, which have no place in a status).
fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
        .collect()
}

/// `seconds` as a person writes a duration: "90s", "5m", "1h30m".
fn human(seconds: i64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let parts = [(hours, "h"), (minutes, "m"), (seconds, "s")];
    let text: String = parts
        .iter()
        .filter(|(value, _)| *value != 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::EnvironmentEntry;
    use crate::api::environment::StrategyType;
    use crate::api::labels::{APPLICATION_NAMESPACE_LABEL, ENVIRONMENT_LABEL};
    use crate::desired::workload::{Workload, fixtures, service};

    /// The shared shop Application, stored (UID 1234), with one port.
    fn app() -> Application {
        let mut app = fixtures::app("    ports: [{name: http, port: 8080}]");
        app.metadata.uid = Some("1234".into());
        app
    }

    fn command() -> Vec<String> {
        ["/smoke", "--base-url", "$(SERVICE_URL)"]
            .map(String::from)
            .to_vec()
    }

    fn input(command: Option<Vec<String>>) -> TestPod {
        TestPod {
            environment: "dev".into(),
            release: "shop-0.0.0-abc1234".into(),
            run: "shop-0.0.0-abc1234@2026-01-01T00:00:00Z".into(),
            image: "registry.local/smoke:1".into(),
            command,
            service_url: "http://shop-dev.shop-dev.svc:8080".into(),
            timeout: Duration::from_secs(300),
        }
    }

    fn pod_of(app: &Application, input: &TestPod) -> Pod {
        test_pod(app, input).expect("a stored Application")
    }

    fn container(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn the_test_pod_meets_the_restricted_pod_security_standard() {
        let app = app();
        let pod = pod_of(&app, &input(None));
        let spec = pod.spec.as_ref().unwrap();
        let pod_security = spec.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.run_as_user, Some(65532));
        assert_eq!(
            pod_security
                .seccomp_profile
                .as_ref()
                .map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(spec.containers.len(), 1);
        let security = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            security.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(security.capabilities.as_ref().unwrap().add, None);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            container(&pod).termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError"),
            "the log tail must land in the termination message"
        );
    }

    #[test]
    fn the_test_pod_runs_in_the_application_namespace_owned_by_it() {
        let app = app();
        let pod = pod_of(&app, &input(None));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let owners = pod.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        let owner = &owners[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("ferry.dev/v1alpha1", "Application", "shop", "1234")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(false));

        let mut unstored = app.clone();
        unstored.metadata.uid = None;
        assert_eq!(test_pod(&unstored, &input(None)), None);
    }

    #[test]
    fn the_test_pod_is_labelled_for_its_application_and_environment_and_annotated_with_the_release()
    {
        let app = app();
        let pod = pod_of(&app, &input(None));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let expected: BTreeMap<String, String> = [
            ("app.kubernetes.io/managed-by", "ferry"),
            ("ferry.dev/environment", "dev"),
            ("ferry.dev/application", "shop"),
            ("ferry.dev/application-namespace", "team-a"),
            ("ferry.dev/verification", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, expected);
        assert_eq!(
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RELEASE_ANNOTATION))
                .map(String::as_str),
            Some("shop-0.0.0-abc1234")
        );
        assert!(is_test_pod(&pod));
        let mut app_pod = pod.clone();
        app_pod
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(VERIFICATION_LABEL);
        assert!(!is_test_pod(&app_pod));
    }

    #[test]
    fn the_service_never_sends_traffic_to_the_test_pod() {
        // The environment's target namespace is the Application's own: the Service and the
        // test pod meet there.
        let app = app();
        let entry: EnvironmentEntry = serde_yaml::from_str("name: dev").unwrap();
        let workload = Workload {
            app: &app,
            entry: &entry,
            environment: "dev",
            namespace: "team-a",
            strategy: StrategyType::RollingUpdate,
            progress_deadline: Duration::from_secs(60),
        };
        let selector = service(&workload, &app.spec.run, None)
            .and_then(|s| s.spec)
            .and_then(|s| s.selector)
            .expect("a Service with a selector");
        let pod = pod_of(&app, &input(None));
        let labels = pod.metadata.labels.unwrap_or_default();
        // It carries what the controller finds an environment's pods by...
        for key in [ENVIRONMENT_LABEL, APPLICATION_NAMESPACE_LABEL] {
            assert!(
                selector.contains_key(key) && labels.contains_key(key),
                "{key}"
            );
        }
        // ...but not all the Service selects by.
        assert!(
            !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "the Service {selector:?} selects the test pod {labels:?}"
        );
    }

    #[test]
    fn the_test_pod_name_is_a_dns_label_that_differs_per_run() {
        let short = test_pod_name("shop", "dev", "run-1");
        assert!(short.starts_with("shop-dev-verify-"), "{short}");
        assert_eq!(
            short.len(),
            "shop-dev-verify-".len() + crate::desired::HASH_DIGITS
        );
        assert_eq!(
            short, "shop-dev-verify-7bf86a9c8d",
            "stable across versions"
        );
        assert_ne!(short, test_pod_name("shop", "dev", "run-2"));
        // The longest names the API allows: a 42-character Application, a 20-character
        // Environment.
        let app = "a".repeat(41) + "b";
        let env_a = "e".repeat(19) + "a";
        let env_b = "e".repeat(19) + "b";
        let long_a = test_pod_name(&app, &env_a, "run-1");
        let long_b = test_pod_name(&app, &env_b, "run-1");
        for name in [&short, &long_a, &long_b] {
            assert!(name.len() <= 63, "{name} has {} characters", name.len());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
        assert_ne!(long_a, long_b, "cut to the same prefix, still different");
        // A cut that ends on '-' does not leave "--".
        let dashed = test_pod_name(&"a".repeat(44), "dev", "run-1");
        assert!(!dashed.contains("--"), "{dashed}");
        let pod_app = super::tests::app();
        assert_eq!(
            pod_of(&pod_app, &input(None)).metadata.name,
            Some(test_pod_name(
                "shop",
                "dev",
                "shop-0.0.0-abc1234@2026-01-01T00:00:00Z"
            ))
        );
    }

    #[test]
    fn the_test_container_gets_the_service_url_and_the_command() {
        let app = app();
        let command = command();
        let pod = pod_of(&app, &input(Some(command.clone())));
        let c = container(&pod);
        assert_eq!(c.name, TEST_CONTAINER);
        assert_eq!(c.image.as_deref(), Some("registry.local/smoke:1"));
        // Left for the kubelet to expand.
        assert_eq!(c.command.as_deref(), Some(command.as_slice()));
        assert_eq!(
            c.env.clone().unwrap_or_default(),
            vec![EnvVar {
                name: "SERVICE_URL".into(),
                value: Some("http://shop-dev.shop-dev.svc:8080".into()),
                value_from: None,
            }]
        );
        let resources = c.resources.as_ref().unwrap();
        for part in [&resources.requests, &resources.limits] {
            let part = part.as_ref().unwrap();
            assert!(part.contains_key("cpu") && part.contains_key("memory"));
        }
        let entrypoint = pod_of(&app, &input(None));
        assert_eq!(
            container(&entrypoint).command,
            None,
            "the image's entrypoint"
        );
    }

    #[test]
    fn the_deadline_is_the_timeout_in_whole_seconds_rounded_up_and_at_least_one() {
        let app = app();
        for (timeout, seconds) in [
            (Duration::from_secs(300), 300),
            (Duration::from_millis(1500), 2),
            (Duration::ZERO, 1),
        ] {
            let pod = pod_of(
                &app,
                &TestPod {
                    timeout,
                    ..input(None)
                },
            );
            assert_eq!(
                pod.spec.unwrap().active_deadline_seconds,
                Some(seconds),
                "{timeout:?}"
            );
        }
    }

    /// A test pod named `shop-dev-verify-0123456789` with a 5 minute deadline and `status`.
    fn observed(status: &str) -> Pod {
        serde_yaml::from_str(&format!(
            r#"
metadata: {{name: shop-dev-verify-0123456789, namespace: team-a}}
spec:
  activeDeadlineSeconds: 300
  containers: [{{name: verify, image: "registry.local/smoke:1"}}]
{status}"#
        ))
        .unwrap()
    }

    fn failed(message: &str, log: Option<&str>) -> Outcome {
        Outcome::Failed {
            message: message.to_owned(),
            log: log.map(str::to_owned),
        }
    }

    #[test]
    fn a_test_pod_passes_on_exit_0_and_fails_on_anything_else() {
        let running = Outcome::Running;
        let cases = [
            ("no status yet", "", running.clone()),
            (
                "scheduled, container being created",
                r#"status: {phase: Pending, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}]}"#,
                running.clone(),
            ),
            (
                "running",
                r#"status: {phase: Running, containerStatuses: [{name: verify, image: i, imageID: "", ready: true, restartCount: 0, state: {running: {}}}]}"#,
                running.clone(),
            ),
            (
                "exited 0",
                r#"status: {phase: Succeeded, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 0, reason: Completed}}}]}"#,
                Outcome::Passed {
                    message: "test pod shop-dev-verify-0123456789 exited 0".into(),
                },
            ),
            (
                "exited 1 with its log",
                r#"status: {phase: Failed, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 1, reason: Error, message: "GET /cart: 500\nFAIL 1 of 12\n"}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 exited 1",
                    Some("GET /cart: 500\nFAIL 1 of 12"),
                ),
            ),
            (
                "killed for its memory",
                r#"status: {phase: Failed, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 137, reason: OOMKilled}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 exited 137 (OOMKilled)",
                    None,
                ),
            ),
            (
                "stopped at its deadline",
                r#"status: {phase: Failed, reason: DeadlineExceeded, message: "Pod was active on the node longer than the specified deadline", containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 137, reason: Error, message: "waiting for /ready"}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 did not finish within 5m",
                    Some("waiting for /ready"),
                ),
            ),
            (
                "image cannot be pulled",
                r#"status: {phase: Pending, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ImagePullBackOff, message: "Back-off pulling image \"registry.local/smoke:1\""}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 cannot start: ImagePullBackOff: Back-off pulling image \"registry.local/smoke:1\"",
                    None,
                ),
            ),
            (
                "image pull failed",
                r#"status: {phase: Pending, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ErrImagePull}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 cannot start: ErrImagePull",
                    None,
                ),
            ),
            (
                "a config the kubelet cannot make a container of",
                r#"status: {phase: Pending, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: CreateContainerConfigError, message: "container has runAsNonRoot and image will run as root"}}}]}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 cannot start: CreateContainerConfigError: container has runAsNonRoot and image will run as root",
                    None,
                ),
            ),
            (
                "evicted",
                r#"status: {phase: Failed, reason: Evicted, message: "The node was low on resource: memory."}"#,
                failed(
                    "test pod shop-dev-verify-0123456789 failed: Evicted: The node was low on resource: memory.",
                    None,
                ),
            ),
        ];
        for (name, status, expected) in cases {
            assert_eq!(outcome(&observed(status)), expected, "{name}");
        }
    }

    #[test]
    fn what_the_pod_reports_is_bounded() {
        let line = "x".repeat(99);
        let log: String = (0..100).map(|i| format!("{i:03} {line}\n")).collect();
        let mut pod = observed(
            r#"status: {phase: Failed, containerStatuses: [{name: verify, image: i, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 2}}}]}"#,
        );
        let terminated = pod
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
            .and_then(|s| s[0].state.as_mut())
            .and_then(|s| s.terminated.as_mut())
            .unwrap();
        terminated.reason = Some("R".repeat(5000));
        terminated.message = Some(format!("\u{1b}[31m{log}"));
        let Outcome::Failed { message, log } = outcome(&pod) else {
            panic!("a failed pod did not fail");
        };
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
        let log = log.expect("a log tail");
        assert!(log.len() <= LOG_TAIL_BYTES, "{} bytes", log.len());
        assert!(log.ends_with(&format!("099 {line}")), "the last lines");
        assert!(log.starts_with(|c: char| c.is_ascii_digit()), "whole lines");
        assert!(!log.contains('\u{1b}'), "control characters removed");
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        for (seconds, text) in [
            (90, "1m30s"),
            (300, "5m"),
            (3600, "1h"),
            (5, "5s"),
            (0, "0s"),
        ] {
            assert_eq!(human(seconds), text);
        }
    }
}
