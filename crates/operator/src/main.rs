//! `mcp-runtime-operator`: reconciles MCPServers, MCPAccessGrants and MCPAgentSessions.
//! Configuration comes from environment variables (docs/operator.md); the cluster from the
//! in-cluster ServiceAccount or `KUBECONFIG`.

use std::process::ExitCode;
use std::sync::Arc;

use mcp_runtime_operator::config::Config;
use mcp_runtime_operator::leader::{self, LeaseLock};
use mcp_runtime_operator::metrics::Metrics;
use mcp_runtime_operator::{controller, http};

async fn shutdown_signal() {
    mcp_runtime_svc::shutdown_signal().await;
    tracing::info!("shutting down");
}

async fn run(config: Config) -> Result<(), String> {
    let client = kube::Client::try_default().await.map_err(|e| {
        format!(
            "cannot configure a Kubernetes client (in-cluster ServiceAccount or KUBECONFIG): {e}"
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    let (addr, server) = http::serve(config.listen, metrics.clone())
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (MCP_OPERATOR_LISTEN): {e}",
                config.listen
            )
        })?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(server);

    if !config.leader_election {
        tracing::warn!(
            "leader election is off (MCP_OPERATOR_LEADER_ELECTION=false): run one replica only"
        );
        metrics.set_leading(true);
        metrics.set_api_reachable();
        tokio::select! {
            () = controller::run(client, config, metrics.clone()) => {
                return Err("the controllers stopped unexpectedly".into());
            }
            () = shutdown_signal() => {}
        }
        return Ok(());
    }
    let lock = LeaseLock::new(
        client.clone(),
        &config.lease_namespace,
        &config.lease_name,
        &config.identity,
        config.lease_duration,
    );
    tracing::info!(
        lease = %format!("{}/{}", config.lease_namespace, config.lease_name),
        identity = %config.identity,
        "campaigning for the leader lease"
    );
    let m = metrics.clone();
    let m2 = metrics.clone();
    leader::run(
        lock,
        shutdown_signal(),
        || controller::run(client.clone(), config.clone(), metrics.clone()),
        move |leading| m.set_leading(leading),
        move || m2.set_api_reachable(),
    )
    .await;
    Ok(())
}

fn main() -> ExitCode {
    mcp_runtime_svc::init_logging();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
