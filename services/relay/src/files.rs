//! File transfer through the relay: the representative's HTTP requests become file
//! requests to the customer's agent, and file bytes stream through without being stored.
//!
//! # Routes (`/api/v1/sessions/{id}/files...`, the representative who accepted the session
//! or an admin, while the customer's `file_transfer` grant stands)
//! * `GET  .../files?path=P` — a folder listing (JSON);
//! * `GET  .../files/content?path=P` — the file's bytes, streamed from the agent. The
//!   `X-Lifeline-Sha256` header carries the SHA-256 the agent computed before sending;
//!   `Range: bytes=N-` resumes at N (the answer is then 206). A download that started at 0 is
//!   hashed on the way and cut off (the browser sees a failed download) if the bytes do not
//!   match.
//! * `POST .../files/uploads` `{path, size, sha256, overwrite}` — prepares an upload: the
//!   answer's `offset` is how much the agent already holds (resume), 409 when the file exists
//!   and `overwrite` was not confirmed;
//! * `PUT  .../files/content?path=P&size=S&sha256=H&offset=O&overwrite=B` — the bytes from
//!   `O` on. Bytes the agent already has are skipped; the answer comes after the agent
//!   verified the whole file and gave it its name (200 `{path,size,sha256}`).
//! * `POST .../files/folders` `{path}` — makes a folder (uploading a folder).
//! * `GET  .../files/offers` — the files the customer sent from the client window
//!   (`{offers: [{id, name, size, sha256, at}]}`, each also a `file_offered` event);
//!   `GET .../files/offers/{offer}` streams one like a download (by its id only).
//!
//! # Resuming
//! When the agent's link drops mid-transfer, the request waits (up to [`RECONNECT_WAIT`]) for
//! the agent to come back and asks again from where it stopped: a download from the next
//! byte the browser needs, an upload from what the agent acknowledged (the relay keeps the
//! unacknowledged window, at most `WINDOW` bytes, to send again). When the relay itself
//! restarts the HTTP request fails; the browser resumes with `Range` (download) or asks
//! `uploads` for the offset (upload).
//!
//! # Fairness
//! At most `WINDOW` bytes of a transfer are in flight on the agent's link; file frames to
//! the agent go through a short queue of their own that the agent socket serves after its
//! control messages.
//!
//! # Folders
//! There is no folder route besides `folders`: the console moves a whole folder as its
//! files (listing each folder, then one verified download or upload per file, each recorded
//! on its own; see `assets/files.js`), so every guarantee of a single file holds for each.
//!
//! # The shared folder
//! The listing's `root` is the name of the folder the customer shares (its last component).
//! When the customer allows file transfer the agent says whether they limited it to one
//! folder; that becomes a `file_share` session event (`{"scope":"one_folder","folder":
//! NAME}` or `{"scope":"home"}`).
//!
//! # Policy and record
//! The relay configuration's `[files]` section ([`FilePolicy`]) decides whether file transfer
//! may be used, in which directions, and up to which size. Every completed transfer becomes
//! a `file_transferred` session event (direction, path, size, SHA-256) and an audit line.
//!
//! Limits: one relay process; the relay never writes file bytes to disk.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use lifeline_proto::agent::RelayToAgent;
use lifeline_proto::files::{
    Chunk, FileErrorCode, FileReply, FileRequest, MAX_CHUNK, WINDOW, check_path,
};
use lifeline_proto::frame::{self, Channel};
use lifeline_proto::remote::{GrantState, Permission};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::web::{ClientIp, Rep, State, audit};

/// How long a transfer waits for the customer's client to come back.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(90);
/// How long the agent may take to answer (hashing a large file takes a while).
const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// File frames queued for one agent link.
pub const AGENT_FILE_QUEUE: usize = 8;

/// What the admin allows (`[files]` in `relay.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePolicy {
    /// Whether representatives may use file transfer at all.
    pub enabled: bool,
    /// Representative → customer.
    pub upload: bool,
    /// Customer → representative.
    pub download: bool,
    /// Largest file, in MiB (0: no limit).
    pub max_size_mb: u64,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            upload: true,
            download: true,
            max_size_mb: 0,
        }
    }
}

impl FilePolicy {
    fn max_bytes(&self) -> u64 {
        if self.max_size_mb == 0 {
            u64::MAX
        } else {
            self.max_size_mb.saturating_mul(1024 * 1024)
        }
    }
}

/// Something for the agent's socket.
#[derive(Debug)]
pub enum ToAgent {
    Text(RelayToAgent),
    Binary(Bytes),
}

/// Something from the agent for one transfer.
#[derive(Debug)]
enum Incoming {
    Reply(FileReply),
    /// A whole file frame.
    Chunk(Bytes),
    /// The agent's link dropped.
    Lost,
}

/// File transfer state of every open session.
#[derive(Debug, Default)]
pub struct FileHub {
    sessions: Mutex<HashMap<String, Arc<SessionFiles>>>,
}

#[derive(Debug)]
struct SessionFiles {
    agent: Mutex<Option<(u64, mpsc::Sender<ToAgent>)>>,
    online: watch::Sender<bool>,
    pending: Mutex<HashMap<u32, mpsc::Sender<Incoming>>>,
    next_id: AtomicU32,
    link_gen: AtomicU32,
    /// Files the customer sent, newest last.
    offers: Mutex<Vec<Offer>>,
}

/// A file the customer sent from the client window.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub id: u32,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// Most offers kept per session.
const MAX_OFFERS: usize = 100;

impl Default for SessionFiles {
    fn default() -> Self {
        Self {
            offers: Mutex::new(Vec::new()),
            agent: Mutex::new(None),
            online: watch::channel(false).0,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            link_gen: AtomicU32::new(1),
        }
    }
}

/// Held by the agent's socket while it serves; detaches on drop.
#[derive(Debug)]
pub struct AgentLink {
    files: Arc<SessionFiles>,
    generation: u64,
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        let mut a = self.files.agent.lock().unwrap_or_else(|e| e.into_inner());
        if a.as_ref().is_some_and(|(g, _)| *g == self.generation) {
            *a = None;
            self.files.online.send_replace(false);
            for tx in self
                .files
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                let _ = tx.try_send(Incoming::Lost);
            }
        }
    }
}

impl FileHub {
    fn session(&self, id: &str) -> Arc<SessionFiles> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn existing(&self, id: &str) -> Option<Arc<SessionFiles>> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// An agent link starts serving `session_id`: file messages for it come out of the
    /// receiver until the returned guard is dropped.
    pub fn attach(&self, session_id: &str) -> (AgentLink, mpsc::Receiver<ToAgent>) {
        let files = self.session(session_id);
        let (tx, rx) = mpsc::channel(AGENT_FILE_QUEUE);
        let generation = u64::from(files.link_gen.fetch_add(1, Ordering::Relaxed));
        *files.agent.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, tx));
        files.online.send_replace(true);
        (AgentLink { files, generation }, rx)
    }

    /// The session is over: forget it.
    pub fn forget(&self, session_id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
    }

    /// A file reply from the agent; an offer (the customer sends a file) is kept and
    /// recorded.
    pub async fn from_agent(&self, db: &crate::db::Db, session_id: &str, reply: FileReply) {
        if let FileReply::Shared { limited, folder } = &reply {
            // Which folder the customer shares: limited to one, or the home folder. Only the
            // folder's last component is recorded (the rep sees it as the panel's root).
            let folder = lifeline_proto::sanitize_text(folder);
            let detail = if *limited {
                serde_json::json!({"scope": "one_folder", "folder": folder})
            } else {
                serde_json::json!({"scope": "home"})
            };
            if let Err(e) = db
                .add_event(session_id, "file_share", &detail.to_string())
                .await
            {
                tracing::error!(error = %e, "cannot record the shared folder");
            }
            return;
        }
        let Some(f) = self.existing(session_id) else {
            return;
        };
        if let FileReply::Offer {
            id,
            name,
            size,
            sha256,
        } = reply
        {
            if id < lifeline_proto::files::AGENT_IDS {
                return;
            }
            let name = lifeline_proto::sanitize_text(&name);
            let detail = serde_json::json!({"name": name, "size": size, "sha256": sha256});
            if let Err(e) = db
                .add_event(session_id, "file_offered", &detail.to_string())
                .await
            {
                tracing::error!(error = %e, "cannot record a file offer");
            }
            let mut offers = f.offers.lock().unwrap_or_else(|e| e.into_inner());
            if offers.len() >= MAX_OFFERS {
                offers.remove(0);
            }
            offers.retain(|o| o.id != id);
            offers.push(Offer {
                id,
                name,
                size,
                sha256,
                at: crate::db::now_ms(),
            });
            return;
        }
        f.deliver(reply.id(), Incoming::Reply(reply));
    }

    /// A binary frame on the file channel from the agent (its header already checked).
    pub fn from_agent_frame(&self, session_id: &str, bytes: Bytes) {
        let id = match frame::decode(&bytes).map(|(_, p)| Chunk::decode(p).map(|c| c.id)) {
            Ok(Ok(id)) => id,
            _ => return,
        };
        if let Some(f) = self.existing(session_id) {
            f.deliver(id, Incoming::Chunk(bytes));
        }
    }
}

impl SessionFiles {
    fn deliver(&self, id: u32, msg: Incoming) {
        let tx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        if let Some(tx) = tx
            && tx.try_send(msg).is_err()
        {
            tracing::warn!(id, "file transfer queue full; the transfer will resume");
        }
    }

    fn agent(&self) -> Option<mpsc::Sender<ToAgent>> {
        self.agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, tx)| tx.clone())
    }

    async fn send(&self, msg: ToAgent) -> bool {
        match self.agent() {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        }
    }

    async fn request(&self, request: FileRequest) -> bool {
        self.send(ToAgent::Text(RelayToAgent::File { request }))
            .await
    }

    /// Waits until an agent link is up; `false` after [`RECONNECT_WAIT`].
    async fn wait_online(&self) -> bool {
        let mut rx = self.online.subscribe();
        tokio::time::timeout(RECONNECT_WAIT, rx.wait_for(|o| *o))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// One transfer's registration; unregisters on drop.
struct Transfer {
    files: Arc<SessionFiles>,
    id: u32,
    rx: mpsc::Receiver<Incoming>,
}

impl Transfer {
    fn new(files: Arc<SessionFiles>) -> Self {
        let id = files.next_id.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
        Self::with_id(files, id)
    }

    fn with_id(files: Arc<SessionFiles>, id: u32) -> Self {
        let (tx, rx) = mpsc::channel((WINDOW as usize / MAX_CHUNK) * 2 + 16);
        files
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        Self { files, id, rx }
    }

    async fn next(&mut self, wait: Duration) -> Option<Incoming> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok()?
    }

    /// Sends `request` and waits for the first answer that is not a stale chunk;
    /// reconnects while the agent is away.
    async fn ask(&mut self, request: &FileRequest) -> Result<FileReply, FilesError> {
        for _ in 0..4 {
            if !self.files.request(request.clone()).await {
                if !self.files.wait_online().await {
                    return Err(FilesError::offline());
                }
                continue;
            }
            loop {
                match self.next(ANSWER_WAIT).await {
                    None => return Err(FilesError::offline()),
                    Some(Incoming::Lost) => break,
                    Some(Incoming::Chunk(_))
                    | Some(Incoming::Reply(FileReply::Progress { .. })) => {}
                    Some(Incoming::Reply(reply)) => return Ok(reply),
                }
            }
            if !self.files.wait_online().await {
                return Err(FilesError::offline());
            }
        }
        Err(FilesError::offline())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.files
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        if let Some(tx) = self.files.agent() {
            let _ = tx.try_send(ToAgent::Text(RelayToAgent::File {
                request: FileRequest::Cancel { id: self.id },
            }));
        }
    }
}

/// An error answer: status, code and sentence (and the offset to resume from, if any).
#[derive(Debug, Serialize)]
pub struct FilesError {
    #[serde(skip)]
    status: StatusCode,
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

impl FilesError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            offset: None,
        }
    }

    fn offline() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "offline",
            "The customer's client is not connected; try again when it is back.",
        )
    }

    fn from_agent(code: FileErrorCode, message: String) -> Self {
        let (status, error) = match code {
            FileErrorCode::NotPermitted => (StatusCode::FORBIDDEN, "not_permitted"),
            FileErrorCode::OutsideRoot => (StatusCode::FORBIDDEN, "outside_root"),
            FileErrorCode::NotRegular => (StatusCode::FORBIDDEN, "not_regular"),
            FileErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            FileErrorCode::Exists => (StatusCode::CONFLICT, "exists"),
            FileErrorCode::HashMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"),
            FileErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            FileErrorCode::Protocol => (StatusCode::BAD_GATEWAY, "protocol"),
            FileErrorCode::Io => (StatusCode::BAD_GATEWAY, "io"),
            FileErrorCode::Cancelled => (StatusCode::BAD_GATEWAY, "cancelled"),
        };
        Self::new(status, error, message)
    }

    fn unexpected(reply: &FileReply) -> Self {
        match reply {
            FileReply::Failed { code, message, .. } => Self::from_agent(*code, message.clone()),
            other => Self::new(
                StatusCode::BAD_GATEWAY,
                "protocol",
                format!("unexpected answer from the client: {other:?}"),
            ),
        }
    }
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

impl From<crate::web::ApiError> for FilesError {
    fn from(e: crate::web::ApiError) -> Self {
        let r = e.into_response();
        Self::new(r.status(), "refused", "You may not use file transfer here.")
    }
}

/// Who may transfer files in this session, in which direction.
async fn allowed(
    state: &State,
    session_id: &str,
    rep: &Rep,
    direction: Option<&str>,
) -> Result<Arc<SessionFiles>, FilesError> {
    let policy = &state.config.files;
    let forbidden = |m: &str| FilesError::new(StatusCode::FORBIDDEN, "policy", m);
    if !policy.enabled {
        return Err(forbidden(
            "File transfer is turned off on this support box.",
        ));
    }
    match direction {
        Some("upload") if !policy.upload => {
            return Err(forbidden(
                "Sending files to customers is turned off on this support box.",
            ));
        }
        Some("download") if !policy.download => {
            return Err(forbidden(
                "Receiving files from customers is turned off on this support box.",
            ));
        }
        _ => {}
    }
    let room = state
        .hub
        .viewer_room(session_id, &rep.0.user)
        .map_err(|e| FilesError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    if room.grant(Permission::FileTransfer) != Some(GrantState::Granted) {
        return Err(FilesError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "Ask the customer to allow file transfer first.",
        ));
    }
    Ok(state.hub.files.session(session_id))
}

fn check_wire(path: &str) -> Result<(), FilesError> {
    check_path(path).map_err(|_| {
        FilesError::new(
            StatusCode::FORBIDDEN,
            "outside_root",
            "The path must stay inside the customer's shared folder.",
        )
    })
}

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    path: String,
}

/// `GET /api/v1/sessions/{id}/files?path=`
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files", security(("bearer" = [])),
    params(("id" = String, Path), ("path" = Option<String>, Query, description = "folder inside the shared folder; empty for the shared folder")),
    responses((status = 200, description = "{path, entries, truncated}"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn list(
    AxState(state): AxState<State>,
    rep: Rep,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Response, FilesError> {
    check_wire(&q.path)?;
    let files = allowed(&state, &id, &rep, None).await?;
    let mut t = Transfer::new(files);
    let reply = t
        .ask(&FileRequest::List {
            id: t.id,
            path: q.path,
        })
        .await?;
    match reply {
        FileReply::Listing {
            path,
            entries,
            truncated,
            root,
            ..
        } => Ok(Json(serde_json::json!({
            "path": path, "entries": entries, "truncated": truncated,
            "root": lifeline_proto::sanitize_text(&root),
            // The admin's largest size (bytes, 0: none): the console refuses a folder above it.
            "max_size": if state.config.files.max_size_mb == 0 { 0 } else { state.config.files.max_bytes() },
        }))
        .into_response()),
        other => Err(FilesError::unexpected(&other)),
    }
}

#[derive(Debug, Deserialize)]
pub struct FolderRequest {
    path: String,
}

/// `POST /api/v1/sessions/{id}/files/folders`
#[utoipa::path(post, path = "/api/v1/sessions/{id}/files/folders", security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(description = "{\"path\": \"folder/new\"}", content_type = "application/json"),
    responses((status = 200, description = "{path}"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn make_dir(
    AxState(state): AxState<State>,
    rep: Rep,
    Path(id): Path<String>,
    Json(req): Json<FolderRequest>,
) -> Result<Response, FilesError> {
    check_wire(&req.path)?;
    let files = allowed(&state, &id, &rep, Some("upload")).await?;
    let mut t = Transfer::new(files);
    match t
        .ask(&FileRequest::MakeDir {
            id: t.id,
            path: req.path.clone(),
        })
        .await?
    {
        FileReply::Done { .. } => Ok(Json(serde_json::json!({ "path": req.path })).into_response()),
        other => Err(FilesError::unexpected(&other)),
    }
}

fn range_start(headers: &HeaderMap) -> Result<u64, FilesError> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(0);
    };
    let bad = || {
        FilesError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range",
            "Only `Range: bytes=N-` is supported.",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    let n = s
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .ok_or_else(bad)?;
    n.parse().map_err(|_| bad())
}

async fn record(
    state: &State,
    session_id: &str,
    (user, ip): (&str, std::net::IpAddr),
    direction: &str,
    path: &str,
    size: u64,
    sha256: &str,
) {
    let detail = serde_json::json!({
        "direction": direction, "path": path, "size": size, "sha256": sha256,
    })
    .to_string();
    if let Err(e) = state
        .hub
        .db()
        .add_event(session_id, "file_transferred", &detail)
        .await
    {
        tracing::error!(error = %e, "cannot record a file transfer");
    }
    audit(
        state,
        user,
        ip,
        "session.file",
        direction,
        &format!("{session_id} {path} {size} {sha256}"),
    )
    .await;
}

/// `GET /api/v1/sessions/{id}/files/content?path=`
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/content", security(("bearer" = [])),
    params(("id" = String, Path), ("path" = String, Query), ("Range" = Option<String>, Header, description = "bytes=N- to resume")),
    responses((status = 200, description = "the file's bytes; its SHA-256 in X-Lifeline-Sha256"),
              (status = 206, description = "the bytes from N on"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn download(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    rep: Rep,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    headers: HeaderMap,
) -> Result<Response, FilesError> {
    check_wire(&q.path)?;
    if q.path.is_empty() {
        return Err(check_wire("/").unwrap_err());
    }
    let files = allowed(&state, &id, &rep, Some("download")).await?;
    let t = Transfer::new(files);
    stream_file(state, ip, rep, id, q.path, headers, t, "download").await
}

/// `GET /api/v1/sessions/{id}/files/offers`
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/offers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "{offers: [...]}: files the customer sent"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn offers(
    AxState(state): AxState<State>,
    rep: Rep,
    Path(id): Path<String>,
) -> Result<Response, FilesError> {
    let files = allowed(&state, &id, &rep, Some("download")).await?;
    let list = files
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Json(serde_json::json!({ "offers": list })).into_response())
}

/// `GET /api/v1/sessions/{id}/files/offers/{offer}`
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/offers/{offer}", security(("bearer" = [])),
    params(("id" = String, Path), ("offer" = u32, Path)),
    responses((status = 200, description = "the offered file's bytes"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn offered(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    rep: Rep,
    Path((id, offer)): Path<(String, u32)>,
    headers: HeaderMap,
) -> Result<Response, FilesError> {
    let files = allowed(&state, &id, &rep, Some("download")).await?;
    let name = files
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|o| o.id == offer)
        .map(|o| o.name.clone())
        .ok_or_else(|| {
            FilesError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "The customer did not send this file.",
            )
        })?;
    let t = Transfer::with_id(files, offer);
    stream_file(state, ip, rep, id, name, headers, t, "customer_sent").await
}

/// Streams one file from the agent: `label` names it (its path, or the name of a file the
/// customer sent, whose transfer asks by id with an empty path).
#[allow(clippy::too_many_arguments)]
async fn stream_file(
    state: State,
    ip: std::net::IpAddr,
    rep: Rep,
    id: String,
    label: String,
    headers: HeaderMap,
    mut t: Transfer,
    direction: &'static str,
) -> Result<Response, FilesError> {
    let q = PathQuery {
        path: if direction == "download" {
            label.clone()
        } else {
            String::new()
        },
    };
    let start = range_start(&headers)?;
    let reply = t
        .ask(&FileRequest::Download {
            id: t.id,
            path: q.path.clone(),
            offset: start,
        })
        .await?;
    let FileReply::Ready { size, sha256, .. } = reply else {
        return Err(FilesError::unexpected(&reply));
    };
    if size > state.config.files.max_bytes() {
        return Err(FilesError::from_agent(
            FileErrorCode::TooLarge,
            format!("The file has {size} bytes, more than this support box allows."),
        ));
    }
    let name = label.rsplit('/').next().unwrap_or("file").to_owned();
    let stream = DownloadStream {
        t,
        wire: q.path,
        path: label,
        direction,
        resumed: false,
        pos: start,
        size,
        hasher: (start == 0).then(Sha256::new),
        sha256: sha256.clone(),
        state: state.clone(),
        session_id: id,
        user: rep.0.user.username.clone(),
        ip,
        done: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        match s.next_bytes().await {
            Ok(Some(b)) => Some((Ok::<Bytes, std::io::Error>(b), s)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "file download cut off");
                Some((Err(std::io::Error::other(e)), s))
            }
        }
    }));
    let mut resp = Response::new(body);
    *resp.status_mut() = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if start > 0
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", size.saturating_sub(1)))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&sha256) {
        h.insert("x-lifeline-sha256", v);
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

struct DownloadStream {
    t: Transfer,
    /// What the agent is asked for (empty for a file the customer sent).
    wire: String,
    /// What the event and messages call it.
    path: String,
    direction: &'static str,
    /// The agent's link dropped during this download at least once: chunks its old sender
    /// had queued may still arrive, out of place, and are skipped.
    resumed: bool,
    pos: u64,
    size: u64,
    hasher: Option<Sha256>,
    sha256: String,
    state: State,
    session_id: String,
    user: String,
    ip: std::net::IpAddr,
    done: bool,
}

impl DownloadStream {
    /// The whole file passed: check its hash (when it was streamed from the start) and
    /// record the transfer.
    async fn complete(&mut self) -> Result<(), String> {
        self.done = true;
        if let Some(h) = self.hasher.take() {
            let got = hex::encode(h.finalize());
            if got != self.sha256 {
                return Err(format!(
                    "{} arrived with SHA-256 {got}, not {}",
                    self.path, self.sha256
                ));
            }
        }
        record(
            &self.state,
            &self.session_id,
            (&self.user, self.ip),
            self.direction,
            &self.path,
            self.size,
            &self.sha256,
        )
        .await;
        Ok(())
    }

    async fn next_bytes(&mut self) -> Result<Option<Bytes>, String> {
        if self.done {
            return Ok(None);
        }
        if self.pos >= self.size {
            // An empty file (or an empty range): nothing to wait for.
            self.complete().await?;
            return Ok(None);
        }
        loop {
            let Some(msg) = self.t.next(ANSWER_WAIT).await else {
                return Err("the customer's client stopped sending".into());
            };
            match msg {
                Incoming::Chunk(bytes) => {
                    let Ok((_, payload)) = frame::decode(&bytes) else {
                        continue;
                    };
                    let Ok(c) = Chunk::decode(payload) else {
                        continue;
                    };
                    if c.end() <= self.pos {
                        continue; // sent again after a resume
                    }
                    if c.offset > self.pos && c.end() <= self.size && self.resumed {
                        continue; // queued by the sender of a lost link
                    }
                    if c.offset > self.pos || c.end() > self.size {
                        return Err(format!(
                            "bytes {}..{} do not follow {}",
                            c.offset,
                            c.end(),
                            self.pos
                        ));
                    }
                    let skip = (self.pos - c.offset) as usize;
                    let start = frame::HEADER_LEN + lifeline_proto::files::CHUNK_HEADER + skip;
                    let data = bytes.slice(start..);
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&data);
                    }
                    self.pos = c.end();
                    if self.pos >= self.size {
                        // The last bytes go out only once the whole file is verified (the
                        // HTTP layer stops asking for more after the announced length).
                        self.complete().await?;
                        return Ok(Some(data));
                    }
                    let _ = self
                        .t
                        .files
                        .request(FileRequest::Ack {
                            id: self.t.id,
                            offset: self.pos,
                        })
                        .await;
                    return Ok(Some(data));
                }
                Incoming::Reply(FileReply::Failed { message, .. }) => return Err(message),
                Incoming::Reply(FileReply::Ready { sha256, .. }) => {
                    if sha256 != self.sha256 {
                        return Err(format!("{} changed during the transfer", self.path));
                    }
                }
                Incoming::Reply(_) => {}
                Incoming::Lost => {
                    tracing::info!(
                        session = %self.session_id, at = self.pos,
                        "agent link lost during a download; resuming when it is back"
                    );
                    self.resumed = true;
                    if !self.t.files.wait_online().await {
                        return Err("the customer's client did not come back".into());
                    }
                    let id = self.t.id;
                    let request = FileRequest::Download {
                        id,
                        path: self.wire.clone(),
                        offset: self.pos,
                    };
                    if !self.t.files.request(request).await {
                        return Err("the customer's client went away again".into());
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    path: String,
    size: u64,
    sha256: String,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    overwrite: bool,
}

fn check_upload(state: &State, q: &UploadQuery) -> Result<(), FilesError> {
    check_wire(&q.path)?;
    if q.path.is_empty() {
        return Err(check_wire("/").unwrap_err());
    }
    if q.sha256.len() != 64 || !q.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FilesError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "sha256 must be 64 hexadecimal digits.",
        ));
    }
    if q.size > state.config.files.max_bytes() {
        return Err(FilesError::from_agent(
            FileErrorCode::TooLarge,
            format!(
                "The file has {} bytes, more than this support box allows.",
                q.size
            ),
        ));
    }
    Ok(())
}

fn upload_request(id: u32, q: &UploadQuery) -> FileRequest {
    FileRequest::Upload {
        id,
        path: q.path.clone(),
        size: q.size,
        sha256: q.sha256.to_ascii_lowercase(),
        overwrite: q.overwrite,
    }
}

/// `POST /api/v1/sessions/{id}/files/uploads`: how much of this upload the agent holds.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/files/uploads", security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(description = "{path, size, sha256, overwrite}", content_type = "application/json"),
    responses((status = 200, description = "{offset, size}: send the bytes from offset on"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn prepare_upload(
    AxState(state): AxState<State>,
    rep: Rep,
    Path(id): Path<String>,
    Json(q): Json<UploadQuery>,
) -> Result<Response, FilesError> {
    check_upload(&state, &q)?;
    let files = allowed(&state, &id, &rep, Some("upload")).await?;
    let mut t = Transfer::new(files);
    match t.ask(&upload_request(t.id, &q)).await? {
        FileReply::Ready { offset, .. } => {
            Ok(Json(serde_json::json!({ "offset": offset, "size": q.size })).into_response())
        }
        other => Err(FilesError::unexpected(&other)),
    }
}

/// `PUT /api/v1/sessions/{id}/files/content?...`: the bytes from `offset` on.
#[utoipa::path(put, path = "/api/v1/sessions/{id}/files/content", security(("bearer" = [])),
    params(("id" = String, Path), ("path" = String, Query), ("size" = u64, Query), ("sha256" = String, Query),
           ("offset" = Option<u64>, Query), ("overwrite" = Option<bool>, Query)),
    request_body(description = "the file's bytes from offset on", content_type = "application/octet-stream"),
    responses((status = 200, description = "stored under its final name once the SHA-256 matched"),
              (status = 403, description = "file transfer not granted, or not allowed by the [files] policy"),
              (status = 404, description = "no such session"),
              (status = 409, description = "the customer's computer is offline, or the file exists")))]
pub async fn upload(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    rep: Rep,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<Response, FilesError> {
    check_upload(&state, &q)?;
    let files = allowed(&state, &id, &rep, Some("upload")).await?;
    let mut t = Transfer::new(files);
    let request = upload_request(t.id, &q);
    let reply = t.ask(&request).await?;
    let FileReply::Ready { offset: have, .. } = reply else {
        return Err(FilesError::unexpected(&reply));
    };
    if have < q.offset {
        let mut e = FilesError::new(
            StatusCode::CONFLICT,
            "offset",
            format!("The customer's computer holds {have} bytes; send from there."),
        );
        e.offset = Some(have);
        return Err(e);
    }
    let mut up = UploadState {
        pos: have,
        acked: have,
        unacked: VecDeque::new(),
        seq: 0,
        done: None,
    };
    let mut body_pos = q.offset;
    let mut stream = body.into_data_stream();
    while body_pos < q.size && up.done.is_none() {
        let Some(piece) = stream.next().await else {
            break;
        };
        let mut piece = piece.map_err(|e| {
            FilesError::new(StatusCode::BAD_REQUEST, "body", format!("upload cut: {e}"))
        })?;
        let piece_end = body_pos + piece.len() as u64;
        if piece_end <= up.pos {
            body_pos = piece_end;
            continue;
        }
        if body_pos < up.pos {
            piece = piece.slice((up.pos - body_pos) as usize..);
            body_pos = up.pos;
        }
        if body_pos + piece.len() as u64 > q.size {
            return Err(FilesError::new(
                StatusCode::BAD_REQUEST,
                "body",
                "more bytes than the announced size",
            ));
        }
        while !piece.is_empty() {
            let n = piece.len().min(MAX_CHUNK);
            let data = piece.split_to(n);
            up.wait_room(&mut t, &request, n as u64).await?;
            up.send(&mut t, data).await?;
        }
        body_pos = up.pos;
    }
    if up.pos < q.size && up.done.is_none() {
        let mut e = FilesError::new(
            StatusCode::BAD_REQUEST,
            "incomplete",
            format!("The upload stopped at {} of {} bytes.", up.pos, q.size),
        );
        e.offset = Some(up.acked);
        return Err(e);
    }
    let (size, sha256) = up.finish(&mut t, &request).await?;
    record(
        &state,
        &id,
        (&rep.0.user.username, ip),
        "upload",
        &q.path,
        size,
        &sha256,
    )
    .await;
    Ok(Json(serde_json::json!({ "path": q.path, "size": size, "sha256": sha256 })).into_response())
}

struct UploadState {
    /// Bytes sent to the agent.
    pos: u64,
    /// Bytes the agent wrote.
    acked: u64,
    /// Sent, not yet acknowledged: (offset, bytes).
    unacked: VecDeque<(u64, Bytes)>,
    seq: u32,
    done: Option<(u64, String)>,
}

impl UploadState {
    fn frame(&mut self, id: u32, offset: u64, data: &[u8]) -> Bytes {
        self.seq = self.seq.wrapping_add(1);
        let payload = Chunk::encode(id, offset, data);
        Bytes::from(frame::encode(Channel::File, 0, self.seq, &payload).unwrap_or_default())
    }

    async fn send(&mut self, t: &mut Transfer, data: Bytes) -> Result<(), FilesError> {
        let f = self.frame(t.id, self.pos, &data);
        self.unacked.push_back((self.pos, data.clone()));
        self.pos += data.len() as u64;
        if !t.files.send(ToAgent::Binary(f)).await {
            // Sent again after the reconnection.
            tracing::info!("agent link gone during an upload");
        }
        Ok(())
    }

    /// Handles one message from the agent.
    async fn handle(
        &mut self,
        t: &mut Transfer,
        request: &FileRequest,
        msg: Option<Incoming>,
    ) -> Result<(), FilesError> {
        match msg {
            None => Err(FilesError::offline()),
            Some(Incoming::Reply(FileReply::Progress { offset, .. })) => {
                self.acked = self.acked.max(offset);
                while self
                    .unacked
                    .front()
                    .is_some_and(|(o, d)| o + d.len() as u64 <= self.acked)
                {
                    self.unacked.pop_front();
                }
                Ok(())
            }
            Some(Incoming::Reply(FileReply::Done { size, sha256, .. })) => {
                self.done = Some((size, sha256));
                Ok(())
            }
            Some(Incoming::Reply(r @ FileReply::Failed { .. })) => Err(FilesError::unexpected(&r)),
            Some(Incoming::Reply(_)) | Some(Incoming::Chunk(_)) => Ok(()),
            Some(Incoming::Lost) => self.resume(t, request).await,
        }
    }

    /// The agent came back: ask where it stands and send the rest of the window again.
    async fn resume(&mut self, t: &mut Transfer, request: &FileRequest) -> Result<(), FilesError> {
        tracing::info!(
            at = self.acked,
            "agent link lost during an upload; resuming"
        );
        let reply = t.ask(request).await?;
        let FileReply::Ready { offset, .. } = reply else {
            return Err(FilesError::unexpected(&reply));
        };
        if offset > self.pos {
            return Err(FilesError::new(
                StatusCode::BAD_GATEWAY,
                "protocol",
                "the client holds more than was sent",
            ));
        }
        self.acked = offset;
        let oldest = self.unacked.front().map_or(self.pos, |(o, _)| *o);
        if offset < oldest {
            let mut e = FilesError::new(
                StatusCode::CONFLICT,
                "offset",
                "The customer's computer lost part of the upload; send from the offset.",
            );
            e.offset = Some(offset);
            return Err(e);
        }
        let again: Vec<(u64, Bytes)> = self
            .unacked
            .iter()
            .filter(|(o, d)| o + d.len() as u64 > offset)
            .cloned()
            .collect();
        for (o, d) in again {
            let (o2, d2) = if o < offset {
                (offset, d.slice((offset - o) as usize..))
            } else {
                (o, d)
            };
            let f = self.frame(t.id, o2, &d2);
            if !t.files.send(ToAgent::Binary(f)).await {
                return Err(FilesError::offline());
            }
        }
        Ok(())
    }

    async fn wait_room(
        &mut self,
        t: &mut Transfer,
        request: &FileRequest,
        n: u64,
    ) -> Result<(), FilesError> {
        while self.pos + n > self.acked + WINDOW {
            let msg = t.next(ANSWER_WAIT).await;
            self.handle(t, request, msg).await?;
        }
        Ok(())
    }

    async fn finish(
        &mut self,
        t: &mut Transfer,
        request: &FileRequest,
    ) -> Result<(u64, String), FilesError> {
        loop {
            if let Some(d) = self.done.take() {
                return Ok(d);
            }
            let msg = t.next(ANSWER_WAIT).await;
            self.handle(t, request, msg).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(range_start(&h).unwrap(), 0);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=1234-"));
        assert_eq!(range_start(&h).unwrap(), 1234);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=1-2"));
        assert!(range_start(&h).is_err());
    }

    #[test]
    fn policy_defaults_and_limits() {
        let p: FilePolicy = toml::from_str("max_size_mb = 2\nupload = false").unwrap();
        assert!(p.enabled && p.download && !p.upload);
        assert_eq!(p.max_bytes(), 2 << 20);
        assert_eq!(FilePolicy::default().max_bytes(), u64::MAX);
        assert!(toml::from_str::<FilePolicy>("bogus = 1").is_err());
    }
}
