//! The DeliveryRecord of a history entry: its name and its object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::short_hash;
use super::workload::child_labels;
use crate::api::application::HistoryEntry;
use crate::api::{DeliveryRecord, DeliveryRecordSpec};

/// The record's name: the Application, the environment, and a hash of them and of what
/// identifies the entry (its time, kind and release), so that writing it again after a crash
/// meets the one written before (`AlreadyExists`) instead of making a second.
pub fn name(app: &str, environment: &str, entry: &HistoryEntry) -> String {
    let key = format!(
        "{app}\n{environment}\n{}\n{}\n{}",
        entry.time.0.as_second(),
        entry.kind.as_str(),
        entry.release
    );
    format!("{app}-{environment}-{}", short_hash(key.as_bytes()))
}

/// The record of `entry` of `environment`, in the Application's namespace, with the labels of
/// the Application's other children. No owner reference: a restored Application has a new
/// UID, and the garbage collector would delete records that name the old one. The
/// Application's finalizer deletes them with it instead.
pub fn record(
    namespace: &str,
    app: &str,
    environment: &str,
    entry: &HistoryEntry,
) -> DeliveryRecord {
    let mut entry = entry.clone();
    entry.record = None;
    DeliveryRecord {
        metadata: ObjectMeta {
            name: Some(name(app, environment, &entry)),
            namespace: Some(namespace.to_owned()),
            labels: Some(child_labels(namespace, app, environment)),
            ..ObjectMeta::default()
        },
        spec: DeliveryRecordSpec {
            application: app.to_owned(),
            environment: environment.to_owned(),
            entry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;
    use crate::api::application::{HistoryKind, Outcome};

    fn entry(second: i64, kind: HistoryKind, release: &str) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            from: None,
            time: Time(jiff::Timestamp::from_second(second).unwrap()),
            kind,
            outcome: Outcome::Succeeded,
            reason: "newest".into(),
            actor: None,
            pin_reason: None,
            record: None,
        }
    }

    #[test]
    fn an_entry_keeps_its_name_as_its_outcome_changes_and_others_differ() {
        let first = entry(100, HistoryKind::Rollout, "web-1");
        let mut failed = first.clone();
        failed.outcome = Outcome::Failed;
        failed.reason = "crash loop".into();
        assert_eq!(name("web", "dev", &first), name("web", "dev", &failed));
        for other in [
            entry(101, HistoryKind::Rollout, "web-1"),
            entry(100, HistoryKind::Rollback, "web-1"),
            entry(100, HistoryKind::Rollout, "web-2"),
        ] {
            assert_ne!(name("web", "dev", &first), name("web", "dev", &other));
        }
        assert_ne!(name("web", "dev", &first), name("web", "prod", &first));
    }

    #[test]
    fn a_record_holds_the_entry_without_its_link() {
        let mut linked = entry(100, HistoryKind::Approval, "web-1");
        linked.record = Some("web-prod-0123456789".into());
        let record = record("shop", "web", "prod", &linked);
        assert_eq!(record.spec.entry.record, None);
        assert_eq!(record.spec.entry.release, "web-1");
        assert_eq!(record.metadata.namespace.as_deref(), Some("shop"));
        assert!(record.metadata.owner_references.is_none());
        let labels = record.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get("ferry.dev/environment").map(String::as_str),
            Some("prod")
        );
    }
}
