//! End-to-end tests of the network and session layers against an in-test TLS WebSocket
//! server with a self-signed certificate (what a box looks like to the agent).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lifeline_agent::env::Env;
use lifeline_agent::net::{self, NetError, cert_sha256_hex};
use lifeline_agent::session::{Backoff, Event, Session, SessionConfig};
use lifeline_proto::agent::{
    AgentAuth, AgentInfo, AgentToRelay, Party, RefuseCode, RelayToAgent, SessionState,
};
use lifeline_proto::ticket::TicketFile;
use lifeline_proto::{VERSION, encode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type ServerWs = WebSocketStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A TLS WebSocket server on 127.0.0.1:0 that hands each accepted connection to the test.
struct TestBox {
    url: String,
    pin: String,
    conns: mpsc::Receiver<ServerWs>,
}

impl TestBox {
    async fn start() -> TestBox {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let pin = cert_sha256_hex(&der);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    // A refused TLS handshake (wrong pin) simply ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_async(tls).await {
                        let _ = tx.send(ws).await;
                    }
                });
            }
        });
        TestBox { url, pin, conns }
    }

    async fn accept(&mut self) -> ServerWs {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("agent connects")
            .expect("server running")
    }

    fn ticket(&self, pin: &str) -> TicketFile {
        TicketFile {
            site_url: self.url.clone(),
            cert_sha256: pin.to_owned(),
            ticket: "ticket.sig".into(),
            expires_at: i64::MAX,
            language: "en".into(),
            customer_name: "Jörg".into(),
            site_name: "Test U".into(),
            kind: Default::default(),
        }
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        env: Env::default(),
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
            give_up_after: Duration::from_secs(10),
        },
        ..SessionConfig::default()
    }
}

fn info() -> AgentInfo {
    AgentInfo {
        customer_name: "Jörg".into(),
        computer: "pc-1".into(),
        platform: "Linux x86_64".into(),
        language: "en".into(),
    }
}

async fn recv(ws: &mut ServerWs) -> AgentToRelay {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(text) = msg {
            return AgentToRelay::decode(text.as_str()).expect("valid agent message");
        }
    }
}

async fn send(ws: &mut ServerWs, msg: RelayToAgent) {
    ws.send(Message::text(encode(&msg))).await.unwrap();
}

async fn event(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("event in time")
        .expect("session alive")
}

fn welcome(state: SessionState) -> RelayToAgent {
    RelayToAgent::Welcome {
        version: VERSION,
        session_id: "s-1".into(),
        resume_token: "tok-1".into(),
        site: "Test U".into(),
        state,
        rep_name: None,
    }
}

#[tokio::test]
async fn right_pin_runs_a_session() {
    let mut server = TestBox::start().await;
    let (handle, mut events) = Session::start_with(server.ticket(&server.pin), info(), config());
    let mut ws = server.accept().await;

    match recv(&mut ws).await {
        AgentToRelay::Hello {
            version,
            auth,
            info: got,
        } => {
            assert_eq!(version, VERSION);
            assert_eq!(
                auth,
                AgentAuth::Ticket {
                    ticket: "ticket.sig".into()
                }
            );
            assert_eq!(got, info());
        }
        other => panic!("expected hello, got {other:?}"),
    }
    send(&mut ws, welcome(SessionState::Terms)).await;
    assert_eq!(
        event(&mut events).await,
        Event::Connected {
            site: "Test U".into(),
            rep_name: None,
            state: SessionState::Terms
        }
    );

    handle.accept_terms();
    assert_eq!(recv(&mut ws).await, AgentToRelay::AcceptTerms);
    send(&mut ws, RelayToAgent::Queue { position: 2 }).await;
    assert_eq!(event(&mut events).await, Event::Queue { position: 2 });
    send(
        &mut ws,
        RelayToAgent::RepJoined {
            name: "Alice".into(),
        },
    )
    .await;
    assert_eq!(
        event(&mut events).await,
        Event::RepJoined {
            name: "Alice".into()
        }
    );
    send(
        &mut ws,
        RelayToAgent::Chat {
            from: Party::Rep,
            name: "Alice".into(),
            text: "Hello\u{1b}[31m there".into(),
            at: 1_700_000_000_000,
        },
    )
    .await;
    assert_eq!(
        event(&mut events).await,
        Event::Chat {
            from: Party::Rep,
            name: "Alice".into(),
            text: "Hello[31m there".into(),
            at: 1_700_000_000_000
        }
    );

    handle.chat("  Grüß Gott  ");
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Chat {
            text: "Grüß Gott".into()
        }
    );
    send(&mut ws, RelayToAgent::Ping { nonce: 42 }).await;
    assert_eq!(recv(&mut ws).await, AgentToRelay::Pong { nonce: 42 });

    handle.end("done");
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::End {
            reason: "done".into()
        }
    );
    send(
        &mut ws,
        RelayToAgent::Ended {
            by: Party::Customer,
            reason: "done".into(),
        },
    )
    .await;
    assert_eq!(
        event(&mut events).await,
        Event::Ended {
            by: Party::Customer,
            reason: "done".into()
        }
    );
    tokio::time::timeout(WAIT, handle.finished())
        .await
        .expect("driver stops");
    assert!(handle.is_finished());
    assert!(!handle.chat("too late"));
}

#[tokio::test]
async fn wrong_pin_is_refused() {
    let server = TestBox::start().await;
    let wrong = cert_sha256_hex(b"some other certificate");
    let ticket = server.ticket(&wrong);

    let err = net::connect(&ticket, &Env::default()).await.unwrap_err();
    match &err {
        NetError::PinMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(presented, &server.pin);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("presented a different certificate than expected")
    );

    // The session gives up at once (no retry can fix a wrong certificate).
    let (_handle, mut events) = Session::start_with(ticket, info(), config());
    match event(&mut events).await {
        Event::Fatal { message } => {
            assert!(message.contains("refused for your safety"), "{message}")
        }
        other => panic!("expected fatal, got {other:?}"),
    }
}

#[tokio::test]
async fn right_pin_connects_directly() {
    let mut server = TestBox::start().await;
    let ticket = server.ticket(&server.pin.to_ascii_uppercase());
    let _client = net::connect(&ticket, &Env::default()).await.unwrap();
    let _ws = server.accept().await;
}

#[tokio::test]
async fn dropped_link_resumes_with_token() {
    let mut server = TestBox::start().await;
    let (handle, mut events) = Session::start_with(server.ticket(&server.pin), info(), config());
    let mut ws = server.accept().await;
    assert!(matches!(recv(&mut ws).await, AgentToRelay::Hello { .. }));
    send(&mut ws, welcome(SessionState::Waiting)).await;
    assert!(matches!(
        event(&mut events).await,
        Event::Connected {
            state: SessionState::Waiting,
            ..
        }
    ));

    // The box goes away mid-session.
    drop(ws);
    assert_eq!(event(&mut events).await, Event::Reconnecting { attempt: 1 });
    handle.chat("are you there?");

    let mut ws = server.accept().await;
    match recv(&mut ws).await {
        AgentToRelay::Hello { auth, .. } => assert_eq!(
            auth,
            AgentAuth::Resume {
                session_id: "s-1".into(),
                token: "tok-1".into()
            }
        ),
        other => panic!("expected hello, got {other:?}"),
    }
    send(&mut ws, welcome(SessionState::Active)).await;
    assert_eq!(event(&mut events).await, Event::LinkRestored);
    // Chat typed while the link was down is delivered after it is restored.
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Chat {
            text: "are you there?".into()
        }
    );

    // If the box says the session is over when we come back, that is the end.
    drop(ws);
    assert_eq!(event(&mut events).await, Event::Reconnecting { attempt: 1 });
    let mut ws = server.accept().await;
    assert!(matches!(
        recv(&mut ws).await,
        AgentToRelay::Hello {
            auth: AgentAuth::Resume { .. },
            ..
        }
    ));
    send(
        &mut ws,
        RelayToAgent::Refused {
            code: RefuseCode::SessionEnded,
            message: "The session has ended.".into(),
        },
    )
    .await;
    assert_eq!(
        event(&mut events).await,
        Event::Ended {
            by: Party::System,
            reason: "The session has ended.".into()
        }
    );
    tokio::time::timeout(WAIT, handle.finished())
        .await
        .expect("driver stops");
}

#[tokio::test]
async fn unreachable_box_is_fatal_after_a_few_tries() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ticket = TicketFile {
        site_url: format!("https://127.0.0.1:{port}"),
        cert_sha256: "ab".repeat(32),
        ticket: "t".into(),
        expires_at: i64::MAX,
        language: String::new(),
        customer_name: String::new(),
        site_name: String::new(),
        kind: Default::default(),
    };
    let (_handle, mut events) = Session::start_with(ticket, info(), config());
    match event(&mut events).await {
        Event::Fatal { message } => assert!(message.contains("could not reach"), "{message}"),
        other => panic!("expected fatal, got {other:?}"),
    }
}

/// A minimal HTTP CONNECT proxy on loopback that records the request lines it tunnels.
async fn connect_proxy(answer: &'static str) -> (String, mpsc::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://proxyuser:secret@{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let _ = tx.send(head.clone()).await;
                if !answer.starts_with("HTTP/1.1 200") {
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.write_all(answer.as_bytes()).await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn https_proxy_is_used_through_connect() {
    let mut server = TestBox::start().await;
    let (proxy, mut seen) = connect_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let env = Env::from_pairs([("https_proxy", proxy.as_str())]);
    let ticket = server.ticket(&server.pin);
    let _client = net::connect(&ticket, &env).await.unwrap();
    let _ws = server.accept().await;
    let head = seen.recv().await.unwrap();
    let authority = server.url.trim_start_matches("https://");
    assert!(
        head.starts_with(&format!("CONNECT {authority} HTTP/1.1\r\n")),
        "{head}"
    );
    // user:password → Basic credentials
    assert!(
        head.contains("Proxy-Authorization: Basic cHJveHl1c2VyOnNlY3JldA=="),
        "{head}"
    );

    // no_proxy bypasses it; a refusing proxy is an error that says so.
    let env = Env::from_pairs([("https_proxy", proxy.as_str()), ("no_proxy", "127.0.0.1")]);
    let _direct = net::connect(&ticket, &env).await.unwrap();
    let _ws = server.accept().await;
    let (refusing, _seen) =
        connect_proxy("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
    let env = Env::from_pairs([("https_proxy", refusing.as_str())]);
    let err = net::connect(&ticket, &env).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

/// A desktop that offers screen and control (and nothing else) but cannot be opened: the
/// consent flow needs no real screen.
#[derive(Debug)]
struct ScreenAndControl;

impl lifeline_agent::desktop::Desktop for ScreenAndControl {
    fn offers(&self, p: lifeline_proto::remote::Permission) -> bool {
        use lifeline_proto::remote::Permission;
        matches!(p, Permission::View | Permission::Control)
    }
    fn screen(&self) -> Result<Box<dyn lifeline_agent::screen::ScreenSource>, String> {
        Err("no screen in this test".into())
    }
    fn input(&self) -> Result<Box<dyn lifeline_agent::desktop::Injector>, String> {
        Err("no input in this test".into())
    }
    fn clipboard(
        &self,
        _: mpsc::Sender<String>,
    ) -> Result<Box<dyn lifeline_agent::desktop::ClipboardText>, String> {
        Err("no clipboard in this test".into())
    }
}

#[tokio::test]
async fn permissions_are_asked_answered_timed_out_and_announced_again_after_a_reconnect() {
    use lifeline_agent::consent::Change;
    use lifeline_proto::remote::Permission;

    let mut server = TestBox::start().await;
    let cfg = SessionConfig {
        ask_timeout: Duration::from_millis(800),
        desktop: Some(Arc::new(ScreenAndControl)),
        ..config()
    };
    let (handle, mut events) = Session::start_with(server.ticket(&server.pin), info(), cfg);
    let mut ws = server.accept().await;
    assert!(matches!(recv(&mut ws).await, AgentToRelay::Hello { .. }));
    send(&mut ws, welcome(SessionState::Active)).await;
    assert!(matches!(event(&mut events).await, Event::Connected { .. }));
    let ask = |permission| RelayToAgent::PermissionRequest {
        permission,
        rep: "Rémi".into(),
    };

    // Asked, then allowed by the customer.
    send(&mut ws, ask(Permission::View)).await;
    match event(&mut events).await {
        Event::PermissionAsked {
            permission: Permission::View,
            rep,
            expires_in,
        } => {
            assert_eq!(rep, "Rémi");
            assert!(expires_in <= Duration::from_millis(800));
        }
        other => panic!("expected a question, got {other:?}"),
    }
    handle.permission(Permission::View, true);
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Permission {
            permission: Permission::View,
            granted: true
        }
    );
    assert_eq!(
        event(&mut events).await,
        Event::Permission {
            permission: Permission::View,
            change: Change::Granted
        }
    );

    // Not answered: refused when the time is up, and a late answer changes nothing.
    send(&mut ws, ask(Permission::Control)).await;
    assert!(matches!(
        event(&mut events).await,
        Event::PermissionAsked {
            permission: Permission::Control,
            ..
        }
    ));
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Permission {
            permission: Permission::Control,
            granted: false
        }
    );
    assert_eq!(
        event(&mut events).await,
        Event::Permission {
            permission: Permission::Control,
            change: Change::TimedOut
        }
    );
    handle.permission(Permission::Control, true);

    // Something this computer does not offer is refused at once, without a question (file
    // transfer: this session has no home folder to share).
    send(&mut ws, ask(Permission::FileTransfer)).await;
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Permission {
            permission: Permission::FileTransfer,
            granted: false
        }
    );
    assert_eq!(
        event(&mut events).await,
        Event::Permission {
            permission: Permission::FileTransfer,
            change: Change::Unavailable
        }
    );

    // After a dropped link the standing grant is announced again.
    drop(ws);
    assert_eq!(event(&mut events).await, Event::Reconnecting { attempt: 1 });
    let mut ws = server.accept().await;
    assert!(matches!(recv(&mut ws).await, AgentToRelay::Hello { .. }));
    send(&mut ws, welcome(SessionState::Active)).await;
    assert_eq!(event(&mut events).await, Event::LinkRestored);
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Permission {
            permission: Permission::View,
            granted: true
        }
    );

    // Revoked by the customer.
    handle.permission(Permission::View, false);
    assert_eq!(
        recv(&mut ws).await,
        AgentToRelay::Permission {
            permission: Permission::View,
            granted: false
        }
    );
    assert_eq!(
        event(&mut events).await,
        Event::Permission {
            permission: Permission::View,
            change: Change::Revoked
        }
    );
    handle.end("done");
    tokio::time::timeout(WAIT, handle.finished())
        .await
        .expect("driver stops");
}
