//! Reading a POST: the media type, the body within its size and time limits, and the strict
//! JSON-RPC reading the decision is taken on.

use std::future::Future;
use std::task::Poll;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use mcp_runtime_wire::era;
use mcp_runtime_wire::jsonrpc::{self, Body};

use super::refusal::{Reason, Refusal};

/// Only UTF-8 JSON is decided on. Another charset (UTF-7, UTF-16) could make the upstream read a
/// different method or tool name than the gateway did; the upstream is told `application/json`
/// whatever the client's spelling.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |what: &str| {
        Refusal::new(
            Reason::UnsupportedContentType,
            format!(
                "{what}: send `Content-Type: application/json` (UTF-8) with the JSON-RPC message"
            ),
        )
    };
    let value = match era::sent_once(headers, "content-type") {
        Err(_) => return Err(refuse("Content-Type is sent more than once")),
        Ok(None) => return Err(refuse("the request has no Content-Type")),
        Ok(Some(v)) => v
            .to_str()
            .map_err(|_| refuse("Content-Type is not visible ASCII"))?,
    };
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(refuse(&format!("Content-Type `{media}` is not accepted")));
    }
    for param in parts.filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        if !(key.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(refuse(&format!(
                "Content-Type parameter `{param}` is not accepted (only charset=utf-8)"
            )));
        }
    }
    Ok(())
}

/// Reads the whole body within the byte limit and the time limit.
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    max_bytes: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Refusal> {
    let too_large = || {
        let mut r = Refusal::new(
            Reason::BodyTooLarge,
            format!("request body exceeds the gateway limit of {max_bytes} bytes"),
        );
        r.data = Some(serde_json::json!({ "limit": max_bytes }));
        r
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let mut collect = std::pin::pin!(Limited::new(body, max_bytes).collect());
    // A small body usually arrives with its headers: take it without arming a timer, and start
    // the body timeout only when the body has to be waited for.
    let ready = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match ready {
        Poll::Ready(result) => Ok(result),
        Poll::Pending => tokio::time::timeout(timeout, collect).await,
    };
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(e)) => Err(Refusal::new(
            Reason::ParseError,
            format!("could not read the request body: {e}"),
        )),
        Err(_) => Err(Refusal::new(
            Reason::BodyTimeout,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

/// The strict JSON-RPC reading of a body.
pub fn parse(bytes: &[u8]) -> Result<Body, Refusal> {
    jsonrpc::parse(bytes).map_err(|refusal| {
        let reason = if refusal.code == jsonrpc::PARSE_ERROR {
            Reason::ParseError
        } else {
            Reason::InvalidRequest
        };
        Refusal::from_wire(reason, refusal)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_utf8_json_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(check_content_type(&with(&[ok])).is_ok(), "{ok}");
        }
        for bad in [
            &["application/json; charset=utf-7"][..],
            &["application/json; charset=utf-16"],
            &["text/plain"],
            &["application/json-seq"],
            &["application/json; boundary=x"],
            &[],
            &["application/json", "application/json"],
        ] {
            let err = check_content_type(&with(bad)).unwrap_err();
            assert_eq!(err.reason, Reason::UnsupportedContentType, "{bad:?}");
        }
    }
}
