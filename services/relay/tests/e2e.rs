//! End to end with real processes: the relay, the customer client **downloaded from the
//! relay** and run under a real X server (Xvfb), driven with xdotool like a person would.

mod common;

use std::time::Duration;

use common::desktop::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn downloaded_client_runs_a_whole_session() {
    let x = Xvfb::start();
    let mut relay = Relay::start().await;
    stock_client(&relay);
    let rep = relay.rep_token().await;
    let admin = relay.token("admin", ADMIN_PASSWORD).await;
    let art = artifacts("e2e");
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;

    let key = relay.new_key(&rep, "personal").await;
    let file = download_client(&relay, key["key"].as_str().unwrap(), "Zoë Client", "fr").await;
    let agent = Agent::run(&file, &x, relay.dir.path().join("agent.log"));
    let wid = window(&x, "Support").await;
    agent.wait_log("event=connected").await;
    x.screenshot(&art.join("1-terms.png"));
    // The customer accepts the terms with Enter (the focused Accept button). A window that
    // has just been mapped may not take the first key yet, as for a person: press again.
    let mut wid = wid;
    for _ in 0..10 {
        wid = window(&x, "Support").await;
        if x.try_xdotool(&["windowfocus", "--sync", &wid]) {
            x.try_xdotool(&["key", "Return"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if agent.log().contains("event=terms_accepted") {
            break;
        }
    }
    agent.wait_log("event=state state=waiting position=1").await;
    let up = recv_type(&mut console, "upsert").await;
    assert_eq!(up["entry"]["customer_name"], "Zoë Client");
    assert!(
        up["entry"]["platform"]
            .as_str()
            .unwrap()
            .starts_with("Linux x86_64"),
        "{up}"
    );
    let sid = up["entry"]["session_id"].as_str().unwrap().to_string();
    x.screenshot(&art.join("2-waiting.png"));

    let (s, _) = relay
        .post(&rep, &format!("/api/v1/sessions/{sid}/accept"), json!({}))
        .await;
    assert_eq!(s, 200);
    agent.wait_log("event=state state=active").await;
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "Bonjour Zoë, je regarde"}),
        )
        .await;
    agent.wait_log("text=\"Bonjour Zoë, je regarde\"").await;
    // The customer types an answer with accents into the window.
    x.xdotool(&["windowfocus", "--sync", &wid]);
    x.xdotool(&["type", "--delay", "40", "Grüße, élève"]);
    x.xdotool(&["key", "Return"]);
    loop {
        let c = recv_type(&mut console, "chat").await;
        if c["from"] == "customer" {
            assert_eq!(c["text"], "Grüße, élève");
            break;
        }
    }
    x.screenshot(&art.join("3-chat.png"));

    // The box crashes mid-session and comes back: the client rejoins by itself.
    let port = relay.port();
    relay.kill9();
    agent.wait_log("event=link_lost").await;
    relay.spawn(Some(port)).await;
    agent.wait_log("event=link_restored").await;
    relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"text": "toujours là"}),
        )
        .await;
    agent.wait_log("text=\"toujours là\"").await;

    // The customer closes the window: that ends the session.
    x.xdotool(&["windowclose", &wid]);
    agent.wait_log("event=ended").await;
    let mut agent = agent;
    let status = wait_for(Duration::from_secs(10), "the client to exit", async || {
        agent.child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "client exit status {status}");

    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(d["state"], "ended");
    assert_eq!(d["ended_by"], "customer");
    let lines: Vec<(String, String)> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap().into(),
                m["body"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("rep".into(), "Bonjour Zoë, je regarde".into()),
            ("customer".into(), "Grüße, élève".into()),
            ("rep".into(), "toujours là".into()),
        ]
    );
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "client_connected",
        "terms_accepted",
        "accepted",
        "client_reconnected",
        "ended",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    let (_, audit) = relay.get(&admin, "/api/v1/audit?limit=200").await;
    let actions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["action"].as_str().unwrap(),
                a["outcome"].as_str().unwrap()
            )
        })
        .collect();
    for a in [
        "session_key.redeem:ok",
        "client.download:ok",
        "ticket.use:ok",
        "session.accept:ok",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "audit lacks {a}: {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_refuses_a_certificate_other_than_its_pin() {
    let x = Xvfb::start();
    let mut relay = Relay::start().await;
    stock_client(&relay);
    let rep = relay.rep_token().await;
    let key = relay.new_key(&rep, "general").await;
    let file = download_client(&relay, key["key"].as_str().unwrap(), "", "en").await;
    // Someone else answers at the box's address with another certificate.
    let port = relay.port();
    relay.kill9();
    std::fs::remove_dir_all(relay.data().join("tls")).unwrap();
    relay.spawn(Some(port)).await;
    let agent = Agent::run(&file, &x, relay.dir.path().join("agent.log"));
    agent.wait_log("event=pin_mismatch").await;
    window(&x, "Support").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot(&artifacts("e2e").join("pin-refused.png"));
    assert!(!agent.log().contains("event=connected"));
    let (_, q) = relay.get(&rep, "/api/v1/queues").await;
    assert_eq!(
        q["entries"],
        Value::Array(vec![]),
        "nothing reached the relay"
    );
}
