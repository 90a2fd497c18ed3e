//! The scale tier's driver, run by `e2e/bench-scale.sh` (`make bench-scale`) against the
//! control plane and kwok nodes it starts; ignored otherwise. Figures, not assertions: it
//! prints `measured:` lines, and fails only when something never happens (a deadline of
//! minutes, not a speed target).
//!
//! 1. Applies N Applications (`FERRY_SCALE_APPS`, default 10,000) in namespaces of 100, each
//!    namespace with dev (automatic), staging (automatic) and prod (Manual), and one Release
//!    per Application; starts Ferry (the release binary, leader election on) at the same time.
//! 2. Waits until every Application is Healthy in dev and staging: the time from the apply.
//! 3. Steady state, 60 s with nothing changing: RSS, CPU, requests per second by verb.
//! 4. Restarts the controller (SIGTERM, a new process): requests by verb and status writes in
//!    its first 60 s.
//! 5. For two minutes, 1 % of the Applications per minute get a new Release: p50 and p99 from
//!    the Release's creation to its rollout starting in dev.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::api::application::Phase;
use ferry::api::{Application, Environment, Release};
use ferry::decide::shard::Shard;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::core::NamespaceResourceScope;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PER_NAMESPACE: usize = 100;
const METRICS_PORT: u16 = 18080;
const DIGEST: &str = "abababababababababababababababababababababababababababababababab";

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by e2e/bench-scale.sh"))
}

fn measured(name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("measured: {name} = {value} {unit}");
}

fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// Ferry as a process, as manifests/ferry.yaml runs it, started again when it exits (as the
/// kubelet would restart its container: a controller that loses its Lease exits).
struct Ferry {
    child: tokio::process::Child,
    started: u32,
}

impl Ferry {
    fn start() -> Self {
        Self {
            child: Self::spawn("scale-0", METRICS_PORT, None),
            started: 1,
        }
    }

    /// Starts it again if it exited; an exit is reported.
    fn keep_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!("ferry exited ({status}); started again, as its pod would be");
            self.restart();
        }
    }

    /// Another process, as after the pod was deleted.
    fn restart(&mut self) {
        self.child = Self::spawn(&format!("scale-{}", self.started), METRICS_PORT, None);
        self.started += 1;
    }

    /// Waits `period`, keeping the controller alive.
    async fn run_for(&mut self, period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            self.keep_alive();
            tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
        }
    }

    fn spawn(instance: &str, port: u16, shard: Option<&str>) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(setting("FERRY_SCALE_LOG"))
            .expect("the log opens");
        tokio::process::Command::new(PathBuf::from(setting("FERRY_SCALE_BINARY")))
            .args(["controller", "--log-format=json", "--leader-elect"])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(shard.map(|s| format!("--shard={s}")))
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args(["--build-image", "registry.invalid/ferry:scale"])
            .env("KUBECONFIG", setting("FERRY_SCALE_KUBECONFIG"))
            .env("POD_NAME", instance)
            .env("POD_NAMESPACE", "ferry-system")
            .stdout(Stdio::from(log.try_clone().expect("the log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("ferry starts")
    }

    /// SIGTERM, as a pod's deletion sends, and the end of the process.
    async fn stop(&mut self) {
        terminate(&mut self.child).await;
    }
}

/// Sends `child` SIGTERM and waits (a minute at most) for it to end.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
}

/// `/metrics` as `name{labels}` → value.
async fn scrape() -> BTreeMap<String, f64> {
    scrape_port(METRICS_PORT).await
}

async fn scrape_port(port: u16) -> BTreeMap<String, f64> {
    let mut figures = BTreeMap::new();
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return figures;
    };
    let request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_string(&mut response).await.is_err()
    {
        return figures;
    }
    for line in response.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(value) = value.parse::<f64>()
        {
            figures.insert(name.to_owned(), value);
        }
    }
    figures
}

/// Requests between two scrapes by verb, and by `verb resource`.
fn requests_by_verb(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let (mut verbs, mut resources) = (BTreeMap::new(), BTreeMap::new());
    for (name, value) in after {
        let Some(labels) = name.strip_prefix("ferry_api_requests_total{") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.strip_prefix("=\""))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or("other")
                .to_owned()
        };
        let delta = value - before.get(name).copied().unwrap_or(0.0);
        if delta > 0.0 {
            *verbs.entry(label("verb")).or_insert(0.0) += delta;
            let what = format!("{} {}", label("verb"), label("resource"));
            *resources.entry(what).or_insert(0.0) += delta;
        }
    }
    (verbs, resources)
}

fn print_requests(
    when: &str,
    (verbs, resources): &(BTreeMap<String, f64>, BTreeMap<String, f64>),
    seconds: f64,
) {
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        let count = verbs.get(verb).copied().unwrap_or(0.0);
        measured(
            &format!("API requests per second {when}, {verb}"),
            format!("{:.2}", count / seconds),
            "req/s",
        );
    }
    // Writes to stored objects: an access review is a question, not a write, and renewing the
    // leader's Lease is what leading costs.
    let writes: f64 = resources
        .iter()
        .filter(|(what, _)| {
            let (verb, resource) = what.split_once(' ').unwrap_or_default();
            ["create", "update", "patch", "delete"].contains(&verb)
                && !["selfsubjectaccessreviews", "leases"].contains(&resource)
        })
        .map(|(_, n)| n)
        .fold(0.0, |sum, n| sum + n);
    measured(
        &format!("API writes {when}, Lease renewals aside"),
        writes,
        "requests",
    );
    let by_resource: Vec<String> = resources.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!(
        "    requests {when}, by verb and resource: {}",
        by_resource.join(", ")
    );
}

fn figure(figures: &BTreeMap<String, f64>, name: &str) -> f64 {
    figures.get(name).copied().unwrap_or(0.0)
}

fn status_writes(figures: &BTreeMap<String, f64>) -> f64 {
    figures
        .iter()
        .filter(|(name, _)| name.starts_with("ferry_status_writes_total"))
        .map(|(_, v)| v)
        .fold(0.0, |sum, v| sum + v)
}

/// What the watch has seen: per Application, dev and staging healthy, and when a release
/// first started rolling out in dev.
#[derive(Default)]
struct Seen {
    healthy: BTreeMap<String, bool>,
    started: BTreeMap<(String, String), Instant>,
}

fn key(app: &Application) -> String {
    format!(
        "{}/{}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    )
}

fn observe(seen: &Mutex<Seen>, app: &Application) {
    let states = app
        .status
        .as_ref()
        .map(|s| s.environments.as_slice())
        .unwrap_or_default();
    let healthy = |env: &str| {
        states
            .iter()
            .any(|s| s.name == env && s.phase == Some(Phase::Healthy))
    };
    let mut seen = seen.lock().expect("not poisoned");
    seen.healthy
        .insert(key(app), healthy("dev") && healthy("staging"));
    if let Some(rollout) = states
        .iter()
        .find(|s| s.name == "dev")
        .and_then(|s| s.rollout.as_ref())
    {
        seen.started
            .entry((key(app), rollout.release.clone()))
            .or_insert_with(Instant::now);
    }
}

async fn create<K>(client: &Client, namespace: &str, value: serde_json::Value)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let object: K = object(value);
    let mut tries = 0;
    while let Err(error) = api.create(&PostParams::default(), &object).await {
        // Only an overloaded API server is worth another try.
        if let kube::Error::Api(status) = &error {
            assert!(
                status.code >= 500 || status.code == 429,
                "creating {object:?}: {error}"
            );
        }
        tries += 1;
        assert!(tries < 20, "creating {object:?}: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn release(namespace: &str, app: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": format!("{app}-{version}"), "namespace": namespace},
        "spec": {
            "application": app, "version": version, "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
            "image": format!("registry.invalid/scale/{app}@sha256:{DIGEST}"),
            // An import, by the admin the bench's kubeconfig authenticates as.
            "importedBy": "ferry-test-admin",
        },
    })
}

async fn apply_namespace(client: &Client, k: usize, apps: usize) {
    let ns = format!("scale-{k}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": ns}})),
        )
        .await
        .expect("namespace");
    create::<RoleBinding>(client, &ns, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "ferry-deployer", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ferry-deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "ferry", "namespace": "ferry-system"}],
    }))
    .await;
    let health = json!({"progressDeadline": "10m", "stabilizationWindow": "5s"});
    for (name, extra) in [
        ("dev", json!({})),
        ("staging", json!({"upstream": "dev"})),
        ("prod", json!({"upstream": "staging", "approval": "Manual"})),
    ] {
        let mut spec = extra;
        spec["health"] = health.clone();
        create::<Environment>(
            client,
            &ns,
            json!({
                "apiVersion": "ferry.dev/v1alpha1", "kind": "Environment",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }),
        )
        .await;
    }
    futures::stream::iter(0..apps)
        .for_each_concurrent(8, |i| {
            let ns = ns.clone();
            async move {
                let app = format!("app-{}", k * PER_NAMESPACE + i);
                create::<Application>(client, &ns, json!({
                    "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
                    "metadata": {"name": app, "namespace": ns},
                    "spec": {
                        // A refused connection on loopback: sources that cannot be read.
                        "source": {"url": format!("http://127.0.0.1:9/scale/{app}.git")},
                        "build": {"builderImage": "registry.invalid/builder:1", "script": "make", "baseImage": "registry.invalid/base:1"},
                        "image": {"repository": format!("registry.invalid/scale/{app}")},
                        "environments": [{"name": "dev"}, {"name": "staging"}, {"name": "prod"}],
                    },
                }))
                .await;
                create::<Release>(client, &ns, release(&ns, &app, "1.0.0")).await;
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the scale tier: make bench-scale"]
async fn applications_by_the_thousand() {
    let total: usize = std::env::var("FERRY_SCALE_APPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let namespaces = total.div_ceil(PER_NAMESPACE);
    let client = Client::try_default().await.expect("the admin kubeconfig");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = {
        let seen = seen.clone();
        let apps: Api<Application> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher(apps, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                if let watcher::Event::Apply(app) | watcher::Event::InitApply(app) = event {
                    observe(&seen, &app);
                }
            }
        })
    };

    let mut ferry = Ferry::start();
    let started = Instant::now();
    futures::stream::iter(0..namespaces)
        .map(|k| {
            let client = client.clone();
            let apps = PER_NAMESPACE.min(total - k * PER_NAMESPACE);
            async move { apply_namespace(&client, k, apps).await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let applied = started.elapsed();
    measured(
        &format!("{total} Applications and Releases applied"),
        format!("{:.1}", applied.as_secs_f64()),
        "s",
    );

    // Every Application healthy in dev and staging.
    let deadline = Duration::from_secs(3600);
    loop {
        let healthy = seen
            .lock()
            .expect("not poisoned")
            .healthy
            .values()
            .filter(|h| **h)
            .count();
        if healthy == total {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "{healthy} of {total} Healthy in dev and staging after {deadline:?}"
        );
        if started.elapsed().as_secs().is_multiple_of(30) {
            eprintln!(
                "{:>5.0} s: {healthy} of {total} Healthy in dev and staging",
                started.elapsed().as_secs_f64()
            );
        }
        ferry.run_for(Duration::from_secs(1)).await;
    }
    measured(
        "apply → every Application Healthy in dev and staging",
        format!("{:.1}", started.elapsed().as_secs_f64()),
        "s",
    );

    // Steady state: nothing changes for a minute.
    ferry.run_for(Duration::from_secs(30)).await;
    let before = scrape().await;
    ferry.run_for(Duration::from_secs(60)).await;
    let after = scrape().await;
    let rss = figure(&after, "process_resident_memory_bytes");
    measured(
        &format!("controller RSS at steady state, {total} Applications"),
        format!("{:.1}", rss / 1024.0 / 1024.0),
        "MiB",
    );
    measured(
        "controller RSS per Application (and its Release)",
        format!("{:.1}", rss / 1024.0 / total as f64),
        "KiB",
    );
    measured(
        "controller CPU at steady state",
        format!(
            "{:.2}",
            figure(&after, "process_cpu_seconds_total")
                - figure(&before, "process_cpu_seconds_total")
        ),
        "CPU s/min",
    );
    measured(
        "status writes at steady state, 60 s",
        status_writes(&after) - status_writes(&before),
        "writes",
    );
    print_requests("at steady state", &requests_by_verb(&before, &after), 60.0);

    // A restart: what the new process sends in its first minute.
    ferry.stop().await;
    let exits = ferry.started - 1;
    ferry.restart();
    ferry.run_for(Duration::from_secs(60)).await;
    let restarted = scrape().await;
    print_requests(
        "in the 60 s after a restart",
        &requests_by_verb(&BTreeMap::new(), &restarted),
        60.0,
    );
    measured(
        "status writes in the 60 s after a restart",
        status_writes(&restarted),
        "writes",
    );

    // Changes: 1 % of the Applications per minute, for two minutes.
    let per_minute = (total / 100).max(1);
    let changes = per_minute * 2;
    let gap = Duration::from_secs(60) / per_minute as u32;
    let mut created = Vec::with_capacity(changes);
    for c in 0..changes {
        let i = (c * 7919) % total;
        let (ns, app) = (format!("scale-{}", i / PER_NAMESPACE), format!("app-{i}"));
        create::<Release>(&client, &ns, release(&ns, &app, "1.0.1")).await;
        created.push((
            format!("{ns}/{app}"),
            format!("{app}-1.0.1"),
            Instant::now(),
        ));
        ferry.run_for(gap).await;
    }
    let waited = Instant::now();
    let latencies = loop {
        let latencies: Vec<f64> = {
            let seen = seen.lock().expect("not poisoned");
            created
                .iter()
                .filter_map(|(app, release, at)| {
                    seen.started
                        .get(&(app.clone(), release.clone()))
                        .map(|s| s.saturating_duration_since(*at).as_secs_f64())
                })
                .collect()
        };
        if latencies.len() == created.len() || waited.elapsed() > Duration::from_secs(300) {
            break latencies;
        }
        ferry.run_for(Duration::from_secs(1)).await;
    };
    assert_eq!(
        latencies.len(),
        created.len(),
        "rollouts started of the new Releases"
    );
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    measured(
        &format!("new Release → rollout started, p50 ({changes} changes, 1 % per minute)"),
        format!("{:.2}", at(0.50)),
        "s",
    );
    measured(
        "new Release → rollout started, p99",
        format!("{:.2}", at(0.99)),
        "s",
    );
    ferry.stop().await;

    // Two shards instead of one controller: each holds its own namespaces' Applications.
    let mut shards: Vec<tokio::process::Child> = (0..2)
        .map(|i| {
            Ferry::spawn(
                &format!("shard-{i}"),
                METRICS_PORT + 1 + i,
                Some(&format!("{i}/2")),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut served = 0.0;
    for i in 0..2 {
        let figures = scrape_port(METRICS_PORT + 1 + i).await;
        let held = figure(&figures, "ferry_cached_objects{cache=\"Application\"}");
        served += held;
        measured(&format!("shard {i} of 2 serves"), held, "Applications");
        let share: usize = (0..namespaces)
            .filter(|k| Shard::of(&format!("scale-{k}"), 2) == u32::from(i))
            .map(|k| PER_NAMESPACE.min(total - k * PER_NAMESPACE))
            .sum();
        assert_eq!(
            held, share as f64,
            "shard {i} holds the Applications of its namespaces"
        );
        measured(
            &format!("shard {i} of 2 RSS"),
            format!(
                "{:.1}",
                figure(&figures, "process_resident_memory_bytes") / 1024.0 / 1024.0
            ),
            "MiB",
        );
    }
    // Every Application in one shard's cache and in no other: the shards' rule splits
    // namespaces, so the counts add up to the whole exactly when none is held twice or missed.
    measured(
        "Applications served by the two shards together",
        served,
        "Applications",
    );
    assert_eq!(
        served, total as f64,
        "every Application served by exactly one shard"
    );
    for shard in &mut shards {
        terminate(shard).await;
    }

    measured(
        "controller exits before the restart (a lost Lease, say)",
        exits,
        "exits",
    );
    measured(
        "controller exits after the restart",
        ferry.started - 2,
        "exits",
    );
    watch.abort();
}
