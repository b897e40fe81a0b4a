//! `GET /v1/teams/{slug}/servers[/{name}]` (with `--kube`): the team's MCPServers, as a user
//! needs them — phase, conditions, the declared tools, the gateway — not their full spec.

use http::StatusCode;
use kube::ResourceExt;
use mcp_runtime_api::server::MCPServer;
use serde_json::{Value, json};

use super::envelope::{Answer, ApiError, ok_json};
use super::scope::{kube_error, object_name};
use super::{Api, Caller, Ctx};

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

    pub(super) async fn get_server(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let server: MCPServer = scope
            .cluster
            .get(scope.namespace(), name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no MCPServer `{name}` in team `{}`",
                    scope.team.slug
                ))
            })?;
        ok_json(StatusCode::OK, &json!({ "server": server_view(&server) }))
    }
}
