//! The stream thread's loop.
//!
//! One channel wakes the thread: control messages (forwarded by a helper thread from the
//! session's receiver) and source events (from the source's own thread). Between messages
//! the thread sleeps until the next thing it has to do: the end of a short coalescing delay
//! after damage (so one repaint in several steps goes out as one frame), the next frame
//! slot, the next pointer poll, or a refinement. With nobody watching it only waits.
//!
//! A frame is produced when something is pending (damage, a key frame request), fewer than
//! `MAX_IN_FLIGHT` frames wait for their ack, and the level's frame interval has passed:
//! the damage is taken, the damaged blocks are captured, and the encoder sends the
//! difference to the reference. Damage arriving meanwhile accumulates in the source, so
//! after an ack the next frame carries the newest state.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use lifeline_proto::frame::{self, Channel, FLAG_DEFLATE, FLAG_SUPERSEDES};
use lifeline_proto::remote::{Monitor, StreamSettings};
use lifeline_proto::screen::{Cursor, MAX_CURSOR, MAX_SURFACE, encode_cursor};

use super::encode::{EncodeError, EncodedFrame, FrameEncoder};
use super::rate::{Pacer, Refiner};
use super::{
    Area, CursorImage, EventSink, PointerState, ScreenSource, SourceError, SourceEvent,
    StreamControl, StreamOutput, surface_area,
};

/// What wakes the stream thread.
#[derive(Debug)]
pub(crate) enum Msg {
    Control(StreamControl),
    ControlClosed,
    Source(SourceEvent),
}

/// Wait after the first damage before capturing, so a repaint in several steps is one
/// frame.
const COALESCE: Duration = Duration::from_millis(4);
/// Pointer polling while it moves, and when it has been still for [`STILL_AFTER`].
const POLL_MOVING: Duration = Duration::from_millis(30);
const POLL_STILL: Duration = Duration::from_millis(250);
const STILL_AFTER: Duration = Duration::from_secs(2);
/// The share of a second of the measured link one refinement may take.
const REFINE_SLICE: Duration = Duration::from_millis(250);
/// Most pointer positions kept between two captures (each is one offset to try).
const TRAIL: usize = 8;

/// Why the loop ends.
enum Exit {
    /// Stop, control closed or output closed: end quietly.
    Done,
    /// Capture or encoding failed: tell the session.
    Failed(String),
}

impl From<SourceError> for Exit {
    fn from(e: SourceError) -> Self {
        Exit::Failed(format!("screen capture stopped: {}", e.chain()))
    }
}

impl From<EncodeError> for Exit {
    fn from(e: EncodeError) -> Self {
        let mut s = format!("screen encoding stopped: {e}");
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            s.push_str(&format!(": {c}"));
            cur = c.source();
        }
        Exit::Failed(s)
    }
}

pub(crate) fn run(
    source: Box<dyn ScreenSource>,
    control: mpsc::Receiver<StreamControl>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    out: tokio::sync::mpsc::Sender<StreamOutput>,
) {
    let forward = tx.clone();
    let started = std::thread::Builder::new()
        .name("screen-control".into())
        .spawn(move || {
            for c in control.iter() {
                if forward.send(Msg::Control(c)).is_err() {
                    return;
                }
            }
            let _ = forward.send(Msg::ControlClosed);
        });
    let mut s = Stream::new(source, out.clone());
    let result = match started {
        Ok(_) => s.run(EventSink { tx }, &rx),
        Err(e) => Err(Exit::Failed(format!(
            "screen sharing could not start a thread: {e}"
        ))),
    };
    if let Err(Exit::Failed(why)) = result {
        tracing::warn!("{why}");
        let _ = out.blocking_send(StreamOutput::Failed(why));
    }
}

/// Cursor state sent to the console.
#[derive(Debug, Default)]
struct CursorSent {
    /// Serial of the shape sent; `None`: nothing sent yet (or a new viewer).
    serial: Option<u32>,
    hidden: bool,
    pos: Option<(i16, i16)>,
    shape_changed: bool,
    next_poll: Option<Instant>,
    last_move: Option<Instant>,
}

struct Stream {
    source: Box<dyn ScreenSource>,
    out: tokio::sync::mpsc::Sender<StreamOutput>,
    active: bool,
    settings: StreamSettings,
    monitors: Vec<Monitor>,
    /// Desktop coordinates of the surface.
    surface: Option<Area>,
    encoder: Option<FrameEncoder>,
    pacer: Pacer,
    frame: u32,
    seq_screen: u32,
    seq_cursor: u32,
    need_key: bool,
    damage_since: Option<Instant>,
    damage: Vec<Area>,
    refiner: Refiner,
    /// JPEG bytes per pixel lately (to size refinements).
    jpeg_bytes_per_px: f64,
    cursor: CursorSent,
    /// Pointer positions seen since the last capture (that one first): a window dragged
    /// since then moved by the pointer's offset from one of them (from where the button
    /// went down, or from where the pointer was at the capture).
    trail: Vec<(i32, i32)>,
}

impl Stream {
    fn new(source: Box<dyn ScreenSource>, out: tokio::sync::mpsc::Sender<StreamOutput>) -> Self {
        Stream {
            source,
            out,
            active: false,
            settings: StreamSettings::default(),
            monitors: Vec::new(),
            surface: None,
            encoder: None,
            pacer: Pacer::new(Default::default()),
            frame: 0,
            seq_screen: 0,
            seq_cursor: 0,
            need_key: true,
            damage_since: None,
            damage: Vec::new(),
            refiner: Refiner::default(),
            jpeg_bytes_per_px: 0.2,
            cursor: CursorSent::default(),
            trail: Vec::new(),
        }
    }

    fn run(&mut self, sink: EventSink, rx: &mpsc::Receiver<Msg>) -> Result<(), Exit> {
        self.refresh_monitors()?;
        self.source.watch(sink)?;
        loop {
            let now = Instant::now();
            let msg = match self.next_wakeup(now) {
                None => rx.recv().map_err(|_| Exit::Done)?,
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.tick(Instant::now())?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Err(Exit::Done),
                },
            };
            self.handle(msg)?;
            while let Ok(m) = rx.try_recv() {
                self.handle(m)?;
            }
            self.tick(Instant::now())?;
        }
    }

    fn handle(&mut self, msg: Msg) -> Result<(), Exit> {
        match msg {
            Msg::Control(StreamControl::Stop) | Msg::ControlClosed => Err(Exit::Done),
            Msg::Control(StreamControl::Stream { active, settings }) => {
                self.pacer.set_quality(settings.quality);
                let moved = settings.monitor != self.settings.monitor;
                self.settings = settings;
                if active && !self.active {
                    self.start();
                } else if !active && self.active {
                    self.active = false;
                    self.encoder = None;
                    self.pacer.forget_in_flight();
                }
                if moved {
                    self.update_surface();
                }
                Ok(())
            }
            Msg::Control(StreamControl::Ack(n)) => {
                self.pacer.on_ack(n, Instant::now());
                Ok(())
            }
            Msg::Control(StreamControl::Refresh) => {
                // A new or lost viewer: the whole picture, the cursor's shape and place.
                self.request_key();
                self.cursor = CursorSent {
                    shape_changed: true,
                    ..Default::default()
                };
                Ok(())
            }
            Msg::Source(SourceEvent::Damage) => {
                if self.damage_since.is_none() {
                    self.damage_since = Some(Instant::now());
                }
                Ok(())
            }
            Msg::Source(SourceEvent::Monitors) => self.refresh_monitors(),
            Msg::Source(SourceEvent::Cursor) => {
                self.cursor.shape_changed = true;
                Ok(())
            }
            Msg::Source(SourceEvent::Lost(why)) => Err(Exit::Failed(why)),
        }
    }

    /// Someone started watching: key frame, cursor shape and position.
    fn start(&mut self) {
        self.active = true;
        self.request_key();
        self.cursor = CursorSent {
            shape_changed: true,
            ..Default::default()
        };
    }

    fn request_key(&mut self) {
        self.need_key = true;
        self.pacer.forget_in_flight();
        self.trail.clear();
    }

    fn refresh_monitors(&mut self) -> Result<(), Exit> {
        let list = self.source.monitors()?;
        if list != self.monitors {
            tracing::info!(count = list.len(), "monitors changed");
            self.monitors = list.clone();
            self.send(StreamOutput::Monitors(list))?;
            self.update_surface();
        }
        Ok(())
    }

    /// Recomputes the surface; a new size or place means a new encoder and a key frame.
    fn update_surface(&mut self) {
        let side = u32::from(MAX_SURFACE);
        let area = surface_area(&self.monitors, &self.settings)
            .map(|a| Area::new(a.x, a.y, a.w.min(side), a.h.min(side)));
        if area != self.surface {
            self.surface = area;
            self.encoder = None;
            self.request_key();
            self.cursor.pos = None;
        }
    }

    /// The next moment something is due while active; `None`: wait for a message.
    fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if !self.active {
            return None;
        }
        let mut next: Option<Instant> = self.cursor.next_poll.or(Some(now));
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        if self.cursor.shape_changed {
            consider(now);
        }
        if self.pacer.can_send() {
            let slot = self.pacer.next_slot().unwrap_or(now);
            if self.need_key {
                consider(slot);
            } else if let Some(d) = self.damage_since {
                consider(slot.max(d + COALESCE));
            } else if let Some(t) = self.refine_at() {
                consider(t.max(slot));
            }
        }
        next
    }

    /// When a refinement is due, if one is.
    fn refine_at(&self) -> Option<Instant> {
        let at = self.refiner.due()?;
        self.pacer.level().refine?;
        (self.pacer.in_flight() == 0).then_some(at)
    }

    fn tick(&mut self, now: Instant) -> Result<(), Exit> {
        if !self.active {
            return Ok(());
        }
        if self.cursor.shape_changed {
            self.cursor.shape_changed = false;
            self.send_shape()?;
        }
        if self.cursor.next_poll.is_none_or(|t| t <= now) {
            let p = self.source.pointer()?;
            self.send_position(p, now)?;
        }
        if !self.pacer.can_send() || self.pacer.next_slot().is_some_and(|t| t > now) {
            return Ok(());
        }
        let damage_due = self.damage_since.is_some_and(|d| d + COALESCE <= now);
        if self.need_key || damage_due {
            self.produce(now)?;
        } else if self.refine_at().is_some_and(|t| t <= now) {
            self.produce_refinement(now)?;
        }
        Ok(())
    }

    fn produce(&mut self, now: Instant) -> Result<(), Exit> {
        let Some(surface) = self.surface else {
            self.damage_since = None;
            self.need_key = false;
            return Ok(());
        };
        self.damage.clear();
        self.source.take_damage(&mut self.damage)?;
        self.damage_since = None;
        let key = self.need_key;
        if self.encoder.is_none() {
            self.encoder = Some(FrameEncoder::new(surface.w, surface.h)?);
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        if key {
            enc.mark_all_dirty();
        } else {
            for d in &self.damage {
                enc.mark_dirty(d.relative_to(surface.x, surface.y));
            }
        }
        if !enc.has_dirty() {
            return Ok(());
        }
        let areas = enc.dirty_areas();
        let pointer = self.source.pointer()?;
        if let Err(e) = self
            .source
            .capture((surface.x, surface.y), &areas, enc.current_mut())
        {
            // The desktop may have changed under us (a monitor unplugged a moment ago):
            // check, and capture once more only if the layout is the same.
            tracing::debug!(error = %e.chain(), "capture failed; checking the monitors");
            self.refresh_monitors()?;
            if self.surface != Some(surface) {
                return Ok(()); // a key frame of the new surface follows
            }
            let Some(enc) = self.encoder.as_mut() else {
                return Ok(());
            };
            self.source
                .capture((surface.x, surface.y), &areas, enc.current_mut())?;
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        let mut moves: Vec<(i32, i32)> = Vec::new();
        if pointer.buttons != 0 {
            for &(x, y) in &self.trail {
                let m = (pointer.x - x, pointer.y - y);
                if m != (0, 0) && !moves.contains(&m) {
                    moves.push(m);
                }
            }
        }
        self.trail.clear();
        self.trail.push((pointer.x, pointer.y));
        let number = self.frame.wrapping_add(1);
        let level = self.pacer.level();
        let mut params = level.params;
        if self.refiner.after_still(now) {
            // A new picture rather than the middle of a scroll or a video: it may well stay.
            params.chroma = level.still_chroma;
        }
        let encoded = enc.encode(number, key, &params, &moves)?;
        if let Some(f) = encoded {
            self.need_key = false;
            self.frame = number;
            if f.stats.jpeg > 0 {
                self.refiner.on_lossy(now);
                let bpp = f.stats.jpeg_bytes as f64 / f.stats.jpeg_pixels.max(1) as f64;
                self.jpeg_bytes_per_px = (self.jpeg_bytes_per_px + bpp) / 2.0;
            }
            tracing::trace!(frame = number, key, stats = ?f.stats, "screen frame");
            self.send_frame(&f, now)?;
        }
        self.send_position(pointer, now)
    }

    fn produce_refinement(&mut self, now: Instant) -> Result<(), Exit> {
        self.refiner.start();
        let Some(q) = self.pacer.level().refine else {
            return Ok(());
        };
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        let mut params = self.pacer.params();
        params.jpeg_quality = q;
        params.chroma = super::encode::Chroma::Full;
        // Keep each refinement to about REFINE_SLICE of the measured link, guessing its
        // size from what JPEG has cost per pixel (sharper costs about twice as much).
        let max_pixels = match self.pacer.rate() {
            Some(rate) => {
                let per_px = (self.jpeg_bytes_per_px * 2.0).max(0.05);
                (rate * REFINE_SLICE.as_secs_f64() / per_px) as u64
            }
            None => u64::MAX,
        };
        let number = self.frame.wrapping_add(1);
        if let Some(f) = enc.refine(number, &params, max_pixels.max(1))? {
            // More to refine once this one is acknowledged?
            self.refiner.on_refined(now, enc.lossy_below(q));
            self.frame = number;
            tracing::trace!(frame = number, stats = ?f.stats, "refinement");
            self.send_frame(&f, now)?;
        }
        Ok(())
    }

    fn send_frame(&mut self, f: &EncodedFrame, now: Instant) -> Result<(), Exit> {
        let mut bytes = 0;
        for (i, m) in f.messages.iter().enumerate() {
            // A key frame's first message also starts the deflate stream afresh (the
            // encoder reset its compressor for it).
            let flags = if f.key && i == 0 { FLAG_SUPERSEDES } else { 0 }
                | if m.deflated { FLAG_DEFLATE } else { 0 };
            // Consecutive numbers: a receiver tells from a gap that the stream broke.
            self.seq_screen = self.seq_screen.wrapping_add(1);
            let msg = frame::encode(Channel::Screen, flags, self.seq_screen, &m.payload)
                .map_err(|e| Exit::Failed(format!("a screen frame is too large: {e}")))?;
            bytes += msg.len();
            self.send(StreamOutput::Binary(msg))?;
        }
        self.pacer.on_sent(self.frame, bytes, now);
        Ok(())
    }

    fn send_cursor(&mut self, c: &Cursor<'_>) -> Result<(), Exit> {
        let payload = encode_cursor(c)
            .map_err(|e| Exit::Failed(format!("a cursor message could not be built: {e}")))?;
        self.seq_cursor = self.seq_cursor.wrapping_add(1);
        let msg = frame::encode(Channel::Cursor, 0, self.seq_cursor, &payload)
            .map_err(|e| Exit::Failed(format!("a cursor message is too large: {e}")))?;
        self.send(StreamOutput::Binary(msg))
    }

    fn send_shape(&mut self) -> Result<(), Exit> {
        let img = self.source.cursor()?;
        if self.cursor.serial == Some(img.serial) {
            return Ok(());
        }
        self.cursor.serial = Some(img.serial);
        let img = clip_cursor(img);
        let visible = img.width > 0 && img.height > 0 && img.rgba.chunks(4).any(|p| p[3] != 0);
        if !visible {
            if !self.cursor.hidden {
                self.cursor.hidden = true;
                self.send_cursor(&Cursor::Hidden)?;
            }
            return Ok(());
        }
        self.cursor.hidden = false;
        self.send_cursor(&Cursor::Shape {
            width: img.width,
            height: img.height,
            hot_x: img.hot_x,
            hot_y: img.hot_y,
            rgba: &img.rgba,
        })?;
        // A console shows a new shape at the last position it knows; resend it.
        self.cursor.pos = None;
        Ok(())
    }

    fn send_position(&mut self, p: PointerState, now: Instant) -> Result<(), Exit> {
        if self.trail.len() < TRAIL && !self.trail.contains(&(p.x, p.y)) {
            self.trail.push((p.x, p.y));
        }
        let Some(s) = self.surface else {
            return Ok(());
        };
        let clamp = |v: i64| v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        let pos = (
            clamp(i64::from(p.x) - i64::from(s.x)),
            clamp(i64::from(p.y) - i64::from(s.y)),
        );
        if self.cursor.pos != Some(pos) {
            if self.cursor.pos.is_some() {
                self.cursor.last_move = Some(now);
            }
            self.cursor.pos = Some(pos);
            if !self.cursor.hidden {
                self.send_cursor(&Cursor::Position { x: pos.0, y: pos.1 })?;
            }
        }
        let moving = self
            .cursor
            .last_move
            .is_some_and(|t| now.saturating_duration_since(t) < STILL_AFTER);
        self.cursor.next_poll = Some(now + if moving { POLL_MOVING } else { POLL_STILL });
        Ok(())
    }

    fn send(&self, o: StreamOutput) -> Result<(), Exit> {
        self.out.blocking_send(o).map_err(|_| Exit::Done)
    }
}

/// Crops a cursor larger than the protocol allows to the largest part around its hot spot.
fn clip_cursor(img: CursorImage) -> CursorImage {
    let max = MAX_CURSOR;
    let need = usize::from(img.width) * usize::from(img.height) * 4;
    if img.rgba.len() != need {
        return CursorImage {
            width: 0,
            height: 0,
            rgba: Vec::new(),
            ..img
        };
    }
    if img.width <= max && img.height <= max {
        return img;
    }
    let x0 = img
        .hot_x
        .saturating_sub(max / 2)
        .min(img.width.saturating_sub(max));
    let y0 = img
        .hot_y
        .saturating_sub(max / 2)
        .min(img.height.saturating_sub(max));
    let (w, h) = (img.width.min(max), img.height.min(max));
    let mut rgba = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for y in y0..y0 + h {
        let at = (usize::from(y) * usize::from(img.width) + usize::from(x0)) * 4;
        rgba.extend_from_slice(&img.rgba[at..at + usize::from(w) * 4]);
    }
    CursorImage {
        serial: img.serial,
        width: w,
        height: h,
        hot_x: img.hot_x - x0,
        hot_y: img.hot_y - y0,
        rgba,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Cursor images come from the X server: any size, hot spot or length is handled.
        #[test]
        fn any_cursor_image_is_clipped_safely(w in 0u16..600, h in 0u16..600,
                                              hx in any::<u16>(), hy in any::<u16>(),
                                              short in any::<bool>()) {
            let n = usize::from(w) * usize::from(h) * 4;
            let rgba = vec![7u8; if short { n / 2 } else { n }];
            let c = clip_cursor(CursorImage { serial: 1, width: w, height: h,
                                              hot_x: hx.min(w.saturating_sub(1)),
                                              hot_y: hy.min(h.saturating_sub(1)), rgba });
            prop_assert!(c.width <= MAX_CURSOR && c.height <= MAX_CURSOR);
            prop_assert_eq!(c.rgba.len(), usize::from(c.width) * usize::from(c.height) * 4);
            if c.width > 0 && c.height > 0 {
                prop_assert!(c.hot_x < c.width && c.hot_y < c.height);
            }
        }
    }

    #[test]
    fn big_cursor_is_cropped_around_its_hot_spot() {
        let (w, h) = (300u16, 260u16);
        let mut rgba = vec![0u8; usize::from(w) * usize::from(h) * 4];
        let at = (250 * usize::from(w) + 290) * 4;
        rgba[at..at + 4].copy_from_slice(&[1, 2, 3, 255]);
        let c = clip_cursor(CursorImage {
            serial: 1,
            width: w,
            height: h,
            hot_x: 290,
            hot_y: 250,
            rgba,
        });
        assert_eq!((c.width, c.height), (256, 256));
        assert_eq!((c.hot_x, c.hot_y), (290 - 44, 250 - 4));
        let at = (usize::from(c.hot_y) * 256 + usize::from(c.hot_x)) * 4;
        assert_eq!(&c.rgba[at..at + 4], &[1, 2, 3, 255]);
    }
}
