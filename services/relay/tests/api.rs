//! The relay as a real process: one-shot sessions through the API and simulated agents,
//! bad input of every kind, and a SIGKILL restart.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Three customers wait in one queue; when the first two are taken, the third learns its
/// new place (both departures together when they come close enough).
#[tokio::test]
async fn places_move_up_when_someone_ahead_is_taken() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let mut agents = Vec::new();
    for (i, name) in ["Ann", "Bob", "Cy"].into_iter().enumerate() {
        let key = relay.new_key(&rep, "personal").await;
        let t = relay.ticket(key["key"].as_str().unwrap(), name).await;
        let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
        send_json(
            &mut agent,
            hello(t["ticket"]["ticket"].as_str().unwrap(), "x"),
        )
        .await;
        let sid = recv_type(&mut agent, "welcome").await["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        send_json(&mut agent, json!({"type": "accept_terms"})).await;
        assert_eq!(recv_type(&mut agent, "queue").await["position"], i + 1);
        agents.push((sid, agent));
    }
    for (sid, _) in &agents[..2] {
        let (s, _) = relay
            .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
            .await;
        assert_eq!(s, 200);
    }
    let last = &mut agents[2].1;
    let mut places = Vec::new();
    while places.last() != Some(&1) {
        places.push(recv_type(last, "queue").await["position"].as_u64().unwrap());
    }
    assert!(places == [1] || places == [2, 1], "{places:?}");
}

#[tokio::test]
async fn one_shot_session_through_the_api() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    assert_eq!(recv_json(&mut console).await.unwrap()["type"], "hello");
    assert_eq!(recv_json(&mut console).await.unwrap()["entries"], json!([]));

    let key = relay.new_key(&rep, "personal").await;
    assert_eq!(key["key"].as_str().unwrap().len(), 7);
    assert!(key["url"].as_str().unwrap().contains("/k/"));
    assert!(
        key["email_body"]
            .as_str()
            .unwrap()
            .contains(key["url"].as_str().unwrap())
    );
    let t = relay.ticket(key["key"].as_str().unwrap(), "Élodie").await;
    assert_eq!(t["ticket"]["cert_sha256"], relay.pin.as_str());
    let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(
        &mut agent,
        hello(t["ticket"]["ticket"].as_str().unwrap(), "ignored"),
    )
    .await;
    let welcome = recv_type(&mut agent, "welcome").await;
    assert_eq!(welcome["state"], "terms");
    assert_eq!(welcome["rep_name"], "Rémi Rep");
    let sid = welcome["session_id"].as_str().unwrap().to_string();
    // Not in any queue before the terms are accepted.
    assert_eq!(
        relay.get(&rep, "/api/v1/queues").await.1["entries"],
        json!([])
    );
    send_json(&mut agent, json!({"type": "accept_terms"})).await;
    assert_eq!(recv_type(&mut agent, "queue").await["position"], 1);
    let up = recv_type(&mut console, "upsert").await;
    assert_eq!(up["entry"]["customer_name"], "Élodie");
    assert_eq!(up["entry"]["queue"], "personal");
    let (_, q) = relay.get(&rep, "/api/v1/queues").await;
    assert_eq!(q["entries"][0]["session_id"], sid.as_str());

    let (s, d) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["state"], "active");
    assert_eq!(
        recv_type(&mut agent, "rep_joined").await["name"],
        "Rémi Rep"
    );
    // A second accept is a conflict, not a crash.
    assert_eq!(
        relay
            .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
            .await
            .0,
        409
    );

    let (s, _) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "Bonjour"}),
        )
        .await;
    assert_eq!(s, 200);
    let chat = recv_type(&mut agent, "chat").await;
    assert_eq!(
        (chat["from"].as_str(), chat["text"].as_str()),
        (Some("rep"), Some("Bonjour"))
    );
    send_json(
        &mut agent,
        json!({"type": "chat", "text": "Merci, Grüße \u{1b}[31m"}),
    )
    .await;
    let echo = recv_type(&mut console, "chat").await;
    assert_eq!(
        (echo["from"].as_str(), echo["text"].as_str()),
        (Some("rep"), Some("Bonjour"))
    );
    let c = recv_type(&mut console, "chat").await;
    assert_eq!(c["from"], "customer");
    assert_eq!(
        c["text"], "Merci, Grüße [31m",
        "escape characters are stripped"
    );
    send_json(&mut agent, json!({"type": "end", "reason": ""})).await;
    assert_eq!(recv_type(&mut agent, "ended").await["by"], "customer");
    assert_eq!(
        recv_type(&mut console, "ended").await["session_id"],
        sid.as_str()
    );

    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(d["state"], "ended");
    assert_eq!(d["ended_by"], "customer");
    let bodies: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Bonjour", "Merci, Grüße [31m"]);
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    for k in ["client_connected", "terms_accepted", "accepted", "ended"] {
        assert!(kinds.contains(&k), "missing event {k} in {kinds:?}");
    }
    let (_, recent) = relay.get(&rep, "/api/v1/sessions").await;
    assert_eq!(recent["sessions"][0]["id"], sid.as_str());
    relay
        .assert_documented(&[
            "/api/v1/auth/token",
            "/api/v1/session-keys",
            "/api/v1/queues",
            "/api/v1/sessions/{id}/accept",
            "/api/v1/sessions/{id}/messages",
            "/api/v1/sessions/{id}",
            "/api/v1/sessions/{id}/end",
            "/api/v1/portal/tickets",
        ])
        .await;
}

async fn redeem(relay: &Relay, key: &str) -> (u16, Value) {
    let r = relay
        .http
        .post(relay.url("/api/v1/portal/tickets"))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn wrong_expired_and_used_keys_and_tickets() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (s, v) = redeem(&relay, "12345").await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("exactly 7 digits"));
    let key = relay.new_key(&rep, "general").await;
    let k = key["key"].as_str().unwrap();
    let wrong = format!("{:07}", (k.parse::<u32>().unwrap() + 1) % 10_000_000);
    let (s, v) = redeem(&relay, &wrong).await;
    assert_eq!(s, 404);
    assert!(v["message"].as_str().unwrap().contains("not valid"));
    let (s, t) = redeem(&relay, &format!("{} {}", &k[..3], &k[3..])).await;
    assert_eq!(s, 200, "{t}");
    let (s, v) = redeem(&relay, k).await;
    assert_eq!(s, 409);
    assert!(v["message"].as_str().unwrap().contains("already been used"));

    // Expire a key by moving its expiry into the past in the database.
    let key2 = relay.new_key(&rep, "general").await;
    let db = lifeline_relay::db::Db::open(&relay.data().join("relay.db"))
        .await
        .unwrap();
    sqlx::query("UPDATE session_keys SET expires_at = 1 WHERE key = ?")
        .bind(key2["key"].as_str().unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    let (s, v) = redeem(&relay, key2["key"].as_str().unwrap()).await;
    assert_eq!(s, 409);
    assert!(v["message"].as_str().unwrap().contains("expired"));

    // A ticket works once; a forged one never; an expired one is refused.
    let ticket = t["ticket"]["ticket"].as_str().unwrap();
    let mut a = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut a, hello(ticket, "A")).await;
    assert_eq!(recv_type(&mut a, "welcome").await["state"], "terms");
    let mut b = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut b, hello(ticket, "B")).await;
    let r = recv_type(&mut b, "refused").await;
    assert_eq!(r["code"], "ticket_used");
    let (payload, sig) = ticket.split_once('.').unwrap();
    let forged = format!("{payload}.{}", sig.chars().rev().collect::<String>());
    let mut c = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut c, hello(&forged, "C")).await;
    assert_eq!(recv_type(&mut c, "refused").await["code"], "ticket_invalid");
    let key3 = relay.new_key(&rep, "general").await;
    let (_, t3) = redeem(&relay, key3["key"].as_str().unwrap()).await;
    sqlx::query("UPDATE tickets SET expires_at = 1 WHERE id = ?")
        .bind(t3["ticket_id"].as_str().unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    let mut d = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut d, hello(t3["ticket"]["ticket"].as_str().unwrap(), "D")).await;
    let r = recv_type(&mut d, "refused").await;
    assert_eq!(r["code"], "ticket_expired");
    assert!(r["message"].as_str().unwrap().contains("expired"));
    let mut e = ws_connect(&relay.addr, "/ws/agent", None).await;
    let mut h = hello(ticket, "E");
    h["version"]["major"] = json!(2);
    send_json(&mut e, h).await;
    let r = recv_type(&mut e, "refused").await;
    assert_eq!(r["code"], "incompatible_version");
    assert!(r["message"].as_str().unwrap().contains("update the box"));
}

#[tokio::test]
async fn key_brute_force_is_rate_limited_and_audited() {
    let relay = Relay::start().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let mut limited_at = None;
    for i in 0..15 {
        let (s, _) = redeem(&relay, &format!("{:07}", 1_000_000 + i)).await;
        if s == 429 {
            limited_at = Some(i);
            break;
        }
        assert_eq!(s, 404);
    }
    assert_eq!(
        limited_at,
        Some(10),
        "the 11th attempt in a minute is refused"
    );
    // The portal form shares the limit and says so in the visitor's language.
    let r = relay
        .http
        .post(relay.url("/start"))
        .header("accept-language", "de-DE")
        .form(&[("key", "1234567")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Zu viele Versuche"));
    let (s, log) = relay
        .get(&admin, "/api/v1/audit?action=session_key.redeem&limit=100")
        .await;
    assert_eq!(s, 200);
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "wrong").count(), 10);
    assert!(outcomes.iter().filter(|o| **o == "limited").count() >= 2);
    // Reps may not read the audit log.
    let rep = relay.rep_token().await;
    assert_eq!(relay.get(&rep, "/api/v1/audit").await.0, 403);
}

#[tokio::test]
async fn global_key_limit_holds_across_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        "[limits]\nkey_attempts_per_minute_per_address = 100\nkey_attempts_per_minute_total = 5\n",
    )
    .unwrap();
    let relay = Relay::start_with(&["--config", cfg.to_str().unwrap()]).await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        statuses.push(redeem(&relay, &format!("{:07}", 2_000_000 + i)).await.0);
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429, 429]);
}

#[tokio::test]
async fn hostile_frames_close_one_connection_only() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    // A healthy session that must survive everything below.
    let (mut good, welcome) = join(&relay, &rep, "general", "Good").await;
    let sid = welcome["session_id"].as_str().unwrap().to_string();
    recv_type(&mut good, "queue").await;
    relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    recv_type(&mut good, "rep_joined").await;

    // Not JSON at all.
    let mut a = ws_connect(&relay.addr, "/ws/agent", None).await;
    a.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv_type(&mut a, "error").await["code"], "malformed");
    assert_eq!(recv_close(&mut a).await.unwrap().0, 1008);
    // Binary garbage first.
    let mut b = ws_connect(&relay.addr, "/ws/agent", None).await;
    b.send(Message::Binary(vec![0xff; 40].into()))
        .await
        .unwrap();
    assert_eq!(recv_type(&mut b, "error").await["code"], "out_of_order");
    // Oversized control message (over 64 KiB).
    let mut c = ws_connect(&relay.addr, "/ws/agent", None).await;
    c.send(Message::Text(
        format!("{{\"type\":\"chat\",\"text\":\"{}\"}}", "x".repeat(70_000)).into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv_type(&mut c, "error").await["code"], "too_large");
    assert_eq!(recv_close(&mut c).await.unwrap().0, 1009);
    // Larger than any frame: the WebSocket layer itself drops it.
    let mut d = ws_connect(&relay.addr, "/ws/agent", None).await;
    let _ = d
        .send(Message::Binary(vec![0u8; 2 * 1024 * 1024].into()))
        .await;
    let _ = recv_close(&mut d).await;
    // Out of order: chat before the terms, and a second hello.
    let key = relay.new_key(&rep, "general").await;
    let t = relay.ticket(key["key"].as_str().unwrap(), "E").await;
    let mut e = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(&mut e, hello(t["ticket"]["ticket"].as_str().unwrap(), "E")).await;
    recv_type(&mut e, "welcome").await;
    send_json(&mut e, json!({"type": "chat", "text": "too early"})).await;
    let err = recv_type(&mut e, "error").await;
    assert_eq!(err["code"], "out_of_order");
    let (code, reason) = recv_close(&mut e).await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("terms"), "{reason}");
    // A bad binary frame inside a session.
    let (mut f, _) = join(&relay, &rep, "general", "F").await;
    f.send(Message::Binary(
        lifeline_proto::frame::encode(lifeline_proto::frame::Channel::Screen, 0, 1, b"x").unwrap()
            [..10]
            .to_vec()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv_type(&mut f, "error").await["code"], "malformed");

    // The healthy session still works both ways.
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "still here?"}),
        )
        .await;
    assert_eq!(recv_type(&mut good, "chat").await["text"], "still here?");
    send_json(&mut good, json!({"type": "chat", "text": "yes"})).await;
    let stored = common::wait_for(Duration::from_secs(5), "customer chat stored", async || {
        let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
        (d["messages"].as_array().map(Vec::len) == Some(2)).then_some(d)
    })
    .await;
    assert_eq!(stored["messages"][1]["body"], "yes");
}

#[tokio::test]
async fn sigkill_mid_session_keeps_sessions_and_agent_resumes() {
    let mut relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, welcome) = join(&relay, &rep, "general", "Kim").await;
    let sid = welcome["session_id"].as_str().unwrap().to_string();
    let resume = welcome["resume_token"].as_str().unwrap().to_string();
    recv_type(&mut agent, "queue").await;
    relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    recv_type(&mut agent, "rep_joined").await;
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "before"}),
        )
        .await;
    recv_type(&mut agent, "chat").await;

    let port = relay.port();
    relay.kill9();
    assert!(
        recv_json(&mut agent).await.is_none(),
        "the link drops with the relay"
    );
    relay.spawn(Some(port)).await;

    let (s, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s, 200, "bearer tokens survive a restart");
    assert_eq!(d["state"], "active");
    assert_eq!(d["messages"][0]["body"], "before");
    assert_eq!(d["online"], false);

    let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(
        &mut agent,
        json!({"type": "hello", "version": {"major": 1, "minor": 0},
        "auth": {"kind": "resume", "session_id": sid, "token": "wrong-token"},
        "info": {"customer_name": "", "computer": "", "platform": "", "language": ""}}),
    )
    .await;
    assert_eq!(
        recv_type(&mut agent, "refused").await["code"],
        "ticket_invalid"
    );

    let mut agent = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(
        &mut agent,
        json!({"type": "hello", "version": {"major": 1, "minor": 0},
        "auth": {"kind": "resume", "session_id": sid, "token": resume},
        "info": {"customer_name": "", "computer": "", "platform": "", "language": ""}}),
    )
    .await;
    let w = recv_type(&mut agent, "welcome").await;
    assert_eq!(w["state"], "active");
    assert_eq!(
        recv_type(&mut agent, "rep_joined").await["name"],
        "Rémi Rep"
    );
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "after"}),
        )
        .await;
    assert_eq!(recv_type(&mut agent, "chat").await["text"], "after");
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(d["online"], true);
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"client_reconnected"), "{kinds:?}");
    // Ended sessions cannot be resumed.
    relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(recv_type(&mut agent, "ended").await["by"], "rep");
    let mut again = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(
        &mut again,
        json!({"type": "hello", "version": {"major": 1, "minor": 0},
        "auth": {"kind": "resume", "session_id": sid, "token": resume},
        "info": {"customer_name": "", "computer": "", "platform": "", "language": ""}}),
    )
    .await;
    assert_eq!(
        recv_type(&mut again, "refused").await["code"],
        "session_ended"
    );
}

#[tokio::test]
async fn portal_pages_and_download_with_ticket() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let fake = b"\x7fELF stock client".to_vec();
    std::fs::create_dir_all(relay.clients().join("linux-x86_64")).unwrap();
    std::fs::write(relay.clients().join("linux-x86_64/lifeline-agent"), &fake).unwrap();
    for (lang, text) in [
        ("fr-FR", "Clé de session"),
        ("de-DE,de;q=0.9", "Sitzungsschlüssel"),
        ("en", "Session key"),
    ] {
        let page = relay
            .http
            .get(relay.url("/"))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        let html = page.text().await.unwrap();
        assert!(html.contains(text), "{lang}");
        assert!(html.contains(&format!("<html lang=\"{}\"", &lang[..2])));
    }
    let r = relay
        .http
        .post(relay.url("/start"))
        .form(&[("key", "12"), ("lang", "fr")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("exactement 7 chiffres"));
    let key = relay.new_key(&rep, "personal").await;
    let r = relay
        .http
        .post(relay.url("/start"))
        .form(&[
            ("key", key["key"].as_str().unwrap()),
            ("name", "<b>Zoë</b>"),
            ("lang", "de"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/download/"));
    let page = relay
        .http
        .get(relay.url(&loc))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Rémi Rep") && html.contains("Support-Programm herunterladen"),
        "{html}"
    );
    assert!(html.contains("Windows (64-bit) — auf diesem Support-Server noch nicht verfügbar"));
    let file = relay
        .http
        .get(relay.url(&format!("{loc}/linux-x86_64")))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    let cd = file.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("lifeline-support-"), "{cd}");
    let bytes = file.bytes().await.unwrap();
    assert!(bytes.starts_with(&fake));
    let t = lifeline_proto::ticket::parse_trailer(&bytes).unwrap();
    assert_eq!(t.cert_sha256, relay.pin);
    assert_eq!(
        t.customer_name, "<b>Zoë</b>",
        "kept verbatim; escaped wherever shown"
    );
    assert_eq!(t.language, "de");
    let missing = relay
        .http
        .get(relay.url(&format!("{loc}/windows-x86_64")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("not available on this support server yet")
    );
    // The emailed link leads to the same download page, once.
    let link = key["url"].as_str().unwrap();
    let path = &link[link.find("/k/").unwrap()..];
    let r = relay.http.get(relay.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 400, "the key behind the link is already used");
    let key2 = relay.new_key(&rep, "general").await;
    let link = key2["url"].as_str().unwrap();
    let r = relay
        .http
        .get(relay.url(&link[link.find("/k/").unwrap()..]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // Plain HTTP only redirects.
    let http_addr = std::fs::read_to_string(relay.data().join("relay.addr"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("http=").map(str::to_string))
        .unwrap();
    let r = relay
        .http
        .get(format!("http://{http_addr}/console?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("{}/console?x=1", relay.url).as_str()
    );
}

#[tokio::test]
async fn cookie_login_csrf_and_first_setup() {
    let relay = Relay::start().await;
    let r = relay.form_login("/login", "rep1", "wrong-password").await;
    assert_eq!(r.status(), 401);
    let r = relay.form_login("/login", "rep1", REP_PASSWORD).await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let c = cookie.split(';').next().unwrap().to_string();
    let csrf = relay.csrf_token(&c).await;
    let no = relay
        .http
        .post(relay.url("/api/v1/session-keys"))
        .header("cookie", &c)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), 403);
    let yes = relay
        .http
        .post(relay.url("/api/v1/session-keys"))
        .header("cookie", &c)
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(yes.status(), 200);
    // Cross-site WebSocket with the cookie is refused.
    let page = relay
        .http
        .get(relay.url("/console"))
        .header("cookie", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        relay
            .http
            .get(relay.url("/console"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );

    // A box without accounts: the setup secret creates the first administrator, once.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut fresh = std::process::Command::new(relay_bin())
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redirect-listen",
            "off",
            "--client-store",
            "/nonexistent",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::wait_for(Duration::from_secs(20), "fresh relay", async || {
        std::fs::read_to_string(data.join("relay.addr"))
            .ok()
            .filter(|s| s.contains("url="))
    })
    .await;
    let url = addr
        .lines()
        .find_map(|l| l.strip_prefix("url="))
        .unwrap()
        .to_string();
    let secret = std::fs::read_to_string(data.join("setup-secret")).unwrap();
    let form = |s: &str| {
        vec![
            ("secret", s.to_string()),
            ("display_name", "First Admin".into()),
            ("username", "boss".into()),
            ("password", "a-long-password".into()),
        ]
    };
    let r = relay
        .http
        .post(format!("{url}/setup"))
        .form(&form("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = relay
        .http
        .post(format!("{url}/setup"))
        .form(&form(secret.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(!data.join("setup-secret").exists());
    let r = relay
        .http
        .post(format!("{url}/setup"))
        .form(&form(secret.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "setup is closed: back to the login page");
    assert_eq!(r.headers()["location"], "/login");
    let _ = fresh.kill();
    let _ = fresh.wait();
}

#[tokio::test]
async fn portal_lists_online_reps_and_starts_their_sessions() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let portal = relay
        .http
        .get(relay.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!portal.contains("Rémi Rep"), "offline reps are not listed");
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;
    let portal = relay
        .http
        .get(relay.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(portal.contains("Rémi Rep") && portal.contains("name=\"rep\" value=\"rep1\""));
    let r = relay
        .http
        .post(relay.url("/start"))
        .form(&[("rep", "rep1"), ("lang", "en")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let ticket_id = r.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/download/")
        .to_string();
    let db = lifeline_relay::db::Db::open(&relay.data().join("relay.db"))
        .await
        .unwrap();
    let t = db.ticket(&ticket_id).await.unwrap().unwrap();
    assert_eq!(t.queue, "personal");
    // An unknown or offline representative is refused plainly.
    let r = relay
        .http
        .post(relay.url("/start"))
        .form(&[("rep", "admin"), ("lang", "en")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no longer available"));
}

#[tokio::test]
async fn sigterm_drains_and_agents_are_told() {
    let mut relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, _) = join(&relay, &rep, "general", "Tess").await;
    recv_type(&mut agent, "queue").await;
    let mut child = relay.child.take().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, reason) = recv_close(&mut agent).await.expect("a close frame");
    assert_eq!(code, 1012);
    assert!(reason.contains("restarting"));
    let status = wait_for(Duration::from_secs(15), "the relay to exit", async || {
        child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "exit status {status}");
    assert!(relay.log().contains("stopped"));
}
