//! Leader election against the real API server when things go wrong: a leader whose clock is
//! an hour off and whose network then stalls.
//!
//! Two electors run in this process on one Lease. Replica A reaches the API server through a
//! loopback TCP proxy that the test freezes (it stops forwarding without closing, so A's
//! requests hang as on a stalled network); replica B connects directly. Each replica's work
//! stands for the controllers: it records when it starts and when it stops, on this process's
//! monotonic clock, and it ignores the request to stop gracefully, like a long reconcile still
//! in flight. The tests assert that the two replicas' work never overlaps: A's renewal is
//! abandoned and its work dropped at its deadline, and B takes over only after that.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::api::Time;
use ferry::controller::{Clock, Elector, LeaseSettings, Lost, run_while_leading};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::{TestNamespace, WAIT};

/// Short, so the tests are quick, but above the 3s minimum; the leader stops a third of it
/// (1.33s) before a standby may start, which is the margin these tests stand on.
const LEASE: Duration = Duration::from_secs(4);
const HOUR: i64 = 3_600;

/// A leader whose clock lags an hour writes `renewTime`s an hour old. A standby that judged
/// expiry by them would take over a live leader at once. It must wait, and take over only
/// after the leader, its network frozen, has stopped at its deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_clock_lags_an_hour_keeps_the_lease_and_stops_before_a_standby_takes_over() {
    let handover = handover(-HOUR).await;
    assert!(
        handover.b_started_after_freeze >= LEASE / 3,
        "B must not take over while A could still be leading; it started {:?} after the freeze",
        handover.b_started_after_freeze
    );
}

/// A leader whose clock runs an hour ahead writes `renewTime`s an hour in the future. A
/// standby that judged expiry by them would wait an hour after the leader stalled; it must
/// take over about a lease duration after the record stopped changing.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_leader_whose_clock_runs_an_hour_ahead_is_taken_over_after_one_lease() {
    let handover = handover(HOUR).await;
    assert!(
        handover.b_started_after_freeze <= LEASE * 2,
        "B took over {:?} after A stalled, more than two lease durations",
        handover.b_started_after_freeze
    );
}

/// What `handover` measured.
struct Handover {
    b_started_after_freeze: Duration,
}

/// Runs A (clock off by `skew_seconds`, behind the proxy) as the leader and B as a standby for
/// two lease durations, freezes A's network, and checks that the work never overlapped.
async fn handover(skew_seconds: i64) -> Handover {
    let ns = TestNamespace::new("lease").await;
    let upstream = api_server_address().await;
    let proxy = FreezableProxy::start(upstream).await;
    let settings = |identity: &str| LeaseSettings {
        namespace: ns.name.clone(),
        name: "ferry-test".to_owned(),
        identity: identity.to_owned(),
        duration: LEASE,
    };
    let journal = Journal::default();
    let skewed = Skewed(jiff::SignedDuration::from_secs(skew_seconds));
    let a = Elector::new(client_via(proxy.address).await, settings("replica-a"))
        .with_wall_clock(Box::new(skewed));
    let a = journal.replica("a", a, pending(), Stop::Never);
    journal.wait_until_working("a").await;

    let (stop_b, stopped_b) = watch::channel(false);
    let b = Elector::new(ns.client.clone(), settings("replica-b"));
    let b = journal.replica(
        "b",
        b,
        ferry::controller::wait_for(stopped_b),
        Stop::WhenAsked,
    );

    // Both stay up for two lease durations; A renews, B watches it renew. A quiet period,
    // not a wait: B must not take the Lease over in that time.
    tokio::time::sleep(LEASE * 2).await;
    let leases: Api<Lease> = ns.api();
    let lease = leases.get("ferry-test").await.expect("reading the Lease");
    let spec = lease.spec.expect("a Lease spec");
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some("replica-a"),
        "the Lease moved while its holder kept renewing it"
    );
    let renewed = spec.renew_time.expect("a renewTime").0;
    let off = renewed.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (off - skew_seconds).abs() < 60,
        "A's renewTime is {off}s off the wall clock, not {skew_seconds}s"
    );
    assert!(
        journal.intervals("b").is_empty(),
        "B took over a leader that kept renewing: {:?}",
        journal.intervals("b")
    );

    let frozen = proxy.freeze();
    journal.wait_until_working("b").await;
    let a_work = journal.intervals("a");
    let b_work = journal.intervals("b");
    let [(b_started, _)] = b_work[..] else {
        panic!("B worked once: {b_work:?}")
    };
    let a_stopped = match a_work[..] {
        [(_, Some(stopped))] => stopped,
        [(_, None)] => panic!(
            "A was still working when B started, {:?} after the freeze: they overlapped",
            b_started.saturating_duration_since(frozen)
        ),
        _ => panic!("A worked once: {a_work:?}"),
    };
    let a_outcome = tokio::time::timeout(WAIT, a)
        .await
        .expect("A returns once its work is dropped")
        .expect("A's task did not panic");
    assert!(a_outcome.is_err(), "A reports the lost Lease");
    let after_freeze = |at: Instant| at.saturating_duration_since(frozen);
    assert!(
        a_stopped <= b_started,
        "A worked until {:?} after the freeze and B started {:?} after it: they overlapped",
        after_freeze(a_stopped),
        after_freeze(b_started)
    );
    assert!(
        after_freeze(a_stopped) <= LEASE,
        "A stopped {:?} after its network froze, past its lease",
        after_freeze(a_stopped)
    );
    println!(
        "measured: leader_stopped_after_freeze_skew_{skew_seconds}s = {} ms",
        after_freeze(a_stopped).as_millis()
    );
    println!(
        "measured: standby_started_after_freeze_skew_{skew_seconds}s = {} ms",
        after_freeze(b_started).as_millis()
    );
    println!(
        "measured: handover_gap_skew_{skew_seconds}s = {} ms",
        b_started.saturating_duration_since(a_stopped).as_millis()
    );

    stop_b.send_replace(true);
    let b_outcome = tokio::time::timeout(WAIT, b)
        .await
        .expect("B stops when asked")
        .expect("B's task did not panic");
    assert!(b_outcome.is_ok(), "B stopped on request: {b_outcome:?}");
    let released = leases.get("ferry-test").await.expect("reading the Lease");
    assert_eq!(
        released.spec.and_then(|s| s.holder_identity),
        None,
        "B released the Lease"
    );
    drop(proxy);
    ns.cleanup().await;
    Handover {
        b_started_after_freeze: after_freeze(b_started),
    }
}

/// A wall clock that is off by a fixed amount.
struct Skewed(jiff::SignedDuration);

impl Clock for Skewed {
    fn now(&self) -> Time {
        let now = jiff::Timestamp::now();
        Time(now.checked_add(self.0).unwrap_or(now))
    }
}

fn pending() -> std::future::Pending<()> {
    std::future::pending()
}

/// Whether a replica's work honours the request to stop gracefully.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    WhenAsked,
    /// Like a reconcile still in flight when the Lease is lost: only dropping it stops it.
    Never,
}

/// One stretch of a replica's work: who, when it began, when it ended (if it has).
type Entry = (&'static str, Instant, Option<Instant>);

/// When each replica's work ran, on this process's monotonic clock; a `watch` channel, so
/// that a test can wait for an entry instead of polling.
#[derive(Clone)]
struct Journal(Arc<watch::Sender<Vec<Entry>>>);

impl Default for Journal {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Vec::new())))
    }
}

impl Journal {
    /// Runs a replica whose work is recorded here; `shutdown` asks it to stop gracefully.
    fn replica(
        &self,
        name: &'static str,
        elector: Elector,
        shutdown: impl Future<Output = ()> + Send + 'static,
        honours: Stop,
    ) -> JoinHandle<Result<(), Lost>> {
        let journal = self.clone();
        tokio::spawn(run_while_leading(
            elector,
            shutdown,
            move |stop| async move {
                let _working = journal.begin(name);
                if honours == Stop::Never {
                    std::future::pending::<()>().await;
                }
                stop.await;
            },
        ))
    }

    fn begin(&self, name: &'static str) -> Working {
        let mut index = 0;
        self.0.send_modify(|entries| {
            entries.push((name, Instant::now(), None));
            index = entries.len() - 1;
        });
        Working {
            journal: self.clone(),
            index,
        }
    }

    fn intervals(&self, name: &str) -> Vec<(Instant, Option<Instant>)> {
        self.0
            .borrow()
            .iter()
            .filter(|(n, ..)| *n == name)
            .map(|(_, start, end)| (*start, *end))
            .collect()
    }

    async fn wait_until_working(&self, name: &str) {
        let mut entries = self.0.subscribe();
        tokio::time::timeout(
            WAIT,
            entries.wait_for(|entries| entries.iter().any(|(n, ..)| *n == name)),
        )
        .await
        .unwrap_or_else(|_| panic!("replica {name} did not start leading within {WAIT:?}"))
        .expect("the journal is open");
    }
}

/// Records the end of a replica's work when the work is dropped, however that happens.
struct Working {
    journal: Journal,
    index: usize,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.journal.0.send_modify(|entries| {
            if let Some(entry) = entries.get_mut(self.index) {
                entry.2 = Some(Instant::now());
            }
        });
    }
}

/// The API server's address, from the test kubeconfig.
async fn api_server_address() -> SocketAddr {
    let config = kube::Config::infer().await.expect("the test kubeconfig");
    let host = config.cluster_url.host().expect("the API server's host");
    let port = config.cluster_url.port_u16().unwrap_or(443);
    tokio::net::lookup_host((host, port))
        .await
        .expect("resolving the API server")
        .next()
        .expect("an address for the API server")
}

/// A client like the tests' own, but reaching the API server at `address` (the proxy). The
/// proxy listens on the same loopback IP, so the server certificate still matches.
async fn client_via(address: SocketAddr) -> Client {
    let mut config = kube::Config::infer().await.expect("the test kubeconfig");
    config.cluster_url = format!("https://{address}")
        .parse()
        .expect("the proxy's URL");
    Client::try_from(config).expect("a client through the proxy")
}

/// A TCP proxy on loopback that can be frozen: it then holds every byte in both directions
/// without closing any connection, as a stalled network does.
struct FreezableProxy {
    address: SocketAddr,
    frozen: watch::Sender<bool>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: JoinHandle<()>,
}

impl FreezableProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((upstream.ip(), 0))
            .await
            .expect("a loopback port for the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let (frozen, _) = watch::channel(false);
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let accept = {
            let frozen = frozen.clone();
            let tasks = tasks.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    if let Ok(mut tasks) = tasks.lock() {
                        tasks.spawn(pipe(client_read, server_write, frozen.subscribe()));
                        tasks.spawn(pipe(server_read, client_write, frozen.subscribe()));
                    }
                }
            })
        };
        Self {
            address,
            frozen,
            tasks,
            accept,
        }
    }

    /// Stops forwarding; returns when.
    fn freeze(&self) -> Instant {
        self.frozen.send_replace(true);
        Instant::now()
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }
}

/// Copies bytes one way, holding them while the proxy is frozen.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            break;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A leader whose leading is dropped (its task aborted) stops renewing: the renewals, which run
/// in a task of their own, must not outlive it and keep the Lease from every standby.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_leader_stops_renewing_its_lease() {
    let ns = TestNamespace::new("lease-drop").await;
    let settings = LeaseSettings {
        namespace: ns.name.clone(),
        name: "ferry-test".to_owned(),
        identity: "replica-a".to_owned(),
        duration: LEASE,
    };
    let elector = Elector::new(ns.client.clone(), settings);
    let (led_tx, mut led) = watch::channel(false);
    let leading = tokio::spawn(run_while_leading(elector, pending(), move |_stop| {
        led_tx.send_replace(true);
        pending()
    }));
    tokio::time::timeout(WAIT, led.wait_for(|l| *l))
        .await
        .expect("leading in time")
        .expect("the work started");
    leading.abort();
    let _ = leading.await;
    // Renewals come every third of a lease: two leases without a change mean none is left.
    let leases: Api<Lease> = ns.api();
    let renewed = || async {
        let lease = leases.get("ferry-test").await.expect("reading the Lease");
        lease.spec.and_then(|s| s.renew_time).map(|t| t.0)
    };
    tokio::time::sleep(LEASE / 2).await;
    let before = renewed().await;
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(
        renewed().await,
        before,
        "the Lease was renewed after its leader was dropped"
    );
    ns.cleanup().await;
}
