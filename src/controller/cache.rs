//! Shared caches: one watch and one store per kind, read by several reconcilers.
//!
//! Every controller that reacts to a kind subscribes to its cache's stream. A subscriber hears
//! of a change only after the store holds it, so a reconcile triggered by a change reads that
//! change, never an older copy. kube's shared stores do not pass deletions on to subscribers;
//! the cache does, after the store has dropped the object, for relations where a disappearing
//! object matters (an Application whose Environment is deleted).
//!
//! Readiness is signalled here rather than with `Store::wait_until_ready`: in kube-runtime 5 that
//! future wakes only the last of several concurrent waiters (its oneshot receiver keeps a single
//! waker), so a reconcile waiting on it could hang once the controller's own applier waits too.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
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
    deletions: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>,
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
            deletions: Mutex::default(),
        }
    }

    /// A stream of changed objects, each delivered after the store holds it.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer
            .subscribe()
            .expect("a store made by store_shared always has subscribers")
    }

    /// Changed objects as `subscribe` gives them, and deleted objects too.
    pub fn subscribe_with_deletions(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        self.deletions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tx);
        futures::stream::select(self.subscribe(), rx)
    }

    /// Watches `api` into the store until `shutdown` resolves.
    pub async fn run(
        self,
        api: Api<K>,
        config: watcher::Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let synced = self.synced_tx;
        let deletions = self
            .deletions
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        watcher(api, config)
            .default_backoff()
            .reflect_shared(self.writer)
            .take_until(shutdown)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        synced.send_replace(true);
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        let object = Arc::new(object);
                        for subscriber in &deletions {
                            // A closed subscriber is a controller that has stopped.
                            let _ = subscriber.unbounded_send(object.clone());
                        }
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
