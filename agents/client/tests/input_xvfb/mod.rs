//! Test helpers shared by the input and clipboard tests: a private Xvfb server, `xev` as a
//! recording X client with its output parsed, and polling with a deadline.
//!
//! Set `XEV_LOG=/some/file` to get xev's raw output appended there when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, InputFocus, MapState};
use x11rb::rust_connection::RustConnection;

/// How long anything in these tests may take to show up.
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` until it returns `Some`, or panics with `what` after [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub use lifeline_test_support::Xvfb;

/// A plain X connection to `x` for checks made by the test itself.
pub fn connect(x: &Xvfb) -> RustConnection {
    x11rb::connect(Some(&x.display)).expect("connect to Xvfb").0
}

/// An event `xev` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XevEvent {
    KeyPress {
        keycode: u8,
        keysym: u32,
        state: u32,
        /// What `XmbLookupString` made of it (UTF-8 locale).
        text: String,
    },
    KeyRelease {
        keycode: u8,
        keysym: u32,
        state: u32,
    },
    ButtonPress {
        button: u8,
        root: (i32, i32),
    },
    ButtonRelease {
        button: u8,
        root: (i32, i32),
    },
    Motion {
        root: (i32, i32),
    },
    Other(String),
}

/// `xev` with a full-screen window that has the input focus; its output parsed.
pub struct Xev {
    child: Child,
    events: mpsc::Receiver<XevEvent>,
    pub window: u32,
}

impl Xev {
    pub fn start(x: &Xvfb) -> Xev {
        let mut child = Command::new("xev")
            .args([
                "-display",
                &x.display,
                "-geometry",
                "1280x800+0+0",
                "-bw",
                "0",
            ])
            .args(["-event", "keyboard", "-event", "mouse", "-event", "button"])
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("xev must be installed (Debian package x11-utils)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (win_tx, win_rx) = mpsc::channel();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut block: Vec<String> = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(path) = std::env::var("XEV_LOG") {
                    use std::io::Write as _;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path)
                    {
                        let _ = writeln!(f, "{line}");
                    }
                }
                if let Some(rest) = line.strip_prefix("Outer window is ") {
                    let hex = rest.split(',').next().unwrap_or("").trim();
                    let _ = win_tx.send(parse_hex(hex));
                    continue;
                }
                // xev starts each event with a blank line, so an event is known complete
                // by its own last line (keys: XFilterEvent; pointer: same_screen), or, for
                // events the tests ignore, by the blank line that starts the next one.
                let complete = if line.trim().is_empty() {
                    !block.is_empty()
                } else {
                    let first = block.first().unwrap_or(&line).clone();
                    let last_line = if first.starts_with("Key") {
                        line.contains("XFilterEvent")
                    } else if first.starts_with("Button") || first.starts_with("MotionNotify") {
                        line.contains("same_screen")
                    } else {
                        false
                    };
                    block.push(line);
                    last_line
                };
                if complete {
                    if tx.send(parse_block(&block)).is_err() {
                        break;
                    }
                    block.clear();
                }
            }
        });
        let window = win_rx
            .recv_timeout(WAIT)
            .expect("xev did not print its window")
            .expect("window id");
        let conn = connect(x);
        wait_for("the xev window to be mapped", || {
            let attrs = conn.get_window_attributes(window).ok()?.reply().ok()?;
            (attrs.map_state == MapState::VIEWABLE).then_some(())
        });
        conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)
            .unwrap()
            .check()
            .unwrap();
        conn.flush().unwrap();
        Xev {
            child,
            events,
            window,
        }
    }

    /// Events until `done` says the list is complete; panics after [`WAIT`].
    pub fn collect(&self, what: &str, mut done: impl FnMut(&[XevEvent]) -> bool) -> Vec<XevEvent> {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => got.push(ev),
                Err(_) => panic!("timed out waiting for {what}; got {got:#?}"),
            }
        }
        got
    }

    /// Throws away everything printed so far.
    pub fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }
}

impl Drop for Xev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// The text after `key` up to the first of `ends`.
fn field<'a>(block: &'a str, key: &str, ends: &[char]) -> Option<&'a str> {
    let start = block.find(key)? + key.len();
    let rest = &block[start..];
    let end = rest.find(|c| ends.contains(&c)).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_block(lines: &[String]) -> XevEvent {
    let all = lines.join("\n");
    let name = all.split_whitespace().next().unwrap_or("").to_owned();
    let root = || -> Option<(i32, i32)> {
        let r = field(&all, "root:(", &[')'])?;
        let (x, y) = r.split_once(',')?;
        Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
    };
    let state = || field(&all, "state 0x", &[',', '\n']).and_then(parse_hex);
    let keycode = || field(&all, "keycode ", &[' ']).and_then(|s| s.parse().ok());
    let keysym = || field(&all, "(keysym 0x", &[',', ')']).and_then(parse_hex);
    let button = || field(&all, "button ", &[',', '\n']).and_then(|s| s.trim().parse().ok());
    let parsed = match name.as_str() {
        "KeyPress" => (|| {
            let bytes: Vec<u8> = match field(&all, "XmbLookupString gives ", &['\n']) {
                Some(l) => match l.split_once('(') {
                    Some((_, rest)) => rest
                        .split(')')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .filter_map(|h| u8::from_str_radix(h, 16).ok())
                        .collect(),
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            Some(XevEvent::KeyPress {
                keycode: keycode()?,
                keysym: keysym()?,
                state: state()?,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            })
        })(),
        "KeyRelease" => (|| {
            Some(XevEvent::KeyRelease {
                keycode: keycode()?,
                keysym: keysym()?,
                state: state()?,
            })
        })(),
        "ButtonPress" => (|| {
            Some(XevEvent::ButtonPress {
                button: button()?,
                root: root()?,
            })
        })(),
        "ButtonRelease" => (|| {
            Some(XevEvent::ButtonRelease {
                button: button()?,
                root: root()?,
            })
        })(),
        "MotionNotify" => root().map(|root| XevEvent::Motion { root }),
        _ => None,
    };
    parsed.unwrap_or(XevEvent::Other(name))
}
