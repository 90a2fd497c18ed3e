//! What Ferry trusts and takes over, on a real API server with RBAC.
//!
//! - The shipped user roles: a person bound to `ferry-edit` and `ferry-view` edits
//!   Applications, Environments and BuildJobs, reads everything, and cannot approve (the
//!   `ferry-approve` policy refuses the pin), create Releases (that is `import`, not edit) or
//!   write any status. The built-in `edit` role receives these rules by ClusterRole
//!   aggregation, which kube-controller-manager does; this API server runs none, so the test
//!   binds the roles directly and `tests/chart.rs` checks the aggregation labels.
//! - A pod under the name Ferry gives a build pod, made before Ferry makes it, is not trusted:
//!   the build fails with `PodNotOwned` naming the pod, whether the pod carries Ferry's labels
//!   (so the controller's cache holds it) or not (so Ferry meets it as a 409), and the pod is
//!   left alone.
//! - A Deployment under the name of an environment's workload that Ferry did not create is not
//!   taken over: it stays as it is, and a Warning Event `WorkloadNotOwned` on the Application
//!   names it.

use ferry::api::buildjob::BuildPhase;
use ferry::api::{Application, BuildJob, Environment, Release};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{
    RunningController, TestNamespace, client_as, eventually, fixtures, grant_users, refused,
    with_temp_ns,
};

/// Binds the ClusterRoles `roles` to `user` in the test namespace.
async fn bind(ns: &TestNamespace, user: &str, roles: &[&str]) {
    for role in roles {
        let name = format!("{user}-{role}");
        grant_users(ns, &[], &[(&name, "ClusterRole", role, &[user])]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_editor_edits_ferrys_objects_but_cannot_approve_import_or_write_status() {
    with_temp_ns("roles", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        bind(&ns, "dave", &["ferry-edit", "ferry-view"]).await;
        let applications: Api<Application> = Api::namespaced(client_as("dave").await, &ns.name);

        // Roles and policies reach the API server's authorizer and admission a moment after
        // they are created: dave's dry-run create of the shop is the signal.
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        eventually("dave may create Applications", || async {
            applications.create(&dry_run, &fixtures::shop()).await
        })
        .await;
        let environments: Api<Environment> = Api::namespaced(client_as("dave").await, &ns.name);
        environments
            .create(&PostParams::default(), &fixtures::dev())
            .await
            .expect("dave may create an Environment");
        applications
            .create(&PostParams::default(), &fixtures::shop())
            .await
            .expect("dave may create the shop");
        let mut shop = applications
            .get("shop")
            .await
            .expect("dave may read the shop");
        shop.spec.environments[0].replicas = Some(3);
        applications
            .replace("shop", &PostParams::default(), &shop)
            .await
            .expect("dave may change dev's replicas");
        applications
            .list(&Default::default())
            .await
            .expect("dave may list Applications");
        let buildjobs: Api<BuildJob> = Api::namespaced(client_as("dave").await, &ns.name);
        buildjobs
            .create(&PostParams::default(), &fixtures::shop_build())
            .await
            .expect("dave may create a BuildJob to rebuild");

        // Approving is not editing: the ferry-approve policy refuses dave's pin.
        let pinned = eventually("the approval policy enforced", || async {
            let shop = applications.get("shop").await.map_err(|e| e.to_string())?;
            let shop = fixtures::pinned_by(shop, "prod", "shop-1.4.2", "CHG-1", "dave");
            match applications.replace("shop", &dry_run, &shop).await {
                Err(kube::Error::Api(status)) if status.code == 403 => Ok(status.message),
                other => Err(format!("dave's pin gave {other:?}")),
            }
        })
        .await;
        assert!(
            pinned.contains("dave may not change the pin of prod"),
            "{pinned}"
        );

        // A Release made by hand is an import, not an edit.
        let releases: Api<Release> = Api::namespaced(client_as("dave").await, &ns.name);
        let message = refused(
            "dave's Release",
            releases
                .create(&PostParams::default(), &fixtures::shop_1_4_2())
                .await,
        );
        assert!(message.contains("releases"), "{message}");
        releases
            .list(&Default::default())
            .await
            .expect("dave may list Releases");

        // The status belongs to Ferry.
        let status =
            json!({"status": {"latestCommit": "0000000000000000000000000000000000000000"}});
        refused(
            "dave's status write",
            applications
                .patch_status("shop", &PatchParams::default(), &Patch::Merge(&status))
                .await,
        );
        applications
            .get_status("shop")
            .await
            .expect("dave may read the status");
    })
    .await;
}

/// A pod under the name of `job`'s build pod, as someone other than Ferry makes it: no owner
/// reference, and Ferry's labels only if `labelled`.
fn squatter(job: &str, labelled: bool) -> Pod {
    let labels = if labelled {
        json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/buildjob": job})
    } else {
        json!({"app": "squatter"})
    };
    serde_json::from_value(json!({
        "metadata": {"name": job, "labels": labels},
        "spec": {"containers": [{"name": "publish", "image": "registry.local/fake:1",
                                 "command": ["true"]}]},
    }))
    .expect("a pod")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_made_beforehand_under_the_build_pods_name_fails_the_build() {
    with_temp_ns("squat", |ns| async move {
        ns.create_object::<Application>(fixtures::shop_through(&["dev"]))
            .await;
        let labelled = fixtures::shop_build();
        let mut unlabelled = fixtures::shop_build();
        unlabelled.metadata.name = Some("shop-rebuild".to_owned());
        for (job, with_labels) in [(&labelled, true), (&unlabelled, false)] {
            ns.create_object::<Pod>(squatter(&job.name_any(), with_labels))
                .await;
            ns.create_object::<BuildJob>(job.clone()).await;
        }
        let controller = RunningController::start(&ns.client, &ns.name);

        for job in [&labelled, &unlabelled] {
            let name = job.name_any();
            let failed = ns
                .wait_for::<BuildJob>(&name, "failed: its pod is not Ferry's", |j| {
                    j.status
                        .as_ref()
                        .is_some_and(|s| s.phase == Some(BuildPhase::Failed))
                })
                .await;
            let status = failed.status.expect("a status");
            let failure = status.failure.expect("a failure");
            assert_eq!(failure.reason, "PodNotOwned", "{name}: {failure:?}");
            assert!(
                failure.message.contains(&format!("the pod {name}")),
                "{name}: {failure:?}"
            );
            assert_eq!(status.image, None, "{name}: nothing was built");
            assert_eq!(status.release, None, "{name}: no Release");
            let pod = ns.api::<Pod>().get(&name).await.expect("the pod is left");
            assert_eq!(pod.metadata.owner_references, None, "{name}: not adopted");
        }
        let event = ns.event_with_reason("PodNotOwned").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert!(
            event
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("the pod shop-"),
            "{event:?}"
        );
        assert!(
            ns.api::<Release>()
                .list(&Default::default())
                .await
                .expect("Releases")
                .items
                .is_empty()
        );
        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_ferry_did_not_create_is_not_taken_over() {
    with_temp_ns("foreign", |ns| async move {
        let foreign: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "shop-dev", "labels": {"app": "shop"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {"labels": {"app": "shop"}},
                    "spec": {"containers": [{"name": "shop", "image": "registry.local/theirs:1"}]},
                },
            },
        }))
        .expect("a Deployment");
        ns.create_object::<Deployment>(foreign).await;
        ns.create_object::<Environment>(fixtures::dev()).await;
        ns.create_object::<Release>(fixtures::shop_1_4_2()).await;
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Application>(fixtures::shop_through(&["dev"]))
            .await;

        let event = ns.event_with_reason("WorkloadNotOwned").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.regarding.as_ref().and_then(|r| r.name.as_deref()),
            Some("shop")
        );
        let note = event.note.unwrap_or_default();
        assert!(
            note.contains(&format!("Deployment {}/shop-dev", ns.name)),
            "{note}"
        );

        let deployment = ns
            .api::<Deployment>()
            .get("shop-dev")
            .await
            .expect("the Deployment is left");
        let labels = deployment.labels();
        assert!(
            !labels.contains_key("app.kubernetes.io/managed-by"),
            "taken over: {labels:?}"
        );
        let image = deployment
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers[0].image.clone());
        assert_eq!(image, Some(Some("registry.local/theirs:1".to_owned())));
        let ferrys = deployment
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref().is_some_and(|m| m.starts_with("ferry")));
        assert!(!ferrys, "Ferry wrote to it");
        controller.stop().await;
    })
    .await;
}
