//! End-to-end tests of `lifeline-license` on a real, private `dbus-daemon`, driven through
//! the client proxy of `lifeline-license-api`, the way the relay uses it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lifeline_license_api::{BUS_NAME, Counts, License1Proxy, LicenseError, Refusal, SeatKind};

const BIN: &str = env!("CARGO_BIN_EXE_lifeline-license");
const SERIAL: &str = "LL-TEST-0001";
const SEVENTH_REP: &str =
    "All 6 representative licences are in use. Ask a colleague to log out, or buy more licences.";

fn dev_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys/dev-licence-signing.key.pem")
}

/// A private message bus, stopped on drop.
struct TestBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl TestBus {
    fn start() -> TestBus {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon must be installed (Debian package dbus)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        TestBus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The appliance's files: factory data, licence, data dir.
struct Appliance {
    dir: tempfile::TempDir,
}

impl Appliance {
    fn new() -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("factory.toml"),
            format!("serial = \"{SERIAL}\"\nmodel = \"b300\"\n"),
        )
        .unwrap();
        Appliance { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issue a licence with the vendor tool of the same binary.
    fn issue(&self, serial: &str, rep_seats: u32, expires: &str) -> PathBuf {
        self.issue_as("licence.json", serial, rep_seats, expires)
    }

    /// Issue a licence into the file `name` of the appliance's folder.
    fn issue_as(&self, name: &str, serial: &str, rep_seats: u32, expires: &str) -> PathBuf {
        let out = self.path(name);
        let status = Command::new(BIN)
            .arg("issue")
            .arg("--key")
            .arg(dev_key())
            .args([
                "--serial",
                serial,
                "--model",
                "b300",
                "--edition",
                "enterprise",
            ])
            .args(["--rep-seats", &rep_seats.to_string()])
            .args(["--issued", "2020-01-01", "--expires", expires])
            .args(["--customer", "Test University", "--force", "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        out
    }

    fn start(&self, bus: &TestBus, ttl_secs: u64) -> Daemon {
        let child = Command::new(BIN)
            .args(["serve", "--bus-address", &bus.address])
            .arg("--licence")
            .arg(self.path("licence.json"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .arg("--factory-file")
            .arg(self.path("factory.toml"))
            .arg("--dmi-serial-file")
            .arg(self.path("no-dmi"))
            .args(["--lease-ttl-secs", &ttl_secs.to_string()])
            .env("RUST_LOG", "debug")
            .spawn()
            .unwrap();
        Daemon(child)
    }
}

/// The licence daemon, killed on drop so a failing test leaves nothing running.
struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect(bus: &TestBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// Wait until the licence manager owns its name, by polling (never a fixed sleep).
async fn wait_ready<'a>(conn: &zbus::Connection, daemon: &mut Child) -> License1Proxy<'a> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if dbus
            .name_has_owner(BUS_NAME.try_into().unwrap())
            .await
            .unwrap()
        {
            break;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("lifeline-license exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "lifeline-license never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    License1Proxy::new(conn).await.unwrap()
}

/// Wait for a `Changed` signal whose counts satisfy `want`.
async fn wait_changed(
    stream: &mut lifeline_license_api::ChangedStream,
    want: impl Fn(&Counts) -> bool,
) -> Counts {
    let deadline = Duration::from_secs(15);
    tokio::time::timeout(deadline, async {
        loop {
            let sig = stream.next().await.expect("signal stream ended");
            let counts = sig.args().unwrap().counts;
            if want(&counts) {
                return counts;
            }
        }
    })
    .await
    .expect("no matching Changed signal")
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_on_a_six_seat_licence_survive_a_restart_and_expire() {
    let bus = TestBus::start();
    let app = Appliance::new();
    app.issue(SERIAL, 6, "2099-12-31");
    let mut daemon = app.start(&bus, 60);
    let conn = connect(&bus).await;
    let proxy = wait_ready(&conn, &mut daemon).await;

    // The licence in force is the issued one.
    let status = proxy.licence_status().await.unwrap();
    assert!(!status.evaluation, "{status:?}");
    assert_eq!(status.reason, None);
    assert_eq!(status.licence.serial, SERIAL);
    assert_eq!(status.licence.rep_seats, 6);
    assert_eq!(status.licence.jump_active_limit, 5000, "b300 default");

    // Six reps log in; the first checkout is announced by a Changed signal.
    let mut changed = proxy.receive_changed().await.unwrap();
    let mut leases = Vec::new();
    for i in 1..=6 {
        let lease = proxy
            .checkout_seat(SeatKind::Rep, &format!("rep:user{i}"))
            .await
            .unwrap();
        assert_eq!(lease.kind, SeatKind::Rep);
        if i == 1 {
            let c = wait_changed(&mut changed, |c| c.rep_in_use == 1).await;
            assert_eq!(c.rep_limit, 6);
        }
        leases.push(lease);
    }
    // Checking out again as the same holder is idempotent.
    let again = proxy
        .checkout_seat(SeatKind::Rep, "rep:user1")
        .await
        .unwrap();
    assert_eq!(again.id, leases[0].id);

    // The seventh is refused with the sentence.
    match proxy.checkout_seat(SeatKind::Rep, "rep:user7").await {
        Err(LicenseError::SeatsExhausted(msg)) => assert_eq!(msg, SEVENTH_REP),
        other => panic!("expected SeatsExhausted, got {other:?}"),
    }

    // The first rep logs out: the seventh gets in.
    assert!(proxy.release(&leases[0].id).await.unwrap());
    assert!(!proxy.release(&leases[0].id).await.unwrap());
    let seventh = proxy
        .checkout_seat(SeatKind::Rep, "rep:user7")
        .await
        .unwrap();
    assert_eq!(proxy.counts().await.unwrap().rep_in_use, 6);

    // Kill the daemon hard and start it again: the leases are still held.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let mut daemon = app.start(&bus, 2);
    let proxy = wait_ready(&conn, &mut daemon).await;
    let counts = proxy.counts().await.unwrap();
    assert_eq!(counts.rep_in_use, 6, "{counts:?}");
    match proxy.checkout_seat(SeatKind::Rep, "rep:user8").await {
        Err(LicenseError::SeatsExhausted(msg)) => assert_eq!(msg, SEVENTH_REP),
        other => panic!("expected SeatsExhausted after restart, got {other:?}"),
    }
    // Leases from before the restart are still renewable.
    let renewed = proxy.renew(&seventh.id).await.unwrap();
    assert_eq!(renewed.id, seventh.id);

    // A lease with a 2 s time-to-live that nobody renews returns by itself: the daemon's
    // own sweep announces it, without any call.
    let mut changed = proxy.receive_changed().await.unwrap();
    let jc = proxy
        .checkout_seat(SeatKind::JumpActive, "jump:host-1")
        .await
        .unwrap();
    wait_changed(&mut changed, |c| c.jump_active_in_use == 1).await;
    let c = wait_changed(&mut changed, |c| c.jump_active_in_use == 0).await;
    assert_eq!(c.rep_in_use, 6);
    match proxy.renew(&jc.id).await {
        Err(LicenseError::UnknownLease(msg)) => assert!(msg.contains("expired"), "{msg}"),
        other => panic!("expected UnknownLease, got {other:?}"),
    }
    match proxy.checkout_seat(SeatKind::Rep, "").await {
        Err(LicenseError::InvalidArgument(_)) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }

    // SIGTERM: clean exit, with the leases saved.
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_licence_for_another_box_runs_evaluation_and_says_why() {
    let bus = TestBus::start();
    let app = Appliance::new();
    app.issue("LL-OTHER-0002", 6, "2099-12-31");
    let mut daemon = app.start(&bus, 60);
    let conn = connect(&bus).await;
    let proxy = wait_ready(&conn, &mut daemon).await;

    let status = proxy.licence_status().await.unwrap();
    assert!(status.evaluation);
    assert_eq!(
        status.reason.as_deref(),
        Some(
            "This licence is for appliance LL-OTHER-0002, this box is LL-TEST-0001. \
             Upload the licence issued for serial LL-TEST-0001."
        )
    );
    assert_eq!(status.licence.rep_seats, 1);
    assert_eq!(
        status.licence.model.as_str(),
        "b300",
        "model from factory data"
    );
    proxy.checkout_seat(SeatKind::Rep, "rep:a").await.unwrap();
    match proxy.checkout_seat(SeatKind::Rep, "rep:b").await {
        Err(LicenseError::SeatsExhausted(msg)) => assert!(
            msg.starts_with("All 1 representative licences are in use."),
            "{msg}"
        ),
        other => panic!("expected SeatsExhausted, got {other:?}"),
    }

    // The admin installs the right licence and asks for a reload.
    let mut changed = proxy.receive_changed().await.unwrap();
    app.issue(SERIAL, 6, "2099-12-31");
    proxy.reload().await.unwrap();
    wait_changed(&mut changed, |c| c.rep_limit == 6).await;
    let status = proxy.licence_status().await.unwrap();
    assert!(!status.evaluation, "{status:?}");
    proxy.checkout_seat(SeatKind::Rep, "rep:b").await.unwrap();

    // The bus goes away: the daemon notices and exits with failure (systemd restarts it).
    drop(conn);
    drop(bus);
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{status}");
}

/// The same licence with more seats written into its signed payload, signature kept.
fn tamper(path: &Path) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let mut licence: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    licence["rep_seats"] = 600.into();
    env["payload"] = b64.encode(serde_json::to_vec(&licence).unwrap()).into();
    std::fs::write(path, serde_json::to_string_pretty(&env).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_and_tampered_licences_each_run_evaluation_with_the_reason() {
    let bus = TestBus::start();
    let app = Appliance::new();
    let mut daemon = app.start(&bus, 60);
    let conn = connect(&bus).await;
    let proxy = wait_ready(&conn, &mut daemon).await;
    let evaluation = async |want_reason: &str, want: Refusal| {
        let status = proxy.licence_status().await.unwrap();
        assert!(status.evaluation, "{status:?}");
        let reason = status.reason.clone().unwrap_or_default();
        assert!(reason.contains(want_reason), "{reason}");
        assert_eq!(
            status.licence.rep_seats, 1,
            "the evaluation licence's one seat"
        );
        assert_eq!(status.licence.serial, SERIAL);
        assert_eq!(proxy.refusal_kind().await.unwrap(), Some(want));
        assert_eq!(proxy.counts().await.unwrap().rep_limit, 1);
    };

    // Nothing installed.
    evaluation("No licence is installed", Refusal::Missing).await;

    // A genuine licence whose last day has passed.
    let mut changed = proxy.receive_changed().await.unwrap();
    app.issue(SERIAL, 6, "2021-01-01");
    proxy.reload().await.unwrap();
    evaluation(
        "This licence expired on 2021-01-01.",
        Refusal::Expired {
            expired_on: time::macros::date!(2021 - 01 - 01),
        },
    )
    .await;

    // A valid licence is accepted; then someone raises its seats by hand.
    let file = app.issue(SERIAL, 6, "2099-12-31");
    proxy.reload().await.unwrap();
    wait_changed(&mut changed, |c| c.rep_limit == 6).await;
    assert_eq!(proxy.refusal_kind().await.unwrap(), None);
    assert!(!proxy.licence_status().await.unwrap().evaluation);
    tamper(&file);
    proxy.reload().await.unwrap();
    wait_changed(&mut changed, |c| c.rep_limit == 1).await;
    evaluation(
        "This licence file has been altered since it was signed",
        Refusal::Tampered,
    )
    .await;

    // The file removed again: back to "missing".
    std::fs::remove_file(&file).unwrap();
    proxy.reload().await.unwrap();
    evaluation("No licence is installed", Refusal::Missing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_licence_replaces_the_file_only_when_the_licence_is_accepted() {
    let bus = TestBus::start();
    let app = Appliance::new();
    let installed = app.issue(SERIAL, 6, "2099-12-31");
    let old = std::fs::read(&installed).unwrap();
    let mut daemon = app.start(&bus, 60);
    let conn = connect(&bus).await;
    let proxy = wait_ready(&conn, &mut daemon).await;
    assert_eq!(proxy.counts().await.unwrap().rep_limit, 6);

    // Refused: another box, expired, altered, garbage, too big. The file stays as it was.
    let other =
        std::fs::read_to_string(app.issue_as("other.json", "LL-OTHER-0002", 50, "2099-12-31"))
            .unwrap();
    let expired =
        std::fs::read_to_string(app.issue_as("expired.json", SERIAL, 50, "2021-01-01")).unwrap();
    let altered = app.issue_as("altered.json", SERIAL, 50, "2099-12-31");
    tamper(&altered);
    let altered = std::fs::read_to_string(altered).unwrap();
    let too_big = " ".repeat(lifeline_license_api::MAX_LICENCE_BYTES + 1);
    let cases = [
        (
            other.as_str(),
            "This licence is for appliance LL-OTHER-0002, this box is LL-TEST-0001. \
             Upload the licence issued for serial LL-TEST-0001.",
        ),
        (expired.as_str(), "This licence expired on 2021-01-01."),
        (altered.as_str(), "altered since it was signed"),
        (
            "{\"hello\": 1}",
            "This file is not a valid Lifeline licence",
        ),
        (too_big.as_str(), "a licence file is at most 65536 bytes"),
    ];
    for (text, needle) in cases {
        match proxy.install_licence(text, "web:tester").await {
            Err(LicenseError::LicenceRefused(msg)) => {
                assert!(msg.contains(needle), "{msg} lacks {needle}")
            }
            other => panic!("expected LicenceRefused ({needle}), got {other:?}"),
        }
        assert_eq!(std::fs::read(&installed).unwrap(), old, "{needle}");
        assert_eq!(proxy.counts().await.unwrap().rep_limit, 6);
        assert!(!proxy.licence_status().await.unwrap().evaluation);
    }

    // Accepted: written over the licence file, in force at once, announced by Changed.
    let mut changed = proxy.receive_changed().await.unwrap();
    let new = std::fs::read_to_string(app.issue_as("new.json", SERIAL, 25, "2099-06-30")).unwrap();
    let json = proxy.install_licence(&new, "web:tester").await.unwrap();
    let status = lifeline_license_api::LicenceStatus::from_json(&json).unwrap();
    assert!(!status.evaluation, "{status:?}");
    assert_eq!(status.licence.rep_seats, 25);
    assert_eq!(
        status.licence.expires,
        Some(time::macros::date!(2099 - 06 - 30))
    );
    wait_changed(&mut changed, |c| c.rep_limit == 25).await;
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), new);
    assert_eq!(proxy.licence_status().await.unwrap(), status);
    assert_eq!(proxy.refusal_kind().await.unwrap(), None);
    let names: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");

    // A restart reads the installed file.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let mut daemon = app.start(&bus, 60);
    let proxy = wait_ready(&conn, &mut daemon).await;
    assert_eq!(proxy.counts().await.unwrap().rep_limit, 25);
}

#[test]
fn verify_prints_the_verdict() {
    let app = Appliance::new();
    let file = app.issue(SERIAL, 6, "2099-12-31");
    let out = Command::new(BIN)
        .arg("verify")
        .arg(&file)
        .args(["--serial", SERIAL])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("VALID: serial LL-TEST-0001, model b300, edition enterprise, 6 rep seats"),
        "{text}"
    );

    let out = Command::new(BIN)
        .arg("verify")
        .arg(&file)
        .args(["--serial", "LL-X"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("REFUSED: This licence is for appliance LL-TEST-0001, this box is LL-X."),
        "{text}"
    );

    let expired = app.issue(SERIAL, 6, "2021-01-01");
    let out = Command::new(BIN)
        .arg("verify")
        .arg(&expired)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("expired on 2021-01-01"), "{text}");
}

#[test]
fn usage_and_config_errors_exit_2() {
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["serve", "--lease-ttl-secs", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bus-address", "nonsense"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keygen_then_issue_with_an_untrusted_key_is_refused_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.pem");
    let out = Command::new(BIN)
        .arg("keygen")
        .arg("--out")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("vendor.pem.pub").exists());
    let lic = dir.path().join("l.json");
    let status = Command::new(BIN)
        .arg("issue")
        .arg("--key")
        .arg(&key)
        .args([
            "--serial",
            "S1",
            "--model",
            "b200",
            "--expires",
            "2099-01-01",
            "--out",
        ])
        .arg(&lic)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(BIN).arg("verify").arg(&lic).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("does not trust")
    );
}
