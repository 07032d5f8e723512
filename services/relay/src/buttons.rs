//! Support buttons: a desktop entry on a customer's computer that opens the client and puts a
//! request straight into a chosen representative's or team's queue (or the general queue),
//! for as long as an administrator decided (an hour to five years).
//!
//! * `POST /api/v1/buttons` (administrators): label, queue (`general`, `rep:<user name>` for
//!   that person's personal queue, or `team` with `team: <name>` for a team's queue), lifetime
//!   in minutes. The answer holds the button's token once, with the download address per
//!   platform; only the token's SHA-256 is kept. A team must be known (a member, a jump group
//!   or another button names it); a team without members is accepted with a `note` saying
//!   that only administrators will see its requests until someone joins it.
//! * `GET /api/v1/buttons/targets` (administrators): the representatives and teams a button
//!   can target (the console's chooser).
//! * `GET /api/v1/buttons` (administrators): every button with its state (active, expired,
//!   revoked), how many sessions it started and when it was last used.
//! * `DELETE /api/v1/buttons/{id}` (administrators): revokes a button; it then answers like
//!   an expired one.
//! * `GET /button/{token}/{platform}`: the stock client with a `button` ticket whose `ticket`
//!   is the token. Run once, it installs the desktop entry ([`TicketKind::Button`] in the
//!   agent); every click then asks for a session.
//! * `POST /api/v1/buttons/session` (no login; the token authorises it; limited per address
//!   like the portal's keys): a one-shot ticket in the button's queue, answered as the
//!   [`TicketFile`] the client then runs exactly like a downloaded one. A button that expired
//!   or was revoked is answered `410` with `{"error": "expired", "message", "portal_url"}`,
//!   so the client can say so and lead the person to the portal.
//!
//! A token is 24 random bytes, so guessing one is hopeless; the per-address limit only stops
//! one computer from flooding a queue. Every creation, revocation, download and start is
//! audited. The console's "Deployment" page (administrators) creates, lists and revokes
//! buttons with these routes.

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use lifeline_proto::ticket::{TicketFile, TicketKind, trailer};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth;
use crate::clients;
use crate::db::{Db, DbError, Stmt, now_ms};
use crate::i18n::Lang;
use crate::web::api::JsonBody;
use crate::web::{ApiError, Authed, ClientIp, State, audit, portal};

/// Shortest and longest lifetime of a button.
pub const MIN_LIFETIME_MS: i64 = 3600 * 1000;
pub const MAX_LIFETIME_MS: i64 = 5 * 366 * 24 * 3600 * 1000;
/// A button token's prefix (the rest is 24 random bytes).
const TOKEN_PREFIX: &str = "sb_";

pub fn router() -> Router<State> {
    Router::new()
        .route("/", post(create).get(list))
        .route("/{id}", delete(revoke))
        .route("/targets", axum::routing::get(targets))
        .route("/session", post(start_session))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ButtonRequest {
    #[serde(default)]
    pub label: String,
    /// `general`, `rep:<user name>` or `team` (with `team`).
    pub queue: String,
    /// The team, for `queue: "team"`.
    #[serde(default)]
    pub team: Option<String>,
    /// Minutes the button works (60 to five years).
    pub valid_minutes: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ButtonCreated {
    pub id: String,
    /// Shown once: it is part of the download address.
    pub token: String,
    pub expires_at: i64,
    /// Download address per platform id (e.g. `linux-x86_64`).
    #[schema(value_type = Vec<Vec<String>>)]
    pub downloads: Vec<(String, String)>,
    /// Said when the button works but something deserves attention (a team with no members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A button as the administrators' list shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ButtonRow {
    pub id: String,
    pub label: String,
    pub queue: String,
    pub rep: Option<String>,
    /// The team of a `team` queue.
    pub team: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub revoked: bool,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    pub sessions: i64,
    pub last_used: Option<i64>,
}

/// Creates a support button (administrators).
#[utoipa::path(post, path = "/api/v1/buttons", request_body = ButtonRequest, security(("bearer" = [])),
    responses((status = 200, body = ButtonCreated), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn create(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    JsonBody(req): JsonBody<ButtonRequest>,
) -> Result<Json<ButtonCreated>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let lifetime = req.valid_minutes.saturating_mul(60_000);
    if !(MIN_LIFETIME_MS..=MAX_LIFETIME_MS).contains(&lifetime) {
        return Err(ApiError::BadRequest(
            "valid_minutes must be between 60 (an hour) and five years".into(),
        ));
    }
    let mut note = None;
    let (queue, rep_id, team) = match req.queue.as_str() {
        "general" if req.team.is_none() => ("general", None, None),
        "team" => {
            let Some(team) = req.team.as_deref() else {
                return Err(ApiError::BadRequest(
                    "a team queue needs \"team\": \"<name>\"".into(),
                ));
            };
            let (members, known) = if crate::jump::groups::valid_team(team) {
                state.db.team_known(team).await?
            } else {
                (0, false)
            };
            if !known {
                return Err(ApiError::BadRequest(format!(
                    "there is no team called `{team}`: add a representative to it first"
                )));
            }
            if members == 0 {
                note = Some(format!(
                    "The team `{team}` has no active member yet: only administrators see its requests until someone joins it."
                ));
            }
            ("team", None, Some(team.to_string()))
        }
        q if req.team.is_some() => {
            return Err(ApiError::BadRequest(format!(
                "\"team\" goes only with \"queue\": \"team\", not with `{q}`"
            )));
        }
        q => match q.strip_prefix("rep:") {
            Some(name) => match state.db.user_by_name(name).await? {
                Some(u) if !u.disabled => ("personal", Some(u.id), None),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "there is no active representative called `{name}`"
                    )));
                }
            },
            None => {
                return Err(ApiError::BadRequest(
                    "queue must be \"general\", \"rep:<user name>\" or \"team\" (with \"team\": \"<name>\")".into(),
                ));
            }
        },
    };
    let label: String = lifeline_proto::sanitize_text(&req.label)
        .replace('\n', " ")
        .chars()
        .take(120)
        .collect();
    let id = auth::random_token(8);
    let token = format!("{TOKEN_PREFIX}{}", auth::random_token(24));
    let expires_at = now_ms() + lifetime;
    state
        .db
        .write(vec![Stmt::new(
            "INSERT INTO support_buttons (id, token_hash, label, queue, team, rep_id, expires_at, created_by, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.as_str().into(),
                auth::token_hash(&token).into(),
                label.as_str().into(),
                queue.into(),
                team.clone().into(),
                rep_id.into(),
                expires_at.into(),
                a.user.id.into(),
                now_ms().into(),
            ],
        )])
        .await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "button.create",
        "ok",
        &format!(
            "{id} {}{} {label}",
            req.queue,
            team.as_deref().map(|t| format!(":{t}")).unwrap_or_default()
        ),
    )
    .await;
    let downloads = clients::PLATFORMS
        .iter()
        .map(|p| {
            (
                p.id.to_string(),
                format!("{}/button/{token}/{}", state.public_url, p.id),
            )
        })
        .collect();
    Ok(Json(ButtonCreated {
        id,
        token,
        expires_at,
        downloads,
        note,
    }))
}

/// Every support button (administrators).
#[utoipa::path(get, path = "/api/v1/buttons", security(("bearer" = [])),
    responses((status = 200, body = Vec<ButtonRow>), (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn list(
    AxState(state): AxState<State>,
    a: Authed,
) -> Result<Json<Vec<ButtonRow>>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT b.*, u.username AS rep FROM support_buttons b
         LEFT JOIN users u ON u.id = b.rep_id ORDER BY b.created_at DESC LIMIT 1000",
    )
    .fetch_all(&state.db.pool)
    .await
    .map_err(DbError::from)?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                let revoked = r.get::<Option<i64>, _>("revoked_at").is_some();
                let expires_at: i64 = r.get("expires_at");
                ButtonRow {
                    id: r.get("id"),
                    label: r.get("label"),
                    queue: r.get("queue"),
                    rep: r.get("rep"),
                    team: r.get("team"),
                    expires_at,
                    created_at: r.get("created_at"),
                    revoked,
                    state: if revoked {
                        "revoked"
                    } else if expires_at <= now {
                        "expired"
                    } else {
                        "active"
                    },
                    sessions: r.get("sessions"),
                    last_used: r.get("last_used"),
                }
            })
            .collect(),
    ))
}

/// Revokes a support button (administrators).
#[utoipa::path(delete, path = "/api/v1/buttons/{id}", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = crate::web::error::ErrorBody),
              (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn revoke(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let done = state
        .db
        .write(vec![Stmt::new(
            "UPDATE support_buttons SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            vec![now_ms().into(), id.as_str().into()],
        )])
        .await?;
    let outcome = if done.rows_affected > 0 {
        "ok"
    } else {
        "unknown"
    };
    audit(&state, &a.user.username, ip, "button.revoke", outcome, &id).await;
    if outcome == "ok" {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(
            "no such support button, or it was revoked already".into(),
        ))
    }
}

/// A representative a button can target.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepTarget {
    pub username: String,
    pub display_name: String,
}

/// A team a button can target.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamTarget {
    pub name: String,
    /// Active members (0: only administrators would see its requests).
    pub members: i64,
}

/// What a button can target (the console's chooser).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ButtonTargets {
    /// Active representatives and administrators.
    pub reps: Vec<RepTarget>,
    pub teams: Vec<TeamTarget>,
}

/// The representatives and teams a button can target (administrators).
#[utoipa::path(get, path = "/api/v1/buttons/targets", security(("bearer" = [])),
    responses((status = 200, body = ButtonTargets), (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn targets(
    AxState(state): AxState<State>,
    a: Authed,
) -> Result<Json<ButtonTargets>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let reps = state
        .db
        .list_users()
        .await?
        .into_iter()
        .filter(|u| !u.disabled && (u.role == "rep" || u.role == "admin"))
        .map(|u| RepTarget {
            username: u.username,
            display_name: u.display_name,
        })
        .collect();
    let mut teams = Vec::new();
    for name in state.db.team_names().await? {
        let (members, _) = state.db.team_known(&name).await?;
        teams.push(TeamTarget { name, members });
    }
    Ok(Json(ButtonTargets { reps, teams }))
}

/// A button that may still start sessions.
struct LiveButton {
    id: String,
    queue: String,
    team: Option<String>,
    rep_id: Option<i64>,
    expires_at: i64,
}

/// The button with this token, if it exists and neither expired nor was revoked.
async fn live(db: &Db, token: &str) -> Result<Option<LiveButton>, DbError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 64 {
        return Ok(None);
    }
    let r = sqlx::query(
        "SELECT id, queue, team, rep_id, expires_at FROM support_buttons
         WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(auth::token_hash(token))
    .bind(now_ms())
    .fetch_optional(&db.pool)
    .await?;
    Ok(r.map(|r| LiveButton {
        id: r.get("id"),
        queue: r.get("queue"),
        team: r.get("team"),
        rep_id: r.get("rep_id"),
        expires_at: r.get("expires_at"),
    }))
}

/// The sentence for a button that no longer works.
const EXPIRED: &str =
    "This support button has expired. Please open the support portal to get help.";

/// `GET /button/{token}/{platform}`: the installer of a support button.
pub async fn download(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Path((token, platform)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(button) = live(&state.db, &token).await? else {
        return Err(ApiError::NotFound(EXPIRED.into()));
    };
    let (p, binary) = state.clients.download(&platform).await?;
    let ticket = TicketFile {
        site_url: state.public_url.clone(),
        cert_sha256: state.pin.clone(),
        ticket: token,
        expires_at: button.expires_at,
        language: String::new(),
        customer_name: String::new(),
        site_name: state.config.company.clone(),
        kind: TicketKind::Button,
    };
    audit(
        &state,
        "portal",
        ip,
        "button.download",
        "ok",
        &format!("{} {}", button.id, p.id),
    )
    .await;
    let name = format!("lifeline-support-button{}", p.suffix);
    Ok(clients::stamped_download(binary, trailer(&ticket), &name))
}

/// What a clicked button sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ButtonStart {
    pub token: String,
    /// The person's name as the computer knows it.
    #[serde(default)]
    pub name: String,
    /// "en", "fr" or "de".
    #[serde(default)]
    pub language: String,
}

/// The answer for a button that no longer works.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ButtonExpired {
    /// Always `expired`.
    pub error: &'static str,
    pub message: &'static str,
    /// Where the person can ask for help instead.
    pub portal_url: String,
}

/// A click on a support button: a ticket in the button's queue.
#[utoipa::path(post, path = "/api/v1/buttons/session", request_body = ButtonStart,
    responses((status = 200, description = "the ticket file to run", body = Object),
              (status = 410, body = ButtonExpired), (status = 429, body = crate::web::error::ErrorBody)))]
pub async fn start_session(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ButtonStart>,
) -> Result<Response, ApiError> {
    if state.key_limiter.check(ip).is_err() {
        audit(&state, "portal", ip, "button.session", "limited", "").await;
        return Err(ApiError::RateLimited);
    }
    let Some(button) = live(&state.db, &req.token).await? else {
        audit(&state, "portal", ip, "button.session", "expired", "").await;
        let body = ButtonExpired {
            error: "expired",
            message: EXPIRED,
            portal_url: format!("{}/", state.public_url),
        };
        return Ok((StatusCode::GONE, Json(body)).into_response());
    };
    let lang = Lang::negotiate(
        Some(&req.language),
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    // A representative who left since: the request goes to the general queue.
    let rep = match button.rep_id {
        Some(id) if button.queue == "personal" => state
            .db
            .user_by_id(id)
            .await?
            .filter(|u| !u.disabled)
            .map(|u| u.id),
        _ => None,
    };
    let team = button.team.filter(|_| button.queue == "team");
    let queue = match (&rep, &team) {
        (Some(_), _) => "personal",
        (None, Some(_)) => "team",
        (None, None) => "general",
    };
    let mut ticket = portal::new_ticket(queue, rep, &req.name, lang);
    ticket.team = team;
    state
        .db
        .write(vec![
            crate::db::ticket_stmt(&ticket),
            Stmt::new(
                "UPDATE support_buttons SET sessions = sessions + 1, last_used = ? WHERE id = ?",
                vec![now_ms().into(), button.id.as_str().into()],
            ),
        ])
        .await?;
    audit(
        &state,
        "portal",
        ip,
        "button.session",
        "ok",
        &format!("{} {queue}", button.id),
    )
    .await;
    Ok(Json(portal::ticket_file(&state, &ticket)).into_response())
}
