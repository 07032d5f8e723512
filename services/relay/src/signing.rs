//! The box's ticket-signing key (ed25519), kept in `<data>/signing.key`.
//!
//! A ticket string is `base64url(payload) "." base64url(signature)`; the payload is
//! `{"tid": ticket id, "exp": expiry in ms}`. The relay checks the signature before it looks
//! the ticket up, so a forged or altered ticket never reaches the database.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read or write the signing key {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the signing key {path} is damaged")]
    Damaged { path: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is not well formed")]
    Malformed,
    #[error("the ticket's signature is wrong")]
    BadSignature,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TicketClaims {
    pub tid: String,
    pub exp: i64,
}

pub struct TicketSigner {
    key: SigningKey,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(..)")
    }
}

impl TicketSigner {
    pub fn load_or_create(path: &Path) -> Result<Self, SigningError> {
        let io = |source| SigningError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| SigningError::Damaged {
                    path: path.display().to_string(),
                })?;
                Ok(TicketSigner { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let pem =
                    key.to_pkcs8_pem(Default::default())
                        .map_err(|_| SigningError::Damaged {
                            path: path.display().to_string(),
                        })?;
                crate::tls::write_private(path, pem.as_bytes()).map_err(io)?;
                Ok(TicketSigner { key })
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn sign(&self, claims: &TicketClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let sig = self.key.sign(&payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        )
    }

    pub fn verify(&self, ticket: &str) -> Result<TicketClaims, TicketError> {
        let (p, s) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
        if p.len() > 1024 || s.len() > 128 {
            return Err(TicketError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TicketError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TicketError::Malformed)?;
        let sig = Signature::from_slice(&sig).map_err(|_| TicketError::Malformed)?;
        self.key
            .verifying_key()
            .verify(&payload, &sig)
            .map_err(|_| TicketError::BadSignature)?;
        serde_json::from_slice(&payload).map_err(|_| TicketError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let s = TicketSigner::load_or_create(&dir.path().join("k")).unwrap();
        let again = TicketSigner::load_or_create(&dir.path().join("k")).unwrap();
        let claims = TicketClaims {
            tid: "abc".into(),
            exp: 5,
        };
        let t = s.sign(&claims);
        assert_eq!(again.verify(&t).unwrap(), claims);
        let forged = TicketClaims {
            tid: "abd".into(),
            exp: 5,
        };
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap()),
            t.split_once('.').unwrap().1
        );
        assert_eq!(s.verify(&forged), Err(TicketError::BadSignature));
        assert_eq!(s.verify("nonsense"), Err(TicketError::Malformed));
        let other = TicketSigner::load_or_create(&dir.path().join("k2")).unwrap();
        assert_eq!(other.verify(&t), Err(TicketError::BadSignature));
    }
}
