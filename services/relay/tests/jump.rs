//! Jump clients with real processes: the relay, an installer **downloaded from the relay**
//! with a deployment key, installed into a temporary folder and started by a systemd-less
//! service runner (the command of the unit's `ExecStart=` as a child process); real TLS and
//! the real protocol for the simulated clients of the limit tests.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::desktop::*;
use common::jump::*;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn deploy_key(relay: &Relay, admin: &str, uses: i64) -> Value {
    let (s, v) = relay
        .post(
            admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": uses,
                   "group": "team:ops", "label": "lab machines"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn clients(relay: &Relay, rep: &str, search: &str) -> Vec<Value> {
    let (s, v) = relay
        .get(rep, &format!("/api/v1/jump/clients?search={search}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

async fn wait_online(relay: &Relay, rep: &str, id: &str, online: bool) -> Value {
    wait_for(Duration::from_secs(60), "client online state", async || {
        clients(relay, rep, "")
            .await
            .into_iter()
            .find(|c| c["id"] == id && c["online"] == online)
    })
    .await
}

/// Makes `user_token`'s user a member of `teams` (as the administrator).
async fn set_teams(relay: &Relay, admin: &str, user_token: &str, teams: &[&str]) {
    let (s, me) = relay.get(user_token, "/api/v1/me").await;
    assert_eq!(s, 200, "{me}");
    let name = me["username"].as_str().unwrap();
    let r = relay
        .http
        .put(relay.url(&format!("/api/v1/jump/users/{name}/teams")))
        .bearer_auth(admin)
        .json(&json!({ "teams": teams }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn patch(relay: &Relay, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = relay
        .http
        .patch(relay.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Registers a simulated client directly; returns its id.
async fn register(relay: &Relay, deploy_key: &str, key: &SigningKey, name: &str) -> String {
    let r = relay
        .http
        .post(relay.url("/api/v1/jump/register"))
        .json(&json!({
            "deploy_key": deploy_key,
            "public_key": B64.encode(key.verifying_key().to_bytes()),
            "mode": "active",
            "info": {"computer": name, "platform": "Linux x86_64", "agent_version": "0.1.0"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["client_id"].as_str().unwrap().to_string()
}

/// A simulated client's first steps: challenge, signed hello, and the relay's answer.
async fn connect(relay: &Relay, id: &str, key: &SigningKey) -> (Ws, Value) {
    let mut ws = ws_connect(&relay.addr, "/ws/jump", None).await;
    let challenge = recv_json(&mut ws).await.unwrap();
    if challenge["type"] != "challenge" {
        return (ws, challenge);
    }
    let nonce = challenge["nonce"].as_str().unwrap();
    let msg = lifeline_proto::jump::auth_message(id, nonce, &relay.pin);
    let sig = key.sign(&msg);
    send_json(
        &mut ws,
        json!({"type": "hello", "version": {"major": 1, "minor": 0}, "client_id": id,
               "purpose": "stay",
               "info": {"computer": "sim", "platform": "Linux x86_64", "agent_version": "0.1.0"},
               "signature": B64.encode(sig.to_bytes())}),
    )
    .await;
    let answer = recv_json(&mut ws).await.unwrap();
    (ws, answer)
}

fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_client_connects_refuses_impostors_and_returns_after_restart() {
    let mut relay = Relay::start().await;
    stock_client(&relay);
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;

    // Only administrators create deployment keys.
    let (s, _) = relay
        .post(
            &rep,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": 1}),
        )
        .await;
    assert_eq!(s, 403);
    let key = deploy_key(&relay, &admin, 1).await;
    let installer = download_linux(&relay, &key["installers"], "installer").await;

    let home = relay.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let svc = relay.dir.path().join("svc");
    install_ok(&installer, &svc, &home, &[]);
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(svc.join("jump.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        key_mode & 0o777,
        0o600,
        "the private key is the owner's only"
    );
    let installed = std::fs::read(svc.join("lifeline-agent")).unwrap();
    assert!(
        !installed.ends_with(b"LLTICKET"),
        "the installed program does not keep the deployment key"
    );

    // The key had one use: a second installation is refused with a sentence.
    let out = run_installer(&installer, &relay.dir.path().join("svc2"), &home, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid any more"), "{err}");

    let service = Service::start(
        &svc.join("lifeline-jump.service"),
        relay.dir.path().join("service.log"),
        None,
    );
    service
        .wait_log_count_for("event=jump_online", 1, Duration::from_secs(30))
        .await;
    // The client is in group team:ops: its members see it.
    set_teams(&relay, &admin, &rep, &["ops"]).await;
    let list = clients(&relay, &rep, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let c = &list[0];
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["online"], true);
    assert_eq!(c["group"], "team:ops");
    assert_eq!(c["mode"], "active");
    assert!(!c["computer"].as_str().unwrap().is_empty());
    assert!(c["last_seen"].as_i64().unwrap() > 0);
    assert_eq!(
        clients(&relay, &rep, &c["computer"].as_str().unwrap()[..2])
            .await
            .len(),
        1
    );
    assert!(clients(&relay, &rep, "no-such-machine").await.is_empty());

    // Another key cannot speak for this client.
    let (mut ws, answer) = connect(&relay, &id, &new_key()).await;
    assert_eq!(answer["type"], "refused", "{answer}");
    assert_eq!(answer["code"], "not_recognised");
    assert!(recv_close(&mut ws).await.is_some());
    let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.connect").await;
    assert!(audit.to_string().contains("refused"), "{audit}");
    // The real client is still online.
    wait_online(&relay, &rep, &id, true).await;

    // The relay dies and comes back on the same port: the client reconnects by itself.
    let port = relay.port();
    relay.kill9();
    relay.spawn(Some(port)).await;
    service
        .wait_log_count_for("event=jump_online", 2, Duration::from_secs(60))
        .await;
    wait_online(&relay, &rep, &id, true).await;
    let log = service.log();
    assert!(log.contains("event=jump_retry"), "{log}");

    // The service stops: the box sees it offline, with a last-seen time.
    drop(service);
    let c = wait_online(&relay, &rep, &id, false).await;
    assert!(c["last_seen"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn licence_limit_is_respected_with_the_message() {
    // The relay runs on its evaluation licence: 5 active jump clients.
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let key = deploy_key(&relay, &admin, 10).await;
    let dk = key["key"].as_str().unwrap();
    let mut held = Vec::new();
    for i in 0..5 {
        let k = new_key();
        let id = register(&relay, dk, &k, &format!("pc-{i}")).await;
        let (ws, answer) = connect(&relay, &id, &k).await;
        assert_eq!(answer["type"], "welcome", "{answer}");
        assert!(answer["heartbeat_s"].as_u64().unwrap() >= 5);
        held.push(ws);
    }
    let k = new_key();
    let id = register(&relay, dk, &k, "pc-5").await;
    let (_ws, answer) = connect(&relay, &id, &k).await;
    assert_eq!(answer["type"], "refused", "{answer}");
    assert_eq!(answer["code"], "licence_limit");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("allows 5 active"),
        "{answer}"
    );
    assert!(answer["retry_after_s"].as_u64().unwrap() > 0);
    set_teams(&relay, &admin, &rep, &["ops"]).await;
    let online = clients(&relay, &rep, "")
        .await
        .iter()
        .filter(|c| c["online"] == true)
        .count();
    assert_eq!(online, 5);

    // One leaves: the waiting client gets in.
    drop(held.pop());
    let (_ws, answer) = wait_for(Duration::from_secs(20), "a free licence", async || {
        let (ws, answer) = connect(&relay, &id, &k).await;
        (answer["type"] == "welcome").then_some((ws, answer))
    })
    .await;
    assert_eq!(answer["name"], "pc-5");
}

/// A connected client tells the box when the user at its desktop changes: written for the
/// list cleaned of control characters, at most once every two seconds per link, and a
/// name too long closes the link.
#[tokio::test(flavor = "multi_thread")]
async fn the_logged_in_user_follows_the_client_and_is_kept_clean() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let key = deploy_key(&relay, &admin, 1).await;
    let k = new_key();
    let id = register(&relay, key["key"].as_str().unwrap(), &k, "desk").await;
    let (mut ws, welcome) = connect(&relay, &id, &k).await;
    assert_eq!(
        welcome["version"],
        json!({"major": 1, "minor": 1}),
        "{welcome}"
    );
    let user = async |want: &str| {
        wait_for(
            Duration::from_secs(20),
            &format!("user {want:?}"),
            async || {
                let list = clients(&relay, &admin, "desk").await;
                (list[0]["logged_in_user"] == want).then_some(())
            },
        )
        .await;
    };
    let tell = |name: &str| json!({"type": "logged_in_user", "user": name});

    send_json(&mut ws, tell("zoé\u{7}\u{202E}")).await;
    user("zoé").await;
    // Told again at once: ignored (a client tells it once a heartbeat at most).
    send_json(&mut ws, tell("mallory")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    user("zoé").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_json(&mut ws, tell("")).await;
    user("").await;
    wait_online(&relay, &admin, &id, true).await;

    // Longer than a name may be: this link is closed, the list keeps what it knew.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    send_json(&mut ws, tell(&"u".repeat(121))).await;
    wait_online(&relay, &admin, &id, false).await;
    user("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_drives_heartbeats_and_drops_a_silent_link() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("relay.toml");
    std::fs::write(&path, "[jump]\nheartbeat_s = 5\n").unwrap();
    let relay = Relay::start_with(&["--config", path.to_str().unwrap()]).await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let key = deploy_key(&relay, &admin, 2).await;
    let dk = key["key"].as_str().unwrap();
    let (ka, kb) = (new_key(), new_key());
    let a = register(&relay, dk, &ka, "answers").await;
    let b = register(&relay, dk, &kb, "silent").await;
    let (mut ws_a, welcome) = connect(&relay, &a, &ka).await;
    assert_eq!(welcome["heartbeat_s"], 5, "{welcome}");
    // B never reads again, so it never answers the relay's pings.
    let (_ws_b, welcome) = connect(&relay, &b, &kb).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    wait_online(&relay, &admin, &b, true).await;

    // A only listens (the WebSocket layer answers each ping) and never pings by itself: the
    // relay's pings come every heartbeat, and A stays online while B is dropped.
    let listener = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(m)) = ws_a.next().await {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
            }
            if pings == 5 {
                break;
            }
        }
        (pings, ws_a)
    });
    wait_online(&relay, &admin, &b, false).await;
    let (pings, _ws_a) = tokio::time::timeout(Duration::from_secs(60), listener)
        .await
        .expect("five pings from the relay")
        .unwrap();
    assert_eq!(pings, 5);
    let online = clients(&relay, &admin, "answers").await;
    assert_eq!(online[0]["online"], true, "{online:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnections_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[jump]\nreconnects_per_second = 2\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    // A storm: 20 links at once. The bucket holds 2 and refills 2 per second, so however
    // slow this machine is, most are told to come back later.
    let firsts = futures_util::future::join_all((0..20).map(|_| async {
        let mut ws = ws_connect(&relay.addr, "/ws/jump", None).await;
        let first = recv_json(&mut ws).await.unwrap();
        (ws, first)
    }))
    .await;
    let admitted = firsts
        .iter()
        .filter(|(_, f)| f["type"] == "challenge")
        .count();
    let refusals: Vec<&Value> = firsts
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f["type"] == "refused")
        .collect();
    assert_eq!(admitted + refusals.len(), 20);
    assert!(admitted >= 2, "the burst size is the rate");
    assert!(refusals.len() >= 10, "{admitted} admitted of 20");
    let refused = refusals[0];
    assert_eq!(refused["code"], "rate_limited");
    assert!((2..=10).contains(&refused["retry_after_s"].as_u64().unwrap()));
}

/// A relay with `[jump] unattended = …`, a private X server, and a jump client installed from
/// the downloaded installer and run by the service runner with that X server as its desktop.
struct JumpLab {
    relay: Relay,
    admin: String,
    rep: String,
    x: Xvfb,
    service: Service,
    id: String,
    _config: tempfile::TempDir,
}

impl JumpLab {
    async fn start(unattended: bool) -> JumpLab {
        let config = tempfile::tempdir().unwrap();
        let path = config.path().join("relay.toml");
        std::fs::write(&path, format!("[jump]\nunattended = {unattended}\n")).unwrap();
        let relay = Relay::start_with(&["--config", path.to_str().unwrap()]).await;
        stock_client(&relay);
        let admin = relay.token("admin", ADMIN_PASSWORD).await;
        let rep = relay.rep_token().await;
        let key = deploy_key(&relay, &admin, 1).await;
        let installer = download_linux(&relay, &key["installers"], "installer").await;
        let home = relay.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let svc = relay.dir.path().join("svc");
        install_ok(&installer, &svc, &home, &[]);
        let x = Xvfb::start();
        let service = Service::start(
            &svc.join("lifeline-jump.service"),
            relay.dir.path().join("service.log"),
            Some(&x.display),
        );
        service
            .wait_log_count_for("event=jump_online", 1, Duration::from_secs(60))
            .await;
        let id = clients(&relay, &admin, "").await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        JumpLab {
            relay,
            admin,
            rep,
            x,
            service,
            id,
            _config: config,
        }
    }

    async fn jump(&self) -> (u16, Value) {
        self.relay
            .post(
                &self.rep,
                &format!("/api/v1/jump/clients/{}/jump", self.id),
                json!({}),
            )
            .await
    }

    /// Opens a viewer, asks for the screen, and waits for the first frame.
    async fn first_frame(&self, sid: &str) -> Ws {
        let mut viewer = ws_connect(
            &self.relay.addr,
            &format!("/ws/view/{sid}"),
            Some(&self.rep),
        )
        .await;
        let (s, v) = self
            .relay
            .post(
                &self.rep,
                &format!("/api/v1/sessions/{sid}/permissions"),
                json!({"permission": "view"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let got = tokio::time::timeout(Duration::from_secs(60), async {
            use futures_util::StreamExt;
            while let Some(m) = viewer.next().await {
                if let Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) = m
                    && !b.is_empty()
                {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            got.ok(),
            Some(true),
            "no frame reached the viewer:\n{}",
            self.service.log()
        );
        viewer
    }

    async fn end(&self, sid: &str) {
        let (s, v) = self
            .relay
            .post(&self.rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jump_unattended_streams_the_screen_and_is_audited() {
    let lab = JumpLab::start(true).await;
    let (relay, rep, admin) = (&lab.relay, &lab.rep, &lab.admin);

    // rep1 is in no team: the team:ops client does not exist for them.
    assert!(clients(relay, rep, "").await.is_empty());
    let (s, _) = lab.jump().await;
    assert_eq!(s, 404);
    let (s, _) = patch(
        relay,
        rep,
        &format!("/api/v1/jump/clients/{}", lab.id),
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(s, 404);

    set_teams(relay, admin, rep, &["ops"]).await;
    let list = clients(relay, rep, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["online"], true);

    // Renaming: administrators (a team's client is not the rep's personal one), validated.
    let path = format!("/api/v1/jump/clients/{}", lab.id);
    let (s, _) = patch(relay, rep, &path, json!({"name": "Lab PC"})).await;
    assert_eq!(s, 403);
    let (s, _) = patch(relay, admin, &path, json!({"name": "  "})).await;
    assert_eq!(s, 400);
    let (s, v) = patch(
        relay,
        admin,
        &path,
        json!({"name": "Lab PC", "comment": "room 4"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c = &clients(relay, rep, "room 4").await[0];
    assert_eq!(c["name"], "Lab PC");

    // Jump: the session is the rep's at once; the screen comes without a question.
    let (s, v) = lab.jump().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["unattended"], true);
    let sid = v["session_id"].as_str().unwrap().to_string();
    lab.service
        .wait_log_count_for("event=state state=active", 1, Duration::from_secs(60))
        .await;
    let _viewer = lab.first_frame(&sid).await;
    assert!(
        lab.service
            .log()
            .contains("event=permission_granted_without_asking permission=view")
    );
    // The client window says a representative is connected.
    window(&lab.x, "Support").await;

    lab.end(&sid).await;
    lab.service
        .wait_log_count_for("event=ended by=rep", 1, Duration::from_secs(60))
        .await;

    let (_, audit) = relay.get(admin, "/api/v1/audit?action=jump.session").await;
    let audit = audit.to_string();
    for needle in ["sent", "connected", "unattended", &lab.id] {
        assert!(audit.contains(needle), "{needle} in {audit}");
    }
    let (_, audit) = relay
        .get(admin, "/api/v1/audit?action=jump.client_update")
        .await;
    assert!(audit.to_string().contains("Lab PC"), "{audit}");
    let (s, report) = relay.get(rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s, 200);
    assert!(report.to_string().contains("jumped to"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jump_with_the_prompt_policy_asks_the_user() {
    let lab = JumpLab::start(false).await;
    let (relay, rep, admin) = (&lab.relay, &lab.rep, &lab.admin);
    set_teams(relay, admin, rep, &["ops"]).await;
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(rep)).await;
    recv_type(&mut console, "snapshot").await;

    // Declined: the session ends and the rep reads why.
    let (s, v) = lab.jump().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["unattended"], false);
    let sid = v["session_id"].as_str().unwrap().to_string();
    let wid = window(&lab.x, "Remote support request").await;
    wait_for(Duration::from_secs(30), "the decline", async || {
        if lab.x.try_xdotool(&["windowfocus", "--sync", &wid]) {
            lab.x.try_xdotool(&["key", "Escape"]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.service
            .log()
            .contains("event=jump_answer answer=Declined")
            .then_some(())
    })
    .await;
    let ended = loop {
        let e = recv_type(&mut console, "ended").await;
        if e["session_id"] == sid.as_str() {
            break e;
        }
    };
    assert!(
        ended["reason"].as_str().unwrap().contains("declined"),
        "{ended}"
    );
    let (_, audit) = relay.get(admin, "/api/v1/audit?action=jump.session").await;
    assert!(audit.to_string().contains("failed"), "{audit}");
    assert!(audit.to_string().contains("asked"), "{audit}");

    // Allowed: the session starts and the screen streams.
    let (s, v) = lab.jump().await;
    assert_eq!(s, 200, "{v}");
    let sid = v["session_id"].as_str().unwrap().to_string();
    let wid = wait_for(Duration::from_secs(30), "the second question", async || {
        (lab.service
            .log()
            .matches("event=jump_session_started")
            .count()
            >= 2)
            .then(|| lab.x.find_window("Remote support request"))
            .flatten()
    })
    .await;
    wait_for(Duration::from_secs(30), "the allow", async || {
        if lab.x.try_xdotool(&["windowfocus", "--sync", &wid]) {
            lab.x.try_xdotool(&["key", "Return"]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.service
            .log()
            .contains("event=jump_answer answer=Allowed")
            .then_some(())
    })
    .await;
    lab.service
        .wait_log_count_for("event=state state=active", 1, Duration::from_secs(60))
        .await;
    let _viewer = lab.first_frame(&sid).await;
    lab.end(&sid).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jump_to_offline_or_passive_clients_is_refused_and_routes_are_documented() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (s, v) = relay
        .post(
            &admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": 5}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let k = new_key();
    let id = register(&relay, v["key"].as_str().unwrap(), &k, "pc-off").await;
    let (s, v) = relay
        .post(&rep, &format!("/api/v1/jump/clients/{id}/jump"), json!({}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("offline"), "{v}");

    let (s, v) = relay
        .post(
            &admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "passive", "valid_minutes": 120, "uses": 5}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = relay
        .http
        .post(relay.url("/api/v1/jump/register"))
        .json(&json!({
            "deploy_key": v["key"],
            "public_key": B64.encode(new_key().verifying_key().to_bytes()),
            "mode": "passive",
            "info": {"computer": "pc-passive", "platform": "Linux x86_64", "agent_version": "0.1.0"},
            "wake_port": 47123,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let passive: Value = r.json().await.unwrap();
    let pid = passive["client_id"].as_str().unwrap();
    let (s, v) = relay
        .post(&rep, &format!("/api/v1/jump/clients/{pid}/jump"), json!({}))
        .await;
    assert_eq!(s, 409, "{v}");
    // It never checked in, so the box does not know where to wake it.
    assert!(v.to_string().contains("could not be woken"), "{v}");
    let (_, audit) = relay.get(&admin, "/api/v1/audit?action=jump.session").await;
    assert!(audit.to_string().contains("unreachable"), "{audit}");

    // Only administrators set teams.
    let r = relay
        .http
        .put(relay.url("/api/v1/jump/users/rep1/teams"))
        .bearer_auth(&rep)
        .json(&json!({"teams": ["ops"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    relay
        .assert_documented(&[
            "/api/v1/jump/deploy-keys",
            "/jump/installer/{key}/{platform}",
            "/api/v1/jump/register",
            "/api/v1/jump/clients",
            "/api/v1/jump/clients/{id}",
            "/api/v1/jump/clients/{id}/jump",
            "/api/v1/jump/clients/{id}/wake",
            "/api/v1/jump/users/{username}/teams",
        ])
        .await;
}

/// The console's jump panel in Chromium (`tests/browser/jump.mjs`) against a real jump client:
/// listed online, search, rename, "Jump" opens the viewer with the remote screen, the panel
/// in English, French and German (screenshots in `target/artifacts/jump`), and last the
/// administrator's "Remove" (after a confirmation): the client uninstalls itself.
#[tokio::test(flavor = "multi_thread")]
async fn jump_console_in_chromium() {
    let mut lab = JumpLab::start(true).await;
    let name = clients(&lab.relay, &lab.admin, "").await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let art = artifacts("jump");
    let script = RepScript::start(
        &lab.relay,
        "jump.mjs",
        "",
        &art,
        &[
            ("LIFELINE_REP_USER", "admin"),
            ("LIFELINE_REP_PASSWORD", ADMIN_PASSWORD),
            ("LIFELINE_JUMP_NAME", &name),
        ],
    );
    script.passed(Duration::from_secs(300)).await;
    let (_, audit) = lab
        .relay
        .get(&lab.admin, "/api/v1/audit?action=jump.session")
        .await;
    assert!(audit.to_string().contains("connected"), "{audit}");
    // "Remove" in the page: the client was told to uninstall, and did.
    let status = wait_for(Duration::from_secs(30), "the service to exit", async || {
        lab.service.child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "{status:?}: {}", lab.service.log());
    assert!(
        !lab.relay.dir.path().join("svc").exists(),
        "the service folder is removed"
    );
    let (_, audit) = lab
        .relay
        .get(&lab.admin, "/api/v1/audit?action=jump.remove")
        .await;
    assert!(audit.to_string().contains(&lab.id), "{audit}");
}
