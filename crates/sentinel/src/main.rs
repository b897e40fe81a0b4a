use std::sync::Arc;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_runtime_sentinel::config::Config;
use mcp_runtime_sentinel::keys::ApiKeys;
use mcp_runtime_sentinel::metrics::Metrics;
use mcp_runtime_sentinel::server::Api;
use mcp_runtime_sentinel::sqlite::SqliteStore;
use mcp_runtime_svc::admin;

/// Admin connections open at once (probes and scrapes).
const ADMIN_MAX_CONNECTIONS: usize = 16;

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
            tracing::error!(error = %e, "mcp-sentinel failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let ingest_keys = ApiKeys::load(&config.api_keys_file)?;
    let read_keys = match &config.read_api_keys_file {
        Some(path) => ApiKeys::load(path)?,
        None => ingest_keys.clone(),
    };
    let store = SqliteStore::open(&config.db)
        .map_err(|e| format!("opening {}: {e}", config.db.display()))?;
    let api = Arc::new(Api {
        store: Arc::new(store),
        ingest_keys,
        read_keys,
        max_body_bytes: config.max_body_bytes,
        metrics: Metrics::new(),
    });
    let listener = admin::bind(config.listen, "the API").await?;
    let admin_listener = admin::bind(config.admin_listen, "admin endpoints").await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        db = %config.db.display(),
        "mcp-sentinel ready"
    );
    let admin_api = api.clone();
    tokio::spawn(admin::serve(
        admin_listener,
        ADMIN_MAX_CONNECTIONS,
        move |request| mcp_runtime_sentinel::admin::handle(admin_api.clone(), request),
    ));
    let shutdown = mcp_runtime_svc::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| api.clone().handle(request));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("mcp-sentinel stopping");
    Ok(())
}
