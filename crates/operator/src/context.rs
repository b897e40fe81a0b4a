//! What every reconciliation shares: the client, the configuration, the caches and indexes,
//! the event recorder, metrics, and per-object failure counts for exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer};

use crate::children::{Applied, Children};
use crate::config::Config;
use crate::index::TargetIndex;
use crate::metrics::Metrics;

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "mcp-runtime-operator";

/// How long a reconciliation waits for the caches' first list before it gives up (and is
/// retried with backoff).
pub const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Which caches have finished their first list. Set from the watch streams (`InitDone`), so
/// any number of reconciliations can wait on it. (`Store::wait_until_ready` wakes only one of
/// several concurrent waiters in kube-runtime 5, which stalled reconciles after a re-election.)
pub struct Synced {
    tx: tokio::sync::watch::Sender<u8>,
}

impl Synced {
    pub const SERVERS: u8 = 1;
    pub const GRANTS: u8 = 2;
    pub const SESSIONS: u8 = 4;
    pub const ALL: u8 = 7;

    pub fn new() -> Self {
        Self {
            tx: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn mark(&self, bits: u8) {
        self.tx.send_if_modified(|v| {
            let before = *v;
            *v |= bits;
            *v != before
        });
    }

    /// Waits until every cache in `bits` has listed once; false after `CACHE_SYNC_TIMEOUT`.
    pub async fn wait(&self, bits: u8) -> bool {
        let mut rx = self.tx.subscribe();
        tokio::time::timeout(CACHE_SYNC_TIMEOUT, rx.wait_for(|v| *v & bits == bits))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Default for Synced {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Context {
    pub client: Client,
    /// Caches of the objects servers own.
    pub children: Children,
    /// What the server controller last applied (see `children`).
    pub applied: Arc<Applied>,
    pub config: Config,
    pub servers: Store<MCPServer>,
    pub grants: Store<MCPAccessGrant>,
    pub sessions: Store<MCPAgentSession>,
    pub grant_index: Arc<TargetIndex<MCPAccessGrant>>,
    pub session_index: Arc<TargetIndex<MCPAgentSession>>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub synced: Arc<Synced>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        children: Children,
        applied: Arc<Applied>,
        config: Config,
        servers: Store<MCPServer>,
        grants: Store<MCPAccessGrant>,
        sessions: Store<MCPAgentSession>,
        grant_index: Arc<TargetIndex<MCPAccessGrant>>,
        session_index: Arc<TargetIndex<MCPAgentSession>>,
        metrics: Arc<Metrics>,
        synced: Arc<Synced>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(config.identity.clone()),
            },
        );
        Self {
            client,
            children,
            applied,
            config,
            servers,
            grants,
            sessions,
            grant_index,
            session_index,
            recorder,
            metrics,
            synced,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 997;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(
                object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
                reason,
                error = %e,
                "could not publish event"
            );
        }
    }

    fn failure_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        )
    }

    /// Records one more consecutive failure of `obj`; returns the delay before the retry:
    /// 1 s doubling up to 5 min, with up to 10 % jitter so failures do not retry in lockstep.
    pub fn next_backoff<K: Resource<DynamicType = ()>>(&self, obj: &K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(Self::failure_key(obj)).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    /// Forgets the failures of `obj` after a success.
    pub fn reset_backoff<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Self::failure_key(obj));
    }
}

/// Delay after `n` consecutive failures.
pub fn backoff(n: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << n.saturating_sub(1).min(9))
        .min(Duration::from_secs(300));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let jitter = base.mul_f64(f64::from(nanos % 100) / 1000.0);
    base + jitter
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs = |n| super::backoff(n).as_secs_f64();
        assert!((1.0..1.11).contains(&secs(1)));
        assert!((2.0..2.21).contains(&secs(2)));
        assert!((16.0..17.7).contains(&secs(5)));
        assert!((300.0..330.1).contains(&secs(30)));
    }
}
