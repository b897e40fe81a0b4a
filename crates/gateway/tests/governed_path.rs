//! The governed request path end to end: the official Python MCP SDK (client and `MCPServer`)
//! through the `mcp-gateway` binary, in both protocol eras.

mod common;

use common::*;
use serde_json::Value;

const SERVER: &str = "test/py";

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  tools:
    - {name: echo, sideEffect: read}
    - {name: upper, sideEffect: read, requiredTrust: medium}
    - {name: delete_record, sideEffect: destructive, requiredTrust: high}
    - {name: add, sideEffect: write}
    - {name: slow_steps, sideEffect: read}
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
    - {name: upper, decision: allow}
    - {name: slow_steps, decision: allow}
    - {name: delete_record, decision: deny}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: bob, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: bob}
  maxTrust: high
  allowedSideEffects: [read]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: dave-erin, namespace: test}
spec:
  serverRef: {name: py}
  subject: {agentID: worker}
  maxTrust: high
  allowedSideEffects: [read]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-alice, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice, agentID: claude}, consentedTrust: low, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-bob, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: bob}, consentedTrust: high, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-carol, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: carol}, consentedTrust: high, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-dave, namespace: test}
spec: {serverRef: {name: py}, subject: {agentID: worker}, consentedTrust: high, revoked: true, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-erin, namespace: test}
spec: {serverRef: {name: py}, subject: {agentID: worker}, consentedTrust: high, expiresAt: '2020-01-01T00:00:00Z'}
";

fn alice() -> String {
    token(SERVER, Some("alice"), Some("claude"), Some("s-alice"), 600)
}

fn result_text(lines: &[Value]) -> String {
    lines
        .iter()
        .find_map(|l| l.pointer("/result/content/0/text").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn error_of(lines: &[Value]) -> Value {
    lines
        .iter()
        .find_map(|l| l.get("error").cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn sdk_calls_are_allowed_and_denied_with_reasons_in_both_eras() {
    // Three request threads (more than this machine's CPUs): the clients' connections are
    // dealt across them, each thread with its own upstream pool, and every case below still
    // holds (the other tests run with the default, one thread per CPU).
    let stack = Stack::start("eras", POLICY, &["--threads", "3"]);
    let bob = token(SERVER, Some("bob"), None, Some("s-bob"), 600);
    let carol = token(SERVER, Some("carol"), None, Some("s-carol"), 600);
    let dave = token(SERVER, None, Some("worker"), Some("s-dave"), 600);
    let erin = token(SERVER, None, Some("worker"), Some("s-erin"), 600);
    let no_session = token(SERVER, Some("alice"), Some("claude"), None, 600);
    let bad_session = token(SERVER, Some("alice"), Some("claude"), Some("nope"), 600);
    for era in ["handshake", "stateless"] {
        let (code, lines) =
            stack.client(era, Some(&alice()), &["call", "echo", r#"{"text":"hi"}"#]);
        assert_eq!(
            (code, result_text(&lines).as_str()),
            (0, "hi"),
            "{era}: {lines:?}\n{}",
            stack.gateway.log_tail()
        );

        let denials: [(&str, &str, &str); 10] = [
            (&alice(), "upper", "trust_too_low"),
            (&alice(), "delete_record", "tool_denied"),
            (&alice(), "add", "tool_not_granted"),
            (&bob, "add", "side_effect_not_allowed"),
            (&bob, "fail", "tool_side_effect_unknown"),
            (&carol, "echo", "no_matching_grant"),
            (&dave, "echo", "session_revoked"),
            (&erin, "echo", "session_expired"),
            (&no_session, "echo", "missing_session"),
            (&bad_session, "echo", "session_not_found"),
        ];
        for (tok, tool, reason) in denials {
            let (code, lines) = stack.client(
                era,
                Some(tok),
                &["call", tool, r#"{"text":"x","a":1,"b":2,"id":"1"}"#],
            );
            let error = error_of(&lines);
            assert_eq!(code, 3, "{era} {tool} expected {reason}: {lines:?}");
            assert_eq!(error["code"], -32003, "{era} {tool}: {error}");
            assert_eq!(error["data"]["reason"], reason, "{era} {tool}: {error}");
            assert!(
                error["message"].as_str().unwrap().contains(reason),
                "{error}"
            );
        }
    }
    // Trust fields travel with the denial and the audit event.
    let (_, lines) = stack.client(
        "stateless",
        Some(&alice()),
        &["call", "upper", r#"{"text":"x"}"#],
    );
    let data = &error_of(&lines)["data"];
    assert_eq!(
        (
            data["required_trust"].as_str(),
            data["effective_trust"].as_str()
        ),
        (Some("medium"), Some("low"))
    );
    assert_eq!(data["matched_grant"], "test/alice");
    let event = stack.wait_audit("trust_too_low", |e| e["reason"] == "trust_too_low");
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["tool"], "upper");
    assert_eq!(event["human_id"], "alice");
    assert_eq!(event["effective_trust"], "low");
    assert!(
        event["policy_revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        event.get("arguments").is_none(),
        "arguments are not recorded by default"
    );
    let allowed = stack.wait_audit("allowed echo", |e| {
        e["tool"] == "echo" && e["decision"] == "allow"
    });
    assert_eq!(allowed["upstream_status"], 200);
}

#[test]
fn tools_list_is_filtered_to_callable_tools_in_both_eras() {
    let stack = Stack::start("list", POLICY, &[]);
    for era in ["handshake", "stateless"] {
        let (code, lines) = stack.client(era, Some(&alice()), &["list-tools"]);
        assert_eq!(code, 0, "{era}: {lines:?}");
        let mut names: Vec<String> = lines[0]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        // upper needs medium (alice consented low), delete_record is denied, add/fail not granted.
        assert_eq!(names, ["echo", "slow_steps"], "{era}");
    }
    let event = stack.wait_audit("list", |e| {
        e["rpc_method"] == "tools/list" && e["tools_hidden"].as_u64() > Some(0)
    });
    assert_eq!(event["tools_listed"], 2);
    assert_eq!(event["tools_hidden"], 4);
}

#[test]
fn progress_notifications_stream_through_one_by_one() {
    let stack = Stack::start("progress", POLICY, &[]);
    for era in ["handshake", "stateless"] {
        let (code, lines) = stack.client(
            era,
            Some(&alice()),
            &["call-progress", "--steps", "3", "--delay", "0.4"],
        );
        assert_eq!(code, 0, "{era}: {lines:?}");
        let times: Vec<f64> = lines
            .iter()
            .filter_map(|l| l.get("progress").and(l["elapsed"].as_f64()))
            .collect();
        assert_eq!(times.len(), 3, "{era}: {lines:?}");
        // Each notification arrives while the tool still runs, about one delay apart — not all
        // at once when the result is ready.
        assert!(
            times[1] - times[0] > 0.25 && times[2] - times[1] > 0.25,
            "{era}: buffered? {times:?}"
        );
    }
}

#[test]
fn hostile_and_malformed_requests_are_refused_before_the_upstream() {
    let stack = Stack::start("hostile", POLICY, &["--max-body-bytes", "4096"]);
    let auth = format!("Bearer {}", alice());
    let h = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        v.extend_from_slice(extra);
        v
    };
    let with_auth = |mut v: Vec<(&'static str, &'static str)>, a: &'static str| {
        v.push(("authorization", a));
        v
    };
    let auth: &'static str = Box::leak(auth.into_boxed_str());

    // No token, expired token, forged token: 401 with a challenge and a JSON-RPC body.
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (status, head, body) = post(&stack.url, &h(&[]), call);
    assert_eq!(status, 401, "{head}{body}");
    assert!(
        head.to_lowercase()
            .contains("www-authenticate: bearer realm=\"mcp-runtime\""),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["data"]["reason"],
        "missing_bearer_token"
    );
    let expired: &'static str = Box::leak(
        format!(
            "Bearer {}",
            token(SERVER, Some("alice"), Some("claude"), Some("s-alice"), -5)
        )
        .into_boxed_str(),
    );
    let (status, head, body) = post(&stack.url, &with_auth(h(&[]), expired), call);
    assert_eq!(status, 401);
    assert!(head.contains("error=\"invalid_token\""), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["data"]["reason"],
        "token_expired"
    );
    let other_server: &'static str = Box::leak(
        format!(
            "Bearer {}",
            token(
                "test/other",
                Some("alice"),
                Some("claude"),
                Some("s-alice"),
                60
            )
        )
        .into_boxed_str(),
    );
    assert_eq!(
        post(&stack.url, &with_auth(h(&[]), other_server), call).0,
        401
    );

    // A spoofed identity header gains nothing: bob's token with alice's headers stays bob.
    let bob: &'static str = Box::leak(
        format!(
            "Bearer {}",
            token(SERVER, Some("bob"), None, Some("s-bob"), 60)
        )
        .into_boxed_str(),
    );
    let spoof = with_auth(
        h(&[
            ("x-mcp-human-id", "alice"),
            ("x-mcp-agent-id", "claude"),
            ("x-mcp-agent-session", "s-alice"),
        ]),
        bob,
    );
    let delete = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}"#;
    let (status, _, body) = post(&stack.url, &spoof, delete);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, v["error"]["data"]["reason"].as_str()),
        (200, Some("side_effect_not_allowed")),
        "{body}"
    );
    let event = stack.wait_audit("spoof", |e| e["rpc_id"] == 2);
    assert_eq!(
        (event["human_id"].as_str(), event.get("agent_id")),
        (Some("bob"), None)
    );

    // Malformed, ambiguous, oversized.
    let (status, _, body) = post(
        &stack.url,
        &with_auth(h(&[]), auth),
        b"{\"jsonrpc\":\"2.0\",",
    );
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
    let ambiguous = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","name":"delete_record"}}"#;
    let (status, _, body) = post(&stack.url, &with_auth(h(&[]), auth), ambiguous);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate field `name`"), "{body}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let (status, _, body) = post(&stack.url, &with_auth(h(&[]), auth), big.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["data"]["reason"],
        "body_too_large"
    );

    // Stateless era: headers that disagree with the body never reach policy or upstream.
    let mismatched = with_auth(
        h(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]),
        auth,
    );
    let (status, _, body) = post(&stack.url, &mismatched, br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}"#);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{body}"
    );

    // Batches: refused where the version forbids them; where allowed, one forbidden call
    // refuses the whole batch.
    let batch = br#"[{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}]"#;
    let (status, _, body) = post(
        &stack.url,
        &with_auth(h(&[("mcp-protocol-version", "2025-06-18")]), auth),
        batch,
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = post(
        &stack.url,
        &with_auth(h(&[("mcp-protocol-version", "2025-03-26")]), auth),
        batch,
    );
    let answers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        answers[0]["error"]["data"]["reason"], "batch_denied",
        "{body}"
    );
    assert_eq!(
        answers[1]["error"]["data"]["reason"], "tool_denied",
        "{body}"
    );
    // The server logs every tool it runs (`INVOKED tool <name>`): none of the refused requests
    // above ran anything, not even the allowed echo riding in the refused batch...
    let upstream_log = std::fs::read_to_string(&stack.upstream.log).unwrap_or_default();
    assert!(
        !upstream_log.contains("INVOKED tool"),
        "a refused request reached the upstream:\n{upstream_log}"
    );
    // ...and the log does show what does reach it.
    let (code, lines) = stack.client(
        "stateless",
        Some(&alice()),
        &["call", "echo", r#"{"text":"a"}"#],
    );
    assert_eq!(code, 0, "{lines:?}");
    let upstream_log = std::fs::read_to_string(&stack.upstream.log).unwrap_or_default();
    assert!(
        upstream_log.contains("INVOKED tool echo"),
        "the allowed call is not in the upstream's log:\n{upstream_log}"
    );
    assert!(!upstream_log.contains("INVOKED tool delete_record"));
}

#[test]
fn policy_changes_apply_without_restart_and_bad_documents_are_ignored() {
    let stack = Stack::start("reload", POLICY, &[]);
    let (code, _) = stack.client(
        "stateless",
        Some(&alice()),
        &["call", "echo", r#"{"text":"hi"}"#],
    );
    assert_eq!(code, 0);
    // A broken document keeps the last good policy.
    std::fs::write(&stack.policy_file, "{ not json").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (code, _) = stack.client(
        "stateless",
        Some(&alice()),
        &["call", "echo", r#"{"text":"hi"}"#],
    );
    assert_eq!(code, 0, "last good policy kept");
    let status = curl(&[&format!("{}/config/status", stack.admin)]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{status}"
    );
    // Revoking alice's session takes effect on the next call.
    let revoked = POLICY.replace(
        "subject: {humanID: alice, agentID: claude}, consentedTrust: low",
        "subject: {humanID: alice, agentID: claude}, consentedTrust: low, revoked: true",
    );
    std::fs::write(&stack.policy_file, render(&revoked)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (code, lines) = stack.client(
            "stateless",
            Some(&alice()),
            &["call", "echo", r#"{"text":"hi"}"#],
        );
        if code == 3 {
            assert_eq!(error_of(&lines)["data"]["reason"], "session_revoked");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revocation not applied"
        );
    }
}

/// A token for `human` on SERVER (with alice's session, so policy allows `echo`) signed by `key`.
fn signed_by(key: &mcp_runtime_token::SigningKey) -> String {
    key.mint(
        SERVER,
        mcp_runtime_token::Identity {
            human: Some("alice".into()),
            agent: Some("claude".into()),
            team: None,
            session: Some("s-alice".into()),
        },
        jiff::Timestamp::now(),
        jiff::SignedDuration::from_secs(600),
    )
    .unwrap()
}

const ECHO: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// POSTs `echo` with `headers` (plus the usual content negotiation); returns the status and the
/// denial reason, if any.
fn echo(stack: &Stack, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    // Stateless era: one POST, no initialize handshake.
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    all.extend_from_slice(headers);
    let (status, head, body) = post(&stack.url, &all, ECHO);
    // 400 only for a header sent twice (RFC 6750 invalid_request), never a header mismatch.
    assert!(
        status != 400 || body.contains("duplicate_header"),
        "{head}{body}"
    );
    if status == 200 {
        assert!(body.contains(r#""text":"x""#), "{head}{body}");
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{head}{body}"));
    let reason = v["error"]["data"]["reason"].as_str().map(str::to_owned);
    (status, reason)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn token_keys_rotate_without_restart_and_a_removed_key_stops_working() {
    use std::time::{Duration, Instant};
    let stack = Stack::start("rotation", POLICY, &[]);
    let (old, new) = (
        signing_key(),
        mcp_runtime_token::SigningKey::from_seed(&[99; 32]),
    );
    let (old_token, new_token) = (bearer(&signed_by(&old)), bearer(&signed_by(&new)));
    let call = |auth: &str| echo(&stack, &[("authorization", auth)]);
    assert_eq!(call(&old_token), (200, None));
    assert_eq!(
        call(&new_token),
        (401, Some("invalid_token".into())),
        "a key the gateway was not given"
    );

    // Algorithm confusion: HS256 keyed with the public key the gateway holds, naming its kid.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(old.kid().to_owned()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &serde_json::json!({"iss": "mcp-runtime", "aud": SERVER, "sub": "alice",
            "agent": "claude", "sid": "s-alice", "exp": 4_000_000_000_i64, "iat": 0}),
        &jsonwebtoken::EncodingKey::from_secret(old.public_pem().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        call(&bearer(&confused)),
        (401, Some("invalid_token".into()))
    );

    // Step 1: add the new key. Old tokens keep working at every moment of the change.
    let both = format!("{}{}", old.public_pem(), new.public_pem());
    std::fs::write(&stack.token_public_keys, &both).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&new_token).0 != 200 {
        assert_eq!(
            call(&old_token),
            (200, None),
            "old token refused mid-rotation"
        );
        assert!(Instant::now() < deadline, "new key not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(call(&old_token), (200, None));

    // A broken or dangerous file keeps the current keys.
    for bad in ["not a key".to_owned(), old.to_pem()] {
        std::fs::write(&stack.token_public_keys, &bad).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(call(&old_token), (200, None));
        assert_eq!(call(&new_token), (200, None));
    }

    // Step 2: remove the old key. Its token, verified (and cached) a moment ago, is refused.
    std::fs::write(&stack.token_public_keys, new.public_pem()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&old_token).0 != 401 {
        assert!(Instant::now() < deadline, "removed key still accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(call(&old_token), (401, Some("invalid_token".into())));
    assert_eq!(call(&new_token), (200, None));
    let log = std::fs::read_to_string(&stack.gateway.log).unwrap_or_default();
    assert!(log.contains("token public keys rejected"), "{log}");
}

#[test]
fn gateway_refuses_private_and_legacy_keys_at_start() {
    let dir = tempdir("keys-at-start");
    let private = dir.join("token.key");
    std::fs::write(&private, signing_key().to_pem()).unwrap();
    let legacy = dir.join("legacy.key");
    std::fs::write(&legacy, "9f".repeat(32)).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, render(POLICY)).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--policy-file")
            .arg(&policy)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, expected) in [
        (
            vec!["--token-public-keys-file".as_ref(), private.as_os_str()],
            "holds a private key",
        ),
        (
            vec!["--token-public-keys-file".as_ref(), legacy.as_os_str()],
            "HS256 secret",
        ),
        (
            vec!["--token-key-file".as_ref(), legacy.as_os_str()],
            "no longer supported",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn authorization_sent_twice_is_refused() {
    let stack = Stack::start("two-authorizations", POLICY, &[]);
    let alice = bearer(&alice());
    assert_eq!(echo(&stack, &[("authorization", &alice)]), (200, None));
    let bob = bearer(&token(SERVER, Some("bob"), None, Some("s-bob"), 600));
    for twice in [[&alice, &alice], [&alice, &bob]] {
        assert_eq!(
            echo(
                &stack,
                &[("authorization", twice[0]), ("authorization", twice[1])]
            ),
            (400, Some("duplicate_header".into()))
        );
    }
}

const HEADER_POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  auth: {mode: header}
  tools:
    - {name: echo, sideEffect: read}
  gateway: {enabled: true}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: alice}
  maxTrust: high
  allowedSideEffects: [read]
";

#[test]
fn header_mode_refuses_repeated_listed_and_respelled_identity_headers() {
    let stack = Stack::start(
        "header-strict",
        HEADER_POLICY,
        &["--trust-identity-headers"],
    );
    assert_eq!(echo(&stack, &[("x-mcp-human-id", "alice")]), (200, None));
    for headers in [
        &[("x-mcp-human-id", "alice"), ("x-mcp-human-id", "mallory")][..],
        &[("x-mcp-human-id", "mallory"), ("x-mcp-human-id", "alice")],
        &[("x-mcp-human-id", "alice, mallory")],
        &[("x-mcp-human-id", "alice"), ("x_mcp_human_id", "mallory")],
        &[("X-MCP-Human-ID", "alice"), ("X_MCP_HUMAN_ID", "mallory")],
    ] {
        assert_eq!(
            echo(&stack, headers),
            (400, Some("duplicate_header".into())),
            "{headers:?}"
        );
    }
}
