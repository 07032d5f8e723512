//! The logged-in user's graphical session, as a jump service running as root finds it, and
//! how the session agent is started in it as that user.
//!
//! A jump client installed by an administrator runs as root (a systemd system service) with
//! no `DISPLAY`. When a representative jumps, [`find`] looks for the desktop of the person at
//! the computer, in this order:
//!
//! 1. **logind**, through the `loginctl` command when it exists and answers within
//!    [`LOGINCTL_TIMEOUT`]: `loginctl list-sessions --no-legend`, then for each session
//!    `loginctl show-session ID -p Name -p User -p Display -p Type -p Active -p State -p Remote
//!    -p Class`. Sessions that are remote, closing, a display manager's login screen
//!    (`Class` other than `user`) or not graphical (`Type` other than `x11`/`wayland`) are
//!    left out; of the rest the active one wins, then an X11 one ([`choose_logind`]). A
//!    chosen Wayland session is refused with [`SeatError::Wayland`] (this version captures X11
//!    only). logind knows the user and display but not the X cookie: the rest of the
//!    environment comes from that user's processes on that display (step 2, filtered), else
//!    from the usual places (`~/.Xauthority`, `/run/user/UID`, its `bus`).
//! 2. **Processes**: `/proc/*/environ` of processes of people's accounts (uid at least
//!    `UID_MIN` of `/etc/login.defs`, 1000 by default: not root, services, or a display
//!    manager's login screen, whose accounts are system ones), keeping those whose `DISPLAY` is a local display (`:N`, `:N.S`, `unix:N`) whose socket
//!    `/tmp/.X11-unix/XN` exists, with their `XAUTHORITY`, `XDG_RUNTIME_DIR`,
//!    `DBUS_SESSION_BUS_ADDRESS` and `LANG` ([`parse_environ`], [`desktop_vars`]). The rule
//!    ([`choose_process`]): a process whose user owns the display's socket (a rootless X
//!    server is the logged-in user's) beats one that does not; then the most recently started
//!    process wins (the newest login).
//!
//! With a display given (a root service's own `DISPLAY`), both steps keep only sessions and
//! processes on that display.
//!
//! Nothing found is [`SeatError::NoDesktop`], which the representative reads as "Nobody is
//! logged in to a desktop on this computer."
//!
//! [`command`] then builds the session agent's command as that user: through `setpriv
//! --reuid --regid --init-groups` when `setpriv` is installed (the account's supplementary
//! groups too), else with the process's own uid/gid switch (which drops supplementary groups:
//! the agent then runs with the account's primary group only, and the log says so). Its
//! environment is clean: `HOME`, `USER`, `LOGNAME`, `PATH`, the desktop's `DISPLAY`,
//! `XAUTHORITY`, `XDG_RUNTIME_DIR`, `DBUS_SESSION_BUS_ADDRESS`, `LANG`, and the service's
//! `RUST_LOG`; its working folder is the user's home (or `/`).
//!
//! Everything read from other users' processes is untrusted: the parsers take bytes, never
//! panic (property tests), cap sizes, and keep only absolute paths, a display number, and a
//! plain `LANG`; the only path root looks at is `/tmp/.X11-unix/X<number>`.
//!
//! Limits: one desktop is chosen (no choice between several users' sessions); the
//! logind path is exercised by unit tests of its parsers and choice only (the tests' machines
//! run no logind); the process scan cannot tell an inactive switched-away session from the active one when the
//! X server runs as root; Wayland sessions are refused; X servers reached over TCP are not
//! considered.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `loginctl` may take to answer before the process scan is used instead.
pub const LOGINCTL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a process's environment that is read.
pub const ENVIRON_MAX: usize = 256 * 1024;
/// The longest value kept from another user's environment.
const VALUE_MAX: usize = 4096;
/// Where local X servers put their sockets.
pub const X11_SOCKETS: &str = "/tmp/.X11-unix";

/// Why no desktop could be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("nobody is logged in to a desktop on this computer")]
    NoDesktop,
    #[error("{user}'s desktop is a Wayland session (logind session {session})")]
    Wayland { user: String, session: String },
    #[error("the account of uid {uid} (desktop {display}) cannot be looked up")]
    NoAccount { uid: u32, display: String },
}

impl SeatError {
    /// The sentence for the representative.
    pub fn for_rep(&self) -> &'static str {
        match self {
            SeatError::NoDesktop | SeatError::NoAccount { .. } => {
                "Nobody is logged in to a desktop on this computer."
            }
            SeatError::Wayland { .. } => {
                "The user at this computer is on a Wayland desktop: this version needs an X11 (Xorg) session to show and control the screen."
            }
        }
    }
}

/// The desktop variables taken from a process's environment (all optional but `DISPLAY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesktopVars {
    pub display: String,
    /// The display number of `display`.
    pub number: u32,
    pub xauthority: Option<String>,
    pub runtime_dir: Option<String>,
    pub dbus: Option<String>,
    pub lang: Option<String>,
}

/// The desktop found, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub home: PathBuf,
    pub vars: DesktopVars,
    /// How it was found, for the log (`logind session 2`, `process 1234`).
    pub found_by: String,
}

/// One session as `loginctl show-session` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogindSession {
    pub id: String,
    pub name: String,
    pub uid: u32,
    pub display: String,
    pub kind: String,
    pub active: bool,
    pub state: String,
    pub remote: bool,
    /// `user` for a person's session; `greeter`, `lock-screen`, … otherwise (empty when
    /// logind does not say).
    pub class: String,
}

/// A process of another user that has a local desktop in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopProcess {
    pub pid: u32,
    pub uid: u32,
    /// Start time (clock ticks after boot, `/proc/PID/stat` field 22).
    pub started: u64,
    pub vars: DesktopVars,
    /// Whether this process's user owns the display's socket.
    pub owns_socket: bool,
}

/// Session ids from `loginctl list-sessions --no-legend` (first column of each line; only
/// ids made of letters, digits, `_` and `-`, at most 64 characters).
pub fn parse_session_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(str::to_string)
        .collect()
}

/// One session from `loginctl show-session ID -p ...` (`Key=value` lines); `None` without a
/// valid `User`.
pub fn parse_show_session(id: &str, text: &str) -> Option<LogindSession> {
    let mut s = LogindSession {
        id: id.to_string(),
        ..LogindSession::default()
    };
    let mut uid = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Name" => s.name = value.chars().take(256).collect(),
            "User" => uid = value.parse::<u32>().ok(),
            "Display" => s.display = value.chars().take(256).collect(),
            "Type" => s.kind = value.chars().take(32).collect(),
            "Active" => s.active = value == "yes",
            "State" => s.state = value.chars().take(32).collect(),
            "Remote" => s.remote = value == "yes",
            "Class" => s.class = value.chars().take(32).collect(),
            _ => {}
        }
    }
    s.uid = uid?;
    Some(s)
}

/// The logind session to use: a person's (class `user`, not a display manager's greeter),
/// local, not closing, graphical (`x11` or `wayland`); the active one first, then X11 before
/// Wayland, then the first listed.
pub fn choose_logind(sessions: &[LogindSession]) -> Option<&LogindSession> {
    sessions
        .iter()
        .filter(|s| {
            !s.remote
                && s.state != "closing"
                && matches!(s.class.as_str(), "user" | "")
                && matches!(s.kind.as_str(), "x11" | "wayland")
        })
        .enumerate()
        .max_by_key(|(i, s)| (s.active, s.kind == "x11", std::cmp::Reverse(*i)))
        .map(|(_, s)| s)
}

/// The number of a local display: `:N`, `:N.S`, `unix:N`, `unix:N.S`; `None` otherwise (TCP
/// displays, garbage).
pub fn display_number(display: &str) -> Option<u32> {
    let rest = display
        .strip_prefix("unix:")
        .or_else(|| display.strip_prefix(':'))?;
    let number = rest.split_once('.').map_or(rest, |(n, _)| n);
    if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// The variables of a `/proc/PID/environ` (`NAME=value` entries separated by NUL bytes);
/// entries that are not UTF-8 or have no `=` are skipped; the first of a name wins.
pub fn parse_environ(bytes: &[u8]) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for entry in bytes.split(|b| *b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        if name.is_empty() || value.len() > VALUE_MAX {
            continue;
        }
        vars.entry(name.to_string())
            .or_insert_with(|| value.to_string());
    }
    vars
}

fn absolute(value: Option<&String>) -> Option<String> {
    value
        .filter(|v| v.starts_with('/') && !v.contains('\n'))
        .cloned()
}

/// The desktop variables of an environment, if its `DISPLAY` is a local display. Paths are
/// kept only when absolute, `LANG` only when plain (letters, digits, `_.@-`, 64 at most).
pub fn desktop_vars(vars: &HashMap<String, String>) -> Option<DesktopVars> {
    let display = vars.get("DISPLAY")?;
    let number = display_number(display)?;
    let lang = vars.get("LANG").filter(|l| {
        !l.is_empty()
            && l.len() <= 64
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
    });
    Some(DesktopVars {
        display: display.clone(),
        number,
        xauthority: absolute(vars.get("XAUTHORITY")),
        runtime_dir: absolute(vars.get("XDG_RUNTIME_DIR")),
        dbus: vars
            .get("DBUS_SESSION_BUS_ADDRESS")
            .filter(|d| !d.is_empty() && !d.contains('\n'))
            .cloned(),
        lang: lang.cloned(),
    })
}

/// The start time from a `/proc/PID/stat` line (field 22, counted after the command name in
/// parentheses, which may itself hold spaces and parentheses).
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at 3 (state); starttime is field 22.
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The desktop process to use: one whose user owns the display's socket first, then the
/// most recently started, then the highest pid.
pub fn choose_process(procs: &[DesktopProcess]) -> Option<&DesktopProcess> {
    procs
        .iter()
        .max_by_key(|p| (p.owns_socket, p.started, p.pid))
}

/// The owner of local display `number`'s socket, if it exists.
pub fn socket_owner(number: u32) -> Option<u32> {
    std::fs::symlink_metadata(Path::new(X11_SOCKETS).join(format!("X{number}")))
        .ok()
        .map(|m| m.uid())
}

/// Reads at most [`ENVIRON_MAX`] bytes of a file.
fn read_capped(path: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// The first uid of people's accounts: `UID_MIN` of a `login.defs` text, else 1000.
pub fn uid_min(login_defs: &str) -> u32 {
    login_defs
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("UID_MIN")).then(|| words.next()?.parse().ok())?
        })
        .next_back()
        .unwrap_or(1000)
}

/// Processes of people's accounts (uid at least [`uid_min`]: root, services and display
/// managers' greeters have lower ones) with a local desktop in their environment (only
/// `uid` when given).
pub fn scan_processes(only_uid: Option<u32>) -> Vec<DesktopProcess> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let first = uid_min(&std::fs::read_to_string("/etc/login.defs").unwrap_or_default());
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let uid = meta.uid();
        if uid == 0 || uid < first || only_uid.is_some_and(|u| u != uid) {
            continue;
        }
        let Some(environ) = read_capped(&entry.path().join("environ"), ENVIRON_MAX) else {
            continue;
        };
        let Some(vars) = desktop_vars(&parse_environ(&environ)) else {
            continue;
        };
        let Some(owner) = socket_owner(vars.number) else {
            continue;
        };
        let started = read_capped(&entry.path().join("stat"), 4096)
            .and_then(|b| parse_start_time(&String::from_utf8_lossy(&b)))
            .unwrap_or(0);
        found.push(DesktopProcess {
            pid,
            uid,
            started,
            vars,
            owns_socket: owner == uid,
        });
    }
    found
}

/// [`scan_processes`] on a blocking thread (it reads many small files).
async fn scan(only_uid: Option<u32>) -> Vec<DesktopProcess> {
    tokio::task::spawn_blocking(move || scan_processes(only_uid))
        .await
        .unwrap_or_default()
}

/// Runs `loginctl` with `args`; its output, or `None` when it is missing, fails or is slow.
async fn loginctl(args: &[&str]) -> Option<String> {
    let mut cmd = tokio::process::Command::new("loginctl");
    cmd.args(args)
        .env("SYSTEMD_PAGER", "")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(LOGINCTL_TIMEOUT, cmd.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// logind's sessions, or `None` when logind cannot be asked.
async fn logind_sessions() -> Option<Vec<LogindSession>> {
    let list = loginctl(&["list-sessions", "--no-legend"]).await?;
    let mut sessions = Vec::new();
    for id in parse_session_list(&list).into_iter().take(64) {
        let props = [
            "show-session",
            id.as_str(),
            "-p",
            "Name",
            "-p",
            "User",
            "-p",
            "Display",
            "-p",
            "Type",
            "-p",
            "Active",
            "-p",
            "State",
            "-p",
            "Remote",
            "-p",
            "Class",
        ];
        if let Some(text) = loginctl(&props).await
            && let Some(s) = parse_show_session(&id, &text)
        {
            sessions.push(s);
        }
    }
    Some(sessions)
}

/// The account of `uid`: name, primary group, home.
fn account(uid: u32) -> Option<(String, u32, PathBuf)> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some((user.name, user.gid.as_raw(), user.dir))
}

fn seat_of(uid: u32, vars: DesktopVars, found_by: String) -> Result<Seat, SeatError> {
    let (user, gid, home) = account(uid).ok_or_else(|| SeatError::NoAccount {
        uid,
        display: vars.display.clone(),
    })?;
    Ok(Seat {
        uid,
        gid,
        user,
        home,
        vars,
        found_by,
    })
}

/// Fills what logind does not say (cookie, runtime folder, bus) from the usual places.
fn usual_vars(display: &str, number: u32, uid: u32) -> DesktopVars {
    let home = account(uid).map(|(_, _, h)| h);
    let runtime = PathBuf::from(format!("/run/user/{uid}"));
    let runtime = runtime.is_dir().then_some(runtime);
    DesktopVars {
        display: display.to_string(),
        number,
        xauthority: home
            .map(|h| h.join(".Xauthority"))
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string()),
        dbus: runtime
            .as_ref()
            .map(|r| r.join("bus"))
            .filter(|b| b.exists())
            .map(|b| format!("unix:path={}", b.display())),
        runtime_dir: runtime.map(|r| r.display().to_string()),
        lang: None,
    }
}

/// Finds the logged-in user's graphical session (see the module's documentation); only on
/// local display `only` when given (the service's own `DISPLAY`).
pub async fn find(only: Option<u32>) -> Result<Seat, SeatError> {
    let on_only = |n: Option<u32>| only.is_none() || n == only;
    if let Some(mut sessions) = logind_sessions().await {
        sessions.retain(|s| on_only(display_number(&s.display)));
        if let Some(s) = choose_logind(&sessions) {
            if s.kind == "wayland" {
                return Err(SeatError::Wayland {
                    user: s.name.clone(),
                    session: s.id.clone(),
                });
            }
            let found_by = format!("logind session {}", s.id);
            let uid = s.uid;
            let procs = scan(Some(uid)).await;
            let number = display_number(&s.display);
            let on_display: Vec<DesktopProcess> = procs
                .iter()
                .filter(|p| number.is_none_or(|n| p.vars.number == n))
                .cloned()
                .collect();
            if let Some(p) = choose_process(&on_display) {
                return seat_of(uid, p.vars.clone(), found_by);
            }
            if let Some(n) = number
                && socket_owner(n).is_some()
            {
                return seat_of(uid, usual_vars(&s.display, n, uid), found_by);
            }
        }
    }
    let mut procs = scan(None).await;
    procs.retain(|p| on_only(Some(p.vars.number)));
    let p = choose_process(&procs).ok_or(SeatError::NoDesktop)?;
    seat_of(p.uid, p.vars.clone(), format!("process {}", p.pid))
}

/// Where `setpriv` is, if installed.
fn setpriv() -> Option<&'static Path> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
}

/// The session agent's command as `seat`'s user: `program args` through `setpriv` (with the
/// account's supplementary groups) or with a plain uid/gid switch, in a clean environment.
/// The second value says whether supplementary groups are set.
pub fn command(
    seat: &Seat,
    program: &Path,
    args: &[&OsStr],
    rust_log: Option<&str>,
) -> (tokio::process::Command, bool) {
    let (mut cmd, groups) = match setpriv() {
        Some(setpriv) => {
            let mut cmd = tokio::process::Command::new(setpriv);
            cmd.arg(format!("--reuid={}", seat.uid))
                .arg(format!("--regid={}", seat.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(program);
            (cmd, true)
        }
        None => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.uid(seat.uid).gid(seat.gid);
            (cmd, false)
        }
    };
    cmd.args(args).env_clear();
    for (k, v) in environment(seat, rust_log) {
        cmd.env(k, v);
    }
    let cwd = if seat.home.is_dir() {
        seat.home.clone()
    } else {
        PathBuf::from("/")
    };
    cmd.current_dir(cwd);
    (cmd, groups)
}

/// The session agent's whole environment.
pub fn environment(seat: &Seat, rust_log: Option<&str>) -> Vec<(&'static str, String)> {
    let v = &seat.vars;
    let mut env = vec![
        ("HOME", seat.home.display().to_string()),
        ("USER", seat.user.clone()),
        ("LOGNAME", seat.user.clone()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("DISPLAY", v.display.clone()),
    ];
    let optional = [
        ("XAUTHORITY", &v.xauthority),
        ("XDG_RUNTIME_DIR", &v.runtime_dir),
        ("DBUS_SESSION_BUS_ADDRESS", &v.dbus),
        ("LANG", &v.lang),
    ];
    env.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v))),
    );
    if let Some(l) = rust_log {
        env.push(("RUST_LOG", l.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn logind(id: &str, kind: &str, active: bool, remote: bool) -> LogindSession {
        LogindSession {
            id: id.into(),
            name: format!("u{id}"),
            uid: 1000,
            display: ":0".into(),
            kind: kind.into(),
            active,
            state: if active { "active" } else { "online" }.into(),
            remote,
            class: "user".into(),
        }
    }

    #[test]
    fn session_lists_of_old_and_new_loginctl() {
        let old = "     2   1000 alice  seat0  tty2\n    c1    120 gdm    seat0  tty1\n";
        assert_eq!(parse_session_list(old), ["2", "c1"]);
        let new = "2 1000 alice seat0 tty2 active no -\n";
        assert_eq!(parse_session_list(new), ["2"]);
        assert!(parse_session_list("\n  \nx;rm 1 2\n").is_empty());
    }

    #[test]
    fn show_session_properties() {
        let text = "Name=alice\nUser=1000\nDisplay=:1\nType=x11\nActive=yes\nState=active\nRemote=no\nClass=user\n";
        let s = parse_show_session("3", text).unwrap();
        assert_eq!(s.name, "alice");
        assert_eq!(s.uid, 1000);
        assert_eq!(s.display, ":1");
        assert_eq!(s.kind, "x11");
        assert!(s.active && !s.remote);
        assert_eq!(s.state, "active");
        assert_eq!(s.class, "user");
        assert_eq!(parse_show_session("3", "Name=x\nUser=abc\n"), None);
    }

    #[test]
    fn logind_choice_prefers_active_local_x11() {
        let tty = logind("1", "tty", true, false);
        let remote = logind("2", "x11", true, true);
        let online = logind("3", "x11", false, false);
        let active = logind("4", "x11", true, false);
        let wayland = logind("5", "wayland", false, false);
        let all = [
            tty.clone(),
            remote.clone(),
            online.clone(),
            active,
            wayland.clone(),
        ];
        assert_eq!(choose_logind(&all).unwrap().id, "4");
        let no_active = [tty.clone(), remote.clone(), wayland.clone(), online];
        assert_eq!(
            choose_logind(&no_active).unwrap().id,
            "3",
            "x11 before wayland"
        );
        let mut active_wayland = wayland.clone();
        active_wayland.active = true;
        let w = [logind("6", "x11", false, false), active_wayland];
        assert_eq!(
            choose_logind(&w).unwrap().kind,
            "wayland",
            "the person's own session"
        );
        assert_eq!(choose_logind(&[tty, remote]), None);
        let mut closing = logind("7", "x11", false, false);
        closing.state = "closing".into();
        assert_eq!(choose_logind(&[closing]), None);
        let mut greeter = logind("8", "x11", true, false);
        greeter.class = "greeter".into();
        assert_eq!(
            choose_logind(&[greeter, logind("9", "x11", false, false)])
                .unwrap()
                .id,
            "9"
        );
    }

    #[test]
    fn people_start_at_uid_min() {
        assert_eq!(uid_min(""), 1000);
        assert_eq!(
            uid_min("# UID_MIN 5\nUID_MIN\t\t 2000\nUID_MAX 60000\n"),
            2000
        );
        assert_eq!(uid_min("UID_MIN x\n"), 1000);
    }

    #[test]
    fn display_numbers() {
        assert_eq!(display_number(":0"), Some(0));
        assert_eq!(display_number(":12.0"), Some(12));
        assert_eq!(display_number("unix:3"), Some(3));
        for bad in [
            "",
            ":",
            "localhost:0",
            "host:1.0",
            ":x",
            ":1/../../etc",
            ":99999999",
            ":-1",
        ] {
            assert_eq!(display_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn environ_and_its_desktop_variables() {
        let bytes = b"HOME=/home/a\0DISPLAY=:1\0XAUTHORITY=/run/user/1000/gdm/Xauthority\0\
            XDG_RUNTIME_DIR=/run/user/1000\0DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus\0\
            LANG=fr_FR.UTF-8\0DISPLAY=:9\0\xff\xfe=bad\0noequals\0=empty\0";
        let vars = parse_environ(bytes);
        assert_eq!(vars["DISPLAY"], ":1", "the first of a name wins");
        assert!(!vars.contains_key(""));
        let d = desktop_vars(&vars).unwrap();
        assert_eq!(d.number, 1);
        assert_eq!(
            d.xauthority.as_deref(),
            Some("/run/user/1000/gdm/Xauthority")
        );
        assert_eq!(d.runtime_dir.as_deref(), Some("/run/user/1000"));
        assert_eq!(d.dbus.as_deref(), Some("unix:path=/run/user/1000/bus"));
        assert_eq!(d.lang.as_deref(), Some("fr_FR.UTF-8"));

        let odd = parse_environ(b"DISPLAY=:0\0XAUTHORITY=relative\0LANG=$(x)\0");
        let d = desktop_vars(&odd).unwrap();
        assert_eq!((d.xauthority, d.lang), (None, None));
        assert_eq!(desktop_vars(&parse_environ(b"DISPLAY=remote:0\0")), None);
        assert_eq!(desktop_vars(&parse_environ(b"HOME=/\0")), None);
    }

    #[test]
    fn start_time_after_an_odd_command_name() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345 67 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (x) S 1"), None);
    }

    #[test]
    fn process_choice_prefers_the_socket_owner_then_the_newest() {
        let p = |pid, uid, started, owns_socket| DesktopProcess {
            pid,
            uid,
            started,
            vars: DesktopVars::default(),
            owns_socket,
        };
        let procs = [
            p(10, 1000, 500, false),
            p(11, 1001, 100, true),
            p(12, 1001, 90, true),
        ];
        assert_eq!(choose_process(&procs).unwrap().pid, 11);
        let procs = [p(10, 1000, 500, false), p(11, 1001, 100, false)];
        assert_eq!(choose_process(&procs).unwrap().pid, 10);
        assert_eq!(choose_process(&[]), None);
    }

    #[test]
    fn the_agent_environment_is_clean_and_complete() {
        let seat = Seat {
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            home: "/home/alice".into(),
            vars: DesktopVars {
                display: ":1".into(),
                number: 1,
                xauthority: Some("/x".into()),
                runtime_dir: None,
                dbus: Some("unix:path=/b".into()),
                lang: Some("de_DE.UTF-8".into()),
            },
            found_by: "process 1".into(),
        };
        let env: HashMap<_, _> = environment(&seat, Some("info")).into_iter().collect();
        assert_eq!(env["HOME"], "/home/alice");
        assert_eq!(env["USER"], "alice");
        assert_eq!(env["LOGNAME"], "alice");
        assert_eq!(env["DISPLAY"], ":1");
        assert_eq!(env["XAUTHORITY"], "/x");
        assert_eq!(env["DBUS_SESSION_BUS_ADDRESS"], "unix:path=/b");
        assert_eq!(env["LANG"], "de_DE.UTF-8");
        assert_eq!(env["RUST_LOG"], "info");
        assert!(env["PATH"].contains("/usr/bin"));
        assert!(!env.contains_key("XDG_RUNTIME_DIR"));
    }

    #[test]
    fn refusals_read_well() {
        assert_eq!(
            SeatError::NoDesktop.for_rep(),
            "Nobody is logged in to a desktop on this computer."
        );
        let w = SeatError::Wayland {
            user: "a".into(),
            session: "2".into(),
        };
        assert!(w.for_rep().contains("X11"));
    }

    proptest! {
        #[test]
        fn environ_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let vars = parse_environ(&bytes);
            let _ = desktop_vars(&vars);
        }

        #[test]
        fn environ_round_trips(pairs in proptest::collection::vec(("[A-Z_]{1,12}", "[ -~]{0,40}"), 0..20)) {
            let mut bytes = Vec::new();
            let mut expected = HashMap::new();
            for (k, v) in &pairs {
                bytes.extend_from_slice(format!("{k}={v}").as_bytes());
                bytes.push(0);
                expected.entry(k.clone()).or_insert_with(|| v.clone());
            }
            prop_assert_eq!(parse_environ(&bytes), expected);
        }

        #[test]
        fn loginctl_parsing_never_panics(text in "(?s).{0,600}", id in ".{0,20}") {
            let ids = parse_session_list(&text);
            prop_assert!(ids.iter().all(|i| !i.is_empty() && i.len() <= 64));
            if let Some(s) = parse_show_session(&id, &text) {
                let _ = choose_logind(&[s]);
            }
            let _ = parse_start_time(&text);
            let _ = display_number(&text);
        }
    }
}
