//! The policy straight from the Kubernetes API: a list, then a watch, on the one ConfigMap that
//! holds the gateway's rendered policy. A change reaches the gateway as soon as the API server
//! sends the watch event (milliseconds), where a mounted ConfigMap is refreshed by the kubelet
//! only after a minute or more — too slow for revoking a session.
//!
//! Needs only `get`, `list` and `watch` on that ConfigMap (`resourceNames: [name]`): both
//! requests carry `fieldSelector=metadata.name=<name>`, which is what lets the API server
//! authorise a list or watch against a named resource. The bearer token is read from its file
//! before every request, so a projected, rotating ServiceAccount token keeps working.
//!
//! Failure keeps the last good policy (like the file source) and the gateway keeps retrying with
//! backoff; before a first valid document every MCP request is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::error_chain;
use crate::policy_source::{PolicyStore, Reload};

/// Default key of the policy document inside its ConfigMap.
pub const DEFAULT_KEY: &str = "policy.json";
/// The server ends each watch after this long; the gateway then resumes from the last version.
const WATCH_SECONDS: u64 = 240;
/// A watch that outlives the server's own timeout by this much is presumed dead.
const WATCH_GRACE: Duration = Duration::from_secs(20);
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Largest watch event accepted (a ConfigMap holds at most 1 MiB, escaped inside JSON).
const MAX_EVENT_BYTES: usize = 8 << 20;

/// `namespace/name` of the policy ConfigMap and the key of the document in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl FromStr for ConfigMapRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        match s.split_once('/') {
            Some((namespace, name)) if valid(namespace) && valid(name) => Ok(Self {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key: DEFAULT_KEY.to_owned(),
            }),
            _ => Err(format!(
                "`{s}` is not `<namespace>/<name>` of a ConfigMap (lower-case DNS names)"
            )),
        }
    }
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How to reach and authenticate to the API server.
#[derive(Debug, Clone)]
pub struct KubeAccess {
    /// `https://host:port` of the API server.
    pub api_url: Uri,
    /// File holding the bearer token (re-read before every request).
    pub token_file: PathBuf,
    /// CA that signed the API server's certificate (the only CA trusted for it).
    pub ca_file: PathBuf,
}

impl KubeAccess {
    /// The API server of the pod's cluster, from the variables the kubelet sets.
    pub fn in_cluster_url() -> Result<Uri, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "KUBERNETES_SERVICE_HOST is not set: not running in a pod; pass --kube-api-url"
                .to_owned()
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        format!("https://{host}:{port}")
            .parse()
            .map_err(|e| format!("KUBERNETES_SERVICE_HOST/PORT give no valid URL: {e}"))
    }
}

type HttpClient = Client<mcp_runtime_tls::Connector, Empty<Bytes>>;

/// Why one round of list-and-watch ended.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("cannot read the API token {path}: {message}")]
    Token { path: String, message: String },
    #[error("cannot reach the Kubernetes API at {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "the Kubernetes API refused to {verb} ConfigMap {config_map} ({status}): {message}; the \
         gateway's ServiceAccount needs get, list and watch on it"
    )]
    Refused {
        verb: &'static str,
        config_map: String,
        status: StatusCode,
        message: String,
    },
    #[error(
        "the Kubernetes API answered {verb} of ConfigMap {config_map} with {status}: {message}"
    )]
    Status {
        verb: &'static str,
        config_map: String,
        status: StatusCode,
        message: String,
    },
    #[error("unexpected answer from the Kubernetes API: {0}")]
    Decode(String),
    /// The version watched from is too old (HTTP 410 / an ERROR event with code 410): list again.
    #[error("watch expired")]
    Gone,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct ConfigMapObject {
    metadata: Meta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ConfigMapList {
    metadata: Meta,
    items: Vec<ConfigMapObject>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiStatus {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
}

struct Watcher<F> {
    client: HttpClient,
    access: KubeAccess,
    config_map: ConfigMapRef,
    store: PolicyStore,
    on_reload: F,
}

impl<F: Fn(Reload)> Watcher<F> {
    fn url(&self, watch_from: Option<&str>) -> String {
        let base = self.access.api_url.to_string();
        let mut url = format!(
            "{}/api/v1/namespaces/{}/configmaps?fieldSelector=metadata.name%3D{}",
            base.trim_end_matches('/'),
            self.config_map.namespace,
            self.config_map.name
        );
        if let Some(version) = watch_from {
            url.push_str(&format!(
                "&watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={version}"
            ));
        }
        url
    }

    async fn get(
        &self,
        verb: &'static str,
        url: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, WatchError> {
        let path = &self.access.token_file;
        let token = std::fs::read_to_string(path).map_err(|e| WatchError::Token {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let request = Request::get(url)
            .header("authorization", format!("Bearer {}", token.trim()))
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| WatchError::Decode(format!("request for {url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| WatchError::Connect {
                url: self.access.api_url.to_string(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::GONE {
            return Err(WatchError::Gone);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<ApiStatus>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        let config_map = self.config_map.to_string();
        Err(
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                WatchError::Refused {
                    verb,
                    config_map,
                    status,
                    message,
                }
            } else {
                WatchError::Status {
                    verb,
                    config_map,
                    status,
                    message,
                }
            },
        )
    }

    /// Installs the document of one version of the ConfigMap.
    fn apply(&self, object: &ConfigMapObject) {
        match object.data.get(&self.config_map.key) {
            Some(document) => (self.on_reload)(self.store.load_bytes(document.as_bytes())),
            None => self.store.set_error(format!(
                "ConfigMap {} has no key `{}`; keeping the last good policy",
                self.config_map, self.config_map.key
            )),
        }
    }

    /// Lists the ConfigMap and returns the version to watch from.
    async fn list(&self) -> Result<String, WatchError> {
        let response = self.get("list", &self.url(None)).await?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| WatchError::Connect {
                url: self.access.api_url.to_string(),
                message: error_chain(&e),
            })?
            .to_bytes();
        let list: ConfigMapList = serde_json::from_slice(&body)
            .map_err(|e| WatchError::Decode(format!("ConfigMap list: {e}")))?;
        match list.items.first() {
            Some(object) => self.apply(object),
            None => self.store.set_error(format!(
                "ConfigMap {} does not exist (yet); waiting for it",
                self.config_map
            )),
        }
        Ok(list.metadata.resource_version)
    }

    /// Watches from `version` until the server ends the watch; returns the last version seen.
    async fn watch(&self, mut version: String) -> Result<String, WatchError> {
        let response = self.get("watch", &self.url(Some(&version))).await?;
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(WATCH_SECONDS) + WATCH_GRACE;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) | Ok(None) => return Ok(version),
                Ok(Some(Err(e))) => {
                    return Err(WatchError::Connect {
                        url: self.access.api_url.to_string(),
                        message: error_chain(&e),
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line = buffer.split_to(end + 1);
                if let Some(v) = self.event(&line[..end])? {
                    version = v;
                }
            }
            if buffer.len() > MAX_EVENT_BYTES {
                return Err(WatchError::Decode(format!(
                    "watch event larger than {MAX_EVENT_BYTES} bytes"
                )));
            }
        }
    }

    /// Handles one watch event; returns the resource version it carries.
    fn event(&self, line: &[u8]) -> Result<Option<String>, WatchError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let event: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| WatchError::Decode(format!("watch event: {e}")))?;
        let decode = |what: &str, e: serde_json::Error| WatchError::Decode(format!("{what}: {e}"));
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                let object: ConfigMapObject = serde_json::from_value(event.object)
                    .map_err(|e| decode("ConfigMap in watch event", e))?;
                self.apply(&object);
                Ok(Some(object.metadata.resource_version))
            }
            "DELETED" => {
                self.store.set_error(format!(
                    "ConfigMap {} was deleted; keeping the last good policy",
                    self.config_map
                ));
                let object: ConfigMapObject = serde_json::from_value(event.object)
                    .map_err(|e| decode("ConfigMap in watch event", e))?;
                Ok(Some(object.metadata.resource_version))
            }
            // A bookmark is an empty ConfigMap that carries only the version reached.
            "BOOKMARK" => {
                let bookmark: ConfigMapObject =
                    serde_json::from_value(event.object).map_err(|e| decode("bookmark", e))?;
                Ok(Some(bookmark.metadata.resource_version))
            }
            "ERROR" => {
                let status: ApiStatus =
                    serde_json::from_value(event.object).map_err(|e| decode("watch error", e))?;
                if status.code == 410 {
                    Err(WatchError::Gone)
                } else {
                    Err(WatchError::Status {
                        verb: "watch",
                        config_map: self.config_map.to_string(),
                        status: StatusCode::from_u16(status.code)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        message: status.message,
                    })
                }
            }
            other => Err(WatchError::Decode(format!(
                "unknown watch event type `{other}`"
            ))),
        }
    }

    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let error = match self.list().await {
                Ok(mut version) => {
                    backoff = MIN_BACKOFF;
                    loop {
                        match self.watch(version.clone()).await {
                            Ok(v) => version = v,
                            Err(e) => break e,
                        }
                    }
                }
                Err(e) => e,
            };
            if matches!(error, WatchError::Gone) {
                tracing::debug!(config_map = %self.config_map, "watch expired; listing again");
                continue;
            }
            let message = error.to_string();
            if self.store.last_error().as_deref() != Some(&message) {
                tracing::warn!(config_map = %self.config_map, retry_in = ?backoff, "{message}");
            }
            self.store.set_error(message);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Starts following `config_map` through the API; fails only when TLS cannot be configured.
pub fn watch_config_map(
    store: PolicyStore,
    access: KubeAccess,
    config_map: ConfigMapRef,
    on_reload: impl Fn(Reload) + Send + Sync + 'static,
) -> Result<(), mcp_runtime_tls::TlsError> {
    let connector = mcp_runtime_tls::connector(&mcp_runtime_tls::Trust::only(&access.ca_file))?;
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let watcher = Watcher {
        client,
        access,
        config_map,
        store,
        on_reload,
    };
    tokio::spawn(watcher.run());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_refs_parse_strictly() {
        let r: ConfigMapRef = "team-a/hello-gateway-policy".parse().unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str(), r.key.as_str()),
            ("team-a", "hello-gateway-policy", "policy.json")
        );
        for bad in ["hello", "/x", "x/", "a/b/c", "A/b", "a/b?watch=1", "a/b&c"] {
            let err = bad.parse::<ConfigMapRef>().unwrap_err();
            assert!(err.contains("<namespace>/<name>"), "{bad}: {err}");
        }
    }
}
