//! Status belongs to Ferry, and Releases keep their provenance: the ValidatingAdmissionPolicies
//! `ferry-status`, `ferry-releases` and `ferry-import` of `manifests/ferry.yaml` on the real API
//! server with RBAC, impersonating users and Ferry's ServiceAccount.
//!
//! The other tests run their controllers with the test's admin credentials, so these policies
//! are bound here to each test's own namespace only (`install::bind_in`), never cluster-wide.

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::install::{bind_in, install_rbac, unbind};
use super::{
    RunningController, TestNamespace, assert_says, await_enforcement, client_as, grant_users,
    refused, with_temp_ns,
};
use ferry::api::conditions::{self, READY};
use ferry::api::{Environment, Release};

use super::fixtures::{ADMIN, FERRY};

/// A Role `name` in `ns` with `rules`, bound to `users`.
async fn grant(ns: &TestNamespace, name: &str, rules: Value, users: &[&str]) {
    grant_users(ns, &[(name, rules)], &[(name, "Role", name, users)]).await;
}

fn dry_run_patch() -> PatchParams {
    PatchParams {
        dry_run: true,
        ..Default::default()
    }
}

/// A Release of the shop, made by hand: version `version`, naming `imported_by` and
/// `build_job` if given.
fn release(version: &str, imported_by: Option<&str>, build_job: Option<&str>) -> Release {
    let mut spec = json!({
        "application": "shop",
        "version": version,
        "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "image": "registry.local/team-a/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    });
    if let Some(importer) = imported_by {
        spec["importedBy"] = importer.into();
    }
    if let Some(job) = build_job {
        spec["buildJob"] = job.into();
    }
    serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": format!("shop-{version}")},
        "spec": spec,
    }))
    .expect("a Release")
}

/// Writes the status of Release `name` as Ferry does (server-side apply on `/status`, as
/// Ferry's ServiceAccount): in each environment, a state.
async fn record(ns: &TestNamespace, name: &str, states: &[(&str, &str)]) {
    let as_ferry: Api<Release> = Api::namespaced(client_as(FERRY).await, &ns.name);
    let environments: Vec<_> = states
        .iter()
        .map(|(env, state)| json!({"name": env, "state": state, "since": "2026-01-01T00:00:00Z"}))
        .collect();
    let status = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Release",
        "status": {"environments": environments},
    });
    as_ferry
        .patch_status(
            name,
            &PatchParams::apply("ferry-test").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap_or_else(|e| panic!("Ferry's ServiceAccount writing the status of {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_ferry_writes_the_status_of_its_kinds_cluster_admin_included() {
    with_temp_ns("status", |ns| async move {
        install_rbac(&ns.client).await;
        bind_in(&ns.client, "ferry-status", &ns.name).await;
        // bob may write every status by RBAC: the policy refuses him all the same.
        grant(
            &ns,
            "status-writer",
            json!([{"apiGroups": ["ferry.dev"],
                    "resources": ["applications/status", "buildjobs/status",
                                  "environments/status", "releases/status"],
                    "verbs": ["get", "update", "patch"]}]),
            &["bob"],
        )
        .await;
        ns.create::<Environment>(
            "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: {}\n",
        )
        .await;
        ns.create_object(release("1.4.2", None, None)).await;

        let forged = Patch::Merge(json!({"status": {"observedGeneration": 7}}));
        let as_admin: Api<Environment> = ns.api();
        let dry_run = dry_run_patch();
        await_enforcement("the status policy enforced", || {
            as_admin.patch_status("prod", &dry_run, &forged)
        })
        .await;

        let as_bob: Api<Environment> = Api::namespaced(client_as("bob").await, &ns.name);
        let message = refused(
            "bob's patch of prod's status",
            as_bob
                .patch_status("prod", &PatchParams::default(), &forged)
                .await,
        );
        assert_says(
            &message,
            &[
                &format!(
                    "bob may not write the status of environments.ferry.dev prod in namespace {}",
                    ns.name
                ),
                "update and patch of environments/status are for Ferry alone",
                FERRY,
            ],
        );

        // A replace (update) of a Release's status, by the cluster's admin.
        let releases: Api<Release> = ns.api();
        let mut forged_release = releases.get("shop-1.4.2").await.expect("the Release");
        forged_release.status = Some(serde_json::from_value(json!({
            "environments": [{"name": "prod", "state": "Superseded", "since": "2026-01-01T00:00:00Z"}]
        })).expect("a status"));
        let message = refused(
            "the admin's update of a Release's status",
            releases
                .replace_status("shop-1.4.2", &PostParams::default(), &forged_release)
                .await,
        );
        assert_says(
            &message,
            &[&format!("{ADMIN} may not write the status of releases.ferry.dev shop-1.4.2")],
        );

        // Writing the objects themselves is not the policy's business.
        as_admin
            .patch(
                "prod",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
            )
            .await
            .expect("the admin may still label the Environment");

        // Ferry's ServiceAccount writes status, and the controller running as it works.
        record(&ns, "shop-1.4.2", &[("prod", "Deployed")]).await;
        super::install::grant(&ns, "ferry-deployer").await;
        let controller = RunningController::start(&client_as(FERRY).await, &ns.name);
        ns.wait_for::<Environment>("prod", "Ready, written by Ferry", |e| {
            e.status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.common.conditions, READY))
        })
        .await;
        controller.stop().await;
        unbind(&ns.client, &ns.name, &["ferry-status"]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_runs_or_waits_somewhere_is_not_deleted() {
    with_temp_ns("releases", |ns| async move {
        install_rbac(&ns.client).await;
        bind_in(&ns.client, "ferry-releases", &ns.name).await;
        grant(
            &ns,
            "release-deleter",
            json!([{"apiGroups": ["ferry.dev"], "resources": ["releases"],
                    "verbs": ["get", "list", "delete"]}]),
            &["carol"],
        )
        .await;
        let cases: [(&str, &[(&str, &str)]); 6] = [
            ("1.0.0", &[("dev", "Superseded"), ("prod", "Deployed")]),
            ("1.1.0", &[("staging", "Deployed"), ("prod", "AwaitingApproval")]),
            ("1.2.0", &[("dev", "Deploying"), ("staging", "Candidate")]),
            ("0.9.0", &[("dev", "Superseded"), ("prod", "Rejected")]),
            ("0.8.0", &[]),
            ("0.7.0", &[("prod", "Deployed")]),
        ];
        for (version, states) in cases {
            ns.create_object(release(version, None, None)).await;
            if !states.is_empty() {
                record(&ns, &format!("shop-{version}"), states).await;
            }
        }

        let as_carol: Api<Release> = Api::namespaced(client_as("carol").await, &ns.name);
        let dry_run = DeleteParams::default().dry_run();
        await_enforcement("the releases policy enforced", || {
            as_carol.delete("shop-1.0.0", &dry_run)
        })
        .await;
        for (name, live) in [
            ("shop-1.0.0", "prod (Deployed)"),
            ("shop-1.1.0", "staging (Deployed), prod (AwaitingApproval)"),
            ("shop-1.2.0", "dev (Deploying), staging (Candidate)"),
        ] {
            let message = refused(
                &format!("carol's deletion of {name}"),
                as_carol.delete(name, &DeleteParams::default()).await,
            );
            assert_says(
                &message,
                &[
                    &format!(
                        "carol may not delete Release {name} in namespace {}: it runs or waits in {live};",
                        ns.name
                    ),
                    "releases.ferry.dev",
                ],
            );
        }
        // Nor the cluster's admin, nor Ferry itself.
        let message = refused(
            "the admin's deletion of shop-1.0.0",
            ns.api::<Release>()
                .delete("shop-1.0.0", &DeleteParams::default())
                .await,
        );
        assert_says(&message, &[&format!("{ADMIN} may not delete Release shop-1.0.0")]);

        // Superseded or rejected everywhere, or never deployed: deleted.
        for name in ["shop-0.9.0", "shop-0.8.0"] {
            as_carol
                .delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("carol may delete {name}: {e}"));
        }
        // Once superseded (its status, written by Ferry, says so): deleted.
        record(&ns, "shop-0.7.0", &[("prod", "Superseded")]).await;
        as_carol
            .delete("shop-0.7.0", &DeleteParams::default())
            .await
            .expect("carol may delete a superseded release");

        // Deleting the namespace deletes the live Releases with it: the cleanup deletes them
        // as the namespace controller would, once the namespace is Terminating. So this
        // namespace's binding stays (it matches no other namespace) for the cleanup to meet.
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_importer_creates_a_release_and_it_names_its_importer() {
    with_temp_ns("import", |ns| async move {
        install_rbac(&ns.client).await;
        bind_in(&ns.client, "ferry-import", &ns.name).await;
        grant(
            &ns,
            "release-maker",
            json!([{"apiGroups": ["ferry.dev"], "resources": ["releases"],
                    "verbs": ["get", "create"]}]),
            &["alice", "bob"],
        )
        .await;
        grant_users(
            &ns,
            &[],
            &[("importers", "ClusterRole", "ferry-importer", &["alice"])],
        )
        .await;

        let as_bob: Api<Release> = Api::namespaced(client_as("bob").await, &ns.name);
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let bobs = release("1.0.0", Some("bob"), None);
        await_enforcement("the import policy enforced", || {
            as_bob.create(&dry_run, &bobs)
        })
        .await;

        // bob may create Releases by RBAC, but not import them.
        let message = refused(
            "bob's import",
            as_bob.create(&PostParams::default(), &bobs).await,
        );
        assert_says(
            &message,
            &[
                &format!(
                    "bob may not create Release shop-1.0.0 in namespace {}",
                    ns.name
                ),
                "needs the verb import on releases.ferry.dev",
                "ferry-importer",
            ],
        );

        // alice may import, naming herself and no BuildJob.
        let as_alice: Api<Release> = Api::namespaced(client_as("alice").await, &ns.name);
        for (case, attempt, words) in [
            (
                "without importedBy",
                release("1.0.0", None, None),
                "set spec.importedBy to your username, alice",
            ),
            (
                "naming bob",
                release("1.0.0", Some("bob"), None),
                "set spec.importedBy to your username, alice",
            ),
            (
                "naming a BuildJob",
                release("1.0.0", Some("alice"), Some("shop-9fceb02")),
                "an imported Release names no spec.buildJob",
            ),
        ] {
            let message = refused(
                &format!("alice's import {case}"),
                as_alice.create(&PostParams::default(), &attempt).await,
            );
            assert_says(
                &message,
                &["alice may not create Release shop-1.0.0", words],
            );
        }
        let imported = as_alice
            .create(
                &PostParams::default(),
                &release("1.0.0", Some("alice"), None),
            )
            .await
            .expect("alice may import, naming herself");
        assert_eq!(imported.spec.imported_by.as_deref(), Some("alice"));

        // The cluster's admin holds every verb, import included.
        ns.api::<Release>()
            .create(&PostParams::default(), &release("1.1.0", Some(ADMIN), None))
            .await
            .expect("the admin may import, naming itself");

        // Ferry's own Releases name no importer.
        let as_ferry: Api<Release> = Api::namespaced(client_as(FERRY).await, &ns.name);
        let message = refused(
            "Ferry's Release naming an importer",
            as_ferry
                .create(&PostParams::default(), &release("1.2.0", Some(FERRY), None))
                .await,
        );
        assert_says(&message, &["a Release made by Ferry names no importer"]);
        as_ferry
            .create(
                &PostParams::default(),
                &release("1.2.0", None, Some("shop-9fceb02")),
            )
            .await
            .expect("Ferry makes the Release of its build");
        unbind(&ns.client, &ns.name, &["ferry-import"]).await;
    })
    .await;
}
