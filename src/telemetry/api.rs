//! Ferry's requests to the Kubernetes API, counted by verb and resource as the API server's
//! audit log names them (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//! `deletecollection`), so an operator sees what Ferry costs the control plane and the scale
//! tier checks that an idle controller writes nothing.
//!
//! The resource label is the path's resource and subresource (`applications/status`): the
//! set of resources Ferry's own code calls, so it stays small.

use axum::http::Method;

/// The verb and resource of a request to the API server, from its method, path and query.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1/...` or `/apis/<group>/<version>/...`; anything else (discovery, `/version`)
    // has no resource.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    // A namespaced path: `namespaces/<ns>/<resource>...`; `namespaces` or `namespaces/<ns>`
    // alone is the namespaces resource itself.
    let rest = match rest {
        ["namespaces", _, resource, ..] if !resource.is_empty() => &rest[2..],
        _ => rest,
    };
    let (resource, named) = match rest {
        [] | [""] => ("", false),
        [resource] => (*resource, false),
        [resource, _] => (*resource, true),
        [resource, _, sub, ..] => {
            return (verb(method, true, query), format!("{resource}/{sub}"));
        }
    };
    (verb(method, named, query), resource.to_string())
}

fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watching = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_verb_and_resource_as_the_api_server_names_them() {
        type Case<'a> = (Method, &'a str, Option<&'a str>, (&'a str, &'a str));
        let cases: &[Case] = &[
            (
                Method::GET,
                "/apis/ferry.dev/v1alpha1/applications",
                Some("watch=true&resourceVersion=5"),
                ("watch", "applications"),
            ),
            (
                Method::GET,
                "/apis/ferry.dev/v1alpha1/applications",
                Some("limit=500"),
                ("list", "applications"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/shop/deployments/web-dev",
                None,
                ("get", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/ferry.dev/v1alpha1/namespaces/shop/applications/web/status",
                Some("fieldManager=ferry"),
                ("patch", "applications/status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/shop/events",
                None,
                ("create", "events"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ferry-system/leases/ferry",
                None,
                ("update", "leases"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/shop/pods/test-1",
                None,
                ("delete", "pods"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/shop/pods",
                None,
                ("deletecollection", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/shop",
                None,
                ("get", "namespaces"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                ("list", "namespaces"),
            ),
            (
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                None,
                ("create", "selfsubjectaccessreviews"),
            ),
            (Method::GET, "/version", None, ("list", "")),
        ];
        for (method, path, query, (verb, resource)) in cases {
            assert_eq!(
                classify(method, path, *query),
                (*verb, resource.to_string()),
                "{method} {path}"
            );
        }
    }
}
