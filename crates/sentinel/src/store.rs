//! The store contract: what Sentinel keeps and how it is queried, independent of the engine.
//!
//! Pure types: no IO here. [`crate::sqlite::SqliteStore`] is the one implementation today.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use mcp_runtime_audit::{AuditEvent, Decision};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// An event to store: the parsed event (for the typed columns) and its JSON text exactly as
/// received (kept whole, so fields added by a newer gateway are not lost).
#[derive(Debug)]
pub struct NewEvent {
    pub event: AuditEvent<'static>,
    pub json: Box<RawValue>,
}

/// Which events a query covers. Every `Some` field must match exactly; `None` matches all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub server: Option<String>,
    pub namespace: Option<String>,
    /// The team owning the server (`team_id`).
    pub team: Option<String>,
    pub human: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<Decision>,
    pub reason: Option<String>,
    /// Inclusive lower bound of `time`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound of `time`.
    pub until: Option<Timestamp>,
}

/// A position in the newest-first order: the last event of a page. Opaque to clients (base64
/// of the event's time and id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor {
    /// The event's time in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub event_id: Uuid,
}

impl PageCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}/{}", self.time_ns, self.event_id))
    }

    pub fn decode(text: &str) -> Option<PageCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (time, id) = text.split_once('/')?;
        Some(PageCursor {
            time_ns: time.parse().ok()?,
            event_id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// One page of events, newest first.
#[derive(Debug)]
pub struct Page {
    /// Each event's JSON as it was ingested.
    pub events: Vec<Box<RawValue>>,
    /// Where the next page starts; `None` when this page is the last.
    pub next_cursor: Option<PageCursor>,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InsertOutcome {
    /// Events stored now.
    pub accepted: u64,
    /// Events already stored (same `event_id`): ignored.
    pub duplicates: u64,
}

/// Totals over the events a filter covers. A decision is counted `count` times when the event
/// aggregates identical refusals (`count` absent means one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Stored events.
    pub events: u64,
    /// Decisions those events stand for.
    pub decisions: u64,
    /// Decisions by `decision` (`allow`, `deny`).
    pub by_decision: std::collections::BTreeMap<String, u64>,
    /// Decisions by `reason`.
    pub by_reason: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Where events are kept. Calls block: async callers run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Stores `events`; an event whose `event_id` is already stored is ignored, so a retried
    /// batch is never counted twice. All or nothing.
    fn insert(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError>;

    /// Up to `limit` events matching `filter`, newest first (ties by `event_id`, descending),
    /// starting after `after`.
    fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<&PageCursor>,
    ) -> Result<Page, StoreError>;

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError>;

    /// Answers a trivial query over the stored events (readiness: the store is open, its schema
    /// in place and it answers reads).
    fn ready(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = PageCursor {
            time_ns: 1_795_489_611_123_000_000,
            event_id: Uuid::new_v4(),
        };
        assert_eq!(PageCursor::decode(&c.encode()), Some(c));
        assert_eq!(PageCursor::decode("not a cursor!"), None);
        assert_eq!(PageCursor::decode(&URL_SAFE_NO_PAD.encode("12/zz")), None);
    }
}
