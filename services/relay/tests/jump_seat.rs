//! A jump client installed as root finds the logged-in user's desktop by itself and starts the
//! session there **as that user**: an X server (Xvfb) run by the unprivileged account
//! `nobody` with its own cookie (`-auth`, a file only `nobody` can read), a "desktop" process
//! of `nobody` holding `DISPLAY`/`XAUTHORITY`, and the jump service started by the
//! systemd-less runner as root with no `DISPLAY`. Needs root (the CI runs as root) and the
//! `setpriv` and `xauth` commands; runs in the `slow` test group, alone, because it reads
//! every process of other users (another test's user desktop would be a logged-in user too).

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::desktop::*;
use common::jump::*;
use common::*;
use serde_json::json;

/// The account that is "logged in" (Debian's `nobody`).
const UID: u32 = 65534;
const GID: u32 = 65534;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// `program args` as `nobody`, with exactly `env`.
fn as_nobody(program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={UID}"))
        .arg(format!("--regid={GID}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// An X server of `nobody`'s, with a cookie: only clients with `auth` get in.
struct UserX {
    child: Child,
    display: String,
    auth: PathBuf,
    _dir: tempfile::TempDir,
}

impl UserX {
    fn start() -> UserX {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(UID), Some(GID)).unwrap();
        let auth = dir.path().join("Xauthority");
        let auth_s = auth.to_str().unwrap().to_string();
        let cookie: String = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        // The server takes every cookie of its -auth file, whatever display it names; the
        // clients' entry for the real display is added once it is known.
        let xauth = |display: &str| {
            let st = as_nobody(
                "xauth",
                &[
                    "-q",
                    "-f",
                    &auth_s,
                    "add",
                    display,
                    "MIT-MAGIC-COOKIE-1",
                    &cookie,
                ],
                &[],
            )
            .stderr(Stdio::null())
            .status()
            .expect("xauth must be installed (Debian package xauth)");
            assert!(st.success(), "xauth add {display}");
        };
        xauth(":0");
        let dpy = dir.path().join("display");
        let out = std::fs::File::create(&dpy).unwrap();
        let child = as_nobody(
            "Xvfb",
            &[
                "-displayfd",
                "1",
                "-auth",
                &auth_s,
                "-screen",
                "0",
                "1024x640x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            &[],
        )
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv and Xvfb must be installed");
        let mut x = UserX {
            child,
            display: String::new(),
            auth,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let n = loop {
            let text = std::fs::read_to_string(&dpy).unwrap_or_default();
            if text.ends_with('\n') {
                break text.trim().parse::<u32>().expect("Xvfb's display number");
            }
            assert!(std::time::Instant::now() < deadline, "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        x.display = format!(":{n}");
        xauth(&x.display);
        let socket = std::fs::metadata(format!("/tmp/.X11-unix/X{n}")).unwrap();
        assert_eq!(socket.uid(), UID, "nobody's X server owns its socket");
        x
    }

    /// A process of the logged-in user in this desktop (what a desktop session's processes
    /// look like from outside).
    fn desktop_process(&self) -> Child {
        as_nobody(
            "sleep",
            &["600"],
            &[
                ("DISPLAY", &self.display),
                ("XAUTHORITY", self.auth.to_str().unwrap()),
                ("LANG", "C.UTF-8"),
                ("HOME", "/nonexistent"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    }
}

impl Drop for UserX {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `/proc/PID/status` line's values (`Uid:` real, effective, saved, filesystem).
fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn nul_separated(path: &str) -> Vec<String> {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The installed service in `svc`, started as root (this test's user) and online.
async fn start_online(svc: &std::path::Path, log: PathBuf) -> Service {
    let service = Service::start(&svc.join("lifeline-jump.service"), log, None);
    service
        .wait_log_count_for("event=jump_online", 1, Duration::from_secs(60))
        .await;
    service
}

/// The pid of the `n`-th session agent the service started.
fn started_pid(log: &str, n: usize) -> u32 {
    let line = log
        .lines()
        .filter(|l| l.contains("event=jump_session_started"))
        .nth(n - 1)
        .unwrap();
    line.split("pid=Some(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

async fn ended_reason(console: &mut Ws, sid: &str) -> String {
    loop {
        let e = recv_type(console, "ended").await;
        if e["session_id"] == sid {
            return e["reason"].as_str().unwrap_or_default().to_string();
        }
    }
}

async fn jump(relay: &Relay, rep: &str, id: &str) -> String {
    let (s, v) = relay
        .post(rep, &format!("/api/v1/jump/clients/{id}/jump"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    v["session_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn root_service_jumps_into_the_logged_in_users_desktop_as_that_user() {
    assert!(
        is_root(),
        "this test installs a jump client as root and runs a desktop as the user nobody: run it as root (the CI does)"
    );
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("relay.toml");
    std::fs::write(&path, "[jump]\nunattended = true\nheartbeat_s = 5\n").unwrap();
    let relay = Relay::start_with(&["--config", path.to_str().unwrap()]).await;
    stock_client(&relay);
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (s, me) = relay.get(&rep, "/api/v1/me").await;
    assert_eq!(s, 200, "{me}");
    let r = relay
        .http
        .put(relay.url(&format!(
            "/api/v1/jump/users/{}/teams",
            me["username"].as_str().unwrap()
        )))
        .bearer_auth(&admin)
        .json(&json!({ "teams": ["ops"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, key) = relay
        .post(
            &admin,
            "/api/v1/jump/deploy-keys",
            json!({"mode": "active", "valid_minutes": 120, "uses": 1, "group": "team:ops"}),
        )
        .await;
    assert_eq!(s, 200, "{key}");
    let installer = download_linux(&relay, &key["installers"], "installer").await;

    // The service folder as an administrator's /opt/lifeline-jump: under a folder everyone
    // may enter; the installer makes it root's only (the service opens it for the agent).
    let opt = tempfile::tempdir().unwrap();
    std::fs::set_permissions(opt.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let svc = opt.path().join("lifeline-jump");
    install_ok(&installer, &svc, relay.dir.path(), &[]);

    let x = UserX::start();
    let service = start_online(&svc, relay.dir.path().join("service.log")).await;
    let (s, list) = relay.get(&rep, "/api/v1/jump/clients").await;
    assert_eq!(s, 200, "{list}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        list[0]["logged_in_user"], "",
        "nobody is logged in yet: {list}"
    );
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;

    // 1. An X server runs but nobody is logged in to it: the jump fails with the sentence.
    let sid = jump(&relay, &rep, &id).await;
    let reason = ended_reason(&mut console, &sid).await;
    assert!(
        reason.contains("Nobody is logged in to a desktop on this computer"),
        "{reason}\n{}",
        service.log()
    );
    assert_eq!(service.count("event=jump_session_started"), 0);

    // 2. nobody is logged in: the session agent runs as nobody in nobody's desktop.
    let desktop = Killed(x.desktop_process());
    // The root service looks at the desktop each heartbeat: the list names the user
    // without a new connection.
    wait_user(&relay, &rep, "nobody").await;
    assert_eq!(service.count("event=jump_online"), 1, "{}", service.log());
    let sid = jump(&relay, &rep, &id).await;
    service
        .wait_log_count_for("event=jump_session_started", 1, Duration::from_secs(30))
        .await;
    let log = service.log();
    assert!(
        log.contains(&format!(
            "event=jump_session_user user=\"nobody\" uid={UID}"
        )),
        "{log}"
    );
    let pid = started_pid(&log, 1);
    let cmdline = wait_for(
        Duration::from_secs(30),
        "the session agent's exec",
        async || {
            let c = nul_separated(&format!("/proc/{pid}/cmdline"));
            c.iter().any(|a| a == "--jump-session").then_some(c)
        },
    )
    .await;
    for key in ["Uid:", "Gid:"] {
        let ids = status_ids(pid, key);
        assert_eq!(ids, vec![UID; 4], "{key} of the session agent");
    }
    assert!(
        status_ids(pid, "Groups:").iter().all(|g| *g != 0),
        "no root group"
    );
    let env = nul_separated(&format!("/proc/{pid}/environ"));
    assert!(env.contains(&format!("DISPLAY={}", x.display)), "{env:?}");
    assert!(
        env.contains(&format!("XAUTHORITY={}", x.auth.display())),
        "{env:?}"
    );
    assert!(env.contains(&"USER=nobody".to_string()), "{env:?}");
    assert!(env.contains(&"LANG=C.UTF-8".to_string()), "{env:?}");
    let allowed = [
        "HOME",
        "USER",
        "LOGNAME",
        "PATH",
        "DISPLAY",
        "XAUTHORITY",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "LANG",
        "RUST_LOG",
    ];
    for var in &env {
        let name = var.split('=').next().unwrap();
        assert!(allowed.contains(&name), "{name} leaked into the agent");
    }
    // The ticket: nobody's own, 0600, in a folder of root's that no one can list.
    let ticket = cmdline
        .iter()
        .skip_while(|a| *a != "--ticket-file")
        .nth(1)
        .map(PathBuf::from)
        .unwrap();
    let meta = std::fs::symlink_metadata(&ticket).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (UID, 0o600),
        "{ticket:?}"
    );
    let folder = std::fs::symlink_metadata(ticket.parent().unwrap()).unwrap();
    assert_eq!((folder.uid(), folder.mode() & 0o7777), (0, 0o711));
    // The service's key stays root's.
    let key_meta = std::fs::metadata(svc.join("jump.key")).unwrap();
    assert_eq!((key_meta.uid(), key_meta.mode() & 0o777), (0, 0o600));

    // Frames of nobody's screen reach the representative.
    service
        .wait_log_count_for("event=state state=active", 1, Duration::from_secs(60))
        .await;
    let mut viewer = ws_connect(&relay.addr, &format!("/ws/view/{sid}"), Some(&rep)).await;
    let (s, v) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({"permission": "view"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // The first screen update's surface is nobody's 1024x640 screen.
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        use futures_util::StreamExt;
        use lifeline_proto::frame::Channel;
        let mut inflater = lifeline_proto::deflate::ScreenInflater::new();
        while let Some(m) = viewer.next().await {
            let Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) = m else {
                continue;
            };
            let Ok((header, payload)) = lifeline_proto::frame::decode(&b) else {
                continue;
            };
            if header.channel != Channel::Screen {
                continue;
            }
            if let Ok(update) = inflater.message(&header, payload)
                && let Ok(u) = lifeline_proto::screen::decode_update(update)
            {
                return Some((u.width, u.height));
            }
        }
        None
    })
    .await;
    assert_eq!(
        got.ok().flatten(),
        Some((1024, 640)),
        "no frame of nobody's screen reached the viewer:\n{}",
        service.log()
    );
    let (s, v) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    service
        .wait_log_count_for("event=ended by=rep", 1, Duration::from_secs(60))
        .await;
    // The agent's closing window waits for the user; the user's logout ends it here.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    service
        .wait_log_count_for("event=jump_session_ended", 1, Duration::from_secs(60))
        .await;
    assert!(
        !ticket.exists(),
        "the ticket is removed when the agent ends"
    );
    assert!(!ticket.parent().unwrap().exists());

    // The client tells the box who is logged in when it connects: the console shows nobody.
    drop(service);
    let service = start_online(&svc, relay.dir.path().join("service-2.log")).await;
    let (s, list) = relay.get(&rep, "/api/v1/jump/clients").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["logged_in_user"], "nobody", "{list}");

    // nobody logs out: the list says so while the link stays up.
    drop(desktop);
    wait_user(&relay, &rep, "").await;
    assert!(service.log().contains("event=jump_user_changed user=\"\""));
    assert_eq!(service.count("event=jump_online"), 1, "{}", service.log());
}

/// Waits until the jump list names `user` as logged in to the (only) client.
async fn wait_user(relay: &Relay, rep: &str, user: &str) {
    wait_for(
        Duration::from_secs(30),
        &format!("{user:?} in the list"),
        async || {
            let (_, list) = relay.get(rep, "/api/v1/jump/clients").await;
            (list[0]["logged_in_user"] == user).then_some(())
        },
    )
    .await;
}
