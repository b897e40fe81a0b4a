//! Prometheus metrics of mcp-sentinel (prefix `mcp_sentinel`), served at `/metrics` on the admin
//! listener.
//!
//! Label values are bounded: outcomes and store operations are fixed lists (created at zero at
//! start, so `rate()` and alerts see them before the first occurrence), query routes are the API's
//! own paths and statuses are HTTP status codes.

use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::InsertOutcome;

/// What became of one `POST /v1/ingest/events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Answered 200 with at least one new event stored (or an empty batch).
    Accepted,
    /// Answered 200, every event already stored: a retry of a batch that had arrived.
    Duplicate,
    /// 400: not JSON, no valid event, or an unreadable body.
    Rejected,
    /// 401: no key or an unknown one.
    Unauthorized,
    /// 413: the body exceeds `--max-body-bytes`.
    TooLarge,
    /// 5xx: the store failed.
    Error,
}

impl IngestOutcome {
    pub const ALL: [IngestOutcome; 6] = [
        IngestOutcome::Accepted,
        IngestOutcome::Duplicate,
        IngestOutcome::Rejected,
        IngestOutcome::Unauthorized,
        IngestOutcome::TooLarge,
        IngestOutcome::Error,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Accepted => "accepted",
            IngestOutcome::Duplicate => "duplicate",
            IngestOutcome::Rejected => "rejected",
            IngestOutcome::Unauthorized => "unauthorized",
            IngestOutcome::TooLarge => "too_large",
            IngestOutcome::Error => "error",
        }
    }

    /// The outcome of a stored batch.
    pub fn of_insert(outcome: &InsertOutcome) -> IngestOutcome {
        if outcome.accepted == 0 && outcome.duplicates > 0 {
            IngestOutcome::Duplicate
        } else {
            IngestOutcome::Accepted
        }
    }

    /// The outcome of an ingest answered with `status` (anything but 200).
    pub fn of_refusal(status: StatusCode) -> IngestOutcome {
        match status {
            StatusCode::UNAUTHORIZED => IngestOutcome::Unauthorized,
            StatusCode::PAYLOAD_TOO_LARGE => IngestOutcome::TooLarge,
            s if s.is_server_error() => IngestOutcome::Error,
            _ => IngestOutcome::Rejected,
        }
    }
}

/// Store calls counted in `mcp_sentinel_store_errors_total{operation}`.
pub const STORE_OPERATIONS: [&str; 6] = ["insert", "events", "stats", "usage", "status", "ready"];

/// The `route` label of a read-API path, `None` for paths that are not queries.
pub fn query_route(path: &str) -> Option<&'static str> {
    match path {
        "/v1/events" => Some("events"),
        "/v1/stats" => Some("stats"),
        "/v1/usage" => Some("usage"),
        "/v1/status" => Some("status"),
        _ => None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// Everything Sentinel measures.
pub struct Metrics {
    registry: Registry,
    ingest_requests: Family<OutcomeLabels, Counter>,
    ingest_events: Family<ResultLabels, Counter>,
    batch_events: Histogram,
    insert_duration: Histogram,
    query_requests: Family<QueryLabels, Counter>,
    query_duration: Family<RouteLabels, Histogram>,
    store_errors: Family<OperationLabels, Counter>,
    processor_events: Family<ResultLabels, Counter>,
    processor_batches: Counter,
    processor_insert_failures: Counter,
    processor_commit_failures: Counter,
    processor_paused: Gauge,
}

impl Metrics {
    /// Exports the span exporter's counts (`mcp_sentinel_trace_spans_*`).
    pub fn register_tracer(&mut self, tracer: &mcp_runtime_svc::otel::Tracer) {
        tracer.register_metrics(&mut self.registry);
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcp_sentinel");
        let ingest_requests = Family::<OutcomeLabels, Counter>::default();
        let ingest_events = Family::<ResultLabels, Counter>::default();
        // 1 .. 4096 events: the gateway's shipper sends up to about a thousand.
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        // 100 µs .. ~6.5 s: a SQLite commit with synchronous=FULL is milliseconds.
        let insert_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let query_requests = Family::<QueryLabels, Counter>::default();
        let query_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))) as fn() -> Histogram,
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        let processor_events = Family::<ResultLabels, Counter>::default();
        let processor_batches = Counter::default();
        let processor_insert_failures = Counter::default();
        let processor_commit_failures = Counter::default();
        let processor_paused = Gauge::default();
        registry.register(
            "processor_events",
            "Records the processor read from Kafka, by result: stored, duplicate (already stored), undecodable (skipped)",
            processor_events.clone(),
        );
        registry.register(
            "processor_batches",
            "Batches the processor inserted and committed",
            processor_batches.clone(),
        );
        registry.register(
            "processor_insert_failures",
            "Store inserts of the processor that failed (the batch is retried)",
            processor_insert_failures.clone(),
        );
        registry.register(
            "processor_commit_failures",
            "Offset commits that failed after a stored batch (its records are read again and deduplicated)",
            processor_commit_failures.clone(),
        );
        registry.register(
            "processor_intake_paused",
            "1 while the processor holds a batch the store refuses and reads nothing new",
            processor_paused.clone(),
        );
        registry.register(
            "ingest_requests",
            "Ingest requests (POST /v1/ingest/events), by outcome",
            ingest_requests.clone(),
        );
        registry.register(
            "ingest_events",
            "Events received on the ingest, by result: accepted (stored now), duplicate (already stored), rejected (invalid)",
            ingest_events.clone(),
        );
        registry.register(
            "ingest_batch_events",
            "Events per ingest batch that parsed",
            batch_events.clone(),
        );
        registry.register(
            "store_insert_duration_seconds",
            "Time to store one ingest batch (one transaction), as the ingest waits for it",
            insert_duration.clone(),
        );
        registry.register(
            "query_requests",
            "Read-API requests, by route and HTTP status",
            query_requests.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Time to answer a read-API request, by route",
            query_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store calls that failed, by operation",
            store_errors.clone(),
        );
        for outcome in IngestOutcome::ALL {
            let _ = ingest_requests.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for result in ["accepted", "duplicate", "rejected"] {
            let _ = ingest_events.get_or_create(&ResultLabels { result });
        }
        for operation in STORE_OPERATIONS {
            let _ = store_errors.get_or_create(&OperationLabels { operation });
        }
        for route in ["events", "stats", "usage", "status"] {
            let _ = query_duration.get_or_create(&RouteLabels { route });
        }
        for result in ["stored", "duplicate", "undecodable"] {
            let _ = processor_events.get_or_create(&ResultLabels { result });
        }
        Metrics {
            registry,
            ingest_requests,
            ingest_events,
            batch_events,
            insert_duration,
            query_requests,
            query_duration,
            store_errors,
            processor_events,
            processor_batches,
            processor_insert_failures,
            processor_commit_failures,
            processor_paused,
        }
    }

    /// A batch the processor stored (then committed).
    pub fn processor_stored(&self, outcome: &InsertOutcome) {
        self.processor_batches.inc();
        self.processor_events
            .get_or_create(&ResultLabels { result: "stored" })
            .inc_by(outcome.accepted);
        self.processor_events
            .get_or_create(&ResultLabels {
                result: "duplicate",
            })
            .inc_by(outcome.duplicates);
    }

    pub fn processor_undecodable(&self) {
        self.processor_events
            .get_or_create(&ResultLabels {
                result: "undecodable",
            })
            .inc();
    }

    pub fn processor_insert_failed(&self) {
        self.processor_insert_failures.inc();
    }

    pub fn processor_commit_failed(&self) {
        self.processor_commit_failures.inc();
    }

    /// Whether intake is paused on a failing store.
    pub fn processor_paused(&self, paused: bool) {
        self.processor_paused.set(i64::from(paused));
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn ingest_request(&self, outcome: IngestOutcome) {
        self.ingest_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A batch that parsed, with `events` elements (valid or not).
    pub fn ingest_batch(&self, events: usize) {
        self.batch_events.observe(events as f64);
    }

    /// Events of a batch refused one by one (the rest may be stored).
    pub fn events_rejected(&self, events: usize) {
        self.ingest_events
            .get_or_create(&ResultLabels { result: "rejected" })
            .inc_by(events as u64);
    }

    /// A batch queued on Kafka (stored later by a processor): its events count as accepted.
    pub fn queued(&self, outcome: &InsertOutcome) {
        self.ingest_events
            .get_or_create(&ResultLabels { result: "accepted" })
            .inc_by(outcome.accepted);
        self.ingest_request(IngestOutcome::Accepted);
    }

    /// A stored batch: how long the store took and what it did.
    pub fn stored(&self, outcome: &InsertOutcome, elapsed: Duration) {
        self.insert_duration.observe(elapsed.as_secs_f64());
        self.ingest_events
            .get_or_create(&ResultLabels { result: "accepted" })
            .inc_by(outcome.accepted);
        self.ingest_events
            .get_or_create(&ResultLabels {
                result: "duplicate",
            })
            .inc_by(outcome.duplicates);
        self.ingest_request(IngestOutcome::of_insert(outcome));
    }

    /// A read-API request answered with `status` after `elapsed`.
    pub fn query(&self, route: &'static str, status: StatusCode, elapsed: Duration) {
        self.query_requests
            .get_or_create(&QueryLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
        self.query_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// A store call that failed; `operation` is one of [`STORE_OPERATIONS`].
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    #[test]
    fn outcomes_and_operations_are_exported_at_zero_before_they_happen() {
        let text = encode(&Metrics::new());
        for o in IngestOutcome::ALL {
            let line = format!(
                "mcp_sentinel_ingest_requests_total{{outcome=\"{}\"}} 0",
                o.as_str()
            );
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        for op in STORE_OPERATIONS {
            let line = format!("mcp_sentinel_store_errors_total{{operation=\"{op}\"}} 0");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(text.contains("mcp_sentinel_query_duration_seconds_count{route=\"stats\"} 0"));
    }

    #[test]
    fn a_batch_of_only_known_events_is_a_duplicate_and_refusals_map_by_status() {
        let m = Metrics::new();
        m.stored(
            &InsertOutcome {
                accepted: 0,
                duplicates: 3,
            },
            Duration::from_millis(2),
        );
        m.stored(
            &InsertOutcome {
                accepted: 1,
                duplicates: 2,
            },
            Duration::from_millis(2),
        );
        m.stored(&InsertOutcome::default(), Duration::from_millis(2));
        let text = encode(&m);
        assert!(
            text.contains("mcp_sentinel_ingest_requests_total{outcome=\"duplicate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mcp_sentinel_ingest_requests_total{outcome=\"accepted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mcp_sentinel_ingest_events_total{result=\"duplicate\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("mcp_sentinel_store_insert_duration_seconds_count 3"),
            "{text}"
        );
        let of = IngestOutcome::of_refusal;
        assert_eq!(of(StatusCode::UNAUTHORIZED), IngestOutcome::Unauthorized);
        assert_eq!(of(StatusCode::PAYLOAD_TOO_LARGE), IngestOutcome::TooLarge);
        assert_eq!(of(StatusCode::BAD_REQUEST), IngestOutcome::Rejected);
        assert_eq!(of(StatusCode::METHOD_NOT_ALLOWED), IngestOutcome::Rejected);
        assert_eq!(of(StatusCode::INTERNAL_SERVER_ERROR), IngestOutcome::Error);
    }
}
