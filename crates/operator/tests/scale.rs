//! Scale benchmark (ignored by default; docs/benchmarks.md): N MCPServers (default 1 000, each
//! with the gateway on, one replica) created at once on a private kwok control plane; reports the
//! wall time until every server has a status, and until every one is Ready, the operator's peak
//! RSS, the CPU seconds each control-plane component and the operator used (and how busy the
//! machine was), and when the cluster's own stages (ReplicaSet and Pod created, Pod scheduled,
//! Pod Ready, Deployment available) happened, from the objects' timestamps. Run:
//!
//! ```sh
//! cargo test --release -p mcp-runtime-operator --test scale -- --ignored --nocapture
//! ```
//!
//! `MCP_SCALE_SERVERS`, `MCP_SCALE_READY_TIMEOUT` (s) and the operator's own
//! `MCP_OPERATOR_CONCURRENCY` (default 8) change the run.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use mcp_runtime_api::{MCPServer, ServerPhase};
use mcp_runtime_kube_testenv::TestEnv;

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / ticks_per_s)
}

/// Busy and total CPU time of the whole machine (all cores), in ticks, from /proc/stat.
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Where the CPU went during the run: each control-plane component and the operator (CPU
/// seconds), and how busy the whole machine was (other people's work included).
struct CpuUsage {
    ticks_per_s: f64,
    procs: Vec<(&'static str, u32)>,
    start: Vec<Option<f64>>,
    machine: Option<(f64, f64)>,
}

impl CpuUsage {
    fn start(env: &TestEnv, operator: u32) -> CpuUsage {
        let ticks_per_s = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        let mut procs = Vec::new();
        for (name, key) in [
            ("kube-apiserver", "MCP_TESTENV_APISERVER_PID"),
            ("etcd", "MCP_TESTENV_ETCD_PID"),
            (
                "kube-controller-manager",
                "MCP_TESTENV_CONTROLLER_MANAGER_PID",
            ),
            ("kube-scheduler", "MCP_TESTENV_SCHEDULER_PID"),
            ("kwok", "MCP_TESTENV_KWOK_PID"),
        ] {
            if let Some(pid) = env.var(key).and_then(|p| p.parse().ok()) {
                procs.push((name, pid));
            }
        }
        procs.push(("operator", operator));
        let start = procs
            .iter()
            .map(|(_, pid)| cpu_seconds(*pid, ticks_per_s))
            .collect();
        CpuUsage {
            ticks_per_s,
            procs,
            start,
            machine: machine_ticks(),
        }
    }

    fn print(&self, wall: Duration) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut line = String::new();
        let mut total = 0.0;
        for ((name, pid), start) in self.procs.iter().zip(&self.start) {
            if let (Some(a), Some(b)) = (start, cpu_seconds(*pid, self.ticks_per_s)) {
                total += b - a;
                line.push_str(&format!(" {name}={:.1}", b - a));
            }
        }
        let busy = match (self.machine, machine_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) / (t1 - t0) * 100.0,
            _ => f64::NAN,
        };
        eprintln!(
            "CPU_SECONDS wall={:.1} cores={cores}{line} total={total:.1} machine_busy={busy:.0}%",
            wall.as_secs_f64()
        );
    }
}

/// Seconds from `t0` to each timestamp (the API server's timestamps have 1 s resolution).
fn offsets(t0: jiff::Timestamp, times: impl Iterator<Item = Option<Time>>) -> Vec<f64> {
    let mut v: Vec<f64> = times
        .flatten()
        .map(|t| (t.0.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// When the cluster's stages happened, per object, from the objects' own timestamps: which stage
/// the wall time goes to (the controller-manager creating ReplicaSets and Pods, the scheduler
/// binding them, kwok marking them Ready, the Deployment controller counting them available).
async fn print_phases(client: &Client, nss: &[String], t0: jiff::Timestamp) {
    let (mut rs_created, mut pod_created, mut scheduled, mut ready, mut available) =
        (vec![], vec![], vec![], vec![], vec![]);
    for ns in nss {
        let lp = ListParams::default();
        let rss = Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .expect("list replicasets");
        rs_created.extend(rss.items.into_iter().map(|r| r.metadata.creation_timestamp));
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .expect("list pods");
        for pod in pods.items {
            pod_created.push(pod.metadata.creation_timestamp);
            let conds = pod.status.and_then(|s| s.conditions).unwrap_or_default();
            let at = |ty: &str| {
                conds
                    .iter()
                    .find(|c| c.type_ == ty && c.status == "True")
                    .and_then(|c| c.last_transition_time.clone())
            };
            scheduled.push(at("PodScheduled"));
            ready.push(at("Ready"));
        }
        let deps = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .expect("list deployments");
        for d in deps.items {
            let conds = d.status.and_then(|s| s.conditions).unwrap_or_default();
            available.push(
                conds
                    .iter()
                    .find(|c| c.type_ == "Available" && c.status == "True")
                    .and_then(|c| c.last_transition_time.clone()),
            );
        }
    }
    eprintln!("\nPHASES (s after the first create; p50 / p90 / last; count)");
    for (name, times) in [
        ("ReplicaSet created", rs_created),
        ("Pod created", pod_created),
        ("Pod scheduled", scheduled),
        ("Pod Ready", ready),
        ("Deployment available", available),
    ] {
        let v = offsets(t0, times.into_iter());
        eprintln!(
            "  {name:<22} {:>6.0} {:>6.0} {:>6.0}   n={}",
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 1.0),
            v.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (docs/benchmarks.md)"]
async fn thousand_servers_become_ready() {
    let n: usize = std::env::var("MCP_SCALE_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let namespaces = 10;
    // Two fake nodes: 1 000 pods is exactly one kwok node's capacity.
    let env = TestEnv::start_with_env(&[
        ("MCP_TESTENV_NODES", "2"),
        ("MCP_TESTENV_TIMEOUT_SCALE", "3"),
    ])
    .expect("a private testenv");
    install(&env).await;
    // The operator's own knob, passed through when set to compare concurrency levels; unset,
    // the operator runs with its default.
    let concurrency = std::env::var("MCP_OPERATOR_CONCURRENCY").ok();
    let mut operator_env = vec![("RUST_LOG", "warn")];
    if let Some(c) = &concurrency {
        operator_env.push(("MCP_OPERATOR_CONCURRENCY", c.as_str()));
    }
    let (operator, _addr) = start_operator(&env, "scale", &operator_env).await;
    let concurrency = concurrency.as_deref().unwrap_or("default");
    let client = env.client().await;
    let mut nss = Vec::new();
    for i in 0..namespaces {
        nss.push(env.namespace(&format!("scale-{i}")).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Whole seconds, like the API server's timestamps.
    let wall_start = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let cpu = CpuUsage::start(&env, operator.id());
    let started = Instant::now();
    let creates = futures::stream::iter(0..n)
        .map(|i| {
            let api: Api<MCPServer> = Api::namespaced(client.clone(), &nss[i % namespaces]);
            let server: MCPServer = yaml(&format!(
                "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: s{i}}}\nspec:\n  image: ghcr.io/acme/s:1\n  gateway: {{enabled: true}}\n  tools: [{{name: echo, sideEffect: read}}]\n"
            ));
            async move { api.create(&PostParams::default(), &server).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(creates.iter().all(Result::is_ok), "some creates failed");
    let created = started.elapsed();

    let all: Api<MCPServer> = Api::all(client.clone());
    let limit: u64 = std::env::var("MCP_SCALE_READY_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut with_status = None;
    let mut most_ready = 0;
    let ready_at = loop {
        let list = all
            .list(&ListParams::default())
            .await
            .expect("list servers");
        let statused = list.items.iter().filter(|s| s.status.is_some()).count();
        let ready = list
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(ServerPhase::Ready))
            .count();
        if with_status.is_none() && statused == n {
            with_status = Some(started.elapsed());
        }
        most_ready = most_ready.max(ready);
        if ready == n {
            break started.elapsed();
        }
        if Instant::now() >= deadline {
            let rss = peak_rss_mib(operator.id()).unwrap_or(f64::NAN);
            eprintln!(
                "\nRESULT servers={n} operator_concurrency={concurrency} created_in={:.1}s all_with_status={} all_ready=not within {limit}s (at most {most_ready} at once) operator_peak_rss={rss:.1}MiB",
                created.as_secs_f64(),
                with_status.map_or("never".to_owned(), |d: Duration| format!(
                    "{:.1}s",
                    d.as_secs_f64()
                )),
            );
            cpu.print(started.elapsed());
            print_phases(&client, &nss, wall_start).await;
            panic!(
                "only {ready}/{n} Ready after {limit} s (at most {most_ready}); see the kwok/controller-manager logs"
            );
        }
        eprintln!(
            "  {:>6.1}s  status {statused}/{n}  Ready {ready}/{n}",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let rss = peak_rss_mib(operator.id()).unwrap_or(f64::NAN);
    eprintln!(
        "\nRESULT servers={n} operator_concurrency={concurrency} created_in={:.1}s all_with_status={:.1}s all_ready={:.1}s operator_peak_rss={rss:.1}MiB",
        created.as_secs_f64(),
        with_status.unwrap_or(ready_at).as_secs_f64(),
        ready_at.as_secs_f64(),
    );
    cpu.print(ready_at);
    print_phases(&client, &nss, wall_start).await;
    assert_no_forbidden(operator.log());
}
