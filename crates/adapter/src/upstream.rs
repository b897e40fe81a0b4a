//! The way to the gateway, shared by both adapters: one HTTP client, the credential on every
//! request, bounded retries of the methods that are safe to repeat, and one resend when the
//! gateway refuses the credential itself and a newer one is available.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_runtime_tls::{Connector, Trust};

use crate::credential::Credentials;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body from the gateway: streamed as it arrives, or buffered when the adapter had to
/// look at it.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// The methods that only read and may be sent again when the first attempt failed on the way:
/// a list or a ping changes nothing on the server, a `tools/call` may have (never retried).
pub const IDEMPOTENT_METHODS: [&str; 5] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "ping",
];

pub fn is_idempotent(method: &str) -> bool {
    IDEMPOTENT_METHODS.contains(&method)
}

/// Reason codes with which the gateway refuses the credential before anything reaches the
/// server (HTTP 401): a resend with a newer credential cannot run anything twice.
const CREDENTIAL_REFUSALS: [&str; 3] = ["token_expired", "invalid_token", "missing_bearer_token"];

/// Bounded retries with exponential backoff.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 1u32 << failed_attempts.saturating_sub(1).min(16);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Why a request got no HTTP answer from the gateway.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub message: String,
    pub timed_out: bool,
}

impl TransportError {
    /// The status a proxy answers for this failure (502, or 504 for a timeout); the stdio shim
    /// reports the same in `error.data.http_status`.
    pub fn http_status(&self) -> StatusCode {
        if self.timed_out {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        }
    }

    fn from_client(e: &hyper_util::client::legacy::Error) -> Self {
        use std::error::Error as _;
        // The innermost cause says what happened (connection refused, reset, DNS).
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        Self {
            message: format!("cannot reach the gateway: {message}"),
            timed_out: false,
        }
    }
}

/// A request to send: the adapter has the whole body, so it can send it again.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether a failure on the way (502/503/504, no connection) may be retried.
    pub idempotent: bool,
    /// For logs: the JSON-RPC method, when the body holds one request.
    pub rpc_method: Option<String>,
}

/// Where the gateway is and how to reach it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The gateway's MCP endpoint, e.g. `https://mcp.example.com/team/server/mcp`.
    pub url: Uri,
    /// An extra CA to trust for `https` (besides the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    pub retry: RetryPolicy,
    /// Time allowed for the gateway's response headers; `None` waits as long as the tool runs.
    pub response_timeout: Option<Duration>,
}

impl UpstreamConfig {
    pub fn new(url: &str) -> Result<Self, String> {
        let url: Uri = url.parse().map_err(|e| format!("not a URL ({e}): {url}"))?;
        match url.scheme_str() {
            Some("http" | "https") if url.host().is_some() => {}
            _ => {
                return Err(format!(
                    "expected an absolute http:// or https:// URL of the gateway's MCP endpoint, got {url}"
                ));
            }
        }
        Ok(Self {
            url,
            ca_file: None,
            retry: RetryPolicy::default(),
            response_timeout: None,
        })
    }
}

/// The gateway, as the adapters talk to it.
pub struct Upstream {
    config: UpstreamConfig,
    client: Client<Connector, Full<Bytes>>,
    credentials: Credentials,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, credentials: Credentials) -> Result<Self, String> {
        let connector = mcp_runtime_tls::connector(&Trust::system_and(config.ca_file.clone()))
            .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            config,
            client,
            credentials,
        })
    }

    pub fn url(&self) -> &Uri {
        &self.config.url
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends `out` to the gateway with the current credential, replacing any `Authorization` in
    /// it. Retries an idempotent request on 502/503/504 and on failures to connect or to get an
    /// answer; resends any request once when the gateway refused the credential (401) and a
    /// newer one is available.
    pub async fn send(&self, out: &Outgoing) -> Result<Response<ResponseBody>, TransportError> {
        let method = out.rpc_method.as_deref().unwrap_or("-");
        let mut failed = 0u32;
        let mut resent_for_credential = false;
        loop {
            let attempt = self.attempt(out).await;
            let retryable = match &attempt {
                Ok(resp) => matches!(resp.status().as_u16(), 502..=504),
                Err(_) => true,
            };
            if out.idempotent && retryable && failed + 1 < self.config.retry.attempts {
                failed += 1;
                let wait = self.config.retry.backoff(failed);
                match &attempt {
                    Ok(resp) => {
                        tracing::warn!(
                            rpc_method = method,
                            status = resp.status().as_u16(),
                            attempt = failed,
                            retry_in_ms = wait.as_millis() as u64,
                            "gateway answered with a failure on the way; retrying"
                        )
                    }
                    Err(e) => {
                        tracing::warn!(rpc_method = method, error = %e, attempt = failed, retry_in_ms = wait.as_millis() as u64, "gateway unreachable; retrying")
                    }
                }
                drop(attempt);
                tokio::time::sleep(wait).await;
                continue;
            }
            let resp = attempt?;
            if resp.status() != StatusCode::UNAUTHORIZED || resent_for_credential {
                return Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()));
            }
            // A 401: look at the (small) body to see whether the gateway refused the credential.
            let (parts, body) = resp.into_parts();
            let bytes = match read_body(body, 64 * 1024).await {
                Ok(b) => b,
                Err(e) => {
                    return Err(TransportError {
                        message: format!("reading the gateway's 401 answer: {e}"),
                        timed_out: false,
                    });
                }
            };
            let refused = credential_refusal(&bytes);
            if let Some(reason) = refused {
                tracing::info!(
                    rpc_method = method,
                    reason,
                    "the gateway refused the credential; fetching a newer one"
                );
                resent_for_credential = true;
                if self.credentials.refresh_now().await {
                    continue;
                }
            }
            return Ok(Response::from_parts(parts, full(bytes)));
        }
    }

    async fn attempt(&self, out: &Outgoing) -> Result<Response<Incoming>, TransportError> {
        let mut req = Request::builder()
            .method(out.method.clone())
            .uri(self.config.url.clone())
            .body(Full::new(out.body.clone()))
            .map_err(|e| TransportError {
                message: format!("cannot build the request: {e}"),
                timed_out: false,
            })?;
        let headers = req.headers_mut();
        for (name, value) in &out.headers {
            headers.append(name, value.clone());
        }
        // The adapter's credential, never the local client's.
        headers.remove(header::AUTHORIZATION);
        headers.insert(
            header::AUTHORIZATION,
            self.credentials.current().authorization().clone(),
        );
        let sent = self.client.request(req);
        match self.config.response_timeout {
            None => sent.await.map_err(|e| TransportError::from_client(&e)),
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r.map_err(|e| TransportError::from_client(&e)),
                Err(_) => Err(TransportError {
                    message: format!("the gateway did not answer within {} s", t.as_secs_f32()),
                    timed_out: true,
                }),
            },
        }
    }
}

/// The reason code of a 401 body when it is the gateway refusing the credential.
fn credential_refusal(body: &[u8]) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reason = v.pointer("/error/data/reason")?.as_str()?;
    CREDENTIAL_REFUSALS.into_iter().find(|r| *r == reason)
}

pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Broken(String),
}

/// Reads a body whole, refusing one over `limit` bytes (without reading past the limit).
pub async fn read_body<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Hop-by-hop headers (RFC 9110 7.6.1) end at each hop: never forwarded either way.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// `application/json`, as every MCP POST is.
pub fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(5), Duration::from_secs(1));
    }

    #[test]
    fn only_lists_and_ping_are_idempotent() {
        for m in ["tools/list", "ping", "resources/templates/list"] {
            assert!(is_idempotent(m), "{m}");
        }
        for m in ["tools/call", "initialize", "resources/read", "prompts/get"] {
            assert!(!is_idempotent(m), "{m}");
        }
    }

    #[test]
    fn only_the_gateways_credential_refusals_are_resent() {
        let body = |reason: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32001,"message":"x","data":{{"reason":"{reason}"}}}}}}"#
            )
        };
        assert_eq!(
            credential_refusal(body("token_expired").as_bytes()),
            Some("token_expired")
        );
        assert_eq!(credential_refusal(body("session_revoked").as_bytes()), None);
        assert_eq!(credential_refusal(b"Unauthorized"), None);
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(UpstreamConfig::new("http://127.0.0.1:8091/mcp").is_ok());
        assert!(UpstreamConfig::new("https://gw.example/a/mcp").is_ok());
        assert!(UpstreamConfig::new("/mcp").is_err());
        assert!(UpstreamConfig::new("ftp://x/mcp").is_err());
    }
}
