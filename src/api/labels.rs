//! Every label, annotation and finalizer key Ferry writes or selects by, in one place.
//!
//! Objects Ferry makes carry `app.kubernetes.io/managed-by=ferry` and the keys below; the
//! watches select by them, the cleanup lists by them, and a person reads them with
//! `kubectl get -l`. The values are part of Ferry's interface with existing clusters: changing
//! a key orphans the objects labelled with the old one.

/// The recommended label that marks the objects Ferry manages, and its value.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "ferry";

/// The recommended name label: the Application a workload runs. The Service selects pods by
/// it, so a test pod does not carry it (see `desired::verification`).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The recommended component label, and the value that marks build pods.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const BUILD_COMPONENT: &str = "build";

/// The Application an object Ferry makes belongs to.
pub const APPLICATION_LABEL: &str = "ferry.dev/application";

/// The namespace of that Application: a workload in an Environment's target namespace lives
/// elsewhere than its Application.
pub const APPLICATION_NAMESPACE_LABEL: &str = "ferry.dev/application-namespace";

/// The environment a workload or test pod belongs to.
pub const ENVIRONMENT_LABEL: &str = "ferry.dev/environment";

/// The release a Deployment or pod runs: the name itself when it is a valid label value, else
/// a shortened name with a hash of the full one (`desired::workload::release_label_value`).
pub const RELEASE_LABEL: &str = "ferry.dev/release";

/// The release a Deployment or pod runs, always the full name (the same key as
/// [`RELEASE_LABEL`], as an annotation).
pub const RELEASE_ANNOTATION: &str = "ferry.dev/release";

/// On a Deployment or Service Ferry applies: a hash of everything Ferry applied, so that a
/// field Ferry stops setting (a selector label, an override removed) is noticed and applied
/// again, not only a field it sets (`desired::applied`).
pub const APPLIED_ANNOTATION: &str = "ferry.dev/applied";

/// The BlueGreen slot (`blue` or `green`) of a Deployment and its pods.
pub const SLOT_LABEL: &str = "ferry.dev/slot";

/// The BuildJob a build pod builds.
pub const BUILDJOB_LABEL: &str = "ferry.dev/buildjob";

/// Marks a verification test pod, with the value `"true"`.
pub const VERIFICATION_LABEL: &str = "ferry.dev/verification";

/// The annotation on a target namespace that lists the namespaces allowed to deploy into it,
/// comma-separated. Only the annotation counts, not a label of the same key.
pub const CONSENT_ANNOTATION: &str = "ferry.dev/allow-deploy-from";

/// The finalizer that deletes an Application's workloads in other namespaces with it.
pub const WORKLOADS_FINALIZER: &str = "ferry.dev/workloads";

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key is a valid qualified name, and no two constants name the same key except the
    /// release label and annotation, which are one key on purpose.
    #[test]
    fn every_key_is_qualified_and_defined_once() {
        let keys = [
            MANAGED_BY_LABEL,
            NAME_LABEL,
            COMPONENT_LABEL,
            APPLICATION_LABEL,
            APPLICATION_NAMESPACE_LABEL,
            ENVIRONMENT_LABEL,
            RELEASE_LABEL,
            SLOT_LABEL,
            BUILDJOB_LABEL,
            VERIFICATION_LABEL,
            CONSENT_ANNOTATION,
            WORKLOADS_FINALIZER,
        ];
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "a key is defined twice");
        for key in keys {
            let (prefix, name) = key.split_once('/').expect("a prefixed key");
            assert!(
                prefix.ends_with("ferry.dev") || prefix == "app.kubernetes.io",
                "{key}"
            );
            assert!(!name.is_empty() && name.len() <= 63, "{key}");
        }
        assert_eq!(RELEASE_LABEL, RELEASE_ANNOTATION);
    }
}
