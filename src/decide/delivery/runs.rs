//! What runs beside a rollout, outside Kubernetes: its HTTP checks through the Service during
//! the stabilization window, and its verification (the GETs, or the report of a test pod the
//! API server refused). The shell keeps them in one registry (`adapters::runs`) under a
//! [`RunKey`], observes how each stands as a [`RunProgress`], and starts and stops them as the
//! pipeline's actions say.
//!
//! A key names one rollout (its release and its start), so a new rollout of the same release
//! gets new runs and figures never mix; and it names its Application, so the Application's
//! deletion stops every run it has, checks and verifications alike.

use std::fmt;
use std::time::Duration;

use crate::api::Time;
use crate::api::application::Rollout;

/// One run of one rollout of one Application in one environment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunKey {
    /// The Application's namespace and name.
    pub namespace: String,
    pub application: String,
    pub environment: String,
    /// The rollout: its release and its start, in whole seconds.
    pub release: String,
    pub started: i64,
    pub what: Run,
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Run {
    /// The HTTP check at this index of the Environment's `spec.health.httpChecks`.
    Check(usize),
    /// The Environment's verification.
    Verification,
}

impl RunKey {
    /// The key of `what` for `rollout`.
    pub fn of(
        (namespace, application, environment): (&str, &str, &str),
        rollout: &Rollout,
        what: Run,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            application: application.to_owned(),
            environment: environment.to_owned(),
            release: rollout.release.clone(),
            started: rollout.started.0.as_second(),
            what,
        }
    }

    /// Whether the run is one of the Application `application` of `namespace`.
    pub fn of_application(&self, namespace: &str, application: &str) -> bool {
        self.namespace == namespace && self.application == application
    }
}

/// `<namespace>/<application>/<environment>/<release>@<start>/<index or verify>`, the text the
/// keys had before they were typed: a test pod's name is a hash of it, so a rollout under way
/// when the controller is upgraded keeps its test pod.
impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            namespace,
            application,
            environment,
            release,
            started,
            what,
        } = self;
        write!(
            f,
            "{namespace}/{application}/{environment}/{release}@{started}/"
        )?;
        match what {
            Run::Check(index) => write!(f, "{index}"),
            Run::Verification => write!(f, "verify"),
        }
    }
}

/// How a run stands, as the shell observed it.
#[derive(Clone, Debug, PartialEq)]
pub enum RunProgress {
    Check(CheckCounts),
    Verification(RunReport),
}

/// An HTTP check's figures so far (`adapters::http_check::Figures`, as plain data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckCounts {
    pub requests: u64,
    pub failed: u64,
    pub p95: Option<Duration>,
    pub first_failure: Option<Time>,
    pub last_failure: Option<String>,
}

/// Where a verification's GETs stand, or why its test pod could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunReport {
    Running,
    Passed { message: String },
    Failed { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_as_the_text_keys_of_earlier_versions() {
        let key = RunKey {
            namespace: "team-a".into(),
            application: "shop".into(),
            environment: "dev".into(),
            release: "shop-1.0.0".into(),
            started: 1_800_000_000,
            what: Run::Verification,
        };
        assert_eq!(
            key.to_string(),
            "team-a/shop/dev/shop-1.0.0@1800000000/verify"
        );
        let check = RunKey {
            what: Run::Check(1),
            ..key
        };
        assert_eq!(check.to_string(), "team-a/shop/dev/shop-1.0.0@1800000000/1");
    }
}
