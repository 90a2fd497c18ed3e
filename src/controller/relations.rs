//! Watch relations: which objects a change to another object concerns.
//!
//! Each kind declares its relations once, in its module's `relate()`, as watches with
//! store-backed mappers built on [`related`]: an Application waits for its Environments and
//! the Releases it pins, an Environment for its siblings (upstream chains) and its target
//! namespace, a Release and a BuildJob for their Application. Secrets are not watched: Ferry
//! may read them only in namespaces granted to it, and does so with one `get` per reconcile
//! (an object blocked by a Secret is looked at again after `decide::secrets::RECHECK`).

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use super::Guarded;
use super::cache::View;

/// What a watch mapper returns: the objects of `view` (in `namespace`, or in any namespace
/// when `None`) whose content satisfies `relates`. An object Ferry cannot read relates to
/// nothing; it is reported when it is reconciled itself.
pub fn related<K>(
    view: &View<Guarded<K>>,
    namespace: Option<&str>,
    relates: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<Guarded<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let candidates = match namespace {
        Some(namespace) => view.group_now(namespace),
        None => view.store().state(),
    };
    candidates
        .into_iter()
        .filter(|object| object.0.as_ref().is_ok_and(&relates))
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}
