//! A panel emulator on a pseudo-terminal, for development and tests.
//!
//! # Design
//!
//! [`Emulator::start`] opens a pty pair. A thread owns the master end and behaves like the
//! module: it decodes command packets, keeps the character rows or the frame buffer and the
//! backlight level, and answers every command with a reply — or with an error packet for a bad
//! CRC, an unknown command, a command the model lacks, or bad data. The slave end's path
//! ([`Emulator::path`]) is what the driver opens as its serial device; [`Emulator::start_linked`]
//! also points a symlink at it, so a fixed device path in a config survives emulator restarts.
//! The emulator keeps its own handle on the slave end, so the pty stays usable between driver
//! connections.
//!
//! Key presses are injected as key report packets ([`Emulator::press`]); raw bytes (noise,
//! hostile input) with [`Emulator::inject_raw`]. [`Emulator::snapshot`] copies the state;
//! [`Emulator::picture`] draws it (a graphic model's frame buffer, or the character rows).
//! Dropping the emulator closes the pty: to the driver it is an unplugged panel.
//!
//! # Limits
//!
//! - No baud-rate timing: bytes arrive as fast as the pty moves them.
//! - Only the commands in [`crate::driver::cmd`] are known, and of the graphics command only
//!   the sub-commands in [`crate::driver::gfx`] (options, flush, write); the family's drawing
//!   sub-commands (pixel, line, rectangle, circle) get an error packet.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use thiserror::Error;

use crate::driver::{Model, cmd, gfx};
use crate::framebuffer::{FrameBuffer, ImageError};
use crate::link::{Key, KeyEvent};
use crate::packet::{Decoded, Decoder, MAX_DATA_LIMIT, Packet, PacketType};
use crate::screens::{TEXT_COLS, TEXT_ROWS, render_text_rows};

/// What the emulator answers to "get version".
pub const VERSION: &str = "lifeline-emu 1";

/// Emulator errors.
#[derive(Debug, Error)]
pub enum EmulatorError {
    #[error("cannot open a pseudo-terminal pair")]
    Pty(#[source] serialport::Error),
    #[error("the pseudo-terminal has no device path")]
    NoPath,
    #[error("cannot link {link} to the emulator's device")]
    Link {
        link: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{link} exists and is not a symlink; refusing to replace it")]
    NotASymlink { link: PathBuf },
    #[error("cannot start the emulator thread")]
    Thread(#[source] std::io::Error),
}

/// A copy of the emulated module's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub model: Model,
    /// Character rows (character model; blank for graphic ones).
    pub rows: [String; TEXT_ROWS],
    /// The frame buffer on show (graphic models; 1x1 for the character one).
    pub frame: FrameBuffer,
    /// Backlight 0..=100.
    pub backlight: u8,
    /// Commands answered with a reply.
    pub replies: u64,
    /// Error packets sent (bad CRC, unknown command, bad data).
    pub errors: u64,
    /// Frames shown (graphic): flushes, and writes while manual flushing is off.
    pub frames_shown: u64,
}

struct State {
    snap: Snapshot,
    back: FrameBuffer,
    text: [[u8; TEXT_COLS]; TEXT_ROWS],
    /// Graphics option: writes wait for a flush (off at power-on: each write shows).
    manual_flush: bool,
}

impl State {
    fn new(model: Model) -> Self {
        let (w, h) = model.pixels().unwrap_or((1, 1));
        State {
            snap: Snapshot {
                model,
                rows: Default::default(),
                frame: FrameBuffer::new(w, h),
                backlight: 100,
                replies: 0,
                errors: 0,
                frames_shown: 0,
            },
            back: FrameBuffer::new(w, h),
            text: [[b' '; TEXT_COLS]; TEXT_ROWS],
            manual_flush: false,
        }
    }

    fn flush(&mut self) {
        self.snap.frame = self.back.clone();
        self.snap.frames_shown += 1;
    }

    /// A graphics sub-command; the reply echoes it.
    fn graphics(&mut self, data: &[u8]) -> Result<Vec<u8>, ()> {
        match data {
            [gfx::OPTIONS, flags] => {
                self.manual_flush = flags & gfx::MANUAL_FLUSH != 0;
                Ok(vec![gfx::OPTIONS])
            }
            [gfx::FLUSH] => {
                self.flush();
                Ok(vec![gfx::FLUSH])
            }
            [gfx::WRITE, x, y, w, h, pixels @ ..] => {
                let (x, y, w, h) = (u32::from(*x), u32::from(*y), u32::from(*w), u32::from(*h));
                let stride = w.div_ceil(8) as usize;
                if w == 0
                    || h == 0
                    || x + w > self.back.width()
                    || y + h > self.back.height()
                    || pixels.len() != stride * h as usize
                {
                    return Err(());
                }
                for row in 0..h {
                    let bytes = &pixels[row as usize * stride..][..stride];
                    for col in 0..w {
                        let on = bytes[(col / 8) as usize] & (0x80 >> (col % 8)) != 0;
                        self.back.set(x + col, y + row, on);
                    }
                }
                if !self.manual_flush {
                    self.flush();
                }
                Ok(vec![gfx::WRITE])
            }
            _ => Err(()),
        }
    }

    fn sync_rows(&mut self) {
        for (row, bytes) in self.snap.rows.iter_mut().zip(self.text.iter()) {
            *row = String::from_utf8_lossy(bytes).into_owned();
        }
    }

    /// `Ok(reply data)` or `Err(())` for an error packet.
    fn execute(&mut self, command: u8, data: &[u8]) -> Result<Vec<u8>, ()> {
        let graphic = self.snap.model.pixels().is_some();
        match command {
            cmd::PING => Ok(data.to_vec()),
            cmd::VERSION => Ok(VERSION.as_bytes().to_vec()),
            cmd::CLEAR => {
                self.text = [[b' '; TEXT_COLS]; TEXT_ROWS];
                self.back.clear_all();
                self.snap.frame.clear_all();
                self.sync_rows();
                Ok(Vec::new())
            }
            cmd::BACKLIGHT => match data {
                [level] if *level <= 100 => {
                    self.snap.backlight = *level;
                    Ok(Vec::new())
                }
                _ => Err(()),
            },
            cmd::SEND_DATA if !graphic => match data {
                [col, row, text @ ..]
                    if usize::from(*col) < TEXT_COLS && usize::from(*row) < TEXT_ROWS =>
                {
                    let (col, row) = (usize::from(*col), usize::from(*row));
                    for (i, b) in text.iter().take(TEXT_COLS - col).enumerate() {
                        self.text[row][col + i] = *b;
                    }
                    self.sync_rows();
                    Ok(Vec::new())
                }
                _ => Err(()),
            },
            cmd::GRAPHICS if graphic => self.graphics(data),
            _ => Err(()),
        }
    }
}

/// A running emulator. See the module docs.
pub struct Emulator {
    model: Model,
    path: PathBuf,
    link: Option<PathBuf>,
    state: Arc<Mutex<State>>,
    outbox: Sender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("model", &self.model)
            .field("path", &self.path)
            .field("link", &self.link)
            .finish()
    }
}

impl Emulator {
    /// Start an emulator of `model` on a new pty.
    pub fn start(model: Model) -> Result<Self, EmulatorError> {
        let (mut master, slave) = TTYPort::pair().map_err(EmulatorError::Pty)?;
        let path = PathBuf::from(slave.name().ok_or(EmulatorError::NoPath)?);
        master
            .set_timeout(Duration::from_millis(10))
            .map_err(EmulatorError::Pty)?;
        let state = Arc::new(Mutex::new(State::new(model)));
        let stop = Arc::new(AtomicBool::new(false));
        let (outbox, inbox) = mpsc::channel();
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("panel-emulator".into())
                .spawn(move || serve(master, slave, model, state, inbox, stop))
                .map_err(EmulatorError::Thread)?
        };
        Ok(Emulator {
            model,
            path,
            link: None,
            state,
            outbox,
            stop,
            thread: Some(thread),
        })
    }

    /// Start, and point the symlink `link` at the device (replacing an older symlink there).
    pub fn start_linked(model: Model, link: &Path) -> Result<Self, EmulatorError> {
        let mut emu = Self::start(model)?;
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::remove_file(link).map_err(|source| EmulatorError::Link {
                    link: link.to_owned(),
                    source,
                })?;
            }
            Ok(_) => {
                return Err(EmulatorError::NotASymlink {
                    link: link.to_owned(),
                });
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&emu.path, link).map_err(|source| EmulatorError::Link {
            link: link.to_owned(),
            source,
        })?;
        emu.link = Some(link.to_owned());
        Ok(emu)
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// The device path the driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Press and release a key (two key reports).
    pub fn press(&self, key: Key) {
        self.key_event(KeyEvent { key, pressed: true });
        self.key_event(KeyEvent {
            key,
            pressed: false,
        });
    }

    /// Send one key report.
    pub fn key_event(&self, ev: KeyEvent) {
        self.inject_raw(&ev.report().encode());
    }

    /// Write raw bytes to the driver (noise, hostile input).
    pub fn inject_raw(&self, bytes: &[u8]) {
        // The thread only stops when the emulator is dropped.
        let _ = self.outbox.send(bytes.to_vec());
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> Snapshot {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snap
            .clone()
    }

    /// What the panel shows now, as a picture.
    pub fn picture(&self) -> FrameBuffer {
        let snap = self.snapshot();
        match snap.model {
            Model::Char20x4 => render_text_rows(&snap.rows),
            _ => snap.frame,
        }
    }

    /// Save [`Emulator::picture`] as a PNG.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        self.picture().save_png(path)
    }

    /// Poll the state until `cond` holds or `timeout` passes; returns the last snapshot and
    /// whether it held.
    pub fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&Snapshot) -> bool,
    ) -> (Snapshot, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.snapshot();
            if cond(&s) {
                return (s, true);
            }
            if Instant::now() >= deadline {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(link) = &self.link {
            // Only remove the link if it still points at our device.
            if std::fs::read_link(link).ok().as_deref() == Some(self.path.as_path()) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

fn serve(
    mut master: TTYPort,
    slave: TTYPort,
    model: Model,
    state: Arc<Mutex<State>>,
    inbox: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
) {
    // Keep the slave end open so the pty stays up between driver connections.
    let _slave = slave;
    let mut decoder = Decoder::new(model.max_data());
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        while let Ok(bytes) = inbox.try_recv() {
            if master.write_all(&bytes).is_err() {
                break;
            }
        }
        let n = match master.read(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                // Timeout, or nobody on the other end for a moment.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let mut out = Vec::new();
        for d in decoder.feed(&buf[..n]) {
            let (command, answer) = match d {
                Decoded::Packet(p) if p.kind() == PacketType::Command => {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    (p.command_number(), st.execute(p.command_number(), p.data()))
                }
                Decoded::Packet(_) => continue,
                // A command-typed header whose CRC failed: refuse it, like the module does.
                Decoded::BadCrc { type_byte } if type_byte >> 6 == 0 => (type_byte & 0x3F, Err(())),
                Decoded::BadCrc { .. } => continue,
            };
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let (kind, data) = match answer {
                Ok(data) => {
                    st.snap.replies += 1;
                    (PacketType::Reply, data)
                }
                Err(()) => {
                    st.snap.errors += 1;
                    (PacketType::Error, Vec::new())
                }
            };
            let data = &data[..data.len().min(MAX_DATA_LIMIT)];
            if let Ok(p) = Packet::new(kind, command, data) {
                out.extend(p.encode());
            }
        }
        if !out.is_empty() && master.write_all(&out).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
