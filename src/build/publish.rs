//! `ferry build publish`: the last step of a build pod. It turns the build's output into an
//! image in the registry and reports the image's digest.
//!
//! Two inputs:
//! - `--output=<dir>`: the directory becomes one reproducible gzip layer ([`super::layer`]) on
//!   top of the `--base` image's layers (or alone: a scratch image). The config is the base's
//!   with the layer's diff_id appended, a history entry, a fixed `created` time and the
//!   `--entrypoint` (which clears `Cmd`).
//! - `--oci-layout=<dir>`: the single image of an OCI layout ([`super::layout`]), as it is.
//!
//! Only what the registry lacks is sent: every blob is HEADed first; a base layer missing from
//! the target repository is mounted from the base's repository when both are in the same
//! registry, copied through otherwise; then the config, then the manifest, tagged `--tag`.
//!
//! Media types: a base in Docker's schema 2 keeps Docker's types for the whole image (the new
//! layer and config too), since mixing the two families in one manifest is something some
//! registries and older runtimes refuse; otherwise (and without a base) the image is OCI.
//!
//! The result is written to the termination log as `{"digest":..,"image":..}` (the
//! controller reads it, then checks the digest in the registry itself) and printed as one
//! line. A failure is one line naming what failed, a stable reason in the termination log
//! (`{"error":..,"reason":..}`) and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::StreamExt as _;
use oci_client::Reference;
use oci_client::manifest::OciDescriptor;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::layer::{self, Compressed, Layer, LayerError, Prepared};
use super::layout::{self, LayoutError};
use crate::adapters::registry::{
    BaseImage, Credentials, RegistryClient, RegistryError, media, parse_reference,
};

/// The command line of the publish step (each flag as `--name=value`).
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["output", "oci_layout"])))]
pub struct Args {
    /// The repository to push to: `host[:port]/path`, without a tag.
    #[arg(long)]
    pub repository: String,
    /// The tag to give the image (the short commit).
    #[arg(long)]
    pub tag: String,
    /// The directory to publish as one layer.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The image to put the layer on (none: the layer alone).
    #[arg(long, conflicts_with = "oci_layout")]
    pub base: Option<String>,
    /// The image's entrypoint, one argument per flag; replaces the base's and clears its Cmd.
    #[arg(long, conflicts_with = "oci_layout", allow_hyphen_values = true)]
    pub entrypoint: Vec<String>,
    /// An OCI image layout directory to publish as it is.
    #[arg(long)]
    pub oci_layout: Option<PathBuf>,
    /// Speak plain HTTP to the repository's registry and the base image's.
    #[arg(long)]
    pub insecure: bool,
    /// A dockerconfigjson file with the push credentials.
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// Where to report the digest (Kubernetes reads it as the termination message).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// Where to remember the layers of unchanged directories (default: a directory under the
    /// system's temporary directory).
    #[arg(long, env = "FERRY_PUBLISH_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// The time of every file in the layer and of the image, in seconds since the epoch.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub source_date_epoch: u64,
}

/// What was published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// `sha256:` of the manifest.
    pub digest: String,
    /// `<repository>@<digest>`.
    pub image: String,
    /// How each blob got there, for the log and the tests.
    pub blobs: Vec<(String, BlobOutcome)>,
}

/// How a blob reached the target repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// It was there already.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Copied from another registry.
    Copied,
    /// Uploaded from here.
    Uploaded,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Output(#[from] LayerError),
    #[error("{0}")]
    Layout(#[from] LayoutError),
    #[error("{0}")]
    Credentials(String),
    #[error("base image {base} was not found in registry {registry}")]
    BaseNotFound { base: String, registry: String },
    #[error("base image {base} is unusable: {problem}")]
    BaseInvalid { base: String, problem: String },
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("cannot write the termination log {path}: {source} (set --termination-log)")]
    TerminationLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl PublishError {
    /// A stable PascalCase name for the BuildJob's reason and the metrics.
    pub fn category(&self) -> &'static str {
        match self {
            PublishError::Output(LayerError::Missing(_) | LayerError::NotADirectory(_)) => {
                "OutputMissing"
            }
            PublishError::Output(_) => "OutputUnreadable",
            PublishError::Layout(LayoutError::Missing(_)) => "OutputMissing",
            PublishError::Layout(_) => "LayoutInvalid",
            PublishError::Credentials(_) => "CredentialsInvalid",
            PublishError::BaseNotFound { .. } => "BaseImageNotFound",
            PublishError::BaseInvalid { .. } => "BaseImageInvalid",
            PublishError::Registry(e) => e.category(),
            PublishError::TerminationLog { .. } => "TerminationLog",
            PublishError::Internal(_) => "Internal",
        }
    }
}

/// Runs the step: publishes, reports, and returns the process's exit code.
pub async fn main(args: Args) -> ExitCode {
    match publish(&args).await {
        Ok(published) => {
            let report = json!({"digest": published.digest, "image": published.image});
            if let Err(source) = std::fs::write(&args.termination_log, report.to_string()) {
                let error = PublishError::TerminationLog {
                    path: args.termination_log.clone(),
                    source,
                };
                eprintln!("ferry build publish: {error}");
                return ExitCode::FAILURE;
            }
            println!(
                "published {}:{} as {}",
                args.repository, args.tag, published.image
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            let message = format!("cannot publish {}:{}: {error}", args.repository, args.tag);
            eprintln!("ferry build publish: {message}");
            let report = json!({"error": message, "reason": error.category()});
            // The message is what matters; a missing termination log must not hide it.
            let _ = std::fs::write(&args.termination_log, report.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Publishes what `args` name; the library entry point of the step.
pub async fn publish(args: &Args) -> Result<Published, PublishError> {
    let repository = args.repository.trim_end_matches('/');
    if let Some(last) = repository.rsplit('/').next()
        && (last.contains(':') || last.contains('@'))
        && repository.contains('/')
    {
        return Err(RegistryError::InvalidReference {
            reference: args.repository.clone(),
            detail: "--repository takes no tag or digest (the tag is --tag)".into(),
        }
        .into());
    }
    let target = parse_reference(&format!("{repository}:{}", args.tag))?;
    let registry = target.resolve_registry().to_owned();
    let base = args.base.as_deref().map(parse_reference).transpose()?;

    let mut registries = vec![registry.clone()];
    if let Some(base) = &base
        && base.resolve_registry() != registry
    {
        registries.push(base.resolve_registry().to_owned());
    }
    // The base image's registry too: a base from another in-cluster registry speaks the same
    // plain HTTP (found on the e2e cluster, base on one registry and target on another).
    let insecure = if args.insecure {
        registries.clone()
    } else {
        Vec::new()
    };
    let mut client = RegistryClient::new(&insecure);
    for host in &registries {
        let credentials = match &args.docker_config {
            Some(path) => Credentials::from_docker_config_file(path, host)
                .map_err(PublishError::Credentials)?,
            None => Credentials::anonymous(),
        };
        client.login(host, &credentials).await;
    }

    let mut blobs = Vec::new();
    let (manifest, media_type) = match (&args.oci_layout, &args.output) {
        (Some(dir), _) => {
            let image = layout::read(dir)?;
            for blob in &image.blobs {
                let outcome = if client.blob_exists(&target, &blob.digest).await? {
                    BlobOutcome::Present
                } else {
                    client
                        .push_blob_file(&target, &blob.path, &blob.digest, blob.size)
                        .await?;
                    BlobOutcome::Uploaded
                };
                note(&blob.digest, blob.size, outcome);
                blobs.push((blob.digest.clone(), outcome));
            }
            (image.manifest, image.media_type)
        }
        (None, Some(output)) => {
            let settings = layer::Settings {
                mtime: args.source_date_epoch,
                ..layer::Settings::default()
            };
            let temp_dir = std::env::temp_dir();
            let cache = layer::Cache::new(
                args.cache_dir
                    .clone()
                    .unwrap_or_else(|| temp_dir.join("ferry-publish-cache")),
            );
            // The layer is built (CPU and disk) while the base is read (network).
            let building = {
                let (output, temp_dir) = (output.clone(), temp_dir.clone());
                tokio::task::spawn_blocking(move || {
                    layer::prepare(&output, settings, Some(&cache), &temp_dir)
                })
            };
            let base_image = match &base {
                Some(base) => Some(read_base(&client, base, &target, &mut blobs).await?),
                None => None,
            };
            let prepared = building
                .await
                .map_err(|e| PublishError::Internal(format!("the layer builder stopped: {e}")))??;
            let layer = prepared.layer().clone();
            let outcome =
                push_layer(&client, &target, prepared, output, settings, &temp_dir).await?;
            note(&layer.digest, layer.size, outcome);
            blobs.push((layer.digest.clone(), outcome));

            let docker = base_image
                .as_ref()
                .and_then(|b| b.manifest.media_type.as_deref())
                == Some(media::DOCKER_MANIFEST);
            let config = image_config(
                base_image.as_ref().map(|b| b.config.as_slice()),
                &layer.diff_id,
                &args.entrypoint,
                args.source_date_epoch,
            )
            .map_err(|problem| PublishError::BaseInvalid {
                base: args.base.clone().unwrap_or_default(),
                problem,
            })?;
            let config_digest = sha256(&config);
            let outcome = if client.blob_exists(&target, &config_digest).await? {
                BlobOutcome::Present
            } else {
                client
                    .push_blob(&target, config.clone(), &config_digest)
                    .await?;
                BlobOutcome::Uploaded
            };
            note(&config_digest, config.len() as u64, outcome);
            blobs.push((config_digest.clone(), outcome));
            image_manifest(
                base_image.as_ref(),
                args.base.as_deref(),
                &layer,
                &config_digest,
                config.len(),
                docker,
            )
        }
        (None, None) => {
            return Err(PublishError::Internal(
                "give --output or --oci-layout".into(),
            ));
        }
    };
    let digest = sha256(&manifest);
    client.push_manifest(&target, manifest, &media_type).await?;
    Ok(Published {
        image: format!("{repository}@{digest}"),
        digest,
        blobs,
    })
}

/// Reads the base image and makes sure each of its layers is in the target repository.
async fn read_base(
    client: &RegistryClient,
    base: &Reference,
    target: &Reference,
    blobs: &mut Vec<(String, BlobOutcome)>,
) -> Result<BaseImage, PublishError> {
    let image = client.pull_image(base).await.map_err(|e| match e {
        RegistryError::NotFound { registry, .. } => PublishError::BaseNotFound {
            base: base.whole(),
            registry,
        },
        other => other.into(),
    })?;
    let same_registry = base.resolve_registry() == target.resolve_registry();
    let same_repository = same_registry && base.repository() == target.repository();
    let outcomes: Vec<Result<(String, BlobOutcome), RegistryError>> =
        futures::stream::iter(image.manifest.layers.iter())
            .map(|layer| async move {
                let outcome = if same_repository
                    || client.blob_exists(target, &layer.digest).await?
                {
                    BlobOutcome::Present
                } else if same_registry && client.mount_blob(target, base, &layer.digest).await? {
                    BlobOutcome::Mounted
                } else {
                    client.copy_blob(base, target, layer).await?;
                    BlobOutcome::Copied
                };
                note(
                    &layer.digest,
                    u64::try_from(layer.size).unwrap_or(0),
                    outcome,
                );
                Ok((layer.digest.clone(), outcome))
            })
            .buffered(4)
            .collect()
            .await;
    for outcome in outcomes {
        blobs.push(outcome?);
    }
    Ok(image)
}

/// Sends the new layer unless the registry has it; a layer known from the cache is rebuilt
/// only when its bytes are needed.
async fn push_layer(
    client: &RegistryClient,
    target: &Reference,
    prepared: Prepared,
    output: &Path,
    settings: layer::Settings,
    temp_dir: &Path,
) -> Result<BlobOutcome, PublishError> {
    let layer = prepared.layer().clone();
    if client.blob_exists(target, &layer.digest).await? {
        return Ok(BlobOutcome::Present);
    }
    let bytes = match prepared {
        Prepared::Built(_, bytes) => bytes,
        Prepared::Cached(_) => {
            let (output, temp_dir) = (output.to_owned(), temp_dir.to_owned());
            let (rebuilt, bytes) =
                tokio::task::spawn_blocking(move || layer::rebuild(&output, settings, &temp_dir))
                    .await
                    .map_err(|e| {
                        PublishError::Internal(format!("the layer builder stopped: {e}"))
                    })??;
            if rebuilt != layer {
                // The cache was wrong (a file changed without a trace): stop rather than
                // publish a layer whose digest nobody checked.
                return Err(PublishError::Internal(format!(
                    "the output changed while publishing (layer {} became {})",
                    layer.digest, rebuilt.digest
                )));
            }
            bytes
        }
    };
    match bytes {
        Compressed::Memory(parts) => {
            client
                .push_blob_parts(target, parts, &layer.digest, layer.size)
                .await?
        }
        Compressed::File(file) => {
            client
                .push_blob_file(target, file.path(), &layer.digest, layer.size)
                .await?
        }
    }
    Ok(BlobOutcome::Uploaded)
}

/// The build log's line about a blob.
fn note(digest: &str, size: u64, outcome: BlobOutcome) {
    let how = match outcome {
        BlobOutcome::Present => "already in the registry",
        BlobOutcome::Mounted => "mounted from the base repository",
        BlobOutcome::Copied => "copied from the base registry",
        BlobOutcome::Uploaded => "uploaded",
    };
    eprintln!("blob {digest} ({size} bytes): {how}");
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// RFC 3339 for seconds since the epoch, without a date library: days to a civil date
/// (Howard Hinnant's `civil_from_days`).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// The image config: the base's (kept field for field) or a minimal one, with the layer's
/// diff_id appended, a history entry, a fixed creation time and the entrypoint.
pub fn image_config(
    base: Option<&[u8]>,
    diff_id: &str,
    entrypoint: &[String],
    epoch: u64,
) -> Result<Vec<u8>, String> {
    let created = rfc3339(epoch);
    let mut config = match base {
        Some(bytes) => serde_json::from_slice::<Value>(bytes)
            .map_err(|e| format!("its config is not JSON: {e}"))?,
        None => json!({
            "architecture": go_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
    };
    let object = config
        .as_object_mut()
        .ok_or("its config is not a JSON object")?;
    object.insert("created".into(), json!(created));
    object
        .get_mut("rootfs")
        .and_then(|rootfs| rootfs.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or("its config has no rootfs.diff_ids")?
        .push(json!(diff_id));
    if let Some(history) = object.get_mut("history").and_then(Value::as_array_mut) {
        history.push(json!({"created": created, "created_by": "ferry build publish"}));
    }
    if !entrypoint.is_empty() {
        let settings = object.entry("config").or_insert_with(|| json!({}));
        let settings = settings
            .as_object_mut()
            .ok_or("its config's `config` is not an object")?;
        settings.insert("Entrypoint".into(), json!(entrypoint));
        settings.remove("Cmd");
    }
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}

/// The manifest: the base's layers, then ours; OCI types, or Docker's when the base uses them.
fn image_manifest(
    base: Option<&BaseImage>,
    base_name: Option<&str>,
    layer: &Layer,
    config_digest: &str,
    config_size: usize,
    docker: bool,
) -> (Vec<u8>, String) {
    let (manifest_type, config_type, layer_type) = if docker {
        (
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP,
        )
    } else {
        (
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            media::OCI_LAYER_GZIP,
        )
    };
    let mut layers: Vec<Value> = base
        .map(|b| b.manifest.layers.iter().map(descriptor).collect())
        .unwrap_or_default();
    layers.push(json!({"mediaType": layer_type, "digest": layer.digest, "size": layer.size}));
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config_size},
        "layers": layers,
    });
    // The OCI annotations that let tools find the base again (Docker's schema has none).
    if let (false, Some(base), Some(name)) = (docker, base, base_name) {
        manifest["annotations"] = json!({
            "org.opencontainers.image.base.digest": base.digest,
            "org.opencontainers.image.base.name": name,
        });
    }
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    (bytes, manifest_type.to_owned())
}

fn descriptor(layer: &OciDescriptor) -> Value {
    serde_json::to_value(layer).unwrap_or(Value::Null)
}

/// This machine's architecture in the image config's (Go's) words.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339() {
        for (seconds, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(seconds), want, "{seconds}");
        }
    }

    #[test]
    fn the_config_keeps_the_base_appends_the_layer_and_replaces_the_entrypoint() {
        let base = br#"{"architecture":"arm64","os":"linux","config":{"Env":["A=1"],"Cmd":["sh"],"Entrypoint":["/old"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
            "history":[{"created_by":"base"}],"custom":{"kept":true}}"#;
        let config =
            image_config(Some(base), "sha256:bb", &["/app".into(), "-v".into()], 0).unwrap();
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(config["config"]["Entrypoint"], json!(["/app", "-v"]));
        assert_eq!(config["config"].get("Cmd"), None);
        assert_eq!(config["config"]["Env"], json!(["A=1"]));
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["custom"]["kept"], true);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");

        let kept = image_config(Some(base), "sha256:bb", &[], 0).unwrap();
        let kept: Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(kept["config"]["Cmd"], json!(["sh"]));
        assert_eq!(kept["config"]["Entrypoint"], json!(["/old"]));
    }

    #[test]
    fn without_a_base_the_config_is_minimal_and_reproducible() {
        let one = image_config(None, "sha256:cc", &["/app".into()], 7).unwrap();
        let two = image_config(None, "sha256:cc", &["/app".into()], 7).unwrap();
        assert_eq!(one, two);
        let config: Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(config["os"], "linux");
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:cc"]));
        assert_eq!(config["config"]["Entrypoint"], json!(["/app"]));
        assert_eq!(config["created"], "1970-01-01T00:00:07Z");
    }

    #[test]
    fn a_broken_base_config_is_named() {
        let error = image_config(Some(b"[1]"), "sha256:dd", &[], 0).unwrap_err();
        assert!(error.contains("not a JSON object"), "{error}");
        let error = image_config(Some(b"{}"), "sha256:dd", &[], 0).unwrap_err();
        assert!(error.contains("no rootfs.diff_ids"), "{error}");
    }
}
