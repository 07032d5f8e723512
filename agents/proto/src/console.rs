//! Events the relay pushes to a representative's console over `/ws/console`.
//!
//! The console acts through the REST API (`/api/v1/...`); this socket only carries what
//! changes live: a snapshot of the queues the representative may see on connect, then
//! incremental upserts and removals, chat lines and session ends for the sessions the
//! representative has joined.

use serde::{Deserialize, Serialize};

use crate::agent::{Party, SessionState};
use crate::remote::{GrantState, Permission};
use crate::{
    DecodeError, MAX_CHAT_CHARS, MAX_NAME_CHARS, Validate, Version, check_len, decode_json,
};

/// Which queue a session waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The queue of one representative.
    Personal,
    /// The queue every representative sees.
    General,
    /// The queue of a team: its members see it (the team is [`QueueEntry::team`]).
    Team,
}

/// One session as a representative's console lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub session_id: String,
    pub queue: QueueKind,
    /// For personal queues, the representative who owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// For team queues, the team's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub customer_name: String,
    pub computer: String,
    pub platform: String,
    pub state: SessionState,
    /// When the customer entered the queue, milliseconds since the Unix epoch.
    pub waiting_since: i64,
    /// The representative who accepted it, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayToConsole {
    Hello {
        version: Version,
        username: String,
        display_name: String,
    },
    /// Everything visible right now; replaces what the console had.
    Snapshot { entries: Vec<QueueEntry> },
    /// A session appeared or changed.
    Upsert { entry: QueueEntry },
    /// A session left every queue the console sees.
    Remove { session_id: String },
    Chat {
        session_id: String,
        from: Party,
        name: String,
        text: String,
        at: i64,
    },
    /// The customer's link dropped (`online: false`) or came back.
    Presence { session_id: String, online: bool },
    Ended {
        session_id: String,
        by: Party,
        reason: String,
    },
    /// A permission was asked for, granted, denied or revoked.
    Permission {
        session_id: String,
        permission: Permission,
        state: GrantState,
    },
}

impl RelayToConsole {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for RelayToConsole {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            RelayToConsole::Chat { name, text, .. } => {
                check_len("name", name, MAX_NAME_CHARS, true)?;
                check_len("text", text, MAX_CHAT_CHARS, false)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn upsert_shape() {
        let e = RelayToConsole::Upsert {
            entry: QueueEntry {
                session_id: "s1".into(),
                queue: QueueKind::General,
                owner: None,
                team: None,
                customer_name: "Ana".into(),
                computer: "pc".into(),
                platform: "Linux".into(),
                state: SessionState::Waiting,
                waiting_since: 1,
                accepted_by: None,
            },
        };
        let t = crate::encode(&e);
        assert!(t.starts_with(r#"{"type":"upsert","entry":{"session_id":"s1","queue":"general""#));
        assert_eq!(RelayToConsole::decode(&t).unwrap(), e);
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,1000}") {
            let _ = RelayToConsole::decode(&s);
        }
    }
}
