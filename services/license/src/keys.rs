//! Signing keys: the public keys a licence is verified against, key ids, and key files.
//!
//! A key id is the first 8 bytes of the SHA-256 of the raw 32-byte ed25519 public key, in
//! lower-case hex (16 characters). It only selects a key; the signature decides.
//!
//! Trusted keys are built into the binary: the vendor keys in [`VENDOR_KEYS_PEM`], plus the
//! development key (`dev-keys/dev-licence-signing.pub.pem`) in debug builds or when the
//! cargo feature `dev-key` is on. The release image is a release build without that feature,
//! so it never trusts the development key, whose private half is in the repository.

use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Vendor public keys (SPKI PEM) trusted by every build. The private halves are held by
/// the vendor, offline, and never enter the repository; a new key is added here (old ones
/// stay while licences signed with them are in use).
pub const VENDOR_KEYS_PEM: &[&str] = &[include_str!("../vendor-keys/vendor-2026.pub.pem")];

/// The development public key, trusted only in development builds.
pub const DEV_KEY_PEM: &str = include_str!("../dev-keys/dev-licence-signing.pub.pem");

/// Whether this build trusts the development key.
pub const TRUSTS_DEV_KEY: bool = trusts_dev_key(cfg!(debug_assertions), cfg!(feature = "dev-key"));

/// The trust decision for the development key: a debug build, or a release build with the
/// `dev-key` feature. A release build without it (the image) never trusts it.
pub const fn trusts_dev_key(debug_build: bool, dev_key_feature: bool) -> bool {
    debug_build || dev_key_feature
}

/// The key id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// One trusted key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub id: String,
    pub key: VerifyingKey,
    /// "vendor" or "development", for messages and logs.
    pub label: &'static str,
}

/// The set of keys a licence may be signed with.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<TrustedKey>);

impl TrustedKeys {
    /// The keys built into this binary.
    pub fn built_in() -> Self {
        Self::built_in_with(TRUSTS_DEV_KEY)
    }

    /// The built-in vendor keys, plus the development key when `dev_key` is true.
    pub fn built_in_with(dev_key: bool) -> Self {
        let mut keys = TrustedKeys::default();
        for pem in VENDOR_KEYS_PEM {
            match VerifyingKey::from_public_key_pem(pem) {
                Ok(k) => keys.add(k, "vendor"),
                // A broken built-in key is a build defect; the unit tests catch it.
                Err(e) => tracing::error!("built-in vendor key does not parse: {e}"),
            }
        }
        if dev_key {
            match VerifyingKey::from_public_key_pem(DEV_KEY_PEM) {
                Ok(k) => keys.add(k, "development"),
                Err(e) => tracing::error!("built-in development key does not parse: {e}"),
            }
        }
        keys
    }

    /// Only the given keys (tests, and `verify --trust`).
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut set = TrustedKeys::default();
        for k in keys {
            set.add(k, "given");
        }
        set
    }

    pub fn add(&mut self, key: VerifyingKey, label: &'static str) {
        self.0.push(TrustedKey {
            id: key_id(&key),
            key,
            label,
        });
    }

    pub fn find(&self, id: &str) -> Option<&TrustedKey> {
        self.0.iter().find(|k| k.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.0.iter()
    }
}

/// Problems with a signing key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the signing key {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an ed25519 private key in PKCS#8 PEM form (make one with `lifeline-license keygen`)"
    )]
    Parse { path: String },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; choose another --out or remove it first")]
    Exists { path: String },
}

/// Read a PKCS#8 PEM ed25519 private key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyFileError::Parse {
        path: path.display().to_string(),
    })
}

/// Make a new key pair: the private key goes to `out` (mode 0600), the public key to
/// `out.pub`. Returns the public key's id.
pub fn keygen(out: &Path) -> Result<String, KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let pub_path = out.with_extension(match out.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".to_owned(),
    });
    for p in [out, pub_path.as_path()] {
        if p.exists() {
            return Err(KeyFileError::Exists {
                path: p.display().to_string(),
            });
        }
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyFileError::Parse {
            path: out.display().to_string(),
        })?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyFileError::Parse {
            path: pub_path.display().to_string(),
        })?;
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| KeyFileError::Write { path, source }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(write_err(out))?;
    f.write_all(private.as_bytes()).map_err(write_err(out))?;
    std::fs::write(&pub_path, public).map_err(write_err(&pub_path))?;
    Ok(key_id(&key.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The development private key shipped in the repository.
    pub fn dev_signing_key() -> SigningKey {
        SigningKey::from_pkcs8_pem(include_str!("../dev-keys/dev-licence-signing.key.pem")).unwrap()
    }

    #[test]
    fn dev_key_halves_match() {
        let public = VerifyingKey::from_public_key_pem(DEV_KEY_PEM).unwrap();
        assert_eq!(dev_signing_key().verifying_key(), public);
    }

    #[test]
    fn built_in_keys_parse_and_dev_key_trusted_in_tests() {
        let keys = TrustedKeys::built_in();
        assert_eq!(keys.iter().count(), VENDOR_KEYS_PEM.len() + 1);
        let id = key_id(&dev_signing_key().verifying_key());
        assert_eq!(id.len(), 16);
        assert_eq!(keys.find(&id).unwrap().label, "development");
    }

    #[test]
    fn a_release_build_refuses_the_development_key() {
        // The decision: only a debug build or the `dev-key` feature trusts the key.
        assert!(!trusts_dev_key(false, false), "release image");
        assert!(trusts_dev_key(true, false));
        assert!(trusts_dev_key(false, true));
        // The keys of a release build, and a licence signed with the development key.
        let release = TrustedKeys::built_in_with(trusts_dev_key(false, false));
        let dev_id = key_id(&dev_signing_key().verifying_key());
        assert!(release.find(&dev_id).is_none());
        assert!(
            release.find("43eaa263d979315c").is_some(),
            "the vendor key stays"
        );
        let licence = lifeline_license_api::Licence {
            serial: "LL-0001".into(),
            model: lifeline_license_api::Model::B200,
            edition: lifeline_license_api::Edition::Standard,
            rep_seats: 5,
            jump_active_limit: 1000,
            jump_passive_limit: 1000,
            issued: time::macros::date!(2026 - 01 - 01),
            expires: None,
            maintenance_until: None,
            customer: String::new(),
        };
        let file = crate::licence_file::sign(&licence, &dev_signing_key());
        let check = crate::licence_file::Check {
            serial: Some("LL-0001"),
            today: time::macros::date!(2026 - 02 - 01),
        };
        let err = crate::licence_file::verify_bytes(file.as_bytes(), &release, check).unwrap_err();
        assert!(
            matches!(&err, crate::licence_file::VerifyError::UnknownKey { key_id } if *key_id == dev_id),
            "{err:?}"
        );
        assert_eq!(err.refusal(), lifeline_license_api::Refusal::UnknownKey);
        // The same file is accepted where the development key is trusted (tests, xtask run).
        let debug = TrustedKeys::built_in_with(trusts_dev_key(true, false));
        assert!(crate::licence_file::verify_bytes(file.as_bytes(), &debug, check).is_ok());
    }

    #[test]
    fn vendor_key_is_built_in() {
        let keys = TrustedKeys::built_in();
        let vendor = keys.find("43eaa263d979315c").expect("the vendor key");
        assert_eq!(vendor.label, "vendor");
        assert!(VENDOR_KEYS_PEM.iter().all(|p| !p.contains("PRIVATE")));
    }

    #[test]
    fn keygen_writes_a_usable_pair() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k.pem");
        let id = keygen(&out).unwrap();
        let key = read_signing_key(&out).unwrap();
        assert_eq!(key_id(&key.verifying_key()), id);
        let public = std::fs::read_to_string(dir.path().join("k.pem.pub")).unwrap();
        assert_eq!(
            VerifyingKey::from_public_key_pem(&public).unwrap(),
            key.verifying_key()
        );
        assert!(matches!(keygen(&out), Err(KeyFileError::Exists { .. })));
    }
}
