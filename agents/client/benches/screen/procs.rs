//! Processes the benchmark starts (X servers, terminals, the relay, the VNC server and
//! viewer), each owned by a [`Proc`] that stops it when dropped, so every way out of the
//! benchmark (success, error, panic, Ctrl-C) leaves nothing running.
//!
//! A process is asked to stop with SIGTERM and killed with SIGKILL when it has not exited
//! within [`STOP_GRACE`]. Its output goes to a log file in the benchmark's temporary folder,
//! quoted when it exits early.
//!
//! Also here: the check for the tools the benchmark needs, the Ctrl-C flag every waiting loop
//! looks at, and [`poll_until`], the one way the benchmark waits for a condition.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::error::{BenchError, Result};

/// How long a process may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Marks the run as interrupted (from the Ctrl-C handler).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps until `t` (a schedule, not a wait for a condition), waking for Ctrl-C.
pub fn sleep_until(t: Instant) -> Result<()> {
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= t {
            return Ok(());
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// Calls `f` every `every` until it gives `Some`, or fails after `limit`.
pub fn poll_until<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        check_interrupt()?;
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(BenchError::Timeout {
                what: what.to_owned(),
                limit,
            });
        }
        std::thread::sleep(every);
    }
}

/// A tool the benchmark runs, and the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("Xvfb", "xvfb"),
    ("xterm", "xterm"),
    ("xsetroot", "x11-xserver-utils"),
    ("convert", "imagemagick"),
    ("less", "less"),
];
const VNC_TOOLS: &[(&str, &str)] = &[("x11vnc", "x11vnc"), ("xtightvncviewer", "xtightvncviewer")];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    })
}

/// Fails with the list of missing tools and their packages.
pub fn check_tools(vnc: bool) -> Result<()> {
    let wanted = TOOLS
        .iter()
        .chain(if vnc { VNC_TOOLS } else { &[] as &[_] });
    let missing: Vec<&(&str, &str)> = wanted.filter(|(t, _)| !on_path(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    Err(BenchError::Missing {
        tools: missing
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages.join(" "),
    })
}

/// A child process, stopped on drop.
pub struct Proc {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed and its output appended to `log`.
    pub fn spawn(what: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| BenchError::File {
                what: "cannot open a log file",
                path: log.display().to_string(),
                source,
            })?;
        let err = out
            .try_clone()
            .map_err(BenchError::io("cannot open a log file"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: what.to_owned(),
                source,
            })?;
        Ok(Proc {
            what: what.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Err` when the process has exited (with the end of its log).
    pub fn check(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(BenchError::Io {
                what: format!("cannot check on {}", self.what),
                source: e,
            }),
        }
    }

    /// For a short job: `None` while it runs, then whether it succeeded.
    pub fn finished(&mut self) -> Result<Option<bool>> {
        self.child
            .try_wait()
            .map(|s| s.map(|s| s.success()))
            .map_err(|e| BenchError::Io {
                what: format!("cannot check on {}", self.what),
                source: e,
            })
    }

    fn exited(&self, status: String) -> BenchError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        BenchError::Exited {
            what: self.what.clone(),
            status,
            log: format!("{} ({})", tail.join(" | "), self.log.display()),
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; waits for the process.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private Xvfb on a free display (`-displayfd`), with a solid background.
pub struct Xvfb {
    pub display: String,
    proc: Proc,
}

impl Xvfb {
    pub fn start(what: &str, size: &str, background: &str, dir: &Path) -> Result<Xvfb> {
        let log = dir.join(format!("{what}.log"));
        let mut cmd = Command::new("Xvfb");
        cmd.args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            size,
            "-nolisten",
            "tcp",
            "-noreset",
        ]);
        // The display number comes on stdout: read it from a pipe, everything else to the log.
        let out = std::fs::File::create(&log).map_err(|source| BenchError::File {
            what: "cannot create a log file",
            path: log.display().to_string(),
            source,
        })?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(out)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: format!("Xvfb ({what})"),
                source,
            })?;
        let stdout = child.stdout.take();
        let mut proc = Proc {
            what: format!("Xvfb ({what})"),
            child,
            log,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let line = poll_until(
            "Xvfb to report its display",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                proc.check()?;
                Ok(rx.try_recv().ok())
            },
        )?;
        let n: u32 = line.trim().parse().map_err(|_| BenchError::Exited {
            what: format!("Xvfb ({what})"),
            status: format!("reported {line:?} as its display"),
            log: String::new(),
        })?;
        let x = Xvfb {
            display: format!(":{n}"),
            proc,
        };
        x.run_tool("xsetroot", &["-solid", background])?;
        Ok(x)
    }

    /// Runs an X client tool to completion on this display.
    pub fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let st = Command::new(tool)
            .args(args)
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| BenchError::Spawn {
                what: tool.to_owned(),
                source,
            })?;
        if st.success() {
            Ok(())
        } else {
            Err(BenchError::Exited {
                what: format!("{tool} {}", args.join(" ")),
                status: st.to_string(),
                log: String::new(),
            })
        }
    }

    pub fn check(&mut self) -> Result<()> {
        self.proc.check()
    }
}
