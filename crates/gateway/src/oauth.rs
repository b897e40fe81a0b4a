//! `oauth` mode: OAuth 2.1 / OIDC access tokens (JWT) verified against the issuer's published
//! keys (JWKS), per the MCP authorization spec, plus the RFC 9728 protected-resource metadata that
//! tells clients which authorization server to use.
//!
//! What a token must satisfy: an asymmetric signature (RS*, PS*, ES256/384, EdDSA — never `none`
//! or a shared-secret HS* algorithm, whatever the token's header claims) by a key the issuer
//! publishes, with the key's own algorithm; `iss` equal to the policy's `issuerURL`; `aud`
//! containing the configured audience (tokens minted for another resource are refused, RFC
//! 8707); a current `exp` and `nbf` (30 s leeway for clock skew).
//!
//! Keys are fetched from `jwks_uri` of the issuer's discovery document (OIDC, then RFC 8414),
//! over HTTPS only, cached for 15 minutes, and fetched again early (at most every 10 s) when a
//! token names an unknown `kid` — so a key rotation at the issuer is followed at once. If the
//! issuer is unreachable, the last keys stay in use; without keys every call is refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{AuthFailure, Caller};

/// Keys are fetched again after this long.
const KEYS_TTL: Duration = Duration::from_secs(15 * 60);
/// An unknown `kid` triggers a fetch at most this often (a flood of forged tokens cannot turn
/// the gateway into a load generator against the issuer).
const MIN_REFETCH: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed fetch, the next waits this long, doubling per failure up to [`MAX_BACKOFF`]:
/// a down issuer must not turn every uncached token into a discovery round trip.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// What a client is told when the issuer cannot be reached (the cause is logged, not echoed:
/// it names internal hosts and TLS details).
const ISSUER_DOWN: &str = "the issuer could not be reached; try again shortly";
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

/// Gateway-side settings of `oauth` mode (the issuer and audience come from the policy).
#[derive(Debug, Clone)]
pub struct OauthSettings {
    /// The public URL of this MCP endpoint: the RFC 9728 `resource`, and the audience when the
    /// policy names none.
    pub resource: Option<Uri>,
    /// An extra CA trusted for the issuer (besides the system's roots).
    pub ca_file: Option<PathBuf>,
    pub claims: ClaimNames,
}

/// Which claims carry the caller's identity.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub human: String,
    /// Tried in order (RFC 9068 access tokens use `client_id`, OIDC ID tokens `azp`).
    pub agent: Vec<String>,
    pub team: Option<String>,
    pub session: Option<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            human: "sub".to_owned(),
            agent: vec!["client_id".to_owned(), "azp".to_owned()],
            team: None,
            session: None,
        }
    }
}

struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

struct KeySet {
    issuer: String,
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid` (tried when a token names none).
    unnamed: Vec<Arc<Key>>,
    fetched: Instant,
}

/// Verifies access tokens of one gateway; the HTTP client is built on first use, so gateways in
/// other modes pay nothing for it.
pub struct OauthVerifier {
    settings: OauthSettings,
    client: OnceLock<Result<Client<mcp_runtime_tls::Connector, Empty<Bytes>>, String>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serialises fetches; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// After failed fetches: when the next may start, and how many failed in a row.
    backoff: std::sync::Mutex<Option<(Instant, u32)>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: String,
}

impl OauthVerifier {
    pub fn new(settings: OauthSettings) -> Self {
        Self {
            settings,
            client: OnceLock::new(),
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
            backoff: std::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &OauthSettings {
        &self.settings
    }

    /// The audience tokens must carry.
    pub fn audience(&self, policy_audience: Option<&str>) -> Result<String, AuthFailure> {
        policy_audience
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .or_else(|| self.settings.resource.as_ref().map(ToString::to_string))
            .ok_or_else(|| {
                AuthFailure::Misconfigured(
                    "oauth mode needs an audience: set spec.auth.audience on the MCPServer or \
                     --oauth-resource on the gateway"
                        .to_owned(),
                )
            })
    }

    fn lookup(&self, issuer: &str, kid: Option<&str>) -> Option<Vec<Arc<Key>>> {
        let keys = self.keys.read().expect("jwks lock");
        let set = keys.as_ref().filter(|s| s.issuer == issuer)?;
        match kid {
            Some(kid) => set.by_kid.get(kid).map(|k| vec![k.clone()]),
            None => (!set.unnamed.is_empty() || !set.by_kid.is_empty()).then(|| {
                set.unnamed
                    .iter()
                    .chain(set.by_kid.values())
                    .cloned()
                    .collect()
            }),
        }
    }

    fn is_stale(&self, issuer: &str) -> bool {
        let keys = self.keys.read().expect("jwks lock");
        keys.as_ref()
            .is_none_or(|s| s.issuer != issuer || s.fetched.elapsed() > KEYS_TTL)
    }

    /// Verifies `token` and maps its claims to a caller.
    pub async fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<(Caller, i64), AuthFailure> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthFailure::InvalidToken(format!("not a JWT: {e}")))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(AuthFailure::InvalidToken(format!(
                "algorithm {:?} is not accepted: access tokens must be signed with the issuer's \
                 published asymmetric keys",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        if self.is_stale(issuer) {
            self.refresh(issuer, false).await?;
        }
        let keys = match self.lookup(issuer, kid) {
            Some(keys) => keys,
            None => {
                // Maybe the issuer rotated its keys since the last fetch.
                self.refresh(issuer, true).await?;
                self.lookup(issuer, kid).ok_or_else(|| {
                    AuthFailure::InvalidToken(format!(
                        "signed with a key the issuer does not publish (kid {})",
                        kid.unwrap_or("absent")
                    ))
                })?
            }
        };
        let mut last_error = None;
        for key in keys {
            if key.algorithm != header.alg {
                last_error = Some(AuthFailure::InvalidToken(format!(
                    "the token says {:?} but its key is for {:?}",
                    header.alg, key.algorithm
                )));
                continue;
            }
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => return self.caller(&data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last_error = Some(match e.kind() {
                        ErrorKind::ExpiredSignature => AuthFailure::ExpiredToken,
                        ErrorKind::InvalidAudience => AuthFailure::InvalidToken(format!(
                            "the token is not for this resource (audience must include \
                             `{audience}`)"
                        )),
                        ErrorKind::InvalidIssuer => AuthFailure::InvalidToken(format!(
                            "the token was not issued by `{issuer}`"
                        )),
                        ErrorKind::ImmatureSignature => {
                            AuthFailure::InvalidToken("the token is not valid yet (nbf)".into())
                        }
                        _ => AuthFailure::InvalidToken(e.to_string()),
                    });
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| AuthFailure::InvalidToken("no key verifies this token".into())))
    }

    fn caller(&self, claims: &Map<String, Value>) -> Result<(Caller, i64), AuthFailure> {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let names = &self.settings.claims;
        let caller = Caller {
            human: text(&names.human),
            agent: names.agent.iter().find_map(|n| text(n)),
            team: names.team.as_deref().and_then(text),
            session: names.session.as_deref().and_then(text),
        };
        if caller.human.is_none() && caller.agent.is_none() && caller.team.is_none() {
            return Err(AuthFailure::InvalidToken(format!(
                "the token carries no identity (claims {}, {} and {} are absent)",
                names.human,
                names.agent.join("/"),
                names
                    .team
                    .as_deref()
                    .unwrap_or("(no team claim configured)")
            )));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        Ok((caller, exp))
    }

    fn client(&self) -> Result<&Client<mcp_runtime_tls::Connector, Empty<Bytes>>, AuthFailure> {
        self.client
            .get_or_init(|| {
                let trust = mcp_runtime_tls::Trust::system_and(self.settings.ca_file.clone());
                mcp_runtime_tls::connector(&trust)
                    .map(|c| Client::builder(TokioExecutor::new()).build(c))
                    .map_err(|e| format!("TLS for the issuer: {e}"))
            })
            .as_ref()
            .map_err(|e| AuthFailure::IssuerUnavailable(e.clone()))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("`{url}` is not an https URL (OAuth requires TLS)"));
        }
        let client = self.client().map_err(|e| e.to_string())?;
        let request = Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("GET {url}: no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| format!("GET {url}: {}", crate::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
    }

    async fn fetch(&self, issuer: &str) -> Result<KeySet, String> {
        let base = issuer.trim_end_matches('/');
        let discovery: Discovery = match self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await
        {
            Ok(d) => d,
            Err(oidc) => self
                .get_json(&format!("{base}/.well-known/oauth-authorization-server"))
                .await
                .map_err(|rfc8414| format!("discovery failed: {oidc}; {rfc8414}"))?,
        };
        if let Some(found) = &discovery.issuer
            && found.trim_end_matches('/') != base
        {
            return Err(format!(
                "the discovery document names issuer `{found}`, not `{issuer}`"
            ));
        }
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        let mut by_kid = HashMap::new();
        let mut unnamed = Vec::new();
        for jwk in &set.keys {
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                // Shared secrets have no place in a published key set.
                (AlgorithmParameters::OctetKey(_), _) => continue,
                (_, Some(alg)) => match key_algorithm(alg) {
                    Some(a) => a,
                    None => continue,
                },
                (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(p), None) => match p.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                },
                (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let key = Arc::new(Key {
                decoding,
                algorithm,
            });
            match &jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid.clone(), key);
                }
                None => unnamed.push(key),
            }
        }
        if by_kid.is_empty() && unnamed.is_empty() {
            return Err(format!(
                "{} publishes no usable signing key",
                discovery.jwks_uri
            ));
        }
        Ok(KeySet {
            issuer: issuer.to_owned(),
            by_kid,
            unnamed,
            fetched: Instant::now(),
        })
    }

    /// Fetches the issuer's keys (one fetch at a time; `early` ones at most every 10 s).
    async fn refresh(&self, issuer: &str, early: bool) -> Result<(), AuthFailure> {
        let same_issuer = || {
            let keys = self.keys.read().expect("jwks lock");
            keys.as_ref().is_some_and(|s| s.issuer == issuer)
        };
        // Backing off after a failure: answer at once, with the keys we have if any.
        if self.backing_off() {
            return if same_issuer() {
                Ok(())
            } else {
                Err(AuthFailure::IssuerUnavailable(ISSUER_DOWN.to_owned()))
            };
        }
        let mut last = self.fetching.lock().await;
        if self.backing_off() {
            // The fetch we waited for failed.
            return if same_issuer() {
                Ok(())
            } else {
                Err(AuthFailure::IssuerUnavailable(ISSUER_DOWN.to_owned()))
            };
        }
        let same_issuer = same_issuer();
        if same_issuer && let Some(at) = *last {
            // Someone fetched while we waited, or a kid-miss fetch ran moments ago.
            if (early && at.elapsed() < MIN_REFETCH) || (!early && !self.is_stale(issuer)) {
                return Ok(());
            }
        }
        *last = Some(Instant::now());
        match self.fetch(issuer).await {
            Ok(set) => {
                tracing::info!(
                    issuer,
                    keys = set.by_kid.len() + set.unnamed.len(),
                    "issuer keys fetched"
                );
                *self.keys.write().expect("jwks lock") = Some(Arc::new(set));
                *self.backoff.lock().expect("backoff lock") = None;
                Ok(())
            }
            Err(message) => {
                let wait = self.failed();
                if same_issuer {
                    // Keep verifying with the keys we have while the issuer is unreachable.
                    tracing::warn!(issuer, error = %message, retry_in = ?wait, "cannot refresh the issuer's keys; keeping the last ones");
                    Ok(())
                } else {
                    tracing::warn!(issuer, error = %message, retry_in = ?wait, "cannot fetch the issuer's keys");
                    Err(AuthFailure::IssuerUnavailable(ISSUER_DOWN.to_owned()))
                }
            }
        }
    }

    fn backing_off(&self) -> bool {
        self.backoff
            .lock()
            .expect("backoff lock")
            .is_some_and(|(until, _)| Instant::now() < until)
    }

    /// Records a failed fetch; returns how long until the next may start.
    fn failed(&self) -> Duration {
        let mut backoff = self.backoff.lock().expect("backoff lock");
        let failures = backoff.map_or(0, |(_, n)| n).saturating_add(1);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (failures - 1).min(6))
            .min(MAX_BACKOFF);
        *backoff = Some((Instant::now() + wait, failures));
        wait
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The path of the protected-resource metadata for an MCP endpoint path (RFC 9728 §3.1: the
/// well-known segment goes between host and path).
pub fn metadata_path(resource_path: &str) -> String {
    let path = resource_path.trim_end_matches('/');
    format!("/.well-known/oauth-protected-resource{path}")
}

/// The resource this request addresses: the configured public URL, else the request's host and
/// path (behind a TLS-terminating proxy, `X-Forwarded-Proto` gives the scheme).
pub fn resource_url(configured: Option<&Uri>, headers: &HeaderMap, path: &str) -> String {
    if let Some(uri) = configured {
        return uri.to_string().trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{}", path.trim_end_matches('/'))
}

/// URL of the metadata document for `resource` (RFC 9728 §3.1).
pub fn metadata_url(resource: &str) -> String {
    match resource.parse::<Uri>() {
        Ok(uri) if uri.authority().is_some() => format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default(),
            metadata_path(uri.path())
        ),
        _ => resource.to_owned(),
    }
}

/// The RFC 9728 metadata document.
pub fn metadata_document(resource: &str, issuer: &str) -> Value {
    serde_json::json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP server governed by mcp-runtime",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_paths_insert_the_well_known_segment() {
        assert_eq!(
            metadata_path("/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(metadata_path("/"), "/.well-known/oauth-protected-resource");
        assert_eq!(
            metadata_url("https://mcp.example.com/team/hello/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/team/hello/mcp"
        );
    }

    #[test]
    fn the_resource_comes_from_configuration_before_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "gw.local:8091".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, "/mcp"),
            "http://gw.local:8091/mcp"
        );
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, "/mcp"),
            "https://gw.local:8091/mcp"
        );
        let configured: Uri = "https://mcp.example.com/hello/mcp".parse().unwrap();
        assert_eq!(
            resource_url(Some(&configured), &headers, "/mcp"),
            "https://mcp.example.com/hello/mcp"
        );
    }

    #[test]
    fn symmetric_algorithms_are_refused_before_any_key_lookup() {
        let verifier = OauthVerifier::new(OauthSettings {
            resource: None,
            ca_file: None,
            claims: ClaimNames::default(),
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "iss": "https://idp", "aud": "x", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"public key bytes used as a secret"),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(verifier.verify(&token, "https://idp", "x"))
            .unwrap_err();
        assert!(
            matches!(&err, AuthFailure::InvalidToken(m) if m.contains("not accepted")),
            "{err}"
        );
    }
}
