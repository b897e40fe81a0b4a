//! mcp-platform's flags, each with an environment variable, resolved here once.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use jiff::SignedDuration;

/// mcp-platform: the platform API of mcp-runtime. Users log in (password), hold API keys, and
/// belong to teams; every change is written to the platform audit log. State lives in
/// PostgreSQL; the schema is migrated on start.
///
/// The first admin comes from --bootstrap-admin-email with --bootstrap-admin-password-file,
/// created on start when no user with that email exists (there is no default password).
#[derive(Debug, Parser)]
#[command(name = "mcp-platform", version, max_term_width = 100)]
pub struct Config {
    /// Address of the HTTP listener.
    #[arg(long, env = "MCP_PLATFORM_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics` (Prometheus), `/healthz`, `/ready`, with no
    /// authentication (keep it off public networks).
    #[arg(
        long,
        env = "MCP_PLATFORM_ADMIN_LISTEN",
        default_value = "127.0.0.1:9097"
    )]
    pub admin_listen: SocketAddr,
    /// PostgreSQL connection string, e.g. `postgres://mcp@db:5432/platform` or
    /// `host=/run/postgresql user=mcp dbname=platform`. Put a password in the URL only through
    /// the environment variable, never on a command line.
    #[arg(long, env = "MCP_PLATFORM_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// PEM file with the Ed25519 private key (PKCS#8) that signs access tokens (`mcp-runtime
    /// token keygen` writes one). Its public half is what verifiers trust.
    #[arg(long, env = "MCP_PLATFORM_SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// Email of the first admin, created on start if no user has it. Needs
    /// --bootstrap-admin-password-file.
    #[arg(
        long,
        env = "MCP_PLATFORM_BOOTSTRAP_ADMIN_EMAIL",
        requires = "bootstrap_admin_password_file"
    )]
    pub bootstrap_admin_email: Option<String>,
    /// File holding the first admin's password (one line; at least 12 characters). Read once
    /// on start; only its argon2id hash is stored.
    #[arg(
        long,
        env = "MCP_PLATFORM_BOOTSTRAP_ADMIN_PASSWORD_FILE",
        requires = "bootstrap_admin_email"
    )]
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// Lifetime of an access token from `POST /v1/auth/login`, in seconds.
    #[arg(long, env = "MCP_PLATFORM_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u32).range(30..=86_400))]
    pub access_token_ttl_seconds: u32,
    /// Failed logins per (email, client address) allowed before a lockout.
    #[arg(long, env = "MCP_PLATFORM_LOGIN_FREE_FAILURES", default_value_t = 2)]
    pub login_free_failures: u32,
    /// The first lockout, in seconds; each further failure doubles it, up to
    /// --login-lockout-max-seconds.
    #[arg(long, env = "MCP_PLATFORM_LOGIN_LOCKOUT_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_lockout_seconds: u32,
    /// The longest lockout, in seconds.
    #[arg(
        long,
        env = "MCP_PLATFORM_LOGIN_LOCKOUT_MAX_SECONDS",
        default_value_t = 300
    )]
    pub login_lockout_max_seconds: u32,
    /// Take the client address from the right-most `X-Forwarded-For` entry (the one the proxy
    /// in front of this server appended). Only behind such a proxy: otherwise clients choose
    /// their own address and escape the login lockout.
    #[arg(long, env = "MCP_PLATFORM_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MCP_PLATFORM_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Connections served at once.
    #[arg(long, env = "MCP_PLATFORM_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Work with the cluster (KUBECONFIG, ~/.kube/config, or in-cluster): apply each team's
    /// namespace `mcp-team-<slug>` and RoleBindings, and issue agent sessions. Without it the
    /// API runs without a cluster and `POST /v1/runtime/adapter/sessions` answers 503.
    #[arg(long, env = "MCP_PLATFORM_KUBE")]
    pub kube: bool,
    /// With --kube: the Secret written into every team namespace with the platform's public
    /// key (key `token.pub`), which the operator mounts into that namespace's gateways so they
    /// verify the session tokens issued here. Must equal the operator's
    /// `MCP_GATEWAY_TOKEN_KEYS_SECRET`.
    #[arg(
        long,
        env = "MCP_PLATFORM_GATEWAY_TOKEN_KEYS_SECRET",
        default_value = "mcp-gateway-token-keys"
    )]
    pub gateway_token_keys_secret: String,
    /// Longest agent session issued, in seconds (a longer requested TTL is cut to this).
    #[arg(long, env = "MCP_PLATFORM_MAX_SESSION_TTL_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u32).range(60..))]
    pub max_session_ttl_seconds: u32,
    /// Database connections in the pool.
    #[arg(long, env = "MCP_PLATFORM_DB_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=128))]
    pub db_connections: u32,
    /// Sentinel's API, `http://HOST:PORT`: the team analytics routes
    /// (`/v1/teams/{slug}/analytics/...`) read from it, each query confined to the team's
    /// namespace. Without it those routes answer 503. Needs --sentinel-read-key-file.
    #[arg(
        long,
        env = "MCP_PLATFORM_SENTINEL_URL",
        requires = "sentinel_read_key_file"
    )]
    pub sentinel_url: Option<String>,
    /// File holding a read key Sentinel accepts (first line, the key itself). It must see every
    /// team namespace (an unscoped key): the platform confines each query to one team.
    #[arg(
        long,
        env = "MCP_PLATFORM_SENTINEL_READ_KEY_FILE",
        requires = "sentinel_url"
    )]
    pub sentinel_read_key_file: Option<PathBuf>,
    /// How long a Sentinel query may take before the platform answers 503.
    #[arg(long, env = "MCP_PLATFORM_SENTINEL_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=300))]
    pub sentinel_timeout_seconds: u32,
    /// The OIDC issuer whose id tokens `POST /v1/auth/oidc` exchanges for access tokens (its
    /// `iss`, exactly). Needs --oidc-audience and --oidc-jwks-file.
    #[arg(long, env = "MCP_PLATFORM_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks_file"])]
    pub oidc_issuer: Option<String>,
    /// The `aud` id tokens must carry: the platform's client id at the issuer.
    #[arg(long, env = "MCP_PLATFORM_OIDC_AUDIENCE", requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,
    /// The issuer's public keys, a JWKS document (its `jwks_uri`, saved or mounted). Re-read
    /// when it changes, so a key rotation needs no restart.
    #[arg(long, env = "MCP_PLATFORM_OIDC_JWKS_FILE", requires = "oidc_issuer")]
    pub oidc_jwks_file: Option<PathBuf>,
    /// Create a user (role `user`, no password) for a verified email no user has yet. Off: such
    /// a login is refused (an admin creates users first).
    #[arg(
        long,
        env = "MCP_PLATFORM_OIDC_AUTO_PROVISION",
        requires = "oidc_issuer"
    )]
    pub oidc_auto_provision: bool,
}

/// The login lockout: how many failures are free, and the backoff after them.
#[derive(Clone, Copy, Debug)]
pub struct Lockout {
    pub free_failures: u32,
    pub first: SignedDuration,
    pub max: SignedDuration,
}

impl Lockout {
    /// The lockout earned by `failures` consecutive failures (`None`: not locked).
    pub fn after(&self, failures: u32) -> Option<SignedDuration> {
        let over = failures.checked_sub(self.free_failures)?.checked_sub(1)?;
        let factor = 1i64 << over.min(30);
        Some(
            SignedDuration::from_secs(self.first.as_secs().saturating_mul(factor))
                .min(self.max)
                .max(self.first.min(self.max)),
        )
    }
}

impl Config {
    pub fn lockout(&self) -> Lockout {
        Lockout {
            free_failures: self.login_free_failures,
            first: SignedDuration::from_secs(self.login_lockout_seconds.into()),
            max: SignedDuration::from_secs(self.login_lockout_max_seconds.into()),
        }
    }

    pub fn access_token_ttl(&self) -> SignedDuration {
        SignedDuration::from_secs(self.access_token_ttl_seconds.into())
    }

    /// The Sentinel client, when --sentinel-url is given (the key file read once, here).
    pub fn sentinel(&self) -> Result<Option<crate::sentinel::SentinelClient>, String> {
        let (Some(url), Some(file)) = (&self.sentinel_url, &self.sentinel_read_key_file) else {
            return Ok(None);
        };
        let base = crate::sentinel::parse_base_url(url)?;
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("--sentinel-read-key-file {shown}: {e}"))?;
        let key = crate::sentinel::read_key_from(&text, &shown)?;
        Ok(Some(crate::sentinel::SentinelClient::new(
            base,
            key,
            std::time::Duration::from_secs(self.sentinel_timeout_seconds.into()),
        )))
    }

    /// The id-token verifier, when --oidc-issuer is given (the key file read now).
    pub fn oidc(&self) -> Result<Option<crate::oidc::OidcVerifier>, String> {
        let (Some(issuer), Some(audience), Some(file)) =
            (&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks_file)
        else {
            return Ok(None);
        };
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err("--oidc-issuer and --oidc-audience must not be empty".to_owned());
        }
        crate::oidc::OidcVerifier::new(file.clone(), issuer.clone(), audience.clone()).map(Some)
    }

    /// The bootstrap admin's email and password, read from the file (its first line).
    pub fn bootstrap_admin(&self) -> Result<Option<(String, String)>, String> {
        let (Some(email), Some(file)) = (
            &self.bootstrap_admin_email,
            &self.bootstrap_admin_password_file,
        ) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("--bootstrap-admin-password-file {}: {e}", file.display()))?;
        let password = text.lines().next().unwrap_or("").to_owned();
        Ok(Some((email.clone(), password)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lockout_doubles_after_the_free_failures_up_to_the_max() {
        let l = Lockout {
            free_failures: 2,
            first: SignedDuration::from_secs(15),
            max: SignedDuration::from_secs(300),
        };
        let secs = |n| l.after(n).map(|d| d.as_secs());
        assert_eq!(
            (0..=9).map(secs).collect::<Vec<_>>(),
            [
                None,
                None,
                None,
                Some(15),
                Some(30),
                Some(60),
                Some(120),
                Some(240),
                Some(300),
                Some(300)
            ]
        );
        assert_eq!(secs(u32::MAX), Some(300));
    }
}
