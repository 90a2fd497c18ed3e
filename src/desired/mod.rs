//! Pure builders of the objects Ferry owns: what they should look like, from the custom
//! resource that asks for them. No client and no clock, like `decide`; the shell applies them.

pub mod build_pod;
pub mod workload;
