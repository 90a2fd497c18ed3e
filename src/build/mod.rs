//! The steps that run inside a build pod (see `desired::build_pod`), each a `ferry build`
//! subcommand.
//!
//! - [`publish`]: the build's output (a directory, or an OCI layout) becomes an image in the
//!   registry; its digest is reported in the termination message.
//!   - [`layer`]: a directory as one reproducible gzip layer, with a cache of unchanged ones.
//!   - [`layout`]: reading (and, for tests, writing) an OCI image layout.

pub mod layer;
pub mod layout;
pub mod publish;
