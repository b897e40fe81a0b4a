//! The audit event: one record per decision the gateway takes on an HTTP request or RPC.
//!
//! The JSON form is the contract with the ingest and with readers of the JSON-lines file:
//! snake_case field names, `time` in RFC 3339, and every `Option` field left out when `None`.
//! Fields may be added; existing ones keep their name and meaning.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What the gateway did with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record. Build it with [`AuditEvent::new`], then assign the optional fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// UUID v4, set by [`AuditEvent::new`]; delivery is at-least-once and the ingest dedupes on it.
    pub event_id: String,
    /// When the decision was taken (RFC 3339 in JSON).
    pub time: Timestamp,
    /// The component that emitted the event, e.g. `hello-gateway`.
    pub source: String,
    /// The MCP server (the `MCPServer` name).
    pub server: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The team owning the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,

    // Identity of the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The caller's team (not the server's: see `team_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,

    // The request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    pub http_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_method: Option<String>,
    /// The JSON-RPC `id` as sent (string or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,

    // The decision.
    pub decision: Decision,
    /// Stable reason code, e.g. `allowed`, `trust_too_low`, `invalid_token`.
    pub reason: String,
    /// False when the policy is in `observe` mode: a deny was recorded but the call went through.
    pub enforced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consented_trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_trust: Option<String>,
    /// The grant that decided, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_grant: Option<String>,
    /// The session that was used, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,

    // The outcome.
    /// HTTP status returned by the upstream MCP server (absent when the call was not forwarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Time spent in the gateway for this request, upstream included.
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// For `tools/list`: how many tools were returned and how many were filtered out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_listed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_hidden: Option<u32>,
    /// Tool-call arguments, only when the operator enabled argument capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
}

impl AuditEvent {
    /// A new event with a fresh `event_id`, `time` = now, `enforced = true`, `latency_ms = 0`
    /// and every optional field `None`.
    pub fn new(
        source: impl Into<String>,
        server: impl Into<String>,
        namespace: impl Into<String>,
        http_method: impl Into<String>,
        decision: Decision,
        reason: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            time: Timestamp::now(),
            source: source.into(),
            server: server.into(),
            namespace: namespace.into(),
            cluster: None,
            team_id: None,
            human_id: None,
            agent_id: None,
            subject_team_id: None,
            session_id: None,
            protocol_version: None,
            http_method: http_method.into(),
            rpc_method: None,
            rpc_id: None,
            tool: None,
            decision,
            reason: reason.into(),
            enforced: true,
            required_trust: None,
            admin_trust: None,
            consented_trust: None,
            effective_trust: None,
            matched_grant: None,
            matched_session: None,
            policy_revision: None,
            policy_version: None,
            upstream_status: None,
            latency_ms: 0.0,
            trace_id: None,
            tools_listed: None,
            tools_hidden: None,
            arguments: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_snake_case_and_skips_none() {
        let mut e = AuditEvent::new(
            "gw",
            "hello",
            "team-a",
            "POST",
            Decision::Deny,
            "trust_too_low",
        );
        e.tool = Some("upper".into());
        e.rpc_id = Some(serde_json::json!(7));
        let v = serde_json::to_value(&e).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o["decision"], "deny");
        assert_eq!(o["reason"], "trust_too_low");
        assert_eq!(o["rpc_id"], 7);
        assert!(!o.contains_key("cluster"));
        assert!(!o.contains_key("arguments"));
        assert!(uuid::Uuid::parse_str(o["event_id"].as_str().unwrap()).is_ok());
        let time = o["time"].as_str().unwrap();
        assert!(time.parse::<Timestamp>().is_ok(), "{time}");
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn ids_are_unique() {
        let a = AuditEvent::new("gw", "s", "n", "POST", Decision::Allow, "allowed");
        let b = AuditEvent::new("gw", "s", "n", "POST", Decision::Allow, "allowed");
        assert_ne!(a.event_id, b.event_id);
    }
}
