//! Installing this program as a jump client from a `jump_install` ticket.
//!
//! Steps: make an ed25519 key pair; `POST /api/v1/jump/register` with the deployment key and
//! the public key over the pinned TLS connection ([`net::tls_connect`], one plain HTTP/1.1
//! request with `Connection: close`, [`net::post_json`]); write the service
//! folder (the program without its ticket trailer, so the deployment key is not kept,
//! `jump.json`, `jump.key` 0600, and the unit `lifeline-jump.service`); then, unless told not
//! to, hand the unit to systemd ([`crate::platform::linux::service`]).
//!
//! The folder defaults to `/opt/lifeline-jump` for root and `~/.local/share/lifeline-jump`
//! for a user (a user unit then); `--service-dir` chooses another.
//!
//! The deployment key decides the mode (the box's answer says which). A passive client
//! listens for wake-ups on `--wake-port` ([`super::passive::DEFAULT_WAKE_PORT`] by default)
//! on every address or `--wake-address`; the port is registered with the box.
//!
//! [`uninstall`] is the reverse: the unit out of systemd (where the installer put it, as
//! `jump.json` records), then the folder's files and the folder (only the files the installer
//! writes: a folder holding anything else is left, with those, and the error says so).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use lifeline_proto::jump::{JumpMode, Registered, Registration};
use lifeline_proto::ticket::TicketFile;

use super::{CONFIG_FILE, JumpConfig, KEY_FILE};
use crate::env::Env;
use crate::net::{self, NetError};

/// The program's name in the service folder.
pub const PROGRAM: &str = "lifeline-agent";
/// The unit's file name (in the folder, and in systemd's folder when enabled).
pub const UNIT: &str = "lifeline-jump.service";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot reach the support box to register: {0}")]
    Net(#[from] NetError),
    #[error("the support box's answer was not understood")]
    BadAnswer,
    #[error("the support box refused to register this computer: {0}")]
    Refused(String),
    #[error("cannot write the service folder {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read this program's own file")]
    OwnExe(#[source] std::io::Error),
    #[error("no home folder is known: choose a folder with --service-dir")]
    NoHome,
    #[error(transparent)]
    Service(#[from] crate::platform::linux::service::ServiceError),
}

/// Where and how to install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    pub service_dir: Option<PathBuf>,
    /// Write the unit but do not hand it to systemd (a service runner starts it instead).
    pub no_systemd: bool,
    /// Passive clients: the wake port (default [`super::passive::DEFAULT_WAKE_PORT`]).
    pub wake_port: Option<u16>,
    /// Passive clients: the address to listen on (default: every address).
    pub wake_address: Option<std::net::IpAddr>,
}

/// What was installed.
#[derive(Debug, Clone)]
pub struct Installed {
    pub dir: PathBuf,
    pub client_id: String,
    /// The command the service runs.
    pub command: Vec<String>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The default service folder.
pub fn default_dir(env: &Env) -> Result<PathBuf, InstallError> {
    if is_root() {
        return Ok(PathBuf::from("/opt/lifeline-jump"));
    }
    if let Some(d) = env.get("XDG_DATA_HOME") {
        return Ok(Path::new(d).join("lifeline-jump"));
    }
    env.get("HOME")
        .map(|h| Path::new(h).join(".local/share/lifeline-jump"))
        .ok_or(InstallError::NoHome)
}

/// Registers this computer and writes the service folder.
pub async fn install(
    ticket: &TicketFile,
    env: &Env,
    opts: &InstallOptions,
) -> Result<Installed, InstallError> {
    let dir = match &opts.service_dir {
        Some(d) => d.clone(),
        None => default_dir(env)?,
    };
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let b64 = base64::engine::general_purpose::STANDARD;
    let registration = Registration {
        deploy_key: ticket.ticket.clone(),
        public_key: b64.encode(key.verifying_key().to_bytes()),
        // The key decides the mode; the port only matters for a passive client.
        mode: JumpMode::Active,
        info: super::info(env),
        wake_port: Some(opts.wake_port.unwrap_or(super::passive::DEFAULT_WAKE_PORT)),
    };
    let (status, body) = net::post_json(
        ticket,
        env,
        "/api/v1/jump/register",
        &lifeline_proto::encode(&registration),
    )
    .await?;
    if status != 200 {
        let message = net::answer_message(status, &body);
        let message = if status == 403 && message.contains("may not") {
            "the deployment key is not valid any more (expired or used up): download a new installer"
                .to_string()
        } else {
            message
        };
        return Err(InstallError::Refused(message));
    }
    let registered: Registered =
        serde_json::from_slice(&body).map_err(|_| InstallError::BadAnswer)?;
    let mode = registered.mode.unwrap_or(JumpMode::Active);
    let passive = mode == JumpMode::Passive;
    let config = JumpConfig {
        site_url: ticket.site_url.clone(),
        cert_sha256: ticket.cert_sha256.to_ascii_lowercase(),
        client_id: registered.client_id.clone(),
        mode,
        site_name: ticket.site_name.clone(),
        wake_public_key: registered.wake_public_key,
        wake_port: opts.wake_port.filter(|_| passive),
        wake_address: opts.wake_address.filter(|_| passive),
        systemd: (!opts.no_systemd)
            .then(|| (if is_root() { "system" } else { "user" }).to_string()),
    };
    write_folder(&dir, &config, &key)?;
    let program = dir.join(PROGRAM);
    let command = vec![
        program.display().to_string(),
        "jump".into(),
        "run".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    let unit = crate::platform::linux::service::unit_text(&command, &ticket.site_name);
    write_file(&dir.join(UNIT), unit.as_bytes(), 0o644)?;
    if !opts.no_systemd {
        crate::platform::linux::service::enable(&dir.join(UNIT), is_root())?;
    }
    Ok(Installed {
        dir,
        client_id: registered.client_id,
        command,
    })
}

fn write_folder(
    dir: &Path,
    config: &JumpConfig,
    key: &ed25519_dalek::SigningKey,
) -> Result<(), InstallError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use std::os::unix::fs::PermissionsExt;
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(werr(dir))?;
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| InstallError::Write {
            path: dir.join(KEY_FILE),
            source: std::io::Error::other(e.to_string()),
        })?;
    write_file(&dir.join(KEY_FILE), pem.as_bytes(), 0o600)?;
    let json = serde_json::to_vec_pretty(config).unwrap_or_default();
    write_file(&dir.join(CONFIG_FILE), &json, 0o600)?;
    let exe = std::env::current_exe().map_err(InstallError::OwnExe)?;
    let bytes = std::fs::read(&exe).map_err(InstallError::OwnExe)?;
    let program = without_trailer(&bytes);
    let target = dir.join(PROGRAM);
    // A new file then a rename, so a running service's program is never overwritten in place.
    let tmp = dir.join(format!("{PROGRAM}.new"));
    write_file(&tmp, program, 0o755)?;
    std::fs::rename(&tmp, &target).map_err(werr(&target))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| InstallError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Service(#[from] crate::platform::linux::service::ServiceError),
}

/// Takes the unit back from systemd (if the installer handed it over) and removes the
/// service folder's files and the folder.
pub fn uninstall(dir: &Path, config: &JumpConfig) -> Result<(), UninstallError> {
    if let Some(scope) = &config.systemd
        && let Err(e) = crate::platform::linux::service::disable(UNIT, scope == "system")
    {
        // The folder is removed all the same: a unit without its program fails and stays
        // stopped.
        tracing::warn!("event=jump_unit_not_disabled error={:?}", e.to_string());
    }
    let new = format!("{PROGRAM}.new");
    for name in [CONFIG_FILE, KEY_FILE, PROGRAM, new.as_str(), UNIT] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(UninstallError::Remove { path, source }),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(UninstallError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The last step of an uninstall: asks systemd to stop the unit (this process) so it is not
/// restarted; nothing to do for a unit systemd does not run.
pub fn stop_service(config: &JumpConfig) {
    if let Some(scope) = &config.systemd
        && let Err(e) = crate::platform::linux::service::stop_no_block(UNIT, scope == "system")
    {
        tracing::warn!("event=jump_unit_not_stopped error={:?}", e.to_string());
    }
}

/// The executable without the box's ticket trailer (unchanged when it has none).
pub fn without_trailer(bytes: &[u8]) -> &[u8] {
    let magic = lifeline_proto::ticket::TRAILER_MAGIC;
    let Some(rest) = bytes.strip_suffix(magic.as_slice()) else {
        return bytes;
    };
    let Some(len_at) = rest.len().checked_sub(4) else {
        return bytes;
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&rest[len_at..]);
    let n = u32::from_le_bytes(n) as usize;
    match len_at.checked_sub(n) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trailer_is_cut_off() {
        let ticket = TicketFile {
            site_url: "https://box".into(),
            cert_sha256: "ab".into(),
            ticket: "dk_x".into(),
            expires_at: 1,
            language: String::new(),
            customer_name: String::new(),
            site_name: String::new(),
            kind: lifeline_proto::ticket::TicketKind::JumpInstall,
        };
        let mut exe = b"\x7fELF program".to_vec();
        exe.extend(lifeline_proto::ticket::trailer(&ticket));
        assert_eq!(without_trailer(&exe), b"\x7fELF program");
        assert_eq!(without_trailer(b"plain"), b"plain");
        assert_eq!(
            without_trailer(b"\xff\xff\xff\xffLLTICKET"),
            b"\xff\xff\xff\xffLLTICKET"
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = without_trailer(&b);
        }
    }
}
