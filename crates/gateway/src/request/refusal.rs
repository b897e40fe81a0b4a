//! Why the gateway refused a request, in one enum shared by the response, the audit event and the
//! metrics, and the one place where a refusal becomes an HTTP response.

use http::{StatusCode, header};
use mcp_runtime_policy::{Decision, PolicyDocument};
use mcp_runtime_wire::jsonrpc::{self, Id};
use serde_json::{Value, json};

use super::{GatewayBody, json_response};
use crate::auth::AuthFailure;

/// A reason code: stable strings, matched by clients (`error.data.reason`), audit readers and
/// dashboards (`reason` label of `mcp_gateway_decisions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Decided by the policy (allowed or one of its denial reasons).
    Policy(mcp_runtime_policy::Reason),
    /// The caller is not authenticated (the code comes from [`AuthFailure::reason`]).
    Auth(&'static str),
    PolicyUnavailable,
    BodyTooLarge,
    BodyTimeout,
    UnsupportedContentType,
    ParseError,
    InvalidRequest,
    HeaderMismatch,
    BatchNotAllowed,
    /// A request method sent without an id, i.e. as a notification.
    NotificationNotAllowed,
    /// Not a client→server MCP method.
    MethodNotAllowed,
    /// Not executed because another call of its batch was denied.
    BatchDenied,
    UpstreamError,
    UpstreamTimeout,
    /// The upstream's answer could not be inspected, so it is not shown (fail closed).
    ResponseNotFilterable,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Policy(r) => r.as_str(),
            Reason::Auth(code) => code,
            Reason::PolicyUnavailable => "policy_unavailable",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::UnsupportedContentType => "unsupported_content_type",
            Reason::ParseError => "parse_error",
            Reason::InvalidRequest => "invalid_request",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::BatchNotAllowed => "batch_not_allowed",
            Reason::NotificationNotAllowed => "notification_not_allowed",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::BatchDenied => "batch_denied",
            Reason::UpstreamError => "upstream_error",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::ResponseNotFilterable => "response_not_filterable",
        }
    }

    pub fn is_allowed(self) -> bool {
        self == Reason::Policy(mcp_runtime_policy::Reason::Allowed)
    }

    /// HTTP status of a refusal with this reason (policy denials of a JSON-RPC request are
    /// answered 200 with a JSON-RPC error, as a server would answer a failed call).
    const fn status(self) -> StatusCode {
        match self {
            Reason::Policy(_) | Reason::MethodNotAllowed | Reason::BatchDenied => StatusCode::OK,
            Reason::Auth(_) => StatusCode::UNAUTHORIZED,
            Reason::PolicyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::ParseError
            | Reason::InvalidRequest
            | Reason::HeaderMismatch
            | Reason::BatchNotAllowed
            | Reason::NotificationNotAllowed => StatusCode::BAD_REQUEST,
            Reason::UpstreamError | Reason::ResponseNotFilterable => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    const fn code(self) -> i64 {
        match self {
            Reason::Policy(_) | Reason::BatchDenied => jsonrpc::POLICY_DENIED,
            Reason::Auth(_) => jsonrpc::UNAUTHENTICATED,
            Reason::ParseError => jsonrpc::PARSE_ERROR,
            Reason::HeaderMismatch => jsonrpc::HEADER_MISMATCH,
            Reason::MethodNotAllowed => jsonrpc::METHOD_NOT_FOUND,
            Reason::InvalidRequest
            | Reason::BodyTooLarge
            | Reason::UnsupportedContentType
            | Reason::BatchNotAllowed
            | Reason::NotificationNotAllowed => jsonrpc::INVALID_REQUEST,
            Reason::PolicyUnavailable
            | Reason::BodyTimeout
            | Reason::UpstreamError
            | Reason::UpstreamTimeout
            | Reason::ResponseNotFilterable => jsonrpc::INTERNAL_ERROR,
        }
    }
}

impl From<mcp_runtime_policy::Reason> for Reason {
    fn from(r: mcp_runtime_policy::Reason) -> Self {
        Reason::Policy(r)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason, a sentence for the client, the id it answers and extra `data` fields.
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
    pub id: Option<Id>,
    pub data: Option<Value>,
    /// HTTP status other than the reason's own (e.g. 403 for a denied GET stream).
    pub status: Option<StatusCode>,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            id: None,
            data: None,
            status: None,
        }
    }

    pub fn with_id(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// A malformed body or header, as the wire reader refused it.
    pub fn from_wire(reason: Reason, refusal: jsonrpc::Refusal) -> Self {
        Self::new(reason, refusal.message).with_id(refusal.id)
    }

    /// A policy denial, carrying the decision's attribution.
    pub fn denied(id: Option<Id>, target: Option<(&str, &str)>, d: &Decision<'_>) -> Self {
        let mut data = json!({ "policy_revision": d.policy_revision });
        if let Some((kind, name)) = target {
            data[kind] = json!(name);
        }
        let fields = [
            ("required_trust", d.required_trust),
            ("admin_trust", d.admin_trust),
            ("consented_trust", d.consented_trust),
            ("effective_trust", d.effective_trust),
        ];
        for (key, value) in fields {
            if let Some(t) = value {
                data[key] = json!(t.as_str());
            }
        }
        if let Some(s) = d.tool.side_effect {
            data["required_side_effect"] = json!(s.as_str());
        }
        if let Some(g) = d.grant_ref() {
            data["matched_grant"] = json!(g);
        }
        if let Some(s) = d.session_ref() {
            data["matched_session"] = json!(s);
        }
        Self {
            reason: Reason::Policy(d.reason),
            message: format!("Denied by policy ({}): {}", d.reason, d.reason.summary()),
            id,
            data: Some(data),
            status: None,
        }
    }

    /// The JSON-RPC error object text of this refusal.
    pub fn to_json_rpc(&self) -> String {
        let mut data = self.data.clone().unwrap_or_else(|| json!({}));
        data["reason"] = json!(self.reason.as_str());
        jsonrpc::error_response(
            self.id.as_ref(),
            self.reason.code(),
            &self.message,
            Some(data),
        )
    }

    pub fn into_response(self) -> http::Response<GatewayBody> {
        let status = self.status.unwrap_or(self.reason.status());
        json_response(status, self.to_json_rpc())
    }
}

/// HTTP 401 with the challenge of the MCP authorization spec (`resource_metadata` in oauth
/// mode), or 503 when the fault is the gateway's.
pub fn unauthorized(
    doc: &PolicyDocument,
    failure: &AuthFailure,
    resource_metadata: Option<&str>,
) -> http::Response<GatewayBody> {
    let mut refusal = Refusal::new(Reason::Auth(failure.reason()), failure.to_string());
    if failure.is_gateway_fault() {
        tracing::error!(error = %failure, "gateway cannot authenticate callers; refusing the request");
        refusal.status = Some(StatusCode::SERVICE_UNAVAILABLE);
        return refusal.into_response();
    }
    let mut challenge = match resource_metadata {
        Some(url) => format!("Bearer realm=\"mcp-runtime\", resource_metadata=\"{url}\""),
        None => format!(
            "Bearer realm=\"mcp-runtime\", scope=\"{}/{}\"",
            doc.server.namespace, doc.server.name
        ),
    };
    if let Some(error) = failure.bearer_error() {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            failure.to_string().replace('"', "'")
        ));
    }
    // RFC 6750 3.1: a malformed request (a credential or identity header sent twice) is 400.
    if failure.bearer_error() == Some("invalid_request") {
        refusal.status = Some(StatusCode::BAD_REQUEST);
    }
    let mut resp = refusal.into_response();
    if let Ok(v) = http::HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_reason_keeps_its_code() {
        for r in mcp_runtime_policy::Reason::ALL {
            assert_eq!(Reason::from(r).as_str(), r.as_str());
        }
    }

    #[test]
    fn refusals_answer_with_the_reason_in_data() {
        let r = Refusal::new(Reason::MethodNotAllowed, "no").with_id(Some(Id("3".into())));
        let v: Value = serde_json::from_str(&r.to_json_rpc()).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        assert_eq!(v["error"]["data"]["reason"], "method_not_allowed");
        assert_eq!(r.into_response().status(), StatusCode::OK);
    }
}
