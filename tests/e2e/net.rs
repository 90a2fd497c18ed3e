//! HTTP as a pod sees it: from inside the node's network namespace, where a Service's
//! ClusterIP is reached through kube-proxy's rules (the host's route to the Service range
//! leads nowhere, by design). Each use runs on a thread of its own that has entered that
//! namespace (network namespaces are per thread), with a runtime of its own, so that every
//! socket it opens is opened there.
//!
//! [`Load`] is the client the zero-failure and restore scenarios run through a rollout: about
//! 20 requests a second, one at a time, each on a new connection, each recorded with its start,
//! status (0 when there was no answer) and the `version=` its body names.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::Res;

/// Enters the network namespace `netns` (`/run/netns/NAME`) on the calling thread.
fn enter(netns: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: setns only reads the descriptor, which `file` keeps open for the call, and
    // changes the network namespace of this thread alone (a thread of the harness's own that
    // runs nothing else).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A client for one request at a time, on a new connection each, through no proxy.
fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("an HTTP client: {e}"))
}

/// Runs `work` inside `netns` on a thread and runtime of its own; returns what it returns.
pub async fn in_netns<T, F, Fut>(netns: &str, timeout: Duration, work: F) -> Res<T>
where
    T: Send + 'static,
    F: FnOnce(reqwest::Client) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let result = (|| {
            enter(&netns).map_err(|e| format!("entering network namespace {netns}: {e}"))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("a runtime: {e}"))?;
            let client = client(timeout)?;
            Ok::<T, String>(runtime.block_on(work(client)))
        })();
        let _ = tx.send(result);
    });
    Ok(rx.await.map_err(|_| "the network thread ended")??)
}

/// One answer: its status (0: none), the version its body names, how long it took.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Seconds since the epoch, when the request started.
    pub start: f64,
    pub code: u16,
    pub version: Option<String>,
    pub took: f64,
}

impl Answer {
    pub fn ok_from(&self, version: &str) -> bool {
        self.code == 200 && self.version.as_deref() == Some(version)
    }
}

/// Seconds since the epoch, now.
pub fn epoch_now() -> f64 {
    epoch(&jiff::Timestamp::now())
}

/// Seconds since the epoch of `t`.
pub fn epoch(t: &jiff::Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

/// One GET of `url`; never fails: no answer is code 0.
pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    let start = epoch_now();
    let clock = Instant::now();
    let (code, body) = match client.get(url).header("Connection", "close").send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            (code, response.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    };
    let version = body
        .split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .map(str::to_owned);
    Answer {
        start,
        code,
        version,
        took: clock.elapsed().as_secs_f64(),
    }
}

/// `count` GETs of `url` in a row from inside `netns`.
pub async fn answers(netns: &str, url: &str, count: usize) -> Res<Vec<Answer>> {
    let url = url.to_owned();
    in_netns(netns, Duration::from_secs(2), move |client| async move {
        let mut answers = Vec::with_capacity(count);
        for _ in 0..count {
            answers.push(get(&client, &url).await);
        }
        answers
    })
    .await
}

/// "18 version=1.0.0, 2 failed" for a person.
pub fn tally(answers: &[Answer]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for a in answers {
        let key = match (&a.version, a.code) {
            (Some(v), 200) => format!("version={v}"),
            (_, 0) => "failed".to_owned(),
            (_, code) => format!("failed({code})"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A client sending to one URL continuously until stopped, recording every answer.
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts sending about `rate` requests a second to `url` from inside `netns`; returns once
    /// the first answer is recorded, so that what follows is measured with the client running.
    pub async fn start(netns: &str, url: &str, rate: u32) -> Res<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (netns_, url_, stop_, records_) = (
            netns.to_owned(),
            url.to_owned(),
            Arc::clone(&stop),
            Arc::clone(&records),
        );
        let step = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let thread = std::thread::spawn(move || {
            let Ok(()) = enter(&netns_) else { return };
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let Ok(client) = client(Duration::from_secs(2)) else {
                return;
            };
            runtime.block_on(async move {
                // Paced by the clock, not by a pause after each request, so the rate holds
                // whatever a request takes; behind after a slow answer, it goes on at once
                // and does not try to catch up.
                let mut next = tokio::time::Instant::now();
                while !stop_.load(Ordering::Relaxed) {
                    next += step;
                    let answer = get(&client, &url_).await;
                    if let Ok(mut r) = records_.lock() {
                        r.push(answer);
                    }
                    let now = tokio::time::Instant::now();
                    if next > now {
                        tokio::time::sleep_until(next).await;
                    } else {
                        next = now;
                    }
                }
            });
        });
        let load = Self {
            stop,
            records,
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while load.records().is_empty() {
            if Instant::now() > deadline {
                crate::fail!("the client recorded no request to {url} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(load)
    }

    /// Stops it (after the request under way).
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    pub fn records(&self) -> Vec<Answer> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The failed requests (not a 200).
    pub fn failures(&self) -> Vec<Answer> {
        self.records()
            .into_iter()
            .filter(|a| a.code != 200)
            .collect()
    }

    /// The start of the first request at or after `after` from which on every answer was a
    /// 200 from `version`; `None` when the last answer is not one.
    pub fn only_from(&self, version: &str, after: f64) -> Option<f64> {
        let mut since = None;
        for a in self.records().iter().filter(|a| a.start >= after) {
            if a.ok_from(version) {
                since.get_or_insert(a.start);
            } else {
                since = None;
            }
        }
        since
    }

    /// "requests N failed M; versions: ...".
    pub fn summary(&self) -> String {
        let records = self.records();
        format!(
            "requests {} failed {}; answers: {}",
            records.len(),
            records.iter().filter(|a| a.code != 200).count(),
            tally(&records)
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
