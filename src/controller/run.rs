//! Running: the HTTP endpoints (probes and metrics; push webhooks), leadership, the shared
//! caches and the four controllers, until SIGTERM or SIGINT (or a lost Lease).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use tokio::sync::mpsc;

use super::cache::{Cache, Caches};
use super::delivery::{Children, application_of, owner_of};
use super::error;
use super::leader::{Elector, LeaseSettings, run_while_leading};
use super::{BuildSettings, Clock, Config, Context, External, Settings, SystemClock};
use super::{application, buildjob, environment, release};
use crate::adapters::git::{GixRemote, RemoteRefs};
use crate::adapters::webhook::{KubeWebhookKeys, PushedCommit};
use crate::api::labels::{
    APPLICATION_NAMESPACE_LABEL, BUILDJOB_LABEL, ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use crate::decide::shard::Shard;
use crate::http::{Webhooks, serve_webhooks};
use crate::telemetry::{self, Endpoints, Metrics};

/// Pushes the webhook endpoint accepted, on their way to the Application controller.
pub type Pushes = mpsc::Receiver<PushedCommit>;

/// How many accepted pushes wait for the controller before the endpoint answers 503.
const PUSH_BUFFER: usize = 256;

/// A channel for accepted pushes: the webhook endpoint sends, the controllers receive.
pub fn pushes() -> (mpsc::Sender<PushedCommit>, Pushes) {
    mpsc::channel(PUSH_BUFFER)
}

/// What the controllers run with besides the API client.
pub struct Wiring {
    /// Watch only this namespace (tests, namespace-scoped installs); `None` watches all.
    pub namespace: Option<String>,
    pub metrics: Arc<Metrics>,
    pub clock: Box<dyn Clock>,
    pub endpoints: Arc<Endpoints>,
    /// Ferry's ServiceAccount as `namespace:name` (see [`Settings::service_account`]).
    pub service_account: String,
    pub build: BuildSettings,
    pub remote: Arc<dyn RemoteRefs>,
    pub pushes: Pushes,
    /// The namespaces this controller serves (`decide::shard`); the default serves all.
    pub shard: Shard,
}

/// Runs the four controllers and the HTTP endpoints (probes and metrics; push webhooks) until
/// SIGTERM or SIGINT; with leader election, only while this replica holds the Lease.
pub async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Ferry's own metrics under `ferry_`, the standard process metrics under their usual names.
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::default());
    metrics.register(registry.sub_registry_with_prefix("ferry"));
    registry.register_collector(Box::new(telemetry::process::ProcessCollector));
    let client = counted(Client::try_default().await?, metrics.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let on_signal = shutdown_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        on_signal.send_replace(true);
    });
    let build = BuildSettings {
        ferry_image: match settings.build_image {
            Some(image) => image,
            None => own_image(&client).await?,
        },
    };
    tracing::info!(image = %build.ferry_image, "build pods fetch and publish with this image");
    let endpoints = Arc::new(Endpoints {
        registry,
        ready: Default::default(),
    });
    let http = telemetry::serve(
        settings.http_addr,
        endpoints.clone(),
        wait_for(shutdown_rx.clone()),
    );
    let (push_tx, pushes) = pushes();
    // Served by every replica; a standby's channel is not drained, so a push it accepts
    // waits until it leads, or is answered 503 when the buffer is full. Polling notices the
    // commit either way.
    let webhooks = serve_webhooks(
        settings.webhook_addr,
        Arc::new(Webhooks {
            keys: Arc::new(KubeWebhookKeys {
                client: client.clone(),
            }),
            pushes: push_tx,
            metrics: metrics.clone(),
            shard: settings.shard,
        }),
        wait_for(shutdown_rx.clone()),
    );
    let wiring = Wiring {
        namespace: settings.namespace,
        metrics,
        clock: Box::new(SystemClock),
        endpoints,
        service_account: settings.service_account,
        build,
        remote: Arc::new(GixRemote::default()),
        pushes,
        shard: settings.shard,
    };
    let work = async {
        let outcome = match settings.leader_election {
            None => {
                run_controllers(client, wiring, wait_for(shutdown_rx)).await;
                Ok(())
            }
            Some(lease) => lead(client, lease, wiring, shutdown_rx).await,
        };
        // Whatever ended the work (a signal, lost leadership) also ends the HTTP servers.
        shutdown_tx.send_replace(true);
        outcome
    };
    let (http, webhooks, work) = tokio::join!(http, webhooks, work);
    http?;
    webhooks?;
    work
}

/// Ferry's own image, from its pod: build pods run their fetch and publish steps with it, so
/// `kubectl set image` on Ferry's Deployment changes both.
async fn own_image(client: &Client) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let missing = "cannot tell Ferry's own image: set --build-image (FERRY_BUILD_IMAGE), or \
                   POD_NAME and POD_NAMESPACE from the downward API";
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        return Err(missing.into());
    };
    let pod = Api::<Pod>::namespaced(client.clone(), &namespace)
        .get(&name)
        .await
        .map_err(|e| format!("reading Ferry's own pod {namespace}/{name}: {e}"))?;
    let image = pod
        .spec
        .and_then(|spec| spec.containers.into_iter().find(|c| c.name == "ferry"))
        .and_then(|c| c.image);
    image.ok_or_else(|| {
        format!("{missing} (pod {namespace}/{name} has no container \"ferry\")").into()
    })
}

/// Stands by until this replica holds the Lease, then runs the controllers while it does.
/// Losing the Lease aborts them at once, in-flight reconciles included (`leader.rs`).
async fn lead(
    client: Client,
    lease: LeaseSettings,
    wiring: Wiring,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let elector = Elector::new(client.clone(), lease);
    // A standby is healthy and ready: it must not hold up a rollout of the controller itself.
    wiring.endpoints.ready.store(true, Ordering::Relaxed);
    run_while_leading(elector, wait_for(shutdown), |stop| {
        run_controllers(client, wiring, stop)
    })
    .await?;
    Ok(())
}

/// Runs the shared caches and the four controllers until `shutdown` resolves. Tests call this
/// directly.
pub async fn run_controllers(
    client: Client,
    wiring: Wiring,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let Wiring {
        namespace,
        metrics,
        clock,
        endpoints,
        service_account,
        build,
        remote,
        pushes,
        shard,
    } = wiring;
    let ns = namespace.as_deref();
    let config = watcher::Config::default().any_semantic();
    let caches = Caches::new(shard, &metrics);
    if shard.is_split() {
        tracing::info!(%shard, "serving the namespaces of shard {shard}; `ferry shard --of {} NAMESPACE` names the shard of one", shard.count);
    }
    // A build pod runs in its Application's namespace; a workload carries its Application's
    // namespace in a label, wherever it runs.
    let in_namespace =
        move |pod: &Pod| shard.serves(pod.metadata.namespace.as_deref().unwrap_or_default());
    let labelled = move |meta: &kube::api::ObjectMeta| {
        let labels = meta.labels.as_ref();
        let namespace = labels.and_then(|l| l.get(APPLICATION_NAMESPACE_LABEL));
        namespace.is_some_and(|n| shard.serves(n))
    };
    // Only the pods Ferry made for builds, not every pod of the cluster.
    let build_pods = Cache::<Pod>::new()
        .kept(Arc::new(in_namespace))
        .counted(metrics.cached("BuildPod"));
    let build_pods_config = watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{BUILDJOB_LABEL}"))
        .any_semantic();
    // Only the workloads Ferry runs applications as (labelled with their environment).
    let children_config = watcher::Config::default()
        .labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{ENVIRONMENT_LABEL}"
        ))
        .any_semantic();
    // The workloads are held as JSON, decoded when their Application's reconcile reads them
    // (`Cache::packed`): a third of the memory of typed objects.
    let deployments = Cache::<Deployment>::new()
        .grouped(application_of)
        .packed()
        .kept(Arc::new(move |d: &Deployment| labelled(&d.metadata)))
        .counted(metrics.cached("Deployment"));
    let services = Cache::<Service>::new()
        .grouped(application_of)
        .packed()
        .kept(Arc::new(move |s: &Service| labelled(&s.metadata)))
        .counted(metrics.cached("Service"));
    let app_pods = Cache::<Pod>::new()
        .trimmed(super::delivery::trim_pod)
        .grouped(application_of)
        .packed()
        .kept(Arc::new(move |p: &Pod| labelled(&p.metadata)))
        .counted(metrics.cached("Pod"));
    // Applications that went on without a look-up of their branch, to reconcile again when it
    // ends (`sources::LOOK_UP_WAIT`).
    let (woken_tx, woken) = futures::channel::mpsc::unbounded::<(String, String)>();
    let context = Arc::new(Context {
        client: client.clone(),
        events: super::events::EventWriter::new(client.clone(), std::env::var("POD_NAME").ok()),
        metrics,
        clock,
        caches: caches.views(
            build_pods.view(),
            Children {
                deployments: deployments.view(),
                services: services.view(),
                pods: app_pods.view(),
            },
        ),
        external: External {
            remote,
            sources: super::sources::Sources::new(woken_tx),
            runs: Default::default(),
        },
        config: Config {
            service_account,
            build,
        },
        failures: Default::default(),
        own_writes: Default::default(),
    });

    // A push webhook: the Application looks at its branch now.
    let pushed = {
        let context = context.clone();
        futures::stream::unfold(pushes, |mut pushes| async move {
            pushes.recv().await.map(|push| (push, pushes))
        })
        .map(move |push: PushedCommit| {
            tracing::info!(namespace = %push.namespace, application = %push.application, commit = %push.commit, "push received");
            context.external.sources.pushed(&push.namespace, &push.application);
            ObjectRef::new(&push.application).within(&push.namespace)
        })
    };
    let application_controller = application::relate(
        Controller::for_shared_stream(
            caches.applications.subscribe(),
            context.caches.applications.store().clone(),
        ),
        &context,
        caches.environments.subscribe_with_deletions(),
        caches.releases.subscribe_with_deletions(),
    )
    // A workload changing (pods getting ready, crashing; a hand edit or deletion) is a change
    // of its Application's delivery.
    .watches_shared_stream(deployments.subscribe_with_deletions(), |d| owner_of(&*d))
    .watches_shared_stream(services.subscribe_with_deletions(), |s| owner_of(&*s))
    .watches_shared_stream(app_pods.subscribe_with_deletions(), |p| owner_of(&*p))
    .reconcile_on(futures::stream::select(
        pushed,
        woken.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
    ));
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
        context.caches.releases.clone(),
        caches.applications.subscribe_with_deletions(),
    );
    let buildjob_controller = buildjob::relate(
        Controller::for_shared_stream(
            caches.buildjobs.subscribe(),
            context.caches.buildjobs.store().clone(),
        ),
        context.caches.buildjobs.clone(),
        caches.applications.subscribe_with_deletions(),
        build_pods.subscribe(),
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
                context.own_writes.forget(&key);
                async {}
            })
    };

    let readiness = {
        let synced = caches.synced();
        let pods_synced = build_pods.synced.clone();
        let children_synced = [
            deployments.synced.clone(),
            services.synced.clone(),
            app_pods.synced.clone(),
        ];
        async move {
            synced.await;
            pods_synced.wait().await;
            for synced in &children_synced {
                synced.wait().await;
            }
            endpoints.ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced; ready");
        }
    };

    futures::join!(
        caches.run(&client, ns, &config, shutdown.clone()),
        build_pods.run(
            super::scoped_api(&client, ns),
            build_pods_config,
            shutdown.clone()
        ),
        deployments.run(
            super::scoped_api(&client, ns),
            children_config.clone(),
            shutdown.clone()
        ),
        services.run(
            super::scoped_api(&client, ns),
            children_config.clone(),
            shutdown.clone()
        ),
        app_pods.run(
            super::scoped_api(&client, ns),
            children_config,
            shutdown.clone()
        ),
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

/// `client`, with every request it sends counted in `metrics` (`ferry_api_requests_total`).
pub fn counted(client: Client, metrics: Arc<Metrics>) -> Client {
    let namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |request: axum::http::Request<kube::client::Body>| {
        metrics.api_request(&request);
        let client = client.clone();
        async move { client.send(request).await }
    });
    Client::new(service, namespace)
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
