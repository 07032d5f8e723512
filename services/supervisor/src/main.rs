//! `lifeline-supervisor`: see the library's docs. Exit codes: 0 after SIGTERM/SIGINT, 2 for
//! usage or configuration errors, 1 for failures.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lifeline_supervisor::config::{self, Config, ModeName};
use lifeline_supervisor::health::HostPaths;
use lifeline_supervisor::service::{self, Bus, Options};
use lifeline_supervisor_api::DBUS_ADDRESS_ENV;

#[derive(Parser, Debug)]
#[command(
    name = "lifeline-supervisor",
    version,
    about = "Lifeline supervisor: service and host status, appliance actions (org.lifeline.Supervisor1)"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// D-Bus address to use instead of the system bus (appliance) or a private bus
    /// (development). Also $LIFELINE_DBUS_ADDRESS.
    #[arg(long, value_name = "ADDR")]
    bus_address: Option<String>,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "lifeline-supervisor: {}",
                lifeline_supervisor::error_chain(&e)
            );
            return ExitCode::from(2);
        }
    };
    let bus = match cli
        .bus_address
        .or_else(|| std::env::var(DBUS_ADDRESS_ENV).ok())
    {
        Some(a) => Bus::Address(a),
        None if config.mode == ModeName::Development => Bus::Private,
        None => Bus::System,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeline-supervisor: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        config,
        bus,
        host_paths: HostPaths::default(),
    };
    match runtime.block_on(service::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "lifeline-supervisor: {}",
                lifeline_supervisor::error_chain(&e)
            );
            ExitCode::from(1)
        }
    }
}
