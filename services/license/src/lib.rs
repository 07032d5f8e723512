//! `lifeline-license`: the Lifeline licence manager.
//!
//! It verifies the signed licence file of the box and owns seat accounting, and serves both
//! on D-Bus as `org.lifeline.License1` (the contract, types and client proxy are in the
//! `lifeline-license-api` crate). The same binary carries the vendor-side tools that make
//! keys and licences.
//!
//! Layout:
//! - [`env`]: the one place the environment, the factory data and DMI are read;
//! - [`keys`]: trusted public keys (vendor keys always, the development key only in debug
//!   builds or with the `dev-key` feature), key ids, key files;
//! - [`licence_file`]: the licence file format, signing, verification, evaluation licence;
//! - [`seats`]: leases, limits and their atomic persistence;
//! - [`service`]: the D-Bus object and the daemon's loop (sweep timer, watchdog);
//! - [`cli`]: the command line (`serve`, `issue`, `verify`, `keygen`) and exit codes.
//!
//! Keys: the vendor's public key (`vendor-keys/vendor-2026.pub.pem`, key id
//! `43eaa263d979315c`) is built into every build ([`keys::VENDOR_KEYS_PEM`]). Its private
//! half is held by the vendor offline and is not in this repository: production licences are
//! issued with `lifeline-license issue --key <vendor key file>` on the vendor's side. Tests
//! and development use the development key (`dev-keys/`), trusted only in debug builds.
//!
//! Limits: every lease change
//! rewrites the whole lease file, which is fine for rep seats and active jump clients but
//! not for ten thousand passive jump clients renewing every minute.

#![forbid(unsafe_code)]

pub mod cli;
pub mod env;
pub mod keys;
pub mod licence_file;
pub mod seats;
pub mod service;

use time::Date;

/// `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parse `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), format)
        .map_err(|_| format!("\"{s}\" is not a date of the form YYYY-MM-DD"))
}
