//! The controller against a real API server: conditions, observedGeneration, Events, recovery
//! when a missing dependency appears, and silence when nothing changes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};

use super::fixtures::{
    dev, environment_after, environment_targeting, pinned, prod_manual, shop, shop_1_4_2,
    shop_build, shop_through, typed_secret,
};
use super::{RunningController, TestNamespace, with_temp_ns};
use ferry::api::conditions::{self, READY, RECONCILING, STALLED};
use ferry::api::{Application, BuildJob, Condition, Environment, Namespace, Release, Secret};

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions::find(conditions, type_)
}

fn app_reason(app: &Application) -> Option<String> {
    let status = app.status.as_ref()?;
    condition(&status.common.conditions, READY).map(|c| c.reason.clone())
}

fn is_ready(conditions: Option<&[Condition]>) -> bool {
    conditions.is_some_and(|c| conditions::is_true(c, READY))
}

/// How many Events the namespace holds.
async fn event_count(ns: &TestNamespace) -> usize {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .len()
}

/// The dev and prod Environments, and a controller for the namespace.
async fn pipeline_and_controller(ns: &TestNamespace) -> RunningController {
    ns.create_object(dev()).await;
    ns.create_object(prod_manual()).await;
    RunningController::start(&ns.client, &ns.name)
}

/// The dev and prod Environments, a controller, and the shop Application once it is Ready.
async fn ready_shop(ns: &TestNamespace) -> RunningController {
    let controller = pipeline_and_controller(ns).await;
    ns.create_object(shop()).await;
    ns.wait_for::<Application>("shop", "Ready", |a| {
        is_ready(a.status.as_ref().map(|s| s.common.conditions.as_slice()))
    })
    .await;
    controller
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_environment_stalls_the_application_until_it_appears() {
    with_temp_ns("missing-env", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object(shop()).await;

        let app = ns
            .wait_for::<Application>("shop", "Stalled on missing Environments", |a| {
                app_reason(a).as_deref() == Some("EnvironmentNotFound")
            })
            .await;
        let status = app.status.expect("a status");
        let stalled = condition(&status.common.conditions, STALLED).expect("a Stalled condition");
        assert_eq!(stalled.status, "True");
        assert!(
            stalled.message.contains("\"dev\" and \"prod\""),
            "{}",
            stalled.message
        );
        assert_eq!(status.common.observed_generation, app.metadata.generation);
        let event = ns.event_with_reason("EnvironmentNotFound").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));

        ns.create_object(dev()).await;
        ns.create_object(prod_manual()).await;
        let app = ns
            .wait_for::<Application>("shop", "Ready", |a| {
                is_ready(a.status.as_ref().map(|s| s.common.conditions.as_slice()))
            })
            .await;
        let status = app.status.expect("a status");
        assert!(
            condition(&status.common.conditions, STALLED).is_none(),
            "Stalled is gone once Ready"
        );
        assert_eq!(status.summary.as_deref(), Some("dev=Pending, prod=Pending"));
        assert_eq!(
            ns.event_with_reason("Ready").await.type_.as_deref(),
            Some("Normal")
        );
        let envs = ns
            .wait_for::<Environment>("prod", "Ready", |e| {
                is_ready(e.status.as_ref().map(|s| s.common.conditions.as_slice()))
            })
            .await;
        assert_eq!(envs.status.expect("a status").pipeline, ["dev", "prod"]);

        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_incomplete_or_mistyped_secret_stalls_the_application_until_it_is_fixed() {
    with_temp_ns("missing-secret", |ns| async move {
        let controller = pipeline_and_controller(&ns).await;
        let mut app = shop();
        app.spec.source.repository.credentials_secret = Some("git-cred".to_owned());
        // The test git server speaks plain http: credentials go to it only with this.
        app.spec.source.repository.insecure = true;
        ns.create_object(app).await;

        ns.wait_for::<Application>("shop", "SecretNotFound", |a| {
            app_reason(a).as_deref() == Some("SecretNotFound")
        })
        .await;

        let password = "hunter2-never-shown";
        // The right keys in a Secret of the wrong type: its type is named, not its values.
        ns.create_object(typed_secret(
            "git-cred",
            "Opaque",
            &[("username", "ferry"), ("password", password)],
        ))
        .await;
        let app = ns
            .wait_for::<Application>("shop", "SecretInvalid (type)", |a| {
                app_reason(a).as_deref() == Some("SecretInvalid")
            })
            .await;
        let text = serde_json::to_string(&app.status).expect("status serializes");
        assert!(!text.contains(password), "a secret value leaked: {text}");
        assert!(
            text.contains("\\\"git-cred\\\"")
                && text.contains("\\\"Opaque\\\"")
                && text.contains("\\\"kubernetes.io/basic-auth\\\""),
            "the message names the Secret, its type and the type needed: {text}"
        );
        // A Secret's type cannot change: it is made again.
        ns.api::<Secret>()
            .delete("git-cred", &Default::default())
            .await
            .expect("deleting the Opaque Secret");

        // "pasword": the Secret lacks the key `password`.
        ns.create_object(typed_secret(
            "git-cred",
            "kubernetes.io/basic-auth",
            &[("username", "ferry"), ("pasword", password)],
        ))
        .await;
        let app = ns
            .wait_for::<Application>("shop", "SecretInvalid (keys)", |a| {
                app_reason(a).as_deref() == Some("SecretInvalid")
                    && a.status.as_ref().is_some_and(|s| {
                        condition(&s.common.conditions, READY)
                            .is_some_and(|c| c.message.contains("lacks"))
                    })
            })
            .await;
        let text = serde_json::to_string(&app.status).expect("status serializes");
        assert!(
            !text.contains(password),
            "a secret value leaked into the status"
        );
        assert!(
            text.contains("\\\"password\\\""),
            "the message names the missing key: {text}"
        );

        let fix = serde_json::json!({"stringData": {"password": password}});
        ns.api::<Secret>()
            .patch("git-cred", &PatchParams::default(), &Patch::Merge(&fix))
            .await
            .expect("fixing the Secret");
        ns.wait_for::<Application>("shop", "Ready", |a| {
            is_ready(a.status.as_ref().map(|s| s.common.conditions.as_slice()))
        })
        .await;
        for event in ns
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("Events")
            .items
        {
            assert!(
                !event.note.unwrap_or_default().contains(password),
                "a secret value leaked into an Event"
            );
        }

        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_waits_for_its_target_namespace_to_exist_and_consent() {
    with_temp_ns("consent", |ns| async move {
        let target = format!("{}-prod", ns.name);
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object(environment_targeting("prod", &target))
            .await;
        let reason = |e: &Environment| {
            e.status
                .as_ref()
                .and_then(|s| condition(&s.common.conditions, READY))
                .map(|c| c.reason.clone())
        };
        // A namespace that does not exist reads like one that does not consent, so a tenant
        // cannot learn from Ferry which namespaces exist.
        let missing = ns
            .wait_for::<Environment>("prod", "TargetNamespaceNotConsenting", move |e| {
                reason(e).as_deref() == Some("TargetNamespaceNotConsenting")
            })
            .await;

        // Deleted with the test's namespace.
        assert_eq!(ns.create_sibling("prod").await, target);
        let message = |e: &Environment| {
            e.status
                .as_ref()
                .and_then(|s| condition(&s.common.conditions, READY))
                .map(|c| c.message.clone())
        };
        // A quiet period, not a wait: the new namespace triggers a reconcile (the controller
        // watches namespaces), and the message must not change; there is no change to wait
        // for, so the test gives it two seconds to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let present = ns
            .api::<Environment>()
            .get("prod")
            .await
            .expect("reading prod");
        assert_eq!(message(&present), message(&missing));

        let consent = serde_json::json!({
            "metadata": {"annotations": {"ferry.dev/allow-deploy-from": ns.name}}
        });
        kube::Api::<Namespace>::all(ns.client.clone())
            .patch(&target, &PatchParams::default(), &Patch::Merge(&consent))
            .await
            .expect("annotating the target namespace");
        let env = ns
            .wait_for::<Environment>("prod", "Ready", |e| {
                is_ready(e.status.as_ref().map(|s| s.common.conditions.as_slice()))
            })
            .await;
        assert_eq!(
            env.status.and_then(|s| s.target_namespace),
            Some(target.clone())
        );

        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_cycle_stalls_every_environment_in_it() {
    with_temp_ns("cycle", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        for (name, upstream) in [("a", "c"), ("b", "a"), ("c", "b")] {
            ns.create_object(environment_after(name, upstream)).await;
        }
        for name in ["a", "b", "c"] {
            ns.wait_for::<Environment>(name, "UpstreamCycle", |e| {
                e.status
                    .as_ref()
                    .and_then(|s| condition(&s.common.conditions, STALLED))
                    .is_some_and(|c| c.reason == "UpstreamCycle")
            })
            .await;
        }
        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn observed_generation_follows_spec_changes() {
    with_temp_ns("generation", |ns| async move {
        let controller = ready_shop(&ns).await;

        let change = serde_json::json!({
            "spec": {"environments": [{"name": "dev"}, {"name": "prod"}, {"name": "qa"}]}
        });
        let changed = ns
            .api::<Application>()
            .patch("shop", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect("changing the spec");
        let generation = changed.metadata.generation;
        assert!(generation > Some(1));
        let app = ns
            .wait_for::<Application>("shop", "observedGeneration caught up", move |a| {
                a.status.as_ref().and_then(|s| s.common.observed_generation) == generation
            })
            .await;
        assert_eq!(app_reason(&app).as_deref(), Some("EnvironmentNotFound"));
        let ready = condition(
            &app.status.as_ref().expect("a status").common.conditions,
            READY,
        )
        .expect("Ready")
        .clone();
        assert_eq!(ready.observed_generation, generation);

        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_and_buildjobs_report_their_state() {
    with_temp_ns("records", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object(shop_1_4_2()).await;
        ns.wait_for::<Release>("shop-1.4.2", "ApplicationNotFound", |r| {
            r.status
                .as_ref()
                .and_then(|s| condition(&s.common.conditions, STALLED))
                .is_some_and(|c| c.reason == "ApplicationNotFound")
        })
        .await;
        ns.create_object(shop_through(&[])).await;
        ns.wait_for::<Release>("shop-1.4.2", "Recorded", |r| {
            is_ready(r.status.as_ref().map(|s| s.common.conditions.as_slice()))
        })
        .await;

        ns.create_object(shop_build()).await;
        let job = ns
            .wait_for::<BuildJob>("shop-9fceb02", "Reconciling", |j| {
                j.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.common.conditions, RECONCILING))
            })
            .await;
        assert_eq!(
            job.status
                .and_then(|s| s.phase)
                .map(|p| format!("{p:?}"))
                .as_deref(),
            Some("Pending")
        );

        controller.stop().await;
    })
    .await;
}

/// Guards the rule that status is written only when it changed: a settled controller must
/// leave every object's resourceVersion alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_controller_writes_nothing() {
    with_temp_ns("idle", |ns| async move {
        let controller = pipeline_and_controller(&ns).await;
        ns.create_object(shop()).await;
        let mut broken = shop_through(&["nowhere"]);
        broken.metadata.name = Some("broken".to_owned());
        ns.create_object(broken).await;
        ns.wait_for::<Application>("shop", "Ready", |a| {
            is_ready(a.status.as_ref().map(|s| s.common.conditions.as_slice()))
        })
        .await;
        ns.wait_for::<Application>("broken", "Stalled", |a| {
            app_reason(a).as_deref() == Some("EnvironmentNotFound")
        })
        .await;
        for env in ["dev", "prod"] {
            ns.wait_for::<Environment>(env, "Ready", |e| {
                is_ready(e.status.as_ref().map(|s| s.common.conditions.as_slice()))
            })
            .await;
        }
        // Each Application built its branch head; the build pods never start (this API server
        // has no node), so the builds settle once their pods are seen.
        for app in ["shop", "broken"] {
            let built = ns
                .wait_for::<Application>(app, "latestBuild", |a| {
                    a.status.as_ref().is_some_and(|s| s.latest_build.is_some())
                })
                .await;
            let job = built
                .status
                .and_then(|s| s.latest_build)
                .unwrap_or_default();
            ns.wait_for::<BuildJob>(&job, "its pod seen", |j| {
                j.status.as_ref().is_some_and(|s| s.pod_name.is_some())
            })
            .await;
        }

        let before = versions(&ns).await;
        // Events are published just after the status write the waits above saw: let the last
        // of them land (the count holds still for a second) before counting, or a busy machine
        // counts one of them as written by the idle controller.
        let mut events_before = event_count(&ns).await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = event_count(&ns).await;
            if now == events_before {
                break;
            }
            events_before = now;
        }
        // A quiet period, not a wait: the test is that nothing is written for 30 s.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after = versions(&ns).await;
        let events_after = event_count(&ns).await;
        assert_eq!(before, after, "an idle controller changed objects");
        assert_eq!(
            events_before, events_after,
            "an idle controller published Events"
        );

        controller.stop().await;
    })
    .await;
}

async fn versions(ns: &TestNamespace) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for kind in ["Application", "Environment", "Release", "BuildJob"] {
        for object in ns
            .dynamic(kind)
            .list(&ListParams::default())
            .await
            .expect("listing")
        {
            versions.insert(
                format!("{kind}/{}", object.name_any()),
                object.resource_version().unwrap_or_default(),
            );
        }
    }
    versions
}

/// Deletions reach the objects that depended on the deleted one at once, not at the next
/// periodic resync (kube's shared stores do not pass deletions on; our caches do).
#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_environment_stalls_the_applications_that_name_it() {
    with_temp_ns("deletion", |ns| async move {
        let controller = ready_shop(&ns).await;

        ns.api::<Environment>()
            .delete("prod", &Default::default())
            .await
            .expect("deleting the Environment");
        let app = ns
            .wait_for::<Application>("shop", "EnvironmentNotFound", |a| {
                app_reason(a).as_deref() == Some("EnvironmentNotFound")
            })
            .await;
        let stalled = condition(&app.status.expect("a status").common.conditions, STALLED)
            .expect("Stalled")
            .clone();
        assert!(stalled.message.contains("\"prod\""), "{}", stalled.message);

        controller.stop().await;
    })
    .await;
}

/// A pin is the GitOps way to approve or roll back; it must name a Release of this very
/// Application, and Ferry waits for that Release to exist.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_on_a_missing_release_stalls_until_the_release_exists() {
    with_temp_ns("pin", |ns| async move {
        let controller = pipeline_and_controller(&ns).await;
        ns.create_object(pinned(shop(), "prod", "shop-1.4.2", "CHG-1234 approved"))
            .await;
        let app = ns
            .wait_for::<Application>("shop", "PinnedReleaseNotFound", |a| {
                app_reason(a).as_deref() == Some("PinnedReleaseNotFound")
            })
            .await;
        let stalled = condition(&app.status.expect("a status").common.conditions, STALLED)
            .expect("Stalled")
            .clone();
        assert!(
            stalled
                .message
                .contains("spec.environments[prod].pin.release"),
            "{}",
            stalled.message
        );

        ns.create_object(shop_1_4_2()).await;
        ns.wait_for::<Application>("shop", "Ready", |a| {
            is_ready(a.status.as_ref().map(|s| s.common.conditions.as_slice()))
        })
        .await;

        controller.stop().await;
    })
    .await;
}

/// Guards status ownership: a condition another tool adds to a Ferry object's status stays,
/// and does not make Ferry write the status on every pass (Ferry compares only what it
/// manages).
#[tokio::test(flavor = "multi_thread")]
async fn a_condition_another_manager_adds_is_kept_and_causes_no_writes() {
    with_temp_ns("owner", |ns| async move {
        let controller = ready_shop(&ns).await;
        let apps = ns.api::<Application>();
        let foreign = serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "Application",
            "status": {"conditions": [{
                "type": "ExternalCheck",
                "status": "True",
                "reason": "Checked",
                "message": "another tool's verdict",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        });
        apps.patch_status(
            "shop",
            &PatchParams::apply("external-check"),
            &Patch::Apply(&foreign),
        )
        .await
        .expect("another manager adds its condition");
        let writes = controller.status_writes("Application");
        let reconciles = controller.reconciles("Application");
        // A metadata change makes the controller reconcile the Application again.
        let label = serde_json::json!({"metadata": {"labels": {"touched": "yes"}}});
        apps.patch("shop", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("labelling the Application");
        // A quiet period, not a wait: the status must not be written after the reconcile the
        // label causes, and no object change marks that the reconcile is over.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            controller.reconciles("Application") > reconciles,
            "the label change did not reach the controller"
        );
        assert_eq!(
            controller.status_writes("Application"),
            writes,
            "the controller wrote the status although nothing it manages changed"
        );
        let after = apps.get("shop").await.expect("reading shop");
        let conditions = after
            .status
            .map(|s| s.common.conditions)
            .unwrap_or_default();
        assert!(
            condition(&conditions, "ExternalCheck").is_some(),
            "{conditions:?}"
        );
        assert!(condition(&conditions, READY).is_some(), "{conditions:?}");

        controller.stop().await;
    })
    .await;
}

/// Guards the assumption status writes rest on: a server-side apply that carries the
/// resourceVersion it was computed from is refused once the object has moved on, so a
/// decision made from a stale cache cannot overwrite a newer status.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_apply_from_a_stale_read_is_refused() {
    with_temp_ns("stale", |ns| async move {
        let apps = ns.api::<Application>();
        let read = ns.create_object(shop()).await;
        let label = serde_json::json!({"metadata": {"labels": {"moved": "on"}}});
        apps.patch("shop", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("changing the Application");
        let stale = serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"resourceVersion": read.resource_version()},
            "status": {"summary": "from a stale read"},
        });
        let refused = apps
            .patch_status(
                "shop",
                &ferry::api::managers::FieldManager::Application.apply(),
                &Patch::Apply(&stale),
            )
            .await;
        match refused {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
            other => panic!("a stale apply was not refused: {other:?}"),
        }
    })
    .await;
}

/// Guards the move from the single field manager `ferry` to one per controller
/// (`controller::managers`): a status an older Ferry applied as `ferry` loses what the new
/// manager no longer writes (here a `Stalled` condition, gone once the Application is
/// healthy), and `ferry` owns nothing of it afterwards. Without the move, `ferry` would keep
/// owning `Stalled=True` and nobody would ever remove it.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_from_the_single_field_manager_drops_what_ferry_no_longer_writes() {
    with_temp_ns("upgrade", |ns| async move {
        ns.create_object(dev()).await;
        ns.create_object(prod_manual()).await;
        ns.create_object(shop()).await;
        let written_before = |type_: &str| {
            serde_json::json!({
                "type": type_,
                "status": "True",
                "reason": "EnvironmentNotFound",
                "message": "as an older Ferry wrote it",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            })
        };
        let old = serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "Application",
            "status": {"conditions": [written_before(READY), written_before(STALLED)]},
        });
        ns.api::<Application>()
            .patch_status(
                "shop",
                &PatchParams::apply(ferry::api::managers::LEGACY).force(),
                &Patch::Apply(&old),
            )
            .await
            .expect("the status an older Ferry wrote");
        let controller = RunningController::start(&ns.client, &ns.name);
        let app = ns
            .wait_for::<Application>("shop", "Ready, and Stalled gone", |a| {
                let conditions = a.status.as_ref().map(|s| s.common.conditions.as_slice());
                is_ready(conditions) && conditions.is_some_and(|c| condition(c, STALLED).is_none())
            })
            .await;
        let managers: Vec<&str> = app
            .managed_fields()
            .iter()
            .filter_map(|e| e.manager.as_deref())
            .collect();
        assert!(!managers.contains(&"ferry"), "{managers:?}");
        assert!(managers.contains(&"ferry-application"), "{managers:?}");
        controller.stop().await;
    })
    .await;
}
