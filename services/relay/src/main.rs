//! `lifeline-relay`: see the library's documentation.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifeline_relay::config::{Config, Overrides};
use lifeline_relay::error_chain;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lifeline-relay",
    version,
    about = "Lifeline relay: portal, console, API and session broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Configuration file (default /etc/lifeline/relay.toml, optional).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Folder for the database, TLS material and keys.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// TLS listen address, e.g. 0.0.0.0:443 or 127.0.0.1:0.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Plain-HTTP redirect address, or "off".
    #[arg(long)]
    redirect_listen: Option<String>,
    /// Folder with the client builds (one sub-folder per os-arch).
    #[arg(long)]
    client_store: Option<PathBuf>,
    /// Host name for the certificate and the links handed to customers.
    #[arg(long)]
    host_name: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        /// admin, rep or appliance-admin.
        #[arg(long)]
        role: String,
        /// Full name shown to customers (defaults to the user name).
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from standard input (required: passwords never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

/// Every jump client holds a socket: take the open-file limit up to the hard limit (and the
/// hard limit up to what the kernel allows, when we may). The systemd unit sets
/// `LimitNOFILE` too; this covers starts outside it.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let want = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .min(1 << 20);
    if want > hard && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        tracing::info!(limit = want, "open-file limit raised");
        return;
    }
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(limit = hard, "open-file limit raised"),
            Err(e) => tracing::warn!(error = %e, soft, "cannot raise the open-file limit"),
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let a = cli.serve;
    let config = match Config::load(
        a.config.as_deref(),
        Overrides {
            listen: a.listen,
            redirect_listen: a.redirect_listen,
            data_dir: a.data_dir,
            client_store: a.client_store,
            host_name: a.host_name,
            dbus_address: std::env::var(lifeline_license_api::DBUS_ADDRESS_ENV).ok(),
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lifeline-relay: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, None | Some(Command::Serve)) {
        raise_fd_limit();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeline-relay: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None | Some(Command::Serve) => runtime
            .block_on(lifeline_relay::server::serve(config))
            .map_err(|e| (1u8, error_chain(&e))),
        Some(Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    display_name,
                    password_stdin: _,
                },
        }) => runtime.block_on(add_user(config, username, role, display_name)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("lifeline-relay: {message}");
            ExitCode::from(code)
        }
    }
}

async fn add_user(
    config: Config,
    username: String,
    role: String,
    display_name: Option<String>,
) -> Result<(), (u8, String)> {
    let mut password = String::new();
    std::io::stdin()
        .take(2048)
        .read_to_string(&mut password)
        .map_err(|e| {
            (
                1,
                format!("cannot read the password from standard input: {e}"),
            )
        })?;
    let password = password.trim_end_matches(['\n', '\r']);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        (
            1,
            format!("cannot create {}: {e}", config.data_dir.display()),
        )
    })?;
    let db = lifeline_relay::db::Db::open(&config.data_dir.join("relay.db"))
        .await
        .map_err(|e| (1, error_chain(&e)))?;
    let display = display_name.unwrap_or_else(|| username.clone());
    match lifeline_relay::accounts::create(&db, &username, &display, &role, password).await {
        Ok(_) => {
            db.audit(
                "cli",
                "local",
                "user.add",
                "ok",
                &format!("{username} ({role})"),
            )
            .await
            .map_err(|e| (1, error_chain(&e)))?;
            println!("created {role} account `{username}`");
            Ok(())
        }
        Err(lifeline_relay::accounts::AccountError::Db(e)) => Err((1, error_chain(&e))),
        Err(e) => Err((2, e.to_string())),
    }
}
