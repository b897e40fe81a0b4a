//! The ingest and read API through the real `mcp-sentinel` binary.

mod common;

use common::*;
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use serde_json::{Value, json};

/// `n` events one second apart from 2026-11-24T00:00:00Z: every third a deny
/// (`trust_too_low`), servers alternate `a`/`b`, humans alice/bob.
fn events(n: usize) -> Vec<AuditEvent<'static>> {
    let start: jiff::Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            let deny = i % 3 == 0;
            let mut e = AuditEvent::new(
                "test-gateway",
                if i % 2 == 0 { "a" } else { "b" },
                "team-a",
                "POST",
                if deny {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                if deny { "trust_too_low" } else { "allowed" },
            );
            e.time = start + jiff::SignedDuration::from_secs(i as i64);
            e.event_id = next_event_id(e.time);
            e.human_id = Some(if i % 4 < 2 { "alice" } else { "bob" }.into());
            e.tool = Some("echo".into());
            e.team_id = Some("t1".into());
            e
        })
        .collect()
}

/// The body the gateway's shipper sends: `{"events":[...]}`.
fn batch(events: &[AuditEvent<'_>]) -> String {
    json!({ "events": events }).to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_batch_sent_twice_is_stored_once() {
    let s = Sentinel::start("twice");
    let evs = events(10);
    let body = batch(&evs);
    let (status, receipt) = s.request("POST", "/v1/ingest/events", Some(KEY), &body);
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 10);
    assert_eq!(receipt["duplicates"], 0);
    let (status, receipt) = s.request("POST", "/v1/ingest/events", Some(KEY), &body);
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 0);
    assert_eq!(receipt["duplicates"], 10);

    let (status, page) = s.request("GET", "/v1/events?limit=1000", Some(READ_KEY), "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page).len(), 10);
    assert_eq!(page["next_cursor"], Value::Null);
    // Stored as sent: the first event comes back field for field (it is the oldest: last).
    let back: AuditEvent<'_> = serde_json::from_value(page["events"][9].clone()).unwrap();
    assert_eq!(back, evs[0]);

    // Still one each after a restart on the same file.
    let dir = s.dir.clone();
    drop(s);
    let s = Sentinel::start_in(dir);
    let (_, page) = s.request("GET", "/v1/events?limit=1000", Some(READ_KEY), "");
    assert_eq!(ids(&page).len(), 10);
}

#[test]
fn keys_are_required_and_checked() {
    let s = Sentinel::start("keys");
    let body = batch(&events(1));
    for key in [None, Some("wrong"), Some(READ_KEY)] {
        let (status, answer) = s.request("POST", "/v1/ingest/events", key, &body);
        assert_eq!(status, 401, "{key:?}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
        assert!(answer["error"]["message"].is_string());
    }
    for path in ["/v1/events", "/v1/stats"] {
        for key in [None, Some("wrong"), Some(KEY)] {
            let (status, answer) = s.request("GET", path, key, "");
            assert_eq!(status, 401, "{path} {key:?}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized");
        }
    }
    // Nothing was stored by the refused posts.
    let (status, stats) = s.request("GET", "/v1/stats", Some(READ_KEY), "");
    assert_eq!(status, 200);
    assert_eq!(stats["events"], 0);
}

#[test]
fn bad_requests_get_the_error_envelope() {
    let s = Sentinel::start("bad");
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "/v1/ingest/events", "not json", 400, "invalid_json"),
        ("POST", "/v1/ingest/events", "[]", 400, "invalid_json"),
        (
            "POST",
            "/v1/ingest/events",
            r#"{"events":[{"x":1}]}"#,
            400,
            "invalid_event",
        ),
        ("GET", "/v1/events?limit=0", "", 400, "invalid_parameter"),
        (
            "GET",
            "/v1/events?decision=maybe",
            "",
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/events?since=yesterday",
            "",
            400,
            "invalid_parameter",
        ),
        ("GET", "/v1/events?cursor=abc", "", 400, "invalid_parameter"),
        ("GET", "/v1/events?colour=red", "", 400, "invalid_parameter"),
        ("GET", "/v1/stats?limit=3", "", 400, "invalid_parameter"),
        ("GET", "/v1/nothing", "", 404, "not_found"),
        ("PUT", "/v1/events", "", 405, "method_not_allowed"),
    ];
    for (method, path, body, want, code) in cases {
        let key = if *method == "POST" { KEY } else { READ_KEY };
        let (status, answer) = s.request(method, path, Some(key), body);
        assert_eq!(status, *want, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{method} {path}: {answer}");
    }
    let (_, answer) = s.request("GET", "/v1/events?since=yesterday", Some(READ_KEY), "");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`since`"),
        "{answer}"
    );

    // A batch with one bad event among good ones stores the good ones and names the bad one.
    let good = events(2);
    let mixed = format!(
        r#"{{"events":[{},{{"event_id":"nope"}},{}]}}"#,
        serde_json::to_string(&good[0]).unwrap(),
        serde_json::to_string(&good[1]).unwrap()
    );
    let (status, receipt) = s.request("POST", "/v1/ingest/events", Some(KEY), &mixed);
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 2);
    assert_eq!(receipt["rejected"][0]["index"], 1);
}

#[test]
fn an_oversized_body_is_refused_with_413() {
    let dir = temp_dir("large");
    std::fs::write(dir.join("keys"), format!("{KEY}\n")).unwrap();
    std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    let s = Sentinel::start_in(dir);
    let body = " ".repeat(9 * 1024 * 1024);
    let (status, answer) = s.request("POST", "/v1/ingest/events", Some(KEY), &body);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
}

#[test]
fn filters_and_pages_return_the_right_events() {
    let s = Sentinel::start("pages");
    let evs = events(25);
    let (status, _) = s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));
    assert_eq!(status, 200);

    // All, newest first, in pages of 10: 10 + 10 + 5 with no overlap or gap.
    let mut all = Vec::new();
    let mut path = "/v1/events?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = s.request("GET", &path, Some(READ_KEY), "");
        assert_eq!(status, 200, "{page}");
        pages += 1;
        all.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = evs.iter().rev().map(|e| e.event_id.to_string()).collect();
    assert_eq!(all, newest_first);

    // Filters, each against the same predicate in Rust, paged by 4.
    type Pred = fn(&AuditEvent<'_>) -> bool;
    let cases: &[(&str, Pred)] = &[
        ("server=a", |e| e.server == "a"),
        ("decision=deny", |e| e.decision == Decision::Deny),
        ("reason=allowed&human=bob", |e| {
            e.reason == "allowed" && e.human_id.as_deref() == Some("bob")
        }),
        (
            "since=2026-11-24T00:00:05Z&until=2026-11-24T00:00:15Z",
            |e| {
                let s = e.time.as_second() - 1_795_478_400;
                (5..15).contains(&s)
            },
        ),
        ("team=t1&tool=echo&namespace=team-a", |_| true),
        ("agent=nobody", |_| false),
        ("session=none", |_| false),
    ];
    for (query, pred) in cases {
        let want: Vec<String> = evs
            .iter()
            .rev()
            .filter(|e| pred(e))
            .map(|e| e.event_id.to_string())
            .collect();
        let mut got = Vec::new();
        let mut path = format!("/v1/events?{query}&limit=4");
        loop {
            let (status, page) = s.request("GET", &path, Some(READ_KEY), "");
            assert_eq!(status, 200, "{query}: {page}");
            let n = ids(&page).len();
            assert!(n <= 4);
            got.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/events?{query}&limit=4&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(got, want, "{query}");
    }
}

#[test]
fn stats_add_up() {
    let s = Sentinel::start("stats");
    let mut evs = events(30);
    // One aggregated refusal standing for 5 decisions.
    evs[1].decision = Decision::Deny;
    evs[1].reason = "invalid_token".into();
    evs[1].count = Some(5);
    s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));

    let (status, stats) = s.request("GET", "/v1/stats", Some(READ_KEY), "");
    assert_eq!(status, 200, "{stats}");
    let denies = evs.iter().filter(|e| e.decision == Decision::Deny).count() as u64;
    assert_eq!(stats["events"], 30);
    assert_eq!(stats["decisions"], 34);
    assert_eq!(stats["by_decision"]["deny"], denies + 4);
    assert_eq!(stats["by_decision"]["allow"], 30 - denies);
    assert_eq!(stats["by_reason"]["invalid_token"], 5);
    assert_eq!(stats["by_reason"]["trust_too_low"], 10);
    assert_eq!(stats["by_reason"]["allowed"], 19);
    let sum = |o: &Value| {
        o.as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum(&stats["by_decision"]), 34);
    assert_eq!(sum(&stats["by_reason"]), 34);

    // With a filter: the events of server a.
    let (_, stats) = s.request("GET", "/v1/stats?server=a", Some(READ_KEY), "");
    let a = evs.iter().filter(|e| e.server == "a").count() as u64;
    assert_eq!(stats["events"], a);
    assert_eq!(stats["decisions"], a);
}
