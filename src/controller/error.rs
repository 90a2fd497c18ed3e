//! Why a reconcile failed, and what happens then (the error policy).
//!
//! User mistakes are not errors: they become conditions. An [`Error`] is a transient fault
//! (the API server did not answer, a write conflicted): the object is retried with a
//! per-object exponential backoff with jitter (`decide::backoff`), keyed by the object's UID so
//! that a deleted and recreated object starts afresh, and forgotten when the object is
//! deleted. The first failure of a streak is a Warning Event whose reason is the error's
//! category and whose note is the cause chain; later ones are logged and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;
use super::events::publish;
use crate::api::reasons::{
    self, ACTION_FAILED, DEPLOYMENT_NOT_GRANTED, MISSING_NAMESPACE, OBSERVE_FAILED, Reason,
    TAG_LOOKUP_FAILED, WORKLOAD_NOT_OWNED, WRITE_STATUS_FAILED,
};
use crate::decide::backoff;
use crate::decide::events::Announcement;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the object has no namespace")]
    MissingNamespace,
    #[error("reading {what}")]
    Observe {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status")]
    WriteStatus(#[source] kube::Error),
    #[error("{what}")]
    Act {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the tags of the commit")]
    Tags(#[source] crate::adapters::git::GitError),
    /// A Deployment or Service under a workload's name that Ferry did not create: not
    /// applied, and tried again with backoff (someone may delete or rename it).
    #[error("{0}")]
    WorkloadNotOwned(String),
    /// A write to a Deployment or Service refused (403) in a namespace that has not bound the
    /// `ferry-deployer` ClusterRole to Ferry: the message gives the command.
    #[error("{0}")]
    WorkloadsNotGranted(String),
}

impl Error {
    /// A stable name for the metric label and the Event reason.
    pub fn category(&self) -> Reason {
        match self {
            Self::MissingNamespace => MISSING_NAMESPACE,
            Self::Observe { .. } => OBSERVE_FAILED,
            Self::WriteStatus(_) => WRITE_STATUS_FAILED,
            Self::Act { .. } => ACTION_FAILED,
            Self::Tags(_) => TAG_LOOKUP_FAILED,
            Self::WorkloadNotOwned(_) => WORKLOAD_NOT_OWNED,
            Self::WorkloadsNotGranted(_) => DEPLOYMENT_NOT_GRANTED,
        }
    }

    pub(crate) fn observe(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Observe { what, source }
    }

    pub(crate) fn act(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Act { what, source }
    }

    /// This error, or for a write to a workload in `namespace` that the API server refused
    /// (403), [`Error::WorkloadsNotGranted`] with the command that grants it: Ferry's rights to
    /// write Deployments and Services come only from a `ferry-deployer` RoleBinding there.
    pub(crate) fn on_workload(self, namespace: &str, service_account: &str) -> Self {
        match self.rbac_refusal() {
            Some(what) => Self::WorkloadsNotGranted(format!(
                "{what}: {}",
                crate::decide::environment::not_granted(namespace, service_account).message
            )),
            None => self,
        }
    }

    /// For a write RBAC refused (see [`refused_by_rbac`]), what was refused.
    pub(crate) fn rbac_refusal(&self) -> Option<&str> {
        match self {
            Self::Act { what, source } if refused_by_rbac(source) => Some(what),
            _ => None,
        }
    }
}

/// Whether the API server's answer is RBAC refusing the request (`User "…" cannot patch resource
/// "deployments" …`), not another 403: a quota, or an admission policy or webhook, which no
/// RoleBinding would fix.
pub(crate) fn refused_by_rbac(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 403
            && status.message.contains(" cannot ")
            && status.message.contains(" resource \""))
}

/// An error with its causes, as one line: each level says only what it adds, so nothing is
/// repeated. An API error ends the chain with the API server's answer: kube's own `Display`
/// for it repeats the `Status` that is also its source.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            text.push_str(&format!(
                "the API server answered {} {}: {}",
                status.code, status.reason, status.message
            ));
            break;
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Consecutive failures per object (by UID), for backoff and for announcing only the first.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a failure of `key`; returns how many in a row.
    pub fn failed(&self, key: &str) -> u32 {
        let mut failures = self.lock();
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Ends the streak of `key` (a success) or forgets it (a deletion).
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The key an object's failures are counted under: its UID, so that a recreated object of the
/// same name does not inherit the old one's backoff.
pub fn failure_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    match &object.meta().uid {
        Some(uid) => uid.clone(),
        None => format!(
            "{}/{}/{}",
            K::kind(&()),
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref().unwrap_or_default()
        ),
    }
}

/// Clears an object's failure streak after a successful reconcile.
pub fn succeeded<K: Resource<DynamicType = ()>>(context: &Context, object: &K) {
    context.failures.clear(&failure_key(object));
}

/// The error policy of every controller: count, log, announce the first failure of a streak,
/// and retry after the backoff delay.
pub fn policy<K>(object: Arc<K>, error: &Error, context: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()> + ResourceExt,
{
    let kind = K::kind(&()).into_owned();
    let attempts = context.failures.failed(&failure_key(object.as_ref()));
    let category = error.category();
    context
        .metrics
        .reconcile_failed(static_kind(&kind), category.name);
    let cause = chain(error);
    tracing::warn!(%kind, name = %object.name_any(), error = %cause, attempts, "reconcile failed");
    if backoff::announces(attempts) {
        let announcement = Announcement {
            severity: reasons::Severity::Warning,
            reason: category.name.to_owned(),
            note: cause,
        };
        let reference = object.object_ref(&());
        let context = context.clone();
        // The error policy cannot wait; the Event is best effort, like every Event.
        tokio::spawn(async move { publish(&context, &reference, &announcement).await });
    }
    Action::requeue(backoff::delay(attempts, fastrand::f64()))
}

/// The kind as a `'static` metric label.
pub fn static_kind(kind: &str) -> &'static str {
    match kind {
        "Application" => "Application",
        "Environment" => "Environment",
        "Release" => "Release",
        "BuildJob" => "BuildJob",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Failure")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn each_error_has_its_category() {
        let cases = [
            (Error::MissingNamespace, "MissingNamespace"),
            (
                Error::observe("Secret a/b")(api_error(500, "boom")),
                "ObserveFailed",
            ),
            (
                Error::WriteStatus(api_error(500, "boom")),
                "WriteStatusFailed",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.category().name, want, "{error}");
            assert!(reasons::Reason::named(want).is_some(), "{want} is listed");
        }
    }

    #[test]
    fn a_refused_workload_write_names_the_grant_and_nothing_else_does() {
        let refused = Error::act("applying Deployment team-a-prod/shop-prod")(api_error(
            403,
            "deployments.apps \"shop-prod\" is forbidden: User \"system:serviceaccount:ferry-system:ferry\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"team-a-prod\"",
        ))
        .on_workload("team-a-prod", "ferry-system:ferry");
        assert_eq!(refused.category().name, "DeploymentNotGranted");
        let text = refused.to_string();
        assert!(
            text.starts_with("applying Deployment team-a-prod/shop-prod: Ferry may not write")
                && text.contains(
                    "kubectl -n team-a-prod create rolebinding ferry-deployer --clusterrole=ferry-deployer --serviceaccount=ferry-system:ferry"
                ),
            "{text}"
        );
        for other in [
            Error::act("applying Deployment a/b")(api_error(409, "conflict")),
            Error::observe("Deployment a/b")(api_error(403, "forbidden")),
            // 403s no RoleBinding fixes: a quota, an admission policy.
            Error::act("applying Deployment a/b")(api_error(
                403,
                "deployments.apps \"b\" is forbidden: exceeded quota: compute, requested: pods=1",
            )),
            Error::act("applying Deployment a/b")(api_error(
                403,
                "deployments.apps \"b\" is forbidden: ValidatingAdmissionPolicy 'no-latest' with binding 'x' denied request: images must be pinned",
            )),
        ] {
            let category = other.category().name;
            assert_ne!(
                other.on_workload("a", "ferry-system:ferry").category().name,
                "DeploymentNotGranted",
                "{category}"
            );
        }
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let error = Error::observe("Secret team-a/git")(api_error(503, "etcd is unavailable"));
        let text = chain(&error);
        assert!(text.starts_with("reading Secret team-a/git: "), "{text}");
        assert_eq!(text.matches("etcd is unavailable").count(), 1, "{text}");
    }

    #[test]
    fn failures_are_counted_per_key_until_cleared() {
        let failures = Failures::default();
        assert_eq!(failures.failed("uid-1"), 1);
        assert_eq!(failures.failed("uid-1"), 2);
        assert_eq!(failures.failed("uid-2"), 1);
        failures.clear("uid-1");
        assert_eq!(failures.failed("uid-1"), 1, "a success starts a new streak");
        failures.clear("uid-1");
        failures.clear("uid-2");
        assert!(failures.is_empty(), "deleted objects are forgotten");
    }

    #[test]
    fn a_recreated_object_does_not_inherit_the_old_ones_failures() {
        let object = |uid: &str| {
            let mut app: crate::api::Application = serde_yaml::from_str(
                "metadata: {name: shop, namespace: team-a}\nspec: {source: {url: 'http://git.local/shop.git'}, build: {builderImage: b, script: s, baseImage: i}, image: {repository: r}}",
            )
            .unwrap();
            app.metadata.uid = Some(uid.to_owned());
            app
        };
        assert_ne!(failure_key(&object("a")), failure_key(&object("b")));
    }
}
