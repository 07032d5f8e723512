//! On the box: systemd, logind, networkd and timedated over the system bus.
//!
//! Unit state comes from `org.freedesktop.systemd1` (`LoadUnit` for the object, then the
//! unit's `ActiveState` and `SubState` and the service's `NRestarts` and `MainPID`), read
//! fresh on every refresh without property caching. Restart is `RestartUnit(unit,
//! "replace")`, reboot and power off are logind's `Reboot(false)` / `PowerOff(false)`, a new
//! network setting is networkd's `Reload()`, and how networkd configures each interface
//! comes from its `Describe()`. Every call is bounded by [`CALL_TIMEOUT`].
//!
//! Who may: the supervisor runs as its own unprivileged user, and systemd, logind and
//! networkd ask polkit about an unprivileged caller. The image's polkit rule
//! (`rootfs/usr/share/polkit-1/rules.d/50-lifeline-supervisor.rules`) allows that user
//! exactly these actions: restarting the Lifeline units named in it, rebooting, powering
//! off and reloading networkd; everything else is refused as for any other user. The
//! supervisor authorises and audits its own callers before it asks (see [`crate::service`]).

use std::time::Duration;

use lifeline_supervisor_api::{ServiceState, ServiceStatus};
use zbus::proxy::CacheProperties;
use zvariant::OwnedObjectPath;

use crate::config::ServiceConfig;

/// No call to systemd or logind waits longer than this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
pub trait Login {
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
    fn power_off(&self, interactive: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.network1.Manager",
    default_service = "org.freedesktop.network1",
    default_path = "/org/freedesktop/network1"
)]
pub trait Network {
    fn reload(&self) -> zbus::Result<()>;
    fn describe(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.timedate1",
    default_service = "org.freedesktop.timedate1",
    default_path = "/org/freedesktop/timedate1"
)]
pub trait Timedate {
    #[zbus(property, name = "NTPSynchronized")]
    fn ntp_synchronized(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn timezone(&self) -> zbus::Result<String>;
}

/// A call that failed or timed out, as a sentence.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{what} did not answer within {CALL_TIMEOUT:?}")]
    Timeout { what: &'static str },
    #[error("{what} refused")]
    Call {
        what: &'static str,
        #[source]
        source: zbus::Error,
    },
}

async fn bounded<T>(
    what: &'static str,
    f: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, SystemError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SystemError::Call { what, source }),
        Err(_) => Err(SystemError::Timeout { what }),
    }
}

/// The system-bus side of the box.
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: zbus::Connection,
}

impl Systemd {
    pub fn new(conn: zbus::Connection) -> Self {
        Systemd { conn }
    }

    async fn unit_status(&self, svc: &ServiceConfig) -> Result<ServiceStatus, SystemError> {
        let unit = svc.unit.clone().unwrap_or_default();
        let manager = bounded("systemd", ManagerProxy::new(&self.conn)).await?;
        let path = bounded("systemd", manager.load_unit(&unit)).await?;
        let u = bounded(
            "systemd",
            UnitProxy::builder(&self.conn)
                .path(path.clone())?
                .cache_properties(CacheProperties::No)
                .build(),
        )
        .await?;
        let active = bounded("systemd", u.active_state()).await?;
        let sub = bounded("systemd", u.sub_state()).await?;
        let (restarts, pid) = match ServiceProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(s) => (
                bounded("systemd", s.n_restarts()).await.unwrap_or(0),
                bounded("systemd", s.main_pid()).await.unwrap_or(0),
            ),
            Err(_) => (0, 0),
        };
        Ok(ServiceStatus {
            name: svc.name.clone(),
            unit,
            state: ServiceState::from_systemd(&active),
            sub_state: sub,
            restarts,
            pid: (pid != 0).then_some(pid),
        })
    }

    /// The state of every configured unit; a unit that cannot be read is `unknown`.
    pub async fn statuses(&self, services: &[ServiceConfig]) -> Vec<ServiceStatus> {
        let mut out = Vec::new();
        for svc in services {
            out.push(match self.unit_status(svc).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(unit = ?svc.unit, error = %crate::error_chain(&e), "cannot read unit state");
                    ServiceStatus {
                        name: svc.name.clone(),
                        unit: svc.label(),
                        state: ServiceState::Unknown,
                        sub_state: String::new(),
                        restarts: 0,
                        pid: None,
                    }
                }
            });
        }
        out
    }

    pub async fn restart(&self, unit: &str) -> Result<(), SystemError> {
        let manager = bounded("systemd", ManagerProxy::new(&self.conn)).await?;
        bounded("systemd", manager.restart_unit(unit, "replace")).await?;
        Ok(())
    }

    pub async fn reboot(&self) -> Result<(), SystemError> {
        let login = bounded("logind", LoginProxy::new(&self.conn)).await?;
        bounded("logind", login.reboot(false)).await
    }

    pub async fn power_off(&self) -> Result<(), SystemError> {
        let login = bounded("logind", LoginProxy::new(&self.conn)).await?;
        bounded("logind", login.power_off(false)).await
    }

    /// Make networkd read its files again; it reconfigures the interfaces whose file
    /// changed.
    pub async fn reload_network(&self) -> Result<(), SystemError> {
        let n = bounded("networkd", NetworkProxy::new(&self.conn)).await?;
        bounded("networkd", n.reload()).await
    }

    /// networkd's view of every interface (JSON), when it answers.
    pub async fn describe_network(&self) -> Option<String> {
        let n = bounded("networkd", NetworkProxy::new(&self.conn))
            .await
            .ok()?;
        match bounded("networkd", n.describe()).await {
            Ok(json) => Some(json),
            Err(e) => {
                tracing::debug!(error = %crate::error_chain(&e), "networkd did not describe its links");
                None
            }
        }
    }

    /// NTP synchronisation, when timedated answers.
    pub async fn ntp_synchronized(&self) -> Option<bool> {
        let t = bounded(
            "timedated",
            TimedateProxy::builder(&self.conn)
                .cache_properties(CacheProperties::No)
                .build(),
        )
        .await
        .ok()?;
        bounded("timedated", t.ntp_synchronized()).await.ok()
    }
}

impl From<zbus::Error> for SystemError {
    fn from(source: zbus::Error) -> Self {
        SystemError::Call {
            what: "systemd",
            source,
        }
    }
}
