//! The API server rejects bad objects with messages that say what is wrong and how to fix it,
//! and keeps Releases and BuildJobs immutable.

use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;

use super::{TestNamespace, with_temp_ns};
use ferry::api::Release;

const INVALID: &str = include_str!("../fixtures/invalid.yaml");
const VALID: &str = include_str!("../fixtures/valid.yaml");

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("fixture YAML parses"))
        .collect()
}

fn annotation<'a>(object: &'a serde_json::Value, key: &str) -> &'a str {
    object["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
}

async fn create(
    ns: &TestNamespace,
    object: &serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().expect("fixture has a kind");
    let dynamic: DynamicObject =
        serde_json::from_value(object.clone()).expect("fixture is an object");
    ns.dynamic(kind)
        .create(&PostParams::default(), &dynamic)
        .await
}

/// Whether the API server refused a change as invalid (422) with this message.
fn is_invalid_with(error: &kube::Error, message: &str) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 422 && s.message.contains(message))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalid_object_is_rejected_with_a_message_that_says_why() {
    with_temp_ns("invalid", |ns| async move {
        let cases = documents(INVALID);
        assert!(cases.len() >= 20, "at least 20 distinct invalid objects");
        let mut failures = Vec::new();
        for object in &cases {
            let case = annotation(object, "test.ferry.dev/case");
            let expect = annotation(object, "test.ferry.dev/expect");
            match create(&ns, object).await {
                Ok(_) => failures.push(format!("{case}: accepted")),
                Err(kube::Error::Api(status))
                    if status.code == 422 && status.message.contains(expect) =>
                {
                    println!("rejected: {case}\n    {}", status.message);
                }
                Err(other) => failures.push(format!(
                    "{case}: expected 422 with \"{expect}\", got {other}"
                )),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_valid_fixtures_and_the_examples_are_accepted() {
    with_temp_ns("valid", |ns| async move {
        let mut objects = documents(VALID);
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
            .expect("examples/ exists")
        {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("an example file");
                objects.extend(documents(&text).into_iter().filter(|o| {
                    o["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("ferry.dev/"))
                }));
            }
        }
        for object in &mut objects {
            object["metadata"]["namespace"] = serde_json::Value::Null;
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Err(error) = create(&ns, object).await {
                // Examples may repeat a name across files; only a validation error is a failure.
                assert!(
                    matches!(&error, kube::Error::Api(s) if s.code == 409),
                    "{} {name} was rejected: {error}",
                    object["kind"]
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_spec_cannot_change_but_its_status_can() {
    with_temp_ns("immutable", |ns| async move {
        let release = documents(VALID)
            .into_iter()
            .find(|o| o["kind"] == "Release")
            .expect("a valid Release");
        create(&ns, &release)
            .await
            .expect("the valid Release is accepted");
        let api = ns.api::<Release>();

        let change = serde_json::json!({"spec": {"version": "1.4.3"}});
        let error = api
            .patch(
                "shop-1.4.2",
                &PatchParams::default(),
                &Patch::Merge(&change),
            )
            .await
            .expect_err("changing a Release's version is refused");
        assert!(
            is_invalid_with(&error, "a Release is immutable"),
            "unexpected error: {error}"
        );

        let status = serde_json::json!({"status": {"summary": "dev"}});
        api.patch_status(
            "shop-1.4.2",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("the status of a Release may change");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buildjob_spec_cannot_change() {
    with_temp_ns("snapshot", |ns| async move {
        let job = documents(VALID)
            .into_iter()
            .find(|o| o["kind"] == "BuildJob")
            .expect("a valid BuildJob");
        create(&ns, &job)
            .await
            .expect("the valid BuildJob is accepted");
        let change = serde_json::json!({"spec": {"build": {"script": "make other"}}});
        let error = ns
            .dynamic("BuildJob")
            .patch(
                "shop-9fceb02",
                &PatchParams::default(),
                &Patch::Merge(&change),
            )
            .await
            .expect_err("changing a BuildJob's spec is refused");
        assert!(
            is_invalid_with(&error, "create a new BuildJob"),
            "unexpected error: {error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_credentials_over_plain_http_need_the_source_to_say_insecure() {
    with_temp_ns("insecure-source", |ns| async move {
        let app = |url: &str, insecure: bool| {
            serde_json::json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "shop"},
                "spec": {
                    "source": {"url": url, "credentialsSecret": "git-cred", "insecure": insecure},
                    "build": {"builderImage": "registry.local/builder:1", "script": "make",
                              "baseImage": "registry.local/base:1"},
                    "image": {"repository": "registry.local/team-a/shop"},
                },
            })
        };
        let refused = "are sent only over https:// or ssh";
        for url in [
            "http://git.team-a.svc/shop.git",
            "git://git.team-a.svc/shop.git",
        ] {
            let error = create(&ns, &app(url, false))
                .await
                .expect_err("credentials over plain text are refused");
            assert!(is_invalid_with(&error, refused), "{url}: {error}");
        }
        create(&ns, &app("http://git.team-a.svc/shop.git", true))
            .await
            .expect("with insecure: true they are accepted");
        // Taking the consent back while the credentials stay is refused too.
        let change = serde_json::json!({"spec": {"source": {"insecure": false}}});
        let error = ns
            .dynamic("Application")
            .patch("shop", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect_err("dropping insecure over http with credentials is refused");
        assert!(is_invalid_with(&error, refused), "{error}");
        // Over https the consent is not needed.
        let change = serde_json::json!({"spec": {"source": {
            "url": "https://git.example.com/team-a/shop.git", "insecure": null}}});
        ns.dynamic("Application")
            .patch("shop", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect("credentials over https need no consent");
    })
    .await;
}
