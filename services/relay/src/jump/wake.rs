//! Waking a passive jump client (see [`lifeline_proto::jump::Wake`]).
//!
//! # How it works
//! [`Jumps::wake`] signs a [`Wake`] (the client's id, now, a fresh random nonce) with the
//! box's wake key (`<data>/wake.key`), opens a TCP connection to the address the client last
//! connected from and the wake port it registered, writes the one line and closes. It then
//! waits for that client's `Woken` link ([`crate::web::ws_jump`] calls [`Jumps::woken`] when
//! one is attached) and returns the sender of orders to it. A client already connected is
//! not woken: its link's sender is returned at once.
//!
//! # Limits
//! The box must reach the client's address directly (the same network, or a port forwarded
//! to it); a client behind a NAT that does not forward its wake port can only be reached at
//! its next check-in. Waiting callers are remembered per client in a small map that is
//! cleaned when they time out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ed25519_dalek::Signer as _;
use lifeline_proto::jump::{Wake, wake_line};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::{Jumps, OrderSender, store};
use crate::db::{Db, DbError};

/// How long sending the wake line may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Jumps::wake`] waits for the client to connect.
pub const WOKEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("there is no jump client {0:?}")]
    NotFound(String),
    #[error("the jump client {0:?} was removed")]
    Removed(String),
    #[error("the jump client {0:?} has not told the box where it can be woken yet")]
    NoAddress(String),
    #[error("cannot send the wake-up to {addr}")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the jump client {0:?} did not connect within 30 seconds of its wake-up")]
    NoAnswer(String),
    #[error("cannot read the jump client")]
    Store(#[from] DbError),
}

/// Callers waiting for clients' `Woken` links.
pub(super) type Waiters = HashMap<Box<str>, Vec<oneshot::Sender<OrderSender>>>;

impl Jumps {
    /// A signed wake-up line for `client_id`, issued now with a fresh nonce.
    pub fn wake_line(&self, client_id: &str) -> String {
        let wake = Wake {
            client_id: client_id.to_string(),
            issued_at: crate::db::now_ms(),
            nonce: crate::auth::random_token(18),
        };
        let payload = serde_json::to_vec(&wake).unwrap_or_default();
        let signature = self.wake_key.sign(&payload);
        wake_line(&payload, &signature.to_bytes())
    }

    /// Sends a wake-up line to `client_id`'s recorded address and wake port, without waiting
    /// for it to connect (also to a removed client: it then hears that it was removed).
    pub async fn send_wake(&self, db: &Db, client_id: &str) -> Result<(), WakeError> {
        let no_address = || WakeError::NoAddress(client_id.into());
        let (address, port) = store::wake_target(db, client_id)
            .await?
            .ok_or_else(|| WakeError::NotFound(client_id.into()))?;
        let ip: IpAddr = address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(no_address)?;
        let addr = SocketAddr::new(ip, port.ok_or_else(no_address)?);
        let line = self.wake_line(client_id);
        let send = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(line.as_bytes()).await?;
            s.shutdown().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(WakeError::Unreachable { addr, source }),
            Err(_) => Err(WakeError::Unreachable {
                addr,
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    /// Wakes `client_id` and waits (at most [`WOKEN_TIMEOUT`]) for its `Woken` link; returns
    /// the sender of orders to it. A connected client is returned at once.
    pub async fn wake(&self, db: &Db, client_id: &str) -> Result<OrderSender, WakeError> {
        if let Some(tx) = self.orders(client_id) {
            return Ok(tx);
        }
        let Some(row) = store::client(db, client_id).await? else {
            return Err(WakeError::NotFound(client_id.into()));
        };
        if row.removed {
            return Err(WakeError::Removed(client_id.into()));
        }
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(client_id.into())
            .or_default()
            .push(tx);
        let result = async {
            // It may have connected between the first look and the waiter.
            if let Some(tx) = self.orders(client_id) {
                return Ok(tx);
            }
            self.send_wake(db, client_id).await?;
            tokio::time::timeout(WOKEN_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| WakeError::NoAnswer(client_id.into()))
        }
        .await;
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = waiters.get_mut(client_id) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(client_id);
            }
        }
        result
    }

    /// A client's `Woken` link was attached: hands its sender of orders to those waiting.
    pub fn woken(&self, client_id: &str) {
        let Some(tx) = self.orders(client_id) else {
            return;
        };
        let waiting = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client_id);
        for w in waiting.into_iter().flatten() {
            let _ = w.send(tx.clone());
        }
    }

    /// The sender of orders to `client_id`'s current link, if it is connected.
    pub fn orders(&self, client_id: &str) -> Option<OrderSender> {
        self.online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(client_id)
            .map(|o| o.orders.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;

    #[test]
    fn wake_lines_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let j = Jumps::new(Default::default(), &dir.path().join("wake.key")).unwrap();
        let line = j.wake_line("jc_1");
        let parsed = lifeline_proto::jump::parse_wake_line(line.as_bytes()).unwrap();
        assert_eq!(parsed.wake.client_id, "jc_1");
        let sig = ed25519_dalek::Signature::from_slice(&parsed.signature).unwrap();
        assert!(
            j.wake_key
                .verifying_key()
                .verify(&parsed.payload, &sig)
                .is_ok()
        );
        // Every line has its own nonce.
        let again = lifeline_proto::jump::parse_wake_line(j.wake_line("jc_1").as_bytes()).unwrap();
        assert_ne!(again.wake.nonce, parsed.wake.nonce);
    }
}
