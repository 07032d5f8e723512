//! `lifeline-supervisor`: watches the Lifeline services and the host, and publishes one
//! status object on D-Bus as `org.lifeline.Supervisor1` (the contract, types and client
//! proxy are in `lifeline-supervisor-api`).
//!
//! # Design
//!
//! - [`config`]: the typed configuration (`/etc/lifeline/supervisor.toml`), two modes;
//! - [`health`]: host health from `/proc`, `/sys`, `statvfs` and `getifaddrs`;
//! - [`systemd`]: on the box, unit state through `org.freedesktop.systemd1`, reboot and power
//!   off through logind, network reload through networkd, NTP state from timedated;
//! - [`dev`]: in development, a private `dbus-daemon` and the services as children, each
//!   with its own `NOTIFY_SOCKET` so `READY=1` means the same as under systemd; a child that
//!   dies is restarted with a back-off; Ctrl-C or SIGTERM stops them all;
//! - [`rauc`] and [`service`]: after an update, the health check and RAUC's
//!   `Mark("good", "booted")`; the D-Bus object with authorisation (caller's Unix user),
//!   audit (`<state_dir>/audit.log`) and rate limits; the refresh loop that emits `Changed`
//!   and feeds the systemd watchdog.
//!
//! # After an update (for the image and its tests)
//!
//! On the box, at every start, the supervisor asks RAUC for the slot status. When the booted
//! slot's installation has not been marked good by the supervisor before (its identity
//! `<slot>@<installed.timestamp>` is not the one in `<state_dir>/marked-good`), it runs the
//! health check — every non-optional configured unit `active` and the relay accepting TCP
//! connections on `relay_check` (e.g. `127.0.0.1:443`), three times in a row one second
//! apart — for at most `health_deadline_seconds` (default 180). On success it calls
//! `Mark("good", "booted")` and records the identity; on failure it does not mark the slot,
//! raises an `update_failed` alert and leaves the fallback to the boot loader. Without RAUC on
//! the bus nothing of this runs. The status shows it in `update.booted_slot_marked_good`.
//!
//! # Limits
//!
//! - Unit state on the box is read on every refresh (default every 2 s), not from systemd's
//!   change signals; the panel therefore sees a unit failure within one refresh.
//! - Development children are not watchdog-supervised (only exit and start-up time-out).
//!   They run in process groups of their own, so a supervisor killed with SIGKILL leaves them
//!   running (SIGTERM and Ctrl-C stop them).
//! - The D-Bus policy that lets only the Lifeline users own and call these names on the box
//!   belongs to the image (`rootfs/`); the supervisor checks callers' Unix users itself too.
//! - `SetNetwork` writes a runtime networkd file (`network_dir`, default
//!   `/run/systemd/network`) and reloads networkd; making it survive a reboot is the image's
//!   job. In development it refuses with a sentence.
//! - Whether an interface uses DHCP is not reported yet (`dhcp` is `null`).
#![forbid(unsafe_code)]

pub mod config;
pub mod dev;
pub mod health;
pub mod rauc;
pub mod service;
pub mod systemd;

/// An error and its causes as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
