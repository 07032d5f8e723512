//! Jump clients with real processes: the relay, an installer **downloaded from the relay**
//! with a deployment key, installed into a temporary folder and started by a systemd-less
//! service runner (the command of the unit's `ExecStart=` as a child process); real TLS and
//! the real protocol for the simulated clients of the limit tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::desktop::*;
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

async fn download_installer(relay: &Relay, key: &Value, name: &str) -> PathBuf {
    let url = key["installers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "linux-x86_64")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_string();
    let resp = relay.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let path = relay.dir.path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run_installer(installer: &Path, dir: &Path, home: &Path) -> std::process::Output {
    Command::new(installer)
        .arg("--service-dir")
        .arg(dir)
        .arg("--no-systemd")
        .env("HOME", home)
        .env_remove("DISPLAY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap()
}

/// The arguments of a unit's `ExecStart=` line (double-quoted, as the installer writes it).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart");
    let mut args = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '"' => {
                let mut arg = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' | '%' | '$' => arg.push(chars.next().unwrap()),
                        c => arg.push(c),
                    }
                }
                args.push(arg);
            }
            c => panic!("unquoted argument starting with {c:?}"),
        }
    }
    args
}

/// The systemd-less service runner: starts the unit's command as a child process.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(unit: &Path, log: PathBuf) -> Service {
        let args = exec_start(&std::fs::read_to_string(unit).unwrap());
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&args[0])
            .args(&args[1..])
            .env("RUST_LOG", "info")
            .env_remove("DISPLAY")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Service { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_log_count(&self, needle: &str, n: usize, limit: Duration) {
        wait_for(limit, needle, async || {
            (self.log().matches(needle).count() >= n).then_some(())
        })
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let installer = download_installer(&relay, &key, "installer").await;

    let home = relay.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let svc = relay.dir.path().join("svc");
    let out = run_installer(&installer, &svc, &home);
    assert!(
        out.status.success(),
        "installer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = run_installer(&installer, &relay.dir.path().join("svc2"), &home);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid any more"), "{err}");

    let service = Service::start(
        &svc.join("lifeline-jump.service"),
        relay.dir.path().join("service.log"),
    );
    service
        .wait_log_count("event=jump_online", 1, Duration::from_secs(30))
        .await;
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
        .wait_log_count("event=jump_online", 2, Duration::from_secs(60))
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
