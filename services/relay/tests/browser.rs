//! Browser tests: headless Chromium (Debian's) driven by Playwright against the real relay.
//!
//! * the portal in three languages, rep login, key generation, the live queue, accept, chat
//!   and end (`tests/browser/console.mjs`);
//! * the console's screen viewer with a scripted agent (`tests/browser/viewer.mjs`):
//!   permissions, pictures drawn from Solid, PNG, JPEG and Copy rectangles (test pictures
//!   made here with the `png` and `turbojpeg` crates), input, settings, corrupt frames.
//!
//! Screenshots go to the artifacts folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn portal_and_console_in_chromium() {
    let relay = Relay::start().await;
    run_script(relay, "console.mjs", artifacts("browser"), vec![]).await;
}

/// Runs one browser script against `relay` with extra environment; fails the test unless
/// every step passed.
async fn run_script(relay: Relay, script: &str, artifacts: PathBuf, env: Vec<(String, String)>) {
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

#[tokio::test(flavor = "multi_thread")]
async fn screen_viewer_in_chromium() {
    let relay = Relay::start().await;
    let artifacts = artifacts("browser-viewer");
    let pictures = tempfile::tempdir().unwrap();
    let png_path = pictures.path().join("checker.png");
    let jpeg_path = pictures.path().join("gradient.jpg");
    std::fs::write(&png_path, checker_png()).unwrap();
    std::fs::write(&jpeg_path, gradient_jpeg()).unwrap();
    run_script(
        relay,
        "viewer.mjs",
        artifacts,
        vec![
            ("LIFELINE_TEST_PNG".into(), png_path.display().to_string()),
            ("LIFELINE_TEST_JPEG".into(), jpeg_path.display().to_string()),
        ],
    )
    .await;
}
