//! File transfer on the customer's side: browsing, sending and receiving files in the
//! folder the customer shares, only while they allow `file_transfer`.
//!
//! [`Files`] lives in the session driver. The driver hands it every
//! `RelayToAgent::File` request and every binary frame on the file channel, and polls
//! [`Files::next`] (after control messages and the screen, so file bytes always go last)
//! for what to send. The protocol is described in `lifeline_proto::files`.
//!
//! * Paths are resolved by [`resolve::Root`] (no `..`, no links, no devices).
//! * A download runs on a thread of its own: it hashes the whole file first (SHA-256, sent
//!   in `Ready`), then reads chunks from the asked offset, never more than
//!   `lifeline_proto::files::WINDOW` bytes ahead of the relay's acknowledgement, so the
//!   outgoing queue stays short and the screen keeps its place on the link.
//! * An upload is written into `NAME.<first 16 hex digits of its SHA-256>.part` next to its
//!   target (so a resumed upload only continues the same content; `Ready` tells how much is
//!   there already). After the last byte the whole `.part` file is hashed on a blocking
//!   thread; only a match gives it its final name, by a hard link that fails if the name is
//!   taken (or by a rename when the representative confirmed overwriting).
//! * Withdrawing the permission stops every transfer at once; `.part` files stay for a
//!   later resume.
//! * The customer may send a file they choose in the window ([`Files::offer`], anywhere
//!   they can read, but only a regular file): it is hashed, announced as an `Offer` with an
//!   id of the agent's range, and then downloaded by that id like any other file.
//!
//! * The shared folder is the home folder (or `SessionConfig::files_root`), unless the
//!   customer answered "Allow only one folder…" and chose one: [`Files::limit_to`] makes that
//!   folder the root of the next grant, and it stays the root until the grant ends (a
//!   withdrawal, a refusal or the session's end returns to the home folder for the next
//!   question). The resolver's guarantees hold inside it: nothing above it can be named,
//!   links pointing out are refused, devices are never opened.
//! * On each grant [`Files::shared`] tells the relay which folder is shared, as
//!   `FileReply::Shared` with its last component only and whether it was limited (the
//!   relay records it as a `file_share` session event); listings carry the same name as
//!   `root` for the representative's panel.
//!
//! Every step is logged as `event=file_...` lines (tests grep them).
//!
//! Limits: whole folders are moved by the representative's console file by file (see
//! `lifeline_proto::files`); the agent has no folder-level operation but `MakeDir`.

pub mod resolve;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use lifeline_proto::files::{
    AGENT_IDS, Chunk, Entry, EntryKind, FileErrorCode, FileReply, FileRequest, MAX_CHUNK,
    MAX_ENTRIES, WINDOW,
};
use lifeline_proto::frame::{self, Channel};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use resolve::{FileError, Root};

/// What the file engine wants sent.
#[derive(Debug)]
pub enum FileOut {
    Reply(FileReply),
    /// A whole binary frame on the file channel.
    Frame(Vec<u8>),
}

/// Room for a listing in one control message (the JSON envelope comes on top).
const LISTING_BUDGET: usize = lifeline_proto::MAX_CONTROL_MESSAGE - 2048;

/// A running download's shared state with its thread.
#[derive(Debug, Default)]
struct Pace {
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Pace {
    fn ack(&self, offset: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.max(offset);
        self.changed.notify_all();
    }

    fn cancel(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = true;
        self.changed.notify_all();
    }

    /// Waits until `pos` is within the window of the acknowledged offset; `false` when
    /// cancelled.
    fn wait_room(&self, pos: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.1 {
                return false;
            }
            if pos < s.0.saturating_add(WINDOW) {
                return true;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Upload {
    file: File,
    pos: u64,
    size: u64,
    sha256: String,
    part: PathBuf,
    target: PathBuf,
    overwrite: bool,
    wire: String,
}

/// The session's file engine.
pub struct Files {
    root: Option<Root>,
    /// The one folder the customer chose for the current (or next) grant.
    limited: Option<Root>,
    granted: bool,
    out_tx: mpsc::Sender<FileOut>,
    out_rx: mpsc::Receiver<FileOut>,
    downloads: HashMap<u32, Arc<Pace>>,
    uploads: HashMap<u32, Upload>,
    /// Sequence number of file frames (informational).
    seq: Arc<std::sync::atomic::AtomicU32>,
    /// Files the customer sent: offer id → path.
    offers: Arc<Mutex<HashMap<u32, PathBuf>>>,
    next_offer: u32,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("root", &self.root)
            .field("granted", &self.granted)
            .field("downloads", &self.downloads.len())
            .field("uploads", &self.uploads.len())
            .finish()
    }
}

impl Files {
    /// A file engine sharing `root` (`None`: file transfer is not available here).
    pub fn new(root: Option<PathBuf>) -> Self {
        let root = root.and_then(|r| match Root::new(&r) {
            Ok(root) => Some(root),
            Err(e) => {
                warn!("event=file_root_unavailable error={:?}", e.message);
                None
            }
        });
        // Small: a download thread waits here rather than filling memory.
        let (out_tx, out_rx) = mpsc::channel(4);
        Self {
            root,
            limited: None,
            granted: false,
            out_tx,
            out_rx,
            downloads: HashMap::new(),
            uploads: HashMap::new(),
            seq: Arc::default(),
            offers: Arc::default(),
            next_offer: AGENT_IDS,
        }
    }

    /// The customer sends `path` to the technician (file transfer must stand): hashed on a
    /// thread of its own, then announced.
    pub fn offer(&mut self, path: PathBuf) {
        let id = self.next_offer;
        self.next_offer = self.next_offer.wrapping_add(1).max(AGENT_IDS);
        if !self.granted {
            warn!("event=file_offer_refused reason=not_granted");
            return;
        }
        let (tx, offers) = (self.out_tx.clone(), self.offers.clone());
        tokio::task::spawn_blocking(move || {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let result = open_offered(&path).and_then(|mut f| hash_file(&mut f, u64::MAX));
            match result {
                Ok((size, sha256)) if !name.is_empty() => {
                    info!("event=file_offered id={id} name={name:?} size={size} sha256={sha256}");
                    offers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, path);
                    let _ = tx.blocking_send(FileOut::Reply(FileReply::Offer {
                        id,
                        name,
                        size,
                        sha256,
                    }));
                }
                Ok(_) => warn!("event=file_offer_refused reason=no_name"),
                Err(e) => warn!("event=file_offer_refused message={:?}", e.message),
            }
        });
    }

    /// Whether file transfer can be offered at all.
    pub fn available(&self) -> bool {
        self.root.is_some()
    }

    /// The customer limits the next grant to `dir` (chosen in the window). Refused when it
    /// is not a folder that can be opened (the session then refuses the grant rather than
    /// share the home folder).
    pub fn limit_to(&mut self, dir: &std::path::Path) -> Result<(), FileError> {
        let root = Root::new(dir)?;
        info!(
            "event=file_limited folder={:?}",
            last_component(root.path())
        );
        self.limited = Some(root);
        Ok(())
    }

    /// Forgets a folder chosen for a grant that did not come (the question had expired).
    pub fn clear_limit(&mut self) {
        if !self.granted {
            self.limited = None;
        }
    }

    /// The folder shared now: the one the customer chose, or the home folder.
    fn active_root(&self) -> Option<&Root> {
        self.limited.as_ref().or(self.root.as_ref())
    }

    /// What to tell the relay about the shared folder (`None` when nothing is shared).
    pub fn shared(&self) -> Option<FileReply> {
        let root = self.active_root().filter(|_| self.granted)?;
        Some(FileReply::Shared {
            limited: self.limited.is_some(),
            folder: last_component(root.path()),
        })
    }

    /// The full path of the folder shared now, for the customer's window.
    pub fn shared_path(&self) -> Option<PathBuf> {
        self.active_root()
            .filter(|_| self.granted)
            .map(|r| r.path().to_owned())
    }

    /// The customer's grant changed. A withdrawal ends every transfer, and the relay hears
    /// why for each; the next grant shares the home folder again unless limited anew.
    pub fn set_grant(&mut self, granted: bool) {
        self.granted = granted;
        if !granted {
            self.limited = None;
            let ids: Vec<u32> = self
                .downloads
                .keys()
                .chain(self.uploads.keys())
                .copied()
                .collect();
            self.stop_all();
            for id in ids {
                self.reply_now(FileReply::Failed {
                    id,
                    code: FileErrorCode::NotPermitted,
                    message: "the customer withdrew file transfer".into(),
                });
            }
        }
    }

    /// Stops every transfer (link lost, permission withdrawn, session over). File frames
    /// still queued are dropped (they were meant for the old link); answers stay.
    pub fn stop_all(&mut self) {
        let mut kept = Vec::new();
        while let Ok(out) = self.out_rx.try_recv() {
            if let FileOut::Reply(r) = out {
                kept.push(r);
            }
        }
        for r in kept {
            self.reply_now(r);
        }
        for (id, pace) in self.downloads.drain() {
            pace.cancel();
            info!("event=file_stopped id={id} direction=download");
        }
        for (id, up) in self.uploads.drain() {
            info!(
                "event=file_stopped id={id} direction=upload at={} path={:?}",
                up.pos, up.wire
            );
        }
    }

    /// The next message to send (pending forever while there is none).
    pub async fn next(&mut self) -> FileOut {
        match self.out_rx.recv().await {
            Some(out) => out,
            None => std::future::pending().await,
        }
    }

    fn reply_now(&self, reply: FileReply) {
        if self.out_tx.try_send(FileOut::Reply(reply.clone())).is_err() {
            // The queue is full of download frames: send from a task instead.
            let tx = self.out_tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(FileOut::Reply(reply)).await;
            });
        }
    }

    fn fail(&self, id: u32, e: FileError) {
        warn!(
            "event=file_refused id={id} code={:?} message={:?}",
            e.code, e.message
        );
        self.reply_now(FileReply::Failed {
            id,
            code: e.code,
            message: e.message,
        });
    }

    /// A request from the relay.
    pub fn request(&mut self, request: FileRequest) {
        let id = request.id();
        let Some(root) = self.active_root().cloned().filter(|_| self.granted) else {
            if !matches!(
                request,
                FileRequest::Ack { .. } | FileRequest::Cancel { .. }
            ) {
                self.fail(
                    id,
                    FileError::new(
                        FileErrorCode::NotPermitted,
                        "the customer has not allowed file transfer",
                    ),
                );
            }
            return;
        };
        match request {
            FileRequest::List { id, path } => match list(&root, &path) {
                Ok((entries, truncated)) => {
                    info!(
                        "event=file_list path={path:?} entries={} truncated={truncated}",
                        entries.len()
                    );
                    self.reply_now(FileReply::Listing {
                        id,
                        path,
                        entries,
                        truncated,
                        root: last_component(root.path()),
                    });
                }
                Err(e) => self.fail(id, e),
            },
            FileRequest::Download { id, path, offset } => self.download(&root, id, path, offset),
            FileRequest::Upload {
                id,
                path,
                size,
                sha256,
                overwrite,
            } => match start_upload(&root, &path, size, &sha256, overwrite) {
                Ok(up) => {
                    info!(
                        "event=file_upload_ready id={id} path={path:?} size={size} offset={}",
                        up.pos
                    );
                    let offset = up.pos;
                    self.uploads.insert(id, up);
                    self.reply_now(FileReply::Ready {
                        id,
                        size,
                        sha256,
                        offset,
                    });
                    if offset == size {
                        self.finish_upload(id);
                    }
                }
                Err(e) => self.fail(id, e),
            },
            FileRequest::MakeDir { id, path } => match make_dir(&root, &path) {
                Ok(()) => {
                    info!("event=file_mkdir path={path:?}");
                    self.reply_now(FileReply::Done {
                        id,
                        size: 0,
                        sha256: String::new(),
                    });
                }
                Err(e) => self.fail(id, e),
            },
            FileRequest::Ack { id, offset } => {
                if let Some(p) = self.downloads.get(&id) {
                    p.ack(offset);
                }
            }
            FileRequest::Cancel { id } => {
                if let Some(p) = self.downloads.remove(&id) {
                    p.cancel();
                }
                self.uploads.remove(&id);
                info!("event=file_cancelled id={id}");
            }
        }
    }

    fn download(&mut self, root: &Root, id: u32, path: String, offset: u64) {
        let opened = if id >= AGENT_IDS {
            // A file the customer sent: by its id, never by a path from the relay.
            let offered = self
                .offers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            match offered {
                Some(p) => open_offered(&p).and_then(|f| {
                    let len = f.metadata().map_err(|e| FileError::io("offer", &e))?.len();
                    Ok((f, len))
                }),
                None => Err(FileError::new(
                    FileErrorCode::NotFound,
                    "the customer did not send this file",
                )),
            }
        } else {
            root.open_read(&path)
        };
        let (file, len) = match opened {
            Ok(f) => f,
            Err(e) => return self.fail(id, e),
        };
        if let Some(old) = self.downloads.remove(&id) {
            old.cancel();
        }
        let pace = Arc::new(Pace::default());
        pace.ack(offset);
        self.downloads.insert(id, pace.clone());
        let tx = self.out_tx.clone();
        let seq = self.seq.clone();
        info!("event=file_download id={id} path={path:?} size={len} offset={offset}");
        let spawned = std::thread::Builder::new()
            .name("file-download".into())
            .spawn(move || {
                if let Err(e) = send_file(file, id, offset, &pace, &tx, &seq) {
                    warn!("event=file_failed id={id} message={:?}", e.message);
                    let _ = tx.blocking_send(FileOut::Reply(FileReply::Failed {
                        id,
                        code: e.code,
                        message: e.message,
                    }));
                }
            });
        if let Err(e) = spawned {
            self.fail(id, FileError::io("cannot start the transfer", &e));
        }
    }

    /// A binary frame on the file channel (upload bytes).
    pub fn chunk(&mut self, payload: &[u8]) {
        let chunk = match Chunk::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                warn!("event=file_bad_chunk error={:?}", e.to_string());
                return;
            }
        };
        let id = chunk.id;
        let Some(up) = self.uploads.get_mut(&id) else {
            // Late bytes of a stopped transfer.
            return;
        };
        if !self.granted || chunk.offset != up.pos || chunk.end() > up.size {
            let e = FileError::new(
                FileErrorCode::Protocol,
                format!(
                    "bytes {}..{} do not follow {} of {}",
                    chunk.offset,
                    chunk.end(),
                    up.pos,
                    up.size
                ),
            );
            self.uploads.remove(&id);
            return self.fail(id, e);
        }
        if let Err(e) = up.file.write_all(chunk.data) {
            let e = FileError::io(&up.wire, &e);
            self.uploads.remove(&id);
            return self.fail(id, e);
        }
        up.pos = chunk.end();
        let (pos, size) = (up.pos, up.size);
        self.reply_now(FileReply::Progress { id, offset: pos });
        if pos == size {
            self.finish_upload(id);
        }
    }

    fn finish_upload(&mut self, id: u32) {
        let Some(up) = self.uploads.remove(&id) else {
            return;
        };
        let tx = self.out_tx.clone();
        tokio::task::spawn_blocking(move || {
            let reply = match verify_and_place(up) {
                Ok((size, sha256, wire)) => {
                    info!("event=file_received id={id} path={wire:?} size={size} sha256={sha256}");
                    FileReply::Done { id, size, sha256 }
                }
                Err(e) => {
                    warn!(
                        "event=file_refused id={id} code={:?} message={:?}",
                        e.code, e.message
                    );
                    FileReply::Failed {
                        id,
                        code: e.code,
                        message: e.message,
                    }
                }
            };
            let _ = tx.blocking_send(FileOut::Reply(reply));
        });
    }
}

/// Hashes the whole file, says `Ready`, then streams from `offset` within the window.
fn send_file(
    mut file: File,
    id: u32,
    offset: u64,
    pace: &Pace,
    tx: &mpsc::Sender<FileOut>,
    seq: &std::sync::atomic::AtomicU32,
) -> Result<(), FileError> {
    let (size, sha256) = hash_file(&mut file, u64::MAX)?;
    if offset > size {
        return Err(FileError::new(
            FileErrorCode::Protocol,
            format!("offset {offset} is past the end ({size} bytes)"),
        ));
    }
    let ready = FileReply::Ready {
        id,
        size,
        sha256: sha256.clone(),
        offset,
    };
    if tx.blocking_send(FileOut::Reply(ready)).is_err() {
        return Ok(());
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| FileError::io("seek", &e))?;
    let mut pos = offset;
    let mut buf = vec![0u8; MAX_CHUNK];
    while pos < size {
        if !pace.wait_room(pos) {
            return Ok(());
        }
        let want = MAX_CHUNK.min((size - pos) as usize);
        let n = read_full(&mut file, &mut buf[..want]).map_err(|e| FileError::io("read", &e))?;
        if n == 0 {
            return Err(FileError::new(
                FileErrorCode::Io,
                "the file became shorter while it was sent",
            ));
        }
        let payload = Chunk::encode(id, pos, &buf[..n]);
        let s = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = frame::encode(Channel::File, 0, s, &payload)
            .map_err(|e| FileError::new(FileErrorCode::Protocol, e.to_string()))?;
        if tx.blocking_send(FileOut::Frame(bytes)).is_err() {
            return Ok(());
        }
        pos += n as u64;
    }
    info!("event=file_sent id={id} size={size} sha256={sha256}");
    Ok(())
}

/// Opens a file the customer chose: their choice may go through links, but it must end at
/// a regular file (never a device or pipe, which could block or never end).
fn open_offered(path: &std::path::Path) -> Result<File, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let wire = path.display().to_string();
    let md = std::fs::metadata(path).map_err(|e| FileError::io(&wire, &e))?;
    if !md.file_type().is_file() {
        return Err(FileError::new(
            FileErrorCode::NotRegular,
            format!("{wire} is not a regular file"),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4_000 | 0o400) // O_NONBLOCK | O_NOCTTY
        .open(path)
        .map_err(|e| FileError::io(&wire, &e))?;
    let md = file.metadata().map_err(|e| FileError::io(&wire, &e))?;
    if !md.file_type().is_file() {
        return Err(FileError::new(
            FileErrorCode::NotRegular,
            format!("{wire} is not a regular file"),
        ));
    }
    Ok(file)
}

/// A folder's last component, bounded for the wire (`"/"` for the file system's root).
fn last_component(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut end = name.len().min(lifeline_proto::files::MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    lifeline_proto::sanitize_text(&name[..end])
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// SHA-256 (lower-case hex) and length of a file read from its start, at most `limit`
/// bytes.
fn hash_file(file: &mut File, limit: u64) -> Result<(u64, String), FileError> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| FileError::io("seek", &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| FileError::io("read", &e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        if total > limit {
            break;
        }
    }
    Ok((total, hex::encode(hasher.finalize())))
}

fn list(root: &Root, wire: &str) -> Result<(Vec<Entry>, bool), FileError> {
    let (path, md) = root.existing(wire)?;
    if !md.is_dir() {
        return Err(FileError::new(
            FileErrorCode::NotFound,
            format!("{wire} is not a folder"),
        ));
    }
    let rd = std::fs::read_dir(&path).map_err(|e| FileError::io(wire, &e))?;
    let mut entries = Vec::new();
    let mut truncated = false;
    for item in rd {
        let Ok(item) = item else { continue };
        let Ok(name) = item.file_name().into_string() else {
            continue; // not UTF-8: cannot be named on the wire
        };
        if lifeline_proto::files::check_path(&name).is_err() {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(item.path()) else {
            continue;
        };
        let kind = if md.file_type().is_file() {
            EntryKind::File
        } else if md.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        let modified = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        entries.push(Entry {
            size: if kind == EntryKind::File { md.len() } else { 0 },
            name,
            kind,
            modified,
        });
        if entries.len() >= MAX_ENTRIES * 4 {
            truncated = true;
            break;
        }
    }
    entries.sort_by(|a, b| {
        (a.kind != EntryKind::Dir, a.name.to_lowercase())
            .cmp(&(b.kind != EntryKind::Dir, b.name.to_lowercase()))
    });
    let mut budget = LISTING_BUDGET.saturating_sub(wire.len() * 2);
    let mut kept = Vec::new();
    for e in entries {
        let cost = lifeline_proto::encode(&e).len() + 1;
        if kept.len() >= MAX_ENTRIES || cost > budget {
            truncated = true;
            break;
        }
        budget -= cost;
        kept.push(e);
    }
    Ok((kept, truncated))
}

fn make_dir(root: &Root, wire: &str) -> Result<(), FileError> {
    let (dir, name) = root.parent_of(wire)?;
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(FileError::new(
            FileErrorCode::Exists,
            format!("{wire} exists and is not a folder"),
        )),
        Err(_) => std::fs::create_dir(&path).map_err(|e| FileError::io(wire, &e)),
    }
}

/// The `.part` name of an upload: its target's name and the content's hash.
pub fn part_name(name: &str, sha256: &str) -> String {
    format!("{name}.{}.part", &sha256[..16.min(sha256.len())])
}

fn start_upload(
    root: &Root,
    wire: &str,
    size: u64,
    sha256: &str,
    overwrite: bool,
) -> Result<Upload, FileError> {
    let (dir, name) = root.parent_of(wire)?;
    let target = dir.join(&name);
    if let Ok(md) = std::fs::symlink_metadata(&target) {
        if !md.file_type().is_file() {
            return Err(FileError::new(
                FileErrorCode::NotRegular,
                format!("{wire} exists and is not a regular file"),
            ));
        }
        if !overwrite {
            return Err(FileError::new(
                FileErrorCode::Exists,
                format!("{wire} exists; confirm to replace it"),
            ));
        }
    }
    let part_wire = format!("{wire}.part");
    let part = dir.join(part_name(&name, sha256));
    let mut file = root.open_write(&part, &part_wire)?;
    let mut have = file.metadata().map_err(|e| FileError::io(wire, &e))?.len();
    if have > size {
        file.set_len(0).map_err(|e| FileError::io(wire, &e))?;
        have = 0;
    }
    file.seek(SeekFrom::Start(have))
        .map_err(|e| FileError::io(wire, &e))?;
    Ok(Upload {
        file,
        pos: have,
        size,
        sha256: sha256.to_owned(),
        part,
        target,
        overwrite,
        wire: wire.to_owned(),
    })
}

/// Checks the whole `.part` file and gives it its final name.
fn verify_and_place(mut up: Upload) -> Result<(u64, String, String), FileError> {
    up.file
        .sync_all()
        .map_err(|e| FileError::io(&up.wire, &e))?;
    let (size, sha256) = hash_file(&mut up.file, up.size)?;
    if size != up.size || sha256 != up.sha256 {
        // The content is wrong: start afresh next time.
        let _ = std::fs::remove_file(&up.part);
        return Err(FileError::new(
            FileErrorCode::HashMismatch,
            format!(
                "{} arrived with SHA-256 {sha256} ({size} bytes), not {}; it was not kept",
                up.wire, up.sha256
            ),
        ));
    }
    if up.overwrite {
        std::fs::rename(&up.part, &up.target).map_err(|e| FileError::io(&up.wire, &e))?;
    } else {
        std::fs::hard_link(&up.part, &up.target).map_err(|e| FileError::io(&up.wire, &e))?;
        let _ = std::fs::remove_file(&up.part);
    }
    Ok((size, sha256, up.wire))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    async fn reply(files: &mut Files) -> FileReply {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), files.next())
                .await
                .expect("a reply")
            {
                FileOut::Reply(r) => return r,
                FileOut::Frame(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn upload_resumes_verifies_and_never_overwrites() {
        let t = tempfile::tempdir().unwrap();
        let mut files = Files::new(Some(t.path().to_owned()));
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let h = sha(&data);
        let up = |overwrite| FileRequest::Upload {
            id: 1,
            path: "in.bin".into(),
            size: data.len() as u64,
            sha256: h.clone(),
            overwrite,
        };
        // Not granted: refused.
        files.request(up(false));
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                code: FileErrorCode::NotPermitted,
                ..
            }
        ));
        files.set_grant(true);
        files.request(up(false));
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Ready { offset: 0, .. }
        ));
        files.chunk(&Chunk::encode(1, 0, &data[..200_000]));
        assert_eq!(
            reply(&mut files).await,
            FileReply::Progress {
                id: 1,
                offset: 200_000
            }
        );
        // The link drops; the upload is asked again and resumes at 200 000.
        files.stop_all();
        assert!(!t.path().join("in.bin").exists());
        files.request(up(false));
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Ready {
                offset: 200_000,
                ..
            }
        ));
        // A chunk at the wrong place ends the transfer.
        files.chunk(&Chunk::encode(1, 5, &data[5..10]));
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                code: FileErrorCode::Protocol,
                ..
            }
        ));
        files.request(up(false));
        reply(&mut files).await;
        files.chunk(&Chunk::encode(1, 200_000, &data[200_000..450_000]));
        files.chunk(&Chunk::encode(1, 450_000, &data[450_000..]));
        reply(&mut files).await; // progress
        reply(&mut files).await; // progress
        assert!(matches!(reply(&mut files).await, FileReply::Done { .. }));
        assert_eq!(std::fs::read(t.path().join("in.bin")).unwrap(), data);
        assert!(!t.path().join(part_name("in.bin", &h)).exists());
        // Again without confirmation: refused; with it: replaced.
        files.request(up(false));
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                code: FileErrorCode::Exists,
                ..
            }
        ));
        files.request(up(true));
        reply(&mut files).await;
        files.chunk(&Chunk::encode(1, 0, &data[..262_144]));
        files.chunk(&Chunk::encode(1, 262_144, &data[262_144..524_288]));
        files.chunk(&Chunk::encode(1, 524_288, &data[524_288..]));
        loop {
            let r = reply(&mut files).await;
            assert!(!matches!(r, FileReply::Failed { .. }), "{r:?}");
            if let FileReply::Done { sha256, .. } = r {
                assert_eq!(sha256, h);
                break;
            }
        }
    }

    #[tokio::test]
    async fn a_corrupted_upload_is_not_kept() {
        let t = tempfile::tempdir().unwrap();
        let mut files = Files::new(Some(t.path().to_owned()));
        files.set_grant(true);
        files.request(FileRequest::Upload {
            id: 2,
            path: "x".into(),
            size: 3,
            sha256: sha(b"abc"),
            overwrite: false,
        });
        reply(&mut files).await;
        files.chunk(&Chunk::encode(2, 0, b"abd"));
        reply(&mut files).await;
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                code: FileErrorCode::HashMismatch,
                ..
            }
        ));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn withdrawing_the_grant_ends_transfers() {
        let t = tempfile::tempdir().unwrap();
        let mut files = Files::new(Some(t.path().to_owned()));
        files.set_grant(true);
        files.request(FileRequest::Upload {
            id: 4,
            path: "x".into(),
            size: 3,
            sha256: sha(b"abc"),
            overwrite: false,
        });
        reply(&mut files).await;
        files.set_grant(false);
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                id: 4,
                code: FileErrorCode::NotPermitted,
                ..
            }
        ));
        files.chunk(&Chunk::encode(4, 0, b"abc"));
        files.request(FileRequest::List {
            id: 5,
            path: String::new(),
        });
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Failed {
                id: 5,
                code: FileErrorCode::NotPermitted,
                ..
            }
        ));
        assert!(!t.path().join("x").exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_customer_sends_a_file_by_id_only() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let chosen = elsewhere.path().join("report.pdf");
        std::fs::write(&chosen, b"%PDF-1.7 test").unwrap();
        let mut files = Files::new(Some(t.path().to_owned()));
        files.offer(chosen.clone());
        files.set_grant(true);
        files.offer(PathBuf::from("/dev/null"));
        files.offer(chosen);
        let FileReply::Offer {
            id,
            name,
            size,
            sha256,
        } = reply(&mut files).await
        else {
            panic!("an offer")
        };
        assert!(id >= AGENT_IDS);
        assert_eq!((name.as_str(), size), ("report.pdf", 13));
        assert_eq!(sha256, sha(b"%PDF-1.7 test"));
        files.request(FileRequest::Download {
            id,
            path: String::new(),
            offset: 0,
        });
        assert!(matches!(
            reply(&mut files).await,
            FileReply::Ready { size: 13, .. }
        ));
        // An id that was never offered opens nothing.
        files.request(FileRequest::Download {
            id: id + 7,
            path: String::new(),
            offset: 0,
        });
        let mut saw_refusal = false;
        for _ in 0..3 {
            if let FileReply::Failed { code, .. } = reply(&mut files).await {
                assert_eq!(code, FileErrorCode::NotFound);
                saw_refusal = true;
                break;
            }
        }
        assert!(saw_refusal);
    }

    #[tokio::test]
    async fn one_folder_is_the_whole_world() {
        let home = tempfile::tempdir().unwrap();
        let reports = home.path().join("Reports");
        std::fs::create_dir(&reports).unwrap();
        std::fs::write(reports.join("q1.txt"), b"q1").unwrap();
        std::fs::write(home.path().join("secret.txt"), b"no").unwrap();
        std::os::unix::fs::symlink(home.path().join("secret.txt"), reports.join("out")).unwrap();
        std::os::unix::fs::symlink(home.path(), reports.join("up")).unwrap();
        let mut files = Files::new(Some(home.path().to_owned()));
        files.limit_to(&reports).unwrap();
        assert!(files.limit_to(&home.path().join("nothing")).is_err());
        files.set_grant(true);
        assert_eq!(
            files.shared(),
            Some(FileReply::Shared {
                limited: true,
                folder: "Reports".into()
            })
        );
        files.request(FileRequest::List {
            id: 1,
            path: String::new(),
        });
        let FileReply::Listing { entries, root, .. } = reply(&mut files).await else {
            panic!("a listing")
        };
        assert_eq!(root, "Reports");
        let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [
                ("out", EntryKind::Other),
                ("q1.txt", EntryKind::File),
                ("up", EntryKind::Other)
            ]
        );
        // Links pointing out are never followed, and nothing above the folder has a name.
        for (id, path) in [(2, "out"), (3, "up/secret.txt"), (4, "secret.txt")] {
            files.request(FileRequest::Download {
                id,
                path: path.into(),
                offset: 0,
            });
            let r = reply(&mut files).await;
            assert!(
                matches!(r, FileReply::Failed { code, .. } if code != FileErrorCode::NotPermitted),
                "{path}: {r:?}"
            );
        }
        // The grant ends: the next one shares the home folder again.
        files.set_grant(false);
        assert_eq!(files.shared(), None);
        files.set_grant(true);
        let home_name = home
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            files.shared(),
            Some(FileReply::Shared {
                limited: false,
                folder: home_name
            })
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn download_within_the_window() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(t.path().join("big"), &data).unwrap();
        let mut files = Files::new(Some(t.path().to_owned()));
        files.set_grant(true);
        files.request(FileRequest::Download {
            id: 5,
            path: "big".into(),
            offset: 1000,
        });
        let FileOut::Reply(FileReply::Ready { size, sha256, .. }) = files.next().await else {
            panic!("ready first")
        };
        assert_eq!((size, sha256), (data.len() as u64, sha(&data)));
        let mut got = Vec::new();
        let mut next_at = 1000u64;
        while next_at < size {
            let out = tokio::time::timeout(std::time::Duration::from_secs(5), files.next())
                .await
                .expect("the window lets chunks through once acknowledged");
            let FileOut::Frame(f) = out else { continue };
            let (_, payload) = frame::decode(&f).unwrap();
            let c = Chunk::decode(payload).unwrap();
            assert_eq!(c.offset, next_at);
            assert!(c.end() - 1000 <= WINDOW + MAX_CHUNK as u64 || !got.is_empty());
            got.extend_from_slice(c.data);
            next_at = c.end();
            files.request(FileRequest::Ack {
                id: 5,
                offset: next_at,
            });
        }
        assert_eq!(got, &data[1000..]);
    }
}
