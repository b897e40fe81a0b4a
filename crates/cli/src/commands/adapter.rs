//! `mcp-runtime adapter stdio|proxy`: the agent adapters of `mcp-runtime-adapter`, configured
//! from flags and the environment.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use mcp_runtime_adapter::credential::{
    CredentialSource, Credentials, RefreshOptions, StaticToken, TokenFile,
};
use mcp_runtime_adapter::upstream::{Upstream, UpstreamConfig};
use mcp_runtime_adapter::{proxy, stdio};
use tracing_subscriber::filter::LevelFilter;

use crate::cli::{AdapterConnection, AdapterProxyArgs, AdapterStdioArgs, LogLevel};
use crate::error::{CliError, Result};

/// The variable holding a token when no token file is given.
const TOKEN_ENV: &str = "MCP_RUNTIME_TOKEN";

pub fn stdio(args: AdapterStdioArgs) -> Result<u8> {
    init_logs(args.connection.log_level);
    let options = stdio::StdioOptions {
        max_message_bytes: args.connection.max_message_bytes,
        ..Default::default()
    };
    run(async move {
        let upstream = connect(&args.connection).await?;
        tracing::info!(url = %upstream.url(), "stdio adapter ready");
        stdio::run(
            upstream,
            tokio::io::stdin(),
            tokio::io::stdout(),
            options,
            shutdown_signal(),
        )
        .await
        .map_err(|e| CliError::Invalid(format!("standard output: {e}")))
    })
}

pub fn proxy(args: AdapterProxyArgs) -> Result<u8> {
    init_logs(args.connection.log_level);
    let options = proxy::ProxyOptions {
        max_body_bytes: args.connection.max_message_bytes,
        allowed_origins: args.allowed_origins.clone(),
        ..Default::default()
    };
    run(async move {
        let upstream = connect(&args.connection).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                CliError::hint(
                    format!("cannot listen on {}: {e}", args.listen),
                    "choose another address with --listen (e.g. 127.0.0.1:0 for any free port)",
                )
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        tracing::info!(listen = %local, url = %upstream.url(), "proxy ready: point MCP clients at http://{local}/mcp");
        proxy::serve(listener, upstream, options, shutdown_signal())
            .await
            .map_err(|e| CliError::Invalid(format!("proxy: {e}")))
    })
}

/// Runs `work` on a runtime of its own. Standard input is read on a blocking thread that may
/// never return, so the runtime is not waited for at the end.
fn run(work: impl std::future::Future<Output = Result<()>>) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(work);
    runtime.shutdown_timeout(Duration::from_millis(100));
    outcome.map(|()| 0)
}

async fn connect(c: &AdapterConnection) -> Result<Arc<Upstream>> {
    let mut config = UpstreamConfig::new(&c.url).map_err(|e| {
        CliError::hint(
            format!("--url: {e}"),
            "give the gateway's MCP endpoint, e.g. http://127.0.0.1:8091/mcp (`mcp-runtime dev` prints it)",
        )
    })?;
    config.ca_file = c.ca_file.clone();
    let source: Arc<dyn CredentialSource> = match (&c.token_file, std::env::var(TOKEN_ENV)) {
        (Some(path), _) => Arc::new(TokenFile::new(path)),
        (None, Ok(token)) => Arc::new(
            StaticToken::new(&token, format!("${TOKEN_ENV}"))
                .map_err(|e| CliError::Invalid(e.to_string()))?,
        ),
        (None, Err(_)) => {
            return Err(CliError::hint(
                "no credential: give --token-file FILE (or $MCP_RUNTIME_TOKEN_FILE), or the token in $MCP_RUNTIME_TOKEN",
                "mint one with `mcp-runtime token mint --key KEY --server NS/NAME --session S > FILE`, or save the token `mcp-runtime dev` prints",
            ));
        }
    };
    let credentials = Credentials::start(source, RefreshOptions::default())
        .await
        .map_err(|e| CliError::Invalid(format!("cannot load the credential: {e}")))?;
    let upstream = Upstream::new(config, credentials)
        .map_err(|e| CliError::Invalid(format!("--ca-file: {e}")))?;
    Ok(Arc::new(upstream))
}

/// Logs on stderr only: stdout is the stdio adapter's JSON-RPC channel.
fn init_logs(level: LogLevel) {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .with_target(false)
        .init();
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("stopping");
}
