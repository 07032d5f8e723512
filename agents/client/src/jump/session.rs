//! A jump's session: what the jump service does with
//! [`lifeline_proto::jump::RelayToJump::StartSession`].
//!
//! Which desktop, and as whom:
//!
//! * A service that is **not root** (a user's own jump client) uses its own desktop: its
//!   `DISPLAY` (and `XAUTHORITY`), or else display `:0` when its socket exists, and the
//!   session agent runs as the service's user.
//! * A service running as **root** (the usual system service, with no `DISPLAY`) finds the
//!   logged-in user's graphical session with [`super::seat::find`] and starts the session
//!   agent **as that user** in that desktop, never as root ([`super::seat::command`]: uid,
//!   gid and supplementary groups of the account, a clean environment). Its program is the
//!   service's own: the service folder gets the search permission for everyone (`--x`) so
//!   the user can start it by its path (the folder stays unlistable; key and settings stay
//!   0600). A `DISPLAY` an administrator gave the root service narrows the search to that
//!   display; when no user has a session there and root owns its socket (an X server of
//!   root's own, as on a kiosk), the agent runs as root in it.
//!
//! The one-time session ticket goes to a private file, created new (`O_EXCL`, `O_NOFOLLOW`)
//! with mode 0600: for the service's own user in the temporary folder; for another user in a
//! new folder of the temporary folder that root owns with mode 0711 (no one can list it or
//! add to it), the file handed to that user with `fchown` on the open file before the secret
//! is written. The program then runs as `lifeline-agent --ticket-file F --jump-session`, plus
//! `--jump-ask REP` when the box's policy wants the user asked first. The session agent then
//! shows the question ("REP from SITE wants to connect to this computer — Allow / Decline",
//! 60 s), and once allowed (or at once when unattended) connects to `/ws/agent` with the
//! ticket like a one-shot client, joining the session the representative already opened;
//! screen viewing and control are granted without a further question (the box's `[tools]`
//! policy still applies) and its window shows that a representative is connected, with the
//! usual button to end the session.
//!
//! When there is no desktop ("Nobody is logged in to a desktop on this computer."), a
//! Wayland one, or the session agent ends without success (declined, no answer, cannot
//! start) the service answers [`JumpToRelay::SessionFailed`] with a sentence for the
//! representative; the ticket file (and its folder) is removed when the agent ends.
//!
//! Limits of this version: only the program's own folder is made searchable (its parents
//! must already be, as `/opt` is); the session agent stays a child of the service (in its
//! systemd unit, not in the user's login session: restarting the service ends it); see
//! [`super::seat`] for how the desktop is chosen.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lifeline_proto::jump::JumpToRelay;
use lifeline_proto::ticket::TicketFile;
use tokio::sync::mpsc;

use super::seat;
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

/// Where a ticket was written: the file, and the private folder holding it (root's jumps).
#[derive(Debug)]
struct TicketPlace {
    file: PathBuf,
    dir: Option<PathBuf>,
}

impl TicketPlace {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.file);
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Writes the ticket to a new private file (0600, created new, never through a symbolic
/// link). For another user (`owner`: uid, gid) it goes into a new folder of the temporary
/// folder that root owns with mode 0711 (nobody can list it or put anything in it), and the
/// file is handed to that user (`fchown` on the open file) before the secret is written.
fn write_ticket(ticket: &TicketFile, owner: Option<(u32, u32)>) -> std::io::Result<TicketPlace> {
    use rand::Rng as _;
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let tag = rand::thread_rng().r#gen::<u64>();
    let dir = match owner {
        Some(_) => {
            let d = std::env::temp_dir().join(format!("lifeline-jump-{tag:016x}"));
            // mkdir fails on anything already there, a symbolic link included.
            std::fs::DirBuilder::new().mode(0o700).create(&d)?;
            // The mode asked of mkdir goes through the umask: set it now (nobody but root
            // can rename or remove root's folder in the sticky temporary folder).
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).inspect_err(
                |_| {
                    let _ = std::fs::remove_dir(&d);
                },
            )?;
            Some(d)
        }
        None => None,
    };
    let file = match &dir {
        Some(d) => d.join("session.ticket"),
        None => std::env::temp_dir().join(format!("lifeline-jump-{tag:016x}.ticket")),
    };
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&file);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) => {
            // Not ours: only the folder (if any) is removed.
            if let Some(d) = &dir {
                let _ = std::fs::remove_dir(d);
            }
            return Err(e);
        }
    };
    let place = TicketPlace { file, dir };
    let written = match owner {
        Some((uid, gid)) => std::os::unix::fs::fchown(&f, Some(uid), Some(gid)),
        None => Ok(()),
    }
    .and_then(|()| f.write_all(lifeline_proto::encode(ticket).as_bytes()));
    match written {
        Ok(()) => Ok(place),
        Err(e) => {
            place.remove();
            Err(e)
        }
    }
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

/// Whether this service runs as root (and so starts the session agent as the desktop's user).
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Starts the session agent for `order` in the background; a failure is sent on `replies`.
pub fn start(order: StartSession, env: &Env, replies: mpsc::UnboundedSender<JumpToRelay>) {
    let env = env.clone();
    tokio::spawn(async move {
        let request_id = order.request_id.clone();
        if let Some(reason) = run(order, &env).await {
            let _ = replies.send(JumpToRelay::SessionFailed {
                request_id,
                reason: reason.to_string(),
            });
        }
    });
}

/// How the session agent is started: in the service's own desktop as itself, or in the
/// logged-in user's desktop as that user.
enum Target {
    Own(Vec<(&'static str, String)>),
    User(seat::Seat),
}

/// Starts the session agent and waits for it; the sentence for the representative when the
/// session did not happen.
async fn run(order: StartSession, env: &Env) -> Option<&'static str> {
    const CANNOT: &str = "The session could not start on this computer.";
    let target = if is_root() {
        // A DISPLAY given to a root service (the administrator's choice) narrows the search
        // to that display; a desktop there that no user has is root's own X server.
        let own = env.get("DISPLAY").and_then(seat::display_number);
        match seat::find(own).await {
            Ok(seat) => Target::User(seat),
            Err(seat::SeatError::NoDesktop)
                if own.and_then(seat::socket_owner) == Some(0)
                    && let Some(vars) = desktop(env) =>
            {
                tracing::info!("event=jump_session_root_desktop display={:?}", vars[0].1);
                Target::Own(vars)
            }
            Err(e) => {
                tracing::info!("event=jump_session_failed reason={:?}", e.to_string());
                return Some(e.for_rep());
            }
        }
    } else {
        match desktop(env) {
            Some(vars) => Target::Own(vars),
            None => {
                tracing::info!("event=jump_session_failed reason=no_desktop");
                return Some(seat::SeatError::NoDesktop.for_rep());
            }
        }
    };
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("event=jump_session_failed error={:?}", e.to_string());
            return Some(CANNOT);
        }
    };
    let owner = match &target {
        Target::User(s) => Some((s.uid, s.gid)),
        Target::Own(_) => None,
    };
    if owner.is_some()
        && let Err(e) = reachable(&program)
    {
        tracing::error!(
            "event=jump_session_failed error={:?} program={:?}",
            e.to_string(),
            program
        );
        return Some(CANNOT);
    }
    let ticket = match write_ticket(&order.ticket, owner) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("event=jump_session_failed error={:?}", e.to_string());
            return Some(CANNOT);
        }
    };
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--ticket-file".as_ref(),
        ticket.file.as_os_str(),
        "--jump-session".as_ref(),
    ];
    if order.prompt {
        args.push("--jump-ask".as_ref());
        args.push(order.rep.as_ref());
    }
    let mut cmd = match &target {
        Target::Own(vars) => {
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&args).envs(vars.iter().map(|(k, v)| (*k, v)));
            cmd
        }
        Target::User(seat) => {
            let (cmd, groups) = seat::command(seat, &program, &args, env.get("RUST_LOG"));
            tracing::info!(
                "event=jump_session_user user={:?} uid={} display={:?} found_by={:?} groups={}",
                seat.user,
                seat.uid,
                seat.vars.display,
                seat.found_by,
                if groups { "account" } else { "primary_only" }
            );
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(false);
    let code = match cmd.spawn() {
        Ok(mut child) => {
            tracing::info!(
                "event=jump_session_started request_id={:?} prompt={} pid={:?}",
                order.request_id,
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
    ticket.remove();
    tracing::info!(
        "event=jump_session_ended request_id={:?} code={code:?}",
        order.request_id
    );
    failure_reason(code)
}

/// Makes this program startable by another user: its folder (the service folder, private to
/// root by default) gets the search permission for everyone (`--x`), so the program, which
/// is world-executable, can be started by its path while the folder stays unlistable and
/// its key and settings (mode 0600) stay root's.
fn reachable(program: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(dir) = program.parent() else {
        return Ok(());
    };
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
        )?;
        tracing::info!("event=jump_program_folder_searchable dir={dir:?}");
    }
    Ok(())
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
