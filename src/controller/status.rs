//! The two writes every reconciler makes: its object's status, and Events.
//!
//! Status ownership: each object's status has exactly one writer, the reconciler of its kind,
//! which aggregates what other parts of Ferry learn (from the objects they own and the shared
//! caches) instead of letting them write into it (see docs/development.md, "Status
//! ownership"). The write is a server-side apply of the whole status that
//! - carries the `resourceVersion` the decision was computed from, so a decision made from a
//!   stale cache cannot overwrite a newer status: the API server refuses it (409) and the
//!   object is reconciled again from a fresh copy;
//! - takes back, by force, a field of Ferry's that someone else wrote (a hand edit, a forged
//!   condition): the status is Ferry's account of the object. The precondition above is what
//!   keeps the force from ever writing over a newer value. Conditions of other types, that
//!   other tools add, belong to them and are left alone;
//! - is skipped when nothing Ferry manages changed: those other conditions are left out of
//!   the comparison, so they cause no write on every pass.
//!
//! An Event is published (through `events`) when the `Ready` condition changes status or
//! reason; its type comes from `decide::events`.

use std::fmt::Debug;

use kube::api::Patch;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::events::publish;
use super::managers::release_legacy;
use super::{Context, Error};
use crate::api::Condition;
use crate::api::conditions::{self, READY, STALLED};
use crate::api::managers::FieldManager;
use crate::decide::events;

/// The copies of objects that Ferry's own status writes made stale, by `error::failure_key`:
/// the `resourceVersion` each write was decided from. Until the cache delivers the written
/// object, a reconcile would read the copy from before the write, decide again what was
/// already done, and announce it again; its status write would then be refused (409). The
/// watch event of the write triggers a reconcile with the new copy, so the old one is skipped
/// (`events::readable`). At 1,000 Applications each rollout's Events were told about five times
/// over before this.
#[derive(Default)]
pub struct OwnWrites(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl OwnWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A status write of the object `key` read at `version` was stored.
    pub fn wrote(&self, key: String, version: String) {
        self.lock().insert(key, version);
    }

    /// Whether `version` of `key` is a copy a status write of Ferry's has replaced. Any other
    /// version means the cache caught up: the record is dropped.
    pub fn outdated(&self, key: &str, version: Option<&str>) -> bool {
        let mut written = self.lock();
        match (written.get(key), version) {
            (Some(replaced), Some(version)) if replaced == version => true,
            (Some(_), _) => {
                written.remove(key);
                false
            }
            (None, _) => false,
        }
    }

    /// The object `key` was deleted.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod own_writes {
    use super::OwnWrites;

    #[test]
    fn only_the_copy_a_write_replaced_is_outdated_and_only_until_a_newer_one_is_seen() {
        let writes = OwnWrites::default();
        assert!(!writes.outdated("uid-1", Some("5")), "nothing written yet");
        writes.wrote("uid-1".into(), "5".into());
        assert!(
            writes.outdated("uid-1", Some("5")),
            "the copy the write replaced"
        );
        assert!(
            writes.outdated("uid-1", Some("5")),
            "still, until the new one arrives"
        );
        assert!(!writes.outdated("uid-2", Some("5")), "another object");
        assert!(!writes.outdated("uid-1", Some("6")), "the written copy");
        assert!(
            !writes.outdated("uid-1", Some("5")),
            "the record is gone once caught up"
        );
        writes.wrote("uid-1".into(), "6".into());
        writes.forget("uid-1");
        assert!(
            !writes.outdated("uid-1", Some("6")),
            "forgotten on deletion"
        );
    }
}

/// What became of a status write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing Ferry manages changed; nothing was sent.
    Unchanged,
    /// The new status is stored.
    Stored,
    /// The object changed since it was read: the decision is stale. Reconcile again.
    Stale,
}

/// A status of a Ferry kind, with the condition types its reconciler writes.
pub trait OwnedStatus: Serialize + PartialEq + Clone {
    /// The field manager of the controller that writes it.
    const MANAGER: FieldManager;
    /// The condition types the reconciler of this kind writes; others belong to someone else.
    const MANAGED_CONDITIONS: &'static [&'static str];
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

/// `stored` as far as Ferry manages it: without conditions of types it does not write.
fn managed<S: OwnedStatus>(stored: &S) -> S {
    let mut own = stored.clone();
    own.conditions_mut()
        .retain(|c| S::MANAGED_CONDITIONS.contains(&c.type_.as_str()));
    own
}

/// Writes `new` as `object`'s status unless what Ferry manages of the stored status already
/// equals it, then announces a change of `Ready` with an Event.
pub async fn write<K, S>(
    context: &Context,
    object: &K,
    stored: Option<&S>,
    new: &S,
) -> Result<Written, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + Debug,
    S: OwnedStatus,
{
    if stored.map(managed).as_ref() == Some(new) {
        tracing::debug!("status unchanged");
        return Ok(Written::Unchanged);
    }
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = context.api(&namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "resourceVersion": object.resource_version() },
        "status": new,
    });
    context
        .metrics
        .status_written(super::error::static_kind(&K::kind(&())));
    let result = api
        .patch_status(
            &object.name_any(),
            &S::MANAGER.apply(),
            &Patch::Apply(&patch),
        )
        .await;
    match result {
        Ok(applied) => {
            // Only a write that made a new version has a watch event to wait for.
            if let Some(version) = object.resource_version()
                && applied.resource_version().as_ref() != Some(&version)
            {
                context
                    .own_writes
                    .wrote(super::error::failure_key(object), version);
            }
            release_legacy(&api, &applied, true).await
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!("the object changed since it was read; deciding again");
            return Ok(Written::Stale);
        }
        Err(error) => return Err(Error::WriteStatus(error)),
    }
    tracing::debug!("status written");

    let before = stored.and_then(|s| conditions::find(s.conditions(), READY));
    let after = conditions::find(new.conditions(), READY);
    let stalled = conditions::is_true(new.conditions(), STALLED);
    if let Some(announcement) = events::ready_changed(before, after, stalled) {
        publish(context, &object.object_ref(&()), &announcement).await;
    }
    Ok(Written::Stored)
}

/// Implements [`OwnedStatus`] for a status type that flattens in `CommonStatus` as `common`.
macro_rules! owned_status {
    ($($status:ty => $manager:ident, [$($condition:expr),+];)+) => {$(
        impl OwnedStatus for $status {
            const MANAGER: FieldManager = FieldManager::$manager;
            const MANAGED_CONDITIONS: &'static [&'static str] = &[$($condition),+];
            fn conditions(&self) -> &[Condition] {
                &self.common.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.common.conditions
            }
        }
    )+};
}

owned_status! {
    crate::api::ApplicationStatus => Application, [READY, conditions::RECONCILING, STALLED];
    crate::api::EnvironmentStatus => Environment, [READY, conditions::RECONCILING, STALLED];
    crate::api::ReleaseStatus => Release, [READY, conditions::RECONCILING, STALLED];
    crate::api::BuildJobStatus => BuildJob, [READY, conditions::RECONCILING, STALLED, conditions::SUCCEEDED];
}
