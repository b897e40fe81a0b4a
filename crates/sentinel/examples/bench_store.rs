//! Measures a store: insert rate in batches like the gateway's, then the latency of the
//! queries the API runs (a page of events, stats, a usage rollup), over N events.
//!
//! `cargo run --release -p mcp-runtime-sentinel --example bench_store -- sqlite N`
//! `cargo run --release -p mcp-runtime-sentinel --example bench_store -- clickhouse N [HOST:PORT]`
//! (without an address, a ClickHouse of the test environment is started for the run)

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use mcp_runtime_sentinel::clickhouse::{ClickHouseConfig, ClickHouseStore};
use mcp_runtime_sentinel::ingest;
use mcp_runtime_sentinel::redact::{Mode, Redactor};
use mcp_runtime_sentinel::sqlite::SqliteStore;
use mcp_runtime_sentinel::store::{Bucket, EventFilter, Store, UsageQuery};

const BATCH: usize = 500;

fn batch(start: usize, now: Timestamp, span: SignedDuration, n: usize) -> String {
    let events: Vec<AuditEvent<'_>> = (start..start + BATCH)
        .map(|i| {
            let deny = i % 5 == 0;
            let mut e = AuditEvent::new(
                "bench-gateway",
                format!("server-{}", i % 20),
                format!("team-{}", i % 4),
                "POST",
                if deny {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                if deny { "trust_too_low" } else { "allowed" },
            );
            // Spread over the span, oldest first.
            e.time = now - span
                + SignedDuration::from_nanos((span.as_nanos() / n as i128 * i as i128) as i64);
            e.event_id = next_event_id(e.time);
            e.human_id = Some(format!("human-{}", i % 200).into());
            e.agent_id = Some(format!("agent-{}", i % 7).into());
            e.session_id = Some(format!("session-{}", i % 1000).into());
            e.tool = Some(format!("tool-{}", i % 50).into());
            e.rpc_method = Some("tools/call".into());
            e.latency_ms = 1.25;
            e
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

fn time<T>(what: &str, f: impl Fn() -> T) -> T {
    // Median of 5.
    let mut runs = Vec::new();
    let mut out = None;
    for _ in 0..5 {
        let t = Instant::now();
        out = Some(f());
        runs.push(t.elapsed());
    }
    runs.sort();
    println!(
        "  {what:<40} {:>9.1} ms (median of 5)",
        runs[2].as_secs_f64() * 1e3
    );
    out.unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("sqlite");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let n = n / BATCH * BATCH;
    let dir = std::env::temp_dir().join(format!("sentinel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut started_clickhouse = None;
    let store: Arc<dyn Store> = match kind {
        "sqlite" => Arc::new(SqliteStore::open(&dir.join("bench.db")).unwrap()),
        "clickhouse" => Arc::new(
            ClickHouseStore::open(ClickHouseConfig {
                address: args.get(3).cloned().unwrap_or_else(|| {
                    let server = mcp_runtime_sentinel_testenv::ClickHouse::start();
                    let address = server.http_url().trim_start_matches("http://").to_owned();
                    started_clickhouse = Some(server);
                    address
                }),
                database: format!("bench_{}", std::process::id()),
                user: None,
                password: None,
                timeout: std::time::Duration::from_secs(300),
            })
            .unwrap(),
        ),
        other => panic!("unknown store {other}: sqlite or clickhouse"),
    };
    let redactor = Redactor::new(Mode::Replace, &[]);
    let now = Timestamp::now();
    let span = SignedDuration::from_hours(24 * 7);
    println!("{kind}: {n} events over 7 days, batches of {BATCH}");
    let mut parse_time = std::time::Duration::ZERO;
    let started = Instant::now();
    for start in (0..n).step_by(BATCH) {
        let body = batch(start, now, span, n);
        let t = Instant::now();
        let records: Vec<_> = ingest::parse(body.as_bytes(), &redactor, now)
            .unwrap()
            .records
            .into_iter()
            .map(|a| a.record)
            .collect();
        parse_time += t.elapsed();
        store.insert(&records).unwrap();
    }
    let total = started.elapsed();
    println!(
        "  insert: {:.0} events/s ({:.1} s; parsing and redaction {:.1} s of it)",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        parse_time.as_secs_f64()
    );
    if kind == "sqlite" {
        let size = std::fs::metadata(dir.join("bench.db"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "  file: {:.1} MB ({:.0} bytes/event)",
            size as f64 / 1e6,
            size as f64 / n as f64
        );
    }
    let all = EventFilter::default();
    let one_server = EventFilter {
        server: Some("server-5".into()),
        decision: Some("deny".into()),
        ..EventFilter::default()
    };
    time("events: newest page of 100", || {
        store.events(&all, 100, None).unwrap()
    });
    time("events: filtered page (server, deny)", || {
        store.events(&one_server, 100, None).unwrap()
    });
    time("stats: all events", || store.stats(&all).unwrap());
    let day = UsageQuery {
        filter: all.clone(),
        since: now - SignedDuration::from_hours(24),
        until: now,
        bucket: Bucket::Hour,
        limit: 10,
    };
    time("usage: last 24 h (hourly)", || store.usage(&day).unwrap());
    let week = UsageQuery {
        since: now - span,
        bucket: Bucket::Day,
        ..day.clone()
    };
    time("usage: 7 days (daily)", || store.usage(&week).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    drop(started_clickhouse);
}
