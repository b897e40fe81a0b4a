//! The figures of docs/benchmarks.md ("Sentinel: ingest, latency, memory"), each against a
//! baseline measured in the same run, through the real binaries and real parts. They measure,
//! they do not judge: every test here is `#[ignore]`d and asserts only that the run itself
//! worked (every event accepted, every decision found). Run them with
//! `scripts/bench-sentinel.sh` (release builds, `--nocapture`).
//!
//! "Per core" is events per CPU-second of the process doing the work, read from
//! `/proc/<pid>/stat`: the load generator runs on the same 2-core machine, so wall-clock rates
//! alone would mostly measure the competition for the cores.
#![cfg(feature = "kafka")]
#![allow(clippy::print_stdout)] // the figures are the output

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::gateway::{Gateway, Upstream};
use common::*;
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use mcp_runtime_sentinel::ingest;
use mcp_runtime_sentinel::kafka::{KafkaConfig, KafkaSink};
use mcp_runtime_sentinel::redact::{Mode, Redactor};
use mcp_runtime_sentinel_testenv::{ClickHouse, KafkaBroker};
use serde_json::json;

const TOPIC: &str = "mcp.events";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of a process so far (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Peak resident memory of a process so far (`VmHWM`), in MiB.
fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One throughput measurement.
struct Run {
    events: usize,
    wall: Duration,
    cpu_seconds: f64,
}

impl Run {
    fn new(events: usize, wall: Duration, cpu_seconds: f64) -> Run {
        Run {
            events,
            wall,
            cpu_seconds,
        }
    }

    fn row(&self, label: &str) {
        println!(
            "| {label} | {:.0} | {:.2} | **{:.0}** |",
            self.events as f64 / self.wall.as_secs_f64(),
            self.cpu_seconds,
            self.events as f64 / self.cpu_seconds.max(0.01)
        );
    }
}

/// A latency distribution.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort();
        Latencies(samples)
    }

    fn at(&self, p: f64) -> String {
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        format!("{:.0} ms", self.0[i].as_secs_f64() * 1e3)
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} | {} |",
            self.at(0.5),
            self.at(0.9),
            self.at(0.99),
            self.at(1.0)
        )
    }
}
const BATCH: usize = 500;
/// HTTP clients posting at once, and concurrent sends of the baseline.
const CLIENTS: usize = 4;

/// Batches of gateway events shaped like production ones (1000 sessions, 200 humans, 50 tools).
fn bodies(n: usize) -> Vec<String> {
    (0..n / BATCH)
        .map(|b| {
            let events: Vec<AuditEvent<'_>> = (b * BATCH..(b + 1) * BATCH)
                .map(|i| {
                    let deny = i % 5 == 0;
                    let mut e = AuditEvent::new(
                        "bench-gateway",
                        format!("server-{}", i % 20),
                        format!("team-{}", i % 4),
                        "POST",
                        if deny {
                            Decision::Deny
                        } else {
                            Decision::Allow
                        },
                        if deny { "trust_too_low" } else { "allowed" },
                    );
                    e.event_id = next_event_id(e.time);
                    e.human_id = Some(format!("human-{}", i % 200).into());
                    e.agent_id = Some(format!("agent-{}", i % 7).into());
                    e.session_id = Some(format!("session-{}", i % 1000).into());
                    e.tool = Some(format!("tool-{}", i % 50).into());
                    e.rpc_method = Some("tools/call".into());
                    e.latency_ms = 1.25;
                    e
                })
                .collect();
            json!({ "events": events }).to_string()
        })
        .collect()
}

#[test]
#[ignore = "a benchmark: scripts/bench-sentinel.sh"]
fn ingest_into_kafka_against_the_raw_producer() {
    let n = env_usize("MCP_BENCH_EVENTS", 200_000);
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 3);
    let bodies = bodies(n);
    let bytes: usize = bodies.iter().map(String::len).sum();
    println!(
        "\n{} events in {} batches of {BATCH} ({:.0} bytes per event as posted), {CLIENTS} at once",
        bodies.len() * BATCH,
        bodies.len(),
        bytes as f64 / (bodies.len() * BATCH) as f64
    );

    // Baseline: the ingest's own producer (same librdkafka settings: idempotent, acks=all,
    // lz4, keyed by session), fed records parsed beforehand: Kafka's cost without HTTP,
    // parsing and redaction.
    let redactor = Redactor::new(Mode::Replace, &[]);
    let now = jiff::Timestamp::now();
    let batches: Vec<Vec<_>> = bodies
        .iter()
        .map(|b| {
            ingest::parse(b.as_bytes(), &redactor, now)
                .unwrap()
                .records
                .into_iter()
                .map(|a| a.record)
                .collect()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Its own topic, so the processor below drains only what the ingest wrote.
    broker.create_topic("bench.baseline", 3);
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.bootstrap(),
        topic: "bench.baseline".into(),
        group: "unused".into(),
        delivery_timeout: Duration::from_secs(30),
        batch_size: BATCH,
        flush_interval: Duration::from_secs(1),
    })
    .unwrap();
    // Warm the connection and metadata, as the ingest's first request would.
    runtime.block_on(sink.send(&batches[0], &[])).unwrap();
    let me = std::process::id();
    let (cpu0, t0) = (cpu_seconds(me), Instant::now());
    runtime.block_on(async {
        let (sink, batches) = (&sink, &batches);
        let lanes = (0..CLIENTS).map(|lane| async move {
            for records in batches.iter().skip(lane).step_by(CLIENTS) {
                sink.send(records, &[]).await.unwrap();
            }
        });
        futures::future::join_all(lanes).await;
    });
    let baseline = Run::new(n, t0.elapsed(), cpu_seconds(me) - cpu0);

    // The ingest role: the same events posted over HTTP by CLIENTS clients.
    let ingest = Sentinel::start_args(
        "bench-ingest",
        &["--role", "ingest", "--kafka-brokers", &broker.bootstrap()],
    );
    let (status, _) = ingest.request("POST", "/v1/ingest/events", Some(KEY), &bodies[0]);
    assert_eq!(status, 200, "warm-up batch");
    let (cpu0, t0) = (cpu_seconds(ingest.pid()), Instant::now());
    std::thread::scope(|scope| {
        for lane in 0..CLIENTS {
            let bodies = &bodies;
            let port = ingest.port;
            scope.spawn(move || {
                for body in bodies.iter().skip(lane).step_by(CLIENTS) {
                    let (status, answer) = http(
                        port,
                        "POST",
                        "/v1/ingest/events",
                        &[("x-api-key", KEY)],
                        body,
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{answer}");
                }
            });
        }
    });
    let through_ingest = Run::new(n, t0.elapsed(), cpu_seconds(ingest.pid()) - cpu0);

    println!(
        "\n| into Kafka (3 partitions) | events/s (wall) | CPU-seconds | events per CPU-second |"
    );
    println!("|---|---|---|---|");
    baseline.row("raw producer (baseline, in-process)");
    through_ingest.row("`mcp-sentinel --role ingest` over HTTP");

    // The processor draining the topic (every event once; the warm-up batch was posted twice)
    // into ClickHouse, then the API answering rollups over it.
    let clickhouse = ClickHouse::start();
    let store_args = [
        "--store",
        "clickhouse",
        "--clickhouse-url",
        &clickhouse.http_url(),
        "--clickhouse-database",
        "bench_drain",
    ];
    let bootstrap = broker.bootstrap();
    let mut processor_args = vec!["--role", "processor", "--kafka-brokers", &bootstrap];
    processor_args.extend(store_args);
    let mut api_args = vec!["--role", "api"];
    api_args.extend(store_args);
    let api = Sentinel::start_args("bench-drain-api", &api_args);
    let t0 = Instant::now();
    let processor = Sentinel::start_args("bench-processor", &processor_args);
    let stored = || {
        let (status, stats) = api.request("GET", "/v1/stats", Some(READ_KEY), "");
        assert_eq!(status, 200, "{stats}");
        stats["events"].as_u64().unwrap_or(0)
    };
    let deadline = t0 + Duration::from_secs(600);
    while stored() < n as u64 {
        assert!(
            Instant::now() < deadline,
            "the processor stored only {} of {n}",
            stored()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let drained = Run::new(n + BATCH, t0.elapsed(), cpu_seconds(processor.pid()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored(), n as u64, "events stored twice");
    let usage_cpu0 = cpu_seconds(api.pid());
    for window in ["1h", "24h", "7d"] {
        let (status, usage) = api.request(
            "GET",
            &format!("/v1/usage?window={window}"),
            Some(READ_KEY),
            "",
        );
        assert_eq!(status, 200, "{usage}");
    }
    println!(
        "| `--role processor`: Kafka -> ClickHouse (records read, incl. {BATCH} duplicates) | {:.0} | {:.2} | **{:.0}** |",
        drained.events as f64 / drained.wall.as_secs_f64(),
        drained.cpu_seconds,
        drained.events as f64 / drained.cpu_seconds.max(0.01)
    );
    println!(
        "\npeak RSS (VmHWM) under this load: ingest {:.1} MiB, processor {:.1} MiB, API {:.1} MiB (after 3 usage rollups, {:.2} CPU-s); load average at the end: {}",
        vm_hwm_mib(ingest.pid()),
        vm_hwm_mib(processor.pid()),
        vm_hwm_mib(api.pid()),
        cpu_seconds(api.pid()) - usage_cpu0,
        load_average()
    );
}

/// How long a gateway decision takes to be visible in the analytics API, for `calls` calls one
/// after another (each made when the previous one was seen), with the gateway's call time
/// (the floor) as baseline.
fn decision_to_visible(
    label: &str,
    dir: &Path,
    gateway: &Gateway,
    api: &Sentinel,
    calls: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut visible = Vec::with_capacity(calls);
    let mut answered = Vec::with_capacity(calls);
    for i in 0..calls {
        let agent = format!("bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let (status, body) = gateway.call(&[("x-mcp-agent-id", &agent)]);
        answered.push(t0.elapsed());
        assert!(status == 200, "{status} {body}");
        let query = format!("/v1/events?agent={agent}&limit=1");
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let (status, page) = api.request("GET", &query, Some(READ_KEY), "");
            assert_eq!(status, 200, "{page}");
            if page["events"].as_array().is_some_and(|e| !e.is_empty()) {
                visible.push(t0.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: decision {i} not visible after 30 s (logs in {})",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    (answered, visible)
}

fn latency_rows(label: &str, answered: Vec<Duration>, visible: Vec<Duration>) {
    println!(
        "{}",
        Latencies::new(answered).row(&format!("{label}: gateway answered (baseline)"))
    );
    println!(
        "{}",
        Latencies::new(visible).row(&format!("{label}: visible in the API"))
    );
}

#[test]
#[ignore = "a benchmark: scripts/bench-sentinel.sh"]
fn decision_to_visible_embedded_and_scale() {
    let calls = env_usize("MCP_BENCH_CALLS", 200);
    println!(
        "\n{calls} tools/call decisions, one at a time; defaults: gateway flush 200 ms, processor flush 1000 ms"
    );
    println!("\n| path | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    let upstream = Upstream::start();

    // Embedded: one mcp-sentinel (ingest + API + SQLite).
    let embedded = Sentinel::start("bench-embedded", Backend::Sqlite);
    let dir = temp_dir("bench-embedded-gateway");
    let gateway = Gateway::start(&dir, &upstream, &embedded, &[]);
    let (answered, visible) = decision_to_visible("embedded", &dir, &gateway, &embedded, calls);
    latency_rows("embedded (SQLite)", answered, visible);
    let embedded_rss = vm_hwm_mib(embedded.pid());
    drop(gateway);

    // Scale: ingest -> Kafka -> processor -> ClickHouse <- API, each its own process.
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 3);
    let clickhouse = ClickHouse::start();
    let ingest = Sentinel::start_args(
        "bench-scale-ingest",
        &["--role", "ingest", "--kafka-brokers", &broker.bootstrap()],
    );
    let store_args = [
        "--store",
        "clickhouse",
        "--clickhouse-url",
        &clickhouse.http_url(),
        "--clickhouse-database",
        "bench_latency",
    ];
    let bootstrap = broker.bootstrap();
    let mut processor_args = vec!["--role", "processor", "--kafka-brokers", &bootstrap];
    processor_args.extend(store_args);
    let processor = Sentinel::start_args("bench-scale-processor", &processor_args);
    let mut api_args = vec!["--role", "api"];
    api_args.extend(store_args);
    let api = Sentinel::start_args("bench-scale-api", &api_args);
    let dir = temp_dir("bench-scale-gateway");
    let gateway = Gateway::start(&dir, &upstream, &ingest, &[]);
    let (answered, visible) = decision_to_visible("scale", &dir, &gateway, &api, calls);
    latency_rows("scale (Kafka + ClickHouse)", answered, visible);
    println!(
        "\npeak RSS (VmHWM) after this load: embedded {embedded_rss:.1} MiB; ingest {:.1} MiB, processor {:.1} MiB, API {:.1} MiB; load average {}",
        vm_hwm_mib(ingest.pid()),
        vm_hwm_mib(processor.pid()),
        vm_hwm_mib(api.pid()),
        load_average()
    );
}
