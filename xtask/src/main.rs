//! `cargo xtask`: the project's only entry points.
//!
//! * `cargo xtask run`   — installs what is missing, builds, and runs the whole appliance in
//!   development mode through the supervisor (private D-Bus bus; licence manager, relay,
//!   front-panel service and its emulator as children) on https://localhost:8443
//!   (http://localhost:8080 redirects), data in `./var/dev`; prints the URL and the one-time
//!   setup secret; Ctrl-C stops it cleanly.
//! * `cargo xtask test`  — installs what is missing, then fmt check, clippy, and every test
//!   (unit, integration, end-to-end with Xvfb, browser with Chromium).
//! * `cargo xtask bench session [--sessions N]` — concurrent one-shot session set-ups.
//! * `cargo xtask bench jump [--clients N] [--idle-s S]` — N active jump clients held against
//!   the relay: memory per client, idle CPU, all back after a restart
//!   (`services/relay/benches/jump.rs`).
//! * `cargo xtask bench screen [--secs N] [--only a,b] [--no-vnc]` — our screen stream (agent → relay → console) on
//!   scripted scenarios against x11vnc serving a Tight VNC viewer
//!   (`agents/client/benches/screen.rs`; about 8 minutes).
//! * `cargo xtask bench transfer [--size-mb N]` — file transfer through the relay on loopback
//!   (1 GB each way) and screen frame latency meanwhile (`agents/client/benches/transfer.rs`).
//! * `cargo xtask image --model b200|b300` — the firmware image and its RAUC bundle
//!   (`image.rs`); `cargo xtask qemu` boots it (`qemu.rs`); `cargo xtask yocto [--check]`
//!   keeps the Yocto layer's crates.inc current and lints the layer (`yocto.rs`).
//!
//! Missing Debian packages are installed with apt-get (as root, or through sudo), CMake
//! (for the client's bundled toolkit) with pip, and browser-test packages with `npm ci`
//! from the committed lockfile.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod image;
mod licences;
mod qemu;
mod yocto;

/// Needed to build the workspace (the client's window toolkit builds from source).
const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libx11-dev",
    "libxext-dev",
    "libxft-dev",
    "libxinerama-dev",
    "libxcursor-dev",
    "libxrender-dev",
    "libxfixes-dev",
    "libpango1.0-dev",
    "libcairo2-dev",
    "libfontconfig1-dev",
    "libglib2.0-dev",
    "fonts-dejavu-core",
    // The client's JPEG encoder (bundled libjpeg-turbo with its SIMD code).
    "nasm",
];

/// Needed by `bench screen`: the scenarios' X clients and the VNC peer.
const SCREEN_BENCH_PACKAGES: &[&str] = &[
    "xvfb",
    "xterm",
    "x11-xserver-utils",
    "imagemagick",
    "less",
    "x11vnc",
    "xtightvncviewer",
];

/// Needed by the tests: a real X server, input driving, screenshots, a browser.
const TEST_PACKAGES: &[&str] = &[
    "xvfb",
    "xdotool",
    // xev (records input), xsetroot and xrandr (monitors), setxkbmap (layouts)
    "x11-utils",
    "x11-xserver-utils",
    "x11-xkb-utils",
    "xclip",
    "xterm",
    "imagemagick",
    "chromium",
    "dbus",
    // ss -K cuts a transfer's TCP connection in the file-transfer test
    "iproute2",
    // the shell test runs `top` (procps) on the client's terminal; `setsid -c` (util-linux)
    // gives the client's shells their controlling terminal
    "procps",
    "util-linux",
    // "run as administrator" for a client that is not root goes through sudo (the shell test
    // makes a user with a sudoers entry for it)
    "sudo",
    // the jump-seat test gives a user's Xvfb a cookie file (xauth, only recommended by xvfb)
    "xauth",
];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("deps") => ensure_deps(true),
        Some("licences") => licences::check(),
        Some("image") => image::image(&args[1..]),
        Some("qemu") => qemu::qemu(&args[1..]),
        Some("yocto") => yocto::yocto(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  run                      run the appliance in development mode\n  \
                 test [FILTER...]         fmt, clippy and every test (filters go to nextest)\n  \
                 bench session [--sessions N]\n  \
                 bench jump [--clients N] [--idle-s S]  active jump clients held, idle, restarted\n  \
                 bench screen [--secs N] [--only a,b] [--no-vnc]  screen stream vs x11vnc/Tight\n  \
                 bench transfer [--size-mb N]  file transfer throughput and screen latency meanwhile\n  \
                 image --model b200|b300  build the firmware image and its RAUC bundle\n  \
                 qemu [--model M] [--fresh]  boot the image in QEMU (portal on https://localhost:8443)\n  \
                 yocto [--check]          regenerate the layer's crates.inc (--check: lint the layer)\n  \
                 licences                 check every dependency's licence against the allow-list\n  \
                 deps                     install build and test dependencies only"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn step(what: &str) {
    eprintln!("\x1b[1m==> {what}\x1b[0m");
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(mut cmd: Command, what: &str) -> Result {
    let s = cmd
        .status()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({s})"))
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn missing_packages(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

fn apt_install(pkgs: &[&str]) -> Result {
    let missing = missing_packages(pkgs);
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        update.arg("apt-get");
    }
    update.args(["update", "-q"]);
    status(update, "apt-get update")?;
    let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        install.arg("apt-get");
    }
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    status(install, "apt-get install")
}

/// CMake 3.28 or newer (Debian 12 has 3.25), needed by the client's toolkit build.
fn ensure_cmake() -> Result {
    let ok = Command::new("cmake")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let v = String::from_utf8_lossy(&o.stdout).to_string();
            let ver = v.split_whitespace().nth(2)?.to_string();
            let mut it = ver.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
            Some((it.next()?, it.next()?))
        })
        .is_some_and(|(maj, min)| (maj, min) >= (3, 28));
    if ok {
        return Ok(());
    }
    step("installing CMake >= 3.28 with pip");
    let pip = if have("pip3") { "pip3" } else { "pip" };
    let mut c = Command::new(pip);
    c.args(["install", "-q", "cmake>=3.28"]);
    status(c, "pip install cmake")?;
    if have("pyenv") {
        let _ = Command::new("pyenv").arg("rehash").status();
    }
    Ok(())
}

fn ensure_deps(for_tests: bool) -> Result {
    apt_install(BUILD_PACKAGES)?;
    ensure_cmake()?;
    if for_tests {
        apt_install(TEST_PACKAGES)?;
        apt_install(image::IMAGE_PACKAGES)?;
        // Machines of this kind bring Node.js with npm; Debian's packages only if absent.
        if !have("node") || !have("npm") {
            apt_install(&["nodejs", "npm"])?;
        }
        let browser = root().join("tests/browser");
        if !browser.join("node_modules/playwright-core").is_dir() {
            step("installing browser-test packages (npm ci)");
            let mut c = Command::new("npm");
            c.current_dir(&browser)
                .args(["ci", "--no-audit", "--no-fund"]);
            status(c, "npm ci")?;
        }
    }
    Ok(())
}

fn build(release: bool, packages: &[&str]) -> Result {
    let mut c = cargo();
    c.args(["build", "--locked"]);
    if release {
        c.arg("--release");
    }
    for p in packages {
        c.args(["-p", p]);
    }
    status(c, "cargo build")
}

/// Waits for the relay to write its address file (while `child`, the supervisor, runs).
fn wait_for_file(path: &Path, child: &mut std::process::Child, limit: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.contains("https=")
        {
            return Ok(s);
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("the appliance exited during start-up ({st})"));
        }
        if start.elapsed() > limit {
            return Err(format!("the relay did not start within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// TOML string literal for a path.
fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn run() -> Result {
    ensure_deps(false)?;
    step("building the appliance services and the client (release)");
    build(
        true,
        &[
            "lifeline-relay",
            "lifeline-agent",
            "lifeline-license",
            "lifeline-supervisor",
            "lifeline-panel",
        ],
    )?;
    let root = root();
    let bin = |name: &str| root.join("target/release").join(name);
    let var = root.join("var/dev");
    let data = var.join("data");
    let store = var.join("clients/linux-x86_64");
    let state = var.join("supervisor");
    for dir in [&store, &state, &var.join("license")] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::copy(bin("lifeline-agent"), store.join("lifeline-agent"))
        .map_err(|e| format!("cannot copy the client into the store: {e}"))?;
    let _ = std::fs::remove_file(data.join("relay.addr"));
    let factory = var.join("factory.toml");
    if !factory.exists() {
        std::fs::write(&factory, "serial = \"DEV-0001\"\nmodel = \"b200\"\n")
            .map_err(|e| format!("cannot write {}: {e}", factory.display()))?;
    }
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let tty = state.join("panel-tty");
    let config = format!(
        "# Written by `cargo xtask run`: the whole appliance in development mode.\n\
         mode = \"development\"\nstate_dir = {state}\ndata_path = {var}\n\n\
         [[service]]\nname = \"license\"\ncommand = {license}\n\
         args = [\"serve\", \"--licence\", {licence}, \"--data-dir\", {licdir}, \"--factory-file\", {factory}, \"--dmi-serial-file\", {nodmi}]\n\
         env = {{ RUST_LOG = {log:?} }}\n\n\
         [[service]]\nname = \"relay\"\ncommand = {relay}\n\
         args = [\"--data-dir\", {data}, \"--client-store\", {clients}, \"--listen\", \"127.0.0.1:8443\", \"--redirect-listen\", \"127.0.0.1:8080\", \"--host-name\", \"localhost\"]\n\
         env = {{ RUST_LOG = {log:?} }}\n\n\
         [[service]]\nname = \"panel-emulator\"\ncommand = {panel}\n\
         args = [\"emulate\", \"--model\", \"graphic-244x68\", \"--link-path\", {tty}]\n\
         ready = \"started\"\noptional = true\n\n\
         [[service]]\nname = \"panel\"\ncommand = {panel}\n\
         args = [\"--device\", {tty}, \"--model\", \"graphic-244x68\"]\n\
         env = {{ RUST_LOG = {log:?} }}\n",
        state = toml_path(&state),
        var = toml_path(&var),
        license = toml_path(&bin("lifeline-license")),
        licence = toml_path(&var.join("license/licence.json")),
        licdir = toml_path(&var.join("license")),
        factory = toml_path(&factory),
        nodmi = toml_path(&var.join("no-dmi")),
        relay = toml_path(&bin("lifeline-relay")),
        data = toml_path(&data),
        clients = toml_path(&var.join("clients")),
        panel = toml_path(&bin("lifeline-panel")),
        tty = toml_path(&tty),
    );
    let config_path = var.join("supervisor.toml");
    std::fs::write(&config_path, config)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;

    // Ctrl-C reaches the supervisor too (same process group); it stops the services in
    // order and exits; we only wait for it.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    }
    step("starting the appliance (supervisor, licence manager, relay, front panel emulator)");
    let mut child = Command::new(bin("lifeline-supervisor"))
        .arg("--config")
        .arg(&config_path)
        .env_remove("LIFELINE_DBUS_ADDRESS")
        .env("RUST_LOG", &log)
        .spawn()
        .map_err(|e| format!("cannot start the supervisor: {e}"))?;
    let addr = wait_for_file(
        &data.join("relay.addr"),
        &mut child,
        Duration::from_secs(60),
    )?;
    let pin = addr
        .lines()
        .find_map(|l| l.strip_prefix("pin="))
        .unwrap_or("");
    eprintln!();
    eprintln!("  Lifeline is running (development mode)");
    eprintln!("  Portal:      https://localhost:8443/");
    eprintln!("  Console:     https://localhost:8443/console");
    eprintln!(
        "  Appliance:   https://localhost:8443/appliance (status and the front panel's picture)"
    );
    eprintln!("  HTTP:        http://localhost:8080/ (redirects)");
    eprintln!("  Certificate: self-signed, SHA-256 {pin}");
    eprintln!(
        "  Licence:     evaluation (one representative) unless var/dev/license/licence.json holds one"
    );
    match std::fs::read_to_string(data.join("setup-secret")) {
        Ok(secret) => {
            eprintln!(
                "  First start: open https://localhost:8443/setup and enter the one-time setup secret:"
            );
            eprintln!();
            eprintln!("      {}", secret.trim());
        }
        Err(_) => eprintln!("  Log in at https://localhost:8443/login with an existing account."),
    }
    eprintln!();
    eprintln!(
        "  An appliance administrator: target/release/lifeline-relay user add --data-dir {} \\\n      --username ADMIN --role appliance-admin --password-stdin",
        data.display()
    );
    eprintln!("  Data in {}. Press Ctrl-C to stop.", var.display());
    eprintln!();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return if interrupted.load(Ordering::SeqCst) || st.success() {
                eprintln!("stopped.");
                Ok(())
            } else {
                Err(format!("the supervisor stopped unexpectedly ({st})"))
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn test(filters: &[String]) -> Result {
    let start = Instant::now();
    ensure_deps(true)?;
    step("rustfmt --check");
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    status(c, "cargo fmt --check (run `cargo fmt --all` to fix)")?;
    step("clippy -D warnings");
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    status(c, "cargo clippy")?;
    licences::check()?;
    yocto::check()?;
    step("firmware image b200 (the image tests boot it)");
    image::image(&["--model".into(), "b200".into(), "--if-stale".into()])?;
    // The test build also builds every binary the end-to-end tests run (each package with
    // integration tests gets its binaries built, with the same features as its tests; a
    // separate `cargo build --bins` would compile them a second time with other features).
    step("tests");
    let mut c = cargo();
    if have("cargo-nextest") {
        c.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
    } else {
        c.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
    }
    c.args(filters);
    c.env("LIFELINE_TEST_ARTIFACTS", root().join("target/artifacts"));
    status(c, "tests")?;
    eprintln!("all checks passed in {:.0?}", start.elapsed());
    Ok(())
}

fn bench(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some(name @ ("session" | "jump")) => {
            step(&format!("bench {name}: building the relay and its load generator (release)"));
            // The benchmark runs the licence manager beside the relay with a licence signed by
            // the development key (seats, jump clients), which only a debug build trusts.
            build(false, &["lifeline-license"])?;
            if name == "jump" {
                // `jump_to_first_frame_ms` runs the real agent beside the relay.
                build(true, &["lifeline-agent"])?;
            }
            let mut c = cargo();
            c.args([
                "bench",
                "--locked",
                "-p",
                "lifeline-relay",
                "--bench",
                name,
                "--",
            ]);
            c.args(&args[1..]);
            c.env(
                "LIFELINE_LICENSE_BIN",
                root().join("target/debug/lifeline-license"),
            );
            c.stdout(Stdio::inherit());
            status(c, &format!("bench {name}"))
        }
        Some("screen") => {
            ensure_deps(false)?;
            apt_install(SCREEN_BENCH_PACKAGES)?;
            step("building the relay (release)");
            build(true, &["lifeline-relay"])?;
            step("screen benchmark: building it (release), then the scenarios, ours and VNC's");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            let mut c = cargo();
            c.args([
                "bench",
                "--locked",
                "-p",
                "lifeline-agent",
                "--bench",
                "screen",
                "--",
            ]);
            c.args(&args[1..]);
            c.env("LIFELINE_RELAY_BIN", target.join("release/lifeline-relay"));
            c.stdout(Stdio::inherit());
            status(c, "bench screen")
        }
        Some("transfer") => {
            ensure_deps(false)?;
            apt_install(SCREEN_BENCH_PACKAGES)?;
            step("building the relay (release)");
            build(true, &["lifeline-relay"])?;
            step("transfer benchmark: building it (release), then 1 GB each way through the relay");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            let mut c = cargo();
            c.args([
                "bench",
                "--locked",
                "-p",
                "lifeline-agent",
                "--bench",
                "transfer",
                "--",
            ]);
            c.args(&args[1..]);
            c.env("LIFELINE_RELAY_BIN", target.join("release/lifeline-relay"));
            c.stdout(Stdio::inherit());
            status(c, "bench transfer")
        }
        _ => Err(
            "usage: cargo xtask bench session [--sessions N]\n       cargo xtask bench jump [--clients N] [--idle-s S] [--addresses A]\n       cargo xtask bench screen [--secs N] [--only SCENARIO,...] [--no-vnc] [--samples N] [--keep]\n       cargo xtask bench transfer [--size-mb N] [--samples N] [--keep]"
                .into(),
        ),
    }
}
