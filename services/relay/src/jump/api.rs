//! The jump routes of the REST API (`/api/v1/jump/...`) and the installer download.
//!
//! * `POST /api/v1/jump/deploy-keys` (administrators): a deployment key — label, group,
//!   mode, valid until (1 hour to 5 years), uses (1 to 100,000). The key is shown once, with
//!   the installer's address; only its hash is kept. A key is 24 random bytes, so neither
//!   route below needs an attempt limit (a mass deployment behind one address registers
//!   thousands of machines quickly).
//! * `GET /api/v1/jump/deploy-keys` (administrators): every key with its state and uses
//!   left; `DELETE /api/v1/jump/deploy-keys/{id}` (administrators; audited) revokes one (the
//!   id is the first 16 hex digits of the key's hash, as listed).
//! * `GET /jump/installer/{key}/{platform}`: the stock client with a `jump_install` ticket
//!   whose `ticket` is the deployment key (the key is the authorisation, like a download
//!   link; it is not spent by downloading).
//! * `POST /api/v1/jump/register` (no login; the deployment key authorises it): records the
//!   client and its public key; refusals are audited.
//! * `GET /api/v1/jump/clients?search=` (representatives): the clients they may see
//!   ([`super::groups`]) with their online state and last seen.
//! * `PATCH /api/v1/jump/clients/{id}` (administrators; a rep for their personal clients):
//!   name and comment, validated and audited.
//! * `POST /api/v1/jump/clients/{id}/jump` (a rep or admin who may see the client): a session
//!   owned by the caller and already accepted, its one-time ticket, and `StartSession` to the
//!   client (a passive one is woken first, `reachable`); an offline active client, or a
//!   passive one that cannot be woken, answers 409.
//! * `GET`/`PUT /api/v1/jump/users/{username}/teams`: a user's teams (set by administrators).
//! * `POST /api/v1/jump/clients/{id}/wake` (a rep or admin who may see the client; audited):
//!   wakes a passive client ([`super::Jumps::wake`]) and answers once it is connected (at
//!   most 30 s).
//! * `DELETE /api/v1/jump/clients/{id}` (administrators; audited): removes the client; a
//!   connected one is told to uninstall itself, a passive one is woken to hear it.
//!
//! The deployment key decides the mode; the registration's answer tells the installer.

use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use lifeline_proto::jump::{JumpMode, Registered, Registration};
use lifeline_proto::ticket::{TicketFile, TicketKind, trailer};
use serde::{Deserialize, Serialize};

use super::store::{self, ClientRow, NewClient, NewDeployKey, NewJumpSession};
use super::{PendingJump, groups};
use crate::auth;
use crate::clients;
use crate::db::now_ms;
use crate::web::api::JsonBody;
use crate::web::{ApiError, Authed, ClientIp, Rep, State, audit};

/// Longest lifetime of a deployment key: five years.
pub const MAX_KEY_LIFETIME_MS: i64 = 5 * 366 * 24 * 3600 * 1000;

pub fn router() -> Router<State> {
    Router::new()
        .route(
            "/deploy-keys",
            post(create_deploy_key).get(list_deploy_keys),
        )
        .route(
            "/deploy-keys/{id}",
            axum::routing::delete(revoke_deploy_key),
        )
        .route("/register", post(register))
        .route("/clients", get(list_clients))
        .route(
            "/clients/{id}",
            axum::routing::patch(update_client).delete(remove_client),
        )
        .route("/clients/{id}/wake", post(wake_client))
        .route("/clients/{id}/jump", post(jump))
        .route(
            "/users/{username}/teams",
            get(user_teams).put(set_user_teams),
        )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployKeyRequest {
    #[serde(default)]
    pub label: String,
    /// "general" (default), "team:<name>" or "personal".
    #[serde(default)]
    pub group: Option<String>,
    /// `active` or `passive`.
    #[schema(value_type = String)]
    pub mode: JumpMode,
    /// Minutes the key stays valid (60 to five years).
    pub valid_minutes: i64,
    pub uses: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeployKeyResponse {
    /// The key's id in the list (the first 16 hex digits of its hash).
    pub id: String,
    pub key: String,
    pub group: String,
    pub valid_until: i64,
    pub uses: i64,
    /// Installer address per platform id (e.g. `linux-x86_64`): `[platform, url]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub installers: Vec<(String, String)>,
}

/// Creates a deployment key (administrators); the key is shown only in this answer.
#[utoipa::path(post, path = "/api/v1/jump/deploy-keys", request_body = DeployKeyRequest,
    security(("bearer" = [])),
    responses((status = 200, body = DeployKeyResponse), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn create_deploy_key(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    JsonBody(req): JsonBody<DeployKeyRequest>,
) -> Result<Json<DeployKeyResponse>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let lifetime = req.valid_minutes.saturating_mul(60_000);
    if !(3_600_000..=MAX_KEY_LIFETIME_MS).contains(&lifetime) {
        return Err(ApiError::BadRequest(
            "valid_minutes must be between 60 (an hour) and five years".into(),
        ));
    }
    if !(1..=100_000).contains(&req.uses) {
        return Err(ApiError::BadRequest(
            "uses must be between 1 and 100000".into(),
        ));
    }
    let group = match req.group.as_deref().unwrap_or("general") {
        "general" => "general".to_string(),
        "personal" => format!("personal:{}", a.user.username),
        g if g.starts_with("team:") && g.len() <= 64 && g.len() > 5 => g.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "group must be \"general\", \"personal\" or \"team:<name>\"".into(),
            ));
        }
    };
    let label: String = lifeline_proto::sanitize_text(&req.label)
        .chars()
        .take(120)
        .collect();
    let key = format!("dk_{}", auth::random_token(24));
    let valid_until = now_ms() + lifetime;
    store::insert_deploy_key(
        &state.db,
        NewDeployKey {
            key_hash: &auth::token_hash(&key),
            label: &label,
            group: &group,
            mode: req.mode,
            valid_until,
            uses: req.uses,
            created_by: a.user.id,
        },
    )
    .await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.deploy_key",
        "ok",
        &format!("{} {} uses={} {label}", req.mode.as_str(), group, req.uses),
    )
    .await;
    let installers = clients::PLATFORMS
        .iter()
        .map(|p| {
            (
                p.id.to_string(),
                format!("{}/jump/installer/{key}/{}", state.public_url, p.id),
            )
        })
        .collect();
    Ok(Json(DeployKeyResponse {
        id: auth::token_hash(&key)
            .chars()
            .take(store::KEY_ID_LEN)
            .collect(),
        key,
        group,
        valid_until,
        uses: req.uses,
        installers,
    }))
}

/// Every deployment key with its state and the uses it has left (administrators).
#[utoipa::path(get, path = "/api/v1/jump/deploy-keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<store::DeployKeyListed>), (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn list_deploy_keys(
    AxState(state): AxState<State>,
    a: Authed,
) -> Result<Json<Vec<store::DeployKeyListed>>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(store::list_deploy_keys(&state.db).await?))
}

/// Revokes a deployment key (administrators): it registers no more clients; clients it
/// registered stay.
#[utoipa::path(delete, path = "/api/v1/jump/deploy-keys/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "the key's id as listed")),
    responses((status = 204), (status = 403, body = crate::web::error::ErrorBody),
              (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn revoke_deploy_key(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let done = store::revoke_deploy_key(&state.db, &id).await?;
    let outcome = if done { "ok" } else { "unknown" };
    let shown: String = id.chars().take(store::KEY_ID_LEN).collect();
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.deploy_key.revoke",
        outcome,
        &shown,
    )
    .await;
    if done {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(
            "no such deployment key, or it was revoked already".into(),
        ))
    }
}

/// The installer: the stock client with a `jump_install` ticket.
#[utoipa::path(get, path = "/jump/installer/{key}/{platform}",
    params(("key" = String, Path, description = "the deployment key"),
           ("platform" = String, Path, description = "e.g. `linux-x86_64`")),
    responses((status = 200, description = "the installer program (application/octet-stream)"),
              (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn installer(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Path((key, platform)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::NotFound(
            "This installer link is not valid any more: ask your administrator for a new one."
                .into(),
        )
    };
    if key.len() > 128 {
        return Err(gone());
    }
    let Some(row) = store::live_deploy_key(&state.db, &auth::token_hash(&key)).await? else {
        return Err(gone());
    };
    let (p, binary) = state.clients.download(&platform).await?;
    let ticket = TicketFile {
        site_url: state.public_url.clone(),
        cert_sha256: state.pin.clone(),
        ticket: key,
        expires_at: row.valid_until,
        language: String::new(),
        customer_name: String::new(),
        site_name: state.config.company.clone(),
        kind: TicketKind::JumpInstall,
    };
    audit(
        &state,
        "portal",
        ip,
        "jump.installer",
        "ok",
        &format!("{} {}", p.id, row.group),
    )
    .await;
    let name = format!("lifeline-jump-installer{}", p.suffix);
    Ok(clients::stamped_download(binary, trailer(&ticket), &name))
}

/// What a jump client sends to register (the schema of `lifeline_proto::jump::Registration`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RegistrationDoc {
    deploy_key: String,
    /// Base64 ed25519 public key (32 bytes).
    public_key: String,
    /// `active` or `passive`.
    mode: String,
    /// `computer`, `platform`, `logged_in_user`, `agent_version`.
    info: std::collections::BTreeMap<String, String>,
    wake_port: Option<u16>,
}

/// The answer to a registration (`lifeline_proto::jump::Registered`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RegisteredDoc {
    client_id: String,
    name: String,
    wake_public_key: String,
    heartbeat_s: u32,
}

/// Registers a jump client with a deployment key (no login: the key authorises it).
#[utoipa::path(post, path = "/api/v1/jump/register", request_body = RegistrationDoc,
    responses((status = 200, body = RegisteredDoc), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody)))]
pub async fn register(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    body: String,
) -> Result<Json<Registered>, ApiError> {
    let req = Registration::decode(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let public = base64::engine::general_purpose::STANDARD
        .decode(&req.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| ApiError::BadRequest("public_key is not an ed25519 key".into()))?;
    let key_hash = auth::token_hash(&req.deploy_key);
    let refused = || ApiError::Forbidden;
    let Some(key) = store::live_deploy_key(&state.db, &key_hash).await? else {
        audit(
            &state,
            "jump",
            ip,
            "jump.register",
            "refused",
            "unknown, expired or spent deployment key",
        )
        .await;
        return Err(refused());
    };
    // The key decides; the answer says which (an installer cannot know before).
    let mode = store::mode_from(&key.mode);
    if mode == JumpMode::Passive {
        let limit = state.jump.limit(&state.licence, mode).await;
        if store::count_clients(&state.db, mode).await? >= i64::from(limit) {
            audit(
                &state,
                "jump",
                ip,
                "jump.register",
                "refused",
                "passive licence limit",
            )
            .await;
            return Err(ApiError::NoSeat(licence_message(mode, limit)));
        }
    }
    let id = format!("jc_{}", auth::random_token(12));
    let info = lifeline_proto::jump::JumpInfo {
        computer: lifeline_proto::sanitize_text(&req.info.computer),
        platform: lifeline_proto::sanitize_text(&req.info.platform),
        logged_in_user: lifeline_proto::sanitize_text(&req.info.logged_in_user),
        agent_version: lifeline_proto::sanitize_text(&req.info.agent_version),
    };
    let public_b64 = base64::engine::general_purpose::STANDARD.encode(public.to_bytes());
    if !store::register(
        &state.db,
        NewClient {
            id: &id,
            key_hash: &key_hash,
            public_key: &public_b64,
            mode,
            group: &key.group,
            info: &info,
            wake_port: req.wake_port.filter(|_| mode == JumpMode::Passive),
            owner_id: key
                .group
                .starts_with("personal")
                .then_some(key.created_by)
                .flatten(),
        },
    )
    .await?
    {
        return Err(refused());
    }
    audit(
        &state,
        "jump",
        ip,
        "jump.register",
        "ok",
        &format!("{id} {} {:?} {}", mode.as_str(), info.computer, key.group),
    )
    .await;
    Ok(Json(Registered {
        client_id: id,
        name: info.computer,
        wake_public_key: state.jump.wake_public_key(),
        heartbeat_s: state.jump.heartbeat_s(),
        mode: Some(mode),
    }))
}

/// The sentence for a client beyond the licence's limit.
pub fn licence_message(mode: JumpMode, limit: u32) -> String {
    format!(
        "This support box's licence allows {limit} {} jump clients and all are in use: this computer will try again later. Ask your administrator for a larger licence.",
        mode.as_str()
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    pub search: String,
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    #[serde(flatten)]
    pub row: ClientRow,
    pub online: bool,
    /// Whether the caller may rename it and change its comment.
    pub editable: bool,
}

/// The jump clients the caller may see (by group), with their live online state.
#[utoipa::path(get, path = "/api/v1/jump/clients", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<ClientView>)))]
pub async fn list_clients(
    AxState(state): AxState<State>,
    Rep(a): Rep,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    let search: String = q.search.chars().take(120).collect();
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let teams = store::teams_of(&state.db, a.user.id).await?;
    // Read more than asked when some rows may be hidden from this user, then cut.
    let read = if a.user.role == "admin" { limit } else { 5000 };
    let rows = store::list(&state.db, &search, read).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|row| groups::may_see(&a.user, &teams, row))
            .take(limit as usize)
            .map(|mut row| {
                let since = state.jump.online_since(&row.id);
                if since.is_some() {
                    row.last_seen = Some(now_ms());
                }
                ClientView {
                    editable: groups::may_edit(&a.user, &row),
                    row,
                    online: since.is_some(),
                }
            })
            .collect(),
    ))
}

/// A client `user` may see, or 404 (a client one may not see is not admitted to exist).
async fn visible_client(
    state: &State,
    user: &crate::db::User,
    id: &str,
) -> Result<ClientRow, ApiError> {
    let teams = store::teams_of(&state.db, user.id).await?;
    match store::client(&state.db, id).await? {
        Some(row) if !row.removed && groups::may_see(user, &teams, &row) => Ok(row),
        _ => Err(ApiError::NotFound(
            "there is no jump client with this id".into(),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    /// The name the console shows (1 to 120 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// A note for representatives (up to 500 characters).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Renames a jump client or sets its comment (administrators; a rep for their personal ones).
#[utoipa::path(patch, path = "/api/v1/jump/clients/{id}", request_body = ClientUpdate,
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = ClientView), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody), (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn update_client(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ClientUpdate>,
) -> Result<Json<ClientView>, ApiError> {
    let row = visible_client(&state, &a.user, &id).await?;
    if !groups::may_edit(&a.user, &row) {
        return Err(ApiError::Forbidden);
    }
    let clean = |s: &str| {
        lifeline_proto::sanitize_text(s)
            .replace(['\n', '\r'], " ")
            .trim()
            .to_string()
    };
    let name = match &req.name {
        Some(n) => clean(n),
        None => row.name.clone(),
    };
    if name.is_empty() || name.chars().count() > 120 {
        return Err(ApiError::BadRequest(
            "name must have 1 to 120 characters".into(),
        ));
    }
    let comment = match &req.comment {
        Some(c) => lifeline_proto::sanitize_text(c).trim().to_string(),
        None => row.comment.clone(),
    };
    if comment.chars().count() > lifeline_proto::jump::MAX_COMMENT_CHARS {
        return Err(ApiError::BadRequest(format!(
            "comment must have at most {} characters",
            lifeline_proto::jump::MAX_COMMENT_CHARS
        )));
    }
    store::update_client(&state.db, &id, &name, &comment).await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.client_update",
        "ok",
        &format!("{id} name={name:?} comment={comment:?}"),
    )
    .await;
    let online = state.jump.online_since(&id).is_some();
    Ok(Json(ClientView {
        row: ClientRow {
            name,
            comment,
            ..row
        },
        online,
        editable: true,
    }))
}

/// Makes sure a client can be jumped to now, waking a passive one first; the one place that
/// decides it.
async fn reachable(state: &State, id: &str, mode: JumpMode) -> Result<(), ApiError> {
    match mode {
        JumpMode::Active if state.jump.online_since(id).is_some() => Ok(()),
        JumpMode::Active => Err(ApiError::Conflict(
            "This jump client is offline: the computer is off or cannot reach the support box right now.".into(),
        )),
        JumpMode::Passive => match state.jump.wake(&state.db, id).await {
            Ok(_) => Ok(()),
            Err(super::wake::WakeError::Store(e)) => Err(e.into()),
            Err(e) => Err(ApiError::Conflict(format!(
                "This passive jump client could not be woken: {e}."
            ))),
        },
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JumpStarted {
    /// The new session, already accepted by the caller; open it like an accepted one.
    pub session_id: String,
    /// False when the user at the computer is asked first.
    pub unattended: bool,
}

/// How long the jump client has to connect its session agent with the ticket.
const JUMP_TICKET_TTL_MS: i64 = 5 * 60 * 1000;

/// Jumps to a client: a session owned by the caller (already accepted) that the client's
/// session agent joins; unattended or after the logged-in user allowed it (`[jump]
/// unattended`).
#[utoipa::path(post, path = "/api/v1/jump/clients/{id}/jump", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = JumpStarted), (status = 404, body = crate::web::error::ErrorBody),
              (status = 409, body = crate::web::error::ErrorBody, description = "the client is offline, or a passive one could not be woken")))]
pub async fn jump(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<JumpStarted>, ApiError> {
    let row = visible_client(&state, &a.user, &id).await?;
    let unattended = state.config.jump_unattended;
    let how = if unattended { "unattended" } else { "asked" };
    if let Err(e) = reachable(&state, &id, store::mode_from(&row.mode)).await {
        audit(
            &state,
            &a.user.username,
            ip,
            "jump.session",
            "unreachable",
            &format!("{id} {:?} {how}", row.name),
        )
        .await;
        return Err(e);
    }
    let ticket_id = auth::random_token(16);
    let session_id = auth::random_token(16);
    let expires_at = now_ms() + JUMP_TICKET_TTL_MS;
    store::create_jump_session(
        &state.db,
        NewJumpSession {
            ticket_id: &ticket_id,
            session_id: &session_id,
            rep_id: a.user.id,
            client: &row,
            expires_at,
            resume_token_hash: &auth::token_hash(&auth::random_token(32)),
        },
    )
    .await?;
    let session_row = state
        .db
        .session(&session_id)
        .await?
        .ok_or_else(|| ApiError::Unavailable("the session could not be stored".into()))?;
    state.hub.add_jump_session(session_row, &a.user);
    let _ = state
        .db
        .add_event(
            &session_id,
            "jump",
            &format!("{} jumped to {:?} ({how})", a.user.display_name, row.name),
        )
        .await;
    let ticket = crate::web::portal::ticket_file(
        &state,
        &crate::db::TicketRow {
            id: ticket_id,
            queue: "personal".into(),
            team: None,
            rep_id: Some(a.user.id),
            customer_name: row.name.clone(),
            language: String::new(),
            expires_at,
            used_at: None,
            session_id: Some(session_id.clone()),
            rep_name: Some(a.user.display_name.clone()),
        },
    );
    let request_id = auth::random_token(12);
    state.jump.pending(
        &request_id,
        PendingJump {
            client_id: id.clone(),
            session_id: session_id.clone(),
            rep: a.user.username.clone(),
            unattended,
            at: std::time::Instant::now(),
        },
    );
    let sent = state.jump.send_order(
        &id,
        lifeline_proto::jump::RelayToJump::StartSession {
            request_id: request_id.clone(),
            ticket,
            rep: a.user.display_name.clone(),
            prompt: !unattended,
        },
    );
    if !sent {
        state.jump.take_pending(&id, &request_id);
        let _ = state
            .hub
            .end(
                &session_id,
                lifeline_proto::agent::Party::System,
                "the jump client went offline",
            )
            .await;
        audit(
            &state,
            &a.user.username,
            ip,
            "jump.session",
            "unreachable",
            &format!("{id} {:?} {how}", row.name),
        )
        .await;
        return Err(ApiError::Conflict(
            "This jump client went offline just now: try again in a moment.".into(),
        ));
    }
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.session",
        "sent",
        &format!("{id} {:?} {how} session={session_id}", row.name),
    )
    .await;
    Ok(Json(JumpStarted {
        session_id,
        unattended,
    }))
}

/// The client answered `SessionFailed`: the session ends with its reason, shown to the rep.
pub async fn session_failed(state: &State, client_id: &str, request_id: &str, reason: &str) {
    let Some(p) = state.jump.take_pending(client_id, request_id) else {
        return;
    };
    let reason: String = lifeline_proto::sanitize_text(reason)
        .replace('\n', " ")
        .chars()
        .take(300)
        .collect();
    let _ = state
        .db
        .add_event(&p.session_id, "jump_failed", &reason)
        .await;
    let _ = state
        .hub
        .end(&p.session_id, lifeline_proto::agent::Party::System, &reason)
        .await;
    audit(
        state,
        &p.rep,
        std::net::IpAddr::from([127, 0, 0, 1]),
        "jump.session",
        "failed",
        &format!(
            "{client_id} {} session={} {reason:?}",
            if p.unattended { "unattended" } else { "asked" },
            p.session_id
        ),
    )
    .await;
}

/// The session agent of a jump connected with its ticket.
pub async fn session_joined(state: &State, session_id: &str, ip: std::net::IpAddr) {
    if let Some(p) = state.jump.take_pending_session(session_id) {
        audit(
            state,
            &p.rep,
            ip,
            "jump.session",
            "connected",
            &format!(
                "{} {} session={session_id}",
                p.client_id,
                if p.unattended { "unattended" } else { "asked" }
            ),
        )
        .await;
    }
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Teams {
    pub teams: Vec<String>,
}

/// A user's teams (administrators, or the user).
#[utoipa::path(get, path = "/api/v1/jump/users/{username}/teams", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = Teams),
              (status = 403, body = crate::web::error::ErrorBody), (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn user_teams(
    AxState(state): AxState<State>,
    a: Authed,
    Path(username): Path<String>,
) -> Result<Json<Teams>, ApiError> {
    if a.user.role != "admin" && !a.user.username.eq_ignore_ascii_case(&username) {
        return Err(ApiError::Forbidden);
    }
    let Some(user) = state.db.user_by_name(&username).await? else {
        return Err(ApiError::NotFound("there is no user with this name".into()));
    };
    Ok(Json(Teams {
        teams: store::teams_of(&state.db, user.id).await?,
    }))
}

/// Sets a user's teams (administrators): members of team `x` see jump clients of `team:x`
/// and the sessions waiting in the queue of team `x`.
#[utoipa::path(put, path = "/api/v1/jump/users/{username}/teams", request_body = Teams,
    security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = Teams), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody), (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn set_user_teams(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    Path(username): Path<String>,
    JsonBody(mut req): JsonBody<Teams>,
) -> Result<Json<Teams>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let Some(user) = state.db.user_by_name(&username).await? else {
        return Err(ApiError::NotFound("there is no user with this name".into()));
    };
    req.teams.sort();
    req.teams.dedup();
    if req.teams.len() > 50 || !req.teams.iter().all(|t| groups::valid_team(t)) {
        return Err(ApiError::BadRequest(
            "teams are at most 50 names of 1 to 48 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    store::set_teams(&state.db, user.id, &req.teams).await?;
    state.hub.set_teams(&user, &req.teams);
    audit(
        &state,
        &a.user.username,
        ip,
        "user.teams",
        "ok",
        &format!("{} {}", user.username, req.teams.join(",")),
    )
    .await;
    Ok(Json(req))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WakeResponse {
    pub client_id: String,
    pub online: bool,
}

/// Wakes a passive jump client and answers once it is connected.
#[utoipa::path(post, path = "/api/v1/jump/clients/{id}/wake", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WakeResponse), (status = 404, body = crate::web::error::ErrorBody),
              (status = 503, body = crate::web::error::ErrorBody, description = "it could not be reached or did not connect")))]
pub async fn wake_client(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<WakeResponse>, ApiError> {
    use super::wake::WakeError;
    // The same rule as the list, a jump and a rename: a client one may not see is not woken.
    visible_client(&state, &a.user, &id).await?;
    let result = state.jump.wake(&state.db, &id).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.wake",
        if result.is_ok() { "ok" } else { "failed" },
        &format!("{id}: {outcome}"),
    )
    .await;
    match result {
        Ok(_) => Ok(Json(WakeResponse {
            client_id: id,
            online: true,
        })),
        Err(WakeError::Store(e)) => Err(e.into()),
        Err(e @ (WakeError::NotFound(_) | WakeError::Removed(_))) => {
            Err(ApiError::NotFound(e.to_string()))
        }
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemoveResponse {
    pub client_id: String,
    /// "sent" (it was connected and was told to uninstall), "woken" (a passive client was
    /// woken to hear it) or "later" (it hears it at its next connection).
    pub uninstall: &'static str,
}

/// Removes a jump client; a connected one uninstalls itself (administrators).
#[utoipa::path(delete, path = "/api/v1/jump/clients/{id}", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RemoveResponse), (status = 403, body = crate::web::error::ErrorBody),
              (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn remove_client(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<RemoveResponse>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    let gone = || ApiError::NotFound("there is no such jump client (or it was removed)".into());
    if id.len() > 64 {
        return Err(gone());
    }
    let Some(row) = store::client(&state.db, &id).await? else {
        return Err(gone());
    };
    if !store::remove(&state.db, &id).await? {
        return Err(gone());
    }
    let uninstall = match state.jump.orders(&id) {
        Some(tx)
            if tx
                .try_send(Box::new(lifeline_proto::jump::RelayToJump::Uninstall))
                .is_ok() =>
        {
            "sent"
        }
        _ if row.mode == JumpMode::Passive.as_str() => {
            // Its woken link is refused (`Removed`), and it removes itself then.
            let jump = state.jump.clone();
            let db = state.db.clone();
            let id = id.clone();
            tokio::spawn(async move {
                if let Err(e) = jump.send_wake(&db, &id).await {
                    tracing::info!(client = %id, error = %e, "cannot wake a removed jump client");
                }
            });
            "woken"
        }
        _ => "later",
    };
    audit(
        &state,
        &a.user.username,
        ip,
        "jump.remove",
        "ok",
        &format!("{id} {:?} uninstall={uninstall}", row.name),
    )
    .await;
    Ok(Json(RemoveResponse {
        client_id: id,
        uninstall,
    }))
}
