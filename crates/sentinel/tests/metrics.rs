//! The admin listener of the real `mcp-sentinel`: probes, and counters that move by exactly what
//! was sent to the API.

mod common;

use common::*;
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use serde_json::json;

fn event(server: &'static str) -> AuditEvent<'static> {
    let mut e = AuditEvent::new(
        "test-gateway",
        server,
        "team-a",
        "POST",
        Decision::Allow,
        "allowed",
    );
    e.event_id = next_event_id(e.time);
    e
}

fn batch(events: &[serde_json::Value]) -> String {
    json!({ "events": events }).to_string()
}

fn valid(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|_| serde_json::to_value(event("a")).unwrap())
        .collect()
}

/// The value of one series (`name{labels}` exactly as exposed), failing when it is absent.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{series} is not exposed:\n{metrics}"))
}

fn scrape(s: &Sentinel) -> String {
    let (status, body) = s.admin("/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn ingest_and_query_counters_move_by_what_was_sent() {
    let s = Sentinel::start("metrics", Backend::Sqlite);
    assert_eq!(s.admin("/healthz").0, 200);
    assert_eq!(s.admin("/ready"), (200, "ready\n".into()));
    assert_eq!(s.admin("/nope").0, 404);

    let before = scrape(&s);
    for outcome in [
        "accepted",
        "duplicate",
        "rejected",
        "unauthorized",
        "too_large",
    ] {
        let series = format!("mcp_sentinel_ingest_requests_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&before, &series), 0.0, "{series}");
    }

    let ten = batch(&valid(10));
    let post = |key: Option<&str>, body: &str| s.request("POST", "/v1/ingest/events", key, body);
    assert_eq!(post(Some(KEY), &ten).0, 200);
    assert_eq!(post(Some(KEY), &ten).1["duplicates"], 10);
    let mut mixed = valid(2);
    mixed.push(json!({"not": "an event"}));
    assert_eq!(post(Some(KEY), &batch(&mixed)).1["accepted"], 2);
    let invalid = batch(&[json!({"no": 1}), json!({"no": 2})]);
    assert_eq!(post(Some(KEY), &invalid).0, 400);
    assert_eq!(post(Some(KEY), "not json").0, 400);
    assert_eq!(post(Some("wrong-key"), &ten).0, 401);
    assert_eq!(post(Some(KEY), &" ".repeat(9 * 1024 * 1024)).0, 413);

    let get = |path: &str, key: Option<&str>| s.request("GET", path, key, "").0;
    assert_eq!(get("/v1/events", Some(READ_KEY)), 200);
    assert_eq!(get("/v1/events?server=a&limit=5", Some(READ_KEY)), 200);
    assert_eq!(get("/v1/events?limit=0", Some(READ_KEY)), 400);
    assert_eq!(get("/v1/stats", Some(READ_KEY)), 200);
    assert_eq!(get("/v1/stats", None), 401);

    let m = scrape(&s);
    let v = |series: &str| value(&m, series);
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="accepted"}"#),
        2.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="duplicate"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="rejected"}"#),
        2.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="too_large"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="error"}"#),
        0.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_events_total{result="accepted"}"#),
        12.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_events_total{result="duplicate"}"#),
        10.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_events_total{result="rejected"}"#),
        3.0
    );
    // Batches that parsed: 10, 10, 3 and 2 events; three reached the store.
    assert_eq!(v("mcp_sentinel_ingest_batch_events_count"), 4.0);
    assert_eq!(v("mcp_sentinel_ingest_batch_events_sum"), 25.0);
    assert_eq!(
        v(r#"mcp_sentinel_ingest_batch_events_bucket{le="8.0"}"#),
        2.0
    );
    assert_eq!(v("mcp_sentinel_store_insert_duration_seconds_count"), 3.0);
    assert!(v("mcp_sentinel_store_insert_duration_seconds_sum") > 0.0);
    assert_eq!(
        v(r#"mcp_sentinel_query_requests_total{route="events",status="200"}"#),
        2.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_requests_total{route="events",status="400"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_requests_total{route="stats",status="200"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_requests_total{route="stats",status="401"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_duration_seconds_count{route="events"}"#),
        3.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_duration_seconds_count{route="stats"}"#),
        2.0
    );
    for op in ["insert", "events", "stats", "ready"] {
        assert_eq!(
            v(&format!(
                "mcp_sentinel_store_errors_total{{operation=\"{op}\"}}"
            )),
            0.0
        );
    }

    // The store loses its table: not ready, and each failing call is counted by operation.
    let db = rusqlite::Connection::open(s.dir.join("events.db")).unwrap();
    db.execute_batch("DROP TABLE events").unwrap();
    let (status, body) = s.admin("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no such table"), "{body}");
    assert_eq!(get("/v1/stats", Some(READ_KEY)), 500);
    assert_eq!(post(Some(KEY), &batch(&valid(1))).0, 500);
    let m = scrape(&s);
    let v = |series: &str| value(&m, series);
    assert_eq!(
        v(r#"mcp_sentinel_store_errors_total{operation="ready"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_store_errors_total{operation="stats"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_store_errors_total{operation="insert"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_query_requests_total{route="stats",status="500"}"#),
        1.0
    );
    assert_eq!(
        v(r#"mcp_sentinel_ingest_requests_total{outcome="error"}"#),
        1.0
    );
    assert_eq!(v("mcp_sentinel_store_insert_duration_seconds_count"), 3.0);
}
