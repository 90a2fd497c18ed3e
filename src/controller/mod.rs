//! The kube I/O shell around `crate::decide`: one kube-runtime `Controller` per kind.
//!
//! Each reconciler (one file per kind) observes what it needs (from the shared caches or one
//! API call), calls its pure decision function, writes the status, and turns the decision's
//! `requeue_after` into the next requeue. Everything they share lives in one file per concern:
//!
//! - `run.rs`: starting the caches and controllers, leadership, shutdown;
//! - `error.rs`: the error type, its categories, the error policy and per-object backoff;
//! - `status.rs`: status writes (who owns what);
//! - `managers.rs`: applies under each controller's own field manager;
//! - `events.rs`: the one Event builder, used by status writes, the error policy and delivery;
//! - `relations.rs`: how a change to one object reaches the objects it concerns;
//! - `secrets.rs`: every Secret read, and what its answer means (not granted, missing, unusable);
//! - `cache.rs`: the shared caches, one per kind;
//! - `leader.rs`: the Lease.
//!
//! [`Context`] is what every reconcile gets: the client, the Event writer, metrics, a clock
//! tests can set, views of the shared caches, what Ferry keeps outside Kubernetes (git, branch
//! heads, runs) and its settings.

mod application;
mod buildjob;
mod cache;
mod delivery;
mod environment;
mod error;
mod events;
mod leader;
mod managers;
mod records;
mod relations;
mod release;
mod run;
mod secrets;
mod sources;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource};

use crate::adapters::git::RemoteRefs;
use crate::adapters::runs::Runs;
use crate::api::Time;
use crate::decide::delivery::runs::RunKey;
pub use crate::desired::build_pod::Settings as BuildSettings;
use crate::telemetry::Metrics;
pub use cache::Views;
pub use error::Error;
pub use leader::{Elector, LeaseSettings, Lost, StopSignal, run_while_leading};
pub use run::{Pushes, Wiring, counted, pushes, run, run_controllers, wait_for};
use status::Written;

/// An object as the caches hold it: parsed, or the reason it could not be. One object that
/// does not match the Rust types (written under an older CRD version, say) is reported on its
/// own instead of failing the whole watch and stalling every object of its kind.
pub type Guarded<K> = DeserializeGuard<K>;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Watch only this namespace (for tests and namespace-scoped installs).
    pub namespace: Option<String>,
    /// Reconcile only while holding this Lease (several replicas); None runs at once.
    pub leader_election: Option<LeaseSettings>,
    /// Ferry's own ServiceAccount as `namespace:name`, for the command a tenant namespace's
    /// administrator runs to let Ferry read its Secrets.
    pub service_account: String,
    /// Where the push webhook is served (`POST /webhooks/<namespace>/<application>`).
    pub webhook_addr: SocketAddr,
    /// The image of the fetch and publish steps of build pods; `None` uses Ferry's own image,
    /// read from its pod (`POD_NAME`, `POD_NAMESPACE`).
    pub build_image: Option<String>,
    /// The namespaces this controller serves, when several share the cluster.
    pub shard: crate::decide::shard::Shard,
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

/// What every reconciler shares, by concern: the API server (client, Event writer), metrics,
/// a clock tests can set, the shared caches, what Ferry keeps of the world outside Kubernetes,
/// and its settings.
pub struct Context {
    pub client: Client,
    pub events: events::EventWriter,
    pub metrics: Arc<Metrics>,
    pub clock: Box<dyn Clock>,
    /// What reconcilers read of the cluster without asking the API server.
    pub caches: Views,
    /// Git servers, the branch heads looked up, and the HTTP runs beside rollouts.
    pub external: External,
    /// What the command line set for the reconcilers.
    pub config: Config,
    /// Consecutive failures per object, for backoff; cleared by a success or a deletion.
    failures: error::Failures,
    /// The copies Ferry's own status writes made stale (`status::OwnWrites`).
    own_writes: status::OwnWrites,
}

/// What Ferry keeps of the world outside Kubernetes.
pub struct External {
    /// Reads branch heads and tags from git servers.
    pub remote: Arc<dyn RemoteRefs>,
    /// The branch heads looked up, shared by Applications on one branch.
    sources: sources::Sources,
    /// What runs beside rollouts: the HTTP checks of their stabilization windows and their
    /// verification GETs.
    pub runs: Arc<Runs<RunKey>>,
}

/// What the command line set for the reconcilers.
pub struct Config {
    /// Ferry's ServiceAccount as `namespace:name` (see [`Settings::service_account`]).
    pub service_account: String,
    /// What build pods need besides their BuildJob.
    pub build: BuildSettings,
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

/// An Api over `namespace`, or over every namespace when `None`.
fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Deletes `name` with background propagation (its dependents follow through their owner
/// references); one already gone is fine. Whether this call deleted it.
async fn delete_in_background<K>(api: &Api<K>, namespace: &str, name: &str) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .delete(name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(Error::act(format!(
            "deleting {} {namespace}/{name}",
            K::kind(&())
        ))(error)),
    }
}

/// How long an object waits, with nothing changed, before it is looked at again: a safety net
/// for what no watch reports. Decisions ask for sooner requeues (deadlines, windows, Secrets).
const RESYNC: Duration = Duration::from_secs(600);

/// How soon an object whose status write found it changed is decided again.
const STALE_RETRY: Duration = Duration::from_millis(500);

/// The requeue after a reconcile: soon when the decision was made from a stale copy, else when
/// the decision asks, and at the latest after [`RESYNC`].
fn next_action(written: Written, requeue_after: Option<Duration>) -> Action {
    match written {
        Written::Stale => Action::requeue(STALE_RETRY),
        Written::Unchanged | Written::Stored => {
            Action::requeue(requeue_after.map_or(RESYNC, |after| after.min(RESYNC)))
        }
    }
}
