//! `MCPServer`: an MCP server published on the cluster, optionally behind the governing gateway.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use mcp_runtime_policy::{AuthMode, PolicyMode, RiskLevel, SideEffect, Trust, Verdict};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

pub const DEFAULT_PORT: i32 = 8088;
pub const DEFAULT_SERVICE_PORT: i32 = 80;
pub const DEFAULT_GATEWAY_PORT: i32 = 8091;

/// Desired state of an MCP server.
#[skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpruntime.org",
    version = "v1alpha1",
    kind = "MCPServer",
    plural = "mcpservers",
    singular = "mcpserver",
    namespaced,
    status = "MCPServerStatus",
    shortname = "mcps",
    shortname = "mcpserver",
    category = "mcp",
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.teamID"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Gateway","type":"boolean","jsonPath":".status.gatewayReady"}"#,
    printcolumn = r#"{"name":"Policy","type":"boolean","jsonPath":".status.policyReady"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.deploymentReady"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.gateway) || !self.gateway.enabled || self.gateway.port != self.port").message("gateway.port must differ from port: the gateway listens beside the server in the same pod").field_path(".gateway.port"),
    validation = Rule::new("!has(self.rollout) || self.rollout.strategy != 'Canary' || (has(self.rollout.canaryReplicas) && self.rollout.canaryReplicas > 0 && self.rollout.canaryReplicas < self.replicas)").message("rollout.strategy Canary needs 0 < rollout.canaryReplicas < replicas").field_path(".rollout.canaryReplicas"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MCPServerSpec {
    /// Platform team that owns the server.
    #[serde(rename = "teamID")]
    #[schemars(length(max = 128), pattern(r"^\S+$"))]
    pub team_id: Option<String>,
    pub description: Option<String>,
    /// Container image of the MCP server (`registry/repo[:tag|@digest]`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Tag appended when `image` has neither tag nor digest.
    pub image_tag: Option<String>,
    /// Registry host that replaces the one in `image`.
    pub registry_override: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_provisioned_registry: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Port the MCP server listens on.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Port of the Service in front of the server (or of its gateway).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub service_port: i32,
    /// Public path of the MCP endpoint; default `/{publicPathPrefix or name}/mcp`.
    pub ingress_path: Option<String>,
    pub ingress_host: Option<String>,
    /// First path segment of the public route; default the server name.
    pub public_path_prefix: Option<String>,
    /// IngressClass; default from the operator's configuration.
    pub ingress_class: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingress_annotations: BTreeMap<String, String>,
    pub resources: Option<ResourceSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env_vars: Vec<SecretEnvVar>,
    /// Tool inventory: what the policy knows about each tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("tool names must be unique"))]
    pub tools: Vec<ToolSpec>,
    /// Prompt inventory: decided like tools when an item has a `sideEffect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("prompt names must be unique"))]
    pub prompts: Vec<InventoryItem>,
    /// Resource inventory by URI (a name ending in `*` covers every URI it prefixes): decided
    /// like tools when an item has a `sideEffect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("resource names must be unique"))]
    pub mcp_resources: Vec<InventoryItem>,
    /// Informational: tasks are admitted with their session, not decided per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.sideEffect))").message("tasks are not decided per item: remove sideEffect"))]
    pub tasks: Vec<InventoryItem>,
    pub auth: Option<AuthSpec>,
    pub policy: Option<PolicySpec>,
    pub session: Option<SessionSpec>,
    pub gateway: Option<GatewaySpec>,
    pub analytics: Option<AnalyticsSpec>,
    pub rollout: Option<RolloutSpec>,
    /// Who may target this server from other namespaces (default: nobody).
    pub access: Option<AccessSpec>,
}

fn default_replicas() -> i32 {
    1
}
fn default_port() -> i32 {
    DEFAULT_PORT
}
fn default_service_port() -> i32 {
    DEFAULT_SERVICE_PORT
}
fn default_gateway_port() -> i32 {
    DEFAULT_GATEWAY_PORT
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub limits: Option<ResourceAmounts>,
    pub requests: Option<ResourceAmounts>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretEnvVar {
    pub name: String,
    pub secret_key_ref: SecretKeyRef,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A tool the server exposes, with what calling it takes.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    pub description: Option<String>,
    /// Least trust a caller needs.
    #[serde(default)]
    pub required_trust: Trust,
    /// What the tool does to the world; a grant must allow it.
    pub side_effect: SideEffect,
    pub risk_level: Option<RiskLevel>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A prompt, resource or task in the server's catalog. A prompt or resource with a
/// `sideEffect` is decided like a tool; without one no grant can authorise it (under
/// `allow-list` every call of it is denied). Tasks are informational.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryItem {
    /// Prompt name, resource URI (ending in `*`: every URI with that prefix) or task name.
    #[schemars(length(min = 1, max = 1024))]
    pub name: String,
    pub description: Option<String>,
    /// Least trust a caller needs.
    #[serde(default)]
    pub required_trust: Trust,
    /// What getting the prompt or reading the resource does to the world; a grant must allow it.
    pub side_effect: Option<SideEffect>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How the gateway identifies callers.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.mode != 'oauth' || (has(self.issuerURL) && self.issuerURL != '')").message("auth.issuerURL is required when auth.mode is oauth").field_path(".issuerURL"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthSpec {
    /// `token` (signed session tokens, default), `oauth` (OIDC JWT), `header` (trusted proxy
    /// headers: only behind an authenticating proxy), `none`, `mtls`.
    #[serde(default)]
    pub mode: AuthMode,
    #[serde(rename = "humanIDHeader")]
    pub human_id_header: Option<String>,
    #[serde(rename = "agentIDHeader")]
    pub agent_id_header: Option<String>,
    #[serde(rename = "teamIDHeader")]
    pub team_id_header: Option<String>,
    #[serde(rename = "sessionIDHeader")]
    pub session_id_header: Option<String>,
    pub token_header: Option<String>,
    #[serde(rename = "issuerURL")]
    pub issuer_url: Option<String>,
    pub audience: Option<String>,
    pub trust_domain: Option<String>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub mode: PolicyMode,
    /// Decision when no grant speaks for a call.
    #[serde(default)]
    pub default_decision: Verdict,
    /// Informational; the gateway evaluates `tools/call`.
    pub enforce_on: Option<String>,
    pub policy_version: Option<String>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSpec {
    /// Every tool call must present a live MCPAgentSession.
    #[serde(default)]
    pub required: bool,
    pub store: Option<String>,
    pub header_name: Option<String>,
    pub max_lifetime: Option<String>,
    pub idle_timeout: Option<String>,
    pub upstream_token_header: Option<String>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default)]
    pub enabled: bool,
    /// Gateway image; default from the operator's configuration.
    pub image: Option<String>,
    #[serde(default = "default_gateway_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Where the gateway forwards; default `http://127.0.0.1:{port}`.
    #[serde(rename = "upstreamURL")]
    pub upstream_url: Option<String>,
    pub strip_prefix: Option<String>,
    pub resources: Option<ResourceSpec>,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalyticsSpec {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(rename = "ingestURL")]
    pub ingest_url: Option<String>,
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

/// Cross-namespace access. A grant or session counts for a server only in the server's own
/// namespace, unless the server lists the grant's or session's namespace here: whoever may
/// create grants in some namespace must not thereby reach every server in the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessSpec {
    /// Namespaces (besides the server's own) whose MCPAccessGrants and MCPAgentSessions may
    /// target this server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new("self.all(n, size(n) <= 63 && n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("allowedNamespaces entries must be namespace names (lowercase DNS labels)"))]
    pub allowed_namespaces: Vec<String>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum RolloutStrategy {
    #[default]
    RollingUpdate,
    Recreate,
    Canary,
}

#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Integer or percentage, e.g. `1` or `25%`.
    #[schemars(pattern(r"^[0-9]+%?$"))]
    pub max_unavailable: Option<String>,
    #[schemars(pattern(r"^[0-9]+%?$"))]
    pub max_surge: Option<String>,
    pub canary_replicas: Option<i32>,
}

/// Lifecycle phase of a server, as reported by the operator.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerPhase {
    Pending,
    PartiallyReady,
    Ready,
    Error,
}

/// Observed state of an MCP server.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    pub phase: Option<ServerPhase>,
    pub message: Option<String>,
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub deployment_ready: bool,
    #[serde(default)]
    pub service_ready: bool,
    #[serde(default)]
    pub ingress_ready: bool,
    #[serde(default)]
    pub gateway_ready: bool,
    #[serde(default)]
    pub policy_ready: bool,
    #[serde(default)]
    pub canary_ready: bool,
    /// Revision of the policy document currently rendered for the gateway.
    pub policy_revision: Option<String>,
}

impl MCPServerSpec {
    /// A spec with only the required image set; everything else at its defaults.
    pub fn with_image(image: impl Into<String>) -> Self {
        Self {
            team_id: None,
            description: None,
            image: image.into(),
            image_tag: None,
            registry_override: None,
            use_provisioned_registry: false,
            image_pull_secrets: Vec::new(),
            replicas: default_replicas(),
            port: DEFAULT_PORT,
            service_port: DEFAULT_SERVICE_PORT,
            ingress_path: None,
            ingress_host: None,
            public_path_prefix: None,
            ingress_class: None,
            ingress_annotations: BTreeMap::new(),
            resources: None,
            env_vars: Vec::new(),
            secret_env_vars: Vec::new(),
            tools: Vec::new(),
            prompts: Vec::new(),
            mcp_resources: Vec::new(),
            tasks: Vec::new(),
            auth: None,
            policy: None,
            session: None,
            gateway: None,
            analytics: None,
            rollout: None,
            access: None,
        }
    }

    pub fn gateway_enabled(&self) -> bool {
        self.gateway.as_ref().is_some_and(|g| g.enabled)
    }
}

impl GatewaySpec {
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_GATEWAY_PORT,
            ..Default::default()
        }
    }
}

impl MCPServer {
    /// Whether grants and sessions in `namespace` count for this server: its own namespace, or
    /// one listed in `spec.access.allowedNamespaces`.
    pub fn admits(&self, namespace: &str) -> bool {
        self.metadata.namespace.as_deref() == Some(namespace)
            || self
                .spec
                .access
                .as_ref()
                .is_some_and(|a| a.allowed_namespaces.iter().any(|n| n == namespace))
    }

    /// Why a grant or session in `namespace` does not count for this server, or `None` if it
    /// does.
    pub fn refusal(&self, namespace: &str) -> Option<String> {
        (!self.admits(namespace)).then(|| {
            format!(
                "MCPServer {}/{} does not accept grants or sessions from namespace {namespace}: its owner must list {namespace} in spec.access.allowedNamespaces",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                kube::ResourceExt::name_any(self),
            )
        })
    }

    /// The public route of the MCP endpoint: `ingressPath` when set, else
    /// `/{publicPathPrefix or name}/mcp`. (The original always defaulted the prefix, which made a
    /// custom `ingressPath` dead; here an explicit path wins.)
    pub fn route_path(&self) -> String {
        if let Some(path) = self.spec.ingress_path.as_deref().filter(|p| !p.is_empty()) {
            return if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
        }
        let name = kube::ResourceExt::name_any(self);
        let prefix = self
            .spec
            .public_path_prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .unwrap_or(&name);
        format!("/{prefix}/mcp")
    }
}
