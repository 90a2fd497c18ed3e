//! Whether an object found under a name Ferry uses is Ferry's own.
//!
//! Ferry names its build pods, test pods, Deployments and Services deterministically, so that a
//! second create after a restart is refused instead of made twice. The same names let anyone
//! who may create pods or Deployments in a namespace create one first. A name is therefore
//! never proof: a pod is Ferry's only when its controller owner reference carries the UID of
//! the BuildJob (build pod) or Application (test pod) it runs for, and it carries Ferry's
//! labels; a Deployment or Service (which lives in another namespace than its Application, so
//! it has no owner reference) only when its labels name the Application and environment and a
//! Ferry field manager wrote it. What is not Ferry's is never trusted, adopted, overwritten or
//! deleted: the caller fails the build or verification, or leaves the workload alone, naming
//! the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::labels::{
    APPLICATION_LABEL, APPLICATION_NAMESPACE_LABEL, ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use crate::api::managers::{FieldManager, LEGACY};

/// Why the pod `meta` is not the one Ferry made for the object of UID `owner_uid`, if it is not:
/// it must name that UID as its controller and carry each of the `labels`.
pub fn pod_not_ours(meta: &ObjectMeta, owner_uid: &str, labels: &[(&str, &str)]) -> Option<String> {
    let name = meta.name.as_deref().unwrap_or_default();
    let controlled = meta.owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true) && !owner_uid.is_empty() && owner.uid == owner_uid
    });
    if !controlled {
        return Some(format!(
            "the pod {name} was not created by Ferry (its controller owner reference is not \
             UID {owner_uid}); Ferry does not trust, adopt or delete it"
        ));
    }
    missing_label(meta, labels).map(|(key, value)| {
        format!(
            "the pod {name} lacks Ferry's label {key}={value}; Ferry does not trust, adopt or \
             delete it"
        )
    })
}

/// Why the workload object `meta` (a Deployment or Service, `kind`) is not Ferry's for the
/// Application `app` of `app_namespace` in `environment`, if it is not: its labels must name
/// them and a Ferry field manager must have written it.
pub fn workload_not_ours(
    kind: &str,
    meta: &ObjectMeta,
    app_namespace: &str,
    app: &str,
    environment: &str,
) -> Option<String> {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let expected = [
        (MANAGED_BY_LABEL, MANAGED_BY),
        (APPLICATION_NAMESPACE_LABEL, app_namespace),
        (APPLICATION_LABEL, app),
        (ENVIRONMENT_LABEL, environment),
    ];
    let refuse = |why: String| {
        Some(format!(
            "the {kind} {namespace}/{name} exists and is not Ferry's ({why}); Ferry does not \
             take it over: delete or rename it, or deploy to another namespace"
        ))
    };
    if let Some((key, value)) = missing_label(meta, &expected) {
        return refuse(format!("it lacks the label {key}={value}"));
    }
    let managers = [FieldManager::Application.as_str(), LEGACY];
    let written = meta.managed_fields.iter().flatten().any(|entry| {
        entry
            .manager
            .as_deref()
            .is_some_and(|m| managers.contains(&m))
    });
    if !written {
        return refuse(format!(
            "no field of it is managed by {}",
            FieldManager::Application.as_str()
        ));
    }
    None
}

/// The first of `labels` that `meta` does not carry with that value.
fn missing_label<'a>(
    meta: &ObjectMeta,
    labels: &[(&'a str, &'a str)],
) -> Option<(&'a str, &'a str)> {
    let carried = meta.labels.as_ref();
    labels
        .iter()
        .find(|(key, value)| carried.and_then(|l| l.get(*key)).map(String::as_str) != Some(*value))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(yaml: &str) -> ObjectMeta {
        serde_yaml::from_str(yaml).expect("valid metadata")
    }

    /// Checks what was said of the object of case `name`: nothing when the case expects it to be
    /// Ferry's, else a reason that holds the `expected` part and names the `object`.
    fn judge(name: &str, why: Option<String>, expected: Option<&str>, object: &str) {
        match expected {
            None => assert_eq!(why, None, "{name}"),
            Some(part) => {
                let why = why.unwrap_or_else(|| panic!("{name}: taken as ours"));
                assert!(why.contains(part), "{name}: {why}");
                assert!(why.contains(object), "{name}: names the object: {why}");
            }
        }
    }

    const BUILD_LABELS: &[(&str, &str)] = &[
        ("app.kubernetes.io/managed-by", "ferry"),
        ("ferry.dev/buildjob", "shop-9fceb02"),
    ];
    /// The labels of the build pod Ferry makes, as flow YAML.
    const FERRYS_LABELS: &str =
        "{app.kubernetes.io/managed-by: ferry, ferry.dev/buildjob: shop-9fceb02}";
    /// The owner reference of the build pod Ferry makes, past its kind and name.
    const FERRYS_OWNER: &str = "uid: job-uid, controller: true";

    /// The build pod's metadata with these `labels` and, if any, an owner reference to the
    /// BuildJob with these fields past its kind and name.
    fn pod(labels: &str, owner: Option<&str>) -> ObjectMeta {
        let mut yaml = format!("name: shop-9fceb02\nlabels: {labels}\n");
        if let Some(owner) = owner {
            yaml.push_str(&format!(
                "ownerReferences:\n- {{apiVersion: ferry.dev/v1alpha1, kind: BuildJob, name: shop-9fceb02, {owner}}}\n"
            ));
        }
        meta(&yaml)
    }

    #[test]
    fn a_pod_is_ours_only_with_its_owners_uid_as_controller_and_ferrys_labels() {
        let cases = [
            (
                "the pod Ferry made",
                pod(FERRYS_LABELS, Some(FERRYS_OWNER)),
                None,
            ),
            (
                "a pod made beforehand under the same name, without owner",
                pod(FERRYS_LABELS, None),
                Some("not created by Ferry"),
            ),
            (
                "a pod owned by a BuildJob of the same name that was deleted and recreated",
                pod(FERRYS_LABELS, Some("uid: old-uid, controller: true")),
                Some("UID job-uid"),
            ),
            (
                "an owner reference that is not the controller",
                pod(FERRYS_LABELS, Some("uid: job-uid")),
                Some("not created by Ferry"),
            ),
            (
                "the right owner but not Ferry's labels",
                pod(
                    "{app.kubernetes.io/managed-by: someone}",
                    Some(FERRYS_OWNER),
                ),
                Some("lacks Ferry's label app.kubernetes.io/managed-by=ferry"),
            ),
        ];
        for (name, meta, expected) in cases {
            let why = pod_not_ours(&meta, "job-uid", BUILD_LABELS);
            judge(name, why, expected, "shop-9fceb02");
        }
    }

    #[test]
    fn an_owner_without_a_uid_owns_nothing() {
        let meta = pod(FERRYS_LABELS, Some("uid: \"\", controller: true"));
        assert!(pod_not_ours(&meta, "", BUILD_LABELS).is_some());
    }

    #[test]
    fn a_workload_is_ours_only_with_the_applications_labels_and_ferrys_field_manager() {
        let ferrys = r#"
namespace: shop-prod
name: shop-prod
labels:
  app.kubernetes.io/managed-by: ferry
  ferry.dev/application: shop
  ferry.dev/application-namespace: team-a
  ferry.dev/environment: prod
managedFields:
- {manager: ferry-application, operation: Apply}
"#;
        let not_ours =
            |yaml: &str| workload_not_ours("Deployment", &meta(yaml), "team-a", "shop", "prod");
        let object = "Deployment shop-prod/shop-prod";
        let cases = [
            ("the Deployment Ferry applied", ferrys.to_owned(), None),
            (
                "one applied by the single manager of older versions",
                ferrys.replace("ferry-application", "ferry"),
                None,
            ),
            (
                "a Deployment someone created without Ferry's labels",
                "namespace: shop-prod\nname: shop-prod\nlabels: {app: shop}\nmanagedFields:\n- {manager: kubectl-create, operation: Update}\n".to_owned(),
                Some("lacks the label app.kubernetes.io/managed-by=ferry"),
            ),
            (
                "Ferry's labels copied by hand, written by kubectl",
                ferrys.replace("ferry-application", "kubectl-client-side-apply"),
                Some("no field of it is managed by ferry-application"),
            ),
        ];
        for (name, yaml, expected) in cases {
            judge(name, not_ours(&yaml), expected, object);
        }
        // The workload of another Application, of an Application of another namespace, of
        // another environment.
        for (label, ours, theirs) in [
            ("ferry.dev/application", "shop", "cart"),
            ("ferry.dev/application-namespace", "team-a", "team-b"),
            ("ferry.dev/environment", "prod", "dev"),
        ] {
            let yaml = ferrys.replace(&format!("{label}: {ours}"), &format!("{label}: {theirs}"));
            let expected = format!("lacks the label {label}={ours}");
            judge(label, not_ours(&yaml), Some(&expected), object);
        }
    }
}
