//! Test context: the real `lifeline-relay` binary on port 0 with a temporary data folder,
//! accounts created through its own CLI, and small HTTPS and WebSocket clients.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub mod appliance;
pub mod desktop;
pub mod jump;

pub const REP_PASSWORD: &str = "rep-password-123";
pub const ADMIN_PASSWORD: &str = "admin-password-123";

pub fn relay_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifeline-relay"))
}

/// Polls `f` every 50 ms until it returns `Some` or `limit` passes.
pub async fn wait_for<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most `limit`) until `path` exists: the other side of a test finished a turn.
pub async fn wait_file(path: &std::path::Path, limit: Duration, what: &str) {
    wait_for(limit, what, async || path.exists().then_some(())).await;
}

pub struct Relay {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub addr: String,
    pub url: String,
    pub pin: String,
    pub http: reqwest::Client,
    extra_args: Vec<String>,
    /// Extra environment for the relay process (e.g. the D-Bus address).
    pub env: Vec<(String, String)>,
}

impl Relay {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn clients(&self) -> PathBuf {
        self.dir.path().join("clients")
    }

    /// Starts a relay with a fresh data folder and a rep `rep1` and admin `admin`.
    pub async fn start() -> Relay {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Relay {
        Self::start_with_env(extra, &[]).await
    }

    /// Like [`Relay::start_with`], with extra environment variables for the process.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("clients")).unwrap();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut r = Relay {
            dir,
            child: None,
            addr: String::new(),
            url: String::new(),
            pin: String::new(),
            http,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        r.add_user("admin", "admin", "Ada Admin", ADMIN_PASSWORD);
        r.add_user("rep1", "rep", "Rémi Rep", REP_PASSWORD);
        r.spawn(None).await;
        r
    }

    pub fn add_user(&self, username: &str, role: &str, display: &str, password: &str) {
        let mut child = Command::new(relay_bin())
            .args(["user", "add", "--data-dir"])
            .arg(self.data())
            .args([
                "--username",
                username,
                "--role",
                role,
                "--display-name",
                display,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "user add {username}");
    }

    /// Starts the process (again); `port` reuses a previous port.
    pub async fn spawn(&mut self, port: Option<u16>) {
        let _ = std::fs::remove_file(self.data().join("relay.addr"));
        let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("relay.log"))
            .unwrap();
        let child = Command::new(relay_bin())
            .arg("--data-dir")
            .arg(self.data())
            .arg("--client-store")
            .arg(self.clients())
            .args([
                "--listen",
                &listen,
                "--redirect-listen",
                "127.0.0.1:0",
                "--host-name",
                "127.0.0.1",
            ])
            .args(&self.extra_args)
            .env_remove("LIFELINE_DBUS_ADDRESS")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let file = self.data().join("relay.addr");
        let text = wait_for(Duration::from_secs(30), "relay.addr", async || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|s| s.contains("url="))
        })
        .await;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        self.addr = get("https=");
        self.url = get("url=");
        self.pin = get("pin=");
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn token(&self, user: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/auth/token"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn rep_token(&self) -> String {
        self.token("rep1", REP_PASSWORD).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Logs in through a page's form (`/login`, `/appliance/login`); the answer as it came.
    pub async fn form_login(&self, path: &str, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of the cookie session `cookie` (`name=value`), from `/api/v1/me`.
    pub async fn csrf_token(&self, cookie: &str) -> String {
        let r = self
            .http
            .get(self.url("/api/v1/me"))
            .header("cookie", cookie);
        let me: Value = r.send().await.unwrap().json().await.unwrap();
        me["csrf_token"].as_str().unwrap().to_string()
    }

    /// Asserts that the API description (`/api/v1/openapi.json`, public) has each of `paths`.
    pub async fn assert_documented(&self, paths: &[&str]) {
        let r = self.http.get(self.url("/api/v1/openapi.json")).send().await;
        let spec: Value = r.unwrap().json().await.unwrap();
        for p in paths {
            assert!(spec["paths"][p].is_object(), "OpenAPI lacks {p}");
        }
    }

    /// A new key in `queue`.
    pub async fn new_key(&self, token: &str, queue: &str) -> Value {
        let (s, v) = self
            .post(
                token,
                "/api/v1/session-keys",
                json!({"queue": queue, "ttl_minutes": 20}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Redeems a key through the API like the portal does; returns the ticket file.
    pub async fn ticket(&self, key: &str, name: &str) -> Value {
        let r = self
            .http
            .post(self.url("/api/v1/portal/tickets"))
            .json(&json!({"key": key, "name": name, "language": "fr"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- relay log ----\n{}", self.log());
        }
        self.kill9();
    }
}

// ---- a raw WebSocket client over TLS -------------------------------------------------------

#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens `path` on the relay as a WebSocket, with optional bearer token.
pub async fn ws_connect(addr: &str, path: &str, bearer: Option<&str>) -> Ws {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    match ws_try_connect(addr, path, &headers).await {
        Ok(ws) => ws,
        Err(status) => panic!("WebSocket {path} refused with HTTP {status}"),
    }
}

/// Opens `path` as a WebSocket with these request headers; `Err` holds the HTTP status of
/// a refused upgrade.
pub async fn ws_try_connect(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://{addr}{path}"),
    )
    .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("WebSocket {path}: {e}"),
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next JSON message (skipping pings), or `None` when the socket closed. Panics after 10 s.
pub async fn recv_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ping" {
                    continue;
                }
                return Some(v);
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Waits for a message of `ty`, skipping others.
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv_json(ws)
            .await
            .unwrap_or_else(|| panic!("socket closed while waiting for {ty}"));
        if v["type"] == ty {
            return v;
        }
    }
}

/// The close frame's code and reason (reading past other messages).
pub async fn recv_close(ws: &mut Ws) -> Option<(u16, String)> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no close within 10 s");
        match m {
            Some(Ok(Message::Close(Some(f)))) => {
                return Some((f.code.into(), f.reason.to_string()));
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

pub fn hello(ticket: &str, name: &str) -> Value {
    json!({"type": "hello", "version": {"major": 1, "minor": 0},
           "auth": {"kind": "ticket", "ticket": ticket},
           "info": {"customer_name": name, "computer": "pc-1", "platform": "Linux x86_64", "language": "fr"}})
}

/// A simulated agent that joined and accepted the terms; returns (socket, welcome).
pub async fn join(relay: &Relay, token: &str, queue: &str, name: &str) -> (Ws, Value) {
    let key = relay.new_key(token, queue).await;
    let t = relay.ticket(key["key"].as_str().unwrap(), name).await;
    let mut ws = ws_connect(&relay.addr, "/ws/agent", None).await;
    send_json(
        &mut ws,
        hello(t["ticket"]["ticket"].as_str().unwrap(), name),
    )
    .await;
    let welcome = recv_type(&mut ws, "welcome").await;
    send_json(&mut ws, json!({"type": "accept_terms"})).await;
    (ws, welcome)
}

pub fn artifacts(name: &str) -> PathBuf {
    let base = std::env::var_os("LIFELINE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts"));
    let p = base.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A benchmark's numeric option `name` (e.g. `--sessions 1000`), or `default`.
pub fn bench_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..=1) of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A process's resident memory in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
