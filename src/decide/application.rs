//! Whether an Application can be delivered: every Environment it lists exists, is ready and
//! is reachable from a first stage through environments it also lists, its target namespace
//! consents (read live, not trusted from the Environment's status), and every Secret it names
//! exists with the keys its use needs; and which commit to build: the head of its branch, as
//! the git server reported it, becomes one BuildJob unless it was built or released already.

use std::collections::{BTreeMap, BTreeSet};

use super::build::naming::buildjob_name;
use super::build::objects::reconfigured;
use super::environment::not_consenting;
use super::secrets::{self, SecretAccess};
use super::{Blocker, Decision, Readiness, join_names, readiness, whole_seconds};
use crate::api::CommonStatus;
use crate::api::application::{EnvironmentState, Phase};
use crate::api::conditions::TRUE;
use crate::api::reasons::{
    ADDRESS_REFUSED, AUTHENTICATION_REFUSED, BRANCH_NOT_FOUND, CREDENTIALS_IN_CLEAR,
    ENVIRONMENT_NOT_FOUND, ENVIRONMENT_NOT_READY, GIT_PROTOCOL_ERROR, INVALID_OBJECT,
    INVALID_REPOSITORY_URL, INVALID_RUN_SPEC, NOT_A_GIT_REPOSITORY, PINNED_RELEASE_NOT_CONFIGURED,
    PINNED_RELEASE_NOT_FOUND, PINNED_RELEASE_OF_ANOTHER_APPLICATION,
    PINNED_RELEASE_OUTSIDE_REPOSITORY, READY, REPOSITORY_UNREACHABLE, Reason, UPSTREAM_CYCLE,
    UPSTREAM_NOT_LISTED, WAITING_FOR_ENVIRONMENTS,
};
use crate::api::{Application, ApplicationStatus, Condition, Release, Time};

/// What the git server said of the Application's branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceHead {
    /// The branch's head commit and the tags pointing at it.
    Commit { commit: String, tags: Vec<String> },
    /// The branch could not be read: the error's reason (`GitError::reason`) and message.
    Failed { reason: Reason, message: String },
}

/// What the shell does for an Application besides writing its status.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the BuildJob of this commit (`build::objects::buildjob_for`).
    CreateBuildJob { commit: String },
    /// Deliver to the listed environments, in pipeline order (`delivery::pipeline`):
    /// nothing stands in the way of running releases there. A repository that cannot be read
    /// stops builds, not deliveries.
    Deliver { order: Vec<String> },
    /// Create this Release: the image of the newest Release with the Application's run
    /// configuration, which that Release does not fix (`build::objects::reconfigured`).
    CreateRelease { release: Box<Release>, from: String },
}

/// An Environment as the Application controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentFacts {
    pub upstream: Option<String>,
    pub readiness: EnvironmentReadiness,
    /// Its target namespace as read live from the API server, if it is another namespace.
    /// The Environment's own `Ready` condition is not enough: anyone allowed to write
    /// `environments/status` could forge it.
    pub target: Option<LiveTarget>,
}

/// A target namespace and whether it consents, as read live when the Application is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTarget {
    pub namespace: String,
    pub consents: bool,
}

/// Whether an Environment can take releases, from its own status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentReadiness {
    Ready,
    /// Ferry has not looked at it yet (just created or changed): wait, do not complain.
    Pending,
    /// Not ready, with the reason of its `Ready=False` condition.
    NotReady(String),
}

/// How ready an Environment is, from its `Ready` condition and its `metadata.generation`; an
/// Environment Ferry cannot read at all is `None`. A `Ready` condition about an older
/// generation says nothing about the spec as it is now, so it counts as not checked yet.
pub fn environment_readiness(
    ready: Option<&Condition>,
    generation: Option<i64>,
    readable: bool,
) -> EnvironmentReadiness {
    if !readable {
        return EnvironmentReadiness::NotReady(INVALID_OBJECT.name.to_owned());
    }
    match ready {
        Some(ready) if ready.observed_generation != generation => EnvironmentReadiness::Pending,
        Some(ready) if ready.status == TRUE => EnvironmentReadiness::Ready,
        Some(ready) => EnvironmentReadiness::NotReady(ready.reason.clone()),
        None => EnvironmentReadiness::Pending,
    }
}

/// What the reconciler observed for one Application.
pub struct Observed<'a> {
    pub app: &'a Application,
    pub namespace: &'a str,
    /// The Environments of the namespace, by name.
    pub environments: &'a BTreeMap<String, EnvironmentFacts>,
    /// Key names of the Secrets the Application names (absent when they do not exist), or
    /// that the namespace has not granted Ferry access to its Secrets.
    pub secrets: &'a SecretAccess,
    /// The Releases of the namespace: name to the Application each belongs to.
    pub releases: &'a BTreeMap<String, String>,
    /// The head of the branch, once looked up.
    pub source: Option<&'a SourceHead>,
    /// The names of this Application's BuildJobs.
    pub builds: &'a BTreeSet<String>,
    /// This Application's Releases: the commits released, and the newest Release.
    pub released: &'a BTreeSet<String>,
    pub newest: Option<&'a Release>,
    /// The names of this Application's Releases that fix no run configuration yet
    /// (`Release::fixed_run`): not rolled out, so a pin on one waits.
    pub unconfigured: &'a BTreeSet<String>,
    /// The names of this Application's Releases that Ferry did not build and whose image is
    /// not in its `spec.image.repository` (`decide::release::outside_repository`): never
    /// rolled out, so a pin on one is refused.
    pub outside_repository: &'a BTreeSet<String>,
    /// Something in `spec.run` or an environment entry that cannot become a workload
    /// (`decide::run_spec::check`): the environment and the message naming the field.
    pub invalid_run: Option<(String, String)>,
}

/// The branch could not be read: the reason the git adapter gave.
fn source_blocker(source: Option<&SourceHead>) -> Option<Blocker> {
    let SourceHead::Failed { reason, message } = source? else {
        return None;
    };
    Some(Blocker::new(*reason, format!("{message}{LOOKS_AGAIN}")))
}

/// What a blocker of a branch that could not be read adds to the git adapter's message.
const LOOKS_AGAIN: &str = "; Ferry looks again with backoff";

/// The reasons a branch could not be read (`adapters::git::GitError::reason`).
const SOURCE_REASONS: &[Reason] = &[
    REPOSITORY_UNREACHABLE,
    AUTHENTICATION_REFUSED,
    NOT_A_GIT_REPOSITORY,
    BRANCH_NOT_FOUND,
    INVALID_REPOSITORY_URL,
    ADDRESS_REFUSED,
    CREDENTIALS_IN_CLEAR,
    GIT_PROTOCOL_ERROR,
];

/// The branch as the Application's stored status last said it, for a reconcile that goes on
/// while its look-up is still under way (`controller::sources::LOOK_UP_WAIT`): a branch that
/// could not be read stays so (its Ready condition as stored), and nothing else is assumed
/// (no head, so nothing is built) until the look-up answers. Deciding from nothing instead
/// would clear a stored failure and set it again when the answer came: two status writes,
/// and two Events, for a git server that is only slow.
/// Only a failure stored for the spec as it is counts: a source the user has just changed
/// (another URL or branch) is not judged by the old one's failure.
pub fn source_as_stored(app: &Application) -> Option<SourceHead> {
    let conditions = &app.status.as_ref()?.common.conditions;
    let ready = crate::api::conditions::find(conditions, crate::api::conditions::READY)?;
    if ready.observed_generation != app.metadata.generation {
        return None;
    }
    let reason = *SOURCE_REASONS.iter().find(|r| r.name == ready.reason)?;
    // A message cut to the condition's limit lost the suffix; decided again, it is cut the
    // same way.
    let message = ready
        .message
        .strip_suffix(LOOKS_AGAIN)
        .unwrap_or(&ready.message);
    Some(SourceHead::Failed {
        reason,
        message: message.to_owned(),
    })
}

/// The commit to build: the branch head, unless a BuildJob or a Release of it exists or was
/// made already (a pruned BuildJob is remembered in `status.latestBuild`).
fn to_build(observed: &Observed, latest_build: Option<&str>) -> Option<(String, String)> {
    let SourceHead::Commit { commit, .. } = observed.source? else {
        return None;
    };
    // Nothing is built from a source that may not be fetched as it is written (credentials
    // that would go unencrypted, a credentials Secret that cannot be used): the controller
    // does not look it up, and a head seen before does not count.
    let repository = &observed.app.spec.source.repository;
    if secrets::source_blocker(repository, observed.secrets, observed.namespace).is_some() {
        return None;
    }
    let name = buildjob_name(observed.app.metadata.name.as_deref()?, commit);
    let known = observed.builds.contains(&name)
        || latest_build == Some(name.as_str())
        || observed.released.contains(commit);
    (!known).then(|| (commit.clone(), name))
}

/// A pin must name a Release of this very Application: approving or rolling back to a
/// release that does not exist, or belongs to another application, would deploy nothing or
/// the wrong thing.
fn pin_blocker(observed: &Observed) -> Option<Blocker> {
    let app = observed.app.metadata.name.as_deref().unwrap_or_default();
    observed.app.spec.environments.iter().find_map(|entry| {
        let pin = entry.pin.as_ref()?;
        let field = format!("spec.environments[{}].pin.release", entry.name);
        match observed.releases.get(&pin.release) {
            None => Some(Blocker::new(
                PINNED_RELEASE_NOT_FOUND,
                format!(
                    "Environment \"{}\" is pinned to Release \"{}\", which does not exist in namespace \"{}\"; create it or correct {field}",
                    entry.name, pin.release, observed.namespace
                ),
            )),
            Some(owner) if owner != app => Some(Blocker::new(
                PINNED_RELEASE_OF_ANOTHER_APPLICATION,
                format!(
                    "Environment \"{}\" is pinned to Release \"{}\", which is a release of Application \"{owner}\", not \"{app}\"; correct {field}",
                    entry.name, pin.release
                ),
            )),
            Some(_) if observed.outside_repository.contains(&pin.release) => Some(Blocker::new(
                PINNED_RELEASE_OUTSIDE_REPOSITORY,
                format!(
                    "Environment \"{}\" is pinned to Release \"{}\", whose image is not in {} (spec.image.repository) and was not built by Ferry, so it is never rolled out; pin another release, or import the image into {} as a new Release",
                    entry.name, pin.release, observed.app.spec.image.repository, observed.app.spec.image.repository
                ),
            )),
            Some(_) if observed.unconfigured.contains(&pin.release) => Some(Blocker::new(
                PINNED_RELEASE_NOT_CONFIGURED,
                format!(
                    "Environment \"{}\" is pinned to Release \"{}\", which fixes no run configuration yet (spec.run, or status.run once Ferry records it); Ferry records it as soon as it sees the Release's Application",
                    entry.name, pin.release
                ),
            )),
            Some(_) => None,
        }
    })
}

/// Orders the listed environments so that each comes after its upstream, or says why that is
/// impossible: an upstream that is not listed would never hand a release on.
pub fn order(
    listed: &[String],
    environments: &BTreeMap<String, EnvironmentFacts>,
) -> Result<Vec<String>, Blocker> {
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    for name in listed {
        if let Some(up) = environments.get(name).and_then(|e| e.upstream.as_deref())
            && !listed_set.contains(up)
        {
            return Err(Blocker::new(
                UPSTREAM_NOT_LISTED,
                format!(
                    "Environment \"{name}\" promotes from \"{up}\", which spec.environments does not list, so no release would reach it; add \"{up}\" or change the upstream of \"{name}\""
                ),
            ));
        }
    }
    // Kahn's algorithm over the listed subgraph, stable in the order the user wrote.
    let mut placed: Vec<String> = Vec::with_capacity(listed.len());
    while placed.len() < listed.len() {
        let next = listed.iter().find(|name| {
            !placed.contains(name)
                && environments
                    .get(*name)
                    .and_then(|e| e.upstream.as_ref())
                    .is_none_or(|up| placed.contains(up))
        });
        match next {
            Some(name) => placed.push(name.clone()),
            None => {
                let rest: Vec<String> = listed
                    .iter()
                    .filter(|n| !placed.contains(n))
                    .cloned()
                    .collect();
                return Err(Blocker::new(
                    UPSTREAM_CYCLE,
                    format!(
                        "Environments {} promote from each other in a cycle; make one of them a first stage",
                        join_names(&rest)
                    ),
                ));
            }
        }
    }
    Ok(placed)
}

/// The first reason the Application cannot be delivered, if any.
fn blocker(observed: &Observed, listed: &[String]) -> Option<Blocker> {
    let missing: Vec<String> = listed
        .iter()
        .filter(|n| !observed.environments.contains_key(*n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let (noun, verb, fix) = if missing.len() == 1 {
            ("Environment", "does", "create it or remove the entry")
        } else {
            ("Environments", "do", "create them or remove the entries")
        };
        return Some(Blocker::new(
            ENVIRONMENT_NOT_FOUND,
            format!(
                "{noun} {} named in spec.environments {verb} not exist in namespace \"{}\"; {fix}",
                join_names(&missing),
                observed.namespace
            ),
        ));
    }
    if let Some(blocker) = secrets::check(
        &observed.app.spec.source.repository,
        &observed.app.secret_refs(),
        observed.secrets,
        observed.namespace,
    ) {
        return Some(blocker);
    }
    if let Some(blocker) = source_blocker(observed.source) {
        return Some(blocker);
    }
    delivery_blocker(observed, listed)
}

/// The first reason nothing can be delivered to the environments, if any.
fn delivery_blocker(observed: &Observed, listed: &[String]) -> Option<Blocker> {
    if listed
        .iter()
        .any(|n| !observed.environments.contains_key(n))
    {
        // Named by `blocker` first; here it only stops deliveries.
        return Some(Blocker::new(ENVIRONMENT_NOT_FOUND, String::new()));
    }
    if let Err(blocker) = order(listed, observed.environments) {
        return Some(blocker);
    }
    if let Some((environment, message)) = &observed.invalid_run {
        return Some(Blocker::new(
            INVALID_RUN_SPEC,
            format!("nothing is deployed to \"{environment}\": {message}"),
        ));
    }
    if let Some(blocker) = pin_blocker(observed) {
        return Some(blocker);
    }
    let refusing = listed.iter().find_map(|name| {
        let target = observed.environments.get(name)?.target.as_ref()?;
        (!target.consents).then(|| {
            let why = not_consenting(&target.namespace, observed.namespace);
            Blocker::new(
                why.reason,
                format!("Environment \"{name}\" cannot deploy: {}", why.message),
            )
        })
    });
    if refusing.is_some() {
        return refusing;
    }
    listed
        .iter()
        .find_map(|name| match &observed.environments.get(name)?.readiness {
            EnvironmentReadiness::NotReady(reason) => Some(Blocker::new(
                ENVIRONMENT_NOT_READY,
                format!("Environment \"{name}\" is not ready ({reason}); see its status"),
            )),
            EnvironmentReadiness::Ready | EnvironmentReadiness::Pending => None,
        })
}

/// The Application's new status; a Secret blocker is looked at again after
/// [`secrets::RECHECK`], since Secrets are not watched.
pub fn status(observed: &Observed, now: &Time) -> Decision<ApplicationStatus, Action> {
    let app = observed.app;
    let generation = app.metadata.generation;
    let current = app.status.clone().unwrap_or_default();
    let listed: Vec<String> = app
        .spec
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect();

    let ordered = order(&listed, observed.environments).unwrap_or_else(|_| listed.clone());
    let pending: Vec<String> = ordered
        .iter()
        .filter(|name| {
            observed
                .environments
                .get(*name)
                .is_some_and(|e| e.readiness == EnvironmentReadiness::Pending)
        })
        .cloned()
        .collect();
    let blocker = blocker(observed, &listed);
    let recheck = blocker
        .as_ref()
        .is_some_and(secrets::is_about_secrets)
        .then_some(secrets::RECHECK);
    let state = match blocker {
        Some(blocker) => Readiness::Blocked(blocker),
        None if !pending.is_empty() => Readiness::InProgress {
            reason: WAITING_FOR_ENVIRONMENTS,
            message: format!(
                "waiting for Ferry to check Environments {}",
                join_names(&pending)
            ),
        },
        None => Readiness::Ready {
            reason: READY,
            message: if listed.is_empty() {
                "builds and releases; lists no environments to deliver to".to_owned()
            } else {
                format!("delivers through {}", ordered.join(" -> "))
            },
        },
    };
    let environments: Vec<EnvironmentState> = ordered
        .iter()
        .map(|name| {
            current
                .environments
                .iter()
                .find(|e| &e.name == name)
                .cloned()
                .unwrap_or_else(|| EnvironmentState {
                    name: name.clone(),
                    phase: Some(Phase::Pending),
                    ..EnvironmentState::default()
                })
        })
        .collect();

    let mut actions = Vec::new();
    if pending.is_empty() && delivery_blocker(observed, &listed).is_none() {
        actions.push(Action::Deliver {
            order: ordered.clone(),
        });
    }
    let mut latest_build = current.latest_build.clone();
    if let Some((commit, name)) = to_build(observed, latest_build.as_deref()) {
        actions.push(Action::CreateBuildJob { commit });
        latest_build = Some(name);
    } else if let (Some(SourceHead::Commit { commit, .. }), Some(app)) =
        (observed.source, app.metadata.name.as_deref())
    {
        // The head's BuildJob exists, even if the status write that named it was refused
        // (the object had changed since it was read).
        let name = buildjob_name(app, commit);
        if observed.builds.contains(&name) {
            latest_build = Some(name);
        }
    }
    // What runs is promoted, not live: a run configuration the newest Release does not fix
    // becomes a Release of its own, unless it cannot become a workload.
    if let Some(newest) = observed.newest
        && observed.invalid_run.is_none()
        && let Some(release) = reconfigured(app, newest)
    {
        actions.push(Action::CreateRelease {
            release: Box::new(release),
            from: newest.metadata.name.clone().unwrap_or_default(),
        });
    }
    let latest_commit = match observed.source {
        Some(SourceHead::Commit { commit, .. }) => Some(commit.clone()),
        _ => current.latest_commit.clone(),
    };

    let status = ApplicationStatus {
        common: CommonStatus::decided(
            &current.common.conditions,
            &readiness(&state),
            generation,
            &whole_seconds(now),
        ),
        latest_commit,
        latest_build,
        latest_release: observed
            .newest
            .and_then(|r| r.metadata.name.clone())
            .or(current.latest_release.clone()),
        summary: None,
        environments: Vec::new(),
    };
    let status = with_environments(
        status,
        app.metadata.name.as_deref().unwrap_or_default(),
        environments,
    );
    Decision {
        status,
        actions,
        requeue_after: None,
    }
    .requeue_after(recheck)
}

/// `status` with its per-environment states, and the summary line that shows them: the one
/// place both are set, from the stored states when nothing is delivered and from the delivery
/// pipeline's (`delivery::pipeline`) when it ran.
pub fn with_environments(
    mut status: ApplicationStatus,
    application: &str,
    environments: Vec<EnvironmentState>,
) -> ApplicationStatus {
    status.summary = summary(application, &environments);
    status.environments = environments;
    status
}

/// One line per Application for `kubectl get`: each environment with its release (without the
/// `<application>-` prefix of release names) and phase, and the candidate awaiting approval:
/// `dev=1.4.2 Healthy, staging=1.4.2 Progressing, prod=1.4.1 AwaitingApproval(1.4.2)`.
pub fn summary(application: &str, environments: &[EnvironmentState]) -> Option<String> {
    if environments.is_empty() {
        return None;
    }
    let prefix = format!("{application}-");
    let short = |release: &str| {
        release
            .strip_prefix(&prefix)
            .filter(|v| !v.is_empty())
            .unwrap_or(release)
            .to_owned()
    };
    let parts: Vec<String> = environments
        .iter()
        .map(|e| {
            let phase = e.phase.map(|p| format!("{p:?}"));
            let mut what = match (&e.current, phase) {
                (Some(release), Some(phase)) => format!("{} {phase}", short(release)),
                (Some(release), None) => short(release),
                (None, Some(phase)) => phase,
                (None, None) => "-".to_owned(),
            };
            if let (Some(Phase::AwaitingApproval | Phase::Pinned), Some(candidate)) =
                (e.phase, &e.candidate)
            {
                what = format!("{what}({})", short(candidate));
            }
            format!("{}={what}", e.name)
        })
        .collect();
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, RECONCILING, STALLED, find, is_true};
    use crate::api::reasons::REPOSITORY_UNREACHABLE;

    /// An Application as a user would write it.
    fn app(yaml: &str) -> Application {
        serde_yaml::from_str(yaml).unwrap()
    }

    const SHOP: &str = r#"
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: shop, namespace: team-a, generation: 2}
spec:
  source: {url: "https://git.local/shop.git", credentialsSecret: git-cred}
  build: {builderImage: "registry.local/builder:1", script: "make", baseImage: "registry.local/base:1"}
  image: {repository: registry.local/team-a/shop}
  environments: [{name: prod}, {name: dev}, {name: staging}]
"#;

    fn envs(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, EnvironmentFacts> {
        pairs
            .iter()
            .map(|(n, u)| {
                (
                    n.to_string(),
                    EnvironmentFacts {
                        upstream: u.map(str::to_owned),
                        readiness: EnvironmentReadiness::Ready,
                        target: None,
                    },
                )
            })
            .collect()
    }

    /// dev -> staging -> prod.
    fn three_stages() -> BTreeMap<String, EnvironmentFacts> {
        envs(&[
            ("dev", None),
            ("staging", Some("dev")),
            ("prod", Some("staging")),
        ])
    }

    static NO_RELEASES: BTreeMap<String, String> = BTreeMap::new();
    static NONE: BTreeSet<String> = BTreeSet::new();

    /// What the shell observes of `app` in team-a when a test says nothing more: no
    /// Releases, no branch head, no builds.
    fn baseline<'a>(
        app: &'a Application,
        environments: &'a BTreeMap<String, EnvironmentFacts>,
        secrets: &'a SecretAccess,
    ) -> Observed<'a> {
        Observed {
            app,
            namespace: "team-a",
            environments,
            secrets,
            releases: &NO_RELEASES,
            source: None,
            builds: &NONE,
            released: &NONE,
            newest: None,
            unconfigured: &NONE,
            outside_repository: &NONE,
            invalid_run: None,
        }
    }

    fn decide(
        app: &Application,
        envs: &BTreeMap<String, EnvironmentFacts>,
        secrets: &SecretAccess,
    ) -> ApplicationStatus {
        let observed = Observed {
            releases: &BTreeMap::from([("shop-1.4.2".to_owned(), "shop".to_owned())]),
            ..baseline(app, envs, secrets)
        };
        status(&observed, &now()).status
    }

    fn git_cred() -> SecretAccess {
        SecretAccess::Read(BTreeMap::from([(
            "git-cred".to_owned(),
            secrets::SecretShape::new(secrets::BASIC_AUTH, ["username", "password"]),
        )]))
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn environments_are_ordered_by_their_upstreams() {
        let envs = three_stages();
        let listed = ["prod", "dev", "staging"].map(String::from);
        assert_eq!(order(&listed, &envs).unwrap(), ["dev", "staging", "prod"]);
    }

    #[test]
    fn an_unlisted_upstream_blocks_the_environments_after_it() {
        let envs = three_stages();
        let listed = ["dev", "prod"].map(String::from);
        let blocker = order(&listed, &envs).unwrap_err();
        assert_eq!(blocker.reason, UPSTREAM_NOT_LISTED);
        assert!(blocker.message.contains("add \"staging\""));
    }

    #[test]
    fn a_complete_application_is_ready_with_environments_in_pipeline_order() {
        let app = app(SHOP);
        let envs = three_stages();
        let secrets = git_cred();
        let status = decide(&app, &envs, &secrets);
        assert!(is_true(&status.common.conditions, READY));
        assert_eq!(status.common.observed_generation, Some(2));
        let names: Vec<&str> = status
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["dev", "staging", "prod"]);
        assert_eq!(
            status.summary.as_deref(),
            Some("dev=Pending, staging=Pending, prod=Pending")
        );
    }

    #[test]
    fn the_summary_shows_each_environments_release_phase_and_waiting_candidate() {
        let env =
            |name: &str, current: Option<&str>, phase, candidate: Option<&str>| EnvironmentState {
                name: name.to_owned(),
                current: current.map(str::to_owned),
                phase: Some(phase),
                candidate: candidate.map(str::to_owned),
                ..EnvironmentState::default()
            };
        let environments = [
            env("dev", Some("shop-1.4.2"), Phase::Healthy, None),
            env(
                "staging",
                Some("shop-1.4.1"),
                Phase::Progressing,
                Some("shop-1.4.2"),
            ),
            env(
                "prod",
                Some("shop-1.4.1"),
                Phase::AwaitingApproval,
                Some("shop-1.4.2"),
            ),
            env("dr", None, Phase::Pending, None),
        ];
        assert_eq!(
            summary("shop", &environments).as_deref(),
            Some(
                "dev=1.4.2 Healthy, staging=1.4.1 Progressing, prod=1.4.1 AwaitingApproval(1.4.2), dr=Pending"
            )
        );
    }

    #[test]
    fn a_missing_environment_stalls_the_application_and_names_it() {
        let app = app(SHOP);
        let envs = envs(&[("dev", None)]);
        let secrets = git_cred();
        let status = decide(&app, &envs, &secrets);
        let stalled = find(&status.common.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, "EnvironmentNotFound");
        assert!(
            stalled.message.contains("\"prod\" and \"staging\""),
            "{}",
            stalled.message
        );
        assert!(!is_true(&status.common.conditions, READY));
    }

    #[test]
    fn a_missing_secret_stalls_the_application() {
        let app = app(SHOP);
        let envs = three_stages();
        let no_secrets = SecretAccess::Read(BTreeMap::new());
        let decision = status(&baseline(&app, &envs, &no_secrets), &now());
        assert_eq!(
            find(&decision.status.common.conditions, READY)
                .unwrap()
                .reason,
            "SecretNotFound"
        );
        assert_eq!(
            decision.requeue_after,
            Some(secrets::RECHECK),
            "Secrets are not watched, so the blocker is looked at again"
        );
    }

    #[test]
    fn an_environment_that_is_not_ready_is_named() {
        let app = app(SHOP);
        let mut envs = three_stages();
        envs.get_mut("prod").unwrap().readiness =
            EnvironmentReadiness::NotReady("UpstreamCycle".to_owned());
        let secrets = git_cred();
        let status = decide(&app, &envs, &secrets);
        let ready = find(&status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "EnvironmentNotReady");
        assert!(ready.message.contains("UpstreamCycle"));
    }

    #[test]
    fn an_environment_not_checked_yet_is_waited_for_without_stalling() {
        let app = app(SHOP);
        let mut envs = three_stages();
        envs.get_mut("staging").unwrap().readiness = EnvironmentReadiness::Pending;
        let secrets = git_cred();
        let status = decide(&app, &envs, &secrets);
        assert!(find(&status.common.conditions, STALLED).is_none());
        assert_eq!(
            find(&status.common.conditions, RECONCILING).unwrap().reason,
            "WaitingForEnvironments"
        );
    }

    #[test]
    fn a_pin_must_name_a_release_of_this_application() {
        let pinned = |release: &str| {
            SHOP.replace(
                "{name: prod}",
                &format!("{{name: prod, pin: {{release: {release}, reason: CHG-1}}}}"),
            )
        };
        let cases = [
            ("an existing release of shop", "shop-1.4.2", "Ready"),
            (
                "a release that does not exist",
                "shop-9.9.9",
                "PinnedReleaseNotFound",
            ),
            (
                "a release of another application",
                "cart-1.0.0",
                "PinnedReleaseOfAnotherApplication",
            ),
            (
                "a release that fixes no run configuration",
                "shop-1.0.0",
                "PinnedReleaseNotConfigured",
            ),
            (
                "an import of an image outside the Application's repository",
                "shop-6.6.6",
                "PinnedReleaseOutsideRepository",
            ),
        ];
        let releases = BTreeMap::from([
            ("shop-1.4.2".to_owned(), "shop".to_owned()),
            ("shop-1.0.0".to_owned(), "shop".to_owned()),
            ("shop-6.6.6".to_owned(), "shop".to_owned()),
            ("cart-1.0.0".to_owned(), "cart".to_owned()),
        ]);
        let unconfigured = BTreeSet::from(["shop-1.0.0".to_owned()]);
        let outside = BTreeSet::from(["shop-6.6.6".to_owned()]);
        let (envs, secrets) = (three_stages(), git_cred());
        for (name, release, reason) in cases {
            let app = app(&pinned(release));
            let observed = Observed {
                releases: &releases,
                unconfigured: &unconfigured,
                outside_repository: &outside,
                ..baseline(&app, &envs, &secrets)
            };
            let status = status(&observed, &now()).status;
            assert_eq!(
                find(&status.common.conditions, READY).unwrap().reason,
                reason,
                "{name}"
            );
        }
    }

    #[test]
    fn a_run_configuration_the_newest_release_does_not_fix_becomes_a_release() {
        let mut app = app(SHOP);
        app.metadata.uid = Some("0000-1".into());
        let (envs, secrets) = (three_stages(), git_cred());
        let newest: Release = serde_yaml::from_str(&format!(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {{name: shop-1.4.2, namespace: team-a}}
spec:
  application: shop
  version: 1.4.2
  commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
  image: "registry.local/team-a/shop@sha256:{}"
"#,
            "ab".repeat(32)
        ))
        .unwrap();
        let created = |newest: &Release, invalid_run: Option<(String, String)>| {
            let observed = Observed {
                newest: Some(newest),
                invalid_run,
                ..baseline(&app, &envs, &secrets)
            };
            status(&observed, &now())
                .actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::CreateRelease { release, from } => {
                        Some((from, release.spec.version.clone(), release.spec.run.clone()))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // Imported without a run configuration, before Ferry recorded the one it fixes.
        assert_eq!(created(&newest, None), [], "nothing to compare with yet");

        let mut configured = newest.clone();
        configured.spec.run = Some(app.spec.run.clone());
        assert_eq!(created(&configured, None), [], "it runs as configured");

        configured.spec.run.as_mut().unwrap().replicas = 4;
        let made = created(&configured, None);
        assert_eq!(made.len(), 1, "spec.run changed: {made:?}");
        assert_eq!(made[0].0, "shop-1.4.2");
        assert!(made[0].1.starts_with("1.4.2+run."), "{}", made[0].1);
        assert_eq!(made[0].2.as_ref(), Some(&app.spec.run));
        let invalid = Some(("dev".to_owned(), "spec.run.env[0]: bad".to_owned()));
        assert_eq!(
            created(&configured, invalid),
            [],
            "a configuration that cannot become a workload is not released"
        );
    }

    #[test]
    fn recomputing_an_unchanged_status_gives_the_same_status() {
        let mut app = app(SHOP);
        let envs = three_stages();
        let secrets = git_cred();
        let first = status(&baseline(&app, &envs, &secrets), &now()).status;
        app.status = Some(first.clone());
        let later = Time(jiff::Timestamp::from_second(1_800_000_600).unwrap());
        let second = status(&baseline(&app, &envs, &secrets), &later).status;
        assert_eq!(first, second);
    }

    #[test]
    fn a_target_that_stops_consenting_blocks_even_if_the_environment_says_ready() {
        let app = app(SHOP);
        let mut envs = three_stages();
        envs.get_mut("prod").unwrap().target = Some(LiveTarget {
            namespace: "team-a-prod".into(),
            consents: false,
        });
        let status = decide(&app, &envs, &git_cred());
        let stalled = find(&status.common.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, "TargetNamespaceNotConsenting");
        assert!(
            stalled
                .message
                .starts_with("Environment \"prod\" cannot deploy"),
            "{}",
            stalled.message
        );
        envs.get_mut("prod").unwrap().target = Some(LiveTarget {
            namespace: "team-a-prod".into(),
            consents: true,
        });
        let status = decide(&app, &envs, &git_cred());
        assert!(is_true(&status.common.conditions, READY));
    }

    #[test]
    fn deliveries_wait_for_consent_and_a_valid_run_spec_but_not_for_the_repository() {
        let app = app(SHOP);
        let releases = BTreeMap::from([("shop-1.4.2".to_owned(), "shop".to_owned())]);
        let unreadable = SourceHead::Failed {
            reason: REPOSITORY_UNREACHABLE,
            message: "connection refused".to_owned(),
        };
        let delivers = |envs: &BTreeMap<String, EnvironmentFacts>,
                        invalid_run: Option<(String, String)>,
                        source: Option<&SourceHead>| {
            let decision = status(
                &Observed {
                    releases: &releases,
                    source,
                    invalid_run,
                    ..baseline(&app, envs, &git_cred())
                },
                &now(),
            );
            decision
                .actions
                .iter()
                .any(|a| matches!(a, Action::Deliver { .. }))
        };
        let mut envs = three_stages();
        assert!(delivers(&envs, None, None));
        assert!(
            delivers(&envs, None, Some(&unreadable)),
            "a git outage stops builds, not deliveries"
        );
        let invalid = Some(("dev".to_owned(), "port \"admin\" names no port".to_owned()));
        assert!(!delivers(&envs, invalid, None));
        envs.get_mut("prod").unwrap().target = Some(LiveTarget {
            namespace: "team-a-prod".into(),
            consents: false,
        });
        assert!(
            !delivers(&envs, None, None),
            "nothing goes where it may not"
        );
    }

    #[test]
    fn an_environments_readiness_comes_from_its_ready_condition_for_its_generation() {
        let ready = |status: &str, generation: i64| Condition {
            type_: READY.into(),
            status: status.into(),
            reason: "TargetNamespaceNotConsenting".into(),
            message: String::new(),
            observed_generation: Some(generation),
            last_transition_time: now(),
        };
        let cases = [
            (
                "ready for this generation",
                Some(ready("True", 2)),
                true,
                EnvironmentReadiness::Ready,
            ),
            (
                "ready for an older generation",
                Some(ready("True", 1)),
                true,
                EnvironmentReadiness::Pending,
            ),
            (
                "not ready, with its reason",
                Some(ready("False", 2)),
                true,
                EnvironmentReadiness::NotReady("TargetNamespaceNotConsenting".into()),
            ),
            ("not checked yet", None, true, EnvironmentReadiness::Pending),
            (
                "unreadable",
                Some(ready("True", 2)),
                false,
                EnvironmentReadiness::NotReady("InvalidObject".into()),
            ),
        ];
        for (name, condition, readable, want) in cases {
            assert_eq!(
                environment_readiness(condition.as_ref(), Some(2), readable),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn credentials_over_plain_http_stall_the_application_and_build_nothing_unless_insecure() {
        let mut plain = app(SHOP);
        plain.spec.source.repository.url = "http://git.team-a.svc/shop.git".into();
        let envs = three_stages();
        let secrets = git_cred();
        let head = SourceHead::Commit {
            commit: "9fceb02d0ae598e95dc970b74767f19372d61af8".into(),
            tags: vec![],
        };
        let decide = |app: &Application| {
            status(
                &Observed {
                    source: Some(&head),
                    ..baseline(app, &envs, &secrets)
                },
                &now(),
            )
        };
        let refused = decide(&plain);
        let ready = find(&refused.status.common.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "CredentialsInClear")
        );
        assert!(
            ready.message.contains("http://git.team-a.svc/shop.git")
                && ready.message.contains("spec.source.insecure: true"),
            "{}",
            ready.message
        );
        assert!(is_true(&refused.status.common.conditions, STALLED));
        assert!(
            !refused
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateBuildJob { .. })),
            "{:?}",
            refused.actions
        );
        assert_eq!(
            refused.requeue_after, None,
            "a spec change fixes it, not time"
        );

        plain.spec.source.repository.insecure = true;
        let consented = decide(&plain);
        assert!(is_true(&consented.status.common.conditions, READY));
        assert!(
            consented
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateBuildJob { .. }))
        );
    }

    #[test]
    fn the_branch_head_is_built_once_and_an_unreadable_branch_says_why() {
        let mut shop = app(SHOP);
        shop.spec.environments.clear();
        const HEAD: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
        let head = SourceHead::Commit {
            commit: HEAD.into(),
            tags: vec![],
        };
        let decide = |shop: &Application,
                      source: &SourceHead,
                      builds: &BTreeSet<String>,
                      released: &BTreeSet<String>| {
            status(
                &Observed {
                    source: Some(source),
                    builds,
                    released,
                    ..baseline(shop, &BTreeMap::new(), &git_cred())
                },
                &now(),
            )
        };
        // Only the builds matter here (delivery is tested on its own).
        let decide = |shop: &Application,
                      source: &SourceHead,
                      builds: &BTreeSet<String>,
                      released: &BTreeSet<String>| {
            let mut decision = decide(shop, source, builds, released);
            decision
                .actions
                .retain(|a| matches!(a, Action::CreateBuildJob { .. }));
            decision
        };
        let none = BTreeSet::new();
        let first = decide(&shop, &head, &none, &none);
        assert_eq!(
            first.actions,
            [Action::CreateBuildJob {
                commit: HEAD.into()
            }]
        );
        assert_eq!(first.status.latest_commit.as_deref(), Some(HEAD));
        assert_eq!(first.status.latest_build.as_deref(), Some("shop-9fceb02"));

        // The BuildJob exists, or was pruned but is remembered, or its commit was released.
        let built = BTreeSet::from(["shop-9fceb02".to_owned()]);
        assert!(decide(&shop, &head, &built, &none).actions.is_empty());
        let mut remembered = shop.clone();
        remembered.status = Some(first.status.clone());
        assert!(decide(&remembered, &head, &none, &none).actions.is_empty());
        let released = BTreeSet::from([HEAD.to_owned()]);
        assert!(decide(&shop, &head, &none, &released).actions.is_empty());

        // The credentials Secret replaced by one of another type: nothing is built.
        let opaque = SecretAccess::Read(BTreeMap::from([(
            "git-cred".to_owned(),
            secrets::SecretShape::new(secrets::OPAQUE, ["username", "password"]),
        )]));
        let blocked = status(
            &Observed {
                source: Some(&head),
                ..baseline(&shop, &BTreeMap::new(), &opaque)
            },
            &now(),
        );
        assert!(
            !blocked
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateBuildJob { .. })),
            "{:?}",
            blocked.actions
        );

        let unreachable = SourceHead::Failed {
            reason: REPOSITORY_UNREACHABLE,
            message: "repository http://git.local/shop.git is unreachable: connection refused"
                .into(),
        };
        let failed = decide(&shop, &unreachable, &none, &none);
        assert!(failed.actions.is_empty());
        let ready = find(&failed.status.common.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "RepositoryUnreachable")
        );
        assert!(
            ready.message.contains("connection refused"),
            "{}",
            ready.message
        );

        // A look-up still under way decides from the branch as stored: the same failure,
        // the same status (no write), nothing built; a stored head is not assumed.
        let mut stored = shop.clone();
        stored.status = Some(failed.status.clone());
        let as_stored = source_as_stored(&stored).expect("the stored failure");
        assert_eq!(as_stored, unreachable);
        let again = decide(&stored, &as_stored, &none, &none);
        assert_eq!(again.status, failed.status);
        assert!(again.actions.is_empty());
        assert_eq!(source_as_stored(&remembered), None, "a head is not assumed");
        assert_eq!(source_as_stored(&shop), None, "nothing stored");
        let mut changed = stored.clone();
        changed.metadata.generation = changed.metadata.generation.map(|g| g + 1);
        assert_eq!(
            source_as_stored(&changed),
            None,
            "a failure of the source before the spec changed"
        );
    }
}
