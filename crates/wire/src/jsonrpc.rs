//! Strict reading of client→server JSON-RPC messages.
//!
//! The gateway decides on what it reads here and then forwards the original bytes, so this reader
//! must never disagree with a lenient one about what a message means. It therefore refuses
//! anything two parsers could read differently: duplicate keys among the fields it decides on
//! (`jsonrpc`, `id`, `method`, `params`, `params.name`, `params._meta`, `params.uri`), positional
//! (array) params, non-string methods or names, ids that are neither strings nor integers, lone
//! surrogates, trailing bytes. Escapes like `tools\u002fcall` decode the same in every parser.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::method::{Governance, TargetKind, governance};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
/// Stateless era: an `Mcp-*` header disagrees with the body (as the SDKs answer it).
pub const HEADER_MISMATCH: i64 = -32020;
/// Denied by the server's policy; `data.reason` says why.
pub const POLICY_DENIED: i64 = -32003;
/// The caller must authenticate (HTTP 401 carries the same).
pub const UNAUTHENTICATED: i64 = -32001;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC id: string or integer. Kept as the raw JSON text so it is echoed byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Id(pub String);

/// One message a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Notification {
        method: String,
    },
    /// A client's answer to a server request (sampling, elicitation, roots).
    Response {
        id: Id,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub id: Id,
    pub method: String,
    /// `params.name` (tools/call, prompts/get) when present.
    pub name: Option<String>,
    /// `params.uri` (resources/read) when present.
    pub uri: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (stateless era).
    pub meta_protocol_version: Option<String>,
    /// `params.protocolVersion` of an `initialize` request.
    pub initialize_version: Option<String>,
    /// `params.ref` of a `completion/complete` request: the prompt or resource it completes for.
    pub reference: Option<(TargetKind, String)>,
}

impl Request {
    pub fn is_tool_call(&self) -> bool {
        self.method == "tools/call"
    }

    /// The tool, prompt or resource this request acts on, for the methods decided against one.
    pub fn target(&self) -> Option<(TargetKind, &str)> {
        match governance(&self.method) {
            Governance::Target(_) if self.method == "completion/complete" => self
                .reference
                .as_ref()
                .map(|(kind, name)| (*kind, name.as_str())),
            Governance::Target(TargetKind::Resource) => {
                self.uri.as_deref().map(|u| (TargetKind::Resource, u))
            }
            Governance::Target(kind) => self.name.as_deref().map(|n| (kind, n)),
            _ => None,
        }
    }
}

impl Default for Id {
    fn default() -> Self {
        Id("null".to_owned())
    }
}

/// What a POST body held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

/// Why a body was refused, as a JSON-RPC error code and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    /// The id of the offending request when it could be read.
    pub id: Option<Id>,
}

impl Refusal {
    fn invalid(message: impl Into<String>, id: Option<Id>) -> Self {
        Self {
            code: INVALID_REQUEST,
            message: message.into(),
            id,
        }
    }
}

/// Top-level fields kept raw. `present` makes `"id": null` present-and-null rather than absent,
/// which would otherwise turn a malformed request into a notification.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
    uri: Option<String>,
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<serde_json::Value>,
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
    #[serde(rename = "ref")]
    reference: Option<Reference>,
}

/// `params.ref` of `completion/complete`.
#[derive(Deserialize)]
struct Reference {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    uri: Option<String>,
}

impl Reference {
    fn target(self) -> Option<(TargetKind, String)> {
        match (self.kind.as_str(), self.name, self.uri) {
            ("ref/prompt", Some(name), _) => Some((TargetKind::Prompt, name)),
            ("ref/resource", _, Some(uri)) => Some((TargetKind::Resource, uri)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<String>,
}

/// Reads a POST body.
pub fn parse(bytes: &[u8]) -> Result<Body, Refusal> {
    let first = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| Refusal {
            code: PARSE_ERROR,
            message: "empty body: expected a JSON-RPC message".into(),
            id: None,
        })?;
    let parse_error = |e: serde_json::Error| Refusal {
        code: PARSE_ERROR,
        message: format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
        id: None,
    };
    if *first == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(parse_error)?;
        if items.is_empty() {
            return Err(Refusal::invalid("empty batch", None));
        }
        let messages = items
            .into_iter()
            .map(|raw| message(raw.get()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Body::Batch(messages));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Refusal {
        code: PARSE_ERROR,
        message: format!("body is not UTF-8: {e}"),
        id: None,
    })?;
    // Validates the whole document (trailing bytes, syntax) before looking at fields.
    let _: &RawValue = serde_json::from_str(text).map_err(parse_error)?;
    Ok(Body::Single(message(text)?))
}

fn message(text: &str) -> Result<Message, Refusal> {
    let wire: Wire<'_> = serde_json::from_str(text)
        .map_err(|e| Refusal::invalid(format!("not a JSON-RPC message object: {e}"), None))?;
    let id = wire.id.map(read_id).transpose()?;
    match wire.jsonrpc.map(|v| v.get()) {
        Some("\"2.0\"") => {}
        _ => return Err(Refusal::invalid("`jsonrpc` must be \"2.0\"", id)),
    }
    let Some(method) = wire.method else {
        return match (id, wire.result.is_some() != wire.error.is_some()) {
            (Some(id), true) => Ok(Message::Response { id }),
            (id, _) => Err(Refusal::invalid(
                "a message needs `method`, or `id` with exactly one of `result` and `error`",
                id,
            )),
        };
    };
    let method: String = serde_json::from_str(method.get())
        .map_err(|_| Refusal::invalid("`method` must be a string", id.clone()))?;
    if method.is_empty() {
        return Err(Refusal::invalid("`method` must not be empty", id));
    }
    if wire.result.is_some() || wire.error.is_some() {
        return Err(Refusal::invalid(
            "a request must not carry `result` or `error`",
            id,
        ));
    }
    let params = match wire.params {
        None => None,
        Some(raw) if raw.get().starts_with('{') => Some(
            serde_json::from_str::<Params>(raw.get())
                .map_err(|e| Refusal::invalid(format!("invalid `params`: {e}"), id.clone()))?,
        ),
        Some(_) => return Err(Refusal::invalid("`params` must be an object", id)),
    };
    let Some(id) = id else {
        return Ok(Message::Notification { method });
    };
    let (name, uri, meta_protocol_version, initialize_version, reference) = match params {
        None => (None, None, None, None, None),
        Some(p) => (
            p.name,
            p.uri,
            p.meta.and_then(|m| m.protocol_version),
            p.protocol_version
                .and_then(|v| v.as_str().map(str::to_owned)),
            p.reference.and_then(Reference::target),
        ),
    };
    let request = Request {
        id,
        method,
        name,
        uri,
        meta_protocol_version,
        initialize_version,
        reference,
    };
    // A method decided against an item must name one: without it there is nothing to decide on.
    if let Governance::Target(kind) = governance(&request.method)
        && request.target().is_none_or(|(_, n)| n.is_empty())
    {
        let needs = match (request.method.as_str(), kind) {
            ("completion/complete", _) => {
                "`params.ref` (a ref/prompt with `name` or a ref/resource with `uri`)"
            }
            (_, TargetKind::Resource) => "`params.uri`",
            _ => "`params.name`",
        };
        return Err(Refusal::invalid(
            format!("{} needs {needs}", request.method),
            Some(request.id),
        ));
    }
    Ok(Message::Request(request))
}

fn read_id(raw: &RawValue) -> Result<Id, Refusal> {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(_)) => Ok(Id(raw.get().to_owned())),
        Ok(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Id(raw.get().to_owned()))
        }
        _ => Err(Refusal::invalid(
            "`id` must be a string or an integer",
            None,
        )),
    }
}

/// A JSON-RPC error response. `id` is the raw JSON of the request id, or `null`.
pub fn error_response(
    id: Option<&Id>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> String {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{}}}",
        id.map_or("null", |i| i.0.as_str()),
        error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Result<Message, Refusal> {
        match parse(text.as_bytes())? {
            Body::Single(m) => Ok(m),
            Body::Batch(_) => panic!("batch"),
        }
    }

    #[test]
    fn reads_a_tool_call() {
        let m = single(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        let Message::Request(r) = m else { panic!() };
        assert_eq!(
            (r.id.0.as_str(), r.method.as_str(), r.name.as_deref()),
            ("7", "tools/call", Some("echo"))
        );
        assert_eq!(r.meta_protocol_version.as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn escapes_decode_to_the_same_reading() {
        let Message::Request(r) = single(r#"{"jsonrpc":"2.0","id":"a","method":"tools\u002fcall","params":{"name":"ec\u0068o"}}"#).unwrap() else { panic!() };
        assert!(r.is_tool_call());
        assert_eq!(r.name.as_deref(), Some("echo"));
        assert_eq!(r.id.0, "\"a\"");
    }

    #[test]
    fn ambiguous_json_is_refused() {
        for (body, why) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
                "duplicate field `method`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"wipe"}}"#,
                "duplicate field `name`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
                "duplicate field `params`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
                "duplicate field `id`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["wipe"]}"#,
                "`params` must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
                "invalid",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}} {"x":1}"#,
                "trailing",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                "`id` must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "`id` must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                "`method` must be a string",
            ),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "\"2.0\""),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                "invalid `params`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                "needs `params.name`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"a","io.modelcontextprotocol/protocolVersion":"b"}}}"#,
                "duplicate",
            ),
        ] {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.message.contains(why), "{body}: {err}");
        }
    }

    #[test]
    fn garbage_is_a_parse_error() {
        for body in [
            "",
            "  ",
            "{",
            "nul",
            "\u{feff}{}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"",
        ] {
            assert_eq!(
                parse(body.as_bytes()).unwrap_err().code,
                PARSE_ERROR,
                "{body:?}"
            );
        }
    }

    #[test]
    fn notifications_responses_and_batches() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Message::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap(),
            Message::Response {
                id: Id("\"s1\"".into())
            }
        );
        let Body::Batch(items) = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wipe"}}]"#).unwrap() else { panic!() };
        assert_eq!(items.len(), 2);
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}]"#).is_err());
    }

    #[test]
    fn every_decided_method_names_its_target() {
        let target = |body: &str| match single(body).unwrap() {
            Message::Request(r) => r.target().map(|(k, n)| (k, n.to_owned())),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            target(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#),
            Some((TargetKind::Prompt, "greet".into()))
        );
        assert_eq!(
            target(
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}"#
            ),
            Some((TargetKind::Resource, "file:///a".into()))
        );
        assert_eq!(
            target(
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"test://{id}"},"argument":{"name":"id","value":"1"}}}"#
            ),
            Some((TargetKind::Resource, "test://{id}".into()))
        );
        assert_eq!(
            target(
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}}"#
            ),
            Some((TargetKind::Prompt, "p".into()))
        );
        assert_eq!(
            target(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            None
        );
        for (body, why) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}"#,
                "needs `params.name`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#,
                "needs `params.uri`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}"#,
                "needs `params.ref`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"b"}}}"#,
                "duplicate",
            ),
        ] {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.message.contains(why), "{body}: {err}");
        }
    }

    #[test]
    fn error_response_echoes_the_raw_id() {
        let r = error_response(
            Some(&Id("\"abc\"".into())),
            POLICY_DENIED,
            "denied",
            Some(serde_json::json!({"reason": "tool_denied"})),
        );
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["data"]["reason"], "tool_denied");
    }
}
