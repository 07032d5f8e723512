//! Representative seats through the relay, against the real licence manager on a private
//! `dbus-daemon`: a six-seat licence lets six reps in and tells the seventh plainly; a
//! logout frees a seat; a restart of the licence manager keeps the leases. Without the
//! licence manager the relay runs in evaluation mode with one seat.

mod common;

use std::time::Duration;

use common::appliance::{LicenceManager, TestBus};
use common::*;
use serde_json::json;

const SEVENTH: &str =
    "All 6 representative licences are in use. Ask a colleague to log out, or buy more licences.";

async fn try_token(relay: &Relay, user: &str) -> (u16, serde_json::Value) {
    let r = relay
        .http
        .post(relay.url("/api/v1/auth/token"))
        .json(&json!({"username": user, "password": REP_PASSWORD}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A relay on `bus` that allows the many logins of these tests from one address.
async fn relay_on(bus: &TestBus, cfg_dir: &tempfile::TempDir) -> Relay {
    let cfg = cfg_dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        "[limits]\nlogin_attempts_per_minute_per_address = 100\n",
    )
    .unwrap();
    Relay::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("LIFELINE_DBUS_ADDRESS", &bus.address)],
    )
    .await
}

async fn reps_in_use(conn: &zbus::Connection) -> u32 {
    lifeline_license_api::License1Proxy::new(conn)
        .await
        .unwrap()
        .counts()
        .await
        .unwrap()
        .rep_in_use
}

#[tokio::test(flavor = "multi_thread")]
async fn seventh_rep_on_six_seats_is_refused_until_one_logs_out() {
    let bus = TestBus::start();
    let mut lic = LicenceManager::start(&bus, 6).await;
    let cfg = tempfile::tempdir().unwrap();
    let relay = relay_on(&bus, &cfg).await;
    for i in 2..=7 {
        relay.add_user(&format!("rep{i}"), "rep", &format!("Rep {i}"), REP_PASSWORD);
    }
    let conn = bus.connect().await;

    let mut tokens = Vec::new();
    for i in 1..=6 {
        let (s, body) = try_token(&relay, &format!("rep{i}")).await;
        assert_eq!(s, 200, "rep{i}: {body}");
        tokens.push(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(reps_in_use(&conn).await, 6);
    // The same rep logging in again (browser and script) keeps one seat.
    let _again = relay.token("rep1", REP_PASSWORD).await;
    assert_eq!(reps_in_use(&conn).await, 6);

    let (s, body) = try_token(&relay, "rep7").await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"], "no_licence_seat");
    assert_eq!(body["message"], SEVENTH);

    // The login page says the same to a person.
    let page = relay
        .http
        .post(relay.url("/login"))
        .form(&[
            ("username", "rep7"),
            ("password", REP_PASSWORD),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("All 6 representative licences are in use"),
        "{html}"
    );

    // A restart of the licence manager keeps the leases: still six in use, the seventh
    // still refused, and the first rep's token still works.
    lic.kill9();
    lic.spawn(&bus).await;
    assert_eq!(reps_in_use(&conn).await, 6);
    let (s, body) = try_token(&relay, "rep7").await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = relay.get(&tokens[0], "/api/v1/queues").await;
    assert_eq!(s, 200);

    // The first rep logs out: the seat is free and the seventh gets in.
    let r = relay
        .http
        .post(relay.url("/api/v1/auth/logout"))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, _) = relay.get(&tokens[0], "/api/v1/me").await;
    assert_eq!(s, 401, "the token must stop working after logout");
    assert_eq!(reps_in_use(&conn).await, 5);
    let (s, body) = try_token(&relay, "rep7").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(reps_in_use(&conn).await, 6);
    let audit = relay
        .get(&relay.token("admin", ADMIN_PASSWORD).await, "/api/v1/audit")
        .await;
    assert!(audit.1.to_string().contains("no_seat"), "{}", audit.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_licence_manager_the_relay_runs_in_evaluation_mode() {
    let bus = TestBus::start();
    let cfg = tempfile::tempdir().unwrap();
    let relay = relay_on(&bus, &cfg).await;
    relay.add_user("rep2", "rep", "Rep 2", REP_PASSWORD);
    let _one = relay.rep_token().await;
    let (s, body) = try_token(&relay, "rep2").await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(
        body["message"],
        "All 1 representative licences are in use. Ask a colleague to log out, or buy more licences."
    );
    assert!(relay.log().contains("evaluation mode"), "{}", relay.log());

    // When the licence manager appears, the relay moves to it (within its probe interval).
    let _lic = LicenceManager::start(&bus, 6).await;
    wait_for(
        Duration::from_secs(20),
        "the relay to use the licence manager",
        async || (try_token(&relay, "rep2").await.0 == 200).then_some(()),
    )
    .await;
    assert_eq!(reps_in_use(&bus.connect().await).await, 2);
}
