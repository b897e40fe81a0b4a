//! The operator survives its environment: an apiserver restart mid-run, and the loss of the
//! leader replica. Each test runs its own private control plane (these tests break it on
//! purpose), with the operator as its ServiceAccount.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use mcp_runtime_api::{AccessPhase, MCPAccessGrant, MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::{TestEnv, eventually};

fn server(name: &str) -> MCPServer {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: {name}}}\nspec:\n  image: ghcr.io/acme/{name}:1\n  gateway: {{enabled: true}}\n"
    ))
}

fn grant(name: &str, server: &str) -> MCPAccessGrant {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {{name: {name}}}\nspec:\n  serverRef: {{name: {server}}}\n  subject: {{agentID: claude}}\n"
    ))
}

async fn readyz(addr: &str, want: &str) -> String {
    let addr = addr.to_owned();
    let want = want.to_owned();
    eventually(&format!("{addr}/readyz to say {want}"), WAIT, || {
        let addr = addr.clone();
        let want = want.clone();
        async move {
            match http_get(&addr, "/readyz") {
                Ok((200, body)) if body.contains(&want) => Ok(body),
                Ok((code, body)) => Err(format!("{code} {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_operator_recovers_after_the_apiserver_restarts() {
    let env = TestEnv::start().expect("a private testenv");
    install(&env).await;
    let (mut operator, addr) = start_operator(&env, "restart", &[]).await;
    readyz(&addr, "leader").await;
    let client = env.client().await;
    let ns = env.namespace("restart").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server("before"))
        .await
        .unwrap();
    wait_phase(&servers, "before", ServerPhase::Ready).await;

    env.restart_apiserver(Duration::from_secs(3))
        .await
        .expect("restart kube-apiserver");
    assert!(
        operator.try_wait().is_none(),
        "the operator exited when the apiserver went away"
    );

    // Work created after the restart is picked up: the watches came back.
    let client = env.client().await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server("after"))
        .await
        .unwrap();
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &ns);
    grants
        .create(&PostParams::default(), &grant("claude", "before"))
        .await
        .unwrap();
    wait_phase(&servers, "after", ServerPhase::Ready).await;
    wait_access(&grants, "claude", AccessPhase::Active, WAIT).await;
    wait_policy(
        &client,
        &ns,
        "before",
        "the new grant in the old server's policy",
        |d| d.grants.iter().any(|g| g.name == "claude"),
    )
    .await;
    readyz(&addr, "leader").await;
    assert!(operator.try_wait().is_none());
    assert_no_forbidden(operator.log());
}

#[tokio::test]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let env = TestEnv::start().expect("a private testenv");
    install(&env).await;
    let fast = [("MCP_OPERATOR_LEASE_SECONDS", "4")];
    let (mut first, first_addr) = start_operator(&env, "first", &fast).await;
    readyz(&first_addr, "leader").await;
    let (second, second_addr) = start_operator(&env, "second", &fast).await;
    readyz(&second_addr, "standby").await;

    let client = env.client().await;
    let ns = env.namespace("failover").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server("one"))
        .await
        .unwrap();
    wait_phase(&servers, "one", ServerPhase::Ready).await;

    // SIGKILL: no chance to release the lease; the standby must wait for it to expire.
    first.terminate(Duration::ZERO);
    readyz(&second_addr, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mcp-runtime");
    let lease = leases.get("mcp-runtime-operator").await.unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    assert!(holder.starts_with("operator-second-"), "{holder}");
    servers
        .create(&PostParams::default(), &server("two"))
        .await
        .unwrap();
    wait_phase(&servers, "two", ServerPhase::Ready).await;
    assert_no_forbidden(second.log());
}
