//! Integration tests against a real kube-apiserver and etcd (no node).
//!
//! Run them through `make integration`, which starts the API server with `e2e/apiserver.sh`
//! and points `KUBECONFIG` at it. Every test works in a namespace of its own and runs its own
//! controller scoped to that namespace, so tests run in parallel without seeing each other.

mod controller;
mod install;
mod validation;

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferry::api::{CustomResourceDefinition, FIELD_MANAGER, Namespace};
use ferry::controller::{SystemClock, run_controllers, wait_for};
use ferry::telemetry::{Endpoints, Metrics};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

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

async fn install_crds(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in ferry::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
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

/// A namespace for one test, deleted by `cleanup`.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
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
        create_namespace(&client, &name).await;
        Self { client, name }
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
    pub async fn create<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let object: K = serde_yaml::from_str(yaml).expect("test YAML parses");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {} in {}: {e}", object.name_any(), self.name))
    }

    /// Waits until the named object satisfies `check`; on timeout, dumps the namespace and fails.
    pub async fn wait_for<K>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&K) -> bool + Send + 'static,
    ) -> K
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let api = self.api::<K>();
        let waited = tokio::time::timeout(
            WAIT,
            await_condition(api.clone(), name, move |o: Option<&K>| {
                o.is_some_and(&check)
            }),
        )
        .await;
        match waited {
            Ok(Ok(Some(object))) => object,
            other => {
                self.dump().await;
                panic!("{name} did not reach \"{what}\" within {WAIT:?} ({other:?})");
            }
        }
    }

    /// Prints every Ferry object and Event of the namespace, to read a failure by.
    pub async fn dump(&self) {
        eprintln!("---- state of namespace {} ----", self.name);
        for kind in ["Application", "Environment", "Release", "BuildJob"] {
            if let Ok(list) = self.dynamic(kind).list(&ListParams::default()).await {
                for object in list {
                    eprintln!("{}", serde_yaml::to_string(&object).unwrap_or_default());
                }
            }
        }
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        if let Ok(list) = events.list(&ListParams::default()).await {
            for e in list {
                eprintln!(
                    "event {} {} {}: {}",
                    e.regarding.and_then(|r| r.name).unwrap_or_default(),
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                );
            }
        }
    }

    pub async fn cleanup(self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}
    }))
    .expect("a namespace");
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// A controller running in this process, scoped to one namespace.
pub struct RunningController {
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunningController {
    pub fn start(client: &Client, namespace: &str) -> Self {
        // The controllers' logs, for debugging: RUST_LOG=ferry=debug make integration
        if std::env::var_os("RUST_LOG").is_some() {
            ferry::telemetry::init_logging(ferry::telemetry::LogFormat::Text);
        }
        let (shutdown, flag) = watch::channel(false);
        let endpoints = Arc::new(Endpoints {
            registry: Default::default(),
            ready: Default::default(),
        });
        let handle = tokio::spawn(run_controllers(
            client.clone(),
            Some(namespace.to_owned()),
            Arc::new(Metrics::default()),
            Box::new(SystemClock),
            endpoints,
            "ferry-system:ferry".to_owned(),
            wait_for(flag),
        ));
        Self { shutdown, handle }
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
