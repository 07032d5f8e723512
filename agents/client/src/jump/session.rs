//! A jump's session: what the jump service does with
//! [`lifeline_proto::jump::RelayToJump::StartSession`].
//!
//! The service writes the one-time session ticket to a private file (mode 0600, created new
//! in the temporary folder) and starts this same program as the session agent in the
//! logged-in user's desktop: `lifeline-agent --ticket-file F --jump-session`, plus
//! `--jump-ask REP` when the box's policy wants the user asked first. The session agent then
//! shows the question ("REP from SITE wants to connect to this computer — Allow / Decline",
//! 60 s), and once allowed (or at once when unattended) connects to `/ws/agent` with the
//! ticket like a one-shot client, joining the session the representative already opened;
//! screen viewing and control are granted without a further question (the box's `[tools]`
//! policy still applies) and its window shows that a representative is connected, with the
//! usual button to end the session.
//!
//! When the session agent ends without success (declined, no answer, no desktop, cannot
//! start) the service answers [`JumpToRelay::SessionFailed`] with a sentence for the
//! representative; the ticket file is removed when the agent ends.
//!
//! Limits of this version: the desktop is the service's `DISPLAY` (and `XAUTHORITY`) or else
//! display `:0` when its socket exists; the session agent runs as the service's user (a root
//! service does not switch to the logged-in user yet).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lifeline_proto::jump::JumpToRelay;
use lifeline_proto::ticket::TicketFile;
use tokio::sync::mpsc;

use crate::env::Env;

/// Exit code of the session agent when the user declined.
pub const EXIT_DECLINED: u8 = 3;
/// Exit code of the session agent when the user did not answer in time.
pub const EXIT_NO_ANSWER: u8 = 4;

/// A `StartSession` order.
#[derive(Debug, Clone)]
pub struct StartSession {
    pub request_id: String,
    pub ticket: TicketFile,
    pub rep: String,
    pub prompt: bool,
}

/// The desktop to start the session agent in: `DISPLAY` and `XAUTHORITY` pairs, or `None`.
pub fn desktop(env: &Env) -> Option<Vec<(&'static str, String)>> {
    let display = match env.get("DISPLAY").filter(|d| !d.is_empty()) {
        Some(d) => d.to_string(),
        None if Path::new("/tmp/.X11-unix/X0").exists() => ":0".to_string(),
        None => return None,
    };
    let mut vars = vec![("DISPLAY", display)];
    if let Some(x) = env.get("XAUTHORITY").filter(|x| !x.is_empty()) {
        vars.push(("XAUTHORITY", x.to_string()));
    }
    Some(vars)
}

/// Writes the ticket to a new private file.
fn write_ticket(ticket: &TicketFile) -> std::io::Result<PathBuf> {
    use rand::Rng as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = format!(
        "lifeline-jump-{:016x}.ticket",
        rand::thread_rng().r#gen::<u64>()
    );
    let path = std::env::temp_dir().join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(lifeline_proto::encode(ticket).as_bytes())?;
    Ok(path)
}

/// The sentence for the representative when the session agent ended with `code`.
pub fn failure_reason(code: Option<i32>) -> Option<&'static str> {
    match code {
        Some(0) => None,
        Some(c) if c == i32::from(EXIT_DECLINED) => {
            Some("The user at the computer declined the connection.")
        }
        Some(c) if c == i32::from(EXIT_NO_ANSWER) => Some(
            "The user at the computer did not answer within a minute: the connection was declined.",
        ),
        _ => Some("The session could not start on this computer."),
    }
}

/// Starts the session agent for `order` in the background; a failure is sent on `replies`.
pub fn start(order: StartSession, env: &Env, replies: mpsc::UnboundedSender<JumpToRelay>) {
    let fail = |reason: &str| {
        let _ = replies.send(JumpToRelay::SessionFailed {
            request_id: order.request_id.clone(),
            reason: reason.to_string(),
        });
    };
    let Some(vars) = desktop(env) else {
        tracing::info!("event=jump_session_failed reason=no_desktop");
        fail("Nobody is logged in at a graphical desktop on this computer.");
        return;
    };
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("event=jump_session_failed error={:?}", e.to_string());
            fail("The session could not start on this computer.");
            return;
        }
    };
    let ticket = match write_ticket(&order.ticket) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("event=jump_session_failed error={:?}", e.to_string());
            fail("The session could not start on this computer.");
            return;
        }
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--ticket-file").arg(&ticket).arg("--jump-session");
    if order.prompt {
        cmd.arg("--jump-ask").arg(&order.rep);
    }
    cmd.envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(false);
    let child = cmd.spawn();
    let request_id = order.request_id.clone();
    tokio::spawn(async move {
        let code = match child {
            Ok(mut child) => {
                tracing::info!(
                    "event=jump_session_started request_id={request_id:?} prompt={} pid={:?}",
                    order.prompt,
                    child.id()
                );
                child.wait().await.ok().and_then(|s| s.code())
            }
            Err(e) => {
                tracing::error!("event=jump_session_failed error={:?}", e.to_string());
                None
            }
        };
        let _ = std::fs::remove_file(&ticket);
        tracing::info!("event=jump_session_ended request_id={request_id:?} code={code:?}");
        if let Some(reason) = failure_reason(code) {
            let _ = replies.send(JumpToRelay::SessionFailed {
                request_id,
                reason: reason.to_string(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_sentences() {
        assert_eq!(failure_reason(Some(0)), None);
        assert!(failure_reason(Some(3)).unwrap().contains("declined"));
        assert!(failure_reason(Some(4)).unwrap().contains("did not answer"));
        assert!(failure_reason(None).is_some());
    }

    #[test]
    fn desktop_comes_from_the_service_environment() {
        let env = Env::from_pairs([("DISPLAY", ":42"), ("XAUTHORITY", "/x")]);
        let vars = desktop(&env).unwrap();
        assert_eq!(vars[0], ("DISPLAY", ":42".to_string()));
        assert_eq!(vars[1], ("XAUTHORITY", "/x".to_string()));
    }
}
