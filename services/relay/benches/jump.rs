//! `cargo xtask bench jump [--clients N] [--idle-s S] [--addresses A]`
//!
//! N simulated active jump clients against the real relay (release build) on loopback: real
//! TLS, the real protocol (challenge signed with each client's own ed25519 key, hello,
//! welcome) and the heartbeats of the real client (answer the relay's pings, ping only
//! after a heartbeat without hearing from it). The clients connect from A source
//! addresses (127.0.0.1 … 127.0.A.x) so the ephemeral ports of one address do not run out.
//! The relay runs beside a licence manager whose licence allows N active clients, with the
//! reconnection limit lifted (`[jump] reconnect_limit = false`).
//!
//! Steps: N registrations through the API; N links held (`jump_clients_held`); the relay's
//! resident memory with them minus before them, per client (`relay_rss_per_client_kib`);
//! the relay's CPU while only heartbeats flow, over S seconds (`idle_cpu_pct`, of one core);
//! then the relay is killed and started again on the same port and the time until all N are
//! back is `reconnect_all_s` (clients retry after a short random pause, as after the real
//! back-off's first step), with the restarted relay's CPU time per client
//! (`reconnect_relay_cpu_us_per_client`: what a reconnection costs the relay, whatever the
//! generator beside it takes). Prints `name=value` lines.
//!
//! Then, with the N held, one real jump client joins: the stock agent, installed from the
//! installer downloaded with its own deployment key and run as the service under a private
//! Xvfb; an administrator jumps to it (the relay runs with `[jump] unattended = true`) and
//! `jump_to_first_frame_ms` is the time from the jump's request until the first screen frame
//! reaches the administrator's viewer socket (the view permission is asked as soon as the
//! session agent joined; it is granted without a question).
//!
//! Limits: the process's open-file limit bounds N (the relay and this generator each need a
//! descriptor per client); the generator says so and stops when the limit is too low.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Shared {
    addr: SocketAddr,
    pin: String,
    tls: tokio_rustls::TlsConnector,
    online: AtomicUsize,
    welcomes: AtomicU64,
    refusals: AtomicU64,
    /// Limits concurrent handshakes so a storm does not time out on this side.
    handshakes: Semaphore,
}

/// One simulated client: connect, prove, hold with pings; again after a short pause.
async fn client(shared: Arc<Shared>, id: String, key: SigningKey, source: IpAddr) {
    use rand::Rng as _;
    loop {
        let held = hold(&shared, &id, &key, source).await;
        if held {
            shared.online.fetch_sub(1, Ordering::Relaxed);
        }
        let pause = rand::thread_rng().gen_range(200..1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Returns whether the link was welcomed (and counted online).
async fn hold(shared: &Shared, id: &str, key: &SigningKey, source: IpAddr) -> bool {
    let (mut ws, beat) = {
        let Ok(_permit) = shared.handshakes.acquire().await else {
            return false;
        };
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return false;
        };
        if socket.bind(SocketAddr::new(source, 0)).is_err() {
            return false;
        }
        let Ok(tcp) = socket.connect(shared.addr).await else {
            return false;
        };
        let Ok(tls) = shared
            .tls
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
        else {
            return false;
        };
        let url = format!("wss://{}/ws/jump", shared.addr);
        let Ok((mut ws, _)) = tokio_tungstenite::client_async(url, tls).await else {
            return false;
        };
        let nonce = match next_json(&mut ws).await {
            Some(v) if v["type"] == "challenge" => v["nonce"].as_str().unwrap_or("").to_string(),
            _ => {
                shared.refusals.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let sig = key.sign(&lifeline_proto::jump::auth_message(id, &nonce, &shared.pin));
        let hello = json!({"type": "hello", "version": {"major": 1, "minor": 0}, "client_id": id,
            "purpose": "stay",
            "info": {"computer": "sim", "platform": "Linux x86_64", "agent_version": "0.1.0"},
            "signature": B64.encode(sig.to_bytes())});
        if ws
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            return false;
        }
        let beat = match next_json(&mut ws).await {
            Some(v) if v["type"] == "welcome" => v["heartbeat_s"].as_u64().unwrap_or(30),
            _ => {
                shared.refusals.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        (ws, Duration::from_secs(beat.max(1)))
    };
    shared.online.fetch_add(1, Ordering::Relaxed);
    shared.welcomes.fetch_add(1, Ordering::Relaxed);
    // Heartbeats as the real client does them: answer the relay's pings (the WebSocket layer
    // sends the pong), ping only after a heartbeat without hearing from the relay.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_heard.elapsed() >= beat && ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return true;
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                Some(Ok(_)) => last_heard = Instant::now(),
            }
        }
    }
}

async fn next_json<S>(ws: &mut S) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn wait_online(shared: &Shared, n: usize, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if shared.online.load(Ordering::Relaxed) >= n {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let n = bench_arg("--clients", 10_000) as usize;
    let idle_s = bench_arg("--idle-s", 50);
    let addresses = bench_arg("--addresses", 64).clamp(1, 62_500) as usize;
    // Raise this process's soft limit to its hard one.
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    let limit = fd_limit();
    if (n as u64) + 512 > limit {
        println!("jump_bench_error=open-file limit {limit} is below {n} clients + 512");
        eprintln!(
            "the open-file hard limit ({limit}) is too low for {n} clients: raise it (ulimit -Hn) as root"
        );
        std::process::exit(2);
    }
    let bus = common::appliance::TestBus::start();
    // One more than N: the real jump client of `jump_to_first_frame_ms`.
    let n_s = (n + 1).to_string();
    let _licence = common::appliance::LicenceManager::start_with(
        &bus,
        1,
        &["--jump-active", &n_s, "--jump-passive", &n_s],
    )
    .await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("relay.toml");
    std::fs::write(&cfg, "[jump]\nreconnect_limit = false\nunattended = true\n").unwrap();
    let mut relay = Relay::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[
            ("LIFELINE_DBUS_ADDRESS", &bus.address),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let (s, key) = relay
        .post(
            &admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": n.max(1)}),
        )
        .await;
    assert_eq!(s, 200, "{key}");
    let dk = key["key"].as_str().unwrap().to_string();

    // Registrations, 16 at a time.
    let t = Instant::now();
    let keys: Vec<SigningKey> = (0..n)
        .map(|_| SigningKey::generate(&mut rand::rngs::OsRng))
        .collect();
    let ids: Vec<String> = futures_util::stream::iter(keys.iter().enumerate())
        .map(|(i, k)| {
            let http = relay.http.clone();
            let url = relay.url("/api/v1/jump/register");
            let body = json!({"deploy_key": dk, "public_key": B64.encode(k.verifying_key().to_bytes()),
                "mode": "active", "info": {"computer": format!("sim-{i}"), "platform": "Linux x86_64", "agent_version": "0.1.0"}});
            async move {
                let r = http.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                v["client_id"].as_str().unwrap().to_string()
            }
        })
        .buffered(16)
        .collect()
        .await;
    println!(
        "jump_register_per_s={:.0}",
        n as f64 / t.elapsed().as_secs_f64()
    );

    let pid = relay.child.as_ref().unwrap().id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(pid);

    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let shared = Arc::new(Shared {
        addr: relay.addr.parse().unwrap(),
        pin: relay.pin.clone(),
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        online: AtomicUsize::new(0),
        welcomes: AtomicU64::new(0),
        refusals: AtomicU64::new(0),
        handshakes: Semaphore::new(256),
    });
    let t = Instant::now();
    for (i, (id, key)) in ids.into_iter().zip(keys).enumerate() {
        let a = i % addresses;
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, (a / 250) as u8, (a % 250 + 1) as u8));
        tokio::spawn(client(shared.clone(), id, key, source));
    }
    let held = wait_online(&shared, n, Duration::from_secs(900)).await;
    let connect_s = t.elapsed().as_secs_f64();
    let count = shared.online.load(Ordering::Relaxed);
    println!("jump_clients_held={count}");
    println!("jump_connect_all_s={connect_s:.1}");
    if held.is_none() {
        println!(
            "jump_bench_error=only {count} of {n} held; refusals={}",
            shared.refusals.load(Ordering::Relaxed)
        );
    }
    // Let the connection burst settle, then measure memory and idle CPU.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_held = rss_kib(pid);
    println!("relay_rss_before_kib={rss_before}");
    println!("relay_rss_held_kib={rss_held}");
    println!(
        "relay_rss_per_client_kib={:.1}",
        rss_held.saturating_sub(rss_before) as f64 / count.max(1) as f64
    );
    let c0 = cpu_s(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_s)).await;
    let idle = (cpu_s(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    println!("idle_cpu_pct={idle:.1}");
    println!(
        "jump_clients_still_held={}",
        shared.online.load(Ordering::Relaxed)
    );

    match first_frame(&relay, &admin).await {
        Ok(ms) => println!("jump_to_first_frame_ms={ms}"),
        Err(e) => println!("jump_to_first_frame_ms=NA ({e})"),
    }

    // Restart: kill the relay, start it again on the same port, wait for everyone.
    let port = relay.port();
    let t = Instant::now();
    relay.kill9();
    wait_for(
        Duration::from_secs(60),
        "the clients to notice",
        async || (shared.online.load(Ordering::Relaxed) < count.max(1)).then_some(()),
    )
    .await;
    relay.spawn(Some(port)).await;
    let back = wait_online(&shared, count, Duration::from_secs(600)).await;
    match back {
        Some(_) => println!("reconnect_all_s={:.1}", t.elapsed().as_secs_f64()),
        None => println!(
            "reconnect_all_s=NA (only {} of {count} back after 600 s)",
            shared.online.load(Ordering::Relaxed)
        ),
    }
    let pid = relay.child.as_ref().unwrap().id();
    // The relay's own work per reconnection (TLS handshake, signature check, bookkeeping):
    // here it shares two cores with this generator, on a box it has them to itself.
    println!(
        "reconnect_relay_cpu_us_per_client={:.0}",
        cpu_s(pid) * 1e6 / count.max(1) as f64
    );
    println!("relay_rss_after_reconnect_kib={}", rss_kib(pid));
    relay.kill9();
}

/// One real jump client under Xvfb among the simulated ones: the time from a jump to the
/// first screen frame on the viewer socket, in milliseconds.
async fn first_frame(relay: &Relay, admin: &str) -> Result<u128, String> {
    let x = common::desktop::Xvfb::start();
    common::desktop::stock_client(relay);
    let (s, key) = relay
        .post(
            admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": 1, "label": "real agent"}),
        )
        .await;
    if s != 200 {
        return Err(format!("deployment key: {key}"));
    }
    let url = key["installers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == "linux-x86_64"))
        .and_then(|p| p[1].as_str())
        .ok_or("no Linux installer")?
        .to_string();
    let bytes = relay
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let installer = relay.dir.path().join("bench-installer");
    std::fs::write(&installer, &bytes).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&installer, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let svc = relay.dir.path().join("bench-svc");
    let home = relay.dir.path().join("bench-home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(&installer)
        .arg("--service-dir")
        .arg(&svc)
        .arg("--no-systemd")
        .env("HOME", &home)
        .env_remove("DISPLAY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let id = said
        .split("(client ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| format!("installer: {said} {}", String::from_utf8_lossy(&out.stderr)))?
        .to_string();
    // The service, as the systemd-less runner of the tests starts it.
    let mut service = tokio::process::Command::new(svc.join("lifeline-agent"))
        .arg("jump")
        .arg("run")
        .arg("--dir")
        .arg(&svc)
        .env("DISPLAY", &x.display)
        .env("RUST_LOG", "warn")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let path = format!("/api/v1/jump/clients/{id}/jump");
    // Online once a jump is not refused as offline.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (t0, sid) = loop {
        let t0 = Instant::now();
        let (s, v) = relay.post(admin, &path, json!({})).await;
        if s == 200 {
            break (t0, v["session_id"].as_str().unwrap_or_default().to_string());
        }
        if Instant::now() > deadline {
            return Err(format!("the real jump client never came online: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut viewer = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(admin)).await;
    let view = format!("/api/v1/sessions/{sid}/permissions");
    loop {
        let (s, v) = relay
            .post(admin, &view, json!({"permission": "view"}))
            .await;
        if s == 200 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("view was never asked: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frame = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = viewer.next().await {
            if let Ok(Message::Binary(b)) = m
                && !b.is_empty()
            {
                return true;
            }
        }
        false
    })
    .await;
    let ms = t0.elapsed().as_millis();
    let _ = relay
        .post(admin, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    let _ = service.kill().await;
    drop(x);
    match frame {
        Ok(true) => Ok(ms),
        _ => Err("no frame within 60 s".into()),
    }
}
