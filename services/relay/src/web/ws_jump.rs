//! `/ws/jump`: a jump client's connection (see [`lifeline_proto::jump`]).
//!
//! Order on every link: the reconnection limit ([`crate::jump::Jumps::admit`]) before any
//! work, then the challenge, the client's signed hello (checked against the public key it
//! registered: another key is refused and audited), the licence limit for connected active
//! clients, and the welcome. Afterwards the relay pings the client at each shared heartbeat
//! ([`crate::jump::Jumps::spawn_heartbeat`]; the client's pong, or a ping of its own, counts
//! as hearing from it), forwards orders and hears `SessionFailed` (the jump's session ends
//! with the client's reason) and `LoggedInUser` (written for the console's list, at most
//! every [`USER_EVERY`]); a link silent for three heartbeats is dropped.
//!
//! Passive clients: a check-in records the address the client came from (a wake-up goes
//! there) and ends after the welcome; a `Woken` link is handed to whoever is waiting in
//! [`crate::jump::Jumps::wake`] and closed after [`WOKEN_IDLE`] without an order. A removed
//! client is refused (`Removed`: it then uninstalls itself); a client that answers an
//! `Uninstall` order with `Uninstalled` is recorded and audited.
//!
//! Anything malformed or out of order closes this one link (1008) and never affects others.
//! Buffers are kept small: an idle jump link moves a few bytes every heartbeat.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use lifeline_proto::jump::{
    JumpMode, JumpRefuseCode, JumpToRelay, Purpose, RelayToJump, auth_message,
};
use lifeline_proto::{VERSION, encode};
use tokio::sync::mpsc;

use super::{ClientIp, State};
use crate::jump::{Admission, ORDER_QUEUE, WOKEN_IDLE, api, store};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a jump client may send.
const MAX_MESSAGE: usize = 8 * 1024;
/// How often a link's "logged-in user changed" is written at most (a client tells it at
/// most once a heartbeat, 5 s or more).
const USER_EVERY: Duration = Duration::from_secs(2);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
) -> Response {
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(state, ip, socket))
}

async fn send(socket: &mut WebSocket, msg: &RelayToJump) -> bool {
    socket.send(Message::Text(encode(msg).into())).await.is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let reason: String = reason.chars().take(60).collect();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn refuse(
    socket: &mut WebSocket,
    code: JumpRefuseCode,
    message: String,
    retry_after_s: Option<u32>,
) {
    send(
        socket,
        &RelayToJump::Refused {
            code,
            message: message.clone(),
            retry_after_s,
        },
    )
    .await;
    close(socket, 1008, &message).await;
}

async fn run(state: State, ip: IpAddr, mut socket: WebSocket) {
    if let Admission::Later(s) = state.jump.admit() {
        refuse(
            &mut socket,
            JumpRefuseCode::RateLimited,
            "The support box is busy taking connections back: this computer will try again shortly."
                .into(),
            Some(s),
        )
        .await;
        return;
    }
    let nonce = crate::auth::random_token(24);
    if !send(
        &mut socket,
        &RelayToJump::Challenge {
            nonce: nonce.clone(),
        },
    )
    .await
    {
        return;
    }
    let text = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        _ => {
            close(&mut socket, 1008, "the first message must be a hello").await;
            return;
        }
    };
    let (version, client_id, purpose, info, signature) = match JumpToRelay::decode(&text) {
        Ok(JumpToRelay::Hello {
            version,
            client_id,
            purpose,
            info,
            signature,
        }) => (version, client_id, purpose, info, signature),
        _ => {
            close(&mut socket, 1008, "the first message must be a hello").await;
            return;
        }
    };
    if let Err(m) = VERSION.accepts(version) {
        refuse(
            &mut socket,
            JumpRefuseCode::IncompatibleVersion,
            m.to_string(),
            None,
        )
        .await;
        return;
    }
    let row = match store::client(&state.db, &client_id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot look up a jump client");
            refuse(
                &mut socket,
                JumpRefuseCode::Busy,
                "The support box cannot answer right now.".into(),
                Some(30),
            )
            .await;
            return;
        }
    };
    let verified = row.as_ref().is_some_and(|r| {
        verify(
            &r.public_key,
            &auth_message(&client_id, &nonce, &state.pin),
            &signature,
        )
    });
    let Some(row) = row.filter(|_| verified) else {
        super::audit(
            &state,
            "jump",
            ip,
            "jump.connect",
            "refused",
            &format!("{client_id:?}: unknown client or wrong key"),
        )
        .await;
        refuse(
            &mut socket,
            JumpRefuseCode::NotRecognised,
            "This jump client is not recognised by the support box.".into(),
            None,
        )
        .await;
        return;
    };
    if row.removed {
        super::audit(
            &state,
            "jump",
            ip,
            "jump.connect",
            "refused",
            &format!("{client_id}: removed"),
        )
        .await;
        refuse(
            &mut socket,
            JumpRefuseCode::Removed,
            "An administrator removed this jump client.".into(),
            None,
        )
        .await;
        return;
    }
    let mode = store::mode_from(&row.mode);
    let limit = state.jump.limit(&state.licence, JumpMode::Active).await;
    let (tx, mut orders) = mpsc::channel(ORDER_QUEUE);
    // Passive clients are limited when they register; active ones while connected.
    let max_active = if mode == JumpMode::Active {
        limit
    } else {
        u32::MAX
    };
    let Some(gen_) = state.jump.attach(&client_id, mode, max_active, tx) else {
        refuse(
            &mut socket,
            JumpRefuseCode::LicenceLimit,
            api::licence_message(mode, limit),
            Some(300),
        )
        .await;
        return;
    };
    state
        .hub
        .counters
        .jump_clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let facts = lifeline_proto::jump::JumpInfo {
        computer: lifeline_proto::sanitize_text(&info.computer),
        platform: lifeline_proto::sanitize_text(&info.platform),
        logged_in_user: lifeline_proto::sanitize_text(&info.logged_in_user),
        agent_version: lifeline_proto::sanitize_text(&info.agent_version),
    };
    // Written when they changed or "last seen" is older than the saver's round: a
    // reconnection storm of unchanged clients then costs the database nothing.
    let unchanged = row.computer == facts.computer
        && row.platform == facts.platform
        && row.logged_in_user == facts.logged_in_user
        && row.agent_version == facts.agent_version;
    let save_ms = i64::try_from(crate::jump::SAVE_EVERY.as_millis()).unwrap_or(i64::MAX);
    let stale = row
        .last_seen
        .is_none_or(|t| crate::db::now_ms().saturating_sub(t) > save_ms);
    if !unchanged || stale {
        store::connected(&state.db, &client_id, &facts).await;
    }
    if mode == JumpMode::Passive {
        store::record_address(&state.db, &client_id, &ip.to_canonical().to_string()).await;
    }
    let welcomed = send(
        &mut socket,
        &RelayToJump::Welcome {
            version: VERSION,
            heartbeat_s: state.jump.heartbeat_s(),
            next_check_in_s: state.jump.check_in_s(),
            name: row.name.clone(),
        },
    )
    .await;
    if welcomed && purpose == Purpose::Woken {
        state.jump.woken(&client_id);
    }
    // What the handshake needed is freed before the link idles (an idle link should hold
    // nothing but its socket).
    drop((row, info, facts, text, nonce, signature));
    if welcomed && purpose != Purpose::CheckIn {
        let idle = (purpose == Purpose::Woken).then_some(WOKEN_IDLE);
        serve(
            &state,
            &mut socket,
            &mut orders,
            (client_id.as_str(), ip),
            idle,
        )
        .await;
    } else {
        close(&mut socket, 1000, "goodbye").await;
    }
    state
        .hub
        .counters
        .jump_clients
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if state.jump.detach(&client_id, gen_) {
        store::touch_many(&state.db, &[client_id], crate::db::now_ms()).await;
    }
}

/// The idle life of a link: at each shared heartbeat ping the client (or drop it when it has
/// been silent for three), forward orders, hear replies. A woken passive client's link
/// (`idle` set) is let go after that long without an order. No timer of its own otherwise:
/// an idle link costs a ping and a pong per heartbeat, served with every other link's.
async fn serve(
    state: &State,
    socket: &mut WebSocket,
    orders: &mut mpsc::Receiver<Box<RelayToJump>>,
    (client_id, ip): (&str, IpAddr),
    idle: Option<Duration>,
) {
    let silence = Duration::from_secs(u64::from(state.jump.heartbeat_s()) * 3);
    let mut stop = state.shutdown.clone();
    let mut beat = state.jump.heartbeat();
    beat.mark_unchanged();
    let mut last_heard = std::time::Instant::now();
    let mut user_told: Option<std::time::Instant> = None;
    let let_go = tokio::time::sleep(idle.unwrap_or(Duration::ZERO));
    tokio::pin!(let_go);
    loop {
        tokio::select! {
            m = socket.recv() => {
                last_heard = std::time::Instant::now();
                match m {
                    Some(Ok(Message::Text(t))) => match JumpToRelay::decode(&t) {
                        Ok(JumpToRelay::Uninstalled) => {
                            store::uninstalled(&state.db, client_id).await;
                            super::audit(state, "jump", ip, "jump.uninstalled", "ok", client_id).await;
                            close(socket, 1000, "goodbye").await;
                            return;
                        }
                        Ok(JumpToRelay::SessionFailed { request_id, reason }) => {
                            api::session_failed(state, client_id, &request_id, &reason).await;
                        }
                        Ok(JumpToRelay::LoggedInUser { user }) => {
                            // A client tells a change once a heartbeat at most; more often
                            // is ignored (each one is a database write).
                            if user_told.is_some_and(|t| t.elapsed() < USER_EVERY) {
                                tracing::debug!(client_id, "logged-in user told too often: ignored");
                                continue;
                            }
                            user_told = Some(std::time::Instant::now());
                            let user = lifeline_proto::sanitize_text(&user);
                            tracing::debug!(client_id, user, "logged-in user changed");
                            store::logged_in_user(&state.db, client_id, &user).await;
                        }
                        _ => {
                            close(socket, 1008, "unexpected message").await;
                            return;
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        close(socket, 1008, "unexpected binary message").await;
                        return;
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            changed = beat.changed() => {
                if changed.is_err() || last_heard.elapsed() > silence {
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            o = orders.recv() => match o {
                Some(order) => {
                    if !send(socket, &order).await {
                        return;
                    }
                    if let Some(idle) = idle {
                        let_go.as_mut().reset(tokio::time::Instant::now() + idle);
                    }
                }
                // A newer link of the same client replaced this one.
                None => {
                    close(socket, 1000, "replaced by a newer connection").await;
                    return;
                }
            },
            _ = &mut let_go, if idle.is_some() => {
                close(socket, 1000, "goodbye").await;
                return;
            }
            _ = super::until_shutdown(&mut stop) => {
                close(socket, 1012, "the support box restarts").await;
                return;
            }
        }
    }
}

fn verify(public_b64: &str, message: &[u8], signature_b64: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = b64
        .decode(public_b64)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    else {
        return false;
    };
    let Some(sig) = b64
        .decode(signature_b64)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
    else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}
