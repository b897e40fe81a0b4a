//! The gateway's configuration: flags, each with an environment variable, resolved once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::kube_source::{ConfigMapRef, DEFAULT_KEY, KubeAccess};
use crate::oauth::{ClaimNames, OauthSettings};

/// mcp-gateway: governs every request to one MCP server.
///
/// Proxies MCP Streamable HTTP (JSON and SSE, both protocol eras) to the upstream server,
/// authenticates callers, admits each request (live session, a grant), decides each use of a
/// tool, prompt or resource with the server's rendered policy, filters every list (refusing
/// answers it cannot inspect), and records one audit event per decision.
#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version, max_term_width = 100)]
#[command(group = clap::ArgGroup::new("policy_source").required(true).multiple(false))]
pub struct Config {
    /// Address of the MCP listener.
    #[arg(long, env = "MCP_GATEWAY_LISTEN", default_value = "0.0.0.0:8091")]
    pub listen: SocketAddr,
    /// Address of /healthz, /ready, /metrics and /config/status.
    #[arg(long, env = "MCP_GATEWAY_ADMIN_LISTEN", default_value = "0.0.0.0:9103")]
    pub admin_listen: SocketAddr,
    /// The MCP server behind the gateway.
    #[arg(long, env = "UPSTREAM_URL", default_value = "http://127.0.0.1:8088")]
    pub upstream: http::Uri,
    /// Rendered policy document (JSON); reloaded within 250 ms of a change.
    #[arg(long, env = "POLICY_FILE", group = "policy_source")]
    pub policy_file: Option<PathBuf>,
    /// Read the policy from this ConfigMap (`<namespace>/<name>`) through the Kubernetes API,
    /// following every change as it happens (a watch); needs get, list and watch on it.
    #[arg(long, env = "MCP_GATEWAY_POLICY_CONFIGMAP", group = "policy_source")]
    pub policy_configmap: Option<ConfigMapRef>,
    /// Key of the policy document in that ConfigMap.
    #[arg(long, env = "MCP_GATEWAY_POLICY_CONFIGMAP_KEY", default_value = DEFAULT_KEY)]
    pub policy_configmap_key: String,
    /// Kubernetes API server; default: the pod's cluster (KUBERNETES_SERVICE_HOST/PORT).
    #[arg(long, env = "MCP_GATEWAY_KUBE_API_URL")]
    pub kube_api_url: Option<http::Uri>,
    /// Bearer token for the Kubernetes API (re-read before every request).
    #[arg(
        long,
        env = "MCP_GATEWAY_KUBE_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub kube_token_file: PathBuf,
    /// CA certificate of the Kubernetes API server.
    #[arg(
        long,
        env = "MCP_GATEWAY_KUBE_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub kube_ca_file: PathBuf,
    /// Public keys that verify session tokens: one or more Ed25519 keys in PEM
    /// (`-----BEGIN PUBLIC KEY-----` blocks) in one file; re-read while running, so keys rotate
    /// without a restart.
    #[arg(long, env = "MCP_GATEWAY_TOKEN_PUBLIC_KEYS_FILE")]
    pub token_public_keys_file: Option<PathBuf>,
    /// Replaced by --token-public-keys-file; kept only to refuse it with a migration hint.
    #[arg(long, env = "MCP_GATEWAY_TOKEN_KEY_FILE", hide = true)]
    pub token_key_file: Option<PathBuf>,
    /// oauth mode: the public URL of this MCP endpoint (RFC 9728 `resource`; the audience tokens
    /// must carry when the MCPServer names none). Default: derived from each request's host.
    #[arg(long, env = "MCP_GATEWAY_OAUTH_RESOURCE")]
    pub oauth_resource: Option<http::Uri>,
    /// oauth mode: a CA trusted for the issuer besides the system's roots (PEM).
    #[arg(long, env = "MCP_GATEWAY_OAUTH_CA_FILE")]
    pub oauth_ca_file: Option<PathBuf>,
    /// oauth mode: the claim naming the human.
    #[arg(long, env = "MCP_GATEWAY_OAUTH_HUMAN_CLAIM", default_value = "sub")]
    pub oauth_human_claim: String,
    /// oauth mode: claims naming the agent (the OAuth client), first present wins.
    #[arg(
        long,
        env = "MCP_GATEWAY_OAUTH_AGENT_CLAIMS",
        value_delimiter = ',',
        default_value = "client_id,azp"
    )]
    pub oauth_agent_claims: Vec<String>,
    /// oauth mode: the claim naming the team (none by default).
    #[arg(long, env = "MCP_GATEWAY_OAUTH_TEAM_CLAIM")]
    pub oauth_team_claim: Option<String>,
    /// oauth mode: the claim naming the MCPAgentSession (none by default).
    #[arg(long, env = "MCP_GATEWAY_OAUTH_SESSION_CLAIM")]
    pub oauth_session_claim: Option<String>,
    /// Trust identity headers when the policy's auth mode is `header`. Only behind a proxy that
    /// authenticates callers and overwrites those headers.
    #[arg(long, env = "MCP_GATEWAY_TRUST_IDENTITY_HEADERS")]
    pub trust_identity_headers: bool,
    /// Request threads: each serves the connections dealt to it, with its own upstream pool.
    /// Default: one per CPU the process may use.
    #[arg(long, env = "MCP_GATEWAY_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MCP_GATEWAY_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest answer the gateway buffers to filter (a JSON answer to a list request, or one
    /// event of a stream), in bytes; a larger one is refused, never passed unfiltered.
    #[arg(long, env = "MCP_GATEWAY_MAX_RESPONSE_BYTES", default_value_t = 16 << 20)]
    pub max_response_bytes: usize,
    /// Time allowed for a request body to arrive once its headers have, in seconds.
    #[arg(long, env = "MCP_GATEWAY_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Connections the MCP listener holds open at once; more wait to be accepted.
    #[arg(long, env = "MCP_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections the admin listener holds open at once; more wait to be accepted.
    #[arg(long, env = "MCP_GATEWAY_ADMIN_MAX_CONNECTIONS", default_value_t = 32)]
    pub admin_max_connections: usize,
    /// Time allowed for the upstream's response headers, in seconds.
    #[arg(
        long,
        env = "MCP_GATEWAY_UPSTREAM_TIMEOUT_SECONDS",
        default_value_t = 300
    )]
    pub upstream_timeout_seconds: u64,
    /// Path prefix removed before forwarding (on a segment boundary).
    #[arg(long, env = "STRIP_PREFIX")]
    pub strip_prefix: Option<String>,
    /// Append audit events to this JSON-lines file.
    #[arg(long, env = "MCP_GATEWAY_AUDIT_FILE")]
    pub audit_file: Option<PathBuf>,
    /// Ship audit events to this HTTP ingest endpoint (batched, spooled on disk while it is down).
    #[arg(long, env = "ANALYTICS_INGEST_URL")]
    pub audit_ingest_url: Option<http::Uri>,
    /// A private CA trusted for an https ingest, besides the system's roots (PEM).
    #[arg(long, env = "MCP_GATEWAY_AUDIT_CA_FILE")]
    pub audit_ca_file: Option<PathBuf>,
    /// File holding the ingest API key (sent as `x-api-key`).
    #[arg(long, env = "MCP_GATEWAY_AUDIT_API_KEY_FILE")]
    pub audit_api_key_file: Option<PathBuf>,
    /// Directory of the audit spool.
    #[arg(
        long,
        env = "MCP_GATEWAY_AUDIT_SPOOL_DIR",
        default_value = "/tmp/mcp-gateway-spool"
    )]
    pub audit_spool_dir: PathBuf,
    /// Largest audit spool on disk, in bytes.
    #[arg(long, env = "MCP_GATEWAY_AUDIT_SPOOL_MAX_BYTES", default_value_t = 256 << 20)]
    pub audit_spool_max_bytes: u64,
    /// `source` of audit events; default `<server>-gateway`.
    #[arg(long, env = "ANALYTICS_SOURCE")]
    pub audit_source: Option<String>,
    /// Record tool-call arguments in audit events (off: arguments may hold secrets).
    #[arg(long, env = "MCP_GATEWAY_AUDIT_ARGUMENTS")]
    pub audit_arguments: bool,
    /// Export traces to this OpenTelemetry collector: its OTLP/HTTP base URL (spans are posted
    /// as JSON to `<url>/v1/traces`), e.g. http://otel-collector:4318. Without it no span is
    /// recorded (an incoming trace id still reaches the audit events).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,
    /// `service.name` of the gateway's spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "mcp-gateway")]
    pub otlp_service_name: String,
    /// Share of requests without a `traceparent` that start a trace, from 0 (none: only callers
    /// that trace are traced) to 1 (all). A request with a `traceparent` follows its sampled
    /// flag.
    #[arg(
        long,
        env = "MCP_GATEWAY_TRACE_SAMPLE_RATIO",
        default_value_t = 0.0,
        value_parser = sample_ratio
    )]
    pub trace_sample_ratio: f64,
}

fn sample_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a share from 0 to 1 (e.g. 0.01)")),
    }
}

/// Where the policy comes from.
pub enum PolicySource {
    File(PathBuf),
    ConfigMap(KubeAccess, ConfigMapRef),
}

impl Config {
    pub fn oauth(&self) -> OauthSettings {
        OauthSettings {
            resource: self.oauth_resource.clone(),
            ca_file: self.oauth_ca_file.clone(),
            claims: ClaimNames {
                human: self.oauth_human_claim.clone(),
                agent: self.oauth_agent_claims.clone(),
                team: self.oauth_team_claim.clone(),
                session: self.oauth_session_claim.clone(),
            },
        }
    }

    pub fn policy_source(&self) -> Result<PolicySource, String> {
        if let Some(path) = &self.policy_file {
            return Ok(PolicySource::File(path.clone()));
        }
        let Some(config_map) = &self.policy_configmap else {
            return Err("give --policy-file or --policy-configmap".to_owned());
        };
        let api_url = match &self.kube_api_url {
            Some(url) => url.clone(),
            None => KubeAccess::in_cluster_url()?,
        };
        Ok(PolicySource::ConfigMap(
            KubeAccess {
                api_url,
                token_file: self.kube_token_file.clone(),
                ca_file: self.kube_ca_file.clone(),
            },
            ConfigMapRef {
                key: self.policy_configmap_key.clone(),
                ..config_map.clone()
            },
        ))
    }

    pub fn request_threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        }
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_seconds)
    }
}
