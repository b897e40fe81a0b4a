//! The platform API's manifests (`deploy/platform/`): `mcp-platform` with its ServiceAccount and
//! RBAC, and the PostgreSQL it keeps its state in. Everything lives in the operator's namespace
//! [`NAMESPACE`] (created by `deploy/operator/00-namespace.yaml`, applied first).
//!
//! Three Secrets are referenced but never generated (they hold keys and passwords):
//! [`SIGNING_KEY_SECRET`], [`POSTGRES_SECRET`] and [`SENTINEL_READ_KEY_SECRET`].
//! `mcp-runtime setup` creates them when absent and never replaces them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::yaml::docs;

const SOURCE: &str = "crates/deploy/src/platform.rs";

/// The operator's namespace (`mcp_runtime_operator::manifests::NAMESPACE`; a test checks they
/// agree): one namespace for the control plane, so one place to look and to delete.
pub const NAMESPACE: &str = "mcp-runtime";
/// The platform's Deployment, Service, ServiceAccount, ClusterRole and binding.
pub const NAME: &str = "mcp-platform";
/// Image of `mcp-platform` built from this release (`cargo xtask images`).
pub const IMAGE: &str = concat!(
    "ghcr.io/mcp-runtime/mcp-platform:",
    env!("CARGO_PKG_VERSION")
);
/// `app.kubernetes.io/managed-by`: not the operator's value, so its admission policy keeps it
/// away from these objects (as for Sentinel).
pub const MANAGED_BY: &str = "mcp-runtime-deploy";

/// The API's port (container port `http`).
pub const HTTP_PORT: i32 = 8090;
/// `/metrics`, `/healthz`, `/ready` (container port `admin`).
pub const ADMIN_PORT: i32 = 9097;
/// The user every platform container runs as (distroless `nonroot`).
pub const UID: i64 = 65532;

/// Secret with the platform's Ed25519 signing key (PKCS#8 PEM), key [`SIGNING_KEY_FILE`].
pub const SIGNING_KEY_SECRET: &str = "mcp-platform-signing-key";
pub const SIGNING_KEY_FILE: &str = "token.key";
const SIGNING_KEY_DIR: &str = "/etc/mcp-platform/signing";

/// Secret with an unscoped Sentinel read key, key [`SENTINEL_READ_KEY_FILE`] (Sentinel holds
/// its hash in `mcp-sentinel-keys`).
pub const SENTINEL_READ_KEY_SECRET: &str = "mcp-platform-sentinel";
pub const SENTINEL_READ_KEY_FILE: &str = "read-key";
const SENTINEL_DIR: &str = "/etc/mcp-platform/sentinel";
/// Sentinel's embedded-mode API, in-cluster (`crate::sentinel` Service and port).
pub const SENTINEL_URL: &str = "http://mcp-sentinel.mcp-sentinel.svc:8095";

/// The PostgreSQL StatefulSet and its (headless) Service; also the database host name.
pub const POSTGRES_NAME: &str = "mcp-platform-postgres";
/// PostgreSQL, pinned: a major upgrade needs a dump and restore, never a silent bump.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:16.6";
/// Secret with the database password, key [`POSTGRES_PASSWORD_KEY`] (read by both sides).
pub const POSTGRES_SECRET: &str = "mcp-platform-postgres";
pub const POSTGRES_PASSWORD_KEY: &str = "password";
pub const POSTGRES_USER: &str = "mcp";
pub const POSTGRES_DB: &str = "platform";
pub const POSTGRES_PORT: i32 = 5432;
/// The volume claim template's name and size (one claim `data-mcp-platform-postgres-0`).
pub const POSTGRES_DATA: &str = "data";
pub const POSTGRES_DATA_SIZE: &str = "10Gi";
/// The `postgres` user of the official image.
pub const POSTGRES_UID: i64 = 999;

/// The environment variables of the platform container. The `MCP_PLATFORM_*` ones are
/// `mcp-platform` flags; [`DATABASE_PASSWORD`] only feeds the URL's `$(...)` expansion.
pub mod env {
    pub const LISTEN: &str = "MCP_PLATFORM_LISTEN";
    pub const ADMIN_LISTEN: &str = "MCP_PLATFORM_ADMIN_LISTEN";
    pub const DATABASE_URL: &str = "MCP_PLATFORM_DATABASE_URL";
    pub const SIGNING_KEY: &str = "MCP_PLATFORM_SIGNING_KEY";
    pub const KUBE: &str = "MCP_PLATFORM_KUBE";
    pub const SENTINEL_URL: &str = "MCP_PLATFORM_SENTINEL_URL";
    pub const SENTINEL_READ_KEY_FILE: &str = "MCP_PLATFORM_SENTINEL_READ_KEY_FILE";
    /// Not a flag: the password, from [`super::POSTGRES_SECRET`], expanded into the URL by
    /// Kubernetes so that it is never written in a manifest.
    pub const DATABASE_PASSWORD: &str = "DATABASE_PASSWORD";
}

/// What a platform object belongs to (`app.kubernetes.io/component`).
#[derive(Clone, Copy)]
enum Component {
    Api,
    Postgres,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Api => "api",
            Component::Postgres => "postgres",
        }
    }
}

fn selector_labels(component: Component) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.name().to_owned(),
        ),
    ]
    .into()
}

fn labels(component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", NAME),
        ("app.kubernetes.io/part-of", "mcp-runtime"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(c) = component {
        labels.extend(selector_labels(c));
    }
    labels
}

fn meta(name: &str, namespaced: bool, component: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| NAMESPACE.to_owned()),
        labels: Some(labels(component)),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        verbs: v(verbs),
        resource_names: (!names.is_empty()).then(|| v(names)),
        ..Default::default()
    }
}

/// The platform's ServiceAccount (its token is mounted: `--kube` uses it).
pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, true, None),
        ..Default::default()
    }
}

/// What `mcp-platform --kube` calls (crates/platform/src/cluster.rs and server/*.rs), nothing
/// more. Cluster-wide because team namespaces (`mcp-team-<slug>`) are created at run time.
pub fn cluster_role() -> ClusterRole {
    let mcp = "mcpruntime.org";
    let rbac = "rbac.authorization.k8s.io";
    ClusterRole {
        metadata: meta(NAME, false, None),
        rules: Some(vec![
            // `apply_team`: server-side apply of `mcp-team-<slug>` (an apply that creates
            // needs `create` besides `patch`).
            rule(&[""], &["namespaces"], &["get", "create", "patch"], &[]),
            rule(&[rbac], &["rolebindings"], &["get", "create", "patch"], &[]),
            // The team bindings grant the built-in `admin` and `view` roles: without `bind`
            // the platform would need every permission of `admin` itself.
            rule(&[rbac], &["clusterroles"], &["bind"], &["admin", "view"]),
            // The gateways' token-keys Secret of each team namespace. `create` cannot be
            // narrowed to a name; reading and changing can.
            rule(&[""], &["secrets"], &["create"], &[]),
            rule(
                &[""],
                &["secrets"],
                &["get", "patch"],
                &["mcp-gateway-token-keys"],
            ),
            // `explain`: the policy document the operator rendered.
            rule(&[""], &["configmaps"], &["get"], &[]),
            rule(
                &[mcp],
                &["mcpservers", "mcpaccessgrants", "mcpagentsessions"],
                &["get", "list", "create", "patch", "delete"],
                &[],
            ),
        ]),
        ..Default::default()
    }
}

pub fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(NAME, false, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: NAME.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: NAME.to_owned(),
            namespace: Some(NAMESPACE.to_owned()),
            api_group: None,
        }]),
    }
}

fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some([("cpu".to_owned(), q(cpu)), ("memory".to_owned(), q(memory))].into()),
        limits: Some([("memory".to_owned(), q(memory_limit))].into()),
        ..Default::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, key: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: key.to_owned(),
                mode: None,
            }]),
            // Owner root, group `fsGroup`: the platform reads it, nobody else.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

/// The database's address, as a libpq key=value string; the password comes from
/// [`env::DATABASE_PASSWORD`] through Kubernetes' `$(VAR)` expansion (setup generates it
/// alphanumeric, so it needs no quoting).
pub fn database_url() -> String {
    format!(
        "host={POSTGRES_NAME} port={POSTGRES_PORT} user={POSTGRES_USER} dbname={POSTGRES_DB} \
         password=$({})",
        env::DATABASE_PASSWORD
    )
}

/// The `mcp-platform` Deployment: one replica (the lockout state is per process), rolling
/// updates; migrations run on start under an advisory lock.
pub fn deployment() -> Deployment {
    let probe = |path: &str, initial, period| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        ..Default::default()
    };
    let container = Container {
        name: "platform".to_owned(),
        image: Some(IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![
            env(env::LISTEN, &format!("0.0.0.0:{HTTP_PORT}")),
            env(env::ADMIN_LISTEN, &format!("0.0.0.0:{ADMIN_PORT}")),
            // Before the URL: `$(VAR)` only sees variables defined earlier.
            env_secret(
                env::DATABASE_PASSWORD,
                POSTGRES_SECRET,
                POSTGRES_PASSWORD_KEY,
            ),
            env(env::DATABASE_URL, &database_url()),
            env(
                env::SIGNING_KEY,
                &format!("{SIGNING_KEY_DIR}/{SIGNING_KEY_FILE}"),
            ),
            env(env::KUBE, "true"),
            env(env::SENTINEL_URL, SENTINEL_URL),
            env(
                env::SENTINEL_READ_KEY_FILE,
                &format!("{SENTINEL_DIR}/{SENTINEL_READ_KEY_FILE}"),
            ),
        ]),
        ports: Some(vec![port("http", HTTP_PORT), port("admin", ADMIN_PORT)]),
        readiness_probe: Some(probe("/ready", 2, 5)),
        liveness_probe: Some(probe("/healthz", 10, 10)),
        resources: Some(resources("100m", "128Mi", "512Mi")),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount("signing-key", SIGNING_KEY_DIR, true),
            mount("sentinel", SENTINEL_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        ..Default::default()
    };
    Deployment {
        metadata: meta(NAME, true, Some(Component::Api)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector_labels(Component::Api)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(Some(Component::Api))),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    // The Service `mcp-platform` would put MCP_PLATFORM_PORT & co. in the
                    // environment, the prefix of the platform's own flags.
                    enable_service_links: Some(false),
                    security_context: Some(restricted_pod(UID)),
                    containers: vec![container],
                    volumes: Some(vec![
                        secret_volume("signing-key", SIGNING_KEY_SECRET, SIGNING_KEY_FILE),
                        secret_volume("sentinel", SENTINEL_READ_KEY_SECRET, SENTINEL_READ_KEY_FILE),
                        empty_dir("tmp"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The API (`http`) and the admin listener (`admin`: `/metrics`).
pub fn service() -> Service {
    Service {
        metadata: meta(NAME, true, Some(Component::Api)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(Component::Api)),
            ports: Some(vec![
                service_port("http", HTTP_PORT),
                service_port("admin", ADMIN_PORT),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Headless: the StatefulSet's governing Service, and the host name the platform connects to.
pub fn postgres_service() -> Service {
    Service {
        metadata: meta(POSTGRES_NAME, true, Some(Component::Postgres)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(Component::Postgres)),
            ports: Some(vec![service_port("postgres", POSTGRES_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// One PostgreSQL, data on a claim of the cluster's default StorageClass. Not highly
/// available: for production, point the platform at a managed database instead.
pub fn postgres() -> StatefulSet {
    let pg_isready = Probe {
        exec: Some(ExecAction {
            command: Some(
                ["pg_isready", "-U", POSTGRES_USER, "-d", POSTGRES_DB]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        ..Default::default()
    };
    let data_dir = "/var/lib/postgresql/data";
    let container = Container {
        name: "postgres".to_owned(),
        image: Some(POSTGRES_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![
            env("POSTGRES_USER", POSTGRES_USER),
            env("POSTGRES_DB", POSTGRES_DB),
            env_secret("POSTGRES_PASSWORD", POSTGRES_SECRET, POSTGRES_PASSWORD_KEY),
            // A subdirectory: the claim's root may hold `lost+found`, which initdb refuses.
            env("PGDATA", &format!("{data_dir}/pgdata")),
        ]),
        ports: Some(vec![port("postgres", POSTGRES_PORT)]),
        readiness_probe: Some(pg_isready.clone()),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            ..pg_isready
        }),
        resources: Some(resources("100m", "256Mi", "1Gi")),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount(POSTGRES_DATA, data_dir, false),
            // The socket directory and temporary files: the root file system is read-only.
            mount("run", "/var/run/postgresql", false),
            mount("tmp", "/tmp", false),
        ]),
        ..Default::default()
    };
    StatefulSet {
        metadata: meta(POSTGRES_NAME, true, Some(Component::Postgres)),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(POSTGRES_NAME.to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(Component::Postgres)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(Some(Component::Postgres))),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(restricted_pod(POSTGRES_UID)),
                    containers: vec![container],
                    volumes: Some(vec![empty_dir("run"), empty_dir("tmp")]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(POSTGRES_DATA.to_owned()),
                    labels: Some(labels(Some(Component::Postgres))),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(
                            [(
                                "storage".to_owned(),
                                Quantity(POSTGRES_DATA_SIZE.to_owned()),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The files under `deploy/platform/`, in the order they are applied (after
/// `deploy/operator/`, whose namespace they use).
pub fn files() -> Vec<(&'static str, String)> {
    let secrets = format!(
        "Needs the Secrets {SIGNING_KEY_SECRET}, {POSTGRES_SECRET} and {SENTINEL_READ_KEY_SECRET}, which are not"
    );
    let secrets_how =
        "generated (they hold keys): `mcp-runtime setup` creates them (docs/install.md).";
    vec![
        (
            "10-rbac.yaml",
            docs(
                SOURCE,
                &[
                    "The platform's ServiceAccount and what `mcp-platform --kube` may do: team namespaces,",
                    "their RoleBindings and gateway-keys Secret, the mcpruntime.org objects.",
                ],
                &[&service_account(), &cluster_role(), &cluster_role_binding()],
            ),
        ),
        (
            "20-postgres.yaml",
            docs(
                SOURCE,
                &[
                    "PostgreSQL for the platform: one replica, 10Gi on the default StorageClass.",
                    &secrets,
                    secrets_how,
                ],
                &[&postgres_service(), &postgres()],
            ),
        ),
        (
            "30-platform.yaml",
            docs(
                SOURCE,
                &[
                    "The platform API (mcp-platform --kube), reading Sentinel's embedded API.",
                    &secrets,
                    secrets_how,
                ],
                &[&deployment(), &service()],
            ),
        ),
    ]
}
