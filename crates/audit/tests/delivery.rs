//! Delivery of audit events over real loopback HTTP to a small ingest server written here,
//! which can be stopped and started again on the same port.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mcp_runtime_audit::{AuditConfig, AuditError, AuditEvent, Auditor, Decision};
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// The ingest.

#[derive(Default)]
struct IngestState {
    /// Event ids of acknowledged batches, duplicates kept.
    accepted: Mutex<Vec<String>>,
    /// Event ids of batches answered with a 4xx.
    rejected: Mutex<Vec<String>>,
    requests: AtomicUsize,
    /// Statuses to answer, in order, before answering 202 to everything.
    script: Mutex<VecDeque<u16>>,
    /// (content-type, x-api-key) of each request.
    headers: Mutex<Vec<(Option<String>, Option<String>)>>,
}

impl IngestState {
    fn with_script(statuses: &[u16]) -> Arc<IngestState> {
        let state = IngestState::default();
        state.script.lock().unwrap().extend(statuses);
        Arc::new(state)
    }

    fn accepted_set(&self) -> BTreeSet<String> {
        self.accepted.lock().unwrap().iter().cloned().collect()
    }

    fn accepted_count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    fn rejected_set(&self) -> BTreeSet<String> {
        self.rejected.lock().unwrap().iter().cloned().collect()
    }
}

struct Ingest {
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Ingest {
    async fn start(addr: SocketAddr, state: Arc<IngestState>) -> Ingest {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind ingest");
        let accept_loop = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection: a stopped
            // ingest keeps no keep-alive connection open.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ingest { accept_loop }
    }

    async fn stop(self) {
        self.accept_loop.abort();
        let _ = self.accept_loop.await;
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<IngestState>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let headers = (header("content-type"), header("x-api-key"));
    state.headers.lock().unwrap().push(headers);
    let body = req.into_body().collect().await?.to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("the body is JSON");
    let ids: Vec<String> = doc["events"]
        .as_array()
        .expect("events is an array")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect();
    let status = state.script.lock().unwrap().pop_front().unwrap_or(202);
    let status = StatusCode::from_u16(status).unwrap();
    if status.is_success() {
        state.accepted.lock().unwrap().extend(ids);
    } else if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        state.rejected.lock().unwrap().extend(ids);
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"scripted\"}")));
    *response.status_mut() = status;
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A loopback address nobody listens on (yet).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("mcp-audit-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(spool_dir: &Path, ingest: SocketAddr) -> AuditConfig {
    let mut config = AuditConfig::new(spool_dir);
    config.ingest_url = Some(format!("http://{ingest}/v1/audit").parse().unwrap());
    config.api_key = Some("test-key".into());
    config.flush_interval = Duration::from_millis(20);
    config.retry_initial_backoff = Duration::from_millis(50);
    config.retry_max_backoff = Duration::from_millis(300);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn event(i: usize) -> AuditEvent<'static> {
    let (decision, reason) = if i.is_multiple_of(3) {
        (Decision::Deny, "trust_too_low")
    } else {
        (Decision::Allow, "allowed")
    };
    let mut e = AuditEvent::new("hello-gateway", "hello", "team-a", "POST", decision, reason);
    e.human_id = Some("alice".into());
    e.agent_id = Some("claude".into());
    e.rpc_method = Some("tools/call".into());
    e.rpc_id = Some(serde_json::json!(i));
    e.tool = Some("upper".into());
    e.latency_ms = 1.5;
    e
}

/// Emits `n` events, returning their ids.
fn emit(auditor: &Auditor, from: usize, n: usize) -> BTreeSet<String> {
    (from..from + n)
        .map(|i| {
            let e = event(i);
            let id = e.event_id.to_string();
            auditor.emit(e);
            id
        })
        .collect()
}

/// Polls `cond` every 20 ms for at most `WAIT`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".jsonl")
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// (a) 1 000 events emitted while the ingest is down all arrive once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_while_ingest_is_down_all_arrive() {
    let addr = free_addr();
    let dir = temp_dir("down");
    let mut config = config(&dir, addr);
    config.segment_max_bytes = 64 * 1024; // several segments for 1 000 events
    let (auditor, task) = Auditor::start(config).unwrap();

    let ids = emit(&auditor, 0, 1000);
    assert_eq!(ids.len(), 1000);
    wait_for("1 000 spooled events", || {
        auditor.stats().spooled_pending == 1000
    })
    .await;
    wait_for("a failed POST", || auditor.stats().ship_failures > 0).await;
    assert!(segments(&dir) > 1, "the spool rotated segments");

    let state = Arc::new(IngestState::default());
    let ingest = Ingest::start(addr, state.clone()).await;
    wait_for("every event at the ingest", || {
        state.accepted_set().len() == 1000
    })
    .await;
    assert_eq!(state.accepted_set(), ids, "exactly the emitted ids");
    wait_for("an empty spool", || auditor.stats().spooled_pending == 0).await;

    let stats = auditor.stats();
    assert_eq!((stats.emitted, stats.dropped, stats.skipped), (1000, 0, 0));
    assert!(stats.shipped >= 1000);
    for (content_type, key) in state.headers.lock().unwrap().iter() {
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(key.as_deref(), Some("test-key"));
    }
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.flushed && report.drained, "{report:?}");
    assert!(segments(&dir) <= 1, "shipped segments are deleted");
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// (b) The ingest answers 503 (three times, then 202): nothing is lost, failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_ingest_is_retried_without_loss() {
    let addr = free_addr();
    let dir = temp_dir("503");
    let state = IngestState::with_script(&[503, 503, 429, 503]);
    let ingest = Ingest::start(addr, state.clone()).await;
    let (auditor, task) = Auditor::start(config(&dir, addr)).unwrap();

    let ids = emit(&auditor, 0, 300);
    wait_for("every event at the ingest", || {
        state.accepted_set().len() == 300
    })
    .await;
    assert_eq!(state.accepted_set(), ids);
    assert!(state.rejected_set().is_empty());
    let stats = auditor.stats();
    assert_eq!(stats.ship_failures, 4);
    assert_eq!((stats.dropped, stats.skipped), (0, 0));

    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(report.stats.spooled_pending, 0);
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// (c) Events spooled while the ingest is down survive a shutdown and are shipped by the next
/// auditor on the same spool; a third start sends nothing again (the cursor was persisted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_are_shipped_after_restart() {
    let addr = free_addr();
    let dir = temp_dir("restart");

    let (first, task) = Auditor::start(config(&dir, addr)).unwrap();
    assert!(matches!(
        Auditor::start(config(&dir, addr)),
        Err(AuditError::SpoolLocked(_))
    ));
    let mut ids = emit(&first, 0, 500);
    let report = task.shutdown(Duration::from_millis(500)).await;
    assert!(report.flushed && !report.drained, "{report:?}");
    assert_eq!(report.stats.spooled_pending, 500);
    first.emit(event(999));
    assert_eq!(
        first.stats().dropped,
        1,
        "emit after shutdown is a counted drop"
    );

    let state = Arc::new(IngestState::default());
    let ingest = Ingest::start(addr, state.clone()).await;
    let (second, task) = Auditor::start(config(&dir, addr)).unwrap();
    ids.extend(emit(&second, 500, 20));
    wait_for("every event at the ingest", || {
        state.accepted_set().len() == 520
    })
    .await;
    assert_eq!(state.accepted_set(), ids);
    // The ingest records a batch before its response reaches the shipper, which only then counts
    // it as shipped: wait for the count instead of sampling it.
    wait_for(
        "the recovered events counted as shipped by the second",
        || second.stats().shipped >= 520,
    )
    .await;
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");

    let sent = state.accepted_count();
    let (third, task) = Auditor::start(config(&dir, addr)).unwrap();
    assert_eq!(third.stats().spooled_pending, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(
        state.accepted_count(),
        sent,
        "nothing is sent twice after a clean stop"
    );
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// (d) The JSON-lines sink writes one parseable line per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_sink_writes_one_line_per_event() {
    let dir = temp_dir("jsonl");
    let path = dir.join("audit.jsonl");
    let mut config = AuditConfig::new(dir.join("spool"));
    config.jsonl_path = Some(path.clone());
    config.flush_interval = Duration::from_millis(10);
    let (auditor, task) = Auditor::start(config).unwrap();

    let ids: Vec<String> = (0..250)
        .map(|i| {
            let e = event(i);
            let id = e.event_id.to_string();
            auditor.emit(e);
            id
        })
        .collect();
    // Flushed at each batch: visible before shutdown.
    wait_for("250 lines", || {
        std::fs::read_to_string(&path).is_ok_and(|s| s.lines().count() == 250)
    })
    .await;
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.flushed && report.drained, "{report:?}");

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let mut seen = Vec::new();
    for line in text.lines() {
        let raw: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(raw.get("cluster").is_none(), "None fields are left out");
        assert!(raw["time"].as_str().unwrap().ends_with('Z'));
        let e: AuditEvent<'_> = serde_json::from_str(line).unwrap();
        assert_eq!(raw["decision"], e.decision.as_str());
        seen.push(e.event_id.to_string());
    }
    assert_eq!(seen, ids, "in emission order");
    assert!(!dir.join("spool").exists(), "no spool without an ingest");
    let _ = std::fs::remove_dir_all(&dir);
}

/// (e) With the writer stalled (blocked writing into a FIFO nobody reads) and a queue of 10,
/// 100 emits return at once: 10 are queued, 90 dropped and counted; the 10 are written later.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_never_blocks_when_the_writer_is_stalled() {
    use std::io::Read;

    let dir = temp_dir("stall");
    let fifo = dir.join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (out_tx, out_rx) = std::sync::mpsc::channel::<String>();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::open(&reader_path).unwrap();
        let _ = go_rx.recv_timeout(WAIT);
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        let _ = out_tx.send(text);
    });

    let mut config = AuditConfig::new(dir.join("spool"));
    config.jsonl_path = Some(fifo);
    config.channel_capacity = 10;
    config.flush_interval = Duration::from_millis(1);
    let (auditor, task) = Auditor::start(config).unwrap();

    // 1 MiB cannot fit in the pipe (64 KiB): the writer blocks in write until the reader reads.
    let mut big = event(0);
    big.arguments = Some(serde_json::json!({ "blob": "x".repeat(1 << 20) }));
    auditor.emit(big);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // On another thread, so that a blocking emit fails the test instead of hanging it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let emitter = auditor.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        let ids = emit(&emitter, 1, 100);
        let _ = done_tx.send((ids, start.elapsed()));
    });
    let (ids, took) = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("emit blocked");
    assert!(took < Duration::from_millis(100), "100 emits took {took:?}");
    let stats = auditor.stats();
    assert_eq!((stats.emitted, stats.dropped), (101, 90), "{stats:?}");

    go_tx.send(()).unwrap();
    let report = task.shutdown(Duration::from_secs(10)).await;
    assert!(report.flushed, "{report:?}");
    let text = out_rx.recv_timeout(WAIT).expect("the FIFO reader finished");
    let written: Vec<AuditEvent<'_>> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 11);
    assert!(written[0].arguments.is_some());
    assert!(
        written[1..]
            .iter()
            .all(|e| ids.contains(&e.event_id.to_string()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A full spool drops the newest events (counted) and keeps the oldest, which are all shipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_new_events_and_counts_them() {
    let addr = free_addr();
    let dir = temp_dir("full");
    let mut config = config(&dir, addr);
    config.spool_max_bytes = 20_000;
    let (auditor, task) = Auditor::start(config).unwrap();

    let ordered: Vec<String> = (0..200)
        .map(|i| {
            let e = event(i);
            let id = e.event_id.to_string();
            auditor.emit(e);
            id
        })
        .collect();
    wait_for("every event spooled or dropped", || {
        let s = auditor.stats();
        s.spooled_pending + s.dropped == 200
    })
    .await;
    let stats = auditor.stats();
    assert!(stats.dropped > 0 && stats.spooled_pending > 0, "{stats:?}");
    assert!(stats.spool_bytes <= 20_000, "{stats:?}");
    let kept = stats.spooled_pending as usize;

    let state = Arc::new(IngestState::default());
    let ingest = Ingest::start(addr, state.clone()).await;
    wait_for("the spooled events at the ingest", || {
        state.accepted_set().len() == kept
    })
    .await;
    let expected: BTreeSet<String> = ordered[..kept].iter().cloned().collect();
    assert_eq!(state.accepted_set(), expected, "the oldest events are kept");
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A batch answered with 400 is a poison batch: skipped and counted, the rest is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_batch_is_skipped_and_counted() {
    let addr = free_addr();
    let dir = temp_dir("poison");
    let state = IngestState::with_script(&[400]);
    let ingest = Ingest::start(addr, state.clone()).await;
    let (auditor, task) = Auditor::start(config(&dir, addr)).unwrap();

    let ids = emit(&auditor, 0, 50);
    wait_for("every event answered", || {
        state.accepted_set().len() + state.rejected_set().len() == 50
    })
    .await;
    let (accepted, rejected) = (state.accepted_set(), state.rejected_set());
    assert!(!rejected.is_empty());
    assert!(accepted.is_disjoint(&rejected));
    assert_eq!(
        accepted.union(&rejected).cloned().collect::<BTreeSet<_>>(),
        ids
    );
    let report = task.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(report.stats.skipped, rejected.len() as u64);
    assert_eq!(report.stats.ship_failures, 0);
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn configuration_errors() {
    let dir = temp_dir("config");
    assert!(matches!(
        Auditor::start(AuditConfig::new(&dir)),
        Err(AuditError::NoSink)
    ));
    let mut config = AuditConfig::new(&dir);
    config.ingest_url = Some("ftp://ingest.example/v1".parse().unwrap());
    assert!(matches!(
        Auditor::start(config),
        Err(AuditError::InvalidIngestUrl { .. })
    ));
    // An https ingest with an unreadable private CA fails at start, naming the file.
    let mut config = AuditConfig::new(&dir);
    config.ingest_url = Some("https://ingest.example/v1".parse().unwrap());
    config.ingest_ca_file = Some(dir.join("missing-ca.crt"));
    match Auditor::start(config) {
        Err(AuditError::InvalidConfig(message)) => {
            assert!(message.contains("missing-ca.crt"), "{message}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started with a missing CA file"),
    }
    let mut config = AuditConfig::new(&dir);
    config.api_key = Some("secret".into());
    assert!(!format!("{config:?}").contains("secret"));
    let _ = std::fs::remove_dir_all(&dir);
}
