//! The operator against a real kube-apiserver (kube-testenv), running as its ServiceAccount
//! with the generated RBAC. Every test has its own namespace; every wait has a timeout.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::{Client, ResourceExt};
use mcp_runtime_api::{AccessPhase, MCPAccessGrant, MCPAgentSession, MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::eventually;

fn server_yaml(name: &str, extra: &str) -> MCPServer {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: {name}}}\nspec:\n  image: ghcr.io/acme/{name}:1\n  tools: [{{name: echo, sideEffect: read}}, {{name: refund, requiredTrust: high, sideEffect: destructive}}]\n{extra}"
    ))
}

fn grant_yaml(name: &str, server: &str, server_ns: Option<&str>, extra: &str) -> MCPAccessGrant {
    let ns = server_ns
        .map(|n| format!(", namespace: {n}"))
        .unwrap_or_default();
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {{name: {name}}}\nspec:\n  serverRef: {{name: {server}{ns}}}\n  subject: {{humanID: alice}}\n  maxTrust: high\n  allowedSideEffects: [read]\n{extra}"
    ))
}

fn session_yaml(name: &str, server: &str, expires_at: &str, extra: &str) -> MCPAgentSession {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAgentSession\nmetadata: {{name: {name}}}\nspec:\n  serverRef: {{name: {server}}}\n  subject: {{humanID: alice, agentID: claude}}\n  consentedTrust: low\n  expiresAt: '{expires_at}'\n{extra}"
    ))
}

const GATEWAY: &str = "  gateway: {enabled: true}\n";

fn in_hours(h: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(h))
        .unwrap();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap()
        .to_string()
}

async fn merge<K>(api: &Api<K>, name: &str, patch: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {name}: {e}"))
}

async fn names<K>(client: &Client, ns: &str) -> BTreeSet<String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=mcp-runtime"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn crds_install_and_cel_rejects_bad_objects_with_readable_messages() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("cel").await;
    let servers = server_api(&client, &ns);
    let bad = server_yaml(
        "bad",
        "  port: 8091\n  gateway: {enabled: true, port: 8091}\n",
    );
    let err = servers
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("gateway.port == port must be rejected");
    let msg = err.to_string();
    assert!(msg.contains("gateway.port must differ from port"), "{msg}");

    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &ns);
    let mut wildcard = grant_yaml("wild", "s", None, "");
    wildcard.spec.subject = Default::default();
    let msg = grants
        .create(&PostParams::default(), &wildcard)
        .await
        .expect_err("a wildcard subject must be rejected")
        .to_string();
    assert!(msg.contains("wildcard subjects are not allowed"), "{msg}");

    let canary = server_yaml(
        "canary",
        "  replicas: 2\n  rollout: {strategy: Canary, canaryReplicas: 2}\n",
    );
    let msg = servers
        .create(&PostParams::default(), &canary)
        .await
        .expect_err("canaryReplicas == replicas must be rejected")
        .to_string();
    assert!(
        msg.contains("0 < rollout.canaryReplicas < replicas"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_gets_exactly_its_objects_and_loses_them_on_update_and_delete() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("lifecycle").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server_yaml("hello", GATEWAY))
        .await
        .unwrap();
    let ready = wait_phase(&servers, "hello", ServerPhase::Ready).await;
    let status = ready.status.clone().unwrap();
    assert!(status.deployment_ready && status.service_ready && status.ingress_ready);
    assert!(status.gateway_ready && status.policy_ready);
    let types: BTreeSet<String> = status.conditions.iter().map(|c| c.type_.clone()).collect();
    assert_eq!(
        types,
        set(&[
            "DeploymentReady",
            "GatewayReady",
            "IngressReady",
            "NetworkIsolation",
            "PolicyReady",
            "Ready",
            "ServiceReady"
        ])
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == ready.metadata.generation)
    );

    // Exactly these objects, labelled, owned by the server, written by one field manager.
    assert_eq!(names::<Deployment>(&client, &ns).await, set(&["hello"]));
    assert_eq!(names::<Service>(&client, &ns).await, set(&["hello"]));
    assert_eq!(names::<Ingress>(&client, &ns).await, set(&["hello"]));
    assert_eq!(names::<ServiceAccount>(&client, &ns).await, set(&["hello"]));
    assert_eq!(
        names::<ConfigMap>(&client, &ns).await,
        set(&["hello-gateway-policy"])
    );
    assert_eq!(
        names::<Role>(&client, &ns).await,
        set(&["hello-gateway-policy-reader"])
    );
    assert_eq!(
        names::<RoleBinding>(&client, &ns).await,
        set(&["hello-gateway-policy-reader"])
    );
    assert_eq!(names::<NetworkPolicy>(&client, &ns).await, set(&["hello"]));
    let deploy = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("hello")
        .await
        .unwrap();
    let owner = &deploy.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("MCPServer", "hello", Some(true))
    );
    let managers: BTreeSet<String> = deploy
        .managed_fields()
        .iter()
        .filter(|f| f.operation.as_deref() == Some("Apply"))
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, set(&["mcp-runtime-operator"]));
    let pod_spec = deploy.spec.unwrap().template.spec.unwrap();
    let containers: Vec<&str> = pod_spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(containers, ["server", "mcp-gateway"]);
    assert_eq!(pod_spec.node_selector.unwrap()["type"], "kwok");

    // The policy: the revision in the status is the one in the ConfigMap.
    let doc = policy(&client, &ns, "hello")
        .await
        .expect("policy ConfigMap");
    assert_eq!(
        status.policy_revision.as_deref(),
        Some(doc.revision.as_str())
    );
    assert_eq!(doc.tools.len(), 2);
    assert_eq!(doc.server.cluster.as_deref(), Some("testenv"));
    let ingress = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("hello")
        .await
        .unwrap();
    let spec = ingress.spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("traefik"));
    assert_eq!(
        spec.rules.unwrap()[0].http.as_ref().unwrap().paths[0]
            .path
            .as_deref(),
        Some("/hello/mcp")
    );
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("hello")
        .await
        .unwrap();
    assert_eq!(
        svc.spec.unwrap().ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("gateway".into()))
    );

    // Canary rollout: a second Deployment.
    merge(&servers, "hello", serde_json::json!({"spec": {"replicas": 3, "rollout": {"strategy": "Canary", "canaryReplicas": 1}}})).await;
    let s = wait_phase(&servers, "hello", ServerPhase::Ready).await;
    assert!(s.status.unwrap().canary_ready);
    assert_eq!(
        names::<Deployment>(&client, &ns).await,
        set(&["hello", "hello-canary"])
    );
    let stable = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("hello")
        .await
        .unwrap();
    assert_eq!(stable.spec.unwrap().replicas, Some(2));

    // Gateway off, canary off: the ConfigMap and the canary go, the Service targets the server.
    merge(&servers, "hello", serde_json::json!({"spec": {"replicas": 1, "rollout": null, "gateway": {"enabled": false}}})).await;
    let s = wait_phase(&servers, "hello", ServerPhase::Ready).await;
    let st = s.status.unwrap();
    assert!(!st.policy_ready && !st.gateway_ready && st.policy_revision.is_none());
    eventually(
        "the policy ConfigMap, its Role and binding, the NetworkPolicy and the canary to be deleted",
        WAIT,
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let cms = names::<ConfigMap>(&client, &ns).await;
                let roles = names::<Role>(&client, &ns).await;
                let bindings = names::<RoleBinding>(&client, &ns).await;
                let deps = names::<Deployment>(&client, &ns).await;
                let nps = names::<NetworkPolicy>(&client, &ns).await;
                if cms.is_empty()
                    && nps.is_empty()
                    && roles.is_empty()
                    && bindings.is_empty()
                    && deps == set(&["hello"])
                {
                    Ok(())
                } else {
                    Err(format!("{cms:?} {nps:?} {roles:?} {bindings:?} {deps:?}"))
                }
            }
        },
    )
    .await
    .unwrap();
    let deploy = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("hello")
        .await
        .unwrap();
    assert_eq!(
        deploy.spec.unwrap().template.spec.unwrap().containers.len(),
        1
    );

    // Delete: garbage collection removes everything it owned.
    servers
        .delete("hello", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("every owned object to be gone", WAIT, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let left: Vec<String> = [
                names::<Deployment>(&client, &ns).await,
                names::<Service>(&client, &ns).await,
                names::<Ingress>(&client, &ns).await,
                names::<ServiceAccount>(&client, &ns).await,
                names::<ConfigMap>(&client, &ns).await,
                names::<Role>(&client, &ns).await,
                names::<RoleBinding>(&client, &ns).await,
                names::<NetworkPolicy>(&client, &ns).await,
            ]
            .into_iter()
            .flatten()
            .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        }
    })
    .await
    .unwrap();
    assert_no_forbidden(c.operator.lock().unwrap().log());
}

fn condition(s: &MCPServer, type_: &str) -> Option<(String, String, String)> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the server's condition `type_` has `status` and `reason` for its generation.
async fn wait_condition(
    servers: &Api<MCPServer>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let s = wait_for(
        servers,
        name,
        &format!("{name}: condition {type_}={status} ({reason})"),
        WAIT,
        |s| match condition(s, type_) {
            Some((st, r, _))
                if st == status
                    && r == reason
                    && s.status.as_ref().and_then(|s| s.observed_generation)
                        == s.metadata.generation =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    condition(&s, type_).unwrap().2
}

/// No route around the gateway: the server container is neither exposed nor probed on the pod
/// IP, a NetworkPolicy admits only the gateway port (and the admin port from the configured
/// metrics namespaces), and the status says what the operator cannot observe.
#[tokio::test]
async fn only_the_gateway_port_admits_traffic_to_a_governed_server() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("isolation").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server_yaml("fenced", GATEWAY))
        .await
        .unwrap();
    wait_phase(&servers, "fenced", ServerPhase::Ready).await;
    let message = wait_condition(
        &servers,
        "fenced",
        "NetworkIsolation",
        "Unknown",
        "EnforcementUnknown",
    )
    .await;
    assert!(
        message.contains("MCP_OPERATOR_NETWORK_POLICY_ENFORCED"),
        "{message}"
    );

    let np = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get("fenced")
        .await
        .expect("a NetworkPolicy for the gateway-enabled server");
    assert_eq!(
        np.owner_references()[0].kind,
        "MCPServer",
        "owned by the server"
    );
    assert_eq!(np.labels()["app.kubernetes.io/managed-by"], "mcp-runtime");
    let spec = np.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["mcpruntime.org/server"],
        "fenced"
    );
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let rules = spec.ingress.unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports: Vec<(Option<IntOrString>, bool)> = rules
        .iter()
        .map(|r| (r.ports.as_ref().unwrap()[0].port.clone(), r.from.is_some()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some(IntOrString::Int(8091)), false),
            (Some(IntOrString::Int(9103)), true)
        ],
        "only the gateway port from anywhere, the admin port from the metrics namespaces"
    );
    let from = rules[1].from.as_ref().unwrap()[0]
        .namespace_selector
        .clone()
        .unwrap()
        .match_expressions
        .unwrap();
    assert_eq!(
        from[0].values.as_deref(),
        Some(&[METRICS_NAMESPACE.to_owned()][..])
    );

    let pod = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("fenced")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let srv = pod.containers.iter().find(|c| c.name == "server").unwrap();
    assert!(
        srv.ports.is_none() && srv.readiness_probe.is_none() && srv.liveness_probe.is_none(),
        "the server container must not be exposed or probed on the pod IP: {srv:?}"
    );
    let gw = pod
        .containers
        .iter()
        .find(|c| c.name == "mcp-gateway")
        .unwrap();
    let probe = gw
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/ready"));
    let env: std::collections::BTreeMap<String, String> = gw
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["UPSTREAM_URL"], "http://127.0.0.1:8088");

    // Gateway off: no NetworkPolicy, and the status says the port is reachable.
    merge(
        &servers,
        "fenced",
        serde_json::json!({"spec": {"gateway": {"enabled": false}}}),
    )
    .await;
    wait_condition(
        &servers,
        "fenced",
        "NetworkIsolation",
        "False",
        "GatewayDisabled",
    )
    .await;
    eventually("the NetworkPolicy to be deleted", WAIT, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let left = names::<NetworkPolicy>(&client, &ns).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        }
    })
    .await
    .unwrap();
}

/// What only the operator's configuration may decide: header auth and the gateway image.
#[tokio::test]
async fn header_auth_and_the_gateway_image_are_the_operator_s_to_decide() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("operator-says").await;
    let servers = server_api(&client, &ns);
    servers
        .create(
            &PostParams::default(),
            &server_yaml(
                "headers",
                "  auth: {mode: header}\n  gateway: {enabled: true, image: 'evil.example/gateway:6.6.6'}\n",
            ),
        )
        .await
        .unwrap();
    let message = wait_condition(
        &servers,
        "headers",
        "IdentityHeadersTrusted",
        "False",
        "HeaderAuthNotAllowed",
    )
    .await;
    assert!(
        message.contains("MCP_OPERATOR_ALLOW_HEADER_AUTH"),
        "{message}"
    );
    let message = wait_condition(
        &servers,
        "headers",
        "GatewayImageAllowed",
        "False",
        "ImageNotAllowed",
    )
    .await;
    assert!(message.contains("evil.example/gateway:6.6.6"), "{message}");
    let gateway = |d: Deployment| {
        d.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.name == "mcp-gateway")
            .unwrap()
    };
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let gw = gateway(deployments.get("headers").await.unwrap());
    assert!(
        gw.image
            .as_deref()
            .unwrap()
            .starts_with("ghcr.io/mcp-runtime/mcp-gateway:"),
        "{:?}",
        gw.image
    );
    assert!(
        gw.env
            .iter()
            .flatten()
            .all(|e| e.name != "MCP_GATEWAY_TRUST_IDENTITY_HEADERS"),
        "the gateway must not trust identity headers: {:?}",
        gw.env
    );

    // An allow-listed image is honoured.
    merge(
        &servers,
        "headers",
        serde_json::json!({"spec": {"gateway": {"image": ALLOWED_GATEWAY_IMAGE}}}),
    )
    .await;
    wait_condition(
        &servers,
        "headers",
        "GatewayImageAllowed",
        "True",
        "ImageAllowed",
    )
    .await;
    let gw = gateway(deployments.get("headers").await.unwrap());
    assert_eq!(gw.image.as_deref(), Some(ALLOWED_GATEWAY_IMAGE));
}

fn is_forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Result<(), String> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        other => Err(format!("expected 403 Forbidden, got {other:?}")),
    }
}

/// The gateway reads its policy through the API as the server's ServiceAccount, with a Role
/// for exactly that ConfigMap; only the gateway container holds a credential.
#[tokio::test]
async fn the_gateway_alone_can_read_exactly_its_policy_through_the_api() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("policy-api").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server_yaml("reader", GATEWAY))
        .await
        .unwrap();
    wait_phase(&servers, "reader", ServerPhase::Ready).await;

    // The Role: one rule, exactly the policy ConfigMap, read verbs only; bound to the server's
    // ServiceAccount; owned and labelled like the other children.
    let role = Api::<Role>::namespaced(client.clone(), &ns)
        .get("reader-gateway-policy-reader")
        .await
        .unwrap();
    assert_eq!(
        role.rules.clone().unwrap(),
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec!["reader-gateway-policy".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            non_resource_urls: None,
        }]
    );
    let binding = Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .get("reader-gateway-policy-reader")
        .await
        .unwrap();
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "reader-gateway-policy-reader")
    );
    let subjects = binding.subjects.clone().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "reader", Some(ns.as_str()))
    );
    for meta in [&role.metadata, &binding.metadata] {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("MCPServer", "reader", Some(true))
        );
        assert_eq!(
            meta.labels.as_ref().unwrap()["mcpruntime.org/server"],
            "reader"
        );
    }

    // The pods: no automounted credential; the gateway alone gets the projected token and CA
    // where in-cluster clients look, and reads its policy from the API (no policy file).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("mcpruntime.org/server=reader"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("a pod of the server");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.service_account_name.as_deref(), Some("reader"));
    let volumes = spec.volumes.clone().unwrap_or_default();
    let api_volume = volumes
        .iter()
        .find(|v| v.name == "gateway-kube-api")
        .expect("the gateway's credential volume");
    let sources = api_volume
        .projected
        .as_ref()
        .unwrap()
        .sources
        .clone()
        .unwrap();
    let token = sources
        .iter()
        .find_map(|s| s.service_account_token.as_ref())
        .unwrap();
    assert_eq!(
        (token.path.as_str(), token.expiration_seconds),
        ("token", Some(3600))
    );
    let ca = sources.iter().find_map(|s| s.config_map.as_ref()).unwrap();
    assert_eq!(ca.name, "kube-root-ca.crt");
    let item = &ca.items.as_ref().unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        ("ca.crt", "ca.crt")
    );
    assert!(
        volumes.iter().all(|v| v.config_map.is_none()),
        "no mounted policy: {volumes:?}"
    );
    let container = |name: &str| {
        spec.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("container {name}"))
            .clone()
    };
    let gateway = container("mcp-gateway");
    let env: std::collections::BTreeMap<String, String> = gateway
        .env
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(
        env.get("MCP_GATEWAY_POLICY_CONFIGMAP").map(String::as_str),
        Some(format!("{ns}/reader-gateway-policy").as_str())
    );
    assert!(!env.contains_key("POLICY_FILE"), "{env:?}");
    let mounts = gateway.volume_mounts.unwrap();
    let mount = mounts
        .iter()
        .find(|m| m.name == "gateway-kube-api")
        .unwrap();
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/var/run/secrets/kubernetes.io/serviceaccount", Some(true))
    );
    let server = container("server");
    assert!(
        server.volume_mounts.unwrap_or_default().is_empty(),
        "the server container must get no volume"
    );
    assert!(
        server
            .env
            .unwrap_or_default()
            .iter()
            .all(|e| !e.name.starts_with("MCP_GATEWAY") && !e.name.starts_with("KUBE")),
        "the server container must get no API configuration"
    );

    // The Role works, and only for that ConfigMap: act as the server's ServiceAccount with a
    // TokenRequest token, exactly as the gateway does.
    let other: ConfigMap =
        yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {k: v}\n");
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let creds = c.env.service_account(&ns, "reader").await.unwrap();
    assert_eq!(creds.user, format!("system:serviceaccount:{ns}:reader"));
    let as_gateway: Api<ConfigMap> = Api::namespaced(creds.client().await, &ns);
    let by_name = "metadata.name=reader-gateway-policy";
    let cm = as_gateway.get("reader-gateway-policy").await.unwrap();
    assert!(cm.data.unwrap().contains_key("policy.json"));
    let list = as_gateway
        .list(&ListParams::default().fields(by_name))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let version = list.metadata.resource_version.unwrap();
    // A watch from the list's version sees the next policy write (a new session).
    let mut watch = Box::pin(
        as_gateway
            .watch(
                &WatchParams::default().fields(by_name).timeout(30),
                &version,
            )
            .await
            .unwrap(),
    );
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    sessions
        .create(
            &PostParams::default(),
            &session_yaml("alice-claude", "reader", &in_hours(1), ""),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut watch))
        .await
        .expect("a watch event within the timeout")
        .expect("the watch stays open")
        .unwrap();
    match event {
        WatchEvent::Modified(cm) => {
            assert_eq!(cm.name_any(), "reader-gateway-policy");
            assert!(cm.data.unwrap()["policy.json"].contains("alice-claude"));
        }
        other => panic!("expected the policy to be modified, got {other:?}"),
    }
    drop(watch);
    // Anything else is forbidden: another ConfigMap, the CA ConfigMap, listing or watching
    // without the name selector, writing the policy.
    is_forbidden(as_gateway.get("other").await).unwrap();
    is_forbidden(as_gateway.get("kube-root-ca.crt").await).unwrap();
    is_forbidden(as_gateway.list(&ListParams::default()).await).unwrap();
    is_forbidden(
        as_gateway
            .list(&ListParams::default().fields("metadata.name=other"))
            .await,
    )
    .unwrap();
    is_forbidden(
        as_gateway
            .watch(&WatchParams::default().timeout(5), "0")
            .await
            .map(|_| ()),
    )
    .unwrap();
    is_forbidden(
        as_gateway
            .patch(
                "reader-gateway-policy",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"policy.json": "{}"}})),
            )
            .await,
    )
    .unwrap();

    // Gateway off: the Role and its binding go, and so does the access.
    merge(
        &servers,
        "reader",
        serde_json::json!({"spec": {"gateway": {"enabled": false}}}),
    )
    .await;
    eventually("the policy reader Role and binding to go", WAIT, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let roles = names::<Role>(&client, &ns).await;
            let bindings = names::<RoleBinding>(&client, &ns).await;
            if roles.is_empty() && bindings.is_empty() {
                Ok(())
            } else {
                Err(format!("{roles:?} {bindings:?}"))
            }
        }
    })
    .await
    .unwrap();
    eventually("the ServiceAccount to lose its access", WAIT, || {
        let api = as_gateway.clone();
        async move {
            // The ConfigMap itself is gone too: 403 (not 404) shows the permission is.
            is_forbidden(api.get("reader-gateway-policy").await)
        }
    })
    .await
    .unwrap();
    assert_no_forbidden(c.operator.lock().unwrap().log());
}

#[tokio::test]
async fn a_server_is_ready_only_once_its_kwok_pods_are() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("readiness").await;
    let servers = server_api(&client, &ns);
    // Asks for more CPU than the kwok node has: the pod cannot be scheduled.
    servers
        .create(
            &PostParams::default(),
            &server_yaml("big", "  resources: {requests: {cpu: '64'}}\n"),
        )
        .await
        .unwrap();
    let s = wait_for(
        &servers,
        "big",
        "the unschedulable server to wait for its replica",
        WAIT,
        |s| {
            let st = s.status.as_ref();
            let msg = st.and_then(|s| s.message.clone()).unwrap_or_default();
            if st.and_then(|s| s.phase) == Some(ServerPhase::PartiallyReady)
                && msg.contains("0/1 replicas available")
            {
                Ok(())
            } else {
                Err(format!("{:?}: {msg}", st.and_then(|s| s.phase)))
            }
        },
    )
    .await;
    let st = s.status.unwrap();
    assert!(!st.deployment_ready && st.service_ready && st.ingress_ready);
    // It stays that way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = servers.get("big").await.unwrap();
    assert_eq!(s.status.unwrap().phase, Some(ServerPhase::PartiallyReady));

    merge(
        &servers,
        "big",
        serde_json::json!({"spec": {"resources": {"requests": {"cpu": "100m"}}}}),
    )
    .await;
    wait_phase(&servers, "big", ServerPhase::Ready).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running: Vec<Pod> = pods
        .list(&ListParams::default().labels("mcpruntime.org/server=big"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    assert!(!running.is_empty(), "Ready without a ready pod");
    assert!(
        running
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("kwok-node-0"))
    );
}

#[tokio::test]
async fn grant_and_session_changes_rerender_the_policy_and_their_statuses() {
    let c = cluster();
    let client = c.env.client().await;
    let server_ns = c.env.namespace("policy-srv").await;
    let access_ns = c.env.namespace("policy-acc").await;
    let servers = server_api(&client, &server_ns);
    // The server admits grants from the other namespace (see the test below for the default).
    servers
        .create(
            &PostParams::default(),
            &server_yaml(
                "payments",
                &format!("{GATEWAY}  access: {{allowedNamespaces: [{access_ns}]}}\n"),
            ),
        )
        .await
        .unwrap();
    let first = wait_phase(&servers, "payments", ServerPhase::Ready).await;
    let rev0 = first.status.unwrap().policy_revision.unwrap();

    // A grant in another namespace targets the server.
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &access_ns);
    grants
        .create(
            &PostParams::default(),
            &grant_yaml("alice", "payments", Some(&server_ns), ""),
        )
        .await
        .unwrap();
    let doc = wait_policy(
        &client,
        &server_ns,
        "payments",
        "the grant in the policy",
        |d| {
            d.grants
                .iter()
                .any(|g| g.name == "alice" && g.namespace == access_ns)
        },
    )
    .await;
    assert_ne!(doc.revision, rev0);
    let g = wait_access(&grants, "alice", AccessPhase::Active, WAIT).await;
    let st = g.status.unwrap();
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "ServerFound" && c.status == "True")
    );
    assert!(
        st.conditions
            .iter()
            .all(|c| c.observed_generation == g.metadata.generation)
    );
    // The server's status follows the policy.
    wait_for(
        &servers,
        "payments",
        "policyRevision to follow",
        WAIT,
        |s| {
            let r = s.status.as_ref().and_then(|s| s.policy_revision.clone());
            if r.as_deref() == Some(doc.revision.as_str()) {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await;

    // Disabling it: rendered disabled, status Disabled.
    merge(
        &grants,
        "alice",
        serde_json::json!({"spec": {"disabled": true}}),
    )
    .await;
    wait_policy(&client, &server_ns, "payments", "the grant disabled", |d| {
        d.grants.iter().any(|g| g.name == "alice" && g.disabled)
    })
    .await;
    wait_access(&grants, "alice", AccessPhase::Disabled, WAIT).await;

    // A grant for a server that does not exist yet, then the server appears.
    let local: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &server_ns);
    local
        .create(
            &PostParams::default(),
            &grant_yaml("early", "later", None, ""),
        )
        .await
        .unwrap();
    let g = wait_access(&local, "early", AccessPhase::ServerNotFound, WAIT).await;
    assert!(
        g.status
            .unwrap()
            .message
            .unwrap()
            .contains("does not exist")
    );
    servers
        .create(&PostParams::default(), &server_yaml("later", GATEWAY))
        .await
        .unwrap();
    wait_access(&local, "early", AccessPhase::Active, WAIT).await;
    wait_policy(
        &client,
        &server_ns,
        "later",
        "the early grant in the new server's policy",
        |d| d.grants.iter().any(|g| g.name == "early"),
    )
    .await;

    // Moving a grant re-renders both servers.
    merge(
        &local,
        "early",
        serde_json::json!({"spec": {"serverRef": {"name": "payments"}}}),
    )
    .await;
    wait_policy(&client, &server_ns, "later", "the moved grant gone", |d| {
        d.grants.is_empty()
    })
    .await;
    wait_policy(
        &client,
        &server_ns,
        "payments",
        "the moved grant present",
        |d| d.grants.iter().any(|g| g.name == "early"),
    )
    .await;

    // Sessions: rendered, revoked, deleted.
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &server_ns);
    sessions
        .create(
            &PostParams::default(),
            &session_yaml("alice-claude", "payments", &in_hours(24), ""),
        )
        .await
        .unwrap();
    wait_policy(
        &client,
        &server_ns,
        "payments",
        "the session in the policy",
        |d| {
            d.sessions
                .iter()
                .any(|s| s.name == "alice-claude" && !s.revoked)
        },
    )
    .await;
    wait_access(&sessions, "alice-claude", AccessPhase::Active, WAIT).await;
    merge(
        &sessions,
        "alice-claude",
        serde_json::json!({"spec": {"revoked": true}}),
    )
    .await;
    wait_policy(
        &client,
        &server_ns,
        "payments",
        "the session revoked",
        |d| {
            d.sessions
                .iter()
                .any(|s| s.name == "alice-claude" && s.revoked)
        },
    )
    .await;
    wait_access(&sessions, "alice-claude", AccessPhase::Revoked, WAIT).await;
    sessions
        .delete("alice-claude", &DeleteParams::default())
        .await
        .unwrap();
    grants
        .delete("alice", &DeleteParams::default())
        .await
        .unwrap();
    wait_policy(
        &client,
        &server_ns,
        "payments",
        "deleted grant and session gone",
        |d| d.sessions.is_empty() && d.grants.iter().all(|g| g.name != "alice"),
    )
    .await;

    // Deleting the server: its grants report it.
    servers
        .delete("payments", &DeleteParams::default())
        .await
        .unwrap();
    wait_access(&local, "early", AccessPhase::ServerNotFound, WAIT).await;
}

/// A grant or session counts only for servers in its own namespace, unless the server lists
/// its namespace in spec.access.allowedNamespaces.
#[tokio::test]
async fn grants_from_another_namespace_count_only_once_the_server_admits_it() {
    let c = cluster();
    let client = c.env.client().await;
    let server_ns = c.env.namespace("xns-a").await;
    let other_ns = c.env.namespace("xns-b").await;
    let servers = server_api(&client, &server_ns);
    servers
        .create(&PostParams::default(), &server_yaml("vault", GATEWAY))
        .await
        .unwrap();
    wait_phase(&servers, "vault", ServerPhase::Ready).await;
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &other_ns);
    grants
        .create(
            &PostParams::default(),
            &grant_yaml("sneaky", "vault", Some(&server_ns), ""),
        )
        .await
        .unwrap();
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &other_ns);
    let mut session = session_yaml("sneaky-session", "vault", &in_hours(24), "");
    session.spec.server_ref.namespace = Some(server_ns.clone());
    sessions
        .create(&PostParams::default(), &session)
        .await
        .unwrap();

    // Refused, with a condition naming the field to set.
    let g = wait_access(&grants, "sneaky", AccessPhase::Refused, WAIT).await;
    let accepted = g
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "CrossNamespaceNotAllowed")
    );
    assert!(
        accepted.message.contains("spec.access.allowedNamespaces")
            && accepted.message.contains(&other_ns),
        "{}",
        accepted.message
    );
    wait_access(&sessions, "sneaky-session", AccessPhase::Refused, WAIT).await;
    // The server has rendered (and named) them: they are not in its policy.
    let s = wait_for(
        &servers,
        "vault",
        "PolicyReady to name the refused grant",
        WAIT,
        |s| {
            let c = s
                .status
                .as_ref()
                .and_then(|st| st.conditions.iter().find(|c| c.type_ == "PolicyReady"));
            match c {
                Some(c)
                    if c.message
                        .contains(&format!("MCPAccessGrant {other_ns}/sneaky"))
                        && c.message
                            .contains(&format!("MCPAgentSession {other_ns}/sneaky-session")) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let doc = policy(&client, &server_ns, "vault").await.unwrap();
    assert_eq!(
        s.status.unwrap().policy_revision.as_deref(),
        Some(doc.revision.as_str())
    );
    assert!(
        doc.grants.is_empty() && doc.sessions.is_empty(),
        "refused objects must not reach the policy: {:?} {:?}",
        doc.grants,
        doc.sessions
    );

    // The server opts in: both count.
    merge(
        &servers,
        "vault",
        serde_json::json!({"spec": {"access": {"allowedNamespaces": [other_ns]}}}),
    )
    .await;
    wait_policy(
        &client,
        &server_ns,
        "vault",
        "the admitted grant and session",
        |d| {
            d.grants
                .iter()
                .any(|g| g.name == "sneaky" && g.namespace == other_ns)
                && d.sessions.iter().any(|s| s.name == "sneaky-session")
        },
    )
    .await;
    let g = wait_access(&grants, "sneaky", AccessPhase::Active, WAIT).await;
    assert!(
        g.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True" && c.reason == "NamespaceAllowed")
    );
    wait_access(&sessions, "sneaky-session", AccessPhase::Active, WAIT).await;

    // And out again.
    merge(
        &servers,
        "vault",
        serde_json::json!({"spec": {"access": null}}),
    )
    .await;
    wait_policy(&client, &server_ns, "vault", "the grant out again", |d| {
        d.grants.is_empty() && d.sessions.is_empty()
    })
    .await;
    wait_access(&grants, "sneaky", AccessPhase::Refused, WAIT).await;
}

/// RBAC lets the operator write ConfigMaps, Deployments, ... in every namespace; the generated
/// ValidatingAdmissionPolicy confines its ServiceAccount to objects labelled as managed by
/// mcp-runtime (old and new object). Tested as that ServiceAccount.
#[tokio::test]
async fn the_operator_s_service_account_may_write_only_managed_objects() {
    let c = cluster();
    let admin = c.env.client().await;
    let own_ns = c.env.namespace("vap-own").await;
    let other_ns = c.env.namespace("vap-other").await;
    let operator = c
        .env
        .service_account(
            mcp_runtime_operator::manifests::NAMESPACE,
            mcp_runtime_operator::manifests::NAME,
        )
        .await
        .unwrap()
        .client()
        .await;
    let foreign: ConfigMap =
        yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: foreign}\ndata: {k: v}\n");
    Api::<ConfigMap>::namespaced(admin.clone(), &other_ns)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let theirs: Api<ConfigMap> = Api::namespaced(operator.clone(), &other_ns);
    let refused = |r: Result<ConfigMap, kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("managed-by") => Ok(()),
        other => Err(format!(
            "expected a 403 from the admission policy, got {other:?}"
        )),
    };
    // The policy takes effect once the apiserver has loaded it.
    eventually(
        "patching an unlabelled ConfigMap to be refused",
        WAIT,
        || {
            let theirs = theirs.clone();
            async move {
                refused(
                    theirs
                        .patch(
                            "foreign",
                            &PatchParams::default(),
                            &Patch::Merge(serde_json::json!({"data": {"k": "stolen"}})),
                        )
                        .await,
                )
            }
        },
    )
    .await
    .unwrap();
    // Nor can it adopt the object by labelling it, or delete it.
    refused(
        theirs
            .patch(
                "foreign",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "mcp-runtime"}}})),
            )
            .await,
    )
    .unwrap();
    match theirs.delete("foreign", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("deleting a foreign ConfigMap must be refused: {other:?}"),
    }
    let unlabelled: ConfigMap =
        yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unlabelled}\n");
    refused(
        Api::<ConfigMap>::namespaced(operator.clone(), &own_ns)
            .create(&PostParams::default(), &unlabelled)
            .await,
    )
    .unwrap();
    // Labelled: created, changed, deleted.
    let ours: Api<ConfigMap> = Api::namespaced(operator.clone(), &own_ns);
    let labelled: ConfigMap = yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: labelled, labels: {app.kubernetes.io/managed-by: mcp-runtime}}\n",
    );
    ours.create(&PostParams::default(), &labelled)
        .await
        .unwrap();
    ours.patch(
        "labelled",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    ours.delete("labelled", &DeleteParams::default())
        .await
        .unwrap();
    let foreign = Api::<ConfigMap>::namespaced(admin.clone(), &other_ns)
        .get("foreign")
        .await
        .unwrap();
    assert_eq!(foreign.data.unwrap()["k"], "v", "untouched");

    // The operator, under the same policy, still does its whole job.
    let servers = server_api(&admin, &own_ns);
    servers
        .create(&PostParams::default(), &server_yaml("confined", GATEWAY))
        .await
        .unwrap();
    wait_phase(&servers, "confined", ServerPhase::Ready).await;
    assert_no_forbidden(c.operator.lock().unwrap().log());
}

#[tokio::test]
async fn a_session_turns_expired_at_expires_at_without_any_other_event() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("expiry").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server_yaml("clock", GATEWAY))
        .await
        .unwrap();
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(6))
        .unwrap();
    let expires = jiff::Timestamp::from_second(expires.as_second()).unwrap();
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    sessions
        .create(
            &PostParams::default(),
            &session_yaml("short", "clock", &expires.to_string(), ""),
        )
        .await
        .unwrap();
    wait_access(&sessions, "short", AccessPhase::Active, WAIT).await;
    assert!(
        jiff::Timestamp::now() < expires,
        "the set-up took longer than the session lives"
    );
    // Nothing else happens to it; it must flip on its own, right at expiresAt.
    let s = wait_access(
        &sessions,
        "short",
        AccessPhase::Expired,
        Duration::from_secs(30),
    )
    .await;
    let ready = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    let flipped = ready.last_transition_time.0;
    assert!(
        flipped >= expires,
        "turned Expired at {flipped}, before expiresAt {expires}"
    );
    let late = flipped.duration_since(expires);
    assert!(
        late < jiff::SignedDuration::from_secs(2),
        "turned Expired {late:?} after expiresAt"
    );
}

#[tokio::test]
async fn the_operator_repairs_drift_and_takes_back_fields_from_conflicting_writers() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("drift").await;
    let servers = server_api(&client, &ns);
    servers
        .create(&PostParams::default(), &server_yaml("steady", GATEWAY))
        .await
        .unwrap();
    wait_phase(&servers, "steady", ServerPhase::Ready).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // Another field manager forces its own replica count and image: a conflict the operator
    // resolves by applying (forced) again.
    let intruder = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "steady"},
        "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "server", "image": "evil:latest"}]}}}
    });
    let plain = deployments
        .patch(
            "steady",
            &PatchParams::apply("intruder"),
            &Patch::Apply(&intruder),
        )
        .await
        .expect_err("a non-forced apply conflicts with the operator's fields");
    assert!(plain.to_string().contains("conflict"), "{plain}");
    deployments
        .patch(
            "steady",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&intruder),
        )
        .await
        .unwrap();
    wait_for(
        &deployments,
        "steady",
        "the Deployment to be restored",
        WAIT,
        |d| {
            let spec = d.spec.as_ref().unwrap();
            let image = spec.template.spec.as_ref().unwrap().containers[0]
                .image
                .clone();
            if spec.replicas == Some(1) && image.as_deref() == Some("ghcr.io/acme/steady:1") {
                Ok(())
            } else {
                Err(format!("replicas {:?}, image {image:?}", spec.replicas))
            }
        },
    )
    .await;

    // A deleted Service comes back.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let uid = services.get("steady").await.unwrap().uid();
    services
        .delete("steady", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &services,
        "steady",
        "the Service to be recreated",
        WAIT,
        |s| {
            if s.uid() != uid {
                Ok(())
            } else {
                Err("still the old one".into())
            }
        },
    )
    .await;

    // An edited policy ConfigMap is rewritten with the sealed document.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    merge(
        &cms,
        "steady-gateway-policy",
        serde_json::json!({"data": {"policy.json": "{\"tampered\": true}"}}),
    )
    .await;
    wait_policy(&client, &ns, "steady", "the policy to be restored", |_| {
        true
    })
    .await;
    wait_phase(&servers, "steady", ServerPhase::Ready).await;
}

#[tokio::test]
async fn specs_only_the_operator_can_judge_are_errors_with_an_event() {
    let c = cluster();
    let client = c.env.client().await;
    let ns = c.env.namespace("invalid").await;
    let servers = server_api(&client, &ns);
    servers
        .create(
            &PostParams::default(),
            &server_yaml("clash", "  port: 9103\n  gateway: {enabled: true}\n"),
        )
        .await
        .unwrap();
    let s = wait_phase(&servers, "clash", ServerPhase::Error).await;
    let message = s.status.unwrap().message.unwrap();
    assert!(
        message.contains("spec.port: port 9103 is taken by the gateway's admin listener"),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let found = eventually("a Warning event InvalidSpec", WAIT, || {
        let events = events.clone();
        async move {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("InvalidSpec")
                        && e.type_.as_deref() == Some("Warning")
                })
                .ok_or_else(|| "none yet".to_owned())
        }
    })
    .await
    .unwrap();
    assert!(found.note.unwrap().contains("9103"));
    // Fixing the spec recovers.
    merge(
        &servers,
        "clash",
        serde_json::json!({"spec": {"port": 8088}}),
    )
    .await;
    wait_phase(&servers, "clash", ServerPhase::Ready).await;
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let c = cluster();
    let addr = c.metrics_addr.clone();
    let (status, body) = eventually("/readyz to be 200", WAIT, || {
        let addr = addr.clone();
        async move {
            match http_get(&addr, "/readyz") {
                Ok((200, body)) => Ok((200, body)),
                Ok((code, body)) => Err(format!("{code} {body}")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("leader"), "{body}");
    assert_eq!(http_get(&addr, "/healthz").unwrap().0, 200);
    let (code, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("mcp_operator_leader 1"), "{metrics}");
    assert!(
        metrics.contains("mcp_operator_reconcile_duration_seconds"),
        "{metrics}"
    );
}
