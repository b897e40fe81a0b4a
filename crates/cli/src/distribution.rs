//! A client of the OCI distribution API (a container registry's `/v2/`): blob existence,
//! chunked blob upload, manifest upload, the catalog; authenticated anonymously, with Basic
//! credentials, or with a bearer token fetched from the registry's token service
//! (`WWW-Authenticate: Bearer realm=...`), the credentials coming from the docker config file.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_runtime_tls::{Connector, Trust};

/// Registry answers other than blobs are small; a larger one is not a registry's.
const MAX_ANSWER_BYTES: usize = 4 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A user name and password for a registry. Never printed.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// Where they came from, for messages (a path, never the secret).
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.user, self.origin)
    }
}

/// The docker config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// What the docker config holds for `host` (`host[:port]`).
#[derive(Debug)]
pub enum ConfigLookup {
    Found(Credentials),
    /// No entry for the host; `helper` names a credential helper the file configures instead
    /// (not called by mcp-runtime).
    Missing {
        path: PathBuf,
        helper: Option<String>,
    },
    NoFile,
}

/// Looks `host` up in the `auths` of the docker config (keys may carry a scheme and a path:
/// `https://host:port/v1/` matches `host:port`).
pub fn credentials_for(host: &str) -> Result<ConfigLookup, String> {
    let Some(path) = docker_config_path() else {
        return Ok(ConfigLookup::NoFile);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigLookup::NoFile),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let origin = path.display().to_string();
    for (key, entry) in config["auths"].as_object().into_iter().flatten() {
        let bare = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let bare = bare.split('/').next().unwrap_or_default();
        if !bare.eq_ignore_ascii_case(host) {
            continue;
        }
        let bad = |what: &str| {
            format!(
                "{}: auths.{key}.auth is {what}; it must be base64 of `user:password` (`docker \
                 login` writes it)",
                path.display()
            )
        };
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("without a `:`"))?;
            return Ok(ConfigLookup::Found(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
                origin,
            }));
        }
        if let (Some(user), Some(password)) =
            (entry["username"].as_str(), entry["password"].as_str())
        {
            return Ok(ConfigLookup::Found(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
                origin,
            }));
        }
    }
    let helper = config["credHelpers"][host]
        .as_str()
        .or(config["credsStore"].as_str())
        .map(str::to_owned);
    Ok(ConfigLookup::Missing { path, helper })
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the registry at {base}: {message}")]
    Unreachable { base: String, message: String },
    /// 401 after trying the credentials there are (or with none to try).
    #[error("{message}")]
    Unauthorized { message: String },
}

/// A challenge from `WWW-Authenticate`: the scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
    pub fn parse(value: &str) -> Option<Challenge> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let mut params = Vec::new();
        let mut rest = rest.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            params.push((key, val.to_owned()));
            rest = remaining.trim_start_matches([',', ' ']);
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers and (small) body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error message (`{"errors":[{"code","message"}]}`), or the status reason.
    pub fn message(&self) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        let errors = parsed
            .as_ref()
            .and_then(|v| v["errors"].as_array().cloned());
        match errors {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|e| {
                    format!(
                        "{} ({})",
                        e["message"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => self.status.canonical_reason().unwrap_or("error").to_owned(),
        }
    }
}

/// How requests are authenticated once the registry has said what it wants.
enum Auth {
    None,
    Basic(String),
    Bearer(String),
}

pub struct Registry {
    /// `http(s)://host[:port]`.
    base: String,
    host: String,
    http: Client<Connector, Full<Bytes>>,
    credentials: Option<Credentials>,
    auth: Auth,
    /// The token scope to ask for when the challenge names none (e.g. on `/v2/`).
    scope: Option<String>,
}

impl Registry {
    /// A client of the registry at `host` (`host[:port]`), over plain HTTP when `insecure`.
    /// Needs an entered tokio runtime.
    pub fn new(
        host: &str,
        insecure: bool,
        ca_file: Option<PathBuf>,
        credentials: Option<Credentials>,
    ) -> Result<Self, String> {
        let connector = mcp_runtime_tls::connector(&Trust::system_and(ca_file))
            .map_err(|e| format!("TLS: {e}"))?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            base: format!("{}://{host}", if insecure { "http" } else { "https" }),
            host: host.to_owned(),
            http,
            credentials,
            auth: Auth::None,
            scope: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The scope bearer tokens are asked for (`repository:NAME:pull,push`).
    pub fn set_scope(&mut self, scope: String) {
        self.scope = Some(scope);
    }

    /// One request, authenticated as the registry asks (one retry after a 401 with a
    /// challenge this client can answer). A 401 that remains is [`RegistryError::Unauthorized`].
    pub async fn send(
        &mut self,
        method: Method,
        path_or_url: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<Answer, RegistryError> {
        let mut answer = self.send_once(&method, path_or_url, headers, &body).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let challenge = answer
            .header(header::WWW_AUTHENTICATE.as_str())
            .and_then(Challenge::parse);
        if self.authenticate(challenge.as_ref()).await? {
            answer = self.send_once(&method, path_or_url, headers, &body).await?;
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(challenge.as_ref()));
        }
        Ok(answer)
    }

    fn unauthorized(&self, challenge: Option<&Challenge>) -> RegistryError {
        let scheme = challenge.map(|c| c.scheme.as_str()).unwrap_or("unknown");
        let message = match &self.credentials {
            Some(c) => format!(
                "the registry {} refused the credentials of `{}` (from {}) ({scheme} \
                 authentication)\n  hint: check the user and password (`docker login {}` \
                 rewrites them)",
                self.host, c.user, c.origin, self.host
            ),
            None => {
                let config = docker_config_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.docker/config.json".into());
                format!(
                    "the registry {} requires authentication ({scheme}) and there are no \
                     credentials for it in {config}\n  hint: run `docker login {}`, or add \
                     \"auths\": {{\"{}\": {{\"auth\": \"<base64 of user:password>\"}}}} to that \
                     file ($DOCKER_CONFIG selects another directory)",
                    self.host, self.host, self.host
                )
            }
        };
        RegistryError::Unauthorized { message }
    }

    /// Sets up the authentication `challenge` asks for; false when there is nothing to try.
    async fn authenticate(&mut self, challenge: Option<&Challenge>) -> Result<bool, RegistryError> {
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        match challenge.scheme.as_str() {
            "basic" => {
                if matches!(self.auth, Auth::Basic(_)) {
                    return Ok(false);
                }
                let Some(c) = &self.credentials else {
                    return Ok(false);
                };
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.user, c.password));
                self.auth = Auth::Basic(format!("Basic {encoded}"));
                Ok(true)
            }
            "bearer" => {
                let token = self.fetch_token(challenge).await?;
                self.auth = Auth::Bearer(format!("Bearer {token}"));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// GET realm?service=...&scope=... (with Basic credentials when there are some) and take
    /// `token` (or `access_token`) from the JSON answer.
    async fn fetch_token(&mut self, challenge: &Challenge) -> Result<String, RegistryError> {
        let realm = challenge.param("realm").unwrap_or_default().to_owned();
        if !realm.starts_with("http://") && !realm.starts_with("https://") {
            return Err(RegistryError::Unauthorized {
                message: format!(
                    "the registry {} asked for a bearer token without a usable realm (`{realm}`)",
                    self.host
                ),
            });
        }
        let mut query = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(format!("service={}", crate::platform::segment(service)));
        }
        let scope = challenge
            .param("scope")
            .map(str::to_owned)
            .or_else(|| self.scope.clone());
        if let Some(scope) = scope {
            query.push(format!("scope={}", crate::platform::segment(&scope)));
        }
        let url = if query.is_empty() {
            realm.clone()
        } else {
            let sep = if realm.contains('?') { '&' } else { '?' };
            format!("{realm}{sep}{}", query.join("&"))
        };
        let mut request = Request::get(&url);
        if let Some(c) = &self.credentials {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.user, c.password));
            request = request.header(
                header::AUTHORIZATION,
                sensitive(&format!("Basic {encoded}")),
            );
        }
        let answer = self.exchange(request, Bytes::new(), &realm).await?;
        if !answer.status.is_success() {
            return Err(RegistryError::Unauthorized {
                message: format!(
                    "the token service {realm} of {} answered {}{}",
                    self.host,
                    answer.status,
                    match &self.credentials {
                        Some(c) => format!(" for `{}` (credentials from {})", c.user, c.origin),
                        None => " (no credentials for this registry in the docker config)".into(),
                    }
                ),
            });
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        json["token"]
            .as_str()
            .or(json["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::Unauthorized {
                message: format!("the token service {realm} answered without a token"),
            })
    }

    pub async fn send_once(
        &self,
        method: &Method,
        path_or_url: &str,
        headers: &[(header::HeaderName, String)],
        body: &Bytes,
    ) -> Result<Answer, RegistryError> {
        let url = self.url(path_or_url);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Basic(v) | Auth::Bearer(v) => {
                request = request.header(header::AUTHORIZATION, sensitive(v));
            }
        }
        self.exchange(request, body.clone(), &self.base).await
    }

    async fn exchange(
        &self,
        request: http::request::Builder,
        body: Bytes,
        base: &str,
    ) -> Result<Answer, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            base: base.to_owned(),
            message,
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await
        .map_err(|_| unreachable("the answer did not arrive in time".into()))?
        .map_err(|e| unreachable(format!("reading the answer: {e}")))?
        .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `path` under the registry, or a `Location` the registry gave (absolute or not).
    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }
}

fn sensitive(value: &str) -> http::HeaderValue {
    let mut v = http::HeaderValue::from_str(value)
        .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"));
    v.set_sensitive(true);
    v
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("service"), Some("registry.example.com"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("Registry Realm"))
        );
        assert_eq!(Challenge::parse("Basic").unwrap().params, vec![]);
    }

    /// A fake registry whose `/v2/` wants a bearer token, and its token service, which wants
    /// Basic `u:p` and the scope asked for. Answers `n` connections (one request each).
    async fn token_registry(n: usize) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..n {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 8192];
                let len = conn.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..len]).to_string();
                let basic = base64::engine::general_purpose::STANDARD.encode("u:p");
                let (status, extra, body) = if request.starts_with("GET /token?") {
                    let scoped = request.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
                        && request.contains("service=fake");
                    if request.contains(&format!("authorization: Basic {basic}")) && scoped {
                        ("200 OK", String::new(), r#"{"token":"tok123"}"#)
                    } else {
                        ("401 Unauthorized", String::new(), "{}")
                    }
                } else if request.contains("authorization: Bearer tok123") {
                    ("200 OK", String::new(), "{}")
                } else {
                    let challenge = format!(
                        "www-authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                    );
                    ("401 Unauthorized", challenge, "{}")
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        port
    }

    #[tokio::test]
    async fn bearer_tokens_are_fetched_from_the_realm_with_the_credentials() {
        let port = token_registry(3).await;
        let credentials = Credentials {
            user: "u".into(),
            password: "p".into(),
            origin: "test".into(),
        };
        let host = format!("127.0.0.1:{port}");
        let mut registry = Registry::new(&host, true, None, Some(credentials)).unwrap();
        registry.set_scope("repository:team/app:pull,push".into());
        let answer = registry
            .send(Method::GET, "/v2/", &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_refused_token_request_is_unauthorized() {
        let port = token_registry(2).await;
        let host = format!("127.0.0.1:{port}");
        let mut registry = Registry::new(&host, true, None, None).unwrap();
        registry.set_scope("repository:team/app:pull,push".into());
        let err = registry
            .send(Method::GET, "/v2/", &[], Bytes::new())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, RegistryError::Unauthorized { message } if message.contains("/token")),
            "{err}"
        );
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            user: "u".into(),
            password: "s3cret".into(),
            origin: "/x/config.json".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
