//! The resilience tier: the promotion pipeline of `promotion.rs` (commits pushed, built, rolled
//! out in dev, promoted to staging and verified there, approved into prod) runs while faults
//! are injected at random moments, then the test checks what must hold whatever happened:
//!
//! - every commit pushed to the branch head has exactly one BuildJob and at most one Release;
//! - every Release's image is in the registry (by digest);
//! - every rollout, promotion and approval appears exactly once in its environment's history,
//!   and every finished entry has its DeliveryRecord;
//! - every environment ends in a state the rules reach (dev and staging Healthy with the newest
//!   release, prod Pinned with the last approved one), with no rollout left unjudged.
//!
//! It prints `measured: faults injected = N, invariants broken = 0`.
//!
//! The faults, in turn: the leader's pod deleted (gracefully, then with no grace period: the
//! kubelet kills it at once), a storm of signed pushes of the same commit to Ferry's webhook,
//! the git server frozen (SIGSTOP, then SIGCONT: every connection to it hangs), the API server
//! restarted (killed and started again with the same arguments) and the registry frozen while a
//! commit builds (its pull of the builder image or its publish). `FERRY_CHAOS_FAULTS` says how many (5 in `make test`, 20 in `make test-chaos`),
//! `FERRY_CHAOS_SEED` fixes the moments (the seed is printed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::api::application::{HistoryKind, Outcome, Phase};
use ferry::api::{Application, BuildJob, DeliveryRecord, Release};
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use sha2::Sha256;

use crate::builds::manifest_code;
use crate::case;
use crate::harness::{Cluster, Res, Scenario, Suite};
use crate::net::in_netns;
use crate::promotion::{APP, Commit, Pipeline, STABILIZATION_WINDOW};

pub fn suite() -> Suite {
    Suite {
        name: "chaos",
        before: None,
        parallel: vec![],
        // About a minute per fault, and a margin.
        alone: vec![case!("faults", faults, 600 + 90 * fault_count() as u64)],
    }
}

/// Every environment's progress deadline: a rollout started just before the API server goes
/// down for a few seconds, or a freeze, still proves itself within it.
const DEADLINE: &str = "60s";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The faults, in the order they are injected (then again from the start).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The Lease holder's pod deleted with its grace period (SIGTERM, a clean shutdown).
    KillLeader,
    /// The Lease holder's pod deleted with no grace period (killed at once).
    KillLeaderNow,
    /// Signed pushes of the commit just pushed, all at once, to Ferry's webhook.
    WebhookStorm,
    /// The git server frozen for a while.
    GitFrozen,
    /// The API server killed and started again.
    ApiServerRestart,
    /// The registry frozen while the commit just pushed builds and publishes.
    RegistryFrozen,
}

/// The faults injected after a push (mid-build, mid-rollout in dev, mid-promotion or
/// mid-verification in staging), in turn.
const AFTER_PUSH: [Fault; 5] = [
    Fault::KillLeader,
    Fault::WebhookStorm,
    Fault::ApiServerRestart,
    Fault::RegistryFrozen,
    Fault::KillLeaderNow,
];

/// The faults injected after an approval (mid-rollout, mid-stabilization or mid-verification
/// in prod), in turn: nothing builds then, so the git server can freeze without failing a
/// build's fetch.
const AFTER_APPROVAL: [Fault; 4] = [
    Fault::KillLeaderNow,
    Fault::GitFrozen,
    Fault::KillLeader,
    Fault::ApiServerRestart,
];

/// How long the short form (`make test`, fewer than 10 faults) and the long form freeze a
/// server, and how many pushes a storm sends.
struct Sizes {
    frozen: Duration,
    storm: usize,
}

fn sizes(faults: usize) -> Sizes {
    if faults < 10 {
        Sizes {
            frozen: secs(15),
            storm: 200,
        }
    } else {
        Sizes {
            frozen: secs(60),
            storm: 1000,
        }
    }
}

/// A small deterministic generator (xorshift64*): the moments of the faults, from a seed.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A delay between 0 and `most`.
    fn within(&mut self, most: Duration) -> Duration {
        let most = u64::try_from(most.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(self.next() % most)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many faults to inject: `FERRY_CHAOS_FAULTS`, 5 by default.
fn fault_count() -> usize {
    usize::try_from(env_number("FERRY_CHAOS_FAULTS", 5)).unwrap_or(5)
}

async fn faults(s: Arc<Scenario>) -> Res {
    let count = fault_count();
    let seed = env_number(
        "FERRY_CHAOS_SEED",
        jiff::Timestamp::now().as_nanosecond().unsigned_abs() as u64,
    )
    .max(1);
    let sizes = sizes(count);
    s.say(format!(
        "{count} faults, seed {seed} (FERRY_CHAOS_SEED={seed} repeats the moments)"
    ));
    let mut moments = Moments(seed);
    let p = Pipeline::setup_with_deadline(Arc::clone(&s), STABILIZATION_WINDOW, DEADLINE).await?;
    let mut pushed: Vec<String> = Vec::new();
    let mut approved: Vec<String> = Vec::new();
    let mut newest = String::new();
    let mut injected = 0;
    let mut round = 0;
    while injected < count {
        if round > 0 {
            // prod follows staging again, to await the next release's approval.
            p.application(None, None).await?;
        }
        let fault = AFTER_PUSH[round % AFTER_PUSH.len()];
        let after_approval = AFTER_APPROVAL[round % AFTER_APPROVAL.len()];
        round += 1;
        let commit = p.push(Commit::Good, &format!("round {round}")).await?;
        pushed.push(commit.sha.clone());
        newest = commit.release.clone();
        let most = match fault {
            // The build pod publishes within seconds of the push.
            Fault::RegistryFrozen => secs(3),
            _ => secs(14),
        };
        tokio::time::sleep(moments.within(most)).await;
        inject(&p, fault, &commit.sha, &sizes).await?;
        injected += 1;
        p.verified("staging", &commit.release, Phase::Healthy, 300)
            .await?;
        p.approve(&commit.release).await?;
        approved.push(commit.release.clone());
        if injected < count {
            tokio::time::sleep(moments.within(secs(6))).await;
            inject(&p, after_approval, &commit.sha, &sizes).await?;
            injected += 1;
        }
        p.verified("prod", &commit.release, Phase::Pinned, 300)
            .await?;
    }
    s.cluster.controller_available(secs(120)).await?;
    // What a restarted controller would still write comes within this.
    tokio::time::sleep(secs(10)).await;

    let broken = invariants(&p, &pushed, &approved, &newest).await?;
    for line in &broken {
        s.say(format!("broken: {line}"));
    }
    s.say(format!(
        "measured: faults injected = {injected}, invariants broken = {}",
        broken.len()
    ));
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("{} invariants broken: {}", broken.len(), broken.join("; ")).into())
    }
}

/// Injects `fault`; says what was under way when it came.
async fn inject(p: &Pipeline, fault: Fault, sha: &str, sizes: &Sizes) -> Res {
    let s = &p.s;
    let under_way = p.summary().await.unwrap_or_default();
    let build = s
        .get::<BuildJob>(&format!("{APP}-{}", &sha[..7]))
        .await
        .ok()
        .flatten()
        .and_then(|j| j.status)
        .and_then(|st| st.phase)
        .map(|phase| format!("{phase:?}"))
        .unwrap_or_else(|| "not yet".to_owned());
    let what = match fault {
        Fault::KillLeader => kill_leader(s, false).await?,
        Fault::KillLeaderNow => kill_leader(s, true).await?,
        Fault::WebhookStorm => storm(p, sha, sizes.storm).await?,
        Fault::GitFrozen => frozen(&s.cluster, "gitserver", sizes.frozen).await?,
        Fault::RegistryFrozen => frozen(&s.cluster, "registry", sizes.frozen).await?,
        Fault::ApiServerRestart => restart_api_server(s).await?,
    };
    s.say(format!(
        "fault {fault:?}: {what} (the build of {}: {build}; {under_way})",
        &sha[..7]
    ));
    Ok(())
}

/// Deletes the Lease holder's pod, at once when `now`; waits until a controller is available
/// again, so that the next push's webhook has someone to answer it.
async fn kill_leader(s: &Scenario, now: bool) -> Res<String> {
    let cluster = &s.cluster;
    let (pod, _) = cluster.leader_pod().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.system);
    let params = if now {
        DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        }
    } else {
        DeleteParams::default()
    };
    pods.delete(&pod, &params).await?;
    let started = Instant::now();
    // Gone first: until then the Deployment still counts it available.
    tokio::time::timeout(
        secs(120),
        kube::runtime::wait::await_condition(pods.clone(), &pod, |p: Option<&Pod>| p.is_none()),
    )
    .await
    .map_err(|_| format!("the deleted pod {pod} was still there after 120 s"))??;
    // Another pod runs, and the Deployment counts it available.
    let mut replaced = cluster.controller_pod().await;
    while !matches!(&replaced, Ok(new) if *new != pod) {
        if started.elapsed() > secs(180) {
            return Err(format!("no Ferry pod replaced {pod} within 180 s").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        replaced = cluster.controller_pod().await;
    }
    cluster.controller_available(secs(180)).await?;
    Ok(format!(
        "deleted the leader {pod}{}; a controller was available again {:.1} s later",
        if now { " with no grace period" } else { "" },
        started.elapsed().as_secs_f64()
    ))
}

/// POSTs `count` signed push events of `sha` to Ferry's webhook, 20 at a time, from the node's
/// network namespace (where Service addresses answer), as the git server signs them.
async fn storm(p: &Pipeline, sha: &str, count: usize) -> Res<String> {
    let (target, secret) = p.hook.clone();
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "after": sha,
        "created": false,
        "deleted": false,
        "commits": [{"id": sha, "message": "storm"}],
        "head_commit": {"id": sha, "message": "storm"},
        "repository": {"name": APP, "full_name": APP, "clone_url": ""},
    }))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| format!("the webhook secret: {e}"))?;
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let started = Instant::now();
    let codes: BTreeMap<u16, usize> =
        in_netns(&p.s.cluster.netns, secs(10), move |client| async move {
            let mut codes = BTreeMap::new();
            for chunk in (0..count).collect::<Vec<_>>().chunks(20) {
                let sends = chunk.iter().map(|i| {
                    client
                        .post(&target)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", "push")
                        .header("X-GitHub-Delivery", format!("storm-{i}"))
                        .header("X-Hub-Signature-256", &signature)
                        .body(body.clone())
                        .send()
                });
                for answer in futures::future::join_all(sends).await {
                    let code = answer.map(|r| r.status().as_u16()).unwrap_or(0);
                    *codes.entry(code).or_insert(0) += 1;
                }
            }
            codes
        })
        .await?;
    Ok(format!(
        "{count} signed pushes of {} in {:.1} s, answered {codes:?} (0: no answer)",
        &sha[..7],
        started.elapsed().as_secs_f64()
    ))
}

async fn signal(pid: &str, signal: &str) -> Res {
    let status = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_owned()])
        .status()
        .await?;
    if !status.success() {
        return Err(format!("kill -{signal} {pid} failed").into());
    }
    Ok(())
}

/// Freezes the daemon `name` (SIGSTOP) for `how_long`: connections to it are accepted by the
/// kernel and never answered. Then thaws it.
async fn frozen(cluster: &Cluster, name: &str, how_long: Duration) -> Res<String> {
    /// Thaws the daemon however the freeze ends: a scenario stopped at its deadline must not
    /// leave the cluster's git server or registry stopped.
    struct Thaw(String);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0])
                .status();
        }
    }
    let pid = cluster.daemon_pid(name)?;
    let _thaw = Thaw(pid.clone());
    signal(&pid, "STOP").await?;
    tokio::time::sleep(how_long).await;
    signal(&pid, "CONT").await?;
    Ok(format!("froze {name} for {} s", how_long.as_secs()))
}

/// Kills the API server (SIGTERM) and starts it again as `e2e/cluster/lib.sh` started it: the
/// same arguments, in the cluster's network namespace, its own session, its log appended to.
async fn restart_api_server(s: &Scenario) -> Res<String> {
    let pid = s.cluster.daemon_pid("kube-apiserver")?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    // The program itself: its command line may name it as found on the PATH of whoever
    // started it.
    let program = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        return Err(format!("kube-apiserver (pid {pid}) has no command line").into());
    }
    let started = Instant::now();
    // SIGTERM, as an upgrade stops it; it drains its watches for up to a minute, so after 10 s
    // it is killed, as a crash would.
    signal(&pid, "TERM").await?;
    let mut killed = false;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && started.elapsed() < secs(30) {
        if !killed && started.elapsed() > secs(10) {
            signal(&pid, "KILL").await?;
            killed = true;
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if state
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Started as `e2e/cluster/lib.sh` starts every daemon (`start_daemon`): its own session,
    // the cluster's network namespace, none of this process's descriptors, its pid file.
    let lib = std::path::Path::new(&s.cluster.e2e_dir).join("cluster/lib.sh");
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && shift && start_daemon kube-apiserver "$@""#)
        .arg("restart")
        .arg(&lib)
        .arg(&program)
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    if !status.success() {
        return Err(format!("starting kube-apiserver again failed: {status}").into());
    }
    let restarted = s.cluster.daemon_pid("kube-apiserver")?;
    // Ready again: a change of the Application is admitted (a dry run). Reads answer first;
    // the admission policies that read Environments as parameters are configured a moment
    // later, and until then refuse every change ("failed to configure policy").
    let apps: Api<Application> = Api::namespaced(s.client(), &s.ns);
    let probe =
        serde_json::json!({"metadata": {"annotations": {"e2e.ferry.dev/probe": "restart"}}});
    let (dry_run, probe) = (
        kube::api::PatchParams::default().dry_run(),
        kube::api::Patch::Merge(&probe),
    );
    loop {
        let change = apps.patch(APP, &dry_run, &probe);
        if let Ok(Ok(_)) = tokio::time::timeout(secs(5), change).await {
            break;
        }
        if started.elapsed() > secs(120) {
            return Err("the API server did not admit a change within 120 s of its restart".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(format!(
        "restarted the API server (pid {pid} → {restarted}), admitting changes again {:.1} s after the kill",
        started.elapsed().as_secs_f64()
    ))
}

/// What must hold after the faults; each line is one that does not.
async fn invariants(
    p: &Pipeline,
    pushed: &[String],
    approved: &[String],
    newest: &str,
) -> Res<Vec<String>> {
    let s = &p.s;
    let mut broken = Vec::new();
    let jobs = s
        .api::<BuildJob>()
        .list(&ListParams::default())
        .await?
        .items;
    let releases = s.api::<Release>().list(&ListParams::default()).await?.items;
    for sha in pushed {
        let builds = jobs.iter().filter(|j| &j.spec.commit == sha).count();
        if builds != 1 {
            broken.push(format!("commit {} has {builds} BuildJobs", &sha[..7]));
        }
        let made = releases.iter().filter(|r| &r.spec.commit == sha).count();
        if made > 1 {
            broken.push(format!("commit {} has {made} Releases", &sha[..7]));
        }
    }
    for release in &releases {
        let code = manifest_code(&release.spec.image).await?;
        if code != 200 {
            broken.push(format!(
                "Release {}: the registry answers {code} for its image {}",
                release.name_any(),
                release.spec.image
            ));
        }
    }
    let app = p.app().await?;
    let records = s
        .api::<DeliveryRecord>()
        .list(&ListParams::default())
        .await?
        .items;
    let states = app.status.clone().unwrap_or_default().environments;
    for state in &states {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for entry in &state.history {
            *seen
                .entry((format!("{:?}", entry.kind), entry.release.clone()))
                .or_insert(0) += 1;
            if entry.outcome != Outcome::InProgress {
                let linked = entry.record.as_deref().is_some_and(|name| {
                    records
                        .iter()
                        .any(|r| r.name_any() == name && r.spec.entry.release == entry.release)
                });
                if !linked {
                    broken.push(format!(
                        "{}: the {:?} of {} has no DeliveryRecord",
                        state.name, entry.kind, entry.release
                    ));
                }
            }
        }
        for ((kind, release), times) in &seen {
            if *times > 1 {
                broken.push(format!(
                    "{}: the {kind} of {release} is in the history {times} times",
                    state.name
                ));
            }
        }
        let expected: Vec<(HistoryKind, &String)> = match state.name.as_str() {
            "dev" => releases_of(pushed, &releases)
                .map(|r| (HistoryKind::Rollout, r))
                .collect(),
            "staging" => releases_of(pushed, &releases)
                .map(|r| (HistoryKind::Promotion, r))
                .collect(),
            _ => approved
                .iter()
                .map(|r| (HistoryKind::Approval, r))
                .collect(),
        };
        for (kind, release) in expected {
            // A pin of the candidate is an Approval; of a release prod was not waiting for yet,
            // a Pin: either records the approval.
            let recorded = |h: &&ferry::api::application::HistoryEntry| {
                &h.release == release
                    && (h.kind == kind
                        || (kind == HistoryKind::Approval && h.kind == HistoryKind::Pin))
            };
            if !state.history.iter().any(|h| recorded(&h)) {
                broken.push(format!(
                    "{}: no {kind:?} of {release} in the history",
                    state.name
                ));
            }
        }
        let (phase, current) = match state.name.as_str() {
            "prod" => (Phase::Pinned, approved.last().map(String::as_str)),
            _ => (Phase::Healthy, Some(newest)),
        };
        if state.phase != Some(phase) || state.current.as_deref() != current {
            broken.push(format!(
                "{} ends {:?} with {:?}, not {phase:?} with {current:?}",
                state.name, state.phase, state.current
            ));
        }
        if state.rollout.as_ref().is_some_and(|r| r.verdict.is_none()) {
            broken.push(format!("{} has a rollout never judged", state.name));
        }
    }
    if states.len() != 3 {
        broken.push(format!(
            "{} environments in the status, not 3",
            states.len()
        ));
    }
    Ok(broken)
}

/// The Releases of the pushed commits, in push order.
fn releases_of<'a>(
    pushed: &'a [String],
    releases: &'a [Release],
) -> impl Iterator<Item = &'a String> {
    pushed.iter().filter_map(move |sha| {
        releases
            .iter()
            .find(|r| &r.spec.commit == sha)
            .and_then(|r| r.metadata.name.as_ref())
    })
}
