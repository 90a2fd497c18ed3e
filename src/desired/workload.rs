//! The objects one Application runs as in one Environment: a Deployment per running release
//! (one for `RollingUpdate`, one per slot for `BlueGreen`) and the Service in front of them.
//!
//! Data flows one way: what the rollout decided to run (`Running`: a release's image and the
//! run configuration that release fixes, never the Application's live `spec.run`), the
//! Application's entry for the environment (overrides) and the Environment's strategy and
//! deadline go in; the objects come out, for the controller to apply in the environment's target
//! namespace. They carry no owner reference: they live in another namespace than the
//! Application, so the controller finds them by `child_labels` and removes them with a
//! finalizer.
//!
//! Two invariants shape the labels:
//! - a Deployment's selector is immutable, so it holds only what never changes for that
//!   Deployment (application, its namespace, environment, slot) and never the release;
//! - the Service selects by the same labels plus, with `BlueGreen`, the serving slot: switching
//!   traffic is one change of the Service selector.
//!
//! The pods meet the `restricted` Pod Security Standard, like the build pod
//! (`desired::build_pod`), and stop gracefully: a `preStop` sleep lets the endpoints drop a pod
//! before its process gets SIGTERM, so a rollout fails no request.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec, SleepAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{restricted_pod, restricted_writable, short_hash};
use crate::api::application::{EnvironmentEntry, PortSpec, Protocol, RunSpec, ServiceType, Slot};
use crate::api::environment::StrategyType;
use crate::api::labels::{
    APPLICATION_LABEL, APPLICATION_NAMESPACE_LABEL, ENVIRONMENT_LABEL, MANAGED_BY,
    MANAGED_BY_LABEL, NAME_LABEL, RELEASE_ANNOTATION, RELEASE_LABEL, SLOT_LABEL,
};
use crate::api::{Application, Environment};
/// The container's name in every workload pod.
pub const CONTAINER: &str = "app";
/// The user and group workload pods run as by default (restricted PSS).
pub const APP_USER: i64 = 65532;

/// How long a pod keeps serving after it is marked for deletion, before its process gets
/// SIGTERM: endpoints controllers and kube-proxy need a moment to drop it.
const PRE_STOP_SLEEP_SECONDS: i64 = 2;
/// The pre-stop sleep plus the time an application gets to finish its requests.
const TERMINATION_GRACE_SECONDS: i64 = 10;
/// Old ReplicaSets kept per Deployment: enough to read what ran, few enough to stay small.
const REVISION_HISTORY: i32 = 3;
/// A label value is at most 63 characters; a shortened one keeps this many of the name, then
/// '-' and the short hash (52 + 1 + 10 = 63).
const LABEL_PREFIX: usize = 52;

/// One Application in one Environment: what the builders need.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    /// metadata.name/namespace (what runs comes from the release: `Running::run`)
    pub app: &'a Application,
    /// per-environment overrides (replicas, env, resources)
    pub entry: &'a EnvironmentEntry,
    /// Environment name
    pub environment: &'a str,
    /// target namespace the objects go in
    pub namespace: &'a str,
    pub strategy: StrategyType,
    /// -> Deployment progressDeadlineSeconds (ceil, min 1)
    pub progress_deadline: std::time::Duration,
}

impl<'a> Workload<'a> {
    /// The workload of `app`'s `entry` in `environment`, whose objects go in `namespace` (its
    /// target namespace).
    pub fn of(
        app: &'a Application,
        entry: &'a EnvironmentEntry,
        environment: &'a Environment,
        namespace: &'a str,
    ) -> Self {
        Self {
            app,
            entry,
            environment: &entry.name,
            namespace,
            strategy: environment.spec.strategy.type_,
            progress_deadline: environment.spec.health.progress_deadline.into(),
        }
    }
}

/// What one Deployment runs: a release's image with the run configuration it fixes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Running<'a> {
    pub release: &'a str,
    pub image: &'a str,
    pub run: &'a RunSpec,
    pub replicas: i32,
    pub slot: Option<Slot>,
}

/// `<app>-<env>`: the Service's name and the `RollingUpdate` Deployment's name. Application
/// (42) and Environment (20) name limits keep it a 63-character DNS label.
pub fn base_name(app: &str, environment: &str) -> String {
    format!("{app}-{environment}")
}

/// The Deployment's name: `base_name`, with `-blue` or `-green` for a `BlueGreen` slot.
pub fn deployment_name(app: &str, environment: &str, slot: Option<Slot>) -> String {
    match slot {
        Some(slot) => format!("{}-{}", base_name(app, environment), slot.as_str()),
        None => base_name(app, environment),
    }
}

/// Pods in this environment of a release with `run`: the entry's override, else
/// `run.replicas`.
pub fn replicas(entry: &EnvironmentEntry, run: &RunSpec) -> i32 {
    entry.replicas.unwrap_or(run.replicas)
}

/// Labels on every child of (application namespace, application, environment): what the controller's
/// watches select by and what cleanup lists by. Includes managed-by=ferry, NAME_LABEL=app,
/// APPLICATION_LABEL=app, APPLICATION_NAMESPACE_LABEL=app ns, ENVIRONMENT_LABEL=env.
pub fn child_labels(app_namespace: &str, app: &str, environment: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (NAME_LABEL.to_owned(), app.to_owned()),
        (APPLICATION_LABEL.to_owned(), app.to_owned()),
        (
            APPLICATION_NAMESPACE_LABEL.to_owned(),
            app_namespace.to_owned(),
        ),
        (ENVIRONMENT_LABEL.to_owned(), environment.to_owned()),
    ])
}

/// A label selector string (k=v,k=v) for child_labels.
pub fn child_selector(app_namespace: &str, app: &str, environment: &str) -> String {
    child_labels(app_namespace, app, environment)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of `RELEASE_LABEL` for a release: the name when it is a valid label value, else
/// its first 52 characters (trimmed to end on a letter or digit), '-' and 10 hex digits of the
/// sha256 of the full name, so two long names sharing a prefix still differ.
pub fn release_label_value(release: &str) -> String {
    if is_label_value(release) {
        return release.to_owned();
    }
    let prefix: String = release.chars().take(LABEL_PREFIX).collect();
    let prefix = prefix
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = short_hash(release.as_bytes());
    if prefix.is_empty() || !is_label_value(prefix) {
        return hash;
    }
    format!("{prefix}-{hash}")
}

/// Kubernetes' label value syntax: at most 63 characters, alphanumerics, '-', '_' and '.',
/// starting and ending with an alphanumeric (or empty).
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    value.len() <= 63
        && (bytes.is_empty()
            || (bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(inner)))
}

/// The labels a Deployment's selector holds: what never changes for that Deployment.
fn selector_labels(w: &Workload, slot: Option<Slot>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (NAME_LABEL.to_owned(), app_name(w).to_owned()),
        (ENVIRONMENT_LABEL.to_owned(), w.environment.to_owned()),
        (
            APPLICATION_NAMESPACE_LABEL.to_owned(),
            app_namespace(w).to_owned(),
        ),
    ]);
    if let Some(slot) = slot {
        labels.insert(SLOT_LABEL.to_owned(), slot.as_str().to_owned());
    }
    labels
}

fn app_name<'a>(w: &Workload<'a>) -> &'a str {
    w.app.metadata.name.as_deref().unwrap_or_default()
}

fn app_namespace<'a>(w: &Workload<'a>) -> &'a str {
    w.app.metadata.namespace.as_deref().unwrap_or_default()
}

/// The Deployment that runs `running` in the environment.
pub fn deployment(w: &Workload, running: &Running) -> Deployment {
    let app = app_name(w);
    let mut labels = child_labels(app_namespace(w), app, w.environment);
    labels.insert(
        RELEASE_LABEL.to_owned(),
        release_label_value(running.release),
    );
    if let Some(slot) = running.slot {
        labels.insert(SLOT_LABEL.to_owned(), slot.as_str().to_owned());
    }
    let annotations = BTreeMap::from([(RELEASE_ANNOTATION.to_owned(), running.release.to_owned())]);
    // Deadline in whole seconds, rounded up: a deadline shorter than asked would fail rollouts
    // the user allowed for.
    let deadline = w
        .progress_deadline
        .as_secs()
        .saturating_add(u64::from(w.progress_deadline.subsec_nanos() > 0))
        .max(1);
    Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(app, w.environment, running.slot)),
            namespace: Some(w.namespace.to_owned()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(running.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(w, running.slot)),
                match_expressions: None,
            },
            // New pods come up before old ones go: maxUnavailable 0 keeps full capacity, and
            // 25% surge rounds up, so at least one new pod starts at a time.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            progress_deadline_seconds: Some(i32::try_from(deadline).unwrap_or(i32::MAX)),
            revision_history_limit: Some(REVISION_HISTORY),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(w, running)),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(w: &Workload, running: &Running) -> PodSpec {
    let (run, image) = (running.run, running.image);
    let ports: Vec<ContainerPort> = run
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: p.port,
            protocol: Some(protocol(p).to_owned()),
            ..ContainerPort::default()
        })
        .collect();
    let env = merged_env(&run.env, &w.entry.env);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image.to_owned()),
        // Releases name images by digest: what is on the node is what was asked for.
        image_pull_policy: Some("IfNotPresent".into()),
        ports: (!ports.is_empty()).then_some(ports),
        env: (!env.is_empty()).then_some(env),
        resources: w.entry.resources.clone().or_else(|| run.resources.clone()),
        readiness_probe: run.readiness_probe.clone(),
        liveness_probe: run.liveness_probe.clone(),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        // A crash's last log lines become the termination message the health verdict quotes.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        // Applications may write (caches, temporary files) where their image lets them.
        security_context: Some(restricted_writable()),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // No fsGroup: the pod has no volumes for it to own, and setting it would change the
        // template of every Deployment Ferry runs, rolling them all.
        security_context: Some(PodSecurityContext {
            fs_group: None,
            ..restricted_pod(APP_USER)
        }),
        ..PodSpec::default()
    }
}

/// `run.env` with the environment's variables replacing those of the same name in place, and
/// the new ones after, in their order.
fn merged_env(run: &[EnvVar], overrides: &[EnvVar]) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = run.to_vec();
    for var in overrides {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => *existing = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
}

fn protocol(port: &PortSpec) -> &'static str {
    match port.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// The Service in front of the pods, with the ports and type of `run` (the run configuration
/// of the release that gets the traffic); `serving` is the `BlueGreen` slot that gets it.
/// None when the application listens on no port.
pub fn service(w: &Workload, run: &RunSpec, serving: Option<Slot>) -> Option<Service> {
    if run.ports.is_empty() {
        return None;
    }
    let app = app_name(w);
    let type_ = match run.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Some(Service {
        metadata: ObjectMeta {
            name: Some(base_name(app, w.environment)),
            namespace: Some(w.namespace.to_owned()),
            labels: Some(child_labels(app_namespace(w), app, w.environment)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            ports: Some(
                run.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        // By name: a probe or a new release may move the number, not the name.
                        target_port: Some(IntOrString::String(p.name.clone())),
                        protocol: Some(protocol(p).to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            selector: Some(selector_labels(w, serving)),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The workload the tests of this module and of `decide::run_spec` start from: the shop
/// Application in dev, with the run spec they vary written as YAML.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::Duration;

    use super::Workload;
    use crate::api::Application;
    use crate::api::application::EnvironmentEntry;
    use crate::api::environment::StrategyType;

    /// The shop Application with `run` (YAML, indented under `run:`).
    pub fn app(run: &str) -> Application {
        serde_yaml::from_str(&format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: shop, namespace: team-a}}
spec:
  source: {{url: "http://git.local/shop.git"}}
  build: {{builderImage: "registry.local/builder:1", script: "make"}}
  image: {{repository: registry.local/team-a/shop}}
  run:
{run}
  environments: [{{name: dev}}]
"#
        ))
        .unwrap()
    }

    pub fn entry(yaml: &str) -> EnvironmentEntry {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Three replicas of two named ports, with env, resources and a readiness probe.
    pub const RUN: &str = r#"
    replicas: 3
    ports: [{name: http, port: 8080}, {name: metrics, port: 9090}]
    env: [{name: LOG, value: info}, {name: DB, value: db-dev}]
    resources: {requests: {cpu: 100m}}
    readinessProbe: {httpGet: {path: /ready, port: http}}
"#;

    pub fn workload<'a>(
        app: &'a Application,
        entry: &'a EnvironmentEntry,
        strategy: StrategyType,
    ) -> Workload<'a> {
        Workload {
            app,
            entry,
            environment: "dev",
            namespace: "shop-dev",
            strategy,
            progress_deadline: Duration::from_millis(120_500),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::fixtures::{RUN, app, entry, workload};
    use super::*;

    /// Release shop-1.4.2, which fixes the run configuration `app` has.
    fn running(app: &Application) -> Running<'_> {
        Running {
            release: "shop-1.4.2",
            image: "registry.local/team-a/shop@sha256:aa",
            run: &app.spec.run,
            replicas: 3,
            slot: None,
        }
    }

    fn container(d: &Deployment) -> &Container {
        &d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_are_app_and_environment_with_the_slot_for_blue_green() {
        assert_eq!(base_name("shop", "dev"), "shop-dev");
        assert_eq!(deployment_name("shop", "dev", None), "shop-dev");
        assert_eq!(
            deployment_name("shop", "prod", Some(Slot::Blue)),
            "shop-prod-blue"
        );
        assert_eq!(
            deployment_name("shop", "prod", Some(Slot::Green)),
            "shop-prod-green"
        );
    }

    #[test]
    fn child_labels_name_the_application_its_namespace_and_the_environment() {
        let expected = labels(&[
            ("app.kubernetes.io/managed-by", "ferry"),
            ("app.kubernetes.io/name", "shop"),
            ("ferry.dev/application", "shop"),
            ("ferry.dev/application-namespace", "team-a"),
            ("ferry.dev/environment", "dev"),
        ]);
        assert_eq!(child_labels("team-a", "shop", "dev"), expected);
        assert_eq!(
            child_selector("team-a", "shop", "dev"),
            "app.kubernetes.io/managed-by=ferry,app.kubernetes.io/name=shop,\
             ferry.dev/application=shop,ferry.dev/application-namespace=team-a,\
             ferry.dev/environment=dev"
        );
    }

    #[test]
    fn a_deployment_carries_the_release_but_never_selects_by_it() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let w = workload(&app, &entry, StrategyType::RollingUpdate);
        let d = deployment(&w, &running(&app));
        assert_eq!(d.metadata.name.as_deref(), Some("shop-dev"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("shop-dev"));
        assert_eq!(d.metadata.owner_references, None);
        let mut expected = child_labels("team-a", "shop", "dev");
        expected.insert(RELEASE_LABEL.into(), "shop-1.4.2".into());
        assert_eq!(d.metadata.labels.as_ref(), Some(&expected));
        let spec = d.spec.as_ref().unwrap();
        let template = spec.template.metadata.as_ref().unwrap();
        assert_eq!(template.labels.as_ref(), Some(&expected));
        for annotations in [&d.metadata.annotations, &template.annotations] {
            assert_eq!(
                annotations.as_ref().unwrap()[RELEASE_ANNOTATION],
                "shop-1.4.2"
            );
        }
        assert_eq!(
            spec.selector.match_labels,
            Some(labels(&[
                ("app.kubernetes.io/name", "shop"),
                ("ferry.dev/application-namespace", "team-a"),
                ("ferry.dev/environment", "dev"),
            ]))
        );
        // The selector must match the template, or the API server refuses the Deployment.
        for (k, v) in spec.selector.match_labels.iter().flatten() {
            assert_eq!(template.labels.as_ref().unwrap().get(k), Some(v));
        }
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.revision_history_limit, Some(3));
        assert_eq!(container(&d).image.as_deref(), Some(running(&app).image));
        assert_eq!(container(&d).name, CONTAINER);
    }

    #[test]
    fn a_rolling_update_keeps_every_old_pod_until_a_new_one_is_ready() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let d = deployment(
            &workload(&app, &entry, StrategyType::RollingUpdate),
            &running(&app),
        );
        let spec = d.spec.unwrap();
        let strategy = spec.strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
        // 120.5 s rounds up: a shorter deadline than asked would fail rollouts early.
        assert_eq!(spec.progress_deadline_seconds, Some(121));
    }

    #[test]
    fn a_progress_deadline_under_a_second_is_one_second() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let mut w = workload(&app, &entry, StrategyType::RollingUpdate);
        w.progress_deadline = Duration::ZERO;
        let d = deployment(&w, &running(&app));
        assert_eq!(d.spec.unwrap().progress_deadline_seconds, Some(1));
    }

    #[test]
    fn the_environment_overrides_replicas_env_by_name_and_resources() {
        let app = app(RUN);
        let entry = entry(
            r#"
name: dev
replicas: 5
env: [{name: NEW, value: "1"}, {name: LOG, value: debug}]
resources: {limits: {memory: 256Mi}}
"#,
        );
        let w = workload(&app, &entry, StrategyType::RollingUpdate);
        assert_eq!(replicas(&entry, &app.spec.run), 5);
        let d = deployment(&w, &running(&app));
        let env: Vec<(&str, &str)> = container(&d)
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env, [("LOG", "debug"), ("DB", "db-dev"), ("NEW", "1")]);
        let resources = container(&d).resources.clone().unwrap();
        assert_eq!(resources.requests, None, "the entry replaces run.resources");
        assert!(resources.limits.unwrap().contains_key("memory"));

        let plain = super::tests::entry("name: dev");
        let w = workload(&app, &plain, StrategyType::RollingUpdate);
        assert_eq!(replicas(&plain, &app.spec.run), 3);
        let d = deployment(&w, &running(&app));
        assert!(
            container(&d)
                .resources
                .clone()
                .unwrap()
                .requests
                .unwrap()
                .contains_key("cpu")
        );
        assert_eq!(container(&d).env.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn what_runs_is_the_release_s_run_configuration_not_the_application_s() {
        let released = app(RUN);
        let edited = app(&RUN.replace("value: info", "value: trace"));
        let entry = entry("name: dev");
        // The Application was edited after the release was made: its Deployment and Service
        // still run what the release fixes.
        let w = workload(&edited, &entry, StrategyType::RollingUpdate);
        let d = deployment(&w, &running(&released));
        let env = container(&d).env.clone().unwrap_or_default();
        assert_eq!(env[0].value.as_deref(), Some("info"));
        let no_ports = app("    replicas: 1");
        let w = workload(&no_ports, &entry, StrategyType::RollingUpdate);
        assert!(service(&w, &released.spec.run, None).is_some());
    }

    #[test]
    fn ports_probes_and_a_pre_stop_sleep_are_on_the_container() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let d = deployment(
            &workload(&app, &entry, StrategyType::RollingUpdate),
            &running(&app),
        );
        let c = container(&d);
        let ports: Vec<(Option<&str>, i32, Option<&str>)> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.container_port, p.protocol.as_deref()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("http"), 8080, Some("TCP")),
                (Some("metrics"), 9090, Some("TCP"))
            ]
        );
        assert_eq!(c.readiness_probe, app.spec.run.readiness_probe);
        assert_eq!(c.liveness_probe, None);
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.sleep, Some(SleepAction { seconds: 2 }));
    }

    #[test]
    fn the_pod_meets_the_restricted_pod_security_standard() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let d = deployment(
            &workload(&app, &entry, StrategyType::RollingUpdate),
            &running(&app),
        );
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(APP_USER));
        assert_eq!(security.run_as_group, Some(APP_USER));
        assert_eq!(security.fs_group, None);
        assert_eq!(
            security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(10));
        assert_eq!(pod.host_network, None);
        let c = container(&d).security_context.as_ref().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.privileged, Some(false));
        assert_eq!(c.run_as_non_root, Some(true));
        assert_eq!(c.read_only_root_filesystem, Some(false));
        assert_eq!(
            c.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(c.capabilities.as_ref().unwrap().add, None);
    }

    #[test]
    fn blue_green_slots_are_in_the_labels_the_selector_and_the_service_selector() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let w = workload(&app, &entry, StrategyType::BlueGreen);
        let green = Running {
            slot: Some(Slot::Green),
            ..running(&app)
        };
        let d = deployment(&w, &green);
        assert_eq!(d.metadata.name.as_deref(), Some("shop-dev-green"));
        assert_eq!(d.metadata.labels.as_ref().unwrap()[SLOT_LABEL], "green");
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[SLOT_LABEL],
            "green"
        );
        assert_eq!(
            spec.template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()[SLOT_LABEL],
            "green"
        );

        let service = service(&w, &app.spec.run, Some(Slot::Blue)).unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("shop-dev"));
        assert_eq!(
            service.metadata.labels,
            Some(child_labels("team-a", "shop", "dev"))
        );
        let spec = service.spec.unwrap();
        assert_eq!(
            spec.selector,
            Some(labels(&[
                ("app.kubernetes.io/name", "shop"),
                ("ferry.dev/application-namespace", "team-a"),
                ("ferry.dev/environment", "dev"),
                ("ferry.dev/slot", "blue"),
            ]))
        );
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let ports: Vec<(Option<&str>, i32, Option<IntOrString>)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("http"), 8080, Some(IntOrString::String("http".into()))),
                (
                    Some("metrics"),
                    9090,
                    Some(IntOrString::String("metrics".into()))
                )
            ]
        );
    }

    #[test]
    fn a_rolling_update_service_selects_no_slot_and_no_ports_means_no_service() {
        let with_ports = app(&format!("{RUN}    service: {{type: NodePort}}\n"));
        let entry = entry("name: dev");
        let w = workload(&with_ports, &entry, StrategyType::RollingUpdate);
        let spec = service(&w, &with_ports.spec.run, None)
            .unwrap()
            .spec
            .unwrap();
        assert!(!spec.selector.unwrap().contains_key(SLOT_LABEL));
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));

        let without = app("    replicas: 1");
        let w = workload(&without, &entry, StrategyType::RollingUpdate);
        assert_eq!(service(&w, &without.spec.run, None), None);
    }

    #[test]
    fn a_release_label_is_the_name_or_a_short_name_with_a_hash() {
        assert_eq!(release_label_value("shop-1.4.2"), "shop-1.4.2");
        let long = format!("{}-1.4.2", "a".repeat(60));
        let other = format!("{}-1.4.3", "a".repeat(60));
        let value = release_label_value(&long);
        assert_eq!(value, format!("{}-08c214f2d8", "a".repeat(52)), "stable");
        assert!(is_label_value(&value), "{value}");
        assert_ne!(
            value,
            release_label_value(&other),
            "the hash tells them apart"
        );
        // The 52nd character is a '.', trimmed so the value stays valid.
        let dotted = format!("{}.{}", "b".repeat(51), "c".repeat(20));
        let value = release_label_value(&dotted);
        assert!(
            value.starts_with(&format!("{}-", "b".repeat(51))),
            "{value}"
        );
        assert!(is_label_value(&value), "{value}");

        let app = app(RUN);
        let entry = entry("name: dev");
        let d = deployment(
            &workload(&app, &entry, StrategyType::RollingUpdate),
            &Running {
                release: &long,
                ..running(&app)
            },
        );
        assert_eq!(
            d.metadata.labels.as_ref().unwrap()[RELEASE_LABEL],
            release_label_value(&long)
        );
        assert_eq!(
            d.metadata.annotations.as_ref().unwrap()[RELEASE_ANNOTATION],
            long
        );
    }
}
