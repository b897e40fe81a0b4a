//! The Helm chart `deploy/helm/mcp-runtime/`, generated from the same objects as `deploy/`:
//! the CRDs go to `crds/` unchanged, the operator's files and Sentinel embedded
//! (`deploy/sentinel/00-namespace.yaml`, `10-embedded.yaml`) become templates in which only a
//! few fields are replaced by values: the image registry and tag, the operator's replicas, the
//! containers' resources, and whether Sentinel is installed. Everything else is the generated
//! YAML itself, so `helm template` with the default values renders the objects of `deploy/`
//! plus two Helm labels (`helm.sh/chart`, `app.kubernetes.io/instance`); the CLI's Helm test
//! checks exactly that.
//!
//! The templating is done on the parsed objects: a field to template gets a unique marker
//! string, the object is serialised, and the marker is replaced by the template expression in
//! the text. No template is written by hand.

use std::collections::BTreeMap;

use serde::Deserialize as _;
use serde_json::{Value, json};

/// Where the chart is written, relative to the workspace root.
pub const DIR: &str = "deploy/helm/mcp-runtime";
const NAME: &str = "mcp-runtime";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a marker becomes in the template text.
enum Template {
    /// `key: MARKER` -> `key: EXPR` (EXPR is a complete scalar, quoted where needed).
    Inline(String),
    /// `key: MARKER` -> the value's YAML as a block under `key`.
    Block(String),
}

#[derive(Default)]
struct Templating {
    markers: Vec<(String, Template)>,
}

impl Templating {
    fn mark(&mut self, template: Template) -> Value {
        let marker = format!("HELM_TEMPLATE_{}_", self.markers.len());
        self.markers.push((marker.clone(), template));
        Value::String(marker)
    }

    /// Replaces each marker line. Markers are plain scalars (letters, digits, `_`), so the
    /// serialiser writes them unquoted, last on their line.
    fn render(&self, text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let found = self
                .markers
                .iter()
                .find(|(m, _)| line.ends_with(&format!(": {m}")));
            match found {
                None => out.push_str(line),
                Some((marker, Template::Inline(expr))) => {
                    out.push_str(&line.replace(marker.as_str(), expr));
                }
                Some((marker, Template::Block(expr))) => {
                    let key = line.trim_end_matches(marker.as_str()).trim_end();
                    let column = key.len() - key.trim_start_matches([' ', '-']).len();
                    out.push_str(key);
                    out.push_str(&format!(
                        "\n{{{{- toYaml {expr} | nindent {} }}}}",
                        column + 2
                    ));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The YAML documents of a generated file, parsed.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("generated YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `REGISTRY/NAME:TAG` split at the last `/` and `:`.
fn split_image(image: &str) -> (&str, &str, &str) {
    let (path, tag) = image
        .rsplit_once(':')
        .expect("generated images carry a tag");
    let (registry, name) = path
        .rsplit_once('/')
        .expect("generated images name a registry");
    (registry, name, tag)
}

/// The chart's values, read off the generated objects so that the defaults reproduce them.
struct Defaults {
    registry: String,
    operator_replicas: Value,
    resources: BTreeMap<&'static str, Value>,
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// Templates the objects of one generated file: the Helm labels on every object; on
/// Deployments the image, the resources and (for the operator) the replicas.
fn template_objects(
    t: &mut Templating,
    component: &'static str,
    objects: Vec<Value>,
    defaults: &mut Defaults,
) -> Vec<Value> {
    objects
        .into_iter()
        .map(|mut o| {
            let labels = &mut o["metadata"]["labels"];
            if labels.is_null() {
                *labels = json!({});
            }
            labels["helm.sh/chart"] =
                t.mark(Template::Inline("\"{{ .Chart.Name }}-{{ .Chart.Version }}\"".into()));
            labels["app.kubernetes.io/instance"] =
                t.mark(Template::Inline("{{ .Release.Name | quote }}".into()));
            if o["kind"] == "Deployment" {
                if component == "operator" {
                    defaults.operator_replicas = o["spec"]["replicas"].clone();
                    o["spec"]["replicas"] =
                        t.mark(Template::Inline("{{ .Values.operator.replicas }}".into()));
                }
                let image = container(&o)["image"]
                    .as_str()
                    .expect("generated Deployments name an image")
                    .to_owned();
                let (registry, name, tag) = split_image(&image);
                assert_eq!(tag, VERSION, "{image}: the chart's default tag is its appVersion");
                if defaults.registry.is_empty() {
                    defaults.registry = registry.to_owned();
                }
                assert_eq!(registry, defaults.registry, "{image}: one registry for all images");
                let c = &mut o["spec"]["template"]["spec"]["containers"][0];
                c["image"] = t.mark(Template::Inline(format!(
                    "\"{{{{ .Values.image.registry }}}}/{name}:{{{{ .Values.image.tag | default .Chart.AppVersion }}}}\""
                )));
                defaults.resources.insert(component, c["resources"].clone());
                c["resources"] = t.mark(Template::Block(format!(".Values.{component}.resources")));
            }
            o
        })
        .collect()
}

fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("objects serialise"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn header(source: &str) -> String {
    format!("# Generated by `cargo xtask generate` from {source}; do not edit.\n")
}

/// The chart's files, relative to [`DIR`].
pub fn files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, crd) in mcp_runtime_api::crd::all() {
        out.push((format!("crds/{file}"), mcp_runtime_api::crd::to_yaml(&crd)));
    }
    let mut defaults = Defaults {
        registry: String::new(),
        operator_replicas: Value::Null,
        resources: BTreeMap::new(),
    };
    let mut t = Templating::default();
    for (file, text) in mcp_runtime_operator::manifests::files() {
        let objects = template_objects(&mut t, "operator", documents(&text), &mut defaults);
        let body = header("crates/operator/src/manifests.rs (deploy/operator/)") + &yaml(&objects);
        out.push((format!("templates/operator-{file}"), t.render(&body)));
    }
    for (file, text) in mcp_runtime_deploy::sentinel::files() {
        // The scale path needs Kafka and ClickHouse the chart does not install.
        if file == "20-scale.yaml" {
            continue;
        }
        let objects = template_objects(&mut t, "sentinel", documents(&text), &mut defaults);
        let body = format!(
            "{}{{{{- if .Values.sentinel.enabled }}}}\n{}{{{{- end }}}}\n",
            header("crates/deploy/src/sentinel.rs (deploy/sentinel/)"),
            yaml(&objects)
        );
        out.push((format!("templates/sentinel-{file}"), t.render(&body)));
    }
    out.push(("Chart.yaml".into(), chart_yaml()));
    out.push(("values.yaml".into(), values_yaml(&defaults)));
    out.sort();
    out
}

fn chart_yaml() -> String {
    header("xtask/src/helm.rs")
        + &serde_yaml::to_string(&json!({
            "apiVersion": "v2",
            "name": NAME,
            "description": "mcp-runtime: the MCPServer, MCPAccessGrant and MCPAgentSession CRDs, the operator and Sentinel (embedded)",
            "type": "application",
            "version": VERSION,
            "appVersion": VERSION,
            "home": "https://github.com/mcp-runtime/mcp-runtime",
        }))
        .expect("Chart.yaml serialises")
}

fn values_yaml(d: &Defaults) -> String {
    let body = serde_yaml::to_string(&json!({
        "image": {"registry": d.registry, "tag": ""},
        "operator": {"replicas": d.operator_replicas, "resources": d.resources["operator"]},
        "sentinel": {"enabled": true, "resources": d.resources["sentinel"]},
    }))
    .expect("values serialise");
    header("xtask/src/helm.rs")
        + "# image.registry: where the images are pulled from (REGISTRY/mcp-runtime-operator:TAG,\n\
           #   REGISTRY/mcp-sentinel:TAG), e.g. your registry after `mcp-runtime registry push`.\n\
           # image.tag: empty means the chart's appVersion.\n\
           # operator.replicas: one leads, the others stand by (leader election).\n\
           # sentinel.enabled: Sentinel embedded in namespace mcp-sentinel; it needs the Secret\n\
           #   mcp-sentinel-keys (deploy/sentinel/README.md) before its pod can start.\n"
        + &body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_chart_is_current() {
        let dir = crate::root().join(DIR);
        for (file, text) in files() {
            let path = dir.join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is not what the generator writes: run `cargo xtask generate`",
                path.display()
            );
        }
    }

    #[test]
    fn block_markers_keep_the_indentation_of_their_key() {
        let mut t = Templating::default();
        let m = t.mark(Template::Block(".Values.x".into()));
        let text = format!("a:\n  - name: c\n    resources: {}\n", m.as_str().unwrap());
        assert_eq!(
            t.render(&text),
            "a:\n  - name: c\n    resources:\n{{- toYaml .Values.x | nindent 6 }}\n"
        );
    }
}
