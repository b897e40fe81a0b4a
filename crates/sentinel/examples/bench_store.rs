//! Measures a store: insert rate in batches like the gateway's, then the latency of the
//! queries the API runs (a page of events, stats, a usage rollup), over N events.
//!
//! `cargo run --release -p mcp-runtime-sentinel --example bench_store -- sqlite N`
//! `cargo run --release -p mcp-runtime-sentinel --example bench_store -- clickhouse N [HOST:PORT] [--synthetic]`
//! (without an address, a ClickHouse of the test environment is started for the run;
//! `--synthetic` writes the N events with one `INSERT … SELECT` inside ClickHouse instead of
//! through the store, to reach tens of millions quickly: the queries are measured the same way)

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::io::{Read as _, Write as _};
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

/// Writes `n` events shaped like [`batch`]'s into `database`.events with one statement run by
/// ClickHouse itself (the materialized view fills the hourly rollup as for any insert).
fn insert_in_server(address: &str, database: &str, now: Timestamp, span: SignedDuration, n: usize) {
    let start_ns = (now - span).as_nanosecond() as i64;
    let step_ns = span.as_nanos() as i64 / n as i64;
    let sql = format!(
        "INSERT INTO {database}.events SELECT toDate(intDiv(t, 1000000000)) AS day, t AS time_ns, \
         toString(generateUUIDv4()) AS event_id, 'bench-gateway' AS source, 'mcp.request', '', \
         concat('server-', toString(number % 20)) AS server, concat('team-', toString(number % 4)) AS ns, '', \
         concat('human-', toString(number % 200)) AS human, concat('agent-', toString(number % 7)) AS agent, \
         concat('session-', toString(number % 1000)) AS session, concat('tool-', toString(number % 50)) AS tool, \
         if(number % 5 = 0, 'deny', 'allow') AS decision, if(number % 5 = 0, 'trust_too_low', 'allowed') AS reason, \
         toUInt64(1), concat('{{\"event_id\":\"', event_id, '\",\"time_ns\":', toString(t), \
         ',\"source\":\"bench-gateway\",\"server\":\"', server, '\",\"namespace\":\"', ns, \
         '\",\"human_id\":\"', human, '\",\"agent_id\":\"', agent, '\",\"session_id\":\"', session, \
         '\",\"http_method\":\"POST\",\"rpc_method\":\"tools/call\",\"tool\":\"', tool, \
         '\",\"decision\":\"', decision, '\",\"reason\":\"', reason, '\",\"enforced\":true,\"latency_ms\":1.25}}') \
         FROM (SELECT number, {start_ns} + number * {step_ns} AS t FROM system.numbers LIMIT {n})"
    );
    let t = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).expect("ClickHouse answers");
    let head = format!(
        "POST / HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n",
        sql.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(sql.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    println!(
        "  insert inside ClickHouse (INSERT ... SELECT, rollup included): {:.0} events/s ({:.1} s)",
        n as f64 / t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
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
    let synthetic = args.iter().any(|a| a == "--synthetic");
    let address_arg = args.iter().skip(3).find(|a| a.contains(':')).cloned();
    let dir = std::env::temp_dir().join(format!("sentinel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut started_clickhouse = None;
    let database = format!("bench_{}", std::process::id());
    let store: Arc<dyn Store> = match kind {
        "sqlite" => Arc::new(SqliteStore::open(&dir.join("bench.db")).unwrap()),
        "clickhouse" => Arc::new(
            ClickHouseStore::open(ClickHouseConfig {
                address: address_arg.clone().unwrap_or_else(|| {
                    let server = mcp_runtime_sentinel_testenv::ClickHouse::start();
                    let address = server.http_url().trim_start_matches("http://").to_owned();
                    started_clickhouse = Some(server);
                    address
                }),
                database: database.clone(),
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
    if synthetic {
        assert_eq!(
            kind, "clickhouse",
            "--synthetic is for the ClickHouse store"
        );
        let address = match (&address_arg, &started_clickhouse) {
            (Some(a), _) => a.clone(),
            (None, Some(server)) => server.http_url().trim_start_matches("http://").to_owned(),
            (None, None) => unreachable!("a ClickHouse was started"),
        };
        insert_in_server(&address, &database, now, span, n);
    }
    for start in (0..if synthetic { 0 } else { n }).step_by(BATCH) {
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
    if !synthetic {
        println!(
            "  insert: {:.0} events/s ({:.1} s; parsing and redaction {:.1} s of it)",
            n as f64 / total.as_secs_f64(),
            total.as_secs_f64(),
            parse_time.as_secs_f64()
        );
    }
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
