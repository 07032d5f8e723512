//! The command shell through the relay: the console's terminal socket, the agent's shell
//! frames, the session events and the stored transcript.
//!
//! # The console's socket
//! `wss://box/ws/shell/{session_id}?elevated=false&rows=R&cols=C` (authenticated like the
//! viewer socket; the representative who accepted the session, or an admin, while it is
//! active) carries one shell from start to end. The relay checks, in this order, and
//! answers a refusal with [`ShellToConsole::Refused`] before it closes:
//! 1. the `[tools] shell` / `elevated_shell` policy (`policy`, audited and recorded as a
//!    `shell_refused` event);
//! 2. the customer's grant of `shell` / `elevated_shell` (`declined` when the customer said
//!    no, `not_permitted` when it was never given or was withdrawn);
//! 3. one shell per session (`busy`) and the customer's client online (`offline`).
//!
//! It then sends [`ShellRequest::Open`] and waits (at most [`OPEN_TIMEOUT`]) for the
//! agent's answer: `opened` goes to the console, a failure (`declined`,
//! `elevation_unavailable`, ...) becomes a refusal with the agent's sentence.
//! While open, the console's binary messages (at most [`MAX_INPUT`] bytes each) go to the
//! agent as shell frames; the agent's frames go to the console as raw bytes; `resize`,
//! `ack` and `close` are passed on. The agent sends no more than [`WINDOW`] bytes beyond the
//! console's acknowledgement, so what the relay holds per shell is bounded.
//!
//! # Record
//! Every shell is a `shell_opened` event and a `shell_closed` event (JSON: shell id,
//! elevated, who closed it, seconds, bytes in and out, transcript size, truncated), and an
//! audit line each. Its transcript (input and output in order, each record on one line with
//! its time since the start; bytes that are not printable UTF-8 written as `\xNN`) is stored
//! in the data folder under `transcripts/`, at most [`MAX_TRANSCRIPT`] bytes (then a
//! "truncated" line), and downloaded with
//! `GET /api/v1/sessions/{id}/shells/{shell}/transcript`.
//!
//! Limits: one shell per session at a time; a shell ends when the customer's link drops (the
//! agent closes its side too) and when its console is silent for a minute (pings every
//! 25 s); the relay does not interpret the terminal's bytes; the console's input is bounded
//! per message and paced by the agent's queue, not rate-limited.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lifeline_proto::agent::RelayToAgent;
use lifeline_proto::frame::{self, Channel};
use lifeline_proto::remote::{GrantState, Permission};
use lifeline_proto::shell::{
    ClosedBy, ConsoleToShell, MAX_INPUT, ShellData, ShellErrorCode, ShellReply, ShellRequest,
    ShellToConsole, TermSize, WINDOW,
};
use lifeline_proto::{MAX_CONTROL_MESSAGE, encode};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::web::{ApiError, ClientIp, Rep, State, audit};

/// How long the console waits for the agent to open a shell (an administrator prompt on
/// the customer's side may take a while).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// The relay pings an open shell's console this often; a console silent for
/// [`SILENCE_LIMIT`] (the browser answers pings by itself) is gone and its shell is closed.
const HEARTBEAT: Duration = Duration::from_secs(25);
const SILENCE_LIMIT: Duration = Duration::from_secs(65);
/// Largest stored transcript, in bytes.
pub const MAX_TRANSCRIPT: u64 = 16 * 1024 * 1024;
/// Shell messages waiting for the agent's socket.
const AGENT_QUEUE: usize = 64;
/// Most output bytes held for a console: the agent keeps within [`WINDOW`]; beyond twice
/// that (a broken agent) bytes are dropped rather than held.
const MAX_HELD: u64 = 2 * WINDOW + lifeline_proto::shell::MAX_DATA as u64;

/// What the shells send to the agent's socket, in order.
#[derive(Debug)]
pub enum ToAgent {
    Text(RelayToAgent),
    Binary(Bytes),
}

/// What the agent's link hands to the shell's console handler.
#[derive(Debug)]
enum FromAgent {
    Reply(ShellReply),
    Data(Bytes),
    /// The agent's link dropped.
    Gone,
}

struct Open {
    id: u32,
    tx: mpsc::UnboundedSender<FromAgent>,
    /// Output bytes queued for the console.
    held: std::sync::Arc<AtomicU64>,
}

#[derive(Default)]
struct SessionShell {
    /// The agent's link: its generation and the queue of shell frames for it.
    agent: Option<(u64, mpsc::Sender<ToAgent>)>,
    open: Option<Open>,
}

/// The shells of every session.
#[derive(Default)]
pub struct Shells {
    sessions: Mutex<HashMap<String, SessionShell>>,
    next: AtomicU32,
    link_gen: AtomicU64,
}

impl std::fmt::Debug for Shells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shells").finish_non_exhaustive()
    }
}

/// The agent's side, held by its socket; dropping it tells an open shell the link is gone.
pub struct AgentLink<'a> {
    shells: &'a Shells,
    session_id: String,
    gen_: u64,
}

impl Drop for AgentLink<'_> {
    fn drop(&mut self) {
        let mut s = self.shells.lock();
        if let Some(sh) = s.get_mut(&self.session_id)
            && sh.agent.as_ref().map(|(g, _)| *g) == Some(self.gen_)
        {
            sh.agent = None;
            if let Some(o) = sh.open.take() {
                let _ = o.tx.send(FromAgent::Gone);
            }
            if sh.open.is_none() {
                s.remove(&self.session_id);
            }
        }
    }
}

/// The console's side of an open shell; dropping it frees the session's shell.
struct ConsoleLink<'a> {
    shells: &'a Shells,
    session_id: String,
    id: u32,
}

impl Drop for ConsoleLink<'_> {
    fn drop(&mut self) {
        let mut s = self.shells.lock();
        if let Some(sh) = s.get_mut(&self.session_id)
            && sh.open.as_ref().map(|o| o.id) == Some(self.id)
        {
            sh.open = None;
        }
    }
}

impl Shells {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionShell>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent of `session_id` connected: the shell frames for it come out of the receiver.
    pub fn attach(&self, session_id: &str) -> (AgentLink<'_>, mpsc::Receiver<ToAgent>) {
        let (tx, rx) = mpsc::channel(AGENT_QUEUE);
        let gen_ = self.link_gen.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        let sh = s.entry(session_id.to_string()).or_default();
        sh.agent = Some((gen_, tx));
        (
            AgentLink {
                shells: self,
                session_id: session_id.to_string(),
                gen_,
            },
            rx,
        )
    }

    fn to_console(
        &self,
        session_id: &str,
        id: u32,
    ) -> Option<(mpsc::UnboundedSender<FromAgent>, std::sync::Arc<AtomicU64>)> {
        self.lock()
            .get(session_id)?
            .open
            .as_ref()
            .filter(|o| o.id == id)
            .map(|o| (o.tx.clone(), o.held.clone()))
    }

    /// An answer from the agent of `session_id`; answers about a shell nobody has open are
    /// dropped.
    pub fn from_agent(&self, session_id: &str, reply: ShellReply) {
        if let Some((tx, _)) = self.to_console(session_id, reply.id()) {
            let _ = tx.send(FromAgent::Reply(reply));
        }
    }

    /// A shell frame from the agent. The agent keeps within the window; if a broken agent
    /// does not, the bytes beyond [`MAX_HELD`] are dropped rather than held.
    pub fn from_agent_frame(&self, session_id: &str, bytes: Bytes) {
        let Some(payload) = bytes.get(frame::HEADER_LEN..) else {
            return;
        };
        let Ok(data) = ShellData::decode(payload) else {
            return;
        };
        let n = data.data.len() as u64;
        if let Some((tx, held)) = self.to_console(session_id, data.id) {
            if held.fetch_add(n, Ordering::AcqRel) + n > MAX_HELD {
                held.fetch_sub(n, Ordering::AcqRel);
                tracing::warn!(
                    session = session_id,
                    "shell output beyond the window dropped"
                );
                return;
            }
            let _ = tx.send(FromAgent::Data(bytes.clone()));
        }
    }

    /// Takes the session's one shell; `Err` names the refusal.
    fn open(&self, session_id: &str) -> Result<Opened<'_>, &'static str> {
        let mut s = self.lock();
        let sh = s.entry(session_id.to_string()).or_default();
        if sh.open.is_some() {
            return Err("busy");
        }
        let Some((_, agent)) = sh.agent.clone() else {
            return Err("offline");
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let held = std::sync::Arc::new(AtomicU64::new(0));
        sh.open = Some(Open {
            id,
            tx,
            held: held.clone(),
        });
        Ok(Opened {
            link: ConsoleLink {
                shells: self,
                session_id: session_id.to_string(),
                id,
            },
            from_agent: rx,
            held,
            to_agent: agent,
        })
    }
}

/// A shell just taken for a console.
struct Opened<'a> {
    link: ConsoleLink<'a>,
    from_agent: mpsc::UnboundedReceiver<FromAgent>,
    held: std::sync::Arc<AtomicU64>,
    to_agent: mpsc::Sender<ToAgent>,
}

#[derive(Debug, Deserialize)]
pub struct ShellQuery {
    #[serde(default)]
    elevated: bool,
    #[serde(default = "default_rows")]
    rows: u16,
    #[serde(default = "default_cols")]
    cols: u16,
}

fn default_rows() -> u16 {
    24
}

fn default_cols() -> u16 {
    80
}

/// `GET /ws/shell/{session_id}`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    AxState(state): AxState<State>,
    Path(session_id): Path<String>,
    Query(q): Query<ShellQuery>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = crate::web::console_socket_user(&state, &headers).await?;
    if session_id.len() > 64 {
        return Err(ApiError::NotFound(
            "There is no session with this id.".into(),
        ));
    }
    let size = TermSize {
        rows: q.rows,
        cols: q.cols,
    };
    if size.validate().is_err() {
        return Err(ApiError::BadRequest(
            "rows and cols must be between 1 and the terminal's limits".into(),
        ));
    }
    let room = state.hub.viewer_room(&session_id, &a.user)?;
    Ok(ws
        .read_buffer_size(4 * 1024)
        .max_message_size(MAX_CONTROL_MESSAGE)
        .max_frame_size(MAX_CONTROL_MESSAGE)
        .on_upgrade(move |socket| async move {
            let grant = room.grant(if q.elevated {
                Permission::ElevatedShell
            } else {
                Permission::Shell
            });
            let s = ShellSocket {
                state,
                session_id,
                user: a.user.username.clone(),
                display: a.user.display_name.clone(),
                ip,
                elevated: q.elevated,
                socket,
            };
            s.run(grant, size).await;
        })
        .into_response())
}

struct ShellSocket {
    state: State,
    session_id: String,
    user: String,
    display: String,
    ip: std::net::IpAddr,
    elevated: bool,
    socket: WebSocket,
}

/// The running totals of one shell.
struct Totals {
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

impl ShellSocket {
    async fn send(&mut self, msg: &ShellToConsole) -> bool {
        self.socket
            .send(Message::Text(encode(msg).into()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    fn kind(&self) -> &'static str {
        if self.elevated {
            "elevated_shell"
        } else {
            "shell"
        }
    }

    /// Records a step of this shell: the session event `shell_<step>` with `detail`, and the
    /// audit line `session.shell <step>` naming the session, the shell's kind and `what`.
    async fn record(&mut self, step: &str, detail: &str, what: &str) {
        let _ = self
            .state
            .db
            .add_event(&self.session_id, &format!("shell_{step}"), detail)
            .await;
        audit(
            &self.state,
            &self.user,
            self.ip,
            "session.shell",
            step,
            &format!("{} {} {what}", self.session_id, self.kind()),
        )
        .await;
    }

    /// Refuses the shell with `code` and a sentence, records it, and closes.
    async fn refuse(&mut self, code: &str, message: &str) {
        let detail = serde_json::json!({
            "elevated": self.elevated, "code": code, "message": message, "rep": self.display,
        })
        .to_string();
        self.record("refused", &detail, code).await;
        self.send(&ShellToConsole::Refused {
            code: code.to_string(),
            message: message.to_string(),
        })
        .await;
        self.close(1000, "refused").await;
    }

    async fn run(mut self, grant: Option<GrantState>, size: TermSize) {
        let policy = self.state.config.tools;
        let allowed = if self.elevated {
            policy.elevated_shell
        } else {
            policy.shell
        };
        if !allowed {
            let what = if self.elevated {
                "Running a command shell as administrator"
            } else {
                "The command shell"
            };
            return self
                .refuse(
                    "policy",
                    &format!("{what} is turned off by the administrator of this support box."),
                )
                .await;
        }
        match grant {
            Some(GrantState::Granted) => {}
            Some(GrantState::Denied) => {
                return self.refuse("declined", "The customer declined.").await;
            }
            _ => {
                return self
                    .refuse(
                        "not_permitted",
                        "The customer has not allowed a command shell: ask for it first.",
                    )
                    .await;
            }
        }
        let state = self.state.clone();
        let shells = &state.hub.shells;
        let Opened {
            link,
            mut from_agent,
            held,
            to_agent,
        } = match shells.open(&self.session_id) {
            Ok(x) => x,
            Err("busy") => {
                return self
                    .refuse("busy", "A command shell is already open in this session.")
                    .await;
            }
            Err(_) => {
                return self
                    .refuse("offline", "The customer's client is not connected.")
                    .await;
            }
        };
        let id = link.id;
        let open = RelayToAgent::Shell {
            request: ShellRequest::Open {
                id,
                elevated: self.elevated,
                size,
                rep: self.display.clone(),
            },
        };
        if to_agent.send(ToAgent::Text(open)).await.is_err() {
            return self
                .refuse("offline", "The customer's client is not connected.")
                .await;
        }
        // The agent's answer (the customer may be typing a password). The console may give
        // up meanwhile (it closes, or sends `close`); anything else it sends waits.
        let wait = tokio::time::sleep(OPEN_TIMEOUT);
        tokio::pin!(wait);
        let answer = loop {
            tokio::select! {
                a = from_agent.recv() => break Ok(a),
                _ = &mut wait => break Err(()),
                m = self.socket.recv() => match m {
                    Some(Ok(Message::Text(t))) if !matches!(ConsoleToShell::decode(&t), Ok(ConsoleToShell::Close)) => {}
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {}
                    _ => {
                        let _ = to_agent.try_send(ToAgent::Text(RelayToAgent::Shell { request: ShellRequest::Close { id } }));
                        return;
                    }
                },
            }
        };
        let program = match answer {
            Ok(Some(FromAgent::Reply(ShellReply::Opened { program, .. }))) => {
                lifeline_proto::sanitize_text(&program)
            }
            Ok(Some(FromAgent::Reply(ShellReply::Failed { code, message, .. }))) => {
                let message = lifeline_proto::sanitize_text(&message);
                let message = match code {
                    ShellErrorCode::Declined => "The customer declined.".to_string(),
                    ShellErrorCode::ElevationUnavailable => {
                        format!("{}.", message.trim().trim_end_matches('.'))
                    }
                    _ => format!("The customer's computer could not open a shell: {message}"),
                };
                return self.refuse(code.as_str(), &message).await;
            }
            Ok(Some(FromAgent::Gone) | None) => {
                return self
                    .refuse("offline", "The customer's client went away.")
                    .await;
            }
            Ok(Some(_)) => {
                return self
                    .refuse("failed", "The customer's client answered out of order.")
                    .await;
            }
            Err(_) => {
                let _ = to_agent.try_send(ToAgent::Text(RelayToAgent::Shell {
                    request: ShellRequest::Close { id },
                }));
                return self
                    .refuse(
                        "failed",
                        "The customer's computer did not open a shell in time.",
                    )
                    .await;
            }
        };
        let mut transcript = Transcript::create(
            &state.config.data_dir,
            &self.session_id,
            id,
            self.elevated,
            &self.display,
            &program,
        );
        let detail = serde_json::json!({
            "shell": id, "elevated": self.elevated, "program": program, "rep": self.display,
        })
        .to_string();
        self.record("opened", &detail, &id.to_string()).await;
        let mut totals = Totals {
            started: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
        };
        let opened = ShellToConsole::Opened {
            elevated: self.elevated,
            program,
        };
        let (by, exit_code) = if self.send(&opened).await {
            let mut link = Link {
                id,
                from_agent: &mut from_agent,
                held: &held,
                to_agent: &to_agent,
            };
            self.serve(&mut link, &mut transcript, &mut totals).await
        } else {
            (ClosedBy::Representative, None)
        };
        if by == ClosedBy::Representative || by == ClosedBy::Session {
            let _ = to_agent.try_send(ToAgent::Text(RelayToAgent::Shell {
                request: ShellRequest::Close { id },
            }));
        }
        drop(link);
        let (stored, truncated) = transcript.finish(by, exit_code);
        let detail = serde_json::json!({
            "shell": id,
            "elevated": self.elevated,
            "by": by.as_str(),
            "exit_code": exit_code,
            "seconds": totals.started.elapsed().as_secs(),
            "bytes_in": totals.bytes_in,
            "bytes_out": totals.bytes_out,
            "transcript_bytes": stored,
            "truncated": truncated,
        })
        .to_string();
        self.record("closed", &detail, &format!("{id} by={}", by.as_str()))
            .await;
        self.send(&ShellToConsole::Closed { by, exit_code }).await;
        self.close(1000, "shell closed").await;
    }

    /// Passes bytes both ways until the shell ends; who ended it.
    async fn serve(
        &mut self,
        link: &mut Link<'_>,
        transcript: &mut Transcript,
        totals: &mut Totals,
    ) -> (ClosedBy, Option<i32>) {
        let id = link.id;
        let mut seq = 0u32;
        let mut shutdown = self.state.shutdown.clone();
        let to = |request| ToAgent::Text(RelayToAgent::Shell { request });
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > SILENCE_LIMIT {
                        self.close(1001, "the console went silent").await;
                        return (ClosedBy::Representative, None);
                    }
                    if self.socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        return (ClosedBy::Representative, None);
                    }
                }
                incoming = self.socket.recv() => {
                    last_seen = Instant::now();
                    let msg = match incoming {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                            return (ClosedBy::Representative, None);
                        }
                        Some(Ok(m)) => m,
                    };
                    match msg {
                        Message::Binary(b) => {
                            if b.len() > MAX_INPUT {
                                self.close(1009, "input message too large").await;
                                return (ClosedBy::Representative, None);
                            }
                            transcript.record(Dir::In, &b);
                            totals.bytes_in += b.len() as u64;
                            seq = seq.wrapping_add(1);
                            let payload = ShellData::encode(id, &b);
                            let Ok(f) = frame::encode(Channel::Shell, 0, seq, &payload) else {
                                continue;
                            };
                            if link.to_agent.send(ToAgent::Binary(Bytes::from(f))).await.is_err() {
                                return (ClosedBy::Session, None);
                            }
                        }
                        Message::Text(t) => match ConsoleToShell::decode(&t) {
                            Ok(ConsoleToShell::Resize { rows, cols }) => {
                                let size = TermSize { rows, cols };
                                transcript.note(&format!("resize {rows}x{cols}"));
                                if link.to_agent.send(to(ShellRequest::Resize { id, size })).await.is_err() {
                                    return (ClosedBy::Session, None);
                                }
                            }
                            Ok(ConsoleToShell::Ack { offset }) => {
                                if link.to_agent.send(to(ShellRequest::Ack { id, offset })).await.is_err() {
                                    return (ClosedBy::Session, None);
                                }
                            }
                            Ok(ConsoleToShell::Close) => return (ClosedBy::Representative, None),
                            Err(e) => {
                                tracing::info!(error = %e, "a console's shell message is not valid");
                                self.close(1008, "malformed message").await;
                                return (ClosedBy::Representative, None);
                            }
                        },
                        _ => {}
                    }
                }
                out = link.from_agent.recv() => match out {
                    Some(FromAgent::Data(b)) => {
                        let data = &b[frame::HEADER_LEN + lifeline_proto::shell::DATA_HEADER..];
                        link.held.fetch_sub(data.len() as u64, Ordering::AcqRel);
                        transcript.record(Dir::Out, data);
                        totals.bytes_out += data.len() as u64;
                        let body = b.slice(frame::HEADER_LEN + lifeline_proto::shell::DATA_HEADER..);
                        if self.socket.send(Message::Binary(body)).await.is_err() {
                            return (ClosedBy::Representative, None);
                        }
                    }
                    Some(FromAgent::Reply(ShellReply::Closed { by, exit_code, .. })) => {
                        return (by, exit_code);
                    }
                    Some(FromAgent::Reply(_)) => {}
                    Some(FromAgent::Gone) | None => return (ClosedBy::Session, None),
                },
                _ = crate::web::until_shutdown(&mut shutdown) => {
                    return (ClosedBy::Session, None);
                }
            }
        }
    }
}

/// An open shell's queues, for [`ShellSocket::serve`].
struct Link<'a> {
    id: u32,
    from_agent: &'a mut mpsc::UnboundedReceiver<FromAgent>,
    held: &'a AtomicU64,
    to_agent: &'a mpsc::Sender<ToAgent>,
}

#[derive(Clone, Copy)]
enum Dir {
    In,
    Out,
}

/// A shell's transcript file, bounded.
struct Transcript {
    file: Option<std::fs::File>,
    started: Instant,
    written: u64,
    truncated: bool,
}

/// Where the transcript of shell `id` of `session_id` is kept.
fn transcript_path(data_dir: &std::path::Path, session_id: &str, id: u32) -> PathBuf {
    data_dir
        .join("transcripts")
        .join(format!("{session_id}-shell-{id}.txt"))
}

/// Writes `bytes` so that the line stays one line and every byte can be read back:
/// printable UTF-8 as it is, `\` as `\\`, anything else as `\xNN` (`\n`, `\r`, `\t`, `\e`
/// by name).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{1b}' => out.push_str("\\e"),
                c if c.is_control()
                    || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') =>
                {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

impl Transcript {
    fn create(
        data_dir: &std::path::Path,
        session_id: &str,
        id: u32,
        elevated: bool,
        rep: &str,
        program: &str,
    ) -> Transcript {
        let path = transcript_path(data_dir, session_id, id);
        let file = path
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::File::create(&path))
            .map_err(|e| tracing::error!(error = %e, path = %path.display(), "cannot store a shell transcript"))
            .ok();
        let mut t = Transcript {
            file,
            started: Instant::now(),
            written: 0,
            truncated: false,
        };
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        t.line(&format!(
            "# Lifeline command shell {id} of session {session_id}\n# opened {at} by {} ({}), program {}\n# each line: seconds since the start, in (typed by the representative) or out (shown by the terminal), the bytes\n",
            escape(rep.as_bytes()),
            if elevated { "as administrator" } else { "with the customer's rights" },
            escape(program.as_bytes()),
        ));
        t
    }

    fn line(&mut self, text: &str) {
        if self.truncated {
            return;
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if self.written + text.len() as u64 > MAX_TRANSCRIPT {
            self.truncated = true;
            let note = "# truncated: the transcript reached its limit; later input and output are not stored\n";
            let _ = f.write_all(note.as_bytes());
            self.written += note.len() as u64;
            return;
        }
        if f.write_all(text.as_bytes()).is_err() {
            self.file = None;
            return;
        }
        self.written += text.len() as u64;
    }

    fn record(&mut self, dir: Dir, bytes: &[u8]) {
        let t = self.started.elapsed().as_secs_f64();
        let d = match dir {
            Dir::In => "in ",
            Dir::Out => "out",
        };
        self.line(&format!("{t:10.3} {d} {}\n", escape(bytes)));
    }

    fn note(&mut self, what: &str) {
        let t = self.started.elapsed().as_secs_f64();
        self.line(&format!("{t:10.3} --- {what}\n"));
    }

    /// Writes the end; the size stored and whether it was cut.
    fn finish(mut self, by: ClosedBy, exit_code: Option<i32>) -> (u64, bool) {
        let truncated = self.truncated;
        // The closing line is written even after a cut.
        self.truncated = false;
        let code = exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default();
        let line = format!(
            "# closed after {:.3} s by {}{code}\n",
            self.started.elapsed().as_secs_f64(),
            by.as_str()
        );
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.sync_all();
            self.written += line.len() as u64;
        }
        (self.written, truncated)
    }
}

/// Downloads the transcript of a shell (the session's readers: its representative or an
/// admin).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/shells/{shell}/transcript", security(("bearer" = [])),
    params(("id" = String, Path), ("shell" = u32, Path)),
    responses((status = 200, description = "the transcript, text"), (status = 404, body = crate::web::error::ErrorBody)))]
pub async fn transcript(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Rep(a): Rep,
    Path((id, shell)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    crate::web::api::readable(&state, &id, &a).await?;
    let path = transcript_path(&state.config.data_dir, &id, shell);
    let body = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::NotFound("This session has no transcript of that shell.".into()))?;
    audit(
        &state,
        &a.user.username,
        ip,
        "session.shell_transcript",
        "ok",
        &format!("{id} {shell}"),
    )
    .await;
    let name = format!("attachment; filename=\"shell-{id}-{shell}.txt\"");
    let mut resp = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                continue;
            }
            match it.next() {
                Some('\\') => out.push(b'\\'),
                Some('n') => out.push(b'\n'),
                Some('r') => out.push(b'\r'),
                Some('t') => out.push(b'\t'),
                Some('e') => out.push(0x1b),
                Some('x') => {
                    let h: String = it.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&h, 16).unwrap());
                }
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn escaping_keeps_one_line_and_every_byte() {
        let e = escape(b"ls\r\n\x1b[31mr\xc3\xa9d\xff\\\x00");
        assert_eq!(e, "ls\\r\\n\\e[31mréd\\xff\\\\\\x00");
        assert!(!e.contains('\n'));
    }

    proptest! {
        #[test]
        fn escape_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let e = escape(&bytes);
            prop_assert!(!e.contains(['\n', '\r', '\x1b']));
            prop_assert_eq!(unescape(&e), bytes);
        }
    }

    #[test]
    fn transcripts_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Transcript::create(dir.path(), "s1", 1, false, "Rémi", "/bin/sh");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_TRANSCRIPT / chunk.len() as u64 + 2) {
            t.record(Dir::Out, &chunk);
        }
        let (size, truncated) = t.finish(ClosedBy::Exited, Some(0));
        assert!(truncated);
        assert!(size <= MAX_TRANSCRIPT + 1024);
        let text = std::fs::read_to_string(transcript_path(dir.path(), "s1", 1)).unwrap();
        assert!(text.contains("# truncated"));
        assert!(text.ends_with("by exited, exit code 0\n"));
    }
}
