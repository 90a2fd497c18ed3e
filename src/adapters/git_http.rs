//! gitoxide's smart-HTTP transport over one HTTP client shared by every ref listing.
//!
//! gitoxide's own reqwest backend starts a worker thread per transport and builds a client in
//! it (TLS roots and all) for every listing, so each look-up of a branch cost two threads and a
//! client, and kept no connection for the next one. Here every listing goes through one
//! blocking reqwest client, built once: its connections are kept and reused per host, and it
//! runs on one thread of its own whatever the number of sources. gitoxide still speaks the git
//! protocol (handshake, `ls-refs`); this only carries its requests ([`Http`]).
//!
//! Redirects are not followed: a redirect is refused with an error naming where it points (a
//! moved repository is fixed by changing `spec.source.url`), so a listing never leaves the
//! host, scheme and port whose address the address policy checked, nor drops from https to
//! http.

use std::io::{BufReader, Cursor, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::http::{
    GetResponse, Http, PostBodyDataKind, PostResponse,
};
use reqwest::blocking::{Client, Response};

use super::git::CONNECT_TIMEOUT;

/// The one client, built on first use (inside a blocking task: a blocking client must not be
/// built on an async thread); a failure to build it is reported to the listing that asked,
/// and the next one tries again.
fn client() -> Result<Client, String> {
    static CLIENT: Mutex<Option<Client>> = Mutex::new(None);
    let mut held = CLIENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(client) = held.as_ref() {
        return Ok(client.clone());
    }
    super::git::install_crypto_provider();
    let client = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .http1_title_case_headers()
        .user_agent(super::git::user_agent())
        .dns_resolver(Arc::new(crate::adapters::address::GuardedResolver))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let to = super::git::redact_url(attempt.url().as_str());
            attempt.error(format!(
                "the server redirects to {to}; Ferry does not follow redirects: if the repository moved, set spec.source.url to its new URL"
            ))
        }))
        .build()
        .map_err(|e| format!("cannot build the HTTP client for git: {e}"))?;
    *held = Some(client.clone());
    Ok(client)
}

/// A transport's HTTP: every request through the shared client, each bounded by `timeout`.
pub struct SharedHttp {
    timeout: Duration,
}

impl SharedHttp {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<reqwest::blocking::RequestBuilder, gix::Error> {
        let client = client().map_err(|e| gix::Error::from_error(std::io::Error::other(e)))?;
        let mut request = client.request(method, url).timeout(self.timeout);
        for line in headers {
            if let Some((name, value)) = line.as_ref().split_once(':') {
                // Ferry's own user agent, the client's, rather than gitoxide's.
                if !name.trim().eq_ignore_ascii_case("user-agent") {
                    request = request.header(name.trim(), value.trim());
                }
            }
        }
        Ok(request)
    }
}

/// A response's headers as gitoxide reads them: one `name:value` line each.
fn header_lines(response: &Response) -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in response.headers() {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.push(b':');
        lines.extend_from_slice(value.as_bytes());
        lines.push(b'\n');
    }
    lines
}

/// The response, or its status as an error the git adapter classifies (`GitError`).
fn checked(response: reqwest::Result<Response>) -> reqwest::Result<Response> {
    response.and_then(Response::error_for_status)
}

/// A failed exchange as an I/O error of the kind the git adapter classifies: refused
/// credentials, an unreachable server, or another failure.
fn io_error(error: &reqwest::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let kind = match error.status().map(|s| s.as_u16()) {
        Some(401 | 403) => ErrorKind::PermissionDenied,
        Some(status) if status >= 500 => ErrorKind::ConnectionReset,
        _ if error.is_timeout() => ErrorKind::TimedOut,
        _ if error.is_connect() => ErrorKind::ConnectionRefused,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, error.to_string())
}

/// One POST: its body is written first, and the request goes out when gitoxide starts
/// reading the answer (headers or body, whichever comes first).
enum Exchange {
    Writing {
        request: Option<reqwest::blocking::RequestBuilder>,
        body: Vec<u8>,
    },
    Answered {
        headers: Cursor<Vec<u8>>,
        response: Response,
    },
    Failed(std::io::ErrorKind, String),
}

impl Exchange {
    fn send(&mut self) {
        if let Exchange::Writing { request, body } = self {
            let Some(request) = request.take() else {
                return;
            };
            *self = match checked(request.body(std::mem::take(body)).send()) {
                Ok(response) => Exchange::Answered {
                    headers: Cursor::new(header_lines(&response)),
                    response,
                },
                Err(error) => {
                    let io = io_error(&error);
                    Exchange::Failed(io.kind(), io.to_string())
                }
            };
        }
    }
}

/// The write end and the two read ends of one POST, sharing it.
#[derive(Clone)]
pub struct Part {
    exchange: Arc<Mutex<Exchange>>,
    headers: bool,
}

impl Part {
    fn lock(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.exchange
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for Part {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut *self.lock() {
            Exchange::Writing { body, .. } => {
                body.extend_from_slice(data);
                Ok(data.len())
            }
            _ => Err(std::io::Error::other(
                "the request was sent already; nothing more can be written",
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Read for Part {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut exchange = self.lock();
        exchange.send();
        match &mut *exchange {
            Exchange::Answered { headers, .. } if self.headers => headers.read(buf),
            Exchange::Answered { response, .. } => response.read(buf),
            Exchange::Failed(kind, message) => Err(std::io::Error::new(*kind, message.clone())),
            Exchange::Writing { .. } => Err(std::io::Error::other("the request was not sent")),
        }
    }
}

/// What a GET or a POST answers with: read from memory (headers), the response (a GET's
/// body), or the shared exchange (a POST).
pub enum Answer {
    Memory(Cursor<Vec<u8>>),
    Response(Box<Response>),
    Posted(Part),
}

impl Read for Answer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Answer::Memory(cursor) => cursor.read(buf),
            Answer::Response(response) => response.read(buf),
            Answer::Posted(part) => part.read(buf),
        }
    }
}

impl Http for SharedHttp {
    type Headers = BufReader<Answer>;
    type ResponseBody = BufReader<Answer>;
    type PostBody = Part;

    fn get(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix::Result<GetResponse<Self::Headers, Self::ResponseBody>> {
        let request = self.request(reqwest::Method::GET, url, headers)?;
        let response = checked(request.send()).map_err(gix::Error::from_error)?;
        Ok(GetResponse {
            headers: BufReader::new(Answer::Memory(Cursor::new(header_lines(&response)))),
            body: BufReader::new(Answer::Response(Box::new(response))),
        })
    }

    fn post(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix::Result<PostResponse<Self::Headers, Self::ResponseBody, Self::PostBody>> {
        let request = self.request(reqwest::Method::POST, url, headers)?;
        let exchange = Arc::new(Mutex::new(Exchange::Writing {
            request: Some(request),
            body: Vec::new(),
        }));
        let part = |headers| Part {
            exchange: Arc::clone(&exchange),
            headers,
        };
        Ok(PostResponse {
            post_body: part(false),
            headers: BufReader::new(Answer::Posted(part(true))),
            body: BufReader::new(Answer::Posted(part(false))),
        })
    }

    /// The shared client is configured once, for every transport: gitoxide's options (its
    /// user agent, its backend settings) are not per transport here.
    fn configure(&mut self, _config: &dyn std::any::Any) -> gix::Result<()> {
        Ok(())
    }
}
