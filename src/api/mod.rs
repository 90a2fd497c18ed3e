//! Ferry's custom resources (group `ferry.dev`, version `v1alpha1`), one file per kind.
//!
//! Everything the API server can check is declared here, on the types: OpenAPI bounds from
//! `#[schemars(...)]` and CEL rules from `#[x_kube(validation = ...)]`. The generated CRDs are
//! printed by `ferry crds` and committed under `crds/`; a test fails when they drift.
//!
//! This module also re-exports the Kubernetes types the rest of the crate uses, so that other
//! modules name one path for them.

// Clippy reads the repeated `type_ = "string"` of kube's `printcolumn(...)` arguments as
// duplicated attributes; they are arguments of different columns.
#![allow(clippy::duplicated_attributes)]

pub mod application;
pub mod buildjob;
pub mod conditions;
pub mod descriptions;
pub mod environment;
pub mod labels;
pub mod managers;
pub mod reasons;
pub mod record;
pub mod reference;
pub mod release;
pub mod shared;

pub use application::{Application, ApplicationSpec, ApplicationStatus};
pub use buildjob::{BuildJob, BuildJobSpec, BuildJobStatus};
pub use conditions::CommonStatus;
pub use environment::{Environment, EnvironmentSpec, EnvironmentStatus};
pub use record::{DeliveryRecord, DeliveryRecordSpec};
pub use release::{Release, ReleaseSpec, ReleaseStatus};

pub use k8s_openapi::api::core::v1::{
    EnvVar, Namespace, Probe, ResourceRequirements, Secret, ServicePort,
};
pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
pub use kube::Resource;
pub use kube::core::Duration;

use kube::CustomResourceExt;

/// The API group of every Ferry kind.
pub const GROUP: &str = "ferry.dev";

/// The owner reference that makes `owner` the controller of an object Ferry creates, so that
/// deleting the owner deletes it; `None` for an owner not stored yet (no UID).
pub fn controlled_by<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner.controller_owner_ref(&())?
    })
}

/// The five CRDs, in the order `ferry crds` prints them, with their descriptions reflowed
/// into paragraphs for `kubectl explain` (`descriptions`).
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Application::crd(),
        BuildJob::crd(),
        DeliveryRecord::crd(),
        Environment::crd(),
        Release::crd(),
    ];
    crds.iter_mut().for_each(descriptions::reflow_crd);
    crds
}

/// One YAML file per CRD, named `<plural>.ferry.dev.yaml`, as committed in `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            Ok((file, serde_yaml::to_string(&crd)?))
        })
        .collect()
}

/// The CRDs as one multi-document YAML stream, as in `manifests/crds.yaml`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
