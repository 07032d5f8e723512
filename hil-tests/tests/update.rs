//! RAUC updates on the booted image: bundles signed with another key or made for another
//! model are refused; the real bundle installs into the other slot, the box boots it and
//! marks it good; an update whose slot fails its health check falls back to the old slot.

use std::time::Duration;

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::machine::{Machine, Options};
use lifeline_hil_tests::portal::Portal;
use lifeline_hil_tests::{bundle, figure, image, wait_for};
use serde_json::Value;

const MODEL: &str = "b200";

/// The booted slot from the kernel command line.
fn booted_slot(m: &mut Machine) -> String {
    let cmdline = m.shell.ok("cat /proc/cmdline");
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .unwrap_or_else(|| panic!("no rauc.slot= on the kernel command line: {cmdline}"))
        .to_string()
}

/// RAUC's view of the slots: bootname → (state, boot status).
fn slots(m: &mut Machine) -> Vec<(String, String, String)> {
    let text = m
        .shell
        .ok("rauc status --detailed --output-format=json 2>/dev/null");
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("rauc status json: {e}: {text}"));
    v["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .filter_map(|s| {
            let (_, s) = s.as_object()?.iter().next()?;
            Some((
                s["bootname"].as_str()?.to_string(),
                s["state"].as_str().unwrap_or("").to_string(),
                s["boot_status"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn wait_portal(m: &Machine, portal: &Portal, what: &str) -> f64 {
    wait_for(
        Duration::from_secs(240),
        Duration::from_millis(200),
        what,
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n---- console ----\n{}", m.console()));
    m.started.elapsed().as_secs_f64()
}

fn wait_marked_good(m: &mut Machine, slot: &str) {
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(500),
        "the slot to be marked good",
        || {
            let s = slots(m);
            s.iter()
                .any(|(b, _, st)| b == slot && st == "good")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", slots(m)));
}

/// Reboots the guest and waits for the command channel of the next boot.
fn reboot(m: &mut Machine) {
    let boots = m.console().matches("Lifeline: booting slot").count();
    m.shell.send("systemctl reboot").unwrap();
    wait_for(
        Duration::from_secs(300),
        Duration::from_millis(200),
        "the boot loader after the reboot",
        || (m.console().matches("Lifeline: booting slot").count() > boots).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", m.console()));
    m.shell
        .wait_ready(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn install(m: &mut Machine, file: &str) -> lifeline_hil_tests::shell::Output {
    m.shell
        .run_timeout(
            &format!("rauc install /mnt/{file}"),
            Duration::from_secs(600),
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn update_installs_boots_and_falls_back_and_refuses_foreign_bundles() {
    assert!(
        std::env::var_os("LIFELINE_HIL_BOX").is_none(),
        "the update test reboots between slots and needs QEMU; unset LIFELINE_HIL_BOX"
    );
    let art = Artifacts::new("update");
    let built = image::ensure(MODEL).unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::Builder::new()
        .prefix("lifeline-hil-update-")
        .tempdir()
        .unwrap();
    let w = work.path();

    // The bundles: the real one, one signed by a stranger, one for the other model, and one
    // whose relay cannot start.
    let foreign = bundle::foreign_signer(w).unwrap();
    let dev = bundle::dev_signer();
    let good = w.join("good.raucb");
    std::fs::copy(&built.bundle, &good).unwrap();
    let stranger = w.join("foreign-key.raucb");
    bundle::make(&built.rootfs, "lifeline-b200", "9.9.9", &foreign, &stranger).unwrap();
    let other_model = w.join("other-model.raucb");
    bundle::make(&built.rootfs, "lifeline-b300", "9.9.9", &dev, &other_model).unwrap();
    let broken_fs = w.join("broken.ext4");
    bundle::broken_rootfs(&built.rootfs, &broken_fs).unwrap();
    let broken = w.join("broken.raucb");
    bundle::make(&broken_fs, "lifeline-b200", "0.0.1-broken", &dev, &broken).unwrap();
    let _ = std::fs::remove_file(&broken_fs);
    let disk = w.join("bundles.ext4");
    bundle::disk_of(&[&good, &stranger, &other_model, &broken], w, &disk).unwrap();
    figure(
        "bundle_bytes",
        std::fs::metadata(&built.bundle).unwrap().len(),
    );

    let opts = Options {
        extra_disks: vec![disk],
        ..Options::default()
    };
    let mut m = Machine::boot(&built, &opts, art.clone()).unwrap_or_else(|e| panic!("{e}"));
    let portal = Portal::new(m.https);
    wait_portal(&m, &portal, "the portal on first boot");
    m.shell
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(booted_slot(&mut m), "A", "a fresh disk boots slot A");
    wait_marked_good(&mut m, "A");
    m.shell.ok("mount -o ro /dev/vdb /mnt");

    // Refusals: nothing is written, the box stays on A.
    let o = install(&mut m, "foreign-key.raucb");
    assert!(
        !o.ok(),
        "a bundle signed with another key was installed:\n{}",
        o.text
    );
    assert!(
        o.text.to_lowercase().contains("signature") || o.text.contains("verif"),
        "{}",
        o.text
    );
    art.write("refused-foreign-key.txt", &o.text);
    let o = install(&mut m, "other-model.raucb");
    assert!(
        !o.ok(),
        "a bundle for another model was installed:\n{}",
        o.text
    );
    assert!(o.text.contains("ompatible"), "{}", o.text);
    art.write("refused-other-model.txt", &o.text);
    let s = slots(&mut m);
    assert!(
        s.iter().any(|(b, _, st)| b == "B" && st != "good"),
        "slot B untouched: {s:?}"
    );

    // The real bundle: into B, boot B, marked good.
    let t = std::time::Instant::now();
    let o = install(&mut m, "good.raucb");
    assert!(o.ok(), "rauc install failed:\n{}", o.text);
    figure(
        "rauc_install_seconds",
        format!("{:.1}", t.elapsed().as_secs_f64()),
    );
    reboot(&mut m);
    assert_eq!(booted_slot(&mut m), "B", "the box boots the updated slot");
    wait_marked_good(&mut m, "B");
    let st = m
        .shell
        .supervisor_status()
        .unwrap_or_else(|e| panic!("{e}"));
    // The supervisor names slots as RAUC does: B is `rootfs.1`.
    assert_eq!(st["update"]["booted_slot"], "rootfs.1", "{st}");
    assert_eq!(st["update"]["booted_slot_marked_good"], true, "{st}");
    assert_eq!(
        portal.status("/"),
        Some(200),
        "the portal answers on the updated slot"
    );

    // An update that fails its health check: installed into A, booted once, not confirmed;
    // the next boot goes back to B.
    m.shell
        .ok("mount -o ro /dev/vdb /mnt 2>/dev/null || mountpoint -q /mnt");
    // A short health-check deadline, so the test need not wait the default 180 s.
    m.shell.ok("sed -i 's/^health_deadline_seconds = .*/health_deadline_seconds = 60/' /etc/lifeline/supervisor.toml");
    let o = install(&mut m, "broken.raucb");
    assert!(o.ok(), "rauc install (broken slot) failed:\n{}", o.text);
    reboot(&mut m);
    assert_eq!(booted_slot(&mut m), "A", "the updated slot is tried once");
    let relay = m
        .shell
        .run("systemctl is-active lifeline-relay.service")
        .unwrap();
    assert!(!relay.ok(), "the broken slot's relay runs: {}", relay.text);
    // The supervisor's health check gives up after its deadline (shortened above) and says
    // so; it never confirms the slot.
    let st = wait_for(
        Duration::from_secs(400),
        Duration::from_secs(2),
        "the supervisor's verdict on the broken slot",
        || {
            let st = m.shell.supervisor_status().ok()?;
            let failed = st["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["kind"] == "update_failed");
            (failed || st["update"]["booted_slot_marked_good"] == true).then_some(st)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", m.shell.supervisor_status()));
    assert_ne!(
        st["update"]["booted_slot_marked_good"], true,
        "the supervisor confirmed a slot without a relay: {st}"
    );
    art.write("supervisor-broken-slot.json", &st.to_string());
    let s = slots(&mut m);
    assert!(
        s.iter().any(|(b, _, st)| b == "A" && st != "good"),
        "slot A must not be good: {s:?}"
    );
    // The reboot after a failed health check (the supervisor's job once it is on the box).
    reboot(&mut m);
    assert_eq!(
        booted_slot(&mut m),
        "B",
        "the box falls back to the slot that worked"
    );
    wait_portal(&m, &portal, "the portal after the fallback");
    art.write("console-final.log", &m.console());
}
