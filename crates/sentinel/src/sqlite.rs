//! The embedded store: one SQLite file (WAL mode), typed columns for filtering and rollups plus
//! each event's stored document.

use std::path::Path;
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Row, params_from_iter};
use serde_json::value::RawValue;

use crate::rollup::{Rollup, Row as RollupRow};
use crate::store::{
    EventFilter, InsertOutcome, Page, PageCursor, Record, Stats, Store, StoreError, Usage,
    UsageQuery,
};

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    time_ns     INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    trace_id    TEXT,
    server      TEXT,
    namespace   TEXT,
    team_id     TEXT,
    human_id    TEXT,
    agent_id    TEXT,
    session_id  TEXT,
    tool        TEXT,
    decision    TEXT,
    reason      TEXT,
    count       INTEGER NOT NULL,
    json        TEXT    NOT NULL
);
";

/// Indexes, created when missing on every open (so a database of an earlier build of this
/// schema version gets the ones added since). `events_rollup` covers every column the rollups
/// read, so they scan the index instead of the rows with their JSON.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_rollup ON events (time_ns, decision, count, server, namespace,
    team_id, human_id, agent_id, session_id, tool, reason, source, event_type);
";

/// Version 1 (the first release: gateway events only, `server`, `namespace`, `decision` and
/// `reason` required) to version 2 (any producer's events). SQLite cannot relax `NOT NULL` in
/// place, so the table is rebuilt; `source` comes from the stored JSON.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE events RENAME TO events_v1;
DROP INDEX IF EXISTS events_time;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, time_ns INTEGER NOT NULL,
    source TEXT NOT NULL, event_type TEXT NOT NULL, trace_id TEXT, server TEXT, namespace TEXT,
    team_id TEXT, human_id TEXT, agent_id TEXT, session_id TEXT, tool TEXT, decision TEXT,
    reason TEXT, count INTEGER NOT NULL, json TEXT NOT NULL
);
INSERT INTO events (seq, event_id, time_ns, source, event_type, trace_id, server, namespace,
    team_id, human_id, agent_id, session_id, tool, decision, reason, count, json)
SELECT seq, event_id, time_ns, COALESCE(json_extract(json, '$.source'), ''), 'mcp.request',
    json_extract(json, '$.trace_id'), server, namespace, team_id, human_id, agent_id,
    session_id, tool, decision, reason, count, json
FROM events_v1;
DROP TABLE events_v1;
";

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// SQLite store: one connection for writes, one for reads (WAL lets them run side by side).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let has_events: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    let tx = conn.transaction().map_err(err)?;
    match (version, has_events) {
        (SCHEMA_VERSION, _) => {}
        (0, false) => tx.execute_batch(SCHEMA).map_err(err)?,
        (0 | 1, true) => tx.execute_batch(MIGRATE_1_TO_2).map_err(err)?,
        (v, _) => {
            return Err(StoreError(format!(
                "the database has schema version {v}, newer than this mcp-sentinel knows ({SCHEMA_VERSION}): run a newer mcp-sentinel or use another --db"
            )));
        }
    }
    tx.execute_batch(INDEXES).map_err(err)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(err)?;
    tx.commit().map_err(err)
}

impl SqliteStore {
    /// Opens (creating or migrating it if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut writer = Connection::open(path).map_err(err)?;
        // FULL: an acknowledged batch survives a power cut (the gateway then deletes its copy).
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(err)?;
        migrate(&mut writer)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        // Rollups scan the covering index of their window: mapped pages spare a read() per page
        // (file-backed memory the kernel can reclaim), and a larger cache keeps the hot part.
        reader
            .execute_batch(
                "PRAGMA busy_timeout = 5000; PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -32768;",
            )
            .map_err(err)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

/// Nanoseconds since the epoch, saturated to the `i64` range (years 1677 to 2262).
pub(crate) fn time_ns(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The terms and parameters of a `WHERE` clause.
#[derive(Default)]
struct Where {
    terms: Vec<String>,
    values: Vec<Value>,
}

impl Where {
    fn new(filter: &EventFilter, after: Option<&PageCursor>) -> Where {
        let mut w = Where::default();
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
                w.terms.push(format!("{column} = ?"));
                w.values.push(Value::Text(v.clone()));
            }
        }
        if let Some(t) = filter.since {
            w.terms.push("time_ns >= ?".into());
            w.values.push(Value::Integer(time_ns(t)));
        }
        if let Some(t) = filter.until {
            w.terms.push("time_ns < ?".into());
            w.values.push(Value::Integer(time_ns(t)));
        }
        if let Some(scope) = &filter.scope {
            let mut alternatives = Vec::new();
            for (column, set) in [("namespace", &scope.namespaces), ("team_id", &scope.teams)] {
                if !set.is_empty() {
                    alternatives.push(format!("{column} IN ({})", vec!["?"; set.len()].join(", ")));
                    w.values.extend(set.iter().map(|v| Value::Text(v.clone())));
                }
            }
            if alternatives.is_empty() {
                // A scope that names nothing sees nothing.
                w.terms.push("0".into());
            } else {
                w.terms.push(format!("({})", alternatives.join(" OR ")));
            }
        }
        if let Some(c) = after {
            w.terms.push("(time_ns, event_id) < (?, ?)".into());
            w.values.push(Value::Integer(c.time_ns));
            w.values.push(Value::Text(c.event_id.to_string()));
        }
        w
    }

    fn clause(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }
}

fn unsigned(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    row.get::<_, i64>(i).map(|n| n.max(0) as u64)
}

impl SqliteStore {
    fn query<T>(
        &self,
        sql: &str,
        values: Vec<Value>,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(sql).map_err(err)?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| map(r))
            .map_err(err)?;
        rows.collect::<Result<Vec<T>, _>>().map_err(err)
    }
}

fn limit_value(limit: usize) -> Value {
    Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX))
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn insert(&self, events: &[Record]) -> Result<InsertOutcome, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(err)?;
        let mut outcome = InsertOutcome::default();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, time_ns, source, event_type,
                     trace_id, server, namespace, team_id, human_id, agent_id, session_id, tool,
                     decision, reason, count, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(err)?;
            for r in events {
                let count = i64::try_from(r.count).unwrap_or(i64::MAX);
                let changed = stmt
                    .execute(rusqlite::params![
                        r.event_id.to_string(),
                        time_ns(r.time),
                        r.source,
                        r.event_type,
                        r.trace_id,
                        r.server,
                        r.namespace,
                        r.team,
                        r.human,
                        r.agent,
                        r.session,
                        r.tool,
                        r.decision,
                        r.reason,
                        count,
                        r.json.get(),
                    ])
                    .map_err(err)?;
                if changed == 1 {
                    outcome.accepted += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(outcome)
    }

    fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<&PageCursor>,
    ) -> Result<Page, StoreError> {
        let w = Where::new(filter, after);
        let sql = format!(
            "SELECT time_ns, event_id, json FROM events{}
             ORDER BY time_ns DESC, event_id DESC LIMIT ?",
            w.clause()
        );
        let mut values = w.values;
        // One more than asked: tells whether there is a next page.
        values.push(limit_value(limit.saturating_add(1)));
        let mut rows = self.query(&sql, values, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = match (more, rows.last()) {
            (true, Some((time_ns, id, _))) => Some(PageCursor {
                time_ns: *time_ns,
                event_id: uuid::Uuid::parse_str(id).map_err(err)?,
            }),
            _ => None,
        };
        let events = rows
            .into_iter()
            .map(|(_, _, json)| RawValue::from_string(json).map_err(err))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            events,
            next_cursor,
        })
    }

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError> {
        let w = Where::new(filter, None);
        let sql = format!(
            "SELECT decision, reason, COUNT(*), SUM(count) FROM events{}
             GROUP BY decision, reason",
            w.clause()
        );
        let rows = self.query(&sql, w.values, |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                unsigned(r, 2)?,
                unsigned(r, 3)?,
            ))
        })?;
        let mut stats = Stats::default();
        for (decision, reason, events, decisions) in rows {
            stats.events += events;
            // Events without a decision (other producers' notices) are not decisions.
            let Some(decision) = decision else { continue };
            stats.decisions = stats.decisions.saturating_add(decisions);
            let d = stats.by_decision.entry(decision).or_default();
            *d = d.saturating_add(decisions);
            if let Some(reason) = reason {
                let r = stats.by_reason.entry(reason).or_default();
                *r = r.saturating_add(decisions);
            }
        }
        Ok(stats)
    }

    /// One scan of the window over the covering index `events_rollup`, added up in Rust
    /// ([`crate::rollup`]): one pass instead of a query per ranking.
    fn usage(&self, q: &UsageQuery) -> Result<Usage, StoreError> {
        let mut filter = q.filter.clone();
        filter.since = Some(q.since);
        filter.until = Some(q.until);
        let w = Where::new(&filter, None);
        let sql = format!(
            "SELECT time_ns, decision, count, server, namespace, human_id, agent_id, session_id,
                    tool, reason
             FROM events INDEXED BY events_rollup{}",
            w.clause()
        );
        let mut rollup = Rollup::default();
        {
            let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
            let mut rows = stmt.query(params_from_iter(w.values)).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let text = |i: usize| -> rusqlite::Result<Option<&str>> {
                    match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) => {
                            Ok(Some(std::str::from_utf8(t).unwrap_or_default()))
                        }
                        _ => Ok(None),
                    }
                };
                let row = RollupRow {
                    time_ns: r.get(0).map_err(err)?,
                    decision: text(1).map_err(err)?,
                    count: unsigned(r, 2).map_err(err)?,
                    server: text(3).map_err(err)?,
                    namespace: text(4).map_err(err)?,
                    human: text(5).map_err(err)?,
                    agent: text(6).map_err(err)?,
                    session: text(7).map_err(err)?,
                    tool: text(8).map_err(err)?,
                    reason: text(9).map_err(err)?,
                };
                rollup.add(&row, q.bucket);
            }
        }
        let parts = rollup.finish(q.since, q.until, q.bucket, q.limit);
        let recent = self.events(&filter, q.limit, None)?.events;
        Ok(Usage {
            since: q.since,
            until: q.until,
            bucket: q.bucket,
            totals: parts.totals,
            servers: parts.servers,
            actors: parts.actors,
            tools: parts.tools,
            decisions: parts.decisions,
            reasons: parts.reasons,
            series: parts.series,
            recent,
        })
    }

    fn prune(&self, before: Timestamp) -> Result<Option<u64>, StoreError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let removed = conn
            .execute("DELETE FROM events WHERE time_ns < ?1", [time_ns(before)])
            .map_err(err)?;
        Ok(Some(removed as u64))
    }

    fn ping(&self) -> Result<(), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        // Reads the table, not just the connection: a lost schema is not ready.
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM events LIMIT 1")
            .map_err(err)?;
        stmt.exists([]).map(|_| ()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_is_migrated_with_its_events() {
        let dir = std::env::temp_dir().join(format!("sentinel-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
                 time_ns INTEGER NOT NULL, server TEXT NOT NULL, namespace TEXT NOT NULL,
                 team_id TEXT, human_id TEXT, agent_id TEXT, session_id TEXT, tool TEXT,
                 decision TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
                 json TEXT NOT NULL);
                 CREATE INDEX events_time ON events (time_ns DESC, event_id DESC);
                 INSERT INTO events VALUES (1, '019abc12-3456-7def-8901-234567890abc', 5,
                 'hello', 'default', NULL, 'alice', NULL, NULL, 'echo', 'allow', 'allowed', 1,
                 '{\"source\":\"hello-gateway\",\"server\":\"hello\"}');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let filter = EventFilter {
            source: Some("hello-gateway".into()),
            event_type: Some("mcp.request".into()),
            ..EventFilter::default()
        };
        assert_eq!(store.stats(&filter).unwrap().decisions, 1);
        drop(store);
        // Reopening a current database changes nothing.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.stats(&EventFilter::default()).unwrap().events, 1);
        drop(store);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let refused = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(refused.contains("schema version 99"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
