//! The one HTTP client every git listing shares (`adapters::git_http`): connections kept and
//! reused, no thread per listing, redirects refused with a message that says what to do. A
//! test binary of its own, so that counting the process's threads counts only this test's.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::adapters::git::{self, GitError, GixRemote, Remote, RemoteRefs};

#[path = "support/hosts.rs"]
mod hosts;
use hosts::silent_host;

fn at(url: &str) -> Remote<'_> {
    Remote {
        url,
        credentials: None,
        insecure: false,
    }
}

/// A loopback HTTP server that answers every request with `answer`, on the connection it came
/// on (kept alive); returns its URL and how many connections it accepted.
fn answering_host(answer: &'static [u8]) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            *counted.lock().unwrap() += 1;
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // A request: its lines up to the blank one (a GET has no body).
                    let mut line = String::new();
                    let mut ended = false;
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        if line == "\r\n" {
                            ended = true;
                            break;
                        }
                        line.clear();
                    }
                    if !ended || writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/app.git"), accepted)
}

/// The tests of this binary run one at a time: one counts the process's threads.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Every listing goes through one HTTP client: one after another, listings of a host reuse
/// its connection, and listings at once start no threads of their own beyond the blocking
/// task each runs in (gitoxide's own backend started two per listing and built a client for
/// each: 5 connections and 19 threads here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_share_one_client_its_connections_and_its_thread() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (url, accepted) = answering_host(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let remote = GixRemote::new(Duration::from_secs(10), git::CONCURRENT_LISTINGS);
    for _ in 0..5 {
        let outcome = remote.head(at(&url), "main").await;
        assert!(
            matches!(outcome, Err(GitError::NotARepository { .. })),
            "{outcome:?}"
        );
    }
    let connections = *accepted.lock().unwrap();
    println!("measured: connections for 5 listings of one host, one after another = {connections}");
    assert_eq!(connections, 1, "the listings reuse the client's connection");

    let (silent, _) = silent_host();
    let remote = GixRemote::new(Duration::from_secs(2), 8).per_host(8);
    let before = threads();
    let listings: Vec<_> = (0..8)
        .map(|_| {
            let (remote, url) = (remote.clone(), silent.clone());
            tokio::spawn(async move { remote.head(at(&url), "main").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = threads();
    println!(
        "measured: threads added by 8 listings at once = {}",
        during.saturating_sub(before)
    );
    // The 8 blocking tasks, and the shared client's one thread if it had none yet.
    assert!(
        during <= before + 9,
        "8 listings at once took {} threads more than the blocking tasks they run in",
        during.saturating_sub(before + 9)
    );
    for listing in listings {
        listing.await.unwrap().unwrap_err();
    }
}

/// A redirect is not followed (it could lead elsewhere than the host the address policy
/// checked): the listing fails, saying where it points and what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_refused_with_what_to_change() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (url, _) = answering_host(
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://10.0.0.1:8080/moved.git/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\n\r\n",
    );
    let remote = GixRemote::new(Duration::from_secs(10), git::CONCURRENT_LISTINGS);
    let outcome = remote.head(at(&url), "main").await;
    let message = match outcome {
        Err(error) => error.to_string(),
        Ok(head) => panic!("a redirect was followed: {head:?}"),
    };
    assert!(
        message.contains("redirects to http://10.0.0.1:8080/moved.git")
            && message.contains("spec.source.url"),
        "{message}"
    );
}
