//! Lease-based leader election, so that several replicas can run and at most one reconciles.
//!
//! A replica stands by (healthy and ready) until it holds the Lease, then runs its work (the
//! controllers) while it keeps renewing. Who may take the Lease over, and when the holder
//! must stop, is decided in `decide::leadership` from this replica's own monotonic clock,
//! never from the `renewTime` another replica's wall clock wrote.
//!
//! The holder counts its lease from the instant before its last successful renewal and must
//! stop leading at [`leadership::stop_leading_by`] (two thirds into the lease). Every renewal
//! request is abandoned at that deadline, however the API server or the network stalls, and
//! the work is then dropped at once: the controllers' in-flight reconciles are aborted rather
//! than allowed to finish and write after the leadership is gone. [`run_while_leading`] then
//! returns [`Lost`], and the process exits with an error so the kubelet restarts it as a
//! standby. On a shutdown request the work stops gracefully while renewals go on; the Lease is
//! then released, so that a standby takes over at once instead of after a lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Clock, SystemClock, wait_for};
use crate::decide::leadership::{self, LeaseAction, Moment, Observed, Record};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long the Lease lasts without renewal; the command line keeps it within
    /// [`leadership::MIN_LEASE_DURATION`] and [`leadership::MAX_LEASE_DURATION`].
    pub duration: Duration,
}

/// One replica's side of the election: the Lease API and what it has observed of the Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// Only for the `renewTime` and `acquireTime` written, which people read.
    wall: Box<dyn Clock>,
    /// The origin of this replica's [`Moment`]s.
    origin: Instant,
    observed: Option<Observed>,
}

/// How one round of reading (and maybe writing) the Lease ended.
enum Round {
    /// We hold the Lease, counted from this instant (taken before the successful write).
    Holding { since: Instant },
    /// Someone else holds it, or won the race to write it; look again by `until` at the latest.
    Standing { until: Option<Instant> },
}

/// The leadership was lost: a renewal was refused or none succeeded before the deadline.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "lost the leader lease {lease} ({why}); stopped the controllers so that only the leader reconciles"
)]
pub struct Lost {
    lease: String,
    why: &'static str,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            wall: Box::new(SystemClock),
            origin: Instant::now(),
            observed: None,
        }
    }

    /// The same elector with another wall clock, for a test of a replica whose clock is off.
    pub fn with_wall_clock(self, wall: Box<dyn Clock>) -> Self {
        Self { wall, ..self }
    }

    fn moment(&self, instant: Instant) -> Moment {
        Moment::after_origin(instant.saturating_duration_since(self.origin))
    }

    fn instant(&self, moment: Moment) -> Instant {
        // A moment too far to represent never comes; a year stands in for never.
        let far = Duration::from_secs(365 * 24 * 60 * 60);
        self.origin
            .checked_add(moment.since_origin())
            .unwrap_or_else(|| Instant::now() + far)
    }

    fn lost(&self, why: &'static str) -> Lost {
        Lost {
            lease: format!("{}/{}", self.settings.namespace, self.settings.name),
            why,
        }
    }

    /// One round: reads the Lease and creates, renews or takes it over when ours to take.
    async fn try_lead(&mut self) -> Result<Round, kube::Error> {
        let started = Instant::now();
        let lease = self.api.get_opt(&self.settings.name).await?;
        // A standby counts from when the response arrived: the holder wrote no later.
        let read_at = self.moment(Instant::now());
        self.observed =
            leadership::observe(self.observed.take(), lease.as_ref().map(record), read_at);
        let me = self.settings.identity.as_str();
        let action =
            leadership::decide(self.observed.as_ref(), me, read_at, self.settings.duration);
        let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
        let Some(next) =
            leadership::next_spec(spec, &action, me, self.wall.now().0, self.settings.duration)
        else {
            let LeaseAction::Follow { holder, until } = action else {
                return Ok(Round::Standing { until: None });
            };
            tracing::debug!(%holder, "standing by");
            return Ok(Round::Standing {
                until: Some(self.instant(until)),
            });
        };
        let written = match lease {
            None => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(self.settings.name.clone());
                lease.metadata.namespace = Some(self.settings.namespace.clone());
                lease.spec = Some(next);
                self.api.create(&PostParams::default(), &lease).await
            }
            // `replace` carries the resourceVersion read above: optimistic concurrency.
            Some(mut lease) => {
                lease.spec = Some(next);
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                if action != LeaseAction::Renew {
                    tracing::info!(identity = %me, lease = %self.settings.name, "acquired the leader lease");
                }
                let at = self.moment(started);
                self.observed = leadership::observe(self.observed.take(), Some(record(&lease)), at);
                // The holder counts from before the round: the API server stored it later.
                Ok(Round::Holding { since: started })
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Round::Standing { until: None })
            }
            Err(error) => Err(error),
        }
    }

    /// Waits until we lead and returns the instant our lease counts from; None if `shutdown`
    /// came first.
    pub async fn acquire(&mut self, shutdown: impl Future<Output = ()>) -> Option<Instant> {
        let duration = self.settings.duration;
        let retry = duration / 5;
        tokio::pin!(shutdown);
        loop {
            let round = async {
                let wake = match tokio::time::timeout(duration, self.try_lead()).await {
                    Ok(Ok(Round::Holding { since })) => {
                        let by = leadership::stop_leading_by(self.moment(since), duration);
                        if self.moment(Instant::now()) < by {
                            return Some(since);
                        }
                        // The write took so long that the lease it won is nearly over; the
                        // next round renews it with a fresh count before we lead on it.
                        tracing::warn!("acquiring the leader lease took too long; renewing first");
                        None
                    }
                    Ok(Ok(Round::Standing { until })) => until,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot read or write the leader lease");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(?duration, "reading or writing the leader lease timed out");
                        None
                    }
                };
                let next = Instant::now() + retry;
                tokio::time::sleep_until(wake.map_or(next, |wake| wake.min(next))).await;
                None
            };
            tokio::select! {
                () = &mut shutdown => return None,
                held = round => if held.is_some() { return held },
            }
        }
    }

    /// Renews the Lease, begun to count at `since`, for as long as that works. Returns when
    /// the leadership is lost, at the latest at the deadline of the last successful renewal:
    /// a renewal still pending then is abandoned.
    pub async fn hold(&mut self, since: Instant) -> Lost {
        let duration = self.settings.duration;
        let retry = duration / 10;
        let mut deadline = self.instant(leadership::stop_leading_by(self.moment(since), duration));
        let mut next = self.instant(leadership::renew_at(self.moment(since), duration));
        loop {
            tokio::time::sleep_until(next.min(deadline)).await;
            if Instant::now() >= deadline {
                return self.lost("no renewal succeeded in time");
            }
            match tokio::time::timeout_at(deadline, self.try_lead()).await {
                Ok(Ok(Round::Holding { since })) => {
                    let since = self.moment(since);
                    deadline = self.instant(leadership::stop_leading_by(since, duration));
                    next = self.instant(leadership::renew_at(since, duration));
                }
                Ok(Ok(Round::Standing { .. })) => {
                    return self.lost("another replica holds it");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot renew the leader lease");
                    next = Instant::now() + retry;
                }
                Err(_) => {
                    return self.lost("a renewal was still pending at the lease deadline");
                }
            }
        }
    }

    /// Gives the Lease up, so that a standby takes over at once. Bounded by a lease duration.
    pub async fn release(&mut self) {
        let duration = self.settings.duration;
        match tokio::time::timeout(duration, self.try_release()).await {
            Ok(Ok(true)) => tracing::info!("released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot release the leader lease"),
            Err(_) => tracing::warn!(?duration, "releasing the leader lease timed out"),
        }
    }

    async fn try_release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }
}

fn record(lease: &Lease) -> Record {
    Record {
        resource_version: lease.metadata.resource_version.clone(),
        spec: lease.spec.clone().unwrap_or_default(),
    }
}

/// The signal that asks the work to stop gracefully (see [`super::wait_for`]).
pub type StopSignal = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Stands by until `elector` holds the Lease, then runs `work` while it does.
///
/// - `shutdown` resolving asks `work` to stop through its [`StopSignal`]; renewals go on
///   meanwhile, and once `work` has finished the Lease is released. Returns Ok.
/// - Losing the Lease drops `work` at once, whatever it is doing, no later than the deadline
///   of the last successful renewal. Returns the [`Lost`] error.
pub async fn run_while_leading<W, F>(
    mut elector: Elector,
    shutdown: impl Future<Output = ()>,
    work: W,
) -> Result<(), Lost>
where
    W: FnOnce(StopSignal) -> F,
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let Some(since) = elector.acquire(&mut shutdown).await else {
        return Ok(());
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // The renewals run in a task of their own, on whichever worker thread is free: polled
    // together with `work`, they waited whenever `work` did a long stretch without yielding
    // (thousands of cached objects told to the controllers at once, after a list), and the
    // Lease was lost under load (the scale tier, at 10,000 Applications).
    let lease = elector.lost("the renewals stopped");
    // Sending on `end_hold`, or dropping it (whatever ends this function, a dropped future
    // included), ends the renewals: a task left renewing would keep the Lease from every
    // standby.
    let (end_hold, ended_hold) = tokio::sync::oneshot::channel::<()>();
    let mut holding = tokio::spawn(async move {
        let lost = tokio::select! {
            lost = elector.hold(since) => Some(lost),
            _ = ended_hold => None,
        };
        (elector, lost)
    });
    let ended = {
        let work = work(wait_for(stop_rx));
        tokio::pin!(work);
        let mut stopping = false;
        loop {
            tokio::select! {
                // Leaving this block drops `work`: the controllers and their reconciles.
                held = &mut holding => break Err(match held {
                    Ok((_, Some(lost))) => lost,
                    // Ended without a loss it could name (it cannot end otherwise, unless it
                    // panicked): the Lease cannot be counted on any more.
                    _ => lease.clone(),
                }),
                () = &mut work => break Ok(()),
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    stop_tx.send_replace(true);
                }
            }
        }
    };
    match ended {
        Ok(()) => {
            let _ = end_hold.send(());
            match holding.await {
                Ok((mut elector, None)) => {
                    elector.release().await;
                    Ok(())
                }
                Ok((_, Some(lost))) => Err(lost),
                Err(_) => Err(lease),
            }
        }
        // The caller logs it: the process exits with this error.
        Err(lost) => Err(lost),
    }
}
