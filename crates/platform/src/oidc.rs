//! OIDC id tokens (`POST /v1/auth/oidc`): verified against one configured issuer's public keys,
//! read from a JWKS file that is re-read when it changes (a key rotation needs no restart; a
//! broken new file keeps the previous keys and says why in the log).
//!
//! Only asymmetric algorithms are accepted — RS256, ES256 (P-256) and EdDSA (Ed25519): with a
//! shared secret, whoever can verify could also mint. `iss`, `aud`, `exp` are required and
//! checked, `nbf` when present (30 s of leeway on both), and the token must carry an `email`
//! whose `email_verified` is not false.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// The longest id token considered (real ones are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an id token was refused: a stable code for the 401 and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Who a verified id token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// As the token wrote it (not yet normalized).
    pub email: String,
    pub subject: Option<String>,
}

struct IssuerKey {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

struct KeySet {
    modified: Option<SystemTime>,
    keys: Vec<IssuerKey>,
}

/// The algorithm a JWK is used with here, or `None` for a key this verifier never uses.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        // Shared secrets, other curves.
        _ => return None,
    };
    // A key that declares another algorithm (e.g. RS512) is meant for that one only.
    let declared_matches = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => by_type == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => by_type == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => by_type == Algorithm::EdDSA,
        Some(_) => false,
    };
    declared_matches.then_some(by_type)
}

fn read_key_set(path: &Path) -> Result<KeySet, String> {
    let shown = path.display();
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let bytes = std::fs::read(path).map_err(|e| format!("--oidc-jwks-file {shown}: {e}"))?;
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| format!("--oidc-jwks-file {shown}: not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Some(algorithm) = algorithm_of(jwk) else {
            continue;
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "--oidc-jwks-file {shown}: key {}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("without kid")
            )
        })?;
        keys.push(IssuerKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            decoding,
        });
    }
    if keys.is_empty() {
        return Err(format!(
            "--oidc-jwks-file {shown}: no RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key"
        ));
    }
    Ok(KeySet { modified, keys })
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// Verifies id tokens of one issuer for one audience.
pub struct OidcVerifier {
    path: PathBuf,
    issuer: String,
    audience: String,
    keys: RwLock<KeySet>,
}

impl OidcVerifier {
    /// Reads the key file now: a bad file stops the start with its error.
    pub fn new(path: PathBuf, issuer: String, audience: String) -> Result<OidcVerifier, String> {
        let keys = read_key_set(&path)?;
        Ok(OidcVerifier {
            path,
            issuer,
            audience,
            keys: RwLock::new(keys),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Re-reads the key file when its modification time changed.
    fn refresh(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let unchanged = self
            .keys
            .read()
            .map(|k| k.modified == modified)
            .unwrap_or(false);
        if unchanged {
            return;
        }
        match read_key_set(&self.path) {
            Ok(fresh) => {
                if let Ok(mut keys) = self.keys.write() {
                    *keys = fresh;
                }
                tracing::info!(path = %self.path.display(), "OIDC keys re-read");
            }
            Err(e) => {
                tracing::warn!(error = %e, "OIDC keys not re-read; keeping the previous ones");
            }
        }
    }

    /// The identity in `token`, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        self.refresh();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refuse("invalid_token", format!("id_token: not a JWT: {e}")))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(refuse(
                "invalid_token",
                format!(
                    "id_token: algorithm {:?} is not accepted (RS256, ES256, EdDSA only)",
                    header.alg
                ),
            ));
        }
        let keys = self
            .keys
            .read()
            .map_err(|_| refuse("invalid_token", "the issuer's keys are unavailable"))?;
        let candidates: Vec<&IssuerKey> = keys
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(refuse(
                "unknown_key",
                format!(
                    "id_token: no key of the issuer matches it (alg {:?}, kid {})",
                    header.alg,
                    header.kid.as_deref().unwrap_or("absent")
                ),
            ));
        }
        let mut refusal = refuse("invalid_token", "id_token: refused");
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => return self.identity(data.claims),
                Err(e) => refusal = self.explain(&e),
            }
        }
        Err(refusal)
    }

    fn explain(&self, e: &jsonwebtoken::errors::Error) -> Refusal {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => refuse("token_expired", "id_token: it has expired"),
            ErrorKind::ImmatureSignature => {
                refuse("token_not_yet_valid", "id_token: its nbf is in the future")
            }
            ErrorKind::InvalidAudience => refuse(
                "wrong_audience",
                format!("id_token: its audience is not `{}`", self.audience),
            ),
            ErrorKind::InvalidIssuer => refuse(
                "wrong_issuer",
                format!("id_token: it was not issued by `{}`", self.issuer),
            ),
            ErrorKind::MissingRequiredClaim(claim) => refuse(
                "invalid_token",
                format!("id_token: the `{claim}` claim is missing"),
            ),
            ErrorKind::InvalidSignature => {
                refuse("invalid_token", "id_token: the signature does not verify")
            }
            _ => refuse("invalid_token", format!("id_token: {e}")),
        }
    }

    fn identity(&self, claims: Claims) -> Result<Identity, Refusal> {
        let email = claims
            .email
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| refuse("email_missing", "id_token: it has no `email` claim"))?;
        // Some issuers write the flag as a string.
        let verified = match &claims.email_verified {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) if s == "true" => true,
            Some(serde_json::Value::String(s)) if s == "false" => false,
            Some(other) => {
                return Err(refuse(
                    "invalid_token",
                    format!("id_token: `email_verified` is {other}, not a boolean"),
                ));
            }
        };
        if !verified {
            return Err(refuse(
                "email_unverified",
                "id_token: the issuer says the email is not verified (email_verified: false)",
            ));
        }
        Ok(Identity {
            email,
            subject: claims.sub,
        })
    }
}
