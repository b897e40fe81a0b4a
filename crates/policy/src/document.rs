//! The rendered policy document: the contract between whoever renders a server's policy (the
//! operator, `mcp-runtime policy render`) and the gateway that enforces it.
//!
//! The document carries fully resolved values (no "empty means default"), so a consumer never
//! re-applies defaults. Its bytes are deterministic for a given content and its revision is the
//! SHA-256 of its canonical form, so a consumer can verify it was not altered or truncated.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{AuthMode, PolicyMode, RiskLevel, SideEffect, Trust, Verdict};

/// The only schema this crate reads and writes.
///
/// A field added as optional and omitted when empty (as `prompts` and `resources` were) keeps
/// the version: every document sealed before still loads with the same bytes and revision. An
/// older reader refuses a document that uses the new field (unknown fields are errors), which
/// fails closed. Any other change needs a new version.
pub const SCHEMA_VERSION: &str = "mcpruntime.org/policy/v1";

/// A server's rendered policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub schema_version: String,
    /// `sha256:<hex>` of the canonical form; empty until [`PolicyDocument::seal`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    pub server: ServerRef,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default)]
    pub session: SessionSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolPolicy>,
    /// Declared prompts, sorted by name. Omitted when empty, so documents sealed before prompts
    /// existed keep their bytes and revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<ToolPolicy>,
    /// Declared resources by URI, sorted; a name ending in `*` covers every URI it prefixes.
    /// Omitted when empty, like `prompts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ToolPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRef {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// OIDC issuer; required for `oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Identity header names, read only in `header` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IdentityHeaders>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    pub human: String,
    pub agent: String,
    pub team: String,
    pub session: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            human: "X-MCP-Human-ID".into(),
            agent: "X-MCP-Agent-ID".into(),
            team: "X-MCP-Team-ID".into(),
            session: "X-MCP-Agent-Session".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub mode: PolicyMode,
    /// Applied when no grant matches the caller or none grants the tool.
    pub default_decision: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Every tool call must present a live session.
    pub required: bool,
}

/// A declared tool, prompt or resource of the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicy {
    pub name: String,
    pub required_trust: Trust,
    pub side_effect: SideEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<RiskLevel>,
}

/// Who a grant or session is for. Every set field must equal the caller's; at least one is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
}

impl Subject {
    pub fn is_empty(&self) -> bool {
        self.human_id.is_none() && self.agent_id.is_none() && self.team_id.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantPolicy {
    pub namespace: String,
    pub name: String,
    pub subject: Subject,
    pub max_trust: Trust,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_side_effects: Vec<SideEffect>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Sorted by name. Empty means the grant covers every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_rules: Vec<ToolRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    pub name: String,
    pub decision: Verdict,
    /// Raises the trust the call needs above the tool's own requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_trust: Option<Trust>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPolicy {
    pub namespace: String,
    pub name: String,
    pub subject: Subject,
    pub consented_trust: Trust,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// The first instant at which the session is no longer valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// Why a document was refused. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "policy document is not valid JSON for schema {SCHEMA_VERSION} at `{path}` (line {line}, column {column}): {message}"
    )]
    Malformed {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "unsupported policy schema `{found}`; this build reads `{SCHEMA_VERSION}` (re-render the policy with a matching mcp-runtime)"
    )]
    UnsupportedSchema { found: String },
    #[error(
        "policy revision mismatch: the document says `{stated}` but its content hashes to `{computed}`; it was edited or truncated after rendering"
    )]
    RevisionMismatch { stated: String, computed: String },
    #[error("policy document has no revision; seal it with `mcp-runtime policy render`")]
    Unsealed,
    #[error("invalid policy document:\n{}", .0.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Violation>),
}

/// One semantic problem, located by a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl PolicyDocument {
    /// An empty document for a server: deny-by-default, token auth, no grants.
    pub fn new(server: ServerRef) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            revision: String::new(),
            server,
            auth: AuthSettings::default(),
            policy: PolicySettings::default(),
            session: SessionSettings::default(),
            tools: Vec::new(),
            prompts: Vec::new(),
            resources: Vec::new(),
            grants: Vec::new(),
            sessions: Vec::new(),
        }
    }

    /// Puts the lists in canonical order, validates, and stamps the revision.
    pub fn seal(mut self) -> Result<Self, DocumentError> {
        // Tools keep their declared order (documents sealed before sorting must keep their
        // revision); prompts and resources are new and sorted from the start.
        self.prompts.sort_by(|a, b| a.name.cmp(&b.name));
        self.resources.sort_by(|a, b| a.name.cmp(&b.name));
        self.grants
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.sessions
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for grant in &mut self.grants {
            grant.tool_rules.sort_by(|a, b| a.name.cmp(&b.name));
            grant.allowed_side_effects.sort();
            grant.allowed_side_effects.dedup();
        }
        self.schema_version = SCHEMA_VERSION.to_owned();
        self.validate()?;
        self.revision = self.compute_revision();
        Ok(self)
    }

    /// Parses, validates and verifies a document; fails closed on any doubt.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DocumentError> {
        let malformed = |path: String, e: serde_json::Error| DocumentError::Malformed {
            path,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc: Self = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            malformed(path, err.into_inner())
        })?;
        de.end().map_err(|e| malformed(".".into(), e))?;
        if doc.schema_version != SCHEMA_VERSION {
            return Err(DocumentError::UnsupportedSchema {
                found: doc.schema_version,
            });
        }
        if doc.revision.is_empty() {
            return Err(DocumentError::Unsealed);
        }
        doc.validate()?;
        let computed = doc.compute_revision();
        if computed != doc.revision {
            return Err(DocumentError::RevisionMismatch {
                stated: doc.revision,
                computed,
            });
        }
        Ok(doc)
    }

    /// The deterministic bytes written to files and ConfigMaps.
    pub fn to_json_pretty(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).expect("document serialises");
        out.push('\n');
        out
    }

    /// `sha256:<hex>` over the compact JSON of the document without its revision.
    pub fn compute_revision(&self) -> String {
        let mut hasher = Sha256::new();
        let unsealed = Canonical(self);
        serde_json::to_writer(HashWriter(&mut hasher), &unsealed).expect("document serialises");
        let digest = hasher.finalize();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for byte in digest {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Semantic checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), DocumentError> {
        let mut v = Vec::new();
        let mut bad = |path: String, message: &str| {
            v.push(Violation {
                path,
                message: message.to_owned(),
            })
        };
        if self.server.name.trim().is_empty() {
            bad("server.name".into(), "must not be empty");
        }
        if self.server.namespace.trim().is_empty() {
            bad("server.namespace".into(), "must not be empty");
        }
        if self.auth.mode == AuthMode::Oauth
            && self.auth.issuer_url.as_deref().is_none_or(str::is_empty)
        {
            bad(
                "auth.issuer_url".into(),
                "is required when auth.mode is oauth",
            );
        }
        for (field, what, items) in [
            ("tools", "tool", &self.tools),
            ("prompts", "prompt", &self.prompts),
            ("resources", "resource", &self.resources),
        ] {
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                if item.name.is_empty() {
                    bad(format!("{field}[{i}].name"), "must not be empty");
                } else if !seen.insert(item.name.as_str()) {
                    bad(
                        format!("{field}[{i}].name"),
                        &format!("duplicate {what} `{}`", item.name),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, grant) in self.grants.iter().enumerate() {
            let at = format!("grants[{i}]");
            check_object_name(&mut bad, &at, &grant.namespace, &grant.name);
            if !seen.insert((grant.namespace.as_str(), grant.name.as_str())) {
                bad(
                    at.clone(),
                    &format!("duplicate grant `{}/{}`", grant.namespace, grant.name),
                );
            }
            check_subject(&mut bad, &at, &grant.subject);
            let mut rules = HashSet::new();
            for (j, rule) in grant.tool_rules.iter().enumerate() {
                if rule.name.is_empty() {
                    bad(format!("{at}.tool_rules[{j}].name"), "must not be empty");
                } else if !rules.insert(rule.name.as_str()) {
                    bad(
                        format!("{at}.tool_rules[{j}].name"),
                        &format!("duplicate rule for tool `{}`", rule.name),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, session) in self.sessions.iter().enumerate() {
            let at = format!("sessions[{i}]");
            check_object_name(&mut bad, &at, &session.namespace, &session.name);
            if !seen.insert((session.namespace.as_str(), session.name.as_str())) {
                bad(
                    at.clone(),
                    &format!("duplicate session `{}/{}`", session.namespace, session.name),
                );
            }
            check_subject(&mut bad, &at, &session.subject);
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(DocumentError::Invalid(v))
        }
    }

    /// Tools declared by the server, by name.
    pub fn tool_names(&self) -> BTreeMap<&str, &ToolPolicy> {
        self.tools.iter().map(|t| (t.name.as_str(), t)).collect()
    }
}

fn check_object_name(bad: &mut impl FnMut(String, &str), at: &str, namespace: &str, name: &str) {
    if namespace.is_empty() {
        bad(format!("{at}.namespace"), "must not be empty");
    }
    if name.is_empty() {
        bad(format!("{at}.name"), "must not be empty");
    }
}

fn check_subject(bad: &mut impl FnMut(String, &str), at: &str, subject: &Subject) {
    let empty = |v: &Option<String>| v.as_deref().is_some_and(str::is_empty);
    if empty(&subject.human_id) || empty(&subject.agent_id) || empty(&subject.team_id) {
        bad(
            format!("{at}.subject"),
            "subject ids must be omitted rather than empty",
        );
    }
    if subject.is_empty() {
        bad(
            format!("{at}.subject"),
            "needs at least one of human_id, agent_id, team_id (wildcard subjects are not allowed)",
        );
    }
}

/// Serialises a document as if its revision were empty, without cloning it.
struct Canonical<'a>(&'a PolicyDocument);

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let d = self.0;
        let mut st = s.serialize_struct("PolicyDocument", 10)?;
        st.serialize_field("schema_version", &d.schema_version)?;
        st.serialize_field("server", &d.server)?;
        st.serialize_field("auth", &d.auth)?;
        st.serialize_field("policy", &d.policy)?;
        st.serialize_field("session", &d.session)?;
        st.serialize_field("tools", &d.tools)?;
        // Only when present: a document without them hashes as it did before they existed.
        if !d.prompts.is_empty() {
            st.serialize_field("prompts", &d.prompts)?;
        }
        if !d.resources.is_empty() {
            st.serialize_field("resources", &d.resources)?;
        }
        st.serialize_field("grants", &d.grants)?;
        st.serialize_field("sessions", &d.sessions)?;
        st.end()
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PolicyDocument {
        let mut doc = PolicyDocument::new(ServerRef {
            name: "payments".into(),
            namespace: "team-a".into(),
            ..Default::default()
        });
        doc.tools.push(ToolPolicy {
            name: "refund".into(),
            required_trust: Trust::High,
            side_effect: SideEffect::Destructive,
            risk_level: None,
        });
        for ns in ["b", "a"] {
            doc.grants.push(GrantPolicy {
                namespace: ns.into(),
                name: "same-name".into(),
                subject: Subject {
                    human_id: Some("alice".into()),
                    ..Default::default()
                },
                max_trust: Trust::High,
                allowed_side_effects: vec![SideEffect::Write, SideEffect::Read],
                disabled: false,
                tool_rules: vec![],
                policy_version: None,
            });
        }
        doc
    }

    #[test]
    fn seal_is_deterministic_and_order_independent() {
        let a = sample().seal().unwrap();
        let mut reversed = sample();
        reversed.grants.reverse();
        let b = reversed.seal().unwrap();
        assert_eq!(a.to_json_pretty(), b.to_json_pretty());
        assert!(a.revision.starts_with("sha256:") && a.revision.len() == 71);
        assert_eq!(
            a.grants[0].namespace, "a",
            "grants sorted by namespace/name"
        );
    }

    #[test]
    fn equal_names_in_two_namespaces_are_two_grants() {
        let doc = sample().seal().unwrap();
        assert_eq!(doc.grants.len(), 2);
    }

    #[test]
    fn round_trip_verifies_revision() {
        let doc = sample().seal().unwrap();
        let parsed = PolicyDocument::from_json(doc.to_json_pretty().as_bytes()).unwrap();
        assert_eq!(parsed, doc);
    }

    #[test]
    fn tampering_is_detected() {
        let text = sample().seal().unwrap().to_json_pretty();
        let tampered = text.replace("\"max_trust\": \"high\"", "\"max_trust\": \"low\"");
        assert_ne!(text, tampered);
        let err = PolicyDocument::from_json(tampered.as_bytes()).unwrap_err();
        assert!(
            matches!(err, DocumentError::RevisionMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn content_change_changes_revision() {
        let a = sample().seal().unwrap();
        let mut changed = sample();
        changed.grants[0].disabled = true;
        assert_ne!(a.revision, changed.seal().unwrap().revision);
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let text = sample().seal().unwrap().to_json_pretty();
        let text = text.replacen("\"max_trust\"", "\"max_trsut\"", 1);
        let err = PolicyDocument::from_json(text.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("grants[0]") && msg.contains("max_trsut"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_document_is_malformed_with_line() {
        let text = sample().seal().unwrap().to_json_pretty();
        let err = PolicyDocument::from_json(&text.as_bytes()[..text.len() / 2]).unwrap_err();
        assert!(
            matches!(err, DocumentError::Malformed { line, .. } if line > 1),
            "{err}"
        );
    }

    #[test]
    fn other_schema_is_refused() {
        let text = sample().seal().unwrap().to_json_pretty();
        let text = text.replace(SCHEMA_VERSION, "v1");
        let err = PolicyDocument::from_json(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, DocumentError::UnsupportedSchema { .. }),
            "{err}"
        );
    }

    #[test]
    fn wildcard_subject_and_duplicates_fail_validation() {
        let mut doc = sample();
        doc.grants[1].namespace = "b".into();
        doc.grants[0].namespace = "b".into();
        doc.grants[0].subject = Subject::default();
        doc.tools.push(doc.tools[0].clone());
        let err = doc.seal().unwrap_err().to_string();
        assert!(err.contains("wildcard subjects are not allowed"), "{err}");
        assert!(err.contains("duplicate grant `b/same-name`"), "{err}");
        assert!(
            err.contains("tools[1].name: duplicate tool `refund`"),
            "{err}"
        );
    }

    #[test]
    fn oauth_without_issuer_is_invalid() {
        let mut doc = sample();
        doc.auth.mode = AuthMode::Oauth;
        let err = doc.seal().unwrap_err().to_string();
        assert!(err.contains("auth.issuer_url: is required"), "{err}");
    }
}
