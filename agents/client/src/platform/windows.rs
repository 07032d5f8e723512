//! Windows (designed for, built where a Windows toolchain exists): the computer name from
//! `COMPUTERNAME`, the version from `ver`, the full name from `GetUserNameExW` once a
//! Windows API crate is added. Until then only what the environment tells is reported.

pub fn computer_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty())
}

pub fn os_description() -> Option<String> {
    let out = std::process::Command::new("cmd")
        .args(["/C", "ver"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

pub fn user_full_name(_login: &str) -> Option<String> {
    None
}
