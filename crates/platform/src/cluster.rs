//! The platform's side of the cluster (with `--kube`): each team's namespace and RoleBindings,
//! and agent session issuance (an `MCPAgentSession` plus the session token the gateway checks).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mcp_runtime_api::access::{
    MCPAccessGrant, MCPAgentSession, MCPAgentSessionSpec, ServerReference, SubjectSpec,
};
use mcp_runtime_policy::Trust;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The field manager of everything the platform applies.
pub const FIELD_MANAGER: &str = "mcp-platform";

/// The label naming the team on its namespace.
pub const TEAM_LABEL: &str = "mcpruntime.org/team";

/// Whether a live session with `left` until its expiry is handed out again for a request of
/// `ttl`: only while at least half of `ttl` remains. An adapter that refreshes ahead of expiry
/// then gets a fresh session (a later expiry) rather than the same one until the last moments.
pub fn reusable(left: SignedDuration, ttl: SignedDuration) -> bool {
    left >= ttl / 2
}

/// The cluster client.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    NoGrant(String),
    #[error("{0}")]
    Revoked(String),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// What `POST /v1/runtime/adapter/sessions` asks for, resolved and checked by the handler.
#[derive(Debug)]
pub struct SessionRequest<'a> {
    pub namespace: &'a str,
    pub server: &'a str,
    pub human: &'a str,
    pub agent: &'a str,
    pub team: &'a str,
    pub requested_trust: Trust,
    pub ttl: SignedDuration,
}

/// An issued (or reused) session.
#[derive(Debug)]
pub struct Issued {
    pub name: String,
    pub consented_trust: Trust,
    pub policy_version: Option<String>,
    pub expires_at: Timestamp,
    pub reused: bool,
    pub grant: String,
}

/// `adapter-` and 16 hex digits of SHA-256 over human, agent, team and server (NUL between):
/// the same four always name the same session.
pub fn session_name(human: &str, agent: &str, team: &str, server: &str) -> String {
    let mut h = Sha256::new();
    for (i, part) in [human, agent, team, server].iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("adapter-{hex}")
}

fn matches(field: &Option<String>, value: &str) -> bool {
    field.as_deref().is_none_or(|f| f.is_empty() || f == value)
}

impl Cluster {
    /// A client from the usual places (`KUBECONFIG`, `~/.kube/config`, or in-cluster).
    pub async fn connect() -> Result<Cluster, kube::Error> {
        Ok(Cluster {
            client: kube::Client::try_default().await?,
        })
    }

    /// Applies the team's namespace `mcp-team-<slug>` and its two RoleBindings: the owners
    /// (Kubernetes users named by their email, as an OIDC login presents them) get the built-in
    /// `admin` ClusterRole there, the members `view`. Re-applied on every membership change, so
    /// the bindings list exactly the current people.
    pub async fn apply_team(
        &self,
        slug: &str,
        owners: &[String],
        members: &[String],
    ) -> Result<(), kube::Error> {
        let namespace = crate::store::team_namespace(slug);
        let labels: BTreeMap<String, String> = [
            (TEAM_LABEL.to_owned(), slug.to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                FIELD_MANAGER.to_owned(),
            ),
        ]
        .into();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .patch(&namespace, &pp, &Patch::Apply(&ns))
            .await?;
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), &namespace);
        for (name, role, people) in [
            ("mcp-team-owners", "admin", owners),
            ("mcp-team-members", "view", members),
        ] {
            let rb = RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "ClusterRole".to_owned(),
                    name: role.to_owned(),
                },
                subjects: Some(
                    people
                        .iter()
                        .map(|email| Subject {
                            api_group: Some("rbac.authorization.k8s.io".to_owned()),
                            kind: "User".to_owned(),
                            name: email.clone(),
                            namespace: None,
                        })
                        .collect(),
                ),
            };
            bindings.patch(name, &pp, &Patch::Apply(&rb)).await?;
        }
        Ok(())
    }

    /// Every object of kind `K` in `namespace`, sorted by name.
    pub async fn list<K>(&self, namespace: &str) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let mut items = Api::<K>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        items.sort_by_key(|o| o.meta().name.clone());
        Ok(items)
    }

    /// The object, or `None` when there is none by that name.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    /// Server-side applies `object` (field manager [`FIELD_MANAGER`], not forced: a field
    /// another manager owns is a conflict, not silently taken over).
    pub async fn apply<K>(&self, namespace: &str, name: &str, object: &K) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(object),
            )
            .await
    }

    /// A JSON merge patch of single fields (what `kubectl patch --type merge` sends). Used for
    /// the switches (`spec.disabled`, `spec.revoked`): an apply would have to restate the whole
    /// spec and take over fields that other managers (kubectl, the CLI) own.
    pub async fn merge_patch<K>(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch(name, &params, &Patch::Merge(patch))
            .await
    }

    /// Deletes the object; `false` when there was none.
    pub async fn delete<K>(&self, namespace: &str, name: &str) -> Result<bool, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        match Api::<K>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates or reuses the MCPAgentSession for (human, agent, team, server): see
    /// docs/platform.md. A revoked session is never revived here (an owner revoked it; deleting
    /// it is the way to allow a new one).
    pub async fn issue_session(
        &self,
        req: &SessionRequest<'_>,
        now: Timestamp,
    ) -> Result<Issued, IssueError> {
        let grants: Api<MCPAccessGrant> = Api::namespaced(self.client.clone(), req.namespace);
        let mut candidates: Vec<MCPAccessGrant> = grants
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|g| {
                let s = &g.spec;
                !s.disabled
                    && s.server_ref.name == req.server
                    && s.server_ref
                        .namespace
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == req.namespace)
                    && matches(&s.subject.human_id, req.human)
                    && matches(&s.subject.agent_id, req.agent)
                    && matches(&s.subject.team_id, req.team)
            })
            .collect();
        // Highest trust first, then the oldest.
        candidates.sort_by(|a, b| {
            b.spec.max_trust.cmp(&a.spec.max_trust).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            })
        });
        let Some(grant) = candidates.into_iter().next() else {
            return Err(IssueError::NoGrant(format!(
                "no enabled MCPAccessGrant in {} matches server={} human={} agent={} team={}",
                req.namespace, req.server, req.human, req.agent, req.team
            )));
        };
        let consented = req.requested_trust.min(grant.spec.max_trust);
        let policy_version = grant.spec.policy_version.clone();
        let name = session_name(req.human, req.agent, req.team, req.server);
        let sessions: Api<MCPAgentSession> = Api::namespaced(self.client.clone(), req.namespace);
        if let Some(existing) = sessions.get_opt(&name).await? {
            if existing.spec.revoked {
                return Err(IssueError::Revoked(format!(
                    "session {}/{name} was revoked; an owner or admin must delete it before a \
                     new one is issued",
                    req.namespace
                )));
            }
            let expires = existing.spec.expires_at.as_ref().map(|t| t.0);
            if existing.spec.consented_trust == consented
                && existing.spec.policy_version == policy_version
                && expires.is_some_and(|e| reusable(e.duration_since(now), req.ttl))
            {
                return Ok(Issued {
                    name,
                    consented_trust: consented,
                    policy_version,
                    expires_at: expires.unwrap_or(now),
                    reused: true,
                    grant: grant.metadata.name.unwrap_or_default(),
                });
            }
        }
        // Whole seconds: what the object stores (RFC 3339 without fractions) and the token's
        // `exp` say the same instant.
        let expires_at = Timestamp::from_second((now + req.ttl).as_second()).unwrap_or(now);
        let session = MCPAgentSession {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(req.namespace.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        FIELD_MANAGER.to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            spec: MCPAgentSessionSpec {
                server_ref: ServerReference {
                    name: req.server.to_owned(),
                    namespace: Some(req.namespace.to_owned()),
                },
                subject: SubjectSpec {
                    human_id: Some(req.human.to_owned()),
                    agent_id: Some(req.agent.to_owned()),
                    team_id: Some(req.team.to_owned()),
                },
                consented_trust: consented,
                expires_at: Some(Time(expires_at)),
                revoked: false,
                upstream_token_secret_ref: None,
                policy_version: policy_version.clone(),
            },
            status: None,
        };
        sessions
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&session),
            )
            .await?;
        Ok(Issued {
            name,
            consented_trust: consented,
            policy_version,
            expires_at,
            reused: false,
            grant: grant.metadata.name.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_reused_while_half_of_the_requested_ttl_remains() {
        let hour = SignedDuration::from_secs(3600);
        assert!(reusable(SignedDuration::from_secs(3600), hour));
        assert!(reusable(SignedDuration::from_secs(1800), hour));
        assert!(!reusable(SignedDuration::from_secs(1799), hour));
        // A refresh five minutes before expiry renews.
        assert!(!reusable(SignedDuration::from_secs(300), hour));
        assert!(!reusable(SignedDuration::from_secs(-1), hour));
        // The shortest TTL (60 s) keeps the old 30 s floor.
        assert!(!reusable(
            SignedDuration::from_secs(29),
            SignedDuration::from_secs(60)
        ));
    }

    #[test]
    fn the_session_name_is_stable_and_separates_its_parts() {
        let a = session_name("ann@x.io", "claude", "red", "hello");
        assert_eq!(a, session_name("ann@x.io", "claude", "red", "hello"));
        assert!(a.starts_with("adapter-") && a.len() == 24, "{a}");
        // The separator keeps "a"+"bc" apart from "ab"+"c".
        assert_ne!(
            session_name("a", "bc", "t", "s"),
            session_name("ab", "c", "t", "s")
        );
    }
}
