//! The panel on D-Bus: status from `org.lifeline.Supervisor1`, actions to it, and the
//! mirror `org.lifeline.Panel1` for the web page.
//!
//! # Design
//!
//! The service loop is synchronous; D-Bus runs on one thread of its own ([`Bus::start`])
//! with a small tokio runtime. That thread connects to the bus (`LIFELINE_DBUS_ADDRESS`, or
//! the system bus), serves [`PANEL_OBJECT`], and follows the supervisor: it reads the status
//! once when the supervisor appears and then only from its `Changed` signal (no polling);
//! when the supervisor's name loses its owner, or the bus goes away, the status becomes
//! "not known" and the panel shows "starting". It reconnects every second, quietly.
//!
//! [`SupervisorSource`] is the [`StatusSource`] the service loop reads (a shared cell the
//! D-Bus thread writes). [`Bus::send`] queues a menu [`Action`] for the supervisor, which
//! authorises and audits it; each call has a time-out and its outcome is logged.
//! [`Mirror`] holds the picture the panel shows now (PNG) and the keys pressed on the web
//! page, which the service loop takes as if pressed on the keypad.
//!
//! The supervisor's `starting` state also shows "starting"; `degraded` and `updating` map to
//! the panel's states of the same name. The alerts shown are the supervisor's `alerts` and
//! its `validity_alerts` (licence and certificate), in that order; `identify` makes the
//! backlight blink (whoever asked: the web page or the keypad).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lifeline_supervisor_api::{self as api, ApplianceStatus, OverallState, Supervisor1Proxy};

use crate::link::Key;
use crate::menu::Action;
use crate::status::{Address, Alert, Interface, State, Status, StatusSource};

/// The mirror's object path and bus name.
pub const PANEL_OBJECT: &str = api::panel::OBJECT_PATH;

/// No D-Bus call waits longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Map the supervisor's status onto what the panel shows; `None` = "starting".
pub fn to_panel(s: &ApplianceStatus) -> Option<Status> {
    let state = match s.state {
        OverallState::Starting => return None,
        OverallState::Ok => State::Ok,
        OverallState::Degraded => State::Degraded,
        OverallState::Updating => State::Updating,
    };
    let interfaces = s
        .interfaces
        .iter()
        .map(|i| Interface {
            name: i.name.clone(),
            up: i.up,
            addresses: i
                .addresses
                .iter()
                .filter_map(|a| {
                    let (ip, prefix) = a.split_once('/')?;
                    Some(Address {
                        addr: ip.parse::<IpAddr>().ok()?,
                        prefix: prefix.parse().ok()?,
                    })
                })
                .collect(),
            dhcp: i.dhcp,
        })
        .collect();
    let alerts = s
        .alerts
        .iter()
        .filter_map(|a| {
            Some(match a {
                api::Alert::ServiceFailed { unit } => Alert::ServiceFailed { unit: unit.clone() },
                api::Alert::DiskNearlyFull {
                    mount,
                    used_percent,
                } => Alert::DiskNearlyFull {
                    mount: mount.clone(),
                    used_percent: *used_percent,
                },
                // Raised in `validity_alerts` now (see the supervisor API).
                api::Alert::LicenceExpiring { .. } => return None,
                api::Alert::UpdateFailed { reason } => Alert::UpdateFailed {
                    reason: reason.clone(),
                },
            })
        })
        .chain(s.validity_alerts.iter().map(|a| match a {
            api::ValidityAlert::LicenceExpiring { days, .. } => {
                Alert::LicenceExpiring { days: *days }
            }
            api::ValidityAlert::LicenceExpired { .. } => Alert::LicenceExpired,
            api::ValidityAlert::EvaluationLicence { reason } => Alert::EvaluationLicence {
                reason: reason.clone(),
            },
            api::ValidityAlert::CertificateExpiring { days, .. } => {
                Alert::CertificateExpiring { days: *days }
            }
            api::ValidityAlert::CertificateExpired { .. } => Alert::CertificateExpired,
        }))
        .collect();
    Some(Status {
        hostname: s.hostname.clone(),
        interfaces,
        state,
        reps: s.relay.rep_consoles,
        customers: s.relay.customer_clients,
        jump_clients: s.relay.jump_clients,
        alerts,
        update_progress: s.update.progress,
        evaluation_licence: s.evaluation_licence == Some(true),
        identify: s.identify,
    })
}

/// The status cell the D-Bus thread writes and the service loop reads.
#[derive(Clone, Debug, Default)]
pub struct SupervisorSource(Arc<Mutex<Option<Status>>>);

impl SupervisorSource {
    fn set(&self, s: Option<Status>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

impl StatusSource for SupervisorSource {
    fn current(&mut self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the web page sees and presses.
#[derive(Debug, Default)]
pub struct Mirror {
    png: Mutex<Option<Vec<u8>>>,
    keys: Mutex<VecDeque<Key>>,
}

impl Mirror {
    /// The service loop shows a new picture.
    pub fn set_picture(&self, png: Vec<u8>) {
        *self.png.lock().unwrap_or_else(|e| e.into_inner()) = Some(png);
    }

    /// The next key pressed on the web page, if any.
    pub fn next_key(&self) -> Option<Key> {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn push_key(&self, k: Key) {
        let mut q = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() < 16 {
            q.push_back(k);
        }
    }
}

struct PanelObject {
    mirror: Arc<Mirror>,
}

#[zbus::interface(name = "org.lifeline.Panel1")]
impl PanelObject {
    async fn picture(&self) -> zbus::fdo::Result<Vec<u8>> {
        self.mirror
            .png
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| zbus::fdo::Error::Failed("the panel has not shown anything yet".into()))
    }

    async fn press_key(&self, key: &str) -> zbus::fdo::Result<()> {
        let k = Key::ALL
            .into_iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(key))
            .ok_or_else(|| zbus::fdo::Error::InvalidArgs(format!("unknown key {key:?}")))?;
        self.mirror.push_key(k);
        Ok(())
    }
}

/// The D-Bus side of the panel service.
#[derive(Debug, Clone)]
pub struct Bus {
    actions: tokio::sync::mpsc::UnboundedSender<Action>,
}

impl Bus {
    /// Start the D-Bus thread. `address` = `None` uses the system bus.
    pub fn start(
        address: Option<String>,
        source: SupervisorSource,
        mirror: Arc<Mirror>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Bus> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("panel-dbus".into())
            .spawn(move || runtime.block_on(run(address, source, mirror, stop, rx)))?;
        Ok(Bus { actions: tx })
    }

    /// Queue an action for the supervisor.
    pub fn send(&self, action: Action) {
        if self.actions.send(action).is_err() {
            tracing::warn!("the D-Bus thread has stopped; action dropped");
        }
    }
}

async fn connect(address: Option<&str>) -> zbus::Result<zbus::Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)?.build().await,
        None => zbus::Connection::system().await,
    }
}

async fn perform(proxy: &Supervisor1Proxy<'_>, action: &Action) {
    let call = async {
        match action {
            Action::SetDhcp { iface } => proxy.set_network(iface, "dhcp", "", 0, "panel").await,
            Action::SetStatic {
                iface,
                addr,
                prefix,
            } => {
                proxy
                    .set_network(iface, "static", &addr.to_string(), *prefix, "panel")
                    .await
            }
            Action::Reboot => proxy.reboot("panel").await,
            Action::PowerOff => proxy.power_off("panel").await,
            Action::Identify => proxy.identify("panel").await,
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => tracing::info!(?action, "the supervisor accepted the action"),
        Ok(Err(e)) => {
            tracing::warn!(?action, reason = %e.user_message(), "the supervisor refused the action")
        }
        Err(_) => tracing::warn!(?action, "the supervisor did not answer the action in time"),
    }
}

async fn run(
    address: Option<String>,
    source: SupervisorSource,
    mirror: Arc<Mirror>,
    stop: Arc<AtomicBool>,
    mut actions: tokio::sync::mpsc::UnboundedReceiver<Action>,
) {
    let mut logged = false;
    while !stop.load(Ordering::SeqCst) {
        let conn = match tokio::time::timeout(CALL_TIMEOUT, connect(address.as_deref())).await {
            Ok(Ok(c)) => c,
            other => {
                if !logged {
                    tracing::warn!(result = ?other.map(|r| r.map(|_| ())), "no D-Bus bus yet; the panel shows \"starting\" and retries");
                    logged = true;
                }
                source.set(None);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        logged = false;
        if let Err(e) = follow(&conn, &source, &mirror, &stop, &mut actions).await {
            tracing::warn!(error = %e, "lost the D-Bus connection; reconnecting");
        }
        source.set(None);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow(
    conn: &zbus::Connection,
    source: &SupervisorSource,
    mirror: &Arc<Mirror>,
    stop: &AtomicBool,
    actions: &mut tokio::sync::mpsc::UnboundedReceiver<Action>,
) -> zbus::Result<()> {
    conn.object_server()
        .at(
            PANEL_OBJECT,
            PanelObject {
                mirror: mirror.clone(),
            },
        )
        .await?;
    if let Err(e) = conn.request_name(api::panel::BUS_NAME).await {
        tracing::warn!(error = %e, "cannot own {}; the web mirror is off", api::panel::BUS_NAME);
    }
    let proxy = Supervisor1Proxy::new(conn).await?;
    let mut changes = proxy.receive_changed().await?;
    let mut owners = proxy.inner().receive_owner_changed().await?;
    let fetch = async |proxy: &Supervisor1Proxy<'_>| match tokio::time::timeout(
        CALL_TIMEOUT,
        proxy.status(),
    )
    .await
    {
        Ok(Ok(s)) => to_panel(&s),
        _ => None,
    };
    source.set(fetch(&proxy).await);
    let mut check_stop = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            sig = changes.next() => {
                let Some(sig) = sig else { return Ok(()) };
                match sig.args() {
                    Ok(a) => match api::parse_status(a.status()) {
                        Ok(s) => source.set(to_panel(&s)),
                        Err(e) => tracing::warn!(reason = %e.user_message(), "unreadable status"),
                    },
                    Err(e) => tracing::warn!(error = %e, "unreadable Changed signal"),
                }
            }
            owner = owners.next() => {
                match owner {
                    Some(Some(_)) => source.set(fetch(&proxy).await),
                    Some(None) => source.set(None),
                    None => return Ok(()),
                }
            }
            action = actions.recv() => {
                if let Some(action) = action {
                    perform(&proxy, &action).await;
                }
            }
            _ = check_stop.tick() => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: OverallState) -> ApplianceStatus {
        ApplianceStatus {
            mode: api::Mode::Appliance,
            state,
            hostname: "box".into(),
            version: "1".into(),
            build: "b".into(),
            uptime_seconds: 1,
            load: [0.0; 3],
            memory: Default::default(),
            disk: None,
            temperatures: vec![],
            interfaces: vec![api::Interface {
                name: "eth0".into(),
                up: true,
                addresses: vec!["192.0.2.7/24".into(), "garbage".into()],
                dhcp: Some(true),
            }],
            ntp_synchronized: None,
            time: String::new(),
            timezone: "UTC".into(),
            services: vec![],
            relay: api::RelayCounts {
                rep_consoles: 2,
                customer_clients: 3,
                jump_clients: 4,
            },
            evaluation_licence: Some(true),
            update: Default::default(),
            alerts: vec![
                api::Alert::ServiceFailed {
                    unit: "relay".into(),
                },
                api::Alert::LicenceExpiring { days: 3 },
            ],
            validity_alerts: vec![
                api::ValidityAlert::CertificateExpiring {
                    days: 9,
                    expires: "2026-01-10".into(),
                },
                api::ValidityAlert::EvaluationLicence {
                    reason: "No licence is installed.".into(),
                },
            ],
            identify: true,
        }
    }

    #[test]
    fn supervisor_status_maps_onto_the_panel() {
        assert_eq!(to_panel(&status(OverallState::Starting)), None);
        let p = to_panel(&status(OverallState::Degraded)).unwrap();
        assert_eq!(p.state, State::Degraded);
        assert_eq!((p.reps, p.customers, p.jump_clients), (2, 3, 4));
        assert_eq!(p.interfaces[0].addresses.len(), 1);
        assert_eq!(p.url().as_deref(), Some("https://192.0.2.7/"));
        assert!(p.evaluation_licence);
        assert_eq!(
            p.alerts,
            vec![
                Alert::ServiceFailed {
                    unit: "relay".into()
                },
                Alert::CertificateExpiring { days: 9 },
                Alert::EvaluationLicence {
                    reason: "No licence is installed.".into()
                },
            ]
        );
        assert!(p.identify);
        assert_eq!(p.interfaces[0].dhcp, Some(true));
    }

    #[test]
    fn mirror_keys_are_bounded() {
        let m = Mirror::default();
        for _ in 0..40 {
            m.push_key(Key::Down);
        }
        let mut n = 0;
        while m.next_key().is_some() {
            n += 1;
        }
        assert_eq!(n, 16);
    }
}
