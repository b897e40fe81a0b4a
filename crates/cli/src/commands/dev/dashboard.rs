//! The dashboard of `mcp-runtime dev`: the platform's dashboard files (`/ui/`) and the part of
//! the platform API they use, answered from the project itself, for one implicit team `dev`
//! (the server's namespace) and one implicit local user, its admin.
//!
//! There is no login: like the gateway and Sentinel that `dev` starts, this listener binds
//! 127.0.0.1 only (any other address is refused), so only the laptop's own user reaches it. What
//! a browser could still do — a page of another site sending requests to 127.0.0.1, directly or
//! through a DNS name rebound to it — is refused by checking `Host` (and `Origin` when sent)
//! against this listener's own loopback origins.
//!
//! Grants and sessions come from the project's files: the only change made here is revoking a
//! session (and undoing that), an overlay in memory rendered into the policy the gateway enforces
//! until it is undone or `dev` restarts. Everything else is edited in `access/*.yaml`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, IF_NONE_MATCH, LOCATION, ORIGIN,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use mcp_runtime_api::access::{AccessPhase, MCPAccessGrant, MCPAgentSession};
use mcp_runtime_api::server::ServerPhase;
use mcp_runtime_policy::{Identity, Policy, TargetKind, report};
use serde_json::{Value, json};

use super::{LivePolicy, Rendering, object_key};
use crate::error::{CliError, Result};

type Answer = Response<Full<Bytes>>;

/// The one team of `dev`.
const TEAM: &str = "dev";
/// The one user of `dev`, its admin.
const USER_EMAIL: &str = "you@localhost";
/// The platform's ids are UUIDs; `dev` has one user and one team.
const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";
/// Where grants and sessions are changed in `dev`.
const EDIT_FILES: &str =
    "in `mcp-runtime dev`, edit access/*.yaml (the policy is re-rendered on save)";

/// Starts the dashboard on 127.0.0.1:`port` in a thread of its own; returns its URL.
/// `sentinel` is dev's Sentinel (base URL, key file) when it runs.
pub(super) fn start(
    port: u16,
    live: Arc<LivePolicy>,
    sentinel: Option<(String, PathBuf)>,
) -> Result<String> {
    start_on(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        live,
        sentinel,
    )
}

fn start_on(
    addr: SocketAddr,
    live: Arc<LivePolicy>,
    sentinel: Option<(String, PathBuf)>,
) -> Result<String> {
    loopback_only(addr)?;
    let sentinel = match sentinel {
        None => None,
        Some((url, key_file)) => {
            let key = std::fs::read_to_string(&key_file).map_err(|source| CliError::Read {
                path: key_file.clone(),
                source,
            })?;
            Some(Sentinel {
                url,
                key: key.trim().to_owned(),
            })
        }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        CliError::hint(
            format!("cannot listen on {addr} for the dashboard: {e}"),
            "pick another port with --dashboard-port, or pass --no-dashboard",
        )
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| CliError::Invalid(e.to_string()))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the runtime: {e}")))?;
    let backend = Arc::new(Backend {
        port,
        live,
        sentinel,
        http: {
            let _guard = runtime.enter();
            Client::builder(TokioExecutor::new()).build_http()
        },
        started: Timestamp::now(),
    });
    std::thread::Builder::new()
        .name("dev-dashboard".into())
        .spawn(move || runtime.block_on(serve(listener, backend)))
        .map_err(|e| CliError::Invalid(format!("cannot start the dashboard: {e}")))?;
    Ok(format!("http://127.0.0.1:{port}/ui/"))
}

/// It answers without login: never on an address another machine can reach.
fn loopback_only(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "the dev dashboard has no login and listens on loopback only, not {addr}"
        )))
    }
}

async fn serve(listener: std::net::TcpListener, backend: Arc<Backend>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: the dashboard stopped: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let backend = Arc::clone(&backend);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let backend = Arc::clone(&backend);
                async move { Ok::<_, Infallible>(backend.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// dev's Sentinel: where it listens and the key `dev` made for it (read and ingest).
struct Sentinel {
    url: String,
    key: String,
}

struct Backend {
    port: u16,
    live: Arc<LivePolicy>,
    sentinel: Option<Sentinel>,
    http: Client<HttpConnector, Empty<Bytes>>,
    started: Timestamp,
}

/// An error answer, in the platform's envelope `{"error":{"code","message"}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A change `dev` leaves to the project's files.
    fn edit_files(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "read_only_in_dev",
            format!("{what}: {EDIT_FILES}"),
        )
    }

    fn into_response(self) -> Answer {
        let mut r = json(
            self.status,
            &json!({"error": {"code": self.code, "message": self.message}}),
        );
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
        }
        r
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn ok(value: &impl serde::Serialize) -> Result<Answer, ApiError> {
    Ok(json(StatusCode::OK, value))
}

impl Backend {
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        if let Err(e) = self.check_origin(request.headers()) {
            return e.into_response();
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        match self
            .route(&method, &path, query.as_deref(), request.headers())
            .await
        {
            Ok(answer) => answer,
            Err(e) => e.into_response(),
        }
    }

    /// Only this listener's own loopback origins: a page of another site (or a DNS name
    /// rebound to 127.0.0.1) cannot read or change anything here.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let port = self.port;
        let ours = [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let refused = |what: &str| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{what}: the dev dashboard answers only to http://127.0.0.1:{port} \
                     (a page of another site may not use it)"
                ),
            )
        };
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !ours.iter().any(|o| o == host) {
            return Err(refused("Host"));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !ours.iter().any(|o| origin == format!("http://{o}")) {
                return Err(refused("Origin"));
            }
        }
        Ok(())
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Answer, ApiError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = method == Method::GET || method == Method::HEAD;
        match segments.as_slice() {
            [""] | ["ui"] if get => Ok(redirect()),
            ["ui", file] if get => serve_asset(file, headers),
            ["v1", "auth", "me"] if get => ok(&json!({
                "user": self.user(),
                "teams": [self.team()],
                "auth": "local",
            })),
            ["v1", "teams"] if get => ok(&json!({ "teams": [self.team()] })),
            ["v1", "api-keys"] if get => ok(&json!({ "api_keys": [] })),
            ["v1", "api-keys", ..] => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "read_only_in_dev",
                "`mcp-runtime dev` has no API keys: its dashboard needs none on 127.0.0.1",
            )),
            ["v1", "teams", slug, rest @ ..] => {
                if *slug != TEAM {
                    return Err(ApiError::not_found(format!(
                        "no team `{}`: `mcp-runtime dev` has one, `{TEAM}`",
                        slug.chars().take(80).collect::<String>()
                    )));
                }
                self.team_route(method, rest, query).await
            }
            _ if get || path.starts_with("/v1/") => Err(ApiError::not_found(format!(
                "`mcp-runtime dev` serves no {method} {}",
                path.chars().take(200).collect::<String>()
            ))),
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not served here"),
            )),
        }
    }

    async fn team_route(
        &self,
        method: &Method,
        rest: &[&str],
        query: Option<&str>,
    ) -> Result<Answer, ApiError> {
        let get = method == Method::GET;
        let post = method == Method::POST;
        let current = self.live.current();
        match rest {
            [] if get => ok(&json!({ "team": self.team(), "members": [] })),
            ["analytics", report] if get => self.analytics(report, query).await,
            ["servers"] if get => ok(&json!({ "servers": [server_view(&current)] })),
            ["servers", name] if get => {
                self.own_server(&current, name)?;
                ok(&json!({ "server": server_view(&current) }))
            }
            ["servers", name, "explain"] if get => {
                self.own_server(&current, name)?;
                explain(&current, query.unwrap_or(""), Timestamp::now())
            }
            ["servers", name, "capabilities"] if get => {
                self.own_server(&current, name)?;
                capabilities(&current, query.unwrap_or(""), Timestamp::now())
            }
            ["grants"] if get => ok(&json!({
                "grants": current.grants.iter().map(|g| grant_view(&current, g)).collect::<Vec<_>>(),
            })),
            ["grants"] => Err(ApiError::edit_files("grants are not created here")),
            ["grants", name] if get => {
                let grant = current
                    .grants
                    .iter()
                    .filter(|g| g.metadata.name.as_deref() == Some(name))
                    .min_by_key(|g| g.metadata.namespace != Some(self.namespace(&current)))
                    .ok_or_else(|| ApiError::not_found(format!("no grant `{name}`")))?;
                ok(&json!({ "grant": grant_view(&current, grant) }))
            }
            ["grants", _] => Err(ApiError::edit_files("grants are not changed here")),
            ["sessions"] if get => ok(&json!({
                "sessions": current.sessions.iter().map(|s| session_view(&current, s)).collect::<Vec<_>>(),
            })),
            ["sessions", name] if get => {
                let session = self.find_session(&current, name)?;
                ok(&json!({ "session": session_view(&current, session) }))
            }
            ["sessions", name, action @ ("revoke" | "unrevoke")] if post => {
                self.set_revoked(&current, name, *action == "revoke")
            }
            ["sessions", ..] => Err(ApiError::edit_files(
                "sessions are not created or deleted here",
            )),
            _ => Err(ApiError::not_found(format!(
                "`mcp-runtime dev` serves no {method} /v1/teams/{TEAM}/{}",
                rest.join("/").chars().take(200).collect::<String>()
            ))),
        }
    }

    fn namespace(&self, current: &Rendering) -> String {
        current.document.server.namespace.clone()
    }

    fn user(&self) -> Value {
        json!({
            "id": NIL_ID,
            "email": USER_EMAIL,
            "role": "admin",
            "created_at": self.started,
        })
    }

    fn team(&self) -> Value {
        let namespace = self.namespace(&self.live.current());
        json!({
            "id": NIL_ID,
            "slug": TEAM,
            "display_name": format!("{TEAM} ({namespace})"),
            "namespace": namespace,
            "created_at": self.started,
            "role": "owner",
        })
    }

    fn own_server(&self, current: &Rendering, name: &str) -> Result<(), ApiError> {
        if name == current.document.server.name {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "no server `{}`: `mcp-runtime dev` runs `{}`",
                name.chars().take(80).collect::<String>(),
                current.document.server.name
            )))
        }
    }

    /// The session `name`: the one in the team's namespace, else the only one so named.
    fn find_session<'r>(
        &self,
        current: &'r Rendering,
        name: &str,
    ) -> Result<&'r MCPAgentSession, ApiError> {
        let named: Vec<&MCPAgentSession> = current
            .sessions
            .iter()
            .filter(|s| s.metadata.name.as_deref() == Some(name))
            .collect();
        let namespace = self.namespace(current);
        named
            .iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .or(if named.len() == 1 {
                named.first()
            } else {
                None
            })
            .copied()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no session `{}` in the project's access manifests",
                    name.chars().take(80).collect::<String>()
                ))
            })
    }

    fn set_revoked(
        &self,
        current: &Rendering,
        name: &str,
        revoked: bool,
    ) -> Result<Answer, ApiError> {
        let session = self.find_session(current, name)?;
        let key = object_key(
            session.metadata.namespace.as_deref(),
            session.metadata.name.as_deref(),
        );
        if !revoked && session.spec.revoked && !current.revoked_here.contains(&key) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "revoked_in_files",
                format!("session {key} is revoked in its manifest ({EDIT_FILES})"),
            ));
        }
        let next = self.live.set_revoked(&key, revoked).map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                "policy_not_rendered",
                format!("the project's manifests do not render ({e}); nothing changed"),
            )
        })?;
        eprintln!(
            "{}",
            if revoked {
                format!(
                    "session {key} revoked from the dashboard (until unrevoked or dev restarts); policy re-rendered"
                )
            } else {
                format!("session {key} unrevoked from the dashboard; policy re-rendered")
            }
        );
        let session = self.find_session(&next, name)?;
        ok(&json!({ "session": session_view(&next, session) }))
    }

    /// `/v1/teams/dev/analytics/{events,stats,usage}`: dev's Sentinel's report, read with the
    /// key `dev` made for it. It holds this project's decisions only, so nothing is confined.
    async fn analytics(&self, report: &str, query: Option<&str>) -> Result<Answer, ApiError> {
        if !matches!(report, "events" | "stats" | "usage") {
            return Err(ApiError::not_found(format!(
                "no analytics report `{}` (events, stats, usage)",
                report.chars().take(80).collect::<String>()
            )));
        }
        let unavailable = |message: String| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "analytics_unavailable",
                message,
            )
        };
        let Some(sentinel) = &self.sentinel else {
            return Err(unavailable(
                "`mcp-runtime dev` runs without Sentinel (--no-sentinel): decisions are in the audit log file only".into(),
            ));
        };
        let url = match query {
            Some(q) => format!("{}/v1/{report}?{q}", sentinel.url),
            None => format!("{}/v1/{report}", sentinel.url),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|_| ApiError::bad_request("the query is not a valid URL query"))?;
        let request = Request::get(uri)
            .header("x-api-key", &sentinel.key)
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.http.request(request),
        )
        .await
        .map_err(|_| unavailable("Sentinel did not answer within 30 s".into()))?
        .map_err(|e| unavailable(format!("Sentinel did not answer: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(format!("Sentinel's answer broke off: {e}")))?
            .to_bytes();
        // Only a refusal of the query is the caller's to fix; Sentinel refusing dev's key, or
        // not serving the route, is not.
        let callers_fault = status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
            );
        if !(status.is_success() || callers_fault) {
            return Err(unavailable(format!("Sentinel answered {status}")));
        }
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
}

/// `302 Found` to the dashboard.
fn redirect() -> Answer {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/ui/"));
    r
}

/// The dashboard's file, answered as the platform answers it (`mcp_runtime_dashboard::reply`).
fn serve_asset(file: &str, request_headers: &HeaderMap) -> Result<Answer, ApiError> {
    let if_none_match = request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(reply) = mcp_runtime_dashboard::reply(file, if_none_match) else {
        return Err(ApiError::not_found(format!(
            "the dashboard has no file `{}`",
            file.chars().take(80).collect::<String>()
        )));
    };
    let mut r = Response::new(Full::new(Bytes::from_static(reply.body)));
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (name, value) in reply.headers {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(r)
}

/// The server as the platform shows one: the dev server is up (dev waited for it), its
/// gateway ready, its tools as the rendered policy declares them.
fn server_view(current: &Rendering) -> Value {
    let doc = &current.document;
    let description = |name: &str| {
        current
            .entry
            .spec
            .tools
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.description.clone())
    };
    json!({
        "name": doc.server.name,
        "namespace": doc.server.namespace,
        "created_at": null,
        "description": current.entry.spec.description,
        "team_id": current.entry.spec.team_id,
        "phase": ServerPhase::Ready,
        "message": "mcp-runtime dev",
        "ready": true,
        "gateway": { "enabled": true, "ready": true },
        "policy_revision": doc.revision,
        "conditions": [],
        "tools": doc.tools.iter().map(|t| json!({
            "name": t.name,
            "description": description(&t.name),
            "required_trust": t.required_trust,
            "side_effect": t.side_effect,
            "risk_level": t.risk_level,
        })).collect::<Vec<_>>(),
    })
}

/// Why the renderer left `kind` `namespace/name` out of the policy, if it did.
fn left_out(current: &Rendering, kind: &str, key: &str) -> Option<String> {
    current
        .left_out
        .iter()
        .find(|s| s.kind == kind && format!("{}/{}", s.namespace, s.name) == key)
        .map(|s| {
            s.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
}

fn grant_view(current: &Rendering, g: &MCPAccessGrant) -> Value {
    let key = object_key(g.metadata.namespace.as_deref(), g.metadata.name.as_deref());
    let (phase, message) = match left_out(current, "MCPAccessGrant", &key) {
        Some(why) => (AccessPhase::Invalid, Some(why)),
        None if g.spec.disabled => (AccessPhase::Disabled, None),
        None => (AccessPhase::Active, None),
    };
    json!({
        "name": g.metadata.name,
        "namespace": g.metadata.namespace,
        "created_at": null,
        "spec": g.spec,
        "phase": phase,
        "message": message,
    })
}

fn session_view(current: &Rendering, s: &MCPAgentSession) -> Value {
    let key = object_key(s.metadata.namespace.as_deref(), s.metadata.name.as_deref());
    let expired = s
        .spec
        .expires_at
        .as_ref()
        .is_some_and(|t| t.0 <= Timestamp::now());
    let (phase, message) = match left_out(current, "MCPAgentSession", &key) {
        Some(why) => (AccessPhase::Invalid, Some(why)),
        None if current.revoked_here.contains(&key) => (
            AccessPhase::Revoked,
            Some("revoked from the dashboard until unrevoked or `mcp-runtime dev` restarts".into()),
        ),
        None if s.spec.revoked => (AccessPhase::Revoked, None),
        None if expired => (AccessPhase::Expired, None),
        None => (AccessPhase::Active, None),
    };
    json!({
        "name": s.metadata.name,
        "namespace": s.metadata.namespace,
        "created_at": null,
        "spec": s.spec,
        "phase": phase,
        "message": message,
    })
}

// ---------- explain and capabilities, as the platform answers them ----------

/// The parameters naming the caller to decide for, and the instant.
const WHO: [&str; 5] = ["human", "agent", "team", "session", "at"];

/// `%XX` and `+` decoded; `None` when not valid UTF-8 or a bad escape.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
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

/// The query's parameters: each known (`own` or [`WHO`]), given once, short, printable.
fn parameters(
    query: &str,
    own: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut params = std::collections::BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (percent_decode(name), percent_decode(value)) else {
            return Err(ApiError::bad_request(
                "the query is not valid percent-encoded UTF-8",
            ));
        };
        if !own.contains(&name.as_str()) && !WHO.contains(&name.as_str()) {
            let known: Vec<&str> = own.iter().chain(WHO.iter()).copied().collect();
            return Err(ApiError::bad_request(format!(
                "{}: unknown parameter (known: {})",
                name.chars().take(80).collect::<String>(),
                known.join(", ")
            )));
        }
        if value.chars().any(char::is_control) || value.len() > 1024 {
            return Err(ApiError::bad_request(format!(
                "{name}: at most 1024 characters, no control characters"
            )));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad_request(format!(
                "{name}: given more than once"
            )));
        }
    }
    Ok(params)
}

fn instant(
    params: &std::collections::BTreeMap<String, String>,
    now: Timestamp,
) -> Result<Timestamp, ApiError> {
    match params.get("at") {
        None => Ok(now),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "at: `{v}` is not an RFC 3339 time (e.g. 2026-11-27T10:00:00Z)"
            ))
        }),
    }
}

fn identity(params: &std::collections::BTreeMap<String, String>) -> Identity<'_> {
    let get = |k: &str| params.get(k).map(String::as_str);
    Identity::new(get("human"), get("agent"), get("team"), get("session"))
}

/// `GET .../servers/{name}/explain?kind&name[&human&agent&team&session&at]`.
fn explain(current: &Rendering, query: &str, now: Timestamp) -> Result<Answer, ApiError> {
    let params = parameters(query, &["kind", "name"])?;
    let kind = match params.get("kind").map(String::as_str) {
        None => {
            return Err(ApiError::bad_request(
                "kind: required (tool, prompt or resource)",
            ));
        }
        Some(k) => TargetKind::ALL
            .into_iter()
            .find(|t| t.as_str() == k)
            .ok_or_else(|| {
                ApiError::bad_request(format!("kind: `{k}` is not one of tool, prompt, resource"))
            })?,
    };
    let name = params.get("name").ok_or_else(|| {
        ApiError::bad_request("name: required (the tool or prompt name, or the resource URI)")
    })?;
    let at = instant(&params, now)?;
    let policy = Policy::new(current.document.clone());
    let mut explanation = report::explain(&policy, identity(&params), kind, name, at);
    if !explanation.decision.allowed {
        explanation.hint = Some(format!(
            "{}: {EDIT_FILES}",
            explanation.decision.reason.summary()
        ));
    }
    ok(&explanation)
}

/// `GET .../servers/{name}/capabilities[?human&agent&team&session&at]`.
fn capabilities(current: &Rendering, query: &str, now: Timestamp) -> Result<Answer, ApiError> {
    let params = parameters(query, &[])?;
    let at = instant(&params, now)?;
    let policy = Policy::new(current.document.clone());
    ok(&report::capabilities(&policy, identity(&params), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_unknown_or_repeated_parameters_refused() {
        let p = parameters(
            "kind=tool&name=a%2Fb+c&at=2026-01-01T00%3A00%3A00Z",
            &["kind", "name"],
        )
        .unwrap();
        assert_eq!(p["name"], "a/b c");
        assert_eq!(p["at"], "2026-01-01T00:00:00Z");
        for bad in [
            "x=1",
            "human=a&human=b",
            "human=%ZZ",
            "human=%FF",
            "human=a%00",
        ] {
            let e = parameters(bad, &["kind"]).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        for ok in ["127.0.0.1:8096", "[::1]:8096"] {
            assert!(loopback_only(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in ["0.0.0.0:8096", "192.168.1.2:8096", "[::]:8096"] {
            assert!(
                loopback_only(refused.parse().unwrap()).is_err(),
                "{refused}"
            );
        }
    }
}
