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

/// The context each queued message carries, by position: the record's ingest span where one
/// was recorded, else the gateway span it continues, passed on unchanged (an ingest that does
/// not export), else none. `spans` is empty when nothing is recorded.
pub fn message_contexts(
    spans: &[Option<Span>],
    parents: &[Option<SpanContext>],
) -> Vec<Option<SpanContext>> {
    parents
        .iter()
        .enumerate()
        .map(|(i, parent)| {
            spans
                .get(i)
                .and_then(|s| s.as_ref().map(Span::context))
                .or(*parent)
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_the_ingest_span_or_passes_the_gateway_span_on() {
        let gateway = SpanContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        let parents = [Some(gateway), None];
        // Not recorded here: the gateway's context goes on as it came.
        assert_eq!(message_contexts(&[], &parents), [Some(gateway), None]);
        // Recorded: the ingest span is the parent of what follows.
        let ingest = Span::child_of(INGEST, SpanKind::Producer, &gateway, 1);
        let contexts = message_contexts(&[Some(ingest.clone()), None], &parents);
        assert_eq!(contexts, [Some(ingest.context()), None]);
        assert_eq!(contexts[0].unwrap().trace_id, gateway.trace_id);
        assert_ne!(contexts[0].unwrap().span_id, gateway.span_id);
    }
}
