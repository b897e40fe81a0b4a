//! `mcp-runtime sentinel`: the recorded decisions, through mcp-sentinel's query API.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cli::{SentinelConnection, SentinelEventsArgs, SentinelFilter, SentinelStatsArgs};
use crate::commands::cluster::table;
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

pub fn events(args: SentinelEventsArgs) -> Result<()> {
    let mut query = filter_query(&args.filter);
    query.push(("limit", args.limit.to_string()));
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let page = get(&args.connection, "/v1/events", &query)?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &page);
    }
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or("-").to_owned();
    let rows: Vec<Vec<String>> = page["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let item = ["tool", "prompt", "resource", "rpc_method"]
                .iter()
                .find_map(|k| e[*k].as_str())
                .unwrap_or("-")
                .to_owned();
            vec![
                text(e, "time"),
                text(e, "decision"),
                text(e, "reason"),
                format!("{}/{}", text(e, "namespace"), text(e, "server")),
                text(e, "human_id"),
                text(e, "agent_id"),
                item,
            ]
        })
        .collect();
    let mut report = table(
        &[
            "TIME", "DECISION", "REASON", "SERVER", "HUMAN", "AGENT", "CALL",
        ],
        &rows,
    );
    if let Some(next) = page["next_cursor"].as_str() {
        report.push_str(&format!("\nmore: --cursor {next}\n"));
    }
    write_stdout(&mut out, &report)
}

pub fn stats(args: SentinelStatsArgs) -> Result<()> {
    let stats = get(&args.connection, "/v1/stats", &filter_query(&args.filter))?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &stats);
    }
    let count = |v: &Value| v.as_u64().unwrap_or(0).to_string();
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

fn filter_query(f: &SentinelFilter) -> Vec<(&'static str, String)> {
    [
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

/// GETs `path` with `query`; a non-2xx answer becomes an error carrying Sentinel's message.
fn get(conn: &SentinelConnection, path: &str, query: &[(&str, String)]) -> Result<Value> {
    let key = std::fs::read_to_string(&conn.api_key_file).map_err(|source| CliError::Read {
        path: conn.api_key_file.clone(),
        source,
    })?;
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let url = format!(
        "{}{path}{}{}",
        conn.url.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let uri: http::Uri = url.parse().map_err(|e| {
        CliError::hint(
            format!("--url {}: not a URL ({e})", conn.url),
            "give mcp-sentinel's base URL, e.g. http://127.0.0.1:8095",
        )
    })?;
    let request = http::Request::get(uri)
        .header("x-api-key", key.trim())
        .body(Empty::<Bytes>::new())
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the runtime: {e}")))?;
    let unreachable = |e: String| {
        CliError::hint(
            format!("cannot reach Sentinel at {}: {e}", conn.url),
            "start mcp-sentinel, or point --url / MCP_SENTINEL_URL at it",
        )
    };
    let (status, body) = runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
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
        return Err(if status == http::StatusCode::UNAUTHORIZED {
            CliError::hint(
                format!("Sentinel refused the key: {message}"),
                "give a read API key with --api-key-file / MCP_SENTINEL_API_KEY_FILE",
            )
        } else {
            CliError::Invalid(format!("Sentinel answered {status}: {message}"))
        });
    }
    Ok(value)
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
