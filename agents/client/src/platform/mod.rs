//! What the agent tells the relay about the computer it runs on.
//!
//! One module per operating system sits behind `cfg`: Linux is implemented and tested here;
//! `windows.rs` and `macos.rs` are written against their OS APIs and are built where those
//! toolchains exist (this machine has no Rust standard library for them). Screen capture,
//! input and the shell will join this module, per OS, in the same way.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
use windows as os;

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod os {
    //! Fallback for other systems: only what the standard library knows.
    pub fn computer_name() -> Option<String> {
        None
    }
    pub fn os_description() -> Option<String> {
        None
    }
    pub fn user_full_name(_login: &str) -> Option<String> {
        None
    }
}

use std::sync::Arc;

use lifeline_proto::MAX_NAME_CHARS;

use crate::desktop::Desktop;

use crate::env::Env;

/// Opens an `https://` address in the person's browser (anything else is ignored); a
/// missing opener is logged, never fatal.
pub fn open_url(url: &str) {
    if !url.starts_with("https://") || url.chars().any(|c| c.is_control() || c == ' ') {
        tracing::warn!("event=open_url_refused url={url:?}");
        return;
    }
    let mut command = if cfg!(target_os = "windows") {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else {
        std::process::Command::new("xdg-open")
    };
    if let Err(e) = command.arg(url).spawn() {
        tracing::warn!("event=open_url_failed error={e}");
    }
}

/// Facts about this computer and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Host name, e.g. `pc-17`.
    pub computer: String,
    /// e.g. `Linux x86_64 (Debian GNU/Linux 12 (bookworm))`.
    pub platform: String,
    /// The OS user's full name, or the login name when none is recorded.
    pub user_full_name: String,
}

/// Gathers the facts about the computer this runs on. Never fails: unknown facts are
/// reported as "unknown" rather than stopping a customer from getting help.
pub fn current(env: &Env) -> Platform {
    let login = env
        .first_of(&["USER", "LOGNAME", "USERNAME"])
        .unwrap_or("")
        .to_owned();
    let computer = os::computer_name()
        .or_else(|| {
            env.first_of(&["HOSTNAME", "COMPUTERNAME"])
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let base = format!("{} {}", os_name(), std::env::consts::ARCH);
    let platform = match os::os_description() {
        Some(desc) => format!("{base} ({desc})"),
        None => base,
    };
    let user_full_name = if login.is_empty() {
        String::new()
    } else {
        os::user_full_name(&login).unwrap_or_else(|| login.clone())
    };
    Platform {
        computer: clip(&computer),
        platform: clip(&platform),
        user_full_name: clip(&user_full_name),
    }
}

/// The desktop this computer offers a session: on Linux, the X11 display `DISPLAY` names;
/// `None` without one (nothing can be offered then).
pub fn desktop(env: &Env) -> Option<Arc<dyn Desktop>> {
    #[cfg(target_os = "linux")]
    if let Some(display) = env.get("DISPLAY") {
        return Some(Arc::new(linux::desktop::X11Desktop::new(Some(
            display.to_owned(),
        ))));
    }
    let _ = env;
    None
}

/// The customer name to announce: the one typed on the portal, else the OS user's.
pub fn customer_name(ticket_name: &str, platform: &Platform) -> String {
    let typed = ticket_name.trim();
    if typed.is_empty() {
        platform.user_full_name.clone()
    } else {
        clip(typed)
    }
}

fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        other => other,
    }
}

/// Removes control characters and bounds the length to what the protocol accepts.
fn clip(s: &str) -> String {
    lifeline_proto::sanitize_text(s)
        .replace(['\n', '\t'], " ")
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_string_is_filled() {
        let p = current(&Env::from_pairs([("USER", "root")]));
        assert!(!p.platform.is_empty());
        assert!(!p.computer.is_empty());
        assert!(!p.user_full_name.is_empty());
        #[cfg(target_os = "linux")]
        assert!(p.platform.starts_with("Linux "), "{}", p.platform);
    }

    #[test]
    fn customer_name_prefers_ticket() {
        let p = Platform {
            computer: "pc".into(),
            platform: "Linux".into(),
            user_full_name: "Jane Doe".into(),
        };
        assert_eq!(customer_name("  Jörg  ", &p), "Jörg");
        assert_eq!(customer_name("", &p), "Jane Doe");
    }

    #[test]
    fn clip_bounds_and_cleans() {
        assert_eq!(clip("a\u{1b}b\nc"), "ab c");
        assert_eq!(clip(&"é".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }
}
