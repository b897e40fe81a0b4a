//! The official TypeScript SDK client and `@modelcontextprotocol/server-everything` (handshake
//! era) through the gateway.

mod common;

use common::*;
use serde_json::Value;

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: everything, namespace: test}
spec:
  image: server-everything
  tools:
    - {name: echo, sideEffect: read}
    - {name: get-sum, sideEffect: write}
    - {name: trigger-long-running-operation, sideEffect: read}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: everything}
  subject: {humanID: alice}
  maxTrust: high
  allowedSideEffects: [read]
";

#[test]
fn typescript_sdk_through_the_gateway_to_server_everything() {
    let stack = Stack::start_with("ts", POLICY, &[], server_everything);
    let alice = token("test/everything", Some("alice"), None, None, 600);

    let (code, lines) = stack.ts_client(Some(&alice), &["call", "echo", r#"{"message":"hi"}"#]);
    assert_eq!(code, 0, "{lines:?}\n{}", stack.gateway.log_tail());
    assert!(
        lines[0]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hi"),
        "{lines:?}"
    );

    // Denied: a JSON-RPC error the TypeScript SDK surfaces with its data.
    let (code, lines) = stack.ts_client(Some(&alice), &["call", "get-sum", r#"{"a":1,"b":2}"#]);
    assert_eq!(code, 3, "{lines:?}");
    assert_eq!(lines[0]["error"]["code"], -32003);
    assert_eq!(
        lines[0]["error"]["data"]["reason"],
        "side_effect_not_allowed"
    );

    // tools/list shows exactly what alice may call (server-everything lists many more).
    let (code, lines) = stack.ts_client(Some(&alice), &["list-tools"]);
    assert_eq!(code, 0, "{lines:?}");
    let mut names: Vec<&str> = lines[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["echo", "trigger-long-running-operation"]);

    // Progress notifications stream through while the operation runs.
    let (code, lines) = stack.ts_client(
        Some(&alice),
        &[
            "call-progress",
            "--tool",
            "trigger-long-running-operation",
            "--args",
            r#"{"duration":2,"steps":2}"#,
        ],
    );
    assert_eq!(code, 0, "{lines:?}");
    let times: Vec<f64> = lines
        .iter()
        .filter(|l| l.get("progress").is_some())
        .filter_map(|l| l["elapsed"].as_f64())
        .collect();
    assert_eq!(times.len(), 2, "{lines:?}");
    assert!(
        times[1] - times[0] > 0.5,
        "progress arrived buffered: {times:?}"
    );

    // Without a token: 401 (the TypeScript SDK reports the HTTP status).
    let (code, lines) = stack.ts_client(None, &["call", "echo", r#"{"message":"hi"}"#]);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(lines[0]["failure"]["status"], Value::from(401), "{lines:?}");
}
