//! The jump tables (`migrations/0003_jump.sql`): deployment keys and registered clients.
//! A deployment key is known in lists by its id, the first 16 hex digits of its hash (the
//! secret cannot be found from it); a revoked key (`revoked_at`, migration 0007) registers
//! nothing.
//!
//! Writes go through the database's one writer ([`crate::db`]); taking a use of a deployment
//! key and recording the client are one op, so a key's uses can never be over-spent.
//! "Last seen" of many clients is written in ops of a few hundred statements.

use lifeline_proto::jump::{JumpInfo, JumpMode};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, DbError, Stmt, now_ms};

/// A deployment key as the console shows it (the secret itself is never stored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeployKeyRow {
    pub label: String,
    pub group: String,
    pub mode: String,
    pub valid_until: i64,
    pub uses_left: i64,
    pub created_at: i64,
    /// Who created the key (the owner of the personal clients it registers).
    #[serde(skip)]
    pub created_by: Option<i64>,
}

/// A registered jump client.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientRow {
    pub id: String,
    #[serde(skip)]
    pub public_key: String,
    pub mode: String,
    pub name: String,
    pub comment: String,
    pub group: String,
    pub computer: String,
    pub platform: String,
    pub logged_in_user: String,
    pub agent_version: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    #[serde(skip)]
    pub removed: bool,
    /// The representative a personal client belongs to.
    #[serde(skip)]
    pub owner_id: Option<i64>,
}

fn client_from(r: &sqlx::sqlite::SqliteRow) -> ClientRow {
    ClientRow {
        id: r.get("id"),
        public_key: r.get("public_key"),
        mode: r.get("mode"),
        name: r.get("name"),
        comment: r.get("comment"),
        group: r.get("grp"),
        computer: r.get("computer"),
        platform: r.get("platform"),
        logged_in_user: r.get("logged_in_user"),
        agent_version: r.get("agent_version"),
        created_at: r.get("created_at"),
        last_seen: r.get("last_seen"),
        removed: r.get::<Option<i64>, _>("removed_at").is_some(),
        owner_id: r.get("owner_id"),
    }
}

pub fn mode_from(s: &str) -> JumpMode {
    if s == "passive" {
        JumpMode::Passive
    } else {
        JumpMode::Active
    }
}

/// Parameters of a new deployment key.
#[derive(Debug)]
pub struct NewDeployKey<'a> {
    pub key_hash: &'a str,
    pub label: &'a str,
    pub group: &'a str,
    pub mode: JumpMode,
    pub valid_until: i64,
    pub uses: i64,
    pub created_by: i64,
}

pub async fn insert_deploy_key(db: &Db, k: NewDeployKey<'_>) -> Result<(), DbError> {
    db.write(vec![Stmt::new(
        "INSERT INTO jump_deploy_keys (key_hash, label, grp, mode, valid_until, uses_left, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            k.key_hash.into(),
            k.label.into(),
            k.group.into(),
            k.mode.as_str().into(),
            k.valid_until.into(),
            k.uses.into(),
            k.created_by.into(),
            now_ms().into(),
        ],
    )])
    .await?;
    Ok(())
}

/// A deployment key that may still register a client.
pub async fn live_deploy_key(db: &Db, key_hash: &str) -> Result<Option<DeployKeyRow>, DbError> {
    let r = sqlx::query(
        "SELECT * FROM jump_deploy_keys WHERE key_hash = ? AND valid_until > ? AND uses_left > 0
         AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .bind(now_ms())
    .fetch_optional(&db.pool)
    .await?;
    Ok(r.map(|r| DeployKeyRow {
        label: r.get("label"),
        group: r.get("grp"),
        mode: r.get("mode"),
        valid_until: r.get("valid_until"),
        uses_left: r.get("uses_left"),
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
    }))
}

/// Length of a deployment key's id (a prefix of its hash).
pub const KEY_ID_LEN: usize = 16;

/// A deployment key in the administrators' list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeployKeyListed {
    /// The first 16 hex digits of the key's hash.
    pub id: String,
    pub label: String,
    pub group: String,
    pub mode: String,
    pub valid_until: i64,
    pub uses_left: i64,
    pub created_at: i64,
    /// Who created it (user name), if the account still exists.
    pub created_by: Option<String>,
    /// `active`, `expired`, `used_up` or `revoked`.
    pub state: &'static str,
}

/// Every deployment key, newest first (at most 1000).
pub async fn list_deploy_keys(db: &Db) -> Result<Vec<DeployKeyListed>, DbError> {
    let rows = sqlx::query(
        "SELECT k.*, u.username AS creator FROM jump_deploy_keys k
         LEFT JOIN users u ON u.id = k.created_by ORDER BY k.created_at DESC LIMIT 1000",
    )
    .fetch_all(&db.pool)
    .await?;
    let now = now_ms();
    Ok(rows
        .iter()
        .map(|r| {
            let hash: String = r.get("key_hash");
            let valid_until: i64 = r.get("valid_until");
            let uses_left: i64 = r.get("uses_left");
            DeployKeyListed {
                id: hash.chars().take(KEY_ID_LEN).collect(),
                label: r.get("label"),
                group: r.get("grp"),
                mode: r.get("mode"),
                valid_until,
                uses_left,
                created_at: r.get("created_at"),
                created_by: r.get("creator"),
                state: if r.get::<Option<i64>, _>("revoked_at").is_some() {
                    "revoked"
                } else if valid_until <= now {
                    "expired"
                } else if uses_left <= 0 {
                    "used_up"
                } else {
                    "active"
                },
            }
        })
        .collect())
}

/// Revokes the deployment key whose id is `id`; false when there is none (or it was revoked).
pub async fn revoke_deploy_key(db: &Db, id: &str) -> Result<bool, DbError> {
    if id.len() != KEY_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let r = db
        .write(vec![Stmt::new(
            "UPDATE jump_deploy_keys SET revoked_at = ?
             WHERE substr(key_hash, 1, 16) = ? AND revoked_at IS NULL",
            vec![now_ms().into(), id.to_ascii_lowercase().into()],
        )])
        .await?;
    Ok(r.rows_affected > 0)
}

/// Installed clients of a mode (not removed).
pub async fn count_clients(db: &Db, mode: JumpMode) -> Result<i64, DbError> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM jump_clients WHERE mode = ? AND removed_at IS NULL")
            .bind(mode.as_str())
            .fetch_one(&db.pool)
            .await?
            .get("n"),
    )
}

/// Parameters of a registration.
#[derive(Debug)]
pub struct NewClient<'a> {
    pub id: &'a str,
    pub key_hash: &'a str,
    pub public_key: &'a str,
    pub mode: JumpMode,
    pub group: &'a str,
    pub info: &'a JumpInfo,
    pub wake_port: Option<u16>,
    /// For personal groups: the representative who created the deployment key.
    pub owner_id: Option<i64>,
}

/// Takes one use of the deployment key and records the client; false when the key has no
/// use left (or expired) by now.
pub async fn register(db: &Db, c: NewClient<'_>) -> Result<bool, DbError> {
    let now = now_ms();
    let r = db
        .write(vec![
            Stmt::new(
                "UPDATE jump_deploy_keys SET uses_left = uses_left - 1
                 WHERE key_hash = ? AND uses_left > 0 AND valid_until > ? AND revoked_at IS NULL",
                vec![c.key_hash.into(), now.into()],
            )
            .requiring_change(),
            Stmt::new(
                "INSERT INTO jump_clients (id, public_key, mode, name, grp, computer, platform,
                   logged_in_user, agent_version, wake_port, created_at, owner_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    c.id.into(),
                    c.public_key.into(),
                    c.mode.as_str().into(),
                    c.info.computer.as_str().into(),
                    c.group.into(),
                    c.info.computer.as_str().into(),
                    c.info.platform.as_str().into(),
                    c.info.logged_in_user.as_str().into(),
                    c.info.agent_version.as_str().into(),
                    c.wake_port.map(i64::from).into(),
                    now.into(),
                    c.owner_id.into(),
                ],
            ),
        ])
        .await?;
    Ok(r.completed)
}

pub async fn client(db: &Db, id: &str) -> Result<Option<ClientRow>, DbError> {
    let r = sqlx::query("SELECT * FROM jump_clients WHERE id = ?")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(r.as_ref().map(client_from))
}

/// Clients not removed, by group and name; `search` matches name, computer, comment, user
/// and platform.
pub async fn list(db: &Db, search: &str, limit: i64) -> Result<Vec<ClientRow>, DbError> {
    let pattern = format!(
        "%{}%",
        search
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "SELECT * FROM jump_clients WHERE removed_at IS NULL AND
           (name LIKE ?1 ESCAPE '\\' OR computer LIKE ?1 ESCAPE '\\' OR comment LIKE ?1 ESCAPE '\\'
            OR logged_in_user LIKE ?1 ESCAPE '\\' OR platform LIKE ?1 ESCAPE '\\')
         ORDER BY grp, name LIMIT ?2",
    )
    .bind(pattern)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(client_from).collect())
}

/// A link opened: the client's facts and "last seen", without waiting for the commit.
pub async fn connected(db: &Db, id: &str, info: &JumpInfo) {
    let _ = db
        .append(vec![Stmt::new(
            "UPDATE jump_clients SET computer = ?, platform = ?, logged_in_user = ?,
               agent_version = ?, last_seen = ? WHERE id = ?",
            vec![
                info.computer.as_str().into(),
                info.platform.as_str().into(),
                info.logged_in_user.as_str().into(),
                info.agent_version.as_str().into(),
                now_ms().into(),
                id.into(),
            ],
        )])
        .await;
}

/// The user at a connected client's desktop changed (already cleaned of control characters).
pub async fn logged_in_user(db: &Db, id: &str, user: &str) {
    let _ = db
        .append(vec![Stmt::new(
            "UPDATE jump_clients SET logged_in_user = ?, last_seen = ? WHERE id = ?",
            vec![user.into(), now_ms().into(), id.into()],
        )])
        .await;
}

/// "Last seen" of many clients, a few hundred per op.
pub async fn touch_many(db: &Db, ids: &[String], at: i64) {
    for chunk in ids.chunks(500) {
        let stmts = chunk
            .iter()
            .map(|id| {
                Stmt::new(
                    "UPDATE jump_clients SET last_seen = ? WHERE id = ?",
                    vec![at.into(), id.as_str().into()],
                )
            })
            .collect();
        let _ = db.append(stmts).await;
    }
}

/// The teams `user_id` belongs to (`user_teams`, set by administrators).
pub async fn teams_of(db: &Db, user_id: i64) -> Result<Vec<String>, DbError> {
    let rows = sqlx::query("SELECT team FROM user_teams WHERE user_id = ? ORDER BY team")
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows.iter().map(|r| r.get("team")).collect())
}

/// Replaces the teams of `user_id`.
pub async fn set_teams(db: &Db, user_id: i64, teams: &[String]) -> Result<(), DbError> {
    let mut stmts = vec![Stmt::new(
        "DELETE FROM user_teams WHERE user_id = ?",
        vec![user_id.into()],
    )];
    stmts.extend(teams.iter().map(|t| {
        Stmt::new(
            "INSERT INTO user_teams (user_id, team) VALUES (?, ?)",
            vec![user_id.into(), t.as_str().into()],
        )
    }));
    db.write(stmts).await?;
    Ok(())
}

/// Renames a client and sets its comment.
pub async fn update_client(db: &Db, id: &str, name: &str, comment: &str) -> Result<(), DbError> {
    db.write(vec![Stmt::new(
        "UPDATE jump_clients SET name = ?, comment = ? WHERE id = ?",
        vec![name.into(), comment.into(), id.into()],
    )])
    .await?;
    Ok(())
}

/// A session made by a jump: its ticket and the session itself, already accepted by the
/// representative (never in a queue).
#[derive(Debug)]
pub struct NewJumpSession<'a> {
    pub ticket_id: &'a str,
    pub session_id: &'a str,
    pub rep_id: i64,
    pub client: &'a ClientRow,
    pub expires_at: i64,
    /// Until the client connects with the ticket, a hash nobody can present.
    pub resume_token_hash: &'a str,
}

pub async fn create_jump_session(db: &Db, s: NewJumpSession<'_>) -> Result<(), DbError> {
    let now = now_ms();
    let customer = if s.client.logged_in_user.is_empty() {
        s.client.name.clone()
    } else {
        format!("{} ({})", s.client.name, s.client.logged_in_user)
    };
    db.write(vec![
        Stmt::new(
            "INSERT INTO tickets (id, queue, rep_id, customer_name, language, created_at,
               expires_at, session_id)
             VALUES (?, 'personal', ?, ?, 'en', ?, ?, ?)",
            vec![
                s.ticket_id.into(),
                s.rep_id.into(),
                customer.as_str().into(),
                now.into(),
                s.expires_at.into(),
                s.session_id.into(),
            ],
        ),
        Stmt::new(
            "INSERT INTO sessions (id, ticket_id, queue, owner_id, state, customer_name, computer,
               platform, language, remote_addr, resume_token_hash, created_at, accepted_at,
               accepted_by)
             VALUES (?, ?, 'personal', ?, 'active', ?, ?, ?, 'en', '', ?, ?, ?, ?)",
            vec![
                s.session_id.into(),
                s.ticket_id.into(),
                s.rep_id.into(),
                customer.as_str().into(),
                s.client.computer.as_str().into(),
                s.client.platform.as_str().into(),
                s.resume_token_hash.into(),
                now.into(),
                now.into(),
                s.rep_id.into(),
            ],
        ),
    ])
    .await?;
    Ok(())
}

/// The jump client's session agent presented the ticket: it is used now, and the session
/// gets the agent's resume token and address. False when the ticket was used already.
pub async fn use_jump_ticket(
    db: &Db,
    ticket_id: &str,
    session_id: &str,
    resume_token_hash: &str,
    remote_addr: &str,
) -> Result<bool, DbError> {
    let r = db
        .write(vec![
            Stmt::new(
                "UPDATE tickets SET used_at = ? WHERE id = ? AND session_id = ? AND used_at IS NULL",
                vec![now_ms().into(), ticket_id.into(), session_id.into()],
            )
            .requiring_change(),
            Stmt::new(
                "UPDATE sessions SET resume_token_hash = ?, remote_addr = ?
                 WHERE id = ? AND state != 'ended'",
                vec![
                    resume_token_hash.into(),
                    remote_addr.into(),
                    session_id.into(),
                ],
            )
            .requiring_change(),
        ])
        .await?;
    Ok(r.completed)
}

/// Where a passive client can be woken: the address it last connected from and its wake
/// port (`migrations/0005_jump_passive.sql`).
pub async fn wake_target(
    db: &Db,
    id: &str,
) -> Result<Option<(Option<String>, Option<u16>)>, DbError> {
    let r = sqlx::query("SELECT last_address, wake_port FROM jump_clients WHERE id = ?")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(r.map(|r| {
        (
            r.get::<Option<String>, _>("last_address"),
            r.get::<Option<i64>, _>("wake_port")
                .and_then(|p| u16::try_from(p).ok()),
        )
    }))
}

/// The address a client connected from (a wake-up goes there), without waiting for the commit.
pub async fn record_address(db: &Db, id: &str, address: &str) {
    let _ = db
        .append(vec![Stmt::new(
            "UPDATE jump_clients SET last_address = ? WHERE id = ?",
            vec![address.into(), id.into()],
        )])
        .await;
}

/// Marks a client removed (its next connection is refused); false when there is no such
/// client or it was removed already.
pub async fn remove(db: &Db, id: &str) -> Result<bool, DbError> {
    let r = db
        .write(vec![
            Stmt::new(
                "UPDATE jump_clients SET removed_at = ? WHERE id = ? AND removed_at IS NULL",
                vec![now_ms().into(), id.into()],
            )
            .requiring_change(),
        ])
        .await?;
    Ok(r.completed)
}

/// The client answered an uninstall order: it removed itself.
pub async fn uninstalled(db: &Db, id: &str) {
    let _ = db
        .append(vec![Stmt::new(
            "UPDATE jump_clients SET uninstalled_at = ? WHERE id = ?",
            vec![now_ms().into(), id.into()],
        )])
        .await;
}
