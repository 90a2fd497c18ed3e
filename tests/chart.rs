//! The Helm chart as `helm template` renders it: the same RBAC as `manifests/ferry.yaml`,
//! Secrets readable only in the namespaces it is told about, and no cluster-scoped name that
//! two releases would share. Run by `make chart`; the API server's verdict on the rendered
//! objects is checked in the integration tier (`tests/integration/install.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

#[path = "support/helm.rs"]
mod helm;

const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// (kind, namespace, name) of an object.
type Key = (String, String, String);

fn key(object: &Value) -> Key {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// What a role allows, one (group, resource, resource name or "", verb) per grant, so that
/// the same grants written in other rules or another order compare equal.
fn grants(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let mut names = strings(&rule["resourceNames"]);
        if names.is_empty() {
            names.push(String::new());
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for name in &names {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((group.clone(), resource.clone(), name.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

/// The RBAC objects of a YAML stream, keyed by (kind, namespace, name), reduced to what
/// decides who may do what (labels and comments are not compared).
fn rbac(objects: &[Value]) -> BTreeMap<Key, Value> {
    objects
        .iter()
        .filter(|o| RBAC_KINDS.iter().any(|kind| o["kind"] == *kind))
        .map(|o| {
            let grants: Vec<_> = grants(o).into_iter().collect();
            let essence = json!({
                "grants": grants,
                "roleRef": o["roleRef"],
                "subjects": o["subjects"],
            });
            (key(o), essence)
        })
        .collect()
}

fn manifest() -> Vec<Value> {
    let path = helm::root().join("manifests/ferry.yaml");
    helm::parse(&std::fs::read_to_string(path).expect("manifests/ferry.yaml"))
}

/// The namespaces in which `objects` bind the ClusterRole `role` by a RoleBinding.
fn bound_in(objects: &[Value], role: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["roleRef"]["name"] == role)
        .map(|o| key(o).1)
        .collect()
}

/// Installed as `ferry` into `ferry-system` with default values, the chart grants exactly
/// what `kubectl apply -f manifests/` grants: same roles, same rules, same bindings.
#[test]
fn the_chart_renders_exactly_the_rbac_of_the_install_manifest() {
    let manifest = rbac(&manifest());
    let chart = rbac(&helm::render("ferry", "ferry-system", &[], false));
    assert!(manifest.len() >= RBAC_KINDS.len(), "{manifest:#?}");
    let differences: Vec<String> = manifest
        .keys()
        .chain(chart.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|key| manifest.get(*key) != chart.get(*key))
        .map(|key| {
            format!(
                "{key:?}\n  manifest: {}\n  chart:    {}",
                manifest.get(key).unwrap_or(&Value::Null),
                chart.get(key).unwrap_or(&Value::Null)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "the chart and manifests/ferry.yaml grant different permissions:\n{}",
        differences.join("\n")
    );
}

#[test]
fn every_tenant_namespace_and_the_watched_namespace_get_one_secrets_grant() {
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("by default, none", &[], &[]),
        (
            "each listed namespace",
            &["tenantNamespaces={team-a,team-b}"],
            &["team-a", "team-b"],
        ),
        (
            "the watched namespace",
            &["watchNamespace=team-c"],
            &["team-c"],
        ),
        (
            "a watched namespace that is also listed, once",
            &["tenantNamespaces={team-a,team-b}", "watchNamespace=team-b"],
            &["team-a", "team-b"],
        ),
    ];
    for (case, sets, expected) in cases {
        let objects = helm::render("ferry", "ferry-system", sets, false);
        let keys: Vec<Key> = objects.iter().map(key).collect();
        let unique: BTreeSet<&Key> = keys.iter().collect();
        assert_eq!(
            unique.len(),
            keys.len(),
            "{case}: an object twice: {keys:?}"
        );
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(bound_in(&objects, "ferry-tenant"), expected, "{case}");
        for binding in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "ferry", "namespace": "ferry-system"}]),
                "{case}: {binding}"
            );
        }
    }
}

#[test]
fn every_namespace_ferry_deploys_into_gets_one_workload_grant() {
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("by default, none", &[], &[]),
        (
            "tenant namespaces (Environments without a target deploy there) and the watched one",
            &["tenantNamespaces={team-a}", "watchNamespace=team-b"],
            &["team-a", "team-b"],
        ),
        (
            "target namespaces, each once",
            &[
                "tenantNamespaces={team-a}",
                "deployNamespaces={team-a,team-a-prod}",
            ],
            &["team-a", "team-a-prod"],
        ),
    ];
    for (case, sets, expected) in cases {
        let objects = helm::render("ferry", "ferry-system", sets, false);
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(bound_in(&objects, "ferry-deployer"), expected, "{case}");
    }
}

/// Secrets and the writing of workloads are granted only by RoleBindings, so a stolen token
/// reads no Secret of a namespace (kube-system's, say) that did not opt in, and replaces no
/// Deployment there; and no rule is a wildcard.
#[test]
fn no_secret_is_readable_and_no_workload_writable_cluster_wide_and_no_rule_is_a_wildcard() {
    let chart = helm::render(
        "ferry",
        "ferry-system",
        &["tenantNamespaces={team-a}", "watchNamespace=team-b"],
        false,
    );
    for (source, objects) in [("the chart", chart), ("manifests/ferry.yaml", manifest())] {
        let cluster_wide: BTreeSet<String> = objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .map(|o| o["roleRef"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            !cluster_wide.is_empty(),
            "{source} binds nothing cluster-wide"
        );
        for role in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
            let name = key(role).2;
            for (group, resource, _, verb) in grants(role) {
                assert!(
                    !format!("{group}{resource}{verb}").contains('*'),
                    "{source}: a wildcard in {name}"
                );
                assert!(
                    !(cluster_wide.contains(&name) && group.is_empty() && resource == "secrets"),
                    "{source}: {name} grants {verb} on Secrets cluster-wide"
                );
                let workload = ["deployments", "services"].contains(&resource.as_str());
                let writes = !["get", "list", "watch"].contains(&verb.as_str());
                assert!(
                    !(cluster_wide.contains(&name) && workload && writes),
                    "{source}: {name} grants {verb} on {resource} cluster-wide"
                );
            }
        }
    }
}

/// Two releases in two namespaces can be installed side by side: their cluster-scoped objects
/// (and so what `helm uninstall` deletes) are their own.
#[test]
fn two_releases_share_no_cluster_scoped_name() {
    let cluster_scoped = |release: &str, namespace: &str| -> BTreeSet<Key> {
        helm::render(release, namespace, &["watchNamespace=team-a"], false)
            .iter()
            .map(key)
            .filter(|(_, namespace, _)| namespace.is_empty())
            .collect()
    };
    let (one, two) = (
        cluster_scoped("ferry", "ferry-system"),
        cluster_scoped("ferry-helm", "ferry-helm"),
    );
    assert!(!one.is_empty());
    let shared: Vec<_> = one.intersection(&two).collect();
    assert!(shared.is_empty(), "both releases render {shared:?}");
}

#[test]
fn refused_networks_become_the_controllers_flag_and_none_are_given_by_default() {
    let args = |values: &[&str]| -> Vec<String> {
        let objects = helm::render("ferry", "ferry-system", values, false);
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    };
    assert!(
        !args(&[])
            .iter()
            .any(|a| a.starts_with("--refused-networks")),
        "{:?}",
        args(&[])
    );
    let given = args(&["refusedNetworks={10.96.0.0/12,10.244.0.0/16}"]);
    assert!(
        given.contains(&"--refused-networks=10.96.0.0/12,10.244.0.0/16".to_owned()),
        "{given:?}"
    );
}

#[test]
fn the_deployment_runs_the_given_image_as_the_release_service_account_in_the_given_namespace() {
    let objects = helm::render(
        "ferry-helm",
        "ferry-helm",
        &[
            "image.repository=registry.local/ferry",
            "image.tag=dev",
            "watchNamespace=team-a",
        ],
        false,
    );
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.local/ferry:dev");
    assert!(
        strings(&container["args"]).contains(&"--namespace=team-a".to_owned()),
        "{container}"
    );
    // The SecretsNotGranted message names the release's own ServiceAccount.
    assert!(
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "FERRY_SERVICE_ACCOUNT" && e["value"] == "ferry-helm:ferry-helm"),
        "{container}"
    );
}

/// The approval rule (`ferry-approve`, see `tests/integration/approval.rs`) is the same policy
/// and binding in the chart as in `manifests/ferry.yaml`, expressions and message included.
#[test]
fn the_chart_enforces_the_approval_rule_of_the_install_manifest() {
    let admission = |objects: Vec<Value>| -> BTreeMap<Key, Value> {
        objects
            .into_iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("admissionregistration.k8s.io/"))
            })
            .map(|o| (key(&o), o["spec"].clone()))
            .collect()
    };
    let manifest = admission(manifest());
    let chart = admission(helm::render("ferry", "ferry-system", &[], false));
    let kinds: BTreeSet<&str> = manifest.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]),
        "{manifest:#?}"
    );
    assert_eq!(manifest, chart);
}

/// The user roles, in the manifest and the chart alike: `ferry-view` reaches the built-in
/// view, edit and admin roles, `ferry-edit` edit and admin (their aggregation labels), and
/// neither grants approve, import, a write to Releases or to any status, or a wildcard: a
/// RoleBinding to edit must not let a team approve, import or rewrite Ferry's state.
#[test]
fn the_user_roles_aggregate_into_kubernetes_roles_without_approve_import_or_status() {
    let sources = [
        ("manifests/ferry.yaml", manifest()),
        (
            "the chart",
            helm::render("ferry", "ferry-system", &[], false),
        ),
    ];
    for (source, objects) in sources {
        let role = |name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{source} has the ClusterRole {name}"))
                .clone()
        };
        for (name, into) in [
            ("ferry-view", &["view", "edit", "admin"][..]),
            ("ferry-edit", &["edit", "admin"][..]),
        ] {
            let role = role(name);
            for target in into {
                let label = format!("rbac.authorization.k8s.io/aggregate-to-{target}");
                assert_eq!(
                    role["metadata"]["labels"][&label], "true",
                    "{source}: {name} is aggregated into {target}"
                );
            }
            for (group, resource, _, verb) in grants(&role) {
                assert_eq!(group, "ferry.dev", "{source}: {name}");
                assert!(
                    !verb.contains('*') && !resource.contains('*'),
                    "{source}: {name} grants a wildcard"
                );
                assert!(
                    !["approve", "import", "escalate", "bind"].contains(&verb.as_str()),
                    "{source}: {name} grants {verb} on {resource}"
                );
                let read = ["get", "list", "watch"].contains(&verb.as_str());
                assert!(
                    read || (!resource.ends_with("/status")
                        && !["releases", "deliveryrecords"].contains(&resource.as_str())),
                    "{source}: {name} grants {verb} on {resource}"
                );
            }
        }
        let edit = grants(&role("ferry-edit"));
        for resource in ["applications", "environments", "buildjobs"] {
            for verb in ["create", "update", "patch", "delete"] {
                assert!(
                    edit.contains(&(
                        "ferry.dev".into(),
                        resource.into(),
                        String::new(),
                        verb.into()
                    )),
                    "{source}: ferry-edit may {verb} {resource}"
                );
            }
        }
        let view = grants(&role("ferry-view"));
        for resource in [
            "applications",
            "environments",
            "releases",
            "buildjobs",
            "deliveryrecords",
        ] {
            assert!(
                view.contains(&(
                    "ferry.dev".into(),
                    resource.into(),
                    String::new(),
                    "list".into()
                )),
                "{source}: ferry-view may list {resource}"
            );
        }
    }
}

/// The chart queues Ferry's Lease renewals as `manifests/ferry.yaml` does: the same FlowSchema,
/// for the release's own ServiceAccount; `flowControl=false` leaves it out.
#[test]
fn the_chart_renders_the_flow_schemas_of_the_install_manifest() {
    let flow_schemas = |objects: Vec<Value>| -> BTreeMap<String, Value> {
        objects
            .into_iter()
            .filter(|o| o["kind"] == "FlowSchema")
            .map(|o| {
                (
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    o["spec"].clone(),
                )
            })
            .collect()
    };
    let manifest = flow_schemas(manifest());
    assert_eq!(
        manifest.keys().collect::<Vec<_>>(),
        ["ferry-leader-election"]
    );
    let chart = flow_schemas(helm::render("ferry", "ferry-system", &[], false));
    assert_eq!(chart, manifest);
    let off = flow_schemas(helm::render(
        "ferry",
        "ferry-system",
        &["flowControl=false"],
        false,
    ));
    assert!(off.is_empty(), "{off:?}");
}

/// With `shards=N` the chart runs N controllers, each serving its share (`--shard=i/N`) with
/// pods and a webhook Service of its own; the default is the one Deployment as before.
#[test]
fn each_shard_is_a_deployment_with_its_own_flag_pods_and_webhook() {
    let render = |values: &[&str]| helm::render("ferry", "ferry-system", values, false);
    let of_kind = |objects: &[Value], kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    };
    let single = render(&[]);
    let deployments = of_kind(&single, "Deployment");
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["metadata"]["name"], "ferry");
    let args = strings(&deployments[0]["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(!args.iter().any(|a| a.starts_with("--shard")), "{args:?}");
    assert_eq!(
        of_kind(&single, "Service")[0]["metadata"]["name"],
        "ferry-webhook"
    );

    let sharded = render(&["shards=3"]);
    let deployments = of_kind(&sharded, "Deployment");
    let services = of_kind(&sharded, "Service");
    assert_eq!((deployments.len(), services.len()), (3, 3));
    for (i, (deployment, service)) in deployments.iter().zip(&services).enumerate() {
        assert_eq!(deployment["metadata"]["name"], format!("ferry-shard-{i}"));
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(args.contains(&format!("--shard={i}/3")), "{args:?}");
        let pods = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(deployment["spec"]["selector"]["matchLabels"], *pods);
        assert_eq!(pods["ferry.dev/shard"], i.to_string());
        assert_eq!(
            service["metadata"]["name"],
            format!("ferry-webhook-shard-{i}")
        );
        assert_eq!(
            service["spec"]["selector"]["ferry.dev/shard"],
            i.to_string()
        );
    }
    // Each shard may renew its own Lease, and only that.
    let leases = |objects: &[Value]| -> Vec<String> {
        let role = objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "ferry-leader-election")
            .expect("the leader election Role");
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| strings(&rule["resourceNames"]))
            .collect()
    };
    assert_eq!(leases(&single), ["ferry-controller"]);
    assert_eq!(
        leases(&sharded),
        [
            "ferry-controller-0-of-3",
            "ferry-controller-1-of-3",
            "ferry-controller-2-of-3"
        ]
    );
}
