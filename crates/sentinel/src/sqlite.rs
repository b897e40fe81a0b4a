//! The embedded store: one SQLite file (WAL mode), typed columns for filtering plus each
//! event's JSON as received.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde_json::value::RawValue;

use crate::store::{
    EventFilter, InsertOutcome, NewEvent, Page, PageCursor, Stats, Store, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    time_ns     INTEGER NOT NULL,
    server      TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    team_id     TEXT,
    human_id    TEXT,
    agent_id    TEXT,
    session_id  TEXT,
    tool        TEXT,
    decision    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    json        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns DESC, event_id DESC);
";

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// SQLite store: one connection for writes, one for reads (WAL lets them run side by side).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let writer = Connection::open(path).map_err(err)?;
        // FULL: an acknowledged batch survives a power cut (the gateway then deletes its copy).
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(err)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(err)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

/// Nanoseconds since the epoch, saturated to the `i64` range (years 1677 to 2262).
pub(crate) fn time_ns(t: jiff::Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// `WHERE` clause (possibly empty) and its parameters for `filter`.
fn where_clause(filter: &EventFilter, after: Option<&PageCursor>) -> (String, Vec<Value>) {
    let mut terms: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let text = [
        ("server = ?", &filter.server),
        ("namespace = ?", &filter.namespace),
        ("team_id = ?", &filter.team),
        ("human_id = ?", &filter.human),
        ("agent_id = ?", &filter.agent),
        ("session_id = ?", &filter.session),
        ("tool = ?", &filter.tool),
        ("reason = ?", &filter.reason),
    ];
    for (term, value) in text {
        if let Some(v) = value {
            terms.push(term);
            values.push(Value::Text(v.clone()));
        }
    }
    if let Some(d) = filter.decision {
        terms.push("decision = ?");
        values.push(Value::Text(d.as_str().to_owned()));
    }
    if let Some(t) = filter.since {
        terms.push("time_ns >= ?");
        values.push(Value::Integer(time_ns(t)));
    }
    if let Some(t) = filter.until {
        terms.push("time_ns < ?");
        values.push(Value::Integer(time_ns(t)));
    }
    if let Some(c) = after {
        terms.push("(time_ns, event_id) < (?, ?)");
        values.push(Value::Integer(c.time_ns));
        values.push(Value::Text(c.event_id.to_string()));
    }
    if terms.is_empty() {
        (String::new(), values)
    } else {
        (format!(" WHERE {}", terms.join(" AND ")), values)
    }
}

impl Store for SqliteStore {
    fn insert(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(err)?;
        let mut outcome = InsertOutcome::default();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, time_ns, server, namespace, team_id,
                     human_id, agent_id, session_id, tool, decision, reason, count, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(err)?;
            for NewEvent { event: e, json } in events {
                let count = i64::try_from(e.count.unwrap_or(1)).unwrap_or(i64::MAX);
                let changed = stmt
                    .execute(rusqlite::params![
                        e.event_id.to_string(),
                        time_ns(e.time),
                        e.server.as_ref(),
                        e.namespace.as_ref(),
                        e.team_id.as_deref(),
                        e.human_id.as_deref(),
                        e.agent_id.as_deref(),
                        e.session_id.as_deref(),
                        e.tool.as_deref(),
                        e.decision.as_str(),
                        e.reason.as_ref(),
                        count,
                        json.get(),
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
        let (clause, mut values) = where_clause(filter, after);
        // One more than asked: tells whether there is a next page.
        values.push(Value::Integer(
            i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1),
        ));
        let sql = format!(
            "SELECT time_ns, event_id, json FROM events{clause}
             ORDER BY time_ns DESC, event_id DESC LIMIT ?"
        );
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(values)).map_err(err)?;
        let mut events = Vec::new();
        let mut last = None;
        let mut more = false;
        while let Some(row) = rows.next().map_err(err)? {
            if events.len() == limit {
                more = true;
                break;
            }
            let time_ns: i64 = row.get(0).map_err(err)?;
            let id: String = row.get(1).map_err(err)?;
            let json: String = row.get(2).map_err(err)?;
            events.push(RawValue::from_string(json).map_err(err)?);
            last = Some((time_ns, id));
        }
        let next_cursor = match (more, last) {
            (true, Some((time_ns, id))) => Some(PageCursor {
                time_ns,
                event_id: uuid::Uuid::parse_str(&id).map_err(err)?,
            }),
            _ => None,
        };
        Ok(Page {
            events,
            next_cursor,
        })
    }

    fn stats(&self, filter: &EventFilter) -> Result<Stats, StoreError> {
        let (clause, values) = where_clause(filter, None);
        let sql = format!(
            "SELECT decision, reason, COUNT(*), SUM(count) FROM events{clause}
             GROUP BY decision, reason"
        );
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(values)).map_err(err)?;
        let mut stats = Stats::default();
        while let Some(row) = rows.next().map_err(err)? {
            let decision: String = row.get(0).map_err(err)?;
            let reason: String = row.get(1).map_err(err)?;
            let events: i64 = row.get(2).map_err(err)?;
            // SUM over i64 may exceed i64 in theory; SQLite then errors, so read as f64-safe.
            let decisions: i64 = row.get(3).map_err(err)?;
            let (events, decisions) = (events as u64, decisions.max(0) as u64);
            stats.events += events;
            stats.decisions = stats.decisions.saturating_add(decisions);
            let d = stats.by_decision.entry(decision).or_default();
            *d = d.saturating_add(decisions);
            let r = stats.by_reason.entry(reason).or_default();
            *r = r.saturating_add(decisions);
        }
        Ok(stats)
    }

    fn ready(&self) -> Result<(), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM events LIMIT 1")
            .map_err(err)?;
        stmt.exists([]).map(|_| ()).map_err(err)
    }
}
