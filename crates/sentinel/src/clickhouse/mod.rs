//! The scale store: ClickHouse over its HTTP interface.
//!
//! Written for the oldest server we meet (Debian's 18.16) and current ones alike: typed columns
//! instead of JSON extraction at query time, no `DateTime64` (nanoseconds in an `Int64`), no
//! table TTL (retention drops whole day partitions), no query parameters (values are quoted
//! here), no tuple comparison, no `SimpleAggregateFunction`.
//!
//! Two tables:
//! - `events`, one row per event, a `ReplacingMergeTree` keyed on (time, event id). Duplicates are
//!   removed before they are written: each insert first looks up its batch's ids (see
//!   [`ClickHouseStore::stored_ids`]), so a retried batch or a processor restarted before its
//!   offsets were committed stores nothing twice. Pages of events also read `FINAL`, which would
//!   collapse a duplicate that two processors wrote at the same instant.
//! - `events_hourly`, an `AggregatingMergeTree` fed by a materialized view on every insert: per
//!   hour and per combination of the columns a rollup groups or filters by, the event and
//!   decision counts, the newest time and the sessions seen. Stats and usage read it for the
//!   whole hours of their window and `events` only for the partial hours at its edges (see
//!   [`usage`]), so a week's rollup reads a few hundred thousand rows instead of millions.

mod http;
mod usage;

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::sqlite::time_ns;
use crate::store::{
    EventFilter, InsertOutcome, Page, PageCursor, Record, Stats, Store, StoreError, Usage,
    UsageQuery,
};
use http::{Client, quote};

/// Where the server is and which database to use.
#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// `host:port` of the HTTP interface.
    pub address: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

pub struct ClickHouseStore {
    client: Client,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A database name is spliced into SQL: letters, digits and `_` only.
pub fn valid_database(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Integers of `JSONEachRow` output: 64-bit ones arrive quoted.
fn int(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn uint(v: &serde_json::Value) -> u64 {
    int(v).max(0) as u64
}

fn opt(v: &serde_json::Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The UTC day of `t`, as ClickHouse reads a `Date`.
fn day(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One hour in nanoseconds: the grain of `events_hourly`.
const HOUR_NS: i64 = 3_600_000_000_000;

/// The columns `events_hourly` keeps per hour: every column a rollup groups or filters by,
/// except the session and the trace (queries filtering on those read `events`).
const ROLLUP_KEYS: &str =
    "server, namespace, team_id, human_id, agent_id, tool, decision, reason, source, event_type";

/// The aggregates of `events_hourly`, as computed from rows of `events`.
const ROLLUP_STATES: &str = "sumState(toUInt64(1)) AS events_state, \
    sumState(count) AS decisions_state, maxState(time_ns) AS last_state, \
    uniqStateIf(session_id, session_id != '') AS sessions_state";

impl ClickHouseStore {
    /// Connects, creating the database and tables when missing.
    pub fn open(config: ClickHouseConfig) -> Result<ClickHouseStore, StoreError> {
        if !valid_database(&config.database) {
            return Err(StoreError(format!(
                "ClickHouse database name `{}`: use letters, digits and _ (not starting with a digit)",
                config.database
            )));
        }
        let store = ClickHouseStore {
            client: Client { config },
        };
        let db = &store.client.config.database;
        store.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"))?;
        store.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.events (
                day Date,
                time_ns Int64,
                event_id String,
                source String,
                event_type String,
                trace_id String,
                server String,
                namespace String,
                team_id String,
                human_id String,
                agent_id String,
                session_id String,
                tool String,
                decision String,
                reason String,
                count UInt64,
                json String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY day
            ORDER BY (time_ns, event_id)"
        ))?;
        let rollup_existed = store
            .rows(&format!("EXISTS TABLE {db}.events_hourly"))?
            .first()
            .is_some_and(|r| uint(&r["result"]) == 1);
        store.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.events_hourly (
                day Date,
                hour_ns Int64,
                server String,
                namespace String,
                team_id String,
                human_id String,
                agent_id String,
                tool String,
                decision String,
                reason String,
                source String,
                event_type String,
                events_state AggregateFunction(sum, UInt64),
                decisions_state AggregateFunction(sum, UInt64),
                last_state AggregateFunction(max, Int64),
                sessions_state AggregateFunction(uniq, String)
            ) ENGINE = AggregatingMergeTree()
            PARTITION BY day
            ORDER BY (hour_ns, {ROLLUP_KEYS})"
        ))?;
        let hourly = format!(
            "SELECT day, intDiv(time_ns, {HOUR_NS}) * {HOUR_NS} AS hour_ns, {ROLLUP_KEYS}, \
             {ROLLUP_STATES} FROM {db}.events GROUP BY day, hour_ns, {ROLLUP_KEYS}"
        );
        store.execute(&format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_hourly_mv TO {db}.events_hourly \
             AS {hourly}"
        ))?;
        if !rollup_existed {
            // A database of a version without the rollup: fill it once from what is stored.
            // Events inserted between the view's creation and this statement would count
            // twice, so upgrade with the processors stopped (docs/sentinel.md).
            let now = crate::sqlite::time_ns(Timestamp::now());
            store.execute(&format!(
                "INSERT INTO {db}.events_hourly SELECT day, \
                 intDiv(time_ns, {HOUR_NS}) * {HOUR_NS} AS hour_ns, {ROLLUP_KEYS}, \
                 {ROLLUP_STATES} FROM {db}.events FINAL WHERE time_ns < {now} \
                 GROUP BY day, hour_ns, {ROLLUP_KEYS}"
            ))?;
        }
        Ok(store)
    }

    fn table(&self) -> String {
        format!("{}.events", self.client.config.database)
    }

    fn rollup_table(&self) -> String {
        format!("{}.events_hourly", self.client.config.database)
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.client.execute(sql)
    }

    fn rows(&self, sql: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        self.client.rows(sql)
    }

    /// Every term of `filter` but its window, on columns both tables have, except the session
    /// and the trace (only `events` has them).
    fn filter_terms(filter: &EventFilter) -> Vec<String> {
        let mut terms: Vec<String> = Vec::new();
        let text = [
            ("source", &filter.source),
            ("event_type", &filter.event_type),
            ("server", &filter.server),
            ("namespace", &filter.namespace),
            ("team_id", &filter.team),
            ("human_id", &filter.human),
            ("agent_id", &filter.agent),
            ("session_id", &filter.session),
            ("tool", &filter.tool),
            ("decision", &filter.decision),
            ("reason", &filter.reason),
            ("trace_id", &filter.trace_id),
        ];
        for (column, value) in text {
            if let Some(v) = value {
                terms.push(format!("{column} = {}", quote(v)));
            }
        }
        if let Some(scope) = &filter.scope {
            let mut alternatives = Vec::new();
            for (column, set) in [("namespace", &scope.namespaces), ("team_id", &scope.teams)] {
                if !set.is_empty() {
                    let list: Vec<String> = set.iter().map(|v| quote(v)).collect();
                    alternatives.push(format!("{column} IN ({})", list.join(", ")));
                }
            }
            if alternatives.is_empty() {
                terms.push("0".into());
            } else {
                terms.push(format!("({})", alternatives.join(" OR ")));
            }
        }
        terms
    }

    /// `column` (nanoseconds) within [`since`, `until`), with the day bounds that let ClickHouse
    /// skip whole partitions.
    fn window_terms(column: &str, since: Option<i64>, until: Option<i64>) -> Vec<String> {
        let mut terms = Vec::new();
        if let Some(ns) = since {
            terms.push(format!("{column} >= {ns}"));
            terms.push(format!("day >= toDate({})", quote(&day(timestamp(ns)))));
        }
        if let Some(ns) = until {
            terms.push(format!("{column} < {ns}"));
            // `until` is exclusive: its own day is needed only past midnight.
            terms.push(format!(
                "day <= toDate({})",
                quote(&day(timestamp(ns.saturating_sub(1))))
            ));
        }
        terms
    }

    fn where_clause(terms: &[String]) -> String {
        if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        }
    }

    /// The ids of `events` already stored, so a retried batch reports its duplicates and does
    /// not store them again. Looked up within the batch's own time range (read through the
    /// primary key), except for events whose time is their arrival (an envelope without a
    /// timestamp): a retry of those carries another time, so their ids are looked up within a
    /// day around it.
    fn stored_ids(
        &self,
        events: &[Record],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut alternatives = Vec::new();
        for arrival_time in [false, true] {
            let group: Vec<&Record> = events
                .iter()
                .filter(|r| r.arrival_time == arrival_time)
                .collect();
            let (Some(min), Some(max)) = (
                group.iter().map(|r| r.time).min(),
                group.iter().map(|r| r.time).max(),
            ) else {
                continue;
            };
            let margin = if arrival_time {
                jiff::SignedDuration::from_hours(24)
            } else {
                jiff::SignedDuration::ZERO
            };
            let from = time_ns(min.checked_sub(margin).unwrap_or(min));
            let to = time_ns(max.checked_add(margin).unwrap_or(max));
            let ids: Vec<String> = group
                .iter()
                .map(|r| quote(&r.event_id.to_string()))
                .collect();
            let mut terms = Self::window_terms("time_ns", Some(from), Some(to.saturating_add(1)));
            terms.push(format!("event_id IN ({})", ids.join(", ")));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        if alternatives.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT event_id FROM {} WHERE {}",
            self.table(),
            alternatives.join(" OR ")
        );
        Ok(self
            .rows(&sql)?
            .into_iter()
            .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// One page of `filter`'s events, newest first, read over a growing window (the newest
    /// hour, day, week, then everything): the table is ordered by time, so a page of recent
    /// events reads only the granules of its window instead of sorting the whole table.
    fn page(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<&PageCursor>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let since = filter.since.map(time_ns);
        let until = filter.until.map(time_ns);
        let newest = match (until, after) {
            (Some(u), Some(c)) => u.min(c.time_ns.saturating_add(1)),
            (Some(u), None) => u,
            (None, Some(c)) => c.time_ns.saturating_add(1),
            (None, None) => time_ns(Timestamp::now()),
        };
        let mut base = Self::filter_terms(filter);
        if let Some(c) = after {
            base.push(format!(
                "(time_ns < {t} OR (time_ns = {t} AND event_id < {id}))",
                t = c.time_ns,
                id = quote(&c.event_id.to_string())
            ));
        }
        const STEPS_NS: [Option<i64>; 4] = [
            Some(HOUR_NS),
            Some(24 * HOUR_NS),
            Some(7 * 24 * HOUR_NS),
            None,
        ];
        for step in STEPS_NS {
            let lower = match (step, since) {
                (Some(width), Some(s)) => Some(s.max(newest.saturating_sub(width))),
                (Some(width), None) => Some(newest.saturating_sub(width)),
                (None, s) => s,
            };
            let mut terms = base.clone();
            terms.extend(Self::window_terms("time_ns", lower, until));
            let rows = self.rows(&format!(
                "SELECT time_ns, event_id, json FROM {} FINAL{} \
                 ORDER BY time_ns DESC, event_id DESC LIMIT {}",
                self.table(),
                Self::where_clause(&terms),
                limit.saturating_add(1)
            ))?;
            // The last step's lower bound is `since`.
            if rows.len() > limit || lower == since {
                return Ok(rows);
            }
        }
        unreachable!("the last step reads the whole window")
    }
}

#[derive(Deserialize)]
struct JsonCell {
    json: String,
}

/// A page from the rows [`ClickHouseStore::page`] read (one more than `limit` when there are
/// more).
fn page_events(mut rows: Vec<serde_json::Value>, limit: usize) -> Result<Page, StoreError> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(PageCursor {
            time_ns: int(&last["time_ns"]),
            event_id: uuid::Uuid::parse_str(last["event_id"].as_str().unwrap_or_default())
                .map_err(err)?,
        }),
        _ => None,
    };
    let events = rows
        .into_iter()
        .map(|r| {
            let cell: JsonCell = serde_json::from_value(r).map_err(err)?;
            RawValue::from_string(cell.json).map_err(err)
        })
        .collect::<Result<_, _>>()?;
    Ok(Page {
        events,
        next_cursor,
    })
}

impl Store for ClickHouseStore {
    fn kind(&self) -> &'static str {
        "clickhouse"
    }

    fn insert(&self, events: &[Record]) -> Result<InsertOutcome, StoreError> {
        let stored = self.stored_ids(events)?;
        let mut outcome = InsertOutcome::default();
        let mut seen = std::collections::HashSet::new();
        let mut body = Vec::new();
        for r in events {
            let id = r.event_id.to_string();
            if stored.contains(&id) || !seen.insert(id.clone()) {
                outcome.duplicates += 1;
                continue;
            }
            let s = |v: &Option<String>| v.clone().unwrap_or_default();
            let row = serde_json::json!({
                "day": day(r.time),
                "time_ns": time_ns(r.time),
                "event_id": id,
                "source": r.source,
                "event_type": r.event_type,
                "trace_id": s(&r.trace_id),
                "server": s(&r.server),
                "namespace": s(&r.namespace),
                "team_id": s(&r.team),
                "human_id": s(&r.human),
                "agent_id": s(&r.agent),
                "session_id": s(&r.session),
                "tool": s(&r.tool),
                "decision": s(&r.decision),
                "reason": s(&r.reason),
                "count": r.count,
                "json": r.json.get(),
            });
            serde_json::to_writer(&mut body, &row).map_err(err)?;
            body.push(b'\n');
            outcome.accepted += 1;
        }
        if outcome.accepted > 0 {
            self.client.http(
                &format!("INSERT INTO {} FORMAT JSONEachRow", self.table()),
                &body,
            )?;
        }
        Ok(outcome)
    }

    fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<&PageCursor>,
    ) -> Result<Page, StoreError> {
        page_events(self.page(filter, limit, after)?, limit)
    }

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError> {
        usage::stats(self, filter)
    }

    fn usage(&self, q: &UsageQuery) -> Result<Usage, StoreError> {
        usage::usage(self, q)
    }

    /// Drops the day partitions wholly older than `before` (ClickHouse 18 has no TTL), of the
    /// events and of their hourly rollup alike.
    fn prune(&self, before: Timestamp) -> Result<Option<u64>, StoreError> {
        let cutoff_day = before.as_second().div_euclid(86_400);
        let parts = self.rows(&format!(
            "SELECT DISTINCT table, partition FROM system.parts \
             WHERE database = {} AND table IN ('events', 'events_hourly') AND active",
            quote(&self.client.config.database)
        ))?;
        for part in parts {
            let (Some(table), Some(partition)) =
                (part["table"].as_str(), part["partition"].as_str())
            else {
                continue;
            };
            // A Date partition key is shown as '2026-11-24' (quoted) or 2026-11-24.
            let day = partition.trim_matches('\'');
            let Ok(date) = day.parse::<jiff::civil::Date>() else {
                continue;
            };
            let Ok(start) = date.to_zoned(jiff::tz::TimeZone::UTC) else {
                continue;
            };
            if start.timestamp().as_second().div_euclid(86_400) < cutoff_day {
                self.execute(&format!(
                    "ALTER TABLE {}.{table} DROP PARTITION {}",
                    self.client.config.database,
                    quote(day)
                ))?;
            }
        }
        Ok(None)
    }

    fn ping(&self) -> Result<(), StoreError> {
        // Reads the table, not just the server: a lost table is not ready.
        self.execute(&format!("SELECT 1 FROM {} LIMIT 1", self.table()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_and_names_checked() {
        assert_eq!(quote("it's a \\ test\n"), "'it\\'s a \\\\ test\\n'");
        assert!(valid_database("mcp_sentinel"));
        assert!(!valid_database("1db"));
        assert!(!valid_database("db; DROP TABLE x"));
        assert!(!valid_database(""));
    }
}
