//! Workloads on a real API server: a Release pinned in an environment (or the newest one, in a
//! first stage) becomes a Deployment and a Service named `<application>-<environment>`,
//! labelled for Ferry, restricted, rolling with no capacity loss; a hand edit or deletion is
//! put back; an environment entry removed, or the Application deleted (through its
//! finalizer), takes its workload with it. (The pods never run here: this API server has no
//! node. `tests/e2e/rollouts.rs` runs them, with the health verdicts and rollbacks.)

use ferry::api::application::{HistoryKind, Outcome, Phase};
use ferry::api::{Application, Environment, Release};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams};

use crate::fixtures::{self, shop_1_4_2};
use crate::{RunningController, with_temp_ns};

/// The dev Environment with `spec`, the shop's Release 1.4.2, and the shop going through dev
/// with a run configuration (two replicas, a port, an env var, a readiness probe).
async fn shop_in_dev(ns: &crate::TestNamespace, spec: &str) {
    ns.create_object::<Environment>(fixtures::environment("dev", spec))
        .await;
    ns.create_object::<Release>(shop_1_4_2()).await;
    let mut app = fixtures::shop_through(&["dev"]);
    app.spec.run = serde_yaml::from_str(
        "{replicas: 2, ports: [{name: http, port: 8080}], env: [{name: COLOR, value: blue}], \
         readinessProbe: {httpGet: {path: /ready, port: http}}}",
    )
    .expect("run spec");
    ns.create_object::<Application>(app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_runs_as_a_deployment_and_service_that_ferry_keeps_and_cleans_up() {
    with_temp_ns("workload", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        shop_in_dev(
            &ns,
            "{health: {progressDeadline: 20s, stabilizationWindow: 5s}}",
        )
        .await;

        // The newest release of a first stage rolls out.
        let deployment = ns
            .wait_for::<Deployment>("shop-dev", "created for the newest release", |_| true)
            .await;
        let labels = deployment.metadata.labels.clone().unwrap_or_default();
        for (key, value) in [
            ("app.kubernetes.io/name", "shop"),
            ("app.kubernetes.io/managed-by", "ferry"),
            ("ferry.dev/environment", "dev"),
            ("ferry.dev/release", "shop-1.4.2"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        let spec = deployment.spec.clone().expect("a spec");
        assert_eq!(spec.replicas, Some(2));
        let rolling = spec
            .strategy
            .and_then(|s| s.rolling_update)
            .expect("a rolling update");
        assert_eq!(
            rolling.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
        );
        let pod = spec.template.spec.expect("a pod spec");
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some(shop_1_4_2().spec.image.as_str())
        );
        assert_eq!(
            pod.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        assert!(deployment.metadata.owner_references.is_none());
        let service = ns
            .wait_for::<Service>("shop-dev", "the Service", |_| true)
            .await;
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        assert_eq!(
            selector.get("ferry.dev/environment").map(String::as_str),
            Some("dev")
        );

        let app = ns
            .wait_for::<Application>("shop", "a rollout under way in dev", |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.environments
                        .iter()
                        .any(|e| e.name == "dev" && e.phase == Some(Phase::Progressing))
                })
            })
            .await;
        assert!(
            app.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"ferry.dev/workloads".to_owned())
        );
        let dev = &app.status.unwrap_or_default().environments[0];
        let rollout = dev.rollout.clone().expect("a rollout");
        assert_eq!(rollout.release, "shop-1.4.2");
        assert_eq!(dev.history[0].kind, HistoryKind::Rollout);
        assert_eq!(dev.history[0].outcome, Outcome::InProgress);

        // A hand edit is put back, and so is a deletion.
        let deployments = ns.api::<Deployment>();
        deployments
            .patch(
                "shop-dev",
                &PatchParams::apply("someone").force(),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "spec": {"replicas": 5}
                })),
            )
            .await
            .expect("editing by hand");
        ns.wait_for::<Deployment>("shop-dev", "the edited replicas put back", |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
        })
        .await;
        deployments
            .delete("shop-dev", &DeleteParams::default())
            .await
            .expect("deleting by hand");
        ns.wait_for::<Deployment>("shop-dev", "the deleted Deployment put back", |d| {
            d.metadata.deletion_timestamp.is_none()
        })
        .await;

        // Deleting the Application deletes its workload, then the Application goes.
        ns.api::<Application>()
            .delete("shop", &DeleteParams::default())
            .await
            .expect("deleting the Application");
        ns.wait_gone::<Application>("shop", "the Application deleted")
            .await;
        ns.wait_going::<Deployment>("shop-dev", "its Deployment deleted")
            .await;
        ns.wait_gone::<Service>("shop-dev", "its Service deleted")
            .await;
        controller.stop().await;
    })
    .await;
}

/// Ferry finds Releases by name: a Release deleted and made again under the name of the one
/// dev runs, with another image, must not reach dev's Deployment (`decide::delivery::identity`).
#[tokio::test(flavor = "multi_thread")]
async fn a_release_made_again_under_the_name_of_what_runs_never_reaches_the_workload() {
    with_temp_ns("release-identity", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Environment>(fixtures::dev()).await;
        ns.create_object::<Release>(shop_1_4_2()).await;
        ns.create_object::<Application>(shop_pinned_in_dev("{ports: [{name: http, port: 8080}]}"))
            .await;
        let first = ns
            .wait_for::<Deployment>("shop-dev", "dev's Deployment", |_| true)
            .await;
        let image = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.image.clone())
        };
        let was = image(&first).expect("an image");
        let release: Release = ns.api().get("shop-1.4.2").await.expect("the Release");
        let uid = release.metadata.uid.clone().expect("a UID");
        let bound_uid = uid.clone();
        ns.wait_for::<Application>("shop", "dev bound to shop-1.4.2", move |a| {
            a.status.as_ref().is_some_and(|s| {
                s.environments.iter().any(|e| {
                    e.bound
                        .iter()
                        .any(|b| b.name == "shop-1.4.2" && b.uid == bound_uid)
                })
            })
        })
        .await;

        // Deleted (no admission policy is bound in this namespace) and made again.
        ns.api::<Release>()
            .delete("shop-1.4.2", &DeleteParams::default())
            .await
            .expect("deleting the Release");
        ns.wait_gone::<Release>("shop-1.4.2", "the Release deleted")
            .await;
        let mut again = shop_1_4_2();
        again.spec.image = format!("registry.local/team-a/shop@sha256:{}", "e".repeat(64));
        ns.create_object::<Release>(again).await;

        let app = ns
            .wait_for::<Application>("shop", "ReleaseChanged in dev", |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.environments.iter().any(|e| {
                        e.conditions
                            .iter()
                            .any(|c| c.type_ == "ReleaseChanged" && c.status == "True")
                    })
                })
            })
            .await;
        let dev = &app.status.unwrap_or_default().environments[0];
        let changed = dev
            .conditions
            .iter()
            .find(|c| c.type_ == "ReleaseChanged")
            .expect("the condition");
        assert!(
            changed.message.contains("shop-1.4.2") && changed.message.contains(&uid),
            "{}",
            changed.message
        );
        // A quiet period: anything let through would have been applied by now.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let now: Deployment = ns.api().get("shop-dev").await.expect("dev's Deployment");
        assert_eq!(image(&now), Some(was), "dev runs what it ran");
        let event = ns.event_with_reason("ReleaseChanged").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        controller.stop().await;
    })
    .await;
}

/// shop through dev, dev pinned to shop-1.4.2, with `run` (YAML) as its spec.run.
fn shop_pinned_in_dev(run: &str) -> Application {
    let mut app = fixtures::pinned(
        fixtures::shop_through(&["dev"]),
        "dev",
        "shop-1.4.2",
        "CHG-1 approved",
    );
    app.spec.run = serde_yaml::from_str(run).expect("run spec");
    app
}

/// The value of env var `COLOR` in the Deployment's container.
fn color(deployment: &Deployment) -> Option<String> {
    let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let env = pod.containers.first()?.env.as_ref()?;
    env.iter().find(|e| e.name == "COLOR")?.value.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_run_configuration_is_a_new_release_and_never_reaches_a_workload_live() {
    with_temp_ns("reconfigured", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Environment>(fixtures::dev()).await;
        // Imported without spec.run: it fixes the Application's configuration when Ferry
        // first sees it.
        ns.create_object::<Release>(shop_1_4_2()).await;
        ns.create_object::<Application>(shop_pinned_in_dev(
            "{ports: [{name: http, port: 8080}], env: [{name: COLOR, value: blue}]}",
        ))
        .await;
        let deployment = ns
            .wait_for::<Deployment>("shop-dev", "the pinned release", |_| true)
            .await;
        assert_eq!(color(&deployment).as_deref(), Some("blue"));
        let imported = ns
            .wait_for::<Release>("shop-1.4.2", "its run configuration recorded", |r| {
                r.fixed_run().is_some()
            })
            .await;
        assert!(imported.spec.run.is_none());

        ns.api::<Application>()
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "spec": {"run": {"env": [{"name": "COLOR", "value": "green"}]}}
                })),
            )
            .await
            .expect("editing spec.run");
        let event = ns.event_with_reason("Reconfigured").await;
        let note = event.note.unwrap_or_default();
        assert!(note.contains("shop-1.4.2"), "{note}");
        let releases = ns
            .api::<Release>()
            .list(&Default::default())
            .await
            .expect("listing releases");
        let made: Vec<&Release> = releases
            .items
            .iter()
            .filter(|r| r.metadata.name.as_deref() != Some("shop-1.4.2"))
            .collect();
        assert_eq!(made.len(), 1, "one new Release");
        let made = made[0];
        assert!(
            made.spec.version.starts_with("1.4.2+run."),
            "{}",
            made.spec.version
        );
        assert_eq!(made.spec.image, imported.spec.image);
        assert_eq!(made.spec.imported_by, None, "made by Ferry");
        let run = made.spec.run.clone().expect("the new configuration");
        assert_eq!(run.env[0].value.as_deref(), Some("green"));

        // dev is pinned to shop-1.4.2: it keeps running what shop-1.4.2 fixes.
        let generation = ns
            .api::<Application>()
            .get("shop")
            .await
            .expect("the Application")
            .metadata
            .generation;
        ns.wait_for::<Application>("shop", "the change observed", move |a| {
            a.status.as_ref().and_then(|s| s.common.observed_generation) == generation
        })
        .await;
        let deployment = ns
            .api::<Deployment>()
            .get("shop-dev")
            .await
            .expect("the Deployment");
        assert_eq!(color(&deployment).as_deref(), Some("blue"));
        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_entry_removed_takes_its_workload_with_it_and_a_bad_run_spec_creates_nothing()
 {
    with_temp_ns("workload-prune", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Environment>(fixtures::dev()).await;
        ns.create_object::<Environment>(fixtures::environment(
            "qa",
            "{health: {httpChecks: [{path: /healthz, port: admin}]}}",
        ))
        .await;
        ns.create_object::<Release>(shop_1_4_2()).await;
        ns.create_object::<Application>(shop_pinned_in_dev("{ports: [{name: http, port: 8080}]}"))
            .await;
        ns.wait_for::<Service>("shop-dev", "the Service", |_| true)
            .await;
        let app = ns
            .wait_for::<Application>("shop", "pinned rollout recorded", |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.environments.iter().any(|e| {
                        e.history.first().is_some_and(|h| {
                            h.kind == HistoryKind::Pin && h.reason == "CHG-1 approved"
                        })
                    })
                })
            })
            .await;

        // Moving the application from dev to qa, whose HTTP check names a port the
        // Application does not have: dev's workload goes, and nothing is made in qa.
        let mut moved = app.clone();
        moved.metadata.managed_fields = None;
        moved.status = None;
        moved.spec.environments[0].name = "qa".to_owned();
        moved.spec.environments[0].pin = None;
        ns.api::<Application>()
            .replace("shop", &Default::default(), &moved)
            .await
            .expect("moving to qa");
        let app = ns
            .wait_for::<Application>("shop", "InvalidRunSpec", |a| {
                a.status.as_ref().is_some_and(|s| {
                    ferry::api::conditions::find(&s.common.conditions, "Ready")
                        .is_some_and(|c| c.reason == "InvalidRunSpec")
                })
            })
            .await;
        let ready = ferry::api::conditions::find(
            &app.status.clone().unwrap_or_default().common.conditions,
            "Ready",
        )
        .cloned()
        .expect("Ready");
        assert!(ready.message.contains("httpChecks[0]"), "{}", ready.message);
        assert!(ready.message.contains("admin"), "{}", ready.message);
        assert!(
            ns.api::<Deployment>()
                .get_opt("shop-qa")
                .await
                .expect("reading")
                .is_none()
        );

        // Fixed: the port exists. qa gets its workload; dev's is gone.
        let mut fixed = app.clone();
        fixed.metadata.managed_fields = None;
        fixed.status = None;
        fixed.spec.run =
            serde_yaml::from_str("{ports: [{name: http, port: 8080}, {name: admin, port: 9090}]}")
                .expect("run");
        fixed.spec.environments[0].pin = Some(ferry::api::application::Pin {
            release: "shop-1.4.2".to_owned(),
            reason: "CHG-2".to_owned(),
            by: Some(super::fixtures::ADMIN.to_owned()),
        });
        ns.api::<Application>()
            .replace("shop", &Default::default(), &fixed)
            .await
            .expect("fixing the ports");
        ns.wait_for::<Deployment>("shop-qa", "qa's workload", |_| true)
            .await;
        ns.wait_going::<Deployment>("shop-dev", "dev's Deployment deleted with its entry")
            .await;
        ns.wait_gone::<Service>("shop-dev", "dev's Service deleted with its entry")
            .await;
        controller.stop().await;
    })
    .await;
}

/// A reconcile that would apply exactly what the workload already holds sends nothing: at 300
/// idle Applications the scale tier counted a GET and a PATCH per workload per reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn a_workload_that_holds_what_ferry_would_apply_is_not_applied_again() {
    with_temp_ns("unchanged", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        shop_in_dev(&ns, "{health: {progressDeadline: 10m}}").await;
        ns.wait_for::<Deployment>("shop-dev", "created", |_| true)
            .await;
        ns.wait_for::<Service>("shop-dev", "created", |_| true).await;
        let writes = || {
            ["deployments", "services"]
                .iter()
                .map(|r| controller.api_requests("patch", r) + controller.api_requests("get", r))
                .sum::<u64>()
        };
        // The first applies (and the reconciles their own changes cause) are over once the
        // count holds still.
        let mut settled = writes();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if writes() == settled {
                break;
            }
            settled = writes();
        }
        assert!(settled > 0, "the workload was applied, and counted");

        // Reconciles that change nothing Ferry applies: an annotation on the Application.
        let apps = ns.api::<Application>();
        let reconciles = controller.reconciles("Application");
        for i in 0..5 {
            let touch = serde_json::json!({"metadata": {"annotations": {"test.ferry.dev/touch": i.to_string()}}});
            apps.patch("shop", &PatchParams::default(), &Patch::Merge(&touch))
                .await
                .expect("annotated");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        crate::eventually("the annotations reconciled", || async {
            let now = controller.reconciles("Application");
            if now >= reconciles + 3 { Ok(()) } else { Err(format!("{now} reconciles, from {reconciles}")) }
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(
            writes(),
            settled,
            "GETs and PATCHes of the Deployment and Service by reconciles that changed nothing"
        );

        // A hand edit is still put back.
        let deployments = ns.api::<Deployment>();
        deployments
            .patch(
                "shop-dev",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
            )
            .await
            .expect("scaled by hand");
        ns.wait_for::<Deployment>("shop-dev", "the edited replicas put back", |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
        })
        .await;
        controller.stop().await;
    })
    .await;
}
