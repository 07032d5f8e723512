//! Support buttons: a desktop entry on a customer's computer that opens the client and puts a
//! request straight into a chosen representative's queue (or the general queue), for as long
//! as an administrator decided (an hour to five years).
//!
//! * `POST /api/v1/buttons` (administrators): label, queue (`general`, or `rep:<user name>`
//!   for that person's personal queue), lifetime in minutes. The answer holds the button's
//!   token once, with the download address per platform; only the token's SHA-256 is kept.
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
//! audited. Limits of this version: buttons target a representative or the general queue
//! (there are no team queues yet), and are created through the API (no console page).

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
        .route("/session", post(start_session))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ButtonRequest {
    #[serde(default)]
    pub label: String,
    /// `general` or `rep:<user name>`.
    pub queue: String,
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
    pub downloads: Vec<(String, String)>,
}

/// A button as the administrators' list shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ButtonRow {
    pub id: String,
    pub label: String,
    pub queue: String,
    pub rep: Option<String>,
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
    let (queue, rep_id) = match req.queue.as_str() {
        "general" => ("general", None),
        q => match q.strip_prefix("rep:") {
            Some(name) => match state.db.user_by_name(name).await? {
                Some(u) if !u.disabled => ("personal", Some(u.id)),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "there is no active representative called `{name}`"
                    )));
                }
            },
            None => {
                return Err(ApiError::BadRequest(
                    "queue must be \"general\" or \"rep:<user name>\"".into(),
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
            "INSERT INTO support_buttons (id, token_hash, label, queue, rep_id, expires_at, created_by, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.as_str().into(),
                auth::token_hash(&token).into(),
                label.as_str().into(),
                queue.into(),
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
        &format!("{id} {} {label}", req.queue),
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

/// A button that may still start sessions.
struct LiveButton {
    id: String,
    queue: String,
    rep_id: Option<i64>,
    expires_at: i64,
}

/// The button with this token, if it exists and neither expired nor was revoked.
async fn live(db: &Db, token: &str) -> Result<Option<LiveButton>, DbError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 64 {
        return Ok(None);
    }
    let r = sqlx::query(
        "SELECT id, queue, rep_id, expires_at FROM support_buttons
         WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(auth::token_hash(token))
    .bind(now_ms())
    .fetch_optional(&db.pool)
    .await?;
    Ok(r.map(|r| LiveButton {
        id: r.get("id"),
        queue: r.get("queue"),
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
    let queue = if rep.is_some() { "personal" } else { "general" };
    let ticket = portal::new_ticket(queue, rep, &req.name, lang);
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
