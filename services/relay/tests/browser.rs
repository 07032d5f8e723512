//! Browser tests: headless Chromium (Debian's) driven by Playwright against the real relay.
//!
//! * the portal in three languages, rep login, key generation, the live queue, accept, chat
//!   and end (`tests/browser/console.mjs`);
//! * the console's screen viewer with a scripted agent (`tests/browser/viewer.mjs`):
//!   permissions, pictures drawn from Solid, PNG, JPEG and Copy rectangles (test pictures
//!   made here with the `png` and `turbojpeg` crates), input, settings, corrupt frames, and
//!   a deflated stream of Palette rectangles made here with the agent's own compressor
//!   ([`deflated_stream`]).
//!
//! * the administrators' "Deployment" page and team queues (`tests/browser/deploy.mjs`): an
//!   administrator creates a team support button and a deployment key in the page, sees them
//!   listed and revokes them (en/fr/de screenshots); a request from a team button waits in
//!   the console of a member of the team, and not in that of a representative outside it.
//!
//! Scripts that need real customer-side processes run from their own test files with
//! `common::desktop::RepScript`: `screen.mjs` from `tests/screen.rs`, and the console's
//! jump panel (`jump.mjs`, a real installed jump client under Xvfb) from `tests/jump.rs`.
//!
//! Screenshots go to the artifacts folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use lifeline_proto::{frame, screen};

#[tokio::test(flavor = "multi_thread")]
async fn portal_and_console_in_chromium() {
    let relay = Relay::start().await;
    run_script(relay, "console.mjs", artifacts("browser"), vec![]).await;
}

/// The "Deployment" page and team queues in Chromium (`deploy.mjs`). Before the script runs,
/// a team button made through the API is clicked by a simulated customer, whose request then
/// waits in the queue of team `ops` (rep2 is a member, rep3 is not).
#[tokio::test(flavor = "multi_thread")]
async fn deployment_page_and_team_queue_in_chromium() {
    let relay = Relay::start().await;
    relay.add_user("rep2", "rep", "Rita Team", REP_PASSWORD);
    relay.add_user("rep3", "rep", "Otto Outside", REP_PASSWORD);
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let r = relay
        .http
        .put(relay.url("/api/v1/jump/users/rep2/teams"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"teams": ["ops"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Two customers click a button: one of team `ops`, one of the general queue.
    let mut customers = Vec::new();
    for (label, queue, name) in [
        (
            "Scripted",
            serde_json::json!({"queue": "team", "team": "ops"}),
            "Tess Team",
        ),
        (
            "Everyone",
            serde_json::json!({"queue": "general"}),
            "Gus General",
        ),
    ] {
        let mut body = queue;
        body["label"] = label.into();
        body["valid_minutes"] = 60.into();
        let (s, button) = relay.post(&admin, "/api/v1/buttons", body).await;
        assert_eq!(s, 200, "{button}");
        let r = relay
            .http
            .post(relay.url("/api/v1/buttons/session"))
            .json(&serde_json::json!({"token": button["token"], "name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ticket: serde_json::Value = r.json().await.unwrap();
        let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
        send_json(&mut agent, hello(ticket["ticket"].as_str().unwrap(), name)).await;
        recv_type(&mut agent, "welcome").await;
        send_json(&mut agent, serde_json::json!({"type": "accept_terms"})).await;
        // The customer's client stays connected (and answers pings) while the script runs.
        customers.push(tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(Ok(_)) = agent.next().await {}
        }));
        wait_for(
            Duration::from_secs(10),
            "the request in its queue",
            async || {
                let (_, q) = relay.get(&admin, "/api/v1/queues").await;
                q.to_string().contains(name).then_some(())
            },
        )
        .await;
    }
    let art = artifacts("deploy");
    let env = [
        ("LIFELINE_ADMIN_USER", "admin"),
        ("LIFELINE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("LIFELINE_TEAM_REP", "rep2"),
        ("LIFELINE_OTHER_REP", "rep3"),
        ("LIFELINE_CUSTOMER", "Tess Team"),
        ("LIFELINE_GENERAL_CUSTOMER", "Gus General"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let relay = run_script(relay, "deploy.mjs", art, env).await;
    for c in customers {
        c.abort();
    }
    // What the page did, as the API sees it.
    let (_, buttons) = relay.get(&admin, "/api/v1/buttons").await;
    let made = buttons
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["label"] == "Ops desk")
        .unwrap_or_else(|| panic!("the page's button: {buttons}"));
    assert_eq!(made["queue"], "team", "{made}");
    assert_eq!(made["team"], "ops", "{made}");
    assert_eq!(made["state"], "revoked", "{made}");
    let (_, keys) = relay.get(&admin, "/api/v1/jump/deploy-keys").await;
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "Branch laptops")
        .unwrap_or_else(|| panic!("the page's key: {keys}"));
    assert_eq!(key["group"], "team:ops", "{key}");
    assert_eq!(key["uses_left"], 25, "{key}");
    assert_eq!(key["state"], "revoked", "{key}");
}

/// Runs one browser script against `relay` with extra environment;/// Runs one browser script against `relay` with extra environment; fails the test unless
/// every step passed.
async fn run_script(
    relay: Relay,
    script: &str,
    artifacts: PathBuf,
    env: Vec<(String, String)>,
) -> Relay {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser").join(script);
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "browser-test packages are missing: run `cargo xtask test` (it runs npm ci in tests/browser)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .env("LIFELINE_URL", &relay.url)
            .env("LIFELINE_REP_USER", "rep1")
            .env("LIFELINE_REP_PASSWORD", REP_PASSWORD)
            .env("LIFELINE_ARTIFACTS", &artifacts)
            .env("CHROMIUM", "/usr/bin/chromium")
            .envs(env)
            .output()
            .map(|o| (o, relay))
    })
    .await
    .unwrap();
    let (out, relay) = out.expect("node must be installed (cargo xtask test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed ({}):\n{stdout}\n{stderr}\n---- relay log ----\n{}",
        out.status,
        relay.log()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    relay
}

/// The PNG test picture: 64x48, 8-pixel squares of red and near-white (the script knows the
/// pattern and checks every square's pixels exactly).
fn checker_png() -> Vec<u8> {
    let (w, h) = (64u32, 48u32);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let red = ((x / 8) + (y / 8)) % 2 == 0;
            rgb.extend_from_slice(if red {
                &[220, 40, 40]
            } else {
                &[250, 250, 250]
            });
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&rgb).unwrap();
    writer.finish().unwrap();
    out
}

/// The JPEG test picture: 96x64, a smooth gradient r = 40 + x, g = 80 + y, b = 160.
fn gradient_jpeg() -> Vec<u8> {
    let (w, h) = (96usize, 64usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(&[40 + x as u8, 80 + y as u8, 160]);
        }
    }
    let image = turbojpeg::Image {
        pixels: &rgb[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, 90, turbojpeg::Subsamp::None)
        .unwrap()
        .to_vec()
}

/// Colour `i` of a test palette (the script computes the same).
fn palette_colour(i: usize) -> [u8; 3] {
    [
        (i * 37 % 256) as u8,
        ((i * 91 + 50) % 256) as u8,
        ((i * 151 + 100) % 256) as u8,
    ]
}

/// Index of pixel (x, y) of a test palette rectangle of `count` colours.
fn palette_index(x: usize, y: usize, count: usize) -> u8 {
    ((x * 7 + y * 3 + (x * y) % 5) % count) as u8
}

/// A Palette rectangle of the test pattern (x, y, w, h, colour count).
fn palette_rect(x: u16, y: u16, w: u16, h: u16, count: usize) -> (u16, u16, u16, u16, Vec<u8>) {
    let colours: Vec<[u8; 3]> = (0..count).map(palette_colour).collect();
    let mut idx = Vec::with_capacity(usize::from(w) * usize::from(h));
    for py in 0..usize::from(h) {
        for px in 0..usize::from(w) {
            idx.push(palette_index(px, py, count));
        }
    }
    let data = screen::encode_palette(&colours, w, h, &idx).unwrap();
    (x, y, w, h, data)
}

/// The deflated screen stream of the viewer test, as binary frames each preceded by its
/// length (u32, big-endian): sequence numbers from 1000, frame numbers from 1000, on a
/// 320x200 surface.
///
/// 0. key frame 1000, first message (`FLAG_SUPERSEDES`): Solid background, Palette of 2
///    colours at (10,130) 37x21 and of 3 colours at (60,130) 13x9
/// 1. key frame 1000, end: Palette of 16 colours at (90,130) 23x17 and of 200 at
///    (130,130) 40x30
/// 2. frame 1001: the 2-colour rectangle at (200,130), the 3-colour one at (250,160)
///    (back-references into the stream)
/// 3. frame 1002: Solid (200,10) 20x20 of 255,0,255 (the stream going on)
/// 4. key frame 1003, one message, a new stream: everything of 0-2 on background 10,20,30
/// 5. frame 1004: Solid (200,10) 20x20 of 0,255,0
/// 6. key frame 1005, a new stream: as 4 on background 60,60,60
/// 7. frame 1006: a chunk that inflates to 2 MiB (past any update message)
/// 8. key frame 1007, a new stream: as 4 on background 90,30,120
fn deflated_stream() -> Vec<u8> {
    use lifeline_proto::deflate::{LEVEL_FAST, ScreenDeflater};
    use lifeline_proto::frame::{FLAG_DEFLATE, FLAG_SUPERSEDES};
    use lifeline_proto::screen::{Encoding, Rect, UPDATE_END_OF_FRAME, UPDATE_KEY_FRAME};

    type R = (u16, u16, u16, u16, Vec<u8>);
    let solid = |x, y, w, h, rgb: [u8; 3]| (x, y, w, h, rgb.to_vec());
    let update = |frame: u32, flags: u8, rects: &[(Encoding, &R)]| -> Vec<u8> {
        let mut u = screen::UpdateWriter::new(320, 200, frame).unwrap();
        for (encoding, (x, y, w, h, data)) in rects {
            u.push(&Rect {
                x: *x,
                y: *y,
                w: *w,
                h: *h,
                encoding: *encoding,
                data,
            })
            .unwrap();
        }
        u.finish(flags)
    };
    let p2 = palette_rect(10, 130, 37, 21, 2);
    let p3 = palette_rect(60, 130, 13, 9, 3);
    let p16 = palette_rect(90, 130, 23, 17, 16);
    let p200 = palette_rect(130, 130, 40, 30, 200);
    let p2b = palette_rect(200, 130, 37, 21, 2);
    let p3b = palette_rect(250, 160, 13, 9, 3);
    let (pal, sol) = (Encoding::Palette, Encoding::Solid);
    let whole = |frame: u32, bg: [u8; 3]| {
        let bg = solid(0, 0, 320, 200, bg);
        update(
            frame,
            UPDATE_END_OF_FRAME | UPDATE_KEY_FRAME,
            &[
                (sol, &bg),
                (pal, &p2),
                (pal, &p3),
                (pal, &p16),
                (pal, &p200),
                (pal, &p2b),
                (pal, &p3b),
            ],
        )
    };
    let bg = solid(0, 0, 320, 200, [30, 120, 200]);
    let magenta = solid(200, 10, 20, 20, [255, 0, 255]);
    let green = solid(200, 10, 20, 20, [0, 255, 0]);
    let messages: Vec<(u8, Vec<u8>)> = vec![
        (
            FLAG_SUPERSEDES,
            update(
                1000,
                UPDATE_KEY_FRAME,
                &[(sol, &bg), (pal, &p2), (pal, &p3)],
            ),
        ),
        (
            0,
            update(
                1000,
                UPDATE_END_OF_FRAME | UPDATE_KEY_FRAME,
                &[(pal, &p16), (pal, &p200)],
            ),
        ),
        (
            0,
            update(1001, UPDATE_END_OF_FRAME, &[(pal, &p2b), (pal, &p3b)]),
        ),
        (0, update(1002, UPDATE_END_OF_FRAME, &[(sol, &magenta)])),
        (FLAG_SUPERSEDES, whole(1003, [10, 20, 30])),
        (0, update(1004, UPDATE_END_OF_FRAME, &[(sol, &green)])),
        (FLAG_SUPERSEDES, whole(1005, [60, 60, 60])),
        (0, vec![0u8; 2 * 1024 * 1024]),
        (FLAG_SUPERSEDES, whole(1007, [90, 30, 120])),
    ];
    let mut deflater = ScreenDeflater::new(LEVEL_FAST);
    let mut out = Vec::new();
    for (i, (flags, update)) in messages.iter().enumerate() {
        if flags & FLAG_SUPERSEDES != 0 {
            deflater.reset();
        }
        let mut chunk = Vec::new();
        deflater.deflate(update, &mut chunk).unwrap();
        let f = frame::encode(
            frame::Channel::Screen,
            flags | FLAG_DEFLATE,
            1000 + i as u32,
            &chunk,
        )
        .unwrap();
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(&f);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn screen_viewer_in_chromium() {
    let relay = Relay::start().await;
    let artifacts = artifacts("browser-viewer");
    let pictures = tempfile::tempdir().unwrap();
    let png_path = pictures.path().join("checker.png");
    let jpeg_path = pictures.path().join("gradient.jpg");
    std::fs::write(&png_path, checker_png()).unwrap();
    std::fs::write(&jpeg_path, gradient_jpeg()).unwrap();
    let deflated_path = pictures.path().join("deflated.bin");
    std::fs::write(&deflated_path, deflated_stream()).unwrap();
    run_script(
        relay,
        "viewer.mjs",
        artifacts,
        vec![
            ("LIFELINE_TEST_PNG".into(), png_path.display().to_string()),
            ("LIFELINE_TEST_JPEG".into(), jpeg_path.display().to_string()),
            (
                "LIFELINE_TEST_DEFLATED".into(),
                deflated_path.display().to_string(),
            ),
        ],
    )
    .await;
}
