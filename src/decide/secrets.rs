//! Whether a referenced Secret exists and has the keys its use needs.
//!
//! Only key names are looked at, never values, so nothing here can leak a credential into a
//! condition or an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Blocker;
use crate::api::reasons::{SECRET_INVALID, SECRET_NOT_FOUND, SECRETS_NOT_GRANTED};

/// How soon an object blocked by a Secret is looked at again. Ferry does not watch Secrets:
/// it may read them only in the namespaces granted to it, one `get` at a time, so a Secret
/// created or fixed later is noticed by this recheck.
pub const RECHECK: Duration = Duration::from_secs(10);

/// What a Secret is used for, which decides the keys it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretUse {
    /// Fetching the git repository: basic auth or an SSH key.
    GitCredentials,
    /// Verifying webhook signatures: an HMAC key.
    WebhookKey,
    /// Pushing to the registry: a docker config.
    RegistryCredentials,
}

impl SecretUse {
    /// The use of the Secret named by a spec field.
    pub fn of_field(field: &str) -> Self {
        if field.ends_with("webhookSecret") {
            Self::WebhookKey
        } else if field.ends_with("pushSecret") {
            Self::RegistryCredentials
        } else {
            Self::GitCredentials
        }
    }

    /// Key sets that satisfy this use; any one of them is enough.
    fn accepted_keys(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::GitCredentials => &[&["username", "password"], &["ssh-privatekey"]],
            Self::WebhookKey => &[&["secret"]],
            Self::RegistryCredentials => &[&[".dockerconfigjson"]],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::GitCredentials => {
                "keys \"username\" and \"password\" (kubernetes.io/basic-auth) or \"ssh-privatekey\" (kubernetes.io/ssh-auth)"
            }
            Self::WebhookKey => "key \"secret\" holding the webhook's HMAC key",
            Self::RegistryCredentials => {
                "key \".dockerconfigjson\" (type kubernetes.io/dockerconfigjson)"
            }
        }
    }
}

/// The key names of the Secrets in one namespace, by Secret name.
pub type SecretKeys = BTreeMap<String, BTreeSet<String>>;

/// What Ferry could learn about the Secrets of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAccess {
    /// The key names of the named Secrets that exist.
    Read(SecretKeys),
    /// The namespace has not granted Ferry's ServiceAccount (`namespace:name`) the right to
    /// read its Secrets.
    NotGranted { service_account: String },
}

/// Checks every `(field, secret name)` reference against the Secrets that exist; the first
/// problem found blocks.
pub fn check(
    references: &[(&'static str, &str)],
    access: &SecretAccess,
    namespace: &str,
) -> Option<Blocker> {
    let secrets = match access {
        SecretAccess::Read(secrets) => secrets,
        SecretAccess::NotGranted { service_account } => {
            return (!references.is_empty()).then(|| not_granted(namespace, service_account));
        }
    };
    references.iter().find_map(|(field, name)| {
        let Some(keys) = secrets.get(*name) else {
            return Some(Blocker::new(
                SECRET_NOT_FOUND,
                format!(
                    "Secret \"{name}\" named in {field} does not exist in namespace \"{namespace}\"; create it or correct {field}"
                ),
            ));
        };
        let use_ = SecretUse::of_field(field);
        let satisfied = use_
            .accepted_keys()
            .iter()
            .any(|set| set.iter().all(|k| keys.contains(*k)));
        (!satisfied).then(|| {
            Blocker::new(
                SECRET_INVALID,
                format!(
                    "Secret \"{name}\" named in {field} lacks the {}",
                    use_.describe()
                ),
            )
        })
    })
}

/// Why Ferry cannot check the Secrets of `namespace`, with the one command that grants it.
fn not_granted(namespace: &str, service_account: &str) -> Blocker {
    Blocker::new(
        SECRETS_NOT_GRANTED,
        format!(
            "Ferry may not read Secrets in namespace \"{namespace}\"; an administrator grants it with: kubectl -n {namespace} create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount={service_account}"
        ),
    )
}

/// Whether a blocker is about a Secret, and so is looked at again after [`RECHECK`].
pub fn is_about_secrets(blocker: &Blocker) -> bool {
    [SECRET_NOT_FOUND, SECRET_INVALID, SECRETS_NOT_GRANTED].contains(&blocker.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(entries: &[(&str, &[&str])]) -> SecretAccess {
        SecretAccess::Read(
            entries
                .iter()
                .map(|(name, keys)| {
                    (
                        name.to_string(),
                        keys.iter().map(|k| k.to_string()).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_namespace_without_the_grant_blocks_with_the_command_that_grants_it() {
        let access = SecretAccess::NotGranted {
            service_account: "ferry-system:ferry".into(),
        };
        let blocker = check(&[("spec.image.pushSecret", "reg")], &access, "team-a").unwrap();
        assert_eq!(blocker.reason, SECRETS_NOT_GRANTED);
        assert!(blocker.message.contains(
            "kubectl -n team-a create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=ferry-system:ferry"
        ));
        assert!(is_about_secrets(&blocker));
        assert_eq!(
            check(&[], &access, "team-a"),
            None,
            "no Secret named, nothing to read"
        );
    }

    #[test]
    fn a_missing_secret_blocks_with_the_field_that_names_it() {
        let blocker = check(&[("spec.image.pushSecret", "reg")], &secrets(&[]), "team-a").unwrap();
        assert_eq!(blocker.reason, SECRET_NOT_FOUND);
        assert!(blocker.message.contains("spec.image.pushSecret"));
        assert!(blocker.message.contains("\"team-a\""));
    }

    #[test]
    fn git_credentials_accept_basic_auth_or_an_ssh_key() {
        let refs = [("spec.source.credentialsSecret", "git")];
        assert_eq!(
            check(&refs, &secrets(&[("git", &["username", "password"])]), "n"),
            None
        );
        assert_eq!(
            check(&refs, &secrets(&[("git", &["ssh-privatekey"])]), "n"),
            None
        );
        let blocker = check(&refs, &secrets(&[("git", &["username"])]), "n").unwrap();
        assert_eq!(blocker.reason, SECRET_INVALID);
    }

    #[test]
    fn a_push_secret_needs_a_docker_config() {
        let refs = [("spec.image.pushSecret", "reg")];
        let blocker = check(&refs, &secrets(&[("reg", &["token"])]), "n").unwrap();
        assert!(blocker.message.contains(".dockerconfigjson"));
    }

    #[test]
    fn a_webhook_secret_needs_its_key() {
        let refs = [("spec.source.webhookSecret", "hook")];
        assert_eq!(check(&refs, &secrets(&[("hook", &["secret"])]), "n"), None);
        assert!(check(&refs, &secrets(&[("hook", &["token"])]), "n").is_some());
    }
}
