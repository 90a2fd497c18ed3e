//! Shared caches: one watch and one store per kind, read by several reconcilers.
//!
//! Every controller that reacts to a kind subscribes to its cache's stream. A subscriber hears
//! of a change only after the store holds it (or, for a packed cache, its groups), so a reconcile triggered by a change reads that
//! change, never an older copy; and of deletions too (after the store dropped the object), for
//! relations where a disappearing object matters (an Application whose Environment is
//! deleted).
//!
//! The cache hands changed objects to its subscribers itself, on channels of its own, instead
//! of kube-runtime 5's shared store handles (`Writer::subscribe`): a handle that is told of an
//! object deleted before it reads it answers `Pending` without asking to be woken again, so its
//! subscriber never hears of anything after that (build pods, deleted with their namespace or
//! their BuildJob, stalled the BuildJob controller's pod triggers on the e2e cluster).
//!
//! [`Caches`] groups one cache per kind and [`Views`] what reconcilers read of them, both
//! generated from one list, so a new kind adds one line.
//!
//! Readiness is signalled here rather than with `Store::wait_until_ready`: in kube-runtime 5 that
//! future wakes only the last of several concurrent waiters (its oneshot receiver keeps a single
//! waker), so a reconcile waiting on it could hang once the controller's own applier waits too.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Guarded;
use super::delivery::Children;
use crate::api::{Application, BuildJob, Environment, Release};
use crate::decide::shard::Shard;
use crate::telemetry::Metrics;

/// One kind's shared store, its writer until the watch starts, and its "synced" flag.
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: Writer<K>,
    synced_tx: watch::Sender<bool>,
    pub synced: Synced,
    changes: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>,
    deletions: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>,
    trim: fn(&mut K),
    keep: Keep<K>,
    held: Option<Gauge>,
    groups: Arc<RwLock<Groups>>,
    group_of: GroupOf<K>,
    /// How a packed cache (`Cache::packed`) encodes its objects.
    pack: Option<Pack<K>>,
}

type Pack<K> = fn(&K) -> serde_json::Result<Vec<u8>>;

/// The group an object is found in by [`View::group`]: its namespace for Ferry's kinds (the
/// default), its Application (`namespace/name`, from its labels) for the workloads Ferry runs.
pub type GroupOf<K> = fn(&K) -> Option<String>;

/// An object's namespace, as its group.
fn namespace_of<K: Resource>(object: &K) -> Option<String> {
    object.meta().namespace.clone()
}

/// Which objects a cache holds at all: this shard's (`decide::shard`), or every one.
pub type Keep<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store();
        let (synced_tx, synced_rx) = watch::channel(false);
        Self {
            store,
            writer,
            synced_tx,
            synced: Synced(synced_rx),
            changes: Mutex::default(),
            deletions: Mutex::default(),
            trim: |_| {},
            keep: Arc::new(|_| true),
            held: None,
            groups: Arc::default(),
            group_of: namespace_of::<K>,
            pack: None,
        }
    }

    /// The same cache, with how many objects it holds kept in `held`.
    pub fn counted(self, held: Gauge) -> Self {
        Self {
            held: Some(held),
            ..self
        }
    }

    /// The same cache, holding only the objects `keep` accepts: the others are dropped as
    /// they arrive, never stored or told.
    pub fn kept(self, keep: Keep<K>) -> Self {
        Self { keep, ..self }
    }

    /// The same cache, each object cut down by `trim` before it is stored: what no decision
    /// reads is not held (the spec of every pod of every Application, say).
    pub fn trimmed(self, trim: fn(&mut K)) -> Self {
        Self { trim, ..self }
    }

    /// A stream of changed objects, each delivered after the store holds it (every object
    /// once the first list is complete, then each change).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tx);
        rx
    }

    /// Changed objects as `subscribe` gives them, and deleted objects too.
    pub fn subscribe_with_deletions(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        futures::stream::select(self.subscribe(), self.deletions())
    }

    /// Deleted objects only, each after the store has dropped it.
    pub fn deletions(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        self.deletions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tx);
        rx
    }

    /// What reconcilers read of this cache.
    pub fn view(&self) -> View<K> {
        View {
            store: self.store.clone(),
            synced: self.synced.clone(),
            groups: self.groups.clone(),
            unpack: self.pack.map(|_| unpack::<K> as Unpack<K>),
        }
    }

    /// Watches `api` into the store until `shutdown` resolves.
    pub async fn run(
        self,
        api: Api<K>,
        config: watcher::Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let view = self.view();
        let synced = self.synced_tx;
        let (trim, keep, held, pack) = (self.trim, self.keep, self.held, self.pack);
        let packed = pack.is_some();
        let (groups, group_of) = (self.groups, self.group_of);
        let groups = || {
            groups
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        // What a packed cache holds of an object: its JSON, which cannot fail for an object
        // that was just decoded from JSON.
        let pack = |object: &K| -> Option<Box<[u8]>> {
            match pack?(object) {
                Ok(json) => Some(json.into_boxed_slice()),
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "cannot encode an object for the cache");
                    None
                }
            }
        };
        // Where an object goes: its group, and for a packed cache its JSON (an object that
        // cannot be encoded is not held at all, rather than grouped without its content).
        let placed = |object: &K| match pack(object) {
            None if packed => (None, None),
            json => (group_of(object), json),
        };
        let inner = |subscribers: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>| {
            subscribers
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let (changes, deletions) = (inner(self.changes), inner(self.deletions));
        // A closed subscriber is a controller that has stopped.
        let tell = |subscribers: &[mpsc::UnboundedSender<Arc<K>>], object: Arc<K>| {
            for subscriber in subscribers {
                let _ = subscriber.unbounded_send(object.clone());
            }
        };
        // A (re)list is stored whole at its end: its objects are told then, not before. What is
        // told is the store's own copy, so no object is held twice (a packed cache tells the
        // decoded object, which its subscribers drop once they have mapped it).
        let mut listed: Vec<Member> = Vec::new();
        let held_already = {
            let view = view.clone();
            move |object: &K| view.holds(&member(object))
        };
        let events = watcher(api, config)
            .default_backoff()
            // An object `keep` refuses is not stored; one it refuses now that is stored (a
            // label changed) leaves the store as if deleted, and its deletion still does.
            .filter_map(move |event| std::future::ready(admitted(event, &*keep, &held_already)))
            // Managed fields and kubectl's copy of the last applied object are bulky and never
            // read from the cache (who pinned is the pin's `by`, checked at admission).
            .modify(|object| {
                object.managed_fields_mut().clear();
                object
                    .annotations_mut()
                    .remove("kubectl.kubernetes.io/last-applied-configuration");
                trim(object);
            });
        // A packed cache keeps its objects in its groups, not in kube-runtime's typed store.
        let events = if packed {
            events.left_stream()
        } else {
            events.reflect(self.writer).right_stream()
        };
        events
            .take_until(shutdown)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Init) => {
                        listed.clear();
                        groups().relist();
                    }
                    Ok(watcher::Event::InitApply(object)) => {
                        let at = member(&object);
                        let (group, json) = placed(&object);
                        groups().listed(at.clone(), group, json);
                        listed.push(at)
                    }
                    Ok(watcher::Event::InitDone) => {
                        groups().relisted();
                        for object in listed.drain(..).filter_map(|at| view.read(&at)) {
                            tell(&changes, object);
                        }
                        synced.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(object)) => {
                        let at = member(&object);
                        let (group, json) = placed(&object);
                        groups().applied(at.clone(), group, json);
                        let told = if packed { Some(Arc::new(object)) } else { view.read(&at) };
                        if let Some(object) = told {
                            tell(&changes, object);
                        }
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        groups().deleted(&member(&object));
                        tell(&deletions, Arc::new(object))
                    }
                    Err(error) => {
                        tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff")
                    }
                }
                if let Some(held) = &held {
                    held.set(view.len() as i64);
                }
                async {}
            })
            .await;
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// The same cache, holding each object as its JSON (what `trim` left of it) instead of a
    /// typed object, decoded when read. A Deployment decoded as k8s-openapi types takes about
    /// 9 KB (every optional field of a pod spec has its room, set or not); its JSON, a third of
    /// that. For the workloads, read a few at a time by the reconcile of their Application;
    /// not for a kind a controller reconciles, whose objects kube-runtime reads from a typed
    /// store (`store` is then empty).
    pub fn packed(self) -> Self {
        Self {
            pack: Some(|object| serde_json::to_vec(object)),
            ..self
        }
    }

    /// The same cache, its objects grouped by `group_of` for [`View::group`] instead of by
    /// namespace.
    pub fn grouped(self, group_of: GroupOf<K>) -> Self {
        Self { group_of, ..self }
    }
}

/// A watch event as the store takes it: an object `keep` refuses is not stored; one it refuses
/// now that the store `holds` (a label changed) leaves as if deleted, and its deletion still
/// does.
fn admitted<K, E>(
    event: Result<watcher::Event<K>, E>,
    keep: &dyn Fn(&K) -> bool,
    holds: &dyn Fn(&K) -> bool,
) -> Option<Result<watcher::Event<K>, E>> {
    match event {
        Ok(watcher::Event::Apply(object)) if !keep(&object) => {
            holds(&object).then_some(Ok(watcher::Event::Delete(object)))
        }
        Ok(watcher::Event::InitApply(object)) if !keep(&object) => None,
        Ok(watcher::Event::Delete(object)) if !keep(&object) && !holds(&object) => None,
        other => Some(other),
    }
}

/// An object's place in the store: namespace and name.
type Member = (String, String);

fn member(object: &impl Resource) -> Member {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The members of each group of a cache (`GroupOf`), kept beside its store as watch events
/// arrive, so that a reconcile or a watch mapper reads the few objects of one namespace or
/// Application instead of scanning every object of the kind. At ten thousand Applications a
/// scan per reconcile and per mapped change was quadratic: hundreds of millions of objects
/// looked at while the first rollouts started.
#[derive(Default)]
pub struct Groups {
    current: Grouping,
    /// A relist under way: its members, taken as `current` when it is complete (as the store
    /// takes its new objects).
    relisting: Option<Grouping>,
}

#[derive(Default)]
struct Grouping {
    members: HashMap<String, HashSet<Member>>,
    group_of: HashMap<Member, String>,
    /// A packed cache's objects, as JSON (`Cache::packed`).
    packed: HashMap<Member, Box<[u8]>>,
}

impl Grouping {
    fn insert(&mut self, member: Member, group: Option<String>, packed: Option<Box<[u8]>>) {
        self.remove(&member);
        if let Some(json) = packed {
            self.packed.insert(member.clone(), json);
        }
        if let Some(group) = group {
            self.members
                .entry(group.clone())
                .or_default()
                .insert(member.clone());
            self.group_of.insert(member, group);
        }
    }

    fn remove(&mut self, member: &Member) {
        self.packed.remove(member);
        let Some(group) = self.group_of.remove(member) else {
            return;
        };
        if let Some(members) = self.members.get_mut(&group) {
            members.remove(member);
            if members.is_empty() {
                self.members.remove(&group);
            }
        }
    }
}

impl Groups {
    fn relist(&mut self) {
        self.relisting = Some(Grouping::default());
    }

    fn listed(&mut self, member: Member, group: Option<String>, packed: Option<Box<[u8]>>) {
        self.relisting
            .get_or_insert_with(Grouping::default)
            .insert(member, group, packed);
    }

    fn relisted(&mut self) {
        if let Some(relisted) = self.relisting.take() {
            self.current = relisted;
        }
    }

    fn applied(&mut self, member: Member, group: Option<String>, packed: Option<Box<[u8]>>) {
        self.current.insert(member, group, packed);
    }

    fn deleted(&mut self, member: &Member) {
        self.current.remove(member);
    }

    /// The members of `group`, in no particular order.
    fn of(&self, group: &str) -> Vec<Member> {
        self.current
            .members
            .get(group)
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What a reconciler reads of one kind: the shared store, waited on until it has synced, since
/// before its first full list every object would look missing.
pub struct View<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: Synced,
    groups: Arc<RwLock<Groups>>,
    /// How a packed cache's objects are decoded (`Cache::packed`).
    unpack: Option<Unpack<K>>,
}

type Unpack<K> = fn(&[u8]) -> Option<Arc<K>>;

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for View<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            synced: self.synced.clone(),
            groups: self.groups.clone(),
            unpack: self.unpack,
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> View<K> {
    /// The objects of `namespace`, once the cache has synced (for a cache grouped by
    /// namespace, the default).
    pub async fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.group(namespace).await
    }

    /// The objects of `group` (`GroupOf`), once the cache has synced.
    pub async fn group(&self, group: &str) -> Vec<Arc<K>> {
        self.synced.wait().await;
        self.group_now(group)
    }

    /// The objects of `group` as the cache holds them now, for watch mappers: they run only
    /// on changes, after the first list.
    pub fn group_now(&self, group: &str) -> Vec<Arc<K>> {
        let members = self.groups().of(group);
        members.iter().filter_map(|at| self.read(at)).collect()
    }

    /// One object, once the cache has synced.
    pub async fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.synced.wait().await;
        self.read(&(namespace.to_owned(), name.to_owned()))
    }

    /// The store itself, for watch mappers: they run only on changes, after the first list.
    /// Empty for a packed cache (`Cache::packed`).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The object at `at`, as the cache holds it now.
    fn read(&self, at: &Member) -> Option<Arc<K>> {
        let Some(unpack) = self.unpack else {
            let (namespace, name) = at;
            return self.store.get(&ObjectRef::new(name).within(namespace));
        };
        let groups = self.groups();
        unpack(groups.current.packed.get(at)?)
    }

    /// Whether the cache holds an object at `at` now.
    fn holds(&self, at: &Member) -> bool {
        if self.unpack.is_some() {
            self.groups().current.packed.contains_key(at)
        } else {
            self.read(at).is_some()
        }
    }

    /// How many objects the cache holds.
    fn len(&self) -> usize {
        if self.unpack.is_some() {
            self.groups().current.packed.len()
        } else {
            self.store.len()
        }
    }

    fn groups(&self) -> std::sync::RwLockReadGuard<'_, Groups> {
        self.groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An object a packed cache holds, decoded. It was encoded from the same type just before, so
/// this does not fail; if it did, the object reads as missing until its next change.
fn unpack<K: DeserializeOwned>(json: &[u8]) -> Option<Arc<K>> {
    match serde_json::from_slice(json) {
        Ok(object) => Some(Arc::new(object)),
        Err(error) => {
            tracing::warn!(%error, "cannot decode an object of the cache");
            None
        }
    }
}

/// Defines [`Caches`] and [`Views`] from one list of `field: Kind`.
macro_rules! caches {
    ($($field:ident: $kind:ty),+ $(,)?) => {
        /// One shared cache per kind.
        pub struct Caches {
            $(pub $field: Cache<Guarded<$kind>>,)+
        }

        /// What reconcilers read of the caches: the kinds one reconciler reads of another, and
        /// the objects Ferry makes, each from a cache of its own.
        #[derive(Clone)]
        pub struct Views {
            $(pub $field: View<Guarded<$kind>>,)+
            /// Build pods (labelled by Ferry).
            pub build_pods: View<Pod>,
            /// The Deployments, Services and pods Ferry runs applications as, by label.
            pub children: Children,
        }

        impl Caches {
            /// One cache per kind, holding the objects of the namespaces `shard` serves, each
            /// counted in `metrics`.
            pub fn new(shard: Shard, metrics: &Metrics) -> Self {
                Self { $($field: Cache::new()
                    .kept(Arc::new(move |o: &Guarded<$kind>| {
                        shard.serves(o.namespace().as_deref().unwrap_or_default())
                    }))
                    .counted(metrics.cached(<$kind as Resource>::kind(&()).as_ref())),)+ }
            }

            /// Views of these caches, and of the caches of build pods and `children`.
            pub fn views(&self, build_pods: View<Pod>, children: Children) -> Views {
                Views { $($field: self.$field.view(),)+ build_pods, children }
            }

            /// The backoff key (`error::failure_key`) of every object deleted, of any kind.
            pub fn deleted_keys(&self) -> impl Stream<Item = String> + Send + 'static {
                futures::stream::select_all([
                    $(self.$field.deletions().map(|o| super::error::failure_key(&*o)).boxed(),)+
                ])
            }

            /// Resolves once every cache has its first complete list.
            pub fn synced(&self) -> impl Future<Output = ()> + Send + 'static {
                let synced = [$(self.$field.synced.clone()),+];
                async move {
                    futures::future::join_all(synced.iter().map(Synced::wait)).await;
                }
            }

            /// Runs every cache's watch, over `namespace` or the whole cluster, until
            /// `shutdown` resolves.
            pub async fn run(
                self,
                client: &Client,
                namespace: Option<&str>,
                config: &watcher::Config,
                shutdown: impl Future<Output = ()> + Send + Clone + 'static,
            ) {
                futures::join!(
                    $(self.$field.run(super::scoped_api(client, namespace), config.clone(), shutdown.clone()),)+
                );
            }
        }
    };
}

caches! {
    applications: Application,
    environments: Environment,
    releases: Release,
    buildjobs: BuildJob,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::apps::v1::Deployment;

    use super::Cache;

    /// A cache filtered by `keep` (a shard's namespaces, Ferry's labels) holds what it keeps,
    /// and lets go of an object it held once the object stops being one it keeps, or is deleted.
    #[test]
    fn an_object_that_stops_being_kept_leaves_the_cache() {
        use kube::runtime::watcher::Event;
        type Result = std::result::Result<Event<String>, ()>;
        let keep = |o: &String| o.starts_with("ours");
        let held = |o: &String| o.ends_with("held");
        let admitted = |event: Result| {
            super::admitted(event, &keep, &held).map(|e| match e {
                Ok(Event::Apply(o)) => format!("apply {o}"),
                Ok(Event::InitApply(o)) => format!("list {o}"),
                Ok(Event::Delete(o)) => format!("delete {o}"),
                _ => "other".to_owned(),
            })
        };
        let ev = |o: &str| o.to_owned();
        assert_eq!(
            admitted(Ok(Event::Apply(ev("ours")))).as_deref(),
            Some("apply ours")
        );
        assert_eq!(
            admitted(Ok(Event::InitApply(ev("ours")))).as_deref(),
            Some("list ours")
        );
        assert_eq!(admitted(Ok(Event::Apply(ev("theirs")))), None);
        assert_eq!(admitted(Ok(Event::InitApply(ev("theirs held")))), None);
        assert_eq!(
            admitted(Ok(Event::Apply(ev("theirs held")))).as_deref(),
            Some("delete theirs held"),
            "relabelled: it leaves the cache"
        );
        assert_eq!(
            admitted(Ok(Event::Delete(ev("theirs held")))).as_deref(),
            Some("delete theirs held")
        );
        assert_eq!(admitted(Ok(Event::Delete(ev("theirs")))), None);
        assert_eq!(admitted(Ok(Event::Init)).as_deref(), Some("other"));
    }

    /// Groups follow their members: a member moves when its group changes, leaves when it is
    /// deleted or loses its group, and a relist replaces every group only once it is complete
    /// (until then, readers see the groups from before it, as the store's objects).
    #[test]
    fn groups_follow_their_members_and_a_relist_lands_whole() {
        use super::Groups;
        let m = |ns: &str, name: &str| (ns.to_owned(), name.to_owned());
        let g = |group: &str| Some(group.to_owned());
        let of = |groups: &Groups, group: &str| {
            let mut members = groups.of(group);
            members.sort();
            members
        };
        let mut groups = Groups::default();
        groups.applied(m("a", "web"), g("team/web"), None);
        groups.applied(m("b", "web"), g("team/web"), None);
        groups.applied(m("a", "api"), g("team/api"), None);
        assert_eq!(of(&groups, "team/web"), [m("a", "web"), m("b", "web")]);
        groups.applied(m("b", "web"), g("team/api"), None);
        assert_eq!(of(&groups, "team/web"), [m("a", "web")], "moved");
        assert_eq!(of(&groups, "team/api"), [m("a", "api"), m("b", "web")]);
        groups.applied(m("a", "api"), None, None);
        assert_eq!(of(&groups, "team/api"), [m("b", "web")], "lost its group");
        groups.deleted(&m("a", "web"));
        assert!(of(&groups, "team/web").is_empty(), "deleted");
        assert!(
            !groups.current.members.contains_key("team/web"),
            "an empty group is dropped"
        );

        groups.relist();
        groups.listed(m("c", "db"), g("team/db"), None);
        assert_eq!(
            of(&groups, "team/api"),
            [m("b", "web")],
            "before the relist ends"
        );
        assert!(of(&groups, "team/db").is_empty());
        groups.relisted();
        assert!(of(&groups, "team/api").is_empty(), "gone in the relist");
        assert_eq!(of(&groups, "team/db"), [m("c", "db")]);
    }

    /// A packed cache holds JSON and reads back the object it was given, by group and by
    /// name; a deleted object's JSON goes with it.
    #[tokio::test]
    async fn a_packed_cache_reads_back_what_it_was_given() {
        let cache = Cache::<Deployment>::new()
            .grouped(crate::controller::delivery::application_of)
            .packed();
        let view = cache.view();
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-dev", "namespace": "team-a-dev", "labels": {
                "ferry.dev/application-namespace": "team-a", "ferry.dev/application": "shop"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}},
                "template": {"spec": {"containers": [{"name": "app", "image": "r/shop:1"}]}}},
            "status": {"readyReplicas": 1}
        }))
        .expect("a Deployment");
        let group = crate::controller::delivery::application_of(&deployment).expect("labelled");
        let at = super::member(&deployment);
        let json = serde_json::to_vec(&deployment)
            .expect("json")
            .into_boxed_slice();
        cache
            .groups
            .write()
            .expect("groups")
            .applied(at.clone(), Some(group.clone()), Some(json));
        cache.synced_tx.send_replace(true);
        let read = view.group(&group).await;
        assert_eq!(read.len(), 1);
        assert_eq!(*read[0], deployment);
        let by_name = view.get("team-a-dev", "shop-dev").await;
        assert_eq!(by_name.as_deref(), Some(&deployment));
        assert!(view.store().is_empty(), "nothing typed is held");
        cache.groups.write().expect("groups").deleted(&at);
        assert!(view.get("team-a-dev", "shop-dev").await.is_none());
        assert!(
            cache
                .groups
                .read()
                .expect("groups")
                .current
                .packed
                .is_empty()
        );
    }

    /// Before its first list, a cache's objects are not read as "none": a newly elected leader
    /// read no Deployments, judged a healthy rollout as having lost its readiness and rolled
    /// it back.
    #[tokio::test]
    async fn every_object_is_read_only_once_the_cache_has_synced() {
        let cache = Cache::<Deployment>::new();
        let view = cache.view();
        let early =
            tokio::time::timeout(Duration::from_millis(100), view.in_namespace("team-a")).await;
        assert!(early.is_err(), "read before the first list: {early:?}");
        cache.synced_tx.send_replace(true);
        let late = tokio::time::timeout(Duration::from_secs(5), view.in_namespace("team-a")).await;
        assert!(matches!(late.as_deref(), Ok([])), "{late:?}");
    }
}
