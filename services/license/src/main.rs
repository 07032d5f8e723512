//! `lifeline-license`: see the library's docs. Maps errors to exit codes in one place.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use lifeline_license::cli::{Cli, run};
use lifeline_license::env::{ProcessEnv, Strings};

fn main() -> ExitCode {
    let env = ProcessEnv;
    let filter = env.get("RUST_LOG").unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeline-license: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, &env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lifeline-license: {:#}", e.error());
            ExitCode::from(e.exit_code())
        }
    }
}
