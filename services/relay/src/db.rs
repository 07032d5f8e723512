//! The relay's SQLite database (WAL mode), its migrations, and the queries.
//!
//! Everything a person would miss after a restart lives here: accounts, keys, tickets,
//! sessions with their transcripts and events, and the audit log.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

pub use sqlx::Error as SqlError;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: SqlitePool,
    journal: mpsc::Sender<Journal>,
}

/// Append-only lines (audit, session events) are written by one task in batches, one
/// transaction per batch: under load this turns thousands of commits a second into a few
/// hundred. A line reaches the database within a few milliseconds; readers of these tables
/// call [`Db::flush`] first, so they always see what was written before.
#[derive(Debug)]
enum Journal {
    Audit {
        at: i64,
        actor: String,
        address: String,
        action: String,
        outcome: String,
        detail: String,
    },
    Event {
        session_id: String,
        at: i64,
        kind: String,
        detail: String,
    },
    Flush(oneshot::Sender<()>),
}

const JOURNAL_BATCH: usize = 512;

async fn journal_writer(pool: SqlitePool, mut rx: mpsc::Receiver<Journal>) {
    let mut batch = Vec::with_capacity(JOURNAL_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < JOURNAL_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let lines: Vec<Journal> = batch
            .drain(..)
            .filter_map(|j| match j {
                Journal::Flush(done) => {
                    flushes.push(done);
                    None
                }
                line => Some(line),
            })
            .collect();
        if !lines.is_empty() && write_lines(&pool, &lines).await.is_err() {
            // One bad line must not lose the others: write them one by one.
            for line in &lines {
                if let Err(e) = write_lines(&pool, std::slice::from_ref(line)).await {
                    tracing::error!(error = %e, ?line, "cannot write a journal line");
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_lines(pool: &SqlitePool, lines: &[Journal]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for line in lines {
        match line {
            Journal::Audit {
                at,
                actor,
                address,
                action,
                outcome,
                detail,
            } => {
                sqlx::query(
                    "INSERT INTO audit (at, actor, address, action, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(at)
                .bind(actor)
                .bind(address)
                .bind(action)
                .bind(outcome)
                .bind(detail)
                .execute(&mut *tx)
                .await?;
            }
            Journal::Event {
                session_id,
                at,
                kind,
                detail,
            } => {
                sqlx::query(
                    "INSERT INTO session_events (session_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                )
                .bind(session_id)
                .bind(at)
                .bind(kind)
                .bind(detail)
                .execute(&mut *tx)
                .await?;
            }
            Journal::Flush(_) => {}
        }
    }
    tx.commit().await
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub show_on_portal: bool,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct SessionKeyRow {
    pub key: String,
    pub link_token: String,
    pub rep_id: i64,
    pub queue: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TicketRow {
    pub id: String,
    pub queue: String,
    pub rep_id: Option<i64>,
    pub customer_name: String,
    pub language: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub queue: String,
    pub owner_id: Option<i64>,
    pub state: String,
    pub customer_name: String,
    pub computer: String,
    pub platform: String,
    pub language: String,
    pub remote_addr: String,
    #[serde(skip)]
    pub resume_token_hash: String,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<i64>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageRow {
    pub id: i64,
    pub sender: String,
    pub sender_name: String,
    pub body: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub address: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
}

fn user_from(r: &sqlx::sqlite::SqliteRow) -> User {
    User {
        id: r.get("id"),
        username: r.get("username"),
        display_name: r.get("display_name"),
        role: r.get("role"),
        password_hash: r.get("password_hash"),
        show_on_portal: r.get::<i64, _>("show_on_portal") != 0,
        disabled: r.get::<i64, _>("disabled") != 0,
    }
}

fn session_from(r: &sqlx::sqlite::SqliteRow) -> SessionRow {
    SessionRow {
        id: r.get("id"),
        queue: r.get("queue"),
        owner_id: r.get("owner_id"),
        state: r.get("state"),
        customer_name: r.get("customer_name"),
        computer: r.get("computer"),
        platform: r.get("platform"),
        language: r.get("language"),
        remote_addr: r.get("remote_addr"),
        resume_token_hash: r.get("resume_token_hash"),
        created_at: r.get("created_at"),
        queued_at: r.get("queued_at"),
        accepted_at: r.get("accepted_at"),
        accepted_by: r.get("accepted_by"),
        ended_at: r.get("ended_at"),
        ended_by: r.get("ended_by"),
        end_reason: r.get("end_reason"),
    }
}

/// Parameters of a new session row.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub ticket_id: &'a str,
    pub queue: &'a str,
    pub owner_id: Option<i64>,
    pub customer_name: &'a str,
    pub computer: &'a str,
    pub platform: &'a str,
    pub language: &'a str,
    pub remote_addr: &'a str,
    pub resume_token_hash: &'a str,
}

impl Db {
    /// Opens (creating if needed) `path` and applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|source| DbError::Open {
                path: path.display().to_string(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| DbError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(DbError::Migrate)?;
        let (journal, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(journal_writer(pool.clone(), rx));
        Ok(Db { pool, journal })
    }

    /// Waits until every journal line sent so far is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.journal.send(Journal::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    async fn journal(&self, line: Journal) -> Result<(), DbError> {
        self.journal
            .send(line)
            .await
            .map_err(|_| DbError::Query(sqlx::Error::PoolClosed))
    }

    // ---- users -------------------------------------------------------------------------

    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<i64, DbError> {
        let r = sqlx::query(
            "INSERT INTO users (username, display_name, role, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(username)
        .bind(display_name)
        .bind(role)
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.last_insert_rowid())
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, DbError> {
        let r = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(user_from))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, DbError> {
        let r = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(user_from))
    }

    pub async fn user_count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .get("n"))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(user_from).collect())
    }

    // ---- auth sessions (cookies and bearer tokens) --------------------------------------

    pub async fn insert_auth_session(
        &self,
        token_hash: &str,
        user_id: i64,
        kind: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO auth_sessions (token_hash, user_id, kind, csrf_token, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(kind)
        .bind(csrf)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user and CSRF token of a live auth session.
    pub async fn auth_session(
        &self,
        token_hash: &str,
        kind: &str,
    ) -> Result<Option<(User, String)>, DbError> {
        let r = sqlx::query(
            "SELECT u.*, a.csrf_token FROM auth_sessions a JOIN users u ON u.id = a.user_id
             WHERE a.token_hash = ? AND a.kind = ? AND a.expires_at > ? AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(kind)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| (user_from(&r), r.get("csrf_token"))))
    }

    pub async fn delete_auth_session(&self, token_hash: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM auth_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- session keys and tickets -------------------------------------------------------

    /// Inserts a key; returns false when the 7 digits are already taken by a live key.
    pub async fn insert_session_key(
        &self,
        key: &str,
        link_token: &str,
        rep_id: i64,
        queue: &str,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        // A key's digits can be reused once the old key is dead.
        sqlx::query(
            "DELETE FROM session_keys WHERE key = ? AND (expires_at <= ? OR used_at IS NOT NULL)
             AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.session_key = session_keys.key)",
        )
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let r = sqlx::query(
            "INSERT OR IGNORE INTO session_keys (key, link_token, rep_id, queue, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key)
        .bind(link_token)
        .bind(rep_id)
        .bind(queue)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn session_key(&self, key: &str) -> Result<Option<SessionKeyRow>, DbError> {
        self.session_key_where("key", key).await
    }

    pub async fn session_key_by_link(&self, token: &str) -> Result<Option<SessionKeyRow>, DbError> {
        self.session_key_where("link_token", token).await
    }

    async fn session_key_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<SessionKeyRow>, DbError> {
        let sql = format!("SELECT * FROM session_keys WHERE {column} = ?");
        let r = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| SessionKeyRow {
            key: r.get("key"),
            link_token: r.get("link_token"),
            rep_id: r.get("rep_id"),
            queue: r.get("queue"),
            expires_at: r.get("expires_at"),
            used_at: r.get("used_at"),
        }))
    }

    /// Marks a key used and creates its ticket atomically; false if it was used meanwhile.
    pub async fn redeem_key(&self, key: &str, ticket: &TicketRow) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE session_keys SET used_at = ? WHERE key = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(now_ms())
        .bind(key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_ticket(&mut tx, Some(key), ticket).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Creates a ticket that is not bound to a key (a representative picked on the portal).
    pub async fn insert_ticket(&self, ticket: &TicketRow) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        insert_ticket(&mut tx, None, ticket).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn ticket(&self, id: &str) -> Result<Option<TicketRow>, DbError> {
        let r = sqlx::query("SELECT * FROM tickets WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| TicketRow {
            id: r.get("id"),
            queue: r.get("queue"),
            rep_id: r.get("rep_id"),
            customer_name: r.get("customer_name"),
            language: r.get("language"),
            expires_at: r.get("expires_at"),
            used_at: r.get("used_at"),
            session_id: r.get("session_id"),
        }))
    }

    /// Uses a ticket and creates its session atomically; false if the ticket was used.
    pub async fn start_session(&self, s: &NewSession<'_>) -> Result<bool, DbError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE tickets SET used_at = ?, session_id = ? WHERE id = ? AND used_at IS NULL",
        )
        .bind(now)
        .bind(s.id)
        .bind(s.ticket_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO sessions (id, ticket_id, queue, owner_id, state, customer_name, computer,
               platform, language, remote_addr, resume_token_hash, created_at)
             VALUES (?, ?, ?, ?, 'terms', ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id)
        .bind(s.ticket_id)
        .bind(s.queue)
        .bind(s.owner_id)
        .bind(s.customer_name)
        .bind(s.computer)
        .bind(s.platform)
        .bind(s.language)
        .bind(s.remote_addr)
        .bind(s.resume_token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- sessions -----------------------------------------------------------------------

    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>, DbError> {
        let r = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(session_from))
    }

    /// Sessions not ended yet (restored into memory at start).
    pub async fn open_sessions(&self) -> Result<Vec<SessionRow>, DbError> {
        let rows = sqlx::query("SELECT * FROM sessions WHERE state != 'ended' ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(session_from).collect())
    }

    pub async fn recent_sessions(
        &self,
        user_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SessionRow>, DbError> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query(
                    "SELECT * FROM sessions WHERE accepted_by = ? OR owner_id = ?
                     ORDER BY created_at DESC LIMIT ?",
                )
                .bind(u)
                .bind(u)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM sessions ORDER BY created_at DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(session_from).collect())
    }

    pub async fn set_queued(&self, id: &str, at: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE sessions SET state = 'waiting', queued_at = ? WHERE id = ? AND state = 'terms'",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Accepts a waiting session; false when someone else was first or it ended.
    pub async fn set_accepted(&self, id: &str, rep_id: i64, at: i64) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE sessions SET state = 'active', accepted_at = ?, accepted_by = ?
             WHERE id = ? AND state = 'waiting'",
        )
        .bind(at)
        .bind(rep_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_ended(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_at = ?, ended_by = ?, end_reason = ?
             WHERE id = ? AND state != 'ended'",
        )
        .bind(at)
        .bind(by)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn add_message(
        &self,
        session_id: &str,
        sender: &str,
        sender_name: &str,
        body: &str,
        at: i64,
    ) -> Result<i64, DbError> {
        let r = sqlx::query(
            "INSERT INTO messages (session_id, sender, sender_name, body, at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(session_id)
        .bind(sender)
        .bind(sender_name)
        .bind(body)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(r.last_insert_rowid())
    }

    pub async fn messages(&self, session_id: &str) -> Result<Vec<MessageRow>, DbError> {
        let rows = sqlx::query("SELECT * FROM messages WHERE session_id = ? ORDER BY id")
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| MessageRow {
                id: r.get("id"),
                sender: r.get("sender"),
                sender_name: r.get("sender_name"),
                body: r.get("body"),
                at: r.get("at"),
            })
            .collect())
    }

    pub async fn add_event(
        &self,
        session_id: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        self.journal(Journal::Event {
            session_id: session_id.to_string(),
            at: now_ms(),
            kind: kind.to_string(),
            detail: detail.to_string(),
        })
        .await
    }

    pub async fn events(&self, session_id: &str) -> Result<Vec<EventRow>, DbError> {
        self.flush().await;
        let rows = sqlx::query("SELECT * FROM session_events WHERE session_id = ? ORDER BY id")
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                id: r.get("id"),
                at: r.get("at"),
                kind: r.get("kind"),
                detail: r.get("detail"),
            })
            .collect())
    }

    // ---- audit --------------------------------------------------------------------------

    pub async fn audit(
        &self,
        actor: &str,
        address: &str,
        action: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        self.journal(Journal::Audit {
            at: now_ms(),
            actor: actor.to_string(),
            address: address.to_string(),
            action: action.to_string(),
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        })
        .await
    }

    pub async fn audit_log(
        &self,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM audit WHERE (?1 IS NULL OR action = ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(action)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get("id"),
                at: r.get("at"),
                actor: r.get("actor"),
                address: r.get("address"),
                action: r.get("action"),
                outcome: r.get("outcome"),
                detail: r.get("detail"),
            })
            .collect())
    }
}

async fn insert_ticket(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: Option<&str>,
    t: &TicketRow,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tickets (id, session_key, queue, rep_id, customer_name, language, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(key)
    .bind(&t.queue)
    .bind(t.rep_id)
    .bind(&t.customer_name)
    .bind(&t.language)
    .bind(now_ms())
    .bind(t.expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
