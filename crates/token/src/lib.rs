//! Session tokens: what an agent presents to the gateway in `Authorization: Bearer`.
//!
//! A token is a JWT signed with HS256 by whoever issues sessions (the platform API, or
//! `mcp-runtime token mint` for local use) and verified by the gateway with the same key. It
//! carries the human, agent and team identity, the MCPAgentSession it belongs to, the server it
//! is for (`aud`) and an expiry. Identity headers sent by a client are never trusted instead.

use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Issuer written into and required from every token.
pub const ISSUER: &str = "mcp-runtime";
/// Shortest key accepted: HS256 keys shorter than the hash are guessable.
pub const MIN_KEY_BYTES: usize = 32;

/// The claims of a session token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer; always [`ISSUER`].
    pub iss: String,
    /// Server the token is for, as `namespace/name`.
    pub aud: String,
    /// The human on whose behalf the agent acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The MCPAgentSession (`name` or `namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token signing key must be at least {MIN_KEY_BYTES} bytes (got {0})")]
    WeakKey(usize),
    #[error("token expired")]
    Expired,
    #[error("token is for {found}, not {expected}")]
    WrongAudience { expected: String, found: String },
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token carries no identity (sub, agent or team)")]
    NoIdentity,
}

/// A key that signs and verifies tokens.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Uses `secret` (trailing newline ignored, as key files usually end with one).
    pub fn from_secret(secret: &[u8]) -> Result<Self, TokenError> {
        let secret = secret.strip_suffix(b"\n").unwrap_or(secret);
        if secret.len() < MIN_KEY_BYTES {
            return Err(TokenError::WeakKey(secret.len()));
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// Signs a token for `aud` (`namespace/name` of the server) valid for `ttl` from `now`.
    pub fn mint(
        &self,
        aud: &str,
        identity: Identity,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<String, TokenError> {
        if identity.human.is_none() && identity.agent.is_none() && identity.team.is_none() {
            return Err(TokenError::NoIdentity);
        }
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: aud.to_owned(),
            sub: identity.human,
            agent: identity.agent,
            team: identity.team,
            sid: identity.session,
            iat: now.as_second(),
            exp: (now + ttl).as_second(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies signature, issuer, audience and expiry (no leeway: an expired token is expired).
    pub fn verify(&self, token: &str, aud: &str, now: Timestamp) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if now.as_second() >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.aud != aud {
            return Err(TokenError::WrongAudience {
                expected: aud.to_owned(),
                found: claims.aud,
            });
        }
        if claims.sub.is_none() && claims.agent.is_none() && claims.team.is_none() {
            return Err(TokenError::NoIdentity);
        }
        Ok(claims)
    }
}

/// Who a token speaks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub human: Option<String>,
    pub agent: Option<String>,
    pub team: Option<String>,
    pub session: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn alice() -> Identity {
        Identity {
            human: Some("alice".into()),
            agent: Some("claude".into()),
            team: None,
            session: Some("s1".into()),
        }
    }

    #[test]
    fn round_trip() {
        let now = Timestamp::now();
        let t = key()
            .mint("demo/hello", alice(), now, SignedDuration::from_secs(60))
            .unwrap();
        let c = key().verify(&t, "demo/hello", now).unwrap();
        assert_eq!(
            (c.sub.as_deref(), c.sid.as_deref()),
            (Some("alice"), Some("s1"))
        );
    }

    #[test]
    fn expiry_is_exact() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let t = key()
            .mint("a/b", alice(), now, SignedDuration::from_secs(10))
            .unwrap();
        assert!(
            key()
                .verify(&t, "a/b", Timestamp::from_second(1_000_009).unwrap())
                .is_ok()
        );
        let err = key()
            .verify(&t, "a/b", Timestamp::from_second(1_000_010).unwrap())
            .unwrap_err();
        assert!(matches!(err, TokenError::Expired));
    }

    #[test]
    fn other_server_other_key_and_tampering_are_refused() {
        let now = Timestamp::now();
        let t = key()
            .mint("a/b", alice(), now, SignedDuration::from_secs(60))
            .unwrap();
        assert!(matches!(
            key().verify(&t, "a/c", now),
            Err(TokenError::WrongAudience { .. })
        ));
        let other = TokenKey::from_secret(&[7u8; 40]).unwrap();
        assert!(matches!(
            other.verify(&t, "a/b", now),
            Err(TokenError::Invalid(_))
        ));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = "eyJpc3MiOiJtY3AtcnVudGltZSIsImF1ZCI6ImEvYiIsInN1YiI6Im1hbGxvcnkiLCJleHAiOjk5OTk5OTk5OTksImlhdCI6MH0";
        parts[1] = forged;
        assert!(key().verify(&parts.join("."), "a/b", now).is_err());
        assert!(key().verify("not-a-jwt", "a/b", now).is_err());
    }

    #[test]
    fn none_algorithm_and_weak_keys_are_refused() {
        // {"alg":"none"} header with valid-looking claims.
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJtY3AtcnVudGltZSIsImF1ZCI6ImEvYiIsInN1YiI6Im1hbGxvcnkiLCJleHAiOjk5OTk5OTk5OTksImlhdCI6MH0.";
        assert!(key().verify(unsigned, "a/b", Timestamp::now()).is_err());
        assert!(matches!(
            TokenKey::from_secret(b"short"),
            Err(TokenError::WeakKey(5))
        ));
    }
}
