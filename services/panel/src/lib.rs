//! `lifeline-panel`: the front-panel driver of the Lifeline appliance.
//!
//! The box has a small monochrome LCD with a six-key keypad on a serial line. This crate
//! speaks the panel's packet protocol, renders the screens, runs the keypad menu, and
//! contains an emulator of the panel for development and tests.
//!
//! # Design
//!
//! Layers, each in its own module and usable alone:
//!
//! - [`packet`]: framing (type/command byte, length, data, CRC-16/X-25) and a resynchronising
//!   streaming decoder;
//! - [`link`]: request/reply with timeouts and retries over any `Read + Write`; key reports;
//! - [`driver`]: the [`driver::Display`] trait with the character (20x4) and graphic
//!   (128x64, 244x68) drivers, and the command numbers;
//! - [`framebuffer`] and [`screens`]: a 1-bit `embedded-graphics` draw target, the screens
//!   and their layouts per display size, PNG output;
//! - [`status`]: the [`status::Status`] shown and the [`status::StatusSource`] seam;
//! - [`menu`]: the keypad menu and backlight policy (pure logic), emitting [`menu::Action`]s;
//! - [`emulator`]: the panel on a pseudo-terminal;
//! - [`bus`]: status from `org.lifeline.Supervisor1` (its change signal), actions to it, and
//!   the web mirror `org.lifeline.Panel1` (picture and keys);
//! - [`config`] and [`service`]: the daemon's configuration and main loop (`main.rs` is thin).
//!
//! # Limits
//!
//! - The web mirror shows what the service last sent to the module (rendered again here),
//!   not a read-back from the module; the backlight level is not shown.
//! - The graphic driver uses the graphic family's graphics command and sub-commands, but the
//!   pixel layout inside its "write to the buffer" is ours and not confirmed on hardware (see
//!   [`driver`]).
#![forbid(unsafe_code)]

pub mod bus;
pub mod config;
pub mod driver;
pub mod emulator;
pub mod framebuffer;
pub mod link;
pub mod menu;
pub mod packet;
pub mod screens;
pub mod service;
pub mod status;
