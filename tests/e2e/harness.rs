//! The end-to-end harness: the cluster (`make cluster-up`, Ferry installed in it by
//! `e2e/install.sh`), one namespace per scenario, typed waits on Ferry's own objects, and the
//! runner that puts scenarios side by side and prints PASS/FAIL, the `measured:` lines, and a
//! failed scenario's whole log with the state of its namespace.
//!
//! A scenario is an `async fn(Arc<Scenario>) -> Res`. It says what it does with
//! [`Scenario::say`], prints figures with [`Scenario::measured`], and fails by returning an
//! error (the `fail!` macro): the runner then dumps the namespace (Ferry's objects with their
//! status, Deployments, Services, pods, Events, the controller's log tail) under its log.

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::api::{Application, BuildJob, Environment, Release};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a scenario returns: nothing, or why it failed.
pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Fails the scenario with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*).into())
    };
}

/// Fails the scenario unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        let holds: bool = $cond;
        if !holds {
            $crate::fail!($($arg)*);
        }
    };
}

/// The field manager of everything the scenarios apply: what a person's `kubectl apply` would
/// be, under a name of its own.
pub const MANAGER: &str = "ferry-e2e";

/// The cluster the scenarios run on, as `e2e/cluster/lib.sh` sets it up.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// Where Ferry runs (`ferry-system`).
    pub system: String,
    /// The cluster's registry, `host:port`, as pods and the node reach it.
    pub registry: String,
    /// The git server's base URL.
    pub git_url: String,
    /// The network namespace the node runs in: Service ClusterIPs answer there.
    pub netns: String,
    /// The repository's e2e/ directory (the image helpers are shell).
    pub e2e_dir: String,
    /// Where each scenario's log is written.
    pub out: String,
}

/// Where `e2e/cluster/lib.sh` keeps the cluster's logs and pid files.
fn state_dir() -> String {
    env_or("FERRY_E2E_DIR", "/var/lib/ferry-e2e")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Cluster {
    /// The cluster `FERRY_E2E_KUBECONFIG` points at, or `None` when it is unset (the tier is
    /// then skipped: `cargo test` alone has no cluster).
    pub async fn from_env() -> Res<Option<Self>> {
        let Ok(path) = std::env::var("FERRY_E2E_KUBECONFIG") else {
            return Ok(None);
        };
        ferry::adapters::git::install_crypto_provider();
        let client = Client::try_from(kube_config(&path).await?)?;
        let node_ip = env_or("FERRY_E2E_NODE_IP", "10.211.0.2");
        let root = env!("CARGO_MANIFEST_DIR");
        let run = jiff::Timestamp::now().as_second();
        Ok(Some(Self {
            client,
            system: env_or("FERRY_E2E_SYSTEM", "ferry-system"),
            registry: env_or("FERRY_E2E_REGISTRY", &format!("{node_ip}:5000")),
            git_url: env_or("FERRY_E2E_GIT_URL", &format!("http://{node_ip}:8080")),
            netns: env_or("FERRY_E2E_NETNS", "ferry-e2e"),
            e2e_dir: format!("{root}/e2e"),
            out: env_or("FERRY_E2E_OUT", &format!("/tmp/ferry-e2e-{run}")),
        }))
    }

    /// A client that acts as `user` (impersonated, as `kubectl --as=USER`): the API server
    /// authorizes and admits its requests as that user's.
    pub async fn client_as(&self, user: &str) -> Res<Client> {
        let path = std::env::var("FERRY_E2E_KUBECONFIG")?;
        let mut config = kube_config(&path).await?;
        config.auth_info.impersonate = Some(user.to_owned());
        Ok(Client::try_from(config)?)
    }

    /// The username the API server authenticates the suite's own client as (`kubectl auth
    /// whoami`): what a Release it imports must name in `spec.importedBy` (the `ferry-import`
    /// admission policy).
    pub async fn whoami(&self) -> Res<String> {
        use k8s_openapi::api::authentication::v1::SelfSubjectReview;
        let reviews: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = reviews
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .ok_or_else(|| "the API server did not say who the suite's client is".into())
    }

    /// What the controller's `/metrics` says now, read through the API server's pod proxy.
    pub async fn metrics(&self) -> Res<String> {
        let pod = self.controller_pod().await?;
        let request = http::Request::get(format!(
            "/api/v1/namespaces/{}/pods/{pod}:8080/proxy/metrics",
            self.system
        ))
        .body(Vec::new())?;
        Ok(self
            .client
            .request_text(request)
            .await
            .map_err(|e| format!("reading /metrics of {pod}: {e}"))?)
    }

    /// The running Ferry pod, preferring the Lease holder.
    pub async fn controller_pod(&self) -> Res<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=ferry"))
            .await?;
        list.items
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .map(|p| p.name_any())
            .next()
            .ok_or_else(|| format!("no running Ferry pod in {}", self.system).into())
    }

    /// The Lease holder's pod (the leader), or any running Ferry pod when the holder is gone;
    /// with the holder the Lease names.
    pub async fn leader_pod(&self) -> Res<(String, Option<String>)> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.system);
        let holder = leases
            .get_opt("ferry-controller")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        let pod = match &holder {
            Some(h) if pods.get_opt(h).await?.is_some() => h.clone(),
            _ => self.controller_pod().await?,
        };
        Ok((pod, holder))
    }

    /// The log file of one of the cluster's own servers (`gitserver`, `registry`), which
    /// `e2e/cluster/lib.sh` writes on this machine.
    pub fn server_log(&self, name: &str) -> String {
        format!("{}/logs/{name}.log", state_dir())
    }

    /// The pid of one of the cluster's own daemons (`kube-apiserver`, `registry`), from the pid
    /// file `e2e/cluster/lib.sh` writes on this machine.
    pub fn daemon_pid(&self, name: &str) -> Res<String> {
        let file = format!("{}/run/{name}.pid", state_dir());
        let pid = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
        Ok(pid.trim().to_owned())
    }

    /// Waits until Ferry's Deployment is available again (after a pod was killed).
    pub async fn controller_available(&self, timeout: Duration) -> Res {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.system);
        let available = |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.available_replicas.unwrap_or(0) >= 1
                    && s.updated_replicas == s.replicas
                    && s.unavailable_replicas.unwrap_or(0) == 0
            })
        };
        tokio::time::timeout(timeout, await_condition(deployments, "ferry", available))
            .await
            .map_err(|_| format!("Ferry's Deployment not available within {timeout:?}"))??;
        Ok(())
    }
}

/// The client configuration of the kubeconfig at `path`.
async fn kube_config(path: &str) -> Res<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("reading the kubeconfig {path}: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("the kubeconfig {path}: {e}"))?;
    Ok(config)
}

/// How a judge sees an object it waits on.
pub enum Judged<T> {
    /// Not yet.
    Wait,
    /// There: what the wait returns.
    Done(T),
    /// It ended otherwise, and waiting longer is pointless: why.
    Never(String),
}

/// One scenario's namespace, log and figures.
pub struct Scenario {
    pub cluster: Cluster,
    pub name: String,
    pub ns: String,
    log: Mutex<Vec<String>>,
    started: Instant,
}

impl Scenario {
    pub fn client(&self) -> Client {
        self.cluster.client.clone()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), &self.ns)
    }

    /// Adds a line to the scenario's log (and to stderr, with its name, for a person watching).
    pub fn say(&self, line: impl Display) {
        let line = line.to_string();
        if std::env::var_os("FERRY_E2E_VERBOSE").is_some() {
            eprintln!("[{}] {line}", self.name);
        }
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }

    /// A figure, on a line of its own: `measured: NAME = VALUE UNIT`.
    pub fn measured(&self, name: impl Display, value: impl Display, unit: &str) {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        self.say(format!("measured: {name} = {value}{unit}"));
    }

    /// A remark worth keeping with the figures: `note: ...`.
    pub fn note(&self, line: impl Display) {
        self.say(format!("note: {line}"));
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Server-side applies `object` in the namespace, as a person's `kubectl apply` would.
    pub async fn apply<K>(&self, object: &K) -> Res<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let name = object.name_any();
        let applied = self
            .api::<K>()
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .map_err(|e| format!("applying {} {name}: {e}", K::kind(&())))?;
        Ok(applied)
    }

    /// The object, or `None` when it does not exist.
    pub async fn get<K>(&self, name: &str) -> Res<Option<K>>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        Ok(self.api::<K>().get_opt(name).await?)
    }

    /// Waits until the Environment `name` is Ready (its condition `Ready` is `True`); fails
    /// after a minute.
    pub async fn until_environment_ready(&self, name: &str) -> Res {
        self.until::<Environment, _>(
            name,
            &format!("Environment {name} to be Ready"),
            Duration::from_secs(60),
            |e| {
                let ready = e.status.as_ref().is_some_and(|st| {
                    st.common
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if ready {
                    Judged::Done(())
                } else {
                    Judged::Wait
                }
            },
        )
        .await
    }

    /// Waits (a watch, kube's `await_condition`) until `judge` finds the named object done, or
    /// that it never will be; fails after `timeout` with the last state it saw.
    pub async fn until<K, T>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        judge: impl Fn(&K) -> Judged<T> + Send + Sync + 'static,
    ) -> Res<T>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let start = Instant::now();
        let judge = Arc::new(judge);
        let decided = Arc::clone(&judge);
        let waited = tokio::time::timeout(
            timeout,
            await_condition(self.api::<K>(), name, move |o: Option<&K>| {
                o.is_some_and(|o| !matches!(decided(o), Judged::Wait))
            }),
        )
        .await;
        match waited {
            Ok(Ok(Some(object))) => match judge(&object) {
                Judged::Done(value) => {
                    self.say(format!(
                        "waited {:.1} s for {what}",
                        start.elapsed().as_secs_f64()
                    ));
                    Ok(value)
                }
                Judged::Never(why) => {
                    fail!("gave up waiting for {what}: it cannot happen any more: {why}")
                }
                Judged::Wait => fail!("the watch ended before {what}"),
            },
            Ok(Ok(None)) => fail!(
                "{} {name} was deleted while waiting for {what}",
                K::kind(&())
            ),
            Ok(Err(e)) => fail!("watching {} {name} for {what}: {e}", K::kind(&())),
            Err(_) => fail!("timed out after {} s waiting for {what}", timeout.as_secs()),
        }
    }

    /// Runs `check` every `every` until it gives a value, or fails after `timeout` with the
    /// last thing it said.
    pub async fn poll<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut check: F,
    ) -> Res<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Res<Option<T>>>,
    {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            match check().await {
                Ok(Some(value)) => {
                    self.say(format!(
                        "waited {:.1} s for {what}",
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() >= timeout {
                let last = if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last})")
                };
                fail!(
                    "timed out after {} s waiting for {what}{last}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Creates the scenario's namespace anew: the `restricted` Pod Security Standard enforced
    /// (unless `FERRY_E2E_PSS` says otherwise), and granted to Ferry with the documented
    /// RoleBindings to `ferry-tenant` and `ferry-deployer`. One left by an earlier run is deleted
    /// first; a scenario calls this again to lose its namespace, as a restore from a backup does.
    pub async fn create_namespace(&self) -> Res {
        let namespaces: Api<Namespace> = Api::all(self.client());
        if let Some(old) = namespaces.get_opt(&self.ns).await? {
            namespaces
                .delete(&self.ns, &DeleteParams::default())
                .await?;
            let uid = old.uid().unwrap_or_default();
            tokio::time::timeout(
                Duration::from_secs(120),
                await_condition(namespaces.clone(), &self.ns, conditions::is_deleted(&uid)),
            )
            .await
            .map_err(|_| format!("the old namespace {} was not deleted in 120 s", self.ns))??;
        }
        let pss = env_or("FERRY_E2E_PSS", "restricted");
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(self.ns.clone());
        namespace.metadata.labels = Some(BTreeMap::from([
            ("pod-security.kubernetes.io/enforce".to_owned(), pss),
            (
                "e2e.ferry.dev/scenario".to_owned(),
                self.name.replace('/', "-"),
            ),
        ]));
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        self.grant_ferry(&self.ns, "ferry-tenant").await?;
        self.grant_ferry(&self.ns, "ferry-deployer").await
    }

    /// Binds the ClusterRole `role` (`ferry-tenant`: Secrets and pods; `ferry-deployer`:
    /// Deployments and Services) to Ferry's ServiceAccount in `namespace`, as the documented
    /// `kubectl create rolebinding` does.
    pub async fn grant_ferry(&self, namespace: &str, role: &str) -> Res {
        let grant = RoleBinding {
            metadata: kube::api::ObjectMeta {
                name: Some(role.to_owned()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: role.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: "ferry".to_owned(),
                namespace: Some(self.cluster.system.clone()),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &grant)
            .await?;
        Ok(())
    }

    async fn delete_namespace(&self) {
        let namespaces: Api<Namespace> = Api::all(self.client());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
    }

    /// The state of the namespace, to read a failure by.
    pub async fn dump(&self) -> Vec<String> {
        let mut out = vec![format!("---- state of namespace {}", self.ns)];
        let yaml = |v: &dyn erased::Yaml| v.yaml();
        match self.api::<Application>().list(&ListParams::default()).await {
            Ok(list) => {
                for mut a in list {
                    a.metadata.managed_fields = None;
                    out.push(format!("--- # Application\n{}", yaml(&a)));
                }
            }
            Err(e) => out.push(format!("Applications: {e}")),
        }
        self.dump_builds(&mut out).await;
        match self.api::<Environment>().list(&ListParams::default()).await {
            Ok(list) => {
                for mut e in list {
                    e.metadata.managed_fields = None;
                    out.push(format!("--- # Environment\n{}", yaml(&e)));
                }
            }
            Err(e) => out.push(format!("Environments: {e}")),
        }
        if let Ok(list) = self.api::<Release>().list(&ListParams::default()).await {
            for r in list {
                out.push(format!(
                    "Release {}: {} {}",
                    r.name_any(),
                    r.spec.version,
                    r.spec.image
                ));
            }
        }
        if let Ok(list) = self.api::<Deployment>().list(&ListParams::default()).await {
            for d in list {
                let spec = d.spec.as_ref();
                let status = d.status.clone().unwrap_or_default();
                out.push(format!(
                    "Deployment {}: replicas {:?}, image {:?}, ready {:?}, updated {:?}, unavailable {:?}",
                    d.name_any(),
                    spec.and_then(|s| s.replicas),
                    spec.and_then(|s| s.template.spec.as_ref())
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.clone()),
                    status.ready_replicas,
                    status.updated_replicas,
                    status.unavailable_replicas,
                ));
            }
        }
        if let Ok(list) = self.api::<Service>().list(&ListParams::default()).await {
            for s in list {
                let spec = s.spec.clone().unwrap_or_default();
                out.push(format!(
                    "Service {}: {:?} selector {:?}",
                    s.name_any(),
                    spec.cluster_ip,
                    spec.selector
                ));
            }
        }
        let pods = self.api::<Pod>();
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list {
                let status = p.status.clone().unwrap_or_default();
                for c in status.container_statuses.unwrap_or_default() {
                    out.push(format!(
                        "pod {} {}: ready {}, restarts {}, state {:?}, last {:?}",
                        p.name_any(),
                        c.name,
                        c.ready,
                        c.restart_count,
                        c.state,
                        c.last_state
                    ));
                }
                let tail = LogParams {
                    tail_lines: Some(5),
                    ..LogParams::default()
                };
                if let Ok(log) = pods.logs(&p.name_any(), &tail).await {
                    out.push(format!("log of {}:\n{log}", p.name_any()));
                }
            }
        }
        if let Ok(list) = self.api::<Event>().list(&ListParams::default()).await {
            let mut events = list.items;
            events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
            let skip = events.len().saturating_sub(30);
            for e in events.into_iter().skip(skip) {
                let regarding = e.regarding.unwrap_or_default();
                out.push(format!(
                    "event {} {}/{}: {}: {}",
                    e.type_.unwrap_or_default(),
                    regarding.kind.unwrap_or_default(),
                    regarding.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                ));
            }
        }
        out.push("---- the controller's last log lines".to_owned());
        if let Ok(pod) = self.cluster.controller_pod().await {
            let pods: Api<Pod> = Api::namespaced(self.client(), &self.cluster.system);
            let tail = LogParams {
                tail_lines: Some(40),
                ..LogParams::default()
            };
            match pods.logs(&pod, &tail).await {
                Ok(log) => out.push(log),
                Err(e) => out.push(format!("cannot read: {e}")),
            }
        }
        out
    }
}

impl Scenario {
    /// The builds' part of the dump: BuildJobs with their status, the steps (init containers)
    /// of the build pods, and the git server's lines about the scenario's repositories (which
    /// are named after it).
    async fn dump_builds(&self, out: &mut Vec<String>) {
        if let Ok(list) = self.api::<BuildJob>().list(&ListParams::default()).await {
            for mut b in list {
                b.metadata.managed_fields = None;
                out.push(format!("--- # BuildJob\n{}", erased::Yaml::yaml(&b)));
            }
        }
        if let Ok(list) = self.api::<Pod>().list(&ListParams::default()).await {
            for p in list {
                let status = p.status.clone().unwrap_or_default();
                for c in status.init_container_statuses.unwrap_or_default() {
                    out.push(format!(
                        "pod {} step {}: state {:?}",
                        p.name_any(),
                        c.name,
                        c.state
                    ));
                }
            }
        }
        let scenario = self.name.replace('/', "-");
        if let Ok(log) = std::fs::read_to_string(self.cluster.server_log("gitserver")) {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(&scenario)).collect();
            if !lines.is_empty() {
                out.push(format!("---- the git server's lines naming {scenario}"));
                let skip = lines.len().saturating_sub(20);
                out.extend(lines.into_iter().skip(skip).map(str::to_owned));
            }
        }
    }
}

/// YAML of any object, for the dump.
mod erased {
    pub trait Yaml {
        fn yaml(&self) -> String;
    }
    impl<T: serde::Serialize> Yaml for T {
        fn yaml(&self) -> String {
            serde_yaml::to_string(self).unwrap_or_else(|e| format!("(cannot print: {e})"))
        }
    }
}

/// A scenario's or a suite's work, started.
pub type Work = Pin<Box<dyn Future<Output = Res> + Send>>;

/// What a scenario is: a name, how long it may take, and what it does.
pub struct Case {
    pub name: &'static str,
    pub deadline: Duration,
    pub run: fn(Arc<Scenario>) -> Work,
}

/// Declares a scenario: `case!("good-rolling", good_rolling, 240)` for
/// `async fn good_rolling(Arc<Scenario>) -> Res`, with 240 s to reach its verdict.
#[macro_export]
macro_rules! case {
    ($name:literal, $function:path, $seconds:expr) => {
        $crate::harness::Case {
            name: $name,
            deadline: std::time::Duration::from_secs($seconds),
            run: |s| Box::pin($function(s)),
        }
    };
}

/// A suite: scenarios that may run side by side, then those that must run alone, in order.
pub struct Suite {
    pub name: &'static str,
    /// Prepares what every scenario of the suite shares (once, before them).
    pub before: Option<fn(Cluster) -> Work>,
    pub parallel: Vec<Case>,
    pub alone: Vec<Case>,
}

/// The outcome of a run.
#[derive(Default)]
pub struct Tally {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
}

/// Runs the suite's scenarios that `wanted` selects (all when it is empty): the side-by-side
/// ones at once, then the others one by one.
pub async fn run_suite(cluster: &Cluster, suite: &Suite, wanted: &[String], tally: &mut Tally) {
    let selected = |case: &&Case| {
        let full = format!("{}/{}", suite.name, case.name);
        wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == suite.name || *w == full || w == case.name)
    };
    let parallel: Vec<&Case> = suite.parallel.iter().filter(selected).collect();
    let alone: Vec<&Case> = suite.alone.iter().filter(selected).collect();
    if parallel.is_empty() && alone.is_empty() {
        return;
    }
    println!(
        "---- {} scenarios: {} (logs in {})",
        suite.name,
        parallel
            .iter()
            .chain(&alone)
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" "),
        cluster.out
    );
    if let Some(before) = suite.before
        && let Err(e) = before(cluster.clone()).await
    {
        println!("FAIL {}: preparing the suite: {e}", suite.name);
        for case in parallel.iter().chain(&alone) {
            tally.failed.push(format!("{}/{}", suite.name, case.name));
        }
        return;
    }
    let mut groups: Vec<Vec<&Case>> = vec![parallel];
    groups.extend(alone.into_iter().map(|c| vec![c]));
    for group in groups {
        let runs = group
            .iter()
            .map(|case| run_case(cluster.clone(), suite.name, case));
        for (name, ok) in futures::future::join_all(runs).await {
            if ok {
                tally.passed.push(name);
            } else {
                tally.failed.push(name);
            }
        }
    }
}

/// One scenario in a fresh namespace `ferry-e2e-<suite>-<name>`, under its deadline; prints
/// its outcome and returns (`suite/name`, passed).
async fn run_case(cluster: Cluster, suite: &str, case: &Case) -> (String, bool) {
    let full = format!("{suite}/{}", case.name);
    let scenario = Arc::new(Scenario {
        ns: format!("ferry-e2e-{suite}-{}", case.name),
        name: full.clone(),
        cluster,
        log: Mutex::new(Vec::new()),
        started: Instant::now(),
    });
    let outcome = match scenario.create_namespace().await {
        Err(e) => Err(format!("creating namespace {}: {e}", scenario.ns).into()),
        Ok(()) => {
            match tokio::time::timeout(case.deadline, (case.run)(Arc::clone(&scenario))).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "no verdict within its deadline of {} s",
                    case.deadline.as_secs()
                )
                .into()),
            }
        }
    };
    let took = scenario.started.elapsed().as_secs();
    let ok = outcome.is_ok();
    let mut lines = scenario.lines();
    if let Err(e) = &outcome {
        lines.push(format!("FAIL: {e}"));
        lines.extend(scenario.dump().await);
    } else {
        scenario.delete_namespace().await;
    }
    let dir = &scenario.cluster.out;
    let file = format!("{dir}/{}.log", full.replace('/', "-"));
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(&file, lines.join("\n") + "\n");
    if ok {
        println!("PASS {full} ({took} s)");
        for line in lines
            .iter()
            .filter(|l| l.starts_with("measured:") || l.starts_with("note:"))
        {
            println!("    {line}");
        }
    } else {
        println!("FAIL {full} ({took} s)");
        println!("---- log of {full} ({file})");
        for line in &lines {
            for part in line.lines() {
                println!("    {part}");
            }
        }
    }
    (full, ok)
}

/// Seconds from `a` to `b`, two decimals' worth.
pub fn seconds_between(a: &jiff::Timestamp, b: &jiff::Timestamp) -> f64 {
    b.duration_since(*a).as_secs_f64()
}

/// `x` with two decimals.
pub fn two(x: f64) -> String {
    format!("{x:.2}")
}
