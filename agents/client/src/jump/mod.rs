//! Jump mode: this program installed as a service so a representative can reach the computer
//! without anyone at it (see [`lifeline_proto::jump`]).
//!
//! * [`install`] runs when the program carries a `jump_install` ticket (the installer an
//!   administrator downloaded with a deployment key): it makes the client's own ed25519 key
//!   pair, registers the public key with the box, and writes the service folder —
//!   the program without its ticket, `jump.json`, the private key `jump.key` (mode 0600) and a
//!   systemd unit — then enables the unit where systemd runs (see
//!   [`crate::platform::linux::service`]).
//! * [`run`] is the service itself (`lifeline-agent jump run --dir DIR`): it keeps one
//!   `wss://box/ws/jump` link, proves who it is by signing the box's challenge, answers the
//!   box's heartbeat pings (and pings itself only after a heartbeat without hearing from the
//!   box; three such and the link counts as lost), and after a lost link or a refusal
//!   connects again with exponential back-off (1 s doubling to 5 minutes) and jitter (each
//!   wait drawn between half and all of it), or after the `retry_after_s` the box asked for.
//!
//! * [`passive`] is the service of a passive installation: check-ins, and signed wake-ups
//!   on its wake port.
//! * On the box's `Uninstall` order, or when the box refuses it as `Removed`, the client
//!   removes itself ([`install::uninstall`]: the systemd unit if it was enabled, then its
//!   folder), answers `Uninstalled` when it can, and exits 0.
//!
//! Log lines are `event=...` so tests and administrators can follow the service.
//!
//! * A representative's jump ([`RelayToJump::StartSession`]) starts a session agent in the
//!   logged-in user's desktop ([`session`]); if it cannot start or the user declines, the
//!   service answers `SessionFailed`. A service running as root finds that desktop itself
//!   (logind, else the users' processes: [`seat`]) and starts the agent as that user.
//!   Each link's hello names that user (the console's "logged-in user"); a root service
//!   looks again at each heartbeat and tells a box of protocol 1.1 or newer when it changed
//!   (`LoggedInUser`).
//!
//! Limits of this version: the desktop must be an X11 session (a Wayland one is refused
//! with a sentence for the representative).

pub mod install;
pub mod passive;
pub mod seat;
pub mod session;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use futures_util::{SinkExt, StreamExt};
use lifeline_proto::jump::{JumpInfo, JumpMode, JumpRefuseCode, JumpToRelay, Purpose, RelayToJump};
use lifeline_proto::ticket::{TicketFile, TicketKind};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::env::Env;
use crate::net::{self, NetError};

/// The service folder's settings file.
pub const CONFIG_FILE: &str = "jump.json";
/// The service folder's private key (PKCS#8 PEM).
pub const KEY_FILE: &str = "jump.key";
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum JumpError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: install the jump client again")]
    Damaged { path: PathBuf },
    #[error("the support box refused this jump client for good: {0}")]
    Refused(String),
    #[error("cannot listen for wake-ups on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the service folder's `jump.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpConfig {
    pub site_url: String,
    pub cert_sha256: String,
    pub client_id: String,
    pub mode: JumpMode,
    #[serde(default)]
    pub site_name: String,
    /// Base64 ed25519 key the box signs wake-ups with.
    pub wake_public_key: String,
    /// Passive clients: the TCP port wake-ups come to ([`passive::DEFAULT_WAKE_PORT`] if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_port: Option<u16>,
    /// Passive clients: the address to listen on (every address if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_address: Option<std::net::IpAddr>,
    /// Where the unit was handed to systemd ("system" or "user"), so uninstalling can take
    /// it back; unset when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<String>,
}

impl JumpConfig {
    /// Where to connect, in the shape [`net`] takes.
    pub fn ticket(&self) -> TicketFile {
        TicketFile {
            site_url: self.site_url.clone(),
            cert_sha256: self.cert_sha256.clone(),
            ticket: "-".into(),
            expires_at: 0,
            language: String::new(),
            customer_name: String::new(),
            site_name: self.site_name.clone(),
            kind: TicketKind::JumpInstall,
        }
    }
}

/// Reads the service folder's settings and key.
pub fn load(dir: &Path) -> Result<(JumpConfig, ed25519_dalek::SigningKey), JumpError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| JumpError::Read { path, source })
    };
    let config: JumpConfig =
        serde_json::from_str(&read(CONFIG_FILE)?).map_err(|_| JumpError::Damaged {
            path: dir.join(CONFIG_FILE),
        })?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&read(KEY_FILE)?).map_err(|_| {
        JumpError::Damaged {
            path: dir.join(KEY_FILE),
        }
    })?;
    Ok((config, key))
}

/// Exponential back-off with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The next wait: between half and all of the current step; the step doubles.
    pub fn next_wait(&mut self) -> Duration {
        use rand::Rng as _;
        let step = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        step.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// What this computer tells the box.
pub fn info(env: &Env) -> JumpInfo {
    let facts = crate::platform::current(env);
    JumpInfo {
        computer: facts.computer.chars().take(120).collect(),
        platform: facts.platform.chars().take(120).collect(),
        logged_in_user: String::new(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Who is at this computer's desktop (the console shows it; looked at as the link opens and,
/// by a root service, at each heartbeat): for a root service the user of the graphical
/// session a jump would open in ([`seat::find`]), else the service's own user; empty when
/// nobody is.
async fn logged_in_user(env: &Env) -> String {
    let name = if nix::unistd::geteuid().is_root() {
        match seat::find(None).await {
            Ok(seat) => seat.user,
            Err(seat::SeatError::Wayland { user, .. }) => user,
            Err(_) => String::new(),
        }
    } else {
        env.get("USER")
            .or_else(|| env.get("LOGNAME"))
            .unwrap_or_default()
            .to_string()
    };
    name.chars().take(64).collect()
}

/// How one link ended.
enum LinkEnd {
    /// Lost or closed; `held` tells how long it was up.
    Lost { held: Duration },
    /// Refused; try again after this many seconds (or with back-off when `None`).
    Retry(Option<u32>),
    /// A passive check-in was welcomed; the next one is due after this many seconds.
    CheckedIn { next_check_in_s: u32 },
    /// The box ordered an uninstall and it is done.
    Uninstalled,
}

/// The service: keeps the link up until the box refuses this client for good.
pub async fn run(dir: &Path, env: &Env) -> Result<(), JumpError> {
    let (config, key) = load(dir)?;
    if config.mode == JumpMode::Passive {
        return passive::run(dir, &config, &key, env).await;
    }
    let mut backoff = Backoff::default();
    loop {
        let end = match link(dir, &config, &key, env, Purpose::Stay).await {
            Ok(LinkEnd::Uninstalled) => return Ok(()),
            Ok(end) => end,
            Err(e) => match give_up(dir, &config, e) {
                Some(result) => return result,
                None => LinkEnd::Retry(None),
            },
        };
        let wait = match end {
            LinkEnd::Lost { held } => {
                if held > Duration::from_secs(60) {
                    backoff.reset();
                }
                backoff.next_wait()
            }
            LinkEnd::Retry(Some(s)) => {
                use rand::Rng as _;
                Duration::from_secs(u64::from(s)).mul_f64(rand::thread_rng().gen_range(1.0..=1.25))
            }
            LinkEnd::Retry(None) | LinkEnd::CheckedIn { .. } | LinkEnd::Uninstalled => {
                backoff.next_wait()
            }
        };
        tracing::info!("event=jump_retry wait_ms={}", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
}

enum LinkError {
    Net(NetError),
    /// Refused for good (not recognised, incompatible).
    Gone(String),
    /// An administrator removed this client.
    Removed(String),
}

/// What a failed link means for the service: `None` to try again later, or the service's end
/// (a removed client uninstalls itself and ends well).
fn give_up(dir: &Path, config: &JumpConfig, e: LinkError) -> Option<Result<(), JumpError>> {
    match e {
        LinkError::Net(e) if !e.is_transient() => {
            tracing::error!("event=jump_failed error={:?}", e.to_string());
            Some(Err(JumpError::Refused(e.to_string())))
        }
        LinkError::Net(e) => {
            tracing::info!("event=jump_unreachable error={:?}", e.to_string());
            None
        }
        LinkError::Gone(m) => {
            tracing::error!("event=jump_refused_for_good message={m:?}");
            Some(Err(JumpError::Refused(m)))
        }
        LinkError::Removed(m) => {
            tracing::info!("event=jump_removed message={m:?}");
            match install::uninstall(dir, config) {
                Ok(()) => {
                    tracing::info!("event=jump_uninstalled");
                    install::stop_service(config);
                    Some(Ok(()))
                }
                Err(e) => {
                    tracing::error!("event=jump_uninstall_failed error={:?}", e.to_string());
                    Some(Err(JumpError::Refused(m)))
                }
            }
        }
    }
}

async fn link(
    dir: &Path,
    config: &JumpConfig,
    key: &ed25519_dalek::SigningKey,
    env: &Env,
    purpose: Purpose,
) -> Result<LinkEnd, LinkError> {
    // Looked up before connecting: the box waits only a few seconds for the hello.
    let mut facts = info(env);
    facts.logged_in_user = logged_in_user(env).await;
    let mut user = facts.logged_in_user.clone();
    let mut ws = net::connect_to(&config.ticket(), env, "/ws/jump")
        .await
        .map_err(LinkError::Net)?;
    let opened = Instant::now();
    let lost = || LinkEnd::Lost {
        held: opened.elapsed(),
    };
    let nonce = match next_message(&mut ws, Duration::from_secs(20)).await {
        Some(RelayToJump::Challenge { nonce }) => nonce,
        Some(RelayToJump::Refused {
            code,
            message,
            retry_after_s,
        }) => return refused(code, message, retry_after_s),
        _ => return Ok(lost()),
    };
    let signature = key.sign(&lifeline_proto::jump::auth_message(
        &config.client_id,
        &nonce,
        &config.cert_sha256.to_ascii_lowercase(),
    ));
    let hello = JumpToRelay::Hello {
        version: lifeline_proto::VERSION,
        client_id: config.client_id.clone(),
        purpose,
        info: facts,
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    };
    if ws
        .send(Message::Text(lifeline_proto::encode(&hello).into()))
        .await
        .is_err()
    {
        return Ok(lost());
    }
    let relay_version;
    let heartbeat = match next_message(&mut ws, Duration::from_secs(20)).await {
        Some(RelayToJump::Welcome {
            next_check_in_s, ..
        }) if purpose == Purpose::CheckIn => {
            let _ = ws.close(None).await;
            return Ok(LinkEnd::CheckedIn { next_check_in_s });
        }
        Some(RelayToJump::Welcome {
            heartbeat_s,
            name,
            version,
            ..
        }) => {
            tracing::info!(
                "event=jump_online client_id={} name={name:?} heartbeat_s={heartbeat_s}",
                config.client_id
            );
            relay_version = version;
            Duration::from_secs(u64::from(heartbeat_s.clamp(5, 3600)))
        }
        Some(RelayToJump::Refused {
            code,
            message,
            retry_after_s,
        }) => return refused(code, message, retry_after_s),
        _ => return Ok(lost()),
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    // A root service looks at who is at the desktop once a heartbeat and tells a box that
    // hears it (a service run by a user is that user for good).
    let watch_user = nix::unistd::geteuid().is_root()
        && relay_version >= lifeline_proto::jump::LOGGED_IN_USER_SINCE;
    // What jump sessions started from this link have to tell the box.
    let (replies_tx, mut replies) = tokio::sync::mpsc::unbounded_channel::<JumpToRelay>();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            Some(reply) = replies.recv() => {
                if ws.send(Message::Text(lifeline_proto::encode(&reply).into())).await.is_err() {
                    return Ok(lost());
                }
            }
            _ = ping.tick() => {
                let quiet = last_heard.elapsed();
                if quiet > heartbeat * 3 {
                    tracing::info!("event=jump_silent");
                    return Ok(lost());
                }
                // The box pings every heartbeat; a ping of ours is only needed when it has
                // not (an older box, or a lost ping): it keeps proxies from timing out.
                if quiet >= heartbeat && ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ok(lost());
                }
                if watch_user {
                    let now = logged_in_user(env).await;
                    if now != user {
                        tracing::info!("event=jump_user_changed user={now:?}");
                        let said = JumpToRelay::LoggedInUser { user: now.clone() };
                        if ws.send(Message::Text(lifeline_proto::encode(&said).into())).await.is_err() {
                            return Ok(lost());
                        }
                        user = now;
                    }
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    last_heard = Instant::now();
                    match RelayToJump::decode(&t) {
                        Ok(RelayToJump::StartSession { request_id, ticket, rep, prompt }) => {
                            tracing::info!("event=jump_order order=start_session request_id={request_id:?} prompt={prompt}");
                            let order = session::StartSession { request_id, ticket, rep, prompt };
                            session::start(order, env, replies_tx.clone());
                        }
                        Ok(RelayToJump::Uninstall) => {
                            tracing::info!("event=jump_order order=uninstall");
                            return uninstall_now(&mut ws, dir, config).await;
                        }
                        Ok(other) => tracing::info!("event=jump_order order={other:?}"),
                        Err(e) => tracing::info!("event=jump_bad_message error={:?}", e.to_string()),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    tracing::info!("event=jump_closed reason={:?}", frame.map(|f| f.reason.to_string()).unwrap_or_default());
                    return Ok(lost());
                }
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(_)) | None => {
                    tracing::info!("event=jump_lost");
                    return Ok(lost());
                }
            }
        }
    }
}

fn refused(
    code: JumpRefuseCode,
    message: String,
    retry_after_s: Option<u32>,
) -> Result<LinkEnd, LinkError> {
    tracing::info!(
        "event=jump_refused code={code:?} message={message:?} retry_after_s={retry_after_s:?}"
    );
    match code {
        JumpRefuseCode::Removed => Err(LinkError::Removed(message)),
        JumpRefuseCode::NotRecognised | JumpRefuseCode::IncompatibleVersion => {
            Err(LinkError::Gone(message))
        }
        JumpRefuseCode::LicenceLimit | JumpRefuseCode::RateLimited | JumpRefuseCode::Busy => {
            Ok(LinkEnd::Retry(retry_after_s))
        }
    }
}

/// The box's `Uninstall` order: remove the service and the folder, say `Uninstalled`, and
/// let systemd stop the unit last (stopping it kills this process).
async fn uninstall_now(
    ws: &mut net::WsStream,
    dir: &Path,
    config: &JumpConfig,
) -> Result<LinkEnd, LinkError> {
    match install::uninstall(dir, config) {
        Ok(()) => {
            tracing::info!("event=jump_uninstalled");
            let done = lifeline_proto::encode(&JumpToRelay::Uninstalled);
            let _ = ws.send(Message::Text(done.into())).await;
            // The box closes the link once it recorded the answer.
            let _ = next_message(ws, Duration::from_secs(5)).await;
            install::stop_service(config);
            Ok(LinkEnd::Uninstalled)
        }
        Err(e) => {
            tracing::error!("event=jump_uninstall_failed error={:?}", e.to_string());
            Err(LinkError::Gone(format!("the uninstall failed: {e}")))
        }
    }
}

/// The next control message, skipping pings; `None` on close, error, garbage or time-out.
async fn next_message(ws: &mut net::WsStream, limit: Duration) -> Option<RelayToJump> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return RelayToJump::decode(&t).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::default();
        let first = b.next_wait();
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        let second = b.next_wait();
        assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
        for _ in 0..20 {
            assert!(b.next_wait() <= MAX_BACKOFF);
        }
        assert!(b.next_wait() >= MAX_BACKOFF / 2);
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }
}
