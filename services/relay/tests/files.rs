//! File transfer end to end with every real part: the client **downloaded from the relay**
//! runs on an X server with a shared folder of its own (its home folder); the customer
//! allows file transfer in the client window (xdotool); the representative's requests go
//! through the relay's HTTP routes, as the console sends them.
//!
//! Checked: refusals of `../../etc/shadow`, a symbolic link out of the shared folder and a
//! device file (the agent's own checks, reached through the relay); a 200 MB download and a
//! 200 MB upload each cut halfway by killing the agent's TCP connection (`ss -K`) and
//! resumed by the relay without the representative noticing; the same with the relay
//! restarted halfway (the HTTP client resumes with `Range`, or from the offset the agent
//! holds); SHA-256 verified end to end; no overwrite without confirmation; no `.part` file
//! left behind; every transfer in the session report; the admin policy switching file
//! transfer off.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::desktop::*;
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BIG: u64 = 200 * 1024 * 1024;

/// How long the client's log may take to show a step (a 200 MB transfer runs beside).
const LOG_WAIT: Duration = Duration::from_secs(60);

fn count(agent: &Agent, needle: &str) -> usize {
    agent.log().matches(needle).count()
}

/// Cuts the agent's TCP connection to the relay (both directions, at once).
fn cut_link(agent: &Agent, relay_port: u16) {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .expect("ss (iproute2) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = format!("pid={},", agent.child.id());
    let line = text
        .lines()
        .find(|l| l.contains(&pid) && l.contains(&format!(":{relay_port} ")))
        .unwrap_or_else(|| panic!("no connection of the agent in:\n{text}"));
    let local = line.split_whitespace().nth(2).unwrap();
    let sport = local.rsplit(':').next().unwrap();
    let st = Command::new("ss")
        .args(["-K", "-t", "dport", "=", &format!(":{relay_port}")])
        .args(["sport", "=", &format!(":{sport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ss -K");
}

fn geometry(x: &Xvfb, wid: &str) -> (i32, i32) {
    let out = x.xdotool(&["getwindowgeometry", "--shell", wid]);
    let get = |k: &str| -> i32 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    (get("X="), get("Y="))
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

fn files_url(relay: &Relay, sid: &str, tail: &str) -> String {
    relay.url(&format!("/api/v1/sessions/{sid}/files{tail}"))
}

/// Streams a download; calls `halfway` once when half has arrived. Returns the bytes, the
/// announced hash and the status, or the bytes so far when the stream broke.
async fn download(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    from: u64,
    mut halfway: impl FnMut(),
) -> (u16, Option<String>, Vec<u8>, bool) {
    let mut req = http.get(url).bearer_auth(token);
    if from > 0 {
        req = req.header("range", format!("bytes={from}-"));
    }
    let mut resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let sha = resp
        .headers()
        .get("x-lifeline-sha256")
        .map(|v| v.to_str().unwrap().to_string());
    let mut data = Vec::new();
    let mut called = false;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                data.extend_from_slice(&c);
                if !called && from + data.len() as u64 >= BIG / 2 {
                    called = true;
                    halfway();
                }
            }
            Ok(None) => return (status, sha, data, true),
            Err(_) => return (status, sha, data, false),
        }
    }
}

/// What an upload announces.
struct Put<'a> {
    path: &'a str,
    size: u64,
    sha: &'a str,
    offset: u64,
    overwrite: bool,
}

async fn put(
    http: &reqwest::Client,
    relay: &Relay,
    (sid, token): (&str, &str),
    Put {
        path,
        size,
        sha,
        offset,
        overwrite,
    }: Put<'_>,
    data: Vec<u8>,
) -> Result<(u16, Value), String> {
    let r = http
        .put(files_url(relay, sid, "/content"))
        .bearer_auth(token)
        .query(&[
            ("path", path),
            ("size", &size.to_string()),
            ("sha256", sha),
            ("offset", &offset.to_string()),
            ("overwrite", if overwrite { "true" } else { "false" }),
        ])
        .body(data)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

async fn wait_len(path: &Path, at_least: u64) {
    wait_for(
        Duration::from_secs(120),
        "the .part file to grow",
        async || (std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= at_least).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_transfer_with_the_real_client() {
    let art = artifacts("files");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let share = home.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"not for the rep").unwrap();
    std::fs::create_dir_all(share.join("Documents")).unwrap();
    std::fs::write(share.join("Documents/notes.txt"), "Grüße\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), share.join("escape")).unwrap();
    let device = share.join("zero");
    let made = Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "5"])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        // Without the right to make a device node, a pipe stands in for it.
        assert!(
            Command::new("mkfifo")
                .arg(&device)
                .status()
                .unwrap()
                .success()
        );
    }
    let big: Vec<u8> = {
        let mut v = vec![0u8; BIG as usize];
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for c in v.chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.copy_from_slice(&s.to_le_bytes()[..c.len()]);
        }
        v
    };
    let big_sha = sha_hex(&big);
    std::fs::write(share.join("big.bin"), &big).unwrap();

    // The customer gets the client and waits; the representative accepts.
    let mut relay = Relay::start().await;
    stock_client(&relay);
    let rep = relay.rep_token().await;
    let mut console = ws_connect(&relay.addr, "/ws/console", Some(&rep)).await;
    recv_type(&mut console, "snapshot").await;
    let key = relay.new_key(&rep, "personal").await;
    let file = download_client(&relay, key["key"].as_str().unwrap(), "Zoë Client", "en").await;
    let agent = Agent::run_in(&file, &x, Some(share), art.join("agent.log"));
    agent.wait_log_for("event=connected", LOG_WAIT).await;
    let wid = accept_terms(&x, &agent, 20).await;
    let sid = accept_next(&relay, &rep, &mut console).await;
    agent
        .wait_log_for("event=state state=active", LOG_WAIT)
        .await;
    let http = http();

    // Nothing before the customer allows it.
    let r = http
        .get(files_url(&relay, &sid, ""))
        .bearer_auth(&rep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The customer allows file transfer (Tab to "Allow").
    let (s, v) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({"permission": "file_transfer"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    agent
        .wait_log_for("event=question_shown question=file_transfer", LOG_WAIT)
        .await;
    x.xdotool(&["windowfocus", "--sync", &wid]);
    x.xdotool(&["key", "--delay", "120", "Tab", "space"]);
    agent
        .wait_log_for(
            "event=permission permission=file_transfer change=granted",
            LOG_WAIT,
        )
        .await;
    let sid2 = sid.clone();
    let list = async |path: &str| -> (u16, Value) {
        let r = http
            .get(files_url(&relay, &sid2, ""))
            .query(&[("path", path)])
            .bearer_auth(&rep)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    };
    let listing = wait_for(
        Duration::from_secs(20),
        "the grant at the relay",
        async || {
            let (s, v) = list("").await;
            (s == 200).then_some(v)
        },
    )
    .await;
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for n in ["Documents", "big.bin", "escape", "zero"] {
        assert!(names.contains(&n), "{n} in {listing}");
    }
    let (s, v) = list("Documents").await;
    assert_eq!(
        (s, v["entries"][0]["name"].as_str()),
        (200, Some("notes.txt"))
    );

    // Refusals: out of the folder, through a link, a device.
    for (path, error) in [
        ("../../etc/shadow", "outside_root"),
        ("escape/secret.txt", "not_regular"),
        ("zero", "not_regular"),
        ("Documents", "not_regular"),
        ("missing.txt", "not_found"),
    ] {
        let r = http
            .get(files_url(&relay, &sid, "/content"))
            .query(&[("path", path)])
            .bearer_auth(&rep)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            matches!(status, 403 | 404) && v["error"] == error,
            "{path}: {status} {v}"
        );
    }
    let (s, v) = list("escape").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("not_regular")), "{v}");
    let (s, v) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/files/uploads"),
            json!({"path": "escape/planted.txt", "size": 1, "sha256": sha_hex(b"x")}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (403, Some("not_regular")), "{v}");
    assert!(!outside.path().join("planted.txt").exists());

    // 1. A 200 MB download, the agent's link cut halfway: the relay resumes it.
    let port = relay.port();
    let url = format!("{}?path=big.bin", files_url(&relay, &sid, "/content"));
    let lost_before = count(&agent, "event=link_lost");
    let (status, sha, data, complete) =
        download(&http, &url, &rep, 0, || cut_link(&agent, port)).await;
    assert_eq!(status, 200);
    assert!(
        complete,
        "the download finished ({} bytes)\n---- relay log ----\n{}\n---- agent log ----\n{}",
        data.len(),
        relay.log(),
        agent.log()
    );
    assert_eq!(sha.as_deref(), Some(big_sha.as_str()));
    assert_eq!(data.len() as u64, BIG);
    assert_eq!(sha_hex(&data), big_sha, "downloaded bytes");
    assert!(
        count(&agent, "event=link_lost") > lost_before,
        "the link was cut"
    );
    assert!(relay.log().contains("resuming"), "the relay resumed");
    drop(data);

    // 2. A 200 MB upload, the agent's link cut halfway.
    let up_data: Vec<u8> = big.iter().rev().copied().collect();
    let up_sha = sha_hex(&up_data);
    let part = share.join(format!("Documents/upload.bin.{}.part", &up_sha[..16]));
    let lost_before = count(&agent, "event=link_lost");
    let task = {
        let (http, rep, sid, data, sha) = (
            http.clone(),
            rep.clone(),
            sid.clone(),
            up_data.clone(),
            up_sha.clone(),
        );
        let url = relay.url.clone();
        tokio::spawn(async move {
            let r = http
                .put(format!("{url}/api/v1/sessions/{sid}/files/content"))
                .bearer_auth(&rep)
                .query(&[
                    ("path", "Documents/upload.bin"),
                    ("size", &BIG.to_string()),
                    ("sha256", &sha),
                ])
                .body(data)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        })
    };
    wait_len(&part, BIG / 2).await;
    cut_link(&agent, port);
    let (s, v) = task.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sha256"], up_sha.as_str());
    assert!(
        count(&agent, "event=link_lost") > lost_before,
        "the link was cut"
    );
    let placed = std::fs::read(share.join("Documents/upload.bin")).unwrap();
    assert_eq!(sha_hex(&placed), up_sha);
    assert!(!part.exists(), "no .part file left");
    drop(placed);

    // 3. No overwrite without confirmation; with it, replaced.
    let small = b"replaced by the representative".to_vec();
    let small_sha = sha_hex(&small);
    let (s, v) = put(
        &http,
        &relay,
        (&sid, &rep),
        Put {
            path: "Documents/upload.bin",
            size: small.len() as u64,
            sha: &small_sha,
            offset: 0,
            overwrite: false,
        },
        small.clone(),
    )
    .await
    .unwrap();
    assert_eq!((s, v["error"].as_str()), (409, Some("exists")), "{v}");
    assert_eq!(
        std::fs::metadata(share.join("Documents/upload.bin"))
            .unwrap()
            .len(),
        BIG
    );
    let (s, v) = put(
        &http,
        &relay,
        (&sid, &rep),
        Put {
            path: "Documents/upload.bin",
            size: small.len() as u64,
            sha: &small_sha,
            offset: 0,
            overwrite: true,
        },
        small.clone(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read(share.join("Documents/upload.bin")).unwrap(),
        small
    );
    // A wrong hash is refused and nothing is kept.
    let (s, v) = put(
        &http,
        &relay,
        (&sid, &rep),
        Put {
            path: "Documents/wrong.bin",
            size: small.len() as u64,
            sha: &sha_hex(b"something else"),
            offset: 0,
            overwrite: false,
        },
        small.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("hash_mismatch")),
        "{v}"
    );
    assert!(!share.join("Documents/wrong.bin").exists());

    // 4. The relay restarts in the middle of a download: resumed with Range.
    restart_halfway_download(&mut relay, &http, &rep, &sid, &agent, &big_sha).await;

    // 5. The relay restarts in the middle of an upload: resumed from the agent's offset.
    let up2_path = "Documents/second.bin";
    let part2 = share.join(format!("Documents/second.bin.{}.part", &up_sha[..16]));
    let task = {
        let (http, rep, sid, data, sha) = (
            http.clone(),
            rep.clone(),
            sid.clone(),
            up_data.clone(),
            up_sha.clone(),
        );
        let url = relay.url.clone();
        tokio::spawn(async move {
            http.put(format!("{url}/api/v1/sessions/{sid}/files/content"))
                .bearer_auth(&rep)
                .query(&[
                    ("path", up2_path),
                    ("size", &BIG.to_string()),
                    ("sha256", &sha),
                ])
                .body(data)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    wait_len(&part2, BIG / 2).await;
    let port = relay.port();
    let restored = count(&agent, "event=link_restored");
    relay.kill9();
    let broke = task.await.unwrap();
    assert!(
        broke.is_err() || broke.as_ref().is_ok_and(|s| *s != 200),
        "{broke:?}"
    );
    relay.spawn(Some(port)).await;
    wait_for(Duration::from_secs(60), "the agent back", async || {
        (count(&agent, "event=link_restored") > restored).then_some(())
    })
    .await;
    let offset = wait_for(Duration::from_secs(30), "the upload's offset", async || {
        let (s, v) = relay
            .post(
                &rep,
                &format!("/api/v1/sessions/{sid}/files/uploads"),
                json!({"path": up2_path, "size": BIG, "sha256": up_sha}),
            )
            .await;
        (s == 200).then(|| v["offset"].as_u64().unwrap())
    })
    .await;
    assert!((BIG / 2..BIG).contains(&offset), "resumes at {offset}");
    let (s, v) = put(
        &http,
        &relay,
        (&sid, &rep),
        Put {
            path: up2_path,
            size: BIG,
            sha: &up_sha,
            offset,
            overwrite: false,
        },
        up_data[offset as usize..].to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        sha_hex(&std::fs::read(share.join(up2_path)).unwrap()),
        up_sha
    );
    assert!(!part2.exists());

    // The session report lists every transfer.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let transfers: Vec<Value> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "file_transferred")
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .collect();
    let count = |dir: &str, path: &str, sha: &str| {
        transfers
            .iter()
            .filter(|t| t["direction"] == dir && t["path"] == path && t["sha256"] == sha)
            .count()
    };
    assert!(count("download", "big.bin", &big_sha) >= 2, "{transfers:?}");
    assert_eq!(
        count("upload", "Documents/upload.bin", &up_sha),
        1,
        "{transfers:?}"
    );
    assert_eq!(
        count("upload", "Documents/upload.bin", &small_sha),
        1,
        "{transfers:?}"
    );
    assert_eq!(count("upload", up2_path, &up_sha), 1, "{transfers:?}");
    assert!(transfers.iter().all(|t| t["size"].as_u64().is_some()));
    std::fs::write(art.join("transfers.json"), format!("{transfers:#?}")).unwrap();
}

/// Downloads `big.bin` while the relay is killed and started again halfway; the HTTP
/// client resumes with `Range` once the agent is back.
async fn restart_halfway_download(
    relay: &mut Relay,
    http: &reqwest::Client,
    rep: &str,
    sid: &str,
    agent: &Agent,
    big_sha: &str,
) {
    let url = format!("{}?path=big.bin", files_url(relay, sid, "/content"));
    let port = relay.port();
    let restored = count(agent, "event=link_restored");
    let child = std::sync::Mutex::new(relay.child.take());
    let (status, _, first, complete) = download(http, &url, rep, 0, || {
        if let Some(mut c) = child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    })
    .await;
    assert_eq!(status, 200);
    assert!(!complete, "the restart broke the download");
    relay.spawn(Some(port)).await;
    wait_for(Duration::from_secs(60), "the agent back", async || {
        (count(agent, "event=link_restored") > restored).then_some(())
    })
    .await;
    let from = first.len() as u64;
    assert!((BIG / 2..BIG).contains(&from));
    let (status, sha, rest, complete) = wait_for(
        Duration::from_secs(30),
        "the resumed download",
        async || {
            let r = download(http, &url, rep, from, || {}).await;
            (r.0 == 206).then_some(r)
        },
    )
    .await;
    assert_eq!(status, 206);
    assert!(complete);
    assert_eq!(sha.as_deref(), Some(big_sha));
    let mut h = Sha256::new();
    h.update(&first);
    h.update(&rest);
    assert_eq!(hex::encode(h.finalize()), big_sha, "resumed bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_can_turn_file_transfer_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[files]\nenabled = false\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let rep = relay.rep_token().await;
    let (s, v) = relay.get(&rep, "/api/v1/sessions/abc/files?path=").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("policy")), "{v}");
    std::fs::write(&config, "[files]\nupload = false\nmax_size_mb = 1\n").unwrap();
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await;
    let rep = relay.rep_token().await;
    let (s, v) = relay
        .post(
            &rep,
            "/api/v1/sessions/abc/files/uploads",
            json!({"path": "a", "size": 1, "sha256": "ab".repeat(32)}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (403, Some("policy")), "{v}");
    let (s, v) = relay
        .get(&rep, "/api/v1/sessions/abc/files/content?path=a")
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
}

/// The console's "Files" area in Chromium (`tests/browser/files.mjs`): the permission
/// asked and allowed in the client window, a folder listed and opened, a download saved and
/// verified, a dropped file sent, a replacement refused then confirmed, a file the customer
/// sends from the client window (its button and file chooser, driven with xdotool), a
/// folder downloaded whole as a ZIP, a folder sent with "Send a folder…" and sent again
/// with "Replace all", the folder question in French and German, the session report.
#[tokio::test(flavor = "multi_thread")]
async fn the_file_panel_in_the_console_with_chromium() {
    let art = artifacts("files-console");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let share = home.path();
    std::fs::create_dir_all(share.join("Documents")).unwrap();
    std::fs::write(share.join("Documents/notes.txt"), "Grüße\n").unwrap();
    let medium: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let medium_sha = sha_hex(&medium);
    std::fs::write(share.join("medium.bin"), &medium).unwrap();
    // The file the customer sends lies outside the shared folder: their choice, not a path
    // the technician may name.
    let elsewhere = tempfile::tempdir().unwrap();
    let gift = elsewhere.path().join("journal-2026.txt");
    let gift_data = "Ereignisprotokoll: alles grün.\n".repeat(20_000);
    std::fs::write(&gift, &gift_data).unwrap();
    let gift_sha = sha_hex(gift_data.as_bytes());
    // A folder to download whole: nested files, an empty folder, a link that is skipped.
    let mut album = serde_json::Map::new();
    for (rel, data) in [
        (
            "Album/cover.txt",
            b"Titelbild \xc3\xa9t\xc3\xa9\n".repeat(10),
        ),
        (
            "Album/2026/photo.bin",
            (0..300_000u32).map(|i| (i % 249) as u8).collect(),
        ),
        ("Album/2026/deep/note.md", b"# note\n".to_vec()),
    ] {
        let full = share.join(rel);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, &data).unwrap();
        album.insert(rel.to_owned(), Value::from(sha_hex(&data)));
    }
    std::fs::create_dir_all(share.join("Album/empty")).unwrap();
    std::os::unix::fs::symlink(share.join("medium.bin"), share.join("Album/link")).unwrap();
    let album = Value::Object(album).to_string();

    let CustomerSession {
        relay,
        agent,
        wid,
        sid,
        // Kept open to the end: the representative stays online.
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, Some(share)).await;

    let script = RepScript::start(
        &relay,
        "files.mjs",
        &sid,
        &art,
        &[
            ("LIFELINE_MEDIUM_SHA", &medium_sha),
            ("LIFELINE_OFFER_NAME", "journal-2026.txt"),
            ("LIFELINE_OFFER_SHA", &gift_sha),
            ("LIFELINE_ALBUM", &album),
        ],
    );
    let sync = script.sync.clone();

    // The customer allows file transfer when the console asks.
    wait_for(
        Duration::from_secs(90),
        "the file transfer question",
        async || {
            agent
                .log()
                .contains("event=question_shown question=file_transfer")
                .then_some(())
        },
    )
    .await;
    x.xdotool(&["windowfocus", "--sync", &wid]);
    x.xdotool(&["key", "--delay", "120", "Tab", "space"]);
    agent
        .wait_log_for(
            "event=permission permission=file_transfer change=granted",
            LOG_WAIT,
        )
        .await;

    // The customer sends a file: the button beside Stop in the file transfer row, then the
    // file chooser (its name field has the focus).
    let (wx, wy) = geometry(&x, &wid);
    let (bx, by) = (wx + 205, wy + 64 + 30 + 54 + 34 / 2);
    x.screenshot(&art.join("client-granted.png"));
    // The row shows once the window has handled the grant: click until the chooser opens.
    let chooser = wait_for(Duration::from_secs(30), "the file chooser", async || {
        x.xdotool(&["mousemove", &bx.to_string(), &by.to_string(), "click", "1"]);
        tokio::time::sleep(Duration::from_millis(700)).await;
        x.find_window("Choose a file to send to the technician")
    })
    .await;
    x.xdotool(&["windowfocus", "--sync", &chooser]);
    x.xdotool(&["type", "--delay", "20", gift.to_str().unwrap()]);
    x.screenshot(&art.join("client-chooser.png"));
    x.xdotool(&["key", "Return"]);
    agent.wait_log_for("event=file_offered", LOG_WAIT).await;

    script.passed(Duration::from_secs(300)).await;

    // What the customer's disk holds.
    let want = |name: &str| std::fs::read_to_string(sync.join(name)).unwrap();
    let replaced = std::fs::read(share.join("dropped.bin")).unwrap();
    assert_eq!(sha_hex(&replaced), want("replaced.sha"));
    assert_ne!(want("dropped.sha"), want("replaced.sha"));
    // The folder sent whole, replaced after "Replace all".
    let trip: Value = serde_json::from_str(&want("trip.json")).unwrap();
    let trip = trip.as_object().unwrap();
    assert_eq!(trip.len(), 3);
    for (rel, sha) in trip {
        let data = std::fs::read(share.join(rel)).unwrap();
        assert_eq!(Value::from(sha_hex(&data)), *sha, "{rel}");
    }
    let parts: Vec<_> = std::fs::read_dir(share)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "no .part file left: {parts:?}");
}

/// A folder tree, walked the way the console walks it: every file (path, bytes), every
/// folder, and the links and special entries skipped (never followed).
#[derive(Debug, Default)]
struct Tree {
    files: Vec<(String, Vec<u8>)>,
    dirs: Vec<String>,
    skipped: Vec<String>,
}

/// Walks `path` of the shared folder through the relay, as the console does before it
/// downloads a whole folder, and downloads every file (each checked against its SHA-256).
async fn download_folder(
    http: &reqwest::Client,
    relay: &Relay,
    sid: &str,
    rep: &str,
    path: &str,
) -> Tree {
    let mut tree = Tree::default();
    let mut todo = vec![path.to_owned()];
    while let Some(dir) = todo.pop() {
        let r = http
            .get(files_url(relay, sid, ""))
            .query(&[("path", dir.as_str())])
            .bearer_auth(rep)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "listing {dir}");
        let v: Value = r.json().await.unwrap();
        tree.dirs.push(dir.clone());
        for e in v["entries"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let full = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            match e["kind"].as_str().unwrap() {
                "dir" => todo.push(full),
                "file" => {
                    let url = format!(
                        "{}?path={}",
                        files_url(relay, sid, "/content"),
                        url_escape(&full)
                    );
                    let (s, sha, data, complete) = download(http, &url, rep, 0, || {}).await;
                    assert!(s == 200 && complete, "{full}: {s}");
                    assert_eq!(sha.as_deref(), Some(sha_hex(&data).as_str()), "{full}");
                    tree.files.push((full, data));
                }
                _ => tree.skipped.push(full),
            }
        }
    }
    tree.files.sort();
    tree.dirs.sort();
    tree.skipped.sort();
    tree
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// "Allow only one folder…": the customer picks a folder with the client's folder chooser
/// (xdotool types its path into the chooser's field); the listing shows only that folder,
/// its parent and a link pointing out are refused; a folder of nested files (with an empty
/// folder and a link that is skipped) is downloaded whole and uploaded whole, every hash
/// checked; the session report holds the limited share and every file.
#[tokio::test(flavor = "multi_thread")]
async fn one_folder_only_and_whole_folders_with_the_real_client() {
    let art = artifacts("files-one-folder");
    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let share = home.path();
    std::fs::write(share.join("secret.txt"), b"above the shared folder").unwrap();
    let reports = share.join("Reports");
    for dir in ["2026/deep", "empty"] {
        std::fs::create_dir_all(reports.join(dir)).unwrap();
    }
    let content = |seed: u32, len: usize| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8)
            .collect()
    };
    let originals = [
        ("a.txt", content(1, 1000)),
        ("2026/q1.csv", content(2, 300_000)),
        ("2026/deep/x.bin", content(3, 1_100_000)),
    ];
    for (p, data) in &originals {
        std::fs::write(reports.join(p), data).unwrap();
    }
    std::os::unix::fs::symlink(share.join("secret.txt"), reports.join("2026/out")).unwrap();

    let CustomerSession {
        relay,
        rep,
        agent,
        wid,
        sid,
        console: _console,
        ..
    } = CustomerSession::start(&x, &art, Some(share)).await;
    let http = http();
    let (s, v) = relay
        .post(
            &rep,
            &format!("/api/v1/sessions/{sid}/permissions"),
            json!({"permission": "file_transfer"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    agent
        .wait_log_for("event=question_shown question=file_transfer", LOG_WAIT)
        .await;
    // Deny has the focus: Tab, Tab reaches "Allow only one folder…".
    x.xdotool(&["windowfocus", "--sync", &wid]);
    x.screenshot(&art.join("client-question.png"));
    x.xdotool(&["key", "--delay", "120", "Tab", "Tab", "space"]);
    let chooser = window(&x, "Choose the only folder the technician may use").await;
    x.xdotool(&["windowfocus", "--sync", &chooser]);
    // The field may hold the folder the chooser opened in: select it, type over it.
    x.xdotool(&["key", "--delay", "60", "End", "shift+Home"]);
    x.xdotool(&["type", "--delay", "20", reports.to_str().unwrap()]);
    x.screenshot(&art.join("client-folder-chooser.png"));
    // Its OK button, bottom right.
    let (cx, cy) = geometry(&x, &chooser);
    let out = x.xdotool(&["getwindowgeometry", "--shell", &chooser]);
    let get = |k: &str| -> i32 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    let (w, h) = (get("WIDTH="), get("HEIGHT="));
    let (ox, oy) = (cx + w - 134, cy + h - 23);
    x.xdotool(&["mousemove", &ox.to_string(), &oy.to_string(), "click", "1"]);
    agent
        .wait_log_for(
            "event=permission permission=file_transfer change=granted",
            LOG_WAIT,
        )
        .await;
    assert!(
        agent
            .log()
            .contains("event=file_limited folder=\"Reports\"")
    );
    x.screenshot(&art.join("client-one-folder.png"));

    // Only the chosen folder is there, named as the root.
    let listing = wait_for(
        Duration::from_secs(20),
        "the grant at the relay",
        async || {
            let r = http
                .get(files_url(&relay, &sid, ""))
                .query(&[("path", "")])
                .bearer_auth(&rep)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r.json::<Value>().await.ok()?)
        },
    )
    .await;
    assert_eq!(listing["root"], "Reports", "{listing}");
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2026", "empty", "a.txt"], "{listing}");
    // Its parent and a link pointing out are refused.
    for (path, status) in [
        ("../secret.txt", 400),
        ("..", 400),
        ("secret.txt", 404),
        ("2026/out", 409),
    ] {
        let r = http
            .get(files_url(&relay, &sid, "/content"))
            .query(&[("path", path)])
            .bearer_auth(&rep)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!(!body.contains("above the shared folder"), "{path}");
        assert!(st >= 400, "{path}: {st} {body}");
        let _ = status;
    }
    let r = http
        .get(files_url(&relay, &sid, ""))
        .query(&[("path", "..")])
        .bearer_auth(&rep)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    // The whole folder down: its structure, every file verified, the link skipped.
    let tree = download_folder(&http, &relay, &sid, &rep, "").await;
    let mut want: Vec<(String, Vec<u8>)> = originals
        .iter()
        .map(|(p, d)| ((*p).to_owned(), d.clone()))
        .collect();
    want.sort();
    assert_eq!(
        tree.files
            .iter()
            .map(|(p, d)| (p.as_str(), sha_hex(d)))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|(p, d)| (p.as_str(), sha_hex(d)))
            .collect::<Vec<_>>()
    );
    assert_eq!(tree.dirs, ["", "2026", "2026/deep", "empty"]);
    assert_eq!(tree.skipped, ["2026/out"]);

    // The same tree up again under "copy": folders first (the empty one too), then each
    // file with the verified upload.
    for d in ["copy", "copy/2026", "copy/2026/deep", "copy/empty"] {
        let (s, v) = relay
            .post(
                &rep,
                &format!("/api/v1/sessions/{sid}/files/folders"),
                json!({ "path": d }),
            )
            .await;
        assert_eq!(s, 200, "{d}: {v}");
    }
    for (p, data) in &tree.files {
        let path = format!("copy/{p}");
        let sha = sha_hex(data);
        let (s, v) = relay
            .post(
                &rep,
                &format!("/api/v1/sessions/{sid}/files/uploads"),
                json!({"path": path, "size": data.len(), "sha256": sha}),
            )
            .await;
        assert_eq!((s, v["offset"].as_u64()), (200, Some(0)), "{v}");
        let (s, v) = put(
            &http,
            &relay,
            (&sid, &rep),
            Put {
                path: &path,
                size: data.len() as u64,
                sha: &sha,
                offset: 0,
                overwrite: false,
            },
            data.clone(),
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{path}: {v}");
    }
    for (p, data) in &originals {
        assert_eq!(
            std::fs::read(reports.join("copy").join(p)).unwrap(),
            *data,
            "{p}"
        );
    }
    assert!(reports.join("copy/empty").is_dir());
    assert!(
        !share.join("copy").exists(),
        "nothing lands outside the chosen folder"
    );

    // The report: the limited share (its name only) and every file.
    let (_, d) = relay.get(&rep, &format!("/api/v1/sessions/{sid}")).await;
    let events = d["events"].as_array().unwrap();
    let share_events: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"] == "file_share")
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        share_events,
        [json!({"scope": "one_folder", "folder": "Reports"})]
    );
    let transfers: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"] == "file_transferred")
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .collect();
    for (p, data) in &originals {
        let sha = sha_hex(data);
        for (dir, path) in [
            ("download", (*p).to_owned()),
            ("upload", format!("copy/{p}")),
        ] {
            assert!(
                transfers.iter().any(|t| t["direction"] == dir
                    && t["path"] == path.as_str()
                    && t["sha256"] == sha.as_str()),
                "{dir} {path}: {transfers:?}"
            );
        }
    }
    std::fs::write(art.join("events.json"), format!("{events:#?}")).unwrap();
}
