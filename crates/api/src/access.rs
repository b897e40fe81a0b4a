//! `MCPAccessGrant` (who may call which tools of a server, up to what trust) and
//! `MCPAgentSession` (an agent's consented, revocable, expiring session on a server).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use mcp_runtime_policy::{SideEffect, Trust, Verdict};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::server::SecretKeyRef;

/// The MCPServer a grant or session applies to.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerReference {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Default: the namespace of the grant or session. Another namespace counts only if its
    /// server lists this one in `spec.access.allowedNamespaces`.
    pub namespace: Option<String>,
}

/// Who a grant or session is for: every field that is set must match the caller.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("(has(self.humanID) && self.humanID != '') || (has(self.agentID) && self.agentID != '') || (has(self.teamID) && self.teamID != '')").message("subject needs at least one of humanID, agentID or teamID: wildcard subjects are not allowed"))]
#[serde(deny_unknown_fields)]
pub struct SubjectSpec {
    #[serde(rename = "humanID")]
    #[schemars(length(max = 256))]
    pub human_id: Option<String>,
    #[serde(rename = "agentID")]
    #[schemars(length(max = 256))]
    pub agent_id: Option<String>,
    #[serde(rename = "teamID")]
    #[schemars(length(max = 128), pattern(r"^\S*$"))]
    pub team_id: Option<String>,
}

/// Grants a subject access to a server's tools.
#[skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpruntime.org",
    version = "v1alpha1",
    kind = "MCPAccessGrant",
    plural = "mcpaccessgrants",
    singular = "mcpaccessgrant",
    namespaced,
    status = "AccessStatus",
    shortname = "mcpgrant",
    shortname = "mcpg",
    category = "mcp",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.serverRef.name"}"#,
    printcolumn = r#"{"name":"Human","type":"string","jsonPath":".spec.subject.humanID"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.subject.agentID"}"#,
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.subject.teamID"}"#,
    printcolumn = r#"{"name":"Trust","type":"string","jsonPath":".spec.maxTrust"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MCPAccessGrantSpec {
    pub server_ref: ServerReference,
    pub subject: SubjectSpec,
    /// Highest trust this grant confers.
    #[serde(default)]
    pub max_trust: Trust,
    /// Side effects the grant permits; a tool whose side effect is not listed is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_side_effects: Vec<SideEffect>,
    pub policy_version: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Per-tool rules. None: the grant covers every tool. Some: only the tools named here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("tool rule names must be unique within a grant"))]
    pub tool_rules: Vec<ToolRuleSpec>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRuleSpec {
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    pub decision: Verdict,
    /// Raises the trust this tool needs under this grant.
    pub required_trust: Option<Trust>,
}

/// An agent's session on a server: the trust its human consented to, until it expires or is
/// revoked.
#[skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpruntime.org",
    version = "v1alpha1",
    kind = "MCPAgentSession",
    plural = "mcpagentsessions",
    singular = "mcpagentsession",
    namespaced,
    status = "AccessStatus",
    shortname = "mcpsession",
    shortname = "mcpsess",
    category = "mcp",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.serverRef.name"}"#,
    printcolumn = r#"{"name":"Human","type":"string","jsonPath":".spec.subject.humanID"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.subject.agentID"}"#,
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.subject.teamID"}"#,
    printcolumn = r#"{"name":"Trust","type":"string","jsonPath":".spec.consentedTrust"}"#,
    printcolumn = r#"{"name":"Revoked","type":"boolean","jsonPath":".spec.revoked"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MCPAgentSessionSpec {
    pub server_ref: ServerReference,
    pub subject: SubjectSpec,
    /// Trust the human consented to; caps the grant's `maxTrust`.
    #[serde(default)]
    pub consented_trust: Trust,
    /// The first instant at which the session is no longer valid.
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    pub upstream_token_secret_ref: Option<SecretKeyRef>,
    pub policy_version: Option<String>,
}

/// Phase of a grant or session, as reported by the operator.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessPhase {
    Active,
    Disabled,
    Invalid,
    ServerNotFound,
    // The server does not accept grants or sessions from this namespace
    // (`spec.access.allowedNamespaces`). (A plain comment: a doc comment would change the
    // generated enum schema.)
    Refused,
    Expired,
    Revoked,
}

/// Observed state of a grant or session.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessStatus {
    pub phase: Option<AccessPhase>,
    pub message: Option<String>,
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ServerReference {
    /// The referenced server's namespace, defaulting to the referring object's.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(own)
    }
}
