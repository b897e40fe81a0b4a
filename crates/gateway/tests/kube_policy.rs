//! The policy straight from the Kubernetes API: `mcp-gateway --policy-configmap` against a real
//! kube-apiserver (kube-testenv), authenticated as a ServiceAccount that may read only its one
//! ConfigMap. Changes apply without a file mount; broken documents keep the last good policy; a
//! forbidden ConfigMap fails closed with a message naming the missing permission; an API server
//! restart is survived.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mcp_runtime_kube_testenv::TestEnv;
use serde_json::Value;

const SERVER: &str = "test/py";
const CONFIG_MAP: &str = "py-gateway-policy";

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  tools:
    - {name: echo, sideEffect: read}
  session: {required: true}
  gateway: {enabled: true}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: alice, agentID: claude}
  maxTrust: high
  allowedSideEffects: [read]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-alice, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice, agentID: claude}, consentedTrust: low, expiresAt: '2099-01-01T00:00:00Z'}
";

fn policy(revoked: bool) -> String {
    if revoked {
        render(&POLICY.replace("consentedTrust: low", "consentedTrust: low, revoked: true"))
    } else {
        render(POLICY)
    }
}

async fn put_policy(api: &Api<ConfigMap>, document: &str) {
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP},
        "data": {"policy.json": document},
    });
    api.patch(
        CONFIG_MAP,
        &PatchParams::apply("kube-policy-test").force(),
        &Patch::Apply(&cm),
    )
    .await
    .expect("writing the policy ConfigMap");
}

/// Calls `echo` as alice (stateless era) until the outcome is `want_allowed`.
fn call_until(stack: &Stack, want_allowed: bool, what: &str) -> Vec<Value> {
    let token = token(SERVER, Some("alice"), Some("claude"), Some("s-alice"), 600);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, lines) = stack.client(
            "stateless",
            Some(&token),
            &["call", "echo", r#"{"text":"hi"}"#],
        );
        if (code == 0) == want_allowed {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer (exit {code}): {lines:?}\ngateway log:\n{}",
            stack.gateway.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(admin: &str) -> Value {
    serde_json::from_slice(&curl(&[&format!("{admin}/config/status")]).stdout).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_its_policy_config_map_through_the_api() {
    let env = TestEnv::shared();
    let ns = env.namespace("gw-policy").await;
    let client = env.client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    put_policy(&config_maps, &policy(false)).await;
    let other = ConfigMap {
        metadata: ObjectMeta {
            name: Some("other-policy".to_owned()),
            ..Default::default()
        },
        data: Some([("policy.json".to_owned(), policy(false))].into()),
        ..Default::default()
    };
    config_maps
        .create(&PostParams::default(), &other)
        .await
        .unwrap();

    // Exactly the permission the operator grants a gateway: its one ConfigMap, read-only.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("py-gateway-policy-reader".to_owned()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            resource_names: Some(vec![CONFIG_MAP.to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: role.metadata.clone(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: "py-gateway-policy-reader".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "py".to_owned(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let credentials = env.service_account(&ns, "py").await.unwrap();
    let secrets = tempdir("kube-token");
    let token_file = secrets.join("token");
    std::fs::write(&token_file, &credentials.token).unwrap();
    let ca_file = env.ca_file();
    let source_args = |config_map: &str| -> Vec<String> {
        vec![
            "--policy-configmap".to_owned(),
            format!("{ns}/{config_map}"),
            "--kube-api-url".to_owned(),
            env.api_url().to_owned(),
            "--kube-token-file".to_owned(),
            token_file.display().to_string(),
            "--kube-ca-file".to_owned(),
            ca_file.display().to_string(),
        ]
    };
    let args = source_args(CONFIG_MAP);
    let stack = Stack::start_with_policy_source(
        "kube-policy",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // Loaded from the API: alice's call is allowed.
    call_until(&stack, true, "first call with the policy from the API");

    // Revoking her session in the ConfigMap takes effect without any file mount.
    put_policy(&config_maps, &policy(true)).await;
    let lines = call_until(&stack, false, "revocation through the ConfigMap");
    let error = lines.iter().find_map(|l| l.get("error")).unwrap();
    assert_eq!(error["data"]["reason"], "session_revoked", "{lines:?}");

    // A broken document keeps the last good (revoking) policy and says why.
    put_policy(&config_maps, "{ not json").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&stack.admin)["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("not valid JSON")
    {
        assert!(
            Instant::now() < deadline,
            "bad document not reported: {}",
            status(&stack.admin)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    call_until(&stack, false, "last good policy kept");

    // A gateway pointed at a ConfigMap its account may not read fails closed and says why.
    let forbidden_args = source_args("other-policy");
    let (port, admin_port) = (free_port(), free_port());
    let mut gw = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
    gw.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin_port}"),
        "--upstream",
        "http://127.0.0.1:9",
    ])
    .args(&forbidden_args);
    let dir = tempdir("kube-policy-forbidden");
    let mut forbidden = spawn(gw, dir.join("gateway.log"));
    wait_port(
        admin_port,
        &mut forbidden,
        "mcp-gateway (forbidden ConfigMap)",
    );
    let admin = format!("http://127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let last_error = loop {
        let s = status(&admin);
        if let Some(e) = s["last_error"].as_str() {
            break e.to_owned();
        }
        assert!(Instant::now() < deadline, "no error reported: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        last_error.contains("refused to list ConfigMap")
            && last_error.contains("other-policy")
            && last_error.contains("get, list and watch"),
        "{last_error}"
    );
    assert_eq!(status(&admin)["ready"], false);
    let (code, _, body) = post(
        &format!("http://127.0.0.1:{port}/mcp"),
        &[("content-type", "application/json")],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    );
    assert_eq!(code, 503, "no policy, no service: {body}");
    drop(forbidden);

    // The watch survives an API server restart: a change made afterwards still arrives.
    env.restart_apiserver(Duration::from_secs(1)).await.unwrap();
    put_policy(&config_maps, &policy(false)).await;
    call_until(&stack, true, "un-revocation after the API server restarted");
}
