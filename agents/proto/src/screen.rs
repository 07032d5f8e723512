//! Payloads of the binary [`Channel::Screen`](crate::frame::Channel::Screen) and
//! [`Channel::Cursor`](crate::frame::Channel::Cursor) frames.
//!
//! The agent sends the screen as *updates*: each binary message on the screen channel holds
//! a few rectangles of one frame; the last message of a frame has [`UPDATE_END_OF_FRAME`].
//! A frame that repaints the whole surface has [`UPDATE_KEY_FRAME`] (and the generic frame
//! header's [`FLAG_SUPERSEDES`](crate::frame::FLAG_SUPERSEDES), so the relay may drop every
//! queued screen frame before it for a viewer that fell behind).
//!
//! A screen message's payload is an update message, or, with the frame header's
//! [`FLAG_DEFLATE`](crate::frame::FLAG_DEFLATE), the next chunk of the channel's deflate
//! stream that inflates to one ([`crate::deflate`]): the layout below is what is inflated.
//!
//! All integers are big-endian.
//!
//! ```text
//! screen update
//! offset  size  field
//! 0       1     kind = 1 (update)
//! 1       1     flags: bit 0 end of frame, bit 1 key frame; others 0
//! 2       2     surface width in pixels (1..=MAX_SURFACE)
//! 4       2     surface height in pixels (1..=MAX_SURFACE)
//! 6       4     frame number (the console acknowledges it once the frame ends)
//! 10      2     rectangle count (at most MAX_RECTS)
//! 12      ...   rectangles
//!
//! rectangle
//! 0       2     x    \
//! 2       2     y     | inside the surface, w and h at least 1
//! 4       2     w     |
//! 6       2     h    /
//! 8       1     encoding (see Encoding)
//! 9       4     data length
//! 13      ...   data
//!
//! palette data (Encoding::Palette)
//! 0       1     colour count − 1 (1..=256 colours)
//! 1       3*n   the colours, R, G, B each
//! ...           the pixel indices, row by row, packed most significant bits first at 1, 2,
//!               4 or 8 bits per pixel (the fewest that hold the count: palette_bits), each
//!               row padded to a whole byte; every index below the count
//! ```
//!
//! Palette is lossless and meant for text and flat UI under the deflate stream: its rows
//! are raw indices, so repeated glyphs, words and rows become back-references into the
//! stream's history, where a PNG would start from nothing each time.
//!
//! The *surface* is what the representative chose to see: one monitor, or the bounding box
//! of all monitors. A change of its size (a monitor was plugged in, another one chosen) comes
//! as a key frame of the new size. Pointer coordinates from the console are surface
//! coordinates too.
//!
//! ```text
//! cursor message
//! 0       1     kind: 1 shape, 2 position, 3 hidden
//! shape:    u16 width, u16 height (1..=MAX_CURSOR), u16 hot x, u16 hot y, then
//!           width*height*4 bytes RGBA (straight alpha), row by row
//! position: i16 x, i16 y in surface coordinates (may lie outside the surface)
//! hidden:   nothing
//! ```
//!
//! Decoding checks every bound and never panics (property tests here, a fuzz target in
//! `fuzz/`). The relay does not decode these payloads at all; the console and test tools do.

use crate::MAX_FRAME_PAYLOAD;

/// Largest surface side, in pixels.
pub const MAX_SURFACE: u16 = 16384;
/// Most rectangles in one update message.
pub const MAX_RECTS: u16 = 4096;
/// Largest cursor side, in pixels.
pub const MAX_CURSOR: u16 = 256;

pub const KIND_UPDATE: u8 = 1;
/// Flag of an update: the last message of its frame.
pub const UPDATE_END_OF_FRAME: u8 = 0x01;
/// Flag of an update: this frame repaints the whole surface.
pub const UPDATE_KEY_FRAME: u8 = 0x02;

const UPDATE_HEADER: usize = 12;
const RECT_HEADER: usize = 13;

/// How a rectangle's pixels are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// One colour: data is 3 bytes R, G, B.
    Solid = 0,
    /// A baseline JPEG of exactly w×h pixels (photographic content).
    Jpeg = 1,
    /// A PNG of exactly w×h pixels, usually indexed colour (text, sharp edges); lossless.
    Png = 2,
    /// Copy: data is u16 source x, u16 source y; copy the w×h rectangle from that position
    /// of the surface as it was before this update message (scrolling, moved windows).
    Copy = 3,
    /// Indexed colours (see "palette data" above and [`Palette`]); lossless.
    Palette = 4,
}

impl Encoding {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Encoding::Solid,
            1 => Encoding::Jpeg,
            2 => Encoding::Png,
            3 => Encoding::Copy,
            4 => Encoding::Palette,
            _ => return None,
        })
    }
}

/// One rectangle of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rect<'a> {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
    pub encoding: Encoding,
    pub data: &'a [u8],
}

/// A decoded screen update message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    pub flags: u8,
    pub width: u16,
    pub height: u16,
    pub frame: u32,
    pub rects: Vec<Rect<'a>>,
}

impl Update<'_> {
    pub fn end_of_frame(&self) -> bool {
        self.flags & UPDATE_END_OF_FRAME != 0
    }

    pub fn key_frame(&self) -> bool {
        self.flags & UPDATE_KEY_FRAME != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScreenError {
    #[error("screen message ends early")]
    Short,
    #[error("unknown screen message kind {0}")]
    UnknownKind(u8),
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedBits(u8),
    #[error("surface {0}x{1} is empty or larger than the limit")]
    BadSurface(u16, u16),
    #[error("{0} rectangles exceed the limit")]
    TooManyRects(u16),
    #[error("rectangle {x},{y} {w}x{h} does not fit the surface")]
    RectOutside { x: u16, y: u16, w: u16, h: u16 },
    #[error("unknown encoding {0}")]
    UnknownEncoding(u8),
    #[error("{encoding:?} data of {len} bytes is not valid for a {w}x{h} rectangle")]
    BadData {
        encoding: Encoding,
        len: usize,
        w: u16,
        h: u16,
    },
    #[error("{0} bytes follow the last rectangle")]
    Trailing(usize),
    #[error("the message would exceed the frame payload limit")]
    TooLarge,
    #[error("cursor {0}x{1} is empty or larger than the limit")]
    BadCursor(u16, u16),
}

/// Most colours of a [`Encoding::Palette`] rectangle.
pub const MAX_PALETTE: usize = 256;

/// Bits per pixel index of a palette of `count` colours: the fewest of 1, 2, 4 and 8 that
/// hold it.
pub fn palette_bits(count: usize) -> u32 {
    match count {
        0..=2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    }
}

/// Bytes of one packed row of `w` indices of `bits` bits.
fn palette_row_bytes(w: u16, bits: u32) -> usize {
    (usize::from(w) * bits as usize).div_ceil(8)
}

/// Length of the data of a `w`×`h` palette rectangle of `count` colours.
pub fn palette_len(w: u16, h: u16, count: usize) -> usize {
    1 + 3 * count + palette_row_bytes(w, palette_bits(count)) * usize::from(h)
}

/// A checked [`Encoding::Palette`] rectangle's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette<'a> {
    w: u16,
    h: u16,
    bits: u32,
    /// R, G, B of each colour.
    colours: &'a [u8],
    /// Packed rows.
    indices: &'a [u8],
}

impl<'a> Palette<'a> {
    /// Checks a palette rectangle's data: its length, and every index within the palette.
    pub fn parse(w: u16, h: u16, data: &'a [u8]) -> Option<Palette<'a>> {
        let count = usize::from(*data.first()?) + 1;
        if w == 0 || h == 0 || data.len() != palette_len(w, h, count) {
            return None;
        }
        let bits = palette_bits(count);
        let (colours, indices) = data[1..].split_at(3 * count);
        let p = Palette {
            w,
            h,
            bits,
            colours,
            indices,
        };
        // Indices past the count can only occur when the count is no power of two.
        if count != 1 << bits
            && p.rows()
                .any(|row| row.iter().any(|&i| usize::from(i) >= count))
        {
            return None;
        }
        Some(p)
    }

    pub fn count(&self) -> usize {
        self.colours.len() / 3
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The colours, R, G, B each.
    pub fn colours(&self) -> &'a [u8] {
        self.colours
    }

    /// The rows of indices, one byte per pixel.
    pub fn rows(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let row_bytes = palette_row_bytes(self.w, self.bits);
        let bits = self.bits as usize;
        let mask = ((1u16 << bits) - 1) as u8;
        self.indices.chunks_exact(row_bytes).map(move |row| {
            (0..usize::from(self.w))
                .map(|x| {
                    let bit = x * bits;
                    (row[bit / 8] >> (8 - bits - bit % 8)) & mask
                })
                .collect()
        })
    }

    /// The pixels as R, G, B, row by row.
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::from(self.w) * usize::from(self.h) * 3);
        for row in self.rows() {
            for i in row {
                let at = usize::from(i) * 3;
                out.extend_from_slice(&self.colours[at..at + 3]);
            }
        }
        out
    }
}

/// Builds palette data from colours (R, G, B) and one index per pixel, row by row (for
/// tools and tests; the agent packs its own). `None` when the sizes do not match, there are
/// no colours or more than [`MAX_PALETTE`], or an index is out of range.
pub fn encode_palette(colours: &[[u8; 3]], w: u16, h: u16, indices: &[u8]) -> Option<Vec<u8>> {
    let count = colours.len();
    if count == 0
        || count > MAX_PALETTE
        || indices.len() != usize::from(w) * usize::from(h)
        || indices.iter().any(|&i| usize::from(i) >= count)
    {
        return None;
    }
    let bits = palette_bits(count);
    let row_bytes = palette_row_bytes(w, bits);
    let mut out = Vec::with_capacity(palette_len(w, h, count));
    out.push((count - 1) as u8);
    for c in colours {
        out.extend_from_slice(c);
    }
    for row in indices.chunks_exact(usize::from(w).max(1)) {
        let start = out.len();
        out.resize(start + row_bytes, 0);
        for (x, &i) in row.iter().enumerate() {
            let bit = x * bits as usize;
            out[start + bit / 8] |= i << (8 - bits as usize - bit % 8);
        }
    }
    Some(out)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks a rectangle's data against what its encoding needs.
fn check_data(r: &Rect<'_>, width: u16, height: u16) -> Result<(), ScreenError> {
    let bad = || ScreenError::BadData {
        encoding: r.encoding,
        len: r.data.len(),
        w: r.w,
        h: r.h,
    };
    match r.encoding {
        Encoding::Solid if r.data.len() != 3 => Err(bad()),
        Encoding::Copy => {
            let (Some(sx), Some(sy)) = (be16(r.data, 0), be16(r.data, 2)) else {
                return Err(bad());
            };
            let fits = r.data.len() == 4
                && u32::from(sx) + u32::from(r.w) <= u32::from(width)
                && u32::from(sy) + u32::from(r.h) <= u32::from(height);
            if fits { Ok(()) } else { Err(bad()) }
        }
        Encoding::Jpeg | Encoding::Png if r.data.len() < 8 => Err(bad()),
        Encoding::Palette if Palette::parse(r.w, r.h, r.data).is_none() => Err(bad()),
        _ => Ok(()),
    }
}

/// Decodes one screen update message; never panics.
pub fn decode_update(b: &[u8]) -> Result<Update<'_>, ScreenError> {
    if b.len() < UPDATE_HEADER {
        return Err(ScreenError::Short);
    }
    if b[0] != KIND_UPDATE {
        return Err(ScreenError::UnknownKind(b[0]));
    }
    let flags = b[1];
    if flags & !(UPDATE_END_OF_FRAME | UPDATE_KEY_FRAME) != 0 {
        return Err(ScreenError::ReservedBits(flags));
    }
    let width = be16(b, 2).ok_or(ScreenError::Short)?;
    let height = be16(b, 4).ok_or(ScreenError::Short)?;
    if width == 0 || height == 0 || width > MAX_SURFACE || height > MAX_SURFACE {
        return Err(ScreenError::BadSurface(width, height));
    }
    let frame = be32(b, 6).ok_or(ScreenError::Short)?;
    let count = be16(b, 10).ok_or(ScreenError::Short)?;
    if count > MAX_RECTS {
        return Err(ScreenError::TooManyRects(count));
    }
    let mut at = UPDATE_HEADER;
    let mut rects = Vec::with_capacity(usize::from(count).min(b.len() / RECT_HEADER));
    for _ in 0..count {
        let head = b.get(at..at + RECT_HEADER).ok_or(ScreenError::Short)?;
        let (x, y, w, h) = (
            be16(head, 0).ok_or(ScreenError::Short)?,
            be16(head, 2).ok_or(ScreenError::Short)?,
            be16(head, 4).ok_or(ScreenError::Short)?,
            be16(head, 6).ok_or(ScreenError::Short)?,
        );
        let inside = w > 0
            && h > 0
            && u32::from(x) + u32::from(w) <= u32::from(width)
            && u32::from(y) + u32::from(h) <= u32::from(height);
        if !inside {
            return Err(ScreenError::RectOutside { x, y, w, h });
        }
        let encoding = Encoding::from_u8(head[8]).ok_or(ScreenError::UnknownEncoding(head[8]))?;
        let len = be32(head, 9).ok_or(ScreenError::Short)? as usize;
        at += RECT_HEADER;
        let data = b
            .get(at..at.checked_add(len).ok_or(ScreenError::Short)?)
            .ok_or(ScreenError::Short)?;
        at += len;
        let rect = Rect {
            x,
            y,
            w,
            h,
            encoding,
            data,
        };
        check_data(&rect, width, height)?;
        rects.push(rect);
    }
    if at != b.len() {
        return Err(ScreenError::Trailing(b.len() - at));
    }
    Ok(Update {
        flags,
        width,
        height,
        frame,
        rects,
    })
}

/// Builds screen update messages; rectangles are appended one by one.
#[derive(Debug, Clone)]
pub struct UpdateWriter {
    buf: Vec<u8>,
    count: u16,
}

impl UpdateWriter {
    /// Starts an update of `frame` for a surface of `width`×`height`.
    pub fn new(width: u16, height: u16, frame: u32) -> Result<Self, ScreenError> {
        if width == 0 || height == 0 || width > MAX_SURFACE || height > MAX_SURFACE {
            return Err(ScreenError::BadSurface(width, height));
        }
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[KIND_UPDATE, 0]);
        buf.extend_from_slice(&width.to_be_bytes());
        buf.extend_from_slice(&height.to_be_bytes());
        buf.extend_from_slice(&frame.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        Ok(UpdateWriter { buf, count: 0 })
    }

    fn surface(&self) -> (u16, u16) {
        (
            u16::from_be_bytes([self.buf[2], self.buf[3]]),
            u16::from_be_bytes([self.buf[4], self.buf[5]]),
        )
    }

    /// Bytes written so far (what the message would weigh if finished now).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a rectangle with `data_len` bytes of data still fits this message.
    pub fn fits(&self, data_len: usize) -> bool {
        self.count < MAX_RECTS && self.buf.len() + RECT_HEADER + data_len <= MAX_FRAME_PAYLOAD
    }

    /// Appends a rectangle after checking it like the decoder does.
    pub fn push(&mut self, rect: &Rect<'_>) -> Result<(), ScreenError> {
        let (width, height) = self.surface();
        let inside = rect.w > 0
            && rect.h > 0
            && u32::from(rect.x) + u32::from(rect.w) <= u32::from(width)
            && u32::from(rect.y) + u32::from(rect.h) <= u32::from(height);
        if !inside {
            return Err(ScreenError::RectOutside {
                x: rect.x,
                y: rect.y,
                w: rect.w,
                h: rect.h,
            });
        }
        check_data(rect, width, height)?;
        if !self.fits(rect.data.len()) {
            return Err(ScreenError::TooLarge);
        }
        for v in [rect.x, rect.y, rect.w, rect.h] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self.buf.push(rect.encoding as u8);
        self.buf
            .extend_from_slice(&(rect.data.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(rect.data);
        self.count += 1;
        Ok(())
    }

    /// Finishes the message with the given flags ([`UPDATE_END_OF_FRAME`],
    /// [`UPDATE_KEY_FRAME`]).
    pub fn finish(mut self, flags: u8) -> Vec<u8> {
        self.buf[1] = flags & (UPDATE_END_OF_FRAME | UPDATE_KEY_FRAME);
        self.buf[10..12].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// A decoded cursor message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor<'a> {
    Shape {
        width: u16,
        height: u16,
        hot_x: u16,
        hot_y: u16,
        rgba: &'a [u8],
    },
    Position {
        x: i16,
        y: i16,
    },
    Hidden,
}

pub const CURSOR_SHAPE: u8 = 1;
pub const CURSOR_POSITION: u8 = 2;
pub const CURSOR_HIDDEN: u8 = 3;

/// Decodes one cursor message; never panics.
pub fn decode_cursor(b: &[u8]) -> Result<Cursor<'_>, ScreenError> {
    let kind = *b.first().ok_or(ScreenError::Short)?;
    match kind {
        CURSOR_SHAPE => {
            let width = be16(b, 1).ok_or(ScreenError::Short)?;
            let height = be16(b, 3).ok_or(ScreenError::Short)?;
            let hot_x = be16(b, 5).ok_or(ScreenError::Short)?;
            let hot_y = be16(b, 7).ok_or(ScreenError::Short)?;
            if width == 0 || height == 0 || width > MAX_CURSOR || height > MAX_CURSOR {
                return Err(ScreenError::BadCursor(width, height));
            }
            let need = usize::from(width) * usize::from(height) * 4;
            let rgba = &b[9..];
            if rgba.len() < need {
                return Err(ScreenError::Short);
            }
            if rgba.len() > need {
                return Err(ScreenError::Trailing(rgba.len() - need));
            }
            Ok(Cursor::Shape {
                width,
                height,
                hot_x: hot_x.min(width - 1),
                hot_y: hot_y.min(height - 1),
                rgba,
            })
        }
        CURSOR_POSITION => {
            if b.len() != 5 {
                return Err(if b.len() < 5 {
                    ScreenError::Short
                } else {
                    ScreenError::Trailing(b.len() - 5)
                });
            }
            Ok(Cursor::Position {
                x: i16::from_be_bytes([b[1], b[2]]),
                y: i16::from_be_bytes([b[3], b[4]]),
            })
        }
        CURSOR_HIDDEN if b.len() == 1 => Ok(Cursor::Hidden),
        CURSOR_HIDDEN => Err(ScreenError::Trailing(b.len() - 1)),
        other => Err(ScreenError::UnknownKind(other)),
    }
}

/// Encodes a cursor message.
pub fn encode_cursor(c: &Cursor<'_>) -> Result<Vec<u8>, ScreenError> {
    match c {
        Cursor::Shape {
            width,
            height,
            hot_x,
            hot_y,
            rgba,
        } => {
            if *width == 0 || *height == 0 || *width > MAX_CURSOR || *height > MAX_CURSOR {
                return Err(ScreenError::BadCursor(*width, *height));
            }
            if rgba.len() != usize::from(*width) * usize::from(*height) * 4 {
                return Err(ScreenError::Short);
            }
            let mut out = Vec::with_capacity(9 + rgba.len());
            out.push(CURSOR_SHAPE);
            for v in [width, height, hot_x, hot_y] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(rgba);
            Ok(out)
        }
        Cursor::Position { x, y } => {
            let mut out = vec![CURSOR_POSITION];
            out.extend_from_slice(&x.to_be_bytes());
            out.extend_from_slice(&y.to_be_bytes());
            Ok(out)
        }
        Cursor::Hidden => Ok(vec![CURSOR_HIDDEN]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut w = UpdateWriter::new(1920, 1080, 7).unwrap();
        w.push(&Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 64,
            encoding: Encoding::Solid,
            data: &[1, 2, 3],
        })
        .unwrap();
        w.push(&Rect {
            x: 64,
            y: 0,
            w: 64,
            h: 64,
            encoding: Encoding::Copy,
            data: &[0, 0, 0, 10],
        })
        .unwrap();
        w.push(&Rect {
            x: 1856,
            y: 1016,
            w: 64,
            h: 64,
            encoding: Encoding::Png,
            data: b"\x89PNG\r\n\x1a\nrest",
        })
        .unwrap();
        w.push(&Rect {
            x: 100,
            y: 100,
            w: 3,
            h: 2,
            encoding: Encoding::Palette,
            data: &[2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0b0110_0000, 0b1001_0000],
        })
        .unwrap();
        w.finish(UPDATE_END_OF_FRAME)
    }

    #[test]
    fn known_layout() {
        let b = sample();
        assert_eq!(&b[..12], &[1, 1, 0x07, 0x80, 0x04, 0x38, 0, 0, 0, 7, 0, 4]);
        assert_eq!(&b[12..25], &[0, 0, 0, 0, 0, 64, 0, 64, 0, 0, 0, 0, 3]);
        let u = decode_update(&b).unwrap();
        assert!(u.end_of_frame() && !u.key_frame());
        assert_eq!(
            (u.width, u.height, u.frame, u.rects.len()),
            (1920, 1080, 7, 4)
        );
        assert_eq!(u.rects[1].encoding, Encoding::Copy);
        assert_eq!(u.rects[2].data, b"\x89PNG\r\n\x1a\nrest");
    }

    #[test]
    fn rejects_out_of_bounds() {
        let mut w = UpdateWriter::new(100, 100, 1).unwrap();
        let r = Rect {
            x: 90,
            y: 0,
            w: 11,
            h: 1,
            encoding: Encoding::Solid,
            data: &[0, 0, 0],
        };
        assert!(matches!(w.push(&r), Err(ScreenError::RectOutside { .. })));
        let copy = Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 10,
            encoding: Encoding::Copy,
            data: &[0, 95, 0, 0],
        };
        assert!(matches!(w.push(&copy), Err(ScreenError::BadData { .. })));
        // A hand-made message announcing a rectangle outside the surface.
        let mut b = sample();
        b[12..14].copy_from_slice(&1900u16.to_be_bytes());
        assert!(matches!(
            decode_update(&b),
            Err(ScreenError::RectOutside { .. })
        ));
        let mut b = sample();
        b.push(0);
        assert_eq!(decode_update(&b), Err(ScreenError::Trailing(1)));
        let mut b = sample();
        b[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(
            decode_update(&b),
            Err(ScreenError::BadSurface(..))
        ));
    }

    #[test]
    fn cursor_round_trip() {
        let rgba = vec![255u8; 2 * 3 * 4];
        let shape = Cursor::Shape {
            width: 2,
            height: 3,
            hot_x: 1,
            hot_y: 2,
            rgba: &rgba,
        };
        let b = encode_cursor(&shape).unwrap();
        assert_eq!(decode_cursor(&b).unwrap(), shape);
        let pos = Cursor::Position { x: -5, y: 300 };
        assert_eq!(decode_cursor(&encode_cursor(&pos).unwrap()).unwrap(), pos);
        assert_eq!(decode_cursor(&[3]).unwrap(), Cursor::Hidden);
        assert_eq!(
            decode_cursor(&[1, 1, 1, 0, 1, 0, 0, 0, 0]),
            Err(ScreenError::BadCursor(257, 1))
        );
    }

    #[test]
    fn palette_layout() {
        assert_eq!(
            [1, 2, 3, 4, 5, 16, 17, 256].map(palette_bits),
            [1, 1, 2, 2, 4, 4, 8, 8]
        );
        // 3 colours at 2 bits, 5 pixels a row: 10 bits, padded to 2 bytes.
        let data = encode_palette(
            &[[0, 0, 0], [255, 255, 255], [255, 0, 0]],
            5,
            2,
            &[0, 1, 2, 1, 0, 2, 2, 2, 2, 1],
        )
        .unwrap();
        assert_eq!(
            data,
            [
                2,
                0,
                0,
                0,
                255,
                255,
                255,
                255,
                0,
                0,
                0b0001_1001,
                0b0000_0000,
                0b1010_1010,
                0b0100_0000
            ]
        );
        let p = Palette::parse(5, 2, &data).unwrap();
        assert_eq!((p.count(), p.bits()), (3, 2));
        assert_eq!(
            p.rows().collect::<Vec<_>>(),
            [vec![0, 1, 2, 1, 0], vec![2, 2, 2, 2, 1]]
        );
        assert_eq!(&p.to_rgb()[..6], &[0, 0, 0, 255, 255, 255]);
        // Index 3 of a 3-colour palette, a short row, too many colours: refused.
        let mut bad = data.clone();
        bad[10] = 0b1100_0000;
        assert!(Palette::parse(5, 2, &bad).is_none());
        assert!(Palette::parse(5, 2, &data[..data.len() - 1]).is_none());
        assert!(Palette::parse(9, 2, &data).is_none());
        assert!(encode_palette(&[[0; 3]; 257], 1, 1, &[0]).is_none());
        assert!(encode_palette(&[[0; 3]; 2], 1, 1, &[2]).is_none());
        // In an update, checked like any rectangle.
        let mut w = UpdateWriter::new(10, 10, 1).unwrap();
        let rect = |data| Rect {
            x: 5,
            y: 8,
            w: 5,
            h: 2,
            encoding: Encoding::Palette,
            data,
        };
        assert!(matches!(
            w.push(&rect(&bad)),
            Err(ScreenError::BadData { .. })
        ));
        w.push(&rect(&data)).unwrap();
        let b = w.finish(UPDATE_END_OF_FRAME);
        let u = decode_update(&b).unwrap();
        assert_eq!(u.rects[0].encoding, Encoding::Palette);
        let mut b2 = b.clone();
        let last = b2.len() - 2;
        b2[last] = 0b1111_1111;
        assert!(matches!(
            decode_update(&b2),
            Err(ScreenError::BadData { .. })
        ));
    }

    proptest! {
        /// Palettes of any size and shape come back index for index.
        #[test]
        fn palette_round_trip(count in 1usize..=256, w in 1u16..40, h in 1u16..12,
                              seed in any::<u64>()) {
            let colours: Vec<[u8; 3]> = (0..count).map(|i| [i as u8, (i * 7) as u8, 3]).collect();
            let mut n = seed | 1;
            let indices: Vec<u8> = (0..usize::from(w) * usize::from(h)).map(|_| {
                n ^= n << 13;
                n ^= n >> 7;
                n ^= n << 17;
                (n % count as u64) as u8
            }).collect();
            let data = encode_palette(&colours, w, h, &indices).unwrap();
            prop_assert_eq!(data.len(), palette_len(w, h, count));
            let p = Palette::parse(w, h, &data).unwrap();
            let rows: Vec<u8> = p.rows().flatten().collect();
            prop_assert_eq!(rows, indices.clone());
            let rgb = p.to_rgb();
            for (k, &i) in indices.iter().enumerate() {
                prop_assert_eq!(&rgb[k * 3..k * 3 + 3], &colours[usize::from(i)][..]);
            }
        }

        /// Palette data of any bytes is refused or valid, never a panic.
        #[test]
        fn palette_parse_never_panics(w in 0u16..50, h in 0u16..50,
                                      data in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Some(p) = Palette::parse(w, h, &data) {
                prop_assert_eq!(p.to_rgb().len(), usize::from(w) * usize::from(h) * 3);
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_update(&bytes);
            let _ = decode_cursor(&bytes);
        }

        #[test]
        fn mutated_updates_never_panic(pos in 0usize..120, val in any::<u8>()) {
            let mut b = sample();
            let i = pos % b.len();
            b[i] = val;
            let _ = decode_update(&b);
        }

        #[test]
        fn update_round_trip(rects in prop::collection::vec((0u16..100, 0u16..100, 1u16..50, 1u16..50,
                                                            any::<[u8; 3]>()), 0..20),
                             frame in any::<u32>(), key in any::<bool>()) {
            let mut w = UpdateWriter::new(200, 200, frame).unwrap();
            for (x, y, rw, rh, rgb) in &rects {
                w.push(&Rect { x: *x, y: *y, w: *rw, h: *rh, encoding: Encoding::Solid, data: rgb }).unwrap();
            }
            let flags = UPDATE_END_OF_FRAME | if key { UPDATE_KEY_FRAME } else { 0 };
            let b = w.finish(flags);
            let u = decode_update(&b).unwrap();
            prop_assert_eq!(u.frame, frame);
            prop_assert_eq!(u.key_frame(), key);
            prop_assert_eq!(u.rects.len(), rects.len());
            for (r, (x, y, rw, rh, rgb)) in u.rects.iter().zip(&rects) {
                prop_assert_eq!((r.x, r.y, r.w, r.h, r.data), (*x, *y, *rw, *rh, &rgb[..]));
            }
        }
    }
}
