//! Producers authenticated by a JWT instead of an API key (optional): tokens of an OIDC issuer,
//! e.g. a Kubernetes service account's projected token, verified against the issuer's public
//! keys (a JWKS file, re-read when it changes, so a rotation needs no restart).
//!
//! A JWT producer is always scoped: it may write events of the namespaces and teams its token
//! names (`namespaces` and `teams` claims, and a Kubernetes service account's own namespace);
//! a token that names none is refused. An unscoped writer needs an API key.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::keys::Access;
use crate::store::Scope;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

struct Loaded {
    modified: Option<SystemTime>,
    keys: Vec<Key>,
}

pub struct JwtVerifier {
    path: PathBuf,
    issuer: String,
    audience: String,
    loaded: RwLock<Loaded>,
}

fn load(path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read(path).map_err(|e| format!("reading {shown}: {e}"))?;
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| format!("{shown} is not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            // Shared secrets are never accepted: a producer must not hold the verifier's key.
            _ => continue,
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| format!("{shown}: a key: {e}"))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            decoding,
        });
    }
    if keys.is_empty() {
        return Err(format!(
            "{shown} holds no public RSA, EC (P-256/P-384) or Ed25519 key"
        ));
    }
    Ok(Loaded { modified, keys })
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    teams: Vec<String>,
    /// A Kubernetes service account token's own namespace.
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
}

impl JwtVerifier {
    /// Reads the key file now, so a bad file stops the start with its error.
    pub fn new(path: PathBuf, issuer: String, audience: String) -> Result<JwtVerifier, String> {
        let loaded = load(&path)?;
        Ok(JwtVerifier {
            path,
            issuer,
            audience,
            loaded: RwLock::new(loaded),
        })
    }

    /// Re-reads the key file when it changed; a broken new file keeps the old keys (logged).
    fn refresh(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if self
            .loaded
            .read()
            .map(|l| l.modified == modified)
            .unwrap_or(false)
        {
            return;
        }
        match load(&self.path) {
            Ok(fresh) => {
                if let Ok(mut loaded) = self.loaded.write() {
                    *loaded = fresh;
                }
                tracing::info!(path = %self.path.display(), "JWT keys re-read");
            }
            Err(e) => tracing::warn!(error = %e, "JWT keys not re-read; keeping the previous ones"),
        }
    }

    /// What the token grants, or why it is refused (for the 401's message).
    pub fn verify(&self, token: &str) -> Result<Access, String> {
        self.refresh();
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let loaded = self
            .loaded
            .read()
            .map_err(|_| "the key set is unavailable".to_owned())?;
        let candidates: Vec<&Key> = loaded
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "no key of the issuer matches the token (alg {:?}, kid {})",
                header.alg,
                header.kid.as_deref().unwrap_or("absent")
            ));
        }
        let mut last = String::new();
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => return scope(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                        ErrorKind::InvalidAudience => {
                            format!("the token's audience is not `{}`", self.audience)
                        }
                        ErrorKind::InvalidIssuer => {
                            format!("the token was not issued by `{}`", self.issuer)
                        }
                        _ => e.to_string(),
                    };
                }
            }
        }
        Err(last)
    }
}

fn scope(claims: Claims) -> Result<Access, String> {
    let mut scope = Scope::default();
    scope
        .namespaces
        .extend(claims.namespaces.into_iter().filter(|n| !n.is_empty()));
    if let Some(ns) = claims.kubernetes.and_then(|k| k.namespace) {
        scope.namespaces.insert(ns);
    }
    scope
        .teams
        .extend(claims.teams.into_iter().filter(|t| !t.is_empty()));
    if scope.namespaces.is_empty() && scope.teams.is_empty() {
        return Err(
            "the token names no namespaces or teams (claims `namespaces`, `teams`, or a service account's namespace); an unscoped producer needs an API key"
                .to_owned(),
        );
    }
    Ok(Access::Scoped(scope))
}
