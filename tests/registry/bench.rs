//! `make bench-publish`: figures, not a judgement (ignored; run explicitly, in release).
//!
//! A deterministic 100 MB output directory (thousands of small text-like files, a few large
//! incompressible ones, as a build's output of assets and binaries) is published by `ferry
//! build publish`; the same content, as an OCI layout made of ferry's own layer, is pushed by
//! `skopeo copy`, twice: with the layer uncompressed (skopeo gzips it while pushing, as ferry
//! must: the like-for-like `ratio publish/skopeo`) and with ferry's compressed layer (skopeo
//! only uploads: `ratio publish/skopeo_upload_only`, the floor for a tool that must pack and
//! hash the directory before it knows the digest to HEAD). Every push gets a fresh registry of
//! its own, so nothing is there to reuse or mount; the median of three rounds is reported.
//!
//! Then an unchanged re-publish, twice: with the layer cache (a directory fingerprint hit:
//! no tar at all, only HEADs and the manifest PUT) and without it (the layer is rebuilt to
//! learn its digest, then found in the registry), which is what a fresh build pod, whose
//! /tmp is new, pays.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry::build::{layer, layout, publish::image_config};

use crate::support::*;

const SMALL_FILES: usize = 4_000;
const LARGE_FILES: usize = 3;
const LARGE_SIZE: usize = 20 << 20;

/// Writes the benchmark's output directory; returns its size in bytes.
fn generate(root: &Path) -> u64 {
    let mut rng = fastrand::Rng::with_seed(0x00fe_0001);
    let words = [
        "ferry", "commit", "image", "layer", "registry", "digest", "build", "release", "pod",
        "const", "function", "return", "static", "import", "export", "module", "value",
    ];
    let mut total = 0u64;
    for i in 0..SMALL_FILES {
        // 1 KiB to 19 KiB of text: sources, HTML, JSON-like assets.
        let target = 1_024 + rng.usize(..18 * 1_024);
        let mut text = String::with_capacity(target + 16);
        while text.len() < target {
            text.push_str(words[rng.usize(..words.len())]);
            text.push(if rng.u8(..10) == 0 { '\n' } else { ' ' });
            if rng.u8(..50) == 0 {
                text.push_str(&rng.u64(..).to_string());
            }
        }
        let path = root.join(format!("static/d{:02}/f{i:05}.txt", i % 40));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        total += text.len() as u64;
    }
    for i in 0..LARGE_FILES {
        // Incompressible: compiled, already-compressed or media files.
        let mut bytes = vec![0u8; LARGE_SIZE];
        rng.fill(&mut bytes);
        let path = root.join(format!("bin/large-{i}.bin"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        total += bytes.len() as u64;
    }
    total
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
#[ignore = "a benchmark: make bench-publish"]
fn bench_publish_against_skopeo() {
    assert!(
        Path::new(REGISTRY_BINARY).exists(),
        "make bench-publish needs {REGISTRY_BINARY} (apt-get install docker-registry)"
    );
    assert!(
        std::process::Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok(),
        "make bench-publish needs skopeo (apt-get install skopeo)"
    );
    if cfg!(debug_assertions) {
        eprintln!("WARNING: a debug build; make bench-publish runs the release build");
    }
    let temp = tempfile::tempdir().unwrap();
    let output = temp.path().join("output");
    let bytes = generate(&output);
    let files = SMALL_FILES + LARGE_FILES;
    println!("measured: output_bytes = {bytes} B");
    println!("measured: output_files = {files} files");

    // The layouts skopeo pushes, made of ferry's own layer (same content, same diff_id):
    // - "tar": the layer uncompressed, so skopeo gzips it while pushing, as ferry must: the
    //   like-for-like comparison (skopeo's containers/image compresses an uncompressed layer
    //   for a registry destination, streaming it into the upload);
    // - "gzip": ferry's compressed layer, so skopeo only uploads it: the floor of any tool
    //   that has to read, pack and hash the directory before it knows the digest to HEAD.
    let started = Instant::now();
    let tree = layer::Tree::scan(&output).unwrap();
    let (built, compressed) = layer::build(&tree, layer::Settings::default(), temp.path()).unwrap();
    println!(
        "measured: layer_build_seconds = {:.3} s",
        started.elapsed().as_secs_f64()
    );
    println!("measured: layer_bytes = {} B", built.size);
    let gzip_bytes = compressed.read_all().unwrap();
    drop(compressed);
    let mut tar_bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&gzip_bytes[..]),
        &mut tar_bytes,
    )
    .unwrap();
    let config = image_config(None, &built.diff_id, &[], 0).unwrap();
    let config_digest = sha256(&config);
    assert_eq!(sha256(&tar_bytes), built.diff_id);
    let make_layout = |name: &str, media_type: &str, digest: &str, bytes: &[u8]| {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": media_type, "digest": digest, "size": bytes.len()}],
        }))
        .unwrap();
        let dir = temp.path().join(name);
        layout::write(
            &dir,
            &[(&config_digest, &config), (digest, bytes)],
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
        dir
    };
    let tar_layout = make_layout(
        "layout-tar",
        "application/vnd.oci.image.layer.v1.tar",
        &built.diff_id,
        &tar_bytes,
    );
    let gzip_layout = make_layout(
        "layout-gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &built.digest,
        &gzip_bytes,
    );
    drop((tar_bytes, gzip_bytes));
    let skopeo_copy = |layout: &Path| {
        // A registry of its own, so that nothing is there to reuse or mount.
        let registry = Registry::start();
        let started = Instant::now();
        let copied = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/bench:one", registry.host))
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert!(copied.status.success(), "skopeo copy failed: {copied:?}");
        elapsed
    };

    // In a build pod the publish step starts long after the build wrote its last file; here
    // the files are seconds old already, but make sure they are older than the cache's
    // settling time so the first publish may remember the layer.
    std::thread::sleep(layer::SETTLE * 2);
    let cache = temp.path().join("cache");
    let (mut ferry_times, mut skopeo_times, mut upload_times) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut last_registry = None;
    for round in 0..3 {
        let registry = Registry::start();
        let round_cache = temp.path().join(format!("cache-{round}"));
        let started = Instant::now();
        let outcome = publish(&[
            flag("repository", format!("{}/bench", registry.host)),
            flag("tag", "one"),
            flag("output", output.display()),
            flag(
                "cache-dir",
                if round == 0 { &cache } else { &round_cache }.display(),
            ),
            "--insecure".to_owned(),
        ]);
        ferry_times.push(started.elapsed());
        outcome.digest();
        skopeo_times.push(skopeo_copy(&tar_layout));
        upload_times.push(skopeo_copy(&gzip_layout));
        if round == 0 {
            last_registry = Some(registry);
        }
    }
    let upload_only = median(upload_times);
    let (ferry, skopeo) = (median(ferry_times), median(skopeo_times));
    println!("measured: publish_seconds = {:.3} s", ferry.as_secs_f64());
    println!("measured: skopeo_seconds = {:.3} s", skopeo.as_secs_f64());
    println!(
        "measured: skopeo_upload_only_seconds = {:.3} s",
        upload_only.as_secs_f64()
    );
    println!(
        "ratio publish/skopeo: {:.2}",
        ferry.as_secs_f64() / skopeo.as_secs_f64()
    );
    println!(
        "ratio publish/skopeo_upload_only: {:.2}",
        ferry.as_secs_f64() / upload_only.as_secs_f64()
    );

    // Unchanged re-publish to the registry of the first round, whose cache is warm.
    let registry = last_registry.unwrap();
    let republish = |cache: &Path, tag: &str| {
        let started = Instant::now();
        let outcome = publish(&[
            flag("repository", format!("{}/bench", registry.host)),
            flag("tag", tag),
            flag("output", output.display()),
            flag("cache-dir", cache.display()),
            "--insecure".to_owned(),
        ]);
        let elapsed = started.elapsed();
        outcome.digest();
        elapsed
    };
    let warm = median(
        (0..5)
            .map(|i| republish(&cache, &format!("warm{i}")))
            .collect(),
    );
    println!(
        "measured: republish_unchanged_ms = {:.1} ms",
        warm.as_secs_f64() * 1e3
    );
    let cold = median(
        (0..3)
            .map(|i| republish(&temp.path().join(format!("cold{i}")), &format!("cold{i}")))
            .collect(),
    );
    println!(
        "measured: republish_unchanged_no_cache_ms = {:.1} ms",
        cold.as_secs_f64() * 1e3
    );
}
