//! A program on a new pseudo-terminal, with the customer's own rights: the command shell's
//! terminal.
//!
//! The master side is opened with `posix_openpt` (through `rustix`, no `unsafe`), the slave
//! side by its name; the program gets the slave as stdin, stdout and stderr and is started
//! through `setsid -w -c` (util-linux): a new session whose controlling terminal is that
//! slave, so job control, `^C` and `SIGWINCH` work as in any terminal, without a
//! `pre_exec` hook. The size is set on the master (`TIOCSWINSZ`), which the kernel passes
//! on to the program as `SIGWINCH`. `TERM=xterm-256color`.
//!
//! [`login_shell`] is the user's shell from the account database (`getent passwd`), else
//! `$SHELL`, else `/bin/sh`; it is started as a login shell (`-l`) in the home folder.
//!
//! Limits: Linux only; needs `setsid` from util-linux; closing hangs the terminal's session
//! up (`SIGHUP` to its process group) and kills what is left after a second.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("cannot open a pseudo-terminal: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot open the terminal {path}: {source}")]
    Slave {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the terminal's size: {0}")]
    Size(#[source] std::io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A program running on a pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    master: File,
    child: Child,
}

/// The user's login shell.
pub fn login_shell() -> PathBuf {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let from_db = (!user.is_empty())
        .then(|| {
            Command::new("getent")
                .args(["passwd", &user])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
        })
        .flatten()
        .and_then(|line| line.trim_end().rsplit(':').next().map(PathBuf::from))
        .filter(|p| p.is_absolute() && p.is_file());
    from_db
        .or_else(|| {
            std::env::var_os("SHELL")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute() && p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `program args` on a new terminal of `rows`×`cols`, in `cwd`, with `env` added.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        rows: u16,
        cols: u16,
        cwd: Option<&Path>,
        env: &[(&str, OsString)],
    ) -> Result<Pty, PtyError> {
        let io = |e: rustix::io::Errno| std::io::Error::from(e);
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| PtyError::Open(io(e)))?;
        grantpt(&master).map_err(|e| PtyError::Open(io(e)))?;
        unlockpt(&master).map_err(|e| PtyError::Open(io(e)))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| PtyError::Open(io(e)))?;
        let name = name.to_string_lossy().into_owned();
        tcsetwinsize(&master, winsize(rows, cols)).map_err(|e| PtyError::Size(io(e)))?;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(&name)
            .map_err(|source| PtyError::Slave {
                path: name.clone(),
                source,
            })?;
        let stdio = |f: &File| {
            f.try_clone()
                .map(Stdio::from)
                .map_err(|source| PtyError::Slave {
                    path: name.clone(),
                    source,
                })
        };
        let mut cmd = Command::new("setsid");
        cmd.arg("-w")
            .arg("-c")
            .arg(program)
            .args(args)
            .stdin(stdio(&slave)?)
            .stdout(stdio(&slave)?)
            .stderr(stdio(&slave)?)
            .env("TERM", "xterm-256color")
            .env_remove("COLUMNS")
            .env_remove("LINES");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd.filter(|d| d.is_dir()) {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().map_err(|source| PtyError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        drop(slave);
        Ok(Pty {
            master: File::from(master),
            child,
        })
    }

    /// A handle to read the terminal's output (blocking).
    pub fn reader(&self) -> std::io::Result<File> {
        self.master.try_clone()
    }

    /// Types `bytes` into the terminal.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.master.write_all(bytes)
    }

    /// Sets the terminal's size (the program gets `SIGWINCH`).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), PtyError> {
        tcsetwinsize(&self.master, winsize(rows, cols))
            .map_err(|e| PtyError::Size(std::io::Error::from(e)))
    }

    /// The program's process id (the leader of the terminal's session).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program's exit code once it ended (a signal counts as 128 + its number).
    pub fn try_exit_code(&mut self) -> Option<i32> {
        let status = self.child.try_wait().ok()??;
        status.code().or_else(|| status.signal().map(|s| 128 + s))
    }

    /// Waits up to `limit` for the program to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(code) = self.try_exit_code() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Hangs the terminal up: `SIGHUP` to its session's process group, then `SIGKILL` to
    /// what is left after a second. Blocks for at most that second.
    pub fn hang_up(&mut self) -> Option<i32> {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let pgid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = killpg(pgid, Signal::SIGHUP);
        let _ = killpg(pgid, Signal::SIGCONT);
        if let Some(code) = self.wait_exit(Duration::from_secs(1)) {
            return Some(code);
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.kill();
        self.wait_exit(Duration::from_secs(1))
    }
}

/// Reads what is there within `batch` after the first byte, up to `buf.len()`: fewer,
/// larger messages for a program that prints a lot, no added delay for one keystroke's echo.
/// `Ok(0)` means the terminal is gone (the program and everything on it ended).
pub fn read_batch(reader: &mut File, buf: &mut [u8], batch: Duration) -> std::io::Result<usize> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut n = match reader.read(buf) {
        Ok(n) => n,
        // Linux answers EIO once the last program on the terminal closed it.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => 0,
        Err(e) => return Err(e),
    };
    if n == 0 {
        return Ok(0);
    }
    let deadline = Instant::now() + batch;
    while n < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&*reader, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => break,
        }
        if !fds[0].revents().contains(PollFlags::IN) {
            break;
        }
        match reader.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(m) => n += m,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_sees_its_terminal_and_its_size() {
        let mut pty = Pty::spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "stty size; tty; echo $TERM; exit 3".into()],
            33,
            101,
            None,
            &[],
        )
        .unwrap();
        let mut reader = pty.reader().unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = read_batch(&mut reader, &mut buf, Duration::from_millis(5)).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("33 101"), "{text}");
        assert!(text.contains("/dev/pts/"), "{text}");
        assert!(text.contains("xterm-256color"), "{text}");
        assert_eq!(pty.wait_exit(Duration::from_secs(5)), Some(3));
    }

    #[test]
    fn resize_and_hang_up() {
        let mut pty = Pty::spawn(Path::new("/bin/sh"), &[], 24, 80, None, &[]).unwrap();
        pty.resize(50, 132).unwrap();
        pty.write_all(b"stty size\n").unwrap();
        let mut reader = pty.reader().unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&out).contains("50 132") {
            assert!(
                Instant::now() < deadline,
                "{}",
                String::from_utf8_lossy(&out)
            );
            let n = read_batch(&mut reader, &mut buf, Duration::from_millis(5)).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert!(pty.hang_up().is_some());
        assert!(login_shell().is_absolute());
    }
}
