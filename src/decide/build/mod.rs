//! Builds, decided: which commit becomes which BuildJob, and which finished build becomes
//! which Release.
//!
//! - `naming`: the deterministic names that make "exactly one BuildJob per (Application,
//!   commit)" and "never two Releases for one commit" hold across webhook/poll races, replicas
//!   and restarts: a second create of the same name is refused by the API server.
//! - `version`: a commit's Release version from its tags.
//! - `work_items`: the work items commit messages reference.
//! - `progress`: how far a build has come, from its pod and the registry's word.
//! - `objects`: the BuildJob of a commit, the Release of a verified build, retention.

pub mod naming;
pub mod objects;
pub mod progress;
pub mod version;
pub mod work_items;
