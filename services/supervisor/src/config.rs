//! The supervisor's configuration file (`/etc/lifeline/supervisor.toml` on the box).
//!
//! A typed struct read with serde; unknown keys are refused and an error names the file and
//! the key. Two shapes, chosen by `mode`:
//!
//! ```toml
//! mode = "appliance"               # systemd runs the services
//! data_path = "/data"              # file system whose usage is reported
//! state_dir = "/data/lifeline/supervisor"
//! relay_check = "127.0.0.1:443"    # the health check connects here
//! authorised_users = ["root", "lifeline-relay", "lifeline-panel"]
//! relay_user = "lifeline-relay"    # may report the relay's counts
//! network_dir = "/var/lib/lifeline/network"   # the admin's network choices (networkd files)
//! relay_certificate = "/var/lib/lifeline/relay/tls/cert.pem"
//! relay_config = "/etc/lifeline/relay.toml"  # its [tls] certificate, when set, wins
//! warn_days = 30                   # licence and certificate alerts this many days ahead
//! fall_back_after_failed_update = true
//!
//! [[service]]
//! name = "relay"
//! unit = "lifeline-relay.service"
//! ```
//!
//! ```toml
//! mode = "development"             # the supervisor runs the services as children
//! state_dir = "var/dev/supervisor" # bus socket, notify sockets, audit log, bus-address
//!
//! [[service]]
//! name = "license"
//! command = "target/release/lifeline-license"
//! args = ["serve", "--data-dir", "var/dev/license"]
//! env = { RUST_LOG = "info" }
//! ready = "notify"                 # wait for READY=1 (sd_notify), or "started"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon looks by default.
pub const DEFAULT_PATH: &str = "/etc/lifeline/supervisor.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the supervisor configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: key `{key}`: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    Appliance,
    Development,
}

/// How a development child says it is ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// `READY=1` on its `NOTIFY_SOCKET` (every Lifeline daemon sends it).
    #[default]
    Notify,
    /// As soon as the process runs.
    Started,
}

/// One service: a systemd unit on the box, a child program in development.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Short name (`relay`, `license`, `panel`); what `RestartService` takes.
    pub name: String,
    /// Appliance: the systemd unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Development: the program.
    #[serde(default)]
    pub command: Option<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ready: Ready,
    /// Development: shown on the status page but not required for "ok" (e.g. the panel
    /// emulator).
    #[serde(default)]
    pub optional: bool,
}

impl ServiceConfig {
    /// The unit or program name shown in the status.
    pub fn label(&self) -> String {
        match (&self.unit, &self.command) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => c
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| c.display().to_string()),
            (None, None) => self.name.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mode: ModeName,
    #[serde(default = "default_data_path")]
    data_path: PathBuf,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    relay_check: Option<SocketAddr>,
    #[serde(default = "default_users")]
    authorised_users: Vec<String>,
    #[serde(default = "default_relay_user")]
    relay_user: String,
    #[serde(default = "default_network_dir")]
    network_dir: PathBuf,
    #[serde(default = "default_health_deadline")]
    health_deadline_seconds: u64,
    #[serde(default = "default_refresh_ms")]
    refresh_ms: u64,
    #[serde(default)]
    relay_certificate: Option<PathBuf>,
    #[serde(default)]
    relay_config: Option<PathBuf>,
    #[serde(default = "default_warn_days")]
    warn_days: u32,
    #[serde(default = "default_true")]
    fall_back_after_failed_update: bool,
    #[serde(default)]
    service: Vec<ServiceConfig>,
}

fn default_data_path() -> PathBuf {
    PathBuf::from("/data")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/data/lifeline/supervisor")
}
fn default_users() -> Vec<String> {
    vec![
        "root".into(),
        "lifeline-relay".into(),
        "lifeline-panel".into(),
    ]
}
fn default_relay_user() -> String {
    "lifeline-relay".into()
}
fn default_network_dir() -> PathBuf {
    PathBuf::from("/var/lib/lifeline/network")
}
fn default_warn_days() -> u32 {
    30
}
fn default_true() -> bool {
    true
}
fn default_health_deadline() -> u64 {
    180
}
fn default_refresh_ms() -> u64 {
    2000
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: ModeName,
    pub data_path: PathBuf,
    pub state_dir: PathBuf,
    pub relay_check: Option<SocketAddr>,
    pub authorised_users: Vec<String>,
    pub relay_user: String,
    /// Where `SetNetwork` writes networkd files (on the box: on the data partition, and
    /// `/etc/systemd/network` points there).
    pub network_dir: PathBuf,
    pub health_deadline: Duration,
    pub refresh: Duration,
    /// The relay's TLS certificate (PEM), for the expiry alerts: the one `relay_config`
    /// names in `[tls] certificate`, else `relay_certificate` (the self-signed one).
    pub relay_certificate: Option<PathBuf>,
    /// Licence and certificate alerts start this many days before the end.
    pub warn_days: u32,
    /// After a failed post-update health check, mark the slot bad and reboot into the slot
    /// that worked (when there is one).
    pub fall_back_after_failed_update: bool,
    pub services: Vec<ServiceConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let file: FileConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                key: e.path().to_string(),
                message: e.inner().message().to_string(),
            })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if file.service.is_empty() {
            return Err(invalid(
                "service".into(),
                "list at least one service ([[service]] with a name)".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in file.service.iter().enumerate() {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    format!("service[{i}].name"),
                    "use letters, digits, - or _".into(),
                ));
            }
            if !seen.insert(s.name.clone()) {
                return Err(invalid(
                    format!("service[{i}].name"),
                    format!("\"{}\" is listed twice", s.name),
                ));
            }
            match file.mode {
                ModeName::Appliance if s.unit.is_none() => {
                    return Err(invalid(
                        format!("service[{i}].unit"),
                        "the appliance mode needs the systemd unit of every service".into(),
                    ));
                }
                ModeName::Development if s.command.is_none() => {
                    return Err(invalid(
                        format!("service[{i}].command"),
                        "the development mode needs the program of every service".into(),
                    ));
                }
                _ => {}
            }
        }
        if file.refresh_ms < 100 {
            return Err(invalid(
                "refresh_ms".into(),
                "must be at least 100 (milliseconds)".into(),
            ));
        }
        Ok(Config {
            mode: file.mode,
            data_path: file.data_path,
            state_dir: file.state_dir,
            relay_check: file.relay_check,
            authorised_users: file.authorised_users,
            relay_user: file.relay_user,
            network_dir: file.network_dir,
            health_deadline: Duration::from_secs(file.health_deadline_seconds),
            refresh: Duration::from_millis(file.refresh_ms),
            relay_certificate: file
                .relay_config
                .as_deref()
                .and_then(relay_tls_certificate)
                .or(file.relay_certificate),
            warn_days: file.warn_days,
            fall_back_after_failed_update: file.fall_back_after_failed_update,
            services: file.service,
        })
    }
}

/// The certificate the relay's configuration file names (`[tls] certificate`), if it can be
/// read and names one.
pub fn relay_tls_certificate(relay_config: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(relay_config).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    v.get("tls")?
        .get("certificate")?
        .as_str()
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_configured_certificate_wins() {
        let dir = tempfile::tempdir().unwrap();
        let relay = dir.path().join("relay.toml");
        let conf = format!(
            "mode = \"appliance\"\nrelay_certificate = \"/self-signed.pem\"\nrelay_config = \"{}\"\n[[service]]\nname = \"relay\"\nunit = \"r.service\"\n",
            relay.display()
        );
        let c = Config::parse(Path::new("s.toml"), &conf).unwrap();
        assert_eq!(
            c.relay_certificate.as_deref(),
            Some(Path::new("/self-signed.pem"))
        );
        std::fs::write(&relay, "[server]\nlisten = \"0.0.0.0:443\"\n[tls]\ncertificate = \"/etc/lifeline/tls/site.pem\"\nkey = \"/k\"\n").unwrap();
        let c = Config::parse(Path::new("s.toml"), &conf).unwrap();
        assert_eq!(
            c.relay_certificate.as_deref(),
            Some(Path::new("/etc/lifeline/tls/site.pem"))
        );
        assert_eq!(c.warn_days, 30);
        assert!(c.fall_back_after_failed_update);
    }

    #[test]
    fn development_config_parses() {
        let c = Config::parse(
            Path::new("s.toml"),
            "mode = \"development\"\nstate_dir = \"/tmp/x\"\n[[service]]\nname = \"relay\"\ncommand = \"/bin/relay\"\nargs = [\"-v\"]\nready = \"started\"\n",
        )
        .unwrap();
        assert_eq!(c.mode, ModeName::Development);
        assert_eq!(c.services[0].ready, Ready::Started);
        assert_eq!(c.services[0].label(), "relay");
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = Config::parse(
            Path::new("/etc/s.toml"),
            "mode = \"appliance\"\n[[service]]\nname = \"relay\"\nbogus = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/etc/s.toml") && e.contains("service"), "{e}");
        let e = Config::parse(
            Path::new("/etc/s.toml"),
            "mode = \"appliance\"\n[[service]]\nname = \"relay\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("service[0].unit"), "{e}");
        let e = Config::parse(Path::new("f"), "mode = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `mode`"), "{e}");
    }
}
