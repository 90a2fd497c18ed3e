//! What a cluster administrator installs: the RBAC in `manifests/` is enough for the
//! controller (and holds no wildcard), and the `ferry controller` binary serves its probes and
//! metrics and stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
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

const SERVICE_ACCOUNT: &str = "system:serviceaccount:ferry-system:ferry";

/// The namespace, ServiceAccount and RBAC of `manifests/ferry.yaml`, as an administrator
/// applies them.
async fn install_rbac(admin: &Client) {
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
    apply(
        &Api::<Role>::namespaced(admin.clone(), "ferry-system"),
        &object_of_kind::<Role>("Role"),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(admin.clone(), "ferry-system"),
        &object_of_kind::<RoleBinding>("RoleBinding"),
    )
    .await;
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
    install_rbac(&ns.client).await;

    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.to_owned());
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

/// Starts `ferry controller` for one namespace, serving on `port`.
fn spawn_ferry(
    namespace: &str,
    port: u16,
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "controller",
            "--namespace",
            namespace,
            "--log-format",
            "json",
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ferry starts")
}

/// Sends SIGTERM and waits for the process to exit.
async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("a running child").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("ferry exits after SIGTERM")
        .expect("exit status")
}

async fn wait_ready(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(port, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn environment_ready(ns: &TestNamespace, name: &str) {
    ns.create::<Environment>(&format!(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec: {{}}\n"
    ))
    .await;
    ns.wait_for::<Environment>(name, "Ready", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
}

/// Two replicas with `--leader-elect`, both as the ServiceAccount (so the Role for Leases is
/// checked too): only the holder of the Lease reconciles, and when it stops on SIGTERM it
/// releases the Lease and the standby takes over at once.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_reconciles_and_a_standby_takes_over_on_sigterm() {
    let ns = TestNamespace::new("leader").await;
    install_rbac(&ns.client).await;
    let kubeconfig = impersonating_kubeconfig(&ns.name);
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let elect = ["--leader-elect", "--leader-elect-lease-duration", "4s"];
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), "ferry-system");

    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn_ferry(
        &ns.name,
        port_a,
        &elect,
        &[("POD_NAME", "replica-a"), ("KUBECONFIG", kubeconfig)],
    );
    lease_held_by(&leases, "replica-a").await;
    let mut b = spawn_ferry(
        &ns.name,
        port_b,
        &elect,
        &[("POD_NAME", "replica-b"), ("KUBECONFIG", kubeconfig)],
    );
    wait_ready(port_b).await; // a standby is ready: it must not block a rollout

    environment_ready(&ns, "dev").await;
    let reconciled =
        |metrics: &str| metrics.contains("ferry_reconciles_total{kind=\"Environment\"}");
    assert!(
        reconciled(&get(port_a, "/metrics").await.1),
        "the leader reconciles"
    );
    assert!(
        !reconciled(&get(port_b, "/metrics").await.1),
        "the standby does not reconcile"
    );

    assert!(terminate(&mut a).await.success());
    lease_held_by(&leases, "replica-b").await;
    environment_ready(&ns, "qa").await;
    assert!(
        reconciled(&get(port_b, "/metrics").await.1),
        "the new leader reconciles"
    );

    assert!(terminate(&mut b).await.success());
    ns.cleanup().await;
}

/// Waits until the leader Lease names `holder`.
async fn lease_held_by(leases: &Api<Lease>, holder: &str) {
    let held = |lease: Option<&Lease>| {
        lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.as_deref())
            == Some(holder)
    };
    tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(leases.clone(), "ferry-controller", held),
    )
    .await
    .unwrap_or_else(|_| panic!("{holder} did not hold the Lease within {WAIT:?}"))
    .expect("watching the Lease");
}

/// A copy of the test kubeconfig that acts as Ferry's ServiceAccount.
fn impersonating_kubeconfig(name: &str) -> std::path::PathBuf {
    let source = std::env::var("KUBECONFIG").expect("KUBECONFIG is set by e2e/apiserver.sh");
    let text = std::fs::read_to_string(&source).expect("the kubeconfig");
    let mut config: serde_json::Value = serde_yaml::from_str(&text).expect("the kubeconfig parses");
    for user in config["users"].as_array_mut().into_iter().flatten() {
        user["user"]["as"] = SERVICE_ACCOUNT.into();
    }
    let path = std::env::temp_dir().join(format!("ferry-{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML"))
        .expect("writing the kubeconfig");
    path
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
