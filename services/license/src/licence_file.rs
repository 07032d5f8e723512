//! The licence file: format, signing (vendor side) and verification (appliance side).
//!
//! # Format
//!
//! A licence file is a small JSON object (UTF-8, at most 64 KiB):
//!
//! ```json
//! {
//!   "format": "lifeline-licence/1",
//!   "key_id": "<16 hex digits: the signing key's id, see crate::keys>",
//!   "payload": "<standard base64 of the payload bytes>",
//!   "signature": "<standard base64 of the 64-byte ed25519 signature>"
//! }
//! ```
//!
//! The payload bytes are the JSON form of [`Licence`] (`serial`, `model`, `edition`,
//! `rep_seats`, `jump_active_limit`, `jump_passive_limit`, `issued`, `expires`,
//! `maintenance_until`, `customer`; dates as `YYYY-MM-DD`). The signature is ed25519 over
//! `"lifeline-licence/1\n"` followed by the payload bytes, so a signature made for anything
//! else with the same key is never a valid licence. The payload is carried base64-encoded so
//! the signed bytes are exactly the bytes verified, whatever JSON tools do to the envelope.
//!
//! A licence is valid through the whole of its `expires` day (UTC).
//!
//! # Verification order
//!
//! envelope → key id known → signature → payload → serial → expiry. Each refusal is a
//! distinct [`VerifyError`] whose message says what is wrong and what to do.
//!
//! # Installing
//!
//! [`install`] (behind the D-Bus method `InstallLicence`) verifies new file bytes with the
//! same check as a loaded file ([`verify_for_box`]) and only then replaces the licence file
//! atomically (temporary file in the same folder, fsync, rename, folder fsync), keeping the
//! old file's mode. A refused or unwritable licence leaves the old file byte for byte.
//! Limits: the model of the box is not compared with the licence's (a loaded file is not
//! checked for it either); the new file is owned by the licence service's user.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey};
use lifeline_license_api::{Edition, Licence, LicenceStatus, Model, Refusal};
use serde::{Deserialize, Serialize};
use time::Date;

use crate::env::Identity;
use crate::keys::{TrustedKeys, key_id};

/// The value of the envelope's `format` field.
pub const FORMAT: &str = "lifeline-licence/1";
/// Largest licence file accepted.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

const SIGNING_CONTEXT: &[u8] = b"lifeline-licence/1\n";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    key_id: String,
    payload: String,
    signature: String,
}

/// Why a licence is not accepted. Each message is a sentence for the appliance admin.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "No licence is installed (nothing at {path}). Upload the licence file you received from your vendor."
    )]
    Missing { path: String },
    #[error(
        "The licence file {path} cannot be read. Check that it exists and that the licence service may read it."
    )]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "This file is not a valid Lifeline licence: {what}. Upload the original file from your vendor."
    )]
    Malformed { what: String },
    #[error(
        "This licence was signed with a key this appliance does not trust (key id {key_id}). It was not issued for this product or this build; ask your vendor for a licence for this appliance."
    )]
    UnknownKey { key_id: String },
    #[error(
        "This licence file has been altered since it was signed (its signature does not match). Upload the original file from your vendor."
    )]
    BadSignature,
    #[error(
        "This licence is for appliance {licensed}, this box is {appliance}. Upload the licence issued for serial {appliance}."
    )]
    WrongSerial { licensed: String, appliance: String },
    #[error(
        "This box's serial number could not be read ({why}), so no licence can be checked. Contact support to restore the factory data."
    )]
    SerialUnknown { why: String },
    #[error(
        "This licence expired on {}. Renew it with your vendor and upload the new file.",
        crate::format_date(*.expired_on)
    )]
    Expired { expired_on: Date },
}

impl VerifyError {
    /// The refusal in the form programs act on (the `Refusal` D-Bus property).
    pub fn refusal(&self) -> Refusal {
        match self {
            VerifyError::Missing { .. } => Refusal::Missing,
            VerifyError::Unreadable { .. } => Refusal::Unreadable,
            VerifyError::Malformed { .. } => Refusal::Malformed,
            VerifyError::UnknownKey { .. } => Refusal::UnknownKey,
            VerifyError::BadSignature => Refusal::Tampered,
            VerifyError::WrongSerial { .. } => Refusal::WrongSerial,
            VerifyError::SerialUnknown { .. } => Refusal::SerialUnknown,
            VerifyError::Expired { expired_on } => Refusal::Expired {
                expired_on: *expired_on,
            },
        }
    }
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { what: what.into() }
}

/// What a licence is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The appliance serial; `None` skips the serial check (the vendor's `verify` without
    /// `--serial`).
    pub serial: Option<&'a str>,
    /// Today (UTC).
    pub today: Date,
}

/// Verify licence file bytes. Never panics, whatever the bytes.
pub fn verify_bytes(
    bytes: &[u8],
    keys: &TrustedKeys,
    check: Check<'_>,
) -> Result<Licence, VerifyError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(malformed(format!(
            "it is {} bytes long, a licence is at most {MAX_FILE_BYTES}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("it is not text (UTF-8)"))?;
    if text.trim().is_empty() {
        return Err(malformed("the file is empty"));
    }
    let env: Envelope = serde_json::from_str(text)
        .map_err(|e| malformed(format!("it is not a licence envelope ({e})")))?;
    if env.format != FORMAT {
        return Err(malformed(format!(
            "its format is \"{}\", this appliance reads \"{FORMAT}\"",
            env.format
        )));
    }
    let key = keys
        .find(&env.key_id)
        .ok_or_else(|| VerifyError::UnknownKey {
            key_id: env.key_id.clone(),
        })?;
    let payload = B64
        .decode(env.payload.trim())
        .map_err(|_| malformed("its payload is not base64"))?;
    let sig = B64
        .decode(env.signature.trim())
        .map_err(|_| malformed("its signature is not base64"))?;
    let sig =
        Signature::from_slice(&sig).map_err(|_| malformed("its signature is not 64 bytes long"))?;
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&payload);
    key.key
        .verify_strict(&message, &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    // Signed by a trusted key: from here on the content is the vendor's.
    let licence: Licence = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("its signed content cannot be read ({e})")))?;
    if let Some(serial) = check.serial
        && licence.serial != serial
    {
        return Err(VerifyError::WrongSerial {
            licensed: licence.serial,
            appliance: serial.to_owned(),
        });
    }
    if let Some(expires) = licence.expires
        && check.today > expires
    {
        return Err(VerifyError::Expired {
            expired_on: expires,
        });
    }
    Ok(licence)
}

/// Sign a licence (vendor side) and return the file's text.
pub fn sign(licence: &Licence, key: &SigningKey) -> String {
    // A struct of strings, numbers and dates always serialises.
    let payload = serde_json::to_vec(licence).unwrap_or_default();
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&payload);
    let sig = key.sign(&message);
    let env = Envelope {
        format: FORMAT.to_owned(),
        key_id: key_id(&key.verifying_key()),
        payload: B64.encode(&payload),
        signature: B64.encode(sig.to_bytes()),
    };
    let mut text = serde_json::to_string_pretty(&env).unwrap_or_default();
    text.push('\n');
    text
}

/// The built-in evaluation licence for this box.
pub fn evaluation(identity: &Identity, today: Date) -> Licence {
    Licence {
        serial: identity
            .serial
            .clone()
            .unwrap_or_else(|_| "unknown".to_owned()),
        model: identity.model.unwrap_or(Model::B200),
        edition: Edition::Standard,
        rep_seats: lifeline_license_api::EVALUATION_REP_SEATS,
        jump_active_limit: lifeline_license_api::EVALUATION_JUMP_LIMIT,
        jump_passive_limit: lifeline_license_api::EVALUATION_JUMP_LIMIT,
        issued: today,
        expires: None,
        maintenance_until: None,
        customer: String::new(),
    }
}

/// Read and verify the licence file at `path` for this box; on any refusal, the evaluation
/// licence with the refusal's sentence as the reason.
pub fn load_in_force(
    path: &Path,
    keys: &TrustedKeys,
    identity: &Identity,
    today: Date,
) -> LicenceStatus {
    load_verdict(path, keys, identity, today).0
}

/// [`load_in_force`], and the refusal when the box runs on the evaluation licence.
pub fn load_verdict(
    path: &Path,
    keys: &TrustedKeys,
    identity: &Identity,
    today: Date,
) -> (LicenceStatus, Option<Refusal>) {
    match load(path, keys, identity, today) {
        Ok(licence) => (
            LicenceStatus {
                licence,
                evaluation: false,
                reason: None,
            },
            None,
        ),
        Err(e) => (
            LicenceStatus {
                licence: evaluation(identity, today),
                evaluation: true,
                reason: Some(e.to_string()),
            },
            Some(e.refusal()),
        ),
    }
}

/// Read and verify the licence file at `path` for this box.
pub fn load(
    path: &Path,
    keys: &TrustedKeys,
    identity: &Identity,
    today: Date,
) -> Result<Licence, VerifyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::Missing {
                path: path.display().to_string(),
            });
        }
        Err(source) => {
            return Err(VerifyError::Unreadable {
                path: path.display().to_string(),
                source,
            });
        }
    };
    verify_for_box(&bytes, keys, identity, today)
}

/// Verify licence file bytes for this box (its serial, today): exactly the check a loaded
/// file goes through.
pub fn verify_for_box(
    bytes: &[u8],
    keys: &TrustedKeys,
    identity: &Identity,
    today: Date,
) -> Result<Licence, VerifyError> {
    let serial = identity
        .serial
        .as_deref()
        .map_err(|why| VerifyError::SerialUnknown { why: why.clone() })?;
    verify_bytes(
        bytes,
        keys,
        Check {
            serial: Some(serial),
            today,
        },
    )
}

/// Why a licence was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The licence is not accepted for this box; nothing was written.
    #[error(transparent)]
    Refused(#[from] VerifyError),
    /// Accepted, but it could not be written; the licence file in place is unchanged.
    #[error(
        "The licence is valid but could not be saved at {path} ({step}). Check the appliance's data storage on the status page, then try again."
    )]
    Write {
        path: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Mode of a newly created licence file (owner writes, group reads).
pub const LICENCE_FILE_MODE: u32 = 0o640;

/// Verify `bytes` for this box and, only if accepted, write them over the licence file at
/// `path` atomically: a temporary file in the same folder, written and flushed to disk, given
/// the mode of the file it replaces (or [`LICENCE_FILE_MODE`]), renamed over `path`, then the
/// folder flushed so the rename survives a power cut. On any error `path` is unchanged.
pub fn install(
    path: &Path,
    bytes: &[u8],
    keys: &TrustedKeys,
    identity: &Identity,
    today: Date,
) -> Result<Licence, InstallError> {
    let licence = verify_for_box(bytes, keys, identity, today)?;
    write_atomically(path, bytes)?;
    Ok(licence)
}

fn write_error(path: &Path, step: &'static str) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.display().to_string();
    move |source| InstallError::Write { path, step, source }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "licence.json".to_owned());
    let tmp = dir.join(format!(".{name}.new-{:016x}", rand::random::<u64>()));
    if let Err(e) = write_then_rename(&tmp, path, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The file is in place; flushing the folder makes the rename durable. A failure here
    // is logged, not reported: the new licence is installed and in force.
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot flush the licence folder to disk");
    }
    Ok(())
}

/// Write `bytes` to the new file `tmp` with the mode of `path` (or [`LICENCE_FILE_MODE`]),
/// flush it to disk and rename it over `path`.
fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(LICENCE_FILE_MODE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(write_error(path, "creating a temporary file"))?;
    f.write_all(bytes).map_err(write_error(path, "writing"))?;
    // The creation mode is filtered by the umask: set it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_error(path, "setting its permissions"))?;
    f.sync_all()
        .map_err(write_error(path, "flushing it to disk"))?;
    std::fs::rename(tmp, path).map_err(write_error(path, "replacing the old file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 03 - 01);

    fn dev_key() -> SigningKey {
        SigningKey::from_pkcs8_pem(include_str!("../dev-keys/dev-licence-signing.key.pem")).unwrap()
    }

    fn keys() -> TrustedKeys {
        TrustedKeys::from_keys([dev_key().verifying_key()])
    }

    fn licence() -> Licence {
        Licence {
            serial: "LL-0001".into(),
            model: Model::B300,
            edition: Edition::Enterprise,
            rep_seats: 6,
            jump_active_limit: 5000,
            jump_passive_limit: 5000,
            issued: date!(2026 - 01 - 01),
            expires: Some(date!(2026 - 12 - 31)),
            maintenance_until: Some(date!(2026 - 12 - 31)),
            customer: "Université Exemple".into(),
        }
    }

    fn check(serial: &str) -> Check<'_> {
        Check {
            serial: Some(serial),
            today: TODAY,
        }
    }

    fn identity(serial: &str) -> Identity {
        Identity {
            serial: Ok(serial.to_owned()),
            model: Some(Model::B300),
        }
    }

    #[test]
    fn good_licence_verifies() {
        let file = sign(&licence(), &dev_key());
        let got = verify_bytes(file.as_bytes(), &keys(), check("LL-0001")).unwrap();
        assert_eq!(got, licence());
    }

    #[test]
    fn valid_through_its_last_day() {
        let file = sign(&licence(), &dev_key());
        let last = Check {
            serial: None,
            today: date!(2026 - 12 - 31),
        };
        assert!(verify_bytes(file.as_bytes(), &keys(), last).is_ok());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let file = sign(&licence(), &dev_key());
        let mut env: Envelope = serde_json::from_str(&file).unwrap();
        let mut payload = B64.decode(&env.payload).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap();
        payload = text
            .replace("\"rep_seats\":6", "\"rep_seats\":600")
            .into_bytes();
        env.payload = B64.encode(payload);
        let tampered = serde_json::to_string(&env).unwrap();
        let err = verify_bytes(tampered.as_bytes(), &keys(), check("LL-0001")).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{err:?}");
        assert!(err.to_string().contains("altered"), "{err}");
    }

    #[test]
    fn wrong_serial_names_both() {
        let file = sign(&licence(), &dev_key());
        let err = verify_bytes(file.as_bytes(), &keys(), check("LL-0002")).unwrap_err();
        assert!(matches!(err, VerifyError::WrongSerial { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "This licence is for appliance LL-0001, this box is LL-0002. \
             Upload the licence issued for serial LL-0002."
        );
    }

    #[test]
    fn expired_gives_the_date() {
        let file = sign(&licence(), &dev_key());
        let later = Check {
            serial: Some("LL-0001"),
            today: date!(2027 - 01 - 01),
        };
        let err = verify_bytes(file.as_bytes(), &keys(), later).unwrap_err();
        assert!(matches!(err, VerifyError::Expired { .. }), "{err:?}");
        assert!(err.to_string().contains("expired on 2026-12-31"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let file = sign(&licence(), &other);
        let err = verify_bytes(file.as_bytes(), &keys(), check("LL-0001")).unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&key_id(&other.verifying_key())));
    }

    #[test]
    fn a_known_key_id_with_another_keys_signature_is_tampering() {
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let file = sign(&licence(), &other);
        let mut env: Envelope = serde_json::from_str(&file).unwrap();
        env.key_id = key_id(&dev_key().verifying_key());
        let forged = serde_json::to_string(&env).unwrap();
        let err = verify_bytes(forged.as_bytes(), &keys(), check("LL-0001")).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{err:?}");
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let k = keys();
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\xff\xfe", "not text"),
            (b"hello", "not a licence envelope"),
            (
                br#"{"format":"x","key_id":"","payload":"","signature":""}"#,
                "format is \"x\"",
            ),
        ];
        for (bytes, needle) in cases {
            let err = verify_bytes(bytes, &k, check("LL-0001")).unwrap_err();
            assert!(matches!(err, VerifyError::Malformed { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
        let file = sign(&licence(), &dev_key());
        let mut env: Envelope = serde_json::from_str(&file).unwrap();
        env.signature = "!!!".into();
        let bad = serde_json::to_string(&env).unwrap();
        let err = verify_bytes(bad.as_bytes(), &k, check("LL-0001")).unwrap_err();
        assert!(err.to_string().contains("signature is not base64"), "{err}");
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        let err = verify_bytes(&big, &k, check("LL-0001")).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn signed_but_unreadable_payload_is_malformed() {
        let key = dev_key();
        let payload = br#"{"serial":"LL-0001"}"#;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(payload);
        let env = Envelope {
            format: FORMAT.into(),
            key_id: key_id(&key.verifying_key()),
            payload: B64.encode(payload),
            signature: B64.encode(key.sign(&message).to_bytes()),
        };
        let text = serde_json::to_string(&env).unwrap();
        let err = verify_bytes(text.as_bytes(), &keys(), check("LL-0001")).unwrap_err();
        assert!(err.to_string().contains("signed content"), "{err}");
    }

    #[test]
    fn missing_file_runs_evaluation_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("licence.json");
        let st = load_in_force(&path, &keys(), &identity("LL-0001"), TODAY);
        assert!(st.evaluation);
        assert_eq!(st.licence.rep_seats, 1);
        assert_eq!(st.licence.jump_active_limit, 5);
        assert_eq!(st.licence.jump_passive_limit, 5);
        assert_eq!(st.licence.edition, Edition::Standard);
        assert_eq!(st.licence.model, Model::B300, "model from factory data");
        assert_eq!(st.licence.serial, "LL-0001");
        assert!(st.reason.unwrap().contains("No licence is installed"));
    }

    #[test]
    fn refused_file_runs_evaluation_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("licence.json");
        std::fs::write(&path, sign(&licence(), &dev_key())).unwrap();
        let st = load_in_force(&path, &keys(), &identity("LL-0009"), TODAY);
        assert!(st.evaluation);
        assert!(st.reason.unwrap().contains("this box is LL-0009"));
        let st = load_in_force(&path, &keys(), &identity("LL-0001"), TODAY);
        assert!(!st.evaluation);
        assert_eq!(st.licence.rep_seats, 6);
        let no_serial = Identity {
            serial: Err("no factory data".into()),
            model: None,
        };
        let st = load_in_force(&path, &keys(), &no_serial, TODAY);
        assert!(st.evaluation);
        assert_eq!(st.licence.model, Model::B200);
        assert!(
            st.reason
                .unwrap()
                .contains("could not be read (no factory data)")
        );
    }

    /// A licence folder holding `old` as the installed licence, mode 0640.
    fn installed(old: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("licence.json");
        std::fs::write(&path, old).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        (dir, path)
    }

    fn only_the_licence_is_left(dir: &Path) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["licence.json"], "temporary files left behind");
    }

    #[test]
    fn an_accepted_licence_replaces_the_file_and_comes_into_force() {
        use std::os::unix::fs::PermissionsExt as _;
        let old = sign(&licence(), &dev_key());
        let (dir, path) = installed(old.as_bytes());
        let before = load_in_force(&path, &keys(), &identity("LL-0001"), TODAY);
        assert_eq!(before.licence.rep_seats, 6);
        let mut more = licence();
        more.rep_seats = 25;
        more.expires = Some(date!(2027 - 12 - 31));
        let new = sign(&more, &dev_key());
        let got = install(&path, new.as_bytes(), &keys(), &identity("LL-0001"), TODAY).unwrap();
        assert_eq!(got, more);
        assert_eq!(std::fs::read(&path).unwrap(), new.as_bytes());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        only_the_licence_is_left(dir.path());
        let after = load_in_force(&path, &keys(), &identity("LL-0001"), TODAY);
        assert!(!after.evaluation);
        assert_eq!(after.licence.rep_seats, 25);
    }

    #[test]
    fn a_first_licence_is_written_with_mode_0640() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("licence.json");
        let new = sign(&licence(), &dev_key());
        install(&path, new.as_bytes(), &keys(), &identity("LL-0001"), TODAY).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, LICENCE_FILE_MODE);
        assert_eq!(std::fs::read(&path).unwrap(), new.as_bytes());
    }

    #[test]
    fn a_refused_licence_changes_nothing_and_says_why() {
        let old = sign(&licence(), &dev_key());
        let (dir, path) = installed(old.as_bytes());
        let mut other_box = licence();
        other_box.serial = "LL-0002".into();
        let mut expired = licence();
        expired.expires = Some(date!(2026 - 02 - 28));
        let untrusted = sign(&licence(), &SigningKey::from_bytes(&[7u8; 32]));
        let mut env: Envelope = serde_json::from_str(&old).unwrap();
        let mut payload = B64.decode(&env.payload).unwrap();
        payload = String::from_utf8(payload)
            .unwrap()
            .replace("\"rep_seats\":6", "\"rep_seats\":60")
            .into_bytes();
        env.payload = B64.encode(payload);
        let tampered = serde_json::to_string(&env).unwrap();
        let too_big = format!("{old}{}", " ".repeat(MAX_FILE_BYTES));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                sign(&other_box, &dev_key()).into_bytes(),
                "This licence is for appliance LL-0002, this box is LL-0001. \
                 Upload the licence issued for serial LL-0001.",
            ),
            (
                sign(&expired, &dev_key()).into_bytes(),
                "expired on 2026-02-28",
            ),
            (
                untrusted.into_bytes(),
                "a key this appliance does not trust",
            ),
            (tampered.into_bytes(), "altered since it was signed"),
            (
                b"not a licence at all".to_vec(),
                "not a valid Lifeline licence",
            ),
            (vec![0xff, 0x00, 0x17], "not text"),
            (Vec::new(), "empty"),
            (too_big.into_bytes(), "a licence is at most 65536"),
        ];
        for (bytes, needle) in cases {
            let err = install(&path, &bytes, &keys(), &identity("LL-0001"), TODAY).unwrap_err();
            assert!(matches!(err, InstallError::Refused(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
            assert_eq!(std::fs::read(&path).unwrap(), old.as_bytes(), "{needle}");
            only_the_licence_is_left(dir.path());
        }
        // A box whose serial cannot be read takes no licence at all.
        let no_serial = Identity {
            serial: Err("no factory data".into()),
            model: None,
        };
        let err = install(&path, old.as_bytes(), &keys(), &no_serial, TODAY).unwrap_err();
        assert!(
            err.to_string()
                .contains("could not be read (no factory data)"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), old.as_bytes());
    }

    #[test]
    fn an_unwritable_folder_leaves_the_old_licence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("licence.json");
        let new = sign(&licence(), &dev_key());
        let err = install(&path, new.as_bytes(), &keys(), &identity("LL-0001"), TODAY).unwrap_err();
        assert!(matches!(err, InstallError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("could not be saved"), "{err}");
        assert!(!path.exists());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = verify_bytes(&bytes, &keys(), check("LL-0001"));
        }

        #[test]
        fn installing_arbitrary_bytes_never_panics_nor_changes_the_file(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            let old = sign(&licence(), &dev_key());
            let (dir, path) = installed(old.as_bytes());
            let r = install(&path, &bytes, &keys(), &identity("LL-0001"), TODAY);
            proptest::prop_assert!(r.is_err());
            proptest::prop_assert_eq!(std::fs::read(&path).unwrap(), old.into_bytes());
            drop(dir);
        }

        #[test]
        fn arbitrary_envelopes_never_panic(
            use_known_key in proptest::bool::ANY,
            key_id in "[0-9a-f]{0,20}",
            payload in "[A-Za-z0-9+/=]{0,200}",
            signature in "[A-Za-z0-9+/=]{0,120}",
        ) {
            let k = keys();
            let id = if use_known_key { k.iter().next().unwrap().id.clone() } else { key_id };
            let text = serde_json::to_string(&Envelope { format: FORMAT.into(), key_id: id, payload, signature }).unwrap();
            let _ = verify_bytes(text.as_bytes(), &k, check("LL-0001"));
        }
    }
}
