//! Linux: host name from the kernel, distribution from `/etc/os-release`, the user's full
//! name from the passwd GECOS field (`getent passwd`, so LDAP/SSSD users work too, else
//! `/etc/passwd`).
//!
//! The desktop on X11: [`capture`] (screen, monitors, cursor), [`input`] (pointer and keys
//! injected with XTest) and [`clipboard`] (text through X selections), offered to a session
//! as one [`desktop::X11Desktop`]. [`sysinfo`] reads the system-information report's
//! sources; [`pty`] runs the command shell on a pseudo-terminal; [`service`] writes and enables
//! the jump client's systemd unit.

pub mod capture;
pub mod clipboard;
pub mod desktop;
pub mod input;
pub mod pty;
pub mod service;
pub mod sysinfo;

use std::process::Command;

pub fn computer_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

pub fn os_description() -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| pretty_name(&text))
}

pub fn user_full_name(login: &str) -> Option<String> {
    let line = Command::new("getent")
        .args(["passwd", login])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/passwd")
                .ok()?
                .lines()
                .find(|l| l.split(':').next() == Some(login))
                .map(str::to_owned)
        })?;
    gecos_name(&line)
}

/// `PRETTY_NAME` from os-release text (quotes removed).
pub(crate) fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The full name from a passwd line: the first comma-separated part of the GECOS field.
pub(crate) fn gecos_name(passwd_line: &str) -> Option<String> {
    let gecos = passwd_line.trim_end().split(':').nth(4)?;
    let name = gecos.split(',').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("ID=x\n"), None);
    }

    #[test]
    fn parses_gecos() {
        assert_eq!(
            gecos_name("jd:x:1000:1000:Jane Doe,,,:/home/jd:/bin/bash\n").as_deref(),
            Some("Jane Doe")
        );
        assert_eq!(gecos_name("root:x:0:0::/root:/bin/bash"), None);
        assert_eq!(gecos_name("garbage"), None);
    }
}
