//! API keys: each user's own, `GET/POST /v1/api-keys`, `DELETE /v1/api-keys/{id}`.

use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode};
use uuid::Uuid;

use super::envelope::{Answer, ApiError, ok_json};
use super::input::check_text;
use super::{Api, Caller, Ctx};
use crate::secrets;
use crate::store::{self, AuditEntry, Outcome, StoreError};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKeyBody {
    name: String,
}

impl Api {
    pub(super) async fn list_keys(&self, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let keys = store::list_keys(&*conn, caller.user.id).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "api_keys": keys }))
    }

    pub(super) async fn create_key(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        body: NewKeyBody,
    ) -> Result<Answer, ApiError> {
        check_text("name", &body.name, 100)?;
        let new = secrets::new_api_key();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let key =
            store::create_key(&tx, caller.user.id, &body.name, &new.prefix, &new.sha256).await?;
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "api_key.create",
                target: &key.prefix,
                outcome: Outcome::Ok,
                detail: Some(&body.name),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut r = ok_json(
            StatusCode::CREATED,
            &serde_json::json!({
                "api_key": new.raw,
                "key": key,
                "note": "the api_key is shown once: store it now",
            }),
        )?;
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }

    pub(super) async fn revoke_key(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let raw = &ctx.params[0];
        let id = Uuid::parse_str(raw)
            .map_err(|_| ApiError::bad_request(format!("id: `{raw}` is not a key id")))?;
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let key = store::revoke_key(&tx, caller.user.id, id, ctx.now)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("you have no API key {id}")))?;
        store::audit(
            &tx,
            &AuditEntry {
                actor: Some(&caller.user),
                action: "api_key.revoke",
                target: &key.prefix,
                outcome: Outcome::Ok,
                detail: None,
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        ok_json(StatusCode::OK, &serde_json::json!({ "key": key }))
    }
}
