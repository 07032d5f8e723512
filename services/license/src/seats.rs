//! Seat accounting: leases with a time-to-live, limits from the licence in force, and
//! persistence so a restart neither double-allocates nor loses seats.
//!
//! The [`Ledger`] is plain data and takes the current time as an argument, so it is tested
//! without a clock. The daemon sweeps expired leases on every call and on a timer, and saves
//! the ledger (temp file + fsync + rename) before it answers a call that changed it.
//! Expiry times are wall-clock seconds since the Unix epoch, so they keep their meaning
//! across a restart.
//!
//! When the limits shrink (a smaller licence, or evaluation), leases already held are kept
//! until released or expired; only new checkouts are refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use lifeline_license_api::{Counts, Lease, Licence, SeatKind};
use serde::{Deserialize, Serialize};

/// Name of the lease file in the data directory.
pub const LEASES_FILE: &str = "leases.json";

/// Why a seat operation was refused. Messages are sentences for the person concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("All {limit} {noun} are in use. Ask a colleague to log out, or buy more licences.", noun = kind.licence_noun())]
    Exhausted { kind: SeatKind, limit: u32 },
    #[error("This licence lease has expired or was released. Log in again to take a seat.")]
    UnknownLease { id: String },
    #[error("A seat needs a holder name; none was given.")]
    EmptyHolder,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Leases by id.
    leases: BTreeMap<String, Lease>,
}

impl Ledger {
    /// Take a seat, or return the holder's existing lease of that kind renewed.
    pub fn checkout(
        &mut self,
        kind: SeatKind,
        holder: &str,
        licence: &Licence,
        ttl_secs: u64,
        now: u64,
    ) -> Result<Lease, SeatError> {
        if holder.trim().is_empty() {
            return Err(SeatError::EmptyHolder);
        }
        self.sweep(now);
        let expires_at = now.saturating_add(ttl_secs);
        if let Some(lease) = self
            .leases
            .values_mut()
            .find(|l| l.kind == kind && l.holder == holder)
        {
            lease.expires_at = lease.expires_at.max(expires_at);
            return Ok(lease.clone());
        }
        let limit = licence.limit(kind);
        if self.in_use(kind) >= limit {
            return Err(SeatError::Exhausted { kind, limit });
        }
        let id = new_lease_id();
        let lease = Lease {
            id: id.clone(),
            kind,
            holder: holder.to_owned(),
            expires_at,
        };
        self.leases.insert(id, lease.clone());
        Ok(lease)
    }

    pub fn renew(&mut self, id: &str, ttl_secs: u64, now: u64) -> Result<Lease, SeatError> {
        self.sweep(now);
        let lease = self
            .leases
            .get_mut(id)
            .ok_or_else(|| SeatError::UnknownLease { id: id.to_owned() })?;
        lease.expires_at = lease.expires_at.max(now.saturating_add(ttl_secs));
        Ok(lease.clone())
    }

    /// Give a seat back; whether it was held.
    pub fn release(&mut self, id: &str, now: u64) -> bool {
        self.sweep(now);
        self.leases.remove(id).is_some()
    }

    /// Drop expired leases; whether any was dropped.
    pub fn sweep(&mut self, now: u64) -> bool {
        let before = self.leases.len();
        self.leases.retain(|_, l| l.expires_at > now);
        self.leases.len() != before
    }

    pub fn in_use(&self, kind: SeatKind) -> u32 {
        let n = self.leases.values().filter(|l| l.kind == kind).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn counts(&self, licence: &Licence) -> Counts {
        Counts {
            rep_in_use: self.in_use(SeatKind::Rep),
            rep_limit: licence.rep_seats,
            jump_active_in_use: self.in_use(SeatKind::JumpActive),
            jump_active_limit: licence.jump_active_limit,
            jump_passive_in_use: self.in_use(SeatKind::JumpPassive),
            jump_passive_limit: licence.jump_passive_limit,
        }
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

fn new_lease_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Problems with the lease file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the seat leases from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the seat leases in {path} are damaged")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot save the seat leases to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lease file in the data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Store {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(LEASES_FILE)
    }

    /// The saved ledger; empty if none was saved yet.
    pub fn load(&self) -> Result<Ledger, StoreError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Save atomically: write a temp file in the same directory, fsync it, rename it over the
    /// old file, fsync the directory.
    pub fn save(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!(".{LEASES_FILE}.tmp"));
        let err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        // A map of plain structs always serialises.
        let bytes = serde_json::to_vec_pretty(ledger).unwrap_or_default();
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_license_api::{Edition, Model};
    use time::macros::date;

    fn licence(reps: u32) -> Licence {
        Licence {
            serial: "S".into(),
            model: Model::B200,
            edition: Edition::Standard,
            rep_seats: reps,
            jump_active_limit: 2,
            jump_passive_limit: 3,
            issued: date!(2026 - 01 - 01),
            expires: None,
            maintenance_until: None,
            customer: String::new(),
        }
    }

    #[test]
    fn limit_is_enforced_with_the_sentence() {
        let l = licence(6);
        let mut ledger = Ledger::default();
        for i in 0..6 {
            ledger
                .checkout(SeatKind::Rep, &format!("rep{i}"), &l, 90, 1000)
                .unwrap();
        }
        let err = ledger
            .checkout(SeatKind::Rep, "rep6", &l, 90, 1000)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "All 6 representative licences are in use. Ask a colleague to log out, or buy more licences."
        );
        // Other kinds have their own limits.
        ledger
            .checkout(SeatKind::JumpActive, "jc", &l, 90, 1000)
            .unwrap();
        assert_eq!(ledger.counts(&l).rep_in_use, 6);
        assert_eq!(ledger.counts(&l).jump_active_in_use, 1);
    }

    #[test]
    fn same_holder_gets_same_lease() {
        let l = licence(1);
        let mut ledger = Ledger::default();
        let a = ledger
            .checkout(SeatKind::Rep, "alice", &l, 90, 1000)
            .unwrap();
        let b = ledger
            .checkout(SeatKind::Rep, "alice", &l, 90, 1010)
            .unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(b.expires_at, 1100);
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn release_frees_and_expiry_returns_seats() {
        let l = licence(1);
        let mut ledger = Ledger::default();
        let a = ledger
            .checkout(SeatKind::Rep, "alice", &l, 90, 1000)
            .unwrap();
        assert!(ledger.checkout(SeatKind::Rep, "bob", &l, 90, 1000).is_err());
        assert!(ledger.release(&a.id, 1000));
        assert!(!ledger.release(&a.id, 1000));
        let b = ledger.checkout(SeatKind::Rep, "bob", &l, 90, 1000).unwrap();
        // Renewed before expiry: kept.
        assert_eq!(ledger.renew(&b.id, 90, 1080).unwrap().expires_at, 1170);
        assert!(
            ledger
                .checkout(SeatKind::Rep, "carol", &l, 90, 1169)
                .is_err()
        );
        // Not renewed: returns by itself.
        assert!(!ledger.sweep(1169));
        assert!(ledger.sweep(1170));
        assert!(
            ledger
                .checkout(SeatKind::Rep, "carol", &l, 90, 1170)
                .is_ok()
        );
        assert!(matches!(
            ledger.renew(&b.id, 90, 1170),
            Err(SeatError::UnknownLease { .. })
        ));
    }

    #[test]
    fn empty_holder_is_refused() {
        let mut ledger = Ledger::default();
        assert_eq!(
            ledger.checkout(SeatKind::Rep, " ", &licence(1), 90, 0),
            Err(SeatError::EmptyHolder)
        );
    }

    #[test]
    fn store_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("data"));
        assert!(store.load().unwrap().is_empty());
        let mut ledger = Ledger::default();
        ledger
            .checkout(SeatKind::Rep, "alice", &licence(2), 90, 5)
            .unwrap();
        store.save(&ledger).unwrap();
        assert_eq!(store.load().unwrap(), ledger);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![LEASES_FILE.to_owned()]);
    }

    #[test]
    fn damaged_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.path(), b"{nope").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Parse { .. })));
    }
}
