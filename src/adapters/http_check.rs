//! The HTTP checks of a rollout's stabilization window: requests sent through the
//! application's Service every `interval`, and the figures they give (requests, failures by
//! kind, p95 latency). Judging the figures is pure logic elsewhere; this module only sends and
//! counts.
//!
//! Data flow: a reconcile builds a [`Target`] from the Service's address and the
//! `HttpCheck`'s path, and calls `Runs::ensure_check` (`adapters::runs`) with its key on every
//! pass (a running check with the same target is left alone). Each check is one tokio task
//! ([`run`]) that sends a GET per tick and writes into its own [`Record`]; `Runs::progress`
//! reads a snapshot of its [`Figures`]. The registry aborts the checks of rollouts that ended.
//!
//! A check can only ever reach the Service: [`Target::new`] is the only way to build a target,
//! it fixes scheme, host and port itself and accepts only a plain path (and query); the client
//! follows no redirect and ignores `HTTP_PROXY` and friends.
//!
//! A failed request is a 5xx answer, a timeout, a refused connection or any other transport
//! error. Any other answer (2xx, 3xx, 4xx) is answered and not failed. Latency samples are the
//! answered requests (time until the body, read up to [`MAX_BODY`], is in) and the timed-out
//! ones (counted as the timeout, a lower bound of what they would have taken); a refused
//! connection says nothing about the application's latency and is not a sample.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use tokio::time::MissedTickBehavior;

use super::lock;

/// Latency samples kept per check: the newest ones, so a check running for hours uses bounded
/// memory (10 000 durations, 160 KB; at the smallest interval, 100 ms, the last ~17 minutes).
pub const MAX_SAMPLES: usize = 10_000;

/// The most of an answer's body read (then the connection is dropped): enough for any health
/// endpoint, and a huge body cannot make a check hold memory or bandwidth.
pub const MAX_BODY: usize = 64 * 1024;

/// The longest `last_failure_detail`, in characters.
const MAX_DETAIL: usize = 200;

/// Where one check's requests go and how often. Built only by [`Target::new`], so a request can
/// never go anywhere but the Service: `http://<host>:<port><path>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    url: Url,
    interval: Duration,
    timeout: Duration,
}

impl Target {
    /// The target `http://<host>:<port><path>`. `host` is the Service's ClusterIP (v4 or v6) or
    /// DNS name; `path` starts with `/` and holds only RFC 3986 path characters, optionally a
    /// `?query`. Refused, with a reason: an empty or malformed host, port 0, a path with `//`,
    /// `\`, `#`, whitespace, control or non-ASCII characters, a bad `%` escape, a `.` or `..`
    /// segment (also as `%2e`), or anything that is not a path (`http://evil/`); a zero
    /// interval or timeout.
    pub fn new(
        host: &str,
        port: u16,
        path: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Target, String> {
        if interval.is_zero() {
            return Err("the interval must be longer than 0".into());
        }
        if timeout.is_zero() {
            return Err("the timeout must be longer than 0".into());
        }
        if port == 0 {
            return Err("port 0 cannot be reached".into());
        }
        let authority_host = url_host(host)?;
        let (path_part, query) = match path.split_once('?') {
            Some((path_part, query)) => (path_part, Some(query)),
            None => (path, None),
        };
        check_path(path_part)?;
        if let Some(query) = query {
            check_query(query)?;
        }
        let mut url = Url::parse(&format!("http://{authority_host}:{port}/"))
            .map_err(|e| format!("host {host:?}: {e}"))?;
        url.set_path(path_part);
        url.set_query(query);
        // Belt and braces: whatever the checks above missed, the URL must still say exactly
        // what was asked for. This also refuses hosts the URL parser rewrites, such as "1.2.3"
        // (read as the IPv4 address 1.2.0.3).
        let same = url.scheme() == "http"
            && url.host_str() == Some(authority_host.as_str())
            && url.port_or_known_default() == Some(port)
            && url.path() == path_part
            && url.query() == query
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !same {
            return Err(format!(
                "host {host:?} and path {path:?} do not make a plain http://host:port/path URL"
            ));
        }
        Ok(Target {
            url,
            interval,
            timeout,
        })
    }

    /// The URL every request of this check goes to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The URL's path and query (`/healthz?full=1`): what a message names a request by.
    pub fn path(&self) -> String {
        match self.url.query() {
            Some(query) => format!("{}?{query}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// The time between two requests (from the start of one to the start of the next, longer
    /// when a request takes longer than that).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long one request may take, connecting and reading its answer included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `host` as it goes into the URL's authority: an IP address (IPv6 in brackets) or a DNS name
/// (letters, digits, `-` and `.`, in labels of 1 to 63 characters), lower-cased.
fn url_host(host: &str) -> Result<String, String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return Ok(format!("[{ip}]"));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!("{host:?} is neither an IP address nor a DNS name"));
    }
    Ok(name)
}

/// RFC 3986 `unreserved`, `sub-delims`, `:` and `@`: what a path segment may hold unescaped.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// Refuses a bad `%` escape; otherwise `text` with each `%2e`/`%2E` read as `.`, so that
/// encoded dot segments are seen for what the URL parser makes of them.
fn check_escapes(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded_dots = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let Some(escape) = escape else {
                return Err(format!("{text:?} has a `%` not followed by two hex digits"));
            };
            if escape.eq_ignore_ascii_case(b"2e") {
                decoded_dots.push('.');
            } else {
                decoded_dots.push_str(&text[i..i + 3]);
            }
            i += 3;
        } else {
            decoded_dots.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Ok(decoded_dots)
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'"));
    }
    if path.contains("//") {
        return Err(format!(
            "path {path:?} has '//' (read as a host by some clients)"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|&c| c != '/' && c != '%' && !(c.is_ascii() && is_pchar(c as u8)))
    {
        return Err(format!(
            "path {path:?} has {bad:?}, which is not allowed in a path"
        ));
    }
    let decoded = check_escapes(path)?;
    if decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!("path {path:?} has a '.' or '..' segment"));
    }
    Ok(())
}

fn check_query(query: &str) -> Result<(), String> {
    // RFC 3986 `query`: pchar, '/' and '?'. No '#', so the fragment stays empty.
    if let Some(bad) = query
        .chars()
        .find(|&c| c != '/' && c != '?' && c != '%' && !(c.is_ascii() && is_pchar(c as u8)))
    {
        return Err(format!(
            "query {query:?} has {bad:?}, which is not allowed in a query"
        ));
    }
    check_escapes(query).map(drop)
}

/// The figures of one check since it (last) started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Requests completed (answered or failed) since the Service first answered; one in
    /// flight is not counted yet.
    pub requests: u64,
    /// Requests without an answer (refused, timed out, reset) before the Service first
    /// answered: not counted in `requests` or `failed`. A new Service, or a pod that just became
    /// ready, is reachable only once kube-proxy has programmed it, a moment later; those
    /// requests say nothing about the application. An application that never answers has no
    /// `requests` at all, which the verdict treats as a failure of its own.
    pub warmup: u64,
    /// `server_errors + timeouts + refused + other_errors`.
    pub failed: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Requests without a complete answer within the timeout.
    pub timeouts: u64,
    /// Connections refused (nothing listens behind the Service's port).
    pub refused: u64,
    /// Every other transport error (reset connection, malformed answer, ...).
    pub other_errors: u64,
    /// The 95th percentile latency by nearest rank over the last [`MAX_SAMPLES`] answered or
    /// timed-out requests; `None` before the first.
    pub p95: Option<Duration>,
    /// When the first failed request completed.
    pub first_failure: Option<SystemTime>,
    /// What the last failed request gave, for example "HTTP 500", "timed out after 1s",
    /// "connection refused". Also set, with no request counted, when the check cannot send at
    /// all (no HTTP client): then nothing is known about the application.
    pub last_failure_detail: Option<String>,
}

/// The 95th percentile of `samples` by nearest rank; `None` for no samples.
pub fn p95(samples: &[Duration]) -> Option<Duration> {
    nearest_rank(samples, 95)
}

/// The `percent`th percentile (1..=100) of `samples` by nearest rank: the smallest sample that
/// at least `percent`% of the samples are less than or equal to, that is the
/// `ceil(percent * n / 100)`th smallest. `None` for no samples.
pub fn nearest_rank(samples: &[Duration], percent: u32) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let percent = u64::from(percent.clamp(1, 100));
    let n = samples.len() as u64;
    // ceil(percent * n / 100) in integers; at least 1 since percent >= 1 and n >= 1.
    let rank = (percent * n).div_ceil(100);
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(sorted.len() - 1);
    sorted.get(index).copied()
}

/// One request's outcome (also what a verification's GET gives, `adapters::verification`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// An answer with this status, complete after `latency`.
    Answered {
        status: u16,
        latency: Duration,
    },
    TimedOut(Duration),
    Refused,
    Other(String),
}

/// A check's counts and kept samples, written by its task, read by [`Checks::figures`].
#[derive(Debug, Default)]
pub(super) struct Record {
    pub(super) figures: Figures,
    samples: VecDeque<Duration>,
    /// Whether the Service has answered once (see [`Figures::warmup`]).
    answered: bool,
}

impl Record {
    fn add(&mut self, outcome: Outcome, now: SystemTime) {
        if matches!(outcome, Outcome::Answered { .. }) {
            self.answered = true;
        }
        if !self.answered {
            self.figures.warmup += 1;
            self.figures.last_failure_detail = Some(match outcome {
                Outcome::TimedOut(timeout) => format!("timed out after {timeout:?}"),
                Outcome::Refused => "connection refused".to_string(),
                Outcome::Other(detail) => detail,
                Outcome::Answered { .. } => String::new(),
            });
            return;
        }
        self.figures.requests += 1;
        let failure = match outcome {
            Outcome::Answered { status, latency } => {
                self.sample(latency);
                if (500..600).contains(&status) {
                    self.figures.server_errors += 1;
                    Some(format!("HTTP {status}"))
                } else {
                    None
                }
            }
            Outcome::TimedOut(timeout) => {
                self.sample(timeout);
                self.figures.timeouts += 1;
                Some(format!("timed out after {timeout:?}"))
            }
            Outcome::Refused => {
                self.figures.refused += 1;
                Some("connection refused".to_string())
            }
            Outcome::Other(detail) => {
                self.figures.other_errors += 1;
                Some(detail)
            }
        };
        if let Some(detail) = failure {
            self.figures.failed += 1;
            self.figures.first_failure.get_or_insert(now);
            self.figures.last_failure_detail = Some(detail);
        }
    }

    fn sample(&mut self, latency: Duration) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
    }

    pub(super) fn figures(&self) -> Figures {
        let samples: Vec<Duration> = self.samples.iter().copied().collect();
        Figures {
            p95: p95(&samples),
            ..self.figures.clone()
        }
    }
}

/// The client every check shares: plain HTTP/1, no redirects (a 3xx is an answer; following it
/// could leave the Service), no proxy from the environment (the request must go to the Service
/// itself), few idle connections (one check has one request in flight at a time).
/// `user_agent` tells the application which part of Ferry asks. Also the client of
/// `adapters::verification`, whose GETs must stay on the Service just the same.
pub(super) fn client(user_agent: &str) -> Result<reqwest::Client, String> {
    // reqwest is built without a TLS provider of its own and would panic without one, even for
    // plain HTTP (see Cargo.toml).
    super::git::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(2)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(user_agent)
        .build()
        .map_err(|e| super::scrub(&format!("cannot build the HTTP client: {e}"), &[]))
}

/// One check's task: a GET per tick until aborted. One request at a time; a request longer than
/// the interval delays the next tick (`MissedTickBehavior::Delay`) rather than piling up.
pub(super) async fn run(client: reqwest::Client, target: Target, record: Arc<Mutex<Record>>) {
    let mut ticks = tokio::time::interval(target.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = send(&client, &target).await;
        lock(&record).add(outcome, SystemTime::now());
    }
}

/// Sends one GET and reads up to [`MAX_BODY`] of the answer, all within the target's timeout.
pub(super) async fn send(client: &reqwest::Client, target: &Target) -> Outcome {
    let started = Instant::now();
    let exchange = async {
        let mut response = client.get(target.url.clone()).send().await?;
        let status = response.status().as_u16();
        let mut read = 0usize;
        while read < MAX_BODY {
            match response.chunk().await? {
                Some(chunk) => read += chunk.len(),
                None => break,
            }
        }
        Ok::<u16, reqwest::Error>(status)
    };
    // One deadline for the whole exchange (connecting, the answer's head and body), so a
    // request can never outlast the timeout. reqwest's own timeout is left unset: two racing
    // deadlines would only make the classification depend on which fired first.
    match tokio::time::timeout(target.timeout, exchange).await {
        Err(_) => Outcome::TimedOut(target.timeout),
        Ok(Ok(status)) => Outcome::Answered {
            status,
            latency: started.elapsed(),
        },
        Ok(Err(e)) => classify(&e, target.timeout),
    }
}

/// A transport error's kind: timeout, refused connection, or other (with its cause).
fn classify(error: &reqwest::Error, timeout: Duration) -> Outcome {
    if error.is_timeout() {
        return Outcome::TimedOut(timeout);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
                std::io::ErrorKind::TimedOut => return Outcome::TimedOut(timeout),
                _ => {}
            }
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    let kind = if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let detail: String = super::scrub(&format!("{kind}: {innermost}"), &[])
        .chars()
        .take(MAX_DETAIL)
        .collect();
    Outcome::Other(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn target(host: &str, port: u16, path: &str) -> Result<Target, String> {
        Target::new(host, port, path, SECOND, SECOND)
    }

    #[test]
    fn a_target_is_the_service_address_and_the_path() {
        let cases = [
            (
                "10.96.0.12",
                8080,
                "/healthz",
                "http://10.96.0.12:8080/healthz",
            ),
            // The URL leaves out http's default port; it is still the Service's port 80.
            ("fd00::12", 80, "/", "http://[fd00::12]/"),
            (
                "web.shop.svc.cluster.local",
                8080,
                "/ready?full=1&x=a:b",
                "http://web.shop.svc.cluster.local:8080/ready?full=1&x=a:b",
            ),
            (
                "Web.Shop.",
                8080,
                "/a/b%20c",
                "http://web.shop:8080/a/b%20c",
            ),
            // Harmless look-alikes stay on the Service: '@' in a path is a path character,
            // and a URL in a query is data.
            ("10.0.0.1", 8080, "/@evil", "http://10.0.0.1:8080/@evil"),
            (
                "10.0.0.1",
                8080,
                "/x?y=http://evil",
                "http://10.0.0.1:8080/x?y=http://evil",
            ),
        ];
        for (host, port, path, url) in cases {
            let made = target(host, port, path);
            let made = made.map(|t| t.url().to_string());
            assert_eq!(made.as_deref(), Ok(url), "{host} {port} {path}");
            let parsed = Url::parse(url).map_err(|e| e.to_string());
            let parsed = parsed
                .as_ref()
                .map(|u| (u.scheme(), u.port_or_known_default()));
            assert_eq!(parsed, Ok(("http", Some(port))), "{url}");
        }
    }

    #[test]
    fn a_target_refuses_paths_that_could_leave_the_service() {
        let hostile = [
            ("scheme-relative", "//evil.example/x"),
            ("absolute URL", "http://evil/"),
            ("other scheme", "javascript:alert(1)"),
            ("no leading slash", "evil.example/x"),
            ("backslash", "/\\evil.example/x"),
            ("leading backslashes", "\\\\evil.example/x"),
            ("double slash inside", "/a//b"),
            ("parent segments", "/../../x"),
            ("parent at end", "/a/.."),
            ("current segment", "/./x"),
            ("encoded parent", "/%2e%2E/x"),
            ("half encoded parent", "/.%2e/x"),
            ("fragment", "/x#frag"),
            ("fragment in query", "/x?a=1#frag"),
            ("space", "/a b"),
            ("tab", "/a\tb"),
            ("newline (header injection)", "/a\r\nHost: evil"),
            ("non-ASCII", "/café"),
            ("bad escape", "/a%zz"),
            ("truncated escape", "/a%2"),
            ("empty", ""),
            ("angle brackets", "/<script>"),
        ];
        for (name, path) in hostile {
            assert!(
                target("10.0.0.1", 8080, path).is_err(),
                "{name}: {path:?} was accepted"
            );
        }
    }

    #[test]
    fn a_target_refuses_hosts_that_are_not_an_address_or_a_name() {
        for host in [
            "",
            "evil.example:80",
            "user@evil.example",
            "evil.example/x",
            "1.2.3",
            "[::1]",
            "-web",
            "web_app",
            "web app",
            "evil.example#",
        ] {
            assert!(target(host, 8080, "/").is_err(), "{host:?} was accepted");
        }
        assert!(target("10.0.0.1", 0, "/").is_err(), "port 0 was accepted");
        assert!(Target::new("10.0.0.1", 80, "/", Duration::ZERO, SECOND).is_err());
        assert!(Target::new("10.0.0.1", 80, "/", SECOND, Duration::ZERO).is_err());
    }

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let twenty: Vec<u64> = (1..=20).collect();
        let cases: [(&str, Vec<Duration>, Option<Duration>); 7] = [
            ("no samples", vec![], None),
            ("one sample", ms(&[7]), Some(Duration::from_millis(7))),
            // ceil(0.95 * 2) = 2: the larger of two.
            ("two samples", ms(&[9, 3]), Some(Duration::from_millis(9))),
            // ceil(0.95 * 100) = 95, whatever the order.
            (
                "1..=100 reversed",
                ms(&hundred),
                Some(Duration::from_millis(95)),
            ),
            // ceil(0.95 * 20) = 19.
            ("1..=20", ms(&twenty), Some(Duration::from_millis(19))),
            // ceil(0.95 * 21) = 20: one slow request in 21 is above the p95.
            (
                "one outlier in 21",
                [ms(&[10; 20]), ms(&[5000])].concat(),
                Some(Duration::from_millis(10)),
            ),
            // ceil(0.95 * 19) = 19: in 19, the slowest is the p95.
            (
                "one outlier in 19",
                [ms(&[10; 18]), ms(&[5000])].concat(),
                Some(Duration::from_millis(5000)),
            ),
        ];
        for (name, samples, expected) in cases {
            assert_eq!(p95(&samples), expected, "{name}");
        }
        assert_eq!(
            nearest_rank(&ms(&[1, 2, 3, 4]), 50),
            Some(Duration::from_millis(2))
        );
        assert_eq!(
            nearest_rank(&ms(&[1, 2, 3, 4]), 100),
            Some(Duration::from_millis(4))
        );
    }

    #[test]
    fn requests_before_the_first_answer_are_warm_up_not_failures() {
        let mut record = Record::default();
        let now = SystemTime::UNIX_EPOCH;
        record.add(Outcome::Refused, now);
        record.add(Outcome::TimedOut(SECOND), now + SECOND);
        let figures = record.figures();
        assert_eq!(
            (figures.requests, figures.failed, figures.warmup),
            (0, 0, 2)
        );
        assert_eq!(
            figures.last_failure_detail.as_deref(),
            Some("timed out after 1s")
        );
        record.add(
            Outcome::Answered {
                status: 500,
                latency: Duration::from_millis(3),
            },
            now + 2 * SECOND,
        );
        // From the first answer on, everything counts: a refusal too.
        record.add(Outcome::Refused, now + 3 * SECOND);
        let figures = record.figures();
        assert_eq!(
            (figures.requests, figures.failed, figures.warmup),
            (2, 2, 2)
        );
    }

    #[test]
    fn a_record_counts_failures_by_kind_and_keeps_the_newest_samples() {
        let mut record = Record::default();
        let now = SystemTime::UNIX_EPOCH;
        let answered = |status, latency_ms| Outcome::Answered {
            status,
            latency: Duration::from_millis(latency_ms),
        };
        record.add(answered(200, 5), now);
        record.add(answered(302, 5), now);
        record.add(answered(404, 5), now);
        assert_eq!(record.figures().failed, 0, "2xx, 3xx and 4xx are answers");
        record.add(answered(503, 7), now + SECOND);
        record.add(Outcome::TimedOut(SECOND), now + 2 * SECOND);
        record.add(Outcome::Refused, now + 3 * SECOND);
        record.add(
            Outcome::Other("request failed: reset".into()),
            now + 4 * SECOND,
        );
        let figures = record.figures();
        assert_eq!(
            figures,
            Figures {
                requests: 7,
                warmup: 0,
                failed: 4,
                server_errors: 1,
                timeouts: 1,
                refused: 1,
                other_errors: 1,
                // Five samples (refused and other errors are none): ceil(0.95 * 5) = 5th.
                p95: Some(SECOND),
                first_failure: Some(now + SECOND),
                last_failure_detail: Some("request failed: reset".into()),
            }
        );
        for _ in 0..MAX_SAMPLES {
            record.add(answered(200, 1), now);
        }
        assert_eq!(record.samples.len(), MAX_SAMPLES);
        assert_eq!(
            record.figures().p95,
            Some(Duration::from_millis(1)),
            "old samples dropped"
        );
    }
}
