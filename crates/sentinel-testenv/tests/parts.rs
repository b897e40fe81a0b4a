//! The parts run for real: a KRaft broker that creates, lists and keeps topics across a hard
//! kill, and a ClickHouse 18.16 server that does what Sentinel's store will ask of it.
//! Both fail (panic, naming scripts/sentinel-deps.sh) when the part is not installed.

use std::time::Instant;

use mcp_runtime_sentinel_testenv::{ClickHouse, Error, KafkaBroker};

#[test]
fn kafka_broker_creates_lists_and_keeps_topics_across_a_hard_kill() {
    let t0 = Instant::now();
    let mut broker = KafkaBroker::start();
    eprintln!(
        "kafka: ready at {} in {:.1?} ({})",
        broker.bootstrap(),
        t0.elapsed(),
        broker.log_path().display()
    );
    assert!(broker.bootstrap().starts_with("127.0.0.1:"));

    broker.create_topic("sentinel.events", 3);
    broker.create_topic("sentinel.dead-letter", 1);
    assert_eq!(
        broker.list_topics(),
        ["sentinel.dead-letter", "sentinel.events"]
    );
    assert_eq!(broker.partition_count("sentinel.events"), 3);
    // Creating it again is refused (the helper does not hide tool failures).
    let again = broker
        .topic_command(&[
            "--create",
            "--topic",
            "sentinel.events",
            "--partitions",
            "3",
        ])
        .unwrap_err();
    assert!(
        matches!(again, Error::Tool { .. }) && again.to_string().contains("already exists"),
        "{again}"
    );

    let port = broker.port();
    broker.kill();
    assert!(!broker.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts after kill()"
    );

    let t1 = Instant::now();
    broker.restart();
    eprintln!("kafka: restarted after a hard kill in {:.1?}", t1.elapsed());
    assert!(broker.is_running());
    assert_eq!(broker.port(), port, "restart keeps the port");
    assert_eq!(
        broker.list_topics(),
        ["sentinel.dead-letter", "sentinel.events"]
    );
    assert_eq!(broker.partition_count("sentinel.events"), 3);
}

#[test]
fn clickhouse_replacing_merge_tree_dedupes_with_final() {
    let t0 = Instant::now();
    let mut ch = ClickHouse::start();
    eprintln!(
        "clickhouse: ready at {} in {:.1?} ({})",
        ch.http_url(),
        t0.elapsed(),
        ch.log_path().display()
    );
    assert_eq!(ch.query("SELECT version()").trim(), "18.16.1");

    ch.query(
        "CREATE TABLE events (
            day Date,
            tenant String,
            event_id String,
            decision String,
            latency_ms UInt32,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(day)
        ORDER BY (tenant, day, event_id)",
    );
    // Two batches; the second redelivers e1 (at-least-once from Kafka) with a higher version.
    ch.query(
        "INSERT INTO events FORMAT JSONEachRow
{\"day\":\"2026-11-02\",\"tenant\":\"acme\",\"event_id\":\"e1\",\"decision\":\"allow\",\"latency_ms\":3,\"version\":1}
{\"day\":\"2026-11-02\",\"tenant\":\"acme\",\"event_id\":\"e2\",\"decision\":\"deny\",\"latency_ms\":5,\"version\":1}
{\"day\":\"2026-10-31\",\"tenant\":\"acme\",\"event_id\":\"e0\",\"decision\":\"allow\",\"latency_ms\":7,\"version\":1}",
    );
    ch.query(
        "INSERT INTO events FORMAT JSONEachRow
{\"day\":\"2026-11-02\",\"tenant\":\"acme\",\"event_id\":\"e1\",\"decision\":\"allow\",\"latency_ms\":4,\"version\":2}",
    );

    assert_eq!(ch.query("SELECT count() FROM events FINAL").trim(), "3");
    assert_eq!(
        ch.query(
            "SELECT event_id, latency_ms FROM events FINAL WHERE tenant = 'acme' \
             ORDER BY event_id FORMAT JSONEachRow"
        ),
        "{\"event_id\":\"e0\",\"latency_ms\":7}\n\
         {\"event_id\":\"e1\",\"latency_ms\":4}\n\
         {\"event_id\":\"e2\",\"latency_ms\":5}\n"
    );
    assert_eq!(
        ch.query(
            "SELECT countIf(decision = 'deny'), uniqExact(event_id) FROM events FINAL \
             WHERE day >= toDate('2026-11-01')"
        )
        .trim(),
        "1\t2"
    );

    // Retention without TTL (18.16 has none): drop a month's partition.
    ch.query("ALTER TABLE events DROP PARTITION 202610");
    assert_eq!(ch.query("SELECT count() FROM events FINAL").trim(), "2");

    // Errors come back with the server's message.
    let e = ch
        .try_query("SELECT no_such_column FROM events")
        .unwrap_err();
    assert!(
        matches!(e, Error::Query { .. }) && e.to_string().contains("no_such_column"),
        "{e}"
    );

    // Data survives a hard kill and restart on the same port.
    let port = ch.http_port();
    ch.kill();
    let t1 = Instant::now();
    ch.restart();
    eprintln!("clickhouse: restarted in {:.1?}", t1.elapsed());
    assert_eq!(ch.http_port(), port);
    assert_eq!(ch.query("SELECT count() FROM events FINAL").trim(), "2");
}

#[test]
fn a_server_that_exits_at_start_is_reported_with_its_log() {
    use mcp_runtime_sentinel_testenv::ClickHouseOptions;
    let users = std::env::temp_dir().join(format!(
        "mcp-sentinel-testenv-bad-users-{}.xml",
        std::process::id()
    ));
    std::fs::write(&users, "<yandex><profiles>not closed").unwrap();
    let e = ClickHouse::start_with(ClickHouseOptions {
        users_config: users.clone(),
        ..ClickHouseOptions::default()
    })
    .unwrap_err();
    let _ = std::fs::remove_file(&users);
    eprintln!("{e}");
    let Error::Start { log, tail, .. } = &e else {
        panic!("expected a start error, got {e}");
    };
    assert!(log.is_file(), "the log {} is kept", log.display());
    assert!(!tail.is_empty(), "{e}");
    assert!(e.to_string().contains(&log.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(log.parent().unwrap());
}

#[test]
fn the_shared_clickhouse_is_started_once_per_test_binary() {
    let a = ClickHouse::shared();
    let b = ClickHouse::shared();
    assert_eq!(a.http_port(), b.http_port());
    a.query("CREATE DATABASE IF NOT EXISTS shared_test");
    assert_eq!(
        b.query("SELECT count() FROM system.databases WHERE name = 'shared_test'")
            .trim(),
        "1"
    );
}
