//! `mcp-runtime pipeline generate|deploy`: the two steps of a delivery pipeline. `generate`
//! is `server generate` with the images moved to a registry; `deploy` is `server apply` (and
//! `access ... apply`) on a whole directory, then a wait until every MCPServer is Ready.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use mcp_runtime_api::{MCPServer, ServerPhase};

use crate::commands::cluster::{self, Kind, NamespaceArgs};
use crate::commands::server;
use crate::error::{CliError, Result};
use crate::files;
use crate::output::write_stdout;

/// Exit code of `pipeline deploy` when everything was applied but a server did not become
/// Ready in time (or reports an error): distinct from 1, where something was not applied.
pub const NOT_READY: u8 = 5;

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Write the MCPServer manifests of .mcp/servers.yaml, images taken from a registry.
    ///
    /// What `server generate` writes (one `<name>.yaml` per server), with each server's image
    /// moved to --registry when given (`my-server:v1.0.0` or `ghcr.io/acme/my-server:v1.0.0`
    /// becomes `HOST/my-server:v1.0.0` or `HOST/acme/my-server:v1.0.0`); without it, the
    /// images of the metadata as they are.
    ///
    ///   mcp-runtime pipeline generate --dir .mcp --output manifests/ --registry registry.example:5000
    #[command(verbatim_doc_comment)]
    Generate(PipelineGenerateArgs),
    /// Apply every manifest of a directory and wait until each MCPServer is Ready.
    ///
    /// Reads every *.yaml/*.yml under --dir (MCPServers, MCPAccessGrants, MCPAgentSessions),
    /// validates them all (nothing is applied if one is invalid), creates the namespaces they
    /// name that do not exist yet, server-side applies them, then waits until the operator
    /// reports each MCPServer Ready for its current generation. Progress (each server's phase
    /// as it changes) goes to stderr; what was applied and the outcome to stdout.
    ///
    /// Exit codes: 0 applied and every server Ready; 1 nothing or not everything was applied
    /// (invalid manifests, no cluster, CRDs missing, access denied); 5 applied, but a server
    /// reported Error or was not Ready within --timeout.
    #[command(verbatim_doc_comment)]
    Deploy(PipelineDeployArgs),
}

#[derive(Debug, Args)]
pub struct PipelineGenerateArgs {
    /// Directory holding servers.yaml.
    #[arg(long, default_value = ".mcp", value_name = "DIR")]
    pub dir: PathBuf,
    /// Directory the manifests are written to, one `<name>.yaml` per server.
    #[arg(long, default_value = "manifests", value_name = "DIR")]
    pub output: PathBuf,
    /// Registry HOST[:PORT] (and optional path) the images are pulled from, replacing the one
    /// each image names.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct PipelineDeployArgs {
    /// Directory of manifests (as `pipeline generate` writes them); subdirectories included.
    #[arg(long, default_value = "manifests", value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// Take over fields another manager owns (server-side apply conflicts).
    #[arg(long)]
    pub force_conflicts: bool,
    /// How long to wait for the servers to be Ready: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Apply, but do not wait for the servers.
    #[arg(long)]
    pub no_wait: bool,
}

pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{text}`: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

pub fn generate(args: PipelineGenerateArgs) -> Result<u8> {
    let written = server::write_manifests(&args.dir, &args.output, args.registry.as_deref())?;
    eprintln!(
        "{} manifest(s) in {}; deploy them with `mcp-runtime pipeline deploy --dir {}`",
        written.len(),
        args.output.display(),
        args.output.display()
    );
    Ok(0)
}

/// Creates `name` when it does not exist: the manifests of `pipeline generate` name their
/// namespace (default mcp-servers), which a fresh cluster does not have.
async fn ensure_namespace(cluster: &cluster::Cluster, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let what = format!("namespace {name}");
    if api
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, Some(&what)))?
        .is_some()
    {
        return Ok(());
    }
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {
            eprintln!("namespace {name} created");
            Ok(())
        }
        // Created meanwhile by someone else: what was wanted.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(cluster.explain(e, Some(&what))),
    }
}

/// What the wait concluded about one server.
fn verdict(server: &MCPServer) -> (Option<ServerPhase>, String, bool) {
    let status = server.status.as_ref();
    let current = status.and_then(|s| s.observed_generation) == server.meta().generation;
    let phase = status.and_then(|s| s.phase);
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    (phase, message, current)
}

fn phase_name(phase: Option<ServerPhase>) -> String {
    phase.map_or_else(|| "-".to_owned(), |p| format!("{p:?}"))
}

pub fn deploy(args: PipelineDeployArgs) -> Result<u8> {
    cluster::runtime()?.block_on(deploy_async(args))
}

async fn deploy_async(args: PipelineDeployArgs) -> Result<u8> {
    if !args.dir.is_dir() {
        return Err(CliError::hint(
            format!("{} is not a directory", args.dir.display()),
            "write the manifests with `mcp-runtime pipeline generate --output DIR` first",
        ));
    }
    let cluster = cluster::connect().await?;
    let namespace = cluster.namespace(&args.namespace);
    let manifests = files::load_manifests(std::slice::from_ref(&args.dir), &namespace)?;
    let namespaces: BTreeSet<String> = manifests.iter().filter_map(|m| m.namespace()).collect();
    for ns in &namespaces {
        ensure_namespace(&cluster, ns).await?;
    }
    let applied = cluster::apply_manifests(&cluster, manifests, None, args.force_conflicts).await?;
    let mut out = String::new();
    for a in &applied {
        out.push_str(&a.line);
        out.push('\n');
    }
    write_stdout(&mut std::io::stdout().lock(), &out)?;
    let servers: Vec<(String, String)> = applied
        .iter()
        .filter(|a| a.kind == Kind::Server)
        .map(|a| (a.namespace.clone(), a.name.clone()))
        .collect();
    if args.no_wait || servers.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "waiting up to {}s for {} MCPServer(s) to be Ready",
        args.timeout.as_secs(),
        servers.len()
    );
    let deadline = Instant::now() + args.timeout;
    // Last phase reported per server, to print changes only.
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut pending = servers.clone();
    let mut failed: Vec<String> = Vec::new();
    loop {
        let mut still = Vec::new();
        for (ns, name) in pending {
            let api: Api<MCPServer> = Api::namespaced(cluster.client.clone(), &ns);
            let server = api
                .get(&name)
                .await
                .map_err(|e| cluster.explain(e, Some(&format!("MCPServer {ns}/{name}"))))?;
            let (phase, message, current) = verdict(&server);
            let shown = format!(
                "{}{}",
                phase_name(phase),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            );
            let key = (ns.clone(), name.clone());
            if current && seen.get(&key) != Some(&shown) {
                eprintln!("  mcpserver {ns}/{} {shown}", server.name_any());
                seen.insert(key, shown.clone());
            }
            match phase {
                Some(ServerPhase::Ready) if current => {}
                Some(ServerPhase::Error) if current => {
                    failed.push(format!("mcpserver {ns}/{name}: {shown}"));
                }
                _ => still.push((ns, name)),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (ns, name) in &pending {
        let last = seen
            .get(&(ns.clone(), name.clone()))
            .cloned()
            .unwrap_or_else(|| "no status from the operator yet".to_owned());
        failed.push(format!(
            "mcpserver {ns}/{name}: not Ready after {}s ({last})",
            args.timeout.as_secs()
        ));
    }
    if failed.is_empty() {
        write_stdout(
            &mut std::io::stdout().lock(),
            &format!("{} MCPServer(s) Ready\n", servers.len()),
        )?;
        return Ok(0);
    }
    eprintln!("error: applied, but not every MCPServer is Ready:");
    for f in &failed {
        eprintln!("  - {f}");
    }
    eprintln!(
        "  hint: `mcp-runtime server status NAME -n NAMESPACE` shows the conditions; is the \
         operator running? (kubectl -n mcp-runtime get deploy mcp-runtime-operator)"
    );
    Ok(NOT_READY)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
