//! The customer's window, drawn with FLTK (no GPU needed, small binary).
//!
//! Design: the UI thread owns every widget and never blocks on the network. Widget
//! callbacks only post a [`Msg`] on an `fltk::app::channel`; a Tokio task forwards the
//! session's [`Event`]s into the same channel (which wakes the FLTK loop), and the loop in
//! [`run`] handles one message at a time. Screens are groups in one window, one shown at a
//! time: connecting, terms, waiting, chat, and a final screen (ended, refused or error).
//!
//! Keyboard: Enter accepts the terms (the Accept button is a `ReturnButton` and has the
//! focus), Enter in the chat field sends, Tab moves between controls, Space presses the
//! focused button. Escape does nothing (closing by accident would end the session); the
//! window's close box ends the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fltk::app::{self, Receiver, Sender};
use fltk::button::{Button, ReturnButton};
use fltk::enums::{Align, CallbackTrigger, Color, Event as FlEvent, Font, FrameType};
use fltk::frame::Frame;
use fltk::group::Flex;
use fltk::input::Input;
use fltk::prelude::*;
use fltk::text::{TextBuffer, TextDisplay, WrapMode};
use fltk::window::Window;
use lifeline_proto::agent::{AgentInfo, Party, SessionState};
use lifeline_proto::remote::Permission;
use lifeline_proto::ticket::TicketFile;

use crate::consent::Change;
use crate::env::Env;
use crate::i18n::{Key, Texts};
use crate::session::{Event, Session, SessionConfig, SessionHandle};

const WIDTH: i32 = 480;
const HEIGHT: i32 = 560;
const HEADER: i32 = 64;
const BANNER: i32 = 30;
const MARGIN: i32 = 24;
const FONT_SIZE: i32 = 14;

const BG: (u8, u8, u8) = (246, 248, 251);
const TEXT: (u8, u8, u8) = (31, 41, 51);
const BRAND: (u8, u8, u8) = (29, 91, 168);
const MUTED: (u8, u8, u8) = (92, 104, 118);
const DANGER: (u8, u8, u8) = (180, 35, 24);
const WARN_BG: (u8, u8, u8) = (255, 244, 214);

fn rgb(c: (u8, u8, u8)) -> Color {
    Color::from_rgb(c.0, c.1, c.2)
}

/// What happens in the window.
#[derive(Debug, Clone)]
enum Msg {
    Session(Event),
    Accept,
    Decline,
    ToggleTerms,
    SendChat,
    EndSession,
    Close,
    WindowClose,
    /// The customer answered the question shown.
    Answer(bool),
    /// The customer withdrew a granted permission.
    Revoke(Permission),
    /// The customer wants to send a file to the technician.
    SendFile,
    /// The customer answers the file-transfer question with "Allow only one folder…".
    AllowOneFolder,
    /// The customer closes the open command shell.
    CloseShell,
    /// A second passed (the question's countdown).
    Tick,
    /// The person asked for the support portal (a notice with a link).
    OpenPortal,
}

/// What the customer is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Question {
    Permission(Permission),
    /// May the technician end this process?
    EndProcess {
        request: u32,
        pid: u32,
        name: String,
    },
    /// May the technician install a jump client or a support button?
    Install {
        request: u32,
        what: lifeline_proto::install::InstallKind,
    },
}

impl Question {
    /// The question's name in the log.
    fn name(&self) -> &'static str {
        match self {
            Question::Permission(p) => p.as_str(),
            Question::EndProcess { .. } => "end_process",
            Question::Install { .. } => "install",
        }
    }
}

/// A question waiting for the customer's answer.
#[derive(Debug, Clone)]
struct Ask {
    question: Question,
    rep: String,
    deadline: Instant,
}

/// How the window was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The session ended normally, was declined, or the window was closed.
    Normal,
    /// The session could not start or broke (refused, fatal error).
    Failed,
}

/// Whether a window can be shown (an X11 or Wayland display is set).
pub fn display_available(env: &Env) -> bool {
    env.first_of(&["DISPLAY", "WAYLAND_DISPLAY"]).is_some()
}

/// Sets the look: light theme, DejaVu Sans 14.
fn style(app: &app::App) {
    let _ = app;
    app::set_scheme(app::Scheme::Gtk);
    app::background(BG.0, BG.1, BG.2);
    app::background2(255, 255, 255);
    app::foreground(TEXT.0, TEXT.1, TEXT.2);
    app::set_selection_color(BRAND.0, BRAND.1, BRAND.2);
    Font::set_font(Font::Helvetica, "DejaVu Sans");
    Font::set_font(Font::HelveticaBold, "DejaVu Sans Bold");
    app::set_font_size(FONT_SIZE);
    app::set_visible_focus(true);
}

/// First letter upper-case, final full stop: error sentences are written to be embedded.
fn as_sentence(text: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?', '…']) {
        out.push('.');
    }
    out
}

fn label(text: &str, size: i32, bold: bool) -> Frame {
    let mut f = Frame::default().with_label(text);
    f.set_label_size(size);
    f.set_label_font(if bold {
        Font::HelveticaBold
    } else {
        Font::Helvetica
    });
    f.set_label_color(rgb(TEXT));
    f
}

fn paragraph(text: &str) -> Frame {
    let mut f = label(text, FONT_SIZE, false);
    f.set_align(Align::Left | Align::Top | Align::Inside | Align::Wrap);
    f
}

/// The primary answer of a screen or dialog: the brand colour, and Enter presses it.
fn return_button(text: &str) -> ReturnButton {
    let mut b = ReturnButton::default().with_label(text);
    b.set_label_size(FONT_SIZE);
    b.set_frame(FrameType::RFlatBox);
    b.set_down_frame(FrameType::RFlatBox);
    b.set_color(rgb(BRAND));
    b.set_selection_color(rgb(BRAND).darker());
    b.set_label_color(Color::White);
    b.set_label_font(Font::HelveticaBold);
    b
}

fn button(text: &str, primary: Option<(u8, u8, u8)>) -> Button {
    let mut b = Button::default().with_label(text);
    b.set_label_size(FONT_SIZE);
    b.set_frame(FrameType::RFlatBox);
    b.set_down_frame(FrameType::RFlatBox);
    match primary {
        Some(c) => {
            b.set_color(rgb(c));
            b.set_selection_color(rgb(c).darker());
            b.set_label_color(Color::White);
            b.set_label_font(Font::HelveticaBold);
        }
        None => {
            b.set_color(Color::from_rgb(226, 231, 238));
            b.set_selection_color(Color::from_rgb(206, 212, 222));
            b.set_label_color(rgb(TEXT));
        }
    }
    b
}

fn screen() -> Flex {
    let mut f = Flex::new(0, HEADER + BANNER, WIDTH, HEIGHT - HEADER - BANNER, None).column();
    f.set_margins(MARGIN, MARGIN / 2, MARGIN, MARGIN);
    f.set_pad(12);
    f
}

/// Starts a row of buttons aligned right (a flexible spacer comes first).
fn begin_row() -> Flex {
    let mut row = Flex::default().row();
    row.set_pad(12);
    Frame::default();
    row
}

/// Ends a row of buttons begun with [`begin_row`].
fn end_row(parent: &mut Flex, row: Flex) {
    row.end();
    parent.fixed(&row, 42);
}

struct Ui {
    texts: Texts,
    sender: Sender<Msg>,
    window: Window,
    header: Frame,
    banner: Frame,
    connecting: Flex,
    terms: Flex,
    terms_summary: Frame,
    terms_toggle: Button,
    terms_full: TextDisplay,
    terms_spacer: Frame,
    accept: ReturnButton,
    waiting: Flex,
    waiting_position: Frame,
    chat: Flex,
    chat_status: Frame,
    transcript: TextDisplay,
    transcript_buf: TextBuffer,
    input: Input,
    prompt: Flex,
    prompt_text: Frame,
    prompt_countdown: Frame,
    deny: Button,
    /// "Allow only one folder…", shown for the file-transfer question only.
    one_folder: Button,
    /// The folder the customer limited file transfer to, while it stands.
    shared_folder: Option<std::path::PathBuf>,
    /// "Shared folder: …", under the permission rows while the share is limited.
    shared_row: Frame,
    /// One row per permission: shown while it is granted, with a Stop button.
    active_rows: Vec<(Permission, Flex, Frame)>,
    /// Shown while a command shell is open, with its "Close it" button.
    shell_row: (Flex, Frame),
    asks: VecDeque<Ask>,
    /// The question in the box now.
    shown_ask: Option<Question>,
    granted: Vec<Permission>,
    final_screen: Flex,
    final_title: Frame,
    final_text: Frame,
    close: ReturnButton,
    /// Shown only by [`show_notice`] with a link.
    portal: Button,
    site: String,
    title: String,
    rep_name: Option<String>,
    full_terms_shown: bool,
    outcome: Outcome,
    finished: bool,
}

impl Ui {
    fn build(texts: Texts, site_name: &str, sender: Sender<Msg>) -> Ui {
        let title = texts.title(site_name);
        let mut window = Window::default()
            .with_size(WIDTH, HEIGHT)
            .with_label(&title)
            .center_screen();
        window.set_color(rgb(BG));

        let mut header = Frame::new(0, 0, WIDTH, HEADER, None).with_label(&title);
        header.set_frame(FrameType::FlatBox);
        header.set_color(rgb(BRAND));
        header.set_label_color(Color::White);
        header.set_label_font(Font::HelveticaBold);
        header.set_label_size(19);
        header.set_align(Align::Left | Align::Inside);
        // Inset the title by the margin.
        header.set_label(&format!("   {title}"));

        let mut banner = Frame::new(0, HEADER, WIDTH, BANNER, None);
        banner.set_frame(FrameType::FlatBox);
        banner.set_color(rgb(BG));
        banner.set_label_size(13);
        banner.set_label_color(rgb(TEXT));

        // (a) connecting
        let mut connecting = screen();
        Frame::default();
        let mut busy = label(texts.get(Key::Connecting), 17, false);
        busy.set_label_color(rgb(MUTED));
        connecting.fixed(&busy, 40);
        Frame::default();
        connecting.end();

        // (b) terms
        let mut terms = screen();
        let t = label(texts.get(Key::TermsTitle), 20, true);
        terms.fixed(&t, 34);
        let mut t = t;
        t.set_align(Align::Left | Align::Inside);
        let terms_summary =
            paragraph(&texts.fmt(Key::TermsSummary, site_or_default(&texts, site_name)));
        terms.fixed(&terms_summary, 110);
        let mut toggle_row = Flex::default().row();
        let mut terms_toggle = button(texts.get(Key::ShowFullTerms), None);
        terms_toggle.set_frame(FrameType::NoBox);
        terms_toggle.set_label_color(rgb(BRAND));
        terms_toggle.set_align(Align::Left | Align::Inside);
        terms_toggle.emit(sender, Msg::ToggleTerms);
        Frame::default();
        toggle_row.fixed(&terms_toggle, 300);
        toggle_row.end();
        terms.fixed(&toggle_row, 30);
        let mut terms_full = TextDisplay::default();
        let mut full_buf = TextBuffer::default();
        full_buf.set_text(texts.get(Key::FullTerms));
        terms_full.set_buffer(full_buf);
        terms_full.wrap_mode(WrapMode::AtBounds, 0);
        terms_full.set_text_font(Font::Helvetica);
        terms_full.set_text_size(13);
        terms_full.set_frame(FrameType::FlatBox);
        terms_full.set_color(Color::White);
        terms_full.hide();
        let terms_spacer = Frame::default();
        let mut row = begin_row();
        let mut decline = button(texts.get(Key::Decline), None);
        decline.emit(sender, Msg::Decline);
        let mut accept = return_button(texts.get(Key::Accept));
        accept.emit(sender, Msg::Accept);
        row.fixed(&decline, 130);
        row.fixed(&accept, 150);
        end_row(&mut terms, row);
        terms.end();
        terms.hide();

        // (c) waiting
        let mut waiting = screen();
        Frame::default();
        let w = label(texts.get(Key::Waiting), 20, true);
        waiting.fixed(&w, 40);
        let waiting_position = label("", 16, false);
        waiting.fixed(&waiting_position, 30);
        let mut keep = label(texts.get(Key::KeepOpen), FONT_SIZE, false);
        keep.set_label_color(rgb(MUTED));
        waiting.fixed(&keep, 30);
        Frame::default();
        let mut row = begin_row();
        let mut end_w = button(texts.get(Key::EndSession), Some(DANGER));
        end_w.emit(sender, Msg::EndSession);
        row.fixed(&end_w, 170);
        end_row(&mut waiting, row);
        waiting.end();
        waiting.hide();

        // (d) chat
        let mut chat = screen();
        let mut chat_status = label("", 16, true);
        chat_status.set_align(Align::Left | Align::Inside);
        chat.fixed(&chat_status, 30);

        // A permission question: the sentence, the countdown, Deny (focused) and Allow.
        let mut prompt = Flex::default().column();
        prompt.set_frame(FrameType::RFlatBox);
        prompt.set_color(Color::from_rgb(226, 236, 250));
        prompt.set_margins(14, 10, 14, 10);
        prompt.set_pad(6);
        let mut prompt_text = label("", 15, true);
        prompt_text.set_align(Align::Left | Align::Top | Align::Inside | Align::Wrap);
        let mut prompt_countdown = label("", 13, false);
        prompt_countdown.set_label_color(rgb(MUTED));
        prompt_countdown.set_align(Align::Left | Align::Inside);
        prompt.fixed(&prompt_countdown, 20);
        let mut row = begin_row();
        let mut deny = button(texts.get(Key::Deny), None);
        deny.emit(sender, Msg::Answer(false));
        let mut allow = button(texts.get(Key::Allow), Some(BRAND));
        allow.emit(sender, Msg::Answer(true));
        // Room for the three answers of the file-transfer question in the window's width.
        row.fixed(&deny, 90);
        row.fixed(&allow, 100);
        let one_folder = {
            let mut b = button(texts.get(Key::AllowOneFolder), None);
            b.emit(sender, Msg::AllowOneFolder);
            row.fixed(&b, 186);
            b.hide();
            b
        };
        row.end();
        prompt.fixed(&row, 36);
        prompt.end();
        chat.fixed(&prompt, 136);
        prompt.hide();

        // What the technician may do right now, each with a Stop button.
        let mut active_rows = Vec::new();
        for permission in Permission::ALL {
            let mut row = Flex::default().row();
            row.set_pad(10);
            row.set_frame(FrameType::FlatBox);
            row.set_color(rgb(WARN_BG));
            row.set_margins(10, 3, 6, 3);
            let mut text = label("", 13, true);
            text.set_align(Align::Left | Align::Inside | Align::Clip);
            let files = permission == Permission::FileTransfer;
            if files {
                let mut send = button(texts.get(Key::SendFile), None);
                send.set_label_size(13);
                send.emit(sender, Msg::SendFile);
                row.fixed(&send, 130);
            }
            let stop_text = if files {
                texts.get(Key::StopSharingFiles)
            } else {
                texts.get(Key::Stop)
            };
            let mut stop = button(stop_text, Some(DANGER));
            stop.set_label_size(13);
            stop.emit(sender, Msg::Revoke(permission));
            row.fixed(&stop, if files { 170 } else { 90 });
            row.end();
            chat.fixed(&row, 34);
            row.hide();
            active_rows.push((permission, row, text));
        }
        // Which folder is shared, when the customer limited file transfer to one.
        let shared_row = {
            let mut text = label("", 13, false);
            text.set_align(Align::Left | Align::Inside | Align::Clip);
            text.set_frame(FrameType::FlatBox);
            text.set_color(rgb(WARN_BG));
            chat.fixed(&text, 24);
            text.hide();
            text
        };
        let shell_row = {
            let mut row = Flex::default().row();
            row.set_pad(10);
            row.set_frame(FrameType::FlatBox);
            row.set_color(rgb(WARN_BG));
            row.set_margins(10, 3, 6, 3);
            let mut text = label("", 13, true);
            text.set_align(Align::Left | Align::Inside | Align::Clip);
            let mut close = button(texts.get(Key::CloseShell), Some(DANGER));
            close.set_label_size(13);
            close.emit(sender, Msg::CloseShell);
            row.fixed(&close, 110);
            row.end();
            chat.fixed(&row, 34);
            row.hide();
            (row, text)
        };

        let mut transcript = TextDisplay::default();
        let transcript_buf = TextBuffer::default();
        transcript.set_buffer(transcript_buf.clone());
        transcript.wrap_mode(WrapMode::AtBounds, 0);
        transcript.set_text_font(Font::Helvetica);
        transcript.set_text_size(FONT_SIZE);
        transcript.set_frame(FrameType::FlatBox);
        transcript.set_color(Color::White);
        let mut input_row = Flex::default().row();
        input_row.set_pad(10);
        let mut input = Input::default();
        input.set_text_size(FONT_SIZE);
        input.set_maximum_size(lifeline_proto::MAX_CHAT_CHARS as i32);
        input.set_trigger(CallbackTrigger::EnterKeyAlways);
        input.emit(sender, Msg::SendChat);
        let mut send = button(texts.get(Key::Send), Some(BRAND));
        send.emit(sender, Msg::SendChat);
        input_row.fixed(&send, 100);
        input_row.end();
        chat.fixed(&input_row, 38);
        let mut row = begin_row();
        let mut end_c = button(texts.get(Key::EndSession), Some(DANGER));
        end_c.emit(sender, Msg::EndSession);
        row.fixed(&end_c, 170);
        end_row(&mut chat, row);
        chat.end();
        chat.hide();

        // (e) ended / refused / error
        let mut final_screen = screen();
        Frame::default();
        let final_title = label("", 20, true);
        final_screen.fixed(&final_title, 40);
        let mut final_text = paragraph("");
        final_text.set_align(Align::Center | Align::Top | Align::Inside | Align::Wrap);
        final_screen.fixed(&final_text, 150);
        Frame::default();
        let mut row = begin_row();
        let mut close = return_button(texts.get(Key::Close));
        close.emit(sender, Msg::Close);
        let mut portal = Button::default().with_label(texts.get(Key::OpenPortal));
        portal.set_label_size(FONT_SIZE);
        portal.emit(sender, Msg::OpenPortal);
        portal.hide();
        row.fixed(&portal, 230);
        row.fixed(&close, 150);
        end_row(&mut final_screen, row);
        final_screen.end();
        final_screen.hide();

        window.end();
        window.make_resizable(false);
        let s = sender;
        window.set_callback(move |_| {
            // Only the close box; Escape (a shortcut event) is ignored on purpose.
            if app::event() == FlEvent::Close {
                s.send(Msg::WindowClose);
            }
        });

        Ui {
            texts,
            sender,
            window,
            header,
            banner,
            connecting,
            terms,
            terms_summary,
            terms_toggle,
            terms_full,
            terms_spacer,
            accept,
            waiting,
            waiting_position,
            chat,
            chat_status,
            transcript,
            transcript_buf,
            input,
            prompt,
            prompt_text,
            prompt_countdown,
            deny,
            one_folder,
            shared_folder: None,
            shared_row,
            active_rows,
            shell_row,
            asks: VecDeque::new(),
            shown_ask: None,
            granted: Vec::new(),
            final_screen,
            final_title,
            final_text,
            close,
            portal,
            site: site_name.trim().to_owned(),
            title,
            rep_name: None,
            full_terms_shown: false,
            outcome: Outcome::Normal,
            finished: false,
        }
    }

    fn show_only(&mut self, which: Screen) {
        for (screen, group) in [
            (Screen::Connecting, &mut self.connecting),
            (Screen::Terms, &mut self.terms),
            (Screen::Waiting, &mut self.waiting),
            (Screen::Chat, &mut self.chat),
            (Screen::Final, &mut self.final_screen),
        ] {
            if screen == which {
                group.show();
            } else {
                group.hide();
            }
        }
        match which {
            Screen::Terms => {
                let _ = self.accept.take_focus();
            }
            Screen::Chat => {
                let _ = self.input.take_focus();
            }
            Screen::Final => {
                let _ = self.close.take_focus();
            }
            Screen::Connecting | Screen::Waiting => {}
        }
        self.window.redraw();
    }

    fn current(&self) -> Screen {
        if self.terms.visible() {
            Screen::Terms
        } else if self.waiting.visible() {
            Screen::Waiting
        } else if self.chat.visible() {
            Screen::Chat
        } else if self.final_screen.visible() {
            Screen::Final
        } else {
            Screen::Connecting
        }
    }

    fn set_banner(&mut self, text: Option<&str>) {
        match text {
            Some(t) => {
                self.banner.set_label(t);
                self.banner.set_color(rgb(WARN_BG));
            }
            None => {
                self.banner.set_label("");
                self.banner.set_color(rgb(BG));
            }
        }
        self.banner.redraw();
    }

    fn append(&mut self, line: &str) {
        if self.transcript_buf.length() > 0 {
            self.transcript_buf.append("\n");
        }
        self.transcript_buf.append(line);
        let end = self.transcript_buf.length();
        self.transcript.set_insert_position(end);
        self.transcript.show_insert_position();
    }

    fn show_final(&mut self, title: &str, text: &str, outcome: Outcome) {
        self.finished = true;
        self.outcome = outcome;
        self.set_banner(None);
        self.final_title.set_label(title);
        self.final_text.set_label(text);
        self.show_only(Screen::Final);
    }

    fn enter_chat(&mut self) {
        let name = self
            .rep_name
            .clone()
            .unwrap_or_else(|| self.texts.get(Key::Technician).to_owned());
        self.chat_status
            .set_label(&self.texts.fmt(Key::ConnectedWith, &name));
        if self.current() != Screen::Chat {
            self.show_only(Screen::Chat);
        }
    }

    fn set_site(&mut self, site: &str) {
        if self.site.is_empty() && !site.trim().is_empty() {
            self.site = site.trim().to_owned();
            let title = self.texts.title(&self.site);
            self.header.set_label(&format!("   {title}"));
            self.title = title;
            self.update_title();
            let summary = self.texts.fmt(Key::TermsSummary, &self.site);
            self.terms_summary.set_label(&summary);
        }
    }

    fn on_event(&mut self, event: Event) {
        if self.finished {
            return;
        }
        match event {
            Event::Connected {
                site,
                rep_name,
                state,
            } => {
                self.set_site(&site);
                self.rep_name = rep_name;
                match state {
                    SessionState::Terms => self.show_only(Screen::Terms),
                    SessionState::Waiting => self.show_waiting(None),
                    SessionState::Active => self.enter_chat(),
                    SessionState::Ended => {
                        let t = self.texts;
                        self.show_final(
                            t.get(Key::EndedTitle),
                            t.get(Key::EndedBySystem),
                            Outcome::Normal,
                        );
                    }
                }
            }
            Event::Queue { position } => {
                if self.current() == Screen::Chat {
                    let text = self.texts.fmt(Key::QueuePosition, position);
                    self.chat_status.set_label(&text);
                } else {
                    self.show_waiting(Some(position));
                }
            }
            Event::RepJoined { name } => {
                let line = self.texts.fmt(Key::RepJoinedLine, &name);
                self.rep_name = Some(name);
                self.enter_chat();
                self.append(&line);
            }
            Event::RepLeft { name } => {
                let line = self.texts.fmt(Key::RepLeftLine, &name);
                self.append(&line);
                let waiting = self.texts.get(Key::Waiting);
                self.chat_status.set_label(waiting);
            }
            Event::Chat {
                from, name, text, ..
            } => match from {
                // Shown when typed.
                Party::Customer => {}
                Party::Rep => {
                    let name = if name.trim().is_empty() {
                        self.texts.get(Key::Technician).to_owned()
                    } else {
                        name
                    };
                    if self.current() != Screen::Chat {
                        self.enter_chat();
                    }
                    self.append(&format!("{name}: {text}"));
                }
                Party::System => self.append(&text),
            },
            Event::Ended { by, reason: _ } => {
                let t = self.texts;
                let text = match by {
                    Party::Customer => t.get(Key::EndedByYou),
                    Party::Rep => t.get(Key::EndedByRep),
                    Party::System => t.get(Key::EndedBySystem),
                };
                let text = format!("{text}\n\n{}", t.get(Key::CloseHint));
                self.show_final(t.get(Key::EndedTitle), &text, Outcome::Normal);
            }
            Event::Refused { code, message: _ } => {
                let t = self.texts;
                self.show_final(
                    t.get(Key::RefusedTitle),
                    t.get(Key::for_refusal(code)),
                    Outcome::Failed,
                );
            }
            Event::Fatal { message } => {
                let t = self.texts;
                self.show_final(
                    t.get(Key::ErrorTitle),
                    &as_sentence(&message),
                    Outcome::Failed,
                );
            }
            Event::Reconnecting { attempt } => {
                let text = self.texts.fmt(Key::Reconnecting, attempt);
                self.set_banner(Some(&text));
            }
            Event::LinkRestored => self.set_banner(None),
            Event::PermissionAsked {
                permission,
                rep,
                expires_in,
            } => {
                self.asks
                    .retain(|a| a.question != Question::Permission(permission));
                self.ask(Question::Permission(permission), rep, expires_in);
            }
            Event::EndProcessAsked {
                request,
                pid,
                name,
                rep,
                expires_in,
            } => self.ask(Question::EndProcess { request, pid, name }, rep, expires_in),
            Event::InstallAsked {
                request,
                what,
                rep,
                expires_in,
            } => self.ask(Question::Install { request, what }, rep, expires_in),
            Event::InstallDone(done) => {
                use lifeline_proto::install::{InstallKind, InstallOutcome};
                let key = match (done.outcome, done.what) {
                    (InstallOutcome::Installed, InstallKind::JumpClient) => Key::InstalledJumpLine,
                    (InstallOutcome::Installed, InstallKind::SupportButton) => {
                        Key::InstalledButtonLine
                    }
                    _ => Key::InstallFailedLine,
                };
                self.append(self.texts.get(key));
            }
            Event::EndProcessDone(done) => {
                self.asks.retain(|a| {
                    !matches!(a.question, Question::EndProcess { request, .. } if request == done.request)
                });
                let t = self.texts;
                let key = if done.outcome == lifeline_proto::tools::EndOutcome::Ended {
                    Key::ProcessEndedLine
                } else {
                    Key::ProcessKeptLine
                };
                self.append(&t.fmt(key, format!("{} ({})", done.name, done.pid)));
                self.show_prompt();
            }
            Event::Shell(change) => {
                let (row, text) = &mut self.shell_row;
                match change {
                    crate::tools::shell::ShellChange::Opened { elevated } => {
                        let key = if elevated {
                            Key::ShellOpenElevated
                        } else {
                            Key::ShellOpen
                        };
                        text.set_label(&format!("●  {}", self.texts.get(key)));
                        row.show();
                    }
                    crate::tools::shell::ShellChange::Refused => row.hide(),
                    crate::tools::shell::ShellChange::Closed => {
                        row.hide();
                        let line = self.texts.get(Key::ShellClosedLine).to_owned();
                        self.append(&line);
                    }
                }
                self.chat.layout();
                self.window.redraw();
            }
            Event::Permission { permission, change } => {
                self.asks
                    .retain(|a| a.question != Question::Permission(permission));
                self.granted.retain(|p| *p != permission);
                if change.granted() {
                    self.granted.push(permission);
                } else if permission == Permission::FileTransfer {
                    self.shared_folder = None;
                }
                let t = self.texts;
                let name = t.get(Key::name(permission));
                let line = match change {
                    Change::Granted => t.fmt(Key::AllowedLine, name),
                    Change::Denied => t.fmt(Key::DeniedLine, name),
                    Change::TimedOut => t.fmt(Key::TimedOutLine, name),
                    Change::Revoked => t.fmt(Key::StoppedLine, name),
                    Change::Unavailable => t.fmt(Key::UnavailableLine, name),
                };
                self.append(&line);
                self.show_prompt();
                self.show_grants();
            }
        }
    }

    /// Puts a question to the customer (from `rep`, or "the technician") and brings the
    /// window to the front: the question must be seen.
    fn ask(&mut self, question: Question, rep: String, expires_in: Duration) {
        let rep = if rep.trim().is_empty() {
            self.rep_name
                .clone()
                .unwrap_or_else(|| self.texts.get(Key::Technician).to_owned())
        } else {
            rep
        };
        self.asks.push_back(Ask {
            question,
            rep,
            deadline: Instant::now() + expires_in,
        });
        if self.current() != Screen::Chat {
            self.enter_chat();
        }
        self.show_prompt();
        self.window.show();
    }

    /// Shows the first open question (or hides the box when there is none).
    fn show_prompt(&mut self) {
        let now = Instant::now();
        self.asks.retain(|a| a.deadline > now);
        match self.asks.front().cloned() {
            Some(ask) => {
                let text = match &ask.question {
                    Question::Permission(p) => self.texts.fmt(Key::ask(*p), &ask.rep),
                    Question::EndProcess { pid, name, .. } => self
                        .texts
                        .get(Key::AskEndProcess)
                        .replace("{0}", &ask.rep)
                        .replace("{1}", name)
                        .replace("{2}", &pid.to_string()),
                    Question::Install { what, .. } => {
                        let key = match what {
                            lifeline_proto::install::InstallKind::JumpClient => Key::AskInstallJump,
                            lifeline_proto::install::InstallKind::SupportButton => {
                                Key::AskInstallButton
                            }
                        };
                        self.texts.fmt(key, &ask.rep)
                    }
                };
                self.prompt_text.set_label(&text);
                if ask.question == Question::Permission(Permission::FileTransfer) {
                    self.one_folder.show();
                } else {
                    self.one_folder.hide();
                }
                self.tick();
                self.prompt.show();
                if self.shown_ask.as_ref() != Some(&ask.question) {
                    // Each new question starts with the safe answer focused: a stray
                    // Enter or Space refuses.
                    self.shown_ask = Some(ask.question.clone());
                    let _ = self.deny.take_focus();
                    tracing::info!("event=question_shown question={}", ask.question.name());
                }
            }
            None => {
                self.shown_ask = None;
                if self.prompt.visible() {
                    self.prompt.hide();
                    let _ = self.input.take_focus();
                }
            }
        }
        self.chat.layout();
        self.window.redraw();
    }

    /// Updates the countdown of the question shown.
    fn tick(&mut self) {
        if let Some(ask) = self.asks.front() {
            let left = ask.deadline.saturating_duration_since(Instant::now());
            let text = self.texts.fmt(Key::AutoDeny, left.as_secs());
            self.prompt_countdown.set_label(&text);
        }
    }

    /// The question shown, answered.
    fn answer(&mut self) -> Option<Question> {
        let ask = self.asks.pop_front()?;
        self.show_prompt();
        Some(ask.question)
    }

    /// One row per granted permission, and the title says when the screen is shared.
    fn show_grants(&mut self) {
        let t = self.texts;
        let rep = self
            .rep_name
            .clone()
            .unwrap_or_else(|| t.get(Key::Technician).to_owned());
        for (permission, row, text) in &mut self.active_rows {
            if self.granted.contains(permission) {
                let label = match permission {
                    Permission::View => t.fmt(Key::ActiveView, &rep),
                    Permission::Control => t.fmt(Key::ActiveControl, &rep),
                    other => t.fmt(Key::ActiveOther, t.get(Key::name(*other))),
                };
                text.set_label(&format!("●  {label}"));
                row.show();
            } else {
                row.hide();
            }
        }
        self.show_shared_folder();
        self.update_title();
        self.chat.layout();
        self.window.redraw();
    }

    /// "Shared folder: …" while file transfer is limited to one folder.
    fn show_shared_folder(&mut self) {
        match &self.shared_folder {
            Some(dir) if self.granted.contains(&Permission::FileTransfer) => {
                let text = self.texts.fmt(Key::SharedFolder, dir.display());
                self.shared_row.set_label(&format!("      {text}"));
                self.shared_row.set_tooltip(&text);
                self.shared_row.show();
            }
            _ => self.shared_row.hide(),
        }
    }

    fn update_title(&mut self) {
        let title = if self.granted.contains(&Permission::View) {
            format!("{}{}", self.texts.get(Key::SharingTitle), self.title)
        } else {
            self.title.clone()
        };
        self.window.set_label(&title);
    }

    fn show_waiting(&mut self, position: Option<u32>) {
        match position {
            Some(p) => {
                let text = self.texts.fmt(Key::QueuePosition, p);
                self.waiting_position.set_label(&text);
            }
            None => self.waiting_position.set_label(""),
        }
        if self.current() != Screen::Waiting {
            self.show_only(Screen::Waiting);
        } else {
            self.window.redraw();
        }
    }

    fn toggle_terms(&mut self) {
        self.full_terms_shown = !self.full_terms_shown;
        if self.full_terms_shown {
            self.terms_full.show();
            self.terms_spacer.hide();
            self.terms_toggle
                .set_label(self.texts.get(Key::HideFullTerms));
        } else {
            self.terms_full.hide();
            self.terms_spacer.show();
            self.terms_toggle
                .set_label(self.texts.get(Key::ShowFullTerms));
        }
        self.terms.layout();
        self.window.redraw();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    Connecting,
    Terms,
    Waiting,
    Chat,
    Final,
}

fn site_or_default(texts: &Texts, site: &str) -> String {
    if site.trim().is_empty() {
        texts.get(Key::DefaultTitle).to_owned()
    } else {
        site.trim().to_owned()
    }
}

/// Shows the window and runs a session until the person closes it. The session runs on
/// `runtime`; this thread only draws.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    ticket: TicketFile,
    info: AgentInfo,
    texts: Texts,
    config: SessionConfig,
) -> Outcome {
    let app = app::App::default();
    style(&app);
    let (sender, receiver): (Sender<Msg>, Receiver<Msg>) = app::channel();
    let mut ui = Ui::build(texts, &ticket.site_name, sender);
    ui.show_only(Screen::Connecting);
    ui.window.show();
    // Where the "send a file" chooser opens.
    let chooser_start = config
        .files_root
        .clone()
        .or_else(|| config.env.get("HOME").map(std::path::PathBuf::from))
        .map_or_else(|| "/".to_owned(), |p| p.display().to_string());

    let handle = {
        let _guard = runtime.enter();
        let (handle, mut events) = Session::start_with(ticket, info, config);
        let forward = ui.sender;
        runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                forward.send(Msg::Session(event));
            }
        });
        handle
    };

    {
        let tick = ui.sender;
        app::add_timeout3(1.0, move |h| {
            tick.send(Msg::Tick);
            app::repeat_timeout3(1.0, h);
        });
    }

    while app.wait() {
        let Some(msg) = receiver.recv() else { continue };
        match msg {
            Msg::Session(event) => ui.on_event(event),
            Msg::Answer(allow) => match ui.answer() {
                Some(Question::Permission(permission)) => {
                    handle.permission(permission, allow);
                }
                Some(Question::EndProcess { request, .. }) => {
                    handle.end_process(request, allow);
                }
                Some(Question::Install { request, .. }) => {
                    handle.send(crate::session::Command::Install { request, allow });
                }
                None => {}
            },
            Msg::Revoke(permission) => {
                handle.permission(permission, false);
            }
            Msg::AllowOneFolder => allow_one_folder(&mut ui, &handle, &chooser_start),
            Msg::CloseShell => {
                handle.send(crate::session::Command::CloseShell);
            }
            Msg::SendFile => {
                if let Some(path) = fltk::dialog::file_chooser(
                    ui.texts.get(Key::ChooseFile),
                    "*",
                    &chooser_start,
                    false,
                ) {
                    handle.send(crate::session::Command::SendFile(path.into()));
                }
            }
            Msg::Tick => {
                if !ui.asks.is_empty() {
                    ui.show_prompt();
                }
            }
            Msg::Accept => {
                if ui.current() == Screen::Terms {
                    handle.accept_terms();
                    ui.show_waiting(None);
                }
            }
            Msg::Decline => {
                end_and_wait(runtime, &handle, "declined terms");
                break;
            }
            Msg::ToggleTerms => ui.toggle_terms(),
            Msg::SendChat => {
                let text = ui.input.value();
                let text = text.trim();
                if !text.is_empty() {
                    handle.chat(text);
                    let you = ui.texts.get(Key::You);
                    ui.append(&format!("{you}: {text}"));
                    ui.input.set_value("");
                }
                let _ = ui.input.take_focus();
            }
            Msg::EndSession => {
                handle.end("ended by customer");
            }
            Msg::Close => break,
            Msg::OpenPortal => {}
            Msg::WindowClose => {
                if !ui.finished {
                    end_and_wait(runtime, &handle, "closed window");
                }
                break;
            }
        }
    }
    ui.window.hide();
    ui.outcome
}

/// "Allow only one folder…": the customer picks the folder with the portable chooser (it
/// runs under any X server); file transfer is then allowed inside it only. Cancelling the
/// chooser leaves the question open.
fn allow_one_folder(ui: &mut Ui, handle: &SessionHandle, start: &str) {
    let files = Question::Permission(Permission::FileTransfer);
    if ui.asks.front().map(|a| &a.question) != Some(&files) {
        return;
    }
    let Some(dir) = fltk::dialog::dir_chooser(ui.texts.get(Key::ChooseSharedFolder), start, false)
    else {
        return;
    };
    let dir = std::path::PathBuf::from(dir.trim_end_matches('/'));
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from("/")
    } else {
        dir
    };
    // The question may have timed out while the chooser was open.
    if ui.asks.front().map(|a| &a.question) != Some(&files) {
        return;
    }
    ui.answer();
    ui.shared_folder = Some(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
    handle.send(crate::session::Command::AllowFilesIn(dir));
}

/// Sends End and waits up to a second for it to go out.
fn end_and_wait(runtime: &tokio::runtime::Runtime, handle: &SessionHandle, reason: &str) {
    if handle.end(reason) {
        // The timer must be created inside the runtime, hence the async block.
        runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), handle.finished()).await;
        });
    }
}

/// A small question window: a title, a paragraph of `text_h` pixels, a password field when
/// `secret`, and two buttons, `no` and `yes` (the default: Enter). Closing it or pressing
/// Escape sends [`Msg::WindowClose`]; the buttons send [`Msg::Answer`].
struct Dialog {
    app: app::App,
    window: Window,
    receiver: Receiver<Msg>,
    secret: Option<fltk::input::SecretInput>,
}

impl Dialog {
    fn show(
        size: (i32, i32),
        title: &str,
        text: &str,
        text_h: i32,
        secret: bool,
        (no, yes): (&str, &str),
    ) -> Dialog {
        let app = app::App::default();
        style(&app);
        let (sender, receiver): (Sender<Msg>, Receiver<Msg>) = app::channel();
        let mut window = Window::default()
            .with_size(size.0, size.1)
            .with_label(title);
        window.set_color(rgb(BG));
        let mut col = Flex::default_fill().column();
        col.set_margins(MARGIN, MARGIN / 2, MARGIN, MARGIN / 2);
        col.set_pad(10);
        let heading = label(title, 16, true);
        col.fixed(&heading, 26);
        let paragraph = paragraph(text);
        col.fixed(&paragraph, text_h);
        let secret = secret.then(|| {
            let mut field = fltk::input::SecretInput::default();
            field.set_text_size(FONT_SIZE);
            col.fixed(&field, 32);
            field
        });
        let mut row = Flex::default().row();
        row.set_pad(10);
        Frame::default();
        let mut no = button(no, None);
        no.emit(sender, Msg::Answer(false));
        let mut yes = return_button(yes);
        yes.emit(sender, Msg::Answer(true));
        row.fixed(&no, 110);
        row.fixed(&yes, 110);
        row.end();
        col.fixed(&row, 34);
        col.end();
        window.end();
        window.set_callback(move |_| sender.send(Msg::WindowClose));
        window.show();
        Dialog {
            app,
            window,
            receiver,
            secret,
        }
    }
}

/// The password dialog of "run as administrator" (the client started by `sudo` as its
/// askpass program): the password the customer typed, or `None` when they cancelled or
/// closed the dialog. The password never leaves this computer: it goes to `sudo` on stdout.
pub fn ask_password(texts: Texts) -> Option<String> {
    let mut d = Dialog::show(
        (440, 210),
        texts.get(Key::AskpassTitle),
        texts.get(Key::AskpassText),
        64,
        true,
        (texts.get(Key::AskpassCancel), texts.get(Key::AskpassOk)),
    );
    let mut secret = d.secret.take()?;
    let _ = secret.take_focus();
    let mut answer = None;
    while d.app.wait() {
        match d.receiver.recv() {
            Some(Msg::Answer(true)) => {
                answer = Some(secret.value());
                break;
            }
            Some(Msg::Answer(false) | Msg::WindowClose) => break,
            _ => {}
        }
    }
    d.window.hide();
    answer
}

/// What the logged-in user answered to a jump's question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpAnswer {
    Allowed,
    Declined,
    /// No answer before the time-out.
    NoAnswer,
}

/// Asks the logged-in user whether `rep` from `site` may connect (a jump with the prompt
/// policy); closing the window declines, silence for `timeout` counts as no answer.
pub fn ask_jump(texts: Texts, rep: &str, site: &str, timeout: std::time::Duration) -> JumpAnswer {
    let question = texts
        .get(Key::JumpAskText)
        .replace("{0}", rep)
        .replace("{1}", site);
    let mut d = Dialog::show(
        (460, 190),
        texts.get(Key::JumpAskTitle),
        &question,
        80,
        false,
        (texts.get(Key::JumpDecline), texts.get(Key::JumpAllow)),
    );
    let deadline = std::time::Instant::now() + timeout;
    let mut answer = JumpAnswer::NoAnswer;
    while std::time::Instant::now() < deadline {
        if !matches!(app::wait_for(0.2), Ok(true)) && !d.window.shown() {
            break;
        }
        match d.receiver.recv() {
            Some(Msg::Answer(true)) => {
                answer = JumpAnswer::Allowed;
                break;
            }
            Some(Msg::Answer(false) | Msg::WindowClose) => {
                answer = JumpAnswer::Declined;
                break;
            }
            _ => {}
        }
    }
    d.window.hide();
    answer
}

/// Shows a single sentence (e.g. a ticket error) with a Close button, until closed.
pub fn show_error(texts: Texts, sentence: &str) {
    show_notice(
        texts,
        texts.get(Key::ErrorTitle),
        &as_sentence(sentence),
        None,
    );
}

/// A window with one message (a support button installed or expired), a Close button and,
/// with `portal`, a button that opens that address in the person's browser.
pub fn show_notice(texts: Texts, title: &str, sentence: &str, portal: Option<&str>) {
    let app = app::App::default();
    style(&app);
    let (sender, receiver): (Sender<Msg>, Receiver<Msg>) = app::channel();
    let mut ui = Ui::build(texts, "", sender);
    ui.show_final(title, sentence, Outcome::Normal);
    if portal.is_some() {
        ui.portal.show();
    }
    ui.window.show();
    while app.wait() {
        match receiver.recv() {
            Some(Msg::Close | Msg::WindowClose) => break,
            Some(Msg::OpenPortal) => {
                if let Some(url) = portal {
                    tracing::info!("event=open_portal url={url:?}");
                    crate::platform::open_url(url);
                }
                break;
            }
            _ => {}
        }
    }
    ui.window.hide();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        assert_eq!(
            as_sentence("the box is gone: try again"),
            "The box is gone: try again."
        );
        assert_eq!(as_sentence("élan!"), "Élan!");
        assert_eq!(as_sentence(" "), "");
    }

    #[test]
    fn display_detection() {
        assert!(!display_available(&Env::default()));
        assert!(display_available(&Env::from_pairs([("DISPLAY", ":0")])));
    }
}
