//! Reading this program's own support ticket.
//!
//! The box appends the ticket to the stock binary at download time (see
//! [`lifeline_proto::ticket`]). We read only the last [`MAX_TICKET_JSON`] + 12 bytes of our
//! own executable, so a large binary costs nothing. For development, `--ticket-file PATH`
//! names a file holding either such a trailer or the raw ticket JSON.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use lifeline_proto::ticket::{MAX_TICKET_JSON, TicketFile, TrailerError, parse_trailer, trailer};

/// Why no usable ticket could be read.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    /// The trailer is missing or damaged (the proto's sentences).
    #[error(transparent)]
    Trailer(#[from] TrailerError),
    #[error(
        "cannot read this program's own file to find its support ticket: download it again from the support portal"
    )]
    OwnExe(#[source] std::io::Error),
    #[error("cannot read the ticket file {path}: check the path")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the ticket appended to the running executable.
pub fn from_current_exe() -> Result<TicketFile, TicketError> {
    let exe = std::env::current_exe().map_err(TicketError::OwnExe)?;
    let tail = read_tail(&exe, (MAX_TICKET_JSON + 12) as u64).map_err(TicketError::OwnExe)?;
    Ok(parse_trailer(&tail)?)
}

/// Reads a ticket from a development file: a trailer (anything ending in `LLTICKET`) or the
/// raw ticket JSON.
pub fn from_file(path: &Path) -> Result<TicketFile, TicketError> {
    let file_err = |source| TicketError::File {
        path: path.to_owned(),
        source,
    };
    let tail = read_tail(path, (MAX_TICKET_JSON + 12) as u64).map_err(file_err)?;
    from_bytes(&tail)
}

/// Parses a trailer or raw ticket JSON, validating it the same way in both cases.
pub fn from_bytes(bytes: &[u8]) -> Result<TicketFile, TicketError> {
    match parse_trailer(bytes) {
        Err(TrailerError::Missing) => {
            // Raw JSON: parse it, then go through the trailer decoder so the proto's
            // validation (lengths, pin format) applies exactly as for a real download.
            let text = std::str::from_utf8(bytes)
                .map_err(|_| TrailerError::Damaged(None))?
                .trim();
            if !text.starts_with('{') {
                return Err(TrailerError::Missing.into());
            }
            let raw: TicketFile =
                serde_json::from_str(text).map_err(|_| TrailerError::Damaged(None))?;
            Ok(parse_trailer(&trailer(&raw))?)
        }
        other => Ok(other?),
    }
}

/// The last `max` bytes of a file (all of it when shorter).
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> TicketFile {
        TicketFile {
            site_url: "https://127.0.0.1:8443".into(),
            cert_sha256: "ab".repeat(32),
            ticket: "payload.sig".into(),
            expires_at: 1_800_000_000_000,
            language: "fr".into(),
            customer_name: "Élodie".into(),
            site_name: "Université".into(),
            kind: Default::default(),
        }
    }

    #[test]
    fn reads_trailer_after_large_binary() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![0u8; 100_000]).unwrap();
        f.write_all(&trailer(&sample())).unwrap();
        assert_eq!(from_file(f.path()).unwrap(), sample());
    }

    #[test]
    fn reads_raw_json_and_validates_it() {
        let json = serde_json::to_string_pretty(&sample()).unwrap();
        assert_eq!(from_bytes(json.as_bytes()).unwrap(), sample());
        let mut bad = sample();
        bad.cert_sha256 = "xyz".into();
        let json = serde_json::to_string(&bad).unwrap();
        let err = from_bytes(json.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn missing_ticket_has_a_sentence() {
        let err = from_bytes(b"\x7fELF nothing here").unwrap_err();
        assert!(err.to_string().contains("download it again"), "{err}");
        let err = from_file(Path::new("/nonexistent/ticket")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ticket"), "{err}");
    }
}
