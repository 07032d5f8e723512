//! The command shell end to end.
//!
//! * `a_shell_on_the_customers_computer`: the client **downloaded from the relay** runs on
//!   an X server; this test plays the customer in the client's window with xdotool and the
//!   representative on the shell socket. Checked: no shell before the customer allows it;
//!   allowed, a real login shell on a pseudo-terminal: `echo $TERM` is `xterm-256color`,
//!   `stty size` follows a resize, 4 KiB of random bytes printed do not break the next
//!   command, a full-screen program (`top`) starts, draws and quits; the customer closes the
//!   shell with "Close it" in the client window and the console is told; a request to run
//!   as administrator that the customer denies ("Deny" in the window) opens no shell and the
//!   console hears "The customer declined"; allowed, the client (root on this machine) opens
//!   root's shell, which the representative closes; the session report lists the shells'
//!   events and the transcript (input and output) is downloadable.
//! * `the_admin_policy_turns_the_shell_off`: `[tools] shell = false`, `elevated_shell =
//!   false`: both refused with a clear message, audited and recorded, although the customer
//!   allowed them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::desktop::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The representative's end of a shell socket.
struct Term {
    ws: Ws,
    out: Vec<u8>,
    /// Where the last wait stopped looking.
    seen: usize,
    texts: Vec<Value>,
    closed: bool,
}

impl Term {
    async fn open(relay: &Relay, rep: &str, sid: &str, query: &str) -> Term {
        let ws = ws_connect(&relay.addr, &format!("/ws/shell/{sid}?{query}"), Some(rep)).await;
        Term {
            ws,
            out: Vec::new(),
            seen: 0,
            texts: Vec::new(),
            closed: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .unwrap();
    }

    async fn json(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Reads one message (output is acknowledged at once); false when the socket closed.
    async fn read(&mut self, limit: Duration) -> bool {
        let m = match tokio::time::timeout(limit, self.ws.next()).await {
            Err(_) => return true,
            Ok(m) => m,
        };
        match m {
            Some(Ok(Message::Binary(b))) => {
                self.out.extend_from_slice(&b);
                let offset = self.out.len();
                self.json(json!({"type": "ack", "offset": offset})).await;
            }
            Some(Ok(Message::Text(t))) => self.texts.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                self.closed = true;
                return false;
            }
            Some(Ok(_)) => {}
        }
        true
    }

    /// Waits for `needle` in the output that came after the last wait.
    async fn wait(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let from = self.seen.min(self.out.len());
            if let Some(i) = String::from_utf8_lossy(&self.out[from..]).find(needle) {
                // Lossy text and bytes agree up to the match for the ASCII needles used here.
                self.seen = (from + i + needle.len()).min(self.out.len());
                return;
            }
            assert!(
                Instant::now() < deadline && !self.closed,
                "the terminal never showed {needle:?}; it showed:\n{}",
                String::from_utf8_lossy(&self.out[from..])
            );
            self.read(Duration::from_millis(200)).await;
        }
    }

    /// Waits for a text message of type `ty`.
    async fn wait_type(&mut self, ty: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self.texts.iter().position(|v| v["type"] == ty) {
                return self.texts.remove(i);
            }
            assert!(
                Instant::now() < deadline && !self.closed,
                "no {ty:?} on the shell socket; got {:?}",
                self.texts
            );
            self.read(Duration::from_millis(200)).await;
        }
    }

    async fn wait_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.closed {
            assert!(Instant::now() < deadline, "the shell socket stays open");
            self.read(Duration::from_millis(200)).await;
        }
    }
}

/// The refusal a shell socket opened with `query` gets.
async fn refusal(relay: &Relay, rep: &str, sid: &str, query: &str) -> Value {
    let mut t = Term::open(relay, rep, sid, query).await;
    let r = t.wait_type("refused").await;
    t.wait_closed().await;
    r
}

/// The centre of the window's button of `width` pixels in `color` (screen coordinates),
/// read from a picture of the screen; with `beside`, only a button with that colour just
/// right of it.
fn button_at(
    x: &Xvfb,
    color: [u8; 3],
    width: std::ops::RangeInclusive<usize>,
    beside: Option<[u8; 3]>,
) -> Option<(usize, usize)> {
    let out = Command::new("import")
        .args(["-window", "root", "-depth", "8", "ppm:-"])
        .env("DISPLAY", &x.display)
        .output()
        .ok()?;
    let ppm = out.stdout;
    // P6 header: magic, width, height, max value, each followed by white space.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while ppm.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !ppm.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&ppm[start..i]).into_owned());
    }
    let w: usize = fields[1].parse().ok()?;
    let h: usize = fields[2].parse().ok()?;
    let pixels = &ppm[i + 1..];
    // Bands of rows holding the colour, with their horizontal extent.
    let mut band: Option<(usize, usize, usize, usize)> = None; // y0, y1, x0, x1
    let mut found = Vec::new();
    for y in 0..h {
        let row = pixels.get(y * w * 3..(y + 1) * w * 3)?;
        let xs: Vec<usize> = (0..w).filter(|&x| row[x * 3..x * 3 + 3] == color).collect();
        match (xs.first(), xs.last(), band.as_mut()) {
            (Some(&a), Some(&b), Some(bd)) => {
                bd.1 = y;
                bd.2 = bd.2.min(a);
                bd.3 = bd.3.max(b);
            }
            (Some(&a), Some(&b), None) => band = Some((y, y, a, b)),
            _ => {
                if let Some(bd) = band.take() {
                    found.push(bd);
                }
            }
        }
    }
    let pixel = |x: usize, y: usize| pixels.get((y * w + x) * 3..(y * w + x) * 3 + 3);
    found
        .into_iter()
        .filter(|(_, _, x0, x1)| width.contains(&(x1 - x0 + 1)))
        .find(|&(y0, y1, _, x1)| beside.is_none_or(|c| pixel(x1 + 4, (y0 + y1) / 2) == Some(&c)))
        .map(|(y0, y1, x0, x1)| ((x0 + x1) / 2, (y0 + y1) / 2))
}

/// The customer's "Allow" button (blue, 100 pixels wide) once the question is on screen.
const BRAND: [u8; 3] = [29, 91, 168];
/// The background of the question's box ("Send" under the chat has the same blue and width,
/// but not on this background).
const QUESTION_BG: [u8; 3] = [226, 236, 250];

/// Waits until the client window shows its question, then answers it: a click on "Allow",
/// or Space on "Deny" (which has the focus when a question shows).
async fn answer(x: &Xvfb, wid: &str, allow: bool) {
    let (bx, by) = wait_for(
        Duration::from_secs(30),
        "the question in the client window",
        async || button_at(x, BRAND, 95..=105, Some(QUESTION_BG)),
    )
    .await;
    if allow {
        x.xdotool(&["mousemove", &bx.to_string(), &by.to_string(), "click", "1"]);
    } else {
        x.xdotool(&["windowfocus", "--sync", wid]);
        x.xdotool(&["key", "space"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_on_the_customers_computer() {
    let art = artifacts("shell");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let CustomerSession {
        relay,
        rep,
        agent,
        wid,
        sid,
        // Kept open to the end: the representative stays online.
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, Some(home.path())).await;
    let ask = async |permission: &str| {
        let (s, body) = relay
            .post(
                &rep,
                &format!("/api/v1/sessions/{sid}/permissions"),
                json!({ "permission": permission }),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        agent
            .wait_log(&format!("event=permission_asked permission={permission}"))
            .await;
    };

    // 1. No shell before the customer allows it.
    let r = refusal(&relay, &rep, &sid, "rows=24&cols=80").await;
    assert_eq!(r["code"], "not_permitted", "{r}");

    // 2. The customer allows it (Tab to "Allow"): a login shell on a terminal.
    ask("shell").await;
    answer(&x, &wid, true).await;
    agent
        .wait_log("event=permission permission=shell change=granted")
        .await;
    let mut t = Term::open(&relay, &rep, &sid, "rows=24&cols=80").await;
    let opened = t.wait_type("opened").await;
    assert_eq!(opened["elevated"], false, "{opened}");
    agent.wait_log("event=shell_opened").await;
    x.screenshot(&art.join("1-shell-open.png"));

    t.send(b"echo T=$TERM\r").await;
    t.wait("T=xterm-256color").await;

    // 3. A resize reaches the program.
    t.json(json!({"type": "resize", "rows": 40, "cols": 132}))
        .await;
    agent.wait_log("event=shell_resized").await;
    t.send(b"stty size\r").await;
    t.wait("40 132").await;

    // 4. Binary garbage on the terminal breaks nothing: the next command still answers.
    t.send(b"head -c 4096 /dev/urandom; echo; echo after-$((6*7))\r")
        .await;
    t.wait("after-42").await;
    t.send(b"stty sane; echo sane-$((1+1))\r").await;
    t.wait("sane-2").await;

    // 5. A full-screen program: hides the cursor, clears the screen and draws its table at
    //    the terminal's size, quits with `q`.
    t.send(b"top -d 1\r").await;
    t.wait("\x1b[?25l").await;
    t.wait("load average").await;
    t.wait("PID USER").await;
    t.send(b"q").await;
    t.wait("\x1b[?25h").await;
    t.send(b"echo top-done-$((2+3))\r").await;
    t.wait("top-done-5").await;
    let out_before_close = t.out.len();

    // 6. The customer closes it with "Close it" in the client window.
    x.screenshot(&art.join("2-shell-row.png"));
    let (bx, by) = wait_for(Duration::from_secs(20), "the Close it button", async || {
        button_at(&x, [180, 35, 24], 100..=120, None)
    })
    .await;
    x.xdotool(&["mousemove", &bx.to_string(), &by.to_string(), "click", "1"]);
    let closed = t.wait_type("closed").await;
    assert_eq!(closed["by"], "customer", "{closed}");
    t.wait_closed().await;
    agent.wait_log("event=shell_closed id=").await;
    assert!(agent.log().contains("by=customer"), "{}", agent.log());

    // 7. Run as administrator, denied by the customer ("Deny" has the focus): no shell.
    ask("elevated_shell").await;
    answer(&x, &wid, false).await;
    agent
        .wait_log("event=permission permission=elevated_shell change=denied")
        .await;
    let r = refusal(&relay, &rep, &sid, "elevated=true&rows=24&cols=80").await;
    assert_eq!(r["code"], "declined", "{r}");
    assert_eq!(r["message"], "The customer declined.", "{r}");
    assert_eq!(
        agent.log().matches("event=shell_opened").count(),
        1,
        "no elevated shell was started"
    );

    // 7b. Asked again and allowed: this client runs as root here, so it needs no further
    //     authorisation and the shell is root's. The representative closes it.
    ask("elevated_shell").await;
    answer(&x, &wid, true).await;
    agent
        .wait_log("event=permission permission=elevated_shell change=granted")
        .await;
    let mut t = Term::open(&relay, &rep, &sid, "elevated=true&rows=24&cols=80").await;
    let opened = t.wait_type("opened").await;
    assert_eq!(opened["elevated"], true, "{opened}");
    t.send(b"echo uid-$(id -u)\r").await;
    t.wait("uid-0").await;
    t.json(json!({"type": "close"})).await;
    let closed = t.wait_type("closed").await;
    assert_eq!(closed["by"], "representative", "{closed}");
    t.wait_closed().await;

    // 8. The session report: the events, and the transcript with input and output.
    let (s, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s, 200);
    let events = d["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"shell_opened"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "shell_refused").count(),
        2,
        "{kinds:?}"
    );
    let closed_ev = events.iter().find(|e| e["kind"] == "shell_closed").unwrap();
    let detail: Value = serde_json::from_str(closed_ev["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["by"], "customer", "{detail}");
    assert_eq!(detail["elevated"], false);
    assert_eq!(detail["truncated"], false);
    assert!(detail["bytes_out"].as_u64().unwrap() >= out_before_close as u64 - 64);
    assert!(detail["bytes_in"].as_u64().unwrap() > 50, "{detail}");
    let shell_id = detail["shell"].as_u64().unwrap();
    let resp = relay
        .http
        .get(relay.url(&format!(
            "/api/v1/sessions/{sid}/shells/{shell_id}/transcript"
        )))
        .bearer_auth(&rep)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let transcript = resp.text().await.unwrap();
    std::fs::write(art.join("transcript.txt"), &transcript).unwrap();
    assert!(
        transcript.contains(" in  stty size\\r"),
        "input is recorded"
    );
    assert!(transcript.contains("after-42"), "output is recorded");
    assert!(transcript.contains("--- resize 40x132"));
    assert!(transcript.contains("by customer"));
    let (s, audit) = relay
        .get(&relay.token("admin", ADMIN_PASSWORD).await, "/api/v1/audit")
        .await;
    assert_eq!(s, 200);
    let audit = audit.to_string();
    assert!(audit.contains("session.shell"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_policy_turns_the_shell_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[tools]\nshell = false\nelevated_shell = false\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let rep = relay.rep_token().await;
    let (s, p) = relay.get(&rep, "/api/v1/tools").await;
    assert_eq!(s, 200);
    assert_eq!(
        p,
        json!({"system_info": true, "shell": false, "elevated_shell": false, "install": true})
    );
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;
    let (mut agent, _) = join(&relay, &rep, "personal", "Policy").await;
    let sid = accept_next(&relay, &rep, &mut console).await;
    recv_type(&mut agent, "rep_joined").await;
    for permission in ["shell", "elevated_shell"] {
        let (s, _) = relay
            .post(
                &rep,
                &format!("/api/v1/sessions/{sid}/permissions"),
                json!({ "permission": permission }),
            )
            .await;
        assert_eq!(s, 200);
        recv_type(&mut agent, "permission_request").await;
        send_json(
            &mut agent,
            json!({"type": "permission", "permission": permission, "granted": true}),
        )
        .await;
    }
    wait_for(Duration::from_secs(10), "the grants", async || {
        let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
        (d["permissions"]
            .as_array()?
            .iter()
            .filter(|p| p["state"] == "granted")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let r = refusal(&relay, &rep, &sid, "").await;
    assert_eq!(r["code"], "policy", "{r}");
    assert!(r["message"].as_str().unwrap().contains("turned off"), "{r}");
    let r = refusal(&relay, &rep, &sid, "elevated=true").await;
    assert_eq!(r["code"], "policy", "{r}");
    // The agent was never asked to open anything.
    let got = tokio::time::timeout(Duration::from_millis(500), agent.next()).await;
    if let Ok(Some(Ok(Message::Text(t)))) = got {
        assert!(!t.contains("\"shell\""), "{t}");
    }
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let refused = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "shell_refused")
        .count();
    assert_eq!(refused, 2, "{d}");
    let (_, audit) = relay
        .get(&relay.token("admin", ADMIN_PASSWORD).await, "/api/v1/audit")
        .await;
    assert!(audit.to_string().contains("session.shell"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_terminal_in_the_console_in_chromium() {
    let art = artifacts("shell-browser");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let CustomerSession {
        relay,
        agent,
        wid,
        sid,
        // Kept open to the end: the representative stays online.
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, Some(home.path())).await;

    let script = RepScript::start(&relay, "shell.mjs", &sid, &art, &[]);
    let script_log = || script.log();

    // The customer allows the shell (Tab to "Allow").
    wait_for(
        Duration::from_secs(90),
        &format!("the console's request\n{}", script_log()),
        async || {
            agent
                .log()
                .contains("event=permission_asked permission=shell")
                .then_some(())
        },
    )
    .await;
    answer(&x, &wid, true).await;
    let (ok, log) = script.finished(Duration::from_secs(240)).await;
    assert!(
        ok,
        "browser script failed:\n{log}\n---- agent log ----\n{}\n---- relay log ----\n{}",
        agent.log(),
        relay.log()
    );
    assert!(agent.log().contains("event=shell_resized"));
}

/// The console serves xterm.js from the box: the vendored files are the npm package pinned
/// in tests/browser/package.json, byte for byte (an upgrade is one deliberate step: `npm
/// install` there, copy, update VERSION).
#[test]
fn vendored_xterm_is_the_pinned_npm_package() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let vendor = root.join("services/relay/assets/vendor/xterm");
    let npm = root.join("tests/browser/node_modules/@xterm");
    for (vendored, package) in [
        ("xterm.mjs", "xterm/lib/xterm.mjs"),
        ("xterm.css", "xterm/css/xterm.css"),
        ("LICENSE", "xterm/LICENSE"),
        ("addon-fit.mjs", "addon-fit/lib/addon-fit.mjs"),
        ("LICENSE-addon-fit", "addon-fit/LICENSE"),
    ] {
        let a = std::fs::read(vendor.join(vendored)).unwrap();
        let b = std::fs::read(npm.join(package))
            .unwrap_or_else(|e| panic!("{package}: {e} (run npm ci in tests/browser)"));
        assert!(
            a == b,
            "{vendored} differs from node_modules/@xterm/{package}"
        );
    }
    let version = std::fs::read_to_string(vendor.join("VERSION")).unwrap();
    let pkg: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/browser/package.json")).unwrap(),
    )
    .unwrap();
    for name in ["@xterm/xterm", "@xterm/addon-fit"] {
        let pinned = pkg["dependencies"][name].as_str().unwrap();
        assert!(
            version.contains(&format!("{name} {pinned}\n")),
            "VERSION says {version:?}, package.json pins {name} {pinned}"
        );
        let installed: Value = serde_json::from_str(
            &std::fs::read_to_string(
                npm.join(name.trim_start_matches("@xterm/"))
                    .join("package.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(installed["version"], pinned, "{name} in node_modules");
    }
}

/// A user of this machine made for one test, allowed to use sudo with a password; removed
/// (with its sudoers entry and home) when dropped.
struct SudoUser {
    name: String,
    password: String,
    uid: u32,
    gid: u32,
    sudoers: std::path::PathBuf,
}

impl SudoUser {
    fn create() -> SudoUser {
        let name = format!("llsudo{}", std::process::id() % 100_000);
        let password = format!("Pw-{}-élève", std::process::id());
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", &name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name} (the test runs as root)");
        let mut chpasswd = Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        chpasswd
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{name}:{password}\n").as_bytes())
            .unwrap();
        assert!(chpasswd.wait().unwrap().success());
        let dir = std::path::Path::new("/etc/sudoers.d");
        std::fs::create_dir_all(dir).unwrap();
        let sudoers = dir.join(format!("lifeline-test-{name}"));
        std::fs::write(
            &sudoers,
            format!("Defaults:{name} lecture=never\n{name} ALL=(ALL) ALL\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        SudoUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
            password,
            sudoers,
        }
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// "Run as administrator" for a client that is not root: sudo asks for the password with
/// the client's own dialog in the customer's session. Typed: root's shell. Cancelled: the
/// representative hears that the customer declined, and no shell opens.
#[tokio::test(flavor = "multi_thread")]
async fn administrator_through_sudo_with_the_clients_password_dialog() {
    let art = artifacts("shell-sudo");
    let user = SudoUser::create();
    let x = Xvfb::start();
    let relay = Relay::start().await;
    stock_client(&relay);
    let rep = relay.rep_token().await;
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;
    let key = relay.new_key(&rep, "personal").await;
    let file = download_client(&relay, key["key"].as_str().unwrap(), "Zoë Client", "en").await;
    // The customer's copy, which the customer's account can run.
    let bin = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = bin.path().join(file.file_name().unwrap());
    std::fs::copy(&file, &client).unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = art.join("agent.log");
    let child = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(&client)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", format!("/home/{}", user.name))
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("DISPLAY", &x.display)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent { child, log };
    agent.wait_log("event=connected").await;
    let wid = accept_terms(&x, &agent, 10).await;
    let sid = accept_next(&relay, &rep, &mut console).await;
    agent.wait_log("event=state state=active").await;
    let (s, body) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({ "permission": "elevated_shell" }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    agent
        .wait_log("event=permission_asked permission=elevated_shell")
        .await;
    answer(&x, &wid, true).await;
    agent
        .wait_log("event=permission permission=elevated_shell change=granted")
        .await;

    // 1. The customer types the password into the client's dialog: root's shell.
    let mut t = Term::open(&relay, &rep, &sid, "elevated=true&rows=24&cols=80").await;
    let dialog = window(&x, "Administrator password").await;
    x.screenshot(&art.join("1-password-dialog.png"));
    x.xdotool(&["windowfocus", "--sync", &dialog]);
    x.xdotool(&["type", "--delay", "30", &user.password]);
    x.xdotool(&["key", "Return"]);
    let opened = t.wait_type("opened").await;
    assert_eq!(opened["elevated"], true, "{opened}");
    t.send(b"echo uid-$(id -u)-$SUDO_USER\r").await;
    t.wait(&format!("uid-0-{}", user.name)).await;
    t.json(json!({"type": "close"})).await;
    t.wait_type("closed").await;
    t.wait_closed().await;
    assert!(
        !agent.log().contains(&user.password),
        "the password is in no log"
    );

    // 2. Asked again, the customer cancels the dialog: declined, no shell.
    let mut t = Term::open(&relay, &rep, &sid, "elevated=true&rows=24&cols=80").await;
    // (The first dialog's process has ended: a visible one is the new one.)
    let dialog = window(&x, "Administrator password").await;
    x.xdotool(&["windowfocus", "--sync", &dialog]);
    x.xdotool(&["key", "Escape"]);
    let r = t.wait_type("refused").await;
    assert_eq!(r["code"], "declined", "{r}");
    assert_eq!(r["message"], "The customer declined.", "{r}");
    t.wait_closed().await;
    assert_eq!(agent.log().matches("event=shell_elevated").count(), 1);
    let transcript_dir = relay.data().join("transcripts");
    for f in std::fs::read_dir(&transcript_dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(
            !text.contains(&user.password),
            "the password is in no transcript"
        );
    }
}
