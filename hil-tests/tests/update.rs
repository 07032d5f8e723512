//! RAUC updates on the booted image: bundles signed with another key, made for another model
//! or in the plain format are refused; the real bundle installs into the other slot, the box
//! reboots into it (asked through the supervisor, as the panel or the web page would) and
//! marks it good, and the admin's network setting survives the update; an update whose slot
//! fails its health check is marked bad by the supervisor, which reboots the box into the
//! old slot by itself. Last, the supervisor powers the box off.

use std::time::Duration;

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::machine::{Machine, Options};
use lifeline_hil_tests::portal::Portal;
use lifeline_hil_tests::{bundle, figure, image, skip, wait_for};
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
    // The supervisor asks RAUC for up to 2 minutes (slow D-Bus activation under load), then
    // needs three good health checks.
    wait_for(
        Duration::from_secs(180),
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

fn boots(m: &Machine) -> usize {
    m.console().matches("Lifeline: booting slot").count()
}

/// Waits until the boot loader has started `n` boots in all, then for the command channel.
fn wait_boots(m: &mut Machine, n: usize, limit: Duration, what: &str) {
    let mut hung_since = None;
    wait_for(limit, Duration::from_millis(200), what, || {
        let booted = boots(m) >= n;
        if !booted {
            m.reset_hung_reboot(&mut hung_since);
        }
        booted.then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", m.console()));
    m.shell
        .wait_ready(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Reboots the guest through the supervisor (as the front panel's user, which the panel's
/// menu does) and waits for the command channel of the next boot.
fn reboot(m: &mut Machine) {
    let before = boots(m);
    going_down_call(m, "lifeline-panel", "Reboot", "hil");
    wait_boots(
        m,
        before + 1,
        Duration::from_secs(300),
        "the boot loader after the reboot",
    );
}

fn second_port_addresses(m: &mut Machine) -> String {
    m.shell
        .ok("for i in /sys/class/net/en*; do n=${i##*/}; ip -4 -br addr show dev $n; done")
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
    if std::env::var_os("LIFELINE_HIL_BOX").is_some() {
        skip(
            "update",
            "the whole update test",
            "it needs QEMU (a disk of test bundles, reboots between slots watched on the \
             console, a power-off); run it without LIFELINE_HIL_BOX",
        );
        return;
    }
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
    let plain = w.join("plain.raucb");
    bundle::make_format(
        &built.rootfs,
        "lifeline-b200",
        "9.9.9",
        &dev,
        &plain,
        "plain",
    )
    .unwrap();
    let disk = w.join("bundles.ext4");
    bundle::disk_of(&[&good, &stranger, &other_model, &plain, &broken], w, &disk).unwrap();
    figure(
        "bundle_bytes",
        std::fs::metadata(&built.bundle).unwrap().len(),
    );

    let opts = Options {
        extra_disks: vec![disk],
        second_nic: true,
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
    let o = install(&mut m, "plain.raucb");
    assert!(!o.ok(), "a plain bundle was installed:\n{}", o.text);
    assert!(o.text.to_lowercase().contains("plain"), "{}", o.text);
    art.write("refused-plain.txt", &o.text);
    let s = slots(&mut m);
    assert!(
        s.iter().any(|(b, _, st)| b == "B" && st != "good"),
        "slot B untouched: {s:?}"
    );

    // The admin sets the second port (DHCP on its own network, 10.0.3.0/24) to a static
    // address before the update.
    let second = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the second port's DHCP address",
        || {
            second_port_addresses(&mut m)
                .lines()
                .find(|l| l.contains("10.0.3.15/24"))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_string)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", second_port_addresses(&mut m)));
    let o = m
        .shell
        .supervisor_call(
            "root",
            "SetNetwork",
            "sssys",
            &[&second, "static", "10.0.3.20", "24", "hil"],
        )
        .unwrap();
    assert!(o.ok(), "SetNetwork: {}", o.text);
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the static address",
        || {
            second_port_addresses(&mut m)
                .contains("10.0.3.20/24")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", second_port_addresses(&mut m)));

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
    // The network setting survived the reboot and the update.
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the static address after the update",
        || {
            second_port_addresses(&mut m)
                .contains("10.0.3.20/24")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", second_port_addresses(&mut m)));

    // An update that fails its health check: installed into A, booted once, not confirmed;
    // the next boot goes back to B.
    m.shell
        .ok("mount -o ro /dev/vdb /mnt 2>/dev/null || mountpoint -q /mnt");
    // A short health-check deadline, so the test need not wait the default 180 s.
    m.shell.ok("sed -i 's/^health_deadline_seconds = .*/health_deadline_seconds = 60/' /etc/lifeline/supervisor.toml");
    let o = install(&mut m, "broken.raucb");
    assert!(o.ok(), "rauc install (broken slot) failed:\n{}", o.text);
    let before = boots(&m);
    reboot(&mut m);
    assert_eq!(booted_slot(&mut m), "A", "the updated slot is tried once");
    let relay = m
        .shell
        .run("systemctl is-active lifeline-relay.service")
        .unwrap();
    assert!(!relay.ok(), "the broken slot's relay runs: {}", relay.text);
    // Nobody touches the box from here: the supervisor's health check gives up after its
    // deadline (shortened above), marks the slot bad and reboots into B.
    let t = std::time::Instant::now();
    wait_boots(
        &mut m,
        before + 2,
        Duration::from_secs(600),
        "the supervisor to reboot the box out of the broken slot",
    );
    figure(
        "failed_update_to_fallback_boot_seconds",
        format!("{:.1}", t.elapsed().as_secs_f64()),
    );
    assert_eq!(
        booted_slot(&mut m),
        "B",
        "the box falls back to the slot that worked"
    );
    wait_portal(&m, &portal, "the portal after the fallback");
    let s = slots(&mut m);
    assert!(
        s.iter().any(|(b, _, st)| b == "A" && st == "bad"),
        "the supervisor marks the failed slot bad: {s:?}"
    );
    let st = wait_for(
        Duration::from_secs(120),
        Duration::from_secs(1),
        "the supervisor on B reporting the failed update",
        || {
            let st = m.shell.supervisor_status().ok()?;
            st["alerts"]
                .as_array()?
                .iter()
                .any(|a| {
                    a["kind"] == "update_failed"
                        && a["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("went back to rootfs.1"))
                })
                .then_some(st)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", m.shell.supervisor_status()));
    art.write("supervisor-after-fallback.json", &st.to_string());
    let audit = m.shell.ok("cat /var/lib/lifeline/supervisor/audit.log");
    assert!(
        audit.contains("\"action\":\"fall_back\"")
            && audit.contains("refused: health check failed"),
        "{audit}"
    );
    art.write("console-final.log", &m.console());

    // Power off through the supervisor (as the relay's user, as the appliance page would):
    // QEMU ends when the guest powers down.
    going_down_call(&mut m, "lifeline-relay", "PowerOff", "web:hil");
    wait_for(
        Duration::from_secs(180),
        Duration::from_millis(500),
        "the guest to power off",
        || (!m.running()).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", m.console()));
}

/// Calls a supervisor action that takes the guest down (reboot, power off) as `user`. A
/// refusal fails the test; a reply that never comes back is fine, since the shell that
/// waits for it may be stopped by the shutdown first: the caller then checks the effect.
fn going_down_call(m: &mut Machine, user: &str, method: &str, who: &str) {
    match m.shell.supervisor_call(user, method, "s", &[who]) {
        Ok(o) => assert!(o.ok(), "the supervisor's {method}: {}", o.text),
        Err(e) => eprintln!("hil: no reply to {method} ({e}); the guest was going down"),
    }
}
