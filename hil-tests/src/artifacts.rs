//! Where a test keeps what a person needs to see why it failed.

use std::path::{Path, PathBuf};

use crate::workspace;

/// `target/artifacts/hil/NAME/` (or `$LIFELINE_TEST_ARTIFACTS/hil/NAME/`), emptied at start.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
}

impl Artifacts {
    pub fn new(name: &str) -> Artifacts {
        let base = std::env::var_os("LIFELINE_TEST_ARTIFACTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target/artifacts"));
        let dir = base.join("hil").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Artifacts { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn write(&self, file: &str, text: &str) {
        let _ = std::fs::write(self.path(file), text);
    }

    pub fn write_bytes(&self, file: &str, bytes: &[u8]) {
        let _ = std::fs::write(self.path(file), bytes);
    }

    pub fn copy(&self, from: &Path, file: &str) {
        let _ = std::fs::copy(from, self.path(file));
    }
}
