//! Passive jump clients and uninstalling, with real processes: the relay, an installer
//! downloaded from it with a deployment key, installed into a temporary folder and started by
//! a systemd-less service runner (the unit's `ExecStart=` command as a child process). Wake-up
//! lines the tests forge are signed with the box's own wake key read from its data folder,
//! or with another key; everything runs on loopback.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::desktop::*;
use common::jump::*;
use common::*;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn deploy_key(relay: &Relay, admin: &str, mode: &str, uses: i64) -> Value {
    let (s, v) = relay
        .post(
            admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": mode, "valid_minutes": 120, "uses": uses}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Installs from the downloaded installer into `relay.dir/svc` without systemd.
async fn install(relay: &Relay, admin: &str, mode: &str, extra: &[&str]) -> PathBuf {
    stock_client(relay);
    let key = deploy_key(relay, admin, mode, 1).await;
    let installer = download_linux(relay, &key["installers"], "installer").await;
    let svc = relay.dir.path().join("svc");
    let home = relay.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    install_ok(&installer, &svc, &home, extra);
    svc
}

/// A passive client installed from the downloaded installer, listening for wake-ups on a
/// free loopback port: its service folder, its id and the port.
async fn install_passive(relay: &Relay, admin: &str) -> (PathBuf, String, u16) {
    let port = free_port();
    let svc = install(
        relay,
        admin,
        "passive",
        &[
            "--wake-port",
            &port.to_string(),
            "--wake-address",
            "127.0.0.1",
        ],
    )
    .await;
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(svc.join("jump.json")).unwrap()).unwrap();
    assert_eq!(saved["mode"], "passive");
    assert_eq!(saved["wake_port"], port);
    (svc, saved["client_id"].as_str().unwrap().to_string(), port)
}

/// Starts the service installed in `svc` (with `display` as the desktop) and waits for its
/// first check-in.
async fn start_checked_in(relay: &Relay, svc: &Path, display: Option<&str>) -> Service {
    let service = Service::start(
        &svc.join("lifeline-jump.service"),
        relay.dir.path().join("service.log"),
        display,
    );
    service.wait_log_count("event=jump_checked_in", 1).await;
    service
}

async fn clients(relay: &Relay, rep: &str) -> Vec<Value> {
    let (s, v) = relay.get(rep, "/api/v1/jump/clients").await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

async fn wait_online(relay: &Relay, rep: &str, id: &str, online: bool) -> Value {
    wait_for(Duration::from_secs(60), "client online state", async || {
        clients(relay, rep)
            .await
            .into_iter()
            .find(|c| c["id"] == id && c["online"] == online)
    })
    .await
}

async fn delete(relay: &Relay, token: &str, path: &str) -> (u16, Value) {
    let r = relay
        .http
        .delete(relay.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A port free on loopback right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn wake_line(key: &SigningKey, id: &str, issued_at: i64, nonce: &str) -> Vec<u8> {
    let payload = serde_json::to_vec(&json!({
        "client_id": id, "issued_at": issued_at, "nonce": nonce,
    }))
    .unwrap();
    lifeline_proto::jump::wake_line(&payload, &key.sign(&payload).to_bytes()).into_bytes()
}

fn send_raw(port: u16, bytes: &[u8]) {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A client that stopped reading closes early; what was sent is enough.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// Sends `bytes` to the wake port and waits until the client logged that it ignored them
/// for `reason`; no connection follows (the number of wake-ups it acted on is unchanged).
async fn ignored(service: &Service, port: u16, bytes: &[u8], reason: &str) {
    let woken = service.count("event=jump_woken");
    let needle = format!("event=wake_ignored reason={reason}");
    let before = service.count(&needle);
    send_raw(port, bytes);
    service.wait_log_count(&needle, before + 1).await;
    assert_eq!(
        service.count("event=jump_woken"),
        woken,
        "{}",
        service.log()
    );
}

fn read_key(path: &Path) -> SigningKey {
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_client_checks_in_wakes_and_ignores_forged_or_replayed_wakeups() {
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("relay.toml");
    std::fs::write(&config, "[jump]\ncheck_in_s = 2\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (svc, id, port) = install_passive(&relay, &admin).await;

    // It checks in at start and again after `check_in_s`, holding no link in between.
    let service = start_checked_in(&relay, &svc, None).await;
    service.wait_log_count("event=jump_checked_in", 2).await;
    let c = wait_online(&relay, &rep, &id, false).await;
    assert_eq!(c["mode"], "passive");
    assert!(c["last_seen"].as_i64().unwrap() > 0);
    assert_eq!(service.count("event=jump_woken"), 0);

    // A representative wakes it: the answer comes once it is connected.
    let (s, v) = relay
        .post(&rep, &format!("/api/v1/jump/clients/{id}/wake"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["online"], true);
    assert_eq!(service.count("event=jump_woken"), 1);
    wait_online(&relay, &rep, &id, true).await;
    let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.wake").await;
    assert!(audit.to_string().contains(&id), "{audit}");

    // Wake-ups it must ignore, each logged with its reason and followed by no connection.
    let box_key = read_key(&relay.data().join("wake.key"));
    let other_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let now = now_ms();
    ignored(
        &service,
        port,
        &wake_line(&other_key, &id, now, "forged"),
        "bad_signature",
    )
    .await;
    ignored(
        &service,
        port,
        &wake_line(&box_key, "jc_someone_else", now, "other"),
        "other_client",
    )
    .await;
    ignored(
        &service,
        port,
        &wake_line(&box_key, &id, now - 10 * 60 * 1000, "old"),
        "stale",
    )
    .await;
    ignored(&service, port, b"GET / HTTP/1.1\r\n\r\n", "not_a_wake").await;
    ignored(&service, port, &[0xffu8; 5000], "too_long").await;
    ignored(&service, port, b"LLWAKE1 !!! ???\n", "malformed").await;
    // A genuine line is taken once; the same line again is a replay.
    let genuine = wake_line(&box_key, &id, now, "once");
    let accepted = service.count("event=wake_accepted");
    send_raw(port, &genuine);
    service
        .wait_log_count("event=wake_accepted", accepted + 1)
        .await;
    ignored(&service, port, &genuine, "replayed").await;

    // A flood of junk is dropped unread beyond the rate limit, and the client stays well.
    for _ in 0..200 {
        send_raw(port, b"junk\n");
    }
    service
        .wait_log_count("event=wake_ignored reason=rate_limited", 1)
        .await;
    assert_eq!(service.count("event=jump_woken"), 1);
    wait_online(&relay, &rep, &id, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jumping_to_a_passive_client_wakes_it_and_starts_the_session() {
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("relay.toml");
    std::fs::write(&config, "[jump]\nunattended = true\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (svc, id, _) = install_passive(&relay, &admin).await;
    let x = Xvfb::start();
    let service = start_checked_in(&relay, &svc, Some(&x.display)).await;
    wait_online(&relay, &rep, &id, false).await;

    // "Jump" wakes it, then its session agent joins the representative's session.
    let (s, v) = relay
        .post(&rep, &format!("/api/v1/jump/clients/{id}/jump"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}\n{}", service.log());
    assert_eq!(v["unattended"], true);
    assert_eq!(service.count("event=jump_woken"), 1);
    service
        .wait_log_count("event=jump_session_started", 1)
        .await;
    let sid = v["session_id"].as_str().unwrap().to_string();
    wait_for(
        Duration::from_secs(60),
        "the jump's session agent",
        async || {
            let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.session").await;
            audit.to_string().contains("connected").then_some(())
        },
    )
    .await;
    let (s, _) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_removes_an_online_client_which_cannot_come_back() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let svc = install(&relay, &admin, "active", &[]).await;
    let key = read_key(&svc.join("jump.key"));
    let mut service = Service::start(
        &svc.join("lifeline-jump.service"),
        relay.dir.path().join("service.log"),
        None,
    );
    service.wait_log_count("event=jump_online", 1).await;
    let list = clients(&relay, &rep).await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    wait_online(&relay, &rep, &id, true).await;

    // Only administrators remove clients.
    let path = format!("/api/v1/jump/clients/{id}");
    let (s, _) = delete(&relay, &rep, &path).await;
    assert_eq!(s, 403);
    let (s, v) = delete(&relay, &admin, &path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["uninstall"], "sent");

    // The client removes its folder and the service's process ends well.
    let status = wait_for(Duration::from_secs(30), "the service to exit", async || {
        service.child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "{status:?}: {}", service.log());
    assert!(!svc.exists(), "the service folder is removed");
    wait_for(
        Duration::from_secs(10),
        "the uninstalled audit line",
        async || {
            let (_, a) = relay
                .get(&admin, "/api/v1/audit?action=jump.uninstalled")
                .await;
            a.to_string().contains(&id).then_some(())
        },
    )
    .await;
    let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.remove").await;
    assert!(audit.to_string().contains(&id), "{audit}");
    assert!(clients(&relay, &rep).await.is_empty());
    let (s, _) = delete(&relay, &admin, &path).await;
    assert_eq!(s, 404);

    // Its key no longer gets in.
    let mut ws = ws_connect(&relay.addr, "/ws/jump", None).await;
    let challenge = recv_json(&mut ws).await.unwrap();
    let nonce = challenge["nonce"].as_str().unwrap();
    let sig = key.sign(&lifeline_proto::jump::auth_message(&id, nonce, &relay.pin));
    send_json(
        &mut ws,
        json!({"type": "hello", "version": {"major": 1, "minor": 0}, "client_id": id,
               "purpose": "stay",
               "info": {"computer": "sim", "platform": "Linux x86_64", "agent_version": "0.1.0"},
               "signature": B64.encode(sig.to_bytes())}),
    )
    .await;
    let answer = recv_json(&mut ws).await.unwrap();
    assert_eq!(answer["type"], "refused", "{answer}");
    assert_eq!(answer["code"], "removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_passive_client_is_woken_and_removes_itself() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (svc, id, _) = install_passive(&relay, &admin).await;
    let mut service = start_checked_in(&relay, &svc, None).await;
    assert_eq!(clients(&relay, &rep).await[0]["id"], id.as_str());
    let (s, v) = delete(&relay, &admin, &format!("/api/v1/jump/clients/{id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["uninstall"], "woken");
    let status = wait_for(Duration::from_secs(30), "the service to exit", async || {
        service.child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "{status:?}: {}", service.log());
    assert!(service.log().contains("event=jump_removed"));
    assert!(!svc.exists(), "the service folder is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_registrations_are_held_to_the_licence() {
    // The relay runs on its evaluation licence: 5 passive jump clients.
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let key = deploy_key(&relay, &admin, "passive", 10).await;
    let register = async |i: usize| {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let r = relay
            .http
            .post(relay.url("/api/v1/jump/register"))
            .json(&json!({
                "deploy_key": key["key"],
                "public_key": B64.encode(k.verifying_key().to_bytes()),
                // The key decides the mode, whatever the installer asks.
                "mode": "active",
                "info": {"computer": format!("pc-{i}"), "platform": "Linux x86_64",
                         "agent_version": "0.1.0"},
                "wake_port": 47361,
            }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    for i in 0..5 {
        let (s, v) = register(i).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["mode"], "passive");
    }
    let (s, v) = register(5).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"], "no_licence_seat");
    assert!(
        v["message"].as_str().unwrap().contains("allows 5 passive"),
        "{v}"
    );
}

/// "Wake" in the console's jump list (`tests/browser/jump_wake.mjs` in Chromium) against a
/// real passive client: offline with "Wake"; woken, it is online and nothing else happens;
/// stopped, a second wake-up fails with a sentence that names it; the button in French and
/// German. Screenshots in `target/artifacts/jump-wake`.
#[tokio::test(flavor = "multi_thread")]
async fn waking_a_passive_client_from_the_console_in_chromium() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (svc, id, _) = install_passive(&relay, &admin).await;
    let mut service = start_checked_in(&relay, &svc, None).await;
    let listed = wait_online(&relay, &rep, &id, false).await;

    let art = artifacts("jump-wake");
    let script = RepScript::start(
        &relay,
        "jump_wake.mjs",
        "",
        &art,
        &[("LIFELINE_JUMP_NAME", listed["name"].as_str().unwrap())],
    );
    wait_file(
        &script.sync.join("woken.done"),
        Duration::from_secs(120),
        &format!("the wake-up from the console\n{}", script.log()),
    )
    .await;
    assert_eq!(service.count("event=jump_woken"), 1, "{}", service.log());
    assert_eq!(service.count("event=jump_session_started"), 0);

    // Switched off: the relay lists it offline, and the next wake-up reaches nobody.
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    wait_online(&relay, &rep, &id, false).await;
    std::fs::write(script.sync.join("stopped.done"), "").unwrap();
    script.passed(Duration::from_secs(240)).await;

    let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.wake").await;
    let entries = audit.as_array().unwrap();
    let outcomes: Vec<_> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2, "{audit}");
    assert!(
        outcomes.contains(&"ok") && outcomes.contains(&"failed"),
        "{audit}"
    );
}
