//! Jump clients: agents installed as a service so a representative can reach a computer
//! without anyone at it, in two modes.
//!
//! * **Active**: a persistent `wss://box/ws/jump` connection. The relay sends a WebSocket
//!   ping every [`RelayToJump::Welcome`] `heartbeat_s` seconds (short enough for proxies'
//!   idle time-outs) and the client answers (pong); a client that heard nothing from the
//!   relay for a whole heartbeat pings itself. Either side drops a link silent for three
//!   heartbeats; the client reconnects with exponential back-off and jitter.
//! * **Passive**: the client checks in (connects, proves who it is, reports its facts, leaves)
//!   at boot and once a day, and otherwise holds no connection. It listens on a local TCP port
//!   for a [`Wake`] signed by the box and then connects like an active client.
//!
//! # Identity
//! At installation the client makes an ed25519 key pair and registers its public key with a
//! deployment key (`POST /api/v1/jump/register`, [`Registration`]); the box records the client
//! with that key, so nobody else can speak for it. On every connection the relay first sends
//! [`RelayToJump::Challenge`]; the client answers [`JumpToRelay::Hello`] with a signature over
//! [`auth_message`], which binds the nonce, its id and the pin of the certificate it verified
//! (a box with another certificate cannot relay the challenge).
//!
//! # Who is logged in
//! The hello names the user at the desktop; while the link is up the client tells the box
//! when that changes ([`JumpToRelay::LoggedInUser`], only to a box of protocol
//! [`LOGGED_IN_USER_SINCE`] or newer, which the relay's welcome names), so the console's
//! list stays true between connections.
//!
//! # Sessions
//! When a representative jumps, the relay sends [`RelayToJump::StartSession`] with a one-time
//! session ticket; the client starts a session agent with it (the same program, connecting to
//! `/ws/agent` like a one-shot client) in the logged-in user's desktop. With `prompt` set the
//! agent first asks that user, and the session only starts when the user allows it.
//!
//! # Limits
//! The relay admits a bounded number of (re)connections per second (a storm after an outage
//! is smoothed: refused clients get `retry_after_s`), and as many active and passive clients
//! as the licence allows; a client beyond the limit is told why and retries later.

use serde::{Deserialize, Serialize};

use crate::ticket::TicketFile;
use crate::{DecodeError, MAX_NAME_CHARS, Validate, Version, check_len, decode_json};

/// Longest comment on a jump client, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;
/// What the first line of a wake-up may weigh, in bytes.
pub const MAX_WAKE_BYTES: usize = 2048;
/// The first protocol version whose relay hears [`JumpToRelay::LoggedInUser`].
pub const LOGGED_IN_USER_SINCE: Version = Version { major: 1, minor: 1 };

/// How a jump client stays reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JumpMode {
    Active,
    Passive,
}

impl JumpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            JumpMode::Active => "active",
            JumpMode::Passive => "passive",
        }
    }
}

/// Why the client connects now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// An active client's persistent link.
    Stay,
    /// A passive client's check-in: facts, then goodbye.
    CheckIn,
    /// A passive client answering a wake-up (the relay then sends `StartSession`).
    Woken,
}

/// What a jump client tells about its computer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpInfo {
    pub computer: String,
    /// e.g. "Linux x86_64 (Debian GNU/Linux 12 (bookworm))".
    pub platform: String,
    /// The user logged in at the desktop, if any.
    #[serde(default)]
    pub logged_in_user: String,
    /// The client's program version.
    pub agent_version: String,
}

impl JumpInfo {
    fn validate(&self) -> Result<(), DecodeError> {
        check_len("computer", &self.computer, MAX_NAME_CHARS, true)?;
        check_len("platform", &self.platform, MAX_NAME_CHARS, true)?;
        check_len("logged_in_user", &self.logged_in_user, MAX_NAME_CHARS, true)?;
        check_len("agent_version", &self.agent_version, 40, true)
    }
}

/// The text a client signs to prove its identity (see the module docs).
pub fn auth_message(client_id: &str, nonce: &str, cert_sha256: &str) -> Vec<u8> {
    format!("lifeline-jump-auth-v1\n{client_id}\n{nonce}\n{cert_sha256}\n").into_bytes()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JumpToRelay {
    Hello {
        version: Version,
        client_id: String,
        purpose: Purpose,
        info: JumpInfo,
        /// Base64 ed25519 signature over [`auth_message`].
        signature: String,
    },
    /// The session agent for a `StartSession` could not start (no desktop, the user
    /// declined, ...); `reason` is a sentence for the representative.
    SessionFailed { request_id: String, reason: String },
    /// The client removed itself after `Uninstall`.
    Uninstalled,
    /// The user logged in at the desktop changed since the hello (empty: nobody now).
    LoggedInUser { user: String },
}

impl JumpToRelay {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for JumpToRelay {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            JumpToRelay::Hello {
                client_id,
                info,
                signature,
                ..
            } => {
                check_len("client_id", client_id, 64, false)?;
                check_len("signature", signature, 128, false)?;
                info.validate()
            }
            JumpToRelay::SessionFailed { request_id, reason } => {
                check_len("request_id", request_id, 64, false)?;
                check_len("reason", reason, 500, true)
            }
            JumpToRelay::Uninstalled => Ok(()),
            JumpToRelay::LoggedInUser { user } => check_len("user", user, MAX_NAME_CHARS, true),
        }
    }
}

/// Why the relay turned a jump client away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JumpRefuseCode {
    IncompatibleVersion,
    /// No such client, or the signature does not match its key.
    NotRecognised,
    /// An administrator removed this client.
    Removed,
    /// The licence's limit for this mode is reached.
    LicenceLimit,
    /// Too many connections right now.
    RateLimited,
    Busy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayToJump {
    /// The first message on every connection.
    Challenge { nonce: String },
    Welcome {
        version: Version,
        /// Seconds between the relay's WebSocket pings.
        heartbeat_s: u32,
        /// For passive clients: seconds until the next check-in.
        next_check_in_s: u32,
        /// The name the box shows for this client (an administrator may rename it).
        name: String,
    },
    Refused {
        code: JumpRefuseCode,
        message: String,
        /// When to try again, if at all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u32>,
    },
    /// Start a session agent with this ticket.
    StartSession {
        request_id: String,
        ticket: TicketFile,
        /// The representative's display name, for the user's question and the window.
        rep: String,
        /// Ask the logged-in user first (policy does not allow unattended access).
        prompt: bool,
    },
    /// Remove the service and the client's files, answer `Uninstalled`, and stop.
    Uninstall,
}

impl RelayToJump {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for RelayToJump {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            RelayToJump::Challenge { nonce } => check_len("nonce", nonce, 128, false),
            RelayToJump::Welcome { name, .. } => check_len("name", name, MAX_NAME_CHARS, true),
            RelayToJump::Refused { message, .. } => check_len("message", message, 1000, true),
            RelayToJump::StartSession {
                request_id,
                ticket,
                rep,
                ..
            } => {
                check_len("request_id", request_id, 64, false)?;
                check_len("rep", rep, MAX_NAME_CHARS, true)?;
                ticket.validate()
            }
            RelayToJump::Uninstall => Ok(()),
        }
    }
}

/// `POST /api/v1/jump/register` (unauthenticated; the deployment key authorises it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub deploy_key: String,
    /// Base64 ed25519 public key (32 bytes).
    pub public_key: String,
    pub mode: JumpMode,
    pub info: JumpInfo,
    /// For passive clients: the TCP port it listens on for wake-ups.
    #[serde(default)]
    pub wake_port: Option<u16>,
}

impl Registration {
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode_json(text)
    }
}

impl Validate for Registration {
    fn validate(&self) -> Result<(), DecodeError> {
        check_len("deploy_key", &self.deploy_key, 128, false)?;
        check_len("public_key", &self.public_key, 64, false)?;
        self.info.validate()
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub client_id: String,
    pub name: String,
    /// Base64 ed25519 public key wake-ups are signed with.
    pub wake_public_key: String,
    pub heartbeat_s: u32,
    /// The mode the deployment key gave this client (the installer does not know it before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<JumpMode>,
}

/// A wake-up for a passive client. On the wire (plain TCP to the client's wake port) it is
/// one line: `LLWAKE1 <base64 payload JSON> <base64 ed25519 signature of the payload>\n`.
/// The client accepts it only when the signature verifies with the box's wake key, the id is
/// its own, `issued_at` is within a few minutes of its clock, and it has not seen the nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wake {
    pub client_id: String,
    /// Milliseconds since the Unix epoch.
    pub issued_at: i64,
    pub nonce: String,
}

pub const WAKE_PREFIX: &str = "LLWAKE1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    #[error("the wake-up is not a LLWAKE1 line")]
    NotAWake,
    #[error("the wake-up line is longer than the limit")]
    TooLong,
    #[error("the wake-up is not valid base64 or JSON")]
    Malformed,
}

/// A wake-up line split into the payload bytes (to verify) and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeLine {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub wake: Wake,
}

/// Builds a wake-up line from the payload and its signature.
pub fn wake_line(payload_json: &[u8], signature: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "{WAKE_PREFIX} {} {}\n",
        b64.encode(payload_json),
        b64.encode(signature)
    )
}

/// Parses a wake-up line (without checking the signature); never panics.
pub fn parse_wake_line(line: &[u8]) -> Result<WakeLine, WakeError> {
    use base64::Engine as _;
    if line.len() > MAX_WAKE_BYTES {
        return Err(WakeError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| WakeError::NotAWake)?;
    let mut parts = text.trim_end_matches(['\r', '\n']).split(' ');
    if parts.next() != Some(WAKE_PREFIX) {
        return Err(WakeError::NotAWake);
    }
    let (Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(WakeError::Malformed);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(p).map_err(|_| WakeError::Malformed)?;
    let signature = b64.decode(s).map_err(|_| WakeError::Malformed)?;
    let wake: Wake = serde_json::from_slice(&payload).map_err(|_| WakeError::Malformed)?;
    if wake.client_id.len() > 64 || wake.nonce.len() > 128 || signature.len() != 64 {
        return Err(WakeError::Malformed);
    }
    Ok(WakeLine {
        payload,
        signature,
        wake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_and_challenge_shapes() {
        let c = RelayToJump::Challenge { nonce: "n1".into() };
        assert_eq!(crate::encode(&c), r#"{"type":"challenge","nonce":"n1"}"#);
        let h = JumpToRelay::Hello {
            version: crate::VERSION,
            client_id: "jc_1".into(),
            purpose: Purpose::Stay,
            info: JumpInfo {
                computer: "pc".into(),
                platform: "Linux".into(),
                logged_in_user: String::new(),
                agent_version: "0.1.0".into(),
            },
            signature: "c2ln".into(),
        };
        assert_eq!(JumpToRelay::decode(&crate::encode(&h)).unwrap(), h);
        let u = JumpToRelay::LoggedInUser {
            user: "zoë".into()
        };
        assert_eq!(
            crate::encode(&u),
            r#"{"type":"logged_in_user","user":"zoë"}"#
        );
        assert_eq!(JumpToRelay::decode(&crate::encode(&u)).unwrap(), u);
        let long = format!(
            r#"{{"type":"logged_in_user","user":"{}"}}"#,
            "u".repeat(121)
        );
        assert!(JumpToRelay::decode(&long).is_err());
        assert_eq!(
            auth_message("jc_1", "n1", "ab"),
            b"lifeline-jump-auth-v1\njc_1\nn1\nab\n"
        );
    }

    #[test]
    fn wake_lines() {
        let wake = Wake {
            client_id: "jc_1".into(),
            issued_at: 5,
            nonce: "abc".into(),
        };
        let payload = serde_json::to_vec(&wake).unwrap();
        let line = wake_line(&payload, &[7u8; 64]);
        let parsed = parse_wake_line(line.as_bytes()).unwrap();
        assert_eq!(parsed.wake, wake);
        assert_eq!(parsed.payload, payload);
        assert_eq!(parsed.signature, [7u8; 64]);
        assert_eq!(
            parse_wake_line(b"GET / HTTP/1.1\r\n"),
            Err(WakeError::NotAWake)
        );
        assert_eq!(parse_wake_line(b"LLWAKE1 a"), Err(WakeError::Malformed));
        assert_eq!(
            parse_wake_line(&vec![b'x'; MAX_WAKE_BYTES + 1]),
            Err(WakeError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(s in ".{0,400}") {
            let _ = JumpToRelay::decode(&s);
            let _ = RelayToJump::decode(&s);
            let _ = Registration::decode(&s);
            let _ = parse_wake_line(s.as_bytes());
        }

        #[test]
        fn wake_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut line = b"LLWAKE1 ".to_vec();
            line.extend_from_slice(&b);
            let _ = parse_wake_line(&line);
            let _ = parse_wake_line(&b);
        }
    }
}
