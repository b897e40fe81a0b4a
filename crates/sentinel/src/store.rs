//! The store contract: what Sentinel keeps and how it is queried, independent of the engine.
//!
//! Pure types: no IO here. [`crate::sqlite::SqliteStore`] is the embedded implementation; every
//! store answers the same [`Store`] calls, so the analytics API and its tests are shared.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// `event_type` of the gateway's audit events (one per decision).
pub const GATEWAY_EVENT_TYPE: &str = "mcp.request";

/// One event, normalised for storage: typed columns for filtering and rollups, and the JSON
/// document returned by queries. Built by [`crate::ingest`] from a gateway audit event or from
/// an envelope (`source`, `event_type`, `payload`) of another producer. Its JSON form is what
/// travels on Kafka between the ingest and the processor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The idempotency key: an event already stored with this id is ignored.
    pub event_id: Uuid,
    pub time: Timestamp,
    /// `time` is when the ingest received the event (an envelope without `timestamp`), so a
    /// retry of the same event carries another time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arrival_time: bool,
    /// Who emitted it (`hello-gateway`, `billing-service`, …).
    pub source: String,
    pub event_type: String,
    pub trace_id: Option<String>,
    pub server: Option<String>,
    pub namespace: Option<String>,
    /// The team owning the server.
    pub team: Option<String>,
    pub human: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub tool: Option<String>,
    /// `allow`, `deny`, or absent for events that are not decisions.
    pub decision: Option<String>,
    pub reason: Option<String>,
    /// Decisions this event stands for (refusals before authentication are aggregated).
    pub count: u64,
    /// The document queries return (after redaction).
    pub json: Box<RawValue>,
}

/// Which namespaces and teams a caller may see. An event is visible when its namespace is in
/// `namespaces` or its team in `teams`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub namespaces: BTreeSet<String>,
    pub teams: BTreeSet<String>,
}

/// Which events a query covers. Every `Some` field must match exactly; `None` matches all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub server: Option<String>,
    pub namespace: Option<String>,
    /// The team owning the server (`team_id`).
    pub team: Option<String>,
    pub human: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub trace_id: Option<String>,
    /// Inclusive lower bound of `time`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound of `time`.
    pub until: Option<Timestamp>,
    /// What the caller may see; `None` = everything (an unscoped key).
    pub scope: Option<Scope>,
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
    /// Each event's stored document.
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
    /// Decisions those events stand for (events without a decision are not decisions).
    pub decisions: u64,
    /// Decisions by `decision` (`allow`, `deny`).
    pub by_decision: std::collections::BTreeMap<String, u64>,
    /// Decisions by `reason`.
    pub by_reason: std::collections::BTreeMap<String, u64>,
}

/// Width of one point of a usage time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }

    /// Hourly points for a window up to two days, daily beyond.
    pub fn for_window(since: Timestamp, until: Timestamp) -> Bucket {
        if until.as_second() - since.as_second() <= 2 * 86_400 {
            Bucket::Hour
        } else {
            Bucket::Day
        }
    }
}

/// What a usage rollup covers: the events of `filter` (whose `since`/`until` are the window),
/// grouped into `bucket`s, at most `limit` rows per ranking.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageQuery {
    pub filter: EventFilter,
    pub since: Timestamp,
    pub until: Timestamp,
    pub bucket: Bucket,
    pub limit: usize,
}

/// Decision counts shared by every rollup row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub decisions: u64,
    pub allowed: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    /// Stored events, decisions or not.
    pub events: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub servers: u64,
    pub humans: u64,
    pub agents: u64,
    pub sessions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerUsage {
    pub server: String,
    pub namespace: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub humans: u64,
    pub agents: u64,
    pub last_seen: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActorUsage {
    pub human: Option<String>,
    pub agent: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub servers: u64,
    pub tools: u64,
    pub last_seen: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolUsage {
    pub server: String,
    pub tool: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub last_seen: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyCount {
    pub key: String,
    pub decisions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub start: Timestamp,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A usage rollup: totals, rankings (most decisions first) and a time series with one point
/// per bucket of the window, empty buckets included.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    pub since: Timestamp,
    pub until: Timestamp,
    pub bucket: Bucket,
    pub totals: UsageTotals,
    pub servers: Vec<ServerUsage>,
    pub actors: Vec<ActorUsage>,
    pub tools: Vec<ToolUsage>,
    pub decisions: Vec<KeyCount>,
    pub reasons: Vec<KeyCount>,
    pub series: Vec<SeriesPoint>,
    /// The newest events of the window (their stored documents).
    pub recent: Vec<Box<RawValue>>,
}

/// The start of the bucket holding `t`, for buckets aligned on the Unix epoch (UTC days).
pub fn bucket_start(t: Timestamp, bucket: Bucket) -> Timestamp {
    let s = t.as_second();
    let aligned = s - s.rem_euclid(bucket.seconds());
    Timestamp::from_second(aligned).unwrap_or(t)
}

/// Every bucket start of `[since, until)`, oldest first: the x axis of a series.
pub fn bucket_starts(since: Timestamp, until: Timestamp, bucket: Bucket) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut s = bucket_start(since, bucket).as_second();
    let end = until.as_second();
    while s < end && out.len() < 10_000 {
        if let Ok(t) = Timestamp::from_second(s) {
            out.push(t);
        }
        s += bucket.seconds();
    }
    out
}

/// Fills the buckets a store returned (start in seconds → counts) into the full series.
pub fn full_series(
    since: Timestamp,
    until: Timestamp,
    bucket: Bucket,
    found: &std::collections::HashMap<i64, Counts>,
) -> Vec<SeriesPoint> {
    bucket_starts(since, until, bucket)
        .into_iter()
        .map(|start| SeriesPoint {
            start,
            counts: found.get(&start.as_second()).cloned().unwrap_or_default(),
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Where events are kept. Calls block: async callers run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Which engine this is (`sqlite`, `clickhouse`), for status pages.
    fn kind(&self) -> &'static str;

    /// Stores `events`; an event whose `event_id` is already stored is ignored, so a retried
    /// batch is never counted twice. All or nothing.
    fn insert(&self, events: &[Record]) -> Result<InsertOutcome, StoreError>;

    /// Up to `limit` events matching `filter`, newest first (ties by `event_id`, descending),
    /// starting after `after`.
    fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<&PageCursor>,
    ) -> Result<Page, StoreError>;

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError>;

    fn usage(&self, query: &UsageQuery) -> Result<Usage, StoreError>;

    /// Removes events older than `before` (retention); returns how many were removed when the
    /// engine knows (a partition drop may not).
    fn prune(&self, before: Timestamp) -> Result<Option<u64>, StoreError>;

    /// A trivial query over the events table: the store is reachable, its schema in place, and
    /// it answers reads (readiness).
    fn ping(&self) -> Result<(), StoreError>;
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

    #[test]
    fn series_has_one_point_per_bucket_empty_ones_included() {
        let since: Timestamp = "2026-11-27T10:30:00Z".parse().unwrap();
        let until: Timestamp = "2026-11-27T13:10:00Z".parse().unwrap();
        let starts = bucket_starts(since, until, Bucket::Hour);
        let shown: Vec<String> = starts.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            shown,
            [
                "2026-11-27T10:00:00Z",
                "2026-11-27T11:00:00Z",
                "2026-11-27T12:00:00Z",
                "2026-11-27T13:00:00Z"
            ]
        );
        let mut found = std::collections::HashMap::new();
        found.insert(
            starts[1].as_second(),
            Counts {
                decisions: 3,
                allowed: 2,
                denied: 1,
            },
        );
        let series = full_series(since, until, Bucket::Hour, &found);
        assert_eq!(series.len(), 4);
        assert_eq!(series[0].counts, Counts::default());
        assert_eq!(series[1].counts.allowed, 2);
        assert_eq!(Bucket::for_window(since, until), Bucket::Hour);
        let week: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
        assert_eq!(Bucket::for_window(week, until), Bucket::Day);
    }
}
