//! Screen sharing end to end with every real part: the client **downloaded from the relay**
//! runs on a 1920x1080 X server beside real X programs (an xterm with text, a photo, and
//! `xev` recording its input); the representative works in the console in Chromium
//! (`tests/browser/screen.mjs`); this test plays the customer in the client's window with
//! xdotool and checks what arrived on the X server.
//!
//! Checked: a denied request, then an allowed one; the picture on the console's canvas
//! against the X server's own screenshot (text lossless, the photo above 30 dB PSNR); a
//! click at a canvas point reaching that desktop point in `xev`, and typed `Grüße, élève`
//! arriving intact; a monitor added with RandR appearing in the console's picker; control
//! and then view taken back from the client window, the stream stopping within half a
//! second and no frame reaching the relay afterwards; the permission events in the stored
//! session.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use common::desktop::*;
use common::*;

/// The photo's window, the recording client's window and the text window (desktop
/// coordinates; the client's own window sits in the middle, between them).
const PHOTO_AT: (i32, i32) = (1230, 60);
const PHOTO_SIZE: (u32, u32) = (640, 400);
const XEV_AT: (i32, i32) = (1230, 600);
const XEV_SIZE: (u32, u32) = (420, 300);
/// The point the representative clicks, inside `xev`'s window.
const TARGET: (i32, i32) = (1400, 700);

/// The client window's layout (see `agents/client/src/ui.rs`): the Stop button of the
/// `row`-th permission shown (0: view, 1: control when both are granted).
fn stop_button(window: (i32, i32), row: i32) -> (i32, i32) {
    const HEADER: i32 = 64;
    const BANNER: i32 = 30;
    const TOP: i32 = 12 + 30 + 12; // margin, status line, spacing
    const ROW: i32 = 34;
    const PAD: i32 = 12;
    (
        window.0 + 480 - 24 - 6 - 45,
        window.1 + HEADER + BANNER + TOP + row * (ROW + PAD) + ROW / 2,
    )
}

struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_x(x: &Xvfb, program: &str, args: &[&str], stdout: Option<&Path>) -> Spawned {
    let mut c = Command::new(program);
    c.args(args)
        .env("DISPLAY", &x.display)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stderr(Stdio::null());
    match stdout {
        Some(p) => c.stdout(std::fs::File::create(p).unwrap()),
        None => c.stdout(Stdio::null()),
    };
    Spawned(
        c.spawn()
            .unwrap_or_else(|e| panic!("{program} must be installed: {e}")),
    )
}

fn run_x(x: &Xvfb, program: &str, args: &[&str]) {
    let st = Command::new(program)
        .args(args)
        .env("DISPLAY", &x.display)
        .status()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    assert!(st.success(), "{program} {args:?}: {st}");
}

fn geometry(x: &Xvfb, wid: &str) -> (i32, i32) {
    let out = x.xdotool(&["getwindowgeometry", "--shell", wid]);
    let get = |k: &str| -> i32 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    (get("X="), get("Y="))
}

/// RGB pixels of a PNG file.
fn rgb(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(png_bytes);
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut out = Vec::with_capacity((info.width * info.height * 3) as usize);
    for px in buf[..info.buffer_size()].chunks(channels) {
        out.extend_from_slice(&px[..3]);
    }
    (info.width, info.height, out)
}

/// (share of identical pixels, PSNR in dB) of a region of two same-sized RGB pictures.
fn compare(a: &[u8], b: &[u8], width: u32, region: (i32, i32, u32, u32)) -> (f64, f64) {
    let (rx, ry, rw, rh) = region;
    let (mut same, mut n, mut sq) = (0u64, 0u64, 0f64);
    for y in ry..ry + rh as i32 {
        for x in rx..rx + rw as i32 {
            let i = ((y as u32 * width + x as u32) * 3) as usize;
            let (p, q) = (&a[i..i + 3], &b[i..i + 3]);
            if p == q {
                same += 1;
            }
            for c in 0..3 {
                let d = f64::from(p[c]) - f64::from(q[c]);
                sq += d * d;
            }
            n += 1;
        }
    }
    let mse = sq / (n as f64 * 3.0);
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    };
    (same as f64 / n as f64, psnr)
}

/// What `xev` recorded: button presses at root coordinates, and the text of key presses.
fn xev_events(log: &Path) -> (Vec<(i32, i32)>, String) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut presses, mut typed) = (Vec::new(), String::new());
    for block in text.split("\n\n") {
        if block.starts_with("ButtonPress event") {
            if let Some(r) = block.split("root:(").nth(1)
                && let Some((x, rest)) = r.split_once(',')
                && let Some((y, _)) = rest.split_once(')')
                && let (Ok(x), Ok(y)) = (x.trim().parse(), y.trim().parse())
            {
                presses.push((x, y));
            }
        } else if block.starts_with("KeyPress event")
            && let Some(s) = block.split("XmbLookupString gives ").nth(1)
            && let Some(q) = s.split_once('"')
            && let Some((ch, _)) = q.1.rsplit_once('"')
        {
            typed.push_str(ch);
        }
    }
    (presses, typed)
}

/// The time of the first agent log line containing `needle` after `since`.
fn logged_at(log: &str, needle: &str, since: SystemTime) -> Option<SystemTime> {
    log.lines().filter(|l| l.contains(needle)).find_map(|l| {
        let stamp = l.split_whitespace().next()?;
        let t = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .ok()?;
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64);
        (t >= since).then_some(t)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn screen_sharing_with_the_real_client_and_the_console_in_chromium() {
    let art = artifacts("screen");
    let x = Xvfb::start_sized("1920x1080x24");
    let work = tempfile::tempdir().unwrap();
    run_x(&x, "xsetroot", &["-solid", "#2f5d8a"]);

    // The customer's desktop: text, a photo, and a program that records its input.
    let text_file = work.path().join("notes.txt");
    let mut notes = String::new();
    for i in 1..=200 {
        notes.push_str(&format!(
            "{i:3}  The quick brown fox jumps over the lazy dog; 0123456789 ({}).\n",
            "=".repeat(i % 17)
        ));
    }
    std::fs::write(&text_file, notes).unwrap();
    let _xterm = spawn_x(
        &x,
        "xterm",
        &[
            "-geometry",
            "100x36+32+32",
            "-title",
            "notes",
            "-e",
            "less",
            text_file.to_str().unwrap(),
        ],
        None,
    );
    let photo = work.path().join("photo.png");
    let st = Command::new("convert")
        .args(["-seed", "7", "-size"])
        .arg(format!("{}x{}", PHOTO_SIZE.0, PHOTO_SIZE.1))
        .args(["plasma:fractal", "-blur", "0x1"])
        .arg(&photo)
        .status()
        .expect("ImageMagick must be installed");
    assert!(st.success());
    let _photo = spawn_x(
        &x,
        "display",
        &[
            "-geometry",
            &format!("+{}+{}", PHOTO_AT.0, PHOTO_AT.1),
            "-title",
            "photo",
            photo.to_str().unwrap(),
        ],
        None,
    );
    let xev_log = art.join("xev.log");
    let _xev = spawn_x(
        &x,
        "xev",
        &[
            "-geometry",
            &format!("{}x{}+{}+{}", XEV_SIZE.0, XEV_SIZE.1, XEV_AT.0, XEV_AT.1),
            "-name",
            "recorder",
        ],
        Some(&xev_log),
    );
    let xterm_wid = window(&x, "notes").await;
    window(&x, "photo").await;
    let xev_wid = window(&x, "recorder").await;
    x.xdotool(&["mousemove", "1900", "1060"]);

    // The customer gets the client from the portal and waits in the queue.
    let CustomerSession {
        relay,
        rep,
        agent,
        wid,
        sid,
        // Kept open to the end: the representative stays online.
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, None).await;
    let window = geometry(&x, &wid);

    // The representative's side runs in Chromium meanwhile.
    let target = format!("{},{}", TARGET.0, TARGET.1);
    let script = RepScript::start(
        &relay,
        "screen.mjs",
        &sid,
        &art,
        &[("LIFELINE_TARGET", &target)],
    );
    let sync = script.sync.clone();
    let script_log = || script.log();
    let press = |keys: &[&str]| {
        x.xdotool(&["windowfocus", "--sync", &wid]);
        x.xdotool(&[&["key", "--delay", "120"][..], keys].concat());
    };
    let asked = |what: &str| agent.log().matches(what).count();

    // 1. The first request is refused: the focused answer is "Deny".
    wait_for(Duration::from_secs(60), "the first question", async || {
        (asked("event=question_shown question=view") >= 1).then_some(())
    })
    .await;
    x.screenshot(&art.join("1-question.png"));
    press(&["space"]);
    agent
        .wait_log("event=permission permission=view change=denied")
        .await;

    // 2. Asked again, allowed (Tab to "Allow").
    wait_for(Duration::from_secs(60), "the second question", async || {
        (asked("event=question_shown question=view") >= 2).then_some(())
    })
    .await;
    press(&["Tab", "space"]);
    agent
        .wait_log("event=permission permission=view change=granted")
        .await;
    agent.wait_log("event=stream_started").await;

    // 3. The console's picture against the X server's own.
    wait_file(
        &sync.join("canvas.done"),
        Duration::from_secs(60),
        &format!("the console's picture\n{}", script_log()),
    )
    .await;
    let shot = art.join("2-x-server.png");
    x.screenshot(&shot);
    let canvas_png = std::fs::read(sync.join("canvas.png")).unwrap();
    std::fs::write(art.join("2-canvas.png"), &canvas_png).unwrap();
    let (cw, ch, canvas) = rgb(&canvas_png);
    let (xw, xh, screen) = rgb(&std::fs::read(&shot).unwrap());
    assert_eq!((cw, ch), (xw, xh), "canvas and screen sizes");
    let xterm_at = geometry(&x, &xterm_wid);
    let text_region = (xterm_at.0, xterm_at.1, 580, 440);
    let (same, psnr) = compare(&canvas, &screen, cw, text_region);
    println!("text_identical={same:.5} text_psnr_db={psnr:.1}");
    assert!(
        same >= 0.999,
        "text must arrive lossless: {:.3}% of the xterm's pixels identical (PSNR {psnr:.1} dB)",
        same * 100.0
    );
    let photo_region = (PHOTO_AT.0, PHOTO_AT.1, PHOTO_SIZE.0, PHOTO_SIZE.1);
    let (_, psnr) = compare(&canvas, &screen, cw, photo_region);
    println!("photo_psnr_db={psnr:.1}");
    assert!(
        psnr >= 30.0,
        "the photo must arrive sharp: PSNR {psnr:.1} dB"
    );
    std::fs::write(sync.join("compared.done"), "").unwrap();

    // 4. Control, allowed; keys then go to the recording client (no window manager: the
    //    test gives it the keyboard focus as a person's click would).
    wait_for(
        Duration::from_secs(60),
        "the control question",
        async || (asked("event=question_shown question=control") >= 1).then_some(()),
    )
    .await;
    press(&["Tab", "space"]);
    agent
        .wait_log("event=permission permission=control change=granted")
        .await;
    x.xdotool(&["windowfocus", "--sync", &xev_wid]);
    std::fs::write(sync.join("focus.done"), "").unwrap();
    wait_file(
        &sync.join("input.done"),
        Duration::from_secs(60),
        &format!("the representative's input\n{}", script_log()),
    )
    .await;
    let (presses, typed) = wait_for(Duration::from_secs(20), "input in xev", async || {
        let (p, t) = xev_events(&xev_log);
        (!p.is_empty() && t.chars().count() >= 12).then_some((p, t))
    })
    .await;
    let (px, py) = presses[0];
    assert!(
        (px - TARGET.0).abs() <= 2 && (py - TARGET.1).abs() <= 2,
        "the click arrived at {px},{py}, not {},{}",
        TARGET.0,
        TARGET.1
    );
    assert_eq!(typed, "Grüße, élève");

    // 4b. The clipboard, shared: the representative's text lands on the customer's
    //     clipboard, and what the customer copies shows in the console.
    wait_for(
        Duration::from_secs(60),
        "the clipboard question",
        async || (asked("event=question_shown question=clipboard") >= 1).then_some(()),
    )
    .await;
    press(&["Tab", "space"]);
    agent
        .wait_log("event=permission permission=clipboard change=granted")
        .await;
    wait_file(
        &sync.join("clip-sent.done"),
        Duration::from_secs(60),
        &format!("the representative's clipboard text\n{}", script_log()),
    )
    .await;
    let display = x.display.clone();
    wait_for(
        Duration::from_secs(20),
        "the customer's clipboard",
        async || {
            let out = Command::new("xclip")
                .args(["-o", "-selection", "clipboard"])
                .env("DISPLAY", &display)
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "Grüße vom Support: ключ 42").then_some(())
        },
    )
    .await;
    let mut copier = Command::new("xclip")
        .args(["-i", "-selection", "clipboard"])
        .env("DISPLAY", &x.display)
        .stdin(Stdio::piped())
        .spawn()
        .expect("xclip must be installed");
    {
        use std::io::Write;
        let mut stdin = copier.stdin.take().unwrap();
        stdin.write_all("élève a copié ceci".as_bytes()).unwrap();
    }
    let _copier = Spawned(copier);
    std::fs::write(sync.join("clip-copied.done"), "").unwrap();

    // 5. A second monitor, added on the customer's side.
    run_x(
        &x,
        "xrandr",
        &["--setmonitor", "left-half", "960/254x1080/286+0+0", "none"],
    );
    agent.wait_log("event=monitors count=2").await;
    std::fs::write(sync.join("monitor.done"), "").unwrap();

    // 6. The customer takes control back, then stops the screen, from the client window.
    x.screenshot(&art.join("3-granted.png"));
    let (bx, by) = stop_button(window, 1);
    x.xdotool(&["mousemove", &bx.to_string(), &by.to_string(), "click", "1"]);
    agent
        .wait_log("event=permission permission=control change=revoked")
        .await;
    agent.wait_log("event=input_stopped").await;
    let (bx, by) = stop_button(window, 0);
    let clicked = SystemTime::now();
    x.xdotool(&["mousemove", &bx.to_string(), &by.to_string(), "click", "1"]);
    agent
        .wait_log("event=permission permission=view change=revoked")
        .await;
    agent.wait_log("event=stream_stopped").await;
    let stopped = logged_at(&agent.log(), "event=stream_stopped", clicked)
        .expect("the stop is logged after the click");
    let took = stopped.duration_since(clicked).unwrap_or_default();
    println!("revoke_to_stream_stopped_ms={}", took.as_millis());
    assert!(
        took < Duration::from_millis(500),
        "the stream stopped {took:?} after the click"
    );
    wait_file(
        &sync.join("revoked.done"),
        Duration::from_secs(60),
        &format!("the console to show the revocation\n{}", script_log()),
    )
    .await;
    let (_, before) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, after) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(
        before["stream"], after["stream"],
        "no frame reached the relay after the screen was stopped"
    );

    script.passed(Duration::from_secs(60)).await;

    // The stored session tells the whole story.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let kinds: Vec<String> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in [
        "permission_requested",
        "permission_denied",
        "permission_granted",
        "permission_revoked",
    ] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }
    assert!(
        d["stream"]["screen_frames"].as_u64().unwrap_or(0) > 0
            && d["stream"]["delivered_frames"].as_u64().unwrap_or(0) > 0,
        "stream counters: {}",
        d["stream"]
    );
}
