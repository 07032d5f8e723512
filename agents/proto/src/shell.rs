//! The command shell: a terminal on the customer's computer that the representative types
//! into from the console (issue 7).
//!
//! # Who says what
//! The relay speaks for the representative: [`ShellRequest`]s go to the agent inside
//! [`crate::agent::RelayToAgent::Shell`], and the agent answers with [`ShellReply`]s inside
//! [`crate::agent::AgentToRelay::Shell`]. The terminal's bytes go both ways in binary frames
//! on [`crate::frame::Channel::Shell`], whose payload is a [`ShellData`]: the shell id (4
//! bytes, big-endian) followed by at most [`MAX_DATA`] bytes. Bytes are bytes: nothing on the
//! way assumes UTF-8, so a program printing binary garbage breaks nothing.
//!
//! # Opening and closing
//! The representative first asks the customer for the `shell` (or `elevated_shell`)
//! permission like any other; while it stands the relay may send [`ShellRequest::Open`].
//! The agent starts the customer's login shell on a new pseudo-terminal and answers
//! [`ShellReply::Opened`], or [`ShellReply::Failed`] with a [`ShellErrorCode`] (an elevated
//! shell that the customer's system cannot authorise, a customer who cancelled the
//! password prompt). One shell is open per session at a time. Either side closes it: the
//! relay with [`ShellRequest::Close`], the agent with [`ShellReply::Closed`] (the program
//! ended, the customer closed it, or the grant was withdrawn).
//!
//! # Flow control
//! The agent counts the output bytes it sent; it keeps at most [`WINDOW`] of them beyond the
//! offset the console last acknowledged ([`ShellRequest::Ack`], passed on by the relay), so a
//! program that prints without end cannot fill the relay or the browser. The program then
//! simply waits on its terminal, as it would on a slow serial line.
//!
//! # The console's socket
//! `wss://box/ws/shell/{session_id}?elevated=false` carries one shell: text messages are
//! [`ConsoleToShell`] / [`ShellToConsole`] JSON; binary messages are the terminal's raw bytes
//! (console → relay at most [`MAX_INPUT`] bytes each, relay → console at most [`MAX_DATA`]).
//!
//! Limits: one shell per session at a time; sizes between 1×1 and [`MAX_ROWS`]×[`MAX_COLS`].

use serde::{Deserialize, Serialize};

use crate::{DecodeError, MAX_NAME_CHARS, Validate, check_len, decode_json};

/// Most terminal bytes in one frame.
pub const MAX_DATA: usize = 64 * 1024;
/// Most output bytes in flight beyond the console's last acknowledgement.
pub const WINDOW: u64 = 256 * 1024;
/// Most bytes of one input message from the console (a paste is cut into several).
pub const MAX_INPUT: usize = 16 * 1024;
/// Length of the shell id in front of a frame's bytes.
pub const DATA_HEADER: usize = 4;
pub const MAX_ROWS: u16 = 500;
pub const MAX_COLS: u16 = 1000;
/// Longest message of a failure or closing, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermSize {
    pub rows: u16,
    pub cols: u16,
}

impl TermSize {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.rows == 0 || self.rows > MAX_ROWS {
            return Err(DecodeError::FieldTooLong {
                field: "rows",
                max: MAX_ROWS as usize,
            });
        }
        if self.cols == 0 || self.cols > MAX_COLS {
            return Err(DecodeError::FieldTooLong {
                field: "cols",
                max: MAX_COLS as usize,
            });
        }
        Ok(())
    }
}

/// What the relay asks of the agent for the representative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShellRequest {
    /// Start a shell (as administrator when `elevated`).
    Open {
        id: u32,
        elevated: bool,
        size: TermSize,
        /// The representative's display name, for the customer's window.
        rep: String,
    },
    Resize {
        id: u32,
        size: TermSize,
    },
    /// The console has received the output up to `offset` (a count of bytes).
    Ack {
        id: u32,
        offset: u64,
    },
    Close {
        id: u32,
    },
}

impl ShellRequest {
    pub fn id(&self) -> u32 {
        match self {
            ShellRequest::Open { id, .. }
            | ShellRequest::Resize { id, .. }
            | ShellRequest::Ack { id, .. }
            | ShellRequest::Close { id } => *id,
        }
    }

    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            ShellRequest::Open { size, rep, .. } => {
                size.validate()?;
                check_len("rep", rep, MAX_NAME_CHARS, true)
            }
            ShellRequest::Resize { size, .. } => size.validate(),
            ShellRequest::Ack { .. } | ShellRequest::Close { .. } => Ok(()),
        }
    }
}

/// Why a shell could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellErrorCode {
    /// The customer has not allowed this (or withdrew it).
    NotPermitted,
    /// The customer said no, or cancelled the administrator prompt.
    Declined,
    /// Running as administrator is not possible on this computer.
    ElevationUnavailable,
    /// Another shell is open.
    Busy,
    /// The system could not start it.
    Failed,
}

impl ShellErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ShellErrorCode::NotPermitted => "not_permitted",
            ShellErrorCode::Declined => "declined",
            ShellErrorCode::ElevationUnavailable => "elevation_unavailable",
            ShellErrorCode::Busy => "busy",
            ShellErrorCode::Failed => "failed",
        }
    }
}

/// Who or what closed a shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// The customer pressed "Close it" in the client window.
    Customer,
    /// The representative closed the terminal (or the console went away).
    Representative,
    /// The shell program ended (`exit`).
    Exited,
    /// The customer withdrew the permission.
    Withdrawn,
    /// The session or the link ended.
    Session,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Customer => "customer",
            ClosedBy::Representative => "representative",
            ClosedBy::Exited => "exited",
            ClosedBy::Withdrawn => "withdrawn",
            ClosedBy::Session => "session",
        }
    }
}

/// The agent's answers about shells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShellReply {
    Opened {
        id: u32,
        elevated: bool,
        /// The program that runs, e.g. "/bin/bash".
        program: String,
    },
    Failed {
        id: u32,
        code: ShellErrorCode,
        message: String,
    },
    Closed {
        id: u32,
        by: ClosedBy,
        #[serde(default)]
        exit_code: Option<i32>,
    },
}

impl ShellReply {
    pub fn id(&self) -> u32 {
        match self {
            ShellReply::Opened { id, .. }
            | ShellReply::Failed { id, .. }
            | ShellReply::Closed { id, .. } => *id,
        }
    }

    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            ShellReply::Opened { program, .. } => check_len("program", program, 1024, true),
            ShellReply::Failed { message, .. } => {
                check_len("message", message, MAX_MESSAGE_CHARS, true)
            }
            ShellReply::Closed { .. } => Ok(()),
        }
    }
}

/// The payload of a shell frame: the shell id and the terminal's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellData<'a> {
    pub id: u32,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellDataError {
    #[error("a shell frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("a shell frame carries {0} bytes, more than {MAX_DATA}")]
    TooLarge(usize),
}

impl<'a> ShellData<'a> {
    /// The payload for `data` (the caller keeps `data` within [`MAX_DATA`]).
    pub fn encode(id: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(DATA_HEADER + data.len());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// Reads a payload; never panics.
    pub fn decode(payload: &'a [u8]) -> Result<Self, ShellDataError> {
        let Some((head, data)) = payload.split_first_chunk::<DATA_HEADER>() else {
            return Err(ShellDataError::Short(payload.len()));
        };
        if data.len() > MAX_DATA {
            return Err(ShellDataError::TooLarge(data.len()));
        }
        Ok(ShellData {
            id: u32::from_be_bytes(*head),
            data,
        })
    }
}

/// What the console sends on its shell socket (besides raw input bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConsoleToShell {
    Resize {
        rows: u16,
        cols: u16,
    },
    /// The console has shown the output up to `offset` bytes.
    Ack {
        offset: u64,
    },
    Close,
}

impl ConsoleToShell {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for ConsoleToShell {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            ConsoleToShell::Resize { rows, cols } => TermSize {
                rows: *rows,
                cols: *cols,
            }
            .validate(),
            ConsoleToShell::Ack { .. } | ConsoleToShell::Close => Ok(()),
        }
    }
}

/// What the relay tells the console on its shell socket (besides raw output bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShellToConsole {
    Opened {
        elevated: bool,
        program: String,
    },
    /// The shell could not be opened or may not be used; the socket closes after this.
    Refused {
        /// `policy`, `not_permitted`, `declined`, `elevation_unavailable`, `busy`,
        /// `offline` or `failed`.
        code: String,
        message: String,
    },
    /// The shell ended; the socket closes after this.
    Closed {
        by: ClosedBy,
        exit_code: Option<i32>,
    },
}

impl ShellToConsole {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for ShellToConsole {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            ShellToConsole::Opened { program, .. } => check_len("program", program, 1024, true),
            ShellToConsole::Refused { code, message } => {
                check_len("code", code, 40, false)?;
                check_len("message", message, MAX_MESSAGE_CHARS, true)
            }
            ShellToConsole::Closed { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentToRelay, RelayToAgent};
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_and_keep_their_bounds() {
        let open = RelayToAgent::Shell {
            request: ShellRequest::Open {
                id: 3,
                elevated: false,
                size: TermSize { rows: 24, cols: 80 },
                rep: "Rémi".into(),
            },
        };
        assert_eq!(RelayToAgent::decode(&crate::encode(&open)).unwrap(), open);
        let bad =
            r#"{"type":"shell","request":{"op":"resize","id":1,"size":{"rows":0,"cols":80}}}"#;
        assert!(RelayToAgent::decode(bad).is_err());
        let bad = bad
            .replace("\"rows\":0", "\"rows\":24")
            .replace("80", "1001");
        assert!(RelayToAgent::decode(&bad).is_err());
        let closed =
            r#"{"type":"shell","reply":{"op":"closed","id":1,"by":"customer","exit_code":null}}"#;
        assert!(matches!(
            AgentToRelay::decode(closed),
            Ok(AgentToRelay::Shell {
                reply: ShellReply::Closed {
                    by: ClosedBy::Customer,
                    ..
                }
            })
        ));
        let failed = format!(
            r#"{{"type":"shell","reply":{{"op":"failed","id":1,"code":"declined","message":"{}"}}}}"#,
            "x".repeat(MAX_MESSAGE_CHARS + 1)
        );
        assert!(AgentToRelay::decode(&failed).is_err());
        assert_eq!(
            ConsoleToShell::decode(r#"{"type":"resize","rows":40,"cols":120}"#).unwrap(),
            ConsoleToShell::Resize {
                rows: 40,
                cols: 120
            }
        );
        assert!(ConsoleToShell::decode(r#"{"type":"resize","rows":40,"cols":0}"#).is_err());
    }

    #[test]
    fn data_frames() {
        let p = ShellData::encode(7, b"\xff\x00ls\r");
        let d = ShellData::decode(&p).unwrap();
        assert_eq!((d.id, d.data), (7, &b"\xff\x00ls\r"[..]));
        assert_eq!(ShellData::decode(&[1, 2]), Err(ShellDataError::Short(2)));
        let big = vec![0u8; DATA_HEADER + MAX_DATA + 1];
        assert!(matches!(
            ShellData::decode(&big),
            Err(ShellDataError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn data_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(d) = ShellData::decode(&bytes) {
                prop_assert_eq!(ShellData::encode(d.id, d.data), bytes);
            }
        }

        #[test]
        fn data_round_trips(id in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..2000)) {
            let p = ShellData::encode(id, &data);
            let d = ShellData::decode(&p).unwrap();
            prop_assert_eq!((d.id, d.data), (id, &data[..]));
        }

        #[test]
        fn socket_decoders_never_panic(s in ".{0,400}") {
            let _ = ConsoleToShell::decode(&s);
            let _ = ShellToConsole::decode(&s);
        }

        #[test]
        fn jsonish_never_panics(
            ty in prop::sample::select(vec!["resize","ack","close","opened","refused","closed","shell","x"]),
            op in prop::sample::select(vec!["open","resize","ack","close","opened","failed","closed","x"]),
            body in "[ -~]{0,200}",
        ) {
            let _ = ConsoleToShell::decode(&format!(r#"{{"type":"{ty}",{body}}}"#));
            let _ = ShellToConsole::decode(&format!(r#"{{"type":"{ty}",{body}}}"#));
            let _ = RelayToAgent::decode(&format!(r#"{{"type":"shell","request":{{"op":"{op}",{body}}}}}"#));
            let _ = AgentToRelay::decode(&format!(r#"{{"type":"shell","reply":{{"op":"{op}",{body}}}}}"#));
        }
    }
}
