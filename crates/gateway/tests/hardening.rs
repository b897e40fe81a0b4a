//! The governed path has no way around it: responses fail closed, the bytes decided are the bytes
//! executed, every MCP method is decided, and the gateway stays bounded under abuse. Each test
//! runs the real `mcp-gateway` binary; the upstream is the official Python SDK server, or, for
//! faults no SDK server produces, tests/peers/hostile_server.py.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SERVER: &str = "test/py";

/// alice may call echo, get the greet prompt and read note://public and note://items/*;
/// delete_record is denied, admin_prompt and note://secret are not granted; dave's session is
/// revoked.
const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  tools:
    - {name: echo, sideEffect: read}
    - {name: delete_record, sideEffect: destructive, requiredTrust: high}
  prompts:
    - {name: greet, sideEffect: read}
    - {name: admin_prompt, sideEffect: read, requiredTrust: high}
  mcpResources:
    - {name: 'note://public', sideEffect: read}
    - {name: 'note://secret', sideEffect: read}
    - {name: 'note://items/*', sideEffect: read}
  session: {required: true}
  gateway: {enabled: true}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: alice, agentID: claude}
  maxTrust: high
  allowedSideEffects: [read, destructive]
  toolRules:
    - {name: echo, decision: allow}
    - {name: delete_record, decision: deny}
    - {name: 'prompt:greet', decision: allow}
    - {name: 'resource:note://public', decision: allow}
    - {name: 'resource:note://items/*', decision: allow}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: dave, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: dave}
  maxTrust: high
  allowedSideEffects: [read]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-alice, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice, agentID: claude}, consentedTrust: high, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-dave, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: dave}, consentedTrust: high, revoked: true, expiresAt: '2099-01-01T00:00:00Z'}
";

fn bearer(human: &str, agent: Option<&str>, session: &str) -> String {
    format!(
        "Bearer {}",
        token(SERVER, Some(human), agent, Some(session), 300)
    )
}

fn alice() -> String {
    bearer("alice", Some("claude"), "s-alice")
}

const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

fn headers<'a>(auth: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![JSON, ACCEPT, ("authorization", auth)];
    h.extend_from_slice(extra);
    h
}

const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn reason(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A body for [`reason`]: an empty answer (202) reads as an empty object.
fn body_or_empty(body: &str) -> String {
    if body.trim().is_empty() {
        "{}".to_owned()
    } else {
        body.to_owned()
    }
}

/// What the hostile upstream logged, one JSON object per request it received.
fn upstream_requests(stack: &Stack) -> Vec<Value> {
    std::fs::read_to_string(&stack.upstream.log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn answers_the_gateway_cannot_filter_are_not_shown() {
    let stack = Stack::start_with(
        "fail-closed",
        POLICY,
        &["--max-response-bytes", "4096"],
        hostile_server,
    );
    let auth = alice();
    // The control: a plain answer is filtered to what alice may call.
    let (status, _, body) = post(&stack.url, &headers(&auth, &[]), LIST);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"echo\"") && !body.contains("delete_record"),
        "{body}"
    );

    for (mode, want_status) in [
        // Compressed although the gateway asked for identity: it cannot be read, so refused.
        ("gzip", 502),
        // An answer under another id is filtered all the same.
        ("wrong-id", 200),
        // SSE with lone-CR line endings reads as the client reads it, and is filtered.
        ("lone-cr", 200),
        // An event whose data is not JSON ends the stream with an error.
        ("garbage", 200),
        // An event larger than --max-response-bytes ends the stream with an error.
        ("huge", 200),
    ] {
        let (status, head, body) = post(&stack.url, &headers(&auth, &[("x-hostile", mode)]), LIST);
        assert_eq!(status, want_status, "{mode}: {head}{body}");
        assert!(!body.contains("delete_record"), "{mode} leaked: {body}");
        match mode {
            "wrong-id" | "lone-cr" => assert!(body.contains("\"echo\""), "{mode}: {body}"),
            _ => assert!(
                body.contains("response_not_filterable"),
                "{mode}: {head}{body}"
            ),
        }
    }

    // A batch holding tools/list (handshake era 2025-03-26 allows batches): filtered too.
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, _, body) = post(
        &stack.url,
        &headers(&auth, &[("mcp-protocol-version", "2025-03-26")]),
        batch,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"echo\"") && !body.contains("delete_record"),
        "{body}"
    );

    // A GET stream replaying a tools/list answer (Last-Event-ID resumption) is filtered.
    let (status, _, body) = send(
        "GET",
        &stack.url,
        &headers(&auth, &[("last-event-id", "1")]),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"echo\"") && !body.contains("delete_record"),
        "{body}"
    );
}

#[test]
fn the_bytes_decided_are_the_bytes_executed() {
    let stack = Stack::start_with("bytes", POLICY, &[], hostile_server);
    let auth = alice();
    let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

    // Only UTF-8 JSON is decided on: another charset could name another tool to the upstream.
    for content_type in [
        "application/json; charset=utf-7",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let h = vec![
            ACCEPT,
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        let (status, _, body) = post(&stack.url, &h, call);
        assert_eq!(status, 415, "{content_type}: {body}");
        assert_eq!(reason(&body), "unsupported_content_type");
    }
    assert!(
        upstream_requests(&stack).is_empty(),
        "a refused request reached the upstream: {:?}",
        upstream_requests(&stack)
    );

    // Accepted spellings reach the upstream as one canonical Content-Type, uncompressed.
    let h = vec![
        ACCEPT,
        ("authorization", auth.as_str()),
        ("content-type", "Application/JSON; charset=\"UTF-8\""),
        ("accept-encoding", "gzip, br"),
        ("x_mcp_human_id", "mallory"),
        ("X-MCP-Human-ID", "mallory"),
    ];
    let (status, _, body) = post(&stack.url, &h, call);
    assert_eq!(status, 200, "{body}");
    let seen = upstream_requests(&stack);
    let headers_seen = &seen.last().unwrap()["headers"];
    assert_eq!(
        headers_seen["content-type"],
        serde_json::json!(["application/json"])
    );
    assert_eq!(
        headers_seen["accept-encoding"],
        serde_json::json!(["identity"])
    );
    // Identity headers under any spelling are replaced by the verified caller.
    assert_eq!(headers_seen["x-mcp-human-id"], serde_json::json!(["alice"]));
    assert!(
        headers_seen.get("x_mcp_human_id").is_none(),
        "{headers_seen}"
    );

    // GET and DELETE reach the upstream without the client's body framing.
    for (method, extra) in [
        ("GET", vec![("content-length", "5")]),
        ("DELETE", vec![("transfer-encoding", "chunked")]),
    ] {
        let mut h = headers(&auth, &[]);
        h.extend(extra);
        let before = upstream_requests(&stack).len();
        let (status, _, body) = send(method, &stack.url, &h, b"abcde");
        assert_eq!(status, 200, "{method}: {body}");
        let seen = upstream_requests(&stack);
        assert_eq!(seen.len(), before + 1, "{seen:?}");
        let last = seen.last().unwrap();
        assert_eq!(last["method"], method);
        for framing in ["content-length", "transfer-encoding"] {
            assert!(
                last["headers"].get(framing).is_none(),
                "{method} forwarded {framing}: {last}"
            );
        }
    }

    // Mcp-Method and Mcp-Name are accepted once only.
    let (status, _, body) = post(
        &stack.url,
        &headers(
            &auth,
            &[("mcp-method", "tools/call"), ("mcp-method", "tools/call")],
        ),
        call,
    );
    assert_eq!(
        (status, reason(&body).as_str()),
        (400, "header_mismatch"),
        "{body}"
    );
    let (status, _, body) = post(
        &stack.url,
        &headers(
            &auth,
            &[("mcp-name", "echo"), ("mcp-name", "delete_record")],
        ),
        call,
    );
    assert_eq!(
        (status, reason(&body).as_str()),
        (400, "header_mismatch"),
        "{body}"
    );
}

#[test]
fn every_request_of_a_revoked_session_is_refused() {
    let stack = Stack::start("revoked", POLICY, &[]);
    let dave = bearer("dave", None, "s-dave");
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    for (what, body) in [
        ("initialize", &init[..]),
        ("tools/list", LIST),
        ("ping", br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#),
        (
            "resources/read",
            br#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"note://public"}}"#,
        ),
        (
            "prompts/get",
            br#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"greet","arguments":{"name":"x"}}}"#,
        ),
        (
            "resources/templates/list",
            br#"{"jsonrpc":"2.0","id":5,"method":"resources/templates/list"}"#,
        ),
    ] {
        let (status, _, answer) = post(&stack.url, &headers(&dave, &[]), body);
        assert_eq!(
            (status, reason(&answer).as_str()),
            (200, "session_revoked"),
            "{what}: {answer}"
        );
    }
    for method in ["GET", "DELETE"] {
        let (status, _, answer) = send(method, &stack.url, &headers(&dave, &[]), b"");
        assert_eq!(
            (status, reason(&answer).as_str()),
            (403, "session_revoked"),
            "{method}: {answer}"
        );
    }
    // Each refusal is one audit event with the session's attribution.
    let event = stack.wait_audit("revoked initialize", |e| {
        e["rpc_method"] == "initialize" && e["reason"] == "session_revoked"
    });
    assert_eq!(event["matched_session"], "test/s-dave");
    let upstream_log = std::fs::read_to_string(&stack.upstream.log).unwrap_or_default();
    assert!(!upstream_log.contains("INVOKED"), "{upstream_log}");
}

#[test]
fn requests_that_are_not_decided_are_refused() {
    let stack = Stack::start("undecided", POLICY, &[]);
    let auth = alice();
    // tools/call sent as a notification (no id) would reach the server undecided.
    let (status, _, body) = post(
        &stack.url,
        &headers(&auth, &[]),
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}"#,
    );
    assert_eq!(
        (status, reason(&body).as_str()),
        (400, "notification_not_allowed"),
        "{body}"
    );
    // A method that is not MCP is not forwarded.
    let (status, _, body) = post(
        &stack.url,
        &headers(&auth, &[]),
        br#"{"jsonrpc":"2.0","id":9,"method":"tools/execute","params":{"name":"delete_record"}}"#,
    );
    assert_eq!(
        (status, reason(&body).as_str()),
        (200, "method_not_allowed"),
        "{body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["id"].as_i64(), v["error"]["code"].as_i64()),
        (Some(9), Some(-32601))
    );
    // Real notifications pass (202 from the SDK server).
    let (status, _, body) = post(
        &stack.url,
        &headers(&auth, &[]),
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    // Whatever the SDK server answers it (no session here), the gateway forwarded it.
    assert_ne!(
        reason(&body_or_empty(&body)),
        "notification_not_allowed",
        "{status} {body}"
    );
    let event = stack.wait_audit("forwarded notification", |e| {
        e["rpc_method"] == "notifications/initialized"
    });
    assert_eq!(event["decision"], "allow");
    assert_eq!(
        event["upstream_status"].as_u64(),
        Some(u64::from(status)),
        "{event}"
    );
    let upstream_log = std::fs::read_to_string(&stack.upstream.log).unwrap_or_default();
    assert!(
        !upstream_log.contains("INVOKED tool delete_record"),
        "{upstream_log}"
    );
}

#[test]
fn unauthenticated_floods_are_counted_not_spooled_one_by_one() {
    let stack = Stack::start("flood", POLICY, &[]);
    let n = 300;
    let h = [JSON, ACCEPT];
    for _ in 0..n {
        // curl per request is slow; raw keep-alive HTTP keeps the flood fast.
        assert_eq!(post_raw(&stack.url, &h, LIST).0, 401);
    }
    // Within two flushes the counts add up to every refusal, in far fewer events.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<Value> = stack
            .audit_events()
            .into_iter()
            .filter(|e| e["reason"] == "missing_bearer_token")
            .collect();
        let total: u64 = events
            .iter()
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum();
        if total == n {
            assert!(
                events.len() < 10,
                "{} events for {n} refusals",
                events.len()
            );
            assert_eq!(events[0]["server"], "py");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {n} refusals recorded: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A POST over a plain TCP connection (no curl process): (status, body).
fn post_raw(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn slow_bodies_idle_connections_and_long_names_are_bounded() {
    let stack = Stack::start(
        "bounded",
        POLICY,
        &["--body-timeout-seconds", "1", "--max-connections", "2"],
    );
    let auth = alice();
    let addr = stack
        .url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap()
        .0
        .to_owned();

    // A body that never arrives: 408 after the body timeout, not a held connection.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\nauthorization: {auth}\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\""
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 512];
    let n = slow.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(slow);

    // Connections beyond the cap wait: two idle ones hold both slots...
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let blocked = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "1",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        "{}",
        &stack.url,
    ]);
    assert_ne!(
        blocked.stdout, b"401",
        "a third connection was served while two held the cap"
    );
    // ...and once they close, the next one is served.
    drop(idle);
    let (status, _) = post_raw(&stack.url, &[JSON, ACCEPT], LIST);
    assert_eq!(status, 401);

    // A name of 10 000 bytes is refused and recorded cut to the audit's text limit.
    let long = "x".repeat(10_000);
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":"{long}","method":"tools/call","params":{{"name":"{long}","arguments":{{}}}}}}"#
    );
    let (status, body) = post_raw(&stack.url, &headers(&auth, &[]), call.as_bytes());
    assert_eq!(status, 200, "{body}");
    let event = stack.wait_audit("long name", |e| {
        e["tool"].as_str().is_some_and(|t| t.starts_with("xxx"))
    });
    assert!(event["tool"].as_str().unwrap().len() <= 256, "{event}");
    assert!(event["rpc_id"].as_str().unwrap().len() <= 256, "{event}");
}

#[test]
fn prompts_and_resources_are_decided_and_their_lists_filtered_through_the_sdk() {
    let stack = Stack::start("items", POLICY, &[]);
    let token = token(SERVER, Some("alice"), Some("claude"), Some("s-alice"), 300);
    let run = |args: &[&str]| stack.client("handshake", Some(&token), args);
    let names = |lines: &[Value], field: &str, key: &str| -> Vec<String> {
        lines[0]["result"][field]
            .as_array()
            .unwrap_or_else(|| panic!("{lines:?}"))
            .iter()
            .map(|i| i[key].as_str().unwrap().to_owned())
            .collect()
    };
    let (code, lines) = run(&["list-prompts"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(names(&lines, "prompts", "name"), ["greet"]);
    let (code, lines) = run(&["list-resources"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(names(&lines, "resources", "uri"), ["note://public"]);
    let (code, lines) = run(&["list-resource-templates"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        names(&lines, "resourceTemplates", "uriTemplate"),
        ["note://items/{id}"]
    );

    let (code, lines) = run(&["get-prompt", "greet", r#"{"name":"bob"}"#]);
    assert_eq!(code, 0, "{lines:?}");
    let (code, lines) = run(&["read-resource", "note://public"]);
    assert_eq!(code, 0, "{lines:?}");
    let (code, lines) = run(&["read-resource", "note://items/7"]);
    assert_eq!(code, 0, "{lines:?}");
    for (args, what) in [
        (&["get-prompt", "admin_prompt"][..], "prompt"),
        (&["read-resource", "note://secret"][..], "resource"),
        (&["read-resource", "note://undeclared"][..], "resource"),
    ] {
        let (code, lines) = run(args);
        assert_eq!(code, 3, "{args:?} was not denied: {lines:?}");
        let data = &lines[0]["error"]["data"];
        assert!(
            data["reason"] == "tool_not_granted" || data["reason"] == "tool_side_effect_unknown",
            "{args:?}: {data}"
        );
        assert_eq!(data[what], args[1], "{data}");
    }
    let log = std::fs::read_to_string(&stack.upstream.log).unwrap_or_default();
    for ran in [
        "prompt greet",
        "resource note://public",
        "resource note://items/7",
    ] {
        assert!(
            log.contains(&format!("INVOKED {ran}")),
            "{ran} did not run:\n{log}"
        );
    }
    for refused in ["admin_prompt", "note://secret", "note://undeclared"] {
        assert!(
            !log.contains(refused),
            "{refused} reached the server:\n{log}"
        );
    }
    // Each decision is audited with what it was about.
    let event = stack.wait_audit("denied prompt", |e| e["prompt"] == "admin_prompt");
    assert_eq!(event["decision"], "deny");
    let event = stack.wait_audit("resource list", |e| e["rpc_method"] == "resources/list");
    assert_eq!(
        (
            event["items_listed"].as_u64(),
            event["items_hidden"].as_u64()
        ),
        (Some(1), Some(1))
    );
}
