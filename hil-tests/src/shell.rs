//! The command channel of a development image: a root shell reading commands from a
//! virtio-serial port (QEMU) or a serial line (a real box).
//!
//! Each command is sent as one line framed by markers with a fresh number:
//! `echo <begin>; { CMD; } 2>&1; echo "<end> $?"`. Output between the markers is the
//! command's; anything else (a shell that restarted after a reboot, output of an earlier
//! command that timed out) is ignored. After a reboot [`Shell::wait_ready`] waits until a
//! new shell answers.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What a command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub text: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

pub struct Shell {
    writer: Box<dyn Write + Send>,
    bytes: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    seq: u64,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell").field("seq", &self.seq).finish()
    }
}

impl Shell {
    /// A shell over a byte stream: `reader` and `writer` are two handles on the same channel.
    pub fn new(mut reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Shell {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("hil-shell-reader".into())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) => {
                            // A serial line or a socket whose peer went away for a moment
                            // (guest reboot): keep trying.
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(n) => {
                            if tx.send(chunk[..n].to_vec()).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
            })
            .expect("spawn the shell reader");
        Shell {
            writer,
            bytes: rx,
            buf: Vec::new(),
            seq: 0,
        }
    }

    fn markers(&mut self) -> (String, String) {
        self.seq += 1;
        let n = self.seq;
        let pid = std::process::id();
        (
            format!("__HIL_B_{pid}_{n}__"),
            format!("__HIL_E_{pid}_{n}__"),
        )
    }

    /// Waits for text matching `done` in the stream; returns the buffer up to there.
    fn read_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&str) -> Option<usize>,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(end) = done(&text) {
                let consumed = text[..end].len();
                // Drop what was read, by byte count of the lossy text (same for UTF-8 input).
                let cut = consumed.min(self.buf.len());
                self.buf.drain(..cut);
                return Some(text[..end].to_string());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.bytes.recv_timeout(deadline - now) {
                Ok(b) => self.buf.extend_from_slice(&b),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits until a shell answers (after boot or reboot).
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let (b, _) = self.markers();
            let _ = self
                .writer
                .write_all(format!("echo {b}\n").as_bytes())
                .and_then(|_| self.writer.flush());
            let probe = b.clone();
            if self
                .read_until(Duration::from_secs(2), |t| {
                    t.find(&format!("{probe}\n")).map(|i| i + probe.len() + 1)
                })
                .is_some()
            {
                return Ok(());
            }
        }
        Err(format!(
            "the guest's command channel did not answer within {limit:?}"
        ))
    }

    /// Runs `cmd` (one line of bash) and returns its output and status.
    pub fn run_timeout(&mut self, cmd: &str, limit: Duration) -> Result<Output, String> {
        assert!(!cmd.contains('\n'), "one line per command: {cmd:?}");
        let (b, e) = self.markers();
        let line = format!("echo {b}; {{ {cmd} ; }} </dev/null 2>&1; echo \"{e} $?\"\n");
        self.writer
            .write_all(line.as_bytes())
            .and_then(|_| self.writer.flush())
            .map_err(|err| format!("cannot write to the command channel: {err}"))?;
        let end_marker = e.clone();
        let got = self
            .read_until(limit, |t| {
                let i = t.find(&format!("{end_marker} "))?;
                let rest = &t[i..];
                let nl = rest.find('\n')?;
                Some(i + nl + 1)
            })
            .ok_or_else(|| format!("`{cmd}` did not finish within {limit:?}"))?;
        let start = got
            .find(&format!("{b}\n"))
            .map(|i| i + b.len() + 1)
            .unwrap_or(0);
        let end = got.find(&format!("{e} ")).unwrap_or(got.len());
        let status = got[end + e.len() + 1..].trim().parse::<i32>().unwrap_or(-1);
        Ok(Output {
            status,
            text: got[start..end.max(start)].to_string(),
        })
    }

    /// Runs `cmd` with a 60 s limit.
    pub fn run(&mut self, cmd: &str) -> Result<Output, String> {
        self.run_timeout(cmd, Duration::from_secs(60))
    }

    /// Runs `cmd` and fails unless it exits 0; returns its output.
    pub fn ok(&mut self, cmd: &str) -> String {
        let o = self.run(cmd).unwrap_or_else(|e| panic!("{e}"));
        assert!(o.ok(), "`{cmd}` exited {}:\n{}", o.status, o.text);
        o.text
    }

    /// Sends a command without waiting for it (e.g. `systemctl reboot`).
    pub fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.writer
            .write_all(format!("{cmd}\n").as_bytes())
            .and_then(|_| self.writer.flush())
            .map_err(|e| format!("cannot write to the command channel: {e}"))
    }
}

impl Shell {
    /// Calls a method of `org.lifeline.Supervisor1` as the Unix user `user` (the supervisor
    /// authorises callers by their user), e.g. `("lifeline-relay", "RestartService", "ss",
    /// &["relay", "hil"])`. Arguments are single-quoted for the guest's shell.
    pub fn supervisor_call(
        &mut self,
        user: &str,
        method: &str,
        signature: &str,
        args: &[&str],
    ) -> Result<Output, String> {
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        self.run(&format!(
            "runuser -u {user} -- busctl --system call org.lifeline.Supervisor1 /org/lifeline/Supervisor1 org.lifeline.Supervisor1 {method} {signature} {}",
            quoted.join(" ")
        ))
    }

    /// Writes `bytes` to `path` in the guest (through base64 on the command line, in pieces
    /// the channel carries comfortably).
    pub fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), String> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let tmp = format!("{path}.hil-b64");
        self.run(&format!(": > '{tmp}'"))?;
        for piece in b64.as_bytes().chunks(2000) {
            let piece = String::from_utf8_lossy(piece);
            let o = self.run(&format!("printf %s '{piece}' >> '{tmp}'"))?;
            if !o.ok() {
                return Err(format!("cannot write {tmp}: {}", o.text));
            }
        }
        let o = self.run(&format!("base64 -d '{tmp}' > '{path}' && rm -f '{tmp}'"))?;
        if o.ok() {
            Ok(())
        } else {
            Err(format!("cannot write {path}: {}", o.text))
        }
    }

    /// The supervisor's status object (`GetStatus` on `org.lifeline.Supervisor1`), or why
    /// it could not be read.
    pub fn supervisor_status(&mut self) -> Result<serde_json::Value, String> {
        let o = self.run(
            "busctl --system --json=short call org.lifeline.Supervisor1 /org/lifeline/Supervisor1 org.lifeline.Supervisor1 GetStatus",
        )?;
        if !o.ok() {
            return Err(format!("GetStatus failed: {}", o.text));
        }
        let reply: serde_json::Value = serde_json::from_str(o.text.trim())
            .map_err(|e| format!("busctl answer is not JSON ({e}): {}", o.text))?;
        let json = reply["data"][0]
            .as_str()
            .ok_or_else(|| format!("GetStatus returned no string: {}", o.text))?;
        serde_json::from_str(json).map_err(|e| format!("the status is not JSON ({e}): {json}"))
    }
}
