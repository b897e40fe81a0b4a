//! Renders a server's policy document from the MCPServer and the grants and sessions that target
//! it. Used by the operator (into the gateway's ConfigMap) and by `mcp-runtime policy render`.

use kube::ResourceExt;
use mcp_runtime_policy::{
    AuthMode, AuthSettings, DocumentError, GrantPolicy, IdentityHeaders, PolicyDocument,
    PolicySettings, ServerRef, SessionPolicy, SessionSettings, Subject, ToolPolicy, ToolRule,
};

use crate::access::{MCPAccessGrant, MCPAgentSession, ServerReference, SubjectSpec};
use crate::server::{InventoryItem, MCPServer};
use crate::validate::{self, FieldError};

/// Where the rendering happens, beyond the objects themselves.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Cluster name recorded in the document (and so in audit events).
    pub cluster: Option<String>,
}

/// A rendered, sealed document and the objects that were left out of it.
#[derive(Debug)]
pub struct Rendered {
    pub document: PolicyDocument,
    /// Grants and sessions targeting the server that could not be rendered, with why. They grant
    /// nothing; the operator reports them in their status.
    pub skipped: Vec<Skipped>,
    /// Grants and sessions from other namespaces the server does not admit
    /// (`spec.access.allowedNamespaces`), with why. They grant nothing.
    pub refused: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("MCPServer {namespace}/{name} is invalid:\n{}", list(.errors))]
    InvalidServer {
        namespace: String,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("MCPServer {0} has no namespace; set metadata.namespace")]
    NoNamespace(String),
    #[error(transparent)]
    Document(#[from] DocumentError),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when `reference`, written in namespace `own`, names the server `name` in `namespace`.
/// (Whether the server admits it is [`MCPServer::admits`].)
pub fn targets(reference: &ServerReference, own: &str, namespace: &str, name: &str) -> bool {
    reference.name == name && reference.namespace_or(own) == namespace
}

/// Renders the policy of `server`. `grants` and `sessions` may hold objects for other servers;
/// only those that target this one are used.
pub fn render_policy(
    server: &MCPServer,
    grants: &[MCPAccessGrant],
    sessions: &[MCPAgentSession],
    options: &RenderOptions,
) -> Result<Rendered, RenderError> {
    let name = server.name_any();
    let namespace = server
        .namespace()
        .ok_or_else(|| RenderError::NoNamespace(name.clone()))?;
    let errors = validate::server(&server.spec);
    if !errors.is_empty() {
        return Err(RenderError::InvalidServer {
            namespace,
            name,
            errors,
        });
    }
    let spec = &server.spec;
    let mut doc = PolicyDocument::new(ServerRef {
        name: name.clone(),
        namespace: namespace.clone(),
        team_id: non_empty(spec.team_id.as_deref()),
        cluster: options.cluster.clone(),
    });
    if let Some(auth) = &spec.auth {
        doc.auth = AuthSettings {
            mode: auth.mode,
            issuer_url: non_empty(auth.issuer_url.as_deref()),
            audience: non_empty(auth.audience.as_deref()),
            headers: (auth.mode == AuthMode::Header).then(|| {
                let d = IdentityHeaders::default();
                let pick = |v: &Option<String>, default: String| {
                    non_empty(v.as_deref()).unwrap_or(default)
                };
                IdentityHeaders {
                    human: pick(&auth.human_id_header, d.human),
                    agent: pick(&auth.agent_id_header, d.agent),
                    team: pick(&auth.team_id_header, d.team),
                    session: pick(&auth.session_id_header, d.session),
                }
            }),
        };
    }
    if let Some(policy) = &spec.policy {
        doc.policy = PolicySettings {
            mode: policy.mode,
            default_decision: policy.default_decision,
            policy_version: non_empty(policy.policy_version.as_deref()),
        };
    }
    doc.session = SessionSettings {
        required: spec.session.as_ref().is_some_and(|s| s.required),
    };
    doc.tools = spec
        .tools
        .iter()
        .map(|t| ToolPolicy {
            name: t.name.clone(),
            required_trust: t.required_trust,
            side_effect: t.side_effect,
            risk_level: t.risk_level,
        })
        .collect();
    doc.prompts = inventory(&spec.prompts);
    doc.resources = inventory(&spec.mcp_resources);

    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    let refusal = |kind: &'static str, own: &str, name: String| {
        server.refusal(own).map(|message| Skipped {
            kind,
            namespace: own.to_owned(),
            name,
            errors: vec![FieldError {
                path: "spec.serverRef.namespace".to_owned(),
                message,
            }],
        })
    };
    for grant in grants {
        let own = grant.namespace().unwrap_or_default();
        if !targets(&grant.spec.server_ref, &own, &namespace, &name) {
            continue;
        }
        if let Some(r) = refusal("MCPAccessGrant", &own, grant.name_any()) {
            refused.push(r);
            continue;
        }
        let errors = validate::grant(&grant.spec);
        if !errors.is_empty() {
            skipped.push(Skipped {
                kind: "MCPAccessGrant",
                namespace: own,
                name: grant.name_any(),
                errors,
            });
            continue;
        }
        let s = &grant.spec;
        doc.grants.push(GrantPolicy {
            namespace: own,
            name: grant.name_any(),
            subject: subject(&s.subject),
            max_trust: s.max_trust,
            allowed_side_effects: s.allowed_side_effects.clone(),
            disabled: s.disabled,
            tool_rules: s
                .tool_rules
                .iter()
                .map(|r| ToolRule {
                    name: r.name.clone(),
                    decision: r.decision,
                    required_trust: r.required_trust,
                })
                .collect(),
            policy_version: non_empty(s.policy_version.as_deref()),
        });
    }
    for session in sessions {
        let own = session.namespace().unwrap_or_default();
        if !targets(&session.spec.server_ref, &own, &namespace, &name) {
            continue;
        }
        if let Some(r) = refusal("MCPAgentSession", &own, session.name_any()) {
            refused.push(r);
            continue;
        }
        let errors = validate::session(&session.spec);
        if !errors.is_empty() {
            skipped.push(Skipped {
                kind: "MCPAgentSession",
                namespace: own,
                name: session.name_any(),
                errors,
            });
            continue;
        }
        let s = &session.spec;
        doc.sessions.push(SessionPolicy {
            namespace: own,
            name: session.name_any(),
            subject: subject(&s.subject),
            consented_trust: s.consented_trust,
            revoked: s.revoked,
            expires_at: s.expires_at.as_ref().map(|t| t.0),
            policy_version: non_empty(s.policy_version.as_deref()),
        });
    }
    Ok(Rendered {
        document: doc.seal()?,
        skipped,
        refused,
    })
}

/// The prompts or resources that declare a side effect; the others stay undeclared, so no grant
/// can authorise them.
fn inventory(items: &[InventoryItem]) -> Vec<ToolPolicy> {
    items
        .iter()
        .filter_map(|item| {
            Some(ToolPolicy {
                name: item.name.clone(),
                required_trust: item.required_trust,
                side_effect: item.side_effect?,
                risk_level: None,
            })
        })
        .collect()
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn subject(s: &SubjectSpec) -> Subject {
    Subject {
        human_id: non_empty(s.human_id.as_deref()),
        agent_id: non_empty(s.agent_id.as_deref()),
        team_id: non_empty(s.team_id.as_deref()),
    }
}
