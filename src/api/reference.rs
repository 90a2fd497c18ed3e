//! The API reference in Markdown, generated from the same schemas as the CRDs, so the
//! documentation cannot drift from what the API server enforces (`docs/api.md`).

use std::fmt::Write;

use serde_json::Value;

/// Renders every kind's spec and status fields: path, type, default, description and the
/// rules the API server checks.
pub fn markdown() -> Result<String, serde_json::Error> {
    let mut out = String::from(
        "# API reference\n\nGenerated from the Rust types by `make crds`; do not edit. \
         `kubectl explain <kind>.<field>` shows the same descriptions.\n",
    );
    for crd in super::crds() {
        let version = &crd.spec.versions[0];
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            continue;
        };
        let schema = serde_json::to_value(schema)?;
        let names = &crd.spec.names;
        let _ = write!(
            out,
            "\n## {kind}\n\n`{group}/{version}`, namespaced; short names: {short}.\n\n{description}\n",
            kind = names.kind,
            group = crd.spec.group,
            version = version.name,
            short = names.short_names.clone().unwrap_or_default().join(", "),
            description = schema["description"].as_str().unwrap_or_default(),
        );
        for rule in rules(&schema) {
            let _ = writeln!(out, "\n- Rule: {rule}");
        }
        for part in ["spec", "status"] {
            // A kind without a status (a DeliveryRecord) has no table for it.
            if schema["properties"][part].is_null() {
                continue;
            }
            let _ = write!(
                out,
                "\n### {}.{part}\n\n| field | type | default | description |\n|---|---|---|---|\n",
                names.kind
            );
            fields(&schema["properties"][part], part, &mut out);
        }
    }
    reasons(&mut out);
    Ok(out)
}

/// The table of every reason a condition or an Event can carry, from `api::reasons`.
fn reasons(out: &mut String) {
    out.push_str(
        "\n## Condition and Event reasons\n\n\
         The `reason` of a condition (`kubectl get <kind> <name> -o yaml`) and of an Event \
         (`kubectl events`). A Warning reason means a person must act or something failed; \
         an Event about a `Stalled` object is always a Warning.\n\n\
         | reason | Event type | kinds | meaning |\n|---|---|---|---|\n",
    );
    for reason in super::reasons::ALL {
        let meaning: Vec<&str> = reason.doc.lines().map(str::trim).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            reason.name,
            reason.severity.as_str(),
            reason.kinds.join(", "),
            meaning.join(" ").trim()
        );
    }
}

fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn fields(schema: &Value, path: &str, out: &mut String) {
    let Some(properties) = schema["properties"].as_object() else {
        if schema["type"] == "array" {
            fields(&schema["items"], &format!("{path}[]"), out);
        }
        return;
    };
    for (name, field) in properties {
        let here = format!("{path}.{name}");
        let type_ = match (field["type"].as_str(), field["items"]["type"].as_str()) {
            (Some("array"), Some(item)) => format!("[]{item}"),
            (Some(t), _) => t.to_owned(),
            (None, _) if field["x-kubernetes-int-or-string"] == true => "int or string".to_owned(),
            (None, _) => "object".to_owned(),
        };
        let default = match &field["default"] {
            Value::Null => String::new(),
            Value::String(s) => format!("`{s}`"),
            other => format!("`{other}`"),
        };
        let mut description = field["description"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ");
        if let Some(values) = field["enum"].as_array() {
            let values: Vec<String> = values
                .iter()
                .filter_map(|v| v.as_str())
                .map(|v| format!("`{v}`"))
                .collect();
            let _ = write!(description, " One of {}.", values.join(", "));
        }
        for rule in rules(field) {
            let _ = write!(description, " Rule: {rule}.");
        }
        let _ = writeln!(
            out,
            "| `{here}` | {type_} | {default} | {} |",
            description.replace('|', "\\|")
        );
        // Kubernetes' own types (probes, env vars, resources) are documented upstream.
        if !is_kubernetes_type(name) {
            fields(field, &here, out);
        }
    }
}

/// Fields whose type is Kubernetes' own (documented upstream), by name.
fn is_kubernetes_type(name: &str) -> bool {
    matches!(
        name,
        "resources" | "readinessProbe" | "livenessProbe" | "env" | "conditions"
    )
}
