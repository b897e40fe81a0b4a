//! A small client of the platform API (`mcp-platform`, docs/platform.md): JSON over HTTP(S),
//! the caller's access token or API key on every request, and the platform's error envelope
//! `{"error":{"code","message"}}` turned into an error that says what to do.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_runtime_tls::{Connector, Trust};
use serde_json::Value;

/// The platform's answers are small; anything larger is not the platform.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// A request that takes longer is reported, not waited for forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request authenticates.
#[derive(Clone)]
pub enum PlatformAuth {
    None,
    /// An access token from `POST /v1/auth/login`.
    Bearer(String),
    /// An API key (`mcpk_…`), sent as `x-api-key`.
    ApiKey(String),
}

/// Why a call to the platform failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No HTTP answer (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the platform at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// An answer in the platform's error envelope (or a non-2xx without one).
    #[error("the platform answered {status}: {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// A 2xx that is not the JSON expected.
    #[error("unexpected answer from {url}: {message}")]
    BadAnswer { url: String, message: String },
}

impl PlatformError {
    /// The platform refused the credential itself (expired, revoked, unknown).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status == StatusCode::UNAUTHORIZED)
    }

    /// The platform's own message, for refusals; the whole description otherwise.
    pub fn message(&self) -> String {
        match self {
            Self::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

pub struct PlatformClient {
    base: String,
    auth: PlatformAuth,
    http: Client<Connector, Full<Bytes>>,
}

impl PlatformClient {
    /// A client of the platform at `base` (scheme, host, optional port and path prefix).
    /// Needs a tokio runtime to be entered (the connection pool spawns on it).
    pub fn new(
        base: &str,
        ca_file: Option<std::path::PathBuf>,
        auth: PlatformAuth,
    ) -> Result<Self, String> {
        let base = check_url(base)?;
        let connector = mcp_runtime_tls::connector(&Trust::system_and(ca_file))
            .map_err(|e| format!("TLS: {e}"))?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { base, auth, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Value, PlatformError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, PlatformError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// One request; the JSON answer (`Null` for an empty body) or the platform's refusal.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |message: String| PlatformError::Unreachable {
            url: self.base.clone(),
            message,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| unreachable(format!("not a URL ({e})")))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        match &self.auth {
            PlatformAuth::None => {}
            PlatformAuth::Bearer(token) => {
                request = request.header(
                    http::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"))?,
                );
            }
            PlatformAuth::ApiKey(key) => {
                request = request.header("x-api-key", sensitive(key)?);
            }
        }
        let payload = match body {
            Some(v) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "the answer did not arrive within {REQUEST_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| unreachable(format!("reading the answer: {e}")))?
        .to_bytes();
        let json: Option<Value> = if bytes.is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_success() {
            return json.ok_or_else(|| PlatformError::BadAnswer {
                url: url.clone(),
                message: format!("{status} with a body that is not JSON"),
            });
        }
        let envelope = json.as_ref().map(|j| &j["error"]);
        let field = |k: &str| envelope.and_then(|e| e[k].as_str()).map(str::to_owned);
        Err(PlatformError::Refused {
            status,
            code: field("code").unwrap_or_default(),
            message: field("message").unwrap_or_else(|| {
                format!(
                    "{} (not the platform's error format: is {} the platform API?)",
                    status.canonical_reason().unwrap_or("error"),
                    self.base
                )
            }),
        })
    }
}

/// A header value marked sensitive, so no layer ever prints it.
fn sensitive(value: &str) -> Result<http::HeaderValue, PlatformError> {
    let mut v = http::HeaderValue::from_str(value).map_err(|_| PlatformError::BadAnswer {
        url: String::new(),
        message: "the stored credential holds characters a header cannot carry; log in again"
            .into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `base` without a trailing slash, if it is an absolute http(s) URL without query.
pub fn check_url(base: &str) -> Result<String, String> {
    let trimmed = base.trim().trim_end_matches('/');
    let uri: Uri = trimmed
        .parse()
        .map_err(|e| format!("`{base}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() && uri.query().is_none() => {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!(
            "`{base}` is not an absolute http:// or https:// URL of the platform API"
        )),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// Percent-encodes one path segment (an email holds `@` and may hold `+`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(
            check_url("http://127.0.0.1:8090/").unwrap(),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            check_url("https://p.example.com/api").unwrap(),
            "https://p.example.com/api"
        );
        for bad in ["127.0.0.1:8090", "ftp://x", "http://x/?a=1", "not a url"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("a+b@example.com"), "a%2Bb%40example.com");
        assert_eq!(segment("x/../y"), "x%2F..%2Fy");
    }
}
