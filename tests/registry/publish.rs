//! What `ferry build publish` promises, checked against a real registry.

use ferry::adapters::registry::{Credentials, RegistryClient, manifest_exists, parse_reference};
use ferry::build::layout;
use serde_json::Value;

use crate::support::*;

/// The image config and manifest of `image`, read from the registry.
fn read_image(image: &str) -> (Value, Value) {
    let reference = parse_reference(image).expect("a reference");
    let host = reference.resolve_registry().to_owned();
    block_on(async {
        let mut client = RegistryClient::new(std::slice::from_ref(&host));
        client.login(&host, &Credentials::anonymous()).await;
        let base = client.pull_image(&reference).await.expect("the image");
        let config = serde_json::from_slice(&base.config).expect("a JSON config");
        let manifest = serde_json::to_value(&base.manifest).expect("a manifest");
        (config, manifest)
    })
}

fn is_manifest_put(repository: &str, tag: &str) -> impl Fn(&Request) -> bool {
    let uri = format!("/v2/{repository}/manifests/{tag}");
    move |r| r.method == "PUT" && r.uri == uri
}

#[test]
fn the_same_content_published_twice_gives_the_same_digest_and_uploads_no_layer_again() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let output = tempfile::tempdir().unwrap();
    write_tree(
        output.path(),
        &[
            ("app/server", b"#!/bin/sh\necho hi\n"),
            ("app/static/index.html", b"<p>hi</p>"),
        ],
    );
    let args = |tag: &str| {
        vec![
            flag("repository", format!("{}/web", registry.host)),
            flag("tag", tag),
            flag("output", output.path().display()),
            "--insecure".to_owned(),
        ]
    };
    let first = publish(&args("one"));
    let digest = first.digest();
    assert_eq!(
        first.report["image"],
        format!("{}/web@{digest}", registry.host)
    );
    assert!(first.stdout.contains(&digest), "{first:#?}");
    assert_eq!(first.stdout.lines().count(), 1, "{first:#?}");

    // A fresh layer cache: the layer is rebuilt, its digest found in the registry by HEAD.
    let mark = registry.mark();
    let second = publish(&args("two"));
    assert_eq!(second.digest(), digest, "same content, same digest");
    let requests = registry.requests_since(mark, is_manifest_put("web", "two"));
    assert_eq!(uploads(&requests), Vec::<&Request>::new(), "{second:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r.method == "HEAD" && r.uri.contains("/blobs/")),
        "blobs are checked first: {requests:#?}"
    );
}

#[test]
fn a_changed_file_gives_a_new_digest_and_uploads_only_the_new_layer_and_config() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let output = tempfile::tempdir().unwrap();
    write_tree(output.path(), &[("app/server", b"version 1")]);
    let args = |tag: &str| {
        vec![
            flag("repository", format!("{}/web", registry.host)),
            flag("tag", tag),
            flag("output", output.path().display()),
            "--insecure".to_owned(),
        ]
    };
    let first = publish(&args("one")).digest();
    write_tree(output.path(), &[("app/server", b"version 2")]);
    let mark = registry.mark();
    let second = publish(&args("two")).digest();
    assert_ne!(first, second);
    let requests = registry.requests_since(mark, is_manifest_put("web", "two"));
    let completed: Vec<_> = uploads(&requests)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(
        completed.len(),
        2,
        "the layer and the config: {requests:#?}"
    );
}

#[test]
fn the_entrypoint_lands_in_the_config_on_top_of_the_base_layers() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let base_dir = tempfile::tempdir().unwrap();
    write_tree(base_dir.path(), &[("bin/tool", b"base tool")]);
    let base = publish(&[
        flag("repository", format!("{}/base", registry.host)),
        flag("tag", "v1"),
        flag("output", base_dir.path().display()),
        flag("entrypoint", "/bin/tool"),
        "--insecure".to_owned(),
    ]);
    base.digest();
    let app_dir = tempfile::tempdir().unwrap();
    write_tree(app_dir.path(), &[("app/server", b"the app")]);
    let app = publish(&[
        flag("repository", format!("{}/base", registry.host)),
        flag("tag", "app"),
        flag("output", app_dir.path().display()),
        flag("base", format!("{}/base:v1", registry.host)),
        flag("entrypoint", "/app/server"),
        flag("entrypoint", "--port=8080"),
        "--insecure".to_owned(),
    ]);
    app.digest();

    let (base_config, base_manifest) = read_image(&format!("{}/base:v1", registry.host));
    let (config, manifest) = read_image(&format!("{}/base:app", registry.host));
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/app/server", "--port=8080"])
    );
    let base_ids = base_config["rootfs"]["diff_ids"].as_array().unwrap();
    let ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], base_ids[0], "the base's layer comes first");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers[0], base_manifest["layers"][0]);
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
}

#[test]
fn a_base_in_another_repository_of_the_same_registry_is_mounted_not_uploaded() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let base_dir = tempfile::tempdir().unwrap();
    write_tree(base_dir.path(), &[("bin/tool", &[42u8; 100_000])]);
    publish(&[
        flag("repository", format!("{}/library/base", registry.host)),
        flag("tag", "v1"),
        flag("output", base_dir.path().display()),
        "--insecure".to_owned(),
    ])
    .digest();
    let (_, base_manifest) = read_image(&format!("{}/library/base:v1", registry.host));
    let base_layer = base_manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let app_dir = tempfile::tempdir().unwrap();
    write_tree(app_dir.path(), &[("app/server", b"the app")]);
    let mark = registry.mark();
    let app = publish(&[
        flag("repository", format!("{}/team/app", registry.host)),
        flag("tag", "abc1234"),
        flag("output", app_dir.path().display()),
        flag("base", format!("{}/library/base:v1", registry.host)),
        "--insecure".to_owned(),
    ]);
    app.digest();
    let requests = registry.requests_since(mark, is_manifest_put("team/app", "abc1234"));
    let mounted = mounts(&requests);
    assert_eq!(mounted.len(), 1, "{requests:#?}");
    assert!(
        mounted[0].uri.contains(&base_layer.replace(':', "%3A")),
        "{mounted:#?}"
    );
    assert!(
        mounted[0].uri.contains("from=library%2Fbase"),
        "{mounted:#?}"
    );
    let base_uploads: Vec<_> = uploads(&requests)
        .into_iter()
        .filter(|r| r.uri.contains(&base_layer.replace(':', "%3A")))
        .collect();
    assert_eq!(
        base_uploads,
        Vec::<&Request>::new(),
        "the base layer was uploaded"
    );
    // Our layer and the config were uploaded, nothing else.
    assert_eq!(
        uploads(&requests)
            .iter()
            .filter(|r| r.method == "PUT")
            .count(),
        2,
        "{requests:#?}"
    );
}

#[test]
fn an_oci_layout_is_published_as_it_is_with_its_digest() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    // A layout written by our own code: a layer, a config, a manifest whose JSON is not in
    // any canonical form (indented, keys unsorted), so that only a byte-for-byte copy keeps
    // its digest.
    let output = tempfile::tempdir().unwrap();
    write_tree(output.path(), &[("hello.txt", b"hello from a layout")]);
    let temp = tempfile::tempdir().unwrap();
    let tree = ferry::build::layer::Tree::scan(output.path()).unwrap();
    let (layer, file) = ferry::build::layer::build(&tree, Default::default(), temp.path()).unwrap();
    let layer_bytes = file.read_all().unwrap();
    let config =
        ferry::build::publish::image_config(None, &layer.diff_id, &["/hello".into()], 0).unwrap();
    let config_digest = sha256(&config);
    let manifest = format!(
        r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "layers": [ {{ "size": {}, "digest": "{}", "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip" }} ],
  "config": {{ "size": {}, "digest": "{config_digest}", "mediaType": "application/vnd.oci.image.config.v1+json" }},
  "annotations": {{ "made.by": "the test" }}
}}
"#,
        layer.size,
        layer.digest,
        config.len()
    )
    .into_bytes();
    let dir = temp.path().join("layout");
    let want = layout::write(
        &dir,
        &[(&config_digest, &config), (&layer.digest, &layer_bytes)],
        &manifest,
        "application/vnd.oci.image.manifest.v1+json",
    )
    .unwrap();
    let published = publish(&[
        flag("repository", format!("{}/from-layout", registry.host)),
        flag("tag", "one"),
        flag("oci-layout", dir.display()),
        "--insecure".to_owned(),
    ]);
    assert_eq!(published.digest(), want);

    // A layout that another tool (skopeo, the containers/image library) wrote from the
    // registry: republished elsewhere, it keeps its digest.
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "skopeo is missing under CI"
        );
        eprintln!("SKIPPED the skopeo half: skopeo is absent");
        return;
    }
    let skopeo_dir = temp.path().join("skopeo");
    let copied = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/from-layout:one", registry.host))
        .arg(format!("oci:{}:one", skopeo_dir.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let again = publish(&[
        flag("repository", format!("{}/again", registry.host)),
        flag("tag", "two"),
        flag("oci-layout", skopeo_dir.display()),
        "--insecure".to_owned(),
    ]);
    assert_eq!(again.digest(), want);
}

#[test]
fn a_docker_schema2_base_gives_an_image_with_docker_media_types_throughout() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    // The base, in Docker's schema 2, published from a layout (as `docker save`-era tools
    // and many public images are).
    let base_dir = tempfile::tempdir().unwrap();
    write_tree(base_dir.path(), &[("etc/base", b"docker base")]);
    let temp = tempfile::tempdir().unwrap();
    let tree = ferry::build::layer::Tree::scan(base_dir.path()).unwrap();
    let (layer, bytes) =
        ferry::build::layer::build(&tree, Default::default(), temp.path()).unwrap();
    let config = ferry::build::publish::image_config(None, &layer.diff_id, &[], 0).unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.digest, "size": layer.size}],
    }))
    .unwrap();
    let dir = temp.path().join("layout");
    layout::write(
        &dir,
        &[
            (&config_digest, &config),
            (&layer.digest, &bytes.read_all().unwrap()),
        ],
        &manifest,
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    .unwrap();
    publish(&[
        flag("repository", format!("{}/docker-base", registry.host)),
        flag("tag", "v1"),
        flag("oci-layout", dir.display()),
        "--insecure".to_owned(),
    ])
    .digest();

    let app_dir = tempfile::tempdir().unwrap();
    write_tree(app_dir.path(), &[("app/server", b"the app")]);
    publish(&[
        flag("repository", format!("{}/app", registry.host)),
        flag("tag", "one"),
        flag("output", app_dir.path().display()),
        flag("base", format!("{}/docker-base:v1", registry.host)),
        "--insecure".to_owned(),
    ])
    .digest();
    let (_, manifest) = read_image(&format!("{}/app:one", registry.host));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
}

#[test]
fn a_wrong_password_is_refused_with_401_naming_the_registry_and_not_the_password() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start_with_auth("robot", "the-right-one");
    let output = tempfile::tempdir().unwrap();
    write_tree(output.path(), &[("app", b"x")]);
    let secrets = tempfile::tempdir().unwrap();
    let password = "hunter2-wrong-Zq9";
    let config = docker_config(secrets.path(), &registry.host, "robot", password);
    let args = |config: &std::path::Path| {
        vec![
            flag("repository", format!("{}/web", registry.host)),
            flag("tag", "one"),
            flag("output", output.path().display()),
            flag("docker-config", config.display()),
            "--insecure".to_owned(),
        ]
    };
    let refused = publish(&args(&config));
    assert!(!refused.success, "{refused:#?}");
    let message = refused.stderr.trim();
    assert_eq!(message.lines().count(), 1, "{refused:#?}");
    assert!(message.contains(&registry.host), "{message}");
    assert!(message.contains("401"), "{message}");
    assert_eq!(refused.report["reason"], "RegistryRefused", "{refused:#?}");
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("robot:{password}"),
    );
    for shown in [
        &refused.stderr,
        &refused.stdout,
        &refused.report.to_string(),
    ] {
        assert!(!shown.contains(password), "the password leaked: {shown}");
        assert!(!shown.contains(&encoded), "the password leaked: {shown}");
    }

    // The right password works, and so does the controller's check with it.
    let right = docker_config(secrets.path(), &registry.host, "robot", "the-right-one");
    let digest = publish(&args(&right)).digest();
    let repository = format!("{}/web", registry.host);
    let good = Credentials::basic("robot", "the-right-one");
    assert!(block_on(manifest_exists(&repository, &digest, &good, true)).unwrap());
    let bad = Credentials::basic("robot", password);
    let error = block_on(manifest_exists(&repository, &digest, &bad, true)).unwrap_err();
    assert_eq!(error.category(), "RegistryRefused", "{error}");
    assert!(!error.to_string().contains(password), "{error}");
}

#[test]
fn a_registry_that_is_down_or_failing_fails_clearly() {
    if !registry_available() {
        return;
    }
    let output = tempfile::tempdir().unwrap();
    write_tree(output.path(), &[("app", b"x")]);
    let down = format!("127.0.0.1:{}", free_port());
    let outcome = publish(&[
        flag("repository", format!("{down}/web")),
        flag("tag", "one"),
        flag("output", output.path().display()),
        "--insecure".to_owned(),
    ]);
    assert!(!outcome.success);
    assert_eq!(
        outcome.report["reason"], "RegistryUnreachable",
        "{outcome:#?}"
    );
    assert!(outcome.stderr.contains(&down), "{outcome:#?}");
    assert!(outcome.stderr.contains("unreachable"), "{outcome:#?}");

    // A registry whose storage is broken (its root is under a plain file) answers 500.
    let registry = Registry::start();
    let broken = tempfile::tempdir().unwrap();
    let file = broken.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let config = std::fs::read_to_string(registry.dir.path().join("config.yml")).unwrap();
    let port = free_port();
    let failing_host = format!("127.0.0.1:{port}");
    let failing_config = broken.path().join("config.yml");
    std::fs::write(
        &failing_config,
        config
            .replace(
                &registry.dir.path().join("data").display().to_string(),
                &file.join("data").display().to_string(),
            )
            .replace(&registry.host, &failing_host),
    )
    .unwrap();
    let mut failing = std::process::Command::new(REGISTRY_BINARY)
        .arg("serve")
        .arg(&failing_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while http_status(&failing_host, "GET", "/v2/").is_none() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the failing registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let outcome = publish(&[
        flag("repository", format!("{failing_host}/web")),
        flag("tag", "one"),
        flag("output", output.path().display()),
        "--insecure".to_owned(),
    ]);
    let _ = failing.kill();
    let _ = failing.wait();
    assert!(!outcome.success);
    assert_eq!(
        outcome.report["reason"], "RegistryServerError",
        "{outcome:#?}"
    );
    assert!(outcome.stderr.contains("HTTP 500"), "{outcome:#?}");
    assert!(outcome.stderr.contains(&failing_host), "{outcome:#?}");
}

#[test]
fn a_missing_output_directory_or_base_image_is_named() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("no-output-here");
    let outcome = publish(&[
        flag("repository", format!("{}/web", registry.host)),
        flag("tag", "one"),
        flag("output", missing.display()),
        "--insecure".to_owned(),
    ]);
    assert!(!outcome.success);
    assert_eq!(outcome.report["reason"], "OutputMissing", "{outcome:#?}");
    assert!(outcome.stderr.contains("no-output-here"), "{outcome:#?}");

    write_tree(temp.path(), &[("out/app", b"x")]);
    let outcome = publish(&[
        flag("repository", format!("{}/web", registry.host)),
        flag("tag", "one"),
        flag("output", temp.path().join("out").display()),
        flag("base", format!("{}/no/such/base:v9", registry.host)),
        "--insecure".to_owned(),
    ]);
    assert!(!outcome.success);
    assert_eq!(
        outcome.report["reason"], "BaseImageNotFound",
        "{outcome:#?}"
    );
    assert!(outcome.stderr.contains("no/such/base:v9"), "{outcome:#?}");
}

#[test]
fn manifest_exists_sees_the_pushed_digest_and_not_a_made_up_one() {
    if !registry_available() {
        return;
    }
    let registry = Registry::start();
    let output = tempfile::tempdir().unwrap();
    write_tree(output.path(), &[("app", b"checked by the controller")]);
    let digest = publish(&[
        flag("repository", format!("{}/checked", registry.host)),
        flag("tag", "one"),
        flag("output", output.path().display()),
        "--insecure".to_owned(),
    ])
    .digest();
    let repository = format!("{}/checked", registry.host);
    let anonymous = Credentials::anonymous();
    assert!(block_on(manifest_exists(&repository, &digest, &anonymous, true)).unwrap());
    let made_up = format!("sha256:{}", "0123456789abcdef".repeat(4));
    assert!(!block_on(manifest_exists(&repository, &made_up, &anonymous, true)).unwrap());
    let elsewhere = format!("{}/other", registry.host);
    assert!(!block_on(manifest_exists(&elsewhere, &digest, &anonymous, true)).unwrap());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
