//! The operator's configuration, read once from environment variables (documented in
//! docs/operator.md). Every error names the variable and what a valid value looks like.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;

/// Default image of the gateway sidecar: the gateway built from the same release.
pub const DEFAULT_GATEWAY_IMAGE: &str = concat!(
    "ghcr.io/mcp-runtime/mcp-gateway:",
    env!("CARGO_PKG_VERSION")
);

/// How the IngressReady condition is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressReadiness {
    /// The Ingress exists with the expected route (clusters whose ingress controller never
    /// publishes an address, e.g. NodePort or host-network Traefik, kind, k3s).
    Exists,
    /// Additionally an ingress controller has published an address in `status.loadBalancer`.
    Address,
}

/// What the operator is told about the cluster's network (it cannot observe the CNI itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkPolicyEnforcement {
    /// The CNI enforces NetworkPolicy: the generated policy isolates server pods.
    Enforced,
    /// The CNI does not enforce NetworkPolicy: the generated policy is inert.
    NotEnforced,
    /// Nobody said (the default).
    Unknown,
}

/// Everything the operator reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// `MCP_CLUSTER_NAME`: recorded in every policy document (and so in audit events).
    pub cluster_name: Option<String>,
    /// `MCP_GATEWAY_IMAGE`: sidecar image when `spec.gateway.image` is empty or not allowed.
    pub gateway_image: String,
    /// `MCP_GATEWAY_TOKEN_KEYS_SECRET`: Secret (in the server's namespace, key `token.pub`)
    /// holding the public keys that verify session tokens, mounted into gateways of
    /// `auth.mode: token` servers.
    pub gateway_token_keys_secret: String,
    /// `MCP_OPERATOR_GATEWAY_IMAGE_ALLOWLIST`: comma-separated images an MCPServer may pick in
    /// `spec.gateway.image` (exact match; default none: every gateway runs `gateway_image`).
    pub gateway_image_allowlist: Vec<String>,
    /// `MCP_OPERATOR_ALLOW_HEADER_AUTH`: `true` lets `auth.mode: header` servers' gateways trust
    /// identity headers (default `false`: the gateway refuses their calls).
    pub allow_header_auth: bool,
    /// `MCP_OPERATOR_METRICS_NAMESPACES`: comma-separated namespaces whose pods may reach the
    /// gateways' admin port (metrics) through their NetworkPolicy; `*` for every namespace.
    /// Default none.
    pub metrics_namespaces: Vec<String>,
    /// `MCP_OPERATOR_NETWORK_POLICY_ENFORCED`: `true`, `false` or `unknown` (default).
    pub network_policy: NetworkPolicyEnforcement,
    /// `MCP_ANALYTICS_INGEST_URL`: default audit ingest endpoint for servers with analytics on.
    pub analytics_ingest_url: Option<String>,
    /// `MCP_INGRESS_CLASS`: IngressClass when `spec.ingressClass` is empty (default `traefik`).
    pub ingress_class: String,
    /// `MCP_DEFAULT_INGRESS_HOST`: Ingress host when `spec.ingressHost` is empty.
    pub default_ingress_host: Option<String>,
    /// `MCP_INGRESS_READINESS`: `exists` (default) or `address`.
    pub ingress_readiness: IngressReadiness,
    /// `MCP_PROVISIONED_REGISTRY`: registry host used for `spec.useProvisionedRegistry`.
    pub provisioned_registry: Option<String>,
    /// `MCP_OPERATOR_POD_TOLERATIONS`: JSON list of tolerations added to every server pod
    /// (test and special-purpose clusters, e.g. kwok nodes).
    pub pod_tolerations: Vec<Toleration>,
    /// `MCP_OPERATOR_POD_NODE_SELECTOR`: JSON object merged into every server pod's nodeSelector.
    pub pod_node_selector: BTreeMap<String, String>,
    /// `MCP_OPERATOR_LISTEN`: address of `/metrics`, `/healthz`, `/readyz` (default
    /// `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// `MCP_OPERATOR_LEADER_ELECTION`: `true` (default) or `false`.
    pub leader_election: bool,
    /// `MCP_OPERATOR_LEASE_NAME` (default `mcp-runtime-operator`).
    pub lease_name: String,
    /// `MCP_OPERATOR_LEASE_NAMESPACE` (default `$POD_NAMESPACE`, else `mcp-runtime`).
    pub lease_namespace: String,
    /// `MCP_OPERATOR_LEASE_SECONDS`: lease duration (default 15; renewed every third of it).
    pub lease_duration: Duration,
    /// `POD_NAME` (default: hostname and process id): this replica's identity in the lease and
    /// in Events.
    pub identity: String,
    /// `MCP_OPERATOR_RESYNC_SECONDS`: every object is reconciled at least this often (default
    /// 600) as a safety net for missed events.
    pub resync: Duration,
    /// `MCP_OPERATOR_CONCURRENCY`: reconciliations running at once per controller (default 32:
    /// a reconcile mostly waits on the API server, so more in flight shortens a mass rollout;
    /// see docs/benchmarks.md).
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub message: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (a test passes a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let fail = |var: &'static str, value: &str, message: &str| ConfigError {
            var,
            value: value.to_owned(),
            message: message.to_owned(),
        };
        let seconds =
            |var: &'static str, default: u64, min: u64| -> Result<Duration, ConfigError> {
                match get(var) {
                    None => Ok(Duration::from_secs(default)),
                    Some(v) => match v.parse::<u64>() {
                        Ok(n) if n >= min => Ok(Duration::from_secs(n)),
                        _ => Err(fail(
                            var,
                            &v,
                            &format!("expected a whole number of seconds, at least {min}"),
                        )),
                    },
                }
            };
        let ingress_readiness = match get("MCP_INGRESS_READINESS").as_deref() {
            None | Some("exists") => IngressReadiness::Exists,
            Some("address") => IngressReadiness::Address,
            Some(v) => {
                return Err(fail(
                    "MCP_INGRESS_READINESS",
                    v,
                    "expected `exists` or `address`",
                ));
            }
        };
        let pod_tolerations = match get("MCP_OPERATOR_POD_TOLERATIONS") {
            None => Vec::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| {
                fail(
                    "MCP_OPERATOR_POD_TOLERATIONS",
                    &v,
                    &format!(
                        "expected a JSON list of tolerations, e.g. \
                         [{{\"key\":\"kwok.x-k8s.io/node\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}}]: {e}"
                    ),
                )
            })?,
        };
        let pod_node_selector = match get("MCP_OPERATOR_POD_NODE_SELECTOR") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| {
                fail(
                    "MCP_OPERATOR_POD_NODE_SELECTOR",
                    &v,
                    &format!("expected a JSON object of labels, e.g. {{\"type\":\"kwok\"}}: {e}"),
                )
            })?,
        };
        let listen = match get("MCP_OPERATOR_LISTEN") {
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
            Some(v) => v
                .parse()
                .map_err(|_| fail("MCP_OPERATOR_LISTEN", &v, "expected ADDRESS:PORT"))?,
        };
        let flag = |var: &'static str, default: bool| match get(var).as_deref() {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(fail(var, v, "expected true or false")),
        };
        let list = |var: &str| -> Vec<String> {
            get(var)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let leader_election = flag("MCP_OPERATOR_LEADER_ELECTION", true)?;
        let network_policy = match get("MCP_OPERATOR_NETWORK_POLICY_ENFORCED").as_deref() {
            None | Some("unknown") => NetworkPolicyEnforcement::Unknown,
            Some("true") => NetworkPolicyEnforcement::Enforced,
            Some("false") => NetworkPolicyEnforcement::NotEnforced,
            Some(v) => {
                return Err(fail(
                    "MCP_OPERATOR_NETWORK_POLICY_ENFORCED",
                    v,
                    "expected true, false or unknown",
                ));
            }
        };
        let concurrency = match get("MCP_OPERATOR_CONCURRENCY") {
            None => 32,
            Some(v) => match v.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(fail(
                        "MCP_OPERATOR_CONCURRENCY",
                        &v,
                        "expected a number from 1 to 65535",
                    ));
                }
            },
        };
        let identity = get("POD_NAME").unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "operator".to_owned());
            format!("{host}-{}", std::process::id())
        });
        Ok(Self {
            cluster_name: get("MCP_CLUSTER_NAME"),
            gateway_image: get("MCP_GATEWAY_IMAGE")
                .unwrap_or_else(|| DEFAULT_GATEWAY_IMAGE.to_owned()),
            gateway_token_keys_secret: get("MCP_GATEWAY_TOKEN_KEYS_SECRET")
                .unwrap_or_else(|| "mcp-gateway-token-keys".to_owned()),
            gateway_image_allowlist: list("MCP_OPERATOR_GATEWAY_IMAGE_ALLOWLIST"),
            allow_header_auth: flag("MCP_OPERATOR_ALLOW_HEADER_AUTH", false)?,
            metrics_namespaces: list("MCP_OPERATOR_METRICS_NAMESPACES"),
            network_policy,
            analytics_ingest_url: get("MCP_ANALYTICS_INGEST_URL"),
            ingress_class: get("MCP_INGRESS_CLASS").unwrap_or_else(|| "traefik".to_owned()),
            default_ingress_host: get("MCP_DEFAULT_INGRESS_HOST"),
            ingress_readiness,
            provisioned_registry: get("MCP_PROVISIONED_REGISTRY"),
            pod_tolerations,
            pod_node_selector,
            listen,
            leader_election,
            lease_name: get("MCP_OPERATOR_LEASE_NAME")
                .unwrap_or_else(|| "mcp-runtime-operator".to_owned()),
            lease_namespace: get("MCP_OPERATOR_LEASE_NAMESPACE")
                .or_else(|| get("POD_NAMESPACE"))
                .unwrap_or_else(|| "mcp-runtime".to_owned()),
            lease_duration: seconds("MCP_OPERATOR_LEASE_SECONDS", 15, 3)?,
            identity,
            resync: seconds("MCP_OPERATOR_RESYNC_SECONDS", 600, 1)?,
            concurrency,
        })
    }

    /// Defaults only (no environment).
    pub fn defaults() -> Self {
        Self::from_lookup(|_| None).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = Config::defaults();
        assert_eq!(c.ingress_class, "traefik");
        assert_eq!(c.ingress_readiness, IngressReadiness::Exists);
        assert!(c.leader_election);
        assert_eq!(c.lease_namespace, "mcp-runtime");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert!(c.pod_tolerations.is_empty());
        assert!(!c.allow_header_auth && c.gateway_image_allowlist.is_empty());
        assert!(c.metrics_namespaces.is_empty());
        assert_eq!(c.network_policy, NetworkPolicyEnforcement::Unknown);
        assert!(
            c.gateway_image
                .starts_with("ghcr.io/mcp-runtime/mcp-gateway:")
        );
    }

    #[test]
    fn kwok_tolerations_and_node_selector_parse() {
        let c = with(&[
            (
                "MCP_OPERATOR_POD_TOLERATIONS",
                r#"[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]"#,
            ),
            ("MCP_OPERATOR_POD_NODE_SELECTOR", r#"{"type":"kwok"}"#),
            ("POD_NAMESPACE", "ops"),
        ])
        .unwrap();
        assert_eq!(
            c.pod_tolerations[0].key.as_deref(),
            Some("kwok.x-k8s.io/node")
        );
        assert_eq!(c.pod_node_selector["type"], "kwok");
        assert_eq!(c.lease_namespace, "ops");
    }

    #[test]
    fn security_lists_and_switches_parse() {
        let c = with(&[
            (
                "MCP_OPERATOR_GATEWAY_IMAGE_ALLOWLIST",
                " reg.io/gw:1 , reg.io/gw:2,,",
            ),
            ("MCP_OPERATOR_ALLOW_HEADER_AUTH", "true"),
            ("MCP_OPERATOR_METRICS_NAMESPACES", "monitoring"),
            ("MCP_OPERATOR_NETWORK_POLICY_ENFORCED", "false"),
        ])
        .unwrap();
        assert_eq!(c.gateway_image_allowlist, ["reg.io/gw:1", "reg.io/gw:2"]);
        assert!(c.allow_header_auth);
        assert_eq!(c.metrics_namespaces, ["monitoring"]);
        assert_eq!(c.network_policy, NetworkPolicyEnforcement::NotEnforced);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = with(&[("MCP_OPERATOR_POD_TOLERATIONS", "{not json")]).unwrap_err();
        assert!(
            e.to_string().starts_with("MCP_OPERATOR_POD_TOLERATIONS="),
            "{e}"
        );
        let e = with(&[("MCP_INGRESS_READINESS", "strict")]).unwrap_err();
        assert!(
            e.to_string().contains("expected `exists` or `address`"),
            "{e}"
        );
        let e = with(&[("MCP_OPERATOR_ALLOW_HEADER_AUTH", "yes")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("MCP_OPERATOR_ALLOW_HEADER_AUTH=\"yes\": expected true or false"),
            "{e}"
        );
        let e = with(&[("MCP_OPERATOR_NETWORK_POLICY_ENFORCED", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("true, false or unknown"), "{e}");
        let e = with(&[("MCP_OPERATOR_LEASE_SECONDS", "1")]).unwrap_err();
        assert!(e.to_string().contains("at least 3"), "{e}");
    }
}
