//! The D-Bus object `org.lifeline.Supervisor1`, its authorisation, audit and rate limits,
//! and the daemon's run loop.
//!
//! The status is rebuilt on a timer (`refresh_ms`) and at once when a development child
//! changes state; `Changed` is emitted only when [`ApplianceStatus::significant`] differs,
//! so clocks and load do not wake the panel. The systemd watchdog is fed from the refresh
//! loop, so a stuck refresh stops the pings. Each status holds the licence and certificate
//! alerts ([`crate::validity`]), each interface's DHCP or static mode as networkd reports
//! it ([`crate::network`]), and `identify` for [`IDENTIFY_SECONDS`] after `Identify`.
//!
//! Authorisation: a method asks the bus for the caller's Unix user
//! (`GetConnectionUnixUser`) and compares it with the configured `authorised_users`
//! (resolved through `/etc/passwd`; root and the supervisor's own user are always allowed).
//! `ReportRelay` is allowed only to the relay's user. Every action, allowed or not, is one
//! JSON line in `<state_dir>/audit.log` and a log line. Actions are rate-limited per kind
//! (restart 6, reboot and power off 3, identify 20, network 6 a minute).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lifeline_license_api::License1Proxy;
use lifeline_supervisor_api::{
    Alert, ApplianceStatus, BUS_NAME, IDENTIFY_SECONDS, Mode, NetworkMode, OBJECT_PATH,
    OverallState, RelayCounts, ServiceState, ServiceStatus, SupervisorError, UpdateStatus,
    ValidityAlert,
};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::proxy::CacheProperties;

use crate::config::{Config, ModeName};
use crate::dev::{Children, PrivateBus};
use crate::health::{self, HostPaths};
use crate::network;
use crate::rauc::{self, FailedUpdate};
use crate::systemd::Systemd;
use crate::validity::{self, Certificate};

/// How long a D-Bus call on behalf of a caller may take before it is abandoned.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the state folder {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    #[error("cannot connect to the D-Bus bus ({bus})")]
    Connect {
        bus: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error(
        "cannot own the name {BUS_NAME}: another supervisor is running, or the bus policy does not allow this user"
    )]
    NameTaken {
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("the private dbus-daemon exited")]
    BusLost,
}

/// Where the daemon talks D-Bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    System,
    Address(String),
    /// Development: start a private `dbus-daemon`.
    Private,
}

enum Backend {
    Dev(Children),
    Box(Systemd),
}

/// The audit log: one JSON line per action.
struct Audit {
    path: PathBuf,
}

impl Audit {
    fn write(&self, uid: Option<u32>, actor: &str, action: &str, detail: &str, outcome: &str) {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "at": at, "uid": uid, "actor": actor, "action": action,
            "detail": detail, "outcome": outcome,
        });
        tracing::info!(uid, actor, action, detail, outcome, "audit");
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }
}

/// Sliding one-minute windows per action kind.
#[derive(Default)]
struct Limiter {
    hits: HashMap<&'static str, VecDeque<Instant>>,
}

impl Limiter {
    fn allow(&mut self, kind: &'static str, per_minute: usize, now: Instant) -> bool {
        let q = self.hits.entry(kind).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= per_minute {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// Users from `/etc/passwd`, by name.
pub fn uid_of(passwd: &str, name: &str) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

struct Inner {
    config: Config,
    mode: Mode,
    backend: Backend,
    host_paths: HostPaths,
    status: RwLock<ApplianceStatus>,
    relay: Mutex<RelayCounts>,
    update: Mutex<UpdateStatus>,
    audit: Audit,
    limiter: Mutex<Limiter>,
    allowed: Vec<u32>,
    relay_uid: Vec<u32>,
    refresh: Arc<tokio::sync::Notify>,
    /// Development power-off: stop the whole appliance.
    stop: tokio::sync::watch::Sender<bool>,
    started: Instant,
    /// `identify` is true in the status until then.
    identify_until: Mutex<Option<Instant>>,
    /// The relay's certificate, when configured.
    certificate: Mutex<Option<Certificate>>,
    /// An update that failed its health check and was left (recorded on the failed slot).
    failed_update: Mutex<Option<FailedUpdate>>,
}

/// The object served at [`OBJECT_PATH`].
pub struct SupervisorObject {
    inner: Arc<Inner>,
}

async fn caller_uid(conn: &zbus::Connection, hdr: &Header<'_>) -> Result<u32, SupervisorError> {
    let sender = hdr.sender().ok_or_else(|| {
        SupervisorError::NotAuthorised("The caller has no name on the bus.".into())
    })?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    match tokio::time::timeout(
        PEER_TIMEOUT,
        dbus.get_connection_unix_user(zbus::names::BusName::Unique(sender.to_owned())),
    )
    .await
    {
        Ok(Ok(uid)) => Ok(uid),
        Ok(Err(e)) => Err(SupervisorError::NotAuthorised(format!(
            "The bus could not say who is calling ({e})."
        ))),
        Err(_) => Err(SupervisorError::Failed(
            "The bus did not say in time who is calling; try again.".into(),
        )),
    }
}

impl Inner {
    /// Authorise, rate-limit and audit the start of an action; `Ok(uid)` to go ahead.
    async fn admit(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        actor: &str,
        action: &'static str,
        detail: &str,
        per_minute: usize,
    ) -> Result<u32, SupervisorError> {
        let actor: String = actor.chars().filter(|c| !c.is_control()).take(80).collect();
        let uid = match caller_uid(conn, hdr).await {
            Ok(uid) => uid,
            Err(e) => {
                self.audit
                    .write(None, &actor, action, detail, "refused: unknown caller");
                return Err(e);
            }
        };
        if !self.allowed.contains(&uid) {
            self.audit
                .write(Some(uid), &actor, action, detail, "refused: not authorised");
            return Err(SupervisorError::NotAuthorised(
                "This program may not ask the appliance for that. Use the appliance \
                 administration page or the front panel."
                    .into(),
            ));
        }
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(action, per_minute, Instant::now());
        if !allowed {
            self.audit
                .write(Some(uid), &actor, action, detail, "refused: rate limited");
            return Err(SupervisorError::RateLimited(
                "That was asked too often in the last minute. Wait a minute and try again.".into(),
            ));
        }
        self.audit
            .write(Some(uid), &actor, action, detail, "accepted");
        Ok(uid)
    }

    fn outcome(
        &self,
        uid: u32,
        actor: &str,
        action: &str,
        detail: &str,
        r: &Result<(), SupervisorError>,
    ) {
        match r {
            Ok(()) => self.audit.write(Some(uid), actor, action, detail, "done"),
            Err(e) => self.audit.write(
                Some(uid),
                actor,
                action,
                detail,
                &format!("failed: {}", e.user_message()),
            ),
        }
    }

    fn service_unit(&self, name: &str) -> Result<String, SupervisorError> {
        self.config
            .services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.unit.clone().unwrap_or_else(|| s.name.clone()))
            .ok_or_else(|| {
                SupervisorError::UnknownService(format!(
                    "There is no appliance service called \"{name}\". Known services: {}.",
                    self.config
                        .services
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

fn failed(e: impl std::error::Error) -> SupervisorError {
    SupervisorError::Failed(format!(
        "The appliance could not do it: {}.",
        crate::error_chain(&e)
    ))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[zbus::interface(name = "org.lifeline.Supervisor1")]
impl SupervisorObject {
    /// The status now, as JSON.
    async fn get_status(&self) -> String {
        self.inner
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .to_json()
    }

    async fn restart_service(
        &self,
        name: &str,
        actor: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let unit = self.inner.service_unit(name)?;
        let uid = self
            .inner
            .admit(conn, &hdr, actor, "restart_service", name, 6)
            .await?;
        let r = match &self.inner.backend {
            Backend::Dev(children) => {
                children.restart(name);
                Ok(())
            }
            Backend::Box(sd) => sd.restart(&unit).await.map_err(failed),
        };
        self.inner.outcome(uid, actor, "restart_service", name, &r);
        self.inner.refresh.notify_one();
        r
    }

    async fn reboot(
        &self,
        actor: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let uid = self.inner.admit(conn, &hdr, actor, "reboot", "", 3).await?;
        let r = match &self.inner.backend {
            // In development a "reboot" restarts every service.
            Backend::Dev(children) => {
                children.restart_all();
                Ok(())
            }
            Backend::Box(sd) => sd.reboot().await.map_err(failed),
        };
        self.inner.outcome(uid, actor, "reboot", "", &r);
        r
    }

    async fn power_off(
        &self,
        actor: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let uid = self
            .inner
            .admit(conn, &hdr, actor, "power_off", "", 3)
            .await?;
        let r = match &self.inner.backend {
            // In development "power off" stops the whole appliance.
            Backend::Dev(_) => {
                let _ = self.inner.stop.send(true);
                Ok(())
            }
            Backend::Box(sd) => sd.power_off().await.map_err(failed),
        };
        self.inner.outcome(uid, actor, "power_off", "", &r);
        r
    }

    async fn identify(
        &self,
        actor: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let uid = self
            .inner
            .admit(conn, &hdr, actor, "identify", "", 20)
            .await?;
        *self
            .inner
            .identify_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + Duration::from_secs(IDENTIFY_SECONDS));
        // Seen at once by GetStatus; the refresh it triggers emits Changed.
        self.inner
            .status
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .identify = true;
        self.inner.outcome(uid, actor, "identify", "", &Ok(()));
        self.inner.refresh.notify_one();
        Ok(())
    }

    // The D-Bus signature fixes the arguments; zbus adds the header and connection.
    #[allow(clippy::too_many_arguments)]
    async fn set_network(
        &self,
        iface: &str,
        mode: &str,
        address: &str,
        prefix: u8,
        actor: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let Some(mode) = NetworkMode::parse(mode) else {
            return Err(SupervisorError::InvalidArgument(
                "The network mode must be \"dhcp\" or \"static\".".into(),
            ));
        };
        if iface.is_empty()
            || iface.len() > 15
            || !iface
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(SupervisorError::InvalidArgument(
                "That is not a network interface name.".into(),
            ));
        }
        if mode == NetworkMode::Static
            && (address.parse::<std::net::Ipv4Addr>().is_err() || !(1..=32).contains(&prefix))
        {
            return Err(SupervisorError::InvalidArgument(
                "A static address must be an IPv4 address with a prefix length from 1 to 32."
                    .into(),
            ));
        }
        let detail = format!("{iface} {} {address}/{prefix}", mode.as_str());
        let uid = self
            .inner
            .admit(conn, &hdr, actor, "set_network", &detail, 6)
            .await?;
        let r = match &self.inner.backend {
            Backend::Dev(_) => Err(SupervisorError::Unsupported(
                "In development mode the appliance does not change this computer's network.".into(),
            )),
            Backend::Box(sd) => {
                let text = network::network_file(
                    iface,
                    mode,
                    address,
                    prefix,
                    &actor
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(80)
                        .collect::<String>(),
                    &now_rfc3339(),
                );
                match network::write_setting(
                    &self.inner.config.network_dir,
                    &network::file_name(iface),
                    &text,
                ) {
                    Ok(_) => sd.reload_network().await.map_err(failed),
                    Err(e) => Err(failed(e)),
                }
            }
        };
        self.inner.outcome(uid, actor, "set_network", &detail, &r);
        self.inner.refresh.notify_one();
        r
    }

    async fn report_relay(
        &self,
        rep_consoles: u32,
        customer_clients: u32,
        jump_clients: u32,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), SupervisorError> {
        let uid = caller_uid(conn, &hdr).await?;
        if !self.inner.relay_uid.contains(&uid) {
            return Err(SupervisorError::NotAuthorised(
                "Only the relay reports its counts.".into(),
            ));
        }
        let new = RelayCounts {
            rep_consoles,
            customer_clients,
            jump_clients,
        };
        let changed = {
            let mut r = self.inner.relay.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *r, new) != new
        };
        if changed {
            self.inner.refresh.notify_one();
        }
        Ok(())
    }

    #[zbus(signal)]
    async fn changed(emitter: &SignalEmitter<'_>, status: &str) -> zbus::Result<()>;
}

/// Judge the box from its parts: the overall state and the alerts of the first contract.
/// Licence and certificate alerts (`validity`) are listed apart by the caller; the expired
/// ones degrade the box.
pub fn judge(
    services: &[(ServiceStatus, bool)],
    update: &UpdateStatus,
    disk: Option<&lifeline_supervisor_api::Disk>,
    validity: &[ValidityAlert],
    failed_update: Option<&FailedUpdate>,
) -> (OverallState, Vec<Alert>) {
    let mut alerts = Vec::new();
    let mut starting = false;
    for (s, optional) in services {
        match s.state {
            ServiceState::Active | ServiceState::Reloading => {}
            ServiceState::Activating | ServiceState::Deactivating if s.restarts == 0 => {
                starting = true;
            }
            _ if *optional => {}
            _ => alerts.push(Alert::ServiceFailed {
                unit: s.name.clone(),
            }),
        }
    }
    if let Some(d) = disk
        && d.used_percent() >= 90
    {
        alerts.push(Alert::DiskNearlyFull {
            mount: d.path.clone(),
            used_percent: d.used_percent(),
        });
    }
    if update.booted_slot_marked_good == Some(false) {
        alerts.push(Alert::UpdateFailed {
            reason: match (&update.health_problem, &update.last_error) {
                (Some(p), _) => format!("the health check after the update did not pass: {p}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "the health check after the update did not pass".into(),
            },
        });
    } else if let Some(f) = failed_update {
        alerts.push(Alert::UpdateFailed {
            reason: f.sentence(),
        });
    }
    let state = if update.operation == "installing" {
        OverallState::Updating
    } else if !alerts.is_empty() || validity.iter().any(ValidityAlert::degrades) {
        OverallState::Degraded
    } else if starting {
        OverallState::Starting
    } else {
        OverallState::Ok
    };
    (state, alerts)
}

impl Inner {
    async fn services(&self) -> Vec<(ServiceStatus, bool)> {
        match &self.backend {
            Backend::Dev(children) => children.statuses(),
            Backend::Box(sd) => {
                let optional: Vec<bool> = self.config.services.iter().map(|s| s.optional).collect();
                sd.statuses(&self.config.services)
                    .await
                    .into_iter()
                    .zip(optional)
                    .collect()
            }
        }
    }

    async fn build(&self, licence: Option<&License1Proxy<'static>>) -> ApplianceStatus {
        let paths = self.host_paths.clone();
        let data = self.config.data_path.clone();
        let host = tokio::task::spawn_blocking(move || health::sample(&paths, &data))
            .await
            .unwrap_or_default();
        let services = self.services().await;
        let licence_status = match licence {
            Some(p) => tokio::time::timeout(PEER_TIMEOUT, p.licence_status())
                .await
                .ok()
                .and_then(|r| r.ok()),
            None => None,
        };
        let refusal = match (licence, &licence_status) {
            (Some(p), Some(st)) if st.evaluation => {
                tokio::time::timeout(PEER_TIMEOUT, p.refusal_kind())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten()
            }
            _ => None,
        };
        let evaluation_licence = licence_status.as_ref().map(|l| l.evaluation);
        let now = time::OffsetDateTime::now_utc();
        let mut validity_alerts = licence_status
            .as_ref()
            .map(|st| {
                validity::licence_alerts(st, refusal.as_ref(), now.date(), self.config.warn_days)
            })
            .unwrap_or_default();
        let not_after = self
            .certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(Certificate::not_after);
        if let Some(t) = not_after
            && let Some(a) = validity::certificate_alert(t, now, self.config.warn_days)
        {
            validity_alerts.push(a);
        }
        let mut interfaces = host.interfaces;
        let ntp = match &self.backend {
            Backend::Box(sd) => {
                if let Some(json) = sd.describe_network().await {
                    let modes = network::parse_describe(&json);
                    for i in &mut interfaces {
                        i.dhcp = modes.get(&i.name).copied();
                    }
                }
                sd.ntp_synchronized().await
            }
            Backend::Dev(_) => None,
        };
        let update = self
            .update
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let identify = self
            .identify_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t);
        let failed_update = self
            .failed_update
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (state, alerts) = judge(
            &services,
            &update,
            host.disk.as_ref(),
            &validity_alerts,
            failed_update.as_ref(),
        );
        ApplianceStatus {
            mode: self.mode,
            state,
            hostname: host.hostname,
            version: env!("CARGO_PKG_VERSION").to_string(),
            build: option_env!("LIFELINE_BUILD").unwrap_or("dev").to_string(),
            uptime_seconds: host.uptime_seconds,
            load: host.load,
            memory: host.memory,
            disk: host.disk,
            temperatures: host.temperatures,
            interfaces,
            ntp_synchronized: ntp,
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            timezone: host.timezone,
            services: services.into_iter().map(|(s, _)| s).collect(),
            relay: *self.relay.lock().unwrap_or_else(|e| e.into_inner()),
            evaluation_licence,
            update,
            alerts,
            validity_alerts,
            identify,
        }
    }

    /// `Ok` when every non-optional service is active and the relay answers; else what
    /// is wrong, for a person.
    async fn healthy(&self) -> Result<(), String> {
        let services = self.services().await;
        let down: Vec<String> = services
            .iter()
            .filter(|(s, optional)| !*optional && s.state != ServiceState::Active)
            .map(|(s, _)| format!("{} is {}", s.unit, s.state))
            .collect();
        if !down.is_empty() {
            return Err(down.join(", "));
        }
        match self.config.relay_check {
            Some(addr) if !rauc::port_answers(addr).await => {
                Err(format!("the relay does not accept connections on {addr}"))
            }
            _ => Ok(()),
        }
    }
}

/// The post-update health check and `Mark("good", "booted")`; see [`crate::rauc`].
async fn mark_good_after_update(inner: Arc<Inner>, conn: zbus::Connection) {
    let installer = match tokio::time::timeout(
        rauc::CALL_TIMEOUT,
        rauc::InstallerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot make a proxy for RAUC; no update health check");
            return;
        }
        Err(_) => {
            tracing::error!("making a proxy for RAUC timed out; no update health check");
            return;
        }
    };
    let first = Instant::now();
    let mut attempt = 0;
    let slots = loop {
        let failure =
            match tokio::time::timeout(rauc::CALL_TIMEOUT, installer.get_slot_status()).await {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => rauc::CallFailure::Error(e),
                Err(_) => rauc::CallFailure::TimedOut,
            };
        match rauc::retry_slot_status(&failure, attempt, first.elapsed()) {
            Some(pause) => {
                tracing::warn!(%failure, attempt, ?pause, "RAUC did not give its slots; asking again");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            None if matches!(&failure, rauc::CallFailure::Error(_)) && attempt == 0 => {
                tracing::info!(%failure, "RAUC is not on the bus; no update health check");
                return;
            }
            None => {
                tracing::error!(%failure, attempts = attempt + 1, "RAUC never gave its slots; no update health check");
                return;
            }
        }
    };
    let Some((slot, identity)) = rauc::booted_identity(&slots) else {
        tracing::warn!("RAUC reports no booted slot; not marking anything");
        return;
    };
    {
        let mut u = inner.update.lock().unwrap_or_else(|e| e.into_inner());
        u.booted_slot = Some(slot.clone());
    }
    if rauc::already_marked(&inner.config.state_dir, &identity) {
        inner
            .update
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .booted_slot_marked_good = Some(true);
        inner.refresh.notify_one();
        return;
    }
    tracing::info!(%slot, %identity, "booted slot is fresh: running the health check");
    let deadline = Instant::now() + inner.config.health_deadline;
    let mut good_in_a_row = 0;
    let mut last_problem = String::from("the health check did not run");
    while Instant::now() < deadline {
        match inner.healthy().await {
            Ok(()) => {
                good_in_a_row += 1;
                if good_in_a_row >= 3 {
                    break;
                }
            }
            Err(problem) => {
                good_in_a_row = 0;
                last_problem = problem;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let marked = if good_in_a_row >= 3 {
        match tokio::time::timeout(rauc::CALL_TIMEOUT, installer.mark("good", "booted")).await {
            Ok(Ok((name, message))) => {
                tracing::info!(%name, %message, "marked the booted slot good");
                inner
                    .audit
                    .write(None, "supervisor", "mark_good", &identity, "done");
                if let Err(e) = rauc::record_marked(&inner.config.state_dir, &identity) {
                    tracing::error!(error = %e, "cannot record the marked slot");
                }
                // A later update worked: the earlier failure is history.
                rauc::forget_failed(&inner.config.state_dir);
                *inner
                    .failed_update
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "RAUC refused to mark the slot good");
                false
            }
            Err(_) => {
                tracing::error!("RAUC did not answer Mark in time");
                false
            }
        }
    } else {
        tracing::error!(%slot, problem = %last_problem, "health check after the update failed; not marking the slot good");
        inner.audit.write(
            None,
            "supervisor",
            "mark_good",
            &identity,
            &format!("refused: health check failed: {last_problem}"),
        );
        false
    };
    {
        let mut u = inner.update.lock().unwrap_or_else(|e| e.into_inner());
        u.booted_slot_marked_good = Some(marked);
        u.health_problem = (!marked).then(|| last_problem.clone());
    }
    inner.refresh.notify_one();
    if !marked {
        fall_back(&inner, &installer, &slots, &slot, &identity, &last_problem).await;
    }
}

/// After a failed health check: record it, mark the slot bad and reboot into the slot that
/// worked, when there is one (see [`crate::rauc`]).
async fn fall_back(
    inner: &Inner,
    installer: &rauc::InstallerProxy<'_>,
    slots: &[(
        String,
        std::collections::HashMap<String, zvariant::OwnedValue>,
    )],
    slot: &str,
    identity: &str,
    problem: &str,
) {
    let Backend::Box(sd) = &inner.backend else {
        return;
    };
    if !inner.config.fall_back_after_failed_update {
        tracing::warn!("falling back after a failed update is off in the configuration");
        return;
    }
    let Some(other) = rauc::fallback_slot(slots) else {
        tracing::error!(%slot, "no other slot is known good: staying on this one (a reboot could not help)");
        return;
    };
    let failed = FailedUpdate {
        slot: slot.to_string(),
        identity: identity.to_string(),
        fell_back_to: other.clone(),
        reason: problem.to_string(),
        at: now_rfc3339(),
    };
    if let Err(e) = rauc::record_failed(&inner.config.state_dir, &failed) {
        tracing::error!(error = %e, "cannot record the failed update");
    }
    match tokio::time::timeout(rauc::CALL_TIMEOUT, installer.mark("bad", "booted")).await {
        Ok(Ok((name, message))) => tracing::warn!(%name, %message, "marked the booted slot bad"),
        Ok(Err(e)) => tracing::error!(error = %e, "RAUC refused to mark the slot bad"),
        Err(_) => tracing::error!("RAUC did not answer Mark in time"),
    }
    tracing::warn!(%slot, %other, "rebooting into the slot that worked");
    let r = sd.reboot().await;
    inner.audit.write(
        None,
        "supervisor",
        "fall_back",
        &format!("{identity} -> {other}"),
        &match &r {
            Ok(()) => "done".to_string(),
            Err(e) => format!("failed: {}", crate::error_chain(e)),
        },
    );
    if let Err(e) = r {
        tracing::error!(error = %crate::error_chain(&e), "cannot reboot into the slot that worked");
    }
}

async fn rauc_progress(conn: &zbus::Connection, update: &Mutex<UpdateStatus>) {
    let Ok(Ok(installer)) = tokio::time::timeout(
        rauc::CALL_TIMEOUT,
        rauc::InstallerProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build(),
    )
    .await
    else {
        return;
    };
    let op = tokio::time::timeout(PEER_TIMEOUT, installer.operation()).await;
    let Ok(Ok(op)) = op else { return };
    let progress = match tokio::time::timeout(PEER_TIMEOUT, installer.progress()).await {
        Ok(Ok((p, _, _))) if op == "installing" => u8::try_from(p.clamp(0, 100)).ok(),
        _ => None,
    };
    let last_error = match tokio::time::timeout(PEER_TIMEOUT, installer.last_error()).await {
        Ok(Ok(e)) if !e.is_empty() => Some(e),
        _ => None,
    };
    let mut u = update.lock().unwrap_or_else(|e| e.into_inner());
    u.operation = op;
    u.progress = progress;
    u.last_error = last_error;
}

/// Resolved start-up settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub bus: Bus,
    pub host_paths: HostPaths,
}

async fn connect(bus: &Bus, address: Option<&str>) -> Result<zbus::Connection, RunError> {
    let explicit = match (bus, address) {
        (_, Some(addr)) => Some(addr),
        (Bus::Address(addr), None) => Some(addr.as_str()),
        (Bus::System | Bus::Private, None) => None,
    };
    let built = match explicit {
        Some(addr) => match zbus::connection::Builder::address(addr) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        },
        None => zbus::Connection::system().await,
    };
    built.map_err(|source| RunError::Connect {
        bus: address
            .map(str::to_string)
            .unwrap_or_else(|| format!("{bus:?}")),
        source: Box::new(source),
    })
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Run until SIGTERM/SIGINT (or a development power-off), then stop the children.
pub async fn run(opts: Options) -> Result<(), RunError> {
    let config = opts.config.clone();
    std::fs::create_dir_all(&config.state_dir).map_err(|source| RunError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let mut private = match (config.mode, &opts.bus) {
        (ModeName::Development, Bus::Private) => Some(PrivateBus::start(&config.state_dir).await?),
        _ => None,
    };
    let address = private.as_ref().map(|p| p.address.clone());
    let conn = connect(&opts.bus, address.as_deref()).await?;
    let refresh = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);

    let own_uid = nix::unistd::getuid().as_raw();
    let passwd = std::fs::read_to_string(opts.host_paths.etc.join("passwd")).unwrap_or_default();
    let mut allowed: Vec<u32> = vec![0, own_uid];
    allowed.extend(
        config
            .authorised_users
            .iter()
            .filter_map(|u| uid_of(&passwd, u)),
    );
    let mut relay_uid = vec![0, own_uid];
    relay_uid.extend(uid_of(&passwd, &config.relay_user));

    let (mode, backend) = match config.mode {
        ModeName::Development => {
            let bus_address = address.clone().unwrap_or_else(|| match &opts.bus {
                Bus::Address(a) => a.clone(),
                _ => String::new(),
            });
            let children = Children::start(
                &config.services,
                &config.state_dir,
                &bus_address,
                refresh.clone(),
            )?;
            (Mode::Development, Backend::Dev(children))
        }
        ModeName::Appliance => (Mode::Appliance, Backend::Box(Systemd::new(conn.clone()))),
    };
    let initial = ApplianceStatus {
        mode,
        state: OverallState::Starting,
        hostname: String::new(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        build: option_env!("LIFELINE_BUILD").unwrap_or("dev").to_string(),
        uptime_seconds: 0,
        load: [0.0; 3],
        memory: Default::default(),
        disk: None,
        temperatures: vec![],
        interfaces: vec![],
        ntp_synchronized: None,
        time: String::new(),
        timezone: "UTC".into(),
        services: vec![],
        relay: RelayCounts::default(),
        evaluation_licence: None,
        update: UpdateStatus::default(),
        alerts: vec![],
        validity_alerts: vec![],
        identify: false,
    };
    let inner = Arc::new(Inner {
        audit: Audit {
            path: config.state_dir.join("audit.log"),
        },
        config: config.clone(),
        mode,
        backend,
        host_paths: opts.host_paths.clone(),
        status: RwLock::new(initial),
        relay: Mutex::new(RelayCounts::default()),
        update: Mutex::new(UpdateStatus::default()),
        limiter: Mutex::new(Limiter::default()),
        allowed,
        relay_uid,
        refresh: refresh.clone(),
        stop: stop_tx,
        started: Instant::now(),
        identify_until: Mutex::new(None),
        certificate: Mutex::new(config.relay_certificate.clone().map(Certificate::new)),
        failed_update: Mutex::new(match mode {
            Mode::Appliance => rauc::failed_update(&config.state_dir),
            Mode::Development => None,
        }),
    });
    // Build the first real status before taking the name, so no client sees an empty one.
    let licence = License1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .ok();
    let first = inner.build(licence.as_ref()).await;
    *inner.status.write().unwrap_or_else(|e| e.into_inner()) = first;
    conn.object_server()
        .at(
            OBJECT_PATH,
            SupervisorObject {
                inner: inner.clone(),
            },
        )
        .await
        .map_err(|source| RunError::NameTaken {
            source: Box::new(source),
        })?;
    conn.request_name(BUS_NAME)
        .await
        .map_err(|source| RunError::NameTaken {
            source: Box::new(source),
        })?;
    if let Some(p) = &private {
        tracing::info!(address = %p.address, "private bus for development");
    }
    tracing::info!(mode = ?mode, "lifeline-supervisor serving {BUS_NAME}");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    if mode == Mode::Appliance {
        tokio::spawn(mark_good_after_update(inner.clone(), conn.clone()));
    }

    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec) && usec > 0;
    let mut tick = tokio::time::interval(config.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signal = Box::pin(shutdown_signal());
    let iface = conn
        .object_server()
        .interface::<_, SupervisorObject>(OBJECT_PATH)
        .await
        .ok();
    let mut last_significant = inner
        .status
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .significant();
    let result = loop {
        let bus_gone = async {
            match private.as_mut() {
                Some(p) => p.exited().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            _ = refresh.notified() => {
                // Let a burst of changes settle into one status.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = &mut signal => break Ok(()),
            _ = stop_rx.wait_for(|s| *s) => break Ok(()),
            _ = bus_gone => break Err(RunError::BusLost),
        }
        if mode == Mode::Appliance {
            rauc_progress(&conn, &inner.update).await;
        }
        let status = match tokio::time::timeout(
            Duration::from_secs(10),
            inner.build(licence.as_ref()),
        )
        .await
        {
            Ok(s) => s,
            Err(_) => {
                tracing::error!("building the status took over 10 s; not feeding the watchdog");
                continue;
            }
        };
        let significant = status.significant();
        let json = status.to_json();
        *inner.status.write().unwrap_or_else(|e| e.into_inner()) = status;
        if significant != last_significant {
            last_significant = significant;
            if let Some(iface) = &iface
                && let Err(e) = SupervisorObject::changed(iface.signal_emitter(), &json).await
            {
                tracing::warn!("cannot emit Changed: {e}");
            }
        }
        if watchdog {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    };
    tracing::info!(uptime = ?inner.started.elapsed(), "stopping");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if let Backend::Dev(children) = &inner.backend {
        children.stop().await;
    }
    if let Some(p) = private.take() {
        p.stop().await;
    }
    tracing::info!("stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_supervisor_api::Disk;

    fn svc(name: &str, state: ServiceState, restarts: u32) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            unit: name.into(),
            state,
            sub_state: String::new(),
            restarts,
            pid: None,
        }
    }

    #[test]
    fn judgement() {
        let none = UpdateStatus::default();
        let ok = vec![(svc("relay", ServiceState::Active, 0), false)];
        assert_eq!(judge(&ok, &none, None, &[], None).0, OverallState::Ok);
        let starting = vec![(svc("relay", ServiceState::Activating, 0), false)];
        assert_eq!(
            judge(&starting, &none, None, &[], None).0,
            OverallState::Starting
        );
        let failed = vec![
            (svc("relay", ServiceState::Failed, 1), false),
            (svc("emu", ServiceState::Failed, 1), true),
        ];
        let (state, alerts) = judge(&failed, &none, None, &[], None);
        assert_eq!(state, OverallState::Degraded);
        assert_eq!(
            alerts,
            vec![Alert::ServiceFailed {
                unit: "relay".into()
            }]
        );
        let disk = Disk {
            path: "/data".into(),
            total_bytes: 100,
            available_bytes: 5,
        };
        assert_eq!(
            judge(&ok, &none, Some(&disk), &[], None).0,
            OverallState::Degraded
        );
        let installing = UpdateStatus {
            operation: "installing".into(),
            ..Default::default()
        };
        assert_eq!(
            judge(&ok, &installing, None, &[], None).0,
            OverallState::Updating
        );
        let bad = UpdateStatus {
            booted_slot_marked_good: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            judge(&ok, &bad, None, &[], None).1[0],
            Alert::UpdateFailed { .. }
        ));
        // Expired licences and certificates degrade the box; expiring ones only warn.
        let soon = [ValidityAlert::CertificateExpiring {
            days: 3,
            expires: "2026-01-04".into(),
        }];
        assert_eq!(
            judge(&ok, &none, None, &soon, None),
            (OverallState::Ok, vec![])
        );
        let gone = [ValidityAlert::LicenceExpired {
            expired_on: "2026-01-01".into(),
        }];
        assert_eq!(
            judge(&ok, &none, None, &gone, None).0,
            OverallState::Degraded
        );
        // After a fall-back, the slot that worked reports the failed update.
        let f = FailedUpdate {
            slot: "rootfs.0".into(),
            identity: "rootfs.0@x".into(),
            fell_back_to: "rootfs.1".into(),
            reason: "lifeline-relay.service is failed".into(),
            at: "2026-01-01T00:00:00Z".into(),
        };
        let (state, alerts) = judge(&ok, &none, None, &[], Some(&f));
        assert_eq!(state, OverallState::Degraded);
        assert!(
            matches!(&alerts[0], Alert::UpdateFailed { reason } if reason.contains("went back to rootfs.1")),
            "{alerts:?}"
        );
    }

    #[test]
    fn limiter_and_passwd() {
        let mut l = Limiter::default();
        let t = Instant::now();
        assert!(l.allow("reboot", 2, t));
        assert!(l.allow("reboot", 2, t));
        assert!(!l.allow("reboot", 2, t));
        assert!(l.allow("identify", 2, t));
        assert!(l.allow("reboot", 2, t + Duration::from_secs(61)));
        let passwd = "root:x:0:0::/root:/bin/sh\nlifeline-relay:x:998:998::/:/usr/sbin/nologin\n";
        assert_eq!(uid_of(passwd, "lifeline-relay"), Some(998));
        assert_eq!(uid_of(passwd, "root"), Some(0));
        assert_eq!(uid_of(passwd, "nobody"), None);
    }
}
