//! Team analytics through the platform, against the real `mcp-sentinel` (build it first:
//! `cargo build -p mcp-runtime-sentinel`): each team sees only its own namespace's events,
//! however the query is written.

mod common;

use common::Platform;
use common::sentinel::{READ_KEY, Sentinel};
use serde_json::{Value, json};

/// An event of another producer, indexed like a gateway decision by its payload's fields.
fn event(namespace: &str, server: &str, decision: &str, human: &str, team: &str) -> Value {
    json!({
        "source": "analytics-test",
        "event_type": "mcp.request",
        "payload": {
            "namespace": namespace,
            "server": server,
            "decision": decision,
            "reason": if decision == "deny" { "no_grant" } else { "granted" },
            "human_id": human,
            "team_id": team,
            "tool": "echo",
        },
    })
}

/// The namespaces of a page of events.
fn namespaces(page: &common::Reply) -> Vec<String> {
    page.json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {}", page.text))
        .iter()
        .map(|e| e["payload"]["namespace"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn platform_with(sentinel_url: &str, key: &str, name: &str) -> Platform {
    let dir = common::temp_dir(&format!("{name}-key"));
    let key_file = dir.join("sentinel-read-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    Platform::start_with(
        name,
        &[
            "--sentinel-url",
            sentinel_url,
            "--sentinel-read-key-file",
            key_file.to_str().unwrap(),
        ],
    )
}

#[test]
fn each_team_reads_only_its_own_namespace() {
    let mut sentinel = Sentinel::start("teams");
    sentinel.ingest(&[
        event("mcp-team-red", "hello", "allow", "mia@example.com", "red"),
        event("mcp-team-red", "hello", "allow", "olga@example.com", "red"),
        event("mcp-team-red", "hello", "deny", "mia@example.com", "red"),
        event("mcp-team-blue", "other", "deny", "bob@example.com", "blue"),
        event("mcp-team-blue", "other", "deny", "bob@example.com", "blue"),
        // Blue's namespace, but claiming red as its team: `team=red` must not reach it.
        event("mcp-team-blue", "other", "allow", "bob@example.com", "red"),
    ]);
    let p = platform_with(&sentinel.url(), READ_KEY, "analytics");
    let admin = p.admin();
    let mia = p.user(&admin, "mia@example.com");
    let olga = p.user(&admin, "olga@example.com");
    let bob = p.user(&admin, "bob@example.com");
    let ned = p.user(&admin, "ned@example.com");
    for (team, owner) in [("red", "olga@example.com"), ("blue", "bob@example.com")] {
        let r = p.call(
            "POST",
            "/v1/teams",
            &admin,
            &json!({"slug": team, "display_name": team, "owner": owner}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &admin,
        r#"{"email":"mia@example.com"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // Red's member, red's owner and an admin see red's three events and nothing else.
    for (who, auth) in [("member", &mia), ("owner", &olga), ("admin", &admin)] {
        let page = p.call("GET", "/v1/teams/red/analytics/events", auth, "");
        assert_eq!(page.status, 200, "{who}: {}", page.text);
        assert_eq!(namespaces(&page), ["mcp-team-red"; 3], "{who}");
        let stats = p.call("GET", "/v1/teams/red/analytics/stats", auth, "");
        assert_eq!(stats.status, 200, "{who}: {}", stats.text);
        assert_eq!(stats.json["decisions"], 3, "{who}: {}", stats.text);
        assert_eq!(stats.json["by_decision"], json!({"allow": 2, "deny": 1}));
        let usage = p.call("GET", "/v1/teams/red/analytics/usage?window=1h", auth, "");
        assert_eq!(usage.status, 200, "{who}: {}", usage.text);
        let totals = &usage.json["totals"];
        assert_eq!(
            (&totals["decisions"], &totals["allowed"], &totals["denied"]),
            (&json!(3), &json!(2), &json!(1)),
            "{who}: {}",
            usage.text
        );
        let servers: Vec<&str> = usage.json["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["server"].as_str().unwrap())
            .collect();
        assert_eq!(servers, ["hello"], "{who}: {}", usage.text);
    }
    // What the platform answers is Sentinel's own answer for red's namespace.
    let direct = sentinel.read("/v1/stats?namespace=mcp-team-red");
    let through = p.call("GET", "/v1/teams/red/analytics/stats", &mia, "");
    assert_eq!(through.json, direct.json);

    // Blue's owner and a user in no team: red's analytics do not exist for them.
    for (who, auth) in [("blue's owner", &bob), ("outsider", &ned)] {
        for report in ["events", "stats", "usage"] {
            let r = p.call(
                "GET",
                &format!("/v1/teams/red/analytics/{report}"),
                auth,
                "",
            );
            assert_eq!(r.status, 404, "{who} {report}: {}", r.text);
            assert_eq!(r.error(), ("not_found", "no team `red`"));
        }
    }
    // Red's member cannot read blue's either, even by asking for red's namespace there.
    let r = p.call(
        "GET",
        "/v1/teams/blue/analytics/events?namespace=mcp-team-red",
        &mia,
        "",
    );
    assert_eq!(r.status, 404, "{}", r.text);
    // Blue's owner sees blue's three.
    let page = p.call("GET", "/v1/teams/blue/analytics/events", &bob, "");
    assert_eq!(namespaces(&page), ["mcp-team-blue"; 3]);

    // Smuggling blue's namespace into red's route: refused, however it is written.
    for query in [
        "namespace=mcp-team-blue",
        "%6Eamespace=mcp-team-blue",
        "namespace=mcp-team-red&namespace=mcp-team-blue",
        "namespace=mcp-team-blue&namespace=mcp-team-red",
        "decision=deny&namespace=mcp-team-blue",
    ] {
        for report in ["events", "stats", "usage"] {
            let r = p.call(
                "GET",
                &format!("/v1/teams/red/analytics/{report}?{query}"),
                &mia,
                "",
            );
            assert!(
                r.status == 403 || r.status == 400,
                "{report}?{query}: {} {}",
                r.status,
                r.text
            );
            assert!(r.error().1.contains("`namespace`"), "{query}: {}", r.text);
            assert!(!r.text.contains("bob@example.com"), "{query}: {}", r.text);
        }
    }
    let r = p.call(
        "GET",
        "/v1/teams/red/analytics/events?namespace=mcp-team-blue",
        &mia,
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error().0, "forbidden");
    // Naming red's own namespace is fine; a `team` filter only narrows within it.
    let page = p.call(
        "GET",
        "/v1/teams/red/analytics/events?namespace=mcp-team-red&team=red",
        &mia,
        "",
    );
    assert_eq!(namespaces(&page), ["mcp-team-red"; 3], "{}", page.text);
    // A value holding `&namespace=` stays one value (no event has that reason).
    let page = p.call(
        "GET",
        "/v1/teams/red/analytics/events?reason=x%26namespace%3Dmcp-team-blue",
        &mia,
        "",
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(namespaces(&page), Vec::<String>::new());
    // Paging stays inside the team: the cursor of red's first page leads to red's rest.
    let first = p.call("GET", "/v1/teams/red/analytics/events?limit=2", &mia, "");
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    let rest = p.call(
        "GET",
        &format!("/v1/teams/red/analytics/events?limit=2&cursor={cursor}"),
        &mia,
        "",
    );
    assert_eq!(namespaces(&rest), ["mcp-team-red"], "{}", rest.text);

    // The platform's own refusals name the parameter.
    for (path, name) in [
        ("/v1/teams/red/analytics/stats?limit=5", "limit"),
        ("/v1/teams/red/analytics/events?everything=1", "everything"),
        ("/v1/teams/red/analytics/events?team=red&team=blue", "team"),
    ] {
        let r = p.call("GET", path, &mia, "");
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.error().0, "invalid_parameter");
        assert!(
            r.error().1.starts_with(&format!("parameter `{name}`")),
            "{path}: {}",
            r.text
        );
    }
    // Sentinel's refusals of a value come through as Sentinel wrote them.
    let r = p.call(
        "GET",
        "/v1/teams/red/analytics/events?since=yesterday",
        &mia,
        "",
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let direct = sentinel.read("/v1/events?since=yesterday&namespace=mcp-team-red");
    assert_eq!(r.json, direct.json);
    assert!(r.error().1.contains("`since`"), "{}", r.text);

    // The smuggling attempts are in the audit log as denied.
    let r = p.call(
        "GET",
        "/v1/audit?action=analytics.read&outcome=denied&limit=200",
        &admin,
        "",
    );
    let entries = r.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5 * 3 - 3 + 1, "{}", r.text);
    assert!(
        entries.iter().all(|e| e["actor"] == "mia@example.com"
            && e["target"]
                .as_str()
                .unwrap()
                .starts_with("team/red/analytics/")),
        "{}",
        r.text
    );

    // Sentinel gone: 503 with a code saying what is missing.
    sentinel.stop();
    let r = p.call("GET", "/v1/teams/red/analytics/stats", &mia, "");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "analytics_unavailable");
    assert!(
        r.error().1.contains("Sentinel did not answer"),
        "{}",
        r.text
    );
    // Outsiders still learn nothing about red.
    assert_eq!(
        p.call("GET", "/v1/teams/red/analytics/stats", &bob, "")
            .status,
        404
    );
}

#[test]
fn a_misconfigured_sentinel_is_503_never_the_callers_fault() {
    let sentinel = Sentinel::start("wrong-key");
    sentinel.ingest(&[event(
        "mcp-team-red",
        "hello",
        "allow",
        "a@example.com",
        "red",
    )]);
    // A key Sentinel does not accept: not the caller's 401.
    let p = platform_with(&sentinel.url(), "not-the-read-key", "analytics_wrong_key");
    let admin = p.admin();
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        r#"{"slug":"red","display_name":"Red"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = p.call("GET", "/v1/teams/red/analytics/events", &admin, "");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "analytics_unavailable");
    assert!(r.error().1.contains("401"), "{}", r.text);
    assert!(r.header("www-authenticate").is_none());
    assert!(
        !p.log().contains("not-the-read-key"),
        "the key is not logged"
    );

    // No --sentinel-url at all: 503 naming the flag.
    let p = Platform::start("analytics_none");
    let admin = p.admin();
    p.call(
        "POST",
        "/v1/teams",
        &admin,
        r#"{"slug":"red","display_name":"Red"}"#,
    );
    let r = p.call("GET", "/v1/teams/red/analytics/usage", &admin, "");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "analytics_unavailable");
    assert!(r.error().1.contains("--sentinel-url"), "{}", r.text);
}

#[test]
fn bad_sentinel_flags_stop_the_start() {
    let dir = common::temp_dir("sentinel-flags");
    let key = mcp_runtime_token::SigningKey::from_seed(&[9; 32]);
    std::fs::write(dir.join("signing.pem"), key.to_pem()).unwrap();
    std::fs::write(dir.join("admin-password"), "bootstrap password 1\n").unwrap();
    std::fs::write(dir.join("empty-key"), "\n").unwrap();
    let db = mcp_runtime_pg_testenv::Postgres::shared().database("sentinel_flags");
    let key_file = dir.join("empty-key");
    for (args, expected) in [
        (
            vec![
                "--sentinel-url",
                "https://sentinel:8095",
                "--sentinel-read-key-file",
                key_file.to_str().unwrap(),
            ],
            "--sentinel-url https://sentinel:8095: write http://HOST:PORT",
        ),
        (
            vec!["--sentinel-url", "http://sentinel:8095"],
            "--sentinel-read-key-file",
        ),
    ] {
        let out = Platform::command(&dir, &db, common::free_port())
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let out = Platform::command(&dir, &db, common::free_port())
        .args(["--sentinel-url", "http://127.0.0.1:1"])
        .arg("--sentinel-read-key-file")
        .arg(&key_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the first line must hold the key"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
