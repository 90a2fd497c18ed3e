//! Noticing commits on a real git server: the branch head becomes exactly one BuildJob and
//! its build pod; a push webhook makes the next commit's BuildJob at once; a repository that
//! cannot be read makes the Application `Ready=False` with the reason and builds nothing.
//! (The build pods never start here: this API server has no node. `tests/e2e/builds.rs` runs
//! them.)

use std::time::{Duration, Instant};

use ferry::adapters::webhook::PushedCommit;
use ferry::api::conditions::{self, READY};
use ferry::api::{Application, BuildJob};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::gitserver::WorkingCopy;
use crate::{RunningController, TestNamespace, git_server, with_temp_ns};

/// An Application named `name` building branch main of `url`, polled every `poll`.
fn application(name: &str, url: &str, poll: &str) -> String {
    format!(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: {name}}}
spec:
  source: {{url: "{url}", pollInterval: {poll}}}
  build: {{builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1", timeout: 7m}}
  image: {{repository: registry.local/team-a/{name}}}
"#
    )
}

async fn buildjobs_of(ns: &TestNamespace, app: &str) -> Vec<String> {
    let list = ns
        .api::<BuildJob>()
        .list(&ListParams::default())
        .await
        .expect("listing BuildJobs");
    list.items
        .into_iter()
        .filter(|j| j.spec.application == app)
        .filter_map(|j| j.metadata.name)
        .collect()
}

/// Creates `count` pods with the labels of build pods, each deleted as soon as it is created.
async fn churn_labelled_pods(ns: &TestNamespace, count: usize) {
    let pods = ns.api::<Pod>();
    for i in 0..count {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("churn-{i}"), "labels": {
                "app.kubernetes.io/managed-by": "ferry", "ferry.dev/buildjob": "gone"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/none:1"}]}
        }))
        .expect("a pod");
        pods.create(&Default::default(), &pod)
            .await
            .expect("creating a pod");
        pods.delete(
            &format!("churn-{i}"),
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await
        .expect("deleting a pod");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_branch_head_becomes_one_buildjob_and_a_push_builds_the_next_commit_at_once() {
    with_temp_ns("builds", |ns| async move {
        let repo = format!("app-{}", ns.name);
        let url = git_server().url(&repo);
        let work = WorkingCopy::new();
        let first = work.commit("First (#1)", "index.html", "one\n");
        work.push(&url, "main");

        // Polled only every 10 minutes: after the first look, only the push can be noticed.
        let (controller, pushes) = RunningController::start_with_pushes(&ns.client, &ns.name);
        ns.create::<Application>(&application("app", &url, "10m"))
            .await;
        let first_job = format!("app-{}", &first[..7]);
        let job = ns
            .wait_for::<BuildJob>(&first_job, "created from the branch head", |_| true)
            .await;
        assert_eq!(job.spec.commit, first);

        // Its build pod: the three steps in order, restricted, with the build's deadline.
        let pod = ns
            .wait_for::<Pod>(&first_job, "the build pod", |_| true)
            .await;
        let spec = pod.spec.expect("a pod spec");
        let steps: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(steps, ["fetch", "build", "publish"]);
        assert_eq!(spec.active_deadline_seconds, Some(420));
        assert_eq!(
            spec.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        let owner = &pod.metadata.owner_references.expect("an owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("BuildJob", first_job.as_str())
        );

        // Build pods that come and go at once (deleted with their BuildJob or namespace) must
        // not stop the controller from hearing of the others.
        churn_labelled_pods(&ns, 40).await;

        // The build is followed from its pod: what the kubelet would report (this API server
        // has none), written to the pod's status, moves the BuildJob on at once.
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "startTime": "2026-01-01T00:00:00Z",
            "initContainerStatuses": [{
                "name": "fetch", "image": "f", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
            }]
        }});
        ns.api::<Pod>()
            .patch_status(
                &first_job,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&status),
            )
            .await
            .expect("writing the pod's status");
        ns.wait_for::<BuildJob>(&first_job, "Running at step fetch", |j| {
            j.status.as_ref().is_some_and(|s| {
                conditions::find(&s.common.conditions, READY)
                    .is_some_and(|c| c.message == "step fetch is running")
            })
        })
        .await;

        let (commit, build) = (first.clone(), first_job.clone());
        let app = ns
            .wait_for::<Application>("app", "latestCommit and latestBuild", move |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.latest_commit.as_deref() == Some(commit.as_str())
                        && s.latest_build.as_deref() == Some(build.as_str())
                })
            })
            .await;
        assert!(conditions::is_true(
            &app.status.expect("a status").common.conditions,
            READY
        ));

        // A push: the webhook endpoint hands the controller a PushedCommit.
        let second = work.commit("Second (PROJ-7)", "index.html", "two\n");
        work.push(&url, "main");
        let pushed = Instant::now();
        let push = PushedCommit {
            namespace: ns.name.clone(),
            application: "app".into(),
            commit: second.clone(),
        };
        pushes
            .send(push.clone())
            .await
            .expect("the controller listens");
        let second_job = format!("app-{}", &second[..7]);
        ns.wait_for::<BuildJob>(&second_job, "created after the push", |_| true)
            .await;
        println!(
            "measured: push handed over → BuildJob created = {:.3} s",
            pushed.elapsed().as_secs_f64()
        );

        // The same push again (a redelivery, or a poll racing it) builds nothing more.
        pushes.send(push).await.expect("the controller listens");
        // A quiet period, not a wait: nothing should come of the redelivery, and the test
        // gives it two seconds to show if it would.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut jobs = buildjobs_of(&ns, "app").await;
        jobs.sort();
        let mut want = vec![first_job, second_job];
        want.sort();
        assert_eq!(jobs, want, "one BuildJob per commit");

        controller.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_that_cannot_be_read_says_why_and_builds_nothing() {
    with_temp_ns("unreadable", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        // Nothing listens on port 1; the git server has no repository of that name; the
        // repository exists but has no branch main.
        let empty = format!("empty-{}", ns.name);
        WorkingCopy::new().git(&["init", "--bare", "--quiet", &git_server().dir(&empty)]);
        for (name, url, reason) in [
            (
                "closed",
                "http://127.0.0.1:1/app.git".to_owned(),
                "RepositoryUnreachable",
            ),
            (
                "missing",
                git_server().url("no-such-repository"),
                "NotAGitRepository",
            ),
            ("branchless", git_server().url(&empty), "BranchNotFound"),
        ] {
            ns.create::<Application>(&application(name, &url, "5s"))
                .await;
            let app = ns
                .wait_for::<Application>(name, reason, move |a| {
                    a.status
                        .as_ref()
                        .and_then(|s| conditions::find(&s.common.conditions, READY))
                        .is_some_and(|c| c.reason == reason && c.status == "False")
                })
                .await;
            let ready = conditions::find(&app.status.expect("a status").common.conditions, READY)
                .cloned()
                .expect("Ready");
            println!("{name}: {}", ready.message);
        }
        // Retried with backoff, never in a hot loop: a few reconciles in some seconds.
        let before = controller.reconciles("Application");
        // A quiet period, not a wait: the reconciles are counted over a fixed six seconds.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let retries = controller.reconciles("Application") - before;
        println!(
            "measured: Application reconciles in 6 s with 3 unreadable repositories = {retries}"
        );
        assert!(retries <= 30, "{retries} reconciles in 6 s is a hot loop");
        for name in ["closed", "missing", "branchless"] {
            assert!(
                buildjobs_of(&ns, name).await.is_empty(),
                "{name} built something"
            );
        }
        controller.stop().await;
    })
    .await;
}

/// A git server that accepts connections and never answers holds up builds of its branch
/// only: the newest Release rolls out while the look-up waits for its timeout, and the
/// failure is reported when the look-up ends (which reconciles the Application again).
/// Before, the reconcile waited for the look-up: nothing was delivered for the listing's
/// whole timeout (20 s), and with many repositories on one silent host, for much longer.
#[tokio::test(flavor = "multi_thread")]
async fn a_git_server_that_never_answers_holds_up_no_rollout() {
    with_temp_ns("silent-git", |ns| async move {
        let (url, held) = crate::hosts::silent_host();
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<ferry::api::Environment>(crate::fixtures::environment(
            "dev",
            "{health: {progressDeadline: 10m}}",
        ))
        .await;
        ns.create_object::<ferry::api::Release>(crate::fixtures::shop_1_4_2())
            .await;
        let mut app = crate::fixtures::shop_through(&["dev"]);
        app.spec.source.repository.url = url;
        let created = Instant::now();
        ns.create_object::<Application>(app).await;
        ns.wait_for::<k8s_openapi::api::apps::v1::Deployment>(
            "shop-dev",
            "the newest release rolling out",
            |_| true,
        )
        .await;
        let rolled_out = created.elapsed();
        println!(
            "measured: Application created → its Deployment, git server silent = {:.1} s",
            rolled_out.as_secs_f64()
        );
        assert!(
            !held.lock().expect("connections").is_empty(),
            "the branch was looked up"
        );
        // Waiting for the listing would take its whole timeout (20 s); half of it is a margin
        // of several seconds both ways.
        assert!(
            rolled_out < ferry::adapters::git::LIST_TIMEOUT / 2,
            "the rollout waited {rolled_out:?} for the git server (its listing times out after {:?})",
            ferry::adapters::git::LIST_TIMEOUT
        );
        // The look-up's end is reported without waiting for the next poll (one minute).
        let app = ns
            .wait_for::<Application>("shop", "RepositoryUnreachable", |a| {
                a.status
                    .as_ref()
                    .and_then(|s| conditions::find(&s.common.conditions, READY))
                    .is_some_and(|c| c.reason == "RepositoryUnreachable")
            })
            .await;
        let ready = conditions::find(&app.status.expect("a status").common.conditions, READY)
            .cloned()
            .expect("Ready");
        println!("silent: {}", ready.message);
        assert!(buildjobs_of(&ns, "shop").await.is_empty());
        controller.stop().await;
    })
    .await;
}

/// What a kubelet reports of a build pod whose fetch step failed at `finished`.
fn fetch_failed(finished: &str) -> serde_json::Value {
    serde_json::json!({"status": {
        "phase": "Failed",
        "startTime": "2026-01-01T00:00:00Z",
        "initContainerStatuses": [{
            "name": "fetch", "image": "f", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "finishedAt": finished,
                "message": "{\"error\":\"commit not found\",\"reason\":\"CommitNotFound\"}"}}
        }]
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_builds_beyond_the_history_limit_are_pruned() {
    with_temp_ns("retention", |ns| async move {
        let repo = format!("retention-{}", ns.name);
        let url = git_server().url(&repo);
        let work = WorkingCopy::new();
        let first = work.commit("First", "index.html", "one\n");
        work.push(&url, "main");
        let (controller, pushes) = RunningController::start_with_pushes(&ns.client, &ns.name);
        let mut app: Application =
            serde_yaml::from_str(&application("app", &url, "10m")).expect("an Application");
        app.spec.build_history_limit = 1;
        ns.create_object(app).await;
        let first_job = format!("app-{}", &first[..7]);
        ns.wait_for::<Pod>(&first_job, "the first build pod", |_| true)
            .await;

        let second = work.commit("Second", "index.html", "two\n");
        work.push(&url, "main");
        pushes
            .send(PushedCommit {
                namespace: ns.name.clone(),
                application: "app".into(),
                commit: second.clone(),
            })
            .await
            .expect("the controller listens");
        let second_job = format!("app-{}", &second[..7]);
        ns.wait_for::<Pod>(&second_job, "the second build pod", |_| true)
            .await;

        let pods = ns.api::<Pod>();
        for (job, finished) in [
            (&first_job, "2026-01-01T00:01:00Z"),
            (&second_job, "2026-01-01T00:02:00Z"),
        ] {
            pods.patch_status(
                job,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&fetch_failed(finished)),
            )
            .await
            .expect("writing the pod's status");
            if *job == first_job {
                let failed = ns
                    .wait_for::<BuildJob>(job, "FetchFailed", |j| {
                        j.status
                            .as_ref()
                            .and_then(|s| s.failure.as_ref())
                            .is_some_and(|f| f.reason == "FetchFailed")
                    })
                    .await;
                let failure = failed.status.and_then(|s| s.failure).expect("a failure");
                assert_eq!(failure.step, "fetch");
                assert_eq!(
                    failure.message,
                    "step fetch exited with 1: commit not found"
                );
            }
        }
        // One finished build is kept (the newer); the older one goes.
        ns.wait_gone::<BuildJob>(&first_job, "the older finished build deleted")
            .await;
        assert_eq!(buildjobs_of(&ns, "app").await, [second_job]);
        assert_eq!(controller.builds("FetchFailed"), 2);
        controller.stop().await;
    })
    .await;
}
