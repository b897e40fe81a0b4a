//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the lease and runs the controllers; the others wait. The holder renews
//! every third of the lease duration; if it cannot renew within two thirds (e.g. the apiserver
//! is unreachable) it stops its controllers and campaigns again, so two replicas never
//! reconcile at once for longer than clock drift allows. Expiry is judged by *local* time since
//! the lease record last changed, never by comparing clocks with the holder (as client-go
//! does). Writes use optimistic concurrency (resourceVersion): of two candidates, one wins.

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// What identifies one renewal of a lease: its holder and renew time.
type Record = (Option<String>, Option<MicroTime>);

/// A lease lock held by `identity`.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record seen (holder, renewTime) and when it was first seen in that state.
    observed: Option<(Record, Instant)>,
}

/// What a campaign round found.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// This replica holds the lease.
    Leading,
    /// Another replica holds it.
    Following(Option<String>),
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Acquires, renews, or observes the lease once.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Following(None)),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let seen_since = match &self.observed {
            Some((r, since)) if *r == record => *since,
            _ => {
                self.observed = Some((record, Instant::now()));
                Instant::now()
            }
        };
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let their_duration = Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(self.duration.as_secs()),
        );
        let expired = holder.is_none() || seen_since.elapsed() > their_duration;
        if !ours && !expired {
            return Ok(Round::Following(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.seconds()),
            acquire_time: if ours {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..spec
        });
        // resourceVersion from the read: a concurrent writer makes this fail with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

/// How a leadership term ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TermEnd {
    Shutdown,
    Lost,
    WorkEnded,
}

/// Runs `work()` while holding the lease, until `shutdown` resolves. Losing the lease stops
/// the work and campaigns again. `on_change(true|false)` reports leadership; `on_contact` is
/// called after each successful API round trip.
pub async fn run<W, Fut>(
    mut lock: LeaseLock,
    shutdown: impl Future<Output = ()>,
    mut work: W,
    on_change: impl Fn(bool),
    on_contact: impl Fn(),
) where
    W: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let retry = (lock.duration / 5).max(Duration::from_millis(500));
    let renew_every = lock.duration / 3;
    let renew_deadline = lock.duration * 2 / 3;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Campaign.
        let mut last_holder = None;
        loop {
            let round = tokio::select! {
                () = &mut shutdown => return,
                r = lock.try_acquire_or_renew() => r,
            };
            match round {
                Ok(Round::Leading) => break,
                Ok(Round::Following(holder)) => {
                    on_contact();
                    if holder != last_holder {
                        tracing::info!(holder = ?holder, "waiting for the leader lease");
                        last_holder = holder;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "leader election: cannot read the lease"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
        on_contact();
        tracing::info!(identity = %lock.identity, "acquired the leader lease");
        on_change(true);
        let end = {
            let identity = lock.identity.clone();
            let renewer = async {
                let mut last_renewal = Instant::now();
                loop {
                    tokio::time::sleep(renew_every).await;
                    let left = renew_deadline.saturating_sub(last_renewal.elapsed());
                    match tokio::time::timeout(left, lock.try_acquire_or_renew()).await {
                        Ok(Ok(Round::Leading)) => {
                            last_renewal = Instant::now();
                            on_contact();
                        }
                        Ok(Ok(Round::Following(holder))) => {
                            tracing::warn!(holder = ?holder, identity = %identity, "another replica took the leader lease");
                            return;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not renew the leader lease")
                        }
                        Err(_) => {}
                    }
                    if last_renewal.elapsed() >= renew_deadline {
                        tracing::warn!(deadline = ?renew_deadline, "could not renew the leader lease in time; stopping the controllers");
                        return;
                    }
                }
            };
            tokio::select! {
                () = &mut shutdown => TermEnd::Shutdown,
                () = work() => TermEnd::WorkEnded,
                () = renewer => TermEnd::Lost,
            }
        };
        on_change(false);
        match end {
            TermEnd::Shutdown => {
                lock.release().await;
                return;
            }
            TermEnd::Lost => {}
            TermEnd::WorkEnded => {
                tracing::error!("the controllers stopped unexpectedly; campaigning again");
                lock.release().await;
            }
        }
    }
}
