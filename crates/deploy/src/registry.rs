//! An in-cluster container registry (`deploy/registry/`, `mcp-runtime registry provision`):
//! the distribution registry (`registry:2`) in namespace [`NAMESPACE`], its blobs on a
//! PersistentVolumeClaim, reachable in the cluster at `registry.registry.svc:5000` and from
//! every node at `localhost:<node port>` (a NodePort), which is how kubelets pull from it
//! without TLS (container runtimes treat `localhost` as a local, plain-HTTP registry).
//!
//! No authentication and no TLS: it is meant for a development or single-tenant cluster.
//! Anyone who reaches the Service can push.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, Toleration, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::yaml::{Yaml, docs};

const SOURCE: &str = "crates/deploy/src/registry.rs";

/// Namespace of the registry.
pub const NAMESPACE: &str = "registry";
/// Name of the Deployment, the Service and `app.kubernetes.io/name`.
pub const NAME: &str = "registry";
/// The claim holding the registry's blobs.
pub const DATA_CLAIM: &str = "registry-data";
/// The distribution registry, pinned.
pub const IMAGE: &str = "docker.io/library/registry:2.8.3";
/// The port the registry listens on, in the pod and on the Service.
pub const PORT: i32 = 5000;
/// The NodePort kubelets pull through (`localhost:30500/NAME:TAG`) unless another is chosen.
pub const DEFAULT_NODE_PORT: i32 = 30500;
/// `app.kubernetes.io/managed-by`, as Sentinel's (not the operator's: it must not touch it).
pub const MANAGED_BY: &str = crate::sentinel::MANAGED_BY;

/// What may vary between clusters.
#[derive(Clone, Debug)]
pub struct Options {
    /// Size of the claim, e.g. `10Gi`.
    pub storage: String,
    /// The StorageClass; `None`: the cluster's default.
    pub storage_class: Option<String>,
    /// The Service's NodePort.
    pub node_port: i32,
    /// Where the pod may run (e.g. tainted or labelled nodes).
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            storage: "10Gi".to_owned(),
            storage_class: None,
            node_port: DEFAULT_NODE_PORT,
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
        }
    }
}

/// The registry's objects, in the order they are applied.
#[derive(Clone, Debug)]
pub struct Objects {
    pub namespace: Namespace,
    pub claim: PersistentVolumeClaim,
    pub deployment: Deployment,
    pub service: Service,
}

fn labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", NAME),
        ("app.kubernetes.io/part-of", "mcp-runtime"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn selector() -> BTreeMap<String, String> {
    [("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into()
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..Default::default()
    }
}

/// The objects for `options`.
pub fn objects(options: &Options) -> Objects {
    let mut namespace = Namespace {
        metadata: meta(NAMESPACE, None),
        ..Default::default()
    };
    let ns_labels = namespace.metadata.labels.get_or_insert_default();
    for mode in ["enforce", "audit", "warn"] {
        ns_labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    let claim = PersistentVolumeClaim {
        metadata: meta(DATA_CLAIM, Some(NAMESPACE)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: options.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity(options.storage.clone()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let q = |s: &str| Quantity(s.to_owned());
    let container = Container {
        name: "registry".to_owned(),
        image: Some(IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![EnvVar {
            name: "REGISTRY_HTTP_ADDR".to_owned(),
            value: Some(format!(":{PORT}")),
            ..Default::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        // GET /v2/ answers 200 once the registry serves (it has no authentication).
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(20),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), q("50m")),
                    ("memory".to_owned(), q("64Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_owned(), q("512Mi"))].into()),
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
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: "/var/lib/registry".to_owned(),
                ..Default::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(NAME, Some(NAMESPACE)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // One pod owns the ReadWriteOnce claim: the old one goes before the new one starts.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    // The image's user is root; the restricted standard wants another one, and
                    // the volume group-writable for it.
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(1000),
                        run_as_group: Some(1000),
                        fs_group: Some(1000),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "data".to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: DATA_CLAIM.to_owned(),
                                read_only: None,
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "tmp".to_owned(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Default::default()
                        },
                    ]),
                    tolerations: (!options.tolerations.is_empty())
                        .then(|| options.tolerations.clone()),
                    node_selector: (!options.node_selector.is_empty())
                        .then(|| options.node_selector.clone()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta(NAME, Some(NAMESPACE)),
        spec: Some(ServiceSpec {
            type_: Some("NodePort".to_owned()),
            selector: Some(selector()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                node_port: Some(options.node_port),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Objects {
        namespace,
        claim,
        deployment,
        service,
    }
}

impl Objects {
    fn list(&self) -> [&dyn Yaml; 4] {
        [
            &self.namespace,
            &self.claim,
            &self.deployment,
            &self.service,
        ]
    }

    /// The objects as YAML documents (what `registry provision --dry-run -o yaml` prints).
    pub fn to_yaml(&self) -> String {
        self.list()
            .iter()
            .map(|o| o.yaml())
            .collect::<Vec<_>>()
            .join("---\n")
    }
}

/// The files under `deploy/registry/`: the default objects.
pub fn files() -> Vec<(&'static str, String)> {
    let port = DEFAULT_NODE_PORT.to_string();
    let pull =
        format!("Kubelets pull from it as localhost:{port}/NAME:TAG (a NodePort on every node).");
    vec![(
        "registry.yaml",
        docs(
            SOURCE,
            &[
                "An in-cluster registry (no TLS, no authentication): `mcp-runtime registry provision`",
                "applies these objects and waits for the registry to be available.",
                &pull,
            ],
            &objects(&Options::default()).list(),
        ),
    )]
}
