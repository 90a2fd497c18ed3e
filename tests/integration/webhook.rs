//! The webhook endpoint with the Application's key read from the real API server
//! (`KubeWebhookKeys`): a signed push triggers one build request; an Application without a
//! webhook Secret, with a missing Secret, or that does not exist is answered as a forged
//! signature is; a rotated key is used at once.

use std::sync::Arc;
use std::time::Duration;

use ferry::adapters::webhook::{KubeWebhookKeys, PushedCommit};
use ferry::api::Secret;
use ferry::http::{Webhooks, serve_webhooks_on};
use ferry::telemetry::Metrics;
use hmac::{Hmac, Mac};
use kube::api::{Patch, PatchParams};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{fixtures, with_temp_ns};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn signed(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(addr: std::net::SocketAddr, path: &str, signature: &str, body: &[u8]) -> u16 {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the webhook endpoint answers within 10s")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test]
async fn webhook_keys_come_from_the_applications_secret_and_unknown_ones_look_forged() {
    with_temp_ns("webhook", |ns| async move {
        let mut shop = fixtures::shop();
        shop.spec.source.webhook_secret = Some("shop-webhook".into());
        ns.create_object(shop).await;
        ns.create_object(fixtures::secret("shop-webhook", &[("secret", "first-key")]))
            .await;
        let mut no_hook = fixtures::shop();
        no_hook.metadata.name = Some("no-hook".into());
        ns.create_object(no_hook).await;
        let mut no_secret = fixtures::shop();
        no_secret.metadata.name = Some("no-secret".into());
        no_secret.spec.source.webhook_secret = Some("missing".into());
        ns.create_object(no_secret).await;

        let (tx, mut pushes) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_webhooks_on(
            listener,
            Arc::new(Webhooks {
                keys: Arc::new(KubeWebhookKeys {
                    client: ns.client.clone(),
                }),
                pushes: tx,
                metrics: metrics.clone(),
                shard: Default::default(),
            }),
            std::future::pending(),
        ));

        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{COMMIT}","repository":{{"clone_url":"http://git.local/shop.git"}}}}"#
        );
        let body = body.as_bytes();
        let path = |app: &str| format!("/webhooks/{}/{app}", ns.name);

        assert_eq!(post(addr, &path("shop"), &signed("first-key", body), body).await, 202);
        assert_eq!(
            pushes.try_recv().ok(),
            Some(PushedCommit {
                namespace: ns.name.clone(),
                application: "shop".into(),
                commit: COMMIT.into(),
            })
        );
        assert_eq!(post(addr, &path("shop"), &signed("wrong-key", body), body).await, 403);
        for app in ["no-hook", "no-secret", "does-not-exist"] {
            let status = post(addr, &path(app), &signed("first-key", body), body).await;
            assert_eq!(status, 403, "{app}: answered as a forged signature");
        }
        assert_eq!(metrics.webhook_requests("forged"), 1);
        assert_eq!(metrics.webhook_requests("unknown_application"), 3);

        // Rotating the key takes effect at once: the Secret is read live.
        let rotated = fixtures::secret("shop-webhook", &[("secret", "second-key")]);
        ns.api::<Secret>()
            .patch(
                "shop-webhook",
                &PatchParams::apply("test").force(),
                &Patch::Apply(&rotated),
            )
            .await
            .unwrap();
        assert_eq!(post(addr, &path("shop"), &signed("first-key", body), body).await, 403);
        assert_eq!(post(addr, &path("shop"), &signed("second-key", body), body).await, 202);
        assert!(pushes.try_recv().is_ok());
        assert!(pushes.try_recv().is_err(), "exactly one build request per accepted push");
        assert_eq!(metrics.webhook_requests("accepted"), 2);
        server.abort();
    })
    .await;
}
