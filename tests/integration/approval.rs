//! Who may approve: the ValidatingAdmissionPolicy `ferry-approve` of `manifests/ferry.yaml`,
//! on the real API server with RBAC. Setting, changing or removing an environment's pin (an
//! approval, a pin, a manual rollback, an unpin) takes the verb `approve` on that Environment;
//! every other change to an Application takes only the right to edit it.

use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::{TestNamespace, client_as, eventually, fixtures, grant_users, refusal, with_temp_ns};
use ferry::api::Application;
use ferry::api::application::{EnvironmentEntry, Pin};

/// The Roles and bindings of the test, in `ns`: everyone may edit Applications; alice may
/// approve in prod only (a Role narrowed by `resourceNames`); carol may approve in every
/// Environment of the namespace (the shipped `ferry-approver` ClusterRole); bob may not approve.
async fn grant(ns: &TestNamespace) {
    grant_users(
        ns,
        &[
            (
                "shop-editor",
                json!([{"apiGroups": ["ferry.dev"], "resources": ["applications"],
                        "verbs": ["get", "create", "update"]}]),
            ),
            (
                "prod-approver",
                json!([{"apiGroups": ["ferry.dev"], "resources": ["environments"],
                        "resourceNames": ["prod"], "verbs": ["approve"]}]),
            ),
        ],
        &[
            ("editors", "Role", "shop-editor", &["alice", "bob", "carol"]),
            ("prod-approvers", "Role", "prod-approver", &["alice"]),
            ("approvers", "ClusterRole", "ferry-approver", &["carol"]),
        ],
    )
    .await;
}

/// `user` replaces the shop Application with what `change` makes of it (a read, then an
/// update, as `kubectl edit` does). `Err` is the API server's refusal, as its message.
async fn edit_as(
    ns: &TestNamespace,
    user: &str,
    change: impl FnOnce(&mut Application),
) -> Result<(), String> {
    let api: Api<Application> = Api::namespaced(client_as(user).await, &ns.name);
    let mut app = api
        .get("shop")
        .await
        .map_err(|e| format!("{user} cannot read the shop: {e}"))?;
    change(&mut app);
    refusal(
        user,
        api.replace("shop", &PostParams::default(), &app).await,
    )
}

/// `app`'s entry for `environment`.
fn entry<'a>(app: &'a mut Application, environment: &str) -> &'a mut EnvironmentEntry {
    app.spec
        .environments
        .iter_mut()
        .find(|e| e.name == environment)
        .unwrap_or_else(|| panic!("the shop goes through {environment}"))
}

/// `app` with `environment` pinned to `release` by `by` (None: unpinned).
fn pin(app: &mut Application, environment: &str, release: Option<&str>, by: &str) {
    entry(app, environment).pin = release.map(|release| Pin {
        release: release.to_owned(),
        reason: "CHG-1".to_owned(),
        by: Some(by.to_owned()),
    });
}

/// Waits until the API server enforces the policy (it loads policies and bindings from its
/// own informers, a moment after they are created): until bob's dry-run create of a pinned
/// shop is refused.
async fn await_enforcement(ns: &TestNamespace) {
    let api: Api<Application> = Api::namespaced(client_as("bob").await, &ns.name);
    let pinned = fixtures::pinned_by(fixtures::shop(), "prod", "shop-1.4.2", "CHG-1", "bob");
    // No object shows when the API server's own informers have loaded the policy, so this
    // asks the API server itself, with a dry run, until it refuses.
    eventually("the policy enforced", || async {
        let attempt = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &pinned,
            )
            .await;
        match attempt {
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            other => Err(format!("bob's pinned create gave {other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_who_may_approve_an_environment_sets_changes_or_removes_its_pin() {
    with_temp_ns("approve", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        grant(&ns).await;
        await_enforcement(&ns).await;

        // A pin at creation needs approve too; without one, editing is enough.
        let as_bob: Api<Application> = Api::namespaced(client_as("bob").await, &ns.name);
        let refused = as_bob
            .create(
                &PostParams::default(),
                &fixtures::pinned_by(fixtures::shop(), "prod", "shop-1.4.2", "CHG-1", "bob"),
            )
            .await;
        let message = match refused {
            Err(kube::Error::Api(status)) if status.code == 403 => status.message,
            other => panic!("bob created a pinned shop: {other:?}"),
        };
        for words in [
            "bob may not change the pin of prod:",
            "the verb approve on each of these environments.ferry.dev",
            &format!("namespace {}", ns.name),
            "ferry-approver",
        ] {
            assert!(
                message.contains(words),
                "the refusal lacks {words:?}: {message}"
            );
        }
        as_bob
            .create(&PostParams::default(), &fixtures::shop())
            .await
            .expect("bob may create the shop unpinned");

        // bob edits everything but pins.
        edit_as(&ns, "bob", |app| entry(app, "dev").replicas = Some(3))
            .await
            .expect("bob may change dev's replicas");
        let refused = edit_as(&ns, "bob", |app| {
            pin(app, "prod", Some("shop-1.4.2"), "bob")
        })
        .await;
        assert!(refused.is_err_and(|m| m.contains("bob may not change the pin of prod:")));

        // alice approves in prod only.
        edit_as(&ns, "alice", |app| {
            pin(app, "prod", Some("shop-1.4.2"), "alice")
        })
        .await
        .expect("alice may pin prod");
        let refused = edit_as(&ns, "alice", |app| {
            pin(app, "dev", Some("shop-1.4.2"), "alice");
            pin(app, "prod", Some("shop-1.4.1"), "alice");
        })
        .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|m| m.contains("alice may not change the pin of dev, prod:")),
            "alice may not pin dev, so the write is refused: {refused:?}"
        );

        // A write that leaves the pin as it is needs no approval, even from bob; removing it does.
        edit_as(&ns, "bob", |app| entry(app, "prod").replicas = Some(4))
            .await
            .expect("bob may change prod's replicas while its pin stays");
        let refused = edit_as(&ns, "bob", |app| pin(app, "prod", None, "bob")).await;
        assert!(refused.is_err(), "bob removed prod's pin");
        edit_as(&ns, "alice", |app| pin(app, "prod", None, "alice"))
            .await
            .expect("alice may unpin prod");

        // carol holds ferry-approver in the namespace: every environment.
        edit_as(&ns, "carol", |app| {
            pin(app, "dev", Some("shop-1.4.2"), "carol");
            pin(app, "prod", Some("shop-1.4.2"), "carol");
        })
        .await
        .expect("carol may pin dev and prod");

        let app: Application = ns.api().get("shop").await.expect("the shop");
        let pins: Vec<_> = app
            .spec
            .environments
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.pin.as_ref().map(|p| p.release.as_str()),
                    e.replicas,
                )
            })
            .collect();
        assert_eq!(
            pins,
            [
                ("dev", Some("shop-1.4.2"), Some(3)),
                ("prod", Some("shop-1.4.2"), Some(4))
            ],
            "only the allowed writes took effect"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_names_who_wrote_it_as_the_api_server_authenticated_them() {
    with_temp_ns("approve-by", |ns| async move {
        super::install::install_rbac(&ns.client).await;
        grant(&ns).await;
        await_enforcement(&ns).await;
        ns.api::<Application>()
            .create(&PostParams::default(), &fixtures::shop())
            .await
            .expect("the admin creates the shop");

        // alice may approve prod, but not in carol's name, nor without a name.
        let refused = edit_as(&ns, "alice", |app| {
            pin(app, "prod", Some("shop-1.4.2"), "carol")
        })
        .await;
        let message = refused.expect_err("alice pinned prod in carol's name");
        assert!(
            message.contains("the pin of prod must name who pins it")
                && message.contains("by: \"alice\""),
            "the refusal names the pin and the user to name: {message}"
        );
        let refused = edit_as(&ns, "alice", |app| {
            pin(app, "prod", Some("shop-1.4.2"), "alice");
            if let Some(pin) = entry(app, "prod").pin.as_mut() {
                pin.by = None;
            }
        })
        .await;
        assert!(
            refused.is_err_and(|m| m.contains("by: \"alice\"")),
            "a pin without by"
        );
        edit_as(&ns, "alice", |app| {
            pin(app, "prod", Some("shop-1.4.2"), "alice")
        })
        .await
        .expect("alice pins prod in her own name");

        // The pin stays alice's while others change the rest; taking it over is a change of
        // the pin: an approver may (in her own name only), an editor may not.
        edit_as(&ns, "bob", |app| entry(app, "dev").replicas = Some(2))
            .await
            .expect("bob edits dev while alice's pin stays");
        let retitle = |by: &'static str| {
            move |app: &mut Application| {
                if let Some(pin) = entry(app, "prod").pin.as_mut() {
                    pin.by = Some(by.to_owned());
                }
            }
        };
        assert!(edit_as(&ns, "bob", retitle("bob")).await.is_err());
        assert!(edit_as(&ns, "carol", retitle("dave")).await.is_err());
        edit_as(&ns, "carol", retitle("carol"))
            .await
            .expect("carol, an approver, takes the pin over in her own name");

        let app: Application = ns.api().get("shop").await.expect("the shop");
        let prod = app.spec.environments.iter().find(|e| e.name == "prod");
        assert_eq!(
            prod.and_then(|e| e.pin.as_ref())
                .and_then(|p| p.by.as_deref()),
            Some("carol")
        );
    })
    .await;
}
