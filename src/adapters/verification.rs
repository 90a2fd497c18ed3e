//! The HTTP part of an Environment's verification: GETs sent through the application's
//! Service once a rollout has stabilized, each of which must answer with its expected status
//! before the release may be promoted.
//!
//! Data flow: a reconcile builds one [`Get`] per `verification.httpGets` entry (the Service's
//! address, the path, the expected status) and calls `Runs::ensure_gets` (`adapters::runs`)
//! with its key on every pass; a run under that key with the same GETs is left alone. Each run
//! is one tokio task ([`verify`]) that sends the GETs in order and then writes its [`Report`];
//! `Runs::progress` reads it. The registry aborts the runs of rollouts that ended.
//!
//! Each GET is tried up to [`TRIES`] times, [`Target::interval`] apart (one second from
//! [`Get::new`]), each try within [`Target::timeout`]; a try passes when the answer's status
//! is the expected one. The first GET whose every try failed fails the run, and the GETs after
//! it are not sent: the verdict is already known. A request can only reach the Service: the
//! [`Target`] and the HTTP client are those of `adapters::http_check` (no redirect followed,
//! no proxy), so a `302` is an answer with status 302.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http_check::{Outcome, Target, send};
use super::lock;
use crate::api::conditions::truncate;

/// How often one GET is tried before it fails the run: one try would fail a verification on a
/// single dropped connection; the retries ride out a blip.
pub const TRIES: u32 = 3;

/// The pause between two tries of one GET, from [`Get::new`].
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long one try may take, connecting and reading the answer included, from [`Get::new`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest message of a [`Report`], in bytes: sixteen long paths must not make a
/// status field of many kilobytes.
pub const MAX_MESSAGE: usize = 1024;

/// One verification request: a GET to `target` that must answer `expect_status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Get {
    /// Where the GET goes; its interval is the pause between tries, its timeout bounds a try.
    pub target: Target,
    pub expect_status: u16,
}

impl Get {
    /// A GET of `path` at `host:port` (the Service) expecting `expect_status`, tried
    /// [`RETRY_INTERVAL`] apart, each try within [`REQUEST_TIMEOUT`]. Refused for what
    /// [`Target::new`] refuses.
    pub fn new(host: &str, port: u16, path: &str, expect_status: u16) -> Result<Get, String> {
        Ok(Get {
            target: Target::new(host, port, path, RETRY_INTERVAL, REQUEST_TIMEOUT)?,
            expect_status,
        })
    }
}

/// Where one run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// GETs are still being sent (or retried).
    Running,
    /// Every GET answered its expected status, for example
    /// "2 requests answered as expected: GET / 200, GET /healthz 200".
    Passed { message: String },
    /// A GET did not, for example "GET /verify.html answered 404, expected 200 (3 tries)" or
    /// "GET /healthz: connection refused (3 tries)".
    Failed { message: String },
}

/// One run's task: the GETs in order, until one fails; then the report.
pub(super) async fn verify(client: reqwest::Client, gets: Vec<Get>, report: Arc<Mutex<Report>>) {
    let mut passed = Vec::with_capacity(gets.len());
    for get in &gets {
        match tries(&client, get).await {
            Ok(tries) => passed.push((get.target.path(), get.expect_status, tries)),
            Err(failed) => {
                *lock(&report) = Report::Failed {
                    message: bounded(failed),
                };
                return;
            }
        }
    }
    *lock(&report) = Report::Passed {
        message: bounded(passed_message(&passed)),
    };
}

/// Tries `get` up to [`TRIES`] times: `Ok` with the number of tries it took, or `Err` with what
/// the last try gave.
async fn tries(client: &reqwest::Client, get: &Get) -> Result<u32, String> {
    let mut tried = 0;
    loop {
        tried += 1;
        let outcome = send(client, &get.target).await;
        if matches!(outcome, Outcome::Answered { status, .. } if status == get.expect_status) {
            return Ok(tried);
        }
        if tried >= TRIES {
            return Err(failed_message(
                &get.target.path(),
                get.expect_status,
                &outcome,
                tried,
            ));
        }
        tokio::time::sleep(get.target.interval()).await;
    }
}

/// "GET /healthz 200", with " after 2 tries" when it took more than one, for each GET, after
/// how many answered as expected.
fn passed_message(passed: &[(String, u16, u32)]) -> String {
    let each: Vec<String> = passed
        .iter()
        .map(|(path, status, tries)| match tries {
            1 => format!("GET {path} {status}"),
            n => format!("GET {path} {status} after {n} tries"),
        })
        .collect();
    let requests = match passed.len() {
        1 => "1 request".to_owned(),
        n => format!("{n} requests"),
    };
    format!("{requests} answered as expected: {}", each.join(", "))
}

/// What the last of `tries` tries of `GET path` gave, for a person: the status it answered
/// instead of `expected`, or why there was no answer.
fn failed_message(path: &str, expected: u16, last: &Outcome, tries: u32) -> String {
    let tries = match tries {
        1 => "1 try".to_owned(),
        n => format!("{n} tries"),
    };
    match last {
        Outcome::Answered { status, .. } => {
            format!("GET {path} answered {status}, expected {expected} ({tries})")
        }
        Outcome::TimedOut(timeout) => {
            format!("GET {path}: no answer within {timeout:?} ({tries})")
        }
        Outcome::Refused => format!("GET {path}: connection refused ({tries})"),
        Outcome::Other(detail) => format!("GET {path}: {detail} ({tries})"),
    }
}

/// `message` cut to [`MAX_MESSAGE`] bytes, marked where cut.
pub(super) fn bounded(message: String) -> String {
    truncate(&message, MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_path_what_was_expected_and_what_came() {
        let cases = [
            (
                Outcome::Answered {
                    status: 404,
                    latency: Duration::from_millis(3),
                },
                "GET /verify.html answered 404, expected 200 (3 tries)",
            ),
            (
                Outcome::Refused,
                "GET /verify.html: connection refused (3 tries)",
            ),
            (
                Outcome::TimedOut(Duration::from_secs(5)),
                "GET /verify.html: no answer within 5s (3 tries)",
            ),
            (
                Outcome::Other("request failed: connection reset".into()),
                "GET /verify.html: request failed: connection reset (3 tries)",
            ),
        ];
        for (outcome, message) in cases {
            assert_eq!(failed_message("/verify.html", 200, &outcome, 3), message);
        }
        assert_eq!(
            failed_message("/", 204, &Outcome::Refused, 1),
            "GET /: connection refused (1 try)"
        );
    }

    #[test]
    fn a_pass_lists_every_request_and_the_retries_it_took() {
        assert_eq!(
            passed_message(&[("/".into(), 200, 1), ("/healthz".into(), 200, 1)]),
            "2 requests answered as expected: GET / 200, GET /healthz 200"
        );
        assert_eq!(
            passed_message(&[("/flaky?x=1".into(), 204, 3)]),
            "1 request answered as expected: GET /flaky?x=1 204 after 3 tries"
        );
    }

    #[test]
    fn messages_are_bounded() {
        let long: Vec<(String, u16, u32)> = (0..16)
            .map(|i| (format!("/{}{i}", "a".repeat(1000)), 200, 1))
            .collect();
        let message = bounded(passed_message(&long));
        assert_eq!(message.len(), MAX_MESSAGE);
        assert!(message.ends_with("..."), "{message}");
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn a_get_is_a_target_on_the_service_with_the_retry_pace() {
        let get = Get::new("10.96.0.12", 8080, "/verify.html", 200);
        let get = get.map(|g| {
            (
                g.target.url().to_owned(),
                g.target.interval(),
                g.target.timeout(),
                g.expect_status,
            )
        });
        assert_eq!(
            get,
            Ok((
                "http://10.96.0.12:8080/verify.html".to_owned(),
                RETRY_INTERVAL,
                REQUEST_TIMEOUT,
                200
            ))
        );
        assert!(Get::new("10.96.0.12", 8080, "//evil/x", 200).is_err());
    }
}
