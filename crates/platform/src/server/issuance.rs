//! `POST /v1/runtime/adapter/sessions` (with `--kube`): agent session issuance.

use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode};
use jiff::SignedDuration;
use mcp_runtime_token::Identity;

use super::envelope::{Answer, ApiError, internal, ok_json};
use super::input::{check_name, check_text, trust_name};
use super::{Api, Caller, Ctx};
use crate::store::{self, AuditEntry, Outcome};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionBody {
    server: String,
    agent: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    requested_trust: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

impl Api {
    /// `POST /v1/runtime/adapter/sessions`: see docs/platform.md.
    pub(super) async fn issue_session(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: SessionBody,
    ) -> Result<Answer, ApiError> {
        check_name("server", &body.server)?;
        check_text("agent", &body.agent, 256)?;
        if body.agent.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_request("agent: whitespace is not allowed"));
        }
        let requested = match body.requested_trust.as_deref() {
            None => mcp_runtime_policy::Trust::Low,
            Some("low") => mcp_runtime_policy::Trust::Low,
            Some("medium") => mcp_runtime_policy::Trust::Medium,
            Some("high") => mcp_runtime_policy::Trust::High,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "requested_trust: `{other}` is not one of low, medium, high"
                )));
            }
        };
        let ttl = match body.ttl_seconds {
            None => SignedDuration::from_secs(3600),
            Some(s) if s < 60 => {
                return Err(ApiError::bad_request(format!(
                    "ttl_seconds: {s} is below the minimum of 60"
                )));
            }
            Some(s) => SignedDuration::from_secs(s),
        }
        .min(self.max_session_ttl);
        let Some(cluster) = &self.cluster else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kubernetes_unavailable",
                "this mcp-platform runs without a cluster (start it with --kube to issue sessions)",
            ));
        };
        // The team: the one named, else the caller's only team.
        let conn = self.pool.get().await?;
        let teams = store::list_teams(&*conn, caller.user.id, false).await?;
        let team = match &body.team {
            Some(slug) => match store::team_for(&*conn, slug, caller.user.id).await? {
                Some(t) if caller.is_admin() || t.role.is_some() => t,
                _ => return Err(ApiError::not_found(format!("team: no team `{slug}`"))),
            },
            None => match teams.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(ApiError::bad_request(
                        "team: you belong to no team; name one",
                    ));
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "team: you belong to several teams; name one",
                    ));
                }
            },
        };
        drop(conn);
        let request = crate::cluster::SessionRequest {
            namespace: &team.namespace,
            server: &body.server,
            human: &caller.user.email,
            agent: &body.agent,
            team: &team.slug,
            requested_trust: requested,
            ttl,
        };
        let target = format!("{}/{}", team.namespace, body.server);
        let issued = match cluster.issue_session(&request, ctx.now).await {
            Ok(i) => i,
            Err(
                crate::cluster::IssueError::NoGrant(m) | crate::cluster::IssueError::Revoked(m),
            ) => {
                return Err(self
                    .deny(
                        ctx,
                        caller,
                        "session.issue",
                        &target,
                        ApiError::forbidden(m),
                    )
                    .await);
            }
            Err(crate::cluster::IssueError::Kube(e)) => {
                tracing::warn!(error = %e, "issuing a session");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kubernetes_unavailable",
                    format!("the cluster did not answer: {e}"),
                ));
            }
        };
        let token = self
            .signing_key
            .mint(
                &target,
                Identity {
                    human: Some(caller.user.email.clone()),
                    agent: Some(body.agent.clone()),
                    team: Some(team.slug.clone()),
                    session: Some(issued.name.clone()),
                },
                ctx.now,
                issued.expires_at.duration_since(ctx.now),
            )
            .map_err(internal)?;
        let detail = format!(
            "{} agent={} trust={} grant={} reused={}",
            issued.name,
            body.agent,
            trust_name(issued.consented_trust),
            issued.grant,
            issued.reused
        );
        self.audit(AuditEntry {
            actor: Some(&caller.user),
            action: "session.issue",
            target: &target,
            outcome: Outcome::Ok,
            detail: Some(&detail),
            client_ip: &ctx.ip,
        })
        .await?;
        self.metrics.session_issued(issued.reused);
        let mut r = ok_json(
            StatusCode::OK,
            &serde_json::json!({
                "name": issued.name,
                "namespace": team.namespace,
                "server": body.server,
                "human": caller.user.email,
                "agent": body.agent,
                "team": team.slug,
                "consented_trust": trust_name(issued.consented_trust),
                "policy_version": issued.policy_version,
                "expires_at": issued.expires_at,
                "reused": issued.reused,
                "token": token,
                "token_type": "Bearer",
            }),
        )?;
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
}
