//! Whether an Application's run spec can become a workload in an environment: what only the
//! controller can check before creating anything, because it spans two objects (an
//! Environment's HTTP checks name ports of the Application) or because the object was stored
//! before the CRD's rules existed. The Application is stalled on the first environment that
//! fails (`controller::application::invalid_run` asks, `decide::application` decides);
//! `desired::workload` only builds.
//! Also where a request to the Service goes (`tcp_port`), for the checks and verification GETs
//! the delivery pipeline starts.

use k8s_openapi::api::core::v1::{EnvVar, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::application::{PortSpec, Protocol, RunSpec};
use crate::api::environment::{HealthPolicy, ServiceRequest, Verification};
use crate::desired::workload::Workload;

/// What only the controller can check before creating anything, naming the field: an HTTP
/// check's port that names no port of run.ports (the ports are on the Application, the checks
/// on the Environment), and, for objects stored before the CRD's rules existed (the API server
/// checks only what changes), the rules it checks today: env var names, env vars set twice in
/// one list, probe ports. Err(message naming the field).
pub fn check(
    w: &Workload,
    health: &HealthPolicy,
    verification: Option<&Verification>,
) -> Result<(), String> {
    let run = &w.app.spec.run;
    check_env("spec.run.env", &run.env)?;
    check_env(
        &format!("spec.environments[{}].env", w.entry.name),
        &w.entry.env,
    )?;
    for (field, probe) in [
        ("spec.run.readinessProbe", &run.readiness_probe),
        ("spec.run.livenessProbe", &run.liveness_probe),
    ] {
        if let Some(probe) = probe {
            check_probe(field, probe, &run.ports)?;
        }
    }
    let gets = verification
        .map(|v| v.http_gets.as_slice())
        .unwrap_or_default();
    let requests: [(&str, Vec<&ServiceRequest>); 2] = [
        (
            "spec.health.httpChecks",
            health.http_checks.iter().map(|c| &c.request).collect(),
        ),
        (
            "spec.verification.httpGets",
            gets.iter().map(|g| &g.request).collect(),
        ),
    ];
    for (field, requests) in requests {
        for (i, request) in requests.into_iter().enumerate() {
            request_port(run, request).map_err(|e| {
                format!(
                    "Environment {}: {field}[{i}] ({}): {e}",
                    w.environment, request.path
                )
            })?;
        }
    }
    if verification.is_some_and(|v| v.image.is_some()) && w.app.spec.run.ports.is_empty() {
        return Err(format!(
            "Environment {}: spec.verification runs a test pod against the Application's Service, but the Application has no spec.run.ports",
            w.environment
        ));
    }
    Ok(())
}

/// Where a request goes: the port number on the Service of a release with `run`. Err when its
/// port names no port.
pub fn request_port(run: &RunSpec, request: &ServiceRequest) -> Result<i32, String> {
    tcp_port(run, request.port.as_deref())
}

/// The TCP port named `name` (the first one when `None`) of a release with `run`, for
/// requests Ferry sends through the Service. Err, in words, when there is none.
pub fn tcp_port(run: &RunSpec, name: Option<&str>) -> Result<i32, String> {
    let ports = &run.ports;
    let port = match name {
        Some(name) => ports.iter().find(|p| p.name == name).ok_or_else(|| {
            format!(
                "port {name:?} names no port of the Application's spec.run.ports ({})",
                port_names(ports)
            )
        })?,
        None => ports.first().ok_or_else(|| {
            "the Application has no spec.run.ports, so there is no Service to send requests to"
                .to_owned()
        })?,
    };
    if port.protocol != Protocol::Tcp {
        return Err(format!(
            "port {:?} is UDP; HTTP checks need a TCP port",
            port.name
        ));
    }
    Ok(port.port)
}

fn port_names(ports: &[PortSpec]) -> String {
    if ports.is_empty() {
        return "none".to_owned();
    }
    ports
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kubernetes' env var name syntax (`^[-._a-zA-Z][-._a-zA-Z0-9]*$`), and no name twice: with
/// two, which one the overrides replace would be a guess.
fn check_env(field: &str, env: &[EnvVar]) -> Result<(), String> {
    for (i, var) in env.iter().enumerate() {
        if !is_env_name(&var.name) {
            return Err(format!(
                "{field}[{i}].name {:?} is not an environment variable name: letters, digits, '_', '-' and '.', not starting with a digit",
                var.name
            ));
        }
        if env[..i].iter().any(|e| e.name == var.name) {
            return Err(format!(
                "{field}[{i}].name: {:?} is set twice; set each variable once",
                var.name
            ));
        }
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    chars
        .next()
        .is_some_and(|c| allowed(c) && !c.is_ascii_digit())
        && chars.all(allowed)
}

/// A probe's port given by name must name a port of the container.
fn check_probe(field: &str, probe: &Probe, ports: &[PortSpec]) -> Result<(), String> {
    let named = [
        ("httpGet.port", probe.http_get.as_ref().map(|h| &h.port)),
        ("tcpSocket.port", probe.tcp_socket.as_ref().map(|t| &t.port)),
    ];
    for (part, port) in named {
        if let Some(IntOrString::String(name)) = port
            && !ports.iter().any(|p| &p.name == name)
        {
            return Err(format!(
                "{field}.{part} {name:?} names no port of spec.run.ports ({})",
                port_names(ports)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Application;
    use crate::api::application::EnvironmentEntry;
    use crate::api::environment::StrategyType;
    use crate::desired::workload::fixtures::{self, RUN, app, entry};

    /// The shared fixtures, with the rolling update the checks do not depend on.
    fn workload<'a>(app: &'a Application, entry: &'a EnvironmentEntry) -> Workload<'a> {
        fixtures::workload(app, entry, StrategyType::RollingUpdate)
    }

    fn health(yaml: &str) -> HealthPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_request_goes_to_its_port_or_the_first_one() {
        let app = app(RUN);
        let first: ServiceRequest = serde_yaml::from_str("path: /healthz").unwrap();
        assert_eq!(request_port(&app.spec.run, &first), Ok(8080));
        let metrics: ServiceRequest = serde_yaml::from_str("{path: /m, port: metrics}").unwrap();
        assert_eq!(request_port(&app.spec.run, &metrics), Ok(9090));
    }

    #[test]
    fn check_errors_name_the_field() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "an HTTP check naming no port",
                RUN,
                "name: dev",
                "httpChecks: [{path: /healthz}, {path: /x, port: admin}]",
                "Environment dev: spec.health.httpChecks[1] (/x): port \"admin\" names no port of the Application's spec.run.ports (http, metrics)",
            ),
            (
                "an HTTP check without ports",
                "    replicas: 1",
                "name: dev",
                "httpChecks: [{path: /healthz}]",
                "spec.health.httpChecks[0] (/healthz): the Application has no spec.run.ports",
            ),
            (
                "an HTTP check to a UDP port",
                "    ports: [{name: dns, port: 53, protocol: UDP}]",
                "name: dev",
                "httpChecks: [{path: /healthz}]",
                "port \"dns\" is UDP",
            ),
            (
                "a probe naming no port",
                "    ports: [{name: http, port: 80}]\n    livenessProbe: {tcpSocket: {port: web}}",
                "name: dev",
                "{}",
                "spec.run.livenessProbe.tcpSocket.port \"web\" names no port of spec.run.ports (http)",
            ),
            (
                "a variable set twice in run.env",
                "    env: [{name: A, value: x}, {name: A, value: y}]",
                "name: dev",
                "{}",
                "spec.run.env[1].name: \"A\" is set twice",
            ),
            (
                "a variable set twice in an environment",
                "    replicas: 1",
                "{name: dev, env: [{name: A, value: x}, {name: A, value: y}]}",
                "{}",
                "spec.environments[dev].env[1].name: \"A\" is set twice",
            ),
            (
                "an invalid variable name",
                "    replicas: 1",
                "{name: dev, env: [{name: 1A, value: x}]}",
                "{}",
                "spec.environments[dev].env[0].name \"1A\" is not an environment variable name",
            ),
        ];
        for (case, run, entry_yaml, health_yaml, expected) in cases {
            let app = app(run);
            let entry = entry(entry_yaml);
            let w = workload(&app, &entry);
            let error = check(&w, &health(health_yaml), None).expect_err(case);
            assert!(error.contains(expected), "{case}: {error}");
        }
    }

    #[test]
    fn a_verification_get_naming_no_port_names_its_field() {
        let app = app(RUN);
        let entry = entry("name: dev");
        let verification: Verification =
            serde_yaml::from_str("httpGets: [{path: /ready}, {path: /x, port: admin}]").unwrap();
        let error = check(&workload(&app, &entry), &health("{}"), Some(&verification));
        assert_eq!(
            error,
            Err("Environment dev: spec.verification.httpGets[1] (/x): port \"admin\" names no port of the Application's spec.run.ports (http, metrics)".to_owned())
        );
    }

    #[test]
    fn a_valid_workload_passes_check() {
        let app = app(RUN);
        let entry =
            entry("{name: dev, env: [{name: LOG, value: debug}, {name: my.var_1-x, value: y}]}");
        let w = workload(&app, &entry);
        let health = health("httpChecks: [{path: /healthz}, {path: /m, port: metrics}]");
        assert_eq!(check(&w, &health, None), Ok(()));
    }
}
