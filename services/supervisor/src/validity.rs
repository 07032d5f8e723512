//! Licence and certificate alerts: how long the licence and the relay's TLS certificate
//! remain valid.
//!
//! # Design
//!
//! - The licence comes from the licence manager (`org.lifeline.License1`): its `Licence`
//!   property (the licence in force, its `expires` day) and its `Refusal` property (why an
//!   installed licence was refused). A licence in force whose last day is at most
//!   `warn_days` away gives [`ValidityAlert::LicenceExpiring`]; an expired one (the manager
//!   then runs the evaluation licence) [`ValidityAlert::LicenceExpired`]; any other reason to
//!   run on the evaluation licence [`ValidityAlert::EvaluationLicence`] with the manager's
//!   sentence. See [`licence_alerts`].
//! - The certificate is the relay's PEM file in its data folder (`relay_certificate` in the
//!   configuration; on the box `/var/lib/lifeline/relay/tls/cert.pem`, which the image lets
//!   the supervisor's user read and nothing else of the relay's). [`not_after`] reads the
//!   leaf certificate's `notAfter` with a small DER reader ([`der`]): only the path
//!   `Certificate → TBSCertificate → validity → notAfter` is walked, every length is checked,
//!   and any other input is an error, never a panic (property-tested). [`Certificate`]
//!   caches the result by the file's size and modification time.
//!
//! # Limits
//!
//! - Days are whole UTC days; a licence is valid through the whole of its `expires` day.
//! - Only the first certificate of the file (the leaf) is read; chains are not checked, nor
//!   is whether the certificate matches the relay's key or name.
//! - A certificate file that does not exist yet (the relay makes its self-signed one on its
//!   first start) gives no alert; one that cannot be read or parsed is logged, not alerted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lifeline_license_api::{LicenceStatus, Refusal};
use lifeline_supervisor_api::ValidityAlert;
use time::{Date, OffsetDateTime};

/// Why a certificate file gives no date.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read the certificate {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoPem { path: PathBuf },
    #[error("{path}: the certificate is not valid DER ({why})")]
    Der { path: PathBuf, why: der::DerError },
}

fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The alerts about the licence. `refusal` is `None` when the licence manager did not say
/// (an older manager): the evaluation licence is then reported with its reason.
pub fn licence_alerts(
    status: &LicenceStatus,
    refusal: Option<&Refusal>,
    today: Date,
    warn_days: u32,
) -> Vec<ValidityAlert> {
    if status.evaluation {
        return vec![match refusal {
            Some(Refusal::Expired { expired_on }) => ValidityAlert::LicenceExpired {
                expired_on: format_date(*expired_on),
            },
            _ => ValidityAlert::EvaluationLicence {
                reason: status
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no valid licence is installed.".into()),
            },
        }];
    }
    let Some(expires) = status.licence.expires else {
        return vec![];
    };
    let days = (expires - today).whole_days();
    match u32::try_from(days) {
        Ok(days) if days <= warn_days => vec![ValidityAlert::LicenceExpiring {
            days,
            expires: format_date(expires),
        }],
        Ok(_) => vec![],
        // Past its last day but still in force: the manager re-reads it at midnight.
        Err(_) => vec![ValidityAlert::LicenceExpired {
            expired_on: format_date(expires),
        }],
    }
}

/// The alert about a certificate valid until `not_after`, if any.
pub fn certificate_alert(
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    warn_days: u32,
) -> Option<ValidityAlert> {
    if now > not_after {
        return Some(ValidityAlert::CertificateExpired {
            expired_on: format_date(not_after.date()),
        });
    }
    let days = (not_after.date() - now.date()).whole_days();
    let days = u32::try_from(days).unwrap_or(u32::MAX);
    (days <= warn_days).then(|| ValidityAlert::CertificateExpiring {
        days,
        expires: format_date(not_after.date()),
    })
}

/// The `notAfter` of the first certificate in PEM `text`.
pub fn not_after(path: &Path, text: &str) -> Result<OffsetDateTime, CertError> {
    use base64::Engine as _;
    let body = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .ok_or_else(|| CertError::NoPem {
            path: path.to_path_buf(),
        })?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| CertError::NoPem {
            path: path.to_path_buf(),
        })?;
    der::certificate_not_after(&bytes).map_err(|why| CertError::Der {
        path: path.to_path_buf(),
        why,
    })
}

/// The relay's certificate file, read again only when it changed.
#[derive(Debug)]
pub struct Certificate {
    path: PathBuf,
    seen: Option<(u64, Option<SystemTime>, Option<OffsetDateTime>)>,
}

impl Certificate {
    pub fn new(path: PathBuf) -> Self {
        Certificate { path, seen: None }
    }

    /// The certificate's `notAfter`; `None` when the file does not exist or cannot be used
    /// (logged once per change of the file).
    pub fn not_after(&mut self) -> Option<OffsetDateTime> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.seen = None;
                return None;
            }
            Err(e) => {
                if self.seen.is_some() || e.kind() != std::io::ErrorKind::PermissionDenied {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot look at the relay's certificate");
                }
                self.seen = None;
                return None;
            }
        };
        let key = (meta.len(), meta.modified().ok());
        if let Some((len, modified, value)) = self.seen
            && (len, modified) == key
        {
            return value;
        }
        let value = std::fs::read_to_string(&self.path)
            .map_err(|source| CertError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|text| not_after(&self.path, &text));
        let value = match value {
            Ok(t) => {
                tracing::info!(path = %self.path.display(), not_after = %t, "relay certificate read");
                Some(t)
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot use the relay's certificate");
                None
            }
        };
        self.seen = Some((key.0, key.1, value));
        value
    }
}

/// A reader of just enough DER to find a certificate's `notAfter`.
pub mod der {
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

    /// What is wrong with the bytes.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum DerError {
        #[error("it ends early")]
        Truncated,
        #[error("a length is not in DER form")]
        BadLength,
        #[error("expected tag {want:#04x}, found {got:#04x}")]
        UnexpectedTag { want: u8, got: u8 },
        #[error("the validity time is not a UTCTime or GeneralizedTime")]
        BadTime,
    }

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    /// One element: its tag, its contents, and what follows it.
    fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
        let (&tag, rest) = input.split_first().ok_or(DerError::Truncated)?;
        let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 (indefinite) is not DER; more than 4 length bytes is more than we read.
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            let bytes = rest.get(..n).ok_or(DerError::Truncated)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(DerError::Truncated);
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), DerError> {
        let (tag, body, rest) = element(input)?;
        if tag != want {
            return Err(DerError::UnexpectedTag { want, got: tag });
        }
        Ok((body, rest))
    }

    fn digits(s: &[u8]) -> Result<u32, DerError> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(DerError::BadTime);
        }
        Ok(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    }

    /// `YYMMDDHHMMSSZ` (UTCTime) or `YYYYMMDDHHMMSSZ` (GeneralizedTime), in UTC.
    pub fn time(tag: u8, body: &[u8]) -> Result<OffsetDateTime, DerError> {
        let (year, rest) = match (tag, body.len()) {
            (UTC_TIME, 13) => {
                let yy = digits(&body[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &body[2..])
            }
            (GENERALIZED_TIME, 15) => (digits(&body[..4])?, &body[4..]),
            _ => return Err(DerError::BadTime),
        };
        if rest[10] != b'Z' {
            return Err(DerError::BadTime);
        }
        let field = |i: usize| digits(&rest[i..i + 2]);
        let month = u8::try_from(field(0)?)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or(DerError::BadTime)?;
        let small = |v: u32| u8::try_from(v).map_err(|_| DerError::BadTime);
        let date = Date::from_calendar_date(
            i32::try_from(year).map_err(|_| DerError::BadTime)?,
            month,
            small(field(2)?)?,
        )
        .map_err(|_| DerError::BadTime)?;
        let time = Time::from_hms(small(field(4)?)?, small(field(6)?)?, small(field(8)?)?)
            .map_err(|_| DerError::BadTime)?;
        Ok(PrimitiveDateTime::new(date, time).assume_utc())
    }

    /// `Certificate.tbsCertificate.validity.notAfter`.
    pub fn certificate_not_after(der: &[u8]) -> Result<OffsetDateTime, DerError> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let (tag, _, mut rest) = element(tbs)?;
        // `version` is optional ([0] EXPLICIT); the serial number follows it.
        if tag == VERSION {
            rest = expect(rest, INTEGER)?.1;
        } else if tag != INTEGER {
            return Err(DerError::UnexpectedTag {
                want: INTEGER,
                got: tag,
            });
        }
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (validity, _) = expect(rest, SEQUENCE)?;
        let (_, _, after) = element(validity)?;
        let (tag, body, _) = element(after)?;
        time(tag, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_license_api::{Edition, Licence, Model};
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    fn cert_pem(not_after: OffsetDateTime) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["lifeline.test".into()]).unwrap();
        params.not_before = datetime!(2025-01-01 0:00 UTC);
        params.not_after = not_after;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn reads_not_after_of_real_certificates() {
        for t in [
            datetime!(2026-03-04 05:06:07 UTC),
            // After 2049 a certificate carries a GeneralizedTime.
            datetime!(2051-12-31 23:59:59 UTC),
        ] {
            assert_eq!(not_after(Path::new("c.pem"), &cert_pem(t)).unwrap(), t);
        }
        assert!(matches!(
            not_after(Path::new("c.pem"), "hello"),
            Err(CertError::NoPem { .. })
        ));
        let e = not_after(
            Path::new("c.pem"),
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid DER"), "{e}");
    }

    #[test]
    fn certificate_alerts_by_days_left() {
        let now = datetime!(2026-01-01 12:00 UTC);
        assert_eq!(
            certificate_alert(datetime!(2026-01-11 00:00 UTC), now, 30),
            Some(ValidityAlert::CertificateExpiring {
                days: 10,
                expires: "2026-01-11".into()
            })
        );
        assert_eq!(
            certificate_alert(datetime!(2026-06-01 00:00 UTC), now, 30),
            None
        );
        assert_eq!(
            certificate_alert(datetime!(2026-01-01 11:00 UTC), now, 30),
            Some(ValidityAlert::CertificateExpired {
                expired_on: "2026-01-01".into()
            })
        );
    }

    #[test]
    fn cached_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        let mut c = Certificate::new(path.clone());
        assert_eq!(c.not_after(), None, "not there yet");
        let t1 = datetime!(2027-01-01 0:00 UTC);
        std::fs::write(&path, cert_pem(t1)).unwrap();
        assert_eq!(c.not_after(), Some(t1));
        assert_eq!(c.not_after(), Some(t1));
        std::fs::write(&path, "garbage, and longer than before to change the size").unwrap();
        assert_eq!(c.not_after(), None);
    }

    fn status(evaluation: bool, expires: Option<Date>, reason: Option<&str>) -> LicenceStatus {
        LicenceStatus {
            licence: Licence {
                serial: "LL-1".into(),
                model: Model::B200,
                edition: Edition::Standard,
                rep_seats: 5,
                jump_active_limit: 1,
                jump_passive_limit: 1,
                issued: date!(2025 - 01 - 01),
                expires,
                maintenance_until: None,
                customer: String::new(),
            },
            evaluation,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn licence_alerts_cases() {
        let today = date!(2026 - 01 - 01);
        let valid = status(false, Some(date!(2026 - 01 - 21)), None);
        assert_eq!(
            licence_alerts(&valid, None, today, 30),
            vec![ValidityAlert::LicenceExpiring {
                days: 20,
                expires: "2026-01-21".into()
            }]
        );
        assert!(licence_alerts(&valid, None, today, 10).is_empty());
        assert!(licence_alerts(&status(false, None, None), None, today, 30).is_empty());
        let expired = status(true, None, Some("This licence expired on 2025-12-01."));
        let refusal = Refusal::Expired {
            expired_on: date!(2025 - 12 - 01),
        };
        assert_eq!(
            licence_alerts(&expired, Some(&refusal), today, 30),
            vec![ValidityAlert::LicenceExpired {
                expired_on: "2025-12-01".into()
            }]
        );
        let missing = status(true, None, Some("No licence is installed."));
        assert_eq!(
            licence_alerts(&missing, Some(&Refusal::Missing), today, 30),
            vec![ValidityAlert::EvaluationLicence {
                reason: "No licence is installed.".into()
            }]
        );
        // An older licence manager that does not say why.
        assert_eq!(
            licence_alerts(&missing, None, today, 30),
            licence_alerts(&missing, Some(&Refusal::Tampered), today, 30)
        );
    }

    proptest! {
        #[test]
        fn der_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = der::certificate_not_after(&bytes);
        }

        #[test]
        fn der_reader_survives_damaged_certificates(
            cut in 0usize..600,
            flip in 0usize..600,
            bit in 0u8..8,
        ) {
            let pem = cert_pem(datetime!(2030-01-01 0:00 UTC));
            use base64::Engine as _;
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            if let Some(b) = der.get_mut(flip) {
                *b ^= 1 << bit;
            }
            der.truncate(cut);
            let _ = der::certificate_not_after(&der);
        }

        #[test]
        fn time_parser_never_panics(tag in prop_oneof![Just(0x17u8), Just(0x18u8), any::<u8>()],
                                    body in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = der::time(tag, &body);
        }
    }
}
