//! Ferry: a Kubernetes operator that delivers applications from a git commit to production.
//!
//! - [`api`]: the custom resources and their validation rules.
//! - [`decide`]: pure decision logic, observed state in, desired status out.
//! - [`controller`]: the kube I/O shell, one reconciler per kind.
//! - [`telemetry`]: logs, metrics and the health endpoints.
//! - [`build`]: the steps that run inside build pods (`ferry build ...`).
//! - [`adapters`]: I/O outside Kubernetes (the registry).

pub mod adapters;
pub mod api;
pub mod build;
pub mod controller;
pub mod decide;
pub mod desired;
pub mod telemetry;
