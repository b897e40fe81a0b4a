//! One trace from the gateway to the store, through real parts: the real `mcp-gateway` in front
//! of a small upstream that records the `traceparent` it is sent, shipping its audit events to
//! the real `mcp-sentinel` (`--role all` on a real Kafka broker, or writing to its store
//! itself), both exporting spans to a real OpenTelemetry Collector whose file exporter the test
//! reads (`scripts/otel/install.sh` builds it).
//!
//! Needs the gateway binary next to this test's (`cargo build -p mcp-runtime-gateway` first, or
//! `MCP_GATEWAY_BIN`), like `gateway_e2e`; a missing part fails the test, never skips it.
#![cfg(feature = "kafka")]

mod common;

use std::time::{Duration, Instant};

use common::gateway::{Gateway, SECRET_ARGUMENT, Upstream};
use common::*;
use mcp_runtime_sentinel_testenv::{Collector, KafkaBroker, ReceivedSpan};
use serde_json::Value;

/// The caller's trace and span.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The events stored with this trace id, once there are `n` (waits up to 30 s).
fn stored_events(sentinel: &Sentinel, trace_id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = sentinel.request(
            "GET",
            &format!("/v1/events?trace_id={trace_id}"),
            Some(READ_KEY),
            "",
        );
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        if events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{n} events of trace {trace_id} not stored within 30 s: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn one<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name} in trace {trace}: {spans:#?}");
    found[0]
}

fn has(spans: &[ReceivedSpan], trace: &str, name: &str) -> bool {
    spans.iter().any(|s| s.trace_id == trace && s.name == name)
}

/// A number from the metrics text (`name` with its labels, exactly as written there).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn a_traced_call_is_one_trace_from_the_gateway_through_kafka_to_the_store() {
    let collector = Collector::start();
    let broker = KafkaBroker::start();
    broker.create_topic("mcp.events", 2);
    let sentinel = Sentinel::start_args(
        "trace-kafka",
        &[
            "--role",
            "all",
            "--kafka-brokers",
            &broker.bootstrap(),
            "--flush-interval-ms",
            "200",
            "--otlp-endpoint",
            &collector.endpoint(),
        ],
    );
    let upstream = Upstream::start();
    let gateway = Gateway::start(
        &sentinel.dir,
        &upstream,
        &sentinel,
        &["--otlp-endpoint", &collector.endpoint()],
    );

    // A call that arrives with a sampled trace context.
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (status, body) = gateway.call(&[("traceparent", &incoming)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pong"), "{body}");

    let spans = collector.wait_for(Duration::from_secs(60), |s| {
        has(s, TRACE, "sentinel.store.insert")
    });
    let gw = one(&spans, TRACE, "mcp.gateway.request");
    let ingest = one(&spans, TRACE, "sentinel.ingest");
    let process = one(&spans, TRACE, "sentinel.process");
    let insert = one(&spans, TRACE, "sentinel.store.insert");

    // The chain: caller -> gateway -> ingest -> (Kafka) -> process -> insert.
    assert_eq!(gw.parent_span_id, CALLER_SPAN);
    assert_eq!(ingest.parent_span_id, gw.span_id);
    assert_eq!(process.parent_span_id, ingest.span_id);
    assert_eq!(insert.parent_span_id, process.span_id);
    assert_eq!(gw.service, "mcp-gateway");
    for s in [ingest, process, insert] {
        assert_eq!(s.service, "mcp-sentinel", "{s:?}");
    }
    // SERVER, PRODUCER, CONSUMER, CLIENT.
    assert_eq!(
        (gw.kind, ingest.kind, process.kind, insert.kind),
        (2, 4, 5, 3)
    );
    assert!(gw.start_unix_nanos <= gw.end_unix_nanos);
    assert!(gw.end_unix_nanos <= ingest.end_unix_nanos);
    assert!(ingest.end_unix_nanos <= process.start_unix_nanos);

    // What the gateway's span says, and what it must not.
    for (key, want) in [
        ("mcp.server", "py"),
        ("mcp.namespace", "test"),
        ("rpc.method", "tools/call"),
        ("mcp.tool.name", "echo"),
        ("mcp.decision", "allow"),
        ("mcp.reason", "allowed"),
        ("http.response.status_code", "200"),
        ("http.request.method", "POST"),
    ] {
        assert_eq!(gw.attribute(key), Some(want), "{key}: {gw:?}");
    }
    for s in &spans {
        for value in s.attributes.values() {
            assert!(!value.contains(SECRET_ARGUMENT), "{s:?}");
            assert!(!value.contains("alice"), "identity in a span: {s:?}");
        }
    }
    assert_eq!(insert.attribute("db.system.name"), Some("sqlite"));
    assert_eq!(
        process.attribute("messaging.destination.name"),
        Some("mcp.events")
    );

    // The upstream saw the trace continued, with the gateway's span as the parent.
    assert_eq!(
        upstream.seen(),
        [Some(format!("00-{TRACE}-{}-01", gw.span_id))]
    );

    // The stored event leads to its trace, and names the gateway's span.
    let events = stored_events(&sentinel, TRACE, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["trace_id"], TRACE);
    assert_eq!(events[0]["span_id"], gw.span_id.as_str());
    assert_eq!(
        ingest.attribute("sentinel.event_id"),
        events[0]["event_id"].as_str()
    );

    // A call without a trace context, and one whose caller does not sample: no span at all.
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = format!("00-{unsampled_trace}-b7ad6b7169203331-00");
    assert_eq!(gateway.call(&[]).0, 200);
    assert_eq!(gateway.call(&[("traceparent", &unsampled)]).0, 200);
    // Both stored (so both went through every hop), then past every exporter's interval.
    let unsampled_events = stored_events(&sentinel, unsampled_trace, 1);
    assert_eq!(unsampled_events[0]["trace_id"], unsampled_trace);
    assert!(
        unsampled_events[0].get("span_id").is_none(),
        "{unsampled_events:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = sentinel.request("GET", "/v1/stats", Some(READ_KEY), "");
        if stats["events"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let spans = collector.spans();
    let others: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id != TRACE).collect();
    assert!(others.is_empty(), "spans of untraced calls: {others:#?}");
    assert_eq!(spans.len(), 4, "{spans:#?}");
    // The caller's unsampled context went on unchanged; no context was invented.
    assert_eq!(upstream.seen()[1..], [None, Some(unsampled)]);
}

#[test]
fn a_collector_outage_costs_spans_not_calls() {
    let mut collector = Collector::start();
    // Sentinel without Kafka: its ingest writes to the store itself.
    let sentinel = Sentinel::start_args(
        "trace-direct",
        &["--role", "all", "--otlp-endpoint", &collector.endpoint()],
    );
    let upstream = Upstream::start();
    // Every call starts a trace, context or not.
    let gateway = Gateway::start(
        &sentinel.dir,
        &upstream,
        &sentinel,
        &[
            "--otlp-endpoint",
            &collector.endpoint(),
            "--trace-sample-ratio",
            "1",
        ],
    );

    collector.kill();
    let first = "11111111111111111111111111111111";
    for _ in 0..3 {
        let (status, body) =
            gateway.call(&[("traceparent", &format!("00-{first}-{CALLER_SPAN}-01"))]);
        assert_eq!(status, 200, "{body}");
    }
    stored_events(&sentinel, first, 3);
    // The spans were dropped and counted, by both exporters.
    let drops = r#"_trace_spans_dropped_total{reason="export_failed"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gw = metric(&gateway.metrics(), &format!("mcp_gateway{drops}"));
        let se = metric(
            &sentinel.admin("/metrics").1,
            &format!("mcp_sentinel{drops}"),
        );
        // 3 gateway spans; 3 ingest and 3 insert spans.
        if gw >= 3.0 && se >= 6.0 {
            assert_eq!((gw, se), (3.0, 6.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drops not counted: gateway {gw}, sentinel {se}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Back up: the next call is traced again, here from the gateway's own root span.
    collector.restart();
    let (status, _) = gateway.call(&[]);
    assert_eq!(status, 200);
    let started = upstream
        .seen()
        .last()
        .cloned()
        .flatten()
        .expect("a traceparent upstream");
    let trace = started[3..35].to_owned();
    let spans = collector.wait_for(Duration::from_secs(30), |s| {
        has(s, &trace, "sentinel.store.insert")
    });
    let gw = one(&spans, &trace, "mcp.gateway.request");
    let ingest = one(&spans, &trace, "sentinel.ingest");
    let insert = one(&spans, &trace, "sentinel.store.insert");
    assert_eq!(gw.parent_span_id, "", "a root span");
    assert_eq!(started, format!("00-{trace}-{}-01", gw.span_id));
    assert_eq!(ingest.parent_span_id, gw.span_id);
    assert_eq!(insert.parent_span_id, ingest.span_id);
    // CONSUMER: the ingest receives the event and stores it itself.
    assert_eq!(ingest.kind, 5);
    assert!(!spans.iter().any(|s| s.trace_id == first), "{spans:#?}");
}
