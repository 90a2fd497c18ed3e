//! Integration tests against a real kube-apiserver and etcd (no node).
//!
//! Run them through `make integration`, which starts the API server with `e2e/apiserver.sh`
//! and points `KUBECONFIG` at it. Every test works in a namespace of its own and runs its own
//! controller scoped to that namespace, so tests run in parallel without seeing each other.
//!
//! A test body runs inside `with_temp_ns`: when it panics, the namespace's Ferry objects and
//! Events are printed, and the namespace is deleted whether the test passed or not. The
//! objects tests start from are named builders in `fixtures`.

mod approval;
mod builds;
mod controller;
mod environments;
mod fixtures;
#[path = "../support/gitserver.rs"]
mod gitserver;
#[path = "../support/hosts.rs"]
mod hosts;
mod install;
mod leadership;
mod ownership;
mod promotion;
mod provenance;
mod records;
mod rollouts;
mod scale;
mod shards;
mod status;
mod validation;
mod webhook;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferry::adapters::git::GixRemote;
use ferry::api::{CustomResourceDefinition, Namespace};
use ferry::controller::{
    BuildSettings, SystemClock, Wiring, counted, pushes, run_controllers, wait_for,
};
use ferry::decide::shard::Shard;
use ferry::telemetry::{Endpoints, Metrics};
use futures::{Future, FutureExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

/// A real git server for the tests' Applications, started once per test binary and stopped
/// when it exits.
pub fn git_server() -> &'static gitserver::GitServer {
    static SERVER: std::sync::OnceLock<gitserver::GitServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| gitserver::GitServer::start(None))
}

/// The repository the fixtures' Applications build from: `shop` on [`git_server`], with one
/// commit on `main`.
pub fn shop_repository() -> &'static str {
    static REPOSITORY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REPOSITORY.get_or_init(|| {
        let url = git_server().url("shop");
        let work = gitserver::WorkingCopy::new();
        work.commit("First version of the shop", "index.html", "<h1>shop</h1>\n");
        work.push(&url, "main");
        url
    })
}

/// How long any wait in these tests may take before the test fails with a state dump.
pub const WAIT: Duration = Duration::from_secs(30);

static CRDS: OnceCell<()> = OnceCell::const_new();

/// A client for the test API server, with the CRDs installed once per test binary.
pub async fn client() -> Client {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG must point at the test API server: run `make integration`");
    CRDS.get_or_init(|| install_crds(client.clone())).await;
    client
}

/// A client for the test API server acting as `user` (impersonated by the test's admin).
pub async fn client_as(user: &str) -> Client {
    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).expect("an impersonating client")
}

/// A namespaced kind the tests wait on.
pub trait Watched:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static
{
}

/// The API server's answer to `user`'s write: `Err` is its refusal (403), as its message.
pub fn refusal<T>(user: &str, result: Result<T, kube::Error>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(status.message),
        Err(e) => panic!("{user}'s write failed otherwise than by a refusal: {e}"),
    }
}

/// Asserts that a refusal's `message` says each of `words`.
pub fn assert_says(message: &str, words: &[&str]) {
    for words in words {
        assert!(
            message.contains(words),
            "the refusal lacks {words:?}: {message}"
        );
    }
}

/// Waits until `attempt` (a dry run) is refused: the API server loads policies, bindings and
/// their parameters from its own informers a moment after they are created, and no object
/// shows when.
pub async fn await_enforcement<F, Fut, T>(what: &str, attempt: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
    T: Debug,
{
    eventually(what, || async {
        match attempt().await {
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The API server's refusal (403) of `result`, as its message; fails the test if `what` was
/// accepted or failed otherwise.
pub fn refused<T: Debug>(what: &str, result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => status.message,
        other => panic!("{what} was not refused: {other:?}"),
    }
}

/// A namespaced kind the tests write.
pub trait Kind: Watched + Serialize {}

impl<K: Watched + Serialize> Kind for K {}

/// A binding of a Role or ClusterRole to users, for [`grant_users`]: the binding's name, the
/// kind (`Role` or `ClusterRole`), the role's name and the users.
pub type UserBinding<'a> = (&'a str, &'a str, &'a str, &'a [&'a str]);

/// Creates, in `ns`, the Roles `roles` (each a name and its rules, as JSON) and the
/// RoleBindings `bindings`, for tests that impersonate those users with [`client_as`].
pub async fn grant_users(
    ns: &TestNamespace,
    roles: &[(&str, serde_json::Value)],
    bindings: &[UserBinding<'_>],
) {
    for (name, rules) in roles {
        let role: Role =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "rules": rules}))
                .expect("a Role");
        ns.api::<Role>()
            .create(&PostParams::default(), &role)
            .await
            .unwrap_or_else(|e| panic!("creating Role {name}: {e}"));
    }
    for (name, kind, role, users) in bindings {
        let subjects: Vec<_> = users
            .iter()
            .map(|u| {
                serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})
            })
            .collect();
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects,
        }))
        .expect("a RoleBinding");
        ns.api::<RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("creating RoleBinding {name}: {e}"));
    }
}

async fn install_crds(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in ferry::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            // As `kubectl apply --server-side` installs them.
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        tokio::time::timeout(
            WAIT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} was not established within {WAIT:?}"))
        .expect("watching the CRD");
    }
}

/// How often [`eventually`] tries again.
const POLL: Duration = Duration::from_millis(200);

/// Tries `attempt` until it succeeds, for state no watch can deliver (a process's HTTP
/// endpoint, whether the API server enforces an admission policy yet); fails the test after
/// [`WAIT`] with the last error. Objects are waited for with `TestNamespace::wait_for` and
/// its siblings, never polled.
pub async fn eventually<T, E, Fut>(what: &str, mut attempt: impl FnMut() -> Fut) -> T
where
    E: Debug,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        match attempt().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {WAIT:?}; the last attempt gave {last:?}")
            }
            Err(_) => {}
        }
    }
}

/// A namespace for one test. Tests get one from `with_temp_ns`, which dumps its state when the
/// test panics and deletes it in any case; `new` and `cleanup` remain for tests that manage
/// the namespace themselves.
#[derive(Clone)]
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    /// Set when `with_temp_ns` dumps the state on a panic, so that a failed wait need not.
    dumped_by_wrapper: bool,
}

/// Labels the extra namespaces a test creates (`create_sibling`) with the namespace of the
/// test, so that cleanup finds and deletes them too.
const SIBLING_OF: &str = "test.ferry.dev/sibling-of";

/// Runs `test` in a new namespace named after `prefix`. When the test panics, prints every
/// Ferry object (with its status) and every Event of the namespace; in any case deletes the
/// namespace and the siblings the test created; then lets the panic go on.
///
/// ```ignore
/// with_temp_ns("missing-env", |ns| async move {
///     ns.create_object(fixtures::dev()).await;
/// })
/// .await;
/// ```
pub async fn with_temp_ns<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ns = TestNamespace::new(prefix).await;
    ns.dumped_by_wrapper = true;
    // The body's panic is caught here so that the dump and the cleanup still run; the
    // namespace handle is not touched by the body's unwinding (it works on a clone).
    let outcome = AssertUnwindSafe(test(ns.clone())).catch_unwind().await;
    if outcome.is_err() {
        ns.dump().await;
    }
    let deleted = ns.delete().await;
    match (outcome, deleted) {
        (Err(panic), deleted) => {
            if let Err(e) = deleted {
                eprintln!("could not delete namespace {}: {e}", ns.name);
            }
            std::panic::resume_unwind(panic);
        }
        (Ok(()), Err(e)) => panic!("deleting namespace {}: {e}", ns.name),
        (Ok(()), Ok(())) => {}
    }
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let client = client().await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{prefix}-{:x}{}",
            nanos & 0xfffff,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        create_namespace(&client, &name, BTreeMap::new()).await;
        Self {
            client,
            name,
            dumped_by_wrapper: false,
        }
    }

    /// Creates another namespace, `<this namespace>-<suffix>`, deleted with this one.
    pub async fn create_sibling(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.name);
        let labels = BTreeMap::from([(SIBLING_OF.to_owned(), self.name.clone())]);
        create_namespace(&self.client, &name, labels).await;
        name
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// An untyped Api for a Ferry kind, for objects the typed API could not even represent.
    pub fn dynamic(&self, kind: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("ferry.dev", "v1alpha1", kind);
        Api::namespaced_with(
            self.client.clone(),
            &self.name,
            &ApiResource::from_gvk(&gvk),
        )
    }

    /// Creates an object given as YAML.
    pub async fn create<K: Kind>(&self, yaml: &str) -> K {
        let object: K = serde_yaml::from_str(yaml).expect("test YAML parses");
        self.create_object(object).await
    }

    /// Creates an object, such as one from `fixtures`, in this namespace.
    pub async fn create_object<K: Kind>(&self, object: K) -> K {
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {} in {}: {e}", object.name_any(), self.name))
    }

    /// Waits until the named object satisfies `check`; on timeout, fails the test with a dump
    /// of the namespace.
    pub async fn wait_for<K: Watched>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&K) -> bool + Send + 'static,
    ) -> K {
        self.wait_until(name, what, move |o: Option<&K>| o.is_some_and(&check))
            .await
            .unwrap_or_else(|| panic!("{name} is gone, yet \"{what}\" held"))
    }

    /// Waits until the named object is gone, or going: deleted, or marked for deletion. (This
    /// API server runs no garbage collector, so an object deleted in the foreground keeps its
    /// `deletionTimestamp` for good.)
    pub async fn wait_going<K: Watched>(&self, name: &str, what: &str) {
        self.wait_until(name, what, |o: Option<&K>| {
            o.is_none_or(|o| o.meta().deletion_timestamp.is_some())
        })
        .await;
    }

    /// Waits until the named object is gone.
    pub async fn wait_gone<K: Watched>(&self, name: &str, what: &str) {
        self.wait_until(name, what, |o: Option<&K>| o.is_none())
            .await;
    }

    /// Waits for an Event with this reason (Events are written just after the status); on
    /// timeout, fails the test with a dump of the namespace.
    pub async fn event_with_reason(&self, reason: &str) -> Event {
        let events = watcher(self.api::<Event>(), watcher::Config::default())
            .applied_objects()
            .try_filter(|e| std::future::ready(e.reason.as_deref() == Some(reason)));
        futures::pin_mut!(events);
        match tokio::time::timeout(WAIT, events.try_next()).await {
            Ok(Ok(Some(event))) => event,
            other => {
                if !self.dumped_by_wrapper {
                    self.dump().await;
                }
                panic!("no Event with reason {reason} within {WAIT:?} ({other:?})")
            }
        }
    }

    /// Waits, with `await_condition`, until `check` holds for the named object or its absence
    /// (`None`); on timeout, fails the test with a dump of the namespace.
    pub async fn wait_until<K: Watched>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(Option<&K>) -> bool + Send + 'static,
    ) -> Option<K> {
        let api = self.api::<K>();
        let waited = tokio::time::timeout(WAIT, await_condition(api, name, check)).await;
        match waited {
            Ok(Ok(object)) => object,
            other => {
                if !self.dumped_by_wrapper {
                    self.dump().await;
                }
                panic!("{name} did not reach \"{what}\" within {WAIT:?} ({other:?})");
            }
        }
    }

    /// Prints every Ferry object of the namespace as YAML (status included, managedFields
    /// left out) and every Event, oldest first, to read a failure by.
    pub async fn dump(&self) {
        eprintln!("---- state of namespace {} ----", self.name);
        for kind in ["Application", "Environment", "Release", "BuildJob"] {
            match self.dynamic(kind).list(&ListParams::default()).await {
                Ok(list) => {
                    for mut object in list {
                        object.metadata.managed_fields = None;
                        eprintln!(
                            "--- # {kind}\n{}",
                            serde_yaml::to_string(&object).unwrap_or_default()
                        );
                    }
                }
                Err(e) => eprintln!("--- # {kind}: cannot list: {e}"),
            }
        }
        let events: Api<Event> = self.api();
        match events.list(&ListParams::default()).await {
            Ok(list) => {
                let mut events = list.items;
                events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
                eprintln!("--- # {} Events", events.len());
                for e in events {
                    let regarding = e.regarding.unwrap_or_default();
                    eprintln!(
                        "{} {} {}/{}: {}: {}",
                        e.metadata
                            .creation_timestamp
                            .map(|t| t.0.to_string())
                            .unwrap_or_default(),
                        e.type_.unwrap_or_default(),
                        regarding.kind.unwrap_or_default(),
                        regarding.name.unwrap_or_default(),
                        e.reason.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    );
                }
            }
            Err(e) => eprintln!("--- # Events: cannot list: {e}"),
        }
        eprintln!("---- end of namespace {} ----", self.name);
    }

    /// Deletes the namespace and its siblings (for tests that do not use `with_temp_ns`).
    pub async fn cleanup(self) {
        if let Err(e) = self.delete().await {
            eprintln!("could not delete namespace {}: {e}", self.name);
        }
    }

    /// Deletes the namespace and its siblings, and waits until they are gone.
    async fn delete(&self) -> Result<(), String> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let siblings = namespaces
            .list(&ListParams::default().labels(&format!("{SIBLING_OF}={}", self.name)))
            .await
            .map_err(|e| format!("listing the siblings of {}: {e}", self.name))?;
        for name in siblings
            .into_iter()
            .map(|n| n.name_any())
            .chain([self.name.clone()])
        {
            delete_namespace(&self.client, &name).await?;
        }
        Ok(())
    }
}

async fn create_namespace(client: &Client, name: &str, labels: BTreeMap<String, String>) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .expect("a namespace");
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    // What kube-controller-manager does for every namespace of a real cluster (this API
    // server runs without it): the `default` ServiceAccount, without which the API server
    // refuses pods, build pods included.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), name);
    let default: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))
            .expect("a service account");
    accounts
        .create(&PostParams::default(), &default)
        .await
        .unwrap_or_else(|e| panic!("creating the default ServiceAccount of {name}: {e}"));
}

/// Deletes a namespace the way a cluster would, and waits until it is gone.
///
/// The test API server runs without kube-controller-manager, whose namespace controller
/// empties a deleted namespace and then removes its `kubernetes` finalizer; without it, every
/// deleted namespace would stay `Terminating` with its objects until the server stops. So
/// this does that job: once the namespace is Terminating (the API server then refuses new
/// objects in it), delete every namespaced object in it, then clear the finalizer. On a real
/// cluster this only races the namespace controller to the same end.
async fn delete_namespace(client: &Client, name: &str) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let uid = match namespaces.get_opt(name).await {
        Ok(Some(namespace)) => namespace.uid().unwrap_or_default(),
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("reading namespace {name}: {e}")),
    };
    gone_is_fine(namespaces.delete(name, &DeleteParams::default()).await)
        .map_err(|e| format!("deleting namespace {name}: {e}"))?;
    for resource in deletable_resources(client).await? {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, resource);
        gone_is_fine(
            api.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await,
        )
        .map_err(|e| format!("deleting the {} in {name}: {e}", resource.plural))?;
    }
    let finalized: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"finalizers": []}
    }))
    .expect("a namespace");
    gone_is_fine(
        namespaces
            .replace_subresource("finalize", name, &PostParams::default(), &finalized)
            .await,
    )
    .map_err(|e| format!("finalizing namespace {name}: {e}"))?;
    match tokio::time::timeout(
        WAIT,
        await_condition(namespaces, name, conditions::is_deleted(&uid)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("watching namespace {name} go: {e}")),
        Err(_) => Err(format!(
            "namespace {name} still exists {WAIT:?} after its deletion"
        )),
    }
}

/// A 404 while deleting means someone else finished the job.
fn gone_is_fine<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every namespaced resource the API server can delete as a collection, Ferry's CRDs
/// included; discovered once per test binary, after the CRDs are installed.
async fn deletable_resources(client: &Client) -> Result<&'static [ApiResource], String> {
    static RESOURCES: OnceCell<Vec<ApiResource>> = OnceCell::const_new();
    let resources = RESOURCES
        .get_or_try_init(|| async {
            let discovery = Discovery::new(client.clone()).run().await?;
            Ok::<_, kube::Error>(
                discovery
                    .groups()
                    .flat_map(|group| group.recommended_resources())
                    .filter(|(_, caps)| {
                        caps.scope == Scope::Namespaced
                            && caps.supports_operation(verbs::DELETE_COLLECTION)
                    })
                    .map(|(resource, _)| resource)
                    .collect(),
            )
        })
        .await
        .map_err(|e| format!("discovering the API server's resources: {e}"))?;
    Ok(resources)
}

/// A controller running in this process, scoped to one namespace.
pub struct RunningController {
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl RunningController {
    /// A controller for `namespace`, sending its requests with `client`, counted in its
    /// metrics as `ferry controller`'s are.
    pub fn start(client: &Client, namespace: &str) -> Self {
        Self::start_with_pushes(client, namespace).0
    }

    /// A controller for the namespaces of `shard` among `namespace`.
    pub fn start_sharded(client: &Client, namespace: &str, shard: Shard) -> Self {
        Self::start_with(client, namespace, shard).0
    }

    /// A controller, and the channel on which the webhook endpoint would hand it pushes.
    pub fn start_with_pushes(
        client: &Client,
        namespace: &str,
    ) -> (
        Self,
        tokio::sync::mpsc::Sender<ferry::adapters::webhook::PushedCommit>,
    ) {
        Self::start_with(client, namespace, Shard::default())
    }

    fn start_with(
        client: &Client,
        namespace: &str,
        shard: Shard,
    ) -> (
        Self,
        tokio::sync::mpsc::Sender<ferry::adapters::webhook::PushedCommit>,
    ) {
        // The controllers' logs, for debugging: RUST_LOG=ferry=debug make integration
        if std::env::var_os("RUST_LOG").is_some() {
            ferry::telemetry::init_logging(ferry::telemetry::LogFormat::Text);
        }
        let (shutdown, flag) = watch::channel(false);
        let endpoints = Arc::new(Endpoints {
            registry: Default::default(),
            ready: Default::default(),
        });
        let metrics = Arc::new(Metrics::default());
        let (push_tx, pushes) = pushes();
        let wiring = Wiring {
            namespace: Some(namespace.to_owned()),
            metrics: metrics.clone(),
            clock: Box::new(SystemClock),
            endpoints,
            service_account: "ferry-system:ferry".to_owned(),
            build: BuildSettings {
                ferry_image: "registry.local/ferry:test".to_owned(),
            },
            remote: Arc::new(GixRemote::default()),
            pushes,
            shard,
        };
        let client = counted(client.clone(), metrics.clone());
        let handle = tokio::spawn(run_controllers(client, wiring, wait_for(flag)));
        let running = Self {
            shutdown,
            handle,
            metrics,
        };
        (running, push_tx)
    }

    /// Reconciles of `kind` started so far.
    pub fn reconciles(&self, kind: &'static str) -> u64 {
        self.metrics.reconciles(kind)
    }

    /// Builds that finished with `outcome` so far (`ferry_builds_total`).
    pub fn builds(&self, outcome: &'static str) -> u64 {
        self.metrics.builds(outcome)
    }

    /// Requests to the API server with `verb` on `resource` so far.
    pub fn api_requests(&self, verb: &'static str, resource: &str) -> u64 {
        self.metrics.api_requests(verb, resource)
    }

    /// How many objects its cache `cache` holds (`ferry_cached_objects`).
    pub fn cached(&self, cache: &str) -> i64 {
        self.metrics.cached(cache).get()
    }

    /// Status writes of `kind` sent so far.
    pub fn status_writes(&self, kind: &'static str) -> u64 {
        self.metrics.status_writes(kind)
    }

    /// Stops the controller the way SIGTERM does and waits for it to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the controller shuts down gracefully")
            .expect("the controller task did not panic");
    }
}
