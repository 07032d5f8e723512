//! `lifeline-supervisor`: watches the Lifeline services and the host, and publishes one
//! status object on D-Bus as `org.lifeline.Supervisor1` (the contract, types and client
//! proxy are in `lifeline-supervisor-api`).
//!
//! # Design
//!
//! - [`config`]: the typed configuration (`/etc/lifeline/supervisor.toml`), two modes;
//! - [`health`]: host health from `/proc`, `/sys`, `statvfs` and `getifaddrs`;
//! - [`systemd`]: on the box, unit state through `org.freedesktop.systemd1`, reboot and power
//!   off through logind, network reload and each interface's mode through networkd, NTP
//!   state from timedated; what the supervisor's user may ask of them is decided by polkit
//!   (see "On the box" below);
//! - [`network`]: the networkd files of the admin's network settings;
//! - [`validity`]: licence and certificate alerts (licence from `org.lifeline.License1`,
//!   certificate from the relay's PEM file);
//! - [`dev`]: in development, a private `dbus-daemon` and the services as children, each
//!   with its own `NOTIFY_SOCKET` so `READY=1` means the same as under systemd; a child that
//!   dies is restarted with a back-off; Ctrl-C or SIGTERM stops them all;
//! - [`rauc`] and [`service`]: after an update, the health check and RAUC's
//!   `Mark("good", "booted")`; the D-Bus object with authorisation (caller's Unix user),
//!   audit (`<state_dir>/audit.log`) and rate limits; the refresh loop that emits `Changed`
//!   and feeds the systemd watchdog.
//!
//! # On the box: privileges
//!
//! The unit runs as the unprivileged user `lifeline-supervisor` with no capabilities and a
//! read-only view of the system (`ProtectSystem=strict`); it writes only its state folder and
//! `network_dir` (on the data partition). Its actions are D-Bus calls to systemd (restart a
//! unit), logind (reboot, power off) and networkd (reload), each of which asks polkit about an
//! unprivileged caller; the image's rule (`50-lifeline-supervisor.rules`) allows this user
//! exactly these: `manage-units` with verb `restart` on the Lifeline units it watches,
//! `login1.reboot`/`power-off` (and their `-multiple-sessions` forms), `network1.reload`.
//! A compromised supervisor can therefore restart those units, reboot, power off and change
//! the network, and nothing else (no other unit, no shell, no file outside its folders).
//! Before it asks, the supervisor authorises its own caller by Unix user and audits the
//! action ([`service`]). The relay's certificate is readable to it through an ACL the image
//! sets (`tmpfiles.d/lifeline.conf`), the relay's key and database are not.
//!
//! # After an update (for the image and its tests)
//!
//! On the box, at every start, the supervisor asks RAUC for the slot status. When the booted
//! slot's installation has not been marked good by the supervisor before (its identity
//! `<slot>@<installed.timestamp>` is not the one in `<state_dir>/marked-good`), it runs the
//! health check — every non-optional configured unit `active` and the relay accepting TCP
//! connections on `relay_check` (e.g. `127.0.0.1:443`), three times in a row one second
//! apart — for at most `health_deadline_seconds` (default 180). On success it calls
//! `Mark("good", "booted")` and records the identity. On failure it raises an `update_failed`
//! alert and, when the other slot is known good, records the failure on the data partition,
//! marks the booted slot bad and reboots into the other slot, whose supervisor then reports
//! the failed update ([`rauc`]). Without RAUC on the bus nothing of this runs. The status
//! shows it in `update.booted_slot_marked_good` and `update.health_problem`.
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
//! - `SetNetwork` writes a networkd file into `network_dir` (on the box on the data partition,
//!   where `/etc/systemd/network` points, so it survives reboots and updates) and reloads
//!   networkd; static settings are an IPv4 address and prefix only. In development it refuses
//!   with a sentence.
//! - Identify only sets `identify` in the status for a few seconds; showing it (the panel's
//!   blinking) is the panel's job.
#![forbid(unsafe_code)]

pub mod config;
pub mod dev;
pub mod health;
pub mod network;
pub mod rauc;
pub mod service;
pub mod systemd;
pub mod validity;

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
