//! `oauth` mode end to end: an OpenID provider with real RSA and EC keys over HTTPS
//! (tests/peers/oidc_provider.py, PyJWT), the `mcp-gateway` binary verifying its access tokens
//! against the published JWKS, and the official Python SDK client calling through it.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const RESOURCE: &str = "https://mcp.example.test/mcp";

fn policy(issuer: &str) -> String {
    format!(
        "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {{name: py, namespace: test}}
spec:
  image: python-peer
  tools:
    - {{name: echo, sideEffect: read}}
  auth: {{mode: oauth, issuerURL: '{issuer}', audience: '{RESOURCE}'}}
  gateway: {{enabled: true}}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {{name: alice, namespace: test}}
spec:
  serverRef: {{name: py}}
  subject: {{humanID: alice, agentID: claude}}
  maxTrust: high
  allowedSideEffects: [read]
"
    )
}

struct Provider {
    issuer: String,
    ca: PathBuf,
    _proc: Proc,
}

impl Provider {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let out = curl(&[
            "--cacert",
            &self.ca.display().to_string(),
            "-X",
            method,
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
            &format!("{}{path}", self.issuer),
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "provider {path}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn mint(&self, key: &str, ttl: i64, claims: Value) -> String {
        self.call(
            "POST",
            "/mint",
            json!({"key": key, "ttl": ttl, "claims": claims}),
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn jwks_fetches(&self) -> u64 {
        self.call("GET", "/stats", Value::Null)["jwks_fetches"]
            .as_u64()
            .unwrap()
    }
}

fn alice_claims() -> Value {
    json!({"sub": "alice", "client_id": "claude", "aud": RESOURCE})
}

fn raw_call(stack: &Stack, token: &str, extra: &[(&str, &str)]) -> (u16, String, Value) {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", auth.as_str()),
    ];
    headers.extend_from_slice(extra);
    let (status, head, body) = post(
        &stack.url,
        &headers,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    );
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[test]
fn access_tokens_are_verified_against_the_issuers_published_keys() {
    let peers = peers();
    let dir = tempdir("oauth-pki");
    let Pki { ca, cert, key } = pki(&dir);
    let port = free_port();
    let mut idp = Command::new(&peers.python);
    idp.arg(repo_root().join("tests/peers/oidc_provider.py"))
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key);
    let mut proc = spawn(idp, dir.join("idp.log"));
    wait_port(port, &mut proc, "OpenID provider");
    let idp = Provider {
        issuer: format!("https://127.0.0.1:{port}"),
        ca: ca.clone(),
        _proc: proc,
    };
    let ca_arg = ca.display().to_string();
    let stack = Stack::start(
        "oauth",
        &policy(&idp.issuer),
        &["--oauth-ca-file", &ca_arg, "--oauth-resource", RESOURCE],
    );

    // RFC 9728 metadata points clients at the issuer.
    let out = curl(&[&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        stack.url.trim_end_matches("/mcp")
    )]);
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(metadata["resource"], RESOURCE, "{metadata}");
    assert_eq!(metadata["authorization_servers"], json!([idp.issuer]));

    // No token: 401 whose challenge names the metadata document.
    let (status, head, body) = post(
        &stack.url,
        &[("content-type", "application/json")],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase().contains(
            "www-authenticate: bearer realm=\"mcp-runtime\", resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\""
        ),
        "{head}"
    );

    // A valid RS256 token: the SDK's call is allowed, in both eras; an ES256 one too.
    let alice = idp.mint("rsa1", 300, alice_claims());
    for era in ["stateless", "handshake"] {
        let (code, lines) = stack.client(era, Some(&alice), &["call", "echo", r#"{"text":"hi"}"#]);
        assert_eq!(code, 0, "{era}: {lines:?}\n{}", stack.gateway.log_tail());
    }
    let alice_ec = idp.mint("ec1", 300, alice_claims());
    let (code, lines) = stack.client(
        "stateless",
        Some(&alice_ec),
        &["call", "echo", r#"{"text":"hi"}"#],
    );
    assert_eq!(code, 0, "ES256: {lines:?}");

    // Tokens that must not pass, each with its reason.
    let cases = [
        (
            "another resource's token",
            idp.mint(
                "rsa1",
                300,
                json!({"sub": "alice", "client_id": "claude", "aud": "https://other.example/mcp"}),
            ),
            "not for this resource",
        ),
        (
            "another issuer",
            idp.mint(
                "rsa1",
                300,
                json!({"sub": "alice", "aud": RESOURCE, "iss": "https://evil.example"}),
            ),
            "was not issued by",
        ),
        (
            "expired",
            idp.mint("rsa1", -120, alice_claims()),
            "token expired",
        ),
        (
            "a key the issuer does not publish",
            idp.mint("unpublished", 300, alice_claims()),
            "does not publish",
        ),
        (
            "no identity",
            idp.mint("rsa1", 300, json!({"aud": RESOURCE})),
            "no identity",
        ),
        ("not a JWT", "garbage.token.here".to_owned(), "not a JWT"),
    ];
    for (what, token, expected) in &cases {
        let (status, head, body) = raw_call(&stack, token, &[]);
        assert_eq!(status, 401, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{what}: {message}");
        assert!(
            head.to_ascii_lowercase()
                .contains("error=\"invalid_token\""),
            "{what}: {head}"
        );
    }
    // HS256 signed with the public key's bytes as a shared secret (the classic confusion).
    let header = base64url(br#"{"alg":"HS256","typ":"JWT","kid":"rsa1"}"#);
    let claims = base64url(alice_claims().to_string().as_bytes());
    let forged = format!("{header}.{claims}.c2lnbmF0dXJl");
    let (status, _, body) = raw_call(&stack, &forged, &[]);
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not accepted"),
        "{body}"
    );

    // A spoofed identity header gains nothing: bob stays bob (and has no grant).
    let bob = idp.mint(
        "rsa1",
        300,
        json!({"sub": "bob", "client_id": "claude", "aud": RESOURCE}),
    );
    let (code, lines) = {
        let mut cmd_args = vec!["--header", "X-MCP-Human-ID=alice", "call", "echo"];
        cmd_args.push(r#"{"text":"hi"}"#);
        stack.client("stateless", Some(&bob), &cmd_args)
    };
    assert_eq!(code, 3, "{lines:?}");
    let error = lines.iter().find_map(|l| l.get("error")).unwrap();
    assert_eq!(error["data"]["reason"], "no_matching_grant", "{error}");

    // A flood of unknown-kid tokens costs the issuer at most one early fetch per 10 s.
    let before = idp.jwks_fetches();
    let unknown = idp.mint("unpublished", 300, alice_claims());
    for _ in 0..20 {
        let (status, _, _) = raw_call(&stack, &unknown, &[]);
        assert_eq!(status, 401);
    }
    assert!(
        idp.jwks_fetches() - before <= 1,
        "{} fetches",
        idp.jwks_fetches() - before
    );

    // Key rotation at the issuer: a token signed with the new key is accepted once it is
    // published (the unknown kid triggers a fetch, rate-limited to one per 10 s).
    idp.call("POST", "/rotate", Value::Null);
    let rotated = idp.mint("rsa2", 300, alice_claims());
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let (code, lines) = stack.client(
            "stateless",
            Some(&rotated),
            &["call", "echo", r#"{"text":"hi"}"#],
        );
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated key never accepted: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = stack.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "invalid_token" || e["reason"] == "token_expired"),
        "refusals are audited"
    );
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A down issuer costs one discovery attempt per backoff period, not one per request, and its
/// error (hosts, TLS details) is logged, not echoed to clients.
#[test]
fn a_down_issuer_is_retried_with_backoff_and_its_error_is_not_echoed() {
    // An "issuer" that accepts TCP connections and drops them at once, counting them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let stack = Stack::start("oauth-down", &policy(&issuer), &[]);
    let header = base64url(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
    let claims = base64url(br#"{"sub":"alice"}"#);
    let token = format!("{header}.{claims}.c2ln");
    for _ in 0..10 {
        let (status, _, body) = raw_call(&stack, &token, &[]);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["data"]["reason"], "issuer_unavailable");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.to_lowercase().contains("tls"),
            "the issuer's error reached the client: {message}"
        );
    }
    // One attempt tries the OIDC then the RFC 8414 discovery path: 2 connections at most, and
    // a second attempt only after the first backoff second.
    let made = attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=4).contains(&made),
        "{made} connections to the issuer for 10 requests"
    );
}
