//! The committed Grafana dashboard (`deploy/grafana/mcp-runtime-dashboard.json`, written by
//! `cargo xtask generate`): valid dashboard JSON, and every metric and label its queries name is
//! one the real `mcp-gateway` and `mcp-sentinel` export.
//!
//! The binaries are taken from this test's target directory: build them first
//! (`cargo build -p mcp-runtime-gateway -p mcp-runtime-sentinel`; scripts/test.sh builds the
//! workspace). The test fails, never skips, when one is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_testkit::workspace_root;
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/mcp-runtime-dashboard.json";

fn dashboard() -> Value {
    let path = workspace_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask generate`", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every query of every panel: (panel title, expr).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

// === PromQL: the metric and label names a query uses ===

/// Identifiers of PromQL that are neither metrics nor labels.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "group_left",
    "group_right",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names and the label names (in matchers and grouping lists) of `expr`. Function
/// and aggregation names (an identifier followed by `(`), strings, range and offset durations,
/// numbers and keywords are skipped.
fn references(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let ident_at = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        (chars[i..j].iter().collect(), j)
    };
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Matchers: `name op "value"`, comma-separated.
            i += 1;
            while i < chars.len() && chars[i] != '}' {
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    i = skip_string(i);
                } else if is_ident_start(chars[i]) {
                    let (name, j) = ident_at(i);
                    labels.insert(name);
                    i = j;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (name, j) = ident_at(i);
            let next = skip_space(j);
            // An aggregation is followed by `(`, or by its grouping: `sum by (le) (...)`.
            let grouping = ["by", "without"]
                .iter()
                .any(|kw| chars[next..].starts_with(&kw.chars().collect::<Vec<_>>()));
            let call = chars.get(next) == Some(&'(') || grouping;
            if LABEL_LISTS.contains(&name.as_str()) && call {
                let mut k = next + 1;
                while k < chars.len() && chars[k] != ')' {
                    if is_ident_start(chars[k]) {
                        let (label, end) = ident_at(k);
                        labels.insert(label);
                        k = end;
                    } else {
                        k += 1;
                    }
                }
                i = k + 1;
                continue;
            }
            if !call && !KEYWORDS.contains(&name.as_str()) {
                metrics.insert(name);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

/// Whether `(`, `[` and `{` close in order outside strings (the PromQL parser's first check; a
/// real parse needs Prometheus).
fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => open.push(c),
                ')' | ']' | '}' => {
                    let want = match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    };
                    if open.pop() != Some(want) {
                        return false;
                    }
                }
                _ => {}
            },
        }
    }
    open.is_empty() && quote.is_none()
}

// === The exposition: which sample names exist, with which labels ===

/// Sample names a binary exposes, each with the label names seen on it. A sample name is taken
/// only where it follows from its family's `# TYPE` by the exposition format's rules: a counter
/// `x` is sampled as `x_total` (and `x_created`), a histogram as `x_bucket`, `x_sum`, `x_count`
/// (and `x_created`), a gauge as `x`.
#[derive(Debug, Default)]
struct Exposition {
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').unwrap();
                types.insert(family.to_owned(), kind.to_owned());
            }
        }
        let allowed = |name: &str| {
            types.iter().any(|(family, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_sum", "_count", "_created"],
                    "gauge" | "unknown" | "info" => &[""],
                    other => panic!("unexpected metric type {other}"),
                };
                suffixes
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str()))
            })
        };
        let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(
                allowed(name),
                "sample {name} has no family of its type:\n{text}"
            );
            let entry = series.entry(name.to_owned()).or_default();
            if line[name_end..].starts_with('{') {
                let close = line.rfind('}').unwrap();
                for pair in line[name_end + 1..close].split("\",") {
                    if let Some((label, _)) = pair.split_once('=') {
                        entry.insert(label.trim_start_matches(',').to_owned());
                    }
                }
            }
        }
        Exposition { series }
    }

    fn merge(mut self, other: Exposition) -> Exposition {
        self.series.extend(other.series);
        self
    }

    /// Whether every metric `expr` names is exposed, and every label it uses is on one of them.
    fn check(&self, expr: &str) -> Result<(), String> {
        let (metrics, labels) = references(expr);
        if metrics.is_empty() {
            return Err(format!("no metric in {expr}"));
        }
        let mut known = BTreeSet::new();
        for m in &metrics {
            match self.series.get(m) {
                Some(l) => known.extend(l.iter().cloned()),
                None => return Err(format!("metric {m} is not exported (in {expr})")),
            }
        }
        match labels.iter().find(|l| !known.contains(*l)) {
            Some(l) => Err(format!(
                "label {l} is on none of {metrics:?} (in {expr}); their labels: {known:?}"
            )),
            None => Ok(()),
        }
    }
}

// === The binaries ===

fn binary(name: &str) -> PathBuf {
    // This test runs from <target>/debug/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p mcp-runtime-gateway -p mcp-runtime-sentinel` first",
        path.display()
    );
    path
}

struct Killed(Child, PathBuf);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

fn spawn(mut command: Command, log: PathBuf) -> Killed {
    let file = std::fs::File::create(&log).unwrap();
    command.stdout(Stdio::null()).stderr(file);
    Killed(command.spawn().unwrap(), log)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status and the body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    };
    attempt().unwrap_or((0, String::new()))
}

fn wait_for(what: &str, process: &Killed, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: fixed, namespace: test}
spec:
  image: fixed-upstream
  auth: {mode: header}
  tools:
    - {name: echo, sideEffect: read}
  gateway: {enabled: true}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: fixed}
  subject: {humanID: alice}
  maxTrust: high
  allowedSideEffects: [read]
";

fn render(yaml: &str) -> String {
    let (mut servers, mut grants) = (vec![], vec![]);
    for m in manifest::parse("policy.yaml", yaml, "test").unwrap() {
        match m {
            Manifest::Server(s) => servers.push(*s),
            Manifest::Grant(g) => grants.push(g),
            Manifest::Session(_) => {}
        }
    }
    render_policy(&servers[0], &grants, &[], &RenderOptions::default())
        .unwrap()
        .document
        .to_json_pretty()
}

/// The fixed-answer MCP upstream (crates/testkit) on a thread of its own; its port.
fn fixed_upstream() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            let _ = mcp_runtime_testkit::fixed_upstream::serve(listener).await;
        });
    });
    rx.recv().unwrap()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-dashboard-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts Sentinel and a gateway shipping its audit there, in front of the fixed upstream; sends
/// allowed, denied and unauthenticated calls and a Sentinel query; returns both expositions.
fn scrape_running_binaries() -> (String, String) {
    let dir = temp_dir();
    std::fs::write(dir.join("keys"), "ingest-key\n").unwrap();
    std::fs::write(dir.join("ingest-key"), "ingest-key").unwrap();
    std::fs::write(dir.join("policy.json"), render(POLICY)).unwrap();

    let (sentinel_port, sentinel_admin) = (free_port(), free_port());
    let mut command = Command::new(binary("mcp-sentinel"));
    command
        .args(["--listen", &format!("127.0.0.1:{sentinel_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{sentinel_admin}")])
        .arg("--db")
        .arg(dir.join("events.db"))
        .arg("--api-keys-file")
        .arg(dir.join("keys"));
    let sentinel = spawn(command, dir.join("sentinel.log"));
    wait_for("mcp-sentinel not ready", &sentinel, || {
        http(sentinel_admin, "GET", "/ready", &[], "").0 == 200
    });

    let upstream = fixed_upstream();
    let (port, admin) = (free_port(), free_port());
    let mut command = Command::new(binary("mcp-gateway"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
        .arg("--policy-file")
        .arg(dir.join("policy.json"))
        .arg("--trust-identity-headers")
        .arg("--audit-ingest-url")
        .arg(format!("http://127.0.0.1:{sentinel_port}/v1/ingest/events"))
        .arg("--audit-api-key-file")
        .arg(dir.join("ingest-key"))
        .arg("--audit-spool-dir")
        .arg(dir.join("spool"));
    let gateway = spawn(command, dir.join("gateway.log"));
    wait_for("mcp-gateway not ready", &gateway, || {
        http(admin, "GET", "/ready", &[], "").0 == 200
    });

    let call =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let base = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let with = |human: Option<&'static str>| {
        let mut headers = base.to_vec();
        headers.extend(human.map(|h| ("x-mcp-human-id", h)));
        http(port, "POST", "/mcp", &headers, call)
    };
    let (status, body) = with(Some("alice"));
    assert!(
        status == 200 && body.contains("pong"),
        "allowed call: {status} {body}"
    );
    let (status, body) = with(Some("mallory"));
    assert!(
        status == 200 && body.contains("\"error\""),
        "denied call: {status} {body}"
    );
    let (status, body) = with(None);
    assert!(
        status == 200 && body.contains("missing_identity"),
        "no identity: {status} {body}"
    );

    // The gateway ships its audit events; Sentinel then has ingest metrics too.
    wait_for("no audit event shipped to Sentinel", &gateway, || {
        http(admin, "GET", "/metrics", &[], "")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("mcp_gateway_audit_shipped_events_total "))
            .is_some_and(|v| v.trim() != "0")
    });
    let key = [("x-api-key", "ingest-key")];
    assert_eq!(http(sentinel_port, "GET", "/v1/events", &key, "").0, 200);

    let gateway_metrics = http(admin, "GET", "/metrics", &[], "");
    let sentinel_metrics = http(sentinel_admin, "GET", "/metrics", &[], "");
    assert_eq!(gateway_metrics.0, 200, "{}", gateway.log());
    assert_eq!(sentinel_metrics.0, 200, "{}", sentinel.log());
    drop((gateway, sentinel));
    let _ = std::fs::remove_dir_all(&dir);
    (gateway_metrics.1, sentinel_metrics.1)
}

#[test]
fn queries_name_their_metrics_and_labels() {
    let (m, l) = references(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(mcp_x_seconds_bucket{a="b",c=~"d|e"}[$__rate_interval]))) / on (route) group_left sum(mcp_y offset 5m) and bool up"#,
    );
    let names = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(m, names(&["mcp_x_seconds_bucket", "mcp_y", "up"]));
    assert_eq!(l, names(&["a", "c", "le", "route"]));
    let (m, l) = references(r#"sum(rate(x_total{s="a}b,\"c"}[5m])) by (status) > 0.5e3"#);
    assert_eq!((m, l), (names(&["x_total"]), names(&["s", "status"])));
    assert!(balanced(r#"sum(rate(x{a=")"}[5m]))"#));
    for bad in ["sum(rate(x[5m])", "sum(rate(x[5m)))", r#"x{a="b}"#, "x)("] {
        assert!(!balanced(bad), "{bad}");
    }
}

#[test]
fn dashboard_is_grafana_json_with_a_prometheus_variable_and_placed_panels() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let variables = d["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no ${{datasource}} Prometheus variable: {variables:?}"
    );
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut charts = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap();
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k} is not a number"))
        });
        assert!(h > 0 && w > 0 && x + w <= 24, "{title}: gridPos {g}");
        // No two panels cover the same cell.
        for cy in y..y + h {
            for cx in x..x + w {
                assert!(
                    cells.insert((cx, cy)),
                    "{title} overlaps another panel at {cx},{cy}"
                );
            }
        }
        match p["type"].as_str().unwrap() {
            "row" => {}
            _ => {
                charts += 1;
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
                let targets = p["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "{title}: no query");
                let mut refs = BTreeSet::new();
                for t in targets {
                    let expr = t["expr"].as_str().unwrap_or_default();
                    assert!(!expr.is_empty(), "{title}: {t}");
                    assert!(balanced(expr), "{title}: unbalanced {expr}");
                    assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
                    assert!(
                        refs.insert(t["refId"].as_str().unwrap().to_owned()),
                        "{title}"
                    );
                }
            }
        }
    }
    assert!(charts >= 10, "only {charts} charts");
}

#[test]
fn every_query_names_metrics_the_gateway_and_sentinel_export() {
    let (gateway, sentinel) = scrape_running_binaries();
    let exposition = Exposition::parse(&gateway).merge(Exposition::parse(&sentinel));
    let queries = queries(&dashboard());
    let mut used = BTreeSet::new();
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|(title, expr)| {
            used.extend(references(expr).0);
            exposition
                .check(expr)
                .err()
                .map(|e| format!("{title}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "the dashboard names what the binaries do not export:\n{}\n\ngateway:\n{gateway}\nsentinel:\n{sentinel}",
        failures.join("\n")
    );
    // Both binaries are charted.
    assert!(
        used.iter().any(|m| m.starts_with("mcp_gateway_")),
        "{used:?}"
    );
    assert!(
        used.iter().any(|m| m.starts_with("mcp_sentinel_")),
        "{used:?}"
    );

    // The check itself refuses what is not there: a wrong name, a missing suffix, a wrong label.
    for bad in [
        "sum(rate(mcp_gateway_requests_bogus_total[5m]))",
        "sum(rate(mcp_gateway_requests[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(mcp_gateway_requests_total_bucket[5m])))",
        r#"sum by (colour) (rate(mcp_gateway_requests_total[5m]))"#,
        r#"sum(rate(mcp_sentinel_ingest_events_total{outcome="accepted"}[5m]))"#,
    ] {
        assert!(exposition.check(bad).is_err(), "accepted: {bad}");
    }
}
