//! `/v1/teams/{slug}/grants[/{name}]` (with `--kube`): the team's MCPAccessGrants. Members
//! read them; owners and admins create, disable/enable (`PATCH {"disabled": bool}`) and
//! delete them. A grant made here may only name a server in the team's own namespace.

use std::collections::BTreeSet;

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use mcp_runtime_api::access::{MCPAccessGrant, MCPAccessGrantSpec};
use serde_json::{Value, json};

use super::envelope::{Answer, ApiError, ok_json};
use super::input::check_name;
use super::scope::{TeamScope, kube_error, object_name};
use super::{Api, Caller, Ctx};
use crate::cluster::FIELD_MANAGER;
use crate::store::{AuditEntry, Outcome};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGrantBody {
    name: String,
    /// Exactly an MCPAccessGrant's spec (docs/crds.md): its field names, its defaults.
    spec: MCPAccessGrantSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantChangeBody {
    disabled: bool,
}

/// A grant as the API shows it: the spec as on the cluster, and the operator's verdict.
fn grant_view(g: &MCPAccessGrant) -> Value {
    let status = g.status.clone().unwrap_or_default();
    json!({
        "name": g.name_any(),
        "namespace": g.namespace(),
        "created_at": g.metadata.creation_timestamp.as_ref().map(|t| t.0),
        "spec": g.spec,
        "phase": status.phase,
        "message": status.message,
    })
}

/// A subject id: set means non-empty, without whitespace or control characters.
fn check_subject_id(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    let Some(v) = value else { return Ok(()) };
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must be 1-{max} characters when set"
        )));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{field}: whitespace and control characters are not allowed"
        )));
    }
    Ok(())
}

/// The checks the apiserver would make too, answered here with the field's name.
fn check_grant_spec(spec: &MCPAccessGrantSpec) -> Result<(), ApiError> {
    check_name("spec.serverRef.name", &spec.server_ref.name)?;
    let s = &spec.subject;
    if [&s.human_id, &s.agent_id, &s.team_id]
        .iter()
        .all(|f| f.as_deref().is_none_or(str::is_empty))
    {
        return Err(ApiError::bad_request(
            "spec.subject: needs at least one of humanID, agentID, teamID (a grant for \
             everyone is not allowed)",
        ));
    }
    check_subject_id("spec.subject.humanID", s.human_id.as_deref(), 256)?;
    check_subject_id("spec.subject.agentID", s.agent_id.as_deref(), 256)?;
    check_subject_id("spec.subject.teamID", s.team_id.as_deref(), 128)?;
    let mut seen = BTreeSet::new();
    for (i, rule) in spec.tool_rules.iter().enumerate() {
        if rule.name.is_empty() || rule.name.chars().count() > 128 {
            return Err(ApiError::bad_request(format!(
                "spec.toolRules[{i}].name: must be 1-128 characters"
            )));
        }
        if !seen.insert(rule.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "spec.toolRules[{i}].name: `{}` is named twice",
                rule.name
            )));
        }
    }
    if spec.tool_rules.len() > 256 {
        return Err(ApiError::bad_request("spec.toolRules: at most 256 rules"));
    }
    Ok(())
}

impl Api {
    pub(super) async fn list_grants(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let grants: Vec<MCPAccessGrant> = scope
            .cluster
            .list(scope.namespace())
            .await
            .map_err(kube_error)?;
        let views: Vec<Value> = grants.iter().map(grant_view).collect();
        ok_json(StatusCode::OK, &json!({ "grants": views }))
    }

    async fn existing_grant(
        &self,
        scope: &TeamScope<'_>,
        name: &str,
    ) -> Result<MCPAccessGrant, ApiError> {
        scope
            .cluster
            .get(scope.namespace(), name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no MCPAccessGrant `{name}` in team `{}`",
                    scope.team.slug
                ))
            })
    }

    pub(super) async fn get_grant(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let grant = self.existing_grant(&scope, name).await?;
        ok_json(StatusCode::OK, &json!({ "grant": grant_view(&grant) }))
    }

    pub(super) async fn create_grant(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: NewGrantBody,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        check_name("name", &body.name)?;
        let target = scope.target("grant", &body.name);
        if !scope.manages(caller) {
            let e = scope.owners_only("create grants");
            return Err(self.deny(ctx, caller, "grant.create", &target, e).await);
        }
        check_grant_spec(&body.spec)?;
        // A grant in this namespace may only reach this team's servers: another namespace's
        // server would count it if that server listed this namespace, and whoever owns this
        // team does not thereby decide about servers elsewhere.
        if let Some(ns) = body.spec.server_ref.namespace.as_deref()
            && !ns.is_empty()
            && ns != scope.namespace()
        {
            let e = ApiError::forbidden(format!(
                "spec.serverRef.namespace: a grant made through the API may only name a server \
                 in the team's namespace {} (leave it out, or set it to that), not `{ns}`",
                scope.namespace()
            ));
            return Err(self.deny(ctx, caller, "grant.create", &target, e).await);
        }
        let existing: Option<MCPAccessGrant> = scope
            .cluster
            .get(scope.namespace(), &body.name)
            .await
            .map_err(kube_error)?;
        if existing.is_some() {
            return Err(ApiError::conflict(format!(
                "name: a grant `{}` exists in team `{}` (PATCH or DELETE it)",
                body.name, scope.team.slug
            )));
        }
        let grant = MCPAccessGrant {
            metadata: ObjectMeta {
                name: Some(body.name.clone()),
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
            spec: body.spec,
            status: None,
        };
        let detail = format!(
            "server={} subject={} maxTrust={} disabled={}",
            grant.spec.server_ref.name,
            serde_json::to_string(&grant.spec.subject).unwrap_or_default(),
            grant.spec.max_trust,
            grant.spec.disabled
        );
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: "grant.create",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        let created = self
            .audited(entry, async {
                scope
                    .cluster
                    .apply(scope.namespace(), &body.name, &grant)
                    .await
                    .map_err(kube_error)
            })
            .await?;
        ok_json(
            StatusCode::CREATED,
            &json!({ "grant": grant_view(&created) }),
        )
    }

    pub(super) async fn change_grant(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: GrantChangeBody,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let target = scope.target("grant", name);
        if !scope.manages(caller) {
            let e = scope.owners_only("change grants");
            return Err(self.deny(ctx, caller, "grant.update", &target, e).await);
        }
        self.existing_grant(&scope, name).await?;
        let detail = format!("disabled={}", body.disabled);
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: "grant.update",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        let patch = json!({ "spec": { "disabled": body.disabled } });
        let changed: MCPAccessGrant = self
            .audited(entry, async {
                scope
                    .cluster
                    .merge_patch(scope.namespace(), name, &patch)
                    .await
                    .map_err(kube_error)
            })
            .await?;
        ok_json(StatusCode::OK, &json!({ "grant": grant_view(&changed) }))
    }

    pub(super) async fn delete_grant(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        self.delete_team_object::<MCPAccessGrant>(ctx, caller, "grant", "MCPAccessGrant")
            .await
    }
}
