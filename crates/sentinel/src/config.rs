//! mcp-sentinel's flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// mcp-sentinel: stores the gateway's audit events (one per decision) and answers queries over
/// them.
///
/// Serves `POST /v1/ingest/events` (what the gateway's `--audit-ingest-url` ships to),
/// `GET /v1/events`, `GET /v1/stats` and `/healthz`, over an embedded SQLite database; and
/// `/metrics`, `/healthz`, `/ready` on the admin listener.
#[derive(Debug, Parser)]
#[command(name = "mcp-sentinel", version, max_term_width = 100)]
pub struct Config {
    /// Address of the HTTP listener.
    #[arg(long, env = "MCP_SENTINEL_LISTEN", default_value = "127.0.0.1:8095")]
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics` (Prometheus), `/healthz` (the process runs) and
    /// `/ready` (the store answers). Kept off the API's port so probes and scrapes need no key.
    #[arg(
        long,
        env = "MCP_SENTINEL_ADMIN_LISTEN",
        default_value = "127.0.0.1:9096"
    )]
    pub admin_listen: SocketAddr,
    /// The SQLite database file (created if missing).
    #[arg(long, env = "MCP_SENTINEL_DB", default_value = "sentinel.db")]
    pub db: PathBuf,
    /// API keys accepted on the ingest, one a line: the key itself, or `sha256:<hex>` of it.
    /// Plain keys are hashed when read; only hashes are kept.
    #[arg(long, env = "MCP_SENTINEL_API_KEYS_FILE")]
    pub api_keys_file: PathBuf,
    /// API keys accepted on the read API (`/v1/events`, `/v1/stats`), same format; default: the
    /// ingest's keys.
    #[arg(long, env = "MCP_SENTINEL_READ_API_KEYS_FILE")]
    pub read_api_keys_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (the gateway sends at most about 4 MiB; a larger
    /// body is answered 413, and the gateway then halves its batch).
    #[arg(long, env = "MCP_SENTINEL_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
}
