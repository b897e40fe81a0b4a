//! The Grafana dashboard (`deploy/grafana/mcp-runtime-dashboard.json`): the gateway's and
//! Sentinel's Prometheus metrics, one row each.
//!
//! Every query names metrics the binaries really export: `xtask/tests/dashboard.rs` starts
//! `mcp-gateway` and `mcp-sentinel`, scrapes them and checks each name and label in each `expr`.

use serde::Serialize;

/// File name under `deploy/grafana/`.
pub const FILE: &str = "mcp-runtime-dashboard.json";

/// Grafana's dashboard JSON model version this is written for (Grafana 10.x/11.x).
const SCHEMA_VERSION: u32 = 39;

/// Grafana lays panels out on 24 columns.
const GRID_COLUMNS: u32 = 24;
const PANEL_HEIGHT: u32 = 8;

/// Rate window that adapts to the scrape interval and the zoom.
const RATE: &str = "$__rate_interval";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dashboard {
    uid: &'static str,
    title: &'static str,
    description: &'static str,
    tags: Vec<&'static str>,
    editable: bool,
    /// 1: a shared crosshair across panels.
    graph_tooltip: u8,
    time: TimeRange,
    refresh: &'static str,
    schema_version: u32,
    version: u32,
    templating: Templating,
    annotations: Annotations,
    panels: Vec<Panel>,
}

#[derive(Serialize)]
struct TimeRange {
    from: &'static str,
    to: &'static str,
}

#[derive(Serialize)]
struct Templating {
    list: Vec<Variable>,
}

#[derive(Serialize)]
struct Annotations {
    list: Vec<serde_json::Value>,
}

/// The `${datasource}` variable: any Prometheus data source of the Grafana it is imported into.
#[derive(Serialize)]
struct Variable {
    name: &'static str,
    label: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    query: &'static str,
    refresh: u8,
    hide: u8,
    current: serde_json::Value,
    options: Vec<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GridPos {
    h: u32,
    w: u32,
    x: u32,
    y: u32,
}

#[derive(Clone, Serialize)]
struct DataSource {
    #[serde(rename = "type")]
    kind: &'static str,
    uid: &'static str,
}

const PROMETHEUS: DataSource = DataSource {
    kind: "prometheus",
    uid: "${datasource}",
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    ref_id: String,
    datasource: DataSource,
    expr: String,
    legend_format: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Panel {
    id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'static str,
    grid_pos: GridPos,
    #[serde(skip_serializing_if = "Option::is_none")]
    datasource: Option<DataSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    targets: Vec<Target>,
    /// Rows only: open, with their panels beside them rather than inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    collapsed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    panels: Option<Vec<Panel>>,
}

/// A time-series panel before it is placed: title, unit and its queries (`expr`, legend).
struct Chart {
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
}

fn chart(
    title: &'static str,
    unit: &'static str,
    description: &'static str,
    queries: Vec<(String, &'static str)>,
) -> Chart {
    Chart {
        title,
        description,
        unit,
        queries,
    }
}

/// `sum by (labels) (rate(metric{selector}[$__rate_interval]))`.
fn rate(metric: &str, selector: &str, by: &str) -> String {
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" by ({by}) ")
    };
    format!("sum{by}(rate({metric}{selector}[{RATE}]))")
}

/// The `q` quantile of a histogram from its buckets, per `by` labels.
fn quantile(q: f64, histogram: &str, by: &str) -> String {
    let by = if by.is_empty() {
        "le".to_owned()
    } else {
        format!("le, {by}")
    };
    format!("histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket[{RATE}])))")
}

fn gateway() -> Vec<Chart> {
    vec![
        chart(
            "Requests by status",
            "reqps",
            "Requests on the MCP listener per second, by HTTP status.",
            vec![(
                rate("mcp_gateway_requests_total", "", "status"),
                "{{status}}",
            )],
        ),
        chart(
            "Denials by reason",
            "ops",
            "Refused decisions per second, by reason (policy denials, authentication failures, malformed requests, upstream failures).",
            vec![(
                rate(
                    "mcp_gateway_decisions_total",
                    r#"{decision="deny"}"#,
                    "reason",
                ),
                "{{reason}}",
            )],
        ),
        chart(
            "Request latency",
            "s",
            "Time from request to response headers, upstream included.",
            vec![
                (
                    quantile(0.5, "mcp_gateway_request_duration_seconds", ""),
                    "p50",
                ),
                (
                    quantile(0.95, "mcp_gateway_request_duration_seconds", ""),
                    "p95",
                ),
                (
                    quantile(0.99, "mcp_gateway_request_duration_seconds", ""),
                    "p99",
                ),
            ],
        ),
        chart(
            "Upstream errors",
            "ops",
            "Refusals because of the upstream: unreachable or broke the exchange (upstream_error), no answer in time (upstream_timeout), an answer that could not be inspected (response_not_filterable); and every 5xx answer, by status.",
            vec![
                (
                    rate(
                        "mcp_gateway_decisions_total",
                        r#"{reason=~"upstream_error|upstream_timeout|response_not_filterable"}"#,
                        "reason",
                    ),
                    "{{reason}}",
                ),
                (
                    rate("mcp_gateway_requests_total", r#"{status=~"5.."}"#, "status"),
                    "HTTP {{status}}",
                ),
            ],
        ),
        chart(
            "Audit delivery",
            "ops",
            "Audit events per second: emitted by the gateway, acknowledged by the ingest, and lost (dropped before a sink, skipped after a 4xx, write errors). Failed POSTs are retried.",
            vec![
                (
                    rate("mcp_gateway_audit_emitted_events_total", "", ""),
                    "emitted",
                ),
                (
                    rate("mcp_gateway_audit_shipped_events_total", "", ""),
                    "shipped",
                ),
                (
                    rate("mcp_gateway_audit_ship_failures_total", "", ""),
                    "failed POSTs",
                ),
                (
                    rate("mcp_gateway_audit_dropped_events_total", "", ""),
                    "dropped",
                ),
                (
                    rate("mcp_gateway_audit_skipped_events_total", "", ""),
                    "skipped",
                ),
                (
                    rate("mcp_gateway_audit_write_errors_total", "", ""),
                    "write errors",
                ),
            ],
        ),
        chart(
            "Audit spool backlog",
            "short",
            "Events spooled on disk and not yet acknowledged by the ingest: grows while the ingest is unreachable.",
            vec![(
                "sum(mcp_gateway_audit_spool_pending_events)".to_owned(),
                "pending events",
            )],
        ),
        chart(
            "Audit spool size",
            "bytes",
            "",
            vec![(
                "sum(mcp_gateway_audit_spool_bytes)".to_owned(),
                "spool bytes",
            )],
        ),
        chart(
            "Policy reloads",
            "ops",
            "Policy loads by result: loaded, rejected (the previous policy stays), unchanged.",
            vec![(
                rate("mcp_gateway_policy_reloads_total", "", "result"),
                "{{result}}",
            )],
        ),
    ]
}

fn sentinel() -> Vec<Chart> {
    vec![
        chart(
            "Ingest requests by outcome",
            "reqps",
            "",
            vec![(
                rate("mcp_sentinel_ingest_requests_total", "", "outcome"),
                "{{outcome}}",
            )],
        ),
        chart(
            "Ingested events",
            "ops",
            "Events per second: accepted (stored now), duplicate (already stored: a retried batch), rejected (invalid).",
            vec![(
                rate("mcp_sentinel_ingest_events_total", "", "result"),
                "{{result}}",
            )],
        ),
        chart(
            "Duplicate share",
            "percentunit",
            "Share of received events that were already stored.",
            vec![(
                format!(
                    "{} / {}",
                    rate(
                        "mcp_sentinel_ingest_events_total",
                        r#"{result="duplicate"}"#,
                        ""
                    ),
                    rate("mcp_sentinel_ingest_events_total", "", "")
                ),
                "duplicates",
            )],
        ),
        chart(
            "Ingest rejects",
            "reqps",
            "Ingest requests refused: invalid body, bad key, too large, store failure.",
            vec![(
                rate(
                    "mcp_sentinel_ingest_requests_total",
                    r#"{outcome=~"rejected|unauthorized|too_large|error"}"#,
                    "outcome",
                ),
                "{{outcome}}",
            )],
        ),
        chart(
            "Insert latency",
            "s",
            "Time to store one batch (one transaction).",
            vec![
                (
                    quantile(0.5, "mcp_sentinel_store_insert_duration_seconds", ""),
                    "p50",
                ),
                (
                    quantile(0.95, "mcp_sentinel_store_insert_duration_seconds", ""),
                    "p95",
                ),
                (
                    quantile(0.99, "mcp_sentinel_store_insert_duration_seconds", ""),
                    "p99",
                ),
            ],
        ),
        chart(
            "Batch size",
            "short",
            "Events per ingest batch.",
            vec![
                (quantile(0.5, "mcp_sentinel_ingest_batch_events", ""), "p50"),
                (
                    quantile(0.95, "mcp_sentinel_ingest_batch_events", ""),
                    "p95",
                ),
            ],
        ),
        chart(
            "Query latency p95",
            "s",
            "",
            vec![(
                quantile(0.95, "mcp_sentinel_query_duration_seconds", "route"),
                "{{route}}",
            )],
        ),
        chart(
            "Queries by route and status",
            "reqps",
            "",
            vec![(
                rate("mcp_sentinel_query_requests_total", "", "route, status"),
                "{{route}} {{status}}",
            )],
        ),
        chart(
            "Store errors",
            "ops",
            "Failed store calls by operation.",
            vec![(
                rate("mcp_sentinel_store_errors_total", "", "operation"),
                "{{operation}}",
            )],
        ),
        chart(
            "Processor: records from Kafka",
            "ops",
            "Records the processors read, by result (stored, duplicate, undecodable).",
            vec![(
                rate("mcp_sentinel_processor_events_total", "", "result"),
                "{{result}}",
            )],
        ),
        chart(
            "Processor: store trouble",
            "short",
            "Intake paused on a failing store (1 = paused, per processor) and failed inserts/commits.",
            vec![
                (
                    "max(mcp_sentinel_processor_intake_paused)".to_owned(),
                    "paused",
                ),
                (
                    rate("mcp_sentinel_processor_insert_failures_total", "", ""),
                    "insert failures/s",
                ),
                (
                    rate("mcp_sentinel_processor_commit_failures_total", "", ""),
                    "commit failures/s",
                ),
            ],
        ),
    ]
}

fn time_series(id: u32, chart: Chart, grid_pos: GridPos) -> Panel {
    let targets = chart
        .queries
        .into_iter()
        .zip(b'A'..)
        .map(|((expr, legend), letter)| Target {
            ref_id: char::from(letter).to_string(),
            datasource: PROMETHEUS,
            expr,
            legend_format: legend.to_owned(),
        })
        .collect();
    Panel {
        id,
        kind: "timeseries",
        title: chart.title,
        description: chart.description,
        grid_pos,
        datasource: Some(PROMETHEUS),
        field_config: Some(serde_json::json!({
            "defaults": {"unit": chart.unit, "min": 0},
            "overrides": []
        })),
        options: Some(serde_json::json!({
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
            "tooltip": {"mode": "multi", "sort": "desc"}
        })),
        targets,
        collapsed: None,
        panels: None,
    }
}

fn row(id: u32, title: &'static str, y: u32) -> Panel {
    Panel {
        id,
        kind: "row",
        title,
        description: "",
        grid_pos: GridPos {
            h: 1,
            w: GRID_COLUMNS,
            x: 0,
            y,
        },
        datasource: None,
        field_config: None,
        options: None,
        targets: Vec::new(),
        collapsed: Some(false),
        panels: Some(Vec::new()),
    }
}

/// Rows of charts, three charts across, one panel id each in order.
fn layout(sections: Vec<(&'static str, Vec<Chart>)>) -> Vec<Panel> {
    const ACROSS: u32 = 3;
    let width = GRID_COLUMNS / ACROSS;
    let mut panels = Vec::new();
    let mut y = 0;
    for (title, charts) in sections {
        panels.push(row(panels.len() as u32 + 1, title, y));
        y += 1;
        let count = charts.len() as u32;
        for (i, chart) in (0..).zip(charts) {
            let grid_pos = GridPos {
                h: PANEL_HEIGHT,
                w: width,
                x: (i % ACROSS) * width,
                y: y + (i / ACROSS) * PANEL_HEIGHT,
            };
            panels.push(time_series(panels.len() as u32 + 1, chart, grid_pos));
        }
        y += count.div_ceil(ACROSS) * PANEL_HEIGHT;
    }
    panels
}

/// The dashboard's JSON, pretty-printed, with a final newline.
pub fn render() -> String {
    let dashboard = Dashboard {
        uid: "mcp-runtime",
        title: "mcp-runtime",
        description: "The gateway (mcp_gateway_*) and Sentinel (mcp_sentinel_*). Generated by `cargo xtask generate`; do not edit.",
        tags: vec!["mcp-runtime"],
        editable: true,
        graph_tooltip: 1,
        time: TimeRange {
            from: "now-6h",
            to: "now",
        },
        refresh: "30s",
        schema_version: SCHEMA_VERSION,
        version: 1,
        templating: Templating {
            list: vec![Variable {
                name: "datasource",
                label: "Prometheus",
                kind: "datasource",
                query: "prometheus",
                refresh: 1,
                hide: 0,
                current: serde_json::json!({}),
                options: Vec::new(),
            }],
        },
        annotations: Annotations { list: Vec::new() },
        panels: layout(vec![("Gateway", gateway()), ("Sentinel", sentinel())]),
    };
    let mut text = serde_json::to_string_pretty(&dashboard).expect("the dashboard serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_dashboard_is_what_the_code_renders() {
        mcp_runtime_testkit::assert_golden(
            format!("deploy/grafana/{}", super::FILE),
            &super::render(),
        );
    }
}
