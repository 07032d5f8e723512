//! The viewer socket `wss://box/ws/view/{session_id}`: one per open screen view in a
//! representative's console.
//!
//! Authenticated like `/ws/console` (login cookie with an Origin check, or a bearer token);
//! only the representative who accepted the session (or an admin) may open it.
//!
//! * relay → viewer: [`RelayToViewer`] as JSON text, and the agent's binary screen and
//!   cursor frames ([`crate::frame`], [`crate::screen`]) passed on unchanged. The relay
//!   queues a bounded number of frames per viewer; when a viewer falls behind it drops the
//!   queued screen frames and asks the agent for a key frame, and it never drops a text
//!   message.
//! * viewer → relay: [`ViewerToRelay`] as JSON text. Input and clipboard are forwarded to
//!   the agent only while the customer's grant stands; anything else is refused with
//!   [`RelayToViewer::Error`] (the socket stays open), and malformed messages close it.
//!
//! The viewer acknowledges every frame it has drawn with [`ViewerToRelay::Ack`]; the relay
//! passes the lowest acknowledgement of all viewers of a session to the agent, which paces
//! its frames by it.
//!
//! [`ViewerToRelay::Ping`] is answered at once with [`RelayToViewer::Pong`], which also
//! carries the relay's last measured round trip to the agent, so a console can show the
//! whole round trip console ⇄ relay ⇄ customer (its own ping time plus `agent_rtt_ms`).

use serde::{Deserialize, Serialize};

use crate::remote::{GrantState, InputEvent, Monitor, Permission, StreamSettings};
use crate::{DecodeError, Validate, Version, decode_json};

/// One permission and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub permission: Permission,
    pub state: GrantState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ViewerToRelay {
    Input {
        event: InputEvent,
    },
    Clipboard {
        text: String,
    },
    /// Choose a monitor or quality; applies to every viewer of the session.
    Stream {
        settings: StreamSettings,
    },
    /// Frame `frame` has been drawn.
    Ack {
        frame: u32,
    },
    /// Ask for a key frame (after a resize of the view, or a decoding error).
    Refresh,
    /// Measures the round trip; answered with [`RelayToViewer::Pong`] with the same nonce.
    Ping {
        nonce: u64,
    },
}

impl ViewerToRelay {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for ViewerToRelay {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            ViewerToRelay::Input { event } => event.validate(),
            ViewerToRelay::Clipboard { text } => crate::remote::validate_clipboard(text),
            ViewerToRelay::Stream { .. }
            | ViewerToRelay::Ack { .. }
            | ViewerToRelay::Refresh
            | ViewerToRelay::Ping { .. } => Ok(()),
        }
    }
}

/// Why the relay refused a viewer's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewerErrorCode {
    /// The customer has not granted what this needs.
    NotPermitted,
    /// Too many messages.
    RateLimited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayToViewer {
    Hello {
        version: Version,
        session_id: String,
        /// Every permission that was asked for in this session, with its state.
        grants: Vec<Grant>,
        monitors: Vec<Monitor>,
        settings: StreamSettings,
        /// Whether the customer's client is connected right now.
        agent_online: bool,
    },
    Permission {
        permission: Permission,
        state: GrantState,
    },
    Monitors {
        monitors: Vec<Monitor>,
    },
    /// The stream settings changed (another viewer chose a monitor, say).
    Stream {
        settings: StreamSettings,
    },
    Clipboard {
        text: String,
    },
    /// The customer's client dropped its link (`false`) or came back.
    Presence {
        online: bool,
    },
    Error {
        code: ViewerErrorCode,
        message: String,
    },
    /// The session is over; the relay closes the socket after this.
    Ended {
        reason: String,
    },
    /// The answer to [`ViewerToRelay::Ping`].
    Pong {
        nonce: u64,
        /// The relay's last measured round trip to the customer's client, in milliseconds;
        /// `null` while none was measured (or the client is offline).
        agent_rtt_ms: Option<u32>,
    },
}

impl RelayToViewer {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for RelayToViewer {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            RelayToViewer::Hello { monitors, .. } | RelayToViewer::Monitors { monitors } => {
                crate::remote::validate_monitors(monitors)
            }
            RelayToViewer::Clipboard { text } => crate::remote::validate_clipboard(text),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn viewer_messages() {
        let m = ViewerToRelay::decode(r#"{"type":"ack","frame":9}"#).unwrap();
        assert_eq!(m, ViewerToRelay::Ack { frame: 9 });
        let m = ViewerToRelay::decode(
            r#"{"type":"input","event":{"kind":"key","keysym":65027,"down":true}}"#,
        )
        .unwrap();
        assert!(matches!(m, ViewerToRelay::Input { .. }));
        let m =
            ViewerToRelay::decode(r#"{"type":"stream","settings":{"monitor":1,"quality":"low"}}"#)
                .unwrap();
        assert!(matches!(m, ViewerToRelay::Stream { .. }));
        let big = format!(
            r#"{{"type":"clipboard","text":"{}"}}"#,
            "x".repeat(crate::remote::MAX_CLIPBOARD_BYTES + 1)
        );
        assert!(ViewerToRelay::decode(&big).is_err());
        assert!(
            ViewerToRelay::decode(
                r#"{"type":"input","event":{"kind":"pointer","x":99999999,"y":0,"buttons":0}}"#
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,600}") {
            let _ = ViewerToRelay::decode(&s);
            let _ = RelayToViewer::decode(&s);
        }

        #[test]
        fn decode_never_panics_on_jsonish(
            ty in prop::sample::select(vec!["input","clipboard","stream","ack","refresh","ping","pong","hello","x"]),
            body in "[ -~]{0,200}",
        ) {
            let s = format!(r#"{{"type":"{ty}",{body}}}"#);
            let _ = ViewerToRelay::decode(&s);
            let _ = RelayToViewer::decode(&s);
        }
    }
}
