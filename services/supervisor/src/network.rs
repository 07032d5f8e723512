//! The box's network settings: the files `SetNetwork` writes for systemd-networkd, and how
//! networkd configures each interface now.
//!
//! # Design
//!
//! The admin's choice for an interface is one networkd file, `10-lifeline-IFACE.network`,
//! in `network_dir`. On the box that folder is `/var/lib/lifeline/network` (on the data
//! partition, so it survives reboots and updates) and the image makes
//! `/etc/systemd/network` a symbolic link to it; the image's default (DHCP on wired ports)
//! is `/usr/lib/systemd/network/90-lifeline-dhcp.network`, which sorts after every admin
//! file, so the admin's file wins for its interface. A file is written to a temporary name
//! and renamed over the old one (readable by networkd, which runs as its own user), then
//! networkd is told to reload; see [`crate::systemd::Systemd::apply_network`].
//!
//! What networkd does with each interface is read back from it ([`parse_describe`] on
//! networkd's `Describe()` JSON): an interface networkd does not manage has no mode
//! (`dhcp: None`); one with a DHCPv4 or DHCPv6 client is DHCP; any other managed interface
//! is static.
//!
//! # Limits
//!
//! - Static addresses are IPv4 with a prefix length only: no gateway or DNS servers (the
//!   panel's keypad cannot enter them; an admin web page will).
//! - One file per interface; the file names are the interface names, so a renamed
//!   interface (another slot, another driver) loses its setting.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lifeline_supervisor_api::NetworkMode;

/// The file name of the admin's setting for `iface`.
pub fn file_name(iface: &str) -> String {
    format!("10-lifeline-{iface}.network")
}

/// The networkd file for a choice. `by` and `at` go into its heading comment.
pub fn network_file(
    iface: &str,
    mode: NetworkMode,
    address: &str,
    prefix: u8,
    by: &str,
    at: &str,
) -> String {
    let head = format!(
        "# Written by the Lifeline supervisor for {by} at {at}.\n\
         # The appliance's network setting for {iface}; change it from the front panel or the\n\
         # appliance administration page.\n"
    );
    match mode {
        NetworkMode::Dhcp => format!(
            "{head}[Match]\nName={iface}\n\n[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\n\
             IPv6AcceptRA=yes\n\n[DHCPv4]\nUseHostname=no\n"
        ),
        NetworkMode::Static => format!(
            "{head}[Match]\nName={iface}\n\n[Network]\nAddress={address}/{prefix}\n\
             LinkLocalAddressing=ipv6\nIPv6AcceptRA=no\n"
        ),
    }
}

/// Why a setting could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the network setting {path}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Write `text` as `dir/name`, world-readable (networkd reads it as its own user), replacing
/// the old file in one step.
pub fn write_setting(dir: &Path, name: &str, text: &str) -> Result<PathBuf, WriteError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |source| WriteError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    // The service's umask (0077) narrowed the mode given to open().
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// How networkd configures each interface, by name, from its `Describe()` JSON: `Some(true)`
/// DHCP, `Some(false)` static, absent when networkd does not manage it.
pub fn parse_describe(json: &str) -> HashMap<String, bool> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return HashMap::new();
    };
    let Some(ifaces) = v.get("Interfaces").and_then(|i| i.as_array()) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for i in ifaces {
        let Some(name) = i.get("Name").and_then(|n| n.as_str()) else {
            continue;
        };
        let state = i
            .get("AdministrativeState")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        if matches!(state, "unmanaged" | "pending" | "linger" | "")
            || i.get("NetworkFile").is_none()
        {
            continue;
        }
        let dhcp_client = i.get("DHCPv4Client").is_some() || i.get("DHCPv6Client").is_some();
        let dhcp_address = i
            .get("Addresses")
            .and_then(|a| a.as_array())
            .is_some_and(|a| {
                a.iter().any(|addr| {
                    addr.get("ConfigSource")
                        .and_then(|s| s.as_str())
                        .is_some_and(|s| s.starts_with("DHCP"))
                })
            });
        out.insert(name.to_string(), dhcp_client || dhcp_address);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_for_each_mode() {
        let d = network_file(
            "eth0",
            NetworkMode::Dhcp,
            "",
            0,
            "panel",
            "2026-01-01T00:00:00Z",
        );
        assert!(
            d.contains("[Match]\nName=eth0\n") && d.contains("DHCP=yes"),
            "{d}"
        );
        assert!(d.starts_with("# Written by the Lifeline supervisor for panel at 2026"));
        let s = network_file(
            "enp0s2",
            NetworkMode::Static,
            "192.0.2.5",
            24,
            "web:ada",
            "now",
        );
        assert!(
            s.contains("Address=192.0.2.5/24") && !s.contains("DHCP="),
            "{s}"
        );
        assert_eq!(file_name("enp0s2"), "10-lifeline-enp0s2.network");
    }

    #[test]
    fn settings_are_written_readable_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("network");
        let p = write_setting(&net, "10-lifeline-eth0.network", "one\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        write_setting(&net, "10-lifeline-eth0.network", "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_dir(&net).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn describe_gives_each_interfaces_mode() {
        let json = r#"{"Interfaces":[
            {"Index":1,"Name":"lo","AdministrativeState":"unmanaged"},
            {"Index":2,"Name":"enp0s1","AdministrativeState":"configured",
             "NetworkFile":"/usr/lib/systemd/network/90-lifeline-dhcp.network",
             "Addresses":[{"Family":2,"Address":[10,0,2,15],"PrefixLength":24,"ConfigSource":"DHCPv4"}],
             "DHCPv4Client":{"Lease":{}}},
            {"Index":3,"Name":"enp0s2","AdministrativeState":"configured",
             "NetworkFile":"/etc/systemd/network/10-lifeline-enp0s2.network",
             "Addresses":[{"Family":2,"Address":[10,0,3,20],"PrefixLength":24,"ConfigSource":"static"}]},
            {"Index":4,"Name":"enp0s3","AdministrativeState":"configuring",
             "NetworkFile":"/usr/lib/systemd/network/90-lifeline-dhcp.network",
             "DHCPv4Client":{}}
        ]}"#;
        let m = parse_describe(json);
        assert_eq!(m.get("enp0s1"), Some(&true));
        assert_eq!(m.get("enp0s2"), Some(&false));
        assert_eq!(
            m.get("enp0s3"),
            Some(&true),
            "DHCP still waiting for a lease"
        );
        assert_eq!(m.get("lo"), None);
        assert!(parse_describe("not json").is_empty());
        assert!(parse_describe("{\"Interfaces\":7}").is_empty());
    }
}
