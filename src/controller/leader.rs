//! Lease-based leader election, so that several replicas can run and exactly one reconciles.
//!
//! A replica first waits to acquire the Lease (standing by, healthy), then runs the controllers
//! while it keeps renewing. If it cannot renew before the Lease would expire, it stops the
//! controllers and exits with an error, so that it never reconciles beside a new leader; the
//! kubelet restarts it as a standby. On SIGTERM it releases the Lease, so a standby takes over
//! at once instead of after the lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;

use crate::decide::leadership::{self, LeaseAction};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: reads the Lease and creates, renews or takes it over when ours to take.
    /// Returns whether we hold it afterwards. A conflict means another replica wrote first.
    async fn try_lead(&self) -> Result<bool, kube::Error> {
        let me = &self.settings.identity;
        let lease = self.api.get_opt(&self.settings.name).await?;
        let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
        let now = jiff::Timestamp::now();
        let action = leadership::decide(spec, me, now);
        let Some(next) = leadership::next_spec(spec, &action, me, now, self.duration_seconds())
        else {
            if let LeaseAction::Follow { holder } = action {
                tracing::debug!(%holder, "standing by");
            }
            return Ok(false);
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
            Ok(_) => {
                if action != LeaseAction::Renew {
                    tracing::info!(identity = %me, lease = %self.settings.name, "acquired the leader lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Waits until we lead; false if `shutdown` came first.
    pub async fn acquire(&self, shutdown: impl Future<Output = ()>) -> bool {
        let retry = self.settings.duration / 5;
        tokio::pin!(shutdown);
        loop {
            match self.try_lead().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot read or write the leader lease"),
            }
            tokio::select! {
                () = &mut shutdown => return false,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Renews the Lease until `shutdown`; returns early (leadership lost) when a renewal is
    /// refused or none has succeeded for two thirds of the lease duration.
    pub async fn hold(&self, shutdown: impl Future<Output = ()>) -> Leadership {
        let every = self.settings.duration / 3;
        let give_up = self.settings.duration * 2 / 3;
        let mut renewed = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Leadership::Kept,
                () = tokio::time::sleep(every) => {}
            }
            match self.try_lead().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return Leadership::Lost,
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the leader lease");
                    if renewed.elapsed() >= give_up {
                        return Leadership::Lost;
                    }
                }
            }
        }
    }

    /// Gives the Lease up, so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(error) => tracing::warn!(%error, "cannot release the leader lease"),
        }
    }
}

/// How holding the Lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// We stopped on request and still held it.
    Kept,
    /// Someone else holds it now, or we could not renew in time.
    Lost,
}
