//! The command line: the daemon (`serve`, also the default) and the vendor tools (`issue`,
//! `verify`, `keygen`). Exit codes: 0 success, 1 failure (including a refused licence in
//! `verify`), 2 usage or configuration error.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use lifeline_license_api::{DBUS_ADDRESS_ENV, Edition, Licence, Model};
use time::{Date, OffsetDateTime};

use crate::env::{DEFAULT_DMI_SERIAL, DEFAULT_FACTORY_FILE, IdentitySources, Strings};
use crate::keys::{self, TrustedKeys};
use crate::licence_file::{self, Check};
use crate::service::{self, Bus, DEFAULT_DATA_DIR, DEFAULT_LEASE_TTL_SECS, DEFAULT_LICENCE_PATH};
use crate::{format_date, parse_date};

#[derive(Debug, Parser)]
#[command(
    name = "lifeline-license",
    version,
    about = "Lifeline licence manager: verifies the licence, counts seats, serves org.lifeline.License1",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the D-Bus service (the default when no command is given).
    Serve(ServeArgs),
    /// Vendor side: sign a licence for one appliance.
    Issue(IssueArgs),
    /// Check a licence file and print the verdict (exit 1 when refused).
    Verify(VerifyArgs),
    /// Make a signing key pair: KEYFILE (private, PKCS#8 PEM) and KEYFILE.pub.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// D-Bus address to serve on instead of the system bus (also $LIFELINE_DBUS_ADDRESS).
    #[arg(long, value_name = "ADDR")]
    pub bus_address: Option<String>,
    /// The licence file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_LICENCE_PATH)]
    pub licence: PathBuf,
    /// Directory for the seat lease file.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The factory data file (TOML with `serial` and `model`).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_FACTORY_FILE)]
    pub factory_file: PathBuf,
    /// Where to read the serial when the factory data has none.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_DMI_SERIAL, hide = true)]
    pub dmi_serial_file: PathBuf,
    /// Seconds a seat lease lasts unless renewed.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LEASE_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_ttl_secs: u64,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The vendor's private signing key (PKCS#8 PEM).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// The appliance serial number the licence is bound to.
    #[arg(long)]
    pub serial: String,
    /// b200, b300 or b400.
    #[arg(long)]
    pub model: Model,
    #[arg(long, default_value = "standard")]
    pub edition: Edition,
    /// Concurrent representative seats.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rep_seats: u32,
    /// Active jump clients (default by model: b200 1000, b300 5000, b400 10000).
    #[arg(long, value_name = "N")]
    pub jump_active: Option<u32>,
    /// Passive jump clients (default by model, as for --jump-active).
    #[arg(long, value_name = "N")]
    pub jump_passive: Option<u32>,
    /// Last valid day, YYYY-MM-DD (UTC).
    #[arg(long, value_parser = parse_date)]
    pub expires: Date,
    /// Last day of the maintenance contract, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub maintenance_until: Option<Date>,
    /// The customer's name.
    #[arg(long, default_value = "")]
    pub customer: String,
    /// Issue date (default: today, UTC).
    #[arg(long, value_parser = parse_date)]
    pub issued: Option<Date>,
    /// Where to write the licence file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The licence file.
    pub file: PathBuf,
    /// Check that the licence is for this serial.
    #[arg(long)]
    pub serial: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to KEYFILE.pub.
    #[arg(long, value_name = "KEYFILE")]
    pub out: PathBuf,
}

/// A command's failure, with its exit code.
#[derive(Debug)]
pub enum CliError {
    /// A person's mistake in flags or configuration: exit 2.
    Usage(anyhow::Error),
    /// Anything else: exit 1.
    Failure(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failure(_) => 1,
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            CliError::Usage(e) | CliError::Failure(e) => e,
        }
    }
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Run a parsed command line.
pub async fn run(cli: Cli, env: &dyn Strings) -> Result<(), CliError> {
    match cli.command {
        None => serve(cli.serve, env).await,
        Some(Command::Serve(args)) => serve(args, env).await,
        Some(Command::Issue(args)) => issue(&args),
        Some(Command::Verify(args)) => verify(&args),
        Some(Command::Keygen(args)) => keygen(&args.out),
    }
}

/// Resolve serve flags and environment into the daemon's configuration.
pub fn serve_config(args: ServeArgs, env: &dyn Strings) -> service::Config {
    let bus = match args.bus_address.or_else(|| env.get(DBUS_ADDRESS_ENV)) {
        Some(a) => Bus::Address(a),
        None => Bus::System,
    };
    service::Config {
        bus,
        licence_path: args.licence,
        data_dir: args.data_dir,
        identity: IdentitySources {
            factory_file: args.factory_file,
            dmi_serial: args.dmi_serial_file,
        },
        lease_ttl_secs: args.lease_ttl_secs,
        keys: TrustedKeys::built_in(),
    }
}

async fn serve(args: ServeArgs, env: &dyn Strings) -> Result<(), CliError> {
    let config = serve_config(args, env);
    if keys::TRUSTS_DEV_KEY {
        tracing::warn!("development build: licences signed with the development key are accepted");
    }
    service::run(config, shutdown_signal()).await.map_err(|e| {
        if e.is_config() {
            CliError::Usage(e.into())
        } else {
            CliError::Failure(e.into())
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn issue(args: &IssueArgs) -> Result<(), CliError> {
    let usage = |m: String| CliError::Usage(anyhow::anyhow!(m));
    if args.serial.trim().is_empty() {
        return Err(usage("--serial must not be empty".into()));
    }
    let issued = args.issued.unwrap_or_else(today);
    if args.expires < issued {
        return Err(usage(format!(
            "--expires {} is before the issue date {}",
            format_date(args.expires),
            format_date(issued)
        )));
    }
    if !args.force && args.out.exists() {
        return Err(usage(format!(
            "{} already exists; pass --force to overwrite it",
            args.out.display()
        )));
    }
    let key = keys::read_signing_key(&args.key).map_err(|e| CliError::Usage(e.into()))?;
    let licence = Licence {
        serial: args.serial.trim().to_owned(),
        model: args.model,
        edition: args.edition,
        rep_seats: args.rep_seats,
        jump_active_limit: args.jump_active.unwrap_or(args.model.default_jump_limit()),
        jump_passive_limit: args.jump_passive.unwrap_or(args.model.default_jump_limit()),
        issued,
        expires: Some(args.expires),
        maintenance_until: args.maintenance_until,
        customer: args.customer.clone(),
    };
    let text = licence_file::sign(&licence, &key);
    write_file(&args.out, &text).map_err(CliError::Failure)?;
    println!(
        "wrote {} signed with key {}: {}",
        args.out.display(),
        keys::key_id(&key.verifying_key()),
        describe(&licence)
    );
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// One line describing a licence.
pub fn describe(l: &Licence) -> String {
    let mut s = format!(
        "serial {}, model {}, edition {}, {} rep seats, {} active and {} passive jump clients, issued {}",
        l.serial,
        l.model,
        l.edition,
        l.rep_seats,
        l.jump_active_limit,
        l.jump_passive_limit,
        format_date(l.issued)
    );
    match l.expires {
        Some(d) => s.push_str(&format!(", expires {}", format_date(d))),
        None => s.push_str(", never expires"),
    }
    if let Some(d) = l.maintenance_until {
        s.push_str(&format!(", maintenance until {}", format_date(d)));
    }
    if !l.customer.is_empty() {
        s.push_str(&format!(", customer \"{}\"", l.customer));
    }
    s
}

fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            return Err(CliError::Usage(anyhow::anyhow!(
                "cannot read {}: {e}",
                args.file.display()
            )));
        }
    };
    let check = Check {
        serial: args.serial.as_deref(),
        today: today(),
    };
    match licence_file::verify_bytes(&bytes, &TrustedKeys::built_in(), check) {
        Ok(l) => {
            println!("VALID: {}", describe(&l));
            Ok(())
        }
        Err(e) => {
            println!("REFUSED: {e}");
            Err(CliError::Failure(anyhow::anyhow!(
                "the licence was refused"
            )))
        }
    }
}

fn keygen(out: &Path) -> Result<(), CliError> {
    let id = keys::keygen(out).map_err(|e| match e {
        keys::KeyFileError::Exists { .. } => CliError::Usage(e.into()),
        _ => CliError::Failure(e.into()),
    })?;
    println!(
        "wrote {} (private: keep it offline) and its .pub; key id {id}",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapStrings;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["lifeline-license", "--bus-address", "unix:path=/x"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.bus_address.as_deref(), Some("unix:path=/x"));
        let cli = Cli::try_parse_from([
            "lifeline-license",
            "issue",
            "--key",
            "k",
            "--serial",
            "S",
            "--model",
            "b300",
            "--expires",
            "2030-01-31",
            "--out",
            "o",
        ])
        .unwrap();
        let Some(Command::Issue(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.model, Model::B300);
        assert_eq!(a.edition, Edition::Standard);
        assert!(Cli::try_parse_from(["lifeline-license", "issue", "--model", "b900"]).is_err());
    }

    #[test]
    fn bus_address_from_env_when_no_flag() {
        let args = Cli::try_parse_from(["lifeline-license"]).unwrap().serve;
        let mut env = MapStrings::default();
        assert_eq!(serve_config(args.clone(), &env).bus, Bus::System);
        env.0.insert(DBUS_ADDRESS_ENV.into(), "unix:path=/e".into());
        assert_eq!(
            serve_config(args, &env).bus,
            Bus::Address("unix:path=/e".into())
        );
    }
}
