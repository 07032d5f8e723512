//! `lifeline-agent`: the customer client a person downloads from the support box's portal.
//!
//! Design: everything but the window is plain, display-free library code, so a load
//! generator or a test can run sessions headless:
//!
//! * [`ticket`] reads the support ticket the box appended to this very executable;
//! * [`net`] opens the pinned TLS WebSocket to the box (directly or through an HTTP proxy);
//! * [`session`] drives the protocol, reconnects after a dropped link, and turns it into
//!   [`session::Event`]s and [`session::Command`]s;
//! * [`consent`] decides, with the customer, what the technician may do (every permission is
//!   asked for, unanswered questions are refused, grants can be withdrawn at any time);
//! * [`desktop`] is the session's use of the customer's desktop: the screen stream while
//!   `view` stands and someone watches, input while `control` stands, the clipboard while
//!   it is shared;
//! * [`files`] browses, sends and receives files in the shared folder while
//!   `file_transfer` is allowed (safe path resolution, SHA-256, resumable `.part` files);
//! * [`tools`] gathers the system-information report on a thread of its own while
//!   `system_info` stands, and runs the command shell on a pseudo-terminal while `shell`
//!   (or `elevated_shell`, authorised through sudo with the client's own password dialog)
//!   stands;
//! * [`screen`] captures, compares, encodes and paces the screen on a thread of its own;
//! * [`i18n`] holds every sentence in English, French and German;
//! * [`platform`] tells the box about this computer and offers its desktop, one module per
//!   OS (X11 on Linux: capture, XTest input, clipboard);
//! * [`ui`] is the FLTK window (the only module that needs a display): terms, queue, chat,
//!   permission questions and what the technician may do right now, each with a Stop button,
//!   the open command shell with "Close it", and the administrator password dialog;
//! * [`env`] is the one place the process environment is read.
//!
//! Limits of this version: Linux with X11 only for screen, input and clipboard (Wayland,
//! Windows and macOS have no desktop module yet, so their requests are answered "not
//! available"); the shell on Linux only; jump mode ([`jump`]: install with a deployment key,
//! the active and passive service, sessions started by a representative's jump) is Linux-only;
//! the support button ([`button`]) is a freedesktop entry (Linux); errors below the UI are
//! English sentences.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod button;
pub mod consent;
pub mod desktop;
pub mod env;
pub mod files;
pub mod i18n;
#[cfg(target_os = "linux")]
pub mod jump;
pub mod net;
pub mod platform;
pub mod screen;
pub mod session;
pub mod ticket;
pub mod tools;
pub mod ui;
