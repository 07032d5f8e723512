//! The agent's one connection to the box: `wss://{site}/ws/agent`.
//!
//! Layers, each done here explicitly so every failure has its own sentence:
//!
//! 1. TCP to the box, or to an HTTP proxy (`https_proxy`/`HTTPS_PROXY`, honouring
//!    `no_proxy`) followed by `CONNECT host:port HTTP/1.1` and a check for a 2xx answer
//!    (headers bounded to [`MAX_PROXY_RESPONSE`]).
//! 2. TLS (rustls, `ring` provider, TLS 1.2+) with SNI set to the URL's host. The box's
//!    certificate is usually self-signed, so instead of a CA chain it is checked against the
//!    pin in the ticket: the lower-hex SHA-256 of the end-entity certificate's DER must equal
//!    `cert_sha256`. Handshake signatures are still verified, so only the holder of the pinned
//!    certificate's key can complete the handshake.
//! 3. The WebSocket client handshake, with message and frame limits from the protocol.
//!
//! Limits: proxies are plain-HTTP proxies (no `https://` proxy URL); authentication is Basic
//! only, taken from the proxy URL's user info.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use lifeline_proto::ticket::TicketFile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::env::Env;

/// The WebSocket stream to the relay.
pub type WsStream = WebSocketStream<TlsStream<TcpStream>>;

/// Largest proxy answer to a CONNECT (status line and headers) we read.
pub const MAX_PROXY_RESPONSE: usize = 8 * 1024;
/// Largest WebSocket message or frame accepted: a binary frame with its header, plus slack.
pub const MAX_WS_MESSAGE: usize = lifeline_proto::MAX_FRAME_PAYLOAD + 12 + 4096;
/// How long one connection attempt (TCP, proxy, TLS, WebSocket) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer to a [`post_json`] read.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Why the connection to the box could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "the support address {url:?} in this program is not valid: download it again from the support portal"
    )]
    BadUrl { url: String },
    #[error(
        "could not reach the support box at {addr}: check your internet connection and try again"
    )]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the proxy address {url:?} is not valid: check the https_proxy setting")]
    BadProxyUrl { url: String },
    #[error("could not reach the proxy at {addr}: check your proxy settings")]
    ProxyConnect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the proxy refused to connect to the support box: {0}")]
    Proxy(#[from] ProxyError),
    /// The box presented a certificate other than the pinned one.
    #[error(
        "the support box presented a different certificate than expected, so the connection was refused for your safety: contact your support team"
    )]
    PinMismatch { expected: String, presented: String },
    #[error(
        "the secure connection to the support box failed: check your internet connection and try again"
    )]
    Tls(#[source] std::io::Error),
    #[error(
        "the support box did not accept the connection: try again later or contact your support team"
    )]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error(
        "connecting to the support box took too long: check your internet connection and try again"
    )]
    Timeout,
    #[error("the support box's answer was not understood: try again later")]
    BadAnswer,
}

impl NetError {
    /// Whether trying again later may help (a wrong pin or URL never gets better).
    pub fn is_transient(&self) -> bool {
        match self {
            NetError::BadUrl { .. }
            | NetError::BadProxyUrl { .. }
            | NetError::PinMismatch { .. } => false,
            NetError::Connect { .. }
            | NetError::ProxyConnect { .. }
            | NetError::Proxy(_)
            | NetError::Tls(_)
            | NetError::WebSocket(_)
            | NetError::Timeout
            | NetError::BadAnswer => true,
        }
    }
}

/// What went wrong talking to a proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("its answer was longer than {MAX_PROXY_RESPONSE} bytes")]
    TooLarge,
    #[error("its answer was not HTTP")]
    Malformed,
    #[error("it answered {status} {reason}")]
    Status { status: u16, reason: String },
    #[error("it closed the connection")]
    Closed,
}

/// The parts of the site URL the agent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteUrl {
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl SiteUrl {
    /// Parses `https://host[:port][/...]` (IPv6 hosts in brackets). Only `https` is allowed.
    pub fn parse(url: &str) -> Result<SiteUrl, NetError> {
        let bad = || NetError::BadUrl {
            url: url.to_owned(),
        };
        let rest = url
            .trim()
            .strip_prefix("https://")
            .or_else(|| url.trim().strip_prefix("wss://"))
            .ok_or_else(bad)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = split_host_port(authority, 443).ok_or_else(bad)?;
        Ok(SiteUrl { host, port })
    }

    /// `host:port` with brackets around IPv6 addresses.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL of the agent endpoint.
    pub fn agent_ws_url(&self) -> String {
        format!("wss://{}/ws/agent", self.authority())
    }
}

/// Splits `host[:port]` / `[v6][:port]`; `None` when malformed.
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// An HTTP proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:password` for Basic authentication, if the URL carried one.
    pub credentials: Option<String>,
}

impl Proxy {
    /// The proxy to use for `target_host`, from `https_proxy`/`HTTPS_PROXY` and
    /// `no_proxy`/`NO_PROXY`. `Ok(None)` means connect directly.
    pub fn from_env(env: &Env, target_host: &str) -> Result<Option<Proxy>, NetError> {
        let Some(url) = env.first_of(&["https_proxy", "HTTPS_PROXY"]) else {
            return Ok(None);
        };
        if let Some(list) = env.first_of(&["no_proxy", "NO_PROXY"])
            && no_proxy_matches(list, target_host)
        {
            return Ok(None);
        }
        Proxy::parse(url).map(Some)
    }

    /// Parses `http://[user:pass@]host[:port][/]` (scheme optional, port 80 by default).
    pub fn parse(url: &str) -> Result<Proxy, NetError> {
        let bad = || NetError::BadProxyUrl {
            url: url.to_owned(),
        };
        let rest = match url.trim().split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(bad()),
            None => url.trim(),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((cred, hp)) => (Some(cred.to_owned()), hp),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, 80).ok_or_else(bad)?;
        Ok(Proxy {
            host,
            port,
            credentials,
        })
    }
}

/// Whether `host` is listed in a `no_proxy` value (`*`, exact names, domain suffixes with or
/// without a leading dot, IP addresses).
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry.trim_start_matches('[');
        let entry = entry.split(']').next().unwrap_or(entry);
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches("*.").trim_start_matches('.');
        !entry.is_empty()
            && (host.eq_ignore_ascii_case(entry)
                || (host.len() > entry.len()
                    && host
                        .to_ascii_lowercase()
                        .ends_with(&entry.to_ascii_lowercase())
                    && host.as_bytes()[host.len() - entry.len() - 1] == b'.'))
    })
}

/// Looks at the bytes a proxy sent so far in answer to CONNECT. `Ok(None)`: the header is
/// not complete yet; `Ok(Some(n))`: a 2xx header of `n` bytes was received.
pub fn parse_connect_response(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_PROXY_RESPONSE {
            Err(ProxyError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let header_len = end + 4;
    if header_len > MAX_PROXY_RESPONSE {
        return Err(ProxyError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::Malformed)?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::Malformed);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyError::Malformed)?;
    if (200..300).contains(&status) {
        Ok(Some(header_len))
    } else {
        let reason: String = parts.next().unwrap_or("").chars().take(100).collect();
        Err(ProxyError::Status { status, reason })
    }
}

/// Whether the DER certificate `der` hashes to `pin` (hex SHA-256; case is ignored).
pub fn pin_matches(der: &[u8], pin: &str) -> bool {
    cert_sha256_hex(der).eq_ignore_ascii_case(pin.trim())
}

/// Lower-hex SHA-256 of a DER certificate, as used in tickets.
pub fn cert_sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Accepts exactly the pinned certificate, and verifies handshake signatures with it.
#[derive(Debug)]
struct PinVerifier {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
    /// The hash of a certificate that did not match, for the error.
    mismatch: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if pin_matches(end_entity.as_ref(), &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            let presented = cert_sha256_hex(end_entity.as_ref());
            if let Ok(mut slot) = self.mismatch.lock() {
                *slot = Some(presented);
            }
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Opens the WebSocket to `{site_url}/ws/agent`, pinned to the ticket's certificate.
pub async fn connect(ticket: &TicketFile, env: &Env) -> Result<WsStream, NetError> {
    connect_to(ticket, env, "/ws/agent").await
}

/// Opens the WebSocket to `{site_url}{path}` (e.g. `/ws/jump`), pinned like [`connect`].
pub async fn connect_to(ticket: &TicketFile, env: &Env, path: &str) -> Result<WsStream, NetError> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let (site, tls) = tls_connect(ticket, env).await?;
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let url = format!("wss://{}{path}", site.authority());
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config))
                .await
                .map_err(|e| NetError::WebSocket(Box::new(e)))?;
        Ok(ws)
    })
    .await
    .map_err(|_| NetError::Timeout)?
}

/// The pinned TLS stream to the box (through the proxy, if any), for plain HTTPS requests.
pub async fn tls_connect(
    ticket: &TicketFile,
    env: &Env,
) -> Result<(SiteUrl, TlsStream<TcpStream>), NetError> {
    let site = SiteUrl::parse(&ticket.site_url)?;
    let tcp = match Proxy::from_env(env, &site.host)? {
        None => TcpStream::connect((site.host.as_str(), site.port))
            .await
            .map_err(|source| NetError::Connect {
                addr: site.authority(),
                source,
            })?,
        Some(proxy) => tunnel(&proxy, &site).await?,
    };
    let _ = tcp.set_nodelay(true);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = Arc::new(Mutex::new(None));
    let verifier = PinVerifier {
        pin: ticket.cert_sha256.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
        mismatch: mismatch.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(std::io::Error::other(e)))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(site.host.clone()).map_err(|_| NetError::BadUrl {
        url: ticket.site_url.clone(),
    })?;
    let tls = match TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => {
            let presented = mismatch.lock().ok().and_then(|mut m| m.take());
            return Err(match presented {
                Some(presented) => NetError::PinMismatch {
                    expected: ticket.cert_sha256.to_ascii_lowercase(),
                    presented,
                },
                None => NetError::Tls(e),
            });
        }
    };
    Ok((site, tls))
}

/// Opens a tunnel to `site` through `proxy` with CONNECT.
async fn tunnel(proxy: &Proxy, site: &SiteUrl) -> Result<TcpStream, NetError> {
    let proxy_addr = format!("{}:{}", proxy.host, proxy.port);
    let io_err = |source| NetError::ProxyConnect {
        addr: proxy_addr.clone(),
        source,
    };
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(io_err)?;
    let target = site.authority();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(cred) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(cred);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(io_err)?;

    // Byte by byte, so nothing after the header (the TLS stream) is consumed.
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut byte = [0u8; 1];
        let n = tcp.read(&mut byte).await.map_err(io_err)?;
        if n == 0 {
            return Err(ProxyError::Closed.into());
        }
        buf.push(byte[0]);
        if (buf.ends_with(b"\n") || buf.len() >= MAX_PROXY_RESPONSE)
            && parse_connect_response(&buf)?.is_some()
        {
            return Ok(tcp);
        }
    }
}

/// One HTTPS POST of JSON to the box over the pinned TLS connection (one HTTP/1.1 request,
/// `Connection: close`, the answer bounded to [`MAX_ANSWER`]): the status and the body.
pub async fn post_json(
    ticket: &TicketFile,
    env: &Env,
    path: &str,
    json: &str,
) -> Result<(u16, Vec<u8>), NetError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (site, mut tls) = tokio::time::timeout(CONNECT_TIMEOUT, tls_connect(ticket, env))
        .await
        .map_err(|_| NetError::Timeout)??;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        site.authority(),
        json.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(NetError::Tls)?;
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).await?;
            if n == 0 || answer.len() + n > MAX_ANSWER {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, read).await {
        Ok(Ok(())) => {}
        // A peer that closes TLS without close_notify still sent the whole answer.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => return Err(NetError::Tls(e)),
        Err(_) => return Err(NetError::Timeout),
    }
    parse_answer(&answer).ok_or(NetError::BadAnswer)
}

/// Splits an HTTP/1.1 answer (with a Content-Length body) into status and body.
pub fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..head_end]).ok()?;
    let status: u16 = head.lines().next()?.split(' ').nth(1)?.parse().ok()?;
    let body = &answer[head_end + 4..];
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return None,
        None => body,
    };
    Some((status, body.to_vec()))
}

/// The sentence in a refusal's JSON body (`{"message": ...}`), or its HTTP status.
pub fn answer_message(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(a), Some((200, b"{}".to_vec())));
        assert_eq!(
            parse_answer(b"HTTP/1.1 403 Forbidden\r\n\r\nno"),
            Some((403, b"no".to_vec()))
        );
        assert_eq!(parse_answer(b"garbage"), None);
    }

    proptest::proptest! {
        #[test]
        fn http_answer_parsing_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_answer(&b);
        }
    }

    #[test]
    fn pin_check() {
        let a = b"certificate one";
        let b = b"certificate two";
        let pin_a = cert_sha256_hex(a);
        assert_eq!(pin_a.len(), 64);
        assert!(pin_a.bytes().all(|c| !c.is_ascii_uppercase()));
        assert!(pin_matches(a, &pin_a));
        assert!(pin_matches(a, &pin_a.to_ascii_uppercase()));
        assert!(!pin_matches(b, &pin_a));
        assert!(!pin_matches(a, ""));
    }

    #[test]
    fn connect_response_parsing() {
        assert_eq!(parse_connect_response(b"HTTP/1.1 200 Conn"), Ok(None));
        assert_eq!(
            parse_connect_response(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(Some(39))
        );
        assert_eq!(
            parse_connect_response(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n"),
            Ok(Some(27))
        );
        assert_eq!(
            parse_connect_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(ProxyError::Status {
                status: 407,
                reason: "Proxy Authentication Required".into()
            })
        );
        assert_eq!(
            parse_connect_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ProxyError::Malformed)
        );
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_PROXY_RESPONSE));
        assert_eq!(parse_connect_response(&big), Err(ProxyError::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_connect_response(&big), Err(ProxyError::TooLarge));
    }

    #[test]
    fn site_urls() {
        let s = SiteUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8443));
        assert_eq!(s.agent_ws_url(), "wss://127.0.0.1:8443/ws/agent");
        let s = SiteUrl::parse("https://Support.Example.org/portal").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("support.example.org", 443));
        let s = SiteUrl::parse("https://[::1]:8443/").unwrap();
        assert_eq!(s.agent_ws_url(), "wss://[::1]:8443/ws/agent");
        for bad in [
            "http://x",
            "https://",
            "https://a:b",
            "https://u@h",
            "https://h:0",
            "https://a b",
        ] {
            assert!(SiteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_from_env() {
        let env = Env::from_pairs([
            ("https_proxy", "http://user:pw@proxy.lan:3128/"),
            ("no_proxy", "localhost,127.0.0.1,.internal"),
        ]);
        let p = Proxy::from_env(&env, "support.example.org")
            .unwrap()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.lan", 3128));
        assert_eq!(p.credentials.as_deref(), Some("user:pw"));
        assert_eq!(Proxy::from_env(&env, "127.0.0.1").unwrap(), None);
        assert_eq!(Proxy::from_env(&env, "localhost").unwrap(), None);
        assert_eq!(Proxy::from_env(&env, "box.internal").unwrap(), None);
        assert!(Proxy::from_env(&env, "notinternal").unwrap().is_some());
        let env = Env::from_pairs([("HTTPS_PROXY", "proxy:8080")]);
        assert!(Proxy::from_env(&env, "localhost").unwrap().is_some());
        assert_eq!(Proxy::from_env(&Env::default(), "x").unwrap(), None);
        assert!(no_proxy_matches("*", "anything"));
        assert!(!no_proxy_matches("example.org", "badexample.org"));
    }

    #[test]
    fn pin_error_says_what_to_do() {
        let e = NetError::PinMismatch {
            expected: "a".into(),
            presented: "b".into(),
        };
        let text = e.to_string();
        assert!(text.contains("different certificate than expected"));
        assert!(text.contains("refused for your safety"));
        assert!(text.contains("contact your support team"));
        assert!(!e.is_transient());
    }
}
