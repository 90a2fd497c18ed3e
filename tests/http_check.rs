//! The HTTP checks of a rollout against a real HTTP server (axum) on loopback: what each kind
//! of answer counts as, that redirects are not followed, and that checks stop when they are
//! dropped. Every wait is for a number of requests, with a deadline; nothing here asserts on
//! how long something took, except that a timed-out request counts as its timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferry::adapters::http_check::{Figures, Target};
use ferry::adapters::runs::Runs;

/// The checks, under the tests' text keys.
type Checks = Runs<&'static str>;

const INTERVAL: Duration = Duration::from_millis(50);
/// Long enough that a loaded machine does not turn a fast answer into a timeout.
const GENEROUS: Duration = Duration::from_secs(5);
/// How long any wait here may take before the test fails (a check sends every 50 ms).
const DEADLINE: Duration = Duration::from_secs(30);

/// Requests received, by the name in `/count/{name}`.
type Hits = Arc<Mutex<BTreeMap<String, u64>>>;

async fn count(State(hits): State<Hits>, Path(name): Path<String>) -> &'static str {
    *hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_default() += 1;
    "ok"
}

/// Answers its first request at once (the Service is up), then every other after a minute.
async fn slow(State(hits): State<Hits>) -> &'static str {
    let first = {
        let mut hits = hits.lock().unwrap_or_else(|e| e.into_inner());
        let seen = hits.entry("slow".to_owned()).or_default();
        *seen += 1;
        *seen == 1
    };
    if !first {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    "too late"
}

/// A server on 127.0.0.1 with `/count/{name}` (200, counted), `/fail` (500), `/slow` (answers
/// the first request, then every other after a minute) and `/redirect` (302 to `/count/followed`). Returns its port and its hits.
async fn server() -> (u16, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/count/{name}", get(count))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route("/slow", get(slow))
        .route(
            "/redirect",
            get(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "/count/followed")]).into_response()
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

fn hits_of(hits: &Hits, name: &str) -> u64 {
    hits.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .copied()
        .unwrap_or(0)
}

fn target(port: u16, path: &str, timeout: Duration) -> Target {
    Target::new("127.0.0.1", port, path, INTERVAL, timeout).expect("a valid target")
}

/// The figures of `key` once `done` holds, or a panic naming what was awaited.
async fn wait_for(
    checks: &Checks,
    key: &'static str,
    what: &str,
    done: impl Fn(&Figures) -> bool,
) -> Figures {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let figures = checks.figures(&key);
        if let Some(figures) = &figures
            && done(figures)
        {
            return figures.clone();
        }
        assert!(
            Instant::now() < deadline,
            "waited {DEADLINE:?} for check {key} to {what}; its figures: {figures:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn answered_requests_are_not_failures_and_give_a_latency() {
    let (port, hits) = server().await;
    let checks = Checks::default();
    checks.ensure_check("ok", target(port, "/count/ok", GENEROUS));
    let figures = wait_for(&checks, "ok", "send 5 requests", |f| f.requests >= 5).await;
    assert_eq!(
        (
            figures.failed,
            &figures.last_failure_detail,
            figures.first_failure
        ),
        (0, &None, None),
        "{figures:?}"
    );
    assert!(figures.p95.is_some_and(|p95| p95 < GENEROUS), "{figures:?}");
    assert!(hits_of(&hits, "ok") >= 5, "the server saw the requests");
}

#[tokio::test]
async fn server_errors_are_failures() {
    let (port, _) = server().await;
    let checks = Checks::default();
    checks.ensure_check("fail", target(port, "/fail", GENEROUS));
    let f = wait_for(&checks, "fail", "send 5 requests", |f| f.requests >= 5).await;
    assert_eq!(
        (
            f.failed,
            f.server_errors,
            f.timeouts,
            f.refused,
            f.other_errors
        ),
        (f.requests, f.requests, 0, 0, 0),
        "{f:?}"
    );
    assert_eq!(f.last_failure_detail.as_deref(), Some("HTTP 500"));
    assert!(f.first_failure.is_some() && f.p95.is_some(), "{f:?}");
}

#[tokio::test]
async fn slow_answers_are_timeouts_and_count_as_the_timeout() {
    let (port, _) = server().await;
    let checks = Checks::default();
    let timeout = Duration::from_millis(100);
    checks.ensure_check("slow", target(port, "/slow", timeout));
    let f = wait_for(&checks, "slow", "send 4 requests", |f| f.requests >= 4).await;
    // The first was answered; every later one timed out.
    assert_eq!(
        (
            f.failed,
            f.timeouts,
            f.server_errors,
            f.refused,
            f.other_errors
        ),
        (f.requests - 1, f.requests - 1, 0, 0, 0),
        "{f:?}"
    );
    assert_eq!(f.p95, Some(timeout), "{f:?}");
    assert_eq!(
        f.last_failure_detail.as_deref(),
        Some("timed out after 100ms")
    );
}

#[tokio::test]
async fn a_closed_port_before_any_answer_is_warm_up_and_gives_no_latency() {
    // A port that was just free: bound, then closed again.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        listener.local_addr().expect("a bound address").port()
    };
    let checks = Checks::default();
    checks.ensure_check("closed", target(port, "/healthz", GENEROUS));
    let f = wait_for(&checks, "closed", "send 3 requests", |f| f.warmup >= 3).await;
    // Nothing ever answered: no request counts (the verdict fails a check that has none).
    assert_eq!((f.requests, f.failed), (0, 0), "{f:?}");
    assert_eq!(f.p95, None, "{f:?}");
    assert_eq!(f.last_failure_detail.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn a_redirect_is_an_answer_and_is_not_followed() {
    let (port, hits) = server().await;
    let checks = Checks::default();
    checks.ensure_check("redirect", target(port, "/redirect", GENEROUS));
    let f = wait_for(&checks, "redirect", "send 5 requests", |f| f.requests >= 5).await;
    assert_eq!(f.failed, 0, "{f:?}");
    assert_eq!(hits_of(&hits, "followed"), 0, "a redirect was followed");
}

#[tokio::test]
async fn ensure_keeps_a_running_check_and_replaces_one_with_another_target() {
    let (port, hits) = server().await;
    let checks = Checks::default();
    checks.ensure_check("k", target(port, "/count/first", GENEROUS));
    let before = wait_for(&checks, "k", "send 3 requests", |f| f.requests >= 3).await;
    // As a reconcile does on every pass: the same target again changes nothing.
    checks.ensure_check("k", target(port, "/count/first", GENEROUS));
    let kept = checks.figures(&"k").expect("the check still runs");
    assert!(
        kept.requests >= before.requests,
        "figures were reset: {kept:?}"
    );

    checks.ensure_check("k", target(port, "/fail", GENEROUS));
    let replaced = wait_for(&checks, "k", "get 3 server errors", |f| {
        f.server_errors >= 3
    })
    .await;
    // Fresh figures: none of the first target's answers remain.
    assert_eq!(replaced.failed, replaced.requests, "{replaced:?}");
    let first_hits = hits_of(&hits, "first");
    wait_for(&checks, "k", "get 3 more server errors", |f| {
        f.server_errors >= replaced.server_errors + 3
    })
    .await;
    assert!(
        hits_of(&hits, "first") <= first_hits + 1,
        "the replaced check kept sending"
    );
    assert_eq!(checks.keys(), vec!["k"]);
}

#[tokio::test]
async fn retain_stops_the_checks_it_does_not_keep() {
    let (port, hits) = server().await;
    let checks = Checks::default();
    for key in ["shop/web/1", "shop/web/2", "other/web/1"] {
        let name = key.replace('/', "-");
        checks.ensure_check(key, target(port, &format!("/count/{name}"), GENEROUS));
        wait_for(&checks, key, "send 2 requests", |f| f.requests >= 2).await;
    }
    checks.retain(|key| !key.starts_with("shop/") || *key == "shop/web/1");
    assert_eq!(checks.keys(), vec!["other/web/1", "shop/web/1"]);
    assert_eq!(checks.figures(&"shop/web/2"), None);
    let stopped_hits = hits_of(&hits, "shop-web-2");
    let now = checks.figures(&"shop/web/1").map_or(0, |f| f.requests);
    wait_for(&checks, "shop/web/1", "send 5 more requests", |f| {
        f.requests >= now + 5
    })
    .await;
    // One request may have been on its way when the task was aborted.
    assert!(
        hits_of(&hits, "shop-web-2") <= stopped_hits + 1,
        "a stopped check kept sending"
    );
}

#[tokio::test]
async fn dropping_checks_stops_every_task() {
    let (port, hits) = server().await;
    let checks = Checks::default();
    checks.ensure_check("dropped", target(port, "/count/dropped", GENEROUS));
    wait_for(&checks, "dropped", "send 2 requests", |f| f.requests >= 2).await;
    drop(checks);
    let dropped_hits = hits_of(&hits, "dropped");
    // Another set of checks serves as the clock: 5 of its requests take at least 250 ms.
    let clock = Checks::default();
    clock.ensure_check("clock", target(port, "/count/clock", GENEROUS));
    wait_for(&clock, "clock", "send 5 requests", |f| f.requests >= 5).await;
    assert!(
        hits_of(&hits, "dropped") <= dropped_hits + 1,
        "a dropped check kept sending"
    );
}
