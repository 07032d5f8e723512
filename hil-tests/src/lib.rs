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
//! image's command channel (a virtio-serial port) as [`shell::Shell`]. TCG is the default
//! accelerator; `LIFELINE_QEMU_ACCEL=kvm` tries KVM. [`portal::Portal`] speaks to the
//! box's HTTPS API through the forwarded port; [`desktop`] runs the customer client
//! downloaded from the box under Xvfb on the host. [`artifacts::Artifacts`] keeps the
//! console log, the journal and screenshots under `target/artifacts/hil/TEST/` when a test
//! fails.
//!
//! A real box instead of QEMU: set `LIFELINE_HIL_BOX=ADDRESS` (its HTTPS address, e.g.
//! `192.0.2.10:443`) and `LIFELINE_HIL_BOX_CHANNEL=/dev/ttyUSB0` (a serial line wired to the
//! box's command channel); [`machine::Machine::connect_box`] then drives it with the same
//! shell and portal.
//!
//! # Limits
//!
//! - The command channel exists only in development images (`firmware/dev-overlay/`).
//! - Tests that reboot into other slots or need the panel emulator need QEMU.
//! - One guest at a time per test; the tests themselves run one after the other (nextest
//!   `slow` group).
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod bundle;
pub mod desktop;
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

/// Prints one figure as a `name=value` line (collected from the test output).
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}
