//! The relay's link to the appliance services on D-Bus: the supervisor
//! (`org.lifeline.Supervisor1`: status, actions, the relay's live counts) and the front
//! panel's mirror (`org.lifeline.Panel1`: picture and keys).
//!
//! Every call is bounded by [`CALL_TIMEOUT`]; a missing bus or service gives `None` or a
//! sentence, never a hang. The reporter task ([`ApplianceLink::spawn_reporter`]) tells the
//! supervisor the relay's counts when they change, and every 30 s anyway so a restarted
//! supervisor learns them again.
//!
//! Also here: the appliance GUID, made once and kept in the data folder.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lifeline_supervisor_api::panel::Panel1Proxy;
use lifeline_supervisor_api::{ApplianceStatus, RelayCounts, Supervisor1Proxy};

use crate::hub::Hub;

/// No call to the supervisor or the panel waits longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ApplianceLink {
    conn: Option<zbus::Connection>,
}

impl ApplianceLink {
    /// Connect to the bus at `address` (the system bus when `None`); without it every
    /// answer is "not reachable".
    pub async fn connect(address: Option<&str>) -> ApplianceLink {
        let conn = tokio::time::timeout(CALL_TIMEOUT, async {
            match address {
                Some(a) => zbus::connection::Builder::address(a)?.build().await,
                None => zbus::Connection::system().await,
            }
        })
        .await
        .ok()
        .and_then(|r| r.ok());
        ApplianceLink { conn }
    }

    async fn supervisor(&self) -> Option<Supervisor1Proxy<'static>> {
        let conn = self.conn.as_ref()?;
        tokio::time::timeout(CALL_TIMEOUT, Supervisor1Proxy::new(conn))
            .await
            .ok()?
            .ok()
    }

    /// The supervisor's status, or `None` when it does not answer.
    pub async fn status(&self) -> Option<ApplianceStatus> {
        let p = self.supervisor().await?;
        tokio::time::timeout(CALL_TIMEOUT, p.status())
            .await
            .ok()?
            .ok()
    }

    /// Ask the supervisor to restart a service; the error is a sentence.
    pub async fn restart_service(&self, name: &str, actor: &str) -> Result<(), String> {
        let p = self.supervisor().await.ok_or_else(unreachable)?;
        match tokio::time::timeout(Duration::from_secs(10), p.restart_service(name, actor)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.user_message()),
            Err(_) => Err("The appliance supervisor did not answer in time. Try again.".into()),
        }
    }

    async fn panel(&self) -> Option<Panel1Proxy<'static>> {
        let conn = self.conn.as_ref()?;
        tokio::time::timeout(CALL_TIMEOUT, Panel1Proxy::new(conn))
            .await
            .ok()?
            .ok()
    }

    /// The front panel's picture as PNG, or `None` when the panel service does not answer.
    pub async fn panel_picture(&self) -> Option<Vec<u8>> {
        let p = self.panel().await?;
        tokio::time::timeout(CALL_TIMEOUT, p.picture())
            .await
            .ok()?
            .ok()
    }

    /// Press a key of the front panel.
    pub async fn panel_key(&self, key: &str) -> Result<(), String> {
        let p = self.panel().await.ok_or_else(panel_unreachable)?;
        match tokio::time::timeout(CALL_TIMEOUT, p.press_key(key)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("The front panel refused the key ({e}).")),
            Err(_) => Err(panel_unreachable()),
        }
    }

    /// Report the relay's counts to the supervisor until the relay stops.
    pub fn spawn_reporter(&self, hub: Arc<Hub>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<(RelayCounts, Instant)> = None;
            loop {
                tick.tick().await;
                let now = counts(&hub);
                if last.is_some_and(|(c, at)| c == now && at.elapsed() < Duration::from_secs(30)) {
                    continue;
                }
                let Some(p) = me.supervisor().await else {
                    continue;
                };
                let sent = tokio::time::timeout(
                    CALL_TIMEOUT,
                    p.report_relay(now.rep_consoles, now.customer_clients, now.jump_clients),
                )
                .await;
                if matches!(sent, Ok(Ok(()))) {
                    last = Some((now, Instant::now()));
                }
            }
        })
    }
}

/// The relay's live counts.
pub fn counts(hub: &Hub) -> RelayCounts {
    let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    RelayCounts {
        rep_consoles: n(hub.counters.consoles.load(Ordering::Relaxed)),
        customer_clients: n(hub.counters.agents.load(Ordering::Relaxed)),
        jump_clients: n(hub.counters.jump_clients.load(Ordering::Relaxed)),
    }
}

fn unreachable() -> String {
    "The appliance supervisor is not reachable. It may still be starting: try again in a minute."
        .into()
}

fn panel_unreachable() -> String {
    "The front panel service is not reachable.".into()
}

/// The appliance GUID: 32 hex digits in the usual 8-4-4-4-12 groups, made once.
pub fn guid(data_dir: &Path) -> String {
    let path = data_dir.join("appliance-guid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 36 {
            return s.to_string();
        }
    }
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    let g = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    if let Err(e) = std::fs::write(&path, format!("{g}\n")) {
        tracing::warn!(path = %path.display(), error = %e, "cannot store the appliance GUID");
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = guid(dir.path());
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(guid(dir.path()), a);
    }
}
