//! The measuring console: a viewer on `/ws/view/{session}` (bearer token, TLS pinned to the
//! relay's certificate) that behaves like the browser's viewer — it decodes every screen
//! message into its picture ([`Canvas`]) and acknowledges each finished frame once drawn —
//! and counts what arrives: bytes and messages of the screen and cursor channels, finished
//! frames, rectangles by encoding, the time of the last binary message.
//!
//! It can also send the representative's input (`Input` events), which the relay forwards
//! to the agent while `control` is granted.
//!
//! Design: one task reads (and decodes, and queues the acks), one writes; counters and the
//! picture sit behind two separate locks so reading a counter never waits for a decode.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lifeline_proto::encode;
use lifeline_proto::remote::{InputEvent, StreamSettings};
use lifeline_proto::viewer::{RelayToViewer, ViewerToRelay};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::canvas::Canvas;
use super::error::{BenchError, Result};
use super::relay::pinned_tls;

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub screen_bytes: u64,
    pub screen_msgs: u64,
    pub cursor_bytes: u64,
    pub cursor_msgs: u64,
    /// Screen frames finished (and drawn).
    pub frames: u64,
    pub key_frames: u64,
    pub jpeg: u64,
    pub png: u64,
    pub solid: u64,
    pub copy: u64,
    pub palette: u64,
    pub last_binary: Option<Instant>,
    pub decode_errors: u64,
    pub last_error: Option<String>,
    /// Why the socket closed, once it did.
    pub closed: Option<String>,
    pub hello: bool,
}

impl Counts {
    /// Bytes of the agent's stream (screen and cursor messages, frame headers included).
    pub fn bytes(&self) -> u64 {
        self.screen_bytes + self.cursor_bytes
    }
}

pub struct Console {
    counts: Arc<Mutex<Counts>>,
    canvas: Arc<Mutex<Canvas>>,
    out: mpsc::UnboundedSender<Message>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Console {
    /// Connects to `connect_to` (the relay, or a proxy in front of it) as host `host`.
    pub async fn open(
        connect_to: &str,
        host: &str,
        pin: &str,
        token: &str,
        sid: &str,
    ) -> Result<Console> {
        let tcp = tokio::net::TcpStream::connect(connect_to)
            .await
            .map_err(BenchError::io(format!("cannot connect to {connect_to}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(Arc::new(pinned_tls(pin, &[b"http/1.1"])?))
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1".to_owned())
                    .map_err(|e| BenchError::Viewer(e.to_string()))?,
                tcp,
            )
            .await
            .map_err(BenchError::io("TLS to the relay"))?;
        let mut req = format!("wss://{host}/ws/view/{sid}")
            .into_client_request()
            .map_err(|e| BenchError::Viewer(e.to_string()))?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| BenchError::Viewer("bad token".into()))?,
        );
        let config = WebSocketConfig::default()
            .max_message_size(Some(lifeline_agent::net::MAX_WS_MESSAGE))
            .max_frame_size(Some(lifeline_agent::net::MAX_WS_MESSAGE));
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, tls, Some(config))
            .await
            .map_err(|e| BenchError::Viewer(format!("upgrade refused: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let canvas = Arc::new(Mutex::new(Canvas::new()));
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
        });
        let (c, p, acks) = (counts.clone(), canvas.clone(), out.clone());
        let reader = tokio::spawn(async move {
            let why = loop {
                let m = match stream.next().await {
                    None => break "closed by the relay".to_owned(),
                    Some(Err(e)) => break format!("read failed: {e}"),
                    Some(Ok(m)) => m,
                };
                match m {
                    Message::Binary(b) => {
                        let now = Instant::now();
                        {
                            let mut k = lock(&c);
                            k.last_binary = Some(now);
                        }
                        // Decode (like the browser draws), then acknowledge.
                        let applied = lock(&p).apply(&b);
                        let mut k = lock(&c);
                        match applied {
                            Ok(a) => {
                                if a.screen {
                                    k.screen_bytes += b.len() as u64;
                                    k.screen_msgs += 1;
                                } else {
                                    k.cursor_bytes += b.len() as u64;
                                    k.cursor_msgs += 1;
                                }
                                k.jpeg += a.jpeg as u64;
                                k.png += a.png as u64;
                                k.solid += a.solid as u64;
                                k.copy += a.copy as u64;
                                k.palette += a.palette as u64;
                                if a.screen && a.end_of_frame {
                                    k.frames += 1;
                                    k.key_frames += u64::from(a.key);
                                    let ack = ViewerToRelay::Ack { frame: a.frame };
                                    let _ = acks.send(Message::text(encode(&ack)));
                                }
                            }
                            Err(e) => {
                                k.screen_bytes += b.len() as u64;
                                k.decode_errors += 1;
                                k.last_error = Some(e.to_string());
                            }
                        }
                    }
                    Message::Text(t) => match RelayToViewer::decode(t.as_str()) {
                        Ok(RelayToViewer::Hello { .. }) => lock(&c).hello = true,
                        Ok(RelayToViewer::Ended { reason }) => {
                            break format!("the session ended: {reason}");
                        }
                        Ok(RelayToViewer::Error { code, message }) => {
                            lock(&c).last_error =
                                Some(format!("relay refused ({code:?}): {message}"));
                        }
                        Ok(_) => {}
                        Err(e) => lock(&c).last_error = Some(format!("bad text message: {e}")),
                    },
                    Message::Close(f) => break format!("closed by the relay: {f:?}"),
                    _ => {}
                }
            };
            lock(&c).closed = Some(why);
        });
        Ok(Console {
            counts,
            canvas,
            out,
            tasks: vec![writer, reader],
        })
    }

    pub fn counts(&self) -> Counts {
        lock(&self.counts).clone()
    }

    /// `Err` once the socket closed or a message did not decode.
    pub fn check(&self) -> Result<()> {
        let k = lock(&self.counts);
        if let Some(why) = &k.closed {
            return Err(BenchError::Viewer(why.clone()));
        }
        if k.decode_errors > 0 {
            return Err(BenchError::Viewer(format!(
                "{} messages did not decode; the last: {}",
                k.decode_errors,
                k.last_error.clone().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// The picture's pixels of an area.
    pub fn picture(&self, x: i32, y: i32, w: u32, h: u32) -> Vec<u32> {
        lock(&self.canvas).area(x, y, w, h)
    }

    /// Chooses the monitor and quality, like the console's pickers.
    pub fn stream(&self, settings: StreamSettings) -> Result<()> {
        self.out
            .send(Message::text(encode(&ViewerToRelay::Stream { settings })))
            .map_err(|_| BenchError::Viewer("the socket is closed".into()))
    }

    pub fn input(&self, event: InputEvent) -> Result<()> {
        self.out
            .send(Message::text(encode(&ViewerToRelay::Input { event })))
            .map_err(|_| BenchError::Viewer("the socket is closed".into()))
    }

    /// Waits (polling, with a deadline) until `f` holds for the counters.
    pub fn wait(&self, what: &str, limit: Duration, f: impl Fn(&Counts) -> bool) -> Result<()> {
        super::procs::poll_until(what, limit, Duration::from_millis(20), || {
            self.check()?;
            Ok(f(&self.counts()).then_some(()))
        })
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
