//! `lifeline-agent`: the customer client a person downloads from the support box's portal.
//!
//! Design: everything but the window is plain, display-free library code, so a load
//! generator or a test can run sessions headless:
//!
//! * [`ticket`] reads the support ticket the box appended to this very executable;
//! * [`net`] opens the pinned TLS WebSocket to the box (directly or through an HTTP proxy);
//! * [`session`] drives the protocol, reconnects after a dropped link, and turns it into
//!   [`session::Event`]s and [`session::Command`]s;
//! * [`i18n`] holds every sentence in English, French and German;
//! * [`platform`] tells the box about this computer, one module per OS;
//! * [`ui`] is the FLTK window (the only module that needs a display);
//! * [`env`] is the one place the process environment is read.
//!
//! Limits of this version: chat only (no screen sharing, files or shell yet); the jump-client
//! mode is not implemented; errors below the UI are English sentences.
#![forbid(unsafe_code)]

pub mod consent;
pub mod desktop;
pub mod env;
pub mod i18n;
pub mod net;
pub mod platform;
pub mod screen;
pub mod session;
pub mod ticket;
pub mod ui;
