//! `/ws/agent`: the customer client's connection.
//!
//! The first message must be a hello with a valid ticket or resume token; anything else,
//! anything malformed, oversized or out of order closes this one connection with a reason
//! (close code 1008 or 1009) and never affects other sessions.
//!
//! Once a representative joined: permission answers, monitors and clipboard text go to the
//! session's screen-sharing [`Room`](crate::view::Room), and binary messages on the screen
//! and cursor channels are routed to the viewers after a check of their header alone
//! ([`frame::decode`]); file frames and file answers go to the session's file transfers
//! ([`crate::files`]), and file messages for the agent come from there through a short
//! queue of their own; shell frames and answers go to the session's shells
//! ([`crate::shell`]), whose messages for the agent have a queue of their own too.
//! The relay's pings measure the round trip to the agent (every 20 s, every second while the
//! screen is watched); viewers are told the last figure.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::State as AxState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use lifeline_proto::agent::{
    AgentAuth, AgentInfo, AgentToRelay, ErrorCode, Party, RefuseCode, RelayToAgent, SessionState,
};
use lifeline_proto::frame::{self, Channel};
use lifeline_proto::{DecodeError, VERSION, encode, sanitize_text};
use tokio::sync::mpsc;

use super::{ClientIp, State};
use crate::auth;
use crate::db::{NewSession, now_ms};
use crate::hub::AGENT_QUEUE;
use crate::view::Room;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(20);
/// Pings for the round-trip figure while someone watches the screen.
const RTT_PING_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(65);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
) -> Response {
    // Small buffers: a box holds many idle agents; they grow only while a big frame passes.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(frame::HEADER_LEN + lifeline_proto::MAX_FRAME_PAYLOAD)
        .max_frame_size(frame::HEADER_LEN + lifeline_proto::MAX_FRAME_PAYLOAD)
        .on_upgrade(move |socket| async move {
            state
                .hub
                .counters
                .agents
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Conn {
                state: state.clone(),
                ip,
                socket,
            }
            .run()
            .await;
            state
                .hub
                .counters
                .agents
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        })
}

struct Conn {
    state: State,
    ip: IpAddr,
    socket: WebSocket,
}

/// How a connection ended, for the log.
enum Exit {
    Closed,
    Protocol,
}

impl Conn {
    async fn send(&mut self, msg: &RelayToAgent) -> bool {
        self.socket
            .send(Message::Text(encode(msg).into()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let reason: String = reason.chars().take(60).collect();
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    /// Reports a protocol error to the peer and closes.
    async fn fail(&mut self, code: ErrorCode, message: String) -> Exit {
        tracing::info!(ip = %self.ip, ?code, %message, "closing agent connection");
        let close_code = if code == ErrorCode::TooLarge {
            1009
        } else {
            1008
        };
        self.send(&RelayToAgent::Error {
            code,
            message: message.clone(),
        })
        .await;
        self.close(close_code, &message).await;
        Exit::Protocol
    }

    async fn refuse(&mut self, code: RefuseCode, message: &str) {
        tracing::info!(ip = %self.ip, ?code, "refused an agent");
        self.send(&RelayToAgent::Refused {
            code,
            message: message.to_string(),
        })
        .await;
        self.close(1008, message).await;
    }

    async fn run(mut self) {
        let first = tokio::time::timeout(HELLO_TIMEOUT, self.socket.recv()).await;
        let text = match first {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Binary(_)))) => {
                self.fail(
                    ErrorCode::OutOfOrder,
                    "the first message must be a hello".into(),
                )
                .await;
                return;
            }
            _ => return,
        };
        let (version, auth, info) = match AgentToRelay::decode(&text) {
            Ok(AgentToRelay::Hello {
                version,
                auth,
                info,
            }) => (version, auth, info),
            Ok(_) => {
                self.fail(
                    ErrorCode::OutOfOrder,
                    "the first message must be a hello".into(),
                )
                .await;
                return;
            }
            Err(e) => {
                self.fail(decode_code(&e), e.to_string()).await;
                return;
            }
        };
        if let Err(m) = VERSION.accepts(version) {
            self.refuse(RefuseCode::IncompatibleVersion, &m.to_string())
                .await;
            return;
        }
        let (tx, rx) = mpsc::channel(AGENT_QUEUE);
        let joined = match auth {
            AgentAuth::Ticket { ticket } => self.start(&ticket, info, tx).await,
            AgentAuth::Resume { session_id, token } => self.resume(&session_id, &token, tx).await,
        };
        let Some((session_id, gen_)) = joined else {
            return;
        };
        let exit = self.serve(&session_id, rx).await;
        self.state.hub.detach_agent(&session_id, gen_).await;
        if matches!(exit, Exit::Protocol) {
            let _ = self
                .state
                .db
                .add_event(&session_id, "protocol_error", &self.ip.to_string())
                .await;
        }
    }

    /// First connection with a downloaded ticket: creates the session.
    async fn start(
        &mut self,
        ticket: &str,
        info: AgentInfo,
        tx: mpsc::Sender<RelayToAgent>,
    ) -> Option<(String, u64)> {
        const INVALID: &str = "This support program's ticket is not valid. Please download the program again from the support portal.";
        let state = self.state.clone();
        let claims = match state.signer.verify(ticket) {
            Ok(c) => c,
            Err(e) => {
                super::audit(
                    &state,
                    "agent",
                    self.ip,
                    "ticket.use",
                    "invalid",
                    &e.to_string(),
                )
                .await;
                self.refuse(RefuseCode::TicketInvalid, INVALID).await;
                return None;
            }
        };
        let row = match state.db.ticket(&claims.tid).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.refuse(RefuseCode::TicketInvalid, INVALID).await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a ticket");
                self.refuse(RefuseCode::Busy, "The support box cannot take your session right now. Please try again in a minute.").await;
                return None;
            }
        };
        if row.used_at.is_some() {
            super::audit(&state, "agent", self.ip, "ticket.use", "used", &row.id).await;
            self.refuse(RefuseCode::TicketUsed, "This support program has already been used for a session. Please enter a new session key on the support portal and download it again.").await;
            return None;
        }
        if row.expires_at.min(claims.exp) <= now_ms() {
            super::audit(&state, "agent", self.ip, "ticket.use", "expired", &row.id).await;
            self.refuse(RefuseCode::TicketExpired, "This support program has expired. Please enter your session key on the support portal again, or ask your technician for a new one.").await;
            return None;
        }
        // A jump's ticket: its session exists already (accepted by the representative).
        if let Some(session_id) = row.session_id.clone() {
            return self.join_jump(&row.id, &session_id, tx).await;
        }
        let clean = |s: &str| sanitize_text(s).replace('\n', " ").trim().to_string();
        let customer_name = if row.customer_name.is_empty() {
            clean(&info.customer_name)
        } else {
            row.customer_name.clone()
        };
        let customer_name = if customer_name.is_empty() {
            "Customer".to_string()
        } else {
            customer_name
        };
        let language = crate::i18n::Lang::from_code(&info.language)
            .map(|l| l.code().to_string())
            .unwrap_or(row.language.clone());
        let session_id = auth::random_token(16);
        let resume_token = auth::random_token(32);
        let new = NewSession {
            id: &session_id,
            ticket_id: &row.id,
            queue: &row.queue,
            team: row.team.as_deref(),
            owner_id: row.rep_id,
            customer_name: &customer_name,
            computer: &clean(&info.computer),
            platform: &clean(&info.platform),
            language: &language,
            remote_addr: &self.ip.to_string(),
            resume_token_hash: &auth::token_hash(&resume_token),
        };
        let session_row = match state.db.start_session(&new).await {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.refuse(RefuseCode::TicketUsed, "This support program has already been used for a session. Please enter a new session key on the support portal and download it again.").await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a session");
                self.refuse(RefuseCode::Busy, "The support box cannot take your session right now. Please try again in a minute.").await;
                return None;
            }
        };
        super::audit(&state, "agent", self.ip, "ticket.use", "ok", &session_id).await;
        let _ = state
            .db
            .add_event(&session_id, "client_connected", &self.ip.to_string())
            .await;
        let owner_name = row.rep_name.clone();
        let gen_ = state.hub.add_session(session_row, owner_name.clone(), tx);
        let ok = self
            .send(&RelayToAgent::Welcome {
                version: VERSION,
                session_id: session_id.clone(),
                resume_token,
                site: state.config.company.clone(),
                state: SessionState::Terms,
                rep_name: owner_name,
            })
            .await;
        ok.then_some((session_id, gen_))
    }

    /// A jump client's session agent with its one-time ticket: joins the session the
    /// representative opened with the jump ([`crate::jump`]).
    async fn join_jump(
        &mut self,
        ticket_id: &str,
        session_id: &str,
        tx: mpsc::Sender<RelayToAgent>,
    ) -> Option<(String, u64)> {
        let state = self.state.clone();
        let resume_token = auth::random_token(32);
        let hash = auth::token_hash(&resume_token);
        let ip = self.ip.to_string();
        match crate::jump::store::use_jump_ticket(&state.db, ticket_id, session_id, &hash, &ip)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                super::audit(&state, "agent", self.ip, "ticket.use", "used", ticket_id).await;
                self.refuse(
                    RefuseCode::TicketUsed,
                    "This session has already been started or has ended.",
                )
                .await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot use a jump ticket");
                self.refuse(RefuseCode::Busy, "The support box cannot take your session right now. Please try again in a minute.").await;
                return None;
            }
        }
        state.hub.set_resume_hash(session_id, &hash);
        let Some((gen_, session_state, rep, _)) = state.hub.attach_agent(session_id, |_| true, tx)
        else {
            self.refuse(RefuseCode::SessionEnded, "This support session has ended.")
                .await;
            return None;
        };
        super::audit(&state, "agent", self.ip, "ticket.use", "ok", session_id).await;
        crate::jump::api::session_joined(&state, session_id, self.ip).await;
        let _ = state
            .db
            .add_event(session_id, "client_connected", &ip)
            .await;
        let mut ok = self
            .send(&RelayToAgent::Welcome {
                version: VERSION,
                session_id: session_id.to_string(),
                resume_token,
                site: state.config.company.clone(),
                state: session_state,
                rep_name: rep.clone(),
            })
            .await;
        if let Some(name) = rep {
            ok &= self.send(&RelayToAgent::RepJoined { name }).await;
        }
        ok.then(|| (session_id.to_string(), gen_))
    }

    /// Reconnection after a dropped link.
    async fn resume(
        &mut self,
        session_id: &str,
        token: &str,
        tx: mpsc::Sender<RelayToAgent>,
    ) -> Option<(String, u64)> {
        let state = self.state.clone();
        let presented = auth::token_hash(token);
        let attached =
            state
                .hub
                .attach_agent(session_id, |stored| auth::secret_eq(&presented, stored), tx);
        let Some((gen_, session_state, rep, position)) = attached else {
            let ended = matches!(state.db.session(session_id).await, Ok(Some(r)) if r.state == "ended"
                && auth::secret_eq(&r.resume_token_hash, &presented));
            if ended {
                self.refuse(RefuseCode::SessionEnded, "This support session has ended.")
                    .await;
            } else {
                super::audit(&state, "agent", self.ip, "session.resume", "refused", "").await;
                self.refuse(RefuseCode::TicketInvalid, "This support session cannot be resumed. Please start a new one from the support portal.").await;
            }
            return None;
        };
        let _ = state
            .db
            .add_event(session_id, "client_reconnected", &self.ip.to_string())
            .await;
        let mut ok = self
            .send(&RelayToAgent::Welcome {
                version: VERSION,
                session_id: session_id.to_string(),
                resume_token: token.to_string(),
                site: state.config.company.clone(),
                state: session_state,
                rep_name: rep.clone(),
            })
            .await;
        if let Some(position) = position {
            ok &= self.send(&RelayToAgent::Queue { position }).await;
        }
        if let (SessionState::Active, Some(name)) = (session_state, rep) {
            ok &= self.send(&RelayToAgent::RepJoined { name }).await;
        }
        ok.then(|| (session_id.to_string(), gen_))
    }

    async fn serve(&mut self, session_id: &str, mut rx: mpsc::Receiver<RelayToAgent>) -> Exit {
        let Some(room) = self.state.hub.room(session_id) else {
            self.close(1000, "session closed").await;
            return Exit::Closed;
        };
        let mut shutdown = self.state.shutdown.clone();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut rtt_ping = tokio::time::interval(RTT_PING_EVERY);
        rtt_ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let mut chat_budget = ChatBudget::new();
        let mut nonce = 0u64;
        let mut pings = Pings::default();
        let (_files_link, mut files_rx) = self.state.hub.files.attach(session_id);
        let hub = self.state.hub.clone();
        let (_shell_link, mut shell_rx) = hub.shells.attach(session_id);
        loop {
            tokio::select! {
                incoming = self.socket.recv() => {
                    last_seen = Instant::now();
                    let text = match incoming {
                        None | Some(Ok(Message::Close(_))) => return Exit::Closed,
                        Some(Err(e)) => {
                            let e = crate::error_chain(&e);
                            // The WebSocket layer refuses messages over the size limit.
                            if e.contains("too long") || e.contains("Space limit") {
                                return self.fail(ErrorCode::TooLarge, format!("message too large: {e}")).await;
                            }
                            return Exit::Closed;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(b))) => {
                            let header = match frame::decode(&b) {
                                Ok((h, _)) => h,
                                Err(e) => return self.fail(ErrorCode::Malformed, format!("bad binary frame: {e}")).await,
                            };
                            match header.channel {
                                Channel::Screen | Channel::Cursor => room.route(&header, b),
                                Channel::File => {
                                    let payload = &b[frame::HEADER_LEN..];
                                    if let Err(e) = lifeline_proto::files::Chunk::decode(payload) {
                                        return self.fail(ErrorCode::Malformed, format!("bad file chunk: {e}")).await;
                                    }
                                    self.state.hub.files.from_agent_frame(session_id, b);
                                }
                                Channel::Shell => {
                                    let payload = &b[frame::HEADER_LEN..];
                                    if let Err(e) = lifeline_proto::shell::ShellData::decode(payload) {
                                        return self.fail(ErrorCode::Malformed, format!("bad shell frame: {e}")).await;
                                    }
                                    self.state.hub.shells.from_agent_frame(session_id, b);
                                }
                            }
                            continue;
                        }
                        Some(Ok(Message::Text(t))) => t,
                    };
                    let msg = match AgentToRelay::decode(&text) {
                        Ok(m) => m,
                        Err(e) => return self.fail(decode_code(&e), e.to_string()).await,
                    };
                    if let AgentToRelay::Pong { nonce } = msg {
                        if let Some(rtt) = pings.answered(nonce) {
                            room.set_agent_rtt(u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX));
                        }
                        continue;
                    }
                    match self.handle(session_id, &room, msg, &mut chat_budget).await {
                        Step::Continue => {}
                        Step::Exit(e) => return e,
                    }
                }
                out = rx.recv() => {
                    let Some(msg) = out else {
                        // The hub let go of this link (the session ended or was taken over).
                        self.close(1000, "session closed").await;
                        return Exit::Closed;
                    };
                    let ended = matches!(msg, RelayToAgent::Ended { .. });
                    if !self.send(&msg).await {
                        return Exit::Closed;
                    }
                    if ended {
                        self.close(1000, "session ended").await;
                        return Exit::Closed;
                    }
                }
                Some(out) = files_rx.recv() => {
                    let ok = match out {
                        crate::files::ToAgent::Text(msg) => self.send(&msg).await,
                        crate::files::ToAgent::Binary(b) => {
                            self.socket.send(Message::Binary(b)).await.is_ok()
                        }
                    };
                    if !ok {
                        return Exit::Closed;
                    }
                }
                Some(out) = shell_rx.recv() => {
                    let ok = match out {
                        crate::shell::ToAgent::Text(msg) => self.send(&msg).await,
                        crate::shell::ToAgent::Binary(b) => {
                            self.socket.send(Message::Binary(b)).await.is_ok()
                        }
                    };
                    if !ok {
                        return Exit::Closed;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > SILENCE_LIMIT {
                        return Exit::Closed;
                    }
                    nonce += 1;
                    pings.sent(nonce);
                    if !self.send(&RelayToAgent::Ping { nonce }).await {
                        return Exit::Closed;
                    }
                }
                _ = rtt_ping.tick() => {
                    if room.is_active() {
                        nonce += 1;
                        pings.sent(nonce);
                        if !self.send(&RelayToAgent::Ping { nonce }).await {
                            return Exit::Closed;
                        }
                    }
                }
                _ = super::until_shutdown(&mut shutdown) => {
                    self.close(1012, "the support box is restarting").await;
                    return Exit::Closed;
                }
            }
        }
    }

    async fn handle(
        &mut self,
        session_id: &str,
        room: &Room,
        msg: AgentToRelay,
        budget: &mut ChatBudget,
    ) -> Step {
        let hub = self.state.hub.clone();
        let current = hub.state_of(session_id);
        match msg {
            AgentToRelay::Hello { .. } => Step::Exit(
                self.fail(ErrorCode::OutOfOrder, "hello was already sent".into())
                    .await,
            ),
            AgentToRelay::AcceptTerms => {
                if let Err(e) = hub.enqueue(session_id).await {
                    tracing::error!(error = %e, "cannot queue a session");
                }
                Step::Continue
            }
            AgentToRelay::Chat { text } => {
                if !matches!(current, Some(SessionState::Waiting | SessionState::Active)) {
                    return Step::Exit(
                        self.fail(
                            ErrorCode::OutOfOrder,
                            "chat before the terms were accepted".into(),
                        )
                        .await,
                    );
                }
                if !budget.take() {
                    return Step::Exit(
                        self.fail(ErrorCode::RateLimited, "too many chat messages".into())
                            .await,
                    );
                }
                let text = sanitize_text(&text);
                let text = text.trim();
                if !text.is_empty()
                    && let Err(e) = hub.customer_chat(session_id, text).await
                {
                    tracing::error!(error = %e, "cannot store a chat message");
                }
                Step::Continue
            }
            AgentToRelay::End { reason } => {
                let reason = sanitize_text(&reason);
                let reason = if reason.trim().is_empty() {
                    "ended by the customer".to_string()
                } else {
                    format!("ended by the customer: {}", reason.trim())
                };
                if let Err(e) = hub.end(session_id, Party::Customer, &reason).await {
                    tracing::warn!(error = %e, "cannot end a session");
                }
                // The hub queued `Ended` on this link; the loop sends it and closes.
                Step::Continue
            }
            AgentToRelay::Pong { .. } => Step::Continue,
            AgentToRelay::Permission { .. }
            | AgentToRelay::Monitors { .. }
            | AgentToRelay::Clipboard { .. }
            | AgentToRelay::File { .. }
            | AgentToRelay::SystemInfo { .. }
            | AgentToRelay::SystemInfoFailed { .. }
            | AgentToRelay::ProcessEnd { .. }
            | AgentToRelay::Installed { .. }
                if current != Some(SessionState::Active) =>
            {
                Step::Exit(
                    self.fail(
                        ErrorCode::OutOfOrder,
                        "no representative has joined this session".into(),
                    )
                    .await,
                )
            }
            AgentToRelay::Permission {
                permission,
                granted,
            } => {
                if let Err(e) = hub.agent_permission(session_id, permission, granted).await {
                    tracing::error!(error = %e, "cannot record a permission");
                }
                Step::Continue
            }
            AgentToRelay::Monitors { monitors } => {
                let monitors = monitors
                    .into_iter()
                    .map(|mut m| {
                        m.name = sanitize_text(&m.name);
                        m
                    })
                    .collect();
                room.set_monitors(monitors);
                Step::Continue
            }
            AgentToRelay::Clipboard { text } => {
                if !room.agent_clipboard(text) {
                    tracing::debug!("clipboard text without a clipboard grant dropped");
                }
                Step::Continue
            }
            AgentToRelay::File { reply } => {
                hub.files.from_agent(hub.db(), session_id, reply).await;
                Step::Continue
            }
            AgentToRelay::SystemInfo {
                request,
                part,
                last,
                data,
            } => {
                hub.sysinfo.part(session_id, request, part, last, &data);
                Step::Continue
            }
            AgentToRelay::SystemInfoFailed { request, reason } => {
                hub.sysinfo.failed(session_id, request, &reason);
                Step::Continue
            }
            // Also after the representative left: answers about a shell that is gone (sent
            // after a reconnection, say) are dropped there.
            AgentToRelay::Shell { reply } => {
                hub.shells.from_agent(session_id, reply);
                Step::Continue
            }
            AgentToRelay::ProcessEnd {
                request,
                outcome,
                message,
                ..
            } => {
                let outcome = crate::tools::AgentAnswer::End(outcome);
                hub.sysinfo.answered(session_id, request, outcome, &message);
                Step::Continue
            }
            AgentToRelay::Installed {
                request,
                outcome,
                message,
            } => {
                let outcome = crate::tools::AgentAnswer::Install(outcome);
                hub.sysinfo.answered(session_id, request, outcome, &message);
                Step::Continue
            }
        }
    }
}

/// Pings sent and not answered yet, to measure the round trip.
#[derive(Default)]
struct Pings {
    sent: std::collections::VecDeque<(u64, Instant)>,
}

impl Pings {
    fn sent(&mut self, nonce: u64) {
        if self.sent.len() == 8 {
            self.sent.pop_front();
        }
        self.sent.push_back((nonce, Instant::now()));
    }

    /// The round trip of the ping with this nonce, if it was ours.
    fn answered(&mut self, nonce: u64) -> Option<Duration> {
        let i = self.sent.iter().position(|(n, _)| *n == nonce)?;
        let (_, at) = self.sent.remove(i)?;
        // Older pings were answered out of order or lost: forget them.
        self.sent.drain(..i);
        Some(at.elapsed())
    }
}

enum Step {
    Continue,
    Exit(Exit),
}

fn decode_code(e: &DecodeError) -> ErrorCode {
    match e {
        DecodeError::TooLarge(_) | DecodeError::FieldTooLong { .. } => ErrorCode::TooLarge,
        DecodeError::Malformed(_) | DecodeError::FieldEmpty { .. } => ErrorCode::Malformed,
    }
}

/// At most 5 chat messages a second with bursts of 20.
struct ChatBudget {
    tokens: f64,
    last: Instant,
}

impl ChatBudget {
    fn new() -> Self {
        ChatBudget {
            tokens: 20.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * 5.0).min(20.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
