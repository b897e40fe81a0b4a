//! Sentinel's manifests (`deploy/sentinel/`): the namespace and ServiceAccount both modes share,
//! then one of two ways to run `mcp-sentinel`:
//!
//! - **embedded** (`10-embedded.yaml`): one process, `--role all`, SQLite on a
//!   PersistentVolumeClaim; one replica, replaced with `Recreate` since SQLite has one writer;
//! - **scale** (`20-scale.yaml`): the same image three times, `--role ingest` (HTTP to Kafka),
//!   `--role processor` (Kafka to ClickHouse) and `--role api` (queries over ClickHouse), each
//!   with two replicas and a PodDisruptionBudget, configured from the ConfigMap
//!   [`SCALE_CONFIG`]. Kafka and ClickHouse themselves are not deployed here.
//!
//! Both read their API keys from the Secret [`KEYS_SECRET`], which is not generated (it holds
//! the user's keys): `deploy/sentinel/README.md` shows how to create it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, HTTPGetAction, KeyToPath, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::yaml::{Yaml, docs};

/// Where the YAML comes from (named in each file's header).
const SOURCE: &str = "crates/deploy/src/sentinel.rs";

/// Namespace Sentinel runs in.
pub const NAMESPACE: &str = "mcp-sentinel";
/// `app.kubernetes.io/name` of every object, the ServiceAccount, and the embedded Deployment
/// and Service.
pub const NAME: &str = "mcp-sentinel";
/// Image of `mcp-sentinel` built from this release; its entrypoint is the binary, so the
/// manifests give only arguments.
pub const IMAGE: &str = concat!(
    "ghcr.io/mcp-runtime/mcp-sentinel:",
    env!("CARGO_PKG_VERSION")
);
/// `app.kubernetes.io/managed-by` of these objects. Deliberately not the operator's
/// `mcp-runtime`: the operator's admission policy lets its ServiceAccount change objects
/// carrying that value, and the operator has no business changing Sentinel.
pub const MANAGED_BY: &str = "mcp-runtime-deploy";

/// The Secret with the API keys (not generated: the user or `mcp-runtime setup` creates it).
pub const KEYS_SECRET: &str = "mcp-sentinel-keys";
/// Key of [`KEYS_SECRET`] holding the keys accepted on the ingest (the gateways' keys).
pub const INGEST_KEYS: &str = "ingest-keys";
/// Key of [`KEYS_SECRET`] holding the keys accepted on the read API.
pub const READ_KEYS: &str = "read-keys";
/// Where the keys are mounted (read-only), one file per Secret key.
pub const KEYS_DIR: &str = "/etc/mcp-sentinel/keys";

/// The embedded mode's PersistentVolumeClaim.
pub const DATA_CLAIM: &str = "mcp-sentinel-data";
/// Its size.
pub const DATA_SIZE: &str = "5Gi";
/// Where it is mounted.
pub const DATA_DIR: &str = "/var/lib/mcp-sentinel";
/// The SQLite file, on the claim.
pub const DB_PATH: &str = "/var/lib/mcp-sentinel/sentinel.db";

/// The scale path's ConfigMap (loaded whole with `envFrom`: any `MCP_SENTINEL_*` variable of
/// `mcp-sentinel --help` may be added to it).
pub const SCALE_CONFIG: &str = "mcp-sentinel-scale";
/// Placeholder Kafka bootstrap servers in [`SCALE_CONFIG`]; edit to yours.
pub const KAFKA_BROKERS_PLACEHOLDER: &str = "kafka.mcp-sentinel.svc:9092";
/// Placeholder ClickHouse HTTP interface in [`SCALE_CONFIG`]; edit to yours.
pub const CLICKHOUSE_URL_PLACEHOLDER: &str = "http://clickhouse.mcp-sentinel.svc:8123";
/// The ClickHouse database in [`SCALE_CONFIG`] (Sentinel creates it when missing).
pub const CLICKHOUSE_DATABASE: &str = "mcp_sentinel";

/// An optional Secret with the ClickHouse user's password (key [`CLICKHOUSE_PASSWORD_KEY`]),
/// mounted into the processor and API pods when it exists. To use it, add
/// `MCP_SENTINEL_CLICKHOUSE_USER` and `MCP_SENTINEL_CLICKHOUSE_PASSWORD_FILE=`
/// [`CLICKHOUSE_PASSWORD_FILE`] to [`SCALE_CONFIG`].
pub const CLICKHOUSE_SECRET: &str = "mcp-sentinel-clickhouse";
/// Key of [`CLICKHOUSE_SECRET`] holding the password.
pub const CLICKHOUSE_PASSWORD_KEY: &str = "password";
/// Where [`CLICKHOUSE_SECRET`] is mounted (read-only).
pub const CLICKHOUSE_DIR: &str = "/etc/mcp-sentinel/clickhouse";
/// The password file, when [`CLICKHOUSE_SECRET`] exists.
pub const CLICKHOUSE_PASSWORD_FILE: &str = "/etc/mcp-sentinel/clickhouse/password";

/// The HTTP API (ingest, queries, `/healthz`, `/ready`): container port `http`.
pub const HTTP_PORT: i32 = 8095;
/// The admin listener (`/metrics`): container port `metrics`.
pub const METRICS_PORT: i32 = 9096;
/// The user and group every container runs as (distroless `nonroot`).
pub const UID: i64 = 65532;

/// The environment variables the manifests set, each named once. All are `mcp-sentinel`
/// flags (`mcp-sentinel --help` lists them; a test checks).
pub mod env {
    pub const LISTEN: &str = "MCP_SENTINEL_LISTEN";
    /// Needs `--admin-listen` (the admin listener with `/metrics`).
    pub const ADMIN_LISTEN: &str = "MCP_SENTINEL_ADMIN_LISTEN";
    pub const STORE: &str = "MCP_SENTINEL_STORE";
    pub const DB: &str = "MCP_SENTINEL_DB";
    pub const API_KEYS_FILE: &str = "MCP_SENTINEL_API_KEYS_FILE";
    pub const READ_API_KEYS_FILE: &str = "MCP_SENTINEL_READ_API_KEYS_FILE";
    pub const KAFKA_BROKERS: &str = "MCP_SENTINEL_KAFKA_BROKERS";
    pub const CLICKHOUSE_URL: &str = "MCP_SENTINEL_CLICKHOUSE_URL";
    pub const CLICKHOUSE_DATABASE: &str = "MCP_SENTINEL_CLICKHOUSE_DATABASE";
    /// Not set by the manifests: added to the scale ConfigMap by a user whose ClickHouse needs
    /// a password (with [`CLICKHOUSE_PASSWORD_FILE`]).
    pub const CLICKHOUSE_USER: &str = "MCP_SENTINEL_CLICKHOUSE_USER";
    /// Not set by the manifests: see [`super::CLICKHOUSE_SECRET`].
    pub const CLICKHOUSE_PASSWORD_FILE: &str = "MCP_SENTINEL_CLICKHOUSE_PASSWORD_FILE";

    /// Every variable above.
    pub const ALL: &[&str] = &[
        LISTEN,
        ADMIN_LISTEN,
        STORE,
        DB,
        API_KEYS_FILE,
        READ_API_KEYS_FILE,
        KAFKA_BROKERS,
        CLICKHOUSE_URL,
        CLICKHOUSE_DATABASE,
        CLICKHOUSE_USER,
        CLICKHOUSE_PASSWORD_FILE,
    ];
}

/// What a Sentinel process does (`mcp-sentinel --role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process (the embedded mode).
    All,
    /// HTTP ingest, queued on Kafka.
    Ingest,
    /// Kafka to the store.
    Processor,
    /// Queries over the store.
    Api,
}

impl Role {
    /// The scale path's roles, in the order of `20-scale.yaml`.
    pub const SCALE: [Role; 3] = [Role::Ingest, Role::Processor, Role::Api];

    /// The value of `--role`, and the pods' `app.kubernetes.io/component`.
    pub const fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Processor => "processor",
            Role::Api => "api",
        }
    }

    /// Name of the role's Deployment (and its Service and PodDisruptionBudget when it has them).
    pub const fn object_name(self) -> &'static str {
        match self {
            Role::All => NAME,
            Role::Ingest => "mcp-sentinel-ingest",
            Role::Processor => "mcp-sentinel-processor",
            Role::Api => "mcp-sentinel-api",
        }
    }

    /// Opens the store on ClickHouse (a Kafka-backed ingest never opens the store).
    fn uses_clickhouse(self) -> bool {
        matches!(self, Role::Processor | Role::Api)
    }

    fn replicas(self) -> i32 {
        match self {
            Role::All => 1,
            Role::Ingest | Role::Processor | Role::Api => 2,
        }
    }

    /// Which Secret key backs `--api-keys-file` and `--read-api-keys-file`. The binary needs
    /// `--api-keys-file` in every role, even where nothing is ingested, and refuses an empty
    /// file; so a role is given only the keys of the routes it serves (an ingest pod never
    /// holds the read keys, nor an API pod the ingest keys), and the processor, which serves
    /// neither, the ingest keys to start at all.
    fn key_files(self) -> (&'static str, &'static str) {
        match self {
            Role::All => (INGEST_KEYS, READ_KEYS),
            Role::Ingest | Role::Processor => (INGEST_KEYS, INGEST_KEYS),
            Role::Api => (READ_KEYS, READ_KEYS),
        }
    }

    /// CPU request, memory request, memory limit. No CPU limit: throttling a latency-bound
    /// ingest hurts more than it protects.
    fn resources(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Role::All => ("100m", "256Mi", "1Gi"),
            Role::Ingest => ("100m", "128Mi", "512Mi"),
            Role::Processor => ("200m", "256Mi", "1Gi"),
            Role::Api => ("100m", "256Mi", "1Gi"),
        }
    }
}

fn labels(component: Option<Role>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", NAME),
        ("app.kubernetes.io/part-of", "mcp-runtime"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(role) = component {
        labels.insert(
            "app.kubernetes.io/component".to_owned(),
            role.name().to_owned(),
        );
    }
    labels
}

/// The labels that pick a role's pods (Deployment selector, Service, PodDisruptionBudget).
fn selector(role: Role) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            [
                ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    role.name().to_owned(),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn meta(name: &str, namespace: Option<&str>, component: Option<Role>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
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

/// The namespace, labelled for the `restricted` Pod Security Standard (enforced: a pod that
/// does not comply is refused).
pub fn namespace() -> Namespace {
    let mut metadata = meta(NAMESPACE, None, None);
    let labels = metadata.labels.get_or_insert_default();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    Namespace {
        metadata,
        ..Default::default()
    }
}

/// The ServiceAccount every Sentinel pod runs as. Sentinel never calls the Kubernetes API, so
/// no token is mounted and no RBAC is granted.
pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, Some(NAMESPACE), None),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The embedded mode's volume for the SQLite file (the cluster's default StorageClass).
pub fn data_claim() -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(DATA_CLAIM, Some(NAMESPACE), Some(Role::All)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity(DATA_SIZE.to_owned()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The scale path's settings, with placeholders to replace by the addresses of your Kafka and
/// ClickHouse.
pub fn scale_config() -> ConfigMap {
    ConfigMap {
        metadata: meta(SCALE_CONFIG, Some(NAMESPACE), None),
        data: Some(
            [
                (env::KAFKA_BROKERS, KAFKA_BROKERS_PLACEHOLDER),
                (env::CLICKHOUSE_URL, CLICKHOUSE_URL_PLACEHOLDER),
                (env::CLICKHOUSE_DATABASE, CLICKHOUSE_DATABASE),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ),
        ..Default::default()
    }
}

fn http_probe(path: &str, initial: i32, period: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        ..Default::default()
    }
}

fn container(role: Role) -> Container {
    let (ingest_keys, read_keys) = role.key_files();
    let mut vars = vec![
        env(env::LISTEN, &format!("0.0.0.0:{HTTP_PORT}")),
        env(env::ADMIN_LISTEN, &format!("0.0.0.0:{METRICS_PORT}")),
        env(env::API_KEYS_FILE, &format!("{KEYS_DIR}/{ingest_keys}")),
        env(env::READ_API_KEYS_FILE, &format!("{KEYS_DIR}/{read_keys}")),
    ];
    if role == Role::All {
        vars.push(env(env::STORE, "sqlite"));
        vars.push(env(env::DB, DB_PATH));
    } else if role.uses_clickhouse() {
        vars.push(env(env::STORE, "clickhouse"));
    }
    let mut mounts = vec![
        VolumeMount {
            name: "keys".to_owned(),
            mount_path: KEYS_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..Default::default()
        },
    ];
    if role.uses_clickhouse() {
        mounts.push(VolumeMount {
            name: "clickhouse".to_owned(),
            mount_path: CLICKHOUSE_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if role == Role::All {
        mounts.push(VolumeMount {
            name: "data".to_owned(),
            mount_path: DATA_DIR.to_owned(),
            ..Default::default()
        });
    }
    let port = |name: &str, port| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    let (cpu, memory, memory_limit) = role.resources();
    let q = |s: &str| Quantity(s.to_owned());
    Container {
        name: "sentinel".to_owned(),
        image: Some(IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec!["--role".to_owned(), role.name().to_owned()]),
        env: Some(vars),
        env_from: (role != Role::All).then(|| {
            vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: SCALE_CONFIG.to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }]
        }),
        ports: Some(vec![port("http", HTTP_PORT), port("metrics", METRICS_PORT)]),
        // `/ready` asks the store (or Kafka): allow it a few seconds.
        readiness_probe: Some(http_probe("/ready", 2, 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 10, 1)),
        resources: Some(ResourceRequirements {
            requests: Some([("cpu".to_owned(), q(cpu)), ("memory".to_owned(), q(memory))].into()),
            limits: Some([("memory".to_owned(), q(memory_limit))].into()),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn volumes(role: Role) -> Vec<Volume> {
    let (ingest_keys, read_keys) = role.key_files();
    let mut items: Vec<KeyToPath> = [ingest_keys, read_keys]
        .into_iter()
        .map(|key| KeyToPath {
            key: key.to_owned(),
            path: key.to_owned(),
            mode: None,
        })
        .collect();
    items.dedup_by(|a, b| a.key == b.key);
    let mut volumes = vec![
        Volume {
            name: "keys".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(KEYS_SECRET.to_owned()),
                items: Some(items),
                // Owner root, group `fsGroup`: readable by Sentinel, by nobody else.
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    if role.uses_clickhouse() {
        volumes.push(Volume {
            name: "clickhouse".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(CLICKHOUSE_SECRET.to_owned()),
                items: Some(vec![KeyToPath {
                    key: CLICKHOUSE_PASSWORD_KEY.to_owned(),
                    path: CLICKHOUSE_PASSWORD_KEY.to_owned(),
                    mode: None,
                }]),
                default_mode: Some(0o440),
                // Absent unless ClickHouse needs a password: the pod starts without it.
                optional: Some(true),
            }),
            ..Default::default()
        });
    }
    if role == Role::All {
        volumes.push(Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: DATA_CLAIM.to_owned(),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    volumes
}

/// The Deployment of a role: `--role all` is the embedded mode (one replica, `Recreate`, the
/// SQLite claim), the others the scale path (two replicas spread over nodes, rolling updates
/// that never go below the desired count).
pub fn deployment(role: Role) -> Deployment {
    let strategy = match role {
        // The old pod must let go of the volume (and SQLite of its file) before the new starts.
        Role::All => DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        },
        Role::Ingest | Role::Processor | Role::Api => DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        },
    };
    let affinity = (role != Role::All).then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(selector(role)),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let annotations: BTreeMap<String, String> = [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", METRICS_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Deployment {
        metadata: meta(role.object_name(), Some(NAMESPACE), Some(role)),
        spec: Some(DeploymentSpec {
            replicas: Some(role.replicas()),
            selector: selector(role),
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(Some(role))),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    automount_service_account_token: Some(false),
                    // Kubernetes would set `<SERVICE>_PORT`-style variables for every Service
                    // in the namespace, and those of `mcp-sentinel*` Services start with
                    // MCP_SENTINEL_, the prefix of Sentinel's own flags.
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(UID),
                        run_as_group: Some(UID),
                        fs_group: Some(UID),
                        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    affinity,
                    containers: vec![container(role)],
                    volumes: Some(volumes(role)),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The Service in front of a role's pods: `http` (the API) and `metrics`.
pub fn service(role: Role) -> Service {
    let port = |name: &str, port| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    Service {
        metadata: meta(role.object_name(), Some(NAMESPACE), Some(role)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: selector(role).match_labels,
            ports: Some(vec![port("http", HTTP_PORT), port("metrics", METRICS_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// At most one pod of a scale role down at a time through voluntary disruptions (drains).
pub fn disruption_budget(role: Role) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(role.object_name(), Some(NAMESPACE), Some(role)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(role)),
            ..Default::default()
        }),
        status: None,
    }
}

/// The files under `deploy/sentinel/`: `00-namespace.yaml`, then **one** of `10-embedded.yaml`
/// and `20-scale.yaml` (they are alternatives).
pub fn files() -> Vec<(&'static str, String)> {
    let scale: Vec<Box<dyn Yaml>> = Role::SCALE
        .into_iter()
        .flat_map(|role| {
            let mut objects: Vec<Box<dyn Yaml>> = vec![
                Box::new(deployment(role)),
                Box::new(disruption_budget(role)),
            ];
            // Processors receive no traffic (they consume Kafka); their metrics are scraped
            // from the pods.
            if role != Role::Processor {
                objects.push(Box::new(service(role)));
            }
            objects
        })
        .collect();
    let config = scale_config();
    let mut scale_objects: Vec<&dyn Yaml> = vec![&config];
    scale_objects.extend(scale.iter().map(|o| o.as_ref()));
    let keys = format!(
        "Needs the Secret {KEYS_SECRET} (keys `{INGEST_KEYS}`, `{READ_KEYS}`), which is not generated:"
    );
    let keys_how =
        "create it as deploy/sentinel/README.md shows, or let `mcp-runtime setup` do it.";
    vec![
        (
            "00-namespace.yaml",
            docs(
                SOURCE,
                &[
                    "Shared by both modes: the namespace and the ServiceAccount Sentinel's pods run as.",
                    "Apply it, then ONE of 10-embedded.yaml (one process, SQLite) and 20-scale.yaml.",
                ],
                &[&namespace(), &service_account()],
            ),
        ),
        (
            "10-embedded.yaml",
            docs(
                SOURCE,
                &[
                    "Sentinel embedded: one process (--role all), SQLite on a 5Gi volume, one replica.",
                    &keys,
                    keys_how,
                ],
                &[&data_claim(), &deployment(Role::All), &service(Role::All)],
            ),
        ),
        (
            "20-scale.yaml",
            docs(
                SOURCE,
                &[
                    "Sentinel's scale path: ingest (HTTP -> Kafka), processor (Kafka -> ClickHouse), api.",
                    "Kafka and ClickHouse are NOT deployed by these manifests: edit the ConfigMap",
                    "mcp-sentinel-scale below to point at yours.",
                    &keys,
                    keys_how,
                ],
                &scale_objects,
            ),
        ),
    ]
}
