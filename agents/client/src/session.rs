//! The protocol driver: one customer session, with or without a window.
//!
//! [`Session::start`] spawns a task on the current Tokio runtime that connects (see
//! [`crate::net`]), says [`AgentToRelay::Hello`] with the ticket, and then relays: commands
//! from the UI ([`SessionHandle`]) go to the box, messages from the box come out as
//! [`Event`]s. It answers the box's pings and sends WebSocket pings of its own, so a dead link
//! is noticed even when the box is silent.
//!
//! When the link drops before the session ended, the driver reconnects with exponential
//! backoff and jitter ([`Backoff`]) and rejoins with [`AgentAuth::Resume`] (the session id and
//! resume token from `Welcome`, kept in memory only). Chat typed meanwhile is queued and sent
//! after the link is restored. After [`Backoff::give_up_after`] without a link it reports
//! [`Event::Fatal`].
//!
//! Every step is logged at `info` as one line of `key=value` pairs starting with `event=`
//! (strings in Rust debug quoting, so a line never breaks): integration tests grep for them.
//!
//! The box may echo the customer's own chat back as [`Event::Chat`] with
//! `from: Party::Customer`; a UI that shows typed messages at once should skip those.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lifeline_proto::agent::{
    AgentAuth, AgentInfo, AgentToRelay, Party, RefuseCode, RelayToAgent, SessionState,
};
use lifeline_proto::remote::Permission;
use lifeline_proto::ticket::TicketFile;
use lifeline_proto::{MAX_CHAT_CHARS, VERSION, encode, sanitize_text};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::consent::{Change, Consent, DEFAULT_ASK_TIMEOUT, Decision, Requested};
use crate::desktop::{Desktop, Outgoing, Remote};
use crate::env::Env;
use crate::files::{FileOut, Files};
use crate::net::{self, NetError, WsStream};
use crate::tools::shell::{ShellChange, ShellOut, ShellTool};
use crate::tools::{EndDone, Tools};

/// What the UI asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AcceptTerms,
    Chat(String),
    /// The customer's answer to a permission question, or (`allow: false`) the withdrawal
    /// of a granted permission.
    Permission {
        permission: Permission,
        allow: bool,
    },
    /// End the session; the reason is recorded by the box (e.g. "declined terms").
    End(String),
    /// The customer sends this file to the technician (while file transfer is allowed).
    SendFile(std::path::PathBuf),
    /// The customer answers the file-transfer question with "Allow only one folder…": file
    /// transfer is allowed inside this folder only (refused if it cannot be shared).
    AllowFilesIn(std::path::PathBuf),
    /// The customer's answer to a request to end a process.
    EndProcess {
        request: u32,
        allow: bool,
    },
    /// The customer closes the open command shell.
    CloseShell,
    /// The customer's answer to an offer to install something.
    Install {
        request: u32,
        allow: bool,
    },
}

/// What happened, for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The box welcomed us (first connection only; later ones give [`Event::LinkRestored`]).
    Connected {
        site: String,
        rep_name: Option<String>,
        state: SessionState,
    },
    /// The box refused the ticket; `message` is the box's sentence. Final.
    Refused {
        code: RefuseCode,
        message: String,
    },
    /// 1-based position in the queue.
    Queue {
        position: u32,
    },
    RepJoined {
        name: String,
    },
    RepLeft {
        name: String,
    },
    Chat {
        from: Party,
        name: String,
        text: String,
        /// Milliseconds since the Unix epoch.
        at: i64,
    },
    /// The session is over. Final.
    Ended {
        by: Party,
        reason: String,
    },
    /// The link dropped; trying again (1-based attempt).
    Reconnecting {
        attempt: u32,
    },
    LinkRestored,
    /// The session cannot go on; `message` says why and what to do. Final.
    Fatal {
        message: String,
    },
    /// The technician asks for a permission; without an answer within `expires_in` it
    /// counts as refused (the session decides that, and reports it as [`Event::Permission`]).
    PermissionAsked {
        permission: Permission,
        rep: String,
        expires_in: Duration,
    },
    /// A permission was granted, refused, withdrawn, or is not available here.
    Permission {
        permission: Permission,
        change: Change,
    },
    /// The technician asks to end a process; without an answer within `expires_in` it
    /// counts as refused (reported as [`Event::EndProcessDone`]).
    EndProcessAsked {
        request: u32,
        pid: u32,
        name: String,
        rep: String,
        expires_in: Duration,
    },
    /// What became of a request to end a process.
    EndProcessDone(EndDone),
    /// A command shell opened or closed.
    Shell(ShellChange),
    /// The technician offers to install a jump client or a support button; without an
    /// answer within `expires_in` it counts as refused.
    InstallAsked {
        request: u32,
        what: lifeline_proto::install::InstallKind,
        rep: String,
        expires_in: Duration,
    },
    /// What became of an offer the customer agreed to.
    InstallDone(crate::tools::install::InstallDone),
}

/// Reconnection delays: `base` doubling up to `max`, each with jitter, for at most
/// `give_up_after` since the link was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(15),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The nominal delay before retry number `attempt` (0-based): `base * 2^attempt`, capped.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(20);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay with jitter: `jitter` in `[0, 1]` picks a point between half the nominal
    /// delay and all of it, so many clients cut off together do not return together.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let nominal = self.nominal(attempt);
        nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// A random number in `[0, 1)` from the standard library's per-process random hash keys
/// (good enough for jitter; not for secrets).
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Tunables of a session; the defaults are the product's.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub backoff: Backoff,
    /// Where the proxy settings are read from.
    pub env: Env,
    /// How many times the very first connection is tried before giving up.
    pub initial_attempts: u32,
    /// How long to wait for `Welcome` after `Hello`.
    pub hello_timeout: Duration,
    /// How often to send a WebSocket ping.
    pub keepalive: Duration,
    /// A link from which nothing arrived for this long is considered dead.
    pub idle_timeout: Duration,
    /// How long `End` waits for the box's answer before closing.
    pub end_grace: Duration,
    /// How long the customer has to answer a permission question.
    pub ask_timeout: Duration,
    /// The desktop the technician may see and control once the customer allows it; `None`
    /// (a headless run) offers nothing, and every request is answered "not available".
    pub desktop: Option<Arc<dyn Desktop>>,
    /// The folder shared for file transfer; `None` shares the home folder (`$HOME`).
    pub files_root: Option<std::path::PathBuf>,
    /// Permissions granted without a question (a jump the box allows unattended, or one the
    /// user already allowed: seeing and controlling the screen). The box's policy still
    /// decides what a representative may ask for.
    pub granted_without_asking: Vec<Permission>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            env: Env::from_process(),
            initial_attempts: 3,
            hello_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            end_grace: Duration::from_secs(1),
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            desktop: None,
            files_root: None,
            granted_without_asking: Vec::new(),
        }
    }
}

/// The UI's side of a running session. Cheap to clone; usable from any thread (sending a
/// command never blocks).
#[derive(Debug, Clone)]
pub struct SessionHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Its sender is dropped when the driver task ends.
    done: watch::Receiver<()>,
}

impl SessionHandle {
    /// Sends a command; `false` when the session is already over.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    pub fn accept_terms(&self) -> bool {
        self.send(Command::AcceptTerms)
    }

    pub fn chat(&self, text: impl Into<String>) -> bool {
        self.send(Command::Chat(text.into()))
    }

    pub fn end(&self, reason: impl Into<String>) -> bool {
        self.send(Command::End(reason.into()))
    }

    /// Answers a permission question, or withdraws a granted permission (`allow: false`).
    pub fn permission(&self, permission: Permission, allow: bool) -> bool {
        self.send(Command::Permission { permission, allow })
    }

    /// Answers a request to end a process.
    pub fn end_process(&self, request: u32, allow: bool) -> bool {
        self.send(Command::EndProcess { request, allow })
    }

    /// Waits until the driver has stopped (after `End` went out, or a final event).
    pub async fn finished(&self) {
        let mut done = self.done.clone();
        while done.changed().await.is_ok() {}
    }

    /// Whether the driver has stopped.
    pub fn is_finished(&self) -> bool {
        self.done.has_changed().is_err()
    }
}

/// Starts sessions.
#[derive(Debug)]
pub struct Session;

impl Session {
    /// Starts a session with the product's defaults. Must be called inside a Tokio runtime.
    pub fn start(ticket: TicketFile, info: AgentInfo) -> (SessionHandle, mpsc::Receiver<Event>) {
        Self::start_with(ticket, info, SessionConfig::default())
    }

    /// Starts a session with explicit tunables. Must be called inside a Tokio runtime.
    pub fn start_with(
        ticket: TicketFile,
        info: AgentInfo,
        config: SessionConfig,
    ) -> (SessionHandle, mpsc::Receiver<Event>) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let (done_tx, done_rx) = watch::channel(());
        let consent = Consent::new(config.ask_timeout);
        let remote = Remote::new(config.desktop.clone());
        let files_root = config
            .files_root
            .clone()
            .or_else(|| config.env.get("HOME").map(std::path::PathBuf::from));
        let driver = Driver {
            files: Files::new(files_root),
            remote,
            tools: Tools::default(),
            shell: {
                let mut shell = ShellTool::new();
                shell.set_language(&info.language);
                shell
            },
            ticket,
            info,
            config,
            consent,
            rep_name: None,
            commands: cmd_rx,
            events: ev_tx,
            resume: None,
            terms_accepted: false,
            outbox: VecDeque::new(),
            _done: done_tx,
        };
        tokio::spawn(driver.run());
        (
            SessionHandle {
                commands: cmd_tx,
                done: done_rx,
            },
            ev_rx,
        )
    }
}

/// Most messages kept for sending while the link is down.
const MAX_OUTBOX: usize = 100;

/// The session is over (its final event was sent).
struct Finished;

/// How a link ended.
enum LinkEnd {
    Finished,
    Lost(String),
}

/// How a connection attempt ended.
enum Attempt {
    Welcomed(Box<WsStream>),
    Finished,
    Failed(Failure),
}

enum Failure {
    Net(NetError),
    /// The link failed after TLS (closed, timed out, not answered).
    Link(String),
}

struct Driver {
    ticket: TicketFile,
    info: AgentInfo,
    config: SessionConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    /// `(session_id, resume_token)` once welcomed.
    resume: Option<(String, String)>,
    terms_accepted: bool,
    consent: Consent,
    /// The desktop as this session uses it (stopped when the driver ends).
    remote: Remote,
    /// File transfer in the shared folder.
    files: Files,
    /// System information (and the other session tools).
    tools: Tools,
    /// The command shell.
    shell: ShellTool,
    /// The technician's name, for permission questions.
    rep_name: Option<String>,
    /// Messages to send once a link is up.
    outbox: VecDeque<AgentToRelay>,
    /// Dropped when the task ends, which wakes [`SessionHandle::finished`].
    _done: watch::Sender<()>,
}

impl Driver {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut lost_at: Option<Instant> = None;
        loop {
            let outcome = self.attempt(failures + 1).await;
            let error = match outcome {
                Attempt::Finished => return,
                Attempt::Welcomed(ws) => {
                    failures = 0;
                    match self.run_link(*ws).await {
                        LinkEnd::Finished => return,
                        LinkEnd::Lost(why) => {
                            warn!("event=link_lost error={why:?}");
                            // Frames made for the lost link are stale; the box says again
                            // who watches once the link is back.
                            self.remote.link_lost();
                            self.files.stop_all();
                            self.shell.close(lifeline_proto::shell::ClosedBy::Session);
                            lost_at = Some(Instant::now());
                            None
                        }
                    }
                }
                Attempt::Failed(failure) => Some(failure),
            };
            if let Some(failure) = error {
                let (sentence, transient) = match &failure {
                    Failure::Net(e) => (e.to_string(), e.is_transient()),
                    Failure::Link(why) => (
                        format!(
                            "the connection to the support box failed ({why}): check your internet connection and try again"
                        ),
                        true,
                    ),
                };
                warn!(
                    "event=connect_failed attempt={} error={:?}",
                    failures + 1,
                    match &failure {
                        Failure::Net(e) => error_chain(e),
                        Failure::Link(why) => why.clone(),
                    }
                );
                if let Failure::Net(NetError::PinMismatch {
                    expected,
                    presented,
                }) = &failure
                {
                    warn!("event=pin_mismatch expected={expected} presented={presented}");
                }
                failures += 1;
                let first_connection = self.resume.is_none();
                if !transient || (first_connection && failures >= self.config.initial_attempts) {
                    self.fatal(sentence).await;
                    return;
                }
            }
            if self.resume.is_some() {
                let delay = self.config.backoff.delay(failures, jitter());
                let lost = lost_at.get_or_insert_with(Instant::now);
                if lost.elapsed() + delay > self.config.backoff.give_up_after {
                    self.fatal(
                        "the connection to the support box was lost and could not be restored: check your internet connection, then ask your technician to start a new session"
                            .to_owned(),
                    )
                    .await;
                    return;
                }
                info!(
                    "event=reconnecting attempt={} delay_ms={}",
                    failures + 1,
                    delay.as_millis()
                );
                self.emit(Event::Reconnecting {
                    attempt: failures + 1,
                })
                .await;
                if self.wait_offline(delay).await.is_err() {
                    return;
                }
            } else {
                let delay = self
                    .config
                    .backoff
                    .delay(failures.saturating_sub(1), jitter());
                if self.wait_offline(delay).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Connects, says hello and waits for the answer.
    async fn attempt(&mut self, number: u32) -> Attempt {
        let auth = match &self.resume {
            Some((session_id, token)) => AgentAuth::Resume {
                session_id: session_id.clone(),
                token: token.clone(),
            },
            None => AgentAuth::Ticket {
                ticket: self.ticket.ticket.clone(),
            },
        };
        info!(
            "event=connecting url={:?} attempt={number} auth={}",
            self.ticket.site_url,
            if self.resume.is_some() {
                "resume"
            } else {
                "ticket"
            }
        );
        let mut ws = match net::connect(&self.ticket, &self.config.env).await {
            Ok(ws) => ws,
            Err(e) => return Attempt::Failed(Failure::Net(e)),
        };
        let hello = AgentToRelay::Hello {
            version: VERSION,
            auth,
            info: self.info.clone(),
        };
        if let Err(e) = ws.send(Message::text(encode(&hello))).await {
            return Attempt::Failed(Failure::Link(e.to_string()));
        }
        let deadline = Instant::now() + self.config.hello_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next()).await;
            let text = match next {
                Err(_) => return Attempt::Failed(Failure::Link("no answer to hello".into())),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Attempt::Failed(Failure::Link("closed before welcome".into()));
                }
                Ok(Some(Err(e))) => return Attempt::Failed(Failure::Link(e.to_string())),
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
            };
            let msg = match RelayToAgent::decode(text.as_str()) {
                Ok(msg) => msg,
                Err(e) => {
                    warn!("event=bad_message error={:?}", e.to_string());
                    continue;
                }
            };
            match msg {
                RelayToAgent::Welcome {
                    version,
                    session_id,
                    resume_token,
                    site,
                    state,
                    rep_name,
                } => {
                    if let Err(e) = VERSION.accepts(version) {
                        self.fatal(e.to_string()).await;
                        return Attempt::Finished;
                    }
                    info!(
                        "event=connected session={session_id} state={} site={site:?}",
                        state_name(state)
                    );
                    let resumed = self.resume.is_some();
                    self.resume = Some((session_id, resume_token));
                    if rep_name.is_some() {
                        self.rep_name.clone_from(&rep_name);
                    }
                    if resumed {
                        info!("event=link_restored");
                        // Standing grants first, then (in front of them) the terms.
                        for grant in self.consent.standing().into_iter().rev() {
                            self.outbox.push_front(grant);
                        }
                        if state == SessionState::Terms && self.terms_accepted {
                            self.outbox.push_front(AgentToRelay::AcceptTerms);
                        }
                        self.emit(Event::LinkRestored).await;
                    } else {
                        self.emit(Event::Connected {
                            site,
                            rep_name,
                            state,
                        })
                        .await;
                    }
                    return Attempt::Welcomed(Box::new(ws));
                }
                RelayToAgent::Refused { code, message } => {
                    let message = sanitize_text(&message);
                    if code == RefuseCode::SessionEnded && self.resume.is_some() {
                        self.ended(Party::System, message).await;
                    } else {
                        info!("event=refused code={} message={message:?}", code_name(code));
                        self.emit(Event::Refused { code, message }).await;
                    }
                    let _ = ws.close(None).await;
                    return Attempt::Finished;
                }
                RelayToAgent::Ping { nonce } => {
                    if let Err(e) = send(&mut ws, &AgentToRelay::Pong { nonce }).await {
                        return Attempt::Failed(Failure::Link(e));
                    }
                }
                RelayToAgent::Error { code, message } => {
                    self.relay_error(code, &message).await;
                    return Attempt::Finished;
                }
                other => debug!("event=ignored before=welcome message={other:?}"),
            }
        }
    }

    /// Runs one welcomed link until the session finishes or the link is lost.
    async fn run_link(&mut self, mut ws: WsStream) -> LinkEnd {
        while let Some(msg) = self.outbox.pop_front() {
            if let Err(e) = send(&mut ws, &msg).await {
                self.outbox.push_front(msg);
                return LinkEnd::Lost(e);
            }
        }
        let mut keepalive = tokio::time::interval(self.config.keepalive);
        keepalive.tick().await;
        let mut last_heard = Instant::now();
        loop {
            let deadline = earliest(self.consent.next_deadline(), self.tools.next_deadline());
            tokio::select! {
                // Control first: the screen never holds up a message, a command or a
                // withdrawn permission.
                biased;
                _ = sleep_until_some(deadline) => {
                    for decision in self.consent.expire(Instant::now()) {
                        self.decided(decision).await;
                    }
                    for done in self.tools.expire(Instant::now()) {
                        self.emit(Event::EndProcessDone(done)).await;
                    }
                    if let Err(e) = self.flush(&mut ws).await {
                        return LinkEnd::Lost(e);
                    }
                }
                incoming = ws.next() => {
                    last_heard = Instant::now();
                    let text = match incoming {
                        None | Some(Ok(Message::Close(_))) => return LinkEnd::Lost("closed by the box".into()),
                        Some(Err(e)) => return LinkEnd::Lost(e.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(b))) => {
                            match lifeline_proto::frame::decode(&b) {
                                Ok((h, payload)) if h.channel == lifeline_proto::frame::Channel::File => {
                                    self.files.chunk(payload);
                                    // An upload keeps this branch ready: let a screen frame
                                    // that is waiting go out between two file chunks.
                                    if let Some(out) = futures_util::FutureExt::now_or_never(self.remote.next())
                                        && let Err(e) = self.on_remote(&mut ws, out).await
                                    {
                                        return LinkEnd::Lost(e);
                                    }
                                }
                                Ok((h, payload)) if h.channel == lifeline_proto::frame::Channel::Shell => {
                                    self.shell.input(payload);
                                }
                                _ => debug!("event=ignored binary_bytes={}", b.len()),
                            }
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    match RelayToAgent::decode(text.as_str()) {
                        Ok(msg) => {
                            if let Err(end) = self.on_relay(&mut ws, msg).await {
                                return end;
                            }
                        }
                        Err(e) => warn!("event=bad_message error={:?}", e.to_string()),
                    }
                }
                command = self.commands.recv() => {
                    let command = command.unwrap_or_else(|| Command::End("client closed".into()));
                    if let Err(end) = self.on_command(&mut ws, command).await {
                        return end;
                    }
                    if let Err(e) = self.flush(&mut ws).await {
                        return LinkEnd::Lost(e);
                    }
                }
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > self.config.idle_timeout {
                        return LinkEnd::Lost("nothing heard from the box".into());
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return LinkEnd::Lost(e.to_string());
                    }
                }
                out = self.tools.next() => {
                    if let Some(done) = self.tools.install_done(&out) {
                        self.emit(Event::InstallDone(done)).await;
                    }
                    if let Err(e) = send(&mut ws, &out).await {
                        return LinkEnd::Lost(e);
                    }
                }
                // The terminal before the screen: a keystroke's echo is small and awaited.
                out = self.shell.next() => {
                    let sent = match out {
                        ShellOut::Reply(reply) => send(&mut ws, &AgentToRelay::Shell { reply }).await,
                        ShellOut::Frame(bytes) => ws
                            .send(Message::Binary(bytes.into()))
                            .await
                            .map_err(|e| e.to_string()),
                        ShellOut::Change(change) => {
                            self.emit(Event::Shell(change)).await;
                            Ok(())
                        }
                    };
                    if let Err(e) = sent {
                        return LinkEnd::Lost(e);
                    }
                }
                out = self.remote.next() => {
                    if let Err(e) = self.on_remote(&mut ws, out).await {
                        return LinkEnd::Lost(e);
                    }
                }
                // Files last: their bytes wait behind control messages and the screen.
                out = self.files.next() => {
                    let sent = match out {
                        FileOut::Reply(reply) => send(&mut ws, &AgentToRelay::File { reply }).await,
                        FileOut::Frame(bytes) => ws
                            .send(Message::Binary(bytes.into()))
                            .await
                            .map_err(|e| e.to_string()),
                    };
                    if let Err(e) = sent {
                        return LinkEnd::Lost(e);
                    }
                }
            }
        }
    }

    /// Sends what the desktop produced.
    async fn on_remote(&mut self, ws: &mut WsStream, out: Outgoing) -> Result<(), String> {
        match out {
            Outgoing::Frame(bytes) => ws
                .send(Message::Binary(bytes.into()))
                .await
                .map_err(|e| e.to_string()),
            Outgoing::Monitors(monitors) => {
                info!("event=monitors count={}", monitors.len());
                send(ws, &AgentToRelay::Monitors { monitors }).await
            }
            Outgoing::Clipboard(text) => {
                if !self.consent.is_granted(Permission::Clipboard) {
                    return Ok(());
                }
                debug!("event=clipboard_out bytes={}", text.len());
                send(ws, &AgentToRelay::Clipboard { text }).await
            }
            Outgoing::StreamFailed(why) => {
                warn!("event=stream_failed error={why:?}");
                Ok(())
            }
        }
    }

    async fn on_relay(&mut self, ws: &mut WsStream, msg: RelayToAgent) -> Result<(), LinkEnd> {
        match msg {
            RelayToAgent::Queue { position } => {
                info!("event=state state=waiting position={position}");
                self.emit(Event::Queue { position }).await;
            }
            RelayToAgent::RepJoined { name } => {
                let name = sanitize_text(&name);
                info!("event=state state=active rep={name:?}");
                self.rep_name = Some(name.clone());
                self.emit(Event::RepJoined { name }).await;
            }
            RelayToAgent::RepLeft { name } => {
                let name = sanitize_text(&name);
                info!("event=rep_left rep={name:?}");
                self.emit(Event::RepLeft { name }).await;
            }
            RelayToAgent::Chat {
                from,
                name,
                text,
                at,
            } => {
                let (name, text) = (sanitize_text(&name), sanitize_text(&text));
                info!(
                    "event=chat from={} name={name:?} text={text:?}",
                    party_name(from)
                );
                self.emit(Event::Chat {
                    from,
                    name,
                    text,
                    at,
                })
                .await;
            }
            RelayToAgent::Ended { by, reason } => {
                self.ended(by, sanitize_text(&reason)).await;
                let _ = ws.close(None).await;
                return Err(LinkEnd::Finished);
            }
            RelayToAgent::Ping { nonce } => {
                debug!("event=ping nonce={nonce}");
                send(ws, &AgentToRelay::Pong { nonce })
                    .await
                    .map_err(LinkEnd::Lost)?;
            }
            RelayToAgent::Refused { code, message } => {
                let message = sanitize_text(&message);
                if code == RefuseCode::SessionEnded {
                    self.ended(Party::System, message).await;
                } else {
                    info!("event=refused code={} message={message:?}", code_name(code));
                    self.emit(Event::Refused { code, message }).await;
                }
                let _ = ws.close(None).await;
                return Err(LinkEnd::Finished);
            }
            RelayToAgent::Error { code, message } => {
                self.relay_error(code, &message).await;
                let _ = ws.close(None).await;
                return Err(LinkEnd::Finished);
            }
            RelayToAgent::Welcome { .. } => warn!("event=ignored message=welcome"),
            RelayToAgent::PermissionRequest { permission, rep } => {
                let rep = sanitize_text(&rep);
                let available = if permission == Permission::FileTransfer {
                    self.files.available()
                } else {
                    self.remote.offers(permission)
                        || Tools::offers(permission)
                        || ShellTool::offers(permission)
                };
                match self.consent.request(permission, available, Instant::now()) {
                    Requested::Ask { .. }
                        if self.config.granted_without_asking.contains(&permission) =>
                    {
                        info!(
                            "event=permission_granted_without_asking permission={}",
                            permission.as_str()
                        );
                        for decision in self.consent.answer(permission, true) {
                            self.decided(decision).await;
                        }
                        self.flush(ws).await.map_err(LinkEnd::Lost)?;
                    }
                    Requested::Ask { deadline } => {
                        info!(
                            "event=permission_asked permission={} rep={rep:?}",
                            permission.as_str()
                        );
                        let rep = if rep.trim().is_empty() {
                            self.rep_name.clone().unwrap_or_default()
                        } else {
                            rep
                        };
                        self.emit(Event::PermissionAsked {
                            permission,
                            rep,
                            expires_in: deadline.saturating_duration_since(Instant::now()),
                        })
                        .await;
                    }
                    Requested::Decided(decision) => {
                        self.decided(decision).await;
                        self.flush(ws).await.map_err(LinkEnd::Lost)?;
                    }
                    Requested::AlreadyAsked => {}
                }
            }
            RelayToAgent::Stream { active, settings } => {
                info!(
                    "event=stream active={active} monitor={:?} quality={}",
                    settings.monitor,
                    wire_name(&settings.quality)
                );
                self.remote.set_stream(active, settings);
            }
            RelayToAgent::FrameAck { frame } => self.remote.ack(frame),
            RelayToAgent::Refresh => self.remote.refresh(),
            RelayToAgent::Input { event } => self.remote.input(event),
            RelayToAgent::Clipboard { text } => {
                self.remote.set_clipboard(sanitize_clipboard(&text));
            }
            RelayToAgent::File { request } => self.files.request(request),
            RelayToAgent::SystemInfoRequest { request } => self.tools.system_info(request),
            RelayToAgent::Shell { request } => self.shell.request(request),
            RelayToAgent::Install {
                request,
                what,
                ticket,
                rep,
            } => {
                let timeout = self.config.ask_timeout;
                let offer = crate::tools::install::Offer {
                    request,
                    what,
                    ticket,
                    deadline: Instant::now() + timeout,
                };
                if self.tools.install_offered(&self.ticket, offer).is_some() {
                    let rep = sanitize_text(&rep);
                    self.emit(Event::InstallAsked {
                        request,
                        what,
                        rep,
                        expires_in: timeout,
                    })
                    .await;
                }
            }
            RelayToAgent::EndProcess {
                request,
                pid,
                name,
                rep,
            } => {
                let name = sanitize_text(&name);
                let timeout = self.config.ask_timeout;
                if self
                    .tools
                    .end_process_asked(request, pid, &name, timeout)
                    .is_some()
                {
                    let rep = sanitize_text(&rep);
                    let rep = if rep.trim().is_empty() {
                        self.rep_name.clone().unwrap_or_default()
                    } else {
                        rep
                    };
                    self.emit(Event::EndProcessAsked {
                        request,
                        pid,
                        name,
                        rep,
                        expires_in: timeout,
                    })
                    .await;
                }
            }
        }
        Ok(())
    }

    async fn on_command(&mut self, ws: &mut WsStream, command: Command) -> Result<(), LinkEnd> {
        let msg = match self.prepare(command) {
            Prepared::Send(msg) => msg,
            Prepared::Nothing => return Ok(()),
            Prepared::Decided(decisions) => {
                for decision in decisions {
                    self.decided(decision).await;
                }
                return Ok(());
            }
            Prepared::EndDone(done) => {
                if let Some(done) = done {
                    self.emit(Event::EndProcessDone(done)).await;
                }
                return Ok(());
            }
            Prepared::End(reason) => {
                let msg = AgentToRelay::End {
                    reason: reason.clone(),
                };
                if send(ws, &msg).await.is_ok() {
                    // Give the box a moment to answer, so the End is surely delivered.
                    let grace = self.config.end_grace;
                    let _ = tokio::time::timeout(grace, async {
                        while let Some(Ok(m)) = ws.next().await {
                            if let Message::Text(t) = &m
                                && let Ok(RelayToAgent::Ended { .. }) = RelayToAgent::decode(t)
                            {
                                break;
                            }
                        }
                    })
                    .await;
                    let _ = tokio::time::timeout(grace, ws.close(None)).await;
                }
                self.ended(Party::Customer, reason).await;
                return Err(LinkEnd::Finished);
            }
        };
        if let Err(e) = send(ws, &msg).await {
            self.queue(msg);
            return Err(LinkEnd::Lost(e));
        }
        Ok(())
    }

    /// Checks and logs a command; what to send for it.
    fn prepare(&mut self, command: Command) -> Prepared {
        match command {
            Command::AcceptTerms => {
                info!("event=terms_accepted");
                self.terms_accepted = true;
                Prepared::Send(AgentToRelay::AcceptTerms)
            }
            Command::Chat(text) => {
                let text: String = sanitize_text(&text)
                    .trim()
                    .chars()
                    .take(MAX_CHAT_CHARS)
                    .collect();
                if text.is_empty() {
                    return Prepared::Nothing;
                }
                info!("event=chat from=customer text={text:?}");
                Prepared::Send(AgentToRelay::Chat { text })
            }
            Command::End(reason) => {
                let reason: String = sanitize_text(&reason).chars().take(500).collect();
                Prepared::End(reason)
            }
            Command::Permission { permission, allow } => {
                let decisions = self.consent.answer(permission, allow);
                Prepared::Decided(decisions)
            }
            Command::SendFile(path) => {
                self.files.offer(path);
                Prepared::Nothing
            }
            Command::AllowFilesIn(dir) => {
                let allow = match self.files.limit_to(&dir) {
                    Ok(()) => true,
                    Err(e) => {
                        warn!("event=file_limit_refused message={:?}", e.message);
                        false
                    }
                };
                let decisions = self.consent.answer(Permission::FileTransfer, allow);
                if decisions.is_empty() {
                    // The question was no longer open: the choice is for nothing.
                    self.files.clear_limit();
                }
                Prepared::Decided(decisions)
            }
            Command::EndProcess { request, allow } => {
                Prepared::EndDone(self.tools.answer_end(request, allow))
            }
            Command::CloseShell => {
                self.shell.close(lifeline_proto::shell::ClosedBy::Customer);
                Prepared::Nothing
            }
            Command::Install { request, allow } => {
                self.tools.answer_install(request, allow);
                Prepared::Nothing
            }
        }
    }

    /// Logs a decision, queues its message for the box and tells the window.
    async fn decided(&mut self, decision: Decision) {
        info!(
            "event=permission permission={} change={}",
            decision.permission.as_str(),
            decision.change.name()
        );
        self.remote
            .set_grant(decision.permission, decision.change.granted());
        if decision.permission == Permission::FileTransfer {
            self.files.set_grant(decision.change.granted());
            // Which folder is shared goes first, so the box records it with the grant.
            if let Some(shared) = self.files.shared() {
                self.queue(AgentToRelay::File { reply: shared });
            }
        }
        self.shell
            .set_grant(decision.permission, decision.change.granted());
        let refused = self
            .tools
            .set_grant(decision.permission, decision.change.granted());
        for done in refused {
            self.emit(Event::EndProcessDone(done)).await;
        }
        self.queue(decision.message());
        self.emit(Event::Permission {
            permission: decision.permission,
            change: decision.change,
        })
        .await;
    }

    /// Sends what is queued.
    async fn flush(&mut self, ws: &mut WsStream) -> Result<(), String> {
        while let Some(msg) = self.outbox.pop_front() {
            if let Err(e) = send(ws, &msg).await {
                self.outbox.push_front(msg);
                return Err(e);
            }
        }
        Ok(())
    }

    fn queue(&mut self, msg: AgentToRelay) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push_back(msg);
        } else {
            warn!("event=dropped reason=outbox_full");
        }
    }

    /// Sleeps while offline, still taking commands: chat is queued, End finishes.
    async fn wait_offline(&mut self, delay: Duration) -> Result<(), Finished> {
        let wake = Instant::now() + delay;
        loop {
            let deadline = self.consent.next_deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => return Ok(()),
                _ = sleep_until_some(deadline) => {
                    for decision in self.consent.expire(Instant::now()) {
                        self.decided(decision).await;
                    }
                }
                command = self.commands.recv() => {
                    let command = command.unwrap_or_else(|| Command::End("client closed".into()));
                    match self.prepare(command) {
                        Prepared::Send(msg) => self.queue(msg),
                        Prepared::Nothing => {}
                        Prepared::Decided(decisions) => {
                            for decision in decisions {
                                self.decided(decision).await;
                            }
                        }
                        Prepared::EndDone(done) => {
                            if let Some(done) = done {
                                self.emit(Event::EndProcessDone(done)).await;
                            }
                        }
                        Prepared::End(reason) => {
                            self.ended(Party::Customer, reason).await;
                            return Err(Finished);
                        }
                    }
                }
            }
        }
    }

    async fn ended(&mut self, by: Party, reason: String) {
        self.remote.stop_all();
        self.files.set_grant(false);
        info!("event=ended by={} reason={reason:?}", party_name(by));
        self.emit(Event::Ended { by, reason }).await;
    }

    async fn fatal(&mut self, message: String) {
        self.remote.stop_all();
        self.files.set_grant(false);
        info!("event=fatal message={message:?}");
        self.emit(Event::Fatal { message }).await;
    }

    async fn relay_error(&mut self, code: lifeline_proto::agent::ErrorCode, message: &str) {
        let message = sanitize_text(message);
        warn!("event=relay_error code={code:?} message={message:?}");
        self.fatal(format!(
            "the support box reported a problem and closed the connection ({message}): ask your technician to start a new session"
        ))
        .await;
    }

    async fn emit(&self, event: Event) {
        // A UI that went away does not stop the protocol (End still goes out).
        let _ = self.events.send(event).await;
    }
}

enum Prepared {
    Send(AgentToRelay),
    Nothing,
    End(String),
    Decided(Vec<Decision>),
    EndDone(Option<EndDone>),
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Clipboard text from the box, with control characters other than line breaks and tabs
/// removed.
fn sanitize_clipboard(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn send(ws: &mut WsStream, msg: &AgentToRelay) -> Result<(), String> {
    ws.send(Message::text(encode(msg)))
        .await
        .map_err(|e| e.to_string())
}

/// An error and its causes as one line: "outer: inner: innermost".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The wire names (snake_case) of protocol enums, for log lines.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    encode(value).trim_matches('"').to_owned()
}

pub fn state_name(state: SessionState) -> String {
    wire_name(&state)
}

pub fn party_name(party: Party) -> String {
    wire_name(&party)
}

pub fn code_name(code: RefuseCode) -> String {
    wire_name(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let b = Backoff::default();
        let nominal: Vec<f64> = (0..8).map(|a| b.nominal(a).as_secs_f64()).collect();
        assert_eq!(nominal, [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]);
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(15));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        for _ in 0..100 {
            let d = b.delay(2, jitter());
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
        // Total time of the nominal schedule before giving up is about two minutes.
        let mut total = Duration::ZERO;
        let mut n = 0;
        while total + b.nominal(n) <= b.give_up_after {
            total += b.nominal(n);
            n += 1;
        }
        assert!((8..=14).contains(&n), "{n} attempts");
    }

    #[test]
    fn jitter_is_spread() {
        let samples: Vec<f64> = (0..200).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.iter().any(|j| *j < 0.3) && samples.iter().any(|j| *j > 0.7));
    }

    #[test]
    fn log_names_are_wire_names() {
        assert_eq!(state_name(SessionState::Waiting), "waiting");
        assert_eq!(party_name(Party::Rep), "rep");
        assert_eq!(code_name(RefuseCode::TicketUsed), "ticket_used");
    }
}
