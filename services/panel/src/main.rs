//! `lifeline-panel`: the front-panel service (thin: the logic is in the library).
//!
//! `lifeline-panel [--config FILE] [--device PATH] [--baud N] [--model M] [--idle-dim-seconds N]`
//! runs the service; `lifeline-panel emulate --model M [--link-path PATH] [--png FILE]` runs
//! a panel emulator on a pty for development (key names typed on stdin are pressed).
//! Exit codes: 0 after SIGTERM/SIGINT, 2 for usage or configuration errors, 1 for failures.
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lifeline_panel::bus::{Bus, Mirror, SupervisorSource};
use lifeline_panel::config::{self, Config, Overrides};
use lifeline_panel::driver::Model;
use lifeline_panel::emulator::Emulator;
use lifeline_panel::link::Key;
use lifeline_panel::screens::{self, Screen};
use lifeline_panel::service::{self, Hooks, Options, error_chain};

#[derive(Parser, Debug)]
#[command(
    name = "lifeline-panel",
    version,
    about = "Lifeline front-panel service"
)]
struct Cli {
    /// Configuration file (default /etc/lifeline/panel.toml; a missing default file is fine).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Serial device of the panel (overrides the file).
    #[arg(long)]
    device: Option<PathBuf>,
    /// Line speed (overrides the file).
    #[arg(long)]
    baud: Option<u32>,
    /// Panel model: char-20x4, graphic-128x64 or graphic-244x68 (overrides the file).
    #[arg(long)]
    model: Option<Model>,
    /// Seconds before the backlight dims, 0 = never (overrides the file).
    #[arg(long)]
    idle_dim_seconds: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a panel emulator on a pseudo-terminal (development).
    Emulate {
        /// Model to emulate.
        #[arg(long, default_value = "graphic-244x68")]
        model: Model,
        /// Also create this symlink to the emulator's device.
        #[arg(long)]
        link_path: Option<PathBuf>,
        /// Keep this PNG updated with the panel's picture (twice a second).
        #[arg(long)]
        png: Option<PathBuf>,
    },
}

enum Failure {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Emulate {
            model,
            ref link_path,
            ref png,
        }) => emulate(model, link_path.clone(), png.clone()),
        None => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            tracing::error!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(msg)) => {
            tracing::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let (path, required) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let cfg = Config::load(&path, required)
        .map_err(|e| Failure::Usage(error_chain(&e)))?
        .with(&Overrides {
            device: cli.device.clone(),
            baud: cli.baud,
            model: cli.model,
            idle_dim_seconds: cli.idle_dim_seconds,
        });
    tracing::info!(config = %path.display(), device = %cfg.device.display(), model = %cfg.model, "starting");
    let stop = service::stop_on_signals()
        .map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;

    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let mut hooks = Hooks {
        on_ready: Box::new(|| {
            if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
                tracing::debug!("sd_notify READY failed: {e}");
            }
        }),
        on_tick: Box::new(move || {
            if watchdog {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }),
        ..Hooks::default()
    };
    let opts = Options::new(cfg.device.clone(), cfg.baud, cfg.model, cfg.idle_dim());
    // Status from the supervisor (change signal), actions to it, the web mirror.
    let mut source = SupervisorSource::default();
    let mirror = std::sync::Arc::new(Mirror::default());
    let address = std::env::var(lifeline_supervisor_api::DBUS_ADDRESS_ENV).ok();
    let bus = Bus::start(address, source.clone(), mirror.clone(), stop.clone())
        .map_err(|e| Failure::Runtime(format!("cannot start the D-Bus thread: {e}")))?;
    hooks.on_action = Box::new(move |action| {
        tracing::info!(?action, "panel action requested");
        bus.send(action);
    });
    let keys = mirror.clone();
    hooks.next_key = Box::new(move || keys.next_key());
    let model = cfg.model;
    hooks.on_screen = Box::new(move |screen: &Screen| {
        let fb = match model.pixels() {
            Some((w, h)) => screens::render_bitmap(screen, w, h).scaled(2),
            None => screens::render_text_rows(&screens::render_text(screen)).scaled(2),
        };
        match fb.to_png() {
            Ok(png) => mirror.set_picture(png),
            Err(e) => tracing::warn!("cannot render the mirror picture: {e}"),
        }
    });
    service::run(&opts, &mut source, &mut hooks, &stop);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopped");
    Ok(())
}

fn emulate(model: Model, link: Option<PathBuf>, png: Option<PathBuf>) -> Result<(), Failure> {
    let emu = match &link {
        Some(l) => Emulator::start_linked(model, l),
        None => Emulator::start(model),
    }
    .map_err(|e| Failure::Runtime(error_chain(&e)))?;
    println!("{}", emu.path().display());
    if let Some(l) = &link {
        println!("{} -> {}", l.display(), emu.path().display());
    }
    eprintln!("type up, down, left, right, enter or exit (one per line) to press a key");
    let stop = service::stop_on_signals()
        .map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while !stop.load(Ordering::SeqCst) {
        while let Ok(line) = rx.try_recv() {
            match serde_plain_key(line.trim()) {
                Some(k) => emu.press(k),
                None => eprintln!("unknown key {:?}", line.trim()),
            }
        }
        if let Some(Err(e)) = png.as_ref().map(|p| emu.save_png(p)) {
            tracing::warn!("{}", error_chain(&e));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn serde_plain_key(s: &str) -> Option<Key> {
    Key::ALL
        .into_iter()
        .find(|k| format!("{k:?}").eq_ignore_ascii_case(s))
}
