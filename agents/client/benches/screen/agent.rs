//! The customer's side: the real agent library on the benchmark's Xvfb.
//!
//! A [`Session`] runs with the X11 desktop (`X11Desktop`) on a Tokio runtime of its own, with
//! two workers like the real client, named `agent-net` so their CPU time can be told from
//! the benchmark's. The benchmark plays the customer's window: it accepts the terms and
//! answers every permission question with "allow".
//!
//! CPU: [`agent_cpu_s`] sums the user and system time of the agent's threads — the screen
//! stream (`screen`, `screen-control`), the X event thread (`x11-events`), input injection
//! (`input`) and the session's runtime (`agent-net`) — from `/proc/self/task/*/stat`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_agent::env::Env;
use lifeline_agent::platform::linux::desktop::X11Desktop;
use lifeline_agent::session::{Event, Session, SessionConfig, SessionHandle};
use lifeline_proto::agent::AgentInfo;
use lifeline_proto::ticket::TicketFile;

use super::error::{BenchError, Result};
use super::relay::CUSTOMER;

/// Threads of the agent, by name (`comm`).
const AGENT_THREADS: &[&str] = &[
    "screen",
    "screen-control",
    "x11-events",
    "input",
    "agent-net",
];
/// Threads of the screen stream only.
const SCREEN_THREADS: &[&str] = &["screen", "screen-control", "x11-events"];
/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// The folder the agent shares for file transfer (the transfer benchmark sets it; the
/// screen benchmark shares none).
pub static FILES_ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub struct Agent {
    rt: Option<tokio::runtime::Runtime>,
    handle: SessionHandle,
    failure: Arc<Mutex<Option<String>>>,
}

impl Agent {
    pub fn start(ticket: TicketFile, display: &str) -> Result<Agent> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("agent-net")
            .enable_all()
            .build()
            .map_err(BenchError::io("cannot start the agent's runtime"))?;
        let config = SessionConfig {
            env: Env::from_pairs([]),
            desktop: Some(Arc::new(X11Desktop::new(Some(display.to_owned())))),
            files_root: FILES_ROOT.get().cloned(),
            ..Default::default()
        };
        let info = AgentInfo {
            customer_name: CUSTOMER.into(),
            computer: "bench-pc".into(),
            platform: "Linux x86_64 (benchmark)".into(),
            language: "en".into(),
        };
        let (handle, mut events) = {
            let _guard = rt.enter();
            Session::start_with(ticket, info, config)
        };
        let failure = Arc::new(Mutex::new(None));
        let (h, f) = (handle.clone(), failure.clone());
        rt.spawn(async move {
            while let Some(ev) = events.recv().await {
                let fatal = match ev {
                    Event::Connected { .. } => {
                        h.accept_terms();
                        None
                    }
                    Event::PermissionAsked { permission, .. } => {
                        h.permission(permission, true);
                        None
                    }
                    Event::Refused { message, .. } => Some(format!("refused: {message}")),
                    Event::Fatal { message } => Some(message),
                    Event::Ended { reason, .. } => Some(format!("ended: {reason}")),
                    _ => None,
                };
                if let Some(why) = fatal
                    && let Ok(mut slot) = f.lock()
                {
                    slot.get_or_insert(why);
                }
            }
        });
        Ok(Agent {
            rt: Some(rt),
            handle,
            failure,
        })
    }

    pub fn check(&self) -> Result<()> {
        match self.failure.lock().ok().and_then(|f| f.clone()) {
            Some(why) => Err(BenchError::Session(why)),
            None => Ok(()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.handle.end("benchmark over");
        if let Some(rt) = self.rt.take() {
            let h = self.handle.clone();
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(3), h.finished()).await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// CPU ticks of this process's threads named in `names`, by thread id.
fn thread_ticks(names: &[&str]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ..." — the name may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        if !names.contains(&comm) {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(tid, t(11) + t(12));
    }
    out
}

/// A sample of the agent's thread times, to subtract from a later one.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    all: HashMap<u32, u64>,
    screen: HashMap<u32, u64>,
}

impl CpuSample {
    pub fn now() -> CpuSample {
        CpuSample {
            all: thread_ticks(AGENT_THREADS),
            screen: thread_ticks(SCREEN_THREADS),
        }
    }

    /// CPU seconds since `earlier`: (all agent threads, screen threads only). Threads that
    /// started since count from zero; threads that ended meanwhile are lost (the stream's
    /// threads live as long as someone watches).
    pub fn since(&self, earlier: &CpuSample) -> (f64, f64) {
        let d = |now: &HashMap<u32, u64>, then: &HashMap<u32, u64>| {
            now.iter()
                .map(|(tid, t)| t.saturating_sub(then.get(tid).copied().unwrap_or(0)))
                .sum::<u64>() as f64
                / TICKS
        };
        (d(&self.all, &earlier.all), d(&self.screen, &earlier.screen))
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn process_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / TICKS
}
