//! Logs, metrics and the HTTP endpoints probes and Prometheus read.
//!
//! Ferry's metrics live in one prometheus-client `Registry` under the prefix `ferry`, next to
//! the standard process metrics ([`process`]: memory, CPU, file descriptors). Reconciles are
//! counted per kind, failures per kind and error category, and timed per kind by a drop guard
//! so that every exit path of a reconcile is measured. No object names in labels: a label per
//! object would grow without bound.
//!
//! Every label value is from a fixed set written in this code (kinds, categories, reasons,
//! strategies, results), with one exception: the `environment` label, since a pipeline's
//! stages are what its metrics are read by. An Environment's name is chosen by whoever may
//! create Environments, so it is bounded here: the first [`MAX_ENVIRONMENT_LABELS`] names seen
//! are used as they are, and every later one is counted as [`OTHER_ENVIRONMENT`]. A tenant who
//! creates Environments by the thousand cannot make the registry (and Prometheus) grow.

pub mod api;
pub mod process;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Sets up structured logging; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests start several controllers in one process) keeps the first.
    drop(result);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    category: &'static str,
}

/// How many distinct Environment names label metrics; a cluster's pipelines share a handful
/// of stage names (dev, staging, prod), so 32 leaves room without letting names grow freely.
pub const MAX_ENVIRONMENT_LABELS: usize = 32;

/// The `environment` label of every name past [`MAX_ENVIRONMENT_LABELS`]. Not a valid
/// Kubernetes name, so it cannot be mistaken for an Environment.
pub const OTHER_ENVIRONMENT: &str = "_other";

/// The controller's metrics.
pub struct Metrics {
    /// The Environment names used as labels so far (at most [`MAX_ENVIRONMENT_LABELS`]).
    environments: Mutex<BTreeSet<String>>,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    status_writes: Family<KindLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    cached: Family<CacheLabels, Gauge>,
    webhook_requests: Family<ResultLabels, Counter>,
    builds: Family<OutcomeLabels, Counter>,
    build_durations: Family<OutcomeLabels, Histogram>,
    commit_to_release: Histogram,
    source_lookups: Family<ResultLabels, Counter>,
    rollouts: Family<RolloutLabels, Counter>,
    rollbacks: Family<RolloutLabels, Counter>,
    restore: Family<StrategyLabels, Histogram>,
    promotions: Family<PromotionLabels, Counter>,
    release_to_healthy: Family<EnvironmentLabels, Histogram>,
    lead_time: Family<EnvironmentLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PromotionLabels {
    environment: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvironmentLabels {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    environment: String,
    strategy: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    strategy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Buckets from 1 s to about 68 minutes: builds and the way from commit to Release.
fn minutes_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 13,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            environments: Mutex::new(BTreeSet::new()),
            reconciles: Family::default(),
            failures: Family::default(),
            status_writes: Family::default(),
            api_requests: Family::default(),
            cached: Family::default(),
            webhook_requests: Family::default(),
            builds: Family::default(),
            build_durations: Family::new_with_constructor(minutes_buckets),
            commit_to_release: minutes_buckets(),
            source_lookups: Family::default(),
            rollouts: Family::default(),
            rollbacks: Family::default(),
            restore: Family::new_with_constructor(|| {
                // 0.25 s to about 17 minutes.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.25, 2.0, 13,
                ))
            }),
            promotions: Family::default(),
            release_to_healthy: Family::new_with_constructor(minutes_buckets),
            lead_time: Family::new_with_constructor(minutes_buckets),
            durations: Family::new_with_constructor(|| {
                // 1 ms to about 16 s: a reconcile is a few API calls.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.001, 2.0, 15,
                ))
            }),
        }
    }
}

impl Metrics {
    /// Registers every metric under `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Reconciles started, per kind",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, per kind and error category",
            self.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, per kind",
            self.durations.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes sent to the API server, per kind (none while nothing changes)",
            self.status_writes.clone(),
        );
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API, by verb (get, list, watch, create, update, patch, \
             delete) and resource (with its subresource: applications/status)",
            self.api_requests.clone(),
        );
        registry.register(
            "cached_objects",
            "Objects the controller holds in its caches, per cache: Application, Environment, \
             Release, BuildJob, Deployment, Service, Pod (of Applications), BuildPod \
             (a shard holds only its own namespaces' objects)",
            self.cached.clone(),
        );
        registry.register(
            "webhook_requests",
            "Push webhook requests by result: accepted, ignored (another branch, not a push), \
             unsigned, forged, oversized, too_slow, unrecognised, malformed, \
             unknown_application, unavailable, busy",
            self.webhook_requests.clone(),
        );
        registry.register(
            "builds",
            "Finished builds by outcome: succeeded, or the failure reason (ScriptFailed, \
             PublishFailed, TimedOut, ...)",
            self.builds.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "From the build pod's start to the build's end, by outcome",
            self.build_durations.clone(),
        );
        registry.register(
            "commit_to_release_seconds",
            "From Ferry seeing a commit (its BuildJob created) to its Release created",
            self.commit_to_release.clone(),
        );
        registry.register(
            "source_lookups",
            "Look-ups of a branch head on a git server, by result: the head, or the error \
             category (RepositoryUnreachable, AuthenticationRefused, ...)",
            self.source_lookups.clone(),
        );
        registry.register(
            "rollouts",
            "Rollouts that reached a verdict, by environment, strategy and reason \
             (RolloutSucceeded, or the failing signal: CrashLoop, ErrorRateExceeded, ...)",
            self.rollouts.clone(),
        );
        registry.register(
            "rollbacks",
            "Rollbacks that reached a verdict, by environment, strategy and reason \
             (RolledBack when the previous release is healthy again, else the signal)",
            self.rollbacks.clone(),
        );
        registry.register(
            "promotions",
            "Rollouts started into an environment, by environment and kind: Rollout (the \
             newest release into the first stage), Promotion (automatic, from upstream), \
             Approval, Pin, ManualRollback, Override (pins)",
            self.promotions.clone(),
        );
        registry.register(
            "release_to_healthy_seconds",
            "From a Release's creation to it being healthy and verified in an environment",
            self.release_to_healthy.clone(),
        );
        registry.register(
            "lead_time_seconds",
            "From a commit seen (its BuildJob created) to its release healthy and verified in \
             an environment: the lead time, per environment",
            self.lead_time.clone(),
        );
        registry.register(
            "rollback_restore_seconds",
            "From a failing rollout's first signal to the previous release serving all \
             traffic again, by strategy",
            self.restore.clone(),
        );
    }

    /// The `environment` label for `environment`: the name itself while fewer than
    /// [`MAX_ENVIRONMENT_LABELS`] names are in use (or it is one of them), else
    /// [`OTHER_ENVIRONMENT`].
    pub fn environment_label(&self, environment: &str) -> String {
        let Ok(mut seen) = self.environments.lock() else {
            return OTHER_ENVIRONMENT.to_owned();
        };
        if seen.contains(environment) {
            return environment.to_owned();
        }
        if seen.len() < MAX_ENVIRONMENT_LABELS {
            seen.insert(environment.to_owned());
            return environment.to_owned();
        }
        OTHER_ENVIRONMENT.to_owned()
    }

    /// Counts a rollout that started into an environment, by its kind (Rollout for the newest
    /// release into the first stage, Promotion, Approval, Pin, ManualRollback, Override).
    pub fn rollout_started(&self, environment: &str, kind: crate::api::application::HistoryKind) {
        let kind = kind.as_str();
        self.promotions
            .get_or_create(&PromotionLabels {
                environment: self.environment_label(environment),
                kind,
            })
            .inc();
    }

    /// Observes, for a release that proved healthy (and verified) in an environment, the time
    /// from its Release's creation and from its commit being seen (its BuildJob's creation).
    pub fn release_healthy(
        &self,
        environment: &str,
        since_release: Option<f64>,
        since_commit: Option<f64>,
    ) {
        let labels = EnvironmentLabels {
            environment: self.environment_label(environment),
        };
        if let Some(seconds) = since_release {
            self.release_to_healthy
                .get_or_create(&labels)
                .observe(seconds);
        }
        if let Some(seconds) = since_commit {
            self.lead_time.get_or_create(&labels).observe(seconds);
        }
    }

    /// Counts a rollout or rollback that reached a verdict, and observes how long a rollback
    /// took to restore the previous release.
    pub fn rollout_finished(
        &self,
        environment: &str,
        finished: &crate::decide::delivery::Finished,
    ) {
        use crate::api::application::HistoryKind;
        use crate::api::environment::StrategyType;
        let strategy = match finished.strategy {
            StrategyType::RollingUpdate => "RollingUpdate",
            StrategyType::BlueGreen => "BlueGreen",
        };
        let labels = RolloutLabels {
            environment: self.environment_label(environment),
            strategy,
            reason: finished.reason,
        };
        match finished.kind {
            HistoryKind::Rollback => {
                if let Some(seconds) = finished.restored_after {
                    self.restore
                        .get_or_create(&StrategyLabels { strategy })
                        .observe(seconds);
                } else {
                    self.rollbacks.get_or_create(&labels).inc();
                }
            }
            _ => {
                self.rollouts.get_or_create(&labels).inc();
            }
        }
    }

    /// Counts a finished build and observes how long it ran, when known.
    pub fn build_finished(&self, outcome: &'static str, seconds: Option<f64>) {
        let labels = OutcomeLabels { outcome };
        self.builds.get_or_create(&labels).inc();
        if let Some(seconds) = seconds {
            self.build_durations.get_or_create(&labels).observe(seconds);
        }
    }

    /// How many builds finished with `outcome` so far.
    pub fn builds(&self, outcome: &'static str) -> u64 {
        self.builds.get_or_create(&OutcomeLabels { outcome }).get()
    }

    /// Observes the time from a commit seen to its Release created.
    pub fn release_created(&self, seconds_since_commit_seen: f64) {
        self.commit_to_release.observe(seconds_since_commit_seen);
    }

    /// Counts a look-up of a branch head by its result.
    pub fn source_lookup(&self, result: &'static str) {
        self.source_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// How many branch look-ups ended with `result` so far.
    pub fn source_lookups(&self, result: &'static str) -> u64 {
        self.source_lookups
            .get_or_create(&ResultLabels { result })
            .get()
    }

    /// Counts a webhook request by how it ended (`adapters::webhook::Outcome::result`).
    pub fn webhook_request(&self, result: &'static str) {
        self.webhook_requests
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// How many webhook requests ended with `result` so far.
    pub fn webhook_requests(&self, result: &'static str) -> u64 {
        self.webhook_requests
            .get_or_create(&ResultLabels { result })
            .get()
    }

    /// Counts a status write sent to the API server.
    pub fn status_written(&self, kind: &'static str) {
        self.status_writes.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a request to the Kubernetes API.
    pub fn api_request<B>(&self, request: &axum::http::Request<B>) {
        let uri = request.uri();
        let (verb, resource) = api::classify(request.method(), uri.path(), uri.query());
        self.api_requests
            .get_or_create(&ApiLabels { verb, resource })
            .inc();
    }

    /// The gauge of how many objects the cache `cache` holds.
    pub fn cached(&self, cache: &str) -> Gauge {
        self.cached
            .get_or_create(&CacheLabels {
                cache: cache.to_owned(),
            })
            .clone()
    }

    /// How many requests with `verb` on `resource` were sent so far.
    pub fn api_requests(&self, verb: &'static str, resource: &str) -> u64 {
        let labels = ApiLabels {
            verb,
            resource: resource.to_owned(),
        };
        self.api_requests.get_or_create(&labels).get()
    }

    /// How many reconciles of `kind` started so far.
    pub fn reconciles(&self, kind: &'static str) -> u64 {
        self.reconciles.get_or_create(&KindLabels { kind }).get()
    }

    /// How many status writes of `kind` were sent so far.
    pub fn status_writes(&self, kind: &'static str) -> u64 {
        self.status_writes.get_or_create(&KindLabels { kind }).get()
    }

    /// Counts a reconcile of `kind` and times it until the returned guard drops.
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        ReconcileTimer {
            histogram: self.durations.get_or_create(&KindLabels { kind }).clone(),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &'static str, category: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { kind, category })
            .inc();
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// What the HTTP endpoints read.
pub struct Endpoints {
    pub registry: Registry,
    /// Set once every controller has its first full view of the cluster.
    pub ready: AtomicBool,
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    endpoints: Arc<Endpoints>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoints);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    if endpoints.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

async fn metrics(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &endpoints.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::HistoryKind;

    #[test]
    fn environment_labels_are_bounded_whatever_names_tenants_choose() {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("ferry");
        metrics.register(&mut registry);
        for n in 0..1000 {
            metrics.rollout_started(&format!("env-{n}"), HistoryKind::Promotion);
        }
        // A name seen early keeps its own label.
        metrics.rollout_started("env-0", HistoryKind::Promotion);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("ferry_promotions_total{"))
            .count();
        assert_eq!(series, MAX_ENVIRONMENT_LABELS + 1, "{text}");
        assert!(
            text.contains(r#"environment="env-0",kind="Promotion"} 2"#),
            "{text}"
        );
        let others = 1000 - MAX_ENVIRONMENT_LABELS;
        assert!(
            text.contains(&format!(
                r#"environment="_other",kind="Promotion"}} {others}"#
            )),
            "{text}"
        );
    }

    #[test]
    fn promotions_and_lead_times_are_exposed_per_environment() {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("ferry");
        metrics.register(&mut registry);
        metrics.rollout_started("prod", HistoryKind::Approval);
        metrics.release_healthy("prod", Some(30.0), Some(42.0));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "ferry_promotions_total{environment=\"prod\",kind=\"Approval\"} 1",
            "ferry_release_to_healthy_seconds_count{environment=\"prod\"} 1",
            "ferry_lead_time_seconds_sum{environment=\"prod\"} 42.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
