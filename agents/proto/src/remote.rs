//! Types shared by the remote-control messages of agents, relay and viewers: permissions,
//! monitors, stream settings and input events.
//!
//! # Permissions
//! A representative asks for each [`Permission`] separately; the customer allows or denies
//! it in the client window (no answer within the client's timeout counts as a denial) and
//! may revoke a granted one at any time. The agent is the authority: it only captures the
//! screen, injects input or reads the clipboard while the customer's grant stands. The relay
//! keeps the last state the agent reported and refuses to forward anything a grant does not
//! cover, so a misbehaving console cannot reach the agent either.

use serde::{Deserialize, Serialize};

use crate::{DecodeError, MAX_NAME_CHARS, check_len};

/// Longest clipboard text, in bytes.
pub const MAX_CLIPBOARD_BYTES: usize = 32 * 1024;
/// Most monitors an agent may report.
pub const MAX_MONITORS: usize = 16;

/// What a representative may ask the customer to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See the screen.
    View,
    /// Move the pointer and type (needs `View` too).
    Control,
    /// Exchange clipboard text.
    Clipboard,
    /// Browse and transfer files.
    FileTransfer,
    /// Read system information.
    SystemInfo,
    /// Open a command shell with the customer's rights.
    Shell,
    /// Open a command shell as administrator (the customer authorises it on their side).
    ElevatedShell,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::View,
        Permission::Control,
        Permission::Clipboard,
        Permission::FileTransfer,
        Permission::SystemInfo,
        Permission::Shell,
        Permission::ElevatedShell,
    ];

    /// The wire name (`"view"`, `"file_transfer"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Control => "control",
            Permission::Clipboard => "clipboard",
            Permission::FileTransfer => "file_transfer",
            Permission::SystemInfo => "system_info",
            Permission::Shell => "shell",
            Permission::ElevatedShell => "elevated_shell",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a permission stands, as the relay reports it to consoles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Asked, the customer has not answered yet.
    Requested,
    Granted,
    /// The customer said no (or did not answer in time).
    Denied,
    /// Granted before, withdrawn by the customer.
    Revoked,
}

/// One monitor of the customer's desktop, in the desktop's coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    /// Stable for as long as the monitor stays connected.
    pub id: u32,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub primary: bool,
    /// e.g. "HDMI-1".
    pub name: String,
}

/// How the agent trades sharpness against bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Adapts to the measured throughput and round-trip time.
    #[default]
    Auto,
    /// Fewest bytes: lower JPEG quality, fewer frames.
    Low,
    /// Sharpest picture the link allows.
    Best,
}

/// What the viewers want to see.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// One monitor's id, or `None` for all monitors.
    #[serde(default)]
    pub monitor: Option<u32>,
    #[serde(default)]
    pub quality: Quality,
}

/// Mouse buttons as a bit mask.
pub mod buttons {
    pub const LEFT: u8 = 1;
    pub const MIDDLE: u8 = 2;
    pub const RIGHT: u8 = 4;
    pub const BACK: u8 = 8;
    pub const FORWARD: u8 = 16;
}

/// Key combinations a browser cannot send itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combo {
    CtrlAltDel,
    /// The "Windows"/"Super" key alone (opens the start menu or activities).
    Super,
    AltTab,
    PrintScreen,
}

/// An input event from the representative, in surface coordinates (see [`crate::screen`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputEvent {
    /// The pointer is at (x, y) with these buttons held ([`buttons`]).
    Pointer { x: i32, y: i32, buttons: u8 },
    /// Wheel notches; positive `dy` scrolls down, positive `dx` right.
    Wheel { dx: i8, dy: i8 },
    /// An X keysym (the console maps the browser's `KeyboardEvent.key` to it); the agent
    /// finds a key on the customer's layout that produces it (AltGr and Shift included).
    /// `code` is the browser's physical key name, a hint for keys without a character.
    Key {
        keysym: u32,
        down: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        code: String,
    },
    /// A key combination, pressed and released.
    Combo { combo: Combo },
    /// Release every key and button held (the console lost focus).
    ReleaseAll,
}

impl InputEvent {
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        match self {
            InputEvent::Key { code, keysym, .. } => {
                check_len("code", code, 32, true)?;
                // X keysyms fit in 29 bits (Unicode keysyms are 0x01000000 + code point).
                if *keysym > 0x1FFF_FFFF {
                    return Err(DecodeError::FieldTooLong {
                        field: "keysym",
                        max: 0x1FFF_FFFF,
                    });
                }
                Ok(())
            }
            InputEvent::Pointer { x, y, .. } => {
                let limit = i32::from(crate::screen::MAX_SURFACE) * 2;
                if x.abs() > limit || y.abs() > limit {
                    return Err(DecodeError::FieldTooLong {
                        field: "x/y",
                        max: limit as usize,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn validate_monitors(list: &[Monitor]) -> Result<(), DecodeError> {
    if list.len() > MAX_MONITORS {
        return Err(DecodeError::FieldTooLong {
            field: "monitors",
            max: MAX_MONITORS,
        });
    }
    for m in list {
        check_len("name", &m.name, MAX_NAME_CHARS, true)?;
        let side = u32::from(crate::screen::MAX_SURFACE);
        if m.width == 0 || m.height == 0 || m.width > side || m.height > side {
            return Err(DecodeError::FieldTooLong {
                field: "width/height",
                max: side as usize,
            });
        }
    }
    Ok(())
}

pub(crate) fn validate_clipboard(text: &str) -> Result<(), DecodeError> {
    if text.len() > MAX_CLIPBOARD_BYTES {
        return Err(DecodeError::FieldTooLong {
            field: "text",
            max: MAX_CLIPBOARD_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.as_str()), Some(p));
            assert_eq!(crate::encode(&p), format!("\"{}\"", p.as_str()));
        }
        assert_eq!(Permission::from_name("root"), None);
    }

    #[test]
    fn input_shapes() {
        let k = InputEvent::Key {
            keysym: 0xe9,
            down: true,
            code: "Digit2".into(),
        };
        assert_eq!(
            crate::encode(&k),
            r#"{"kind":"key","keysym":233,"down":true,"code":"Digit2"}"#
        );
        let p: InputEvent =
            serde_json::from_str(r#"{"kind":"pointer","x":10,"y":20,"buttons":1}"#).unwrap();
        assert_eq!(
            p,
            InputEvent::Pointer {
                x: 10,
                y: 20,
                buttons: 1
            }
        );
        let c: InputEvent =
            serde_json::from_str(r#"{"kind":"combo","combo":"ctrl_alt_del"}"#).unwrap();
        assert_eq!(
            c,
            InputEvent::Combo {
                combo: Combo::CtrlAltDel
            }
        );
    }
}
