//! `GET /v1/audit` (admins): the platform audit log with filters and a cursor.

use http::StatusCode;
use jiff::Timestamp;

use super::envelope::{Answer, ApiError, ok_json};
use super::routes::query_params;
use super::{Api, Caller, Ctx};
use crate::store;

impl Api {
    pub(super) async fn audit_log(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        Self::require_admin(caller, "reading the audit log")?;
        let mut params = query_params(ctx.query.as_deref())?;
        let mut take = |name: &str| params.remove(name);
        let time = |name: &str, v: Option<String>| {
            v.map(|v| {
                v.parse::<Timestamp>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name}: `{v}` is not an RFC 3339 time (e.g. 2026-11-27T10:00:00Z)"
                    ))
                })
            })
            .transpose()
        };
        let limit = match take("limit") {
            None => 50,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit: `{v}` is not a number from 1 to 200"))
                })?,
        };
        let before = take("cursor")
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ApiError::bad_request(format!("cursor: `{v}` is not a cursor")))
            })
            .transpose()?;
        let outcome = take("outcome");
        if let Some(o) = &outcome
            && !["ok", "denied", "failed"].contains(&o.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "outcome: `{o}` is not one of ok, denied, failed"
            )));
        }
        let filter = store::AuditFilter {
            action: take("action"),
            actor: take("actor").map(|a| a.to_lowercase()),
            target: take("target"),
            outcome,
            since: time("since", take("since"))?,
            until: time("until", take("until"))?,
            before,
            limit,
        };
        if let Some(name) = params.keys().next() {
            return Err(ApiError::bad_request(format!(
                "{name}: unknown parameter (known: action, actor, target, outcome, since, \
                 until, limit, cursor)"
            )));
        }
        let conn = self.pool.get().await?;
        let entries = store::audit_entries(&*conn, &filter).await?;
        let next = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.id.to_string()))
            .flatten();
        ok_json(
            StatusCode::OK,
            &serde_json::json!({ "entries": entries, "next_cursor": next }),
        )
    }
}
