//! The JSON-RPC errors the adapters answer themselves (the gateway's own errors pass through).

use http::StatusCode;
use mcp_runtime_wire::jsonrpc::{self, Id};
use serde_json::{Value, json};

use crate::upstream::TransportError;

/// Implementation-defined server error (JSON-RPC reserves -32000 to -32099): the request did not
/// get an answer from the gateway. `data.http_status` says what a proxy would have answered.
pub const ADAPTER_ERROR: i64 = -32000;

/// The longest piece of a non-JSON-RPC answer quoted back to the client.
const QUOTE_LIMIT: usize = 512;

/// The gateway could not be reached, or its answer broke off.
pub fn transport_error(id: Option<&Id>, e: &TransportError) -> String {
    jsonrpc::error_response(
        id,
        ADAPTER_ERROR,
        &e.message,
        Some(json!({ "http_status": e.http_status().as_u16() })),
    )
}

/// A message larger than the adapter accepts.
pub fn too_large(id: Option<&Id>, size: Option<usize>, limit: usize) -> String {
    let message = match size {
        Some(size) => {
            format!("the message is {size} bytes, more than the adapter's limit of {limit} bytes")
        }
        None => format!("the message is more than the adapter's limit of {limit} bytes"),
    };
    jsonrpc::error_response(
        id,
        jsonrpc::INVALID_REQUEST,
        &message,
        Some(json!({ "limit": limit, "http_status": 413 })),
    )
}

/// An HTTP answer that is not JSON-RPC (a load balancer's 502 page, an ingress's 404): the status
/// and the start of the body, for the person reading the client's log.
pub fn http_failure(id: Option<&Id>, status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    // A JSON body that is not JSON-RPC may still say what went wrong (`{"error": "..."}`).
    let said = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        let e = v.get("error")?;
        e.as_str()
            .or_else(|| e.get("message").and_then(Value::as_str))
            .map(str::to_owned)
    });
    let reason = status.canonical_reason().unwrap_or("");
    let message = match said {
        Some(s) => format!(
            "the gateway answered HTTP {} {reason}: {s}",
            status.as_u16()
        ),
        None => format!("the gateway answered HTTP {} {reason}", status.as_u16()),
    };
    let mut data = json!({ "http_status": status.as_u16() });
    if !text.is_empty() {
        let quoted: String = text.chars().take(QUOTE_LIMIT).collect();
        data["body"] = json!(quoted);
    }
    jsonrpc::error_response(id, ADAPTER_ERROR, message.trim_end(), Some(data))
}

/// The gateway accepted a request and sent no answer to it.
pub fn no_answer(id: Option<&Id>, status: StatusCode, detail: &str) -> String {
    jsonrpc::error_response(
        id,
        ADAPTER_ERROR,
        detail,
        Some(json!({ "http_status": status.as_u16() })),
    )
}

/// Whether `v` is a JSON-RPC error response.
pub fn is_error_response(v: &Value) -> bool {
    v.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && v.get("error").is_some_and(Value::is_object)
}

/// `data.reason` of a JSON-RPC error response.
pub fn reason_of(v: &Value) -> Option<&str> {
    v.pointer("/error/data/reason").and_then(Value::as_str)
}

/// The id of a request as a JSON value, to compare with the ids of answers.
pub fn id_value(id: &Id) -> Value {
    serde_json::from_str(&id.0).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_failures_quote_status_and_body() {
        let v: Value = serde_json::from_str(&http_failure(
            Some(&Id("4".into())),
            StatusCode::BAD_GATEWAY,
            b"<html>upstream down</html>",
        ))
        .unwrap();
        assert_eq!(v["id"], 4);
        assert_eq!(v["error"]["code"], ADAPTER_ERROR);
        assert_eq!(v["error"]["data"]["http_status"], 502);
        assert_eq!(
            v["error"]["message"],
            "the gateway answered HTTP 502 Bad Gateway"
        );
        let v: Value = serde_json::from_str(&http_failure(
            None,
            StatusCode::FORBIDDEN,
            br#"{"error":"forbidden by ingress"}"#,
        ))
        .unwrap();
        assert_eq!(
            v["error"]["message"],
            "the gateway answered HTTP 403 Forbidden: forbidden by ingress"
        );
        assert_eq!(v["id"], Value::Null);
    }
}
