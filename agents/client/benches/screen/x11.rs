//! The benchmark's own X client: it plays the person at the desktop (keys and pointer with
//! XTest, a window moved as a window manager would), paints what the scenarios need (a
//! full-screen picture from pixmaps, a small changing area for the latency probe), finds
//! windows by their `WM_CLASS`, and reads the server's own pixels for the sharpness check.
//!
//! Limits: keys are typed from the first column of the keyboard map only (no Shift), which is
//! enough for lower-case text, space, Return and the navigation keys the scenarios use.

use std::collections::HashMap;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest;
use x11rb::rust_connection::RustConnection;

use super::error::{BenchError, Result};

pub const XK_RETURN: u32 = 0xff0d;
pub const XK_DOWN: u32 = 0xff54;
pub const XK_PAGE_DOWN: u32 = 0xff56;

/// A window and where it is (root coordinates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Win {
    pub id: xproto::Window,
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

pub struct XClient {
    conn: RustConnection,
    pub display: String,
    pub root: xproto::Window,
    pub width: u32,
    pub height: u32,
    depth: u8,
    gc: xproto::Gcontext,
    keycodes: HashMap<u32, u8>,
}

impl XClient {
    pub fn connect(display: &str) -> Result<XClient> {
        let fail = |what: &str| {
            let display = display.to_owned();
            let what = what.to_owned();
            move |e: Box<dyn std::error::Error + Send + Sync>| BenchError::X11 {
                display,
                what,
                source: e,
            }
        };
        let (conn, n) =
            RustConnection::connect(Some(display)).map_err(|e| fail("cannot connect")(e.into()))?;
        let screen = conn
            .setup()
            .roots
            .get(n)
            .ok_or_else(|| fail("no screen")("the server has no default screen".into()))?;
        let (root, width, height, depth) = (
            screen.root,
            u32::from(screen.width_in_pixels),
            u32::from(screen.height_in_pixels),
            screen.root_depth,
        );
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = conn
            .get_keyboard_mapping(min, max - min + 1)
            .map_err(|e| fail("keyboard map")(e.into()))?
            .reply()
            .map_err(|e| fail("keyboard map")(e.into()))?;
        let per = usize::from(map.keysyms_per_keycode.max(1));
        let mut keycodes = HashMap::new();
        for (i, syms) in map.keysyms.chunks(per).enumerate() {
            if let (Some(&sym), Ok(i)) = (syms.first(), u8::try_from(i)) {
                keycodes.entry(sym).or_insert(min + i);
            }
        }
        let gc = conn.generate_id().map_err(|e| fail("ids")(e.into()))?;
        let font = conn.generate_id().map_err(|e| fail("ids")(e.into()))?;
        conn.open_font(font, b"fixed")
            .map_err(|e| fail("font")(e.into()))?;
        conn.create_gc(
            gc,
            root,
            &xproto::CreateGCAux::new()
                .font(font)
                .graphics_exposures(0u32)
                .subwindow_mode(xproto::SubwindowMode::INCLUDE_INFERIORS),
        )
        .map_err(|e| fail("graphics context")(e.into()))?;
        let x = XClient {
            conn,
            display: display.to_owned(),
            root,
            width,
            height,
            depth,
            gc,
            keycodes,
        };
        x.sync()?;
        Ok(x)
    }

    fn err<E: std::error::Error + Send + Sync + 'static>(
        &self,
        what: &'static str,
    ) -> impl FnOnce(E) -> BenchError + use<E> {
        let display = self.display.clone();
        move |e| BenchError::X11 {
            display,
            what: what.to_owned(),
            source: Box::new(e),
        }
    }

    /// Waits until the server has handled every request sent so far.
    pub fn sync(&self) -> Result<()> {
        self.conn
            .get_input_focus()
            .map_err(self.err("sync"))?
            .reply()
            .map_err(self.err("sync"))?;
        Ok(())
    }

    fn wm_class(&self, win: xproto::Window) -> Result<Vec<String>> {
        let r = self
            .conn
            .get_property(
                false,
                win,
                xproto::AtomEnum::WM_CLASS,
                xproto::AtomEnum::STRING,
                0,
                64,
            )
            .map_err(self.err("WM_CLASS"))?
            .reply();
        // A window may vanish between QueryTree and GetProperty.
        Ok(match r {
            Ok(r) => r
                .value
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            Err(_) => Vec::new(),
        })
    }

    /// The mapped top-level window whose `WM_CLASS` instance or class is `name`.
    pub fn find_window(&self, name: &str) -> Result<Option<Win>> {
        let tree = self
            .conn
            .query_tree(self.root)
            .map_err(self.err("window tree"))?
            .reply()
            .map_err(self.err("window tree"))?;
        for &w in &tree.children {
            if !self.wm_class(w)?.iter().any(|c| c == name) {
                continue;
            }
            let Ok(attr) = self
                .conn
                .get_window_attributes(w)
                .map_err(self.err("window"))?
                .reply()
            else {
                continue;
            };
            if attr.map_state != xproto::MapState::VIEWABLE {
                continue;
            }
            if let Some(g) = self.geometry(w)? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    pub fn geometry(&self, w: xproto::Window) -> Result<Option<Win>> {
        let Ok(g) = self
            .conn
            .get_geometry(w)
            .map_err(self.err("geometry"))?
            .reply()
        else {
            return Ok(None);
        };
        Ok(Some(Win {
            id: w,
            x: i32::from(g.x),
            y: i32::from(g.y),
            w: u32::from(g.width),
            h: u32::from(g.height),
        }))
    }

    /// The first child of the first child ... of `w` (the innermost window of a widget tree).
    pub fn innermost(&self, mut w: xproto::Window) -> Result<xproto::Window> {
        loop {
            let tree = self
                .conn
                .query_tree(w)
                .map_err(self.err("window tree"))?
                .reply()
                .map_err(self.err("window tree"))?;
            match tree.children.first() {
                Some(&c) => w = c,
                None => return Ok(w),
            }
        }
    }

    pub fn focus(&self, w: xproto::Window) -> Result<()> {
        self.conn
            .set_input_focus(xproto::InputFocus::POINTER_ROOT, w, x11rb::CURRENT_TIME)
            .map_err(self.err("focus"))?;
        self.sync()
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<()> {
        xtest::fake_input(&self.conn, kind, detail, 0, self.root, x, y, 0)
            .map_err(self.err("XTest"))?;
        Ok(())
    }

    /// Presses and releases the key for `keysym` (first column of the keyboard map).
    pub fn key(&self, keysym: u32) -> Result<()> {
        let code = *self.keycodes.get(&keysym).ok_or_else(|| BenchError::X11 {
            display: self.display.clone(),
            what: format!("no key for keysym {keysym:#x}"),
            source: "keyboard map".into(),
        })?;
        self.fake(xproto::KEY_PRESS_EVENT, code, 0, 0)?;
        self.fake(xproto::KEY_RELEASE_EVENT, code, 0, 0)?;
        self.sync()
    }

    pub fn pointer_to(&self, x: i32, y: i32) -> Result<()> {
        self.fake(xproto::MOTION_NOTIFY_EVENT, 0, clamp16(x), clamp16(y))?;
        self.sync()
    }

    pub fn button(&self, down: bool) -> Result<()> {
        let kind = if down {
            xproto::BUTTON_PRESS_EVENT
        } else {
            xproto::BUTTON_RELEASE_EVENT
        };
        self.fake(kind, 1, 0, 0)?;
        self.sync()
    }

    /// Moves a top-level window (what a window manager does while a title bar is dragged).
    pub fn move_window(&self, w: xproto::Window, x: i32, y: i32) -> Result<()> {
        self.conn
            .configure_window(w, &xproto::ConfigureWindowAux::new().x(x).y(y))
            .map_err(self.err("move window"))?;
        Ok(())
    }

    pub fn fill(
        &self,
        d: xproto::Drawable,
        x: i32,
        y: i32,
        w: u32,
        h: u32,
        rgb: u32,
    ) -> Result<()> {
        self.conn
            .change_gc(self.gc, &xproto::ChangeGCAux::new().foreground(rgb))
            .map_err(self.err("fill"))?;
        self.conn
            .poly_fill_rectangle(
                d,
                self.gc,
                &[xproto::Rectangle {
                    x: clamp16(x),
                    y: clamp16(y),
                    width: w.min(u32::from(u16::MAX)) as u16,
                    height: h.min(u32::from(u16::MAX)) as u16,
                }],
            )
            .map_err(self.err("fill"))?;
        Ok(())
    }

    /// Text in the `fixed` font with its background, baseline at `y`.
    pub fn text(
        &self,
        d: xproto::Drawable,
        x: i32,
        y: i32,
        s: &str,
        fg: u32,
        bg: u32,
    ) -> Result<()> {
        self.conn
            .change_gc(
                self.gc,
                &xproto::ChangeGCAux::new().foreground(fg).background(bg),
            )
            .map_err(self.err("text"))?;
        let bytes: Vec<u8> = s.bytes().take(255).collect();
        self.conn
            .image_text8(d, self.gc, clamp16(x), clamp16(y), &bytes)
            .map_err(self.err("text"))?;
        Ok(())
    }

    /// The pixels of an area of `d` (a window shows its children too), as 0x00RRGGBB.
    pub fn grab(&self, d: xproto::Drawable, x: i32, y: i32, w: u32, h: u32) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity((w * h) as usize);
        // In bands, so no reply is larger than a few megabytes.
        let band = (4 * 1024 * 1024 / (w.max(1) * 4)).max(1);
        let mut row = 0;
        while row < h {
            let n = band.min(h - row);
            let r = self
                .conn
                .get_image(
                    xproto::ImageFormat::Z_PIXMAP,
                    d,
                    clamp16(x),
                    clamp16(y + row as i32),
                    w as u16,
                    n as u16,
                    !0,
                )
                .map_err(self.err("GetImage"))?
                .reply()
                .map_err(self.err("GetImage"))?;
            if r.data.len() != (w * n * 4) as usize {
                return Err(BenchError::X11 {
                    display: self.display.clone(),
                    what: format!("GetImage of {w}x{n} gave {} bytes", r.data.len()),
                    source: "unexpected pixel format".into(),
                });
            }
            out.extend(
                r.data
                    .chunks_exact(4)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
            );
            row += n;
        }
        Ok(out)
    }

    /// A pixmap holding an RGB picture (3 bytes a pixel, row by row).
    pub fn pixmap_from_rgb(&self, rgb: &[u8], w: u32, h: u32) -> Result<xproto::Pixmap> {
        if rgb.len() != (w * h * 3) as usize {
            return Err(BenchError::X11 {
                display: self.display.clone(),
                what: format!("a {w}x{h} picture of {} bytes", rgb.len()),
                source: "wrong size".into(),
            });
        }
        let pix = self.conn.generate_id().map_err(self.err("ids"))?;
        self.conn
            .create_pixmap(self.depth, pix, self.root, w as u16, h as u16)
            .map_err(self.err("pixmap"))?;
        let strip = ((self.conn.maximum_request_bytes() / 2) as u32 / (w * 4)).clamp(1, 256);
        let mut row = 0;
        while row < h {
            let n = strip.min(h - row);
            let mut data = Vec::with_capacity((w * n * 4) as usize);
            for px in rgb[(row * w * 3) as usize..((row + n) * w * 3) as usize].chunks_exact(3) {
                data.extend_from_slice(&[px[2], px[1], px[0], 0]);
            }
            self.conn
                .put_image(
                    xproto::ImageFormat::Z_PIXMAP,
                    pix,
                    self.gc,
                    w as u16,
                    n as u16,
                    0,
                    row as i16,
                    0,
                    self.depth,
                    &data,
                )
                .map_err(self.err("PutImage"))?;
            row += n;
        }
        self.sync()?;
        Ok(pix)
    }

    /// An override-redirect window covering the screen, showing nothing of its own until
    /// painted (no background), raised above everything.
    pub fn cover_window(&self) -> Result<xproto::Window> {
        let win = self.conn.generate_id().map_err(self.err("ids"))?;
        self.conn
            .create_window(
                0,
                win,
                self.root,
                0,
                0,
                self.width as u16,
                self.height as u16,
                0,
                xproto::WindowClass::INPUT_OUTPUT,
                0,
                &xproto::CreateWindowAux::new()
                    .background_pixmap(x11rb::NONE)
                    .override_redirect(1u32),
            )
            .map_err(self.err("window"))?;
        self.conn.map_window(win).map_err(self.err("map"))?;
        self.sync()?;
        Ok(win)
    }

    /// Copies a whole pixmap onto a window in one request (one atomic change of the screen).
    pub fn show(&self, pix: xproto::Pixmap, win: xproto::Window) -> Result<()> {
        self.conn
            .copy_area(
                pix,
                win,
                self.gc,
                0,
                0,
                0,
                0,
                self.width as u16,
                self.height as u16,
            )
            .map_err(self.err("CopyArea"))?;
        self.sync()
    }

    pub fn destroy_window(&self, win: xproto::Window) -> Result<()> {
        self.conn.destroy_window(win).map_err(self.err("destroy"))?;
        self.sync()
    }

    pub fn free_pixmap(&self, pix: xproto::Pixmap) -> Result<()> {
        self.conn.free_pixmap(pix).map_err(self.err("free"))?;
        Ok(())
    }
}

fn clamp16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}
