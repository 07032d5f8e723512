//! One booted appliance: a QEMU guest of the built image, or a real box.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeline_panel::driver::Model as PanelModel;
use lifeline_panel::emulator::Emulator;

use crate::artifacts::Artifacts;
use crate::image::Built;
use crate::shell::Shell;
use crate::wait_for;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How the harness reaches the guest's root shell (development images only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// QEMU's virtio-serial port `org.lifeline.hil`, as a Unix socket on the host.
    Virtio,
    /// The guest's third serial port (ttyS2) on a host pseudo-terminal: the way a real box
    /// is wired ([`Machine::connect_box`] uses the same code).
    Serial,
}

/// Where the serial console goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Into `console.log` (tests).
    Log,
    /// The terminal (`cargo xtask qemu`): Ctrl-A X quits.
    Terminal,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read-only raw disks attached after the system disk (e.g. a disk of bundles).
    pub extra_disks: Vec<PathBuf>,
    /// Attach the panel emulator of this model to the second serial port.
    pub panel: Option<PanelModel>,
    pub console: Console,
    /// Host ports for 443 and 80 (0: pick free ones).
    pub https_port: u16,
    pub http_port: u16,
    /// Keep the disk overlay here (so it survives); `None`: a temp dir.
    pub state_dir: Option<PathBuf>,
    pub memory_mib: u32,
    pub channel: Channel,
    /// A second network port on its own user-mode network (10.0.3.0/24, DHCP from QEMU).
    pub second_nic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_disks: Vec::new(),
            panel: None,
            console: Console::Log,
            https_port: 0,
            http_port: 0,
            state_dir: None,
            memory_mib: 1024,
            channel: Channel::Virtio,
            second_nic: false,
        }
    }
}

/// The accelerator: TCG unless `LIFELINE_QEMU_ACCEL=kvm` (KVM here does not boot stock
/// kernels, see the machine notes).
pub fn accel() -> (&'static str, Vec<&'static str>) {
    match std::env::var("LIFELINE_QEMU_ACCEL").as_deref() {
        Ok("kvm") => ("kvm", vec!["-accel", "kvm", "-cpu", "host"]),
        _ => ("tcg", vec!["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// How long a reboot may stay silent after the kernel's "Restarting system" before the
/// tests press the reset button ([`Machine::reset_hung_reboot`]).
pub const HUNG_RESET: Duration = Duration::from_secs(60);

pub struct Machine {
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub console_log: PathBuf,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub shell: Shell,
    pub panel: Option<Emulator>,
    pub artifacts: Artifacts,
    /// When QEMU was started (boot time is measured from here).
    pub started: Instant,
    pub accel: &'static str,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("dir", &self.dir)
            .field("https", &self.https)
            .finish()
    }
}

impl Machine {
    /// Boots `image` in QEMU on a fresh copy-on-write overlay. Returns once QEMU runs and
    /// the command channel socket is connected (not when the guest has booted).
    pub fn boot(image: &Built, opts: &Options, artifacts: Artifacts) -> Result<Machine, String> {
        for (tool, pkg) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("qemu-img", "qemu-utils"),
        ] {
            if !crate_have(tool) {
                return Err(format!(
                    "{tool} is not installed (Debian package {pkg}; `cargo xtask deps` installs it)"
                ));
            }
        }
        for f in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(f).is_file() {
                return Err(format!(
                    "{f} is missing (Debian package ovmf; `cargo xtask deps` installs it)"
                ));
            }
        }
        if opts.channel == Channel::Serial && opts.console == Console::Terminal {
            return Err(
                "the serial command channel needs QEMU's output in a file (Console::Log)".into(),
            );
        }
        let (tmp, dir) = match &opts.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("lifeline-hil-")
                    .tempdir()
                    .map_err(|e| format!("cannot make a temp dir: {e}"))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let overlay = dir.join("disk.qcow2");
        if !overlay.exists() {
            let o = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&image.disk)
                .arg(&overlay)
                .output()
                .map_err(|e| format!("cannot run qemu-img: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "qemu-img create failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            std::fs::copy(OVMF_VARS, dir.join("ovmf-vars.fd"))
                .map_err(|e| format!("cannot copy {OVMF_VARS}: {e}"))?;
        }
        let console_log = dir.join("console.log");
        let sock = dir.join("hil.sock");
        let _ = std::fs::remove_file(&sock);
        let https_port = if opts.https_port == 0 {
            free_port()
        } else {
            opts.https_port
        };
        let http_port = if opts.http_port == 0 {
            free_port()
        } else {
            opts.http_port
        };
        let panel = match opts.panel {
            Some(m) => Some(
                Emulator::start(m).map_err(|e| format!("cannot start the panel emulator: {e}"))?,
            ),
            None => None,
        };
        let (accel, accel_args) = accel();
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "q35",
            "-smp",
            "2",
        ])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(&accel_args)
        .args(["-display", "none", "-vga", "none"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            dir.join("ovmf-vars.fd").display()
        ))
        .arg("-drive")
        .arg(format!(
            "if=virtio,format=qcow2,cache=unsafe,discard=unmap,file={}",
            overlay.display()
        ));
        for d in &opts.extra_disks {
            c.arg("-drive").arg(format!(
                "if=virtio,format=raw,readonly=on,file={}",
                d.display()
            ));
        }
        c.arg("-netdev")
            .arg(format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{https_port}-:443,hostfwd=tcp:127.0.0.1:{http_port}-:80"
            ))
            .args(["-device", "virtio-net-pci,netdev=net0"]);
        if opts.second_nic {
            // Its own subnet, so its DHCP answer never competes with the first port's.
            c.args(["-netdev", "user,id=net1,net=10.0.3.0/24"])
                .args(["-device", "virtio-net-pci,netdev=net1"]);
        }
        c.args(["-device", "virtio-rng-pci"]);
        match opts.console {
            Console::Log => {
                c.arg("-chardev")
                    .arg(format!("file,id=con,path={}", console_log.display()))
                    .args(["-serial", "chardev:con"])
                    .arg("-monitor")
                    .arg(format!(
                        "unix:{},server=on,wait=off",
                        dir.join("monitor.sock").display()
                    ));
            }
            Console::Terminal => {
                c.args(["-chardev", "stdio,id=con,mux=on,signal=off"])
                    .args([
                        "-serial",
                        "chardev:con",
                        "-mon",
                        "chardev=con,mode=readline",
                    ]);
            }
        }
        match &panel {
            Some(p) => {
                c.arg("-chardev")
                    .arg(format!("serial,id=panel,path={}", p.path().display()))
                    .args(["-serial", "chardev:panel"]);
            }
            None => {
                c.args(["-serial", "null"]);
            }
        }
        match opts.channel {
            Channel::Virtio => {
                c.args(["-device", "virtio-serial-pci"])
                    .arg("-chardev")
                    .arg(format!(
                        "socket,id=hil,path={},server=on,wait=off",
                        sock.display()
                    ))
                    .args([
                        "-device",
                        "virtserialport,chardev=hil,name=org.lifeline.hil",
                    ]);
            }
            Channel::Serial => {
                // ttyS2; QEMU names the pseudo-terminal on its output (read below).
                c.args(["-chardev", "pty,id=hil", "-serial", "chardev:hil"]);
            }
        }
        if opts.console == Console::Log {
            c.stdin(Stdio::null());
        }
        // QEMU names the pseudo-terminals it makes on its standard output (older
        // versions: on its standard error; both are read).
        c.stdout(if opts.console == Console::Log {
            Stdio::from(std::fs::File::create(dir.join("qemu.stdout")).map_err(|e| e.to_string())?)
        } else {
            Stdio::inherit()
        });
        c.stderr(std::fs::File::create(dir.join("qemu.stderr")).map_err(|e| e.to_string())?);
        let started = Instant::now();
        let mut child = c.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
        let stderr = dir.join("qemu.stderr");
        let exited = |child: &mut Child| {
            matches!(child.try_wait(), Ok(Some(_))).then(|| {
                format!(
                    "QEMU exited at start-up: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
        };
        let shell = match opts.channel {
            Channel::Virtio => {
                let stream = wait_for(
                    Duration::from_secs(20),
                    Duration::from_millis(20),
                    "QEMU's command channel socket",
                    || match exited(&mut child) {
                        Some(e) => Some(Err(e)),
                        None => UnixStream::connect(&sock).ok().map(Ok),
                    },
                )??;
                let reader = stream.try_clone().map_err(|e| e.to_string())?;
                Shell::new(Box::new(reader), Box::new(stream))
            }
            Channel::Serial => {
                let pty = wait_for(
                    Duration::from_secs(20),
                    Duration::from_millis(20),
                    "QEMU's pseudo-terminal for ttyS2",
                    || match exited(&mut child) {
                        Some(e) => Some(Err(e)),
                        None => ["qemu.stdout", "qemu.stderr"].iter().find_map(|f| {
                            pty_of(
                                &std::fs::read_to_string(dir.join(f)).unwrap_or_default(),
                                "hil",
                            )
                            .map(Ok)
                        }),
                    },
                )??;
                serial_shell(&pty)?
            }
        };
        Ok(Machine {
            child: Some(child),
            _tmp: tmp,
            dir,
            console_log,
            https: SocketAddr::from(([127, 0, 0, 1], https_port)),
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            shell,
            panel,
            artifacts,
            started,
            accel,
        })
    }

    /// A real box: its HTTPS address and the serial line of its command channel (see the
    /// crate docs for what the box needs).
    pub fn connect_box(
        address: SocketAddr,
        channel: &Path,
        artifacts: Artifacts,
    ) -> Result<Machine, String> {
        let shell = serial_shell(channel)?;
        let dir = artifacts.dir.clone();
        Ok(Machine {
            child: None,
            _tmp: None,
            console_log: dir.join("console.log"),
            dir,
            https: address,
            http: SocketAddr::new(address.ip(), 80),
            shell,
            panel: None,
            artifacts,
            started: Instant::now(),
            accel: "hardware",
        })
    }

    /// The console output so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_log).unwrap_or_default()
    }

    /// Waits for `needle` on the serial console.
    pub fn wait_console(&self, needle: &str, limit: Duration) -> Result<(), String> {
        wait_for(limit, Duration::from_millis(100), needle, || {
            self.console().contains(needle).then_some(())
        })
        .map_err(|e| format!("{e} on the serial console"))
    }

    /// Presses the machine's reset button (QEMU's monitor `system_reset`; `Console::Log`
    /// machines only).
    pub fn press_reset(&self) -> Result<(), String> {
        use std::io::Write as _;
        let path = self.dir.join("monitor.sock");
        let mut monitor = std::os::unix::net::UnixStream::connect(&path)
            .map_err(|e| format!("cannot reach QEMU's monitor at {}: {e}", path.display()))?;
        monitor
            .write_all(b"system_reset\n")
            .map_err(|e| format!("cannot send system_reset: {e}"))?;
        // The monitor reads the line before the connection closes.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// A reboot that hangs where a box's reset should happen (the kernel said "reboot:
    /// Restarting system" and no firmware followed within [`HUNG_RESET`]) gets the reset
    /// button, as a box's hardware watchdog would; said on standard error, once per reboot.
    /// Call it while waiting for a boot, with `since` kept across calls (and cleared when
    /// that boot came).
    pub fn reset_hung_reboot(&self, since: &mut Option<Instant>) {
        let console = self.console();
        let hung = console.trim_end().ends_with("reboot: Restarting system");
        match since {
            _ if !hung => *since = None,
            None => *since = Some(Instant::now()),
            Some(t) if t.elapsed() > HUNG_RESET => {
                eprintln!(
                    "hil: the guest asked for a reset {} s ago and the firmware never started; \
                     pressing the reset button",
                    t.elapsed().as_secs()
                );
                if let Err(e) = self.press_reset() {
                    eprintln!("hil: {e}");
                }
                // Not again for this reboot: the console moves on once the firmware runs.
                *since = Some(Instant::now() + Duration::from_secs(3600));
            }
            Some(_) => {}
        }
    }

    /// Whether QEMU still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Saves the console log, the journal and the panel picture into the artifacts.
    pub fn keep_artifacts(&mut self) {
        self.artifacts.copy(&self.console_log, "console.log");
        self.artifacts
            .copy(&self.dir.join("qemu.stderr"), "qemu.stderr");
        self.artifacts
            .copy(&self.dir.join("qemu.stdout"), "qemu.stdout");
        if let Ok(o) = self.shell.run_timeout(
            "journalctl -b --no-pager -o short-monotonic | tail -n 5000",
            Duration::from_secs(30),
        ) {
            self.artifacts.write("journal.txt", &o.text);
        }
        if let Ok(o) = self.shell.run_timeout(
            "systemctl --no-pager --all list-units 'lifeline*' 'rauc*'; rauc status --detailed 2>&1",
            Duration::from_secs(30),
        ) {
            self.artifacts.write("units.txt", &o.text);
        }
        if let Some(p) = &self.panel {
            let _ = p.save_png(&self.artifacts.path("panel.png"));
            self.artifacts
                .write("panel.txt", &p.snapshot().rows.join("\n"));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_artifacts();
            eprintln!(
                "hil: console log, journal and panel kept in {}",
                self.artifacts.dir.display()
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The pseudo-terminal QEMU made for the chardev `label` ("char device redirected to
/// /dev/pts/3 (label hil)" on its standard output).
pub fn pty_of(output: &str, label: &str) -> Option<PathBuf> {
    output.lines().find_map(|l| {
        let rest = l.split("char device redirected to ").nth(1)?;
        let (path, tail) = rest.split_once(' ')?;
        (tail.trim() == format!("(label {label})")).then(|| PathBuf::from(path))
    })
}

/// The command channel on a serial line (a box's ttyS2 on the host's adapter, or QEMU's
/// pseudo-terminal): 115200 baud, raw, no echo, no modem control.
pub fn serial_shell(device: &Path) -> Result<Shell, String> {
    let port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| format!("cannot open the command channel {}: {e}", device.display()))?;
    let stty = Command::new("stty")
        .arg("-F")
        .arg(device)
        .args(["115200", "raw", "-echo", "clocal"])
        .output()
        .map_err(|e| format!("cannot run stty: {e}"))?;
    if !stty.status.success() {
        return Err(format!(
            "stty on {} failed: {}",
            device.display(),
            String::from_utf8_lossy(&stty.stderr)
        ));
    }
    let reader = port.try_clone().map_err(|e| e.to_string())?;
    Ok(Shell::new(Box::new(reader), Box::new(port)))
}

fn crate_have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_from_qemu_output() {
        let out = "char device redirected to /dev/pts/7 (label panel)\n\
                   char device redirected to /dev/pts/9 (label hil)\n";
        assert_eq!(pty_of(out, "hil"), Some(PathBuf::from("/dev/pts/9")));
        assert_eq!(pty_of(out, "panel"), Some(PathBuf::from("/dev/pts/7")));
        assert_eq!(pty_of("", "hil"), None);
        assert_eq!(pty_of("char device redirected to", "hil"), None);
    }
}
