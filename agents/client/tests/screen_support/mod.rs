//! Helpers of the screen tests: a real Xvfb server, a real X client that paints on it, a
//! reference decoder of the stream's messages (the deflate stream inflated with the
//! protocol's own `ScreenInflater`, Palette, PNG and JPEG rectangles decoded), and a harness
//! around `screen::spawn`.

#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lifeline_agent::platform::linux::capture::{X11Options, X11Screen};
use lifeline_agent::screen::{self, StreamControl, StreamOutput};
use lifeline_proto::deflate::ScreenInflater;
use lifeline_proto::frame::{self, Channel, FLAG_DEFLATE, FLAG_SUPERSEDES};
use lifeline_proto::remote::{Monitor, StreamSettings};
use lifeline_proto::screen::{Cursor, Encoding, Palette, decode_cursor, decode_update};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest;
use x11rb::rust_connection::RustConnection;

pub const W: u32 = 1920;
pub const H: u32 = 1080;

pub use lifeline_test_support::Xvfb;

/// A private X server of the tests' screen size.
pub fn start_xvfb() -> Xvfb {
    Xvfb::start_sized(&format!("{W}x{H}x24"))
}

/// A real X client that paints on the server.
pub struct Painter {
    pub conn: RustConnection,
    pub root: xproto::Window,
    gc: xproto::Gcontext,
    font: xproto::Font,
}

impl Painter {
    pub fn connect(display: &str) -> Painter {
        let (conn, n) = RustConnection::connect(Some(display)).unwrap();
        let root = conn.setup().roots[n].root;
        let font = conn.generate_id().unwrap();
        xproto::open_font(&conn, font, b"fixed")
            .unwrap()
            .check()
            .unwrap();
        let gc = conn.generate_id().unwrap();
        xproto::create_gc(
            &conn,
            gc,
            root,
            &xproto::CreateGCAux::new()
                .font(font)
                .graphics_exposures(0u32)
                .subwindow_mode(xproto::SubwindowMode::INCLUDE_INFERIORS),
        )
        .unwrap()
        .check()
        .unwrap();
        Painter {
            conn,
            root,
            gc,
            font,
        }
    }

    /// Waits until the server has done everything asked so far.
    pub fn sync(&self) {
        self.conn.get_input_focus().unwrap().reply().unwrap();
    }

    pub fn fill_on(&self, d: xproto::Drawable, x: i32, y: i32, w: u32, h: u32, rgb: u32) {
        xproto::change_gc(
            &self.conn,
            self.gc,
            &xproto::ChangeGCAux::new().foreground(rgb),
        )
        .unwrap();
        xproto::poly_fill_rectangle(
            &self.conn,
            d,
            self.gc,
            &[xproto::Rectangle {
                x: x as i16,
                y: y as i16,
                width: w as u16,
                height: h as u16,
            }],
        )
        .unwrap();
    }

    pub fn fill(&self, x: i32, y: i32, w: u32, h: u32, rgb: u32) {
        self.fill_on(self.root, x, y, w, h, rgb);
    }

    /// Text in the server's `fixed` font (6×13 cells), baseline at `y`.
    pub fn text_on(&self, d: xproto::Drawable, x: i32, y: i32, s: &str, fg: u32, bg: u32) {
        xproto::change_gc(
            &self.conn,
            self.gc,
            &xproto::ChangeGCAux::new().foreground(fg).background(bg),
        )
        .unwrap();
        xproto::image_text8(&self.conn, d, self.gc, x as i16, y as i16, s.as_bytes()).unwrap();
    }

    pub fn text(&self, x: i32, y: i32, s: &str, fg: u32, bg: u32) {
        self.text_on(self.root, x, y, s, fg, bg);
    }

    /// Lines of text-like content.
    pub fn text_block(&self, d: xproto::Drawable, x: i32, y: i32, lines: usize, seed: usize) {
        let words = [
            "lorem", "ipsum", "dolor", "sit", "amet", "remote", "support", "lifeline", "screen",
            "pixels", "kernel", "session", "viewer", "frame", "copy", "scroll", "x11", "42",
        ];
        let colours = [0x000000, 0x1F3F9F, 0x9F1F1F, 0x106010];
        for i in 0..lines {
            let mut s = String::new();
            let mut k = (i + seed) * 7 + 3;
            while s.len() < 90 {
                s.push_str(words[k % words.len()]);
                s.push(' ');
                k = k.wrapping_mul(31).wrapping_add(11);
            }
            self.text_on(
                d,
                x,
                y + 13 * (i as i32 + 1),
                &format!("{:4} {s}", i + seed),
                colours[(i + seed) % colours.len()],
                0xFFFFFF,
            );
        }
    }

    /// Puts 0x00RRGGBB pixels at (x, y) in strips (requests have a size limit).
    pub fn put_image(&self, x: i32, y: i32, w: u32, h: u32, rgb: &[u32]) {
        // Rows per request, within the server's request size limit.
        let strip = ((self.conn.maximum_request_bytes() / 2) as u32 / (w * 4)).clamp(1, 256);
        let mut row = 0;
        while row < h {
            let n = strip.min(h - row);
            let mut data = Vec::with_capacity((w * n * 4) as usize);
            for yy in row..row + n {
                for xx in 0..w {
                    data.extend_from_slice(&rgb[(yy * w + xx) as usize].to_le_bytes());
                }
            }
            xproto::put_image(
                &self.conn,
                xproto::ImageFormat::Z_PIXMAP,
                self.root,
                self.gc,
                w as u16,
                n as u16,
                x as i16,
                (y + row as i32) as i16,
                0,
                24,
                &data,
            )
            .unwrap();
            row += n;
        }
    }

    /// The server's own pixels of an area, as 0x00RRGGBB.
    pub fn grab(&self, x: i32, y: i32, w: u32, h: u32) -> Vec<u32> {
        let r = self
            .conn
            .get_image(
                xproto::ImageFormat::Z_PIXMAP,
                self.root,
                x as i16,
                y as i16,
                w as u16,
                h as u16,
                !0,
            )
            .unwrap()
            .reply()
            .unwrap();
        r.data
            .chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect()
    }

    /// Copies an area of the root window onto itself (what a terminal does to scroll).
    pub fn conn_copy(&self, sx: i32, sy: i32, dx: i32, dy: i32, w: u32, h: u32) {
        xproto::copy_area(
            &self.conn, self.root, self.root, self.gc, sx as i16, sy as i16, dx as i16, dy as i16,
            w as u16, h as u16,
        )
        .unwrap();
    }

    pub fn window(&self, x: i32, y: i32, w: u32, h: u32, bg: u32) -> xproto::Window {
        let win = self.conn.generate_id().unwrap();
        xproto::create_window(
            &self.conn,
            0,
            win,
            self.root,
            x as i16,
            y as i16,
            w as u16,
            h as u16,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            0,
            &xproto::CreateWindowAux::new()
                .background_pixel(bg)
                .override_redirect(1u32),
        )
        .unwrap();
        xproto::map_window(&self.conn, win).unwrap();
        self.sync();
        win
    }

    pub fn move_window(&self, win: xproto::Window, x: i32, y: i32) {
        xproto::configure_window(
            &self.conn,
            win,
            &xproto::ConfigureWindowAux::new().x(x).y(y),
        )
        .unwrap();
    }

    /// Gives `win` a cursor from the server's cursor font (`glyph` is the font's index,
    /// e.g. 68 for the arrow, 152 for the I-beam).
    pub fn set_cursor(&self, win: xproto::Window, glyph: u16) {
        let font = self.conn.generate_id().unwrap();
        xproto::open_font(&self.conn, font, b"cursor").unwrap();
        let cursor = self.conn.generate_id().unwrap();
        xproto::create_glyph_cursor(
            &self.conn,
            cursor,
            font,
            font,
            glyph,
            glyph + 1,
            0,
            0,
            0,
            0xFFFF,
            0xFFFF,
            0xFFFF,
        )
        .unwrap();
        xproto::change_window_attributes(
            &self.conn,
            win,
            &xproto::ChangeWindowAttributesAux::new().cursor(cursor),
        )
        .unwrap();
        self.sync();
    }

    /// Gives `win` an invisible cursor (applications hide the pointer this way).
    pub fn set_blank_cursor(&self, win: xproto::Window) {
        let pix = self.conn.generate_id().unwrap();
        xproto::create_pixmap(&self.conn, 1, pix, self.root, 1, 1).unwrap();
        let gc = self.conn.generate_id().unwrap();
        xproto::create_gc(
            &self.conn,
            gc,
            pix,
            &xproto::CreateGCAux::new().foreground(0),
        )
        .unwrap();
        xproto::poly_fill_rectangle(
            &self.conn,
            pix,
            gc,
            &[xproto::Rectangle {
                x: 0,
                y: 0,
                width: 1,
                height: 1,
            }],
        )
        .unwrap();
        let cursor = self.conn.generate_id().unwrap();
        xproto::create_cursor(&self.conn, cursor, pix, pix, 0, 0, 0, 0, 0, 0, 0, 0).unwrap();
        xproto::change_window_attributes(
            &self.conn,
            win,
            &xproto::ChangeWindowAttributesAux::new().cursor(cursor),
        )
        .unwrap();
        self.sync();
    }

    /// Moves the pointer with XTest (as a person would).
    pub fn pointer_to(&self, x: i32, y: i32) {
        xtest::fake_input(
            &self.conn,
            xproto::MOTION_NOTIFY_EVENT,
            0,
            0,
            self.root,
            x as i16,
            y as i16,
            0,
        )
        .unwrap();
        self.sync();
    }

    pub fn button(&self, down: bool) {
        let t = if down {
            xproto::BUTTON_PRESS_EVENT
        } else {
            xproto::BUTTON_RELEASE_EVENT
        };
        xtest::fake_input(&self.conn, t, 1, 0, self.root, 0, 0, 0).unwrap();
        self.sync();
    }
}

/// A photo-like picture: smooth shapes, gradients and fine noise (0x00RRGGBB).
pub fn photo(w: u32, h: u32, seed: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity((w * h) as usize);
    let mut n = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let s = seed as f32;
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            n ^= n << 13;
            n ^= n >> 17;
            n ^= n << 5;
            let noise = (n % 7) as f32 - 3.0;
            let r = 128.0
                + 70.0 * ((fx / 97.0 + s).sin() * (fy / 53.0).cos())
                + 40.0 * ((fx + fy) / 211.0).sin()
                + noise;
            let g = 110.0
                + 80.0 * ((fy / 71.0 + s * 0.7).sin())
                + 30.0 * ((fx / 33.0).cos() * (fy / 41.0).sin())
                + noise;
            let b = 120.0
                + 60.0 * (((fx - 300.0).hypot(fy - 200.0) / 45.0 + s).sin())
                + 40.0 * (fx / 400.0)
                + noise;
            let c = |v: f32| v.clamp(0.0, 255.0) as u32;
            out.push((c(r) << 16) | (c(g) << 8) | c(b));
        }
    }
    out
}

/// What one screen frame brought.
#[derive(Debug, Clone, Default)]
pub struct FrameInfo {
    pub frame: u32,
    pub key: bool,
    pub supersedes_first: bool,
    pub messages: usize,
    /// Messages that were chunks of the deflate stream.
    pub deflated: usize,
    /// Bytes of the binary messages, headers included.
    pub bytes: usize,
    /// Bytes of the update messages, inflated.
    pub update_bytes: usize,
    pub solid: usize,
    pub palette: usize,
    pub png: usize,
    pub jpeg: usize,
    pub copy: usize,
    pub width: u32,
    pub height: u32,
    /// Areas of lossy (JPEG) rectangles.
    pub jpeg_areas: Vec<(u32, u32, u32, u32)>,
    /// Every rectangle: x, y, w, h, encoding, data bytes.
    pub rects: Vec<(u32, u32, u32, u32, Encoding, usize)>,
}

/// The console's picture, rebuilt from the messages (a reference decoder).
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    /// 0x00RRGGBB.
    pub px: Vec<u32>,
    pub cursor_shape: Option<(u16, u16, u16, u16, Vec<u8>)>,
    pub cursor_pos: Option<(i16, i16)>,
    pub cursor_hidden: bool,
    pub cursor_messages: usize,
    jpeg: turbojpeg::Decompressor,
    inflater: ScreenInflater,
}

impl Canvas {
    pub fn new() -> Canvas {
        Canvas {
            width: 0,
            height: 0,
            px: Vec::new(),
            cursor_shape: None,
            cursor_pos: None,
            cursor_hidden: false,
            cursor_messages: 0,
            jpeg: turbojpeg::Decompressor::new().unwrap(),
            inflater: ScreenInflater::new(),
        }
    }

    fn put(&mut self, x: u32, y: u32, w: u32, h: u32, rgb: &[u8]) {
        for yy in 0..h {
            for xx in 0..w {
                let i = ((yy * w + xx) * 3) as usize;
                self.px[((y + yy) * self.width + x + xx) as usize] =
                    u32::from_be_bytes([0, rgb[i], rgb[i + 1], rgb[i + 2]]);
            }
        }
    }

    /// Applies one binary message; returns the frame number and flags when it was the last
    /// message of a screen frame.
    pub fn apply(&mut self, msg: &[u8], info: &mut FrameInfo) -> bool {
        let (hdr, payload) = frame::decode(msg).expect("valid frame header");
        match hdr.channel {
            Channel::Cursor => {
                self.cursor_messages += 1;
                match decode_cursor(payload).expect("valid cursor message") {
                    Cursor::Shape {
                        width,
                        height,
                        hot_x,
                        hot_y,
                        rgba,
                    } => {
                        self.cursor_hidden = false;
                        self.cursor_shape = Some((width, height, hot_x, hot_y, rgba.to_vec()));
                    }
                    Cursor::Position { x, y } => self.cursor_pos = Some((x, y)),
                    Cursor::Hidden => self.cursor_hidden = true,
                }
                false
            }
            Channel::Screen => {
                // Nothing is lost between the stream and this decoder: every deflated
                // message must inflate.
                let update = self
                    .inflater
                    .message(&hdr, payload)
                    .expect("a deflated message inflates")
                    .to_vec();
                let u = decode_update(&update).expect("valid update");
                if info.messages == 0 {
                    info.supersedes_first = hdr.flags & FLAG_SUPERSEDES != 0;
                    info.key = u.key_frame();
                } else {
                    assert_eq!(
                        hdr.flags & FLAG_SUPERSEDES,
                        0,
                        "only a first message supersedes"
                    );
                }
                info.messages += 1;
                info.deflated += usize::from(hdr.flags & FLAG_DEFLATE != 0);
                info.bytes += msg.len();
                info.update_bytes += update.len();
                info.frame = u.frame;
                let (w, h) = (u32::from(u.width), u32::from(u.height));
                info.width = w;
                info.height = h;
                if (w, h) != (self.width, self.height) {
                    assert!(u.key_frame(), "a new surface size comes as a key frame");
                    self.width = w;
                    self.height = h;
                    self.px = vec![0; (w * h) as usize];
                }
                let before = self.px.clone();
                for r in &u.rects {
                    let (x, y, rw, rh) = (
                        u32::from(r.x),
                        u32::from(r.y),
                        u32::from(r.w),
                        u32::from(r.h),
                    );
                    info.rects.push((x, y, rw, rh, r.encoding, r.data.len()));
                    match r.encoding {
                        Encoding::Solid => {
                            info.solid += 1;
                            let c = u32::from_be_bytes([0, r.data[0], r.data[1], r.data[2]]);
                            for yy in y..y + rh {
                                for xx in x..x + rw {
                                    self.px[(yy * w + xx) as usize] = c;
                                }
                            }
                        }
                        Encoding::Copy => {
                            info.copy += 1;
                            let sx = u32::from(u16::from_be_bytes([r.data[0], r.data[1]]));
                            let sy = u32::from(u16::from_be_bytes([r.data[2], r.data[3]]));
                            for yy in 0..rh {
                                for xx in 0..rw {
                                    self.px[((y + yy) * w + x + xx) as usize] =
                                        before[((sy + yy) * w + sx + xx) as usize];
                                }
                            }
                        }
                        Encoding::Palette => {
                            info.palette += 1;
                            let p = Palette::parse(r.w, r.h, r.data).expect("valid palette");
                            self.put(x, y, rw, rh, &p.to_rgb());
                        }
                        Encoding::Png => {
                            info.png += 1;
                            let mut d = png::Decoder::new(r.data);
                            d.set_transformations(png::Transformations::EXPAND);
                            let mut rd = d.read_info().expect("PNG header");
                            let mut buf = vec![0; rd.output_buffer_size()];
                            let fi = rd.next_frame(&mut buf).expect("PNG data");
                            assert_eq!((fi.width, fi.height), (rw, rh), "PNG size");
                            let rgb: Vec<u8> = match fi.color_type {
                                png::ColorType::Rgb => buf[..(rw * rh * 3) as usize].to_vec(),
                                png::ColorType::Grayscale => buf[..(rw * rh) as usize]
                                    .iter()
                                    .flat_map(|&v| [v, v, v])
                                    .collect(),
                                other => panic!("unexpected PNG colour type {other:?}"),
                            };
                            self.put(x, y, rw, rh, &rgb);
                        }
                        Encoding::Jpeg => {
                            info.jpeg += 1;
                            info.jpeg_areas.push((x, y, rw, rh));
                            let hdr = self.jpeg.read_header(r.data).expect("JPEG header");
                            assert_eq!((hdr.width as u32, hdr.height as u32), (rw, rh));
                            let mut img = turbojpeg::Image {
                                pixels: vec![0u8; (rw * rh * 3) as usize],
                                width: rw as usize,
                                pitch: rw as usize * 3,
                                height: rh as usize,
                                format: turbojpeg::PixelFormat::RGB,
                            };
                            self.jpeg
                                .decompress(r.data, img.as_deref_mut())
                                .expect("JPEG data");
                            self.put(x, y, rw, rh, &img.pixels);
                        }
                    }
                }
                u.end_of_frame()
            }
            other => panic!("unexpected channel {other:?}"),
        }
    }

    /// The canvas's pixels of an area.
    pub fn area(&self, x: u32, y: u32, w: u32, h: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity((w * h) as usize);
        for yy in y..y + h {
            out.extend_from_slice(&self.px[(yy * self.width + x) as usize..][..w as usize]);
        }
        out
    }
}

/// Peak signal-to-noise ratio (dB) and mean absolute difference per channel.
pub fn psnr(a: &[u32], b: &[u32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let mut se = 0f64;
    let mut ad = 0f64;
    for (x, y) in a.iter().zip(b) {
        for s in [0, 8, 16] {
            let d = f64::from((x >> s) & 0xFF) - f64::from((y >> s) & 0xFF);
            se += d * d;
            ad += d.abs();
        }
    }
    let n = (a.len() * 3) as f64;
    let mse = se / n;
    let p = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    };
    (p, ad / n)
}

/// The pipeline under test, fed by a real X11 source.
pub struct Stream {
    pub ctl: mpsc::Sender<StreamControl>,
    out: mpsc::Receiver<StreamOutput>,
    handle: Option<std::thread::JoinHandle<()>>,
    pub canvas: Canvas,
    pub monitors: Vec<Vec<Monitor>>,
    pub failed: Option<String>,
    pub settings: StreamSettings,
    /// Number of the last frame fully received.
    pub last_frame: u32,
    /// Binary messages (screen and cursor) received, and their bytes.
    pub binaries: usize,
    pub binary_bytes: usize,
}

impl Stream {
    pub fn start(display: &str, opts: X11Options) -> Stream {
        Self::start_with(display, opts, StreamSettings::default())
    }

    pub fn start_with(display: &str, opts: X11Options, settings: StreamSettings) -> Stream {
        let source = X11Screen::open_with(Some(display), opts).expect("open X11 source");
        let (ctl, crx) = mpsc::channel();
        let (otx, mut orx) = tokio::sync::mpsc::channel(16);
        let handle = screen::spawn(Box::new(source), crx, otx);
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            while let Some(o) = orx.blocking_recv() {
                if tx.send(o).is_err() {
                    return;
                }
            }
        });
        let s = Stream {
            ctl,
            out,
            handle: Some(handle),
            canvas: Canvas::new(),
            monitors: Vec::new(),
            failed: None,
            settings,
            last_frame: 0,
            binaries: 0,
            binary_bytes: 0,
        };
        s.ctl
            .send(StreamControl::Stream {
                active: true,
                settings: s.settings.clone(),
            })
            .unwrap();
        s
    }

    pub fn settings(&mut self, settings: StreamSettings) {
        self.settings = settings.clone();
        self.ctl
            .send(StreamControl::Stream {
                active: true,
                settings,
            })
            .unwrap();
    }

    pub fn ack(&self, frame: u32) {
        self.ctl.send(StreamControl::Ack(frame)).unwrap();
    }

    /// Takes one output (applied to the canvas) if one comes before `deadline`; returns
    /// the frame info when it completed a screen frame.
    fn step(&mut self, deadline: Instant, info: &mut FrameInfo) -> Option<Option<bool>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.out.recv_timeout(left) {
            Ok(StreamOutput::Binary(b)) => {
                self.binaries += 1;
                self.binary_bytes += b.len();
                Some(Some(self.canvas.apply(&b, info)))
            }
            Ok(StreamOutput::Monitors(m)) => {
                self.monitors.push(m);
                Some(None)
            }
            Ok(StreamOutput::Failed(why)) => panic!("stream failed: {why}"),
            Err(_) => None,
        }
    }

    /// The next complete screen frame within `wait`.
    pub fn frame(&mut self, wait: Duration) -> Option<FrameInfo> {
        let deadline = Instant::now() + wait;
        let mut info = FrameInfo::default();
        loop {
            match self.step(deadline, &mut info)? {
                Some(true) => {
                    self.last_frame = info.frame;
                    return Some(info);
                }
                _ => continue,
            }
        }
    }

    /// Waits for a frame and acknowledges it.
    pub fn frame_acked(&mut self, wait: Duration) -> FrameInfo {
        let f = self.frame(wait).expect("a frame");
        self.ack(f.frame);
        f
    }

    /// Everything that arrives within `wait` (applied); returns the frames completed and
    /// the bytes of binary messages.
    pub fn drain(&mut self, wait: Duration) -> (Vec<FrameInfo>, usize) {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        let mut bytes = 0;
        let mut info = FrameInfo::default();
        while let Some(r) = self.step(deadline, &mut info) {
            if r == Some(true) {
                self.last_frame = info.frame;
                bytes += info.bytes;
                frames.push(std::mem::take(&mut info));
            }
        }
        bytes += info.bytes;
        (frames, bytes)
    }

    /// Takes and acknowledges every frame that arrives within `wait`.
    pub fn settle(&mut self, wait: Duration) -> Vec<FrameInfo> {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        while let Some(f) = self.frame(deadline.saturating_duration_since(Instant::now())) {
            self.ack(f.frame);
            frames.push(f);
        }
        frames
    }

    /// Waits until `cond` holds for the canvas, taking (and acknowledging) frames.
    pub fn until(&mut self, wait: Duration, mut cond: impl FnMut(&Stream) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        let mut info = FrameInfo::default();
        loop {
            if cond(self) {
                return true;
            }
            match self.step(deadline, &mut info) {
                None => return cond(self),
                Some(Some(true)) => {
                    self.last_frame = info.frame;
                    self.ack(info.frame);
                    info = FrameInfo::default();
                }
                Some(_) => {}
            }
        }
    }

    /// Waits for `Failed`, skipping everything else.
    pub fn failure(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(StreamOutput::Failed(why)) => return Some(why),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Drops the control sender (the session went away) and waits for the thread.
    pub fn drop_control(mut self, wait: Duration) -> bool {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.ctl, tx));
        let h = self.handle.take().expect("running");
        let deadline = Instant::now() + wait;
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        h.is_finished()
    }

    /// Waits for the stream thread after a failure.
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            h.join().expect("stream thread ended cleanly");
        }
    }

    pub fn stop(mut self) {
        let _ = self.ctl.send(StreamControl::Stop);
        if let Some(h) = self.handle.take() {
            h.join().expect("stream thread ended cleanly");
        }
    }
}
