//! The Application: what to build, how to run it, and which Environments it goes through.
//!
//! The spec is what a team writes once (or keeps in a GitOps repository). Per environment it
//! may override replicas, env vars and resources, and pin a release: pinning the candidate
//! approves it, pinning an older release rolls back, removing the pin lets the environment
//! follow its upstream again. The status is Ferry's view: the latest commit and build, and per
//! environment what runs, what ran before, what waits, and a bounded history.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::environment::StrategyType;
use super::shared::{
    BuildSpec, DNS_LABEL, ImageSpec, SourceSpec, bound_env, bound_resources, bound_unique_env,
};
use super::{CommonStatus, Condition, EnvVar, Probe, ResourceRequirements, Time};

/// Application names are at most this long, so that `<application>-<environment>` (the name of
/// the Deployment and Service Ferry runs in each environment) is a valid 63-character label.
pub const MAX_NAME_LENGTH: usize = 42;

/// An application Ferry builds from git and delivers through a chain of Environments.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "app",
    shortname = "apps",
    category = "ferry",
    doc = "An application Ferry builds from git and delivers through a chain of Environments.",
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.source.branch"),
    printcolumn(name = "Commit", type_ = "string", json_path = ".status.latestCommit"),
    printcolumn(name = "Environments", type_ = "string", json_path = ".status.summary"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 42 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("Application names must be DNS labels of at most 42 characters (lowercase letters, digits and '-', starting with a letter), so that <application>-<environment> names a Service")
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The git repository and branch to build.
    pub source: SourceSpec,

    /// How a commit is built and tested, and what the runtime image is made of.
    pub build: BuildSpec,

    /// Where the built images are pushed.
    pub image: ImageSpec,

    /// How the application runs in every environment, unless an environment overrides it.
    #[serde(default)]
    pub run: RunSpec,

    /// The Environments this application goes through. Their order is given by each
    /// Environment's `upstream`; this list says which ones apply to this application and
    /// holds per-environment overrides and pins.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub environments: Vec<EnvironmentEntry>,

    /// How many finished BuildJobs of this application to keep (default 10). Releases are
    /// kept while they run anywhere.
    #[serde(default = "default_build_history")]
    #[schemars(range(min = 1, max = 100))]
    pub build_history_limit: i32,

    /// How many history entries to keep per environment (default 20).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,
}

/// How the application runs: the Deployment and Service Ferry creates in each environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.ingress) || (has(self.ports) && size(self.ports) > 0)")
    .message("run.ingress needs at least one entry in run.ports to route to"))]
#[x_kube(validation = Rule::new("!has(self.ingress) || !has(self.ingress.port) || (has(self.ports) && self.ports.exists(p, p.name == self.ingress.port))")
    .message("run.ingress.port must name one of run.ports"))]
// A probe's port is a number or a name (int-or-string); `string()` reads both, since the
// local CEL evaluator `tests/crds.rs` uses has no `type()`.
#[x_kube(validation = Rule::new("!has(self.readinessProbe) || !has(self.readinessProbe.httpGet) || string(self.readinessProbe.httpGet.port).matches('^[0-9]+$') || (has(self.ports) && self.ports.exists(p, p.name == string(self.readinessProbe.httpGet.port)))")
    .message("run.readinessProbe.httpGet.port must be a port number or the name of one of run.ports"))]
#[x_kube(validation = Rule::new("!has(self.readinessProbe) || !has(self.readinessProbe.tcpSocket) || string(self.readinessProbe.tcpSocket.port).matches('^[0-9]+$') || (has(self.ports) && self.ports.exists(p, p.name == string(self.readinessProbe.tcpSocket.port)))")
    .message("run.readinessProbe.tcpSocket.port must be a port number or the name of one of run.ports"))]
#[x_kube(validation = Rule::new("!has(self.livenessProbe) || !has(self.livenessProbe.httpGet) || string(self.livenessProbe.httpGet.port).matches('^[0-9]+$') || (has(self.ports) && self.ports.exists(p, p.name == string(self.livenessProbe.httpGet.port)))")
    .message("run.livenessProbe.httpGet.port must be a port number or the name of one of run.ports"))]
#[x_kube(validation = Rule::new("!has(self.livenessProbe) || !has(self.livenessProbe.tcpSocket) || string(self.livenessProbe.tcpSocket.port).matches('^[0-9]+$') || (has(self.ports) && self.ports.exists(p, p.name == string(self.livenessProbe.tcpSocket.port)))")
    .message("run.livenessProbe.tcpSocket.port must be a port number or the name of one of run.ports"))]
pub struct RunSpec {
    /// Number of pods (default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Ports the application listens on; the Service exposes the same ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<PortSpec>,

    /// Environment variables of the application container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), transform = bound_unique_env)]
    pub env: Vec<EnvVar>,

    /// Compute resources of the application container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = bound_resources)]
    pub resources: Option<ResourceRequirements>,

    /// Readiness probe. Ferry's health checks count a pod healthy only while it is ready, so
    /// an application with a meaningful readiness endpoint should declare it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,

    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,

    /// Service in front of the pods (created when `ports` is not empty).
    #[serde(default)]
    pub service: ServiceSettings,

    /// Optional Ingress routing a host name to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            ports: Vec::new(),
            env: Vec::new(),
            resources: None,
            readiness_probe: None,
            liveness_probe: None,
            service: ServiceSettings::default(),
            ingress: None,
        }
    }
}

/// A port the application listens on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Port name, used by probes, the Service and HTTP checks (an IANA service name: at most
    /// 15 lowercase letters, digits and '-').
    #[schemars(length(min = 1, max = 15))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS_LABEL}')"))
        .message("port names are at most 15 lowercase letters, digits and '-', starting with a letter, for example http"))]
    pub name: String,

    /// Container port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of a port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

/// Settings of the Service Ferry creates for the application.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Service type (default ClusterIP).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

/// The Kubernetes Service types Ferry can create.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// An Ingress rule for the application.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name, for example shop.example.com. In each environment but the last, Ferry
    /// prefixes it with the environment name (dev.shop.example.com).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+$')")
        .message("must be a fully qualified host name such as shop.example.com"))]
    pub host: String,

    /// Path prefix (default `/`).
    #[serde(default = "default_ingress_path")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must start with '/'"))]
    pub path: String,

    /// Name of the port in `run.ports` to route to (default the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port: Option<String>,

    /// IngressClass to use; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
}

/// One Environment the application goes through, with its overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentEntry {
    /// Name of an Environment in the Application's namespace.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS_LABEL}')"))
        .message("must name an Environment: at most 20 lowercase letters, digits and '-', starting with a letter"))]
    pub name: String,

    /// Number of pods in this environment, instead of `run.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Environment variables added to (or replacing, by name) `run.env` in this environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // Not `bound_unique_env`: the rule against a name set twice costs too much here.
    #[schemars(length(max = 256), transform = bound_env)]
    pub env: Vec<EnvVar>,

    /// Compute resources in this environment, instead of `run.resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = bound_resources)]
    pub resources: Option<ResourceRequirements>,

    /// Pins this environment to one release. Pinning the candidate approves it; pinning an
    /// older release rolls back; while pinned, nothing is promoted here automatically.
    /// Remove the pin to follow the upstream environment again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
}

/// A release chosen by a person, with the reason recorded in the history.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// Name of a Release of this application.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("must be the name of a Release, for example shop-1.4.2"))]
    pub release: String,

    /// Why: a change ticket, an incident, an approval. Recorded in the history.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0")
        .message("a pin needs a reason, for example \"CHG-1234 approved by the change board\" or \"rollback: INC-77\""))]
    pub reason: String,

    /// Who pins: your user name as the API server authenticates it (`kubectl auth whoami`).
    /// The `ferry-approve` admission policy refuses a pin whose `by` is not the user writing
    /// it, so the history records the person who approved, pinned or rolled back, not a name
    /// any client could choose. Required on every pin set or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub by: Option<String>,
}

/// What Ferry observed and did for the application.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = CommonStatus::describe_conditions(
    "`Ready`, and `Stalled` or `Reconciling` while something is abnormal."
))]
pub struct ApplicationStatus {
    /// The generation this status describes and the conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The newest commit seen on the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_commit: Option<String>,

    /// The BuildJob of the newest commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_build: Option<String>,

    /// The newest Release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_release: Option<String>,

    /// One line for `kubectl get`: each environment in pipeline order with its release or phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,

    /// Per environment: what runs, what ran before, what waits, and the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<EnvironmentState>,
}

/// The application in one environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentState {
    /// The Environment's name.
    pub name: String,

    /// Where the environment stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The release serving in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,

    /// The last release that was healthy here before `current`: where a rollback goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,

    /// A release waiting to come here (for approval, or for its upstream to be healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,

    /// `Progressing`, `Degraded`, `RolledBack`, `AwaitingApproval` for this environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Rollouts, promotions, approvals, pins, rollbacks and superseded releases, newest first,
    /// at most `spec.historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,

    /// The rollout under way, or the last one with its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// With `BlueGreen`, the slot whose Deployment serves `current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,

    /// Releases that failed here (rolled back, or left `Degraded`), newest first, at most 20:
    /// never rolled out here again unless a person pins one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,

    /// The Releases this environment runs, ran before (`previous`) or rolls out, each as it was
    /// when first rolled out here: its UID and content digest. A Release of that name whose UID
    /// or digest differs now (deleted and made again, say) is not the one that was judged and
    /// approved: it is never rolled out, and what runs stays as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<BoundRelease>,
}

/// A Release as an environment first rolled it out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BoundRelease {
    /// The Release's name.
    pub name: String,
    /// Its `metadata.uid` then.
    pub uid: String,
    /// Its content digest then (`status.digest` of the Release).
    pub digest: String,
}

/// One rollout of one release into an environment, from its start to its verdict.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The Release rolling out.
    pub release: String,
    /// The healthy release it replaces, where a rollback goes; none for a first rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `Rollout` for a new release, `Rollback` for a return to the previous one.
    pub kind: HistoryKind,
    /// The strategy it rolls out with, fixed when it starts.
    pub strategy: StrategyType,
    /// With `BlueGreen`, the slot whose Deployment runs `release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// Why it started: the newest release, a pin and its reason, or the failing signal.
    pub reason: String,
    /// When it started: the progress deadline counts from here.
    pub started: Time,
    /// When all its pods were first ready (and, with `BlueGreen`, the Service switched to
    /// them): the stabilization window counts from here. For a rollback, when the previous
    /// release was serving all traffic again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Time>,
    /// For a rollback, the failed verdict it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Verdict>,
    /// The Environment's verification, once the stabilization window passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationRun>,
    /// The verdict, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// A verification of a rollout: a test pod, or HTTP GETs, after the stabilization window.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRun {
    /// When it started: its timeout counts from here.
    pub started: Time,
    /// Whether it passed; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// What it found, for example "test pod shop-staging-verify-… exited 1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The end of the test pod's log, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// How a rollout ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Whether the release proved healthy.
    pub healthy: bool,
    /// `RolloutSucceeded`, or the failing signal's reason (`CrashLoop`, `ErrorRateExceeded`, ...).
    pub reason: String,
    /// When the verdict was given.
    pub time: Time,
    /// When the failing signal was first seen (a crash, a pull error, a failed request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_time: Option<Time>,
    /// The signal and its figures, for example "3 of 20 requests to /healthz failed (15% >
    /// 5%)".
    pub message: String,
    /// For a failed verification by a test pod, the end of its log (so a rollback's `cause`
    /// keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// One of the two Deployments of a `BlueGreen` environment.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Slot {
    #[serde(rename = "blue")]
    Blue,
    #[serde(rename = "green")]
    Green,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    /// Its name in object names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }
}

/// Where an environment stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing deployed yet.
    Pending,
    Progressing,
    Healthy,
    Degraded,
    RolledBack,
    AwaitingApproval,
    Pinned,
}

/// One event in an environment's history.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The Release concerned.
    pub release: String,
    /// The release that served before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When it happened.
    pub time: Time,
    /// What kind of change it was.
    pub kind: HistoryKind,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it happened, in words: the pin's reason, the upstream it came from, or the failing
    /// signal.
    pub reason: String,
    /// Who asked for it: `ferry` for what Ferry does by itself; for a pin, its `by`: the user
    /// the API server authenticated when the pin was written (checked by `ferry-approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// For a rollout a person pinned: the pin's reason, as written. A release that failed here
    /// is rolled out again only under a pin with another reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_reason: Option<String>,
    /// The DeliveryRecord that keeps this entry once it has its outcome: the history
    /// survives a backup and restore through those objects (absent in a record itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// What kind of change a history entry records.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryKind {
    /// The newest release, into the first environment.
    Rollout,
    /// A release healthy and verified upstream, into an `Automatic` environment.
    Promotion,
    /// A pin of the candidate: a person approved it.
    Approval,
    /// A pin of another release.
    Pin,
    /// A pin of a release older than the one that ran: a person rolled back.
    ManualRollback,
    /// A pin of a release that failed upstream or here: allowed, and recorded as an override.
    Override,
    /// Ferry went back to the last healthy release after a failed rollout.
    Rollback,
    /// A candidate replaced by a newer one before it was rolled out here.
    Superseded,
}

impl HistoryKind {
    /// Its name, as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rollout => "Rollout",
            Self::Promotion => "Promotion",
            Self::Approval => "Approval",
            Self::Pin => "Pin",
            Self::ManualRollback => "ManualRollback",
            Self::Override => "Override",
            Self::Rollback => "Rollback",
            Self::Superseded => "Superseded",
        }
    }
}

/// How a change ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InProgress,
    Succeeded,
    Failed,
    /// Never rolled out (a superseded candidate).
    Skipped,
}

fn default_replicas() -> i32 {
    1
}

fn default_build_history() -> i32 {
    10
}

fn default_history_limit() -> i32 {
    20
}

fn default_ingress_path() -> String {
    "/".to_owned()
}

impl Application {
    /// The Secrets this application names, with the field that names each.
    pub fn secret_refs(&self) -> Vec<(&'static str, &str)> {
        let source = &self.spec.source;
        [
            (
                "spec.source.credentialsSecret",
                source.repository.credentials_secret.as_deref(),
            ),
            (
                "spec.source.webhookSecret",
                source.webhook_secret.as_deref(),
            ),
            (
                "spec.image.pushSecret",
                self.spec.image.push_secret.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(field, name)| name.map(|n| (field, n)))
        .collect()
    }
}
