//! The jump routes of the REST API (`/api/v1/jump/...`) and the installer download.
//!
//! * `POST /api/v1/jump/deploy-keys` (administrators): a deployment key — label, group,
//!   mode, valid until (1 hour to 5 years), uses (1 to 100,000). The key is shown once, with
//!   the installer's address; only its hash is kept. A key is 24 random bytes, so neither
//!   route below needs an attempt limit (a mass deployment behind one address registers
//!   thousands of machines quickly).
//! * `GET /jump/installer/{key}/{platform}`: the stock client with a `jump_install` ticket
//!   whose `ticket` is the deployment key (the key is the authorisation, like a download
//!   link; it is not spent by downloading).
//! * `POST /api/v1/jump/register` (no login; the deployment key authorises it): records the
//!   client and its public key; refusals are audited.
//! * `GET /api/v1/jump/clients?search=` (representatives): the clients with their online
//!   state and last seen.
//! * `POST /api/v1/jump/clients/{id}/wake` (representatives; audited): wakes a passive client
//!   ([`super::Jumps::wake`]) and answers once it is connected (at most 30 s).
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

use super::store::{self, ClientRow, NewClient, NewDeployKey};
use crate::auth;
use crate::clients;
use crate::db::now_ms;
use crate::web::api::JsonBody;
use crate::web::{ApiError, Authed, ClientIp, Rep, State, audit};

/// Longest lifetime of a deployment key: five years.
pub const MAX_KEY_LIFETIME_MS: i64 = 5 * 366 * 24 * 3600 * 1000;

pub fn router() -> Router<State> {
    Router::new()
        .route("/deploy-keys", post(create_deploy_key))
        .route("/register", post(register))
        .route("/clients", get(list_clients))
        .route("/clients/{id}", axum::routing::delete(remove_client))
        .route("/clients/{id}/wake", post(wake_client))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployKeyRequest {
    #[serde(default)]
    pub label: String,
    /// "general" (default), "team:<name>" or "personal".
    #[serde(default)]
    pub group: Option<String>,
    pub mode: JumpMode,
    /// Minutes the key stays valid (60 to five years).
    pub valid_minutes: i64,
    pub uses: i64,
}

#[derive(Debug, Serialize)]
pub struct DeployKeyResponse {
    pub key: String,
    pub group: String,
    pub valid_until: i64,
    pub uses: i64,
    /// Installer address per platform id (e.g. `linux-x86_64`).
    pub installers: Vec<(String, String)>,
}

async fn create_deploy_key(
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
        key,
        group,
        valid_until,
        uses: req.uses,
        installers,
    }))
}

/// The installer: the stock client with a `jump_install` ticket.
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

async fn register(
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
        heartbeat_s: super::HEARTBEAT_S,
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

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub search: String,
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct ClientView {
    #[serde(flatten)]
    pub row: ClientRow,
    pub online: bool,
}

async fn list_clients(
    AxState(state): AxState<State>,
    Rep(_a): Rep,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    let search: String = q.search.chars().take(120).collect();
    let rows = store::list(&state.db, &search, q.limit.unwrap_or(500).clamp(1, 5000)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|mut row| {
                let since = state.jump.online_since(&row.id);
                if since.is_some() {
                    row.last_seen = Some(now_ms());
                }
                ClientView {
                    row,
                    online: since.is_some(),
                }
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize)]
pub struct WakeResponse {
    pub client_id: String,
    pub online: bool,
}

async fn wake_client(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Json<WakeResponse>, ApiError> {
    use super::wake::WakeError;
    if id.len() > 64 {
        return Err(ApiError::NotFound("there is no such jump client".into()));
    }
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

#[derive(Debug, Serialize)]
pub struct RemoveResponse {
    pub client_id: String,
    /// "sent" (it was connected and was told to uninstall), "woken" (a passive client was
    /// woken to hear it) or "later" (it hears it at its next connection).
    pub uninstall: &'static str,
}

async fn remove_client(
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
