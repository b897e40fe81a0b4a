//! Session tokens: what an agent presents to the gateway in `Authorization: Bearer`.
//!
//! A token is a JWT signed with EdDSA (Ed25519) by whoever issues sessions (the platform API, or
//! `mcp-runtime token mint` / `mcp-runtime dev` for local use) with its private key; gateways
//! hold only public keys ([`VerifyingKeys`]), so a gateway can check tokens but never mint one.
//! The header names the signing key (`kid`), so gateways can trust several keys at once and keys
//! rotate without refusing valid tokens. A token carries the human, agent and team identity, the
//! MCPAgentSession it belongs to, the server it is for (`aud`) and an expiry. Identity headers
//! sent by a client are never trusted instead.

mod keys;

use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

pub use keys::{KeyError, SigningKey, VerifyingKeys, kid_of};

/// Issuer written into and required from every token.
pub const ISSUER: &str = "mcp-runtime";

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
    #[error("token expired")]
    Expired,
    #[error("token is for {found}, not {expected}")]
    WrongAudience { expected: String, found: String },
    #[error("token is signed with {0:?}; only EdDSA is accepted")]
    WrongAlgorithm(Algorithm),
    #[error("token names no signing key (`kid` header)")]
    NoKeyId,
    #[error("token is signed by a key this gateway does not trust (kid {0})")]
    UnknownKey(String),
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token carries no identity (sub, agent or team)")]
    NoIdentity,
}

/// A token that passed [`VerifyingKeys::verify`], with the key that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub kid: String,
    pub claims: Claims,
}

impl SigningKey {
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
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

impl VerifyingKeys {
    /// Verifies algorithm (EdDSA only), key (`kid` present and in this set), signature, issuer,
    /// audience and expiry (no leeway: an expired token is expired).
    pub fn verify(&self, token: &str, aud: &str, now: Timestamp) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm(header.alg));
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
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
        Ok(Verified { kid, claims })
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
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[42; 32])
    }

    fn keys() -> VerifyingKeys {
        key().verifying_keys()
    }

    fn alice() -> Identity {
        Identity {
            human: Some("alice".into()),
            agent: Some("claude".into()),
            team: None,
            session: Some("s1".into()),
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn round_trip_names_the_key() {
        let now = Timestamp::now();
        let t = key()
            .mint("demo/hello", alice(), now, SignedDuration::from_secs(60))
            .unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::EdDSA, Some(key().kid()))
        );
        let v = keys().verify(&t, "demo/hello", now).unwrap();
        assert_eq!(v.kid, key().kid());
        assert_eq!(
            (v.claims.sub.as_deref(), v.claims.sid.as_deref()),
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
            keys()
                .verify(&t, "a/b", Timestamp::from_second(1_000_009).unwrap())
                .is_ok()
        );
        let err = keys()
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
            keys().verify(&t, "a/c", now),
            Err(TokenError::WrongAudience { .. })
        ));
        let other = SigningKey::from_seed(&[7; 32]).verifying_keys();
        assert!(matches!(
            other.verify(&t, "a/b", now),
            Err(TokenError::UnknownKey(k)) if k == key().kid()
        ));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged =
            b64(r#"{"iss":"mcp-runtime","aud":"a/b","sub":"mallory","exp":9999999999,"iat":0}"#);
        parts[1] = &forged;
        assert!(matches!(
            keys().verify(&parts.join("."), "a/b", now),
            Err(TokenError::Invalid(_))
        ));
        assert!(keys().verify("not-a-jwt", "a/b", now).is_err());
    }

    #[test]
    fn only_eddsa_with_a_known_kid_is_accepted() {
        let now = Timestamp::now();
        let claims =
            b64(r#"{"iss":"mcp-runtime","aud":"a/b","sub":"mallory","exp":9999999999,"iat":0}"#);
        // alg none: not even a known algorithm.
        let unsigned = format!("{}.{claims}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(keys().verify(&unsigned, "a/b", now).is_err());
        // HS256 keyed with the public key (the classic algorithm confusion), with a known kid.
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some(key().kid().to_owned()),
                ..Header::new(Algorithm::HS256)
            },
            &mallory_claims(),
            &jsonwebtoken::EncodingKey::from_secret(key().public_pem().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            keys().verify(&hs, "a/b", now),
            Err(TokenError::WrongAlgorithm(Algorithm::HS256))
        ));
        // EdDSA, correctly signed, but without a kid.
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &mallory_claims(),
            &key().encoding,
        )
        .unwrap();
        assert!(matches!(
            keys().verify(&no_kid, "a/b", now),
            Err(TokenError::NoKeyId)
        ));
        // A kid naming a trusted key, signed by another key.
        let lying = jsonwebtoken::encode(
            &Header {
                kid: Some(key().kid().to_owned()),
                ..Header::new(Algorithm::EdDSA)
            },
            &mallory_claims(),
            &SigningKey::from_seed(&[9; 32]).encoding,
        )
        .unwrap();
        assert!(matches!(
            keys().verify(&lying, "a/b", now),
            Err(TokenError::Invalid(_))
        ));
    }

    fn mallory_claims() -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: "a/b".into(),
            sub: Some("mallory".into()),
            agent: None,
            team: None,
            sid: None,
            exp: 9_999_999_999,
            iat: 0,
        }
    }

    #[test]
    fn a_key_set_accepts_tokens_of_each_of_its_keys() {
        let (old, new) = (key(), SigningKey::from_seed(&[43; 32]));
        let both = format!("{}{}", old.public_pem(), new.public_pem());
        let set = VerifyingKeys::from_pem(both.as_bytes()).unwrap();
        let now = Timestamp::now();
        for k in [&old, &new] {
            let t = k
                .mint("a/b", alice(), now, SignedDuration::from_secs(60))
                .unwrap();
            assert_eq!(set.verify(&t, "a/b", now).unwrap().kid, k.kid());
        }
    }
}
