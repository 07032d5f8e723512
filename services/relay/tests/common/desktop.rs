//! The customer's side of end-to-end tests: a private X server (Xvfb) driven with xdotool,
//! the client downloaded from the relay's portal, and the running client with its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Relay, relay_bin, wait_for};

pub use lifeline_test_support::Xvfb;

/// Waits for a visible window whose name contains `name`.
pub async fn window(x: &Xvfb, name: &str) -> String {
    wait_for(Duration::from_secs(30), "the client's window", async || {
        x.find_window(name)
    })
    .await
}

pub fn agent_bin() -> PathBuf {
    let p = std::env::var_os("LIFELINE_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| relay_bin().with_file_name("lifeline-agent"));
    assert!(
        p.is_file(),
        "{} is missing: build every binary first (cargo xtask test does)",
        p.display()
    );
    p
}

/// Puts this build's client into the relay's store, like the image build does.
pub fn stock_client(relay: &Relay) {
    let dir = relay.clients().join("linux-x86_64");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(agent_bin(), dir.join("lifeline-agent")).unwrap();
}

/// The customer's steps on the portal: key → download page → file. Returns the file.
pub async fn download_client(relay: &Relay, key: &str, name: &str, lang: &str) -> PathBuf {
    let r = relay
        .http
        .post(relay.url("/start"))
        .form(&[("key", key), ("name", name), ("lang", lang)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = r.headers()["location"].to_str().unwrap().to_string();
    let html = relay
        .http
        .get(relay.url(&page))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href = format!("{page}/linux-x86_64");
    assert!(
        html.contains(&href),
        "the download page links the Linux client"
    );
    let resp = relay.http.get(relay.url(&href)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    let file_name = cd
        .split("filename=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let bytes = resp.bytes().await.unwrap();
    let path = relay.dir.path().join(file_name);
    std::fs::write(&path, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Downloads the Linux program from a list of `[platform, address]` pairs (a deployment
/// key's installers, a support button's downloads) into the relay's folder as `name`,
/// executable.
pub async fn download_linux(relay: &Relay, links: &serde_json::Value, name: &str) -> PathBuf {
    let url = links
        .as_array()
        .expect("a list of [platform, address]")
        .iter()
        .find(|p| p[0] == "linux-x86_64")
        .expect("a Linux download")[1]
        .as_str()
        .unwrap()
        .to_string();
    let resp = relay.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let path = relay.dir.path().join(name);
    std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn run(file: &Path, x: &Xvfb, log: PathBuf) -> Agent {
        Self::run_in(file, x, None, log)
    }

    /// Runs the client with `home` as its home folder (what file transfer shares).
    pub fn run_in(file: &Path, x: &Xvfb, home: Option<&Path>, log: PathBuf) -> Agent {
        let mut cmd = Command::new(file);
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
        let child = cmd
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_log(&self, needle: &str) {
        self.wait_log_for(needle, Duration::from_secs(30)).await;
    }

    pub async fn wait_log_for(&self, needle: &str, limit: Duration) {
        let log = self.log.clone();
        let found = tokio::time::timeout(limit, async {
            loop {
                if std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(needle)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "agent log never showed `{needle}`:\n{}",
            self.log()
        );
    }
}

/// Accepts the terms in the client's window (Return, up to `tries` times half a second
/// apart, until the client logs it); returns the window's id.
pub async fn accept_terms(x: &Xvfb, agent: &Agent, tries: usize) -> String {
    let mut wid = window(x, "Support").await;
    for _ in 0..tries {
        wid = window(x, "Support").await;
        if x.try_xdotool(&["windowfocus", "--sync", &wid]) {
            x.try_xdotool(&["key", "Return"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if agent.log().contains("event=terms_accepted") {
            break;
        }
    }
    wid
}

/// The representative accepts the next session that shows in `console`'s queue.
pub async fn accept_next(relay: &Relay, rep: &str, console: &mut super::Ws) -> String {
    let up = super::recv_type(console, "upsert").await;
    let sid = up["entry"]["session_id"].as_str().unwrap().to_string();
    let (s, _) = relay
        .post(
            rep,
            &format!("/api/v1/sessions/{sid}/accept"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200);
    sid
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The representative's side of a test, in Chromium: a script of `tests/browser` run against
/// the relay for one accepted session, while the Rust test plays the customer. The two take
/// turns through `<name>.done` files in [`RepScript::sync`].
pub struct RepScript {
    child: tokio::process::Child,
    out: PathBuf,
    /// The folder of the turn-taking files.
    pub sync: PathBuf,
}

impl RepScript {
    /// Starts `tests/browser/<name>` as `rep1` on `session`, with `extra` environment
    /// variables; its output goes to `<art>/<name>.log`.
    pub fn start(
        relay: &Relay,
        name: &str,
        session: &str,
        art: &Path,
        extra: &[(&str, &str)],
    ) -> RepScript {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(
            root.join("tests/browser/node_modules/playwright-core")
                .is_dir(),
            "browser-test packages are missing: run `cargo xtask test` (it runs npm ci in tests/browser)"
        );
        let sync = art.join(format!("{name}.sync"));
        let _ = std::fs::remove_dir_all(&sync);
        std::fs::create_dir_all(&sync).unwrap();
        let out = art.join(format!("{name}.log"));
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(root.join("tests/browser").join(name))
            .env("LIFELINE_URL", &relay.url)
            .env("LIFELINE_REP_USER", "rep1")
            .env("LIFELINE_REP_PASSWORD", super::REP_PASSWORD)
            .env("LIFELINE_SESSION", session)
            .env("LIFELINE_SYNC", &sync)
            .env("LIFELINE_ARTIFACTS", art)
            .env("CHROMIUM", "/usr/bin/chromium")
            .envs(extra.iter().copied())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .expect("node must be installed (cargo xtask test installs it)");
        RepScript { child, out, sync }
    }

    /// What the script printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for the script's end (at most `limit`): whether every step passed, and its log.
    pub async fn finished(mut self, limit: Duration) -> (bool, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the browser script ends")
            .unwrap();
        let log = self.log();
        println!("{log}");
        (status.success() && log.contains(" passed, 0 failed"), log)
    }

    /// Waits for the script's end (at most `limit`) and asserts every step passed.
    pub async fn passed(self, limit: Duration) {
        let (ok, log) = self.finished(limit).await;
        assert!(ok, "browser script failed:\n{log}");
    }
}

/// A one-shot session set up as a customer and a representative do it: the relay with the
/// stock client in its store, `rep1`'s live console, a key, the client downloaded through the
/// portal and run on `x` (with `home` as its home folder, if given), the terms accepted in its
/// window, and the session accepted by the rep.
pub struct CustomerSession {
    pub relay: Relay,
    pub rep: String,
    pub console: super::Ws,
    pub file: PathBuf,
    pub agent: Agent,
    /// The client's window.
    pub wid: String,
    pub sid: String,
}

impl CustomerSession {
    pub async fn start(x: &Xvfb, art: &Path, home: Option<&Path>) -> CustomerSession {
        // Generous deadlines: these steps take seconds on a loaded machine, and a deadline
        // costs nothing when it is not reached.
        let wait = Duration::from_secs(60);
        let relay = Relay::start().await;
        stock_client(&relay);
        let rep = relay.rep_token().await;
        let mut console = super::ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
        super::recv_type(&mut console, "snapshot").await;
        let key = relay.new_key(&rep, "personal").await;
        let file = download_client(&relay, key["key"].as_str().unwrap(), "Zoë Client", "en").await;
        let agent = Agent::run_in(&file, x, home, art.join("agent.log"));
        agent.wait_log_for("event=connected", wait).await;
        let wid = accept_terms(x, &agent, 20).await;
        let sid = accept_next(&relay, &rep, &mut console).await;
        agent.wait_log_for("event=state state=active", wait).await;
        CustomerSession {
            relay,
            rep,
            console,
            file,
            agent,
            wid,
            sid,
        }
    }
}
