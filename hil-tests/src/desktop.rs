//! The customer's desktop on the host: a private Xvfb and the downloaded client in it,
//! driven with xdotool as a person would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

pub use lifeline_test_support::Xvfb;

/// A visible window whose name contains `name` (waits up to 30 s).
pub fn window(x: &Xvfb, name: &str) -> String {
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the client's window",
        || x.find_window(name),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The downloaded client running on the Xvfb display, its log in a file.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("log", &self.log).finish()
    }
}

impl Agent {
    pub fn run(file: &Path, x: &Xvfb, log: PathBuf) -> Agent {
        let child = Command::new(file)
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the downloaded client {}: {e}", file.display()));
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to `limit`) for `needle` in the client's log.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let r = wait_for(limit, Duration::from_millis(100), needle, || {
            self.log().contains(needle).then_some(())
        });
        assert!(
            r.is_ok(),
            "the client's log never showed `{needle}`:\n{}",
            self.log()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
