//! The DeliveryRecord: one finished change of one environment, kept as an object of its own.
//!
//! An environment's history lives in its Application's status, which backups and
//! `kubectl apply` of exported objects do not restore. Each entry, once it has its outcome, is
//! also written as a DeliveryRecord: an object whose spec is the entry and cannot change (a
//! CEL rule), which Ferry alone creates (no role given to people may create one). An
//! Application whose status is gone (restored from a backup) gets its history back from them.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::application::HistoryEntry;

/// One finished change of one environment: a rollout, promotion, approval, pin, rollback or
/// superseded candidate, as its environment's history recorded it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "DeliveryRecord",
    namespaced,
    derive = "PartialEq",
    shortname = "drec",
    category = "ferry",
    doc = "One finished change of one environment (a rollout, promotion, approval, pin, rollback or superseded candidate), kept as an immutable object so that the history survives a backup and restore.",
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(
        name = "Environment",
        type_ = "string",
        json_path = ".spec.environment"
    ),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.entry.kind"),
    printcolumn(name = "Release", type_ = "string", json_path = ".spec.entry.release"),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".spec.entry.outcome"),
    printcolumn(name = "Actor", type_ = "string", json_path = ".spec.entry.actor"),
    printcolumn(name = "Time", type_ = "date", json_path = ".spec.entry.time"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".spec.entry.reason",
        priority = 1
    ),
    selectable = ".spec.application",
    selectable = ".spec.environment"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("a DeliveryRecord is immutable: it records a change that happened"))]
pub struct DeliveryRecordSpec {
    /// The Application whose environment changed.
    #[schemars(length(min = 1, max = 63))]
    pub application: String,

    /// The Environment that changed.
    #[schemars(length(min = 1, max = 63))]
    pub environment: String,

    /// The history entry, as the Application's status holds it.
    pub entry: HistoryEntry,
}
