//! Clipboard text on X11, both ways, through the `CLIPBOARD` selection.
//!
//! # How it works
//! [`X11Clipboard::start`] opens its own X connection and runs a thread around an unmapped
//! window of its own:
//!
//! * **Customer copies.** XFixes reports every change of the `CLIPBOARD` owner. When the
//!   new owner is another client, the thread asks it to convert the selection to
//!   `UTF8_STRING` (then `STRING`, Latin-1, if refused) into a property of our window,
//!   reads at most [`MAX_CLIPBOARD_BYTES`], and sends the text on the `changed` channel.
//!   Larger texts are dropped. Owners that send through `INCR` (chunked transfers) are
//!   followed chunk by chunk; once the total passes the bound the chunks are still
//!   acknowledged, so the owner finishes normally, but their bytes are discarded. The same
//!   text is not sent twice in a row, and our own ownership is never reported back.
//! * **Representative copies.** [`X11Clipboard::set_text`] hands the text to the thread,
//!   which gets a real server timestamp (a zero-length property append), takes ownership
//!   of `CLIPBOARD` with it, and answers `TARGETS`, `TIMESTAMP`, `UTF8_STRING`, `TEXT` and
//!   `STRING` requests until another client takes the selection over.
//!
//! The thread waits with `poll` on the X socket and on a socket pair the handle writes to
//! when it has a command, so it uses no CPU while nothing happens. A conversion an owner
//! never answers is abandoned after [`CONVERT_TIMEOUT`] (an `INCR` transfer after that
//! much time without a chunk).
//!
//! # Limits
//! * Text only (no images or files); `MULTIPLE` requests are refused.
//! * We never send with `INCR`: our texts (at most 32 KiB) fit in one request.
//! * The clipboard content at start is not reported, only later copies.
//! * If an abandoned `INCR` owner resumes writing during a later transfer, that transfer
//!   may be mixed with stale chunks (it is still bounded and valid text).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lifeline_proto::remote::MAX_CLIPBOARD_BYTES;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc::error::TrySendError;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::Event;
use x11rb::protocol::xfixes::{ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, Property,
    SelectionNotifyEvent, SelectionRequestEvent, Timestamp, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// How long an owner may take to answer a conversion (or to send the next `INCR` chunk).
pub const CONVERT_TIMEOUT: Duration = Duration::from_secs(3);

/// 32-bit words asked for in one GetProperty: one more than the bound, to see it passed.
const READ_WORDS: u32 = (MAX_CLIPBOARD_BYTES / 4 + 1) as u32;

x11rb::atom_manager! {
    Atoms: AtomsCookie {
        CLIPBOARD,
        UTF8_STRING,
        TEXT,
        TARGETS,
        TIMESTAMP,
        INCR,
        LIFELINE_CLIPBOARD,
        LIFELINE_TIMESTAMP,
    }
}

/// Why the clipboard could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    #[error("cannot connect to the X display {display}")]
    Connect {
        display: String,
        #[source]
        source: ConnectError,
    },
    #[error(
        "the X server of display {display} lacks the XFIXES extension, so clipboard changes cannot be followed"
    )]
    NoXFixes { display: String },
    #[error("the connection to the X server broke")]
    Connection(#[from] ConnectionError),
    #[error("the X server refused the {request} request")]
    Request {
        request: &'static str,
        #[source]
        source: ReplyError,
    },
    #[error("cannot create the clipboard's window")]
    Window(#[source] ReplyOrIdError),
    #[error("cannot start the clipboard thread")]
    Thread(#[source] std::io::Error),
    #[error("clipboard text of {len} bytes is larger than the {max} bytes allowed")]
    TooLarge { len: usize, max: usize },
    #[error("the clipboard thread has stopped")]
    Stopped,
}

fn request(request: &'static str) -> impl FnOnce(ReplyError) -> ClipboardError {
    move |source| ClipboardError::Request { request, source }
}

enum Command {
    Set(String),
    Stop,
}

/// Shares clipboard text with one X display; stops its thread when dropped.
pub struct X11Clipboard {
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl X11Clipboard {
    /// Connects to `display` (or `$DISPLAY`) and starts following `CLIPBOARD`. `changed`
    /// receives the text each time someone else copies new text (at most
    /// [`MAX_CLIPBOARD_BYTES`]; larger copies are dropped).
    pub fn start(
        display: Option<&str>,
        changed: tokio::sync::mpsc::Sender<String>,
    ) -> Result<Self, ClipboardError> {
        let name = display.unwrap_or("named by $DISPLAY").to_owned();
        let (conn, screen_num) =
            x11rb::connect(display).map_err(|source| ClipboardError::Connect {
                display: name.clone(),
                source,
            })?;
        if conn
            .extension_information(x11rb::protocol::xfixes::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err(ClipboardError::NoXFixes { display: name });
        }
        conn.xfixes_query_version(5, 0)?
            .reply()
            .map_err(request("XFIXES QueryVersion"))?;
        let atoms = Atoms::new(&conn)?.reply().map_err(request("InternAtom"))?;
        let root = conn
            .setup()
            .roots
            .get(screen_num)
            .ok_or(ClipboardError::NoXFixes {
                display: name.clone(),
            })?
            .root;
        let window = conn.generate_id().map_err(ClipboardError::Window)?;
        conn.create_window(
            0,
            window,
            root,
            -1,
            -1,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?
        .check()
        .map_err(|e| ClipboardError::Window(e.into()))?;
        conn.xfixes_select_selection_input(
            window,
            atoms.CLIPBOARD,
            SelectionEventMask::SET_SELECTION_OWNER
                | SelectionEventMask::SELECTION_WINDOW_DESTROY
                | SelectionEventMask::SELECTION_CLIENT_CLOSE,
        )?
        .check()
        .map_err(request("XFIXES SelectSelectionInput"))?;

        let (wake, wake_rx) = UnixStream::pair().map_err(ClipboardError::Thread)?;
        wake.set_nonblocking(true).map_err(ClipboardError::Thread)?;
        wake_rx
            .set_nonblocking(true)
            .map_err(ClipboardError::Thread)?;
        let (commands, command_rx) = mpsc::channel();
        let mut worker = Worker {
            conn,
            window,
            atoms,
            commands: command_rx,
            wake: wake_rx,
            changed,
            owned: None,
            pending_own: None,
            incoming: None,
            last: None,
        };
        let thread = std::thread::Builder::new()
            .name("x11-clipboard".into())
            .spawn(move || {
                if let Err(e) = worker.run() {
                    tracing::warn!(error = %e, "the clipboard thread stopped");
                }
            })
            .map_err(ClipboardError::Thread)?;
        Ok(Self {
            commands,
            wake,
            thread: Some(thread),
        })
    }

    /// Takes ownership of `CLIPBOARD` with this text (the representative's clipboard).
    /// Returns at once; the thread takes the selection a moment later.
    pub fn set_text(&self, text: String) -> Result<(), ClipboardError> {
        if text.len() > MAX_CLIPBOARD_BYTES {
            return Err(ClipboardError::TooLarge {
                len: text.len(),
                max: MAX_CLIPBOARD_BYTES,
            });
        }
        self.commands
            .send(Command::Set(text))
            .map_err(|_| ClipboardError::Stopped)?;
        self.wake_thread()
    }

    fn wake_thread(&self) -> Result<(), ClipboardError> {
        match (&self.wake).write(&[1]) {
            Ok(_) => Ok(()),
            // The thread has wake-ups pending already.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(_) => Err(ClipboardError::Stopped),
        }
    }
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.wake_thread();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Text we own, and the server time we took the selection at.
struct Owned {
    text: String,
    time: Timestamp,
}

/// A conversion we asked another owner for.
struct Incoming {
    target: Atom,
    time: Timestamp,
    deadline: Instant,
    incr: Option<Incr>,
}

/// An `INCR` transfer in progress.
#[derive(Default)]
struct Incr {
    bytes: Vec<u8>,
    kind: Atom,
    format: u8,
    /// Past the bound: chunks are acknowledged and discarded.
    overflow: bool,
}

struct Worker {
    conn: RustConnection,
    window: Window,
    atoms: Atoms,
    commands: mpsc::Receiver<Command>,
    wake: UnixStream,
    changed: tokio::sync::mpsc::Sender<String>,
    owned: Option<Owned>,
    /// Text waiting for a timestamp to take the selection with.
    pending_own: Option<String>,
    incoming: Option<Incoming>,
    /// The last text that went either way, so a copy is reported once.
    last: Option<String>,
}

impl Worker {
    fn run(&mut self) -> Result<(), ClipboardError> {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Set(text)) => self.request_ownership(text)?,
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            if self
                .incoming
                .as_ref()
                .is_some_and(|i| Instant::now() >= i.deadline)
            {
                tracing::debug!("the clipboard owner did not answer in time");
                self.incoming = None;
            }
            self.conn.flush()?;
            // Everything x11rb has buffered must be handled before waiting on the socket.
            if let Some(event) = self.conn.poll_for_event()? {
                self.handle(event)?;
                continue;
            }
            let timeout = match &self.incoming {
                Some(i) => PollTimeout::try_from(
                    i.deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
                )
                .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = [
                PollFd::new(self.conn.stream().as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(ClipboardError::Thread(e.into())),
            }
            let mut buf = [0u8; 64];
            while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), ClipboardError> {
        let a = self.atoms;
        match event {
            Event::XfixesSelectionNotify(e)
                if e.selection == a.CLIPBOARD
                    && e.owner != self.window
                    && e.owner != x11rb::NONE =>
            {
                self.convert(a.UTF8_STRING, e.selection_timestamp)?;
            }
            Event::SelectionNotify(e) if e.requestor == self.window => self.converted(e)?,
            Event::PropertyNotify(e)
                if e.window == self.window && e.state == Property::NEW_VALUE =>
            {
                if e.atom == a.LIFELINE_TIMESTAMP {
                    self.take_ownership(e.time)?;
                } else if e.atom == a.LIFELINE_CLIPBOARD {
                    self.incr_chunk()?;
                }
            }
            Event::SelectionRequest(e) => self.serve(e)?,
            Event::SelectionClear(e) if e.selection == a.CLIPBOARD && e.owner == self.window => {
                self.owned = None;
            }
            Event::Error(e) => tracing::debug!(?e, "X error on the clipboard connection"),
            _ => {}
        }
        Ok(())
    }

    fn convert(&mut self, target: Atom, time: Timestamp) -> Result<(), ClipboardError> {
        let a = self.atoms;
        self.conn
            .delete_property(self.window, a.LIFELINE_CLIPBOARD)?;
        self.conn.convert_selection(
            self.window,
            a.CLIPBOARD,
            target,
            a.LIFELINE_CLIPBOARD,
            time,
        )?;
        self.incoming = Some(Incoming {
            target,
            time,
            deadline: Instant::now() + CONVERT_TIMEOUT,
            incr: None,
        });
        Ok(())
    }

    fn converted(&mut self, e: SelectionNotifyEvent) -> Result<(), ClipboardError> {
        let a = self.atoms;
        let Some(inc) = &self.incoming else {
            return Ok(());
        };
        if e.selection != a.CLIPBOARD || e.target != inc.target || e.time != inc.time {
            return Ok(()); // the answer to an earlier request
        }
        if e.property == x11rb::NONE {
            if inc.target == a.UTF8_STRING {
                return self.convert(AtomEnum::STRING.into(), inc.time);
            }
            tracing::debug!("the clipboard owner offers no text");
            self.incoming = None;
            return Ok(());
        }
        let reply = self
            .conn
            .get_property(
                false,
                self.window,
                a.LIFELINE_CLIPBOARD,
                AtomEnum::ANY,
                0,
                READ_WORDS,
            )?
            .reply()
            .map_err(request("GetProperty"))?;
        if reply.type_ == a.INCR {
            let announced = reply.value32().and_then(|mut v| v.next()).unwrap_or(0);
            if let Some(inc) = &mut self.incoming {
                inc.incr = Some(Incr {
                    overflow: usize::try_from(announced).unwrap_or(usize::MAX)
                        > MAX_CLIPBOARD_BYTES,
                    ..Incr::default()
                });
                inc.deadline = Instant::now() + CONVERT_TIMEOUT;
            }
            // Deleting the property asks the owner for the first chunk.
            self.conn
                .delete_property(self.window, a.LIFELINE_CLIPBOARD)?;
            return Ok(());
        }
        self.conn
            .delete_property(self.window, a.LIFELINE_CLIPBOARD)?;
        self.incoming = None;
        if reply.bytes_after > 0 || reply.value.len() > MAX_CLIPBOARD_BYTES {
            tracing::debug!("copied text larger than the clipboard bound dropped");
            return Ok(());
        }
        self.deliver(reply.type_, reply.format, &reply.value);
        Ok(())
    }

    fn incr_chunk(&mut self) -> Result<(), ClipboardError> {
        let a = self.atoms;
        if self.incoming.as_ref().is_none_or(|i| i.incr.is_none()) {
            return Ok(());
        }
        let reply = self
            .conn
            .get_property(
                true,
                self.window,
                a.LIFELINE_CLIPBOARD,
                AtomEnum::ANY,
                0,
                READ_WORDS,
            )?
            .reply()
            .map_err(request("GetProperty"))?;
        let Some(inc) = &mut self.incoming else {
            return Ok(());
        };
        let Some(incr) = &mut inc.incr else {
            return Ok(());
        };
        inc.deadline = Instant::now() + CONVERT_TIMEOUT;
        if reply.bytes_after > 0 {
            // Not deleted by GetProperty; delete it to get the next chunk.
            incr.overflow = true;
            self.conn
                .delete_property(self.window, a.LIFELINE_CLIPBOARD)?;
        }
        if reply.value.is_empty() && reply.bytes_after == 0 {
            let Some(Incoming {
                incr: Some(done), ..
            }) = self.incoming.take()
            else {
                return Ok(());
            };
            if done.overflow {
                tracing::debug!("copied text larger than the clipboard bound dropped");
            } else {
                self.deliver(done.kind, done.format, &done.bytes);
            }
            return Ok(());
        }
        if !incr.overflow {
            incr.kind = reply.type_;
            incr.format = reply.format;
            incr.bytes.extend_from_slice(&reply.value);
            if incr.bytes.len() > MAX_CLIPBOARD_BYTES {
                incr.overflow = true;
                incr.bytes = Vec::new();
            }
        }
        Ok(())
    }

    fn deliver(&mut self, kind: Atom, format: u8, bytes: &[u8]) {
        let encoding = if kind == Atom::from(AtomEnum::STRING) {
            Encoding::Latin1
        } else if kind == self.atoms.UTF8_STRING {
            Encoding::Utf8
        } else {
            Encoding::Unknown
        };
        let Some(text) = (format == 8)
            .then(|| decode_text(bytes, encoding))
            .flatten()
        else {
            tracing::debug!(kind, format, "copied data that is not text ignored");
            return;
        };
        if self.last.as_ref() == Some(&text) {
            return;
        }
        self.last = Some(text.clone());
        match self.changed.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("clipboard text dropped: the session is not reading")
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn request_ownership(&mut self, text: String) -> Result<(), ClipboardError> {
        self.pending_own = Some(text);
        // A zero-length append changes nothing but yields a PropertyNotify with the
        // server's time, which is what the selection must be taken with.
        self.conn.change_property8(
            PropMode::APPEND,
            self.window,
            self.atoms.LIFELINE_TIMESTAMP,
            AtomEnum::STRING,
            &[],
        )?;
        Ok(())
    }

    fn take_ownership(&mut self, time: Timestamp) -> Result<(), ClipboardError> {
        let Some(text) = self.pending_own.take() else {
            return Ok(());
        };
        let a = self.atoms;
        self.conn
            .set_selection_owner(self.window, a.CLIPBOARD, time)?;
        let owner = self
            .conn
            .get_selection_owner(a.CLIPBOARD)?
            .reply()
            .map_err(request("GetSelectionOwner"))?
            .owner;
        if owner != self.window {
            tracing::warn!("could not take the clipboard");
            return Ok(());
        }
        self.last = Some(text.clone());
        self.owned = Some(Owned { text, time });
        Ok(())
    }

    fn serve(&mut self, e: SelectionRequestEvent) -> Result<(), ClipboardError> {
        let a = self.atoms;
        // Obsolete requestors name no property: the target is the property then.
        let property = if e.property == x11rb::NONE {
            e.target
        } else {
            e.property
        };
        let answered = match &self.owned {
            Some(o)
                if e.selection == a.CLIPBOARD
                    && e.owner == self.window
                    && (e.time == x11rb::CURRENT_TIME || e.time >= o.time) =>
            {
                self.answer(o, &e, property)?
            }
            _ => false,
        };
        let notify = SelectionNotifyEvent {
            response_type: xproto::SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: e.time,
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property: if answered { property } else { x11rb::NONE },
        };
        self.conn
            .send_event(false, e.requestor, EventMask::NO_EVENT, notify)?;
        Ok(())
    }
}

impl Worker {
    /// Writes the requested form of our text to the requestor's property; `false` for a
    /// target we do not offer.
    fn answer(
        &self,
        o: &Owned,
        e: &SelectionRequestEvent,
        property: Atom,
    ) -> Result<bool, ClipboardError> {
        let a = self.atoms;
        let string: Atom = AtomEnum::STRING.into();
        if e.target == a.TARGETS {
            let targets = [a.TARGETS, a.TIMESTAMP, a.UTF8_STRING, a.TEXT, string];
            self.conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::ATOM,
                &targets,
            )?;
            return Ok(true);
        }
        if e.target == a.TIMESTAMP {
            self.conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::INTEGER,
                &[o.time],
            )?;
            return Ok(true);
        }
        let (kind, bytes) = if e.target == a.UTF8_STRING {
            (a.UTF8_STRING, o.text.as_bytes().to_vec())
        } else if e.target == a.TEXT {
            match to_latin1(&o.text) {
                Some(b) => (string, b),
                None => (a.UTF8_STRING, o.text.as_bytes().to_vec()),
            }
        } else if e.target == string {
            (string, to_latin1_lossy(&o.text))
        } else {
            return Ok(false);
        };
        self.conn
            .change_property8(PropMode::REPLACE, e.requestor, property, kind, &bytes)?;
        Ok(true)
    }
}

/// How the owner said its bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Utf8,
    Latin1,
    /// Another type: accepted only when it is valid UTF-8.
    Unknown,
}

/// Text from a selection's bytes (untrusted): trailing NULs removed, invalid UTF-8
/// replaced (or refused for an unknown type), empty or oversized results refused.
pub(crate) fn decode_text(bytes: &[u8], encoding: Encoding) -> Option<String> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    let text = match encoding {
        Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Encoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        Encoding::Unknown => String::from_utf8(bytes.to_vec()).ok()?,
    };
    (!text.is_empty() && text.len() <= MAX_CLIPBOARD_BYTES).then_some(text)
}

/// The text in Latin-1, if every character has a Latin-1 code.
fn to_latin1(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// The text in Latin-1, with `?` for characters Latin-1 lacks.
fn to_latin1_lossy(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_text() {
        assert_eq!(
            decode_text("Grüße\0".as_bytes(), Encoding::Utf8).as_deref(),
            Some("Grüße")
        );
        assert_eq!(
            decode_text(&[0x47, 0xfc, 0xdf], Encoding::Latin1).as_deref(),
            Some("Güß")
        );
        assert_eq!(decode_text(&[0xff, 0xfe], Encoding::Unknown), None);
        assert_eq!(decode_text(b"\0\0", Encoding::Utf8), None);
        assert_eq!(
            decode_text(&vec![b'a'; MAX_CLIPBOARD_BYTES + 1], Encoding::Utf8),
            None
        );
        // Latin-1 bytes double in UTF-8: still bounded after decoding.
        assert_eq!(
            decode_text(&vec![0xe9; MAX_CLIPBOARD_BYTES / 2 + 1], Encoding::Latin1),
            None
        );
    }

    #[test]
    fn encodes_latin1() {
        assert_eq!(to_latin1("élève"), Some(vec![0xe9, b'l', 0xe8, b'v', b'e']));
        assert_eq!(to_latin1("5 €"), None);
        assert_eq!(to_latin1_lossy("5 €"), b"5 ?".to_vec());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                               which in 0u8..3) {
            let encoding = [Encoding::Utf8, Encoding::Latin1, Encoding::Unknown][usize::from(which)];
            if let Some(text) = decode_text(&bytes, encoding) {
                prop_assert!(!text.is_empty() && text.len() <= MAX_CLIPBOARD_BYTES);
                prop_assert!(!text.ends_with('\0'));
            }
        }

        #[test]
        fn latin1_round_trips(text in "\\PC{0,64}") {
            if let Some(bytes) = to_latin1(&text) {
                let back = decode_text(&bytes, Encoding::Latin1).unwrap_or_default();
                prop_assert_eq!(back, text.trim_end_matches('\0'));
            }
            prop_assert_eq!(to_latin1_lossy(&text).len(), text.chars().count());
        }
    }
}
