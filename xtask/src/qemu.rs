//! `cargo xtask qemu [--model b200|b300] [--fresh]`: boots the firmware image for a person.
//!
//! The machine itself (QEMU command line, panel emulator, forwarded ports) is defined once,
//! in the `lifeline-hil-tests` harness; this command builds the image when it is stale and
//! runs the harness's `lifeline-qemu` program in this terminal.

use crate::{Result, cargo, status};

pub fn qemu(args: &[String]) -> Result {
    crate::apt_install(crate::image::IMAGE_PACKAGES)?;
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "lifeline-hil-tests",
        "--bin",
        "lifeline-qemu",
        "--",
    ]);
    c.args(args);
    status(c, "lifeline-qemu")
}
