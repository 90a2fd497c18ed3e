//! Ferry's field managers: one per controller, so that `kubectl get --show-managed-fields`
//! tells which part of Ferry wrote what.
//!
//! Each controller writes its own kind's status and the objects it makes under its own name:
//! the Application controller the Application's status, its BuildJobs and its workloads
//! (Deployments, Services, verification pods); the BuildJob controller the BuildJob's status,
//! its build pod and its Release; the Release and Environment controllers their statuses.
//!
//! Before, one manager, [`LEGACY`] (`ferry`), wrote everything. Server-side apply removes a
//! field only when its last owner stops applying it, so the fields `ferry` owned would stay
//! forever once the new managers stopped writing them: `controller::managers` releases them
//! after the new manager's first apply to each object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{PatchParams, PostParams};

/// A part of Ferry that writes to the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldManager {
    Application,
    BuildJob,
    Release,
    Environment,
}

/// The one field manager of every write before Ferry had one per controller.
pub const LEGACY: &str = "ferry";

impl FieldManager {
    pub const ALL: [FieldManager; 4] = [
        Self::Application,
        Self::BuildJob,
        Self::Release,
        Self::Environment,
    ];

    /// The name the API server records in `metadata.managedFields`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Application => "ferry-application",
            Self::BuildJob => "ferry-buildjob",
            Self::Release => "ferry-release",
            Self::Environment => "ferry-environment",
        }
    }

    /// A forced server-side apply under this manager: Ferry takes back its fields from
    /// whoever wrote them since.
    pub fn apply(self) -> PatchParams {
        PatchParams::apply(self.as_str()).force()
    }

    /// A create recorded under this manager.
    pub fn create(self) -> PostParams {
        PostParams {
            field_manager: Some(self.as_str().to_owned()),
            ..PostParams::default()
        }
    }

    /// A patch other than an apply (a merge patch) recorded under this manager.
    pub fn patch(self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.as_str().to_owned()),
            ..PatchParams::default()
        }
    }
}

/// Whether `manager` is a part of Ferry, old or new: never a person.
pub fn is_ferrys(manager: &str) -> bool {
    manager == LEGACY || FieldManager::ALL.iter().any(|m| m.as_str() == manager)
}

/// Whether the legacy manager still owns fields of an object through a server-side apply: of
/// its status (`status`) or of the object itself. Its `Update` entries (none that Ferry wrote:
/// its creates and merge patches went under the client's default name) are no business of
/// an apply and are left alone.
pub fn holds_legacy_apply(entries: &[ManagedFieldsEntry], status: bool) -> bool {
    entries.iter().any(|entry| {
        entry.manager.as_deref() == Some(LEGACY)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().unwrap_or_default()
                == if status { "status" } else { "" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, operation: &str, subresource: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            subresource: subresource.map(str::to_owned),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn only_an_apply_of_the_legacy_manager_on_the_same_subresource_is_legacy() {
        let cases = [
            (
                "the legacy manager's status apply",
                entry("ferry", "Apply", Some("status")),
                true,
                true,
            ),
            (
                "the legacy manager's apply of the object",
                entry("ferry", "Apply", None),
                false,
                true,
            ),
            (
                "an empty subresource is the object",
                entry("ferry", "Apply", Some("")),
                false,
                true,
            ),
            (
                "a status apply is not the object's",
                entry("ferry", "Apply", Some("status")),
                false,
                false,
            ),
            (
                "an apply of the object is not the status'",
                entry("ferry", "Apply", None),
                true,
                false,
            ),
            (
                "an update",
                entry("ferry", "Update", Some("status")),
                true,
                false,
            ),
            (
                "a new manager",
                entry("ferry-application", "Apply", Some("status")),
                true,
                false,
            ),
            ("a person", entry("kubectl", "Apply", None), false, false),
        ];
        for (name, entry, status, want) in cases {
            assert_eq!(holds_legacy_apply(&[entry], status), want, "{name}");
        }
    }

    #[test]
    fn every_manager_has_its_own_name_and_is_ferrys() {
        let mut names: Vec<&str> = FieldManager::ALL.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FieldManager::ALL.len());
        assert!(!names.contains(&LEGACY));
        for name in names.iter().chain([&LEGACY]) {
            assert!(is_ferrys(name), "{name}");
        }
        for person in [
            "kubectl",
            "kubectl-client-side-apply",
            "argocd-controller",
            "ferry-",
        ] {
            assert!(!is_ferrys(person), "{person}");
        }
    }
}
