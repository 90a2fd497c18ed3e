//! Git as a developer uses it: a working copy in a temporary directory, commits, tags and
//! pushes to the cluster's git server with the real `git` client, and the server's push
//! webhook pointed at Ferry (`e2e/cluster/git-webhook.sh`, which configures the server's bare
//! repository on this machine).

use std::path::{Path, PathBuf};

use crate::harness::{Cluster, Res};

/// Runs `git ARGS` in `dir`; returns its standard output, trimmed.
async fn git(dir: &Path, args: &[&str]) -> Res<String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@ferry.invalid"])
        .args(args)
        // Every address here is the harness's own: never through a proxy.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .output()
        .await?;
    if !output.status.success() {
        crate::fail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A working copy on branch `main`.
pub struct WorkingCopy {
    dir: tempfile::TempDir,
}

impl WorkingCopy {
    /// An empty repository.
    pub async fn new() -> Res<Self> {
        let dir = tempfile::tempdir()?;
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"]).await?;
        Ok(Self { dir })
    }

    /// A repository holding a copy of `template` (a directory of the repository, e.g.
    /// `e2e/testdata/app`), not yet committed.
    pub async fn from_template(template: &Path) -> Res<Self> {
        let copy = Self::new().await?;
        let status = tokio::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", template.display()))
            .arg(copy.dir.path())
            .status()
            .await?;
        crate::ensure!(status.success(), "copying {}", template.display());
        Ok(copy)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes `content` to `file` (relative), creating its directories.
    pub fn write(&self, file: &str, content: &str) -> Res {
        let path = self.dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
        Ok(())
    }

    /// Removes `path` (a file or a directory), if it is there.
    pub fn remove(&self, path: &str) -> Res {
        let path = self.dir.path().join(path);
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else if path.exists() {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Commits everything (an empty commit when nothing changed); returns the commit.
    pub async fn commit(&self, message: &str) -> Res<String> {
        git(self.dir.path(), &["add", "-A"]).await?;
        git(
            self.dir.path(),
            &["commit", "--quiet", "--allow-empty", "-m", message],
        )
        .await?;
        git(self.dir.path(), &["rev-parse", "HEAD"]).await
    }

    /// Tags HEAD (an annotated tag when `message` is given).
    pub async fn tag(&self, name: &str, message: Option<&str>) -> Res {
        match message {
            Some(m) => git(self.dir.path(), &["tag", "-a", name, "-m", m]).await?,
            None => git(self.dir.path(), &["tag", name]).await?,
        };
        Ok(())
    }

    /// Pushes `refs` (e.g. `main`, `v1.0.0`) to `url`.
    pub async fn push(&self, url: &str, refs: &[&str]) -> Res {
        let mut args = vec!["push", "--quiet", url];
        args.extend(refs);
        git(self.dir.path(), &args).await?;
        Ok(())
    }
}

/// The URL of repository `name` on the cluster's git server (it creates a repository on the
/// first push).
pub fn repository_url(cluster: &Cluster, name: &str) -> String {
    format!("{}/{name}.git", cluster.git_url)
}

/// Points the git server's repository `name` at `url`: every push that changes a ref is POSTed
/// there as a GitHub-style push event, signed with `secret`. Creates the (bare, empty)
/// repository if it does not exist yet.
pub async fn webhook(cluster: &Cluster, name: &str, url: &str, secret: &str) -> Res {
    let output =
        tokio::process::Command::new(format!("{}/cluster/git-webhook.sh", cluster.e2e_dir))
            .args([name, url, secret])
            .output()
            .await?;
    crate::ensure!(
        output.status.success(),
        "pointing {name} at a webhook: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
