//! A stand-in for the box's agent endpoint, to try the window by hand:
//!
//! ```text
//! cargo run -p lifeline-agent --example fake_box -- /tmp/ticket.json
//! target/debug/lifeline-agent --ticket-file /tmp/ticket.json
//! ```
//!
//! It writes a ticket pinned to its fresh self-signed certificate, welcomes the agent on the
//! terms screen, puts it first in line after the terms are accepted, lets "Alice" join two
//! seconds later, greets, asks to see the screen and to control it, watches the screen once
//! allowed (counting and acknowledging frames), and echoes every chat line back. Everything it receives is printed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lifeline_proto::agent::{AgentToRelay, Party, RelayToAgent, SessionState};
use lifeline_proto::remote::Permission;
use lifeline_proto::ticket::TicketFile;
use lifeline_proto::{VERSION, encode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let path = std::env::args().nth(1).unwrap_or("/tmp/ticket.json".into());
    let language = std::env::args().nth(2).unwrap_or_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let pin = lifeline_agent::net::cert_sha256_hex(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ticket = TicketFile {
        site_url: format!("https://{}", listener.local_addr().unwrap()),
        cert_sha256: pin,
        ticket: "fake.ticket".into(),
        expires_at: i64::MAX,
        language,
        customer_name: String::new(),
        site_name: "Example University".into(),
        kind: Default::default(),
    };
    std::fs::write(&path, encode(&ticket)).unwrap();
    println!("ticket written to {path}");
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                return;
            };
            let say = |m: RelayToAgent| Message::text(encode(&m));
            let mut frames = 0u64;
            let mut bytes = 0u64;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Binary(b) = &msg {
                    // A screen or cursor frame: count it, and acknowledge each finished frame
                    // at once (a console that keeps up).
                    frames += 1;
                    bytes += b.len() as u64;
                    if let Ok((h, payload)) = lifeline_proto::frame::decode(b)
                        && h.channel == lifeline_proto::frame::Channel::Screen
                        && let Ok(u) = lifeline_proto::screen::decode_update(payload)
                        && u.end_of_frame()
                    {
                        println!(
                            "frame {} ({frames} messages, {bytes} bytes so far)",
                            u.frame
                        );
                        ws.send(say(RelayToAgent::FrameAck { frame: u.frame }))
                            .await
                            .ok();
                    }
                    continue;
                }
                let Message::Text(text) = msg else { continue };
                println!("received {text}");
                let Ok(msg) = AgentToRelay::decode(text.as_str()) else {
                    continue;
                };
                let replies = match msg {
                    AgentToRelay::Hello { .. } => vec![say(RelayToAgent::Welcome {
                        version: VERSION,
                        session_id: "fake-session".into(),
                        resume_token: "fake-token".into(),
                        site: "Example University".into(),
                        state: SessionState::Terms,
                        rep_name: None,
                    })],
                    AgentToRelay::AcceptTerms => {
                        ws.send(say(RelayToAgent::Queue { position: 1 })).await.ok();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        vec![
                            say(RelayToAgent::RepJoined {
                                name: "Alice".into(),
                            }),
                            say(RelayToAgent::Chat {
                                from: Party::Rep,
                                name: "Alice".into(),
                                text: "Hello! How can I help you today?".into(),
                                at: 0,
                            }),
                            say(RelayToAgent::PermissionRequest {
                                permission: Permission::View,
                                rep: "Alice".into(),
                            }),
                            say(RelayToAgent::PermissionRequest {
                                permission: Permission::Control,
                                rep: "Alice".into(),
                            }),
                        ]
                    }
                    AgentToRelay::Chat { text } => vec![say(RelayToAgent::Chat {
                        from: Party::Rep,
                        name: "Alice".into(),
                        text: format!("You said: {text}"),
                        at: 0,
                    })],
                    AgentToRelay::End { reason } => vec![say(RelayToAgent::Ended {
                        by: Party::Customer,
                        reason,
                    })],
                    AgentToRelay::Permission {
                        permission: Permission::View,
                        granted: true,
                    } => vec![say(RelayToAgent::Stream {
                        active: true,
                        settings: Default::default(),
                    })],
                    AgentToRelay::Pong { .. }
                    | AgentToRelay::Permission { .. }
                    | AgentToRelay::Monitors { .. }
                    | AgentToRelay::Clipboard { .. }
                    | AgentToRelay::File { .. }
                    | AgentToRelay::SystemInfo { .. }
                    | AgentToRelay::SystemInfoFailed { .. }
                    | AgentToRelay::ProcessEnd { .. }
                    | AgentToRelay::Installed { .. }
                    | AgentToRelay::Shell { .. } => vec![],
                };
                for r in replies {
                    if ws.send(r).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}
