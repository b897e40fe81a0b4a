//! The rules of the CRD schema (and a few the schema cannot carry), as pure functions, so the CLI
//! can refuse a bad manifest with a precise path before it ever reaches a cluster. The CEL rules
//! in the generated CRDs express the same cross-field rules for the apiserver; a test keeps both
//! in agreement.

use std::collections::HashSet;

use mcp_runtime_policy::AuthMode;

use crate::access::{MCPAccessGrantSpec, MCPAgentSessionSpec, SubjectSpec};
use crate::server::{MCPServerSpec, RolloutStrategy};

/// One rule broken at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path from the object root, e.g. `spec.gateway.port`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn team_id(errors: &mut Errors, path: &str, value: Option<&str>) {
    let Some(v) = value else { return };
    if v.chars().any(char::is_whitespace) {
        errors.add(path, format!("`{v}` must not contain whitespace"));
    }
    if v.len() > 128 {
        errors.add(path, "must be at most 128 characters");
    }
}

/// Checks an MCPServer spec.
pub fn server(spec: &MCPServerSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    if spec.image.trim().is_empty() {
        e.add(
            "spec.image",
            "is required: the container image of the MCP server",
        );
    }
    team_id(&mut e, "spec.teamID", spec.team_id.as_deref());
    if spec.replicas < 0 {
        e.add("spec.replicas", "must not be negative");
    }
    for (path, port) in [
        ("spec.port", spec.port),
        ("spec.servicePort", spec.service_port),
    ] {
        if !(1..=65535).contains(&port) {
            e.add(path, format!("{port} is not a port (1-65535)"));
        }
    }
    if let Some(prefix) = &spec.public_path_prefix
        && !prefix.is_empty()
        && prefix.trim_matches('/').is_empty()
    {
        e.add("spec.publicPathPrefix", "must contain more than slashes");
    }
    if let Some(g) = spec.gateway.as_ref().filter(|g| g.enabled) {
        if g.port == spec.port {
            e.add(
                "spec.gateway.port",
                format!(
                    "gateway.port must differ from port ({}): the gateway listens beside the server in the same pod",
                    spec.port
                ),
            );
        }
        if !(1..=65535).contains(&g.port) {
            e.add(
                "spec.gateway.port",
                format!("{} is not a port (1-65535)", g.port),
            );
        }
    }
    if let Some(auth) = &spec.auth {
        if auth.mode == AuthMode::Oauth && auth.issuer_url.as_deref().is_none_or(str::is_empty) {
            e.add(
                "spec.auth.issuerURL",
                "auth.issuerURL is required when auth.mode is oauth",
            );
        }
        if auth.mode == AuthMode::Mtls {
            if !spec.gateway_enabled() {
                e.add("spec.auth.mode", "mtls requires gateway.enabled");
            }
            if auth.trust_domain.as_deref().is_none_or(str::is_empty) {
                e.add(
                    "spec.auth.trustDomain",
                    "is required when auth.mode is mtls",
                );
            }
        }
    }
    if let Some(r) = &spec.rollout {
        if r.strategy == RolloutStrategy::Canary {
            match r.canary_replicas {
                Some(c) if c > 0 && c < spec.replicas => {}
                _ => e.add(
                    "spec.rollout.canaryReplicas",
                    format!(
                        "rollout.strategy Canary needs 0 < rollout.canaryReplicas < replicas (replicas is {})",
                        spec.replicas
                    ),
                ),
            }
        }
        for (path, v) in [
            ("spec.rollout.maxUnavailable", &r.max_unavailable),
            ("spec.rollout.maxSurge", &r.max_surge),
        ] {
            if let Some(v) = v {
                let digits = v.strip_suffix('%').unwrap_or(v);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    e.add(
                        path,
                        format!("`{v}` must be a non-negative integer or a percentage like `25%`"),
                    );
                }
            }
        }
    }
    if let Some(a) = &spec.analytics
        && !a.disabled
        && !spec.gateway_enabled()
        && (a.ingest_url.is_some() || a.api_key_secret_ref.is_some())
    {
        e.add(
            "spec.analytics",
            "analytics are emitted by the gateway: set gateway.enabled or analytics.disabled",
        );
    }
    if let Some(access) = &spec.access {
        for (i, ns) in access.allowed_namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                e.add(
                    format!("spec.access.allowedNamespaces[{i}]"),
                    format!("`{ns}`: allowedNamespaces entries must be namespace names (lowercase DNS labels)"),
                );
            }
        }
        if access.allowed_namespaces.len() > 256 {
            e.add(
                "spec.access.allowedNamespaces",
                "at most 256 namespaces can be listed",
            );
        }
    }
    let mut names = HashSet::new();
    for (i, tool) in spec.tools.iter().enumerate() {
        if tool.name.trim().is_empty() {
            e.add(format!("spec.tools[{i}].name"), "is required");
        } else if !names.insert(tool.name.as_str()) {
            e.add(
                format!("spec.tools[{i}].name"),
                format!("tool names must be unique: `{}` appears twice", tool.name),
            );
        }
    }
    if spec.tools.len() > 128 {
        e.add("spec.tools", "at most 128 tools can be declared");
    }
    for (field, what, items) in [
        ("prompts", "prompt", &spec.prompts),
        ("mcpResources", "resource", &spec.mcp_resources),
    ] {
        let mut names = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if item.name.trim().is_empty() {
                e.add(format!("spec.{field}[{i}].name"), "is required");
            } else if !names.insert(item.name.as_str()) {
                e.add(
                    format!("spec.{field}[{i}].name"),
                    format!("{what} names must be unique: `{}` appears twice", item.name),
                );
            }
        }
        if items.len() > 128 {
            e.add(
                format!("spec.{field}"),
                format!("at most 128 {what}s can be declared"),
            );
        }
    }
    for (i, task) in spec.tasks.iter().enumerate() {
        if task.side_effect.is_some() {
            e.add(
                format!("spec.tasks[{i}].sideEffect"),
                "tasks are not decided per item: remove sideEffect",
            );
        }
    }
    for (i, v) in spec.secret_env_vars.iter().enumerate() {
        if v.secret_key_ref.name.is_empty() || v.secret_key_ref.key.is_empty() {
            e.add(
                format!("spec.secretEnvVars[{i}].secretKeyRef"),
                "needs both name and key",
            );
        }
    }
    e.0
}

/// A namespace name: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
}

fn subject(e: &mut Errors, spec_subject: &SubjectSpec) {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if !set(&spec_subject.human_id) && !set(&spec_subject.agent_id) && !set(&spec_subject.team_id) {
        e.add(
            "spec.subject",
            "subject needs at least one of humanID, agentID or teamID: wildcard subjects are not allowed",
        );
    }
    team_id(e, "spec.subject.teamID", spec_subject.team_id.as_deref());
}

/// Checks an MCPAccessGrant spec.
pub fn grant(spec: &MCPAccessGrantSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    if spec.server_ref.name.trim().is_empty() {
        e.add("spec.serverRef.name", "is required");
    }
    subject(&mut e, &spec.subject);
    let mut seen = HashSet::new();
    for (i, effect) in spec.allowed_side_effects.iter().enumerate() {
        if !seen.insert(effect) {
            e.add(
                format!("spec.allowedSideEffects[{i}]"),
                format!("`{effect}` is listed twice"),
            );
        }
    }
    let mut names = HashSet::new();
    for (i, rule) in spec.tool_rules.iter().enumerate() {
        if rule.name.trim().is_empty() {
            e.add(format!("spec.toolRules[{i}].name"), "is required");
        } else if !names.insert(rule.name.as_str()) {
            e.add(
                format!("spec.toolRules[{i}].name"),
                format!(
                    "tool rule names must be unique within a grant: `{}` appears twice",
                    rule.name
                ),
            );
        }
    }
    e.0
}

/// Checks an MCPAgentSession spec. An `expiresAt` in the past is allowed: it is simply expired.
pub fn session(spec: &MCPAgentSessionSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    if spec.server_ref.name.trim().is_empty() {
        e.add("spec.serverRef.name", "is required");
    }
    subject(&mut e, &spec.subject);
    if let Some(r) = &spec.upstream_token_secret_ref
        && (r.name.is_empty() || r.key.is_empty())
    {
        e.add("spec.upstreamTokenSecretRef", "needs both name and key");
    }
    e.0
}
