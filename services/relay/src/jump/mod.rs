//! Jump clients on the relay: registration with a deployment key, the live registry of
//! connected clients, the reconnection rate limit and the licence limit.
//!
//! # How it works
//! * An administrator creates a deployment key ([`api`]: valid until a date, a number of
//!   uses, a group, a mode). Only its SHA-256 is stored. The key is put into a downloaded
//!   installer (the stock client with a `jump_install` ticket trailer).
//! * The installer makes its own ed25519 key pair and registers the public key
//!   (`POST /api/v1/jump/register`); one use of the deployment key is taken in the same
//!   transaction that records the client ([`store`]).
//! * Active clients hold `wss://box/ws/jump` ([`crate::web::ws_jump`]): the relay sends a
//!   challenge, the client signs it with its key ([`lifeline_proto::jump::auth_message`]);
//!   a link signed with another key is refused. [`Jumps`] keeps, per connected client, a few
//!   words of state (generation, mode, since) and a small queue for orders to it; that is all
//!   the relay holds in memory for an idle client besides the socket.
//! * Reconnections pass a global token bucket ([`Jumps::admit`], default 50 per second,
//!   configurable up to 300, or lifted for benchmarks) so an outage does not end in a storm;
//!   refused clients are told when to come back, with jitter.
//! * The licence limits concurrently connected active clients and installed passive ones
//!   ([`Jumps::limit`], cached for a short while so a reconnection storm does not ask the
//!   licence manager 100,000 times).
//! * Heartbeats: one timer for all links ([`Jumps::spawn_heartbeat`]); at each beat every
//!   link sends its client a WebSocket ping and drops the link if nothing came from the
//!   client for three beats. Pings and pongs thus come in one burst per beat.
//! * "Last seen" is written when a link closes, when it opens (unless the client's facts are
//!   unchanged and it was seen within [`SAVE_EVERY`], as after a relay restart), and for online
//!   clients by [`Jumps::spawn_saver`] every [`SAVE_EVERY`] in a few large transactions —
//!   never per heartbeat.
//! * Passive clients check in (facts, last seen, the address they came from) and leave; the
//!   box wakes one with a signed line sent to its wake port ([`wake`]) and waits for its
//!   `Woken` link. Check-ins are every [`CHECK_IN_S`] unless `[jump] check_in_s` says otherwise.
//! * An administrator removes a client (`DELETE /api/v1/jump/clients/{id}`, [`api`]): it is
//!   refused from then on, and a connected (or woken) client is told to uninstall itself.
//! * Jumping ([`api`], `POST /api/v1/jump/clients/{id}/jump`): who may see a client is
//!   [`groups`]; the relay stores a session already accepted by the representative and a
//!   one-time ticket pointing at it, and sends `StartSession` (with `prompt` unless `[jump]
//!   unattended = true`). The pending jump is kept in [`Jumps`] until the client's session
//!   agent presents the ticket (`/ws/agent` joins it to the session) or the client answers
//!   `SessionFailed` (the session ends with the client's reason). Every step is audited as
//!   `jump.session` (sent, connected, failed, unreachable) with who, which client, and
//!   whether the user was asked.
//!
//! # Limits of this version
//! Pending jumps live in memory (a relay restart forgets them; their sessions end by the
//! hub's reaper).

pub mod api;
pub mod groups;
pub mod store;
pub mod wake;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifeline_license_api::SeatKind;
use lifeline_proto::jump::{JumpMode, RelayToJump};
use tokio::sync::mpsc;

/// Seconds between heartbeats unless `[jump] heartbeat_s` says otherwise, sent in every
/// welcome: the relay pings every link this often (short enough for proxies' idle
/// time-outs) and drops a link silent for three of them.
pub const HEARTBEAT_S: u32 = 30;
/// Seconds between a passive client's check-ins.
pub const CHECK_IN_S: u32 = 24 * 3600;
/// How often "last seen" of online clients is written.
pub const SAVE_EVERY: Duration = Duration::from_secs(300);
/// How many orders may wait for one client.
pub const ORDER_QUEUE: usize = 4;
/// How long a woken passive client's link stays up without an order.
pub const WOKEN_IDLE: Duration = Duration::from_secs(120);
/// The way to send orders to a connected client.
pub type OrderSender = mpsc::Sender<Box<RelayToJump>>;
/// How long a licence limit is trusted before it is asked again.
const LIMIT_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WakeKeyError {
    #[error("cannot read or write the wake-up key {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the wake-up key {path} is damaged")]
    Damaged { path: String },
}

/// The reconnection limit: a token bucket shared by every jump client.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectLimit {
    /// Connections admitted per second (also the burst); `None` lifts the limit.
    pub per_second: Option<u32>,
}

impl Default for ReconnectLimit {
    fn default() -> Self {
        ReconnectLimit {
            per_second: Some(50),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A connected client, as little as possible of it.
#[derive(Debug)]
pub struct Online {
    /// Which link this is (a newer link of the same client replaces it).
    pub gen_: u64,
    pub mode: JumpMode,
    /// Milliseconds since the epoch when the link was opened.
    pub since: i64,
    /// Orders for the client (session starts, uninstall). Boxed: a channel allocates its
    /// first block of 32 slots up front, and 32 whole orders would weigh 8 KiB per client.
    pub orders: mpsc::Sender<Box<RelayToJump>>,
}

/// Connected clients, and how many of them are active (kept, not counted per connection).
#[derive(Debug, Default)]
struct Registry {
    map: HashMap<Box<str>, Online>,
    active: usize,
}

impl Registry {
    fn remove(&mut self, id: &str) {
        if let Some(o) = self.map.remove(id)
            && o.mode == JumpMode::Active
        {
            self.active -= 1;
        }
    }
}

/// The relay's live view of jump clients.
#[derive(Debug)]
pub struct Jumps {
    online: Mutex<Registry>,
    gen_: std::sync::atomic::AtomicU64,
    limit: ReconnectLimit,
    bucket: Mutex<Bucket>,
    limits: Mutex<Option<(Instant, u32, u32)>>,
    wake_key: ed25519_dalek::SigningKey,
    waiters: Mutex<wake::Waiters>,
    check_in_s: u32,
    heartbeat_s: u32,
    /// Jumps whose session agent has not connected yet: request id → what it was for.
    pending: Mutex<HashMap<String, PendingJump>>,
    /// The one heartbeat of every link ([`Jumps::spawn_heartbeat`]).
    beat: tokio::sync::watch::Sender<()>,
}

/// A jump sent to a client and not answered yet.
#[derive(Debug, Clone)]
pub struct PendingJump {
    pub client_id: String,
    pub session_id: String,
    pub rep: String,
    pub unattended: bool,
    pub at: Instant,
}

/// How long a jump may stay unanswered before it is forgotten (the user has 60 s to answer,
/// and a session without its client is ended by the hub's reaper anyway).
const PENDING_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a client may not connect now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Come back after this many seconds.
    Later(u32),
}

impl Jumps {
    pub fn new(limit: ReconnectLimit, wake_key_path: &Path) -> Result<Jumps, WakeKeyError> {
        Ok(Jumps {
            online: Mutex::new(Registry::default()),
            gen_: Default::default(),
            limit,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.per_second.unwrap_or(0)),
                last: Instant::now(),
            }),
            limits: Mutex::new(None),
            wake_key: load_or_create_key(wake_key_path)?,
            waiters: Mutex::new(Default::default()),
            check_in_s: CHECK_IN_S,
            heartbeat_s: HEARTBEAT_S,
            pending: Mutex::new(HashMap::new()),
            beat: tokio::sync::watch::Sender::new(()),
        })
    }

    /// A link's view of the shared heartbeat: it changes every [`Jumps::heartbeat_s`].
    pub fn heartbeat(&self) -> tokio::sync::watch::Receiver<()> {
        self.beat.subscribe()
    }

    /// Beats every [`Jumps::heartbeat_s`]: each connected link then pings its client (and gives up on one
    /// that has been silent too long). One timer for all links, so the relay wakes once per
    /// heartbeat and serves every link's ping and pong in one burst, instead of a timer and
    /// a wake-up per link spread over the interval.
    pub fn spawn_heartbeat(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let every = Duration::from_secs(u64::from(self.heartbeat_s));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                me.beat.send_replace(());
            }
        })
    }

    /// Passive clients check in every `s` seconds (at least 1).
    pub fn with_check_in_s(mut self, s: u32) -> Jumps {
        self.check_in_s = s.max(1);
        self
    }

    /// Heartbeats every `s` seconds (at least 1).
    pub fn with_heartbeat_s(mut self, s: u32) -> Jumps {
        self.heartbeat_s = s.max(1);
        self
    }

    /// Seconds between heartbeats.
    pub fn heartbeat_s(&self) -> u32 {
        self.heartbeat_s
    }

    /// Seconds between a passive client's check-ins.
    pub fn check_in_s(&self) -> u32 {
        self.check_in_s
    }

    /// The public key wake-ups are signed with (base64).
    pub fn wake_public_key(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.wake_key.verifying_key().to_bytes())
    }

    /// Takes one token of the reconnection bucket, or says when to come back (spread over a
    /// few seconds so refused clients do not return together).
    pub fn admit(&self) -> Admission {
        let Some(rate) = self.limit.per_second else {
            return Admission::Admitted;
        };
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admission::Admitted
        } else {
            use rand::Rng as _;
            Admission::Later(rand::thread_rng().gen_range(2..=10))
        }
    }

    /// The licence's limits (active, passive), asked at most every [`LIMIT_TTL`].
    pub async fn limit(&self, licence: &crate::licence::Licensing, mode: JumpMode) -> u32 {
        let cached = *self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let (active, passive) = match cached {
            Some((at, a, p)) if at.elapsed() < LIMIT_TTL => (a, p),
            _ => {
                let c = licence.counts().await;
                let a = c.limit(SeatKind::JumpActive);
                let p = c.limit(SeatKind::JumpPassive);
                *self.limits.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), a, p));
                (a, p)
            }
        };
        match mode {
            JumpMode::Active => active,
            JumpMode::Passive => passive,
        }
    }

    /// Records `id` as connected, unless `max_active` active clients other than it already
    /// are (then `None`). A previous link of the same client is told to close.
    pub fn attach(
        &self,
        id: &str,
        mode: JumpMode,
        max_active: u32,
        orders: mpsc::Sender<Box<RelayToJump>>,
    ) -> Option<u64> {
        let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        let replacing = online.map.get(id).map(|o| o.mode);
        if mode == JumpMode::Active
            && replacing != Some(JumpMode::Active)
            && online.active >= max_active as usize
        {
            return None;
        }
        let gen_ = self.gen_.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        online.remove(id);
        if mode == JumpMode::Active {
            online.active += 1;
        }
        online.map.insert(
            id.into(),
            Online {
                gen_,
                mode,
                since: crate::db::now_ms(),
                orders,
            },
        );
        Some(gen_)
    }

    /// Forgets link `gen_` of `id` (a newer link stays).
    pub fn detach(&self, id: &str, gen_: u64) -> bool {
        let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        if online.map.get(id).is_some_and(|o| o.gen_ == gen_) {
            online.remove(id);
            true
        } else {
            false
        }
    }

    /// Whether link `gen_` of `id` is still the current one.
    pub fn is_current(&self, id: &str, gen_: u64) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(id)
            .is_some_and(|o| o.gen_ == gen_)
    }

    /// When `id`'s current link opened, if it is connected.
    pub fn online_since(&self, id: &str) -> Option<i64> {
        self.online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(id)
            .map(|o| o.since)
    }

    /// Connected clients: (active, passive).
    pub fn counts(&self) -> (usize, usize) {
        let online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        (online.active, online.map.len() - online.active)
    }

    /// Ids of every connected client.
    pub fn online_ids(&self) -> Vec<String> {
        self.online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Queues an order for a connected client; false when it is not connected (or its queue
    /// is full).
    pub fn send_order(&self, id: &str, order: RelayToJump) -> bool {
        let online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        online
            .map
            .get(id)
            .is_some_and(|o| o.orders.try_send(Box::new(order)).is_ok())
    }

    /// Remembers a jump until its session agent connects or the client says it failed.
    pub fn pending(&self, request_id: &str, jump: PendingJump) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, j| j.at.elapsed() < PENDING_TTL);
        p.insert(request_id.to_string(), jump);
    }

    /// Takes the pending jump `request_id` of `client_id` (another client's id takes nothing).
    pub fn take_pending(&self, client_id: &str, request_id: &str) -> Option<PendingJump> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.get(request_id)?.client_id != client_id {
            return None;
        }
        p.remove(request_id)
    }

    /// Forgets the pending jump of `session_id` (its agent connected).
    pub fn take_pending_session(&self, session_id: &str) -> Option<PendingJump> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = p
            .iter()
            .find(|(_, j)| j.session_id == session_id)
            .map(|(k, _)| k.clone())?;
        p.remove(&key)
    }

    /// Writes "last seen" of every connected client every `every`.
    pub fn spawn_saver(
        self: &std::sync::Arc<Self>,
        db: crate::db::Db,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let ids = me.online_ids();
                store::touch_many(&db, &ids, crate::db::now_ms()).await;
            }
        })
    }
}

fn load_or_create_key(path: &Path) -> Result<ed25519_dalek::SigningKey, WakeKeyError> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let damaged = || WakeKeyError::Damaged {
        path: path.display().to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|_| damaged()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(Default::default())
                .map_err(|_| damaged())?;
            crate::tls::write_private(path, pem.as_bytes()).map_err(|source| WakeKeyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(WakeKeyError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jumps(limit: Option<u32>) -> (tempfile::TempDir, Jumps) {
        let dir = tempfile::tempdir().unwrap();
        let j = Jumps::new(
            ReconnectLimit { per_second: limit },
            &dir.path().join("wake.key"),
        )
        .unwrap();
        (dir, j)
    }

    #[test]
    fn bucket_admits_the_rate_then_refuses() {
        let (_d, j) = jumps(Some(3));
        let admitted = (0..10).filter(|_| j.admit() == Admission::Admitted).count();
        assert_eq!(admitted, 3);
        assert!(matches!(j.admit(), Admission::Later(2..=10)));
        let (_d, j) = jumps(None);
        assert!((0..1000).all(|_| j.admit() == Admission::Admitted));
    }

    #[test]
    fn licence_limit_and_generations() {
        let (_d, j) = jumps(None);
        let (tx, _rx) = mpsc::channel(1);
        let g1 = j.attach("a", JumpMode::Active, 2, tx.clone()).unwrap();
        assert!(j.attach("b", JumpMode::Active, 2, tx.clone()).is_some());
        assert!(j.attach("c", JumpMode::Active, 2, tx.clone()).is_none());
        // The same client again replaces its own link.
        let g2 = j.attach("a", JumpMode::Active, 2, tx.clone()).unwrap();
        assert!(!j.detach("a", g1));
        assert!(j.is_current("a", g2));
        assert_eq!(j.counts(), (2, 0));
        assert!(j.detach("a", g2));
        assert_eq!(j.counts(), (1, 0));
    }
}
