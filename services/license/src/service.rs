//! The D-Bus service `org.lifeline.License1` and the daemon's run loop.
//!
//! One object at `/org/lifeline/License1` serves [`LicenseService`]. State (licence in force
//! and the seat ledger) sits behind one mutex that is never held across an `await`; every
//! call sweeps expired leases, applies its change to a copy of the ledger, saves the copy and
//! only then makes it current, so a seat is never granted that a crash would forget.
//! A timer sweeps too (so expired seats return and `Changed` is emitted without any call),
//! re-reads the licence when the UTC day changes (so an expiry takes effect) and pings the
//! systemd watchdog: a stuck state lock stops the pings.
//!
//! `InstallLicence` verifies new licence text like a loaded file, writes it atomically over
//! the licence file only when accepted (see [`licence_file::install`]) and reloads; calls are
//! serialised by their own lock, and the file is written while the state lock is not held.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifeline_license_api::{
    BUS_NAME, Counts, Lease, LicenceStatus, LicenseError, MAX_LICENCE_BYTES, OBJECT_PATH, Refusal,
    SeatKind,
};
use time::{Date, OffsetDateTime};
use zbus::object_server::SignalEmitter;

use crate::env::IdentitySources;
use crate::keys::TrustedKeys;
use crate::licence_file::{self, InstallError};
use crate::seats::{Ledger, SeatError, Store, StoreError};

/// Default lease time-to-live: the holder renews well within it.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 90;
/// Default licence file location.
pub const DEFAULT_LICENCE_PATH: &str = "/data/lifeline/license/licence.json";
/// Default directory for the lease file.
pub const DEFAULT_DATA_DIR: &str = "/data/lifeline/license";

/// How often the daemon checks that the bus still answers.
const BUS_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Which bus to serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    System,
    Address(String),
}

/// Everything the daemon needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub bus: Bus,
    pub licence_path: PathBuf,
    pub data_dir: PathBuf,
    pub identity: IdentitySources,
    pub lease_ttl_secs: u64,
    pub keys: TrustedKeys,
}

/// Why the daemon stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the D-Bus address \"{address}\" is not valid")]
    BadAddress {
        address: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("cannot connect to the D-Bus bus ({bus})")]
    Connect {
        bus: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error(
        "cannot own the name {BUS_NAME} on the bus: another licence manager is running, or the bus policy does not allow this user"
    )]
    NameTaken {
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("lost the connection to the D-Bus bus ({bus})")]
    BusLost { bus: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot move the damaged lease file aside")]
    QuarantineLeases {
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// Whether a person's configuration (rather than the system) is at fault: exit 2.
    pub fn is_config(&self) -> bool {
        match self {
            RunError::BadAddress { .. } => true,
            RunError::Connect { .. }
            | RunError::NameTaken { .. }
            | RunError::BusLost { .. }
            | RunError::Store(_)
            | RunError::QuarantineLeases { .. } => false,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

struct State {
    status: LicenceStatus,
    /// Why the installed licence was refused, while `status` is the evaluation licence.
    refusal: Option<Refusal>,
    loaded_on: Date,
    ledger: Ledger,
}

struct Shared {
    state: Mutex<State>,
    store: Store,
    config: Config,
    /// Serialises `InstallLicence` calls (verify, write, reload as one step).
    install: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (changes are applied to a
        // copy first), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_status(&self) -> (LicenceStatus, Option<Refusal>) {
        let identity = self.config.identity.read();
        let (status, refusal) = licence_file::load_verdict(
            &self.config.licence_path,
            &self.config.keys,
            &identity,
            today(),
        );
        match &status.reason {
            Some(reason) => tracing::warn!(%reason, "running on the evaluation licence"),
            None => tracing::info!(
                serial = %status.licence.serial,
                model = %status.licence.model,
                rep_seats = status.licence.rep_seats,
                "licence accepted"
            ),
        }
        (status, refusal)
    }

    /// Apply `f` to a copy of the ledger (after a sweep), save the copy if it differs, then
    /// make it current. Returns `f`'s value and the counts if they changed.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Ledger, &LicenceStatus, u64) -> Result<T, SeatError>,
    ) -> Result<(T, Option<Counts>), LicenseError> {
        let now = now_secs();
        let mut st = self.lock();
        let before = st.ledger.counts(&st.status.licence);
        let mut ledger = st.ledger.clone();
        ledger.sweep(now);
        let result = f(&mut ledger, &st.status, now);
        if ledger != st.ledger {
            if let Err(e) = self.store.save(&ledger) {
                tracing::error!(error = %anyhow::Error::from(e), "cannot save seat leases");
                return Err(LicenseError::Failed(
                    "The licence service could not save its seat records, so no seat was changed. \
                     Check the appliance's data storage on the status page."
                        .to_owned(),
                ));
            }
            st.ledger = ledger;
        }
        let after = st.ledger.counts(&st.status.licence);
        let value = result.map_err(seat_error)?;
        Ok((value, (after != before).then_some(after)))
    }

    fn counts(&self) -> Result<(Counts, Option<Counts>), LicenseError> {
        self.change(|ledger, status, _| Ok(ledger.counts(&status.licence)))
    }
}

fn seat_error(e: SeatError) -> LicenseError {
    match e {
        SeatError::Exhausted { .. } => LicenseError::SeatsExhausted(e.to_string()),
        SeatError::UnknownLease { .. } => LicenseError::UnknownLease(e.to_string()),
        SeatError::EmptyHolder => LicenseError::InvalidArgument(e.to_string()),
    }
}

/// The object served at `/org/lifeline/License1`.
pub struct LicenseService {
    shared: Arc<Shared>,
}

impl LicenseService {
    /// After a reload that changed the licence in force (`changed` holds the new counts):
    /// the properties' change and `Changed`.
    async fn reloaded(&self, emitter: &SignalEmitter<'_>, changed: Option<Counts>) {
        if changed.is_none() {
            return;
        }
        if let Err(e) = self.licence_changed(emitter).await {
            tracing::warn!("cannot emit PropertiesChanged: {e}");
        }
        if let Err(e) = self.refusal_changed(emitter).await {
            tracing::warn!("cannot emit PropertiesChanged: {e}");
        }
        Self::notify(emitter, changed).await;
    }

    async fn notify(emitter: &SignalEmitter<'_>, changed: Option<Counts>) {
        if let Some(counts) = changed
            && let Err(e) = Self::changed(emitter, counts).await
        {
            tracing::warn!("cannot emit Changed: {e}");
        }
    }
}

#[zbus::interface(name = "org.lifeline.License1")]
impl LicenseService {
    /// Take a seat of `kind` (`rep`, `jump-active`, `jump-passive`) for `holder`. The same
    /// holder checking out the same kind again gets its lease back, renewed.
    async fn checkout_seat(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        kind: &str,
        holder: &str,
    ) -> Result<Lease, LicenseError> {
        let kind: SeatKind = kind
            .parse()
            .map_err(|e: lifeline_license_api::ParseNameError| {
                LicenseError::InvalidArgument(format!("{e}."))
            })?;
        let ttl = self.shared.config.lease_ttl_secs;
        let (lease, changed) = self.shared.change(|ledger, status, now| {
            ledger.checkout(kind, holder, &status.licence, ttl, now)
        })?;
        Self::notify(&emitter, changed).await;
        Ok(lease)
    }

    /// Extend a lease to now + time-to-live.
    async fn renew(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        lease_id: &str,
    ) -> Result<Lease, LicenseError> {
        let ttl = self.shared.config.lease_ttl_secs;
        let (lease, changed) = self
            .shared
            .change(|ledger, _, now| ledger.renew(lease_id, ttl, now))?;
        Self::notify(&emitter, changed).await;
        Ok(lease)
    }

    /// Give a seat back. Returns whether the lease was held.
    async fn release(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        lease_id: &str,
    ) -> Result<bool, LicenseError> {
        let (held, changed) = self
            .shared
            .change(|ledger, _, now| Ok(ledger.release(lease_id, now)))?;
        Self::notify(&emitter, changed).await;
        Ok(held)
    }

    /// Seats in use and limits.
    async fn counts(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<Counts, LicenseError> {
        let (counts, changed) = self.shared.counts()?;
        Self::notify(&emitter, changed).await;
        Ok(counts)
    }

    /// Re-read the licence file and the appliance identity.
    async fn reload(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), LicenseError> {
        let changed = reload(&self.shared);
        self.reloaded(&emitter, changed).await;
        Ok(())
    }

    /// Verify a licence file's text exactly as a loaded file is verified and, only if it is
    /// accepted, write it atomically over the licence file and reload (same signals as
    /// `Reload`). Returns the licence now in force as JSON. A refused licence changes nothing
    /// and is answered with `Error.LicenceRefused` and the sentence why. `actor` (who asked)
    /// goes to the log.
    async fn install_licence(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        licence: &str,
        actor: &str,
    ) -> Result<String, LicenseError> {
        let actor: String = actor
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let changed = install(&self.shared, licence.as_bytes(), &actor)?;
        self.reloaded(&emitter, changed).await;
        Ok(self.shared.lock().status.to_json())
    }

    /// The licence in force, as JSON (`lifeline_license_api::LicenceStatus`).
    #[zbus(property)]
    async fn licence(&self) -> String {
        self.shared.lock().status.to_json()
    }

    /// Why the installed licence was refused, as JSON (`lifeline_license_api::Refusal`),
    /// `null` while a real licence is in force.
    #[zbus(property)]
    async fn refusal(&self) -> String {
        Refusal::to_json(self.shared.lock().refusal.as_ref())
    }

    /// Emitted on every licence or count change, with the new counts.
    #[zbus(signal)]
    async fn changed(emitter: &SignalEmitter<'_>, counts: Counts) -> zbus::Result<()>;
}

/// Re-read the licence; the new counts if the licence in force changed.
fn reload(shared: &Shared) -> Option<Counts> {
    let (status, refusal) = shared.load_status();
    let mut st = shared.lock();
    st.loaded_on = today();
    if st.status == status && st.refusal == refusal {
        return None;
    }
    st.status = status;
    st.refusal = refusal;
    Some(st.ledger.counts(&st.status.licence))
}

/// Verify and install a licence, then reload; the new counts if the licence in force
/// changed. Nothing is written unless the licence is accepted.
fn install(shared: &Shared, bytes: &[u8], actor: &str) -> Result<Option<Counts>, LicenseError> {
    let _one_at_a_time = shared.install.lock().unwrap_or_else(|p| p.into_inner());
    let refused = |sentence: String| {
        tracing::warn!(event = "licence_refused", %actor, reason = %sentence, "licence not installed");
        LicenseError::LicenceRefused(sentence)
    };
    // Checked before anything is parsed.
    if bytes.len() > MAX_LICENCE_BYTES {
        return Err(refused(lifeline_license_api::too_big_sentence(bytes.len())));
    }
    let identity = shared.config.identity.read();
    let path = &shared.config.licence_path;
    match licence_file::install(path, bytes, &shared.config.keys, &identity, today()) {
        Ok(licence) => {
            tracing::info!(
                event = "licence_installed",
                %actor,
                serial = %licence.serial,
                edition = %licence.edition,
                rep_seats = licence.rep_seats,
                expires = %licence.expires.map(crate::format_date).unwrap_or_else(|| "never".into()),
                path = %path.display(),
                "licence installed"
            );
            Ok(reload(shared))
        }
        Err(InstallError::Refused(e)) => Err(refused(e.to_string())),
        Err(e @ InstallError::Write { .. }) => {
            tracing::error!(event = "licence_refused", %actor, error = %anyhow::Error::from(e), "cannot write the licence file");
            Err(LicenseError::Failed(
                "The licence is valid but the licence service could not save it, so nothing was \
                 changed. Check the appliance's data storage on the status page, then try again."
                    .to_owned(),
            ))
        }
    }
}

/// Load the ledger, moving a damaged lease file aside (its seats are lost; the alternative,
/// refusing to start, would lock every rep out).
fn load_ledger(store: &Store) -> Result<Ledger, RunError> {
    match store.load() {
        Ok(l) => Ok(l),
        Err(e @ StoreError::Parse { .. }) => {
            let path = store.path();
            let aside = path.with_extension("json.damaged");
            tracing::error!(
                error = %anyhow::Error::from(e),
                moved_to = %aside.display(),
                "seat leases are damaged; starting with no seats held"
            );
            std::fs::rename(&path, &aside)
                .map_err(|source| RunError::QuarantineLeases { source })?;
            Ok(Ledger::default())
        }
        Err(e) => Err(e.into()),
    }
}

/// Run the daemon until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let store = Store::new(&config.data_dir);
    let mut ledger = load_ledger(&store)?;
    if ledger.sweep(now_secs()) {
        store.save(&ledger)?;
    }
    tracing::info!(held = ledger.len(), "seat leases loaded");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            status: LicenceStatus {
                licence: licence_file::evaluation(&config.identity.read(), today()),
                evaluation: true,
                reason: None,
            },
            refusal: None,
            loaded_on: today(),
            ledger,
        }),
        store,
        config: config.clone(),
        install: Mutex::new(()),
    });
    reload(&shared);

    let builder = match &config.bus {
        Bus::System => zbus::connection::Builder::system().map_err(|source| RunError::Connect {
            bus: "system bus".into(),
            source: Box::new(source),
        })?,
        Bus::Address(a) => zbus::connection::Builder::address(a.as_str()).map_err(|source| {
            RunError::BadAddress {
                address: a.clone(),
                source: Box::new(source),
            }
        })?,
    };
    let bus_label = match &config.bus {
        Bus::System => "system bus".to_owned(),
        Bus::Address(a) => a.clone(),
    };
    let service = LicenseService {
        shared: shared.clone(),
    };
    let conn = builder
        .name(BUS_NAME)
        .map_err(|source| RunError::NameTaken {
            source: Box::new(source),
        })?
        .serve_at(OBJECT_PATH, service)
        .map_err(|source| RunError::Connect {
            bus: bus_label.clone(),
            source: Box::new(source),
        })?
        .build()
        .await
        .map_err(|source| match source {
            zbus::Error::NameTaken => RunError::NameTaken {
                source: Box::new(source),
            },
            source => RunError::Connect {
                bus: bus_label.clone(),
                source: Box::new(source),
            },
        })?;
    tracing::info!(bus = %bus_label, name = BUS_NAME, "serving");
    notify(&[sd_notify::NotifyState::Ready]);

    let iface = conn
        .object_server()
        .interface::<_, LicenseService>(OBJECT_PATH)
        .await
        .map_err(|source| RunError::Connect {
            bus: bus_label.clone(),
            source: Box::new(source),
        })?;

    let mut usec = 0u64;
    let watchdog = (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec));
    if let Some(w) = watchdog {
        tracing::info!(interval = ?w, "systemd watchdog enabled");
    }
    let tick = watchdog
        .map(|w| (w / 2).min(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // zbus does not announce a dropped bus connection to a service; ask the bus daemon
    // something cheap now and then, and stop (systemd restarts us) when it does not answer.
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(|source| RunError::Connect {
            bus: bus_label.clone(),
            source: Box::new(source),
        })?;
    let mut bus_check = tokio::time::interval(BUS_CHECK_INTERVAL);
    bus_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = bus_check.tick() => {
                match tokio::time::timeout(BUS_CHECK_INTERVAL, dbus.get_id()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!("the bus does not answer: {e}");
                        return Err(RunError::BusLost { bus: bus_label });
                    }
                    Err(_) => {
                        tracing::error!("the bus did not answer within {BUS_CHECK_INTERVAL:?}");
                        return Err(RunError::BusLost { bus: bus_label });
                    }
                }
            }
            _ = timer.tick() => {
                housekeeping(&shared, &iface).await;
                if watchdog.is_some() {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }
    tracing::info!("stopping");
    notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// Sweep expired leases and follow a change of day; emit what changed.
async fn housekeeping(shared: &Shared, iface: &zbus::object_server::InterfaceRef<LicenseService>) {
    let new_day = shared.lock().loaded_on != today();
    if new_day && let changed @ Some(_) = reload(shared) {
        let svc = iface.get().await;
        svc.reloaded(iface.signal_emitter(), changed).await;
    }
    match shared.counts() {
        Ok((_, changed)) => LicenseService::notify(iface.signal_emitter(), changed).await,
        Err(e) => tracing::warn!("sweep failed: {}", e.user_message()),
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
