//! Host health: uptime, load, memory, data disk, temperatures, links, time zone.
//!
//! Everything is read from the kernel's files (`/proc`, `/sys`) under a root that tests can
//! replace ([`HostPaths`]), plus `statvfs` and `getifaddrs`. Every reader tolerates a missing
//! or odd file: a value that cannot be read is left out, never a failure of the whole status.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use lifeline_supervisor_api::{Disk, Interface, Memory, Temperature};

/// Where the host's files are (the real root, or a test folder).
#[derive(Clone, Debug)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            etc: PathBuf::from("/etc"),
        }
    }
}

/// What the host reports at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Host {
    pub hostname: String,
    pub uptime_seconds: u64,
    pub load: [f64; 3],
    pub memory: Memory,
    pub disk: Option<Disk>,
    pub temperatures: Vec<Temperature>,
    pub interfaces: Vec<Interface>,
    pub timezone: String,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

pub fn parse_meminfo(text: &str) -> Memory {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(1024)
    };
    Memory {
        total_bytes: kib("MemTotal:"),
        available_bytes: kib("MemAvailable:"),
    }
}

/// The time zone name: `/etc/timezone`, else the target of `/etc/localtime`, else `UTC`.
pub fn timezone(etc: &Path) -> String {
    if let Some(tz) = read(&etc.join("timezone")) {
        let tz = tz.trim();
        if !tz.is_empty() {
            return tz.to_string();
        }
    }
    if let Ok(target) = std::fs::read_link(etc.join("localtime")) {
        let s = target.to_string_lossy();
        if let Some((_, name)) = s.split_once("zoneinfo/") {
            return name.to_string();
        }
    }
    "UTC".to_string()
}

/// hwmon temperatures: `hwmonN/name` + `tempM_input` (millidegrees).
pub fn temperatures(sys: &Path) -> Vec<Temperature> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(sys.join("class/hwmon")) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = dirs.filter_map(|d| d.ok().map(|d| d.path())).collect();
    dirs.sort();
    for dir in dirs {
        let chip = read(&dir.join("name"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "sensor".into());
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut inputs: Vec<String> = files
            .filter_map(|f| f.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("temp") && n.ends_with("_input"))
            .collect();
        inputs.sort();
        for input in inputs {
            let Some(milli) = read(&dir.join(&input)).and_then(|v| v.trim().parse::<i64>().ok())
            else {
                continue;
            };
            let base = input.trim_end_matches("_input");
            let label = read(&dir.join(format!("{base}_label")))
                .map(|s| format!("{chip} {}", s.trim()))
                .unwrap_or_else(|| format!("{chip} {base}"));
            out.push(Temperature {
                name: label,
                celsius: milli as f64 / 1000.0,
            });
        }
    }
    out
}

/// Usage of the file system holding `path`.
pub fn disk(path: &Path) -> Option<Disk> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size();
    Some(Disk {
        path: path.display().to_string(),
        total_bytes: st.blocks().saturating_mul(frag),
        available_bytes: st.blocks_available().saturating_mul(frag),
    })
}

fn prefix_of(mask: Option<IpAddr>) -> u8 {
    match mask {
        Some(IpAddr::V4(m)) => u32::from(m).count_ones() as u8,
        Some(IpAddr::V6(m)) => u128::from(m).count_ones() as u8,
        None => 0,
    }
}

/// Interfaces other than loopback, with link state from `/sys/class/net/*/operstate` and
/// addresses from `getifaddrs`.
pub fn interfaces(sys: &Path) -> Vec<Interface> {
    let mut names: Vec<String> = std::fs::read_dir(sys.join("class/net"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out: Vec<Interface> = names
        .into_iter()
        .map(|name| {
            let oper = read(&sys.join(format!("class/net/{name}/operstate"))).unwrap_or_default();
            Interface {
                up: matches!(oper.trim(), "up" | "unknown"),
                name,
                addresses: Vec::new(),
                dhcp: None,
            }
        })
        .collect();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(iface) = out.iter_mut().find(|i| i.name == a.interface_name) else {
                continue;
            };
            let ip = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v| IpAddr::V4(v.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
            });
            let mask = a.netmask.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v| IpAddr::V4(v.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
            });
            if let Some(ip) = ip {
                iface.addresses.push(format!("{ip}/{}", prefix_of(mask)));
            }
        }
    }
    out
}

/// Read everything once.
pub fn sample(paths: &HostPaths, data_path: &Path) -> Host {
    Host {
        hostname: read(&paths.proc.join("sys/kernel/hostname"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "lifeline".into()),
        uptime_seconds: read(&paths.proc.join("uptime"))
            .as_deref()
            .and_then(parse_uptime)
            .unwrap_or(0),
        load: read(&paths.proc.join("loadavg"))
            .as_deref()
            .and_then(parse_loadavg)
            .unwrap_or([0.0; 3]),
        memory: read(&paths.proc.join("meminfo"))
            .as_deref()
            .map(parse_meminfo)
            .unwrap_or_default(),
        disk: disk(data_path),
        temperatures: temperatures(&paths.sys),
        interfaces: interfaces(&paths.sys),
        timezone: timezone(&paths.etc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_uptime("1234.56 999.0\n"), Some(1234));
        assert_eq!(parse_uptime("x"), None);
        assert_eq!(
            parse_loadavg("0.50 0.25 0.10 1/100 42\n"),
            Some([0.5, 0.25, 0.1])
        );
        assert_eq!(parse_loadavg("0.5"), None);
        let m = parse_meminfo("MemTotal:       2048 kB\nMemFree: 1 kB\nMemAvailable:   1024 kB\n");
        assert_eq!(m.total_bytes, 2048 * 1024);
        assert_eq!(m.available_bytes, 1024 * 1024);
        assert_eq!(parse_meminfo("garbage").total_bytes, 0);
    }

    #[test]
    fn hwmon_and_timezone_from_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let hw = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&hw).unwrap();
        std::fs::write(hw.join("name"), "coretemp\n").unwrap();
        std::fs::write(hw.join("temp1_input"), "41500\n").unwrap();
        std::fs::write(hw.join("temp1_label"), "Package id 0\n").unwrap();
        std::fs::write(hw.join("temp2_input"), "garbage\n").unwrap();
        let t = temperatures(dir.path());
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "coretemp Package id 0");
        assert!((t[0].celsius - 41.5).abs() < 1e-9);
        assert_eq!(timezone(dir.path()), "UTC");
        std::fs::write(dir.path().join("timezone"), "Europe/Paris\n").unwrap();
        assert_eq!(timezone(dir.path()), "Europe/Paris");
    }

    #[test]
    fn real_host_sample_does_not_fail() {
        let h = sample(&HostPaths::default(), Path::new("/"));
        assert!(!h.hostname.is_empty());
        assert!(h.memory.total_bytes > 0);
        assert!(h.disk.is_some());
    }
}
