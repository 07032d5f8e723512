//! The customer's desktop on the host: a private Xvfb and the downloaded client in it,
//! driven with xdotool as a person would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

pub struct Xvfb {
    child: Child,
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
    /// Starts Xvfb on the first free display from :150 (other tests use :90 and up).
    pub fn start() -> Xvfb {
        for n in 150..200 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
            {
                continue;
            }
            let mut child = Command::new("Xvfb")
                .args([
                    &format!(":{n}"),
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect(
                    "Xvfb is not installed (Debian package xvfb; cargo xtask deps installs it)",
                );
            let pid = child.id().to_string();
            let ours = || {
                std::fs::read_to_string(format!("/tmp/.X{n}-lock")).is_ok_and(|s| s.trim() == pid)
            };
            let up = wait_for(
                Duration::from_secs(5),
                Duration::from_millis(50),
                "Xvfb",
                || {
                    if ours() && Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                        return Some(true);
                    }
                    child.try_wait().ok().flatten().map(|_| false)
                },
            );
            if up == Ok(true) {
                return Xvfb {
                    child,
                    display: format!(":{n}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start Xvfb on any display :150..:199");
    }

    pub fn try_xdotool(&self, args: &[&str]) -> bool {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn xdotool(&self, args: &[&str]) {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool is not installed (Debian package xdotool)");
        assert!(
            out.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A visible window whose name contains `name`.
    pub fn window(&self, name: &str) -> String {
        wait_for(
            Duration::from_secs(30),
            Duration::from_millis(100),
            "the client's window",
            || {
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
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

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
