//! Indexes fed by the watch streams, so that no reconciliation lists anything:
//!
//! - [`TargetIndex`]: which grants (or sessions) target which server, in any namespace. Each
//!   watch event yields the servers whose policy must be re-rendered: the old and the new
//!   target when `serverRef` moves, the target when the spec (generation) changes or the object
//!   is deleted; status-only updates yield nothing.
//! - [`ServerPresence`]: which servers exist, whether their gateway is on and which other
//!   namespaces they admit. An event yields the server when that changes, so the grants and
//!   sessions naming it get a truthful status (`ServerNotFound` <-> `Active` <-> `Refused`).
//!
//! Both follow the watcher's relist protocol (`Init`, `InitApply`..., `InitDone`): after a
//! watch restart (e.g. the apiserver came back) the difference between the old and the new
//! list is reported, so deletions missed while disconnected still trigger.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer, ServerReference};

pub type ServerKey = ObjectRef<MCPServer>;

/// A kind that names the server it applies to.
pub trait Targeting:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn server_ref(&self) -> &ServerReference;
}

impl Targeting for MCPAccessGrant {
    fn server_ref(&self) -> &ServerReference {
        &self.spec.server_ref
    }
}

impl Targeting for MCPAgentSession {
    fn server_ref(&self) -> &ServerReference {
        &self.spec.server_ref
    }
}

/// The server `obj` targets (its own namespace unless `serverRef.namespace` says otherwise).
pub fn target_of<K: Targeting>(obj: &K) -> ServerKey {
    let own = obj.namespace().unwrap_or_default();
    let r = obj.server_ref();
    ObjectRef::new(&r.name).within(r.namespace_or(&own))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    target: ServerKey,
    generation: Option<i64>,
    uid: Option<String>,
}

impl Entry {
    fn of<K: Targeting>(obj: &K) -> Self {
        Self {
            target: target_of(obj),
            generation: obj.meta().generation,
            uid: obj.meta().uid.clone(),
        }
    }
}

struct Inner<K: Targeting> {
    by_object: HashMap<ObjectRef<K>, Entry>,
    by_server: HashMap<ServerKey, HashSet<ObjectRef<K>>>,
    relist: Option<HashMap<ObjectRef<K>, Entry>>,
}

/// Objects of kind `K` by the server they target.
pub struct TargetIndex<K: Targeting> {
    inner: Mutex<Inner<K>>,
}

impl<K: Targeting> Default for TargetIndex<K> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_object: HashMap::new(),
                by_server: HashMap::new(),
                relist: None,
            }),
        }
    }
}

impl<K: Targeting> Inner<K> {
    fn insert(&mut self, key: ObjectRef<K>, entry: Entry) -> Option<Entry> {
        let old = self.by_object.insert(key.clone(), entry.clone());
        if let Some(old) = &old
            && old.target != entry.target
            && let Some(set) = self.by_server.get_mut(&old.target)
        {
            set.remove(&key);
            if set.is_empty() {
                self.by_server.remove(&old.target);
            }
        }
        self.by_server.entry(entry.target).or_default().insert(key);
        old
    }

    fn remove(&mut self, key: &ObjectRef<K>) -> Option<Entry> {
        let old = self.by_object.remove(key)?;
        if let Some(set) = self.by_server.get_mut(&old.target) {
            set.remove(key);
            if set.is_empty() {
                self.by_server.remove(&old.target);
            }
        }
        Some(old)
    }
}

/// The servers affected by `old` becoming `new`.
fn affected(old: Option<&Entry>, new: Option<&Entry>, out: &mut Vec<ServerKey>) {
    match (old, new) {
        (Some(o), Some(n)) if o == n => {}
        (Some(o), Some(n)) => {
            out.push(n.target.clone());
            if o.target != n.target {
                out.push(o.target.clone());
            }
        }
        (Some(o), None) => out.push(o.target.clone()),
        (None, Some(n)) => out.push(n.target.clone()),
        (None, None) => {}
    }
}

impl<K: Targeting> TargetIndex<K> {
    /// Applies a watch event; returns the servers whose policy this changes.
    pub fn apply(&self, event: &watcher::Event<K>) -> Vec<ServerKey> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        match event {
            watcher::Event::Apply(obj) => {
                let entry = Entry::of(obj);
                let old = inner.insert(ObjectRef::from_obj(obj), entry.clone());
                affected(old.as_ref(), Some(&entry), &mut out);
            }
            watcher::Event::Delete(obj) => {
                let key = ObjectRef::from_obj(obj);
                match inner.remove(&key) {
                    Some(old) => out.push(old.target),
                    None => out.push(target_of(obj)),
                }
            }
            watcher::Event::Init => inner.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                let entry = Entry::of(obj);
                inner
                    .relist
                    .get_or_insert_with(HashMap::new)
                    .insert(ObjectRef::from_obj(obj), entry);
            }
            watcher::Event::InitDone => {
                let listed = inner.relist.take().unwrap_or_default();
                let gone: Vec<ObjectRef<K>> = inner
                    .by_object
                    .keys()
                    .filter(|k| !listed.contains_key(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    if let Some(old) = inner.remove(&key) {
                        out.push(old.target);
                    }
                }
                for (key, entry) in listed {
                    let old = inner.insert(key, entry.clone());
                    affected(old.as_ref(), Some(&entry), &mut out);
                }
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.dedup();
        out
    }

    /// The objects that target `server`.
    pub fn objects_for(&self, server: &ServerKey) -> Vec<ObjectRef<K>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .by_server
            .get(server)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_object
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the statuses of grants and sessions depend on: the gateway is on, and the other
/// namespaces the server admits.
type Fact = (bool, Vec<String>);

/// Server -> its fact.
type Facts = HashMap<ServerKey, Fact>;

/// Which servers exist, whether their gateway is on, which namespaces they admit.
#[derive(Default)]
pub struct ServerPresence {
    /// What is known, and the list being rebuilt during a relist.
    inner: Mutex<(Facts, Option<Facts>)>,
}

impl ServerPresence {
    /// Applies a watch event; returns the servers that appeared, disappeared, switched their
    /// gateway or changed the namespaces they admit.
    pub fn apply(&self, event: &watcher::Event<MCPServer>) -> Vec<ServerKey> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (known, relist) = &mut *guard;
        let mut out = Vec::new();
        let fact = |s: &MCPServer| -> (ServerKey, Fact) {
            let admitted = s
                .spec
                .access
                .as_ref()
                .map(|a| a.allowed_namespaces.clone())
                .unwrap_or_default();
            (ObjectRef::from_obj(s), (s.spec.gateway_enabled(), admitted))
        };
        match event {
            watcher::Event::Apply(s) => {
                let (key, f) = fact(s);
                if known.get(&key) != Some(&f) {
                    known.insert(key.clone(), f);
                    out.push(key);
                }
            }
            watcher::Event::Delete(s) => {
                let key = ObjectRef::from_obj(s);
                if known.remove(&key).is_some() {
                    out.push(key);
                }
            }
            watcher::Event::Init => *relist = Some(HashMap::new()),
            watcher::Event::InitApply(s) => {
                let (key, f) = fact(s);
                relist.get_or_insert_with(HashMap::new).insert(key, f);
            }
            watcher::Event::InitDone => {
                let listed = relist.take().unwrap_or_default();
                for key in known.keys() {
                    if !listed.contains_key(key) {
                        out.push(key.clone());
                    }
                }
                for (key, f) in &listed {
                    if known.get(key) != Some(f) {
                        out.push(key.clone());
                    }
                }
                *known = listed;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_runtime_api::{MCPAccessGrantSpec, SubjectSpec};

    fn grant(
        ns: &str,
        name: &str,
        server: &str,
        server_ns: Option<&str>,
        generation: i64,
    ) -> MCPAccessGrant {
        let mut g = MCPAccessGrant::new(
            name,
            MCPAccessGrantSpec {
                server_ref: ServerReference {
                    name: server.into(),
                    namespace: server_ns.map(Into::into),
                },
                subject: SubjectSpec {
                    human_id: Some("alice".into()),
                    ..Default::default()
                },
                max_trust: Default::default(),
                allowed_side_effects: vec![],
                policy_version: None,
                disabled: false,
                tool_rules: vec![],
            },
        );
        g.metadata.namespace = Some(ns.into());
        g.metadata.generation = Some(generation);
        g.metadata.uid = Some(format!("{ns}-{name}"));
        g
    }

    fn key(ns: &str, name: &str) -> ServerKey {
        ObjectRef::new(name).within(ns)
    }

    #[test]
    fn spec_changes_and_moves_trigger_old_and_new_targets() {
        let idx = TargetIndex::<MCPAccessGrant>::default();
        let g = grant("team-a", "g1", "hello", Some("servers"), 1);
        assert_eq!(
            idx.apply(&watcher::Event::Apply(g.clone())),
            [key("servers", "hello")]
        );
        // A status-only update (same generation) re-renders nothing.
        assert!(idx.apply(&watcher::Event::Apply(g.clone())).is_empty());
        let moved = grant("team-a", "g1", "other", None, 2);
        assert_eq!(
            idx.apply(&watcher::Event::Apply(moved.clone())),
            [key("servers", "hello"), key("team-a", "other")]
        );
        assert!(idx.objects_for(&key("servers", "hello")).is_empty());
        assert_eq!(idx.objects_for(&key("team-a", "other")).len(), 1);
        assert_eq!(
            idx.apply(&watcher::Event::Delete(moved)),
            [key("team-a", "other")]
        );
        assert!(idx.is_empty());
    }

    #[test]
    fn a_relist_reports_what_changed_while_disconnected() {
        let idx = TargetIndex::<MCPAccessGrant>::default();
        idx.apply(&watcher::Event::Apply(grant("a", "keep", "s1", None, 1)));
        idx.apply(&watcher::Event::Apply(grant("a", "gone", "s2", None, 1)));
        idx.apply(&watcher::Event::Init);
        idx.apply(&watcher::Event::InitApply(grant(
            "a", "keep", "s1", None, 1,
        )));
        idx.apply(&watcher::Event::InitApply(grant("a", "new", "s3", None, 1)));
        let changed = idx.apply(&watcher::Event::InitDone);
        assert_eq!(changed, [key("a", "s2"), key("a", "s3")]);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn presence_reports_appearance_gateway_switch_and_disappearance() {
        let p = ServerPresence::default();
        let mut s = MCPServer::new("hello", mcp_runtime_api::MCPServerSpec::with_image("x"));
        s.metadata.namespace = Some("demo".into());
        assert_eq!(p.apply(&watcher::Event::Apply(s.clone())).len(), 1);
        assert!(p.apply(&watcher::Event::Apply(s.clone())).is_empty());
        s.spec.gateway = Some(mcp_runtime_api::server::GatewaySpec::enabled());
        assert_eq!(p.apply(&watcher::Event::Apply(s.clone())).len(), 1);
        s.spec.access = Some(mcp_runtime_api::server::AccessSpec {
            allowed_namespaces: vec!["team-b".into()],
        });
        assert_eq!(p.apply(&watcher::Event::Apply(s.clone())).len(), 1);
        assert!(p.apply(&watcher::Event::Apply(s.clone())).is_empty());
        p.apply(&watcher::Event::Init);
        assert_eq!(p.apply(&watcher::Event::InitDone), [key("demo", "hello")]);
    }
}
