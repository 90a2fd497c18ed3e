//! Durable history on a real API server: a finished change of an environment is also kept as a
//! DeliveryRecord that nobody can change, linked from the history entry; the records go with
//! their Application; and an Application re-applied without its status (from an export or a
//! backup) gets its history back from the records applied with it.

use ferry::api::application::{HistoryEntry, Outcome};
use ferry::api::{Application, DeliveryRecord, Environment, Release};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};

use crate::fixtures::{self, shop_1_4_2};
use crate::{RunningController, with_temp_ns};

/// The entry of dev's history that `check` finds, once it has one.
fn dev_entry(app: &Application, check: impl Fn(&HistoryEntry) -> bool) -> Option<HistoryEntry> {
    let status = app.status.as_ref()?;
    let dev = status.environments.iter().find(|e| e.name == "dev")?;
    dev.history.iter().find(|h| check(h)).cloned()
}

/// `object` as `kubectl get -o yaml` exports it for re-applying: no identity, no status.
fn exported(metadata: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        ..ObjectMeta::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_change_is_kept_as_a_record_and_a_lost_history_comes_back_from_it() {
    with_temp_ns("records", |ns| async move {
        let controller = RunningController::start(&ns.client, &ns.name);
        ns.create_object::<Environment>(fixtures::environment(
            "dev",
            "{health: {progressDeadline: 10s, stabilizationWindow: 0s}}",
        ))
        .await;
        ns.create_object::<Release>(shop_1_4_2()).await;
        ns.create_object::<Application>(fixtures::shop_through(&["dev"]))
            .await;

        // No node runs the pods: the rollout misses its deadline and its entry is final.
        let app = ns
            .wait_for::<Application>("shop", "the failed rollout linked to its record", |a| {
                dev_entry(a, |h| h.record.is_some()).is_some()
            })
            .await;
        let entry = dev_entry(&app, |h| h.record.is_some()).expect("a linked entry");
        assert_eq!(entry.outcome, Outcome::Failed);
        assert_eq!(entry.release, "shop-1.4.2");
        let name = entry.record.clone().expect("a link");
        let records = ns.api::<DeliveryRecord>();
        let record = records.get(&name).await.expect("the linked record");
        assert_eq!(record.spec.application, "shop");
        assert_eq!(record.spec.environment, "dev");
        assert_eq!(
            record.spec.entry,
            HistoryEntry {
                record: None,
                ..entry.clone()
            }
        );

        // Nobody rewrites it, not even cluster-admin.
        let forged = records
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"entry": {"outcome": "Succeeded"}}})),
            )
            .await;
        match forged {
            Err(kube::Error::Api(status)) if status.code == 422 => {
                assert!(status.message.contains("immutable"), "{}", status.message);
            }
            other => panic!("a record was changed: {other:?}"),
        }

        // Exported (the Application without its status, the record as it is), then deleted:
        // the Application's records go with it.
        let app_export = Application {
            metadata: exported(&app.metadata),
            spec: app.spec.clone(),
            status: None,
        };
        let record_export = DeliveryRecord {
            metadata: exported(&record.metadata),
            spec: record.spec.clone(),
        };
        ns.api::<Application>()
            .delete("shop", &DeleteParams::default())
            .await
            .expect("deleting the Application");
        ns.wait_gone::<Application>("shop", "the Application deleted")
            .await;
        let left = records
            .list(&ListParams::default().labels("ferry.dev/application=shop"))
            .await
            .expect("listing records");
        assert!(left.items.is_empty(), "records left: {:?}", left.items);

        // Re-applied, records first: the history is back, linked to the record, and the
        // release that failed here is still rejected.
        ns.create_object(record_export).await;
        ns.create_object(app_export).await;
        let restored = ns
            .wait_for::<Application>("shop", "the history restored", move |a| {
                dev_entry(a, |h| h.record.as_deref() == Some(name.as_str())).is_some()
            })
            .await;
        let back = dev_entry(&restored, |h| h.record.is_some()).expect("the entry");
        assert_eq!(back, entry);
        let dev = &restored.status.unwrap_or_default().environments[0];
        assert_eq!(dev.rejected, ["shop-1.4.2"]);
        assert!(
            dev.rollout.is_none(),
            "the rejected release is not rolled out again"
        );
        controller.stop().await;
    })
    .await;
}
