//! The panel's screens, rendered for a graphic module or as 4 lines of 20 characters.
//!
//! # Design
//!
//! A [`Screen`] says *what* to show (status, network detail, alerts, update progress, boot,
//! starting, and the menu's lists, address entry and confirmations). Each screen is first laid
//! out as a [`Page`] for a [`Geometry`] — a title line, a few body lines of at most `cols`
//! characters, optionally a progress bar — and the page is then drawn either with
//! `embedded-graphics` into a [`FrameBuffer`] ([`render_bitmap`]) or as text rows
//! ([`render_text`]). Content is chosen per geometry: wide displays get sentences, narrow ones
//! abbreviations, so one set of screens serves 128x64, 244x68 and 20x4.
//!
//! Bitmap layout: the title is drawn light-on-dark across the top; body lines below it in
//! `FONT_6X10` (10 px pitch); a selected menu line and the digit under the cursor are drawn
//! inverted. 128x64 has a 21-column, 5-line body; 244x68 a 40-column, 5-line body with a
//! bold 7x13 title. The boot screen is drawn larger, centred.
//!
//! # Limits
//!
//! - ASCII only (the character modules' ROM has no other glyphs we rely on): other characters
//!   are shown as `?`.
//! - Text longer than a line is cut and ends in `~`; lists longer than the body scroll with
//!   the selection.

use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_7X13_BOLD, FONT_10X20};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use crate::framebuffer::FrameBuffer;
use crate::status::{Interface, Status};

/// Columns of the character module.
pub const TEXT_COLS: usize = 20;
/// Rows of the character module.
pub const TEXT_ROWS: usize = 4;

/// What to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Right after power-on, before anything is known.
    Boot { version: String },
    /// The panel runs but the supervisor has not reported status yet.
    Starting,
    /// The main status screen.
    Status(Status),
    /// One interface in detail; `index` of `count` interfaces.
    Network {
        iface: Interface,
        index: usize,
        count: usize,
    },
    /// The list of alerts.
    Alerts(Status),
    /// An update is being installed.
    Update { percent: u8 },
    /// A menu list.
    Menu {
        title: String,
        items: Vec<String>,
        selected: usize,
    },
    /// Entering a static IPv4 address: 12 address digits then 2 prefix digits; `cursor` is the
    /// digit being changed.
    AddressEntry {
        iface: String,
        digits: [u8; 14],
        cursor: usize,
    },
    /// A question answered with Enter (yes) or Exit (no).
    Confirm { title: String, question: String },
    /// A message after an action.
    Notice { title: String, lines: Vec<String> },
}

/// The character grid a page is laid out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Characters per line.
    pub cols: usize,
    /// Body lines under the title.
    pub rows: usize,
    /// A character module (no inverse video, no bar graphics).
    pub text: bool,
}

impl Geometry {
    /// The 20x4 character module: a title row and three body rows.
    pub const TEXT_20X4: Geometry = Geometry {
        cols: TEXT_COLS,
        rows: TEXT_ROWS - 1,
        text: true,
    };

    /// The grid of a graphic display of this size.
    pub fn for_bitmap(width: u32, height: u32) -> Geometry {
        let l = BitmapLayout::for_size(width, height);
        Geometry {
            cols: (width / l.body_font.character_size.width) as usize,
            rows: ((height.saturating_sub(l.body_top)) / l.line_pitch) as usize,
            text: false,
        }
    }
}

/// One body line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Text; `invert` marks a column range drawn light-on-dark on bitmaps.
    Text {
        text: String,
        invert: Option<(usize, usize)>,
    },
    /// A progress bar with its percentage.
    Progress(u8),
}

impl Line {
    fn plain(text: impl Into<String>) -> Line {
        Line::Text {
            text: text.into(),
            invert: None,
        }
    }
}

/// A screen laid out for a geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub title: String,
    /// Shown right-aligned on the title line (state word).
    pub title_right: String,
    pub lines: Vec<Line>,
}

/// Cut `s` to `cols` characters (ASCII, `~` marks a cut).
pub fn fit(s: &str, cols: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if clean.len() <= cols {
        clean
    } else if cols == 0 {
        String::new()
    } else {
        format!("{}~", &clean[..cols - 1])
    }
}

/// The first of the candidates that fits, else the last one cut.
fn first_fit(cols: usize, candidates: &[String]) -> String {
    candidates
        .iter()
        .find(|c| c.len() <= cols)
        .cloned()
        .unwrap_or_else(|| fit(candidates.last().map_or("", |s| s.as_str()), cols))
}

fn centre(s: &str, cols: usize) -> String {
    let s = fit(s, cols);
    let pad = (cols - s.len()) / 2;
    format!("{}{}", " ".repeat(pad), s)
}

impl Screen {
    /// Lay the screen out for a geometry.
    pub fn page(&self, g: Geometry) -> Page {
        let cols = g.cols;
        let mut title_right = String::new();
        let (title, mut lines): (String, Vec<Line>) = match self {
            Screen::Boot { version } => (
                "Lifeline".into(),
                vec![
                    Line::plain(""),
                    Line::plain(centre("Booting...", cols)),
                    Line::plain(centre(&format!("version {version}"), cols)),
                ],
            ),
            Screen::Starting => (
                "Lifeline".into(),
                vec![
                    Line::plain(""),
                    Line::plain(centre("Starting services", cols)),
                    Line::plain(centre("Please wait", cols)),
                ],
            ),
            Screen::Status(s) => {
                // Character modules show the state in the title; graphic ones on a line.
                if g.text {
                    title_right = s.state_short().into();
                }
                status_lines(s, g)
            }
            Screen::Network {
                iface,
                index,
                count,
            } => {
                title_right = format!("{}/{}", index + 1, count);
                network_lines(iface, g)
            }
            Screen::Alerts(s) => {
                title_right = s.alerts.len().to_string();
                alert_lines(s, g)
            }
            Screen::Update { percent } => {
                let mut l = vec![Line::plain(first_fit(
                    cols,
                    &["Installing update".into(), "Installing".into()],
                ))];
                l.push(Line::Progress(*percent));
                l.push(Line::plain(first_fit(
                    cols,
                    &["Do not power off".into(), "Keep power on".into()],
                )));
                ("Updating".into(), l)
            }
            Screen::Menu {
                title,
                items,
                selected,
            } => (title.clone(), menu_lines(items, *selected, g)),
            Screen::AddressEntry {
                iface,
                digits,
                cursor,
            } => address_lines(iface, digits, *cursor, g),
            Screen::Confirm { title, question } => {
                let hint = first_fit(
                    cols,
                    &["Enter: yes   Exit: no".into(), "Enter=yes Exit=no".into()],
                );
                (
                    title.clone(),
                    vec![
                        Line::plain(fit(question, cols)),
                        Line::plain(""),
                        Line::plain(hint),
                    ],
                )
            }
            Screen::Notice { title, lines } => (
                title.clone(),
                lines.iter().map(|l| Line::plain(fit(l, cols))).collect(),
            ),
        };
        lines.truncate(g.rows);
        let right_room = if title_right.is_empty() {
            0
        } else {
            title_right.len() + 1
        };
        Page {
            title: fit(&title, cols.saturating_sub(right_room)),
            title_right: fit(&title_right, cols),
            lines,
        }
    }
}

fn status_lines(s: &Status, g: Geometry) -> (String, Vec<Line>) {
    let cols = g.cols;
    let url = s.url().unwrap_or_else(|| "no network address".into());
    let (reps, cust, jump) = (s.reps, s.customers, s.jump_clients);
    let counts = first_fit(
        cols,
        &[
            format!("Reps {reps}  Customers {cust}  Jump clients {jump}"),
            format!("Reps {reps} Cust {cust} Jump {jump}"),
            format!("Reps {reps} Cust {cust} Jmp {jump}"),
            format!("Rep {reps} Cus {cust} Jmp {jump}"),
            format!("R{reps} C{cust} J{jump}"),
        ],
    );
    let state = match (s.state, s.update_progress) {
        (crate::status::State::Updating, Some(p)) => format!("{} {p}%", s.state_label()),
        _ => s.state_label().to_string(),
    };
    let state = first_fit(cols, &[format!("State: {state}"), state]);
    let alerts = match s.alerts.len() {
        0 => first_fit(
            cols,
            &["Enter: menu   Down: more".into(), "Enter: menu".into()],
        ),
        1 => fit(
            &first_fit(
                cols,
                &[
                    format!("! {}", s.alerts[0].long()),
                    format!("! {}", s.alerts[0].short()),
                ],
            ),
            cols,
        ),
        n => first_fit(
            cols,
            &[
                format!("! {n} alerts - press Down"),
                format!("! {n} alerts"),
            ],
        ),
    };
    let mut lines = vec![Line::plain(fit(&url, cols))];
    if !g.text {
        lines.push(Line::plain(fit(&state, cols)));
    }
    lines.push(Line::plain(counts));
    if !g.text {
        lines.push(Line::plain(""));
    }
    lines.push(Line::plain(alerts));
    (s.hostname.clone(), lines)
}

fn network_lines(iface: &Interface, g: Geometry) -> (String, Vec<Line>) {
    let cols = g.cols;
    let link = if iface.up { "up" } else { "down" };
    let mode = iface.mode_word();
    let mut lines = vec![Line::plain(first_fit(
        cols,
        &[format!("link {link}, {mode}"), format!("{link} {mode}")],
    ))];
    if iface.addresses.is_empty() {
        lines.push(Line::plain("no address"));
    }
    let room = g.rows.saturating_sub(1);
    let shown = if iface.addresses.len() > room {
        room.saturating_sub(1)
    } else {
        room
    };
    for a in iface.addresses.iter().take(shown) {
        lines.push(Line::plain(fit(&a.to_string(), cols)));
    }
    if iface.addresses.len() > shown {
        lines.push(Line::plain(format!(
            "+{} more",
            iface.addresses.len() - shown
        )));
    }
    (iface.name.clone(), lines)
}

fn alert_lines(s: &Status, g: Geometry) -> (String, Vec<Line>) {
    let cols = g.cols;
    if s.alerts.is_empty() {
        return ("Alerts".into(), vec![Line::plain("No alerts")]);
    }
    let shown = if s.alerts.len() > g.rows {
        g.rows.saturating_sub(1)
    } else {
        g.rows
    };
    let mut lines: Vec<Line> = s
        .alerts
        .iter()
        .take(shown)
        .map(|a| Line::plain(first_fit(cols, &[a.long(), a.short()])))
        .collect();
    if s.alerts.len() > shown {
        lines.push(Line::plain(format!("+{} more", s.alerts.len() - shown)));
    }
    ("Alerts".into(), lines)
}

fn menu_lines(items: &[String], selected: usize, g: Geometry) -> Vec<Line> {
    let rows = g.rows.max(1);
    let first = selected
        .saturating_sub(rows - 1)
        .min(items.len().saturating_sub(rows));
    items
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, item)| {
            let marker = if i == selected { '>' } else { ' ' };
            let text = fit(&format!("{marker} {item}"), g.cols);
            let invert = (i == selected && !g.text).then_some((0, g.cols));
            Line::Text { text, invert }
        })
        .collect()
}

/// The address entry's text, e.g. `192.168.001.010/24`, and the column of each digit.
pub fn address_text(digits: &[u8; 14]) -> (String, [usize; 14]) {
    let mut text = String::new();
    let mut cols = [0; 14];
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && i < 12 && i % 3 == 0 {
            text.push('.');
        }
        if i == 12 {
            text.push('/');
        }
        cols[i] = text.len();
        text.push(char::from(b'0' + d % 10));
    }
    (text, cols)
}

fn address_lines(
    iface: &str,
    digits: &[u8; 14],
    cursor: usize,
    g: Geometry,
) -> (String, Vec<Line>) {
    let cursor = cursor.min(13);
    let (text, cols) = address_text(digits);
    let c = cols[cursor];
    let mut lines = vec![Line::Text {
        text,
        invert: (!g.text).then_some((c, c + 1)),
    }];
    if g.text {
        lines.push(Line::plain(format!("{}^", " ".repeat(c))));
    } else {
        lines.push(Line::plain(""));
    }
    lines.push(Line::plain(first_fit(
        g.cols,
        &[
            "Up/Down digit  Left/Right move".into(),
            "Up/Dn digit <> move".into(),
        ],
    )));
    if !g.text {
        lines.push(Line::plain(first_fit(
            g.cols,
            &[
                "Enter: confirm  Exit: cancel".into(),
                "Enter: confirm".into(),
            ],
        )));
    }
    (
        first_fit(
            g.cols,
            &[format!("{iface} static IPv4"), format!("{iface} static")],
        ),
        lines,
    )
}

/// Render a screen as the character module's rows (exactly [`TEXT_ROWS`] rows of
/// [`TEXT_COLS`] characters, space padded).
pub fn render_text(screen: &Screen) -> [String; TEXT_ROWS] {
    let page = screen.page(Geometry::TEXT_20X4);
    let mut rows: [String; TEXT_ROWS] = Default::default();
    let gap = TEXT_COLS.saturating_sub(page.title.len() + page.title_right.len());
    rows[0] = format!("{}{}{}", page.title, " ".repeat(gap), page.title_right);
    for (row, line) in rows[1..].iter_mut().zip(page.lines.iter()) {
        *row = match line {
            Line::Text { text, .. } => text.clone(),
            Line::Progress(p) => text_bar(*p),
        };
    }
    for row in &mut rows {
        *row = format!("{:<w$}", fit(row, TEXT_COLS), w = TEXT_COLS);
    }
    rows
}

/// `[#######-----]  58%` in 20 columns.
fn text_bar(percent: u8) -> String {
    let p = usize::from(percent.min(100));
    let inner = TEXT_COLS - 7;
    let filled = p * inner / 100;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(filled),
        "-".repeat(inner - filled),
        p
    )
}

struct BitmapLayout {
    title_font: &'static MonoFont<'static>,
    title_height: u32,
    body_font: &'static MonoFont<'static>,
    body_top: u32,
    line_pitch: u32,
}

impl BitmapLayout {
    fn for_size(width: u32, height: u32) -> Self {
        if width >= 200 && height >= 64 {
            BitmapLayout {
                title_font: &FONT_7X13_BOLD,
                title_height: 14,
                body_font: &FONT_6X10,
                body_top: 17,
                line_pitch: 10,
            }
        } else {
            BitmapLayout {
                title_font: &FONT_6X10,
                title_height: 11,
                body_font: &FONT_6X10,
                body_top: 13,
                line_pitch: 10,
            }
        }
    }
}

fn style(font: &'static MonoFont<'static>, inverse: bool) -> MonoTextStyle<'static, BinaryColor> {
    let (fg, bg) = if inverse {
        (BinaryColor::Off, BinaryColor::On)
    } else {
        (BinaryColor::On, BinaryColor::Off)
    };
    MonoTextStyleBuilder::new()
        .font(font)
        .text_color(fg)
        .background_color(bg)
        .build()
}

fn text_at(
    fb: &mut FrameBuffer,
    s: &str,
    x: i32,
    y: i32,
    font: &'static MonoFont<'static>,
    inverse: bool,
) {
    // Drawing into a FrameBuffer cannot fail.
    let _ = Text::with_baseline(s, Point::new(x, y), style(font, inverse), Baseline::Top).draw(fb);
}

fn fill(fb: &mut FrameBuffer, x: i32, y: i32, w: u32, h: u32, on: bool) {
    let color = if on {
        BinaryColor::On
    } else {
        BinaryColor::Off
    };
    let _ = Rectangle::new(Point::new(x, y), Size::new(w, h))
        .into_styled(PrimitiveStyle::with_fill(color))
        .draw(fb);
}

/// Render a screen into a new frame buffer of the given size.
pub fn render_bitmap(screen: &Screen, width: u32, height: u32) -> FrameBuffer {
    let mut fb = FrameBuffer::new(width, height);
    draw_bitmap(screen, &mut fb);
    fb
}

/// Render a screen into an existing frame buffer (cleared first).
pub fn draw_bitmap(screen: &Screen, fb: &mut FrameBuffer) {
    fb.clear_all();
    let (width, height) = (fb.width(), fb.height());
    let layout = BitmapLayout::for_size(width, height);
    if let Screen::Boot { version } = screen {
        draw_boot(fb, version);
        return;
    }
    let geometry = Geometry::for_bitmap(width, height);
    let page = screen.page(geometry);
    let cw = layout.body_font.character_size.width;
    // Centre the character grid: a pixel or two of margin at the sides.
    let margin = ((width - geometry.cols as u32 * cw) / 2) as i32;

    // Title bar: light text on a dark bar, the state word right-aligned.
    fill(fb, 0, 0, width, layout.title_height, true);
    let ty = ((layout.title_height - layout.title_font.character_size.height) / 2) as i32 + 1;
    text_at(fb, &page.title, 2, ty, layout.title_font, true);
    if !page.title_right.is_empty() {
        let tw = page.title_right.len() as u32 * layout.title_font.character_size.width;
        text_at(
            fb,
            &page.title_right,
            width as i32 - tw as i32 - 2,
            ty,
            layout.title_font,
            true,
        );
    }

    for (i, line) in page.lines.iter().enumerate() {
        let y = (layout.body_top + i as u32 * layout.line_pitch) as i32;
        match line {
            Line::Text { text, invert } => {
                text_at(fb, text, margin, y, layout.body_font, false);
                if let Some((a, b)) = invert {
                    let b = (*b).max(*a);
                    let x0 = if *a == 0 {
                        0
                    } else {
                        margin + (*a as u32 * cw) as i32
                    };
                    let full_line = *a == 0 && b >= geometry.cols;
                    let w = if full_line {
                        width
                    } else {
                        (b - a) as u32 * cw
                    };
                    fill(fb, x0, y - 1, w, layout.line_pitch, true);
                    let end = b.min(text.len());
                    if *a < end {
                        let tx = margin + (*a as u32 * cw) as i32;
                        text_at(fb, &text[*a..end], tx, y, layout.body_font, true);
                    }
                }
            }
            Line::Progress(p) => draw_bar(fb, *p, y, width, &layout),
        }
    }
}

fn draw_bar(fb: &mut FrameBuffer, percent: u8, y: i32, width: u32, layout: &BitmapLayout) {
    let p = u32::from(percent.min(100));
    let label = format!("{p:>3}%");
    let label_w = label.len() as u32 * layout.body_font.character_size.width;
    let bar_w = width - label_w - 6;
    let h = layout.line_pitch - 2;
    let _ = Rectangle::new(Point::new(1, y), Size::new(bar_w, h))
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(fb);
    let inner = bar_w - 4;
    fill(fb, 3, y + 2, inner * p / 100, h - 4, true);
    text_at(fb, &label, (bar_w + 5) as i32, y, layout.body_font, false);
}

fn draw_boot(fb: &mut FrameBuffer, version: &str) {
    let (w, h) = (fb.width() as i32, fb.height() as i32);
    let big = &FONT_10X20;
    let name = "LIFELINE";
    let nx = (w - name.len() as i32 * 10) / 2;
    let top = (h - 20 - 4 - 10 - 2 - 10) / 2;
    text_at(fb, name, nx, top, big, false);
    let _ = Rectangle::new(
        Point::new(nx, top + 21),
        Size::new(name.len() as u32 * 10, 1),
    )
    .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
    .draw(fb);
    let cols = (w / 6) as usize;
    let line1 = if cols >= 24 {
        "remote support appliance"
    } else {
        "remote support"
    };
    for (i, s) in [line1.to_string(), fit(&format!("booting {version}"), cols)]
        .iter()
        .enumerate()
    {
        let x = (w - s.len() as i32 * 6) / 2;
        text_at(fb, s, x, top + 25 + i as i32 * 11, &FONT_6X10, false);
    }
}

/// Draw character-module rows as a picture (6x10 font, one pixel between rows): how the
/// emulator shows a character module.
pub fn render_text_rows(rows: &[String]) -> FrameBuffer {
    let mut fb = FrameBuffer::new(TEXT_COLS as u32 * 6 + 4, rows.len() as u32 * 11 + 3);
    for (i, row) in rows.iter().enumerate() {
        text_at(
            &mut fb,
            &fit(row, TEXT_COLS),
            2,
            2 + i as i32 * 11,
            &FONT_6X10,
            false,
        );
    }
    fb
}

/// Every screen with sample content, by name (golden files and the emulator demo).
pub fn gallery() -> Vec<(&'static str, Screen)> {
    use crate::status::{Alert, State};
    let ok = crate::status::sample();
    let mut degraded = ok.clone();
    degraded.state = State::Degraded;
    degraded.alerts = vec![
        Alert::ServiceFailed {
            unit: "lifeline-relay".into(),
        },
        Alert::DiskNearlyFull {
            mount: "/data".into(),
            used_percent: 93,
        },
        Alert::CertificateExpiring { days: 12 },
        Alert::LicenceExpiring { days: 30 },
        Alert::UpdateFailed {
            reason: "bad signature".into(),
        },
    ];
    let mut one_alert = ok.clone();
    one_alert.state = State::Degraded;
    one_alert.alerts = vec![Alert::DiskNearlyFull {
        mount: "/data".into(),
        used_percent: 93,
    }];
    let mut updating = ok.clone();
    updating.state = State::Updating;
    updating.update_progress = Some(42);
    let mut eval = ok.clone();
    eval.evaluation_licence = true;
    let mut validity = ok.clone();
    validity.evaluation_licence = true;
    validity.alerts = vec![
        Alert::LicenceExpired,
        Alert::CertificateExpiring { days: 9 },
        Alert::CertificateExpired,
        Alert::EvaluationLicence {
            reason: "This licence expired on 2026-01-01.".into(),
        },
    ];
    let mut no_net = ok.clone();
    for i in &mut no_net.interfaces {
        i.up = false;
    }
    let mut digits = [0u8; 14];
    for (i, c) in "19216800101024".bytes().enumerate() {
        digits[i] = c - b'0';
    }
    vec![
        (
            "boot",
            Screen::Boot {
                version: "0.1.0".into(),
            },
        ),
        ("starting", Screen::Starting),
        ("status-ok", Screen::Status(ok.clone())),
        ("status-degraded", Screen::Status(degraded.clone())),
        ("status-one-alert", Screen::Status(one_alert)),
        ("status-updating", Screen::Status(updating)),
        ("status-evaluation", Screen::Status(eval)),
        ("status-no-network", Screen::Status(no_net)),
        (
            "network-eth0",
            Screen::Network {
                iface: ok.interfaces[0].clone(),
                index: 0,
                count: 2,
            },
        ),
        (
            "network-eth1",
            Screen::Network {
                iface: ok.interfaces[1].clone(),
                index: 1,
                count: 2,
            },
        ),
        ("alerts", Screen::Alerts(degraded)),
        ("update", Screen::Update { percent: 42 }),
        (
            "menu",
            Screen::Menu {
                title: "Menu".into(),
                items: crate::menu::MAIN_ITEMS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                selected: 1,
            },
        ),
        (
            "address-entry",
            Screen::AddressEntry {
                iface: "eth0".into(),
                digits,
                cursor: 5,
            },
        ),
        (
            "confirm-reboot",
            Screen::Confirm {
                title: "Reboot".into(),
                question: "Reboot the box?".into(),
            },
        ),
        // What the menu shows once the supervisor was asked (see `menu`).
        (
            "notice",
            Screen::Notice {
                title: "Requested".into(),
                lines: vec!["Static 192.168.1.10".into(), "Exit: back".into()],
            },
        ),
        ("alerts-validity", Screen::Alerts(validity)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometries() {
        assert_eq!(
            Geometry::for_bitmap(128, 64),
            Geometry {
                cols: 21,
                rows: 5,
                text: false
            }
        );
        assert_eq!(
            Geometry::for_bitmap(244, 68),
            Geometry {
                cols: 40,
                rows: 5,
                text: false
            }
        );
    }

    #[test]
    fn fit_cuts_and_cleans() {
        assert_eq!(fit("abc", 5), "abc");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("été", 5), "?t?");
        assert_eq!(fit("x", 0), "");
    }

    #[test]
    fn text_rows_are_exactly_20_wide() {
        for (name, screen) in gallery() {
            for row in render_text(&screen) {
                assert_eq!(row.len(), TEXT_COLS, "{name}: {row:?}");
            }
        }
    }

    #[test]
    fn pages_fit_their_geometry() {
        for g in [
            Geometry::TEXT_20X4,
            Geometry::for_bitmap(128, 64),
            Geometry::for_bitmap(244, 68),
        ] {
            for (name, screen) in gallery() {
                let page = screen.page(g);
                assert!(page.lines.len() <= g.rows, "{name}");
                assert!(
                    page.title.len() + page.title_right.len() <= g.cols,
                    "{name}"
                );
                for l in &page.lines {
                    if let Line::Text { text, .. } = l {
                        assert!(text.len() <= g.cols, "{name}: {text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn status_text_shows_url_and_state() {
        let rows = render_text(&Screen::Status(crate::status::sample()));
        assert_eq!(rows[0], "lifeline-b300     OK");
        assert_eq!(rows[1].trim_end(), "https://192.0.2.10/");
    }

    #[test]
    fn address_text_layout() {
        let mut d = [0u8; 14];
        d[2] = 1;
        d[13] = 4;
        let (t, cols) = address_text(&d);
        assert_eq!(t, "001.000.000.000/04");
        assert_eq!(cols[3], 4);
        assert_eq!(cols[12], 16);
    }

    #[test]
    fn text_bar_fills() {
        assert_eq!(text_bar(0), "[-------------]   0%");
        assert_eq!(text_bar(100), "[#############] 100%");
        assert_eq!(text_bar(250).len(), 20);
    }
}
