//! The relay's licence client: seats from `org.lifeline.License1`, or the evaluation licence.
//!
//! # Design
//!
//! [`Licensing`] is the one object the rest of the relay asks about licences. Its small API
//! is meant for every kind of seat: [`Licensing::checkout`], [`Licensing::renew`],
//! [`Licensing::release`], [`Licensing::counts`], [`Licensing::limit`] and
//! [`Licensing::status`]. It keeps, per holder (`rep:alice`, a jump client's id), the lease
//! the licence manager granted, and a renewal task ([`Licensing::spawn_renewer`]) pushes
//! every lease's expiry forward well within its time-to-live for as long as the holder is in
//! use. A lease the manager no longer knows (it expired while the relay was away) is checked
//! out again.
//!
//! Which backend: at start the relay connects to the bus (`LIFELINE_DBUS_ADDRESS`, or the
//! system bus) and asks whether `org.lifeline.License1` has an owner. Without the bus or the
//! licence manager the relay runs in **evaluation mode**: it counts seats itself against the
//! built-in evaluation licence (one representative, a few jump clients) and says so on every
//! page that shows the licence. It keeps looking for the licence manager every few seconds and
//! switches to it when it appears (seats held locally are checked out there). Once it has
//! seen the manager, it never falls back: while the manager restarts, renewals are retried
//! and existing seats are kept (the manager persists them), and new check-outs are refused
//! with a sentence that says the licence service is not answering.
//!
//! Representatives ([`RepSeats`]): a rep takes a seat when logging in (cookie or API token);
//! the seat stays in use while the rep has a console open or made a request within the idle
//! time (default 10 minutes). It is released on logout; when the rep's last console
//! disconnects (tab closed, link lost) and no request follows within a short grace
//! ([`DISCONNECT_GRACE`], so reloading the page keeps the seat); or when idle with no
//! console open.
//! The rep beyond the last seat is told plainly that all licences are in use.
//!
//! Installing a licence ([`Licensing::install`], the appliance page's upload) goes to the
//! manager's `InstallLicence`, which verifies, writes and reloads; the relay keeps no copy of
//! the licence, so seats and the evaluation banner follow at once.
//!
//! # Limits
//!
//! - The renewal task runs every 20 s (or a third of the lease time-to-live, if shorter).
//! - In evaluation mode, seats held locally are lost when the relay restarts (the reps log in
//!   again); with the licence manager they are not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_license_api::{
    BUS_NAME, Counts, EVALUATION_JUMP_LIMIT, EVALUATION_REP_SEATS, Edition, Licence, LicenceStatus,
    License1Proxy, LicenseError, Model, SeatKind,
};
use zbus::proxy::CacheProperties;

/// No call to the licence manager waits longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the relay looks for a licence manager while in evaluation mode.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Why a seat was not granted; `Display` is the sentence for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    /// Every seat of the kind is taken.
    #[error("{0}")]
    Exhausted(String),
    /// The licence manager did not answer or refused for another reason.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a licence was not installed; `Display` is the sentence for the administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The licence manager refused the licence (nothing changed).
    #[error("{0}")]
    Refused(String),
    /// The licence manager is not reachable, or failed to save the licence.
    #[error("{0}")]
    Unavailable(String),
}

/// How long installing a licence may take (it is written and flushed to disk).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Held {
    kind: SeatKind,
    /// The manager's lease id; `None` for a seat counted locally (evaluation mode).
    lease: Option<String>,
    consoles: u32,
    last_seen: Instant,
    /// When the last console closed, unless a request came since.
    disconnected_at: Option<Instant>,
}

/// How long a representative's seat outlives the last console's disconnection when no
/// request follows (a page reload reconnects well within it).
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Evaluation,
    Daemon,
}

struct Inner {
    proxy: Option<License1Proxy<'static>>,
    conn: Option<zbus::Connection>,
    backend: Mutex<Backend>,
    held: Mutex<HashMap<String, Held>>,
    /// Serialises check-outs so two logins cannot both take the last local seat.
    checkout_lock: tokio::sync::Mutex<()>,
    idle: Duration,
    disconnect_grace: Duration,
    reason: Mutex<String>,
}

/// The licence client (cheap to clone).
#[derive(Clone)]
pub struct Licensing {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Licensing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licensing")
            .field(
                "backend",
                &*self.inner.backend.lock().unwrap_or_else(|e| e.into_inner()),
            )
            .finish()
    }
}

/// The licence in force and where it comes from.
#[derive(Debug, Clone)]
pub struct LicenceView {
    pub status: LicenceStatus,
    /// True when the relay counts seats itself because no licence manager answers.
    pub relay_evaluation_mode: bool,
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn evaluation_licence() -> Licence {
    Licence {
        serial: "unknown".into(),
        model: Model::B200,
        edition: Edition::Standard,
        rep_seats: EVALUATION_REP_SEATS,
        jump_active_limit: EVALUATION_JUMP_LIMIT,
        jump_passive_limit: EVALUATION_JUMP_LIMIT,
        issued: today(),
        expires: None,
        maintenance_until: None,
        customer: String::new(),
    }
}

fn exhausted(kind: SeatKind, limit: u32) -> SeatError {
    SeatError::Exhausted(format!(
        "All {limit} {} are in use. Ask a colleague to log out, or buy more licences.",
        kind.licence_noun()
    ))
}

fn unavailable(e: &LicenseError) -> SeatError {
    SeatError::Unavailable(e.user_message())
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, LicenseError>>,
) -> Result<T, LicenseError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(LicenseError::ZBus(zbus::Error::Failure(
            "no answer within 3 s".into(),
        ))),
    }
}

impl Licensing {
    /// Connect to the bus at `address` (the system bus when `None`) and look for the
    /// licence manager. Never fails: without them the relay runs in evaluation mode.
    pub async fn connect(address: Option<&str>, idle: Duration) -> Licensing {
        Self::connect_with_grace(address, idle, DISCONNECT_GRACE).await
    }

    /// [`Licensing::connect`] with another disconnection grace than [`DISCONNECT_GRACE`].
    pub async fn connect_with_grace(
        address: Option<&str>,
        idle: Duration,
        disconnect_grace: Duration,
    ) -> Licensing {
        let conn = tokio::time::timeout(CALL_TIMEOUT, async {
            match address {
                Some(a) => zbus::connection::Builder::address(a)?.build().await,
                None => zbus::Connection::system().await,
            }
        })
        .await;
        let (conn, reason) = match conn {
            Ok(Ok(c)) => (Some(c), String::new()),
            Ok(Err(e)) => (
                None,
                format!("the message bus of the appliance is not reachable ({e})"),
            ),
            Err(_) => (
                None,
                "the message bus of the appliance did not answer".into(),
            ),
        };
        let proxy = match &conn {
            Some(c) => License1Proxy::builder(c)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .ok(),
            None => None,
        };
        let l = Licensing {
            inner: Arc::new(Inner {
                proxy,
                conn,
                backend: Mutex::new(Backend::Evaluation),
                held: Mutex::new(HashMap::new()),
                checkout_lock: tokio::sync::Mutex::new(()),
                idle,
                disconnect_grace,
                reason: Mutex::new(reason),
            }),
        };
        l.probe().await;
        match l.backend() {
            Backend::Daemon => tracing::info!("licence manager found: seats come from {BUS_NAME}"),
            Backend::Evaluation => tracing::warn!(
                reason = %l.inner.reason.lock().unwrap_or_else(|e| e.into_inner()),
                "no licence manager: running in evaluation mode (one representative seat)"
            ),
        }
        l
    }

    fn backend(&self) -> Backend {
        *self.inner.backend.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the relay counts seats itself (no licence manager seen yet).
    pub fn evaluation_mode(&self) -> bool {
        self.backend() == Backend::Evaluation
    }

    /// Look for the licence manager; on first sight, move local seats to it.
    async fn probe(&self) {
        if self.backend() == Backend::Daemon {
            return;
        }
        let Some(conn) = &self.inner.conn else {
            return;
        };
        let owned = match zbus::fdo::DBusProxy::new(conn).await {
            Ok(dbus) => tokio::time::timeout(
                CALL_TIMEOUT,
                dbus.name_has_owner(zbus::names::BusName::try_from(BUS_NAME).expect("literal")),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false),
            Err(_) => false,
        };
        if !owned {
            *self.inner.reason.lock().unwrap_or_else(|e| e.into_inner()) =
                "the licence service of the appliance is not running".into();
            return;
        }
        let _guard = self.inner.checkout_lock.lock().await;
        *self.inner.backend.lock().unwrap_or_else(|e| e.into_inner()) = Backend::Daemon;
        let local: Vec<(String, SeatKind)> = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, h)| h.lease.is_none())
            .map(|(k, h)| (k.clone(), h.kind))
            .collect();
        for (holder, kind) in local {
            let got = self.daemon_checkout(kind, &holder).await;
            let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
            match got {
                Ok(id) => {
                    if let Some(h) = held.get_mut(&holder) {
                        h.lease = Some(id);
                    }
                }
                Err(e) => {
                    tracing::warn!(%holder, error = %e, "seat not granted by the licence manager");
                    held.remove(&holder);
                }
            }
        }
    }

    async fn daemon_checkout(&self, kind: SeatKind, holder: &str) -> Result<String, SeatError> {
        let Some(proxy) = &self.inner.proxy else {
            return Err(SeatError::Unavailable(
                "The licence service of this appliance could not be reached.".into(),
            ));
        };
        match bounded(proxy.checkout_seat(kind, holder)).await {
            Ok(lease) => Ok(lease.id),
            Err(LicenseError::SeatsExhausted(m)) => Err(SeatError::Exhausted(m)),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Take (or keep) a seat of `kind` for `holder`. Taking a seat already held only marks
    /// the holder as seen.
    pub async fn checkout(&self, kind: SeatKind, holder: &str) -> Result<(), SeatError> {
        if self.touch(holder) {
            return Ok(());
        }
        let _guard = self.inner.checkout_lock.lock().await;
        if self.touch(holder) {
            return Ok(());
        }
        let lease = match self.backend() {
            Backend::Daemon => Some(self.daemon_checkout(kind, holder).await?),
            Backend::Evaluation => {
                let limit = evaluation_licence().limit(kind);
                let in_use = self
                    .inner
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter(|h| h.kind == kind)
                    .count();
                if in_use >= limit as usize {
                    return Err(exhausted(kind, limit));
                }
                None
            }
        };
        self.inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                holder.to_string(),
                Held {
                    kind,
                    lease,
                    consoles: 0,
                    last_seen: Instant::now(),
                    disconnected_at: None,
                },
            );
        tracing::info!(%holder, kind = %kind, "seat taken");
        Ok(())
    }

    /// Mark a holder as active now; `false` if it holds no seat.
    pub fn touch(&self, holder: &str) -> bool {
        match self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(holder)
        {
            Some(h) => {
                h.last_seen = Instant::now();
                h.disconnected_at = None;
                true
            }
            None => false,
        }
    }

    /// Whether `holder` holds a seat.
    pub fn holds(&self, holder: &str) -> bool {
        self.inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(holder)
    }

    /// Count an open connection (console) that keeps the seat in use.
    pub fn open(&self, holder: &str) {
        if let Some(h) = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(holder)
        {
            h.consoles += 1;
            h.last_seen = Instant::now();
            h.disconnected_at = None;
        }
    }

    /// The connection counted by [`Licensing::open`] closed.
    pub fn close(&self, holder: &str) {
        if let Some(h) = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(holder)
        {
            h.consoles = h.consoles.saturating_sub(1);
            h.last_seen = Instant::now();
            if h.consoles == 0 {
                h.disconnected_at = Some(h.last_seen);
            }
        }
    }

    /// Push the lease of `holder` forward now.
    pub async fn renew(&self, holder: &str) -> Result<(), SeatError> {
        let Some(h) = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(holder)
            .cloned()
        else {
            return Err(SeatError::Unavailable("No seat is held.".into()));
        };
        let (Some(lease), Some(proxy)) = (h.lease, &self.inner.proxy) else {
            return Ok(());
        };
        match bounded(proxy.renew(&lease)).await {
            Ok(_) => Ok(()),
            Err(LicenseError::UnknownLease(_)) => {
                // It expired while we could not renew: take it again.
                match self.daemon_checkout(h.kind, holder).await {
                    Ok(id) => {
                        if let Some(h) = self
                            .inner
                            .held
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_mut(holder)
                        {
                            h.lease = Some(id);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.inner
                            .held
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(holder);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Give the seat of `holder` back (no-op if it holds none).
    pub async fn release(&self, holder: &str) {
        let h = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(holder);
        if let (
            Some(Held {
                lease: Some(id), ..
            }),
            Some(proxy),
        ) = (h, &self.inner.proxy)
            && let Err(e) = bounded(proxy.release(&id)).await
        {
            tracing::warn!(%holder, error = %e.user_message(), "cannot release the seat; it expires by itself");
        }
        tracing::info!(%holder, "seat released");
    }

    /// Seats in use and limits.
    pub async fn counts(&self) -> Counts {
        if self.backend() == Backend::Daemon
            && let Some(proxy) = &self.inner.proxy
            && let Ok(c) = bounded(proxy.counts()).await
        {
            return c;
        }
        let held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = |k: SeatKind| held.values().filter(|h| h.kind == k).count() as u32;
        let l = evaluation_licence();
        Counts {
            rep_in_use: n(SeatKind::Rep),
            rep_limit: l.rep_seats,
            jump_active_in_use: n(SeatKind::JumpActive),
            jump_active_limit: l.jump_active_limit,
            jump_passive_in_use: n(SeatKind::JumpPassive),
            jump_passive_limit: l.jump_passive_limit,
        }
    }

    /// The limit for a kind of seat.
    pub async fn limit(&self, kind: SeatKind) -> u32 {
        self.counts().await.limit(kind)
    }

    /// The licence in force.
    pub async fn status(&self) -> LicenceView {
        if self.backend() == Backend::Daemon
            && let Some(proxy) = &self.inner.proxy
        {
            match bounded(proxy.licence_status()).await {
                Ok(status) => {
                    return LicenceView {
                        status,
                        relay_evaluation_mode: false,
                    };
                }
                Err(e) => tracing::warn!(error = %e.user_message(), "cannot read the licence"),
            }
        }
        let reason = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        LicenceView {
            status: LicenceStatus {
                licence: evaluation_licence(),
                evaluation: true,
                reason: Some(if reason.is_empty() {
                    "The licence service of the appliance is not answering.".into()
                } else {
                    format!("This appliance runs on the evaluation licence: {reason}.")
                }),
            },
            relay_evaluation_mode: self.backend() == Backend::Evaluation,
        }
    }

    /// Install a licence file's text through the licence manager (`InstallLicence`); the
    /// licence now in force. `actor` names who asked (e.g. `web:alice`). Without the
    /// licence manager nothing can be installed. The relay keeps no copy of the licence:
    /// [`Licensing::status`] and [`Licensing::counts`] ask the manager, so they follow at
    /// once.
    pub async fn install(&self, licence: &str, actor: &str) -> Result<LicenceStatus, InstallError> {
        self.probe().await;
        let proxy = match (&self.inner.proxy, self.backend()) {
            (Some(p), Backend::Daemon) => p,
            _ => {
                return Err(InstallError::Unavailable(
                    "The licence service of this appliance is not running, so no licence can be \
                     installed. Check its state on the appliance status page, then try again."
                        .into(),
                ));
            }
        };
        let call = tokio::time::timeout(INSTALL_TIMEOUT, proxy.install_licence(licence, actor));
        let json = match call.await {
            Ok(Ok(json)) => json,
            Ok(Err(LicenseError::LicenceRefused(m))) => return Err(InstallError::Refused(m)),
            Ok(Err(e)) => return Err(InstallError::Unavailable(e.user_message())),
            Err(_) => {
                return Err(InstallError::Unavailable(
                    "The licence service did not answer in time. Reload the page to see \
                     whether the licence was installed."
                        .into(),
                ));
            }
        };
        LicenceStatus::from_json(&json).map_err(|e| {
            InstallError::Unavailable(format!(
                "The licence service sent a licence this program cannot read ({e}). \
                 Update the appliance software so all its services are the same version."
            ))
        })
    }

    /// One round of the renewal task: renew seats in use, release idle ones.
    pub async fn renew_round(&self) {
        self.probe().await;
        let idle = self.inner.idle;
        let grace = self.inner.disconnect_grace.min(idle);
        let (keep, drop): (Vec<_>, Vec<_>) = self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, h)| {
                let gone = h.disconnected_at.is_some_and(|t| t.elapsed() >= grace);
                let in_use = h.consoles > 0 || (h.last_seen.elapsed() < idle && !gone);
                (k.clone(), in_use)
            })
            .partition(|(_, keep)| *keep);
        for (holder, _) in drop {
            tracing::info!(%holder, "seat no longer in use (console closed or idle); releasing it");
            self.release(&holder).await;
        }
        for (holder, _) in keep {
            if let Err(e) = self.renew(&holder).await {
                tracing::warn!(%holder, error = %e, "cannot renew the seat; will retry");
            }
        }
    }

    /// Renew and expire seats every `every` (and look for the licence manager every few
    /// seconds while in evaluation mode) until the relay stops.
    pub fn spawn_renewer(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut renew = tokio::time::interval(every);
            renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut probe = tokio::time::interval(PROBE_EVERY);
            loop {
                tokio::select! {
                    _ = renew.tick() => me.renew_round().await,
                    _ = probe.tick(), if me.evaluation_mode() => me.probe().await,
                }
            }
        })
    }
}

/// Representatives' seats: the holder name is `rep:<username>`.
#[derive(Debug, Clone)]
pub struct RepSeats(pub Licensing);

impl RepSeats {
    pub fn holder(username: &str) -> String {
        format!("rep:{username}")
    }

    /// At login and on every use: take the seat if not held.
    pub async fn take(&self, username: &str) -> Result<(), SeatError> {
        self.0
            .checkout(SeatKind::Rep, &Self::holder(username))
            .await
    }

    pub async fn release(&self, username: &str) {
        self.0.release(&Self::holder(username)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evaluation_mode_counts_one_rep_seat() {
        let l =
            Licensing::connect(Some("unix:path=/nonexistent/bus"), Duration::from_secs(600)).await;
        assert!(l.evaluation_mode());
        let reps = RepSeats(l.clone());
        reps.take("alice").await.unwrap();
        reps.take("alice").await.unwrap();
        let err = reps.take("bob").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "All 1 representative licences are in use. Ask a colleague to log out, or buy more licences."
        );
        assert_eq!(l.counts().await.rep_in_use, 1);
        let view = l.status().await;
        assert!(view.status.evaluation && view.relay_evaluation_mode);
        assert!(view.status.reason.unwrap().contains("evaluation"));
        reps.release("alice").await;
        reps.take("bob").await.unwrap();
    }

    #[tokio::test]
    async fn idle_seats_are_released_unless_a_console_is_open() {
        let l = Licensing::connect(Some("unix:path=/nonexistent/bus"), Duration::ZERO).await;
        l.checkout(SeatKind::Rep, "rep:a").await.unwrap();
        l.open("rep:a");
        l.renew_round().await;
        assert!(l.holds("rep:a"));
        l.close("rep:a");
        l.renew_round().await;
        assert!(!l.holds("rep:a"));
    }

    #[tokio::test]
    async fn closing_the_last_console_releases_the_seat_after_the_grace() {
        let l = Licensing::connect_with_grace(
            Some("unix:path=/nonexistent/bus"),
            Duration::from_secs(600),
            Duration::ZERO,
        )
        .await;
        l.checkout(SeatKind::Rep, "rep:a").await.unwrap();
        // Two consoles: closing one keeps the seat.
        l.open("rep:a");
        l.open("rep:a");
        l.close("rep:a");
        l.renew_round().await;
        assert!(l.holds("rep:a"));
        // A request after the last console closed (browsing another page) keeps it too.
        l.close("rep:a");
        assert!(l.touch("rep:a"));
        l.renew_round().await;
        assert!(l.holds("rep:a"));
        // The last console closes and nothing follows: released, and the seat is free.
        l.open("rep:a");
        l.close("rep:a");
        l.renew_round().await;
        assert!(!l.holds("rep:a"));
        l.checkout(SeatKind::Rep, "rep:b").await.unwrap();
        // Within the grace the seat stays (a reload reconnects).
        let l =
            Licensing::connect(Some("unix:path=/nonexistent/bus"), Duration::from_secs(600)).await;
        l.checkout(SeatKind::Rep, "rep:a").await.unwrap();
        l.open("rep:a");
        l.close("rep:a");
        l.renew_round().await;
        assert!(l.holds("rep:a"));
    }
}
