//! Display drivers: the character module (20x4) and the graphic modules (128x64, 244x68).
//!
//! # Design
//!
//! [`Display`] is what the service talks to: initialise, show a [`Screen`], set the
//! backlight, read keys. Both drivers sit on a [`Link`] and render screens with
//! [`crate::screens`]; each keeps what it last sent and sends only what changed.
//!
//! Command numbers ([`cmd`]):
//!
//! | number | command | data | used by |
//! | --- | --- | --- | --- |
//! | 0 (0x00) | ping | up to 16 bytes, echoed in the reply | both |
//! | 1 (0x01) | get version | none; reply is a version string | both |
//! | 6 (0x06) | clear screen | none | both |
//! | 14 (0x0E) | backlight | one byte, 0 (off) ..= 100 (full) | both |
//! | 31 (0x1F) | send data to LCD | column, row, then the characters | character |
//! | 40 (0x28) | graphics | a sub-command ([`gfx`]) and its data; the reply echoes the sub-command | graphic |
//!
//! Graphics sub-commands ([`gfx`]), the first data byte of command 40:
//!
//! | sub | meaning | data after it |
//! | --- | --- | --- |
//! | 0 | graphics options | one byte of flags: bit 0 = manual buffer flush (writes go to a buffer, shown on "flush") |
//! | 1 | flush | none: show the buffer |
//! | 2 | write to the buffer | `x`, `y`, `width`, `height`, then the rectangle's pixels |
//!
//! Where these come from: 0, 1, 6, 14 and 31 and the key reports are the character family's
//! numbers. For the graphic family (the 244x68 packet modules), command 40 is its graphics
//! command and the sub-commands above are its own: 0 sets the graphics options with bit 0
//! "manual buffer flush", 1 flushes the buffer to the LCD, 2 writes to the buffer (it also has
//! 5 to 8 for pixels, lines, rectangles and circles, which we do not use; command 41 is its
//! video command, so nothing of ours uses 41). Those numbers were checked against a published
//! driver for that family, not against the module's data sheet. **The pixel layout inside
//! sub-command 2 is ours and is not confirmed for real hardware**: 1 bit per pixel, rows
//! packed MSB leftmost and padded to whole bytes (as [`FrameBuffer`] stores them), light = 0.
//! The family's modules have grayscale pixels, so their layout may differ (e.g. a byte per
//! pixel); once a module is on the bench, [`GraphicDisplay::write_frame`] is the one place to
//! change. The emulator implements exactly the table above.
//!
//! The driver turns manual flushing on at [`Display::init`], writes the bands of rows that
//! changed, then flushes once, so a frame never appears half drawn. A band is as many whole
//! rows as fit in one packet (`max_data` of [`Model::max_data`] minus the 5 header bytes):
//! 3 rows of 31 bytes at 244x68 (23 writes for a whole frame), 7 rows of 16 bytes at 128x64.
//!
//! # Limits
//!
//! - After a reconnect the driver is created anew, so it redraws everything.
//! - The character driver writes whole rows; it does not use the cursor commands.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::framebuffer::FrameBuffer;
use crate::link::{KeyEvent, Link, LinkError};
use crate::packet::{MAX_CHAR_DATA, MAX_DATA_LIMIT};
use crate::screens::{self, Screen, TEXT_COLS, TEXT_ROWS};

/// Command numbers (see the module docs).
pub mod cmd {
    pub const PING: u8 = 0x00;
    pub const VERSION: u8 = 0x01;
    pub const CLEAR: u8 = 0x06;
    pub const BACKLIGHT: u8 = 0x0E;
    pub const SEND_DATA: u8 = 0x1F;
    pub const GRAPHICS: u8 = 0x28;
}

/// Sub-commands of [`cmd::GRAPHICS`] (see the module docs).
pub mod gfx {
    pub const OPTIONS: u8 = 0x00;
    pub const FLUSH: u8 = 0x01;
    pub const WRITE: u8 = 0x02;
    /// [`OPTIONS`] flag: writes wait for [`FLUSH`].
    pub const MANUAL_FLUSH: u8 = 0x01;
    /// Bytes before the pixels in a [`WRITE`]: sub-command, x, y, width, height.
    pub const WRITE_HEADER: usize = 5;
}

/// Default data maximum for graphic modules' packets.
pub const GRAPHIC_MAX_DATA: usize = 122;

/// Driver errors.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error("talking to the panel failed")]
    Link(#[from] LinkError),
    #[error(
        "the panel answered graphics sub-command {sub} with {reply:?}: not a module of the expected family?"
    )]
    UnexpectedReply { sub: u8, reply: Vec<u8> },
    #[error("the frame is {got_w}x{got_h} but the panel is {want_w}x{want_h}")]
    WrongSize {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}

impl DriverError {
    /// The device is gone: reconnect.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, DriverError::Link(e) if e.is_disconnect())
    }
}

/// The supported panel models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Model {
    #[serde(rename = "char-20x4")]
    Char20x4,
    #[serde(rename = "graphic-128x64")]
    Graphic128x64,
    #[serde(rename = "graphic-244x68")]
    Graphic244x68,
}

impl Model {
    pub const ALL: [Model; 3] = [Model::Char20x4, Model::Graphic128x64, Model::Graphic244x68];

    /// Pixel size of a graphic model.
    pub fn pixels(self) -> Option<(u32, u32)> {
        match self {
            Model::Char20x4 => None,
            Model::Graphic128x64 => Some((128, 64)),
            Model::Graphic244x68 => Some((244, 68)),
        }
    }

    /// Most data bytes per packet the model accepts.
    pub fn max_data(self) -> usize {
        match self {
            Model::Char20x4 => MAX_CHAR_DATA,
            _ => GRAPHIC_MAX_DATA.min(MAX_DATA_LIMIT),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::Char20x4 => "char-20x4",
            Model::Graphic128x64 => "graphic-128x64",
            Model::Graphic244x68 => "graphic-244x68",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown model name.
#[derive(Debug, Error)]
#[error("unknown panel model {0:?}: use char-20x4, graphic-128x64 or graphic-244x68")]
pub struct UnknownModel(pub String);

impl FromStr for Model {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownModel(s.to_string()))
    }
}

/// What the service needs from a panel.
pub trait Display {
    fn model(&self) -> Model;
    /// Check the module answers and clear it.
    fn init(&mut self) -> Result<(), DriverError>;
    /// Show a screen (sends only what changed since the last one).
    fn show(&mut self, screen: &Screen) -> Result<(), DriverError>;
    /// Set the backlight, 0..=100.
    fn set_backlight(&mut self, level: u8) -> Result<(), DriverError>;
    /// Check the module still answers.
    fn ping(&mut self) -> Result<(), DriverError>;
    /// Wait up to `wait` for key events.
    fn poll_keys(&mut self, wait: Duration) -> Result<Vec<KeyEvent>, DriverError>;
}

fn ping<T: Read + Write>(link: &mut Link<T>) -> Result<(), DriverError> {
    const PROBE: &[u8] = b"lifeline";
    let echo = link.command(cmd::PING, PROBE)?;
    if echo != PROBE {
        tracing::debug!(?echo, "ping echo differs");
    }
    Ok(())
}

/// The 20x4 character module.
#[derive(Debug)]
pub struct CharDisplay<T> {
    link: Link<T>,
    rows: [Option<String>; TEXT_ROWS],
}

impl<T: Read + Write> CharDisplay<T> {
    pub fn new(io: T) -> Self {
        CharDisplay {
            link: Link::new(io, MAX_CHAR_DATA),
            rows: Default::default(),
        }
    }

    /// Write four rows (each cut or padded to 20 characters), only the changed ones.
    pub fn write_rows(&mut self, rows: &[String; TEXT_ROWS]) -> Result<(), DriverError> {
        for (i, row) in rows.iter().enumerate() {
            let text = format!("{:<w$}", screens::fit(row, TEXT_COLS), w = TEXT_COLS);
            if self.rows[i].as_deref() == Some(text.as_str()) {
                continue;
            }
            let mut data = vec![0, i as u8];
            data.extend_from_slice(text.as_bytes());
            self.link.command(cmd::SEND_DATA, &data)?;
            self.rows[i] = Some(text);
        }
        Ok(())
    }

    pub fn link_mut(&mut self) -> &mut Link<T> {
        &mut self.link
    }
}

impl<T: Read + Write> Display for CharDisplay<T> {
    fn model(&self) -> Model {
        Model::Char20x4
    }

    fn init(&mut self) -> Result<(), DriverError> {
        ping(&mut self.link)?;
        self.link.command(cmd::CLEAR, &[])?;
        self.rows = Default::default();
        Ok(())
    }

    fn show(&mut self, screen: &Screen) -> Result<(), DriverError> {
        self.write_rows(&screens::render_text(screen))
    }

    fn set_backlight(&mut self, level: u8) -> Result<(), DriverError> {
        self.link.command(cmd::BACKLIGHT, &[level.min(100)])?;
        Ok(())
    }

    fn ping(&mut self) -> Result<(), DriverError> {
        ping(&mut self.link)
    }

    fn poll_keys(&mut self, wait: Duration) -> Result<Vec<KeyEvent>, DriverError> {
        Ok(self.link.poll_keys(wait)?)
    }
}

/// A graphic module with a monochrome frame buffer.
#[derive(Debug)]
pub struct GraphicDisplay<T> {
    link: Link<T>,
    model: Model,
    width: u32,
    height: u32,
    shown: Option<FrameBuffer>,
}

impl<T: Read + Write> GraphicDisplay<T> {
    /// A driver for a graphic model; a character model is taken as 128x64.
    pub fn new(io: T, model: Model) -> Self {
        let (width, height) = model.pixels().unwrap_or((128, 64));
        GraphicDisplay {
            link: Link::new(io, model.max_data()),
            model,
            width,
            height,
            shown: None,
        }
    }

    /// Rows of pixels per write.
    pub fn band_rows(&self) -> usize {
        let stride = self.width.div_ceil(8) as usize;
        (self.link.max_data().saturating_sub(gfx::WRITE_HEADER) / stride.max(1)).max(1)
    }

    /// One graphics sub-command; the reply must echo it.
    fn graphics(&mut self, sub: u8, data: &[u8]) -> Result<(), DriverError> {
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(sub);
        packet.extend_from_slice(data);
        let reply = self.link.command(cmd::GRAPHICS, &packet)?;
        if reply.first() != Some(&sub) {
            return Err(DriverError::UnexpectedReply { sub, reply });
        }
        Ok(())
    }

    /// Send a frame: the bands of rows that differ from the frame shown, then "flush".
    pub fn write_frame(&mut self, fb: &FrameBuffer) -> Result<(), DriverError> {
        if (fb.width(), fb.height()) != (self.width, self.height) {
            return Err(DriverError::WrongSize {
                got_w: fb.width(),
                got_h: fb.height(),
                want_w: self.width,
                want_h: self.height,
            });
        }
        let stride = fb.stride();
        let band = self.band_rows();
        let mut sent = false;
        for (i, bytes) in fb.bytes().chunks(band * stride).enumerate() {
            let offset = i * band * stride;
            let same = self
                .shown
                .as_ref()
                .is_some_and(|old| old.bytes().get(offset..offset + bytes.len()) == Some(bytes));
            if same {
                continue;
            }
            // Our models are at most 244 pixels wide and 68 high: every field fits a byte.
            let header = [
                0u8,
                u8::try_from(i * band).unwrap_or(u8::MAX),
                u8::try_from(self.width).unwrap_or(u8::MAX),
                u8::try_from(bytes.len() / stride).unwrap_or(u8::MAX),
            ];
            let mut data = header.to_vec();
            data.extend_from_slice(bytes);
            self.graphics(gfx::WRITE, &data)?;
            sent = true;
        }
        if sent || self.shown.is_none() {
            self.graphics(gfx::FLUSH, &[])?;
        }
        self.shown = Some(fb.clone());
        Ok(())
    }

    pub fn link_mut(&mut self) -> &mut Link<T> {
        &mut self.link
    }
}

impl<T: Read + Write> Display for GraphicDisplay<T> {
    fn model(&self) -> Model {
        self.model
    }

    fn init(&mut self) -> Result<(), DriverError> {
        ping(&mut self.link)?;
        self.graphics(gfx::OPTIONS, &[gfx::MANUAL_FLUSH])?;
        self.link.command(cmd::CLEAR, &[])?;
        self.shown = Some(FrameBuffer::new(self.width, self.height));
        Ok(())
    }

    fn show(&mut self, screen: &Screen) -> Result<(), DriverError> {
        let fb = screens::render_bitmap(screen, self.width, self.height);
        self.write_frame(&fb)
    }

    fn set_backlight(&mut self, level: u8) -> Result<(), DriverError> {
        self.link.command(cmd::BACKLIGHT, &[level.min(100)])?;
        Ok(())
    }

    fn ping(&mut self) -> Result<(), DriverError> {
        ping(&mut self.link)
    }

    fn poll_keys(&mut self, wait: Duration) -> Result<Vec<KeyEvent>, DriverError> {
        Ok(self.link.poll_keys(wait)?)
    }
}

/// The driver for a model over a transport.
pub fn open<T: Read + Write + Send + 'static>(model: Model, io: T) -> Box<dyn Display + Send> {
    match model {
        Model::Char20x4 => Box::new(CharDisplay::new(io)),
        _ => Box::new(GraphicDisplay::new(io, model)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::tests::Scripted;
    use crate::packet::{Decoder, Packet, PacketType};

    fn ack_all(t: &Scripted, cmds: &[u8]) {
        for c in cmds {
            let r = Packet::new(PacketType::Reply, *c, &[]).unwrap().encode();
            t.answers.lock().unwrap().push_back(r);
        }
    }

    /// Replies to graphics sub-commands, which echo the sub-command.
    fn ack_graphics(t: &Scripted, subs: &[u8]) {
        for s in subs {
            let r = Packet::new(PacketType::Reply, cmd::GRAPHICS, &[*s])
                .unwrap()
                .encode();
            t.answers.lock().unwrap().push_back(r);
        }
    }

    fn sent(t: &Scripted, max: usize) -> Vec<Packet> {
        Decoder::new(max).feed_packets(&t.written.lock().unwrap())
    }

    #[test]
    fn model_names_parse() {
        for m in Model::ALL {
            assert_eq!(m.name().parse::<Model>().unwrap(), m);
        }
        assert!("lcd".parse::<Model>().is_err());
    }

    #[test]
    fn char_display_sends_changed_rows_only() {
        let t = Scripted::default();
        ack_all(&t, &[cmd::SEND_DATA; 5]);
        let mut d = CharDisplay::new(t.clone());
        let mut rows: [String; 4] = ["a".into(), "b".into(), "c".into(), "d".into()];
        d.write_rows(&rows).unwrap();
        rows[2] = "changed".into();
        d.write_rows(&rows).unwrap();
        let p = sent(&t, MAX_CHAR_DATA);
        assert_eq!(p.len(), 5);
        assert_eq!(p[4].command_number(), cmd::SEND_DATA);
        assert_eq!(&p[4].data()[..2], &[0, 2]);
        assert_eq!(&p[4].data()[2..], b"changed             ");
    }

    #[test]
    fn graphic_display_writes_changed_bands_then_flushes() {
        let t = Scripted::default();
        let mut d = GraphicDisplay::new(t.clone(), Model::Graphic244x68);
        let mut fb = FrameBuffer::new(244, 68);
        assert_eq!(d.band_rows(), 3);
        let bands = 68usize.div_ceil(3);
        assert_eq!(bands, 23);
        let mut acks = vec![gfx::WRITE; bands];
        acks.push(gfx::FLUSH);
        acks.extend([gfx::WRITE, gfx::FLUSH]);
        ack_graphics(&t, &acks);
        fb.set(0, 0, true);
        d.write_frame(&fb).unwrap();
        fb.set(243, 67, true);
        d.write_frame(&fb).unwrap();
        let p = sent(&t, Model::Graphic244x68.max_data());
        assert_eq!(p.len(), bands + 3);
        assert!(p.iter().all(|p| p.command_number() == cmd::GRAPHICS
            && p.data().len() <= Model::Graphic244x68.max_data()));
        // The first band: rows 0-2 from x 0, the whole width.
        assert_eq!(&p[0].data()[..5], &[gfx::WRITE, 0, 0, 244, 3]);
        assert_eq!(
            p[0].data()[5],
            0x80,
            "pixel (0,0) is the first byte's top bit"
        );
        assert_eq!(p[bands].data(), &[gfx::FLUSH]);
        // The second frame: only the last band (rows 66-67), then a flush.
        assert_eq!(&p[bands + 1].data()[..5], &[gfx::WRITE, 0, 66, 244, 2]);
        assert_eq!(p[bands + 1].data().len(), 5 + 2 * 31);
        assert_eq!(p[bands + 2].data(), &[gfx::FLUSH]);
        assert!(matches!(
            d.write_frame(&FrameBuffer::new(10, 10)),
            Err(DriverError::WrongSize { .. })
        ));
    }

    #[test]
    fn a_reply_that_does_not_echo_the_sub_command_is_an_error() {
        let t = Scripted::default();
        ack_all(&t, &[cmd::GRAPHICS]);
        let mut d = GraphicDisplay::new(t.clone(), Model::Graphic128x64);
        assert_eq!(d.band_rows(), 7);
        let fb = FrameBuffer::new(128, 64);
        assert!(matches!(
            d.write_frame(&fb),
            Err(DriverError::UnexpectedReply {
                sub: gfx::WRITE,
                ..
            })
        ));
    }
}
