//! The appliance booted from its firmware image: services, panel, a whole customer session
//! with the client downloaded from the box, and a relay crash.
//!
//! One boot serves the whole test (a boot costs ~20 s under TCG); the steps are in the order
//! a box lives through them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::desktop::{Agent, Xvfb};
use lifeline_hil_tests::machine::{Machine, Options};
use lifeline_hil_tests::portal::Portal;
use lifeline_hil_tests::{daemon_units, figure, image, wait_for};
use lifeline_panel::driver::Model as PanelModel;
use serde_json::json;

const MODEL: &str = "b200";
const ADMIN_PASSWORD: &str = "hil-admin-password-1";
const REP_PASSWORD: &str = "hil-rep-password-1";

fn boot(art: Artifacts) -> Machine {
    if let Ok(addr) = std::env::var("LIFELINE_HIL_BOX") {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|_| {
            panic!("LIFELINE_HIL_BOX=`{addr}` is not an address like 192.0.2.10:443")
        });
        let chan = std::env::var_os("LIFELINE_HIL_BOX_CHANNEL")
            .map(PathBuf::from)
            .expect("LIFELINE_HIL_BOX_CHANNEL names the serial line of the box's command channel");
        return Machine::connect_box(addr, &chan, art).unwrap_or_else(|e| panic!("{e}"));
    }
    let built = image::ensure(MODEL).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options {
        panel: Some(PanelModel::Char20x4),
        ..Options::default()
    };
    Machine::boot(&built, &opts, art).unwrap_or_else(|e| panic!("{e}"))
}

/// Adds an account with the relay's own CLI, as the relay's user (the database's owner).
fn add_user(m: &mut Machine, user: &str, role: &str, display: &str, password: &str) {
    m.shell.ok(&format!(
        "printf '%s\\n' '{password}' | runuser -u lifeline-relay -- lifeline-relay --config /etc/lifeline/relay.toml user add --username {user} --role {role} --display-name '{display}' --password-stdin"
    ));
}

#[test]
fn appliance_boots_serves_a_session_and_survives_a_relay_crash() {
    let art = Artifacts::new("appliance");
    let mut m = boot(art.clone());
    let portal = Portal::new(m.https);

    // 1. Boot to "portal ready": the portal answers through the forwarded port.
    wait_for(
        Duration::from_secs(240),
        Duration::from_millis(200),
        "the portal on 443",
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n---- console ----\n{}", m.console()));
    let boot_secs = m.started.elapsed().as_secs_f64();
    figure(
        &format!("boot_to_portal_ready_seconds_{}", m.accel),
        format!("{boot_secs:.1}"),
    );
    m.shell
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));

    // 2. Every Lifeline unit is active, and sandboxed well enough.
    let units = daemon_units();
    let all = units.clone();
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(500),
        "every Lifeline unit active",
        || {
            m.shell
                .run(&format!("systemctl is-active {}", all.join(" ")))
                .ok()
                .filter(|o| o.ok())
        },
    )
    .unwrap_or_else(|e| {
        let s = m
            .shell
            .run("systemctl --no-pager status 'lifeline*'")
            .map(|o| o.text)
            .unwrap_or_default();
        panic!("{e}\n{s}")
    });
    for unit in &units {
        let out = m.shell.ok(&format!(
            "systemd-analyze security --no-pager {unit} | tail -n 1"
        ));
        // "→ Overall exposure level for lifeline-relay.service: 1.6 OK 🙂"
        let level: f64 = out
            .split(&format!("{unit}: "))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the exposure of {unit}: {out}"));
        figure(
            &format!("exposure_{}", unit.trim_end_matches(".service")),
            level,
        );
        assert!(level <= 2.5, "{unit}: exposure {level} is above 2.5: {out}");
        assert!(
            out.contains(" OK ") || out.contains("SAFE"),
            "{unit} scores worse than OK: {out}"
        );
    }
    // The supervisor sees every service running and marked this first boot's slot good.
    let status = wait_for(
        Duration::from_secs(120),
        Duration::from_secs(1),
        "the supervisor to report every service and the slot",
        || {
            let st = m.shell.supervisor_status().ok()?;
            let services = st["services"].as_array()?;
            // The supervisor watches every daemon but itself.
            let all_active = units
                .iter()
                .filter(|u| u.as_str() != "lifeline-supervisor.service")
                .all(|u| {
                    services
                        .iter()
                        .any(|x| x["unit"] == u.as_str() && x["state"] == "active")
                });
            (all_active && st["update"]["booted_slot_marked_good"] == true).then_some(st)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", m.shell.supervisor_status()));
    art.write("supervisor-status.json", &status.to_string());
    let startup = m
        .shell
        .ok("systemctl list-jobs --no-pager; systemd-analyze blame --no-pager | head -n 25");
    art.write("systemd-analyze.txt", &startup);
    // The root file system is read-only, the data partition is not.
    assert!(
        !m.shell.run("touch /usr/lib/lifeline/probe").unwrap().ok(),
        "the root file system is writable"
    );
    let mounts = m.shell.ok("for p in / /data /var/lib/lifeline; do findmnt -n -o TARGET,FSTYPE,OPTIONS --mountpoint $p; done");
    assert!(
        mounts.lines().next().unwrap_or("").contains("ro,"),
        "root not read-only: {mounts}"
    );
    assert!(
        mounts.contains("/data") && mounts.contains("/var/lib/lifeline"),
        "{mounts}"
    );
    // The firewall lets only 80 and 443 in.
    let rules = m.shell.ok("nft list chain inet lifeline input");
    assert!(
        rules.contains("policy drop") && rules.contains("tcp dport { 80, 443 } accept"),
        "{rules}"
    );
    // Memory of the services after boot.
    let mut total = 0u64;
    for unit in &units {
        let v = m
            .shell
            .ok(&format!("systemctl show -P MemoryCurrent {unit}"));
        let bytes: u64 = v.trim().parse().unwrap_or(0);
        total += bytes;
        figure(
            &format!("memory_{}_kib", unit.trim_end_matches(".service")),
            bytes / 1024,
        );
    }
    figure("memory_services_total_kib", total / 1024);

    // 3. The front panel on the second serial port.
    if let Some(panel) = &m.panel {
        // The status screen: the address to browse to and the state (an evaluation
        // licence here, as no licence is installed).
        let ip = m.shell.ok("hostname -I");
        let url = format!("https://{}/", ip.split_whitespace().next().unwrap_or("?"));
        let (snap, ok) = panel.wait_for(Duration::from_secs(60), |s| {
            s.rows.iter().any(|r| r.contains(&url)) && s.rows.iter().any(|r| r.contains("EVAL"))
        });
        let _ = panel.save_png(&art.path("panel.png"));
        assert!(
            ok,
            "the panel shows no status screen on ttyS1: {:?}",
            snap.rows
        );
        assert!(snap.replies > 0, "the panel service spoke to the panel");
    }

    // 4. Accounts, and the admin logging in over the forwarded port.
    add_user(&mut m, "admin", "admin", "Ada Admin", ADMIN_PASSWORD);
    add_user(&mut m, "rep1", "rep", "Rémi Rep", REP_PASSWORD);
    assert_eq!(
        portal.token("admin", "wrong-password"),
        Err(401),
        "a wrong password is refused"
    );
    let admin = portal
        .token("admin", ADMIN_PASSWORD)
        .expect("the admin logs in");
    let (s, _) = portal.get(&admin, "/api/v1/audit?limit=5");
    assert_eq!(s, 200, "the admin reads the audit log");

    // The box tells clients to come back through the forwarded port.
    m.shell.ok(&format!(
        "sed -i 's|^# public_url = .*|public_url = \"https://127.0.0.1:{}\"|' /etc/lifeline/relay.toml && systemctl restart lifeline-relay",
        m.https.port()
    ));
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the relay after its restart",
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap();

    // 5. A one-shot session: key, client downloaded from the box, queue, accept, chat.
    let x = Xvfb::start();
    let rep = portal.token("rep1", REP_PASSWORD).expect("the rep logs in");
    let key = portal.new_key(&rep, "personal");
    let tmp = tempfile::tempdir().unwrap();
    let file = portal.download_client(&key, "Zoë Client", "de", tmp.path());
    let agent = Agent::run(&file, &x, art.path("agent.log"));
    let _wid = x.window("Support");
    agent.wait_log("event=connected", Duration::from_secs(60));
    x.screenshot(&art.path("1-terms.png"));
    let mut wid = String::new();
    for _ in 0..20 {
        wid = x.window("Support");
        if x.try_xdotool(&["windowfocus", "--sync", &wid]) {
            x.try_xdotool(&["key", "Return"]);
        }
        if wait_for(
            Duration::from_millis(500),
            Duration::from_millis(50),
            "terms",
            || agent.log().contains("event=terms_accepted").then_some(()),
        )
        .is_ok()
        {
            break;
        }
    }
    agent.wait_log(
        "event=state state=waiting position=1",
        Duration::from_secs(30),
    );
    let sid = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the session in the rep's queue",
        || {
            let (_, q) = portal.get(&rep, "/api/v1/queues");
            q["entries"].as_array()?.iter().find_map(|e| {
                (e["customer_name"] == "Zoë Client")
                    .then(|| e["session_id"].as_str().map(str::to_string))?
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    x.screenshot(&art.path("2-waiting.png"));
    let (s, v) = portal.post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}));
    assert_eq!(s, 200, "accept: {v}");
    agent.wait_log("event=state state=active", Duration::from_secs(30));
    portal.post(
        &rep,
        &format!("/api/v1/sessions/{sid}/messages"),
        json!({"text": "Hallo Zoë, ich schaue"}),
    );
    agent.wait_log("text=\"Hallo Zoë, ich schaue\"", Duration::from_secs(30));
    x.xdotool(&["windowfocus", "--sync", &wid]);
    x.xdotool(&["type", "--delay", "40", "Grüße aus dem Büro"]);
    x.xdotool(&["key", "Return"]);
    let messages = |portal: &Portal| -> Vec<(String, String)> {
        let (_, d) = portal.get(&rep, &format!("/api/v1/sessions/{sid}"));
        d["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["sender"].as_str().unwrap_or("").into(),
                            m["body"].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the customer's answer",
        || {
            messages(&portal)
                .iter()
                .any(|(s, b)| s == "customer" && b == "Grüße aus dem Büro")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    x.screenshot(&art.path("3-chat.png"));

    // 6. kill -9 of the relay: systemd restarts it, the agent comes back, nothing is lost.
    let before = m
        .shell
        .ok("systemctl show -P NRestarts lifeline-relay")
        .trim()
        .to_string();
    let killed_at = Instant::now();
    m.shell
        .ok("kill -9 \"$(systemctl show -P MainPID lifeline-relay)\"");
    agent.wait_log("event=link_lost", Duration::from_secs(30));
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "systemd to restart the relay",
        || {
            let n = m
                .shell
                .run("systemctl show -P NRestarts lifeline-relay")
                .ok()?
                .text
                .trim()
                .to_string();
            let active = m.shell.run("systemctl is-active lifeline-relay").ok()?.ok();
            (n != before && active).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.wait_log("event=link_restored", Duration::from_secs(60));
    figure(
        "relay_restart_to_agent_back_seconds",
        format!("{:.1}", killed_at.elapsed().as_secs_f64()),
    );
    let rep = portal
        .token("rep1", REP_PASSWORD)
        .expect("the rep logs in again");
    portal.post(
        &rep,
        &format!("/api/v1/sessions/{sid}/messages"),
        json!({"text": "immer noch da"}),
    );
    agent.wait_log("text=\"immer noch da\"", Duration::from_secs(30));
    x.xdotool(&["windowclose", &wid]);
    agent.wait_log("event=ended", Duration::from_secs(30));
    let (_, d) = portal.get(&rep, &format!("/api/v1/sessions/{sid}"));
    assert_eq!(d["state"], "ended", "{d}");
    let lines = messages(&portal);
    assert_eq!(
        lines,
        [
            ("rep".to_string(), "Hallo Zoë, ich schaue".to_string()),
            ("customer".into(), "Grüße aus dem Büro".into()),
            ("rep".into(), "immer noch da".into()),
        ]
    );
    let check = m
        .shell
        .ok("sqlite3 -readonly /var/lib/lifeline/relay/relay.db 'PRAGMA integrity_check;'");
    assert_eq!(check.trim(), "ok", "the database after kill -9");
    let journal = m
        .shell
        .ok("journalctl -b -u lifeline-relay --no-pager -o cat | tail -n 200");
    art.write("relay-journal.txt", &journal);
}
