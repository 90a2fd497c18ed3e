//! Every Secret read of the controller: one `get` per Secret, only where a reconciler needs
//! it, since Secrets are not watched (Ferry may read them only in namespaces that grant it,
//! see `decide::secrets::RECHECK`). Here the answers are classified: a 403 means the
//! namespace has not granted Ferry access ([`SecretAccess::NotGranted`]), a missing Secret or
//! key is left for `decide::secrets::check` to name, and credentials that cannot be used are
//! said in words. Values never leave the caller's use of them (no logs, no status).

use std::collections::BTreeMap;

use super::{Context, Error};
use crate::adapters::git::Credentials;
use crate::adapters::registry::Credentials as RegistryCredentials;
use crate::api::Secret;
use crate::decide::secrets::{BASIC_AUTH, OPAQUE, SecretAccess, SecretShape, SecretShapes};

/// The types and key names of the named Secrets that exist, read with one `get` each (values
/// are dropped at once), or that the namespace has not granted Ferry access to its Secrets.
pub(super) async fn access(
    context: &Context,
    namespace: &str,
    references: &[(&'static str, &str)],
) -> Result<SecretAccess, Error> {
    let api = context.api::<Secret>(namespace);
    let mut keys = SecretShapes::new();
    for (_, name) in references {
        if keys.contains_key(*name) {
            continue;
        }
        let secret = match api.get_opt(name).await {
            Ok(secret) => secret,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Ok(SecretAccess::NotGranted {
                    service_account: context.config.service_account.clone(),
                });
            }
            Err(error) => return Err(Error::observe(format!("Secret {namespace}/{name}"))(error)),
        };
        if let Some(secret) = secret {
            let shape = SecretShape {
                type_: secret.type_.unwrap_or_else(|| OPAQUE.to_owned()),
                keys: secret
                    .data
                    .into_iter()
                    .flat_map(|d| d.into_keys())
                    .chain(secret.string_data.into_iter().flat_map(|d| d.into_keys()))
                    .collect(),
            };
            keys.insert((*name).to_owned(), shape);
        }
    }
    Ok(SecretAccess::Read(keys))
}

/// The type and data of a Secret, read with one `get`; `None` when it does not exist. The
/// values never leave the caller's use of them (no logs, no status).
async fn data(
    context: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<(String, BTreeMap<String, Vec<u8>>)>, Error> {
    let secret = context
        .api::<Secret>(namespace)
        .get_opt(name)
        .await
        .map_err(Error::observe(format!("Secret {namespace}/{name}")))?;
    Ok(secret.map(|s| {
        let type_ = s.type_.unwrap_or_else(|| OPAQUE.to_owned());
        let data = s.data.into_iter().flatten().map(|(k, v)| (k, v.0));
        let strings = s
            .string_data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.into_bytes()));
        (type_, data.chain(strings).collect())
    }))
}

/// The git credentials of a credentials Secret (`username` and `password`), if one is named,
/// exists and is of type `kubernetes.io/basic-auth`. `decide::secrets` blocks any other type
/// before a look-up or a build; one replaced since is not read.
pub(super) async fn git_credentials(
    context: &Context,
    namespace: &str,
    secret: &Option<String>,
) -> Result<Option<Credentials>, Error> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let Some((type_, mut data)) = data(context, namespace, secret).await? else {
        return Ok(None);
    };
    if type_ != BASIC_AUTH {
        return Ok(None);
    }
    let mut text = |key: &str| {
        let bytes = data.remove(key).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // `echo secret > password` is a common way to write them.
        text.trim_end_matches(['\r', '\n']).to_owned()
    };
    let username = text("username");
    let password = text("password");
    Ok(Some(Credentials::new(username, password)))
}

/// The credentials for `host` in a push Secret's `.dockerconfigjson`; `Ok(Err(why))` when the
/// Secret is gone or cannot be used (its keys were checked before the build started, so it
/// changed since).
pub(super) async fn registry_credentials(
    context: &Context,
    namespace: &str,
    secret: &str,
    host: &str,
) -> Result<Result<RegistryCredentials, String>, Error> {
    let json = data(context, namespace, secret)
        .await?
        .and_then(|(_, mut data)| data.remove(".dockerconfigjson"));
    Ok(
        match json.map(|j| RegistryCredentials::from_docker_config(&j, host)) {
            Some(Ok(credentials)) => Ok(credentials),
            Some(Err(error)) => Err(format!("the push Secret {secret} cannot be used: {error}")),
            None => Err(format!("the push Secret {secret} is gone")),
        },
    )
}
