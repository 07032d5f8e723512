//! Screen capture on X11: monitors, damage, pixels, pointer and cursor image.
//!
//! [`X11Screen`] is the X11 [`ScreenSource`]. It speaks to the X server with `x11rb` over
//! one connection shared by two threads: the stream thread (requests and replies) and an
//! event thread started by [`ScreenSource::watch`] that turns X events into
//! [`SourceEvent`]s:
//!
//! * **Damage** (required): a `NonEmpty` damage object on the root window sends one event
//!   when the screen goes from unchanged to changed; [`ScreenSource::take_damage`] moves
//!   the accumulated region into an XFixes region, fetches its rectangles and clears it,
//!   which re-arms the event. So an idle desktop costs no events and no work at all.
//! * **Monitors**: RandR 1.5 `GetMonitors` (active ones); without RandR 1.5 the root window
//!   is one monitor. Monitor ids are assigned per monitor name and stay the same for the
//!   life of the connection; a monitor is clipped to the root window (only that can be
//!   captured). RandR screen/CRTC/output notifications, and the root window's
//!   `ConfigureNotify` (the server's only signal when a client defines a monitor with
//!   `SetMonitor`), trigger a new list.
//! * **Pixels**: with MIT-SHM 1.2 the server writes `GetImage` results into a memfd passed
//!   to it with `AttachFd`; we read them back with `FileExt::read_at` (no mapping, no
//!   unsafe code). Several areas are requested at once at different offsets of the segment.
//!   Without SHM, or when it fails at run time, plain `GetImage` replies are used.
//! * **Cursor**: XFixes cursor notifications signal a new shape; `GetCursorImage` gives
//!   premultiplied ARGB, converted to straight RGBA. The position comes from
//!   `QueryPointer`, polled by the stream.
//!
//! Limits: one X screen (the connection's default); the root window must be TrueColor at
//! 32 bits per pixel, least significant byte first, masks 0xff0000/0xff00/0xff (every
//! current desktop; others are refused with a sentence); the pointer's back/forward buttons
//! are not reported (the core protocol has no state bits for them).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use lifeline_proto::remote::{MAX_MONITORS, Monitor};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    self, ClientMessageEvent, EventMask, ImageFormat, ImageOrder, KeyButMask, WindowClass,
};
use x11rb::protocol::{damage, randr, shm, xfixes};
use x11rb::rust_connection::RustConnection;

use crate::screen::{
    Area, CursorImage, EventSink, Pixels, PointerState, ScreenSource, SourceError, SourceEvent,
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot connect to the X display {display}; is a graphical session running?")]
    Connect {
        display: String,
        #[source]
        source: ConnectError,
    },
    #[error("the X server lacks the {0} extension that screen sharing needs")]
    MissingExtension(&'static str),
    #[error(
        "the X screen's pixel format (depth {depth}, {bpp} bits per pixel) is not supported for screen sharing"
    )]
    PixelFormat { depth: u8, bpp: u8 },
    #[error("the connection to the X server failed")]
    Connection(#[from] ConnectionError),
    #[error("the X server refused a request")]
    Reply(#[from] ReplyError),
    #[error("the X server refused a request or ran out of ids")]
    ReplyOrId(#[from] ReplyOrIdError),
    #[error("shared memory for screen capture could not be set up")]
    Shm(#[source] std::io::Error),
    #[error("the captured image of {w}x{h} pixels came back with {got} bytes")]
    BadImage { w: u32, h: u32, got: usize },
    #[error("the screen event thread could not start")]
    Thread(#[source] std::io::Error),
}

impl From<CaptureError> for SourceError {
    fn from(e: CaptureError) -> Self {
        SourceError::new("X11 screen capture failed", Some(Box::new(e)))
    }
}

/// The MIT-SHM segment: a memfd the server writes images into.
struct Segment {
    seg: shm::Seg,
    file: File,
    size: usize,
}

/// The X11 desktop, as a [`ScreenSource`].
pub struct X11Screen {
    conn: Arc<RustConnection>,
    root: xproto::Window,
    /// Current root window size (RandR may change it).
    root_size: (u16, u16),
    randr_monitors: bool,
    shm_ok: bool,
    segment: Option<Segment>,
    damage: damage::Damage,
    region: xfixes::Region,
    wake: xproto::Window,
    quit: xproto::Atom,
    ids: HashMap<xproto::Atom, u32>,
    names: HashMap<xproto::Atom, String>,
    pump: Option<JoinHandle<()>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for X11Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Screen")
            .field("root", &self.root)
            .field("shm", &self.shm_ok)
            .finish()
    }
}

/// Options for [`X11Screen::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct X11Options {
    /// Use MIT-SHM when the server has it (default). Off: plain `GetImage` only.
    pub shm: bool,
}

impl Default for X11Options {
    fn default() -> Self {
        X11Options { shm: true }
    }
}

impl X11Screen {
    /// Connects to `display` (`None`: `$DISPLAY`).
    pub fn open(display: Option<&str>) -> Result<Self, CaptureError> {
        Self::open_with(display, X11Options::default())
    }

    pub fn open_with(display: Option<&str>, opts: X11Options) -> Result<Self, CaptureError> {
        let (conn, screen_num) =
            RustConnection::connect(display).map_err(|source| CaptureError::Connect {
                display: display.map_or_else(
                    || std::env::var("DISPLAY").unwrap_or_else(|_| "(unset)".into()),
                    str::to_owned,
                ),
                source,
            })?;
        let setup = conn.setup();
        let screen = setup
            .roots
            .get(screen_num)
            .ok_or(CaptureError::MissingExtension("screen"))?;
        let root = screen.root;
        let depth = screen.root_depth;
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map_or(0, |f| f.bits_per_pixel);
        let visual = screen
            .allowed_depths
            .iter()
            .flat_map(|d| d.visuals.iter())
            .find(|v| v.visual_id == screen.root_visual);
        let masks_ok = visual.is_some_and(|v| {
            v.red_mask == 0xFF_0000 && v.green_mask == 0xFF00 && v.blue_mask == 0xFF
        });
        if !(bpp == 32 && (depth == 24 || depth == 32) && masks_ok)
            || setup.image_byte_order != ImageOrder::LSB_FIRST
        {
            return Err(CaptureError::PixelFormat { depth, bpp });
        }
        let root_size = (screen.width_in_pixels, screen.height_in_pixels);

        for name in [damage::X11_EXTENSION_NAME, xfixes::X11_EXTENSION_NAME] {
            if conn.extension_information(name)?.is_none() {
                return Err(CaptureError::MissingExtension(name));
            }
        }
        xfixes::query_version(&conn, 5, 0)?.reply()?;
        damage::query_version(&conn, 1, 1)?.reply()?;

        let mut randr_monitors = false;
        if conn
            .extension_information(randr::X11_EXTENSION_NAME)?
            .is_some()
        {
            let v = randr::query_version(&conn, 1, 5)?.reply()?;
            randr_monitors = (v.major_version, v.minor_version) >= (1, 5);
            randr::select_input(
                &conn,
                root,
                randr::NotifyMask::SCREEN_CHANGE
                    | randr::NotifyMask::CRTC_CHANGE
                    | randr::NotifyMask::OUTPUT_CHANGE,
            )?
            .check()?;
        }
        let shm_ok = opts.shm
            && conn
                .extension_information(shm::X11_EXTENSION_NAME)?
                .is_some()
            && shm::query_version(&conn)?
                .reply()
                .is_ok_and(|v| (v.major_version, v.minor_version) >= (1, 2));

        // The root's ConfigureNotify: size changes and client-defined monitors.
        xproto::change_window_attributes(
            &conn,
            root,
            &xproto::ChangeWindowAttributesAux::new().event_mask(EventMask::STRUCTURE_NOTIFY),
        )?
        .check()?;
        let damage = conn.generate_id()?;
        damage::create(&conn, damage, root, damage::ReportLevel::NON_EMPTY)?.check()?;
        let region = conn.generate_id()?;
        xfixes::create_region(&conn, region, &[])?.check()?;
        xfixes::select_cursor_input(&conn, root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)?
            .check()?;
        // A window of our own, for a message that wakes our event thread to end.
        let wake = conn.generate_id()?;
        xproto::create_window(
            &conn,
            0,
            wake,
            root,
            -1,
            -1,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &xproto::CreateWindowAux::new(),
        )?
        .check()?;
        let quit = xproto::intern_atom(&conn, false, b"_LIFELINE_SCREEN_QUIT")?
            .reply()?
            .atom;
        tracing::debug!(shm_ok, randr_monitors, "X11 screen capture ready");
        Ok(X11Screen {
            conn: Arc::new(conn),
            root,
            root_size,
            randr_monitors,
            shm_ok,
            segment: None,
            damage,
            region,
            wake,
            quit,
            ids: HashMap::new(),
            names: HashMap::new(),
            pump: None,
            scratch: Vec::new(),
        })
    }

    /// Whether captures go through MIT-SHM (it may be turned off after a failure).
    pub fn uses_shm(&self) -> bool {
        self.shm_ok
    }

    fn id_for(&mut self, name: xproto::Atom) -> u32 {
        let next = self.ids.len() as u32 + 1;
        *self.ids.entry(name).or_insert(next)
    }

    fn atom_name(&mut self, atom: xproto::Atom) -> Result<String, CaptureError> {
        if let Some(n) = self.names.get(&atom) {
            return Ok(n.clone());
        }
        let reply = xproto::get_atom_name(&*self.conn, atom)?.reply()?;
        let name: String = String::from_utf8_lossy(&reply.name)
            .chars()
            .filter(|c| !c.is_control())
            .take(lifeline_proto::MAX_NAME_CHARS)
            .collect();
        self.names.insert(atom, name.clone());
        Ok(name)
    }

    fn list_monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let geo = xproto::get_geometry(&*self.conn, self.root)?.reply()?;
        self.root_size = (geo.width, geo.height);
        let mut out = Vec::new();
        if self.randr_monitors {
            let reply = randr::get_monitors(&*self.conn, self.root, true)?.reply()?;
            let root = Area::new(0, 0, geo.width.into(), geo.height.into());
            for m in reply.monitors {
                // Only what lies on the root window can be captured.
                let a = Area::new(m.x.into(), m.y.into(), m.width.into(), m.height.into())
                    .intersect(&root);
                if a.is_empty() {
                    continue;
                }
                let name = self.atom_name(m.name)?;
                out.push(Monitor {
                    id: self.id_for(m.name),
                    x: a.x,
                    y: a.y,
                    width: a.w,
                    height: a.h,
                    primary: m.primary,
                    name,
                });
                if out.len() == MAX_MONITORS {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(Monitor {
                id: self.id_for(x11rb::NONE),
                x: 0,
                y: 0,
                width: geo.width.into(),
                height: geo.height.into(),
                primary: true,
                name: "screen".into(),
            });
        }
        Ok(out)
    }

    /// The segment, created or grown to at least `size` bytes.
    fn segment(&mut self, size: usize) -> Result<&Segment, CaptureError> {
        if self.segment.as_ref().is_some_and(|s| s.size < size)
            && let Some(old) = self.segment.take()
        {
            shm::detach(&*self.conn, old.seg)?;
        }
        if self.segment.is_none() {
            let fd = nix::sys::memfd::memfd_create(
                c"lifeline-screen",
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .map_err(|e| CaptureError::Shm(e.into()))?;
            let file = File::from(fd);
            file.set_len(size as u64).map_err(CaptureError::Shm)?;
            let theirs = file.try_clone().map_err(CaptureError::Shm)?;
            let seg = self.conn.generate_id()?;
            shm::attach_fd(&*self.conn, seg, std::os::fd::OwnedFd::from(theirs), false)?.check()?;
            self.segment = Some(Segment { seg, file, size });
        }
        self.segment
            .as_ref()
            .ok_or(CaptureError::Shm(std::io::ErrorKind::NotFound.into()))
    }

    /// Captures `jobs` (desktop area, destination area) through shared memory, as many at a
    /// time as the segment holds.
    fn capture_shm(
        &mut self,
        jobs: &[(Area, Area)],
        into: &mut Pixels,
    ) -> Result<(), CaptureError> {
        let (rw, rh) = self.root_size;
        let want = usize::from(rw) * usize::from(rh) * 4;
        let conn = Arc::clone(&self.conn);
        let (seg, size) = {
            let s = self.segment(want)?;
            (s.seg, s.size)
        };
        let mut i = 0;
        while i < jobs.len() {
            // Requests for as many areas as fit, then their replies.
            let mut batch = Vec::new();
            let mut offset = 0usize;
            while i < jobs.len() {
                let (d, _) = jobs[i];
                let bytes = d.pixels() as usize * 4;
                if offset + bytes > size && !batch.is_empty() {
                    break;
                }
                let cookie = shm::get_image(
                    &*conn,
                    self.root,
                    d.x as i16,
                    d.y as i16,
                    d.w as u16,
                    d.h as u16,
                    !0,
                    ImageFormat::Z_PIXMAP.into(),
                    seg,
                    offset as u32,
                )?;
                batch.push((i, offset, cookie));
                offset += bytes;
                i += 1;
            }
            for (j, off, cookie) in batch {
                let reply = cookie.reply()?;
                let (d, dst) = jobs[j];
                let bytes = d.pixels() as usize * 4;
                if (reply.size as usize) < bytes {
                    return Err(CaptureError::BadImage {
                        w: d.w,
                        h: d.h,
                        got: reply.size as usize,
                    });
                }
                self.scratch.resize(bytes, 0);
                let file = &self
                    .segment
                    .as_ref()
                    .ok_or(CaptureError::Shm(std::io::ErrorKind::NotFound.into()))?
                    .file;
                file.read_exact_at(&mut self.scratch[..bytes], off as u64)
                    .map_err(CaptureError::Shm)?;
                put_rows(&self.scratch[..bytes], dst, into);
            }
        }
        Ok(())
    }

    fn capture_plain(
        &mut self,
        jobs: &[(Area, Area)],
        into: &mut Pixels,
    ) -> Result<(), CaptureError> {
        let mut cookies = Vec::with_capacity(jobs.len());
        for (d, _) in jobs {
            cookies.push(xproto::get_image(
                &*self.conn,
                ImageFormat::Z_PIXMAP,
                self.root,
                d.x as i16,
                d.y as i16,
                d.w as u16,
                d.h as u16,
                !0,
            )?);
        }
        for ((d, dst), cookie) in jobs.iter().zip(cookies) {
            let reply = cookie.reply()?;
            let bytes = d.pixels() as usize * 4;
            if reply.data.len() < bytes {
                return Err(CaptureError::BadImage {
                    w: d.w,
                    h: d.h,
                    got: reply.data.len(),
                });
            }
            put_rows(&reply.data[..bytes], *dst, into);
        }
        Ok(())
    }
}

/// Copies packed rows of `dst.w` pixels into `dst` of `into`.
fn put_rows(src: &[u8], dst: Area, into: &mut Pixels) {
    let row = dst.w as usize * 4;
    for (i, chunk) in src.chunks_exact(row).take(dst.h as usize).enumerate() {
        into.row_mut(dst.x as u32, dst.y as u32 + i as u32, dst.w)
            .copy_from_slice(chunk);
    }
}

impl ScreenSource for X11Screen {
    fn monitors(&mut self) -> Result<Vec<Monitor>, SourceError> {
        Ok(self.list_monitors()?)
    }

    fn watch(&mut self, sink: EventSink) -> Result<(), SourceError> {
        let conn = Arc::clone(&self.conn);
        let (root, wake, quit) = (self.root, self.wake, self.quit);
        let handle = std::thread::Builder::new()
            .name("x11-events".into())
            .spawn(move || pump(&conn, root, wake, quit, &sink))
            .map_err(CaptureError::Thread)?;
        self.pump = Some(handle);
        Ok(())
    }

    fn take_damage(&mut self, out: &mut Vec<Area>) -> Result<(), SourceError> {
        let conn = &*self.conn;
        damage::subtract(conn, self.damage, x11rb::NONE, self.region)
            .map_err(CaptureError::from)?;
        let reply = xfixes::fetch_region(conn, self.region)
            .map_err(CaptureError::from)?
            .reply()
            .map_err(CaptureError::from)?;
        out.extend(
            reply
                .rectangles
                .iter()
                .map(|r| Area::new(r.x.into(), r.y.into(), r.width.into(), r.height.into())),
        );
        Ok(())
    }

    fn capture(
        &mut self,
        origin: (i32, i32),
        areas: &[Area],
        into: &mut Pixels,
    ) -> Result<(), SourceError> {
        // The root's size now (one round trip), so a resize racing with us clips the
        // request instead of failing it.
        let geo = xproto::get_geometry(&*self.conn, self.root)
            .map_err(CaptureError::from)?
            .reply()
            .map_err(CaptureError::from)?;
        self.root_size = (geo.width, geo.height);
        let root = Area::new(0, 0, self.root_size.0.into(), self.root_size.1.into());
        let mut jobs = Vec::with_capacity(areas.len());
        for a in areas {
            let a = a.intersect(&into.bounds());
            let desk = Area::new(a.x + origin.0, a.y + origin.1, a.w, a.h);
            let inside = desk.intersect(&root);
            if inside != desk {
                // Parts off the root window (a monitor layout in flux) are black.
                into.fill(a, 0);
            }
            if inside.is_empty() {
                continue;
            }
            jobs.push((inside, inside.relative_to(origin.0, origin.1)));
        }
        if self.shm_ok {
            match self.capture_shm(&jobs, into) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "shared-memory capture failed; using GetImage from now on");
                    self.shm_ok = false;
                    self.segment = None;
                }
            }
        }
        Ok(self.capture_plain(&jobs, into)?)
    }

    fn pointer(&mut self) -> Result<PointerState, SourceError> {
        let r = xproto::query_pointer(&*self.conn, self.root)
            .map_err(CaptureError::from)?
            .reply()
            .map_err(CaptureError::from)?;
        use lifeline_proto::remote::buttons;
        let mut b = 0;
        for (mask, bit) in [
            (KeyButMask::BUTTON1, buttons::LEFT),
            (KeyButMask::BUTTON2, buttons::MIDDLE),
            (KeyButMask::BUTTON3, buttons::RIGHT),
        ] {
            if r.mask.contains(mask) {
                b |= bit;
            }
        }
        Ok(PointerState {
            x: r.root_x.into(),
            y: r.root_y.into(),
            buttons: b,
        })
    }

    fn cursor(&mut self) -> Result<CursorImage, SourceError> {
        let r = xfixes::get_cursor_image(&*self.conn)
            .map_err(CaptureError::from)?
            .reply()
            .map_err(CaptureError::from)?;
        let n = usize::from(r.width) * usize::from(r.height);
        if r.cursor_image.len() < n {
            return Err(CaptureError::BadImage {
                w: r.width.into(),
                h: r.height.into(),
                got: r.cursor_image.len() * 4,
            }
            .into());
        }
        let rgba = r.cursor_image[..n]
            .iter()
            .flat_map(|&argb| unpremultiply(argb))
            .collect();
        Ok(CursorImage {
            serial: r.cursor_serial,
            width: r.width,
            height: r.height,
            hot_x: r.xhot.min(r.width.saturating_sub(1)),
            hot_y: r.yhot.min(r.height.saturating_sub(1)),
            rgba,
        })
    }
}

/// Premultiplied ARGB → straight RGBA.
fn unpremultiply(argb: u32) -> [u8; 4] {
    let a = (argb >> 24) & 0xFF;
    if a == 0 {
        return [0, 0, 0, 0];
    }
    let ch = |shift: u32| (((argb >> shift) & 0xFF) * 255 / a).min(255) as u8;
    [ch(16), ch(8), ch(0), a as u8]
}

/// The event thread: X events → source events, until told to quit or the stream is gone.
fn pump(
    conn: &RustConnection,
    root: xproto::Window,
    wake: xproto::Window,
    quit: xproto::Atom,
    sink: &EventSink,
) {
    loop {
        let ev = match conn.wait_for_event() {
            Ok(ev) => ev,
            Err(e) => {
                sink.send(SourceEvent::Lost(format!(
                    "the connection to the X server was lost: {e}"
                )));
                return;
            }
        };
        let sent = match ev {
            Event::DamageNotify(_) => sink.send(SourceEvent::Damage),
            Event::RandrScreenChangeNotify(_) | Event::RandrNotify(_) => {
                sink.send(SourceEvent::Monitors)
            }
            Event::ConfigureNotify(e) if e.window == root => sink.send(SourceEvent::Monitors),
            Event::XfixesCursorNotify(_) => sink.send(SourceEvent::Cursor),
            Event::ClientMessage(e) if e.window == wake && e.type_ == quit => return,
            Event::Error(e) => {
                tracing::debug!(error = ?e, "X error on the capture connection");
                true
            }
            _ => true,
        };
        if !sent {
            return;
        }
    }
}

impl Drop for X11Screen {
    fn drop(&mut self) {
        let Some(handle) = self.pump.take() else {
            return;
        };
        let ev = ClientMessageEvent::new(32, self.wake, self.quit, [0u32; 5]);
        let woke = xproto::send_event(&*self.conn, false, self.wake, EventMask::NO_EVENT, ev)
            .is_ok()
            && self.conn.flush().is_ok();
        if woke || handle.is_finished() {
            let _ = handle.join();
        }
    }
}
