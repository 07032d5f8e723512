//! The relay's SQLite database (WAL mode), its migrations, and the queries.
//!
//! Everything a person would miss after a restart lives here: accounts, keys, tickets,
//! sessions with their transcripts, events and screen-sharing counters, and the audit log.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

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
    #[error("cannot start the database writer for {path}")]
    Writer {
        path: String,
        #[source]
        source: writer::WriteError,
    },
    #[error(transparent)]
    Write(#[from] writer::WriteError),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) mod writer;

pub(crate) use writer::{Stmt, Value, Writer};

/// The database: a small pool of connections for reads, and [`writer`]'s one thread for every
/// write (grouped into few transactions under load). Readers of append-only tables (audit,
/// session events) call [`Db::flush`] first, so they see every line written before.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: SqlitePool,
    writer: Writer,
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

#[cfg(test)]
impl User {
    /// An account for unit tests: `u<id>` with `role`.
    pub fn for_test(id: i64, role: &str) -> User {
        User {
            id,
            username: format!("u{id}"),
            display_name: format!("U{id}"),
            role: role.into(),
            password_hash: String::new(),
            show_on_portal: true,
            disabled: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionKeyRow {
    pub key: String,
    pub link_token: String,
    pub rep_id: i64,
    pub queue: String,
    /// The team of a `team` queue.
    pub team: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TicketRow {
    pub id: String,
    pub queue: String,
    /// The team of a `team` queue.
    pub team: Option<String>,
    pub rep_id: Option<i64>,
    pub customer_name: String,
    pub language: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub session_id: Option<String>,
    /// The display name of `rep_id` (filled in by [`Db::ticket`]).
    pub rep_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub queue: String,
    /// The team of a `team` queue.
    pub team: Option<String>,
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

/// A session's screen-sharing traffic: messages and bytes (12-byte frame headers included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamTotals {
    /// Screen messages the agent sent.
    pub screen_frames: u64,
    pub screen_bytes: u64,
    /// Cursor messages the agent sent.
    pub cursor_frames: u64,
    pub cursor_bytes: u64,
    /// Messages written to viewers (each viewer counts).
    pub delivered_frames: u64,
    pub delivered_bytes: u64,
    /// Messages dropped: nobody watching or `view` not granted, a viewer that fell behind,
    /// cursor messages replaced by newer ones.
    pub dropped_frames: u64,
    pub dropped_bytes: u64,
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
        team: r.get("team"),
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
    pub team: Option<&'a str>,
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
            .busy_timeout(Duration::from_secs(10))
            // Reads through the OS page cache instead of a read() per page missed.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-16384");
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
        let writer = Writer::start(path).map_err(|source| DbError::Writer {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Db { pool, writer })
    }

    /// Queues `stmts` as one op without waiting for its commit (lines that keep their order).
    pub(crate) async fn append(&self, stmts: Vec<Stmt>) -> Result<(), DbError> {
        Ok(self.writer.append(stmts).await?)
    }

    /// Waits until every write sent so far is in the database.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    pub(crate) async fn write(&self, stmts: Vec<Stmt>) -> Result<writer::Outcome, DbError> {
        Ok(self.writer.write(stmts).await?)
    }

    async fn write_one(
        &self,
        sql: &'static str,
        args: Vec<Value>,
    ) -> Result<writer::Outcome, DbError> {
        self.write(vec![Stmt::new(sql, args)]).await
    }

    // ---- users -------------------------------------------------------------------------

    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<i64, DbError> {
        let r = self
            .write_one(
                "INSERT INTO users (username, display_name, role, password_hash, created_at)
                 VALUES (?, ?, ?, ?, ?)",
                vec![
                    username.into(),
                    display_name.into(),
                    role.into(),
                    password_hash.into(),
                    now_ms().into(),
                ],
            )
            .await?;
        Ok(r.last_insert_rowid)
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

    /// Every (user id, team) pair of `user_teams`.
    pub async fn all_user_teams(&self) -> Result<Vec<(i64, String)>, DbError> {
        let rows = sqlx::query("SELECT user_id, team FROM user_teams ORDER BY user_id, team")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("user_id"), r.get("team")))
            .collect())
    }

    /// How many active users belong to `team`, and whether anything names it at all (a
    /// member, a jump group `team:<name>`, a deployment key for one, or a support button).
    pub async fn team_known(&self, team: &str) -> Result<(i64, bool), DbError> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM user_teams t JOIN users u ON u.id = t.user_id
                     WHERE t.team = ?1 AND u.disabled = 0) AS members,
                    EXISTS (SELECT 1 FROM user_teams WHERE team = ?1)
                    OR EXISTS (SELECT 1 FROM jump_clients WHERE grp = 'team:' || ?1)
                    OR EXISTS (SELECT 1 FROM jump_deploy_keys WHERE grp = 'team:' || ?1)
                    OR EXISTS (SELECT 1 FROM support_buttons WHERE team = ?1) AS known",
        )
        .bind(team)
        .fetch_one(&self.pool)
        .await?;
        Ok((r.get("members"), r.get::<i64, _>("known") != 0))
    }

    /// Every team name in use (members, jump groups, deployment keys, buttons), sorted.
    pub async fn team_names(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT team FROM user_teams
             UNION SELECT substr(grp, 6) FROM jump_clients WHERE grp LIKE 'team:%'
             UNION SELECT substr(grp, 6) FROM jump_deploy_keys WHERE grp LIKE 'team:%'
             UNION SELECT team FROM support_buttons WHERE team IS NOT NULL
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
        self.write_one(
            "INSERT INTO auth_sessions (token_hash, user_id, kind, csrf_token, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                token_hash.into(),
                user_id.into(),
                kind.into(),
                csrf.into(),
                now_ms().into(),
                expires_at.into(),
            ],
        )
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
        self.write_one(
            "DELETE FROM auth_sessions WHERE token_hash = ?",
            vec![token_hash.into()],
        )
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
        team: Option<&str>,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let r = self
            .write(vec![
                // A key's digits can be reused once the old key is dead.
                Stmt::new(
                    "DELETE FROM session_keys WHERE key = ? AND (expires_at <= ? OR used_at IS NOT NULL)
                     AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.session_key = session_keys.key)",
                    vec![key.into(), now.into()],
                ),
                Stmt::new(
                    "INSERT OR IGNORE INTO session_keys (key, link_token, rep_id, queue, team, created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        key.into(),
                        link_token.into(),
                        rep_id.into(),
                        queue.into(),
                        team.map(str::to_string).into(),
                        now.into(),
                        expires_at.into(),
                    ],
                ),
            ])
            .await?;
        Ok(r.rows_affected == 1)
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
            team: r.get("team"),
            expires_at: r.get("expires_at"),
            used_at: r.get("used_at"),
        }))
    }

    /// Marks a key used and creates its ticket atomically; false if it was used meanwhile.
    pub async fn redeem_key(&self, key: &str, ticket: &TicketRow) -> Result<bool, DbError> {
        let now = now_ms();
        let r = self
            .write(vec![
                Stmt::new(
                    "UPDATE session_keys SET used_at = ? WHERE key = ? AND used_at IS NULL AND expires_at > ?",
                    vec![now.into(), key.into(), now.into()],
                )
                .requiring_change(),
                insert_ticket(Some(key), ticket),
            ])
            .await?;
        Ok(r.completed)
    }

    /// Creates a ticket that is not bound to a key (a representative picked on the portal).
    pub async fn insert_ticket(&self, ticket: &TicketRow) -> Result<(), DbError> {
        self.write(vec![insert_ticket(None, ticket)]).await?;
        Ok(())
    }

    pub async fn ticket(&self, id: &str) -> Result<Option<TicketRow>, DbError> {
        let r = sqlx::query(
            "SELECT t.*, u.display_name AS rep_name FROM tickets t
             LEFT JOIN users u ON u.id = t.rep_id WHERE t.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| TicketRow {
            rep_name: r.get("rep_name"),
            id: r.get("id"),
            queue: r.get("queue"),
            team: r.get("team"),
            rep_id: r.get("rep_id"),
            customer_name: r.get("customer_name"),
            language: r.get("language"),
            expires_at: r.get("expires_at"),
            used_at: r.get("used_at"),
            session_id: r.get("session_id"),
        }))
    }

    /// Uses a ticket and creates its session atomically; false if the ticket was used.
    /// Returns the new row as stored.
    pub async fn start_session(&self, s: &NewSession<'_>) -> Result<Option<SessionRow>, DbError> {
        let now = now_ms();
        let r = self
            .write(vec![
                Stmt::new(
                    "UPDATE tickets SET used_at = ?, session_id = ? WHERE id = ? AND used_at IS NULL",
                    vec![now.into(), s.id.into(), s.ticket_id.into()],
                )
                .requiring_change(),
                Stmt::new(
                    "INSERT INTO sessions (id, ticket_id, queue, team, owner_id, state, customer_name,
                       computer, platform, language, remote_addr, resume_token_hash, created_at)
                     VALUES (?, ?, ?, ?, ?, 'terms', ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        s.id.into(),
                        s.ticket_id.into(),
                        s.queue.into(),
                        s.team.map(str::to_string).into(),
                        s.owner_id.into(),
                        s.customer_name.into(),
                        s.computer.into(),
                        s.platform.into(),
                        s.language.into(),
                        s.remote_addr.into(),
                        s.resume_token_hash.into(),
                        now.into(),
                    ],
                ),
            ])
            .await?;
        Ok(r.completed.then(|| SessionRow {
            id: s.id.to_string(),
            queue: s.queue.to_string(),
            team: s.team.map(str::to_string),
            owner_id: s.owner_id,
            state: "terms".to_string(),
            customer_name: s.customer_name.to_string(),
            computer: s.computer.to_string(),
            platform: s.platform.to_string(),
            language: s.language.to_string(),
            remote_addr: s.remote_addr.to_string(),
            resume_token_hash: s.resume_token_hash.to_string(),
            created_at: now,
            queued_at: None,
            accepted_at: None,
            accepted_by: None,
            ended_at: None,
            ended_by: None,
            end_reason: None,
        }))
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
        self.write_one(
            "UPDATE sessions SET state = 'waiting', queued_at = ? WHERE id = ? AND state = 'terms'",
            vec![at.into(), id.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn set_accepted(&self, id: &str, rep_id: i64, at: i64) -> Result<bool, DbError> {
        let r = self
            .write_one(
                "UPDATE sessions SET state = 'active', accepted_at = ?, accepted_by = ?
                 WHERE id = ? AND state = 'waiting'",
                vec![at.into(), rep_id.into(), id.into()],
            )
            .await?;
        Ok(r.rows_affected == 1)
    }

    pub async fn set_ended(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool, DbError> {
        let r = self
            .write_one(
                "UPDATE sessions SET state = 'ended', ended_at = ?, ended_by = ?, end_reason = ?
                 WHERE id = ? AND state != 'ended'",
                vec![at.into(), by.into(), reason.into(), id.into()],
            )
            .await?;
        Ok(r.rows_affected == 1)
    }

    pub async fn add_message(
        &self,
        session_id: &str,
        sender: &str,
        sender_name: &str,
        body: &str,
        at: i64,
    ) -> Result<i64, DbError> {
        let r = self
            .write_one(
                "INSERT INTO messages (session_id, sender, sender_name, body, at) VALUES (?, ?, ?, ?, ?)",
                vec![
                    session_id.into(),
                    sender.into(),
                    sender_name.into(),
                    body.into(),
                    at.into(),
                ],
            )
            .await?;
        Ok(r.last_insert_rowid)
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

    /// Appends a session event (without waiting for it to be written).
    pub async fn add_event(
        &self,
        session_id: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        self.writer
            .append(vec![Stmt::new(
                "INSERT INTO session_events (session_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                vec![
                    session_id.into(),
                    now_ms().into(),
                    kind.into(),
                    detail.into(),
                ],
            )])
            .await?;
        Ok(())
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

    // ---- screen-sharing counters ----------------------------------------------------------

    /// Stores a session's counter totals (without waiting for them to be written).
    pub async fn save_stream_totals(
        &self,
        session_id: &str,
        t: &StreamTotals,
    ) -> Result<(), DbError> {
        let n = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        self.writer
            .append(vec![Stmt::new(
                "INSERT INTO session_stream_counters (session_id, screen_frames, screen_bytes,
                   cursor_frames, cursor_bytes, delivered_frames, delivered_bytes, dropped_frames,
                   dropped_bytes, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (session_id) DO UPDATE SET screen_frames = excluded.screen_frames,
                   screen_bytes = excluded.screen_bytes, cursor_frames = excluded.cursor_frames,
                   cursor_bytes = excluded.cursor_bytes, delivered_frames = excluded.delivered_frames,
                   delivered_bytes = excluded.delivered_bytes, dropped_frames = excluded.dropped_frames,
                   dropped_bytes = excluded.dropped_bytes, updated_at = excluded.updated_at",
                vec![
                    session_id.into(),
                    n(t.screen_frames),
                    n(t.screen_bytes),
                    n(t.cursor_frames),
                    n(t.cursor_bytes),
                    n(t.delivered_frames),
                    n(t.delivered_bytes),
                    n(t.dropped_frames),
                    n(t.dropped_bytes),
                    now_ms().into(),
                ],
            )])
            .await?;
        Ok(())
    }

    /// A session's stored counter totals (`None` if it never streamed).
    pub async fn stream_totals(&self, session_id: &str) -> Result<Option<StreamTotals>, DbError> {
        self.flush().await;
        let r = sqlx::query("SELECT * FROM session_stream_counters WHERE session_id = ?")
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        let n = |r: &sqlx::sqlite::SqliteRow, c: &str| r.get::<i64, _>(c).max(0) as u64;
        Ok(r.map(|r| StreamTotals {
            screen_frames: n(&r, "screen_frames"),
            screen_bytes: n(&r, "screen_bytes"),
            cursor_frames: n(&r, "cursor_frames"),
            cursor_bytes: n(&r, "cursor_bytes"),
            delivered_frames: n(&r, "delivered_frames"),
            delivered_bytes: n(&r, "delivered_bytes"),
            dropped_frames: n(&r, "dropped_frames"),
            dropped_bytes: n(&r, "dropped_bytes"),
        }))
    }

    // ---- audit --------------------------------------------------------------------------

    /// Appends an audit line (without waiting for it to be written).
    pub async fn audit(
        &self,
        actor: &str,
        address: &str,
        action: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        self.writer
            .append(vec![Stmt::new(
                "INSERT INTO audit (at, actor, address, action, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    now_ms().into(),
                    actor.into(),
                    address.into(),
                    action.into(),
                    outcome.into(),
                    detail.into(),
                ],
            )])
            .await?;
        Ok(())
    }

    pub async fn audit_log(
        &self,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, DbError> {
        // Audit lines are appended without waiting; a reader sees every line written before.
        self.flush().await;
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

/// The statement that records a ticket made without a session key (to join other writes).
pub fn ticket_stmt(t: &TicketRow) -> Stmt {
    insert_ticket(None, t)
}

fn insert_ticket(key: Option<&str>, t: &TicketRow) -> Stmt {
    Stmt::new(
        "INSERT INTO tickets (id, session_key, queue, team, rep_id, customer_name, language, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            t.id.as_str().into(),
            key.map_or(Value::OptText(None), |k| k.into()),
            t.queue.as_str().into(),
            t.team.clone().into(),
            t.rep_id.into(),
            t.customer_name.as_str().into(),
            t.language.as_str().into(),
            now_ms().into(),
            t.expires_at.into(),
        ],
    )
}
