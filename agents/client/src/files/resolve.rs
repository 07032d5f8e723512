//! Safe resolution of wire paths inside the shared folder.
//!
//! A wire path (see `lifeline_proto::files::check_path`) is first checked lexically (no
//! absolute path, no `.` or `..`, no NUL), then walked one component at a time from the
//! shared folder with `symlink_metadata`, which never follows a link: a symbolic link
//! anywhere on the way is refused, and so is anything but a folder before the last
//! component. Files are opened with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (a link swapped in
//! after the check fails to open; a pipe swapped in cannot block the agent), the opened
//! file must still be a regular file with the device and inode seen during the walk, and on
//! Linux its real path (`/proc/self/fd/N`) must lie inside the shared folder. Devices, pipes
//! and sockets are never opened.
//!
//! Limits: a folder on the way replaced by a link between the walk and the open is caught
//! by the `/proc` check on Linux only.

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lifeline_proto::files::{FileErrorCode, check_path};

/// Why a path was refused or an operation failed; `message` is a sentence for the
/// representative.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileError {
    pub code: FileErrorCode,
    pub message: String,
}

impl FileError {
    pub fn new(code: FileErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn io(what: &str, e: &std::io::Error) -> Self {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => FileErrorCode::NotFound,
            std::io::ErrorKind::AlreadyExists => FileErrorCode::Exists,
            _ => FileErrorCode::Io,
        };
        Self::new(code, format!("{what}: {e}"))
    }
}

// Linux values (also used by most other Unix systems for these three).
const O_NOFOLLOW: i32 = 0o400_000;
const O_NONBLOCK: i32 = 0o4_000;
const O_NOCTTY: i32 = 0o400;

/// The folder the customer shares.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The shared folder (resolved once; it may itself be reached through a link the
    /// customer chose).
    pub fn new(dir: &Path) -> Result<Self, FileError> {
        let dir = dir
            .canonicalize()
            .map_err(|e| FileError::io("the shared folder is not available", &e))?;
        if !dir.is_dir() {
            return Err(FileError::new(
                FileErrorCode::NotFound,
                "the shared folder is not a folder",
            ));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Walks `wire` and returns the path and metadata of what is there (never following a
    /// link). `""` is the shared folder itself.
    pub fn existing(&self, wire: &str) -> Result<(PathBuf, Metadata), FileError> {
        let parts = split(wire)?;
        let mut cur = self.dir.clone();
        let mut md = std::fs::symlink_metadata(&cur).map_err(|e| FileError::io(wire, &e))?;
        for (i, part) in parts.iter().enumerate() {
            if !md.is_dir() {
                return Err(FileError::new(
                    FileErrorCode::NotFound,
                    format!("{} is not a folder", parts[..i].join("/")),
                ));
            }
            cur.push(part);
            md = std::fs::symlink_metadata(&cur).map_err(|e| FileError::io(wire, &e))?;
            if md.file_type().is_symlink() {
                return Err(FileError::new(
                    FileErrorCode::NotRegular,
                    format!(
                        "{} is a symbolic link; links are not followed",
                        parts[..=i].join("/")
                    ),
                ));
            }
        }
        Ok((cur, md))
    }

    /// Opens an existing regular file for reading.
    pub fn open_read(&self, wire: &str) -> Result<(File, u64), FileError> {
        let (path, md) = self.existing(wire)?;
        require_regular(wire, &md)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
            .open(&path)
            .map_err(|e| FileError::io(wire, &e))?;
        self.check_opened(wire, &file, Some(&md))?;
        Ok((file, md.len()))
    }

    /// The folder a new file `wire` goes into, and its name. The folder must exist.
    pub fn parent_of(&self, wire: &str) -> Result<(PathBuf, String), FileError> {
        let parts = split(wire)?;
        let Some((name, dir)) = parts.split_last() else {
            return Err(FileError::new(
                FileErrorCode::OutsideRoot,
                "a file name is needed",
            ));
        };
        let (dir_path, md) = self.existing(&dir.join("/"))?;
        if !md.is_dir() {
            return Err(FileError::new(
                FileErrorCode::NotFound,
                format!("{} is not a folder", dir.join("/")),
            ));
        }
        Ok((dir_path, (*name).to_owned()))
    }

    /// Opens (creating it if needed, never truncating) a file to write into, in a folder
    /// returned by [`Root::parent_of`].
    pub fn open_write(&self, path: &Path, wire: &str) -> Result<File, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
            .open(path)
            .map_err(|e| FileError::io(wire, &e))?;
        self.check_opened(wire, &file, None)?;
        Ok(file)
    }

    /// The opened file is a regular file, the one that was checked, inside the root.
    fn check_opened(
        &self,
        wire: &str,
        file: &File,
        walked: Option<&Metadata>,
    ) -> Result<(), FileError> {
        let md = file.metadata().map_err(|e| FileError::io(wire, &e))?;
        require_regular(wire, &md)?;
        if let Some(w) = walked
            && (w.dev() != md.dev() || w.ino() != md.ino())
        {
            return Err(FileError::new(
                FileErrorCode::NotRegular,
                format!("{wire} changed while it was opened"),
            ));
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .map_err(|e| FileError::io(wire, &e))?;
            if !real.starts_with(&self.dir) {
                return Err(FileError::new(
                    FileErrorCode::OutsideRoot,
                    format!("{wire} is outside the shared folder"),
                ));
            }
        }
        Ok(())
    }
}

fn require_regular(wire: &str, md: &Metadata) -> Result<(), FileError> {
    if md.is_dir() {
        return Err(FileError::new(
            FileErrorCode::NotRegular,
            format!("{wire} is a folder"),
        ));
    }
    if !md.file_type().is_file() {
        return Err(FileError::new(
            FileErrorCode::NotRegular,
            format!("{wire} is not a regular file (device, pipe, socket or link)"),
        ));
    }
    Ok(())
}

/// The components of a wire path, after the lexical check.
pub fn split(wire: &str) -> Result<Vec<&str>, FileError> {
    check_path(wire).map_err(|_| {
        FileError::new(
            FileErrorCode::OutsideRoot,
            format!(
                "{:?} is not a path inside the shared folder",
                wire.chars().take(80).collect::<String>()
            ),
        )
    })?;
    Ok(if wire.is_empty() {
        Vec::new()
    } else {
        wire.split('/').collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn setup() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share");
        std::fs::create_dir_all(share.join("docs")).unwrap();
        std::fs::write(share.join("docs/a.txt"), b"hello").unwrap();
        std::fs::write(t.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), share.join("link")).unwrap();
        std::os::unix::fs::symlink(t.path(), share.join("up")).unwrap();
        let root = Root::new(&share).unwrap();
        (t, root)
    }

    #[test]
    fn reads_inside_refuses_escapes() {
        let (_t, root) = setup();
        let (_, len) = root.open_read("docs/a.txt").unwrap();
        assert_eq!(len, 5);
        for (wire, code) in [
            ("../../etc/shadow", FileErrorCode::OutsideRoot),
            ("/etc/shadow", FileErrorCode::OutsideRoot),
            ("link", FileErrorCode::NotRegular),
            ("up/secret", FileErrorCode::NotRegular),
            ("docs", FileErrorCode::NotRegular),
            ("docs/none", FileErrorCode::NotFound),
            ("docs/a.txt/x", FileErrorCode::NotFound),
        ] {
            assert_eq!(root.open_read(wire).unwrap_err().code, code, "{wire}");
        }
    }

    #[test]
    fn refuses_devices_and_pipes() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(Path::new("/dev")).unwrap();
        assert_eq!(
            root.open_read("null").unwrap_err().code,
            FileErrorCode::NotRegular
        );
        let fifo = t.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let root = Root::new(t.path()).unwrap();
        assert_eq!(
            root.open_read("fifo").unwrap_err().code,
            FileErrorCode::NotRegular
        );
    }

    #[test]
    fn new_files_go_in_existing_folders_only() {
        let (_t, root) = setup();
        let (dir, name) = root.parent_of("docs/new.bin").unwrap();
        assert!(dir.ends_with("share/docs") && name == "new.bin");
        assert!(root.parent_of("up/x").is_err());
        assert!(root.parent_of("nowhere/x").is_err());
        assert!(root.parent_of("").is_err());
        // A link planted where the file goes is not followed.
        assert!(root.open_write(&root.path().join("link"), "link").is_err());
        assert_eq!(std::fs::read(_t.path().join("secret")).unwrap(), b"no");
    }

    proptest! {
        #[test]
        fn nothing_outside_the_root_opens(p in "[a-z./]{0,24}") {
            let (t, root) = setup();
            if let Ok((path, _)) = root.existing(&p) {
                prop_assert!(path.starts_with(root.path()));
            }
            prop_assert!(root.open_read(&p).is_err() || p == "docs/a.txt");
            drop(t);
        }
    }
}
