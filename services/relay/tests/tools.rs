//! Session tools end to end.
//!
//! * `system_information_with_the_real_client_and_the_console_in_chromium`: the client
//!   **downloaded from the relay** runs on an X server; the representative works in the
//!   console in Chromium (`tests/browser/tools.mjs`); this test plays the customer in the
//!   client's window with xdotool. Checked: a denied `system_info` request gives no report
//!   (the API refuses it too); an allowed one gives the tabs with this machine's real values
//!   (host name, kernel, memory, the agent's own process, loopback address, the root file
//!   system, installed packages) in the console and through the API; the JSON export parses;
//!   ending a process is asked of the customer each time: refused, nothing happens;
//!   allowed, the process ends; the session report lists the requests and answers.
//! * `a_hostile_agent_cannot_break_a_report`: a scripted agent sends parts out of order and
//!   a report that breaks the bounds; the representative gets a plain refusal, the relay
//!   stays up, and the failures are recorded.
//! * `the_admin_policy_turns_system_information_off`: `[tools] system_info = false`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::desktop::*;
use common::*;
use serde_json::{Value, json};

/// Accepts the session of the first `upsert` on the console socket; its id.
fn event_kinds(detail: &Value) -> Vec<String> {
    detail["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn system_information_with_the_real_client_and_the_console_in_chromium() {
    let art = artifacts("tools");
    let x = Xvfb::start();
    let work = tempfile::tempdir().unwrap();

    // A program of the customer's that the representative will want to end (named for this
    // run: a process left by an earlier run must not be the one ended; at most 15
    // characters, the kernel's limit for a process name).
    let victim_name = format!("victim{}", std::process::id() % 1_000_000);
    let victim_bin = work.path().join(&victim_name);
    std::fs::copy("/bin/sleep", &victim_bin).unwrap();
    let mut victim = KillOnDrop(Command::new(&victim_bin).arg("600").spawn().unwrap());
    let victim = &mut victim.0;

    let CustomerSession {
        relay,
        rep,
        file,
        agent,
        wid,
        sid,
        // Kept open to the end: the representative stays online.
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, None).await;
    let sysinfo_path = format!("/api/v1/sessions/{sid}/system-info");

    // The machine's own facts, to compare with what the console shows.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();

    let agent_pid = agent.child.id().to_string();
    let script = RepScript::start(
        &relay,
        "tools.mjs",
        &sid,
        &art,
        &[
            ("LIFELINE_HOST", &host),
            ("LIFELINE_KERNEL", &kernel),
            (
                "LIFELINE_AGENT_FILE",
                file.file_name().unwrap().to_str().unwrap(),
            ),
            ("LIFELINE_AGENT_PID", &agent_pid),
            ("LIFELINE_VICTIM", &victim_name),
        ],
    );
    let sync = script.sync.clone();
    let script_log = || script.log();
    let press = |keys: &[&str]| {
        x.xdotool(&["windowfocus", "--sync", &wid]);
        x.xdotool(&[&["key", "--delay", "120"][..], keys].concat());
    };
    let asked = |what: &str| agent.log().matches(what).count();

    // 1. The first request is refused (the focused answer is "Deny"): no report.
    wait_for(
        Duration::from_secs(90),
        &format!("the first question\n{}", script_log()),
        async || (asked("event=question_shown question=system_info") >= 1).then_some(()),
    )
    .await;
    x.screenshot(&art.join("1-question.png"));
    press(&["space"]);
    agent
        .wait_log("event=permission permission=system_info change=denied")
        .await;
    let (s, body) = relay.post(&rep, &sysinfo_path, json!({})).await;
    assert_eq!(s, 409, "no report without the customer's grant: {body}");
    assert!(
        !agent.log().contains("event=system_info_started"),
        "the agent gathered nothing"
    );

    // 2. Asked again, allowed (Tab to "Allow"); the console gets its report.
    wait_for(
        Duration::from_secs(60),
        &format!("the second question\n{}", script_log()),
        async || (asked("event=question_shown question=system_info") >= 2).then_some(()),
    )
    .await;
    press(&["Tab", "space"]);
    agent
        .wait_log("event=permission permission=system_info change=granted")
        .await;
    x.screenshot(&art.join("2-granted.png"));
    wait_file(
        &sync.join("report.done"),
        Duration::from_secs(60),
        &format!("the console's report\n{}", script_log()),
    )
    .await;

    // 3. The report through the API, against this machine.
    let (s, r) = relay.post(&rep, &sysinfo_path, json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["os"]["host_name"], host.as_str());
    assert!(
        r["os"]["kernel"].as_str().unwrap().contains(&kernel),
        "{}",
        r["os"]
    );
    assert!(r["os"]["uptime_s"].as_u64().unwrap() > 0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(
        r["memory"]["total_bytes"].as_u64().unwrap(),
        total_kb * 1024
    );
    assert!(r["cpu"]["cores"].as_u64().unwrap() >= 1);
    let agent_pid = agent.child.id();
    assert!(
        r["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"].as_u64() == Some(u64::from(agent_pid))),
        "the agent's own process {agent_pid} is listed"
    );
    assert!(
        r["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "127.0.0.1/8")),
        "{}",
        r["interfaces"]
    );
    assert!(
        r["disks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["mount_point"] == "/" && d["total_bytes"].as_u64().unwrap_or(0) > 0),
        "{}",
        r["disks"]
    );
    let dpkg = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}\n"])
        .output()
        .expect("dpkg-query");
    let installed = String::from_utf8_lossy(&dpkg.stdout)
        .lines()
        .filter(|l| l.starts_with("ii"))
        .count();
    assert_eq!(r["packages"].as_array().unwrap().len(), installed);
    println!(
        "report_processes={} report_packages={} report_services={} report_took_ms={} problems={}",
        r["processes"].as_array().unwrap().len(),
        installed,
        r["services"].as_array().unwrap().len(),
        r["took_ms"],
        r["problems"]
    );
    std::fs::write(sync.join("api.done"), "").unwrap();

    // 4. Ending a process: asked each time; refused, then allowed.
    wait_for(
        Duration::from_secs(60),
        &format!(
            "the first end question\n{}\n---- relay ----\n{}",
            script_log(),
            relay.log()
        ),
        async || (asked("event=question_shown question=end_process") >= 1).then_some(()),
    )
    .await;
    x.screenshot(&art.join("3-end-question.png"));
    press(&["space"]);
    agent.wait_log("outcome=refused").await;
    assert!(
        victim.try_wait().unwrap().is_none(),
        "a refused end leaves the process"
    );
    wait_for(
        Duration::from_secs(60),
        &format!("the second end question\n{}", script_log()),
        async || (asked("event=question_shown question=end_process") >= 2).then_some(()),
    )
    .await;
    press(&["Tab", "space"]);
    agent.wait_log("outcome=ended").await;
    let st = wait_for(Duration::from_secs(10), "the process to end", async || {
        victim.try_wait().unwrap()
    })
    .await;
    assert!(!st.success(), "ended by the signal: {st}");

    // 5. The console offers a support button; the customer declines (the focused answer).
    wait_for(
        Duration::from_secs(90),
        &format!("the install offer\n{}", script_log()),
        async || (asked("event=question_shown question=install") >= 1).then_some(()),
    )
    .await;
    press(&["space"]);
    agent.wait_log("event=install_done").await;

    script.passed(Duration::from_secs(120)).await;

    // The stored session tells the whole story.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let kinds = event_kinds(&d);
    assert!(
        kinds
            .iter()
            .filter(|k| *k == "system_info_requested")
            .count()
            >= 2
            && kinds
                .iter()
                .filter(|k| *k == "system_info_received")
                .count()
                >= 2,
        "{kinds:?}"
    );
    for k in [
        "process_end_requested",
        "process_end_refused",
        "process_ended",
        "install_offered",
        "install_refused",
    ] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }
    let events = d["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "permission_denied" && e["detail"] == "system_info"),
        "{events:?}"
    );
    let (_, audit) = relay
        .get(&relay.token("admin", ADMIN_PASSWORD).await, "/api/v1/audit")
        .await;
    assert!(audit.to_string().contains("session.system_info"), "{audit}");
}

/// A scripted agent in an active session with `system_info` granted.
async fn granted_session(relay: &Relay, rep: &str) -> (Ws, String) {
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(rep)).await;
    recv_type(&mut console, "snapshot").await;
    let (mut agent, _) = join(relay, rep, "personal", "Hostile").await;
    let sid = accept_next(relay, rep, &mut console).await;
    recv_type(&mut agent, "rep_joined").await;
    let (s, _) = relay
        .post(
            rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({"permission": "system_info"}),
        )
        .await;
    assert_eq!(s, 200);
    recv_type(&mut agent, "permission_request").await;
    send_json(
        &mut agent,
        json!({"type": "permission", "permission": "system_info", "granted": true}),
    )
    .await;
    wait_for(Duration::from_secs(10), "the grant", async || {
        let (_, d) = relay.get(rep, &format!("/api/v1/sessions/{sid}")).await;
        d["permissions"]
            .as_array()?
            .iter()
            .any(|p| p["permission"] == "system_info" && p["state"] == "granted")
            .then_some(())
    })
    .await;
    (agent, sid)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_agent_cannot_break_a_report() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, sid) = granted_session(&relay, &rep).await;
    let path = format!("/api/v1/sessions/{sid}/system-info");

    // Parts out of order.
    let ask = {
        let (relay_url, http, rep, path) = (
            relay.url.clone(),
            relay.http.clone(),
            rep.clone(),
            path.clone(),
        );
        tokio::spawn(async move {
            let res = http
                .post(format!("{relay_url}{path}"))
                .bearer_auth(&rep)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    let req = recv_type(&mut agent, "system_info_request").await;
    let request = req["request"].as_u64().unwrap();
    send_json(
        &mut agent,
        json!({"type": "system_info", "request": request, "part": 3, "last": true, "data": "{}"}),
    )
    .await;
    let (s, body) = ask.await.unwrap();
    assert_eq!(s, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not valid"),
        "{body}"
    );

    // A whole report that breaks a bound (a host name far too long).
    let ask = {
        let (relay_url, http, rep, path) = (
            relay.url.clone(),
            relay.http.clone(),
            rep.clone(),
            path.clone(),
        );
        tokio::spawn(async move {
            let res = http
                .post(format!("{relay_url}{path}"))
                .bearer_auth(&rep)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    let req = recv_type(&mut agent, "system_info_request").await;
    let request = req["request"].as_u64().unwrap();
    let mut report: Value =
        serde_json::to_value(lifeline_proto::tools::SystemReport::default()).unwrap();
    report["os"]["host_name"] = Value::String("h".repeat(5000));
    let text = report.to_string();
    let parts = lifeline_proto::tools::report_chunks(&text);
    // A stray part of an unknown request first: dropped, not fatal.
    send_json(
        &mut agent,
        json!({"type": "system_info", "request": request + 1000, "part": 0, "last": true, "data": "x"}),
    )
    .await;
    for (i, p) in parts.iter().enumerate() {
        send_json(
            &mut agent,
            json!({"type": "system_info", "request": request, "part": i, "last": i + 1 == parts.len(), "data": p}),
        )
        .await;
    }
    let (s, body) = ask.await.unwrap();
    assert_eq!(s, 503, "{body}");

    // A part larger than the protocol allows closes the link.
    send_json(
        &mut agent,
        json!({"type": "system_info", "request": request, "part": 0, "last": false,
               "data": "x".repeat(lifeline_proto::tools::REPORT_CHUNK_BYTES + 1)}),
    )
    .await;
    let err = recv_type(&mut agent, "error").await;
    assert_eq!(err["code"], "too_large", "{err}");

    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let kinds = event_kinds(&d);
    assert_eq!(
        kinds.iter().filter(|k| *k == "system_info_failed").count(),
        2,
        "{kinds:?}"
    );
    let (s, _) = relay.get(&rep, "/api/v1/queues").await;
    assert_eq!(s, 200, "the relay is still up");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_policy_turns_system_information_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[tools]\nsystem_info = false\ninstall = false\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let rep = relay.rep_token().await;
    let (s, p) = relay.get(&rep, "/api/v1/tools").await;
    assert_eq!(s, 200);
    assert_eq!(
        p,
        json!({"system_info": false, "shell": true, "elevated_shell": true, "install": false})
    );
    let (_agent, sid) = granted_session(&relay, &rep).await;
    let (s, body) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/system-info"),
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/processes/4242/end"),
            json!({"name": "victim"}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/install"),
            json!({"what": "jump_client"}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    relay
        .assert_documented(&[
            "/api/v1/tools",
            "/api/v1/sessions/{id}/system-info",
            "/api/v1/sessions/{id}/processes/{pid}/end",
            "/api/v1/sessions/{id}/files",
            "/api/v1/sessions/{id}/files/content",
            "/api/v1/sessions/{id}/files/uploads",
            "/api/v1/sessions/{id}/files/folders",
            "/api/v1/sessions/{id}/files/offers",
            "/api/v1/sessions/{id}/files/offers/{offer}",
            "/api/v1/sessions/{id}/install",
            "/api/v1/buttons",
            "/api/v1/buttons/{id}",
            "/api/v1/buttons/session",
        ])
        .await;
    // Nothing was asked of the agent.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    assert!(
        !event_kinds(&d).iter().any(|k| k.starts_with("system_info")),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ending_a_process_waits_for_the_customers_answer() {
    let relay = Relay::start().await;
    let rep = relay.rep_token().await;
    let (mut agent, sid) = granted_session(&relay, &rep).await;
    let path = format!("/api/v1/sessions/{sid}/processes/4242/end");
    let (s, body) = relay.post(&rep, &path, json!({"name": ""})).await;
    assert_eq!(s, 400, "{body}");
    for (outcome, status) in [("refused", "refused"), ("ended", "ended")] {
        let ask = {
            let (url, http, rep, path) = (
                relay.url.clone(),
                relay.http.clone(),
                rep.clone(),
                path.clone(),
            );
            tokio::spawn(async move {
                let res = http
                    .post(format!("{url}{path}"))
                    .bearer_auth(&rep)
                    .json(&json!({"name": "victim"}))
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        };
        let m = recv_type(&mut agent, "end_process").await;
        assert_eq!(
            (m["pid"].as_u64(), m["name"].as_str()),
            (Some(4242), Some("victim"))
        );
        send_json(
            &mut agent,
            json!({"type": "process_end", "request": m["request"], "pid": 4242,
                   "outcome": outcome, "message": "done"}),
        )
        .await;
        let (s, body) = ask.await.unwrap();
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["outcome"], status);
    }
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let kinds = event_kinds(&d);
    for k in [
        "process_end_requested",
        "process_end_refused",
        "process_ended",
    ] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
