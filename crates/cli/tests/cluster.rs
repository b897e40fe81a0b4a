//! `mcp-runtime` against a real kube-apiserver (kube-testenv): apply, list, get, status,
//! delete, disable/enable and revoke/unrevoke, and the errors for a missing cluster, an unreachable one, missing CRDs
//! and denied access.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kube::api::{Api, Patch, PatchParams};
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer};
use mcp_runtime_kube_testenv::TestEnv;

fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("COLUMNS", "100")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .output()
        .expect("run mcp-runtime")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcp-cli-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The shared environment with the CRDs installed.
fn cluster() -> &'static TestEnv {
    static READY: OnceLock<()> = OnceLock::new();
    let env = TestEnv::shared();
    READY.get_or_init(|| {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(env.apply_crds(mcp_runtime_api::crd::all().into_iter().map(|(_, c)| c)))
                .expect("CRDs install")
        })
        .join()
        .unwrap();
    });
    env
}

const SERVER: &str = "apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: hello}
spec:
  image: ghcr.io/acme/hello:1
  gateway: {enabled: true}
  tools: [{name: echo, sideEffect: read}]
";

#[test]
fn without_a_cluster_the_error_says_how_to_configure_one() {
    let home = dir("nohome");
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(["server", "list"])
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("no Kubernetes cluster is configured"), "{err}");
    assert!(err.contains("hint: set KUBECONFIG"), "{err}");
}

#[test]
fn an_unreachable_cluster_is_named() {
    let d = dir("unreachable");
    let kubeconfig = d.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .unwrap();
    let err = fails(&run(&kubeconfig, &["server", "list", "-n", "x"]));
    assert!(
        err.contains("cannot reach the Kubernetes API at https://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("kubectl cluster-info"), "{err}");
}

#[tokio::test]
async fn missing_crds_are_reported_with_the_fix() {
    // A control plane of its own: the shared one has the CRDs.
    let env = TestEnv::start().expect("private testenv");
    let kubeconfig = env.kubeconfig();
    let err = tokio::task::spawn_blocking(move || {
        fails(&run(&kubeconfig, &["server", "list", "-n", "default"]))
    })
    .await
    .unwrap();
    assert!(
        err.contains("the mcpruntime.org CRDs are not installed"),
        "{err}"
    );
    assert!(err.contains("kubectl apply -f deploy/crds/"), "{err}");
}

#[tokio::test]
async fn denied_access_is_explained() {
    let env = cluster();
    let ns = env.namespace("cli-denied").await;
    let creds = env.service_account(&ns, "nobody").await.unwrap();
    let err = fails(&run(&creds.kubeconfig, &["server", "list", "-n", &ns]));
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains("hint: ask for RBAC"), "{err}");
}

#[tokio::test]
async fn servers_are_applied_listed_inspected_and_deleted() {
    let env = cluster();
    let kc = env.kubeconfig();
    let ns = env.namespace("cli-server").await;
    let d = dir("server");
    std::fs::write(d.join("hello.yaml"), SERVER).unwrap();
    let f = d.join("hello.yaml");
    let f = f.to_str().unwrap();

    let out = ok(&run(&kc, &["server", "apply", "-f", f, "-n", &ns]));
    assert_eq!(out, format!("mcpserver {ns}/hello created\n"));
    let out = ok(&run(&kc, &["server", "apply", "-f", f, "-n", &ns]));
    assert_eq!(out, format!("mcpserver {ns}/hello unchanged\n"));
    std::fs::write(d.join("hello.yaml"), SERVER.replace("hello:1", "hello:2")).unwrap();
    let out = ok(&run(&kc, &["server", "apply", "-f", f, "-n", &ns]));
    assert_eq!(out, format!("mcpserver {ns}/hello configured\n"));

    // Refused before anything is sent: the same rules as offline.
    let bad = d.join("bad.yaml");
    std::fs::write(
        &bad,
        SERVER
            .replace("name: hello", "name: bad")
            .replace("{enabled: true}", "{enabled: true, port: 8088}"),
    )
    .unwrap();
    let err = fails(&run(
        &kc,
        &["server", "apply", "-f", bad.to_str().unwrap(), "-n", &ns],
    ));
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(
        err.contains("spec.gateway.port: gateway.port must differ from port"),
        "{err}"
    );
    let err = fails(&run(&kc, &["access", "grant", "apply", "-f", f, "-n", &ns]));
    assert!(
        err.contains("apply it with `mcp-runtime server apply`"),
        "{err}"
    );

    let table = ok(&run(&kc, &["server", "list", "-n", &ns]));
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("NAME    PHASE   GATEWAY   ROUTE        POLICY   AGE"),
        "{table}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("hello   -       on        /hello/mcp   -"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(&kc, &["server", "list", "-n", &ns, "-o", "json"]))).unwrap();
    assert_eq!(json["items"][0]["spec"]["image"], "ghcr.io/acme/hello:2");
    let all = ok(&run(&kc, &["server", "list", "-A"]));
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.contains(&ns), "{all}");
    let yaml = ok(&run(
        &kc,
        &["server", "get", "hello", "-n", &ns, "-o", "yaml"],
    ));
    assert!(
        yaml.contains("kind: MCPServer") && yaml.contains("name: hello"),
        "{yaml}"
    );

    // Status before any operator ran, then as an operator would write it.
    let status = ok(&run(&kc, &["server", "status", "hello", "-n", &ns]));
    assert!(status.contains("no status yet"), "{status}");
    assert!(
        status.contains("is the mcp-runtime operator running?"),
        "{status}"
    );
    let servers: Api<MCPServer> = Api::namespaced(env.client().await, &ns);
    let generation = servers.get("hello").await.unwrap().metadata.generation;
    let now = jiff::Timestamp::now().to_string();
    servers
        .patch_status(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "phase": "PartiallyReady",
                "message": "waiting for Deployment: 0/1 replicas available",
                "observedGeneration": generation,
                "conditions": [{"type": "DeploymentReady", "status": "False", "reason": "ReplicasUnavailable",
                                "message": "0/1 replicas available", "lastTransitionTime": now,
                                "observedGeneration": generation}]
            }})),
        )
        .await
        .unwrap();
    let status = ok(&run(&kc, &["server", "status", "hello", "-n", &ns]));
    assert!(status.contains("Phase:    PartiallyReady"), "{status}");
    assert!(
        status.contains("DeploymentReady   False    ReplicasUnavailable"),
        "{status}"
    );
    assert!(!status.contains("has not yet observed"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        &kc,
        &["server", "status", "hello", "-n", &ns, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(json["status"]["phase"], "PartiallyReady");

    assert_eq!(
        ok(&run(&kc, &["server", "delete", "hello", "-n", &ns])),
        format!("mcpserver {ns}/hello deleted\n")
    );
    let err = fails(&run(&kc, &["server", "get", "hello", "-n", &ns]));
    assert!(
        err.contains(&format!("MCPServer {ns}/hello does not exist")),
        "{err}"
    );
    assert!(err.contains("mcp-runtime server list"), "{err}");
}

#[tokio::test]
async fn grants_and_sessions_are_applied_listed_deleted_and_revoked() {
    let env = cluster();
    let kc = env.kubeconfig();
    let ns = env.namespace("cli-access").await;
    let d = dir("access");
    let grant = d.join("grant.yaml");
    // Written by the offline command, applied by the online one.
    ok(&run(
        &kc,
        &[
            "access",
            "grant",
            "init",
            "alice-hello",
            "--server",
            "hello",
            "--human-id",
            "alice",
            "--trust",
            "high",
            "-n",
            &ns,
            "-o",
            grant.to_str().unwrap(),
        ],
    ));
    let session = d.join("session.yaml");
    ok(&run(
        &kc,
        &[
            "access",
            "session",
            "init",
            "alice-claude",
            "--server",
            "hello",
            "--human-id",
            "alice",
            "--agent-id",
            "claude",
            "-n",
            &ns,
            "-o",
            session.to_str().unwrap(),
        ],
    ));

    assert_eq!(
        ok(&run(
            &kc,
            &["access", "grant", "apply", "-f", grant.to_str().unwrap()]
        )),
        format!("mcpaccessgrant {ns}/alice-hello created\n")
    );
    let table = ok(&run(&kc, &["access", "grant", "list", "-n", &ns]));
    assert!(
        table.contains("alice-hello   hello    human=alice   high    false      -"),
        "{table}"
    );
    // Disabled and enabled again with a merge patch of spec.disabled.
    let grants: Api<MCPAccessGrant> = Api::namespaced(env.client().await, &ns);
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "grant", "disable", "alice-hello", "-n", &ns]
        )),
        format!("mcpaccessgrant {ns}/alice-hello disabled\n")
    );
    assert!(grants.get("alice-hello").await.unwrap().spec.disabled);
    let table = ok(&run(&kc, &["access", "grant", "list", "-n", &ns]));
    assert!(table.contains("high    true "), "{table}");
    assert!(
        ok(&run(
            &kc,
            &["access", "grant", "disable", "alice-hello", "-n", &ns]
        ))
        .contains("was already disabled")
    );
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "grant", "enable", "alice-hello", "-n", &ns]
        )),
        format!("mcpaccessgrant {ns}/alice-hello enabled\n")
    );
    assert!(!grants.get("alice-hello").await.unwrap().spec.disabled);
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "grant", "delete", "alice-hello", "-n", &ns]
        )),
        format!("mcpaccessgrant {ns}/alice-hello deleted\n")
    );
    let err = fails(&run(
        &kc,
        &["access", "grant", "delete", "alice-hello", "-n", &ns],
    ));
    assert!(err.contains("does not exist"), "{err}");

    assert_eq!(
        ok(&run(
            &kc,
            &[
                "access",
                "session",
                "apply",
                "-f",
                session.to_str().unwrap()
            ]
        )),
        format!("mcpagentsession {ns}/alice-claude created\n")
    );
    let yaml = ok(&run(
        &kc,
        &["access", "session", "list", "-n", &ns, "-o", "yaml"],
    ));
    assert!(yaml.contains("name: alice-claude"), "{yaml}");
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "session", "revoke", "alice-claude", "-n", &ns]
        )),
        format!("mcpagentsession {ns}/alice-claude revoked\n")
    );
    let sessions: Api<MCPAgentSession> = Api::namespaced(env.client().await, &ns);
    let s = sessions.get("alice-claude").await.unwrap();
    assert!(s.spec.revoked);
    let managers: Vec<String> = s
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        managers.iter().all(|m| m == "mcp-runtime-cli"),
        "{managers:?}"
    );
    assert!(
        ok(&run(
            &kc,
            &["access", "session", "revoke", "alice-claude", "-n", &ns]
        ))
        .contains("already revoked")
    );
    let table = ok(&run(&kc, &["access", "session", "list", "-n", &ns]));
    assert!(table.contains("REVOKED"), "{table}");
    assert!(table.contains("low     true "), "{table}");

    // Unrevoked, then deleted.
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "session", "unrevoke", "alice-claude", "-n", &ns]
        )),
        format!("mcpagentsession {ns}/alice-claude unrevoked\n")
    );
    assert!(!sessions.get("alice-claude").await.unwrap().spec.revoked);
    assert_eq!(
        ok(&run(
            &kc,
            &["access", "session", "delete", "alice-claude", "-n", &ns]
        )),
        format!("mcpagentsession {ns}/alice-claude deleted\n")
    );
    assert!(sessions.get_opt("alice-claude").await.unwrap().is_none());
    let err = fails(&run(
        &kc,
        &["access", "session", "unrevoke", "alice-claude", "-n", &ns],
    ));
    assert!(err.contains("does not exist"), "{err}");
}
