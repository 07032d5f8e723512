//! Input injection on X11: the representative's pointer, wheel and keys, replayed on the
//! customer's desktop with the XTEST extension.
//!
//! # How it works
//! [`X11Input`] holds its own X connection. Pointer events become absolute XTEST motions at
//! `origin + (x, y)` followed by the button presses and releases that turn the buttons held
//! so far into the new mask; wheel notches become clicks of buttons 4/5 (vertical) and 6/7
//! (horizontal).
//!
//! Keys arrive as X keysyms chosen on the representative's side, so they say *which
//! character* is wanted, not which key. The injector looks the keysym up in the customer's
//! current core keyboard mapping (columns 1/2 plain and Shift, 3/4 the second group reached
//! with `Mode_switch`, 5/6 AltGr = `ISO_Level3_Shift` with and without Shift) and presses
//! that key with exactly the modifiers its column needs: it presses Shift or AltGr for that
//! one key, or lifts a Shift the representative holds when the character needs none, and
//! puts the representative's modifiers back right after. Caps Lock is taken into account
//! for letters. Keys without a character (arrows, Return, F-keys) keep every modifier the
//! representative holds, so Shift+arrow still selects and Ctrl+C still copies. A keysym no
//! key produces is bound for a while to a keycode the layout leaves empty
//! (`ChangeKeyboardMapping`); such bindings are undone once they have been idle for
//! [`SPARE_IDLE`], on [`X11Input::release_all`] and when the injector is dropped. Leaving
//! them in place a little while matters: clients fetch the new mapping only when they read
//! the key event, so undoing the binding at once would make them see an empty key. A new
//! binding is announced twice, [`BIND_SETTLE`] apart, before the key is pressed: Xlib
//! clients forget a mapping change that reaches them while they are still fetching an
//! earlier one (seen with `xev` right after start-up), and the second announcement reaches
//! them after that fetch.
//!
//! The keyboard mapping is re-read whenever the server announces a change (`MappingNotify`,
//! which a layout switch with XKB also sends), and the desktop size follows the root
//! window's `ConfigureNotify` (RandR resizes).
//!
//! Everything the injector presses is tracked, so [`X11Input::release_all`] (and `Drop`)
//! lifts every key and button it still holds. Pointer events that land more than
//! [`OUTSIDE_SLACK`] pixels outside the desktop are dropped (only the button releases they
//! carry are applied, so nothing stays held); nearer ones are clamped to the edge.
//!
//! # Limits
//! * Only the core keyboard mapping and the first two groups are used; a layout needing a
//!   fifth level (`ISO_Level5_Shift`) for a character gets that character through a spare
//!   keycode instead.
//! * Keysyms are compared as numbers, with the Unicode keysyms of Latin-1 characters and
//!   of the euro sign treated as their classic keysyms. A Unicode keysym for a character
//!   the layout lists under another legacy keysym (Cyrillic, Greek, ...) is still typed
//!   correctly, but through a spare keycode.
//! * Caps Lock is compensated for Latin-1 and Unicode-keysym letters only.
//! * Modifiers the customer holds on their own keyboard cannot be lifted.
//! * When the server auto-repeats a key the representative holds, the repeats carry the
//!   representative's modifiers, not the temporary ones.
//! * A keysym that needs a spare keycode costs [`BIND_SETTLE`] (15 ms) the first time it
//!   is typed after being unused for [`SPARE_IDLE`]; an Xlib client slower than that to
//!   fetch a keymap change may still see an empty key.

use std::time::{Duration, Instant};

use lifeline_proto::remote::{Combo, InputEvent, buttons};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectError, ConnectionError, ReplyError};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    self, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, Keycode, Keysym, Window,
};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

/// Pointer events further than this outside the desktop are dropped; nearer ones clamped.
pub const OUTSIDE_SLACK: i64 = 64;
/// A temporary keysym binding is undone after being unused this long.
pub const SPARE_IDLE: Duration = Duration::from_secs(2);
/// Pause between the two announcements of a new keysym binding (see the module doc).
pub const BIND_SETTLE: Duration = Duration::from_millis(15);
/// Most wheel notches replayed for one event, per axis.
const MAX_NOTCHES: u8 = 32;

/// Keysyms this module names.
mod ks {
    pub const NO_SYMBOL: u32 = 0;
    pub const VOID_SYMBOL: u32 = 0x00ff_ffff;
    pub const EURO_SIGN: u32 = 0x20ac;
    pub const ISO_LEVEL3_SHIFT: u32 = 0xfe03;
    pub const MODE_SWITCH: u32 = 0xff7e;
    pub const NUM_LOCK: u32 = 0xff7f;
    pub const BACKSPACE: u32 = 0xff08;
    pub const TAB: u32 = 0xff09;
    pub const RETURN: u32 = 0xff0d;
    pub const PAUSE: u32 = 0xff13;
    pub const SCROLL_LOCK: u32 = 0xff14;
    pub const ESCAPE: u32 = 0xff1b;
    pub const HOME: u32 = 0xff50;
    pub const LEFT: u32 = 0xff51;
    pub const UP: u32 = 0xff52;
    pub const RIGHT: u32 = 0xff53;
    pub const DOWN: u32 = 0xff54;
    pub const PAGE_UP: u32 = 0xff55;
    pub const PAGE_DOWN: u32 = 0xff56;
    pub const END: u32 = 0xff57;
    pub const PRINT: u32 = 0xff61;
    pub const INSERT: u32 = 0xff63;
    pub const MENU: u32 = 0xff67;
    pub const KP_ENTER: u32 = 0xff8d;
    pub const F1: u32 = 0xffbe;
    pub const SHIFT_L: u32 = 0xffe1;
    pub const SHIFT_R: u32 = 0xffe2;
    pub const CONTROL_L: u32 = 0xffe3;
    pub const CONTROL_R: u32 = 0xffe4;
    pub const CAPS_LOCK: u32 = 0xffe5;
    pub const SHIFT_LOCK: u32 = 0xffe6;
    pub const META_L: u32 = 0xffe7;
    pub const META_R: u32 = 0xffe8;
    pub const ALT_L: u32 = 0xffe9;
    pub const ALT_R: u32 = 0xffea;
    pub const SUPER_L: u32 = 0xffeb;
    pub const SUPER_R: u32 = 0xffec;
    pub const HYPER_L: u32 = 0xffed;
    pub const HYPER_R: u32 = 0xffee;
    pub const DELETE: u32 = 0xffff;
}

/// Modifier bits of the core protocol's key/button state.
const SHIFT_MASK: u16 = 1;
const LOCK_MASK: u16 = 2;

/// Why input could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot connect to the X display {display}")]
    Connect {
        display: String,
        #[source]
        source: ConnectError,
    },
    #[error(
        "the X server of display {display} lacks the XTEST extension, so the representative cannot control this desktop"
    )]
    NoXTest { display: String },
    #[error("the connection to the X server broke")]
    Connection(#[from] ConnectionError),
    #[error("the X server refused the {request} request")]
    Request {
        request: &'static str,
        #[source]
        source: ReplyError,
    },
    #[error(
        "no key produces keysym {keysym:#x} on this keyboard layout and no spare keycode is left to bind it to"
    )]
    NoKeyFor { keysym: u32 },
}

impl InputError {
    /// Whether the injector is unusable after this error (the X connection is gone or was
    /// never there); other errors concern one event only.
    pub fn is_fatal(&self) -> bool {
        match self {
            InputError::Connect { .. } | InputError::NoXTest { .. } => true,
            InputError::Connection(_) => true,
            InputError::Request { source, .. } => matches!(source, ReplyError::ConnectionError(_)),
            InputError::NoKeyFor { .. } => false,
        }
    }
}

fn request(request: &'static str) -> impl FnOnce(ReplyError) -> InputError {
    move |source| InputError::Request { request, source }
}

/// Injects the representative's input into one X display.
pub struct X11Input {
    conn: RustConnection,
    root: Window,
    /// Desktop (root window) size.
    desktop: (i64, i64),
    keymap: Keymap,
    roles: Roles,
    /// Keys pressed for the representative and still down, oldest first.
    held: Vec<Held>,
    /// Buttons ([`buttons`] bits) pressed for the representative and still down.
    buttons: u8,
    spares: Vec<Spare>,
}

/// How the representative names a held key: by its browser key code when it sent one
/// (the keysym of a key changes when Shift is pressed while it is down), else by keysym.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyId {
    Code(String),
    Sym(u32),
}

#[derive(Debug)]
struct Held {
    id: KeyId,
    keycode: Keycode,
    modifier: bool,
}

/// A keycode with no symbols in the layout, usable for a temporary binding.
#[derive(Debug, Clone, Copy)]
struct Spare {
    keycode: Keycode,
    bound: Option<(u32, Instant)>,
}

impl X11Input {
    /// Connects to `display` (or `$DISPLAY`) and reads its keyboard mapping.
    pub fn open(display: Option<&str>) -> Result<Self, InputError> {
        let name = display_name(display);
        let (conn, screen_num) = x11rb::connect(display).map_err(|source| InputError::Connect {
            display: name.clone(),
            source,
        })?;
        if conn
            .extension_information(xtest::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err(InputError::NoXTest { display: name });
        }
        conn.xtest_get_version(2, 2)?
            .reply()
            .map_err(request("XTEST GetVersion"))?;
        // Our fake input must go through even while another client grabs the server.
        conn.xtest_grab_control(true)?;
        let screen = conn
            .setup()
            .roots
            .get(screen_num)
            .ok_or(InputError::NoXTest {
                display: name.clone(),
            })?;
        let root = screen.root;
        let desktop = (
            i64::from(screen.width_in_pixels),
            i64::from(screen.height_in_pixels),
        );
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new().event_mask(EventMask::STRUCTURE_NOTIFY),
        )?
        .check()
        .map_err(request("ChangeWindowAttributes"))?;
        let mut this = Self {
            conn,
            root,
            desktop,
            keymap: Keymap::default(),
            roles: Roles::default(),
            held: Vec::new(),
            buttons: 0,
            spares: Vec::new(),
        };
        this.reload_mapping()?;
        Ok(this)
    }

    /// Replays one event. `origin`: the desktop position of the viewed surface's top-left
    /// (the chosen monitor's x, y, or the top-left of the bounding box of all monitors).
    pub fn inject(&mut self, event: &InputEvent, origin: (i32, i32)) -> Result<(), InputError> {
        self.drain_events()?;
        self.restore_spares(false)?;
        match event {
            InputEvent::Pointer { x, y, buttons } => self.pointer(*x, *y, *buttons, origin)?,
            InputEvent::Wheel { dx, dy } => self.wheel(*dx, *dy)?,
            InputEvent::Key { keysym, down, code } => {
                let keysym = match *keysym {
                    ks::NO_SYMBOL | ks::VOID_SYMBOL => match keysym_for_code(code) {
                        Some(k) => k,
                        None => return Ok(()),
                    },
                    k => k,
                };
                let id = if code.is_empty() {
                    KeyId::Sym(keysym)
                } else {
                    KeyId::Code(code.clone())
                };
                if *down {
                    self.key_down(keysym, id)?;
                } else {
                    self.key_up(keysym, &id)?;
                }
            }
            InputEvent::Combo { combo } => self.combo(*combo)?,
            InputEvent::ReleaseAll => return self.release_all(),
        }
        self.conn.flush()?;
        Ok(())
    }

    /// Releases every key and button this injector holds (revoke, session end, focus
    /// loss) and undoes every temporary keysym binding. Returns once the server has
    /// processed the releases.
    pub fn release_all(&mut self) -> Result<(), InputError> {
        let held = std::mem::take(&mut self.held);
        let mut released: Vec<Keycode> = Vec::new();
        for h in held.iter().rev() {
            if !released.contains(&h.keycode) {
                released.push(h.keycode);
                self.fake_key(h.keycode, false)?;
            }
        }
        for (bit, button) in BUTTONS {
            if self.buttons & bit != 0 {
                self.fake_button(button, false)?;
            }
        }
        self.buttons = 0;
        self.restore_spares(true)?;
        // A round trip: when this returns, the server has released everything.
        self.conn
            .get_input_focus()?
            .reply()
            .map_err(request("GetInputFocus"))?;
        Ok(())
    }

    fn fake_key(&self, keycode: Keycode, down: bool) -> Result<(), InputError> {
        let kind = if down {
            xproto::KEY_PRESS_EVENT
        } else {
            xproto::KEY_RELEASE_EVENT
        };
        self.conn
            .xtest_fake_input(kind, keycode, x11rb::CURRENT_TIME, self.root, 0, 0, 0)?;
        Ok(())
    }

    fn fake_button(&self, button: u8, down: bool) -> Result<(), InputError> {
        let kind = if down {
            xproto::BUTTON_PRESS_EVENT
        } else {
            xproto::BUTTON_RELEASE_EVENT
        };
        self.conn
            .xtest_fake_input(kind, button, x11rb::CURRENT_TIME, self.root, 0, 0, 0)?;
        Ok(())
    }

    fn pointer(&mut self, x: i32, y: i32, mask: u8, origin: (i32, i32)) -> Result<(), InputError> {
        let target = desktop_point(x, y, origin, self.desktop);
        if let Some((px, py)) = target {
            self.conn.xtest_fake_input(
                xproto::MOTION_NOTIFY_EVENT,
                0,
                x11rb::CURRENT_TIME,
                self.root,
                px,
                py,
                0,
            )?;
        }
        for (bit, button) in BUTTONS {
            let was = self.buttons & bit != 0;
            let now = mask & bit != 0;
            if was && !now {
                self.fake_button(button, false)?;
                self.buttons &= !bit;
            } else if !was && now && target.is_some() {
                self.fake_button(button, true)?;
                self.buttons |= bit;
            }
        }
        if target.is_none() {
            tracing::debug!(
                x,
                y,
                ?origin,
                "pointer event far outside the desktop dropped"
            );
        }
        Ok(())
    }

    fn wheel(&mut self, dx: i8, dy: i8) -> Result<(), InputError> {
        for (delta, negative, positive) in [(dy, 4u8, 5u8), (dx, 6, 7)] {
            let button = if delta < 0 { negative } else { positive };
            for _ in 0..delta.unsigned_abs().min(MAX_NOTCHES) {
                self.fake_button(button, true)?;
                self.fake_button(button, false)?;
            }
        }
        Ok(())
    }

    fn key_down(&mut self, keysym: u32, id: KeyId) -> Result<(), InputError> {
        // One round trip: the current modifier state, and every MappingNotify the server
        // sent before it (a layout switch that finished before this key) is read by then.
        let state = u16::from(
            self.conn
                .query_pointer(self.root)?
                .reply()
                .map_err(request("QueryPointer"))?
                .mask,
        );
        self.drain_events()?;
        if let Some(pos) = self.held.iter().position(|h| h.id == id) {
            if self.held[pos].modifier {
                return Ok(()); // auto-repeat of a held modifier
            }
            // Auto-repeat of a character key: type it again.
            let held = self.held.remove(pos);
            self.release_if_unheld(held.keycode)?;
        }
        if is_modifier(keysym) {
            let keycode = self
                .modifier_keycode(keysym)
                .ok_or(InputError::NoKeyFor { keysym })?;
            if !self.held.iter().any(|h| h.keycode == keycode) {
                self.fake_key(keycode, true)?;
            }
            self.held.push(Held {
                id,
                keycode,
                modifier: true,
            });
            return Ok(());
        }
        let hit = match self.keymap.find(keysym, self.roles.reach()) {
            Some(hit) => hit,
            None => self.bind_spare(keysym)?,
        };
        let character = is_character(keysym);
        let shift_on = state & SHIFT_MASK != 0;
        let lock_on = state & LOCK_MASK != 0;
        let level3_on = self.roles.level3_mask != 0 && state & self.roles.level3_mask != 0;
        let want_shift = hit.level.shift ^ (lock_on && hit.alphabetic);

        let mut pressed: Vec<Keycode> = Vec::new();
        let mut lifted: Vec<Keycode> = Vec::new();
        if want_shift && !shift_on {
            if let Some(k) = self.roles.shift_key {
                pressed.push(k);
            }
        } else if !want_shift && shift_on && character {
            lifted.extend(self.held_in(&self.roles.shift_keys));
        }
        if hit.level.level3 && !level3_on {
            if let Some(k) = self.roles.level3_key {
                pressed.push(k);
            }
        } else if !hit.level.level3 && level3_on && character {
            lifted.extend(self.held_in(&self.roles.level3_keys));
        }
        if let (true, Some(k)) = (hit.level.group2, self.roles.mode_switch_key) {
            pressed.push(k);
        }
        for &k in &lifted {
            self.fake_key(k, false)?;
        }
        for &k in &pressed {
            self.fake_key(k, true)?;
        }
        if self.held.iter().any(|h| h.keycode == hit.keycode) {
            // The same key is down for another id: lift it so this press counts.
            self.fake_key(hit.keycode, false)?;
        }
        self.fake_key(hit.keycode, true)?;
        for &k in pressed.iter().rev() {
            self.fake_key(k, false)?;
        }
        for &k in &lifted {
            self.fake_key(k, true)?;
        }
        self.touch_spare(hit.keycode);
        self.held.push(Held {
            id,
            keycode: hit.keycode,
            modifier: false,
        });
        Ok(())
    }

    fn key_up(&mut self, keysym: u32, id: &KeyId) -> Result<(), InputError> {
        let pos = self
            .held
            .iter()
            .position(|h| h.id == *id)
            .or_else(|| self.held.iter().position(|h| h.id == KeyId::Sym(keysym)));
        if let Some(pos) = pos {
            let held = self.held.remove(pos);
            self.release_if_unheld(held.keycode)?;
            self.touch_spare(held.keycode);
        }
        Ok(())
    }

    fn release_if_unheld(&self, keycode: Keycode) -> Result<(), InputError> {
        if !self.held.iter().any(|h| h.keycode == keycode) {
            self.fake_key(keycode, false)?;
        }
        Ok(())
    }

    /// The keycodes of `set` that the representative holds through us.
    fn held_in(&self, set: &[Keycode]) -> Vec<Keycode> {
        let mut out: Vec<Keycode> = Vec::new();
        for h in &self.held {
            if set.contains(&h.keycode) && !out.contains(&h.keycode) {
                out.push(h.keycode);
            }
        }
        out
    }

    fn combo(&mut self, combo: Combo) -> Result<(), InputError> {
        let keysyms: &[u32] = match combo {
            Combo::CtrlAltDel => &[ks::CONTROL_L, ks::ALT_L, ks::DELETE],
            Combo::Super => &[ks::SUPER_L],
            Combo::AltTab => &[ks::ALT_L, ks::TAB],
            Combo::PrintScreen => &[ks::PRINT],
        };
        let mut keycodes = Vec::with_capacity(keysyms.len());
        for &keysym in keysyms {
            let keycode = if is_modifier(keysym) {
                self.modifier_keycode(keysym)
            } else {
                self.keymap
                    .find(keysym, self.roles.reach())
                    .map(|hit| hit.keycode)
            };
            keycodes.push(keycode.ok_or(InputError::NoKeyFor { keysym })?);
        }
        // Keys the representative already holds stay as they are.
        let mut pressed = Vec::new();
        for keycode in keycodes {
            if !self.held.iter().any(|h| h.keycode == keycode) && !pressed.contains(&keycode) {
                self.fake_key(keycode, true)?;
                pressed.push(keycode);
            }
        }
        for &keycode in pressed.iter().rev() {
            self.fake_key(keycode, false)?;
        }
        Ok(())
    }

    /// A keycode whose first column is this modifier keysym (or its left/right twin).
    fn modifier_keycode(&self, keysym: u32) -> Option<Keycode> {
        self.keymap
            .find_first_column(keysym)
            .or_else(|| twin(keysym).and_then(|t| self.keymap.find_first_column(t)))
    }

    fn bind_spare(&mut self, keysym: u32) -> Result<Hit, InputError> {
        let held = &self.held;
        let unheld = |s: &&mut Spare| !held.iter().any(|h| h.keycode == s.keycode);
        let spare = match self
            .spares
            .iter_mut()
            .filter(unheld)
            .find(|s| s.bound.is_none())
        {
            Some(s) => s,
            None => self
                .spares
                .iter_mut()
                .filter(|s| !held.iter().any(|h| h.keycode == s.keycode))
                .min_by_key(|s| s.bound.map(|(_, t)| t))
                .ok_or(InputError::NoKeyFor { keysym })?,
        };
        let keycode = spare.keycode;
        spare.bound = Some((keysym, Instant::now()));
        let per = self.keymap.per.max(2);
        let mut syms = vec![ks::NO_SYMBOL; per];
        syms[0] = keysym;
        syms[1] = keysym;
        self.set_mapping(keycode, &syms)?;
        std::thread::sleep(BIND_SETTLE);
        self.set_mapping(keycode, &syms)?;
        tracing::debug!(keysym, keycode, "keysym bound to a spare keycode");
        Ok(Hit {
            keycode,
            level: Level::PLAIN,
            alphabetic: false,
        })
    }

    fn touch_spare(&mut self, keycode: Keycode) {
        if let Some(Spare {
            bound: Some((_, t)),
            ..
        }) = self.spares.iter_mut().find(|s| s.keycode == keycode)
        {
            *t = Instant::now();
        }
    }

    /// Undoes temporary bindings not in use: all of them, or those idle for [`SPARE_IDLE`].
    fn restore_spares(&mut self, all: bool) -> Result<(), InputError> {
        let per = self.keymap.per.max(2);
        for i in 0..self.spares.len() {
            let Spare { keycode, bound } = self.spares[i];
            let Some((_, last)) = bound else { continue };
            if self.held.iter().any(|h| h.keycode == keycode)
                || (!all && last.elapsed() < SPARE_IDLE)
            {
                continue;
            }
            self.spares[i].bound = None;
            self.set_mapping(keycode, &vec![ks::NO_SYMBOL; per])?;
        }
        Ok(())
    }

    fn set_mapping(&mut self, keycode: Keycode, syms: &[u32]) -> Result<(), InputError> {
        let per = u8::try_from(syms.len()).unwrap_or(u8::MAX);
        self.conn
            .change_keyboard_mapping(1, keycode, per, syms)?
            .check()
            .map_err(request("ChangeKeyboardMapping"))?;
        self.keymap.set(keycode, syms);
        Ok(())
    }

    /// Reads pending events without blocking: mapping changes and root resizes.
    fn drain_events(&mut self) -> Result<(), InputError> {
        let mut reload = false;
        while let Some(event) = self.conn.poll_for_event()? {
            match event {
                Event::MappingNotify(m) if m.request != xproto::Mapping::POINTER => reload = true,
                Event::ConfigureNotify(c) if c.window == self.root => {
                    self.desktop = (i64::from(c.width), i64::from(c.height));
                }
                Event::Error(e) => tracing::debug!(?e, "X error on the input connection"),
                _ => {}
            }
        }
        if reload {
            self.reload_mapping()?;
        }
        Ok(())
    }

    fn reload_mapping(&mut self) -> Result<(), InputError> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let count = max.saturating_sub(min).saturating_add(1);
        let map = self
            .conn
            .get_keyboard_mapping(min, count)?
            .reply()
            .map_err(request("GetKeyboardMapping"))?;
        let mods = self
            .conn
            .get_modifier_mapping()?
            .reply()
            .map_err(request("GetModifierMapping"))?;
        self.keymap = Keymap::new(min, map.keysyms_per_keycode, map.keysyms);
        self.roles = Roles::new(&self.keymap, &mods.keycodes);
        // Our bindings survive if the server still has them; a new layout replaced them.
        let old = std::mem::take(&mut self.spares);
        self.spares = self
            .keymap
            .empty_keycodes()
            .into_iter()
            .map(|keycode| Spare {
                keycode,
                bound: None,
            })
            .collect();
        for s in old {
            if s.bound
                .is_some_and(|(keysym, _)| self.keymap.column(s.keycode, 0) == keysym)
            {
                self.spares.push(s);
            }
        }
        Ok(())
    }
}

impl Drop for X11Input {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::debug!(error = %e, "releasing input on drop failed");
        }
    }
}

/// Protocol button bits and the X buttons they press.
const BUTTONS: [(u8, u8); 5] = [
    (buttons::LEFT, 1),
    (buttons::MIDDLE, 2),
    (buttons::RIGHT, 3),
    (buttons::BACK, 8),
    (buttons::FORWARD, 9),
];

fn display_name(display: Option<&str>) -> String {
    display.unwrap_or("named by $DISPLAY").to_owned()
}

/// The desktop point for surface point (x, y), clamped to the desktop, or `None` when it
/// lies more than [`OUTSIDE_SLACK`] pixels outside.
pub(crate) fn desktop_point(
    x: i32,
    y: i32,
    origin: (i32, i32),
    desktop: (i64, i64),
) -> Option<(i16, i16)> {
    let px = i64::from(origin.0) + i64::from(x);
    let py = i64::from(origin.1) + i64::from(y);
    let (w, h) = (desktop.0.max(1), desktop.1.max(1));
    if px < -OUTSIDE_SLACK
        || py < -OUTSIDE_SLACK
        || px >= w + OUTSIDE_SLACK
        || py >= h + OUTSIDE_SLACK
    {
        return None;
    }
    let clamp = |v: i64, size: i64| v.clamp(0, (size - 1).min(i64::from(i16::MAX))) as i16;
    Some((clamp(px, w), clamp(py, h)))
}

fn is_modifier(keysym: u32) -> bool {
    matches!(
        keysym,
        ks::SHIFT_L..=ks::HYPER_R | ks::ISO_LEVEL3_SHIFT | ks::MODE_SWITCH | ks::NUM_LOCK
    )
}

/// The other-side twin of a modifier keysym, for layouts that lack one side.
fn twin(keysym: u32) -> Option<u32> {
    Some(match keysym {
        ks::SHIFT_R => ks::SHIFT_L,
        ks::CONTROL_R => ks::CONTROL_L,
        ks::ALT_R | ks::META_L | ks::META_R => ks::ALT_L,
        ks::SUPER_R | ks::HYPER_L | ks::HYPER_R => ks::SUPER_L,
        ks::SHIFT_LOCK => ks::CAPS_LOCK,
        _ => return None,
    })
}

/// Whether a keysym types a character (as opposed to a function, cursor, keypad, modifier
/// or dead key, all of which live in 0xfe00..=0xffff).
fn is_character(keysym: u32) -> bool {
    !(0xfe00..=0xffff).contains(&keysym)
}

/// A keysym from the browser's physical key name, for key events that carry no keysym.
fn keysym_for_code(code: &str) -> Option<u32> {
    Some(match code {
        "ShiftLeft" => ks::SHIFT_L,
        "ShiftRight" => ks::SHIFT_R,
        "ControlLeft" => ks::CONTROL_L,
        "ControlRight" => ks::CONTROL_R,
        "AltLeft" => ks::ALT_L,
        "MetaLeft" | "OSLeft" => ks::SUPER_L,
        "MetaRight" | "OSRight" => ks::SUPER_R,
        "CapsLock" => ks::CAPS_LOCK,
        "NumLock" => ks::NUM_LOCK,
        "ScrollLock" => ks::SCROLL_LOCK,
        "Enter" => ks::RETURN,
        "NumpadEnter" => ks::KP_ENTER,
        "Backspace" => ks::BACKSPACE,
        "Tab" => ks::TAB,
        "Escape" => ks::ESCAPE,
        "Delete" => ks::DELETE,
        "Insert" => ks::INSERT,
        "Home" => ks::HOME,
        "End" => ks::END,
        "PageUp" => ks::PAGE_UP,
        "PageDown" => ks::PAGE_DOWN,
        "ArrowLeft" => ks::LEFT,
        "ArrowUp" => ks::UP,
        "ArrowRight" => ks::RIGHT,
        "ArrowDown" => ks::DOWN,
        "PrintScreen" => ks::PRINT,
        "Pause" => ks::PAUSE,
        "ContextMenu" => ks::MENU,
        _ => {
            let n: u32 = code.strip_prefix('F')?.parse().ok()?;
            if !(1..=24).contains(&n) {
                return None;
            }
            ks::F1 + n - 1
        }
    })
}

/// The keysym a Unicode keysym stands for when a classic one exists (Latin-1, euro sign).
fn normalize(keysym: u32) -> u32 {
    match keysym {
        0x0100_0020..=0x0100_007e | 0x0100_00a0..=0x0100_00ff => keysym - 0x0100_0000,
        0x0100_20ac => ks::EURO_SIGN,
        k => k,
    }
}

/// The character a keysym types, for the keysyms whose character is known without a
/// table: Latin-1, the euro sign and Unicode keysyms.
fn keysym_char(keysym: u32) -> Option<char> {
    match normalize(keysym) {
        k @ (0x20..=0x7e | 0xa0..=0xff) => char::from_u32(k),
        ks::EURO_SIGN => Some('€'),
        k @ 0x0100_0100..=0x0110_ffff => char::from_u32(k - 0x0100_0000),
        _ => None,
    }
}

/// Whether `lower`/`upper` are the two cases of one letter (so Caps Lock swaps them).
fn case_pair(lower: u32, upper: u32) -> bool {
    let (Some(l), Some(u)) = (keysym_char(lower), keysym_char(upper)) else {
        return false;
    };
    l != u && l.is_lowercase() && single_upper(l) == Some(u)
}

fn single_upper(c: char) -> Option<char> {
    let mut up = c.to_uppercase();
    let first = up.next()?;
    up.next().is_none().then_some(first)
}

/// The modifiers a column of the core keyboard mapping needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level {
    pub shift: bool,
    pub level3: bool,
    pub group2: bool,
}

impl Level {
    const PLAIN: Level = Level {
        shift: false,
        level3: false,
        group2: false,
    };
}

/// Columns in the order they are tried: plain, Shift, AltGr, AltGr+Shift, then the second
/// group with and without Shift.
const COLUMNS: [(usize, Level); 6] = [
    (0, Level::PLAIN),
    (
        1,
        Level {
            shift: true,
            level3: false,
            group2: false,
        },
    ),
    (
        4,
        Level {
            shift: false,
            level3: true,
            group2: false,
        },
    ),
    (
        5,
        Level {
            shift: true,
            level3: true,
            group2: false,
        },
    ),
    (
        2,
        Level {
            shift: false,
            level3: false,
            group2: true,
        },
    ),
    (
        3,
        Level {
            shift: true,
            level3: false,
            group2: true,
        },
    ),
];

/// Which extra levels the layout can reach (it has an AltGr or a Mode_switch key).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reach {
    pub level3: bool,
    pub group2: bool,
}

/// Where a keysym sits: the key, the modifiers its column needs, and whether Caps Lock
/// swaps its first two columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub keycode: Keycode,
    pub level: Level,
    pub alphabetic: bool,
}

/// The core keyboard mapping: `per` keysyms for each keycode from `min` on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keymap {
    min: u8,
    per: usize,
    syms: Vec<Keysym>,
}

impl Keymap {
    pub fn new(min: u8, per: u8, syms: Vec<Keysym>) -> Self {
        let per = usize::from(per);
        let mut syms = syms;
        // Keep whole keycodes within the keycode range only (none when `per` is 0).
        let keycodes = syms
            .len()
            .checked_div(per)
            .unwrap_or(0)
            .min(256 - usize::from(min));
        syms.truncate(keycodes * per);
        Self { min, per, syms }
    }

    fn keycodes(&self) -> impl Iterator<Item = Keycode> + '_ {
        let n = self.syms.len().checked_div(self.per).unwrap_or(0);
        (0..n).filter_map(move |i| u8::try_from(usize::from(self.min) + i).ok())
    }

    fn entry(&self, keycode: Keycode) -> &[Keysym] {
        let Some(i) = usize::from(keycode).checked_sub(usize::from(self.min)) else {
            return &[];
        };
        self.syms
            .get(i * self.per..(i + 1) * self.per)
            .unwrap_or(&[])
    }

    /// The keysym the server gives column `col` of `keycode`, after the core protocol's
    /// rules for short lists: a missing second column repeats the first (or is its upper
    /// case for a letter), and an empty second group repeats the first.
    pub fn column(&self, keycode: Keycode, col: usize) -> Keysym {
        let e = self.entry(keycode);
        let raw = |i: usize| e.get(i).copied().unwrap_or(ks::NO_SYMBOL);
        let group = |first: usize| -> (Keysym, Keysym) {
            let (a, b) = (raw(first), raw(first + 1));
            if b != ks::NO_SYMBOL {
                return (a, b);
            }
            match keysym_char(a).and_then(|c| {
                let l = c.to_lowercase().next()?;
                let u = single_upper(l)?;
                (l != u).then_some((l, u))
            }) {
                Some((l, u)) => (char_keysym(l), char_keysym(u)),
                None => (a, a),
            }
        };
        match col {
            0 | 1 => {
                let (a, b) = group(0);
                if col == 0 { a } else { b }
            }
            2 | 3 => {
                let (a, b) = if raw(2) == ks::NO_SYMBOL && raw(3) == ks::NO_SYMBOL {
                    group(0)
                } else {
                    group(2)
                };
                if col == 2 { a } else { b }
            }
            c => raw(c),
        }
    }

    /// The best key and column for `keysym`, trying columns in [`COLUMNS`] order.
    pub fn find(&self, keysym: Keysym, reach: Reach) -> Option<Hit> {
        let want = normalize(keysym);
        if want == ks::NO_SYMBOL || want == ks::VOID_SYMBOL {
            return None;
        }
        for (col, level) in COLUMNS {
            if (level.level3 && !reach.level3) || (level.group2 && !reach.group2) {
                continue;
            }
            for keycode in self.keycodes() {
                if normalize(self.column(keycode, col)) == want {
                    let alphabetic = !level.level3
                        && !level.group2
                        && case_pair(self.column(keycode, 0), self.column(keycode, 1));
                    return Some(Hit {
                        keycode,
                        level,
                        alphabetic,
                    });
                }
            }
        }
        None
    }

    /// A keycode whose first column is `keysym`.
    pub fn find_first_column(&self, keysym: Keysym) -> Option<Keycode> {
        self.keycodes()
            .find(|&k| self.entry(k).first() == Some(&keysym))
    }

    /// Keycodes with no keysym at all, highest first (the least likely to be real keys).
    pub fn empty_keycodes(&self) -> Vec<Keycode> {
        let mut out: Vec<Keycode> = self
            .keycodes()
            .filter(|&k| self.entry(k).iter().all(|&s| s == ks::NO_SYMBOL))
            .collect();
        out.reverse();
        out
    }

    /// Replaces one keycode's keysyms (after a ChangeKeyboardMapping of ours).
    fn set(&mut self, keycode: Keycode, syms: &[Keysym]) {
        let Some(i) = usize::from(keycode).checked_sub(usize::from(self.min)) else {
            return;
        };
        if let Some(slot) = self.syms.get_mut(i * self.per..(i + 1) * self.per) {
            for (j, s) in slot.iter_mut().enumerate() {
                *s = syms.get(j).copied().unwrap_or(ks::NO_SYMBOL);
            }
        }
    }
}

fn char_keysym(c: char) -> Keysym {
    let cp = u32::from(c);
    match cp {
        0x20..=0x7e | 0xa0..=0xff => cp,
        0x20ac => ks::EURO_SIGN,
        _ => 0x0100_0000 + cp,
    }
}

/// The keys that play a modifier role, from the keymap and the modifier mapping.
#[derive(Debug, Clone, Default)]
pub(crate) struct Roles {
    /// Keys in the Shift row of the modifier mapping.
    shift_keys: Vec<Keycode>,
    /// The key pressed when a character needs Shift.
    shift_key: Option<Keycode>,
    /// Keys whose first keysym is ISO_Level3_Shift (AltGr).
    level3_keys: Vec<Keycode>,
    level3_key: Option<Keycode>,
    /// The modifier bit AltGr sets (0 when it sets none).
    level3_mask: u16,
    mode_switch_key: Option<Keycode>,
}

impl Roles {
    /// `modmap`: GetModifierMapping's keycodes, eight rows (Shift, Lock, Control, Mod1-5).
    pub fn new(keymap: &Keymap, modmap: &[Keycode]) -> Self {
        let per_row = modmap.len() / 8;
        let row_of = |k: Keycode| -> Option<usize> {
            if per_row == 0 || k == 0 {
                return None;
            }
            modmap.iter().position(|&m| m == k).map(|i| i / per_row)
        };
        let shift_keys: Vec<Keycode> = if per_row == 0 {
            Vec::new()
        } else {
            modmap[..per_row]
                .iter()
                .copied()
                .filter(|&k| k != 0)
                .collect()
        };
        let shift_key = keymap
            .find_first_column(ks::SHIFT_L)
            .filter(|k| shift_keys.contains(k))
            .or_else(|| shift_keys.first().copied());
        let with_first = |keysym: Keysym| -> Vec<Keycode> {
            keymap
                .keycodes()
                .filter(|&k| keymap.entry(k).first() == Some(&keysym))
                .collect()
        };
        let level3_keys = with_first(ks::ISO_LEVEL3_SHIFT);
        let level3_key = level3_keys
            .iter()
            .copied()
            .find(|&k| row_of(k).is_some())
            .or_else(|| level3_keys.first().copied());
        let level3_mask = level3_key.and_then(row_of).map_or(0, |row| 1u16 << row);
        let mode_switch = with_first(ks::MODE_SWITCH);
        let mode_switch_key = mode_switch
            .iter()
            .copied()
            .find(|&k| row_of(k).is_some())
            .or_else(|| mode_switch.first().copied());
        Self {
            shift_keys,
            shift_key,
            level3_keys,
            level3_key,
            level3_mask,
            mode_switch_key,
        }
    }

    fn reach(&self) -> Reach {
        Reach {
            level3: self.level3_key.is_some(),
            group2: self.mode_switch_key.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: Reach = Reach {
        level3: true,
        group2: true,
    };

    /// A small German-like map from keycode 10: q/Q/@, e/E/€, ß/?/\, 7/slash/{, and a
    /// second group on the last key.
    fn sample() -> Keymap {
        let rows: [[u32; 6]; 6] = [
            [0x71, 0x51, 0x71, 0x51, 0x40, 0],          // q Q q Q @
            [0x65, 0x45, 0x65, 0x45, ks::EURO_SIGN, 0], // e E e E €
            [0xdf, 0x3f, 0xdf, 0x3f, 0x5c, 0],          // ß ? ß ? backslash
            [0x37, 0x2f, 0x37, 0x2f, 0x7b, 0],          // 7 / 7 / {
            [0x61, 0, 0x6c1, 0x6e1, 0, 0],              // a (A) | Cyrillic a / A
            [ks::ISO_LEVEL3_SHIFT, 0, 0, 0, 0, 0],
        ];
        Keymap::new(10, 6, rows.iter().flatten().copied().collect())
    }

    #[test]
    fn finds_columns_in_order() {
        let m = sample();
        let plain = Level::PLAIN;
        let shift = Level {
            shift: true,
            ..plain
        };
        let l3 = Level {
            level3: true,
            ..plain
        };
        let g2 = Level {
            group2: true,
            ..plain
        };
        let find = |k| m.find(k, ALL).map(|h| (h.keycode, h.level));
        assert_eq!(find(0x71), Some((10, plain)));
        assert_eq!(find(0x51), Some((10, shift)));
        assert_eq!(find(0x40), Some((10, l3)));
        assert_eq!(find(ks::EURO_SIGN), Some((11, l3)));
        assert_eq!(find(0x0100_20ac), Some((11, l3)), "Unicode euro");
        assert_eq!(find(0x0100_00df), Some((12, plain)), "Unicode sharp s");
        assert_eq!(find(0x7b), Some((13, l3)));
        // A missing second column is the upper case of a letter.
        assert_eq!(find(0x41), Some((14, shift)));
        assert_eq!(find(0x6c1), Some((14, g2)));
        assert_eq!(find(0x6e1).map(|(_, l)| l.shift), Some(true));
        assert_eq!(find(0xe9), None);
        // Without AltGr on the layout, the AltGr columns are out of reach.
        assert_eq!(
            m.find(
                0x40,
                Reach {
                    level3: false,
                    group2: true
                }
            ),
            None
        );
        assert!(m.find(0x71, ALL).unwrap().alphabetic);
        assert!(!m.find(0x37, ALL).unwrap().alphabetic);
        assert!(
            !m.find(0xdf, ALL).unwrap().alphabetic,
            "ß has no one-letter capital"
        );
    }

    #[test]
    fn roles_from_modifier_map() {
        let m = sample();
        // Shift row empty, Mod5 (row 7) holds the AltGr key 15.
        let mut modmap = vec![0u8; 16];
        modmap[14] = 15;
        let r = Roles::new(&m, &modmap);
        assert_eq!(r.level3_key, Some(15));
        assert_eq!(r.level3_mask, 1 << 7);
        assert_eq!(r.shift_key, None);
        assert!(r.mode_switch_key.is_none());
    }

    #[test]
    fn spare_keycodes_and_binding() {
        let mut m = Keymap::new(8, 2, vec![0x61, 0x41, 0, 0, 0, 0]);
        assert_eq!(m.empty_keycodes(), vec![10, 9]);
        m.set(10, &[0xe9, 0xe9]);
        assert_eq!(m.find(0xe9, Reach::default()).map(|h| h.keycode), Some(10));
        assert_eq!(m.empty_keycodes(), vec![9]);
    }

    #[test]
    fn pointer_mapping() {
        let desk = (1280, 800);
        assert_eq!(desktop_point(10, 20, (100, 50), desk), Some((110, 70)));
        assert_eq!(desktop_point(-5, 0, (0, 0), desk), Some((0, 0)));
        assert_eq!(desktop_point(1300, 799, (0, 0), desk), Some((1279, 799)));
        assert_eq!(desktop_point(-100, 0, (0, 0), desk), None);
        assert_eq!(desktop_point(100_000, 0, (0, 0), desk), None);
    }

    #[test]
    fn codes_and_classes() {
        assert_eq!(keysym_for_code("F12"), Some(ks::F1 + 11));
        assert_eq!(keysym_for_code("F0"), None);
        assert_eq!(keysym_for_code("KeyA"), None);
        assert!(is_modifier(ks::SUPER_L) && !is_modifier(ks::DELETE));
        assert!(is_character(0xe9) && is_character(0x0100_03a9) && !is_character(ks::TAB));
    }

    proptest! {
        #[test]
        fn find_never_panics_and_is_right(
            min in 0u8..=255,
            per in 0u8..8,
            syms in proptest::collection::vec(
                prop_oneof![0u32..0x200, Just(ks::ISO_LEVEL3_SHIFT), any::<u32>()], 0..64),
            keysym in prop_oneof![0u32..0x200, 0x0100_0000u32..0x0100_0300, any::<u32>()],
            level3 in any::<bool>(),
            group2 in any::<bool>(),
        ) {
            let m = Keymap::new(min, per, syms);
            let reach = Reach { level3, group2 };
            if let Some(hit) = m.find(keysym, reach) {
                let col = COLUMNS.iter().find(|(_, l)| *l == hit.level).map(|(c, _)| *c);
                let col = col.expect("a known column");
                prop_assert_eq!(normalize(m.column(hit.keycode, col)), normalize(keysym));
            }
            let _ = m.empty_keycodes();
            let _ = Roles::new(&m, &[]);
        }

        #[test]
        fn pointer_never_panics(x in any::<i32>(), y in any::<i32>(),
                                ox in any::<i32>(), oy in any::<i32>(),
                                w in -10i64..100_000, h in -10i64..100_000) {
            if let Some((px, py)) = desktop_point(x, y, (ox, oy), (w, h)) {
                prop_assert!(px >= 0 && py >= 0);
                prop_assert!(i64::from(px) < w.max(1) && i64::from(py) < h.max(1));
            }
        }
    }
}
