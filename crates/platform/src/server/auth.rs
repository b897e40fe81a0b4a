//! Authentication (access tokens and API keys), password login, and `GET /v1/auth/me`.

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use jiff::Timestamp;
use mcp_runtime_token::Identity;
use uuid::Uuid;

use super::envelope::{Answer, ApiError, internal, ok_json};
use super::input::normalize_email;
use super::{ACCESS_TOKEN_AUDIENCE, Api, Caller, Ctx, Via};
use crate::metrics::{LoginMethod, LoginOutcome};
use crate::secrets;
use crate::store::{self, AuditEntry, Outcome, User};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    email: String,
    password: String,
}

impl Api {
    pub(super) async fn authenticate(
        &self,
        request: &Request<Incoming>,
        now: Timestamp,
    ) -> Result<Caller, ApiError> {
        let headers = request.headers();
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| {
                        let (scheme, token) = v.split_once(' ')?;
                        scheme
                            .eq_ignore_ascii_case("bearer")
                            .then(|| token.trim().to_owned())
                    })
                    .ok_or_else(|| {
                        ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
                    })
            })
            .transpose()?;
        let api_key = headers
            .get("x-api-key")
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::unauthorized("invalid API key"))
            })
            .transpose()?;
        match (bearer, api_key) {
            (None, None) => Err(ApiError::unauthorized(
                "authentication required: send `Authorization: Bearer <access token or API key>` \
                 or `x-api-key`",
            )),
            (Some(_), Some(_)) => Err(ApiError::unauthorized(
                "send either Authorization or x-api-key, not both",
            )),
            (None, Some(key)) => self.by_api_key(&key, now).await,
            (Some(token), None) if token.starts_with(secrets::KEY_PREFIX) => {
                self.by_api_key(&token, now).await
            }
            (Some(token), None) => self.by_access_token(&token, now).await,
        }
    }

    pub(super) async fn by_access_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Caller, ApiError> {
        let verified = self
            .verifying_keys
            .verify(token, ACCESS_TOKEN_AUDIENCE, now)
            .map_err(|e| ApiError::unauthorized(format!("access token refused: {e}")))?;
        let id = verified
            .claims
            .sub
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| ApiError::unauthorized("access token refused: no user"))?;
        let conn = self.pool.get().await?;
        let user = store::user_by_id(&*conn, id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("access token refused: the user is gone"))?;
        Ok(Caller {
            user,
            via: Via::AccessToken,
        })
    }

    pub(super) async fn by_api_key(&self, raw: &str, now: Timestamp) -> Result<Caller, ApiError> {
        let refused = || ApiError::unauthorized("invalid API key");
        let prefix = secrets::key_prefix(raw).ok_or_else(refused)?;
        let conn = self.pool.get().await?;
        let (key, hash, user) = store::key_by_prefix(&*conn, prefix)
            .await?
            .ok_or_else(refused)?;
        if !secrets::key_matches(raw, &hash) {
            return Err(refused());
        }
        if key.revoked_at.is_some() {
            return Err(ApiError::unauthorized(format!(
                "API key {} was revoked",
                key.prefix
            )));
        }
        store::touch_key(&*conn, key.id, now).await?;
        Ok(Caller {
            user,
            via: Via::ApiKey,
        })
    }

    // ---- handlers -----------------------------------------------------------------------

    pub(super) async fn login(&self, ctx: &Ctx, body: LoginBody) -> Result<Answer, ApiError> {
        let email = normalize_email(&body.email, "email")?;
        if body.password.is_empty() || body.password.len() > secrets::MAX_PASSWORD_BYTES {
            return Err(ApiError::bad_request(format!(
                "password: must be 1-{} bytes",
                secrets::MAX_PASSWORD_BYTES
            )));
        }
        fn audit<'a>(
            ctx: &'a Ctx,
            email: &'a str,
            outcome: Outcome,
            detail: &'static str,
            actor: Option<&'a User>,
        ) -> AuditEntry<'a> {
            AuditEntry {
                actor,
                action: "auth.login",
                target: email,
                outcome,
                detail: Some(detail),
                client_ip: &ctx.ip,
            }
        }
        let conn = self.pool.get().await?;
        if let Some(until) = store::locked_until(&*conn, &email, &ctx.ip, ctx.now).await? {
            let millis = (until.as_millisecond() - ctx.now.as_millisecond()).max(1);
            let secs = u64::try_from((millis + 999) / 1000).unwrap_or(1);
            store::audit(
                &*conn,
                &audit(ctx, &email, Outcome::Denied, "locked out", None),
            )
            .await?;
            self.metrics
                .login(LoginMethod::Password, LoginOutcome::LockedOut);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many failed logins; try again in {secs} s"),
            );
            e.retry_after = Some(secs);
            return Err(e);
        }
        let found = store::user_by_email(&*conn, &email).await?;
        let (user, hash) = match found {
            Some((user, Some(hash))) => (Some(user), hash),
            _ => (None, secrets::dummy_hash().to_owned()),
        };
        let password = body.password;
        let matches =
            tokio::task::spawn_blocking(move || secrets::verify_password(&password, &hash))
                .await
                .map_err(internal)?;
        let Some(user) = user.filter(|_| matches) else {
            // The lockout runs from now, not from the request's arrival: the hash took time.
            let locked =
                store::login_failed(&*conn, &email, &ctx.ip, Timestamp::now(), self.lockout)
                    .await?;
            if locked.is_some() {
                self.metrics.lockout();
            }
            store::audit(
                &*conn,
                &audit(
                    ctx,
                    &email,
                    Outcome::Failed,
                    "wrong email or password",
                    None,
                ),
            )
            .await?;
            self.metrics
                .login(LoginMethod::Password, LoginOutcome::Failed);
            return Err(ApiError::unauthorized("wrong email or password"));
        };
        store::login_succeeded(&*conn, &email, &ctx.ip).await?;
        let token = self
            .signing_key
            .mint(
                ACCESS_TOKEN_AUDIENCE,
                Identity {
                    human: Some(user.id.to_string()),
                    session: Some(format!("login-{}", Uuid::new_v4())),
                    ..Identity::default()
                },
                ctx.now,
                self.access_token_ttl,
            )
            .map_err(internal)?;
        store::audit(
            &*conn,
            &audit(ctx, &email, Outcome::Ok, "password", Some(&user)),
        )
        .await?;
        self.metrics.login(LoginMethod::Password, LoginOutcome::Ok);
        let mut r = ok_json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.access_token_ttl.as_secs(),
                "user": user,
            }),
        )?;
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }

    pub(super) async fn me(&self, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let teams = store::list_teams(&*conn, caller.user.id, false).await?;
        ok_json(
            StatusCode::OK,
            &serde_json::json!({
                "user": caller.user,
                "teams": teams,
                "auth": match caller.via { Via::AccessToken => "access_token", Via::ApiKey => "api_key" },
            }),
        )
    }
}
