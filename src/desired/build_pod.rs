//! The build pod of a BuildJob: its steps in order, each its own container.
//!
//! 1. `fetch` (init, Ferry's image): checks out the commit into the shared workspace, and
//!    reports in its termination message the work items of the commits since the previous
//!    Release. Only this step mounts the git credentials Secret.
//! 2. `build` (init, the builder image): runs the Application's script with `sh -ec` in the
//!    checkout; its output directory is a volume of its own.
//! 3. `publish` (Ferry's image): layers the output directory on the base image (or takes the
//!    OCI layout the script wrote) and pushes it; only this step mounts the push Secret. It
//!    reports the digest in its termination message, which the controller then verifies in
//!    the registry itself.
//!
//! The pod meets the `restricted` Pod Security Standard: non-root, no privilege escalation,
//! every capability dropped, seccomp `RuntimeDefault`, no service account token. Its deadline
//! is the build's timeout, so the kubelet stops it and the BuildJob fails with `TimedOut`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, Pod, PodSpec, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{restricted, restricted_pod, restricted_writable};
use crate::api::labels::{
    APPLICATION_LABEL, BUILD_COMPONENT, BUILDJOB_LABEL, COMPONENT_LABEL, MANAGED_BY,
    MANAGED_BY_LABEL,
};
use crate::api::{BuildJob, controlled_by};
use crate::decide::build::naming::short_commit;

/// The user and group every step runs as.
pub const BUILD_USER: i64 = 65532;
/// Where the steps share the checkout.
pub const WORKSPACE: &str = "/workspace";
/// Where the fetch step finds the git credentials Secret.
pub const GIT_CREDENTIALS: &str = "/var/run/ferry/git";
/// Where the publish step finds the push Secret.
pub const PUSH_CREDENTIALS: &str = "/var/run/ferry/push";
/// Where the publish step finds the build's output directory.
pub const PUBLISH_INPUT: &str = "/var/run/ferry/output";

/// What the build pod needs besides the BuildJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Ferry's own image, which runs the fetch and publish steps.
    pub ferry_image: String,
}

/// The build pod of `job`; `since` is the commit of the Application's previous Release, whose
/// successors' messages give the work items. `None` when the job has no name, namespace or
/// UID yet (it has not been stored).
pub fn build_pod(job: &BuildJob, settings: &Settings, since: Option<&str>) -> Option<Pod> {
    let name = job.metadata.name.clone()?;
    let namespace = job.metadata.namespace.clone()?;
    let owner = controlled_by(job)?;
    let spec = &job.spec;
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (COMPONENT_LABEL.to_owned(), BUILD_COMPONENT.to_owned()),
        (BUILDJOB_LABEL.to_owned(), name.clone()),
        (APPLICATION_LABEL.to_owned(), spec.application.clone()),
    ]);
    let checkout = match &spec.source.path {
        Some(path) => format!("{WORKSPACE}/src/{}", path.trim_matches('/')),
        None => format!("{WORKSPACE}/src"),
    };
    let layout = spec.build.oci_layout_dir.clone();
    let output = layout
        .clone()
        .unwrap_or_else(|| spec.build.output_dir().to_owned());

    let mut fetch_args = vec![
        "build".to_owned(),
        "fetch".to_owned(),
        format!("--url={}", spec.source.url),
        format!("--commit={}", spec.commit),
        format!("--dest={WORKSPACE}/src"),
        "--report=/dev/termination-log".to_owned(),
    ];
    if let Some(since) = since {
        fetch_args.push(format!("--since={since}"));
    }
    let mut fetch_mounts = vec![mount("workspace", WORKSPACE), mount("tmp", "/tmp")];
    if spec.source.credentials_secret.is_some() {
        fetch_args.push(format!("--credentials={GIT_CREDENTIALS}"));
        fetch_mounts.push(read_only(mount("git-credentials", GIT_CREDENTIALS)));
    }
    // The step itself refuses credentials over plain http without this consent.
    if spec.source.insecure {
        fetch_args.push("--insecure".to_owned());
    }
    let fetch = ferry_step("fetch", settings, fetch_args, fetch_mounts);

    let build = Container {
        name: "build".into(),
        image: Some(spec.build.builder_image.clone()),
        command: Some(vec!["sh".into(), "-ec".into(), spec.build.script.clone()]),
        working_dir: Some(checkout),
        env: Some(vec![
            env("HOME", &format!("{WORKSPACE}/home")),
            env("FERRY_COMMIT", &spec.commit),
            env("FERRY_OUTPUT_DIR", &output),
        ]),
        resources: spec.build.resources.clone(),
        volume_mounts: Some(vec![
            mount("workspace", WORKSPACE),
            mount("output", &output),
            mount("tmp", "/tmp"),
        ]),
        // Builder images write where they like (caches under $HOME, compilers' temp files).
        security_context: Some(restricted_writable()),
        ..step()
    };

    let mut publish_args = vec![
        "build".to_owned(),
        "publish".to_owned(),
        format!("--repository={}", spec.image.repository),
        format!("--tag={}", short_commit(&spec.commit)),
    ];
    match (&layout, &spec.build.base_image) {
        (Some(_), _) => publish_args.push(format!("--oci-layout={PUBLISH_INPUT}")),
        (None, base) => {
            publish_args.push(format!("--output={PUBLISH_INPUT}"));
            if let Some(base) = base {
                publish_args.push(format!("--base={base}"));
            }
            for part in &spec.build.entrypoint {
                publish_args.push(format!("--entrypoint={part}"));
            }
        }
    }
    if spec.image.insecure {
        publish_args.push("--insecure".to_owned());
    }
    let mut publish_mounts = vec![
        read_only(mount("output", PUBLISH_INPUT)),
        mount("tmp", "/tmp"),
    ];
    if spec.image.push_secret.is_some() {
        publish_args.push(format!(
            "--docker-config={PUSH_CREDENTIALS}/.dockerconfigjson"
        ));
        publish_mounts.push(read_only(mount("push-credentials", PUSH_CREDENTIALS)));
    }
    let publish = ferry_step("publish", settings, publish_args, publish_mounts);

    let mut volumes = vec![
        empty_dir("workspace"),
        empty_dir("output"),
        empty_dir("tmp"),
    ];
    if let Some(secret) = &spec.source.credentials_secret {
        volumes.push(secret_volume("git-credentials", secret));
    }
    if let Some(secret) = &spec.image.push_secret {
        volumes.push(secret_volume("push-credentials", secret));
    }

    let timeout: std::time::Duration = spec.build.timeout.into();
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(restricted_pod(BUILD_USER)),
            init_containers: Some(vec![fetch, build]),
            containers: vec![publish],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    })
}

/// A step that runs Ferry's own image (`ferry build fetch`, `ferry build publish`).
fn ferry_step(
    name: &str,
    settings: &Settings,
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: name.into(),
        image: Some(settings.ferry_image.clone()),
        args: Some(args),
        volume_mounts: Some(mounts),
        ..step()
    }
}

/// What every step shares: restricted security, the log as its message if it fails.
fn step() -> Container {
    Container {
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: Some(restricted()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    }
}

fn read_only(mount: VolumeMount) -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The BuildJob the tests of this module and of `decide::buildjob` start from.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::api::BuildJob;

    /// Commit 9fceb02 of the shop Application in team-a, stored (UID 1234, generation 1),
    /// fetched with the Secret git-cred over plain http (`insecure`) and pushed with reg.
    pub fn job() -> BuildJob {
        serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: BuildJob
metadata: {name: shop-9fceb02, namespace: team-a, uid: "1234", generation: 1}
spec:
  application: shop
  commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
  source: {url: "http://git.local/shop.git", credentialsSecret: git-cred, insecure: true}
  build: {builderImage: "registry.local/builder:1", script: "make test && cp shop /out/", baseImage: "registry.local/base:1", entrypoint: [/shop], timeout: 10m}
  image: {repository: registry.local/team-a/shop, pushSecret: reg, insecure: true}
"#,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::job;
    use super::*;

    fn settings() -> Settings {
        Settings {
            ferry_image: "registry.local/ferry@sha256:aa".into(),
        }
    }

    fn args(container: &Container) -> Vec<&str> {
        container
            .args
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    fn mounts(container: &Container) -> Vec<&str> {
        container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str())
            .collect()
    }

    #[test]
    fn the_steps_run_in_order_each_in_its_own_container() {
        let pod = build_pod(&job(), &settings(), None).unwrap();
        let spec = pod.spec.unwrap();
        let steps: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(steps, ["fetch", "build", "publish"]);
        let fetch = &spec.init_containers.as_ref().unwrap()[0];
        assert!(args(fetch).contains(&"--report=/dev/termination-log"));
        let build = &spec.init_containers.as_ref().unwrap()[1];
        assert_eq!(
            build.command.as_deref().unwrap(),
            ["sh", "-ec", "make test && cp shop /out/"]
        );
        assert_eq!(build.image.as_deref(), Some("registry.local/builder:1"));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("BuildJob", Some(true))
        );
    }

    #[test]
    fn credentials_are_mounted_only_into_the_step_that_needs_them() {
        let spec = build_pod(&job(), &settings(), None).unwrap().spec.unwrap();
        let inits = spec.init_containers.unwrap();
        let (fetch, build, publish) = (&inits[0], &inits[1], &spec.containers[0]);
        assert!(mounts(fetch).contains(&"git-credentials"));
        assert!(!mounts(fetch).contains(&"push-credentials"));
        assert!(!mounts(build).iter().any(|m| m.ends_with("credentials")));
        assert!(mounts(publish).contains(&"push-credentials"));
        assert!(!mounts(publish).contains(&"git-credentials"));
        assert!(args(publish).contains(&"--docker-config=/var/run/ferry/push/.dockerconfigjson"));
        assert!(args(publish).contains(&"--insecure"));
    }

    #[test]
    fn the_fetch_step_may_send_credentials_over_plain_http_only_when_the_source_says_insecure() {
        let fetch_args = |job: &BuildJob| {
            let spec = build_pod(job, &settings(), None).unwrap().spec.unwrap();
            spec.init_containers.unwrap()[0].args.clone().unwrap()
        };
        assert!(fetch_args(&job()).contains(&"--insecure".to_owned()));
        let mut https = job();
        https.spec.source.url = "https://git.local/shop.git".into();
        https.spec.source.insecure = false;
        let args = fetch_args(&https);
        assert!(!args.contains(&"--insecure".to_owned()), "{args:?}");
        assert!(args.contains(&"--credentials=/var/run/ferry/git".to_owned()));
    }

    #[test]
    fn the_pod_meets_the_restricted_pod_security_standard() {
        let spec = build_pod(&job(), &settings(), None).unwrap().spec.unwrap();
        let pod_security = spec.security_context.clone().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        assert_eq!(spec.automount_service_account_token, Some(false));
        for container in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let security = container.security_context.clone().unwrap();
            assert_eq!(
                security.allow_privilege_escalation,
                Some(false),
                "{}",
                container.name
            );
            assert_eq!(
                security.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_owned()]),
                "{}",
                container.name
            );
            assert_eq!(security.run_as_non_root, Some(true), "{}", container.name);
        }
    }

    #[test]
    fn an_oci_layout_is_published_as_it_is() {
        let mut job = job();
        job.spec.build.base_image = None;
        job.spec.build.entrypoint = vec![];
        job.spec.build.oci_layout_dir = Some("/layout".into());
        let spec = build_pod(&job, &settings(), None).unwrap().spec.unwrap();
        let publish = &spec.containers[0];
        let args = publish.args.clone().unwrap();
        assert!(args.contains(&"--oci-layout=/var/run/ferry/output".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--base")));
        let build = &spec.init_containers.unwrap()[1];
        assert!(
            build
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "output" && m.mount_path == "/layout")
        );
    }

    #[test]
    fn a_build_without_secrets_mounts_none() {
        let mut job = job();
        job.spec.source.credentials_secret = None;
        job.spec.image.push_secret = None;
        let spec = build_pod(&job, &settings(), None).unwrap().spec.unwrap();
        assert_eq!(spec.volumes.unwrap().len(), 3);
        let publish = &spec.containers[0];
        assert!(
            !args(publish)
                .iter()
                .any(|a| a.starts_with("--docker-config"))
        );
    }

    #[test]
    fn the_fetch_step_reports_work_items_since_the_previous_release() {
        let since = "1111111111111111111111111111111111111111";
        let spec = build_pod(&job(), &settings(), Some(since))
            .unwrap()
            .spec
            .unwrap();
        let fetch = &spec.init_containers.unwrap()[0];
        assert!(args(fetch).contains(&format!("--since={since}").as_str()));
    }

    #[test]
    fn a_job_not_yet_stored_has_no_pod() {
        let mut job = job();
        job.metadata.uid = None;
        assert!(build_pod(&job, &settings(), None).is_none());
    }
}
