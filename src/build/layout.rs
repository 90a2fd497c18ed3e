//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`), as buildah,
//! kaniko and buildpacks leave one: its single image manifest and the blobs it names, to be
//! published as they are (so the image keeps its digest).

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::adapters::registry::media;

/// A blob of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// The image a layout holds.
#[derive(Clone, Debug)]
pub struct Image {
    /// The manifest, byte for byte.
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// `sha256:` of `manifest`.
    pub digest: String,
    /// The config first, then the layers.
    pub blobs: Vec<Blob>,
}

/// Why a layout cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the OCI layout {0} does not exist")]
    Missing(PathBuf),
    #[error("the OCI layout {dir}: {problem}")]
    Invalid { dir: PathBuf, problem: String },
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(serde::Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Reads the single image of the layout at `dir`. An `index.json` that points at a nested
/// index with one image is followed; several distinct images are refused (which one would the
/// Release be?).
pub fn read(dir: &Path) -> Result<Image, LayoutError> {
    let invalid = |problem: String| LayoutError::Invalid {
        dir: dir.to_owned(),
        problem,
    };
    if !dir.exists() {
        return Err(LayoutError::Missing(dir.to_owned()));
    }
    let index = std::fs::read(dir.join("index.json"))
        .map_err(|e| invalid(format!("cannot read index.json: {e}")))?;
    let mut index: Index = serde_json::from_slice(&index)
        .map_err(|e| invalid(format!("index.json is not an image index: {e}")))?;
    for _depth in 0..4 {
        let mut entries = index.manifests.clone();
        entries.sort_by(|a, b| a.digest.cmp(&b.digest));
        entries.dedup_by(|a, b| a.digest == b.digest);
        let entry = match entries.as_slice() {
            [one] => one.clone(),
            [] => return Err(invalid("index.json lists no image".into())),
            many => {
                return Err(invalid(format!(
                    "index.json lists {} images; publish needs exactly one",
                    many.len()
                )));
            }
        };
        let bytes = read_blob(dir, &entry).map_err(invalid)?;
        if entry.media_type == media::OCI_INDEX || entry.media_type == media::DOCKER_MANIFEST_LIST {
            index = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{} is not an image index: {e}", entry.digest)))?;
            continue;
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{} is not an image manifest: {e}", entry.digest)))?;
        let media_type = manifest
            .media_type
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| Some(entry.media_type.clone()).filter(|m| !m.is_empty()))
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        if media_type != media::OCI_MANIFEST && media_type != media::DOCKER_MANIFEST {
            return Err(invalid(format!(
                "{} has media type {media_type:?}, not an image manifest",
                entry.digest
            )));
        }
        let mut blobs = Vec::new();
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let path = blob_path(dir, &descriptor.digest).map_err(invalid)?;
            let size = std::fs::metadata(&path)
                .map_err(|e| invalid(format!("blob {} is missing: {e}", descriptor.digest)))?
                .len();
            if size != descriptor.size {
                return Err(invalid(format!(
                    "blob {} has {size} bytes, the manifest says {}",
                    descriptor.digest, descriptor.size
                )));
            }
            blobs.push(Blob {
                digest: descriptor.digest.clone(),
                size,
                path,
            });
        }
        return Ok(Image {
            manifest: bytes,
            media_type,
            digest: entry.digest,
            blobs,
        });
    }
    Err(invalid("index.json nests indexes more than 4 deep".into()))
}

/// The bytes of a small blob (a manifest or an index), checked against its digest.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, String> {
    let path = blob_path(dir, &descriptor.digest)?;
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read blob {}: {e}", descriptor.digest))?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != descriptor.digest {
        return Err(format!(
            "blob {} has digest {actual}: the layout is corrupt",
            descriptor.digest
        ));
    }
    Ok(bytes)
}

/// Where the layout keeps `digest`; only well-formed sha256 digests, so that a crafted layout
/// cannot name a path outside it.
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(dir.join("blobs").join("sha256").join(hex))
        }
        _ => Err(format!("{digest:?} is not a sha256 digest")),
    }
}

/// Writes an OCI layout holding one image: `blobs` (digest, bytes) and the `manifest`. For
/// tests and the benchmark, which need a layout that no other tool made.
pub fn write(
    dir: &Path,
    blobs: &[(&str, &[u8])],
    manifest: &[u8],
    media_type: &str,
) -> std::io::Result<String> {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir)?;
    for (digest, bytes) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(blob_dir.join(hex), bytes)?;
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(manifest)));
    std::fs::write(
        blob_dir.join(digest.trim_start_matches("sha256:")),
        manifest,
    )?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": digest, "size": manifest.len()}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn sample(dir: &Path) -> String {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really gzip";
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": digest(config), "size": config.len()},
            "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": digest(layer), "size": layer.len()}],
        }))
        .unwrap();
        write(
            dir,
            &[(&digest(config), config), (&digest(layer), layer)],
            &manifest,
            media::OCI_MANIFEST,
        )
        .unwrap()
    }

    #[test]
    fn a_layout_gives_its_manifest_byte_for_byte_and_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let want = sample(dir.path());
        let image = read(dir.path()).unwrap();
        assert_eq!(image.digest, want);
        assert_eq!(digest(&image.manifest), want);
        assert_eq!(image.media_type, media::OCI_MANIFEST);
        assert_eq!(image.blobs.len(), 2);
    }

    #[test]
    fn a_corrupt_or_escaping_layout_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let hex = dir
            .path()
            .join("blobs/sha256")
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::read(p).unwrap() == b"not really gzip")
            .unwrap();
        std::fs::write(&hex, b"shorter").unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("the manifest says"), "{error}");

        let escaping =
            serde_json::json!({"manifests": [{"digest": "sha256:../../etc/passwd", "size": 1}]});
        std::fs::write(dir.path().join("index.json"), escaping.to_string()).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("is not a sha256 digest"), "{error}");

        let missing = read(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, LayoutError::Missing(_)), "{missing}");
    }
}
