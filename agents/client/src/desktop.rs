//! The customer's desktop as a session uses it: the screen stream, input and the clipboard.
//!
//! [`Desktop`] is what a platform offers (X11 in `platform::linux`; a headless run offers
//! nothing). [`Remote`] is one session's use of it, driven by the session task:
//!
//! * the screen stream ([`crate::screen`]) runs on its own thread while `view` is granted
//!   *and* the relay says someone watches; withdrawing `view` stops it at once and drops
//!   whatever it had produced but not yet sent;
//! * input from the technician is injected on a thread of its own, only while `control` is
//!   granted (the relay checks too, but the agent trusts no one); withdrawing `control`
//!   releases every key and button first;
//! * the clipboard is watched only while `clipboard` is granted.
//!
//! Everything is stopped when the [`Remote`] is dropped (the session ended).

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use lifeline_proto::remote::{InputEvent, Monitor, Permission, StreamSettings};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::screen::{self, ScreenSource, StreamControl, StreamOutput};

/// Injects the technician's input.
pub trait Injector: Send {
    /// `origin`: the desktop position of the viewed surface's top-left pixel.
    fn inject(&mut self, event: &InputEvent, origin: (i32, i32)) -> Result<(), String>;
    /// Releases every key and button this injector holds.
    fn release_all(&mut self) -> Result<(), String>;
}

/// Gives the technician's clipboard text to the desktop.
pub trait ClipboardText: Send + Sync {
    fn set_text(&self, text: String) -> Result<(), String>;
}

/// What a platform offers a session.
pub trait Desktop: Send + Sync + fmt::Debug {
    /// Whether this desktop can offer `permission` at all.
    fn offers(&self, permission: Permission) -> bool;
    fn screen(&self) -> Result<Box<dyn ScreenSource>, String>;
    fn input(&self) -> Result<Box<dyn Injector>, String>;
    /// Starts watching the clipboard; text someone else copies arrives on `changed`.
    fn clipboard(&self, changed: mpsc::Sender<String>) -> Result<Box<dyn ClipboardText>, String>;
}

/// Something the session must send (or log).
#[derive(Debug)]
pub enum Outgoing {
    /// A binary WebSocket message (a screen or cursor frame).
    Frame(Vec<u8>),
    Monitors(Vec<Monitor>),
    /// Text the customer copied (with `clipboard` granted).
    Clipboard(String),
    /// The screen stream stopped by itself (a sentence for the log).
    StreamFailed(String),
}

struct Stream {
    control: std_mpsc::Sender<StreamControl>,
    out: mpsc::Receiver<StreamOutput>,
}

enum InputCmd {
    Event(InputEvent, (i32, i32)),
}

/// Most input events queued for injection; more are dropped (a flood, or a hung desktop).
const INPUT_QUEUE: usize = 256;

struct InputWorker {
    tx: std_mpsc::SyncSender<InputCmd>,
}

/// One session's use of the desktop.
pub struct Remote {
    desktop: Option<Arc<dyn Desktop>>,
    view: bool,
    control: bool,
    clipboard_granted: bool,
    /// The relay's last word on who watches and what they want to see.
    active: bool,
    settings: StreamSettings,
    monitors: Vec<Monitor>,
    stream: Option<Stream>,
    input: Option<InputWorker>,
    clipboard: Option<(Box<dyn ClipboardText>, mpsc::Receiver<String>)>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("view", &self.view)
            .field("control", &self.control)
            .field("clipboard", &self.clipboard_granted)
            .field("active", &self.active)
            .field("streaming", &self.stream.is_some())
            .finish()
    }
}

impl Remote {
    pub fn new(desktop: Option<Arc<dyn Desktop>>) -> Self {
        Self {
            desktop,
            view: false,
            control: false,
            clipboard_granted: false,
            active: false,
            settings: StreamSettings::default(),
            monitors: Vec::new(),
            stream: None,
            input: None,
            clipboard: None,
        }
    }

    /// Whether this session's desktop can offer `permission`.
    pub fn offers(&self, permission: Permission) -> bool {
        self.desktop.as_ref().is_some_and(|d| d.offers(permission))
    }

    /// Whether the technician is watching the screen right now.
    pub fn watching(&self) -> bool {
        self.stream.is_some()
    }

    /// A grant changed (granted, or withdrawn).
    pub fn set_grant(&mut self, permission: Permission, granted: bool) {
        match permission {
            Permission::View => {
                self.view = granted;
                self.sync_stream();
            }
            Permission::Control => {
                self.control = granted;
                if !granted {
                    self.stop_input();
                }
            }
            Permission::Clipboard => {
                self.clipboard_granted = granted;
                if granted {
                    self.start_clipboard();
                } else if self.clipboard.take().is_some() {
                    info!("event=clipboard_stopped");
                }
            }
            _ => {}
        }
    }

    /// The relay's `Stream { active, settings }`.
    pub fn set_stream(&mut self, active: bool, settings: StreamSettings) {
        self.active = active;
        self.settings = settings.clone();
        self.sync_stream();
        self.tell(StreamControl::Stream { active, settings });
    }

    pub fn ack(&mut self, frame: u32) {
        self.tell(StreamControl::Ack(frame));
    }

    pub fn refresh(&mut self) {
        self.tell(StreamControl::Refresh);
    }

    /// Input from the technician; dropped unless `control` is granted.
    pub fn input(&mut self, event: InputEvent) {
        if !self.control {
            warn!("event=input_refused reason=not_granted");
            return;
        }
        if self.input.is_none() {
            self.start_input();
        }
        let origin = screen::surface_origin(&self.monitors, &self.settings);
        if let Some(worker) = &self.input
            && worker.tx.try_send(InputCmd::Event(event, origin)).is_err()
        {
            warn!("event=input_dropped reason=queue_full");
        }
    }

    /// Clipboard text from the technician; dropped unless `clipboard` is granted.
    pub fn set_clipboard(&mut self, text: String) {
        if !self.clipboard_granted {
            warn!("event=clipboard_refused reason=not_granted");
            return;
        }
        if let Some((clip, _)) = &self.clipboard
            && let Err(e) = clip.set_text(text)
        {
            warn!("event=clipboard_failed error={e:?}");
        }
    }

    /// The next thing to send; waits forever when nothing runs. Cancel-safe.
    pub async fn next(&mut self) -> Outgoing {
        enum Got {
            Stream(Option<StreamOutput>),
            Clipboard(Option<String>),
        }
        let (stream, clip) = (&mut self.stream, &mut self.clipboard);
        let got = tokio::select! {
            out = async move {
                match stream {
                    Some(s) => s.out.recv().await,
                    None => std::future::pending().await,
                }
            } => Got::Stream(out),
            text = async move {
                match clip {
                    Some((_, rx)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Got::Clipboard(text),
        };
        match got {
            Got::Stream(Some(StreamOutput::Binary(b))) => Outgoing::Frame(b),
            Got::Stream(Some(StreamOutput::Monitors(m))) => {
                self.monitors.clone_from(&m);
                Outgoing::Monitors(m)
            }
            Got::Stream(Some(StreamOutput::Failed(why))) => {
                self.stream = None;
                Outgoing::StreamFailed(why)
            }
            Got::Stream(None) => {
                self.stream = None;
                Outgoing::StreamFailed("the screen stream stopped".into())
            }
            Got::Clipboard(Some(text)) => Outgoing::Clipboard(text),
            Got::Clipboard(None) => {
                self.clipboard = None;
                Outgoing::StreamFailed("the clipboard watcher stopped".into())
            }
        }
    }

    /// Starts or stops the stream to match the grant and the relay's word.
    fn sync_stream(&mut self) {
        let wanted = self.view && self.active;
        match (wanted, self.stream.is_some()) {
            (true, false) => self.start_stream(),
            (false, true) => self.stop_stream(),
            _ => {}
        }
    }

    fn start_stream(&mut self) {
        let Some(desktop) = &self.desktop else { return };
        let source = match desktop.screen() {
            Ok(s) => s,
            Err(e) => {
                warn!("event=stream_failed error={e:?}");
                return;
            }
        };
        let (control, control_rx) = std_mpsc::channel();
        let (out_tx, out) = mpsc::channel(4);
        // The first word tells the stream what to show; acks and refreshes follow.
        let _ = control.send(StreamControl::Stream {
            active: true,
            settings: self.settings.clone(),
        });
        // The thread ends by itself on Stop, or when `control` is dropped.
        drop(screen::spawn(source, control_rx, out_tx));
        info!("event=stream_started");
        self.stream = Some(Stream { control, out });
    }

    fn stop_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.control.send(StreamControl::Stop);
            // Dropping the receiver discards every frame not yet sent.
            info!("event=stream_stopped");
        }
    }

    fn tell(&self, control: StreamControl) {
        if let Some(s) = &self.stream {
            let _ = s.control.send(control);
        }
    }

    fn start_input(&mut self) {
        let Some(desktop) = &self.desktop else { return };
        let mut injector = match desktop.input() {
            Ok(i) => i,
            Err(e) => {
                warn!("event=input_failed error={e:?}");
                return;
            }
        };
        let (tx, rx) = std_mpsc::sync_channel::<InputCmd>(INPUT_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("input".into())
            .spawn(move || {
                while let Ok(InputCmd::Event(event, origin)) = rx.recv() {
                    if let Err(e) = injector.inject(&event, origin) {
                        debug!("event=input_error error={e:?}");
                    }
                }
                // The session withdrew control or ended: leave nothing pressed.
                if let Err(e) = injector.release_all() {
                    warn!("event=input_release_failed error={e:?}");
                }
            });
        match spawned {
            Ok(_) => self.input = Some(InputWorker { tx }),
            Err(e) => warn!("event=input_failed error={:?}", e.to_string()),
        }
    }

    fn stop_input(&mut self) {
        // Dropping the sender ends the thread after it released every key and button.
        if self.input.take().is_some() {
            info!("event=input_stopped");
        }
    }

    fn start_clipboard(&mut self) {
        if self.clipboard.is_some() {
            return;
        }
        let Some(desktop) = &self.desktop else { return };
        let (tx, rx) = mpsc::channel(8);
        match desktop.clipboard(tx) {
            Ok(clip) => {
                info!("event=clipboard_started");
                self.clipboard = Some((clip, rx));
            }
            Err(e) => warn!("event=clipboard_failed error={e:?}"),
        }
    }

    /// The link to the box dropped: nobody watches until the box says so again, and
    /// nothing stays pressed.
    pub fn link_lost(&mut self) {
        self.active = false;
        self.stop_stream();
        self.stop_input();
    }

    /// Stops everything (the session is over).
    pub fn stop_all(&mut self) {
        self.view = false;
        self.control = false;
        self.clipboard_granted = false;
        self.stop_stream();
        self.stop_input();
        self.clipboard = None;
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop_all();
    }
}
