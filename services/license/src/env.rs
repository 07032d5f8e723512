//! The one place the licence manager reads its surroundings: environment variables, and the
//! appliance's identity (serial number and model) from the factory data file or DMI.
//! Tests replace both with [`MapStrings`] and temp files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lifeline_license_api::Model;
use serde::Deserialize;

/// Default location of the factory data file written at provisioning.
pub const DEFAULT_FACTORY_FILE: &str = "/etc/lifeline/factory.toml";
/// Where the kernel exposes the board's serial number.
pub const DEFAULT_DMI_SERIAL: &str = "/sys/class/dmi/id/product_serial";

/// Environment variables, as a replaceable source.
pub trait Strings {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Strings for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// A fixed set of variables, for tests.
#[derive(Debug, Default, Clone)]
pub struct MapStrings(pub HashMap<String, String>);

impl Strings for MapStrings {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// Where the appliance's identity is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySources {
    pub factory_file: PathBuf,
    pub dmi_serial: PathBuf,
}

impl Default for IdentitySources {
    fn default() -> Self {
        IdentitySources {
            factory_file: PathBuf::from(DEFAULT_FACTORY_FILE),
            dmi_serial: PathBuf::from(DEFAULT_DMI_SERIAL),
        }
    }
}

/// Who this box is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The serial number, or why it could not be read.
    pub serial: Result<String, String>,
    /// The model from the factory data, if it names one.
    pub model: Option<Model>,
}

#[derive(Deserialize)]
struct FactoryData {
    serial: Option<String>,
    model: Option<String>,
}

impl IdentitySources {
    /// Read the serial from the factory file (key `serial`), failing that from DMI; and the
    /// model from the factory file (key `model`). Never fails: what could not be read is
    /// reported in [`Identity::serial`] as a sentence.
    pub fn read(&self) -> Identity {
        let mut problems = Vec::new();
        let mut model = None;
        let mut serial = None;
        match std::fs::read_to_string(&self.factory_file) {
            Ok(text) => match toml::from_str::<FactoryData>(&text) {
                Ok(data) => {
                    serial = data
                        .serial
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty());
                    if serial.is_none() {
                        problems.push(format!("{} has no `serial`", self.factory_file.display()));
                    }
                    match data.model.as_deref().map(str::parse::<Model>) {
                        Some(Ok(m)) => model = Some(m),
                        Some(Err(e)) => tracing::warn!(
                            file = %self.factory_file.display(),
                            "factory data: {e}; using the default model"
                        ),
                        None => {}
                    }
                }
                Err(e) => problems.push(format!(
                    "{} is not valid TOML ({})",
                    self.factory_file.display(),
                    e.message()
                )),
            },
            Err(e) => problems.push(format!("{}: {e}", self.factory_file.display())),
        }
        if serial.is_none() {
            match read_dmi(&self.dmi_serial) {
                Ok(s) => serial = Some(s),
                Err(e) => problems.push(e),
            }
        }
        Identity {
            serial: serial.ok_or_else(|| problems.join("; ")),
            model,
        }
    }
}

fn read_dmi(path: &Path) -> Result<String, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let s = s.trim();
    // Boards without a programmed serial report placeholders.
    let placeholder = ["", "0", "To Be Filled By O.E.M.", "Default string", "None"];
    if placeholder.iter().any(|p| p.eq_ignore_ascii_case(s)) {
        return Err(format!("{} holds no serial (\"{s}\")", path.display()));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> IdentitySources {
        IdentitySources {
            factory_file: dir.join("factory.toml"),
            dmi_serial: dir.join("product_serial"),
        }
    }

    #[test]
    fn factory_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        std::fs::write(&s.factory_file, "serial = \"LL-1\"\nmodel = \"b300\"\n").unwrap();
        std::fs::write(&s.dmi_serial, "DMI-9\n").unwrap();
        let id = s.read();
        assert_eq!(id.serial, Ok("LL-1".to_owned()));
        assert_eq!(id.model, Some(Model::B300));
    }

    #[test]
    fn falls_back_to_dmi() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        std::fs::write(&s.dmi_serial, "DMI-9\n").unwrap();
        let id = s.read();
        assert_eq!(id.serial, Ok("DMI-9".to_owned()));
        assert_eq!(id.model, None);
    }

    #[test]
    fn nothing_readable_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        std::fs::write(&s.dmi_serial, "To Be Filled By O.E.M.\n").unwrap();
        let err = s.read().serial.unwrap_err();
        assert!(err.contains("factory.toml"), "{err}");
        assert!(err.contains("holds no serial"), "{err}");
    }

    #[test]
    fn map_strings() {
        let mut m = MapStrings::default();
        m.0.insert("A".into(), "b".into());
        assert_eq!(m.get("A").as_deref(), Some("b"));
        assert_eq!(m.get("B"), None);
    }
}
