//! `mcp-runtime sentinel`: the recorded decisions, through mcp-sentinel's query API.

use std::collections::HashSet;
use std::io::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cli::{
    SentinelConnection, SentinelEventsArgs, SentinelFilter, SentinelStatsArgs, SentinelStatusArgs,
    SentinelTailArgs, SentinelUsageArgs,
};
use crate::commands::cluster::table;
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

fn text(e: &Value, k: &str) -> String {
    e[k].as_str().unwrap_or("-").to_owned()
}

const EVENT_COLUMNS: [&str; 7] = [
    "TIME", "DECISION", "REASON", "SERVER", "HUMAN", "AGENT", "CALL",
];

/// One row of the events table. Gateway decisions have their fields at the top; other
/// producers' events carry them in `payload` (and their event type stands in for the call).
fn event_row(e: &Value) -> Vec<String> {
    let fields = if e["payload"].is_object() {
        &e["payload"]
    } else {
        e
    };
    let call = ["tool", "tool_name", "prompt", "resource", "rpc_method"]
        .iter()
        .find_map(|k| fields[*k].as_str())
        .or_else(|| e["event_type"].as_str())
        .unwrap_or("-")
        .to_owned();
    vec![
        text(e, "time"),
        text(fields, "decision"),
        text(fields, "reason"),
        format!("{}/{}", text(fields, "namespace"), text(fields, "server")),
        text(fields, "human_id"),
        text(fields, "agent_id"),
        call,
    ]
}

pub fn events(args: SentinelEventsArgs) -> Result<()> {
    let client = SentinelClient::new(&args.connection)?;
    let mut query = filter_query(&args.filter);
    query.push(("limit", args.limit.to_string()));
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let page = client.get("/v1/events", &query)?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &page);
    }
    let rows: Vec<Vec<String>> = page["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(event_row)
        .collect();
    let mut report = table(&EVENT_COLUMNS, &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        report.push_str(&format!("\nmore: --cursor {next}\n"));
    }
    write_stdout(&mut out, &report)
}

pub fn stats(args: SentinelStatsArgs) -> Result<()> {
    let client = SentinelClient::new(&args.connection)?;
    let stats = client.get("/v1/stats", &filter_query(&args.filter))?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &stats);
    }
    let mut rows = vec![vec![
        "decisions".to_owned(),
        "".to_owned(),
        count(&stats["decisions"]),
    ]];
    for (group, field) in [("decision", "by_decision"), ("reason", "by_reason")] {
        if let Some(map) = stats[field].as_object() {
            rows.extend(
                map.iter()
                    .map(|(k, v)| vec![group.to_owned(), k.clone(), count(v)]),
            );
        }
    }
    write_stdout(&mut out, &table(&["BY", "VALUE", "COUNT"], &rows))
}

fn count(v: &Value) -> String {
    v.as_u64().unwrap_or(0).to_string()
}

/// A titled table of the usage report: title, header, rows.
type Section<'a> = (&'a str, &'a [&'a str], Vec<Vec<String>>);

/// A bar of `width` cells for `n` out of `max`.
fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 || n == 0 {
        return String::new();
    }
    let cells = ((n as f64 / max as f64) * width as f64).ceil() as usize;
    "#".repeat(cells.clamp(1, width))
}

pub fn usage(args: SentinelUsageArgs) -> Result<()> {
    let client = SentinelClient::new(&args.connection)?;
    let mut query = filter_query(&args.filter);
    query.push(("limit", args.limit.to_string()));
    for (k, v) in [("window", &args.window), ("bucket", &args.bucket)] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let u = client.get("/v1/usage", &query)?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &u);
    }
    let t = &u["totals"];
    let rows = |key: &str, f: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
        u[key]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(f)
            .collect()
    };
    let mut report = format!(
        "{} to {} ({} buckets)\n{} decisions: {} allowed, {} denied; {} servers, {} humans, {} agents, {} sessions; {} events\n",
        text(&u, "since"),
        text(&u, "until"),
        text(&u, "bucket"),
        count(&t["decisions"]),
        count(&t["allowed"]),
        count(&t["denied"]),
        count(&t["servers"]),
        count(&t["humans"]),
        count(&t["agents"]),
        count(&t["sessions"]),
        count(&t["events"]),
    );
    let sections: [Section<'_>; 4] = [
        (
            "SERVERS",
            &[
                "SERVER",
                "DECISIONS",
                "DENIED",
                "HUMANS",
                "AGENTS",
                "LAST SEEN",
            ],
            rows("servers", &|s| {
                vec![
                    format!("{}/{}", text(s, "namespace"), text(s, "server")),
                    count(&s["decisions"]),
                    count(&s["denied"]),
                    count(&s["humans"]),
                    count(&s["agents"]),
                    text(s, "last_seen"),
                ]
            }),
        ),
        (
            "CALLERS",
            &["HUMAN", "AGENT", "DECISIONS", "DENIED", "SERVERS", "TOOLS"],
            rows("actors", &|a| {
                vec![
                    text(a, "human"),
                    text(a, "agent"),
                    count(&a["decisions"]),
                    count(&a["denied"]),
                    count(&a["servers"]),
                    count(&a["tools"]),
                ]
            }),
        ),
        (
            "TOOLS",
            &["SERVER", "TOOL", "DECISIONS", "DENIED", "LAST SEEN"],
            rows("tools", &|t| {
                vec![
                    text(t, "server"),
                    text(t, "tool"),
                    count(&t["decisions"]),
                    count(&t["denied"]),
                    text(t, "last_seen"),
                ]
            }),
        ),
        (
            "REASONS",
            &["REASON", "DECISIONS"],
            rows("reasons", &|r| vec![text(r, "key"), count(&r["decisions"])]),
        ),
    ];
    for (title, header, rows) in sections {
        if !rows.is_empty() {
            report.push_str(&format!("\n{title}\n{}", table(header, &rows)));
        }
    }
    let series = u["series"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let max = series
        .iter()
        .map(|p| p["decisions"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let series_rows: Vec<Vec<String>> = series
        .iter()
        .map(|p| {
            vec![
                text(p, "start"),
                count(&p["allowed"]),
                count(&p["denied"]),
                bar(p["decisions"].as_u64().unwrap_or(0), max, 30),
            ]
        })
        .collect();
    report.push_str(&format!(
        "\nOVER TIME\n{}",
        table(&["FROM", "ALLOWED", "DENIED", ""], &series_rows)
    ));
    write_stdout(&mut out, &report)
}

pub fn tail(args: SentinelTailArgs) -> Result<()> {
    if args.output == Format::Yaml {
        return Err(CliError::hint(
            "sentinel tail prints a table or JSON lines, not YAML",
            "use -o table or -o json",
        ));
    }
    let client = SentinelClient::new(&args.connection)?;
    let filter = filter_query(&args.filter);
    let mut query = filter.clone();
    query.push(("limit", args.lines.clamp(1, 1000).to_string()));
    let page = client.get("/v1/events", &query)?;
    let mut latest: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
    latest.reverse();
    let mut out = std::io::stdout().lock();
    let json = args.output == Format::Json;
    let print = |out: &mut std::io::StdoutLock<'_>, events: &[Value]| -> Result<()> {
        for e in events {
            let line = if json {
                e.to_string()
            } else {
                tail_line(&event_row(e))
            };
            write_stdout(out, &format!("{line}\n"))?;
        }
        out.flush().map_err(|source| CliError::Write {
            path: "<stdout>".into(),
            source,
        })
    };
    if !json {
        let header: Vec<String> = EVENT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        write_stdout(&mut out, &format!("{}\n", tail_line(&header)))?;
    }
    print(&mut out, &latest)?;
    if args.no_follow {
        return Ok(());
    }
    // Follow: ask for events from the newest time seen (inclusive, so events recorded later
    // with the same timestamp are not missed), and skip the ids already printed at that time.
    let id = |e: &Value| e["event_id"].as_str().unwrap_or_default().to_owned();
    let mut since = latest.last().map(|e| text(e, "time"));
    let mut seen_at_since: HashSet<String> = latest
        .iter()
        .filter(|e| Some(text(e, "time")) == since)
        .map(id)
        .collect();
    let interval = std::time::Duration::from_secs(args.interval.max(1));
    loop {
        std::thread::sleep(interval);
        let mut query = filter.clone();
        query.retain(|(k, _)| *k != "since");
        query.push(("limit", "1000".to_owned()));
        if let Some(s) = &since {
            query.push(("since", s.clone()));
        } else if let Some(s) = args.filter.since.clone() {
            query.push(("since", s));
        }
        let page = client.get("/v1/events", &query)?;
        let mut new: Vec<Value> = page["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !seen_at_since.contains(&id(e)))
            .collect();
        new.reverse();
        if let Some(last) = new.last() {
            let t = text(last, "time");
            if since.as_ref() != Some(&t) {
                seen_at_since.clear();
            }
            seen_at_since.extend(new.iter().filter(|e| text(e, "time") == t).map(id));
            since = Some(t);
        }
        print(&mut out, &new)?;
    }
}

/// A row of `tail` in fixed-width columns (rows arrive one by one, so they cannot be aligned
/// on the widest value as a table is).
fn tail_line(cells: &[String]) -> String {
    const WIDTHS: [usize; 6] = [27, 8, 22, 28, 16, 16];
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match WIDTHS.get(i) {
            Some(w) => line.push_str(&format!("{cell:<w$} ")),
            None => line.push_str(cell),
        }
    }
    line.trim_end().to_owned()
}

pub fn status(args: SentinelStatusArgs) -> Result<u8> {
    let client = SentinelClient::new(&args.connection)?;
    let status = client.get("/v1/status", &[])?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        write_data(&mut out, args.output, &status)?;
        return Ok(0);
    }
    let retention = match status["retention_days"].as_u64() {
        Some(d) => format!("{d} days"),
        None => "forever".to_owned(),
    };
    let newest = status["newest_event"]["time"]
        .as_str()
        .unwrap_or("none yet")
        .to_owned();
    let rows = vec![
        vec!["url".to_owned(), args.connection.url.clone()],
        vec!["state".to_owned(), "up".to_owned()],
        vec!["version".to_owned(), text(&status, "version")],
        vec!["store".to_owned(), text(&status, "store")],
        vec!["started".to_owned(), text(&status, "started")],
        vec!["retention".to_owned(), retention],
        vec!["events".to_owned(), count(&status["events"])],
        vec!["decisions".to_owned(), count(&status["decisions"])],
        vec!["newest event".to_owned(), newest],
    ];
    write_stdout(&mut out, &table(&["", ""], &rows))?;
    Ok(0)
}

fn filter_query(f: &SentinelFilter) -> Vec<(&'static str, String)> {
    [
        ("source", &f.source),
        ("event_type", &f.event_type),
        ("trace_id", &f.trace_id),
        ("server", &f.server),
        ("namespace", &f.namespace),
        ("human", &f.human),
        ("agent", &f.agent),
        ("team", &f.team),
        ("session", &f.session),
        ("tool", &f.tool),
        ("decision", &f.decision),
        ("reason", &f.reason),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// mcp-sentinel's read API: base URL, key, and one runtime and connection pool for every call.
struct SentinelClient {
    url: String,
    key: String,
    runtime: tokio::runtime::Runtime,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl SentinelClient {
    fn new(conn: &SentinelConnection) -> Result<SentinelClient> {
        let key_file = conn
            .api_key_file
            .clone()
            .or_else(crate::commands::dev::dev_sentinel_key)
            .ok_or_else(|| {
                CliError::hint(
                    "no API key for Sentinel",
                    "give --api-key-file / MCP_SENTINEL_API_KEY_FILE (a file holding a read key); `mcp-runtime dev` creates one for its Sentinel",
                )
            })?;
        let key = std::fs::read_to_string(&key_file).map_err(|source| CliError::Read {
            path: key_file.clone(),
            source,
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Invalid(format!("cannot start the runtime: {e}")))?;
        let http = {
            let _guard = runtime.enter();
            HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>()
        };
        Ok(SentinelClient {
            url: conn.url.trim_end_matches('/').to_owned(),
            key: key.trim().to_owned(),
            runtime,
            http,
        })
    }

    /// GETs `path` with `query`; a non-2xx answer becomes an error carrying Sentinel's message.
    fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let url = format!(
            "{}{path}{}{}",
            self.url,
            if query.is_empty() { "" } else { "?" },
            query.join("&")
        );
        let uri: http::Uri = url.parse().map_err(|e| {
            CliError::hint(
                format!("--url {}: not a URL ({e})", self.url),
                "give mcp-sentinel's base URL, e.g. http://127.0.0.1:8095",
            )
        })?;
        let request = http::Request::get(uri)
            .header("x-api-key", &self.key)
            .body(Empty::<Bytes>::new())
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        let unreachable = |e: String| {
            CliError::hint(
                format!("cannot reach Sentinel at {}: {e}", self.url),
                "start mcp-sentinel (mcp-runtime dev starts one), or point --url / MCP_SENTINEL_URL at it",
            )
        };
        let (status, body) = self.runtime.block_on(async {
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.http.request(request),
            )
            .await
            .map_err(|_| unreachable("no answer within 30 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, CliError>((status, body))
        })?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            CliError::Invalid(format!(
                "Sentinel answered {status} with a body that is not JSON: {e}"
            ))
        })?;
        if !status.is_success() {
            let message = value["error"]["message"].as_str().unwrap_or("no message");
            return Err(match status {
                http::StatusCode::UNAUTHORIZED => CliError::hint(
                    format!("Sentinel refused the key: {message}"),
                    "give a read API key with --api-key-file / MCP_SENTINEL_API_KEY_FILE",
                ),
                http::StatusCode::FORBIDDEN => CliError::hint(
                    format!("Sentinel refused: {message}"),
                    "this key is scoped; ask only for its namespaces or teams, or use a key that may see more",
                ),
                _ => CliError::Invalid(format!("Sentinel answered {status}: {message}")),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("2026-11-26T10:00:00+01:00"),
            "2026-11-26T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(encode("tool_1.x~"), "tool_1.x~");
    }
}
