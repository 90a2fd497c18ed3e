//! Loopback hosts that misbehave, for the git adapter's tests.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A loopback port that accepts connections and never answers (a git host down behind a load
/// balancer, say); returns its URL and the connections it holds.
pub fn silent_host() -> (String, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    // Holds every connection open, unanswered, for the life of the test process.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            held.lock().unwrap().push(stream);
        }
    });
    (format!("http://127.0.0.1:{port}/app.git"), accepted)
}
