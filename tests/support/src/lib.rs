//! What the tests of several crates share (a dev-dependency only, never in a product binary).
//!
//! [`Xvfb`]: a private X server for one test, on a display it picks itself (`-displayfd`, so
//! parallel tests never race for a display number), driven with xdotool and photographed
//! with ImageMagick's `import`, as a person at the screen would. Needs the Debian packages
//! `xvfb`, `xdotool` and `imagemagick` (`cargo xtask test` installs them).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A private X server, killed on drop.
pub struct Xvfb {
    child: Child,
    /// `:N`, for `DISPLAY`.
    pub display: String,
}

impl std::fmt::Debug for Xvfb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xvfb")
            .field("display", &self.display)
            .finish()
    }
}

impl Xvfb {
    /// A 1280x800 screen.
    pub fn start() -> Xvfb {
        Self::start_sized("1280x800x24")
    }

    /// One screen of `geometry` (e.g. `1920x1080x24`). The server does not reset when its
    /// last client leaves (monitors defined with RandR would be forgotten).
    pub fn start_sized(geometry: &str) -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", geometry])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb must be installed (Debian package xvfb; cargo xtask test installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        match line.trim().parse::<u32>() {
            Ok(n) => Xvfb {
                child,
                display: format!(":{n}"),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Xvfb did not start (it reported {line:?} as its display)");
            }
        }
    }

    /// Runs an X client to completion on this display and checks it succeeded.
    pub fn run(&self, program: &str, args: &[&str]) {
        let status = Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(status.success(), "{program} {args:?} failed: {status}");
    }

    /// Runs xdotool; panics if it fails; returns what it printed.
    pub fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool must be installed (Debian package xdotool)");
        assert!(
            out.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs xdotool and reports whether it succeeded (windows may come and go meanwhile).
    pub fn try_xdotool(&self, args: &[&str]) -> bool {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A visible window whose name contains `name`, if there is one now.
    pub fn find_window(&self, name: &str) -> Option<String> {
        let out = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", name])
            .env("DISPLAY", &self.display)
            .output()
            .ok()?;
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .to_string();
        (!id.is_empty()).then_some(id)
    }

    /// The whole screen as a PNG file (best effort: a missing picture loses no verdict).
    pub fn screenshot(&self, path: &Path) {
        let _ = Command::new("import")
            .args(["-window", "root"])
            .arg(path)
            .env("DISPLAY", &self.display)
            .status();
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_get_two_displays_and_answer() {
        let (a, b) = (Xvfb::start(), Xvfb::start_sized("640x480x24"));
        assert_ne!(a.display, b.display);
        assert_eq!(b.xdotool(&["getdisplaygeometry"]), "640 480");
        assert!(a.find_window("no such window").is_none());
    }
}
