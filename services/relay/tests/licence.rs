//! Representative seats through the relay, against the real licence manager on a private
//! `dbus-daemon`: a six-seat licence lets six reps in and tells the seventh plainly; a
//! logout frees a seat; a restart of the licence manager keeps the leases. Without the
//! licence manager the relay runs in evaluation mode with one seat. An appliance
//! administrator installs a new licence file through `PUT /api/v1/appliance/licence`: more
//! seats take effect at once; a licence for another appliance is refused with the sentence
//! and changes nothing; reps may not; every attempt is audited; without the licence manager
//! the answer is 503.

mod common;

use std::time::Duration;

use common::appliance::{LicenceManager, SERIAL, TestBus, issue_licence};
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

const APP_PASSWORD: &str = "appliance-password-1";

/// `PUT /api/v1/appliance/licence` with `text`, the request authenticated by `auth`.
async fn upload(
    relay: &Relay,
    auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    text: &str,
) -> (u16, serde_json::Value) {
    let request = relay.http.put(relay.url("/api/v1/appliance/licence"));
    let r = auth(request)
        .json(&json!({ "licence": text }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn put_licence(relay: &Relay, token: &str, text: &str) -> (u16, serde_json::Value) {
    upload(relay, |r| r.bearer_auth(token), text).await
}

/// A licence file's text, issued with the development key.
fn licence_text(
    dir: &tempfile::TempDir,
    name: &str,
    serial: &str,
    seats: u32,
    expires: &str,
) -> String {
    let path = dir.path().join(name);
    issue_licence(&path, serial, seats, &["--expires", expires]);
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_installs_a_licence_and_the_relay_follows() {
    let bus = TestBus::start();
    let mut lic = LicenceManager::start(&bus, 1).await;
    let cfg = tempfile::tempdir().unwrap();
    let relay = relay_on(&bus, &cfg).await;
    relay.add_user("rep2", "rep", "Rep 2", REP_PASSWORD);
    relay.add_user(
        "appadmin",
        "appliance-admin",
        "Appliance Admin",
        APP_PASSWORD,
    );
    let conn = bus.connect().await;
    let files = tempfile::tempdir().unwrap();

    // One seat: the second rep is refused.
    let rep = relay.rep_token().await;
    let (s, body) = try_token(&relay, "rep2").await;
    assert_eq!(s, 403, "{body}");
    let installed = std::fs::read(lic.licence_path()).unwrap();
    let three = licence_text(&files, "three.json", SERIAL, 3, "2098-12-31");

    // A representative may not install a licence.
    let (s, body) = put_licence(&relay, &rep, &three).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"], "forbidden");

    // A licence for another appliance is refused with the sentence; nothing changes.
    let admin = relay.token("appadmin", APP_PASSWORD).await;
    let other = licence_text(&files, "other.json", "LL-OTHER-0007", 50, "2098-12-31");
    let (s, body) = put_licence(&relay, &admin, &other).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "This licence is for appliance LL-OTHER-0007, this box is {SERIAL}. \
             Upload the licence issued for serial {SERIAL}."
        )
    );
    // Too big, and not a licence at all: refused too.
    let (s, body) = put_licence(&relay, &admin, &" ".repeat(70_000)).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 65536 bytes"),
        "{body}"
    );
    let (s, body) = put_licence(&relay, &admin, "hello").await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a valid Lifeline licence"),
        "{body}"
    );
    assert_eq!(std::fs::read(lic.licence_path()).unwrap(), installed);
    let proxy = lifeline_license_api::License1Proxy::new(&conn)
        .await
        .unwrap();
    assert_eq!(proxy.counts().await.unwrap().rep_limit, 1);

    // A cookie session must send its CSRF token.
    let login = relay
        .form_login("/appliance/login", "appadmin", APP_PASSWORD)
        .await;
    assert_eq!(login.status().as_u16(), 303, "appliance login");
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ll_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let (s, body) = upload(&relay, |r| r.header("cookie", &cookie), &three).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"], "csrf");
    assert_eq!(std::fs::read(lic.licence_path()).unwrap(), installed);

    // The administrator installs a three-seat licence (with the cookie and its token).
    let csrf = relay.csrf_token(&cookie).await;
    let with_token =
        |r: reqwest::RequestBuilder| r.header("cookie", &cookie).header("x-csrf-token", &csrf);
    let (s, body) = upload(&relay, with_token, &three).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["rep_seats"], 3, "{body}");
    assert_eq!(body["rep_seats_in_use"], 1, "{body}");
    assert_eq!(body["serial"], SERIAL);
    assert_eq!(body["edition"], "enterprise");
    assert_eq!(body["expires"], "2098-12-31");
    assert_eq!(std::fs::read_to_string(lic.licence_path()).unwrap(), three);
    assert_eq!(proxy.counts().await.unwrap().rep_limit, 3);

    // The relay follows at once: the second rep gets in, the status says three seats.
    let (s, body) = try_token(&relay, "rep2").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(reps_in_use(&conn).await, 2);
    let (s, status) = relay.get(&admin, "/api/v1/appliance/status").await;
    assert_eq!(s, 200);
    assert_eq!(status["license"]["rep_seats"], 3, "{status}");
    assert_eq!(status["license"]["expires"], "2098-12-31");

    // Every attempt is audited, with the sentence of a refusal.
    let site_admin = relay.token("admin", ADMIN_PASSWORD).await;
    let (s, log) = relay
        .get(
            &site_admin,
            "/api/v1/audit?action=appliance.licence&limit=100",
        )
        .await;
    assert_eq!(s, 200, "{log}");
    let rows: Vec<(&str, &str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows.iter().filter(|r| r.1 == "refused").count(),
        3,
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0 == "appadmin" && r.1 == "refused" && r.2.contains("LL-OTHER-0007")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0 == "appadmin" && r.1 == "ok" && r.2.contains("3 representative seats")),
        "{rows:?}"
    );

    // The route is in the OpenAPI document.
    let (_, spec) = relay.get(&admin, "/api/v1/openapi.json").await;
    assert!(
        spec["paths"]["/api/v1/appliance/licence"]["put"].is_object(),
        "OpenAPI lacks PUT /api/v1/appliance/licence"
    );

    // The licence manager stops: nothing can be installed, and the caller is told so.
    lic.kill9();
    let (s, body) = put_licence(&relay, &admin, &three).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("licence service"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_licence_manager_no_licence_can_be_installed() {
    let bus = TestBus::start();
    let cfg = tempfile::tempdir().unwrap();
    let relay = relay_on(&bus, &cfg).await;
    relay.add_user(
        "appadmin",
        "appliance-admin",
        "Appliance Admin",
        APP_PASSWORD,
    );
    let admin = relay.token("appadmin", APP_PASSWORD).await;
    let files = tempfile::tempdir().unwrap();
    let text = licence_text(&files, "l.json", SERIAL, 3, "2098-12-31");
    let (s, body) = put_licence(&relay, &admin, &text).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        body["message"],
        "The licence service of this appliance is not running, so no licence can be installed. \
         Check its state on the appliance status page, then try again."
    );
}
