//! Installing a jump client or a support button from a running session (see
//! [`lifeline_proto::install`]), one offer at a time, each with the customer's consent.
//!
//! [`Offers::offered`] checks an offer before the customer sees it: the ticket's kind must
//! match what is offered and it must name this session's box and certificate pin (anything
//! else is refused at once, so a message can never make this computer trust another server).
//! The customer then has until the question's deadline; no answer is a refusal. Agreed,
//! [`perform`] runs on a task of its own (registering a jump client takes a round trip to the
//! box) and the outcome goes to the box as [`AgentToRelay::Installed`].
//!
//! What is installed: a jump client with this program ([`crate::jump::install`]) in the
//! default folder (`/opt/lifeline-jump` for root, else the user's data folder), enabled as a
//! systemd unit where systemd runs; where it does not, the service is started now, on its
//! own, and the answer says it will not come back after a restart. A support button with
//! [`crate::button::install`] for the user in the session.
//!
//! Limits: Linux only; a jump client installed by a user (not root) runs as that user.

use lifeline_proto::agent::AgentToRelay;
use lifeline_proto::install::{InstallKind, InstallOutcome};
use lifeline_proto::ticket::TicketFile;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

/// Most offers waiting for the customer at once.
const MAX_OFFERS: usize = 2;

/// An offer waiting for the customer's answer.
#[derive(Debug, Clone)]
pub struct Offer {
    pub request: u32,
    pub what: InstallKind,
    pub ticket: TicketFile,
    pub deadline: Instant,
}

/// What became of an offer, for the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallDone {
    pub request: u32,
    pub what: InstallKind,
    pub outcome: InstallOutcome,
}

/// The offers of one session.
#[derive(Debug, Default)]
pub struct Offers {
    waiting: Vec<Offer>,
    /// Offers agreed to and being installed (request → what), until their answer is sent.
    running: Vec<(u32, InstallKind)>,
}

fn answer(tx: &mpsc::Sender<AgentToRelay>, request: u32, outcome: InstallOutcome, message: &str) {
    info!(
        "event=install_done request={request} outcome={} message={message:?}",
        outcome.as_str()
    );
    let _ = tx.try_send(AgentToRelay::Installed {
        request,
        outcome,
        message: message.chars().take(500).collect(),
    });
}

impl Offers {
    /// The box offers to install `what`; the deadline of the customer's answer, or `None`
    /// when the offer was refused at once. `session` is this session's own ticket.
    pub fn offered(
        &mut self,
        tx: &mpsc::Sender<AgentToRelay>,
        session: &TicketFile,
        offer: Offer,
    ) -> Option<Instant> {
        let refuse = |why: &str| {
            warn!(
                "event=install_refused request={} reason={why:?}",
                offer.request
            );
            answer(tx, offer.request, InstallOutcome::Refused, why);
            None
        };
        if offer.ticket.kind != offer.what.ticket_kind()
            || offer.ticket.site_url != session.site_url
            || !offer
                .ticket
                .cert_sha256
                .eq_ignore_ascii_case(&session.cert_sha256)
        {
            return refuse("the offer does not belong to this support box");
        }
        if !cfg!(target_os = "linux") {
            return refuse("installing is not available on this system yet");
        }
        if self.waiting.len() >= MAX_OFFERS
            || self.waiting.iter().any(|o| o.request == offer.request)
            || self.running.iter().any(|(r, _)| *r == offer.request)
        {
            return refuse("another offer is waiting for the customer");
        }
        info!(
            "event=install_asked request={} what={}",
            offer.request,
            offer.what.as_str()
        );
        let deadline = offer.deadline;
        self.waiting.push(offer);
        Some(deadline)
    }

    /// The customer's answer; the offer to perform when they agreed.
    pub fn answer(
        &mut self,
        tx: &mpsc::Sender<AgentToRelay>,
        request: u32,
        allow: bool,
    ) -> Option<Offer> {
        let i = self.waiting.iter().position(|o| o.request == request)?;
        let offer = self.waiting.remove(i);
        if !allow {
            answer(tx, request, InstallOutcome::Refused, "the customer said no");
            return None;
        }
        self.running.push((request, offer.what));
        Some(offer)
    }

    /// Refuses the offers whose answer is overdue.
    pub fn expire(&mut self, tx: &mpsc::Sender<AgentToRelay>, now: Instant) {
        self.waiting.retain(|o| {
            let late = o.deadline <= now;
            if late {
                answer(
                    tx,
                    o.request,
                    InstallOutcome::Refused,
                    "the customer did not answer in time",
                );
            }
            !late
        });
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|o| o.deadline).min()
    }

    /// Whether `msg` (on its way to the box) ends an offer the window should hear about.
    pub fn done(&mut self, msg: &AgentToRelay) -> Option<InstallDone> {
        let AgentToRelay::Installed {
            request, outcome, ..
        } = msg
        else {
            return None;
        };
        let i = self.running.iter().position(|(r, _)| r == request)?;
        let (request, what) = self.running.remove(i);
        Some(InstallDone {
            request,
            what,
            outcome: *outcome,
        })
    }
}

/// Installs an agreed offer and sends the outcome on `tx`.
pub async fn perform(offer: Offer, tx: mpsc::Sender<AgentToRelay>) {
    let (outcome, message) = match install(&offer).await {
        Ok(message) => (InstallOutcome::Installed, message),
        Err(message) => (InstallOutcome::Failed, message),
    };
    info!(
        "event=install_done request={} outcome={} message={message:?}",
        offer.request,
        outcome.as_str()
    );
    let _ = tx
        .send(AgentToRelay::Installed {
            request: offer.request,
            outcome,
            message: message.chars().take(500).collect(),
        })
        .await;
}

#[cfg(target_os = "linux")]
async fn install(offer: &Offer) -> Result<String, String> {
    use crate::session::error_chain;
    let env = crate::env::Env::from_process();
    match offer.what {
        InstallKind::JumpClient => {
            let booted = std::path::Path::new("/run/systemd/system").is_dir();
            let opts = crate::jump::install::InstallOptions {
                no_systemd: !booted,
                ..Default::default()
            };
            let done = crate::jump::install::install(&offer.ticket, &env, &opts)
                .await
                .map_err(|e| error_chain(&e))?;
            if booted {
                return Ok(format!(
                    "the jump client {} is installed as a systemd service",
                    done.client_id
                ));
            }
            start_detached(&done.command).map_err(|e| format!("cannot start the service: {e}"))?;
            Ok(format!(
                "the jump client {} is installed and running; this computer has no systemd, so it will not start again after a restart",
                done.client_id
            ))
        }
        InstallKind::SupportButton => {
            let exe = std::env::current_exe()
                .and_then(std::fs::read)
                .map_err(|e| format!("cannot read this program's own file: {e}"))?;
            let mut program = crate::jump::install::without_trailer(&exe).to_vec();
            program.extend(lifeline_proto::ticket::trailer(&offer.ticket));
            let lang = crate::i18n::Lang::choose(&offer.ticket.language, &env);
            let done = crate::button::install(&offer.ticket, &env, &program, lang)
                .map_err(|e| error_chain(&e))?;
            Ok(format!(
                "the support button is installed ({})",
                done.entry.display()
            ))
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn install(_offer: &Offer) -> Result<String, String> {
    Err("installing is not available on this system yet".into())
}

/// Starts the service's command in a session of its own, so it outlives this client.
#[cfg(target_os = "linux")]
fn start_detached(command: &[String]) -> std::io::Result<()> {
    let mut child = std::process::Command::new("setsid")
        .arg("-f")
        .args(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // `setsid -f` forks the service and returns at once.
    child.wait()?;
    Ok(())
}

/// How long the customer has to answer an offer (the box waits a little longer).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_proto::ticket::TicketKind;

    fn session() -> TicketFile {
        TicketFile {
            site_url: "https://box".into(),
            cert_sha256: "ab".repeat(32),
            ticket: "signed".into(),
            expires_at: 1,
            language: String::new(),
            customer_name: String::new(),
            site_name: String::new(),
            kind: TicketKind::OneShot,
        }
    }

    fn offer(request: u32, what: InstallKind) -> Offer {
        let mut ticket = session();
        ticket.kind = what.ticket_kind();
        Offer {
            request,
            what,
            ticket,
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    fn outcome(rx: &mut mpsc::Receiver<AgentToRelay>) -> InstallOutcome {
        match rx.try_recv() {
            Ok(AgentToRelay::Installed { outcome, .. }) => outcome,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn offers_are_checked_asked_and_answered() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut offers = Offers::default();
        // Another box, or a ticket of the wrong kind: refused before anyone is asked.
        let mut elsewhere = offer(1, InstallKind::JumpClient);
        elsewhere.ticket.site_url = "https://other".into();
        assert!(offers.offered(&tx, &session(), elsewhere).is_none());
        assert_eq!(outcome(&mut rx), InstallOutcome::Refused);
        let mut wrong = offer(2, InstallKind::SupportButton);
        wrong.ticket.kind = TicketKind::JumpInstall;
        assert!(offers.offered(&tx, &session(), wrong).is_none());
        assert_eq!(outcome(&mut rx), InstallOutcome::Refused);

        assert!(
            offers
                .offered(&tx, &session(), offer(3, InstallKind::JumpClient))
                .is_some()
        );
        assert!(offers.answer(&tx, 3, false).is_none());
        let refused = rx.try_recv().unwrap();
        assert_eq!(offers.done(&refused), None, "a refusal was never running");

        offers.offered(&tx, &session(), offer(4, InstallKind::SupportButton));
        let agreed = offers.answer(&tx, 4, true).unwrap();
        assert_eq!(agreed.what, InstallKind::SupportButton);
        let msg = AgentToRelay::Installed {
            request: 4,
            outcome: InstallOutcome::Installed,
            message: String::new(),
        };
        assert_eq!(offers.done(&msg).unwrap().what, InstallKind::SupportButton);

        let mut late = offer(5, InstallKind::JumpClient);
        late.deadline = Instant::now();
        offers.offered(&tx, &session(), late);
        offers.expire(&tx, Instant::now());
        assert_eq!(outcome(&mut rx), InstallOutcome::Refused);
        assert_eq!(offers.next_deadline(), None);
    }
}
