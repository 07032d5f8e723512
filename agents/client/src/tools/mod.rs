//! The session tools the representative may use once the customer allows them: for now
//! the system-information report ([`sysinfo`]).
//!
//! [`Tools`] is the session's side: it knows what the customer granted, starts gathering
//! on a thread of its own when the box asks (one report at a time), and hands the messages
//! to send to the session's driver through a bounded channel ([`Tools::next`]), so that a
//! big report goes out part by part without holding up the session's other traffic.
//!
//! Limits: a report asked for while the link was down is sent once it is back (the box
//! drops parts of requests it no longer waits for).

pub mod sysinfo;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lifeline_proto::agent::AgentToRelay;
use lifeline_proto::remote::Permission;
use lifeline_proto::tools::report_chunks;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Messages waiting for the driver; the gathering thread waits when it is full.
const QUEUE: usize = 8;

/// The session's tools.
pub struct Tools {
    tx: mpsc::Sender<AgentToRelay>,
    rx: mpsc::Receiver<AgentToRelay>,
    system_info: bool,
    busy: Arc<AtomicBool>,
    limits: sysinfo::Limits,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("system_info", &self.system_info)
            .finish()
    }
}

impl Default for Tools {
    fn default() -> Self {
        Self::new(sysinfo::Limits::default())
    }
}

impl Tools {
    pub fn new(limits: sysinfo::Limits) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx,
            system_info: false,
            busy: Arc::new(AtomicBool::new(false)),
            limits,
        }
    }

    /// Whether this computer can offer `permission` through the tools.
    pub fn offers(permission: Permission) -> bool {
        permission == Permission::SystemInfo && cfg!(target_os = "linux")
    }

    /// A grant changed.
    pub fn set_grant(&mut self, permission: Permission, granted: bool) {
        if permission == Permission::SystemInfo {
            self.system_info = granted;
        }
    }

    fn refuse(&self, request: u32, reason: &str) {
        warn!("event=system_info_refused request={request} reason={reason:?}");
        let _ = self.tx.try_send(AgentToRelay::SystemInfoFailed {
            request,
            reason: reason.into(),
        });
    }

    /// The box asks for the report `request`.
    pub fn system_info(&mut self, request: u32) {
        if !self.system_info {
            return self.refuse(request, "the customer has not allowed system information");
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return self.refuse(request, "a report is already being gathered");
        }
        info!("event=system_info_started request={request}");
        let (tx, busy, limits) = (self.tx.clone(), self.busy.clone(), self.limits);
        let spawned = std::thread::Builder::new()
            .name("sysinfo".into())
            .spawn(move || {
                let report = sysinfo::gather(limits);
                let took = report.took_ms;
                let problems = report.problems.len();
                let json = sysinfo::encode_bounded(report);
                let parts = report_chunks(&json);
                let n = parts.len();
                for (i, data) in parts.into_iter().enumerate() {
                    let msg = AgentToRelay::SystemInfo {
                        request,
                        part: i as u32,
                        last: i + 1 == n,
                        data: data.to_owned(),
                    };
                    if tx.blocking_send(msg).is_err() {
                        break;
                    }
                }
                info!(
                    "event=system_info_sent request={request} bytes={} parts={n} took_ms={took} problems={problems}",
                    json.len()
                );
                busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            self.refuse(request, &format!("cannot start gathering: {e}"));
        }
    }

    /// The next message to send to the box.
    pub async fn next(&mut self) -> AgentToRelay {
        match self.rx.recv().await {
            Some(m) => m,
            // We hold a sender ourselves, so the channel never closes.
            None => std::future::pending().await,
        }
    }
}
