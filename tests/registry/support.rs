//! A registry process per test, the publish step as a process, and what they left behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// Whether the registry can run here; says why not (or fails under CI, which installs it).
pub fn registry_available() -> bool {
    if Path::new(REGISTRY_BINARY).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{REGISTRY_BINARY} is missing under CI: .ci/run installs the docker-registry package"
    );
    eprintln!(
        "SKIPPED: {REGISTRY_BINARY} is absent (apt-get install docker-registry to run this test)"
    );
    false
}

/// A free port on loopback (another process may still take it before us: [`Registry::start`]
/// retries).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `docker-registry serve`, killed when dropped.
pub struct Registry {
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

/// One request the registry served, from its access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub status: u16,
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that accepts only `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        let mut dir = tempfile::tempdir().expect("a temporary directory");
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let auth_config = match auth {
                Some((user, password)) => {
                    // Cost 4 keeps the registry's check fast; the format is what htpasswd -B writes.
                    let hash = bcrypt::hash(password, 4).expect("bcrypt");
                    let file = dir.path().join("htpasswd");
                    std::fs::write(&file, format!("{user}:{hash}\n")).expect("htpasswd");
                    format!(
                        "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                        file.display()
                    )
                }
                None => String::new(),
            };
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_config}",
                    dir.path().join("data").display()
                ),
            )
            .expect("the registry config");
            let log = dir.path().join(format!("registry-{port}.log"));
            let out = std::fs::File::create(&log).expect("the registry log");
            let child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config)
                .stdout(out.try_clone().expect("a log handle"))
                .stderr(out)
                .spawn()
                .expect("docker-registry starts");
            let mut registry = Registry {
                host,
                dir,
                child,
                log,
            };
            match registry.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return registry,
                Err(why) => {
                    last = format!("{why}; log: {}", registry.log_text());
                    let _ = registry.child.kill();
                    let _ = registry.child.wait();
                    dir = std::mem::replace(
                        &mut registry.dir,
                        tempfile::tempdir().expect("a temporary directory"),
                    );
                }
            }
        }
        panic!("the registry did not start: {last}");
    }

    /// Waits until `/v2/` answers (200, or 401 with authentication) or the process exits.
    fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("docker-registry exited with {status}"));
            }
            if let Some(status) = http_status(&self.host, "GET", "/v2/")
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(format!(
                    "the registry on {} did not answer /v2/ within {deadline:?}",
                    self.host
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many bytes of log there are now: a mark for [`Registry::requests_since`].
    pub fn mark(&self) -> usize {
        self.log_text().len()
    }

    /// The requests served since `mark`, once the request matching `last` (the final request
    /// of what is being observed, e.g. the manifest PUT) is in the log: the access log line is
    /// written when a response completes, so the earlier requests' lines are there too.
    pub fn requests_since(&self, mark: usize, last: impl Fn(&Request) -> bool) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let text = self.log_text();
            let requests: Vec<Request> = text
                .get(mark..)
                .unwrap_or("")
                .lines()
                .filter_map(parse_access_line)
                .collect();
            if requests.iter().any(&last) {
                return requests;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the registry log never showed the final request; it has {requests:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1 - - [date] "PUT /v2/x/blobs/uploads/...?digest=... HTTP/1.1" 201 0 "" "agent"`
fn parse_access_line(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let uri = parts.next()?.to_owned();
    let status = rest.split(' ').next()?.parse().ok()?;
    Some(Request {
        method,
        uri,
        status,
    })
}

/// The status of one plain HTTP/1.0 request, or `None` when nothing answers.
pub fn http_status(host: &str, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split(' ').nth(1)?.parse().ok()
}

/// The blob uploads among `requests`: upload sessions opened (POST without `mount`) and
/// blobs completed by PUT (`digest=` names them).
pub fn uploads(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.uri.contains("/blobs/uploads/"))
        .filter(|r| !(r.method == "POST" && r.uri.contains("mount=")))
        .collect()
}

/// The blob mounts among `requests` that the registry did (201).
pub fn mounts(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.status == 201)
        .collect()
}

/// The result of one `ferry build publish`.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// What the termination log holds.
    pub report: serde_json::Value,
}

impl Outcome {
    pub fn digest(&self) -> String {
        assert!(self.success, "publish failed: {self:#?}");
        self.report["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest in {self:#?}"))
            .to_owned()
    }
}

/// Runs `ferry build publish` with `args` (each `--name=value`); the termination log and the
/// layer cache go to a fresh directory unless `args` name them.
pub fn publish(args: &[String]) -> Outcome {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let termination = scratch.path().join("termination-log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.args(["build", "publish"]).args(args);
    if !args.iter().any(|a| a.starts_with("--termination-log=")) {
        command.arg(format!("--termination-log={}", termination.display()));
    }
    if !args.iter().any(|a| a.starts_with("--cache-dir=")) {
        command.arg(format!(
            "--cache-dir={}",
            scratch.path().join("cache").display()
        ));
    }
    let output = command.stdin(Stdio::null()).output().expect("ferry runs");
    let report = std::fs::read(&termination)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    }
}

/// `--name=value`
pub fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

/// Writes `files` (path, content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent")).expect("directories");
        std::fs::write(full, content).expect("a file");
    }
}

/// A dockerconfigjson file giving `user`/`password` for `host`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .expect("a docker config");
    path
}

/// Runs a future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}
