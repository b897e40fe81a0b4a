//! `mcp-runtime registry provision`: the in-cluster registry of crates/deploy
//! (`deploy/registry/`) server-side applied through the kubeconfig, then a wait until it is
//! available.

use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Service, Toleration};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use mcp_runtime_deploy::registry::{self, Objects, Options};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::commands::cluster::{self, Cluster, FIELD_MANAGER};
use crate::commands::pipeline::{NOT_READY, parse_duration};
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Print the manifests instead of applying them (no cluster needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Output: with --dry-run the manifests (yaml, json); otherwise the summary (table, json,
    /// yaml). Default: yaml with --dry-run, table otherwise.
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<Format>,
    /// Size of the registry's PersistentVolumeClaim.
    #[arg(long, default_value = "10Gi", value_name = "SIZE")]
    pub storage: String,
    /// StorageClass of the claim; default: the cluster's default class.
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// The Service's NodePort: kubelets pull images as localhost:PORT/NAME:TAG.
    #[arg(long, default_value_t = registry::DEFAULT_NODE_PORT, value_name = "PORT",
          value_parser = clap::value_parser!(i32).range(30000..=32767))]
    pub node_port: i32,
    /// Tolerations of the registry's pod, as JSON (e.g. for tainted nodes):
    /// '[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]'.
    #[arg(long, value_name = "JSON")]
    pub pod_tolerations: Option<String>,
    /// Node selector of the registry's pod, as a JSON object of labels: '{"pool":"infra"}'.
    #[arg(long, value_name = "JSON")]
    pub pod_node_selector: Option<String>,
    /// Take over fields another manager owns (server-side apply conflicts).
    #[arg(long)]
    pub force_conflicts: bool,
    /// How long to wait for the registry to be available: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Apply, but do not wait for the registry.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Serialize)]
struct Provisioned {
    namespace: &'static str,
    /// The address inside the cluster.
    service: String,
    /// What kubelets pull through: image references start with this.
    node_address: String,
    available: bool,
}

fn options(args: &ProvisionArgs) -> Result<Options> {
    let mut options = Options {
        storage: args.storage.clone(),
        storage_class: args.storage_class.clone(),
        node_port: args.node_port,
        ..Options::default()
    };
    if let Some(json) = &args.pod_tolerations {
        options.tolerations = serde_json::from_str::<Vec<Toleration>>(json).map_err(|e| {
            CliError::hint(
                format!("--pod-tolerations: {e}"),
                r#"give a JSON list, e.g. '[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]'"#,
            )
        })?;
    }
    if let Some(json) = &args.pod_node_selector {
        options.node_selector = serde_json::from_str(json).map_err(|e| {
            CliError::hint(
                format!("--pod-node-selector: {e}"),
                r#"give a JSON object of labels, e.g. '{"pool":"infra"}'"#,
            )
        })?;
    }
    Ok(options)
}

pub fn provision(args: ProvisionArgs) -> Result<u8> {
    let objects = registry::objects(&options(&args)?);
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        return match args.output.unwrap_or(Format::Yaml) {
            Format::Json => {
                let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
                    objects.namespace, objects.claim, objects.deployment, objects.service,
                ]});
                write_data(&mut out, Format::Json, &list).map(|()| 0)
            }
            Format::Yaml => write_stdout(&mut out, &objects.to_yaml()).map(|()| 0),
            Format::Table => Err(CliError::Usage {
                message: "--dry-run prints manifests: -o yaml or -o json".into(),
                hint: "leave out -o (yaml) or pass -o json".into(),
            }),
        };
    }
    cluster::runtime()?.block_on(provision_async(args, objects))
}

async fn apply<K>(cluster: &Cluster, pp: &PatchParams, api: Api<K>, obj: &K) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let what = format!(
        "{} {}{}",
        K::kind(&()).to_lowercase(),
        obj.namespace().map(|n| format!("{n}/")).unwrap_or_default(),
        obj.name_any()
    );
    api.patch(&obj.name_any(), pp, &Patch::Apply(obj))
        .await
        .map_err(|e| cluster.explain(e, Some(&what)))?;
    eprintln!("{what} applied");
    Ok(())
}

async fn provision_async(args: ProvisionArgs, objects: Objects) -> Result<u8> {
    let cluster = cluster::connect().await?;
    let mut pp = PatchParams::apply(FIELD_MANAGER);
    if args.force_conflicts {
        pp = pp.force();
    }
    let ns = registry::NAMESPACE;
    let client = cluster.client.clone();
    apply(
        &cluster,
        &pp,
        Api::<Namespace>::all(client.clone()),
        &objects.namespace,
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    apply(&cluster, &pp, claims.clone(), &objects.claim).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    apply(&cluster, &pp, deployments.clone(), &objects.deployment).await?;
    apply(
        &cluster,
        &pp,
        Api::<Service>::namespaced(client, ns),
        &objects.service,
    )
    .await?;

    let mut summary = Provisioned {
        namespace: ns,
        service: format!("{}.{ns}.svc:{}", registry::NAME, registry::PORT),
        node_address: format!("localhost:{}", args.node_port),
        available: false,
    };
    if !args.no_wait {
        summary.available = wait_available(&cluster, &deployments, &claims, args.timeout).await?;
    }
    let mut out = std::io::stdout().lock();
    match args.output.unwrap_or(Format::Table) {
        Format::Table => write_stdout(
            &mut out,
            &format!(
                "registry {} in namespace {ns}\n  in the cluster: {}\n  kubelets pull: {}/NAME:TAG\n  push from here: kubectl -n {ns} port-forward svc/{} 5000:{}, then\n                  mcp-runtime registry push --registry localhost:5000 --insecure --image NAME:TAG\n",
                if args.no_wait {
                    "applied"
                } else if summary.available {
                    "available"
                } else {
                    "NOT available"
                },
                summary.service,
                summary.node_address,
                registry::NAME,
                registry::PORT,
            ),
        )?,
        format => write_data(&mut out, format, &summary)?,
    }
    Ok(if args.no_wait || summary.available {
        0
    } else {
        NOT_READY
    })
}

/// Polls the Deployment until one replica of its current generation is available, printing
/// each change of state (and an unbound claim, the usual reason it never is).
async fn wait_available(
    cluster: &Cluster,
    deployments: &Api<Deployment>,
    claims: &Api<PersistentVolumeClaim>,
    timeout: Duration,
) -> Result<bool> {
    eprintln!(
        "waiting up to {}s for the registry to be available",
        timeout.as_secs()
    );
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let d = deployments
            .get(registry::NAME)
            .await
            .map_err(|e| cluster.explain(e, Some("deployment registry/registry")))?;
        let status = d.status.clone().unwrap_or_default();
        let current = status.observed_generation >= d.metadata.generation;
        let available = status.available_replicas.unwrap_or(0);
        if current && available >= 1 && status.updated_replicas.unwrap_or(0) >= 1 {
            eprintln!("  deployment registry/registry: available");
            return Ok(true);
        }
        let claim = claims
            .get(registry::DATA_CLAIM)
            .await
            .map_err(|e| cluster.explain(e, Some("claim registry/registry-data")))?;
        let claim_phase = claim
            .status
            .and_then(|s| s.phase)
            .unwrap_or_else(|| "Pending".into());
        let now = format!(
            "  deployment registry/registry: {available}/1 available; claim {}: {claim_phase}",
            registry::DATA_CLAIM
        );
        if now != last {
            eprintln!("{now}");
            last = now;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "error: the registry is not available after {}s",
                timeout.as_secs()
            );
            let hint = if claim_phase != "Bound" {
                "the claim registry-data is not bound: does the cluster have a default StorageClass? (pass --storage-class NAME)"
            } else {
                "see `kubectl -n registry describe pod -l app.kubernetes.io/name=registry` (image pull, scheduling)"
            };
            eprintln!("  hint: {hint}");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
