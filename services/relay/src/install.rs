//! Installing a jump client or a support button from a running session, with the customer's
//! consent (see [`lifeline_proto::install`]).
//!
//! `POST /api/v1/sessions/{id}/install` (the representative who accepted the session, or an
//! admin; `[tools] install` on) with `what`:
//! * `jump_client`: the relay makes a deployment key for this one computer (one use, valid an
//!   hour, in the group asked for — the representative's personal group by default) and
//!   offers it; once the customer agrees, the client installs itself from its own program,
//!   registers with its own key pair and appears in the jump list.
//! * `support_button`: the relay makes a support button for the representative's personal
//!   queue (it works for `[buttons] session_lifetime_days`, 365 by default) and offers it;
//!   once the customer agrees, the button is on their desktop.
//!
//! The offer, the customer's answer and the outcome are session events and audited; the
//! call answers when the customer's computer has (or after [`INSTALL_TIMEOUT`]). A key or
//! button made for an offer the customer refused is withdrawn at once.

use axum::Json;
use axum::extract::{Path, State as AxState};
use lifeline_proto::agent::RelayToAgent;
use lifeline_proto::install::{InstallKind, InstallOutcome};
use lifeline_proto::jump::JumpMode;
use lifeline_proto::ticket::{TicketFile, TicketKind};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::db::{Stmt, now_ms};
use crate::jump::store::{self, NewDeployKey};
use crate::tools::AgentAnswer;
use crate::web::error::ApiError;
use crate::web::{ClientIp, Rep, State, audit};

/// How long the representative waits for the outcome (the customer has 60 s to answer, and
/// registering a jump client takes a round trip).
pub const INSTALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// How long a deployment key made for one offer stays valid.
const OFFER_KEY_MS: i64 = 3600 * 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// `jump_client` or `support_button`.
    #[schema(value_type = String)]
    pub what: InstallKind,
    /// For a jump client: `personal` (default), `general` or `team:<name>`.
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstallAnswer {
    /// `installed`, `refused` or `failed`.
    pub outcome: &'static str,
    /// A sentence from the customer's computer.
    pub message: String,
}

/// The group a jump client installed from a session joins.
fn jump_group(asked: Option<&str>, username: &str) -> Result<String, ApiError> {
    match asked.unwrap_or("personal") {
        "personal" => Ok(format!("personal:{username}")),
        "general" => Ok("general".into()),
        g if g.starts_with("team:") && g.len() > 5 && g.len() <= 64 => Ok(g.to_string()),
        _ => Err(ApiError::BadRequest(
            "group must be \"personal\", \"general\" or \"team:<name>\"".into(),
        )),
    }
}

/// Offers the customer to install a jump client or a support button.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/install", security(("bearer" = [])),
    request_body = InstallRequest, params(("id" = String, Path)),
    responses((status = 200, body = InstallAnswer), (status = 400, body = crate::web::error::ErrorBody),
              (status = 403, body = crate::web::error::ErrorBody), (status = 404, body = crate::web::error::ErrorBody),
              (status = 409, body = crate::web::error::ErrorBody, description = "offline, or too many questions waiting"),
              (status = 503, body = crate::web::error::ErrorBody, description = "no answer from the customer's computer")))]
pub async fn offer(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
    crate::web::api::JsonBody(req): crate::web::api::JsonBody<InstallRequest>,
) -> Result<Json<InstallAnswer>, ApiError> {
    if !state.config.tools.install {
        return Err(ApiError::Forbidden);
    }
    // Only the representative in the session (or an admin) may offer.
    state.hub.viewer_room(&id, &a.user)?;
    let now = now_ms();
    // The secret of the offer, and how to withdraw it when it is not used.
    let (secret, expires_at, withdraw, what) = match req.what {
        InstallKind::JumpClient => {
            let group = jump_group(req.group.as_deref(), &a.user.username)?;
            let key = format!("dk_{}", auth::random_token(24));
            let hash = auth::token_hash(&key);
            store::insert_deploy_key(
                &state.db,
                NewDeployKey {
                    key_hash: &hash,
                    label: &format!("session {id}"),
                    group: &group,
                    mode: JumpMode::Active,
                    valid_until: now + OFFER_KEY_MS,
                    uses: 1,
                    created_by: a.user.id,
                },
            )
            .await?;
            let withdraw = Stmt::new(
                "UPDATE jump_deploy_keys SET uses_left = 0 WHERE key_hash = ?",
                vec![hash.into()],
            );
            (
                key,
                now + OFFER_KEY_MS,
                withdraw,
                format!("jump client ({group})"),
            )
        }
        InstallKind::SupportButton => {
            let button_id = auth::random_token(8);
            let token = format!("sb_{}", auth::random_token(24));
            let expires_at = now + state.config.button_lifetime.as_millis() as i64;
            state
                .db
                .write(vec![Stmt::new(
                    "INSERT INTO support_buttons (id, token_hash, label, queue, rep_id, expires_at, created_by, created_at)
                     VALUES (?, ?, ?, 'personal', ?, ?, ?, ?)",
                    vec![
                        button_id.as_str().into(),
                        auth::token_hash(&token).into(),
                        format!("session {id}").into(),
                        a.user.id.into(),
                        expires_at.into(),
                        a.user.id.into(),
                        now.into(),
                    ],
                )])
                .await?;
            let withdraw = Stmt::new(
                "UPDATE support_buttons SET revoked_at = ? WHERE id = ?",
                vec![now.into(), button_id.as_str().into()],
            );
            (token, expires_at, withdraw, "support button".to_string())
        }
    };
    let ticket = TicketFile {
        site_url: state.public_url.clone(),
        cert_sha256: state.pin.clone(),
        ticket: secret,
        expires_at,
        language: String::new(),
        customer_name: String::new(),
        site_name: state.config.company.clone(),
        kind: match req.what {
            InstallKind::JumpClient => TicketKind::JumpInstall,
            InstallKind::SupportButton => TicketKind::Button,
        },
    };
    let requests = &state.hub.sysinfo;
    let Some((waiting, rx)) = requests.open_question(&id) else {
        state.db.write(vec![withdraw]).await?;
        return Err(ApiError::Conflict(
            "too many questions are waiting for the customer".into(),
        ));
    };
    let sent = state.hub.send_to_agent(
        &id,
        RelayToAgent::Install {
            request: waiting.key.1,
            what: req.what,
            ticket,
            rep: a.user.display_name.clone(),
        },
    );
    if let Err(e) = sent {
        state.db.write(vec![withdraw]).await?;
        return Err(e.into());
    }
    state
        .db
        .add_event(
            &id,
            "install_offered",
            &format!("{what}, offered by {}", a.user.display_name),
        )
        .await?;
    let answer = match tokio::time::timeout(INSTALL_TIMEOUT, rx).await {
        Ok(Ok((AgentAnswer::Install(o), m))) => Ok((o, m)),
        Ok(Ok(_)) => Err("the customer's client answered another question".to_string()),
        Ok(Err(_)) => Err("the customer's client went away".to_string()),
        Err(_) => Err(format!(
            "the customer's computer gave no answer within {} s",
            INSTALL_TIMEOUT.as_secs()
        )),
    };
    drop(waiting);
    let (outcome, message) = match answer {
        Ok(r) => r,
        Err(reason) => (InstallOutcome::Failed, reason),
    };
    if outcome != InstallOutcome::Installed {
        state.db.write(vec![withdraw]).await?;
    }
    let kind = match outcome {
        InstallOutcome::Installed => "installed",
        InstallOutcome::Refused => "install_refused",
        InstallOutcome::Failed => "install_failed",
    };
    state
        .db
        .add_event(&id, kind, &format!("{what}: {message}"))
        .await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "session.install",
        outcome.as_str(),
        &format!("{id} {what}"),
    )
    .await;
    Ok(Json(InstallAnswer {
        outcome: outcome.as_str(),
        message,
    }))
}
