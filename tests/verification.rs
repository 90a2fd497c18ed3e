//! The verification GETs against a real HTTP server (axum) on loopback: what passes, what fails
//! and with which message, that a failing answer is retried, that a redirect is not followed,
//! and that runs stop when they are forgotten. Every wait is for a report or a number of
//! requests, with a deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferry::adapters::http_check::Target;
use ferry::adapters::runs::Runs;
use ferry::adapters::verification::{Get, Report, TRIES};

/// The verifications, under the tests' text keys.
type Verifications = Runs<&'static str>;

/// How long any wait here may take before the test fails (a failing GET takes 2 s of pauses).
const DEADLINE: Duration = Duration::from_secs(30);

/// Requests received, by path.
type Hits = Arc<Mutex<BTreeMap<String, u32>>>;

fn hit(hits: &Hits, path: &str) -> u32 {
    let mut hits = hits.lock().unwrap_or_else(|e| e.into_inner());
    let seen = hits.entry(path.to_owned()).or_default();
    *seen += 1;
    *seen
}

fn hits_of(hits: &Hits, path: &str) -> u32 {
    hits.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .copied()
        .unwrap_or(0)
}

/// 503 for the first two requests of each name, then 200.
async fn flaky(State(hits): State<Hits>, Path(name): Path<String>) -> StatusCode {
    if hit(&hits, &format!("/flaky/{name}")) <= 2 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// A server on 127.0.0.1 that counts every request by path: `/ok/{name}` (200),
/// `/unavailable/{name}` (503), `/flaky/{name}` (503 twice, then 200), `/slow` (answers after
/// a minute), `/redirect` (302 to `/ok/followed`); anything else 404. Returns its port and its
/// hits.
async fn server() -> (u16, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route(
            "/ok/{name}",
            get(|State(hits): State<Hits>, uri: Uri| async move {
                hit(&hits, uri.path());
                "ok"
            }),
        )
        .route(
            "/unavailable/{name}",
            get(|State(hits): State<Hits>, uri: Uri| async move {
                hit(&hits, uri.path());
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .route("/flaky/{name}", get(flaky))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .route(
            "/redirect",
            get(|State(hits): State<Hits>| async move {
                hit(&hits, "/redirect");
                (StatusCode::FOUND, [(header::LOCATION, "/ok/followed")]).into_response()
            }),
        )
        .fallback(|State(hits): State<Hits>, uri: Uri| async move {
            hit(&hits, uri.path());
            StatusCode::NOT_FOUND
        })
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

fn get_of(port: u16, path: &str, expect_status: u16) -> Get {
    Get::new("127.0.0.1", port, path, expect_status).expect("a valid GET")
}

/// The report of `key` once the run has finished, or a panic naming the run.
async fn finished(verifications: &Verifications, key: &'static str) -> Report {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let report = verifications.report(&key);
        match &report {
            Some(Report::Passed { .. } | Report::Failed { .. }) => {
                return report.unwrap_or(Report::Running);
            }
            _ => assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for verification {key} to finish; its report: {report:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns once the server has seen `count` requests to `path`, or panics naming it.
async fn wait_for_hits(hits: &Hits, path: &str, count: u32) {
    let deadline = Instant::now() + DEADLINE;
    while hits_of(hits, path) < count {
        assert!(
            Instant::now() < deadline,
            "waited {DEADLINE:?} for {count} requests to {path}; seen {}",
            hits_of(hits, path)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn failed(message: &str) -> Report {
    Report::Failed {
        message: message.to_owned(),
    }
}

#[tokio::test]
async fn gets_that_answer_as_expected_pass_and_say_so() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    verifications.ensure_gets(
        "shop/dev/1",
        vec![
            get_of(port, "/ok/index", 200),
            get_of(port, "/nothing", 404),
        ],
    );
    assert_eq!(
        finished(&verifications, "shop/dev/1").await,
        Report::Passed {
            message: "2 requests answered as expected: GET /ok/index 200, GET /nothing 404".into()
        }
    );
    assert_eq!(
        (hits_of(&hits, "/ok/index"), hits_of(&hits, "/nothing")),
        (1, 1),
        "each GET was sent once"
    );
}

#[tokio::test]
async fn a_wrong_status_fails_naming_the_path_after_every_try_and_stops_the_run() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    verifications.ensure_gets(
        "k",
        vec![
            get_of(port, "/verify.html", 200),
            get_of(port, "/ok/after", 200),
        ],
    );
    assert_eq!(
        finished(&verifications, "k").await,
        failed("GET /verify.html answered 404, expected 200 (3 tries)")
    );
    assert_eq!(hits_of(&hits, "/verify.html"), TRIES);
    assert_eq!(
        hits_of(&hits, "/ok/after"),
        0,
        "a GET after the failed one was sent"
    );
}

#[tokio::test]
async fn an_answer_that_fails_twice_then_passes_is_retried_and_passes() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    let started = Instant::now();
    verifications.ensure_gets("k", vec![get_of(port, "/flaky/a", 200)]);
    assert_eq!(
        finished(&verifications, "k").await,
        Report::Passed {
            message: "1 request answered as expected: GET /flaky/a 200 after 3 tries".into()
        }
    );
    assert_eq!(hits_of(&hits, "/flaky/a"), 3);
    // Two pauses of a second between the three tries.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried too fast"
    );
}

#[tokio::test]
async fn a_closed_port_fails_with_connection_refused() {
    // A port that was just free: bound, then closed again.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        listener.local_addr().expect("a bound address").port()
    };
    let verifications = Verifications::default();
    verifications.ensure_gets("k", vec![get_of(port, "/healthz", 200)]);
    assert_eq!(
        finished(&verifications, "k").await,
        failed("GET /healthz: connection refused (3 tries)")
    );
}

#[tokio::test]
async fn a_slow_answer_fails_as_no_answer_within_the_timeout() {
    let (port, _) = server().await;
    let verifications = Verifications::default();
    let target = Target::new(
        "127.0.0.1",
        port,
        "/slow",
        Duration::from_millis(50),
        Duration::from_millis(100),
    )
    .expect("a valid target");
    verifications.ensure_gets(
        "k",
        vec![Get {
            target,
            expect_status: 200,
        }],
    );
    assert_eq!(
        finished(&verifications, "k").await,
        failed("GET /slow: no answer within 100ms (3 tries)")
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    verifications.ensure_gets("k", vec![get_of(port, "/redirect", 200)]);
    assert_eq!(
        finished(&verifications, "k").await,
        failed("GET /redirect answered 302, expected 200 (3 tries)")
    );
    assert_eq!(hits_of(&hits, "/ok/followed"), 0, "a redirect was followed");
}

#[tokio::test]
async fn ensure_keeps_a_run_and_replaces_one_with_other_gets() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    let gets = vec![get_of(port, "/ok/first", 200)];
    verifications.ensure_gets("k", gets.clone());
    let first = finished(&verifications, "k").await;
    // As a reconcile does on every pass: the same GETs again keep the finished run.
    verifications.ensure_gets("k", gets);
    assert_eq!(verifications.report(&"k"), Some(first));
    assert_eq!(
        hits_of(&hits, "/ok/first"),
        1,
        "the same GETs were sent again"
    );

    verifications.ensure_gets("k", vec![get_of(port, "/ok/second", 204)]);
    assert_eq!(
        finished(&verifications, "k").await,
        failed("GET /ok/second answered 200, expected 204 (3 tries)")
    );
    assert_eq!(verifications.keys(), vec!["k"]);
}

#[tokio::test]
async fn retain_stops_the_runs_under_the_prefix_that_are_not_kept() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    for key in ["shop/dev/1", "shop/dev/2", "other/dev/1"] {
        let name = key.replace('/', "-");
        verifications.ensure_gets(
            key,
            vec![get_of(port, &format!("/unavailable/{name}"), 200)],
        );
        wait_for_hits(&hits, &format!("/unavailable/{name}"), 1).await;
    }
    verifications.retain(|key| !key.starts_with("shop/") || *key == "shop/dev/1");
    assert_eq!(verifications.keys(), vec!["other/dev/1", "shop/dev/1"]);
    assert_eq!(verifications.report(&"shop/dev/2"), None);
    let stopped = hits_of(&hits, "/unavailable/shop-dev-2");
    // The kept runs serve as the clock: their third tries come two seconds after their first.
    wait_for_hits(&hits, "/unavailable/shop-dev-1", TRIES).await;
    wait_for_hits(&hits, "/unavailable/other-dev-1", TRIES).await;
    assert_eq!(
        hits_of(&hits, "/unavailable/shop-dev-2"),
        stopped,
        "a forgotten run kept sending"
    );
}

#[tokio::test]
async fn dropping_verifications_stops_every_run() {
    let (port, hits) = server().await;
    let verifications = Verifications::default();
    verifications.ensure_gets("dropped", vec![get_of(port, "/unavailable/dropped", 200)]);
    wait_for_hits(&hits, "/unavailable/dropped", 1).await;
    drop(verifications);
    let dropped = hits_of(&hits, "/unavailable/dropped");
    let clock = Verifications::default();
    clock.ensure_gets("clock", vec![get_of(port, "/unavailable/clock", 200)]);
    wait_for_hits(&hits, "/unavailable/clock", TRIES).await;
    assert_eq!(
        hits_of(&hits, "/unavailable/dropped"),
        dropped,
        "a dropped run kept sending"
    );
}
