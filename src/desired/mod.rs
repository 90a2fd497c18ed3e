//! Pure builders of the objects Ferry owns: what they should look like, from the custom
//! resource that asks for them. No client and no clock, like `decide`; the shell applies them.

pub mod applied;
pub mod build_pod;
pub mod record;
pub mod verification;
pub mod workload;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use sha2::{Digest, Sha256};

/// Hex digits of the sha256 that a name cut to fit a length limit ends with ([`short_hash`]).
pub const HASH_DIGITS: usize = 10;

/// The first [`HASH_DIGITS`] hex digits of the sha256 of `bytes`: what a name cut to fit a
/// length limit ends with, so that two long names sharing a prefix still differ.
pub fn short_hash(bytes: &[u8]) -> String {
    let mut hash = hex::encode(Sha256::digest(bytes));
    hash.truncate(HASH_DIGITS);
    hash
}

/// A container under the `restricted` Pod Security Standard, with a read-only root file
/// system (a container whose image writes where it likes sets it back to `false`).
pub fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// [`restricted`], with a writable root file system: for an image that writes where it likes.
pub fn restricted_writable() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(false),
        ..restricted()
    }
}

/// A pod under the `restricted` Pod Security Standard, its containers running as `user`
/// (also their group and the owner of its volumes): non-root, seccomp `RuntimeDefault`.
pub fn restricted_pod(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}
