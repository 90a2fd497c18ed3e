//! Every Event Ferry publishes goes through this module: the `Ready` transitions that status
//! writes announce (`status`), the first failure of a streak (`error`), rollouts (`delivery`)
//! and objects Ferry cannot read.
//!
//! It depends on nothing else of the shell but [`Context`], so that the error policy and the
//! status writer can both publish without depending on each other.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource};

use super::{Context, Guarded};
use crate::api::conditions;
use crate::api::reasons::{INVALID_OBJECT, Severity};
use crate::decide::events::Announcement;

/// Writes Events (`events.k8s.io/v1`) as kube's `Recorder` writes them, without its cache:
/// the `Recorder` keeps every Event it wrote for six minutes (to fold repeats into a series),
/// and prunes that cache only when it writes the next one. Ferry announces transitions, not
/// repeats (a failure streak is announced once), so the cache held one copy of every Event of
/// a burst (at 1,000 Applications, more than ten thousand) and scanned it all on each write.
pub struct EventWriter {
    client: Client,
    /// `reportingController`.
    controller: String,
    /// `reportingInstance`: the pod's name, or the controller's.
    instance: String,
}

impl EventWriter {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let controller = "ferry".to_owned();
        Self {
            client,
            instance: instance.unwrap_or_else(|| controller.clone()),
            controller,
        }
    }

    async fn write(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let written = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &written)
            .await?;
        Ok(())
    }
}

/// Publishes an Event about the object `regarding`. An Event that cannot be written is logged,
/// not retried: Events are best effort, and the status already says the same.
pub async fn publish(context: &Context, regarding: &ObjectReference, announcement: &Announcement) {
    publish_about(context, regarding, None, "Reconcile", announcement).await;
}

/// Publishes an Event about `regarding` that concerns `related` too (a rollout's Release), with
/// what Ferry did as its `action`. Events differing in either are never folded into one series.
pub async fn publish_about(
    context: &Context,
    regarding: &ObjectReference,
    related: Option<ObjectReference>,
    action: &str,
    announcement: &Announcement,
) {
    let event = Event {
        type_: match announcement.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: announcement.reason.clone(),
        note: Some(conditions::truncate(&announcement.note, 1024)),
        action: action.into(),
        secondary: related,
    };
    if let Err(error) = context.events.write(&event, regarding).await {
        tracing::warn!(%error, "cannot publish an Event");
    }
}

/// The object behind a guard, or `None`: after reporting why it cannot be read (a Warning
/// Event, since the status cannot be written through a type the object does not fit, and a log
/// line), or when it is a copy older than Ferry's own last status write of it
/// (`status::OwnWrites`), whose watch event brings the newer copy and another reconcile.
pub async fn readable<'a, K>(object: &'a Guarded<K>, context: &Context) -> Option<&'a K>
where
    K: Resource<DynamicType = ()>,
{
    match &object.0 {
        // A copy from before Ferry's own last status write: the written one comes next.
        Ok(_)
            if context.own_writes.outdated(
                &super::error::failure_key(object),
                object.meta().resource_version.as_deref(),
            ) =>
        {
            tracing::debug!("an older copy than Ferry's last status write; waiting for it");
            None
        }
        Ok(valid) => Some(valid),
        Err(invalid) => {
            let kind = K::kind(&());
            let name = object.meta().name.clone().unwrap_or_default();
            tracing::warn!(%kind, %name, error = %invalid, "cannot read the object");
            let announcement = Announcement {
                severity: INVALID_OBJECT.severity,
                reason: INVALID_OBJECT.name.to_owned(),
                note: format!(
                    "Ferry cannot read this object ({invalid}); correct it to match `kubectl explain {}`",
                    kind.to_lowercase()
                ),
            };
            publish(context, &object.object_ref(&()), &announcement).await;
            None
        }
    }
}
