//! The relay's neighbours for real: a private `dbus-daemon`, the licence manager with a
//! licence issued by its own vendor tool (development key), and the supervisor.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// A program built next to the relay (`cargo xtask test` builds every binary first).
pub fn sibling_bin(name: &str) -> PathBuf {
    let p = super::relay_bin().with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build every binary first (`cargo xtask test` does)",
        p.display()
    );
    p
}

/// A private message bus, stopped on drop.
pub struct TestBus {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl TestBus {
    pub fn start() -> TestBus {
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
            .spawn()
            .expect(
                "dbus-daemon must be installed (Debian package dbus; cargo xtask test installs it)",
            );
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

    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SERIAL: &str = "LL-TEST-0042";

/// The licence manager to run: `$LIFELINE_LICENSE_BIN` (the benchmark points it at a debug
/// build, which trusts the development key), else the one built next to the relay.
fn licence_bin() -> PathBuf {
    match std::env::var_os("LIFELINE_LICENSE_BIN") {
        Some(p) => PathBuf::from(p),
        None => sibling_bin("lifeline-license"),
    }
}

fn dev_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../license/dev-keys/dev-licence-signing.key.pem")
}

/// Issue a licence with the vendor tool and the development key into `out`: for `serial`,
/// model b300, enterprise edition, `rep_seats` seats, issued 2020-01-01, with more `issue`
/// arguments (`--expires` is required by the tool: pass it in `args`).
pub fn issue_licence(out: &Path, serial: &str, rep_seats: u32, args: &[&str]) {
    let status = Command::new(licence_bin())
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
        .args(["--issued", "2020-01-01"])
        .args(args)
        .args(["--customer", "Université de Test", "--force", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "lifeline-license issue");
}

/// The licence manager with a licence of `rep_seats` seats, on `bus`; killed on drop.
pub struct LicenceManager {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    bus: String,
}

impl LicenceManager {
    pub async fn start(bus: &TestBus, rep_seats: u32) -> LicenceManager {
        Self::start_with(bus, rep_seats, &[]).await
    }

    /// Like [`LicenceManager::start`], with more `issue` arguments (e.g. `--jump-active N`).
    pub async fn start_with(bus: &TestBus, rep_seats: u32, issue_args: &[&str]) -> LicenceManager {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("factory.toml"),
            format!("serial = \"{SERIAL}\"\nmodel = \"b300\"\n"),
        )
        .unwrap();
        let mut args = vec!["--expires", "2099-12-31"];
        args.extend_from_slice(issue_args);
        issue_licence(&dir.path().join("licence.json"), SERIAL, rep_seats, &args);
        let mut m = LicenceManager {
            dir,
            child: None,
            bus: bus.address.clone(),
        };
        m.spawn(bus).await;
        m
    }

    /// The licence file the manager reads.
    pub fn licence_path(&self) -> PathBuf {
        self.dir.path().join("licence.json")
    }

    pub async fn spawn(&mut self, bus: &TestBus) {
        let d = self.dir.path();
        let child = Command::new(licence_bin())
            .args(["serve", "--bus-address", &self.bus])
            .arg("--licence")
            .arg(d.join("licence.json"))
            .arg("--data-dir")
            .arg(d.join("data"))
            .arg("--factory-file")
            .arg(d.join("factory.toml"))
            .arg("--dmi-serial-file")
            .arg(d.join("no-dmi"))
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        self.child = Some(child);
        let conn = bus.connect().await;
        wait_for(
            Duration::from_secs(20),
            "the licence manager on the bus",
            async || {
                let p = lifeline_license_api::License1Proxy::new(&conn).await.ok()?;
                p.counts().await.ok()
            },
        )
        .await;
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LicenceManager {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The supervisor in development mode on `bus`, running the given `[[service]]` blocks as
/// its children; killed on drop.
pub struct Supervisor {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Supervisor {
    pub async fn start(bus: &TestBus, services_toml: &str) -> Supervisor {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("supervisor.toml");
        std::fs::write(
            &config,
            format!(
                "mode = \"development\"\nstate_dir = \"{}\"\ndata_path = \"{}\"\nrefresh_ms = 300\n\n{services_toml}",
                dir.path().join("state").display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(sibling_bin("lifeline-supervisor"))
            .arg("--config")
            .arg(&config)
            .args(["--bus-address", &bus.address])
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        let conn = bus.connect().await;
        wait_for(
            Duration::from_secs(20),
            "the supervisor on the bus",
            async || {
                let p = lifeline_supervisor_api::Supervisor1Proxy::new(&conn)
                    .await
                    .ok()?;
                p.get_status().await.ok()
            },
        )
        .await;
        Supervisor { dir, child }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // SIGTERM first: the supervisor stops its children (they run in their own process
        // groups and would outlive a SIGKILL).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
