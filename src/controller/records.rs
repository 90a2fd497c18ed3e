//! DeliveryRecords (`decide::records`): written before the status that links them, taken back
//! when that status is not stored, deleted once the stored status no longer links them, read
//! back when an Application's status is gone.
//!
//! Records are best effort: one that cannot be written (its CRD not installed yet, say) leaves
//! its entry unlinked, to be tried again on the next pass, and never holds the status.

use kube::api::{DeleteParams, ListParams};

use super::status::Written;
use super::{Context, Error, delete_in_background};
use crate::api::application::ApplicationStatus;
use crate::api::labels::APPLICATION_LABEL;
use crate::api::managers::FieldManager;
use crate::api::{Application, DeliveryRecord};
use crate::decide::records;

/// An Application's records, in its namespace. By the Application's name only: a namespace
/// restored under another name keeps the old one in the records' other labels.
fn selector(app: &str) -> String {
    format!("{APPLICATION_LABEL}={app}")
}

/// For an Application that has no status yet (new, or restored from a backup or an export):
/// the histories its records keep, put into `status` before anything is decided from it.
/// Records beyond what the history keeps are deleted.
pub(super) async fn restore(
    context: &Context,
    app: &Application,
    namespace: &str,
    status: &mut ApplicationStatus,
) -> Result<(), Error> {
    if app.status.is_some() || app.spec.environments.is_empty() {
        return Ok(());
    }
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let found = context
        .api::<DeliveryRecord>(namespace)
        .list(&ListParams::default().labels(&selector(name)))
        .await
        .map_err(Error::act(format!(
            "listing the DeliveryRecords of {namespace}/{name}"
        )))?;
    if found.items.is_empty() {
        return Ok(());
    }
    let limit = usize::try_from(app.spec.history_limit).unwrap_or(1).max(1);
    records::restore(&mut status.environments, &found.items, limit);
    tracing::info!(
        records = found.items.len(),
        "no status: the environments' history restored from DeliveryRecords"
    );
    let beyond = records::not_linked(&found.items, &status.environments);
    delete_each(context, namespace, beyond).await;
    Ok(())
}

/// Creates the records of the finished entries of `status` not linked yet, and links them;
/// returns the names of those it created (not those that existed already).
pub(super) async fn write(
    context: &Context,
    app: &Application,
    namespace: &str,
    status: &mut ApplicationStatus,
) -> Vec<String> {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let api = context.api::<DeliveryRecord>(namespace);
    let mut created = Vec::new();
    let mut unrecorded = Vec::new();
    for record in records::link(namespace, name, &mut status.environments) {
        let record_name = record.metadata.name.clone().unwrap_or_default();
        match create(&api, &record).await {
            Ok(true) => created.push(record_name),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(record = %record_name, %error, "cannot write a DeliveryRecord; the entry stays unlinked and is tried again");
                unrecorded.push(record_name);
            }
        }
    }
    records::unlink(&mut status.environments, &unrecorded);
    created
}

/// Creates `record`; says whether it did. One of that name that exists already holds the same
/// entry if it was written for this status by a pass whose status write did not land; if it
/// holds another (that pass decided otherwise), it is replaced.
async fn create(
    api: &kube::Api<DeliveryRecord>,
    record: &DeliveryRecord,
) -> Result<bool, kube::Error> {
    let name = record.metadata.name.as_deref().unwrap_or_default();
    match api
        .create(&FieldManager::Application.create(), record)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let held = api.get_opt(name).await?;
            if held.is_some_and(|held| held.spec == record.spec) {
                return Ok(false);
            }
            api.delete(name, &DeleteParams::default()).await?;
            api.create(&FieldManager::Application.create(), record)
                .await?;
            Ok(true)
        }
        Err(error) => Err(error),
    }
}

/// After the status write: if it was not stored, the records this pass `created` are taken
/// back (the stored status does not link them, and the next pass decides again); if it was,
/// the records the stored status linked and the new one does not are deleted.
pub(super) async fn settle(
    context: &Context,
    app: &Application,
    namespace: &str,
    (status, written, created): (&ApplicationStatus, &Written, Vec<String>),
) {
    let gone = match written {
        Written::Stale => created,
        Written::Stored | Written::Unchanged => {
            let before = app
                .status
                .as_ref()
                .map(|s| s.environments.as_slice())
                .unwrap_or_default();
            records::unlinked(before, &status.environments)
        }
    };
    delete_each(context, namespace, gone).await;
}

/// Deletes the records `names`; one that cannot be deleted is logged and left.
async fn delete_each(context: &Context, namespace: &str, names: Vec<String>) {
    let api = context.api::<DeliveryRecord>(namespace);
    for name in names {
        if let Err(error) = delete_in_background(&api, namespace, &name).await {
            tracing::warn!(record = %name, %error, "cannot delete a DeliveryRecord");
        }
    }
}

/// Deletes every record of a deleted Application.
pub(super) async fn delete_all(context: &Context, namespace: &str, app: &str) -> Result<(), Error> {
    context
        .api::<DeliveryRecord>(namespace)
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&selector(app)),
        )
        .await
        .map_err(Error::act(format!(
            "deleting the DeliveryRecords of {namespace}/{app}"
        )))?;
    Ok(())
}
