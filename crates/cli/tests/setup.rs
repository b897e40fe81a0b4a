//! `mcp-runtime setup`, `status` and `cluster doctor` through the real binary against a real
//! kube-apiserver of their own (kube-testenv: kwok makes scheduled pods Ready; no container
//! runs). One control plane, one test, in order: dry run, install, re-run, status, doctor, and a
//! setup that cannot become ready.

mod platform_env;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use mcp_runtime_kube_testenv::TestEnv;
use serde_json::{Value, json};

fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("COLUMNS", "100")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("MCP_RUNTIME_REGISTRY")
        .env_remove("RUST_LOG")
        .output()
        .expect("run mcp-runtime");
    eprintln!(
        "mcp-runtime {} -> {:?} in {:.1}s",
        args.join(" "),
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// kwok's fake node is tainted and labelled `type=kwok` (docs/testenv.md).
const KWOK: [&str; 4] = [
    "--toleration",
    "kwok.x-k8s.io/node:NoSchedule",
    "--node-selector",
    "type=kwok",
];

/// A volume for each claim (the testenv has no provisioner): 5Gi for Sentinel's data, 10Gi for
/// PostgreSQL's.
async fn volumes(client: &kube::Client) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for (name, size) in [("setup-test-5g", "5Gi"), ("setup-test-10g", "10Gi")] {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": format!("/tmp/{name}")},
            }
        }))
        .unwrap();
        pvs.create(&PostParams::default(), &pv).await.unwrap();
    }
}

async fn secret_data(client: &kube::Client, ns: &str, name: &str) -> Vec<Vec<u8>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("secret {ns}/{name}: {e}"));
    s.data.unwrap().into_values().map(|b| b.0).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_installs_idempotently_status_and_doctor_report_and_a_timeout_explains() {
    let env = TestEnv::start().expect("a private testenv");
    let kubeconfig = env.kubeconfig();
    let client = env.client().await;
    let k = kubeconfig.clone();
    let cli = move |args: Vec<String>| {
        let k = k.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run(&k, &args)
            })
            .await
            .unwrap()
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let with_kwok = |list: &[&str]| {
        let mut v = args(list);
        v.extend(args(&KWOK));
        v
    };

    // 1. The dry run prints every object, Secrets redacted, and creates nothing.
    let out = cli(args(&["setup", "--dry-run", "-o", "yaml"])).await;
    let yaml = ok(&out);
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds[0], "CustomResourceDefinition", "{kinds:?}");
    for kind in [
        "Namespace",
        "ClusterRole",
        "Deployment",
        "StatefulSet",
        "Secret",
        "PersistentVolumeClaim",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    assert!(
        yaml.contains("<redacted: a new Ed25519 signing key"),
        "{yaml}"
    );
    assert!(!yaml.contains("PRIVATE KEY"), "a key in the dry run");
    assert!(stderr(&out).contains("nothing applied"), "{}", stderr(&out));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(
        crds.get_opt("mcpservers.mcpruntime.org")
            .await
            .unwrap()
            .is_none()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("mcp-runtime").await.unwrap().is_none());

    // 2. Setup applies everything and waits until it is ready.
    volumes(&client).await;
    let out = cli(with_kwok(&["setup", "--timeout", "3m"])).await;
    ok(&out);
    let progress = stderr(&out);
    for line in [
        "[1/7] CRDs … applied",
        "[2/7] namespaces … applied",
        "[3/7] operator … applied",
        "[4/7] secrets … applied",
        "[5/7] sentinel … applied",
        "[6/7] platform … applied",
        "[7/7] readiness … waiting for 4 workloads",
        "deployment mcp-runtime/mcp-runtime-operator ready (2/2)",
        "statefulset mcp-runtime/mcp-platform-postgres ready (1/1)",
        "is installed and ready",
    ] {
        assert!(progress.contains(line), "no `{line}` in:\n{progress}");
    }
    let key = secret_data(&client, "mcp-runtime", "mcp-platform-signing-key").await;
    let pem = String::from_utf8(key[0].clone()).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    assert!(
        !progress.contains(pem.lines().nth(1).unwrap()),
        "the key was printed"
    );
    let public = secret_data(&client, "mcp-runtime", "mcp-gateway-token-keys").await;
    let signing = mcp_runtime_token::SigningKey::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(public[0].clone()).unwrap(),
        signing.public_pem()
    );
    let password = secret_data(&client, "mcp-runtime", "mcp-platform-postgres").await;

    // 3. A second run changes nothing, says so, and keeps every generated value.
    let out = cli(with_kwok(&["setup"])).await;
    ok(&out);
    let progress = stderr(&out);
    assert!(progress.contains("nothing changed"), "{progress}");
    for step in [
        "CRDs",
        "namespaces",
        "operator",
        "secrets",
        "sentinel",
        "platform",
    ] {
        assert!(
            progress.contains(&format!("{step} … unchanged")),
            "{step} changed on the second run:\n{progress}"
        );
    }
    assert_eq!(
        secret_data(&client, "mcp-runtime", "mcp-platform-signing-key").await,
        key
    );
    assert_eq!(
        secret_data(&client, "mcp-runtime", "mcp-platform-postgres").await,
        password
    );

    // 4. Status: every component ready, and an MCPServer of a team namespace.
    let ns = env.namespace("setup-team").await;
    let dir = std::env::temp_dir().join(format!("mcp-setup-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = dir.join("hello.yaml");
    std::fs::write(
        &server,
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {name: hello}\nspec:\n  image: ghcr.io/acme/hello:1\n  gateway: {enabled: true}\n  tools: [{name: echo, sideEffect: read}]\n",
    )
    .unwrap();
    ok(&cli(args(&[
        "server",
        "apply",
        "-f",
        server.to_str().unwrap(),
        "-n",
        &ns,
    ]))
    .await);
    let out = cli(args(&["status", "-o", "json"])).await;
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["healthy"], true, "{report:#}");
    let components: Vec<(&str, &str)> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["component"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        components,
        [
            ("operator", "ready"),
            ("sentinel", "ready"),
            ("platform", "ready"),
            ("postgres", "ready")
        ]
    );
    assert_eq!(
        report["components"][2]["version"],
        env!("CARGO_PKG_VERSION")
    );
    let servers = report["servers"].as_array().unwrap();
    assert!(
        servers
            .iter()
            .any(|s| s["namespace"] == ns.as_str() && s["name"] == "hello" && s["gateway"] == "on"),
        "{report:#}"
    );
    let table = ok(&cli(args(&["status"])).await);
    assert!(
        table.contains("COMPONENT") && table.contains("MCPSERVER"),
        "{table}"
    );

    // 5. Doctor: everything the cluster can pass passes; no registry given is a failure with
    //    its fix, and so is an unreachable one.
    let out = cli(args(&["cluster", "doctor", "-o", "json"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doctor: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let verdict = |name: &str| -> (String, Value) {
        let c = doctor["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {doctor:#}"));
        (c["result"].as_str().unwrap().to_owned(), c.clone())
    };
    for name in [
        "kubernetes API",
        "CRD mcpservers.mcpruntime.org",
        "CRD mcpaccessgrants.mcpruntime.org",
        "CRD mcpagentsessions.mcpruntime.org",
        "operator",
        "network policy",
    ] {
        assert_eq!(verdict(name).0, "pass", "{:#}", verdict(name).1);
    }
    assert!(
        verdict("network policy").1["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be verified from the API")
    );
    assert_eq!(verdict("ingress class").0, "warn");
    let (result, registry) = verdict("registry");
    assert_eq!(result, "fail");
    assert!(
        registry["fix"]
            .as_str()
            .unwrap()
            .contains("--registry HOST"),
        "{registry:#}"
    );
    let out = cli(args(&[
        "cluster",
        "doctor",
        "--registry",
        "127.0.0.1:1",
        "--insecure",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  registry") && text.contains("fix: check that 127.0.0.1:1 is up"),
        "{text}"
    );
    assert!(text.contains("PASS  operator"), "{text}");

    // 5b. The platform's generated RBAC covers what `mcp-platform --kube` does (kwok runs no
    //     containers, so the real binary runs here, as the mcp-platform ServiceAccount): a team
    //     (its namespace, RoleBindings to the admin/view ClusterRoles, the gateways' token-keys
    //     Secret), a grant in it, and the team's servers listed.
    let sa = env
        .service_account("mcp-runtime", "mcp-platform")
        .await
        .expect("a token of the platform's ServiceAccount");
    let platform = platform_env::Platform::start(
        "setup-rbac",
        &["--kube"],
        &[("KUBECONFIG", sa.kubeconfig.to_str().unwrap())],
    );
    let admin = platform.login(platform_env::ADMIN, platform_env::ADMIN_PASSWORD);
    let (status, answer) = platform.api(
        "POST",
        "/v1/teams",
        Some(&admin),
        Some(json!({"slug": "rbac", "display_name": "RBAC", "owner": platform_env::ADMIN})),
    );
    assert_eq!(status, 201, "{answer}\n{}", platform.log());
    let keys = secret_data(&client, "mcp-team-rbac", "mcp-gateway-token-keys").await;
    assert_eq!(
        keys.len(),
        1,
        "the token-keys Secret holds the platform's public key"
    );
    let (status, answer) = platform.api(
        "POST",
        "/v1/teams/rbac/grants",
        Some(&admin),
        Some(json!({"name": "alice", "spec": {
            "serverRef": {"name": "hello"},
            "subject": {"humanID": "alice@example.com"},
        }})),
    );
    assert_eq!(status, 201, "{answer}\n{}", platform.log());
    let (status, answer) = platform.api("GET", "/v1/teams/rbac/servers", Some(&admin), None);
    assert_eq!(status, 200, "{answer}\n{}", platform.log());
    drop(platform);

    // 6. A component that cannot become ready: setup times out, names it and says why; status
    //    then exits 5.
    let out = cli(args(&[
        "setup",
        "--timeout",
        "10s",
        "--skip",
        "sentinel,platform",
        "--toleration",
        "kwok.x-k8s.io/node:NoSchedule",
        "--node-selector",
        "mcp-runtime-test=no-such-node",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not ready in time"), "{err}");
    assert!(
        err.contains("deployment mcp-runtime/mcp-runtime-operator:"),
        "{err}"
    );
    assert!(err.contains("not scheduled"), "{err}");
    assert!(err.contains("node affinity/selector"), "{err}");
    assert!(err.contains("run setup again"), "{err}");
    let out = cli(args(&["status", "--skip", "sentinel,platform"])).await;
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("operator is not ready"),
        "{}",
        stdout(&out)
    );

    env.stop(false).ok();
}
