//! Users: `GET/POST /v1/users` (admins).

use http::StatusCode;

use super::envelope::{Answer, ApiError, internal, ok_json};
use super::input::normalize_email;
use super::{Api, Caller, Ctx};
use crate::secrets;
use crate::store::{self, AuditEntry, Outcome, Role, StoreError};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUserBody {
    email: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

impl Api {
    pub(super) async fn list_users(&self, caller: &Caller) -> Result<Answer, ApiError> {
        Self::require_admin(caller, "listing users")?;
        let conn = self.pool.get().await?;
        let users = store::list_users(&*conn).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "users": users }))
    }

    pub(super) async fn create_user(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: NewUserBody,
    ) -> Result<Answer, ApiError> {
        let email = normalize_email(&body.email, "email")?;
        if let Err(e) = Self::require_admin(caller, "creating users") {
            return Err(self.deny(ctx, caller, "user.create", &email, e).await);
        }
        let role = match body.role.as_deref() {
            None => Role::User,
            Some(r) => Role::parse(r).ok_or_else(|| {
                ApiError::bad_request(format!("role: `{r}` is not one of admin, user"))
            })?,
        };
        secrets::check_new_password(&body.password).map_err(ApiError::bad_request)?;
        let password = body.password;
        let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
            .await
            .map_err(internal)?;
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let user = match store::create_user(&tx, &email, role, Some(&hash)).await {
            Err(StoreError::Conflict) => {
                return Err(ApiError::conflict(format!(
                    "email: a user with {email} exists"
                )));
            }
            other => other?,
        };
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "user.create",
                target: &email,
                outcome: Outcome::Ok,
                detail: Some(role.as_str()),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        ok_json(StatusCode::CREATED, &serde_json::json!({ "user": user }))
    }
}
