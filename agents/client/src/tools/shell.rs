//! The command shell on the customer's side: one terminal at a time, opened only while the
//! customer's `shell` (or `elevated_shell`) grant stands.
//!
//! [`ShellTool::request`] takes the relay's [`ShellRequest`]s. `open` starts the user's login
//! shell on a pseudo-terminal ([`crate::platform::linux::pty`]) with the customer's own
//! rights; a thread reads the terminal and sends its bytes as shell frames, batched (what
//! arrives within [`BATCH`] of the first byte, up to [`BATCH_BYTES`]) and flow-controlled:
//! it stops reading while [`WINDOW`] bytes wait for the console's acknowledgement, so the
//! program waits on its terminal rather than filling memory. Input frames are written to the
//! terminal as they come; `resize` sets its size.
//!
//! The shell ends when the program exits, when the representative closes it, when the
//! customer presses "Close it" ([`ShellTool::close`]) or withdraws the grant, and when the
//! link or session ends; each time the relay gets one [`ShellReply::Closed`] saying why.
//! Answers go out ahead of queued output (a close is not held up by a flood), except the
//! end of a program, which follows its last output.
//!
//! # Administrator
//! `elevated` opens a root shell only when the customer authorises it on their side (after
//! allowing `elevated_shell` in the window): a client that already runs as root opens the
//! shell directly; otherwise, with `sudo`, the terminal runs `sudo -A -v` with this very
//! client as the password program (`SUDO_ASKPASS`, started in its askpass mode: a small
//! dialog in the customer's session, the password going from it to sudo on this computer and
//! never on the wire), then, once authorised, root's login shell (`sudo -n -i`) on the same
//! terminal. Only then is the shell `opened`. Cancelling the dialog is
//! [`ShellErrorCode::Declined`]; no `sudo`, or sudo refusing (not in the sudoers file, three
//! wrong passwords), is [`ShellErrorCode::ElevationUnavailable`] ("Running as administrator
//! is not possible on this computer", with sudo's last words).
//!
//! Limits: one shell at a time; Linux only; polkit's `pkexec` is not used (its own dialog
//! needs an authentication agent in the session, which cannot be told from here).

use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lifeline_proto::frame::{self, Channel};
use lifeline_proto::remote::Permission;
use lifeline_proto::shell::{
    ClosedBy, MAX_DATA, ShellData, ShellErrorCode, ShellReply, ShellRequest, WINDOW,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How long the reader gathers output after the first byte of a batch.
pub const BATCH: Duration = Duration::from_millis(4);
/// Largest batch of output in one frame.
pub const BATCH_BYTES: usize = 32 * 1024;
const _: () = assert!(BATCH_BYTES <= MAX_DATA);
/// Messages waiting for the session's driver.
const QUEUE: usize = 16;

/// The sentence shown when no administrator shell can be had.
pub const NO_ELEVATION: &str = "Running as administrator is not possible on this computer";
/// Set in the environment of `sudo`: this client, started as its password program, asks the
/// customer in a dialog instead of starting a session.
pub const ASKPASS_ENV: &str = "LIFELINE_ASKPASS";
/// The customer's language for that dialog.
pub const ASKPASS_LANG_ENV: &str = "LIFELINE_ASKPASS_LANG";
/// A file the dialog writes "cancelled" into when the customer cancels.
pub const ASKPASS_RESULT_ENV: &str = "LIFELINE_ASKPASS_RESULT";
/// What the terminal prints once sudo has authorised (an operating-system command that
/// terminals ignore), as bytes and as written for `printf`.
const MARKER: &[u8] = b"\x1b]777;lifeline-elevated\x07";
const MARKER_SH: &str = "\\033]777;lifeline-elevated\\007";
/// Most bytes kept while waiting for the authorisation (sudo's messages).
const MAX_PREAMBLE: usize = 16 * 1024;

/// `sudo` on the usual paths.
fn sudo_path() -> Option<std::path::PathBuf> {
    ["/usr/bin/sudo", "/bin/sudo", "/usr/local/bin/sudo"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Waits for sudo's authorisation on the terminal; forwards what follows the marker. On
/// failure, answers why (the customer cancelled the dialog: declined; anything else: not
/// possible, with sudo's last words) and returns false.
fn authorise(
    id: u32,
    reader: &mut File,
    result: &std::path::Path,
    tx: &mpsc::Sender<ShellOut>,
    flow: &Flow,
    closed: &AtomicBool,
    answers: &mpsc::UnboundedSender<ShellReply>,
) -> bool {
    let mut pre: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = crate::platform::linux::pty::read_batch(reader, &mut buf, BATCH).unwrap_or(0);
        if n == 0 {
            break;
        }
        pre.extend_from_slice(&buf[..n]);
        if let Some(i) = pre.windows(MARKER.len()).position(|w| w == MARKER) {
            let rest = pre[i + MARKER.len()..].to_vec();
            info!("event=shell_elevated id={id}");
            if !rest.is_empty() {
                let payload = ShellData::encode(id, &rest);
                if let Ok(bytes) = frame::encode(Channel::Shell, 0, 0, &payload) {
                    flow.lock().sent += rest.len() as u64;
                    let _ = tx.blocking_send(ShellOut::Frame(bytes));
                }
            }
            return true;
        }
        if pre.len() > MAX_PREAMBLE {
            let cut = pre.len() - MAX_PREAMBLE;
            pre.drain(..cut);
        }
    }
    if closed.swap(true, Ordering::AcqRel) {
        return false;
    }
    let cancelled = std::fs::read_to_string(result).is_ok_and(|s| s.trim() == "cancelled");
    let said = String::from_utf8_lossy(&pre);
    let last = said
        .lines()
        .map(|l| lifeline_proto::sanitize_text(l).trim().to_string())
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    let (code, message) = if cancelled {
        (
            ShellErrorCode::Declined,
            "the customer declined".to_string(),
        )
    } else {
        let last: String = last.chars().take(300).collect();
        (
            ShellErrorCode::ElevationUnavailable,
            format!("{NO_ELEVATION} ({last})"),
        )
    };
    info!(
        "event=shell_refused id={id} code={} message={message:?}",
        code.as_str()
    );
    let _ = answers.send(ShellReply::Failed { id, code, message });
    false
}

/// What the shell has for the box.
#[derive(Debug)]
pub enum ShellOut {
    Reply(ShellReply),
    Frame(Vec<u8>),
    /// For the customer's window, not the box.
    Change(ShellChange),
}

/// A change the customer's window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellChange {
    Opened {
        elevated: bool,
    },
    Closed,
    /// Never opened (the administrator password was not given, say).
    Refused,
}

/// Output bytes sent and acknowledged, shared with the reader thread.
#[derive(Default)]
struct Flow {
    state: Mutex<FlowState>,
    cv: Condvar,
}

#[derive(Default)]
struct FlowState {
    sent: u64,
    acked: u64,
    stop: bool,
}

impl Flow {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until there is room in the window; false once stopped.
    fn wait_room(&self) -> bool {
        let mut s = self.lock();
        while !s.stop && s.sent.saturating_sub(s.acked) >= WINDOW {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        !s.stop
    }

    fn ack(&self, offset: u64) {
        let mut s = self.lock();
        if offset > s.acked && offset <= s.sent {
            s.acked = offset;
            self.cv.notify_all();
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }
}

/// The open shell.
struct Open {
    id: u32,
    elevated: bool,
    pty: Arc<Mutex<crate::platform::linux::pty::Pty>>,
    writer: File,
    flow: Arc<Flow>,
    /// Set by whoever sends the `closed` answer first.
    closed: Arc<AtomicBool>,
    started: Instant,
    bytes_in: u64,
}

/// The session's command shell.
pub struct ShellTool {
    /// Output frames (and the end of a program, after its last output), bounded.
    tx: mpsc::Sender<ShellOut>,
    rx: mpsc::Receiver<ShellOut>,
    /// Answers, never held up behind output.
    answers: mpsc::UnboundedSender<ShellReply>,
    answers_rx: mpsc::UnboundedReceiver<ShellReply>,
    changes: mpsc::UnboundedSender<ShellChange>,
    changes_rx: mpsc::UnboundedReceiver<ShellChange>,
    shell: bool,
    elevated: bool,
    open: Option<Open>,
    /// The customer's language, for the password dialog.
    language: String,
}

impl Default for ShellTool {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ShellTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellTool")
            .field("open", &self.open.as_ref().map(|o| o.id))
            .finish_non_exhaustive()
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl ShellTool {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (answers, answers_rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            answers,
            answers_rx,
            changes,
            changes_rx,
            shell: false,
            elevated: false,
            open: None,
            language: String::new(),
        }
    }

    /// Whether this computer offers `permission`.
    pub fn offers(permission: Permission) -> bool {
        matches!(permission, Permission::Shell | Permission::ElevatedShell)
            && cfg!(target_os = "linux")
    }

    /// The customer's language ("en", "fr", "de"), for the password dialog.
    pub fn set_language(&mut self, tag: &str) {
        self.language = tag.to_string();
    }

    /// Whether a shell is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn reply(&self, reply: ShellReply) {
        let _ = self.answers.send(reply);
    }

    /// A grant changed; withdrawing the one the open shell runs under closes it.
    pub fn set_grant(&mut self, permission: Permission, granted: bool) {
        match permission {
            Permission::Shell => self.shell = granted,
            Permission::ElevatedShell => self.elevated = granted,
            _ => return,
        }
        if !granted
            && let Some(o) = &self.open
            && (o.elevated == (permission == Permission::ElevatedShell))
        {
            self.close(ClosedBy::Withdrawn);
        }
    }

    /// A request from the box.
    pub fn request(&mut self, request: ShellRequest) {
        match request {
            ShellRequest::Open {
                id,
                elevated,
                size,
                rep,
            } => self.open(id, elevated, size.rows, size.cols, &rep),
            ShellRequest::Resize { id, size } => {
                if let Some(o) = self.open.as_ref().filter(|o| o.id == id) {
                    let pty = o.pty.lock().unwrap_or_else(|e| e.into_inner());
                    match pty.resize(size.rows, size.cols) {
                        Ok(()) => info!(
                            "event=shell_resized id={id} rows={} cols={}",
                            size.rows, size.cols
                        ),
                        Err(e) => warn!("event=shell_resize_failed error={:?}", e.to_string()),
                    }
                }
            }
            ShellRequest::Ack { id, offset } => {
                if let Some(o) = self.open.as_ref().filter(|o| o.id == id) {
                    o.flow.ack(offset);
                }
            }
            ShellRequest::Close { id } => {
                if self.open.as_ref().is_some_and(|o| o.id == id) {
                    self.close(ClosedBy::Representative);
                }
            }
        }
    }

    fn fail(&self, id: u32, code: ShellErrorCode, message: &str) {
        info!(
            "event=shell_refused id={id} code={} message={message:?}",
            code.as_str()
        );
        self.reply(ShellReply::Failed {
            id,
            code,
            message: message.to_string(),
        });
    }

    fn open(&mut self, id: u32, elevated: bool, rows: u16, cols: u16, rep: &str) {
        let granted = if elevated { self.elevated } else { self.shell };
        if !granted {
            return self.fail(
                id,
                ShellErrorCode::NotPermitted,
                "the customer has not allowed a command shell",
            );
        }
        if self.open.is_some() {
            return self.fail(id, ShellErrorCode::Busy, "a command shell is already open");
        }
        #[cfg(target_os = "linux")]
        {
            use crate::platform::linux::pty::{Pty, login_shell};
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let mut env: Vec<(&str, OsString)> = Vec::new();
            // Through sudo: authorised first (`-v`, the password asked by this client's own
            // dialog), a marker once it is, then root's login shell on the same terminal.
            let mut authorising = None;
            let (program, args) = if elevated && !is_root() {
                let (Some(sudo), Ok(me)) = (sudo_path(), std::env::current_exe()) else {
                    return self.fail(id, ShellErrorCode::ElevationUnavailable, NO_ELEVATION);
                };
                let result = std::env::temp_dir()
                    .join(format!("lifeline-askpass-{}-{id}", std::process::id()));
                let _ = std::fs::remove_file(&result);
                env.push(("SUDO_ASKPASS", me.into_os_string()));
                env.push((ASKPASS_ENV, OsString::from("1")));
                env.push((ASKPASS_LANG_ENV, OsString::from(&self.language)));
                env.push((ASKPASS_RESULT_ENV, result.clone().into_os_string()));
                authorising = Some(result);
                (
                    std::path::PathBuf::from("/bin/sh"),
                    vec![
                        OsString::from("-c"),
                        OsString::from(format!(
                            "\"$0\" -A -v && printf '{MARKER_SH}' && exec \"$0\" -n -i"
                        )),
                        sudo.into_os_string(),
                    ],
                )
            } else {
                (login_shell(), vec![OsString::from("-l")])
            };
            let spawned = Pty::spawn(&program, &args, rows, cols, home.as_deref(), &env);
            let pty = match spawned {
                Ok(p) => p,
                Err(e) => return self.fail(id, ShellErrorCode::Failed, &e.to_string()),
            };
            let (reader, writer) = match (pty.reader(), pty.reader()) {
                (Ok(r), Ok(w)) => (r, w),
                (Err(e), _) | (_, Err(e)) => {
                    let mut pty = pty;
                    pty.hang_up();
                    return self.fail(id, ShellErrorCode::Failed, &e.to_string());
                }
            };
            info!(
                "event=shell_opened id={id} elevated={elevated} pid={} program={:?} rows={rows} cols={cols} rep={rep:?}",
                pty.pid(),
                program.display().to_string()
            );
            let pty = Arc::new(Mutex::new(pty));
            let flow = Arc::new(Flow::default());
            let closed = Arc::new(AtomicBool::new(false));
            let out_bytes = Arc::new(AtomicU64::new(0));
            let shown = if authorising.is_some() {
                "root (sudo)".to_string()
            } else {
                program.display().to_string()
            };
            if authorising.is_none() {
                self.reply(ShellReply::Opened {
                    id,
                    elevated,
                    program: shown.clone(),
                });
                let _ = self.changes.send(ShellChange::Opened { elevated });
            }
            let thread = {
                let (tx, pty, flow, closed, changes, answers) = (
                    self.tx.clone(),
                    pty.clone(),
                    flow.clone(),
                    closed.clone(),
                    self.changes.clone(),
                    self.answers.clone(),
                );
                std::thread::Builder::new()
                    .name("shell".into())
                    .spawn(move || {
                        let mut reader = reader;
                        if let Some(result) = authorising {
                            let ok =
                                authorise(id, &mut reader, &result, &tx, &flow, &closed, &answers);
                            let _ = std::fs::remove_file(&result);
                            if !ok {
                                pty.lock().unwrap_or_else(|e| e.into_inner()).hang_up();
                                let _ = changes.send(ShellChange::Refused);
                                return;
                            }
                            let _ = answers.send(ShellReply::Opened {
                                id,
                                elevated,
                                program: shown,
                            });
                            let _ = changes.send(ShellChange::Opened { elevated });
                        }
                        read_loop(id, reader, &tx, &flow, &out_bytes);
                        // The terminal is gone: the program ended (or was hung up).
                        let code = pty
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .wait_exit(Duration::from_secs(2));
                        if !closed.swap(true, Ordering::AcqRel) {
                            info!("event=shell_closed id={id} by=exited exit_code={code:?}");
                            let _ = tx.blocking_send(ShellOut::Reply(ShellReply::Closed {
                                id,
                                by: ClosedBy::Exited,
                                exit_code: code,
                            }));
                            let _ = changes.send(ShellChange::Closed);
                        }
                    })
            };
            if let Err(e) = thread {
                pty.lock().unwrap_or_else(|e| e.into_inner()).hang_up();
                return self.fail(id, ShellErrorCode::Failed, &e.to_string());
            }
            self.open = Some(Open {
                id,
                elevated,
                pty,
                writer,
                flow,
                closed,
                started: Instant::now(),
                bytes_in: 0,
            });
        }
    }

    /// Input bytes from the representative (a shell frame's payload).
    pub fn input(&mut self, payload: &[u8]) {
        let Ok(data) = ShellData::decode(payload) else {
            warn!("event=shell_bad_frame bytes={}", payload.len());
            return;
        };
        let Some(o) = self.open.as_mut().filter(|o| o.id == data.id) else {
            return;
        };
        use std::io::Write;
        if let Err(e) = o.writer.write_all(data.data) {
            warn!("event=shell_write_failed error={:?}", e.to_string());
        }
        o.bytes_in += data.data.len() as u64;
    }

    /// Closes the open shell (the customer's "Close it", a withdrawn grant, the session's
    /// end); the box is told why.
    pub fn close(&mut self, by: ClosedBy) {
        let Some(o) = self.open.take() else {
            return;
        };
        o.flow.stop();
        let first = !o.closed.swap(true, Ordering::AcqRel);
        // Hanging up may take a second: not on the session's task.
        let pty = o.pty.clone();
        let _ = std::thread::Builder::new()
            .name("shell-close".into())
            .spawn(move || {
                pty.lock().unwrap_or_else(|e| e.into_inner()).hang_up();
            });
        if first {
            info!(
                "event=shell_closed id={} by={} seconds={} bytes_in={}",
                o.id,
                by.as_str(),
                o.started.elapsed().as_secs(),
                o.bytes_in
            );
            self.reply(ShellReply::Closed {
                id: o.id,
                by,
                exit_code: None,
            });
            let _ = self.changes.send(ShellChange::Closed);
        }
    }

    /// The next message for the box, or change for the customer's window.
    pub async fn next(&mut self) -> ShellOut {
        let change = tokio::select! {
            biased;
            Some(c) = self.changes_rx.recv() => c,
            Some(r) = self.answers_rx.recv() => return ShellOut::Reply(r),
            Some(m) = self.rx.recv() => return m,
            // We hold both senders: neither channel closes.
            else => return std::future::pending().await,
        };
        if matches!(change, ShellChange::Closed | ShellChange::Refused)
            && self
                .open
                .as_ref()
                .is_some_and(|o| o.closed.load(Ordering::Acquire))
        {
            // The program ended by itself: forget it.
            self.open = None;
        }
        ShellOut::Change(change)
    }
}

impl Drop for ShellTool {
    fn drop(&mut self) {
        self.close(ClosedBy::Session);
    }
}

/// Reads the terminal and sends its bytes until it is gone or the shell is closed.
fn read_loop(
    id: u32,
    mut reader: File,
    tx: &mpsc::Sender<ShellOut>,
    flow: &Flow,
    out_bytes: &AtomicU64,
) {
    let mut buf = vec![0u8; BATCH_BYTES];
    let mut seq = 0u32;
    loop {
        if !flow.wait_room() {
            return;
        }
        let n = match crate::platform::linux::pty::read_batch(&mut reader, &mut buf, BATCH) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                warn!("event=shell_read_failed error={:?}", e.to_string());
                return;
            }
        };
        seq = seq.wrapping_add(1);
        let payload = ShellData::encode(id, &buf[..n]);
        let Ok(bytes) = frame::encode(Channel::Shell, 0, seq, &payload) else {
            return;
        };
        flow.lock().sent += n as u64;
        out_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if tx.blocking_send(ShellOut::Frame(bytes)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_proto::shell::TermSize;

    fn open(id: u32) -> ShellRequest {
        ShellRequest::Open {
            id,
            elevated: false,
            size: TermSize { rows: 24, cols: 80 },
            rep: "Rémi".into(),
        }
    }

    async fn reply(t: &mut ShellTool) -> ShellReply {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), t.next())
                .await
                .expect("an answer in time")
            {
                ShellOut::Reply(r) => return r,
                ShellOut::Frame(_) | ShellOut::Change(_) => {}
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_shell_needs_the_grant_and_closes_when_it_is_withdrawn() {
        let mut t = ShellTool::new();
        t.request(open(1));
        assert!(matches!(
            reply(&mut t).await,
            ShellReply::Failed {
                code: ShellErrorCode::NotPermitted,
                ..
            }
        ));
        t.set_grant(Permission::Shell, true);
        t.request(open(2));
        assert!(matches!(
            reply(&mut t).await,
            ShellReply::Opened { id: 2, .. }
        ));
        t.request(open(3));
        assert!(matches!(
            reply(&mut t).await,
            ShellReply::Failed {
                code: ShellErrorCode::Busy,
                ..
            }
        ));
        // Typing reaches the shell; its output comes back in frames.
        t.input(&ShellData::encode(2, b"echo shell-$((40+2))\n"));
        let mut out = Vec::new();
        while !String::from_utf8_lossy(&out).contains("shell-42") {
            match tokio::time::timeout(Duration::from_secs(10), t.next())
                .await
                .expect("output in time")
            {
                ShellOut::Frame(f) => {
                    let (_, payload) = frame::decode(&f).unwrap();
                    let d = ShellData::decode(payload).unwrap();
                    out.extend_from_slice(d.data);
                    t.request(ShellRequest::Ack {
                        id: 2,
                        offset: out.len() as u64,
                    });
                }
                ShellOut::Reply(r) => panic!("{r:?}"),
                ShellOut::Change(_) => {}
            }
        }
        t.set_grant(Permission::Shell, false);
        assert!(matches!(
            reply(&mut t).await,
            ShellReply::Closed {
                id: 2,
                by: ClosedBy::Withdrawn,
                ..
            }
        ));
        assert!(!t.is_open());
    }
}

#[cfg(test)]
mod flood_tests {
    use super::*;
    use lifeline_proto::shell::TermSize;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_close_is_not_held_up_by_a_flood_of_output() {
        let mut t = ShellTool::new();
        t.set_grant(Permission::Shell, true);
        t.request(ShellRequest::Open {
            id: 9,
            elevated: false,
            size: TermSize { rows: 24, cols: 80 },
            rep: String::new(),
        });
        t.input(&ShellData::encode(9, b"yes flood\n"));
        // Nobody acknowledges: the window fills and the queue of frames with it.
        let mut frames = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while frames < 8 {
            assert!(Instant::now() < deadline, "no output");
            if let Ok(ShellOut::Frame(_)) =
                tokio::time::timeout(Duration::from_secs(5), t.next()).await
            {
                frames += 1;
            }
        }
        t.close(ClosedBy::Customer);
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let ShellOut::Reply(r) = t.next().await {
                    return r;
                }
            }
        })
        .await
        .expect("the close goes out at once");
        assert!(matches!(
            closed,
            ShellReply::Closed {
                id: 9,
                by: ClosedBy::Customer,
                ..
            }
        ));
    }
}
