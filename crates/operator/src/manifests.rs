//! The operator's own manifests (namespace, RBAC, Deployment), generated into
//! `deploy/operator/` by `cargo xtask generate`. The integration tests run the operator with
//! exactly this RBAC, so a missing permission fails a test.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, Namespace, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, ServiceAccount, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_runtime_api::MANAGER;
use serde::Serialize;

use crate::resources::MANAGED_BY_LABEL;

/// Namespace the operator runs in.
pub const NAMESPACE: &str = "mcp-runtime";
/// Name of the operator's ServiceAccount, ClusterRole, bindings and Deployment.
pub const NAME: &str = "mcp-runtime-operator";
/// The leader-election Role and its binding.
pub const LEADER_ELECTION: &str = "mcp-runtime-operator-leader-election";
/// The ValidatingAdmissionPolicy (and its binding) that confines the operator's writes to the
/// objects it manages.
pub const MANAGED_ONLY: &str = "mcp-runtime-operator-managed-only";
/// Name of the leader lease (`MCP_OPERATOR_LEASE_NAME` default).
pub const LEASE: &str = "mcp-runtime-operator";
/// Image of the operator built from this release.
pub const IMAGE: &str = concat!(
    "ghcr.io/mcp-runtime/mcp-runtime-operator:",
    env!("CARGO_PKG_VERSION")
);

fn labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "mcp-runtime".to_owned(),
        ),
    ]
    .into()
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        verbs: v(verbs),
        ..Default::default()
    }
}

/// The namespace, labelled for the `restricted` Pod Security Standard.
pub fn namespace() -> Namespace {
    let mut metadata = meta(NAMESPACE, None);
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

/// Everything the operator is allowed to do.
#[derive(Clone, Debug)]
pub struct Rbac {
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// The operator's permissions, each rule with the reason it exists:
///
/// - read the three kinds cluster-wide (grants and sessions may target servers in other
///   namespaces) and write their status subresources;
/// - `mcpservers/finalizers` update: owner references with `blockOwnerDeletion` need it where
///   the OwnerReferencesPermissionEnforcement admission plugin is on;
/// - the owned kinds: get (ownership check before the first write of a name), list/watch
///   (caches and owned-object triggers), create and patch (server-side apply), delete (canary
///   and policy ConfigMap when no longer wanted); ServiceAccounts are never deleted by the
///   operator (garbage collection removes them);
/// - `rbac.authorization.k8s.io` roles and rolebindings, owned like the other kinds (same
///   verbs; delete when the gateway is turned off): each gateway gets a Role letting its
///   server's ServiceAccount get/list/watch exactly its policy ConfigMap. No `escalate` or
///   `bind`: the API server's escalation check lets the operator create that Role and bind it
///   because it holds configmaps get/list/watch itself (above); it cannot grant anything it
///   does not hold;
/// - events.k8s.io Events for `kubectl describe`;
/// - in its own namespace only: the leader Lease (get/update restricted to its name).
pub fn rbac() -> Rbac {
    let subject = Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(NAMESPACE.to_owned()),
        ..Default::default()
    };
    let cluster_role = ClusterRole {
        metadata: meta(NAME, None),
        rules: Some(vec![
            rule(
                &["mcpruntime.org"],
                &["mcpservers", "mcpaccessgrants", "mcpagentsessions"],
                &["get", "list", "watch"],
            ),
            rule(
                &["mcpruntime.org"],
                &[
                    "mcpservers/status",
                    "mcpaccessgrants/status",
                    "mcpagentsessions/status",
                ],
                &["get", "patch"],
            ),
            rule(&["mcpruntime.org"], &["mcpservers/finalizers"], &["update"]),
            rule(
                &["apps"],
                &["deployments"],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            rule(
                &[""],
                &["services", "configmaps"],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            rule(
                &[""],
                &["serviceaccounts"],
                &["get", "list", "watch", "create", "patch"],
            ),
            rule(
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            rule(
                &["rbac.authorization.k8s.io"],
                &["roles", "rolebindings"],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
        aggregation_rule: None,
    };
    let cluster_role_binding = ClusterRoleBinding {
        metadata: meta(NAME, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: NAME.to_owned(),
        },
        subjects: Some(vec![subject.clone()]),
    };
    let role = Role {
        metadata: meta(LEADER_ELECTION, Some(NAMESPACE)),
        rules: Some(vec![
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            PolicyRule {
                resource_names: Some(vec![LEASE.to_owned()]),
                ..rule(&["coordination.k8s.io"], &["leases"], &["get", "update"])
            },
        ]),
    };
    let role_binding = RoleBinding {
        metadata: meta(LEADER_ELECTION, Some(NAMESPACE)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: LEADER_ELECTION.to_owned(),
        },
        subjects: Some(vec![subject]),
    };
    Rbac {
        service_account: ServiceAccount {
            metadata: meta(NAME, Some(NAMESPACE)),
            ..Default::default()
        },
        cluster_role,
        cluster_role_binding,
        role,
        role_binding,
    }
}

/// The user name the API server gives the operator's ServiceAccount.
pub fn service_account_user() -> String {
    format!("system:serviceaccount:{NAMESPACE}:{NAME}")
}

/// What RBAC cannot say: the ClusterRole lets the operator write ConfigMaps, Deployments,
/// Services, Ingresses, ServiceAccounts, NetworkPolicies, Roles and RoleBindings in every
/// namespace, since its servers may be anywhere. This policy (for requests of the operator's
/// ServiceAccount only) admits a create or update only when the new object carries
/// `app.kubernetes.io/managed-by=mcp-runtime`, and an update or delete only when the existing
/// object already carries it: the operator can neither touch nor adopt (by labelling) anything
/// it did not create. Everyone else is unaffected.
pub fn admission_policy() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let rule = |group: &str, resources: &[&str]| NamedRuleWithOperations {
        api_groups: Some(v(&[group])),
        api_versions: Some(v(&["*"])),
        operations: Some(v(&["CREATE", "UPDATE", "DELETE"])),
        resources: Some(v(resources)),
        ..Default::default()
    };
    let managed = |object: &str| {
        format!(
            "has({object}.metadata.labels) && '{MANAGED_BY_LABEL}' in {object}.metadata.labels && {object}.metadata.labels['{MANAGED_BY_LABEL}'] == '{MANAGER}'"
        )
    };
    let policy = ValidatingAdmissionPolicy {
        metadata: meta(MANAGED_ONLY, None),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![
                    rule("", &["configmaps", "services", "serviceaccounts"]),
                    rule("apps", &["deployments"]),
                    rule("networking.k8s.io", &["ingresses", "networkpolicies"]),
                    rule("rbac.authorization.k8s.io", &["roles", "rolebindings"]),
                ]),
                ..Default::default()
            }),
            match_conditions: Some(vec![MatchCondition {
                name: "operator-service-account".to_owned(),
                expression: format!("request.userInfo.username == '{}'", service_account_user()),
            }]),
            variables: Some(vec![
                Variable {
                    name: "newManaged".to_owned(),
                    expression: format!("request.operation == 'DELETE' || ({})", managed("object")),
                },
                Variable {
                    name: "oldManaged".to_owned(),
                    expression: format!(
                        "request.operation == 'CREATE' || ({})",
                        managed("oldObject")
                    ),
                },
            ]),
            validations: Some(vec![
                Validation {
                    expression: "variables.newManaged".to_owned(),
                    message: Some(format!(
                        "the mcp-runtime operator may only write objects labelled {MANAGED_BY_LABEL}={MANAGER}"
                    )),
                    reason: Some("Forbidden".to_owned()),
                    ..Default::default()
                },
                Validation {
                    expression: "variables.oldManaged".to_owned(),
                    message: Some(format!(
                        "the mcp-runtime operator may only change or delete objects that already carry {MANAGED_BY_LABEL}={MANAGER}"
                    )),
                    reason: Some("Forbidden".to_owned()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        status: None,
    };
    let binding = ValidatingAdmissionPolicyBinding {
        metadata: meta(MANAGED_ONLY, None),
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(MANAGED_ONLY.to_owned()),
            validation_actions: Some(v(&["Deny"])),
            ..Default::default()
        }),
    };
    (policy, binding)
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The operator Deployment: two replicas (one leads), restricted security context, probes on
/// the metrics port.
pub fn deployment() -> Deployment {
    let selector: BTreeMap<String, String> =
        [("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into();
    let probe = |path: &str, initial, period| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        ..Default::default()
    };
    let q = |s: &str| Quantity(s.to_owned());
    Deployment {
        metadata: meta(NAME, Some(NAMESPACE)),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(selector.clone()),
                                            ..Default::default()
                                        }),
                                        topology_key: "kubernetes.io/hostname".to_owned(),
                                        ..Default::default()
                                    },
                                },
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: "operator".to_owned(),
                        image: Some(IMAGE.to_owned()),
                        image_pull_policy: Some("IfNotPresent".to_owned()),
                        env: Some(vec![
                            env_from_field("POD_NAME", "metadata.name"),
                            env_from_field("POD_NAMESPACE", "metadata.namespace"),
                            EnvVar {
                                name: "RUST_LOG".to_owned(),
                                value: Some("info".to_owned()),
                                ..Default::default()
                            },
                        ]),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".to_owned()),
                            container_port: 8080,
                            protocol: Some("TCP".to_owned()),
                            ..Default::default()
                        }]),
                        liveness_probe: Some(probe("/healthz", 10, 20)),
                        readiness_probe: Some(probe("/readyz", 2, 5)),
                        resources: Some(ResourceRequirements {
                            requests: Some(
                                [
                                    ("cpu".to_owned(), q("100m")),
                                    ("memory".to_owned(), q("128Mi")),
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
                        volume_mounts: Some(vec![VolumeMount {
                            name: "tmp".to_owned(),
                            mount_path: "/tmp".to_owned(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Keeps one replica through voluntary disruptions.
pub fn disruption_budget() -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(NAME, Some(NAMESPACE)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some([("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn docs(objects: &[&dyn erased::Yaml]) -> String {
    let mut out = String::from(
        "# Generated by `cargo xtask generate` from crates/operator/src/manifests.rs; do not edit.\n",
    );
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&o.yaml());
    }
    out
}

mod erased {
    /// Object-safe YAML serialisation.
    pub trait Yaml {
        fn yaml(&self) -> String;
    }
    impl<T: serde::Serialize> Yaml for T {
        fn yaml(&self) -> String {
            serde_yaml::to_string(self).expect("manifests serialise")
        }
    }
}

/// The files under `deploy/operator/`, in the order `kubectl apply -f deploy/operator/` reads
/// them (the CRDs in `deploy/crds/` go first).
pub fn files() -> Vec<(&'static str, String)> {
    let rbac = rbac();
    let admission = admission_policy();
    vec![
        ("00-namespace.yaml", docs(&[&namespace()])),
        (
            "10-rbac.yaml",
            docs(&[
                &rbac.service_account,
                &rbac.cluster_role,
                &rbac.cluster_role_binding,
                &rbac.role,
                &rbac.role_binding,
            ]),
        ),
        ("15-admission.yaml", docs(&[&admission.0, &admission.1])),
        (
            "20-deployment.yaml",
            docs(&[&deployment(), &disruption_budget()]),
        ),
    ]
}

/// Serialises any manifest object to YAML (for tests that apply them).
pub fn to_yaml(object: &impl Serialize) -> String {
    serde_yaml::to_string(object).expect("manifests serialise")
}
