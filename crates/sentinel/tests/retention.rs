//! Retention on each store, through the library: events older than the cutoff go, newer stay.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use mcp_runtime_sentinel::clickhouse::{ClickHouseConfig, ClickHouseStore};
use mcp_runtime_sentinel::ingest;
use mcp_runtime_sentinel::redact::{Mode, Redactor};
use mcp_runtime_sentinel::sqlite::SqliteStore;
use mcp_runtime_sentinel::store::{EventFilter, Store};

/// One event a day for ten days, ending today.
fn records() -> Vec<mcp_runtime_sentinel::store::Record> {
    let now = Timestamp::now();
    let events: Vec<AuditEvent<'_>> = (0..10)
        .map(|d| {
            let mut e = AuditEvent::new("gw", "s", "ns", "POST", Decision::Allow, "allowed");
            e.time = now - SignedDuration::from_hours(24 * d);
            e.event_id = next_event_id(e.time);
            e
        })
        .collect();
    let body = serde_json::json!({ "events": events }).to_string();
    ingest::parse(body.as_bytes(), &Redactor::new(Mode::Replace, &[]), now)
        .unwrap()
        .records
        .into_iter()
        .map(|a| a.record)
        .collect()
}

fn check(store: Arc<dyn Store>) {
    let records = records();
    assert_eq!(store.insert(&records).unwrap().accepted, 10);
    // Inserting the same events again stores nothing new.
    assert_eq!(store.insert(&records).unwrap().duplicates, 10);
    assert_eq!(store.stats(&EventFilter::default()).unwrap().events, 10);
    // Keep the last 4.5 days: whole days older than the cutoff go (ClickHouse drops day
    // partitions, so the partly covered day stays there).
    let cutoff = Timestamp::now() - SignedDuration::from_hours(24 * 4 + 12);
    store.prune(cutoff).unwrap();
    let left = store.stats(&EventFilter::default()).unwrap().events;
    assert!((5..=6).contains(&left), "{} kept {left}", store.kind());
    let page = store.events(&EventFilter::default(), 100, None).unwrap();
    assert_eq!(page.events.len() as u64, left);
}

#[test]
fn sqlite_removes_old_events() {
    let dir = std::env::temp_dir().join(format!("sentinel-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("r.db")).unwrap();
    check(Arc::new(store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clickhouse_drops_old_day_partitions() {
    let server = mcp_runtime_sentinel_testenv::ClickHouse::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        address: server.http_url().trim_start_matches("http://").to_owned(),
        database: "retention".into(),
        user: None,
        password: None,
        timeout: std::time::Duration::from_secs(30),
    })
    .unwrap();
    check(Arc::new(store));
}
