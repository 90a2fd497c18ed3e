//! Environments are guarded: the ValidatingAdmissionPolicies `ferry-environments` and
//! `ferry-environment-entries` of `manifests/ferry.yaml`, on the real API server with RBAC.
//!
//! An Environment that needs approval (`approval: Manual`, before or after the write) is
//! created, deleted or has its spec changed only by someone with the verb `approve` on it; its
//! labels and annotations stay editable. An Application's entry for such an Environment (its
//! overrides, the entry itself) changes, and an Application that has one is deleted, only with
//! `approve` on that Environment. Automatic Environments and their entries need only edit.

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use super::{
    Kind, TestNamespace, client_as, eventually, fixtures, grant_users, refusal, with_temp_ns,
};
use ferry::api::application::{EnvironmentEntry, Pin};
use ferry::api::environment::{Approval, StrategyType};
use ferry::api::{Application, Environment};

/// bob and carol may edit Applications and Environments (every verb a team's editor has);
/// carol also holds the shipped `ferry-approver` ClusterRole in the namespace.
async fn grant(ns: &TestNamespace) {
    grant_users(
        ns,
        &[(
            "team-editor",
            json!([{"apiGroups": ["ferry.dev"], "resources": ["applications", "environments"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]),
        )],
        &[
            ("editors", "Role", "team-editor", &["bob", "carol"]),
            ("approvers", "ClusterRole", "ferry-approver", &["carol"]),
        ],
    )
    .await;
}

/// `user` replaces the named object with what `change` makes of it (a read, then an update,
/// as `kubectl edit` does).
async fn edit_as<K: Kind>(
    ns: &TestNamespace,
    user: &str,
    name: &str,
    change: impl FnOnce(&mut K),
) -> Result<(), String> {
    let api: Api<K> = Api::namespaced(client_as(user).await, &ns.name);
    let mut object = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{user} cannot read {name}: {e}"));
    change(&mut object);
    refusal(
        user,
        api.replace(name, &PostParams::default(), &object).await,
    )
}

/// `user` creates `object`.
async fn create_as<K: Kind>(ns: &TestNamespace, user: &str, object: &K) -> Result<(), String> {
    let api: Api<K> = Api::namespaced(client_as(user).await, &ns.name);
    refusal(user, api.create(&PostParams::default(), object).await)
}

/// `user` deletes the named object.
async fn delete_as<K: Kind>(ns: &TestNamespace, user: &str, name: &str) -> Result<(), String> {
    let api: Api<K> = Api::namespaced(client_as(user).await, &ns.name);
    refusal(user, api.delete(name, &DeleteParams::default()).await)
}

/// Waits until the API server enforces a policy (it loads policies, bindings and their
/// parameters from its own informers, a moment after they are created): until bob's dry run
/// of `object`'s creation is refused. No object shows that moment, so this asks the API
/// server itself.
async fn await_refusal<K: Kind>(ns: &TestNamespace, what: &str, object: &K) {
    let api: Api<K> = Api::namespaced(client_as("bob").await, &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(what, || async {
        match api.create(&dry_run, object).await {
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            other => Err(format!("bob's dry-run create gave {other:?}")),
        }
    })
    .await;
}

/// A named change a user tries to make to an object.
type Change<K> = (&'static str, fn(&mut K));

fn assert_names(message: &str, words: &[&str]) {
    for words in words {
        assert!(
            message.contains(words),
            "the refusal lacks {words:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_who_may_approve_creates_changes_or_deletes_a_manual_environment() {
    with_temp_ns("envguard", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        grant(&ns).await;
        await_refusal(&ns, "ferry-environments enforced", &fixtures::prod_manual()).await;

        // Creating a Manual Environment takes approve.
        let message = create_as(&ns, "bob", &fixtures::prod_manual())
            .await
            .expect_err("bob created the Manual prod");
        assert_names(
            &message,
            &[
                "bob may not create Environment prod",
                &format!("in namespace {}", ns.name),
                "the verb approve on environments.ferry.dev prod",
                "ferry-approver",
            ],
        );
        create_as(&ns, "carol", &fixtures::prod_manual())
            .await
            .expect("carol may create the Manual prod");

        // An Automatic Environment needs only edit, until it would become Manual.
        create_as(&ns, "bob", &fixtures::dev())
            .await
            .expect("bob may create the Automatic dev");
        edit_as(&ns, "bob", "dev", |e: &mut Environment| {
            e.spec.strategy.type_ = StrategyType::BlueGreen;
        })
        .await
        .expect("bob may change dev's strategy");
        let refused = edit_as(&ns, "bob", "dev", |e: &mut Environment| {
            e.spec.approval = Approval::Manual;
        })
        .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|m| m.contains("bob may not change the spec of Environment dev")),
            "bob made dev Manual: {refused:?}"
        );

        // Every spec change of the Manual prod that lets more in is refused for bob.
        let changes: [Change<Environment>; 4] = [
            ("approval: Automatic", |e| {
                e.spec.approval = Approval::Automatic
            }),
            ("no upstream", |e| e.spec.upstream = None),
            ("another targetNamespace", |e| {
                e.spec.target_namespace = Some("elsewhere".to_owned())
            }),
            ("a looser health policy", |e| {
                e.spec.health.max_restarts = 100
            }),
        ];
        for (what, change) in changes {
            let message = edit_as(&ns, "bob", "prod", change)
                .await
                .expect_err(&format!("bob gave prod {what}"));
            assert_names(
                &message,
                &[
                    "bob may not change the spec of Environment prod",
                    "the verb approve on environments.ferry.dev prod",
                ],
            );
        }
        // Metadata is not guarded.
        edit_as(&ns, "bob", "prod", |e: &mut Environment| {
            e.metadata
                .labels
                .get_or_insert_default()
                .insert("team".to_owned(), "shop".to_owned());
        })
        .await
        .expect("bob may label prod");

        let refused = delete_as::<Environment>(&ns, "bob", "prod").await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|m| m.contains("bob may not delete Environment prod")),
            "bob deleted prod: {refused:?}"
        );

        // carol may approve: she changes prod, and deletes it.
        edit_as(&ns, "carol", "prod", |e: &mut Environment| {
            e.spec.health.max_restarts = 5;
        })
        .await
        .expect("carol may change prod's health policy");
        let prod: Environment = ns.api().get("prod").await.expect("prod");
        assert_eq!(prod.spec.approval, Approval::Manual);
        assert_eq!(prod.spec.upstream.as_deref(), Some("dev"));
        assert_eq!(prod.spec.health.max_restarts, 5, "only carol's change took");
        delete_as::<Environment>(&ns, "carol", "prod")
            .await
            .expect("carol may delete prod");
    })
    .await;
}

/// `app`'s entry for `environment`.
fn entry<'a>(app: &'a mut Application, environment: &str) -> &'a mut EnvironmentEntry {
    app.spec
        .environments
        .iter_mut()
        .find(|e| e.name == environment)
        .unwrap_or_else(|| panic!("the shop goes through {environment}"))
}

fn remove_entry(app: &mut Application, environment: &str) {
    app.spec.environments.retain(|e| e.name != environment);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_who_may_approve_changes_adds_or_removes_the_entry_of_a_manual_environment() {
    with_temp_ns("entries", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        grant(&ns).await;
        ns.create_object(fixtures::dev()).await;
        ns.create_object(fixtures::prod_manual()).await;
        // The shop has an entry for prod: adding it takes approve.
        await_refusal(&ns, "ferry-environment-entries enforced", &fixtures::shop()).await;

        let message = create_as(&ns, "bob", &fixtures::shop())
            .await
            .expect_err("bob created the shop with an entry for prod");
        assert_names(
            &message,
            &[
                "bob may not add an entry for prod in Application shop",
                &format!("in namespace {}", ns.name),
                "Environment prod needs approval",
                "the verb approve on environments.ferry.dev prod",
                "ferry-approver",
            ],
        );
        create_as(&ns, "carol", &fixtures::shop())
            .await
            .expect("carol may create the shop");

        // dev's entry and the Application's labels are bob's to edit; prod's overrides are not.
        edit_as(&ns, "bob", "shop", |app: &mut Application| {
            entry(app, "dev").replicas = Some(3);
        })
        .await
        .expect("bob may change dev's replicas");
        edit_as(&ns, "bob", "shop", |app: &mut Application| {
            app.metadata
                .labels
                .get_or_insert_default()
                .insert("team".to_owned(), "shop".to_owned());
        })
        .await
        .expect("bob may label the shop");
        let overrides: [Change<Application>; 3] = [
            ("replicas", |app| entry(app, "prod").replicas = Some(10)),
            ("an env var", |app| {
                entry(app, "prod").env = vec![
                    serde_json::from_value(json!({"name": "DEBUG", "value": "1"}))
                        .expect("an env var"),
                ];
            }),
            ("resources", |app| {
                entry(app, "prod").resources = Some(
                    serde_json::from_value(json!({"limits": {"memory": "8Gi"}}))
                        .expect("resources"),
                );
            }),
        ];
        for (what, change) in overrides {
            let message = edit_as(&ns, "bob", "shop", change)
                .await
                .expect_err(&format!("bob changed prod's {what}"));
            assert_names(
                &message,
                &[
                    "bob may not change the entry of prod in Application shop",
                    "the verb approve on environments.ferry.dev prod",
                ],
            );
        }
        // The pin is ferry-approve's to refuse, with its own message.
        let message = edit_as(&ns, "bob", "shop", |app: &mut Application| {
            entry(app, "prod").pin = Some(Pin {
                release: "shop-1.4.2".to_owned(),
                reason: "CHG-1".to_owned(),
                by: Some("bob".to_owned()),
            });
        })
        .await
        .expect_err("bob pinned prod");
        assert_names(&message, &["bob may not change the pin of prod:"]);
        let message = edit_as(&ns, "bob", "shop", |app: &mut Application| {
            remove_entry(app, "prod")
        })
        .await
        .expect_err("bob removed prod's entry");
        assert_names(
            &message,
            &["bob may not remove the entry of prod in Application shop"],
        );
        let message = delete_as::<Application>(&ns, "bob", "shop")
            .await
            .expect_err("bob deleted the shop while it has an entry for prod");
        assert_names(
            &message,
            &["bob may not delete Application shop, which has an entry for prod"],
        );

        // carol may do all of it.
        edit_as(&ns, "carol", "shop", |app: &mut Application| {
            entry(app, "prod").replicas = Some(4);
        })
        .await
        .expect("carol may change prod's replicas");
        let app: Application = ns.api().get("shop").await.expect("the shop");
        let replicas: Vec<_> = app
            .spec
            .environments
            .iter()
            .map(|e| (e.name.as_str(), e.replicas))
            .collect();
        assert_eq!(
            replicas,
            [("dev", Some(3)), ("prod", Some(4))],
            "only the allowed writes took effect"
        );
        edit_as(&ns, "carol", "shop", |app: &mut Application| {
            remove_entry(app, "prod")
        })
        .await
        .expect("carol may remove prod's entry");
        // Without an entry for prod, the shop is bob's to delete.
        delete_as::<Application>(&ns, "bob", "shop")
            .await
            .expect("bob may delete the shop once it no longer runs in prod");
    })
    .await;
}

/// A namespace being deleted takes its Manual Environments and their entries with it: the
/// namespace controller, which deletes what is left in it, holds no `approve` (and an editor
/// cannot delete a namespace). Before the namespace goes, the same deletions are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_being_deleted_takes_its_manual_environments_and_entries_with_it() {
    const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
    with_temp_ns("envguard-going", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        grant(&ns).await;
        await_refusal(&ns, "ferry-environments enforced", &fixtures::prod_manual()).await;
        ns.create_object(fixtures::dev()).await;
        ns.create_object(fixtures::prod_manual()).await;
        ns.create_object(fixtures::shop()).await;
        eventually("ferry-environment-entries enforced", || async {
            let api: Api<Application> =
                Api::namespaced(client_as(NAMESPACE_CONTROLLER).await, &ns.name);
            let dry_run = DeleteParams {
                dry_run: true,
                ..Default::default()
            };
            match api.delete("shop", &dry_run).await {
                Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
                other => Err(format!("the dry-run delete gave {other:?}")),
            }
        })
        .await;
        delete_as::<Environment>(&ns, NAMESPACE_CONTROLLER, "prod")
            .await
            .expect_err("prod was deleted while its namespace stays");

        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ns.client.clone());
        namespaces
            .delete(&ns.name, &DeleteParams::default())
            .await
            .expect("deleting the namespace");
        delete_as::<Application>(&ns, NAMESPACE_CONTROLLER, "shop")
            .await
            .expect("the namespace controller deletes the shop, which has prod's entry");
        delete_as::<Environment>(&ns, NAMESPACE_CONTROLLER, "prod")
            .await
            .expect("the namespace controller deletes the Manual prod");
    })
    .await;
}
