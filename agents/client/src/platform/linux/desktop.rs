//! The X11 desktop a session offers: the screen ([`super::capture`]), the technician's
//! pointer and keys ([`super::input`]) and clipboard text ([`super::clipboard`]), each on
//! its own X connection to the display named by `DISPLAY`.

use lifeline_proto::remote::{InputEvent, Permission};
use tokio::sync::mpsc;

use super::capture::X11Screen;
use super::clipboard::X11Clipboard;
use super::input::X11Input;
use crate::desktop::{ClipboardText, Desktop, Injector};
use crate::screen::ScreenSource;
use crate::session::error_chain;

#[derive(Debug, Clone)]
pub struct X11Desktop {
    display: Option<String>,
}

impl X11Desktop {
    /// The desktop on `display` (`None`: the one `DISPLAY` names).
    pub fn new(display: Option<String>) -> Self {
        Self { display }
    }
}

impl Desktop for X11Desktop {
    fn offers(&self, permission: Permission) -> bool {
        matches!(
            permission,
            Permission::View | Permission::Control | Permission::Clipboard
        )
    }

    fn screen(&self) -> Result<Box<dyn ScreenSource>, String> {
        X11Screen::open(self.display.as_deref())
            .map(|s| Box::new(s) as Box<dyn ScreenSource>)
            .map_err(|e| error_chain(&e))
    }

    fn input(&self) -> Result<Box<dyn Injector>, String> {
        X11Input::open(self.display.as_deref())
            .map(|i| Box::new(i) as Box<dyn Injector>)
            .map_err(|e| error_chain(&e))
    }

    fn clipboard(&self, changed: mpsc::Sender<String>) -> Result<Box<dyn ClipboardText>, String> {
        X11Clipboard::start(self.display.as_deref(), changed)
            .map(|c| Box::new(c) as Box<dyn ClipboardText>)
            .map_err(|e| error_chain(&e))
    }
}

impl Injector for X11Input {
    fn inject(&mut self, event: &InputEvent, origin: (i32, i32)) -> Result<(), String> {
        X11Input::inject(self, event, origin).map_err(|e| error_chain(&e))
    }

    fn release_all(&mut self) -> Result<(), String> {
        X11Input::release_all(self).map_err(|e| error_chain(&e))
    }
}

impl ClipboardText for X11Clipboard {
    fn set_text(&self, text: String) -> Result<(), String> {
        X11Clipboard::set_text(self, text).map_err(|e| error_chain(&e))
    }
}
