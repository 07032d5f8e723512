//! The REST API (`/api/v1`): everything a representative clicks, for scripts and tests.
//! The OpenAPI document at `/api/v1/openapi.json` is generated from these handlers.

use axum::extract::{Path, Query, State as AxState};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use lifeline_proto::remote::{GrantState, Permission};
use lifeline_proto::ticket::TicketFile;
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error::ErrorBody;
use super::pages::check_login;
use super::portal::{self, Refusal};
use super::{ApiError, Authed, BEARER_TTL_S, ClientIp, Rep, State, audit};
use crate::auth;
use crate::clients::PLATFORMS;
use crate::db::{EventRow, MessageRow, SessionRow, StreamTotals, now_ms};
use crate::i18n::Lang;

pub fn router() -> Router<State> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/auth/token", post(token))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/session-keys", post(create_key))
        .route("/queues", get(queues))
        .route("/sessions", get(recent_sessions))
        .route("/sessions/{id}", get(session))
        .route("/sessions/{id}/accept", post(accept))
        .route("/sessions/{id}/messages", post(message))
        .route("/sessions/{id}/end", post(end))
        .route("/sessions/{id}/permissions", post(request_permission))
        .route("/sessions/{id}/files", get(crate::files::list))
        .route(
            "/sessions/{id}/files/content",
            get(crate::files::download).put(crate::files::upload),
        )
        .route(
            "/sessions/{id}/files/uploads",
            post(crate::files::prepare_upload),
        )
        .route("/sessions/{id}/files/folders", post(crate::files::make_dir))
        .route("/sessions/{id}/files/offers", get(crate::files::offers))
        .route(
            "/sessions/{id}/files/offers/{offer}",
            get(crate::files::offered),
        )
        .route(
            "/sessions/{id}/system-info",
            post(crate::tools::system_info),
        )
        .route(
            "/sessions/{id}/processes/{pid}/end",
            post(crate::tools::end_process),
        )
        .route("/sessions/{id}/install", post(crate::install::offer))
        .route(
            "/sessions/{id}/shells/{shell}/transcript",
            get(crate::shell::transcript),
        )
        .route("/tools", get(crate::tools::policy))
        .route("/portal/tickets", post(portal_ticket))
        .route("/audit", get(audit_log))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Lifeline API", version = "1.0.0", description = "Script the Lifeline support box: session keys, queues, sessions, chat, permissions for screen sharing."),
    paths(token, logout, me, super::appliance::status_json, super::appliance::panel_key, super::appliance::install_licence, create_key, queues, recent_sessions, session, accept, message, end, request_permission, crate::tools::system_info, crate::tools::end_process, crate::tools::policy, crate::shell::transcript, crate::files::list, crate::files::make_dir, crate::files::download, crate::files::offers, crate::files::offered, crate::files::prepare_upload, crate::files::upload, portal_ticket, audit_log, crate::buttons::create, crate::buttons::list, crate::buttons::targets, crate::buttons::revoke, crate::buttons::start_session, crate::install::offer,
        crate::jump::api::create_deploy_key, crate::jump::api::list_deploy_keys, crate::jump::api::revoke_deploy_key, crate::jump::api::installer, crate::jump::api::register, crate::jump::api::list_clients, crate::jump::api::update_client, crate::jump::api::jump, crate::jump::api::user_teams, crate::jump::api::set_user_teams, crate::jump::api::wake_client, crate::jump::api::remove_client),
    components(schemas(ErrorBody, TokenRequest, TokenResponse, Me, KeyRequest, KeyResponse, SessionDetail,
        MessageRequest, MessageCreated, TicketRequest, TicketResponse, Download, SessionList, QueueList,
        MessageRow, EventRow, PermissionRequest, PermissionState, StreamTotals, crate::tools::ToolPolicy, crate::tools::EndProcessRequest, crate::tools::EndProcessAnswer, crate::db::AuditRow, super::appliance::ApplianceReport,
        super::appliance::LicenceReport, super::appliance::Connected, super::appliance::ServiceReport,
        super::appliance::KeyPress, super::appliance::LicenceUpload, crate::jump::api::DeployKeyRequest, crate::jump::api::DeployKeyResponse, crate::jump::store::DeployKeyListed,
        crate::jump::api::RegistrationDoc, crate::jump::api::RegisteredDoc, crate::jump::api::ClientView,
        crate::jump::store::ClientRow, crate::jump::api::ClientUpdate, crate::jump::api::JumpStarted, crate::jump::api::Teams, crate::jump::api::WakeResponse, crate::jump::api::RemoveResponse,
        crate::buttons::ButtonRequest, crate::buttons::ButtonCreated,
        crate::buttons::ButtonRow, crate::buttons::ButtonStart, crate::buttons::ButtonTargets, crate::buttons::TeamTarget, crate::buttons::RepTarget, crate::buttons::ButtonExpired,
        crate::install::InstallRequest, crate::install::InstallAnswer)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Parses a JSON body with an error a person can read.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::BadRequest(format!(
                "The request body is not valid: {}",
                e.body_text()
            ))),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Exchanges a user name and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/token", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn token(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = check_login(&state, ip, req.username.trim(), &req.password, "api").await?;
    if let Err(e) = state.rep_seat(&user).await {
        audit(&state, &user.username, ip, "login", "no_seat", "api").await;
        return Err(e);
    }
    let token = auth::random_token(32);
    state
        .db
        .insert_auth_session(
            &auth::token_hash(&token),
            user.id,
            "bearer",
            "",
            now_ms() + BEARER_TTL_S * 1000,
        )
        .await?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: BEARER_TTL_S,
    }))
}

/// Ends the caller's login (the bearer token stops working) and gives a representative's
/// licence seat back.
#[utoipa::path(post, path = "/api/v1/auth/logout", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    a: Authed,
) -> Result<axum::http::StatusCode, ApiError> {
    if !a.via_cookie
        && let Some(token) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    {
        state
            .db
            .delete_auth_session(&auth::token_hash(token.trim()))
            .await?;
    }
    crate::licence::RepSeats(state.licence.clone())
        .release(&a.user.username)
        .await;
    audit(&state, &a.user.username, ip, "logout", "ok", "api").await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    username: String,
    display_name: String,
    role: String,
    /// The teams the caller belongs to (their team queues).
    teams: Vec<String>,
    /// Present for browser sessions: send it as `X-CSRF-Token` on changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    /// Present while the appliance runs on the evaluation licence: why (the console shows
    /// it in a banner).
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluation: Option<String>,
}

/// Who is calling.
#[utoipa::path(get, path = "/api/v1/me", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(AxState(state): AxState<State>, a: Authed) -> Json<Me> {
    let licence = state.licence.status().await.status;
    Json(Me {
        teams: state.hub.teams_of(a.user.id).to_vec(),
        username: a.user.username,
        display_name: a.user.display_name,
        role: a.user.role,
        csrf_token: a.via_cookie.then_some(a.csrf),
        evaluation: licence.evaluation.then(|| {
            licence
                .reason
                .unwrap_or_else(|| "No licence is installed.".into())
        }),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct KeyRequest {
    /// `personal` (default), `general` or `team` (with `team`).
    #[serde(default)]
    queue: Option<String>,
    /// For `queue: "team"`: one of the caller's teams (any team for administrators).
    #[serde(default)]
    team: Option<String>,
    /// Minutes the key may be used to start a session (1 to 1440, default 20).
    #[serde(default)]
    ttl_minutes: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyResponse {
    key: String,
    url: String,
    expires_at: String,
    email_subject: String,
    email_body: String,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Generates a 7-digit session key for the caller's personal queue, the general queue, or
/// the queue of one of the caller's teams.
#[utoipa::path(post, path = "/api/v1/session-keys", request_body = KeyRequest, security(("bearer" = [])),
    responses((status = 200, body = KeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_key(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    JsonBody(req): JsonBody<KeyRequest>,
) -> Result<Json<KeyResponse>, ApiError> {
    let queue = req.queue.as_deref().unwrap_or("personal");
    let team = match (queue, req.team.as_deref()) {
        ("personal" | "general", None) => None,
        ("team", Some(team)) => {
            let member = state.hub.teams_of(a.user.id).iter().any(|t| t == team);
            if !member && (a.user.role != "admin" || !state.db.team_known(team).await?.1) {
                return Err(ApiError::BadRequest(format!(
                    "you are not a member of the team `{team}`"
                )));
            }
            Some(team)
        }
        _ => {
            return Err(ApiError::BadRequest(
                "queue must be \"personal\", \"general\" or \"team\" (with \"team\": \"<name>\")"
                    .into(),
            ));
        }
    };
    let ttl = req.ttl_minutes.unwrap_or(20);
    if !(1..=1440).contains(&ttl) {
        return Err(ApiError::BadRequest(
            "ttl_minutes must be between 1 and 1440 (one day)".into(),
        ));
    }
    let expires_at = now_ms() + ttl * 60_000;
    let link_token = auth::random_token(16);
    let mut key = String::new();
    for _ in 0..20 {
        let candidate = format!("{:07}", rand::rngs::OsRng.gen_range(0..10_000_000u32));
        if state
            .db
            .insert_session_key(&candidate, &link_token, a.user.id, queue, team, expires_at)
            .await?
        {
            key = candidate;
            break;
        }
    }
    if key.is_empty() {
        return Err(ApiError::Conflict(
            "no free session key was found; try again".into(),
        ));
    }
    audit(
        &state,
        &a.user.username,
        ip,
        "session_key.create",
        "ok",
        &format!("queue={queue} ttl={ttl}"),
    )
    .await;
    let url = format!("{}/k/{}", state.public_url, link_token);
    let spaced = format!("{} {}", &key[..3], &key[3..]);
    let until = rfc3339(expires_at);
    let email_subject = format!("Remote support session with {}", a.user.display_name);
    let email_body = format!(
        "Hello,\n\nto start our remote support session, please open this link:\n{url}\n\n\
         Or go to {portal} and enter the session key {spaced}.\n\
         The key can be used once, until {until}.\n\n\
         You will download a small support program from our own support server. \
         I will only see or do what you allow, and you can end the session at any time.\n\n\
         {rep}\n{company}\n",
        portal = state.public_url,
        rep = a.user.display_name,
        company = state.config.company,
    );
    Ok(Json(KeyResponse {
        key,
        url,
        expires_at: until,
        email_subject,
        email_body,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    #[schema(value_type = Vec<Object>)]
    entries: Vec<lifeline_proto::console::QueueEntry>,
}

/// The queues the caller sees: general, their personal queue, and their active sessions.
#[utoipa::path(get, path = "/api/v1/queues", security(("bearer" = [])),
    responses((status = 200, body = QueueList), (status = 401, body = ErrorBody)))]
async fn queues(AxState(state): AxState<State>, Rep(a): Rep) -> Json<QueueList> {
    Json(QueueList {
        entries: state.hub.snapshot(&a.user),
    })
}

#[derive(Serialize, ToSchema)]
pub struct SessionDetail {
    id: String,
    /// `terms`, `waiting`, `active` or `ended`.
    state: String,
    queue: String,
    /// The team of a `team` queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    team: Option<String>,
    customer_name: String,
    computer: String,
    platform: String,
    language: String,
    remote_addr: String,
    created_at: i64,
    queued_at: Option<i64>,
    accepted_at: Option<i64>,
    /// Display name of the representative who accepted it.
    accepted_by: Option<String>,
    ended_at: Option<i64>,
    ended_by: Option<String>,
    end_reason: Option<String>,
    /// Whether the customer's client is connected right now.
    online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<MessageRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventRow>>,
    /// Every permission asked for or reported in this session, and where it stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<Vec<PermissionState>>,
    /// Screen-sharing traffic (open sessions: live figures; ended ones: as stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<StreamTotals>,
}

#[derive(Serialize, ToSchema)]
pub struct PermissionState {
    /// `view`, `control`, `clipboard`, `file_transfer`, `system_info`, `shell` or
    /// `elevated_shell`.
    permission: String,
    /// `requested`, `granted`, `denied` or `revoked`.
    state: String,
}

impl PermissionState {
    fn new(permission: Permission, state: GrantState) -> Self {
        let state = match state {
            GrantState::Requested => "requested",
            GrantState::Granted => "granted",
            GrantState::Denied => "denied",
            GrantState::Revoked => "revoked",
        };
        PermissionState {
            permission: permission.as_str().to_string(),
            state: state.to_string(),
        }
    }
}

async fn detail(state: &State, row: SessionRow, full: bool) -> Result<SessionDetail, ApiError> {
    let accepted_by = match (row.accepted_by, state.hub.row(&row.id)) {
        (Some(_), Some((_, name @ Some(_)))) => name,
        (Some(id), _) => state.db.user_by_id(id).await?.map(|u| u.display_name),
        (None, _) => None,
    };
    let (messages, events, permissions, stream) = if full {
        let events = state.db.events(&row.id).await?;
        let (permissions, stream) = match state.hub.room(&row.id) {
            Some(room) => (
                room.grants()
                    .into_iter()
                    .map(|g| PermissionState::new(g.permission, g.state))
                    .collect(),
                room.counters.totals(),
            ),
            None => (
                crate::view::grants_from_events(&events)
                    .into_iter()
                    .map(|(p, s)| PermissionState::new(p, s))
                    .collect(),
                state.db.stream_totals(&row.id).await?.unwrap_or_default(),
            ),
        };
        (
            Some(state.db.messages(&row.id).await?),
            Some(events),
            Some(permissions),
            Some(stream),
        )
    } else {
        (None, None, None, None)
    };
    Ok(SessionDetail {
        online: state.hub.is_online(&row.id),
        id: row.id,
        state: row.state,
        queue: row.queue,
        team: row.team,
        customer_name: row.customer_name,
        computer: row.computer,
        platform: row.platform,
        language: row.language,
        remote_addr: row.remote_addr,
        created_at: row.created_at,
        queued_at: row.queued_at,
        accepted_at: row.accepted_at,
        accepted_by,
        ended_at: row.ended_at,
        ended_by: row.ended_by,
        end_reason: row.end_reason,
        messages,
        events,
        permissions,
        stream,
    })
}

/// Loads a session the caller may read.
pub(crate) async fn readable(state: &State, id: &str, a: &Authed) -> Result<SessionRow, ApiError> {
    let not_found = || ApiError::NotFound("There is no session with this id.".into());
    if id.len() > 64 {
        return Err(not_found());
    }
    // Open sessions are answered from memory; ended ones from the database.
    let row = match state.hub.row(id) {
        Some((row, _)) => row,
        None => state.db.session(id).await?.ok_or_else(not_found)?,
    };
    let user = &a.user;
    let allowed = user.role == "admin"
        || row.accepted_by == Some(user.id)
        || row.owner_id == Some(user.id)
        || state.hub.visible_to(id, user).unwrap_or(false);
    if allowed { Ok(row) } else { Err(not_found()) }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionDetail>,
}

/// The caller's recent sessions (all sessions for administrators), newest first.
#[utoipa::path(get, path = "/api/v1/sessions", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "at most 200, default 50")),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
async fn recent_sessions(
    AxState(state): AxState<State>,
    Rep(a): Rep,
    Query(q): Query<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let who = (a.user.role != "admin").then_some(a.user.id);
    let mut sessions = Vec::new();
    for row in state.db.recent_sessions(who, limit).await? {
        sessions.push(detail(&state, row, false).await?);
    }
    Ok(Json(SessionList { sessions }))
}

/// One session with its chat transcript and events.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SessionDetail), (status = 404, body = ErrorBody)))]
async fn session(
    AxState(state): AxState<State>,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let row = readable(&state, &id, &a).await?;
    Ok(Json(detail(&state, row, true).await?))
}

/// Accepts a waiting session.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/accept", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SessionDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn accept(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    readable(&state, &id, &a).await?;
    state.hub.accept(&id, &a.user).await?;
    audit(&state, &a.user.username, ip, "session.accept", "ok", &id).await;
    let row = readable(&state, &id, &a).await?;
    Ok(Json(detail(&state, row, true).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct MessageRequest {
    text: String,
}

#[derive(Serialize, ToSchema)]
pub struct MessageCreated {
    id: i64,
    at: i64,
}

/// Sends a chat message to the customer.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/messages", request_body = MessageRequest, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = MessageCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn message(
    AxState(state): AxState<State>,
    Rep(a): Rep,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<MessageRequest>,
) -> Result<Json<MessageCreated>, ApiError> {
    let text = lifeline_proto::sanitize_text(&req.text);
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::BadRequest("The message is empty.".into()));
    }
    if text.chars().count() > lifeline_proto::MAX_CHAT_CHARS {
        return Err(ApiError::BadRequest(format!(
            "The message is longer than {} characters.",
            lifeline_proto::MAX_CHAT_CHARS
        )));
    }
    readable(&state, &id, &a).await?;
    let (id, at) = state.hub.rep_chat(&id, &a.user, text).await?;
    Ok(Json(MessageCreated { id, at }))
}

/// Ends a session.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/end", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SessionDetail), (status = 404, body = ErrorBody)))]
async fn end(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let row = readable(&state, &id, &a).await?;
    if row.state != "ended" {
        state.hub.rep_end(&id, &a.user).await?;
        audit(&state, &a.user.username, ip, "session.end", "ok", &id).await;
    }
    let row = readable(&state, &id, &a).await?;
    Ok(Json(detail(&state, row, true).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct PermissionRequest {
    /// `view`, `control` (needs `view` granted first), `clipboard`, `file_transfer`,
    /// `system_info`, `shell` or `elevated_shell`.
    permission: String,
}

/// Asks the customer for a permission. The customer's client shows the question; the answer
/// arrives on `/ws/console` (`permission` events) and in the session's `permissions`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/permissions", request_body = PermissionRequest,
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PermissionState), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the session is not active, the client is offline, `control` before `view`, or already granted")))]
async fn request_permission(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PermissionRequest>,
) -> Result<Json<PermissionState>, ApiError> {
    let permission = Permission::from_name(req.permission.trim()).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "\"{}\" is not a permission; use one of: {}.",
            req.permission.chars().take(40).collect::<String>(),
            Permission::ALL.map(Permission::as_str).join(", ")
        ))
    })?;
    readable(&state, &id, &a).await?;
    let granted = state
        .hub
        .request_permission(&id, &a.user, permission)
        .await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "session.permission",
        "requested",
        &format!("{id} {}", permission.as_str()),
    )
    .await;
    Ok(Json(PermissionState::new(permission, granted)))
}

#[derive(Deserialize, ToSchema)]
pub struct TicketRequest {
    key: String,
    #[serde(default)]
    name: String,
    /// `en`, `fr` or `de`; defaults to the Accept-Language header.
    #[serde(default)]
    language: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Download {
    platform: &'static str,
    label: &'static str,
    url: String,
    available: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TicketResponse {
    ticket_id: String,
    expires_at: String,
    /// The signed ticket file a client needs to connect.
    #[schema(value_type = Object)]
    ticket: TicketFile,
    downloads: Vec<Download>,
}

/// The portal step without a browser: a session key becomes a ticket and download links.
#[utoipa::path(post, path = "/api/v1/portal/tickets", request_body = TicketRequest,
    responses((status = 200, body = TicketResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn portal_ticket(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<TicketRequest>,
) -> Result<Json<TicketResponse>, ApiError> {
    let lang = Lang::negotiate(
        req.language.as_deref(),
        headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let ticket = match portal::redeem_key(&state, ip, &req.key, &req.name, lang).await? {
        Ok(t) => t,
        Err(r) => {
            let msg = r.text(Lang::En.t()).to_string();
            return Err(match r {
                Refusal::Limited => ApiError::RateLimited,
                Refusal::Format => ApiError::BadRequest(msg),
                Refusal::Wrong | Refusal::RepGone => ApiError::NotFound(msg),
                Refusal::Expired | Refusal::Used => ApiError::Conflict(msg),
            });
        }
    };
    let downloads = PLATFORMS
        .iter()
        .map(|p| Download {
            platform: p.id,
            label: p.label,
            url: format!("{}/download/{}/{}", state.public_url, ticket.id, p.id),
            available: state.clients.available(p),
        })
        .collect();
    Ok(Json(TicketResponse {
        ticket_id: ticket.id.clone(),
        expires_at: rfc3339(ticket.expires_at),
        ticket: portal::ticket_file(&state, &ticket),
        downloads,
    }))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    limit: Option<i64>,
}

/// The audit log, newest first (administrators only).
#[utoipa::path(get, path = "/api/v1/audit", security(("bearer" = [])),
    params(("action" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Vec<crate::db::AuditRow>), (status = 403, body = ErrorBody)))]
async fn audit_log(
    AxState(state): AxState<State>,
    a: Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<crate::db::AuditRow>>, ApiError> {
    if a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(
        state
            .db
            .audit_log(q.action.as_deref(), q.limit.unwrap_or(100).clamp(1, 1000))
            .await?,
    ))
}
