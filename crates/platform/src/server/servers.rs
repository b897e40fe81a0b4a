//! `/v1/teams/{slug}/servers[/{name}]` (with `--kube`): the team's MCPServers. Members read
//! them as a user needs them — phase, conditions, the declared tools, the gateway — not their
//! full spec; owners and admins create them (`POST`), replace their spec (`PUT`, server-side
//! apply) and delete them.
//!
//! A server made here stays inside its team: `spec.teamID` is empty or the team's slug, and
//! `spec.access.allowedNamespaces` (which lets grants and sessions of other namespaces count
//! for the server) lists other namespaces only when an admin put them there.

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use mcp_runtime_api::server::{MCPServer, MCPServerSpec};
use mcp_runtime_api::validate;
use serde_json::{Value, json};

use super::envelope::{Answer, ApiError, ok_json};
use super::input::check_name;
use super::scope::{TeamScope, kube_error, object_name};
use super::{Api, Caller, Ctx};
use crate::cluster::FIELD_MANAGER;
use crate::store::{AuditEntry, Outcome};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewServerBody {
    name: String,
    /// Exactly an MCPServer's spec (docs/crds.md): its field names, its defaults; unknown
    /// fields are refused at every level.
    spec: MCPServerSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSpecBody {
    spec: MCPServerSpec,
}

/// The rules the CLI's `server apply` checks (crates/api), as one 400 naming every field.
fn check_server_spec(spec: &MCPServerSpec) -> Result<(), ApiError> {
    let errors = validate::server(spec);
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(ApiError::bad_request(list.join("; ")))
}

/// Why `spec` would reach outside team `scope`, if it would. `admitted` are the
/// allowedNamespaces the server has now (an owner may keep what an admin admitted, and drop
/// it, but not add to it).
fn outside_the_team(
    scope: &TeamScope<'_>,
    caller: &Caller,
    spec: &MCPServerSpec,
    admitted: &[String],
) -> Option<ApiError> {
    let slug = &scope.team.slug;
    if let Some(team_id) = spec.team_id.as_deref()
        && !team_id.is_empty()
        && team_id != slug
    {
        return Some(ApiError::forbidden(format!(
            "spec.teamID: a server of team `{slug}` may only name its own team (leave it out,              or set it to `{slug}`), not `{team_id}`"
        )));
    }
    if caller.is_admin() {
        return None;
    }
    let allowed = spec.access.iter().flat_map(|a| &a.allowed_namespaces);
    for (i, ns) in allowed.enumerate() {
        if ns != scope.namespace() && !admitted.contains(ns) {
            return Some(ApiError::forbidden(format!(
                "spec.access.allowedNamespaces[{i}]: only an admin may let grants and sessions                  of another namespace (`{ns}`) count for a server of team `{slug}`"
            )));
        }
    }
    None
}

/// The audit detail of a created or changed server: what decides where it runs and who may
/// reach it (no env values: they may hold secrets).
fn server_detail(spec: &MCPServerSpec) -> String {
    let allowed: Vec<&str> = spec
        .access
        .iter()
        .flat_map(|a| &a.allowed_namespaces)
        .map(String::as_str)
        .collect();
    format!(
        "image={} gateway={} tools={} allowedNamespaces=[{}]",
        spec.image,
        spec.gateway_enabled(),
        spec.tools.len(),
        allowed.join(",")
    )
}

/// The object the platform applies: the spec as given, labelled as the platform's.
fn server_object(scope: &TeamScope<'_>, name: &str, spec: MCPServerSpec) -> MCPServer {
    MCPServer {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(scope.namespace().to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    FIELD_MANAGER.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// What a team member sees of a server.
fn server_view(s: &MCPServer) -> Value {
    let status = s.status.clone().unwrap_or_default();
    json!({
        "name": s.name_any(),
        "namespace": s.namespace(),
        "created_at": s.metadata.creation_timestamp.as_ref().map(|t| t.0),
        "description": s.spec.description,
        "team_id": s.spec.team_id,
        "phase": status.phase,
        "message": status.message,
        "ready": status.deployment_ready,
        "gateway": {
            "enabled": s.spec.gateway_enabled(),
            "ready": status.gateway_ready,
        },
        "policy_revision": status.policy_revision,
        "conditions": status.conditions.iter().map(|c| json!({
            "type": c.type_,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
        })).collect::<Vec<_>>(),
        "tools": s.spec.tools.iter().map(|t| json!({
            "name": t.name,
            "description": t.description,
            "required_trust": t.required_trust,
            "side_effect": t.side_effect,
            "risk_level": t.risk_level,
        })).collect::<Vec<_>>(),
    })
}

impl Api {
    pub(super) async fn list_servers(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let servers: Vec<MCPServer> = scope
            .cluster
            .list(scope.namespace())
            .await
            .map_err(kube_error)?;
        let views: Vec<Value> = servers.iter().map(server_view).collect();
        ok_json(StatusCode::OK, &json!({ "servers": views }))
    }

    async fn existing_server(
        &self,
        scope: &TeamScope<'_>,
        name: &str,
    ) -> Result<MCPServer, ApiError> {
        scope
            .cluster
            .get(scope.namespace(), name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| no_server(scope, name))
    }

    pub(super) async fn get_server(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let server = self.existing_server(&scope, name).await?;
        ok_json(StatusCode::OK, &json!({ "server": server_view(&server) }))
    }

    pub(super) async fn create_server(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: NewServerBody,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        check_name("name", &body.name)?;
        let target = scope.target("server", &body.name);
        if !scope.manages(caller) {
            let e = scope.owners_only("create servers");
            return Err(self.deny(ctx, caller, "server.create", &target, e).await);
        }
        check_server_spec(&body.spec)?;
        if let Some(e) = outside_the_team(&scope, caller, &body.spec, &[]) {
            return Err(self.deny(ctx, caller, "server.create", &target, e).await);
        }
        let existing: Option<MCPServer> = scope
            .cluster
            .get(scope.namespace(), &body.name)
            .await
            .map_err(kube_error)?;
        if existing.is_some() {
            return Err(ApiError::conflict(format!(
                "name: a server `{}` exists in team `{}` (PUT its spec or DELETE it)",
                body.name, scope.team.slug
            )));
        }
        let detail = server_detail(&body.spec);
        let server = server_object(&scope, &body.name, body.spec);
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: "server.create",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        let created = self
            .audited(entry, async {
                scope
                    .cluster
                    .apply(scope.namespace(), &body.name, &server)
                    .await
                    .map_err(kube_error)
            })
            .await?;
        ok_json(
            StatusCode::CREATED,
            &json!({ "server": server_view(&created) }),
        )
    }

    /// `PUT`: the spec replaced by a server-side apply of the platform (not forced: fields
    /// another manager owns, e.g. through kubectl, are a 409 naming them, not taken over).
    pub(super) async fn replace_server(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: ServerSpecBody,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let target = scope.target("server", name);
        if !scope.manages(caller) {
            let e = scope.owners_only("change servers");
            return Err(self.deny(ctx, caller, "server.update", &target, e).await);
        }
        check_server_spec(&body.spec)?;
        // PUT changes a server; creating one is POST's (and its 409).
        let existing = self.existing_server(&scope, name).await?;
        let admitted: Vec<String> = existing
            .spec
            .access
            .map(|a| a.allowed_namespaces)
            .unwrap_or_default();
        if let Some(e) = outside_the_team(&scope, caller, &body.spec, &admitted) {
            return Err(self.deny(ctx, caller, "server.update", &target, e).await);
        }
        let detail = server_detail(&body.spec);
        let server = server_object(&scope, name, body.spec);
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: "server.update",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        let changed = self
            .audited(entry, async {
                scope
                    .cluster
                    .apply(scope.namespace(), name, &server)
                    .await
                    .map_err(kube_error)
            })
            .await?;
        ok_json(StatusCode::OK, &json!({ "server": server_view(&changed) }))
    }

    pub(super) async fn delete_server(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        self.delete_team_object::<MCPServer>(ctx, caller, "server", "MCPServer")
            .await
    }
}

fn no_server(scope: &TeamScope<'_>, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no MCPServer `{name}` in team `{}`",
        scope.team.slug
    ))
}
