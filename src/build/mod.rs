//! The steps that run inside build pods.

pub mod fetch;
