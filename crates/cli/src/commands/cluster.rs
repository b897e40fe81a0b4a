//! Commands against a cluster: `server apply|list|get|status|delete`, `access grant
//! apply|list|delete|disable|enable`, `access session apply|list|revoke|unrevoke|delete`.
//!
//! The cluster comes from the kubeconfig (`KUBECONFIG`, `~/.kube/config`) or the in-cluster
//! ServiceAccount, as with kubectl. Manifests are validated with the same pure rules as the
//! offline commands before anything is sent, then server-side applied with the field manager
//! `mcp-runtime-cli`. Errors say whether the cluster is missing or unreachable, the CRDs are
//! not installed, or access is denied.

use std::path::PathBuf;

use clap::Args;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use mcp_runtime_api::manifest::Manifest;
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CliError, Result};
use crate::files;
use crate::output::{Format, write_data, write_stdout};

/// Field manager of everything the CLI writes.
pub const FIELD_MANAGER: &str = "mcp-runtime-cli";
const GROUP_VERSION: &str = "mcpruntime.org/v1alpha1";

/// Where to look.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// Namespace; default: the kubeconfig context's namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest files or directories (searched for *.yaml, *.yml); repeat for more.
    #[arg(long = "filename", short = 'f', value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// Take over fields another manager owns (server-side apply conflicts).
    #[arg(long)]
    pub force_conflicts: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// List across all namespaces.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Name of the object.
    pub name: String,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// Name of the object.
    pub name: String,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
}

/// The kinds the cluster commands handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Server,
    Grant,
    Session,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Server => "MCPServer",
            Kind::Grant => "MCPAccessGrant",
            Kind::Session => "MCPAgentSession",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Server => "mcpserver",
            Kind::Grant => "mcpaccessgrant",
            Kind::Session => "mcpagentsession",
        }
    }

    pub fn command(self) -> &'static str {
        match self {
            Kind::Server => "mcp-runtime server apply",
            Kind::Grant => "mcp-runtime access grant apply",
            Kind::Session => "mcp-runtime access session apply",
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))
}

/// The cluster and the namespace to use.
pub(crate) struct Cluster {
    pub(crate) client: Client,
    pub(crate) url: String,
    default_namespace: String,
}

pub(crate) async fn connect() -> Result<Cluster> {
    let config = kube::Config::infer().await.map_err(|e| {
        CliError::hint(
            format!("no Kubernetes cluster is configured: {e}"),
            "set KUBECONFIG (or create ~/.kube/config), or run inside a cluster",
        )
    })?;
    let url = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| {
        CliError::hint(
            format!("cannot configure a client for {url}: {e}"),
            "check the cluster and user entries of your kubeconfig",
        )
    })?;
    Ok(Cluster {
        client,
        url,
        default_namespace,
    })
}

impl Cluster {
    pub fn namespace(&self, args: &NamespaceArgs) -> String {
        args.namespace
            .clone()
            .unwrap_or_else(|| self.default_namespace.clone())
    }

    /// Whether the mcpruntime.org API is served.
    async fn crds_installed(&self) -> Result<bool> {
        match self.client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == "mcpservers")),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.explain(e, None)),
        }
    }

    /// Turns a client error into a message for a person.
    pub(crate) fn explain(&self, e: kube::Error, what: Option<&str>) -> CliError {
        let prefix = what.map(|w| format!("{w}: ")).unwrap_or_default();
        match e {
            kube::Error::Api(s) if s.code == 403 => CliError::hint(
                format!("{prefix}access denied: {}", s.message),
                "ask for RBAC on the mcpruntime.org resources in this namespace",
            ),
            kube::Error::Api(s) if s.code == 401 => CliError::hint(
                format!(
                    "{prefix}the cluster at {} rejected the credentials: {}",
                    self.url, s.message
                ),
                "refresh the credentials in your kubeconfig",
            ),
            kube::Error::Api(s) if s.code == 409 => CliError::hint(
                format!("{prefix}conflict: {}", s.message),
                "another manager owns these fields; pass --force-conflicts to take them over",
            ),
            kube::Error::Api(s) => CliError::Invalid(format!("{prefix}{}", s.message)),
            other => CliError::hint(
                format!(
                    "{prefix}cannot reach the Kubernetes API at {}: {other}",
                    self.url
                ),
                "is the cluster running and the kubeconfig current? (kubectl cluster-info)",
            ),
        }
    }

    /// Like `explain`, but a 404 is checked against the CRDs first.
    async fn explain_404(&self, e: kube::Error, what: &str) -> CliError {
        if matches!(&e, kube::Error::Api(s) if s.code == 404) {
            match self.crds_installed().await {
                Ok(false) => return crds_missing(&self.url),
                Err(other) => return other,
                Ok(true) => {}
            }
        }
        self.explain(e, Some(what))
    }
}

fn crds_missing(url: &str) -> CliError {
    CliError::hint(
        format!("the mcpruntime.org CRDs are not installed in the cluster at {url}"),
        "install them with `kubectl apply -f deploy/crds/` (and the operator with `kubectl apply -f deploy/operator/`)",
    )
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

// --- apply ----------------------------------------------------------------------------------

/// `server apply`, `access grant apply`, `access session apply`.
pub fn apply(kind: Kind, args: ApplyArgs) -> Result<()> {
    runtime()?.block_on(apply_async(kind, args))
}

async fn apply_async(kind: Kind, args: ApplyArgs) -> Result<()> {
    let cluster = connect().await?;
    let namespace = cluster.namespace(&args.namespace);
    let manifests = files::load_manifests(&args.files, &namespace)?;
    let applied = apply_manifests(&cluster, manifests, Some(kind), args.force_conflicts).await?;
    let mut out = String::new();
    for a in applied {
        out.push_str(&a.line);
        out.push('\n');
    }
    write_stdout(&mut std::io::stdout().lock(), &out)
}

/// One object a server-side apply wrote.
pub(crate) struct Applied {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// `mcpserver NS/NAME created|configured|unchanged`.
    pub line: String,
}

/// Validates every manifest (all of kind `only`, when given) and, when all are valid, server-
/// side applies them in order. Nothing is applied when one is invalid.
pub(crate) async fn apply_manifests(
    cluster: &Cluster,
    manifests: Vec<Manifest>,
    only: Option<Kind>,
    force_conflicts: bool,
) -> Result<Vec<Applied>> {
    let mut problems = Vec::new();
    for m in &manifests {
        let found = kind_of(m);
        if only.is_some_and(|k| k != found) {
            problems.push(format!(
                "{} {}: is a {}; apply it with `{}`",
                m.kind(),
                m.name(),
                found.name(),
                found.command()
            ));
        }
        for e in m.validate() {
            problems.push(format!("{} {}: {e}", m.kind(), m.name()));
        }
    }
    if manifests.is_empty() {
        let what = only.map_or("MCPServer, MCPAccessGrant or MCPAgentSession", Kind::name);
        return Err(CliError::hint(
            format!("no {what} manifests found"),
            "pass files or directories holding YAML manifests",
        ));
    }
    if !problems.is_empty() {
        return Err(CliError::Invalid(format!(
            "nothing was applied; fix these first:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    let mut pp = PatchParams::apply(FIELD_MANAGER);
    if force_conflicts {
        pp = pp.force();
    }
    let mut applied = Vec::new();
    for m in manifests {
        let kind = kind_of(&m);
        let (namespace, name) = (m.namespace().unwrap_or_default(), m.name());
        let line = match m {
            Manifest::Server(o) => apply_one(cluster, &pp, o.as_ref()).await?,
            Manifest::Grant(o) => apply_one(cluster, &pp, &o).await?,
            Manifest::Session(o) => apply_one(cluster, &pp, &o).await?,
        };
        applied.push(Applied {
            kind,
            namespace,
            name,
            line,
        });
    }
    Ok(applied)
}

fn kind_of(m: &Manifest) -> Kind {
    match m {
        Manifest::Server(_) => Kind::Server,
        Manifest::Grant(_) => Kind::Grant,
        Manifest::Session(_) => Kind::Session,
    }
}

async fn apply_one<K>(cluster: &Cluster, pp: &PatchParams, obj: &K) -> Result<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let what = format!("{} {ns}/{name}", K::kind(&()));
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &ns);
    let before = match api.get_opt(&name).await {
        Ok(b) => b,
        Err(e) => return Err(cluster.explain_404(e, &what).await),
    };
    // Status is the operator's; never send it.
    let mut body = serde_json::to_value(obj).map_err(|e| CliError::Invalid(e.to_string()))?;
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    let after = match api.patch(&name, pp, &Patch::Apply(&body)).await {
        Ok(a) => a,
        Err(e) => return Err(cluster.explain_404(e, &what).await),
    };
    let verb = match before {
        None => "created",
        Some(b) if b.meta().generation != after.meta().generation => "configured",
        Some(_) => "unchanged",
    };
    Ok(format!(
        "{} {ns}/{name} {verb}",
        K::kind(&()).to_lowercase()
    ))
}

// --- list / get -----------------------------------------------------------------------------

fn age(created: Option<&Time>) -> String {
    created.map_or_else(|| "-".into(), |t| age_since(t.0))
}

/// How long ago `t` was, the way kubectl shows ages: 45s, 12m, 5h, 3d.
pub(crate) fn age_since(t: Timestamp) -> String {
    let secs = Timestamp::now().duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub(crate) fn phase_of<T: Serialize>(phase: Option<T>) -> String {
    phase
        .and_then(|p| serde_json::to_value(p).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn subject(s: &mcp_runtime_api::SubjectSpec) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("human", &s.human_id),
        ("agent", &s.agent_id),
        ("team", &s.team_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(",")
}

pub(crate) fn server_ref(own: &str, r: &mcp_runtime_api::ServerReference) -> String {
    let ns = r.namespace_or(own);
    if ns == own {
        r.name.clone()
    } else {
        format!("{ns}/{}", r.name)
    }
}

/// One table row per object, by kind.
trait Row:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    const HEADER: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

impl Row for MCPServer {
    const HEADER: &'static [&'static str] = &["NAME", "PHASE", "GATEWAY", "ROUTE", "POLICY", "AGE"];
    fn row(&self) -> Vec<String> {
        let st = self.status.as_ref();
        vec![
            self.name_any(),
            phase_of(st.and_then(|s| s.phase)),
            if self.spec.gateway_enabled() {
                "on"
            } else {
                "off"
            }
            .into(),
            self.route_path(),
            st.and_then(|s| s.policy_revision.as_deref())
                .map(|r| r.trim_start_matches("sha256:").chars().take(12).collect())
                .unwrap_or_else(|| "-".into()),
            age(self.meta().creation_timestamp.as_ref()),
        ]
    }
}

impl Row for MCPAccessGrant {
    const HEADER: &'static [&'static str] = &[
        "NAME", "SERVER", "SUBJECT", "TRUST", "DISABLED", "PHASE", "AGE",
    ];
    fn row(&self) -> Vec<String> {
        let own = self.namespace().unwrap_or_default();
        vec![
            self.name_any(),
            server_ref(&own, &self.spec.server_ref),
            subject(&self.spec.subject),
            self.spec.max_trust.to_string(),
            self.spec.disabled.to_string(),
            phase_of(self.status.as_ref().and_then(|s| s.phase)),
            age(self.meta().creation_timestamp.as_ref()),
        ]
    }
}

impl Row for MCPAgentSession {
    const HEADER: &'static [&'static str] = &[
        "NAME", "SERVER", "SUBJECT", "TRUST", "REVOKED", "EXPIRES", "PHASE", "AGE",
    ];
    fn row(&self) -> Vec<String> {
        let own = self.namespace().unwrap_or_default();
        vec![
            self.name_any(),
            server_ref(&own, &self.spec.server_ref),
            subject(&self.spec.subject),
            self.spec.consented_trust.to_string(),
            self.spec.revoked.to_string(),
            self.spec
                .expires_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| "never".into()),
            phase_of(self.status.as_ref().and_then(|s| s.phase)),
            age(self.meta().creation_timestamp.as_ref()),
        ]
    }
}

/// `server list`, `access grant list`, `access session list`.
pub fn list(kind: Kind, args: ListArgs) -> Result<()> {
    runtime()?.block_on(async move {
        match kind {
            Kind::Server => list_async::<MCPServer>(args).await,
            Kind::Grant => list_async::<MCPAccessGrant>(args).await,
            Kind::Session => list_async::<MCPAgentSession>(args).await,
        }
    })
}

async fn list_async<K: Row>(args: ListArgs) -> Result<()> {
    let cluster = connect().await?;
    let ns = (!args.all_namespaces).then(|| cluster.namespace(&args.namespace));
    let api: Api<K> = api(&cluster.client, ns.as_deref());
    let what = format!("listing {}s", K::kind(&()));
    let mut items = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => return Err(cluster.explain_404(e, &what).await),
    };
    items.sort_by_key(|o| (o.namespace(), o.name_any()));
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Table => {
            if items.is_empty() {
                let place = ns
                    .map(|n| format!("namespace {n}"))
                    .unwrap_or_else(|| "any namespace".into());
                eprintln!("no {}s in {place}", K::kind(&()));
                return Ok(());
            }
            let mut header = K::HEADER.to_vec();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|o| {
                    let mut row = o.row();
                    if args.all_namespaces {
                        row.insert(0, o.namespace().unwrap_or_default());
                    }
                    row
                })
                .collect();
            if args.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            write_stdout(&mut out, &table(&header, &rows))
        }
        format => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            write_data(&mut out, format, &list)
        }
    }
}

async fn get_object<K: Row>(cluster: &Cluster, ns: &str, name: &str) -> Result<K> {
    let api: Api<K> = Api::namespaced(cluster.client.clone(), ns);
    let what = format!("{} {ns}/{name}", K::kind(&()));
    match api.get_opt(name).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(CliError::hint(
            format!("{what} does not exist"),
            format!(
                "list what is there with `mcp-runtime {} list -n {ns}`",
                match K::kind(&()).as_ref() {
                    "MCPServer" => "server",
                    "MCPAccessGrant" => "access grant",
                    _ => "access session",
                }
            ),
        )),
        Err(e) => Err(cluster.explain_404(e, &what).await),
    }
}

/// `server get NAME`.
pub fn server_get(args: GetArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let cluster = connect().await?;
        let ns = cluster.namespace(&args.namespace);
        let server: MCPServer = get_object(&cluster, &ns, &args.name).await?;
        let mut out = std::io::stdout().lock();
        match args.output {
            Format::Table => write_stdout(&mut out, &table(MCPServer::HEADER, &[server.row()])),
            format => write_data(&mut out, format, &server),
        }
    })
}

/// `server status NAME`: phase, message and conditions, and whether they are current.
pub fn server_status(args: GetArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let cluster = connect().await?;
        let ns = cluster.namespace(&args.namespace);
        let server: MCPServer = get_object(&cluster, &ns, &args.name).await?;
        let mut out = std::io::stdout().lock();
        if args.output != Format::Table {
            let status = serde_json::json!({
                "name": server.name_any(),
                "namespace": ns,
                "generation": server.meta().generation,
                "status": server.status,
            });
            return write_data(&mut out, args.output, &status);
        }
        let Some(st) = server.status.as_ref() else {
            return write_stdout(
                &mut out,
                &format!(
                    "MCPServer {ns}/{}: no status yet\n  hint: is the mcp-runtime operator running? (kubectl -n mcp-runtime get deploy mcp-runtime-operator)\n",
                    args.name
                ),
            );
        };
        let mut text = format!(
            "MCPServer {ns}/{}\nPhase:    {}\nMessage:  {}\nRoute:    {}\nPolicy:   {}\n",
            args.name,
            phase_of(st.phase),
            st.message.as_deref().unwrap_or("-"),
            server.route_path(),
            st.policy_revision.as_deref().unwrap_or("-"),
        );
        if st.observed_generation != server.meta().generation {
            text.push_str(&format!(
                "Note:     the operator has not yet observed generation {} (status is for {})\n",
                server.meta().generation.unwrap_or(0),
                st.observed_generation.map_or("none".into(), |g| g.to_string())
            ));
        }
        text.push('\n');
        let rows: Vec<Vec<String>> = st
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    age(Some(&c.last_transition_time)),
                    c.message.clone(),
                ]
            })
            .collect();
        text.push_str(&table(&["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows));
        write_stdout(&mut out, &text)
    })
}

// --- delete / revoke ------------------------------------------------------------------------

/// `server delete`, `access grant delete`, `access session delete`.
pub fn delete(kind: Kind, args: NameArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let cluster = connect().await?;
        let ns = cluster.namespace(&args.namespace);
        match kind {
            Kind::Server => delete_async::<MCPServer>(&cluster, &ns, &args.name).await,
            Kind::Grant => delete_async::<MCPAccessGrant>(&cluster, &ns, &args.name).await,
            Kind::Session => delete_async::<MCPAgentSession>(&cluster, &ns, &args.name).await,
        }?;
        write_stdout(
            &mut std::io::stdout().lock(),
            &format!("{} {ns}/{} deleted\n", kind.noun(), args.name),
        )
    })
}

async fn delete_async<K: Row>(cluster: &Cluster, ns: &str, name: &str) -> Result<()> {
    get_object::<K>(cluster, ns, name).await?;
    let api: Api<K> = Api::namespaced(cluster.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) => Err(cluster.explain(e, Some(&format!("deleting {} {ns}/{name}", K::kind(&()))))),
    }
}

/// A boolean of the spec that `access` switches: `spec.revoked` of a session, `spec.disabled`
/// of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    Revoke,
    Unrevoke,
    Disable,
    Enable,
}

impl Switch {
    fn kind(self) -> Kind {
        match self {
            Switch::Revoke | Switch::Unrevoke => Kind::Session,
            Switch::Disable | Switch::Enable => Kind::Grant,
        }
    }

    /// The spec field and the value it gets.
    fn field(self) -> (&'static str, bool) {
        match self {
            Switch::Revoke => ("revoked", true),
            Switch::Unrevoke => ("revoked", false),
            Switch::Disable => ("disabled", true),
            Switch::Enable => ("disabled", false),
        }
    }

    /// What the object is afterwards: `revoked`, `unrevoked`, `disabled`, `enabled`.
    pub fn done(self) -> &'static str {
        match self {
            Switch::Revoke => "revoked",
            Switch::Unrevoke => "unrevoked",
            Switch::Disable => "disabled",
            Switch::Enable => "enabled",
        }
    }

    /// `revoked` / `disabled` as the object says it now.
    fn was(self, spec: &serde_json::Value) -> bool {
        spec[self.field().0].as_bool().unwrap_or(false)
    }
}

/// `access session revoke|unrevoke NAME`, `access grant disable|enable NAME`: a merge patch of
/// one field of the spec, as `kubectl patch --type merge` sends it; the gateway sees the change
/// as soon as the operator has re-rendered the policy.
pub fn switch(switch: Switch, args: NameArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let cluster = connect().await?;
        let ns = cluster.namespace(&args.namespace);
        let spec = match switch.kind() {
            Kind::Session => {
                let s: MCPAgentSession = get_object(&cluster, &ns, &args.name).await?;
                serde_json::to_value(&s.spec)
            }
            _ => {
                let g: MCPAccessGrant = get_object(&cluster, &ns, &args.name).await?;
                serde_json::to_value(&g.spec)
            }
        }
        .map_err(|e| CliError::Invalid(e.to_string()))?;
        let (field, value) = switch.field();
        let noun = switch.kind().noun();
        let mut out = std::io::stdout().lock();
        if switch.was(&spec) == value {
            return write_stdout(
                &mut out,
                &format!("{noun} {ns}/{} was already {}\n", args.name, switch.done()),
            );
        }
        let what = format!("{} {ns}/{}", switch.kind().name(), args.name);
        let patch = serde_json::json!({ "spec": { field: value } });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let done = match switch.kind() {
            Kind::Session => Api::<MCPAgentSession>::namespaced(cluster.client.clone(), &ns)
                .patch(&args.name, &pp, &Patch::Merge(&patch))
                .await
                .map(drop),
            _ => Api::<MCPAccessGrant>::namespaced(cluster.client.clone(), &ns)
                .patch(&args.name, &pp, &Patch::Merge(&patch))
                .await
                .map(drop),
        };
        done.map_err(|e| cluster.explain(e, Some(&what)))?;
        write_stdout(
            &mut out,
            &format!("{noun} {ns}/{} {}\n", args.name, switch.done()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let t = table(
            &["NAME", "PHASE"],
            &[
                vec!["a".into(), "Ready".into()],
                vec!["long-name".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME        PHASE\na           Ready\nlong-name   -\n");
    }

    #[test]
    fn server_refs_show_foreign_namespaces_only() {
        let r = mcp_runtime_api::ServerReference {
            name: "s".into(),
            namespace: Some("other".into()),
        };
        assert_eq!(server_ref("mine", &r), "other/s");
        assert_eq!(server_ref("other", &r), "s");
    }
}
