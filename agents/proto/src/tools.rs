//! Session tools: the system-information report a representative asks the customer's
//! computer for.
//!
//! # Flow
//! With `system_info` granted, the relay sends [`crate::agent::RelayToAgent::SystemInfoRequest`]
//! with a request number. The agent gathers a [`SystemReport`] on a thread of its own (every
//! source with its own time limit, every list bounded), encodes it as JSON and sends it back
//! in order as [`crate::agent::AgentToRelay::SystemInfo`] parts of at most
//! [`REPORT_CHUNK_BYTES`] bytes each ([`report_chunks`]), the last one flagged `last`; or
//! [`crate::agent::AgentToRelay::SystemInfoFailed`] with a reason. The relay puts the parts
//! together with a [`ReportAssembler`] (in order, at most [`MAX_REPORT_BYTES`]) and checks
//! the whole with [`decode_report`] before a console sees it.
//!
//! # Bounds
//! A report is at most [`MAX_REPORT_BYTES`] of JSON; each list has its own limit
//! ([`MAX_PROCESSES`], [`MAX_PACKAGES`], ...), every text field at most [`MAX_FIELD_CHARS`]
//! characters. An agent cuts longer lists and names the cut sections in
//! [`SystemReport::truncated`]; a source that failed or ran out of time is named in
//! [`SystemReport::problems`] and its section stays empty. Decoding never panics (property
//! tests below).
//!
//! # Ending a process
//! A separate, consented action: relay → [`crate::agent::RelayToAgent::EndProcess`] with the
//! process id and the name the report showed; the agent asks the customer (no answer in
//! time is a refusal), checks that the process still has that name (a process id may have
//! been reused since the report), asks it to end (`SIGTERM` on Linux) and answers
//! [`crate::agent::AgentToRelay::ProcessEnd`] with an [`EndOutcome`].
//!
//! # Limits of this version
//! The report is a snapshot, not a live view; a process that ignores the request to end
//! keeps running (no forced kill).

use serde::{Deserialize, Serialize};

use crate::{DecodeError, check_len};

/// Largest report, as JSON bytes.
pub const MAX_REPORT_BYTES: usize = 8 * 1024 * 1024;
/// Largest part of a report in one control message, in bytes (JSON escaping of the part
/// inside the message at most doubles it, well under [`crate::MAX_CONTROL_MESSAGE`]).
pub const REPORT_CHUNK_BYTES: usize = 24 * 1024;
/// Longest text field of a report, in characters (command lines are cut to this).
pub const MAX_FIELD_CHARS: usize = 1024;
pub const MAX_PROCESSES: usize = 5000;
pub const MAX_PACKAGES: usize = 30_000;
pub const MAX_SERVICES: usize = 3000;
pub const MAX_DISKS: usize = 256;
pub const MAX_INTERFACES: usize = 256;
pub const MAX_ADDRESSES: usize = 64;
pub const MAX_USERS: usize = 256;
pub const MAX_PROBLEMS: usize = 32;

/// Operating system, kernel and host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// e.g. "Debian GNU/Linux 13 (trixie)".
    pub name: String,
    /// e.g. "Linux 6.12.48-amd64".
    pub kernel: String,
    /// e.g. "x86_64".
    pub arch: String,
    pub host_name: String,
    pub uptime_s: u64,
    /// Milliseconds since the Unix epoch.
    pub boot_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuInfo {
    pub model: String,
    /// Logical processors.
    pub cores: u32,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

/// One mounted file system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub total_bytes: u64,
    /// What an ordinary user may still write.
    pub available_bytes: u64,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    /// e.g. "52:54:00:12:34:56".
    pub mac: Option<String>,
    pub up: bool,
    /// Addresses with their prefix length, e.g. "192.168.1.20/24", "fe80::1/64".
    pub addresses: Vec<String>,
}

/// A logged-in session of a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedInUser {
    pub name: String,
    /// e.g. "tty2", "pts/0", ":0".
    pub terminal: String,
    /// The remote host, or empty for a local login.
    pub host: String,
    /// Milliseconds since the Unix epoch.
    pub since: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub user: String,
    pub name: String,
    /// The command line (cut to [`MAX_FIELD_CHARS`]).
    pub command: String,
    /// e.g. "R", "S", "Z".
    pub state: String,
    /// CPU time used so far, user and system, in milliseconds.
    pub cpu_ms: u64,
    /// Resident memory.
    pub memory_bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
}

/// A system service (a systemd unit on Linux).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    pub name: String,
    /// e.g. "active", "inactive", "failed".
    pub active: String,
    /// e.g. "running", "exited", "dead".
    pub sub: String,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
}

/// A source that gave nothing (failed, or ran out of its time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// The section: "os", "cpu", "memory", "disks", "network", "users", "processes",
    /// "services" or "packages".
    pub source: String,
    pub message: String,
}

/// Everything the representative sees in the system-information tabs, and exports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemReport {
    /// Milliseconds since the Unix epoch.
    pub collected_at: i64,
    /// How long gathering took.
    pub took_ms: u32,
    pub os: OsInfo,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub disks: Vec<Disk>,
    pub interfaces: Vec<Interface>,
    pub users: Vec<LoggedInUser>,
    pub processes: Vec<ProcessInfo>,
    pub services: Vec<ServiceInfo>,
    pub packages: Vec<PackageInfo>,
    /// Sections cut to their limit.
    pub truncated: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Longest process name in an end request, in characters.
pub const MAX_PROCESS_NAME_CHARS: usize = 256;

/// What became of a request to end a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOutcome {
    /// The process was asked to end.
    Ended,
    /// The customer said no, or did not answer in time, or has not allowed system
    /// information.
    Refused,
    /// No process with this id and name runs any more.
    NotFound,
    /// The system refused (not the customer's process, say).
    Failed,
}

impl EndOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EndOutcome::Ended => "ended",
            EndOutcome::Refused => "refused",
            EndOutcome::NotFound => "not_found",
            EndOutcome::Failed => "failed",
        }
    }
}

/// Why a report (or a part of one) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the report is larger than {MAX_REPORT_BYTES} bytes")]
    TooLarge,
    #[error("part {got} of the report came when part {expected} was due")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("a part of {0} bytes is larger than {REPORT_CHUNK_BYTES}")]
    PartTooLarge(usize),
    #[error("the report is not valid: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("section `{section}` has {count} entries, more than {max}")]
    TooMany {
        section: &'static str,
        count: usize,
        max: usize,
    },
    #[error("the report is not valid: {0}")]
    Field(#[from] DecodeError),
    #[error("the report's load average is not a finite number")]
    NotFinite,
}

fn count(section: &'static str, n: usize, max: usize) -> Result<(), ReportError> {
    if n > max {
        return Err(ReportError::TooMany {
            section,
            count: n,
            max,
        });
    }
    Ok(())
}

fn field(name: &'static str, value: &str) -> Result<(), ReportError> {
    Ok(check_len(name, value, MAX_FIELD_CHARS, true)?)
}

impl SystemReport {
    /// Checks every bound of a report.
    pub fn validate(&self) -> Result<(), ReportError> {
        let os = &self.os;
        for (n, v) in [
            ("os.name", &os.name),
            ("os.kernel", &os.kernel),
            ("os.arch", &os.arch),
            ("os.host_name", &os.host_name),
            ("cpu.model", &self.cpu.model),
        ] {
            field(n, v)?;
        }
        if self.cpu.load.iter().any(|l| !l.is_finite()) {
            return Err(ReportError::NotFinite);
        }
        count("disks", self.disks.len(), MAX_DISKS)?;
        for d in &self.disks {
            field("disk.device", &d.device)?;
            field("disk.mount_point", &d.mount_point)?;
            field("disk.fs_type", &d.fs_type)?;
        }
        count("interfaces", self.interfaces.len(), MAX_INTERFACES)?;
        for i in &self.interfaces {
            field("interface.name", &i.name)?;
            field("interface.mac", i.mac.as_deref().unwrap_or(""))?;
            count("interface.addresses", i.addresses.len(), MAX_ADDRESSES)?;
            for a in &i.addresses {
                field("interface.address", a)?;
            }
        }
        count("users", self.users.len(), MAX_USERS)?;
        for u in &self.users {
            field("user.name", &u.name)?;
            field("user.terminal", &u.terminal)?;
            field("user.host", &u.host)?;
        }
        count("processes", self.processes.len(), MAX_PROCESSES)?;
        for p in &self.processes {
            field("process.user", &p.user)?;
            field("process.name", &p.name)?;
            field("process.command", &p.command)?;
            field("process.state", &p.state)?;
        }
        count("services", self.services.len(), MAX_SERVICES)?;
        for s in &self.services {
            field("service.name", &s.name)?;
            field("service.active", &s.active)?;
            field("service.sub", &s.sub)?;
            field("service.description", &s.description)?;
        }
        count("packages", self.packages.len(), MAX_PACKAGES)?;
        for p in &self.packages {
            field("package.name", &p.name)?;
            field("package.version", &p.version)?;
        }
        count("truncated", self.truncated.len(), MAX_PROBLEMS)?;
        for t in &self.truncated {
            field("truncated", t)?;
        }
        count("problems", self.problems.len(), MAX_PROBLEMS)?;
        for p in &self.problems {
            field("problem.source", &p.source)?;
            field("problem.message", &p.message)?;
        }
        Ok(())
    }
}

/// Decodes and checks a whole report; never panics.
pub fn decode_report(bytes: &[u8]) -> Result<SystemReport, ReportError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge);
    }
    let report: SystemReport = serde_json::from_slice(bytes).map_err(ReportError::Malformed)?;
    report.validate()?;
    Ok(report)
}

/// Cuts a text into parts of at most [`REPORT_CHUNK_BYTES`] bytes, at character
/// boundaries. An empty text gives one empty part.
pub fn report_chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > REPORT_CHUNK_BYTES {
        let mut cut = REPORT_CHUNK_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Puts the parts of one report together: in order from 0, at most [`MAX_REPORT_BYTES`].
#[derive(Debug, Default)]
pub struct ReportAssembler {
    next: u32,
    text: String,
}

impl ReportAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds part `part`; gives the whole text after the `last` one.
    pub fn push(
        &mut self,
        part: u32,
        last: bool,
        data: &str,
    ) -> Result<Option<String>, ReportError> {
        if part != self.next {
            return Err(ReportError::OutOfOrder {
                expected: self.next,
                got: part,
            });
        }
        if data.len() > REPORT_CHUNK_BYTES {
            return Err(ReportError::PartTooLarge(data.len()));
        }
        if self.text.len() + data.len() > MAX_REPORT_BYTES {
            return Err(ReportError::TooLarge);
        }
        self.text.push_str(data);
        self.next = self.next.wrapping_add(1);
        Ok(last.then(|| std::mem::take(&mut self.text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SystemReport {
        SystemReport {
            collected_at: 1_700_000_000_000,
            took_ms: 120,
            os: OsInfo {
                name: "Debian GNU/Linux 13".into(),
                kernel: "Linux 6.12".into(),
                arch: "x86_64".into(),
                host_name: "pc-17".into(),
                uptime_s: 3600,
                boot_time: 1_699_999_000_000,
            },
            cpu: CpuInfo {
                model: "Some CPU".into(),
                cores: 2,
                load: [0.5, 0.25, 0.0],
            },
            processes: vec![ProcessInfo {
                pid: 1,
                name: "init".into(),
                command: "/sbin/init".into(),
                ..Default::default()
            }],
            packages: vec![PackageInfo {
                name: "bash".into(),
                version: "5.2".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn report_round_trips_through_parts() {
        let mut r = sample();
        for i in 0..3000 {
            r.packages.push(PackageInfo {
                name: format!("paquet-é-{i}"),
                version: "1.0".into(),
            });
        }
        let json = crate::encode(&r);
        let parts = report_chunks(&json);
        assert!(parts.len() > 2);
        let mut a = ReportAssembler::new();
        let mut whole = None;
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= REPORT_CHUNK_BYTES);
            whole = a.push(i as u32, i + 1 == parts.len(), p).unwrap();
        }
        assert_eq!(decode_report(whole.unwrap().as_bytes()).unwrap(), r);
    }

    #[test]
    fn rejects_bad_reports() {
        let mut r = sample();
        r.processes = vec![ProcessInfo::default(); MAX_PROCESSES + 1];
        assert!(matches!(
            decode_report(crate::encode(&r).as_bytes()),
            Err(ReportError::TooMany { .. })
        ));
        let mut r = sample();
        r.os.host_name = "x".repeat(MAX_FIELD_CHARS + 1);
        assert!(decode_report(crate::encode(&r).as_bytes()).is_err());
        assert!(decode_report(b"{}").is_err());
        let mut a = ReportAssembler::new();
        assert!(a.push(1, false, "x").is_err());
        assert!(
            a.push(0, false, &"x".repeat(REPORT_CHUNK_BYTES + 1))
                .is_err()
        );
    }

    #[test]
    fn end_process_messages_keep_their_bounds() {
        use crate::agent::{AgentToRelay, RelayToAgent};
        let ok = r#"{"type":"end_process","request":1,"pid":42,"name":"victim","rep":"Rémi"}"#;
        assert!(matches!(
            RelayToAgent::decode(ok),
            Ok(RelayToAgent::EndProcess { pid: 42, .. })
        ));
        let long = ok.replace("victim", &"v".repeat(MAX_PROCESS_NAME_CHARS + 1));
        assert!(RelayToAgent::decode(&long).is_err());
        assert!(RelayToAgent::decode(&ok.replace("victim", " ")).is_err());
        let answer = r#"{"type":"process_end","request":1,"pid":42,"outcome":"not_found"}"#;
        assert!(matches!(
            AgentToRelay::decode(answer),
            Ok(AgentToRelay::ProcessEnd {
                outcome: EndOutcome::NotFound,
                ..
            })
        ));
        assert!(AgentToRelay::decode(&answer.replace("not_found", "exploded")).is_err());
    }

    proptest! {
        #[test]
        fn decode_report_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_report(&bytes);
        }

        #[test]
        fn decode_report_never_panics_on_jsonish(
            key in prop::sample::select(vec!["os","cpu","memory","disks","processes","packages","x"]),
            body in "[ -~]{0,300}",
        ) {
            let s = format!(r#"{{"{key}":{body}}}"#);
            let _ = decode_report(s.as_bytes());
        }

        #[test]
        fn chunks_join_back(text in ".{0,3000}", reps in 1usize..40) {
            let text = text.repeat(reps);
            let parts = report_chunks(&text);
            prop_assert!(parts.iter().all(|p| p.len() <= REPORT_CHUNK_BYTES));
            prop_assert_eq!(parts.concat(), text);
        }

        #[test]
        fn assembler_never_panics(ops in proptest::collection::vec((0u32..5, any::<bool>(), ".{0,50}"), 0..50)) {
            let mut a = ReportAssembler::new();
            for (part, last, data) in ops {
                let _ = a.push(part, last, &data);
            }
        }
    }
}
