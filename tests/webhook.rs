//! The push webhook endpoint over real HTTP on loopback: signed pushes of each provider
//! trigger exactly one build request, everything else triggers none and is counted and
//! answered with its status; every refusal before the signature verifies gets one and the same
//! answer, and the endpoint's limits (body size, body time, requests in flight, connection
//! lifetime) hold. The Application's key comes from a map here; tests/integration reads it from
//! a real API server.

use ferry::decide::shard::Shard;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry::adapters::webhook::{LookupError, PushedCommit, WebhookKeys, WebhookTarget};
use ferry::http::{Limits, Webhooks, serve_webhooks_with};
use ferry::telemetry::Metrics;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret-c4f3";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Keys by `namespace/application`.
struct MapKeys(BTreeMap<String, WebhookTarget>);

impl WebhookKeys for MapKeys {
    fn target<'a>(
        &'a self,
        namespace: &'a str,
        application: &'a str,
    ) -> BoxFuture<'a, Result<WebhookTarget, LookupError>> {
        let found = self.0.get(&format!("{namespace}/{application}")).cloned();
        Box::pin(async move { found.ok_or(LookupError::NoApplication) })
    }
}

/// Everything logged by this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct Endpoint {
    addr: std::net::SocketAddr,
    pushes: mpsc::Receiver<PushedCommit>,
    metrics: Arc<Metrics>,
}

async fn endpoint() -> Endpoint {
    endpoint_with(Limits::default()).await
}

async fn endpoint_with(limits: Limits) -> Endpoint {
    endpoint_of(limits, Shard::default()).await
}

async fn endpoint_of(limits: Limits, shard: Shard) -> Endpoint {
    logs();
    let keys = MapKeys(BTreeMap::from([(
        "team-a/shop".to_owned(),
        WebhookTarget {
            branch: "main".into(),
            secret: SECRET.as_bytes().to_vec(),
        },
    )]));
    let (tx, rx) = mpsc::channel(16);
    let metrics = Arc::new(Metrics::default());
    let webhooks = Arc::new(Webhooks {
        keys: Arc::new(keys),
        shard,
        pushes: tx,
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_webhooks_with(
        listener,
        webhooks,
        limits,
        std::future::pending(),
    ));
    Endpoint {
        addr,
        pushes: rx,
        metrics,
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn github_push(branch: &str) -> Vec<u8> {
    format!(
        r#"{{"ref":"refs/heads/{branch}","before":"{z}","after":"{COMMIT}","repository":{{"clone_url":"http://git.local/shop.git"}},"commits":[]}}"#,
        z = "0".repeat(40)
    )
    .into_bytes()
}

fn gitlab_push(branch: &str) -> Vec<u8> {
    format!(
        r#"{{"object_kind":"push","ref":"refs/heads/{branch}","after":"{COMMIT}","checkout_sha":"{COMMIT}","project":{{"git_http_url":"http://git.local/shop.git"}}}}"#
    )
    .into_bytes()
}

/// Sends one request over a fresh connection; returns the status code.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    post_answer(addr, path, headers, body).await.0
}

/// Sends one request over a fresh connection; returns the status code and the body.
async fn post_answer(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before it has read everything (oversized bodies).
    let _ = stream.write_all(body).await;
    read_answer(&mut stream).await
}

/// The status code and the body of the response on `stream`.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn assert_no_push(pushes: &mut mpsc::Receiver<PushedCommit>) {
    // Handing over happens before the answer is sent, so nothing can still be on its way.
    assert_eq!(pushes.try_recv().ok(), None, "nothing may be triggered");
}

const SHOP: &str = "/webhooks/team-a/shop";

type Headers<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn a_signed_push_to_the_branch_triggers_exactly_one_build_request_for_each_provider() {
    let mut endpoint = endpoint().await;
    let github = github_push("main");
    let gitlab = gitlab_push("main");
    let github_signature = format!("sha256={}", hmac_hex(SECRET, &github));
    let gitea_signature = hmac_hex(SECRET, &github);
    let cases: [(&str, Headers, &[u8]); 3] = [
        (
            "github",
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &github_signature),
            ],
            &github,
        ),
        (
            "gitea",
            vec![
                ("X-Gitea-Event", "push"),
                ("X-GitHub-Event", "push"),
                ("X-Gitea-Signature", &gitea_signature),
            ],
            &github,
        ),
        (
            "gitlab",
            vec![("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
            &gitlab,
        ),
    ];
    for (provider, headers, body) in cases {
        let status = post(endpoint.addr, SHOP, &headers, body).await;
        assert_eq!(status, 202, "{provider}");
        assert_eq!(
            endpoint.pushes.try_recv().ok(),
            Some(PushedCommit {
                namespace: "team-a".into(),
                application: "shop".into(),
                commit: COMMIT.into(),
            }),
            "{provider}"
        );
        assert_no_push(&mut endpoint.pushes).await;
    }
    assert_eq!(endpoint.metrics.webhook_requests("accepted"), 3);
}

#[tokio::test]
async fn a_push_to_another_branch_and_a_ping_trigger_nothing() {
    let mut endpoint = endpoint().await;
    let body = github_push("feature");
    let signature = format!("sha256={}", hmac_hex(SECRET, &body));
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", &signature),
    ];
    assert_eq!(post(endpoint.addr, SHOP, &headers, &body).await, 202);
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let signature = format!("sha256={}", hmac_hex(SECRET, ping));
    let headers = [
        ("X-GitHub-Event", "ping"),
        ("X-Hub-Signature-256", &signature),
    ];
    assert_eq!(post(endpoint.addr, SHOP, &headers, ping).await, 202);
    assert_no_push(&mut endpoint.pushes).await;
    assert_eq!(endpoint.metrics.webhook_requests("ignored"), 2);
    assert_eq!(endpoint.metrics.webhook_requests("accepted"), 0);
}

#[tokio::test]
async fn every_refusal_before_the_signature_verifies_gets_the_same_answer_and_triggers_nothing() {
    let mut endpoint = endpoint().await;
    let body = github_push("main");
    let good = format!("sha256={}", hmac_hex(SECRET, &body));
    let forged = format!("sha256={}", hmac_hex("not-the-secret", &body));
    let malformed = b"{\"ref\": \"refs/heads/main\", \"after\": ".to_vec();
    let malformed_signature = format!("sha256={}", hmac_hex(SECRET, &malformed));
    let chunk = vec![b' '; 64 * 1024];

    // Every refusal is this answer, byte for byte: the caller cannot tell an Application that
    // does not exist from a wrong key, a missing header or a too large body.
    let refused = (403, ferry::adapters::webhook::REFUSED.1.to_owned());

    // (metric result, path, headers, body, status)
    let cases: Vec<(&str, &str, Headers, Vec<u8>, u16)> = vec![
        (
            "unsigned",
            SHOP,
            vec![("X-GitHub-Event", "push")],
            body.clone(),
            403,
        ),
        (
            "forged",
            SHOP,
            vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &forged)],
            body.clone(),
            403,
        ),
        (
            "forged",
            SHOP,
            vec![("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
            gitlab_push("main"),
            403,
        ),
        (
            "malformed",
            SHOP,
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &malformed_signature),
            ],
            malformed.clone(),
            400,
        ),
        (
            "unrecognised",
            SHOP,
            vec![("X-Hub-Signature-256", &good)],
            body.clone(),
            403,
        ),
        (
            "unknown_application",
            "/webhooks/team-a/other",
            vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)],
            body.clone(),
            403,
        ),
        (
            "unknown_application",
            "/webhooks/team-a/Not_A_Name",
            vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)],
            body.clone(),
            403,
        ),
        // Declares 2 MiB and sends none of it: refused before reading.
        (
            "oversized",
            SHOP,
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &good),
                ("Content-Length", "2097152"),
            ],
            Vec::new(),
            403,
        ),
    ];
    for (result, path, headers, body, status) in cases {
        let before = endpoint.metrics.webhook_requests(metric(result));
        let answer = post_answer(endpoint.addr, path, &headers, &body).await;
        assert_eq!(answer.0, status, "{result}");
        if status == 403 {
            assert_eq!(answer, refused, "{result}");
        }
        assert_eq!(
            endpoint.metrics.webhook_requests(metric(result)),
            before + 1,
            "{result} must be counted"
        );
        assert_no_push(&mut endpoint.pushes).await;
    }

    // A chunked body (no length declared) is cut off once it passes 1 MiB.
    let mut stream = tokio::net::TcpStream::connect(endpoint.addr).await.unwrap();
    let head = format!(
        "POST {SHOP} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {good}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..20 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    assert_eq!(read_answer(&mut stream).await, refused);
    assert_eq!(endpoint.metrics.webhook_requests("oversized"), 2);
    assert_no_push(&mut endpoint.pushes).await;
    assert_eq!(endpoint.metrics.webhook_requests("accepted"), 0);

    // And the server stops reading there: of a 32 MiB body, most is never read (the writes
    // fail once the server has closed, or stall once the socket buffers are full).
    let mut stream = tokio::net::TcpStream::connect(endpoint.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut written = 0;
    while written < 32 << 20 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&framed)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(
        written < 16 << 20,
        "the server read {written} bytes of an oversized body"
    );
    assert_no_push(&mut endpoint.pushes).await;

    // Refusals are logged, without the secret, a signature or the body.
    let logs = logged();
    assert!(
        logs.contains("result=\"forged\"") || logs.contains("result=forged"),
        "{logs}"
    );
    for leak in [
        SECRET,
        forged.as_str(),
        good.as_str(),
        "git.local/shop.git",
        "guess",
    ] {
        assert!(!logs.contains(leak), "the log shows {leak:?}:\n{logs}");
    }
}

/// Opens a connection and sends `head` (and no more).
async fn send_head(addr: std::net::SocketAddr, head: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

fn short_limits() -> Limits {
    Limits {
        connections: 8,
        connection_lifetime: Duration::from_secs(2),
        in_flight: 1,
        body_timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn a_request_whose_headers_refuse_it_is_answered_without_waiting_for_its_body() {
    let endpoint = endpoint().await;
    // Declares a body and never sends it: with no event header, the answer comes anyway.
    let mut stream = send_head(
        endpoint.addr,
        &format!(
            "POST {SHOP} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\
             X-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n"
        ),
    )
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut stream))
        .await
        .expect("answered before any of the body was sent");
    assert_eq!(answer.0, 403);
    assert_eq!(answer.1, ferry::adapters::webhook::REFUSED.1);
    assert_eq!(endpoint.metrics.webhook_requests("unrecognised"), 1);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused_and_frees_its_slot() {
    let mut endpoint = endpoint_with(short_limits()).await;
    let body = github_push("main");
    let good = format!("sha256={}", hmac_hex(SECRET, &body));
    let head = format!(
        "POST {SHOP} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {good}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The same signed push, sent whole.
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", good.as_str()),
    ];
    let signed_push = || post_answer(endpoint.addr, SHOP, &headers, &body);
    let mut slow = send_head(endpoint.addr, &head).await;
    slow.write_all(&body[..10]).await.unwrap();
    // While the slow body holds the one request slot, the next request is told to retry.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = signed_push().await;
    assert_eq!(status, 503);
    assert_eq!(endpoint.metrics.webhook_requests("busy"), 1);
    // The slow one is refused after the body timeout, with the one answer for refusals.
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut slow))
        .await
        .expect("refused once the body timeout passed");
    assert_eq!(answer.0, 403);
    assert_eq!(answer.1, ferry::adapters::webhook::REFUSED.1);
    assert_eq!(endpoint.metrics.webhook_requests("too_slow"), 1);
    // And the slot is free again.
    let (status, _) = signed_push().await;
    assert_eq!(status, 202);
    assert!(endpoint.pushes.try_recv().is_ok());
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed_after_its_lifetime() {
    let endpoint = endpoint_with(short_limits()).await;
    let mut stream = send_head(
        endpoint.addr,
        &format!("POST {SHOP} HTTP/1.1\r\nHost: ferry\r\nX-GitHub-Eve"),
    )
    .await;
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server still holds the connection");
    assert!(started.elapsed() < Duration::from_secs(6));
}

fn metric(result: &str) -> &'static str {
    match result {
        "unsigned" => "unsigned",
        "forged" => "forged",
        "malformed" => "malformed",
        "unknown_application" => "unknown_application",
        "unrecognised" => "unrecognised",
        "oversized" => "oversized",
        other => panic!("no metric result {other}"),
    }
}

/// With the namespaces split between shards, a push for a namespace another shard serves is
/// sent back, naming that shard, and triggers nothing here.
#[tokio::test]
async fn a_push_for_another_shards_namespace_is_sent_to_that_shard() {
    let serving = Shard::of("team-a", 2);
    let mut elsewhere = endpoint_of(
        Limits::default(),
        Shard {
            index: 1 - serving,
            count: 2,
        },
    )
    .await;
    let body = github_push("main");
    let signature = format!("sha256={}", hmac_hex(SECRET, &body));
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", &signature),
    ];
    let (status, text) = post_answer(elsewhere.addr, SHOP, &headers, &body).await;
    assert_eq!(status, 421, "{text}");
    assert!(text.contains(&format!("shard {serving}/2")), "{text}");
    assert_no_push(&mut elsewhere.pushes).await;
    assert_eq!(elsewhere.metrics.webhook_requests("other_shard"), 1);

    let mut here = endpoint_of(
        Limits::default(),
        Shard {
            index: serving,
            count: 2,
        },
    )
    .await;
    assert_eq!(post(here.addr, SHOP, &headers, &body).await, 202);
    assert!(here.pushes.try_recv().is_ok(), "the serving shard takes it");
}
