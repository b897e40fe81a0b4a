use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_runtime_platform::config::Config;
use mcp_runtime_platform::server::Api;
use mcp_runtime_platform::store::{self, Pool};

fn main() -> std::process::ExitCode {
    mcp_runtime_svc::init_logging();
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mcp-platform failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let pem = std::fs::read(&config.signing_key)
        .map_err(|e| format!("--signing-key {}: {e}", config.signing_key.display()))?;
    let signing_key = mcp_runtime_token::SigningKey::from_pem(&pem)
        .map_err(|e| format!("--signing-key {}: {e}", config.signing_key.display()))?;
    let bootstrap = config.bootstrap_admin()?;

    let mut client = store::connect(&config.database_url)
        .await
        .map_err(|e| format!("connecting to the database: {e}"))?;
    let applied = mcp_runtime_platform::migrate::migrate(&mut client).await?;
    tracing::info!(from = applied.from, applied = ?applied.applied, "schema migrated");
    if let Some((email, password)) = bootstrap {
        if mcp_runtime_platform::bootstrap_admin(&mut client, &email, &password).await? {
            tracing::info!(email = %email, "bootstrap admin created");
        } else {
            tracing::info!(email = %email, "bootstrap admin exists; left as it is");
        }
    }
    drop(client);

    let cluster = if config.kube {
        let c = mcp_runtime_platform::cluster::Cluster::connect()
            .await
            .map_err(|e| format!("--kube: no cluster client: {e}"))?;
        tracing::info!("working with the cluster (team namespaces, agent sessions)");
        Some(c)
    } else {
        None
    };
    let api = Arc::new(Api {
        cluster,
        max_session_ttl: jiff::SignedDuration::from_secs(config.max_session_ttl_seconds.into()),
        pool: Pool::new(&config.database_url, config.db_connections as usize),
        verifying_keys: signing_key.verifying_keys(),
        signing_key,
        access_token_ttl: config.access_token_ttl(),
        lockout: config.lockout(),
        trust_forwarded_for: config.trust_forwarded_for,
        max_body_bytes: config.max_body_bytes,
    });
    let listener = mcp_runtime_svc::admin::bind(config.listen, "the API").await?;
    tracing::info!(listen = %listener.local_addr()?, "mcp-platform ready");
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let shutdown = mcp_runtime_svc::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| api.clone().handle(request, peer));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("mcp-platform stopping");
    Ok(())
}
