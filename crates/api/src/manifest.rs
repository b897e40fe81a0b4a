//! Reading Kubernetes-style YAML manifests of the three kinds, with errors that name the file,
//! the line and the field.

use kube::ResourceExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::validate::{self, FieldError};
use crate::{API_VERSION, MCPAccessGrant, MCPAgentSession, MCPServer};

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub enum Manifest {
    Server(Box<MCPServer>),
    Grant(MCPAccessGrant),
    Session(MCPAgentSession),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Server(_) => "MCPServer",
            Manifest::Grant(_) => "MCPAccessGrant",
            Manifest::Session(_) => "MCPAgentSession",
        }
    }

    pub fn name(&self) -> String {
        match self {
            Manifest::Server(o) => o.name_any(),
            Manifest::Grant(o) => o.name_any(),
            Manifest::Session(o) => o.name_any(),
        }
    }

    pub fn namespace(&self) -> Option<String> {
        match self {
            Manifest::Server(o) => o.namespace(),
            Manifest::Grant(o) => o.namespace(),
            Manifest::Session(o) => o.namespace(),
        }
    }

    fn set_default_namespace(&mut self, namespace: &str) {
        let meta = match self {
            Manifest::Server(o) => &mut o.metadata,
            Manifest::Grant(o) => &mut o.metadata,
            Manifest::Session(o) => &mut o.metadata,
        };
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(namespace.to_owned());
        }
    }

    /// Schema and cross-field rules, as the apiserver would apply them.
    pub fn validate(&self) -> Vec<FieldError> {
        match self {
            Manifest::Server(o) => validate::server(&o.spec),
            Manifest::Grant(o) => validate::grant(&o.spec),
            Manifest::Session(o) => validate::session(&o.spec),
        }
    }
}

/// A manifest that could not be read, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {}{message}", location(.line, .column), path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct ManifestError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path inside the document, e.g. `spec.tools[0].sideEffect`.
    pub path: Option<String>,
    pub message: String,
}

fn location(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// A YAML document within a file, with the line it starts on (1-based).
pub(crate) struct Document<'a> {
    pub(crate) text: &'a str,
    pub(crate) first_line: usize,
}

/// Splits a multi-document YAML stream on `---` separator lines.
pub(crate) fn documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---#") {
            docs.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line: start_line,
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Deserialises one YAML document into `T`, mapping errors to file, line and field path.
pub(crate) fn from_yaml<T: DeserializeOwned>(
    file: &str,
    doc: &Document<'_>,
) -> Result<T, ManifestError> {
    let de = serde_yaml::Deserializer::from_str(doc.text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let loc = inner.location();
        ManifestError {
            file: file.to_owned(),
            line: loc.as_ref().map(|l| l.line() + doc.first_line - 1),
            column: loc.as_ref().map(|l| l.column()),
            path: (path != ".").then_some(path),
            message: strip_location(&inner.to_string()),
        }
    })
}

/// serde_yaml appends " at line L column C"; the location is reported separately.
/// serde_yaml also prefixes the field path; both are reported separately.
fn strip_location(message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => rest.to_owned(),
        _ => message.to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Reads every object of a manifest file. Objects without a namespace get `default_namespace`.
pub fn parse(
    file: &str,
    text: &str,
    default_namespace: &str,
) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for doc in documents(text) {
        let at = |message: String| ManifestError {
            file: file.to_owned(),
            line: Some(doc.first_line),
            column: None,
            path: None,
            message,
        };
        // Peek at the type first so that errors are reported against the right kind.
        let meta: TypeMeta = serde_yaml::from_str(doc.text).map_err(|e| {
            let mut err = at(strip_location(&e.to_string()));
            if let Some(l) = e.location() {
                err.line = Some(l.line() + doc.first_line - 1);
                err.column = Some(l.column());
            }
            err
        })?;
        match meta.api_version.as_deref() {
            Some(API_VERSION) => {}
            Some(other) => {
                return Err(at(format!(
                    "apiVersion `{other}` is not served by mcp-runtime; use `{API_VERSION}`"
                )));
            }
            None => return Err(at(format!("apiVersion is missing; use `{API_VERSION}`"))),
        }
        let mut manifest = match meta.kind.as_deref() {
            Some("MCPServer") => Manifest::Server(Box::new(from_yaml(file, &doc)?)),
            Some("MCPAccessGrant") => Manifest::Grant(from_yaml(file, &doc)?),
            Some("MCPAgentSession") => Manifest::Session(from_yaml(file, &doc)?),
            Some(other) => {
                return Err(at(format!(
                    "kind `{other}` is not one of MCPServer, MCPAccessGrant, MCPAgentSession"
                )));
            }
            None => return Err(at("kind is missing".to_owned())),
        };
        if manifest.name().is_empty() {
            return Err(ManifestError {
                path: Some("metadata.name".into()),
                ..at(format!("{} has no metadata.name", manifest.kind()))
            });
        }
        manifest.set_default_namespace(default_namespace);
        out.push(manifest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata:
  name: hello
spec:
  image: ghcr.io/acme/hello:1
  tools:
    - name: echo
      sideEffect: read
";

    #[test]
    fn parses_multi_document_files_and_defaults_namespace() {
        let text = format!(
            "{SERVER}---\n# a comment-only document is skipped\n---\n{}",
            SERVER.replace("hello", "bye")
        );
        let objs = parse("m.yaml", &text, "team-a").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].name(), "bye");
        assert_eq!(objs[0].namespace().as_deref(), Some("team-a"));
        let Manifest::Server(s) = &objs[0] else {
            panic!()
        };
        assert_eq!(s.spec.port, 8088, "schema default applied");
    }

    #[test]
    fn bad_enum_names_file_line_and_field() {
        let text = format!(
            "{SERVER}---\n{}",
            SERVER.replace("sideEffect: read", "sideEffect: reed")
        );
        let err = parse("servers.yaml", &text, "ns").unwrap_err();
        assert_eq!(err.file, "servers.yaml");
        assert_eq!(err.line, Some(19), "{err}");
        assert_eq!(err.path.as_deref(), Some("spec.tools[0].sideEffect"));
        assert!(
            err.message
                .contains("unknown variant `reed`, expected one of `read`, `write`, `destructive`"),
            "{err}"
        );
        assert!(err.to_string().starts_with("servers.yaml:19:"), "{err}");
    }

    #[test]
    fn unknown_field_is_an_error_not_silently_dropped() {
        let text = SERVER.replace("  image:", "  imagee: x\n  image:");
        let err = parse("s.yaml", &text, "ns").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("spec.imagee"), "{err}");
        assert!(err.message.contains("unknown field `imagee`"), "{err}");
        assert_eq!(err.line, Some(6));
    }

    #[test]
    fn wrong_kind_and_version_are_explained() {
        let err = parse(
            "x.yaml",
            &SERVER.replace("kind: MCPServer", "kind: Deployment"),
            "ns",
        )
        .unwrap_err();
        assert!(
            err.message.contains("kind `Deployment` is not one of"),
            "{err}"
        );
        let err = parse("x.yaml", &SERVER.replace("v1alpha1", "v1"), "ns").unwrap_err();
        assert!(
            err.message.contains("use `mcpruntime.org/v1alpha1`"),
            "{err}"
        );
    }

    #[test]
    fn yaml_syntax_error_has_a_line() {
        let err = parse(
            "x.yaml",
            "kind: MCPServer\nmetadata:\n  name: x\n bad: 1\n",
            "ns",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
    }
}
