//! Shared caches: one watch and one store per kind, read by several reconcilers.
//!
//! Every controller that reacts to a kind subscribes to its cache's stream. A subscriber hears
//! of a change only after the store holds it, so a reconcile triggered by a change reads that
//! change, never an older copy.
//!
//! Readiness is signalled here rather than with `Store::wait_until_ready`: in kube-runtime 5 that
//! future wakes only the last of several concurrent waiters (its oneshot receiver keeps a single
//! waker), so a reconcile waiting on it could hang once the controller's own applier waits too.

use std::fmt::Debug;

use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// How many changes a cache buffers for a slow subscriber before its watch waits.
const SUBSCRIBER_BUFFER: usize = 1024;

/// One kind's shared store, its writer until the watch starts, and its "synced" flag.
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: Writer<K>,
    synced_tx: watch::Sender<bool>,
    pub synced: Synced,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
        let (synced_tx, synced_rx) = watch::channel(false);
        Self {
            store,
            writer,
            synced_tx,
            synced: Synced(synced_rx),
        }
    }

    /// A stream of changed objects, each delivered after the store holds it.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer
            .subscribe()
            .expect("a store made by store_shared always has subscribers")
    }

    /// Watches `api` into the store until `shutdown` resolves.
    pub async fn run(
        self,
        api: Api<K>,
        config: watcher::Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let synced = self.synced_tx;
        watcher(api, config)
            .default_backoff()
            .reflect_shared(self.writer)
            .take_until(shutdown)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        synced.send_replace(true);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff")
                    }
                }
                async {}
            })
            .await;
    }
}

/// Resolves once a cache holds its first complete list; any number may wait.
#[derive(Clone)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    pub async fn wait(&self) {
        let mut flag = self.0.clone();
        // An error means the cache stopped (shutdown); there is nothing more to wait for.
        let _ = flag.wait_for(|synced| *synced).await;
    }
}
