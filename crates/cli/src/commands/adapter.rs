//! `mcp-runtime adapter stdio|proxy`: the agent adapters of `mcp-runtime-adapter`, configured
//! from flags and the environment.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mcp_runtime_adapter::credential::{
    BoxFuture, Credential, CredentialError, CredentialSource, Credentials, RefreshOptions,
    StaticToken, TokenFile,
};
use mcp_runtime_adapter::upstream::{Upstream, UpstreamConfig};
use mcp_runtime_adapter::{proxy, stdio};
use tracing_subscriber::filter::LevelFilter;

use crate::cli::{
    AdapterConnection, AdapterProxyArgs, AdapterStdioArgs, LogLevel, PlatformSessionArgs,
};
use crate::commands::auth::logged_in;
use crate::error::{CliError, Result};
use crate::platform::{PlatformClient, PlatformError};
use crate::profiles::StoredCredential;

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
    if c.platform.platform_session {
        let source = Arc::new(PlatformSession::new(&c.platform)?);
        let credentials = match Credentials::start(source.clone(), RefreshOptions::default()).await
        {
            Ok(credentials) => credentials,
            Err(e) if source.refused_login.load(Ordering::Relaxed) => {
                return Err(CliError::not_authenticated(
                    format!("cannot obtain a session from the platform: {e}"),
                    format!(
                        "log in again: mcp-runtime auth login --profile {}",
                        source.profile
                    ),
                ));
            }
            Err(e) => {
                return Err(CliError::Invalid(format!(
                    "cannot obtain a session from the platform: {e}"
                )));
            }
        };
        let upstream = Upstream::new(config, credentials)
            .map_err(|e| CliError::Invalid(format!("--ca-file: {e}")))?;
        return Ok(Arc::new(upstream));
    }
    let source: Arc<dyn CredentialSource> = match (&c.token_file, std::env::var(TOKEN_ENV)) {
        (Some(path), _) => Arc::new(TokenFile::new(path)),
        (None, Ok(token)) => Arc::new(
            StaticToken::new(&token, format!("${TOKEN_ENV}"))
                .map_err(|e| CliError::Invalid(e.to_string()))?,
        ),
        (None, Err(_)) => {
            return Err(CliError::hint(
                "no credential: give --token-file FILE (or $MCP_RUNTIME_TOKEN_FILE), the token in $MCP_RUNTIME_TOKEN, or --platform-session",
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

/// Agent sessions issued by the platform (`POST /v1/runtime/adapter/sessions`) with the login
/// profile's credential: each fetch asks for the session and returns its token with the
/// session's expiry, so [`Credentials`] asks again shortly before it runs out (the platform
/// re-issues the same MCPAgentSession with a later expiry once little time is left).
struct PlatformSession {
    client: PlatformClient,
    profile: String,
    request: serde_json::Value,
    what: String,
    /// The platform refused the profile's credential (401): the fix is a new login.
    refused_login: AtomicBool,
}

impl PlatformSession {
    /// Needs the tokio runtime entered (the HTTP client's pool lives on it).
    fn new(args: &PlatformSessionArgs) -> Result<Self> {
        let (Some(server), Some(agent)) = (&args.server, &args.agent) else {
            return Err(CliError::hint(
                "--platform-session needs --server and --agent",
                "name the MCPServer and your agent's id as the grants name them",
            ));
        };
        let session = logged_in(args.profile.as_deref())?;
        if let Some(StoredCredential::AccessToken { expires_at, .. }) = &session.profile.credential
        {
            tracing::warn!(
                profile = %session.name,
                until = %expires_at.round(jiff::Unit::Second).unwrap_or(*expires_at),
                "the profile holds an access token from a password login: sessions can be renewed only until it expires; log in with an API key (auth login --api-key-stdin) for a long-running adapter"
            );
        }
        let client = session.client()?;
        let mut request = serde_json::json!({"server": server, "agent": agent});
        if let Some(team) = &args.team {
            request["team"] = team.clone().into();
        }
        if let Some(trust) = args.trust {
            request["requested_trust"] = trust.as_str().into();
        }
        if let Some(ttl) = args.ttl {
            request["ttl_seconds"] = ttl.into();
        }
        Ok(Self {
            what: format!(
                "platform session for server {server}, agent {agent} from {} (profile {})",
                client.base(),
                session.name
            ),
            client,
            profile: session.name,
            request,
            refused_login: AtomicBool::new(false),
        })
    }

    async fn issue(&self) -> std::result::Result<Credential, CredentialError> {
        let answer = self
            .client
            .post("/v1/runtime/adapter/sessions", &self.request)
            .await
            .map_err(|e| {
                if e.is_unauthenticated() {
                    self.refused_login.store(true, Ordering::Relaxed);
                    return CredentialError::Source(format!(
                        "the platform refused the credential of profile `{}`: {} (log in again: mcp-runtime auth login --profile {})",
                        self.profile,
                        e.message(),
                        self.profile
                    ));
                }
                match e {
                    PlatformError::Refused { status, message, .. } => CredentialError::Source(
                        format!("the platform refused (HTTP {}): {message}", status.as_u16()),
                    ),
                    other => CredentialError::Source(other.to_string()),
                }
            })?;
        let bad = |what: &str| {
            CredentialError::Source(format!(
                "unexpected answer from {}: {what}",
                self.client.base()
            ))
        };
        let token = answer["token"].as_str().ok_or_else(|| bad("no token"))?;
        let expires_at: jiff::Timestamp = answer["expires_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no expires_at"))?;
        let credential = Credential::bearer(token)?;
        tracing::info!(
            session = %answer["name"].as_str().unwrap_or("?"),
            namespace = %answer["namespace"].as_str().unwrap_or("?"),
            trust = %answer["consented_trust"].as_str().unwrap_or("?"),
            reused = answer["reused"].as_bool().unwrap_or(false),
            expires_at = %expires_at,
            "platform session issued"
        );
        Ok(Credential::new(
            credential.authorization().clone(),
            Some(expires_at),
        ))
    }
}

impl CredentialSource for PlatformSession {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn fetch(&self) -> BoxFuture<'_, std::result::Result<Credential, CredentialError>> {
        Box::pin(self.issue())
    }
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
