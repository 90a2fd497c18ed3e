//! DeliveryRecords (`decide::records`): written before the status that links them, deleted
//! once the status no longer does, read back when an Application's status is gone.

use kube::api::{DeleteParams, ListParams};

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
    Ok(())
}

/// Creates the records of the finished entries of `status` not linked yet, and links them.
pub(super) async fn write(
    context: &Context,
    app: &Application,
    namespace: &str,
    status: &mut ApplicationStatus,
) -> Result<(), Error> {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let api = context.api::<DeliveryRecord>(namespace);
    for record in records::link(namespace, name, &mut status.environments) {
        let record_name = record.metadata.name.clone().unwrap_or_default();
        match api
            .create(&FieldManager::Application.create(), &record)
            .await
        {
            // 409: written before, by a pass whose status write did not land.
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => {
                return Err(Error::act(format!(
                    "creating DeliveryRecord {namespace}/{record_name}"
                ))(error));
            }
        }
    }
    Ok(())
}

/// Deletes the records the stored status linked and `status` no longer does.
pub(super) async fn prune(
    context: &Context,
    app: &Application,
    namespace: &str,
    status: &ApplicationStatus,
) -> Result<(), Error> {
    let before = app
        .status
        .as_ref()
        .map(|s| s.environments.as_slice())
        .unwrap_or_default();
    let api = context.api::<DeliveryRecord>(namespace);
    for name in records::unlinked(before, &status.environments) {
        delete_in_background(&api, namespace, &name).await?;
    }
    Ok(())
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
