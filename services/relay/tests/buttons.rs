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

/// Makes `user` a member of `teams` (as the administrator).
async fn set_teams(relay: &Relay, admin: &str, user: &str, teams: &[&str]) {
    let r = relay
        .http
        .put(relay.url(&format!("/api/v1/jump/users/{user}/teams")))
        .bearer_auth(admin)
        .json(&json!({ "teams": teams }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A click on a button (what the installed entry does): the ticket, then a simulated agent
/// that accepts the terms.
async fn click(relay: &Relay, token: &str, name: &str) -> Ws {
    let r = relay
        .http
        .post(relay.url("/api/v1/buttons/session"))
        .json(&json!({"token": token, "name": name, "language": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let mut ws = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut ws, hello(t["ticket"].as_str().unwrap(), name)).await;
    recv_type(&mut ws, "welcome").await;
    send_json(&mut ws, json!({"type": "accept_terms"})).await;
    ws
}

/// Logs a representative out (the evaluation licence has one seat for representatives).
async fn logout(relay: &Relay, token: &str) {
    let (s, _) = relay.post(token, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(s, 204);
}

/// A team button: the request waits in the team's queue, seen live by the team's members
/// (and administrators) only; a representative outside the team can neither see nor take it.
/// (One representative at a time: the relay runs on the one-seat evaluation licence.)
#[tokio::test]
async fn team_button_queues_to_the_team_only() {
    let relay = Relay::start().await;
    relay.add_user("rep2", "rep", "Rita Team", REP_PASSWORD);
    relay.add_user("rep3", "rep", "Otto Outside", REP_PASSWORD);
    let admin = relay.token("admin", ADMIN_PASSWORD).await;

    // A team nobody names yet is refused; a team name alone is not a queue.
    for (body, needle) in [
        (
            json!({"queue": "team", "team": "ops", "valid_minutes": 60}),
            "no team called `ops`",
        ),
        (json!({"queue": "team", "valid_minutes": 60}), "\"team\""),
        (
            json!({"queue": "general", "team": "ops", "valid_minutes": 60}),
            "goes only with",
        ),
    ] {
        let (s, v) = create(&relay, &admin, body).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }

    set_teams(&relay, &admin, "rep2", &["ops"]).await;
    let (s, targets) = relay.get(&admin, "/api/v1/buttons/targets").await;
    assert_eq!(s, 200, "{targets}");
    assert_eq!(targets["teams"], json!([{"name": "ops", "members": 1}]));
    assert!(
        targets["reps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["username"] == "rep3")
    );

    let (s, button) = create(
        &relay,
        &admin,
        json!({"label": "Ops desk", "queue": "team", "team": "ops", "valid_minutes": 120}),
    )
    .await;
    assert_eq!(s, 200, "{button}");
    assert!(button.get("note").is_none(), "{button}");
    let token = button["token"].as_str().unwrap().to_string();

    // A representative outside the team, with the console open, and an administrator.
    let outsider = relay.token("rep3", REP_PASSWORD).await;
    let (s, _) = relay.get(&outsider, "/api/v1/buttons/targets").await;
    assert_eq!(s, 403);
    let mut seen_by_outsider = ws_connect(&relay.addr, "/ws/console", Some(&outsider)).await;
    recv_type(&mut seen_by_outsider, "snapshot").await;
    let mut seen_by_admin = ws_connect(&relay.addr, "/ws/console", Some(&admin)).await;
    recv_type(&mut seen_by_admin, "snapshot").await;

    let _first = click(&relay, &token, "Tess").await;
    let up = recv_type(&mut seen_by_admin, "upsert").await;
    assert_eq!(up["entry"]["queue"], "team", "{up}");
    assert_eq!(up["entry"]["team"], "ops", "{up}");
    let sid = up["entry"]["session_id"].as_str().unwrap().to_string();

    // The outsider heard nothing of it (the next thing it hears is a later general session),
    // finds it in no snapshot and can neither take, read nor end it.
    let (_general, _) = join(&relay, &outsider, "general", "Gina").await;
    let next = recv_json(&mut seen_by_outsider).await.unwrap();
    assert_eq!(next["type"], "upsert", "{next}");
    assert_eq!(next["entry"]["queue"], "general", "{next}");
    let mut fresh = ws_connect(&relay.addr, "/ws/console", Some(&outsider)).await;
    let snap = recv_type(&mut fresh, "snapshot").await;
    assert!(!snap.to_string().contains(&sid), "{snap}");
    let (s, _) = relay
        .post(
            &outsider,
            &format!("/api/v1/sessions/{sid}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404, "a session of another queue is unknown to them");
    let (s, _) = relay
        .get(&outsider, &format!("/api/v1/sessions/{sid}"))
        .await;
    assert_eq!(s, 404);
    let (s, _) = relay
        .post(&outsider, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(s, 404);
    // Nor hand out session keys for a team that is not theirs.
    let (s, v) = relay
        .post(
            &outsider,
            "/api/v1/session-keys",
            json!({"queue": "team", "team": "ops"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    drop((seen_by_outsider, fresh));
    logout(&relay, &outsider).await;

    // A member of the team: the waiting session in the snapshot, a new one live.
    let member = relay.token("rep2", REP_PASSWORD).await;
    let (s, me) = relay.get(&member, "/api/v1/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["teams"], json!(["ops"]));
    let mut seen_by_member = ws_connect(&relay.addr, "/ws/console", Some(&member)).await;
    let snap = recv_type(&mut seen_by_member, "snapshot").await;
    assert!(snap.to_string().contains(&sid), "{snap}");
    let _second = click(&relay, &token, "Theo").await;
    let up = recv_type(&mut seen_by_member, "upsert").await;
    assert_eq!(up["entry"]["team"], "ops", "{up}");
    assert_eq!(up["entry"]["customer_name"], "Theo", "{up}");

    // The member takes the first.
    let (s, detail) = relay.get(&member, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s, 200);
    assert_eq!(detail["team"], "ops", "{detail}");
    let (s, v) = relay
        .post(
            &member,
            &format!("/api/v1/sessions/{sid}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // A member can hand out a session key for the team.
    let (s, v) = relay
        .post(
            &member,
            "/api/v1/session-keys",
            json!({"queue": "team", "team": "ops"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Out of the team: the member's open console is sent a fresh snapshot at once, without
    // the team's waiting request (the session they took stays theirs).
    set_teams(&relay, &admin, "rep2", &[]).await;
    let snap = recv_type(&mut seen_by_member, "snapshot").await;
    assert!(!snap.to_string().contains("Theo"), "{snap}");
    assert!(snap.to_string().contains(&sid), "{snap}");

    // A known team without members is allowed, with a note.
    let (s, button) = create(
        &relay,
        &admin,
        json!({"queue": "team", "team": "ops", "valid_minutes": 60}),
    )
    .await;
    assert_eq!(s, 200, "{button}");
    assert!(
        button["note"]
            .as_str()
            .unwrap()
            .contains("no active member"),
        "{button}"
    );
    let (_, list) = relay.get(&admin, "/api/v1/buttons").await;
    assert_eq!(list[0]["queue"], "team");
    assert_eq!(list[0]["team"], "ops");
    assert_eq!(list[1]["sessions"], 2);

    relay
        .assert_documented(&[
            "/api/v1/buttons",
            "/api/v1/buttons/targets",
            "/api/v1/jump/deploy-keys/{id}",
        ])
        .await;
}

/// Deployment keys: listed with their uses left, revoked by an administrator (audited), and a
/// revoked key registers nothing.
#[tokio::test]
async fn deployment_keys_are_listed_and_revoked() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let rep = relay.rep_token().await;
    let (s, key) = relay
        .post(
            &admin,
            "/api/v1/jump/deploy-keys",
            json!({"label": "Front desk", "group": "general", "mode": "active", "valid_minutes": 120, "uses": 3}),
        )
        .await;
    assert_eq!(s, 200, "{key}");
    let id = key["id"].as_str().unwrap().to_string();
    let (s, list) = relay.get(&admin, "/api/v1/jump/deploy-keys").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["uses_left"], 3);
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["label"], "Front desk");
    let (s, _) = relay.get(&rep, "/api/v1/jump/deploy-keys").await;
    assert_eq!(s, 403);

    let delete = |token: &str, id: &str| {
        relay
            .http
            .delete(relay.url(&format!("/api/v1/jump/deploy-keys/{id}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(delete(&rep, &id).await.unwrap().status(), 403);
    assert_eq!(delete(&admin, &id).await.unwrap().status(), 204);
    assert_eq!(delete(&admin, &id).await.unwrap().status(), 404);
    assert_eq!(delete(&admin, "not-an-id").await.unwrap().status(), 404);
    let (_, list) = relay.get(&admin, "/api/v1/jump/deploy-keys").await;
    assert_eq!(list[0]["state"], "revoked");
    let r = relay
        .http
        .get(relay.url(&format!(
            "/jump/installer/{}/linux-x86_64",
            key["key"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, audit) = relay
        .get(&admin, "/api/v1/audit?action=jump.deploy_key.revoke")
        .await;
    assert!(audit.to_string().contains("\"ok\""), "{audit}");
    assert!(audit.to_string().contains("\"unknown\""), "{audit}");
}

/// A database made by the migrations before team queues keeps every row through
/// `0007_team_queues.sql`, references stay whole, and the new CHECKs hold.
#[tokio::test]
async fn team_queue_migration_keeps_existing_rows() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let pool = sqlx::SqlitePool::connect_with(opts.foreign_keys(true))
            .await
            .unwrap();
        let mut old = sqlx::migrate::Migrator::new(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations"
        )))
        .await
        .unwrap();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 6)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        assert_eq!(old.migrations.len(), 6);
        old.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO users VALUES (1, 'rep1', 'Rep', 'rep', 'x', 1, 0, 0)",
            "INSERT INTO session_keys VALUES ('1234567', 'lt', 1, 'personal', 0, 9, 5)",
            "INSERT INTO tickets VALUES ('t1', '1234567', 'personal', 1, 'Ann', 'en', 0, 9, 5, 's1')",
            "INSERT INTO tickets VALUES ('t2', NULL, 'general', NULL, 'Bob', 'fr', 0, 9, NULL, NULL)",
            "INSERT INTO sessions (id, ticket_id, queue, owner_id, state, customer_name, computer,
               platform, language, remote_addr, resume_token_hash, created_at, accepted_by)
             VALUES ('s1', 't1', 'personal', 1, 'ended', 'Ann', 'pc', 'Linux', 'en', '::1', 'h', 3, 1)",
            "INSERT INTO messages VALUES (1, 's1', 'customer', 'Ann', 'hello', 4)",
            "INSERT INTO session_events VALUES (1, 's1', 4, 'accepted', 'Rep')",
            "INSERT INTO session_stream_counters (session_id, updated_at) VALUES ('s1', 5)",
            "INSERT INTO support_buttons (id, token_hash, label, queue, rep_id, expires_at, created_at, sessions)
             VALUES ('b1', 'th', 'Desk', 'personal', 1, 99, 0, 2)",
            "INSERT INTO jump_deploy_keys VALUES ('kh', 'k', 'team:ops', 'active', 99, 4, 1, 0)",
            "INSERT INTO user_teams VALUES (1, 'ops')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let db = lifeline_relay::db::Db::open(&path).await.unwrap();
    let one = |sql: &'static str| sqlx::query(sql).fetch_one(&db.pool);
    for (table, n) in [
        ("session_keys", 1),
        ("tickets", 2),
        ("sessions", 1),
        ("messages", 1),
        ("session_events", 1),
        ("session_stream_counters", 1),
        ("support_buttons", 1),
        ("jump_deploy_keys", 1),
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let got: i64 = sqlx::query(&sql).fetch_one(&db.pool).await.unwrap().get(0);
        assert_eq!(got, n, "{table}");
    }
    let s = db.session("s1").await.unwrap().unwrap();
    assert_eq!(
        (s.queue.as_str(), s.team, s.accepted_by),
        ("personal", None, Some(1))
    );
    let r = one("SELECT label, sessions, team, rep_id FROM support_buttons")
        .await
        .unwrap();
    assert_eq!(r.get::<String, _>("label"), "Desk");
    assert_eq!(r.get::<i64, _>("sessions"), 2);
    assert_eq!(r.get::<Option<String>, _>("team"), None);
    let t = db.ticket("t2").await.unwrap().unwrap();
    assert_eq!(
        (t.queue.as_str(), t.customer_name.as_str()),
        ("general", "Bob")
    );
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        dangling.is_empty(),
        "dangling references after the migration"
    );
    let indexes: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    for i in ["sessions_state", "sessions_accepted_by", "sessions_team"] {
        assert!(indexes.iter().any(|n| n == i), "{i} in {indexes:?}");
    }
    // The team column goes with the team queue, and only with it.
    for (queue, team, ok) in [
        ("team", Some("ops"), true),
        ("team", None, false),
        ("general", Some("ops"), false),
    ] {
        let r = sqlx::query(
            "INSERT INTO tickets (id, queue, team, created_at, expires_at) VALUES (?, ?, ?, 0, 9)",
        )
        .bind(format!("x-{queue}-{team:?}"))
        .bind(queue)
        .bind(team)
        .execute(&db.pool)
        .await;
        assert_eq!(r.is_ok(), ok, "{queue} {team:?}: {r:?}");
    }
    // The team queue is known from the jump tables.
    assert_eq!(db.team_known("ops").await.unwrap(), (1, true));
    assert_eq!(db.team_known("nobody").await.unwrap(), (0, false));
}
