//! Screen sharing through the real relay process: a scripted agent speaking the protocol
//! over TLS and viewer sockets on `/ws/view/{id}`. Permissions asked, granted, denied and
//! revoked; frames routed unchanged; acknowledgements forwarded as the minimum of the
//! viewers; a slow viewer gets a key frame instead of a backlog while another keeps up;
//! input and clipboard refused without their grant; hostile agents closed alone; viewers of
//! other representatives refused; counters and events in the session's API record.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use lifeline_proto::frame::{self, Channel, FLAG_DEFLATE, FLAG_SUPERSEDES};
use lifeline_proto::screen::{self, Encoding, Rect, UpdateWriter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// What a peer received.
#[derive(Debug)]
enum Ev {
    Json(Value),
    Bin(Vec<u8>),
    Closed(Option<(u16, String)>),
}

/// A socket read by its own task (pings from the relay answered for agents), so a test can
/// send and receive independently.
struct Peer {
    name: &'static str,
    sink: std::sync::Arc<tokio::sync::Mutex<SplitSink<Ws, Message>>>,
    rx: mpsc::UnboundedReceiver<Ev>,
}

impl Peer {
    fn new(name: &'static str, ws: Ws, answer_pings: bool) -> Peer {
        let (sink, mut stream) = ws.split();
        let sink = std::sync::Arc::new(tokio::sync::Mutex::new(sink));
        let (tx, rx) = mpsc::unbounded_channel();
        let pong_sink = sink.clone();
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let ev = match m {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if answer_pings && v["type"] == "ping" {
                            let pong = json!({"type": "pong", "nonce": v["nonce"]}).to_string();
                            let _ = pong_sink
                                .lock()
                                .await
                                .send(Message::Text(pong.into()))
                                .await;
                            continue;
                        }
                        Ev::Json(v)
                    }
                    Ok(Message::Binary(b)) => Ev::Bin(b.to_vec()),
                    Ok(Message::Close(f)) => {
                        let _ = tx.send(Ev::Closed(
                            f.map(|f| (u16::from(f.code), f.reason.to_string())),
                        ));
                        return;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
            let _ = tx.send(Ev::Closed(None));
        });
        Peer { name, sink, rx }
    }

    async fn send(&self, v: Value) {
        self.sink
            .lock()
            .await
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    async fn send_bin(&self, b: Vec<u8>) {
        self.sink
            .lock()
            .await
            .send(Message::Binary(b.into()))
            .await
            .unwrap();
    }

    async fn next(&mut self, what: &str) -> Ev {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: nothing within {WAIT:?} while waiting for {what}",
                    self.name
                )
            })
            .unwrap_or(Ev::Closed(None))
    }

    /// The next JSON message that matches, skipping others (and binary messages).
    async fn json_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next(what).await {
                Ev::Json(v) if pred(&v) => return v,
                Ev::Closed(c) => panic!("{}: closed ({c:?}) while waiting for {what}", self.name),
                _ => {}
            }
        }
    }

    async fn json(&mut self, ty: &str) -> Value {
        self.json_where(ty, |v| v["type"] == ty).await
    }

    /// The next binary message, skipping JSON.
    async fn bin(&mut self) -> Vec<u8> {
        loop {
            match self.next("a binary frame").await {
                Ev::Bin(b) => return b,
                Ev::Closed(c) => panic!("{}: closed ({c:?}) while waiting for a frame", self.name),
                Ev::Json(_) => {}
            }
        }
    }

    async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            if let Ev::Closed(c) = self.next("the close").await {
                return c;
            }
        }
    }
}

/// A screen message of `frame` painting one solid rectangle.
fn screen_frame(seq: u32, frame_no: u32, key: bool, rgb: [u8; 3]) -> Vec<u8> {
    let mut w = UpdateWriter::new(64, 48, frame_no).unwrap();
    w.push(&Rect {
        x: 0,
        y: 0,
        w: 64,
        h: 48,
        encoding: Encoding::Solid,
        data: &rgb,
    })
    .unwrap();
    let flags = screen::UPDATE_END_OF_FRAME | if key { screen::UPDATE_KEY_FRAME } else { 0 };
    let payload = w.finish(flags);
    frame::encode(
        Channel::Screen,
        if key { FLAG_SUPERSEDES } else { 0 },
        seq,
        &payload,
    )
    .unwrap()
}

fn seq_of(b: &[u8]) -> u32 {
    frame::decode(b).unwrap().0.seq
}

/// An agent whose session the rep accepted; returns the agent, the session id and the
/// resume token.
async fn active_session(relay: &Relay, rep: &str, name: &str) -> (Peer, String, String) {
    let (mut ws, welcome) = join(relay, rep, "general", name).await;
    let sid = welcome["session_id"].as_str().unwrap().to_string();
    let token = welcome["resume_token"].as_str().unwrap().to_string();
    recv_type(&mut ws, "queue").await;
    let (s, v) = relay
        .post(rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut agent = Peer::new("agent", ws, true);
    agent.json("rep_joined").await;
    (agent, sid, token)
}

async fn viewer(relay: &Relay, token: &str, sid: &str) -> Peer {
    let ws = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(token)).await;
    let mut v = Peer::new("viewer", ws, false);
    let hello = v.json("hello").await;
    assert_eq!(hello["session_id"], sid);
    assert_eq!(hello["version"]["major"], 1);
    v
}

async fn ask(relay: &Relay, token: &str, sid: &str, permission: &str) -> (u16, Value) {
    relay
        .post(
            token,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({ "permission": permission }),
        )
        .await
}

/// Asks for `permission` and has the agent answer.
async fn grant(relay: &Relay, rep: &str, sid: &str, agent: &mut Peer, permission: &str) {
    let (s, v) = ask(relay, rep, sid, permission).await;
    assert_eq!(s, 200, "{v}");
    let req = agent.json("permission_request").await;
    assert_eq!(req["permission"], permission);
    agent
        .send(json!({"type": "permission", "permission": permission, "granted": true}))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_frames_acks_input_and_counters() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, sid, _) = active_session(&relay, &rep, "Zoé").await;
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;

    // A viewer before anything was granted: nothing streams, input is refused.
    let mut v1 = viewer(&relay, &rep, &sid).await;
    v1.send(json!({"type": "input", "event": {"kind": "pointer", "x": 1, "y": 2, "buttons": 0}}))
        .await;
    assert_eq!(v1.json("error").await["code"], "not_permitted");
    let (s, v) = ask(&relay, &rep, &sid, "control").await;
    assert_eq!(s, 409, "control before view: {v}");
    let (s, _) = ask(&relay, &rep, &sid, "root").await;
    assert_eq!(s, 400);

    // Request → the agent is asked with the rep's name; consoles and viewers see it.
    let (s, v) = ask(&relay, &rep, &sid, "view").await;
    assert_eq!((s, v["state"].as_str()), (200, Some("requested")), "{v}");
    let req = agent.json("permission_request").await;
    assert_eq!(
        (req["permission"].as_str(), req["rep"].as_str()),
        (Some("view"), Some("Rémi Rep"))
    );
    let p = recv_type(&mut console, "permission").await;
    assert_eq!(
        (p["session_id"].as_str(), p["state"].as_str()),
        (Some(sid.as_str()), Some("requested"))
    );
    let p = v1.json("permission").await;
    assert_eq!(
        (p["permission"].as_str(), p["state"].as_str()),
        (Some("view"), Some("requested"))
    );

    // Grant → stream active with the current settings.
    agent
        .send(json!({"type": "permission", "permission": "view", "granted": true}))
        .await;
    let st = agent.json("stream").await;
    assert_eq!(st["active"], true, "{st}");
    assert_eq!(
        recv_type(&mut console, "permission").await["state"],
        "granted"
    );
    assert_eq!(v1.json("permission").await["state"], "granted");
    agent
        .send(json!({"type": "monitors", "monitors": [
            {"id": 1, "x": 0, "y": 0, "width": 1920, "height": 1080, "primary": true, "name": "HDMI-1"},
            {"id": 2, "x": 1920, "y": 0, "width": 1280, "height": 1024, "primary": false, "name": "DP-1"}]}))
        .await;
    let m = v1.json("monitors").await;
    assert_eq!(m["monitors"][1]["name"], "DP-1");

    // A second viewer joining a running stream asks for a key frame, and sees the monitors.
    let ws = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(&rep)).await;
    let mut v2 = Peer::new("viewer 2", ws, false);
    let hello = v2.json("hello").await;
    assert_eq!(hello["monitors"].as_array().unwrap().len(), 2);
    assert_eq!(hello["grants"][0]["state"], "granted");
    assert_eq!(hello["agent_online"], true);
    agent.json("refresh").await;

    // The running stream goes on until the key frame comes: the second viewer skips the
    // messages before it (they continue a deflate stream it never saw), the first gets them.
    let running = frame::encode(
        Channel::Screen,
        FLAG_DEFLATE,
        0,
        &[0x12, 0x34, 0, 0, 0xFF, 0xFF],
    )
    .unwrap();
    agent.send_bin(running.clone()).await;
    assert_eq!(v1.bin().await, running);

    // Frames reach both viewers byte for byte, cursor frames too.
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|n| screen_frame(n, n, n == 1, [n as u8, 2, 3]))
        .collect();
    for f in &frames {
        agent.send_bin(f.clone()).await;
    }
    let cursor = frame::encode(
        Channel::Cursor,
        0,
        1,
        &screen::encode_cursor(&screen::Cursor::Position { x: 5, y: 6 }).unwrap(),
    )
    .unwrap();
    agent.send_bin(cursor.clone()).await;
    for v in [&mut v1, &mut v2] {
        for f in &frames {
            assert_eq!(&v.bin().await, f);
        }
        assert_eq!(v.bin().await, cursor);
    }

    // Acknowledgements: the agent hears the lowest of the two viewers.
    v1.send(json!({"type": "ack", "frame": 3})).await;
    v2.send(json!({"type": "ack", "frame": 2})).await;
    let ack = agent.json("frame_ack").await;
    assert_eq!(ack["frame"], 2, "the first acknowledgement is the minimum");
    v2.send(json!({"type": "ack", "frame": 3})).await;
    assert_eq!(agent.json("frame_ack").await["frame"], 3);

    // Settings from one viewer go to the agent and to every viewer.
    v1.send(json!({"type": "stream", "settings": {"monitor": 2, "quality": "low"}}))
        .await;
    let st = agent.json("stream").await;
    assert_eq!(
        (
            st["active"].as_bool(),
            st["settings"]["monitor"].as_u64(),
            st["settings"]["quality"].as_str()
        ),
        (Some(true), Some(2), Some("low"))
    );
    assert_eq!(v2.json("stream").await["settings"]["monitor"], 2);
    v2.send(json!({"type": "refresh"})).await;
    agent.json("refresh").await;

    // The round trip to the agent is measured and passed on.
    let rtt = wait_for(
        Duration::from_secs(15),
        "a measured agent round trip",
        async || {
            v1.send(json!({"type": "ping", "nonce": 77})).await;
            let pong = v1.json("pong").await;
            assert_eq!(pong["nonce"], 77);
            let rtt = pong["agent_rtt_ms"].as_u64();
            if rtt.is_none() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            rtt
        },
    )
    .await;
    assert!(rtt < 5000, "rtt {rtt} ms on loopback");

    // Input: refused before control, forwarded unchanged after.
    let key = json!({"kind": "key", "keysym": 0xe9, "down": true, "code": "Digit2"});
    v1.send(json!({"type": "input", "event": key.clone()}))
        .await;
    assert_eq!(v1.json("error").await["code"], "not_permitted");
    grant(&relay, &rep, &sid, &mut agent, "control").await;
    let p = v1
        .json_where("control granted", |v| {
            v["type"] == "permission" && v["permission"] == "control" && v["state"] != "requested"
        })
        .await;
    assert_eq!(p["state"], "granted");
    v1.send(json!({"type": "input", "event": key.clone()}))
        .await;
    assert_eq!(agent.json("input").await["event"], key);
    let pointer = json!({"kind": "pointer", "x": 100, "y": 20, "buttons": 1});
    v2.send(json!({"type": "input", "event": pointer.clone()}))
        .await;
    assert_eq!(agent.json("input").await["event"], pointer);

    // Clipboard: refused without its grant; a denial is recorded as such.
    v1.send(json!({"type": "clipboard", "text": "secret"}))
        .await;
    assert_eq!(v1.json("error").await["code"], "not_permitted");
    let (s, _) = ask(&relay, &rep, &sid, "clipboard").await;
    assert_eq!(s, 200);
    agent.json("permission_request").await;
    agent
        .send(json!({"type": "permission", "permission": "clipboard", "granted": false}))
        .await;
    let p = v1
        .json_where("clipboard denied", |v| {
            v["type"] == "permission" && v["permission"] == "clipboard" && v["state"] != "requested"
        })
        .await;
    assert_eq!(p["state"], "denied");
    let (s, _) = ask(&relay, &rep, &sid, "view").await;
    assert_eq!(s, 409, "view is already granted");

    // The customer revokes control: input stops at the relay.
    agent
        .send(json!({"type": "permission", "permission": "control", "granted": false}))
        .await;
    let p = v1
        .json_where("control revoked", |v| {
            v["type"] == "permission" && v["permission"] == "control"
        })
        .await;
    assert_eq!(p["state"], "revoked");
    v1.send(json!({"type": "input", "event": pointer.clone()}))
        .await;
    assert_eq!(v1.json("error").await["code"], "not_permitted");

    // Revoking view stops the stream; frames sent meanwhile are dropped, not queued.
    agent
        .send(json!({"type": "permission", "permission": "view", "granted": false}))
        .await;
    let st = agent.json("stream").await;
    assert_eq!(st["active"], false);
    v1.json_where("view revoked", |v| {
        v["type"] == "permission" && v["permission"] == "view"
    })
    .await;
    v2.json_where("view revoked", |v| {
        v["type"] == "permission" && v["permission"] == "view"
    })
    .await;
    let stale = screen_frame(50, 50, false, [9, 9, 9]);
    agent.send_bin(stale).await;
    wait_for(WAIT, "the dropped frame counted", async || {
        let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
        (d["stream"]["dropped_frames"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    grant(&relay, &rep, &sid, &mut agent, "view").await;
    assert_eq!(agent.json("stream").await["active"], true);
    let fresh = screen_frame(51, 51, true, [1, 1, 1]);
    agent.send_bin(fresh.clone()).await;
    assert_eq!(
        v1.bin().await,
        fresh,
        "the frame sent while revoked was not delivered"
    );
    assert_eq!(v2.bin().await, fresh);

    // A flood of input is cut by the rate limit; the socket stays open.
    for _ in 0..1500 {
        v2.send(json!({"type": "input", "event": {"kind": "wheel", "dx": 0, "dy": 1}}))
            .await;
    }
    let err = v2
        .json_where("rate limited", |v| {
            v["type"] == "error" && v["code"] == "rate_limited"
        })
        .await;
    assert!(err["message"].as_str().unwrap().contains("too many"));
    v2.send(json!({"type": "ping", "nonce": 5})).await;
    assert_eq!(v2.json("pong").await["nonce"], 5);

    // A malformed viewer message closes only that viewer.
    v2.send(json!({"type": "ack"})).await;
    assert_eq!(v2.closed().await.map(|c| c.0), Some(1008));

    // The session record: permission events in order, states, counters.
    let detail = wait_for(WAIT, "counters in the session record", async || {
        let (s, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
        assert_eq!(s, 200);
        (d["stream"]["delivered_frames"].as_u64() >= Some(10)).then_some(d)
    })
    .await;
    let kinds: Vec<String> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .filter(|k| k.starts_with("permission"))
        .collect();
    assert_eq!(
        kinds,
        [
            "permission_requested view, asked by Rémi Rep",
            "permission_granted view",
            "permission_requested control, asked by Rémi Rep",
            "permission_granted control",
            "permission_requested clipboard, asked by Rémi Rep",
            "permission_denied clipboard",
            "permission_revoked control",
            "permission_revoked view",
            "permission_requested view, asked by Rémi Rep",
            "permission_granted view",
        ]
    );
    let states: Vec<(String, String)> = detail["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["permission"].as_str().unwrap().into(),
                p["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = |p: &str, s: &str| (p.to_string(), s.to_string());
    assert_eq!(
        states,
        [
            want("view", "granted"),
            want("control", "revoked"),
            want("clipboard", "denied")
        ]
    );
    let st = &detail["stream"];
    let screen_bytes: u64 =
        frames.iter().map(|f| f.len() as u64).sum::<u64>() + running.len() as u64 + 2 * 62;
    assert_eq!(st["screen_frames"], 6, "{st}");
    assert!(
        st["screen_bytes"].as_u64().unwrap() >= screen_bytes - 2 * 62,
        "{st}"
    );
    assert_eq!(st["cursor_frames"], 1);
    assert_eq!(st["cursor_bytes"], cursor.len() as u64);
    // The frame sent while view was revoked, and the running stream's message the late
    // viewer skipped.
    assert_eq!(st["dropped_frames"], 2, "{st}");
    // The running stream's message to the first viewer, 3 screen + 1 cursor to each of two
    // viewers, then the fresh frame to both.
    assert_eq!(st["delivered_frames"], 11, "{st}");

    // The end: viewers are told and closed; the counters are kept with the ended session.
    let (s, _) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(s, 200);
    assert!(
        v1.json("ended").await["reason"]
            .as_str()
            .unwrap()
            .contains("Rémi Rep")
    );
    assert_eq!(v1.closed().await.map(|c| c.0), Some(1000));
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(d["state"], "ended");
    assert_eq!(
        d["stream"], detail["stream"],
        "stored counters equal the live ones"
    );
    assert_eq!(d["permissions"], detail["permissions"]);
    let refused = ws_try_connect(
        &relay.addr,
        &format!("/ws/view/{sid}"),
        &[("authorization", &format!("Bearer {rep}"))],
    )
    .await
    .err();
    assert_eq!(refused, Some(404), "no viewer for an ended session");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_viewer_gets_a_key_frame_not_a_backlog() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, sid, _) = active_session(&relay, &rep, "Lent").await;
    let mut fast = viewer(&relay, &rep, &sid).await;
    // The slow viewer is never read until the end: its socket and queue fill up.
    let mut slow = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(&rep)).await;
    // Registered before the stream starts (a viewer joining a running stream asks for a key
    // frame, which would end the loop below too early).
    recv_type(&mut slow, "hello").await;
    grant(&relay, &rep, &sid, &mut agent, "view").await;
    assert_eq!(agent.json("stream").await["active"], true);

    // 64 KiB frames until the relay asks for a key frame; the agent stays within 8 frames
    // of the fast viewer, like a real agent paced by it.
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0u32);
    let fast_task = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let b = fast.bin().await;
            let seq = seq_of(&b);
            got.push((seq, b.len()));
            let _ = seen_tx.send(seq);
            if seq == 100_003 {
                return (fast, got);
            }
        }
    });
    let big = |seq: u32, key: bool| {
        frame::encode(
            Channel::Screen,
            if key { FLAG_SUPERSEDES } else { 0 },
            seq,
            &vec![(seq % 251) as u8; 64 * 1024],
        )
        .unwrap()
    };
    let start = Instant::now();
    let mut sent = 0u32;
    loop {
        sent += 1;
        agent.send_bin(big(sent, false)).await;
        while *seen_rx.borrow() + 8 < sent {
            tokio::time::timeout(WAIT, seen_rx.changed())
                .await
                .expect("the fast viewer stalled")
                .unwrap();
        }
        let mut refreshed = false;
        while let Ok(ev) = agent.rx.try_recv() {
            refreshed |= matches!(&ev, Ev::Json(v) if v["type"] == "refresh");
        }
        if refreshed {
            break;
        }
        assert!(sent < 3000, "no refresh after {sent} frames");
    }
    let refresh_after = sent;
    println!(
        "slow viewer refresh after {refresh_after} frames of 64 KiB ({:?})",
        start.elapsed()
    );
    // A few more frames the slow viewer must skip, then the key frame and its followers.
    for i in 1..=5 {
        agent.send_bin(big(sent + i, false)).await;
    }
    for seq in 100_000..=100_003 {
        agent.send_bin(big(seq, seq == 100_000)).await;
    }
    let (_fast, got) = tokio::time::timeout(Duration::from_secs(30), fast_task)
        .await
        .expect("the fast viewer did not get every frame")
        .unwrap();
    let want: Vec<u32> = (1..=sent + 5).chain(100_000..=100_003).collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        want,
        "the fast viewer got everything in order"
    );

    // The slow viewer: what was already in its socket, then straight to the key frame.
    let mut seqs = Vec::new();
    while seqs.last() != Some(&100_003) {
        let m = tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("the slow viewer got no key frame")
            .unwrap()
            .unwrap();
        if let Message::Binary(b) = m {
            seqs.push(seq_of(&b));
        }
    }
    let stale: Vec<u32> = seqs.iter().copied().filter(|s| *s < 100_000).collect();
    let fresh: Vec<u32> = seqs.iter().copied().filter(|s| *s >= 100_000).collect();
    println!(
        "slow viewer: {} stale frames (1..={}), then {:?}",
        stale.len(),
        stale.last().copied().unwrap_or(0),
        fresh
    );
    assert_eq!(fresh, [100_000, 100_001, 100_002, 100_003]);
    assert!(
        stale.windows(2).all(|w| w[1] == w[0] + 1),
        "stale frames in order from the start"
    );
    assert!(
        (stale.len() as u32) < refresh_after,
        "the queued backlog was dropped: {} of {refresh_after} frames arrived",
        stale.len()
    );
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let dropped = d["stream"]["dropped_frames"].as_u64().unwrap();
    // Its queue (64 frames), the frame that overflowed it, and the 5 skipped afterwards.
    assert!(dropped > 64 + 5, "{}", d["stream"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_agents_are_closed_alone() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut good, good_sid, _) = active_session(&relay, &rep, "Good").await;
    grant(&relay, &rep, &good_sid, &mut good, "view").await;
    let mut watcher = viewer(&relay, &rep, &good_sid).await;
    good.json("stream").await;
    let (mut bad, bad_sid, resume) = active_session(&relay, &rep, "Bad").await;
    grant(&relay, &rep, &bad_sid, &mut bad, "view").await;

    let resume_bad = async || {
        let ws = ws_connect(&relay.addr, "/ws/agent", None).await;
        let mut p = Peer::new("bad agent", ws, true);
        p.send(json!({"type": "hello", "version": {"major": 1, "minor": 0},
                      "auth": {"kind": "resume", "session_id": bad_sid, "token": resume},
                      "info": {"customer_name": "", "computer": "", "platform": "", "language": ""}}))
            .await;
        p.json("welcome").await;
        p
    };
    let mut check_good = async |n: u32| {
        let f = screen_frame(n, n, true, [n as u8, 0, 0]);
        good.send_bin(f.clone()).await;
        assert_eq!(watcher.bin().await, f, "the good session still streams");
    };

    // Bad magic.
    let mut garbage = screen_frame(1, 1, true, [0, 0, 0]);
    garbage[0] = b'X';
    bad.send_bin(garbage).await;
    assert_eq!(bad.json("error").await["code"], "malformed");
    let (code, reason) = bad.closed().await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.starts_with("bad binary frame"), "{reason}");
    check_good(1).await;

    // A header announcing more than the payload limit.
    let mut p = resume_bad().await;
    let mut lie = frame::FrameHeader {
        channel: Channel::Screen,
        flags: 0,
        seq: 1,
        len: 2 * 1024 * 1024,
    }
    .encode()
    .to_vec();
    lie.extend_from_slice(&[0; 100]);
    p.send_bin(lie).await;
    assert_eq!(p.json("error").await["code"], "malformed");
    assert_eq!(p.closed().await.map(|c| c.0), Some(1008));
    check_good(2).await;

    // A message larger than any frame: refused by the WebSocket layer.
    let mut p = resume_bad().await;
    let huge = frame::FrameHeader {
        channel: Channel::Screen,
        flags: 0,
        seq: 1,
        len: 0,
    };
    let mut b = huge.encode().to_vec();
    b.resize(lifeline_proto::MAX_FRAME_PAYLOAD + 4096, 0);
    let _ = p.sink.lock().await.send(Message::Binary(b.into())).await;
    // The relay may cut the connection before its close frame is read.
    if let Some((code, _)) = p.closed().await {
        assert_eq!(code, 1009);
    }
    check_good(3).await;

    // A file frame whose chunk cannot be decoded, and reserved flag bits.
    let mut p = resume_bad().await;
    p.send_bin(frame::encode(Channel::File, 0, 1, b"x").unwrap())
        .await;
    assert_eq!(p.json("error").await["code"], "malformed");
    assert_eq!(p.closed().await.map(|c| c.0), Some(1008));
    let mut p = resume_bad().await;
    let mut reserved = screen_frame(1, 1, true, [0, 0, 0]);
    reserved[2] = 0x80;
    p.send_bin(reserved).await;
    assert_eq!(p.json("error").await["code"], "malformed");
    check_good(4).await;

    // The hostile session itself still exists and accepts a well-behaved link.
    let p = resume_bad().await;
    p.send(json!({"type": "chat", "text": "sorry"})).await;
    let (_, d) = relay
        .get(&rep, &format!("/api/v1/sessions/{bad_sid}"))
        .await;
    assert_eq!(d["state"], "active");
    let events: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| *k == "protocol_error")
        .collect();
    assert_eq!(events.len(), 5, "{}", d["events"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_of_other_reps_are_refused() {
    let relay = Relay::start().await;
    relay.add_user("rep2", "rep", "Renée Autre", REP_PASSWORD);
    let rep = relay.rep_token().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let (_agent, sid, _) = active_session(&relay, &rep, "Privée").await;
    let path = format!("/ws/view/{sid}");
    let bearer = |t: &str| format!("Bearer {t}");

    assert_eq!(
        ws_try_connect(&relay.addr, &path, &[]).await.err(),
        Some(401)
    );
    assert_eq!(
        ws_try_connect(
            &relay.addr,
            "/ws/view/nosuchsession",
            &[("authorization", &bearer(&rep))]
        )
        .await
        .err(),
        Some(404)
    );

    // A browser's cookie works only from the relay's own origin.
    let r = relay.form_login("/login", "rep1", REP_PASSWORD).await;
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cross = ws_try_connect(
        &relay.addr,
        &path,
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )
    .await
    .err();
    assert_eq!(cross, Some(403));
    let own_origin = format!("https://{}", relay.addr);
    let ws = ws_try_connect(
        &relay.addr,
        &path,
        &[("cookie", &cookie), ("origin", &own_origin)],
    )
    .await
    .expect("the cookie from the relay's own origin");
    let mut v = Peer::new("cookie viewer", ws, false);
    v.json("hello").await;

    // Another representative (the evaluation licence has one seat: rep1 gives it back).
    let (s, _) = relay.post(&rep, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(s, 204);
    let other = relay.token("rep2", REP_PASSWORD).await;
    assert_eq!(
        ws_try_connect(&relay.addr, &path, &[("authorization", &bearer(&other))])
            .await
            .err(),
        Some(403)
    );
    let (s, _) = ask(&relay, &other, &sid, "view").await;
    assert_eq!(s, 403, "another rep may not ask");
    // An admin may watch.
    let ws = ws_try_connect(&relay.addr, &path, &[("authorization", &bearer(&admin))])
        .await
        .expect("an admin may open a viewer");
    let mut v = Peer::new("admin viewer", ws, false);
    assert_eq!(v.json("hello").await["agent_online"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_counters_and_grants() {
    let mut relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, sid, resume) = active_session(&relay, &rep, "Redémarrage").await;
    let mut v = viewer(&relay, &rep, &sid).await;
    grant(&relay, &rep, &sid, &mut agent, "view").await;
    agent.json("stream").await;
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|n| screen_frame(n, n, n == 1, [n as u8, 0, 0]))
        .collect();
    for f in &frames {
        agent.send_bin(f.clone()).await;
    }
    for f in &frames {
        assert_eq!(&v.bin().await, f);
    }
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();

    // A graceful stop writes the counters; viewers and agents are told it restarts.
    let port = relay.port();
    let mut child = relay.child.take().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(v.closed().await.map(|c| c.0), Some(1012));
    wait_for(Duration::from_secs(15), "the relay to exit", async || {
        child.try_wait().unwrap()
    })
    .await;
    relay.spawn(Some(port)).await;
    let (s, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s, 200, "{d}");
    let st = &d["stream"];
    assert_eq!(
        (
            st["screen_frames"].as_u64(),
            st["screen_bytes"].as_u64(),
            st["delivered_frames"].as_u64()
        ),
        (Some(3), Some(bytes), Some(3)),
        "{st}"
    );
    assert_eq!(
        d["permissions"][0]["state"], "granted",
        "{}",
        d["permissions"]
    );

    // The agent comes back and re-reports its grant; a viewer gets the stream again.
    let ws = ws_connect(&relay.addr, "/ws/agent", None).await;
    let mut agent = Peer::new("agent again", ws, true);
    agent
        .send(json!({"type": "hello", "version": {"major": 1, "minor": 0},
                     "auth": {"kind": "resume", "session_id": sid, "token": resume},
                     "info": {"customer_name": "", "computer": "", "platform": "", "language": ""}}))
        .await;
    agent.json("welcome").await;
    agent
        .send(json!({"type": "permission", "permission": "view", "granted": true}))
        .await;
    let mut v = viewer(&relay, &rep, &sid).await;
    assert_eq!(agent.json("stream").await["active"], true);
    let f = screen_frame(4, 4, true, [4, 0, 0]);
    agent.send_bin(f.clone()).await;
    assert_eq!(v.bin().await, f);
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let granted = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "permission_granted")
        .count();
    assert_eq!(
        granted, 1,
        "a re-reported grant is not a new event: {}",
        d["events"]
    );
    // The API describes the new endpoint.
    relay
        .assert_documented(&["/api/v1/sessions/{id}/permissions"])
        .await;
}
