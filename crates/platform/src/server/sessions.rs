//! `/v1/teams/{slug}/sessions[/{name}[/revoke|/unrevoke]]` (with `--kube`): the team's
//! MCPAgentSessions. Members see and revoke their own sessions (`spec.subject.humanID` is their
//! email); owners and admins see, revoke, unrevoke and delete every session of the team. A
//! session the caller may not see is answered 404, as if it did not exist.

use http::StatusCode;
use kube::ResourceExt;
use mcp_runtime_api::access::MCPAgentSession;
use serde_json::{Value, json};

use super::envelope::{Answer, ApiError, no_content, ok_json};
use super::scope::{TeamScope, kube_error, object_name};
use super::{Api, Caller, Ctx};
use crate::store::{AuditEntry, Outcome};

fn session_view(s: &MCPAgentSession) -> Value {
    let status = s.status.clone().unwrap_or_default();
    json!({
        "name": s.name_any(),
        "namespace": s.namespace(),
        "created_at": s.metadata.creation_timestamp.as_ref().map(|t| t.0),
        "spec": s.spec,
        "phase": status.phase,
        "message": status.message,
    })
}

/// Is this the caller's own session (issued for them as the human)?
fn owns(caller: &Caller, s: &MCPAgentSession) -> bool {
    s.spec.subject.human_id.as_deref() == Some(caller.user.email.as_str())
}

/// Who did what to which session, for the audit detail.
fn describe(s: &MCPAgentSession) -> String {
    let subject = &s.spec.subject;
    format!(
        "server={} human={} agent={}",
        s.spec.server_ref.name,
        subject.human_id.as_deref().unwrap_or("-"),
        subject.agent_id.as_deref().unwrap_or("-"),
    )
}

impl Api {
    pub(super) async fn list_sessions(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let sessions: Vec<MCPAgentSession> = scope
            .cluster
            .list(scope.namespace())
            .await
            .map_err(kube_error)?;
        let all = scope.manages(caller);
        let views: Vec<Value> = sessions
            .iter()
            .filter(|s| all || owns(caller, s))
            .map(session_view)
            .collect();
        ok_json(StatusCode::OK, &json!({ "sessions": views }))
    }

    /// The session if it exists, and the 404 to answer when it does not or the caller may not
    /// see it (one message for both, so a member cannot tell another member's session from
    /// none).
    async fn find_session(
        &self,
        scope: &TeamScope<'_>,
        name: &str,
    ) -> Result<(Option<MCPAgentSession>, ApiError), ApiError> {
        let found: Option<MCPAgentSession> = scope
            .cluster
            .get(scope.namespace(), name)
            .await
            .map_err(kube_error)?;
        let missing = ApiError::not_found(format!(
            "no MCPAgentSession `{name}` in team `{}`",
            scope.team.slug
        ));
        Ok((found, missing))
    }

    pub(super) async fn get_session(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let (found, missing) = self.find_session(&scope, name).await?;
        match found {
            Some(s) if scope.manages(caller) || owns(caller, &s) => {
                ok_json(StatusCode::OK, &json!({ "session": session_view(&s) }))
            }
            _ => Err(missing),
        }
    }

    /// `POST .../revoke` (`revoked: true`): the session's own human, owners, admins.
    /// `POST .../unrevoke` (`revoked: false`): owners and admins only — a member may end their
    /// session, but not undo what an owner ended.
    pub(super) async fn set_revoked(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        revoked: bool,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let action = if revoked {
            "session.revoke"
        } else {
            "session.unrevoke"
        };
        let target = scope.target("session", name);
        if !revoked && !scope.manages(caller) {
            let e = scope.owners_only("unrevoke sessions");
            return Err(self.deny(ctx, caller, action, &target, e).await);
        }
        let (found, missing) = self.find_session(&scope, name).await?;
        let session = match found {
            None => return Err(missing),
            Some(s) if scope.manages(caller) || owns(caller, &s) => s,
            // Another member's session: recorded, and answered as if it did not exist.
            Some(_) => return Err(self.deny(ctx, caller, action, &target, missing).await),
        };
        let detail = describe(&session);
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action,
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        // The same merge patch `kubectl patch` sends: the gateway sees it as fast.
        let patch = json!({ "spec": { "revoked": revoked } });
        let changed: MCPAgentSession = self
            .audited(entry, async {
                scope
                    .cluster
                    .merge_patch(scope.namespace(), name, &patch)
                    .await
                    .map_err(kube_error)
            })
            .await?;
        ok_json(
            StatusCode::OK,
            &json!({ "session": session_view(&changed) }),
        )
    }

    /// Owners and admins; deleting is what lets issuance create a fresh session after a
    /// revocation.
    pub(super) async fn delete_session(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let name = object_name(ctx)?;
        let target = scope.target("session", name);
        if !scope.manages(caller) {
            let e = scope.owners_only("delete sessions");
            return Err(self.deny(ctx, caller, "session.delete", &target, e).await);
        }
        let (found, missing) = self.find_session(&scope, name).await?;
        let Some(session) = found else {
            return Err(missing);
        };
        let detail = describe(&session);
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action: "session.delete",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        };
        self.audited(entry, async {
            let deleted = scope
                .cluster
                .delete::<MCPAgentSession>(scope.namespace(), name)
                .await
                .map_err(kube_error)?;
            // Gone between the read and the delete: nothing was deleted by this request.
            deleted.then_some(()).ok_or(missing)
        })
        .await?;
        no_content()
    }
}
