//! The objects tier-2 tests start from, each written once as the YAML a user would write and
//! returned typed, so that a test states its variation as a field change
//! (`app.spec.environments[1].pin = ...`) instead of editing text.
//!
//! The shop story: an Application `shop` built from one repository, going through the
//! Environments `dev` (first stage, automatic) and `prod` (after dev, manual approval), and
//! its Release `shop-1.4.2` and BuildJob `shop-9fceb02`.

use ferry::api::application::Pin;
use ferry::api::{Application, BuildJob, Environment, Release, Secret};
use serde::de::DeserializeOwned;

/// The commit the Release and the BuildJob were made from.
pub const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

fn parse<K: DeserializeOwned>(yaml: &str) -> K {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("fixture YAML parses ({e}):\n{yaml}"))
}

/// An Environment with the given spec, in YAML flow style (`{upstream: dev}`).
pub fn environment(name: &str, spec: &str) -> Environment {
    parse(&format!(
        "apiVersion: ferry.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    ))
}

/// The first stage: receives every new Release, promotes automatically.
pub fn dev() -> Environment {
    environment("dev", "{}")
}

/// The stage after dev, where a person approves each release by pinning it.
pub fn prod_manual() -> Environment {
    environment("prod", "{upstream: dev, approval: Manual}")
}

/// An Environment promoted from `upstream`.
pub fn environment_after(name: &str, upstream: &str) -> Environment {
    environment(name, &format!("{{upstream: {upstream}}}"))
}

/// An Environment named `name` whose applications run in `namespace`.
pub fn environment_targeting(name: &str, namespace: &str) -> Environment {
    environment(name, &format!("{{targetNamespace: {namespace}}}"))
}

/// The shop Application, going through dev and prod.
pub fn shop() -> Application {
    shop_through(&["dev", "prod"])
}

/// The shop Application, going through the named Environments, built from the test git
/// server's `shop` repository.
pub fn shop_through(environments: &[&str]) -> Application {
    let environments = environments
        .iter()
        .map(|e| format!("{{name: {e}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let repository = crate::shop_repository();
    parse(&format!(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {{name: shop}}
spec:
  source: {{url: "{repository}"}}
  build: {{builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}}
  image: {{repository: registry.local/team-a/shop}}
  environments: [{environments}]
"#
    ))
}

/// The user the tests' admin credentials authenticate as (`e2e/apiserver.sh`'s token: group
/// system:masters, as cluster-admin).
pub const ADMIN: &str = "ferry-test-admin";

/// Ferry's ServiceAccount in `manifests/ferry.yaml`, as a user name.
pub const FERRY: &str = "system:serviceaccount:ferry-system:ferry";

/// `app` with the Environment `environment` pinned to `release` by the tests' admin.
pub fn pinned(app: Application, environment: &str, release: &str, reason: &str) -> Application {
    pinned_by(app, environment, release, reason, ADMIN)
}

/// `app` with the Environment `environment` pinned to `release`, the pin naming `by`.
pub fn pinned_by(
    mut app: Application,
    environment: &str,
    release: &str,
    reason: &str,
    by: &str,
) -> Application {
    let entry = app
        .spec
        .environments
        .iter_mut()
        .find(|e| e.name == environment)
        .unwrap_or_else(|| panic!("the fixture goes through {environment}"));
    entry.pin = Some(Pin {
        release: release.to_owned(),
        reason: reason.to_owned(),
        by: Some(by.to_owned()),
    });
    app
}

/// Release 1.4.2 of the shop.
pub fn shop_1_4_2() -> Release {
    parse(&format!(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {{name: shop-1.4.2}}
spec:
  application: shop
  version: 1.4.2
  commit: {COMMIT}
  image: registry.local/team-a/shop@sha256:abababababababababababababababababababababababababababababababab
"#
    ))
}

/// The BuildJob that builds the shop at `COMMIT`, made by hand: a rebuild with the source,
/// build and image of [`shop_through`], or Ferry would not build it (`NotARebuild`).
pub fn shop_build() -> BuildJob {
    let repository = crate::shop_repository();
    parse(&format!(
        r#"
apiVersion: ferry.dev/v1alpha1
kind: BuildJob
metadata: {{name: shop-9fceb02}}
spec:
  application: shop
  commit: {COMMIT}
  source: {{url: "{repository}"}}
  build: {{builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}}
  image: {{repository: registry.local/team-a/shop}}
"#
    ))
}

/// An Opaque Secret holding `data` as string data.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    typed_secret(name, "Opaque", data)
}

/// A Secret of type `type_` (`kubernetes.io/basic-auth` for git credentials) holding `data`
/// as string data.
pub fn typed_secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
    let data = data
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    parse(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: {type_}\nstringData: {{{data}}}\n"
    ))
}
