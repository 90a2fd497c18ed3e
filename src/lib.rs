//! Ferry: a Kubernetes operator that delivers applications from a git commit to production.
//!
//! - [`api`]: the custom resources and their validation rules.
//! - [`decide`]: pure decision logic, observed state in, desired status out.
//! - [`controller`]: the kube I/O shell, one reconciler per kind.
//! - [`adapters`]: git, webhooks: I/O outside Kubernetes behind small traits.
//! - [`build`]: the steps that run inside build pods.
//! - [`http`]: the push webhook endpoint.
//! - [`telemetry`]: logs, metrics and the health endpoints.
//! - [`build`]: the steps that run inside build pods (`ferry build ...`).
//! - [`adapters`]: I/O outside Kubernetes (the registry).

pub mod adapters;
pub mod api;
pub mod build;
pub mod controller;
pub mod decide;
pub mod desired;
pub mod http;
pub mod telemetry;
