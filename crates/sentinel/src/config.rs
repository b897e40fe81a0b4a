//! mcp-sentinel's flags, each with an environment variable, resolved here once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use jiff::SignedDuration;

use crate::redact::{Mode, Redactor};

/// mcp-sentinel: stores the gateways' audit events (one per decision) and other producers'
/// events, and answers queries over them.
///
/// Serves `POST /v1/ingest/events` (what the gateway's `--audit-ingest-url` ships to),
/// `GET /v1/events`, `/v1/stats`, `/v1/usage`, `/v1/status`, `/v1/openapi.yaml`, `/healthz` and
/// `/ready`; and `/metrics`, `/healthz`, `/ready` on the admin listener.
#[derive(Debug, Parser)]
#[command(name = "mcp-sentinel", version, max_term_width = 100)]
pub struct Config {
    /// What this process does: `all` (ingest, API and, with --kafka-brokers, the processor:
    /// one process for a laptop), or one part of the scale path: `ingest` (HTTP -> Kafka),
    /// `processor` (Kafka -> store), `api` (queries over the store).
    #[arg(long, env = "MCP_SENTINEL_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Kafka bootstrap servers (`host:port,...`). With them, the ingest queues events on Kafka
    /// and a processor stores them; without, the ingest writes to the store itself.
    #[arg(long, env = "MCP_SENTINEL_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The Kafka topic of events.
    #[arg(long, env = "MCP_SENTINEL_KAFKA_TOPIC", default_value = "mcp.events")]
    pub kafka_topic: String,
    /// The processors' consumer group.
    #[arg(
        long,
        env = "MCP_SENTINEL_KAFKA_GROUP",
        default_value = "mcp-sentinel-processor"
    )]
    pub kafka_group: String,
    /// Seconds the ingest waits for Kafka to acknowledge an event before answering 503 (the
    /// gateway keeps the batch and retries).
    #[arg(long, env = "MCP_SENTINEL_KAFKA_TIMEOUT_SECONDS", default_value_t = 10)]
    pub kafka_timeout_seconds: u64,
    /// Events per store insert in the processor.
    #[arg(long, env = "MCP_SENTINEL_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Milliseconds an event may wait in the processor for its batch to fill.
    #[arg(long, env = "MCP_SENTINEL_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// Address of the HTTP listener.
    #[arg(long, env = "MCP_SENTINEL_LISTEN", default_value = "127.0.0.1:8095")]
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics` (Prometheus), `/healthz` (the process runs) and
    /// `/ready` (what the role needs answers). Kept off the API's port so probes and scrapes need
    /// no key.
    #[arg(
        long,
        env = "MCP_SENTINEL_ADMIN_LISTEN",
        default_value = "127.0.0.1:9096"
    )]
    pub admin_listen: SocketAddr,
    /// Where events are kept: `sqlite` (one embedded file, --db) or `clickhouse`
    /// (--clickhouse-url).
    #[arg(long, env = "MCP_SENTINEL_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// The SQLite database file (created if missing).
    #[arg(long, env = "MCP_SENTINEL_DB", default_value = "sentinel.db")]
    pub db: PathBuf,
    /// ClickHouse's HTTP interface, e.g. http://clickhouse:8123.
    #[arg(long, env = "MCP_SENTINEL_CLICKHOUSE_URL")]
    pub clickhouse_url: Option<String>,
    /// The ClickHouse database (created if missing).
    #[arg(
        long,
        env = "MCP_SENTINEL_CLICKHOUSE_DATABASE",
        default_value = "mcp_sentinel"
    )]
    pub clickhouse_database: String,
    /// ClickHouse user (default: the server's default user).
    #[arg(long, env = "MCP_SENTINEL_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,
    /// File holding the ClickHouse user's password.
    #[arg(long, env = "MCP_SENTINEL_CLICKHOUSE_PASSWORD_FILE")]
    pub clickhouse_password_file: Option<PathBuf>,
    /// API keys accepted on the ingest, one a line: the key itself, or `sha256:<hex>` of it,
    /// optionally followed by a scope (`namespaces=a,b teams=x`): such a key may only write
    /// events of those namespaces or teams. Plain keys are hashed when read.
    /// Required by every role that serves HTTP routes with keys (not by `processor`).
    #[arg(long, env = "MCP_SENTINEL_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Also accept producers on the ingest with a JWT (`Authorization: Bearer`) verified against
    /// the public keys of this JWKS file (re-read when it changes), e.g. the cluster's service
    /// account issuer keys. Needs --ingest-jwt-issuer and --ingest-jwt-audience. Such a
    /// producer may write events of the namespaces/teams its token names only.
    #[arg(long, env = "MCP_SENTINEL_INGEST_JWKS_FILE", requires_all = ["ingest_jwt_issuer", "ingest_jwt_audience"])]
    pub ingest_jwks_file: Option<PathBuf>,
    /// The `iss` ingest JWTs must carry.
    #[arg(
        long,
        env = "MCP_SENTINEL_INGEST_JWT_ISSUER",
        requires = "ingest_jwks_file"
    )]
    pub ingest_jwt_issuer: Option<String>,
    /// The `aud` ingest JWTs must carry (e.g. `mcp-sentinel`).
    #[arg(
        long,
        env = "MCP_SENTINEL_INGEST_JWT_AUDIENCE",
        requires = "ingest_jwks_file"
    )]
    pub ingest_jwt_audience: Option<String>,
    /// API keys accepted on the read API, same format; a scoped key sees only the events of
    /// its namespaces or teams. Default: the ingest's keys.
    #[arg(long, env = "MCP_SENTINEL_READ_API_KEYS_FILE")]
    pub read_api_keys_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (the gateway sends at most about 4 MiB; a larger
    /// body is answered 413, and the gateway then halves its batch).
    #[arg(long, env = "MCP_SENTINEL_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request body (then 408).
    #[arg(long, env = "MCP_SENTINEL_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, env = "MCP_SENTINEL_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Days events are kept; older ones are removed hourly. 0 keeps them forever.
    #[arg(long, env = "MCP_SENTINEL_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// What replaces redacted values: `replace` (a `[REDACTED:kind]` marker) or `hash` (a keyed
    /// HMAC tag, so equal values stay countable; needs --redact-key-file).
    #[arg(long, env = "MCP_SENTINEL_REDACT_MODE", value_enum, default_value_t = RedactMode::Replace)]
    pub redact_mode: RedactMode,
    /// The HMAC key of `--redact-mode hash` (the file's bytes).
    #[arg(long, env = "MCP_SENTINEL_REDACT_KEY_FILE")]
    pub redact_key_file: Option<PathBuf>,
    /// More field names whose values are always redacted whole (besides password, token,
    /// api_key, authorization, …). The gateway's identity fields (`human_id`, `agent_id`,
    /// `session_id`, …) are redacted only when named here.
    #[arg(
        long = "redact-field",
        env = "MCP_SENTINEL_REDACT_FIELDS",
        value_delimiter = ','
    )]
    pub redact_fields: Vec<String>,
    /// Export traces to this OpenTelemetry collector: its OTLP/HTTP base URL (spans are posted
    /// as JSON to `<url>/v1/traces`), e.g. http://otel-collector:4318. Sentinel continues the
    /// traces the gateway records (events with a `span_id`) and starts none.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,
    /// `service.name` of Sentinel's spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "mcp-sentinel")]
    pub otlp_service_name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    All,
    Ingest,
    Processor,
    Api,
}

impl Role {
    /// Serves `POST /v1/ingest/events`.
    pub fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    /// Serves the read routes (and runs retention).
    pub fn queries(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Processor => "processor",
            Role::Api => "api",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Clickhouse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RedactMode {
    Replace,
    Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--redact-mode hash needs --redact-key-file (a file with a secret of 32+ bytes)")]
    MissingRedactKey,
    #[error("--redact-key-file {path}: {message}")]
    RedactKey { path: String, message: String },
    #[error(
        "--store clickhouse needs --clickhouse-url (ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123)"
    )]
    MissingClickHouseUrl,
    #[error(
        "--clickhouse-url {0}: write http://HOST:PORT (https is not supported; put ClickHouse on a private network or behind a TLS sidecar)"
    )]
    BadClickHouseUrl(String),
    #[error("--clickhouse-password-file {path}: {source}")]
    ClickHousePassword {
        path: String,
        source: std::io::Error,
    },
    #[error("--role {0} needs --api-keys-file (a file of API keys, one a line)")]
    MissingKeys(&'static str),
    #[error("--role {0} works on Kafka: give --kafka-brokers (or use --role all without Kafka)")]
    RoleNeedsKafka(&'static str),
    #[error(
        "this mcp-sentinel was built without Kafka (cargo feature `kafka`): --kafka-brokers and --role ingest|processor are not available"
    )]
    NoKafkaSupport,
    #[error("opening the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Config {
    /// The ingest's JWT verifier, when configured.
    pub fn ingest_jwt(&self) -> Result<Option<crate::jwt::JwtVerifier>, String> {
        match (
            &self.ingest_jwks_file,
            &self.ingest_jwt_issuer,
            &self.ingest_jwt_audience,
        ) {
            (Some(path), Some(issuer), Some(audience)) => Ok(Some(
                crate::jwt::JwtVerifier::new(path.clone(), issuer.clone(), audience.clone())
                    .map_err(|e| format!("--ingest-jwks-file: {e}"))?,
            )),
            _ => Ok(None),
        }
    }

    /// The ingest's and the read routes' keys; empty sets for a role that serves neither.
    pub fn keys(
        &self,
    ) -> Result<(crate::keys::ApiKeys, crate::keys::ApiKeys), Box<dyn std::error::Error>> {
        use crate::keys::ApiKeys;
        let ingest = match (&self.api_keys_file, self.role) {
            (Some(path), _) => ApiKeys::load(path)?,
            (None, Role::Processor) => ApiKeys::default(),
            (None, role) => return Err(ConfigError::MissingKeys(role.name()).into()),
        };
        let read = match &self.read_api_keys_file {
            Some(path) => ApiKeys::load(path)?,
            None => ingest.clone(),
        };
        Ok((ingest, read))
    }

    /// The Kafka settings, when Kafka is configured; refuses a role that needs Kafka without
    /// it, and Kafka in a build without it.
    #[cfg(feature = "kafka")]
    pub fn kafka(&self) -> Result<Option<crate::kafka::KafkaConfig>, ConfigError> {
        match (&self.kafka_brokers, self.role) {
            (None, Role::Ingest | Role::Processor) => {
                Err(ConfigError::RoleNeedsKafka(self.role.name()))
            }
            (None, _) => Ok(None),
            (Some(brokers), _) => Ok(Some(crate::kafka::KafkaConfig {
                brokers: brokers.clone(),
                topic: self.kafka_topic.clone(),
                group: self.kafka_group.clone(),
                delivery_timeout: Duration::from_secs(self.kafka_timeout_seconds.max(1)),
                batch_size: self.batch_size.max(1),
                flush_interval: Duration::from_millis(self.flush_interval_ms.max(10)),
            })),
        }
    }

    #[cfg(not(feature = "kafka"))]
    pub fn kafka(&self) -> Result<Option<std::convert::Infallible>, ConfigError> {
        match (&self.kafka_brokers, self.role) {
            (Some(_), _) | (None, Role::Ingest | Role::Processor) => {
                Err(ConfigError::NoKafkaSupport)
            }
            (None, _) => Ok(None),
        }
    }

    /// The store the flags name, opened (a ClickHouse database and table are created when
    /// missing, a SQLite file created or migrated).
    pub fn open_store(&self) -> Result<std::sync::Arc<dyn crate::store::Store>, ConfigError> {
        Ok(match self.store {
            StoreKind::Sqlite => {
                std::sync::Arc::new(crate::sqlite::SqliteStore::open(&self.db).map_err(|e| {
                    crate::store::StoreError(format!("{}: {}", self.db.display(), e.0))
                })?)
            }
            StoreKind::Clickhouse => {
                let url = self
                    .clickhouse_url
                    .as_deref()
                    .ok_or(ConfigError::MissingClickHouseUrl)?;
                let address = url
                    .strip_prefix("http://")
                    .map(|rest| rest.trim_end_matches('/'))
                    .filter(|a| !a.is_empty() && !a.contains('/'))
                    .ok_or_else(|| ConfigError::BadClickHouseUrl(url.to_owned()))?;
                let password = match &self.clickhouse_password_file {
                    None => None,
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|source| ConfigError::ClickHousePassword {
                                path: path.display().to_string(),
                                source,
                            })?
                            .trim()
                            .to_owned(),
                    ),
                };
                std::sync::Arc::new(crate::clickhouse::ClickHouseStore::open(
                    crate::clickhouse::ClickHouseConfig {
                        address: address.to_owned(),
                        database: self.clickhouse_database.clone(),
                        user: self.clickhouse_user.clone(),
                        password,
                        timeout: Duration::from_secs(30),
                    },
                )?)
            }
        })
    }

    pub fn redactor(&self) -> Result<Redactor, ConfigError> {
        let mode = match (self.redact_mode, &self.redact_key_file) {
            (RedactMode::Replace, _) => Mode::Replace,
            (RedactMode::Hash, None) => return Err(ConfigError::MissingRedactKey),
            (RedactMode::Hash, Some(path)) => {
                let key = std::fs::read(path).map_err(|e| ConfigError::RedactKey {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                if key.len() < 32 {
                    return Err(ConfigError::RedactKey {
                        path: path.display().to_string(),
                        message: format!(
                            "{} bytes; use at least 32 (e.g. head -c 32 /dev/urandom > FILE)",
                            key.len()
                        ),
                    });
                }
                Mode::Hash { key }
            }
        };
        Ok(Redactor::new(mode, &self.redact_fields))
    }

    pub fn retention(&self) -> Option<SignedDuration> {
        (self.retention_days > 0)
            .then(|| SignedDuration::from_hours(i64::from(self.retention_days) * 24))
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_processor_runs_without_api_keys() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(std::iter::once("mcp-sentinel").chain(args.iter().copied()))
                .unwrap()
        };
        let (ingest, read) = parse(&["--role", "processor"]).keys().unwrap();
        assert!(!ingest.accepts(b"") && !read.accepts(b"anything"));
        for role in ["all", "ingest", "api"] {
            let e = parse(&["--role", role]).keys().unwrap_err().to_string();
            assert!(e.contains("needs --api-keys-file"), "{role}: {e}");
        }
        let e = parse(&["--role", "ingest"])
            .kafka()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kafka-brokers"), "{e}");
        let e = parse(&["--store", "clickhouse"])
            .open_store()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--clickhouse-url"), "{e}");
        let e = parse(&[
            "--store",
            "clickhouse",
            "--clickhouse-url",
            "https://x:8443",
        ])
        .open_store()
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("http://HOST:PORT"), "{e}");
    }
}
