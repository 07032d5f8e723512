//! The real relay process for the benchmark, and the representative's side of its API.
//!
//! [`Relay::start`] creates a representative with `lifeline-relay user add` in a temporary
//! data folder, starts the relay on a free loopback port, waits for its `relay.addr` file,
//! and logs in through `/api/v1/auth/token`. The REST calls are the ones a console makes:
//! a session key, the portal's ticket for it, accepting the session, asking for `view` and
//! `control`. Every TLS connection (REST and the viewer socket) is pinned to the
//! certificate fingerprint the relay wrote, as the agent does with its ticket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lifeline_proto::ticket::TicketFile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};

use super::error::{BenchError, Result};
use super::procs::{Proc, poll_until};

const REP: &str = "bench-rep";
const REP_PASSWORD: &str = "bench-rep-password-1";
pub const CUSTOMER: &str = "Bench Customer";

/// Accepts exactly the certificate with the pinned SHA-256, verifying handshake signatures.
#[derive(Debug)]
struct Pinned {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if lifeline_agent::net::pin_matches(end_entity.as_ref(), &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS client configuration that trusts only the certificate with this fingerprint.
pub fn pinned_tls(pin: &str, alpn: &[&[u8]]) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Pinned {
        pin: pin.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Api {
            what: "TLS set-up".into(),
            source: Some(Box::new(e)),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

pub struct Relay {
    proc: Proc,
    /// `127.0.0.1:port` of the HTTPS listener.
    pub addr: String,
    pub url: String,
    pub pin: String,
    http: reqwest::Client,
    pub token: String,
}

impl Relay {
    /// Starts `bin` with a fresh data folder under `dir`; blocking parts run here, the REST
    /// calls on `rt`.
    pub fn start(bin: &Path, dir: &Path, rt: &tokio::runtime::Handle) -> Result<Relay> {
        let data = dir.join("relay-data");
        let clients = dir.join("relay-clients");
        for d in [&data, &clients] {
            std::fs::create_dir_all(d).map_err(|source| BenchError::File {
                what: "cannot create a folder",
                path: d.display().to_string(),
                source,
            })?;
        }
        add_user(bin, &data)?;
        let log = dir.join("relay.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--client-store")
            .arg(&clients)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--redirect-listen",
                "127.0.0.1:0",
                "--host-name",
                "127.0.0.1",
            ])
            .env_remove("LIFELINE_DBUS_ADDRESS")
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("the relay", &mut cmd, &log)?;
        let file = data.join("relay.addr");
        let text = poll_until(
            "the relay to write relay.addr",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                proc.check()?;
                Ok(std::fs::read_to_string(&file)
                    .ok()
                    .filter(|s| s.contains("url=") && s.contains("pin=")))
            },
        )?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::to_owned)
                .ok_or_else(|| BenchError::Api {
                    what: format!("relay.addr has no {k}"),
                    source: None,
                })
        };
        let (addr, url, pin) = (get("https=")?, get("url=")?, get("pin=")?);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(pinned_tls(&pin, &[b"http/1.1"])?)
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| BenchError::Api {
                what: "HTTP client".into(),
                source: Some(Box::new(e)),
            })?;
        let mut relay = Relay {
            proc,
            addr,
            url,
            pin,
            http,
            token: String::new(),
        };
        let v = rt.block_on(relay.call(
            reqwest::Method::POST,
            "/api/v1/auth/token",
            Some(json!({"username": REP, "password": REP_PASSWORD})),
            false,
        ))?;
        relay.token = v["access_token"]
            .as_str()
            .ok_or_else(|| BenchError::Api {
                what: format!("no access token in {v}"),
                source: None,
            })?
            .to_owned();
        Ok(relay)
    }

    pub fn check(&mut self) -> Result<()> {
        self.proc.check()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> Result<Value> {
        let (status, v) = self.try_call(method, path, body, auth).await?;
        if !(200..300).contains(&status) {
            return Err(BenchError::Api {
                what: format!("{path} answered {status}: {v}"),
                source: None,
            });
        }
        Ok(v)
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if auth {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| BenchError::Api {
            what: path.to_owned(),
            source: Some(Box::new(e)),
        })?;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// A session key in the general queue, redeemed like the portal does: the ticket file a
    /// downloaded client would carry.
    pub async fn ticket(&self) -> Result<TicketFile> {
        let key = self
            .call(
                reqwest::Method::POST,
                "/api/v1/session-keys",
                Some(json!({"queue": "general", "ttl_minutes": 60})),
                true,
            )
            .await?;
        let key = key["key"].as_str().unwrap_or_default().to_owned();
        let t = self
            .call(
                reqwest::Method::POST,
                "/api/v1/portal/tickets",
                Some(json!({"key": key, "name": CUSTOMER, "language": "en"})),
                false,
            )
            .await?;
        serde_json::from_value(t["ticket"].clone()).map_err(|e| BenchError::Api {
            what: "the portal's ticket file".into(),
            source: Some(Box::new(e)),
        })
    }

    /// The id of the waiting session of [`CUSTOMER`], once it is in the queue.
    pub async fn waiting_session(&self) -> Result<Option<String>> {
        let v = self
            .call(reqwest::Method::GET, "/api/v1/queues", None, true)
            .await?;
        Ok(v["entries"].as_array().and_then(|list| {
            list.iter()
                .find(|e| e["customer_name"] == CUSTOMER && e["state"] == "waiting")
                .and_then(|e| e["session_id"].as_str().map(str::to_owned))
        }))
    }

    pub async fn accept(&self, sid: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{sid}/accept"),
            Some(json!({})),
            true,
        )
        .await
        .map(drop)
    }

    /// Asks for a permission; the HTTP status (409 while `control` waits for `view`).
    pub async fn ask(&self, sid: &str, permission: &str) -> Result<u16> {
        Ok(self
            .try_call(
                reqwest::Method::POST,
                &format!("/api/v1/sessions/{sid}/permissions"),
                Some(json!({"permission": permission})),
                true,
            )
            .await?
            .0)
    }

    /// The session's record (its `permissions` and `stream` counters).
    pub async fn session(&self, sid: &str) -> Result<Value> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{sid}"),
            None,
            true,
        )
        .await
    }
}

fn add_user(bin: &Path, data: &PathBuf) -> Result<()> {
    let mut child = Command::new(bin)
        .args(["user", "add", "--data-dir"])
        .arg(data)
        .args([
            "--username",
            REP,
            "--role",
            "rep",
            "--display-name",
            "Bench Rep",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: format!("{} user add", bin.display()),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{REP_PASSWORD}\n").as_bytes())
            .map_err(BenchError::io(
                "writing the password to `lifeline-relay user add`",
            ))?;
    }
    let out = child
        .wait_with_output()
        .map_err(BenchError::io("waiting for `lifeline-relay user add`"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Exited {
            what: "lifeline-relay user add".into(),
            status: out.status.to_string(),
            log: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
