//! The supervisor in development mode, for real: it starts its own `dbus-daemon`, runs the
//! real licence manager as its child, publishes `org.lifeline.Supervisor1`, notices a child
//! killed with SIGKILL, restarts it, and stops everything on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lifeline_supervisor_api::{
    ApplianceStatus, ServiceState, Supervisor1Proxy, SupervisorError, parse_status,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeline-supervisor");

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(BIN).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build every binary first (`cargo xtask test` does)",
        p.display()
    );
    p
}

struct Supervisor {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Supervisor {
    /// SIGTERM first, so the supervisor stops its children (its private bus, the licence
    /// manager) instead of leaving them running; SIGKILL if it has not exited in 15 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Supervisor {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(
        dir.path().join("factory.toml"),
        "serial = \"LL-DEV-1\"\nmodel = \"b200\"\n",
    )
    .unwrap();
    let config = format!(
        "mode = \"development\"\nstate_dir = \"{state}\"\ndata_path = \"{root}\"\nrefresh_ms = 500\n\n\
         [[service]]\nname = \"license\"\ncommand = \"{lic}\"\n\
         args = [\"serve\", \"--licence\", \"{none}\", \"--data-dir\", \"{data}\", \"--factory-file\", \"{factory}\", \"--dmi-serial-file\", \"{nodmi}\"]\n\
         env = {{ RUST_LOG = \"info\" }}\n\n\
         [[service]]\nname = \"sleeper\"\ncommand = \"/bin/sleep\"\nargs = [\"1000\"]\nready = \"started\"\noptional = true\n",
        state = p("state"),
        root = dir.path().display(),
        lic = sibling("lifeline-license").display(),
        none = p("licence.json"),
        data = p("license"),
        factory = p("factory.toml"),
        nodmi = p("no-dmi"),
    );
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("LIFELINE_DBUS_ADDRESS")
        .spawn()
        .unwrap();
    Supervisor { child, dir }
}

async fn wait_for<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread")]
async fn children_on_a_private_bus_are_watched_restarted_and_stopped() {
    let mut sup = start();
    let addr_file = sup.dir.path().join("state/bus-address");
    let address = wait_for(Duration::from_secs(20), "the bus address", async || {
        std::fs::read_to_string(&addr_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    let conn = zbus::connection::Builder::address(address.trim())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = wait_for(
        Duration::from_secs(20),
        "the supervisor on the bus",
        async || {
            let p = Supervisor1Proxy::new(&conn).await.ok()?;
            p.get_status().await.ok()?;
            Some(p)
        },
    )
    .await;
    let ready = |s: &ApplianceStatus| {
        let l = s.service("license")?;
        (l.state == ServiceState::Active && s.evaluation_licence == Some(true)).then_some(l.pid?)
    };
    let first_pid = wait_for(
        Duration::from_secs(30),
        "the licence manager ready",
        async || ready(&proxy.status().await.ok()?),
    )
    .await;
    let status = proxy.status().await.unwrap();
    assert_eq!(status.service("license").unwrap().restarts, 0);
    assert_eq!(
        status.service("sleeper").unwrap().state,
        ServiceState::Active
    );
    assert!(status.uptime_seconds > 0 && !status.hostname.is_empty());
    assert!(!status.time.is_empty());

    // SIGKILL the child: the change signal says it is down, then it is back with a new pid.
    let mut changes = proxy.receive_changed().await.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let down = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(sig) = changes.next().await {
            let s = parse_status(sig.args().unwrap().status()).unwrap();
            let l = s.service("license").unwrap().clone();
            if l.state != ServiceState::Active {
                return (s, l);
            }
        }
        panic!("the signal stream ended");
    })
    .await
    .expect("a Changed signal showing the killed child within 5 s");
    assert!(down.1.restarts >= 1, "{:?}", down.1);
    assert_ne!(down.0.state, lifeline_supervisor_api::OverallState::Ok);
    let second_pid = wait_for(
        Duration::from_secs(30),
        "the licence manager back",
        async || ready(&proxy.status().await.ok()?).filter(|p| *p != first_pid),
    )
    .await;
    assert_eq!(
        proxy
            .status()
            .await
            .unwrap()
            .service("license")
            .unwrap()
            .restarts,
        1
    );

    // A restart through the D-Bus action; unknown names are refused with a sentence.
    proxy.restart_service("license", "test").await.unwrap();
    let third_pid = wait_for(
        Duration::from_secs(30),
        "the restarted licence manager",
        async || ready(&proxy.status().await.ok()?).filter(|p| *p != second_pid),
    )
    .await;
    match proxy.restart_service("nosuch", "test").await {
        Err(SupervisorError::UnknownService(m)) => assert!(m.contains("license"), "{m}"),
        other => panic!("expected UnknownService, got {other:?}"),
    }
    match proxy.set_network("eth0", "dhcp", "", 0, "test").await {
        Err(SupervisorError::Unsupported(m)) => assert!(m.contains("development"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    proxy.report_relay(2, 3, 4).await.unwrap();
    wait_for(Duration::from_secs(5), "the relay counts", async || {
        let s = proxy.status().await.ok()?;
        (s.relay.rep_consoles == 2 && s.relay.customer_clients == 3 && s.relay.jump_clients == 4)
            .then_some(())
    })
    .await;
    let audit = std::fs::read_to_string(sup.dir.path().join("state/audit.log")).unwrap();
    assert!(audit.contains("\"action\":\"restart_service\""), "{audit}");
    assert!(audit.contains("\"actor\":\"test\""), "{audit}");

    // SIGTERM: the supervisor stops its children and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = wait_for(
        Duration::from_secs(20),
        "the supervisor to exit",
        async || sup.child.try_wait().unwrap(),
    )
    .await;
    assert!(exit.success(), "{exit}");
    assert!(
        !alive(third_pid),
        "the licence manager outlived the supervisor"
    );
}

/// A bus any local user may connect to, so a caller of another Unix user can be tried.
fn open_bus() -> (Child, String, tempfile::TempDir) {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow user=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/>\
             <allow own=\"*\"/></policy></busconfig>\n",
            dir.path().join("bus").display()
        ),
    )
    .unwrap();
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dbus-daemon must be installed (Debian package dbus)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string(), dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_are_authorised_by_unix_user_rate_limited_and_audited() {
    assert!(
        nix::unistd::getuid().is_root(),
        "this test runs a D-Bus caller as the user nobody and needs root (CI runs as root)"
    );
    let (mut bus, address, _bus_dir) = open_bus();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"development\"\nstate_dir = \"{}\"\nauthorised_users = [\"root\"]\n\n\
             [[service]]\nname = \"sleeper\"\ncommand = \"/bin/sleep\"\nargs = [\"1000\"]\nready = \"started\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut sup = Supervisor {
        child: Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["--bus-address", &address])
            .spawn()
            .unwrap(),
        dir,
    };
    let conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = wait_for(
        Duration::from_secs(20),
        "the supervisor on the bus",
        async || {
            let p = Supervisor1Proxy::new(&conn).await.ok()?;
            p.get_status().await.ok()?;
            Some(p)
        },
    )
    .await;

    // Another Unix user may read the status but not act.
    let send = |method: &str| {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "dbus-send",
            ])
            .arg(format!("--bus={address}"))
            .args([
                "--print-reply",
                "--reply-timeout=5000",
                "--dest=org.lifeline.Supervisor1",
                "/org/lifeline/Supervisor1",
            ])
            .arg(format!("org.lifeline.Supervisor1.{method}"))
            .args(if method == "GetStatus" {
                vec![]
            } else {
                vec!["string:intruder"]
            })
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(send("GetStatus").contains("\"mode\":\"development\""));
    let refused = send("Reboot");
    assert!(
        refused.contains("org.lifeline.Supervisor1.Error.NotAuthorised"),
        "{refused}"
    );

    // The supervisor's own user may; more than 20 identifies a minute are refused.
    for _ in 0..20 {
        proxy.identify("test").await.unwrap();
    }
    match proxy.identify("test").await {
        Err(SupervisorError::RateLimited(m)) => assert!(m.contains("minute"), "{m}"),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    let audit = std::fs::read_to_string(sup.dir.path().join("state/audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"uid\":65534")
            && l.contains("\"action\":\"reboot\"")
            && l.contains("refused: not authorised")),
        "{audit}"
    );
    assert!(audit.contains("refused: rate limited"), "{audit}");

    let _ = Command::new("kill")
        .args(["-TERM", &sup.child.id().to_string()])
        .status();
    let exit = wait_for(
        Duration::from_secs(20),
        "the supervisor to exit",
        async || sup.child.try_wait().unwrap(),
    )
    .await;
    assert!(exit.success(), "{exit}");
    let _ = bus.kill();
    let _ = bus.wait();
}

/// Licence and certificate alerts from the real licence manager (a licence that ends in ten
/// days) and a certificate file (that ends in five), and Identify in the status.
#[tokio::test(flavor = "multi_thread")]
async fn licence_and_certificate_alerts_and_identify() {
    use lifeline_supervisor_api::{OverallState, ValidityAlert};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(
        dir.path().join("factory.toml"),
        "serial = \"LL-DEV-2\"\nmodel = \"b200\"\n",
    )
    .unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let in_days = |d: i64| {
        let date = today + time::Duration::days(d);
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    };
    let issued = Command::new(sibling("lifeline-license"))
        .arg("issue")
        .arg("--key")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../license/dev-keys/dev-licence-signing.key.pem"),
        )
        .args([
            "--serial",
            "LL-DEV-2",
            "--model",
            "b200",
            "--rep-seats",
            "3",
        ])
        .args(["--issued", &in_days(-100), "--expires", &in_days(10)])
        .arg("--out")
        .arg(dir.path().join("licence.json"))
        .status()
        .unwrap();
    assert!(issued.success());
    let mut params = rcgen::CertificateParams::new(vec!["box.test".into()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(
        dir.path().join("cert.pem"),
        params.self_signed(&key).unwrap().pem(),
    )
    .unwrap();
    let config = format!(
        "mode = \"development\"\nstate_dir = \"{state}\"\ndata_path = \"{root}\"\nrefresh_ms = 300\n\
         relay_certificate = \"{cert}\"\nwarn_days = 30\n\n\
         [[service]]\nname = \"license\"\ncommand = \"{lic}\"\n\
         args = [\"serve\", \"--licence\", \"{licence}\", \"--data-dir\", \"{data}\", \"--factory-file\", \"{factory}\", \"--dmi-serial-file\", \"{nodmi}\"]\n",
        state = p("state"),
        root = dir.path().display(),
        cert = p("cert.pem"),
        lic = sibling("lifeline-license").display(),
        licence = p("licence.json"),
        data = p("license"),
        factory = p("factory.toml"),
        nodmi = p("no-dmi"),
    );
    std::fs::write(dir.path().join("supervisor.toml"), config).unwrap();
    let sup = Supervisor {
        child: Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("supervisor.toml"))
            .env_remove("LIFELINE_DBUS_ADDRESS")
            .spawn()
            .unwrap(),
        dir,
    };
    let addr_file = sup.dir.path().join("state/bus-address");
    let address = wait_for(Duration::from_secs(20), "the bus address", async || {
        std::fs::read_to_string(&addr_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    let conn = zbus::connection::Builder::address(address.trim())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = wait_for(Duration::from_secs(20), "the supervisor", async || {
        let p = Supervisor1Proxy::new(&conn).await.ok()?;
        p.get_status().await.ok()?;
        Some(p)
    })
    .await;
    let status = wait_for(Duration::from_secs(30), "both alerts", async || {
        let s = proxy.status().await.ok()?;
        (s.validity_alerts.len() == 2).then_some(s)
    })
    .await;
    assert!(
        status
            .validity_alerts
            .contains(&ValidityAlert::LicenceExpiring {
                days: 10,
                expires: in_days(10)
            }),
        "{:?}",
        status.validity_alerts
    );
    assert!(
        status.validity_alerts.iter().any(|a| matches!(
            a,
            ValidityAlert::CertificateExpiring { days, .. } if *days == 4 || *days == 5
        )),
        "{:?}",
        status.validity_alerts
    );
    assert_eq!(status.evaluation_licence, Some(false));
    assert_eq!(
        status.state,
        OverallState::Ok,
        "warnings, not a degraded box"
    );

    // Identify: in the status for IDENTIFY_SECONDS, then gone.
    proxy.identify("test").await.unwrap();
    assert!(proxy.status().await.unwrap().identify);
    wait_for(
        Duration::from_secs(lifeline_supervisor_api::IDENTIFY_SECONDS + 10),
        "identify to end",
        async || (!proxy.status().await.ok()?.identify).then_some(()),
    )
    .await;
}
