//! An OpenTelemetry Collector (the test build `scripts/otel/install.sh` caches): an OTLP/HTTP
//! receiver on a free loopback port, and the file exporter appending every batch it receives
//! to a JSON-lines file that [`Collector::spans`] reads back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Error, Result, Scratch, Server, cache_root, free_ports, io, port_accepts};

/// The collector release `scripts/otel/install.sh` builds (a unit test checks both agree).
pub const OTELCOL_VERSION: &str = "v0.161.0";

/// The script that builds the collector (relative to the repository root).
pub const OTEL_INSTALL_SCRIPT: &str = "scripts/otel/install.sh";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a collector; `Default` is what [`Collector::start`] uses.
#[derive(Clone, Debug, Default)]
pub struct CollectorOptions {
    /// The binary (default: `$MCP_OTELCOL`, else the install script's cache
    /// `~/.cache/mcp-runtime/otel/<OTELCOL_VERSION>/otelcol`).
    pub binary: Option<PathBuf>,
}

/// One span as the collector received it, with the `service.name` of its resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind` (2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i64,
    /// Attribute values as text (`intValue` is a string in OTLP JSON too).
    pub attributes: BTreeMap<String, String>,
    /// OTLP's status code (0 unset, 1 ok, 2 error).
    pub status_code: i64,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running (or stopped, see [`Collector::kill`]) collector. Dropping it kills the process and
/// removes its directory (kept when the thread panics).
#[derive(Debug)]
pub struct Collector {
    server: Server,
    http_port: u16,
    output: PathBuf,
    // Last: removed after the server is killed.
    dir: Scratch,
}

impl Collector {
    /// Starts a collector; panics with the reason (naming `scripts/otel/install.sh` when the
    /// binary is missing).
    pub fn start() -> Collector {
        Self::start_with(CollectorOptions::default())
            .unwrap_or_else(|e| panic!("Collector::start: {e}"))
    }

    /// Writes the configuration (OTLP/HTTP on a free port, the file exporter, the collector's
    /// own metrics off so that parallel collectors need no more ports), starts the collector and
    /// waits until its receiver accepts connections.
    pub fn start_with(options: CollectorOptions) -> Result<Collector> {
        let binary = resolve_binary(options.binary)?;
        let dir = Scratch::new("otelcol")?;
        let [http_port] = free_ports::<1>()?;
        let root = dir.path().to_owned();
        let output = root.join("spans.jsonl");
        let config = format!(
            "# written by mcp-runtime-sentinel-testenv
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http_port}
exporters:
  file:
    path: {output}
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  telemetry:
    logs:
      level: info
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file, debug]
",
            output = output.display()
        );
        let config_path = root.join("config.yaml");
        std::fs::write(&config_path, config)
            .map_err(io(format!("writing {}", config_path.display())))?;
        let mut collector = Collector {
            server: Server::new(
                "the OpenTelemetry Collector",
                vec![
                    binary.to_string_lossy().into_owned(),
                    format!("--config=file:{}", config_path.display()),
                ],
                &root,
                &root.join("otelcol.log"),
            ),
            http_port,
            output,
            dir,
        };
        match collector.spawn() {
            Ok(()) => Ok(collector),
            Err(e) => {
                collector.server.kill();
                collector.dir.keep();
                Err(e)
            }
        }
    }

    fn spawn(&mut self) -> Result<()> {
        self.server.spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.server.check_alive("starting the collector")?;
            if port_accepts(self.http_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.server.start_error(
                    "starting the collector",
                    format!(
                        "port {} did not accept within {START_TIMEOUT:?}",
                        self.http_port
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        self.server.log()
    }

    /// Kills the collector at once (its port then refuses connections).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port and file; panics on failure.
    pub fn restart(&mut self) {
        self.spawn()
            .unwrap_or_else(|e| panic!("Collector::restart: {e}"));
    }

    /// Every span written so far, in the order received (a line still being written is left
    /// for the next read).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .flat_map(|request| parse_request(&request))
            .collect()
    }

    /// Waits until `done` holds for the spans received (returning them), or panics after
    /// `timeout` with what was received.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not receive the expected spans within {timeout:?}; it has:\n{}",
                spans
                    .iter()
                    .map(|s| format!(
                        "  {} {} trace={} span={} parent={} {:?}",
                        s.service, s.name, s.trace_id, s.span_id, s.parent_span_id, s.attributes
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The spans of one `ExportTraceServiceRequest` in OTLP JSON.
fn parse_request(request: &Value) -> Vec<ReceivedSpan> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let nanos = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for rs in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&rs["resource"]["attributes"])
            .remove("service.name")
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    name: text(&span["name"]),
                    kind: span["kind"].as_i64().unwrap_or(0),
                    attributes: attributes(&span["attributes"]),
                    status_code: span["status"]["code"].as_i64().unwrap_or(0),
                    start_unix_nanos: nanos(&span["startTimeUnixNano"]),
                    end_unix_nanos: nanos(&span["endTimeUnixNano"]),
                });
            }
        }
    }
    out
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_owned();
            let value = kv["value"].as_object()?.values().next()?;
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((key, value))
        })
        .collect()
}

fn resolve_binary(option: Option<PathBuf>) -> Result<PathBuf> {
    let (binary, from) = match option {
        Some(b) => (b, "CollectorOptions::binary"),
        None => match std::env::var_os("MCP_OTELCOL").filter(|v| !v.is_empty()) {
            Some(b) => (PathBuf::from(b), "$MCP_OTELCOL"),
            None => (
                cache_root()
                    .join("otel")
                    .join(OTELCOL_VERSION)
                    .join("otelcol"),
                "the install cache",
            ),
        },
    };
    if !binary.is_file() {
        return Err(Error::NotBuilt {
            part: "the OpenTelemetry Collector",
            detail: format!("no {} ({from})", binary.display()),
            script: OTEL_INSTALL_SCRIPT,
        });
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_pins_the_same_collector_version() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/otel/install.sh");
        let text = std::fs::read_to_string(&script).unwrap();
        let pin = text
            .lines()
            .find_map(|l| l.strip_prefix("OTELCOL_VERSION=\""))
            .and_then(|l| l.split('"').next())
            .expect("OTELCOL_VERSION=\"...\" in scripts/otel/install.sh");
        assert_eq!(
            pin, OTELCOL_VERSION,
            "scripts/otel/install.sh and otel.rs disagree"
        );
    }

    #[test]
    fn a_missing_binary_names_the_install_script() {
        let e = Collector::start_with(CollectorOptions {
            binary: Some("/nonexistent/otelcol".into()),
        })
        .unwrap_err();
        assert!(matches!(e, Error::NotBuilt { .. }), "{e}");
        assert!(e.to_string().contains("scripts/otel/install.sh"), "{e}");
    }

    /// One HTTP/1.0 POST of JSON; the whole answer.
    fn post_json(port: u16, path: &str, body: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_collector_writes_what_it_receives() {
        let collector = Collector::start();
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"probe"}}]},"scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","parentSpanId":"b7ad6b7169203331","name":"n","kind":4,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000","attributes":[{"key":"n","value":{"intValue":"5"}},{"key":"s","value":{"stringValue":"x"}}],"status":{"code":2}}]}]}]}"#;
        let answer = post_json(collector.http_port(), "/v1/traces", body);
        let status = answer.split(' ').nth(1).unwrap_or_default();
        assert_eq!(status, "200", "{answer}");
        let spans = collector.wait_for(Duration::from_secs(10), |s| !s.is_empty());
        let s = &spans[0];
        assert_eq!(
            (s.service.as_str(), s.name.as_str(), s.kind, s.status_code),
            ("probe", "n", 4, 2)
        );
        assert_eq!(s.parent_span_id, "b7ad6b7169203331");
        assert_eq!(s.attribute("n"), Some("5"));
        assert_eq!(s.attribute("s"), Some("x"));
        assert_eq!(s.end_unix_nanos - s.start_unix_nanos, 1000);
    }
}
