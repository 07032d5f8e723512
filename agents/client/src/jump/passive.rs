//! A passive jump client: it checks in with the box at start (boot) and then every
//! `next_check_in_s` seconds (the box says; a day by default), holds no connection otherwise,
//! and listens on its wake port (TCP, [`DEFAULT_WAKE_PORT`] unless installed with
//! `--wake-port`, on every address unless `--wake-address`) for a wake-up signed by the box
//! ([`lifeline_proto::jump::Wake`]). An accepted wake-up makes it connect with
//! `Purpose::Woken` and serve the box's orders like an active link until the box lets it go;
//! then it is passive again.
//!
//! # What is accepted
//! [`WakeGuard::check`] takes a line only when it parses, its signature verifies with the
//! box's wake key saved at installation, the id is this client's, `issued_at` is within
//! [`WINDOW_MS`] of this computer's clock, and its nonce was not seen before (nonces are
//! remembered for the window, at most [`MAX_NONCES`] of them). Anything else is ignored and
//! logged as `event=wake_ignored reason=...`.
//!
//! # Floods
//! Connections to the wake port pass a token bucket ([`WAKES_PER_SECOND`], the burst twice
//! that) and at most [`MAX_PENDING`] are read at once; others are closed unread (logged once a
//! second with their count). A connection is read for at most [`READ_TIMEOUT`] and
//! [`MAX_WAKE_BYTES`] bytes, so junk can neither make the client connect nor burn its CPU.
//!
//! Limits: the box must reach this computer's address and wake port directly.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use lifeline_proto::jump::{MAX_WAKE_BYTES, Purpose, parse_wake_line};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::{Backoff, JumpConfig, JumpError, LinkEnd, LinkError};
use crate::env::Env;

/// The wake port when the installer is not given `--wake-port`.
pub const DEFAULT_WAKE_PORT: u16 = 47_361;
/// How far `issued_at` may be from this computer's clock, in milliseconds (5 minutes).
pub const WINDOW_MS: i64 = 5 * 60 * 1000;
/// How many nonces are remembered at most.
pub const MAX_NONCES: usize = 4096;
/// Wake-up connections read per second (the burst is twice this).
pub const WAKES_PER_SECOND: f64 = 5.0;
/// Wake-up connections read at once.
pub const MAX_PENDING: usize = 8;
/// How long one wake-up connection may take to send its line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between two check-ins, whatever the box says.
const MAX_CHECK_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a wake-up was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    NotAWake,
    TooLong,
    Malformed,
    BadSignature,
    OtherClient,
    Stale,
    Replayed,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotAWake => "not_a_wake",
            Ignored::TooLong => "too_long",
            Ignored::Malformed => "malformed",
            Ignored::BadSignature => "bad_signature",
            Ignored::OtherClient => "other_client",
            Ignored::Stale => "stale",
            Ignored::Replayed => "replayed",
        }
    }
}

/// Decides which wake-up lines are genuine (see the module docs).
#[derive(Debug)]
pub struct WakeGuard {
    key: VerifyingKey,
    client_id: String,
    /// Nonce → its `issued_at`, and the order they came in (oldest first).
    seen: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl WakeGuard {
    pub fn new(key: VerifyingKey, client_id: &str) -> WakeGuard {
        WakeGuard {
            key,
            client_id: client_id.to_string(),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The box's key as saved at installation (base64).
    pub fn from_config(config: &JumpConfig) -> Result<WakeGuard, JumpError> {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(&config.wake_public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| JumpError::Damaged {
                path: super::CONFIG_FILE.into(),
            })?;
        Ok(WakeGuard::new(key, &config.client_id))
    }

    /// Accepts `line` (and remembers its nonce) or says why not; `now_ms` is this computer's
    /// clock. Never panics.
    pub fn check(&mut self, line: &[u8], now_ms: i64) -> Result<(), Ignored> {
        use lifeline_proto::jump::WakeError;
        let parsed = parse_wake_line(line).map_err(|e| match e {
            WakeError::NotAWake => Ignored::NotAWake,
            WakeError::TooLong => Ignored::TooLong,
            WakeError::Malformed => Ignored::Malformed,
        })?;
        let signature =
            Signature::from_slice(&parsed.signature).map_err(|_| Ignored::BadSignature)?;
        self.key
            .verify_strict(&parsed.payload, &signature)
            .map_err(|_| Ignored::BadSignature)?;
        let wake = parsed.wake;
        if wake.client_id != self.client_id {
            return Err(Ignored::OtherClient);
        }
        if now_ms.saturating_sub(wake.issued_at).saturating_abs() > WINDOW_MS {
            return Err(Ignored::Stale);
        }
        self.forget_before(now_ms.saturating_sub(WINDOW_MS));
        if self.seen.contains_key(&wake.nonce) {
            return Err(Ignored::Replayed);
        }
        if self.order.len() >= MAX_NONCES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(wake.nonce.clone());
        self.seen.insert(wake.nonce, wake.issued_at);
        Ok(())
    }

    /// Forgets nonces issued before `limit` (a line that old is refused as stale anyway).
    fn forget_before(&mut self, limit: i64) {
        self.order.retain(|n| match self.seen.get(n) {
            Some(&at) if at < limit => {
                self.seen.remove(n);
                false
            }
            _ => true,
        });
    }

    /// How many nonces are remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A token bucket for wake-up connections.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let burst = WAKES_PER_SECOND * 2.0;
        self.tokens = (self.tokens
            + now.saturating_duration_since(self.last).as_secs_f64() * WAKES_PER_SECOND)
            .min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Accepts wake-up connections forever; each accepted wake-up is one message on `woken`.
pub async fn listen(listener: TcpListener, guard: WakeGuard, woken: mpsc::Sender<()>) {
    let guard = Arc::new(Mutex::new(guard));
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let mut bucket = Bucket {
        tokens: WAKES_PER_SECOND * 2.0,
        last: Instant::now(),
    };
    let mut dropped = 0u64;
    let mut last_report = Instant::now();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let permit = if bucket.take() {
            pending.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let Some(permit) = permit else {
            drop(stream);
            dropped += 1;
            if last_report.elapsed() >= Duration::from_secs(1) {
                tracing::info!("event=wake_ignored reason=rate_limited count={dropped}");
                dropped = 0;
                last_report = Instant::now();
            }
            continue;
        };
        let guard = guard.clone();
        let woken = woken.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let line = match tokio::time::timeout(READ_TIMEOUT, read_line(stream)).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    tracing::info!("event=wake_ignored reason=too_long peer={peer}");
                    return;
                }
                Err(_) => {
                    tracing::info!("event=wake_ignored reason=timeout peer={peer}");
                    return;
                }
            };
            let verdict = guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(&line, now_ms());
            match verdict {
                Ok(()) => {
                    tracing::info!("event=wake_accepted peer={peer}");
                    // One wake-up pending is enough.
                    let _ = woken.try_send(());
                }
                Err(reason) => {
                    tracing::info!("event=wake_ignored reason={} peer={peer}", reason.as_str())
                }
            }
        });
    }
}

/// Reads up to the first newline (or the end); `None` when longer than [`MAX_WAKE_BYTES`].
async fn read_line(mut stream: TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Some(line);
        }
        let chunk = &buf[..n];
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..=end]);
            return (line.len() <= MAX_WAKE_BYTES).then_some(line);
        }
        line.extend_from_slice(chunk);
        if line.len() > MAX_WAKE_BYTES {
            return None;
        }
    }
}

/// What the service loop does after a link.
enum Next {
    /// Check in again after this long.
    CheckInAfter(Duration),
    /// Stop the service with this result.
    Stop(Result<(), JumpError>),
}

/// The passive service: check-ins, wake-ups, orders.
pub async fn run(
    dir: &std::path::Path,
    config: &JumpConfig,
    key: &ed25519_dalek::SigningKey,
    env: &Env,
) -> Result<(), JumpError> {
    let guard = WakeGuard::from_config(config)?;
    let ip = config
        .wake_address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, config.wake_port.unwrap_or(DEFAULT_WAKE_PORT));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| JumpError::Listen { addr, source })?;
    tracing::info!("event=wake_listening addr={addr}");
    let (tx, mut woken) = mpsc::channel(1);
    let listening = tokio::spawn(listen(listener, guard, tx));
    let _stop_listening = AbortOnDrop(listening);
    let mut backoff = Backoff::default();
    let mut next_check_in = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_check_in) => {
                let end = super::link(dir, config, key, env, Purpose::CheckIn).await;
                match after(dir, config, end, &mut backoff) {
                    Next::CheckInAfter(wait) => next_check_in = tokio::time::Instant::now() + wait,
                    Next::Stop(r) => return r,
                }
            }
            Some(()) = woken.recv() => {
                tracing::info!("event=jump_woken");
                let end = super::link(dir, config, key, env, Purpose::Woken).await;
                if let Next::Stop(r) = after(dir, config, end, &mut backoff) {
                    return r;
                }
                tracing::info!("event=jump_passive_again");
                // Wake-ups accepted while connected are answered already.
                while woken.try_recv().is_ok() {}
            }
        }
    }
}

fn after(
    dir: &std::path::Path,
    config: &JumpConfig,
    end: Result<LinkEnd, LinkError>,
    backoff: &mut Backoff,
) -> Next {
    match end {
        Ok(LinkEnd::CheckedIn { next_check_in_s }) => {
            backoff.reset();
            let wait = Duration::from_secs(u64::from(next_check_in_s.max(1))).min(MAX_CHECK_IN);
            tracing::info!(
                "event=jump_checked_in client_id={} next_check_in_s={}",
                config.client_id,
                wait.as_secs()
            );
            Next::CheckInAfter(wait)
        }
        Ok(LinkEnd::Uninstalled) => Next::Stop(Ok(())),
        Ok(LinkEnd::Retry(Some(s))) => {
            use rand::Rng as _;
            Next::CheckInAfter(
                Duration::from_secs(u64::from(s)).mul_f64(rand::thread_rng().gen_range(1.0..=1.25)),
            )
        }
        // A check-in that failed is tried again soon (after a woken link the loop keeps its
        // check-in time).
        Ok(LinkEnd::Lost { .. } | LinkEnd::Retry(None)) => Next::CheckInAfter(backoff.next_wait()),
        Err(e) => match super::give_up(dir, config, e) {
            Some(r) => Next::Stop(r),
            None => Next::CheckInAfter(backoff.next_wait()),
        },
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use lifeline_proto::jump::{Wake, wake_line};
    use proptest::prelude::*;

    fn line(key: &SigningKey, id: &str, at: i64, nonce: &str) -> Vec<u8> {
        let payload = serde_json::to_vec(&Wake {
            client_id: id.into(),
            issued_at: at,
            nonce: nonce.into(),
        })
        .unwrap();
        wake_line(&payload, &key.sign(&payload).to_bytes()).into_bytes()
    }

    fn keys() -> (SigningKey, WakeGuard) {
        let k = SigningKey::from_bytes(&[7u8; 32]);
        let g = WakeGuard::new(k.verifying_key(), "jc_me");
        (k, g)
    }

    #[test]
    fn only_fresh_signed_wakes_for_me_pass() {
        let (k, mut g) = keys();
        let now = 1_000_000_000;
        let good = line(&k, "jc_me", now, "n1");
        assert_eq!(g.check(&good, now), Ok(()));
        assert_eq!(g.check(&good, now + 10), Err(Ignored::Replayed));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            g.check(&line(&other, "jc_me", now, "n2"), now),
            Err(Ignored::BadSignature)
        );
        assert_eq!(
            g.check(&line(&k, "jc_you", now, "n3"), now),
            Err(Ignored::OtherClient)
        );
        assert_eq!(
            g.check(&line(&k, "jc_me", now - WINDOW_MS - 1, "n4"), now),
            Err(Ignored::Stale)
        );
        assert_eq!(
            g.check(&line(&k, "jc_me", now + WINDOW_MS + 1, "n5"), now),
            Err(Ignored::Stale)
        );
        assert_eq!(g.check(b"GET / HTTP/1.0\r\n", now), Err(Ignored::NotAWake));
        // The payload changed after signing.
        let mut tampered = String::from_utf8(good.clone()).unwrap();
        tampered = tampered.replacen("LLWAKE1 e", "LLWAKE1 f", 1);
        assert!(g.check(tampered.as_bytes(), now).is_err());
        // Nonces are forgotten once their lines would be stale anyway.
        assert_eq!(g.remembered(), 1);
        assert_eq!(
            g.check(
                &line(&k, "jc_me", now + WINDOW_MS + 5, "n6"),
                now + WINDOW_MS + 5
            ),
            Ok(())
        );
        assert_eq!(g.remembered(), 1);
    }

    #[test]
    fn nonce_memory_is_bounded() {
        let (k, mut g) = keys();
        let now = 1_000_000_000;
        for i in 0..MAX_NONCES + 10 {
            assert_eq!(
                g.check(&line(&k, "jc_me", now, &format!("n{i}")), now),
                Ok(())
            );
        }
        assert_eq!(g.remembered(), MAX_NONCES);
    }

    proptest! {
        #[test]
        fn check_never_panics(b in prop::collection::vec(any::<u8>(), 0..600), now in any::<i64>()) {
            let (_k, mut g) = keys();
            let mut l = b"LLWAKE1 ".to_vec();
            l.extend_from_slice(&b);
            let _ = g.check(&l, now);
            let _ = g.check(&b, now);
        }

        #[test]
        fn signed_lines_with_any_fields_never_panic(
            id in ".{0,80}", nonce in ".{0,150}", at in any::<i64>(), now in any::<i64>()
        ) {
            let (k, mut g) = keys();
            let _ = g.check(&line(&k, &id, at, &nonce), now);
        }
    }
}
