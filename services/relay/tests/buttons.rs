//! Support buttons with real processes: an administrator creates a button for a
//! representative's queue, the button is **downloaded from the relay** and installed for a
//! user (a temporary home folder), its desktop entry's command is run on a private X server,
//! the request lands in that representative's queue; once revoked, the same click says the
//! button expired and offers the portal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::desktop::*;
use common::*;
use serde_json::{Value, json};

async fn create(relay: &Relay, admin: &str, body: Value) -> (u16, Value) {
    relay.post(admin, "/api/v1/buttons", body).await
}

/// The program a desktop entry starts (its `Exec="<path>" --button`).
fn entry_program(entry: &str) -> PathBuf {
    let line = entry
        .lines()
        .find_map(|l| l.strip_prefix("Exec=\""))
        .expect("the entry has Exec");
    let (path, rest) = line.split_once('"').unwrap();
    assert_eq!(rest, " --button");
    PathBuf::from(path)
}

fn the_entry(home: &Path) -> (PathBuf, String) {
    let apps = home.join(".local/share/applications");
    let entry = std::fs::read_dir(&apps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "desktop"))
        .expect("a desktop entry");
    let text = std::fs::read_to_string(&entry).unwrap();
    (entry, text)
}

#[tokio::test]
async fn button_queues_to_its_representative_until_revoked() {
    let art = artifacts("button");
    let relay = Relay::start().await;
    stock_client(&relay);
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;

    // Bad requests are refused with a sentence, and only administrators create buttons.
    for (body, needle) in [
        (
            json!({"queue": "general", "valid_minutes": 10}),
            "valid_minutes",
        ),
        (
            json!({"queue": "team:ops", "valid_minutes": 60}),
            "queue must be",
        ),
        (
            json!({"queue": "rep:nobody", "valid_minutes": 60}),
            "nobody",
        ),
        (
            json!({"queue": "general", "valid_minutes": 6 * 366 * 24 * 60}),
            "five years",
        ),
    ] {
        let (s, v) = create(&relay, &admin, body).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let (s, _) = create(
        &relay,
        &rep,
        json!({"queue": "general", "valid_minutes": 60}),
    )
    .await;
    assert_eq!(s, 403);

    let (s, button) = create(
        &relay,
        &admin,
        json!({"label": "Library desks", "queue": "rep:rep1", "valid_minutes": 24 * 60}),
    )
    .await;
    assert_eq!(s, 200, "{button}");
    let id = button["id"].as_str().unwrap().to_string();

    // Installed for a user: the entry in the menu and on the desktop, the program private.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("Desktop")).unwrap();
    let installer = download_linux(&relay, &button["downloads"], "lifeline-support-button").await;
    let out = Command::new(&installer)
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("DISPLAY")
        .env("LC_ALL", "de_DE.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Hilfe von"), "{said}");
    let (entry, text) = the_entry(home.path());
    assert!(text.contains("Name=Get help from"), "{text}");
    assert!(
        home.path()
            .join("Desktop")
            .join(entry.file_name().unwrap())
            .is_file()
    );
    let program = entry_program(&text);
    assert!(program.starts_with(home.path()));
    assert!(!text.contains(button["token"].as_str().unwrap()));

    // A click: the client opens and the request is in rep1's personal queue.
    let x = Xvfb::start();
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;
    let agent = {
        let log = art.join("click.log");
        let child = Command::new(&program)
            .arg("--button")
            .env("HOME", home.path())
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "info")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    };
    agent.wait_log("event=button_session").await;
    agent.wait_log("event=connected").await;
    accept_terms(&x, &agent, 20).await;
    let up = recv_type(&mut console, "upsert").await;
    assert_eq!(up["entry"]["queue"], "personal", "{up}");
    let sid = up["entry"]["session_id"].as_str().unwrap().to_string();
    let (s, _) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    assert_eq!(s, 200);
    agent.wait_log("event=state state=active").await;
    let (s, _) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(s, 200);
    drop(agent);

    let (s, list) = relay.get(&admin, "/api/v1/buttons").await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["rep"], "rep1");
    assert_eq!(list[0]["sessions"], 1);

    // Revoked: the same click says so and leads to the portal; no session is made.
    let r = relay
        .http
        .delete(relay.url(&format!("/api/v1/buttons/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let expired = Command::new(&program)
        .arg("--button")
        .env("HOME", home.path())
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    assert_eq!(expired.status.code(), Some(3), "{expired:?}");
    assert!(String::from_utf8_lossy(&expired.stderr).contains("expired"));
    let agent = {
        let log = art.join("expired.log");
        let child = Command::new(&program)
            .arg("--button")
            .env("HOME", home.path())
            .env("DISPLAY", &x.display)
            .env("LC_ALL", "fr_FR.UTF-8")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    };
    agent.wait_log("event=button_expired").await;
    let wid = window(&x, "Support").await;
    x.screenshot(&art.join("expired-fr.png"));
    // Tab from "Close" to the portal button, then press it.
    x.try_xdotool(&["windowfocus", "--sync", &wid]);
    x.try_xdotool(&["key", "Tab", "space"]);
    agent.wait_log("event=open_portal").await;
    assert!(
        agent.log().contains(&format!("{}/", relay.url)),
        "{}",
        agent.log()
    );
    let r = relay
        .http
        .get(relay.url(&format!(
            "/button/{}/linux-x86_64",
            button["token"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, list) = relay.get(&admin, "/api/v1/buttons").await;
    assert_eq!(list[0]["state"], "revoked");
    assert_eq!(list[0]["sessions"], 1);

    let (_, audit) = relay.get(&admin, "/api/v1/audit?limit=200").await;
    let seen = |action: &str, outcome: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == action && a["outcome"] == outcome)
    };
    for (action, outcome) in [
        ("button.create", "ok"),
        ("button.download", "ok"),
        ("button.session", "ok"),
        ("button.revoke", "ok"),
        ("button.session", "expired"),
    ] {
        assert!(seen(action, outcome), "audit {action} {outcome}: {audit}");
    }
}
