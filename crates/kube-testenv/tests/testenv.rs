//! The test environment itself: it starts, serves RBAC for real, and hands out namespaces.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, PostParams};
use mcp_runtime_kube_testenv::TestEnv;

#[tokio::test]
async fn shared_env_serves_a_kwok_node_and_fresh_namespaces() {
    let env = TestEnv::shared();
    let client = env.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["kwok-node-0"]);
    let a = env.namespace("testenv-a").await;
    let b = env.namespace("testenv-a").await;
    assert_ne!(a, b);
    assert!(a.starts_with("testenv-a-"), "{a}");
}

#[tokio::test]
async fn service_account_clients_are_bound_by_rbac() {
    let env = TestEnv::shared();
    let ns = env.namespace("testenv-rbac").await;
    let creds = env.service_account(&ns, "nobody").await.unwrap();
    assert_eq!(creds.user, format!("system:serviceaccount:{ns}:nobody"));
    let client = creds.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let err = cms
        .create(&PostParams::default(), &ConfigMap::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other}"),
    }
}

#[tokio::test]
async fn eventually_reports_what_it_waited_for() {
    let err =
        mcp_runtime_kube_testenv::eventually("the moon", Duration::from_millis(250), || async {
            Err::<(), _>("still full".to_owned())
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the moon") && err.contains("still full"),
        "{err}"
    );
}

#[test]
fn missing_binaries_fail_with_the_installer_named() {
    let empty = std::env::temp_dir().join(format!("mcp-testenv-nobin-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let err = match TestEnv::start_with_binaries(&empty) {
        Ok(_) => panic!("started without binaries"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&empty);
    assert!(err.contains("scripts/testenv/install.sh"), "{err}");
    assert!(err.contains("not installed"), "{err}");
}

#[tokio::test]
async fn the_apiserver_can_be_restarted_alone() {
    let env = TestEnv::start().expect("private testenv");
    let ns = env.namespace("before-restart").await;
    env.restart_apiserver(Duration::from_millis(500))
        .await
        .expect("restart");
    // Data survived (etcd kept running) and the apiserver answers again.
    let client = env.client().await;
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    assert!(nss.get_opt(&ns).await.unwrap().is_some());
    let pids = std::fs::read_to_string(env.dir().join("pids")).unwrap();
    assert_eq!(
        pids.lines()
            .filter(|l| l.starts_with("kube-apiserver "))
            .count(),
        1,
        "{pids}"
    );
}

#[tokio::test]
async fn kwok_renews_node_leases_so_nodes_stay_ready() {
    use k8s_openapi::api::coordination::v1::Lease;
    let env = TestEnv::shared();
    let leases: Api<Lease> = Api::namespaced(env.client().await, "kube-node-lease");
    let lease = mcp_runtime_kube_testenv::eventually(
        "kwok to create the Lease of kwok-node-0",
        Duration::from_secs(30),
        || {
            let leases = leases.clone();
            async move {
                leases
                    .get_opt("kwok-node-0")
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "no Lease yet".to_owned())
            }
        },
    )
    .await
    .unwrap();
    assert!(lease.spec.unwrap().renew_time.is_some());
}
