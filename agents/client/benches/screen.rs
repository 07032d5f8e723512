//! `cargo xtask bench screen`: our screen stream end to end, measured on scripted scenarios,
//! and the same scenarios served by x11vnc to a Tight VNC viewer.
//!
//! Ours: a private Xvfb 1920x1080x24 (`-noreset`, solid background, no window manager)
//! streamed by the real agent library (a `Session` with `X11Desktop`; the benchmark plays
//! the customer's window and allows `view` and `control`), through the real relay process
//! (release build, temporary data folder, a representative made with `lifeline-relay user
//! add`, the session key, portal ticket, accept and permission requests through the REST
//! API), to a measuring console on `/ws/view/{session}` that decodes and acknowledges every
//! frame like the browser does. The peer: a second Xvfb served by `x11vnc -localhost -nopw
//! -shared -forever` to `xtightvncviewer -encodings "tight copyrect" -quality 6
//! -compresslevel 9` on a third Xvfb, through a proxy that counts bytes server → client.
//!
//! Scenarios (30 s each by default; see `screen/scenes.rs` for every detail): `typing`,
//! `scroll_page`, `scroll_line`, `drag`, `photo`, `idle`. Figures go to stdout as
//! `name=value` lines as soon as they are measured; a table (ours against VNC, with the
//! ratio) goes to stderr at the end.
//!
//! Options (after `--`): `--secs N` (scenario length), `--only a,b` (scenarios, or
//! `encode`, `fullscreen`, `latency`), `--no-vnc` / `--no-ours` (one side only), `--samples N`
//! (latency samples),
//! `--keep` (keep the folder with the logs). `LIFELINE_RELAY_BIN` names the relay binary
//! (default: `target/release/lifeline-relay`, which `cargo xtask bench screen` builds).
//!
//! Needs the Debian packages xvfb, xterm, x11-xserver-utils, imagemagick and less (and
//! x11vnc, xtightvncviewer for the peer); it says which are missing. Every process it
//! starts is stopped at the end, on error and on Ctrl-C.

#![forbid(unsafe_code)]

#[path = "screen/agent.rs"]
mod agent;
#[path = "screen/canvas.rs"]
mod canvas;
#[path = "screen/console.rs"]
mod console;
#[path = "screen/error.rs"]
mod error;
#[path = "screen/peers.rs"]
mod peers;
#[path = "screen/procs.rs"]
mod procs;
#[path = "screen/proxy.rs"]
mod proxy;
#[path = "screen/relay.rs"]
mod relay;
#[path = "screen/scenes.rs"]
mod scenes;
#[path = "screen/x11.rs"]
mod x11;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use error::{BenchError, Result};
use peers::{H, Ours, Peer, Vnc, W};
use procs::{Proc, poll_until};
use scenes::{Assets, Outcome, Scenario, pct};

/// Photos made for the `photo` and full-screen runs.
const PHOTOS: u32 = 6;
const ENCODE_ROUNDS: usize = 40;
const FULLSCREEN_SECS: f64 = 10.0;

struct Args {
    secs: f64,
    only: Option<Vec<String>>,
    vnc: bool,
    ours: bool,
    samples: usize,
    keep: bool,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut a = Args {
            secs: 30.0,
            only: None,
            vnc: true,
            ours: true,
            samples: 200,
            keep: false,
        };
        let mut it = std::env::args().skip(1);
        let num = |v: Option<String>, name: &str| -> Result<f64> {
            v.and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0)
                .ok_or_else(|| BenchError::Usage(format!("{name} needs a positive number")))
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                // `cargo bench` passes this to every benchmark.
                "--bench" => {}
                "--secs" => a.secs = num(it.next(), "--secs")?,
                "--samples" => a.samples = num(it.next(), "--samples")? as usize,
                "--only" => {
                    let list = it
                        .next()
                        .ok_or_else(|| BenchError::Usage("--only needs a list".into()))?;
                    a.only = Some(list.split(',').map(str::to_owned).collect());
                }
                "--no-vnc" => a.vnc = false,
                "--no-ours" => a.ours = false,
                "--keep" => a.keep = true,
                other => {
                    return Err(BenchError::Usage(format!(
                        "unknown argument {other:?}; options: --secs N, --only a,b, --no-vnc, --no-ours, --samples N, --keep"
                    )));
                }
            }
        }
        Ok(a)
    }

    fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == name))
    }
}

/// The figures, printed as `name=value` the moment they are known.
#[derive(Default)]
struct Figures {
    values: BTreeMap<String, f64>,
}

impl Figures {
    fn put(&mut self, name: &str, value: f64) {
        let shown = if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{value:.0}")
        } else if value.is_finite() {
            format!("{value:.2}")
        } else {
            "inf".to_owned()
        };
        println!("{name}={shown}");
        let _ = std::io::stdout().flush();
        self.values.insert(name.to_owned(), value);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench screen: {}", e.chain());
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-rt")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench screen: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            procs::interrupt();
        }
    });
    let dir = match tempfile::Builder::new()
        .prefix("lifeline-bench-screen-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench screen: cannot create a temporary folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut figures = Figures::default();
    let load_before = load_average();
    let result = run(&args, rt.handle(), dir.path(), &mut figures);
    table(&args, &figures, &load_before);
    let code = match &result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench screen: {}", e.chain());
            ExitCode::FAILURE
        }
    };
    if result.is_err() || args.keep {
        let kept = dir.keep();
        eprintln!("bench screen: logs kept in {}", kept.display());
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures and the number of cores: the figures
/// (CPU shares, encode times, latency) depend on what else the machine runs.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{load} on {cores} cores")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &Args, rt: &tokio::runtime::Handle, dir: &Path, figures: &mut Figures) -> Result<()> {
    procs::check_tools(args.vnc)?;
    let relay_bin = std::env::var_os("LIFELINE_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/lifeline-relay"));
    if !relay_bin.is_file() {
        return Err(BenchError::Usage(format!(
            "no relay binary at {} (build it with `cargo build --release -p lifeline-relay`, or run `cargo xtask bench screen`)",
            relay_bin.display()
        )));
    }
    let assets = make_assets(dir)?;
    eprintln!("bench screen: working in {}", dir.display());

    if args.wants("encode") {
        let params = scenes::fast_link_params();
        let (times, cpu, bytes) =
            scenes::encode_fullscreen(&assets.photos, &params, ENCODE_ROUNDS)?;
        figures.put("fullscreen_encode_ms_p50", pct(&times, 0.5));
        figures.put("fullscreen_encode_ms_p99", pct(&times, 0.99));
        figures.put("fullscreen_encode_cpu_ms_mean", cpu);
        figures.put("fullscreen_encode_kb_per_frame", bytes / 1000.0);
        figures.put(
            "fullscreen_encode_jpeg_quality",
            f64::from(params.jpeg_quality),
        );
    }

    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| args.wants(s.name()))
        .collect();
    if args.ours {
        eprintln!("bench screen: starting ours (Xvfb, relay, agent, console)");
        let mut ours = Ours::start(dir, &relay_bin, rt)?;
        measure(&mut ours, &scenarios, args, &assets, figures)?;
        if args.wants("fullscreen") {
            let (fps, kbps, per_frame) =
                scenes::fullscreen_fps(&mut ours, FULLSCREEN_SECS, &assets)?;
            figures.put("fullscreen_fps", fps);
            figures.put("fullscreen_kbps", kbps);
            figures.put("fullscreen_kb_per_frame", per_frame / 1000.0);
        }
        if args.wants("latency") {
            let lat = scenes::latency(&mut ours, args.samples)?;
            figures.put("frame_latency_ms_p50", pct(&lat, 0.5));
            figures.put("frame_latency_ms_p99", pct(&lat, 0.99));
        }
        let record = rt.block_on(ours.relay.session(&ours.sid))?;
        if let Some(d) = record["stream"]["dropped_frames"].as_u64() {
            figures.put("relay_dropped_frames", d as f64);
        }
    }
    if args.vnc {
        eprintln!("bench screen: starting the peer (Xvfb, x11vnc, xtightvncviewer)");
        let mut vnc = Vnc::start(dir, rt)?;
        measure(&mut vnc, &scenarios, args, &assets, figures)?;
        if args.wants("latency") {
            let lat = scenes::latency(&mut vnc, args.samples)?;
            figures.put("vnc_frame_latency_ms_p50", pct(&lat, 0.5));
            figures.put("vnc_frame_latency_ms_p99", pct(&lat, 0.99));
        }
    }
    Ok(())
}

/// Runs the scenarios on one peer and records its figures.
fn measure(
    peer: &mut dyn Peer,
    scenarios: &[Scenario],
    args: &Args,
    assets: &Assets,
    figures: &mut Figures,
) -> Result<()> {
    let p = peer.prefix();
    let (mut cpu, mut secs) = (0.0, 0.0);
    let mut lossless: Option<bool> = None;
    for &s in scenarios {
        eprintln!("bench screen: {}{} ({} s)", p, s.name(), args.secs);
        let o: Outcome = scenes::run(peer, s, args.secs, assets)?;
        let n = s.name();
        figures.put(&format!("{p}{n}_kbps"), o.kbps);
        if o.actions > 0 {
            figures.put(
                &format!("{p}{n}_bytes_per_action"),
                (o.bytes as f64 / o.actions as f64).round(),
            );
        }
        if p.is_empty() {
            figures.put(&format!("{n}_wire_kbps"), o.wire_kbps);
            figures.put(&format!("{n}_agent_cpu_pct"), o.cpu_pct);
            figures.put(&format!("{n}_screen_cpu_pct"), o.screen_cpu_pct);
        } else {
            figures.put(&format!("{p}{n}_server_cpu_pct"), o.cpu_pct);
        }
        if let Some(l) = o.lossless {
            figures.put(&format!("{p}{n}_lossless"), f64::from(u8::from(l)));
            if !l {
                figures.put(&format!("{p}{n}_wrong_px"), o.wrong_px as f64);
            }
            lossless = Some(lossless.unwrap_or(true) && l);
        }
        if let Some(db) = o.psnr_db {
            figures.put(&format!("{p}{n}_psnr_db"), db);
        }
        if let Some(db) = o.psnr_shown_db {
            figures.put(&format!("{p}{n}_psnr_shown_db"), db);
        }
        cpu += o.cpu_pct * (args.secs + 1.0);
        secs += args.secs + 1.0;
    }
    if let Some(l) = lossless {
        figures.put(&format!("{p}text_lossless"), f64::from(u8::from(l)));
    }
    if secs > 0.0 {
        let name = if p.is_empty() {
            "agent_cpu_pct".to_owned()
        } else {
            format!("{p}server_cpu_pct")
        };
        figures.put(&name, cpu / secs);
    }
    Ok(())
}

/// The text for `less` (Debian's licence texts, else generated lines) and the photos
/// (ImageMagick plasma fractals, cached in `target/bench-screen`).
fn make_assets(dir: &Path) -> Result<Assets> {
    let mut text = String::new();
    if let Ok(list) = std::fs::read_dir("/usr/share/common-licenses") {
        let mut files: Vec<PathBuf> = list
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
            .collect();
        files.sort();
        for f in files {
            text.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
        }
    }
    let mut i = 0;
    while text.lines().count() < 3000 {
        i += 1;
        text.push_str(&format!(
            "{i:5}  remote support sessions scroll long texts; every line differs from the one before\n"
        ));
    }
    let text_file = dir.join("long-text.txt");
    std::fs::write(&text_file, text).map_err(|source| BenchError::File {
        what: "cannot write the text for less",
        path: text_file.display().to_string(),
        source,
    })?;

    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("bench-screen");
    std::fs::create_dir_all(&cache).map_err(|source| BenchError::File {
        what: "cannot create the picture cache",
        path: cache.display().to_string(),
        source,
    })?;
    let size = (W * H * 3) as u64;
    let path = |n: u32| cache.join(format!("plasma-{W}x{H}-{n}.rgb"));
    let mut making = Vec::new();
    for n in 1..=PHOTOS {
        if std::fs::metadata(path(n)).is_ok_and(|m| m.len() == size) {
            continue;
        }
        let tmp = cache.join(format!("plasma-{n}.tmp"));
        let mut cmd = Command::new("convert");
        cmd.args([
            "-seed",
            &n.to_string(),
            "-size",
            &format!("{W}x{H}"),
            "plasma:fractal",
        ])
        .args(["-depth", "8"])
        .arg(format!("rgb:{}", tmp.display()));
        let p = Proc::spawn("ImageMagick convert", &mut cmd, &dir.join("convert.log"))?;
        making.push((p, tmp, path(n)));
    }
    if !making.is_empty() {
        eprintln!(
            "bench screen: making {} photo-like pictures (once)",
            making.len()
        );
    }
    for (mut p, tmp, dst) in making {
        let status = poll_until(
            "ImageMagick to make a picture",
            Duration::from_secs(300),
            Duration::from_millis(100),
            || p.finished(),
        )?;
        if !status {
            return Err(BenchError::Exited {
                what: "ImageMagick convert plasma:fractal".into(),
                status: "failure".into(),
                log: dir.join("convert.log").display().to_string(),
            });
        }
        std::fs::rename(&tmp, &dst).map_err(|source| BenchError::File {
            what: "cannot store a picture",
            path: dst.display().to_string(),
            source,
        })?;
    }
    let photos = (1..=PHOTOS)
        .map(|n| {
            let p = path(n);
            let data = std::fs::read(&p).map_err(|source| BenchError::File {
                what: "cannot read a picture",
                path: p.display().to_string(),
                source,
            })?;
            if data.len() as u64 != size {
                return Err(BenchError::File {
                    what: "a picture has the wrong size (delete it to make it again)",
                    path: p.display().to_string(),
                    source: std::io::Error::other(format!("{} bytes", data.len())),
                });
            }
            Ok(data)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Assets { text_file, photos })
}

fn version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}

fn show(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_infinite() => "inf".into(),
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

/// The closing table on stderr: ours against VNC, ratio, details.
fn table(args: &Args, f: &Figures, load_before: &str) {
    let mut out = String::new();
    let line = |out: &mut String, s: &dyn Display| out.push_str(&format!("{s}\n"));
    line(&mut out, &"");
    line(
        &mut out,
        &format!(
            "screen benchmark — ours: agent → relay → console over TLS on loopback (Quality::Auto); peer: {} with xtightvncviewer {} (-encodings \"tight copyrect\" -quality 6 -compresslevel 9)",
            version("x11vnc", &["-version"]),
            version("dpkg-query", &["-W", "-f=${Version}", "xtightvncviewer"]),
        ),
    );
    line(
        &mut out,
        &format!(
            "Xvfb {W}x{H}x24, solid background, no window manager; {} s a scenario; kbit/s = stream bytes ×8 / 1000 / duration",
            args.secs
        ),
    );
    line(
        &mut out,
        &format!(
            "{:<12} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>13}",
            "scenario",
            "ours",
            "ours wire",
            "VNC",
            "ours/VNC",
            "agent %",
            "x11vnc %",
            "sharp ours/VNC"
        ),
    );
    for s in Scenario::ALL {
        let n = s.name();
        let ours = f.get(&format!("{n}_kbps"));
        let vnc = f.get(&format!("vnc_{n}_kbps"));
        if ours.is_none() && vnc.is_none() {
            continue;
        }
        let ratio = match (ours, vnc) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            (Some(a), Some(b)) if a == 0.0 && b == 0.0 => "=".into(),
            _ => "-".into(),
        };
        let sharp = if s.is_text() {
            format!(
                "{}/{}",
                show(f.get(&format!("{n}_lossless")), 0),
                show(f.get(&format!("vnc_{n}_lossless")), 0)
            )
        } else if matches!(s, Scenario::Photo | Scenario::PhotoLow) {
            format!(
                "{}/{} dB",
                show(f.get(&format!("{n}_psnr_shown_db")), 1),
                show(f.get(&format!("vnc_{n}_psnr_shown_db")), 1)
            )
        } else {
            String::new()
        };
        line(
            &mut out,
            &format!(
                "{:<12} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>13}",
                n,
                show(ours, 1),
                show(f.get(&format!("{n}_wire_kbps")), 1),
                show(vnc, 1),
                ratio,
                show(f.get(&format!("{n}_agent_cpu_pct")), 1),
                show(f.get(&format!("vnc_{n}_server_cpu_pct")), 1),
                sharp
            ),
        );
    }
    for (label, ours, vnc) in [
        (
            "frame latency p50 ms",
            "frame_latency_ms_p50",
            "vnc_frame_latency_ms_p50",
        ),
        (
            "frame latency p99 ms",
            "frame_latency_ms_p99",
            "vnc_frame_latency_ms_p99",
        ),
    ] {
        if f.get(ours).is_some() || f.get(vnc).is_some() {
            line(
                &mut out,
                &format!(
                    "{label:<22} ours {:>8}   VNC {:>8}",
                    show(f.get(ours), 1),
                    show(f.get(vnc), 1)
                ),
            );
        }
    }
    for (label, name, digits) in [
        ("full-screen encode p50 ms", "fullscreen_encode_ms_p50", 1),
        (
            "full-screen encode CPU ms",
            "fullscreen_encode_cpu_ms_mean",
            1,
        ),
        ("full-screen fps at console", "fullscreen_fps", 1),
        ("text lossless (ours)", "text_lossless", 0),
        ("text lossless (VNC)", "vnc_text_lossless", 0),
        ("agent CPU % (scenarios)", "agent_cpu_pct", 1),
        ("x11vnc CPU % (scenarios)", "vnc_server_cpu_pct", 1),
    ] {
        if let Some(v) = f.get(name) {
            line(&mut out, &format!("{label:<27} {}", show(Some(v), digits)));
        }
    }
    line(
        &mut out,
        &format!(
            "load average (1/5/15 min): {load_before} at the start, {} at the end",
            load_average()
        ),
    );
    line(&mut out, &"details:");
    for s in Scenario::ALL {
        line(&mut out, &format!("  {}: {}", s.name(), s.details()));
    }
    line(
        &mut out,
        &"  ours wire: TCP bytes relay → console (TLS, WebSocket framing, relay keepalives); VNC counts TCP bytes server → client (no TLS)",
    );
    line(
        &mut out,
        &"  sharp: text scenarios 1 = the viewer's picture equals the X server's pixels once quiet (cursor corner excluded); photo: PSNR of the same comparison while the slideshow runs (psnr_shown_db)",
    );
    eprint!("{out}");
}
