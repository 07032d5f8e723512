//! Gathers the system-information report without ever holding up the session.
//!
//! [`gather`] starts every source (OS, CPU, memory, disks, network, users, processes,
//! services, packages; see `platform::linux::sysinfo`) on a thread of its own at once and
//! waits for each until its own deadline ([`Limits`]). A source that fails or is late leaves
//! its section empty and is named in the report's `problems`; a late thread is left to end on
//! its own (its result is dropped), so a hung network mount or package database costs at
//! most its time limit. Lists are cut to the protocol's limits, and a report that would
//! still exceed [`MAX_REPORT_BYTES`] loses packages, then processes, until it fits.
//!
//! Limits: only Linux has sources; elsewhere the report only says so.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeline_proto::tools::{MAX_REPORT_BYTES, Problem, SystemReport};

/// How long each source may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `/proc` and `/sys` reads, `statvfs`, `getifaddrs`.
    pub quick: Duration,
    /// External programs (`systemctl`, `dpkg-query`).
    pub programs: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            quick: Duration::from_secs(5),
            programs: Duration::from_secs(10),
        }
    }
}

/// One source's result, on its way from its thread.
enum Part {
    Os(lifeline_proto::tools::OsInfo),
    Cpu(lifeline_proto::tools::CpuInfo),
    Memory(lifeline_proto::tools::MemoryInfo),
    Disks(Vec<lifeline_proto::tools::Disk>, bool),
    Network(Vec<lifeline_proto::tools::Interface>, bool),
    Users(Vec<lifeline_proto::tools::LoggedInUser>, bool),
    Processes(Vec<lifeline_proto::tools::ProcessInfo>, bool),
    Services(Vec<lifeline_proto::tools::ServiceInfo>, bool),
    Packages(Vec<lifeline_proto::tools::PackageInfo>, bool),
}

type Source = Box<dyn FnOnce() -> Result<Part, String> + Send>;

#[cfg(target_os = "linux")]
fn sources(limits: Limits) -> Vec<(&'static str, Duration, Source)> {
    use crate::platform::linux::sysinfo as s;
    let q = limits.quick;
    let p = limits.programs;
    vec![
        ("os", q, Box::new(|| s::os().map(Part::Os))),
        ("cpu", q, Box::new(|| s::cpu().map(Part::Cpu))),
        ("memory", q, Box::new(|| s::memory().map(Part::Memory))),
        (
            "disks",
            q,
            Box::new(|| s::disks().map(|(v, c)| Part::Disks(v, c))),
        ),
        (
            "network",
            q,
            Box::new(|| s::interfaces().map(|(v, c)| Part::Network(v, c))),
        ),
        (
            "users",
            q,
            Box::new(|| s::users().map(|(v, c)| Part::Users(v, c))),
        ),
        (
            "processes",
            q,
            Box::new(|| s::processes().map(|(v, c)| Part::Processes(v, c))),
        ),
        (
            "services",
            p,
            Box::new(move || s::services(p).map(|(v, c)| Part::Services(v, c))),
        ),
        (
            "packages",
            p,
            Box::new(move || s::packages(p).map(|(v, c)| Part::Packages(v, c))),
        ),
    ]
}

#[cfg(not(target_os = "linux"))]
fn sources(_limits: Limits) -> Vec<(&'static str, Duration, Source)> {
    Vec::new()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Gathers a report; never fails (what could not be read is named in `problems`).
pub fn gather(limits: Limits) -> SystemReport {
    let started = Instant::now();
    let mut report = SystemReport {
        collected_at: now_ms(),
        ..Default::default()
    };
    let list = sources(limits);
    if list.is_empty() {
        report.problems.push(Problem {
            source: "os".into(),
            message: "system information is not available on this system".into(),
        });
    }
    let mut waiting = Vec::new();
    for (name, limit, source) in list {
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(format!("sysinfo-{name}"))
            .spawn(move || {
                let _ = tx.send(source());
            });
        match spawned {
            Ok(_) => waiting.push((name, started + limit, rx)),
            Err(e) => report.problems.push(Problem {
                source: name.into(),
                message: format!("cannot start a thread: {e}"),
            }),
        }
    }
    for (name, deadline, rx) in waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        let problem = |message: String| Problem {
            source: name.into(),
            message,
        };
        let part = match rx.recv_timeout(left) {
            Ok(Ok(part)) => part,
            Ok(Err(e)) => {
                report.problems.push(problem(e));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let limit = deadline.duration_since(started);
                report.problems.push(problem(format!(
                    "gave no answer within {} s",
                    limit.as_secs_f32()
                )));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                report
                    .problems
                    .push(problem("stopped without an answer".into()));
                continue;
            }
        };
        let mut cut = |c: bool| {
            if c {
                report.truncated.push(name.into());
            }
        };
        match part {
            Part::Os(v) => report.os = v,
            Part::Cpu(v) => report.cpu = v,
            Part::Memory(v) => report.memory = v,
            Part::Disks(v, c) => {
                cut(c);
                report.disks = v;
            }
            Part::Network(v, c) => {
                cut(c);
                report.interfaces = v;
            }
            Part::Users(v, c) => {
                cut(c);
                report.users = v;
            }
            Part::Processes(v, c) => {
                cut(c);
                report.processes = v;
            }
            Part::Services(v, c) => {
                cut(c);
                report.services = v;
            }
            Part::Packages(v, c) => {
                cut(c);
                report.packages = v;
            }
        }
    }
    report.took_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    report
}

/// Encodes a report as JSON of at most [`MAX_REPORT_BYTES`], halving the package list,
/// then the process list, while it is larger.
pub fn encode_bounded(mut report: SystemReport) -> String {
    loop {
        let json = lifeline_proto::encode(&report);
        if json.len() <= MAX_REPORT_BYTES {
            return json;
        }
        let section = if !report.packages.is_empty() {
            report.packages.truncate(report.packages.len() / 2);
            "packages"
        } else if !report.processes.is_empty() {
            report.processes.truncate(report.processes.len() / 2);
            "processes"
        } else {
            report.services.clear();
            report.disks.clear();
            report.interfaces.clear();
            report.users.clear();
            "services"
        };
        if !report.truncated.iter().any(|t| t == section) {
            report.truncated.push(section.into());
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn gathers_this_machine_within_its_limits() {
        let t = Instant::now();
        let r = gather(Limits::default());
        assert!(t.elapsed() < Duration::from_secs(11));
        assert!(!r.os.host_name.is_empty());
        assert!(r.cpu.cores >= 1);
        assert!(r.memory.total_bytes > 0);
        assert!(!r.processes.is_empty());
        r.validate().unwrap();
        let json = encode_bounded(r);
        lifeline_proto::tools::decode_report(json.as_bytes()).unwrap();
    }

    #[test]
    fn a_big_report_is_cut_to_fit() {
        let r = SystemReport {
            packages: vec![
                lifeline_proto::tools::PackageInfo {
                    name: "p".repeat(1000),
                    version: "1".into(),
                };
                20_000
            ],
            ..Default::default()
        };
        let json = encode_bounded(r);
        assert!(json.len() <= MAX_REPORT_BYTES);
        let back = lifeline_proto::tools::decode_report(json.as_bytes()).unwrap();
        assert_eq!(back.truncated, vec!["packages".to_string()]);
    }
}
