//! Shared set-up of the operator's integration tests: one real control plane per test binary
//! (kube-testenv), the CRDs, the operator's generated RBAC, and one `mcp-runtime-operator`
//! process acting as its ServiceAccount (so a missing permission fails a test). Tests use their
//! own namespaces; every wait is bounded.
#![allow(dead_code)]

pub mod gateway;
pub mod platform;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use mcp_runtime_api::{AccessPhase, MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::{Process, TestEnv, eventually};
use mcp_runtime_operator::manifests;
use mcp_runtime_policy::PolicyDocument;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const WAIT: Duration = Duration::from_secs(60);
pub const KWOK_TOLERATIONS: &str =
    r#"[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]"#;
pub const KWOK_NODE_SELECTOR: &str = r#"{"type":"kwok"}"#;
/// The one gateway image the shared operator lets an MCPServer pick.
pub const ALLOWED_GATEWAY_IMAGE: &str = "ghcr.io/acme/allowed-gateway:1";
/// Namespaces the shared operator admits to the gateways' admin port.
pub const METRICS_NAMESPACE: &str = "monitoring";
/// Configuration of the shared operator beyond the kwok settings (header auth stays off, the
/// default, and NetworkPolicy enforcement unknown).
pub const SHARED_OPERATOR_ENV: &[(&str, &str)] = &[
    (
        "MCP_OPERATOR_GATEWAY_IMAGE_ALLOWLIST",
        ALLOWED_GATEWAY_IMAGE,
    ),
    ("MCP_OPERATOR_METRICS_NAMESPACES", METRICS_NAMESPACE),
];

/// The shared cluster with CRDs, RBAC and one running operator.
pub struct Cluster {
    pub env: &'static TestEnv,
    pub operator: std::sync::Mutex<Process>,
    pub metrics_addr: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Runs `f` to completion on a private runtime (set-up shared by tests that each have their
/// own runtime).
pub fn block_on<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("set-up thread panicked")
}

pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let env = TestEnv::shared();
        let (operator, metrics_addr) = block_on(move || async move {
            install(env).await;
            start_operator(env, "shared", SHARED_OPERATOR_ENV).await
        });
        Cluster {
            env,
            operator: std::sync::Mutex::new(operator),
            metrics_addr,
        }
    })
}

/// Applies the CRDs and the operator's namespace, RBAC and admission policy exactly as
/// generated.
pub async fn install(env: &TestEnv) {
    env.apply_crds(mcp_runtime_api::crd::all().into_iter().map(|(_, c)| c))
        .await
        .expect("CRDs install");
    let client = env.client().await;
    let pp = PatchParams::apply("mcp-runtime-tests").force();
    let rbac = manifests::rbac();
    apply_cluster(&client, &pp, &manifests::namespace()).await;
    apply_cluster(&client, &pp, &rbac.cluster_role).await;
    apply_cluster(&client, &pp, &rbac.cluster_role_binding).await;
    apply_ns(&client, &pp, &rbac.service_account).await;
    apply_ns(&client, &pp, &rbac.role).await;
    apply_ns(&client, &pp, &rbac.role_binding).await;
    let (policy, binding) = manifests::admission_policy();
    apply_cluster(&client, &pp, &policy).await;
    apply_cluster(&client, &pp, &binding).await;
}

async fn apply_cluster<K>(client: &Client, pp: &PatchParams, obj: &K)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .patch(&obj.name_any(), pp, &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", obj.name_any()));
}

async fn apply_ns<K>(client: &Client, pp: &PatchParams, obj: &K)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), &obj.namespace().expect("namespaced"))
        .patch(&obj.name_any(), pp, &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", obj.name_any()));
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `mcp-runtime-operator` as the operator's ServiceAccount, with the kwok toleration
/// and node selector given through its test/dev configuration. Returns the process and the
/// address of its metrics listener.
pub async fn start_operator(
    env: &TestEnv,
    name: &str,
    extra_env: &[(&str, &str)],
) -> (Process, String) {
    let creds = env
        .service_account(manifests::NAMESPACE, manifests::NAME)
        .await
        .expect("operator ServiceAccount token");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-runtime-operator"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &creds.kubeconfig)
        .env(
            "POD_NAME",
            format!("operator-{name}-{}", std::process::id()),
        )
        .env("MCP_OPERATOR_LISTEN", &addr)
        .env("MCP_OPERATOR_POD_TOLERATIONS", KWOK_TOLERATIONS)
        .env("MCP_OPERATOR_POD_NODE_SELECTOR", KWOK_NODE_SELECTOR)
        .env("MCP_CLUSTER_NAME", "testenv")
        .env("RUST_LOG", "info");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let log: PathBuf = env.log_dir().join(format!("operator-{name}.log"));
    let process = env
        .spawn(&format!("operator-{name}"), cmd, &log)
        .expect("spawn the operator");
    (process, addr)
}

pub fn server_api(client: &Client, ns: &str) -> Api<MCPServer> {
    Api::namespaced(client.clone(), ns)
}

/// Waits until `check` accepts the object `name` (re-read every 100 ms).
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&K) -> Result<(), String>,
) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let result = eventually(what, timeout, || {
        let api = api.clone();
        let name = name.to_owned();
        let check = &check;
        async move {
            let obj = api
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{name} does not exist"))?;
            check(&obj).map(|()| obj)
        }
    })
    .await;
    match result {
        Ok(obj) => obj,
        Err(e) => panic!("{e}"),
    }
}

pub async fn wait_phase(api: &Api<MCPServer>, name: &str, phase: ServerPhase) -> MCPServer {
    wait_for(
        api,
        name,
        &format!("MCPServer {name} to be {phase:?}"),
        WAIT,
        |s| {
            let st = s.status.as_ref();
            if st.and_then(|s| s.phase) == Some(phase)
                && st.and_then(|s| s.observed_generation) == s.metadata.generation
            {
                Ok(())
            } else {
                Err(format!(
                    "phase {:?}, message {:?}",
                    st.and_then(|s| s.phase),
                    st.and_then(|s| s.message.clone())
                ))
            }
        },
    )
    .await
}

/// Waits until a grant or session shows `phase` for its current generation.
pub async fn wait_access<K>(api: &Api<K>, name: &str, phase: AccessPhase, timeout: Duration) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + HasAccessStatus,
{
    wait_for(
        api,
        name,
        &format!("{name} to be {phase:?}"),
        timeout,
        |o| {
            let st = o.access_status();
            if st.and_then(|s| s.phase) == Some(phase)
                && st.and_then(|s| s.observed_generation) == o.meta().generation
            {
                Ok(())
            } else {
                Err(format!(
                    "phase {:?}, message {:?}",
                    st.and_then(|s| s.phase),
                    st.and_then(|s| s.message.clone())
                ))
            }
        },
    )
    .await
}

pub trait HasAccessStatus {
    fn access_status(&self) -> Option<&mcp_runtime_api::AccessStatus>;
}
impl HasAccessStatus for mcp_runtime_api::MCPAccessGrant {
    fn access_status(&self) -> Option<&mcp_runtime_api::AccessStatus> {
        self.status.as_ref()
    }
}
impl HasAccessStatus for mcp_runtime_api::MCPAgentSession {
    fn access_status(&self) -> Option<&mcp_runtime_api::AccessStatus> {
        self.status.as_ref()
    }
}

/// The policy document in a server's ConfigMap, verified (revision recomputed).
pub async fn policy(client: &Client, ns: &str, server: &str) -> Option<PolicyDocument> {
    try_policy(client, ns, server)
        .await
        .map(|d| d.expect("a valid, sealed policy document"))
}

/// The policy ConfigMap's document: None when absent, Some(Err) when it does not verify.
pub async fn try_policy(
    client: &Client,
    ns: &str,
    server: &str,
) -> Option<Result<PolicyDocument, String>> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = cms
        .get_opt(&format!("{server}-gateway-policy"))
        .await
        .expect("read ConfigMap")?;
    let text = cm.data?.remove("policy.json")?;
    Some(PolicyDocument::from_json(text.as_bytes()).map_err(|e| e.to_string()))
}

/// Waits until the server's policy satisfies `check`.
pub async fn wait_policy(
    client: &Client,
    ns: &str,
    server: &str,
    what: &str,
    check: impl Fn(&PolicyDocument) -> bool,
) -> PolicyDocument {
    let result = eventually(what, WAIT, || {
        let client = client.clone();
        let check = &check;
        async move {
            match try_policy(&client, ns, server).await {
                Some(Err(e)) => Err(format!("the document does not verify: {e}")),
                Some(Ok(doc)) if check(&doc) => Ok(doc),
                Some(Ok(doc)) => Err(format!(
                    "revision {}, grants {:?}, sessions {:?}",
                    doc.revision,
                    doc.grants
                        .iter()
                        .map(|g| format!("{}/{}", g.namespace, g.name))
                        .collect::<Vec<_>>(),
                    doc.sessions
                        .iter()
                        .map(|s| format!("{}/{} revoked={}", s.namespace, s.name, s.revoked))
                        .collect::<Vec<_>>()
                )),
                None => Err("no policy ConfigMap".into()),
            }
        }
    })
    .await;
    match result {
        Ok(doc) => doc,
        Err(e) => panic!("{e}"),
    }
}

/// Reads a manifest from YAML (tests write objects the way users do).
pub fn yaml<K: DeserializeOwned>(text: &str) -> K {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad test manifest: {e}\n{text}"))
}

/// Fails if the operator logged an RBAC denial.
pub fn assert_no_forbidden(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was denied by RBAC:\n{}",
        denied.join("\n")
    );
}

/// GET over plain HTTP/1.1 (the operator's metrics listener); returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
