//! The generated files on a real kube-apiserver (scripts/testenv): every document is applied
//! server-side with strict field validation, exactly as written in `deploy/sentinel/` (both
//! modes at once: their names do not collide), read back unchanged, applied again without
//! effect, and the Deployments' pods are admitted by the namespace's `restricted` Pod Security
//! enforcement.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use mcp_runtime_deploy::sentinel;
use mcp_runtime_kube_testenv::{TestEnv, eventually};
use serde_json::Value;

/// The API of a document's kind, in its namespace when the kind is namespaced.
async fn api_for(client: &Client, object: &DynamicObject) -> Api<DynamicObject> {
    let types = object.types.as_ref().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("a valid apiVersion");
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovering {gvk:?}: {e}"));
    match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object
                .namespace()
                .as_deref()
                .expect("namespaced objects name their namespace"),
            &resource,
        ),
    }
}

fn describe(object: &DynamicObject) -> String {
    format!(
        "{} {}",
        object.types.as_ref().map_or("?", |t| t.kind.as_str()),
        object.name_any()
    )
}

/// Applies every document in file order (the namespace first), returning what the server
/// answered. Strict validation: a field the apiserver does not know is an error, not a silently
/// dropped field.
async fn apply_all(client: &Client, objects: &[DynamicObject]) -> Vec<DynamicObject> {
    let params = PatchParams::apply("mcp-runtime-deploy-tests").validation_strict();
    let mut applied = Vec::new();
    for object in objects {
        let api = api_for(client, object).await;
        let answer = api
            .patch(&object.name_any(), &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("applying {}: {e}", describe(object)));
        applied.push(answer);
    }
    applied
}

/// Whether everything `want` sets is in `got` with the same value (the server adds defaults
/// and status, so `got` may hold more). Returns the path of the first difference.
fn contained(want: &Value, got: &Value, path: &str) -> Result<(), String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().try_for_each(|(k, v)| {
            let path = format!("{path}.{k}");
            match g.get(k) {
                Some(gv) => contained(v, gv, &path),
                None => Err(format!("{path}: missing on the server")),
            }
        }),
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                return Err(format!(
                    "{path}: {} items sent, {} stored",
                    w.len(),
                    g.len()
                ));
            }
            w.iter()
                .zip(g)
                .enumerate()
                .try_for_each(|(i, (w, g))| contained(w, g, &format!("{path}[{i}]")))
        }
        (w, g) if w == g => Ok(()),
        (w, g) => Err(format!("{path}: sent {w}, stored {g}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apiserver_accepts_every_object_stores_it_as_written_and_admits_the_pods() {
    let env = TestEnv::shared();
    let client = env.client().await;
    let documents = common::documents();
    let objects: Vec<DynamicObject> = documents
        .iter()
        .map(|(file, doc)| {
            serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: not a Kubernetes object: {e}"))
        })
        .collect();
    assert_eq!(
        objects[0].types.as_ref().unwrap().kind,
        "Namespace",
        "the namespace is applied first"
    );

    let first = apply_all(&client, &objects).await;

    // Read back: the server holds every field as written (nothing dropped, renamed or
    // normalised away), and the Deployments run the roles they were given.
    for ((file, doc), object) in documents.iter().zip(&objects) {
        let stored = api_for(&client, object)
            .await
            .get(&object.name_any())
            .await
            .unwrap_or_else(|e| panic!("reading back {}: {e}", describe(object)));
        let stored = serde_json::to_value(&stored).unwrap();
        for part in ["metadata", "spec", "data", "automountServiceAccountToken"] {
            if let Some(want) = doc.get(part) {
                let want = match part {
                    // The server adds its own metadata (uid, resourceVersion, managedFields).
                    "metadata" => serde_json::json!({
                        "name": want["name"], "namespace": want.get("namespace"),
                        "labels": want["labels"],
                    }),
                    _ => want.clone(),
                };
                let want = strip_nulls(want);
                contained(&want, &stored[part], part)
                    .unwrap_or_else(|e| panic!("{file}: {}: {e}", describe(object)));
            }
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), sentinel::NAMESPACE);
    for (name, role) in [
        ("mcp-sentinel", "all"),
        ("mcp-sentinel-ingest", "ingest"),
        ("mcp-sentinel-processor", "processor"),
        ("mcp-sentinel-api", "api"),
    ] {
        let d = deployments.get(name).await.expect("the Deployment exists");
        let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(
            c.args.clone().unwrap(),
            ["--role", role],
            "Deployment {name}"
        );
    }

    // A second apply of the same files changes nothing: no immutable field (selectors, the
    // claim's spec) conflicts, and no object's spec moves to a new generation.
    let second = apply_all(&client, &objects).await;
    for ((a, b), object) in first.iter().zip(&second).zip(&objects) {
        assert_eq!(
            a.metadata.generation,
            b.metadata.generation,
            "{}: the second apply changed the spec",
            describe(object)
        );
        let kind = object.types.as_ref().unwrap().kind.as_str();
        // Kinds no controller writes to: even their resourceVersion stays (no write at all).
        if ["ConfigMap", "ServiceAccount", "Service", "Namespace"].contains(&kind) {
            assert_eq!(
                a.metadata.resource_version,
                b.metadata.resource_version,
                "{}: the second apply wrote it again",
                describe(object)
            );
        }
    }

    // The ReplicaSets create the pods only if the namespace's enforced `restricted` standard
    // admits them (kwok's node is tainted, so they stay Pending: only admission is tested).
    let pods: Api<Pod> = Api::namespaced(client.clone(), sentinel::NAMESPACE);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), sentinel::NAMESPACE);
    for d in common::of_kind::<Deployment>(None, "Deployment") {
        let name = d.metadata.name.clone().unwrap();
        let want = d.spec.as_ref().unwrap().replicas.unwrap() as usize;
        let selector = d
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .clone()
            .unwrap()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let (pods, replica_sets, selector) = (&pods, &replica_sets, &selector);
        eventually(
            &format!("{want} pods of Deployment {name}"),
            Duration::from_secs(60),
            || async move {
                let lp = ListParams::default().labels(selector);
                let have = pods.list(&lp).await.map_err(|e| e.to_string())?.items.len();
                if have == want {
                    return Ok(());
                }
                // Why not: a refused pod shows as the ReplicaSet's ReplicaFailure condition.
                let failures: Vec<String> = replica_sets
                    .list(&lp)
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .into_iter()
                    .flat_map(|rs| rs.status.and_then(|s| s.conditions).unwrap_or_default())
                    .map(|c| format!("{}: {}", c.type_, c.message.unwrap_or_default()))
                    .collect();
                Err(format!("{have} pods; ReplicaSet conditions: {failures:?}"))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `want` without null fields (the server does not store them).
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
