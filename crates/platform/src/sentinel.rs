//! The platform's client of Sentinel's read API (`GET /v1/events|stats|usage`): one base URL,
//! one read key, a timeout and a cap on the answer's size. Scoping a query to a team is the
//! caller's job (see `server/analytics.rs`); this only carries requests.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest Sentinel answer read (a page of 1000 events is a few MiB at most).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Where Sentinel is and how to read from it.
pub struct SentinelClient {
    /// `http://host:port`, without a trailing `/`.
    base: String,
    read_key: HeaderValue,
    timeout: Duration,
    http: Client<HttpConnector, Empty<Bytes>>,
}

/// Why Sentinel gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("the answer exceeds {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// A checked `--sentinel-url`: `http://HOST:PORT` (a trailing `/` is allowed), nothing else.
pub fn parse_base_url(url: &str) -> Result<String, String> {
    let fail = || {
        format!(
            "--sentinel-url {url}: write http://HOST:PORT (Sentinel's API listener; https is not \
             supported, put Sentinel on a private network or behind a TLS sidecar)"
        )
    };
    let uri: http::Uri = url.parse().map_err(|_| fail())?;
    let plain = uri.scheme_str() == Some("http")
        && uri.authority().is_some_and(|a| {
            a.port_u16().is_some() && !a.host().is_empty() && !a.as_str().contains('@')
        })
        && matches!(uri.path(), "" | "/")
        && uri.query().is_none();
    if !plain {
        return Err(fail());
    }
    Ok(format!(
        "http://{}",
        uri.authority().map_or("", |a| a.as_str())
    ))
}

/// The read key in `--sentinel-read-key-file`: its first line, trimmed.
pub fn read_key_from(text: &str, path: &str) -> Result<HeaderValue, String> {
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        return Err(format!(
            "--sentinel-read-key-file {path}: the first line must hold the key"
        ));
    }
    // Sentinel's key files split on whitespace, so a key never holds any.
    let printable = key.bytes().all(|b| b.is_ascii_graphic());
    let mut value = HeaderValue::from_str(key)
        .ok()
        .filter(|_| printable)
        .ok_or_else(|| {
            format!(
                "--sentinel-read-key-file {path}: the key must be printable ASCII without spaces"
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

impl SentinelClient {
    pub fn new(base: String, read_key: HeaderValue, timeout: Duration) -> SentinelClient {
        SentinelClient {
            base,
            read_key,
            timeout,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET <base><path>?<query>` with the read key: Sentinel's status and body.
    pub async fn get(&self, path: &str, query: &str) -> Result<(StatusCode, Bytes), SentinelError> {
        let uri = format!("{}{path}?{query}", self.base);
        let request = Request::get(uri)
            .header("x-api-key", self.read_key.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| SentinelError::Transport(e.to_string()))?;
        let exchange = async {
            let answer = self
                .http
                .request(request)
                .await
                .map_err(|e| SentinelError::Transport(e.to_string()))?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        SentinelError::TooLarge
                    } else {
                        SentinelError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SentinelError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_host_and_port_is_a_sentinel_url() {
        assert_eq!(
            parse_base_url("http://sentinel:8095/").unwrap(),
            "http://sentinel:8095"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8095").unwrap(),
            "http://127.0.0.1:8095"
        );
        for bad in [
            "https://sentinel:8095",
            "sentinel:8095",
            "http://sentinel",
            "http://sentinel:8095/v1",
            "http://sentinel:8095/?a=b",
            "http://user:pw@sentinel:8095",
            "",
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert!(e.starts_with("--sentinel-url"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_read_key_is_the_first_line() {
        assert_eq!(
            read_key_from("  k-1 \nignored\n", "f").unwrap(),
            HeaderValue::from_static("k-1")
        );
        assert!(read_key_from("\n", "f").unwrap_err().contains("first line"));
        assert!(
            read_key_from("k\u{7f}ey", "f")
                .unwrap_err()
                .contains("printable")
        );
    }
}
