//! `/ws/view/{session_id}`: one screen viewer in a representative's console.
//!
//! Authenticated like `/ws/console` (the login cookie with an Origin check, or a bearer
//! token); only the representative who accepted the session, or an admin, while it is
//! active. The socket is split: a writer drains the viewer's bounded [`Outbox`] (JSON
//! messages and the agent's binary frames, see [`crate::view`]) while the reader handles
//! what the viewer sends, so a viewer busy receiving a big frame still acknowledges and
//! types without delay.
//!
//! Viewer messages are rate-limited: input at [`INPUT_PER_SEC`] a second (bursts of
//! [`INPUT_BURST`]), everything else at [`OTHER_PER_SEC`]. An excess message is dropped and
//! answered with `Error { RateLimited }` (at most one such answer per
//! [`LIMIT_NOTICE_EVERY`], so a flood cannot fill the viewer's own queue); the socket stays
//! open. Input and clipboard without the customer's grant get `Error { NotPermitted }`.
//! A malformed or binary message closes the socket (1008); a viewer silent for
//! [`SILENCE_LIMIT`] (the browser answers the heartbeat pings by itself) is closed too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use lifeline_proto::viewer::{RelayToViewer, ViewerErrorCode, ViewerToRelay};
use lifeline_proto::{MAX_CONTROL_MESSAGE, encode};

use super::{ApiError, Authed, State};
use crate::view::{Next, Outbox, Room};

/// Input events a viewer may send per second, on average.
pub const INPUT_PER_SEC: f64 = 400.0;
/// Input events a viewer may send at once.
pub const INPUT_BURST: f64 = 400.0;
/// Other messages (acknowledgements, pings, settings, refresh, clipboard) per second.
pub const OTHER_PER_SEC: f64 = 200.0;
const OTHER_BURST: f64 = 200.0;
/// At most one `RateLimited` answer this often.
pub const LIMIT_NOTICE_EVERY: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_secs(25);
/// A viewer silent this long (not even answering the heartbeat) is gone: closed, so the
/// agent stops streaming for nobody.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(65);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    AxState(state): AxState<State>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = super::console_socket_user(&state, &headers).await?;
    if session_id.len() > 64 {
        return Err(ApiError::NotFound(
            "There is no session with this id.".into(),
        ));
    }
    let room = state.hub.viewer_room(&session_id, &a.user)?;
    Ok(ws
        .read_buffer_size(4 * 1024)
        .max_message_size(MAX_CONTROL_MESSAGE)
        .max_frame_size(MAX_CONTROL_MESSAGE)
        .on_upgrade(move |socket| run(state, a, room, socket))
        .into_response())
}

/// A token bucket.
struct Budget {
    tokens: f64,
    per_sec: f64,
    burst: f64,
    last: Instant,
}

impl Budget {
    fn new(per_sec: f64, burst: f64) -> Self {
        Budget {
            tokens: burst,
            per_sec,
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec)
            .min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why the reader stopped.
enum Stop {
    /// The peer closed or the connection broke.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

async fn run(state: State, a: Authed, room: Arc<Room>, socket: WebSocket) {
    let outbox = Arc::new(Outbox::default());
    let (mut sink, mut stream) = socket.split();
    let Some(id) = room.add_viewer(outbox.clone()) else {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "session ended".into(),
            })))
            .await;
        return;
    };
    tracing::info!(session = %room.session_id, user = %a.user.username, "viewer opened");
    let writer = async {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let next = tokio::select! {
                n = outbox.next() => n,
                _ = heartbeat.tick() => {
                    // Keeps idle proxies from cutting the socket; the browser answers it.
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let msg = match next {
                Next::Text(t) => Message::Text(t.into()),
                Next::Binary(b) => {
                    let len = b.len();
                    if sink.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                    room.counters.delivered(len);
                    continue;
                }
                Next::Close(code, reason) => Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            };
            let closing = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || closing {
                return;
            }
        }
    };
    let reader = async {
        let mut input = Budget::new(INPUT_PER_SEC, INPUT_BURST);
        let mut other = Budget::new(OTHER_PER_SEC, OTHER_BURST);
        let mut last_notice: Option<Instant> = None;
        let mut shutdown = state.shutdown.clone();
        let reply = |msg: RelayToViewer| outbox.push_text(encode(&msg));
        loop {
            let incoming = tokio::select! {
                m = tokio::time::timeout(SILENCE_LIMIT, stream.next()) => match m {
                    Ok(m) => m,
                    Err(_) => return Stop::Close(1001, "the viewer went silent"),
                },
                _ = super::until_shutdown(&mut shutdown) => {
                    return Stop::Close(1012, "the support box is restarting");
                }
            };
            let text = match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Stop::Gone,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Stop::Close(1008, "the viewer sends JSON text messages only");
                }
                Some(Ok(Message::Text(t))) => t,
            };
            let msg = match ViewerToRelay::decode(&text) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(session = %room.session_id, error = %e, "closing a viewer");
                    return Stop::Close(1008, "malformed message");
                }
            };
            let allowed = match msg {
                ViewerToRelay::Input { .. } => input.take(),
                _ => other.take(),
            };
            if !allowed {
                if last_notice.is_none_or(|t| t.elapsed() >= LIMIT_NOTICE_EVERY) {
                    last_notice = Some(Instant::now());
                    reply(RelayToViewer::Error {
                        code: ViewerErrorCode::RateLimited,
                        message: "too many messages: some were dropped".into(),
                    });
                }
                continue;
            }
            let refused = match msg {
                ViewerToRelay::Input { event } => room.input(event).err(),
                ViewerToRelay::Clipboard { text } => room.clipboard(text).err(),
                ViewerToRelay::Stream { settings } => {
                    room.settings(settings);
                    None
                }
                ViewerToRelay::Ack { frame } => {
                    room.ack(id, frame);
                    None
                }
                ViewerToRelay::Refresh => {
                    room.refresh();
                    None
                }
                ViewerToRelay::Ping { nonce } => {
                    reply(RelayToViewer::Pong {
                        nonce,
                        agent_rtt_ms: room.agent_rtt(),
                    });
                    None
                }
            };
            if let Some(r) = refused {
                reply(RelayToViewer::Error {
                    code: r.code,
                    message: r.message.to_string(),
                });
            }
        }
    };
    let stop = tokio::select! {
        _ = writer => Stop::Gone,
        stop = reader => stop,
    };
    room.remove_viewer(id);
    if let Stop::Close(code, reason) = stop {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    tracing::info!(session = %room.session_id, user = %a.user.username, "viewer closed");
}
