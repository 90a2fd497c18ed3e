//! Every reason Ferry writes into a condition or an Event, in one list.
//!
//! A reason is a CamelCase word a person can search for. Each has a doc comment (rendered into
//! the reason table of `docs/api.md`), the kinds that carry it, and a severity that decides the
//! type of the Event announcing it: `Warning` when a person must act or something failed,
//! `Normal` otherwise. Decisions name reasons through these constants only, so a reason is
//! defined once and the table cannot miss one.

use std::fmt;

/// Whether an Event about a reason is a `Normal` or a `Warning` Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Progress or success; nobody needs to act.
    Normal,
    /// A person must act, or something failed.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One reason: its name, its severity, the kinds that carry it and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason {
    pub name: &'static str,
    pub severity: Severity,
    pub kinds: &'static [&'static str],
    /// What it means and what to do, from the constant's doc comment.
    pub doc: &'static str,
}

impl Reason {
    /// The reason with this name, if Ferry defines one.
    pub fn named(name: &str) -> Option<Reason> {
        ALL.iter().copied().find(|r| r.name == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.name
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.name
    }
}

/// Defines each reason as a constant and lists them all in [`ALL`].
macro_rules! reasons {
    ($(
        $(#[doc = $doc:literal])+
        $constant:ident = $name:literal, $severity:ident, [$($kind:literal),+];
    )+) => {
        $(
            $(#[doc = $doc])+
            pub const $constant: Reason = Reason {
                name: $name,
                severity: Severity::$severity,
                kinds: &[$($kind),+],
                doc: concat!($($doc, "\n"),+),
            };
        )+
        /// Every reason, in the order of the reference table.
        pub const ALL: &[Reason] = &[$($constant),+];
    };
}

reasons! {
    /// Everything the object needs exists and it does its work.
    READY = "Ready", Normal, ["Application", "Environment"];
    /// Ferry has not checked some of the Application's Environments yet; this passes by itself.
    WAITING_FOR_ENVIRONMENTS = "WaitingForEnvironments", Normal, ["Application"];
    /// An Environment named in `spec.environments` does not exist in the namespace: create it
    /// or remove the entry.
    ENVIRONMENT_NOT_FOUND = "EnvironmentNotFound", Warning, ["Application"];
    /// An Environment the Application goes through is not ready; its own status says why.
    ENVIRONMENT_NOT_READY = "EnvironmentNotReady", Warning, ["Application"];
    /// An environment promotes from an upstream that `spec.environments` does not list, so no
    /// release would reach it.
    UPSTREAM_NOT_LISTED = "UpstreamNotListed", Warning, ["Application"];
    /// Environments promote from each other in a cycle, so no release could enter it: make one
    /// of them a first stage.
    UPSTREAM_CYCLE = "UpstreamCycle", Warning, ["Application", "Environment"];
    /// The Environment's `spec.upstream` names an Environment that does not exist.
    UPSTREAM_NOT_FOUND = "UpstreamNotFound", Warning, ["Environment"];
    /// The target namespace does not exist or does not allow deployments from the
    /// Environment's namespace (the annotation `ferry.dev/allow-deploy-from`). One reason for
    /// both, so that a tenant cannot probe which namespaces exist.
    TARGET_NAMESPACE_NOT_CONSENTING = "TargetNamespaceNotConsenting", Warning, ["Environment", "Application"];
    /// The target namespace has not granted Ferry's ServiceAccount the right to write
    /// Deployments and Services there (a RoleBinding to the `ferry-deployer` ClusterRole);
    /// the message gives the command. Looked at again every 30 s.
    DEPLOYMENT_NOT_GRANTED = "DeploymentNotGranted", Warning, ["Environment", "Application"];
    /// A Deployment or Service of the Application that Ferry may not delete (its namespace has
    /// not granted Ferry, or took the grant back) is left in place; the message names it and
    /// the command that grants Ferry the right.
    WORKLOAD_LEFT_IN_PLACE = "WorkloadLeftInPlace", Warning, ["Application"];
    /// A Secret named in the spec does not exist in the namespace.
    SECRET_NOT_FOUND = "SecretNotFound", Warning, ["Application", "BuildJob"];
    /// A Secret named in the spec lacks the keys its use needs, or is not of the type it needs
    /// (git credentials: `kubernetes.io/basic-auth` or `kubernetes.io/ssh-auth`); only key
    /// names and the type are read.
    SECRET_INVALID = "SecretInvalid", Warning, ["Application", "BuildJob"];
    /// Git credentials (`spec.source.credentialsSecret`, or a user in the URL) would go over a
    /// plain `http://` or `git://` URL, unencrypted: use `https://`, or set
    /// `spec.source.insecure: true` for a git server on a private network. Nothing is fetched.
    CREDENTIALS_IN_CLEAR = "CredentialsInClear", Warning, ["Application", "BuildJob"];
    /// Ferry may not read Secrets in this namespace: an administrator grants it with a
    /// RoleBinding to the `ferry-tenant` ClusterRole (see the README, "Install").
    SECRETS_NOT_GRANTED = "SecretsNotGranted", Warning, ["Application", "BuildJob"];
    /// An environment is pinned to a Release that does not exist.
    PINNED_RELEASE_NOT_FOUND = "PinnedReleaseNotFound", Warning, ["Application"];
    /// An environment is pinned to a Release of another Application.
    PINNED_RELEASE_OF_ANOTHER_APPLICATION = "PinnedReleaseOfAnotherApplication", Warning, ["Application"];
    /// An environment is pinned to a Release that fixes no run configuration yet: imported
    /// without `spec.run`, and Ferry has not recorded the Application's in its `status.run`
    /// (it does as soon as it sees the Release and its Application).
    PINNED_RELEASE_NOT_CONFIGURED = "PinnedReleaseNotConfigured", Warning, ["Application"];
    /// An environment is pinned to a Release whose image is not in the Application's
    /// `spec.image.repository` and that Ferry did not build (an import, or Ferry's
    /// reconfiguration of one): it is never rolled out. Pin another release, or import the
    /// image into the Application's repository.
    PINNED_RELEASE_OUTSIDE_REPOSITORY = "PinnedReleaseOutsideRepository", Warning, ["Application"];
    /// The Application's `spec.run` changed: Ferry made a Release of the newest image with
    /// the new run configuration, promoted through the environments like a new commit.
    RECONFIGURED = "Reconfigured", Normal, ["Application"];
    /// A Release an environment runs, ran or rolls out is not the one it rolled out: its UID
    /// or content digest differs (deleted and made again under the same name). It is never
    /// rolled out; what runs stays as it is until another release is rolled out there.
    RELEASE_CHANGED = "ReleaseChanged", Warning, ["Application"];
    /// The git server of `spec.source.url` could not be reached (DNS, connection, timeout);
    /// Ferry keeps trying with backoff.
    REPOSITORY_UNREACHABLE = "RepositoryUnreachable", Warning, ["Application"];
    /// A URL the controller was to follow (`spec.source.url`, `spec.image.repository`) names
    /// or resolves to an address Ferry refuses: link-local (cloud metadata at
    /// 169.254.169.254), or a range given with `--refused-networks`. Not retried.
    ADDRESS_REFUSED = "AddressRefused", Warning, ["Application"];
    /// The git server refused the credentials (or asked for some and none are set): check
    /// `spec.source.credentialsSecret`.
    AUTHENTICATION_REFUSED = "AuthenticationRefused", Warning, ["Application"];
    /// `spec.source.url` answers but is not a git repository Ferry can read (a typo in the
    /// path, or a repository that does not exist).
    NOT_A_GIT_REPOSITORY = "NotAGitRepository", Warning, ["Application"];
    /// The repository has no branch `spec.source.branch`.
    BRANCH_NOT_FOUND = "BranchNotFound", Warning, ["Application"];
    /// `spec.source.url` is not a URL Ferry can read.
    INVALID_REPOSITORY_URL = "InvalidRepositoryUrl", Warning, ["Application"];
    /// The git server answered in a way Ferry did not expect; Ferry keeps trying with backoff.
    GIT_PROTOCOL_ERROR = "GitProtocolError", Warning, ["Application"];
    /// Creating or deleting an object Ferry makes (a BuildJob, build pod or Release) failed;
    /// retried with backoff.
    ACTION_FAILED = "ActionFailed", Warning, ["Application", "BuildJob"];
    /// A pod exists under the name of the build pod or test pod Ferry would create, but it is
    /// not Ferry's (its controller owner reference is not the BuildJob's or Application's UID,
    /// or it lacks Ferry's labels): the build or verification fails instead of trusting it.
    /// Ferry leaves the pod alone; the Event names it.
    POD_NOT_OWNED = "PodNotOwned", Warning, ["BuildJob", "Application"];
    /// A Deployment or Service exists under the name of an environment's workload but Ferry did
    /// not create it (no Ferry labels naming this Application and environment, or no Ferry
    /// field manager): Ferry does not take it over and retries with backoff. Delete or rename
    /// it, or deploy the environment to another namespace.
    WORKLOAD_NOT_OWNED = "WorkloadNotOwned", Warning, ["Application"];
    /// Listing the tags of the built commit failed, so its Release waits; retried with backoff.
    TAG_LOOKUP_FAILED = "TagLookupFailed", Warning, ["BuildJob"];
    /// The Application this object belongs to does not exist in the namespace.
    APPLICATION_NOT_FOUND = "ApplicationNotFound", Warning, ["Release", "BuildJob"];
    /// The Release is recorded and belongs to an existing Application.
    RECORDED = "Recorded", Normal, ["Release"];
    /// A Release Ferry did not build (imported, or Ferry's reconfiguration of an import)
    /// names an image outside its Application's `spec.image.repository`: it is never promoted
    /// or rolled out. Import the image into the Application's repository instead.
    IMAGE_OUTSIDE_REPOSITORY = "ImageOutsideRepository", Warning, ["Release"];
    /// A BuildJob Ferry did not make (no controller owner reference to its Application's
    /// UID) whose source, build or image differs from its Application's: it is not built. A
    /// BuildJob made by hand may only rebuild a commit as the Application says; to build
    /// otherwise, change the Application.
    NOT_A_REBUILD = "NotARebuild", Warning, ["BuildJob"];
    /// The build is waiting for its build pod.
    BUILD_PENDING = "BuildPending", Normal, ["BuildJob"];
    /// The build finished and its image was verified in the registry.
    BUILD_SUCCEEDED = "BuildSucceeded", Normal, ["BuildJob"];
    /// The build failed; `status.failure` says in which step and why.
    BUILD_FAILED = "BuildFailed", Warning, ["BuildJob"];
    /// The build pod is at work; the message names the running step.
    BUILD_RUNNING = "BuildRunning", Normal, ["BuildJob"];
    /// The build pushed its image; Ferry is checking the digest in the registry itself.
    VERIFYING_IMAGE = "VerifyingImage", Normal, ["BuildJob"];
    /// The fetch step could not check out the commit (repository unreachable, credentials
    /// refused, commit not found); the log tail says which.
    FETCH_FAILED = "FetchFailed", Warning, ["BuildJob"];
    /// The build script exited with a non-zero code; the log tail shows its last lines.
    SCRIPT_FAILED = "ScriptFailed", Warning, ["BuildJob"];
    /// The publish step could not push the image (registry down, credentials refused, base
    /// image not found) or did not report it by digest.
    PUBLISH_FAILED = "PublishFailed", Warning, ["BuildJob"];
    /// The build ran longer than `build.timeout` and was stopped.
    TIMED_OUT = "TimedOut", Warning, ["BuildJob"];
    /// The image of a build step, or of a release rolling out, cannot be pulled (it does not
    /// exist, or the registry refuses).
    IMAGE_PULL_FAILED = "ImagePullFailed", Warning, ["BuildJob", "Application"];
    /// The publish step reported an image the registry does not have; no Release is made.
    IMAGE_NOT_VERIFIED = "ImageNotVerified", Warning, ["BuildJob"];
    /// The build pod failed for a reason none of its steps reported.
    POD_FAILED = "PodFailed", Warning, ["BuildJob"];
    /// A rollout of a release into an environment started (the message names the release,
    /// the one it replaces and why).
    ROLLOUT_STARTED = "RolloutStarted", Normal, ["Application"];
    /// The release's pods are ready; the stabilization window is under way (the pods must stay
    /// ready, under `maxRestarts`, and pass the HTTP checks).
    STABILIZING = "Stabilizing", Normal, ["Application"];
    /// The release proved healthy in the environment: ready within the deadline, then stable
    /// through the window.
    ROLLOUT_SUCCEEDED = "RolloutSucceeded", Normal, ["Application"];
    /// No release has been chosen for the environment yet (none built, or, for a later stage,
    /// none promoted or pinned).
    NO_RELEASE = "NoRelease", Normal, ["Application"];
    /// The new pods were not all ready within `health.progressDeadline`.
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded", Warning, ["Application"];
    /// A container of the new release keeps crashing (`CrashLoopBackOff`).
    CRASH_LOOP = "CrashLoop", Warning, ["Application"];
    /// A pod of the new release cannot be scheduled (no node has room, or none matches).
    UNSCHEDULABLE = "Unschedulable", Warning, ["Application"];
    /// A container of the new release cannot be created or started (a missing ConfigMap or
    /// Secret it refers to, an invalid command).
    CONTAINER_NOT_STARTING = "ContainerNotStarting", Warning, ["Application"];
    /// Pods of the new release stopped being ready during the stabilization window.
    READINESS_LOST = "ReadinessLost", Warning, ["Application"];
    /// Containers of the new release restarted more than `health.maxRestarts` times.
    TOO_MANY_RESTARTS = "TooManyRestarts", Warning, ["Application"];
    /// More of the HTTP checks' requests failed (5xx, timeouts, refused connections) than
    /// `maxErrorRate` allows.
    ERROR_RATE_EXCEEDED = "ErrorRateExceeded", Warning, ["Application"];
    /// The HTTP checks' 95th-percentile latency was above `maxLatencyP95`.
    LATENCY_EXCEEDED = "LatencyExceeded", Warning, ["Application"];
    /// A rollout failed and Ferry went back to the last healthy release by itself; the release
    /// is rejected for the environment.
    ROLLED_BACK = "RolledBack", Warning, ["Application"];
    /// A rollout failed and the environment stays degraded: automatic rollback is off, or
    /// there is no healthy release to go back to. Pin a release to recover.
    ROLLOUT_FAILED = "RolloutFailed", Warning, ["Application"];
    /// Going back to the last healthy release failed too; a person must pin a release.
    ROLLBACK_FAILED = "RollbackFailed", Warning, ["Application"];
    /// A release healthy and verified upstream is rolling out into an `Automatic` environment.
    PROMOTED = "Promoted", Normal, ["Application"];
    /// A `Manual` environment has a candidate, healthy and verified upstream: pin it in the
    /// Application's environment entry, with a reason, to approve it.
    AWAITING_APPROVAL = "AwaitingApproval", Normal, ["Application"];
    /// A person approved the candidate by pinning it; it is rolling out.
    APPROVED = "Approved", Normal, ["Application"];
    /// A person pinned a release that is neither the candidate nor older than what ran; it is
    /// rolling out, and nothing is promoted into the environment while the pin stays.
    PINNED = "Pinned", Normal, ["Application"];
    /// A person pinned a release older than the one that ran: a manual rollback.
    MANUAL_ROLLBACK = "ManualRollback", Normal, ["Application"];
    /// A person pinned a release that failed upstream or in this environment. It is rolled
    /// out (once per pin) and recorded as an override.
    PIN_OVERRIDE = "PinOverride", Warning, ["Application"];
    /// A candidate was replaced by a newer release before it was rolled out here.
    SUPERSEDED = "Superseded", Normal, ["Application"];
    /// The rollout passed its stabilization window; the Environment's verification (a test
    /// pod or HTTP GETs) runs before the release counts as healthy and may be promoted.
    VERIFYING = "Verifying", Normal, ["Application"];
    /// The verification passed.
    VERIFICATION_PASSED = "VerificationPassed", Normal, ["Application"];
    /// The verification failed or timed out: the release failed here (rolled back when
    /// allowed) and is never promoted further. The message names what failed; a test pod's log
    /// tail is in the environment's `rollout.verification.log` (after a rollback, in the
    /// rollback's `rollout.cause.log`) and in the Release's status.
    VERIFICATION_FAILED = "VerificationFailed", Warning, ["Application"];
    /// Something in `spec.run` or an environment's overrides cannot be turned into a workload
    /// (the message names the field); nothing was created for it.
    INVALID_RUN_SPEC = "InvalidRunSpec", Warning, ["Application"];
    /// Ferry cannot read the object: it does not match the kind's schema as Ferry knows it
    /// (written under an older CRD version, say). Event only; correct the object.
    INVALID_OBJECT = "InvalidObject", Warning, ["Application", "Environment", "Release", "BuildJob"];
    /// Reading something the reconcile needs from the API server failed; retried with backoff.
    /// Event only.
    OBSERVE_FAILED = "ObserveFailed", Warning, ["Application", "Environment", "Release", "BuildJob"];
    /// Writing the status failed; retried with backoff. Event only.
    WRITE_STATUS_FAILED = "WriteStatusFailed", Warning, ["Application", "Environment", "Release", "BuildJob"];
    /// The object has no namespace (it cannot be reconciled). Event only.
    MISSING_NAMESPACE = "MissingNamespace", Warning, ["Application", "Environment", "Release", "BuildJob"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_defined_once_and_documented() {
        let mut names: Vec<&str> = ALL.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a reason name is defined twice");
        for reason in ALL {
            assert!(!reason.doc.trim().is_empty(), "{} has no doc", reason.name);
            assert!(
                reason.name.chars().next().is_some_and(char::is_uppercase)
                    && reason.name.chars().all(char::is_alphanumeric),
                "{} is not CamelCase",
                reason.name
            );
        }
    }

    #[test]
    fn a_reason_is_found_by_name() {
        assert_eq!(Reason::named("UpstreamCycle"), Some(UPSTREAM_CYCLE));
        assert_eq!(Reason::named("NoSuchReason"), None);
    }
}
