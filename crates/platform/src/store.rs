//! The PostgreSQL side: a small connection pool and every query the API runs, typed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, NoTls, Row};
use uuid::Uuid;

use crate::config::Lockout;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. an email or slug taken).
    #[error("already exists")]
    Conflict,
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn conflict(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict
    } else {
        StoreError::Db(e)
    }
}

/// A fixed set of connections, each used by one request at a time (transactions need that);
/// a closed connection is replaced when next taken.
pub struct Pool {
    url: String,
    clients: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    /// Connections that could not be opened (exported as `mcp_platform_db_pool_errors_total`).
    connect_errors: prometheus_client::metrics::counter::Counter,
}

/// A connection taken from the [`Pool`].
pub struct Conn<'a>(MutexGuard<'a, Option<Client>>);

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("connected")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("connected")
    }
}

pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}

impl Pool {
    pub fn new(url: &str, size: usize) -> Pool {
        Pool {
            url: url.to_owned(),
            clients: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            connect_errors: Default::default(),
        }
    }

    /// The count of connections that could not be opened (shared: a clone counts the same).
    pub fn connect_errors(&self) -> prometheus_client::metrics::counter::Counter {
        self.connect_errors.clone()
    }

    pub async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.clients.len();
        let mut guard = None;
        for i in 0..n {
            if let Ok(g) = self.clients[(start + i) % n].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.clients[start % n].lock().await,
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            match connect(&self.url).await {
                Ok(client) => *guard = Some(client),
                Err(e) => {
                    self.connect_errors.inc();
                    return Err(e.into());
                }
            }
        }
        Ok(Conn(guard))
    }
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn opt_ts(t: Option<SystemTime>) -> Option<Timestamp> {
    t.map(ts)
}

fn sys(t: Timestamp) -> SystemTime {
    SystemTime::from(t)
}

// ---- users ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: Timestamp,
}

fn user(row: &Row) -> User {
    User {
        id: row.get("id"),
        email: row.get("email"),
        role: Role::parse(row.get("role")).unwrap_or(Role::User),
        created_at: ts(row.get("created_at")),
    }
}

pub async fn create_user(
    c: &impl GenericClient,
    email: &str,
    role: Role,
    password_hash: Option<&str>,
) -> Result<User, StoreError> {
    let row = c
        .query_one(
            "INSERT INTO users (id, email, role) VALUES ($1, $2, $3)
             RETURNING id, email, role, created_at",
            &[&Uuid::new_v4(), &email, &role.as_str()],
        )
        .await
        .map_err(conflict)?;
    let u = user(&row);
    if let Some(hash) = password_hash {
        c.execute(
            "INSERT INTO password_credentials (user_id, hash) VALUES ($1, $2)",
            &[&u.id, &hash],
        )
        .await?;
    }
    Ok(u)
}

/// The user with this (lower-case) email and their password hash, if any.
pub async fn user_by_email(
    c: &impl GenericClient,
    email: &str,
) -> Result<Option<(User, Option<String>)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT u.id, u.email, u.role, u.created_at, p.hash
             FROM users u LEFT JOIN password_credentials p ON p.user_id = u.id
             WHERE u.email = $1",
            &[&email],
        )
        .await?;
    Ok(row.map(|r| (user(&r), r.get("hash"))))
}

pub async fn user_by_id(c: &impl GenericClient, id: Uuid) -> Result<Option<User>, StoreError> {
    let row = c
        .query_opt(
            "SELECT id, email, role, created_at FROM users WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(user))
}

pub async fn list_users(c: &impl GenericClient) -> Result<Vec<User>, StoreError> {
    let rows = c
        .query(
            "SELECT id, email, role, created_at FROM users ORDER BY email",
            &[],
        )
        .await?;
    Ok(rows.iter().map(user).collect())
}

// ---- login throttle ---------------------------------------------------------------------

/// When the (email, client) pair may try again, if it is locked now.
pub async fn locked_until(
    c: &impl GenericClient,
    email: &str,
    ip: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    let row = c
        .query_opt(
            "SELECT locked_until FROM login_throttle
             WHERE email = $1 AND client_ip = $2 AND locked_until > $3",
            &[&email, &ip, &sys(now)],
        )
        .await?;
    Ok(row.and_then(|r| opt_ts(r.get(0))))
}

/// Counts a failure; returns the lockout it earned (if any).
pub async fn login_failed(
    c: &impl GenericClient,
    email: &str,
    ip: &str,
    now: Timestamp,
    lockout: Lockout,
) -> Result<Option<Timestamp>, StoreError> {
    let failures: i32 = c
        .query_one(
            "INSERT INTO login_throttle (email, client_ip, failures, updated_at)
             VALUES ($1, $2, 1, $3)
             ON CONFLICT (email, client_ip)
             DO UPDATE SET failures = login_throttle.failures + 1, updated_at = $3
             RETURNING failures",
            &[&email, &ip, &sys(now)],
        )
        .await?
        .get(0);
    let until = lockout
        .after(u32::try_from(failures).unwrap_or(0))
        .and_then(|d| now.checked_add(d).ok());
    if let Some(until) = until {
        c.execute(
            "UPDATE login_throttle SET locked_until = $3 WHERE email = $1 AND client_ip = $2",
            &[&email, &ip, &sys(until)],
        )
        .await?;
    }
    Ok(until)
}

pub async fn login_succeeded(
    c: &impl GenericClient,
    email: &str,
    ip: &str,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM login_throttle WHERE email = $1 AND client_ip = $2",
        &[&email, &ip],
    )
    .await?;
    Ok(())
}

// ---- API keys ---------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

const KEY_COLUMNS: &str = "id, name, prefix, created_at, last_used_at, revoked_at";

fn api_key(row: &Row) -> ApiKey {
    ApiKey {
        id: row.get("id"),
        name: row.get("name"),
        prefix: row.get("prefix"),
        created_at: ts(row.get("created_at")),
        last_used_at: opt_ts(row.get("last_used_at")),
        revoked_at: opt_ts(row.get("revoked_at")),
    }
}

pub async fn create_key(
    c: &impl GenericClient,
    user: Uuid,
    name: &str,
    prefix: &str,
    sha256: &[u8; 32],
) -> Result<ApiKey, StoreError> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO api_keys (id, user_id, name, prefix, key_sha256)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
            ),
            &[&Uuid::new_v4(), &user, &name, &prefix, &sha256.as_slice()],
        )
        .await
        .map_err(conflict)?;
    Ok(api_key(&row))
}

pub async fn list_keys(c: &impl GenericClient, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at, id"
            ),
            &[&user],
        )
        .await?;
    Ok(rows.iter().map(api_key).collect())
}

/// Revokes the user's key; `None` when they have no such key, the key (revoked) otherwise.
pub async fn revoke_key(
    c: &impl GenericClient,
    user: Uuid,
    id: Uuid,
    now: Timestamp,
) -> Result<Option<ApiKey>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
                 WHERE user_id = $1 AND id = $2 RETURNING {KEY_COLUMNS}"
            ),
            &[&user, &id, &sys(now)],
        )
        .await?;
    Ok(row.as_ref().map(api_key))
}

/// The key with this prefix: the key, its stored hash, and its user.
pub async fn key_by_prefix(
    c: &impl GenericClient,
    prefix: &str,
) -> Result<Option<(ApiKey, Vec<u8>, User)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT k.id, k.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at,
                    k.key_sha256, u.id AS user_id, u.email, u.role, u.created_at AS user_created
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = $1",
            &[&prefix],
        )
        .await?;
    Ok(row.map(|r| {
        let u = User {
            id: r.get("user_id"),
            email: r.get("email"),
            role: Role::parse(r.get("role")).unwrap_or(Role::User),
            created_at: ts(r.get("user_created")),
        };
        (api_key(&r), r.get("key_sha256"), u)
    }))
}

pub async fn touch_key(c: &impl GenericClient, id: Uuid, now: Timestamp) -> Result<(), StoreError> {
    c.execute(
        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
        &[&id, &sys(now)],
    )
    .await?;
    Ok(())
}

// ---- teams ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    Owner,
    Member,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Owner => "owner",
            TeamRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<TeamRole> {
        match s {
            "owner" => Some(TeamRole::Owner),
            "member" => Some(TeamRole::Member),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Team {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    /// The Kubernetes namespace the team's objects live in.
    pub namespace: String,
    pub created_at: Timestamp,
    /// The caller's role in the team (absent for an admin who is not a member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<TeamRole>,
}

/// `mcp-team-<slug>`.
pub fn team_namespace(slug: &str) -> String {
    format!("mcp-team-{slug}")
}

fn team(row: &Row) -> Team {
    let slug: String = row.get("slug");
    Team {
        id: row.get("id"),
        namespace: team_namespace(&slug),
        slug,
        display_name: row.get("display_name"),
        created_at: ts(row.get("created_at")),
        role: row
            .try_get::<_, Option<&str>>("member_role")
            .ok()
            .flatten()
            .and_then(TeamRole::parse),
    }
}

pub async fn create_team(
    c: &impl GenericClient,
    slug: &str,
    display_name: &str,
    creator: Uuid,
) -> Result<Team, StoreError> {
    let row = c
        .query_one(
            "INSERT INTO teams (id, slug, display_name, created_by) VALUES ($1, $2, $3, $4)
             RETURNING id, slug, display_name, created_at, NULL::text AS member_role",
            &[&Uuid::new_v4(), &slug, &display_name, &creator],
        )
        .await
        .map_err(conflict)?;
    Ok(team(&row))
}

/// Teams with the caller's role in each: every team when `all`, else those they belong to.
pub async fn list_teams(
    c: &impl GenericClient,
    user: Uuid,
    all: bool,
) -> Result<Vec<Team>, StoreError> {
    let rows = c
        .query(
            "SELECT t.id, t.slug, t.display_name, t.created_at, m.role AS member_role
             FROM teams t LEFT JOIN team_memberships m ON m.team_id = t.id AND m.user_id = $1
             WHERE $2 OR m.user_id IS NOT NULL ORDER BY t.slug",
            &[&user, &all],
        )
        .await?;
    Ok(rows.iter().map(team).collect())
}

/// The team and the caller's role in it.
pub async fn team_for(
    c: &impl GenericClient,
    slug: &str,
    user: Uuid,
) -> Result<Option<Team>, StoreError> {
    let row = c
        .query_opt(
            "SELECT t.id, t.slug, t.display_name, t.created_at, m.role AS member_role
             FROM teams t LEFT JOIN team_memberships m ON m.team_id = t.id AND m.user_id = $2
             WHERE t.slug = $1",
            &[&slug, &user],
        )
        .await?;
    Ok(row.as_ref().map(team))
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub email: String,
    pub role: TeamRole,
    pub since: Timestamp,
}

pub async fn members(c: &impl GenericClient, team: Uuid) -> Result<Vec<Member>, StoreError> {
    let rows = c
        .query(
            "SELECT u.email, m.role, m.created_at FROM team_memberships m
             JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 ORDER BY u.email",
            &[&team],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Member {
            email: r.get(0),
            role: TeamRole::parse(r.get(1)).unwrap_or(TeamRole::Member),
            since: ts(r.get(2)),
        })
        .collect())
}

/// Adds the user or changes their role.
pub async fn put_member(
    c: &impl GenericClient,
    team: Uuid,
    user: Uuid,
    role: TeamRole,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO team_memberships (team_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
        &[&team, &user, &role.as_str()],
    )
    .await?;
    Ok(())
}

/// Removes the membership; its role when there was one.
pub async fn remove_member(
    c: &impl GenericClient,
    team: Uuid,
    user: Uuid,
) -> Result<Option<TeamRole>, StoreError> {
    let row = c
        .query_opt(
            "DELETE FROM team_memberships WHERE team_id = $1 AND user_id = $2 RETURNING role",
            &[&team, &user],
        )
        .await?;
    Ok(row.and_then(|r| TeamRole::parse(r.get(0))))
}

pub async fn owner_count(c: &impl GenericClient, team: Uuid) -> Result<i64, StoreError> {
    Ok(c.query_one(
        "SELECT count(*) FROM team_memberships WHERE team_id = $1 AND role = 'owner'",
        &[&team],
    )
    .await?
    .get(0))
}

/// Serialises membership changes of one team (the last-owner rule reads, then writes).
pub async fn lock_team(c: &impl GenericClient, team: Uuid) -> Result<(), StoreError> {
    c.execute("SELECT 1 FROM teams WHERE id = $1 FOR UPDATE", &[&team])
        .await?;
    Ok(())
}

// ---- audit ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One audit entry to write.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub actor: Option<&'a User>,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: Outcome,
    pub detail: Option<&'a str>,
    pub client_ip: &'a str,
}

pub async fn audit(c: &impl GenericClient, e: &AuditEntry<'_>) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit_log (actor_id, actor_email, action, target, outcome, detail, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &e.actor.map(|u| u.id),
            &e.actor.map(|u| u.email.as_str()),
            &e.action,
            &e.target,
            &e.outcome.as_str(),
            &e.detail,
            &e.client_ip,
        ],
    )
    .await?;
    Ok(())
}

/// An audit entry as read back.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    pub actor: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub client_ip: Option<String>,
}

/// Filters of `GET /v1/audit`; entries come newest first, ids below `before`.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before: Option<i64>,
    pub limit: i64,
}

pub async fn audit_entries(
    c: &impl GenericClient,
    f: &AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = c
        .query(
            "SELECT id, at, actor_email, action, target, outcome, detail, client_ip
             FROM audit_log
             WHERE ($1::text IS NULL OR action = $1)
               AND ($2::text IS NULL OR actor_email = $2)
               AND ($3::text IS NULL OR target = $3)
               AND ($4::text IS NULL OR outcome = $4)
               AND ($5::timestamptz IS NULL OR at >= $5)
               AND ($6::timestamptz IS NULL OR at < $6)
               AND ($7::bigint IS NULL OR id < $7)
             ORDER BY id DESC LIMIT $8",
            &[
                &f.action,
                &f.actor,
                &f.target,
                &f.outcome,
                &f.since.map(sys),
                &f.until.map(sys),
                &f.before,
                &f.limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditRecord {
            id: r.get(0),
            at: ts(r.get(1)),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            outcome: r.get(5),
            detail: r.get(6),
            client_ip: r.get(7),
        })
        .collect())
}
