//! An in-memory 1-bit frame buffer that `embedded-graphics` draws into, and its PNG form.
//!
//! # Design
//!
//! [`FrameBuffer`] stores pixels row by row, eight to a byte, most significant bit leftmost,
//! each row padded to whole bytes (stride = ceil(width / 8)). That is also the byte layout the
//! graphic driver sends to the module, so the driver sends slices of [`FrameBuffer::bytes`] as
//! they are. A set bit is [`BinaryColor::On`]: a dark pixel on the LCD.
//!
//! PNG files are 8-bit greyscale: dark pixels black (0), light pixels white (255). Reading
//! takes any PNG (palettes and low bit depths are expanded) and treats a first channel below
//! 128 as dark.
//! [`diff_png`] writes a picture of two buffers: equal pixels grey or white, differing pixels
//! red.
//!
//! # Limits
//!
//! - At most [`MAX_SIDE`] pixels per side; the panel models are far below that.

use std::convert::Infallible;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use thiserror::Error;

/// Largest width or height accepted (also for PNG files read back).
pub const MAX_SIDE: u32 = 1024;

/// PNG and size errors.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode PNG {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: png::EncodingError,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode PNG {path}")]
    Decode {
        path: PathBuf,
        #[source]
        source: png::DecodingError,
    },
    #[error("{path} is not a PNG of at most {MAX_SIDE} pixels a side that we can read")]
    Unsupported { path: PathBuf },
}

/// A monochrome frame buffer. See the module docs for the byte layout.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FrameBuffer {
    width: u32,
    height: u32,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for FrameBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameBuffer({}x{})", self.width, self.height)
    }
}

impl FrameBuffer {
    /// A blank (all light) buffer; sides are clamped to 1..=[`MAX_SIDE`].
    pub fn new(width: u32, height: u32) -> Self {
        let width = width.clamp(1, MAX_SIDE);
        let height = height.clamp(1, MAX_SIDE);
        let stride = width.div_ceil(8) as usize;
        FrameBuffer {
            width,
            height,
            bytes: vec![0; stride * height as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width.div_ceil(8) as usize
    }

    /// The packed pixels (see the module docs).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Overwrite packed bytes starting at `offset`; bytes past the end are ignored. Returns how
    /// many bytes were written.
    pub fn write_bytes(&mut self, offset: usize, data: &[u8]) -> usize {
        if offset >= self.bytes.len() {
            return 0;
        }
        let n = data.len().min(self.bytes.len() - offset);
        self.bytes[offset..offset + n].copy_from_slice(&data[..n]);
        n
    }

    /// Make every pixel light.
    pub fn clear_all(&mut self) {
        self.bytes.fill(0);
    }

    /// A pixel; outside the buffer is light.
    pub fn get(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let i = y as usize * self.stride() + (x / 8) as usize;
        self.bytes[i] & (0x80 >> (x % 8)) != 0
    }

    /// Set a pixel; outside the buffer nothing happens.
    pub fn set(&mut self, x: u32, y: u32, on: bool) {
        if x >= self.width || y >= self.height {
            return;
        }
        let i = y as usize * self.stride() + (x / 8) as usize;
        let mask = 0x80 >> (x % 8);
        if on {
            self.bytes[i] |= mask;
        } else {
            self.bytes[i] &= !mask;
        }
    }

    /// Number of pixels that differ (sizes must match, else every pixel of the larger counts).
    pub fn count_differences(&self, other: &FrameBuffer) -> u64 {
        let w = self.width.max(other.width);
        let h = self.height.max(other.height);
        let mut n = 0;
        for y in 0..h {
            for x in 0..w {
                let outside =
                    x >= self.width.min(other.width) || y >= self.height.min(other.height);
                if outside || self.get(x, y) != other.get(x, y) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Write as an 8-bit greyscale PNG.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let grey: Vec<u8> = (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .map(|(x, y)| if self.get(x, y) { 0 } else { 255 })
            .collect();
        write_png(
            path,
            self.width,
            self.height,
            png::ColorType::Grayscale,
            &grey,
        )
    }

    /// The same greyscale PNG as [`FrameBuffer::save_png`], in memory (the web mirror).
    pub fn to_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let grey: Vec<u8> = (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .map(|(x, y)| if self.get(x, y) { 0 } else { 255 })
            .collect();
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&grey)?;
            writer.finish()?;
        }
        Ok(out)
    }

    /// Read a PNG written by [`FrameBuffer::save_png`] (or any other non-16-bit PNG; the first
    /// channel decides).
    pub fn load_png(path: &Path) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(|source| ImageError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut decoder = png::Decoder::new(BufReader::new(file));
        // Palettes and low bit depths are expanded to 8-bit channels.
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let decode = |source| ImageError::Decode {
            path: path.to_owned(),
            source,
        };
        let mut reader = decoder.read_info().map_err(decode)?;
        let (color, depth) = reader.output_color_type();
        let channels = match color {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => 0,
        };
        let info = reader.info();
        if channels == 0
            || depth != png::BitDepth::Eight
            || info.width > MAX_SIDE
            || info.height > MAX_SIDE
        {
            return Err(ImageError::Unsupported {
                path: path.to_owned(),
            });
        }
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).map_err(decode)?;
        let mut fb = FrameBuffer::new(frame.width, frame.height);
        for y in 0..frame.height {
            for x in 0..frame.width {
                let i = y as usize * frame.line_size + x as usize * channels;
                fb.set(x, y, buf[i] < 128);
            }
        }
        Ok(fb)
    }

    /// A pixel-scaled copy (for looking at small pictures).
    pub fn scaled(&self, factor: u32) -> FrameBuffer {
        let factor = factor.clamp(1, 16);
        let mut out = FrameBuffer::new(self.width * factor, self.height * factor);
        for y in 0..out.height {
            for x in 0..out.width {
                out.set(x, y, self.get(x / factor, y / factor));
            }
        }
        out
    }
}

/// Write a diff picture of `expected` and `actual`: pixels dark in both are grey, light in
/// both white, different red.
pub fn diff_png(
    expected: &FrameBuffer,
    actual: &FrameBuffer,
    path: &Path,
) -> Result<(), ImageError> {
    let w = expected.width.max(actual.width);
    let h = expected.height.max(actual.height);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let inside = |fb: &FrameBuffer| x < fb.width && y < fb.height;
            let (e, a) = (expected.get(x, y), actual.get(x, y));
            let px = if inside(expected) != inside(actual) || e != a {
                [255, 0, 0]
            } else if e {
                [128, 128, 128]
            } else {
                [255, 255, 255]
            };
            rgb.extend_from_slice(&px);
        }
    }
    write_png(path, w, h, png::ColorType::Rgb, &rgb)
}

fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    color: png::ColorType,
    data: &[u8],
) -> Result<(), ImageError> {
    let file = File::create(path).map_err(|source| ImageError::Write {
        path: path.to_owned(),
        source,
    })?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let encode = |source| ImageError::Encode {
        path: path.to_owned(),
        source,
    };
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(data).map_err(encode)?;
    writer.finish().map_err(encode)
}

impl OriginDimensions for FrameBuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for FrameBuffer {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, color) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(p.x), u32::try_from(p.y)) {
                self.set(x, y, color.is_on());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn bit_layout_is_msb_first_row_major() {
        let mut fb = FrameBuffer::new(10, 2);
        assert_eq!(fb.stride(), 2);
        fb.set(0, 0, true);
        fb.set(9, 1, true);
        assert_eq!(fb.bytes(), &[0x80, 0x00, 0x00, 0x40]);
        fb.set(0, 0, false);
        assert!(!fb.get(0, 0));
        assert!(!fb.get(100, 100));
    }

    #[test]
    fn draw_target_clips() {
        let mut fb = FrameBuffer::new(8, 8);
        Rectangle::new(Point::new(-4, -4), Size::new(8, 8))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(&mut fb)
            .unwrap();
        assert!(fb.get(3, 3));
        assert!(!fb.get(4, 4));
    }

    #[test]
    fn png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut fb = FrameBuffer::new(13, 5);
        fb.set(1, 1, true);
        fb.set(12, 4, true);
        let p = dir.path().join("x.png");
        fb.save_png(&p).unwrap();
        assert_eq!(FrameBuffer::load_png(&p).unwrap(), fb);
        let other = FrameBuffer::new(13, 5);
        assert_eq!(fb.count_differences(&other), 2);
        diff_png(&fb, &other, &dir.path().join("d.png")).unwrap();
    }
}
