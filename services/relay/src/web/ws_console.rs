//! `/ws/console`: live queue and session events for a representative's console.
//!
//! Authenticated by the login cookie (with an Origin check against cross-site WebSocket
//! hijacking) or a bearer token. The socket only pushes; actions go through the REST API.

use std::time::Duration;

use axum::extract::State as AxState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use lifeline_proto::console::RelayToConsole;
use lifeline_proto::{VERSION, encode};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Authed, State};

pub async fn upgrade(
    ws: WebSocketUpgrade,
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = super::console_socket_user(&state, &headers).await?;
    Ok(ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| run(state, a, socket))
        .into_response())
}

async fn send(socket: &mut WebSocket, event: &RelayToConsole) -> bool {
    socket
        .send(Message::Text(encode(event).into()))
        .await
        .is_ok()
}

async fn run(state: State, a: Authed, mut socket: WebSocket) {
    let user = a.user;
    let holder = crate::licence::RepSeats::holder(&user.username);
    state.licence.open(&holder);
    let hub = state.hub.clone();
    // Subscribe before the snapshot so nothing falls between them.
    let mut events = hub.subscribe();
    hub.rep_online(user.id, 1);
    hub.counters
        .consoles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(Duration::from_secs(25));
    let hello = RelayToConsole::Hello {
        version: VERSION,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
    };
    let mut ok = send(&mut socket, &hello).await
        && send(
            &mut socket,
            &RelayToConsole::Snapshot {
                entries: hub.snapshot(&user),
            },
        )
        .await;
    while ok {
        tokio::select! {
            ev = events.recv() => {
                ok = match ev {
                    Ok(a) if hub.admits(&a.audience, &user) => send(&mut socket, &a.event).await,
                    Ok(_) => true,
                    // This console fell behind: start it over from a fresh snapshot.
                    Err(RecvError::Lagged(_)) => send(&mut socket, &RelayToConsole::Snapshot { entries: hub.snapshot(&user) }).await,
                    Err(RecvError::Closed) => false,
                };
            }
            incoming = socket.recv() => {
                ok = matches!(incoming, Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))));
            }
            _ = ping.tick() => {
                ok = socket.send(Message::Ping(Default::default())).await.is_ok();
            }
            _ = super::until_shutdown(&mut shutdown) => {
                let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1012,
                    reason: "the support box is restarting".into(),
                }))).await;
                ok = false;
            }
        }
    }
    hub.rep_online(user.id, -1);
    hub.counters
        .consoles
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    state.licence.close(&holder);
}
