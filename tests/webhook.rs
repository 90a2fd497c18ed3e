//! The push webhook endpoint over real HTTP on loopback: signed pushes of each provider
//! trigger exactly one build request, everything else triggers none and is counted and
//! answered with its status. The Application's key comes from a map here; tests/integration
//! reads it from a real API server.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry::adapters::webhook::{LookupError, PushedCommit, WebhookKeys, WebhookTarget};
use ferry::http::{Webhooks, serve_webhooks_on};
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
        pushes: tx,
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_webhooks_on(
        listener,
        webhooks,
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
    read_status(&mut stream).await
}

async fn read_status(stream: &mut tokio::net::TcpStream) -> u16 {
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
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
async fn unsigned_forged_oversized_malformed_and_unknown_requests_get_their_4xx_and_trigger_nothing()
 {
    let mut endpoint = endpoint().await;
    let body = github_push("main");
    let good = format!("sha256={}", hmac_hex(SECRET, &body));
    let forged = format!("sha256={}", hmac_hex("not-the-secret", &body));
    let malformed = b"{\"ref\": \"refs/heads/main\", \"after\": ".to_vec();
    let malformed_signature = format!("sha256={}", hmac_hex(SECRET, &malformed));
    let chunk = vec![b' '; 64 * 1024];

    // (metric result, path, headers, body, status)
    let cases: Vec<(&str, &str, Headers, Vec<u8>, u16)> = vec![
        (
            "unsigned",
            SHOP,
            vec![("X-GitHub-Event", "push")],
            body.clone(),
            401,
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
            "malformed",
            SHOP,
            vec![("X-Hub-Signature-256", &good)],
            body.clone(),
            400,
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
            413,
        ),
    ];
    for (result, path, headers, body, status) in cases {
        let before = endpoint.metrics.webhook_requests(metric(result));
        assert_eq!(
            post(endpoint.addr, path, &headers, &body).await,
            status,
            "{result}"
        );
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
    assert_eq!(read_status(&mut stream).await, 413);
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

fn metric(result: &str) -> &'static str {
    match result {
        "unsigned" => "unsigned",
        "forged" => "forged",
        "malformed" => "malformed",
        "unknown_application" => "unknown_application",
        "oversized" => "oversized",
        other => panic!("no metric result {other}"),
    }
}
