//! Who is calling. In `token` mode the identity comes only from a verified session token, in
//! `oauth` mode from a verified access token of the policy's issuer (see [`crate::oauth`]); in
//! both, client identity headers are ignored and stripped. `header` mode trusts identity headers, and is only
//! honoured when the operator of the gateway explicitly allows it (behind an authenticating
//! proxy); `none` admits anonymous callers.

use http::HeaderMap;
use mcp_runtime_policy::{AuthMode, PolicyDocument};
use mcp_runtime_token::{TokenError, TokenKey};

use crate::oauth::{OauthSettings, OauthVerifier};

/// A verified caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub human: Option<String>,
    pub agent: Option<String>,
    pub team: Option<String>,
    pub session: Option<String>,
}

/// Why a request is not authenticated: answered with HTTP 401 and `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing bearer token: send `Authorization: Bearer <session token>`")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("token expired: obtain a new session token")]
    ExpiredToken,
    #[error("this gateway is not configured to verify tokens (no token key)")]
    NoKey,
    #[error("{0}")]
    Misconfigured(String),
    #[error("cannot verify access tokens: the issuer's keys are unavailable ({0})")]
    IssuerUnavailable(String),
    #[error("auth mode `{0}` is not supported by this gateway")]
    Unsupported(AuthMode),
    #[error(
        "identity headers are only trusted when the gateway runs with --trust-identity-headers"
    )]
    HeadersNotTrusted,
}

impl AuthFailure {
    /// The stable reason code in denials and audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_bearer_token",
            AuthFailure::InvalidToken(_) => "invalid_token",
            AuthFailure::ExpiredToken => "token_expired",
            AuthFailure::NoKey
            | AuthFailure::Misconfigured(_)
            | AuthFailure::Unsupported(_)
            | AuthFailure::HeadersNotTrusted => "auth_misconfigured",
            AuthFailure::IssuerUnavailable(_) => "issuer_unavailable",
        }
    }

    /// A fault of the gateway's setup or its issuer, not of the caller: HTTP 503, not 401.
    pub fn is_gateway_fault(&self) -> bool {
        matches!(
            self,
            AuthFailure::NoKey
                | AuthFailure::Misconfigured(_)
                | AuthFailure::IssuerUnavailable(_)
                | AuthFailure::Unsupported(_)
                | AuthFailure::HeadersNotTrusted
        )
    }

    /// RFC 6750 error code for `WWW-Authenticate`.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthFailure::MissingToken => None,
            _ => Some("invalid_token"),
        }
    }
}

/// Settings that come from the gateway's own configuration, never from the policy document.
pub struct AuthConfig {
    pub token_key: Option<TokenKey>,
    pub trust_identity_headers: bool,
    pub oauth: OauthVerifier,
    /// Tokens already verified, so an agent's repeated calls skip the HMAC and claim parsing.
    pub verified: VerifiedTokens,
}

impl AuthConfig {
    pub fn new(
        token_key: Option<TokenKey>,
        trust_identity_headers: bool,
        oauth: OauthSettings,
    ) -> Self {
        Self {
            token_key,
            trust_identity_headers,
            oauth: OauthVerifier::new(oauth),
            verified: VerifiedTokens::default(),
        }
    }
}

/// A bounded cache of verified tokens: token → (audience, caller, expiry). Entries are checked
/// against the clock on every hit, so a cached token still expires to the second.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<String, (String, Caller, i64)>>,
}

/// Entries kept before the cache starts over (tokens are per agent session, so this is many
/// concurrent agents).
const VERIFIED_TOKENS_MAX: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, audience: &str, now: i64) -> Option<Caller> {
        let entries = self.entries.lock().expect("token cache lock");
        let (aud, caller, exp) = entries.get(token)?;
        (aud == audience && now < *exp).then(|| caller.clone())
    }

    fn put(&self, token: &str, audience: &str, caller: &Caller, exp: i64) {
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.clear();
        }
        entries.insert(token.to_owned(), (audience.to_owned(), caller.clone(), exp));
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Authenticates a request under the policy's auth mode.
pub async fn authenticate(
    config: &AuthConfig,
    doc: &PolicyDocument,
    headers: &HeaderMap,
    now: jiff::Timestamp,
) -> Result<Caller, AuthFailure> {
    match doc.auth.mode {
        AuthMode::Token => {
            let key = config.token_key.as_ref().ok_or(AuthFailure::NoKey)?;
            let token = bearer(headers).ok_or(AuthFailure::MissingToken)?;
            let audience = format!("{}/{}", doc.server.namespace, doc.server.name);
            if let Some(caller) = config.verified.get(token, &audience, now.as_second()) {
                return Ok(caller);
            }
            let claims = key.verify(token, &audience, now).map_err(|e| match e {
                TokenError::Expired => AuthFailure::ExpiredToken,
                other => AuthFailure::InvalidToken(other.to_string()),
            })?;
            let caller = Caller {
                human: claims.sub,
                agent: claims.agent,
                team: claims.team,
                session: claims.sid,
            };
            config.verified.put(token, &audience, &caller, claims.exp);
            Ok(caller)
        }
        AuthMode::Header => {
            if !config.trust_identity_headers {
                return Err(AuthFailure::HeadersNotTrusted);
            }
            let names = doc.auth.headers.clone().unwrap_or_default();
            Ok(Caller {
                human: header(headers, &names.human).map(str::to_owned),
                agent: header(headers, &names.agent).map(str::to_owned),
                team: header(headers, &names.team).map(str::to_owned),
                session: header(headers, &names.session).map(str::to_owned),
            })
        }
        AuthMode::Oauth => {
            let issuer = doc.auth.issuer_url.as_deref().ok_or_else(|| {
                AuthFailure::Misconfigured(
                    "oauth mode needs spec.auth.issuerURL on the MCPServer".to_owned(),
                )
            })?;
            let audience = config.oauth.audience(doc.auth.audience.as_deref())?;
            let token = bearer(headers).ok_or(AuthFailure::MissingToken)?;
            // Cached under the mode too, so a session token never passes for an access token.
            let cache_audience = format!("oauth {issuer} {audience}");
            if let Some(caller) = config.verified.get(token, &cache_audience, now.as_second()) {
                return Ok(caller);
            }
            let (caller, exp) = config.oauth.verify(token, issuer, &audience).await?;
            config.verified.put(token, &cache_audience, &caller, exp);
            Ok(caller)
        }
        AuthMode::None => Ok(Caller::default()),
        mode @ AuthMode::Mtls => Err(AuthFailure::Unsupported(mode)),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Identity headers the gateway always strips from client requests (the conventional names).
pub const DEFAULT_IDENTITY_HEADERS: [&str; 4] = [
    "x-mcp-human-id",
    "x-mcp-agent-id",
    "x-mcp-team-id",
    "x-mcp-agent-session",
];

/// Identity header names of the policy (human, agent, team, session): stripped from every
/// client request and set from the verified caller for the upstream.
pub fn identity_header_names(doc: &PolicyDocument) -> [&str; 4] {
    match &doc.auth.headers {
        Some(h) => [&h.human, &h.agent, &h.team, &h.session],
        None => DEFAULT_IDENTITY_HEADERS,
    }
}
