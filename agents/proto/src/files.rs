//! File transfer between the representative and the customer's computer (issue 7).
//!
//! # Who says what
//! The relay speaks for the representative: [`FileRequest`]s go to the agent inside
//! [`crate::agent::RelayToAgent::File`], and the agent answers with [`FileReply`]s inside
//! [`crate::agent::AgentToRelay::File`]. File bytes go in binary frames on
//! [`crate::frame::Channel::File`], whose payload is a [`Chunk`]: a 12-byte chunk header
//! (transfer id, byte offset) followed by at most [`MAX_CHUNK`] bytes of the file.
//!
//! # Paths
//! Paths on the wire are relative to the folder the customer shares (their home folder, or
//! the one folder they limited the transfer to when they allowed it): components joined by `/`, never absolute,
//! never `.` or `..`, no NUL, at most [`MAX_PATH_BYTES`] bytes ([`check_path`]). The agent
//! resolves them again itself and is the authority (symbolic links, devices and anything
//! but regular files and folders are refused there).
//!
//! # Transfers
//! * **Download** (customer → representative): [`FileRequest::Download`] names a file and
//!   the offset to start at; the agent answers [`FileReply::Ready`] with the file's size and
//!   SHA-256 (computed before the first byte is sent) and sends chunks in order. It keeps at
//!   most [`WINDOW`] bytes beyond the last [`FileRequest::Ack`]ed offset in flight, so file
//!   bytes never queue up in front of the screen. A link lost mid-way is resumed by asking
//!   again with the offset that arrived.
//! * **Upload** (representative → customer): [`FileRequest::Upload`] announces name, size
//!   and SHA-256; the agent writes into a `.part` file named after the content's hash (so a
//!   resumed upload only ever continues the same content) and answers [`FileReply::Ready`]
//!   with the offset it already holds. The relay then sends chunks from that offset; the
//!   agent acknowledges what it wrote with [`FileReply::Progress`] (the same window rule
//!   applies). After the last byte the agent checks the whole `.part` file's SHA-256 and only
//!   then gives it its final name ([`FileReply::Done`]). An existing file is replaced only
//!   when the request says `overwrite` (the representative confirmed it).
//!
//! # The shared folder
//! When the customer allows file transfer the agent says which folder it shares with
//! [`FileReply::Shared`] (sent before the permission answer): `limited` when the customer
//! chose "only one folder", and the folder's *last component* only (its full path is the
//! customer's business; the representative sees that name as the root of the panel anyway).
//! Every [`FileReply::Listing`] also carries that name as `root`.
//!
//! # Folders
//! A whole folder travels as what it is made of: the representative's console lists it
//! (one [`FileRequest::List`] per folder), then downloads or uploads each file with the
//! rules above (so each file is SHA-256-verified end to end and recorded on its own) and
//! makes each folder with [`FileRequest::MakeDir`]. Links and other entries inside are
//! listed as [`EntryKind::Other`] and never followed.
//!
//! Every transfer has an id chosen by the relay, unique in its session. A
//! [`FileReply::Failed`] ends a transfer (or answers a listing) with a [`FileErrorCode`] and a
//! sentence.
//!
//! # Limits
//! Listings carry at most [`MAX_ENTRIES`] entries, and no more than fit one control message
//! (the agent stops early and says `truncated`).
//! The customer's own "send a file" starts as a [`FileReply::Offer`]; its bytes follow the
//! download rules with the offer's id.

use serde::{Deserialize, Serialize};

use crate::{DecodeError, check_len};

/// Largest file bytes in one chunk.
pub const MAX_CHUNK: usize = 256 * 1024;
/// Bytes a sender may have in flight beyond the receiver's last acknowledgement.
pub const WINDOW: u64 = 8 * MAX_CHUNK as u64;
/// Length of the chunk header inside a file frame's payload.
pub const CHUNK_HEADER: usize = 12;
/// Longest path on the wire, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most entries in one listing.
pub const MAX_ENTRIES: usize = 400;
/// Longest single name (one path component), in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// What the relay asks of the agent for the representative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileRequest {
    /// List a folder (`""` is the shared folder itself).
    List { id: u32, path: String },
    /// Send a file from `offset` on.
    Download { id: u32, path: String, offset: u64 },
    /// Receive a file into `path`.
    Upload {
        id: u32,
        path: String,
        size: u64,
        /// Lower-case hex SHA-256 of the whole file.
        sha256: String,
        /// The representative confirmed replacing an existing file.
        #[serde(default)]
        overwrite: bool,
    },
    /// Make a folder (uploading a folder makes its folders first).
    MakeDir { id: u32, path: String },
    /// Every byte up to `offset` of download `id` arrived.
    Ack { id: u32, offset: u64 },
    /// Stop transfer `id` (a `.part` file stays for a later resume).
    Cancel { id: u32 },
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// Bytes (0 for folders and others).
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link, device, socket or pipe: shown, never opened.
    Other,
}

/// Why a file operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileErrorCode {
    /// The customer has not allowed file transfer (or withdrew it).
    NotPermitted,
    /// The path leaves the shared folder, or is not a valid path.
    OutsideRoot,
    /// A symbolic link, device, pipe or socket was in the way.
    NotRegular,
    NotFound,
    /// The target exists and `overwrite` was not confirmed.
    Exists,
    /// The received bytes do not have the announced SHA-256.
    HashMismatch,
    /// More bytes than announced, a chunk at the wrong offset, or an unknown id.
    Protocol,
    /// The file is larger than allowed.
    TooLarge,
    /// Any other I/O error (disk full, no access...).
    Io,
    Cancelled,
}

/// The agent's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileReply {
    Listing {
        id: u32,
        path: String,
        entries: Vec<Entry>,
        #[serde(default)]
        truncated: bool,
        /// The shared folder's name (its last component; `""` when unknown).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        root: String,
    },
    /// A transfer may start: for a download, chunks follow from `offset`; for an upload,
    /// the agent already holds `offset` bytes.
    Ready {
        id: u32,
        size: u64,
        sha256: String,
        offset: u64,
    },
    /// Upload `id`: every byte up to `offset` is written.
    Progress { id: u32, offset: u64 },
    /// Upload `id` is verified and has its final name; or the folder was made.
    Done { id: u32, size: u64, sha256: String },
    Failed {
        id: u32,
        code: FileErrorCode,
        message: String,
    },
    /// The customer sends a file from the client window (id from the agent's own range,
    /// at or above [`AGENT_IDS`]); download rules apply.
    Offer {
        id: u32,
        name: String,
        size: u64,
        sha256: String,
    },
    /// File transfer was allowed for this folder (its last component): the home folder, or
    /// (`limited`) the one folder the customer chose. Not tied to a transfer: its id is 0.
    Shared { limited: bool, folder: String },
}

/// Transfer ids at or above this are chosen by the agent (customer offers).
pub const AGENT_IDS: u32 = 0x8000_0000;

/// Checks a wire path: relative, `/`-separated, no `.`/`..`/empty components, no NUL or
/// backslash, bounded. `""` (the shared folder) is valid.
pub fn check_path(path: &str) -> Result<(), DecodeError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(DecodeError::FieldTooLong {
            field: "path",
            max: MAX_PATH_BYTES,
        });
    }
    if path.is_empty() {
        return Ok(());
    }
    for part in path.split('/') {
        if part.is_empty()
            || part == "."
            || part == ".."
            || part.len() > MAX_NAME_BYTES
            || part
                .chars()
                .any(|c| c == '\0' || c == '\\' || c.is_control())
        {
            return Err(DecodeError::FieldEmpty { field: "path" });
        }
    }
    Ok(())
}

fn check_hash(sha256: &str) -> Result<(), DecodeError> {
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(DecodeError::FieldEmpty { field: "sha256" });
    }
    Ok(())
}

impl FileRequest {
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        match self {
            FileRequest::List { path, .. }
            | FileRequest::Download { path, .. }
            | FileRequest::MakeDir { path, .. } => check_path(path),
            FileRequest::Upload { path, sha256, .. } => {
                check_path(path)?;
                if path.is_empty() {
                    return Err(DecodeError::FieldEmpty { field: "path" });
                }
                check_hash(sha256)
            }
            FileRequest::Ack { .. } | FileRequest::Cancel { .. } => Ok(()),
        }
    }

    /// The transfer or request id.
    pub fn id(&self) -> u32 {
        match self {
            FileRequest::List { id, .. }
            | FileRequest::Download { id, .. }
            | FileRequest::Upload { id, .. }
            | FileRequest::MakeDir { id, .. }
            | FileRequest::Ack { id, .. }
            | FileRequest::Cancel { id } => *id,
        }
    }
}

impl FileReply {
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        match self {
            FileReply::Listing {
                path,
                entries,
                root,
                ..
            } => {
                check_path(path)?;
                check_len("root", root, MAX_NAME_BYTES, true)?;
                if entries.len() > MAX_ENTRIES {
                    return Err(DecodeError::FieldTooLong {
                        field: "entries",
                        max: MAX_ENTRIES,
                    });
                }
                for e in entries {
                    check_len("name", &e.name, MAX_NAME_BYTES, false)?;
                }
                Ok(())
            }
            FileReply::Ready { sha256, .. } | FileReply::Done { sha256, .. } => {
                if sha256.is_empty() {
                    Ok(())
                } else {
                    check_hash(sha256)
                }
            }
            FileReply::Offer { name, sha256, .. } => {
                check_len("name", name, MAX_NAME_BYTES, false)?;
                check_hash(sha256)
            }
            FileReply::Failed { message, .. } => check_len("message", message, 1000, true),
            FileReply::Progress { .. } => Ok(()),
            FileReply::Shared { folder, .. } => check_len("folder", folder, MAX_NAME_BYTES, true),
        }
    }

    /// The transfer or request id.
    pub fn id(&self) -> u32 {
        match self {
            FileReply::Listing { id, .. }
            | FileReply::Ready { id, .. }
            | FileReply::Progress { id, .. }
            | FileReply::Done { id, .. }
            | FileReply::Failed { id, .. }
            | FileReply::Offer { id, .. } => *id,
            FileReply::Shared { .. } => 0,
        }
    }
}

/// One chunk of a file frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub id: u32,
    pub offset: u64,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("file chunk of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("file chunk carries {0} bytes, more than {MAX_CHUNK}")]
    TooLarge(usize),
    #[error("file chunk ends past the largest offset")]
    Overflow,
}

impl Chunk<'_> {
    /// The payload of a file frame: id and offset big-endian, then the bytes.
    pub fn encode(id: u32, offset: u64, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_HEADER + data.len());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// Decodes a file frame's payload; never panics.
    pub fn decode(payload: &[u8]) -> Result<Chunk<'_>, ChunkError> {
        let Some((head, data)) = payload.split_at_checked(CHUNK_HEADER) else {
            return Err(ChunkError::Short(payload.len()));
        };
        if data.len() > MAX_CHUNK {
            return Err(ChunkError::TooLarge(data.len()));
        }
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let mut o = [0u8; 8];
        o.copy_from_slice(&head[4..12]);
        let offset = u64::from_be_bytes(o);
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(ChunkError::Overflow);
        }
        Ok(Chunk { id, offset, data })
    }

    /// The offset just past this chunk.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentToRelay, RelayToAgent};
    use crate::encode;
    use proptest::prelude::*;

    #[test]
    fn paths() {
        for ok in ["", "a", "docs/report 2.pdf", "é/ü/ключ"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/etc/shadow",
            "../../etc/shadow",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
            "a/\u{7}",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let up = RelayToAgent::File {
            request: FileRequest::Upload {
                id: 3,
                path: "in/x.bin".into(),
                size: 10,
                sha256: "ab".repeat(32),
                overwrite: false,
            },
        };
        let text = encode(&up);
        assert!(text.contains(r#""type":"file""#) && text.contains(r#""op":"upload""#));
        assert_eq!(RelayToAgent::decode(&text).unwrap(), up);
        let bad = text.replace("in/x.bin", "../x.bin");
        assert!(RelayToAgent::decode(&bad).is_err());
        let done = AgentToRelay::File {
            reply: FileReply::Done {
                id: 3,
                size: 10,
                sha256: "ab".repeat(32),
            },
        };
        assert_eq!(AgentToRelay::decode(&encode(&done)).unwrap(), done);
        let short = encode(&done).replace(&"ab".repeat(32), "abc");
        assert!(AgentToRelay::decode(&short).is_err());
        let shared = AgentToRelay::File {
            reply: FileReply::Shared {
                limited: true,
                folder: "Reports".into(),
            },
        };
        let text = encode(&shared);
        assert!(text.contains(r#""op":"shared""#), "{text}");
        assert_eq!(AgentToRelay::decode(&text).unwrap(), shared);
        // A listing without `root` (an older agent) still decodes.
        let old = r#"{"type":"file","reply":{"op":"listing","id":1,"path":"","entries":[]}}"#;
        assert!(matches!(
            AgentToRelay::decode(old).unwrap(),
            AgentToRelay::File {
                reply: FileReply::Listing { root, .. }
            } if root.is_empty()
        ));
    }

    #[test]
    fn chunk_vector() {
        let c = Chunk::encode(1, 258, b"hi");
        assert_eq!(c, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, b'h', b'i']);
        let d = Chunk::decode(&c).unwrap();
        assert_eq!((d.id, d.offset, d.data, d.end()), (1, 258, &b"hi"[..], 260));
        assert_eq!(Chunk::decode(&c[..5]), Err(ChunkError::Short(5)));
        let mut o = Chunk::encode(1, u64::MAX, b"x");
        assert_eq!(Chunk::decode(&o), Err(ChunkError::Overflow));
        o.truncate(CHUNK_HEADER);
        assert!(Chunk::decode(&o).is_ok());
        let big = vec![0u8; CHUNK_HEADER + MAX_CHUNK + 1];
        assert!(matches!(Chunk::decode(&big), Err(ChunkError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn chunk_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(c) = Chunk::decode(&bytes) {
                prop_assert_eq!(c.data.len() + CHUNK_HEADER, bytes.len());
            }
        }

        #[test]
        fn chunk_round_trip(id in any::<u32>(), offset in 0u64..u64::MAX / 2,
                            data in prop::collection::vec(any::<u8>(), 0..300)) {
            let e = Chunk::encode(id, offset, &data);
            let c = Chunk::decode(&e).unwrap();
            prop_assert_eq!((c.id, c.offset, c.data), (id, offset, &data[..]));
        }

        #[test]
        fn check_path_never_panics_and_never_escapes(p in "[a-z./\\\\\u{0}é]{0,40}") {
            if check_path(&p).is_ok() {
                prop_assert!(!p.starts_with('/'));
                prop_assert!(p.split('/').all(|c| c != ".." && c != "."));
            }
        }

        #[test]
        fn file_messages_never_panic(
            op in prop::sample::select(vec!["list","download","upload","make_dir","ack","cancel",
                "listing","ready","progress","done","failed","offer","x"]),
            body in "[ -~]{0,200}",
        ) {
            let s = format!(r#"{{"type":"file","request":{{"op":"{op}",{body}}}}}"#);
            let _ = RelayToAgent::decode(&s);
            let s = format!(r#"{{"type":"file","reply":{{"op":"{op}",{body}}}}}"#);
            let _ = AgentToRelay::decode(&s);
        }
    }
}
