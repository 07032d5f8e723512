//! The screen stream: capture, change detection, encoding and pacing, on a thread of its own.
//!
//! The session starts it with [`spawn`] once the customer granted `view`, feeds it the
//! relay's stream messages as [`StreamControl`] and forwards each [`StreamOutput`]: binary
//! WebSocket messages (screen and cursor frames, see `lifeline_proto::screen`), monitor lists
//! and, when capture fails, a sentence for the log.
//!
//! # Design
//! * A [`ScreenSource`] is the desktop (X11 in `platform::linux::capture`): monitors,
//!   damage reports, capture of areas, pointer and cursor image. It reports events from a
//!   thread of its own through an [`EventSink`]; the control receiver is forwarded by a small
//!   thread into the same channel, so the stream thread sleeps on one channel and wakes for
//!   whichever comes first. Idle (no damage, nobody watching) costs no capture work and no
//!   bytes; while someone watches the pointer is polled a few times a second.
//! * Damage says *that* and roughly *where* something changed; only damaged 16×16 blocks
//!   are captured, then compared with the reference to keep what really changed
//!   ([`detect`]). The *reference* is what the console has been sent, not the last
//!   capture, so captures skipped while the link is busy lose nothing: the next frame is the
//!   difference between the newest capture and what the console shows.
//! * [`encode`] turns the changes into Solid, palette PNG, JPEG and Copy rectangles
//!   (scrolling, moved windows); [`rate`] limits the frames in flight and picks the quality.
//! * The surface is one monitor or the bounding box of all monitors
//!   ([`lifeline_proto::remote::StreamSettings::monitor`]); its top-left corner in desktop
//!   coordinates is [`surface_origin`], the rule the input side uses too.
//!
//! # Wire use
//! Each frame is one or more update messages on `Channel::Screen` with the channel's own
//! sequence numbers; the last has `UPDATE_END_OF_FRAME`. Every message of a key frame has
//! `UPDATE_KEY_FRAME`, and its first message also carries the header's `FLAG_SUPERSEDES`
//! (only the first, so a relay dropping superseded frames never drops part of the key frame
//! itself). Copy rectangles only appear in a frame's first message. Cursor shape, position
//! and hidden messages go on `Channel::Cursor`; the shape only when it changed.
//!
//! # Limits
//! X11 only; Wayland sessions and other systems have no source yet. Frames in flight are
//! released only by acks: a relay that stops acknowledging stops the picture until it
//! sends `Refresh`.

pub mod blocks;
pub mod detect;
pub mod encode;
pub mod pixels;
pub mod rate;
mod stream;

use std::sync::mpsc;

use lifeline_proto::remote::{Monitor, StreamSettings};

pub use pixels::{Area, Pixels};

/// What the session tells the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamControl {
    /// Whether anyone watches (relay's `Stream { active, settings }`).
    Stream {
        active: bool,
        settings: StreamSettings,
    },
    /// Relay's `FrameAck { frame }`.
    Ack(u32),
    /// Relay's `Refresh`.
    Refresh,
    /// The customer revoked `view` or the session ends: stop capturing at once.
    Stop,
}

/// What the stream gives the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// One complete binary WebSocket message (12-byte frame header + payload).
    Binary(Vec<u8>),
    /// The monitors changed (send `AgentToRelay::Monitors`). Also sent once at start.
    Monitors(Vec<Monitor>),
    /// A sentence for the log; capture failed and the stream stopped.
    Failed(String),
}

/// Something a source noticed, reported from its own thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// Pixels changed; [`ScreenSource::take_damage`] says where.
    Damage,
    /// The monitor layout may have changed.
    Monitors,
    /// The cursor's shape changed.
    Cursor,
    /// The source cannot go on (a sentence for the log).
    Lost(String),
}

/// Where a source's event thread reports to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<stream::Msg>,
}

impl EventSink {
    /// Reports an event; `false` once the stream has ended (the source's thread should end
    /// too).
    pub fn send(&self, event: SourceEvent) -> bool {
        self.tx.send(stream::Msg::Source(event)).is_ok()
    }
}

/// The pointer in desktop coordinates, with its buttons
/// (`lifeline_proto::remote::buttons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointerState {
    pub x: i32,
    pub y: i32,
    pub buttons: u8,
}

/// The cursor's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// Changes whenever the shape changes.
    pub serial: u32,
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// `width`×`height` RGBA pixels, straight alpha, row by row.
    pub rgba: Vec<u8>,
}

/// A failure of the desktop source: a sentence, and the cause when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    pub fn new(
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SourceError {
            message: message.into(),
            source,
        }
    }

    /// The sentence and every cause, for the log.
    pub fn chain(&self) -> String {
        let mut s = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// The desktop, as the stream needs it.
pub trait ScreenSource: Send {
    /// The monitors in desktop coordinates, at least one; ids stay the same for as long as
    /// a monitor stays connected.
    fn monitors(&mut self) -> Result<Vec<Monitor>, SourceError>;
    /// Starts reporting [`SourceEvent`]s to `sink` from the source's own thread. Called
    /// once, before anything else but `monitors`.
    fn watch(&mut self, sink: EventSink) -> Result<(), SourceError>;
    /// Appends the areas (desktop coordinates) damaged since the last call, and re-arms
    /// the [`SourceEvent::Damage`] report.
    fn take_damage(&mut self, out: &mut Vec<Area>) -> Result<(), SourceError>;
    /// Copies `areas` (coordinates of `into`, whose top-left pixel is at desktop position
    /// `origin`) from the desktop into `into`.
    fn capture(
        &mut self,
        origin: (i32, i32),
        areas: &[Area],
        into: &mut Pixels,
    ) -> Result<(), SourceError>;
    fn pointer(&mut self) -> Result<PointerState, SourceError>;
    fn cursor(&mut self) -> Result<CursorImage, SourceError>;
}

/// The surface for `settings`: the chosen monitor, else (none chosen, or it is gone) the
/// bounding box of all monitors; `None` without monitors. Desktop coordinates.
pub fn surface_area(monitors: &[Monitor], settings: &StreamSettings) -> Option<Area> {
    let area = |m: &Monitor| Area::new(m.x, m.y, m.width, m.height);
    if let Some(id) = settings.monitor
        && let Some(m) = monitors.iter().find(|m| m.id == id)
    {
        return Some(area(m));
    }
    monitors
        .iter()
        .map(area)
        .reduce(|a, b| a.union(&b))
        .filter(|a| !a.is_empty())
}

/// The desktop position of the surface's top-left pixel: the chosen monitor's (x, y), or
/// the top-left of the bounding box of all monitors. Add it to surface coordinates from
/// the console to get desktop coordinates.
pub fn surface_origin(monitors: &[Monitor], settings: &StreamSettings) -> (i32, i32) {
    surface_area(monitors, settings)
        .map(|a| (a.x, a.y))
        .unwrap_or((0, 0))
}

/// Runs the stream on its own thread until `Stop`, until the control sender is dropped,
/// until `out` is closed, or until capture fails (then it sends `Failed` first).
///
/// `control` is a standard channel so the session can send from anywhere without a
/// runtime (`Sender::send` never blocks); `out` is a bounded tokio channel the session
/// reads from its async side. The stream blocks on `out` when it is full, which is fine:
/// it holds at most a few frames anyway.
///
/// Two helper threads come with it: one forwards `control` (it ends when the session
/// drops its sender), and the source's event thread (it ends with the stream).
///
/// Like `std::thread::spawn`, this panics only when the system cannot start a thread.
pub fn spawn(
    source: Box<dyn ScreenSource>,
    control: mpsc::Receiver<StreamControl>,
    out: tokio::sync::mpsc::Sender<StreamOutput>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("screen".into())
        .spawn(move || stream::run(source, control, tx, rx, out))
        .unwrap_or_else(|e| panic!("cannot start the screen thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon(id: u32, x: i32, y: i32, w: u32, h: u32) -> Monitor {
        Monitor {
            id,
            x,
            y,
            width: w,
            height: h,
            primary: id == 1,
            name: format!("M{id}"),
        }
    }

    #[test]
    fn surface_rule() {
        let ms = [mon(1, 0, 0, 1920, 1080), mon(2, 1920, -200, 1280, 1024)];
        let all = StreamSettings::default();
        assert_eq!(
            surface_area(&ms, &all),
            Some(Area::new(0, -200, 3200, 1280))
        );
        assert_eq!(surface_origin(&ms, &all), (0, -200));
        let second = StreamSettings {
            monitor: Some(2),
            ..Default::default()
        };
        assert_eq!(surface_origin(&ms, &second), (1920, -200));
        let gone = StreamSettings {
            monitor: Some(9),
            ..Default::default()
        };
        assert_eq!(surface_origin(&ms, &gone), (0, -200));
        assert_eq!(surface_area(&[], &all), None);
    }
}
