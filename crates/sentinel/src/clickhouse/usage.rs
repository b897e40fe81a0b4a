//! Stats and usage rollups. They aggregate "facts": rows of `events_hourly` for the whole hours
//! of the window and, for the partial hours at its edges, rows of `events` grouped the same way,
//! so both halves have the same columns and the same aggregate states and one query adds them
//! up. A filter on the session or the trace (not kept per hour) reads `events` only.

use std::collections::HashMap;

use super::{ClickHouseStore, HOUR_NS, ROLLUP_KEYS, ROLLUP_STATES, int, opt, timestamp, uint};
use crate::sqlite::time_ns;
use crate::store::{
    ActorUsage, Counts, EventFilter, KeyCount, ServerUsage, Stats, StoreError, ToolUsage, Usage,
    UsageQuery, UsageTotals, full_series,
};

/// Decision counts from the facts' states (`decisions_state` sums each event's `count`).
const COUNTS: &str = "sumMergeIf(decisions_state, decision != '') AS decisions, \
    sumMergeIf(decisions_state, decision = 'allow') AS allowed, \
    sumMergeIf(decisions_state, decision = 'deny') AS denied";

fn counts(row: &serde_json::Value) -> Counts {
    Counts {
        decisions: uint(&row["decisions"]),
        allowed: uint(&row["allowed"]),
        denied: uint(&row["denied"]),
    }
}

/// The facts of `filter` (its `since`/`until` are the window), as a subquery.
fn facts(store: &ClickHouseStore, filter: &EventFilter) -> String {
    let since = filter.since.map(time_ns);
    let until = filter.until.map(time_ns);
    let from_events = |from: Option<i64>, to: Option<i64>| {
        let mut terms = ClickHouseStore::filter_terms(filter);
        terms.extend(ClickHouseStore::window_terms("time_ns", from, to));
        format!(
            "SELECT intDiv(time_ns, {HOUR_NS}) * {HOUR_NS} AS hour_ns, {ROLLUP_KEYS}, \
             {ROLLUP_STATES} FROM {}{} GROUP BY hour_ns, {ROLLUP_KEYS}",
            store.table(),
            ClickHouseStore::where_clause(&terms)
        )
    };
    if filter.session.is_some() || filter.trace_id.is_some() {
        return format!("({})", from_events(since, until));
    }
    // The whole hours of the window: [first_hour, last_hour).
    let first_hour = since
        .map(|s| s.div_euclid(HOUR_NS) * HOUR_NS + HOUR_NS * i64::from(s.rem_euclid(HOUR_NS) != 0));
    let last_hour = until.map(|u| u.div_euclid(HOUR_NS) * HOUR_NS);
    if let (Some(first), Some(last)) = (first_hour, last_hour)
        && first >= last
    {
        return format!("({})", from_events(since, until));
    }
    let mut terms = ClickHouseStore::filter_terms(filter);
    terms.extend(ClickHouseStore::window_terms(
        "hour_ns", first_hour, last_hour,
    ));
    let mut parts = vec![format!(
        "SELECT hour_ns, {ROLLUP_KEYS}, events_state, decisions_state, last_state, \
         sessions_state FROM {}{}",
        store.rollup_table(),
        ClickHouseStore::where_clause(&terms)
    )];
    if let (Some(s), Some(first)) = (since, first_hour)
        && s < first
    {
        parts.push(from_events(Some(s), Some(first)));
    }
    if let (Some(u), Some(last)) = (until, last_hour)
        && last < u
    {
        parts.push(from_events(Some(last), Some(u)));
    }
    format!("({})", parts.join(" UNION ALL "))
}

/// `WHERE` over the facts, for the terms a ranking adds.
fn only(terms: &[&str]) -> String {
    if terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", terms.join(" AND "))
    }
}

pub(super) fn stats(store: &ClickHouseStore, filter: &EventFilter) -> Result<Stats, StoreError> {
    let sql = format!(
        "SELECT decision, reason, sumMerge(events_state) AS events, \
         sumMerge(decisions_state) AS decisions FROM {} GROUP BY decision, reason",
        facts(store, filter)
    );
    let mut stats = Stats::default();
    for row in store.rows(&sql)? {
        stats.events += uint(&row["events"]);
        let Some(decision) = opt(&row["decision"]) else {
            continue;
        };
        let decisions = uint(&row["decisions"]);
        stats.decisions = stats.decisions.saturating_add(decisions);
        *stats.by_decision.entry(decision).or_default() += decisions;
        if let Some(reason) = opt(&row["reason"]) {
            *stats.by_reason.entry(reason).or_default() += decisions;
        }
    }
    Ok(stats)
}

pub(super) fn usage(store: &ClickHouseStore, q: &UsageQuery) -> Result<Usage, StoreError> {
    let mut filter = q.filter.clone();
    filter.since = Some(q.since);
    filter.until = Some(q.until);
    let facts = facts(store, &filter);
    let limit = q.limit;

    let totals = store
        .rows(&format!(
            "SELECT sumMerge(events_state) AS events, {COUNTS},
             uniqExactIf(server, server != '') AS servers,
             uniqExactIf(human_id, human_id != '') AS humans,
             uniqExactIf(agent_id, agent_id != '') AS agents,
             uniqMerge(sessions_state) AS sessions
             FROM {facts}"
        ))?
        .pop()
        .map(|r| UsageTotals {
            events: uint(&r["events"]),
            counts: counts(&r),
            servers: uint(&r["servers"]),
            humans: uint(&r["humans"]),
            agents: uint(&r["agents"]),
            sessions: uint(&r["sessions"]),
        })
        .unwrap_or_default();

    let servers = store
        .rows(&format!(
            "SELECT server, namespace, {COUNTS},
             uniqExactIf(human_id, human_id != '') AS humans,
             uniqExactIf(agent_id, agent_id != '') AS agents, maxMerge(last_state) AS last
             FROM {facts}{} GROUP BY server, namespace
             ORDER BY decisions DESC, server, namespace LIMIT {limit}",
            only(&["server != ''"])
        ))?
        .iter()
        .map(|r| ServerUsage {
            server: r["server"].as_str().unwrap_or_default().to_owned(),
            namespace: r["namespace"].as_str().unwrap_or_default().to_owned(),
            counts: counts(r),
            humans: uint(&r["humans"]),
            agents: uint(&r["agents"]),
            last_seen: timestamp(int(&r["last"])),
        })
        .collect();

    let actors = store
        .rows(&format!(
            "SELECT human_id, agent_id, {COUNTS},
             uniqExactIf(server, server != '') AS servers,
             uniqExactIf(tool, tool != '') AS tools, maxMerge(last_state) AS last
             FROM {facts}{} GROUP BY human_id, agent_id
             ORDER BY decisions DESC, human_id, agent_id LIMIT {limit}",
            only(&["(human_id != '' OR agent_id != '')"])
        ))?
        .iter()
        .map(|r| ActorUsage {
            human: opt(&r["human_id"]),
            agent: opt(&r["agent_id"]),
            counts: counts(r),
            servers: uint(&r["servers"]),
            tools: uint(&r["tools"]),
            last_seen: timestamp(int(&r["last"])),
        })
        .collect();

    let tools = store
        .rows(&format!(
            "SELECT server, tool, {COUNTS}, maxMerge(last_state) AS last
             FROM {facts}{} GROUP BY server, tool
             ORDER BY decisions DESC, server, tool LIMIT {limit}",
            only(&["tool != ''"])
        ))?
        .iter()
        .map(|r| ToolUsage {
            server: r["server"].as_str().unwrap_or_default().to_owned(),
            tool: r["tool"].as_str().unwrap_or_default().to_owned(),
            counts: counts(r),
            last_seen: timestamp(int(&r["last"])),
        })
        .collect();

    let keyed = |column: &str| -> Result<Vec<KeyCount>, StoreError> {
        let not_empty = format!("{column} != ''");
        Ok(store
            .rows(&format!(
                "SELECT {column} AS key, sumMerge(decisions_state) AS decisions FROM {facts}{}
                 GROUP BY {column} ORDER BY decisions DESC, key LIMIT {limit}",
                only(&[&not_empty, "decision != ''"])
            ))?
            .iter()
            .map(|r| KeyCount {
                key: r["key"].as_str().unwrap_or_default().to_owned(),
                decisions: uint(&r["decisions"]),
            })
            .collect())
    };
    let decisions = keyed("decision")?;
    let reasons = keyed("reason")?;

    // Buckets are whole hours or days, so every fact (an hour) falls in exactly one.
    let width = q.bucket.seconds();
    let found: HashMap<i64, Counts> = store
        .rows(&format!(
            "SELECT intDiv(hour_ns, {}) * {width} AS start, {COUNTS} FROM {facts} GROUP BY start",
            width * 1_000_000_000,
        ))?
        .iter()
        .map(|r| (int(&r["start"]), counts(r)))
        .collect();
    let series = full_series(q.since, q.until, q.bucket, &found);
    let recent = store.page(&filter, limit, None)?;
    let recent = super::page_events(recent, limit)?.events;
    Ok(Usage {
        since: q.since,
        until: q.until,
        bucket: q.bucket,
        totals,
        servers,
        actors,
        tools,
        decisions,
        reasons,
        series,
        recent,
    })
}
