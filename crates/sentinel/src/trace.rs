//! Sentinel's part of a request's trace: the gateway's audit event names its span (`trace_id`,
//! `span_id`), and every hop records a span below it.
//!
//! - [`INGEST`]: one per traced event of an ingest request, a child of the event's gateway span
//!   (kind PRODUCER when it queues on Kafka, CONSUMER when it writes to the store itself). Per
//!   event and not per request: one request carries events of many traces, and each trace should
//!   show its own event's way into Sentinel.
//! - the Kafka message's `traceparent` header names the ingest span (or, when this ingest does
//!   not record, the gateway's span, passed on unchanged).
//! - [`PROCESS`]: one per traced message the processor reads, a child of the header's span (kind
//!   CONSUMER), from reading the message to committing its offset.
//! - [`STORE_INSERT`]: the batch insert, once below each traced event's `sentinel.process` (or
//!   `sentinel.ingest`), all with the same times: a batch holds events of many traces, and a
//!   single span with links would sit in none of them.
//!
//! Only events the gateway traced are followed (it writes `span_id` only then): Sentinel never
//! starts a trace. No event content goes into a span: ids, counts, the store and the topic.

use mcp_runtime_svc::otel::{Span, SpanContext, SpanKind, Status};

pub const INGEST: &str = "sentinel.ingest";
pub const PROCESS: &str = "sentinel.process";
pub const STORE_INSERT: &str = "sentinel.store.insert";

/// The insert of a batch of `records` into the store `store`, as a child of `parent`. A failure
/// is described by what failed, not by the store's message (which may quote the data).
pub fn store_insert(
    parent: &SpanContext,
    store: &'static str,
    records: usize,
    (start, end): (u64, u64),
    failed: bool,
) -> Span {
    let mut span = Span::child_of(STORE_INSERT, SpanKind::Client, parent, start)
        .with("db.system.name", store)
        .with("db.operation.name", "INSERT")
        .with(
            "db.operation.batch.size",
            i64::try_from(records).unwrap_or(i64::MAX),
        )
        .end_at(end);
    if failed {
        span.status = Status::Error("the store insert failed".into());
    }
    span
}
