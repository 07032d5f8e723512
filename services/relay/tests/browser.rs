//! Browser test: headless Chromium (Debian's) driven by Playwright against the real relay:
//! the portal in three languages, rep login, key generation, the live queue, accept, chat
//! and end (`tests/browser/console.mjs`). Screenshots go to the artifacts folder.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn portal_and_console_in_chromium() {
    let relay = Relay::start().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser/console.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "browser-test packages are missing: run `cargo xtask test` (it runs npm ci in tests/browser)"
    );
    let artifacts = artifacts("browser");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .env("LIFELINE_URL", &relay.url)
            .env("LIFELINE_REP_USER", "rep1")
            .env("LIFELINE_REP_PASSWORD", REP_PASSWORD)
            .env("LIFELINE_ARTIFACTS", &artifacts)
            .env("CHROMIUM", "/usr/bin/chromium")
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
