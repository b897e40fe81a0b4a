//! `.mcp/servers.yaml`: the developer-side description of one or more MCP servers, from which
//! `mcp-runtime server generate` writes MCPServer manifests.
//!
//! ```yaml
//! version: v1
//! servers:
//!   - name: hello
//!     namespace: mcp-servers     # optional
//!     spec:                      # exactly an MCPServer spec
//!       image: ghcr.io/acme/hello:1.0.0
//!       tools: [{name: echo, sideEffect: read}]
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mcp_runtime_policy::{PolicyMode, Verdict};
use serde::{Deserialize, Serialize};

use crate::manifest::{ManifestError, documents, from_yaml};
use crate::server::{
    AuthSpec, GatewaySpec, MCPServer, MCPServerSpec, PolicySpec, SessionSpec, ToolSpec,
};
use crate::validate;

/// The only metadata format version.
pub const VERSION: &str = "v1";
/// Namespace used when an entry names none.
pub const DEFAULT_NAMESPACE: &str = "mcp-servers";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataFile {
    pub version: String,
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub spec: MCPServerSpec,
    /// How `mcp-runtime dev` runs the server locally (not part of the MCPServer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<DevSettings>,
}

/// Local development settings of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSettings {
    /// Command starting the server; `{port}` is replaced by `spec.port`.
    pub command: Vec<String>,
}

impl MetadataFile {
    pub fn new() -> Self {
        Self {
            version: VERSION.to_owned(),
            servers: Vec::new(),
        }
    }

    /// Reads and checks a metadata file: syntax, known fields, version, names, server rules.
    pub fn parse(file: &str, text: &str) -> Result<Self, ManifestError> {
        let docs = documents(text);
        let fail = |line, path: Option<String>, message: String| ManifestError {
            file: file.to_owned(),
            line,
            column: None,
            path,
            message,
        };
        let [doc] = docs.as_slice() else {
            return Err(fail(
                None,
                None,
                format!(
                    "expected one YAML document with `version: {VERSION}` and `servers:`, found {}",
                    docs.len()
                ),
            ));
        };
        let parsed: Self = from_yaml(file, doc)?;
        if parsed.version != VERSION {
            return Err(fail(
                Some(doc.first_line),
                Some("version".into()),
                format!("`{}` is not supported; use `{VERSION}`", parsed.version),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut problems = Vec::new();
        for (i, entry) in parsed.servers.iter().enumerate() {
            if !is_dns_label(&entry.name) {
                problems.push(format!(
                    "servers[{i}].name: `{}` must be a DNS label (lowercase letters, digits, '-', at most 63)",
                    entry.name
                ));
            }
            if !names.insert((entry.namespace.clone(), entry.name.as_str())) {
                problems.push(format!(
                    "servers[{i}].name: `{}` is declared twice",
                    entry.name
                ));
            }
            for e in validate::server(&entry.spec) {
                problems.push(format!("servers[{i}].{e}"));
            }
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(fail(
                None,
                None,
                format!("invalid server metadata:\n  - {}", problems.join("\n  - ")),
            ))
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("metadata serialises")
    }
}

impl Default for MetadataFile {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerEntry {
    /// A governed server: gateway on, token auth, allow-list with default deny, sessions required.
    pub fn governed(name: &str, image: &str, port: i32, tools: Vec<ToolSpec>) -> Self {
        let mut spec = MCPServerSpec::with_image(image);
        spec.description = Some(format!("{name} MCP server"));
        spec.port = port;
        spec.tools = tools;
        spec.auth = Some(AuthSpec::default());
        spec.policy = Some(PolicySpec {
            mode: PolicyMode::AllowList,
            default_decision: Verdict::Deny,
            ..Default::default()
        });
        spec.session = Some(SessionSpec {
            required: true,
            ..Default::default()
        });
        spec.gateway = Some(GatewaySpec::enabled());
        Self {
            name: name.to_owned(),
            namespace: None,
            labels: BTreeMap::new(),
            spec,
            dev: None,
        }
    }

    /// The MCPServer manifest for this entry.
    pub fn to_manifest(&self) -> MCPServer {
        let mut labels = self.labels.clone();
        labels.insert("app.kubernetes.io/managed-by".into(), crate::MANAGER.into());
        MCPServer {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(
                    self.namespace
                        .clone()
                        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                ),
                labels: Some(labels),
                ..Default::default()
            },
            spec: self.spec.clone(),
            status: None,
        }
    }
}

/// RFC 1123 label, as Kubernetes requires for names used in Services.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_governed_scaffold() {
        let mut file = MetadataFile::new();
        file.servers.push(ServerEntry::governed(
            "hello",
            "ghcr.io/acme/hello:1",
            8088,
            vec![],
        ));
        let parsed = MetadataFile::parse(".mcp/servers.yaml", &file.to_yaml()).unwrap();
        assert_eq!(parsed, file);
        assert!(parsed.servers[0].spec.gateway_enabled());
    }

    #[test]
    fn malformed_metadata_names_file_line_and_field() {
        let text = "version: v1\nservers:\n  - name: hello\n    spec:\n      image: x\n      port: eighty\n";
        let err = MetadataFile::parse(".mcp/servers.yaml", text).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.path.as_deref(), Some("servers[0].spec.port"));
        assert!(err.to_string().starts_with(".mcp/servers.yaml:6:"), "{err}");
        assert!(err.message.contains("expected i32"), "{err}");
    }

    #[test]
    fn wrong_version_and_rule_violations_are_reported() {
        let err = MetadataFile::parse("m.yaml", "version: v2\nservers: []\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("version: `v2` is not supported; use `v1`"),
            "{err}"
        );
        let text = "version: v1\nservers:\n  - name: Hello_World\n    spec:\n      image: x\n      gateway: {enabled: true, port: 8088}\n";
        let err = MetadataFile::parse("m.yaml", text).unwrap_err().to_string();
        assert!(
            err.contains("servers[0].name: `Hello_World` must be a DNS label"),
            "{err}"
        );
        assert!(
            err.contains("servers[0].spec.gateway.port: gateway.port must differ from port"),
            "{err}"
        );
    }
}
