//! The BuildJob: one build of one commit of one Application.
//!
//! Ferry creates one per (Application, commit); a person may create one to rebuild. The spec is
//! a snapshot of the Application's source, build and image settings at that moment, and cannot
//! change afterwards, so the build is reproducible. The status follows the build pod and, on
//! success, names the verified image digest and the Release it produced.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::{BuildSpec, ImageSpec, Repository};
use super::{CommonStatus, Time};

/// One build of one commit of an Application.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "BuildJob",
    namespaced,
    status = "BuildJobStatus",
    shortname = "bj",
    category = "ferry",
    doc = "One build of one commit of an Application; its spec is an immutable snapshot.",
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(name = "Commit", type_ = "string", json_path = ".spec.commit"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Release", type_ = "string", json_path = ".status.release"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    selectable = ".spec.application"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("a BuildJob's spec is a snapshot and cannot change; create a new BuildJob to build again"))]
pub struct BuildJobSpec {
    /// The Application this build belongs to.
    #[schemars(length(min = 1, max = 42))]
    pub application: String,

    /// The full commit id to build (40 or 64 lowercase hex digits).
    #[schemars(length(min = 40, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9a-f]{40}|[0-9a-f]{64})$')")
        .message("must be a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits; resolve a branch or tag with `git rev-parse` first"))]
    pub commit: String,

    /// Where to fetch the commit from: the repository, not a branch, since the commit is fixed.
    pub source: Repository,

    /// How to build it.
    pub build: BuildSpec,

    /// Where to push the image.
    pub image: ImageSpec,
}

/// What happened to the build.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = CommonStatus::describe_conditions(
    "`Ready`, `Succeeded`, and `Stalled` or `Reconciling` while abnormal or under way."
))]
pub struct BuildJobStatus {
    /// The generation this status describes and the conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BuildPhase>,

    /// The build pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// When the build pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the build finished, either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// The pushed image by digest (`repository@sha256:...`), once verified in the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// The Release this build produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,

    /// Why the build failed, with the tail of the failing step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BuildFailure>,
}

/// The phase of a build.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// Why a build failed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildFailure {
    /// The step that failed: fetch, build or publish.
    pub step: String,
    /// A CamelCase reason.
    pub reason: String,
    /// What went wrong, in words.
    pub message: String,
    /// The last lines of the failing step's output (credentials are never written there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

impl BuildJob {
    /// The Secrets this build names, with the field that names each.
    pub fn secret_refs(&self) -> Vec<(&'static str, &str)> {
        [
            (
                "spec.source.credentialsSecret",
                self.spec.source.credentials_secret.as_deref(),
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
