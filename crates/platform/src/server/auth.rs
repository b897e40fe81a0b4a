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
use crate::store::{self, AuditEntry, Outcome, User};
use crate::{oidc, secrets};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    email: String,
    password: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcBody {
    id_token: String,
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
        store::audit(
            &*conn,
            &audit(ctx, &email, Outcome::Ok, "password", Some(&user)),
        )
        .await?;
        self.metrics.login(LoginMethod::Password, LoginOutcome::Ok);
        self.access_token_answer(ctx, &user)
    }

    /// The answer of a login: an access token for `user`, not to be cached.
    fn access_token_answer(&self, ctx: &Ctx, user: &User) -> Result<Answer, ApiError> {
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

    /// `POST /v1/auth/oidc`: an id token of the configured issuer, for an access token of the
    /// user with its (verified) email.
    pub(super) async fn oidc_login(&self, ctx: &Ctx, body: OidcBody) -> Result<Answer, ApiError> {
        let Some(verifier) = &self.oidc else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "oidc_unavailable",
                "this mcp-platform takes no id tokens: start it with --oidc-issuer, \
                 --oidc-audience and --oidc-jwks-file",
            ));
        };
        let token = body.id_token.trim();
        if token.is_empty() || token.len() > oidc::MAX_TOKEN_BYTES {
            return Err(ApiError::bad_request(format!(
                "id_token: must be 1-{} bytes",
                oidc::MAX_TOKEN_BYTES
            )));
        }
        let mut conn = self.pool.get().await?;
        // A refusal: audited (target: the email once the token is known good, else the
        // issuer; detail: the code only, never token content), counted, answered 401.
        let refused = async |target: &str, refusal: oidc::Refusal| -> ApiError {
            let entry = AuditEntry {
                actor: None,
                action: "auth.oidc",
                target,
                outcome: Outcome::Failed,
                detail: Some(refusal.code),
                client_ip: &ctx.ip,
            };
            if let Err(e) = store::audit(&*conn, &entry).await {
                return e.into();
            }
            self.metrics.login(LoginMethod::Oidc, LoginOutcome::Failed);
            ApiError::new(StatusCode::UNAUTHORIZED, refusal.code, refusal.message)
        };
        let identity = match verifier.verify(token) {
            Ok(identity) => identity,
            Err(refusal) => return Err(refused(verifier.issuer(), refusal).await),
        };
        let Ok(email) = normalize_email(&identity.email, "email") else {
            let refusal = oidc::Refusal {
                code: "invalid_token",
                message: "id_token: its `email` claim is not an email address".to_owned(),
            };
            return Err(refused(verifier.issuer(), refusal).await);
        };
        let user = match store::user_by_email(&*conn, &email).await? {
            Some((user, _)) => user,
            None if self.oidc_auto_provision => Self::provision(&mut conn, ctx, &email).await?,
            None => {
                let refusal = oidc::Refusal {
                    code: "unknown_user",
                    message: format!(
                        "no user has the email `{email}`: an admin creates it first (or the \
                         platform runs with --oidc-auto-provision)"
                    ),
                };
                return Err(refused(&email, refusal).await);
            }
        };
        let detail = format!(
            "issuer={} sub={}",
            verifier.issuer(),
            identity.subject.as_deref().unwrap_or("-")
        );
        store::audit(
            &*conn,
            &AuditEntry {
                actor: Some(&user),
                action: "auth.oidc",
                target: &email,
                outcome: Outcome::Ok,
                detail: Some(&detail),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        self.metrics.login(LoginMethod::Oidc, LoginOutcome::Ok);
        self.access_token_answer(ctx, &user)
    }

    /// Creates the user of a verified email (`--oidc-auto-provision`): role `user`, no
    /// password, audited as `user.create` with no actor.
    async fn provision(
        conn: &mut tokio_postgres::Client,
        ctx: &Ctx,
        email: &str,
    ) -> Result<User, ApiError> {
        let tx = conn.transaction().await.map_err(store::StoreError::from)?;
        let user = match store::create_user(&tx, email, store::Role::User, None).await {
            Ok(user) => user,
            // Created by a concurrent login of the same person.
            Err(store::StoreError::Conflict) => {
                drop(tx);
                return store::user_by_email(&*conn, email)
                    .await?
                    .map(|(user, _)| user)
                    .ok_or_else(|| internal("a user conflicting on email is not there"));
            }
            Err(e) => return Err(e.into()),
        };
        store::audit(
            &tx,
            &AuditEntry {
                actor: None,
                action: "user.create",
                target: email,
                outcome: Outcome::Ok,
                detail: Some("oidc auto-provision"),
                client_ip: &ctx.ip,
            },
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(user)
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
