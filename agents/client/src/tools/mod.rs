//! The session tools the representative may use once the customer allows them: the
//! system-information report ([`sysinfo`]) and ending a process, which the customer
//! agrees to one request at a time, and the command shell ([`shell`]).
//!
//! [`Tools`] is the session's side: it knows what the customer granted, starts gathering
//! on a thread of its own when the box asks (one report at a time), and hands the messages
//! to send to the session's driver through a bounded channel ([`Tools::next`]), so that a
//! big report goes out part by part without holding up the session's other traffic.
//!
//! A request to end a process waits for the customer's answer until its deadline (no answer
//! is a refusal), and all waiting requests are refused when `system_info` is withdrawn.
//!
//! Offers to install a jump client or a support button ([`install`]) wait for the customer's
//! answer the same way.
//!
//! Limits: a report asked for while the link was down is sent once it is back (the box
//! drops parts of requests it no longer waits for).

pub mod install;
pub mod shell;
pub mod sysinfo;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lifeline_proto::agent::AgentToRelay;
use lifeline_proto::remote::Permission;
use lifeline_proto::tools::{EndOutcome, report_chunks};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

/// Messages waiting for the driver; the gathering thread waits when it is full.
const QUEUE: usize = 8;
/// Most requests to end a process waiting for the customer at once.
const MAX_END_ASKS: usize = 4;

/// A request to end a process, waiting for the customer's answer.
#[derive(Debug, Clone)]
struct EndAsk {
    request: u32,
    pid: u32,
    name: String,
    deadline: Instant,
}

/// What became of a request to end a process, for the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndDone {
    pub request: u32,
    pub pid: u32,
    pub name: String,
    pub outcome: EndOutcome,
}

/// The session's tools.
pub struct Tools {
    tx: mpsc::Sender<AgentToRelay>,
    rx: mpsc::Receiver<AgentToRelay>,
    system_info: bool,
    busy: Arc<AtomicBool>,
    limits: sysinfo::Limits,
    end_asks: Vec<EndAsk>,
    offers: install::Offers,
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
            end_asks: Vec::new(),
            offers: install::Offers::default(),
        }
    }

    /// Whether this computer can offer `permission` through the tools.
    pub fn offers(permission: Permission) -> bool {
        permission == Permission::SystemInfo && cfg!(target_os = "linux")
    }

    /// A grant changed; withdrawing `system_info` refuses the waiting end requests.
    pub fn set_grant(&mut self, permission: Permission, granted: bool) -> Vec<EndDone> {
        if permission != Permission::SystemInfo {
            return Vec::new();
        }
        self.system_info = granted;
        if granted {
            return Vec::new();
        }
        let asks = std::mem::take(&mut self.end_asks);
        asks.into_iter()
            .map(|a| {
                self.finish(
                    a,
                    EndOutcome::Refused,
                    "system information was withdrawn".into(),
                )
            })
            .collect()
    }

    fn finish(&self, ask: EndAsk, outcome: EndOutcome, message: String) -> EndDone {
        info!(
            "event=end_process request={} pid={} outcome={} message={message:?}",
            ask.request,
            ask.pid,
            outcome.as_str()
        );
        let _ = self.tx.try_send(AgentToRelay::ProcessEnd {
            request: ask.request,
            pid: ask.pid,
            outcome,
            message,
        });
        EndDone {
            request: ask.request,
            pid: ask.pid,
            name: ask.name,
            outcome,
        }
    }

    /// The box asks to end process `pid` (`name` as the report showed it); the deadline of
    /// the customer's answer, or `None` when it was refused at once.
    pub fn end_process_asked(
        &mut self,
        request: u32,
        pid: u32,
        name: &str,
        timeout: Duration,
    ) -> Option<Instant> {
        let ask = EndAsk {
            request,
            pid,
            name: lifeline_proto::sanitize_text(name),
            deadline: Instant::now() + timeout,
        };
        if !self.system_info {
            self.finish(
                ask,
                EndOutcome::Refused,
                "the customer has not allowed system information".into(),
            );
            return None;
        }
        if self.end_asks.len() >= MAX_END_ASKS || self.end_asks.iter().any(|a| a.request == request)
        {
            self.finish(
                ask,
                EndOutcome::Refused,
                "too many questions are waiting for the customer".into(),
            );
            return None;
        }
        info!(
            "event=end_process_asked request={request} pid={pid} name={:?}",
            ask.name
        );
        let deadline = ask.deadline;
        self.end_asks.push(ask);
        Some(deadline)
    }

    /// The customer's answer to end request `request`.
    pub fn answer_end(&mut self, request: u32, allow: bool) -> Option<EndDone> {
        let i = self.end_asks.iter().position(|a| a.request == request)?;
        let ask = self.end_asks.remove(i);
        if !allow {
            return Some(self.finish(ask, EndOutcome::Refused, "the customer said no".into()));
        }
        #[cfg(target_os = "linux")]
        let (outcome, message) = crate::platform::linux::sysinfo::end_process(ask.pid, &ask.name);
        #[cfg(not(target_os = "linux"))]
        let (outcome, message) = (
            EndOutcome::Failed,
            "not available on this system".to_string(),
        );
        Some(self.finish(ask, outcome, message))
    }

    /// Refuses the end requests and offers whose answer is overdue.
    pub fn expire(&mut self, now: Instant) -> Vec<EndDone> {
        self.offers.expire(&self.tx, now);
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.end_asks)
            .into_iter()
            .partition(|a| a.deadline <= now);
        self.end_asks = keep;
        late.into_iter()
            .map(|a| {
                self.finish(
                    a,
                    EndOutcome::Refused,
                    "the customer did not answer in time".into(),
                )
            })
            .collect()
    }

    /// When the next question (an end request or an offer) runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ends = self.end_asks.iter().map(|a| a.deadline).min();
        match (ends, self.offers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The box offers to install something ([`install`]); the deadline of the customer's
    /// answer, or `None` when it was refused at once. `session` is this session's ticket.
    pub fn install_offered(
        &mut self,
        session: &lifeline_proto::ticket::TicketFile,
        offer: install::Offer,
    ) -> Option<Instant> {
        self.offers.offered(&self.tx, session, offer)
    }

    /// The customer's answer to an offer: agreed, it is installed on a task of its own.
    pub fn answer_install(&mut self, request: u32, allow: bool) {
        if let Some(offer) = self.offers.answer(&self.tx, request, allow) {
            tokio::spawn(install::perform(offer, self.tx.clone()));
        }
    }

    /// Whether `msg`, on its way to the box, ends an offer the window should hear about.
    pub fn install_done(&mut self, msg: &AgentToRelay) -> Option<install::InstallDone> {
        self.offers.done(msg)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(msg: AgentToRelay) -> EndOutcome {
        match msg {
            AgentToRelay::ProcessEnd { outcome, .. } => outcome,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn ending_a_process_needs_the_grant_and_an_answer() {
        let mut t = Tools::default();
        assert!(
            t.end_process_asked(1, 4242, "x", Duration::from_secs(30))
                .is_none()
        );
        assert_eq!(outcome(t.next().await), EndOutcome::Refused);
        t.set_grant(Permission::SystemInfo, true);
        assert!(
            t.end_process_asked(2, 4242, "x", Duration::from_secs(30))
                .is_some()
        );
        assert_eq!(t.answer_end(2, false).unwrap().outcome, EndOutcome::Refused);
        assert_eq!(outcome(t.next().await), EndOutcome::Refused);
        assert!(t.answer_end(2, true).is_none(), "answered once only");
        assert!(
            t.end_process_asked(3, 4242, "x", Duration::from_millis(1))
                .is_some()
        );
        let done = t.expire(Instant::now() + Duration::from_millis(5));
        assert_eq!(done.len(), 1);
        assert_eq!(outcome(t.next().await), EndOutcome::Refused);
        assert!(
            t.end_process_asked(4, 4242, "x", Duration::from_secs(30))
                .is_some()
        );
        let done = t.set_grant(Permission::SystemInfo, false);
        assert_eq!(done[0].request, 4);
        assert_eq!(outcome(t.next().await), EndOutcome::Refused);
    }
}
