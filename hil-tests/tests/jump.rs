//! A jump client installed as a real systemd service: the booted image plays both the box
//! and a customer's Linux computer.
//!
//! The guest gets a desktop's libraries from a disk of their own
//! ([`lifeline_hil_tests::desktop_libs`]; the appliance image has none, and must not), an
//! administrator makes a deployment key through the API, the guest downloads the Linux
//! installer from the box itself and runs it as root: the unit is then enabled and running
//! under the guest's systemd. The client must come back by itself after a relay restart and
//! after a reboot (nobody starts it), and it uninstalls itself, unit and folder, when the
//! administrator removes it in the console.
//!
//! One boot (plus the reboot of step 6) serves the whole test. It needs QEMU: on a real box
//! (`LIFELINE_HIL_BOX`) it is skipped loudly, since it changes the root file system.

use std::time::{Duration, Instant};

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::machine::{Machine, Options};
use lifeline_hil_tests::portal::Portal;
use lifeline_hil_tests::{desktop_libs, figure, image, skip, wait_for, workspace};
use serde_json::{Value, json};

const MODEL: &str = "b200";
const ADMIN_PASSWORD: &str = "hil-admin-password-1";
const REP_PASSWORD: &str = "hil-rep-password-1";
/// The stock client in the box's client store (what the installer is made of).
const STORE_AGENT: &str = "/usr/share/lifeline/clients/linux-x86_64/lifeline-agent";
/// What the installer writes (`agents/client/src/jump/install.rs`, as root).
const UNIT: &str = "lifeline-jump.service";
const SERVICE_DIR: &str = "/opt/lifeline-jump";

/// Adds an account with the relay's own CLI, as the relay's user (the database's owner).
fn add_user(m: &mut Machine, user: &str, role: &str, display: &str, password: &str) {
    m.shell.ok(&format!(
        "printf '%s\\n' '{password}' | runuser -u lifeline-relay -- lifeline-relay --config /etc/lifeline/relay.toml user add --username {user} --role {role} --display-name '{display}' --password-stdin"
    ));
}

/// The jump clients the token's user sees.
fn clients(portal: &Portal, token: &str) -> Vec<Value> {
    let (s, v) = portal.get(token, "/api/v1/jump/clients");
    assert_eq!(s, 200, "the jump clients list: {v}");
    v.as_array().cloned().unwrap_or_default()
}

/// The jump clients the token's user sees, or `None` while the box does not answer (it
/// restarts).
fn try_clients(portal: &Portal, token: &str) -> Option<Vec<Value>> {
    let r = portal
        .http
        .get(portal.url("/api/v1/jump/clients"))
        .bearer_auth(token)
        .send()
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json::<Value>().ok()?.as_array().cloned()
}

/// How often the guest's jump service logged `event=jump_online` in this boot.
fn online_events(m: &mut Machine) -> usize {
    m.shell
        .run(&format!("journalctl -b -u {UNIT} --no-pager -o cat"))
        .map(|o| o.text.matches("event=jump_online").count())
        .unwrap_or(0)
}

/// Waits until the client `id` is listed online and the service logged at least `events`
/// `event=jump_online` lines in this boot.
fn wait_online(m: &mut Machine, portal: &Portal, token: &str, id: &str, events: usize, what: &str) {
    wait_for(Duration::from_secs(120), Duration::from_millis(500), what, || {
        let listed = try_clients(portal, token)?
            .iter()
            .any(|c| c["id"] == id && c["online"] == true);
        (listed && online_events(m) >= events).then_some(())
    })
    .unwrap_or_else(|e| {
        let log = m
            .shell
            .run(&format!("systemctl --no-pager status {UNIT}; journalctl -b -u {UNIT} --no-pager -o cat | tail -n 40"))
            .map(|o| o.text)
            .unwrap_or_default();
        panic!("{e}\n{log}")
    });
}

/// Waits for the portal on the forwarded HTTPS port.
fn wait_portal(m: &Machine, portal: &Portal, limit: Duration, what: &str) {
    wait_for(limit, Duration::from_millis(200), what, || {
        (portal.status("/") == Some(200)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n---- console ----\n{}", m.console()));
}

fn boots(m: &Machine) -> usize {
    m.console().matches("Lifeline: booting slot").count()
}

/// The guest plays a customer's computer, whose system is writable (the appliance mounts
/// its root read-only; the test, and only the test, lifts that in the guest).
fn writable_root(m: &mut Machine) {
    m.shell.ok("mount -o remount,rw /");
}

#[test]
fn jump_client_runs_as_a_systemd_service_and_survives_restart_and_reboot() {
    if std::env::var_os("LIFELINE_HIL_BOX").is_some() {
        skip(
            "jump",
            "the whole jump service test",
            "it needs QEMU (a disk of desktop libraries, and it writes the root file system)",
        );
        return;
    }
    let art = Artifacts::new("jump");
    let built = image::ensure(MODEL).unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().unwrap();
    let libs_disk = work.path().join("desktop-libs.ext4");
    let agent = workspace().join("target/release/lifeline-agent");
    let n = desktop_libs::disk(&agent, work.path(), &libs_disk).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "hil: {n} libraries of {} on the desktop disk",
        agent.display()
    );
    let opts = Options {
        extra_disks: vec![libs_disk],
        ..Options::default()
    };
    let mut m = Machine::boot(&built, &opts, art.clone()).unwrap_or_else(|e| panic!("{e}"));
    let portal = Portal::new(m.https);

    // 1. Boot; the administrator and a rep log in over the forwarded port.
    wait_portal(&m, &portal, Duration::from_secs(240), "the portal on 443");
    figure(
        &format!("jump_boot_to_portal_ready_s_{}", m.accel),
        format!("{:.1}", m.started.elapsed().as_secs_f64()),
    );
    m.shell
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    add_user(&mut m, "admin", "admin", "Ada Admin", ADMIN_PASSWORD);
    add_user(&mut m, "rep1", "rep", "Rémi Rep", REP_PASSWORD);
    let admin = portal
        .token("admin", ADMIN_PASSWORD)
        .expect("the admin logs in");
    let rep = portal.token("rep1", REP_PASSWORD).expect("the rep logs in");

    // 2. The guest as a customer's desktop computer: its libraries, then nothing missing.
    writable_root(&mut m);
    let copied = desktop_libs::install(&mut m.shell).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("hil: the guest got {} libraries: {copied:?}", copied.len());
    let missing =
        desktop_libs::missing(&mut m.shell, STORE_AGENT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        missing.is_empty(),
        "the client still lacks libraries in the guest: {missing:?}"
    );

    // The box's site URL is https://localhost (below): the image's /etc/hosts resolves it.
    m.shell.ok("getent hosts localhost");

    // 3. A deployment key; the guest downloads its Linux installer from the box itself.
    let (s, key) = portal.post(
        &admin,
        "/api/v1/jump/deploy-keys",
        json!({"mode": "active", "valid_minutes": 120, "uses": 1,
               "group": "general", "label": "hil guest"}),
    );
    assert_eq!(s, 200, "deployment key: {key}");
    let url = key["installers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == "linux-x86_64"))
        .and_then(|p| p[1].as_str())
        .unwrap_or_else(|| panic!("no Linux installer link: {key}"))
        .to_string();
    // relay.toml of the image names no host, so the box's site URL (in the link and in the
    // installer's ticket) is https://localhost: in the guest that is the box itself.
    let path = url
        .strip_prefix("https://localhost")
        .unwrap_or_else(|| panic!("the site URL is not https://localhost: {url}"));
    // The image has neither curl nor wget: one HTTP/1.0 request through `openssl s_client`
    // (its -quiet reads until the box closes), then the headers cut off.
    let downloaded = Instant::now();
    m.shell
        .run_timeout(
            &format!(
                "printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -quiet -connect 127.0.0.1:443 -servername localhost 2>/tmp/installer.err > /tmp/installer.http"
            ),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let head = m
        .shell
        .ok("head -c 2000 /tmp/installer.http | sed -n '1,/^\\r$/p'");
    assert!(
        head.lines().next().unwrap_or("").contains(" 200 "),
        "the installer download: {head}\n{}",
        m.shell
            .run("cat /tmp/installer.err; ls -la /tmp; which openssl")
            .map(|o| o.text)
            .unwrap_or_default()
    );
    m.shell.ok("perl -0777 -ne 'print substr($_, index($_, \"\\r\\n\\r\\n\") + 4)' /tmp/installer.http > /tmp/installer && rm /tmp/installer.http && chmod +x /tmp/installer");
    let length: Option<u64> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    let size: u64 = m
        .shell
        .ok("stat -c %s /tmp/installer")
        .trim()
        .parse()
        .unwrap();
    if let Some(length) = length {
        assert_eq!(size, length, "the whole installer arrived");
    }
    assert_eq!(
        m.shell.ok("tail -c 8 /tmp/installer"),
        "LLTICKET",
        "the installer carries its ticket"
    );
    figure(
        "jump_installer_download_in_guest_s",
        format!("{:.1}", downloaded.elapsed().as_secs_f64()),
    );

    // 4. The installer, as root: the unit enabled and running under systemd, the client
    // online under the guest's host name.
    let o = m
        .shell
        .run_timeout("cd /tmp && ./installer", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(o.ok(), "the installer exited {}:\n{}", o.status, o.text);
    assert!(o.text.contains(SERVICE_DIR), "{}", o.text);
    assert_eq!(
        m.shell.ok(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );
    let active = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(300),
        "the unit active",
        || {
            m.shell
                .run(&format!("systemctl is-active {UNIT}"))
                .ok()
                .filter(|o| o.text.trim() == "active")
        },
    );
    assert!(
        active.is_ok(),
        "{UNIT} is not active: {}",
        m.shell
            .run(&format!("systemctl --no-pager status {UNIT}"))
            .map(|o| o.text)
            .unwrap_or_default()
    );
    let unit = m.shell.ok(&format!("systemctl cat {UNIT}"));
    assert!(
        unit.contains(&format!("# /etc/systemd/system/{UNIT}")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!(
            "ExecStart=\"{SERVICE_DIR}/lifeline-agent\" \"jump\" \"run\""
        )),
        "{unit}"
    );
    art.write("unit.txt", &unit);
    let hostname = m
        .shell
        .ok("cat /proc/sys/kernel/hostname")
        .trim()
        .to_string();
    let id = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the guest's client in the list",
        || {
            clients(&portal, &rep).into_iter().find_map(|c| {
                (c["computer"] == hostname.as_str() && c["online"] == true)
                    .then(|| c["id"].as_str().map(str::to_string))?
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", clients(&portal, &rep)));
    wait_online(&mut m, &portal, &rep, &id, 1, "the first event=jump_online");

    // 5. The relay restarts: the service's client comes back by itself.
    let before = online_events(&mut m);
    let restarted = Instant::now();
    m.shell.ok("systemctl restart lifeline-relay");
    wait_online(
        &mut m,
        &portal,
        &rep,
        &id,
        before + 1,
        "the client back after the relay's restart",
    );
    figure(
        "jump_back_after_relay_restart_s",
        format!("{:.1}", restarted.elapsed().as_secs_f64()),
    );

    // 6. A reboot: systemd starts the service at boot, nobody else does.
    let before_boots = boots(&m);
    let rebooted = Instant::now();
    m.shell.send("systemctl reboot").unwrap();
    wait_for(
        Duration::from_secs(300),
        Duration::from_millis(200),
        "the boot loader after the reboot",
        || (boots(&m) > before_boots).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", m.console()));
    m.shell
        .wait_ready(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_portal(
        &m,
        &portal,
        Duration::from_secs(240),
        "the portal after the reboot",
    );
    wait_online(
        &mut m,
        &portal,
        &rep,
        &id,
        1,
        "the client back after the reboot",
    );
    figure(
        "jump_back_after_reboot_s",
        format!("{:.1}", rebooted.elapsed().as_secs_f64()),
    );
    assert_eq!(
        m.shell.ok(&format!("systemctl is-active {UNIT}")).trim(),
        "active"
    );
    assert_eq!(
        m.shell.ok(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );

    // systemd started it at boot (its unit is wanted by multi-user.target), and it never
    // had to restart it.
    let boot_journal = m
        .shell
        .ok(&format!("journalctl -b -u {UNIT} --no-pager -o cat"));
    assert!(
        boot_journal.contains("Started lifeline-jump.service"),
        "{boot_journal}"
    );
    assert_eq!(
        m.shell
            .ok(&format!("systemctl show -P NRestarts {UNIT}"))
            .trim(),
        "0",
        "{boot_journal}"
    );

    // 7. The administrator removes it in the console: it uninstalls itself.
    writable_root(&mut m);
    let (s, v) = portal.delete(&admin, &format!("/api/v1/jump/clients/{id}"));
    assert_eq!(s, 200, "remove: {v}");
    assert_eq!(v["uninstall"], "sent", "{v}");
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the unit and its folder gone from the guest",
        || {
            let o = m
                .shell
                .run(&format!(
                    "systemctl cat {UNIT} >/dev/null 2>&1 && echo unit; test -e {SERVICE_DIR} && echo folder; test -e /etc/systemd/system/{UNIT} && echo file; systemctl is-active {UNIT} >/dev/null && echo active; true"
                ))
                .ok()?;
            o.text.trim().is_empty().then_some(())
        },
    )
    .unwrap_or_else(|e| {
        let log = m
            .shell
            .run(&format!("systemctl --no-pager status {UNIT}; ls -la {SERVICE_DIR}; journalctl -b -u {UNIT} --no-pager -o cat | tail -n 40"))
            .map(|o| o.text)
            .unwrap_or_default();
        panic!("{e}\n{log}")
    });
    assert!(
        m.shell
            .ok("ls /etc/systemd/system/*.wants/")
            .lines()
            .all(|l| !l.contains(UNIT)),
        "the unit is still wanted somewhere"
    );
    assert!(
        !clients(&portal, &admin)
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "the client is still listed"
    );
    let journal = m.shell.ok(&format!(
        "journalctl -b -u {UNIT} --no-pager -o cat | tail -n 200"
    ));
    art.write("jump-journal.txt", &journal);
}
