//! A real git server for tests: the e2e cluster's `gitserver` (a front for `git http-backend`)
//! on a loopback port, and working copies that commit and push with the `git` command line.
//! Needs `git` and `go` on the PATH; the server is built once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferry-test-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gitserver_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ferry-gitserver");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/cluster/gitserver");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&source)
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .status()
            .expect("running `go build` for the git server (is Go installed?)");
        assert!(status.success(), "building e2e/cluster/gitserver failed");
        out
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The git server, on a loopback port of its own, stopped when dropped.
pub struct GitServer {
    child: Child,
    stdin: Option<ChildStdin>,
    base: String,
    _root: TempDir,
}

impl GitServer {
    pub fn start(basic_auth: Option<&str>) -> Self {
        let root = TempDir::new("gitroot");
        let port = free_port();
        // The server runs under a shell that stops it when its stdin closes: when this handle
        // drops, and also when the test process exits without dropping it (a static).
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$0" "$@" & server=$!; read -r _; kill "$server"; wait "$server""#)
            .arg(gitserver_binary())
            .arg(format!("-listen=127.0.0.1:{port}"))
            .arg(format!("-root={}", root.0.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(auth) = basic_auth {
            command.arg(format!("-basic-auth={auth}"));
        }
        let mut child = command.spawn().expect("starting the git server");
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the git server did not listen on 127.0.0.1:{port} within 10s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            stdin,
            base: format!("http://127.0.0.1:{port}"),
            _root: root,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.base)
    }

    /// Where the server keeps repository `repo` (bare), for tests that make one by hand.
    pub fn dir(&self, repo: &str) -> String {
        self._root
            .0
            .join(format!("{repo}.git"))
            .display()
            .to_string()
    }

    /// The URL with user information, for pushing to a server that requires it.
    pub fn url_as(&self, repo: &str, userinfo: &str) -> String {
        self.url(repo)
            .replacen("http://", &format!("http://{userinfo}@"), 1)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        // Closing its stdin makes the shell stop the server.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A working copy where tests commit, tag and push with the `git` command line.
pub struct WorkingCopy {
    pub dir: TempDir,
}

impl WorkingCopy {
    pub fn new() -> Self {
        let copy = Self {
            dir: TempDir::new("work"),
        };
        copy.git(&["init", "--quiet", "--initial-branch=main"]);
        copy
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args(args)
            .current_dir(&self.dir.0)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("running git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Writes `file` and commits it; returns the commit id.
    pub fn commit(&self, message: &str, file: &str, content: &str) -> String {
        std::fs::write(self.dir.0.join(file), content).expect("writing a file");
        self.git(&["add", file]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn push(&self, url: &str, refspec: &str) {
        self.git(&["push", "--quiet", url, refspec]);
    }
}
