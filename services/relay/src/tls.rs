//! TLS material: a configured certificate and key, or a self-signed pair created on first
//! start in `<data>/tls/` and reused afterwards. Clients pin the SHA-256 of the certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("cannot create a self-signed certificate for `{host}`")]
    Generate {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the certificate and key do not form a usable TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Loaded TLS identity.
#[derive(Debug)]
pub struct Identity {
    pub server_config: Arc<rustls::ServerConfig>,
    /// Lower-case hex SHA-256 of the leaf certificate (what clients pin).
    pub pin: String,
}

/// The crypto provider used everywhere (ring; no other is compiled in), with the SHA-256
/// suites first: their handshake hashing runs on the CPU's SHA instructions, SHA-384's does
/// not, and AES-128-GCM is as strong as any peer needs.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads the configured pair, or the self-signed pair in `data_dir/tls`, creating it once.
pub fn load_or_create(
    data_dir: &Path,
    host: &str,
    configured: Option<(&Path, &Path)>,
) -> Result<Identity, TlsError> {
    let (cert_path, key_path) = match configured {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => {
            let dir = data_dir.join("tls");
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                create_self_signed(&dir, &cert, &key, host)?;
            }
            (cert, key)
        }
    };
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let leaf = certs.first().ok_or_else(|| TlsError::NoCertificate {
        path: cert_path.clone(),
    })?;
    let pin = sha256_hex(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key_path.clone(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    // Resumed handshakes skip the signature: reconnecting agents and API clients cost less.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(8192);
    Ok(Identity {
        server_config: Arc::new(config),
        pin,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn create_self_signed(dir: &Path, cert: &Path, key: &Path, host: &str) -> Result<(), TlsError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut names = vec![host.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|source| TlsError::Generate {
            host: host.to_string(),
            source,
        })?;
    write_private(key, generated.key_pair.serialize_pem().as_bytes()).map_err(write_err(key))?;
    std::fs::write(cert, generated.cert.pem()).map_err(write_err(cert))?;
    tracing::info!(path = %cert.display(), host, "created a self-signed TLS certificate");
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "support.example.org", None).unwrap();
        let b = load_or_create(dir.path(), "support.example.org", None).unwrap();
        assert_eq!(a.pin, b.pin);
        assert_eq!(a.pin.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_configured_file_is_named() {
        let e = load_or_create(
            Path::new("/nonexistent"),
            "h",
            Some((
                Path::new("/nonexistent/c.pem"),
                Path::new("/nonexistent/k.pem"),
            )),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "cannot read /nonexistent/c.pem");
    }
}
