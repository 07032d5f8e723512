//! What the panel shows: the appliance status, and where it comes from.
//!
//! # Design
//!
//! [`Status`] is a plain data struct with serde derives; the supervisor's D-Bus status object
//! is mapped onto it by [`crate::bus::to_panel`]. The panel never computes health itself; it
//! only reflects what it is given. [`StatusSource`] is the seam for that: the service asks
//! its source for the current status on every turn of its loop and redraws when it changed.
//! [`crate::bus::SupervisorSource`] follows the supervisor; [`StartingSource`] always answers
//! "not known yet", which shows the "starting" screen; [`FixedSource`] serves a given status
//! (for tests and the emulator demo).
//!
//! # Limits
//!
//! - Only the fields the screens use. Strings are shown as given, cut to the display width.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The overall state of the appliance, as the supervisor judges it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Everything runs.
    #[default]
    Ok,
    /// Something is wrong (see the alerts) but the box serves.
    Degraded,
    /// An update is being installed (see `update_progress`).
    Updating,
}

/// An address on an interface, with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Kernel name, e.g. `eth0`.
    pub name: String,
    /// Carrier / link up.
    pub up: bool,
    /// Configured addresses.
    pub addresses: Vec<Address>,
    /// Addressed by DHCP (`Some(true)`) or statically (`Some(false)`); `None` when the box
    /// does not configure it (no network setting applies to it).
    pub dhcp: Option<bool>,
}

impl Interface {
    /// How it is addressed, in a word.
    pub fn mode_word(&self) -> &'static str {
        match self.dhcp {
            Some(true) => "DHCP",
            Some(false) => "static",
            None => "not set",
        }
    }
}

/// Something an admin should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A Lifeline unit failed.
    ServiceFailed { unit: String },
    /// A file system is nearly full.
    DiskNearlyFull { mount: String, used_percent: u8 },
    /// The TLS certificate expires soon.
    CertificateExpiring { days: u32 },
    /// The TLS certificate has expired.
    CertificateExpired,
    /// The licence expires soon.
    LicenceExpiring { days: u32 },
    /// The licence has expired (the box runs on the evaluation licence).
    LicenceExpired,
    /// The box runs on the evaluation licence; `reason` says why.
    EvaluationLicence { reason: String },
    /// The last update failed.
    UpdateFailed { reason: String },
}

impl Alert {
    /// A sentence for wide displays.
    pub fn long(&self) -> String {
        match self {
            Alert::ServiceFailed { unit } => format!("Service failed: {unit}"),
            Alert::DiskNearlyFull {
                mount,
                used_percent,
            } => {
                format!("Disk {mount} is {used_percent}% full")
            }
            Alert::CertificateExpiring { days } => {
                format!("Certificate expires in {days} d")
            }
            Alert::CertificateExpired => "Certificate has expired".to_string(),
            Alert::LicenceExpiring { days } => format!("Licence expires in {days} d"),
            Alert::LicenceExpired => "Licence has expired".to_string(),
            Alert::EvaluationLicence { reason } => format!("Evaluation licence: {reason}"),
            Alert::UpdateFailed { reason } => format!("Update failed: {reason}"),
        }
    }

    /// A few words for narrow displays.
    pub fn short(&self) -> String {
        match self {
            Alert::ServiceFailed { unit } => format!("FAIL {unit}"),
            Alert::DiskNearlyFull {
                mount,
                used_percent,
            } => {
                format!("Disk {mount} {used_percent}%")
            }
            Alert::CertificateExpiring { days } => format!("Cert expires {days}d"),
            Alert::CertificateExpired => "Cert expired".to_string(),
            Alert::LicenceExpiring { days } => format!("Licence exp {days}d"),
            Alert::LicenceExpired => "Licence expired".to_string(),
            Alert::EvaluationLicence { .. } => "Eval licence".to_string(),
            Alert::UpdateFailed { .. } => "Update failed".to_string(),
        }
    }
}

/// Everything the status screens show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub hostname: String,
    pub interfaces: Vec<Interface>,
    pub state: State,
    /// Representatives logged in.
    pub reps: u32,
    /// Customers in sessions or queues.
    pub customers: u32,
    /// Jump clients connected.
    pub jump_clients: u32,
    pub alerts: Vec<Alert>,
    /// Percent of the update installed, while one runs.
    pub update_progress: Option<u8>,
    /// Running on an evaluation licence.
    pub evaluation_licence: bool,
    /// The box was asked to show itself (Identify): the backlight blinks.
    #[serde(default)]
    pub identify: bool,
}

impl Status {
    /// The address to type in a browser: the first address of the first interface that is up,
    /// IPv4 before IPv6.
    pub fn url(&self) -> Option<String> {
        let up = || self.interfaces.iter().filter(|i| i.up);
        let v4 = up()
            .flat_map(|i| i.addresses.iter())
            .find(|a| a.addr.is_ipv4());
        let any = v4.or_else(|| up().flat_map(|i| i.addresses.iter()).next())?;
        Some(match any.addr {
            IpAddr::V4(a) => format!("https://{a}/"),
            IpAddr::V6(a) => format!("https://[{a}]/"),
        })
    }

    /// The state word shown on the status screen: UPDATING over DEGRADED over EVALUATION
    /// LICENCE over OK.
    pub fn state_label(&self) -> &'static str {
        match self.state {
            State::Updating => "UPDATING",
            State::Degraded => "DEGRADED",
            State::Ok if self.evaluation_licence => "EVALUATION LICENCE",
            State::Ok => "OK",
        }
    }

    /// A short state word for a title bar.
    pub fn state_short(&self) -> &'static str {
        match self.state {
            State::Updating => "UPDATING",
            State::Degraded => "DEGRADED",
            State::Ok if self.evaluation_licence => "EVAL",
            State::Ok => "OK",
        }
    }
}

/// Where the panel gets the status from. `None` means "not known yet" (the supervisor has not
/// answered): the panel shows the "starting" screen.
pub trait StatusSource: Send {
    fn current(&mut self) -> Option<Status>;
}

/// The source used until the supervisor's D-Bus client exists: always "starting".
#[derive(Debug, Default)]
pub struct StartingSource;

impl StatusSource for StartingSource {
    fn current(&mut self) -> Option<Status> {
        None
    }
}

/// A source whose status can be set from elsewhere (tests, the emulator demo).
#[derive(Clone, Debug, Default)]
pub struct FixedSource(pub Arc<Mutex<Option<Status>>>);

impl FixedSource {
    pub fn new(status: Option<Status>) -> Self {
        FixedSource(Arc::new(Mutex::new(status)))
    }

    pub fn set(&self, status: Option<Status>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

impl StatusSource for FixedSource {
    fn current(&mut self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A status for demos, tests and golden files.
pub fn sample() -> Status {
    Status {
        hostname: "lifeline-b300".into(),
        interfaces: vec![
            Interface {
                name: "eth0".into(),
                up: true,
                addresses: vec![
                    Address {
                        addr: "192.0.2.10".parse().expect("literal"),
                        prefix: 24,
                    },
                    Address {
                        addr: "2001:db8::10".parse().expect("literal"),
                        prefix: 64,
                    },
                ],
                dhcp: Some(true),
            },
            Interface {
                name: "eth1".into(),
                up: false,
                addresses: vec![],
                dhcp: None,
            },
        ],
        state: State::Ok,
        reps: 3,
        customers: 12,
        jump_clients: 40,
        alerts: vec![],
        update_progress: None,
        evaluation_licence: false,
        identify: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_prefers_ipv4_of_an_up_interface() {
        let mut s = sample();
        assert_eq!(s.url().as_deref(), Some("https://192.0.2.10/"));
        s.interfaces[0].addresses.remove(0);
        assert_eq!(s.url().as_deref(), Some("https://[2001:db8::10]/"));
        s.interfaces[0].up = false;
        assert_eq!(s.url(), None);
    }

    #[test]
    fn state_label_order() {
        let mut s = sample();
        assert_eq!(s.state_label(), "OK");
        s.evaluation_licence = true;
        assert_eq!(s.state_label(), "EVALUATION LICENCE");
        s.state = State::Degraded;
        assert_eq!(s.state_label(), "DEGRADED");
    }

    #[test]
    fn serde_round_trip() {
        let mut s = sample();
        s.alerts.push(Alert::DiskNearlyFull {
            mount: "/data".into(),
            used_percent: 93,
        });
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<Status>(&text).unwrap(), s);
    }
}
