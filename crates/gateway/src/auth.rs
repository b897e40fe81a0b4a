//! Who is calling. In `token` mode the identity comes only from a verified session token (EdDSA,
//! checked against the gateway's public keys, see [`crate::token_keys`]), in `oauth` mode from a
//! verified access token of the policy's issuer (see [`crate::oauth`]); in both, client identity
//! headers are ignored and stripped, and an `Authorization` header sent twice is refused.
//! `header` mode trusts identity headers, and is only honoured when the operator of the gateway
//! explicitly allows it (behind an authenticating proxy); each identity header must then come
//! once, with one value. `none` admits anonymous callers.

use http::HeaderMap;
use mcp_runtime_policy::{AuthMode, PolicyDocument};
use mcp_runtime_token::TokenError;

use crate::oauth::{OauthSettings, OauthVerifier};
use crate::token_keys::TokenKeys;

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
    #[error("this gateway is not configured to verify tokens (no --token-public-keys)")]
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
    #[error(
        "header `{0}` is sent more than once (repeated, as a comma-separated list, or also \
         spelled with `_` for `-`): send it exactly once, with one value"
    )]
    DuplicateHeader(String),
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
            AuthFailure::DuplicateHeader(_) => "duplicate_header",
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
            AuthFailure::DuplicateHeader(_) => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Settings that come from the gateway's own configuration, never from the policy document.
pub struct AuthConfig {
    /// Public keys of the session-token issuer; follow `--token-public-keys`.
    pub token_keys: TokenKeys,
    pub trust_identity_headers: bool,
    pub oauth: OauthVerifier,
    /// Tokens already verified, so an agent's repeated calls skip the signature check and claim
    /// parsing.
    pub verified: VerifiedTokens,
}

impl AuthConfig {
    pub fn new(token_keys: TokenKeys, trust_identity_headers: bool, oauth: OauthSettings) -> Self {
        Self {
            token_keys,
            trust_identity_headers,
            oauth: OauthVerifier::new(oauth),
            verified: VerifiedTokens::default(),
        }
    }
}

/// A bounded cache of verified tokens: token → entry. Entries are checked against the clock and
/// the current keys on every hit, so a cached token still expires to the second and stops being
/// accepted as soon as the key that signed it is removed.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<String, Verified>>,
}

struct Verified {
    audience: String,
    caller: Caller,
    exp: i64,
    /// The session-token key that signed it (none for oauth access tokens), and the generation
    /// of the key set it was last known to be in.
    kid: Option<(String, u64)>,
}

/// Entries kept before the cache starts over (tokens are per agent session, so this is many
/// concurrent agents).
const VERIFIED_TOKENS_MAX: usize = 10_000;

impl VerifiedTokens {
    /// A cached caller for `token`. A session token's key must still be trusted: under the
    /// same key-set generation that is known; after a change the key is looked up in `keys`
    /// (a removed key makes it a miss).
    fn get(
        &self,
        token: &str,
        audience: &str,
        now: i64,
        keys: Option<&TokenKeys>,
    ) -> Option<Caller> {
        let mut entries = self.entries.lock().expect("token cache lock");
        let e = entries.get_mut(token)?;
        if e.audience != audience || now >= e.exp {
            return None;
        }
        if let Some((kid, generation)) = &mut e.kid {
            let keys = keys?;
            let current = keys.generation();
            if *generation != current {
                if !keys.current().is_some_and(|k| k.contains(kid)) {
                    return None;
                }
                *generation = current;
            }
        }
        Some(e.caller.clone())
    }

    fn put(
        &self,
        token: &str,
        audience: &str,
        caller: &Caller,
        exp: i64,
        kid: Option<(String, u64)>,
    ) {
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.clear();
        }
        entries.insert(
            token.to_owned(),
            Verified {
                audience: audience.to_owned(),
                caller: caller.clone(),
                exp,
                kid,
            },
        );
    }
}

/// The value of header `name`, refused when it is sent more than once.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthFailure> {
    let first = mcp_runtime_wire::era::sent_once(headers, name)
        .map_err(|_| AuthFailure::DuplicateHeader(name.to_owned()))?;
    Ok(first
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty()))
}

/// The one value of identity header `name` in header mode. Refused when sent more than once
/// under any spelling [`same_header_name`] equates (`x-mcp-human-id` and `x_mcp_human_id`), or
/// as a list (a comma: an intermediary joined repeated lines, RFC 9110 section 5.3).
fn identity_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthFailure> {
    let spellings = headers
        .keys()
        .filter(|n| same_header_name(n.as_str(), name))
        .map(|n| headers.get_all(n).iter().count())
        .sum::<usize>();
    if spellings > 1 {
        return Err(AuthFailure::DuplicateHeader(name.to_owned()));
    }
    let value = single_header(headers, name)?;
    if value.is_some_and(|v| v.contains(',')) {
        return Err(AuthFailure::DuplicateHeader(name.to_owned()));
    }
    Ok(value)
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
            // Read before the keys, so a rotation in between shows as a newer generation.
            let generation = config.token_keys.generation();
            if generation == 0 {
                return Err(AuthFailure::NoKey);
            }
            let token = bearer(headers)?.ok_or(AuthFailure::MissingToken)?;
            let audience = format!("{}/{}", doc.server.namespace, doc.server.name);
            if let Some(caller) =
                config
                    .verified
                    .get(token, &audience, now.as_second(), Some(&config.token_keys))
            {
                return Ok(caller);
            }
            let keys = config.token_keys.current().ok_or(AuthFailure::NoKey)?;
            let verified = keys.verify(token, &audience, now).map_err(|e| match e {
                TokenError::Expired => AuthFailure::ExpiredToken,
                other => AuthFailure::InvalidToken(other.to_string()),
            })?;
            let claims = verified.claims;
            let caller = Caller {
                human: claims.sub,
                agent: claims.agent,
                team: claims.team,
                session: claims.sid,
            };
            config.verified.put(
                token,
                &audience,
                &caller,
                claims.exp,
                Some((verified.kid, generation)),
            );
            Ok(caller)
        }
        AuthMode::Header => {
            if !config.trust_identity_headers {
                return Err(AuthFailure::HeadersNotTrusted);
            }
            let names = doc.auth.headers.clone().unwrap_or_default();
            let value = |name: &str| identity_header(headers, name).map(|v| v.map(str::to_owned));
            Ok(Caller {
                human: value(&names.human)?,
                agent: value(&names.agent)?,
                team: value(&names.team)?,
                session: value(&names.session)?,
            })
        }
        AuthMode::Oauth => {
            let issuer = doc.auth.issuer_url.as_deref().ok_or_else(|| {
                AuthFailure::Misconfigured(
                    "oauth mode needs spec.auth.issuerURL on the MCPServer".to_owned(),
                )
            })?;
            let audience = config.oauth.audience(doc.auth.audience.as_deref())?;
            let token = bearer(headers)?.ok_or(AuthFailure::MissingToken)?;
            // Cached under the mode too, so a session token never passes for an access token.
            let cache_audience = format!("oauth {issuer} {audience}");
            if let Some(caller) = config
                .verified
                .get(token, &cache_audience, now.as_second(), None)
            {
                return Ok(caller);
            }
            let (caller, exp) = config.oauth.verify(token, issuer, &audience).await?;
            config
                .verified
                .put(token, &cache_audience, &caller, exp, None);
            Ok(caller)
        }
        AuthMode::None => Ok(Caller::default()),
        mode @ AuthMode::Mtls => Err(AuthFailure::Unsupported(mode)),
    }
}

/// The bearer token; `None` when there is none, an error when `Authorization` comes twice.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthFailure> {
    let Some(value) = single_header(headers, "authorization")? else {
        return Ok(None);
    };
    Ok(value.split_once(' ').and_then(|(scheme, token)| {
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }))
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

/// Whether two header names are the same identity header: equal ignoring ASCII case and treating
/// `_` and `-` as one character (servers behind CGI-style frameworks see both as `HTTP_X_..`).
fn same_header_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Whether a client's header `name` is an identity header of `doc` or one of
/// [`DEFAULT_IDENTITY_HEADERS`], under any spelling (case, `_` for `-`): such headers are stripped
/// from every client request before the verified identity is set.
pub fn is_identity_header(name: &str, doc: &PolicyDocument) -> bool {
    identity_header_names(doc)
        .iter()
        .chain(&DEFAULT_IDENTITY_HEADERS)
        .any(|known| same_header_name(name, known))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use mcp_runtime_policy::IdentityHeaders;
    use mcp_runtime_token::{Identity, SigningKey};

    fn doc(mode: AuthMode, headers: Option<[&str; 4]>) -> PolicyDocument {
        let mut doc = PolicyDocument::new(mcp_runtime_policy::ServerRef {
            name: "hello".into(),
            namespace: "demo".into(),
            ..Default::default()
        });
        doc.auth = mcp_runtime_policy::AuthSettings {
            mode,
            headers: headers.map(|[human, agent, team, session]| IdentityHeaders {
                human: human.into(),
                agent: agent.into(),
                team: team.into(),
                session: session.into(),
            }),
            ..Default::default()
        };
        doc
    }

    fn config(keys: TokenKeys, trust: bool) -> AuthConfig {
        AuthConfig::new(
            keys,
            trust,
            OauthSettings {
                resource: None,
                ca_file: None,
                claims: crate::oauth::ClaimNames::default(),
            },
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn run(
        config: &AuthConfig,
        doc: &PolicyDocument,
        h: &HeaderMap,
    ) -> Result<Caller, AuthFailure> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(authenticate(config, doc, h, jiff::Timestamp::now()))
    }

    #[test]
    fn identity_headers_match_by_case_and_either_separator() {
        let default = doc(AuthMode::Header, None);
        for name in [
            "x-mcp-human-id",
            "X-MCP-Human-Id",
            "x_mcp_human_id",
            "X_Mcp-Agent_ID",
            "x-mcp-agent-session",
        ] {
            assert!(is_identity_header(name, &default), "{name}");
        }
        for name in [
            "x-mcp-human-idx",
            "x-mcp-human",
            "xmcphumanid",
            "authorization",
        ] {
            assert!(!is_identity_header(name, &default), "{name}");
        }
        let custom = doc(
            AuthMode::Header,
            Some(["x-user", "x_agent", "x-team", "x-session"]),
        );
        for name in ["X_USER", "x-agent", "x_team", "x-mcp-human-id"] {
            assert!(is_identity_header(name, &custom), "{name}");
        }
        assert!(!is_identity_header("x-users", &custom));
    }

    #[test]
    fn header_mode_refuses_repeated_listed_and_respelled_identity_headers() {
        let config = config(TokenKeys::default(), true);
        let doc = doc(AuthMode::Header, None);
        let ok = run(&config, &doc, &headers(&[("x-mcp-human-id", "alice")])).unwrap();
        assert_eq!(ok.human.as_deref(), Some("alice"));
        for bad in [
            &[("x-mcp-human-id", "alice"), ("x-mcp-human-id", "mallory")][..],
            &[("x-mcp-human-id", "mallory, alice")],
            &[("x-mcp-human-id", "alice"), ("x_mcp_human_id", "mallory")],
            &[("x-mcp-agent-session", "s1"), ("X_MCP_AGENT_SESSION", "s2")],
        ] {
            let err = run(&config, &doc, &headers(bad)).unwrap_err();
            assert!(
                matches!(&err, AuthFailure::DuplicateHeader(_)),
                "{bad:?}: {err:?}"
            );
            assert_eq!(err.reason(), "duplicate_header");
            assert!(!err.is_gateway_fault());
        }
        // A respelled header alone is not the identity header (and the proxy strips it).
        let respelled = run(&config, &doc, &headers(&[("x_mcp_human_id", "mallory")])).unwrap();
        assert_eq!(respelled.human, None);
        // Multi-valued Authorization is no concern of header mode.
        let with_auth = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(run(&config, &doc, &with_auth).is_ok());
    }

    #[test]
    fn token_mode_refuses_authorization_sent_twice() {
        let key = SigningKey::from_seed(&[5; 32]);
        let config = config(TokenKeys::new(key.verifying_keys()), false);
        let doc = doc(AuthMode::Token, None);
        let token = key
            .mint(
                "demo/hello",
                Identity {
                    human: Some("alice".into()),
                    ..Identity::default()
                },
                jiff::Timestamp::now(),
                jiff::SignedDuration::from_secs(60),
            )
            .unwrap();
        let bearer = format!("Bearer {token}");
        let once = headers(&[("authorization", &bearer)]);
        assert_eq!(
            run(&config, &doc, &once).unwrap().human.as_deref(),
            Some("alice")
        );
        let twice = headers(&[("authorization", &bearer), ("authorization", &bearer)]);
        assert_eq!(
            run(&config, &doc, &twice).unwrap_err(),
            AuthFailure::DuplicateHeader("authorization".into())
        );
    }
}
