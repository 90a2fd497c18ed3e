//! Whether an object as the API server holds it already says everything Ferry would apply:
//! then applying it again changes nothing, and Ferry sends nothing (an idle controller writes
//! nothing, and a restarted one does not re-apply every workload it runs).
//!
//! `desired` is held when each of its fields is in `actual` with the same value: the fields
//! the API server fills in (defaults, status, its own metadata) do not count, and a field Ferry
//! sets that someone changed by hand does (it is applied again). Lists must have the same
//! length and hold element by element, so an entry added or removed by hand is applied again
//! too. A field Ferry stops setting (a Service's release selector when an Environment leaves
//! BlueGreen, an override removed) is caught by the annotation [`fingerprinted`] adds: a hash
//! of the whole desired object, which changes with it. A value the server writes differently
//! from Ferry (a quantity `1000m` read back as `1`) only costs one more apply per reconcile,
//! never a wrong skip.

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use crate::api::labels::APPLIED_ANNOTATION;

/// `object` with [`APPLIED_ANNOTATION`]: a hash of the object as it is, without it.
pub fn fingerprinted<K: Metadata<Ty = ObjectMeta> + Serialize>(mut object: K) -> K {
    // Serialised field by field in declaration order, maps sorted: the same object, the same
    // bytes. An object that cannot be serialised is applied as it is (and so, every time).
    if let Ok(bytes) = serde_json::to_vec(&object) {
        object
            .metadata_mut()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(APPLIED_ANNOTATION.to_owned(), super::short_hash(&bytes));
    }
    object
}

/// Whether `actual` holds every field of `desired` with its value.
pub fn holds(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (_, Value::Null) => true,
        (Value::Object(actual), Value::Object(desired)) => desired.iter().all(|(key, want)| {
            want.is_null() || actual.get(key).is_some_and(|have| holds(have, want))
        }),
        (Value::Array(actual), Value::Array(desired)) => {
            actual.len() == desired.len() && actual.iter().zip(desired).all(|(a, d)| holds(a, d))
        }
        (actual, desired) => actual == desired,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::{fingerprinted, holds};

    /// A Service whose selector lost the release label Ferry once set (the Environment left
    /// BlueGreen) still holds every field of the new desired Service; only the fingerprint
    /// tells them apart.
    #[test]
    fn a_field_ferry_stops_setting_is_applied_again() {
        let service = |selector: serde_json::Value| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": "web-dev", "labels": {"app": "web"}},
                "spec": {"selector": selector, "ports": [{"port": 8080}]},
            }))
            .expect("a Service")
        };
        let blue_green =
            fingerprinted(service(json!({"app": "web", "ferry.dev/release": "web-1"})));
        let rolling = fingerprinted(service(json!({"app": "web"})));
        let held = serde_json::to_value(&blue_green).expect("json");
        let without = |s: &Service| {
            let mut s = s.clone();
            s.metadata.annotations = None;
            serde_json::to_value(s).expect("json")
        };
        assert!(
            holds(&held, &without(&rolling)),
            "the fields alone cannot tell"
        );
        assert!(!holds(
            &held,
            &serde_json::to_value(&rolling).expect("json")
        ));
        assert!(holds(
            &held,
            &serde_json::to_value(&blue_green).expect("json")
        ));
        assert_eq!(
            fingerprinted(service(json!({"app": "web"})))
                .metadata
                .annotations,
            rolling.metadata.annotations,
            "the same object, the same fingerprint"
        );
    }

    #[test]
    fn what_the_server_adds_does_not_count_and_what_was_changed_does() {
        let desired = json!({
            "metadata": {"name": "web-dev", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "r/web@sha256:1", "ports": [{"containerPort": 8080}]}
            ]}}},
        });
        let held = json!({
            "metadata": {"name": "web-dev", "labels": {"app": "web"}, "uid": "u", "generation": 3},
            "spec": {"replicas": 2, "revisionHistoryLimit": 10, "template": {"spec": {"containers": [
                {"name": "app", "image": "r/web@sha256:1", "terminationMessagePath": "/dev/termination-log",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
            ]}}},
            "status": {"readyReplicas": 2},
        });
        assert!(holds(&held, &desired));

        let mut image = held.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("r/web@sha256:2");
        assert!(!holds(&image, &desired), "an image changed by hand");
        let mut scaled = held.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(!holds(&scaled, &desired), "replicas changed by hand");
        let mut unlabelled = held.clone();
        unlabelled["metadata"]["labels"] = json!({});
        assert!(!holds(&unlabelled, &desired), "a label removed");
        let mut sidecar = held.clone();
        sidecar["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("a list")
            .push(json!({"name": "extra", "image": "x"}));
        assert!(!holds(&sidecar, &desired), "a container added by hand");
        assert!(!holds(&json!(null), &desired), "no object at all");
    }
}
