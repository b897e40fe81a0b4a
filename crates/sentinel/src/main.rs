use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcp_runtime_sentinel::config::{Config, Role};
#[cfg(feature = "kafka")]
use mcp_runtime_sentinel::kafka::KafkaSink;
use mcp_runtime_sentinel::server::{Api, IngestTarget};
use mcp_runtime_sentinel::store::Store;
use mcp_runtime_svc::otel::{ExportConfig, Tracer};

/// Admin connections open at once (probes and scrapes).
const ADMIN_MAX_CONNECTIONS: usize = 16;

fn main() -> std::process::ExitCode {
    mcp_runtime_svc::init_logging();
    mcp_runtime_svc::run_service("mcp-sentinel", run(Config::parse()))
}

/// How often old events are removed when a retention is set.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let (ingest_keys, read_keys) = config.keys()?;
    let redactor = config.redactor()?;
    let kafka = config.kafka()?;
    let role = config.role;
    let mut metrics = mcp_runtime_sentinel::metrics::Metrics::new();
    let (tracer, trace_task) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let mut export = ExportConfig::new(endpoint.clone(), config.otlp_service_name.clone());
            export.service_version = env!("CARGO_PKG_VERSION").to_owned();
            let (tracer, task) =
                Tracer::start(export).map_err(|e| format!("--otlp-endpoint: {e}"))?;
            metrics.register_tracer(&tracer);
            (tracer, Some(task))
        }
        None => (Tracer::disabled(), None),
    };
    let metrics = Arc::new(metrics);
    // The store, for every role but a Kafka-backed ingest (which never reads or writes it).
    let store: Option<Arc<dyn Store>> = match (role, &kafka) {
        (Role::Ingest, _) => None,
        _ => Some(config.open_store()?),
    };
    let ingest = if role.ingests() {
        match (&kafka, &store) {
            #[cfg(feature = "kafka")]
            (Some(kafka), _) => Some(IngestTarget::Kafka(Arc::new(KafkaSink::new(kafka)?))),
            (None, Some(store)) => Some(IngestTarget::Store(store.clone())),
            _ => None,
        }
    } else {
        None
    };
    // The processor: its own role, or inside `all` when Kafka is configured.
    // It stops when told (`stop`), and the process stops when it fails (`failed`).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (failed_tx, failed) = tokio::sync::oneshot::channel::<String>();
    #[cfg(feature = "kafka")]
    let processor = match (&kafka, &store, role) {
        (Some(kafka), Some(store), Role::All | Role::Processor) => {
            let (kafka, store, metrics, tracer) = (
                kafka.clone(),
                store.clone(),
                metrics.clone(),
                tracer.clone(),
            );
            let mut stopped = stopped.clone();
            Some(tokio::spawn(async move {
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let result = mcp_runtime_sentinel::kafka::run_processor(
                    kafka, store, metrics, tracer, until,
                )
                .await;
                if let Err(e) = &result {
                    let _ = failed_tx.send(e.to_string());
                }
                result
            }))
        }
        _ => None,
    };
    #[cfg(not(feature = "kafka"))]
    drop((failed_tx, stopped));
    if let (Some(retention), Some(store), true) = (config.retention(), &store, role.queries()) {
        tokio::spawn(prune_forever(store.clone(), retention));
    }
    let api = Arc::new(Api {
        role: role.name(),
        store: store.clone().filter(|_| role.queries()),
        backing: store.clone(),
        ingest,
        ingest_keys,
        read_keys,
        ingest_jwt: config.ingest_jwt()?,
        redactor,
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout(),
        retention: config.retention(),
        started: jiff::Timestamp::now(),
        metrics: metrics.clone(),
        tracer,
    });
    let listener = mcp_runtime_svc::admin::bind(config.listen, "the API").await?;
    let admin_listener =
        mcp_runtime_svc::admin::bind(config.admin_listen, "admin endpoints").await?;
    let admin_api = api.clone();
    tokio::spawn(mcp_runtime_svc::admin::serve(
        admin_listener,
        ADMIN_MAX_CONNECTIONS,
        move |request| mcp_runtime_sentinel::admin::handle(admin_api.clone(), request),
    ));
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %config.admin_listen,
        role = role.name(),
        store = store.as_ref().map_or("none", |s| s.kind()),
        kafka = kafka.is_some(),
        "mcp-sentinel ready"
    );
    let failure = mcp_runtime_svc::api::serve_until(
        listener,
        config.max_connections,
        move |request, _peer| api.clone().handle(request),
        async {
            tokio::select! {
                () = mcp_runtime_svc::shutdown_signal() => None,
                Ok(why) = failed => Some(why),
            }
        },
    )
    .await;
    tracing::info!("mcp-sentinel stopping");
    let _ = stop.send(true);
    #[cfg(feature = "kafka")]
    if let Some(processor) = processor {
        // It saw the same signal: its last batch is stored and committed before we exit.
        match tokio::time::timeout(Duration::from_secs(30), processor).await {
            Ok(Ok(Ok(totals))) => tracing::info!(?totals, "processor drained"),
            Ok(Ok(Err(e))) => return Err(e.into()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => tracing::warn!("processor did not drain within 30 s"),
        }
    }
    if let Some(task) = trace_task {
        task.shutdown(Duration::from_secs(5)).await;
    }
    match failure {
        Some(why) => Err(format!("the processor failed: {why}").into()),
        None => Ok(()),
    }
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
