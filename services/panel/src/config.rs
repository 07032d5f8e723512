//! The panel's configuration file, `/etc/lifeline/panel.toml`.
//!
//! # Design
//!
//! A typed struct read with serde; unknown keys are refused, missing keys take defaults. A
//! parse error names the file and the key (path inside the TOML document) and says what was
//! wrong. Command-line flags override the file ([`Overrides`]). When the default file does not
//! exist, the defaults are used; a file named explicitly must exist.
//!
//! ```toml
//! device = "/dev/ttyACM0"      # serial device of the panel
//! baud = 115200
//! model = "graphic-244x68"     # char-20x4 | graphic-128x64 | graphic-244x68
//! idle_dim_seconds = 60        # 0 = never dim
//! ```
//!
//! # Limits
//!
//! - No reload on change: restart the service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::driver::Model;

/// Where the service looks by default.
pub const DEFAULT_PATH: &str = "/etc/lifeline/panel.toml";

/// Configuration errors.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the panel configuration {path}")]
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
        key: &'static str,
        message: String,
    },
}

/// The panel configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Serial device of the panel.
    pub device: PathBuf,
    /// Line speed.
    pub baud: u32,
    /// Panel model.
    pub model: Model,
    /// Seconds without a key press before the backlight dims; 0 = never.
    pub idle_dim_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: PathBuf::from("/dev/ttyACM0"),
            baud: 115_200,
            model: Model::Graphic244x68,
            idle_dim_seconds: 60,
        }
    }
}

/// Values given on the command line; each set one replaces the file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub device: Option<PathBuf>,
    pub baud: Option<u32>,
    pub model: Option<Model>,
    pub idle_dim_seconds: Option<u64>,
}

impl Config {
    /// Parse TOML text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                path: path.to_owned(),
                key: if key == "." { "(document)".into() } else { key },
                message: e.into_inner().message().to_string(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Read a file. With `required == false` a missing file gives the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Apply command-line overrides.
    pub fn with(mut self, o: &Overrides) -> Config {
        if let Some(d) = &o.device {
            self.device = d.clone();
        }
        if let Some(b) = o.baud {
            self.baud = b;
        }
        if let Some(m) = o.model {
            self.model = m;
        }
        if let Some(s) = o.idle_dim_seconds {
            self.idle_dim_seconds = s;
        }
        self
    }

    /// Idle time before dimming (zero: never dim).
    pub fn idle_dim(&self) -> Duration {
        Duration::from_secs(self.idle_dim_seconds)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if self.baud == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "baud",
                message: "must be a line speed such as 115200".into(),
            });
        }
        if self.device.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "device",
                message: "must name the panel's serial device, e.g. /dev/ttyACM0".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let c = Config::parse(
            "device = \"/dev/ttyUSB1\"\nbaud = 19200\nmodel = \"char-20x4\"\nidle_dim_seconds = 5\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.device, PathBuf::from("/dev/ttyUSB1"));
        assert_eq!(c.baud, 19200);
        assert_eq!(c.model, Model::Char20x4);
        assert_eq!(c.idle_dim(), Duration::from_secs(5));
    }

    #[test]
    fn defaults_and_missing_file() {
        assert_eq!(
            Config::parse("", Path::new("p")).unwrap(),
            Config::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert_eq!(Config::load(&missing, false).unwrap(), Config::default());
        assert!(matches!(
            Config::load(&missing, true),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn errors_name_file_and_key() {
        let e =
            Config::parse("model = \"lcd\"\n", Path::new("/etc/lifeline/panel.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/lifeline/panel.toml: key `model`"),
            "{msg}"
        );
        assert!(msg.contains("graphic-128x64"), "{msg}");
        let e = Config::parse("baud = \"fast\"\n", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("key `baud`"), "{e}");
        let e = Config::parse("colour = 1\n", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Config::parse("baud = 0\n", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("key `baud`"), "{e}");
    }

    #[test]
    fn flags_override() {
        let c = Config::default().with(&Overrides {
            model: Some(Model::Graphic128x64),
            baud: Some(9600),
            ..Overrides::default()
        });
        assert_eq!(c.model, Model::Graphic128x64);
        assert_eq!(c.baud, 9600);
        assert_eq!(c.device, Config::default().device);
    }
}
