//! The objects an MCPServer asks for, built as pure functions of the server, the operator's
//! configuration and the rendered policy (no IO, unit-tested here, applied by the controller
//! with server-side apply).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServiceAccountTokenProjection,
    ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use mcp_runtime_api::server::{GatewaySpec, ResourceSpec, RolloutStrategy};
use mcp_runtime_api::{MANAGER, MCPServer, MCPServerSpec};
use mcp_runtime_policy::{AuthMode, PolicyDocument};

use crate::config::{Config, NetworkPolicyEnforcement};
use crate::status::Notice;

/// Label naming the server an object belongs to.
pub const SERVER_LABEL: &str = "mcpruntime.org/server";
/// Label telling stable and canary pods apart.
pub const TRACK_LABEL: &str = "mcpruntime.org/rollout-track";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation on the policy ConfigMap: the revision of the document inside.
pub const POLICY_REVISION_ANNOTATION: &str = "mcpruntime.org/policy-revision";
/// Key of the policy document in its ConfigMap.
pub const POLICY_KEY: &str = "policy.json";
/// Label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Condition: whether the operator's NetworkPolicy keeps other pods away from the server.
pub const NETWORK_ISOLATION: &str = "NetworkIsolation";
/// Condition: whether `spec.gateway.image` was honoured.
pub const GATEWAY_IMAGE_ALLOWED: &str = "GatewayImageAllowed";
/// Condition: whether a header-mode gateway trusts identity headers.
pub const IDENTITY_HEADERS_TRUSTED: &str = "IdentityHeadersTrusted";
/// Port of the gateway's admin listener (/healthz, /ready, /metrics).
pub const GATEWAY_ADMIN_PORT: i32 = 9103;
/// Where the gateway container (and only it) finds its API credential: the path in-cluster
/// clients read by default, so the gateway needs no configuration for it.
pub const KUBE_API_CREDENTIAL_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime asked for the gateway's projected ServiceAccount token; the kubelet renews it at
/// 80 % of that, and the gateway re-reads the file on every reconnect.
pub const GATEWAY_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
pub const TOKEN_DIR: &str = "/var/run/mcp-runtime/token";
/// Key of the token-keys Secret (and file name in [`TOKEN_DIR`]): the session-token issuer's
/// public keys in PEM, as `mcp-runtime token keygen` writes them.
pub const TOKEN_PUBLIC_KEYS: &str = "token.pub";
pub const ANALYTICS_DIR: &str = "/var/run/mcp-runtime/analytics";

/// Name of the ConfigMap holding a server's policy document.
pub fn policy_config_map_name(server: &str) -> String {
    format!("{server}-gateway-policy")
}

/// Name of the Role (and its RoleBinding) letting a server's ServiceAccount read its policy
/// ConfigMap through the API.
pub fn policy_reader_name(server: &str) -> String {
    format!("{server}-gateway-policy-reader")
}

/// Name of a server's canary Deployment.
pub fn canary_name(server: &str) -> String {
    format!("{server}-canary")
}

/// A problem with the spec that only the operator can see (it depends on its configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecProblem {
    pub path: &'static str,
    pub message: String,
}

/// Everything an MCPServer owns, as it should be.
#[derive(Clone, Debug)]
pub struct Desired {
    pub service_account: ServiceAccount,
    pub deployment: Deployment,
    /// The canary Deployment for `rollout.strategy: Canary`; otherwise it must not exist.
    pub canary: Option<Deployment>,
    pub service: Service,
    pub ingress: Ingress,
    /// The gateway's policy; `None` when the gateway is off (the ConfigMap must not exist) or
    /// the policy could not be rendered (the ConfigMap is left as it is).
    pub policy: Option<ConfigMap>,
    /// Lets the server's ServiceAccount get, list and watch exactly its policy ConfigMap (the
    /// gateway reads it through the API); `None` when the gateway is off (must not exist).
    pub policy_reader: Option<(Role, RoleBinding)>,
    /// Admits ingress only to the gateway (and its admin port from configured namespaces);
    /// `None` when the gateway is off (must not exist).
    pub network_policy: Option<NetworkPolicy>,
}

fn labels(server: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name".to_owned(), server.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        (SERVER_LABEL.to_owned(), server.to_owned()),
    ]
    .into()
}

fn owner(server: &MCPServer) -> OwnerReference {
    server
        .controller_owner_ref(&())
        .expect("an MCPServer read from the API has a name and uid")
}

fn meta(server: &MCPServer, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: server.namespace(),
        labels: Some(labels(&server.name_any())),
        owner_references: Some(vec![owner(server)]),
        ..Default::default()
    }
}

/// `image[:tag]` with the registry replaced by `registry` when given.
pub fn resolve_image(image: &str, tag: Option<&str>, registry: Option<&str>) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let mut image = image.to_owned();
    if let Some(tag) = tag.filter(|t| !t.is_empty())
        && !last.contains(':')
        && !image.contains('@')
    {
        image = format!("{image}:{tag}");
    }
    match registry
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty())
    {
        None => image,
        Some(registry) => {
            let rest = match image.split_once('/') {
                Some((first, rest))
                    if first.contains('.') || first.contains(':') || first == "localhost" =>
                {
                    rest.to_owned()
                }
                _ => image,
            };
            format!("{registry}/{rest}")
        }
    }
}

fn resources(
    spec: Option<&ResourceSpec>,
    default_cpu: &str,
    default_memory: &str,
) -> ResourceRequirements {
    let amounts = |a: Option<&mcp_runtime_api::server::ResourceAmounts>| {
        let mut m = BTreeMap::new();
        if let Some(a) = a {
            if let Some(cpu) = a.cpu.as_ref().filter(|v| !v.is_empty()) {
                m.insert("cpu".to_owned(), Quantity(cpu.clone()));
            }
            if let Some(mem) = a.memory.as_ref().filter(|v| !v.is_empty()) {
                m.insert("memory".to_owned(), Quantity(mem.clone()));
            }
        }
        m
    };
    let limits = amounts(spec.and_then(|s| s.limits.as_ref()));
    let mut requests = amounts(spec.and_then(|s| s.requests.as_ref()));
    // Requests make scheduling honest; limits are the user's call.
    for (k, v) in [("cpu", default_cpu), ("memory", default_memory)] {
        if !requests.contains_key(k) && !limits.contains_key(k) {
            requests.insert(k.to_owned(), Quantity(v.to_owned()));
        }
    }
    ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..Default::default()
    }
}

fn int_or_percent(v: &str) -> IntOrString {
    match v.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(v.to_owned()),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp_probe(port: &str, initial: i32, period: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: &str, initial: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// Checks what depends on the operator's configuration; the rest of the spec was validated by
/// `mcp_runtime_api::validate::server`.
pub fn check(server: &MCPServer, config: &Config) -> Vec<SpecProblem> {
    let spec = &server.spec;
    let mut problems = Vec::new();
    if spec.use_provisioned_registry
        && spec.registry_override.as_deref().is_none_or(str::is_empty)
        && config.provisioned_registry.is_none()
    {
        problems.push(SpecProblem {
            path: "spec.useProvisionedRegistry",
            message: "no provisioned registry is configured on the operator (MCP_PROVISIONED_REGISTRY); set spec.registryOverride or drop useProvisionedRegistry".into(),
        });
    }
    if let Some(g) = spec.gateway.as_ref().filter(|g| g.enabled) {
        for (path, port) in [("spec.port", spec.port), ("spec.gateway.port", g.port)] {
            if port == GATEWAY_ADMIN_PORT {
                problems.push(SpecProblem {
                    path,
                    message: format!(
                        "port {GATEWAY_ADMIN_PORT} is taken by the gateway's admin listener (/ready, /metrics) in the same pod"
                    ),
                });
            }
        }
    }
    problems
}

/// The objects `server` should own. `policy` is the sealed document when the gateway is on.
pub fn desired(server: &MCPServer, config: &Config, policy: Option<&PolicyDocument>) -> Desired {
    let name = server.name_any();
    let spec = &server.spec;
    let gateway = spec.gateway.as_ref().filter(|g| g.enabled);

    let service_account = ServiceAccount {
        metadata: meta(server, name.clone()),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let mut containers = vec![server_container(spec, config, gateway.is_none())];
    let mut volumes = Vec::new();
    if let Some(g) = gateway {
        let (sidecar, sidecar_volumes) = gateway_sidecar(server, g, config);
        containers.push(sidecar);
        volumes.extend(sidecar_volumes);
    }
    let (deployment, canary) = deployments(server, config, containers, volumes);
    let policy = match (gateway, policy) {
        (Some(_), Some(doc)) => {
            let mut metadata = meta(server, policy_config_map_name(&name));
            metadata.annotations =
                Some([(POLICY_REVISION_ANNOTATION.to_owned(), doc.revision.clone())].into());
            Some(ConfigMap {
                metadata,
                data: Some([(POLICY_KEY.to_owned(), doc.to_json_pretty())].into()),
                ..Default::default()
            })
        }
        _ => None,
    };
    Desired {
        service_account,
        deployment,
        canary,
        service: service(server, gateway.is_some()),
        ingress: ingress(server, config, gateway.is_some()),
        policy,
        policy_reader: gateway.map(|_| policy_reader(server)),
        network_policy: gateway.map(|g| network_policy(server, g, config)),
    }
}

/// The image the gateway sidecar runs: `spec.gateway.image` only when the operator's allow-list
/// holds it (an MCPServer author must not pick the binary that enforces their own policy).
pub fn gateway_image<'a>(g: &'a GatewaySpec, config: &'a Config) -> &'a str {
    match g.image.as_deref().filter(|i| !i.is_empty()) {
        Some(image) if config.gateway_image_allowlist.iter().any(|a| a == image) => image,
        _ => &config.gateway_image,
    }
}

/// Whether the gateway trusts identity headers: the server asks for `auth.mode: header` and
/// the operator allows it (`MCP_OPERATOR_ALLOW_HEADER_AUTH`).
pub fn trusts_identity_headers(server: &MCPServer, config: &Config) -> bool {
    config.allow_header_auth && auth_mode(server) == AuthMode::Header
}

fn auth_mode(server: &MCPServer) -> AuthMode {
    server
        .spec
        .auth
        .as_ref()
        .map(|a| a.mode)
        .unwrap_or_default()
}

/// How the operator's configuration shaped a server's objects, for its status: the gateway
/// image (when the spec names one), header auth (in header mode) and network isolation.
pub fn notices(server: &MCPServer, config: &Config) -> Vec<Notice> {
    let spec = &server.spec;
    let Some(g) = spec.gateway.as_ref().filter(|g| g.enabled) else {
        return vec![Notice::new(
            NETWORK_ISOLATION,
            Some(false),
            "GatewayDisabled",
            "no NetworkPolicy: spec.gateway.enabled is false, so the server's port is reachable directly",
        )];
    };
    let mut notices = Vec::new();
    if let Some(image) = g.image.as_deref().filter(|i| !i.is_empty()) {
        let used = gateway_image(g, config);
        notices.push(if used == image {
            Notice::new(
                GATEWAY_IMAGE_ALLOWED,
                Some(true),
                "ImageAllowed",
                format!("spec.gateway.image {image} is in the operator's gateway image allow-list"),
            )
        } else {
            Notice::new(
                GATEWAY_IMAGE_ALLOWED,
                Some(false),
                "ImageNotAllowed",
                format!(
                    "spec.gateway.image {image} is not in the operator's allow-list (MCP_OPERATOR_GATEWAY_IMAGE_ALLOWLIST); the gateway runs the operator's image {used}"
                ),
            )
        });
    }
    if auth_mode(server) == AuthMode::Header {
        notices.push(if trusts_identity_headers(server, config) {
            Notice::new(
                IDENTITY_HEADERS_TRUSTED,
                Some(true),
                "HeaderAuthAllowed",
                "auth.mode is header and the operator allows it: the gateway trusts identity headers (only safe behind an authenticating proxy)",
            )
        } else {
            Notice::new(
                IDENTITY_HEADERS_TRUSTED,
                Some(false),
                "HeaderAuthNotAllowed",
                "auth.mode is header but the operator does not allow header auth (MCP_OPERATOR_ALLOW_HEADER_AUTH is not true): the gateway does not trust identity headers and refuses every call; use auth.mode token or oauth",
            )
        });
    }
    let admitted = format!(
        "NetworkPolicy {} admits ingress to the gateway port {} and to the admin port {GATEWAY_ADMIN_PORT} from {}",
        server.name_any(),
        g.port,
        match config.metrics_namespaces.as_slice() {
            [] => "no namespace".to_owned(),
            list if list.iter().any(|n| n == "*") => "every namespace".to_owned(),
            list => format!("namespaces {}", list.join(", ")),
        }
    );
    notices.push(match config.network_policy {
        NetworkPolicyEnforcement::Enforced => Notice::new(
            NETWORK_ISOLATION,
            Some(true),
            "NetworkPolicyEnforced",
            format!(
                "{admitted}; the operator is configured to assume the CNI enforces it (MCP_OPERATOR_NETWORK_POLICY_ENFORCED=true), which it cannot observe itself"
            ),
        ),
        NetworkPolicyEnforcement::NotEnforced => Notice::new(
            NETWORK_ISOLATION,
            Some(false),
            "NetworkPolicyNotEnforced",
            format!(
                "{admitted}, but the operator is configured to say the CNI does not enforce NetworkPolicy (MCP_OPERATOR_NETWORK_POLICY_ENFORCED=false): other pods can reach the server's port directly, around the gateway"
            ),
        ),
        NetworkPolicyEnforcement::Unknown => Notice::new(
            NETWORK_ISOLATION,
            None,
            "EnforcementUnknown",
            format!(
                "{admitted}; whether the CNI enforces it is unknown to the operator (set MCP_OPERATOR_NETWORK_POLICY_ENFORCED): without enforcement other pods can reach the server's port directly"
            ),
        ),
    });
    notices
}

/// The MCP server's container. Behind a gateway it declares no port and has no probes: the
/// kubelet would reach it on the pod IP, which only the gateway should; the gateway's `/ready`
/// checks the upstream instead.
fn server_container(spec: &MCPServerSpec, config: &Config, exposed: bool) -> Container {
    let registry = spec
        .registry_override
        .as_deref()
        .filter(|r| !r.is_empty())
        .or(if spec.use_provisioned_registry {
            config.provisioned_registry.as_deref()
        } else {
            None
        });
    let mut server_env: Vec<EnvVar> = spec
        .env_vars
        .iter()
        .map(|e| env(&e.name, e.value.clone()))
        .collect();
    server_env.extend(spec.secret_env_vars.iter().map(|e| EnvVar {
        name: e.name.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: e.secret_key_ref.name.clone(),
                key: e.secret_key_ref.key.clone(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    Container {
        name: "server".to_owned(),
        image: Some(resolve_image(
            &spec.image,
            spec.image_tag.as_deref(),
            registry,
        )),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: exposed.then(|| {
            vec![ContainerPort {
                name: Some("http".to_owned()),
                container_port: spec.port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]
        }),
        env: (!server_env.is_empty()).then_some(server_env),
        resources: Some(resources(spec.resources.as_ref(), "50m", "64Mi")),
        security_context: Some(container_security()),
        readiness_probe: exposed.then(|| tcp_probe("http", 3, 5)),
        liveness_probe: exposed.then(|| tcp_probe("http", 5, 10)),
        ..Default::default()
    }
}

/// The gateway container and the volumes only it mounts.
fn gateway_sidecar(
    server: &MCPServer,
    g: &GatewaySpec,
    config: &Config,
) -> (Container, Vec<Volume>) {
    let spec = &server.spec;
    let name = server.name_any();
    let mut gw_env = vec![
        env("MCP_GATEWAY_LISTEN", format!("0.0.0.0:{}", g.port)),
        env(
            "MCP_GATEWAY_ADMIN_LISTEN",
            format!("0.0.0.0:{GATEWAY_ADMIN_PORT}"),
        ),
        env(
            "UPSTREAM_URL",
            g.upstream_url
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| format!("http://127.0.0.1:{}", spec.port)),
        ),
        // Read and watched through the API (the Role below), so a revocation reaches the
        // gateway in well under a second; a mounted ConfigMap is refreshed only when the
        // kubelet syncs the pod (about a minute).
        env(
            "MCP_GATEWAY_POLICY_CONFIGMAP",
            format!(
                "{}/{}",
                server.namespace().unwrap_or_default(),
                policy_config_map_name(&name)
            ),
        ),
        env("MCP_GATEWAY_AUDIT_SPOOL_DIR", "/tmp/mcp-gateway-spool"),
    ];
    if let Some(prefix) = g.strip_prefix.as_ref().filter(|p| !p.is_empty()) {
        gw_env.push(env("STRIP_PREFIX", prefix.clone()));
    }
    let (api_mount, api_volume) = kube_api_credential("gateway-kube-api");
    let mut mounts = vec![
        api_mount,
        VolumeMount {
            name: "gateway-tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..Default::default()
        },
    ];
    let mut volumes = vec![
        api_volume,
        Volume {
            name: "gateway-tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    match auth_mode(server) {
        AuthMode::Token => {
            // Public keys only: the gateway verifies tokens, it cannot mint them. Mounted
            // without subPath, so the kubelet's updates (key rotation) reach the gateway.
            gw_env.push(env(
                "MCP_GATEWAY_TOKEN_PUBLIC_KEYS_FILE",
                format!("{TOKEN_DIR}/{TOKEN_PUBLIC_KEYS}"),
            ));
            let (mount, volume) = secret_file(
                "gateway-token-keys",
                TOKEN_DIR,
                &config.gateway_token_keys_secret,
                TOKEN_PUBLIC_KEYS,
                TOKEN_PUBLIC_KEYS,
            );
            mounts.push(mount);
            volumes.push(volume);
        }
        // Only when the operator allows header auth (see `notices` for the refusal).
        AuthMode::Header => {
            if trusts_identity_headers(server, config) {
                gw_env.push(env("MCP_GATEWAY_TRUST_IDENTITY_HEADERS", "true"));
            }
        }
        // The public URL clients reach (RFC 9728 `resource`, and the audience when
        // spec.auth.audience is unset); without an ingress host the gateway derives it from
        // each request.
        AuthMode::Oauth => {
            if let Some(host) = ingress_host(spec, config) {
                gw_env.push(env(
                    "MCP_GATEWAY_OAUTH_RESOURCE",
                    format!("https://{host}{}", server.route_path()),
                ));
            }
        }
        AuthMode::None | AuthMode::Mtls => {}
    }
    if let Some(a) = spec.analytics.as_ref().filter(|a| !a.disabled) {
        let url = a
            .ingest_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| config.analytics_ingest_url.clone());
        if let Some(url) = url {
            gw_env.push(env("ANALYTICS_INGEST_URL", url));
            if let Some(source) = a.source.as_ref().filter(|s| !s.is_empty()) {
                gw_env.push(env("ANALYTICS_SOURCE", source.clone()));
            }
            if let Some(key) = &a.api_key_secret_ref {
                gw_env.push(env(
                    "MCP_GATEWAY_AUDIT_API_KEY_FILE",
                    format!("{ANALYTICS_DIR}/api-key"),
                ));
                let (mount, volume) = secret_file(
                    "analytics-api-key",
                    ANALYTICS_DIR,
                    &key.name,
                    &key.key,
                    "api-key",
                );
                mounts.push(mount);
                volumes.push(volume);
            }
        }
    }
    let container = Container {
        name: "mcp-gateway".to_owned(),
        image: Some(gateway_image(g, config).to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: Some(vec![
            ContainerPort {
                name: Some("gateway".to_owned()),
                container_port: g.port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: GATEWAY_ADMIN_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
        ]),
        env: Some(gw_env),
        resources: Some(resources(g.resources.as_ref(), "10m", "32Mi")),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..container_security()
        }),
        // `/ready` also connects to the upstream, so it stands for the server container too.
        readiness_probe: Some(http_probe("/ready", "metrics", 1, 5)),
        liveness_probe: Some(http_probe("/healthz", "metrics", 5, 10)),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    (container, volumes)
}

/// The stable Deployment and, under `rollout.strategy: Canary`, the canary one.
fn deployments(
    server: &MCPServer,
    config: &Config,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
) -> (Deployment, Option<Deployment>) {
    let name = server.name_any();
    let spec = &server.spec;
    let pod_spec = PodSpec {
        service_account_name: Some(name.clone()),
        // No container gets an API credential by default; the gateway gets its own volume.
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| {
            spec.image_pull_secrets
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| k8s_openapi::api::core::v1::LocalObjectReference { name: s.clone() })
                .collect()
        }),
        tolerations: (!config.pod_tolerations.is_empty()).then(|| config.pod_tolerations.clone()),
        node_selector: (!config.pod_node_selector.is_empty())
            .then(|| config.pod_node_selector.clone()),
        containers,
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    };

    let rollout = spec.rollout.clone().unwrap_or_default();
    let strategy = match rollout.strategy {
        RolloutStrategy::Recreate => DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        },
        RolloutStrategy::RollingUpdate | RolloutStrategy::Canary => DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: rollout.max_unavailable.as_deref().map(int_or_percent),
                max_surge: rollout.max_surge.as_deref().map(int_or_percent),
            }),
        },
    };
    let canary_replicas = match rollout.strategy {
        RolloutStrategy::Canary => rollout.canary_replicas.unwrap_or(0).clamp(0, spec.replicas),
        _ => 0,
    };
    let deployment = |track: &str, replicas: i32, name: String| {
        let mut selector = BTreeMap::new();
        selector.insert(SERVER_LABEL.to_owned(), server.name_any());
        selector.insert(TRACK_LABEL.to_owned(), track.to_owned());
        let mut pod_labels = labels(&server.name_any());
        pod_labels.insert(TRACK_LABEL.to_owned(), track.to_owned());
        let mut metadata = meta(server, name);
        metadata
            .labels
            .get_or_insert_default()
            .insert(TRACK_LABEL.to_owned(), track.to_owned());
        Deployment {
            metadata,
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..Default::default()
                },
                strategy: Some(strategy.clone()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec.clone()),
                },
                ..Default::default()
            }),
            status: None,
        }
    };
    let stable = deployment("stable", spec.replicas - canary_replicas, name.clone());
    let canary =
        (canary_replicas > 0).then(|| deployment("canary", canary_replicas, canary_name(&name)));
    (stable, canary)
}

/// The Service: port `http` to the gateway (or the server without one), plus the admin port.
fn service(server: &MCPServer, gateway: bool) -> Service {
    let name = server.name_any();
    let mut ports = vec![ServicePort {
        name: Some("http".to_owned()),
        port: server.spec.service_port,
        target_port: Some(IntOrString::String(
            if gateway { "gateway" } else { "http" }.to_owned(),
        )),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }];
    if gateway {
        ports.push(ServicePort {
            name: Some("metrics".to_owned()),
            port: GATEWAY_ADMIN_PORT,
            target_port: Some(IntOrString::String("metrics".to_owned())),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        });
    }
    Service {
        metadata: meta(server, name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some([(SERVER_LABEL.to_owned(), name)].into()),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

/// The public route (and, for OAuth, its protected-resource metadata).
fn ingress(server: &MCPServer, config: &Config, gateway: bool) -> Ingress {
    let spec = &server.spec;
    let name = server.name_any();
    let route = server.route_path();
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(spec.service_port),
                name: None,
            }),
        }),
        resource: None,
    };
    let mut paths = vec![HTTPIngressPath {
        path: Some(route.clone()),
        path_type: "Prefix".to_owned(),
        backend: backend.clone(),
    }];
    if gateway && auth_mode(server) == AuthMode::Oauth {
        // RFC 9728 protected-resource metadata, served by the gateway for this route.
        paths.push(HTTPIngressPath {
            path: Some(format!("/.well-known/oauth-protected-resource{route}")),
            path_type: "Prefix".to_owned(),
            backend,
        });
    }
    let mut ingress_meta = meta(server, name);
    if !spec.ingress_annotations.is_empty() {
        ingress_meta.annotations = Some(spec.ingress_annotations.clone());
    }
    Ingress {
        metadata: ingress_meta,
        spec: Some(IngressSpec {
            ingress_class_name: Some(
                spec.ingress_class
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| config.ingress_class.clone()),
            ),
            rules: Some(vec![IngressRule {
                host: ingress_host(spec, config),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Admits ingress to the server's pods (both tracks) only on the gateway port, and on the
/// admin port from the namespaces the operator is configured with. Egress is left alone: the
/// server may call what it needs, and the gateway needs the API server and the audit sink.
fn network_policy(server: &MCPServer, g: &GatewaySpec, config: &Config) -> NetworkPolicy {
    let name = server.name_any();
    let port = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    let mut rules = vec![NetworkPolicyIngressRule {
        from: None,
        ports: Some(vec![port(g.port)]),
    }];
    let namespaces = &config.metrics_namespaces;
    if !namespaces.is_empty() {
        let selector = if namespaces.iter().any(|n| n == "*") {
            LabelSelector::default()
        } else {
            LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: NAMESPACE_NAME_LABEL.to_owned(),
                    operator: "In".to_owned(),
                    values: Some(namespaces.clone()),
                }]),
                ..Default::default()
            }
        };
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(selector),
                ..Default::default()
            }]),
            ports: Some(vec![port(GATEWAY_ADMIN_PORT)]),
        });
    }
    NetworkPolicy {
        metadata: meta(server, name.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some([(SERVER_LABEL.to_owned(), name)].into()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(rules),
            egress: None,
        }),
    }
}

/// The host the server's Ingress answers on, if any.
fn ingress_host(spec: &mcp_runtime_api::MCPServerSpec, config: &Config) -> Option<String> {
    spec.ingress_host
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| config.default_ingress_host.clone())
}

/// The Role and RoleBinding that let the server's ServiceAccount read its policy ConfigMap
/// (and nothing else): get, and list/watch with a `metadata.name` field selector, which is
/// what RBAC allows on `resourceNames`.
fn policy_reader(server: &MCPServer) -> (Role, RoleBinding) {
    let name = server.name_any();
    let reader = policy_reader_name(&name);
    let role = Role {
        metadata: meta(server, reader.clone()),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            resource_names: Some(vec![policy_config_map_name(&name)]),
            verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(server, reader.clone()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: reader,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name,
            namespace: server.namespace(),
            ..Default::default()
        }]),
    };
    (role, binding)
}

/// A projected volume with a ServiceAccount token and the cluster CA, mounted read-only where
/// in-cluster clients look for them. Pods run with `automountServiceAccountToken: false`, so
/// only the container this is mounted into can reach the API (the server container cannot).
fn kube_api_credential(volume: &str) -> (VolumeMount, Volume) {
    let mount = VolumeMount {
        name: volume.to_owned(),
        mount_path: KUBE_API_CREDENTIAL_DIR.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    let volume = Volume {
        name: volume.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(GATEWAY_TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    (mount, volume)
}

/// Mounts one key of a Secret read-only as `dir/file`: how secrets reach the gateway without
/// passing through its environment.
fn secret_file(
    volume: &str,
    dir: &str,
    secret: &str,
    key: &str,
    file: &str,
) -> (VolumeMount, Volume) {
    let mount = VolumeMount {
        name: volume.to_owned(),
        mount_path: dir.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    let volume = Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: file.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    (mount, volume)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use mcp_runtime_api::MCPServerSpec;
    use mcp_runtime_api::server::{GatewaySpec, RolloutSpec};
    use mcp_runtime_policy::ServerRef;

    fn server(spec: MCPServerSpec) -> MCPServer {
        let mut s = MCPServer::new("hello", spec);
        s.metadata.namespace = Some("demo".into());
        s.metadata.uid = Some("uid-1".into());
        s
    }

    fn doc() -> PolicyDocument {
        PolicyDocument::new(ServerRef {
            name: "hello".into(),
            namespace: "demo".into(),
            team_id: None,
            cluster: None,
        })
        .seal()
        .unwrap()
    }

    #[test]
    fn images_get_their_tag_and_registry() {
        assert_eq!(
            resolve_image("ghcr.io/a/b", Some("1"), None),
            "ghcr.io/a/b:1"
        );
        assert_eq!(
            resolve_image("ghcr.io/a/b:2", Some("1"), None),
            "ghcr.io/a/b:2"
        );
        assert_eq!(
            resolve_image("a/b@sha256:00", Some("1"), None),
            "a/b@sha256:00"
        );
        assert_eq!(
            resolve_image("localhost:5000/b:1", None, Some("reg.io")),
            "reg.io/b:1"
        );
        assert_eq!(
            resolve_image("ghcr.io/a/b", None, Some("reg.io/")),
            "reg.io/a/b"
        );
        assert_eq!(
            resolve_image("acme/b", None, Some("reg.io")),
            "reg.io/acme/b"
        );
        assert_eq!(resolve_image("b", Some("3"), Some("reg.io")), "reg.io/b:3");
    }

    #[test]
    fn plain_server_has_no_gateway_and_routes_to_its_port() {
        let s = server(MCPServerSpec::with_image("ghcr.io/acme/hello:1"));
        let d = desired(&s, &Config::defaults(), None);
        let pod = pod(&d);
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.service_account_name.as_deref(), Some("hello"));
        let svc = d.service.spec.unwrap();
        assert_eq!(svc.ports.as_ref().unwrap().len(), 1);
        assert_eq!(
            svc.ports.unwrap()[0].target_port,
            Some(IntOrString::String("http".into()))
        );
        assert!(d.policy.is_none() && d.canary.is_none() && d.policy_reader.is_none());
        let ing = d.ingress.spec.unwrap();
        assert_eq!(ing.ingress_class_name.as_deref(), Some("traefik"));
        let rules = ing.rules.unwrap();
        let path = &rules[0].http.as_ref().unwrap().paths[0];
        assert_eq!(path.path.as_deref(), Some("/hello/mcp"));
        let owner = &d.deployment.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("MCPServer", Some(true))
        );
        assert_eq!(
            d.deployment.metadata.labels.unwrap()[MANAGED_BY_LABEL],
            "mcp-runtime"
        );
    }

    fn pod(d: &Desired) -> PodSpec {
        d.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap()
    }

    fn gateway_container(pod: &PodSpec) -> &Container {
        pod.containers
            .iter()
            .find(|c| c.name == "mcp-gateway")
            .unwrap()
    }

    /// The gateway container's plain env values by name.
    fn gateway_env(pod: &PodSpec) -> BTreeMap<String, String> {
        gateway_container(pod)
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn oauth_gateways_learn_their_public_url_from_the_ingress_host() {
        use mcp_runtime_api::server::AuthSpec;
        let mut spec = MCPServerSpec::with_image("ghcr.io/acme/hello:1");
        spec.gateway = Some(GatewaySpec::enabled());
        spec.auth = Some(AuthSpec {
            mode: AuthMode::Oauth,
            issuer_url: Some("https://idp.example.com".into()),
            ..Default::default()
        });
        let without_host = desired(&server(spec.clone()), &Config::defaults(), Some(&doc()));
        let env = gateway_env(&pod(&without_host));
        assert!(!env.contains_key("MCP_GATEWAY_OAUTH_RESOURCE"));
        assert!(!env.contains_key("MCP_GATEWAY_TOKEN_PUBLIC_KEYS_FILE"));
        spec.ingress_host = Some("mcp.example.com".into());
        let d = desired(&server(spec), &Config::defaults(), Some(&doc()));
        assert_eq!(
            gateway_env(&pod(&d))["MCP_GATEWAY_OAUTH_RESOURCE"],
            "https://mcp.example.com/hello/mcp"
        );
        let paths = d.ingress.spec.unwrap().rules.unwrap()[0]
            .http
            .clone()
            .unwrap()
            .paths;
        assert!(
            paths
                .iter()
                .any(|p| p.path.as_deref()
                    == Some("/.well-known/oauth-protected-resource/hello/mcp")),
            "{paths:?}"
        );
    }

    #[test]
    fn gateway_sidecar_is_wired_to_the_policy_and_the_service_targets_it() {
        let mut spec = MCPServerSpec::with_image("ghcr.io/acme/hello:1");
        spec.gateway = Some(GatewaySpec::enabled());
        let s = server(spec);
        let d = desired(&s, &Config::defaults(), Some(&doc()));
        let pod = pod(&d);
        let gw = gateway_container(&pod);
        let env = gateway_env(&pod);
        assert_eq!(
            env["MCP_GATEWAY_POLICY_CONFIGMAP"],
            "demo/hello-gateway-policy"
        );
        assert!(!env.contains_key("POLICY_FILE"));
        assert_eq!(env["UPSTREAM_URL"], "http://127.0.0.1:8088");
        assert_eq!(env["MCP_GATEWAY_LISTEN"], "0.0.0.0:8091");
        assert_eq!(
            env["MCP_GATEWAY_TOKEN_PUBLIC_KEYS_FILE"],
            "/var/run/mcp-runtime/token/token.pub"
        );

        // Only the gateway gets an API credential: a projected token + CA where in-cluster
        // clients look for them; nothing is automounted.
        assert_eq!(pod.automount_service_account_token, Some(false));
        let vols = pod.volumes.clone().unwrap();
        assert!(vols.iter().all(|v| v.config_map.is_none()));
        let api_vol = vols.iter().find(|v| v.name == "gateway-kube-api").unwrap();
        let sources = api_vol.projected.as_ref().unwrap().sources.clone().unwrap();
        let token = sources[0].service_account_token.as_ref().unwrap();
        assert_eq!(
            (token.path.as_str(), token.expiration_seconds),
            ("token", Some(3600))
        );
        let ca = sources[1].config_map.as_ref().unwrap();
        assert_eq!(ca.name, "kube-root-ca.crt");
        let item = &ca.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("ca.crt", "ca.crt")
        );
        let gw_mount = gw
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "gateway-kube-api")
            .unwrap();
        assert_eq!(
            (gw_mount.mount_path.as_str(), gw_mount.read_only),
            ("/var/run/secrets/kubernetes.io/serviceaccount", Some(true))
        );
        let srv = pod.containers.iter().find(|c| c.name == "server").unwrap();
        assert!(srv.volume_mounts.is_none() && srv.env.is_none());

        // The Role lets the server's ServiceAccount read exactly its policy ConfigMap.
        let (role, binding) = d.policy_reader.unwrap();
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("hello-gateway-policy-reader")
        );
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
        assert_eq!(rules[0].resources, Some(vec!["configmaps".to_owned()]));
        assert_eq!(
            rules[0].resource_names,
            Some(vec!["hello-gateway-policy".to_owned()])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "hello-gateway-policy-reader");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "hello", Some("demo"))
        );
        assert_eq!(
            binding.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );

        let cm = d.policy.unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("hello-gateway-policy"));
        assert!(cm.data.unwrap()[POLICY_KEY].contains("\"revision\": \"sha256:"));
        let svc = d.service.spec.unwrap();
        assert_eq!(
            svc.ports.unwrap()[0].target_port,
            Some(IntOrString::String("gateway".into()))
        );
    }

    #[test]
    fn canary_splits_replicas_and_operator_config_reaches_pods() {
        let mut spec = MCPServerSpec::with_image("hello");
        spec.replicas = 4;
        spec.rollout = Some(RolloutSpec {
            strategy: RolloutStrategy::Canary,
            canary_replicas: Some(1),
            max_surge: Some("25%".into()),
            max_unavailable: Some("1".into()),
        });
        let mut config = Config::defaults();
        config
            .pod_node_selector
            .insert("type".into(), "kwok".into());
        let d = desired(&server(spec), &config, None);
        let stable = d.deployment.spec.unwrap();
        let canary = d.canary.unwrap();
        assert_eq!(stable.replicas, Some(3));
        assert_eq!(canary.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(canary.metadata.name.as_deref(), Some("hello-canary"));
        let ru = stable.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            stable.template.spec.unwrap().node_selector.unwrap()["type"],
            "kwok"
        );
    }

    #[test]
    fn behind_a_gateway_the_server_is_not_probed_and_a_network_policy_admits_only_the_gateway() {
        let mut spec = MCPServerSpec::with_image("hello");
        spec.gateway = Some(GatewaySpec::enabled());
        let d = desired(&server(spec.clone()), &Config::defaults(), Some(&doc()));
        let spec_of_pod = pod(&d);
        let srv = spec_of_pod
            .containers
            .iter()
            .find(|c| c.name == "server")
            .unwrap();
        assert!(
            srv.ports.is_none() && srv.readiness_probe.is_none() && srv.liveness_probe.is_none()
        );
        let gw = gateway_container(&spec_of_pod);
        let ready = gw
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/ready"));

        let np = d.network_policy.unwrap();
        assert_eq!(np.metadata.name.as_deref(), Some("hello"));
        let np = np.spec.unwrap();
        assert_eq!(
            np.pod_selector.unwrap().match_labels.unwrap()[SERVER_LABEL],
            "hello"
        );
        assert_eq!(np.policy_types.unwrap(), ["Ingress"]);
        assert!(np.egress.is_none());
        let rules = np.ingress.unwrap();
        assert_eq!(rules.len(), 1, "no admin port without metrics namespaces");
        assert!(rules[0].from.is_none());
        assert_eq!(
            rules[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(8091))
        );

        let mut config = Config::defaults();
        config.metrics_namespaces = vec!["monitoring".into()];
        let d = desired(&server(spec.clone()), &config, Some(&doc()));
        let rules = d.network_policy.unwrap().spec.unwrap().ingress.unwrap();
        let admin = &rules[1];
        assert_eq!(
            admin.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(GATEWAY_ADMIN_PORT))
        );
        let ns = admin.from.as_ref().unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap();
        let req = &ns.match_expressions.unwrap()[0];
        assert_eq!(
            (req.key.as_str(), req.operator.as_str(), req.values.clone()),
            (
                NAMESPACE_NAME_LABEL,
                "In",
                Some(vec!["monitoring".to_owned()])
            )
        );

        // Without a gateway: probes and port as before, no NetworkPolicy.
        spec.gateway = None;
        let d = desired(&server(spec), &Config::defaults(), None);
        let srv = &pod(&d).containers[0];
        assert!(srv.ports.is_some() && srv.readiness_probe.is_some());
        assert!(d.network_policy.is_none());
    }

    fn notice(s: &MCPServer, config: &Config, type_: &str) -> Option<Notice> {
        notices(s, config).into_iter().find(|n| n.type_ == type_)
    }

    #[test]
    fn header_auth_needs_the_operator_s_consent() {
        use mcp_runtime_api::server::AuthSpec;
        let mut spec = MCPServerSpec::with_image("hello");
        spec.gateway = Some(GatewaySpec::enabled());
        spec.auth = Some(AuthSpec {
            mode: AuthMode::Header,
            ..Default::default()
        });
        let s = server(spec);
        let refused = Config::defaults();
        let env = gateway_env(&pod(&desired(&s, &refused, Some(&doc()))));
        assert!(!env.contains_key("MCP_GATEWAY_TRUST_IDENTITY_HEADERS"));
        let n = notice(&s, &refused, IDENTITY_HEADERS_TRUSTED).unwrap();
        assert_eq!((n.status, n.reason), (Some(false), "HeaderAuthNotAllowed"));
        assert!(
            n.message.contains("MCP_OPERATOR_ALLOW_HEADER_AUTH"),
            "{}",
            n.message
        );

        let mut allowed = Config::defaults();
        allowed.allow_header_auth = true;
        let env = gateway_env(&pod(&desired(&s, &allowed, Some(&doc()))));
        assert_eq!(env["MCP_GATEWAY_TRUST_IDENTITY_HEADERS"], "true");
        let n = notice(&s, &allowed, IDENTITY_HEADERS_TRUSTED).unwrap();
        assert_eq!((n.status, n.reason), (Some(true), "HeaderAuthAllowed"));

        // Token mode never gets the flag, allowed or not, and reports nothing about it.
        let token = server({
            let mut spec = MCPServerSpec::with_image("hello");
            spec.gateway = Some(GatewaySpec::enabled());
            spec
        });
        let env = gateway_env(&pod(&desired(&token, &allowed, Some(&doc()))));
        assert!(!env.contains_key("MCP_GATEWAY_TRUST_IDENTITY_HEADERS"));
        assert!(notice(&token, &allowed, IDENTITY_HEADERS_TRUSTED).is_none());
    }

    #[test]
    fn the_gateway_image_comes_from_the_operator_unless_allow_listed() {
        let mut spec = MCPServerSpec::with_image("hello");
        spec.gateway = Some(GatewaySpec {
            image: Some("evil.io/gateway:1".into()),
            ..GatewaySpec::enabled()
        });
        let s = server(spec);
        let mut config = Config::defaults();
        config.gateway_image_allowlist = vec!["reg.io/gateway:2".into()];
        let image = |c: &Config| {
            gateway_container(&pod(&desired(&s, c, Some(&doc()))))
                .image
                .clone()
                .unwrap()
        };
        assert_eq!(image(&config), config.gateway_image);
        let n = notice(&s, &config, GATEWAY_IMAGE_ALLOWED).unwrap();
        assert_eq!((n.status, n.reason), (Some(false), "ImageNotAllowed"));
        assert!(n.message.contains("evil.io/gateway:1"), "{}", n.message);

        config
            .gateway_image_allowlist
            .push("evil.io/gateway:1".into());
        assert_eq!(image(&config), "evil.io/gateway:1");
        let n = notice(&s, &config, GATEWAY_IMAGE_ALLOWED).unwrap();
        assert_eq!((n.status, n.reason), (Some(true), "ImageAllowed"));
    }

    #[test]
    fn network_isolation_says_what_the_operator_assumes() {
        let mut spec = MCPServerSpec::with_image("hello");
        let off = server(spec.clone());
        spec.gateway = Some(GatewaySpec::enabled());
        let on = server(spec);
        let mut config = Config::defaults();
        let n = notice(&off, &config, NETWORK_ISOLATION).unwrap();
        assert_eq!((n.status, n.reason), (Some(false), "GatewayDisabled"));
        let n = notice(&on, &config, NETWORK_ISOLATION).unwrap();
        assert_eq!((n.status, n.reason), (None, "EnforcementUnknown"));
        config.network_policy = NetworkPolicyEnforcement::Enforced;
        let n = notice(&on, &config, NETWORK_ISOLATION).unwrap();
        assert_eq!((n.status, n.reason), (Some(true), "NetworkPolicyEnforced"));
        config.network_policy = NetworkPolicyEnforcement::NotEnforced;
        let n = notice(&on, &config, NETWORK_ISOLATION).unwrap();
        assert_eq!(
            (n.status, n.reason),
            (Some(false), "NetworkPolicyNotEnforced")
        );
    }

    #[test]
    fn the_gateway_admin_port_is_reserved() {
        let mut spec = MCPServerSpec::with_image("hello");
        spec.port = 9103;
        spec.gateway = Some(GatewaySpec::enabled());
        let problems = check(&server(spec), &Config::defaults());
        assert_eq!(problems[0].path, "spec.port");
    }
}
