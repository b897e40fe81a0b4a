//! The scale store: ClickHouse over its HTTP interface.
//!
//! Written for the oldest server we meet (Debian's 18.16) and current ones alike: typed columns
//! instead of JSON extraction at query time, no `DateTime64` (nanoseconds in an `Int64`), no
//! table TTL (retention drops whole day partitions), no query parameters (values are quoted
//! here), no tuple comparison. Deduplication: a `ReplacingMergeTree` keyed on (time, event id)
//! collapses a re-inserted event, and every query reads `FINAL`, so an event inserted twice
//! (a retried batch, a processor restarted before its offsets were committed) counts once.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::sqlite::time_ns;
use crate::store::{
    ActorUsage, Counts, EventFilter, InsertOutcome, KeyCount, Page, PageCursor, Record,
    ServerUsage, Stats, Store, StoreError, ToolUsage, Usage, UsageQuery, UsageTotals, full_series,
};

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
    config: ClickHouseConfig,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A string literal: ClickHouse reads backslash escapes inside single quotes.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A database name is spliced into SQL: letters, digits and `_` only.
pub fn valid_database(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Percent-encodes a URL query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

fn counts(row: &serde_json::Value) -> Counts {
    Counts {
        decisions: uint(&row["decisions"]),
        allowed: uint(&row["allowed"]),
        denied: uint(&row["denied"]),
    }
}

const COUNTS: &str = "sumIf(count, decision != '') AS decisions, \
    sumIf(count, decision = 'allow') AS allowed, sumIf(count, decision = 'deny') AS denied";

impl ClickHouseStore {
    /// Connects, creating the database and table when missing.
    pub fn open(config: ClickHouseConfig) -> Result<ClickHouseStore, StoreError> {
        if !valid_database(&config.database) {
            return Err(StoreError(format!(
                "ClickHouse database name `{}`: use letters, digits and _ (not starting with a digit)",
                config.database
            )));
        }
        let store = ClickHouseStore { config };
        store.execute(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            store.config.database
        ))?;
        store.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {}.events (
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
            ORDER BY (time_ns, event_id)",
            store.config.database
        ))?;
        Ok(store)
    }

    fn table(&self) -> String {
        format!("{}.events", self.config.database)
    }

    /// One HTTP/1.0 request (the answer then ends with the connection, never chunked): the
    /// body on 200, ClickHouse's own message otherwise.
    fn http(&self, sql: &str, body: &[u8]) -> Result<String, StoreError> {
        let unreachable =
            |e: std::io::Error| StoreError(format!("ClickHouse at {}: {e}", self.config.address));
        let address = self
            .config
            .address
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                StoreError(format!("ClickHouse at {}: no address", self.config.address))
            })?;
        let mut stream =
            TcpStream::connect_timeout(&address, self.config.timeout).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(self.config.timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(self.config.timeout))
            .map_err(unreachable)?;
        let mut path = format!("/?query={}", encode(sql));
        let mut auth = String::new();
        if let Some(user) = &self.config.user {
            auth.push_str(&format!("X-ClickHouse-User: {user}\r\n"));
        }
        if let Some(password) = &self.config.password {
            auth.push_str(&format!("X-ClickHouse-Key: {password}\r\n"));
        }
        // Long statements travel in the body instead of the URL.
        let payload: Vec<u8> = if body.is_empty() && path.len() > 8000 {
            path = "/".to_owned();
            sql.as_bytes().to_vec()
        } else {
            body.to_vec()
        };
        let head = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Length: {}\r\n\r\n",
            self.config.address,
            payload.len()
        );
        stream.write_all(head.as_bytes()).map_err(unreachable)?;
        stream.write_all(&payload).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| StoreError("ClickHouse: an answer without headers".into()))?;
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(StoreError(format!(
                "ClickHouse answered {status}: {}",
                body.trim()
            )));
        }
        Ok(body.to_owned())
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.http(sql, b"").map(|_| ())
    }

    fn rows(&self, sql: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let body = self.http(&format!("{sql} FORMAT JSONEachRow"), b"")?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(err))
            .collect()
    }

    fn where_clause(filter: &EventFilter, after: Option<&PageCursor>, extra: &[&str]) -> String {
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
        if let Some(t) = filter.since {
            terms.push(format!("time_ns >= {}", time_ns(t)));
            // Lets ClickHouse skip whole partitions.
            terms.push(format!("day >= toDate({})", quote(&day(t))));
        }
        if let Some(t) = filter.until {
            terms.push(format!("time_ns < {}", time_ns(t)));
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
        if let Some(c) = after {
            terms.push(format!(
                "(time_ns < {t} OR (time_ns = {t} AND event_id < {id}))",
                t = c.time_ns,
                id = quote(&c.event_id.to_string())
            ));
        }
        terms.extend(extra.iter().map(|t| (*t).to_owned()));
        if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        }
    }

    /// The ids of `events` already stored, so a retried batch reports its duplicates and does
    /// not store them again. Looked up within a day of the batch's times: an envelope without a
    /// timestamp takes its time of arrival, so its retry carries another time (the table's
    /// FINAL dedupe, keyed on time and id, would not catch it).
    fn stored_ids(
        &self,
        events: &[Record],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let (Some(min), Some(max)) = (
            events.iter().map(|r| r.time).min(),
            events.iter().map(|r| r.time).max(),
        ) else {
            return Ok(Default::default());
        };
        let margin = jiff::SignedDuration::from_hours(24);
        let from = min.checked_sub(margin).unwrap_or(min);
        let to = max.checked_add(margin).unwrap_or(max);
        let ids: Vec<String> = events
            .iter()
            .map(|r| quote(&r.event_id.to_string()))
            .collect();
        let sql = format!(
            "SELECT event_id FROM {} WHERE day >= toDate({}) AND day <= toDate({}) AND event_id IN ({})",
            self.table(),
            quote(&day(from)),
            quote(&day(to)),
            ids.join(", ")
        );
        Ok(self
            .rows(&sql)?
            .into_iter()
            .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
            .collect())
    }
}

#[derive(Deserialize)]
struct JsonCell {
    json: String,
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
            self.http(
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
        let sql = format!(
            "SELECT time_ns, event_id, json FROM {} FINAL{} ORDER BY time_ns DESC, event_id DESC LIMIT {}",
            self.table(),
            Self::where_clause(filter, after, &[]),
            limit.saturating_add(1)
        );
        let mut rows = self.rows(&sql)?;
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

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError> {
        let sql = format!(
            "SELECT decision, reason, count() AS events, sum(count) AS decisions FROM {} FINAL{}
             GROUP BY decision, reason",
            self.table(),
            Self::where_clause(filter, None, &[])
        );
        let mut stats = Stats::default();
        for row in self.rows(&sql)? {
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

    fn usage(&self, q: &UsageQuery) -> Result<Usage, StoreError> {
        let mut filter = q.filter.clone();
        filter.since = Some(q.since);
        filter.until = Some(q.until);
        let table = format!("{} FINAL", self.table());
        let w = |extra: &[&str]| Self::where_clause(&filter, None, extra);
        let limit = q.limit;

        let totals = self
            .rows(&format!(
                "SELECT count() AS events, {COUNTS},
                 uniqExactIf(server, server != '') AS servers,
                 uniqExactIf(human_id, human_id != '') AS humans,
                 uniqExactIf(agent_id, agent_id != '') AS agents,
                 uniqExactIf(session_id, session_id != '') AS sessions
                 FROM {table}{}",
                w(&[])
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

        let servers = self
            .rows(&format!(
                "SELECT server, namespace, {COUNTS},
                 uniqExactIf(human_id, human_id != '') AS humans,
                 uniqExactIf(agent_id, agent_id != '') AS agents, max(time_ns) AS last
                 FROM {table}{} GROUP BY server, namespace
                 ORDER BY decisions DESC, server, namespace LIMIT {limit}",
                w(&["server != ''"])
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

        let actors = self
            .rows(&format!(
                "SELECT human_id, agent_id, {COUNTS},
                 uniqExactIf(server, server != '') AS servers,
                 uniqExactIf(tool, tool != '') AS tools, max(time_ns) AS last
                 FROM {table}{} GROUP BY human_id, agent_id
                 ORDER BY decisions DESC, human_id, agent_id LIMIT {limit}",
                w(&["(human_id != '' OR agent_id != '')"])
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

        let tools = self
            .rows(&format!(
                "SELECT server, tool, {COUNTS}, max(time_ns) AS last
                 FROM {table}{} GROUP BY server, tool
                 ORDER BY decisions DESC, server, tool LIMIT {limit}",
                w(&["tool != ''"])
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
            Ok(self
                .rows(&format!(
                    "SELECT {column} AS key, sum(count) AS decisions FROM {table}{}
                     GROUP BY {column} ORDER BY decisions DESC, key LIMIT {limit}",
                    w(&[&not_empty, "decision != ''"])
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

        let width = q.bucket.seconds();
        let found: HashMap<i64, Counts> = self
            .rows(&format!(
                "SELECT intDiv(time_ns, {}) * {width} AS start, {COUNTS} FROM {table}{} GROUP BY start",
                width * 1_000_000_000,
                w(&[])
            ))?
            .iter()
            .map(|r| (int(&r["start"]), counts(r)))
            .collect();
        let series = full_series(q.since, q.until, q.bucket, &found);
        let recent = self.events(&filter, limit, None)?.events;
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

    /// Drops the day partitions wholly older than `before` (ClickHouse 18 has no TTL).
    fn prune(&self, before: Timestamp) -> Result<Option<u64>, StoreError> {
        let cutoff_day = before.as_second().div_euclid(86_400);
        let parts = self.rows(&format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = 'events' AND active",
            quote(&self.config.database)
        ))?;
        for part in parts {
            let Some(partition) = part["partition"].as_str() else {
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
                    "ALTER TABLE {} DROP PARTITION {}",
                    self.table(),
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
