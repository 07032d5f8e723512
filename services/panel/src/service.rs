//! The service loop: connect to the panel, show status, run the menu, reconnect.
//!
//! # Design
//!
//! [`run`] loops until its stop flag is set. It opens the serial device; while that fails
//! (absent, unplugged) it waits [`Options::retry_every`] and tries again, logging the first
//! failure and then at most once a minute. Once open, a session shows the boot screen (first
//! session only), then whatever the [`Menu`] says for the current status from the
//! [`StatusSource`] ("starting" while it has none), polls keys, drives the menu and the
//! backlight policy, and pings the module when idle so a silent module is noticed. Any link
//! failure ends the session; the loop then reconnects. Actions the menu emits go to
//! [`Hooks::on_action`]; an Identify also blinks the backlight here.
//!
//! # Limits
//!
//! - Status is read from the source on every turn (about 20 times a second); the D-Bus source
//!   ([`crate::bus::SupervisorSource`]) is a cell its thread fills from the supervisor's
//!   change signal, so this costs a lock, not a call.
//! - Key presses while the panel is disconnected are lost (they never reach us).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::driver::{self, DriverError, Model};
use crate::link;
use crate::menu::{Action, Backlight, Menu};
use crate::screens::Screen;
use crate::status::{Status, StatusSource};

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub device: PathBuf,
    pub baud: u32,
    pub model: Model,
    pub idle_dim: Duration,
    /// Wait between attempts to open an absent device.
    pub retry_every: Duration,
    /// How long the boot screen stays up on the first connection.
    pub boot_hold: Duration,
    /// Ping the module after this long without traffic.
    pub ping_every: Duration,
    /// Return from the menu to the status view after this long without a key.
    pub menu_timeout: Duration,
    /// Shown on the boot screen.
    pub version: String,
}

impl Options {
    /// Options with the service's defaults for timings.
    pub fn new(device: PathBuf, baud: u32, model: Model, idle_dim: Duration) -> Self {
        Options {
            device,
            baud,
            model,
            idle_dim,
            retry_every: Duration::from_secs(1),
            boot_hold: Duration::from_secs(1),
            ping_every: Duration::from_secs(5),
            menu_timeout: Duration::from_secs(120),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Callbacks into the outside world.
pub struct Hooks {
    /// Called once, after the device was first opened or the first wait for it began.
    pub on_ready: Box<dyn FnMut() + Send>,
    /// Called for every confirmed action.
    pub on_action: Box<dyn FnMut(Action) + Send>,
    /// Called on every turn of the loop (watchdog).
    pub on_tick: Box<dyn FnMut() + Send>,
    /// Called after each connection is made (tests count reconnections).
    pub on_connect: Box<dyn FnMut() + Send>,
    /// Keys pressed elsewhere (the web mirror), taken as if pressed on the keypad.
    pub next_key: Box<dyn FnMut() -> Option<crate::link::Key> + Send>,
    /// Called with every screen the panel shows (the web mirror renders it).
    pub on_screen: Box<dyn FnMut(&Screen) + Send>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            on_ready: Box::new(|| {}),
            on_action: Box::new(|action| tracing::info!(?action, "panel action requested")),
            on_tick: Box::new(|| {}),
            on_connect: Box::new(|| {}),
            next_key: Box::new(|| None),
            on_screen: Box::new(|_| {}),
        }
    }
}

const LOG_EVERY: Duration = Duration::from_secs(60);
const KEY_POLL: Duration = Duration::from_millis(50);

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20).min(total));
    }
}

/// Run until `stop` is set. See the module docs.
pub fn run(opts: &Options, source: &mut dyn StatusSource, hooks: &mut Hooks, stop: &AtomicBool) {
    let mut ready = false;
    let mut last_log: Option<Instant> = None;
    let mut first = true;
    let mut menu = Menu::new();
    while !stop.load(Ordering::SeqCst) {
        (hooks.on_tick)();
        let port = match link::open_serial(&opts.device, opts.baud) {
            Ok(p) => p,
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(
                        error = %error_chain(&e),
                        "panel not available; retrying quietly"
                    );
                    last_log = Some(Instant::now());
                }
                if !ready {
                    ready = true;
                    (hooks.on_ready)();
                }
                sleep_unless_stopped(stop, opts.retry_every);
                continue;
            }
        };
        tracing::info!(device = %opts.device.display(), model = %opts.model, "panel connected");
        last_log = None;
        if !ready {
            ready = true;
            (hooks.on_ready)();
        }
        (hooks.on_connect)();
        let mut display = driver::open(opts.model, port);
        match session(
            opts,
            display.as_mut(),
            source,
            hooks,
            stop,
            &mut menu,
            first,
        ) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "panel connection lost; reconnecting");
                sleep_unless_stopped(stop, opts.retry_every.min(Duration::from_millis(200)));
            }
        }
        first = false;
    }
}

fn session(
    opts: &Options,
    display: &mut (dyn driver::Display + Send),
    source: &mut dyn StatusSource,
    hooks: &mut Hooks,
    stop: &AtomicBool,
    menu: &mut Menu,
    first: bool,
) -> Result<(), DriverError> {
    display.init()?;
    display.set_backlight(crate::menu::FULL)?;
    let mut level = crate::menu::FULL;
    if first {
        let boot = Screen::Boot {
            version: opts.version.clone(),
        };
        display.show(&boot)?;
        (hooks.on_screen)(&boot);
        sleep_unless_stopped(stop, opts.boot_hold);
    }
    let now = Instant::now();
    let mut backlight = Backlight::new(opts.idle_dim, now);
    let mut last_status: Option<Option<Status>> = None;
    let mut last_screen: Option<Screen> = None;
    let mut last_key = now;
    let mut last_traffic = now;
    while !stop.load(Ordering::SeqCst) {
        (hooks.on_tick)();
        let status = source.current();
        let now = Instant::now();
        if last_status.as_ref() != Some(&status) {
            backlight.status(status.as_ref(), now);
            last_status = Some(status.clone());
        }
        let mut pressed: Vec<crate::link::Key> = display
            .poll_keys(KEY_POLL)?
            .into_iter()
            .filter(|ev| ev.pressed)
            .map(|ev| ev.key)
            .collect();
        while let Some(k) = (hooks.next_key)() {
            pressed.push(k);
        }
        for key in pressed {
            let now = Instant::now();
            backlight.key(now);
            last_key = now;
            if let Some(action) = menu.on_key(key, status.as_ref()) {
                if action == Action::Identify {
                    backlight.identify(now);
                }
                (hooks.on_action)(action);
            }
        }
        let now = Instant::now();
        if !menu.at_status() && now.duration_since(last_key) >= opts.menu_timeout {
            menu.reset();
        }
        let screen = menu.screen(status.as_ref());
        if last_screen.as_ref() != Some(&screen) {
            display.show(&screen)?;
            (hooks.on_screen)(&screen);
            last_screen = Some(screen);
            last_traffic = now;
        }
        let want = backlight.level(now);
        if want != level {
            display.set_backlight(want)?;
            level = want;
            last_traffic = now;
        }
        if now.duration_since(last_traffic) >= opts.ping_every {
            display.ping()?;
            last_traffic = now;
        }
    }
    Ok(())
}

/// The error and its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A stop flag that SIGTERM and SIGINT set.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, ctrlc::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    Ok(stop)
}
