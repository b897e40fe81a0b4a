//! `hello-mcp-server`: a small MCP server over Streamable HTTP, built on the official Rust SDK
//! (`rmcp`). It is the example server that `mcp-runtime dev` and the gateway tests run.
//!
//! One endpoint (default `/mcp`) answers both protocol eras:
//! - the handshake era (`initialize`, then `Mcp-Session-Id` on every request), with stateful
//!   sessions kept in memory;
//! - the stateless 2026-07-28 era (no handshake; every request carries its protocol version,
//!   client info and capabilities in `params._meta`), which rmcp routes statelessly on the same
//!   endpoint.
//!
//! Tools: `echo`, `upper`, `add`, `delete_note` (pretend destructive) and `slow_steps` (sends
//! one progress notification per step when the request carries a `progressToken`).

mod cli;
mod tools;

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

use crate::cli::Options;
use crate::tools::Hello;

/// Largest request body accepted (the same bound rmcp applies by default).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long open connections (SSE streams included) get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

type HttpBody = BoxBody<Bytes, Infallible>;
type McpService = StreamableHttpService<Hello, LocalSessionManager>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Run(options)) => options,
        Ok(cli::Command::Help(text)) => {
            // Help and version go to stdout like any command line tool's.
            #[expect(clippy::print_stdout, reason = "--help and --version print to stdout")]
            {
                print!("{text}");
            }
            return std::process::ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("hello-mcp-server: {message}\n\n{}", cli::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    init_logging();
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hello-mcp-server: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. This crate logs at info; rmcp only at warn, because its info events
/// carry whole messages (arguments included). `RUST_LOG` (targets syntax, e.g.
/// `hello_mcp_server=debug,rmcp=debug`) overrides that.
fn init_logging() {
    let targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(tracing::Level::WARN)
                .with_target("hello_mcp_server", tracing::Level::INFO)
        });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .finish()
        .with(targets)
        .try_init();
}

async fn run(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(options.listen).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {}: {error}", options.listen),
        )
    })?;
    let local = listener.local_addr()?;

    // Cancelling this token ends every MCP session and open SSE stream.
    let mcp_shutdown = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default()
        // Stateful sessions for the handshake era; 2026-07-28 requests are served statelessly
        // by rmcp whatever this says.
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        // Only affects stateless (2026-07-28) requests: a reply with nothing before it goes
        // out as plain JSON; one preceded by notifications (progress) still streams as SSE.
        .with_json_response(options.json_response)
        .with_cancellation_token(mcp_shutdown.clone());
    config = match &options.allowed_hosts {
        cli::AllowedHosts::LoopbackDefault => config,
        cli::AllowedHosts::Any => config.disable_allowed_hosts(),
        cli::AllowedHosts::List(hosts) => config.with_allowed_hosts(hosts.clone()),
    };
    let hello = Hello::new();
    let mcp: McpService = StreamableHttpService::new(
        move || Ok(hello.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let path: Arc<str> = options.path.into();

    info!("listening on http://{local}{path} (handshake and 2026-07-28 eras)");
    if !local.ip().is_loopback()
        && matches!(options.allowed_hosts, cli::AllowedHosts::LoopbackDefault)
    {
        warn!(
            "listening beyond loopback but only loopback Host headers are accepted; \
             pass --allowed-host (or MCP_ALLOWED_HOSTS) to admit others"
        );
    }

    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let mcp = mcp.clone();
                let path = path.clone();
                let service = service_fn(move |request| {
                    handle(mcp.clone(), path.clone(), request)
                });
                let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!("connection from {peer}: {error}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    info!("shutting down");
    drop(listener);
    mcp_shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!("cannot listen for Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Routes one HTTP request: the MCP path goes to rmcp, `/healthz` answers `ok`, anything else
/// is 404. Logs one line per request: the HTTP method, the JSON-RPC method (never its
/// params) and the status.
async fn handle(
    mut mcp: McpService,
    path: Arc<str>,
    request: Request<Incoming>,
) -> Result<Response<HttpBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let http_method = parts.method.clone();

    if parts.uri.path() != &*path {
        let response = if parts.uri.path() == "/healthz" && parts.method == Method::GET {
            plain(StatusCode::OK, "ok\n")
        } else {
            plain(StatusCode::NOT_FOUND, "not found\n")
        };
        info!(
            "{http_method} {} -> {}",
            parts.uri.path(),
            response.status().as_u16()
        );
        return Ok(response);
    }

    // rmcp reads the whole body anyway; reading it here first lets the log line name the
    // JSON-RPC method.
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let response = if error.is::<http_body_util::LengthLimitError>() {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            } else {
                plain(StatusCode::BAD_REQUEST, "cannot read request body\n")
            };
            info!("{http_method} -> {}", response.status().as_u16());
            return Ok(response);
        }
    };
    let rpc_method = if http_method == Method::POST {
        jsonrpc_method(&body)
    } else {
        String::new()
    };

    let request = Request::from_parts(parts, Full::new(body));
    let response = match tower_service::Service::call(&mut mcp, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if rpc_method.is_empty() {
        info!("{http_method} -> {}", response.status().as_u16());
    } else {
        info!(
            "{http_method} {rpc_method} -> {}",
            response.status().as_u16()
        );
    }
    Ok(response)
}

/// The `method` of a JSON-RPC message, without parsing anything else into memory: `response`
/// for a reply from the client, `batch` for an array, `invalid` for anything unparsable.
fn jsonrpc_method(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        method: Option<String>,
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return "batch".to_owned();
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe {
            method: Some(method),
        }) => method
            .chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect(),
        Ok(Probe { method: None }) => "response".to_owned(),
        Err(_) => "invalid".to_owned(),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())).boxed())
        .expect("static response is valid")
}
