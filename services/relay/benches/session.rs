//! `cargo xtask bench session [--sessions N] [--reps R] [--ramp-ms MS]`
//!
//! N one-shot sessions set up concurrently, end to end over TLS on loopback against the
//! real relay (release build): key → ticket (portal API, done first, as the customer
//! downloads the client before running it) → agent connects (TLS + WebSocket, real
//! protocol) → hello → terms → queue → the rep's console sees the entry → accept → chat
//! (rep → agent). Sessions are spread over R representatives' personal queues; agents start
//! evenly over the ramp (0 = all at once). `setup_total` runs from agent connect to the
//! first chat line received. Each representative calls the API as a browser does: over at
//! most six kept-alive connections of their own (`BROWSER_CONNECTIONS`), not a new TLS
//! connection per request. Prints `name=value` lines.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::sync::{Mutex, oneshot};

/// Connections a browser keeps to one site (HTTP/1.1).
const BROWSER_CONNECTIONS: usize = 6;

/// One representative's API calls: their own connection pool, at most
/// [`BROWSER_CONNECTIONS`] requests in flight.
struct RepBrowser {
    http: reqwest::Client,
    slots: tokio::sync::Semaphore,
    token: String,
}

impl RepBrowser {
    fn new(token: String) -> Self {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        RepBrowser {
            http,
            slots: tokio::sync::Semaphore::new(BROWSER_CONNECTIONS),
            token,
        }
    }

    async fn post(&self, relay: &Relay, path: &str, body: serde_json::Value) -> u16 {
        let _slot = self.slots.acquire().await.unwrap();
        let r = self
            .http
            .post(relay.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        status
    }
}

/// Waiters for "the console of rep r saw session s".
type Seen = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

#[tokio::main]
async fn main() {
    let n = bench_arg("--sessions", 1000) as usize;
    let reps = bench_arg("--reps", 10).max(1) as usize;
    let ramp = Duration::from_millis(bench_arg("--ramp-ms", 1000));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        "[limits]\nkey_attempts_per_minute_per_address = 1000000\nkey_attempts_per_minute_total = 1000000\n",
    )
    .unwrap();
    // A licence manager with a seat per representative (without it the relay would run on
    // the one-seat evaluation licence).
    let bus = common::appliance::TestBus::start();
    let _licence = common::appliance::LicenceManager::start(&bus, reps as u32).await;
    let relay = Relay::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("LIFELINE_DBUS_ADDRESS", &bus.address)],
    )
    .await;
    let pid = relay.child.as_ref().unwrap().id();
    let rss_idle = rss_kib(pid);

    // Representatives, each with a live console.
    let mut tokens = Vec::new();
    let seen: Seen = Arc::default();
    let early: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    for r in 0..reps {
        let user = format!("benchrep{r}");
        relay.add_user(&user, "rep", &format!("Bench Rep {r}"), REP_PASSWORD);
        let token = relay.token(&user, REP_PASSWORD).await;
        let mut ws = ws_connect(&relay.addr, "/ws/console", Some(&token)).await;
        recv_type(&mut ws, "snapshot").await;
        let (seen, early) = (seen.clone(), early.clone());
        tokio::spawn(async move {
            while let Some(v) = recv_json_forever(&mut ws).await {
                if v["type"] == "upsert" && v["entry"]["state"] == "waiting" {
                    let at = Instant::now();
                    let id = v["entry"]["session_id"].as_str().unwrap_or("").to_string();
                    match seen.lock().await.remove(&id) {
                        Some(tx) => {
                            let _ = tx.send(at);
                        }
                        None => {
                            early.lock().await.insert(id, at);
                        }
                    }
                }
            }
        });
        tokens.push(token);
    }
    let keys_start = Instant::now();
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let k = relay.new_key(&tokens[i % reps], "personal").await;
        keys.push(k["key"].as_str().unwrap().to_string());
    }
    let keys_s = keys_start.elapsed().as_secs_f64();
    // The portal step happens before the client runs (the customer downloads it first).
    let tickets_start = Instant::now();
    let mut tickets = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let t = relay.ticket(key, &format!("Customer {i}")).await;
        tickets.push(t["ticket"]["ticket"].as_str().unwrap().to_string());
    }
    let tickets_s = tickets_start.elapsed().as_secs_f64();

    let relay = Arc::new(relay);
    let browsers: Arc<Vec<RepBrowser>> =
        Arc::new(tokens.into_iter().map(RepBrowser::new).collect());
    let start = Instant::now();
    let cpu_before = cpu_s(pid);
    let own_before = cpu_s(std::process::id());
    let mut tasks = Vec::with_capacity(n);
    for (i, ticket) in tickets.into_iter().enumerate() {
        let (relay, browsers, seen, early) =
            (relay.clone(), browsers.clone(), seen.clone(), early.clone());
        let delay = ramp.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let connect_at = Instant::now();
            let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
            let handshake = connect_at.elapsed();
            send_json(&mut agent, hello(&ticket, "x")).await;
            let w = recv_type(&mut agent, "welcome").await;
            let sid = w["session_id"].as_str().unwrap().to_string();
            let (tx, rx) = oneshot::channel();
            seen.lock().await.insert(sid.clone(), tx);
            send_json(&mut agent, json!({"type": "accept_terms"})).await;
            let seen_at = match early.lock().await.remove(&sid) {
                Some(at) => at,
                None => tokio::time::timeout(Duration::from_secs(60), rx)
                    .await
                    .expect("console never saw the session")
                    .unwrap(),
            };
            let to_queue = seen_at.duration_since(connect_at);
            let rep = &browsers[i % browsers.len()];
            let s = rep
                .post(&relay, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
                .await;
            assert_eq!(s, 200);
            recv_type(&mut agent, "rep_joined").await;
            let chat_at = Instant::now();
            rep.post(
                &relay,
                &format!("/api/v1/sessions/{sid}/messages"),
                json!({"text": "hello"}),
            )
            .await;
            recv_type(&mut agent, "chat").await;
            let rtt = chat_at.elapsed();
            (connect_at.elapsed(), to_queue, handshake, rtt, agent)
        }));
    }
    let mut total = Vec::new();
    let mut to_queue = Vec::new();
    let mut handshakes = Vec::new();
    let mut rtts = Vec::new();
    let mut agents = Vec::new();
    for t in tasks {
        let (a, b, c, d, ws) = t.await.unwrap();
        total.push(a.as_secs_f64() * 1e3);
        to_queue.push(b.as_secs_f64() * 1e3);
        handshakes.push(c.as_secs_f64() * 1e3);
        rtts.push(d.as_secs_f64() * 1e3);
        agents.push(ws);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let relay_cpu = cpu_s(pid) - cpu_before;
    let own_cpu = cpu_s(std::process::id()) - own_before;
    let rss_busy = rss_kib(pid);
    for v in [&mut total, &mut to_queue, &mut handshakes, &mut rtts] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!("sessions={n}");
    println!("reps={reps}");
    println!("ramp_ms={}", ramp.as_millis());
    println!("key_creation_per_s={:.0}", n as f64 / keys_s);
    println!("portal_tickets_per_s={:.0}", n as f64 / tickets_s);
    println!("connect_to_queue_ms_p50={:.1}", pct(&to_queue, 0.5));
    println!("connect_to_queue_ms_p99={:.1}", pct(&to_queue, 0.99));
    println!("setup_total_ms_p50={:.1}", pct(&total, 0.5));
    println!("setup_total_ms_p99={:.1}", pct(&total, 0.99));
    println!("tls_ws_connect_ms_p50={:.1}", pct(&handshakes, 0.5));
    println!("tls_ws_connect_ms_p99={:.1}", pct(&handshakes, 0.99));
    println!("tls_handshakes_per_s={:.0}", n as f64 / elapsed);
    println!("chat_rtt_ms_p50={:.1}", pct(&rtts, 0.5));
    println!("chat_rtt_ms_p99={:.1}", pct(&rtts, 0.99));
    println!("relay_rss_idle_kib={rss_idle}");
    println!("relay_rss_with_sessions_kib={rss_busy}");
    println!("relay_cpu_s={relay_cpu:.2}");
    println!("relay_cpu_ms_per_session={:.2}", relay_cpu * 1e3 / n as f64);
    println!("loadgen_cpu_s={own_cpu:.2}");
    println!("wall_s={elapsed:.2}");
    drop(agents);
}

/// Like `recv_json` but without the 10 s limit (a console idles between bursts).
async fn recv_json_forever(ws: &mut Ws) -> Option<serde_json::Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
