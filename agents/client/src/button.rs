//! The support button on the customer's computer: the program with a `button` ticket (see
//! [`lifeline_proto::ticket::TicketKind::Button`]).
//!
//! * Run as downloaded, it installs itself for the current user ([`install`]): the program,
//!   ticket included, goes to `$XDG_DATA_HOME/lifeline/buttons/<id>/lifeline-support`
//!   (folder 0700: the ticket lets anyone queue requests), and a desktop entry
//!   `lifeline-support-<id>.desktop` ("Get help from `<site>`", in English, French and German)
//!   goes to the applications menu (`$XDG_DATA_HOME/applications`) and, when the person has
//!   one, to the desktop folder. `<id>` comes from a hash of the token, never the token.
//! * Clicked ([`START_ARG`]), it asks the box for a session in the button's queue
//!   (`POST /api/v1/buttons/session` over the pinned TLS link, [`request`]) and runs the
//!   answer like a downloaded one-shot client. A button that expired or was revoked is told so
//!   by the box (`410`), and the window says it and offers the support portal.
//!
//! The answer is trusted only for what the pinned box may decide: the session ticket must name
//! the same site and certificate pin as the button's own ticket.
//!
//! Limits: Linux desktops (freedesktop entries) only; the entry is per user.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use lifeline_proto::ticket::{TicketFile, TicketKind};
use serde::Serialize;
use sha2::Digest as _;

use crate::env::Env;
use crate::i18n::{Key, Lang, Texts};
use crate::net::{self, NetError};

/// The argument the desktop entry starts the program with.
pub const START_ARG: &str = "--button";
/// The program's file name in its folder.
pub const PROGRAM: &str = "lifeline-support";

#[derive(Debug, thiserror::Error)]
pub enum ButtonError {
    #[error("no home folder is known, so the support button cannot be installed")]
    NoHome,
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read this program's own file")]
    OwnExe(#[source] std::io::Error),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the support box's answer was not understood: try again later")]
    BadAnswer,
    #[error("the support box could not start a session: {0}")]
    Refused(String),
}

/// What [`install`] wrote.
#[derive(Debug, Clone)]
pub struct Installed {
    pub program: PathBuf,
    pub entry: PathBuf,
    /// The copy on the desktop, when the person has a desktop folder.
    pub desktop_copy: Option<PathBuf>,
    /// The entry's name in the person's language.
    pub name: String,
}

/// What a click got from the box.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A one-shot ticket in the button's queue.
    Session(TicketFile),
    /// The button expired or was revoked.
    Expired,
}

/// A short, stable name for this button's files (from its token, which it does not reveal).
pub fn button_id(ticket: &TicketFile) -> String {
    let digest = sha2::Sha256::digest(ticket.ticket.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn data_home(env: &Env) -> Result<PathBuf, ButtonError> {
    if let Some(d) = env.get("XDG_DATA_HOME").filter(|d| d.starts_with('/')) {
        return Ok(PathBuf::from(d));
    }
    env.get("HOME")
        .filter(|h| h.starts_with('/'))
        .map(|h| Path::new(h).join(".local/share"))
        .ok_or(ButtonError::NoHome)
}

/// The person's desktop folder, if they have one (`XDG_DESKTOP_DIR`, else `~/Desktop`).
fn desktop_dir(env: &Env) -> Option<PathBuf> {
    let home = env.get("HOME")?;
    let from_dirs = std::fs::read_to_string(
        env.get("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(home).join(".config"))
            .join("user-dirs.dirs"),
    )
    .ok()
    .and_then(|text| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix("XDG_DESKTOP_DIR=")?.trim().trim_matches('"');
            Some(PathBuf::from(v.replacen("$HOME", home, 1)))
        })
    });
    let dir = env
        .get("XDG_DESKTOP_DIR")
        .map(PathBuf::from)
        .or(from_dirs)
        .unwrap_or_else(|| Path::new(home).join("Desktop"));
    (dir.is_dir() && dir != Path::new(home)).then_some(dir)
}

/// Quotes a path for a desktop entry's `Exec` key (the specification's rules: double
/// quotes, with `"`, `` ` ``, `$` and `\` escaped, and `%` doubled).
pub fn exec_quote(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    for c in path.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A desktop entry's value on one line (no control characters).
fn entry_value(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The desktop entry for a button whose program is at `program`.
pub fn desktop_entry(site: &str, program: &Path) -> String {
    let site = if site.trim().is_empty() {
        "support"
    } else {
        site.trim()
    };
    let name = |lang| entry_value(&Texts::new(lang).fmt(Key::ButtonName, site));
    format!(
        "[Desktop Entry]\nType=Application\nVersion=1.0\nName={}\nName[fr]={}\nName[de]={}\n\
         Exec={} {START_ARG}\nIcon=help-browser\nTerminal=false\nCategories=Utility;\n",
        name(Lang::En),
        name(Lang::Fr),
        name(Lang::De),
        exec_quote(&program.to_string_lossy()),
    )
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ButtonError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| ButtonError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A new file renamed into place: a running button's program is never changed under it.
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn make_dir(path: &Path, mode: u32) -> Result<(), ButtonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| ButtonError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Installs the button for the current user from this program's own file (`exe`, with its
/// ticket). Installing the same button again replaces its files.
pub fn install(
    ticket: &TicketFile,
    env: &Env,
    exe: &[u8],
    lang: Lang,
) -> Result<Installed, ButtonError> {
    let data = data_home(env)?;
    let id = button_id(ticket);
    let dir = data.join("lifeline/buttons").join(&id);
    make_dir(&dir, 0o700)?;
    let program = dir.join(PROGRAM);
    write_file(&program, exe, 0o700)?;
    let entry_text = desktop_entry(&ticket.site_name, &program);
    let apps = data.join("applications");
    make_dir(&apps, 0o755)?;
    let file_name = format!("lifeline-support-{id}.desktop");
    let entry = apps.join(&file_name);
    write_file(&entry, entry_text.as_bytes(), 0o644)?;
    // Desktop launchers must be executable to be trusted by file managers.
    let desktop_copy = match desktop_dir(env) {
        Some(d) => {
            let copy = d.join(&file_name);
            write_file(&copy, entry_text.as_bytes(), 0o755)?;
            Some(copy)
        }
        None => None,
    };
    let site = if ticket.site_name.trim().is_empty() {
        "support"
    } else {
        ticket.site_name.trim()
    };
    Ok(Installed {
        program,
        entry,
        desktop_copy,
        name: Texts::new(lang).fmt(Key::ButtonName, site),
    })
}

#[derive(Serialize)]
struct StartRequest<'a> {
    token: &'a str,
    name: &'a str,
    language: &'a str,
}

/// Reads the box's answer to a click (see the module docs).
pub fn parse_answer(button: &TicketFile, status: u16, body: &[u8]) -> Result<Answer, ButtonError> {
    match status {
        200 => {
            let t = std::str::from_utf8(body)
                .ok()
                .and_then(|text| TicketFile::decode(text).ok())
                .ok_or(ButtonError::BadAnswer)?;
            if t.kind != TicketKind::OneShot
                || t.site_url != button.site_url
                || !t.cert_sha256.eq_ignore_ascii_case(&button.cert_sha256)
            {
                return Err(ButtonError::BadAnswer);
            }
            Ok(Answer::Session(t))
        }
        410 => Ok(Answer::Expired),
        _ => Err(ButtonError::Refused(net::answer_message(status, body))),
    }
}

/// A click: asks the box for a session in the button's queue.
pub async fn request(
    button: &TicketFile,
    env: &Env,
    name: &str,
    lang: Lang,
) -> Result<Answer, ButtonError> {
    let body = serde_json::to_string(&StartRequest {
        token: &button.ticket,
        name,
        language: lang.tag(),
    })
    .map_err(|_| ButtonError::BadAnswer)?;
    let (status, answer) = net::post_json(button, env, "/api/v1/buttons/session", &body).await?;
    parse_answer(button, status, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn button() -> TicketFile {
        TicketFile {
            site_url: "https://help.example.org".into(),
            cert_sha256: "ab".repeat(32),
            ticket: "sb_secret".into(),
            expires_at: 1,
            language: String::new(),
            customer_name: String::new(),
            site_name: "Example \"Uni\"".into(),
            kind: TicketKind::Button,
        }
    }

    #[test]
    fn exec_paths_are_quoted() {
        assert_eq!(exec_quote("/home/ann/a b"), "\"/home/ann/a b\"");
        assert_eq!(exec_quote("/x/$HOME`\"\\%"), "\"/x/\\$HOME\\`\\\"\\\\%%\"");
    }

    #[test]
    fn entry_names_the_site_in_three_languages() {
        let e = desktop_entry("Uni\nLab", Path::new("/home/ann/.local/share/p"));
        assert!(e.contains("Name=Get help from Uni Lab\n"), "{e}");
        assert!(e.contains("Name[fr]=Obtenir de l’aide de Uni Lab\n"));
        assert!(e.contains("Name[de]=Hilfe von Uni Lab holen\n"));
        assert!(e.contains("Exec=\"/home/ann/.local/share/p\" --button\n"));
        assert!(!button_id(&button()).contains("secret"));
    }

    #[test]
    fn installs_for_the_user() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("Desktop")).unwrap();
        let h = home.path().to_str().unwrap();
        let env = Env::from_pairs([("HOME", h)]);
        let done = install(&button(), &env, b"program", Lang::Fr).unwrap();
        assert_eq!(std::fs::read(&done.program).unwrap(), b"program");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(done.program.parent().unwrap()), 0o700);
        assert!(
            done.entry
                .starts_with(home.path().join(".local/share/applications"))
        );
        assert_eq!(mode(done.desktop_copy.as_ref().unwrap()), 0o755);
        assert_eq!(done.name, "Obtenir de l’aide de Example \"Uni\"");
        // Again: replaced, not failed.
        install(&button(), &env, b"program 2", Lang::En).unwrap();
        assert_eq!(std::fs::read(&done.program).unwrap(), b"program 2");
    }

    #[test]
    fn answers_from_the_box() {
        let b = button();
        let mut t = b.clone();
        t.kind = TicketKind::OneShot;
        t.ticket = "signed".into();
        let ok = serde_json::to_vec(&t).unwrap();
        assert_eq!(
            parse_answer(&b, 200, &ok).unwrap(),
            Answer::Session(t.clone())
        );
        assert_eq!(parse_answer(&b, 410, b"{}").unwrap(), Answer::Expired);
        let mut elsewhere = t.clone();
        elsewhere.site_url = "https://evil.example".into();
        let bad = serde_json::to_vec(&elsewhere).unwrap();
        assert!(matches!(
            parse_answer(&b, 200, &bad),
            Err(ButtonError::BadAnswer)
        ));
        assert!(matches!(
            parse_answer(&b, 429, br#"{"message":"too many attempts"}"#),
            Err(ButtonError::Refused(m)) if m == "too many attempts"
        ));
    }

    proptest! {
        #[test]
        fn any_answer_is_handled(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_answer(&button(), status, &body);
        }
    }
}
