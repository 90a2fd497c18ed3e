//! I/O outside Kubernetes. Each adapter speaks one foreign protocol and turns its failures
//! into errors with a stable category, so that the callers (the build steps now, the
//! controllers later) never see a protocol library's types.
//!
//! - [`registry`]: an OCI registry through `oci-client`: blobs, manifests, credentials from a
//!   dockerconfigjson, and [`registry::manifest_exists`] for verifying a pushed image.

pub mod registry;
