//! A TCP proxy on loopback that counts the bytes each way: the bytes server → client are the
//! figure for the VNC peer, and for our own stream the bytes on the wire to the console (TLS
//! and WebSocket framing and the relay's keepalives included).
//!
//! One listener, any number of connections, each copied both ways by two tasks on the
//! benchmark's runtime; the counters are shared atomics, with the time of the last byte
//! server → client (to tell when the stream has gone quiet).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::error::{BenchError, Result};

#[derive(Debug)]
pub struct Counters {
    pub to_client: AtomicU64,
    pub to_server: AtomicU64,
    /// Microseconds after `epoch` of the last byte to the client (0: none yet).
    last_to_client_us: AtomicU64,
    epoch: Instant,
}

impl Counters {
    pub fn last_to_client(&self) -> Option<Instant> {
        match self.last_to_client_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.epoch + std::time::Duration::from_micros(us)),
        }
    }
}

pub struct Proxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: String) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io(
                "cannot listen on loopback for the counting proxy",
            ))?;
        let port = listener
            .local_addr()
            .map_err(BenchError::io("the counting proxy's address"))?
            .port();
        let counters = Arc::new(Counters {
            to_client: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            last_to_client_us: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let c = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = copy(cr, sw, c.clone(), false);
                    let down = copy(sr, cw, c, true);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(Proxy {
            port,
            counters,
            task,
        })
    }

    pub fn to_client(&self) -> u64 {
        self.counters.to_client.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    c: Arc<Counters>,
    to_client: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to_client {
            c.to_client.fetch_add(n as u64, Ordering::Relaxed);
            let us = c.epoch.elapsed().as_micros().max(1) as u64;
            c.last_to_client_us.store(us, Ordering::Relaxed);
        } else {
            c.to_server.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
