//! Reconciles an MCPServer: renders its policy from the grants and sessions that target it,
//! server-side applies the objects it owns, deletes the ones it no longer needs, and reports
//! what it observed in its status (and in Events when something goes wrong or changes).

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mcp_runtime_api::render::{RenderError, RenderOptions, render_policy};
use mcp_runtime_api::{
    API_VERSION, MCPAccessGrant, MCPAgentSession, MCPServer, MCPServerStatus, ServerPhase, validate,
};

use crate::children::ChildError;
use crate::config::IngressReadiness;
use crate::context::{CACHE_SYNC_TIMEOUT, Context, FIELD_MANAGER, Synced};
use crate::resources::{self, canary_name, policy_config_map_name, policy_reader_name};
use crate::status::{self, Check, Readiness};

pub const CONTROLLER: &str = "mcpserver";

/// Why a reconciliation failed. Every message names the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("writing the status of MCPServer {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the {0} cache did not finish its first list within {CACHE_SYNC_TIMEOUT:?}")]
    CacheNotReady(&'static str),
}

impl Error {
    /// CamelCase reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Child(ChildError::Api { .. }) => "ApplyFailed",
            Error::Child(ChildError::NotOwned { .. }) => "NameConflict",
            Error::Status { .. } => "StatusWriteFailed",
            Error::CacheNotReady(_) => "CacheNotReady",
        }
    }
}

/// Entry point for the controller: reconcile, measure, reset or count failures.
pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&server, &ctx).await;
    let label = match &result {
        Ok(_) => {
            ctx.reset_backoff(server.as_ref());
            "ok"
        }
        Err(e) => e.reason(),
    };
    ctx.metrics.observe(CONTROLLER, label, started.elapsed());
    result
}

/// On failure: the status and an Event already say why; retry with exponential backoff.
pub fn error_policy(server: Arc<MCPServer>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(server.as_ref());
    tracing::warn!(
        server = %format!("{}/{}", server.namespace().unwrap_or_default(), server.name_any()),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

async fn reconcile_inner(server: &MCPServer, ctx: &Context) -> Result<Action, Error> {
    if server.meta().deletion_timestamp.is_some() {
        // Owned objects go with it (owner references; no finalizer needed).
        return Ok(Action::await_change());
    }
    let name = server.name_any();
    let namespace = server.namespace().unwrap_or_default();
    let generation = server.meta().generation;

    // Invalid specs are reported and not retried: only an edit can fix them. What runs keeps
    // running as last applied.
    let mut problems: Vec<String> = validate::server(&server.spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    problems.extend(
        resources::check(server, &ctx.config)
            .iter()
            .map(ToString::to_string),
    );
    if !problems.is_empty() {
        let message = format!("invalid spec: {}", problems.join("; "));
        fail(server, ctx, "InvalidSpec", &message).await?;
        return Ok(Action::await_change());
    }

    match apply_all(server, ctx, &name, &namespace).await {
        Ok(readiness) => {
            let previous = server.status.as_ref();
            let status = status::server_ready(previous, generation, &readiness, now());
            let became_ready = status.phase == Some(ServerPhase::Ready)
                && previous.and_then(|p| p.phase) != Some(ServerPhase::Ready);
            write_status(server, ctx, &status).await?;
            if became_ready {
                ctx.event(
                    server,
                    EventType::Normal,
                    "Ready",
                    "Reconcile",
                    format!("{namespace}/{name} is ready at {}", server.route_path()),
                )
                .await;
            }
            Ok(Action::requeue(ctx.config.resync))
        }
        Err(e) => {
            let message = e.to_string();
            fail(server, ctx, e.reason(), &message).await?;
            Err(e)
        }
    }
}

/// Records a failure in the status (phase Error) and as a Warning Event.
async fn fail(
    server: &MCPServer,
    ctx: &Context,
    reason: &'static str,
    message: &str,
) -> Result<(), Error> {
    let status = status::server_error(
        server.status.as_ref(),
        server.meta().generation,
        reason,
        message,
        now(),
    );
    let changed = server.status.as_ref() != Some(&status);
    write_status(server, ctx, &status).await?;
    if changed {
        ctx.event(
            server,
            EventType::Warning,
            reason,
            "Reconcile",
            message.to_owned(),
        )
        .await;
    }
    Ok(())
}

async fn write_status(
    server: &MCPServer,
    ctx: &Context,
    status: &MCPServerStatus,
) -> Result<(), Error> {
    if server.status.as_ref() == Some(status) {
        return Ok(());
    }
    let name = server.name_any();
    let namespace = server.namespace().unwrap_or_default();
    let api: Api<MCPServer> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "MCPServer",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    })?;
    ctx.metrics
        .status_writes
        .get_or_create(&crate::metrics::ControllerLabels {
            controller: CONTROLLER,
        })
        .inc();
    Ok(())
}

/// The grants and sessions targeting `server`, from the caches via the index.
fn targeting(server: &MCPServer, ctx: &Context) -> (Vec<MCPAccessGrant>, Vec<MCPAgentSession>) {
    let key = ObjectRef::from_obj(server);
    let grants = ctx
        .grant_index
        .objects_for(&key)
        .iter()
        .filter_map(|r| ctx.grants.get(r))
        .map(|g| (*g).clone())
        .collect();
    let sessions = ctx
        .session_index
        .objects_for(&key)
        .iter()
        .filter_map(|r| ctx.sessions.get(r))
        .map(|s| (*s).clone())
        .collect();
    (grants, sessions)
}

/// Renders, applies and deletes; returns what was observed.
async fn apply_all(
    server: &MCPServer,
    ctx: &Context,
    name: &str,
    namespace: &str,
) -> Result<Readiness, Error> {
    let client = &ctx.client;
    let gateway_on = server.spec.gateway_enabled();

    // 1. The policy, first: pods must find their ConfigMap.
    let mut policy_check = None;
    let mut revision = None;
    let rendered = if gateway_on {
        if !ctx.synced.wait(Synced::GRANTS | Synced::SESSIONS).await {
            return Err(Error::CacheNotReady("MCPAccessGrant and MCPAgentSession"));
        }
        let (grants, sessions) = targeting(server, ctx);
        let options = RenderOptions {
            cluster: ctx.config.cluster_name.clone(),
        };
        match render_policy(server, &grants, &sessions, &options) {
            Ok(r) => Some((r, grants.len(), sessions.len())),
            Err(RenderError::InvalidServer { errors, .. }) => {
                // validate::server passed above, so this cannot happen; report it all the same.
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                policy_check = Some(Check::not("RenderFailed", list.join("; ")));
                None
            }
            Err(e) => {
                policy_check = Some(Check::not("RenderFailed", e.to_string()));
                None
            }
        }
    } else {
        None
    };
    let desired = resources::desired(
        server,
        &ctx.config,
        rendered.as_ref().map(|(r, _, _)| &r.document),
    );

    let (applied, children) = (&ctx.applied, &ctx.children);
    if let (Some(cm), Some((r, grants, sessions))) = (&desired.policy, &rendered) {
        // Rewritten only when the document changes (its revision) or someone edited it.
        let changed = applied.apply(client, children, server, cm).await?.changed;
        if changed {
            ctx.metrics.policy_writes.inc();
            ctx.event(
                server,
                EventType::Normal,
                "PolicyUpdated",
                "RenderPolicy",
                format!(
                    "policy revision {} written to ConfigMap {}",
                    r.document.revision,
                    policy_config_map_name(name)
                ),
            )
            .await;
        }
        let mut message = format!(
            "revision {} ({} grant(s), {} session(s) name this server)",
            r.document.revision, grants, sessions
        );
        if !r.skipped.is_empty() {
            let skipped: Vec<String> = r
                .skipped
                .iter()
                .map(|s| format!("{} {}/{}", s.kind, s.namespace, s.name))
                .collect();
            message.push_str(&format!("; left out as invalid: {}", skipped.join(", ")));
        }
        if !r.refused.is_empty() {
            let refused: Vec<String> = r
                .refused
                .iter()
                .map(|s| format!("{} {}/{}", s.kind, s.namespace, s.name))
                .collect();
            message.push_str(&format!(
                "; left out, from namespaces not in spec.access.allowedNamespaces: {}",
                refused.join(", ")
            ));
        }
        policy_check = Some(Check::ok("PolicyRendered", message));
        revision = Some(r.document.revision.clone());
    } else if !gateway_on {
        let cm = policy_config_map_name(name);
        applied
            .delete::<ConfigMap>(client, children, server, namespace, &cm)
            .await?;
    }
    // The gateway reads that ConfigMap through the API as the server's ServiceAccount: its
    // permission goes before the pods that need it, and goes away with the gateway.
    match &desired.policy_reader {
        Some((role, binding)) => {
            applied.apply(client, children, server, role).await?;
            applied.apply(client, children, server, binding).await?;
        }
        None => {
            let reader = policy_reader_name(name);
            applied
                .delete::<RoleBinding>(client, children, server, namespace, &reader)
                .await?;
            applied
                .delete::<Role>(client, children, server, namespace, &reader)
                .await?;
        }
    }

    // 2. The workload and its route, behind its NetworkPolicy (applied first, so no pod runs
    // unprotected; deleted with the gateway).
    match &desired.network_policy {
        Some(np) => {
            applied.apply(client, children, server, np).await?;
        }
        None => {
            applied
                .delete::<NetworkPolicy>(client, children, server, namespace, name)
                .await?;
        }
    }
    applied
        .apply(client, children, server, &desired.service_account)
        .await?;
    let deployment = applied
        .apply(client, children, server, &desired.deployment)
        .await?
        .object;
    let canary = match &desired.canary {
        Some(c) => Some(applied.apply(client, children, server, c).await?.object),
        None => {
            let canary = canary_name(name);
            applied
                .delete::<Deployment>(client, children, server, namespace, &canary)
                .await?;
            None
        }
    };
    let service = applied
        .apply(client, children, server, &desired.service)
        .await?
        .object;
    let ingress = applied
        .apply(client, children, server, &desired.ingress)
        .await?
        .object;

    // 3. What we see.
    let deployment_check = deployment_readiness(&deployment);
    let gateway = if gateway_on {
        let policy = policy_check
            .unwrap_or_else(|| Check::not("RenderFailed", "the policy could not be rendered"));
        let gw = if !policy.ok {
            Check::not(
                "PolicyUnavailable",
                "the gateway has no valid policy to enforce",
            )
        } else if deployment_check.ok {
            Check::ok(
                "GatewayAvailable",
                "every pod's gateway sidecar passed its readiness probe",
            )
        } else {
            Check::not(
                "GatewayUnavailable",
                "waiting for pods with a ready gateway sidecar",
            )
        };
        Some((policy, gw))
    } else {
        None
    };
    Ok(Readiness {
        deployment: deployment_check,
        service: service_readiness(&service),
        ingress: ingress_readiness(&ingress, ctx.config.ingress_readiness),
        gateway,
        canary: canary.as_ref().map(deployment_readiness),
        policy_revision: revision,
        notices: resources::notices(server, &ctx.config),
    })
}

/// Ready when the Deployment controller has seen the current spec and every desired replica is
/// updated and available.
pub fn deployment_readiness(d: &Deployment) -> Check {
    let name = d.name_any();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Check::not(
            "RolloutPending",
            format!("Deployment {name} has no status yet"),
        );
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Check::not(
            "RolloutPending",
            format!("Deployment {name}: the rollout of generation {generation} has not started"),
        );
    }
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let failure = status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            (c.type_ == "ReplicaFailure" && c.status == "True")
                || (c.type_ == "Progressing" && c.status == "False")
        })
        .map(|c| {
            format!(
                " ({}: {})",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    if desired == 0 {
        Check::ok(
            "ScaledToZero",
            format!("Deployment {name} is scaled to zero"),
        )
    } else if available >= desired && updated >= desired {
        Check::ok(
            "MinimumReplicasAvailable",
            format!("Deployment {name}: {available}/{desired} replicas available"),
        )
    } else {
        Check::not(
            "ReplicasUnavailable",
            format!(
                "Deployment {name}: {available}/{desired} replicas available, {updated}/{desired} updated{failure}"
            ),
        )
    }
}

fn service_readiness(s: &Service) -> Check {
    match s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() => Check::ok(
            "ClusterIPAssigned",
            format!("Service {} has cluster IP {ip}", s.name_any()),
        ),
        _ => Check::not(
            "ClusterIPPending",
            format!("Service {} has no cluster IP yet", s.name_any()),
        ),
    }
}

fn ingress_readiness(i: &Ingress, mode: IngressReadiness) -> Check {
    let spec = i.spec.as_ref();
    let class = spec
        .and_then(|s| s.ingress_class_name.clone())
        .unwrap_or_default();
    let route = spec
        .and_then(|s| s.rules.as_ref())
        .and_then(|r| r.first())
        .map(|r| {
            let path = r
                .http
                .as_ref()
                .and_then(|h| h.paths.first())
                .and_then(|p| p.path.clone())
                .unwrap_or_default();
            format!("{}{path}", r.host.clone().unwrap_or_default())
        })
        .unwrap_or_default();
    let addresses: Vec<String> = i
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|a| a.hostname.clone().or_else(|| a.ip.clone()))
                .collect()
        })
        .unwrap_or_default();
    match (mode, addresses.is_empty()) {
        (_, false) => Check::ok(
            "AddressAssigned",
            format!(
                "Ingress {} routes {route} (class {class}) at {}",
                i.name_any(),
                addresses.join(", ")
            ),
        ),
        (IngressReadiness::Exists, true) => Check::ok(
            "RouteConfigured",
            format!("Ingress {} routes {route} (class {class})", i.name_any()),
        ),
        (IngressReadiness::Address, true) => Check::not(
            "AwaitingAddress",
            format!(
                "Ingress {} (class {class}) has no address yet: is an ingress controller for class {class} running?",
                i.name_any()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(
        replicas: i32,
        generation: i64,
        observed: i64,
        available: i32,
        updated: i32,
    ) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta {
                name: Some("hello".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                available_replicas: Some(available),
                updated_replicas: Some(updated),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deployments_are_ready_only_with_every_replica_available_and_updated() {
        assert!(deployment_readiness(&deployment(2, 3, 3, 2, 2)).ok);
        let c = deployment_readiness(&deployment(2, 3, 3, 1, 2));
        assert_eq!((c.ok, c.reason), (false, "ReplicasUnavailable"));
        assert!(
            c.message.contains("1/2 replicas available"),
            "{}",
            c.message
        );
        let c = deployment_readiness(&deployment(2, 4, 3, 2, 2));
        assert_eq!((c.ok, c.reason), (false, "RolloutPending"));
        assert_eq!(
            deployment_readiness(&deployment(0, 1, 1, 0, 0)).reason,
            "ScaledToZero"
        );
    }

    #[test]
    fn ingress_readiness_follows_the_configured_mode() {
        let mut i = Ingress::default();
        i.metadata.name = Some("hello".into());
        assert!(ingress_readiness(&i, IngressReadiness::Exists).ok);
        let c = ingress_readiness(&i, IngressReadiness::Address);
        assert_eq!((c.ok, c.reason), (false, "AwaitingAddress"));
    }
}
