//! The steps that run inside a build pod (see `desired::build_pod`), each a `ferry build`
//! subcommand.
//!
//! - [`fetch`]: one commit checked out into the workspace, and the work items since the
//!   previous Release reported.
//! - [`publish`]: the build's output (a directory, or an OCI layout) becomes an image in the
//!   registry; its digest is reported in the termination message.
//!   - [`layer`]: a directory as one reproducible gzip layer, with a cache of unchanged ones.
//!   - [`layout`]: reading (and, for tests, writing) an OCI image layout.

pub mod fetch;
pub mod layer;
pub mod layout;
pub mod publish;
