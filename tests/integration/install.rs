//! What a cluster administrator installs: the RBAC in `manifests/` is enough for the
//! controller (and holds no wildcard), and the `ferry controller` binary serves its probes and
//! metrics and stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{RunningController, TestNamespace, WAIT};
use ferry::api::conditions::{self, READY};
use ferry::api::{Application, Environment, FIELD_MANAGER, Namespace};

const MANIFEST: &str = include_str!("../../manifests/ferry.yaml");

fn manifest_objects() -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(MANIFEST)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("manifests/ferry.yaml parses"))
        .collect()
}

fn object_of_kind<T: serde::de::DeserializeOwned>(kind: &str) -> T {
    let object = manifest_objects()
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("manifests/ferry.yaml has a {kind}"));
    serde_json::from_value(object)
        .unwrap_or_else(|e| panic!("the {kind} in manifests/ferry.yaml: {e}"))
}

async fn apply<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {}: {e}", object.name_any()));
}

#[test]
fn the_cluster_role_has_no_wildcards() {
    let role: ClusterRole = object_of_kind("ClusterRole");
    for rule in role.rules.unwrap_or_default() {
        let all = [
            rule.api_groups.unwrap_or_default(),
            rule.resources.unwrap_or_default(),
            rule.verbs,
        ];
        assert!(
            all.iter().flatten().all(|v| !v.contains('*')),
            "a wildcard in the ClusterRole"
        );
    }
}

/// Runs the controller as the ServiceAccount of `manifests/ferry.yaml` (by impersonation): if
/// a verb it uses were missing, its watches or status writes would fail and nothing would
/// become Ready.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_works_with_exactly_the_rbac_of_the_install_manifest() {
    let ns = TestNamespace::new("rbac").await;
    let admin = ns.client.clone();
    let system: Namespace = object_of_kind("Namespace");
    apply(&Api::<Namespace>::all(admin.clone()), &system).await;
    let account: ServiceAccount = object_of_kind("ServiceAccount");
    apply(
        &Api::<ServiceAccount>::namespaced(admin.clone(), "ferry-system"),
        &account,
    )
    .await;
    apply(
        &Api::<ClusterRole>::all(admin.clone()),
        &object_of_kind::<ClusterRole>("ClusterRole"),
    )
    .await;
    apply(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        &object_of_kind::<ClusterRoleBinding>("ClusterRoleBinding"),
    )
    .await;

    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.auth_info.impersonate = Some("system:serviceaccount:ferry-system:ferry".to_owned());
    let as_ferry = Client::try_from(config).expect("an impersonating client");
    // The real Deployment watches the whole cluster.
    Api::<Application>::all(as_ferry.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("the ServiceAccount may list Applications cluster-wide");

    let controller = RunningController::start(&as_ferry, &ns.name);
    ns.create::<Environment>(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec: {}\n",
    )
    .await;
    ns.create::<k8s_openapi::api::core::v1::Secret>(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: hook}\nstringData: {secret: s3cret}\n",
    )
    .await;
    ns.create::<Application>(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: shop}
spec:
  source: {url: "http://git.local/shop.git", webhookSecret: hook}
  build: {builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}
  image: {repository: registry.local/team-a/shop}
  environments: [{name: dev}]
"#,
    )
    .await;
    ns.wait_for::<Application>("shop", "Ready as the ServiceAccount", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let published = events
        .list(&ListParams::default())
        .await
        .expect("Events")
        .items;
    assert!(
        published
            .iter()
            .any(|e| e.reporting_controller.as_deref() == Some("ferry")),
        "the ServiceAccount may publish Events"
    );
    controller.stop().await;
    ns.cleanup().await;
}

/// `ferry controller` as a process: probes and metrics answer, SIGTERM stops it with status 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_probes_and_metrics_and_stops_on_sigterm() {
    let ns = TestNamespace::new("binary").await;
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "controller",
            "--namespace",
            &ns.name,
            "--log-format",
            "json",
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ferry starts");

    assert_eq!(get(port, "/healthz").await.0, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(port, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ns.create::<Environment>(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec: {}\n",
    )
    .await;
    ns.wait_for::<Environment>("dev", "Ready", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let (status, metrics) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ferry_reconciles_total{kind=\"Environment\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );

    let pid = child.id().expect("a running child").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("ferry exits after SIGTERM")
        .expect("exit status");
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout).await;
    }
    assert!(exit.success(), "ferry exited with {exit}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "--log-format json writes JSON lines: {first}"
    );
    ns.cleanup().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A minimal HTTP/1.0 GET, so the tests need no HTTP client dependency. Retries until the
/// server listens.
async fn get(port: u16, path: &str) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => break stream,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nothing listens on {port}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("request written");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
