//! Teams and memberships; with `--kube`, each team's namespace and RoleBindings follow them.

use http::StatusCode;

use super::envelope::{Answer, ApiError, no_content, ok_json};
use super::input::{check_slug, check_text, normalize_email};
use super::{Api, Caller, Ctx};
use crate::store::{self, AuditEntry, Outcome, StoreError, TeamRole};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTeamBody {
    slug: String,
    display_name: String,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberBody {
    email: String,
    #[serde(default)]
    role: Option<String>,
}

impl Api {
    pub(super) async fn list_teams(&self, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let teams = store::list_teams(&*conn, caller.user.id, caller.is_admin()).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "teams": teams }))
    }

    pub(super) async fn create_team(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: NewTeamBody,
    ) -> Result<Answer, ApiError> {
        check_slug(&body.slug)?;
        check_text("display_name", &body.display_name, 200)?;
        let target = format!("team/{}", body.slug);
        if let Err(e) = Self::require_admin(caller, "creating teams") {
            return Err(self.deny(ctx, caller, "team.create", &target, e).await);
        }
        let owner_email = body
            .owner
            .as_deref()
            .map(|o| normalize_email(o, "owner"))
            .transpose()?;
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let owner = match &owner_email {
            None => None,
            Some(email) => Some(
                store::user_by_email(&tx, email)
                    .await?
                    .ok_or_else(|| ApiError::bad_request(format!("owner: no user {email}")))?
                    .0,
            ),
        };
        let team =
            match store::create_team(&tx, &body.slug, &body.display_name, caller.user.id).await {
                Err(StoreError::Conflict) => {
                    return Err(ApiError::conflict(format!(
                        "slug: a team `{}` exists",
                        body.slug
                    )));
                }
                other => other?,
            };
        if let Some(owner) = &owner {
            store::put_member(&tx, team.id, owner.id, TeamRole::Owner).await?;
        }
        self.apply_team(&tx, &team).await?;
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "team.create",
                target: &target,
                outcome: Outcome::Ok,
                detail: owner_email.as_deref(),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        ok_json(StatusCode::CREATED, &serde_json::json!({ "team": team }))
    }

    /// The team if the caller may see it (admin or member); 404 otherwise.
    pub(super) async fn visible_team(
        &self,
        c: &impl tokio_postgres::GenericClient,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<store::Team, ApiError> {
        let slug = &ctx.params[0];
        store::team_for(c, slug, caller.user.id)
            .await?
            .filter(|t| caller.is_admin() || t.role.is_some())
            .ok_or_else(|| ApiError::not_found(format!("no team `{slug}`")))
    }

    pub(super) async fn get_team(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let team = self.visible_team(&*conn, ctx, caller).await?;
        let members = store::members(&*conn, team.id).await?;
        ok_json(
            StatusCode::OK,
            &serde_json::json!({ "team": team, "members": members }),
        )
    }

    /// May the caller change this team's members? Admins and the team's owners may.
    pub(super) fn may_manage(caller: &Caller, team: &store::Team) -> Result<(), ApiError> {
        if caller.is_admin() || team.role == Some(TeamRole::Owner) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only an owner of team `{}` or an admin may change its members",
                team.slug
            )))
        }
    }

    pub(super) async fn put_member(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: MemberBody,
    ) -> Result<Answer, ApiError> {
        let email = normalize_email(&body.email, "email")?;
        let role = match body.role.as_deref() {
            None => TeamRole::Member,
            Some(r) => TeamRole::parse(r).ok_or_else(|| {
                ApiError::bad_request(format!("role: `{r}` is not one of owner, member"))
            })?,
        };
        let target = format!("team/{}/member/{email}", ctx.params[0]);
        let mut conn = self.pool.get().await?;
        let team = self.visible_team(&*conn, ctx, caller).await?;
        if let Err(e) = Self::may_manage(caller, &team) {
            drop(conn);
            return Err(self.deny(ctx, caller, "team.member.put", &target, e).await);
        }
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        store::lock_team(&tx, team.id).await?;
        let (user, _) = store::user_by_email(&tx, &email)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("email: no user {email}")))?;
        let members = store::members(&tx, team.id).await?;
        let was_owner = members
            .iter()
            .any(|m| m.email == email && m.role == TeamRole::Owner);
        if was_owner
            && role != TeamRole::Owner
            && !caller.is_admin()
            && store::owner_count(&tx, team.id).await? <= 1
        {
            return Err(ApiError::conflict(format!(
                "{email} is the last owner of `{}`; make someone else owner first",
                team.slug
            )));
        }
        store::put_member(&tx, team.id, user.id, role).await?;
        self.apply_team(&tx, &team).await?;
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "team.member.put",
                target: &target,
                outcome: Outcome::Ok,
                detail: Some(role.as_str()),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        ok_json(
            StatusCode::OK,
            &serde_json::json!({ "team": team.slug, "email": email, "role": role }),
        )
    }

    pub(super) async fn remove_member(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        let email = normalize_email(&ctx.params[1], "email")?;
        let target = format!("team/{}/member/{email}", ctx.params[0]);
        let mut conn = self.pool.get().await?;
        let team = self.visible_team(&*conn, ctx, caller).await?;
        if let Err(e) = Self::may_manage(caller, &team) {
            drop(conn);
            return Err(self
                .deny(ctx, caller, "team.member.remove", &target, e)
                .await);
        }
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        store::lock_team(&tx, team.id).await?;
        let not_member =
            || ApiError::not_found(format!("{email} is not a member of `{}`", team.slug));
        let (user, _) = store::user_by_email(&tx, &email)
            .await?
            .ok_or_else(not_member)?;
        let removed = store::remove_member(&tx, team.id, user.id)
            .await?
            .ok_or_else(not_member)?;
        if removed == TeamRole::Owner
            && !caller.is_admin()
            && store::owner_count(&tx, team.id).await? == 0
        {
            // Dropping the transaction rolls the removal back.
            return Err(ApiError::conflict(format!(
                "{email} is the last owner of `{}`; make someone else owner first",
                team.slug
            )));
        }
        self.apply_team(&tx, &team).await?;
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "team.member.remove",
                target: &target,
                outcome: Outcome::Ok,
                detail: Some(removed.as_str()),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        no_content()
    }

    /// With a cluster: applies the team's namespace and RoleBindings from the memberships as
    /// `c` sees them (inside the caller's transaction: a failure rolls the change back).
    pub(super) async fn apply_team(
        &self,
        c: &impl tokio_postgres::GenericClient,
        team: &store::Team,
    ) -> Result<(), ApiError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let members = store::members(c, team.id).await?;
        let (owners, others): (Vec<_>, Vec<_>) =
            members.into_iter().partition(|m| m.role == TeamRole::Owner);
        let emails = |v: Vec<store::Member>| v.into_iter().map(|m| m.email).collect::<Vec<_>>();
        cluster
            .apply_team(&team.slug, &emails(owners), &emails(others))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, team = %team.slug, "applying the team namespace");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kubernetes_unavailable",
                    format!(
                        "applying namespace {} failed (nothing was changed): {e}",
                        team.namespace
                    ),
                )
            })
    }
}
