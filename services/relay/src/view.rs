//! Screen sharing inside the relay: one [`Room`] per open session holds what the customer
//! granted, the monitors and stream settings, the open viewers (`/ws/view/{id}`) with their
//! bounded outgoing queues, and the session's traffic counters.
//!
//! # Routing
//! The agent's binary WebSocket messages are checked with [`frame::decode`] (header only)
//! and the very same bytes ([`Bytes`], shared, never copied) are queued for every viewer.
//! The relay never decodes a screen payload. The one payload byte it reads is the kind of a
//! cursor message (shape, position or hidden), so that a queued cursor message is replaced
//! by a newer one of the same kind instead of piling up: at most one position and one shape
//! (or hidden) message wait per viewer.
//!
//! # Slow viewers
//! Each viewer has an [`Outbox`] bounded by [`QUEUE_FRAMES`] screen messages and
//! [`QUEUE_BYTES`] bytes. When a screen message does not fit, the viewer's queued screen
//! messages are dropped, the agent is asked for a key frame (`Refresh`) and the viewer skips
//! screen messages until one with [`frame::FLAG_SUPERSEDES`] arrives (asking again every
//! [`REFRESH_AGAIN`] while none comes). A viewer that falls behind therefore gets fewer,
//! newer pictures and never a backlog of stale ones, and never slows the agent or the other
//! viewers: routing only ever appends to queues. JSON messages are never dropped; a viewer
//! whose queue holds more than [`QUEUE_TEXTS`] of them is closed (1013) instead.
//!
//! # Pacing
//! Each viewer acknowledges the frames it has drawn; the room forwards the lowest
//! acknowledgement of the viewers that are in step (they have been sent frames and are not
//! skipping) to the agent as `FrameAck`, only when it moves forward (serial-number order, so
//! frame numbers may wrap). A viewer that skips frames is left out until it is back in step,
//! so the agent is never left waiting for an acknowledgement that cannot come.
//!
//! # Stream state
//! The agent is told `Stream { active: true }` while it is connected, `view` is granted and
//! at least one viewer is open, and `active: false` as soon as one of these stops. A viewer
//! that joins a running stream triggers a `Refresh`.
//!
//! # Grants across restarts
//! Grants live in memory and as session events in the database; a relay that restarts
//! replays the events ([`grants_from_events`]). The agent, which is the authority, re-reports
//! its standing grants (and any revocation made meanwhile) when it reconnects, and only
//! captures or injects while its own grant stands.
//!
//! # Limits
//! Messages to the agent go through its bounded queue without waiting: when that queue is
//! nearly full, pointer moves are dropped first. Stream settings are not kept across a relay
//! restart (the viewers send them again).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use axum::body::Bytes;
use lifeline_proto::agent::RelayToAgent;
use lifeline_proto::frame::{self, Channel, FrameHeader};
use lifeline_proto::remote::{GrantState, InputEvent, Monitor, Permission, StreamSettings};
use lifeline_proto::screen::CURSOR_POSITION;
use lifeline_proto::viewer::{Grant, RelayToViewer, ViewerErrorCode};
use lifeline_proto::{VERSION, encode};
use tokio::sync::Notify;

use crate::db::{EventRow, StreamTotals};
use crate::hub::AgentTx;

/// Most screen messages queued for one viewer.
pub const QUEUE_FRAMES: usize = 64;
/// Most bytes of screen and cursor messages queued for one viewer.
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Most JSON messages queued for one viewer; past this the viewer is closed.
pub const QUEUE_TEXTS: usize = 4096;
/// How long a skipping viewer waits for a key frame before the agent is asked again.
pub const REFRESH_AGAIN: Duration = Duration::from_secs(1);
/// Pointer moves are dropped when the agent's queue has fewer free places than this.
const AGENT_ROOM_FOR_POINTER: usize = 32;

/// Frame numbers compared in serial-number order (they may wrap).
fn after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// The event kind recorded for a permission reaching `state`.
pub fn event_kind(state: GrantState) -> &'static str {
    match state {
        GrantState::Requested => "permission_requested",
        GrantState::Granted => "permission_granted",
        GrantState::Denied => "permission_denied",
        GrantState::Revoked => "permission_revoked",
    }
}

/// Where each permission stood after these session events (their detail starts with the
/// permission's name).
pub fn grants_from_events(events: &[EventRow]) -> BTreeMap<Permission, GrantState> {
    let mut grants = BTreeMap::new();
    for e in events {
        let state = match e.kind.as_str() {
            "permission_requested" => GrantState::Requested,
            "permission_granted" => GrantState::Granted,
            "permission_denied" => GrantState::Denied,
            "permission_revoked" => GrantState::Revoked,
            _ => continue,
        };
        let name = e.detail.split([',', ' ']).next().unwrap_or("");
        if let Some(p) = Permission::from_name(name) {
            grants.insert(p, state);
        }
    }
    grants
}

// ---- counters -------------------------------------------------------------------------------

/// A session's screen traffic, counted as it flows; saved now and then by the hub.
#[derive(Debug, Default)]
pub struct Counters {
    screen_frames: AtomicU64,
    screen_bytes: AtomicU64,
    cursor_frames: AtomicU64,
    cursor_bytes: AtomicU64,
    delivered_frames: AtomicU64,
    delivered_bytes: AtomicU64,
    dropped_frames: AtomicU64,
    dropped_bytes: AtomicU64,
    dirty: AtomicBool,
}

impl Counters {
    pub fn from_totals(t: &StreamTotals) -> Self {
        let c = Counters::default();
        c.screen_frames.store(t.screen_frames, Ordering::Relaxed);
        c.screen_bytes.store(t.screen_bytes, Ordering::Relaxed);
        c.cursor_frames.store(t.cursor_frames, Ordering::Relaxed);
        c.cursor_bytes.store(t.cursor_bytes, Ordering::Relaxed);
        c.delivered_frames
            .store(t.delivered_frames, Ordering::Relaxed);
        c.delivered_bytes
            .store(t.delivered_bytes, Ordering::Relaxed);
        c.dropped_frames.store(t.dropped_frames, Ordering::Relaxed);
        c.dropped_bytes.store(t.dropped_bytes, Ordering::Relaxed);
        c
    }

    fn add(frames: &AtomicU64, bytes: &AtomicU64, n: u64, len: u64) {
        frames.fetch_add(n, Ordering::Relaxed);
        bytes.fetch_add(len, Ordering::Relaxed);
    }

    fn received(&self, channel: Channel, len: usize) {
        match channel {
            Channel::Cursor => Self::add(&self.cursor_frames, &self.cursor_bytes, 1, len as u64),
            _ => Self::add(&self.screen_frames, &self.screen_bytes, 1, len as u64),
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// A message was written to a viewer's socket.
    pub fn delivered(&self, len: usize) {
        Self::add(&self.delivered_frames, &self.delivered_bytes, 1, len as u64);
        self.dirty.store(true, Ordering::Relaxed);
    }

    fn dropped(&self, n: u64, len: u64) {
        Self::add(&self.dropped_frames, &self.dropped_bytes, n, len);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn totals(&self) -> StreamTotals {
        StreamTotals {
            screen_frames: self.screen_frames.load(Ordering::Relaxed),
            screen_bytes: self.screen_bytes.load(Ordering::Relaxed),
            cursor_frames: self.cursor_frames.load(Ordering::Relaxed),
            cursor_bytes: self.cursor_bytes.load(Ordering::Relaxed),
            delivered_frames: self.delivered_frames.load(Ordering::Relaxed),
            delivered_bytes: self.delivered_bytes.load(Ordering::Relaxed),
            dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
        }
    }

    /// The totals if they changed since the last call.
    pub fn take_changed(&self) -> Option<StreamTotals> {
        self.dirty
            .swap(false, Ordering::Relaxed)
            .then(|| self.totals())
    }
}

// ---- one viewer's queue ---------------------------------------------------------------------

/// Which cursor messages replace each other in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorKind {
    Position,
    /// A shape or "hidden": the latest one decides what the viewer shows.
    Look,
}

#[derive(Debug)]
enum Item {
    Text(String),
    Screen(Bytes),
    Cursor(Bytes, CursorKind),
}

/// What a viewer's writer does next.
#[derive(Debug)]
pub enum Next {
    Text(String),
    Binary(Bytes),
    Close(u16, String),
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    screen: usize,
    bytes: usize,
    texts: usize,
    /// Close after the queue is drained (the session ended).
    close_after: Option<(u16, String)>,
    /// Close now (the viewer is hopelessly behind or the relay stops).
    close_now: Option<(u16, String)>,
}

/// Outcome of queueing a screen message.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// Did not fit; this many queued screen messages (and bytes) were dropped with it.
    Overflow {
        frames: u64,
        bytes: u64,
    },
}

/// One viewer's bounded outgoing queue, shared by the room (which fills it) and the viewer's
/// socket writer (which drains it).
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self, msg: &RelayToViewer) {
        self.push_text(encode(msg));
    }

    /// Queues a JSON message (never dropped).
    pub fn push_text(&self, text: String) {
        {
            let mut q = self.lock();
            if q.texts >= QUEUE_TEXTS {
                q.close_now
                    .get_or_insert((1013, "the viewer is not reading its messages".into()));
            } else {
                q.texts += 1;
                q.items.push_back(Item::Text(text));
            }
        }
        self.wake.notify_one();
    }

    /// Queues a screen message unless the queue is full; a superseding message that does not
    /// fit replaces the queued ones.
    fn screen(&self, bytes: Bytes, supersedes: bool) -> Pushed {
        let result = {
            let mut q = self.lock();
            let full = q.screen >= QUEUE_FRAMES || q.bytes + bytes.len() > QUEUE_BYTES;
            let mut result = Pushed::Queued;
            if full {
                let (mut frames, mut dropped) = (0u64, 0u64);
                q.items.retain(|i| match i {
                    Item::Screen(b) => {
                        frames += 1;
                        dropped += b.len() as u64;
                        false
                    }
                    _ => true,
                });
                q.bytes -= dropped as usize;
                q.screen = 0;
                if !supersedes {
                    return Pushed::Overflow {
                        frames: frames + 1,
                        bytes: dropped + bytes.len() as u64,
                    };
                }
                result = Pushed::Overflow {
                    frames,
                    bytes: dropped,
                };
            }
            q.screen += 1;
            q.bytes += bytes.len();
            q.items.push_back(Item::Screen(bytes));
            result
        };
        self.wake.notify_one();
        result
    }

    /// Queues a cursor message, replacing a queued one of the same kind; returns the size of
    /// the message it replaced.
    fn cursor(&self, bytes: Bytes) -> Option<usize> {
        let kind = if bytes.get(frame::HEADER_LEN) == Some(&CURSOR_POSITION) {
            CursorKind::Position
        } else {
            CursorKind::Look
        };
        let replaced = {
            let mut q = self.lock();
            let len = bytes.len();
            let slot = q
                .items
                .iter_mut()
                .find(|i| matches!(i, Item::Cursor(_, k) if *k == kind));
            let replaced = match slot {
                Some(Item::Cursor(old, _)) => {
                    let old_len = old.len();
                    *old = bytes;
                    Some(old_len)
                }
                _ => {
                    q.items.push_back(Item::Cursor(bytes, kind));
                    None
                }
            };
            q.bytes = q.bytes + len - replaced.unwrap_or(0);
            replaced
        };
        self.wake.notify_one();
        replaced
    }

    /// Sends what is queued, then closes.
    pub fn close_after(&self, code: u16, reason: &str) {
        self.lock().close_after = Some((code, reason.to_string()));
        self.wake.notify_one();
    }

    /// Closes without sending what is queued.
    pub fn close_now(&self, code: u16, reason: &str) {
        self.lock()
            .close_now
            .get_or_insert((code, reason.to_string()));
        self.wake.notify_one();
    }

    fn try_next(&self) -> Option<Next> {
        let mut q = self.lock();
        if let Some((code, reason)) = q.close_now.take() {
            return Some(Next::Close(code, reason));
        }
        match q.items.pop_front() {
            Some(Item::Text(t)) => {
                q.texts -= 1;
                Some(Next::Text(t))
            }
            Some(Item::Screen(b)) => {
                q.screen -= 1;
                q.bytes -= b.len();
                Some(Next::Binary(b))
            }
            Some(Item::Cursor(b, _)) => {
                q.bytes -= b.len();
                Some(Next::Binary(b))
            }
            None => q.close_after.take().map(|(c, r)| Next::Close(c, r)),
        }
    }

    /// Waits for the next thing to write.
    pub async fn next(&self) -> Next {
        loop {
            if let Some(n) = self.try_next() {
                return n;
            }
            self.wake.notified().await;
        }
    }
}

// ---- the room -------------------------------------------------------------------------------

#[derive(Debug)]
struct Viewer {
    outbox: Arc<Outbox>,
    /// The last frame it acknowledged since it was last in step.
    acked: Option<u32>,
    /// It has been sent a screen message since it was last in step.
    fed: bool,
    /// It fell behind and waits for a superseding message.
    skipping: bool,
    last_refresh: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    agent: Option<AgentTx>,
    grants: BTreeMap<Permission, GrantState>,
    monitors: Vec<Monitor>,
    settings: StreamSettings,
    viewers: BTreeMap<u64, Viewer>,
    next_viewer: u64,
    /// What the agent was last told.
    active: bool,
    /// The last `FrameAck` sent to the current agent link.
    last_ack: Option<u32>,
    agent_rtt_ms: Option<u32>,
    ended: bool,
}

impl State {
    fn granted(&self, p: Permission) -> bool {
        self.grants.get(&p) == Some(&GrantState::Granted)
    }

    fn to_agent(&self, msg: RelayToAgent) {
        if let Some(tx) = &self.agent {
            let _ = tx.try_send(msg);
        }
    }

    fn broadcast(&self, msg: &RelayToViewer) {
        if self.viewers.is_empty() {
            return;
        }
        let text = encode(msg);
        for v in self.viewers.values() {
            v.outbox.push_text(text.clone());
        }
    }

    /// Tells the agent when whether anyone watches changed.
    fn update_stream(&mut self) {
        let want = self.agent.is_some()
            && !self.ended
            && !self.viewers.is_empty()
            && self.granted(Permission::View);
        if want == self.active {
            return;
        }
        self.active = want;
        self.last_ack = None;
        for v in self.viewers.values_mut() {
            v.acked = None;
            v.fed = false;
            v.skipping = false;
        }
        self.to_agent(RelayToAgent::Stream {
            active: want,
            settings: self.settings.clone(),
        });
    }

    /// Forwards the lowest acknowledgement of the viewers in step when it moved forward.
    fn forward_ack(&mut self) {
        let mut low: Option<u32> = None;
        for v in self.viewers.values().filter(|v| v.fed && !v.skipping) {
            let Some(a) = v.acked else { return };
            low = Some(match low {
                Some(l) if after(a, l) => l,
                _ => a,
            });
        }
        let Some(low) = low else { return };
        if self.last_ack.is_none_or(|last| after(low, last)) {
            self.last_ack = Some(low);
            self.to_agent(RelayToAgent::FrameAck { frame: low });
        }
    }
}

/// A viewer's message the room refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: ViewerErrorCode,
    pub message: &'static str,
}

/// Screen sharing state of one open session.
#[derive(Debug)]
pub struct Room {
    pub session_id: String,
    state: Mutex<State>,
    pub counters: Counters,
}

impl Room {
    /// A room with the counters and grants of a session as stored (both empty for a new
    /// session).
    pub fn new(
        session_id: &str,
        totals: Option<&StreamTotals>,
        grants: BTreeMap<Permission, GrantState>,
    ) -> Self {
        Room {
            session_id: session_id.to_string(),
            state: Mutex::new(State {
                grants,
                ..State::default()
            }),
            counters: totals.map(Counters::from_totals).unwrap_or_default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- agent side -----------------------------------------------------------------------

    /// A new agent link (or none, when it dropped).
    pub fn set_agent(&self, tx: Option<AgentTx>) {
        let mut s = self.lock();
        let online = tx.is_some();
        s.agent = tx;
        s.active = false;
        s.last_ack = None;
        s.agent_rtt_ms = None;
        s.broadcast(&RelayToViewer::Presence { online });
        s.update_stream();
    }

    pub fn grant(&self, p: Permission) -> Option<GrantState> {
        self.lock().grants.get(&p).copied()
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.lock()
            .grants
            .iter()
            .map(|(p, s)| Grant {
                permission: *p,
                state: *s,
            })
            .collect()
    }

    /// Records where a permission stands (after it was written to the database) and tells
    /// the viewers; starts or stops the stream as needed.
    pub fn set_grant(&self, permission: Permission, state: GrantState) {
        let mut s = self.lock();
        s.grants.insert(permission, state);
        s.broadcast(&RelayToViewer::Permission { permission, state });
        s.update_stream();
    }

    pub fn set_monitors(&self, monitors: Vec<Monitor>) {
        let mut s = self.lock();
        s.broadcast(&RelayToViewer::Monitors {
            monitors: monitors.clone(),
        });
        s.monitors = monitors;
    }

    /// Clipboard text from the customer: passed on only while `clipboard` is granted.
    pub fn agent_clipboard(&self, text: String) -> bool {
        let s = self.lock();
        if !s.granted(Permission::Clipboard) {
            return false;
        }
        s.broadcast(&RelayToViewer::Clipboard { text });
        true
    }

    pub fn set_agent_rtt(&self, ms: u32) {
        self.lock().agent_rtt_ms = Some(ms);
    }

    pub fn agent_rtt(&self) -> Option<u32> {
        self.lock().agent_rtt_ms
    }

    /// Whether the agent is told to stream.
    pub fn is_active(&self) -> bool {
        self.lock().active
    }

    /// Routes one binary message from the agent (its header already checked) to the viewers.
    pub fn route(&self, header: &FrameHeader, bytes: Bytes) {
        let len = bytes.len();
        self.counters.received(header.channel, len);
        let mut s = self.lock();
        if !s.active {
            drop(s);
            self.counters.dropped(1, len as u64);
            return;
        }
        let supersedes = header.flags & frame::FLAG_SUPERSEDES != 0;
        let (mut refresh, mut resync) = (false, false);
        let now = Instant::now();
        for v in s.viewers.values_mut() {
            if header.channel == Channel::Cursor {
                if let Some(old) = v.outbox.cursor(bytes.clone()) {
                    self.counters.dropped(1, old as u64);
                }
                continue;
            }
            if v.skipping {
                if !supersedes {
                    self.counters.dropped(1, len as u64);
                    if v.last_refresh.is_none_or(|t| now - t >= REFRESH_AGAIN) {
                        v.last_refresh = Some(now);
                        refresh = true;
                    }
                    continue;
                }
                v.skipping = false;
            }
            match v.outbox.screen(bytes.clone(), supersedes) {
                Pushed::Queued => v.fed = true,
                Pushed::Overflow { frames, bytes } => {
                    self.counters.dropped(frames, bytes);
                    resync = true;
                    if supersedes {
                        v.fed = true;
                    } else {
                        tracing::debug!(session = %self.session_id, "a viewer fell behind; asking for a key frame");
                        v.skipping = true;
                        v.fed = false;
                        v.acked = None;
                        v.last_refresh = Some(now);
                        refresh = true;
                    }
                }
            }
        }
        if refresh {
            s.to_agent(RelayToAgent::Refresh);
        }
        if resync {
            s.forward_ack();
        }
    }

    // ---- viewer side ----------------------------------------------------------------------

    /// Opens a viewer: queues its hello, starts the stream or asks for a key frame. `None`
    /// once the session ended.
    pub fn add_viewer(&self, outbox: Arc<Outbox>) -> Option<u64> {
        let mut s = self.lock();
        if s.ended {
            return None;
        }
        outbox.text(&RelayToViewer::Hello {
            version: VERSION,
            session_id: self.session_id.clone(),
            grants: s
                .grants
                .iter()
                .map(|(p, st)| Grant {
                    permission: *p,
                    state: *st,
                })
                .collect(),
            monitors: s.monitors.clone(),
            settings: s.settings.clone(),
            agent_online: s.agent.is_some(),
        });
        let id = s.next_viewer;
        s.next_viewer += 1;
        s.viewers.insert(
            id,
            Viewer {
                outbox,
                acked: None,
                fed: false,
                skipping: false,
                last_refresh: None,
            },
        );
        if s.active {
            s.to_agent(RelayToAgent::Refresh);
        } else {
            s.update_stream();
        }
        Some(id)
    }

    pub fn remove_viewer(&self, id: u64) {
        let mut s = self.lock();
        if s.viewers.remove(&id).is_some() {
            s.update_stream();
            s.forward_ack();
        }
    }

    pub fn viewer_count(&self) -> usize {
        self.lock().viewers.len()
    }

    pub fn ack(&self, viewer: u64, frame: u32) {
        let mut s = self.lock();
        let Some(v) = s.viewers.get_mut(&viewer) else {
            return;
        };
        if v.skipping || !v.fed {
            return;
        }
        if v.acked.is_none_or(|a| after(frame, a)) {
            v.acked = Some(frame);
        }
        s.forward_ack();
    }

    pub fn input(&self, event: InputEvent) -> Result<(), Refusal> {
        let s = self.lock();
        if !(s.granted(Permission::Control) && s.granted(Permission::View)) {
            return Err(Refusal {
                code: ViewerErrorCode::NotPermitted,
                message: "the customer has not allowed control of their computer",
            });
        }
        if let Some(tx) = &s.agent {
            let pointer = matches!(event, InputEvent::Pointer { .. });
            if !pointer || tx.capacity() >= AGENT_ROOM_FOR_POINTER {
                let _ = tx.try_send(RelayToAgent::Input { event });
            }
        }
        Ok(())
    }

    pub fn clipboard(&self, text: String) -> Result<(), Refusal> {
        let s = self.lock();
        if !s.granted(Permission::Clipboard) {
            return Err(Refusal {
                code: ViewerErrorCode::NotPermitted,
                message: "the customer has not allowed clipboard exchange",
            });
        }
        s.to_agent(RelayToAgent::Clipboard { text });
        Ok(())
    }

    /// New stream settings from a viewer: for every viewer, and for the agent.
    pub fn settings(&self, settings: StreamSettings) {
        let mut s = self.lock();
        s.settings = settings.clone();
        s.broadcast(&RelayToViewer::Stream {
            settings: settings.clone(),
        });
        if s.active {
            s.to_agent(RelayToAgent::Stream {
                active: true,
                settings,
            });
        }
    }

    pub fn refresh(&self) {
        let s = self.lock();
        if s.active {
            s.to_agent(RelayToAgent::Refresh);
        }
    }

    /// The session is over: every viewer is told and closed.
    pub fn end(&self, reason: &str) {
        let mut s = self.lock();
        s.ended = true;
        s.broadcast(&RelayToViewer::Ended {
            reason: reason.to_string(),
        });
        for v in s.viewers.values() {
            v.outbox.close_after(1000, "session ended");
        }
        s.viewers.clear();
        s.agent = None;
        s.active = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn screen(seq: u32, flags: u8, len: usize) -> (FrameHeader, Bytes) {
        let f = frame::encode(Channel::Screen, flags, seq, &vec![0u8; len]).unwrap();
        let (h, _) = frame::decode(&f).unwrap();
        (h, Bytes::from(f))
    }

    fn drain(o: &Outbox) -> Vec<Next> {
        std::iter::from_fn(|| o.try_next()).collect()
    }

    fn room_with_agent() -> (Room, mpsc::Receiver<RelayToAgent>) {
        let room = Room::new("s", None, BTreeMap::new());
        let (tx, rx) = mpsc::channel(256);
        room.set_agent(Some(tx));
        room.set_grant(Permission::View, GrantState::Granted);
        (room, rx)
    }

    fn agent_msgs(rx: &mut mpsc::Receiver<RelayToAgent>) -> Vec<RelayToAgent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn serial_order() {
        assert!(after(2, 1));
        assert!(!after(1, 2));
        assert!(!after(5, 5));
        assert!(after(1, u32::MAX));
    }

    #[test]
    fn overflow_drops_screen_keeps_text_and_waits_for_key_frame() {
        let (room, mut rx) = room_with_agent();
        let out = Arc::new(Outbox::default());
        let id = room.add_viewer(out.clone()).unwrap();
        assert!(matches!(
            agent_msgs(&mut rx).as_slice(),
            [RelayToAgent::Stream { active: true, .. }]
        ));
        for seq in 0..QUEUE_FRAMES as u32 {
            let (h, b) = screen(seq, 0, 10);
            room.route(&h, b);
        }
        room.set_monitors(vec![]);
        let (h, b) = screen(1000, 0, 10);
        room.route(&h, b);
        assert!(matches!(
            agent_msgs(&mut rx).as_slice(),
            [RelayToAgent::Refresh]
        ));
        // Still skipping: not queued.
        let (h, b) = screen(1001, 0, 10);
        room.route(&h, b);
        let (h, b) = screen(1002, frame::FLAG_SUPERSEDES, 10);
        room.route(&h, b);
        let (h, b) = screen(1003, 0, 10);
        room.route(&h, b);
        let got = drain(&out);
        let texts = got.iter().filter(|n| matches!(n, Next::Text(_))).count();
        let seqs: Vec<u32> = got
            .iter()
            .filter_map(|n| match n {
                Next::Binary(b) => Some(frame::decode(b).unwrap().0.seq),
                _ => None,
            })
            .collect();
        assert_eq!(texts, 2, "hello and monitors");
        assert_eq!(seqs, [1002, 1003]);
        let t = room.counters.totals();
        assert_eq!(t.screen_frames, QUEUE_FRAMES as u64 + 4);
        assert_eq!(t.dropped_frames, QUEUE_FRAMES as u64 + 2);
        room.remove_viewer(id);
        assert!(matches!(
            agent_msgs(&mut rx).as_slice(),
            [RelayToAgent::Stream { active: false, .. }]
        ));
    }

    #[test]
    fn cursor_messages_coalesce_by_kind() {
        let (room, _rx) = room_with_agent();
        let out = Arc::new(Outbox::default());
        room.add_viewer(out.clone()).unwrap();
        let cursor = |seq: u32, payload: &[u8]| {
            let f = frame::encode(Channel::Cursor, 0, seq, payload).unwrap();
            let (h, _) = frame::decode(&f).unwrap();
            room.route(&h, Bytes::from(f));
        };
        cursor(1, &[2, 0, 1, 0, 1]);
        cursor(2, &[3]);
        cursor(3, &[2, 0, 2, 0, 2]);
        cursor(4, &[2, 0, 3, 0, 3]);
        let seqs: Vec<u32> = drain(&out)
            .iter()
            .filter_map(|n| match n {
                Next::Binary(b) => Some(frame::decode(b).unwrap().0.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [4, 2]);
        assert_eq!(room.counters.totals().dropped_frames, 2);
    }

    #[test]
    fn acks_forward_the_minimum_of_viewers_in_step() {
        let (room, mut rx) = room_with_agent();
        let (a, b) = (Arc::new(Outbox::default()), Arc::new(Outbox::default()));
        let ia = room.add_viewer(a.clone()).unwrap();
        let ib = room.add_viewer(b.clone()).unwrap();
        agent_msgs(&mut rx);
        for seq in 1..=3 {
            let (h, f) = screen(seq, 0, 4);
            room.route(&h, f);
        }
        room.ack(ia, 3);
        assert!(agent_msgs(&mut rx).is_empty(), "b has not acknowledged");
        room.ack(ib, 1);
        room.ack(ib, 2);
        room.ack(ib, 1); // late and out of order: ignored
        let acks: Vec<u32> = agent_msgs(&mut rx)
            .into_iter()
            .filter_map(|m| match m {
                RelayToAgent::FrameAck { frame } => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [1, 2]);
        room.remove_viewer(ib);
        assert!(matches!(
            agent_msgs(&mut rx).as_slice(),
            [RelayToAgent::FrameAck { frame: 3 }]
        ));
    }

    #[test]
    fn a_viewer_that_reads_no_text_is_closed_not_grown() {
        let out = Outbox::default();
        for _ in 0..QUEUE_TEXTS + 10 {
            out.push_text("{}".into());
        }
        assert!(matches!(out.try_next(), Some(Next::Close(1013, _))));
        assert_eq!(out.lock().texts, QUEUE_TEXTS);
    }

    #[test]
    fn grants_replay_from_events() {
        let ev = |kind: &str, detail: &str| EventRow {
            id: 0,
            at: 0,
            kind: kind.into(),
            detail: detail.into(),
        };
        let g = grants_from_events(&[
            ev("permission_requested", "view, asked by Ana"),
            ev("permission_granted", "view"),
            ev("permission_requested", "control, asked by Ana"),
            ev("accepted", "Ana"),
            ev("permission_denied", "control"),
            ev("permission_granted", "nonsense"),
        ]);
        assert_eq!(
            g.into_iter().collect::<Vec<_>>(),
            [
                (Permission::View, GrantState::Granted),
                (Permission::Control, GrantState::Denied)
            ]
        );
    }

    /// What a property test may do to a room.
    #[derive(Debug, Clone)]
    enum Op {
        AddViewer,
        RemoveViewer(usize),
        Screen { len: usize, supersedes: bool },
        Cursor(u8),
        Ack { viewer: usize, frame: u32 },
        Drain(usize),
        Grant(bool),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Op::AddViewer),
            (0usize..4).prop_map(Op::RemoveViewer),
            (0usize..300_000, any::<bool>())
                .prop_map(|(len, supersedes)| Op::Screen { len, supersedes }),
            (1u8..=3).prop_map(Op::Cursor),
            (0usize..4, 0u32..64).prop_map(|(viewer, frame)| Op::Ack { viewer, frame }),
            (0usize..4).prop_map(Op::Drain),
            any::<bool>().prop_map(Op::Grant),
        ]
    }

    proptest::proptest! {
        /// Whatever happens, queues stay within their bounds, acknowledgements only move
        /// forward, and the agent is told to stream exactly while someone may watch.
        #[test]
        fn rooms_keep_their_bounds(ops in proptest::collection::vec(op(), 1..200)) {
            let room = Room::new("p", None, BTreeMap::new());
            let (tx, mut rx) = mpsc::channel(100_000);
            room.set_agent(Some(tx));
            let mut viewers: Vec<(u64, Arc<Outbox>)> = Vec::new();
            let mut seq = 0u32;
            let mut last_ack: Option<u32> = None;
            let mut granted = false;
            for op in ops {
                match op {
                    Op::AddViewer => {
                        let o = Arc::new(Outbox::default());
                        viewers.push((room.add_viewer(o.clone()).unwrap(), o));
                    }
                    Op::RemoveViewer(i) if i < viewers.len() => {
                        room.remove_viewer(viewers.remove(i).0);
                    }
                    Op::RemoveViewer(_) => {}
                    Op::Screen { len, supersedes } => {
                        seq += 1;
                        let flags = if supersedes { frame::FLAG_SUPERSEDES } else { 0 };
                        let f = frame::encode(Channel::Screen, flags, seq, &vec![0; len.min(lifeline_proto::MAX_FRAME_PAYLOAD)]).unwrap();
                        let (h, _) = frame::decode(&f).unwrap();
                        room.route(&h, Bytes::from(f));
                    }
                    Op::Cursor(kind) => {
                        seq += 1;
                        let f = frame::encode(Channel::Cursor, 0, seq, &[kind, 0, 0, 0, 0]).unwrap();
                        let (h, _) = frame::decode(&f).unwrap();
                        room.route(&h, Bytes::from(f));
                    }
                    Op::Ack { viewer, frame } => {
                        if let Some((id, _)) = viewers.get(viewer) {
                            room.ack(*id, frame);
                        }
                    }
                    Op::Drain(i) => {
                        if let Some((_, o)) = viewers.get(i) {
                            drain(o);
                        }
                    }
                    Op::Grant(g) => {
                        granted = g;
                        let st = if g { GrantState::Granted } else { GrantState::Revoked };
                        room.set_grant(Permission::View, st);
                    }
                }
                for (_, o) in &viewers {
                    let q = o.lock();
                    proptest::prop_assert!(q.screen <= QUEUE_FRAMES);
                    proptest::prop_assert!(q.bytes <= QUEUE_BYTES + 2 * 300);
                    let cursors = q.items.iter().filter(|i| matches!(i, Item::Cursor(..))).count();
                    proptest::prop_assert!(cursors <= 2);
                }
                proptest::prop_assert_eq!(room.is_active(), granted && !viewers.is_empty());
                while let Ok(m) = rx.try_recv() {
                    if let RelayToAgent::FrameAck { frame } = m {
                        if let Some(l) = last_ack {
                            proptest::prop_assert!(after(frame, l), "ack {} after {}", frame, l);
                        }
                        last_ack = Some(frame);
                    }
                    if let RelayToAgent::Stream { active: false, .. } = m {
                        last_ack = None;
                    }
                }
            }
        }
    }

    #[test]
    fn input_needs_control_and_view() {
        let (room, mut rx) = room_with_agent();
        let ev = InputEvent::Wheel { dx: 0, dy: 1 };
        assert!(room.input(ev.clone()).is_err());
        room.set_grant(Permission::Control, GrantState::Granted);
        assert!(room.input(ev.clone()).is_ok());
        room.set_grant(Permission::View, GrantState::Revoked);
        assert!(room.input(ev).is_err());
        assert!(
            agent_msgs(&mut rx)
                .iter()
                .any(|m| matches!(m, RelayToAgent::Input { .. }))
        );
    }
}
