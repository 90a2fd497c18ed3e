//! What a cluster administrator installs: the RBAC in `manifests/` is enough for the
//! controller (and holds no wildcard), the API server accepts everything the Helm chart
//! renders, and the `ferry controller` binary serves its probes and metrics and stops cleanly
//! on SIGTERM.

use std::process::Stdio;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{RunningController, TestNamespace, WAIT, await_enforcement, client_as, eventually};
use ferry::api::conditions::{self, READY, STALLED};
use ferry::api::reasons::{DEPLOYMENT_NOT_GRANTED, SECRETS_NOT_GRANTED, WORKLOAD_LEFT_IN_PLACE};
use ferry::api::{Application, Environment};

#[path = "../support/helm.rs"]
mod helm;

const MANIFEST: &str = include_str!("../../manifests/ferry.yaml");

fn manifest_objects() -> Vec<serde_json::Value> {
    helm::parse(MANIFEST)
}

fn object_of_kind<T: serde::de::DeserializeOwned>(kind: &str) -> T {
    let object = manifest_objects()
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("manifests/ferry.yaml has a {kind}"));
    serde_json::from_value(object)
        .unwrap_or_else(|e| panic!("the {kind} in manifests/ferry.yaml: {e}"))
}

/// Server-side applies one object of any kind the API server serves (with `dry_run`, only
/// asks whether it would be accepted).
async fn apply_object(
    client: &Client,
    object: &serde_json::Value,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let object: DynamicObject =
        serde_json::from_value(object.clone()).expect("an object with apiVersion and kind");
    let types = object.types.clone().unwrap_or_default();
    let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    // As `kubectl apply --server-side` installs them.
    let mut params = PatchParams::apply("kubectl").force();
    if dry_run {
        params = params.dry_run();
    }
    let name = object.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &params, &Patch::Apply(&object)).await?;
    Ok(())
}

use super::fixtures::FERRY as SERVICE_ACCOUNT;

/// The policies whose bindings [`install_rbac`] leaves out: bound cluster-wide, they would
/// refuse the other tests' controllers (which run with the test's admin credentials, not as
/// Ferry's ServiceAccount) their status writes, and the Releases and BuildJobs those tests
/// create by hand. `tests/integration/status.rs` and `provenance.rs` bind them to their own
/// namespaces only ([`bind_in`]).
pub(super) const BOUND_PER_TEST: [&str; 5] = [
    "ferry-status",
    "ferry-releases",
    "ferry-import",
    "ferry-import-image",
    "ferry-rebuild",
];

/// What `kubectl apply -f manifests/ferry.yaml` creates, less the Deployment (the tests run
/// the controller themselves): the namespace, the ServiceAccount, all of the RBAC and the
/// admission policies, bound except those of [`BOUND_PER_TEST`].
pub(super) async fn install_rbac(admin: &Client) {
    for object in manifest_objects() {
        let bound_per_test = object["kind"] == "ValidatingAdmissionPolicyBinding"
            && BOUND_PER_TEST.contains(&object["spec"]["policyName"].as_str().unwrap_or_default());
        if object["kind"] == "Deployment" || bound_per_test {
            continue;
        }
        apply_object(admin, &object, false)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "applying {} {}: {e}",
                    object["kind"], object["metadata"]["name"]
                )
            });
    }
}

/// Removes the namespace's own bindings of the policies made by [`bind_in`] (cluster-scoped,
/// so they outlive the namespace).
pub(super) async fn unbind(admin: &Client, namespace: &str, policies: &[&str]) {
    let api: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding> =
        Api::all(admin.clone());
    for policy in policies {
        let _ = api
            .delete(&format!("{policy}-{namespace}"), &DeleteParams::default())
            .await;
    }
}

/// Binds the manifest's policy `policy` (one of [`BOUND_PER_TEST`]) as the manifest does, but
/// to `namespace` only, under a name of the namespace's own.
pub(super) async fn bind_in(admin: &Client, policy: &str, namespace: &str) {
    let mut binding = manifest_objects()
        .into_iter()
        .find(|o| {
            o["kind"] == "ValidatingAdmissionPolicyBinding" && o["spec"]["policyName"] == policy
        })
        .unwrap_or_else(|| panic!("manifests/ferry.yaml binds no policy {policy}"));
    binding["metadata"]["name"] = format!("{policy}-{namespace}").into();
    binding["spec"]["matchResources"] = serde_json::json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    });
    apply_object(admin, &binding, false)
        .await
        .unwrap_or_else(|e| panic!("binding {policy} in {namespace}: {e}"));
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

/// `helm template` output the API server would refuse (a bad field, a wrong type, a
/// RoleBinding in a namespace of the wrong shape) fails here, for the default values and for
/// values that render tenant RoleBindings. Server-side dry run: nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_accepts_everything_the_chart_renders() {
    let release = TestNamespace::new("chart").await;
    let tenant = TestNamespace::new("chart-tenant").await;
    let tenants = format!("tenantNamespaces={{{}}}", tenant.name);
    let watched = format!("watchNamespace={}", release.name);
    let value_sets: [&[&str]; 2] = [&[], &[&tenants, &watched]];
    for sets in value_sets {
        let objects = helm::render(&release.name, &release.name, sets, true);
        assert!(objects.iter().any(|o| o["kind"] == "Deployment"));
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "CustomResourceDefinition")
        );
        for object in &objects {
            apply_object(&release.client, object, true)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "with {sets:?} the API server refuses {} {}/{}: {e}",
                        object["kind"],
                        object["metadata"]["namespace"].as_str().unwrap_or_default(),
                        object["metadata"]["name"].as_str().unwrap_or_default()
                    )
                });
        }
    }
    release.cleanup().await;
    tenant.cleanup().await;
}

/// An Application naming a webhook Secret, with the Environment it goes through and that
/// Secret, in `ns`.
async fn shop_with_a_secret(ns: &TestNamespace) {
    ns.create::<Environment>(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec: {}\n",
    )
    .await;
    ns.create::<Secret>(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: hook}\nstringData: {secret: s3cret}\n",
    )
    .await;
    let repository = crate::shop_repository();
    ns.create::<Application>(&format!(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: shop}}
spec:
  source: {{url: "{repository}", webhookSecret: hook}}
  build: {{builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}}
  image: {{repository: registry.local/team-a/shop}}
  environments: [{{name: dev}}]
"#,
    ))
    .await;
}

/// What `kubectl create rolebinding ferry-tenant --clusterrole=ferry-tenant
/// --serviceaccount=ferry-system:ferry -n <namespace>` (README, "Install") creates.
async fn grant_tenant(ns: &TestNamespace) {
    grant(ns, "ferry-tenant").await;
}

/// The same for `ferry-deployer`: Ferry may write Deployments and Services in `ns`.
async fn grant_deployer(ns: &TestNamespace) {
    grant(ns, "ferry-deployer").await;
}

/// Binds the ClusterRole `role` to Ferry's ServiceAccount in `ns`, as the README's commands do.
pub(super) async fn grant(ns: &TestNamespace, role: &str) {
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": role, "namespace": ns.name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "ferry", "namespace": "ferry-system"}],
    }))
    .expect("a RoleBinding");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("creating the {role} RoleBinding: {e}"));
}

fn ready(app: &Application) -> bool {
    app.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.common.conditions, READY))
}

fn ready_reason(app: &Application) -> Option<&str> {
    let status = app.status.as_ref()?;
    conditions::find(&status.common.conditions, READY).map(|c| c.reason.as_str())
}

/// Runs the controller as the ServiceAccount of `manifests/ferry.yaml` (by impersonation): if
/// a verb it uses were missing, its watches or status writes would fail and nothing would
/// become Ready. Secrets it may read, and workloads write, only where a namespace granted
/// them: in a granted namespace the Application becomes Ready; in one without the grants it is
/// Stalled with SecretsNotGranted and its Environment with DeploymentNotGranted, whose messages
/// are the commands that grant them, until those are run.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_works_with_exactly_the_rbac_of_the_install_manifest() {
    let granted = TestNamespace::new("rbac").await;
    let ungranted = TestNamespace::new("rbac-ungranted").await;
    install_rbac(&granted.client).await;
    grant_tenant(&granted).await;
    grant_deployer(&granted).await;

    let as_ferry = client_as(SERVICE_ACCOUNT).await;
    // The real Deployment watches the whole cluster.
    Api::<Application>::all(as_ferry.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("the ServiceAccount may list Applications cluster-wide");
    // ... but reads no Secret outside its tenants' namespaces.
    let forbidden = Api::<Secret>::namespaced(as_ferry.clone(), "kube-system")
        .get_opt("anything")
        .await;
    assert!(
        matches!(&forbidden, Err(kube::Error::Api(status)) if status.code == 403),
        "the ServiceAccount must not read kube-system's Secrets: {forbidden:?}"
    );
    // ... nor write a Deployment there (it may read them all, to watch its own).
    let deployments = Api::<Deployment>::namespaced(as_ferry.clone(), "kube-system");
    deployments
        .list(&ListParams::default().limit(1))
        .await
        .expect("the ServiceAccount may read Deployments everywhere");
    let forbidden = deployments
        .delete("coredns", &DeleteParams::default())
        .await;
    assert!(
        matches!(&forbidden, Err(kube::Error::Api(status)) if status.code == 403),
        "the ServiceAccount must not delete kube-system's Deployments: {forbidden:?}"
    );

    // Every request the DeliveryRecords need (`controller::records`): a record of that name
    // already there is read before it is replaced.
    let records = Api::<ferry::api::DeliveryRecord>::namespaced(as_ferry.clone(), &granted.name);
    let record: ferry::api::DeliveryRecord = serde_yaml::from_str(
        "metadata: {name: none-dev-0123456789, labels: {ferry.dev/application: none}}\n\
         spec: {application: none, environment: dev, entry: {release: none-1.0.0, \
         time: '2026-12-07T10:00:00Z', kind: Rollout, outcome: Succeeded, reason: newest}}",
    )
    .expect("a record");
    records
        .create(&kube::api::PostParams::default(), &record)
        .await
        .expect("the ServiceAccount may create a DeliveryRecord");
    records
        .get_opt("none-dev-0123456789")
        .await
        .expect("the ServiceAccount may read a DeliveryRecord");
    records
        .delete("none-dev-0123456789", &DeleteParams::default())
        .await
        .expect("the ServiceAccount may delete a DeliveryRecord");
    records
        .list(&ListParams::default().labels("ferry.dev/application=none"))
        .await
        .expect("the ServiceAccount may list DeliveryRecords");
    records
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("ferry.dev/application=none"),
        )
        .await
        .expect("the ServiceAccount may delete an Application's DeliveryRecords");

    let controllers = [
        RunningController::start(&as_ferry, &granted.name),
        RunningController::start(&as_ferry, &ungranted.name),
    ];
    shop_with_a_secret(&granted).await;
    shop_with_a_secret(&ungranted).await;

    granted
        .wait_for::<Application>("shop", "Ready as the ServiceAccount", ready)
        .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = granted.api();
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

    let app = ungranted
        .wait_for::<Application>("shop", "SecretsNotGranted", |a| {
            ready_reason(a) == Some(SECRETS_NOT_GRANTED.name)
        })
        .await;
    let status = app.status.expect("a status");
    let stalled = conditions::find(&status.common.conditions, STALLED).expect("Stalled");
    assert_eq!(stalled.status, conditions::TRUE);
    let command = format!(
        "kubectl -n {} create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=ferry-system:ferry",
        ungranted.name
    );
    assert!(stalled.message.contains(&command), "{}", stalled.message);
    let environment = ungranted
        .wait_for::<Environment>("dev", "DeploymentNotGranted", |e| {
            e.status.as_ref().is_some_and(|s| {
                conditions::find(&s.common.conditions, READY)
                    .is_some_and(|c| c.reason == DEPLOYMENT_NOT_GRANTED.name)
            })
        })
        .await;
    let status = environment.status.expect("a status");
    let stalled = conditions::find(&status.common.conditions, STALLED).expect("Stalled");
    let command = format!(
        "kubectl -n {} create rolebinding ferry-deployer --clusterrole=ferry-deployer --serviceaccount=ferry-system:ferry",
        ungranted.name
    );
    assert!(stalled.message.contains(&command), "{}", stalled.message);
    grant_tenant(&ungranted).await;
    grant_deployer(&ungranted).await;
    // RoleBindings are not watched: a change to the Environment makes Ferry ask again at once
    // (otherwise it asks every 30 s).
    ungranted
        .api::<Environment>()
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"granted": "yes"}}})),
        )
        .await
        .expect("labelling the Environment");
    ungranted
        .wait_for::<Application>("shop", "Ready once granted", ready)
        .await;

    for controller in controllers {
        controller.stop().await;
    }
    granted.cleanup().await;
    ungranted.cleanup().await;
}

/// A namespace that takes its `ferry-deployer` grant back does not hold the Applications that
/// ran there: deleting one deletes what Ferry may delete, names in a Warning Event what it may
/// not, and lets the Application go (before, the refused delete failed every reconcile and the
/// finalizer stayed forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_workload_ferry_may_no_longer_delete_does_not_hold_its_application() {
    let ns = TestNamespace::new("revoked").await;
    install_rbac(&ns.client).await;
    grant_tenant(&ns).await;
    grant_deployer(&ns).await;
    let as_ferry = client_as(SERVICE_ACCOUNT).await;
    let controller = RunningController::start(&as_ferry, &ns.name);
    ns.create_object::<Environment>(super::fixtures::dev())
        .await;
    ns.create_object::<ferry::api::Release>(super::fixtures::shop_1_4_2())
        .await;
    ns.create_object::<Application>(super::fixtures::pinned(
        super::fixtures::shop_through(&["dev"]),
        "dev",
        "shop-1.4.2",
        "CHG-1",
    ))
    .await;
    ns.wait_for::<Deployment>("shop-dev", "dev's Deployment", |_| true)
        .await;

    ns.api::<RoleBinding>()
        .delete("ferry-deployer", &DeleteParams::default())
        .await
        .expect("taking the grant back");
    // The authorizer follows RoleBindings through its own informer: wait until it refuses.
    let ferrys: Api<Deployment> = Api::namespaced(as_ferry.clone(), &ns.name);
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    await_enforcement("the grant taken back", || ferrys.delete("shop-dev", &dry)).await;
    ns.api::<Application>()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("deleting the Application");
    ns.wait_gone::<Application>("shop", "the Application deleted")
        .await;
    let event = ns.event_with_reason(WORKLOAD_LEFT_IN_PLACE.name).await;
    let note = event.note.unwrap_or_default();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        note.contains("shop-dev") && note.contains("left in place"),
        "{note}"
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt("shop-dev")
            .await
            .expect("reading")
            .is_some(),
        "the Deployment Ferry may not delete is left"
    );
    controller.stop().await;
    ns.cleanup().await;
}

/// `ferry controller` as a process: probes and metrics answer, SIGTERM stops it with status 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_probes_and_metrics_and_stops_on_sigterm() {
    let ns = TestNamespace::new("binary").await;
    let port = free_port();
    let mut child = spawn_ferry(&ns.name, port, &[], &[]);

    assert_eq!(get(port, "/healthz").await.0, 200);
    wait_ready(port).await;
    ns.create::<Environment>(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\nspec: {}\n",
    )
    .await;
    ns.wait_for::<Environment>("dev", "Ready", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.common.conditions, READY))
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
    // The standard process metrics, under their usual names: what dashboards and the scale
    // tier read the controller's memory, CPU and file descriptors from.
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let resident = value("process_resident_memory_bytes");
    println!(
        "measured: controller RSS (debug build), idle with one Environment = {:.1} MiB",
        resident / 1048576.0
    );
    assert!(resident > 1_048_576.0, "{resident}");
    assert!(value("process_open_fds") > 2.0);
    assert!(value("process_threads") >= 1.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_start_time_seconds") > 1.6e9);

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
        // Any free port: two replicas run side by side here. There is no pod to read the
        // build steps' image from (in a cluster it is Ferry's own).
        .args(["--webhook-addr", "127.0.0.1:0"])
        .args(["--build-image", "registry.local/ferry:test"])
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

/// Waits until the process's `/readyz` answers 200 (no watch can tell, hence `eventually`).
async fn wait_ready(port: u16) {
    eventually("/readyz answering 200", || async {
        match get(port, "/readyz").await {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
}

async fn environment_ready(ns: &TestNamespace, name: &str) {
    ns.create::<Environment>(&format!(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec: {{}}\n"
    ))
    .await;
    ns.wait_for::<Environment>(name, "Ready", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.common.conditions, READY))
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
    grant_deployer(&ns).await;
    let kubeconfig_file = impersonating_kubeconfig(&ns.name);
    let kubeconfig = kubeconfig_file.to_str().expect("a UTF-8 path");
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
    // It holds a token for the test API server; leave nothing of it behind.
    let _ = std::fs::remove_file(&kubeconfig_file);
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
    let mut stream = eventually(&format!("something listening on {port}"), || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
    })
    .await;
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
