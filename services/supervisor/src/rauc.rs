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
//! records the identity. If the check does not pass in time, the slot is **not** marked, an
//! `update_failed` alert is raised, and the boot loader falls back to the other slot on a
//! later boot once its boot attempts are used up. When RAUC is not on the bus the supervisor
//! does nothing of this and reports no update system.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use zvariant::OwnedValue;

/// No RAUC call waits longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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

    #[tokio::test]
    async fn port_check() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(port_answers(addr).await);
        drop(l);
        assert!(!port_answers(addr).await);
    }
}
