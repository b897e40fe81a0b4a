//! The HTTP API. Every error is one JSON envelope: `{"error":{"code":"...","message":"..."}}`.
//!
//! Deny by default: every route but `/healthz`, `/ready`, `/v1/openapi.yaml`,
//! `POST /v1/auth/login`, `POST /v1/auth/oidc` and the dashboard's static files (`/ui/`)
//! authenticates first (an access token, or an API key), and each handler
//! then checks what the caller's role allows. A team the caller may not see is answered as if
//! it did not exist (404), so team names do not leak.

pub mod admin;
mod analytics;
mod audit;
mod auth;
mod dashboard;
mod envelope;
mod explain;
mod grants;
mod input;
mod issuance;
mod keys;
mod routes;
mod scope;
mod servers;
mod sessions;
mod teams;
mod users;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use jiff::{SignedDuration, Timestamp};
use mcp_runtime_token::{SigningKey, VerifyingKeys};
use serde::de::DeserializeOwned;

use crate::config::Lockout;
use crate::store::{self, AuditEntry, Outcome, Pool, Role, User};
pub use envelope::ApiError;
use envelope::{Answer, internal, json};
pub use routes::{DASHBOARD_ROUTES, ROUTES, all_routes, match_route};

/// The OpenAPI document of this API (served at `/v1/openapi.yaml`).
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// The audience of access tokens: no MCP server is named like this (servers are
/// `namespace/name`), so a gateway never accepts an access token as a session token.
pub const ACCESS_TOKEN_AUDIENCE: &str = "mcp-platform";

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
    /// Sentinel's read API (`--sentinel-url`); `None`: the analytics routes answer 503.
    pub sentinel: Option<crate::sentinel::SentinelClient>,
    pub metrics: crate::metrics::Metrics,
    /// The id-token verifier of `POST /v1/auth/oidc` (`--oidc-issuer`); `None`: 503 there.
    pub oidc: Option<crate::oidc::OidcVerifier>,
    /// Create users for verified emails nobody has (`--oidc-auto-provision`).
    pub oidc_auto_provision: bool,
}

/// How long a client may take to send a request body (bodies are small JSON documents).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

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

impl Api {
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Answer, Infallible> {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let matched = match_route(&path);
        let route = matched
            .as_ref()
            .map_or(crate::metrics::UNMATCHED, |(pattern, _)| *pattern);
        let answer = match matched {
            None => ApiError::not_found(format!("no such path: {path} (see /v1/openapi.yaml)"))
                .into_response(),
            Some((pattern, params)) => {
                let allowed = routes::methods_of(pattern);
                if allowed.contains(&method) {
                    let ctx = Ctx {
                        method: method.clone(),
                        params,
                        query: request.uri().query().map(str::to_owned),
                        ip: self.client_ip(&request, peer),
                        now: Timestamp::now(),
                    };
                    self.route(pattern, ctx, request)
                        .await
                        .unwrap_or_else(ApiError::into_response)
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
                    e
                }
            }
        };
        self.metrics
            .request(route, &method, answer.status(), started.elapsed());
        Ok(answer)
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
            ("/" | "/ui", _) => dashboard::redirect(),
            ("/ui/", _) => dashboard::serve("", request.headers()),
            ("/ui/{file}", _) => dashboard::serve(&ctx.params[0], request.headers()),
            ("/v1/auth/login", _) => {
                let body = self.body(request).await?;
                self.login(&ctx, body).await
            }
            ("/v1/auth/oidc", _) => {
                let body = self.body(request).await?;
                self.oidc_login(&ctx, body).await
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
                    ("/v1/teams/{slug}/servers", Method::GET) => {
                        self.list_servers(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/servers", _) => {
                        let body = self.body(request).await?;
                        self.create_server(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}/servers/{name}", Method::GET) => {
                        self.get_server(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/servers/{name}", Method::PUT) => {
                        let body = self.body(request).await?;
                        self.replace_server(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}/servers/{name}", _) => {
                        self.delete_server(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/servers/{name}/explain", _) => {
                        self.explain(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/servers/{name}/capabilities", _) => {
                        self.capabilities(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/grants", Method::GET) => {
                        self.list_grants(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/grants", _) => {
                        let body = self.body(request).await?;
                        self.create_grant(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}/grants/{name}", Method::GET) => {
                        self.get_grant(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/grants/{name}", Method::PATCH) => {
                        let body = self.body(request).await?;
                        self.change_grant(&ctx, &caller, body).await
                    }
                    ("/v1/teams/{slug}/grants/{name}", _) => self.delete_grant(&ctx, &caller).await,
                    ("/v1/teams/{slug}/sessions", _) => self.list_sessions(&ctx, &caller).await,
                    ("/v1/teams/{slug}/sessions/{name}", Method::GET) => {
                        self.get_session(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/sessions/{name}", _) => {
                        self.delete_session(&ctx, &caller).await
                    }
                    ("/v1/teams/{slug}/sessions/{name}/revoke", _) => {
                        self.set_revoked(&ctx, &caller, true).await
                    }
                    ("/v1/teams/{slug}/sessions/{name}/unrevoke", _) => {
                        self.set_revoked(&ctx, &caller, false).await
                    }
                    ("/v1/teams/{slug}/analytics/events", _) => {
                        self.team_analytics(&ctx, &caller, analytics::Report::Events)
                            .await
                    }
                    ("/v1/teams/{slug}/analytics/stats", _) => {
                        self.team_analytics(&ctx, &caller, analytics::Report::Stats)
                            .await
                    }
                    ("/v1/teams/{slug}/analytics/usage", _) => {
                        self.team_analytics(&ctx, &caller, analytics::Report::Usage)
                            .await
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

    /// Whether the database answers (`/ready` here and on the admin listener).
    pub(crate) async fn ready(&self) -> Result<Answer, ApiError> {
        // The driver's own message is only "db error"; the server's reason is in its source.
        fn unready(e: &dyn std::error::Error) -> ApiError {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                let part = s.to_string();
                if !message.ends_with(&part) {
                    message = format!("{message}: {part}");
                }
                source = s.source();
            }
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        let conn = self.pool.get().await.map_err(|e| unready(&e))?;
        conn.simple_query("SELECT 1")
            .await
            .map_err(|e| unready(&store::StoreError::from(e)))?;
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

    fn require_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
        if caller.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("{what} is for admins")))
        }
    }
}
