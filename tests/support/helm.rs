//! The chart as Helm renders it, for tests in more than one tier (included with `#[path]`).
//!
//! Helm comes from `e2e/build-helm.sh`, which builds it once from its Go module and caches it by
//! version; after that the script only prints where the binary is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The helm binary, built on first use.
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(root().join("e2e/build-helm.sh"))
            .output()
            .expect("e2e/build-helm.sh runs");
        assert!(
            out.status.success(),
            "e2e/build-helm.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let bin = stdout.lines().last().expect("the bin directory");
        Path::new(bin.trim()).join("helm")
    })
}

/// `helm template` of `charts/ferry` as `release` in `namespace`, with `--set` values (and the
/// CRDs when `with_crds`), as parsed objects.
pub fn render(
    release: &str,
    namespace: &str,
    sets: &[&str],
    with_crds: bool,
) -> Vec<serde_json::Value> {
    let mut command = Command::new(helm());
    command
        .args(["template", release])
        .arg(root().join("charts/ferry"))
        .args(["--namespace", namespace]);
    if with_crds {
        command.arg("--include-crds");
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template {sets:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("helm writes UTF-8");
    parse(&yaml)
}

/// Every non-empty document of a YAML stream.
pub fn parse(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("a rendered document is not YAML: {e}"))
        })
        .filter(|object: &serde_json::Value| !object.is_null())
        .collect()
}
