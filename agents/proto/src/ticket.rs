//! The ticket trailer the box appends to a stock client binary at download time.
//!
//! ```text
//! [ stock executable ][ ticket JSON (n bytes) ][ n: u32 little-endian ][ "LLTICKET" ]
//! ```
//!
//! Executables ignore bytes after their last section, so the binary runs unchanged and is
//! never rebuilt per download. The JSON is a [`TicketFile`]: where to connect, the SHA-256 pin
//! of the box's certificate, and the opaque `ticket` string signed by the box, which the
//! relay verifies (signature, expiry, single use) when the agent presents it.

use serde::{Deserialize, Serialize};

use crate::{DecodeError, Validate, check_len};

pub const TRAILER_MAGIC: &[u8; 8] = b"LLTICKET";
/// Largest ticket JSON accepted in a trailer.
pub const MAX_TICKET_JSON: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketFile {
    /// e.g. `https://support.example.org:443`.
    pub site_url: String,
    /// Lower-case hex SHA-256 of the box's TLS certificate (DER).
    pub cert_sha256: String,
    /// Signed, single-use ticket; opaque to the agent.
    pub ticket: String,
    /// Milliseconds since the Unix epoch after which the ticket cannot start a session.
    pub expires_at: i64,
    /// Language the customer chose on the portal ("en", "fr", "de").
    #[serde(default)]
    pub language: String,
    /// The name the customer typed on the portal, if any.
    #[serde(default)]
    pub customer_name: String,
    /// The organisation's name, shown in the client's title.
    #[serde(default)]
    pub site_name: String,
    /// What the program does with the ticket.
    #[serde(default, skip_serializing_if = "TicketKind::is_one_shot")]
    pub kind: TicketKind,
}

/// What a ticket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    /// `ticket` starts one support session (the portal's download).
    #[default]
    OneShot,
    /// `ticket` is a deployment key: the program installs itself as a jump client
    /// (see [`crate::jump`]).
    JumpInstall,
    /// `ticket` is a support button's token: each start asks the box for a session in the
    /// button's queue.
    Button,
}

impl TicketKind {
    pub fn is_one_shot(&self) -> bool {
        *self == TicketKind::OneShot
    }
}

impl Validate for TicketFile {
    fn validate(&self) -> Result<(), DecodeError> {
        check_len("site_url", &self.site_url, 512, false)?;
        check_len("cert_sha256", &self.cert_sha256, 64, false)?;
        check_len(
            "ticket",
            &self.ticket,
            crate::agent::MAX_TICKET_CHARS,
            false,
        )?;
        check_len("language", &self.language, 16, true)?;
        check_len(
            "customer_name",
            &self.customer_name,
            crate::MAX_NAME_CHARS,
            true,
        )?;
        check_len("site_name", &self.site_name, crate::MAX_NAME_CHARS, true)?;
        if self.cert_sha256.len() != 64 || !self.cert_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(DecodeError::FieldEmpty {
                field: "cert_sha256",
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrailerError {
    #[error("this program carries no support ticket: download it again from the support portal")]
    Missing,
    #[error(
        "the support ticket in this program is damaged: download it again from the support portal"
    )]
    Damaged(#[source] Option<DecodeError>),
}

impl TicketFile {
    /// A ticket file received as JSON (e.g. a support button's answer), checked like a trailer.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        crate::decode_json(text)
    }
}

/// The bytes to append to a stock binary to carry `ticket`.
pub fn trailer(ticket: &TicketFile) -> Vec<u8> {
    let json = crate::encode(ticket).into_bytes();
    let mut out = Vec::with_capacity(json.len() + 12);
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    out
}

/// Reads the ticket from the end of a file's bytes (`tail` may be just the last
/// [`MAX_TICKET_JSON`] + 12 bytes). Never panics.
pub fn parse_trailer(tail: &[u8]) -> Result<TicketFile, TrailerError> {
    let n = tail.len();
    if n < 12 || &tail[n - 8..] != TRAILER_MAGIC {
        return Err(TrailerError::Missing);
    }
    let len = u32::from_le_bytes([tail[n - 12], tail[n - 11], tail[n - 10], tail[n - 9]]) as usize;
    if len > MAX_TICKET_JSON || len > n - 12 {
        return Err(TrailerError::Damaged(None));
    }
    let json = std::str::from_utf8(&tail[n - 12 - len..n - 12])
        .map_err(|_| TrailerError::Damaged(None))?;
    crate::decode_json(json).map_err(|e| TrailerError::Damaged(Some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> TicketFile {
        TicketFile {
            site_url: "https://127.0.0.1:8443".into(),
            cert_sha256: "ab".repeat(32),
            ticket: "payload.sig".into(),
            expires_at: 1_800_000_000_000,
            language: "de".into(),
            customer_name: "Jörg".into(),
            site_name: "Example University".into(),
            kind: TicketKind::OneShot,
        }
    }

    #[test]
    fn round_trip_after_binary() {
        let mut file = b"\x7fELF fake binary".to_vec();
        file.extend(trailer(&sample()));
        assert_eq!(parse_trailer(&file).unwrap(), sample());
        // A one-shot ticket is written as before (no `kind`); other kinds round-trip.
        assert!(!crate::encode(&sample()).contains("kind"));
        let button = TicketFile {
            kind: TicketKind::Button,
            ..sample()
        };
        let mut file2 = b"\x7fELF".to_vec();
        file2.extend(trailer(&button));
        assert_eq!(parse_trailer(&file2).unwrap().kind, TicketKind::Button);
        assert!(matches!(
            parse_trailer(b"\x7fELF"),
            Err(TrailerError::Missing)
        ));
        let mut bad = file.clone();
        bad[b"\x7fELF fake binary".len()] = b'x';
        assert!(matches!(parse_trailer(&bad), Err(TrailerError::Damaged(_))));
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
            if magic { bytes.extend_from_slice(TRAILER_MAGIC); }
            let _ = parse_trailer(&bytes);
        }
    }
}
