//! Linux sources of the system-information report: `/proc` and `/sys` for the system,
//! memory and processes, `/proc/self/mounts` with `statvfs` for the disks, `getifaddrs`
//! for the network, `/run/utmp` for logged-in users, `systemctl` for services and
//! `dpkg-query` (or `rpm`) for packages.
//!
//! Every source is a plain function that may block (a hung network mount, a slow package
//! database): [`crate::tools::sysinfo`] runs each on a thread of its own under a time limit.
//! External programs run with their output bounded ([`MAX_COMMAND_OUTPUT`]) and are killed
//! when their time is up. Every list is cut to its limit from [`lifeline_proto::tools`].
//!
//! Limits: `utmp` is read in the glibc layout of 64-bit Linux (384-byte records); user
//! names of processes come from `/etc/passwd` only (not LDAP).

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeline_proto::tools::{
    CpuInfo, Disk, Interface, LoggedInUser, MAX_ADDRESSES, MAX_DISKS, MAX_FIELD_CHARS,
    MAX_INTERFACES, MAX_PACKAGES, MAX_PROCESSES, MAX_SERVICES, MAX_USERS, MemoryInfo, OsInfo,
    PackageInfo, ProcessInfo, ServiceInfo,
};

/// Most bytes read from an external program's output.
pub const MAX_COMMAND_OUTPUT: usize = 16 * 1024 * 1024;

/// A list, and whether it was cut to its limit.
pub type Listed<T> = (Vec<T>, bool);

/// Cuts a text to the report's field limit, without control characters.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_FIELD_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Seconds since boot, from `/proc/uptime`.
fn uptime_s() -> Result<f64, String> {
    read("/proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| "cannot parse /proc/uptime".to_string())
}

pub fn os() -> Result<OsInfo, String> {
    let release = |k: &str| read(&format!("/proc/sys/kernel/{k}")).unwrap_or_default();
    let uptime = uptime_s().unwrap_or(0.0);
    Ok(OsInfo {
        name: clean(&super::os_description().unwrap_or_else(|| "Linux".into())),
        kernel: clean(&format!(
            "{} {}",
            release("ostype").trim(),
            release("osrelease").trim()
        )),
        arch: std::env::consts::ARCH.to_string(),
        host_name: clean(&super::computer_name().unwrap_or_default()),
        uptime_s: uptime as u64,
        boot_time: now_ms() - (uptime * 1000.0) as i64,
    })
}

pub fn cpu() -> Result<CpuInfo, String> {
    let info = read("/proc/cpuinfo")?;
    let model = info
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "Hardware" | "cpu model").then(|| clean(v))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(0)
        .max(info.lines().filter(|l| l.starts_with("processor")).count() as u32);
    let mut load = [0.0f64; 3];
    let text = read("/proc/loadavg")?;
    for (slot, v) in load.iter_mut().zip(text.split_whitespace()) {
        *slot = v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .unwrap_or(0.0);
    }
    Ok(CpuInfo { model, cores, load })
}

/// `key: value kB` lines of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> MemoryInfo {
    let mut kb: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':')
            && let Some(n) = v.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            kb.insert(k.trim(), n);
        }
    }
    let b = |k: &str| kb.get(k).copied().unwrap_or(0).saturating_mul(1024);
    MemoryInfo {
        total_bytes: b("MemTotal"),
        available_bytes: b("MemAvailable"),
        swap_total_bytes: b("SwapTotal"),
        swap_free_bytes: b("SwapFree"),
    }
}

pub fn memory() -> Result<MemoryInfo, String> {
    Ok(parse_meminfo(&read("/proc/meminfo")?))
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mounts`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v.min(255) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// File systems that hold no files of the customer's (kernel views, cgroups).
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "selinuxfs",
    "rpc_pipefs",
    "nsfs",
];

pub fn disks() -> Result<Listed<Disk>, String> {
    let text = read("/proc/self/mounts")?;
    let mut out = Vec::new();
    let mut cut = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(mnt), Some(fs), Some(opts)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if PSEUDO_FS.contains(&fs) {
            continue;
        }
        if out.len() == MAX_DISKS {
            cut = true;
            break;
        }
        let mount_point = unescape_mount(mnt);
        // The block counts are 32 bits wide on some 32-bit systems.
        #[allow(clippy::unnecessary_cast)]
        let (total, avail) = match nix::sys::statvfs::statvfs(mount_point.as_str()) {
            Ok(s) => {
                let frag = s.fragment_size() as u64;
                (
                    (s.blocks() as u64).saturating_mul(frag),
                    (s.blocks_available() as u64).saturating_mul(frag),
                )
            }
            Err(_) => (0, 0),
        };
        out.push(Disk {
            device: clean(&unescape_mount(dev)),
            mount_point: clean(&mount_point),
            fs_type: clean(fs),
            total_bytes: total,
            available_bytes: avail,
            read_only: opts.split(',').any(|o| o == "ro"),
        });
    }
    Ok((out, cut))
}

pub fn interfaces() -> Result<Listed<Interface>, String> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
    let mut by_name: Vec<Interface> = Vec::new();
    let mut cut = false;
    for a in addrs {
        let name = clean(&a.interface_name);
        let idx = match by_name.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                if by_name.len() == MAX_INTERFACES {
                    cut = true;
                    continue;
                }
                by_name.push(Interface {
                    name,
                    mac: None,
                    up: a.flags.contains(InterfaceFlags::IFF_UP),
                    addresses: Vec::new(),
                });
                by_name.len() - 1
            }
        };
        let iface = &mut by_name[idx];
        let Some(addr) = a.address else { continue };
        let prefix = |m: Option<&nix::sys::socket::SockaddrStorage>| -> u32 {
            if let Some(v4) = m.and_then(|m| m.as_sockaddr_in()) {
                u32::from(v4.ip()).count_ones()
            } else if let Some(v6) = m.and_then(|m| m.as_sockaddr_in6()) {
                u128::from(v6.ip()).count_ones()
            } else {
                0
            }
        };
        let text = if let Some(v4) = addr.as_sockaddr_in() {
            Some(format!("{}/{}", v4.ip(), prefix(a.netmask.as_ref())))
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            Some(format!("{}/{}", v6.ip(), prefix(a.netmask.as_ref())))
        } else if let Some(link) = addr.as_link_addr() {
            if let Some(mac) = link.addr()
                && mac != [0; 6]
            {
                iface.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            None
        } else {
            None
        };
        if let Some(t) = text
            && iface.addresses.len() < MAX_ADDRESSES
        {
            iface.addresses.push(t);
        }
    }
    Ok((by_name, cut))
}

/// Size of one `utmp` record (glibc, 64-bit Linux).
pub const UTMP_RECORD: usize = 384;
const USER_PROCESS: i16 = 7;

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    clean(&String::from_utf8_lossy(&b[..end]))
}

/// Logged-in users from the bytes of a `utmp` file; never panics.
pub fn parse_utmp(bytes: &[u8]) -> Listed<LoggedInUser> {
    let mut out = Vec::new();
    for rec in bytes.chunks_exact(UTMP_RECORD) {
        let kind = i16::from_ne_bytes([rec[0], rec[1]]);
        if kind != USER_PROCESS {
            continue;
        }
        if out.len() == MAX_USERS {
            return (out, true);
        }
        let secs = i32::from_ne_bytes([rec[340], rec[341], rec[342], rec[343]]);
        out.push(LoggedInUser {
            terminal: c_string(&rec[8..40]),
            name: c_string(&rec[44..76]),
            host: c_string(&rec[76..332]),
            since: i64::from(secs) * 1000,
        });
    }
    (out, false)
}

pub fn users() -> Result<Listed<LoggedInUser>, String> {
    for path in ["/run/utmp", "/var/run/utmp"] {
        match std::fs::File::open(path) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take((MAX_USERS * 8 * UTMP_RECORD) as u64)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("cannot read {path}: {e}"))?;
                return Ok(parse_utmp(&bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        }
    }
    // No login records on this system (a container, say): nobody is logged in on a terminal.
    Ok((Vec::new(), false))
}

/// Fields of `/proc/<pid>/stat`: (name, state, ppid, user+system time and start time in
/// clock ticks); `None` when the line is not one.
pub fn parse_stat(text: &str) -> Option<(String, String, u32, u64, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.to_string();
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start: u64 = rest.get(19)?.parse().ok()?;
    Some((
        name.to_string(),
        state,
        ppid,
        utime.saturating_add(stime),
        start,
    ))
}

/// User names by id, from `/etc/passwd`.
fn user_names() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, clean(name)))
        })
        .collect()
}

pub fn processes() -> Result<Listed<ProcessInfo>, String> {
    // The kernel's clock tick is 100 Hz on every Linux architecture the client runs on.
    const TICKS: u64 = 100;
    let page = 4096u64;
    let boot = now_ms() - (uptime_s().unwrap_or(0.0) * 1000.0) as i64;
    let names = user_names();
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    let mut out = Vec::new();
    let mut cut = false;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if out.len() == MAX_PROCESSES {
            cut = true;
            break;
        }
        let base = format!("/proc/{pid}");
        // A process may end while it is read: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else {
            continue;
        };
        let Some((name, state, ppid, ticks, start)) = parse_stat(&stat) else {
            continue;
        };
        let mut cmd = Vec::new();
        if let Ok(f) = std::fs::File::open(format!("{base}/cmdline")) {
            let _ = f.take(MAX_FIELD_CHARS as u64 * 4).read_to_end(&mut cmd);
        }
        let command = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let rss_pages: u64 = std::fs::read_to_string(format!("{base}/statm"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let uid = std::fs::read_to_string(format!("{base}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
            });
        out.push(ProcessInfo {
            pid,
            ppid,
            user: uid
                .map(|u| names.get(&u).cloned().unwrap_or_else(|| u.to_string()))
                .unwrap_or_default(),
            name: clean(&name),
            command: clean(&command),
            state: clean(&state),
            cpu_ms: ticks.saturating_mul(1000 / TICKS),
            memory_bytes: rss_pages.saturating_mul(page),
            started_at: boot + (start.saturating_mul(1000 / TICKS)) as i64,
        });
    }
    Ok((out, cut))
}

/// Runs a program with a time limit; its standard output (at most
/// [`MAX_COMMAND_OUTPUT`] bytes) when it succeeds.
pub fn run_bounded(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("no output from {program}"));
    };
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.take(MAX_COMMAND_OUTPUT as u64).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    };
    let out = reader
        .join()
        .map_err(|_| format!("cannot read the output of {program}"))?;
    if !status.success() {
        return Err(format!("{program} failed: {status}"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `systemctl list-units --plain --no-legend` lines: unit, load, active, sub, description.
pub fn parse_units(text: &str) -> Listed<ServiceInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['●', '*', ' ']);
        let mut f = line.split_whitespace();
        let (Some(name), Some(_load), Some(active), Some(sub)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if out.len() == MAX_SERVICES {
            return (out, true);
        }
        out.push(ServiceInfo {
            name: clean(name),
            active: clean(active),
            sub: clean(sub),
            description: clean(&f.collect::<Vec<_>>().join(" ")),
        });
    }
    (out, false)
}

pub fn services(limit: Duration) -> Result<Listed<ServiceInfo>, String> {
    let text = run_bounded(
        "systemctl",
        &[
            "list-units",
            "--type=service",
            "--all",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
        limit,
    )?;
    Ok(parse_units(&text))
}

/// `name<TAB>version` lines.
pub fn parse_packages(text: &str) -> Listed<PackageInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, version)) = line.split_once('\t') else {
            continue;
        };
        if name.trim().is_empty() {
            continue;
        }
        if out.len() == MAX_PACKAGES {
            return (out, true);
        }
        out.push(PackageInfo {
            name: clean(name),
            version: clean(version),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, false)
}

pub fn packages(limit: Duration) -> Result<Listed<PackageInfo>, String> {
    let dpkg = run_bounded(
        "dpkg-query",
        &[
            "-W",
            "-f=${db:Status-Abbrev}\t${Package}:${Architecture}\t${Version}\n",
        ],
        limit,
    );
    match dpkg {
        Ok(text) => {
            // Only installed packages ("ii ").
            let lines: String = text
                .lines()
                .filter_map(|l| {
                    let (status, rest) = l.split_once('\t')?;
                    status.starts_with("ii").then(|| format!("{rest}\n"))
                })
                .collect();
            Ok(parse_packages(&lines))
        }
        Err(dpkg_err) => {
            match run_bounded(
                "rpm",
                &["-qa", "--qf", "%{NAME}.%{ARCH}\t%{VERSION}-%{RELEASE}\n"],
                limit,
            ) {
                Ok(text) => Ok(parse_packages(&text)),
                Err(rpm_err) => Err(format!("{dpkg_err}; {rpm_err}")),
            }
        }
    }
}

/// Asks process `pid` to end (`SIGTERM`) if it still runs the program `name`.
pub fn end_process(pid: u32, name: &str) -> (lifeline_proto::tools::EndOutcome, String) {
    use lifeline_proto::tools::EndOutcome;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return (EndOutcome::NotFound, format!("there is no process {pid}"));
    };
    if raw <= 1 {
        return (EndOutcome::Failed, format!("process {pid} cannot be ended"));
    }
    if pid == std::process::id() {
        return (
            EndOutcome::Failed,
            "this is the support program itself: end the session instead".into(),
        );
    }
    let Some((running, ..)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| parse_stat(&t))
    else {
        return (
            EndOutcome::NotFound,
            format!("process {pid} is no longer running"),
        );
    };
    if clean(&running) != name {
        return (
            EndOutcome::NotFound,
            format!(
                "process {pid} now runs another program ({})",
                clean(&running)
            ),
        );
    }
    match kill(Pid::from_raw(raw), Signal::SIGTERM) {
        Ok(()) => (
            EndOutcome::Ended,
            format!("process {pid} ({name}) was asked to end"),
        ),
        Err(e) => (
            EndOutcome::Failed,
            format!("process {pid} ({name}) could not be ended: {}", e.desc()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5000 1000000 200 18446744073709551615";
        let (name, state, ppid, ticks, start) = parse_stat(line).unwrap();
        assert_eq!(
            (name.as_str(), state.as_str(), ppid, ticks, start),
            ("my (odd) prog", "S", 1, 300, 5000)
        );
    }

    #[test]
    fn parses_units_and_packages() {
        let (units, cut) = parse_units(
            "ssh.service loaded active running OpenBSD Secure Shell server\n● bad.service not-found inactive dead bad.service\n",
        );
        assert!(!cut);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].description, "OpenBSD Secure Shell server");
        assert_eq!(units[1].name, "bad.service");
        let (pkgs, _) = parse_packages("zlib1g:amd64\t1:1.2\nbash:amd64\t5.2\n\n");
        assert_eq!(pkgs[0].name, "bash:amd64");
        assert_eq!(unescape_mount("/media/my\\040disk"), "/media/my disk");
    }

    #[test]
    fn reads_this_machine() {
        let m = memory().unwrap();
        assert!(m.total_bytes > 0 && m.available_bytes <= m.total_bytes);
        let (procs, _) = processes().unwrap();
        let me = std::process::id();
        assert!(procs.iter().any(|p| p.pid == me), "this test's own process");
        let (disks, _) = disks().unwrap();
        assert!(
            disks
                .iter()
                .any(|d| d.mount_point == "/" && d.total_bytes > 0)
        );
        let (ifaces, _) = interfaces().unwrap();
        assert!(
            ifaces
                .iter()
                .any(|i| i.addresses.iter().any(|a| a == "127.0.0.1/8"))
        );
    }

    #[test]
    fn ends_a_process_only_by_its_name() {
        use lifeline_proto::tools::EndOutcome;
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        assert_eq!(end_process(pid, "not-sleep").0, EndOutcome::NotFound);
        assert_eq!(end_process(pid, "sleep").0, EndOutcome::Ended);
        let st = child.wait().unwrap();
        assert!(!st.success(), "sleep ended by the signal");
        assert_eq!(end_process(std::process::id(), "x").0, EndOutcome::Failed);
        assert_eq!(end_process(1, "init").0, EndOutcome::Failed);
        assert_eq!(end_process(u32::MAX, "x").0, EndOutcome::NotFound);
    }

    #[test]
    fn a_program_that_hangs_is_stopped_in_time() {
        let t = Instant::now();
        let e = run_bounded("sleep", &["30"], Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000), text in ".{0,400}") {
            let _ = parse_utmp(&bytes);
            let _ = parse_stat(&text);
            let _ = parse_units(&text);
            let _ = parse_packages(&text);
            let _ = parse_meminfo(&text);
            let _ = unescape_mount(&text);
        }

        #[test]
        fn utmp_records_are_read(name in "[a-z]{1,31}", line in "pts/[0-9]{1,3}", secs in 0i32..2_000_000_000) {
            let mut rec = vec![0u8; UTMP_RECORD];
            rec[0..2].copy_from_slice(&USER_PROCESS.to_ne_bytes());
            rec[8..8 + line.len()].copy_from_slice(line.as_bytes());
            rec[44..44 + name.len()].copy_from_slice(name.as_bytes());
            rec[340..344].copy_from_slice(&secs.to_ne_bytes());
            let mut bytes = vec![0u8; UTMP_RECORD];
            bytes.extend_from_slice(&rec);
            bytes.extend_from_slice(&[1, 2, 3]);
            let (users, cut) = parse_utmp(&bytes);
            prop_assert!(!cut);
            prop_assert_eq!(users.len(), 1);
            prop_assert_eq!(&users[0].name, &name);
            prop_assert_eq!(&users[0].terminal, &line);
            prop_assert_eq!(users[0].since, i64::from(secs) * 1000);
        }
    }
}
