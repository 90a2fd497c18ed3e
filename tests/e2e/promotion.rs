//! Promotion on the real cluster, driven only as a GitOps repository and a developer drive it:
//! commits pushed to the cluster's git server (whose push webhook makes the build start at
//! once), Environments and the Application applied to the API server, approvals and rollbacks
//! being pins in the Application.
//!
//! Each scenario has its own namespace (the restricted Pod Security Standard, which the
//! verification test pod must meet too), its own git repository (named with the run's time)
//! and the example pipeline's shape in it: Environments dev (the first stage) → staging
//! (Automatic, BlueGreen, verified by a test pod that fetches `$SERVICE_URL/verify.html`) →
//! prod (Manual, BlueGreen, verified by an HTTP GET of /verify.html), all three without
//! targetNamespace, so the workloads web-dev, web-staging and web-prod share the namespace.
//! Deadlines are short (progressDeadline 20s, stabilizationWindow 3s). The Application `web`
//! is the busybox httpd app of e2e/testdata/app (one replica, ready when / answers), built from
//! the pushed commits, polled every 10m so that only the webhook makes builds come quickly. The
//! commits come in three kinds ([`Commit`]): good, bad (no www/index.html: never ready, rolled
//! back in dev) and unverifiable (no www/verify.html: Healthy in dev, fails staging's
//! verification).
//!
//! - pipeline: a good commit: Healthy in dev, in staging by itself (verified by the test pod),
//!   prod AwaitingApproval with it as candidate (condition, summary) and stays so; pat, who may
//!   edit the Application but not approve, pins it: refused by the API server (the
//!   ferry-approve policy), nothing changes; rita (ferry-approver) pins it with a reason: it
//!   runs in prod, verified, the history records an Approval with the reason and who wrote it;
//!   its Release lists dev, staging and prod Deployed and verified; the Events and the metrics
//!   say so. Measures commit pushed → Healthy in dev, and → AwaitingApproval in prod.
//! - bad-commit: a bad commit after a good one: rolled back in dev, Rejected in its Release's
//!   status, never named by staging or prod; the next good commit reaches staging.
//! - verification-fails: an unverifiable commit: Healthy in dev, fails staging's verification
//!   (VerificationFailed, the test pod's log tail in the status), staging rolls back, its
//!   Release says Rejected in staging; never prod's candidate.
//! - manual-rollback: two releases approved into prod in turn; a pin of the older one with
//!   reason "INC-77 rollback": it runs, verified, history ManualRollback with the reason and an
//!   actor; the pin removed: prod follows staging again, AwaitingApproval with the newer
//!   release, and does not roll it out. Then the durable history: the namespace's Ferry
//!   objects exported (Environments, the Application without its status, the DeliveryRecords)
//!   and the webhook Secret, the namespace deleted and made again, the export applied (records
//!   first): every environment's history is back, entry by entry, linked to the same records.
//! - superseded: two commits pushed while dev still rolls out the one before: that rollout
//!   finishes (no half rollouts), then the newest wins, the skipped one is recorded Superseded;
//!   in prod a candidate replaced by a newer one before approval is recorded Superseded.
//! - config-change: a change of `spec.run` alone (an env var) becomes a Release of the same
//!   image (`<version>+run.<hash>`) that flows dev → staging → prod like a commit, prod keeping
//!   what it ran until the new one is approved; then a change that breaks the app (readiness
//!   on a page it does not have) is rolled back in dev and never reaches staging or prod.
//!
//! The scenarios run side by side, except pipeline, which measures times and runs alone after
//! them.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ferry::api::application::{EnvironmentState, HistoryEntry, HistoryKind, Outcome, Phase, Pin};
use ferry::api::buildjob::BuildPhase;
use ferry::api::release::{ReleaseEnvironment, ReleaseState};
use ferry::api::{Application, BuildJob, DeliveryRecord, Environment, Release};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::git::{WorkingCopy, repository_url, webhook};
use crate::harness::{Judged, MANAGER, Res, Scenario, Suite, two};
use crate::net::in_netns;
use crate::{case, ensure, fail};

pub(crate) const APP: &str = "web";
pub(crate) const PROGRESS_DEADLINE: &str = "20s";
pub(crate) const STABILIZATION_WINDOW: &str = "3s";
/// The build: the pushed www/ into the output directory (its contents land at the image's
/// root). No tests: a bad commit must still become a Release, to be rejected by its rollout.
const SCRIPT: &str = r#"cp -r www "$FERRY_OUTPUT_DIR"/"#;

pub fn suite() -> Suite {
    Suite {
        name: "promotion",
        before: None,
        parallel: vec![
            case!("bad-commit", bad_commit, 360),
            case!("verification-fails", verification_fails, 360),
            case!("manual-rollback", manual_rollback, 420),
            case!("superseded", superseded, 420),
            case!("config-change", config_change, 420),
        ],
        alone: vec![case!("pipeline", pipeline, 300)],
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a pushed commit holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Commit {
    /// www/index.html and www/verify.html.
    Good,
    /// No www/index.html: / answers 404, the pod never becomes ready.
    Bad,
    /// www/index.html, no www/verify.html: healthy, but fails verification.
    Unverifiable,
}

impl Commit {
    fn word(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Bad => "bad",
            Self::Unverifiable => "unverifiable",
        }
    }
}

/// A commit pushed, and the Release it will make.
pub(crate) struct Pushed {
    pub(crate) release: String,
    pub(crate) sha: String,
    /// Just before the push (the webhook may start the build while the push returns).
    at: Instant,
    /// The same, on the wall clock.
    pushed: jiff::Timestamp,
}

/// The status entry of an environment nobody has written yet.
static NOTHING: LazyLock<EnvironmentState> = LazyLock::new(EnvironmentState::default);

/// The Application's status entry for `env` (an empty one while there is none).
fn env<'a>(app: &'a Application, env: &str) -> &'a EnvironmentState {
    app.status
        .as_ref()
        .and_then(|s| s.environments.iter().find(|e| e.name == env))
        .unwrap_or(&NOTHING)
}

/// `release` without the "<application>-" prefix, as summaries show it.
fn short(release: &str) -> &str {
    release
        .strip_prefix(APP)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(release)
}

/// Why the environment's last rollout failed: a rollback's cause, or the rollout's own verdict.
fn failure(state: &EnvironmentState) -> String {
    state
        .rollout
        .as_ref()
        .and_then(|r| r.cause.as_ref().or(r.verdict.as_ref()))
        .map(|v| format!("{}: {}", v.reason, v.message))
        .unwrap_or_default()
}

/// `env` is `want` with `release` current; never once it rejected `release` while that was to
/// become Healthy or Pinned.
fn is(state: &EnvironmentState, want: Phase, release: &str) -> Judged<()> {
    if state.phase == Some(want) && state.current.as_deref() == Some(release) {
        return Judged::Done(());
    }
    if matches!(want, Phase::Healthy | Phase::Pinned) && state.rejected.iter().any(|r| r == release)
    {
        return Judged::Never(format!(
            "{} rejected {release}: {}",
            state.name,
            failure(state)
        ));
    }
    Judged::Wait
}

/// As [`is`], and the rollout of `release` judged healthy with its verification passed.
fn verified(state: &EnvironmentState, want: Phase, release: &str) -> Judged<()> {
    match is(state, want, release) {
        Judged::Done(()) => {}
        other => return other,
    }
    let rollout = state.rollout.as_ref();
    let judged = rollout.is_some_and(|r| {
        r.release == release
            && r.verdict.as_ref().is_some_and(|v| v.healthy)
            && r.verification.as_ref().and_then(|v| v.passed) == Some(true)
    });
    if judged {
        Judged::Done(())
    } else {
        Judged::Wait
    }
}

/// prod is AwaitingApproval with `release` as its candidate and the condition
/// AwaitingApproval=True.
fn awaiting_approval(prod: &EnvironmentState, release: &str) -> bool {
    prod.phase == Some(Phase::AwaitingApproval)
        && prod.candidate.as_deref() == Some(release)
        && prod
            .conditions
            .iter()
            .find(|c| c.type_ == "AwaitingApproval")
            .is_some_and(|c| c.status == "True")
}

/// What of the environment's current, previous, candidate, rollout and history names
/// `release`, if anything does.
fn mention(state: &EnvironmentState, release: &str) -> Option<String> {
    let rollout = state.rollout.as_ref();
    let named = [
        state.current.as_deref(),
        state.previous.as_deref(),
        state.candidate.as_deref(),
        rollout.map(|r| r.release.as_str()),
        rollout.and_then(|r| r.from.as_deref()),
    ]
    .into_iter()
    .chain(
        state
            .history
            .iter()
            .flat_map(|h| [Some(h.release.as_str()), h.from.as_deref()]),
    )
    .any(|n| n == Some(release));
    named.then(|| {
        format!(
            "{} names {release}: {}",
            state.name,
            json!({
                "current": state.current, "previous": state.previous, "candidate": state.candidate,
                "rollout": rollout.map(|r| &r.release),
                "history": state.history.iter().map(|h| json!({
                    "release": h.release, "kind": h.kind, "outcome": h.outcome
                })).collect::<Vec<_>>(),
            })
        )
    })
}

/// The newest history entry of the environment recording `kind` for `release`.
fn history_entry<'a>(
    state: &'a EnvironmentState,
    release: &str,
    kind: HistoryKind,
) -> Option<&'a HistoryEntry> {
    state
        .history
        .iter()
        .find(|h| h.release == release && h.kind == kind)
}

/// One line of the environment's state for the log (the verification log left out).
fn show(state: &EnvironmentState) -> String {
    let rollout = state.rollout.as_ref().map(|r| {
        let verification = r.verification.clone().map(|mut v| {
            v.log = None;
            v
        });
        json!({
            "release": r.release, "from": r.from, "kind": r.kind, "reason": r.reason,
            "verdict": r.verdict, "verification": verification,
        })
    });
    format!(
        "status of {}: {}",
        state.name,
        json!({
            "phase": state.phase, "current": state.current, "previous": state.previous,
            "candidate": state.candidate, "rejected": state.rejected, "rollout": rollout,
        })
    )
}

fn show_history(state: &EnvironmentState) -> String {
    let entries: Vec<_> = state
        .history
        .iter()
        .map(|h| {
            json!({
                "release": h.release, "from": h.from, "kind": h.kind, "outcome": h.outcome,
                "reason": h.reason, "actor": h.actor,
            })
        })
        .collect();
    format!("history of {}: {}", state.name, json!(entries))
}

fn line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(cannot print: {e})"))
}

/// One scenario's pipeline: its Environments, its repository, the Application `web`.
pub(crate) struct Pipeline {
    pub(crate) s: Arc<Scenario>,
    work: WorkingCopy,
    url: String,
    /// The run's time, which names the repository and the image repository.
    run: i64,
    /// The Application's `spec.run` as YAML (a flow mapping), which `configure` changes.
    config: Mutex<String>,
    /// Where the git server POSTs the repository's pushes (Ferry's webhook, a ClusterIP), and
    /// the secret it signs them with.
    pub(crate) hook: (String, String),
}

/// The Application's `spec.run` until a scenario changes it: one replica of the httpd app,
/// ready when / answers.
const RUN: &str = "{replicas: 1, ports: [{name: http, port: 8080}], \
     readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1, failureThreshold: 1}}";

impl Pipeline {
    /// The Environments (dev with `dev_window` and `dev_deadline`), the webhook Secret, an
    /// empty repository whose pushes are POSTed to Ferry's webhook, and the Application (whose
    /// branch does not exist yet: the first push makes it, and the webhook announces it).
    pub(crate) async fn setup(s: Arc<Scenario>, dev_window: &str, dev_deadline: &str) -> Res<Self> {
        environments(&s, dev_window, (dev_deadline, PROGRESS_DEADLINE)).await?;
        Self::with_environments(s).await
    }

    /// The same, with `deadline` as every environment's progress deadline.
    pub(crate) async fn setup_with_deadline(
        s: Arc<Scenario>,
        window: &str,
        deadline: &str,
    ) -> Res<Self> {
        environments(&s, window, (deadline, deadline)).await?;
        Self::with_environments(s).await
    }

    async fn with_environments(s: Arc<Scenario>) -> Res<Self> {
        let cluster = s.cluster.clone();
        let run = jiff::Timestamp::now().as_second();
        let case = s.name.rsplit('/').next().unwrap_or("scenario").to_owned();
        let repo = format!("e2e-promotion-{case}-{run}");
        let secret = format!("e2e-hook-{run}-{case}");
        let mut hook = Secret::default();
        hook.metadata.name = Some("web-webhook".into());
        hook.string_data = Some([("secret".to_owned(), secret.clone())].into());
        s.api::<Secret>()
            .create(&PostParams::default(), &hook)
            .await?;
        let services: Api<Service> = Api::namespaced(s.client(), &cluster.system);
        let ip = services
            .get_opt("ferry-webhook")
            .await?
            .and_then(|svc| svc.spec)
            .and_then(|spec| spec.cluster_ip)
            .ok_or_else(|| format!("no Service ferry-webhook in {}", cluster.system))?;
        let target = format!("http://{ip}:9443/webhooks/{}/{APP}", s.ns);
        webhook(&cluster, &repo, &target, &secret).await?;
        let template = std::path::Path::new(&cluster.e2e_dir).join("testdata/app");
        let work = WorkingCopy::from_template(&template).await?;
        let pipeline = Self {
            url: repository_url(&cluster, &repo),
            s,
            work,
            run,
            config: Mutex::new(RUN.to_owned()),
            hook: (target, secret),
        };
        pipeline.application(None, None).await?;
        Ok(pipeline)
    }

    /// Applies Application `web`, with prod pinned to `pin` (release, reason) if given (an
    /// approval or a rollback, as a GitOps repository would commit it), as `user` when given.
    /// Fails with the API server's words when it refuses the write.
    pub(crate) async fn application(&self, pin: Option<(&str, &str)>, user: Option<&str>) -> Res {
        let cluster = &self.s.cluster;
        let busybox = format!("{}/busybox:1.35", cluster.registry);
        let repository = format!("{}/{}/{}/{APP}", cluster.registry, self.s.ns, self.run);
        let mut app: Application = serde_yaml::from_str(&format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: {APP}}}
spec:
  source: {{url: "{url}", branch: main, pollInterval: 10m, webhookSecret: web-webhook}}
  build:
    builderImage: "{busybox}"
    script: "true"
    baseImage: "{busybox}"
    entrypoint: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  image: {{repository: "{repository}", insecure: true}}
  run: {config}
  environments: [{{name: dev}}, {{name: staging}}, {{name: prod}}]
  # The chaos suite pushes a commit per round: every BuildJob and history entry is kept.
  buildHistoryLimit: 100
  historyLimit: 100
"#,
            url = self.url,
            config = self.config()
        ))?;
        app.spec.build.script = SCRIPT.into();
        if let Some((release, reason)) = pin
            && let Some(prod) = app.spec.environments.iter_mut().find(|e| e.name == "prod")
        {
            // Who pins, as the API server authenticates the writer (`ferry-approve` checks it).
            let by = match user {
                Some(user) => user.to_owned(),
                None => cluster.whoami().await?,
            };
            prod.pin = Some(Pin {
                release: release.into(),
                reason: reason.into(),
                by: Some(by),
            });
        }
        let client = match user {
            Some(user) => cluster.client_as(user).await?,
            None => self.s.client(),
        };
        let applications: Api<Application> = Api::namespaced(client, &self.s.ns);
        match applications
            .patch(
                APP,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&app),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) => fail!("{}", status.message),
            Err(e) => fail!("applying Application {APP}: {e}"),
        }
        match pin {
            Some((release, reason)) => self.s.say(format!(
                "applied Application {APP} with prod pinned to {release}: \"{reason}\"{}",
                user.map(|u| format!(" (as {u})")).unwrap_or_default()
            )),
            None => self
                .s
                .say(format!("applied Application {APP} without pins")),
        }
        Ok(())
    }

    /// The Application's `spec.run` now, as YAML.
    fn config(&self) -> String {
        self.config
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Changes the Application's `spec.run` to `config` (YAML), keeping prod's pin `pin`, and
    /// waits for the Release Ferry makes of it: the image of `from` (the newest Release) with
    /// the new configuration. Returns its name.
    async fn configure(&self, config: &str, from: &str, pin: Option<(&str, &str)>) -> Res<String> {
        match self.config.lock() {
            Ok(mut c) => *c = config.to_owned(),
            Err(e) => *e.into_inner() = config.to_owned(),
        }
        let before: BTreeSet<String> = self
            .s
            .api::<Release>()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect();
        self.application(pin, None).await?;
        self.s
            .say(format!("changed the Application's spec.run to {config}"));
        // A Release of a configuration has its version's build metadata replaced: its name is
        // that of the built Release with `-run.<hash>`.
        let built = from.split("-run.").next().unwrap_or(from);
        let prefix = format!("{built}-run.");
        let release = self
            .s
            .poll(
                &format!("the Release of the new run configuration ({prefix}*)"),
                secs(60),
                secs(1),
                || async {
                    let releases = self.s.api::<Release>().list(&ListParams::default()).await?;
                    Ok(releases.items.into_iter().find(|r| {
                        r.name_any().starts_with(&prefix) && !before.contains(&r.name_any())
                    }))
                },
            )
            .await?;
        let image = self
            .s
            .get::<Release>(from)
            .await?
            .map(|r| r.spec.image)
            .unwrap_or_default();
        ensure!(
            release.spec.image == image,
            "the Release of the new configuration runs {}, not {from}'s image {image}",
            release.spec.image
        );
        ensure!(
            release.spec.version.contains("+run."),
            "its version {} does not say it is a new run configuration",
            release.spec.version
        );
        let name = release.name_any();
        self.s.say(format!(
            "Ferry made Release {name} (version {}): {from}'s image with the new run configuration",
            release.spec.version
        ));
        Ok(name)
    }

    /// Commits a `kind` variant of the working copy's www/ (labelled `label`) and pushes it.
    pub(crate) async fn push(&self, kind: Commit, label: &str) -> Res<Pushed> {
        let work = &self.work;
        work.remove("www")?;
        if kind != Commit::Bad {
            work.write(
                "www/index.html",
                &format!(
                    "<!doctype html>\n<title>ferry e2e app</title>\n<p>hello from the ferry e2e app, {label}</p>\n"
                ),
            )?;
        }
        if kind != Commit::Unverifiable {
            work.write("www/verify.html", &format!("verified: {label}\n"))?;
        }
        let word = kind.word();
        work.write(
            "README",
            &format!("{word} commit {label} of scenario {}\n", self.s.name),
        )?;
        let sha = work.commit(&format!("{word}: {label}")).await?;
        let release = format!("{APP}-0.0.0-{}", &sha[..7]);
        let (at, pushed) = (Instant::now(), jiff::Timestamp::now());
        work.push(&self.url, &["main"]).await?;
        self.s.say(format!(
            "pushed the {word} commit {} ({label}) to {}: Release {release} to come",
            &sha[..7],
            self.url
        ));
        Ok(Pushed {
            release,
            sha,
            at,
            pushed,
        })
    }

    /// Waits until the pushed commit's Release exists; gives up once its BuildJob failed.
    async fn built(&self, pushed: &Pushed) -> Res {
        let build = format!("{APP}-{}", &pushed.sha[..7]);
        let what = format!("Release {} to be built", pushed.release);
        let outcome = self
            .s
            .poll(&what, secs(240), secs(1), || async {
                if self.s.get::<Release>(&pushed.release).await?.is_some() {
                    return Ok(Some(Ok(())));
                }
                let job = self.s.get::<BuildJob>(&build).await?;
                let status = job.and_then(|j| j.status);
                match status {
                    Some(st) if st.phase == Some(BuildPhase::Failed) => Ok(Some(Err(format!(
                        "BuildJob {build} failed: {}",
                        line(&st.failure)
                    )))),
                    _ => Ok(None),
                }
            })
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(why) => fail!("gave up waiting for {what}: it cannot happen any more: {why}"),
        }
    }

    /// Waits (a watch on the Application) until `judge` finds it done.
    async fn until<T: Send + 'static>(
        &self,
        what: &str,
        timeout: u64,
        judge: impl Fn(&Application) -> Judged<T> + Send + Sync + 'static,
    ) -> Res<T> {
        self.s
            .until::<Application, _>(APP, what, secs(timeout), judge)
            .await
    }

    /// `env` to be `want` with `release`.
    async fn is(&self, name: &str, want: Phase, release: &str, timeout: u64) -> Res {
        let (name_, release_) = (name.to_owned(), release.to_owned());
        self.until(
            &format!("{name} to be {want:?} with {release}"),
            timeout,
            move |app| is(env(app, &name_), want, &release_),
        )
        .await
    }

    /// `env` to be `want` (Healthy, or Pinned in a pinned environment) with `release`,
    /// healthy and verified.
    pub(crate) async fn verified(
        &self,
        name: &str,
        release: &str,
        want: Phase,
        timeout: u64,
    ) -> Res {
        let (name_, release_) = (name.to_owned(), release.to_owned());
        self.until(
            &format!("{name} to be {want:?} with {release}, healthy and verified"),
            timeout,
            move |app| verified(env(app, &name_), want, &release_),
        )
        .await
    }

    /// prod to be AwaitingApproval with `release` as its candidate.
    pub(crate) async fn awaiting_approval(&self, release: &str, timeout: u64) -> Res {
        let release_ = release.to_owned();
        self.until(
            &format!("prod to be AwaitingApproval with {release} as candidate"),
            timeout,
            move |app| {
                if awaiting_approval(env(app, "prod"), &release_) {
                    Judged::Done(())
                } else {
                    Judged::Wait
                }
            },
        )
        .await
    }

    /// Pins prod to `release`, which it must be awaiting, with a change ticket.
    pub(crate) async fn approve(&self, release: &str) -> Res {
        self.awaiting_approval(release, 120).await?;
        let ticket = release.rsplit('-').next().unwrap_or(release);
        let reason = format!("CHG-{ticket} approved by the change board");
        self.application(Some((release, &reason)), None).await
    }

    pub(crate) async fn app(&self) -> Res<Application> {
        Ok(self
            .s
            .get::<Application>(APP)
            .await?
            .ok_or_else(|| format!("no Application {APP}"))?)
    }

    /// The Application's status entry for `name`, now.
    async fn state(&self, name: &str) -> Res<EnvironmentState> {
        Ok(env(&self.app().await?, name).clone())
    }

    async fn show(&self, name: &str) -> Res {
        self.s.say(show(&self.state(name).await?));
        Ok(())
    }

    async fn show_history(&self, name: &str) -> Res {
        self.s.say(show_history(&self.state(name).await?));
        Ok(())
    }

    /// Fails if `name`'s status names `release` anywhere.
    async fn no_mention(&self, name: &str, release: &str) -> Res {
        if let Some(named) = mention(&self.state(name).await?, release) {
            fail!("{named}");
        }
        Ok(())
    }

    pub(crate) async fn summary(&self) -> Res<String> {
        Ok(self
            .app()
            .await?
            .status
            .and_then(|s| s.summary)
            .unwrap_or_default())
    }

    async fn release(&self, release: &str) -> Res<Release> {
        Ok(self
            .s
            .get::<Release>(release)
            .await?
            .ok_or_else(|| format!("no Release {release}"))?)
    }

    /// The Release's status entry for environment `name`, if it has one.
    async fn release_env(&self, release: &str, name: &str) -> Res<Option<ReleaseEnvironment>> {
        Ok(self
            .release(release)
            .await?
            .status
            .and_then(|s| s.environments.into_iter().find(|e| e.name == name)))
    }

    /// The Release's state in environment `name`, or `None`.
    async fn release_state(&self, release: &str, name: &str) -> Res<Option<ReleaseState>> {
        Ok(self.release_env(release, name).await?.map(|e| e.state))
    }

    /// prod's history has a `kind` of `release` with `reason`, pinned by `by` (the user the
    /// API server authenticated) and the outcome Succeeded; returns that entry.
    async fn pin_recorded(
        &self,
        kind: HistoryKind,
        release: &str,
        reason: &str,
        by: &str,
    ) -> Res<HistoryEntry> {
        let prod = self.state("prod").await?;
        let Some(entry) = history_entry(&prod, release, kind) else {
            fail!("prod's history has no {kind:?} of {release}");
        };
        let text = line(entry);
        ensure!(
            entry.reason == reason,
            "the {kind:?}'s reason is not \"{reason}\": {text}"
        );
        ensure!(
            entry.actor.as_deref() == Some(by),
            "the {kind:?} does not name {by} as its actor: {text}"
        );
        ensure!(
            entry.outcome == Outcome::Succeeded,
            "the {kind:?}'s outcome is not Succeeded: {text}"
        );
        self.s.say(format!("prod's history entry: {text}"));
        Ok(entry.clone())
    }

    /// The Application's Events carry each of `reasons`.
    async fn events_include(&self, reasons: &[&str]) -> Res {
        let events = self.s.api::<Event>().list(&ListParams::default()).await?;
        let seen: BTreeSet<String> = events
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Application") && r.name.as_deref() == Some(APP)
                })
            })
            .filter_map(|e| e.reason)
            .collect();
        self.s.say(format!(
            "Event reasons on Application {APP}: {}",
            seen.iter().cloned().collect::<Vec<_>>().join(" ")
        ));
        for reason in reasons {
            ensure!(
                seen.contains(*reason),
                "no Event with reason {reason} on Application {APP}"
            );
        }
        Ok(())
    }

    /// The body of `path` through environment `name`'s Service (from the node's network
    /// namespace); fails unless it answers 2xx.
    async fn answers(&self, name: &str, path: &str) -> Res<String> {
        let service = format!("{APP}-{name}");
        let ip = self
            .s
            .get::<Service>(&service)
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.cluster_ip)
            .ok_or_else(|| format!("no Service {service}"))?;
        let url = format!("http://{ip}:8080{path}");
        let answer = in_netns(&self.s.cluster.netns, secs(3), move |client| async move {
            let response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("GET {url}: {status}"))
            }
        })
        .await?;
        Ok(answer?)
    }

    /// Fails unless prod's Service serves the verify.html of commit `label`.
    async fn prod_serves(&self, label: &str) -> Res {
        let body = self.answers("prod", "/verify.html").await?;
        ensure!(
            body.contains(&format!("verified: {label}")),
            "prod's Service does not serve {label}'s verify.html: {}",
            body.trim()
        );
        Ok(())
    }
}

/// Applies dev → staging (Automatic) → prod (Manual): the example pipeline's shape with short
/// deadlines; staging's verification is a test pod, prod's an HTTP GET. Waits until they are
/// Ready.
/// dev, staging and prod, dev with `dev_window` and the first deadline, the others with the
/// second.
async fn environments(s: &Scenario, dev_window: &str, deadlines: (&str, &str)) -> Res {
    let (dev_deadline, deadline) = deadlines;
    let busybox = format!("{}/busybox:1.35", s.cluster.registry);
    let documents = [
        format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {{name: dev}}
spec:
  health: {{progressDeadline: {dev_deadline}, stabilizationWindow: {dev_window}}}
"#
        ),
        format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {{name: staging}}
spec:
  upstream: dev
  approval: Automatic
  strategy: {{type: BlueGreen}}
  health: {{progressDeadline: {deadline}, stabilizationWindow: {STABILIZATION_WINDOW}}}
  verification:
    image: "{busybox}"
    command: [sh, -c, 'wget -q -O- "$SERVICE_URL/verify.html"']
    timeout: 30s
"#
        ),
        format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {{name: prod}}
spec:
  upstream: staging
  approval: Manual
  strategy: {{type: BlueGreen}}
  health: {{progressDeadline: {deadline}, stabilizationWindow: {STABILIZATION_WINDOW}}}
  rollback: {{automatic: true}}
  verification:
    httpGets: [{{path: /verify.html}}]
    timeout: 30s
"#
        ),
    ];
    let mut names = Vec::new();
    for document in &documents {
        let environment: Environment = serde_yaml::from_str(document)?;
        s.apply(&environment).await?;
        names.push(environment.name_any());
    }
    for name in names {
        s.until_environment_ready(&name).await?;
    }
    s.say(format!(
        "applied Environments dev (progressDeadline {dev_deadline}, stabilizationWindow {dev_window}) → staging (Automatic, test pod) → prod (Manual, HTTP GET)"
    ));
    Ok(())
}

/// pat may edit Applications in the namespace; rita may too, and holds ferry-approver there.
async fn people(s: &Scenario) -> Res {
    let role: Role = serde_yaml::from_str(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: application-editor}
rules: [{apiGroups: [ferry.dev], resources: [applications], verbs: [get, list, watch, create, patch, update]}]",
    )?;
    let editors: RoleBinding = serde_yaml::from_str(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: application-editors}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: application-editor}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: pat}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: rita}",
    )?;
    let approvers: RoleBinding = serde_yaml::from_str(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ferry-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: rita}]",
    )?;
    s.apply(&role).await?;
    s.apply(&editors).await?;
    s.apply(&approvers).await?;
    Ok(())
}

/// When the controller pod `pod`'s container started (its last start), if it runs.
async fn container_started(s: &Scenario, pod: &str) -> Res<Option<jiff::Timestamp>> {
    let pods: Api<Pod> = Api::namespaced(s.client(), &s.cluster.system);
    Ok(pods
        .get_opt(pod)
        .await?
        .and_then(|p| p.status)
        .and_then(|st| st.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|st| st.running)
        .and_then(|r| r.started_at)
        .map(|t| t.0))
}

/// Fails unless the metrics' series `name{labels}` is at least 1.
fn at_least_one(s: &Scenario, metrics: &str, name: &str, labels: &str) -> Res {
    let series = format!("{name}{{{labels}}}");
    let value = series_value(metrics, &series);
    match value {
        Some(v) if v >= 1.0 => {
            s.say(format!("metric {series} = {v}"));
            Ok(())
        }
        Some(v) => fail!("metric {series} is {v}, expected at least 1"),
        None => fail!("metric {series} is absent, expected at least 1"),
    }
}

fn series_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(series))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// The histogram's mean, its sum over its count, with one decimal; "none" without a count.
fn mean(metrics: &str, histogram: &str, labels: &str) -> String {
    let sum = series_value(metrics, &format!("{histogram}_sum{{{labels}}}"));
    let count = series_value(metrics, &format!("{histogram}_count{{{labels}}}"));
    match (sum, count) {
        (Some(sum), Some(n)) if n > 0.0 => format!("{:.1}", sum / n),
        _ => "none".into(),
    }
}

// --- the scenarios --------------------------------------------------------------------------

async fn pipeline(s: Arc<Scenario>) -> Res {
    let p = Pipeline::setup(s, STABILIZATION_WINDOW, PROGRESS_DEADLINE).await?;
    let v1 = p.push(Commit::Good, "v1").await?;
    let r1 = v1.release.as_str();
    // Watched, not polled: these are the measured figures.
    p.is("dev", Phase::Healthy, r1, 120).await?;
    let dev_at = v1.at.elapsed().as_secs_f64();
    p.s.measured("commit pushed → Healthy in dev", two(dev_at), "s");
    if dev_at >= 20.0 {
        p.s.note(format!(
            "issue 13 targets commit → Healthy in dev under 20 s; it took {} s",
            two(dev_at)
        ));
    }
    p.verified("staging", r1, Phase::Healthy, 120).await?;
    p.awaiting_approval(r1, 120).await?;
    p.s.measured(
        "commit pushed → AwaitingApproval in prod",
        two(v1.at.elapsed().as_secs_f64()),
        "s",
    );
    let app = p.app().await?;
    let (dev, staging, prod) = (env(&app, "dev"), env(&app, "staging"), env(&app, "prod"));
    for state in [dev, staging, prod] {
        p.s.say(show(state));
    }
    let kind = dev.rollout.as_ref().map(|r| r.kind);
    ensure!(
        kind == Some(HistoryKind::Rollout),
        "dev's rollout is a {kind:?}, not a Rollout"
    );
    let promoted = staging
        .history
        .iter()
        .find(|h| h.release == r1)
        .map(|h| h.kind);
    ensure!(
        promoted == Some(HistoryKind::Promotion),
        "staging's history does not record a Promotion of {r1}: {}",
        show_history(staging)
    );
    let verification = staging
        .rollout
        .as_ref()
        .and_then(|r| r.verification.clone());
    p.s.say(format!(
        "staging's verification: {}",
        line(&verification.map(|mut v| {
            v.log = None;
            v
        }))
    ));
    let condition = prod
        .conditions
        .iter()
        .find(|c| c.type_ == "AwaitingApproval")
        .ok_or("prod has no AwaitingApproval condition")?;
    p.s.say(format!(
        "prod's AwaitingApproval condition: {}",
        line(condition)
    ));
    ensure!(
        condition.reason == "AwaitingApproval",
        "the condition's reason is {}, not AwaitingApproval",
        condition.reason
    );
    let summary = app
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .unwrap_or_default();
    p.s.say(format!("Application summary: {summary}"));
    let waiting = format!("AwaitingApproval({})", short(r1));
    ensure!(
        summary
            .split(", ")
            .any(|part| part.starts_with("prod=") && part.contains(&waiting)),
        "the summary does not show prod {waiting}"
    );
    let in_staging = p.release_state(r1, "staging").await?;
    ensure!(
        in_staging == Some(ReleaseState::Deployed),
        "Release {r1} is {in_staging:?} in staging, not Deployed"
    );
    let in_prod = p.release_state(r1, "prod").await?;
    ensure!(
        in_prod == Some(ReleaseState::AwaitingApproval),
        "Release {r1} is {in_prod:?} in prod, not AwaitingApproval"
    );
    let release = p.release(r1).await?;
    p.s.say(format!(
        "Release {r1} summary: {}",
        release.status.and_then(|s| s.summary).unwrap_or_default()
    ));

    // It stays so: a Manual environment does not take the candidate by itself.
    tokio::time::sleep(secs(10)).await;
    let prod = p.state("prod").await?;
    ensure!(
        awaiting_approval(&prod, r1),
        "10 s later prod is no longer AwaitingApproval with {r1}: {}",
        show(&prod)
    );
    ensure!(
        prod.current.is_none(),
        "prod runs {:?} without an approval",
        prod.current
    );
    let workloads =
        p.s.api::<Deployment>()
            .list(&ListParams::default().labels("ferry.dev/environment=prod"))
            .await?;
    ensure!(
        workloads.items.is_empty(),
        "prod has workloads without an approval: {:?}",
        workloads
            .items
            .iter()
            .map(|d| d.name_any())
            .collect::<Vec<_>>()
    );
    p.s.say(format!(
        "10 s later prod still awaits approval of {r1} and runs nothing"
    ));

    // Who may approve: pat may edit the Application but not approve, so the API server refuses
    // pat's pin (the ferry-approve policy of manifests/ferry.yaml) and prod stays as it was;
    // rita holds the ferry-approver ClusterRole in the namespace.
    let reason = "CHG-1234 approved by the change board";
    people(&p.s).await?;
    let refusal = match p.application(Some((r1, reason)), Some("pat")).await {
        Ok(()) => fail!("pat, who may not approve, pinned prod"),
        Err(e) => e.to_string(),
    };
    ensure!(
        refusal.contains("pat may not change the pin of prod:"),
        "pat's pin failed otherwise: {refusal}"
    );
    p.s.say(format!(
        "pat's pin refused by the API server: {}",
        refusal
            .rsplit("denied request: ")
            .next()
            .unwrap_or(&refusal)
    ));
    let pinned = p
        .app()
        .await?
        .spec
        .environments
        .iter()
        .find(|e| e.name == "prod")
        .and_then(|e| e.pin.clone());
    ensure!(
        pinned.is_none(),
        "pat's refused pin is in the Application: {pinned:?}"
    );

    // The approval: a pin of the candidate, with a reason, as a GitOps commit would apply it.
    p.application(Some((r1, reason)), Some("rita")).await?;
    let pinned_at = Instant::now();
    p.verified("prod", r1, Phase::Pinned, 120).await?;
    p.s.measured(
        "approval applied → Healthy and verified in prod",
        two(pinned_at.elapsed().as_secs_f64()),
        "s",
    );
    p.show("prod").await?;
    p.show_history("prod").await?;
    p.pin_recorded(HistoryKind::Approval, r1, reason, "rita")
        .await?;
    p.prod_serves("v1").await?;
    let index = p.answers("prod", "/index.html").await?;
    p.s.say(format!(
        "Service {APP}-prod serves: {}",
        index
            .lines()
            .find_map(|l| l.find("hello").map(|at| &l[at..]))
            .unwrap_or("")
    ));

    // Where the Release runs, at a glance.
    for name in ["dev", "staging", "prod"] {
        let entry = p.release_env(r1, name).await?;
        ensure!(
            entry.as_ref().map(|e| e.state) == Some(ReleaseState::Deployed),
            "Release {r1} is not Deployed in {name}: {}",
            line(&entry)
        );
    }
    for name in ["staging", "prod"] {
        let entry = p.release_env(r1, name).await?;
        let passed = entry
            .as_ref()
            .and_then(|e| e.verification.as_ref())
            .and_then(|v| v.passed);
        ensure!(
            passed == Some(true),
            "Release {r1}'s verification in {name} did not pass: {}",
            line(&entry)
        );
    }
    let status = p.release(r1).await?.status.unwrap_or_default();
    let summary = status.summary.clone().unwrap_or_default();
    p.s.say(format!(
        "Release {r1}: {summary}; {}",
        line(&status.environments)
    ));
    ensure!(
        summary == "dev=Deployed staging=Deployed prod=Deployed",
        "Release {r1}'s summary is not dev=Deployed staging=Deployed prod=Deployed"
    );
    p.s.say(format!("Application {APP}: {}", p.summary().await?));
    p.events_include(&[
        "RolloutStarted",
        "RolloutSucceeded",
        "Promoted",
        "AwaitingApproval",
        "Approved",
        "Verifying",
        "VerificationPassed",
    ])
    .await?;

    // The controller's metrics count what just happened (the other scenarios ran before, so at
    // least this one's), unless the controller restarted since the push: its counters then
    // start from its start (another suite's scenarios kill the controller on a shared cluster).
    let cluster = &p.s.cluster;
    let pod = cluster.controller_pod().await?;
    let started = container_started(&p.s, &pod).await?;
    let metrics = cluster.metrics().await?;
    let serving = cluster.controller_pod().await?;
    let restarted = serving != pod || started.is_none_or(|t| t > v1.pushed);
    if restarted {
        p.s.note(format!(
            "the controller ({serving}, started {started:?}) restarted after the push: its counters do not cover this scenario; the metric checks are skipped"
        ));
        p.s.measured(
            "mean lead time, commit seen → healthy and verified in prod (ferry_lead_time_seconds)",
            mean(&metrics, "ferry_lead_time_seconds", r#"environment="prod""#),
            "s",
        );
        return Ok(());
    }
    at_least_one(
        &p.s,
        &metrics,
        "ferry_promotions_total",
        r#"environment="staging",kind="Promotion""#,
    )?;
    at_least_one(
        &p.s,
        &metrics,
        "ferry_promotions_total",
        r#"environment="prod",kind="Approval""#,
    )?;
    at_least_one(
        &p.s,
        &metrics,
        "ferry_release_to_healthy_seconds_count",
        r#"environment="dev""#,
    )?;
    at_least_one(
        &p.s,
        &metrics,
        "ferry_lead_time_seconds_count",
        r#"environment="prod""#,
    )?;
    p.s.measured(
        "mean lead time, commit seen → healthy and verified in prod (ferry_lead_time_seconds)",
        mean(&metrics, "ferry_lead_time_seconds", r#"environment="prod""#),
        "s",
    );
    Ok(())
}

async fn bad_commit(s: Arc<Scenario>) -> Res {
    let p = Pipeline::setup(s, STABILIZATION_WINDOW, PROGRESS_DEADLINE).await?;
    let r1 = p.push(Commit::Good, "v1").await?.release;
    p.verified("staging", &r1, Phase::Healthy, 180).await?;
    let v2 = p.push(Commit::Bad, "v2").await?;
    let r2 = v2.release.clone();
    p.built(&v2).await?;
    // Rolled back in dev at the progress deadline; staging never hears of it.
    let (r1_, r2_) = (r1.clone(), r2.clone());
    p.until(
        &format!("dev to be RolledBack to {r1}"),
        120,
        move |app| match mention(env(app, "staging"), &r2_) {
            Some(named) => Judged::Never(named),
            None => is(env(app, "dev"), Phase::RolledBack, &r1_),
        },
    )
    .await?;
    let dev = p.state("dev").await?;
    p.s.say(show(&dev));
    p.s.say(show_history(&dev));
    ensure!(
        dev.rejected.contains(&r2),
        "dev's rejected does not name {r2}: {:?}",
        dev.rejected
    );
    let in_dev = p.release_env(&r2, "dev").await?;
    p.s.say(format!("Release {r2} in dev: {}", line(&in_dev)));
    let in_dev = in_dev.ok_or_else(|| format!("Release {r2} says nothing of dev"))?;
    ensure!(
        in_dev.state == ReleaseState::Rejected,
        "Release {r2} is {:?} in dev, not Rejected",
        in_dev.state
    );
    ensure!(
        in_dev.reason.as_deref().is_some_and(|r| !r.is_empty())
            || in_dev.verdict.as_deref().is_some_and(|v| !v.is_empty()),
        "Release {r2}'s status in dev says no reason"
    );
    let in_staging = p.release_state(&r2, "staging").await?;
    ensure!(
        in_staging != Some(ReleaseState::Deployed),
        "Release {r2} says it is Deployed in staging"
    );
    // The next good commit flows on.
    let r3 = p.push(Commit::Good, "v3").await?.release;
    p.verified("staging", &r3, Phase::Healthy, 180).await?;
    p.no_mention("staging", &r2).await?;
    p.no_mention("prod", &r2).await?;
    p.show_history("staging").await?;
    p.awaiting_approval(&r3, 60).await?;
    p.s.say(format!(
        "staging never named {r2}; it runs {r3}; prod awaits approval of {r3}"
    ));
    p.events_include(&["RolledBack", "Promoted"]).await
}

async fn verification_fails(s: Arc<Scenario>) -> Res {
    let p = Pipeline::setup(s, STABILIZATION_WINDOW, PROGRESS_DEADLINE).await?;
    let r1 = p.push(Commit::Good, "v1").await?.release;
    p.verified("staging", &r1, Phase::Healthy, 180).await?;
    let r2 = p.push(Commit::Unverifiable, "v2").await?.release;
    p.is("dev", Phase::Healthy, &r2, 120).await?;
    // staging's verification fails: keep its log, seen while the failed rollout is the current
    // one (a rollback then becomes the current rollout).
    let log = Arc::new(Mutex::new(String::new()));
    let (r1_, r2_, log_) = (r1.clone(), r2.clone(), Arc::clone(&log));
    p.until(
        &format!("staging to fail {r2}'s verification and roll back to {r1}"),
        120,
        move |app| {
            let staging = env(app, "staging");
            let failed = staging
                .rollout
                .as_ref()
                .filter(|r| r.release == r2_)
                .and_then(|r| r.verification.as_ref().filter(|v| v.passed == Some(false)));
            if let Some(verification) = failed
                && let Ok(mut log) = log_.lock()
            {
                *log = verification.log.clone().unwrap_or_default();
            }
            if let Some(named) = mention(env(app, "prod"), &r2_) {
                return Judged::Never(named);
            }
            if staging.phase == Some(Phase::RolledBack)
                && staging.current.as_deref() == Some(r1_.as_str())
            {
                Judged::Done(())
            } else {
                Judged::Wait
            }
        },
    )
    .await?;
    let staging = p.state("staging").await?;
    p.s.say(show(&staging));
    p.s.say(show_history(&staging));
    let rollout = staging.rollout.as_ref();
    let verdict = rollout.and_then(|r| r.cause.as_ref().or(r.verdict.as_ref()));
    let reason = verdict.map(|v| v.reason.as_str());
    ensure!(
        reason == Some("VerificationFailed"),
        "staging's failed verdict has reason {reason:?}, not VerificationFailed"
    );
    ensure!(
        staging.rejected.contains(&r2),
        "staging's rejected does not name {r2}: {:?}",
        staging.rejected
    );
    // The log tail of the test pod: kept by the failed verdict, which is the cause of the
    // rollback (or in the failed rollout's verification, if it was seen while current).
    let mut tail = log.lock().map(|l| l.clone()).unwrap_or_default();
    if tail.is_empty() {
        tail = rollout
            .and_then(|r| {
                r.cause
                    .as_ref()
                    .and_then(|c| c.log.clone())
                    .or_else(|| r.verification.as_ref().and_then(|v| v.log.clone()))
            })
            .unwrap_or_default();
    }
    p.s.say(format!(
        "the test pod's log tail: {}",
        tail.lines().collect::<Vec<_>>().join("|")
    ));
    let lower = tail.to_lowercase();
    ensure!(
        ["404", "not found", "server returned error"]
            .iter()
            .any(|w| lower.contains(w)),
        "the verification log does not show the failed GET of verify.html"
    );
    let in_dev = p.release_env(&r2, "dev").await?;
    let in_staging = p.release_env(&r2, "staging").await?;
    p.s.say(format!(
        "Release {r2} in dev: {}; in staging: {}",
        line(&in_dev),
        line(&in_staging)
    ));
    ensure!(
        in_dev.as_ref().map(|e| e.state) == Some(ReleaseState::Deployed),
        "Release {r2} is not Deployed in dev"
    );
    ensure!(
        in_staging.as_ref().map(|e| e.state) == Some(ReleaseState::Rejected),
        "Release {r2} is not Rejected in staging"
    );
    let verification = in_staging.as_ref().and_then(|e| e.verification.as_ref());
    ensure!(
        verification.and_then(|v| v.passed) == Some(false),
        "Release {r2}'s verification in staging is not recorded as failed"
    );
    ensure!(
        verification
            .and_then(|v| v.message.as_deref())
            .is_some_and(|m| !m.is_empty()),
        "Release {r2}'s failed verification in staging has no message"
    );
    // Never prod's candidate: prod keeps waiting for r1.
    tokio::time::sleep(secs(5)).await;
    let prod = p.state("prod").await?;
    ensure!(
        awaiting_approval(&prod, &r1),
        "prod is not AwaitingApproval with {r1}: {}",
        show(&prod)
    );
    p.no_mention("prod", &r2).await?;
    p.s.say(format!(
        "prod still awaits approval of {r1} and never named {r2}"
    ));
    p.events_include(&["VerificationFailed", "VerificationPassed", "RolledBack"])
        .await
}

async fn manual_rollback(s: Arc<Scenario>) -> Res {
    let p = Pipeline::setup(s, STABILIZATION_WINDOW, PROGRESS_DEADLINE).await?;
    let r1 = p.push(Commit::Good, "v1").await?.release;
    p.approve(&r1).await?;
    p.verified("prod", &r1, Phase::Pinned, 120).await?;
    let r2 = p.push(Commit::Good, "v2").await?.release;
    p.verified("staging", &r2, Phase::Healthy, 180).await?;
    // Pinned to r1, prod takes nothing by itself; replacing the pin approves r2.
    tokio::time::sleep(secs(3)).await;
    let prod = p.state("prod").await?;
    p.s.say(format!("prod while pinned to {r1}: {}", show(&prod)));
    ensure!(
        prod.current.as_deref() == Some(r1.as_str()),
        "prod runs {:?} while pinned to {r1}",
        prod.current
    );
    p.application(Some((&r2, "CHG-2 approved by the change board")), None)
        .await?;
    p.verified("prod", &r2, Phase::Pinned, 120).await?;
    let prod = p.state("prod").await?;
    let kind = prod
        .history
        .iter()
        .find(|h| h.release == r2)
        .map(|h| h.kind);
    p.s.say(format!(
        "prod's history records the pin of {r2} as {kind:?}"
    ));
    if kind != Some(HistoryKind::Approval) {
        p.s.note(format!(
            "{r2} was staging's newest verified release, yet its pin is recorded as {kind:?}, not Approval"
        ));
    }

    // The manual rollback.
    let reason = "INC-77 rollback";
    p.application(Some((&r1, reason)), None).await?;
    let pinned_at = Instant::now();
    p.verified("prod", &r1, Phase::Pinned, 120).await?;
    p.s.measured(
        "rollback pin applied → Healthy and verified in prod",
        two(pinned_at.elapsed().as_secs_f64()),
        "s",
    );
    p.show("prod").await?;
    p.show_history("prod").await?;
    let me = p.s.cluster.whoami().await?;
    let entry = p
        .pin_recorded(HistoryKind::ManualRollback, &r1, reason, &me)
        .await?;
    ensure!(
        entry.from.as_deref() == Some(r2.as_str()),
        "the ManualRollback is from {:?}, not {r2}",
        entry.from
    );
    p.prod_serves("v1").await?;

    // The pin removed: prod follows staging again, and waits for approval of staging's release.
    p.application(None, None).await?;
    p.awaiting_approval(&r2, 60).await?;
    p.show("prod").await?;
    tokio::time::sleep(secs(8)).await;
    let prod = p.state("prod").await?;
    ensure!(
        awaiting_approval(&prod, &r2),
        "8 s later prod is no longer AwaitingApproval with {r2}: {}",
        show(&prod)
    );
    ensure!(
        prod.current.as_deref() == Some(r1.as_str()),
        "prod runs {:?} without an approval, not {r1}",
        prod.current
    );
    p.prod_serves("v1").await?;
    p.s.say(format!("summary: {}", p.summary().await?));
    p.events_include(&["Approved", "ManualRollback", "AwaitingApproval"])
        .await?;
    restore_from_export(&p).await
}

/// Each environment's finished history entries, once every one is linked to its
/// DeliveryRecord.
fn recorded_histories(app: &Application) -> Judged<Vec<(String, Vec<HistoryEntry>)>> {
    let states = app.status.clone().unwrap_or_default().environments;
    let finished = |e: &EnvironmentState| -> Vec<HistoryEntry> {
        e.history
            .iter()
            .filter(|h| h.outcome != Outcome::InProgress)
            .cloned()
            .collect()
    };
    if states
        .iter()
        .flat_map(&finished)
        .any(|h| h.record.is_none())
    {
        return Judged::Wait;
    }
    Judged::Done(
        states
            .iter()
            .map(|e| (e.name.clone(), finished(e)))
            .collect(),
    )
}

/// `metadata` as an export for re-applying keeps it: name, labels and annotations.
fn exported(metadata: &kube::api::ObjectMeta) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: metadata.name.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        ..Default::default()
    }
}

/// Durable history: the namespace's Ferry objects exported, the namespace deleted and made
/// again, the export applied; every environment's history comes back from the DeliveryRecords.
async fn restore_from_export(p: &Pipeline) -> Res {
    let s = &p.s;
    let before = s
        .until::<Application, _>(
            APP,
            "every finished history entry linked to its DeliveryRecord",
            secs(30),
            recorded_histories,
        )
        .await?;
    let entries: usize = before.iter().map(|(_, h)| h.len()).sum();
    let app = p.app().await?;
    let records = s
        .api::<DeliveryRecord>()
        .list(&ListParams::default())
        .await?;
    let environments = s.api::<Environment>().list(&ListParams::default()).await?;
    let hook = s
        .get::<Secret>("web-webhook")
        .await?
        .ok_or("the webhook Secret is gone")?;
    s.say(format!(
        "exported Application {APP} (without its status), {} Environments, {} DeliveryRecords \
         and the webhook Secret; {entries} finished history entries: {}",
        environments.items.len(),
        records.items.len(),
        before
            .iter()
            .map(|(env, h)| format!("{env} {}", h.len()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ensure!(
        records.items.len() >= entries,
        "{} DeliveryRecords for {entries} finished entries",
        records.items.len()
    );

    let deleting = Instant::now();
    s.create_namespace().await?;
    s.say(format!(
        "namespace {} deleted and made again in {:.1} s",
        s.ns,
        deleting.elapsed().as_secs_f64()
    ));
    ensure!(
        s.api::<DeliveryRecord>()
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "DeliveryRecords outlived their namespace"
    );
    for record in &records.items {
        s.apply(&DeliveryRecord {
            metadata: exported(&record.metadata),
            spec: record.spec.clone(),
        })
        .await?;
    }
    s.apply(&Secret {
        metadata: exported(&hook.metadata),
        data: hook.data.clone(),
        ..Default::default()
    })
    .await?;
    for environment in &environments.items {
        s.apply(&Environment {
            metadata: exported(&environment.metadata),
            spec: environment.spec.clone(),
            status: None,
        })
        .await?;
    }
    let applied = Instant::now();
    s.apply(&Application {
        metadata: exported(&app.metadata),
        spec: app.spec.clone(),
        status: None,
    })
    .await?;

    let wanted = before.clone();
    let restored = s
        .until::<Application, _>(
            APP,
            "every environment's history back from the DeliveryRecords",
            secs(60),
            move |a| {
                let states = a.status.clone().unwrap_or_default().environments;
                let back = wanted.iter().all(|(env, entries)| {
                    states.iter().find(|e| &e.name == env).is_some_and(|state| {
                        entries.iter().all(|entry| state.history.contains(entry))
                    })
                });
                if back {
                    Judged::Done(states)
                } else {
                    Judged::Wait
                }
            },
        )
        .await?;
    let back: usize = before
        .iter()
        .map(|(env, entries)| {
            let state = restored.iter().find(|e| &e.name == env);
            entries
                .iter()
                .filter(|entry| state.is_some_and(|st| st.history.contains(entry)))
                .count()
        })
        .sum();
    s.measured(
        "history entries restored from DeliveryRecords",
        format!("{back} of {entries}"),
        "entries",
    );
    s.measured(
        "export applied → history restored",
        two(applied.elapsed().as_secs_f64()),
        "s",
    );
    for state in &restored {
        s.say(format!(
            "{} after the restore: {}",
            state.name,
            show_history(state)
        ));
    }
    Ok(())
}

/// spec.run with a variable the app ignores: a harmless change of configuration.
const GREETING_RUN: &str = "{replicas: 1, ports: [{name: http, port: 8080}], \
     env: [{name: GREETING, value: hello}], \
     readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1, failureThreshold: 1}}";
/// spec.run whose readiness probe asks for a page the app does not have: never ready.
const BROKEN_RUN: &str = "{replicas: 1, ports: [{name: http, port: 8080}], \
     env: [{name: GREETING, value: hello}], \
     readinessProbe: {httpGet: {path: /missing.html, port: http}, periodSeconds: 1, failureThreshold: 1}}";

/// The image and the env of the Deployment of `env` that runs `release`.
async fn deployed(s: &Scenario, env: &str, release: &str) -> Res<(String, Vec<(String, String)>)> {
    let selector = format!("{}={env}", ferry::api::labels::ENVIRONMENT_LABEL);
    let deployments = s
        .api::<Deployment>()
        .list(&ListParams::default().labels(&selector))
        .await?;
    let deployment = deployments
        .items
        .into_iter()
        .find(|d| {
            d.annotations()
                .get(ferry::api::labels::RELEASE_ANNOTATION)
                .map(String::as_str)
                == Some(release)
        })
        .ok_or_else(|| format!("no Deployment of {env} runs {release}"))?;
    let container = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .ok_or("a Deployment without a container")?;
    let env = container
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    Ok((container.image.unwrap_or_default(), env))
}

/// A change of configuration only: no commit, a new Release of the same image that flows
/// dev -> staging -> (approved) prod like a commit; then one that breaks the app, rolled back
/// in dev and never promoted.
async fn config_change(s: Arc<Scenario>) -> Res {
    let p = Pipeline::setup(s, STABILIZATION_WINDOW, PROGRESS_DEADLINE).await?;
    let r1 = p.push(Commit::Good, "v1").await?.release;
    p.approve(&r1).await?;
    p.verified("prod", &r1, Phase::Pinned, 180).await?;
    let (image, _) = deployed(&p.s, "prod", &r1).await?;

    // An env var added, and prod's pin removed: prod waits for approval of what comes.
    let changed_at = Instant::now();
    let c1 = p.configure(GREETING_RUN, &r1, None).await?;
    p.verified("staging", &c1, Phase::Healthy, 120).await?;
    p.s.measured(
        "run configuration changed → Healthy and verified in staging",
        two(changed_at.elapsed().as_secs_f64()),
        "s",
    );
    p.awaiting_approval(&c1, 60).await?;
    let (_, vars) = deployed(&p.s, "prod", &r1).await?;
    ensure!(
        vars.iter().all(|(name, _)| name != "GREETING"),
        "prod, not approved yet, runs with the new configuration already: {vars:?}"
    );
    p.s.say(format!(
        "prod still runs {r1} as it fixes it, and awaits approval of {c1}"
    ));
    p.approve(&c1).await?;
    p.verified("prod", &c1, Phase::Pinned, 120).await?;
    let (prod_image, vars) = deployed(&p.s, "prod", &c1).await?;
    ensure!(
        prod_image == image,
        "prod runs {prod_image} with {c1}, not {r1}'s image {image}"
    );
    ensure!(
        vars.contains(&("GREETING".to_owned(), "hello".to_owned())),
        "prod runs {c1} without its configuration: {vars:?}"
    );
    p.s.say(format!("prod runs {c1}: {r1}'s image, with GREETING=hello"));
    p.prod_serves("v1").await?;

    // A configuration that breaks the app, prod still pinned to c1.
    let ticket = c1.rsplit('-').next().unwrap_or(&c1);
    let reason = format!("CHG-{ticket} approved by the change board");
    let c2 = p.configure(BROKEN_RUN, &c1, Some((&c1, &reason))).await?;
    let (c1_, c2_) = (c1.clone(), c2.clone());
    p.until(
        &format!("dev to be RolledBack to {c1}"),
        120,
        move |app| match mention(env(app, "staging"), &c2_) {
            Some(named) => Judged::Never(named),
            None => is(env(app, "dev"), Phase::RolledBack, &c1_),
        },
    )
    .await?;
    let dev = p.state("dev").await?;
    p.s.say(show(&dev));
    p.s.say(show_history(&dev));
    ensure!(
        dev.rejected.contains(&c2),
        "dev's rejected does not name {c2}: {:?}",
        dev.rejected
    );
    p.no_mention("staging", &c2).await?;
    p.no_mention("prod", &c2).await?;
    let (_, vars) = deployed(&p.s, "dev", &c1).await?;
    ensure!(
        vars.contains(&("GREETING".to_owned(), "hello".to_owned())),
        "dev was rolled back to {c1} without its configuration: {vars:?}"
    );
    p.s.say(format!(
        "{c2} (readiness on /missing.html) was rolled back in dev to {c1} and never reached staging or prod"
    ));
    p.events_include(&["Reconfigured", "RolledBack", "Approved"])
        .await
}

async fn superseded(s: Arc<Scenario>) -> Res {
    // A long window in dev, so the next commits arrive while the rollout before them runs (the
    // window may not be longer than the progress deadline).
    let p = Pipeline::setup(s, "25s", "40s").await?;
    let r1 = p.push(Commit::Good, "v1").await?.release;
    let rolling_out = |state: &EnvironmentState, release: &str| {
        state
            .rollout
            .as_ref()
            .is_some_and(|r| r.release == release && r.verdict.is_none())
    };
    let r1_ = r1.clone();
    p.until(&format!("dev to roll out {r1}"), 120, move |app| {
        if rolling_out(env(app, "dev"), &r1_) {
            Judged::Done(())
        } else {
            Judged::Wait
        }
    })
    .await?;
    let v2 = p.push(Commit::Good, "v2").await?;
    let r2 = v2.release.clone();
    p.built(&v2).await?;
    // Its candidate, or already rolling out if the rollout before it ended meanwhile.
    let r2_ = r2.clone();
    p.until(&format!("{r2} to be dev's candidate"), 30, move |app| {
        let dev = env(app, "dev");
        let waits = dev.candidate.as_deref() == Some(r2_.as_str())
            || dev.rollout.as_ref().is_some_and(|r| r.release == r2_);
        if waits {
            Judged::Done(())
        } else {
            Judged::Wait
        }
    })
    .await?;
    let v3 = p.push(Commit::Good, "v3").await?;
    let r3 = v3.release.clone();
    p.built(&v3).await?;
    let both_waiting = rolling_out(&p.state("dev").await?, &r1);
    if both_waiting {
        p.s.say(format!(
            "{r2} and {r3} are built while dev still rolls out {r1}"
        ));
    } else {
        p.s.note(format!(
            "the rollout of {r1} reached its verdict before {r3} was built: nothing to supersede in dev"
        ));
    }
    p.is("dev", Phase::Healthy, &r3, 120).await?;
    let dev = p.state("dev").await?;
    p.s.say(show_history(&dev));
    // No half rollout: r1's rollout reached its verdict before anything else began.
    let outcome = history_entry(&dev, &r1, HistoryKind::Rollout).map(|h| h.outcome);
    ensure!(
        outcome == Some(Outcome::Succeeded),
        "dev's rollout of {r1} did not succeed: {outcome:?}"
    );
    if both_waiting {
        let Some(entry) = history_entry(&dev, &r2, HistoryKind::Superseded) else {
            fail!("dev's history does not record {r2} as Superseded");
        };
        ensure!(
            entry.outcome == Outcome::Skipped,
            "the Superseded entry of {r2} has outcome {:?}",
            entry.outcome
        );
        ensure!(
            history_entry(&dev, &r2, HistoryKind::Rollout).is_none(),
            "dev rolled {r2} out although {r3} was waiting"
        );
        p.s.say(format!("dev skipped {r2} for {r3}: {}", line(entry)));
    }
    // In prod: a candidate that a newer one replaces before approval is recorded Superseded.
    p.awaiting_approval(&r3, 180).await?;
    let prod = p.state("prod").await?;
    p.s.say(show_history(&prod));
    let skipped: Vec<&str> = prod
        .history
        .iter()
        .filter(|h| h.kind == HistoryKind::Superseded)
        .map(|h| h.release.as_str())
        .collect();
    p.s.say(format!("prod's superseded candidates: {skipped:?}"));
    ensure!(
        !skipped.is_empty(),
        "prod's history records no Superseded candidate ({r1} was prod's candidate before {r3})"
    );
    ensure!(
        skipped.contains(&r1.as_str()),
        "prod's history does not record {r1} as Superseded"
    );
    p.events_include(&["Superseded"]).await
}
