//! Whether a referenced Secret exists, is of the type and has the keys its use needs, and
//! whether git credentials would travel unencrypted.
//!
//! Only key names and the Secret's type are looked at, never values, so nothing here can leak a
//! credential into a condition or an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Blocker;
use crate::api::reasons::{
    CREDENTIALS_IN_CLEAR, SECRET_INVALID, SECRET_NOT_FOUND, SECRETS_NOT_GRANTED,
};
use crate::api::shared::Repository;

/// How soon an object blocked by a Secret is looked at again. Ferry does not watch Secrets:
/// it may read them only in the namespaces granted to it, one `get` at a time, so a Secret
/// created or fixed later is noticed by this recheck.
pub const RECHECK: Duration = Duration::from_secs(10);

/// The Secret type of username and password.
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
/// The Secret type of an SSH key.
pub const SSH_AUTH: &str = "kubernetes.io/ssh-auth";
/// The type of a Secret created without one.
pub const OPAQUE: &str = "Opaque";

/// The field that names the git credentials Secret.
const GIT_CREDENTIALS_FIELD: &str = "spec.source.credentialsSecret";

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

    /// Key sets that satisfy this use; any one of them is enough. Git credentials are judged
    /// by their type first (`git_type`), which picks one set.
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

/// What Ferry reads of a Secret: its type and its key names, never its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretShape {
    /// `type` as the API server stored it (`Opaque` when it was created without one).
    pub type_: String,
    pub keys: BTreeSet<String>,
}

impl SecretShape {
    pub fn new<K: Into<String>>(type_: &str, keys: impl IntoIterator<Item = K>) -> Self {
        Self {
            type_: type_.to_owned(),
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

/// The types and key names of the Secrets in one namespace, by Secret name.
pub type SecretShapes = BTreeMap<String, SecretShape>;

/// What Ferry could learn about the Secrets of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAccess {
    /// The types and key names of the named Secrets that exist.
    Read(SecretShapes),
    /// The namespace has not granted Ferry's ServiceAccount (`namespace:name`) the right to
    /// read its Secrets.
    NotGranted { service_account: String },
}

/// Checks the repository's credentials and every `(field, secret name)` reference against the
/// Secrets that exist; the first problem found blocks. Credentials that would go unencrypted
/// block before any Secret is looked at.
pub fn check(
    repository: &Repository,
    references: &[(&'static str, &str)],
    access: &SecretAccess,
    namespace: &str,
) -> Option<Blocker> {
    if let Some(blocker) = credentials_in_clear(repository) {
        return Some(blocker);
    }
    let secrets = match access {
        SecretAccess::Read(secrets) => secrets,
        SecretAccess::NotGranted { service_account } => {
            return (!references.is_empty()).then(|| not_granted(namespace, service_account));
        }
    };
    references.iter().find_map(|(field, name)| {
        let Some(shape) = secrets.get(*name) else {
            return Some(Blocker::new(
                SECRET_NOT_FOUND,
                format!(
                    "Secret \"{name}\" named in {field} does not exist in namespace \"{namespace}\"; create it or correct {field}"
                ),
            ));
        };
        let use_ = SecretUse::of_field(field);
        if use_ == SecretUse::GitCredentials {
            return git_secret(repository, field, name, shape);
        }
        let satisfied = use_
            .accepted_keys()
            .iter()
            .any(|set| set.iter().all(|k| shape.keys.contains(*k)));
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

/// Why the branch of `repository` may not be looked up with its credentials now (they would
/// go unencrypted, or their Secret is missing, unreadable or unfit), if anything stands in the
/// way: the controller asks the git server nothing until this is `None`.
pub fn source_blocker(
    repository: &Repository,
    access: &SecretAccess,
    namespace: &str,
) -> Option<Blocker> {
    let references: Vec<(&'static str, &str)> = repository
        .credentials_secret
        .as_deref()
        .map(|name| (GIT_CREDENTIALS_FIELD, name))
        .into_iter()
        .collect();
    check(repository, &references, access, namespace)
}

/// Credentials over a plain `http://` or `git://` URL without `insecure`: refused before
/// anything is fetched. Names the URL without its user information.
fn credentials_in_clear(repository: &Repository) -> Option<Blocker> {
    if !repository.credentials_in_clear() {
        return None;
    }
    let what = match &repository.credentials_secret {
        Some(name) => format!("the credentials of Secret \"{name}\" ({GIT_CREDENTIALS_FIELD})"),
        None => "the user and password in spec.source.url".to_owned(),
    };
    Some(Blocker::new(
        CREDENTIALS_IN_CLEAR,
        format!(
            "{} is plain text, so {what} would be sent unencrypted; Ferry fetches nothing: use an https:// URL, or set spec.source.insecure: true for a git server on a private network",
            without_user(&repository.url)
        ),
    ))
}

/// The Secret type git credentials need for this repository: an SSH key for ssh URLs,
/// username and password for the others.
fn git_type(repository: &Repository) -> (&'static str, &'static [&'static str], &'static str) {
    if repository.is_ssh() {
        (SSH_AUTH, &["ssh-privatekey"], "an ssh")
    } else {
        (BASIC_AUTH, &["username", "password"], "an http(s)")
    }
}

/// The git credentials Secret must be of the type the URL needs and hold its keys.
fn git_secret(
    repository: &Repository,
    field: &str,
    name: &str,
    shape: &SecretShape,
) -> Option<Blocker> {
    let (type_, keys, url) = git_type(repository);
    let quoted = keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(" and ");
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    if shape.type_ != type_ {
        return Some(Blocker::new(
            SECRET_INVALID,
            format!(
                "Secret \"{name}\" named in {field} is of type \"{}\"; git credentials for {url} URL must be a Secret of type \"{type_}\" ({noun} {quoted}); a Secret's type cannot change, so create one of that type",
                shape.type_
            ),
        ));
    }
    let missing = keys.iter().any(|k| !shape.keys.contains(*k));
    missing.then(|| {
        Blocker::new(
            SECRET_INVALID,
            format!("Secret \"{name}\" named in {field} lacks the {noun} {quoted} ({type_})"),
        )
    })
}

/// `url` without user information (`http://u:pw@host/x` becomes `http://host/x`).
fn without_user(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Why Ferry cannot check the Secrets of `namespace`, with the one command that grants it.
fn not_granted(namespace: &str, service_account: &str) -> Blocker {
    Blocker::new(
        SECRETS_NOT_GRANTED,
        format!(
            "Ferry may not read Secrets in namespace \"{namespace}\"; an administrator grants it with: {}",
            super::grant_command(namespace, service_account, "tenant")
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
    use crate::api::reasons::CREDENTIALS_IN_CLEAR;

    /// Secrets by name, each with its type and key names.
    fn secrets(entries: &[(&str, &str, &[&str])]) -> SecretAccess {
        SecretAccess::Read(
            entries
                .iter()
                .map(|(name, type_, keys)| {
                    (
                        name.to_string(),
                        SecretShape::new(type_, keys.iter().copied()),
                    )
                })
                .collect(),
        )
    }

    fn repository(url: &str, credentials: Option<&str>, insecure: bool) -> Repository {
        Repository {
            url: url.to_owned(),
            path: None,
            credentials_secret: credentials.map(str::to_owned),
            insecure,
        }
    }

    /// A repository over https without credentials: nothing about it blocks.
    fn public() -> Repository {
        repository("https://git.example/shop.git", None, false)
    }

    #[test]
    fn a_namespace_without_the_grant_blocks_with_the_command_that_grants_it() {
        let access = SecretAccess::NotGranted {
            service_account: "ferry-system:ferry".into(),
        };
        let blocker = check(
            &public(),
            &[("spec.image.pushSecret", "reg")],
            &access,
            "team-a",
        )
        .unwrap();
        assert_eq!(blocker.reason, SECRETS_NOT_GRANTED);
        assert!(blocker.message.contains(
            "kubectl -n team-a create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=ferry-system:ferry"
        ));
        assert!(is_about_secrets(&blocker));
        assert_eq!(
            check(&public(), &[], &access, "team-a"),
            None,
            "no Secret named, nothing to read"
        );
    }

    #[test]
    fn a_missing_secret_blocks_with_the_field_that_names_it() {
        let blocker = check(
            &public(),
            &[("spec.image.pushSecret", "reg")],
            &secrets(&[]),
            "team-a",
        )
        .unwrap();
        assert_eq!(blocker.reason, SECRET_NOT_FOUND);
        assert!(blocker.message.contains("spec.image.pushSecret"));
        assert!(blocker.message.contains("\"team-a\""));
    }

    #[test]
    fn git_credentials_are_basic_auth_for_http_urls_and_an_ssh_key_for_ssh_urls() {
        let refs = [("spec.source.credentialsSecret", "git")];
        let https = repository("https://git.example/shop.git", Some("git"), false);
        let ssh = repository("git@git.example:team/shop.git", Some("git"), false);
        let basic = secrets(&[("git", BASIC_AUTH, &["username", "password"])]);
        let key = secrets(&[("git", SSH_AUTH, &["ssh-privatekey"])]);
        assert_eq!(check(&https, &refs, &basic, "n"), None);
        assert_eq!(check(&ssh, &refs, &key, "n"), None);
        assert_eq!(
            check(
                &repository("ssh://git.example/shop.git", Some("git"), false),
                &refs,
                &key,
                "n"
            ),
            None
        );
        // Each the other way round: the type the URL needs is named.
        let blocker = check(&https, &refs, &key, "n").unwrap();
        assert_eq!(blocker.reason, SECRET_INVALID);
        assert!(blocker.message.contains(BASIC_AUTH), "{}", blocker.message);
        let blocker = check(&ssh, &refs, &basic, "n").unwrap();
        assert!(blocker.message.contains(SSH_AUTH), "{}", blocker.message);
        // The right type without a key it needs.
        let blocker = check(
            &https,
            &refs,
            &secrets(&[("git", BASIC_AUTH, &["username"])]),
            "n",
        )
        .unwrap();
        assert_eq!(blocker.reason, SECRET_INVALID);
        assert!(
            blocker.message.contains("\"password\""),
            "{}",
            blocker.message
        );
    }

    #[test]
    fn git_credentials_of_another_type_are_refused_naming_the_secret_its_type_and_the_type_needed()
    {
        let refs = [("spec.source.credentialsSecret", "git-cred")];
        let https = repository("https://git.example/shop.git", Some("git-cred"), false);
        for type_ in [
            OPAQUE,
            "kubernetes.io/dockerconfigjson",
            "example.com/token",
        ] {
            // The very keys a basic-auth Secret has: only the type is wrong.
            let access = secrets(&[("git-cred", type_, &["username", "password"])]);
            let blocker = check(&https, &refs, &access, "n").unwrap();
            assert_eq!(blocker.reason, SECRET_INVALID, "{type_}");
            for part in [
                "\"git-cred\"".to_owned(),
                format!("type \"{type_}\""),
                format!("type \"{BASIC_AUTH}\""),
            ] {
                assert!(
                    blocker.message.contains(&part),
                    "{part}: {}",
                    blocker.message
                );
            }
            assert!(is_about_secrets(&blocker), "a recreated Secret is noticed");
        }
    }

    #[test]
    fn credentials_over_plain_http_are_refused_before_any_secret_is_looked_at() {
        let refs = [("spec.source.credentialsSecret", "git")];
        let basic = secrets(&[("git", BASIC_AUTH, &["username", "password"])]);
        let not_granted = SecretAccess::NotGranted {
            service_account: "ferry-system:ferry".into(),
        };
        for url in [
            "http://git.team-a.svc/shop.git",
            "git://git.team-a.svc/shop.git",
        ] {
            let plain = repository(url, Some("git"), false);
            for access in [&basic, &secrets(&[]), &not_granted] {
                let blocker = check(&plain, &refs, access, "n").unwrap();
                assert_eq!(blocker.reason, CREDENTIALS_IN_CLEAR, "{url}");
                assert!(
                    blocker.message.contains("spec.source.insecure: true")
                        && blocker.message.contains("\"git\"")
                        && blocker.message.contains(url),
                    "{}",
                    blocker.message
                );
                assert!(!is_about_secrets(&blocker), "a spec change fixes it");
            }
            // The Application says the server is on a private network.
            let consented = repository(url, Some("git"), true);
            assert_eq!(check(&consented, &refs, &basic, "n"), None, "{url}");
            // No credentials: a public in-cluster server over plain http stays allowed.
            assert_eq!(check(&repository(url, None, false), &[], &basic, "n"), None);
        }
    }

    #[test]
    fn a_password_in_a_plain_http_url_is_refused_without_showing_it() {
        let url = repository("http://ci:hunter2@git.team-a.svc/shop.git", None, false);
        let blocker = check(&url, &[], &secrets(&[]), "n").unwrap();
        assert_eq!(blocker.reason, CREDENTIALS_IN_CLEAR);
        assert!(!blocker.message.contains("hunter2"), "{}", blocker.message);
        assert!(
            blocker.message.contains("http://git.team-a.svc/shop.git"),
            "{}",
            blocker.message
        );
        let https = repository("https://ci:hunter2@git.example/shop.git", None, false);
        assert_eq!(check(&https, &[], &secrets(&[]), "n"), None);
    }

    #[test]
    fn the_source_blocker_judges_only_the_git_credentials() {
        let plain = repository("http://git.team-a.svc/shop.git", Some("git"), false);
        let basic = secrets(&[("git", BASIC_AUTH, &["username", "password"])]);
        assert_eq!(
            source_blocker(&plain, &basic, "n").unwrap().reason,
            CREDENTIALS_IN_CLEAR
        );
        let https = repository("https://git.example/shop.git", Some("git"), false);
        assert_eq!(source_blocker(&https, &basic, "n"), None);
        assert_eq!(
            source_blocker(&https, &secrets(&[]), "n").unwrap().reason,
            SECRET_NOT_FOUND
        );
        let opaque = secrets(&[("git", OPAQUE, &["username", "password"])]);
        assert_eq!(
            source_blocker(&https, &opaque, "n").unwrap().reason,
            SECRET_INVALID
        );
        assert_eq!(source_blocker(&public(), &secrets(&[]), "n"), None);
    }

    #[test]
    fn a_push_secret_needs_a_docker_config() {
        let refs = [("spec.image.pushSecret", "reg")];
        let access = secrets(&[("reg", "kubernetes.io/dockerconfigjson", &["token"])]);
        let blocker = check(&public(), &refs, &access, "n").unwrap();
        assert!(blocker.message.contains(".dockerconfigjson"));
    }

    #[test]
    fn a_webhook_secret_needs_its_key() {
        let refs = [("spec.source.webhookSecret", "hook")];
        let ok = secrets(&[("hook", OPAQUE, &["secret"])]);
        assert_eq!(check(&public(), &refs, &ok, "n"), None);
        let wrong = secrets(&[("hook", OPAQUE, &["token"])]);
        assert!(check(&public(), &refs, &wrong, "n").is_some());
    }
}
