//! Control messages between an agent (the customer client) and the relay.
//!
//! A session runs like this:
//!
//! 1. agent → [`AgentToRelay::Hello`] with its version and either the signed ticket it was
//!    downloaded with (first connection) or the session id and resume token it was given
//!    (reconnection after a dropped link);
//! 2. relay → [`RelayToAgent::Welcome`] (or [`RelayToAgent::Refused`] and close);
//! 3. agent → [`AgentToRelay::AcceptTerms`] once the customer accepted the terms; only then
//!    does the session appear in a queue; relay → [`RelayToAgent::Queue`] with the position,
//!    again whenever it changes;
//! 4. relay → [`RelayToAgent::RepJoined`] when a representative accepts; chat flows both ways;
//! 5. either side ends: agent → [`AgentToRelay::End`], relay → [`RelayToAgent::Ended`].
//!
//! Messages out of this order (chat before the terms, a second hello) are protocol errors:
//! the relay answers [`RelayToAgent::Error`] and closes the connection.
//!
//! # Remote control
//! While a representative is joined: relay → [`RelayToAgent::PermissionRequest`]; the agent
//! asks the customer and answers [`AgentToRelay::Permission`] (also sent, unasked, when the
//! customer revokes a grant, and again after every reconnection for each grant that stands).
//! With `view` granted the agent reports [`AgentToRelay::Monitors`] and, while the relay says
//! [`RelayToAgent::Stream`] `active`, sends the screen as binary frames
//! ([`crate::screen`]); it sends the next frame only after the relay passed on the
//! console's [`RelayToAgent::FrameAck`] for an earlier one (at most a few frames in flight),
//! so a slow link gets fewer, newer frames instead of a queue of stale ones.
//! [`RelayToAgent::Refresh`] asks for a key frame (a new viewer, or one that fell behind).
//! With `control` granted the relay forwards [`RelayToAgent::Input`].
//!
//! # System information
//! With `system_info` granted: relay → [`RelayToAgent::SystemInfoRequest`], agent →
//! [`AgentToRelay::SystemInfo`] parts (or [`AgentToRelay::SystemInfoFailed`]); ending a
//! process is asked separately ([`RelayToAgent::EndProcess`], answered by
//! [`AgentToRelay::ProcessEnd`]) and the customer agrees to each; see [`crate::tools`].
//!
//! # Command shell
//! With `shell` (or `elevated_shell`) granted: relay → [`RelayToAgent::Shell`] requests,
//! agent → [`AgentToRelay::Shell`] answers, the terminal's bytes in binary frames on the
//! shell channel; see [`crate::shell`].
//!
//! # Installing from a session
//! relay → [`RelayToAgent::Install`] (a jump client or a support button, with its ticket);
//! the customer agrees or not; agent → [`AgentToRelay::Installed`]; see [`crate::install`].
//!
//! The relay measures its round trip to the agent from [`RelayToAgent::Ping`] and the
//! matching [`AgentToRelay::Pong`] (every 20 s, every second while the screen is watched) and
//! shows it to the viewers; an agent answers a ping as soon as it reads it.

use serde::{Deserialize, Serialize};

use crate::remote::{InputEvent, Monitor, Permission, StreamSettings};
use crate::{
    DecodeError, MAX_CHAT_CHARS, MAX_NAME_CHARS, Validate, Version, check_len, decode_json,
};

/// Longest ticket or token string, in bytes.
pub const MAX_TICKET_CHARS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentToRelay {
    Hello {
        version: Version,
        auth: AgentAuth,
        info: AgentInfo,
    },
    AcceptTerms,
    Chat {
        text: String,
    },
    End {
        #[serde(default)]
        reason: String,
    },
    Pong {
        nonce: u64,
    },
    /// The customer's answer to a request, or a revocation (`granted: false`).
    Permission {
        permission: Permission,
        granted: bool,
    },
    /// The desktop's monitors, sent when `view` is granted and whenever they change.
    Monitors {
        monitors: Vec<Monitor>,
    },
    /// Clipboard text copied on the customer's side (with `clipboard` granted).
    Clipboard {
        text: String,
    },
    /// An answer about files ([`crate::files`]).
    File {
        reply: crate::files::FileReply,
    },
    /// One part of the system-information report asked for by `request` (see
    /// [`crate::tools`]); parts come in order from 0, the last one flagged.
    SystemInfo {
        request: u32,
        part: u32,
        last: bool,
        data: String,
    },
    /// The report asked for by `request` cannot be given (not granted, busy, failed).
    SystemInfoFailed {
        request: u32,
        reason: String,
    },
    /// What became of [`RelayToAgent::EndProcess`] `request`.
    ProcessEnd {
        request: u32,
        pid: u32,
        outcome: crate::tools::EndOutcome,
        #[serde(default)]
        message: String,
    },
    /// What became of [`RelayToAgent::Install`] `request`.
    Installed {
        request: u32,
        outcome: crate::install::InstallOutcome,
        #[serde(default)]
        message: String,
    },
    /// An answer about the command shell ([`crate::shell`]).
    Shell {
        reply: crate::shell::ShellReply,
    },
}

/// How an agent proves it may join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentAuth {
    /// The signed ticket appended to the downloaded client (single use).
    Ticket { ticket: String },
    /// Rejoining a session after a dropped link.
    Resume { session_id: String, token: String },
}

/// What the agent tells about the computer it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// The customer's name as typed on the portal or the OS user's full name.
    pub customer_name: String,
    pub computer: String,
    /// e.g. "Linux x86_64 (Debian GNU/Linux 12)".
    pub platform: String,
    /// Language tag the customer reads: "en", "fr" or "de".
    pub language: String,
}

impl AgentToRelay {
    /// Decodes and validates one message from an untrusted agent.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for AgentToRelay {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            AgentToRelay::Hello { auth, info, .. } => {
                match auth {
                    AgentAuth::Ticket { ticket } => {
                        check_len("ticket", ticket, MAX_TICKET_CHARS, false)?
                    }
                    AgentAuth::Resume { session_id, token } => {
                        check_len("session_id", session_id, 64, false)?;
                        check_len("token", token, 128, false)?;
                    }
                }
                check_len("customer_name", &info.customer_name, MAX_NAME_CHARS, true)?;
                check_len("computer", &info.computer, MAX_NAME_CHARS, true)?;
                check_len("platform", &info.platform, MAX_NAME_CHARS, true)?;
                check_len("language", &info.language, 16, true)?;
                Ok(())
            }
            AgentToRelay::Chat { text } => check_len("text", text, MAX_CHAT_CHARS, false),
            AgentToRelay::End { reason } => check_len("reason", reason, 500, true),
            AgentToRelay::Monitors { monitors } => crate::remote::validate_monitors(monitors),
            AgentToRelay::Clipboard { text } => crate::remote::validate_clipboard(text),
            AgentToRelay::File { reply } => reply.validate(),
            AgentToRelay::Shell { reply } => reply.validate(),
            AgentToRelay::SystemInfo { data, .. } => {
                if data.len() > crate::tools::REPORT_CHUNK_BYTES {
                    return Err(DecodeError::FieldTooLong {
                        field: "data",
                        max: crate::tools::REPORT_CHUNK_BYTES,
                    });
                }
                Ok(())
            }
            AgentToRelay::SystemInfoFailed { reason, .. } => check_len("reason", reason, 500, true),
            AgentToRelay::ProcessEnd { message, .. } | AgentToRelay::Installed { message, .. } => {
                check_len("message", message, 500, true)
            }
            AgentToRelay::AcceptTerms
            | AgentToRelay::Pong { .. }
            | AgentToRelay::Permission { .. } => Ok(()),
        }
    }
}

/// Where a session stands, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Connected, the customer has not accepted the terms yet.
    Terms,
    /// In a queue, waiting for a representative.
    Waiting,
    /// A representative has joined.
    Active,
    Ended,
}

/// Who said or did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Customer,
    Rep,
    System,
}

/// Why the relay refused an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    IncompatibleVersion,
    TicketInvalid,
    TicketExpired,
    TicketUsed,
    SessionEnded,
    TooManyAttempts,
    Busy,
}

/// Protocol errors the relay reports before it closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Malformed,
    TooLarge,
    OutOfOrder,
    RateLimited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayToAgent {
    Welcome {
        version: Version,
        session_id: String,
        /// Secret that lets this agent rejoin after a dropped link; keep it in memory only.
        resume_token: String,
        /// The organisation's name as configured on the box.
        site: String,
        state: SessionState,
        /// Set when the session was started for one representative.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rep_name: Option<String>,
    },
    Refused {
        code: RefuseCode,
        message: String,
    },
    /// 1-based position in the queue.
    Queue {
        position: u32,
    },
    RepJoined {
        name: String,
    },
    RepLeft {
        name: String,
    },
    Chat {
        from: Party,
        name: String,
        text: String,
        /// Milliseconds since the Unix epoch.
        at: i64,
    },
    Ended {
        by: Party,
        reason: String,
    },
    Ping {
        nonce: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The representative asks the customer for a permission.
    PermissionRequest {
        permission: Permission,
        /// The representative's display name, for the question the customer sees.
        rep: String,
    },
    /// Whether anyone is watching, and what they want to see.
    Stream {
        active: bool,
        settings: StreamSettings,
    },
    /// Every viewer has received frame `frame` (and all before it).
    FrameAck {
        frame: u32,
    },
    /// Send a key frame next.
    Refresh,
    /// Input from the representative (only forwarded while `control` is granted).
    Input {
        event: InputEvent,
    },
    /// Clipboard text from the representative (only while `clipboard` is granted).
    Clipboard {
        text: String,
    },
    /// A file request from the representative ([`crate::files`]; only while
    /// `file_transfer` is granted).
    File {
        request: crate::files::FileRequest,
    },
    /// Gather the system-information report (only while `system_info` is granted); the
    /// agent answers with [`AgentToRelay::SystemInfo`] parts or
    /// [`AgentToRelay::SystemInfoFailed`] carrying the same `request`.
    SystemInfoRequest {
        request: u32,
    },
    /// End a process (only while `system_info` is granted, and only after the customer
    /// agreed to this very request); answered with [`AgentToRelay::ProcessEnd`].
    EndProcess {
        request: u32,
        pid: u32,
        /// The process's name as the report showed it.
        name: String,
        /// The representative's display name, for the question the customer sees.
        rep: String,
    },
    /// Offer to install a jump client or a support button (see [`crate::install`]);
    /// answered with [`AgentToRelay::Installed`].
    Install {
        request: u32,
        what: crate::install::InstallKind,
        ticket: crate::ticket::TicketFile,
        /// The representative's display name, for the question the customer sees.
        rep: String,
    },
    /// A command-shell request ([`crate::shell`]; `open` only while `shell` or
    /// `elevated_shell` is granted).
    Shell {
        request: crate::shell::ShellRequest,
    },
}

impl RelayToAgent {
    /// Decodes one message from the relay (the agent does not trust it blindly either).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for RelayToAgent {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            RelayToAgent::Welcome {
                session_id,
                resume_token,
                site,
                rep_name,
                ..
            } => {
                check_len("session_id", session_id, 64, false)?;
                check_len("resume_token", resume_token, 128, false)?;
                check_len("site", site, MAX_NAME_CHARS, true)?;
                if let Some(name) = rep_name {
                    check_len("rep_name", name, MAX_NAME_CHARS, true)?;
                }
                Ok(())
            }
            RelayToAgent::Refused { message, .. } | RelayToAgent::Error { message, .. } => {
                check_len("message", message, 1000, true)
            }
            RelayToAgent::RepJoined { name } | RelayToAgent::RepLeft { name } => {
                check_len("name", name, MAX_NAME_CHARS, true)
            }
            RelayToAgent::Chat { name, text, .. } => {
                check_len("name", name, MAX_NAME_CHARS, true)?;
                check_len("text", text, MAX_CHAT_CHARS, false)
            }
            RelayToAgent::Ended { reason, .. } => check_len("reason", reason, 500, true),
            RelayToAgent::PermissionRequest { rep, .. } => {
                check_len("rep", rep, MAX_NAME_CHARS, true)
            }
            RelayToAgent::Input { event } => event.validate(),
            RelayToAgent::EndProcess { name, rep, .. } => {
                check_len("name", name, crate::tools::MAX_PROCESS_NAME_CHARS, false)?;
                check_len("rep", rep, MAX_NAME_CHARS, true)
            }
            RelayToAgent::Install { ticket, rep, .. } => {
                check_len("rep", rep, MAX_NAME_CHARS, true)?;
                ticket.validate()
            }
            RelayToAgent::Clipboard { text } => crate::remote::validate_clipboard(text),
            RelayToAgent::File { request } => request.validate(),
            RelayToAgent::Shell { request } => request.validate(),
            RelayToAgent::Queue { .. }
            | RelayToAgent::Ping { .. }
            | RelayToAgent::Stream { .. }
            | RelayToAgent::FrameAck { .. }
            | RelayToAgent::SystemInfoRequest { .. }
            | RelayToAgent::Refresh => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_CONTROL_MESSAGE, encode};
    use proptest::prelude::*;

    #[test]
    fn hello_round_trip() {
        let hello = AgentToRelay::Hello {
            version: crate::VERSION,
            auth: AgentAuth::Ticket {
                ticket: "abc.def".into(),
            },
            info: AgentInfo {
                customer_name: "Jeanne".into(),
                computer: "pc-17".into(),
                platform: "Linux x86_64".into(),
                language: "fr".into(),
            },
        };
        let text = encode(&hello);
        assert!(text.contains(r#""type":"hello""#));
        assert_eq!(AgentToRelay::decode(&text).unwrap(), hello);
    }

    #[test]
    fn rejects_bad_messages() {
        assert!(matches!(
            AgentToRelay::decode(r#"{"type":"chat","text":"   "}"#),
            Err(DecodeError::FieldEmpty { .. })
        ));
        assert!(matches!(
            AgentToRelay::decode(r#"{"type":"chat","text":"hi","extra":1}"#),
            Err(DecodeError::Malformed(_))
        ));
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(5000));
        assert!(matches!(
            AgentToRelay::decode(&long),
            Err(DecodeError::FieldTooLong { .. })
        ));
        let huge = "x".repeat(MAX_CONTROL_MESSAGE + 1);
        assert!(matches!(
            AgentToRelay::decode(&huge),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(AgentToRelay::decode(r#"{"type":"accept_terms"}"#).is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,2000}") {
            let _ = AgentToRelay::decode(&s);
            let _ = RelayToAgent::decode(&s);
        }

        #[test]
        fn decode_never_panics_on_jsonish(
            ty in prop::sample::select(vec!["hello","chat","end","pong","accept_terms","welcome","queue","system_info","system_info_failed","system_info_request","end_process","process_end","shell","install","installed","x"]),
            body in "[ -~]{0,300}",
        ) {
            let s = format!(r#"{{"type":"{ty}",{body}}}"#);
            let _ = AgentToRelay::decode(&s);
            let _ = RelayToAgent::decode(&s);
        }

        #[test]
        fn chat_round_trips(text in "[^\u{0}]{1,200}") {
            prop_assume!(!text.trim().is_empty());
            let msg = AgentToRelay::Chat { text };
            prop_assert_eq!(AgentToRelay::decode(&encode(&msg)).unwrap(), msg);
        }
    }
}
