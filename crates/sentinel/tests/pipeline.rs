//! The scale path through the real binaries and real parts: `mcp-sentinel --role ingest` ->
//! a real Kafka KRaft broker -> `--role processor` -> a real ClickHouse <- `--role api`, and
//! the faults that path must survive without losing or doubling an event.
#![cfg(feature = "kafka")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use mcp_runtime_sentinel_testenv::{ClickHouse, KafkaBroker};
use serde_json::{Value, json};

const TOPIC: &str = "mcp.events";

/// The value of one series (`name{labels}`) on a process's `/metrics`.
fn metric(s: &Sentinel, series: &str) -> f64 {
    let (status, text) = s.admin("/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// `n` gateway events of `sessions` sessions, starting at `first` (distinct ids per call).
fn batch(first: usize, n: usize, sessions: usize) -> String {
    let events: Vec<AuditEvent<'_>> = (first..first + n)
        .map(|i| {
            let mut e = AuditEvent::new("gw", "crm", "team-a", "POST", Decision::Allow, "allowed");
            e.event_id = next_event_id(e.time);
            e.session_id = Some(format!("s{}", i % sessions).into());
            e.tool = Some(format!("t{i}").into());
            e
        })
        .collect();
    json!({ "events": events }).to_string()
}

struct Pipeline {
    broker: KafkaBroker,
    clickhouse: ClickHouse,
    ingest: Sentinel,
    processor: Sentinel,
    api: Sentinel,
    database: String,
}

fn processor_args(broker: &KafkaBroker, clickhouse: &ClickHouse, database: &str) -> Vec<String> {
    [
        "--role",
        "processor",
        "--kafka-brokers",
        &broker.bootstrap(),
        "--store",
        "clickhouse",
        "--clickhouse-url",
        &clickhouse.http_url(),
        "--clickhouse-database",
        database,
        "--batch-size",
        "50",
        "--flush-interval-ms",
        "200",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn start_processor(name: &str, args: &[String]) -> Sentinel {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sentinel::start_args(name, &args)
}

impl Pipeline {
    fn start(name: &str) -> Pipeline {
        let broker = KafkaBroker::start();
        broker.create_topic(TOPIC, 3);
        let clickhouse = ClickHouse::start();
        let database = format!("pipeline_{name}");
        let ingest = Sentinel::start_args(
            &format!("{name}-ingest"),
            &[
                "--role",
                "ingest",
                "--kafka-brokers",
                &broker.bootstrap(),
                "--kafka-timeout-seconds",
                "3",
            ],
        );
        let processor = start_processor(
            &format!("{name}-processor"),
            &processor_args(&broker, &clickhouse, &database),
        );
        let api = Sentinel::start_args(
            &format!("{name}-api"),
            &[
                "--role",
                "api",
                "--store",
                "clickhouse",
                "--clickhouse-url",
                &clickhouse.http_url(),
                "--clickhouse-database",
                &database,
            ],
        );
        Pipeline {
            broker,
            clickhouse,
            ingest,
            processor,
            api,
            database,
        }
    }

    fn post(&self, body: &str) -> (u16, Value) {
        self.ingest
            .request("POST", "/v1/ingest/events", Some(KEY), body)
    }

    fn stored(&self) -> u64 {
        let (status, stats) = self.api.request("GET", "/v1/stats", Some(READ_KEY), "");
        assert_eq!(status, 200, "{stats}");
        stats["events"].as_u64().unwrap()
    }

    /// Waits until the API counts `n` events, then checks that it stays at `n` (nothing
    /// arrives twice late).
    fn expect_stored(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = self.stored();
        while seen < n {
            assert!(
                Instant::now() < deadline,
                "only {seen} of {n} events stored after 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
            seen = self.stored();
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(self.stored(), n, "events stored twice");
    }
}

#[test]
fn events_flow_from_ingest_through_kafka_to_clickhouse_once_each() {
    let p = Pipeline::start("flow");
    for k in 0..3 {
        let (status, receipt) = p.post(&batch(k * 100, 100, 7));
        assert_eq!(status, 200, "{receipt}");
        assert_eq!(receipt["accepted"], 100);
    }
    // A retried batch (the gateway did not see the answer) and an envelope of another producer.
    let retried = batch(300, 20, 7);
    assert_eq!(p.post(&retried).0, 200);
    assert_eq!(p.post(&retried).0, 200);
    let envelope = json!({"source": "billing", "event_type": "invoice.sent",
                          "payload": {"namespace": "team-a", "note": "to ann@example.com"}});
    assert_eq!(p.post(&envelope.to_string()).0, 202);
    p.expect_stored(321);
    // The processor's own account: every record read once, the retried batch's 20 found
    // already stored.
    let processed = |result: &str| {
        metric(
            &p.processor,
            &format!("mcp_sentinel_processor_events_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(processed("stored"), 321.0);
    assert_eq!(processed("duplicate"), 20.0);
    assert_eq!(processed("undecodable"), 0.0);
    assert!(metric(&p.processor, "mcp_sentinel_processor_batches_total") >= 1.0);
    assert_eq!(
        metric(
            &p.ingest,
            "mcp_sentinel_ingest_events_total{result=\"accepted\"}"
        ),
        341.0,
        "the ingest counts what it queued"
    );

    // Redacted before it reached Kafka, so neither the topic nor the store ever held it.
    let (_, page) = p
        .api
        .request("GET", "/v1/events?source=billing", Some(READ_KEY), "");
    assert!(!page.to_string().contains("ann@"), "{page}");

    // One session's events are on one partition: the processor stored them in order, so the
    // per-session counts add up (and the usage rollup runs on ClickHouse).
    let (_, usage) = p
        .api
        .request("GET", "/v1/usage?window=1h&limit=100", Some(READ_KEY), "");
    assert_eq!(usage["totals"]["sessions"], 7, "{}", usage["totals"]);
    assert_eq!(usage["totals"]["decisions"], 320);

    // Each role serves its own routes only, and says which role serves the others.
    let (status, e) = p.ingest.request("GET", "/v1/events", Some(READ_KEY), "");
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "not_served_here");
    let (status, e) = p
        .api
        .request("POST", "/v1/ingest/events", Some(KEY), &batch(0, 1, 1));
    assert_eq!(status, 404, "{e}");
    let (status, st) = p.api.request("GET", "/v1/status", Some(READ_KEY), "");
    assert_eq!(status, 200);
    assert_eq!(
        (st["role"].as_str(), st["store"].as_str()),
        (Some("api"), Some("clickhouse"))
    );
    for s in [&p.ingest, &p.processor, &p.api] {
        let (status, ready) = s.request("GET", "/ready", None, "");
        assert_eq!(status, 200, "{ready}");
    }
    // The topic has every event once (the retried batch twice: dedupe is the store's job).
    let bootstrap = p.broker.bootstrap();
    let lag = p
        .broker
        .tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &[
                "--bootstrap-server",
                &bootstrap,
                "--describe",
                "--group",
                "mcp-sentinel-processor",
            ],
        )
        .unwrap();
    let committed: i64 = lag
        .lines()
        .filter(|l| l.contains(TOPIC))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<i64>().ok())
        .sum();
    assert_eq!(
        committed, 341,
        "offsets committed after the inserts:\n{lag}"
    );
    let _ = &p.database;
}

/// A replay (the consumer group's offsets reset to the start, as after an operator's reset or a
/// processor that crashed between insert and commit) stores nothing twice; a processor killed
/// mid-stream loses nothing.
#[test]
fn a_killed_or_replaying_processor_loses_and_doubles_nothing() {
    let mut p = Pipeline::start("replay");
    for k in 0..4 {
        assert_eq!(p.post(&batch(k * 250, 250, 11)).0, 200);
    }
    // Killed while it works: whatever it had not committed is read again by the next one.
    std::thread::sleep(Duration::from_millis(300));
    p.processor.kill();
    let args = processor_args(&p.broker, &p.clickhouse, &p.database);
    p.processor = start_processor("replay-processor-2", &args);
    p.expect_stored(1000);

    // Replay everything from the start.
    p.processor.kill();
    let bootstrap = p.broker.bootstrap();
    // The group must be empty for a reset: the killed member's session (10 s) expires first.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reset = loop {
        let out = p.broker.tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &[
                "--bootstrap-server",
                &bootstrap,
                "--reset-offsets",
                "--group",
                "mcp-sentinel-processor",
                "--topic",
                TOPIC,
                "--to-earliest",
                "--execute",
            ],
        );
        match out {
            Ok(text) if !text.contains("can only be reset if the group") => break Ok(text),
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            other => break other,
        }
    };
    let reset = reset.unwrap_or_else(|e| panic!("{e}"));
    let new_offsets: Vec<i64> = reset
        .lines()
        .filter(|l| l.contains(TOPIC))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
        .collect();
    assert_eq!(
        new_offsets,
        [0, 0, 0],
        "not replayed from the start:\n{reset}"
    );
    p.processor = start_processor("replay-processor-3", &args);
    assert_eq!(p.post(&batch(1000, 10, 11)).0, 200);
    p.expect_stored(1010);
}

/// The broker down: the ingest answers 503 (the gateway keeps the batch and retries) instead
/// of accepting what it cannot queue; back up, events flow again. ClickHouse down: the
/// processor holds its batch and its offsets, and stores everything once ClickHouse is back.
#[test]
fn outages_of_the_broker_or_the_store_lose_nothing() {
    let mut p = Pipeline::start("outage");
    assert_eq!(p.post(&batch(0, 10, 3)).0, 200);
    p.expect_stored(10);

    p.broker.kill();
    let started = Instant::now();
    let (status, e) = p.post(&batch(10, 5, 3));
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(20));
    let (status, _) = p.ingest.request("GET", "/ready", None, "");
    assert_eq!(status, 503);
    p.broker.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = p.post(&batch(10, 5, 3));
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the ingest did not recover");
        std::thread::sleep(Duration::from_millis(500));
    }
    p.expect_stored(15);

    p.clickhouse.kill();
    assert_eq!(p.post(&batch(15, 30, 3)).0, 200, "Kafka still takes events");
    for s in [&p.processor, &p.api] {
        let (status, e) = s.request("GET", "/ready", None, "");
        assert_eq!(
            status,
            503,
            "ready without its store ({:?}): {e}",
            s.extra_args()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&p.processor, "mcp_sentinel_processor_intake_paused"),
        1.0,
        "intake paused while the store refuses"
    );
    p.clickhouse.restart();
    p.expect_stored(45);
    assert!(metric(&p.processor, "mcp_sentinel_processor_insert_failures_total") >= 1.0);
    assert_eq!(
        metric(&p.processor, "mcp_sentinel_processor_intake_paused"),
        0.0
    );
}

/// The broker down for 30 s in the middle of a load of gateway calls: the ingest refuses what it
/// cannot queue (503), the gateway keeps those events in its spool and sends them again once the
/// broker is back, and the API then shows exactly one event per decision made — none missing,
/// none doubled.
#[test]
fn a_30_second_broker_outage_under_gateway_load_loses_and_doubles_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let mut p = Pipeline::start("gwload");
    let upstream = common::gateway::Upstream::start();
    let gateway = common::gateway::Gateway::start(&p.ingest.dir, &upstream, &p.ingest, &[]);
    let stop = AtomicBool::new(false);
    let decisions = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = gateway.call(&[]);
                assert_eq!(status, 200, "{body}");
                decisions.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_secs(5));
        p.broker.kill();
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(30));
        let during = decisions.load(Ordering::Relaxed);
        p.broker.restart();
        eprintln!(
            "broker down {:?}; {during} decisions so far",
            down.elapsed()
        );
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
    });
    let made = decisions.load(Ordering::Relaxed);
    assert!(made > 100, "only {made} calls made");
    // The outage was exercised: the gateway's shipper failed to deliver while the broker was
    // down (the ingest answered 503, or the shipper gave up waiting for it) and kept the events.
    let failures: f64 = gateway
        .metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix("mcp_gateway_audit_ship_failures_total ")?
                .parse()
                .ok()
        })
        .expect("mcp_gateway_audit_ship_failures_total on the gateway's /metrics");
    assert!(
        failures >= 1.0,
        "no failed shipment: the outage was not exercised"
    );
    p.expect_stored(made);
    let (_, stats) = p
        .api
        .request("GET", "/v1/stats?decision=allow", Some(READ_KEY), "");
    assert_eq!(stats["decisions"], made, "one decision per call: {stats}");
}
