//! A Release is a record; it is ready once it belongs to an Application that exists and, when
//! Ferry did not build its image, names an image in that Application's repository.

use super::build::naming::short_commit;
use super::{Blocker, Decision, Readiness, readiness, whole_seconds};
use crate::api::CommonStatus;
use crate::api::application::{EnvironmentState, HistoryKind, Outcome, Phase, RunSpec};
use crate::api::reasons::{
    APPLICATION_NOT_FOUND, IMAGE_OUTSIDE_REPOSITORY, RECORDED, VERIFICATION_FAILED,
};
use crate::api::release::{ReleaseEnvironment, ReleaseState, ReleaseVerification, content_digest};
use crate::api::{Release, ReleaseSpec, ReleaseStatus, Time};

/// What the reconciler observed for one Release.
pub struct Observed<'a> {
    pub release: &'a Release,
    pub namespace: &'a str,
    pub application_exists: bool,
    /// Its Application's run configuration now, when Ferry can read the Application: what a
    /// Release without `spec.run` fixes once recorded (`status.run`).
    pub application_run: Option<&'a RunSpec>,
    /// Its Application's `spec.image.repository`, when Ferry can read the Application.
    pub application_repository: Option<&'a str>,
    /// The environments of its Application, as its status tells them.
    pub environments: &'a [EnvironmentState],
}

/// Whether `release` names an image outside `repository` (an Application's
/// `spec.image.repository`) although Ferry did not build it: a Release without `spec.buildJob`
/// (an import, or Ferry's reconfiguration of one, which keeps its image) must name
/// `<repository>@sha256:<64 hex digits>`. Such a Release is never promoted or rolled out: an
/// importer may bring in an image the pipeline did not build, but only into the repository the
/// Application says its images come from (the `ferry-import-image` admission policy checks the
/// same at creation; this catches an import made before its Application existed, or one whose
/// Application's repository changed since). Releases of Ferry's builds are not judged here:
/// their image is where their BuildJob pushed it.
pub fn outside_repository(release: &ReleaseSpec, repository: &str) -> bool {
    if release.build_job.is_some() {
        return false;
    }
    let digest = release
        .image
        .strip_prefix(repository)
        .and_then(|rest| rest.strip_prefix("@sha256:"));
    !digest.is_some_and(|d| {
        d.len() == 64
            && d.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What became of the release in one environment, from the Application's account of it:
/// rolling out, serving, waiting for approval, rejected (failed there), or replaced after it
/// served or waited. `None` when it never reached the environment.
fn state_in(
    release: &str,
    env: &EnvironmentState,
    before: Option<ReleaseState>,
) -> Option<(ReleaseState, Option<String>)> {
    let rollout = env.rollout.as_ref();
    let rolling = rollout.is_some_and(|r| {
        r.release == release && r.verdict.is_none() && r.kind != HistoryKind::Rollback
    });
    if rolling {
        return Some((ReleaseState::Deploying, rollout.map(|r| r.reason.clone())));
    }
    if env.rejected.iter().any(|r| r == release) {
        let why = env
            .history
            .iter()
            .find(|h| h.release == release && h.outcome == Outcome::Failed)
            .map(|h| h.reason.clone());
        return Some((ReleaseState::Rejected, why));
    }
    if env.current.as_deref() == Some(release) {
        return Some((ReleaseState::Deployed, None));
    }
    if env.candidate.as_deref() == Some(release) && env.phase == Some(Phase::AwaitingApproval) {
        return Some((
            ReleaseState::AwaitingApproval,
            Some(format!(
                "waits for approval: pin it in the Application's entry for {}",
                env.name
            )),
        ));
    }
    // Recorded so that the Release's own status says it is wanted here: deleting it is
    // refused while it is (the `ferry-releases` admission policy reads this state).
    if env.candidate.as_deref() == Some(release) {
        return Some((
            ReleaseState::Candidate,
            Some(format!("the next release to come to {}", env.name)),
        ));
    }
    match before {
        Some(ReleaseState::Deployed | ReleaseState::Deploying) => {
            let by = env.current.as_ref().map(|c| format!("replaced by {c}"));
            Some((ReleaseState::Superseded, by))
        }
        Some(waiting @ (ReleaseState::AwaitingApproval | ReleaseState::Candidate)) => {
            let before = if waiting == ReleaseState::AwaitingApproval {
                "before it was approved"
            } else {
                "before it was rolled out here"
            };
            let by = env
                .candidate
                .as_ref()
                .or(env.current.as_ref())
                .map(|c| format!("superseded by {c} {before}"));
            Some((ReleaseState::Superseded, by))
        }
        Some(kept) => Some((kept, None)),
        None => None,
    }
}

/// The verdict and the verification of the release's last rollout in `env`: the rollout the
/// environment remembers, if it is of this release, or the failed verdict of this release that
/// a rollback answers.
fn judged_in(
    release: &str,
    env: &EnvironmentState,
) -> Option<(Option<String>, Option<ReleaseVerification>)> {
    let rollout = env.rollout.as_ref()?;
    if rollout.kind == HistoryKind::Rollback {
        let cause = rollout
            .cause
            .as_ref()
            .filter(|_| rollout.from.as_deref() == Some(release))?;
        let verification =
            (cause.reason == VERIFICATION_FAILED.name).then(|| ReleaseVerification {
                passed: Some(false),
                message: Some(cause.message.clone()),
                log: cause.log.clone(),
            });
        return Some((Some(cause.reason.clone()), verification));
    }
    if rollout.release != release {
        return None;
    }
    let verdict = rollout.verdict.as_ref().map(|v| v.reason.clone());
    let verification = rollout.verification.as_ref().map(|v| ReleaseVerification {
        passed: v.passed,
        message: v.message.clone(),
        log: v.log.clone(),
    });
    Some((verdict, verification))
}

/// The release's record per environment; a state that did not change keeps its time and
/// reason.
fn environments(observed: &Observed, now: &Time) -> Vec<ReleaseEnvironment> {
    let name = observed
        .release
        .metadata
        .name
        .as_deref()
        .unwrap_or_default();
    let before = observed
        .release
        .status
        .as_ref()
        .map(|s| s.environments.clone())
        .unwrap_or_default();
    let mut out: Vec<ReleaseEnvironment> = Vec::new();
    for env in observed.environments {
        let old = before.iter().find(|e| e.name == env.name);
        let Some((state, reason)) = state_in(name, env, old.map(|o| o.state)) else {
            continue;
        };
        let mut entry = match old {
            Some(old) if old.state == state => old.clone(),
            _ => ReleaseEnvironment {
                name: env.name.clone(),
                state,
                since: now.clone(),
                reason,
                verdict: old.and_then(|o| o.verdict.clone()),
                verification: old.and_then(|o| o.verification.clone()),
            },
        };
        if let Some((verdict, verification)) = judged_in(name, env) {
            entry.verdict = verdict.or(entry.verdict);
            entry.verification = verification.or(entry.verification);
        }
        out.push(entry);
    }
    // An environment its Application no longer lists keeps the last word on it, except that
    // the release no longer runs or waits there.
    for old in before {
        if !out.iter().any(|e| e.name == old.name) {
            let why = format!(
                "{} is no longer an environment of {}",
                old.name, observed.release.spec.application
            );
            out.push(gone(old, why, now));
        }
    }
    out
}

/// Whether the release runs, rolls out or waits in an environment in this state: a Release
/// in such a state somewhere may not be deleted (the `ferry-releases` admission policy).
fn is_live(state: ReleaseState) -> bool {
    matches!(
        state,
        ReleaseState::Deploying
            | ReleaseState::Deployed
            | ReleaseState::AwaitingApproval
            | ReleaseState::Candidate
    )
}

/// `entry` once the release can no longer run or wait in its environment (the environment
/// left the Application, or the Application is gone): a live state becomes `Superseded`,
/// saying why; a rejection or a supersession stays as it was.
fn gone(entry: ReleaseEnvironment, why: String, now: &Time) -> ReleaseEnvironment {
    if !is_live(entry.state) {
        return entry;
    }
    ReleaseEnvironment {
        state: ReleaseState::Superseded,
        since: now.clone(),
        reason: Some(why),
        ..entry
    }
}

/// The Release's new status.
pub fn status(observed: &Observed, now: &Time) -> Decision<ReleaseStatus> {
    let release = observed.release;
    let spec = &release.spec;
    let generation = release.metadata.generation;
    let current = release.status.clone().unwrap_or_default();
    let outside = observed
        .application_repository
        .filter(|repository| outside_repository(spec, repository));
    let state = if let (true, Some(repository)) = (observed.application_exists, outside) {
        Readiness::Blocked(Blocker::new(
            IMAGE_OUTSIDE_REPOSITORY,
            format!(
                "{} is not in {repository}, the spec.image.repository of Application \"{}\", and Ferry did not build it (no spec.buildJob): this release is never promoted or rolled out; import the image into {repository} as a new Release",
                spec.image, spec.application
            ),
        ))
    } else if observed.application_exists {
        Readiness::Ready {
            reason: RECORDED,
            message: format!(
                "version {} of {} at commit {}",
                spec.version,
                spec.application,
                short_commit(&spec.commit)
            ),
        }
    } else {
        Readiness::Blocked(Blocker::new(
            APPLICATION_NOT_FOUND,
            format!(
                "Application \"{}\" does not exist in namespace \"{}\"; this release cannot be deployed until it does",
                spec.application, observed.namespace
            ),
        ))
    };
    let now = whole_seconds(now);
    let environments = if observed.application_exists {
        environments(observed, &now)
    } else {
        // Its workloads went with the Application (its finalizer): the release runs nowhere.
        let why = format!("its Application {} is gone", spec.application);
        current
            .environments
            .iter()
            .map(|e| gone(e.clone(), why.clone(), &now))
            .collect()
    };
    let reached: Vec<String> = environments
        .iter()
        .map(|e| format!("{}={:?}", e.name, e.state))
        .collect();
    let run = match &spec.run {
        Some(_) => None,
        None => current.run.or_else(|| observed.application_run.cloned()),
    };
    Decision::status(ReleaseStatus {
        common: CommonStatus::decided(
            &current.common.conditions,
            &readiness(&state),
            generation,
            &now,
        ),
        summary: (!reached.is_empty()).then(|| reached.join(" ")),
        environments,
        // Recorded once, for an import without spec.run: what it runs with from now on.
        run: run.clone(),
        digest: run
            .as_ref()
            .or(spec.run.as_ref())
            .and_then(|run| content_digest(&spec.image, &spec.commit, run)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STALLED, find, is_true};

    fn release() -> Release {
        serde_yaml::from_str(
            r#"
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {name: shop-1.4.2, namespace: team-a, generation: 1}
spec:
  application: shop
  version: 1.4.2
  commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
  image: registry.local/team-a/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000
"#,
        )
        .unwrap()
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    /// The status of `release` in team-a, its Application present, given the Application's
    /// `environments`.
    fn decide(release: &Release, environments: &[EnvironmentState]) -> ReleaseStatus {
        status(
            &Observed {
                release,
                namespace: "team-a",
                application_exists: true,
                application_run: None,
                application_repository: Some("registry.local/team-a/shop"),
                environments,
            },
            &now(),
        )
        .status
    }

    #[test]
    fn an_import_without_a_run_configuration_fixes_the_application_s_once() {
        let at_import = RunSpec {
            replicas: 2,
            ..RunSpec::default()
        };
        let later = RunSpec::default();
        let decide = |release: &Release, run: Option<&RunSpec>| {
            status(
                &Observed {
                    release,
                    namespace: "team-a",
                    application_exists: true,
                    application_run: run,
                    application_repository: None,
                    environments: &[],
                },
                &now(),
            )
            .status
        };
        let mut imported = release();
        let first = decide(&imported, Some(&at_import));
        assert_eq!(first.run.as_ref(), Some(&at_import));
        imported.status = Some(first);
        assert_eq!(imported.fixed_run(), Some(&at_import));
        // The Application's spec.run changed since: what the Release fixes does not.
        let again = decide(&imported, Some(&later));
        assert_eq!(again.run.as_ref(), Some(&at_import));
        // A Release that fixes its own records nothing.
        let mut built = release();
        built.spec.run = Some(later.clone());
        assert_eq!(decide(&built, Some(&at_import)).run, None);
        assert_eq!(built.fixed_run(), Some(&later));
    }

    #[test]
    fn the_content_digest_covers_image_commit_and_run_configuration() {
        let mut built = release();
        assert_eq!(
            decide(&built, &[]).digest,
            None,
            "no run configuration: no digest"
        );
        built.spec.run = Some(RunSpec::default());
        let digest = decide(&built, &[]).digest.expect("a digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        assert_eq!(Some(&digest), built.content_digest().as_ref());
        // The same content, the same digest; any of the three changed, another one.
        assert_eq!(decide(&built.clone(), &[]).digest.as_ref(), Some(&digest));
        let mut other = built.clone();
        other.spec.image = format!("{}0", other.spec.image);
        let mut commit = built.clone();
        commit.spec.commit = "1".repeat(40);
        let mut run = built.clone();
        run.spec.run = Some(RunSpec {
            replicas: 3,
            ..RunSpec::default()
        });
        for changed in [other, commit, run] {
            assert_ne!(decide(&changed, &[]).digest.as_ref(), Some(&digest));
        }
        // An import fixes its run configuration in status.run: the digest covers that one.
        let imported = release();
        let status = status(
            &Observed {
                release: &imported,
                namespace: "team-a",
                application_exists: true,
                application_run: Some(&RunSpec::default()),
                application_repository: None,
                environments: &[],
            },
            &now(),
        )
        .status;
        assert_eq!(status.digest.as_ref(), Some(&digest));
    }

    #[test]
    fn a_release_ferry_did_not_build_is_ready_only_with_an_image_in_the_application_s_repository() {
        let digest = "ab".repeat(32);
        let cases: [(&str, String, Option<&str>, &str); 8] = [
            (
                "an import in the repository",
                format!("registry.local/team-a/shop@sha256:{digest}"),
                None,
                "Recorded",
            ),
            (
                "an import from another repository",
                format!("registry.local/ferry-e2e/testserver@sha256:{digest}"),
                None,
                "ImageOutsideRepository",
            ),
            (
                "an import from a repository whose name starts with the Application's",
                format!("registry.local/team-a/shop-tools@sha256:{digest}"),
                None,
                "ImageOutsideRepository",
            ),
            (
                "an import from a repository below the Application's",
                format!("registry.local/team-a/shop/debug@sha256:{digest}"),
                None,
                "ImageOutsideRepository",
            ),
            (
                "an import from the same path on another registry port",
                format!("registry.local:5000/team-a/shop@sha256:{digest}"),
                None,
                "ImageOutsideRepository",
            ),
            (
                "an import whose digest is cut short",
                "registry.local/team-a/shop@sha256:abab".to_owned(),
                None,
                "ImageOutsideRepository",
            ),
            (
                "a build of Ferry, pushed where its BuildJob said",
                format!("registry.local/team-a/old-shop@sha256:{digest}"),
                Some("shop-9fceb02"),
                "Recorded",
            ),
            (
                "a build of Ferry in the repository",
                format!("registry.local/team-a/shop@sha256:{digest}"),
                Some("shop-9fceb02"),
                "Recorded",
            ),
        ];
        for (case, image, build_job, reason) in cases {
            let mut release = release();
            release.spec.image = image.clone();
            release.spec.build_job = build_job.map(str::to_owned);
            let status = decide(&release, &[]);
            let ready = find(&status.common.conditions, READY).unwrap();
            assert_eq!(ready.reason, reason, "{case}");
            if reason == "ImageOutsideRepository" {
                assert!(!is_true(&status.common.conditions, READY), "{case}");
                assert!(is_true(&status.common.conditions, STALLED), "{case}");
                assert!(
                    ready.message.contains(&image)
                        && ready.message.contains("registry.local/team-a/shop,"),
                    "{case}: {}",
                    ready.message
                );
            }
        }
        // Without its Application, nothing to compare with: ApplicationNotFound says why.
        let mut foreign = release();
        foreign.spec.image = format!("registry.local/elsewhere/shop@sha256:{digest}");
        let status = without_its_application(&foreign);
        let ready = find(&status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "ApplicationNotFound");
    }

    /// Environments record digests and compare them on every pass, so a digest must never
    /// change for the same Release: a new field of `RunSpec` serialized by default (or a change
    /// in how the digest is computed) would make every bound Release `ReleaseChanged` at once
    /// after an upgrade. This pins one digest; when it fails, keep old digests stable (skip the
    /// new field when it has its default) rather than updating the value.
    #[test]
    fn the_content_digest_of_a_release_never_changes() {
        let mut built = release();
        built.spec.run = Some(
            serde_yaml::from_str(
                "{replicas: 2, ports: [{name: http, port: 8080}], env: [{name: MODE, value: live}], \
                 readinessProbe: {httpGet: {path: /healthz, port: http}}}",
            )
            .unwrap(),
        );
        assert_eq!(
            built.content_digest().as_deref(),
            Some("sha256:85c1367bffc577a4240962deb6f67a000cb2629e7b1adefbdf9bc99b190b7996"),
            "{:?}",
            built.content_digest()
        );
    }

    #[test]
    fn a_release_of_an_existing_application_is_recorded() {
        let status = decide(&release(), &[]);
        let ready = find(&status.common.conditions, READY).unwrap();
        assert_eq!(ready.reason, "Recorded");
        assert!(ready.message.contains("9fceb02"));
    }

    #[test]
    fn where_a_release_runs_follows_its_application_and_a_rejection_is_kept() {
        use crate::api::application::{HistoryEntry, HistoryKind, Outcome};
        let mut release = release();
        let dev = |current: &str, rejected: &[&str]| EnvironmentState {
            name: "dev".to_owned(),
            current: Some(current.to_owned()),
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
            history: vec![HistoryEntry {
                release: "shop-1.4.2".to_owned(),
                from: Some("shop-1.4.1".to_owned()),
                time: now(),
                kind: HistoryKind::Rollout,
                outcome: Outcome::Failed,
                reason: "newest release; failed: pod shop-dev-x keeps crashing".to_owned(),
                actor: None,
                pin_reason: None,
                record: None,
            }],
            ..EnvironmentState::default()
        };
        let serving = decide(&release, &[dev("shop-1.4.2", &[])]);
        assert_eq!(serving.environments[0].state, ReleaseState::Deployed);
        assert_eq!(serving.summary.as_deref(), Some("dev=Deployed"));

        // Replaced by a newer release: superseded, with what replaced it.
        release.status = Some(serving);
        let replaced = decide(&release, &[dev("shop-1.5.0", &[])]);
        assert_eq!(replaced.environments[0].state, ReleaseState::Superseded);
        assert_eq!(
            replaced.environments[0].reason.as_deref(),
            Some("replaced by shop-1.5.0")
        );

        // Rolled back: rejected, with the failing signal, and it stays so.
        let rejected = decide(&release, &[dev("shop-1.4.1", &["shop-1.4.2"])]);
        assert_eq!(rejected.environments[0].state, ReleaseState::Rejected);
        assert!(
            rejected.environments[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("keeps crashing"))
        );
        assert_eq!(rejected.summary.as_deref(), Some("dev=Rejected"));
        release.status = Some(rejected.clone());
        let later = decide(&release, &[]);
        assert_eq!(later.environments, rejected.environments);
    }

    #[test]
    fn a_failed_verification_answered_by_a_rollback_is_the_releases_with_its_log() {
        use crate::api::application::{Rollout, Verdict};
        use crate::api::environment::StrategyType;
        let staging = EnvironmentState {
            name: "staging".to_owned(),
            current: Some("shop-1.4.1".to_owned()),
            rejected: vec!["shop-1.4.2".to_owned()],
            rollout: Some(Rollout {
                release: "shop-1.4.1".to_owned(),
                from: Some("shop-1.4.2".to_owned()),
                kind: HistoryKind::Rollback,
                strategy: StrategyType::BlueGreen,
                slot: None,
                reason: "shop-1.4.2 failed".to_owned(),
                started: now(),
                ready: None,
                cause: Some(Verdict {
                    healthy: false,
                    reason: "VerificationFailed".to_owned(),
                    time: now(),
                    signal_time: None,
                    message: "verification failed: test pod exited 1".to_owned(),
                    log: Some("wget: server returned error: HTTP/1.1 404".to_owned()),
                }),
                verdict: None,
                verification: None,
            }),
            ..EnvironmentState::default()
        };
        let status = decide(&release(), &[staging]);
        let entry = &status.environments[0];
        assert_eq!(entry.state, ReleaseState::Rejected);
        assert_eq!(entry.verdict.as_deref(), Some("VerificationFailed"));
        let verification = entry.verification.clone().unwrap();
        assert_eq!(verification.passed, Some(false));
        assert!(verification.log.unwrap().contains("404"));
    }

    /// Where the release stands in an environment, from the Application's account of it and
    /// what the release recorded before: the live states (those that refuse its deletion)
    /// include being the next in line, and end when the environment or the Application goes.
    #[test]
    fn the_state_in_each_environment_says_whether_the_release_runs_or_waits_there() {
        use crate::api::application::Phase;
        let env = |phase: Phase, current: &str, candidate: Option<&str>| EnvironmentState {
            name: "prod".to_owned(),
            phase: Some(phase),
            current: Some(current.to_owned()),
            candidate: candidate.map(str::to_owned),
            ..EnvironmentState::default()
        };
        let me = "shop-1.4.2";
        let cases: [(
            &str,
            Option<EnvironmentState>,
            Option<ReleaseState>,
            ReleaseState,
        ); 8] = [
            (
                "serving",
                Some(env(Phase::Healthy, me, None)),
                None,
                ReleaseState::Deployed,
            ),
            (
                "the candidate of a Manual environment",
                Some(env(Phase::AwaitingApproval, "shop-1.4.1", Some(me))),
                None,
                ReleaseState::AwaitingApproval,
            ),
            (
                "next in line behind a pin",
                Some(env(Phase::Healthy, "shop-1.4.1", Some(me))),
                None,
                ReleaseState::Candidate,
            ),
            (
                "a candidate replaced by a newer one",
                Some(env(Phase::Healthy, "shop-1.4.1", Some("shop-1.5.0"))),
                Some(ReleaseState::Candidate),
                ReleaseState::Superseded,
            ),
            (
                "a candidate that became current",
                Some(env(Phase::Healthy, me, None)),
                Some(ReleaseState::Candidate),
                ReleaseState::Deployed,
            ),
            (
                "serving in an environment the Application no longer lists",
                None,
                Some(ReleaseState::Deployed),
                ReleaseState::Superseded,
            ),
            (
                "next in line in an environment the Application no longer lists",
                None,
                Some(ReleaseState::Candidate),
                ReleaseState::Superseded,
            ),
            (
                "rejected in an environment the Application no longer lists",
                None,
                Some(ReleaseState::Rejected),
                ReleaseState::Rejected,
            ),
        ];
        for (case, environment, before, expected) in cases {
            let mut release = release();
            release.status = before.map(|state| ReleaseStatus {
                environments: vec![ReleaseEnvironment {
                    name: "prod".to_owned(),
                    state,
                    since: now(),
                    reason: None,
                    verdict: None,
                    verification: None,
                }],
                ..ReleaseStatus::default()
            });
            let environments: Vec<EnvironmentState> = environment.into_iter().collect();
            let status = decide(&release, &environments);
            let states: Vec<ReleaseState> = status.environments.iter().map(|e| e.state).collect();
            assert_eq!(states, [expected], "{case}");
            let live = matches!(
                expected,
                ReleaseState::Deploying
                    | ReleaseState::Deployed
                    | ReleaseState::AwaitingApproval
                    | ReleaseState::Candidate
            );
            assert_eq!(is_live(expected), live, "{case}");
        }
    }

    #[test]
    fn a_release_whose_application_is_gone_runs_and_waits_nowhere() {
        let mut release = release();
        let entry = |name: &str, state| ReleaseEnvironment {
            name: name.to_owned(),
            state,
            since: now(),
            reason: None,
            verdict: None,
            verification: None,
        };
        release.status = Some(ReleaseStatus {
            environments: vec![
                entry("dev", ReleaseState::Rejected),
                entry("prod", ReleaseState::Deployed),
            ],
            ..ReleaseStatus::default()
        });
        let status = without_its_application(&release);
        let states: Vec<_> = status
            .environments
            .iter()
            .map(|e| (e.name.as_str(), e.state, e.reason.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                ("dev", ReleaseState::Rejected, None),
                (
                    "prod",
                    ReleaseState::Superseded,
                    Some("its Application shop is gone")
                ),
            ]
        );
    }

    /// The status decided for `release` once its Application is gone.
    fn without_its_application(release: &Release) -> ReleaseStatus {
        status(
            &Observed {
                release,
                namespace: "team-a",
                application_exists: false,
                application_run: None,
                application_repository: None,
                environments: &[],
            },
            &now(),
        )
        .status
    }

    #[test]
    fn a_release_without_its_application_is_stalled() {
        let release = release();
        let status = without_its_application(&release);
        assert!(!is_true(&status.common.conditions, READY));
        assert_eq!(
            find(&status.common.conditions, STALLED).unwrap().reason,
            "ApplicationNotFound"
        );
    }
}
