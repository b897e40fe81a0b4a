//! The ClickHouse store answers stats and usage from an hourly rollup plus the partial hours at
//! the window's edges; the embedded store reads every event. Both must give the same answer for
//! the same events, whatever the window: this test stores one set of events in both (a real
//! ClickHouse) and compares every answer, with windows on and off hour boundaries, inside one
//! hour, and with filters the rollup keeps and filters it does not (session, trace).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use mcp_runtime_sentinel::clickhouse::{ClickHouseConfig, ClickHouseStore};
use mcp_runtime_sentinel::ingest;
use mcp_runtime_sentinel::redact::{Mode, Redactor};
use mcp_runtime_sentinel::sqlite::SqliteStore;
use mcp_runtime_sentinel::store::{Bucket, EventFilter, Scope, Store, UsageQuery};

/// Gateway events every 7 minutes and 13 seconds over 30 hours before `end` (so hours hold
/// different mixes), plus envelopes of another producer, some without a timestamp.
fn events(end: Timestamp) -> Vec<mcp_runtime_sentinel::store::Record> {
    let start = end - SignedDuration::from_hours(30);
    let mut gateway = Vec::new();
    let mut i = 0u64;
    let mut t = start;
    while t < end {
        let deny = i.is_multiple_of(4);
        let mut e = AuditEvent::new(
            format!("gw-{}", i % 2),
            format!("server-{}", i % 3),
            if i.is_multiple_of(5) {
                "team-b"
            } else {
                "team-a"
            },
            "POST",
            if deny {
                Decision::Deny
            } else {
                Decision::Allow
            },
            if deny { "trust_too_low" } else { "allowed" },
        );
        e.time = t;
        e.event_id = next_event_id(t);
        e.team_id = Some(format!("team-{}", i % 2).into());
        e.human_id = Some(format!("human-{}", i % 4).into());
        e.agent_id = Some(format!("agent-{}", i % 3).into());
        e.session_id = (!i.is_multiple_of(6)).then(|| format!("session-{}", i % 9).into());
        e.tool = Some(format!("tool-{}", i % 5).into());
        e.rpc_method = Some("tools/call".into());
        e.trace_id = Some(format!("{:032x}", i + 1).into());
        gateway.push(e);
        t += SignedDuration::from_secs(7 * 60 + 13);
        i += 1;
    }
    let redactor = Redactor::new(Mode::Replace, &[]);
    let body = serde_json::json!({ "events": gateway }).to_string();
    let mut records: Vec<_> = ingest::parse(body.as_bytes(), &redactor, end)
        .expect("the gateway batch parses")
        .records
        .into_iter()
        .map(|a| a.record)
        .collect();
    for (n, stamped) in [(0, true), (1, false), (2, true)] {
        let envelope = serde_json::json!({
            "source": "billing",
            "event_type": "invoice.sent",
            "timestamp": stamped.then(|| (end - SignedDuration::from_mins(95 + n)).to_string()),
            "payload": {"server": "server-1", "human_id": "human-1"},
        });
        let body = serde_json::json!({ "events": [envelope] }).to_string();
        records.extend(
            ingest::parse(
                body.as_bytes(),
                &redactor,
                end - SignedDuration::from_mins(20),
            )
            .expect("the envelope parses")
            .records
            .into_iter()
            .map(|a| a.record),
        );
    }
    records
}

fn clickhouse_store(server: &mcp_runtime_sentinel_testenv::ClickHouse) -> ClickHouseStore {
    ClickHouseStore::open(ClickHouseConfig {
        address: server.http_url().trim_start_matches("http://").to_owned(),
        database: "rollups".into(),
        user: None,
        password: None,
        timeout: std::time::Duration::from_secs(30),
    })
    .expect("the ClickHouse store opens")
}

#[test]
fn the_hourly_rollup_answers_exactly_what_every_event_answers() {
    let server = mcp_runtime_sentinel_testenv::ClickHouse::start();
    let dir = std::env::temp_dir().join(format!("sentinel-rollups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(&dir.join("events.db")).unwrap();
    let clickhouse = clickhouse_store(&server);

    // Half an hour past an hour, so windows ending "now" cut an hour.
    let hour = Timestamp::now().as_second().div_euclid(3600) * 3600;
    let end = Timestamp::from_second(hour - 1800).unwrap();
    let records = events(end);
    assert!(records.len() > 200, "{} events", records.len());
    for chunk in records.chunks(97) {
        sqlite.insert(chunk).unwrap();
        clickhouse.insert(chunk).unwrap();
    }
    // A retried batch changes neither store (the rollup is fed only by what is stored).
    let retried = clickhouse.insert(&records[..50]).unwrap();
    assert_eq!((retried.accepted, retried.duplicates), (0, 50));

    let stores: [(&str, Arc<dyn Store>); 2] = [
        ("sqlite", Arc::new(sqlite)),
        ("clickhouse", Arc::new(clickhouse)),
    ];
    let h = |hours: i64, mins: i64| {
        end - SignedDuration::from_hours(hours) - SignedDuration::from_mins(mins)
    };
    let windows = [
        (
            "all, off the hour",
            h(31, 7),
            end + SignedDuration::from_mins(1),
        ),
        (
            "whole hours",
            Timestamp::from_second(hour - 20 * 3600).unwrap(),
            Timestamp::from_second(hour - 2 * 3600).unwrap(),
        ),
        (
            "start on the hour",
            Timestamp::from_second(hour - 10 * 3600).unwrap(),
            h(2, 17),
        ),
        (
            "end on the hour",
            h(12, 41),
            Timestamp::from_second(hour - 3600).unwrap(),
        ),
        ("inside one hour", h(5, 40), h(5, 10)),
        ("across one boundary", h(5, 50), h(4, 50)),
        ("empty", h(100, 0), h(90, 0)),
    ];
    let filters = [
        ("none", EventFilter::default()),
        (
            "server",
            EventFilter {
                server: Some("server-1".into()),
                ..EventFilter::default()
            },
        ),
        (
            "deny",
            EventFilter {
                decision: Some("deny".into()),
                ..EventFilter::default()
            },
        ),
        (
            "human and tool",
            EventFilter {
                human: Some("human-2".into()),
                tool: Some("tool-2".into()),
                ..EventFilter::default()
            },
        ),
        (
            "session (not in the rollup)",
            EventFilter {
                session: Some("session-4".into()),
                ..EventFilter::default()
            },
        ),
        (
            "trace (not in the rollup)",
            EventFilter {
                trace_id: Some(format!("{:032x}", 8)),
                ..EventFilter::default()
            },
        ),
        (
            "source",
            EventFilter {
                source: Some("billing".into()),
                ..EventFilter::default()
            },
        ),
        (
            "scope",
            EventFilter {
                scope: Some(Scope {
                    namespaces: ["team-b".to_owned()].into(),
                    teams: ["team-0".to_owned()].into(),
                }),
                ..EventFilter::default()
            },
        ),
    ];
    let mut compared = 0;
    for (window, since, until) in windows {
        for (name, filter) in &filters {
            for bucket in [Bucket::Hour, Bucket::Day] {
                let q = UsageQuery {
                    filter: filter.clone(),
                    since,
                    until,
                    bucket,
                    limit: 5,
                };
                let answers: Vec<serde_json::Value> = stores
                    .iter()
                    .map(|(_, s)| serde_json::to_value(s.usage(&q).unwrap()).unwrap())
                    .collect();
                assert_eq!(
                    answers[0], answers[1],
                    "usage over {window}, filter {name}, {bucket:?} buckets: sqlite (left) and clickhouse (right) differ"
                );
                compared += 1;
            }
            let mut windowed = filter.clone();
            windowed.since = Some(since);
            windowed.until = Some(until);
            for f in [filter.clone(), windowed] {
                let answers: Vec<_> = stores
                    .iter()
                    .map(|(_, s)| format!("{:?}", s.stats(&f).unwrap()))
                    .collect();
                assert_eq!(answers[0], answers[1], "stats over {window}, filter {name}");
            }
        }
    }
    assert_eq!(compared, 7 * 8 * 2);
    // The comparison compared something: the widest window counts every decision.
    let all = stores[1].1.stats(&EventFilter::default()).unwrap();
    assert_eq!(all.events, records.len() as u64);

    // A database of the version before the rollup (events only) gets it filled on open.
    server.query("DROP TABLE rollups.events_hourly_mv");
    server.query("DROP TABLE rollups.events_hourly");
    let upgraded = clickhouse_store(&server);
    let q = UsageQuery {
        filter: EventFilter::default(),
        since: h(31, 7),
        until: end,
        bucket: Bucket::Hour,
        limit: 5,
    };
    assert_eq!(
        serde_json::to_value(upgraded.usage(&q).unwrap()).unwrap(),
        serde_json::to_value(stores[0].1.usage(&q).unwrap()).unwrap(),
        "after the upgrade"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
