//! The HTTP API. Every error is one JSON envelope: `{"error":{"code":"...","message":"..."}}`.
//!
//! Deny by default: every route but `/healthz`, `/ready`, `/v1/openapi.yaml` and
//! `POST /v1/auth/login` authenticates first (an access token, or an API key), and each handler
//! then checks what the caller's role allows. A team the caller may not see is answered as if
//! it did not exist (404), so team names do not leak.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use jiff::{SignedDuration, Timestamp};
use mcp_runtime_token::{Identity, SigningKey, VerifyingKeys};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::config::Lockout;
use crate::secrets;
use crate::store::{self, AuditEntry, Outcome, Pool, Role, StoreError, TeamRole, User};

/// The OpenAPI document of this API (served at `/v1/openapi.yaml`).
pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// The audience of access tokens: no MCP server is named like this (servers are
/// `namespace/name`), so a gateway never accepts an access token as a session token.
pub const ACCESS_TOKEN_AUDIENCE: &str = "mcp-platform";

/// Every route and its methods (`{x}` is one path segment): anything else is 404, or 405 on a
/// known path.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/healthz", &[Method::GET]),
    ("/ready", &[Method::GET]),
    ("/v1/openapi.yaml", &[Method::GET]),
    ("/v1/auth/login", &[Method::POST]),
    ("/v1/auth/me", &[Method::GET]),
    ("/v1/users", &[Method::GET, Method::POST]),
    ("/v1/api-keys", &[Method::GET, Method::POST]),
    ("/v1/api-keys/{id}", &[Method::DELETE]),
    ("/v1/teams", &[Method::GET, Method::POST]),
    ("/v1/teams/{slug}", &[Method::GET]),
    ("/v1/teams/{slug}/members", &[Method::POST]),
    ("/v1/teams/{slug}/members/{email}", &[Method::DELETE]),
    ("/v1/audit", &[Method::GET]),
    ("/v1/runtime/adapter/sessions", &[Method::POST]),
];

/// The route `path` matches and its `{...}` segments (percent-decoded).
pub fn match_route(path: &str) -> Option<(&'static str, Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().find_map(|(pattern, _)| {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in parts.iter().zip(&segments) {
            if p.starts_with('{') {
                if s.is_empty() {
                    return None;
                }
                params.push(percent_decode(s)?);
            } else if p != s {
                return None;
            }
        }
        Some((*pattern, params))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What the handlers share.
pub struct Api {
    pub pool: Pool,
    /// The cluster (`--kube`); `None` runs without one.
    pub cluster: Option<crate::cluster::Cluster>,
    pub max_session_ttl: SignedDuration,
    pub signing_key: SigningKey,
    pub verifying_keys: VerifyingKeys,
    pub access_token_ttl: SignedDuration,
    pub lockout: Lockout,
    pub trust_forwarded_for: bool,
    pub max_body_bytes: usize,
}

type Answer = Response<Full<Bytes>>;

/// How long a client may take to send a request body (bodies are small JSON documents).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// An error answer in the envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    fn into_response(self) -> Answer {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = json(self.status, body.to_string().into_bytes());
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict => ApiError::conflict("already exists"),
            StoreError::Db(e) => internal(e),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server's log",
    )
}

fn json(status: StatusCode, body: Vec<u8>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ok_json(status: StatusCode, value: &impl Serialize) -> Result<Answer, ApiError> {
    Ok(json(status, serde_json::to_vec(value).map_err(internal)?))
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    AccessToken,
    ApiKey,
}

/// An authenticated caller.
#[derive(Debug)]
struct Caller {
    user: User,
    via: Via,
}

impl Caller {
    fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// What every handler gets besides the body.
struct Ctx {
    method: Method,
    params: Vec<String>,
    query: Option<String>,
    ip: String,
    now: Timestamp,
}

fn normalize_email(email: &str, field: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: `{}` is not an email address",
            email.chars().take(80).collect::<String>()
        )))
    }
}

fn check_slug(slug: &str) -> Result<(), ApiError> {
    let ok = (1..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "slug: `{}` must be 1-40 characters of a-z, 0-9 and `-`, not starting or ending \
             with `-` (it names the namespace mcp-team-<slug>)",
            slug.chars().take(60).collect::<String>()
        )))
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must be 1-{max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

// ---- request bodies ---------------------------------------------------------------------

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTeamBody {
    slug: String,
    display_name: String,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    server: String,
    agent: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    requested_trust: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    email: String,
    #[serde(default)]
    role: Option<String>,
}

impl Api {
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Answer, Infallible> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let result = match match_route(&path) {
            None => Err(ApiError::not_found(format!(
                "no such path: {path} (see /v1/openapi.yaml)"
            ))),
            Some((pattern, params)) => {
                let allowed = ROUTES
                    .iter()
                    .find(|(p, _)| *p == pattern)
                    .map_or(&[][..], |(_, m)| *m);
                if allowed.contains(&method) {
                    let ctx = Ctx {
                        method: method.clone(),
                        params,
                        query: request.uri().query().map(str::to_owned),
                        ip: self.client_ip(&request, peer),
                        now: Timestamp::now(),
                    };
                    self.route(pattern, ctx, request).await
                } else {
                    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                    let mut e = ApiError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        format!(
                            "{method} is not allowed on {path}; use {}",
                            names.join(", ")
                        ),
                    )
                    .into_response();
                    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
                        e.headers_mut().insert(http::header::ALLOW, v);
                    }
                    return Ok(e);
                }
            }
        };
        Ok(result.unwrap_or_else(ApiError::into_response))
    }

    /// The client's address: the peer's, or with --trust-forwarded-for the right-most
    /// `X-Forwarded-For` entry (the one our proxy appended; entries left of it are the
    /// client's word).
    fn client_ip(&self, request: &Request<Incoming>, peer: SocketAddr) -> String {
        if self.trust_forwarded_for
            && let Some(ip) = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back()
        {
            return ip.to_string();
        }
        peer.ip().to_string()
    }

    async fn route(
        &self,
        pattern: &'static str,
        ctx: Ctx,
        request: Request<Incoming>,
    ) -> Result<Answer, ApiError> {
        match (pattern, ctx.method.clone()) {
            ("/healthz", _) => Ok(json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())),
            ("/ready", _) => self.ready().await,
            ("/v1/openapi.yaml", _) => {
                let mut r = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
                Ok(r)
            }
            ("/v1/auth/login", _) => {
                let body = self.body(request).await?;
                self.login(&ctx, body).await
            }
            _ => {
                let caller = self.authenticate(&request, ctx.now).await?;
                match (pattern, ctx.method.clone()) {
                    ("/v1/auth/me", _) => self.me(&caller).await,
                    ("/v1/users", Method::GET) => self.list_users(&caller).await,
                    ("/v1/users", _) => {
                        let body = self.body(request).await?;
                        self.create_user(&ctx, &caller, body).await
                    }
                    ("/v1/api-keys", Method::GET) => self.list_keys(&caller).await,
                    ("/v1/api-keys", _) => {
                        let body = self.body(request).await?;
                        self.create_key(&ctx, &caller, body).await
                    }
                    ("/v1/api-keys/{id}", _) => self.revoke_key(&ctx, &caller).await,
                    ("/v1/teams", Method::GET) => self.list_teams(&caller).await,
                    ("/v1/teams", _) => {
                        let body = self.body(request).await?;
                        self.create_team(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}", _) => self.get_team(&ctx, &caller).await,
                    ("/v1/teams/{slug}/members", _) => {
                        let body = self.body(request).await?;
                        self.put_member(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}/members/{email}", _) => {
                        self.remove_member(&ctx, &caller).await
                    }
                    ("/v1/audit", _) => self.audit_log(&ctx, &caller).await,
                    ("/v1/runtime/adapter/sessions", _) => {
                        let body = self.body(request).await?;
                        self.issue_session(&ctx, &caller, body).await
                    }
                    _ => Err(internal(format!("no handler for {pattern}"))),
                }
            }
        }
    }

    /// The body, parsed; errors name the field (`email: invalid type ...`).
    async fn body<T: DeserializeOwned>(&self, request: Request<Incoming>) -> Result<T, ApiError> {
        let limit = self.max_body_bytes;
        let collect = Limited::new(request.into_body(), limit).collect();
        let bytes = tokio::time::timeout(BODY_TIMEOUT, collect)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the body did not arrive within {BODY_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request_too_large",
                        format!("the body exceeds {limit} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("reading the body: {e}"))
                }
            })?
            .to_bytes();
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ApiError::bad_request(format!("invalid request body: {inner}"))
            } else {
                ApiError::bad_request(format!("{path}: {inner}"))
            }
        })
    }

    async fn ready(&self) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        })?;
        conn.simple_query("SELECT 1").await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("database: {e}"),
            )
        })?;
        Ok(json(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()))
    }

    async fn audit(&self, entry: AuditEntry<'_>) -> Result<(), ApiError> {
        let conn = self.pool.get().await?;
        store::audit(&*conn, &entry).await?;
        Ok(())
    }

    /// Records a refusal in the audit log and returns it.
    async fn deny(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        action: &str,
        target: &str,
        error: ApiError,
    ) -> ApiError {
        let entry = AuditEntry {
            actor: Some(&caller.user),
            action,
            target,
            outcome: Outcome::Denied,
            detail: Some(&error.message),
            client_ip: &ctx.ip,
        };
        match self.audit(entry).await {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    // ---- authentication -----------------------------------------------------------------

    async fn authenticate(
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

    async fn by_access_token(&self, token: &str, now: Timestamp) -> Result<Caller, ApiError> {
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

    async fn by_api_key(&self, raw: &str, now: Timestamp) -> Result<Caller, ApiError> {
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

    async fn login(&self, ctx: &Ctx, body: LoginBody) -> Result<Answer, ApiError> {
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
            store::login_failed(&*conn, &email, &ctx.ip, Timestamp::now(), self.lockout).await?;
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

    async fn me(&self, caller: &Caller) -> Result<Answer, ApiError> {
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

    fn require_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
        if caller.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("{what} is for admins")))
        }
    }

    async fn list_users(&self, caller: &Caller) -> Result<Answer, ApiError> {
        Self::require_admin(caller, "listing users")?;
        let conn = self.pool.get().await?;
        let users = store::list_users(&*conn).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "users": users }))
    }

    async fn create_user(
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

    async fn list_keys(&self, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let keys = store::list_keys(&*conn, caller.user.id).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "api_keys": keys }))
    }

    async fn create_key(
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

    async fn revoke_key(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
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

    async fn list_teams(&self, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let teams = store::list_teams(&*conn, caller.user.id, caller.is_admin()).await?;
        ok_json(StatusCode::OK, &serde_json::json!({ "teams": teams }))
    }

    async fn create_team(
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
    async fn visible_team(
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

    async fn get_team(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let conn = self.pool.get().await?;
        let team = self.visible_team(&*conn, ctx, caller).await?;
        let members = store::members(&*conn, team.id).await?;
        ok_json(
            StatusCode::OK,
            &serde_json::json!({ "team": team, "members": members }),
        )
    }

    /// May the caller change this team's members? Admins and the team's owners may.
    fn may_manage(caller: &Caller, team: &store::Team) -> Result<(), ApiError> {
        if caller.is_admin() || team.role == Some(TeamRole::Owner) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only an owner of team `{}` or an admin may change its members",
                team.slug
            )))
        }
    }

    async fn put_member(
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

    async fn remove_member(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
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
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .map_err(internal)
    }

    async fn audit_log(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
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

impl Api {
    /// With a cluster: applies the team's namespace and RoleBindings from the memberships as
    /// `c` sees them (inside the caller's transaction: a failure rolls the change back).
    async fn apply_team(
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

    /// `POST /v1/runtime/adapter/sessions`: see docs/platform.md.
    async fn issue_session(
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

fn trust_name(t: mcp_runtime_policy::Trust) -> &'static str {
    match t {
        mcp_runtime_policy::Trust::Low => "low",
        mcp_runtime_policy::Trust::Medium => "medium",
        mcp_runtime_policy::Trust::High => "high",
    }
}

/// A Kubernetes object name (DNS-1123 label).
fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: `{}` is not a Kubernetes name (a-z, 0-9, `-`, at most 63)",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// `a=1&b=2` into a map; a repeated parameter is refused.
fn query_params(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .ok_or_else(|| ApiError::bad_request("the query string is not valid UTF-8"))?;
        let v = percent_decode(v)
            .ok_or_else(|| ApiError::bad_request(format!("{k}: not valid percent-encoding")))?;
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!("{k}: given more than once")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_segments_and_decode_parameters() {
        assert_eq!(
            match_route("/v1/teams/red/members/a%40b.io"),
            Some((
                "/v1/teams/{slug}/members/{email}",
                vec!["red".to_owned(), "a@b.io".to_owned()]
            ))
        );
        assert_eq!(match_route("/v1/teams/"), None);
        assert_eq!(match_route("/v1/teams/red/extra"), None);
        assert_eq!(match_route("/v1/teams").map(|r| r.0), Some("/v1/teams"));
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ", "email").unwrap(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@x", "a@", "a b@c", "a@b@c"] {
            let e = normalize_email(bad, "email").unwrap_err();
            assert!(e.message.starts_with("email:"), "{bad}: {}", e.message);
        }
    }
}
