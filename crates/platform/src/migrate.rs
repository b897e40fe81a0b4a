//! Schema migrations: the versioned `.sql` files of `crates/platform/migrations/`, compiled into
//! the binary and applied in order on start.
//!
//! All pending migrations run in one transaction that first takes a transaction-scoped advisory
//! lock, so two replicas starting together apply them once, and a failing migration leaves the
//! database as it was. `schema_migrations` records each applied version with its name. A
//! database that already has a version this binary does not know (a newer binary migrated it) is
//! refused rather than run against a schema the code was not written for.

use tokio_postgres::Client;

/// One migration: its version (the file's number), its name, and its SQL.
#[derive(Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A test checks that this list is exactly the directory.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "0001_identity.sql",
    sql: include_str!("../migrations/0001_identity.sql"),
}];

/// Any constant: the advisory lock key the migrating transaction holds.
const LOCK_KEY: i64 = 0x6d63_705f_706c_6174; // "mcp_plat"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database is at schema version {found}, newer than this binary knows (up to \
         {known}): run a newer mcp-platform, or restore the database"
    )]
    TooNew { found: i32, known: i32 },
    #[error("migration {name} failed: {source}")]
    Failed {
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("reading the schema version: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// What [`migrate`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// The version before.
    pub from: i32,
    /// The versions applied now (empty when the schema was current).
    pub applied: Vec<i32>,
}

/// Applies the pending migrations (see the module docs).
pub async fn migrate(client: &mut Client) -> Result<Applied, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     integer PRIMARY KEY,
             name        text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let from: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if from > known {
        return Err(MigrateError::TooNew { found: from, known });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| MigrateError::Failed {
                name: m.name,
                source,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(Applied { from, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_directory_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(
            files, listed,
            "add new files to MIGRATIONS (and only there)"
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let number: i32 = m.name[..4].parse().unwrap();
            assert_eq!(
                (m.version, number),
                (i as i32 + 1, i as i32 + 1),
                "{}",
                m.name
            );
        }
    }
}
