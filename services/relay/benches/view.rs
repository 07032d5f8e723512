//! `cargo bench -p lifeline-relay --bench view [-- --frames N --viewers V]`
//!
//! Screen frames through the real relay (release build) over TLS on loopback: a scripted
//! agent sends binary screen messages of 64 KiB, paced like a real agent (at most 8 frames
//! ahead of the slowest viewer), to 1 and then V viewers; then small messages (2 KiB, a typed
//! letter's update) one at a time for the latency agent → relay → viewer. Prints
//! `name=value` lines: throughput, relay CPU per MiB routed, latency percentiles, and the
//! frames the relay dropped (0 expected: nobody falls behind here).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use lifeline_proto::frame::{self, Channel, FLAG_SUPERSEDES};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// A viewer read by its own task (abort it to close the socket); publishes the sequence
/// number of the last frame it got and when.
fn viewer(ws: Ws) -> (watch::Receiver<(u32, Instant)>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel((0, Instant::now()));
    let task = tokio::spawn(async move {
        let (_sink, mut stream) = ws.split();
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Binary(b) = m
                && let Ok((h, _)) = frame::decode(&b)
            {
                let _ = tx.send((h.seq, Instant::now()));
            }
        }
    });
    (rx, task)
}

/// Waits until every viewer has frame `seq`.
async fn all_have(viewers: &mut [watch::Receiver<(u32, Instant)>], seq: u32) -> Instant {
    let mut last = Instant::now();
    for v in viewers.iter_mut() {
        let got = tokio::time::timeout(Duration::from_secs(30), v.wait_for(|(s, _)| *s >= seq))
            .await
            .expect("a viewer stalled")
            .unwrap();
        last = got.1;
    }
    last
}

async fn dropped(relay: &Relay, token: &str, sid: &str) -> u64 {
    let (_, d) = relay.get(token, &format!("/api/v1/sessions/{sid}")).await;
    d["stream"]["dropped_frames"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::main]
async fn main() {
    let frames = bench_arg("--frames", 2000) as u32;
    let fan = bench_arg("--viewers", 4).max(1) as usize;
    let relay = Relay::start().await;
    let pid = relay.child.as_ref().unwrap().id();
    let rep = relay.rep_token().await;

    // A session with `view` granted.
    let (mut ws, welcome) = join(&relay, &rep, "general", "Bench").await;
    let sid = welcome["session_id"].as_str().unwrap().to_string();
    recv_type(&mut ws, "queue").await;
    relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    recv_type(&mut ws, "rep_joined").await;
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({"permission": "view"}),
        )
        .await;
    recv_type(&mut ws, "permission_request").await;
    send_json(
        &mut ws,
        json!({"type": "permission", "permission": "view", "granted": true}),
    )
    .await;
    let (mut agent, mut agent_rx) = ws.split();
    // The agent answers pings, follows whether it should stream, and ignores the rest.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (active_tx, mut active_rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Some(Ok(m)) = agent_rx.next().await {
            let Message::Text(t) = m else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&t) else {
                continue;
            };
            if v["type"] == "ping" {
                let _ = pong_tx.send(json!({"type": "pong", "nonce": v["nonce"]}).to_string());
            } else if v["type"] == "stream" {
                let _ = active_tx.send(v["active"] == true);
            }
        }
    });

    let payload = vec![0x5au8; 64 * 1024];
    let mut seq = 0u32;
    for n in [1usize, fan] {
        let mut viewers = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let mut ws = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(&rep)).await;
            recv_type(&mut ws, "hello").await;
            let (rx, task) = viewer(ws);
            viewers.push(rx);
            tasks.push(task);
        }
        tokio::time::timeout(Duration::from_secs(10), active_rx.wait_for(|a| *a))
            .await
            .expect("the stream did not start")
            .unwrap();
        // Warm up: the stream is active once a first frame arrives everywhere.
        seq += 1;
        let key = frame::encode(Channel::Screen, FLAG_SUPERSEDES, seq, &payload).unwrap();
        loop {
            agent
                .send(Message::Binary(key.clone().into()))
                .await
                .unwrap();
            let ok = tokio::time::timeout(Duration::from_millis(200), all_have(&mut viewers, seq))
                .await
                .is_ok();
            if ok {
                break;
            }
        }
        let dropped_before = dropped(&relay, &rep, &sid).await;
        let cpu0 = cpu_s(pid);
        let t0 = Instant::now();
        let first = seq + 1;
        for _ in 0..frames {
            while let Ok(p) = pong_rx.try_recv() {
                agent.send(Message::Text(p.into())).await.unwrap();
            }
            seq += 1;
            let f = frame::encode(Channel::Screen, 0, seq, &payload).unwrap();
            agent.send(Message::Binary(f.into())).await.unwrap();
            if seq >= first + 8 {
                all_have(&mut viewers, seq - 8).await;
            }
        }
        all_have(&mut viewers, seq).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_s(pid) - cpu0;
        let mib_in = f64::from(frames) * (payload.len() + frame::HEADER_LEN) as f64 / 1048576.0;
        let mib_out = mib_in * n as f64;
        println!("view_viewers_{n}_frames={frames}");
        println!("view_viewers_{n}_in_mib_s={:.1}", mib_in / secs);
        println!("view_viewers_{n}_out_mib_s={:.1}", mib_out / secs);
        println!(
            "view_viewers_{n}_relay_cpu_ms_per_mib_out={:.2}",
            cpu * 1000.0 / mib_out
        );
        println!(
            "view_viewers_{n}_dropped={}",
            dropped(&relay, &rep, &sid).await - dropped_before
        );
        if n == 1 {
            // Latency of small messages, one at a time, to this one viewer.
            let small = vec![0x11u8; 2048];
            let mut lat = Vec::new();
            for _ in 0..400 {
                seq += 1;
                let f = frame::encode(Channel::Screen, 0, seq, &small).unwrap();
                let sent = Instant::now();
                agent.send(Message::Binary(f.into())).await.unwrap();
                let got = all_have(&mut viewers, seq).await;
                lat.push(got.saturating_duration_since(sent).as_secs_f64() * 1e6);
            }
            lat.sort_by(f64::total_cmp);
            println!("view_latency_2k_us_p50={:.0}", pct(&lat, 0.5));
            println!("view_latency_2k_us_p99={:.0}", pct(&lat, 0.99));
        }
        for t in tasks {
            t.abort();
        }
        // The next round starts once the relay saw every viewer go.
        tokio::time::timeout(Duration::from_secs(10), active_rx.wait_for(|a| !*a))
            .await
            .expect("the stream did not stop")
            .unwrap();
    }
    println!(
        "view_relay_rss_kib={}",
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()))
            .unwrap_or(0)
    );
}
