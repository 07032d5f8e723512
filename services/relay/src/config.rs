//! Typed configuration: `/etc/lifeline/relay.toml` on the box, overridden by flags.
//!
//! Every key is optional; a missing file is fine when it is the default path. Errors name
//! the file and the key ("relay.toml: key `server.listen`: invalid socket address").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/lifeline/relay.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    server: ServerSection,
    site: SiteSection,
    tls: TlsSection,
    limits: LimitsSection,
    appliance: ApplianceSection,
    files: crate::files::FilePolicy,
    tools: crate::tools::ToolPolicy,
    jump: JumpSection,
    buttons: ButtonSection,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ButtonSection {
    /// Days a support button installed from a session works (1 to 1826; default 365).
    session_lifetime_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct JumpSection {
    /// Jump-client (re)connections admitted per second (1 to 300; default 50).
    reconnects_per_second: Option<u32>,
    /// False lifts the reconnection limit (benchmarks only).
    reconnect_limit: Option<bool>,
    /// Seconds between a passive client's check-ins (1 to 7 days; default one day).
    check_in_s: Option<u32>,
    /// Seconds between the heartbeats of active links (5 to 300; default 30). Lower it when
    /// a proxy between clients and the box closes quiet connections sooner.
    heartbeat_s: Option<u32>,
    /// True: a representative's jump starts the session without asking the user logged in
    /// at the computer. False (the default): that user is asked first and may decline.
    unattended: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ApplianceSection {
    /// D-Bus address of the licence manager and supervisor (default: the system bus).
    dbus_address: Option<String>,
    /// Minutes without a request after which a representative without an open console
    /// gives the seat back.
    rep_seat_idle_minutes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ServerSection {
    listen: Option<String>,
    redirect_listen: Option<String>,
    data_dir: Option<PathBuf>,
    client_store: Option<PathBuf>,
    public_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SiteSection {
    host_name: Option<String>,
    company: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TlsSection {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct LimitsSection {
    key_attempts_per_minute_per_address: Option<u32>,
    key_attempts_per_minute_total: Option<u32>,
    login_attempts_per_minute_per_address: Option<u32>,
    max_connections: Option<usize>,
}

/// The relay's settings after merging file, flags and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[files]`: whether and how representatives may transfer files.
    pub files: crate::files::FilePolicy,
    /// TLS listener (443 on the box).
    pub listen: SocketAddr,
    /// Plain HTTP listener that only redirects to TLS; `None` disables it.
    pub redirect_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Folder with one sub-folder per `os-arch` holding the stock client binaries.
    pub client_store: PathBuf,
    /// Name the certificate is made for and clients are told to connect to.
    pub host_name: String,
    /// Base URL agents connect to and links point at; derived from host and port if unset.
    pub public_url: Option<String>,
    pub company: String,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub key_attempts_per_minute_per_address: u32,
    pub key_attempts_per_minute_total: u32,
    pub login_attempts_per_minute_per_address: u32,
    pub max_connections: usize,
    /// D-Bus address of the appliance's services; `None` = the system bus.
    pub dbus_address: Option<String>,
    /// A representative's seat is given back after this long without a request while no
    /// console is open.
    pub rep_seat_idle: std::time::Duration,
    /// Which session tools representatives may use (`[tools]`).
    pub tools: crate::tools::ToolPolicy,
    pub jump_reconnects: crate::jump::ReconnectLimit,
    /// `[jump] check_in_s`: seconds between a passive client's check-ins.
    pub jump_check_in_s: u32,
    /// `[jump] heartbeat_s`: seconds between the heartbeats of active links.
    pub jump_heartbeat_s: u32,
    /// How long a support button installed from a session works (`[buttons]`).
    pub button_lifetime: std::time::Duration,
    /// `[jump] unattended`: whether a jump starts without asking the logged-in user.
    pub jump_unattended: bool,
}

/// Flag overrides (from the command line).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub redirect_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub client_store: Option<PathBuf>,
    pub host_name: Option<String>,
    /// From `LIFELINE_DBUS_ADDRESS`.
    pub dbus_address: Option<String>,
}

impl Config {
    /// Loads `path` (a missing default file is allowed) and applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.message().to_string()
                    + &e.span()
                        .map(|s| format!(" (at line {})", line_of(&text, s.start)))
                        .unwrap_or_default(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                FileConfig::default()
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::merge(&path, file, overrides)
    }

    /// Parses configuration text (used by tests and `load`).
    pub fn from_toml(path: &Path, text: &str, overrides: Overrides) -> Result<Self, ConfigError> {
        let file = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        Self::merge(path, file, overrides)
    }

    fn merge(path: &Path, file: FileConfig, o: Overrides) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let listen = match (o.listen, file.server.listen) {
            (Some(a), _) => a,
            (None, Some(s)) => s.parse().map_err(|_| {
                invalid(
                    "server.listen",
                    format!("`{s}` is not an address like 0.0.0.0:443"),
                )
            })?,
            (None, None) => "0.0.0.0:443".parse().expect("literal"),
        };
        let redirect = o
            .redirect_listen
            .or(file.server.redirect_listen)
            .unwrap_or_else(|| "0.0.0.0:80".into());
        let redirect_listen = if redirect.is_empty() || redirect == "off" {
            None
        } else {
            Some(redirect.parse().map_err(|_| {
                invalid(
                    "server.redirect_listen",
                    format!("`{redirect}` is not an address like 0.0.0.0:80 (or \"off\")"),
                )
            })?)
        };
        let data_dir = o
            .data_dir
            .or(file.server.data_dir)
            .unwrap_or_else(|| PathBuf::from("/data/lifeline"));
        let client_store = o
            .client_store
            .or(file.server.client_store)
            .unwrap_or_else(|| PathBuf::from("/usr/share/lifeline/clients"));
        let host_name = o
            .host_name
            .or(file.site.host_name)
            .unwrap_or_else(|| "localhost".into());
        if host_name.is_empty()
            || host_name.len() > 253
            || !host_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(invalid(
                "site.host_name",
                format!("`{host_name}` is not a host name"),
            ));
        }
        if let Some(url) = &file.server.public_url
            && !url.starts_with("https://")
        {
            return Err(invalid(
                "server.public_url",
                "must start with https://".into(),
            ));
        }
        if file.tls.certificate.is_some() != file.tls.key.is_some() {
            return Err(invalid(
                "tls.certificate",
                "set both tls.certificate and tls.key, or neither".into(),
            ));
        }
        let l = file.limits;
        let positive = |key: &'static str, v: Option<u32>, default: u32| match v {
            Some(0) => Err(invalid(key, "must be at least 1".into())),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let jump_reconnects = match (file.jump.reconnect_limit, file.jump.reconnects_per_second) {
            (Some(false), _) => crate::jump::ReconnectLimit { per_second: None },
            (_, Some(n)) if (1..=300).contains(&n) => crate::jump::ReconnectLimit {
                per_second: Some(n),
            },
            (_, Some(_)) => {
                return Err(invalid(
                    "jump.reconnects_per_second",
                    "must be between 1 and 300".into(),
                ));
            }
            (_, None) => crate::jump::ReconnectLimit::default(),
        };
        let jump_check_in_s = match file.jump.check_in_s {
            None => crate::jump::CHECK_IN_S,
            Some(n) if (1..=7 * 24 * 3600).contains(&n) => n,
            Some(_) => {
                return Err(invalid(
                    "jump.check_in_s",
                    "must be between 1 and 604800 (a week)".into(),
                ));
            }
        };
        let jump_heartbeat_s = match file.jump.heartbeat_s {
            None => crate::jump::HEARTBEAT_S,
            Some(n) if (5..=300).contains(&n) => n,
            Some(_) => {
                return Err(invalid(
                    "jump.heartbeat_s",
                    "must be between 5 and 300 seconds".into(),
                ));
            }
        };
        let button_days = match file.buttons.session_lifetime_days {
            None => 365,
            Some(d) if (1..=1826).contains(&d) => d,
            Some(_) => {
                return Err(invalid(
                    "buttons.session_lifetime_days",
                    "must be between 1 and 1826 (five years)".into(),
                ));
            }
        };
        Ok(Config {
            button_lifetime: std::time::Duration::from_secs(u64::from(button_days) * 86_400),
            jump_reconnects,
            jump_check_in_s,
            jump_heartbeat_s,
            jump_unattended: file.jump.unattended.unwrap_or(false),
            files: file.files,
            tools: file.tools,
            listen,
            redirect_listen,
            data_dir,
            client_store,
            host_name,
            public_url: file.server.public_url,
            company: file.site.company.unwrap_or_else(|| "Lifeline".into()),
            tls_certificate: file.tls.certificate,
            tls_key: file.tls.key,
            key_attempts_per_minute_per_address: positive(
                "limits.key_attempts_per_minute_per_address",
                l.key_attempts_per_minute_per_address,
                10,
            )?,
            key_attempts_per_minute_total: positive(
                "limits.key_attempts_per_minute_total",
                l.key_attempts_per_minute_total,
                600,
            )?,
            login_attempts_per_minute_per_address: positive(
                "limits.login_attempts_per_minute_per_address",
                l.login_attempts_per_minute_per_address,
                10,
            )?,
            max_connections: l.max_connections.unwrap_or(200_000),
            dbus_address: o
                .dbus_address
                .or(file.appliance.dbus_address)
                .filter(|a| !a.is_empty()),
            rep_seat_idle: match file.appliance.rep_seat_idle_minutes {
                Some(0) => {
                    return Err(invalid(
                        "appliance.rep_seat_idle_minutes",
                        "must be at least 1".into(),
                    ));
                }
                Some(m) => std::time::Duration::from_secs(m.saturating_mul(60)),
                None => std::time::Duration::from_secs(600),
            },
        })
    }

    /// The URL clients are told to connect to.
    pub fn public_url(&self, bound_port: u16) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if bound_port == 443 => format!("https://{}", self.host_name),
            None => format!("https://{}:{}", self.host_name, bound_port),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml(
            Path::new("relay.toml"),
            "[site]\nhost_name = \"support.example.org\"\n",
            Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.public_url(443), "https://support.example.org");
        assert_eq!(c.public_url(8443), "https://support.example.org:8443");
        assert_eq!(c.key_attempts_per_minute_per_address, 10);
    }

    #[test]
    fn jump_heartbeat_has_a_default_and_a_range() {
        let load =
            |text: &str| Config::from_toml(Path::new("relay.toml"), text, Overrides::default());
        assert_eq!(load("").unwrap().jump_heartbeat_s, crate::jump::HEARTBEAT_S);
        assert_eq!(
            load("[jump]\nheartbeat_s = 10\n").unwrap().jump_heartbeat_s,
            10
        );
        for bad in ["4", "301"] {
            let e = load(&format!("[jump]\nheartbeat_s = {bad}\n")).unwrap_err();
            assert!(
                e.to_string().contains("`jump.heartbeat_s`")
                    && e.to_string().contains("between 5 and 300"),
                "{e}"
            );
        }
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = Config::from_toml(
            Path::new("/etc/lifeline/relay.toml"),
            "[server]\nlisten = \"nowhere\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/lifeline/relay.toml: key `server.listen`: `nowhere` is not an address like 0.0.0.0:443"
        );
        let e = Config::from_toml(
            Path::new("r.toml"),
            "[server]\nlisen = 1\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("r.toml: unknown field `lisen`"),
            "{e}"
        );
        let e = Config::from_toml(
            Path::new("r.toml"),
            "[limits]\nkey_attempts_per_minute_total = 0\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("limits.key_attempts_per_minute_total")
        );
    }
}
