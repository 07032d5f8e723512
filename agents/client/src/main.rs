//! `lifeline-agent`: the customer client. Thin: logging, a tiny command line, the ticket,
//! facts about this computer, then the window (see the library crate for the design).
//!
//! Exit codes: 0 normal, 1 the session failed (refused, connection lost, error), 2 usage or
//! ticket error; for a jump's session agent (`--jump-session`, started by the jump service),
//! 3 the user declined and 4 the user did not answer.

use std::path::PathBuf;
use std::process::ExitCode;

use lifeline_agent::env::Env;
use lifeline_agent::i18n::{Key, Lang, Texts};
use lifeline_agent::session::error_chain;
use lifeline_agent::{platform, ticket, ui};
use lifeline_proto::agent::AgentInfo;
use lifeline_proto::ticket::TicketKind;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: lifeline-agent [--ticket-file PATH] [--service-dir DIR] [--no-systemd] [--wake-port N] [--wake-address IP] [--button] [--version]\n       lifeline-agent jump run --dir DIR";

enum Cli {
    Run {
        ticket_file: Option<PathBuf>,
        install: InstallArgs,
        jump: Option<JumpSessionArgs>,
    },
    JumpRun {
        dir: PathBuf,
    },
    Version,
}

/// A jump's session agent (hidden arguments the jump service passes): `--jump-session`, and
/// `--jump-ask REP` to ask the logged-in user first.
#[derive(Default)]
struct JumpSessionArgs {
    ask_rep: Option<String>,
}

/// Options of a jump-client installer and a support button (ignored by other tickets).
#[derive(Default)]
struct InstallArgs {
    service_dir: Option<PathBuf>,
    no_systemd: bool,
    wake_port: Option<u16>,
    wake_address: Option<std::net::IpAddr>,
    /// A click on an installed support button (its desktop entry passes this).
    start_button: bool,
}

fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, String> {
    let mut ticket_file = None;
    let mut install = InstallArgs::default();
    let mut jump: Option<JumpSessionArgs> = None;
    let mut args = args.into_iter().peekable();
    if args.peek().and_then(|a| a.to_str()) == Some("jump") {
        args.next();
        if args.next().as_deref().and_then(|a| a.to_str()) != Some("run") {
            return Err("the jump command is `jump run --dir DIR`".into());
        }
        if args.next().as_deref().and_then(|a| a.to_str()) != Some("--dir") {
            return Err("`jump run` needs --dir DIR".into());
        }
        let dir = args.next().ok_or("--dir needs a folder")?;
        return Ok(Cli::JumpRun {
            dir: PathBuf::from(dir),
        });
    }
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--version" | "-V") => return Ok(Cli::Version),
            Some("--service-dir") => {
                let path = args.next().ok_or("--service-dir needs a folder")?;
                install.service_dir = Some(PathBuf::from(path));
            }
            Some("--no-systemd") => install.no_systemd = true,
            Some("--wake-port") => {
                let port = args.next().ok_or("--wake-port needs a port")?;
                let port = port.to_str().and_then(|p| p.parse::<u16>().ok());
                install.wake_port = Some(
                    port.filter(|&p| p > 0)
                        .ok_or("--wake-port needs a port (1-65535)")?,
                );
            }
            Some("--wake-address") => {
                let ip = args.next().ok_or("--wake-address needs an IP address")?;
                let ip = ip.to_str().and_then(|p| p.parse().ok());
                install.wake_address = Some(ip.ok_or("--wake-address needs an IP address")?);
            }
            Some("--button") => install.start_button = true,
            Some("--jump-session") => {
                jump.get_or_insert_default();
            }
            Some("--jump-ask") => {
                let rep = args.next().ok_or("--jump-ask needs a name")?;
                jump.get_or_insert_default().ask_rep = Some(rep.to_string_lossy().into_owned());
            }
            Some("--ticket-file") => {
                let path = args.next().ok_or("--ticket-file needs a path")?;
                ticket_file = Some(PathBuf::from(path));
            }
            Some(s) if s.starts_with("--ticket-file=") => {
                ticket_file = Some(PathBuf::from(&s["--ticket-file=".len()..]));
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Cli::Run {
        ticket_file,
        install,
        jump,
    })
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lifeline-net")
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("lifeline-agent: cannot start: {e}");
            None
        }
    }
}

/// `jump run --dir DIR`: the installed jump client's service.
#[cfg(target_os = "linux")]
fn jump_run(dir: &std::path::Path, env: &Env) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::from(1);
    };
    tracing::info!(
        "event=jump_start version={} dir={:?}",
        env!("CARGO_PKG_VERSION"),
        dir
    );
    match rt.block_on(lifeline_agent::jump::run(dir, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lifeline-agent: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// A `jump_install` ticket: register this computer and install the service.
#[cfg(target_os = "linux")]
fn jump_install(
    ticket: &lifeline_proto::ticket::TicketFile,
    env: &Env,
    args: InstallArgs,
) -> ExitCode {
    use lifeline_agent::jump::install::{InstallOptions, install};
    let Some(rt) = runtime() else {
        return ExitCode::from(1);
    };
    let opts = InstallOptions {
        service_dir: args.service_dir,
        no_systemd: args.no_systemd,
        wake_port: args.wake_port,
        wake_address: args.wake_address,
    };
    match rt.block_on(install(ticket, env, &opts)) {
        Ok(done) => {
            tracing::info!(
                "event=jump_installed client_id={} dir={:?}",
                done.client_id,
                done.dir
            );
            println!(
                "The jump client is installed in {} (client {}).",
                done.dir.display(),
                done.client_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("event=jump_install_failed error={:?}", error_chain(&e));
            eprintln!("lifeline-agent: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// A downloaded support button: install the desktop entry and say where it is.
#[cfg(target_os = "linux")]
fn button_install(ticket: &lifeline_proto::ticket::TicketFile, env: &Env) -> ExitCode {
    let lang = Lang::choose("", env);
    let texts = Texts::new(lang);
    let exe = std::env::current_exe().and_then(std::fs::read);
    let done = exe
        .map_err(lifeline_agent::button::ButtonError::OwnExe)
        .and_then(|exe| lifeline_agent::button::install(ticket, env, &exe, lang));
    match done {
        Ok(done) => {
            tracing::info!(
                "event=button_installed entry={:?} program={:?} desktop={:?}",
                done.entry,
                done.program,
                done.desktop_copy
            );
            let sentence = texts.fmt(Key::ButtonInstalled, &done.name);
            println!("{sentence}");
            if ui::display_available(env) {
                ui::show_notice(texts, texts.get(Key::ButtonInstalledTitle), &sentence, None);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(texts, env, "button_install_failed", &e),
    }
}

/// A click on an installed support button: the session ticket to run, or the exit code when
/// there is none (the button expired, or the box could not be reached).
#[cfg(target_os = "linux")]
fn button_click(
    button: &lifeline_proto::ticket::TicketFile,
    env: &Env,
) -> Result<lifeline_proto::ticket::TicketFile, ExitCode> {
    use lifeline_agent::button::{self, Answer};
    let lang = Lang::choose("", env);
    let texts = Texts::new(lang);
    let name = platform::customer_name("", &platform::current(env));
    let rt = runtime().ok_or(ExitCode::from(1))?;
    let answer = rt.block_on(button::request(button, env, &name, lang));
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match answer {
        Ok(Answer::Session(ticket)) => {
            tracing::info!("event=button_session site={:?}", ticket.site_url);
            Ok(ticket)
        }
        Ok(Answer::Expired) => {
            let portal = format!("{}/", button.site_url.trim_end_matches('/'));
            tracing::info!("event=button_expired portal={portal:?}");
            eprintln!("lifeline-agent: {}", texts.get(Key::ButtonExpired));
            if ui::display_available(env) {
                ui::show_notice(
                    texts,
                    texts.get(Key::ButtonExpiredTitle),
                    texts.get(Key::ButtonExpired),
                    Some(&portal),
                );
            }
            Err(ExitCode::from(3))
        }
        Err(e) => Err(fail(texts, env, "button_failed", &e)),
    }
}

/// Logs an error, says it on stderr and in a window when there is a display.
fn fail(texts: Texts, env: &Env, event: &str, e: &dyn std::error::Error) -> ExitCode {
    tracing::error!("event={event} error={:?}", error_chain(e));
    eprintln!("lifeline-agent: {}", error_chain(e));
    if ui::display_available(env) {
        ui::show_error(texts, &error_chain(e));
    }
    ExitCode::from(1)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(false)
        .init();

    let env = Env::from_process();
    // Started by `sudo` as its password program for "run as administrator" (see
    // lifeline_agent::tools::shell): ask the customer, answer on stdout.
    if std::env::var_os(lifeline_agent::tools::shell::ASKPASS_ENV).is_some() {
        return askpass(&env);
    }
    let (ticket_file, install, jump) = match parse_args(std::env::args_os().skip(1)) {
        Ok(Cli::Version) => {
            println!(
                "lifeline-agent {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                lifeline_proto::VERSION
            );
            return ExitCode::SUCCESS;
        }
        #[cfg(target_os = "linux")]
        Ok(Cli::JumpRun { dir }) => return jump_run(&dir, &env),
        #[cfg(not(target_os = "linux"))]
        Ok(Cli::JumpRun { .. }) => {
            eprintln!("lifeline-agent: jump clients run on Linux only in this version");
            return ExitCode::from(2);
        }
        Ok(Cli::Run {
            ticket_file,
            install,
            jump,
        }) => (ticket_file, install, jump),
        Err(e) => {
            eprintln!("lifeline-agent: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let ticket = match ticket_file {
        Some(path) => ticket::from_file(&path),
        None => ticket::from_current_exe(),
    };
    let ticket = match ticket {
        Ok(t) => t,
        Err(e) => {
            let texts = Texts::new(Lang::choose("", &env));
            tracing::error!("event=ticket_error error={:?}", error_chain(&e));
            eprintln!("lifeline-agent: {e}");
            if ui::display_available(&env) {
                ui::show_error(texts, &e.to_string());
            }
            return ExitCode::from(2);
        }
    };

    let ticket = match ticket.kind {
        TicketKind::OneShot => ticket,
        #[cfg(target_os = "linux")]
        TicketKind::JumpInstall => return jump_install(&ticket, &env, install),
        #[cfg(target_os = "linux")]
        TicketKind::Button if install.start_button => match button_click(&ticket, &env) {
            Ok(session) => session,
            Err(code) => return code,
        },
        #[cfg(target_os = "linux")]
        TicketKind::Button => return button_install(&ticket, &env),
        #[cfg(not(target_os = "linux"))]
        _ => {
            eprintln!("lifeline-agent: this kind of program is not supported here yet");
            return ExitCode::from(2);
        }
    };

    let lang = Lang::choose(&ticket.language, &env);
    let facts = platform::current(&env);
    let info = AgentInfo {
        customer_name: platform::customer_name(&ticket.customer_name, &facts),
        computer: facts.computer.clone(),
        platform: facts.platform.clone(),
        language: lang.tag().to_owned(),
    };
    tracing::info!(
        "event=start version={} site={:?} computer={:?} platform={:?} language={}",
        env!("CARGO_PKG_VERSION"),
        ticket.site_url,
        info.computer,
        info.platform,
        lang.tag()
    );

    if !ui::display_available(&env) {
        eprintln!("lifeline-agent: no display found: run this program on a graphical desktop");
        return ExitCode::from(1);
    }

    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    let mut config = lifeline_agent::session::SessionConfig {
        desktop: platform::desktop(&env),
        ..Default::default()
    };
    if let Some(jump) = jump {
        // A jump: the box allowed it unattended, or the user allows it now; either way the
        // representative sees and controls the screen without a further question.
        if let Some(rep) = jump.ask_rep {
            use lifeline_agent::ui::JumpAnswer;
            let answer = ui::ask_jump(
                Texts::new(lang),
                &rep,
                &ticket.site_name,
                std::time::Duration::from_secs(60),
            );
            tracing::info!("event=jump_answer answer={answer:?}");
            match answer {
                JumpAnswer::Allowed => {}
                JumpAnswer::Declined => return ExitCode::from(3),
                JumpAnswer::NoAnswer => return ExitCode::from(4),
            }
        }
        use lifeline_proto::remote::Permission;
        config.granted_without_asking = vec![Permission::View, Permission::Control];
    }
    let outcome = ui::run(&runtime, ticket, info, Texts::new(lang), config);
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        ui::Outcome::Normal => ExitCode::SUCCESS,
        ui::Outcome::Failed => ExitCode::from(1),
    }
}

/// The askpass mode: the password on stdout and exit 0, or exit 1 when the customer
/// cancelled (which the shell tool records, so the technician is told they declined).
fn askpass(env: &Env) -> ExitCode {
    let lang = std::env::var(lifeline_agent::tools::shell::ASKPASS_LANG_ENV).unwrap_or_default();
    let texts = Texts::new(Lang::choose(&lang, env));
    match ui::ask_password(texts) {
        Some(password) => {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{password}");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        None => {
            if let Some(path) = std::env::var_os(lifeline_agent::tools::shell::ASKPASS_RESULT_ENV) {
                let _ = std::fs::write(path, "cancelled");
            }
            ExitCode::from(1)
        }
    }
}
