//! `mcp-runtime setup`: installs the platform into the kubeconfig's cluster, in order (CRDs,
//! namespaces, operator, generated Secrets, Sentinel, platform), by server-side apply with the
//! field manager [`FIELD_MANAGER`], then waits until every workload is ready.
//!
//! The objects are the generated files (`deploy/crds/`, `deploy/operator/`, `deploy/sentinel/`,
//! `deploy/platform/`; tests keep those equal to their generators) with the command line's
//! overrides (images, scheduling, storage class). Secrets are created only when absent and
//! never replaced: a re-run never rotates a key or a password.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::{ByteString, Metadata};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use mcp_runtime_deploy::{platform, sentinel};
use serde_json::{Value, json};

use crate::commands::cluster::{self, Cluster};
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

/// Field manager of everything `setup` applies.
pub const FIELD_MANAGER: &str = "mcp-runtime-setup";
/// Where the images of this release are (`cargo xtask images`).
const IMAGE_PREFIX: &str = "ghcr.io/mcp-runtime/";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The operator's manifests (the CLI does not link the operator; its drift test keeps these
/// files equal to `mcp_runtime_operator::manifests`).
const OPERATOR_FILES: [(&str, &str); 4] = [
    (
        "00-namespace.yaml",
        include_str!("../../../../deploy/operator/00-namespace.yaml"),
    ),
    (
        "10-rbac.yaml",
        include_str!("../../../../deploy/operator/10-rbac.yaml"),
    ),
    (
        "15-admission.yaml",
        include_str!("../../../../deploy/operator/15-admission.yaml"),
    ),
    (
        "20-deployment.yaml",
        include_str!("../../../../deploy/operator/20-deployment.yaml"),
    ),
];
/// The operator's namespace and Deployment (also the platform's namespace).
pub const OPERATOR_NAMESPACE: &str = platform::NAMESPACE;
pub const OPERATOR_NAME: &str = "mcp-runtime-operator";
/// The Secret gateways read the platform's public key from (the operator's
/// `MCP_GATEWAY_TOKEN_KEYS_SECRET` default, the platform's `GatewayKeys`).
pub const GATEWAY_KEYS_SECRET: &str = "mcp-gateway-token-keys";
pub const GATEWAY_KEYS_FILE: &str = "token.pub";
/// The raw Sentinel ingest key, for gateways (Sentinel keeps only its hash).
pub const SENTINEL_INGEST_KEY_SECRET: &str = "mcp-sentinel-ingest-key";
pub const SENTINEL_INGEST_KEY_FILE: &str = "ingest-key";

/// The parts `--skip` can leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Sentinel (embedded mode) in namespace mcp-sentinel.
    Sentinel,
    /// The platform API and its PostgreSQL.
    Platform,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Print the objects that would be applied, in order, and apply nothing (no cluster
    /// needed). Secrets are shown with their values redacted: they are generated at apply time.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the format of the objects.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "yaml",
        requires = "dry_run"
    )]
    pub output: DryRunFormat,
    /// How long to wait for the workloads to be ready (e.g. 90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Leave parts out (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    pub skip: Vec<Part>,
    /// Pull mcp-runtime's images from this registry (HOST[:PORT][/PATH]) instead of
    /// ghcr.io/mcp-runtime; also the operator's gateway image. PostgreSQL's is not changed.
    #[arg(long, value_name = "HOST")]
    pub image_registry: Option<String>,
    /// Tag of mcp-runtime's images instead of this CLI's version.
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,
    /// Add KEY=VALUE to the nodeSelector of every pod setup deploys, and (through the
    /// operator) of the MCP servers' pods. Repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_node_selector)]
    pub node_selector: Vec<(String, String)>,
    /// Add a toleration KEY[=VALUE][:EFFECT] to every pod setup deploys and (through the
    /// operator) to the MCP servers' pods; without VALUE it tolerates any value, without EFFECT
    /// any effect. Repeatable.
    #[arg(long, value_name = "KEY[=VALUE][:EFFECT]", value_parser = parse_toleration)]
    pub toleration: Vec<Toleration>,
    /// StorageClass of the volumes (Sentinel's data, PostgreSQL's); default: the cluster's
    /// default class. Cannot be changed once the volumes exist.
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DryRunFormat {
    Yaml,
    Json,
}

/// A toleration as Kubernetes writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration(Value);

pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 30s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{text}`: the unit is s, m or h")),
    };
    if seconds == 0 {
        return Err("the timeout must be positive".into());
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_node_selector(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{text}`: write KEY=VALUE, e.g. type=kwok")),
    }
}

fn parse_toleration(text: &str) -> std::result::Result<Toleration, String> {
    let (rest, effect) = match text.rsplit_once(':') {
        Some((rest, effect)) => (rest, Some(effect)),
        None => (text, None),
    };
    if let Some(e) = effect
        && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e)
    {
        return Err(format!(
            "`{text}`: the effect is NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match rest.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(format!("`{text}`: write KEY[=VALUE][:EFFECT]"));
    }
    let mut t = json!({ "key": key });
    match value {
        Some(v) => {
            t["operator"] = json!("Equal");
            t["value"] = json!(v);
        }
        None => t["operator"] = json!("Exists"),
    }
    if let Some(e) = effect {
        t["effect"] = json!(e);
    }
    Ok(Toleration(t))
}

// --- the plan ------------------------------------------------------------------------------

/// The steps, in order; each names what it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Crds,
    Namespaces,
    Operator,
    Secrets,
    Sentinel,
    Platform,
}

const STEPS: [Step; 6] = [
    Step::Crds,
    Step::Namespaces,
    Step::Operator,
    Step::Secrets,
    Step::Sentinel,
    Step::Platform,
];
/// The steps plus the wait for readiness.
const TOTAL_STEPS: usize = STEPS.len() + 1;

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Crds => "CRDs",
            Step::Namespaces => "namespaces",
            Step::Operator => "operator",
            Step::Secrets => "secrets",
            Step::Sentinel => "sentinel",
            Step::Platform => "platform",
        }
    }
}

/// A Secret setup generates when it is absent; `keys` are its data keys.
#[derive(Clone, Debug)]
struct GeneratedSecret {
    namespace: &'static str,
    name: &'static str,
    keys: &'static [&'static str],
    /// What the redacted value says it is.
    what: &'static str,
}

/// Everything setup would apply.
struct Plan {
    objects: Vec<(Step, Value)>,
    secrets: Vec<GeneratedSecret>,
}

fn documents(text: &str, source: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{source}: generated YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn secret_labels() -> Value {
    json!({
        "app.kubernetes.io/part-of": "mcp-runtime",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    })
}

impl Plan {
    fn new(args: &SetupArgs) -> Plan {
        let skip = |p: Part| args.skip.contains(&p);
        let mut objects = Vec::new();
        for (_, crd) in mcp_runtime_api::crd::all() {
            objects.push((
                Step::Crds,
                serde_json::to_value(&crd).expect("CRDs serialise"),
            ));
        }
        let mut add = |step: Step, docs: Vec<Value>| {
            for doc in docs {
                let step = if doc["kind"] == "Namespace" {
                    Step::Namespaces
                } else {
                    step
                };
                objects.push((step, doc));
            }
        };
        for (file, text) in OPERATOR_FILES {
            add(Step::Operator, documents(text, file));
        }
        if !skip(Part::Sentinel) {
            for (file, text) in sentinel::files() {
                // The embedded mode; the scale path needs Kafka and ClickHouse of your own.
                if file != "20-scale.yaml" {
                    add(Step::Sentinel, documents(&text, file));
                }
            }
        }
        if !skip(Part::Platform) {
            for (file, text) in platform::files() {
                add(Step::Platform, documents(&text, file));
            }
        }
        // Namespaces first, whatever file they came from.
        objects.sort_by_key(|(step, _)| STEPS.iter().position(|s| s == step));
        let overrides = Overrides::of(args);
        for (_, object) in &mut objects {
            overrides.apply(object);
        }
        let mut secrets = Vec::new();
        if !skip(Part::Platform) {
            secrets.extend([
                GeneratedSecret {
                    namespace: platform::NAMESPACE,
                    name: platform::SIGNING_KEY_SECRET,
                    keys: &[platform::SIGNING_KEY_FILE],
                    what: "a new Ed25519 signing key",
                },
                GeneratedSecret {
                    namespace: platform::NAMESPACE,
                    name: GATEWAY_KEYS_SECRET,
                    keys: &[GATEWAY_KEYS_FILE],
                    what: "the public half of the platform's signing key",
                },
                GeneratedSecret {
                    namespace: platform::NAMESPACE,
                    name: platform::POSTGRES_SECRET,
                    keys: &[platform::POSTGRES_PASSWORD_KEY],
                    what: "a random password",
                },
                GeneratedSecret {
                    namespace: platform::NAMESPACE,
                    name: platform::SENTINEL_READ_KEY_SECRET,
                    keys: &[platform::SENTINEL_READ_KEY_FILE],
                    what: "a random Sentinel read key",
                },
            ]);
        }
        if !skip(Part::Sentinel) {
            secrets.extend([
                GeneratedSecret {
                    namespace: sentinel::NAMESPACE,
                    name: sentinel::KEYS_SECRET,
                    keys: &[sentinel::INGEST_KEYS, sentinel::READ_KEYS],
                    what: "sha256 hashes of the generated keys",
                },
                GeneratedSecret {
                    namespace: platform::NAMESPACE,
                    name: SENTINEL_INGEST_KEY_SECRET,
                    keys: &[SENTINEL_INGEST_KEY_FILE],
                    what: "a random Sentinel ingest key",
                },
            ]);
        }
        Plan { objects, secrets }
    }

    /// The objects as printed by `--dry-run`, Secrets redacted, in the order they are applied.
    fn printable(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for step in STEPS {
            if step == Step::Secrets {
                out.extend(self.secrets.iter().map(|s| {
                    let data: serde_json::Map<String, Value> = s
                        .keys
                        .iter()
                        .map(|k| {
                            (
                                (*k).to_owned(),
                                json!(format!(
                                    "<redacted: {}, generated when the Secret is absent>",
                                    s.what
                                )),
                            )
                        })
                        .collect();
                    json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": s.name, "namespace": s.namespace, "labels": secret_labels()},
                        "type": "Opaque",
                        "stringData": data,
                    })
                }));
            }
            out.extend(
                self.objects
                    .iter()
                    .filter(|(s, _)| *s == step)
                    .map(|(_, o)| o.clone()),
            );
        }
        out
    }
}

/// The command line's changes to the generated objects.
struct Overrides {
    registry: Option<String>,
    tag: Option<String>,
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<Value>,
    storage_class: Option<String>,
}

impl Overrides {
    fn of(args: &SetupArgs) -> Overrides {
        Overrides {
            registry: args
                .image_registry
                .as_ref()
                .map(|r| r.trim_end_matches('/').to_owned()),
            tag: args.image_tag.clone(),
            node_selector: args.node_selector.iter().cloned().collect(),
            tolerations: args.toleration.iter().map(|t| t.0.clone()).collect(),
            storage_class: args.storage_class.clone(),
        }
    }

    /// `ghcr.io/mcp-runtime/NAME:TAG` with the registry and tag overridden; other images as
    /// they are.
    fn image(&self, image: &str) -> String {
        let Some(rest) = image.strip_prefix(IMAGE_PREFIX) else {
            return image.to_owned();
        };
        let (name, tag) = rest.split_once(':').unwrap_or((rest, VERSION));
        let registry = self
            .registry
            .clone()
            .unwrap_or_else(|| IMAGE_PREFIX.trim_end_matches('/').to_owned());
        format!("{registry}/{name}:{}", self.tag.as_deref().unwrap_or(tag))
    }

    fn apply(&self, object: &mut Value) {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        if let Some(class) = &self.storage_class {
            if kind == "PersistentVolumeClaim" {
                object["spec"]["storageClassName"] = json!(class);
            }
            if let Some(templates) = object["spec"]["volumeClaimTemplates"].as_array_mut() {
                for t in templates {
                    t["spec"]["storageClassName"] = json!(class);
                }
            }
        }
        if kind != "Deployment" && kind != "StatefulSet" {
            return;
        }
        let is_operator = object["metadata"]["name"] == OPERATOR_NAME;
        let pod = &mut object["spec"]["template"]["spec"];
        if !self.node_selector.is_empty() {
            let selector = pod["nodeSelector"].as_object_mut();
            match selector {
                Some(map) => {
                    for (k, v) in &self.node_selector {
                        map.insert(k.clone(), json!(v));
                    }
                }
                None => pod["nodeSelector"] = json!(self.node_selector),
            }
        }
        if !self.tolerations.is_empty() {
            match pod["tolerations"].as_array_mut() {
                Some(list) => list.extend(self.tolerations.iter().cloned()),
                None => pod["tolerations"] = json!(self.tolerations),
            }
        }
        let Some(containers) = pod["containers"].as_array_mut() else {
            return;
        };
        for c in containers {
            if let Some(image) = c["image"].as_str() {
                c["image"] = json!(self.image(image));
            }
            if !is_operator {
                continue;
            }
            // The operator passes these on to the pods of the MCP servers it runs.
            let mut env = Vec::new();
            if self.registry.is_some() || self.tag.is_some() {
                let gateway = format!("{IMAGE_PREFIX}mcp-gateway:{VERSION}");
                env.push(json!({"name": "MCP_GATEWAY_IMAGE", "value": self.image(&gateway)}));
            }
            if !self.node_selector.is_empty() {
                env.push(json!({
                    "name": "MCP_OPERATOR_POD_NODE_SELECTOR",
                    "value": serde_json::to_string(&self.node_selector).expect("JSON"),
                }));
            }
            if !self.tolerations.is_empty() {
                env.push(json!({
                    "name": "MCP_OPERATOR_POD_TOLERATIONS",
                    "value": serde_json::to_string(&self.tolerations).expect("JSON"),
                }));
            }
            if let Some(list) = c["env"].as_array_mut() {
                list.extend(env);
            } else if !env.is_empty() {
                c["env"] = json!(env);
            }
        }
    }
}

// --- applying ------------------------------------------------------------------------------

/// The API of a generated object's kind (the kinds the generated files hold).
fn resource_of(object: &Value) -> Result<ApiResource> {
    use k8s_openapi::api::{admissionregistration, core, policy, rbac};
    let kind = object["kind"].as_str().unwrap_or_default();
    let r = match kind {
        "CustomResourceDefinition" => ApiResource::erase::<CustomResourceDefinition>(&()),
        "Namespace" => ApiResource::erase::<core::v1::Namespace>(&()),
        "ServiceAccount" => ApiResource::erase::<core::v1::ServiceAccount>(&()),
        "Service" => ApiResource::erase::<core::v1::Service>(&()),
        "ConfigMap" => ApiResource::erase::<core::v1::ConfigMap>(&()),
        "PersistentVolumeClaim" => ApiResource::erase::<core::v1::PersistentVolumeClaim>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        "ClusterRole" => ApiResource::erase::<rbac::v1::ClusterRole>(&()),
        "ClusterRoleBinding" => ApiResource::erase::<rbac::v1::ClusterRoleBinding>(&()),
        "Role" => ApiResource::erase::<rbac::v1::Role>(&()),
        "RoleBinding" => ApiResource::erase::<rbac::v1::RoleBinding>(&()),
        "ValidatingAdmissionPolicy" => {
            ApiResource::erase::<admissionregistration::v1::ValidatingAdmissionPolicy>(&())
        }
        "ValidatingAdmissionPolicyBinding" => {
            ApiResource::erase::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(&())
        }
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
        "PodDisruptionBudget" => ApiResource::erase::<policy::v1::PodDisruptionBudget>(&()),
        other => {
            return Err(CliError::Invalid(format!(
                "setup does not know how to apply a {other} (a bug: a generated file holds a new kind)"
            )));
        }
    };
    Ok(r)
}

fn describe(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("?").to_lowercase();
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!(
            "{kind} {ns}/{}",
            object["metadata"]["name"].as_str().unwrap_or("?")
        ),
        None => format!(
            "{kind} {}",
            object["metadata"]["name"].as_str().unwrap_or("?")
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Configured,
    Unchanged,
}

/// An object without what the server or controllers write (status, bookkeeping), to tell
/// whether an apply changed anything.
fn comparable(object: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = v["metadata"].as_object_mut() {
        for k in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(k);
        }
    }
    v
}

async fn apply_object(cluster: &Cluster, object: &Value) -> Result<Outcome> {
    let resource = resource_of(object)?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        None => Api::all_with(cluster.client.clone(), &resource),
    };
    let what = describe(object);
    let before = api
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, Some(&what)))?;
    let after = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(object),
        )
        .await
        .map_err(|e| apply_error(cluster, e, &what))?;
    Ok(match before {
        None => Outcome::Created,
        Some(b) if comparable(&b) == comparable(&after) => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    })
}

fn apply_error(cluster: &Cluster, e: kube::Error, what: &str) -> CliError {
    match e {
        kube::Error::Api(s) if s.code == 409 => CliError::hint(
            format!("{what}: conflict: {}", s.message),
            "another manager (kubectl, helm) owns these fields; take them over with \
             `kubectl apply --server-side --force-conflicts --field-manager mcp-runtime-setup`, \
             or delete the object and run setup again",
        ),
        kube::Error::Api(s) if s.code == 422 && s.message.contains("immutable") => CliError::hint(
            format!("{what}: {}", s.message),
            "a field that cannot change differs from the installed object (e.g. \
             --storage-class after the volume exists): delete the object and run setup again",
        ),
        kube::Error::Api(s) if s.code == 403 => CliError::hint(
            format!("{what}: access denied: {}", s.message),
            "setup installs cluster-wide objects (CRDs, ClusterRoles): run it as a cluster admin",
        ),
        other => cluster.explain(other, Some(what)),
    }
}

/// Waits until the CRDs are Established (served), or explains which is not.
async fn wait_established(cluster: &Cluster, names: &[String], deadline: Instant) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    loop {
        let mut pending = Vec::new();
        for name in names {
            let crd = api
                .get(name)
                .await
                .map_err(|e| cluster.explain(e, Some(&format!("CRD {name}"))))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if !established {
                pending.push(name.clone());
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::hint(
                format!("CRDs not Established in time: {}", pending.join(", ")),
                "see `kubectl get crd NAME -o yaml` (status.conditions); run setup again when fixed",
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// --- secrets -------------------------------------------------------------------------------

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| CliError::Read {
            path: "/dev/urandom".into(),
            source,
        })?;
    // Hex: safe unquoted in the libpq key=value URL and in key files.
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256_ref(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn secret_object(namespace: &str, name: &str, data: &[(&str, String)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: serde_json::from_value(secret_labels()).ok(),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `true` when created, `false` when it existed (it is then left exactly as it is).
async fn create_if_absent(cluster: &Cluster, secret: &Secret) -> Result<bool> {
    let meta = secret.metadata();
    let (ns, name) = (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    match api.create(&pp, secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(apply_error(cluster, e, &format!("secret {ns}/{name}"))),
    }
}

async fn read_secret(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<Secret>> {
    Api::<Secret>::namespaced(cluster.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, Some(&format!("secret {ns}/{name}"))))
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// Creates the Secrets that are absent; says for each whether it was created or kept. Values
/// are never printed.
async fn ensure_secrets(cluster: &Cluster, args: &SetupArgs) -> Result<Vec<(String, Outcome)>> {
    let skip = |p: Part| args.skip.contains(&p);
    let mut report = Vec::new();
    fn note(report: &mut Vec<(String, Outcome)>, ns: &str, name: &str, created: bool) {
        let outcome = if created {
            Outcome::Created
        } else {
            Outcome::Unchanged
        };
        report.push((format!("secret {ns}/{name}"), outcome));
    }
    let ns = platform::NAMESPACE;
    let mut sentinel_read_key = None;
    if !skip(Part::Sentinel) {
        let keys = read_secret(cluster, sentinel::NAMESPACE, sentinel::KEYS_SECRET).await?;
        if keys.is_none() {
            let (ingest, read) = (random_token()?, random_token()?);
            // The client halves first: a failure between the two leaves no Sentinel keys
            // nobody holds.
            create_if_absent(
                cluster,
                &secret_object(
                    ns,
                    SENTINEL_INGEST_KEY_SECRET,
                    &[(SENTINEL_INGEST_KEY_FILE, ingest.clone())],
                ),
            )
            .await?;
            sentinel_read_key = Some(read.clone());
            let created = create_if_absent(
                cluster,
                &secret_object(
                    sentinel::NAMESPACE,
                    sentinel::KEYS_SECRET,
                    &[
                        (sentinel::INGEST_KEYS, sha256_ref(&ingest)),
                        (sentinel::READ_KEYS, sha256_ref(&read)),
                    ],
                ),
            )
            .await?;
            note(
                &mut report,
                sentinel::NAMESPACE,
                sentinel::KEYS_SECRET,
                created,
            );
            note(&mut report, ns, SENTINEL_INGEST_KEY_SECRET, created);
        } else {
            note(
                &mut report,
                sentinel::NAMESPACE,
                sentinel::KEYS_SECRET,
                false,
            );
        }
    }
    if skip(Part::Platform) {
        return Ok(report);
    }
    // The signing key: generated once, then only ever read (never rotated by setup).
    let key = match read_secret(cluster, ns, platform::SIGNING_KEY_SECRET).await? {
        Some(s) => {
            let pem = secret_value(&s, platform::SIGNING_KEY_FILE).unwrap_or_default();
            let key = mcp_runtime_token::SigningKey::from_pem(&pem).map_err(|e| {
                CliError::hint(
                    format!(
                        "secret {ns}/{}: key {} is not a usable signing key: {e}",
                        platform::SIGNING_KEY_SECRET,
                        platform::SIGNING_KEY_FILE
                    ),
                    "setup never replaces a key: fix the Secret, or delete it to have a new key \
                     generated (tokens signed with the old one then stop working)",
                )
            })?;
            note(&mut report, ns, platform::SIGNING_KEY_SECRET, false);
            key
        }
        None => {
            let key = crate::commands::token::generate()?;
            let created = create_if_absent(
                cluster,
                &secret_object(
                    ns,
                    platform::SIGNING_KEY_SECRET,
                    &[(platform::SIGNING_KEY_FILE, key.to_pem())],
                ),
            )
            .await?;
            note(&mut report, ns, platform::SIGNING_KEY_SECRET, created);
            if !created {
                // Created meanwhile by someone else: use theirs.
                let s = read_secret(cluster, ns, platform::SIGNING_KEY_SECRET).await?;
                let pem = s
                    .and_then(|s| secret_value(&s, platform::SIGNING_KEY_FILE))
                    .unwrap_or_default();
                mcp_runtime_token::SigningKey::from_pem(&pem)
                    .map_err(|e| CliError::Invalid(format!("the signing key Secret: {e}")))?
            } else {
                key
            }
        }
    };
    // The public half, where gateways read it; applied (not secret, follows the key).
    let public = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": GATEWAY_KEYS_SECRET, "namespace": ns, "labels": secret_labels()},
        "type": "Opaque",
        "stringData": {GATEWAY_KEYS_FILE: key.public_pem()},
    });
    let outcome = apply_object(cluster, &public).await?;
    report.push((format!("secret {ns}/{GATEWAY_KEYS_SECRET}"), outcome));

    let created = create_if_absent(
        cluster,
        &secret_object(
            ns,
            platform::POSTGRES_SECRET,
            &[(platform::POSTGRES_PASSWORD_KEY, random_token()?)],
        ),
    )
    .await?;
    note(&mut report, ns, platform::POSTGRES_SECRET, created);

    let existing = read_secret(cluster, ns, platform::SENTINEL_READ_KEY_SECRET).await?;
    if existing.is_none() {
        let read = match sentinel_read_key {
            Some(k) => k,
            None if skip(Part::Sentinel) => random_token()?,
            None => {
                return Err(CliError::hint(
                    format!(
                        "secret {ns}/{} is missing, but Sentinel's keys ({}/{}) exist: the read \
                         key they accept cannot be recovered from their hashes",
                        platform::SENTINEL_READ_KEY_SECRET,
                        sentinel::NAMESPACE,
                        sentinel::KEYS_SECRET
                    ),
                    format!(
                        "delete secret {}/{} to have setup generate both anew, or create {ns}/{} \
                         with key `{}` holding a read key Sentinel accepts",
                        sentinel::NAMESPACE,
                        sentinel::KEYS_SECRET,
                        platform::SENTINEL_READ_KEY_SECRET,
                        platform::SENTINEL_READ_KEY_FILE
                    ),
                ));
            }
        };
        let created = create_if_absent(
            cluster,
            &secret_object(
                ns,
                platform::SENTINEL_READ_KEY_SECRET,
                &[(platform::SENTINEL_READ_KEY_FILE, read)],
            ),
        )
        .await?;
        note(&mut report, ns, platform::SENTINEL_READ_KEY_SECRET, created);
    } else {
        note(&mut report, ns, platform::SENTINEL_READ_KEY_SECRET, false);
    }
    Ok(report)
}

// --- readiness -----------------------------------------------------------------------------

/// A Deployment or StatefulSet and how ready it is.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Workload {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub exists: bool,
    pub desired: i32,
    pub ready: i32,
    /// Every replica runs the current spec and is available.
    pub available: bool,
    pub images: Vec<String>,
    #[serde(skip)]
    selector: Option<LabelSelector>,
    #[serde(skip)]
    conditions: Vec<String>,
}

impl Workload {
    pub fn label(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind.to_lowercase(),
            self.namespace,
            self.name
        )
    }
}

fn images_of(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<String> {
    spec.map(|p| {
        p.containers
            .iter()
            .filter_map(|c| c.image.clone())
            .collect()
    })
    .unwrap_or_default()
}

pub async fn workload(
    cluster: &Cluster,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Workload> {
    let what = format!("{} {namespace}/{name}", kind.to_lowercase());
    let mut w = Workload {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        exists: false,
        desired: 0,
        ready: 0,
        available: false,
        images: Vec::new(),
        selector: None,
        conditions: Vec::new(),
    };
    let failing = |conditions: Vec<(String, String, Option<String>, Option<String>)>| {
        conditions
            .into_iter()
            .filter(|(_, status, _, _)| status != "True")
            .map(|(t, s, reason, message)| {
                format!(
                    "condition {t}={s}: {} {}",
                    reason.unwrap_or_default(),
                    message.unwrap_or_default()
                )
                .trim_end()
                .to_owned()
            })
            .collect::<Vec<_>>()
    };
    if kind == "Deployment" {
        let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
        let Some(d) = api
            .get_opt(name)
            .await
            .map_err(|e| cluster.explain(e, Some(&what)))?
        else {
            return Ok(w);
        };
        let spec = d.spec.unwrap_or_default();
        let st = d.status.unwrap_or_default();
        w.exists = true;
        w.desired = spec.replicas.unwrap_or(1);
        w.ready = st.ready_replicas.unwrap_or(0);
        w.available = st.observed_generation >= d.metadata.generation
            && st.updated_replicas.unwrap_or(0) == w.desired
            && st.available_replicas.unwrap_or(0) == w.desired
            && st.replicas.unwrap_or(0) == w.desired;
        w.images = images_of(spec.template.spec.as_ref());
        w.selector = Some(spec.selector);
        w.conditions = failing(
            st.conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.type_, c.status, c.reason, c.message))
                .collect(),
        );
    } else {
        let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
        let Some(s) = api
            .get_opt(name)
            .await
            .map_err(|e| cluster.explain(e, Some(&what)))?
        else {
            return Ok(w);
        };
        let spec = s.spec.unwrap_or_default();
        let st = s.status.unwrap_or_default();
        w.exists = true;
        w.desired = spec.replicas.unwrap_or(1);
        w.ready = st.ready_replicas.unwrap_or(0);
        w.available = st.observed_generation >= s.metadata.generation
            && st.updated_replicas.unwrap_or(0) == w.desired
            && w.ready == w.desired
            && st.replicas == w.desired;
        w.images = images_of(spec.template.spec.as_ref());
        w.selector = Some(spec.selector);
        w.conditions = failing(
            st.conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.type_, c.status, c.reason, c.message))
                .collect(),
        );
    }
    Ok(w)
}

/// Why a workload is not ready: its failing conditions, then each pod that is not ready with
/// its scheduling or container state and its latest warning events.
pub async fn why_not_ready(cluster: &Cluster, w: &Workload) -> Vec<String> {
    if !w.exists {
        return vec!["it does not exist".into()];
    }
    let mut lines = vec![format!("{}/{} ready", w.ready, w.desired)];
    lines.extend(w.conditions.iter().cloned());
    let selector = w
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &w.namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return lines;
    };
    if list.items.is_empty() {
        lines.push("no pods (see the ReplicaSet's or StatefulSet's events)".into());
    }
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &w.namespace);
    for pod in list.items {
        let name = pod.name_any();
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            continue;
        }
        let mut why = vec![status.phase.clone().unwrap_or_else(|| "Unknown".into())];
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled" && c.status != "True" {
                why.push(format!(
                    "not scheduled: {}",
                    c.message.clone().unwrap_or_default()
                ));
            }
        }
        for cs in status.container_statuses.iter().flatten() {
            if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                why.push(format!(
                    "container {} waiting: {} {}",
                    cs.name,
                    waiting.reason.clone().unwrap_or_default(),
                    waiting.message.clone().unwrap_or_default()
                ));
            }
        }
        lines.push(format!("pod {name}: {}", why.join("; ")));
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        if let Ok(list) = events.list(&lp).await {
            let mut warnings: Vec<Event> = list
                .items
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .collect();
            warnings.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
            for e in warnings.iter().rev().take(3) {
                lines.push(format!(
                    "  event {}: {}",
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim_end()
                ));
            }
        }
    }
    lines
}

async fn wait_ready(
    cluster: &Cluster,
    workloads: &[(String, String, &'static str)],
    deadline: Instant,
) -> Result<()> {
    let mut announced = std::collections::BTreeSet::new();
    loop {
        let mut pending = Vec::new();
        for (ns, name, kind) in workloads {
            let w = workload(cluster, kind, ns, name).await?;
            if w.available {
                if announced.insert(w.label()) {
                    eprintln!("      {} ready ({}/{})", w.label(), w.ready, w.desired);
                }
            } else {
                pending.push(w);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut message = String::from("not ready in time:");
            for w in &pending {
                message.push_str(&format!("\n  {}:", w.label()));
                for line in why_not_ready(cluster, w).await {
                    message.push_str(&format!("\n    {line}"));
                }
            }
            return Err(CliError::hint(
                message,
                "fix what is named above (`kubectl -n NAMESPACE describe pod POD` has more), then \
                 run setup again: it is idempotent; --timeout waits longer",
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// --- the command ---------------------------------------------------------------------------

/// `mcp-runtime setup`.
pub fn run(args: SetupArgs) -> Result<u8> {
    let plan = Plan::new(&args);
    if args.dry_run {
        let objects = plan.printable();
        let mut out = std::io::stdout().lock();
        match args.output {
            DryRunFormat::Json => write_data(&mut out, Format::Json, &objects)?,
            DryRunFormat::Yaml => {
                let mut text = String::new();
                for (i, o) in objects.iter().enumerate() {
                    if i > 0 {
                        text.push_str("---\n");
                    }
                    text.push_str(
                        &serde_yaml::to_string(o).map_err(|e| CliError::Invalid(e.to_string()))?,
                    );
                }
                write_stdout(&mut out, &text)?;
            }
        }
        eprintln!(
            "dry run: {} objects, nothing applied; Secret values are redacted (setup generates \
             them when the Secret is absent and never replaces them)",
            objects.len()
        );
        return Ok(0);
    }
    cluster::runtime()?.block_on(install(args, plan))
}

async fn install(args: SetupArgs, plan: Plan) -> Result<u8> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let cluster = cluster::connect().await?;
    eprintln!("installing mcp-runtime {VERSION} into {}", cluster.url);
    let mut changed = 0usize;
    let mut workloads = Vec::new();
    for (index, step) in STEPS.into_iter().enumerate() {
        let prefix = format!("[{}/{TOTAL_STEPS}] {}", index + 1, step.name());
        let skipped = match step {
            Step::Sentinel => args.skip.contains(&Part::Sentinel),
            Step::Platform => args.skip.contains(&Part::Platform),
            Step::Secrets => {
                args.skip.contains(&Part::Sentinel) && args.skip.contains(&Part::Platform)
            }
            _ => false,
        };
        if skipped {
            eprintln!("{prefix} … skipped");
            continue;
        }
        let outcomes: Vec<(String, Outcome)> = if step == Step::Secrets {
            ensure_secrets(&cluster, &args).await?
        } else {
            let mut outcomes = Vec::new();
            for (_, object) in plan.objects.iter().filter(|(s, _)| *s == step) {
                let outcome = apply_object(&cluster, object).await?;
                outcomes.push((describe(object), outcome));
                let kind = object["kind"].as_str().unwrap_or_default();
                if kind == "Deployment" || kind == "StatefulSet" {
                    workloads.push((
                        object["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        object["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        if kind == "Deployment" {
                            "Deployment"
                        } else {
                            "StatefulSet"
                        },
                    ));
                }
            }
            outcomes
        };
        let count = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
        let (created, configured, unchanged) = (
            count(Outcome::Created),
            count(Outcome::Configured),
            count(Outcome::Unchanged),
        );
        changed += created + configured;
        let verb = if created + configured == 0 {
            "unchanged"
        } else {
            "applied"
        };
        eprintln!(
            "{prefix} … {verb} ({created} created, {configured} configured, {unchanged} unchanged)"
        );
        for (what, outcome) in &outcomes {
            if *outcome != Outcome::Unchanged {
                let word = if *outcome == Outcome::Created {
                    "created"
                } else {
                    "configured"
                };
                eprintln!("      {what} {word}");
            }
        }
        if step == Step::Crds {
            let names: Vec<String> = plan
                .objects
                .iter()
                .filter(|(s, _)| *s == Step::Crds)
                .filter_map(|(_, o)| o["metadata"]["name"].as_str().map(str::to_owned))
                .collect();
            // The operator's RBAC and the platform's objects name these types.
            wait_established(
                &cluster,
                &names,
                deadline.min(Instant::now() + Duration::from_secs(60)),
            )
            .await?;
        }
    }
    eprintln!(
        "[{TOTAL_STEPS}/{TOTAL_STEPS}] readiness … waiting for {} workloads (timeout {}s)",
        workloads.len(),
        args.timeout.as_secs()
    );
    wait_ready(&cluster, &workloads, deadline).await?;
    let summary = if changed == 0 {
        format!(
            "mcp-runtime {VERSION} is installed and ready; nothing changed ({:.1}s)",
            started.elapsed().as_secs_f64()
        )
    } else {
        format!(
            "mcp-runtime {VERSION} is installed and ready; {changed} objects created or changed ({:.1}s)",
            started.elapsed().as_secs_f64()
        )
    };
    eprintln!("{summary}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> SetupArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: SetupArgs,
        }
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        T::parse_from(argv).a
    }

    #[test]
    fn durations_and_tolerations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(
            parse_toleration("kwok.x-k8s.io/node:NoSchedule").unwrap().0,
            json!({"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"})
        );
        assert_eq!(
            parse_toleration("a=b").unwrap().0,
            json!({"key": "a", "operator": "Equal", "value": "b"})
        );
        assert!(parse_toleration("a:Sometimes").is_err());
    }

    #[test]
    fn overrides_reach_every_mcp_runtime_image_and_pod_but_not_postgres() {
        let plan = Plan::new(&args(&[
            "--image-registry",
            "registry.local:5000/mirror",
            "--image-tag",
            "dev",
            "--node-selector",
            "type=kwok",
            "--storage-class",
            "fast",
        ]));
        let mut workloads = 0;
        for (_, o) in &plan.objects {
            if o["kind"] == "Deployment" || o["kind"] == "StatefulSet" {
                workloads += 1;
                let pod = &o["spec"]["template"]["spec"];
                assert_eq!(pod["nodeSelector"]["type"], "kwok", "{}", describe(o));
                let image = pod["containers"][0]["image"].as_str().unwrap();
                if o["metadata"]["name"] == platform::POSTGRES_NAME {
                    assert_eq!(image, platform::POSTGRES_IMAGE);
                    assert_eq!(
                        o["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
                        "fast"
                    );
                } else {
                    assert!(image.starts_with("registry.local:5000/mirror/"), "{image}");
                    assert!(image.ends_with(":dev"), "{image}");
                }
            }
        }
        assert_eq!(workloads, 4, "operator, sentinel, platform, postgres");
        let operator = plan
            .objects
            .iter()
            .find(|(_, o)| o["metadata"]["name"] == OPERATOR_NAME && o["kind"] == "Deployment")
            .unwrap();
        let env = operator.1["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(
            env.contains("registry.local:5000/mirror/mcp-gateway:dev"),
            "{env}"
        );
        assert!(env.contains("MCP_OPERATOR_POD_NODE_SELECTOR"), "{env}");
    }

    #[test]
    fn the_plan_applies_namespaces_first_and_skips_parts() {
        let plan = Plan::new(&args(&[]));
        let printable = plan.printable();
        assert_eq!(printable[0]["kind"], "CustomResourceDefinition");
        let first_other = printable
            .iter()
            .position(|o| o["kind"] != "CustomResourceDefinition")
            .unwrap();
        assert_eq!(printable[first_other]["kind"], "Namespace");
        let plan = Plan::new(&args(&["--skip", "sentinel,platform"]));
        assert!(plan.secrets.is_empty());
        assert!(
            plan.objects
                .iter()
                .all(|(s, _)| ![Step::Sentinel, Step::Platform].contains(s))
        );
    }
}
