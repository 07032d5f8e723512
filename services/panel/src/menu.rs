//! The keypad menu and the backlight policy: pure state machines, no I/O.
//!
//! # Design
//!
//! [`Menu`] takes key presses ([`Menu::on_key`]) and the latest status, and says what to show
//! ([`Menu::screen`]); when the admin confirms something that changes the box it returns an
//! [`Action`]. It performs nothing itself: actions go to the supervisor (a later D-Bus client),
//! which authorises, audits and carries them out.
//!
//! - Status view (the root): Up/Down page through status, each interface, alerts. Enter opens
//!   the menu. Exit anywhere returns here.
//! - Menu: Addresses (Up/Down through interfaces), Network setup (pick an interface, DHCP or
//!   static; a static IPv4 address and prefix are entered digit by digit: Up/Down change the
//!   digit, Left/Right move, Enter confirms), Identify (blinks the backlight), Reboot and
//!   Power off (each asks twice).
//!
//! [`Backlight`] decides the backlight level: full after a key press or a new alert, dimmed
//! after a configurable idle time, blinking while identifying. Time is passed in, so tests
//! need no clock.
//!
//! # Limits
//!
//! - Static addresses are IPv4 only; the gateway and DNS are left to the supervisor.
//! - Key releases are ignored; there is no auto-repeat.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::link::Key;
use crate::screens::Screen;
use crate::status::{Alert, Status};

/// The main menu's entries, in order.
pub const MAIN_ITEMS: [&str; 5] = [
    "Addresses",
    "Network setup",
    "Identify",
    "Reboot",
    "Power off",
];

/// How long Identify blinks.
pub const IDENTIFY_FOR: Duration = Duration::from_secs(10);
/// Half a blink period.
pub const BLINK_HALF: Duration = Duration::from_millis(500);

/// Something the admin asked for on the panel; carried out by the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    SetDhcp {
        iface: String,
    },
    SetStatic {
        iface: String,
        addr: Ipv4Addr,
        prefix: u8,
    },
    Reboot,
    PowerOff,
    Identify,
}

impl Action {
    fn confirmations(&self) -> u8 {
        match self {
            Action::Reboot | Action::PowerOff => 2,
            _ => 1,
        }
    }

    fn question(&self, stage: u8) -> (String, String) {
        match (self, stage) {
            (Action::Reboot, 0) => ("Reboot".into(), "Reboot the box?".into()),
            (Action::Reboot, _) => ("Reboot".into(), "Really reboot now?".into()),
            (Action::PowerOff, 0) => ("Power off".into(), "Power off the box?".into()),
            (Action::PowerOff, _) => ("Power off".into(), "Really power off?".into()),
            (Action::SetDhcp { iface }, _) => (iface.clone(), format!("Use DHCP on {iface}?")),
            (
                Action::SetStatic {
                    iface,
                    addr,
                    prefix,
                },
                _,
            ) => (iface.clone(), format!("Set {addr}/{prefix}?")),
            (Action::Identify, _) => ("Identify".into(), "Blink the panel?".into()),
        }
    }

    fn done(&self) -> String {
        match self {
            Action::SetDhcp { iface } => format!("DHCP on {iface}"),
            Action::SetStatic { addr, .. } => format!("Static {addr}"),
            Action::Reboot => "Reboot".into(),
            Action::PowerOff => "Power off".into(),
            Action::Identify => "Identify".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// 0 = status, 1..=n interfaces, n+1 alerts.
    Status {
        page: usize,
    },
    Main {
        sel: usize,
    },
    Addresses {
        iface: usize,
    },
    PickIface {
        sel: usize,
    },
    ChooseAddressing {
        iface: usize,
        sel: usize,
    },
    Address {
        iface: usize,
        digits: [u8; 14],
        cursor: usize,
    },
    Confirm {
        action: Action,
        stage: u8,
    },
    Notice {
        title: String,
        lines: Vec<String>,
        back: Option<Box<Mode>>,
    },
}

/// The menu state machine. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Menu {
    mode: Mode,
}

impl Default for Menu {
    fn default() -> Self {
        Menu {
            mode: Mode::Status { page: 0 },
        }
    }
}

fn digits_of(addr: Ipv4Addr, prefix: u8) -> [u8; 14] {
    let mut d = [0u8; 14];
    for (i, o) in addr.octets().iter().enumerate() {
        d[i * 3] = o / 100;
        d[i * 3 + 1] = o / 10 % 10;
        d[i * 3 + 2] = o % 10;
    }
    d[12] = prefix / 10 % 10;
    d[13] = prefix % 10;
    d
}

/// The address and prefix the digits spell, or which field is out of range.
fn parse_digits(d: &[u8; 14]) -> Result<(Ipv4Addr, u8), usize> {
    let mut octets = [0u8; 4];
    for (i, o) in octets.iter_mut().enumerate() {
        let v = u16::from(d[i * 3]) * 100 + u16::from(d[i * 3 + 1]) * 10 + u16::from(d[i * 3 + 2]);
        *o = u8::try_from(v).map_err(|_| i * 3)?;
    }
    let prefix = d[12] * 10 + d[13];
    if prefix == 0 || prefix > 32 {
        return Err(12);
    }
    Ok((Ipv4Addr::from(octets), prefix))
}

impl Menu {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while the root status view is shown.
    pub fn at_status(&self) -> bool {
        matches!(self.mode, Mode::Status { .. })
    }

    /// Go back to the status view (e.g. after a long idle time).
    pub fn reset(&mut self) {
        self.mode = Mode::Status { page: 0 };
    }

    /// Handle a key press. Returns the action the admin confirmed, if any.
    pub fn on_key(&mut self, key: Key, status: Option<&Status>) -> Option<Action> {
        if key == Key::Exit {
            self.reset();
            return None;
        }
        let ifaces = status.map_or(&[][..], |s| &s.interfaces[..]);
        let n = ifaces.len();
        let mut action = None;
        let next = match (&mut self.mode, key) {
            (Mode::Status { .. }, Key::Enter) => Some(Mode::Main { sel: 0 }),
            (Mode::Status { page }, Key::Down) => {
                *page = (*page + 1) % (n + 2);
                None
            }
            (Mode::Status { page }, Key::Up) => {
                *page = (*page + n + 1) % (n + 2);
                None
            }
            (Mode::Main { sel }, Key::Down) => {
                *sel = (*sel + 1).min(MAIN_ITEMS.len() - 1);
                None
            }
            (Mode::Main { sel }, Key::Up) => {
                *sel = sel.saturating_sub(1);
                None
            }
            (Mode::Main { sel }, Key::Enter) => Some(match *sel {
                0 => Mode::Addresses { iface: 0 },
                1 => Mode::PickIface { sel: 0 },
                2 => {
                    action = Some(Action::Identify);
                    Mode::Notice {
                        title: "Identify".into(),
                        lines: vec!["The panel blinks".into(), "Exit: back".into()],
                        back: None,
                    }
                }
                3 => Mode::Confirm {
                    action: Action::Reboot,
                    stage: 0,
                },
                _ => Mode::Confirm {
                    action: Action::PowerOff,
                    stage: 0,
                },
            }),
            (Mode::Addresses { iface }, Key::Down) if n > 0 => {
                *iface = (*iface + 1) % n;
                None
            }
            (Mode::Addresses { iface }, Key::Up) if n > 0 => {
                *iface = (*iface + n - 1) % n;
                None
            }
            (Mode::PickIface { sel }, Key::Down) => {
                *sel = (*sel + 1).min(n.saturating_sub(1));
                None
            }
            (Mode::PickIface { sel }, Key::Up) => {
                *sel = sel.saturating_sub(1);
                None
            }
            (Mode::PickIface { sel }, Key::Enter) => match ifaces.get(*sel) {
                Some(i) => Some(Mode::ChooseAddressing {
                    iface: *sel,
                    sel: usize::from(i.dhcp == Some(false)),
                }),
                None => Some(Mode::Notice {
                    title: "Network".into(),
                    lines: vec!["No interfaces known".into(), "Exit: back".into()],
                    back: None,
                }),
            },
            (Mode::ChooseAddressing { sel, .. }, Key::Up | Key::Down) => {
                *sel = 1 - (*sel).min(1);
                None
            }
            (Mode::ChooseAddressing { iface, sel }, Key::Enter) => match ifaces.get(*iface) {
                None => Some(Mode::Status { page: 0 }),
                Some(i) if *sel == 0 => Some(Mode::Confirm {
                    action: Action::SetDhcp {
                        iface: i.name.clone(),
                    },
                    stage: 0,
                }),
                Some(i) => {
                    let current = i.addresses.iter().find_map(|a| match a.addr {
                        std::net::IpAddr::V4(v4) => Some((v4, a.prefix)),
                        std::net::IpAddr::V6(_) => None,
                    });
                    let (addr, prefix) = current.unwrap_or((Ipv4Addr::new(192, 168, 1, 10), 24));
                    Some(Mode::Address {
                        iface: *iface,
                        digits: digits_of(addr, prefix),
                        cursor: 0,
                    })
                }
            },
            (Mode::Address { digits, cursor, .. }, Key::Up) => {
                digits[*cursor] = (digits[*cursor] + 1) % 10;
                None
            }
            (Mode::Address { digits, cursor, .. }, Key::Down) => {
                digits[*cursor] = (digits[*cursor] + 9) % 10;
                None
            }
            (Mode::Address { cursor, .. }, Key::Left) => {
                *cursor = cursor.saturating_sub(1);
                None
            }
            (Mode::Address { cursor, .. }, Key::Right) => {
                *cursor = (*cursor + 1).min(13);
                None
            }
            (
                Mode::Address {
                    iface,
                    digits,
                    cursor,
                },
                Key::Enter,
            ) => match (parse_digits(digits), ifaces.get(*iface)) {
                (Ok((addr, prefix)), Some(i)) => Some(Mode::Confirm {
                    action: Action::SetStatic {
                        iface: i.name.clone(),
                        addr,
                        prefix,
                    },
                    stage: 0,
                }),
                (Err(field), Some(_)) => {
                    let back = Mode::Address {
                        iface: *iface,
                        digits: *digits,
                        cursor: field,
                    };
                    let what = if field == 12 {
                        "Prefix must be 1-32"
                    } else {
                        "Each part is 0-255"
                    };
                    Some(Mode::Notice {
                        title: "Invalid address".into(),
                        lines: vec![what.into(), "Enter: edit again".into()],
                        back: Some(Box::new(back)),
                    })
                }
                (_, None) => {
                    let _ = cursor;
                    Some(Mode::Status { page: 0 })
                }
            },
            (Mode::Confirm { action: a, stage }, Key::Enter) => {
                if *stage + 1 < a.confirmations() {
                    *stage += 1;
                    None
                } else {
                    let done = a.done();
                    action = Some(a.clone());
                    Some(Mode::Notice {
                        title: "Requested".into(),
                        lines: vec![done, "Exit: back".into()],
                        back: None,
                    })
                }
            }
            (Mode::Confirm { .. }, Key::Left) => Some(Mode::Status { page: 0 }),
            (Mode::Notice { back, .. }, Key::Enter) => {
                Some(back.take().map_or(Mode::Status { page: 0 }, |b| *b))
            }
            _ => None,
        };
        if let Some(m) = next {
            self.mode = m;
        }
        action
    }

    /// What to show now.
    pub fn screen(&self, status: Option<&Status>) -> Screen {
        let ifaces = status.map_or(&[][..], |s| &s.interfaces[..]);
        let n = ifaces.len();
        match &self.mode {
            Mode::Status { page } => match status {
                None => Screen::Starting,
                Some(s) if *page == 0 => match (s.state, s.update_progress) {
                    (crate::status::State::Updating, Some(p)) => Screen::Update { percent: p },
                    _ => Screen::Status(s.clone()),
                },
                Some(s) if *page <= n => Screen::Network {
                    iface: s.interfaces[page - 1].clone(),
                    index: page - 1,
                    count: n,
                },
                Some(s) => Screen::Alerts(s.clone()),
            },
            Mode::Main { sel } => Screen::Menu {
                title: "Menu".into(),
                items: MAIN_ITEMS.iter().map(|s| s.to_string()).collect(),
                selected: *sel,
            },
            Mode::Addresses { iface } => match ifaces.get(*iface) {
                Some(i) => Screen::Network {
                    iface: i.clone(),
                    index: *iface,
                    count: n,
                },
                None => Screen::Notice {
                    title: "Addresses".into(),
                    lines: vec!["No interfaces known".into(), "Exit: back".into()],
                },
            },
            Mode::PickIface { sel } => Screen::Menu {
                title: "Network setup".into(),
                items: ifaces
                    .iter()
                    .map(|i| format!("{} ({})", i.name, i.mode_word()))
                    .collect(),
                selected: *sel,
            },
            Mode::ChooseAddressing { iface, sel } => Screen::Menu {
                title: ifaces.get(*iface).map_or("?".into(), |i| i.name.clone()),
                items: vec!["DHCP".into(), "Static address".into()],
                selected: *sel,
            },
            Mode::Address {
                iface,
                digits,
                cursor,
            } => Screen::AddressEntry {
                iface: ifaces.get(*iface).map_or("?".into(), |i| i.name.clone()),
                digits: *digits,
                cursor: *cursor,
            },
            Mode::Confirm { action, stage } => {
                let (title, question) = action.question(*stage);
                Screen::Confirm { title, question }
            }
            Mode::Notice { title, lines, .. } => Screen::Notice {
                title: title.clone(),
                lines: lines.clone(),
            },
        }
    }
}

/// Backlight levels (percent, as the backlight command takes them).
pub const FULL: u8 = 100;
pub const DIM: u8 = 10;

/// The backlight policy. See the module docs.
#[derive(Clone, Debug)]
pub struct Backlight {
    dim_after: Duration,
    last_activity: Instant,
    known_alerts: Vec<Alert>,
    blink_until: Option<Instant>,
    /// The status asked to identify (last seen).
    identifying: bool,
}

impl Backlight {
    /// `dim_after` zero means never dim.
    pub fn new(dim_after: Duration, now: Instant) -> Self {
        Backlight {
            dim_after,
            last_activity: now,
            known_alerts: Vec::new(),
            blink_until: None,
            identifying: false,
        }
    }

    /// A key was pressed.
    pub fn key(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// The status changed: an alert that was not there before lights the panel; the
    /// status starting to ask for Identify (from the web page or the keypad, through the
    /// supervisor) starts the blinking.
    pub fn status(&mut self, status: Option<&Status>, now: Instant) {
        let alerts = status.map_or(&[][..], |s| &s.alerts[..]);
        if alerts.iter().any(|a| !self.known_alerts.contains(a)) {
            self.last_activity = now;
        }
        self.known_alerts = alerts.to_vec();
        let identify = status.is_some_and(|s| s.identify);
        if identify && !self.identifying {
            self.identify(now);
        }
        self.identifying = identify;
    }

    /// Blink for [`IDENTIFY_FOR`].
    pub fn identify(&mut self, now: Instant) {
        self.blink_until = Some(now + IDENTIFY_FOR);
        self.last_activity = now;
    }

    /// The level to show now.
    pub fn level(&self, now: Instant) -> u8 {
        if let Some(until) = self.blink_until.filter(|u| now < *u) {
            let phase = (until - now).as_millis() / BLINK_HALF.as_millis();
            return if phase.is_multiple_of(2) { FULL } else { 0 };
        }
        if self.dim_after.is_zero() || now.duration_since(self.last_activity) < self.dim_after {
            FULL
        } else {
            DIM
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::sample;

    fn press(m: &mut Menu, s: &Status, keys: &[Key]) -> Vec<Action> {
        keys.iter().filter_map(|k| m.on_key(*k, Some(s))).collect()
    }

    #[test]
    fn status_pages_cycle() {
        let s = sample();
        let mut m = Menu::new();
        assert!(matches!(m.screen(Some(&s)), Screen::Status(_)));
        press(&mut m, &s, &[Key::Down]);
        assert!(matches!(
            m.screen(Some(&s)),
            Screen::Network { index: 0, .. }
        ));
        press(&mut m, &s, &[Key::Down, Key::Down]);
        assert!(matches!(m.screen(Some(&s)), Screen::Alerts(_)));
        press(&mut m, &s, &[Key::Down]);
        assert!(matches!(m.screen(Some(&s)), Screen::Status(_)));
        press(&mut m, &s, &[Key::Up]);
        assert!(matches!(m.screen(Some(&s)), Screen::Alerts(_)));
        assert_eq!(Menu::new().screen(None), Screen::Starting);
    }

    #[test]
    fn updating_shows_progress() {
        let mut s = sample();
        s.state = crate::status::State::Updating;
        s.update_progress = Some(7);
        assert_eq!(Menu::new().screen(Some(&s)), Screen::Update { percent: 7 });
    }

    #[test]
    fn reboot_needs_two_confirmations() {
        let s = sample();
        let mut m = Menu::new();
        let keys = [
            Key::Enter,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Enter,
            Key::Enter,
        ];
        assert!(press(&mut m, &s, &keys).is_empty());
        assert!(
            matches!(m.screen(Some(&s)), Screen::Confirm { ref question, .. } if question.starts_with("Really"))
        );
        assert_eq!(press(&mut m, &s, &[Key::Enter]), vec![Action::Reboot]);
        press(&mut m, &s, &[Key::Exit]);
        assert!(m.at_status());
    }

    #[test]
    fn power_off_cancelled_by_exit() {
        let s = sample();
        let mut m = Menu::new();
        let keys = [
            Key::Enter,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Enter,
            Key::Enter,
            Key::Exit,
        ];
        assert!(press(&mut m, &s, &keys).is_empty());
        assert!(m.at_status());
        let keys = [
            Key::Enter,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Down,
            Key::Enter,
            Key::Enter,
            Key::Enter,
        ];
        assert_eq!(press(&mut m, &s, &keys), vec![Action::PowerOff]);
    }

    #[test]
    fn identify_is_immediate() {
        let s = sample();
        let mut m = Menu::new();
        assert_eq!(
            press(&mut m, &s, &[Key::Enter, Key::Down, Key::Down, Key::Enter]),
            vec![Action::Identify]
        );
    }

    #[test]
    fn switch_to_dhcp() {
        let mut s = sample();
        s.interfaces[0].dhcp = Some(false);
        let mut m = Menu::new();
        // Menu > Network setup > eth0 > (static selected) Up > DHCP > confirm.
        let keys = [
            Key::Enter,
            Key::Down,
            Key::Enter,
            Key::Enter,
            Key::Up,
            Key::Enter,
            Key::Enter,
        ];
        assert_eq!(
            press(&mut m, &s, &keys),
            vec![Action::SetDhcp {
                iface: "eth0".into()
            }]
        );
    }

    #[test]
    fn enter_static_address_digit_by_digit() {
        let s = sample();
        let mut m = Menu::new();
        // Menu > Network setup > eth0 (DHCP selected) > Down to Static > Enter.
        press(
            &mut m,
            &s,
            &[
                Key::Enter,
                Key::Down,
                Key::Enter,
                Key::Enter,
                Key::Down,
                Key::Enter,
            ],
        );
        let Screen::AddressEntry { digits, cursor, .. } = m.screen(Some(&s)) else {
            panic!("not in address entry: {:?}", m.screen(Some(&s)));
        };
        assert_eq!(cursor, 0);
        assert_eq!(digits, digits_of(Ipv4Addr::new(192, 0, 2, 10), 24));
        // 192.000.002.010 -> 192.000.002.011 (digit 11), prefix 24 -> 25 (digit 13).
        let mut keys = vec![Key::Right; 11];
        keys.push(Key::Up);
        keys.extend([Key::Right, Key::Right, Key::Up, Key::Enter]);
        assert!(press(&mut m, &s, &keys).is_empty());
        assert_eq!(
            press(&mut m, &s, &[Key::Enter]),
            vec![Action::SetStatic {
                iface: "eth0".into(),
                addr: Ipv4Addr::new(192, 0, 2, 11),
                prefix: 25
            }]
        );
    }

    #[test]
    fn invalid_address_is_refused_and_editable() {
        let s = sample();
        let mut m = Menu::new();
        press(
            &mut m,
            &s,
            &[
                Key::Enter,
                Key::Down,
                Key::Enter,
                Key::Enter,
                Key::Down,
                Key::Enter,
            ],
        );
        // First digit 1 -> 3: 392 is above 255.
        press(&mut m, &s, &[Key::Up, Key::Up, Key::Enter]);
        assert!(
            matches!(m.screen(Some(&s)), Screen::Notice { ref title, .. } if title == "Invalid address")
        );
        press(&mut m, &s, &[Key::Enter]);
        assert!(matches!(
            m.screen(Some(&s)),
            Screen::AddressEntry { cursor: 0, .. }
        ));
        assert!(press(&mut m, &s, &[Key::Down, Key::Down, Key::Enter]).is_empty());
        assert_eq!(press(&mut m, &s, &[Key::Enter]).len(), 1);
    }

    #[test]
    fn digits_round_trip() {
        let d = digits_of(Ipv4Addr::new(10, 255, 0, 7), 8);
        assert_eq!(parse_digits(&d), Ok((Ipv4Addr::new(10, 255, 0, 7), 8)));
        let mut bad = d;
        bad[6] = 3;
        assert_eq!(parse_digits(&bad), Err(6));
        let mut bad = d;
        bad[12] = 4;
        assert_eq!(parse_digits(&bad), Err(12));
    }

    #[test]
    fn menu_without_status_does_not_panic() {
        let mut m = Menu::new();
        for k in [
            Key::Enter,
            Key::Down,
            Key::Enter,
            Key::Enter,
            Key::Down,
            Key::Up,
            Key::Left,
            Key::Right,
            Key::Enter,
        ] {
            let _ = m.on_key(k, None);
            let _ = m.screen(None);
        }
        m.reset();
        let _ = m.on_key(Key::Enter, None);
        let _ = m.on_key(Key::Enter, None);
        let _ = m.on_key(Key::Down, None);
        let _ = m.screen(None);
    }

    #[test]
    fn backlight_dims_and_wakes() {
        let t0 = Instant::now();
        let mut b = Backlight::new(Duration::from_secs(30), t0);
        assert_eq!(b.level(t0), FULL);
        assert_eq!(b.level(t0 + Duration::from_secs(31)), DIM);
        b.key(t0 + Duration::from_secs(40));
        assert_eq!(b.level(t0 + Duration::from_secs(41)), FULL);
        let mut s = sample();
        b.status(Some(&s), t0 + Duration::from_secs(40));
        assert_eq!(b.level(t0 + Duration::from_secs(100)), DIM);
        s.alerts.push(Alert::CertificateExpiring { days: 3 });
        b.status(Some(&s), t0 + Duration::from_secs(100));
        assert_eq!(b.level(t0 + Duration::from_secs(101)), FULL);
        // The same alert again does not wake it.
        b.status(Some(&s), t0 + Duration::from_secs(200));
        assert_eq!(b.level(t0 + Duration::from_secs(201)), DIM);
    }

    #[test]
    fn identify_blinks_then_stops() {
        let t0 = Instant::now();
        let mut b = Backlight::new(Duration::ZERO, t0);
        b.identify(t0);
        let levels: Vec<u8> = (0..4)
            .map(|i| b.level(t0 + BLINK_HALF * i + Duration::from_millis(10)))
            .collect();
        assert!(levels.contains(&0) && levels.contains(&FULL));
        assert_eq!(b.level(t0 + IDENTIFY_FOR + Duration::from_millis(1)), FULL);
    }

    #[test]
    fn identify_from_the_status_blinks_once_per_request() {
        let t0 = Instant::now();
        let mut b = Backlight::new(Duration::ZERO, t0);
        let mut s = sample();
        b.status(Some(&s), t0);
        assert_eq!(b.level(t0 + Duration::from_millis(10)), FULL);
        s.identify = true;
        b.status(Some(&s), t0);
        assert_eq!(b.level(t0 + Duration::from_millis(10)), 0);
        // The same request seen again does not restart the blinking.
        let later = t0 + IDENTIFY_FOR + Duration::from_millis(1);
        b.status(Some(&s), later);
        assert_eq!(b.level(later + Duration::from_millis(10)), FULL);
        // A new request after it ended does.
        s.identify = false;
        b.status(Some(&s), later);
        s.identify = true;
        b.status(Some(&s), later);
        assert_eq!(b.level(later + Duration::from_millis(10)), 0);
    }
}
