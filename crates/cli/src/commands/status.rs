//! `mcp-runtime status` (the installed components and every MCPServer) and
//! `mcp-runtime cluster doctor` (what a cluster needs, each failed check with its fix).

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use mcp_runtime_api::MCPServer;
use mcp_runtime_deploy::{platform, sentinel};
use serde::Serialize;

use crate::commands::cluster::{self, Cluster, phase_of, table};
use crate::commands::setup::{self, OPERATOR_NAME, OPERATOR_NAMESPACE, Part, Workload};
use crate::distribution::{ConfigLookup, Registry};
use crate::error::{Result, exit};
use crate::output::{Format, write_data, write_stdout};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
    /// Parts left out at setup (`setup --skip`): not reported, not counted as missing.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    pub skip: Vec<Part>,
}

/// The workloads `setup` installs: component, kind, namespace, name, part.
const COMPONENTS: [(&str, &str, &str, &str, Option<Part>); 4] = [
    (
        "operator",
        "Deployment",
        OPERATOR_NAMESPACE,
        OPERATOR_NAME,
        None,
    ),
    (
        "sentinel",
        "Deployment",
        sentinel::NAMESPACE,
        sentinel::NAME,
        Some(Part::Sentinel),
    ),
    (
        "platform",
        "Deployment",
        platform::NAMESPACE,
        platform::NAME,
        Some(Part::Platform),
    ),
    (
        "postgres",
        "StatefulSet",
        platform::NAMESPACE,
        platform::POSTGRES_NAME,
        Some(Part::Platform),
    ),
];

#[derive(Debug, Serialize)]
struct ComponentStatus {
    component: &'static str,
    kind: &'static str,
    namespace: String,
    name: String,
    /// `ready`, `not ready` or `missing`.
    state: &'static str,
    ready: String,
    image: String,
    /// The tag of the image (mcp-runtime's images are tagged with the release).
    version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ServerStatus {
    namespace: String,
    name: String,
    phase: String,
    ready: String,
    gateway: String,
    policy_revision: String,
}

#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    components: Vec<ComponentStatus>,
    servers: Vec<ServerStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servers_error: Option<String>,
}

fn version_of(image: &str) -> String {
    // The tag after the last `:` that is not part of a registry port.
    match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag.to_owned(),
        _ => "-".into(),
    }
}

async fn component(
    cluster: &Cluster,
    c: &(&'static str, &'static str, &str, &str, Option<Part>),
) -> Result<ComponentStatus> {
    let (component, kind, namespace, name, _) = *c;
    let w: Workload = setup::workload(cluster, kind, namespace, name).await?;
    let state = if !w.exists {
        "missing"
    } else if w.available {
        "ready"
    } else {
        "not ready"
    };
    let problems = if w.available {
        Vec::new()
    } else {
        setup::why_not_ready(cluster, &w).await
    };
    let image = w.images.first().cloned().unwrap_or_else(|| "-".into());
    Ok(ComponentStatus {
        component,
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        state,
        ready: if w.exists {
            format!("{}/{}", w.ready, w.desired)
        } else {
            "-".into()
        },
        version: version_of(&image),
        image,
        problems,
    })
}

fn server_row(s: &MCPServer) -> ServerStatus {
    let st = s.status.as_ref();
    let ready = st
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "-".into());
    ServerStatus {
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        phase: phase_of(st.and_then(|s| s.phase)),
        ready,
        gateway: if s.spec.gateway_enabled() {
            "on"
        } else {
            "off"
        }
        .into(),
        policy_revision: st
            .and_then(|s| s.policy_revision.as_deref())
            .map(|r| r.trim_start_matches("sha256:").chars().take(12).collect())
            .unwrap_or_else(|| "-".into()),
    }
}

/// `mcp-runtime status`: exit 0 when every component is ready, [`exit::NOT_READY`] when one is
/// missing or not ready.
pub fn status(args: StatusArgs) -> Result<u8> {
    cluster::runtime()?.block_on(async {
        let cluster = cluster::connect().await?;
        let mut components = Vec::new();
        for c in COMPONENTS
            .iter()
            .filter(|c| c.4.is_none_or(|p| !args.skip.contains(&p)))
        {
            components.push(component(&cluster, c).await?);
        }
        let (servers, servers_error) = match Api::<MCPServer>::all(cluster.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => {
                let mut rows: Vec<ServerStatus> = list.items.iter().map(server_row).collect();
                rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                (rows, None)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => (
                Vec::new(),
                Some("the mcpruntime.org CRDs are not installed (run `mcp-runtime setup`)".into()),
            ),
            Err(e) => return Err(cluster.explain(e, Some("listing MCPServers"))),
        };
        let healthy = components.iter().all(|c| c.state == "ready") && servers_error.is_none();
        let report = Report {
            healthy,
            components,
            servers,
            servers_error,
        };
        let mut out = std::io::stdout().lock();
        if args.output == Format::Table {
            let rows: Vec<Vec<String>> = report
                .components
                .iter()
                .map(|c| {
                    vec![
                        c.component.to_owned(),
                        c.state.to_owned(),
                        c.ready.clone(),
                        format!("{}/{}", c.namespace, c.name),
                        c.version.clone(),
                        c.image.clone(),
                    ]
                })
                .collect();
            let mut text = table(
                &["COMPONENT", "STATE", "READY", "OBJECT", "VERSION", "IMAGE"],
                &rows,
            );
            for c in report.components.iter().filter(|c| !c.problems.is_empty()) {
                text.push_str(&format!("\n{} is {}:\n", c.component, c.state));
                for p in &c.problems {
                    text.push_str(&format!("  {p}\n"));
                }
            }
            text.push('\n');
            match &report.servers_error {
                Some(e) => text.push_str(&format!("MCPServers: {e}\n")),
                None if report.servers.is_empty() => text.push_str("No MCPServers.\n"),
                None => {
                    let rows: Vec<Vec<String>> = report
                        .servers
                        .iter()
                        .map(|s| {
                            vec![
                                s.namespace.clone(),
                                s.name.clone(),
                                s.phase.clone(),
                                s.ready.clone(),
                                s.gateway.clone(),
                                s.policy_revision.clone(),
                            ]
                        })
                        .collect();
                    text.push_str(&table(
                        &[
                            "NAMESPACE",
                            "MCPSERVER",
                            "PHASE",
                            "READY",
                            "GATEWAY",
                            "POLICY",
                        ],
                        &rows,
                    ));
                }
            }
            write_stdout(&mut out, &text)?;
        } else {
            write_data(&mut out, args.output, &report)?;
        }
        Ok(if report.healthy { 0 } else { exit::NOT_READY })
    })
}

// --- doctor --------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Check that the cluster has what mcp-runtime needs, and say how to fix what it lacks.
    ///
    /// Checks: the Kubernetes API (reachable, version); the mcpruntime.org CRDs (installed,
    /// Established, serving v1alpha1, with this CLI's schema); the operator Deployment
    /// (available); an IngressClass (a warning when there is none); NetworkPolicy (served by
    /// the API; whether it is enforced depends on the network plugin and cannot be seen from
    /// the API); the image registry (reachable over the distribution API).
    ///
    /// Exit codes: 0 every check passed (warnings allowed); 1 a check failed.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The registry the cluster pulls mcp-runtime's images from, HOST[:PORT].
    #[arg(long, env = "MCP_RUNTIME_REGISTRY", value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of a CA to trust for the registry besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    result: Verdict,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(name: &str, result: Verdict, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        check: name.to_owned(),
        result,
        detail: detail.into(),
        fix,
    }
}

const SETUP_FIX: &str =
    "run `mcp-runtime setup` (or `kubectl apply --server-side -f deploy/crds/`) with this CLI";

async fn crd_checks(cluster: &Cluster, checks: &mut Vec<Check>) {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    for (_, want) in mcp_runtime_api::crd::all() {
        let name = want.name_any();
        let label = format!("CRD {name}");
        let have = match api.get_opt(&name).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                checks.push(check(
                    &label,
                    Verdict::Fail,
                    "not installed",
                    Some(SETUP_FIX.into()),
                ));
                continue;
            }
            Err(e) => {
                checks.push(check(
                    &label,
                    Verdict::Fail,
                    format!("cannot read it: {e}"),
                    Some("read access to customresourcedefinitions is needed".into()),
                ));
                continue;
            }
        };
        let established = have
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        let version = have.spec.versions.iter().find(|v| v.name == "v1alpha1");
        let schema = |crd: &CustomResourceDefinition| {
            crd.spec
                .versions
                .iter()
                .find(|v| v.name == "v1alpha1")
                .and_then(|v| serde_json::to_value(&v.schema).ok())
        };
        let verdict = if !established {
            check(
                &label,
                Verdict::Fail,
                "not Established (not served yet)",
                Some(format!(
                    "see `kubectl get crd {name} -o yaml` (status.conditions)"
                )),
            )
        } else if !version.is_some_and(|v| v.served) {
            check(
                &label,
                Verdict::Fail,
                "does not serve v1alpha1",
                Some(SETUP_FIX.into()),
            )
        } else if schema(&have) != schema(&want) {
            check(
                &label,
                Verdict::Fail,
                format!(
                    "v1alpha1 schema differs from this CLI's ({})",
                    env!("CARGO_PKG_VERSION")
                ),
                Some(
                    "upgrade: run `mcp-runtime setup` with the CLI of the release you want; or use \
                     the CLI matching the cluster"
                        .into(),
                ),
            )
        } else {
            check(
                &label,
                Verdict::Pass,
                "Established, serves v1alpha1, schema matches this CLI",
                None,
            )
        };
        checks.push(verdict);
    }
}

async fn registry_check(args: &DoctorArgs) -> Check {
    let name = "registry";
    let Some(host) = args
        .registry
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    else {
        return check(
            name,
            Verdict::Fail,
            "no registry given",
            Some(
                "pass --registry HOST[:PORT] (or set MCP_RUNTIME_REGISTRY): the registry your \
                 images are pushed to (`mcp-runtime registry push`)"
                    .into(),
            ),
        );
    };
    let credentials = match crate::distribution::credentials_for(host) {
        Ok(ConfigLookup::Found(c)) => Some(c),
        _ => None,
    };
    let registry = match Registry::new(host, args.insecure, args.ca_file.clone(), credentials) {
        Ok(r) => r,
        Err(e) => return check(name, Verdict::Fail, e, Some("check --ca-file".into())),
    };
    let url = format!("{}/v2/", registry.base());
    match registry
        .send_once(&Method::GET, "/v2/", &[], &Bytes::new())
        .await
    {
        Ok(a) if a.status.is_success() || a.status == StatusCode::UNAUTHORIZED => check(
            name,
            Verdict::Pass,
            format!(
                "{url} answers the distribution API{}",
                if a.status == StatusCode::UNAUTHORIZED {
                    " (authentication required)"
                } else {
                    ""
                }
            ),
            None,
        ),
        Ok(a) => check(
            name,
            Verdict::Fail,
            format!(
                "GET {url} answered {}: not an OCI distribution registry?",
                a.status
            ),
            Some(format!(
                "check the address; `mcp-runtime registry status --registry {host}` shows more"
            )),
        ),
        Err(e) => check(
            name,
            Verdict::Fail,
            format!("{url}: {e}"),
            Some(format!(
                "check that {host} is up and reachable from here{}; `mcp-runtime registry status --registry {host}` shows more",
                if args.insecure {
                    ""
                } else {
                    " (--insecure for a plain-HTTP registry, --ca-file for a private CA)"
                }
            )),
        ),
    }
}

async fn run_checks(args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let cluster = match cluster::connect().await {
        Ok(c) => c,
        Err(e) => {
            checks.push(check(
                "kubernetes API",
                Verdict::Fail,
                e.to_string(),
                Some("set KUBECONFIG (or create ~/.kube/config), or run inside a cluster".into()),
            ));
            checks.push(registry_check(args).await);
            return checks;
        }
    };
    match cluster.client.apiserver_version().await {
        Ok(v) => checks.push(check(
            "kubernetes API",
            Verdict::Pass,
            format!("{} answers, {}", cluster.url, v.git_version),
            None,
        )),
        Err(e) => {
            checks.push(check(
                "kubernetes API",
                Verdict::Fail,
                format!("{} does not answer: {e}", cluster.url),
                Some(
                    "is the cluster running and the kubeconfig current? (kubectl cluster-info)"
                        .into(),
                ),
            ));
            // Nothing else of the cluster can be checked.
            checks.push(registry_check(args).await);
            return checks;
        }
    }
    crd_checks(&cluster, &mut checks).await;
    checks.push(
        match setup::workload(&cluster, "Deployment", OPERATOR_NAMESPACE, OPERATOR_NAME).await {
            Ok(w) if w.available => check(
                "operator",
                Verdict::Pass,
                format!("{} available ({}/{})", w.label(), w.ready, w.desired),
                None,
            ),
            Ok(w) if !w.exists => check(
                "operator",
                Verdict::Fail,
                format!("{} does not exist", w.label()),
                Some("run `mcp-runtime setup`".into()),
            ),
            Ok(w) => check(
                "operator",
                Verdict::Fail,
                format!(
                    "{} not available: {}",
                    w.label(),
                    setup::why_not_ready(&cluster, &w).await.join("; ")
                ),
                Some(format!(
                    "see `kubectl -n {OPERATOR_NAMESPACE} describe deployment {OPERATOR_NAME}` and its pods"
                )),
            ),
            Err(e) => check("operator", Verdict::Fail, e.to_string(), None),
        },
    );
    checks.push(
        match Api::<IngressClass>::all(cluster.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) if list.items.is_empty() => check(
                "ingress class",
                Verdict::Warn,
                "no IngressClass: MCPServers with a route get an Ingress nobody serves",
                Some("install an ingress controller (e.g. ingress-nginx), or reach servers through their Services".into()),
            ),
            Ok(list) => {
                let names: Vec<String> = list
                    .items
                    .iter()
                    .map(|c| {
                        let default = c
                            .annotations()
                            .get("ingressclass.kubernetes.io/is-default-class")
                            .is_some_and(|v| v == "true");
                        format!("{}{}", c.name_any(), if default { " (default)" } else { "" })
                    })
                    .collect();
                check("ingress class", Verdict::Pass, names.join(", "), None)
            }
            Err(e) => check("ingress class", Verdict::Warn, format!("cannot list IngressClasses: {e}"), None),
        },
    );
    checks.push(match cluster.client.list_api_group_resources("networking.k8s.io/v1").await {
        Ok(list) if list.resources.iter().any(|r| r.name == "networkpolicies") => check(
            "network policy",
            Verdict::Pass,
            "networking.k8s.io/v1 NetworkPolicy is served; whether it is enforced depends on the \
             network plugin (CNI) and cannot be verified from the API",
            None,
        ),
        Ok(_) => check(
            "network policy",
            Verdict::Fail,
            "the API does not serve networking.k8s.io/v1 NetworkPolicy",
            Some("use a Kubernetes version and distribution that serves it, with a CNI that enforces it (Calico, Cilium)".into()),
        ),
        Err(e) => check("network policy", Verdict::Fail, format!("discovery failed: {e}"), None),
    });
    checks.push(registry_check(args).await);
    checks
}

/// `mcp-runtime cluster doctor`: exit 0 when no check failed, 1 otherwise.
pub fn doctor(args: DoctorArgs) -> Result<u8> {
    let checks = cluster::runtime()?.block_on(run_checks(&args));
    let failed = checks.iter().filter(|c| c.result == Verdict::Fail).count();
    let warned = checks.iter().filter(|c| c.result == Verdict::Warn).count();
    let passed = checks.len() - failed - warned;
    let mut out = std::io::stdout().lock();
    if args.output == Format::Table {
        let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut text = String::new();
        for c in &checks {
            let word = match c.result {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            text.push_str(&format!("{word}  {:<width$}  {}\n", c.check, c.detail));
            if let Some(fix) = &c.fix {
                text.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
            }
        }
        text.push_str(&format!(
            "\n{passed} passed, {warned} warnings, {failed} failed\n"
        ));
        write_stdout(&mut out, &text)?;
    } else {
        #[derive(Serialize)]
        struct Doctor<'a> {
            passed: bool,
            checks: &'a [Check],
        }
        write_data(
            &mut out,
            args.output,
            &Doctor {
                passed: failed == 0,
                checks: &checks,
            },
        )?;
    }
    Ok(if failed == 0 { 0 } else { exit::FAILURE })
}
