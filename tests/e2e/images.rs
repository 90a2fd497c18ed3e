//! The test server's images (e2e/lib/testserver.sh builds and pushes them: a busybox root
//! filesystem with a start script and a handler per behaviour, written as an OCI layout and
//! pushed with skopeo, like the cluster's own images). Each behaviour of each version is an
//! image of its own, so a Release of it names its own digest.

use crate::harness::{Cluster, Res};

/// What the test server does; every answer's body is `version=V behaviour=B path=P code=C pod=P`.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Always 200.
    Ok,
    /// /ready answers 503 forever; / and /healthz answer 200.
    NeverReady,
    /// The process exits 1 at start.
    Crash,
    /// 200 for this many seconds after the start, then 500 on / and /healthz.
    FailAfter(u32),
    /// Every /healthz answer is delayed by this many milliseconds.
    Slow(u32),
}

impl Behaviour {
    fn words(self) -> Vec<String> {
        match self {
            Self::Ok => vec!["ok".into()],
            Self::NeverReady => vec!["never-ready".into()],
            Self::Crash => vec!["crash".into()],
            Self::FailAfter(s) => vec!["fail-after".into(), s.to_string()],
            Self::Slow(ms) => vec!["slow".into(), ms.to_string()],
        }
    }
}

/// Builds and pushes the test server `version` behaving so; returns `REPOSITORY@sha256:...`.
pub async fn testserver(cluster: &Cluster, behaviour: Behaviour, version: &str) -> Res<String> {
    let words = behaviour.words();
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -euo pipefail
dir=$1; shift
source "$dir/cluster/lib.sh"
source "$dir/images/lib.sh"
source "$dir/lib/testserver.sh"
testserver_image "$@""#,
        )
        .arg("testserver")
        .arg(&cluster.e2e_dir)
        .arg(&words[0])
        .arg(version)
        .args(&words[1..])
        .output()
        .await?;
    let reference = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !output.status.success() || !reference.contains("@sha256:") {
        crate::fail!(
            "building the test server {version} ({}): {}",
            words.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(reference)
}

/// The repository the test server's images are pushed to (`TESTSERVER_REPO`'s default). An
/// Application whose Releases are imported test server images names it as its
/// `spec.image.repository`: an import must name an image of its Application's repository
/// (the `ferry-import-image` admission policy).
pub fn repository(cluster: &Cluster) -> String {
    format!("{}/ferry-e2e/testserver", cluster.registry)
}

/// A reference into the test server's repository whose digest no image has, so a pod naming
/// it fails with ErrImagePull / ImagePullBackOff.
pub fn missing(cluster: &Cluster) -> String {
    let digest: String = (0..4)
        .map(|_| format!("{:016x}", fastrand::u64(..)))
        .collect();
    format!("{}@sha256:{digest}", repository(cluster))
}
