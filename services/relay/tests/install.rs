//! Installing from a running session, end to end: the real downloaded client under Xvfb,
//! the representative's offers through the API, the customer's answers typed into the
//! client's window. A declined offer installs nothing and its key or button is withdrawn; an
//! accepted support button lands in the customer's menu and desktop; an accepted jump client
//! registers with its own key pair and — this machine has no systemd — is started as a
//! service process of its own, online in the jump list. Everything is a session event.

mod common;

use std::path::Path;
use std::time::Duration;

use common::desktop::*;
use common::*;
use serde_json::{Value, json};

/// Where a jump client installed by root goes (see `lifeline_agent::jump::install`).
const JUMP_DIR: &str = "/opt/lifeline-jump";

/// Stops the jump service started by the test and removes its folder, however the test ends.
struct JumpCleanup;

impl Drop for JumpCleanup {
    fn drop(&mut self) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(JUMP_DIR)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(JUMP_DIR);
    }
}

/// Starts an offer (the call answers once the customer has).
fn offer(relay: &Relay, rep: &str, sid: &str, what: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (http, url, rep) = (
        relay.http.clone(),
        relay.url(&format!("/api/v1/sessions/{sid}/install")),
        rep.to_string(),
    );
    let body = json!({ "what": what });
    tokio::spawn(async move {
        let r = http
            .post(url)
            .bearer_auth(rep)
            .timeout(Duration::from_secs(150))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    })
}

fn entries(home: &Path) -> usize {
    std::fs::read_dir(home.join(".local/share/applications"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn offers_are_asked_and_install_what_the_customer_allows() {
    assert!(
        nix_is_root(),
        "this test installs a jump client as root, like an administrator's computer"
    );
    drop(JumpCleanup); // what an earlier run may have left
    let _cleanup = JumpCleanup;
    let art = artifacts("install");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("Desktop")).unwrap();
    let CustomerSession {
        relay,
        rep,
        agent,
        wid,
        sid,
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, Some(home.path())).await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let press = |keys: &[&str]| {
        x.xdotool(&["windowfocus", "--sync", &wid]);
        x.xdotool(&[&["key", "--delay", "120"][..], keys].concat());
    };
    let asked = |n: usize| {
        (agent
            .log()
            .matches("event=question_shown question=install")
            .count()
            >= n)
            .then_some(())
    };

    // 1. A support button, declined (the focused answer is "No"): nothing installed, and
    //    the button made for the offer no longer works.
    let call = offer(&relay, &rep, &sid, "support_button");
    wait_for(Duration::from_secs(60), "the first offer", async || {
        asked(1)
    })
    .await;
    x.screenshot(&art.join("1-offer.png"));
    press(&["space"]);
    let (s, r) = call.await.unwrap();
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(entries(home.path()), 0);
    let (_, buttons) = relay.get(&admin, "/api/v1/buttons").await;
    assert_eq!(buttons[0]["state"], "revoked", "{buttons}");

    // 2. Offered again and allowed (Tab to "Allow"): in the menu and on the desktop.
    let call = offer(&relay, &rep, &sid, "support_button");
    wait_for(Duration::from_secs(60), "the second offer", async || {
        asked(2)
    })
    .await;
    press(&["Tab", "space"]);
    let (s, r) = call.await.unwrap();
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outcome"], "installed", "{r}");
    assert_eq!(entries(home.path()), 1);
    assert_eq!(
        std::fs::read_dir(home.path().join("Desktop"))
            .unwrap()
            .count(),
        1
    );
    let (_, buttons) = relay.get(&admin, "/api/v1/buttons").await;
    assert_eq!(buttons[0]["state"], "active", "{buttons}");
    assert_eq!(buttons[0]["rep"], "rep1", "{buttons}");

    // 3. A jump client, allowed: registered, started, online in the representative's
    //    personal group.
    let call = offer(&relay, &rep, &sid, "jump_client");
    wait_for(Duration::from_secs(60), "the third offer", async || {
        asked(3)
    })
    .await;
    press(&["Tab", "space"]);
    let (s, r) = call.await.unwrap();
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outcome"], "installed", "{r}");
    assert!(r["message"].as_str().unwrap().contains("no systemd"), "{r}");
    assert!(Path::new(JUMP_DIR).join("jump.key").is_file());
    let client = wait_for(
        Duration::from_secs(60),
        "the jump client online",
        async || {
            let (_, list) = relay.get(&rep, "/api/v1/jump/clients").await;
            list.as_array()?
                .iter()
                .find(|c| c["online"] == true)
                .cloned()
        },
    )
    .await;
    assert_eq!(client["group"], "personal:rep1", "{client}");
    x.screenshot(&art.join("3-installed.png"));

    // The session report tells all of it.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["install_offered", "install_refused", "installed"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "installed").count(),
        2,
        "{kinds:?}"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
