//! Revocation latency, end to end, on a real kube-apiserver (kube-testenv): how long a revoked
//! session stays usable.
//!
//! The operator runs as its ServiceAccount with the generated RBAC (as in tests/operator.rs). The
//! real `mcp-gateway` binary runs as a local process, configured as the operator configures the
//! sidecar (`--policy-configmap NS/NAME-gateway-policy`), against the testenv API server with a
//! TokenRequest token of the server's ServiceAccount, so the Role the operator generated is what
//! lets it read its policy. Behind it, a tiny in-process upstream answers every call.
//!
//! Each round: un-revoke the MCPAgentSession and wait until a `tools/call` is allowed again;
//! then t0, patch `spec.revoked: true` through the API, and call `tools/call` in a tight loop
//! until the first denial (`data.reason: session_revoked`) at t1. t1 − t0 covers the API write,
//! the operator's watch and re-render, its write of the ConfigMap, the gateway's watch event and
//! reload, and the denied call. A watch on the ConfigMap in this test splits it in two: write →
//! ConfigMap updated (operator), ConfigMap updated → denied (gateway).
//!
//! Asserts behaviour only (every revocation is enforced within 30 s); the figures are printed:
//!
//! ```sh
//! cargo build --workspace     # the test runs target/<profile>/mcp-gateway
//! cargo test -p mcp-runtime-operator --test revocation -- --nocapture
//! ```
//!
//! `MCP_REVOCATION_ROUNDS` changes the number of rounds (default 50); `MCP_GATEWAY_BIN` the
//! gateway binary.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::gateway::*;
use common::*;
use futures::StreamExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer, ServerPhase};
use mcp_runtime_policy::PolicyDocument;
use mcp_runtime_token::{Identity, SigningKey};

const SERVER: &str = "revocable";
const SESSION: &str = "alice-claude";
/// Bound on each wait (a revocation enforced, an un-revocation allowed again).
const BOUND: Duration = Duration::from_secs(30);

async fn set_revoked(sessions: &Api<MCPAgentSession>, revoked: bool) {
    sessions
        .patch(
            SESSION,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"revoked": revoked}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patching {SESSION}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_is_denied_by_the_gateway_soon_after_the_write() {
    let rounds: usize = std::env::var("MCP_REVOCATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("revocation").await;

    // A governed server, alice's grant and her agent's session.
    let servers: Api<MCPServer> = server_api(&client, &ns);
    let server: MCPServer = yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: {SERVER}}}\nspec:\n  image: ghcr.io/acme/{SERVER}:1\n  tools: [{{name: echo, sideEffect: read}}]\n  session: {{required: true}}\n  gateway: {{enabled: true}}\n"
    ));
    servers
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    let grant: MCPAccessGrant = yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {{name: alice}}\nspec:\n  serverRef: {{name: {SERVER}}}\n  subject: {{humanID: alice}}\n  maxTrust: high\n  allowedSideEffects: [read]\n"
    ));
    Api::<MCPAccessGrant>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &grant)
        .await
        .unwrap();
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    let session: MCPAgentSession = yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAgentSession\nmetadata: {{name: {SESSION}}}\nspec:\n  serverRef: {{name: {SERVER}}}\n  subject: {{humanID: alice, agentID: claude}}\n  consentedTrust: low\n  expiresAt: '2099-01-01T00:00:00Z'\n"
    ));
    sessions
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
    // Ready: the policy ConfigMap, its Role and binding, and the workload are in place.
    wait_phase(&servers, SERVER, ServerPhase::Ready).await;
    let config_map = format!("{SERVER}-gateway-policy");
    wait_policy(&client, &ns, SERVER, "the session in the policy", |d| {
        d.sessions.iter().any(|s| s.name == SESSION)
    })
    .await;

    // What the ConfigMap says when: a watch in this test, to split the latency.
    let updates: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    {
        let updates = updates.clone();
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let wc = watcher::Config::default().fields(&format!("metadata.name={config_map}"));
        tokio::spawn(async move {
            let mut stream = Box::pin(watcher::watcher(api, wc));
            while let Some(event) = stream.next().await {
                let seen = Instant::now();
                if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = event
                    && let Some(text) = cm.data.as_ref().and_then(|d| d.get("policy.json"))
                    && let Ok(doc) = PolicyDocument::from_json(text.as_bytes())
                {
                    let revoked = doc.sessions.iter().any(|s| s.name == SESSION && s.revoked);
                    updates.lock().unwrap().push((seen, revoked));
                }
            }
        });
    }

    // The gateway, as the operator configures the sidecar.
    let key = SigningKey::from_seed(&[23; 32]);
    let key_file = c.env.dir().join("pki").join(format!("{ns}-session.pub"));
    std::fs::write(&key_file, key.public_pem()).unwrap();
    let (gateway, port) = start_gateway(c.env, &ns, SERVER, &key_file).await;
    let session_token = key
        .mint(
            &format!("{ns}/{SERVER}"),
            Identity {
                human: Some("alice".into()),
                agent: Some("claude".into()),
                team: None,
                session: Some(SESSION.into()),
            },
            jiff::Timestamp::now(),
            jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    let http: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{port}/mcp");

    let mut total = Vec::with_capacity(rounds);
    let mut operator_part = Vec::with_capacity(rounds);
    let mut gateway_part = Vec::with_capacity(rounds);
    let mut calls = 0u64;
    for round in 0..rounds {
        // Allowed again after un-revoking (not measured).
        set_revoked(&sessions, false).await;
        let deadline = Instant::now() + BOUND;
        loop {
            let outcome = call(&http, &url, &session_token).await;
            if outcome == Outcome::Allowed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: still {outcome:?} {BOUND:?} after un-revoking\n{}",
                gateway.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Revoke, then call until the first denial.
        let t0 = Instant::now();
        set_revoked(&sessions, true).await;
        let t1 = loop {
            calls += 1;
            match call(&http, &url, &session_token).await {
                Outcome::Allowed => {}
                Outcome::Denied(reason) => {
                    assert_eq!(reason, "session_revoked", "round {round}");
                    break Instant::now();
                }
            }
            assert!(
                t0.elapsed() < BOUND,
                "round {round}: the revoked session was still allowed after {BOUND:?}\n{}",
                gateway.log_tail(30)
            );
        };
        total.push(t1 - t0);
        // When this test's own watch saw the revoked policy (a second watcher of the same event
        // as the gateway's, so it may see it a little after the gateway did).
        let seen = mcp_runtime_kube_testenv::eventually(
            "this test's watch to see the revoked policy",
            BOUND,
            || {
                let seen = updates
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(at, revoked)| *at >= t0 && *revoked)
                    .map(|(at, _)| *at);
                async move { seen.ok_or_else(|| "not yet".to_owned()) }
            },
        )
        .await
        .unwrap();
        operator_part.push(seen - t0);
        gateway_part.push(t1.saturating_duration_since(seen));
    }

    eprintln!(
        "\nRESULT revocation write -> first denial, {rounds} rounds, {calls} calls while revoking"
    );
    eprintln!("  {}", summary("total (write -> denied)", &total));
    eprintln!(
        "  {}",
        summary("  write -> ConfigMap seen by a watch", &operator_part)
    );
    eprintln!(
        "  {}",
        summary("  ConfigMap seen -> denied at the gateway", &gateway_part)
    );
    assert_eq!(total.len(), rounds);
    assert_no_forbidden(c.operator.lock().unwrap().log());
    let log = std::fs::read_to_string(gateway.log()).unwrap_or_default();
    assert!(
        !log.contains("refused to"),
        "the gateway was refused by the API:\n{log}"
    );
}
