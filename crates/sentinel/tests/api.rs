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

fn a_batch_sent_twice_is_stored_once(backend: Backend) {
    let s = Sentinel::start("twice", backend);
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

    // Still one each after a restart on the same file (database).
    let s = s.restart();
    let (_, page) = s.request("GET", "/v1/events?limit=1000", Some(READ_KEY), "");
    assert_eq!(ids(&page).len(), 10);
}

fn keys_are_required_and_checked(backend: Backend) {
    let s = Sentinel::start("keys", backend);
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

fn bad_requests_get_the_error_envelope(backend: Backend) {
    let s = Sentinel::start("bad", backend);
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

fn an_oversized_body_is_refused_with_413(backend: Backend) {
    let dir = temp_dir("large");
    std::fs::write(dir.join("keys"), format!("{KEY}\n")).unwrap();
    std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    let s = Sentinel::start_in(dir, backend);
    let body = " ".repeat(9 * 1024 * 1024);
    let (status, answer) = s.request("POST", "/v1/ingest/events", Some(KEY), &body);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
}

fn filters_and_pages_return_the_right_events(backend: Backend) {
    let s = Sentinel::start("pages", backend);
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

fn stats_add_up(backend: Backend) {
    let s = Sentinel::start("stats", backend);
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

/// Events from a producer other than the gateway: one envelope at a time (202, as the original
/// platform's producers expect) or in a batch; personal data and secrets are redacted before
/// they are stored, so no query shows them.
fn envelopes_from_other_producers_are_stored_redacted(backend: Backend) {
    let s = Sentinel::start("envelope", backend);
    let single = json!({
        "source": "support-bot", "event_type": "pii.check",
        "timestamp": "2026-11-25T10:00:00Z",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "payload": {
            "server": "crm", "namespace": "team-a", "decision": "denied", "tool_name": "lookup",
            "note": "customer jane.doe@example.com called from +44 20 7946 0958",
            "headers": {"Authorization": "Bearer abcdefghijklmnop1234"},
            "config": "password=hunter2hunter2 region=eu",
            "key": "AKIAABCDEFGHIJKLMNOP"
        }
    });
    let (status, receipt) = s.request("POST", "/v1/ingest/events", Some(KEY), &single.to_string());
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["accepted"], 1);
    assert_eq!(receipt["redacted"], 4, "{receipt}");
    let id = "019abc12-3456-7def-8901-234567890abc";
    let batch_body = json!({"events": [
        {"event_id": id, "source": "router", "event_type": "service.route.check",
         "payload": {"route": "/a", "ok": true}},
        {"source": "router", "event_type": "service.route.check"},
    ]});
    let (status, receipt) = s.request(
        "POST",
        "/v1/ingest/events",
        Some(KEY),
        &batch_body.to_string(),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 1);
    assert_eq!(receipt["rejected"][0]["index"], 1);
    assert!(
        receipt["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`payload`"),
        "{receipt}"
    );
    // The envelope's event_id makes it idempotent too.
    let (_, receipt) = s.request(
        "POST",
        "/v1/ingest/events",
        Some(KEY),
        &batch_body.to_string(),
    );
    assert_eq!(receipt["duplicates"], 1);

    let (status, page) = s.request("GET", "/v1/events?event_type=pii.check", Some(READ_KEY), "");
    assert_eq!(status, 200, "{page}");
    let stored = &page["events"][0];
    let text = stored.to_string();
    for secret in [
        "jane.doe",
        "7946",
        "abcdefghijklmnop1234",
        "hunter2",
        "AKIAABCD",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(stored["source"], "support-bot");
    assert_eq!(stored["time"], "2026-11-25T10:00:00Z");
    assert_eq!(stored["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        stored["payload"]["note"],
        "customer [REDACTED:email] called from [REDACTED:phone]"
    );
    assert_eq!(stored["payload"]["config"], "[REDACTED:secret] region=eu");
    // Its payload's well-known fields are indexed like a gateway event's.
    for query in [
        "server=crm&decision=deny&tool=lookup&namespace=team-a",
        "source=support-bot",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    ] {
        let (_, page) = s.request("GET", &format!("/v1/events?{query}"), Some(READ_KEY), "");
        assert_eq!(ids(&page).len(), 1, "{query}: {page}");
    }
    let (_, page) = s.request("GET", "/v1/events?source=router", Some(READ_KEY), "");
    assert_eq!(ids(&page), [id]);
    // Stats count the denial; the route check is an event but not a decision.
    let (_, stats) = s.request("GET", "/v1/stats", Some(READ_KEY), "");
    assert_eq!(stats["events"], 2);
    assert_eq!(stats["decisions"], 1);
    assert_eq!(stats["by_decision"]["deny"], 1);
}

/// In hash mode, redacted identity fields are stored as keyed hashes, and a filter on the
/// clear value still finds them (the API hashes it the same way).
fn hashed_identities_stay_filterable(backend: Backend) {
    let dir = temp_dir("hash");
    std::fs::write(dir.join("keys"), format!("{KEY}\n")).unwrap();
    std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    std::fs::write(dir.join("redact.key"), [7u8; 32]).unwrap();
    let key_file = dir.join("redact.key").display().to_string();
    let s = Sentinel::start_with(
        dir,
        backend,
        &[
            "--redact-mode",
            "hash",
            "--redact-key-file",
            &key_file,
            "--redact-field",
            "human_id",
        ],
    );
    let mut evs = events(4);
    evs[0].human_id = Some("alice@example.com".into());
    evs[1].human_id = Some("alice@example.com".into());
    s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));
    let (_, page) = s.request(
        "GET",
        "/v1/events?human=alice%40example.com",
        Some(READ_KEY),
        "",
    );
    assert_eq!(ids(&page).len(), 2, "{page}");
    assert!(!page.to_string().contains("alice@"), "{page}");
    assert!(
        page["events"][0]["human_id"]
            .as_str()
            .unwrap()
            .starts_with("[HASH:field:")
    );

    // In replace mode every redacted value reads the same: a filter on it is refused, with the
    // fix, rather than matching them all.
    let dir = temp_dir("replace");
    std::fs::write(dir.join("keys"), format!("{KEY}\n")).unwrap();
    std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    let replace = Sentinel::start_with(dir, backend, &["--redact-field", "human_id"]);
    replace.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));
    let (status, answer) = replace.request("GET", "/v1/events?human=alice", Some(READ_KEY), "");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--redact-mode hash"),
        "{answer}"
    );
    let (_, page) = replace.request("GET", "/v1/events", Some(READ_KEY), "");
    assert!(!page.to_string().contains("alice"), "{page}");

    // A hash key that is too short is refused at start, with the fix.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-sentinel"))
        .args(["--api-keys-file", "/dev/null", "--redact-mode", "hash"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn usage_events() -> Vec<AuditEvent<'static>> {
    // 3 hours of traffic on 2026-11-24: hour 0 has 4 events, hour 1 none, hour 2 has 3.
    let t = |h: i64, m: i64| {
        "2026-11-24T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
            + jiff::SignedDuration::from_mins(h * 60 + m)
    };
    // hour, minute, server, human, tool, decision, reason
    type Spec<'a> = (
        i64,
        i64,
        &'a str,
        &'a str,
        Option<&'a str>,
        Decision,
        &'a str,
    );
    let spec: &[Spec<'_>] = &[
        (
            0,
            1,
            "crm",
            "alice",
            Some("echo"),
            Decision::Allow,
            "allowed",
        ),
        (
            0,
            2,
            "crm",
            "alice",
            Some("echo"),
            Decision::Allow,
            "allowed",
        ),
        (
            0,
            3,
            "crm",
            "bob",
            Some("delete"),
            Decision::Deny,
            "trust_too_low",
        ),
        (
            0,
            4,
            "wiki",
            "bob",
            Some("read"),
            Decision::Allow,
            "allowed",
        ),
        (
            2,
            5,
            "crm",
            "alice",
            Some("delete"),
            Decision::Deny,
            "trust_too_low",
        ),
        (
            2,
            6,
            "wiki",
            "carol",
            None,
            Decision::Deny,
            "session_revoked",
        ),
        (
            2,
            7,
            "wiki",
            "alice",
            Some("read"),
            Decision::Allow,
            "allowed",
        ),
    ];
    spec.iter()
        .map(|(h, m, server, human, tool, decision, reason)| {
            let mut e = AuditEvent::new("gw", *server, "team-a", "POST", *decision, *reason);
            e.time = t(*h, *m);
            e.event_id = next_event_id(e.time);
            e.human_id = Some((*human).into());
            e.agent_id = Some("claude".into());
            e.tool = tool.map(Into::into);
            e
        })
        .collect()
}

fn usage_rolls_up_totals_rankings_and_a_series(backend: Backend) {
    let s = Sentinel::start("usage", backend);
    let mut evs = usage_events();
    // An aggregated refusal standing for 3 decisions (before authentication: no identity).
    let mut flood = AuditEvent::new(
        "gw",
        "crm",
        "team-a",
        "POST",
        Decision::Deny,
        "invalid_token",
    );
    flood.time = "2026-11-24T02:30:00Z".parse().unwrap();
    flood.event_id = next_event_id(flood.time);
    flood.count = Some(3);
    evs.push(flood);
    s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));

    let window = "since=2026-11-24T00:00:00Z&until=2026-11-24T03:00:00Z";
    let (status, u) = s.request("GET", &format!("/v1/usage?{window}"), Some(READ_KEY), "");
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["bucket"], "hour");
    assert_eq!(
        u["totals"],
        json!({"events": 8, "decisions": 10, "allowed": 4, "denied": 6,
               "servers": 2, "humans": 3, "agents": 1, "sessions": 0})
    );
    assert_eq!(
        u["series"],
        json!([
            {"start": "2026-11-24T00:00:00Z", "decisions": 4, "allowed": 3, "denied": 1},
            {"start": "2026-11-24T01:00:00Z", "decisions": 0, "allowed": 0, "denied": 0},
            {"start": "2026-11-24T02:00:00Z", "decisions": 6, "allowed": 1, "denied": 5},
        ])
    );
    assert_eq!(u["servers"][0]["server"], "crm");
    assert_eq!(u["servers"][0]["decisions"], 7);
    assert_eq!(u["servers"][0]["denied"], 5);
    assert_eq!(u["servers"][0]["humans"], 2);
    assert_eq!(u["servers"][0]["last_seen"], "2026-11-24T02:30:00Z");
    assert_eq!(u["servers"][1]["server"], "wiki");
    assert_eq!(u["actors"][0]["human"], "alice");
    assert_eq!(u["actors"][0]["decisions"], 4);
    assert_eq!(u["actors"][0]["servers"], 2);
    assert_eq!(u["actors"][0]["tools"], 3);
    let tools: Vec<(String, String, u64)> = u["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["server"].as_str().unwrap().to_owned(),
                t["tool"].as_str().unwrap().to_owned(),
                t["decisions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [
            ("crm".into(), "delete".into(), 2),
            ("crm".into(), "echo".into(), 2),
            ("wiki".into(), "read".into(), 2)
        ]
    );
    assert_eq!(
        u["decisions"],
        json!([{"key": "deny", "decisions": 6}, {"key": "allow", "decisions": 4}])
    );
    assert_eq!(u["reasons"][0], json!({"key": "allowed", "decisions": 4}));
    assert_eq!(
        u["reasons"][1],
        json!({"key": "invalid_token", "decisions": 3})
    );
    assert_eq!(u["recent"].as_array().unwrap().len(), 8);
    assert_eq!(u["recent"][0]["reason"], "invalid_token");

    // Filters and limits apply to every part.
    let (_, u) = s.request(
        "GET",
        &format!("/v1/usage?{window}&server=wiki&limit=1&bucket=day"),
        Some(READ_KEY),
        "",
    );
    assert_eq!(u["totals"]["decisions"], 3);
    assert_eq!(u["series"].as_array().unwrap().len(), 1);
    assert_eq!(u["actors"].as_array().unwrap().len(), 1);
    assert_eq!(u["recent"].as_array().unwrap().len(), 1);

    // The default window is the last day: these events are older.
    let (_, u) = s.request("GET", "/v1/usage", Some(READ_KEY), "");
    assert_eq!(u["totals"]["events"], 0);
    assert_eq!(u["series"].as_array().unwrap().len(), 24 + 1);
    let (status, e) = s.request("GET", "/v1/usage?window=2y", Some(READ_KEY), "");
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("`window`"));
}

/// A key scoped to a namespace or team sees only that part of the events, in every read
/// route; asking for another namespace is refused, not silently emptied; a scoped ingest key
/// cannot write events of another namespace.
fn scoped_keys_see_and_write_only_their_namespaces(backend: Backend) {
    let dir = temp_dir("scope");
    std::fs::write(
        dir.join("keys"),
        format!("{KEY}\nteam-b-producer namespaces=team-b\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("read-keys"),
        format!("{READ_KEY}\nteam-a-reader namespaces=team-a\nteam-t2-reader teams=t2\n"),
    )
    .unwrap();
    let s = Sentinel::start_in(dir, backend);
    let mut evs = events(6);
    for (i, e) in evs.iter_mut().enumerate() {
        if i % 2 == 1 {
            e.namespace = "team-b".into();
            e.team_id = Some("t2".into());
        }
    }
    s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&evs));

    let (_, page) = s.request("GET", "/v1/events", Some("team-a-reader"), "");
    assert_eq!(ids(&page).len(), 3);
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["namespace"] == "team-a")
    );
    let (_, page) = s.request("GET", "/v1/events", Some("team-t2-reader"), "");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["namespace"] == "team-b")
    );
    let (_, stats) = s.request("GET", "/v1/stats", Some("team-a-reader"), "");
    assert_eq!(stats["events"], 3);
    let (_, u) = s.request(
        "GET",
        "/v1/usage?since=2026-11-23T00:00:00Z",
        Some("team-a-reader"),
        "",
    );
    assert_eq!(u["totals"]["events"], 3);
    let (_, status) = s.request("GET", "/v1/status", Some("team-a-reader"), "");
    assert_eq!(status["events"], 3);
    let (_, status) = s.request("GET", "/v1/status", Some(READ_KEY), "");
    assert_eq!(status["events"], 6);

    for path in [
        "/v1/events?namespace=team-b",
        "/v1/stats?namespace=team-b",
        "/v1/usage?namespace=team-b",
        "/v1/events?team=t2",
    ] {
        let (status, e) = s.request("GET", path, Some("team-a-reader"), "");
        assert_eq!(status, 403, "{path}: {e}");
        assert_eq!(e["error"]["code"], "forbidden");
        assert!(e["error"]["message"].as_str().unwrap().contains("outside"));
    }

    // The team-b producer may write team-b events only.
    let mut mine = events(2);
    mine[0].namespace = "team-b".into();
    mine[0].event_id = next_event_id(jiff::Timestamp::now());
    mine[1].event_id = next_event_id(jiff::Timestamp::now());
    let (status, receipt) = s.request(
        "POST",
        "/v1/ingest/events",
        Some("team-b-producer"),
        &batch(&mine),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 1);
    assert_eq!(receipt["rejected"][0]["index"], 1);
    assert!(
        receipt["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("outside this key's scope")
    );
}

/// The OpenAPI document is served, parses, and lists exactly the routes the server answers;
/// every documented query parameter is accepted; every route answers 405 to other methods.
fn the_openapi_document_matches_the_routes(backend: Backend) {
    let s = Sentinel::start("openapi", backend);
    let (status, text) = http(s.port, "GET", "/v1/openapi.yaml", &[], "").unwrap();
    assert_eq!(status, 200);
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["openapi"].as_str(), Some("3.0.3"));
    let paths = doc["paths"].as_mapping().unwrap();
    let documented: std::collections::BTreeSet<String> = paths
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let served: std::collections::BTreeSet<String> = mcp_runtime_sentinel::server::ROUTES
        .iter()
        .map(|(p, _)| (*p).to_owned())
        .collect();
    assert_eq!(documented, served);
    let components = &doc["components"]["parameters"];
    for (path, method) in mcp_runtime_sentinel::server::ROUTES {
        let op = &paths[path.to_owned()][method.as_str().to_lowercase()];
        assert!(op.is_mapping(), "{method} {path} is not documented");
        // Each documented query parameter, with a valid value, is accepted.
        for p in op["parameters"].as_sequence().into_iter().flatten() {
            let p = match p["$ref"].as_str() {
                Some(r) => &components[r.rsplit('/').next().unwrap()],
                None => p,
            };
            let name = p["name"].as_str().unwrap();
            let value = match name {
                "since" | "until" => "2026-11-24T00:00:00Z",
                "decision" => "deny",
                "limit" => "5",
                "window" => "2d",
                "bucket" => "day",
                "cursor" => {
                    "MTcwMDAwMDAwMDAwMDAwMDAwMC8wMTlhYmMxMi0zNDU2LTdkZWYtODkwMS0yMzQ1Njc4OTBhYmM"
                }
                _ => "x",
            };
            if *method == http::Method::GET && path.starts_with("/v1/") {
                let (status, answer) =
                    s.request("GET", &format!("{path}?{name}={value}"), Some(READ_KEY), "");
                assert_eq!(status, 200, "{path}?{name}: {answer}");
            }
        }
        for other in ["PUT", "DELETE", "PATCH"] {
            let (status, answer) = s.request(other, path, Some(READ_KEY), "");
            assert_eq!(status, 405, "{other} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "method_not_allowed");
        }
    }
}

fn status_tells_version_store_retention_and_totals(backend: Backend) {
    let s = Sentinel::start("status", backend);
    s.request("POST", "/v1/ingest/events", Some(KEY), &batch(&events(3)));
    let (status, st) = s.request("GET", "/v1/status", Some(READ_KEY), "");
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["store"], backend.name());
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["retention_days"], 30);
    assert_eq!(st["events"], 3);
    assert_eq!(st["newest_event"]["time"], "2026-11-24T00:00:02Z");
}

/// Every test above, once per store.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod on_clickhouse {
            $(#[test] fn $name() { super::$name(super::Backend::ClickHouse) })*
        }
    };
}

on_each_store!(
    a_batch_sent_twice_is_stored_once,
    keys_are_required_and_checked,
    bad_requests_get_the_error_envelope,
    an_oversized_body_is_refused_with_413,
    filters_and_pages_return_the_right_events,
    stats_add_up,
    envelopes_from_other_producers_are_stored_redacted,
    hashed_identities_stay_filterable,
    usage_rolls_up_totals_rankings_and_a_series,
    scoped_keys_see_and_write_only_their_namespaces,
    the_openapi_document_matches_the_routes,
    status_tells_version_store_retention_and_totals,
);
