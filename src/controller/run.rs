//! Running: the HTTP endpoints, leadership, the shared caches and the four controllers, until
//! SIGTERM or SIGINT (or a lost Lease).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::cache::Caches;
use super::error;
use super::leader::{Elector, LeaseSettings, run_while_leading};
use super::{Clock, Context, Settings, SystemClock};
use super::{application, buildjob, environment, release};
use crate::telemetry::{self, Endpoints, Metrics};

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
                    settings.service_account,
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
                    settings.service_account,
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
    service_account: String,
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
            service_account,
            stop,
        )
    })
    .await?;
    Ok(())
}

/// Runs the shared caches and the four controllers until `shutdown` resolves. Tests call this
/// directly.
pub async fn run_controllers(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    clock: Box<dyn Clock>,
    endpoints: Arc<Endpoints>,
    service_account: String,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let ns = namespace.as_deref();
    let config = watcher::Config::default().any_semantic();
    let caches = Caches::new();
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter()),
        metrics,
        clock,
        caches: caches.views(),
        service_account,
        failures: Default::default(),
    });

    let application_controller = application::relate(
        Controller::for_shared_stream(
            caches.applications.subscribe(),
            context.caches.applications.store().clone(),
        ),
        &context,
        caches.environments.subscribe_with_deletions(),
        caches.releases.subscribe_with_deletions(),
    );
    let environment_controller = environment::relate(
        Controller::for_shared_stream(
            caches.environments.subscribe(),
            context.caches.environments.store().clone(),
        ),
        &context,
        caches.environments.subscribe_with_deletions(),
        config.clone(),
    );
    let release_controller = release::relate(
        Controller::for_shared_stream(
            caches.releases.subscribe(),
            context.caches.releases.store().clone(),
        ),
        caches.applications.subscribe_with_deletions(),
    );
    let buildjob_controller = buildjob::relate(
        Controller::for_shared_stream(
            caches.buildjobs.subscribe(),
            context.caches.buildjobs.store().clone(),
        ),
        caches.applications.subscribe_with_deletions(),
    );

    // A deleted object's failure streak is forgotten, so the map of streaks cannot grow
    // without bound (a recreated object has a new UID anyway).
    let forget = {
        let context = context.clone();
        caches
            .deleted_keys()
            .take_until(shutdown.clone())
            .for_each(move |key| {
                context.failures.clear(&key);
                async {}
            })
    };

    let readiness = {
        let synced = caches.synced();
        async move {
            synced.await;
            endpoints.ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced; ready");
        }
    };

    futures::join!(
        caches.run(&client, ns, &config, shutdown.clone()),
        readiness,
        forget,
        application_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(application::reconcile, error::policy, context.clone())
            .for_each(log_outcome),
        environment_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(environment::reconcile, error::policy, context.clone())
            .for_each(log_outcome),
        release_controller
            .graceful_shutdown_on(shutdown.clone())
            .run(release::reconcile, error::policy, context.clone())
            .for_each(log_outcome),
        buildjob_controller
            .graceful_shutdown_on(shutdown)
            .run(buildjob::reconcile, error::policy, context.clone())
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
