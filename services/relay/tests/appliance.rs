//! The appliance status: `GET /api/v1/appliance/status` and the `/appliance` page, with the
//! real supervisor, licence manager and front-panel service (on its pty emulator) on a
//! private `dbus-daemon`; the page is checked in headless Chromium against the JSON, its
//! live panel picture against a click on a key, and its "Licence" card installs a good
//! licence file and refuses one for another appliance (`tests/browser/appliance.mjs`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::appliance::{LicenceManager, SERIAL, Supervisor, TestBus, issue_licence};
use common::*;

const APP_PASSWORD: &str = "appliance-password-1";

#[tokio::test(flavor = "multi_thread")]
async fn status_api_and_page_agree_in_chromium() {
    let bus = TestBus::start();
    let lic = LicenceManager::start(&bus, 6).await;
    // The supervisor runs a stand-in program and the real front panel with its emulator.
    let tty_dir = tempfile::tempdir().unwrap();
    let tty = tty_dir.path().join("panel-tty");
    let panel = common::appliance::sibling_bin("lifeline-panel");
    let _sup = Supervisor::start(
        &bus,
        &format!(
            "[[service]]\nname = \"helper-sleep\"\ncommand = \"/bin/sleep\"\nargs = [\"1000\"]\nready = \"started\"\n\n\
             [[service]]\nname = \"panel-emulator\"\ncommand = {panel:?}\nargs = [\"emulate\", \"--model\", \"graphic-244x68\", \"--link-path\", {tty:?}]\nready = \"started\"\noptional = true\n\n\
             [[service]]\nname = \"panel\"\ncommand = {panel:?}\nargs = [\"--device\", {tty:?}, \"--model\", \"graphic-244x68\"]\n"
        ),
    )
    .await;
    let relay = Relay::start_with_env(&[], &[("LIFELINE_DBUS_ADDRESS", &bus.address)]).await;
    relay.add_user(
        "appadmin",
        "appliance-admin",
        "Appliance Admin",
        APP_PASSWORD,
    );

    // Only appliance administrators read it.
    let rep = relay.rep_token().await;
    let (s, _) = relay.get(&rep, "/api/v1/appliance/status").await;
    assert_eq!(s, 403);
    let admin = relay.token("appadmin", APP_PASSWORD).await;
    let _console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    let status = wait_for(
        Duration::from_secs(20),
        "services and counts in the status",
        async || {
            let (s, v) = relay.get(&admin, "/api/v1/appliance/status").await;
            (s == 200
                && v["services"].as_array().is_some_and(|a| !a.is_empty())
                && v["services"][0]["state"] == "active"
                && v["connected"]["rep_consoles"] == 1)
                .then_some(v)
        },
    )
    .await;
    let mut keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "api_version",
            "build",
            "company",
            "connected",
            "guid",
            "hostname",
            "license",
            "load",
            "product",
            "services",
            "time",
            "timezone",
            "uptime_seconds",
            "version"
        ]
    );
    let mut lkeys: Vec<&str> = status["license"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    lkeys.sort();
    assert_eq!(
        lkeys,
        [
            "edition",
            "expires",
            "jump_active_limit",
            "jump_passive_limit",
            "model",
            "rep_seats",
            "rep_seats_in_use",
            "serial"
        ]
    );
    assert_eq!(status["license"]["serial"], SERIAL);
    assert_eq!(status["license"]["rep_seats"], 6);
    assert_eq!(status["license"]["rep_seats_in_use"], 1);
    assert_eq!(status["license"]["model"], "b300");
    assert_eq!(status["license"]["expires"], "2099-12-31");
    assert_eq!(status["product"], "Lifeline B300");
    assert_eq!(status["services"][0]["name"], "helper-sleep");
    assert!(status["uptime_seconds"].as_u64().unwrap() > 0);
    assert_eq!(status["load"].as_array().unwrap().len(), 3);
    assert_eq!(status["guid"].as_str().unwrap().len(), 36);

    // The same in Chromium.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser/appliance.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "browser-test packages are missing: run `cargo xtask test` (it runs npm ci in tests/browser)"
    );
    let artifacts = artifacts("appliance");
    let url = relay.url.clone();
    // Licence files for the card: 25 seats for this box, and one for another box.
    let files = tempfile::tempdir().unwrap();
    let good = files.path().join("lifeline-licence-25.json");
    issue_licence(&good, SERIAL, 25, &["--expires", "2097-12-31"]);
    let bad = files.path().join("licence-other-box.json");
    issue_licence(&bad, "LL-OTHER-0099", 40, &["--expires", "2097-12-31"]);
    let good_for_script = good.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .env("LIFELINE_URL", &url)
            .env("LIFELINE_ADMIN_USER", "appadmin")
            .env("LIFELINE_ADMIN_PASSWORD", APP_PASSWORD)
            .env("LIFELINE_EXPECT_PANEL", "1")
            .env("LIFELINE_GOOD_LICENCE", &good_for_script)
            .env("LIFELINE_GOOD_SEATS", "25")
            .env("LIFELINE_GOOD_UNTIL", "2097-12-31")
            .env("LIFELINE_BAD_LICENCE", &bad)
            .env("LIFELINE_ARTIFACTS", &artifacts)
            .env("CHROMIUM", "/usr/bin/chromium")
            .output()
    })
    .await
    .unwrap()
    .expect("node must be installed (cargo xtask test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed ({}):\n{stdout}\n{}\n---- relay log ----\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        relay.log()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    // The licence manager holds the licence installed from the page.
    let conn = bus.connect().await;
    let counts = lifeline_license_api::License1Proxy::new(&conn)
        .await
        .unwrap()
        .counts()
        .await
        .unwrap();
    assert_eq!(counts.rep_limit, 25, "{counts:?}");
    assert_eq!(
        std::fs::read(lic.licence_path()).unwrap(),
        std::fs::read(&good).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_supervisor_the_status_says_so_and_other_roles_are_refused() {
    let relay = Relay::start().await;
    relay.add_user(
        "appadmin",
        "appliance-admin",
        "Appliance Admin",
        APP_PASSWORD,
    );
    let admin = relay.token("appadmin", APP_PASSWORD).await;
    let (s, v) = relay.get(&admin, "/api/v1/appliance/status").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["uptime_seconds"].is_null() && v["services"].as_array().unwrap().is_empty());
    assert_eq!(v["license"]["rep_seats"], 1, "evaluation licence: {v}");
    // A rep's cookie login cannot open the appliance page.
    let page = relay
        .form_login("/appliance/login", "rep1", REP_PASSWORD)
        .await;
    assert_eq!(page.status(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("cannot manage the appliance")
    );
}
