//! Development mode: a private `dbus-daemon` and the Lifeline services as children.
//!
//! [`PrivateBus`] starts `dbus-daemon` with a configuration written into the state folder
//! (a session-type bus on a Unix socket that allows everything: it is reachable only by this
//! user) and reads the address it prints. Every child gets that address in
//! `LIFELINE_DBUS_ADDRESS`, so it talks the same D-Bus contract as on the box.
//!
//! [`Children`] runs one task per configured service. A child runs in its own process group
//! (so a Ctrl-C in the terminal reaches only the supervisor, which then stops the children
//! itself, all at once), with `NOTIFY_SOCKET` pointing at a datagram socket of its own: the
//! `READY=1` every Lifeline daemon sends makes it `active`, exactly as systemd would. A child
//! that exits is restarted after a back-off (0.5 s doubling to 10 s, reset after 30 s of
//! running); one that does not say ready within [`START_TIMEOUT`] is killed and restarted.
//! Stopping sends SIGTERM and, after [`STOP_TIMEOUT`], SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_supervisor_api::{DBUS_ADDRESS_ENV, ServiceState, ServiceStatus};
use tokio::io::AsyncBufReadExt;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};

use crate::config::{Ready, ServiceConfig};

/// A child that says nothing for this long after its start is restarted.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// After SIGTERM a child has this long before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot create the folder {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start dbus-daemon (install the Debian package `dbus`)")]
    BusStart(#[source] std::io::Error),
    #[error("dbus-daemon did not print its address within 10 s")]
    BusAddress,
}

/// The private message bus, killed when dropped.
#[derive(Debug)]
pub struct PrivateBus {
    pub address: String,
    child: Child,
}

impl PrivateBus {
    pub async fn start(dir: &Path) -> Result<PrivateBus, DevError> {
        std::fs::create_dir_all(dir).map_err(|source| DevError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let socket = dir.join("bus.socket");
        let _ = std::fs::remove_file(&socket);
        let conf = dir.join("bus.conf");
        let text = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={}</listen>\
             <auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
             <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
            socket.display()
        );
        std::fs::write(&conf, text).map_err(|source| DevError::Dir {
            path: conf.clone(),
            source,
        })?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(DevError::BusStart)?;
        let stdout = child.stdout.take().ok_or(DevError::BusAddress)?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
            .ok_or(DevError::BusAddress)?;
        let address = line.trim().to_string();
        if !address.starts_with("unix:") {
            return Err(DevError::BusAddress);
        }
        std::fs::write(dir.join("bus-address"), format!("{address}\n")).map_err(|source| {
            DevError::Dir {
                path: dir.join("bus-address"),
                source,
            }
        })?;
        Ok(PrivateBus { address, child })
    }

    /// Resolves when the bus daemon exits.
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[derive(Debug, Clone)]
struct SlotState {
    state: ServiceState,
    sub: &'static str,
    restarts: u32,
    pid: Option<u32>,
}

#[derive(Debug)]
struct Slot {
    cfg: ServiceConfig,
    state: Mutex<SlotState>,
    restart_now: Notify,
}

impl Slot {
    fn set(&self, state: ServiceState, sub: &'static str, pid: Option<u32>, changed: &Notify) {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.state = state;
            s.sub = sub;
            s.pid = pid;
        }
        changed.notify_one();
    }

    fn count_restart(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.restarts = s.restarts.saturating_add(1);
    }
}

/// The running children.
#[derive(Debug)]
pub struct Children {
    slots: Vec<Arc<Slot>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("a child did not stop within {STOP_TIMEOUT:?}; killing it");
        let _ = child.kill().await;
    }
}

impl Children {
    /// Start every configured service. `changed` is notified on every state change.
    pub fn start(
        services: &[ServiceConfig],
        run_dir: &Path,
        bus_address: &str,
        changed: Arc<Notify>,
    ) -> Result<Children, DevError> {
        let notify_dir = run_dir.join("notify");
        std::fs::create_dir_all(&notify_dir).map_err(|source| DevError::Dir {
            path: notify_dir.clone(),
            source,
        })?;
        let (stop, _) = watch::channel(false);
        let mut slots = Vec::new();
        let mut tasks = Vec::new();
        for cfg in services {
            let slot = Arc::new(Slot {
                cfg: cfg.clone(),
                state: Mutex::new(SlotState {
                    state: ServiceState::Activating,
                    sub: "start",
                    restarts: 0,
                    pid: None,
                }),
                restart_now: Notify::new(),
            });
            slots.push(slot.clone());
            tasks.push(tokio::spawn(run_slot(
                slot,
                notify_dir.join(format!("{}.sock", cfg.name)),
                bus_address.to_string(),
                changed.clone(),
                stop.subscribe(),
            )));
        }
        Ok(Children {
            slots,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    pub fn statuses(&self) -> Vec<(ServiceStatus, bool)> {
        self.slots
            .iter()
            .map(|slot| {
                let s = slot.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (
                    ServiceStatus {
                        name: slot.cfg.name.clone(),
                        unit: slot.cfg.label(),
                        state: s.state,
                        sub_state: s.sub.to_string(),
                        restarts: s.restarts,
                        pid: s.pid,
                    },
                    slot.cfg.optional,
                )
            })
            .collect()
    }

    /// Restart one child now. `false` if no child has that name.
    pub fn restart(&self, name: &str) -> bool {
        match self.slots.iter().find(|s| s.cfg.name == name) {
            Some(s) => {
                s.restart_now.notify_one();
                true
            }
            None => false,
        }
    }

    pub fn restart_all(&self) {
        for s in &self.slots {
            s.restart_now.notify_one();
        }
    }

    /// Stop every child (all at once), each within [`STOP_TIMEOUT`].
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        // The tasks stop their children concurrently; wait for all, bounded.
        for t in tasks.into_iter().rev() {
            let _ = tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(2), t).await;
        }
    }
}

fn parse_notify(msg: &[u8]) -> (bool, bool) {
    let text = String::from_utf8_lossy(msg);
    let ready = text.lines().any(|l| l.trim() == "READY=1");
    let stopping = text.lines().any(|l| l.trim() == "STOPPING=1");
    (ready, stopping)
}

async fn run_slot(
    slot: Arc<Slot>,
    notify_path: PathBuf,
    bus_address: String,
    changed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let name = slot.cfg.name.clone();
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            break;
        }
        slot.set(ServiceState::Activating, "start", None, &changed);
        let _ = std::fs::remove_file(&notify_path);
        let notify = match UnixDatagram::bind(&notify_path) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "cannot create the notify socket; the child counts as ready once started");
                None
            }
        };
        let Some(program) = slot.cfg.command.clone() else {
            return;
        };
        let mut cmd = Command::new(&program);
        cmd.args(&slot.cfg.args)
            .envs(&slot.cfg.env)
            .env(DBUS_ADDRESS_ENV, &bus_address)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(service = %name, program = %program.display(), error = %e, "cannot start");
                slot.set(ServiceState::Failed, "failed", None, &changed);
                slot.count_restart();
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let pid = child.id();
        tracing::info!(service = %name, pid, "started");
        let mut ready = slot.cfg.ready == Ready::Started || notify.is_none();
        if ready {
            slot.set(ServiceState::Active, "running", pid, &changed);
        } else {
            slot.set(ServiceState::Activating, "start", pid, &changed);
        }
        let mut buf = vec![0u8; 4096];
        let start_deadline = tokio::time::sleep(START_TIMEOUT);
        tokio::pin!(start_deadline);
        enum End {
            Exited(Option<std::process::ExitStatus>),
            Restart,
            Stop,
            Hung,
        }
        let end = loop {
            tokio::select! {
                st = child.wait() => break End::Exited(st.ok()),
                r = async {
                    match &notify {
                        Some(s) => s.recv(&mut buf).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Ok(n) = r {
                        let (r, s) = parse_notify(&buf[..n]);
                        if r && !ready {
                            ready = true;
                            tracing::info!(service = %name, "ready");
                            slot.set(ServiceState::Active, "running", pid, &changed);
                        }
                        if s {
                            slot.set(ServiceState::Deactivating, "stop", pid, &changed);
                        }
                    }
                }
                _ = &mut start_deadline, if !ready => break End::Hung,
                _ = slot.restart_now.notified() => break End::Restart,
                _ = stop.wait_for(|s| *s) => break End::Stop,
            }
        };
        match end {
            End::Stop => {
                slot.set(ServiceState::Deactivating, "stop-sigterm", pid, &changed);
                stop_child(&mut child).await;
                slot.set(ServiceState::Inactive, "dead", None, &changed);
                tracing::info!(service = %name, "stopped");
                break;
            }
            End::Restart => {
                tracing::info!(service = %name, "restarting on request");
                slot.set(ServiceState::Deactivating, "stop-sigterm", pid, &changed);
                stop_child(&mut child).await;
                slot.count_restart();
                backoff = Duration::from_millis(500);
            }
            End::Hung => {
                tracing::error!(service = %name, "did not say ready within {START_TIMEOUT:?}; restarting");
                stop_child(&mut child).await;
                slot.count_restart();
                slot.set(ServiceState::Failed, "timeout", None, &changed);
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            End::Exited(st) => {
                if *stop.borrow() {
                    slot.set(ServiceState::Inactive, "dead", None, &changed);
                    break;
                }
                tracing::warn!(service = %name, status = ?st, "exited; restarting");
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(500);
                }
                slot.count_restart();
                slot.set(ServiceState::Failed, "auto-restart", None, &changed);
                if sleep_or_stop(&mut stop, backoff).await {
                    slot.set(ServiceState::Inactive, "dead", None, &changed);
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = std::fs::remove_file(&notify_path);
}

/// Sleep, unless asked to stop first (then `true`).
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_messages() {
        assert_eq!(parse_notify(b"READY=1\n"), (true, false));
        assert_eq!(parse_notify(b"STATUS=x\nSTOPPING=1"), (false, true));
        assert_eq!(parse_notify(b"WATCHDOG=1"), (false, false));
        assert_eq!(parse_notify(&[0xff, 0xfe]), (false, false));
    }
}
