//! The two systems measured, behind one [`Peer`] interface so every scenario runs the same
//! code against both:
//!
//! * [`Ours`]: a private Xvfb, the real relay, the real agent library streaming that Xvfb,
//!   and the measuring console ([`super::console`]) on `/ws/view/{session}`, connected
//!   through a counting proxy (for the bytes on the wire);
//! * [`Vnc`]: a second private Xvfb served by `x11vnc -localhost -nopw -shared -forever`,
//!   and `xtightvncviewer -encodings "tight copyrect" -quality 6 -compresslevel 9` on a
//!   third Xvfb (big enough to show the whole desktop 1:1), connected through the counting
//!   proxy; its bytes are the proxy's server → client count.
//!
//! Both give "the picture the viewer shows": our console's decoded canvas, and for VNC the
//! viewer window's pixels read back from its X server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeline_proto::remote::{InputEvent, Quality, StreamSettings};

use super::agent::{Agent, CpuSample, process_cpu_s};
use super::console::Console;
use super::error::{BenchError, Result};
use super::procs::{Proc, Xvfb, poll_until};
use super::proxy::Proxy;
use super::relay::Relay;
use super::x11::{Win, XClient};

pub const W: u32 = 1920;
pub const H: u32 = 1080;
/// The desktop's solid background (xsetroot).
pub const BACKGROUND: &str = "#3a6ea5";

/// A desktop: a private Xvfb 1920x1080x24 with a solid background and no window manager,
/// and the benchmark's X connection to it.
pub struct Desk {
    pub x: XClient,
    pub xvfb: Xvfb,
    pub dir: PathBuf,
}

impl Desk {
    pub fn start(what: &str, dir: &Path) -> Result<Desk> {
        let xvfb = Xvfb::start(what, &format!("{W}x{H}x24"), BACKGROUND, dir)?;
        let x = XClient::connect(&xvfb.display)?;
        Ok(Desk {
            x,
            xvfb,
            dir: dir.to_owned(),
        })
    }

    /// Starts an xterm named `name` at `geometry` running `command`, and waits for its window.
    pub fn xterm(&self, name: &str, geometry: &str, command: &[&str]) -> Result<(Proc, Win)> {
        let mut cmd = Command::new("xterm");
        cmd.env("DISPLAY", &self.xvfb.display)
            .args([
                "-name",
                name,
                "-geometry",
                geometry,
                "-fn",
                "fixed",
                "+sb",
                "-e",
            ])
            .args(command);
        let log = self.dir.join(format!("{name}.log"));
        let mut p = Proc::spawn(&format!("xterm ({name})"), &mut cmd, &log)?;
        let win = poll_until(
            &format!("the xterm window {name}"),
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                p.check()?;
                self.x.find_window(name)
            },
        )?;
        Ok((p, win))
    }
}

/// A system under measurement.
pub trait Peer {
    /// Prefix of its figures: "" for ours, "vnc_" for the peer.
    fn prefix(&self) -> &'static str;
    fn desk(&self) -> &Desk;
    /// Stream bytes counted so far (ours: screen and cursor messages at the console; VNC:
    /// bytes server → client).
    fn bytes(&self) -> u64;
    /// Bytes on the TCP connection to the viewer.
    fn wire_bytes(&self) -> u64;
    /// When the last stream byte arrived.
    fn last_activity(&self) -> Option<Instant>;
    /// Presses and releases a key through the viewer (the representative typing).
    fn viewer_key(&mut self, keysym: u32) -> Result<()>;
    /// The console's quality choice (the peer's viewer has a fixed quality: nothing to do).
    fn set_quality(&mut self, _quality: Quality) -> Result<()> {
        Ok(())
    }
    /// What the viewer shows of an area of the desktop.
    fn picture(&mut self, x: i32, y: i32, w: u32, h: u32) -> Result<Vec<u32>>;
    /// A CPU sample of the serving side (our agent's threads; x11vnc).
    fn cpu(&self) -> CpuMark;
    /// `Err` when a part died.
    fn check(&mut self) -> Result<()>;
}

/// CPU time of the serving side, to subtract.
#[derive(Debug, Clone)]
pub enum CpuMark {
    Agent(CpuSample),
    Process(f64),
}

impl CpuMark {
    /// (CPU seconds of the whole serving side, of its screen threads) since `earlier`.
    pub fn since(&self, earlier: &CpuMark) -> (f64, f64) {
        match (self, earlier) {
            (CpuMark::Agent(a), CpuMark::Agent(b)) => a.since(b),
            (CpuMark::Process(a), CpuMark::Process(b)) => (a - b, a - b),
            _ => (0.0, 0.0),
        }
    }
}

/// Waits until nothing has arrived for `quiet`.
pub fn settle(peer: &mut dyn Peer, quiet: Duration, limit: Duration, what: &str) -> Result<()> {
    let start = Instant::now();
    poll_until(
        &format!("the {}stream to go quiet ({what})", peer.prefix()),
        limit,
        Duration::from_millis(25),
        || {
            peer.check()?;
            let last = peer.last_activity().unwrap_or(start).max(start);
            Ok((last.elapsed() >= quiet).then_some(()))
        },
    )
}

pub struct Ours {
    // Dropped in this order: the viewer, the agent, the relay, the desktop.
    pub console: Console,
    wire: Proxy,
    pub agent: Agent,
    pub relay: Relay,
    pub sid: String,
    pub desk: Desk,
}

impl Ours {
    pub fn start(dir: &Path, relay_bin: &Path, rt: &tokio::runtime::Handle) -> Result<Ours> {
        let desk = Desk::start("ours-desktop", dir)?;
        let relay = Relay::start(relay_bin, dir, rt)?;
        let ticket = rt.block_on(relay.ticket())?;
        let agent = Agent::start(ticket, &desk.xvfb.display)?;
        let sid = poll_until(
            "the customer's session in the queue",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                agent.check()?;
                rt.block_on(relay.waiting_session())
            },
        )?;
        rt.block_on(relay.accept(&sid))?;
        for permission in ["view", "control"] {
            // `control` waits for `view` (409 until then).
            poll_until(
                &format!("the relay to take the {permission} request"),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || {
                    agent.check()?;
                    Ok((rt.block_on(relay.ask(&sid, permission))? == 200).then_some(()))
                },
            )?;
            poll_until(
                &format!("the customer to grant {permission}"),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || {
                    agent.check()?;
                    let s = rt.block_on(relay.session(&sid))?;
                    Ok(s["permissions"]
                        .as_array()
                        .is_some_and(|l| {
                            l.iter()
                                .any(|p| p["permission"] == permission && p["state"] == "granted")
                        })
                        .then_some(()))
                },
            )?;
        }
        let wire = rt.block_on(Proxy::start(relay.addr.clone()))?;
        let console = rt.block_on(Console::open(
            &format!("127.0.0.1:{}", wire.port),
            &relay.addr,
            &relay.pin,
            &relay.token,
            &sid,
        ))?;
        console.wait(
            "the first key frame at the console",
            Duration::from_secs(30),
            |k| k.key_frames > 0,
        )?;
        Ok(Ours {
            console,
            wire,
            agent,
            relay,
            sid,
            desk,
        })
    }
}

impl Peer for Ours {
    fn prefix(&self) -> &'static str {
        ""
    }

    fn desk(&self) -> &Desk {
        &self.desk
    }

    fn bytes(&self) -> u64 {
        self.console.counts().bytes()
    }

    fn wire_bytes(&self) -> u64 {
        self.wire.to_client()
    }

    fn last_activity(&self) -> Option<Instant> {
        self.console.counts().last_binary
    }

    fn set_quality(&mut self, quality: Quality) -> Result<()> {
        self.console.stream(StreamSettings {
            monitor: None,
            quality,
        })
    }

    fn viewer_key(&mut self, keysym: u32) -> Result<()> {
        for down in [true, false] {
            self.console.input(InputEvent::Key {
                keysym,
                down,
                code: String::new(),
            })?;
        }
        Ok(())
    }

    fn picture(&mut self, x: i32, y: i32, w: u32, h: u32) -> Result<Vec<u32>> {
        Ok(self.console.picture(x, y, w, h))
    }

    fn cpu(&self) -> CpuMark {
        CpuMark::Agent(CpuSample::now())
    }

    fn check(&mut self) -> Result<()> {
        self.desk.xvfb.check()?;
        self.relay.check()?;
        self.agent.check()?;
        self.console.check()
    }
}

pub struct Vnc {
    viewer: Proc,
    proxy: Proxy,
    server: Proc,
    /// The viewer's X server and the benchmark's connection to it.
    view_x: XClient,
    view_xvfb: Xvfb,
    /// The viewer's top-level window and the innermost window (the desktop widget).
    viewer_win: Win,
    viewer_inner: u32,
    pub desk: Desk,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(BenchError::io("cannot find a free loopback port"))?;
    Ok(l.local_addr()
        .map_err(BenchError::io("cannot find a free loopback port"))?
        .port())
}

impl Vnc {
    pub fn start(dir: &Path, rt: &tokio::runtime::Handle) -> Result<Vnc> {
        let desk = Desk::start("vnc-desktop", dir)?;
        let port = free_port()?;
        let mut cmd = Command::new("x11vnc");
        cmd.args(["-display", &desk.xvfb.display])
            .args(["-localhost", "-nopw", "-shared", "-forever"])
            .args(["-rfbport", &port.to_string()]);
        let mut server = Proc::spawn("x11vnc", &mut cmd, &dir.join("x11vnc.log"))?;
        poll_until(
            "x11vnc to listen",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                server.check()?;
                Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(drop))
            },
        )?;
        let proxy = rt.block_on(Proxy::start(format!("127.0.0.1:{port}")))?;
        let view_xvfb = Xvfb::start("vnc-viewer-display", "2048x1280x24", "#202020", dir)?;
        let view_x = XClient::connect(&view_xvfb.display)?;
        let mut cmd = Command::new("xtightvncviewer");
        cmd.env("DISPLAY", &view_xvfb.display)
            .args([
                "-encodings",
                "tight copyrect",
                "-quality",
                "6",
                "-compresslevel",
                "9",
            ])
            .arg(format!("127.0.0.1::{}", proxy.port));
        let mut viewer = Proc::spawn("xtightvncviewer", &mut cmd, &dir.join("vncviewer.log"))?;
        let viewer_win = poll_until(
            "the VNC viewer's window",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                viewer.check()?;
                Ok(view_x
                    .find_window("Vncviewer")?
                    .filter(|w| w.w >= W && w.h >= H))
            },
        )?;
        let viewer_inner = view_x.innermost(viewer_win.id)?;
        let mut v = Vnc {
            viewer,
            proxy,
            server,
            view_x,
            view_xvfb,
            viewer_win,
            viewer_inner,
            desk,
        };
        // The first update of a plain background is small: wait for it, then for quiet.
        poll_until(
            "the first picture at the VNC viewer",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                v.check()?;
                Ok((v.proxy.to_client() > 0).then_some(()))
            },
        )?;
        settle(
            &mut v,
            Duration::from_secs(1),
            Duration::from_secs(30),
            "first picture",
        )?;
        Ok(v)
    }
}

impl Peer for Vnc {
    fn prefix(&self) -> &'static str {
        "vnc_"
    }

    fn desk(&self) -> &Desk {
        &self.desk
    }

    fn bytes(&self) -> u64 {
        self.proxy.to_client()
    }

    fn wire_bytes(&self) -> u64 {
        self.proxy.to_client()
    }

    fn last_activity(&self) -> Option<Instant> {
        self.proxy.counters.last_to_client()
    }

    fn viewer_key(&mut self, keysym: u32) -> Result<()> {
        self.view_x.focus(self.viewer_inner)?;
        self.view_x.key(keysym)
    }

    fn picture(&mut self, x: i32, y: i32, w: u32, h: u32) -> Result<Vec<u32>> {
        // The desktop widget sits at the top-left of the viewer's window, 1:1.
        self.view_x.grab(self.viewer_win.id, x, y, w, h)
    }

    fn cpu(&self) -> CpuMark {
        CpuMark::Process(process_cpu_s(self.server.id()))
    }

    fn check(&mut self) -> Result<()> {
        self.desk.xvfb.check()?;
        self.view_xvfb.check()?;
        self.server.check()?;
        self.viewer.check()
    }
}
