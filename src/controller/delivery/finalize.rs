//! The finalizer [`FINALIZER`]: an Application's workloads in other namespaces cannot carry
//! an owner reference, so its deletion waits until they are gone; and everything it runs
//! outside Kubernetes (HTTP checks, verifications) stops with it.

use kube::api::Patch;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::warn_about;
use super::prune::{children_left, delete_all};
use super::{Context, Error};
use crate::adapters::runs::Runs;
use crate::api::Application;
use crate::api::managers::FieldManager;
use crate::api::reasons::WORKLOAD_LEFT_IN_PLACE;
use crate::decide::delivery::runs::RunKey;

/// The finalizer that deletes an Application's workloads in other namespaces with it.
pub use crate::api::labels::WORKLOADS_FINALIZER as FINALIZER;

/// Adds the finalizer to an Application that has environments, so its workloads in other
/// namespaces are deleted with it. A server-side apply of the finalizer alone: finalizers are a
/// set, so the API server keeps everyone else's, and no resourceVersion is compared, so it does
/// not lose to a status write made meanwhile (with a compare-and-swap it did, and a burst of new
/// Applications became a storm of 409 Conflicts).
pub async fn ensure_finalizer(context: &Context, app: &Application) -> Result<(), Error> {
    if app.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let finalizer = json!({
        "apiVersion": Application::api_version(&()),
        "kind": Application::kind(&()),
        "metadata": {"name": app.name_any(), "namespace": app.namespace(), "finalizers": [FINALIZER]},
    });
    let apply = FieldManager::Application.apply();
    patch(
        context,
        app,
        "adding the finalizer to",
        &apply,
        Patch::Apply(finalizer),
    )
    .await
}

/// Deletes every workload of a deleted Application, then lets it go. A workload Ferry may not
/// delete (its namespace took the grant back, or it is not Ferry's at all) does not hold the
/// Application: it is named in a Warning Event and left in place.
pub async fn finalize(context: &Context, app: &Application, namespace: &str) -> Result<(), Error> {
    let name = app.name_any();
    let refused = delete_all(context, namespace, &name).await?;
    stop_runs(&context.external.runs, namespace, &name);
    if children_left(context, namespace, &name).await > refused.len() {
        // Deleted, but the caches have not heard yet: their deletions wake us again.
        return Ok(());
    }
    if app.finalizers().iter().any(|f| f == FINALIZER) {
        // Its DeliveryRecords go with it (they carry no owner reference: see
        // `desired::record`). One that cannot be deleted does not hold the Application.
        if let Err(error) = crate::controller::records::delete_all(context, namespace, &name).await
        {
            tracing::warn!(%error, "the Application's DeliveryRecords were left in place");
        }
        for left in &refused {
            warn_about(context, app, WORKLOAD_LEFT_IN_PLACE, left).await;
        }
        remove_finalizer(context, app).await?;
    }
    Ok(())
}

/// Removes the finalizer, whoever added it (an older Ferry added it with a merge patch, which
/// a server-side apply could not take back). The resourceVersion makes this a compare-and-swap:
/// a finalizer list changed meanwhile is not overwritten. It runs once per deletion, so a
/// conflict with a status write is rare and simply retried.
async fn remove_finalizer(context: &Context, app: &Application) -> Result<(), Error> {
    let remaining: Vec<&String> = app
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let merge = json!({
        "metadata": {
            "finalizers": remaining,
            "resourceVersion": app.resource_version(),
        }
    });
    let params = FieldManager::Application.patch();
    patch(
        context,
        app,
        "removing the finalizer of",
        &params,
        Patch::Merge(merge),
    )
    .await
}

/// Sends `patch` to the Application itself under Ferry's field manager; `what` says what it
/// does, for the error.
async fn patch(
    context: &Context,
    app: &Application,
    what: &str,
    params: &kube::api::PatchParams,
    patch: Patch<serde_json::Value>,
) -> Result<(), Error> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    context
        .api::<Application>(&namespace)
        .patch(&name, params, &patch)
        .await
        .map_err(Error::act(format!("{what} Application {namespace}/{name}")))?;
    Ok(())
}

/// Stops every run of the Application `app` of `namespace`: its HTTP checks and its
/// verifications alike (a finished verification's report included).
fn stop_runs(runs: &Runs<RunKey>, namespace: &str, app: &str) {
    runs.retain(|key| !key.of_application(namespace, app));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::adapters::http_check::Target;
    use crate::adapters::verification::Get;
    use crate::decide::delivery::runs::Run;

    fn key(app: &str, what: Run) -> RunKey {
        RunKey {
            namespace: "team-a".into(),
            application: app.into(),
            environment: "dev".into(),
            release: format!("{app}-1.0.0"),
            started: 1_800_000_000,
            what,
        }
    }

    #[tokio::test]
    async fn a_deleted_application_stops_its_checks_and_its_verifications_and_no_other() {
        let runs = Runs::default();
        let target = Target::new(
            "127.0.0.1",
            9,
            "/",
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let Ok(target) = target else {
            panic!("{target:?}");
        };
        let get = Get::new("127.0.0.1", 9, "/", 200);
        let Ok(get) = get else {
            panic!("{get:?}");
        };
        runs.ensure_check(key("shop", Run::Check(0)), target.clone());
        runs.ensure_gets(key("shop", Run::Verification), vec![get]);
        runs.ensure_check(key("web", Run::Check(0)), target);
        runs.failed_to_start(key("web", Run::Verification), "refused".into());
        stop_runs(&runs, "team-a", "shop");
        assert_eq!(
            runs.keys(),
            vec![key("web", Run::Check(0)), key("web", Run::Verification)]
        );
    }
}
