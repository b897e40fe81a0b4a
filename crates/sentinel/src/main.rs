use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_runtime_sentinel::config::Config;
use mcp_runtime_sentinel::keys::ApiKeys;
use mcp_runtime_sentinel::server::Api;
use mcp_runtime_sentinel::store::Store;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
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

/// How often old events are removed when a retention is set.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let ingest_keys = ApiKeys::load(&config.api_keys_file)?;
    let read_keys = match &config.read_api_keys_file {
        Some(path) => ApiKeys::load(path)?,
        None => ingest_keys.clone(),
    };
    let redactor = config.redactor()?;
    let store: Arc<dyn Store> = config.open_store()?;
    let api = Arc::new(Api {
        store: store.clone(),
        ingest_keys,
        read_keys,
        redactor,
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout(),
        retention: config.retention(),
        started: jiff::Timestamp::now(),
    });
    if let Some(retention) = config.retention() {
        tokio::spawn(prune_forever(store.clone(), retention));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = store.kind(), "mcp-sentinel ready");
    // A permit per connection: beyond the cap, connections wait in the kernel's queue instead
    // of each costing a task and buffers here.
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
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
            let service = service_fn(move |request| api.clone().handle(request));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("mcp-sentinel stopping");
    Ok(())
}

async fn prune_forever(store: Arc<dyn Store>, retention: jiff::SignedDuration) {
    loop {
        let before = jiff::Timestamp::now()
            .checked_sub(retention)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.prune(before)).await {
            Ok(Ok(removed)) => {
                tracing::info!(before = %before, removed = ?removed, "retention: old events removed")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention: removing old events failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
