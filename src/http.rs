//! The push webhook endpoint, `POST /webhooks/<namespace>/<application>`, on a port of its
//! own (the probes and `/metrics` stay on the telemetry server): it is the one endpoint meant
//! to be reachable from outside the cluster, so it gets its own Service and can be exposed
//! without exposing metrics. It speaks plain HTTP; TLS ends at the Ingress or load balancer
//! in front of that Service.
//!
//! Being anonymous, it is bounded before it does any work ([`Limits`]):
//! - at most `connections` connections at once (more wait in the kernel's accept queue), each
//!   closed `connection_lifetime` after it was accepted, so a client that sends its headers a
//!   byte at a time holds a connection for that long at most;
//! - at most `in_flight` requests judged at once; the next is answered 503 (retry) at once;
//! - the path, `Content-Length` and the event and signature headers are judged before the body
//!   is read ([`webhook::check_headers`]); a declared length over [`MAX_BODY`] is refused
//!   without reading, a chunked body is cut off there, and a body not read within
//!   `body_timeout` is refused.
//!
//! Every refusal before the signature verifies gets the same answer ([`webhook::REFUSED`]);
//! every request is counted in `ferry_webhook_requests_total{result}` and logged without its
//! body, signature or secret; an accepted push goes to the controller as a [`PushedCommit`] on
//! a channel.

use crate::decide::shard::Shard;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::Listener;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::adapters::webhook::{self, MAX_BODY, Outcome, PushedCommit, WebhookKeys};
use crate::telemetry::Metrics;

/// How long an accepted push may wait for room on the controller's channel before the sender
/// is told to retry (503; GitHub, GitLab and Gitea show it and allow redelivery).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(2);

/// How much of the process an anonymous caller may hold (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// How long a connection may stay open, from accept: bounds slow headers and idle
    /// keep-alive connections alike.
    pub connection_lifetime: Duration,
    /// Requests judged at once (reading the body, looking up the key, verifying).
    pub in_flight: usize,
    /// How long reading the body may take.
    pub body_timeout: Duration,
}

impl Default for Limits {
    /// A push delivery is one small request; Git servers send them one by one, a few per
    /// second at most, and a body of 1 MiB arrives in well under 10 s.
    fn default() -> Self {
        Self {
            connections: 128,
            connection_lifetime: Duration::from_secs(30),
            in_flight: 16,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// What the webhook endpoint needs.
pub struct Webhooks {
    /// Finds an Application's branch and webhook key.
    pub keys: Arc<dyn WebhookKeys>,
    /// Where accepted pushes go; the controller holds the receiver.
    pub pushes: mpsc::Sender<PushedCommit>,
    pub metrics: Arc<Metrics>,
    /// The namespaces this controller serves; a push for another is sent back (421).
    pub shard: Shard,
}

struct Served {
    webhooks: Arc<Webhooks>,
    permits: Arc<Semaphore>,
    limits: Limits,
}

/// The webhook route with the default [`Limits`], for serving or for tests.
pub fn webhook_router(webhooks: Arc<Webhooks>) -> Router {
    webhook_router_with(webhooks, Limits::default())
}

/// The webhook route with the request limits of `limits` (the connection limits belong to
/// the listener, see [`serve_webhooks_with`]).
pub fn webhook_router_with(webhooks: Arc<Webhooks>, limits: Limits) -> Router {
    Router::new()
        .route("/webhooks/{namespace}/{application}", post(receive))
        .with_state(Arc::new(Served {
            webhooks,
            permits: Arc::new(Semaphore::new(limits.in_flight)),
            limits,
        }))
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

/// Serves the webhook route on a bound listener (tests bind port 0), with the default
/// [`Limits`].
pub async fn serve_webhooks_on(
    listener: tokio::net::TcpListener,
    webhooks: Arc<Webhooks>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_webhooks_with(listener, webhooks, Limits::default(), shutdown).await
}

/// Serves the webhook route on a bound listener with the given [`Limits`].
pub async fn serve_webhooks_with(
    listener: tokio::net::TcpListener,
    webhooks: Arc<Webhooks>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving POST /webhooks/<namespace>/<application>");
    }
    let listener = LimitedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(limits.connections)),
        lifetime: limits.connection_lifetime,
    };
    axum::serve(listener, webhook_router_with(webhooks, limits))
        .with_graceful_shutdown(shutdown)
        .await
}

// Every line logged for the request, here and in `webhook::receive`, names the Application
// through this span; at warn, the level of a refusal, so that no filter shows one without it.
// Debug-formatted (quoted, escaped): the path is the anonymous sender's, not yet validated, and
// a newline in it must not forge a log line.
#[tracing::instrument(
    name = "webhook",
    level = "warn",
    skip_all,
    fields(?namespace, ?application)
)]
async fn receive(
    State(served): State<Arc<Served>>,
    Path((namespace, application)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let webhooks = &served.webhooks;
    // Taken before the body is read: reading it is what a slow client makes long.
    let outcome = match served.permits.clone().try_acquire_owned() {
        Ok(_permit) => {
            let outcome = judge(&served, &namespace, &application, &headers, body).await;
            match outcome {
                Outcome::Accepted(push) => {
                    match tokio::time::timeout(
                        HAND_OVER_TIMEOUT,
                        webhooks.pushes.send(push.clone()),
                    )
                    .await
                    {
                        Ok(Ok(())) => Outcome::Accepted(push),
                        // The controller stopped (shutdown) or is too far behind: the sender
                        // retries.
                        _ => Outcome::Unavailable,
                    }
                }
                other => other,
            }
        }
        Err(_) => Outcome::Busy,
    };
    webhooks.metrics.webhook_request(outcome.result());
    match &outcome {
        Outcome::Accepted(push) => {
            tracing::info!(commit = %push.commit, "webhook: push accepted")
        }
        Outcome::Ignored(why) => tracing::info!(reason = %why, "webhook: push ignored"),
        Outcome::Malformed(why) => tracing::warn!(
            result = outcome.result(), reason = %why,
            "webhook: request refused"
        ),
        refused => tracing::warn!(result = refused.result(), "webhook: request refused"),
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
    served: &Served,
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
    if !served.webhooks.shard.serves(namespace) {
        let index = Shard::of(namespace, served.webhooks.shard.count);
        return Outcome::OtherShard(Shard {
            index,
            ..served.webhooks.shard
        });
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Outcome::Oversized;
    }
    // The headers alone can refuse: then the body is never read.
    if let Err(refused) = webhook::check_headers(headers) {
        return refused;
    }
    let body = match tokio::time::timeout(served.limits.body_timeout, read_limited(body)).await {
        Ok(Ok(body)) => body,
        Ok(Err(outcome)) => return outcome,
        Err(_) => return Outcome::TooSlow,
    };
    webhook::receive(
        served.webhooks.keys.as_ref(),
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

/// A TCP listener that holds at most as many connections as it has permits (waiting to
/// accept until one closes) and closes each one `lifetime` after accepting it.
struct LimitedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<Semaphore>,
    lifetime: Duration,
}

impl Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // `Err` only if the semaphore were closed, which nothing does.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (
            Limited {
                stream,
                deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its deadline has passed (the HTTP
/// server then closes it), and gives its permit back when dropped.
struct Limited {
    stream: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Limited {
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn expired_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the webhook connection outlived its time limit",
    )
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return std::task::Poll::Ready(Err(expired_error()));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return std::task::Poll::Ready(Err(expired_error()));
        }
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
