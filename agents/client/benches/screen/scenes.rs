//! The scenarios, run the same way against either [`Peer`], and the measurements that only
//! concern our own stream (full-screen encode time and frame rate).
//!
//! Every scenario: set the scene up (an xterm at +32+32, 100x45 cells of the `fixed` 6x13
//! font, focused; or a full-screen picture), park the pointer in the bottom-right corner,
//! wait until the stream has been quiet for [`QUIET`], then act on a fixed schedule for the
//! scenario's duration and count the stream's bytes from the first action until one second
//! after the end (so the last action's update is in), divided by the duration. Text
//! scenarios then wait for quiet again and compare the whole picture the viewer shows with
//! the X server's own pixels (lossless or not); the photo scenarios give the PSNR of the
//! same comparison (`psnr_db`, at rest: refinements included) and of the picture shown a
//! whole period after a change, just before the last one (`psnr_shown_db`: what the
//! representative sees during the slideshow).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lifeline_agent::screen::Pixels;
use lifeline_agent::screen::encode::{EncodeParams, FrameEncoder};
use lifeline_agent::screen::rate::Pacer;
use lifeline_proto::remote::Quality;

use super::canvas::psnr;
use super::error::{BenchError, Result};
use super::peers::{H, Ours, Peer, W, settle};
use super::procs::{check_interrupt, sleep_until};
use super::x11::{XK_DOWN, XK_PAGE_DOWN, XK_RETURN};

/// How long the stream must be silent before a measurement starts.
pub const QUIET: Duration = Duration::from_millis(1500);
/// Longest wait for quiet (a picture being refined on a busy machine takes a while).
const SETTLE_LIMIT: Duration = Duration::from_secs(90);
/// Where the pointer rests (out of the way of every scene).
pub const PARK: (i32, i32) = (W as i32 - 8, H as i32 - 8);
/// Pixels this close to the parked pointer are left out of comparisons (the VNC viewer
/// draws the cursor into its picture; ours sends it apart).
const CURSOR_BOX: i32 = 40;
const XTERM_GEOMETRY: &str = "100x45+32+32";
/// What is typed in `typing` (lower case and spaces; Return after [`LINE`] characters).
const TYPED: &str = "the quick brown fox jumps over the lazy dog while remote support watches ";
const LINE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Typing,
    ScrollPage,
    ScrollLine,
    Drag,
    Photo,
    /// The photo slideshow with the console's "low bandwidth" quality (ours; the peer's
    /// quality is fixed), to compare bytes at comparable sharpness.
    PhotoLow,
    Idle,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Typing,
        Scenario::ScrollPage,
        Scenario::ScrollLine,
        Scenario::Drag,
        Scenario::Photo,
        Scenario::PhotoLow,
        Scenario::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Typing => "typing",
            Scenario::ScrollPage => "scroll_page",
            Scenario::ScrollLine => "scroll_line",
            Scenario::Drag => "drag",
            Scenario::Photo => "photo",
            Scenario::PhotoLow => "photo_low",
            Scenario::Idle => "idle",
        }
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            Scenario::Typing | Scenario::ScrollPage | Scenario::ScrollLine
        )
    }

    /// The scene, for the table.
    pub fn details(self) -> &'static str {
        match self {
            Scenario::Typing => {
                "xterm 100x45 at +32+32 running `cat > /dev/null`; 5 keys/s through XTest on the desktop (Return every 64 characters)"
            }
            Scenario::ScrollPage => {
                "`less` of ~5900 lines (Debian's licence texts) in that xterm; Page_Down once a second, XTest on the desktop"
            }
            Scenario::ScrollLine => {
                "the same `less`; Down 5 times a second sent through the viewer (our Input events; keys to the VNC viewer's window), the pointer over the xterm (x11vnc detects scrolling only in the window under the pointer)"
            }
            Scenario::Drag => {
                "the `less` xterm moved 10 times a second along a circle of radius 150 px (12 degrees a step), button 1 held with the pointer 6 px above the window, as a title-bar drag"
            }
            Scenario::Photo => {
                "full-screen 1920x1080 plasma-fractal pictures (ImageMagick), a new one every 2 s, each shown with one CopyArea"
            }
            Scenario::PhotoLow => {
                "the same slideshow with the console's quality set to \"low bandwidth\" (ours only; the peer keeps its fixed quality 6)"
            }
            Scenario::Idle => "the `less` xterm, nothing changes",
        }
    }

    fn period(self) -> Option<Duration> {
        match self {
            Scenario::Typing | Scenario::ScrollLine => Some(Duration::from_millis(200)),
            Scenario::ScrollPage => Some(Duration::from_secs(1)),
            Scenario::Drag => Some(Duration::from_millis(100)),
            Scenario::Photo | Scenario::PhotoLow => Some(Duration::from_secs(2)),
            Scenario::Idle => None,
        }
    }
}

/// Inputs made before the run: the long text for `less` and the photos (RGB, 1920x1080).
pub struct Assets {
    pub text_file: PathBuf,
    pub photos: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub bytes: u64,
    /// Actions done (keys, moves, pictures).
    pub actions: usize,
    pub kbps: f64,
    pub wire_kbps: f64,
    /// The serving side's CPU (all its threads; for ours also the screen threads alone), in
    /// percent of one core.
    pub cpu_pct: f64,
    pub screen_cpu_pct: f64,
    /// Text scenarios: whether the viewer's picture equals the server's, and how many
    /// pixels differ.
    pub lossless: Option<bool>,
    pub wrong_px: usize,
    /// Photo: PSNR of the viewer's picture against the server's, at rest after the run.
    pub psnr_db: Option<f64>,
    /// Photo: the same while the slideshow runs (just before the last picture changes).
    pub psnr_shown_db: Option<f64>,
}

fn kbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / 1000.0 / secs
}

/// Pixel indices of a full-screen picture outside the box around the parked pointer.
fn outside_cursor(i: usize) -> bool {
    let (x, y) = ((i % W as usize) as i32, (i / W as usize) as i32);
    (x - PARK.0).abs() > CURSOR_BOX || (y - PARK.1).abs() > CURSOR_BOX
}

/// The viewer's whole picture against the server's: (differing pixels, PSNR).
fn compare(peer: &mut dyn Peer) -> Result<(usize, f64)> {
    let shown = peer.picture(0, 0, W, H)?;
    let x = &peer.desk().x;
    let server = x.grab(x.root, 0, 0, W, H)?;
    let wrong = shown
        .iter()
        .zip(&server)
        .enumerate()
        .filter(|&(i, (a, b))| a != b && outside_cursor(i))
        .count();
    Ok((wrong, psnr(&shown, &server, outside_cursor)))
}

/// Shows photos in a full-screen window: their pixmaps and the window.
struct Slideshow {
    pixmaps: Vec<u32>,
    win: u32,
}

impl Slideshow {
    fn open(peer: &dyn Peer, photos: &[Vec<u8>]) -> Result<Slideshow> {
        let x = &peer.desk().x;
        let pixmaps = photos
            .iter()
            .map(|p| x.pixmap_from_rgb(p, W, H))
            .collect::<Result<Vec<_>>>()?;
        let win = x.cover_window()?;
        let s = Slideshow { pixmaps, win };
        if let Some(&last) = s.pixmaps.last() {
            x.show(last, win)?;
        }
        Ok(s)
    }

    fn show(&self, peer: &dyn Peer, k: usize) -> Result<()> {
        let pix = self.pixmaps[k % self.pixmaps.len()];
        peer.desk().x.show(pix, self.win)
    }

    fn close(self, peer: &dyn Peer) -> Result<()> {
        let x = &peer.desk().x;
        x.destroy_window(self.win)?;
        for p in self.pixmaps {
            x.free_pixmap(p)?;
        }
        x.sync()
    }
}

pub fn run(peer: &mut dyn Peer, s: Scenario, secs: f64, assets: &Assets) -> Result<Outcome> {
    peer.set_quality(if s == Scenario::PhotoLow {
        Quality::Low
    } else {
        Quality::Auto
    })?;
    peer.desk().x.pointer_to(PARK.0, PARK.1)?;
    let mut term = None;
    let mut show = None;
    let text = assets.text_file.display().to_string();
    match s {
        Scenario::Typing => {
            term = Some(peer.desk().xterm(
                "lifeline-bench-typing",
                XTERM_GEOMETRY,
                &["sh", "-c", "cat > /dev/null"],
            )?);
        }
        Scenario::Photo | Scenario::PhotoLow => {
            show = Some(Slideshow::open(&*peer, &assets.photos)?);
        }
        _ => {
            term = Some(peer.desk().xterm(
                &format!("lifeline-bench-{}", s.name()),
                XTERM_GEOMETRY,
                &["less", &text],
            )?);
        }
    }
    if let Some((_, w)) = &term {
        peer.desk().x.focus(w.id)?;
        if s == Scenario::ScrollLine {
            // The VNC server looks for scrolling in the window under the pointer.
            peer.desk()
                .x
                .pointer_to(w.x + w.w as i32 / 2, w.y + w.h as i32 / 2)?;
        }
    }
    settle(peer, QUIET, SETTLE_LIMIT, s.name())?;

    let (b0, w0, c0) = (peer.bytes(), peer.wire_bytes(), peer.cpu());
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut actions = 0;
    let mut psnr_shown = None;
    if let Some(period) = s.period() {
        let n = (secs / period.as_secs_f64()).floor() as usize;
        actions = n;
        let typed: Vec<char> = TYPED.chars().collect();
        let mut drag_at = term.as_ref().map(|(_, w)| (w.x, w.y)).unwrap_or((32, 32));
        let (cx, cy, r) = (32.0 + 150.0, 32.0 + 150.0, 150.0f64);
        if s == Scenario::Drag {
            let x = &peer.desk().x;
            x.pointer_to(drag_at.0 + 100, drag_at.1 - 6)?;
            x.button(true)?;
        }
        for k in 0..n {
            sleep_until(t0 + period * k as u32)?;
            if k % 10 == 0 {
                peer.check()?;
            }
            match s {
                Scenario::Typing => {
                    let sym = if k % (LINE + 1) == LINE {
                        XK_RETURN
                    } else {
                        u32::from(typed[k % typed.len()])
                    };
                    peer.desk().x.key(sym)?;
                }
                Scenario::ScrollPage => peer.desk().x.key(XK_PAGE_DOWN)?,
                Scenario::ScrollLine => peer.viewer_key(XK_DOWN)?,
                Scenario::Drag => {
                    let Some((_, w)) = &term else { break };
                    let a = (225.0 + 12.0 * (k + 1) as f64).to_radians();
                    drag_at = ((cx + r * a.cos()) as i32, (cy + r * a.sin()) as i32);
                    let x = &peer.desk().x;
                    x.move_window(w.id, drag_at.0, drag_at.1)?;
                    x.pointer_to(drag_at.0 + 100, drag_at.1 - 6)?;
                }
                Scenario::Photo | Scenario::PhotoLow => {
                    if k + 1 == n && k > 0 {
                        // What the viewer shows a whole period after a change.
                        psnr_shown = Some(compare(peer)?.1);
                    }
                    if let Some(sl) = &show {
                        sl.show(&*peer, k)?;
                    }
                }
                Scenario::Idle => {}
            }
        }
        if s == Scenario::Drag {
            sleep_until(end)?;
            peer.desk().x.button(false)?;
        }
    }
    sleep_until(end + Duration::from_secs(1))?;
    peer.check()?;
    let (b1, w1, c1) = (peer.bytes(), peer.wire_bytes(), peer.cpu());
    let window = secs + 1.0;
    let (cpu, screen_cpu) = c1.since(&c0);
    let mut out = Outcome {
        bytes: b1 - b0,
        actions,
        kbps: kbps(b1 - b0, secs),
        wire_kbps: kbps(w1 - w0, secs),
        cpu_pct: cpu / window * 100.0,
        screen_cpu_pct: screen_cpu / window * 100.0,
        psnr_shown_db: psnr_shown,
        ..Default::default()
    };
    if s.is_text() || matches!(s, Scenario::Photo | Scenario::PhotoLow) {
        peer.desk().x.pointer_to(PARK.0, PARK.1)?;
        settle(peer, QUIET, SETTLE_LIMIT, &format!("{} at rest", s.name()))?;
        let (wrong, db) = compare(peer)?;
        if s.is_text() {
            out.lossless = Some(wrong == 0);
            out.wrong_px = wrong;
        } else {
            out.psnr_db = Some(db);
        }
    }
    drop(term);
    if let Some(sl) = show {
        sl.close(&*peer)?;
    }
    Ok(out)
}

/// The frame rate reaching our console while the whole screen changes continuously (the
/// photos shown in turn every 16 ms): (frames per second, kbit/s, bytes per frame).
pub fn fullscreen_fps(ours: &mut Ours, secs: f64, assets: &Assets) -> Result<(f64, f64, f64)> {
    let sl = Slideshow::open(&*ours, &assets.photos)?;
    settle(ours, QUIET, SETTLE_LIMIT, "before the full-screen run")?;
    let k0 = ours.console.counts();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut k = 0usize;
    while Instant::now() < end {
        check_interrupt()?;
        sl.show(&*ours, k)?;
        k += 1;
        sleep_until(t0 + Duration::from_millis(16) * k as u32)?;
    }
    let k1 = ours.console.counts();
    let frames = (k1.frames - k0.frames) as f64;
    let bytes = k1.bytes() - k0.bytes();
    sl.close(&*ours)?;
    Ok((
        frames / secs,
        kbps(bytes, secs),
        bytes as f64 / frames.max(1.0),
    ))
}

/// Screen change → picture at the viewer: a small area (120x20, a colour and a counter in
/// text) repainted by the benchmark's own X connection, the viewer's picture polled every
/// millisecond until it shows the new colour. `samples` changes, 20–80 ms apart. Returns
/// the latencies in ms, sorted.
pub fn latency(peer: &mut dyn Peer, samples: usize) -> Result<Vec<f64>> {
    let (x, y, w, h) = (1600, 980, 120u32, 20u32);
    peer.desk().x.pointer_to(PARK.0, PARK.1)?;
    peer.desk()
        .x
        .fill(peer.desk().x.root, x, y, w, h, 0x202020)?;
    peer.desk().x.sync()?;
    settle(peer, QUIET, SETTLE_LIMIT, "before the latency probe")?;
    let mut out = Vec::with_capacity(samples);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..samples {
        let colour = if i % 2 == 0 { 0xC03030 } else { 0x3070C0 };
        let t = Instant::now();
        {
            let xc = &peer.desk().x;
            xc.fill(xc.root, x, y, w, h, colour)?;
            xc.text(
                xc.root,
                x + 10,
                y + 15,
                &format!("sample {i:05}"),
                0xFFFFFF,
                colour,
            )?;
            xc.sync()?;
        }
        loop {
            let p = peer.picture(x + 2, y + 2, 1, 1)?;
            if p.first().is_some_and(|&c| close(c, colour)) {
                out.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                peer.check()?;
                return Err(BenchError::Timeout {
                    what: format!("the {}viewer to show latency sample {i}", peer.prefix()),
                    limit: Duration::from_secs(5),
                });
            }
            check_interrupt()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let gap = Duration::from_millis(20 + seed % 61);
        sleep_until(Instant::now() + gap)?;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// Whether two 0x00RRGGBB colours are within 12 per channel (a lossy viewer may be off by
/// a little even on a flat area).
fn close(a: u32, b: u32) -> bool {
    [0, 8, 16]
        .iter()
        .all(|s| (((a >> s) & 0xFF) as i32 - ((b >> s) & 0xFF) as i32).abs() <= 12)
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The encoding parameters `Quality::Auto` settles on for a link as fast as loopback
/// (frames of 500 KB acknowledged 5 ms after sending).
pub fn fast_link_params() -> EncodeParams {
    let mut p = Pacer::new(Quality::Auto);
    let t = Instant::now();
    for i in 0..8u32 {
        let at = t + Duration::from_millis(10) * i;
        p.on_sent(i, 500_000, at);
        p.on_ack(i, at + Duration::from_millis(5));
    }
    p.params()
}

/// CPU time this thread has used, in ms (scheduler accounting, so time other processes on
/// a busy machine took is not counted).
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

/// Full-screen encode time on one thread with the agent's own encoder: the photos (as the
/// X server shows them) in turn, every pixel changed each frame, with `params`. Returns
/// (sorted wall ms, mean thread-CPU ms, mean bytes).
pub fn encode_fullscreen(
    photos: &[Vec<u8>],
    params: &EncodeParams,
    rounds: usize,
) -> Result<(Vec<f64>, f64, f64)> {
    let pics = photos
        .iter()
        .map(|rgb| {
            let bgrx: Vec<u8> = rgb
                .chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0], 0])
                .collect();
            Pixels::from_bgrx(W, H, bgrx).ok_or_else(|| BenchError::Usage("photo size".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    if pics.len() < 2 {
        return Err(BenchError::Usage("at least two photos are needed".into()));
    }
    let fail = BenchError::Encode;
    let mut enc = FrameEncoder::new(W, H).map_err(fail)?;
    enc.current_mut().copy_from(&pics[0], pics[0].bounds());
    enc.encode(1, true, params, &[]).map_err(fail)?;
    let (mut times, mut cpu, mut bytes) = (Vec::new(), 0.0, 0.0);
    for i in 0..rounds {
        check_interrupt()?;
        let src = &pics[(i + 1) % pics.len()];
        enc.current_mut().copy_from(src, src.bounds());
        enc.mark_all_dirty();
        let (c, t) = (thread_cpu_ms(), Instant::now());
        let f = enc.encode(i as u32 + 2, false, params, &[]).map_err(fail)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        cpu += thread_cpu_ms() - c;
        bytes += f.map_or(0, |f| f.stats.bytes) as f64;
    }
    times.sort_by(f64::total_cmp);
    Ok((times, cpu / rounds as f64, bytes / rounds as f64))
}
