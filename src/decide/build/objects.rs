//! The objects a build makes: the BuildJob of a new commit, the Release of a verified image,
//! and which finished BuildJobs are pruned.
//!
//! Both carry an owner reference to their Application, so deleting the Application deletes
//! them; a BuildJob's pod is owned by the BuildJob. Names are deterministic (`naming`), so a
//! second create of the same thing is refused by the API server instead of made twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::naming::{buildjob_name, release_name};
use super::version;
use crate::api::labels::{APPLICATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use crate::api::{Application, BuildJob, BuildJobSpec, Release, ReleaseSpec, Time, controlled_by};

fn owned_by(app: &Application) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        namespace: Some(app.metadata.namespace.clone()?),
        labels: Some(
            [
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (APPLICATION_LABEL.to_owned(), app.metadata.name.clone()?),
            ]
            .into(),
        ),
        owner_references: Some(vec![controlled_by(app)?]),
        ..ObjectMeta::default()
    })
}

/// The BuildJob of `commit` of `app`: a snapshot of the Application's source, build and image
/// settings now, so the build stays reproducible if the Application changes later. `None`
/// for an Application not stored yet.
pub fn buildjob_for(app: &Application, commit: &str) -> Option<BuildJob> {
    let name = app.metadata.name.as_deref()?;
    let mut job = BuildJob::new(
        &buildjob_name(name, commit),
        BuildJobSpec {
            application: name.to_owned(),
            commit: commit.to_owned(),
            source: app.spec.source.repository.clone(),
            build: app.spec.build.clone(),
            image: app.spec.image.clone(),
        },
    );
    job.metadata = ObjectMeta {
        name: job.metadata.name,
        ..owned_by(app)?
    };
    Some(job)
}

/// The Release of a verified build: its version from the semver tags on the commit, its work
/// items as the fetch step found them in the messages of the commits since the previous
/// Release (`work_items::referenced`).
pub fn release_for(
    app: &Application,
    job: &BuildJob,
    image: &str,
    tags: &[String],
    work_items: Vec<String>,
) -> Option<Release> {
    let application = &job.spec.application;
    let version = version::for_commit(&job.spec.commit, tags);
    let mut release = Release::new(
        &release_name(application, &version),
        ReleaseSpec {
            application: application.clone(),
            version,
            commit: job.spec.commit.clone(),
            image: image.to_owned(),
            build_job: job.metadata.name.clone(),
            imported_by: None,
            work_items,
            notes: None,
            run: Some(app.spec.run.clone()),
        },
    );
    release.metadata = ObjectMeta {
        name: release.metadata.name,
        ..owned_by(app)?
    };
    Some(release)
}

/// The Release that runs the image of `from` (the newest Release) with the Application's run
/// configuration now, when `from` fixes another one; `None` when it fixes the same, or none
/// yet (`Release::fixed_run`). Same commit, image and build, version
/// `<version of from>+run.<hash>`; made by Ferry, so it names no importer. The hash covers
/// `from`'s name and the configuration, so a configuration changed back and forth still gives
/// a new Release each time (newer than the one it follows), and the same change seen twice
/// gives the same name (the second create is refused, not made twice).
pub fn reconfigured(app: &Application, from: &Release) -> Option<Release> {
    if from.fixed_run()? == &app.spec.run {
        return None;
    }
    let name = from.metadata.name.as_deref()?;
    let run = serde_json::to_vec(&app.spec.run).ok()?;
    let mut digest = Sha256::new();
    digest.update(name.as_bytes());
    digest.update([0]);
    digest.update(&run);
    let hash: String = digest
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let version = version::reconfigured(&from.spec.version, &hash);
    let application = &from.spec.application;
    let mut release = Release::new(
        &release_name(application, &version),
        ReleaseSpec {
            application: application.clone(),
            version,
            commit: from.spec.commit.clone(),
            image: from.spec.image.clone(),
            build_job: from.spec.build_job.clone(),
            imported_by: None,
            work_items: Vec::new(),
            notes: Some(format!(
                "The image of {name} with the Application's new run configuration (spec.run)."
            )),
            run: Some(app.spec.run.clone()),
        },
    );
    release.metadata = ObjectMeta {
        name: release.metadata.name,
        ..owned_by(app)?
    };
    Some(release)
}

/// A BuildJob of an Application, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub name: String,
    /// When it finished (its completion time, else its creation).
    pub at: Time,
}

/// The finished BuildJobs to delete so that the newest `limit` remain. BuildJobs still under
/// way are never pruned and do not count.
pub fn to_prune(mut finished: Vec<Finished>, limit: usize) -> Vec<String> {
    finished.sort_by(|a, b| b.at.0.cmp(&a.at.0).then_with(|| a.name.cmp(&b.name)));
    finished.into_iter().skip(limit).map(|f| f.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Application {
        let mut app: Application = serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: shop, namespace: team-a}
spec:
  source: {url: "http://git.local/shop.git", path: svc, credentialsSecret: git-cred, insecure: true}
  build: {builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}
  image: {repository: registry.local/team-a/shop, pushSecret: reg}
"#,
        )
        .unwrap();
        app.metadata.uid = Some("app-uid".into());
        app
    }

    const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    #[test]
    fn a_commit_becomes_one_buildjob_snapshotting_the_application() {
        let job = buildjob_for(&app(), COMMIT).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("shop-9fceb02"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(job.spec.source.path.as_deref(), Some("svc"));
        assert!(
            job.spec.source.insecure,
            "the consent to plain-http credentials goes with the source"
        );
        assert_eq!(job.spec.image.push_secret.as_deref(), Some("reg"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Application", "app-uid")
        );
        let again = buildjob_for(&app(), COMMIT).unwrap();
        assert_eq!(
            (again.metadata, again.spec),
            (job.metadata.clone(), job.spec.clone()),
            "the same commit, the same BuildJob"
        );
        let mut unsaved = app();
        unsaved.metadata.uid = None;
        assert!(buildjob_for(&unsaved, COMMIT).is_none());
    }

    #[test]
    fn a_verified_build_becomes_its_release() {
        let job = buildjob_for(&app(), COMMIT).unwrap();
        let image = format!("registry.local/team-a/shop@sha256:{}", "ab".repeat(32));
        let items = vec!["#12".to_owned(), "PROJ-7".to_owned()];
        let tagged = release_for(&app(), &job, &image, &["v1.2.0".into()], items).unwrap();
        assert_eq!(tagged.metadata.name.as_deref(), Some("shop-1.2.0"));
        assert_eq!(tagged.spec.version, "1.2.0");
        assert_eq!(tagged.spec.work_items, ["#12", "PROJ-7"]);
        assert_eq!(tagged.spec.build_job.as_deref(), Some("shop-9fceb02"));
        let untagged = release_for(&app(), &job, &image, &[], Vec::new()).unwrap();
        assert_eq!(
            untagged.metadata.name.as_deref(),
            Some("shop-0.0.0-9fceb02")
        );
        assert_eq!(tagged.spec.run.as_ref(), Some(&app().spec.run));
        assert_eq!(reconfigured(&app(), &tagged), None, "it runs as configured");
    }

    #[test]
    fn a_changed_run_configuration_becomes_a_release_of_the_same_image() {
        let job = buildjob_for(&app(), COMMIT).unwrap();
        let image = format!("registry.local/team-a/shop@sha256:{}", "ab".repeat(32));
        let built = release_for(&app(), &job, &image, &["v1.2.0".into()], Vec::new()).unwrap();
        let mut changed = app();
        changed.spec.run.env = vec![k8s_openapi::api::core::v1::EnvVar {
            name: "MODE".into(),
            value: Some("fast".into()),
            value_from: None,
        }];
        let new = reconfigured(&changed, &built).unwrap();
        assert_eq!(new.spec.run.as_ref(), Some(&changed.spec.run));
        assert_eq!(reconfigured(&changed, &new), None);
        assert_eq!(
            (&new.spec.image, &new.spec.commit, &new.spec.build_job),
            (&built.spec.image, &built.spec.commit, &built.spec.build_job),
            "the same image, commit and build"
        );
        assert!(
            new.spec.version.starts_with("1.2.0+run."),
            "{}",
            new.spec.version
        );
        let name = new.metadata.name.clone().unwrap();
        assert!(name.starts_with("shop-1.2.0-run."), "{name}");
        assert_eq!(
            new.metadata.owner_references,
            built.metadata.owner_references
        );
        assert_eq!(
            reconfigured(&changed, &built)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some(name.as_str()),
            "the same change seen twice, the same name"
        );

        // Changed back: a new Release again, not the built one.
        let back = reconfigured(&app(), &new).unwrap();
        assert_eq!(back.spec.run.as_ref(), Some(&app().spec.run));
        assert_ne!(back.metadata.name, built.metadata.name);
        assert_ne!(back.metadata.name, new.metadata.name);
        assert!(back.spec.version.starts_with("1.2.0+run."));

        // An import without spec.run: nothing until Ferry recorded what it fixes.
        let mut imported = built.clone();
        imported.spec.run = None;
        assert_eq!(reconfigured(&changed, &imported), None);
        imported.status = Some(crate::api::ReleaseStatus {
            run: Some(app().spec.run),
            ..Default::default()
        });
        assert!(reconfigured(&app(), &imported).is_none());
        assert!(reconfigured(&changed, &imported).is_some());
    }

    #[test]
    fn retention_keeps_the_newest_finished_buildjobs() {
        let at = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        let finished = vec![
            Finished {
                name: "shop-a".into(),
                at: at(10),
            },
            Finished {
                name: "shop-c".into(),
                at: at(30),
            },
            Finished {
                name: "shop-b".into(),
                at: at(20),
            },
        ];
        assert_eq!(to_prune(finished.clone(), 2), ["shop-a"]);
        assert_eq!(to_prune(finished.clone(), 3), Vec::<String>::new());
        assert_eq!(to_prune(finished, 1), ["shop-b", "shop-a"]);
    }
}
