//! Protocol eras: what changes between the handshake era (up to 2025-11-25) and the stateless era
//! (2026-07-28 and later) for a proxy that reads requests.

use http::{HeaderMap, HeaderValue};

use crate::jsonrpc::{self, Refusal, Request};

/// Protocol versions whose JSON-RPC layer allows batches (removed in 2025-06-18).
pub const BATCH_VERSIONS: [&str; 2] = ["2024-11-05", "2025-03-26"];
/// Without a version header, the Streamable HTTP spec says to assume this one.
pub const DEFAULT_VERSION: &str = "2025-03-26";
/// First protocol version of the stateless era.
pub const STATELESS_FROM: &str = "2026-07-28";

/// Whether a body may be a JSON-RPC batch under `version` (absent: [`DEFAULT_VERSION`]).
pub fn allows_batches(version: Option<&str>) -> bool {
    BATCH_VERSIONS.contains(&version.unwrap_or(DEFAULT_VERSION))
}

/// Whether `version` belongs to the stateless era.
pub fn is_stateless(version: Option<&str>) -> bool {
    version.is_some_and(|v| v >= STATELESS_FROM)
}

/// Header `name` was sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// The one value of header `name`, or [`Repeated`] when it is sent more than once: two values
/// could be read differently by two parsers, so neither is trusted. The one mechanism for every
/// header a proxy decides on (credentials, content type, protocol headers).
pub fn sent_once<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a HeaderValue>, Repeated> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(Repeated),
        None => Ok(first),
    }
}

/// The one value of header `name` as text, or a message saying why it cannot be read.
pub fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let Some(value) = sent_once(headers, name)
        .map_err(|Repeated| format!("the {name} header must be sent once, not several times"))?
    else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(v) => Ok(Some(v.trim())),
        Err(_) => Err(format!("the {name} header is not visible ASCII")),
    }
}

/// `Mcp-Method` and `Mcp-Name` must mirror the body: required in the stateless era, and in any
/// era a header that is present must agree and appear once.
pub fn check_headers(
    headers: &HeaderMap,
    request: &Request,
    version: Option<&str>,
) -> Result<(), Refusal> {
    let stateless = is_stateless(version);
    let mismatch = |message: String| Refusal {
        code: jsonrpc::HEADER_MISMATCH,
        message,
        id: Some(request.id.clone()),
    };
    match single_header(headers, "mcp-method").map_err(mismatch)? {
        Some(m) if m != request.method => {
            return Err(mismatch(format!(
                "Mcp-Method header `{m}` does not match the body's method `{}`",
                request.method
            )));
        }
        None if stateless => {
            return Err(mismatch(format!(
                "the Mcp-Method header is required in protocol version {STATELESS_FROM} and later"
            )));
        }
        _ => {}
    }
    if !names_target(&request.method) {
        return Ok(());
    }
    let named = mirrored_name(request);
    let header = single_header(headers, "mcp-name").map_err(mismatch)?;
    match (header.map(decode_header_value), named) {
        (Some(Some(h)), Some(body)) if h == body => Ok(()),
        (Some(_), body) => Err(mismatch(format!(
            "Mcp-Name header does not match the body's name `{}`",
            body.unwrap_or_default()
        ))),
        (None, _) if stateless => Err(mismatch(format!(
            "the Mcp-Name header is required for this method in protocol version {STATELESS_FROM} and later"
        ))),
        (None, _) => Ok(()),
    }
}

/// Whether `method` is one whose `Mcp-Name` header mirrors a field of the body.
pub fn names_target(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// The body field the `Mcp-Name` header mirrors: `params.name` of `tools/call` and
/// `prompts/get`, `params.uri` of `resources/read`; `None` for other methods.
pub fn mirrored_name(request: &Request) -> Option<&str> {
    match request.method.as_str() {
        "tools/call" | "prompts/get" => request.name.as_deref(),
        "resources/read" => request.uri.as_deref(),
        _ => None,
    }
}

/// A header value for `v`, as [`decode_header_value`] reads it back: visible ASCII as it is,
/// anything else (non-ASCII, control characters, edge spaces a header would lose, or text that
/// itself looks encoded) as `=?base64?<data>?=`.
pub fn encode_header_value(v: &str) -> String {
    let visible = v.bytes().all(|b| (0x20..0x7f).contains(&b));
    let edge_space = v.starts_with(' ') || v.ends_with(' ');
    let looks_encoded = v.starts_with("=?base64?") && v.ends_with("?=");
    let plain = visible && !edge_space && !looks_encoded;
    if plain {
        return v.to_owned();
    }
    use base64::Engine;
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(v)
    )
}

/// Header values carry non-ASCII names as `=?base64?<data>?=`.
pub fn decode_header_value(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;
    use crate::jsonrpc::Id;

    fn request(method: &str, name: Option<&str>) -> Request {
        Request {
            id: Id("1".into()),
            method: method.into(),
            name: name.map(Into::into),
            ..Request::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn stateless_headers_must_mirror_the_body() {
        let call = request("tools/call", Some("echo"));
        let v = Some("2026-07-28");
        let ok = |pairs: &[(&str, &str)], version| check_headers(&headers(pairs), &call, version);
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "echo")], v).is_ok());
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "wipe")], v).is_err());
        assert!(ok(&[("mcp-method", "tools/list"), ("mcp-name", "echo")], v).is_err());
        assert!(
            ok(&[("mcp-method", "tools/call")], v).is_err(),
            "name required"
        );
        assert!(ok(&[], v).is_err(), "method required");
        assert!(
            ok(&[], Some("2025-11-25")).is_ok(),
            "handshake era: optional"
        );
        assert!(
            ok(&[("mcp-name", "wipe")], Some("2025-11-25")).is_err(),
            "present must agree"
        );
        // =?base64?ZWNobw==?= is "echo".
        assert!(
            ok(
                &[
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "=?base64?ZWNobw==?=")
                ],
                v
            )
            .is_ok()
        );
    }

    #[test]
    fn a_header_sent_twice_is_refused_even_when_one_value_agrees() {
        let call = request("tools/call", Some("echo"));
        let v = Some("2026-07-28");
        for pairs in [
            &[
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ][..],
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-name", "wipe"),
            ][..],
        ] {
            let err = check_headers(&headers(pairs), &call, v).unwrap_err();
            assert!(err.message.contains("once"), "{pairs:?}: {err}");
        }
        let pairs = [("mcp-name", "echo"), ("mcp-name", "echo")];
        let err = check_headers(&headers(&pairs), &call, Some("2025-11-25")).unwrap_err();
        assert!(err.message.contains("once"), "{err}");
    }

    #[test]
    fn encoded_header_values_read_back_as_the_body_says() {
        for v in [
            "echo",
            "n\u{e4}me",
            " padded ",
            "=?base64?ZWNobw==?=",
            "a\nb",
            "",
        ] {
            let encoded = encode_header_value(v);
            assert!(
                HeaderValue::from_str(&encoded).is_ok(),
                "{v:?} -> {encoded:?}"
            );
            assert_eq!(
                decode_header_value(&encoded).as_deref(),
                Some(v),
                "{encoded}"
            );
        }
        assert_eq!(encode_header_value("echo"), "echo");
        let read = request("resources/read", None);
        assert_eq!(mirrored_name(&read), None);
        assert!(names_target("resources/read") && !names_target("tools/list"));
    }

    #[test]
    fn eras() {
        assert!(allows_batches(None));
        assert!(allows_batches(Some("2024-11-05")));
        assert!(!allows_batches(Some("2025-06-18")));
        assert!(is_stateless(Some("2026-07-28")));
        assert!(!is_stateless(Some("2025-11-25")));
        assert!(!is_stateless(None));
    }
}
