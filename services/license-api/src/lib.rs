//! The contract of the Lifeline licence manager (`lifeline-license`), for its clients.
//!
//! The licence manager owns the signed licence file and the seat accounting of the box. Other
//! services (the relay first) talk to it over D-Bus as `org.lifeline.License1`; this crate
//! holds everything they need to do so without linking the daemon: the licence types, the
//! seat and lease types, the D-Bus names, the typed D-Bus errors and a zbus client proxy.
//!
//! # The D-Bus interface `org.lifeline.License1` at `/org/lifeline/License1`
//!
//! | member | signature | meaning |
//! | --- | --- | --- |
//! | `CheckoutSeat(kind s, holder s) -> (ssst)` | method | take a seat; returns a [`Lease`] |
//! | `Renew(lease_id s) -> (ssst)` | method | push a lease's expiry to now + TTL |
//! | `Release(lease_id s) -> b` | method | give a seat back; `false` if it was not held |
//! | `Counts() -> (uuuuuu)` | method | [`Counts`]: seats in use and limits |
//! | `Reload()` | method | re-read the licence file (after an admin installed a new one) |
//! | `InstallLicence(licence s, actor s) -> s` | method | verify a licence file's text like a loaded file (trusted signature, this box's serial, dates; at most [`MAX_LICENCE_BYTES`]) and, only if accepted, write it atomically over the licence file and reload; returns the new [`LicenceStatus`] JSON, or `Error.LicenceRefused` with the sentence why (nothing changed). `actor` (who asked, e.g. `web:alice`) goes to the log |
//! | `Licence` `s` | read-only property | the licence in force, as JSON ([`LicenceStatus`]) |
//! | `Refusal` `s` | read-only property | why the installed licence was refused, as JSON ([`Refusal`]); `null` when it is in force |
//! | `Changed(counts (uuuuuu))` | signal | emitted on every licence or count change |
//!
//! Seat kinds on the wire are the strings `rep`, `jump-active`, `jump-passive`
//! ([`SeatKind`]); a lease's `expires_at` is seconds since the Unix epoch (UTC).
//!
//! The licence is passed as a JSON string (the serde form of [`LicenceStatus`]) rather than
//! a D-Bus struct: it has optional fields and dates, and it will grow fields (edition
//! features) that old clients must be able to ignore. Parse it with [`LicenceStatus::from_json`].
//!
//! Errors are D-Bus errors named `org.lifeline.License1.Error.*` ([`LicenseError`]); their
//! message is a sentence written for the person in front of the screen, so a client shows it
//! as it is.
//!
//! Limits: leases are not tied to the D-Bus connection of the caller; a holder that vanishes
//! without releasing keeps its seat until the lease's time-to-live runs out.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;
use zvariant::Type;

/// The well-known bus name of the licence manager.
pub const BUS_NAME: &str = "org.lifeline.License1";
/// The object path of the licence manager's one object.
pub const OBJECT_PATH: &str = "/org/lifeline/License1";
/// The interface name.
pub const INTERFACE: &str = "org.lifeline.License1";
/// Environment variable naming a D-Bus address to use instead of the system bus
/// (development and tests).
pub const DBUS_ADDRESS_ENV: &str = "LIFELINE_DBUS_ADDRESS";

/// Largest licence file text `InstallLicence` accepts (checked before parsing).
pub const MAX_LICENCE_BYTES: usize = 64 * 1024;

/// The administrator's sentence for licence text of `len` bytes, over [`MAX_LICENCE_BYTES`]
/// (said by the licence manager and by a caller that checks the size first).
pub fn too_big_sentence(len: usize) -> String {
    format!(
        "This file is {len} bytes long; a licence file is at most {MAX_LICENCE_BYTES} bytes. \
         Upload the licence file you received from your vendor."
    )
}

/// Representative seats of the built-in evaluation licence.
pub const EVALUATION_REP_SEATS: u32 = 1;
/// Active and passive jump-client limits of the built-in evaluation licence.
pub const EVALUATION_JUMP_LIMIT: u32 = 5;

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// `Option<Date>` as `"YYYY-MM-DD"` or absent/null. (Written out because the ready-made
/// optional form rejects `null` inside a flattened struct.)
mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::iso_date::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Option::<String>::deserialize(d)?
            .map(|s| Date::parse(&s, format).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The box models a licence can be issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    B200,
    B300,
    B400,
}

impl Model {
    /// The default limit for active and for passive jump clients on this model.
    pub fn default_jump_limit(self) -> u32 {
        match self {
            Model::B200 => 1_000,
            Model::B300 => 5_000,
            Model::B400 => 10_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Model::B200 => "b200",
            Model::B300 => "b300",
            Model::B400 => "b400",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Model {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "b200" => Ok(Model::B200),
            "b300" => Ok(Model::B300),
            "b400" => Ok(Model::B400),
            _ => Err(ParseNameError {
                what: "model",
                got: s.to_owned(),
                expected: "b200, b300 or b400",
            }),
        }
    }
}

/// The product edition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    Standard,
    Enterprise,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Standard => "standard",
            Edition::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Edition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Edition {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Edition::Standard),
            "enterprise" => Ok(Edition::Enterprise),
            _ => Err(ParseNameError {
                what: "edition",
                got: s.to_owned(),
                expected: "standard or enterprise",
            }),
        }
    }
}

/// A name (model, edition, seat kind) that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{got}\": expected {expected}")]
pub struct ParseNameError {
    pub what: &'static str,
    pub got: String,
    pub expected: &'static str,
}

/// What a licence grants. This is the signed payload of a licence file, and the licence in
/// force (inside [`LicenceStatus`]) when the box runs on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// The appliance serial number this licence is bound to.
    pub serial: String,
    pub model: Model,
    pub edition: Edition,
    /// Concurrent representative seats.
    pub rep_seats: u32,
    /// Concurrently connected active jump clients.
    pub jump_active_limit: u32,
    /// Installed passive jump clients.
    pub jump_passive_limit: u32,
    /// The day the licence was issued (UTC).
    #[serde(with = "iso_date")]
    pub issued: Date,
    /// The last day (UTC) on which the licence is valid; `None` never expires. The vendor
    /// tool always sets it.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub expires: Option<Date>,
    /// The last day of the maintenance (updates) contract, if any.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub maintenance_until: Option<Date>,
    /// The customer's name as printed on the status page.
    #[serde(default)]
    pub customer: String,
}

impl Licence {
    /// The limit for a kind of seat.
    pub fn limit(&self, kind: SeatKind) -> u32 {
        match kind {
            SeatKind::Rep => self.rep_seats,
            SeatKind::JumpActive => self.jump_active_limit,
            SeatKind::JumpPassive => self.jump_passive_limit,
        }
    }
}

/// The licence in force, as the daemon reports it (the `Licence` property, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenceStatus {
    #[serde(flatten)]
    pub licence: Licence,
    /// True when the box runs on the built-in evaluation licence because no valid licence
    /// is installed. The UI says so everywhere.
    pub evaluation: bool,
    /// Why the installed licence was refused (a sentence for a person), when `evaluation`.
    #[serde(default)]
    pub reason: Option<String>,
}

impl LicenceStatus {
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and dates always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why the installed licence file was refused (the `Refusal` property, JSON), for programs
/// that act on the cause: the supervisor raises a "licence expired" alert for
/// [`Refusal::Expired`] and an "evaluation licence" alert for the others. People read
/// [`LicenceStatus::reason`] instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// No licence file is installed.
    Missing,
    /// The file exists but cannot be read.
    Unreadable,
    /// The file is not a licence.
    Malformed,
    /// Signed with a key this build does not trust.
    UnknownKey,
    /// Changed after it was signed (the signature does not match).
    Tampered,
    /// Issued for another appliance.
    WrongSerial,
    /// The appliance's own serial number cannot be read.
    SerialUnknown,
    /// Expired on `expired_on` (its last valid day).
    Expired {
        #[serde(with = "iso_date")]
        expired_on: Date,
    },
}

impl Refusal {
    /// `null` (a licence is in force) or the refusal, as the `Refusal` property carries it.
    pub fn to_json(refusal: Option<&Refusal>) -> String {
        // Unit variants and a date always serialise.
        serde_json::to_string(&refusal).unwrap_or_else(|_| "null".into())
    }

    pub fn from_json(s: &str) -> Result<Option<Refusal>, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// The kinds of seat the licence limits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Type,
)]
#[serde(rename_all = "kebab-case")]
#[zvariant(signature = "s")]
pub enum SeatKind {
    /// A representative logged in to the console.
    Rep,
    /// A jump client currently in a session.
    JumpActive,
    /// An installed jump client.
    JumpPassive,
}

impl SeatKind {
    pub const ALL: [SeatKind; 3] = [SeatKind::Rep, SeatKind::JumpActive, SeatKind::JumpPassive];

    pub fn as_str(self) -> &'static str {
        match self {
            SeatKind::Rep => "rep",
            SeatKind::JumpActive => "jump-active",
            SeatKind::JumpPassive => "jump-passive",
        }
    }

    /// Plural noun used in messages to people ("representative licences").
    pub fn licence_noun(self) -> &'static str {
        match self {
            SeatKind::Rep => "representative licences",
            SeatKind::JumpActive => "active jump client licences",
            SeatKind::JumpPassive => "passive jump client licences",
        }
    }
}

impl fmt::Display for SeatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SeatKind {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rep" => Ok(SeatKind::Rep),
            "jump-active" => Ok(SeatKind::JumpActive),
            "jump-passive" => Ok(SeatKind::JumpPassive),
            _ => Err(ParseNameError {
                what: "seat kind",
                got: s.to_owned(),
                expected: "rep, jump-active or jump-passive",
            }),
        }
    }
}

/// A seat held by someone until `expires_at` unless renewed. D-Bus signature `(ssst)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Lease {
    /// Opaque identifier to renew or release the lease with.
    pub id: String,
    pub kind: SeatKind,
    /// Who holds the seat (e.g. `rep:alice` or a jump client id); checking out again with
    /// the same kind and holder returns the same lease.
    pub holder: String,
    /// Seconds since the Unix epoch (UTC) after which the seat returns by itself.
    pub expires_at: u64,
}

/// Seats in use and limits. D-Bus signature `(uuuuuu)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Counts {
    pub rep_in_use: u32,
    pub rep_limit: u32,
    pub jump_active_in_use: u32,
    pub jump_active_limit: u32,
    pub jump_passive_in_use: u32,
    pub jump_passive_limit: u32,
}

impl Counts {
    pub fn in_use(&self, kind: SeatKind) -> u32 {
        match kind {
            SeatKind::Rep => self.rep_in_use,
            SeatKind::JumpActive => self.jump_active_in_use,
            SeatKind::JumpPassive => self.jump_passive_in_use,
        }
    }

    pub fn limit(&self, kind: SeatKind) -> u32 {
        match kind {
            SeatKind::Rep => self.rep_limit,
            SeatKind::JumpActive => self.jump_active_limit,
            SeatKind::JumpPassive => self.jump_passive_limit,
        }
    }
}

/// The errors of `org.lifeline.License1`, shared by the daemon (which replies with them) and
/// the proxy (which turns replies back into them). Each message is a sentence for a person.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.lifeline.License1.Error")]
pub enum LicenseError {
    /// Not an error of the service: the call failed on the way (bus gone, timeout...).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Every seat of this kind is taken.
    SeatsExhausted(String),
    /// The lease is not held (it expired or was released).
    UnknownLease(String),
    /// A caller's argument is not acceptable (unknown seat kind, empty holder).
    InvalidArgument(String),
    /// The service could not do what was asked (e.g. it could not save its state).
    Failed(String),
    /// `InstallLicence`: the licence was not accepted (not a licence, altered, untrusted
    /// key, another appliance, expired, too big); nothing was changed.
    LicenceRefused(String),
}

impl LicenseError {
    /// The sentence to show a person: the service's message, or a plain one when the
    /// licence manager could not be reached.
    pub fn user_message(&self) -> String {
        match self {
            LicenseError::ZBus(e) => format!(
                "The licence service of this appliance could not be reached ({e}). \
                 Try again in a minute; if it persists, check the appliance status page."
            ),
            LicenseError::SeatsExhausted(m)
            | LicenseError::UnknownLease(m)
            | LicenseError::InvalidArgument(m)
            | LicenseError::Failed(m)
            | LicenseError::LicenceRefused(m) => m.clone(),
        }
    }
}

/// Client proxy for `org.lifeline.License1`. Build it with
/// `License1Proxy::new(&connection).await?` (default service name and path are set).
#[zbus::proxy(
    interface = "org.lifeline.License1",
    default_service = "org.lifeline.License1",
    default_path = "/org/lifeline/License1"
)]
pub trait License1 {
    /// Take a seat of `kind` (`rep`, `jump-active`, `jump-passive`) for `holder`.
    fn checkout_seat(&self, kind: SeatKind, holder: &str) -> Result<Lease, LicenseError>;

    /// Extend a lease by the service's time-to-live.
    fn renew(&self, lease_id: &str) -> Result<Lease, LicenseError>;

    /// Give a seat back. Returns whether the lease was held.
    fn release(&self, lease_id: &str) -> Result<bool, LicenseError>;

    /// Seats in use and limits.
    fn counts(&self) -> Result<Counts, LicenseError>;

    /// Re-read the licence file.
    fn reload(&self) -> Result<(), LicenseError>;

    /// Verify `licence` (a licence file's text) and, if accepted, install it and reload;
    /// returns the new licence in force as JSON ([`LicenceStatus::from_json`]). `actor`
    /// names who asked, for the log.
    fn install_licence(&self, licence: &str, actor: &str) -> Result<String, LicenseError>;

    /// The licence in force as JSON; see [`LicenceStatus::from_json`]. Read from the service
    /// every time (not from the proxy's cache, which lags behind a `Changed` signal).
    #[zbus(property(emits_changed_signal = "false"))]
    fn licence(&self) -> zbus::Result<String>;

    /// Why the installed licence was refused, as JSON; see [`Refusal::from_json`]. Read
    /// from the service every time, like [`licence`](Self::licence).
    #[zbus(property(emits_changed_signal = "false"))]
    fn refusal(&self) -> zbus::Result<String>;

    /// Emitted on every licence or count change.
    #[zbus(signal)]
    fn changed(&self, counts: Counts) -> zbus::Result<()>;
}

impl License1Proxy<'_> {
    /// Why the installed licence was refused (`None`: the licence in force is a real one).
    pub async fn refusal_kind(&self) -> Result<Option<Refusal>, LicenseError> {
        let json = self.refusal().await?;
        Refusal::from_json(&json).map_err(|e| {
            LicenseError::Failed(format!(
                "The licence service sent a refusal this program cannot read ({e}). \
                 Update the appliance software so all its services are the same version."
            ))
        })
    }

    /// The licence in force, parsed.
    pub async fn licence_status(&self) -> Result<LicenceStatus, LicenseError> {
        let json = self.licence().await?;
        LicenceStatus::from_json(&json).map_err(|e| {
            LicenseError::Failed(format!(
                "The licence service sent a licence this program cannot read ({e}). \
                 Update the appliance software so all its services are the same version."
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn seat_kind_round_trips() {
        for k in SeatKind::ALL {
            assert_eq!(k.as_str().parse::<SeatKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("admin".parse::<SeatKind>().is_err());
    }

    #[test]
    fn licence_status_json_round_trips() {
        let s = LicenceStatus {
            licence: Licence {
                serial: "LL-0001".into(),
                model: Model::B300,
                edition: Edition::Enterprise,
                rep_seats: 6,
                jump_active_limit: 5000,
                jump_passive_limit: 5000,
                issued: date!(2026 - 01 - 02),
                expires: Some(date!(2027 - 01 - 02)),
                maintenance_until: None,
                customer: "Université".into(),
            },
            evaluation: false,
            reason: None,
        };
        let json = s.to_json();
        assert!(json.contains("\"expires\":\"2027-01-02\""), "{json}");
        assert!(json.contains("\"model\":\"b300\""), "{json}");
        assert_eq!(LicenceStatus::from_json(&json).unwrap(), s);
        let mut no_dates = s.clone();
        no_dates.licence.expires = None;
        let json = no_dates.to_json();
        assert!(!json.contains("expires"), "{json}");
        assert_eq!(LicenceStatus::from_json(&json).unwrap(), no_dates);
        let with_null = json.replace("\"evaluation\"", "\"expires\":null,\"evaluation\"");
        assert_eq!(LicenceStatus::from_json(&with_null).unwrap(), no_dates);
    }

    #[test]
    fn refusal_json_round_trips() {
        assert_eq!(Refusal::to_json(None), "null");
        assert_eq!(Refusal::from_json("null").unwrap(), None);
        let expired = Refusal::Expired {
            expired_on: date!(2021 - 01 - 01),
        };
        let json = Refusal::to_json(Some(&expired));
        assert_eq!(json, r#"{"kind":"expired","expired_on":"2021-01-01"}"#);
        assert_eq!(Refusal::from_json(&json).unwrap(), Some(expired));
        assert_eq!(
            Refusal::from_json(r#"{"kind":"tampered"}"#).unwrap(),
            Some(Refusal::Tampered)
        );
        assert!(Refusal::from_json(r#"{"kind":"bored"}"#).is_err());
    }

    #[test]
    fn a_refused_licence_is_a_named_error_with_its_sentence() {
        use zbus::DBusError as _;
        let e = LicenseError::LicenceRefused("This licence expired on 2021-01-01.".into());
        assert_eq!(
            e.name().as_str(),
            "org.lifeline.License1.Error.LicenceRefused"
        );
        assert_eq!(e.user_message(), "This licence expired on 2021-01-01.");
    }

    #[test]
    fn dbus_signatures() {
        assert_eq!(Lease::SIGNATURE.to_string(), "(ssst)");
        assert_eq!(Counts::SIGNATURE.to_string(), "(uuuuuu)");
    }
}
