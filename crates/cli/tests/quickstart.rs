//! The quickstart of docs/install.md through the real `mcp-runtime` binary, against a real
//! kube-apiserver with kwok nodes (kube-testenv), a real registry (registry-testenv) and the
//! real operator:
//!
//!   setup -> status -> server build image -> registry push -> pipeline generate --registry
//!   -> pipeline deploy
//!
//! and the MCPServer is Ready with its pods referencing the pushed image by the registry's
//! host. Also `registry provision` on the same cluster, and `pipeline deploy`'s exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use mcp_runtime_api::{MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::{Process, TestEnv};
use mcp_runtime_operator::manifests;
use mcp_runtime_registry_testenv::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;

const KWOK_TOLERATIONS: &str =
    r#"[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]"#;
const KWOK_NODE_SELECTOR: &str = r#"{"type":"kwok"}"#;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcp-quickstart-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `mcp-runtime ARGS` in `dir` against the test cluster.
fn run(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("COLUMNS", "100")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run mcp-runtime");
    eprintln!(
        "$ mcp-runtime {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// `mcp-runtime-operator`, built next to `mcp-runtime` (`cargo build --workspace`).
fn operator_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .parent()
        .expect("the binary has a directory")
        .join("mcp-runtime-operator");
    assert!(
        path.exists(),
        "{} is not built; run `cargo build -p mcp-runtime-operator` (scripts/test.sh builds the \
         workspace)",
        path.display()
    );
    path
}

async fn apply<K>(api: Api<K>, obj: &K)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("mcp-runtime-tests").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {}: {e}", obj.name_any()));
}

struct Cluster {
    env: &'static TestEnv,
    _operator: std::sync::Mutex<Process>,
    /// What `setup` and `status` printed, for the quickstart test to check.
    setup: Output,
    status: Output,
}

/// kwok's fake node is tainted and labelled `type=kwok` (docs/testenv.md).
const SETUP_ON_KWOK: [&str; 4] = [
    "--toleration",
    "kwok.x-k8s.io/node:NoSchedule",
    "--node-selector",
    "type=kwok",
];

/// The shared cluster, installed by `mcp-runtime setup` (then checked with `status`) as the
/// quickstart does, plus one operator process. kwok runs no containers: the operator pod that
/// `setup` deploys is Ready but does nothing, so the operator binary runs here, as the
/// ServiceAccount and with the RBAC `setup` created, placing the servers' pods on the kwok node.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let env = TestEnv::shared();
        let kubeconfig = env.kubeconfig();
        let work = scratch("setup");
        // The testenv has no volume provisioner: volumes for Sentinel's (5Gi) and PostgreSQL's
        // (10Gi) claims.
        block_on(async {
            for (name, size) in [("quickstart-5g", "5Gi"), ("quickstart-10g", "10Gi")] {
                apply(Api::all(client(env).await), &host_path_volume(name, size)).await;
            }
        });
        let mut args = vec!["setup", "--timeout", "3m"];
        args.extend_from_slice(&SETUP_ON_KWOK);
        let setup = run(&work, &kubeconfig, &args);
        ok(&setup);
        let status = run(&work, &kubeconfig, &["status"]);
        let operator = std::thread::spawn(move || {
            block_on(async move {
                let creds = env
                    .service_account(manifests::NAMESPACE, manifests::NAME)
                    .await
                    .expect("the operator's ServiceAccount, created by setup");
                let listen = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .unwrap();
                let mut cmd = Command::new(operator_binary());
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("KUBECONFIG", &creds.kubeconfig)
                    .env(
                        "POD_NAME",
                        format!("operator-quickstart-{}", std::process::id()),
                    )
                    .env("MCP_OPERATOR_LISTEN", listen.to_string())
                    .env("MCP_OPERATOR_POD_TOLERATIONS", KWOK_TOLERATIONS)
                    .env("MCP_OPERATOR_POD_NODE_SELECTOR", KWOK_NODE_SELECTOR)
                    .env("MCP_CLUSTER_NAME", "testenv")
                    .env("RUST_LOG", "info");
                let log = env.log_dir().join("operator-quickstart.log");
                env.spawn("operator-quickstart", cmd, &log)
                    .expect("spawn the operator")
            })
        })
        .join()
        .expect("set-up");
        Cluster {
            env,
            _operator: std::sync::Mutex::new(operator),
            setup,
            status,
        }
    })
}

fn host_path_volume(name: &str, size: &str) -> PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": format!("/tmp/{name}")},
        },
    }))
    .unwrap()
}

async fn client(env: &TestEnv) -> Client {
    env.client().await
}

const SERVERS_YAML: &str = "version: v1
servers:
  - name: my-server
    namespace: quickstart
    spec:
      image: my-server:v1.0.0
      port: 8088
      tools: [{name: echo, sideEffect: read}]
      gateway: {enabled: true}
";

#[test]
fn quickstart_build_push_generate_deploy_gives_a_ready_server_on_the_pushed_image() {
    let cluster = cluster();
    let kubeconfig = cluster.env.kubeconfig();
    // `setup` installed everything and `status` says so (exit 0: every component ready).
    ok(&cluster.setup);
    let status = ok(&cluster.status);
    assert!(status.contains("mcp-runtime-operator"), "{status}");
    let registry = Registry::start();
    let host = registry.host();
    let work = scratch("project");

    // A directory with the server's binary. Any Linux executable will do: kwok runs no
    // containers, and the image is checked by reading it back from the registry.
    std::fs::create_dir_all(work.join("bin")).unwrap();
    std::fs::copy("/bin/true", work.join("bin/my-server")).unwrap();
    std::fs::create_dir_all(work.join(".mcp")).unwrap();
    std::fs::write(work.join(".mcp/servers.yaml"), SERVERS_YAML).unwrap();

    let built = ok(&run(
        &work,
        &kubeconfig,
        &[
            "server",
            "build",
            "image",
            "--dir",
            "bin",
            "--name",
            "my-server",
            "--tag",
            "v1.0.0",
            "-o",
            "json",
        ],
    ));
    let built: serde_json::Value = serde_json::from_str(&built).unwrap();
    let digest = built["digest"].as_str().unwrap().to_owned();
    assert_eq!(built["layout"], "target/images/my-server");
    assert!(work.join("target/images/my-server/index.json").exists());

    // `registry push` finds the layout where `server build image` wrote it.
    let pushed = ok(&run(
        &work,
        &kubeconfig,
        &[
            "registry",
            "push",
            "--image",
            "my-server:v1.0.0",
            "--registry",
            &host,
            "--insecure",
        ],
    ));
    assert!(pushed.contains(&digest), "{pushed}");
    let manifest = registry.get("/v2/my-server/manifests/v1.0.0");
    assert_eq!(manifest.status, 200, "the registry serves the pushed tag");
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(digest.as_str())
    );

    ok(&run(
        &work,
        &kubeconfig,
        &[
            "pipeline",
            "generate",
            "--dir",
            ".mcp",
            "--output",
            "manifests/",
            "--registry",
            &host,
        ],
    ));
    let generated = std::fs::read_to_string(work.join("manifests/my-server.yaml")).unwrap();
    let expected_image = format!("{host}/my-server:v1.0.0");
    assert!(
        generated.contains(&format!("image: {expected_image}")),
        "{generated}"
    );

    let deployed = run(
        &work,
        &kubeconfig,
        &[
            "pipeline",
            "deploy",
            "--dir",
            "manifests/",
            "--timeout",
            "120s",
        ],
    );
    let stdout = ok(&deployed);
    assert!(
        stdout.contains("mcpserver quickstart/my-server created"),
        "{stdout}"
    );
    assert!(stdout.contains("1 MCPServer(s) Ready"), "{stdout}");
    let stderr = String::from_utf8_lossy(&deployed.stderr);
    assert!(stderr.contains("namespace quickstart created"), "{stderr}");
    assert!(
        stderr.contains("mcpserver quickstart/my-server Ready"),
        "{stderr}"
    );

    block_on(async {
        let client = client(cluster.env).await;
        let server = Api::<MCPServer>::namespaced(client.clone(), "quickstart")
            .get("my-server")
            .await
            .unwrap();
        let status = server.status.expect("status");
        assert_eq!(status.phase, Some(ServerPhase::Ready));
        // The server's pods run the pushed image, by the registry's host.
        let deployments = Api::<Deployment>::namespaced(client, "quickstart")
            .list(&ListParams::default())
            .await
            .unwrap();
        let images: Vec<String> = deployments
            .items
            .iter()
            .flat_map(|d| d.spec.clone().unwrap().template.spec.unwrap().containers)
            .filter_map(|c| c.image)
            .collect();
        assert!(
            images.contains(&expected_image),
            "no pod template runs {expected_image}: {images:?}"
        );
    });

    // Deploying again changes nothing and is still Ready.
    let again = ok(&run(
        &work,
        &kubeconfig,
        &[
            "pipeline",
            "deploy",
            "--dir",
            "manifests/",
            "--timeout",
            "60s",
        ],
    ));
    assert!(
        again.contains("mcpserver quickstart/my-server unchanged"),
        "{again}"
    );
}

#[test]
fn pipeline_deploy_exit_codes_tell_not_applied_from_not_ready() {
    let cluster = cluster();
    let kubeconfig = cluster.env.kubeconfig();
    let work = scratch("exit-codes");

    // An invalid manifest: nothing is applied, exit 1.
    std::fs::create_dir_all(work.join("bad")).unwrap();
    std::fs::write(
        work.join("bad/a.yaml"),
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {name: ok-one, namespace: exits}\nspec: {image: x:1}\n",
    )
    .unwrap();
    std::fs::write(
        work.join("bad/b.yaml"),
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {name: no-image, namespace: exits}\nspec: {image: \"\"}\n",
    )
    .unwrap();
    let out = run(&work, &kubeconfig, &["pipeline", "deploy", "--dir", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(stderr.contains("spec.image"), "{stderr}");
    let exists = block_on(async {
        Api::<MCPServer>::namespaced(client(cluster.env).await, "exits")
            .get_opt("ok-one")
            .await
            .unwrap()
    });
    assert!(
        exists.is_none(),
        "a valid manifest was applied next to an invalid one"
    );

    // Applied, but not Ready within the timeout: exit 5.
    std::fs::create_dir_all(work.join("slow")).unwrap();
    std::fs::write(
        work.join("slow/a.yaml"),
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {name: slow, namespace: exits}\nspec: {image: x:1}\n",
    )
    .unwrap();
    let out = run(
        &work,
        &kubeconfig,
        &["pipeline", "deploy", "--dir", "slow", "--timeout", "0s"],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mcpserver exits/slow: not Ready after 0s"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mcpserver exits/slow created"));
}

#[test]
fn registry_provision_deploys_an_available_registry() {
    let cluster = cluster();
    let kubeconfig = cluster.env.kubeconfig();
    let work = scratch("provision");

    // Without a cluster: the manifests.
    let dry = ok(&run(
        &work,
        Path::new("/nonexistent"),
        &["registry", "provision", "--dry-run"],
    ));
    for want in [
        "kind: Namespace",
        "kind: PersistentVolumeClaim",
        "kind: Deployment",
        "kind: Service",
        "image: docker.io/library/registry:2.8.3",
        "nodePort: 30500",
    ] {
        assert!(dry.contains(want), "--dry-run lacks `{want}`:\n{dry}");
    }

    // kube-testenv has no storage provisioner: a volume for the claim to bind to.
    block_on(async {
        apply(
            Api::all(client(cluster.env).await),
            &host_path_volume("registry-test", "10Gi"),
        )
        .await;
    });

    let out = run(
        &work,
        &kubeconfig,
        &[
            "registry",
            "provision",
            "--timeout",
            "120s",
            "--pod-tolerations",
            KWOK_TOLERATIONS,
            "--pod-node-selector",
            KWOK_NODE_SELECTOR,
        ],
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("registry available in namespace registry"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubelets pull: localhost:30500/NAME:TAG"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deployment registry/registry applied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deployment registry/registry: available"),
        "{stderr}"
    );

    block_on(async {
        let d = Api::<Deployment>::namespaced(client(cluster.env).await, "registry")
            .get("registry")
            .await
            .unwrap();
        assert_eq!(d.status.unwrap().available_replicas, Some(1));
    });

    // A second run is a no-op that still waits and succeeds.
    ok(&run(
        &work,
        &kubeconfig,
        &[
            "registry",
            "provision",
            "--timeout",
            "60s",
            "--pod-tolerations",
            KWOK_TOLERATIONS,
            "--pod-node-selector",
            KWOK_NODE_SELECTOR,
        ],
    ));
}
