//! The objects servers own, as the operator sees them: caches filled by the owned-object
//! watches, and a record of what it last applied, so a reconcile writes only what changed.
//!
//! A child is re-applied when the desired object differs from the one last applied (by hash), or
//! when someone else changed it since (a Deployment's `generation`, or the `resourceVersion` of
//! the other kinds, differs from what the last apply returned). Otherwise the cached object is
//! used as is: a reconcile triggered by a Deployment's status update costs no request but the
//! status write, if any. Before the first write of a name in this process, an object of that
//! name not in the cache (the caches only hold objects labelled as ours) is looked up, so a
//! foreign object is never adopted.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use mcp_runtime_api::MCPServer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::FIELD_MANAGER;

/// Caches of every kind a server owns (label `app.kubernetes.io/managed-by=mcp-runtime`).
#[derive(Clone)]
pub struct Children {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub ingresses: Store<Ingress>,
    pub config_maps: Store<ConfigMap>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub network_policies: Store<NetworkPolicy>,
}

/// A kind a server owns.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    fn cache(children: &Children) -> &Store<Self>;
    /// What changes when someone edits what the operator applies.
    fn version(&self) -> String {
        self.meta().resource_version.clone().unwrap_or_default()
    }
}

impl Child for Deployment {
    const KIND: &'static str = "Deployment";
    fn cache(children: &Children) -> &Store<Self> {
        &children.deployments
    }
    /// Spec changes bump the generation; the Deployment controller's status updates do not.
    fn version(&self) -> String {
        self.meta().generation.unwrap_or_default().to_string()
    }
}

impl Child for Service {
    const KIND: &'static str = "Service";
    fn cache(children: &Children) -> &Store<Self> {
        &children.services
    }
}

impl Child for Ingress {
    const KIND: &'static str = "Ingress";
    fn cache(children: &Children) -> &Store<Self> {
        &children.ingresses
    }
}

impl Child for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    fn cache(children: &Children) -> &Store<Self> {
        &children.config_maps
    }
}

impl Child for ServiceAccount {
    const KIND: &'static str = "ServiceAccount";
    fn cache(children: &Children) -> &Store<Self> {
        &children.service_accounts
    }
}

impl Child for Role {
    const KIND: &'static str = "Role";
    fn cache(children: &Children) -> &Store<Self> {
        &children.roles
    }
}

impl Child for RoleBinding {
    const KIND: &'static str = "RoleBinding";
    fn cache(children: &Children) -> &Store<Self> {
        &children.role_bindings
    }
}

impl Child for NetworkPolicy {
    const KIND: &'static str = "NetworkPolicy";
    fn cache(children: &Children) -> &Store<Self> {
        &children.network_policies
    }
}

/// Why touching a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {namespace}/{name} already exists and is not controlled by this MCPServer; \
         rename the server or delete that {kind}"
    )]
    NotOwned {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    hash: u64,
    version: String,
    resource_version: String,
}

/// What was last applied, per child.
#[derive(Default)]
pub struct Applied {
    records: Mutex<HashMap<(&'static str, String, String), Record>>,
}

fn hash_of(obj: &impl Serialize) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(obj)
        .expect("objects serialise")
        .hash(&mut h);
    h.finish()
}

fn controlled_by(meta: &kube::api::ObjectMeta, server: &MCPServer) -> bool {
    let uid = server.meta().uid.as_deref();
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The result of [`Applied::apply`].
pub struct Outcome<K> {
    pub object: K,
    /// The apply changed the object (false: skipped, or a no-op write).
    pub changed: bool,
}

impl Applied {
    fn get(&self, key: &(&'static str, String, String)) -> Option<Record> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn set(&self, key: (&'static str, String, String), record: Option<Record>) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        match record {
            Some(r) => records.insert(key, r),
            None => records.remove(&key),
        };
    }

    /// Server-side applies `desired` unless it is already in place (see the module docs).
    pub async fn apply<K: Child>(
        &self,
        client: &Client,
        children: &Children,
        server: &MCPServer,
        desired: &K,
    ) -> Result<Outcome<K>, ChildError> {
        let name = desired.name_any();
        let namespace = desired.namespace().unwrap_or_default();
        let key = (K::KIND, namespace.clone(), name.clone());
        let not_owned = || ChildError::NotOwned {
            kind: K::KIND,
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let hash = hash_of(desired);
        let cached = K::cache(children).get(&ObjectRef::new(&name).within(&namespace));
        let record = self.get(&key);
        if let Some(current) = &cached {
            if !controlled_by(current.meta(), server) {
                return Err(not_owned());
            }
            if let Some(r) = &record
                && r.hash == hash
                && r.version == current.version()
            {
                return Ok(Outcome {
                    object: (**current).clone(),
                    changed: false,
                });
            }
        }
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        let api_err = |action| {
            let (namespace, name) = (namespace.clone(), name.clone());
            move |source| ChildError::Api {
                action,
                kind: K::KIND,
                namespace,
                name,
                source,
            }
        };
        if cached.is_none() && record.is_none() {
            // Not in the cache of our objects, never written by this process: make sure no
            // foreign object of that name is there. Read from the API server's watch cache
            // (resourceVersion=0), not a quorum read from etcd: on a mass rollout these reads
            // were a seventh of all requests, and a foreign object created in the last moment
            // could slip past a quorum read just the same (the check and the apply are two
            // requests either way).
            if let Some(meta) = api
                .get_metadata_opt_with(&name, &GetParams::any())
                .await
                .map_err(api_err("reading"))?
                && !controlled_by(&meta.metadata, server)
            {
                return Err(not_owned());
            }
        }
        let object = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await
            .map_err(api_err("applying"))?;
        let before = cached
            .as_ref()
            .and_then(|c| c.meta().resource_version.clone())
            .or_else(|| record.map(|r| r.resource_version));
        let after = object.meta().resource_version.clone().unwrap_or_default();
        self.set(
            key,
            Some(Record {
                hash,
                version: object.version(),
                resource_version: after.clone(),
            }),
        );
        Ok(Outcome {
            changed: before.as_deref() != Some(after.as_str()),
            object,
        })
    }

    /// Deletes child `name` if the cache holds it as controlled by `server`; true if deleted.
    pub async fn delete<K: Child>(
        &self,
        client: &Client,
        children: &Children,
        server: &MCPServer,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ChildError> {
        let key = (K::KIND, namespace.to_owned(), name.to_owned());
        let cached = K::cache(children).get(&ObjectRef::new(name).within(namespace));
        let ours = cached.is_some_and(|c| controlled_by(c.meta(), server));
        if !ours {
            // Absent (or not ours, or the cache has not seen our create yet: then the record
            // says so and we delete by name).
            if self.get(&key).is_none() {
                return Ok(false);
            }
        }
        self.set(key, None);
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(source) => Err(ChildError::Api {
                action: "deleting",
                kind: K::KIND,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Forgets everything about a server's children (the server is gone).
    pub fn forget(&self, namespace: &str, server_children: &[String]) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.retain(|(_, ns, name), _| !(ns == namespace && server_children.contains(name)));
    }
}
