//! After an update: the health check, and marking the booted slot good through RAUC.
//!
//! RAUC (`de.pengutronix.rauc.Installer` at `/` on the system bus) reports the slots with
//! `GetSlotStatus`. The booted slot is the one whose `state` is `booted`. It is *fresh* when
//! the supervisor has not yet marked this installation of it good: the supervisor keeps the
//! identity of the last installation it marked (`<slot>@<installed.timestamp>`, falling back
//! to the bundle hash or `factory`) in `<state_dir>/marked-good`. A fresh slot gets the
//! health check: every non-optional Lifeline unit `active` and the relay accepting TCP
//! connections on its port, three checks in a row one second apart, before
//! `health_deadline_seconds` run out. Then the supervisor calls `Mark("good", "booted")` and
//! records the identity (and forgets an earlier failed update, see below).
//!
//! If the check does not pass in time, the slot is never marked good and an `update_failed`
//! alert is raised. When another slot of the same class is known good
//! ([`fallback_slot`]: RAUC's `boot-status` is `good`) and `fall_back_after_failed_update` is
//! on (the default), the supervisor records the failure in `<state_dir>/update-failed.json`
//! ([`FailedUpdate`]), calls `Mark("bad", "booted")` so the boot loader will not choose the
//! slot again, and reboots through logind: the box comes back on the slot that worked, and
//! the supervisor there reports the failed update from the record until a later update is
//! marked good. Without a good slot to return to (a factory-fresh box whose only slot fails)
//! it stays up and only alerts: rebooting could not help and would loop. When RAUC is not on
//! the bus the supervisor does nothing of this and reports no update system.
//!
//! RAUC is started by D-Bus activation on the first call, which can take longer than
//! [`CALL_TIMEOUT`] on a loaded box: a `GetSlotStatus` that times out (or fails in any way
//! other than "no such name") is asked again with a growing pause ([`retry_slot_status`]),
//! for at most [`SLOT_STATUS_PATIENCE`]. Only the bus's answer that nobody owns or can be
//! activated for the name (`ServiceUnknown`, `NameHasNoOwner`) means "no RAUC" at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zvariant::OwnedValue;

/// No RAUC call waits longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the supervisor keeps asking RAUC for the slots after start-up before it gives up
/// (RAUC's start by D-Bus activation may take more than one [`CALL_TIMEOUT`] under load).
pub const SLOT_STATUS_PATIENCE: Duration = Duration::from_secs(120);

/// The longest pause between two `GetSlotStatus` attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(15);

/// How one `GetSlotStatus` attempt failed.
#[derive(Debug)]
pub enum CallFailure {
    /// No answer within [`CALL_TIMEOUT`] (e.g. RAUC still being started).
    TimedOut,
    /// An error reply or a bus error.
    Error(zbus::Error),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::TimedOut => write!(f, "no answer within {CALL_TIMEOUT:?}"),
            CallFailure::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Whether the bus said that nobody owns the name and none can be started for it.
fn not_on_the_bus(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        ),
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

/// After the failed `GetSlotStatus` attempt number `attempt` (0 for the first), with
/// `elapsed` since the first attempt began: the pause before asking again, or `None` to give
/// up (RAUC is not on the bus, or [`SLOT_STATUS_PATIENCE`] would run out).
pub fn retry_slot_status(
    failure: &CallFailure,
    attempt: u32,
    elapsed: Duration,
) -> Option<Duration> {
    if let CallFailure::Error(e) = failure
        && not_on_the_bus(e)
    {
        return None;
    }
    let pause = Duration::from_secs(1u64 << attempt.min(4)).min(MAX_RETRY_PAUSE);
    (elapsed + pause < SLOT_STATUS_PATIENCE).then_some(pause)
}

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
pub trait Installer {
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
}

fn text(v: &OwnedValue) -> Option<String> {
    String::try_from(v.try_clone().ok()?).ok()
}

/// The booted slot's name and installation identity, from `GetSlotStatus`.
pub fn booted_identity(
    slots: &[(String, HashMap<String, OwnedValue>)],
) -> Option<(String, String)> {
    let (name, info) = slots
        .iter()
        .find(|(_, info)| info.get("state").and_then(text).as_deref() == Some("booted"))?;
    let install = ["installed.timestamp", "bundle.hash", "sha256"]
        .iter()
        .find_map(|k| info.get(*k).and_then(text))
        .unwrap_or_else(|| "factory".to_string());
    Some((name.clone(), format!("{name}@{install}")))
}

/// Another slot of the booted slot's class that RAUC reports `good`, to fall back to.
pub fn fallback_slot(slots: &[(String, HashMap<String, OwnedValue>)]) -> Option<String> {
    let field = |info: &HashMap<String, OwnedValue>, k: &str| info.get(k).and_then(text);
    let (_, booted) = slots
        .iter()
        .find(|(_, info)| field(info, "state").as_deref() == Some("booted"))?;
    let class = field(booted, "class");
    slots
        .iter()
        .find(|(_, info)| {
            field(info, "state").as_deref() != Some("booted")
                && field(info, "class") == class
                && field(info, "boot-status").as_deref() == Some("good")
        })
        .map(|(name, _)| name.clone())
}

/// An update that failed its health check, as the supervisor of the failed slot recorded it
/// before falling back (`<state_dir>/update-failed.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpdate {
    /// The slot that failed (RAUC's name, e.g. `rootfs.0`).
    pub slot: String,
    /// Its installation identity.
    pub identity: String,
    /// The slot the box went back to.
    pub fell_back_to: String,
    /// What the health check found, for a person.
    pub reason: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

impl FailedUpdate {
    /// The sentence of the `update_failed` alert.
    pub fn sentence(&self) -> String {
        format!(
            "the update installed in {} failed its health check ({}) and the appliance went back to {} on {}",
            self.slot, self.reason, self.fell_back_to, self.at
        )
    }
}

const FAILED_FILE: &str = "update-failed.json";

pub fn record_failed(state_dir: &Path, failed: &FailedUpdate) -> std::io::Result<()> {
    let tmp = state_dir.join("update-failed.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(failed).unwrap_or_default())?;
    std::fs::rename(tmp, state_dir.join(FAILED_FILE))
}

/// The recorded failed update, if any (an unreadable record is treated as none).
pub fn failed_update(state_dir: &Path) -> Option<FailedUpdate> {
    let bytes = std::fs::read(state_dir.join(FAILED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Forget the failed update (a later one was marked good).
pub fn forget_failed(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(FAILED_FILE));
}

/// Whether `identity` was already marked good (per the record in `state_dir`).
pub fn already_marked(state_dir: &Path, identity: &str) -> bool {
    std::fs::read_to_string(state_dir.join("marked-good")).is_ok_and(|s| s.trim() == identity)
}

pub fn record_marked(state_dir: &Path, identity: &str) -> std::io::Result<()> {
    let tmp = state_dir.join("marked-good.tmp");
    std::fs::write(&tmp, format!("{identity}\n"))?;
    std::fs::rename(tmp, state_dir.join("marked-good"))
}

/// Whether something accepts TCP connections at `addr` within two seconds.
pub async fn port_answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(state: &str, ts: Option<&str>) -> HashMap<String, OwnedValue> {
        let mut m = HashMap::new();
        m.insert(
            "state".to_string(),
            OwnedValue::try_from(zvariant::Value::from(state)).unwrap(),
        );
        if let Some(ts) = ts {
            m.insert(
                "installed.timestamp".to_string(),
                OwnedValue::try_from(zvariant::Value::from(ts)).unwrap(),
            );
        }
        m
    }

    fn method_error(name: &str) -> zbus::Error {
        let msg = zbus::message::Message::method_call("/", "GetSlotStatus")
            .unwrap()
            .build(&())
            .unwrap();
        let reply = zbus::message::Message::error(&msg.header(), name)
            .unwrap()
            .build(&("detail",))
            .unwrap();
        zbus::Error::from(reply)
    }

    #[test]
    fn slot_status_retried_on_timeouts_not_when_rauc_is_absent() {
        let s = Duration::from_secs;
        // A slow D-Bus activation: asked again, with growing pauses up to a bound.
        let pauses: Vec<_> = (0..7)
            .map(|n| retry_slot_status(&CallFailure::TimedOut, n, s(10)))
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8, 15, 15, 15].map(|p| Some(s(p))).to_vec()
        );
        // ...but not for ever.
        assert_eq!(retry_slot_status(&CallFailure::TimedOut, 3, s(115)), None);
        assert_eq!(
            retry_slot_status(&CallFailure::TimedOut, 9, SLOT_STATUS_PATIENCE),
            None
        );
        // Other failures (the bus's own timeout, a failed start) are retried too.
        for name in [
            "org.freedesktop.DBus.Error.NoReply",
            "org.freedesktop.DBus.Error.TimedOut",
            "org.freedesktop.DBus.Error.Spawn.ChildExited",
        ] {
            let e = CallFailure::Error(method_error(name));
            assert_eq!(retry_slot_status(&e, 0, s(0)), Some(s(1)), "{name}");
        }
        // Nobody owns the name and none can be started: no RAUC, at once.
        for name in [
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ] {
            let e = CallFailure::Error(method_error(name));
            assert_eq!(retry_slot_status(&e, 0, s(0)), None, "{name}");
        }
        let fdo = zbus::Error::from(zbus::fdo::Error::ServiceUnknown("gone".into()));
        assert_eq!(retry_slot_status(&CallFailure::Error(fdo), 0, s(0)), None);
    }

    #[test]
    fn booted_identity_and_record() {
        let slots = vec![
            ("rootfs.0".to_string(), slot("inactive", None)),
            (
                "rootfs.1".to_string(),
                slot("booted", Some("2026-01-02T03:04:05Z")),
            ),
        ];
        let (name, id) = booted_identity(&slots).unwrap();
        // No other slot is known good yet (nothing to fall back to).
        assert_eq!(fallback_slot(&slots), None);
        assert_eq!(name, "rootfs.1");
        assert_eq!(id, "rootfs.1@2026-01-02T03:04:05Z");
        let factory = vec![("rootfs.0".to_string(), slot("booted", None))];
        assert_eq!(booted_identity(&factory).unwrap().1, "rootfs.0@factory");
        assert!(booted_identity(&[]).is_none());

        let dir = tempfile::tempdir().unwrap();
        assert!(!already_marked(dir.path(), &id));
        record_marked(dir.path(), &id).unwrap();
        assert!(already_marked(dir.path(), &id));
        assert!(!already_marked(dir.path(), "rootfs.1@later"));
    }

    #[test]
    fn fallback_needs_a_good_slot_of_the_same_class() {
        let with = |state: &str, class: &str, boot: &str| {
            let mut m = slot(state, None);
            for (k, v) in [("class", class), ("boot-status", boot)] {
                m.insert(
                    k.to_string(),
                    OwnedValue::try_from(zvariant::Value::from(v)).unwrap(),
                );
            }
            m
        };
        let slots = vec![
            ("rootfs.0".to_string(), with("booted", "rootfs", "good")),
            ("rootfs.1".to_string(), with("inactive", "rootfs", "good")),
        ];
        assert_eq!(fallback_slot(&slots).as_deref(), Some("rootfs.1"));
        let bad = vec![
            ("rootfs.0".to_string(), with("booted", "rootfs", "good")),
            ("rootfs.1".to_string(), with("inactive", "rootfs", "bad")),
            ("appfs.0".to_string(), with("inactive", "appfs", "good")),
        ];
        assert_eq!(fallback_slot(&bad), None);

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(failed_update(dir.path()), None);
        let f = FailedUpdate {
            slot: "rootfs.0".into(),
            identity: "rootfs.0@2026".into(),
            fell_back_to: "rootfs.1".into(),
            reason: "lifeline-relay.service is failed".into(),
            at: "2026-01-01T00:00:00Z".into(),
        };
        record_failed(dir.path(), &f).unwrap();
        assert_eq!(failed_update(dir.path()), Some(f.clone()));
        assert!(
            f.sentence().contains("went back to rootfs.1"),
            "{}",
            f.sentence()
        );
        forget_failed(dir.path());
        assert_eq!(failed_update(dir.path()), None);
    }

    #[tokio::test]
    async fn port_check() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(port_answers(addr).await);
        drop(l);
        assert!(!port_answers(addr).await);
    }
}
