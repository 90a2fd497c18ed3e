//! The Release: an immutable record of one built version of an Application.
//!
//! Its spec names the image by digest and cannot change once created (a CEL rule on the
//! spec); what changes is its status: where it is deployed and where it was rejected.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::application::RunSpec;
use super::{CommonStatus, Time};

/// Semantic version 2.0.0, as a CEL regular expression (no `v` prefix: Ferry strips it).
pub const SEMVER: &str = "^(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)\
     (-[0-9A-Za-z-]+([.][0-9A-Za-z-]+)*)?([+][0-9A-Za-z-]+([.][0-9A-Za-z-]+)*)?$";

/// An immutable record of a built version of an Application.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Release",
    namespaced,
    derive = "PartialEq",
    status = "ReleaseStatus",
    shortname = "rel",
    category = "ferry",
    doc = "An immutable record of a built version of an Application: version, commit and image digest.",
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Commit", type_ = "string", json_path = ".spec.commit"),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1
    ),
    printcolumn(name = "Environments", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Imported-By",
        type_ = "string",
        json_path = ".spec.importedBy",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.application"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("a Release is immutable; build a new commit (or create a new Release) instead of changing this one"))]
pub struct ReleaseSpec {
    /// The Application this is a release of.
    #[schemars(length(min = 1, max = 42))]
    pub application: String,

    /// Semantic version: the commit's tag without its `v`, or `0.0.0-<short commit>`.
    #[schemars(length(min = 5, max = 128))]
    #[x_kube(validation = Rule::new(format!("self.matches('{SEMVER}')"))
        .message("must be a semantic version such as 1.4.2 or 0.0.0-9fceb02 (no 'v' prefix)"))]
    pub version: String,

    /// The full commit id the image was built from.
    #[schemars(length(min = 40, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9a-f]{40}|[0-9a-f]{64})$')")
        .message("must be a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits"))]
    pub commit: String,

    /// The image, by digest: `repository@sha256:<64 hex digits>`.
    #[schemars(length(min = 1, max = 600))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+@sha256:[a-f0-9]{64}$')")
        .message("must name the image by digest, as repository@sha256:<64 hex digits>; a tag can move, a digest cannot"))]
    pub image: String,

    /// The BuildJob that produced the image, if Ferry built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub build_job: Option<String>,

    /// Who imported this Release, for one made by hand rather than by Ferry's build: the
    /// creator's username as the API server authenticated it (`kubectl auth whoami`). The
    /// admission policy `ferry-import` refuses a Release whose `importedBy` is not its
    /// creator's, and one that a creator other than Ferry makes without it; being part of
    /// the immutable spec, it stays what the API server checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub imported_by: Option<String>,

    /// Work items referenced by commit messages since the previous release (`#123`,
    /// `PROJ-42`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub work_items: Vec<String>,

    /// Free-form release notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub notes: Option<String>,

    /// The run configuration this release fixes: what its pods run with in every environment
    /// (the Application's `spec.run` when the release was made). Ferry copies it into every
    /// Release it makes, and a change of the Application's `spec.run` becomes a new Release
    /// with the same image and the new configuration (version `<version>+run.<hash>`),
    /// promoted through the environments like a new commit. An imported Release may leave it
    /// out: it then runs with the Application's configuration as it was when Ferry first saw
    /// the Release, which Ferry records in `status.run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSpec>,
}

/// Where the release runs and where it was turned away.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = CommonStatus::describe_conditions(
    "`Ready`, and `Stalled` while abnormal."
))]
pub struct ReleaseStatus {
    /// The generation this status describes and the conditions.
    #[serde(flatten)]
    pub common: CommonStatus,

    /// One line for `kubectl get`: each environment it reached, with its state there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,

    /// Per environment it reached: deployed, verified, promoted, or rejected and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<ReleaseEnvironment>,

    /// For a Release without `spec.run`: the run configuration Ferry fixed for it, the
    /// Application's `spec.run` when Ferry first saw the Release. Written once, by Ferry only
    /// (status is refused to anyone else at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSpec>,

    /// What this Release runs, as one value: `sha256:` over its image, commit and the run
    /// configuration it fixes, computed by Ferry once the run configuration is fixed. Each
    /// environment records it, with the Release's UID, when it first rolls the Release out;
    /// a Release whose UID or digest no longer matches is never rolled out there again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Release {
    /// The content digest of what this Release runs (see [`ReleaseStatus::digest`]), from its
    /// spec and the run configuration it fixes; `None` while it fixes none.
    pub fn content_digest(&self) -> Option<String> {
        content_digest(&self.spec.image, &self.spec.commit, self.fixed_run()?)
    }

    /// The run configuration this release fixes: `spec.run`, else the one Ferry recorded in
    /// `status.run`. `None` until Ferry recorded one: such a Release is not rolled out yet.
    pub fn fixed_run(&self) -> Option<&RunSpec> {
        self.spec
            .run
            .as_ref()
            .or_else(|| self.status.as_ref()?.run.as_ref())
    }
}

/// `sha256:<hex>` over the JSON of `{image, commit, run}`: what decides what runs. Serde
/// writes struct fields in declaration order and maps sorted, so the same content always gives
/// the same digest. `None` only if the run configuration cannot be serialized.
pub fn content_digest(image: &str, commit: &str, run: &RunSpec) -> Option<String> {
    use sha2::{Digest, Sha256};
    let content = serde_json::json!({"image": image, "commit": commit, "run": run});
    let bytes = serde_json::to_vec(&content).ok()?;
    let hash = Sha256::digest(&bytes);
    Some(format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The release in one environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseEnvironment {
    /// The Environment's name.
    pub name: String,
    /// What became of the release there.
    pub state: ReleaseState,
    /// When it reached this state.
    pub since: Time,
    /// Why (for a rejection: the failing signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The verdict of its last rollout there: `RolloutSucceeded`, or the failing signal's
    /// reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The Environment's verification of it there, once run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<ReleaseVerification>,
}

/// How the verification of a release in an environment went.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseVerification {
    /// Whether it passed; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// What it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The end of the test pod's log, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// What became of a release in one environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// Rolling out.
    Deploying,
    /// Serving, healthy and verified.
    Deployed,
    /// The candidate of a `Manual` environment, waiting for a person to pin it.
    AwaitingApproval,
    /// The next release to come here, waiting for its turn: behind a rollout under way, or
    /// behind a pin of another release.
    Candidate,
    /// Failed there (rolled back, or failed its verification); never promoted further.
    Rejected,
    /// No longer there: replaced by a newer release, or the environment left its Application
    /// (or the Application is gone).
    Superseded,
}
