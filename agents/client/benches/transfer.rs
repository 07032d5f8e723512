//! `cargo xtask bench transfer`: file transfer throughput through the relay on loopback,
//! and what it costs the screen.
//!
//! The same real parts as `bench screen` ("ours" side: a private Xvfb, the agent library
//! with `X11Desktop`, the release relay process, a measuring console on the viewer socket;
//! see `screen.rs`), with the agent sharing a temporary folder that holds one file of
//! `--size-mb` MiB (default 1024) of pseudo-random bytes. The benchmark allows `view`,
//! `control` and `file_transfer`, then:
//!
//! 1. measures screen frame latency with the screen idle (`--samples` probes: a rectangle
//!    painted on the X server until the console's picture shows it);
//! 2. downloads the file through `GET /api/v1/sessions/{id}/files/content` while it keeps
//!    measuring frame latency, and checks the bytes' SHA-256;
//! 3. uploads it back through `PUT .../files/content` (as `upload.bin`), again measuring
//!    latency, and checks the placed file's SHA-256.
//!
//! Figures go to stdout as `name=value` lines: `transfer_bytes`, `download_mb_s`,
//! `upload_mb_s` (MB = 10^6 bytes), and `frame_latency_ms_p50/p99` `_idle`,
//! `_during_download`, `_during_upload`. `LIFELINE_RELAY_BIN` names the relay binary
//! (default `target/release/lifeline-relay`, which `cargo xtask bench transfer` builds).
//! Options (after `--`): `--size-mb N`, `--samples N`, `--keep`.
//!
//! Needs the Debian packages of `bench screen`'s own side (xvfb, xterm, x11-xserver-utils,
//! imagemagick, less).

#![forbid(unsafe_code)]
// The scenario modules are shared with `bench screen`; this benchmark uses part of them.
#![allow(dead_code)]

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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use error::{BenchError, Result};
use peers::Ours;
use procs::poll_until;
use sha2::{Digest, Sha256};

struct Args {
    size_mb: u64,
    samples: usize,
    keep: bool,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut a = Args {
            size_mb: 1024,
            samples: 100,
            keep: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut number = |name: &str| -> Result<u64> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| BenchError::Usage(format!("{name} needs a positive number")))
            };
            match arg.as_str() {
                "--size-mb" => a.size_mb = number("--size-mb")?,
                "--samples" => a.samples = number("--samples")? as usize,
                "--keep" => a.keep = true,
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                other => {
                    return Err(BenchError::Usage(format!(
                        "unknown argument {other:?}; options: --size-mb N, --samples N, --keep"
                    )));
                }
            }
        }
        Ok(a)
    }
}

fn put(name: &str, value: f64) {
    if value.is_finite() && value.fract() == 0.0 {
        println!("{name}={value:.0}");
    } else {
        println!("{name}={value:.2}");
    }
    let _ = std::io::stdout().flush();
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench transfer: {}", e.chain());
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench transfer: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench transfer: cannot create a temporary folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&args, rt.handle(), dir.path());
    let code = match &result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench transfer: {}", e.chain());
            ExitCode::FAILURE
        }
    };
    if result.is_err() || args.keep {
        let kept = dir.keep();
        eprintln!("bench transfer: logs kept in {}", kept.display());
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Writes `size` pseudo-random bytes to `path`; their SHA-256.
fn make_file(path: &Path, size: u64) -> Result<String> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).map_err(BenchError::io("cannot create the test file"))?,
    );
    let mut hasher = Sha256::new();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for c in block.chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.copy_from_slice(&s.to_le_bytes()[..c.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        f.write_all(&block[..n])
            .map_err(BenchError::io("cannot write the test file"))?;
        left -= n as u64;
    }
    f.flush()
        .map_err(BenchError::io("cannot write the test file"))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Frame latency probes, in rounds of ten, until `done` says the transfer is over.
fn probe_while(ours: &mut Ours, done: impl Fn() -> bool) -> Result<Vec<f64>> {
    let mut all = Vec::new();
    while !done() {
        all.extend(scenes::latency(ours, 10)?);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

fn api_error(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Session(format!("{what}: {e}"))
}

fn run(args: &Args, rt: &tokio::runtime::Handle, dir: &Path) -> Result<()> {
    procs::check_tools(false)?;
    let share = dir.join("share");
    std::fs::create_dir_all(&share).map_err(BenchError::io("cannot create the shared folder"))?;
    let size = args.size_mb * 1024 * 1024;
    let sha = make_file(&share.join("big.bin"), size)?;
    put("transfer_bytes", size as f64);
    let _ = agent::FILES_ROOT.set(share.clone());
    let relay_bin = std::env::var_os("LIFELINE_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/lifeline-relay")
        });
    let mut ours = Ours::start(dir, &relay_bin, rt)?;
    let sid = ours.sid.clone();
    poll_until(
        "the customer to allow file transfer",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let s = rt.block_on(ours.relay.ask(&sid, "file_transfer"))?;
            let d = rt.block_on(ours.relay.session(&sid))?;
            let granted = d["permissions"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["permission"] == "file_transfer" && p["state"] == "granted")
            });
            Ok((granted || s == 409).then_some(()))
        },
    )?;

    let idle = scenes::latency(&mut ours, args.samples)?;
    put("frame_latency_ms_p50_idle", scenes::pct(&idle, 0.5));
    put("frame_latency_ms_p99_idle", scenes::pct(&idle, 0.99));

    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| api_error("http client", e))?;
    let base = format!("{}/api/v1/sessions/{sid}/files/content", ours.relay.url);
    let token = ours.relay.token.clone();

    // Download.
    let dl = {
        let (http, url, token) = (http.clone(), format!("{base}?path=big.bin"), token.clone());
        rt.spawn(async move {
            let t = Instant::now();
            let mut resp = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("download answered {}", resp.status()));
            }
            let mut hasher = Sha256::new();
            let mut n = 0u64;
            while let Some(c) = resp.chunk().await.map_err(|e| e.to_string())? {
                hasher.update(&c);
                n += c.len() as u64;
            }
            Ok((n, t.elapsed(), hex::encode(hasher.finalize())))
        })
    };
    let busy = probe_while(&mut ours, || dl.is_finished())?;
    let (n, took, got) = rt
        .block_on(dl)
        .map_err(|e| api_error("download task", e))?
        .map_err(|e| api_error("download", e))?;
    if n != size || got != sha {
        return Err(BenchError::Session(format!(
            "the download brought {n} bytes with SHA-256 {got}, not {size} with {sha}"
        )));
    }
    put("download_mb_s", size as f64 / 1e6 / took.as_secs_f64());
    put(
        "frame_latency_ms_p50_during_download",
        scenes::pct(&busy, 0.5),
    );
    put(
        "frame_latency_ms_p99_during_download",
        scenes::pct(&busy, 0.99),
    );

    // Upload.
    let data = std::fs::read(share.join("big.bin"))
        .map_err(BenchError::io("cannot read the test file"))?;
    let up = {
        let q = format!("{base}?path=upload.bin&size={size}&sha256={sha}");
        rt.spawn(async move {
            let t = Instant::now();
            let r = http
                .put(q)
                .bearer_auth(token)
                .body(data)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!("upload answered {status}: {text}"));
            }
            Ok(t.elapsed())
        })
    };
    let busy = probe_while(&mut ours, || up.is_finished())?;
    let took = rt
        .block_on(up)
        .map_err(|e| api_error("upload task", e))?
        .map_err(|e| api_error("upload", e))?;
    put("upload_mb_s", size as f64 / 1e6 / took.as_secs_f64());
    put(
        "frame_latency_ms_p50_during_upload",
        scenes::pct(&busy, 0.5),
    );
    put(
        "frame_latency_ms_p99_during_upload",
        scenes::pct(&busy, 0.99),
    );
    let placed = make_hash(&share.join("upload.bin"))?;
    if placed != sha {
        return Err(BenchError::Session(format!(
            "the uploaded file has SHA-256 {placed}, not {sha}"
        )));
    }
    Ok(())
}

fn make_hash(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).map_err(BenchError::io("cannot open the uploaded file"))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(BenchError::io("cannot read the uploaded file"))?;
    Ok(hex::encode(hasher.finalize()))
}
