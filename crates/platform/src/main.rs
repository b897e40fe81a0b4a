use std::sync::Arc;

use clap::Parser;
use mcp_runtime_platform::config::Config;
use mcp_runtime_platform::server::Api;
use mcp_runtime_platform::store::{self, Pool};

/// Admin connections (probes, scrapes) open at once.
const ADMIN_MAX_CONNECTIONS: usize = 16;

fn main() -> std::process::ExitCode {
    mcp_runtime_svc::init_logging();
    mcp_runtime_svc::run_service("mcp-platform", run(Config::parse()))
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let pem = std::fs::read(&config.signing_key)
        .map_err(|e| format!("--signing-key {}: {e}", config.signing_key.display()))?;
    let signing_key = mcp_runtime_token::SigningKey::from_pem(&pem)
        .map_err(|e| format!("--signing-key {}: {e}", config.signing_key.display()))?;
    let bootstrap = config.bootstrap_admin()?;
    let sentinel = config.sentinel()?;
    let oidc = config.oidc()?;

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
        let c = mcp_runtime_platform::cluster::Cluster::connect(
            mcp_runtime_platform::cluster::GatewayKeys {
                secret: config.gateway_token_keys_secret.clone(),
                public_pem: signing_key.public_pem(),
            },
        )
        .await
        .map_err(|e| format!("--kube: no cluster client: {e}"))?;
        tracing::info!("working with the cluster (team namespaces, agent sessions)");
        Some(c)
    } else {
        None
    };
    let pool = Pool::new(&config.database_url, config.db_connections as usize);
    let api = Arc::new(Api {
        cluster,
        max_session_ttl: jiff::SignedDuration::from_secs(config.max_session_ttl_seconds.into()),
        metrics: mcp_runtime_platform::metrics::Metrics::new(pool.connect_errors()),
        pool,
        verifying_keys: signing_key.verifying_keys(),
        signing_key,
        access_token_ttl: config.access_token_ttl(),
        lockout: config.lockout(),
        trust_forwarded_for: config.trust_forwarded_for,
        max_body_bytes: config.max_body_bytes,
        sentinel,
        oidc,
        oidc_auto_provision: config.oidc_auto_provision,
    });
    let listener = mcp_runtime_svc::admin::bind(config.listen, "the API").await?;
    let admin_listener =
        mcp_runtime_svc::admin::bind(config.admin_listen, "admin endpoints").await?;
    let admin_api = api.clone();
    tokio::spawn(mcp_runtime_svc::admin::serve(
        admin_listener,
        ADMIN_MAX_CONNECTIONS,
        move |request| mcp_runtime_platform::server::admin::handle(admin_api.clone(), request),
    ));
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %config.admin_listen,
        "mcp-platform ready"
    );
    mcp_runtime_svc::api::serve_until(
        listener,
        config.max_connections,
        move |request, peer| api.clone().handle(request, peer),
        mcp_runtime_svc::shutdown_signal(),
    )
    .await;
    tracing::info!("mcp-platform stopping");
    Ok(())
}
