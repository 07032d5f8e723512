//! Session tools inside the relay: the admin policy that decides which tools representatives
//! may use, and the system-information requests.
//!
//! # Policy
//! `[tools]` in `relay.toml` ([`ToolPolicy`]): `system_info`, `shell`, `elevated_shell` and
//! `install` (offering a jump client or a support button from a session, [`crate::install`]),
//! each `true` by default. A tool that is off is refused by the API for everyone and hidden
//! in the console (`GET /api/v1/tools`).
//!
//! # System information
//! `POST /api/v1/sessions/{id}/system-info` (the representative who accepted the session,
//! or an admin; `system_info` granted by the customer): the relay records the request as a
//! session event, sends [`RelayToAgent::SystemInfoRequest`] with a fresh request number and
//! waits (at most [`REPORT_TIMEOUT`]) for the agent's parts, which the agent link hands to
//! [`SysInfoRequests::part`]. The parts are put together in order (bounded by
//! [`lifeline_proto::tools::MAX_REPORT_BYTES`]), checked with
//! [`lifeline_proto::tools::decode_report`] and re-encoded, so the console only ever gets a
//! report that keeps every bound; the answer (with its size) or the failure is recorded as a
//! session event too, and audited.
//!
//! # Ending a process
//! `POST /api/v1/sessions/{id}/processes/{pid}/end` with the process's `name` from the
//! report (same rights, `system_info` granted): recorded as a session event, sent as
//! [`RelayToAgent::EndProcess`]; the customer answers in the client (no answer within the
//! client's time is a refusal) and the outcome (`ended`, `refused`, `not_found`, `failed`)
//! is recorded, audited and returned. At most [`MAX_END_REQUESTS`] wait per session.
//!
//! Limits: one report at a time per session (a second request meanwhile is refused); parts
//! of a request nobody waits for any more (timed out, or sent after a reconnection) are
//! dropped; reports are not stored, only their events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lifeline_proto::agent::RelayToAgent;
use lifeline_proto::remote::{GrantState, Permission};
use lifeline_proto::tools::{EndOutcome, MAX_PROCESS_NAME_CHARS, ReportAssembler, decode_report};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::web::error::ApiError;
use crate::web::{ClientIp, Rep, State, audit};

/// How long a representative waits for a report.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a representative waits for the customer's answer to ending a process (the
/// client refuses by itself after 60 s).
pub const END_TIMEOUT: Duration = Duration::from_secs(90);
/// Most requests to end a process waiting per session.
pub const MAX_END_REQUESTS: usize = 4;

/// Which tools representatives may use (`[tools]` in `relay.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPolicy {
    pub system_info: bool,
    pub shell: bool,
    pub elevated_shell: bool,
    /// Offering to install a jump client or a support button from a session.
    pub install: bool,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self {
            system_info: true,
            shell: true,
            elevated_shell: true,
            install: true,
        }
    }
}

/// One report being waited for.
struct Pending {
    request: u32,
    assembler: ReportAssembler,
    reply: oneshot::Sender<Result<String, String>>,
}

/// The system-information requests waiting for their agent, one per session at most, and
/// the requests to end a process waiting for the customer.
#[derive(Default)]
pub struct SysInfoRequests {
    next: AtomicU32,
    pending: Mutex<HashMap<String, Pending>>,
    /// (session, request) → the representative's waiting handler.
    ends: Mutex<EndWaiters>,
}

/// A customer's answer to a question the relay put through the agent, with its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAnswer {
    End(EndOutcome),
    Install(lifeline_proto::install::InstallOutcome),
}

/// (session, request) → where the answer to a question (ending a process, installing) goes.
type EndWaiters = HashMap<(String, u32), oneshot::Sender<(AgentAnswer, String)>>;

/// Removes a waiting question when its handler ends.
pub struct EndWaiting<'a> {
    requests: &'a SysInfoRequests,
    pub key: (String, u32),
}

impl Drop for EndWaiting<'_> {
    fn drop(&mut self) {
        self.requests.ends_lock().remove(&self.key);
    }
}

impl std::fmt::Debug for SysInfoRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysInfoRequests").finish_non_exhaustive()
    }
}

/// Removes a session's pending request when the waiting handler ends, however it ends.
struct Waiting<'a> {
    requests: &'a SysInfoRequests,
    session_id: String,
    request: u32,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut p = self.requests.lock();
        if p.get(&self.session_id).map(|w| w.request) == Some(self.request) {
            p.remove(&self.session_id);
        }
    }
}

impl SysInfoRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request; `None` while another one of this session is open.
    fn open(
        &self,
        session_id: &str,
    ) -> Option<(Waiting<'_>, oneshot::Receiver<Result<String, String>>)> {
        let mut p = self.lock();
        if p.contains_key(session_id) {
            return None;
        }
        let request = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        p.insert(
            session_id.to_string(),
            Pending {
                request,
                assembler: ReportAssembler::new(),
                reply: tx,
            },
        );
        Some((
            Waiting {
                requests: self,
                session_id: session_id.to_string(),
                request,
            },
            rx,
        ))
    }

    /// A part of a report from the agent of `session_id`.
    pub fn part(&self, session_id: &str, request: u32, part: u32, last: bool, data: &str) {
        let mut p = self.lock();
        let Some(w) = p.get_mut(session_id).filter(|w| w.request == request) else {
            tracing::debug!(
                session = session_id,
                request,
                "a report part nobody waits for"
            );
            return;
        };
        let assembled = w.assembler.push(part, last, data);
        if let Ok(None) = assembled {
            return;
        }
        let Some(w) = p.remove(session_id) else {
            return;
        };
        // Check the whole report without holding the lock (it may be megabytes).
        drop(p);
        let invalid = |e: &dyn std::fmt::Display| {
            format!("the customer's client sent a report that is not valid: {e}")
        };
        let outcome = match assembled {
            Ok(Some(text)) => decode_report(text.as_bytes())
                .map(|r| lifeline_proto::encode(&r))
                .map_err(|e| invalid(&e)),
            Ok(None) => return,
            Err(e) => Err(invalid(&e)),
        };
        let _ = w.reply.send(outcome);
    }

    fn ends_lock(&self) -> std::sync::MutexGuard<'_, EndWaiters> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a question for the customer (ending a process, installing); `None` when too
    /// many wait for this session.
    pub fn open_question(
        &self,
        session_id: &str,
    ) -> Option<(EndWaiting<'_>, oneshot::Receiver<(AgentAnswer, String)>)> {
        let mut ends = self.ends_lock();
        if ends.keys().filter(|(s, _)| s == session_id).count() >= MAX_END_REQUESTS {
            return None;
        }
        let request = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        let key = (session_id.to_string(), request);
        ends.insert(key.clone(), tx);
        Some((
            EndWaiting {
                requests: self,
                key,
            },
            rx,
        ))
    }

    /// The agent of `session_id` tells what became of question `request`.
    pub fn answered(&self, session_id: &str, request: u32, outcome: AgentAnswer, message: &str) {
        if let Some(tx) = self.ends_lock().remove(&(session_id.to_string(), request)) {
            let message = lifeline_proto::sanitize_text(message);
            let _ = tx.send((outcome, message.trim().to_string()));
        }
    }

    /// The agent of `session_id` cannot give the report.
    pub fn failed(&self, session_id: &str, request: u32, reason: &str) {
        let mut p = self.lock();
        if p.get(session_id).map(|w| w.request) == Some(request)
            && let Some(w) = p.remove(session_id)
        {
            let reason = lifeline_proto::sanitize_text(reason);
            let _ = w.reply.send(Err(format!(
                "the customer's computer could not give the report: {}",
                reason.trim()
            )));
        }
    }
}

/// The tools policy, for the console.
#[utoipa::path(get, path = "/api/v1/tools", security(("bearer" = [])),
    responses((status = 200, body = ToolPolicy)))]
pub async fn policy(AxState(state): AxState<State>, Rep(_rep): Rep) -> Json<ToolPolicy> {
    Json(state.config.tools)
}

/// Asks the customer's computer for its system-information report (JSON as in
/// `lifeline_proto::tools::SystemReport`).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/system-info", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the report"), (status = 403, body = crate::web::error::ErrorBody),
              (status = 404, body = crate::web::error::ErrorBody),
              (status = 409, body = crate::web::error::ErrorBody, description = "not granted, offline, or a report is already on its way"),
              (status = 503, body = crate::web::error::ErrorBody, description = "the customer's computer gave no report")))]
pub async fn system_info(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.config.tools.system_info {
        return Err(ApiError::Forbidden);
    }
    let room = state.hub.viewer_room(&id, &a.user)?;
    if room.grant(Permission::SystemInfo) != Some(GrantState::Granted) {
        return Err(ApiError::Conflict(
            "the customer has not allowed system information: ask for it first".into(),
        ));
    }
    let requests = &state.hub.sysinfo;
    let (waiting, rx) = requests.open(&id).ok_or_else(|| {
        ApiError::Conflict("a system-information report is already on its way".into())
    })?;
    state.hub.send_to_agent(
        &id,
        RelayToAgent::SystemInfoRequest {
            request: waiting.request,
        },
    )?;
    state
        .db
        .add_event(
            &id,
            "system_info_requested",
            &format!("asked by {}", a.user.display_name),
        )
        .await?;
    let outcome = match tokio::time::timeout(REPORT_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the customer's client went away".to_string()),
        Err(_) => Err(format!(
            "the customer's computer gave no report within {} s",
            REPORT_TIMEOUT.as_secs()
        )),
    };
    drop(waiting);
    match outcome {
        Ok(json) => {
            let summary = summary(&json);
            state
                .db
                .add_event(&id, "system_info_received", &summary)
                .await?;
            audit(
                &state,
                &a.user.username,
                ip,
                "session.system_info",
                "ok",
                &format!("{id} {summary}"),
            )
            .await;
            Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
        }
        Err(reason) => {
            state
                .db
                .add_event(&id, "system_info_failed", &reason)
                .await?;
            audit(
                &state,
                &a.user.username,
                ip,
                "session.system_info",
                "failed",
                &format!("{id} {reason}"),
            )
            .await;
            Err(ApiError::Unavailable(reason))
        }
    }
}

/// The process to end.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EndProcessRequest {
    /// The process's name as the report showed it (the customer's computer checks it, so a
    /// reused process id is not ended by mistake).
    name: String,
}

/// What became of a request to end a process.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndProcessAnswer {
    pid: u32,
    /// `ended`, `refused`, `not_found` or `failed`.
    outcome: String,
    /// A sentence from the customer's computer.
    message: String,
}

/// Asks the customer whether a process may be ended, and ends it if they agree. Answers
/// when the customer has (or the question has run out of time).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/processes/{pid}/end", security(("bearer" = [])),
    request_body = EndProcessRequest,
    params(("id" = String, Path), ("pid" = u32, Path)),
    responses((status = 200, body = EndProcessAnswer), (status = 403, body = crate::web::error::ErrorBody),
              (status = 404, body = crate::web::error::ErrorBody),
              (status = 409, body = crate::web::error::ErrorBody, description = "not granted, offline, or too many questions waiting"),
              (status = 503, body = crate::web::error::ErrorBody, description = "no answer from the customer's computer")))]
pub async fn end_process(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path((id, pid)): Path<(String, u32)>,
    crate::web::api::JsonBody(req): crate::web::api::JsonBody<EndProcessRequest>,
) -> Result<Json<EndProcessAnswer>, ApiError> {
    if !state.config.tools.system_info {
        return Err(ApiError::Forbidden);
    }
    let name = lifeline_proto::sanitize_text(req.name.trim());
    if name.is_empty() || name.chars().count() > MAX_PROCESS_NAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "give the process's name as the report shows it (1 to {MAX_PROCESS_NAME_CHARS} characters)"
        )));
    }
    let room = state.hub.viewer_room(&id, &a.user)?;
    if room.grant(Permission::SystemInfo) != Some(GrantState::Granted) {
        return Err(ApiError::Conflict(
            "the customer has not allowed system information: ask for it first".into(),
        ));
    }
    let requests = &state.hub.sysinfo;
    let (waiting, rx) = requests.open_question(&id).ok_or_else(|| {
        ApiError::Conflict("too many questions are waiting for the customer".into())
    })?;
    state.hub.send_to_agent(
        &id,
        RelayToAgent::EndProcess {
            request: waiting.key.1,
            pid,
            name: name.clone(),
            rep: a.user.display_name.clone(),
        },
    )?;
    state
        .db
        .add_event(
            &id,
            "process_end_requested",
            &format!("{pid} ({name}), asked by {}", a.user.display_name),
        )
        .await?;
    let outcome = match tokio::time::timeout(END_TIMEOUT, rx).await {
        Ok(Ok((AgentAnswer::End(o), m))) => Ok((o, m)),
        Ok(Ok(_)) => Err("the customer's client answered another question".to_string()),
        Ok(Err(_)) => Err("the customer's client went away".to_string()),
        Err(_) => Err(format!(
            "the customer's computer gave no answer within {} s",
            END_TIMEOUT.as_secs()
        )),
    };
    drop(waiting);
    let (outcome, message) = match outcome {
        Ok(r) => r,
        Err(reason) => {
            state
                .db
                .add_event(
                    &id,
                    "process_end_failed",
                    &format!("{pid} ({name}): {reason}"),
                )
                .await?;
            return Err(ApiError::Unavailable(reason));
        }
    };
    let kind = match outcome {
        EndOutcome::Ended => "process_ended",
        EndOutcome::Refused => "process_end_refused",
        EndOutcome::NotFound | EndOutcome::Failed => "process_end_failed",
    };
    state
        .db
        .add_event(&id, kind, &format!("{pid} ({name}): {message}"))
        .await?;
    audit(
        &state,
        &a.user.username,
        ip,
        "session.end_process",
        outcome.as_str(),
        &format!("{id} {pid} ({name})"),
    )
    .await;
    Ok(Json(EndProcessAnswer {
        pid,
        outcome: outcome.as_str().to_string(),
        message,
    }))
}

/// "412 processes, 61 services, 1804 packages, 389 KB".
fn summary(json: &str) -> String {
    match decode_report(json.as_bytes()) {
        Ok(r) => format!(
            "{} processes, {} services, {} packages, {} KB, gathered in {} ms",
            r.processes.len(),
            r.services.len(),
            r.packages.len(),
            json.len().div_ceil(1024),
            r.took_ms
        ),
        Err(_) => format!("{} KB", json.len().div_ceil(1024)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_proto::tools::{SystemReport, report_chunks};

    #[test]
    fn parts_make_a_report_and_strays_are_dropped() {
        let r = SysInfoRequests::default();
        let (w, mut rx) = r.open("s1").unwrap();
        assert!(r.open("s1").is_none(), "one at a time per session");
        let json = lifeline_proto::encode(&SystemReport::default());
        r.part("s1", w.request + 7, 0, true, &json);
        assert!(rx.try_recv().is_err(), "a stray request number is ignored");
        let parts = report_chunks(&json);
        for (i, p) in parts.iter().enumerate() {
            r.part("s1", w.request, i as u32, i + 1 == parts.len(), p);
        }
        assert_eq!(rx.try_recv().unwrap().unwrap(), json);
        drop(w);
        let (w, mut rx) = r.open("s1").unwrap();
        r.part("s1", w.request, 1, true, "{}");
        assert!(rx.try_recv().unwrap().is_err(), "parts out of order");
        drop(w);
        let (w, mut rx) = r.open("s1").unwrap();
        r.failed("s1", w.request, "busy\u{1b}[31m");
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err(),
            "the customer's computer could not give the report: busy[31m"
        );
    }
}
