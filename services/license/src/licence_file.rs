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
    let serial = identity
        .serial
        .as_deref()
        .map_err(|why| VerifyError::SerialUnknown { why: why.clone() })?;
    verify_bytes(
        &bytes,
        keys,
        Check {
            serial: Some(serial),
            today,
        },
    )
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

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = verify_bytes(&bytes, &keys(), check("LL-0001"));
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
