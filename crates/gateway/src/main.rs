//! `mcp-gateway` binary: resolves configuration, then composes the listeners.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mcp_runtime_audit::{AuditConfig, Auditor};
use mcp_runtime_gateway::auth::AuthConfig;
use mcp_runtime_gateway::config::{Config, PolicySource};
use mcp_runtime_gateway::kube_source::watch_config_map;
use mcp_runtime_gateway::metrics::{Metrics, ReloadLabels};
use mcp_runtime_gateway::policy_source::{PolicyStore, Reload, watch_file};
use mcp_runtime_gateway::request::trace::Tracing;
use mcp_runtime_gateway::request::{Gateway, Limits, Upstream};
use mcp_runtime_gateway::server;
use mcp_runtime_gateway::token_keys::{self, TokenKeys};
use mcp_runtime_svc::admin;
use mcp_runtime_svc::otel::{ExportConfig, Sampler, Tracer};

fn read_secret(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

async fn run(config: Config) -> Result<(), String> {
    if let Some(path) = &config.token_key_file {
        return Err(format!(
            "--token-key-file / MCP_GATEWAY_TOKEN_KEY_FILE ({}) is no longer supported: session \
             tokens are signed with Ed25519 now and gateways hold only public keys. Create a key \
             pair with `mcp-runtime token keygen --out DIR`, give the gateway \
             --token-public-keys-file DIR/token.pub and mint with --key DIR/token.key",
            path.display()
        ));
    }
    let token_keys = match &config.token_public_keys_file {
        Some(path) => {
            let (keys, loaded) = token_keys::load(path).map_err(|e| {
                format!("--token-public-keys-file: {e} (create a key pair with `mcp-runtime token keygen --out DIR`)")
            })?;
            let kids: Vec<&str> = keys.kids().collect();
            tracing::info!(?kids, file = %path.display(), "token public keys loaded");
            let shared = TokenKeys::new(keys);
            token_keys::watch_file(shared.clone(), path.clone(), loaded);
            shared
        }
        None => TokenKeys::default(),
    };
    let upstream = Upstream::new(&config.upstream, config.request_threads())
        .map_err(|e| format!("--upstream {}: {e}", config.upstream))?;
    let store = PolicyStore::default();
    let mut metrics = Metrics::new();
    let reloads = metrics.reloads.clone();
    let on_reload = move |r| {
        let result = match r {
            Reload::Loaded => "loaded",
            Reload::Rejected => "rejected",
            Reload::Unchanged => "unchanged",
        };
        reloads.get_or_create(&ReloadLabels { result }).inc();
    };
    match config.policy_source()? {
        PolicySource::File(path) => watch_file(store.clone(), path, on_reload),
        PolicySource::ConfigMap(access, config_map) => {
            tracing::info!(%config_map, api = %access.api_url, "policy from the Kubernetes API");
            watch_config_map(store.clone(), access, config_map, on_reload)
                .map_err(|e| format!("--kube-ca-file: {e}"))?;
        }
    }
    let (audit, audit_task) = if config.audit_file.is_some() || config.audit_ingest_url.is_some() {
        let api_key = match &config.audit_api_key_file {
            Some(p) => Some(
                String::from_utf8_lossy(&read_secret(p, "audit API key file")?)
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let mut audit_config = AuditConfig::new(config.audit_spool_dir.clone());
        audit_config.jsonl_path = config.audit_file.clone();
        audit_config.ingest_url = config.audit_ingest_url.clone();
        audit_config.ingest_ca_file = config.audit_ca_file.clone();
        audit_config.api_key = api_key;
        audit_config.spool_max_bytes = config.audit_spool_max_bytes;
        let (auditor, task) = Auditor::start(audit_config).map_err(|e| format!("audit: {e}"))?;
        metrics.register_audit(auditor.clone());
        (Some(auditor), Some(task))
    } else {
        tracing::warn!(
            "no audit sink configured (--audit-file / --audit-ingest-url): decisions are not recorded"
        );
        (None, None)
    };
    let (tracer, trace_task) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let mut export = ExportConfig::new(endpoint.clone(), config.otlp_service_name.clone());
            export.service_version = env!("CARGO_PKG_VERSION").to_owned();
            let (tracer, task) =
                Tracer::start(export).map_err(|e| format!("--otlp-endpoint: {e}"))?;
            tracer.register_metrics(&mut metrics.registry);
            (tracer, Some(task))
        }
        None => (Tracer::disabled(), None),
    };
    let gateway = Arc::new(Gateway {
        store,
        auth: AuthConfig::new(token_keys, config.trust_identity_headers, config.oauth()),
        upstream,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            body_timeout: std::time::Duration::from_secs(config.body_timeout_seconds),
            upstream_timeout: config.upstream_timeout(),
            max_list_bytes: config.max_response_bytes,
        },
        strip_prefix: config.strip_prefix.clone().filter(|p| !p.is_empty()),
        audit,
        audit_source: config
            .audit_source
            .clone()
            .unwrap_or_else(|| "mcp-gateway".to_owned()),
        capture_arguments: config.audit_arguments,
        metrics,
        unauthenticated: Default::default(),
        tracing: Tracing {
            tracer,
            sampler: Sampler::ratio(config.trace_sample_ratio),
        },
    });
    let mcp = admin::bind(config.listen, "MCP traffic")
        .await
        .map_err(|e| e.to_string())?;
    let admin = admin::bind(config.admin_listen, "admin endpoints")
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, upstream = %config.upstream, "mcp-gateway started");
    let serve = async {
        tokio::join!(
            server::serve_mcp(mcp, gateway.clone(), config.max_connections),
            server::serve_admin(admin, gateway.clone(), config.admin_max_connections),
            gateway.flush_unauthenticated_forever(),
        );
    };
    tokio::select! {
        () = serve => {}
        () = mcp_runtime_svc::shutdown_signal() => tracing::info!("shutting down"),
    }
    gateway.flush_unauthenticated();
    if let Some(task) = audit_task {
        task.shutdown(std::time::Duration::from_secs(5)).await;
    }
    if let Some(task) = trace_task {
        task.shutdown(std::time::Duration::from_secs(5)).await;
    }
    Ok(())
}

fn main() -> ExitCode {
    mcp_runtime_svc::init_logging();
    let config = Config::parse();
    // This thread accepts connections and runs the background work (policy source, audit
    // delivery, admin endpoints); MCP traffic is served on the request threads
    // (`server::serve_mcp`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // EX_CONFIG: configuration problems are not transient.
            ExitCode::from(78)
        }
    }
}
