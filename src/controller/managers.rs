//! Server-side applies under the writing controller's field manager, and the move away from
//! the legacy manager `ferry` that wrote everything before (`api::managers`).
//!
//! An object last written by an older Ferry has an `Apply` entry of `ferry` in its managed
//! fields. Right after the new manager's first apply to it, `ferry` applies an object with no
//! fields: the new manager owns every field Ferry writes now (shared with `ferry` where the
//! values agree, taken by force where they differ), so `ferry` gives up its claims and the
//! fields nobody else owns — those Ferry no longer writes — are removed, as server-side apply
//! removes any field whose last owner stops applying it. The result is what a fresh install
//! would hold.
//!
//! client-go's `csaupgrade` renames the entry in `metadata.managedFields` instead. That is a
//! patch of the object itself, which Ferry's ServiceAccount may not make on BuildJobs,
//! Releases and Environments (it writes only their status), and should not gain for a one-off
//! move.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::managers::{FieldManager, LEGACY, holds_legacy_apply};

/// Applies `desired` as `manager` (forced), then releases what the legacy manager still owns
/// of the object. Returns the object as stored after the apply.
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    manager: FieldManager,
    desired: &(impl Serialize + Debug),
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let applied = api
        .patch(name, &manager.apply(), &Patch::Apply(desired))
        .await?;
    release_legacy(api, &applied, false).await;
    Ok(applied)
}

/// If the legacy manager still holds an apply of `applied`'s status (`status`) or of the
/// object itself, applies nothing under its name, so that it gives up its fields. Called only
/// after an apply of the new manager, which must own what Ferry wants first. A failure is
/// logged: the next apply tries again.
pub async fn release_legacy<K>(api: &Api<K>, applied: &K, status: bool)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if !holds_legacy_apply(applied.managed_fields(), status) {
        return;
    }
    let name = applied.name_any();
    let nothing = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
    });
    let params = PatchParams::apply(LEGACY);
    let released = if status {
        api.patch_status(&name, &params, &Patch::Apply(&nothing))
            .await
    } else {
        api.patch(&name, &params, &Patch::Apply(&nothing)).await
    };
    match released {
        Ok(_) => tracing::info!(
            kind = %K::kind(&()),
            %name,
            status,
            "released the fields of the legacy field manager `ferry`"
        ),
        Err(error) => tracing::warn!(
            kind = %K::kind(&()),
            %name,
            %error,
            "cannot release the fields of the legacy field manager `ferry`; trying at the next apply"
        ),
    }
}
