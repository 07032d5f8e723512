//! The measuring console's picture: a reference decoder of the agent's screen messages
//! (the channel's deflate stream inflated with `lifeline_proto::deflate::ScreenInflater`;
//! Solid, Palette, PNG, JPEG and Copy rectangles, see `lifeline_proto::screen`) into a
//! 0x00RRGGBB surface, so the benchmark can compare what a representative would see with
//! the X server's own pixels.
//!
//! It never panics on what arrives: every size and offset is checked by
//! `lifeline_proto::screen::decode_update` and again here, and a rectangle that does not
//! decode is an error the console counts (the picture is then known to be wrong).

use lifeline_proto::deflate::ScreenInflater;
use lifeline_proto::frame::{self, Channel};
use lifeline_proto::screen::{Encoding, Palette, decode_cursor, decode_update};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad frame header: {0}")]
    Frame(String),
    #[error("bad screen update: {0}")]
    Update(String),
    #[error("bad cursor message: {0}")]
    Cursor(String),
    #[error("a {enc:?} rectangle {w}x{h}: {why}")]
    Rect {
        enc: Encoding,
        w: u32,
        h: u32,
        why: String,
    },
    #[error("a new surface size without a key frame")]
    SizeWithoutKey,
}

/// What one message was.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    pub screen: bool,
    pub end_of_frame: bool,
    pub frame: u32,
    pub key: bool,
    pub jpeg: usize,
    pub png: usize,
    pub solid: usize,
    pub copy: usize,
    pub palette: usize,
}

pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub px: Vec<u32>,
    before: Vec<u32>,
    jpeg: Option<turbojpeg::Decompressor>,
    inflater: ScreenInflater,
}

impl Canvas {
    pub fn new() -> Canvas {
        Canvas {
            width: 0,
            height: 0,
            px: Vec::new(),
            before: Vec::new(),
            jpeg: turbojpeg::Decompressor::new().ok(),
            inflater: ScreenInflater::new(),
        }
    }

    /// The picture's pixels of an area (0 outside the surface).
    pub fn area(&self, x: i32, y: i32, w: u32, h: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity((w * h) as usize);
        for yy in y..y + h as i32 {
            for xx in x..x + w as i32 {
                let inside =
                    xx >= 0 && yy >= 0 && (xx as u32) < self.width && (yy as u32) < self.height;
                out.push(if inside {
                    self.px[(yy as u32 * self.width + xx as u32) as usize]
                } else {
                    0
                });
            }
        }
        out
    }

    fn put_rgb(&mut self, x: u32, y: u32, w: u32, h: u32, rgb: &[u8]) {
        for yy in 0..h {
            let row = &rgb[(yy * w * 3) as usize..((yy + 1) * w * 3) as usize];
            let at = ((y + yy) * self.width + x) as usize;
            for (d, s) in self.px[at..at + w as usize]
                .iter_mut()
                .zip(row.chunks_exact(3))
            {
                *d = u32::from_be_bytes([0, s[0], s[1], s[2]]);
            }
        }
    }

    /// Applies one binary WebSocket message.
    pub fn apply(&mut self, msg: &[u8]) -> Result<Applied, DecodeError> {
        let (hdr, payload) = frame::decode(msg).map_err(|e| DecodeError::Frame(e.to_string()))?;
        let mut a = Applied::default();
        match hdr.channel {
            Channel::Cursor => {
                decode_cursor(payload).map_err(|e| DecodeError::Cursor(e.to_string()))?;
                Ok(a)
            }
            Channel::Screen => {
                let update = self
                    .inflater
                    .message(&hdr, payload)
                    .map_err(|e| DecodeError::Update(e.to_string()))?
                    .to_vec();
                let u = decode_update(&update).map_err(|e| DecodeError::Update(e.to_string()))?;
                a.screen = true;
                a.end_of_frame = u.end_of_frame();
                a.key = u.key_frame();
                a.frame = u.frame;
                let (w, h) = (u32::from(u.width), u32::from(u.height));
                if (w, h) != (self.width, self.height) {
                    if !u.key_frame() {
                        return Err(DecodeError::SizeWithoutKey);
                    }
                    self.width = w;
                    self.height = h;
                    self.px = vec![0; (w * h) as usize];
                }
                // Copy rectangles read the surface as it was before this message.
                if u.rects.iter().any(|r| r.encoding == Encoding::Copy) {
                    self.before.clone_from(&self.px);
                }
                for r in &u.rects {
                    let (x, y, rw, rh) = (
                        u32::from(r.x),
                        u32::from(r.y),
                        u32::from(r.w),
                        u32::from(r.h),
                    );
                    if x + rw > w || y + rh > h || rw == 0 || rh == 0 {
                        return Err(self.rect_err(r.encoding, rw, rh, "outside the surface"));
                    }
                    match r.encoding {
                        Encoding::Solid => {
                            a.solid += 1;
                            let [r0, g0, b0] =
                                r.data.get(..3).and_then(|d| d.try_into().ok()).ok_or_else(
                                    || self.rect_err(Encoding::Solid, rw, rh, "short colour"),
                                )?;
                            let c = u32::from_be_bytes([0, r0, g0, b0]);
                            for yy in y..y + rh {
                                let at = (yy * w + x) as usize;
                                self.px[at..at + rw as usize].fill(c);
                            }
                        }
                        Encoding::Copy => {
                            a.copy += 1;
                            let d = r.data;
                            if d.len() < 4 {
                                return Err(self.rect_err(Encoding::Copy, rw, rh, "short source"));
                            }
                            let sx = u32::from(u16::from_be_bytes([d[0], d[1]]));
                            let sy = u32::from(u16::from_be_bytes([d[2], d[3]]));
                            if sx + rw > w || sy + rh > h {
                                return Err(self.rect_err(
                                    Encoding::Copy,
                                    rw,
                                    rh,
                                    "source outside",
                                ));
                            }
                            for yy in 0..rh {
                                let from = ((sy + yy) * w + sx) as usize;
                                let to = ((y + yy) * w + x) as usize;
                                self.px[to..to + rw as usize]
                                    .copy_from_slice(&self.before[from..from + rw as usize]);
                            }
                        }
                        Encoding::Palette => {
                            a.palette += 1;
                            let rgb = Palette::parse(r.w, r.h, r.data)
                                .ok_or_else(|| {
                                    self.rect_err(Encoding::Palette, rw, rh, "bad palette data")
                                })?
                                .to_rgb();
                            self.put_rgb(x, y, rw, rh, &rgb);
                        }
                        Encoding::Png => {
                            a.png += 1;
                            let rgb = self.png(r.data, rw, rh)?;
                            self.put_rgb(x, y, rw, rh, &rgb);
                        }
                        Encoding::Jpeg => {
                            a.jpeg += 1;
                            let rgb = self.jpeg(r.data, rw, rh)?;
                            self.put_rgb(x, y, rw, rh, &rgb);
                        }
                    }
                }
                Ok(a)
            }
            other => Err(DecodeError::Frame(format!("unexpected channel {other:?}"))),
        }
    }

    fn rect_err(&self, enc: Encoding, w: u32, h: u32, why: &str) -> DecodeError {
        DecodeError::Rect {
            enc,
            w,
            h,
            why: why.to_owned(),
        }
    }

    fn png(&self, data: &[u8], w: u32, h: u32) -> Result<Vec<u8>, DecodeError> {
        let err = |why: String| self.rect_err(Encoding::Png, w, h, &why);
        let mut d = png::Decoder::new(data);
        d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut rd = d.read_info().map_err(|e| err(e.to_string()))?;
        let mut buf = vec![0; rd.output_buffer_size()];
        let fi = rd.next_frame(&mut buf).map_err(|e| err(e.to_string()))?;
        if (fi.width, fi.height) != (w, h) {
            return Err(err(format!("holds {}x{}", fi.width, fi.height)));
        }
        let n = (w * h) as usize;
        let rgb: Vec<u8> = match fi.color_type {
            png::ColorType::Rgb => buf.get(..n * 3).map(<[u8]>::to_vec),
            png::ColorType::Rgba => buf
                .get(..n * 4)
                .map(|b| b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()),
            png::ColorType::Grayscale => buf
                .get(..n)
                .map(|b| b.iter().flat_map(|&v| [v, v, v]).collect()),
            png::ColorType::GrayscaleAlpha => buf
                .get(..n * 2)
                .map(|b| b.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect()),
            png::ColorType::Indexed => None,
        }
        .ok_or_else(|| err(format!("colour type {:?} not expanded", fi.color_type)))?;
        Ok(rgb)
    }

    fn jpeg(&mut self, data: &[u8], w: u32, h: u32) -> Result<Vec<u8>, DecodeError> {
        let err = |why: String| DecodeError::Rect {
            enc: Encoding::Jpeg,
            w,
            h,
            why,
        };
        let dec = self
            .jpeg
            .as_mut()
            .ok_or_else(|| err("no JPEG decoder".into()))?;
        let hdr = dec.read_header(data).map_err(|e| err(e.to_string()))?;
        if (hdr.width as u32, hdr.height as u32) != (w, h) {
            return Err(err(format!("holds {}x{}", hdr.width, hdr.height)));
        }
        let mut img = turbojpeg::Image {
            pixels: vec![0u8; (w * h * 3) as usize],
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        dec.decompress(data, img.as_deref_mut())
            .map_err(|e| err(e.to_string()))?;
        Ok(img.pixels)
    }
}

/// Peak signal-to-noise ratio in dB of two pictures of 0x00RRGGBB (infinite when equal),
/// over the pixels `keep` accepts.
pub fn psnr(a: &[u32], b: &[u32], keep: impl Fn(usize) -> bool) -> f64 {
    let (mut se, mut n) = (0f64, 0f64);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if !keep(i) {
            continue;
        }
        for s in [0, 8, 16] {
            let d = f64::from((x >> s) & 0xFF) - f64::from((y >> s) & 0xFF);
            se += d * d;
        }
        n += 3.0;
    }
    if se == 0.0 || n == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}
