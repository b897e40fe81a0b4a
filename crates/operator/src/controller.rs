//! Wires the three controllers to shared watch streams.
//!
//! - MCPServers are watched once; the stream fills the server cache, tells the grant and session
//!   controllers when a server appears, disappears or switches its gateway (via the indexes), and
//!   drives the server controller (generation changes only: status writes do not loop).
//! - Grants and sessions are watched once each; the streams fill their caches and indexes, make
//!   the server controller re-render every server whose policy a change touches (old and new
//!   target; across namespaces), and drive their own status controllers.
//! - Owned Deployments, Services, Ingresses, ConfigMaps, ServiceAccounts, Roles,
//!   RoleBindings and NetworkPolicies (label
//!   `app.kubernetes.io/managed-by=mcp-runtime`) are cached and trigger their server, so drift
//!   and deletions are repaired and readiness is observed without polling, and a reconcile
//!   writes only what changed (see `children`).

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use mcp_runtime_api::{MANAGER, MCPAccessGrant, MCPAgentSession, MCPServer};

use crate::access;
use crate::children::{Applied, Children};
use crate::config::Config;
use crate::context::{Context, Synced};
use crate::index::{ServerPresence, TargetIndex};
use crate::metrics::Metrics;
use crate::resources::{MANAGED_BY_LABEL, canary_name, policy_config_map_name, policy_reader_name};
use crate::server;

/// Runs the controllers until the future is dropped (leadership lost, shutdown).
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    let concurrency = config.concurrency;
    let wc = watcher::Config::default().any_semantic();

    let (server_store, server_writer) = reflector::store::<MCPServer>();
    let (grant_store, grant_writer) = reflector::store::<MCPAccessGrant>();
    let (session_store, session_writer) = reflector::store::<MCPAgentSession>();
    let grant_index = Arc::new(TargetIndex::<MCPAccessGrant>::default());
    let session_index = Arc::new(TargetIndex::<MCPAgentSession>::default());
    let presence = Arc::new(ServerPresence::default());
    let synced = Arc::new(Synced::new());
    let applied = Arc::new(Applied::default());
    let (server_tx, server_rx) = mpsc::unbounded::<ObjectRef<MCPServer>>();
    let (grant_tx, grant_rx) = mpsc::unbounded::<ObjectRef<MCPAccessGrant>>();
    let (session_tx, session_rx) = mpsc::unbounded::<ObjectRef<MCPAgentSession>>();

    let server_events = {
        let (gi, si, synced) = (grant_index.clone(), session_index.clone(), synced.clone());
        let applied = applied.clone();
        watcher(Api::<MCPServer>::all(client.clone()), wc.clone())
            .default_backoff()
            .modify(strip)
            .reflect(server_writer)
            .inspect_ok(move |event| {
                match event {
                    watcher::Event::InitDone => synced.mark(Synced::SERVERS),
                    watcher::Event::Delete(s) => {
                        let name = s.name_any();
                        applied.forget(
                            &s.namespace().unwrap_or_default(),
                            &[
                                name.clone(),
                                canary_name(&name),
                                policy_config_map_name(&name),
                                policy_reader_name(&name),
                            ],
                        );
                    }
                    _ => {}
                }
                for key in presence.apply(event) {
                    for g in gi.objects_for(&key) {
                        let _ = grant_tx.unbounded_send(g);
                    }
                    for s in si.objects_for(&key) {
                        let _ = session_tx.unbounded_send(s);
                    }
                }
            })
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default())
    };
    let grant_events = {
        let (gi, tx, synced) = (grant_index.clone(), server_tx.clone(), synced.clone());
        watcher(Api::<MCPAccessGrant>::all(client.clone()), wc.clone())
            .default_backoff()
            .modify(strip)
            .reflect(grant_writer)
            .inspect_ok(move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    synced.mark(Synced::GRANTS);
                }
                for key in gi.apply(event) {
                    let _ = tx.unbounded_send(key);
                }
            })
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default())
    };
    let session_events = {
        let (si, tx, synced) = (session_index.clone(), server_tx, synced.clone());
        watcher(Api::<MCPAgentSession>::all(client.clone()), wc.clone())
            .default_backoff()
            .modify(strip)
            .reflect(session_writer)
            .inspect_ok(move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    synced.mark(Synced::SESSIONS);
                }
                for key in si.apply(event) {
                    let _ = tx.unbounded_send(key);
                }
            })
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default())
    };

    // Owned objects: cached (the server controller reads them instead of GETting) and
    // triggering their server, deletions included.
    let owned = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let (services, service_writer) = reflector::store::<Service>();
    let (ingresses, ingress_writer) = reflector::store::<Ingress>();
    let (config_maps, config_map_writer) = reflector::store::<ConfigMap>();
    let (service_accounts, service_account_writer) = reflector::store::<ServiceAccount>();
    let (roles, role_writer) = reflector::store::<Role>();
    let (role_bindings, role_binding_writer) = reflector::store::<RoleBinding>();
    let (network_policies, network_policy_writer) = reflector::store::<NetworkPolicy>();
    let children = Children {
        deployments,
        services,
        ingresses,
        config_maps,
        service_accounts,
        roles,
        role_bindings,
        network_policies,
    };
    fn owned_stream<K>(
        client: &Client,
        config: &watcher::Config,
        writer: reflector::store::Writer<K>,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        watcher(Api::<K>::all(client.clone()), config.clone())
            .default_backoff()
            .modify(strip)
            .reflect(writer)
            .touched_objects()
    }

    let ctx = Arc::new(Context::new(
        client.clone(),
        children,
        applied.clone(),
        config,
        server_store.clone(),
        grant_store.clone(),
        session_store.clone(),
        grant_index,
        session_index,
        metrics.clone(),
        synced.clone(),
    ));

    let cc = controller::Config::default().concurrency(concurrency);
    let servers = Controller::for_stream(server_events, server_store.clone())
        .owns_stream(owned_stream(&client, &owned, deployment_writer))
        .owns_stream(owned_stream(&client, &owned, service_writer))
        .owns_stream(owned_stream(&client, &owned, ingress_writer))
        .owns_stream(owned_stream(&client, &owned, config_map_writer))
        .owns_stream(owned_stream(&client, &owned, service_account_writer))
        .owns_stream(owned_stream(&client, &owned, role_writer))
        .owns_stream(owned_stream(&client, &owned, role_binding_writer))
        .owns_stream(owned_stream(&client, &owned, network_policy_writer))
        .reconcile_on(server_rx)
        .with_config(cc.clone())
        .run(server::reconcile, server::error_policy, ctx.clone())
        .for_each(|r| async move { log_result("MCPServer", r.map(|(o, _)| o.to_string())) });
    let grants = Controller::for_stream(grant_events, grant_store.clone())
        .reconcile_on(grant_rx)
        .with_config(cc.clone())
        .run(
            access::reconcile::<MCPAccessGrant>,
            access::error_policy::<MCPAccessGrant>,
            ctx.clone(),
        )
        .for_each(|r| async move { log_result("MCPAccessGrant", r.map(|(o, _)| o.to_string())) });
    let sessions = Controller::for_stream(session_events, session_store.clone())
        .reconcile_on(session_rx)
        .with_config(cc)
        .run(
            access::reconcile::<MCPAgentSession>,
            access::error_policy::<MCPAgentSession>,
            ctx.clone(),
        )
        .for_each(|r| async move { log_result("MCPAgentSession", r.map(|(o, _)| o.to_string())) });
    // Not Store::wait_until_ready: the controllers' appliers wait on those (see Synced).
    let report_sync = async {
        while !synced.wait(Synced::ALL).await {}
        metrics.set_synced();
        tracing::info!(
            servers = server_store.len(),
            grants = grant_store.len(),
            sessions = session_store.len(),
            "caches synced"
        );
    };
    futures::join!(servers, grants, sessions, report_sync);
}

/// Drops what no reconcile reads before it is cached: managedFields are often the largest part
/// of an object, and the last-applied annotation of client-side apply duplicates the object.
fn strip<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn log_result<E: std::error::Error>(
    kind: &str,
    r: Result<String, controller::Error<E, watcher::Error>>,
) {
    match r {
        Ok(obj) => tracing::debug!(kind, object = %obj, "reconciled"),
        // Logged with the object and the retry delay by the error policies.
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(controller::Error::QueueError(e)) => {
            tracing::warn!(kind, error = %e, "watch failed; retrying with backoff")
        }
        Err(e) => tracing::debug!(kind, error = %e, "controller event"),
    }
}
