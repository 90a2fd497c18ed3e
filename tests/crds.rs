//! The committed CRD YAML must be what the Rust types generate: a change to a type without
//! `make crds` fails here, so `crds/` and `manifests/` never lie about the API.

use std::path::Path;

#[test]
fn committed_crd_files_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = ferry::api::crd_files().expect("the CRDs render");
    assert_eq!(files.len(), 5);
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
fn the_chart_and_the_api_reference_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, generated) in ferry::api::crd_files().expect("the CRDs render") {
        let path = root.join("charts/ferry/crds").join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale; run `make crds`",
            path.display()
        );
    }
    let reference = ferry::api::reference::markdown().expect("the reference renders");
    let committed = std::fs::read_to_string(root.join("docs/api.md")).unwrap_or_default();
    assert!(
        committed == reference,
        "docs/api.md is stale; run `make crds`"
    );
}

#[test]
fn every_crd_has_a_status_subresource_short_names_and_printer_columns() {
    for crd in ferry::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let version = &crd.spec.versions[0];
        // A DeliveryRecord is a fact, not an object something reconciles: it has no status.
        let reconciled = crd.spec.names.kind != "DeliveryRecord";
        assert_eq!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            reconciled,
            "{name}: a status subresource if and only if Ferry reconciles it"
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

/// The openAPIV3Schema of the CRD of a kind.
fn schema_of(kind: &str) -> serde_json::Value {
    let crd = ferry::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    serde_json::to_value(schema).expect("the schema serializes")
}

fn fixtures(file: &str) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let text = std::fs::read_to_string(path).expect("the fixture file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("fixture YAML parses"))
        .collect()
}

fn cel_messages(schema: &serde_json::Value, out: &mut Vec<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(|r| r.as_array())
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r["message"].as_str().map(str::to_owned)),
                );
            }
            map.values().for_each(|v| cel_messages(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| cel_messages(v, out)),
        _ => {}
    }
}

/// The CEL rules run locally (kube-cel), without an API server: every invalid fixture whose
/// expected message comes from a CEL rule fails that rule here too, and the valid ones pass.
/// The API-server tier checks the same fixtures for real, schema rules included.
#[test]
fn cel_rules_reject_the_invalid_fixtures_locally() {
    let validator = kube::core::cel::Validator::new();
    let mut checked = 0;
    for object in fixtures("invalid.yaml") {
        let kind = object["kind"].as_str().expect("a kind");
        let schema = schema_of(kind);
        let mut messages = Vec::new();
        cel_messages(&schema, &mut messages);
        let expect = object["metadata"]["annotations"]["test.ferry.dev/expect"]
            .as_str()
            .expect("an expectation");
        if !messages.iter().any(|m| m.contains(expect)) {
            continue; // rejected by the OpenAPI schema, not by CEL
        }
        let case = object["metadata"]["annotations"]["test.ferry.dev/case"]
            .as_str()
            .unwrap_or_default();
        let errors = validator
            .validate(&schema, &object, None)
            .expect_err(&format!("CEL accepted: {case}"));
        assert!(
            errors.to_string().contains(expect),
            "{case}: expected \"{expect}\", got {errors}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures exercised CEL rules");
    for object in fixtures("valid.yaml") {
        let schema = schema_of(object["kind"].as_str().expect("a kind"));
        if let Err(errors) = validator.validate(&schema, &object, None) {
            panic!("a valid {} fails CEL: {errors}", object["kind"]);
        }
    }
}

#[test]
fn a_release_or_record_spec_update_fails_the_immutability_rule_locally() {
    let validator = kube::core::cel::Validator::new();
    for (kind, field, changed, refusal) in [
        ("Release", "version", "1.4.3", "a Release is immutable"),
        (
            "DeliveryRecord",
            "environment",
            "staging",
            "a DeliveryRecord is immutable",
        ),
    ] {
        let schema = schema_of(kind);
        let old = fixtures("valid.yaml")
            .into_iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind}"));
        let mut new = old.clone();
        new["spec"][field] = changed.into();
        let errors = validator
            .validate(&schema, &new, Some(&old))
            .expect_err("the change is refused");
        assert!(errors.to_string().contains(refusal), "{errors}");
        assert!(
            validator.validate(&schema, &old, Some(&old)).is_ok(),
            "an unchanged {kind} passes"
        );
    }
}

/// `kubectl explain` prints a field's description; every field of Ferry's own types needs one.
#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
            if let Some(items) = schema.get("items") {
                walk(items, &format!("{path}[]"), missing);
            }
            return;
        };
        for (name, field) in properties {
            let here = format!("{path}.{name}");
            if field
                .get("description")
                .and_then(|d| d.as_str())
                .is_none_or(str::is_empty)
            {
                missing.push(here.clone());
            }
            walk(field, &here, missing);
        }
    }
    let mut missing = Vec::new();
    for kind in [
        "Application",
        "BuildJob",
        "DeliveryRecord",
        "Environment",
        "Release",
    ] {
        let schema = schema_of(kind);
        for part in ["spec", "status"] {
            walk(
                &schema["properties"][part],
                &format!("{kind}.{part}"),
                &mut missing,
            );
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description:\n{}",
        missing.join("\n")
    );
}

/// Lines of a description that break a paragraph mid-sentence: a line followed by a prose line
/// that is neither a new paragraph, a list item nor code. Doc comments are wrapped for the
/// editor; `kubectl explain` must show them as paragraphs.
fn broken_paragraphs(description: &str) -> Vec<String> {
    fn is_list_item(line: &str) -> bool {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m))
            || (digits > 0 && [". ", ") "].iter().any(|m| line[digits..].starts_with(m)))
    }
    let is_code = |line: &str| line.starts_with([' ', '\t']);
    let mut broken = Vec::new();
    let mut in_fence = false;
    let lines: Vec<&str> = description.split('\n').collect();
    for pair in lines.windows(2) {
        let (line, next) = (pair[0], pair[1]);
        // A fence line toggles the code block, unless it also closes it (```x```).
        let trimmed = line.trim();
        if trimmed.starts_with("```") && !(trimmed.len() > 3 && trimmed.ends_with("```")) {
            in_fence = !in_fence;
        }
        let prose = |l: &str| !l.trim().is_empty() && !is_code(l) && !l.starts_with("```");
        if !in_fence && prose(line) && prose(next) && !is_list_item(next) {
            broken.push(format!("{line:?} / {next:?}"));
        }
    }
    broken
}

fn descriptions(value: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, nested) in map {
                match nested {
                    serde_json::Value::String(text) if key == "description" => {
                        out.push((path.to_owned(), text.clone()))
                    }
                    _ => descriptions(nested, &format!("{path}.{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, nested) in items.iter().enumerate() {
                descriptions(nested, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_description_breaks_a_line_inside_a_paragraph() {
    let mut found = Vec::new();
    let mut count = 0;
    for crd in ferry::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut all = Vec::new();
        descriptions(
            &serde_json::to_value(&crd).expect("the CRD serializes"),
            &name,
            &mut all,
        );
        count += all.len();
        for (path, text) in all {
            for broken in broken_paragraphs(&text) {
                found.push(format!("{path}: {broken}"));
            }
        }
    }
    assert!(count > 100, "only {count} descriptions found");
    assert!(
        found.is_empty(),
        "{} line breaks inside paragraphs:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_paragraph_check_sees_a_wrapped_sentence_and_spares_lists_and_code() {
    assert_eq!(
        broken_paragraphs("pinning an\nolder release"),
        ["\"pinning an\" / \"older release\""]
    );
    assert!(broken_paragraphs("One.\n\nTwo.\n- item\n1. item\n\n    code\n    more").is_empty());
    assert!(broken_paragraphs("```\nline\nline\n```").is_empty());
}

/// `ferry-environment-entries` (manifests/ferry.yaml and the chart) compares an environment
/// entry's overrides field by field (the pin is ferry-approve's): a field added to the entry
/// would go unguarded until the policy compares it too.
#[test]
fn the_entry_policy_compares_every_field_of_an_environment_entry() {
    let schema = schema_of("Application");
    let entry = &schema["properties"]["spec"]["properties"]["environments"]["items"];
    let fields: std::collections::BTreeSet<&str> = entry["properties"]
        .as_object()
        .expect("an environment entry has properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        ["env", "name", "pin", "replicas", "resources"].into(),
        "an environment entry's fields changed: compare the new ones in the `changed` variable \
         of ferry-environment-entries (manifests/ferry.yaml and \
         charts/ferry/templates/environments.yaml), then list them here"
    );
}

/// `ferry-rebuild` (manifests/ferry.yaml; the chart's is compared with it by `tests/chart.rs`)
/// admits a BuildJob made by hand only when its source, build and image equal its
/// Application's, field by field: a field added to any of them would let a hand-made BuildJob
/// build something else until the policy compares it too.
#[test]
fn the_rebuild_policy_compares_every_field_of_a_buildjobs_source_build_and_image() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/ferry.yaml");
    let text = std::fs::read_to_string(path).expect("manifests/ferry.yaml");
    let objects: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("the manifest parses"))
        .collect();
    let policy = objects
        .iter()
        .find(|o| {
            o["kind"] == "ValidatingAdmissionPolicy" && o["metadata"]["name"] == "ferry-rebuild"
        })
        .expect("manifests/ferry.yaml has the policy ferry-rebuild");
    let differs = policy["spec"]["variables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "differs")
        .and_then(|v| v["expression"].as_str())
        .expect("ferry-rebuild has the variable differs");
    let schema = schema_of("BuildJob");
    let mut missing = Vec::new();
    for part in ["source", "build", "image"] {
        let fields = schema["properties"]["spec"]["properties"][part]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("a BuildJob's spec.{part} has properties"));
        for field in fields.keys() {
            let compared = [".", ".?"].iter().any(|access| {
                let side = |of: &str| format!("{of}.spec.{part}{access}{field}");
                differs.contains(&side("object")) && differs.contains(&side("params"))
            });
            if !compared {
                missing.push(format!("spec.{part}.{field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ferry-rebuild does not compare {} of a BuildJob with its Application's: add them to \
         the `differs` variable in manifests/ferry.yaml and charts/ferry/templates/provenance.yaml",
        missing.join(", ")
    );
}
