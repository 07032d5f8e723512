//! The systemd-less service runner of the jump tests: the command of an installed unit's
//! `ExecStart=` started as a child process, with its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// Runs a downloaded jump installer into `dir` without systemd, with `home` as HOME, no
/// DISPLAY and no proxy, plus `extra` arguments.
pub fn run_installer(
    installer: &Path,
    dir: &Path,
    home: &Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(installer)
        .arg("--service-dir")
        .arg(dir)
        .arg("--no-systemd")
        .args(extra)
        .env("HOME", home)
        .env_remove("DISPLAY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap()
}

/// [`run_installer`], which must succeed.
pub fn install_ok(installer: &Path, dir: &Path, home: &Path, extra: &[&str]) {
    let out = run_installer(installer, dir, home, extra);
    assert!(
        out.status.success(),
        "installer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arguments of a unit's `ExecStart=` line (double-quoted, as the installer writes it).
pub fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart");
    let mut args = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '"' => {
                let mut arg = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' | '%' | '$' => arg.push(chars.next().unwrap()),
                        c => arg.push(c),
                    }
                }
                args.push(arg);
            }
            c => panic!("unquoted argument starting with {c:?}"),
        }
    }
    args
}

/// An installed jump client's service, run by the test.
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Starts the command of `unit`, with `DISPLAY` set to a desktop when given (the runner's
    /// stand-in for the logged-in user's X server).
    pub fn start(unit: &Path, log: PathBuf, display: Option<&str>) -> Service {
        let args = exec_start(&std::fs::read_to_string(unit).unwrap());
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&args[0]);
        match display {
            Some(d) => cmd.env("DISPLAY", d),
            None => cmd.env_remove("DISPLAY"),
        };
        let child = cmd
            .args(&args[1..])
            .env("RUST_LOG", "info")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Service { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub async fn wait_log_count(&self, needle: &str, n: usize) {
        self.wait_log_count_for(needle, n, Duration::from_secs(60))
            .await;
    }

    pub async fn wait_log_count_for(&self, needle: &str, n: usize, limit: Duration) {
        wait_for(limit, needle, async || {
            (self.count(needle) >= n).then_some(())
        })
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
