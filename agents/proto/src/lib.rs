//! The Lifeline wire protocol, spoken between the box (`lifeline-relay`), the agents
//! (`lifeline-agent`) and the browser console.
//!
//! # Transport
//! Every peer talks to the relay over one WebSocket on TLS (`wss://box/ws/agent` for agents,
//! `wss://box/ws/console` for consoles). Two kinds of WebSocket message are used:
//!
//! * **Control messages** are WebSocket *text* messages holding one JSON object with a
//!   `"type"` tag (see [`agent`] and [`console`]). JSON keeps them readable by the browser
//!   console. A control message is at most [`MAX_CONTROL_MESSAGE`] bytes.
//! * **Bulk data** (screen tiles, file chunks, terminal bytes) goes in WebSocket *binary*
//!   messages that start with the fixed 12-byte [`frame::FrameHeader`], followed by at most
//!   [`MAX_FRAME_PAYLOAD`] bytes. The relay routes binary frames by their header alone and
//!   never looks at their payload.
//!
//! # Versioning
//! The first message of an agent is [`agent::AgentToRelay::Hello`], carrying its
//! [`Version`]. Peers with the same major version interoperate (a minor version only adds
//! optional fields and new message types that an older peer may ignore); a different major
//! version is refused with [`agent::RefuseCode::IncompatibleVersion`] and a sentence a person
//! can act on ("update the client" or "update the box").
//!
//! # Bounds
//! Every length is bounded before anything is allocated for it: control messages by
//! [`MAX_CONTROL_MESSAGE`], chat texts by [`MAX_CHAT_CHARS`], names by [`MAX_NAME_CHARS`],
//! binary payloads by [`MAX_FRAME_PAYLOAD`], and what a deflated screen message inflates to
//! by [`deflate::MAX_INFLATED`]. Decoding never panics on any input; this is
//! checked by property tests over arbitrary bytes.
//!
//! # Modules
//! * [`agent`]: agent ⇄ relay control messages (session, chat, permissions, stream pacing);
//! * [`console`]: relay → console live events (`/ws/console`);
//! * [`viewer`]: the screen viewer's socket (`/ws/view/{session_id}`);
//! * [`remote`]: permissions, monitors, stream settings and input events;
//! * [`frame`]: the binary frame header; [`screen`]: screen and cursor payloads;
//!   [`deflate`]: the screen channel's deflate stream;
//! * [`files`]: file transfer requests, answers and chunks;
//! * [`tools`]: the system-information report;
//! * [`shell`]: the command shell's requests, answers and terminal bytes;
//! * [`jump`]: jump clients' connection, registration and wake-ups;
//! * [`ticket`]: the ticket trailer of a downloaded client.
//!
//! # Limits of this version
//! System information travels in control messages ([`tools`]).
#![forbid(unsafe_code)]

pub mod agent;
pub mod console;
pub mod deflate;
pub mod files;
pub mod frame;
pub mod install;
pub mod jump;
pub mod remote;
pub mod screen;
pub mod shell;
pub mod ticket;
pub mod tools;
pub mod viewer;

use serde::{Deserialize, Serialize};

/// Largest control (JSON text) message any peer may send, in bytes.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Largest payload of one binary frame, in bytes (the header comes on top).
pub const MAX_FRAME_PAYLOAD: usize = 1024 * 1024;
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 4000;
/// Longest name (person, computer, platform), in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// A protocol version. Equal majors interoperate; a newer minor only adds messages, which
/// a peer sends once the other side's version says it knows them (versions order by major,
/// then minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

/// The version this build speaks.
pub const VERSION: Version = Version { major: 1, minor: 1 };

/// Why a peer's version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionMismatch {
    #[error(
        "this client speaks protocol {peer_major}.x but the support box speaks {ours_major}.x: download the client again from the support portal"
    )]
    PeerOlder { peer_major: u16, ours_major: u16 },
    #[error(
        "this client speaks protocol {peer_major}.x, newer than the support box ({ours_major}.x): ask your support team to update the box"
    )]
    PeerNewer { peer_major: u16, ours_major: u16 },
}

impl Version {
    /// Checks that a peer speaking `peer` can talk to us.
    pub fn accepts(&self, peer: Version) -> Result<(), VersionMismatch> {
        use std::cmp::Ordering::*;
        match peer.major.cmp(&self.major) {
            Equal => Ok(()),
            Less => Err(VersionMismatch::PeerOlder {
                peer_major: peer.major,
                ours_major: self.major,
            }),
            Greater => Err(VersionMismatch::PeerNewer {
                peer_major: peer.major,
                ours_major: self.major,
            }),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a control message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is larger than the limit of {MAX_CONTROL_MESSAGE}")]
    TooLarge(usize),
    #[error("message is not valid: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("field `{field}` is longer than {max} characters")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("field `{field}` is empty")]
    FieldEmpty { field: &'static str },
}

/// Parses one bounded JSON control message and validates it.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned + Validate>(
    text: &str,
) -> Result<T, DecodeError> {
    if text.len() > MAX_CONTROL_MESSAGE {
        return Err(DecodeError::TooLarge(text.len()));
    }
    let msg: T = serde_json::from_str(text).map_err(DecodeError::Malformed)?;
    msg.validate()?;
    Ok(msg)
}

/// Field checks that serde cannot express.
pub(crate) trait Validate {
    fn validate(&self) -> Result<(), DecodeError>;
}

/// Checks the length (in characters) of a field; `allow_empty` false also rejects blanks.
pub(crate) fn check_len(
    field: &'static str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), DecodeError> {
    if !allow_empty && value.trim().is_empty() {
        return Err(DecodeError::FieldEmpty { field });
    }
    // Fast path: byte length bounds char count from above.
    if value.len() > max && value.chars().count() > max {
        return Err(DecodeError::FieldTooLong { field, max });
    }
    Ok(())
}

/// Removes control characters other than newline and tab from text a person typed, so a
/// hostile peer cannot smuggle terminal escapes or bidi tricks into transcripts.
pub fn sanitize_text(text: &str) -> String {
    text.chars()
        .filter(|c| {
            *c == '\n'
                || *c == '\t'
                || !(c.is_control()
                    || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        })
        .collect()
}

/// Encodes any control message as JSON text.
pub fn encode<T: Serialize>(msg: &T) -> String {
    // Serialising these plain data types cannot fail.
    serde_json::to_string(msg).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rules() {
        assert!(VERSION.accepts(Version { major: 1, minor: 7 }).is_ok());
        let older = VERSION.accepts(Version { major: 0, minor: 9 }).unwrap_err();
        assert!(older.to_string().contains("download the client again"));
        let newer = VERSION.accepts(Version { major: 2, minor: 0 }).unwrap_err();
        assert!(newer.to_string().contains("update the box"));
    }

    #[test]
    fn sanitize_strips_escapes_keeps_text() {
        assert_eq!(
            sanitize_text("Grüße\u{1b}[31m élève\n\u{202E}x"),
            "Grüße[31m élève\nx"
        );
    }

    #[test]
    fn check_len_counts_chars() {
        assert!(check_len("f", &"é".repeat(10), 10, false).is_ok());
        assert!(check_len("f", &"é".repeat(11), 10, false).is_err());
        assert!(check_len("f", "  ", 10, false).is_err());
        assert!(check_len("f", "", 10, true).is_ok());
    }
}
