//! `lifeline-hil-tests`: the harness that tests the firmware image by booting it.
//!
//! # Design
//!
//! [`image::ensure`] builds the image with `cargo xtask image --if-stale` (a no-op when its
//! inputs did not change), so every test run boots the image of the code under test.
//! [`machine::Machine`] boots it in QEMU on a copy-on-write overlay (the built image is
//! never changed): UEFI firmware (OVMF), the serial console captured to a log file, the
//! front panel on the second serial port wired to the panel emulator of `lifeline-panel`,
//! HTTPS and HTTP of the guest forwarded to free ports on 127.0.0.1, and the development
//! image's command channel as [`shell::Shell`]: a root shell on QEMU's virtio-serial port,
//! or on the guest's third serial port (ttyS2) wired to a host pseudo-terminal
//! ([`machine::Channel`]), which is exactly how a real box is reached. TCG is the default
//! accelerator; `LIFELINE_QEMU_ACCEL=kvm` tries KVM. [`portal::Portal`] speaks to the
//! box's HTTPS API through the forwarded port; [`desktop`] runs the customer client
//! downloaded from the box under Xvfb on the host; [`desktop_libs`] lets the guest itself
//! play a customer's Linux computer (the jump image test). [`artifacts::Artifacts`] keeps the
//! console log, the journal and screenshots under `target/artifacts/hil/TEST/` when a test
//! fails. Figures ([`figure`]) are printed and kept in `target/artifacts/hil/figures.txt`.
//!
//! # A real box instead of QEMU
//!
//! Set `LIFELINE_HIL_BOX=ADDRESS` (its HTTPS address, e.g. `192.0.2.10:443`) and
//! `LIFELINE_HIL_BOX_CHANNEL=/dev/ttyUSB0`; [`machine::Machine::connect_box`] then drives it
//! with the same shell and portal. The box needs:
//!
//! - a development image (`cargo xtask image`, or any image with `firmware/dev-overlay/`):
//!   production images have no command channel;
//! - its third serial port (ttyS2; ttyS0 is the console, ttyS1 the front panel) wired to
//!   the test host (a null-modem cable or a USB serial adapter, 115200 8N1, no flow
//!   control): `LIFELINE_HIL_BOX_CHANNEL` is the host's end; the image starts the root shell
//!   on ttyS2 by itself when the port has a UART (`90-lifeline-hil.rules`);
//! - HTTPS (443) reachable from the test host at `LIFELINE_HIL_BOX`.
//!
//! The appliance test then runs every step except those that need QEMU's panel emulator
//! (it reads the panel through the relay's picture instead) and switching a network port
//! (which could cut the test host off), and says so on stderr and in
//! `target/artifacts/hil/skipped.txt` ([`skip`]). The update test needs QEMU (bundle disk,
//! reboots between slots watched on the console) and skips itself as loudly. The QEMU tests
//! use the same serial channel code (`Channel::Serial` in the appliance test).
//!
//! # Limits
//!
//! - The command channel exists only in development images (`firmware/dev-overlay/`).
//! - One guest at a time per test; the tests themselves run one after the other (nextest
//!   `slow` group).
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod bundle;
pub mod desktop;
pub mod desktop_libs;
pub mod image;
pub mod machine;
pub mod portal;
pub mod shell;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("hil-tests lives in the workspace")
        .to_path_buf()
}

/// Polls `f` every `every` until it returns `Some`, or fails after `limit` naming `what`.
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

/// The daemons the image installs, from `firmware/daemons.toml` (the one list).
pub fn daemon_units() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Daemons {
        daemon: Vec<Daemon>,
    }
    #[derive(serde::Deserialize)]
    struct Daemon {
        unit: String,
    }
    let path = workspace().join("firmware/daemons.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let d: Daemons = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    d.daemon.into_iter().map(|d| d.unit).collect()
}

/// Where the image tests keep their figures, and what they skipped.
pub fn hil_artifacts() -> PathBuf {
    std::env::var_os("LIFELINE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/artifacts"))
        .join("hil")
}

static FIGURES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Replaces (or adds) the `name=value` line of `name` in `file`.
fn put_line(file: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let _guard = FIGURES.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let prefix = format!("{name}=");
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    lines.push(format!("{name}={value}"));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(file, lines.join("\n") + "\n")
}

/// Prints one figure as a `name=value` line and keeps it in
/// `target/artifacts/hil/figures.txt` (one line per name: a later run replaces it; the
/// file holds the figures of every image test).
pub fn figure(name: &str, value: impl std::fmt::Display) {
    let value = value.to_string();
    println!("{name}={value}");
    let file = hil_artifacts().join("figures.txt");
    match put_line(&file, name, &value) {
        Ok(()) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("hil: figures in {}", file.display()));
        }
        Err(e) => eprintln!("hil: cannot write {}: {e}", file.display()),
    }
}

/// A step that cannot run here (e.g. it needs QEMU and the test drives a real box): said on
/// stderr in a way nobody misses, and kept in `target/artifacts/hil/skipped.txt`.
pub fn skip(test: &str, step: &str, why: &str) {
    eprintln!(
        "\n********************************************************************************\n         hil: SKIPPED in {test}: {step}\n     because {why}\n         ********************************************************************************\n"
    );
    let file = hil_artifacts().join("skipped.txt");
    if let Err(e) = put_line(&file, &format!("{test}: {step}"), why) {
        eprintln!("hil: cannot write {}: {e}", file.display());
    }
}
