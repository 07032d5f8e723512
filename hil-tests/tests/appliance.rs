//! The appliance booted from its firmware image: services, panel (on the box and mirrored by
//! the relay), the supervisor's actions under systemd and polkit (restart, identify, network),
//! a whole customer session with the client downloaded from the box, a relay crash, and the
//! licence and certificate alerts.
//!
//! One boot serves the whole test (a boot costs ~40 s under TCG); the steps are in the order
//! a box lives through them. The harness reaches the guest's shell over its third serial
//! port, as it reaches a real box (`LIFELINE_HIL_BOX`); steps that need QEMU are skipped
//! loudly there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::desktop::{Agent, Xvfb, window};
use lifeline_hil_tests::machine::{Channel, Machine, Options};
use lifeline_hil_tests::portal::Portal;
use lifeline_hil_tests::{daemon_units, figure, image, skip, wait_for, workspace};
use lifeline_panel::driver::Model as PanelModel;
use serde_json::json;

const MODEL: &str = "b200";
const ADMIN_PASSWORD: &str = "hil-admin-password-1";
const REP_PASSWORD: &str = "hil-rep-password-1";
const BOX_PASSWORD: &str = "hil-box-password-1";
const TEST: &str = "appliance";

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
        channel: Channel::Serial,
        second_nic: true,
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
    // The supervisor sees every service running and marked this first boot's slot good
    // (it asks RAUC for up to 2 minutes while RAUC's D-Bus activation is slow, then needs
    // three good health checks).
    let status = wait_for(
        Duration::from_secs(180),
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

    // The NTP client runs, so the supervisor's NTP state means something (the guest may
    // have no way out to a time server: synchronised or not, it is known).
    m.shell.ok("systemctl is-active systemd-timesyncd.service");
    assert!(status["ntp_synchronized"].is_boolean(), "{status}");

    // 3. The front panel on the second serial port.
    if m.panel.is_none() {
        skip(
            TEST,
            "the panel emulator's screen and traffic",
            "a real box has its own panel (its picture is checked through the relay below)",
        );
    }
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
    add_user(&mut m, "box", "appliance-admin", "Bo Box", BOX_PASSWORD);

    // The panel's picture on the appliance page: the panel service owns
    // org.lifeline.Panel1 (its D-Bus policy is in the image) and the relay serves the PNG
    // to an appliance admin.
    let journal = m
        .shell
        .ok("journalctl -b -u lifeline-panel --no-pager -o cat");
    assert!(
        !journal.contains("cannot own"),
        "the panel could not own its name:\n{journal}"
    );
    let box_admin = portal
        .token("box", BOX_PASSWORD)
        .expect("the appliance admin logs in");
    let png = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "the panel picture from the relay",
        || portal.bytes(&box_admin, "/appliance/panel.png").ok(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    art.write_bytes("panel-from-relay.png", &png);
    let rep_token = portal.token("rep1", REP_PASSWORD).expect("the rep logs in");
    assert_eq!(
        portal.bytes(&rep_token, "/appliance/panel.png").err(),
        Some(403),
        "a rep may not see the appliance panel"
    );
    let (s, _) = portal.post(&rep_token, "/api/v1/auth/logout", serde_json::Value::Null);
    assert!(s < 500, "logout: {s}");

    supervisor_actions(&mut m, &portal, &art);
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
    let _wid = window(&x, "Support");
    agent.wait_log("event=connected", Duration::from_secs(60));
    x.screenshot(&art.path("1-terms.png"));
    let mut wid = String::new();
    for _ in 0..20 {
        wid = window(&x, "Support");
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

    // 7. Licence and certificate alerts (last: the new certificate ends the client's pin).
    validity_alerts(&mut m, &portal);
}

/// Waits until the supervisor's status satisfies `want`; returns it.
fn wait_status(
    m: &mut Machine,
    limit: Duration,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(limit, Duration::from_millis(500), what, || {
        m.shell.supervisor_status().ok().filter(|s| want(s))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", m.shell.supervisor_status()))
}

fn alerts_of(status: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    status[key].as_array().cloned().unwrap_or_default()
}

/// The supervisor's actions under systemd: each authorised by the caller's Unix user and by
/// polkit for the supervisor's own user, and audited.
fn supervisor_actions(m: &mut Machine, portal: &Portal, art: &Artifacts) {
    // Restart the relay as the relay's user (the appliance page does this): systemd
    // starts a new invocation of the unit.
    let invocation = |m: &mut Machine| {
        m.shell
            .ok("systemctl show -P InvocationID lifeline-relay")
            .trim()
            .to_string()
    };
    let before = invocation(m);
    let o = m
        .shell
        .supervisor_call(
            "lifeline-relay",
            "RestartService",
            "ss",
            &["relay", "web:hil"],
        )
        .unwrap();
    assert!(o.ok(), "RestartService: {}", o.text);
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(300),
        "systemd to restart the relay for the supervisor",
        || {
            let now = invocation(m);
            let active = m.shell.run("systemctl is-active lifeline-relay").ok()?.ok();
            (now != before && !now.is_empty() && active).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the portal after the restart",
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap();
    let audit = m.shell.ok("cat /var/lib/lifeline/supervisor/audit.log");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"restart_service\"")
                && l.contains("\"actor\":\"web:hil\"")
                && l.contains("\"outcome\":\"done\"")),
        "{audit}"
    );

    // Not every user may ask: the bus policy stops the licence manager's user (busctl
    // prints the bus's AccessDenied as "Access denied"; the supervisor's own refusals carry
    // its message instead).
    let o = m
        .shell
        .supervisor_call("lifeline-license", "Identify", "s", &["intruder"])
        .unwrap();
    assert!(
        !o.ok() && (o.text.contains("AccessDenied") || o.text.contains("Access denied")),
        "a caller outside the policy got through: {}",
        o.text
    );
    // And the supervisor's own user may do exactly its actions, nothing else.
    for (what, cmd) in [
        (
            "restart another unit",
            "RestartUnit ss systemd-journald.service replace",
        ),
        (
            "stop the relay",
            "StopUnit ss lifeline-relay.service replace",
        ),
    ] {
        let o = m
            .shell
            .run(&format!(
                "runuser -u lifeline-supervisor -- busctl --system call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager {cmd}"
            ))
            .unwrap();
        assert!(
            !o.ok(),
            "the supervisor's user may {what} (polkit rule too wide): {}",
            o.text
        );
    }

    // Identify (as the panel's user): the status says so and the panel blinks.
    let o = m
        .shell
        .supervisor_call("lifeline-panel", "Identify", "s", &["hil"])
        .unwrap();
    assert!(o.ok(), "Identify: {}", o.text);
    wait_status(m, Duration::from_secs(10), "identify in the status", |s| {
        s["identify"] == true
    });
    match &m.panel {
        Some(panel) => {
            let (_, blinked) = panel.wait_for(Duration::from_secs(10), |s| s.backlight == 0);
            assert!(blinked, "the panel did not blink for Identify");
        }
        None => skip(
            TEST,
            "the panel blinking for Identify",
            "no panel emulator on a real box",
        ),
    }

    // The network: every wired port gets DHCP by default; the second port is switched to
    // a static address and back, through the supervisor, while the first keeps serving.
    if std::env::var_os("LIFELINE_HIL_BOX").is_some() {
        skip(
            TEST,
            "switching a network port to static and back",
            "it could cut the test host off a real box",
        );
        return;
    }
    let st = wait_status(
        m,
        Duration::from_secs(60),
        "both ports addressed by DHCP",
        |s| {
            let ifaces = s["interfaces"].as_array().cloned().unwrap_or_default();
            ifaces.len() == 2
                && ifaces.iter().all(|i| i["dhcp"] == true)
                && ifaces.iter().any(|i| {
                    i["addresses"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "10.0.3.15/24"))
                })
        },
    );
    let second = st["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "10.0.3.15/24"))
        })
        .and_then(|i| i["name"].as_str())
        .unwrap()
        .to_string();
    let o = m
        .shell
        .supervisor_call(
            "lifeline-relay",
            "SetNetwork",
            "sssys",
            &[&second, "static", "10.0.3.20", "24", "web:hil"],
        )
        .unwrap();
    assert!(o.ok(), "SetNetwork static: {}", o.text);
    let addr = |m: &mut Machine| m.shell.ok(&format!("ip -4 -br addr show dev {second}"));
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the static address on the second port",
        || {
            let a = addr(m);
            (a.contains("10.0.3.20/24") && !a.contains("10.0.3.15")).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", addr(m)));
    let st = wait_status(
        m,
        Duration::from_secs(20),
        "the port reported static",
        |s| {
            s["interfaces"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["name"] == second.as_str() && i["dhcp"] == false)
            })
        },
    );
    art.write("supervisor-status-static.json", &st.to_string());
    // Kept on the data partition, where /etc/systemd/network points.
    let file = m.shell.ok(&format!(
        "readlink /etc/systemd/network; cat /data/lifeline/network/10-lifeline-{second}.network; networkctl status {second} --no-pager | grep 'Network File'"
    ));
    assert!(
        file.contains("/data/lifeline/network")
            && file.contains("Address=10.0.3.20/24")
            && file.contains(&format!("10-lifeline-{second}.network")),
        "{file}"
    );
    assert_eq!(portal.status("/"), Some(200), "the first port still serves");
    let o = m
        .shell
        .supervisor_call(
            "lifeline-relay",
            "SetNetwork",
            "sssys",
            &[&second, "dhcp", "", "0", "web:hil"],
        )
        .unwrap();
    assert!(o.ok(), "SetNetwork dhcp: {}", o.text);
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "DHCP back on the second port",
        || {
            let a = addr(m);
            (a.contains("10.0.3.15/24") && !a.contains("10.0.3.20")).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", addr(m)));
    wait_status(m, Duration::from_secs(20), "the port reported DHCP", |s| {
        s["interfaces"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["name"] == second.as_str() && i["dhcp"] == true)
        })
    });
}

/// The licence and certificate alerts, on the box's own release build.
fn validity_alerts(m: &mut Machine, portal: &Portal) {
    // No licence installed: the evaluation licence, said as an alert with its reason.
    let st = wait_status(m, Duration::from_secs(30), "the evaluation alert", |s| {
        alerts_of(s, "validity_alerts")
            .iter()
            .any(|a| a["kind"] == "evaluation_licence")
    });
    let eval = alerts_of(&st, "validity_alerts");
    assert!(
        eval.iter().any(|a| a["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No licence is installed"))),
        "{st}"
    );

    // A licence signed with the development key: the release build refuses it.
    let work = tempfile::tempdir().unwrap();
    let licence = work.path().join("licence.json");
    let issued = std::process::Command::new(workspace().join("target/release/lifeline-license"))
        .arg("issue")
        .arg("--key")
        .arg(workspace().join("services/license/dev-keys/dev-licence-signing.key.pem"))
        .args([
            "--serial",
            "DEV-B200-0001",
            "--model",
            "b200",
            "--edition",
            "standard",
        ])
        .args([
            "--rep-seats",
            "5",
            "--issued",
            "2026-01-01",
            "--expires",
            "2099-12-31",
        ])
        .args(["--force", "--out"])
        .arg(&licence)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    m.shell
        .write_file(
            "/var/lib/lifeline/license/licence.json",
            &std::fs::read(&licence).unwrap(),
        )
        .unwrap();
    m.shell.ok("chown lifeline-license: /var/lib/lifeline/license/licence.json && busctl --system call org.lifeline.License1 /org/lifeline/License1 org.lifeline.License1 Reload");
    let refusal = m.shell.ok("busctl --system get-property org.lifeline.License1 /org/lifeline/License1 org.lifeline.License1 Refusal");
    assert!(refusal.contains("unknown_key"), "{refusal}");
    let st = wait_status(
        m,
        Duration::from_secs(20),
        "the refusal in the alert",
        |s| {
            alerts_of(s, "validity_alerts").iter().any(|a| {
                a["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("does not trust"))
            })
        },
    );
    assert_eq!(st["evaluation_licence"], true, "{st}");
    m.shell.ok("rm -f /var/lib/lifeline/license/licence.json && busctl --system call org.lifeline.License1 /org/lifeline/License1 org.lifeline.License1 Reload");

    // A certificate that ends in 10 days: the relay serves it, the supervisor warns.
    let cert = work.path().join("cert.pem");
    let key = work.path().join("key.pem");
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "10",
            "-subj",
            "/CN=lifeline.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    m.shell
        .ok("mkdir -p /etc/lifeline/tls && chmod 0755 /etc/lifeline/tls");
    m.shell
        .write_file("/etc/lifeline/tls/site.pem", &std::fs::read(&cert).unwrap())
        .unwrap();
    m.shell
        .write_file("/etc/lifeline/tls/site.key", &std::fs::read(&key).unwrap())
        .unwrap();
    m.shell.ok("chmod 0644 /etc/lifeline/tls/site.pem && chown root:lifeline-relay /etc/lifeline/tls/site.key && chmod 0640 /etc/lifeline/tls/site.key");
    m.shell.ok("printf '\\n[tls]\\ncertificate = \"/etc/lifeline/tls/site.pem\"\\nkey = \"/etc/lifeline/tls/site.key\"\\n' >> /etc/lifeline/relay.toml && systemctl restart lifeline-relay lifeline-supervisor");
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the relay with the new certificate",
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap();
    // The portal may answer before systemd has the relay's ready notice (the status says
    // "starting" until then): wait for the alert and for the restart to settle.
    let st = wait_status(m, Duration::from_secs(60), "the certificate alert", |s| {
        s["state"] != "starting"
            && alerts_of(s, "validity_alerts")
                .iter()
                .any(|a| a["kind"] == "certificate_expiring" && (a["days"] == 9 || a["days"] == 10))
    });
    assert_eq!(
        st["state"], "ok",
        "an expiring certificate warns, it does not degrade: {st}"
    );
    // The panel lists it on its alerts page (Down past the status and the two ports).
    match &m.panel {
        Some(panel) => {
            for _ in 0..3 {
                panel.press(lifeline_panel::link::Key::Down);
            }
            let (snap, ok) = panel.wait_for(Duration::from_secs(10), |s| {
                s.rows.iter().any(|r| r.contains("Cert exp"))
            });
            assert!(
                ok,
                "the panel does not show the certificate alert: {:?}",
                snap.rows
            );
            panel.press(lifeline_panel::link::Key::Exit);
        }
        None => skip(
            TEST,
            "the certificate alert on the panel emulator",
            "no panel emulator on a real box",
        ),
    }
    // The self-signed certificate comes back.
    m.shell.ok("sed -i '/^\\[tls\\]$/,$d' /etc/lifeline/relay.toml && systemctl restart lifeline-relay lifeline-supervisor");
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the relay with its own certificate",
        || (portal.status("/") == Some(200)).then_some(()),
    )
    .unwrap();
}
