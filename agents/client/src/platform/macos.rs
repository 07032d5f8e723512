//! macOS (designed for, built where a macOS toolchain exists): the computer name from
//! `scutil --get ComputerName`, the version from `sw_vers`, the full name from
//! `id -F`.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

pub fn computer_name() -> Option<String> {
    run("scutil", &["--get", "ComputerName"])
}

pub fn os_description() -> Option<String> {
    let name = run("sw_vers", &["-productName"])?;
    let version = run("sw_vers", &["-productVersion"]).unwrap_or_default();
    Some(format!("{name} {version}").trim().to_owned())
}

pub fn user_full_name(login: &str) -> Option<String> {
    run("id", &["-F", login])
}
