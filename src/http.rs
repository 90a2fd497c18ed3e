//! The push webhook endpoint, `POST /webhooks/<namespace>/<application>`, on a port of its
//! own (the probes and `/metrics` stay on the telemetry server): it is the one endpoint meant
//! to be reachable from outside the cluster, so it gets its own Service and can be exposed
//! without exposing metrics. It speaks plain HTTP; TLS ends at the Ingress or load balancer
//! in front of that Service.
//!
//! The body is read only up to [`MAX_BODY`] (a larger `Content-Length` is refused before
//! reading anything); [`webhook::receive`] judges it; every request is counted in
//! `ferry_webhook_requests_total{result}` and logged without its body, signature or secret;
//! an accepted push goes to the controller as a [`PushedCommit`] on a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::adapters::webhook::{self, MAX_BODY, Outcome, PushedCommit, WebhookKeys};
use crate::telemetry::Metrics;

/// How long an accepted push may wait for room on the controller's channel before the sender
/// is told to retry (503; GitHub, GitLab and Gitea show it and allow redelivery).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the webhook endpoint needs.
pub struct Webhooks {
    /// Finds an Application's branch and webhook key.
    pub keys: Arc<dyn WebhookKeys>,
    /// Where accepted pushes go; the controller holds the receiver.
    pub pushes: mpsc::Sender<PushedCommit>,
    pub metrics: Arc<Metrics>,
}

/// The webhook route, for serving or for tests.
pub fn webhook_router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route("/webhooks/{namespace}/{application}", post(receive))
        .with_state(webhooks)
}

/// Serves the webhook route on `addr` until `shutdown` resolves.
pub async fn serve_webhooks(
    addr: SocketAddr,
    webhooks: Arc<Webhooks>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_webhooks_on(listener, webhooks, shutdown).await
}

/// Serves the webhook route on a bound listener (tests bind port 0).
pub async fn serve_webhooks_on(
    listener: tokio::net::TcpListener,
    webhooks: Arc<Webhooks>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving POST /webhooks/<namespace>/<application>");
    }
    axum::serve(listener, webhook_router(webhooks))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn receive(
    State(webhooks): State<Arc<Webhooks>>,
    Path((namespace, application)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let outcome = judge(&webhooks, &namespace, &application, &headers, body).await;
    let outcome = match outcome {
        Outcome::Accepted(push) => {
            match tokio::time::timeout(HAND_OVER_TIMEOUT, webhooks.pushes.send(push.clone())).await
            {
                Ok(Ok(())) => Outcome::Accepted(push),
                // The controller stopped (shutdown) or is too far behind: the sender retries.
                _ => Outcome::Unavailable,
            }
        }
        other => other,
    };
    webhooks.metrics.webhook_request(outcome.result());
    match &outcome {
        Outcome::Accepted(push) => tracing::info!(
            %namespace, %application, commit = %push.commit,
            "webhook: push accepted"
        ),
        Outcome::Ignored(why) => tracing::info!(
            %namespace, %application, reason = %why,
            "webhook: push ignored"
        ),
        Outcome::Malformed(why) => tracing::warn!(
            %namespace, %application, result = outcome.result(), reason = %why,
            "webhook: request refused"
        ),
        refused => tracing::warn!(
            %namespace, %application, result = refused.result(),
            "webhook: request refused"
        ),
    }
    let (status, text) = outcome.answer();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn judge(
    webhooks: &Webhooks,
    namespace: &str,
    application: &str,
    headers: &HeaderMap,
    body: Body,
) -> Outcome {
    // Not a name the API server could hold: answered as any unknown Application, without
    // asking it.
    if !is_object_name(namespace) || !is_object_name(application) {
        return Outcome::UnknownApplication;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Outcome::Oversized;
    }
    let body = match read_limited(body).await {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    webhook::receive(
        webhooks.keys.as_ref(),
        &webhook::Request {
            namespace,
            application,
            headers,
            body: &body,
        },
    )
    .await
}

/// The body, read until it ends or passes [`MAX_BODY`] (chunked bodies declare no length).
async fn read_limited(body: Body) -> Result<Vec<u8>, Outcome> {
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Outcome::Malformed("the body could not be read".into()))?;
        if read.len() + chunk.len() > MAX_BODY {
            return Err(Outcome::Oversized);
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read)
}

/// A Kubernetes object name (RFC 1123 subdomain): lower-case letters, digits, '-' and '.'.
fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}
