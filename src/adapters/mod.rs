//! I/O outside Kubernetes, each behind a small trait so that `decide` never sees it and tests
//! can substitute it.

pub mod git;
pub mod webhook;
