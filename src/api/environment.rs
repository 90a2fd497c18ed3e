//! The Environment: one stage of the delivery pipeline (dev, test, staging, prod).
//!
//! It says where applications run (the target namespace, which must consent), where releases
//! come from (the upstream Environment), who lets them in (automatic or manual approval), how
//! they roll out, what counts as healthy, whether a failure rolls back by itself, and what must
//! pass before a release moves on.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::{
    DNS_LABEL, DURATION_SYNTAX, IMAGE_REF_MESSAGE, IMAGE_REF_RULE, REQUEST_PATH_MESSAGE,
    REQUEST_PATH_RULE,
};
use super::{CommonStatus, Duration};

/// Environment names are at most this long; see `application::MAX_NAME_LENGTH`.
pub const MAX_NAME_LENGTH: usize = 20;

/// A stage of the delivery pipeline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Environment",
    namespaced,
    status = "EnvironmentStatus",
    shortname = "env",
    category = "ferry",
    doc = "A stage of the delivery pipeline: target namespace, upstream, approval, rollout, health and rollback policy.",
    printcolumn(name = "Upstream", type_ = "string", json_path = ".spec.upstream"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.targetNamespace"),
    printcolumn(name = "Approval", type_ = "string", json_path = ".spec.approval"),
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy.type"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 20 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("Environment names must be DNS labels of at most 20 characters (lowercase letters, digits and '-', starting with a letter), so that <application>-<environment> names a Service"),
    validation = Rule::new("!has(self.spec.upstream) || self.spec.upstream != self.metadata.name")
        .message("an Environment cannot be its own upstream; name the Environment it promotes from, or leave upstream unset for the first stage")
        .field_path(".spec.upstream")
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Namespace the applications run in (default: the Environment's own namespace). Another
    /// namespace must consent with the annotation `ferry.dev/allow-deploy-from` listing this
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("must be a namespace name: at most 63 lowercase letters, digits and '-'"))]
    pub target_namespace: Option<String>,

    /// The Environment releases are promoted from, once healthy (and verified) there. Unset
    /// for the first stage, which receives every new Release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS_LABEL}')"))
        .message("must name an Environment in the same namespace"))]
    pub upstream: Option<String>,

    /// Whether a healthy upstream release comes here by itself (`Automatic`, the default) or
    /// waits for a person to pin it in the Application (`Manual`). In a first stage (no
    /// upstream), `Manual` makes every new release wait for a pin. Creating, deleting or
    /// changing the spec of a `Manual` Environment, or an Application's entry for it, takes the
    /// verb `approve` on it.
    #[serde(default)]
    pub approval: Approval,

    /// How a new release replaces the old one.
    #[serde(default)]
    pub strategy: Strategy,

    /// What counts as healthy after a rollout.
    #[serde(default)]
    pub health: HealthPolicy,

    /// What happens when a rollout fails its health checks.
    #[serde(default)]
    pub rollback: RollbackPolicy,

    /// Checks run after a healthy rollout, before the release may be promoted further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// Whether promotion into an environment needs a person.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Approval {
    #[default]
    Automatic,
    Manual,
}

/// A rollout strategy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// `RollingUpdate` (default: new pods come up before old ones go, `maxUnavailable: 0`) or
    /// `BlueGreen` (the new version runs beside the old; the Service switches when it is
    /// healthy and the old one stays up through the stabilization window, so a rollback is a
    /// switch back).
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StrategyType {
    #[default]
    RollingUpdate,
    BlueGreen,
}

/// What counts as healthy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.stabilizationWindow) <= duration(self.progressDeadline)")
    .message("health.stabilizationWindow must not be longer than health.progressDeadline"))]
pub struct HealthPolicy {
    /// How long pods may take to become ready before the rollout fails (default 2m).
    #[serde(default = "default_progress_deadline")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('10s') && duration(self) <= duration('1h')"))
        .message("must be a duration between 10s and 1h, for example 2m"))]
    pub progress_deadline: Duration,

    /// How long after becoming ready the pods must stay ready, under `maxRestarts`, and pass
    /// the HTTP checks before the release counts as healthy (default 30s).
    #[serde(default = "default_stabilization_window")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) <= duration('1h')"))
        .message("must be a duration of at most 1h, for example 30s"))]
    pub stabilization_window: Duration,

    /// Container restarts tolerated across the new pods during the rollout and the window
    /// (default 2). A crash loop fails the rollout at once, without waiting for the deadline.
    #[serde(default = "default_max_restarts")]
    #[schemars(range(min = 0, max = 100))]
    pub max_restarts: i32,

    /// HTTP requests Ferry sends through the Service during the window, with thresholds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub http_checks: Vec<HttpCheck>,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            progress_deadline: default_progress_deadline(),
            stabilization_window: default_stabilization_window(),
            max_restarts: default_max_restarts(),
            http_checks: Vec::new(),
        }
    }
}

/// Where a request Ferry sends to the application through its Service goes: an HTTP check's
/// or a verification's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    /// Request path, for example /healthz.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(REQUEST_PATH_RULE).message(REQUEST_PATH_MESSAGE))]
    pub path: String,

    /// Name of the application port to send to (default the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port: Option<String>,
}

/// A periodic HTTP check with error-rate and latency thresholds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.timeout) <= duration(self.interval)")
    .message("an HTTP check's timeout must not be longer than its interval"))]
pub struct HttpCheck {
    /// Where the requests go.
    #[serde(flatten)]
    pub request: ServiceRequest,

    /// Time between requests (default 2s).
    #[serde(default = "default_check_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('100ms') && duration(self) <= duration('5m')"))
        .message("must be a duration between 100ms and 5m, for example 2s"))]
    pub interval: Duration,

    /// A request that takes longer counts as failed (default 1s).
    #[serde(default = "default_check_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('10ms')"))
        .message("must be a duration of at least 10ms, for example 1s"))]
    pub timeout: Duration,

    /// Highest tolerated share of failed requests (5xx, timeouts, refused connections), as
    /// a percentage (default "5%").
    #[serde(default = "default_max_error_rate")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.matches('^(100|[1-9]?[0-9])([.][0-9]+)?%$') && !self.matches('^100[.]0*[1-9]')")
        .message("must be a percentage between 0% and 100%, for example 5% or 0.5%"))]
    pub max_error_rate: String,

    /// Highest tolerated 95th-percentile latency, for example 300ms. Not checked when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) > duration('0s')"))
        .message("must be a positive duration, for example 300ms"))]
    pub max_latency_p95: Option<Duration>,
}

/// What happens when a rollout fails.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// Roll back to the last healthy release by itself (default true). When false, a failed
    /// rollout stays `Degraded` until a person pins a release.
    #[serde(default = "default_true")]
    pub automatic: bool,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self { automatic: true }
    }
}

/// Checks that must pass after a healthy rollout before the release moves on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.image) || (has(self.httpGets) && size(self.httpGets) > 0)")
    .message("verification needs a test pod (verification.image) or at least one verification.httpGets entry"))]
#[x_kube(validation = Rule::new("has(self.image) || !has(self.command)")
    .message("verification.command needs verification.image"))]
pub struct Verification {
    /// Image of a test pod run against the new release. It gets `SERVICE_URL` (the
    /// application's Service) in its environment and must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_REF_RULE).message(IMAGE_REF_MESSAGE))]
    pub image: Option<String>,

    /// Command of the test pod; `$(SERVICE_URL)` is expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub command: Option<Vec<String>>,

    /// Requests that must answer with the expected status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub http_gets: Vec<HttpGet>,

    /// How long verification may take (default 5m).
    #[serde(default = "default_verification_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('1s') && duration(self) <= duration('1h')"))
        .message("must be a duration between 1s and 1h, for example 5m"))]
    pub timeout: Duration,
}

/// One verification request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    /// Where the request goes.
    #[serde(flatten)]
    pub request: ServiceRequest,

    /// Expected HTTP status (default 200).
    #[serde(default = "default_expect_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: i32,
}

/// What Ferry observed about the environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = CommonStatus::describe_conditions(
    "`Ready`, and `Stalled` while abnormal (missing upstream, a cycle, a target namespace that does not exist or does not consent)."
))]
pub struct EnvironmentStatus {
    /// The generation this status describes and the conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// The namespace applications run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,

    /// The chain of Environments from the first stage down to this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipeline: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_progress_deadline() -> Duration {
    Duration::from(std::time::Duration::from_secs(120))
}

fn default_stabilization_window() -> Duration {
    Duration::from(std::time::Duration::from_secs(30))
}

fn default_max_restarts() -> i32 {
    2
}

fn default_check_interval() -> Duration {
    Duration::from(std::time::Duration::from_secs(2))
}

fn default_check_timeout() -> Duration {
    Duration::from(std::time::Duration::from_secs(1))
}

fn default_max_error_rate() -> String {
    "5%".to_owned()
}

fn default_verification_timeout() -> Duration {
    Duration::from(std::time::Duration::from_secs(300))
}

fn default_expect_status() -> i32 {
    200
}

impl Environment {
    /// The namespace this environment deploys into.
    pub fn target_namespace(&self) -> Option<&str> {
        self.spec
            .target_namespace
            .as_deref()
            .or(self.metadata.namespace.as_deref())
    }
}
