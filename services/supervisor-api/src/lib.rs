//! The contract of the Lifeline supervisor (`lifeline-supervisor`), for its clients.
//!
//! The supervisor watches the appliance's services and the host, and publishes one status
//! object on D-Bus as `org.lifeline.Supervisor1`. The relay (status page, `/api/v1/appliance`)
//! and the front panel read it; both send the few appliance actions (restart a service,
//! reboot, power off, identify, network mode) through it, and the supervisor authorises and
//! audits each one. This crate holds what a client needs without linking the daemon: the
//! status types, the D-Bus names, the typed D-Bus errors and a zbus client proxy.
//!
//! # The D-Bus interface `org.lifeline.Supervisor1` at `/org/lifeline/Supervisor1`
//!
//! | member | signature | meaning |
//! | --- | --- | --- |
//! | `GetStatus() -> s` | method | the status now, as JSON ([`ApplianceStatus`]) |
//! | `Changed(status s)` | signal | emitted when anything but the clocks (uptime, load, time) changed |
//! | `RestartService(name s, actor s)` | method | restart one Lifeline service by its short name |
//! | `Reboot(actor s)` / `PowerOff(actor s)` | method | through logind on the box |
//! | `Identify(actor s)` | method | make the box show itself: `identify` is true in the status for [`IDENTIFY_SECONDS`] and the panel blinks |
//! | `SetNetwork(iface s, mode s, address s, prefix y, actor s)` | method | `dhcp` or `static`, kept across reboots and updates |
//! | `ReportRelay(rep_consoles u, customer_clients u, jump_clients u)` | method | the relay's live counts |
//!
//! `actor` names the person or device on whose behalf a caller acts (`panel`, `web:alice`);
//! it is written to the audit log but never used to authorise: the supervisor authorises the
//! *caller* by the Unix user the bus reports for its connection.
//!
//! The status travels as a JSON string rather than a D-Bus struct, like the licence
//! manager's licence: it has optional parts and will grow fields old clients must ignore.
//! It grows by new fields only, never by new variants of an existing enum, so a reader
//! built against an older contract still parses it: the licence and certificate alerts
//! added later are therefore in their own list, [`ApplianceStatus::validity_alerts`].
//!
//! Errors are D-Bus errors named `org.lifeline.Supervisor1.Error.*` ([`SupervisorError`]);
//! their message is a sentence for the person in front of the screen.
//!
//! Limits: the status is one object for the whole box; there is no history (the status page
//! shows now, not a graph).

#![forbid(unsafe_code)]

use std::fmt;

use serde::{Deserialize, Serialize};

/// How long the box shows itself after `Identify` (the panel's backlight blinks).
pub const IDENTIFY_SECONDS: u64 = 10;

/// The well-known bus name of the supervisor.
pub const BUS_NAME: &str = "org.lifeline.Supervisor1";
/// The object path of the supervisor's one object.
pub const OBJECT_PATH: &str = "/org/lifeline/Supervisor1";
/// The interface name.
pub const INTERFACE: &str = "org.lifeline.Supervisor1";
/// Environment variable naming a D-Bus address to use instead of the system bus
/// (development and tests). The same variable the licence manager reads.
pub const DBUS_ADDRESS_ENV: &str = "LIFELINE_DBUS_ADDRESS";

/// How the supervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// On the appliance: systemd runs the services.
    Appliance,
    /// On a developer's machine: the supervisor runs the services as its children.
    Development,
}

/// The judgement of the whole box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallState {
    /// Services are still coming up.
    #[default]
    Starting,
    /// Every service runs.
    Ok,
    /// Something is wrong (see `alerts`), but the box serves.
    Degraded,
    /// An update is being installed.
    Updating,
}

impl OverallState {
    pub fn as_str(self) -> &'static str {
        match self {
            OverallState::Starting => "starting",
            OverallState::Ok => "ok",
            OverallState::Degraded => "degraded",
            OverallState::Updating => "updating",
        }
    }
}

/// The state of one service, in systemd's words (`ActiveState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Active,
    Activating,
    Deactivating,
    Inactive,
    Failed,
    Reloading,
    /// The supervisor could not learn the state.
    Unknown,
}

impl ServiceState {
    /// From systemd's `ActiveState` string.
    pub fn from_systemd(s: &str) -> ServiceState {
        match s {
            "active" => ServiceState::Active,
            "activating" => ServiceState::Activating,
            "deactivating" => ServiceState::Deactivating,
            "inactive" => ServiceState::Inactive,
            "failed" => ServiceState::Failed,
            "reloading" => ServiceState::Reloading,
            _ => ServiceState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Active => "active",
            ServiceState::Activating => "activating",
            ServiceState::Deactivating => "deactivating",
            ServiceState::Inactive => "inactive",
            ServiceState::Failed => "failed",
            ServiceState::Reloading => "reloading",
            ServiceState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Lifeline service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Short name: `relay`, `license`, `panel`.
    pub name: String,
    /// The systemd unit (on the box) or the program (in development).
    pub unit: String,
    pub state: ServiceState,
    /// systemd's `SubState` (`running`, `auto-restart`, `dead`...), or the same words in
    /// development.
    pub sub_state: String,
    /// How often the service was restarted since the supervisor started watching.
    pub restarts: u32,
    /// Main process id, while one runs.
    pub pid: Option<u32>,
}

/// Memory of the host, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Usage of the data file system.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl Disk {
    /// Percent used, 0 to 100.
    pub fn used_percent(&self) -> u8 {
        if self.total_bytes == 0 {
            return 0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        u8::try_from(used.saturating_mul(100) / self.total_bytes).unwrap_or(100)
    }
}

/// A temperature sensor (hwmon).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub name: String,
    pub celsius: f64,
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Kernel name, e.g. `eth0`.
    pub name: String,
    /// Carrier / link up.
    pub up: bool,
    /// Addresses with prefix, e.g. `192.0.2.10/24`, `2001:db8::10/64`.
    pub addresses: Vec<String>,
    /// How networkd configures it: `Some(true)` by DHCP, `Some(false)` with a static
    /// address, `None` not configured by networkd (or networkd did not answer).
    pub dhcp: Option<bool>,
}

/// The relay's live counts, as it last reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCounts {
    pub rep_consoles: u32,
    pub customer_clients: u32,
    pub jump_clients: u32,
}

/// State of the software update machinery (RAUC on the box).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// RAUC's `Operation` (`idle`, `installing`), empty when unknown.
    pub operation: String,
    /// Percent done while installing.
    pub progress: Option<u8>,
    /// The slot the box booted from.
    pub booted_slot: Option<String>,
    /// Whether the supervisor marked the booted slot good after its health check
    /// (`None` while the check has not finished or no update system exists).
    pub booted_slot_marked_good: Option<bool>,
    /// RAUC's `LastError`, when not empty.
    pub last_error: Option<String>,
    /// What the health check after an update found wrong, when it failed.
    #[serde(default)]
    pub health_problem: Option<String>,
}

/// Something an admin should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A Lifeline service failed or keeps restarting.
    ServiceFailed { unit: String },
    /// A file system is nearly full.
    DiskNearlyFull { mount: String, used_percent: u8 },
    /// The licence expires soon. Not raised any more: licence and certificate alerts are in
    /// [`ApplianceStatus::validity_alerts`] ([`ValidityAlert::LicenceExpiring`]); kept so
    /// readers written against the first contract still build and parse.
    LicenceExpiring { days: u32 },
    /// The last update failed, or its health check did.
    UpdateFailed { reason: String },
}

/// An alert about the validity of the licence or of the relay's TLS certificate. Dates are
/// `YYYY-MM-DD` (UTC); `days` counts whole days from today to that date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValidityAlert {
    /// The licence's last day is `expires`, `days` from now.
    LicenceExpiring { days: u32, expires: String },
    /// The licence expired on `expired_on`: the box runs on the evaluation licence.
    LicenceExpired { expired_on: String },
    /// The box runs on the evaluation licence for another reason (none installed, altered,
    /// for another box...); `reason` is the licence manager's sentence.
    EvaluationLicence { reason: String },
    /// The relay's TLS certificate stops being valid on `expires`, `days` from now.
    CertificateExpiring { days: u32, expires: String },
    /// The relay's TLS certificate is no longer valid since `expired_on`: browsers and
    /// clients refuse it.
    CertificateExpired { expired_on: String },
}

impl ValidityAlert {
    /// Whether the box is degraded by it (it no longer does what it was bought for), rather
    /// than warned.
    pub fn degrades(&self) -> bool {
        matches!(
            self,
            ValidityAlert::LicenceExpired { .. } | ValidityAlert::CertificateExpired { .. }
        )
    }

    /// A sentence for a person (English).
    pub fn sentence(&self) -> String {
        match self {
            ValidityAlert::LicenceExpiring { days, expires } => format!(
                "The licence expires in {days} day{} ({expires}). Renew it with your vendor.",
                if *days == 1 { "" } else { "s" }
            ),
            ValidityAlert::LicenceExpired { expired_on } => format!(
                "The licence expired on {expired_on}; the appliance runs on the evaluation \
                 licence. Renew it with your vendor and upload the new file."
            ),
            ValidityAlert::EvaluationLicence { reason } => {
                format!("The appliance runs on the evaluation licence: {reason}")
            }
            ValidityAlert::CertificateExpiring { days, expires } => format!(
                "The TLS certificate expires in {days} day{} ({expires}). Install a new one \
                 before then.",
                if *days == 1 { "" } else { "s" }
            ),
            ValidityAlert::CertificateExpired { expired_on } => format!(
                "The TLS certificate expired on {expired_on}: browsers and clients refuse \
                 it. Install a new one."
            ),
        }
    }
}

/// The one status object of the box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplianceStatus {
    pub mode: Mode,
    pub state: OverallState,
    pub hostname: String,
    /// Version of the supervisor (the appliance's software version).
    pub version: String,
    /// Build identifier (commit or image build), `dev` when unknown.
    pub build: String,
    pub uptime_seconds: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    pub memory: Memory,
    pub disk: Option<Disk>,
    pub temperatures: Vec<Temperature>,
    pub interfaces: Vec<Interface>,
    /// NTP synchronisation, when known.
    pub ntp_synchronized: Option<bool>,
    /// Now, RFC 3339 in UTC.
    pub time: String,
    /// The configured time zone name, e.g. `Europe/Paris` (`UTC` when none).
    pub timezone: String,
    pub services: Vec<ServiceStatus>,
    pub relay: RelayCounts,
    /// Whether the box runs on the evaluation licence (`None`: licence manager not reached).
    pub evaluation_licence: Option<bool>,
    pub update: UpdateStatus,
    pub alerts: Vec<Alert>,
    /// Licence and certificate alerts (see the crate docs for why they are apart).
    #[serde(default)]
    pub validity_alerts: Vec<ValidityAlert>,
    /// True for [`IDENTIFY_SECONDS`] after `Identify`: the box shows itself (the panel
    /// blinks).
    #[serde(default)]
    pub identify: bool,
}

impl ApplianceStatus {
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    pub fn to_json(&self) -> String {
        // Strings, numbers and vectors always serialise (non-finite floats become null).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The same status with the fields that move by themselves (clocks, load, memory, free
    /// space, temperatures) cleared: two statuses whose `significant()` are equal need no
    /// `Changed` signal.
    pub fn significant(&self) -> ApplianceStatus {
        let mut s = self.clone();
        s.uptime_seconds = 0;
        s.load = [0.0; 3];
        s.memory = Memory::default();
        if let Some(d) = s.disk.as_mut() {
            d.available_bytes = 0;
        }
        s.temperatures.clear();
        s.time.clear();
        s
    }

    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The network modes `SetNetwork` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    Dhcp,
    Static,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Dhcp => "dhcp",
            NetworkMode::Static => "static",
        }
    }

    pub fn parse(s: &str) -> Option<NetworkMode> {
        match s {
            "dhcp" => Some(NetworkMode::Dhcp),
            "static" => Some(NetworkMode::Static),
            _ => None,
        }
    }
}

/// The errors of `org.lifeline.Supervisor1`, shared by the daemon (which replies with them)
/// and the proxy (which turns replies back into them). Each message is a sentence for a
/// person.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.lifeline.Supervisor1.Error")]
pub enum SupervisorError {
    /// Not an error of the service: the call failed on the way (bus gone, timeout...).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's Unix user may not ask for this.
    NotAuthorised(String),
    /// Too many actions in a short time.
    RateLimited(String),
    /// No Lifeline service has that name.
    UnknownService(String),
    /// An argument is not acceptable.
    InvalidArgument(String),
    /// This action cannot be done in this mode (e.g. network changes in development).
    Unsupported(String),
    /// The supervisor tried and failed (systemd or logind refused, a timeout).
    Failed(String),
}

impl SupervisorError {
    /// The sentence to show a person.
    pub fn user_message(&self) -> String {
        match self {
            SupervisorError::ZBus(e) => format!(
                "The appliance supervisor could not be reached ({e}). It may still be \
                 starting: try again in a minute."
            ),
            SupervisorError::NotAuthorised(m)
            | SupervisorError::RateLimited(m)
            | SupervisorError::UnknownService(m)
            | SupervisorError::InvalidArgument(m)
            | SupervisorError::Unsupported(m)
            | SupervisorError::Failed(m) => m.clone(),
        }
    }
}

/// Client proxy for `org.lifeline.Supervisor1`. Build it with
/// `Supervisor1Proxy::new(&connection).await?`.
#[zbus::proxy(
    interface = "org.lifeline.Supervisor1",
    default_service = "org.lifeline.Supervisor1",
    default_path = "/org/lifeline/Supervisor1"
)]
pub trait Supervisor1 {
    /// The status now, as JSON; see [`Supervisor1Proxy::status`].
    fn get_status(&self) -> Result<String, SupervisorError>;

    /// Restart a Lifeline service by its short name.
    fn restart_service(&self, name: &str, actor: &str) -> Result<(), SupervisorError>;

    fn reboot(&self, actor: &str) -> Result<(), SupervisorError>;

    fn power_off(&self, actor: &str) -> Result<(), SupervisorError>;

    fn identify(&self, actor: &str) -> Result<(), SupervisorError>;

    /// `mode` is `dhcp` or `static`; `address` and `prefix` are used for `static`.
    fn set_network(
        &self,
        iface: &str,
        mode: &str,
        address: &str,
        prefix: u8,
        actor: &str,
    ) -> Result<(), SupervisorError>;

    /// The relay's live counts (only the relay's user may call it).
    fn report_relay(
        &self,
        rep_consoles: u32,
        customer_clients: u32,
        jump_clients: u32,
    ) -> Result<(), SupervisorError>;

    /// Emitted when anything but the clocks changed; carries the new status as JSON.
    #[zbus(signal)]
    fn changed(&self, status: &str) -> zbus::Result<()>;
}

impl Supervisor1Proxy<'_> {
    /// The status now, parsed.
    pub async fn status(&self) -> Result<ApplianceStatus, SupervisorError> {
        let json = self.get_status().await?;
        parse_status(&json)
    }
}

/// Parse a status JSON with an error a person can act on.
pub fn parse_status(json: &str) -> Result<ApplianceStatus, SupervisorError> {
    ApplianceStatus::from_json(json).map_err(|e| {
        SupervisorError::Failed(format!(
            "The supervisor sent a status this program cannot read ({e}). Update the \
             appliance software so all its services are the same version."
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> ApplianceStatus {
        ApplianceStatus {
            mode: Mode::Development,
            state: OverallState::Ok,
            hostname: "box".into(),
            version: "0.1.0".into(),
            build: "dev".into(),
            uptime_seconds: 12,
            load: [0.5, 0.25, 0.0],
            memory: Memory {
                total_bytes: 100,
                available_bytes: 50,
            },
            disk: Some(Disk {
                path: "/data".into(),
                total_bytes: 1000,
                available_bytes: 50,
            }),
            temperatures: vec![Temperature {
                name: "cpu".into(),
                celsius: 41.5,
            }],
            interfaces: vec![Interface {
                name: "eth0".into(),
                up: true,
                addresses: vec!["192.0.2.1/24".into()],
                dhcp: Some(true),
            }],
            ntp_synchronized: Some(true),
            time: "2026-01-01T00:00:00Z".into(),
            timezone: "UTC".into(),
            services: vec![ServiceStatus {
                name: "relay".into(),
                unit: "lifeline-relay.service".into(),
                state: ServiceState::Active,
                sub_state: "running".into(),
                restarts: 0,
                pid: Some(7),
            }],
            relay: RelayCounts::default(),
            evaluation_licence: Some(false),
            update: UpdateStatus::default(),
            alerts: vec![Alert::DiskNearlyFull {
                mount: "/data".into(),
                used_percent: 95,
            }],
            validity_alerts: vec![ValidityAlert::CertificateExpiring {
                days: 12,
                expires: "2026-01-13".into(),
            }],
            identify: false,
        }
    }

    #[test]
    fn json_round_trips() {
        let s = sample();
        let json = s.to_json();
        assert!(json.contains("\"state\":\"ok\""), "{json}");
        assert!(json.contains("\"kind\":\"disk_nearly_full\""), "{json}");
        assert_eq!(ApplianceStatus::from_json(&json).unwrap(), s);
        assert!(parse_status("{").is_err());
    }

    #[test]
    fn older_and_newer_readers() {
        // A status without the fields added later (an older supervisor) still parses.
        let mut old: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("validity_alerts");
        o.remove("identify");
        let s = ApplianceStatus::from_json(&old.to_string()).unwrap();
        assert!(s.validity_alerts.is_empty() && !s.identify);
        // Fields a newer supervisor adds are ignored.
        if let Some(o) = old.as_object_mut() {
            o.insert("from_the_future".into(), serde_json::json!([1, 2]));
        }
        assert!(ApplianceStatus::from_json(&old.to_string()).is_ok());
        let json = sample().to_json();
        assert!(
            json.contains(r#"{"kind":"certificate_expiring","days":12,"expires":"2026-01-13"}"#),
            "{json}"
        );
    }

    #[test]
    fn validity_alerts_sentences_and_weight() {
        let a = ValidityAlert::LicenceExpiring {
            days: 1,
            expires: "2026-01-02".into(),
        };
        assert_eq!(
            a.sentence(),
            "The licence expires in 1 day (2026-01-02). Renew it with your vendor."
        );
        assert!(!a.degrades());
        let e = ValidityAlert::CertificateExpired {
            expired_on: "2026-01-01".into(),
        };
        assert!(e.degrades() && e.sentence().contains("2026-01-01"));
        assert!(
            !ValidityAlert::EvaluationLicence {
                reason: "No licence is installed.".into()
            }
            .degrades()
        );
    }

    #[test]
    fn significant_ignores_clocks_only() {
        let a = sample();
        let mut b = a.clone();
        b.uptime_seconds += 5;
        b.load[0] = 3.0;
        b.time = "2026-01-01T00:00:05Z".into();
        b.temperatures[0].celsius = 50.0;
        assert_eq!(a.significant(), b.significant());
        b.services[0].state = ServiceState::Failed;
        assert_ne!(a.significant(), b.significant());
    }

    #[test]
    fn disk_percent_and_states() {
        assert_eq!(sample().disk.unwrap().used_percent(), 95);
        assert_eq!(Disk::default().used_percent(), 0);
        for s in ["active", "activating", "failed", "inactive"] {
            assert_eq!(ServiceState::from_systemd(s).as_str(), s);
        }
        assert_eq!(ServiceState::from_systemd("x"), ServiceState::Unknown);
        assert_eq!(NetworkMode::parse("dhcp"), Some(NetworkMode::Dhcp));
        assert_eq!(NetworkMode::parse("x"), None);
    }
}

/// The front panel's mirror: `org.lifeline.Panel1` at `/org/lifeline/Panel1`, served by
/// `lifeline-panel` so the appliance admin page can show the panel's picture and press its
/// keys.
///
/// | member | signature | meaning |
/// | --- | --- | --- |
/// | `Picture() -> ay` | method | the panel's current picture as PNG |
/// | `PressKey(key s)` | method | `up`, `down`, `left`, `right`, `enter` or `exit` |
/// | `PictureChanged()` | signal | the picture changed |
///
/// Only the relay's user may call it (D-Bus policy on the box); the relay authenticates and
/// audits the person who clicked.
pub mod panel {
    pub const BUS_NAME: &str = "org.lifeline.Panel1";
    pub const OBJECT_PATH: &str = "/org/lifeline/Panel1";
    /// The key names `PressKey` accepts.
    pub const KEYS: [&str; 6] = ["up", "down", "left", "right", "enter", "exit"];

    /// Client proxy for `org.lifeline.Panel1`.
    #[zbus::proxy(
        interface = "org.lifeline.Panel1",
        default_service = "org.lifeline.Panel1",
        default_path = "/org/lifeline/Panel1"
    )]
    pub trait Panel1 {
        fn picture(&self) -> zbus::fdo::Result<Vec<u8>>;
        fn press_key(&self, key: &str) -> zbus::fdo::Result<()>;
        #[zbus(signal)]
        fn picture_changed(&self) -> zbus::Result<()>;
    }
}
