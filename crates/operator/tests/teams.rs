//! Two teams, end to end, on a real kube-apiserver: the platform API (`mcp-platform --kube`, a
//! real PostgreSQL) creates the teams and their namespaces, owners create grants through it,
//! members get agent sessions issued by it, and each team's server sits behind its own real
//! `mcp-gateway` configured as the operator configures the sidecar, trusting the platform's
//! session-token key. What must hold:
//!
//! - each team's agent calls its own server's granted tool; its token is refused by the other
//!   team's gateway (another audience), and the platform issues no session toward the other
//!   team (not a member) nor toward a server its team has no grant for;
//! - an owner cannot touch the other team's grants or sessions (404, nothing changes);
//! - a revocation through the platform API is enforced by the gateway about as fast as a
//!   `kubectl patch` (tests/revocation.rs); the figures are printed, the test asserts only that
//!   each revocation is enforced within 30 s.
//!
//! ```sh
//! cargo build --workspace     # runs target/<profile>/mcp-gateway and mcp-platform
//! cargo test -p mcp-runtime-operator --test teams -- --nocapture
//! ```
//!
//! `MCP_TEAMS_REVOCATION_ROUNDS` sets the rounds (default 10).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::gateway::*;
use common::platform::*;
use common::*;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::api::{Api, PostParams};
use mcp_runtime_api::{MCPAgentSession, MCPServer, ServerPhase};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(30);

/// The server of a team: one read-only tool behind the gateway, sessions required.
fn server(name: &str) -> MCPServer {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: {name}}}\nspec:\n  image: ghcr.io/acme/{name}:1\n  tools: [{{name: echo, sideEffect: read}}]\n  session: {{required: true}}\n  gateway: {{enabled: true}}\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_reach_only_their_own_servers_and_revocations_through_the_platform_hold() {
    let rounds: usize = std::env::var("MCP_TEAMS_REVOCATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let c = cluster();
    let client = c.env.client().await;

    // The platform: its signing key's public half is what the gateways trust.
    let platform = Platform::start(c.env, "teams", "teams", &[]).await;
    let dir = platform.dir.clone();

    // People and teams: rita owns red (alice is a member), bea owns blue (bob is a member).
    let admin = platform.login(ADMIN, PASSWORD);
    for name in ["rita", "alice", "bea", "bob"] {
        platform.expect(
            "POST",
            "/v1/users",
            &admin,
            Some(json!({"email": email(name), "password": PASSWORD})),
            201,
        );
    }
    for (team, owner, member) in [("red", "rita", "alice"), ("blue", "bea", "bob")] {
        platform.expect(
            "POST",
            "/v1/teams",
            &admin,
            Some(json!({"slug": team, "display_name": team, "owner": email(owner)})),
            201,
        );
        platform.expect(
            "POST",
            &format!("/v1/teams/{team}/members"),
            &admin,
            Some(json!({"email": email(member), "role": "member"})),
            200,
        );
    }
    let token = |name: &str| platform.login(&email(name), PASSWORD);
    let (rita, alice, bea, bob) = (token("rita"), token("alice"), token("bea"), token("bob"));

    // Each team's namespace (made by the platform) holds its server; the owners grant their
    // member the server through the platform.
    for (team, name) in [("red", "crm"), ("blue", "wiki")] {
        let ns = format!("mcp-team-{team}");
        server_api(&client, &ns)
            .create(&PostParams::default(), &server(name))
            .await
            .unwrap_or_else(|e| panic!("creating {ns}/{name}: {e}"));
    }
    for (team, owner, member, name) in [
        ("red", &rita, "alice", "crm"),
        ("blue", &bea, "bob", "wiki"),
    ] {
        platform.expect(
            "POST",
            &format!("/v1/teams/{team}/grants"),
            owner,
            Some(json!({"name": format!("{member}-{name}"), "spec": {
                "serverRef": {"name": name},
                "subject": {"humanID": email(member)},
                "maxTrust": "high",
                "allowedSideEffects": ["read"],
            }})),
            201,
        );
    }
    // Owners cannot grant in, or read, the other team.
    let (status, _) = platform.call(
        "POST",
        "/v1/teams/blue/grants",
        Some(&rita),
        Some(json!({"name": "sneaky", "spec": {"serverRef": {"name": "wiki"}, "subject": {"humanID": email("rita")}}})),
    );
    assert_eq!(status, 404, "rita granted herself blue's server");
    assert_eq!(
        platform
            .call("GET", "/v1/teams/red/grants", Some(&bea), None)
            .0,
        404
    );

    // Sessions: each member gets one for their own team's server only.
    let issue = |who: &str, server: &str, team: &str| {
        platform.call(
            "POST",
            "/v1/runtime/adapter/sessions",
            Some(who),
            Some(json!({"server": server, "agent": "claude", "team": team})),
        )
    };
    let (status, red_session) = issue(&alice, "crm", "red");
    assert_eq!(status, 200, "{red_session}");
    let (status, blue_session) = issue(&bob, "wiki", "blue");
    assert_eq!(status, 200, "{blue_session}");
    let (status, answer) = issue(&alice, "wiki", "blue");
    assert_eq!(status, 404, "alice is not in blue: {answer}");
    let (status, answer) = issue(&alice, "wiki", "red");
    assert_eq!(status, 403, "red has no grant for wiki: {answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MCPAccessGrant"),
        "{answer}"
    );
    let alice_token = red_session["token"].as_str().unwrap().to_owned();
    let bob_token = blue_session["token"].as_str().unwrap().to_owned();
    let red_session_name = red_session["name"].as_str().unwrap().to_owned();

    // The gateways, once the operator has the servers Ready and the sessions in their policies.
    let mut gateways = Vec::new();
    for (team, name, session) in [
        ("red", "crm", &red_session),
        ("blue", "wiki", &blue_session),
    ] {
        let ns = format!("mcp-team-{team}");
        wait_phase(&server_api(&client, &ns), name, ServerPhase::Ready).await;
        let session_name = session["name"].as_str().unwrap().to_owned();
        wait_policy(
            &client,
            &ns,
            name,
            "the issued session in the policy",
            |d| d.sessions.iter().any(|s| s.name == session_name),
        )
        .await;
        let (process, port) = start_gateway(c.env, &ns, name, &dir.join("signing.pub")).await;
        gateways.push((process, format!("http://127.0.0.1:{port}/mcp")));
    }
    let (red_url, blue_url) = (gateways[0].1.clone(), gateways[1].1.clone());
    let http: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();

    assert_eq!(call(&http, &red_url, &alice_token).await, Outcome::Allowed);
    assert_eq!(call(&http, &blue_url, &bob_token).await, Outcome::Allowed);
    // A token issued for one team's server is not a credential at the other's gateway.
    for (url, token) in [(&blue_url, &alice_token), (&red_url, &bob_token)] {
        let status = status_of(&http, url, token).await;
        assert_eq!(
            status, 401,
            "a foreign team's session token was accepted at {url}"
        );
    }

    // The other team's owner cannot revoke red's session; nothing changes.
    let revoke = format!("/v1/teams/red/sessions/{red_session_name}/revoke");
    assert_eq!(platform.call("POST", &revoke, Some(&bea), None).0, 404);
    assert_eq!(platform.call("POST", &revoke, Some(&bob), None).0, 404);
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), "mcp-team-red");
    let stored = sessions.get(&red_session_name).await.unwrap();
    assert!(!stored.spec.revoked, "blue revoked red's session");
    assert_eq!(call(&http, &red_url, &alice_token).await, Outcome::Allowed);

    // Revocation through the platform, measured like tests/revocation.rs: from the API call
    // (t0, before the request) to the first denial at the gateway.
    let unrevoke = format!("/v1/teams/red/sessions/{red_session_name}/unrevoke");
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        platform.expect("POST", &unrevoke, &rita, None, 200);
        let deadline = Instant::now() + BOUND;
        while call(&http, &red_url, &alice_token).await != Outcome::Allowed {
            assert!(
                Instant::now() < deadline,
                "round {round}: not allowed again after unrevoke"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = Instant::now();
        platform.expect("POST", &revoke, &rita, None, 200);
        loop {
            match call(&http, &red_url, &alice_token).await {
                Outcome::Allowed => {}
                Outcome::Denied(reason) => {
                    assert_eq!(reason, "session_revoked", "round {round}");
                    break;
                }
            }
            assert!(
                t0.elapsed() < BOUND,
                "round {round}: revoked session still allowed after {BOUND:?}"
            );
        }
        latencies.push(t0.elapsed());
    }
    // Blue never noticed.
    assert_eq!(call(&http, &blue_url, &bob_token).await, Outcome::Allowed);
    eprintln!(
        "\nRESULT revocation through the platform API -> first denial, {rounds} rounds\n  {}",
        summary("total (POST .../revoke -> denied)", &latencies)
    );
    assert_no_forbidden(c.operator.lock().unwrap().log());
}

/// The HTTP status of a `tools/call` through a gateway (for refusals before any decision).
async fn status_of(http: &HttpClient<HttpConnector, Full<Bytes>>, url: &str, token: &str) -> u16 {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        )))
        .expect("request");
    http.request(request)
        .await
        .expect("the gateway answers")
        .status()
        .as_u16()
}
