//! What the team-scoped cluster routes (`/v1/teams/{slug}/servers|grants|sessions`) share:
//! the cluster, the team the caller may see, the caller's standing in it, audited changes,
//! and how apiserver errors are answered.

use std::future::Future;

use http::StatusCode;

use super::envelope::ApiError;
use super::input::check_name;
use super::{Api, Caller, Ctx};
use crate::cluster::Cluster;
use crate::store::{self, AuditEntry, StoreError, TeamRole};

/// A team the caller may see, with the cluster its objects live in.
pub(super) struct TeamScope<'a> {
    pub cluster: &'a Cluster,
    pub team: store::Team,
}

impl TeamScope<'_> {
    /// Team owners and admins manage the team's servers, grants and sessions; members read.
    pub fn manages(&self, caller: &Caller) -> bool {
        caller.is_admin() || self.team.role == Some(TeamRole::Owner)
    }

    pub fn namespace(&self) -> &str {
        &self.team.namespace
    }

    /// The audit target of one of the team's objects: `team/<slug>/<kind>/<name>`.
    pub fn target(&self, kind: &str, name: &str) -> String {
        format!("team/{}/{kind}/{name}", self.team.slug)
    }

    /// The 403 for a change only owners and admins may make.
    pub fn owners_only(&self, what: &str) -> ApiError {
        ApiError::forbidden(format!(
            "only an owner of team `{}` or an admin may {what}",
            self.team.slug
        ))
    }
}

impl Api {
    /// The cluster, or 503 when this platform runs without `--kube`.
    pub(super) fn require_cluster(&self, what: &str) -> Result<&Cluster, ApiError> {
        self.cluster.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kubernetes_unavailable",
                format!(
                    "this mcp-platform runs without a cluster (start it with --kube to {what})"
                ),
            )
        })
    }

    /// The team named by the path (`ctx.params[0]`) if the caller may see it (404 otherwise,
    /// so other teams do not leak), after checking that a cluster is there (503).
    pub(super) async fn team_scope(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<TeamScope<'_>, ApiError> {
        let cluster = self.require_cluster("work with a team's servers, grants and sessions")?;
        let conn = self.pool.get().await?;
        let team = self.visible_team(&*conn, ctx, caller).await?;
        Ok(TeamScope { cluster, team })
    }

    /// Makes a cluster change together with its audit entry: the entry is written in a
    /// transaction that commits only once the change succeeded, so the log holds no change that
    /// did not happen, and a change whose entry cannot be written is answered as an error.
    /// `DELETE /v1/teams/{slug}/{kind}s/{name}` for an object without audit detail: owners and
    /// admins only (a member's 403 is audited `denied`), the deletion audited as `action`, 404
    /// (`kind` named) when there is none.
    pub(super) async fn delete_team_object<K>(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        noun: &str,
        kind: &str,
    ) -> Result<super::envelope::Answer, ApiError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let target = scope.target(noun, name);
        let action = format!("{noun}.delete");
        if !scope.manages(caller) {
            let e = scope.owners_only(&format!("delete {noun}s"));
            return Err(self.deny(ctx, caller, &action, &target, e).await);
        }
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: &action,
            target: &target,
            outcome: store::Outcome::Ok,
            detail: None,
            client_ip: &ctx.ip,
        };
        self.audited(entry, async {
            let deleted = scope
                .cluster
                .delete::<K>(scope.namespace(), name)
                .await
                .map_err(kube_error)?;
            deleted.then_some(()).ok_or_else(|| {
                ApiError::not_found(format!("no {kind} `{name}` in team `{}`", scope.team.slug))
            })
        })
        .await?;
        super::envelope::no_content()
    }

    pub(super) async fn audited<T>(
        &self,
        entry: AuditEntry<'_>,
        change: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        store::audit(&tx, &entry).await?;
        // On an error the transaction is dropped, which rolls the entry back.
        let out = change.await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }
}

/// The `{name}` path parameter (`ctx.params[1]`), checked to be a Kubernetes name.
pub(super) fn object_name(ctx: &Ctx) -> Result<&str, ApiError> {
    let name = ctx.params.get(1).map(String::as_str).unwrap_or_default();
    check_name("name", name)?;
    Ok(name)
}

/// An apiserver error as an answer: a missing object is 404, its refusals of the object (409,
/// 422) are the caller's to fix; anything else means the cluster is not usable right now (503).
pub(super) fn kube_error(e: kube::Error) -> ApiError {
    match &e {
        // Gone between this request's read and its change.
        kube::Error::Api(s) if s.code == 404 => {
            ApiError::not_found(format!("the object is not there (any more): {}", s.message))
        }
        kube::Error::Api(s) if s.code == 409 => {
            ApiError::conflict(format!("the apiserver refused it: {}", s.message))
        }
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => {
            ApiError::bad_request(format!("the apiserver refused it: {}", s.message))
        }
        _ => {
            tracing::warn!(error = %e, "kubernetes request failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kubernetes_unavailable",
                format!("the cluster did not answer: {e}"),
            )
        }
    }
}
