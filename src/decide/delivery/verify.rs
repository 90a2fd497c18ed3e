//! The verification stage, once the stabilization window passed: a test pod or HTTP GETs
//! (the shell runs them and reports a `VerificationReport`), within the Environment's
//! timeout. Readiness and the checks are still judged meanwhile (`judge`).

use std::time::Duration;

use super::health::{Signal, show};
use super::judge::elapsed;
use super::{Observed, VerificationReport, Work};
use crate::api::Time;
use crate::api::application::{HistoryKind, Rollout, VerificationRun};
use crate::api::reasons::{VERIFICATION_FAILED, VERIFICATION_PASSED, VERIFYING};

impl Work {
    /// The verification stage, once the window passed: starts it, waits for it, fails the
    /// rollout when it fails or times out. Returns the rollout when it passed.
    pub(super) fn verify(
        &mut self,
        mut rollout: Rollout,
        observed: &Observed,
        timeout: Duration,
        now: &Time,
    ) -> Option<Rollout> {
        let Some(mut run) = rollout.verification.clone() else {
            rollout.verification = Some(VerificationRun {
                started: self.stamp.clone(),
                passed: None,
                finished: None,
                message: None,
                log: None,
            });
            self.tell(
                VERIFYING,
                format!(
                    "{} passed its stabilization window; verifying it (timeout {})",
                    rollout.release,
                    show(timeout)
                ),
                &rollout.release,
                HistoryKind::Rollout,
            );
            self.state.rollout = Some(rollout);
            self.requeue_in(Duration::from_secs(1));
            return None;
        };
        if run.passed == Some(true) {
            return Some(rollout);
        }
        let failure = match &observed.verification {
            Some(VerificationReport::Passed { message }) => {
                run.passed = Some(true);
                run.finished = Some(self.stamp.clone());
                run.message = Some(message.clone());
                self.tell(
                    VERIFICATION_PASSED,
                    format!("{} passed its verification: {message}", rollout.release),
                    &rollout.release,
                    HistoryKind::Rollout,
                );
                rollout.verification = Some(run);
                return Some(rollout);
            }
            Some(VerificationReport::Failed { message, log }) => (message.clone(), log.clone()),
            _ if elapsed(&run.started, now) >= timeout => (
                format!("the verification did not finish within {}", show(timeout)),
                None,
            ),
            _ => {
                self.state.rollout = Some(rollout);
                self.requeue_in(Duration::from_secs(1));
                return None;
            }
        };
        let (message, log) = failure;
        run.passed = Some(false);
        run.finished = Some(self.stamp.clone());
        run.message = Some(message.clone());
        run.log = log;
        rollout.verification = Some(run);
        self.tell(
            VERIFICATION_FAILED,
            format!("{} failed its verification: {message}", rollout.release),
            &rollout.release,
            HistoryKind::Rollout,
        );
        let signal = Signal {
            reason: VERIFICATION_FAILED,
            message: format!("verification failed: {message}"),
            time: None,
        };
        self.fail(rollout, signal, &observed.policy);
        None
    }
}

/// What the API server's refusal to create a verification's test pod means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestPodRefused {
    /// It exists already (a reconcile before this one created it): nothing to do.
    Exists,
    /// Refused for good (no grant to create pods there, a policy, an invalid image
    /// reference): the verification fails with the API server's words, not at its timeout.
    Fails(String),
    /// Anything else is worth another try.
    Retry,
}

/// Whether the API server's answer `code` with `message` to creating the test pod `pod` in
/// `namespace` fails its verification.
pub fn test_pod_refused(code: u16, message: &str, namespace: &str, pod: &str) -> TestPodRefused {
    match code {
        409 => TestPodRefused::Exists,
        400..500 => {
            let grant = if code == 403 {
                format!(
                    "; Ferry creates test pods only in namespaces that grant it: kubectl -n {namespace} create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=<ferry's namespace>:ferry"
                )
            } else {
                String::new()
            };
            TestPodRefused::Fails(format!("the test pod {pod} was refused: {message}{grant}"))
        }
        _ => TestPodRefused::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_server_that_refuses_a_test_pod_for_good_fails_the_verification() {
        let cases = [
            ("a pod that exists already is fine", 409, TestPodRefused::Exists),
            (
                "no grant fails, saying how to grant it",
                403,
                TestPodRefused::Fails(
                    "the test pod shop-dev-verify-0 was refused: forbidden; Ferry creates test pods only in namespaces that grant it: kubectl -n team-a create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=<ferry's namespace>:ferry".into(),
                ),
            ),
            (
                "an invalid pod fails with the API server's words",
                422,
                TestPodRefused::Fails("the test pod shop-dev-verify-0 was refused: forbidden".into()),
            ),
            ("a server error is tried again", 500, TestPodRefused::Retry),
            ("an unavailable API server is tried again", 503, TestPodRefused::Retry),
        ];
        for (name, code, expected) in cases {
            assert_eq!(
                test_pod_refused(code, "forbidden", "team-a", "shop-dev-verify-0"),
                expected,
                "{name}"
            );
        }
    }
}
