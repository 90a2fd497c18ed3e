//! An OCI registry, spoken through `oci-client`: HEAD and upload blobs, mount them from another
//! repository, read a base image, push a manifest, and check that a manifest exists.
//!
//! Every failure becomes a [`RegistryError`] whose [`RegistryError::category`] is stable
//! (`RegistryUnreachable`, `RegistryRefused`, `RegistryServerError`, `ImageNotFound`,
//! `RegistryProtocol`, `InvalidReference`) and whose message names the registry and what was
//! being done. Messages are written here from status codes and our own words; the only foreign
//! text they carry (a transport error, a registry's error body) is passed through [`redact`]
//! with the credentials in use, so a password can never reach a log, a status or an Event.
//!
//! What `oci-client` 0.18 lacks and is handled here: its `mount_blob` reports a registry that
//! declines a mount (202 Accepted, the specification's answer) as a protocol violation, so that
//! case is recognised and answered with "not mounted"; and its manifest HEAD is
//! `fetch_manifest_digest`, whose 404 is recognised as "absent" rather than an error.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::TryStreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// Credentials for one registry: a user name and password (or token), or none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    basic: Option<(String, String)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.basic {
            Some((user, _)) => write!(f, "Credentials({user}, <redacted>)"),
            None => write!(f, "Credentials(anonymous)"),
        }
    }
}

/// Why a dockerconfigjson could not give credentials. The messages never quote the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("is not a dockerconfigjson (expected {{\"auths\": {{...}}}}): {0}")]
    NotDockerConfig(String),
    #[error("has an entry for {0} whose `auth` is not base64 of user:password")]
    BadAuth(String),
}

impl Credentials {
    /// No credentials: the registry is used anonymously.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A user name and password (or token).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            basic: Some((username.into(), password.into())),
        }
    }

    /// The credentials a dockerconfigjson (the `.dockerconfigjson` key of a
    /// `kubernetes.io/dockerconfigjson` Secret) holds for `registry` (a host with an optional
    /// port, as in an image reference). Entries may be keyed by the host or by a URL
    /// (`https://host/v1/`); an entry gives `auth` (base64 of `user:password`) or `username`
    /// and `password`. No entry for the registry means anonymous access.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Self, CredentialsError> {
        #[derive(serde::Deserialize)]
        struct DockerConfig {
            auths: std::collections::BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }
        // serde_json's messages give a line and column, never the text it read.
        let config: DockerConfig = serde_json::from_slice(json)
            .map_err(|e| CredentialsError::NotDockerConfig(e.to_string()))?;
        let wanted = registry_key(registry);
        let Some((key, entry)) = config
            .auths
            .iter()
            .find(|(key, _)| registry_key(key) == wanted)
        else {
            return Ok(Self::anonymous());
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| CredentialsError::BadAuth(key.clone()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| CredentialsError::BadAuth(key.clone()))?;
            return Ok(Self::basic(user, password));
        }
        match (&entry.username, &entry.password) {
            (Some(user), Some(password)) => Ok(Self::basic(user.clone(), password.clone())),
            _ => Ok(Self::anonymous()),
        }
    }

    /// Reads [`Credentials::from_docker_config`] from a file.
    pub fn from_docker_config_file(path: &Path, registry: &str) -> Result<Self, String> {
        let json = std::fs::read(path)
            .map_err(|e| format!("cannot read the docker config {}: {e}", path.display()))?;
        Self::from_docker_config(&json, registry)
            .map_err(|e| format!("the docker config {} {e}", path.display()))
    }

    /// The secrets that must never appear in a message.
    fn secrets(&self) -> Vec<String> {
        match &self.basic {
            Some((user, password)) if !password.is_empty() => {
                let pair = format!("{user}:{password}");
                vec![
                    password.clone(),
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
                    pair,
                ]
            }
            _ => Vec::new(),
        }
    }

    fn auth(&self) -> RegistryAuth {
        match &self.basic {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// A dockerconfigjson key or image registry reduced to `host[:port]`, with Docker Hub's
/// aliases made one.
fn registry_key(key: &str) -> String {
    let host = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        _ => host,
    }
}

/// A failed registry operation, by category; the message names the registry and the action.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} is unreachable while {action}: {detail}")]
    Unreachable {
        registry: String,
        action: String,
        detail: String,
    },
    #[error(
        "registry {registry} refused {action} (HTTP {status}): check the push Secret's credentials and their rights on the repository"
    )]
    Refused {
        registry: String,
        action: String,
        status: u16,
    },
    #[error("registry {registry} failed while {action} (HTTP {status}){}", suffix(.detail))]
    Server {
        registry: String,
        action: String,
        status: u16,
        detail: String,
    },
    #[error("{what} was not found in registry {registry}")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} answered unexpectedly while {action}: {detail}")]
    Protocol {
        registry: String,
        action: String,
        detail: String,
    },
    #[error("{reference:?} is not a valid image reference: {detail}")]
    InvalidReference { reference: String, detail: String },
    #[error("registry {registry} is not contacted: {refused}")]
    AddressRefused {
        registry: String,
        refused: crate::adapters::address::AddressRefused,
    },
}

impl RegistryError {
    /// A stable PascalCase name, for a reason or a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            RegistryError::Unreachable { .. } => "RegistryUnreachable",
            RegistryError::Refused { .. } => "RegistryRefused",
            RegistryError::Server { .. } => "RegistryServerError",
            RegistryError::NotFound { .. } => "ImageNotFound",
            RegistryError::Protocol { .. } => "RegistryProtocol",
            RegistryError::InvalidReference { .. } => "InvalidReference",
            RegistryError::AddressRefused { .. } => "AddressRefused",
        }
    }
}

/// `": detail"`, or nothing for an empty detail.
fn suffix(detail: &str) -> String {
    if detail.trim().is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// `text` with every secret replaced, and cut to a line of reasonable length.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = super::scrub(text, secrets);
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Parses an image reference: `[host[:port]/]path[:tag][@sha256:hex]`, as Docker reads it (the
/// first component is a registry when it has a `.` or a `:` or is `localhost`; otherwise the
/// image is on Docker Hub, under `library/` for a one-component name). Written here rather than
/// with oci-spec's parser, whose Unicode regex takes ~40 ms to compile on first use: half the
/// time budget of an unchanged re-publish.
pub fn parse_reference(reference: &str) -> Result<Reference, RegistryError> {
    let invalid = |detail: &str| RegistryError::InvalidReference {
        reference: reference.to_owned(),
        detail: detail.to_owned(),
    };
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains('/') => (&rest[..at], Some(&rest[at + 1..])),
        _ => (rest, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_owned(), path.to_owned())
        }
        Some(_) => ("docker.io".to_owned(), name.to_owned()),
        None => ("docker.io".to_owned(), format!("library/{name}")),
    };
    let host_ok = |host: &str| {
        let (host, port) = host.split_once(':').unwrap_or((host, "0"));
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
    };
    if !host_ok(&registry) {
        return Err(invalid("the registry must be host[:port]"));
    }
    // Path components: lower-case letters and digits, separated inside by `.`, `_` or `-`.
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
    };
    if name.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(invalid(
            "the repository path has lower-case letters, digits and . _ - inside components",
        ));
    }
    if let Some(tag) = tag {
        let bytes = tag.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
        if !ok {
            return Err(invalid("a tag has up to 128 letters, digits, _ . and -"));
        }
    }
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("a digest is sha256: and 64 lower-case hex digits"));
        }
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// Media types Ferry reads and writes.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// A base image as read from its registry.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Its manifest (for a multi-platform image, the one for this machine's platform).
    pub manifest: OciImageManifest,
    /// The manifest's digest.
    pub digest: String,
    /// The image configuration, as stored.
    pub config: Vec<u8>,
}

/// One session with the registries an operation touches: one HTTP client, the credentials of
/// each registry, and the secrets to keep out of messages.
#[derive(Clone)]
pub struct RegistryClient {
    client: Client,
    secrets: Vec<String>,
}

impl RegistryClient {
    /// A client; the registries named in `insecure` are spoken to over plain HTTP.
    pub fn new(insecure: &[String]) -> Self {
        // reqwest is built without a crypto provider of its own: it uses the process default,
        // which is ring, as kube's. Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(insecure.to_vec())
        };
        let client = Client::new(ClientConfig {
            protocol,
            // One PUT per blob: the digest is known before the upload starts (see
            // build::layer), and a single request streams fastest.
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        });
        Self {
            client,
            secrets: Vec::new(),
        }
    }

    /// Uses `credentials` for every request to `registry` (host and port).
    pub async fn login(&mut self, registry: &str, credentials: &Credentials) {
        self.secrets.extend(credentials.secrets());
        self.client
            .store_auth_if_needed(registry, &credentials.auth())
            .await;
    }

    /// Whether the repository of `image` has the blob `digest`.
    pub async fn blob_exists(
        &self,
        image: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        self.client
            .blob_exists(image, digest)
            .await
            .map_err(|e| self.error(image, &format!("checking blob {digest}"), e))
    }

    /// Asks the registry to mount `digest` from the repository of `from` into that of `image`
    /// (both in the same registry). `Ok(false)` when the registry declines: then the blob
    /// must be uploaded.
    pub async fn mount_blob(
        &self,
        image: &Reference,
        from: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        match self.client.mount_blob(image, from, digest).await {
            Ok(()) => Ok(true),
            // The specification's answer to a mount it will not do is 202 with an upload
            // session; oci-client expects 201 and calls anything else a violation.
            Err(OciDistributionError::SpecViolationError(_)) => Ok(false),
            Err(e) => Err(self.error(image, &format!("mounting blob {digest}"), e)),
        }
    }

    /// Uploads the file at `path` as the blob `digest` of `size` bytes, streaming it.
    pub async fn push_blob_file(
        &self,
        image: &Reference,
        path: &Path,
        digest: &str,
        size: u64,
    ) -> Result<(), RegistryError> {
        let action = format!("uploading blob {digest}");
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RegistryError::Protocol {
                registry: image.resolve_registry().to_owned(),
                action: action.clone(),
                detail: format!("cannot open {}: {e}", path.display()),
            })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map_err(OciDistributionError::IoError);
        self.client
            .push_blob_stream(image, stream, digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.error(image, &action, e))
    }

    /// Uploads the blob `digest` of `size` bytes from its `parts`, in order, in one request.
    pub async fn push_blob_parts(
        &self,
        image: &Reference,
        parts: Vec<bytes::Bytes>,
        digest: &str,
        size: u64,
    ) -> Result<(), RegistryError> {
        let stream = futures::stream::iter(parts.into_iter().map(Ok));
        self.client
            .push_blob_stream(image, stream, digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.error(image, &format!("uploading blob {digest}"), e))
    }

    /// Uploads `data` as the blob `digest`.
    pub async fn push_blob(
        &self,
        image: &Reference,
        data: Vec<u8>,
        digest: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .push_blob(image, data, digest)
            .await
            .map(|_| ())
            .map_err(|e| self.error(image, &format!("uploading blob {digest}"), e))
    }

    /// Copies the blob `layer` from the repository of `from` (any registry) to that of `to`,
    /// streaming it through.
    pub async fn copy_blob(
        &self,
        from: &Reference,
        to: &Reference,
        layer: &OciDescriptor,
    ) -> Result<(), RegistryError> {
        let action = format!("copying blob {}", layer.digest);
        let stream = self
            .client
            .pull_blob_stream(from, layer)
            .await
            .map_err(|e| self.error(from, &action, e))?
            .stream
            .map_err(OciDistributionError::IoError);
        let size = u64::try_from(layer.size).unwrap_or_default();
        self.client
            .push_blob_stream(to, stream, &layer.digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.error(to, &action, e))
    }

    /// Reads `image`'s manifest (this platform's, for a multi-platform image) and config.
    pub async fn pull_image(&self, image: &Reference) -> Result<BaseImage, RegistryError> {
        let action = format!("reading image {}", image.whole());
        let (manifest, digest) = self
            .client
            .pull_image_manifest(image, &RegistryAuth::Anonymous)
            .await
            .map_err(|e| self.image_error(image, &action, e))?;
        let mut config = Vec::new();
        self.client
            .pull_blob(image, &manifest.config, &mut config)
            .await
            .map_err(|e| self.image_error(image, &action, e))?;
        Ok(BaseImage {
            manifest,
            digest,
            config,
        })
    }

    /// Pushes `body` as the manifest `image` (tagged), of `media_type`.
    pub async fn push_manifest(
        &self,
        image: &Reference,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let action = format!("pushing manifest {}", image.whole());
        let content_type = media_type.parse().map_err(|_| RegistryError::Protocol {
            registry: image.resolve_registry().to_owned(),
            action: action.clone(),
            detail: format!("{media_type:?} is not a media type"),
        })?;
        self.client
            .push_manifest_raw(image, body, content_type)
            .await
            .map(|_| ())
            .map_err(|e| self.error(image, &action, e))
    }

    /// Whether the repository of `image` has the manifest `digest` (a HEAD by digest).
    pub async fn manifest_exists(
        &self,
        image: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let by_digest = image.clone_with_digest(digest.to_owned());
        let action = format!("checking manifest {digest}");
        match self
            .client
            .fetch_manifest_digest(&by_digest, &RegistryAuth::Anonymous)
            .await
        {
            Ok(found) => Ok(found == digest),
            Err(e) => match self.error(image, &action, e) {
                RegistryError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Like [`RegistryClient::error`], with a missing image named as such.
    fn image_error(
        &self,
        image: &Reference,
        action: &str,
        error: OciDistributionError,
    ) -> RegistryError {
        match self.error(image, action, error) {
            RegistryError::NotFound { registry, .. } => RegistryError::NotFound {
                registry,
                what: format!("image {}", image.whole()),
            },
            other => other,
        }
    }

    /// Sorts an `oci-client` error into a category, with a message of our own words.
    fn error(&self, image: &Reference, action: &str, error: OciDistributionError) -> RegistryError {
        let registry = image.resolve_registry().to_owned();
        let action = action.to_owned();
        let redact = |text: &str| redact(text, &self.secrets);
        let by_status = |status: u16, detail: String| match status {
            401 | 403 => RegistryError::Refused {
                registry: registry.clone(),
                action: action.clone(),
                status,
            },
            404 => RegistryError::NotFound {
                registry: registry.clone(),
                what: format!("{} (while {action})", image.repository()),
            },
            500..=599 => RegistryError::Server {
                registry: registry.clone(),
                action: action.clone(),
                status,
                detail: detail.clone(),
            },
            _ => RegistryError::Protocol {
                registry: registry.clone(),
                action: action.clone(),
                detail: format!("HTTP {status}: {detail}"),
            },
        };
        match &error {
            OciDistributionError::RequestError(e) => {
                if let Some(status) = e.status() {
                    return by_status(status.as_u16(), String::new());
                }
                if e.is_connect() || e.is_timeout() {
                    return RegistryError::Unreachable {
                        registry,
                        action,
                        detail: redact(&root_cause(e)),
                    };
                }
                RegistryError::Protocol {
                    registry,
                    action,
                    detail: redact(&root_cause(e)),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                by_status(*code, redact(message))
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => by_status(401, String::new()),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes = |wanted: &[OciErrorCode]| {
                    envelope.errors.iter().any(|e| wanted.contains(&e.code))
                };
                if codes(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                    by_status(401, String::new())
                } else if codes(&[
                    OciErrorCode::ManifestUnknown,
                    OciErrorCode::NameUnknown,
                    OciErrorCode::BlobUnknown,
                    OciErrorCode::NotFound,
                ]) {
                    by_status(404, String::new())
                } else {
                    RegistryError::Protocol {
                        registry,
                        action,
                        detail: redact(&envelope.to_string()),
                    }
                }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => by_status(404, String::new()),
            other => RegistryError::Protocol {
                registry,
                action,
                detail: redact(&other.to_string()),
            },
        }
    }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which says
/// more than reqwest's outer "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Whether `repository` (`host[:port]/path`) has the manifest `digest`: the controller's check
/// that a build's image really is in the registry before it creates a Release. `insecure`
/// speaks plain HTTP to the registry.
pub async fn manifest_exists(
    repository: &str,
    digest: &str,
    credentials: &Credentials,
    insecure: bool,
) -> Result<bool, RegistryError> {
    let image = parse_reference(repository)?;
    let registry = image.resolve_registry().to_owned();
    refuse_address(&registry).await?;
    let insecure = if insecure {
        vec![registry.clone()]
    } else {
        Vec::new()
    };
    let mut client = RegistryClient::new(&insecure);
    client.login(&registry, credentials).await;
    client.manifest_exists(&image, digest).await
}

/// Refuses a registry whose host is, or resolves to, an address the controller may not reach
/// (`adapters::address`), before any connection.
async fn refuse_address(registry: &str) -> Result<(), RegistryError> {
    let host = crate::adapters::address::url_host(&format!("https://{registry}"))
        .unwrap_or(registry)
        .to_owned();
    let policy = crate::adapters::address::policy();
    let checked =
        tokio::task::spawn_blocking(move || crate::adapters::address::check_host(policy, &host))
            .await;
    match checked {
        Ok(Err(refused)) => Err(RegistryError::AddressRefused {
            registry: registry.to_owned(),
            refused,
        }),
        // A check that could not run refuses nothing: the connection's own errors follow.
        Ok(Ok(())) | Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registry_at_the_metadata_address_is_refused_before_any_connection() {
        let error = manifest_exists(
            "169.254.169.254/team/shop",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            &Credentials::anonymous(),
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(error.category(), "AddressRefused", "{error}");
        assert!(error.to_string().contains("link-local"), "{error}");
    }

    #[test]
    fn docker_config_entries_give_credentials_by_host() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret:with:colons");
        let json = format!(
            r#"{{"auths": {{
                "registry.example:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "hubpass"}},
                "other.example": {{"auth": ""}}
            }}}}"#
        );
        for (registry, want) in [
            (
                "registry.example:5000",
                Credentials::basic("robot", "s3cret:with:colons"),
            ),
            ("index.docker.io", Credentials::basic("hub", "hubpass")),
            ("docker.io", Credentials::basic("hub", "hubpass")),
            ("other.example", Credentials::anonymous()),
            ("unknown.example", Credentials::anonymous()),
        ] {
            assert_eq!(
                Credentials::from_docker_config(json.as_bytes(), registry),
                Ok(want),
                "{registry}"
            );
        }
    }

    #[test]
    fn a_broken_docker_config_is_refused_without_quoting_it() {
        let not_json = br#"{"auths": {"r": {"auth": "hunter2"#;
        let error = Credentials::from_docker_config(not_json, "r").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let bad_base64 = br#"{"auths": {"r": {"auth": "hunter2!!"}}}"#;
        let error = Credentials::from_docker_config(bad_base64, "r").unwrap_err();
        assert_eq!(error, CredentialsError::BadAuth("r".into()));
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let no_colon = base64::engine::general_purpose::STANDARD.encode("hunter2");
        let json = format!(r#"{{"auths": {{"r": {{"auth": "{no_colon}"}}}}}}"#);
        let error = Credentials::from_docker_config(json.as_bytes(), "r").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn references_are_read_as_docker_reads_them() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        for (text, want) in [
            (
                "127.0.0.1:5000/apps/web:abc1234",
                Ok(("127.0.0.1:5000", "apps/web", Some("abc1234"), None)),
            ),
            (
                "registry.example/web",
                Ok(("registry.example", "web", Some("latest"), None)),
            ),
            (
                "localhost/a/b/c:v1.2_x-y",
                Ok(("localhost", "a/b/c", Some("v1.2_x-y"), None)),
            ),
            (
                "nginx",
                Ok(("docker.io", "library/nginx", Some("latest"), None)),
            ),
            ("team/app:1", Ok(("docker.io", "team/app", Some("1"), None))),
            (
                "r.example:443/x@DIGEST",
                Ok(("r.example:443", "x", None, Some("DIGEST"))),
            ),
            (
                "r.example/x:t@DIGEST",
                Ok(("r.example", "x", Some("t"), Some("DIGEST"))),
            ),
            ("r.example/Upper", Err("repository path")),
            ("r.example/a//b", Err("repository path")),
            ("r.example/a-", Err("repository path")),
            ("r.example/a:", Err("tag")),
            ("r.example/a:-x", Err("tag")),
            ("r.example/a@sha256:123", Err("digest")),
            ("bad_host.example:x/a", Err("registry")),
            ("", Err("repository path")),
        ] {
            let text = text.replace("DIGEST", &digest);
            match (parse_reference(&text), want) {
                (Ok(got), Ok((registry, repository, tag, want_digest))) => {
                    assert_eq!(got.registry(), registry, "{text}");
                    assert_eq!(got.repository(), repository, "{text}");
                    assert_eq!(got.tag(), tag, "{text}");
                    assert_eq!(got.digest(), want_digest.map(|_| digest.as_str()), "{text}");
                }
                (Err(error), Err(part)) => {
                    assert!(error.to_string().contains(part), "{text}: {error}")
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::basic("robot", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn redaction_removes_the_password_in_every_form() {
        let credentials = Credentials::basic("robot", "hunter2");
        let secrets = credentials.secrets();
        let basic = base64::engine::general_purpose::STANDARD.encode("robot:hunter2");
        let text = format!("auth hunter2 header Basic {basic}\nand robot:hunter2");
        let shown = redact(&text, &secrets);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&basic), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
    }
}
