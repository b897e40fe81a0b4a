//! No audit event is lost while the ingest is down: 1 000 calls through the gateway with the
//! ingest stopped, then the ingest starts and receives every event once (deduplicated by id).

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  tools: [{name: echo, sideEffect: read}]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice}, allowedSideEffects: [read]}
";

/// Makes `n` stateless `tools/call echo` requests over one keep-alive connection.
const CALLER: &str = r#"
import http.client, json, sys
host, port, token, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
conn = http.client.HTTPConnection(host, port)
ok = 0
for i in range(n):
    body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": str(i)}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}, "io.modelcontextprotocol/clientCapabilities": {}}}})
    conn.request("POST", "/mcp", body, {"content-type": "application/json", "accept": "application/json, text/event-stream", "authorization": "Bearer " + token, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"})
    r = conn.getresponse(); data = r.read()
    ok += r.status == 200 and b'"error"' not in data
print(ok)
"#;

/// Makes `n` allowed `echo` calls as alice through the gateway (CALLER); all must succeed.
fn call_echo(stack: &Stack, n: usize) {
    let token = token("test/py", Some("alice"), None, None, 600);
    let port = stack
        .url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .to_owned();
    let out = Command::new(&stack.peers.python)
        .args(["-c", CALLER, "127.0.0.1", &port, &token, &n.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        n.to_string(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_event_arrives_once_after_an_ingest_outage() {
    let ingest_port = free_port();
    let stack = Stack::start(
        "audit",
        POLICY,
        &[
            "--audit-ingest-url",
            &format!("http://127.0.0.1:{ingest_port}/events"),
        ],
    );
    call_echo(&stack, 1000);

    let received = stack.dir.join("ingested.jsonl");
    let mut ingest = Command::new(&stack.peers.python);
    ingest
        .arg(repo_root().join("tests/peers/ingest.py"))
        .arg(ingest_port.to_string())
        .arg(&received);
    let _ingest = spawn(ingest, stack.dir.join("ingest.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let calls: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["tool"] == "echo" && e["decision"] == "allow")
            .collect();
        let ids: HashSet<String> = calls
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
        let rpc_ids: HashSet<i64> = calls
            .iter()
            .map(|e| e["rpc_id"].as_i64().unwrap())
            .collect();
        if ids.len() >= 1000 {
            assert_eq!(rpc_ids.len(), 1000, "each call has its event");
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 1000 events arrived:\n{}",
            ids.len(),
            stack.gateway.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        ids.len(),
        1000,
        "exactly the 1000 calls' events, after dedupe by event_id"
    );
    let metrics = curl(&[&format!("{}/metrics", stack.admin)]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("mcp_gateway_audit_dropped_events_total 0"),
        "{metrics}"
    );
}

/// Events reach an HTTPS ingest whose certificate is signed by a private CA given with
/// `--audit-ca-file`; without that CA the gateway does not trust the ingest and keeps the events
/// spooled rather than sending them anywhere unverified.
#[test]
fn events_reach_an_https_ingest_trusted_through_a_private_ca() {
    let dir = tempdir("audit-https-pki");
    let Pki { ca, cert, key } = pki(&dir);
    let ingest_port = free_port();
    let received = dir.join("ingested.jsonl");
    let peers = peers();
    let mut ingest = Command::new(&peers.python);
    ingest
        .arg(repo_root().join("tests/peers/ingest.py"))
        .arg(ingest_port.to_string())
        .arg(&received)
        .arg(&cert)
        .arg(&key);
    let mut ingest = spawn(ingest, dir.join("ingest.log"));
    wait_port(ingest_port, &mut ingest, "HTTPS ingest");
    let url = format!("https://127.0.0.1:{ingest_port}/events");
    let ca_arg = ca.display().to_string();

    let delivered = || {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"echo\""))
            .count()
    };

    // Without the private CA: nothing is delivered, and the spool keeps the events.
    let untrusting = Stack::start(
        "audit-https-untrusted",
        POLICY,
        &["--audit-ingest-url", &url],
    );
    call_echo(&untrusting, 5);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(delivered(), 0, "an unverified ingest received events");
    let metrics = curl(&[&format!("{}/metrics", untrusting.admin)]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(
        metrics.contains("mcp_gateway_audit_spool_pending_events 5"),
        "{metrics}"
    );
    // The shipper's failed attempts are counted (it retries with backoff).
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_gateway_audit_ship_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ship failure counter:\n{metrics}"));
    assert!(failures >= 1, "{metrics}");
    drop(untrusting);

    // With it: every event arrives.
    let stack = Stack::start(
        "audit-https",
        POLICY,
        &["--audit-ingest-url", &url, "--audit-ca-file", &ca_arg],
    );
    call_echo(&stack, 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered() < 20 {
        assert!(
            Instant::now() < deadline,
            "{} of 20 events over HTTPS:\n{}",
            delivered(),
            stack.gateway.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
