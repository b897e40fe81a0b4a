//! Scale benchmark (ignored by default; docs/benchmarks.md): N MCPServers (default 1 000, each
//! with the gateway on, one replica) created at once on a private kwok control plane; reports the
//! wall time until every server has a status, and until every one is Ready, and the operator's
//! peak RSS. Run:
//!
//! ```sh
//! cargo test --release -p mcp-runtime-operator --test scale -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use mcp_runtime_api::{MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::TestEnv;

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (docs/benchmarks.md)"]
async fn thousand_servers_become_ready() {
    let n: usize = std::env::var("MCP_SCALE_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let namespaces = 10;
    // Two fake nodes: 1 000 pods is exactly one kwok node's capacity.
    let env = TestEnv::start_with_env(&[
        ("MCP_TESTENV_NODES", "2"),
        ("MCP_TESTENV_TIMEOUT_SCALE", "3"),
    ])
    .expect("a private testenv");
    install(&env).await;
    let (operator, _addr) = start_operator(&env, "scale", &[("RUST_LOG", "warn")]).await;
    let client = env.client().await;
    let mut nss = Vec::new();
    for i in 0..namespaces {
        nss.push(env.namespace(&format!("scale-{i}")).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let creates = futures::stream::iter(0..n)
        .map(|i| {
            let api: Api<MCPServer> = Api::namespaced(client.clone(), &nss[i % namespaces]);
            let server: MCPServer = yaml(&format!(
                "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: s{i}}}\nspec:\n  image: ghcr.io/acme/s:1\n  gateway: {{enabled: true}}\n  tools: [{{name: echo, sideEffect: read}}]\n"
            ));
            async move { api.create(&PostParams::default(), &server).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(creates.iter().all(Result::is_ok), "some creates failed");
    let created = started.elapsed();

    let all: Api<MCPServer> = Api::all(client.clone());
    let limit: u64 = std::env::var("MCP_SCALE_READY_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut with_status = None;
    let mut most_ready = 0;
    let ready_at = loop {
        let list = all
            .list(&ListParams::default())
            .await
            .expect("list servers");
        let statused = list.items.iter().filter(|s| s.status.is_some()).count();
        let ready = list
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(ServerPhase::Ready))
            .count();
        if with_status.is_none() && statused == n {
            with_status = Some(started.elapsed());
        }
        most_ready = most_ready.max(ready);
        if ready == n {
            break started.elapsed();
        }
        if Instant::now() >= deadline {
            let rss = peak_rss_mib(operator.id()).unwrap_or(f64::NAN);
            eprintln!(
                "\nRESULT servers={n} created_in={:.1}s all_with_status={} all_ready=not within {limit}s (at most {most_ready} at once) operator_peak_rss={rss:.1}MiB",
                created.as_secs_f64(),
                with_status.map_or("never".to_owned(), |d: Duration| format!(
                    "{:.1}s",
                    d.as_secs_f64()
                )),
            );
            panic!(
                "only {ready}/{n} Ready after {limit} s (at most {most_ready}); see the kwok/controller-manager logs"
            );
        }
        eprintln!(
            "  {:>6.1}s  status {statused}/{n}  Ready {ready}/{n}",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let rss = peak_rss_mib(operator.id()).unwrap_or(f64::NAN);
    eprintln!(
        "\nRESULT servers={n} created_in={:.1}s all_with_status={:.1}s all_ready={:.1}s operator_peak_rss={rss:.1}MiB",
        created.as_secs_f64(),
        with_status.unwrap_or(ready_at).as_secs_f64(),
        ready_at.as_secs_f64(),
    );
    assert_no_forbidden(operator.log());
}
