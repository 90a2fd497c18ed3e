//! The kube I/O shell: one kube-runtime `Controller` per kind, the shared [`Context`], the
//! error policy, and the two writes every reconciler makes (status and Events).
//!
//! Each reconciler observes (reads what it needs from the API or a shared cache), calls its
//! pure decision function in `crate::decide`, and writes the status only when it differs from
//! what is stored. An Event is published when the `Ready` condition changes status or reason.
//!
//! Relations that make one object's state depend on another's are declared once per kind, in
//! its module's `relate()`, as watches with store-backed mappers: an Application waits for its
//! Environments and Secrets, an Environment for its upstream and its target namespace, a
//! Release and a BuildJob for their Application. Kinds read by more than one reconciler live in
//! shared caches (`cache.rs`).

mod application;
mod buildjob;
mod cache;
mod environment;
mod leader;
mod release;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::conditions::{self, READY};
use crate::api::{Application, BuildJob, Condition, Environment, FIELD_MANAGER, Release, Time};
use crate::telemetry::{self, Endpoints, Metrics};
use cache::{Cache, Synced};
pub use leader::{Elector, LeaseSettings, Lost, StopSignal, run_while_leading};

/// An object as the caches hold it: parsed, or the reason it could not be. One object that
/// does not match the Rust types (written under an older CRD version, say) is reported on its
/// own instead of failing the whole watch and stalling every object of its kind.
pub type Guarded<K> = DeserializeGuard<K>;

/// The object behind a guard, or `None` after reporting why it cannot be read: a Warning
/// Event (the status cannot be written through a type the object does not fit) and a log line.
async fn readable<'a, K>(object: &'a Guarded<K>, context: &Context) -> Option<&'a K>
where
    K: Resource<DynamicType = ()>,
{
    match &object.0 {
        Ok(valid) => Some(valid),
        Err(invalid) => {
            let name = object.meta().name.clone().unwrap_or_default();
            tracing::warn!(kind = %K::kind(&()), %name, error = %invalid, "cannot read the object");
            let event = Event {
                type_: EventType::Warning,
                reason: "InvalidObject".into(),
                note: Some(conditions::truncate(
                    &format!(
                        "Ferry cannot read this object ({invalid}); correct it to match `kubectl explain {}`",
                        K::kind(&()).to_lowercase()
                    ),
                    1024,
                )),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(error) = context
                .recorder
                .publish(&event, &object.object_ref(&()))
                .await
            {
                tracing::warn!(error = %error, "cannot publish an Event");
            }
            None
        }
    }
}

/// What a watch mapper returns: the objects in `store` (in `namespace`, or in any namespace
/// when `None`) whose content satisfies `relates`. An object Ferry cannot read relates to
/// nothing; it is reported when it is reconciled itself.
fn related<K>(
    store: &Store<Guarded<K>>,
    namespace: Option<&str>,
    relates: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<Guarded<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|object| namespace.is_none_or(|ns| object.namespace().as_deref() == Some(ns)))
        .filter(|object| object.0.as_ref().is_ok_and(&relates))
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Watch only this namespace (for tests and namespace-scoped installs).
    pub namespace: Option<String>,
    /// Reconcile only while holding this Lease (several replicas); None runs at once.
    pub leader_election: Option<LeaseSettings>,
}

/// A clock the tests can set.
pub trait Clock: Send + Sync {
    fn now(&self) -> Time;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        Time(jiff::Timestamp::now())
    }
}

/// What every reconciler shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub clock: Box<dyn Clock>,
    pub namespace: Option<String>,
    /// Caches of the kinds one reconciler reads of another.
    pub environments: Store<Guarded<Environment>>,
    pub environments_synced: Synced,
    pub applications: Store<Guarded<Application>>,
    pub applications_synced: Synced,
    pub releases: Store<Guarded<Release>>,
    pub releases_synced: Synced,
    /// Consecutive failures per object, for backoff; cleared by a success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// An Api for `K` in the namespace of an object being reconciled.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Why a reconcile failed. User mistakes are not errors: they become conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no namespace")]
    MissingNamespace,
    #[error("reading {what}: {source}")]
    Observe {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("serializing the status: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl Error {
    /// A stable name for the metric label and the Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingNamespace => "MissingNamespace",
            Self::Observe { .. } => "ObserveFailed",
            Self::WriteStatus(_) => "WriteStatusFailed",
            Self::Serialize(_) => "SerializeFailed",
        }
    }

    pub(crate) fn observe(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Observe { what, source }
    }
}

/// Runs the four controllers and the HTTP endpoints until SIGTERM or SIGINT; with leader
/// election, only while this replica holds the Lease.
pub async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::try_default().await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let on_signal = shutdown_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        on_signal.send_replace(true);
    });
    let mut registry = Registry::with_prefix("ferry");
    let metrics = Arc::new(Metrics::default());
    metrics.register(&mut registry);
    let endpoints = Arc::new(Endpoints {
        registry,
        ready: Default::default(),
    });
    let http = telemetry::serve(
        settings.http_addr,
        endpoints.clone(),
        wait_for(shutdown_rx.clone()),
    );
    let work = async {
        let outcome = match settings.leader_election {
            None => {
                run_controllers(
                    client,
                    settings.namespace,
                    metrics,
                    Box::new(SystemClock),
                    endpoints,
                    wait_for(shutdown_rx),
                )
                .await;
                Ok(())
            }
            Some(lease) => {
                lead(
                    client,
                    lease,
                    settings.namespace,
                    metrics,
                    endpoints,
                    shutdown_rx,
                )
                .await
            }
        };
        // Whatever ended the work (a signal, lost leadership) also ends the HTTP server.
        shutdown_tx.send_replace(true);
        outcome
    };
    let (http, work) = tokio::join!(http, work);
    http?;
    work
}

/// Stands by until this replica holds the Lease, then runs the controllers while it does.
/// Losing the Lease aborts them at once, in-flight reconciles included (`leader.rs`).
async fn lead(
    client: Client,
    lease: LeaseSettings,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    endpoints: Arc<Endpoints>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let elector = Elector::new(client.clone(), lease);
    // A standby is healthy and ready: it must not hold up a rollout of the controller itself.
    endpoints.ready.store(true, Ordering::Relaxed);
    run_while_leading(elector, wait_for(shutdown), |stop| {
        run_controllers(
            client,
            namespace,
            metrics,
            Box::new(SystemClock),
            endpoints,
            stop,
        )
    })
    .await?;
    Ok(())
}

/// Runs the four controllers until `shutdown` resolves. Tests call this directly.
pub async fn run_controllers(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    clock: Box<dyn Clock>,
    endpoints: Arc<Endpoints>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let ns = namespace.as_deref();
    let config = watcher::Config::default().any_semantic();

    let applications = Cache::<Guarded<Application>>::new();
    let environments = Cache::<Guarded<Environment>>::new();
    let releases = Cache::<Guarded<Release>>::new();
    let buildjobs = Cache::<Guarded<BuildJob>>::new();

    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter()),
        metrics,
        clock,
        namespace: namespace.clone(),
        environments: environments.store.clone(),
        environments_synced: environments.synced.clone(),
        applications: applications.store.clone(),
        applications_synced: applications.synced.clone(),
        releases: releases.store.clone(),
        releases_synced: releases.synced.clone(),
        failures: Mutex::default(),
    });

    let application_controller = application::relate(
        Controller::for_shared_stream(applications.subscribe(), applications.store.clone()),
        &context,
        environments.subscribe_with_deletions(),
        releases.subscribe_with_deletions(),
        config.clone(),
    );
    let environment_controller = environment::relate(
        Controller::for_shared_stream(environments.subscribe(), environments.store.clone()),
        &context,
        environments.subscribe_with_deletions(),
        config.clone(),
    );
    let release_controller = release::relate(
        Controller::for_shared_stream(releases.subscribe(), releases.store.clone()),
        applications.subscribe_with_deletions(),
    );
    let buildjob_controller = buildjob::relate(
        Controller::for_shared_stream(buildjobs.subscribe(), buildjobs.store.clone()),
        &context,
        applications.subscribe_with_deletions(),
        config.clone(),
    );

    let readiness = {
        let synced = [
            applications.synced.clone(),
            environments.synced.clone(),
            releases.synced.clone(),
            buildjobs.synced.clone(),
        ];
        async move {
            futures::future::join_all(synced.iter().map(Synced::wait)).await;
            endpoints.ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced; ready");
        }
    };

    futures::join!(
        applications.run(scoped_api(&client, ns), config.clone(), shutdown.clone()),
        environments.run(scoped_api(&client, ns), config.clone(), shutdown.clone()),
        releases.run(scoped_api(&client, ns), config.clone(), shutdown.clone()),
        buildjobs.run(scoped_api(&client, ns), config, shutdown.clone()),
        readiness,
        application_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(application::reconcile, error_policy, context.clone())
            .for_each(log_outcome),
        environment_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(environment::reconcile, error_policy, context.clone())
            .for_each(log_outcome),
        release_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(release::reconcile, error_policy, context.clone())
            .for_each(log_outcome),
        buildjob_controller
            .graceful_shutdown_on(shutdown)
            .run(buildjob::reconcile, error_policy, context.clone())
            .for_each(log_outcome),
    );
}

fn reporter() -> Reporter {
    Reporter {
        controller: "ferry".into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

async fn log_outcome<K, E: std::fmt::Display>(
    outcome: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, watcher::Error>>,
) where
    K: Resource,
{
    if let Err(error) = outcome {
        match error {
            // Already logged and counted by the error policy.
            kube::runtime::controller::Error::ReconcilerFailed(..) => {}
            other => tracing::warn!(error = %other, "controller stream error"),
        }
    }
}

/// Transient faults back off per object: 1 s, 2 s, 4 s ... up to 5 minutes. The first failure
/// of a streak is also a Warning Event whose reason is the error's category.
fn error_policy<K>(object: Arc<K>, error: &Error, context: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()> + ResourceExt,
{
    let kind = K::kind(&()).into_owned();
    let key = format!(
        "{kind}/{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    let attempts = {
        let mut failures = context
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    context
        .metrics
        .reconcile_failed(static_kind(&kind), error.category());
    tracing::warn!(%kind, name = %object.name_any(), error = %error, attempts, "reconcile failed");
    if attempts == 1 {
        let event = Event {
            type_: EventType::Warning,
            reason: error.category().to_owned(),
            note: Some(conditions::truncate(&error_chain(error), 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        let reference = object.object_ref(&());
        let recorder = context.recorder.clone();
        // The error policy cannot wait; the Event is best effort, like every Event.
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %error, "cannot publish an Event");
            }
        });
    }
    let delay = 2u64
        .saturating_pow(attempts.saturating_sub(1).min(9))
        .min(300);
    Action::requeue(Duration::from_secs(delay))
}

/// An error with its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Clears an object's failure count after a successful reconcile.
fn succeeded<K: Resource<DynamicType = ()> + ResourceExt>(context: &Context, object: &K) {
    let key = format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    context
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&key);
}

fn static_kind(kind: &str) -> &'static str {
    match kind {
        "Application" => "Application",
        "Environment" => "Environment",
        "Release" => "Release",
        "BuildJob" => "BuildJob",
        _ => "Other",
    }
}

/// Writes `status` with server-side apply unless it equals what is stored, then announces a
/// change of the `Ready` condition with an Event. Returns whether anything was written.
async fn write_status<K, S>(
    context: &Context,
    object: &K,
    old: Option<&S>,
    new: &S,
    conditions_of: impl Fn(&S) -> &[Condition],
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        tracing::debug!("status unchanged");
        return Ok(false);
    }
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = context.api(&namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": serde_json::to_value(new).map_err(Error::Serialize)?,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::WriteStatus)?;
    tracing::debug!("status written");

    let before = old.and_then(|s| conditions::find(conditions_of(s), READY));
    if let Some(after) = conditions::find(conditions_of(new), READY)
        && before.is_none_or(|b| b.status != after.status || b.reason != after.reason)
    {
        let stalled = conditions::is_true(conditions_of(new), conditions::STALLED);
        announce(context, object, after, stalled).await;
    }
    Ok(true)
}

/// Publishes the Event for a `Ready` transition: a Warning when the object is stalled (a
/// person must act), Normal otherwise. An Event that cannot be written is logged, not retried:
/// the status already says the same.
async fn announce<K>(context: &Context, object: &K, ready: &Condition, stalled: bool)
where
    K: Resource<DynamicType = ()>,
{
    let failed = ready.reason.ends_with("Failed");
    let event = Event {
        type_: if stalled || failed {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ready.reason.clone(),
        note: Some(conditions::truncate(&ready.message, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &object.object_ref(&()))
        .await
    {
        tracing::warn!(error = %error, "cannot publish an Event");
    }
}

/// The metadata of Secrets over the watched scope: only names and keys matter to the
/// relations, and a metadata watch keeps no credential in the controller's memory.
fn secret_metadata(context: &Context) -> Api<PartialObjectMeta<crate::api::Secret>> {
    match context.namespace.as_deref() {
        Some(ns) => Api::namespaced(context.client.clone(), ns),
        None => Api::all(context.client.clone()),
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// A future that resolves when the shutdown flag is raised; cheap to clone.
pub fn wait_for(
    mut flag: watch::Receiver<bool>,
) -> futures::future::Shared<futures::future::BoxFuture<'static, ()>> {
    async move {
        while !*flag.borrow_and_update() {
            if flag.changed().await.is_err() {
                return;
            }
        }
    }
    .boxed()
    .shared()
}
