//! The jump client's systemd unit.
//!
//! [`unit_text`] writes a simple service that restarts the client whenever it stops (the
//! client itself reconnects with back-off, so `Restart=always` with a pause only matters when
//! the program exits). [`enable`] links the unit into systemd's folder — the system one for
//! root (`/etc/systemd/system`), the user's (`~/.config/systemd/user`, with `--user`)
//! otherwise — reloads systemd and starts the unit now and at every boot.
//!
//! [`disable`] undoes it for an uninstall: disables the unit, removes its file from systemd's
//! folder and reloads systemd; [`stop_no_block`] then asks systemd to stop the running unit
//! (the caller is that unit's process, so it is the last step).
//!
//! Limits: a user unit runs only while the user is logged in unless lingering is enabled
//! (`loginctl enable-linger`); systemd is assumed where `enable` is called (the installer
//! can be told to skip it, and a test runs the unit's command itself).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot write the systemd unit {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`systemctl {args}` failed: {detail}")]
    Systemctl { args: String, detail: String },
    #[error("no home folder is known for the user unit")]
    NoHome,
}

/// Quotes one argument for a unit's `ExecStart=` (systemd's C-style double quotes).
fn quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unit file's text for `command` (program and arguments).
pub fn unit_text(command: &[String], site_name: &str) -> String {
    let site: String = site_name.chars().filter(|c| !c.is_control()).collect();
    let exec = command
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "[Unit]\nDescription=Lifeline jump client ({site})\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=simple\nExecStart={exec}\nRestart=always\nRestartSec=10\nEnvironment=RUST_LOG=info\n\n[Install]\nWantedBy=default.target multi-user.target\n"
    )
}

/// The command of a unit's `ExecStart=` line, unquoted (the inverse of [`unit_text`] for
/// what it writes); used by service runners that start the unit without systemd.
pub fn exec_start(unit: &str) -> Option<Vec<String>> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('"') => {
                let mut arg = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => arg.push(chars.next()?),
                        '%' => {
                            chars.next();
                            arg.push('%');
                        }
                        '$' => {
                            chars.next();
                            arg.push('$');
                        }
                        c => arg.push(c),
                    }
                }
                args.push(arg);
            }
            Some(c) => {
                let mut arg = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    arg.push(c);
                    chars.next();
                }
                args.push(arg);
            }
        }
    }
    (!args.is_empty()).then_some(args)
}

fn systemctl(user: bool, args: &[&str]) -> Result<(), ServiceError> {
    let mut cmd = Command::new("systemctl");
    if user {
        cmd.arg("--user");
    }
    let shown = args.join(" ");
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| ServiceError::Systemctl {
            args: shown.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServiceError::Systemctl {
            args: shown,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// systemd's folder for the system's units or the user's.
fn unit_folder(system: bool) -> Result<PathBuf, ServiceError> {
    if system {
        Ok(PathBuf::from("/etc/systemd/system"))
    } else {
        let home = std::env::var_os("HOME").ok_or(ServiceError::NoHome)?;
        Ok(PathBuf::from(home).join(".config/systemd/user"))
    }
}

/// Disables unit `name` and removes its file from systemd's folder (a unit already gone is
/// not an error).
pub fn disable(name: &str, system: bool) -> Result<(), ServiceError> {
    let target = unit_folder(system)?.join(name);
    let disabled = systemctl(!system, &["disable", name]);
    match std::fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServiceError::Write {
                path: target,
                source,
            });
        }
    }
    systemctl(!system, &["daemon-reload"])?;
    disabled
}

/// Asks systemd to stop unit `name` without waiting (so it is not restarted when its process
/// exits).
pub fn stop_no_block(name: &str, system: bool) -> Result<(), ServiceError> {
    systemctl(!system, &["stop", "--no-block", name])
}

/// Copies `unit` into systemd's folder and starts it now and at boot.
pub fn enable(unit: &Path, system: bool) -> Result<(), ServiceError> {
    let folder = unit_folder(system)?;
    let name = unit
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "lifeline-jump.service".into());
    let target = folder.join(&name);
    let werr = |source| ServiceError::Write {
        path: target.clone(),
        source,
    };
    std::fs::create_dir_all(&folder).map_err(werr)?;
    std::fs::copy(unit, &target).map_err(werr)?;
    systemctl(!system, &["daemon-reload"])?;
    systemctl(!system, &["enable", "--now", &name])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_round_trips() {
        let cmd: Vec<String> = [
            "/opt/a b/lifeline-agent",
            "jump",
            "run",
            "--dir",
            "/tmp/x\"y%z$w\\",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let unit = unit_text(&cmd, "Site");
        assert!(unit.contains("Restart=always"));
        assert_eq!(exec_start(&unit), Some(cmd));
        assert_eq!(exec_start("[Service]\n"), None);
        assert_eq!(exec_start("ExecStart=\"unterminated"), None);
    }
}
