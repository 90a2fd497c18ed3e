//! Spec pieces that more than one kind carries: where the source lives, how to build it and
//! where the image goes. An Application holds them as the user wrote them; a BuildJob holds a
//! copy taken when the build was created, so a build is reproducible after the Application
//! changes.
//!
//! The CEL rules and their messages are constants, so that every field of the same shape says
//! the same thing when it is wrong.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, ResourceRequirements};

/// A DNS-1035 label: what Kubernetes requires of Service names and most object names.
pub const DNS_LABEL: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

const GIT_URL_RULE: &str = "self.matches('^(https?|ssh|git)://[^ ]+$') || \
     self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^ ]+$')";
const GIT_URL_MESSAGE: &str = "must be a git URL with scheme http, https, ssh or git \
     (for example https://git.example.com/team/app.git) or scp-like user@host:path; local paths \
     and file:// URLs are not allowed";

const SUB_PATH_RULE: &str = "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')";
const SUB_PATH_MESSAGE: &str = "must be a path relative to the repository root \
     without '..' segments, for example services/shop";

pub(crate) const SECRET_NAME_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
pub(crate) const SECRET_NAME_MESSAGE: &str = "must be the name of a Secret in the same namespace: \
     lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";

pub(crate) const IMAGE_REF_RULE: &str = "self.matches('^[^ :@/][^ ]*$')";
pub(crate) const IMAGE_REF_MESSAGE: &str =
    "must be an image reference such as registry.example.com/tools/builder:1 (no spaces)";

pub(crate) const REPOSITORY_RULE: &str = "self.matches('^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?\
     (/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+$')";
pub(crate) const REPOSITORY_MESSAGE: &str = "must be a registry host and repository path without \
     tag or digest, for example registry.example.com/team-a/shop; Ferry adds the tag and records \
     the digest itself";

pub(crate) const ABSOLUTE_PATH_RULE: &str =
    "self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')";
pub(crate) const ABSOLUTE_PATH_MESSAGE: &str =
    "must be an absolute path inside the build container without '..' segments, for example /out";

/// Kubernetes' environment variable names (as the API server checks them in a Pod), on a list
/// of `EnvVar`: the type is Kubernetes', so the rule sits on the list that holds it.
const ENV_NAMES_RULE: &str = "self.all(e, e.name.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$'))";
const ENV_NAMES_MESSAGE: &str = "environment variable names are letters, digits, '_', \
     '-' and '.', not starting with a digit, for example LOG_LEVEL";
/// The same name twice in one list: which one wins would be a guess (and an environment's
/// override replaces a variable by name).
const ENV_UNIQUE_RULE: &str = "self.all(e, self.exists_one(f, f.name == e.name))";
const ENV_UNIQUE_MESSAGE: &str = "each environment variable may be set only once in a list";
const ENV_VALUE_RULE: &str = "self.all(e, !has(e.valueFrom) || !has(e.value) || e.value == '')";
const ENV_VALUE_MESSAGE: &str = "an environment variable takes either value or valueFrom, not both";

/// Resource quantities the Pod will accept: `isQuantity` (Kubernetes' CEL quantity library),
/// not negative, and a request no larger than its limit. Values are int-or-string, hence
/// `string(...)`. Without these the Application is stored and only the Pod is refused, late.
const QUANTITIES_RULE: &str = "(!has(self.limits) || self.limits.all(k, \
     isQuantity(string(self.limits[k])) && \
     !quantity(string(self.limits[k])).isLessThan(quantity('0')))) && \
     (!has(self.requests) || self.requests.all(k, isQuantity(string(self.requests[k])) && \
     !quantity(string(self.requests[k])).isLessThan(quantity('0'))))";
const QUANTITIES_MESSAGE: &str = "resource requests and limits must be quantities of \
     at least 0, for example cpu: 250m, memory: 256Mi";
const REQUESTS_WITHIN_LIMITS_RULE: &str = "!has(self.limits) || !has(self.requests) || \
     self.requests.all(k, !(k in self.limits) || !isQuantity(string(self.requests[k])) || \
     !isQuantity(string(self.limits[k])) || \
     quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)";
const REQUESTS_WITHIN_LIMITS_MESSAGE: &str = "a resource request must not be larger than its limit";

/// A path Ferry sends an HTTP request to: URL path (and query) characters only, so that no
/// space, '#' or '\\' changes where the request goes; no '..' segment; not '//' at the start,
/// which a client would read as a host name.
pub(crate) const REQUEST_PATH_RULE: &str = "self.matches(\"^/([-A-Za-z0-9._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f][0-9A-Fa-f])*$\") \
     && !self.startsWith('//') && !self.matches('(^|/)[.][.]([/?]|$)')";
pub(crate) const REQUEST_PATH_MESSAGE: &str = "must be a URL path starting with '/', for example \
     /healthz: letters, digits and -._~!$&'()*+,;=:@/? or %XX escapes, no spaces, '#' or '\\', \
     no '..' segments, not starting with '//'";

/// The longest environment variable name the rules accept, and the most resources a
/// container may name: the API server refuses a CRD whose rules could cost too much on the
/// largest input, and Kubernetes' own types bound neither.
const MAX_ENV_NAME: usize = 128;
const MAX_RESOURCES: usize = 16;
const MAX_QUANTITY: usize = 64;

/// A list of `EnvVar` in a spec: its names bounded (the schema of Kubernetes' type has no
/// `maxLength`), so that the rules on the list stay within the API server's cost budget, and
/// its rules: valid names, and `value` or `valueFrom`, not both. A name set twice is let
/// through; see [`bound_unique_env`].
pub(crate) fn bound_env(schema: &mut schemars::Schema) {
    bound_env_names(schema);
    add_rules(
        schema,
        &[
            (ENV_NAMES_RULE, ENV_NAMES_MESSAGE),
            (ENV_VALUE_RULE, ENV_VALUE_MESSAGE),
        ],
    );
}

/// [`bound_env`], and each name set only once. An environment's list has no such rule (with
/// 16 environments its cost exceeds the API server's budget); `decide::run_spec::check`
/// refuses a repeated name there before anything is created.
pub(crate) fn bound_unique_env(schema: &mut schemars::Schema) {
    bound_env_names(schema);
    add_rules(
        schema,
        &[
            (ENV_NAMES_RULE, ENV_NAMES_MESSAGE),
            (ENV_UNIQUE_RULE, ENV_UNIQUE_MESSAGE),
            (ENV_VALUE_RULE, ENV_VALUE_MESSAGE),
        ],
    );
}

fn bound_env_names(schema: &mut schemars::Schema) {
    if let Some(name) = schema
        .pointer_mut("/items/properties/name")
        .and_then(|n| n.as_object_mut())
    {
        name.insert("maxLength".into(), MAX_ENV_NAME.into());
    }
}

/// A `ResourceRequirements` in a spec: its limits and requests bounded (how many, and how long
/// each quantity), for the same reason as `bound_env`, and its rules: quantities of at least
/// 0, and no request larger than its limit.
pub(crate) fn bound_resources(schema: &mut schemars::Schema) {
    add_rules(
        schema,
        &[
            (QUANTITIES_RULE, QUANTITIES_MESSAGE),
            (REQUESTS_WITHIN_LIMITS_RULE, REQUESTS_WITHIN_LIMITS_MESSAGE),
        ],
    );
    for map in ["limits", "requests"] {
        let Some(map) = schema
            .pointer_mut(&format!("/properties/{map}"))
            .and_then(|m| m.as_object_mut())
        else {
            continue;
        };
        map.insert("maxProperties".into(), MAX_RESOURCES.into());
        if let Some(value) = map
            .get_mut("additionalProperties")
            .and_then(|v| v.as_object_mut())
        {
            value.insert("maxLength".into(), MAX_QUANTITY.into());
        }
    }
}

/// Appends CEL rules with their messages to `schema`'s `x-kubernetes-validations`, as
/// `#[x_kube(validation = ...)]` on the field would.
fn add_rules(schema: &mut schemars::Schema, rules: &[(&str, &str)]) {
    let rules = rules
        .iter()
        .map(|(rule, message)| serde_json::json!({"rule": rule, "message": message}));
    if let Some(list) = schema
        .ensure_object()
        .entry("x-kubernetes-validations")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()
    {
        list.extend(rules);
    }
}

/// Go-style duration syntax, as `kubectl` and every Kubernetes API use it ("90s", "1m30s").
pub(crate) const DURATION_SYNTAX: &str = "self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$')";

/// Credentials travel only encrypted: a `credentialsSecret`, or a user in the URL, with a
/// plain-text `http://` or `git://` URL needs `insecure: true`.
const CREDENTIALS_IN_CLEAR_RULE: &str = "(has(self.insecure) && self.insecure) || \
     !self.url.matches('^(http|git)://') || \
     (!has(self.credentialsSecret) && !self.url.matches('^(http|git)://[^/]*@'))";
const CREDENTIALS_IN_CLEAR_MESSAGE: &str = "git credentials (credentialsSecret, or a user in \
     the URL) are sent only over https:// or ssh; use an https:// URL, or set insecure: true for \
     a git server on a private network that speaks only plain http://";

/// A git repository to build from: where it is, which directory, and the credentials to fetch
/// it with. An Application's source holds one with its branch; a BuildJob holds a copy, without
/// a branch, since its commit is fixed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(CREDENTIALS_IN_CLEAR_RULE).message(CREDENTIALS_IN_CLEAR_MESSAGE))]
pub struct Repository {
    /// Git URL of the repository: http(s)://, ssh://, git:// or scp-like user@host:path.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(GIT_URL_RULE).message(GIT_URL_MESSAGE))]
    pub url: String,

    /// Directory inside the repository to build, relative to its root. The whole repository
    /// is built when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(SUB_PATH_RULE).message(SUB_PATH_MESSAGE))]
    pub path: Option<String>,

    /// Secret with credentials for fetching the repository: type `kubernetes.io/basic-auth`
    /// (keys `username`, `password`) for an http(s) URL, `kubernetes.io/ssh-auth` (key
    /// `ssh-privatekey`) for an ssh one. Sent only over https unless `insecure` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub credentials_secret: Option<String>,

    /// Send the credentials over a plain `http://` URL (or a `git://` one) too, unencrypted.
    /// Only for git servers on a private network, such as a test cluster's own; without
    /// credentials, plain `http://` needs no such consent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl Repository {
    /// Whether the URL is read in plain text: `http://` or `git://`.
    pub fn is_plain_text(&self) -> bool {
        is_plain_text(&self.url)
    }

    /// Whether the URL itself carries a user (and maybe a password): `http://user:pw@host/…`.
    pub fn url_has_user(&self) -> bool {
        url_has_user(&self.url)
    }

    /// Whether fetching would send credentials (the Secret's, or a user in the URL)
    /// unencrypted without the Application saying `insecure`: refused before anything is sent.
    pub fn credentials_in_clear(&self) -> bool {
        !self.insecure
            && self.is_plain_text()
            && (self.credentials_secret.is_some() || self.url_has_user())
    }

    /// Whether the URL speaks ssh: `ssh://` or scp-like `user@host:path`.
    pub fn is_ssh(&self) -> bool {
        self.url.starts_with("ssh://") || (!self.url.contains("://") && self.url.contains('@'))
    }
}

/// Whether a git URL is read in plain text: `http://` or `git://` (case-insensitive scheme).
pub fn is_plain_text(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("git")
    })
}

/// Whether a URL with a scheme carries user information before its host.
pub fn url_has_user(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
}

/// The git repository an Application is built from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The repository, the directory to build and the credentials to fetch it with.
    #[serde(flatten)]
    pub repository: Repository,

    /// Branch whose new commits Ferry builds.
    #[serde(default = "default_branch")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._/-]+$') && !self.startsWith('-') && !self.contains('..') && !self.endsWith('/')")
        .message("must be a git branch name such as main or release/1.x: letters, digits, '.', '_', '-' and '/', not starting with '-' and without '..'"))]
    pub branch: String,

    /// Secret whose key `secret` holds the HMAC-SHA256 key that signs push webhooks for this
    /// Application. Without it the webhook endpoint refuses this Application's pushes and
    /// Ferry relies on polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub webhook_secret: Option<String>,

    /// How often Ferry asks the repository for new commits on the branch (Go duration, at
    /// least 5s). Polls of the same repository and branch are shared between Applications.
    #[serde(default = "default_poll_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('5s') && duration(self) <= duration('24h')"))
        .message("must be a duration between 5s and 24h, for example 1m"))]
    pub poll_interval: Duration,
}

/// How a commit becomes an image.
///
/// The build script runs in `builderImage` with the source checked out in its working
/// directory. Then either the files it left in `outputDir` become one layer on top of
/// `baseImage` (with `entrypoint`), or the OCI image layout it wrote to `ociLayoutDir` is
/// published as it is (buildah, kaniko, buildpacks and others can write one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.baseImage) != has(self.ociLayoutDir)")
    .message("set exactly one of build.baseImage (the output directory becomes a layer on that image) and build.ociLayoutDir (publish the OCI image layout the script wrote)"))]
#[x_kube(validation = Rule::new("!has(self.ociLayoutDir) || (!has(self.outputDir) && !has(self.entrypoint))")
    .message("build.outputDir and build.entrypoint only apply with build.baseImage; with build.ociLayoutDir the layout already holds the image and its configuration"))]
pub struct BuildSpec {
    /// Image in which the build script runs (it needs `/bin/sh`).
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_REF_RULE).message(IMAGE_REF_MESSAGE))]
    pub builder_image: String,

    /// Shell script that builds and tests the commit, run with `sh -ec` in the checkout. A
    /// non-zero exit fails the build; the tail of its output is kept in the BuildJob status.
    #[schemars(length(min = 1, max = 65536))]
    pub script: String,

    /// Directory where the script leaves the files of the runtime image (default `/out`).
    /// They are added as one layer on top of `baseImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message(ABSOLUTE_PATH_MESSAGE))]
    pub output_dir: Option<String>,

    /// Runtime base image whose layers the output directory is added to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_REF_RULE).message(IMAGE_REF_MESSAGE))]
    pub base_image: Option<String>,

    /// Entrypoint of the runtime image; the base image's entrypoint when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub entrypoint: Vec<String>,

    /// Directory where the script writes an OCI image layout to publish as it is, instead of
    /// layering `outputDir` on `baseImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message(ABSOLUTE_PATH_MESSAGE))]
    pub oci_layout_dir: Option<String>,

    /// Longest a build may run before it is stopped and marked failed (default 30m).
    #[serde(default = "default_build_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{DURATION_SYNTAX} && duration(self) >= duration('1m') && duration(self) <= duration('24h')"))
        .message("must be a duration between 1m and 24h, for example 30m"))]
    pub timeout: Duration,

    /// Compute resources of the build container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = bound_resources)]
    pub resources: Option<ResourceRequirements>,
}

impl BuildSpec {
    /// The output directory the script writes to, when the image is layered on a base.
    pub fn output_dir(&self) -> &str {
        self.output_dir.as_deref().unwrap_or("/out")
    }
}

/// Where built images are pushed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Registry host and repository, without tag or digest
    /// (`registry.example.com/team-a/shop`).
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(REPOSITORY_RULE).message(REPOSITORY_MESSAGE))]
    pub repository: String,

    /// Secret of type `kubernetes.io/dockerconfigjson` with credentials to push to the
    /// repository's registry. Omit it for a registry that accepts anonymous pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub push_secret: Option<String>,

    /// Talk to the registry (and the base image's registry) over plain HTTP instead of
    /// HTTPS. Only for registries on a private network, such as a test cluster's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_poll_interval() -> Duration {
    Duration::from(std::time::Duration::from_secs(60))
}

fn default_build_timeout() -> Duration {
    Duration::from(std::time::Duration::from_secs(30 * 60))
}
