//! The committed CRD YAML must be what the Rust types generate: a change to a type without
//! `make crds` fails here, so `crds/` and `manifests/` never lie about the API.

use std::path::Path;

#[test]
fn committed_crd_files_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = ferry::api::crd_files().expect("the CRDs render");
    assert_eq!(files.len(), 4);
    for (file, generated) in files {
        let path = root.join("crds").join(&file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
        assert!(
            committed == generated,
            "{} differs from the Rust types; run `make crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn the_install_manifest_carries_the_same_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("manifests/crds.yaml"))
        .expect("manifests/crds.yaml exists; run `make crds`");
    let generated = ferry::api::crds_yaml().expect("the CRDs render");
    assert!(
        committed == generated,
        "manifests/crds.yaml differs from the Rust types; run `make crds` and commit the result"
    );
}

#[test]
fn every_crd_has_a_status_subresource_short_names_and_printer_columns() {
    for crd in ferry::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has no status subresource"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{name} has no short name"
        );
        assert!(
            version
                .additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 3),
            "{name} has too few printer columns"
        );
        assert_eq!(crd.spec.scope, "Namespaced", "{name} is not namespaced");
    }
}
