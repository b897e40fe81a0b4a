//! The real `mcp-gateway` ships its audit events to the real `mcp-sentinel`, and every decision
//! becomes queryable.
//!
//! The gateway binary is taken from the same target directory as this test
//! (`target/debug/mcp-gateway`), or from `MCP_GATEWAY_BIN`: build it first with
//! `cargo build -p mcp-runtime-gateway`. The test fails (never skips) when it is missing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `mcp-runtime policy render` of one MCPServer `test/py` with a read tool `echo` (token auth).
const POLICY: &str = r#"{
  "schema_version": "mcpruntime.org/policy/v1",
  "revision": "sha256:0ac412ebda0b2cb1884eaed78a52e0d50c65035bfa2d159e3ebe200c747e39bd",
  "server": {"name": "py", "namespace": "test"},
  "auth": {"mode": "token"},
  "policy": {"mode": "allow-list", "default_decision": "deny"},
  "session": {"required": false},
  "tools": [{"name": "echo", "required_trust": "low", "side_effect": "read"}]
}"#;

/// Any Ed25519 public key: no token in this test is signed by it.
const TOKEN_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAMKxA02tuyqUP9BCwDj4MwUX2crVgOQYntyNZOqmMQ50=
-----END PUBLIC KEY-----
";

#[test]
fn gateway_decisions_become_queryable() {
    let sentinel = Sentinel::start("e2e", Backend::Sqlite);
    let dir = sentinel.dir.clone();
    std::fs::write(dir.join("policy.json"), POLICY).unwrap();
    std::fs::write(dir.join("token.pub"), TOKEN_PUBLIC_KEY).unwrap();
    std::fs::write(dir.join("ingest-key"), KEY).unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let gateway = Command::new(gateway_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        // Nothing listens there: no request in this test is forwarded.
        .args(["--upstream", &format!("http://127.0.0.1:{}", free_port())])
        .arg("--policy-file")
        .arg(dir.join("policy.json"))
        .arg("--token-public-keys-file")
        .arg(dir.join("token.pub"))
        .arg("--audit-ingest-url")
        .arg(format!(
            "http://127.0.0.1:{}/v1/ingest/events",
            sentinel.port
        ))
        .arg("--audit-api-key-file")
        .arg(dir.join("ingest-key"))
        .arg("--audit-spool-dir")
        .arg(dir.join("spool"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
        .spawn()
        .unwrap();
    let _gateway = Killed(gateway);
    let log = || std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(admin_port, "GET", "/healthz", &[], "")
        .ok()
        .map(|r| r.0)
        != Some(200)
    {
        assert!(Instant::now() < deadline, "gateway not ready:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // 20 calls without a token and 5 with a token no key signed: 25 refusals.
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let mut statuses = Vec::new();
    for i in 0..25 {
        let headers: &[(&str, &str)] = if i < 20 {
            &[("accept", "application/json, text/event-stream")]
        } else {
            &[
                ("accept", "application/json, text/event-stream"),
                ("authorization", "Bearer not-a-token"),
            ]
        };
        statuses.push(http(port, "POST", "/mcp", headers, body).unwrap().0);
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");

    // Each refusal is counted once: the gateway aggregates refusals before authentication
    // into events with `count`, and the stats add the counts up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let (status, stats) = sentinel.request(
            "GET",
            "/v1/stats?server=py&namespace=test",
            Some(READ_KEY),
            "",
        );
        assert_eq!(status, 200, "{stats}");
        if stats["decisions"] == 25 {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "stats: {stats}\ngateway log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["by_decision"]["deny"], 25, "{stats}");
    assert!(stats["by_decision"].get("allow").is_none(), "{stats}");

    // The events themselves, as the gateway wrote them.
    let (status, page) = sentinel.request(
        "GET",
        "/v1/events?server=py&decision=deny&limit=1000",
        Some(READ_KEY),
        "",
    );
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len() as u64, stats["events"].as_u64().unwrap());
    let counted: u64 = events
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 25);
    for e in events {
        assert_eq!(e["namespace"], "test", "{e}");
        assert_eq!(e["http_method"], "POST", "{e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    }
}
