//! Turning changed pixels into update messages.
//!
//! [`FrameEncoder`] keeps two pictures of the surface: `current`, the latest capture (valid
//! where the last capture wrote), and `reference`, what the console has been sent. A frame is
//! built in these steps:
//!
//! 1. the blocks marked dirty (from damage) are compared with the reference
//!    ([`super::detect::changed_blocks`]); nothing differs → no frame at all;
//! 2. scrolling and moved content become Copy rectangles ([`super::detect`]), applied to the
//!    reference the way the console applies them, and the blocks they settle drop out;
//! 3. the remaining changed blocks are joined into rectangles, shrunk to their differing
//!    pixels, and pieces close to each other are joined again (one PNG for a line of text
//!    rather than one per block row);
//! 4. a small change whose pixels are on screen already (a typed letter, cut apart from a
//!    single-coloured text cursor) becomes a Copy from there: 4 bytes instead of a PNG;
//! 5. each rectangle is classified in 64×64 cells: one colour or at most 256 colours →
//!    *indexed* (a Palette rectangle, Solid when one colour is left); more colours but mostly
//!    flat (at least half the pixels repeat their left neighbour: text and UI on gradients,
//!    anti-aliased text) → *rgb* (lossless truecolour PNG); otherwise *photo* (JPEG at the
//!    quality the pacer chose). Neighbouring cells of one kind are joined (indexed ones
//!    while their colours still fit one palette), so a page of text is one Palette and a
//!    photo one JPEG;
//! 6. the rectangles are written with `UpdateWriter` into as many messages as needed
//!    (copies first, since they read the surface as it was before the message), and the
//!    reference takes the new pixels;
//! 7. the messages go through the stream's deflate compressor
//!    ([`lifeline_proto::deflate`]), one per encoder, reset at every key frame, whose
//!    history spans frames: a glyph, a word or a row of text seen in the last 32 KiB costs a
//!    back-reference, and the rectangle headers of a typed letter shrink to a few bytes.
//!    Messages with JPEG data of some size are sent plain (JPEG does not deflate, and its
//!    bytes would push text out of the window); small messages get the most thorough
//!    search, large ones a fast one (see [`deflate_level`]).
//!
//! Palette under the stream rather than a PNG for indexed content: both are deflate over
//! the same packed indices, but a PNG starts from an empty history and carries ~60 bytes of
//! chunks, so Palette is smaller for every interactive change; for a whole screen of fresh
//! text (a key frame) the two are within a few per cent, and Palette costs less CPU (no
//! filter bytes, no CRC, one compressor). Truecolour content keeps PNG (no palette fits)
//! and photos JPEG.
//!
//! JPEG-sent blocks are remembered with their quality; [`FrameEncoder::refine`] re-sends
//! them sharper once they stop changing (the stream decides when, and how much at a time),
//! so photos arrive fast and settle crisp (refinements with optimised Huffman tables). Text is never sent lossy: any cell with few
//! colours or flat areas is Palette or PNG.
//!
//! Limits: the classification is a heuristic; a photo cell with at most 256 colours is sent
//! losslessly (bigger, never wrong), and anti-aliased text over a busy photo is JPEG until
//! refined. Truecolour PNGs stand alone (their own deflate streams). The deflate window is
//! 32 KiB: text scrolled in after a page of other content finds little to refer to.

use lifeline_proto::MAX_FRAME_PAYLOAD;
use lifeline_proto::deflate::{DeflateError, LEVEL_BEST, LEVEL_FAST, ScreenDeflater};
use lifeline_proto::screen::{
    Encoding, MAX_RECTS, Rect, ScreenError, UPDATE_END_OF_FRAME, UPDATE_KEY_FRAME, UpdateWriter,
    palette_bits,
};

use super::blocks::{BLOCK, BlockMap};
use super::detect::{self, CopyRect};
use super::pixels::{Area, BPP, Pixels};

/// Side of a classification cell.
pub const CELL: u32 = 64;
/// Most colours of an indexed (palette) rectangle.
pub const MAX_PALETTE: usize = 256;
/// Rectangles up to this many pixels are classified whole and shrunk to their changes.
const SMALL: u64 = (CELL * CELL * 2) as u64;
/// Changes up to this many pixels are looked for elsewhere on screen, at most
/// `GLYPH_SEARCHES` searches a frame.
const GLYPH_MAX: u64 = 48 * 32;
const GLYPH_SEARCHES: usize = 6;
/// ... and only in frames of at most this many rectangles and pixels.
const GLYPH_RECTS: usize = 4;
const GLYPH_FRAME: u64 = 16 * 1024;
/// Messages up to this many bytes get the deflate stream's most thorough search.
const THOROUGH_MAX: usize = 16 * 1024;
/// Room left in a message that goes through the deflate stream, for what deflate adds to
/// data that does not compress (5 bytes per 64 KiB stored block, the flush).
const DEFLATE_SLACK: usize = 16 * 1024;
/// Most bytes of an update message that is deflated.
const MAX_DEFLATED_MESSAGE: usize = MAX_FRAME_PAYLOAD - DEFLATE_SLACK;
/// JPEG and PNG data from this size on goes in plain (not deflated) messages.
const PLAIN_MIN: usize = 1024;
/// Larger changed rectangles are sent whole rather than shrunk to their changes.
const TIGHTEN_MAX: u64 = 512 * 512;
/// Most data of one rectangle: what fits an update message (deflated or not) with nothing
/// else in it.
const MAX_RECT_DATA: usize = MAX_DEFLATED_MESSAGE - 12 - 13;
/// Most copy rectangles per frame (they all go in its first message).
const MAX_COPIES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("a {w}x{h} surface is empty or larger than the protocol allows")]
    Surface { w: u32, h: u32 },
    #[error("the JPEG encoder failed on a {w}x{h} rectangle")]
    Jpeg {
        w: u32,
        h: u32,
        #[source]
        source: turbojpeg::Error,
    },
    #[error("the PNG encoder failed on a {w}x{h} rectangle")]
    Png {
        w: u32,
        h: u32,
        #[source]
        source: png::EncodingError,
    },
    #[error("a rectangle could not be added to the update message")]
    Message(#[source] ScreenError),
    #[error("the deflate stream failed")]
    Deflate(#[source] DeflateError),
    #[error("a deflated message of {0} bytes exceeds the frame payload limit")]
    Deflated(usize),
}

/// Chroma subsampling of JPEG rectangles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0: colour at half resolution both ways (smallest).
    Half,
    /// 4:4:4: full colour resolution (sharper coloured edges).
    Full,
}

/// How hard the lossless encoders work: truecolour PNGs, and the deflate stream on large
/// messages (small ones always get its most thorough search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngEffort {
    Fast,
    Default,
    Best,
}

/// Encoding choices for one frame (from the pacer's quality policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeParams {
    /// JPEG quality 1..=100.
    pub jpeg_quality: u8,
    pub chroma: Chroma,
    pub png: PngEffort,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            jpeg_quality: 70,
            chroma: Chroma::Half,
            png: PngEffort::Default,
        }
    }
}

/// What a frame held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub solid: usize,
    pub png: usize,
    pub jpeg: usize,
    pub copy: usize,
    pub palette: usize,
    /// Payload bytes of all messages as sent, deflated or not (frame headers not included).
    pub bytes: usize,
    /// The same before deflating.
    pub update_bytes: usize,
    /// Messages sent through the deflate stream.
    pub deflated: usize,
    /// Pixels sent as Solid, PNG or JPEG.
    pub pixels: u64,
    /// Pixels and data bytes of the JPEG rectangles.
    pub jpeg_pixels: u64,
    pub jpeg_bytes: usize,
}

/// One message of a frame, ready to wrap in a binary frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// A chunk of the deflate stream (send with `FLAG_DEFLATE`), or a plain update message.
    pub payload: Vec<u8>,
    pub deflated: bool,
}

/// One frame, ready to wrap in binary frames.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The messages in order; the last update has `UPDATE_END_OF_FRAME`. A key frame's
    /// first message starts a new deflate stream (send it with `FLAG_SUPERSEDES`).
    pub messages: Vec<Message>,
    pub key: bool,
    pub stats: FrameStats,
}

/// The deflate level of a message of `len` bytes: small messages (typing, a scrolled line)
/// get the most thorough search, which costs little on a few kilobytes and finds the
/// back-references they are made of; large ones (a page, a key frame) go at the pace the
/// pacer asked for.
pub fn deflate_level(len: usize, effort: PngEffort) -> u8 {
    if len <= THOROUGH_MAX {
        return LEVEL_BEST;
    }
    match effort {
        PngEffort::Fast => LEVEL_FAST,
        PngEffort::Default => 6,
        PngEffort::Best => LEVEL_BEST,
    }
}

/// The worse of two block states (0 exact, else the JPEG quality sent).
fn worst(a: u8, b: u8) -> u8 {
    match (a, b) {
        (0, q) | (q, 0) => q,
        (x, y) => x.min(y),
    }
}

/// Open-addressing colour → palette index table (at most [`MAX_PALETTE`] colours).
struct ColourTable {
    slots: Vec<u32>,
    index: Vec<u8>,
    used: Vec<u16>,
    colours: Vec<u32>,
}

const SLOTS: usize = 1024;
const EMPTY: u32 = u32::MAX;

impl ColourTable {
    fn new() -> Self {
        ColourTable {
            slots: vec![EMPTY; SLOTS],
            index: vec![0; SLOTS],
            used: Vec::with_capacity(MAX_PALETTE),
            colours: Vec::with_capacity(MAX_PALETTE),
        }
    }

    fn clear(&mut self) {
        for &s in &self.used {
            self.slots[usize::from(s)] = EMPTY;
        }
        self.used.clear();
        self.colours.clear();
    }

    /// The palette index of `c` (0x00RRGGBB), adding it; `None` once the palette is full
    /// and `c` is new.
    #[inline]
    fn insert(&mut self, c: u32) -> Option<u8> {
        let mut s = (c.wrapping_mul(0x9E37_79B1) >> 22) as usize;
        loop {
            let v = self.slots[s];
            if v == c {
                return Some(self.index[s]);
            }
            if v == EMPTY {
                if self.colours.len() >= MAX_PALETTE {
                    return None;
                }
                self.slots[s] = c;
                self.index[s] = self.colours.len() as u8;
                self.used.push(s as u16);
                self.colours.push(c);
                return Some(self.index[s]);
            }
            s = (s + 1) & (SLOTS - 1);
        }
    }
}

/// What kind of content a cell holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Few colours: these (sorted).
    Indexed(Vec<u32>),
    /// Many colours, flat areas: lossless truecolour.
    Rgb,
    /// Photographic: JPEG.
    Photo,
}

impl Kind {
    /// The kind of two neighbours joined, if they may be joined.
    fn join(&self, o: &Kind) -> Option<Kind> {
        match (self, o) {
            (Kind::Indexed(a), Kind::Indexed(b)) => {
                let mut u = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() || j < b.len() {
                    let next = match (a.get(i), b.get(j)) {
                        (Some(&x), Some(&y)) if x == y => {
                            i += 1;
                            j += 1;
                            x
                        }
                        (Some(&x), Some(&y)) if x < y => {
                            i += 1;
                            x
                        }
                        (Some(_), Some(&y)) => {
                            j += 1;
                            y
                        }
                        (Some(&x), None) => {
                            i += 1;
                            x
                        }
                        (None, Some(&y)) => {
                            j += 1;
                            y
                        }
                        (None, None) => break,
                    };
                    u.push(next);
                    if u.len() > MAX_PALETTE {
                        return None;
                    }
                }
                Some(Kind::Indexed(u))
            }
            (Kind::Rgb, Kind::Rgb) => Some(Kind::Rgb),
            (Kind::Photo, Kind::Photo) => Some(Kind::Photo),
            _ => None,
        }
    }
}

/// Keeps what the console shows and encodes the differences to the latest capture.
pub struct FrameEncoder {
    width: u32,
    height: u32,
    reference: Pixels,
    current: Pixels,
    dirty: BlockMap,
    changed: BlockMap,
    /// Per block: 0 = exact on the console, else the JPEG quality it was sent with.
    lossy: Vec<u8>,
    table: ColourTable,
    jpeg: Option<turbojpeg::Compressor>,
    scratch: Vec<u8>,
    /// The stream's compressor: its history is what the console's inflater holds.
    deflater: ScreenDeflater,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameEncoder({}x{})", self.width, self.height)
    }
}

impl FrameEncoder {
    /// An encoder for a `width`×`height` surface; the console is assumed to show nothing,
    /// so the first frame should be a key frame.
    pub fn new(width: u32, height: u32) -> Result<Self, EncodeError> {
        let max = u32::from(lifeline_proto::screen::MAX_SURFACE);
        if width == 0 || height == 0 || width > max || height > max {
            return Err(EncodeError::Surface {
                w: width,
                h: height,
            });
        }
        let dirty = BlockMap::new(width, height);
        let blocks = dirty.len();
        Ok(FrameEncoder {
            width,
            height,
            reference: Pixels::new(width, height),
            current: Pixels::new(width, height),
            changed: dirty.clone(),
            dirty,
            lossy: vec![0; blocks],
            table: ColourTable::new(),
            jpeg: None,
            scratch: Vec::new(),
            deflater: ScreenDeflater::new(LEVEL_FAST),
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The capture buffer: write captured pixels here (at least the dirty areas).
    pub fn current_mut(&mut self) -> &mut Pixels {
        &mut self.current
    }

    pub fn current(&self) -> &Pixels {
        &self.current
    }

    /// What the console shows (lossy blocks hold the pixels before compression).
    pub fn reference(&self) -> &Pixels {
        &self.reference
    }

    /// Notes that `area` (surface coordinates) may have changed.
    pub fn mark_dirty(&mut self, area: Area) {
        self.dirty.mark(area);
    }

    /// Notes that everything may have changed.
    pub fn mark_all_dirty(&mut self) {
        self.dirty.set_all();
    }

    pub fn has_dirty(&self) -> bool {
        self.dirty.any()
    }

    /// The areas to capture before [`FrameEncoder::encode`]: disjoint, block-aligned.
    pub fn dirty_areas(&self) -> Vec<Area> {
        self.dirty.rects()
    }

    /// Whether some block was sent as JPEG below `quality`.
    pub fn lossy_below(&self, quality: u8) -> bool {
        self.lossy.iter().any(|&q| q != 0 && q < quality)
    }

    /// Encodes the changes of the dirty areas as frame `frame`; `None` when nothing
    /// changed. A key frame repaints the whole surface (capture all of it first). `moves`
    /// are offsets (dx, dy) worth trying for moved content.
    pub fn encode(
        &mut self,
        frame: u32,
        key: bool,
        params: &EncodeParams,
        moves: &[(i32, i32)],
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let mut copies = Vec::new();
        if key {
            self.changed.set_all();
        } else {
            let dirty_rects = self.dirty.rects();
            detect::changed_blocks(
                &self.current,
                &self.reference,
                &self.dirty,
                &mut self.changed,
            );
            if !self.changed.any() {
                self.dirty.clear();
                return Ok(None);
            }
            copies = self.find_copies(&dirty_rects, moves);
        }
        self.dirty.clear();
        let mut out = Messages::new(self.width, self.height, frame)?;
        for c in &copies {
            out.push_copy(c)?;
        }
        let mut rects = self.changed.rects();
        if !key {
            // Block rectangles shrink to their differing pixels (a glyph, a line of text),
            // then pieces close to each other join (one PNG instead of several).
            rects = rects
                .into_iter()
                .filter_map(|r| {
                    if r.pixels() > TIGHTEN_MAX {
                        Some(r)
                    } else {
                        detect::tighten(&self.current, &self.reference, r)
                    }
                })
                .collect();
            detect::join_close(&mut rects);
            // Looking for glyphs on screen pays for small, interactive changes only.
            let small: u64 = rects.iter().map(Area::pixels).sum();
            if copies.is_empty() && rects.len() <= GLYPH_RECTS && small <= GLYPH_FRAME {
                rects = self.reuse_glyphs(rects, &mut out)?;
            }
        }
        for area in rects {
            self.encode_area(area, params, &mut out, false)?;
        }
        self.changed.clear();
        if out.is_empty() {
            return Ok(None);
        }
        if key {
            // The key frame's first message starts the stream afresh, for every viewer.
            self.deflater.reset();
        }
        self.seal(out.finish(key), params).map(Some)
    }

    /// Re-sends every block sent as JPEG below `params.jpeg_quality`, from the reference,
    /// with `params`; `None` when there is none.
    ///
    /// At most about `max_pixels` are re-sent (whole rectangles of blocks, at least one);
    /// the rest stays lossy for a later call, so a slow link is never busy for long with
    /// a refinement.
    pub fn refine(
        &mut self,
        frame: u32,
        params: &EncodeParams,
        max_pixels: u64,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let mut map = BlockMap::new(self.width, self.height);
        let cols = map.cols();
        for (i, &q) in self.lossy.iter().enumerate() {
            if q != 0 && q < params.jpeg_quality {
                map.set(i as u32 % cols, i as u32 / cols, true);
            }
        }
        if !map.any() {
            return Ok(None);
        }
        let mut out = Messages::new(self.width, self.height, frame)?;
        let mut budget = max_pixels;
        for r in map.rects() {
            if budget == 0 {
                break;
            }
            // Rectangles are block rows joined downwards: cut to the budget by rows.
            let rows = (budget / u64::from(r.w)).clamp(u64::from(BLOCK), u64::from(r.h)) as u32;
            let rows = if rows < r.h {
                rows / BLOCK * BLOCK
            } else {
                rows
            };
            let part = Area::new(r.x, r.y, r.w, rows);
            budget = budget.saturating_sub(part.pixels());
            self.encode_area(part, params, &mut out, true)?;
        }
        self.seal(out.finish(false), params).map(Some)
    }

    /// Runs the messages meant for the deflate stream through it, in order.
    fn seal(
        &mut self,
        mut frame: EncodedFrame,
        params: &EncodeParams,
    ) -> Result<EncodedFrame, EncodeError> {
        frame.stats.update_bytes = frame.messages.iter().map(|m| m.payload.len()).sum();
        for m in frame.messages.iter_mut().filter(|m| m.deflated) {
            self.deflater
                .set_level(deflate_level(m.payload.len(), params.png));
            let mut chunk = Vec::with_capacity(m.payload.len() / 4 + 64);
            self.deflater
                .deflate(&m.payload, &mut chunk)
                .map_err(EncodeError::Deflate)?;
            if chunk.len() > MAX_FRAME_PAYLOAD {
                return Err(EncodeError::Deflated(chunk.len()));
            }
            m.payload = chunk;
            frame.stats.deflated += 1;
        }
        frame.stats.bytes = frame.messages.iter().map(|m| m.payload.len()).sum();
        Ok(frame)
    }

    /// Scroll and move copies; applies them to the reference and drops the blocks they
    /// settle from `changed`.
    ///
    /// Scrolling is searched in the bounding box of the changes inside each damaged
    /// rectangle (a scrolled area is damaged whole, while its changed blocks are ragged
    /// where lines end).
    fn find_copies(&mut self, dirty: &[Area], moves: &[(i32, i32)]) -> Vec<CopyRect> {
        let mut copies = Vec::new();
        for d in dirty {
            if let Some(r) = self.changed.bounds_within(*d)
                && r.h >= 2 * BLOCK
                && r.w >= 2 * BLOCK
            {
                copies.extend(detect::find_scroll(&self.current, &self.reference, r));
            }
        }
        let mut settled = BlockMap::new(self.width, self.height);
        detect::copied_blocks(&copies, &mut settled);
        for &(dx, dy) in moves {
            let found = detect::find_moves(
                &self.current,
                &self.reference,
                &self.changed,
                &settled,
                dx,
                dy,
            );
            detect::copied_blocks(&found, &mut settled);
            copies.extend(found);
        }
        copies.truncate(MAX_COPIES);
        if copies.is_empty() {
            return copies;
        }
        // Lossiness travels with the copied pixels: every destination block takes the
        // worst state of the source blocks its pixels come from (read before any copy).
        let moved: Vec<(usize, u8)> = copies
            .iter()
            .flat_map(|c| self.copied_lossiness(c))
            .collect();
        for (i, q) in moved {
            if let Some(l) = self.lossy.get_mut(i) {
                *l = worst(*l, q);
            }
        }
        detect::apply_copies(&mut self.reference, &copies);
        // What is left to send after the copies.
        let mut still = BlockMap::new(self.width, self.height);
        detect::changed_blocks(&self.current, &self.reference, &self.changed, &mut still);
        self.changed = still;
        copies
    }

    /// For each block a copy writes to: its index and the worst lossiness of the source
    /// blocks under the pixels copied into it.
    fn copied_lossiness(&self, c: &CopyRect) -> Vec<(usize, u8)> {
        let cols = self.dirty.cols();
        let d = c.dst;
        let (ox, oy) = (c.sx as i32 - d.x, c.sy as i32 - d.y);
        let mut out = Vec::new();
        for r in d.y as u32 / BLOCK..(d.y as u32 + d.h).div_ceil(BLOCK) {
            for col in d.x as u32 / BLOCK..(d.x as u32 + d.w).div_ceil(BLOCK) {
                let part = self.dirty.block_area(col, r).intersect(&d);
                let src = Area::new(part.x + ox, part.y + oy, part.w, part.h);
                out.push(((r * cols + col) as usize, self.lossiness(src)));
            }
        }
        out
    }

    /// The worst lossiness of the blocks under `area` (0: all exact).
    fn lossiness(&self, area: Area) -> u8 {
        let cols = self.dirty.cols();
        let a = area.intersect(&Area::new(0, 0, self.width, self.height));
        if a.is_empty() {
            return 0;
        }
        let mut q = 0;
        for r in a.y as u32 / BLOCK..(a.y as u32 + a.h).div_ceil(BLOCK) {
            for col in a.x as u32 / BLOCK..(a.x as u32 + a.w).div_ceil(BLOCK) {
                q = worst(
                    q,
                    self.lossy
                        .get((r * cols + col) as usize)
                        .copied()
                        .unwrap_or(0),
                );
            }
        }
        q
    }

    /// Small changes whose pixels are on screen already (a typed letter) become copies:
    /// each small rectangle is cut into single-coloured column runs (a text cursor) and
    /// the rest, and when every rest is found in the reference the rectangle goes out as
    /// copies (plus the single-coloured runs, returned to be sent as Solid). Only called
    /// before anything else was sent in the frame, so sources are read from the picture
    /// the console has before the message, as Copy requires.
    fn reuse_glyphs(
        &mut self,
        rects: Vec<Area>,
        out: &mut Messages,
    ) -> Result<Vec<Area>, EncodeError> {
        let mut rest = Vec::with_capacity(rects.len());
        let mut copies = Vec::new();
        let mut searches = 0;
        for r in rects {
            if r.pixels() > GLYPH_MAX || r.h > 64 || searches >= GLYPH_SEARCHES {
                rest.push(r);
                continue;
            }
            let runs = detect::column_runs(&self.current, r);
            let mut found = Vec::new();
            let mut solids = Vec::new();
            let mut all = true;
            for (a, solid) in runs {
                if solid {
                    solids.push(a);
                    continue;
                }
                searches += 1;
                // A source the console only has as JPEG would smear the text.
                let source =
                    detect::find_source(&self.current, &self.reference, a).filter(|&(sx, sy)| {
                        self.lossiness(Area::new(sx as i32, sy as i32, a.w, a.h)) == 0
                    });
                match source {
                    Some((sx, sy)) => found.push(CopyRect { dst: a, sx, sy }),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            // Worth it with a copy, or as a few Solid pieces (a space typed: a blank
            // cell and the cursor) instead of one PNG.
            if all && (!found.is_empty() || (2..=4).contains(&solids.len())) {
                copies.extend(found);
                rest.extend(solids);
            } else {
                rest.push(r);
            }
        }
        for c in &copies {
            out.push_copy(c)?;
        }
        detect::apply_copies(&mut self.reference, &copies);
        Ok(rest)
    }

    /// Classifies `area` and encodes it (from the reference when refining).
    fn encode_area(
        &mut self,
        area: Area,
        params: &EncodeParams,
        out: &mut Messages,
        refine: bool,
    ) -> Result<(), EncodeError> {
        let units = self.units(area, refine);
        // The units cover `area` exactly: start from "exact", JPEG units lower it.
        self.set_lossy(area, 0);
        for (a, kind) in units {
            self.encode_unit(a, &kind, params, out, refine)?;
        }
        Ok(())
    }

    /// Splits `area` into runs of cells of one kind.
    fn units(&mut self, area: Area, refine: bool) -> Vec<(Area, Kind)> {
        if area.pixels() <= SMALL {
            let src = if refine {
                &self.reference
            } else {
                &self.current
            };
            let k = classify(src, area, &mut self.table);
            return vec![(area, k)];
        }
        let src = if refine {
            &self.reference
        } else {
            &self.current
        };
        let (x0, y0) = (area.x as u32, area.y as u32);
        let (x1, y1) = (x0 + area.w, y0 + area.h);
        let mut done: Vec<(Area, Kind)> = Vec::new();
        // Open runs of the previous cell row: (area, kind).
        let mut open: Vec<(Area, Kind)> = Vec::new();
        let mut cy = y0 / CELL * CELL;
        while cy < y1 {
            let ry0 = cy.max(y0);
            let ry1 = (cy + CELL).min(y1);
            let mut row: Vec<(Area, Kind)> = Vec::new();
            let mut cx = x0 / CELL * CELL;
            while cx < x1 {
                let rx0 = cx.max(x0);
                let rx1 = (cx + CELL).min(x1);
                let cell = Area::new(rx0 as i32, ry0 as i32, rx1 - rx0, ry1 - ry0);
                let k = classify(src, cell, &mut self.table);
                match row.last_mut() {
                    Some((a, last)) => match last.join(&k) {
                        Some(j) => {
                            *a = a.union(&cell);
                            *last = j;
                        }
                        None => row.push((cell, k)),
                    },
                    None => row.push((cell, k)),
                }
                cx += CELL;
            }
            // Join runs with the open run right above them when the columns match.
            let mut next = Vec::with_capacity(row.len());
            for (a, k) in row {
                let above = open
                    .iter()
                    .position(|(o, ok)| o.x == a.x && o.w == a.w && ok.join(&k).is_some());
                match above {
                    Some(i) => {
                        let (o, ok) = open.swap_remove(i);
                        let j = ok.join(&k).unwrap_or(Kind::Rgb);
                        next.push((o.union(&a), j));
                    }
                    None => next.push((a, k)),
                }
            }
            done.append(&mut open);
            open = next;
            cy += CELL;
        }
        done.append(&mut open);
        done
    }

    fn encode_unit(
        &mut self,
        area: Area,
        kind: &Kind,
        params: &EncodeParams,
        out: &mut Messages,
        refine: bool,
    ) -> Result<(), EncodeError> {
        let (encoding, data, quality) = match kind {
            Kind::Indexed(colours) if colours.len() == 1 => {
                let [b, g, r, _] = colours[0].to_le_bytes();
                (Encoding::Solid, vec![r, g, b], 0)
            }
            Kind::Indexed(colours) => (Encoding::Palette, self.palette(area, colours, refine), 0),
            Kind::Rgb => (Encoding::Png, self.png_rgb(area, params.png, refine)?, 0),
            Kind::Photo => (
                Encoding::Jpeg,
                self.jpeg(area, params, refine)?,
                params.jpeg_quality.max(1),
            ),
        };
        if data.len() > MAX_RECT_DATA && area.pixels() > 1 {
            // Too big for one message: halve it along its longer side.
            let (a, b) = if area.h >= area.w {
                let h = area.h / 2;
                (
                    Area::new(area.x, area.y, area.w, h),
                    Area::new(area.x, area.y + h as i32, area.w, area.h - h),
                )
            } else {
                let w = area.w / 2;
                (
                    Area::new(area.x, area.y, w, area.h),
                    Area::new(area.x + w as i32, area.y, area.w - w, area.h),
                )
            };
            self.encode_unit(a, kind, params, out, refine)?;
            return self.encode_unit(b, kind, params, out, refine);
        }
        out.push(area, encoding, &data)?;
        if !refine {
            self.reference.copy_from(&self.current, area);
        }
        if quality != 0 {
            self.set_lossy(area, quality);
        }
        Ok(())
    }

    /// Records the quality the blocks under `area` now have on the console: with quality 0
    /// (exact), blocks wholly inside `area` become exact; otherwise every block touched is
    /// at most that good.
    fn set_lossy(&mut self, area: Area, quality: u8) {
        let cols = self.dirty.cols();
        let (x0, y0) = (area.x as u32, area.y as u32);
        let (x1, y1) = (x0 + area.w, y0 + area.h);
        for r in y0 / BLOCK..y1.div_ceil(BLOCK) {
            for c in x0 / BLOCK..x1.div_ceil(BLOCK) {
                let inside = {
                    let b = self.dirty.block_area(c, r);
                    b.intersect(&area) == b
                };
                let Some(l) = self.lossy.get_mut((r * cols + c) as usize) else {
                    continue;
                };
                if quality == 0 {
                    if inside {
                        *l = 0;
                    }
                } else {
                    *l = if *l == 0 { quality } else { (*l).min(quality) };
                }
            }
        }
    }

    /// Palette data of `area`, whose colours are `colours` (sorted, so the same colours
    /// always get the same indices and a glyph the same bits).
    fn palette(&mut self, area: Area, colours: &[u32], refine: bool) -> Vec<u8> {
        self.table.clear();
        for &c in colours {
            self.table.insert(c);
        }
        let bits = palette_bits(colours.len());
        let row_bytes = (area.w * bits).div_ceil(8) as usize;
        let head = 1 + 3 * colours.len();
        let mut data = Vec::with_capacity(head + row_bytes * area.h as usize);
        data.push((colours.len() - 1) as u8);
        for c in colours {
            let [b, g, r, _] = c.to_le_bytes();
            data.extend_from_slice(&[r, g, b]);
        }
        data.resize(head + row_bytes * area.h as usize, 0);
        let src = if refine {
            &self.reference
        } else {
            &self.current
        };
        for (ry, y) in (area.y as u32..area.y as u32 + area.h).enumerate() {
            let row = src.row(area.x as u32, y, area.w);
            let at = head + ry * row_bytes;
            let dst = &mut data[at..at + row_bytes];
            // The two colours seen last and their indices (ink and background).
            let (mut last, mut idx) = (u32::MAX, 0u8);
            let (mut prev, mut prev_idx) = (u32::MAX, 0u8);
            for (i, p) in row.chunks_exact(BPP).enumerate() {
                let c = u32::from_le_bytes([p[0], p[1], p[2], 0]);
                if c != last {
                    let found = if c == prev {
                        prev_idx
                    } else {
                        // Every colour of the area is in the palette; a miss maps to 0.
                        self.table.insert(c).unwrap_or(0)
                    };
                    (prev, prev_idx) = (last, idx);
                    (last, idx) = (c, found);
                }
                let bit = i as u32 * bits;
                dst[(bit / 8) as usize] |= idx << (8 - bits - bit % 8);
            }
        }
        data
    }

    fn png_rgb(
        &mut self,
        area: Area,
        effort: PngEffort,
        refine: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut rgb = std::mem::take(&mut self.scratch);
        rgb.clear();
        rgb.reserve(area.pixels() as usize * 3);
        let src = if refine {
            &self.reference
        } else {
            &self.current
        };
        for y in area.y as u32..area.y as u32 + area.h {
            for p in src.row(area.x as u32, y, area.w).chunks_exact(BPP) {
                rgb.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
        let res = write_png(
            area,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            None,
            png::FilterType::Sub,
            effort,
            &rgb,
        );
        self.scratch = rgb;
        res
    }

    fn jpeg(
        &mut self,
        area: Area,
        params: &EncodeParams,
        refine: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        let err = |source| EncodeError::Jpeg {
            w: area.w,
            h: area.h,
            source,
        };
        if self.jpeg.is_none() {
            self.jpeg = Some(turbojpeg::Compressor::new().map_err(err)?);
        }
        let src = if refine {
            &self.reference
        } else {
            &self.current
        };
        let Some(c) = self.jpeg.as_mut() else {
            return Err(err(turbojpeg::Error::Null));
        };
        c.set_quality(i32::from(params.jpeg_quality.clamp(1, 100)))
            .map_err(err)?;
        c.set_subsamp(match params.chroma {
            Chroma::Half => turbojpeg::Subsamp::Sub2x2,
            Chroma::Full => turbojpeg::Subsamp::None,
        })
        .map_err(err)?;
        // Refinements are not in a hurry: optimised Huffman tables take ~5 % off.
        c.set_optimize(refine).map_err(err)?;
        let stride = src.stride();
        let start = area.y as usize * stride + area.x as usize * BPP;
        let image = turbojpeg::Image {
            pixels: &src.data()[start..],
            width: area.w as usize,
            pitch: stride,
            height: area.h as usize,
            format: turbojpeg::PixelFormat::BGRX,
        };
        c.compress_to_vec(image).map_err(err)
    }
}

fn write_png(
    area: Area,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    filter: png::FilterType,
    effort: PngEffort,
    data: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let err = |source| EncodeError::Png {
        w: area.w,
        h: area.h,
        source,
    };
    let mut out = Vec::with_capacity(data.len() / 4 + 128);
    {
        let mut enc = png::Encoder::new(&mut out, area.w, area.h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        enc.set_compression(match effort {
            PngEffort::Fast => png::Compression::Fast,
            PngEffort::Default => png::Compression::Default,
            PngEffort::Best => png::Compression::Best,
        });
        enc.set_filter(filter);
        enc.set_adaptive_filter(png::AdaptiveFilterType::NonAdaptive);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(data).map_err(err)?;
        w.finish().map_err(err)?;
    }
    Ok(out)
}

/// Classifies the pixels of `area`.
fn classify(px: &Pixels, area: Area, t: &mut ColourTable) -> Kind {
    t.clear();
    let mut repeats = 0u64;
    let mut counted = 0u64;
    let mut rows = area.y as u32..area.y as u32 + area.h;
    // Palette pass: stops at the 257th colour. The two colours seen last are remembered
    // (text alternates between its ink and its background), so most pixels cost one or two
    // comparisons and no table lookup.
    let mut full = false;
    for y in rows.by_ref() {
        let row = px.row(area.x as u32, y, area.w);
        let (mut last, mut prev) = (u32::MAX, u32::MAX);
        for p in row.chunks_exact(BPP) {
            let c = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            if c == last {
                repeats += 1;
                continue;
            }
            if c != prev && t.insert(c).is_none() {
                full = true;
                break;
            }
            prev = last;
            last = c;
        }
        counted += u64::from(area.w);
        if full {
            break;
        }
    }
    if !full {
        let mut colours = t.colours.clone();
        colours.sort_unstable();
        return Kind::Indexed(colours);
    }
    // Many colours: flat (UI, text on gradients) or photographic? Count repeated
    // neighbours on every fourth remaining row.
    for y in rows.step_by(4) {
        let row = px.row(area.x as u32, y, area.w);
        let mut last = u32::MAX;
        for p in row.chunks_exact(BPP) {
            let c = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            repeats += u64::from(c == last);
            last = c;
        }
        counted += u64::from(area.w);
    }
    if repeats * 2 >= counted {
        Kind::Rgb
    } else {
        Kind::Photo
    }
}

/// Update messages of one frame, opened as rectangles come. A message is meant for the
/// deflate stream unless it holds JPEG or PNG data of some size (already compressed: deflate
/// would spend time on it for nothing, and push text out of the stream's window); a
/// rectangle that wants the other kind than the open message starts a new one.
struct Messages {
    width: u16,
    height: u16,
    frame: u32,
    done: Vec<Message>,
    cur: UpdateWriter,
    /// Whether the open message is plain; `None` while nothing in it has a preference.
    cur_plain: Option<bool>,
    stats: FrameStats,
}

impl Messages {
    fn new(width: u32, height: u32, frame: u32) -> Result<Self, EncodeError> {
        let (w, h) = (width as u16, height as u16);
        Ok(Messages {
            width: w,
            height: h,
            frame,
            done: Vec::new(),
            cur: UpdateWriter::new(w, h, frame).map_err(EncodeError::Message)?,
            cur_plain: None,
            stats: FrameStats::default(),
        })
    }

    fn is_empty(&self) -> bool {
        self.done.is_empty() && self.cur.is_empty()
    }

    /// Closes the open message and opens a new one.
    fn next_message(&mut self) -> Result<(), EncodeError> {
        let next =
            UpdateWriter::new(self.width, self.height, self.frame).map_err(EncodeError::Message)?;
        let full = std::mem::replace(&mut self.cur, next);
        self.done.push(Message {
            payload: full.finish(0),
            deflated: self.cur_plain != Some(true),
        });
        self.cur_plain = None;
        Ok(())
    }

    fn push(&mut self, a: Area, encoding: Encoding, data: &[u8]) -> Result<(), EncodeError> {
        let plain = match encoding {
            Encoding::Jpeg | Encoding::Png if data.len() >= PLAIN_MIN => Some(true),
            Encoding::Palette => Some(false),
            _ => None,
        };
        let clash = matches!((plain, self.cur_plain), (Some(p), Some(c)) if p != c);
        let fits =
            self.cur.fits(data.len()) && self.cur.len() + 13 + data.len() <= MAX_DEFLATED_MESSAGE;
        if (clash || !fits) && !self.cur.is_empty() {
            self.next_message()?;
        }
        self.cur
            .push(&Rect {
                x: a.x as u16,
                y: a.y as u16,
                w: a.w as u16,
                h: a.h as u16,
                encoding,
                data,
            })
            .map_err(EncodeError::Message)?;
        if self.cur_plain.is_none() {
            self.cur_plain = plain;
        }
        match encoding {
            Encoding::Solid => self.stats.solid += 1,
            Encoding::Png => self.stats.png += 1,
            Encoding::Jpeg => self.stats.jpeg += 1,
            Encoding::Copy => self.stats.copy += 1,
            Encoding::Palette => self.stats.palette += 1,
        }
        if encoding != Encoding::Copy {
            self.stats.pixels += a.pixels();
        }
        if encoding == Encoding::Jpeg {
            self.stats.jpeg_pixels += a.pixels();
            self.stats.jpeg_bytes += data.len();
        }
        Ok(())
    }

    fn push_copy(&mut self, c: &CopyRect) -> Result<(), EncodeError> {
        debug_assert!(self.done.is_empty() && usize::from(MAX_RECTS) > MAX_COPIES);
        let mut data = [0u8; 4];
        data[..2].copy_from_slice(&(c.sx as u16).to_be_bytes());
        data[2..].copy_from_slice(&(c.sy as u16).to_be_bytes());
        self.push(c.dst, Encoding::Copy, &data)
    }

    /// The frame's messages, not deflated yet (see [`FrameEncoder::seal`]).
    fn finish(mut self, key: bool) -> EncodedFrame {
        let key_flag = if key { UPDATE_KEY_FRAME } else { 0 };
        let mut messages: Vec<Message> = Vec::with_capacity(self.done.len() + 1);
        for mut m in self.done.drain(..) {
            m.payload[1] |= key_flag;
            messages.push(m);
        }
        messages.push(Message {
            payload: self.cur.finish(UPDATE_END_OF_FRAME | key_flag),
            deflated: self.cur_plain != Some(true),
        });
        EncodedFrame {
            messages,
            key,
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_proto::deflate::ScreenInflater;
    use lifeline_proto::frame::{Channel, FLAG_DEFLATE, FLAG_SUPERSEDES, FrameHeader};
    use lifeline_proto::screen::{Palette, decode_update};
    use proptest::prelude::*;

    /// What a console holds: the picture and the deflate stream's inflater.
    struct Console {
        px: Pixels,
        inflater: ScreenInflater,
        seq: u32,
    }

    impl Console {
        fn new(w: u32, h: u32) -> Self {
            Console {
                px: Pixels::new(w, h),
                inflater: ScreenInflater::new(),
                seq: 0,
            }
        }

        /// Applies a frame as a console would, messages flagged as the stream thread flags
        /// them.
        fn apply(&mut self, frame: &EncodedFrame) {
            for (i, m) in frame.messages.iter().enumerate() {
                self.seq = self.seq.wrapping_add(1);
                let flags = if frame.key && i == 0 {
                    FLAG_SUPERSEDES
                } else {
                    0
                } | if m.deflated { FLAG_DEFLATE } else { 0 };
                let h = FrameHeader {
                    channel: Channel::Screen,
                    flags,
                    seq: self.seq,
                    len: m.payload.len() as u32,
                };
                let update = self.inflater.message(&h, &m.payload).unwrap().to_vec();
                apply_update(&mut self.px, &update);
            }
        }
    }

    /// Applies one update message to an RGB canvas (lossless parts exactly; JPEG
    /// rectangles are decoded too, for size checks).
    fn apply_update(canvas: &mut Pixels, m: &[u8]) {
        {
            let u = decode_update(m).unwrap();
            assert_eq!(
                (u.width as u32, u.height as u32),
                (canvas.width(), canvas.height())
            );
            let before = canvas.clone();
            for r in &u.rects {
                let a = Area::new(r.x.into(), r.y.into(), r.w.into(), r.h.into());
                match r.encoding {
                    Encoding::Solid => {
                        let c = u32::from_be_bytes([0, r.data[0], r.data[1], r.data[2]]);
                        canvas.fill(a, c);
                    }
                    Encoding::Copy => {
                        let sx = u16::from_be_bytes([r.data[0], r.data[1]]);
                        let sy = u16::from_be_bytes([r.data[2], r.data[3]]);
                        canvas.blit(&before, sx.into(), sy.into(), a);
                    }
                    Encoding::Png => {
                        let mut d = png::Decoder::new(r.data);
                        d.set_transformations(png::Transformations::EXPAND);
                        let mut rd = d.read_info().unwrap();
                        let mut buf = vec![0; rd.output_buffer_size()];
                        let info = rd.next_frame(&mut buf).unwrap();
                        assert_eq!((info.width, info.height), (a.w, a.h));
                        let n = match info.color_type {
                            png::ColorType::Rgb => 3,
                            png::ColorType::Grayscale => 1,
                            other => panic!("unexpected PNG colour type {other:?}"),
                        };
                        for y in 0..a.h {
                            for x in 0..a.w {
                                let i = ((y * a.w + x) * n) as usize;
                                let (r, g, b) = if n == 3 {
                                    (buf[i], buf[i + 1], buf[i + 2])
                                } else {
                                    (buf[i], buf[i], buf[i])
                                };
                                let c = u32::from_be_bytes([0, r, g, b]);
                                canvas.fill(Area::new(a.x + x as i32, a.y + y as i32, 1, 1), c);
                            }
                        }
                    }
                    Encoding::Palette => {
                        let rgb = Palette::parse(r.w, r.h, r.data).unwrap().to_rgb();
                        for (k, px) in rgb.chunks_exact(3).enumerate() {
                            let (x, y) = (k as u32 % a.w, k as u32 / a.w);
                            let c = u32::from_be_bytes([0, px[0], px[1], px[2]]);
                            canvas.fill(Area::new(a.x + x as i32, a.y + y as i32, 1, 1), c);
                        }
                    }
                    Encoding::Jpeg => {
                        let img =
                            turbojpeg::decompress(r.data, turbojpeg::PixelFormat::BGRX).unwrap();
                        assert_eq!((img.width as u32, img.height as u32), (a.w, a.h));
                        let p = Pixels::from_bgrx(a.w, a.h, img.pixels).unwrap();
                        canvas.blit(&p, 0, 0, a);
                    }
                }
            }
        }
    }

    fn strip(p: &Pixels) -> Vec<u32> {
        (0..p.height())
            .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
            .map(|(x, y)| p.rgb(x, y))
            .collect()
    }

    #[test]
    fn key_then_small_change() {
        let mut enc = FrameEncoder::new(300, 200).unwrap();
        let p = EncodeParams::default();
        enc.current_mut().fill(Area::new(0, 0, 300, 200), 0xEEEEEE);
        enc.current_mut().fill(Area::new(10, 10, 50, 8), 0x000000);
        let key = enc.encode(1, true, &p, &[]).unwrap().unwrap();
        assert!(key.key);
        let mut canvas = Console::new(300, 200);
        canvas.apply(&key);
        assert_eq!(strip(&canvas.px), strip(enc.current()));
        // Nothing changed: no frame.
        enc.mark_all_dirty();
        assert!(enc.encode(2, false, &p, &[]).unwrap().is_none());
        // One glyph-sized change: one small rectangle.
        enc.current_mut().fill(Area::new(100, 50, 3, 7), 0x0000FF);
        enc.current_mut().fill(Area::new(104, 50, 2, 7), 0x000000);
        enc.mark_dirty(Area::new(96, 48, 16, 16));
        let f = enc.encode(2, false, &p, &[]).unwrap().unwrap();
        canvas.apply(&f);
        assert_eq!(strip(&canvas.px), strip(enc.current()));
        assert!(f.stats.bytes < 200, "{:?}", f.stats);
        assert_eq!((f.stats.palette, f.stats.png), (1, 0));
    }

    #[test]
    fn photos_go_jpeg_and_are_refined_in_slices() {
        let (w, h) = (256u32, 192u32);
        let mut enc = FrameEncoder::new(w, h).unwrap();
        let mut n = 99u32;
        for y in 0..h {
            for x in 0..w {
                n ^= n << 13;
                n ^= n >> 17;
                n ^= n << 5;
                let c = ((x * 255 / w) << 16) | ((y * 255 / h) << 8) | (n & 0x3F);
                enc.current_mut()
                    .fill(Area::new(x as i32, y as i32, 1, 1), c);
            }
        }
        let low = EncodeParams {
            jpeg_quality: 40,
            ..Default::default()
        };
        let key = enc.encode(1, true, &low, &[]).unwrap().unwrap();
        assert!(key.stats.jpeg > 0 && key.stats.png == 0, "{:?}", key.stats);
        let mut canvas = Console::new(w, h);
        canvas.apply(&key);
        assert!(enc.lossy_below(90));
        let sharp = EncodeParams {
            jpeg_quality: 90,
            chroma: Chroma::Full,
            ..Default::default()
        };
        let mut slices = 0;
        while enc.lossy_below(90) {
            let f = enc.refine(2 + slices, &sharp, 64 * 64).unwrap().unwrap();
            assert!(f.stats.pixels <= u64::from(w) * 64, "{:?}", f.stats);
            canvas.apply(&f);
            slices += 1;
            assert!(slices < 20, "refinement never ends");
        }
        assert!(slices >= 3, "{slices}");
        assert!(enc.refine(99, &sharp, u64::MAX).unwrap().is_none());
    }

    #[test]
    fn a_typed_letter_on_screen_already_is_a_copy() {
        let mut enc = FrameEncoder::new(400, 300).unwrap();
        let p = EncodeParams::default();
        let glyph = |px: &mut Pixels, x: i32, y: i32| {
            px.fill(Area::new(x + 1, y + 2, 1, 9), 0x000000);
            px.fill(Area::new(x + 1, y + 2, 4, 1), 0x000000);
            px.fill(Area::new(x + 1, y + 6, 3, 1), 0x000000);
        };
        enc.current_mut().fill(Area::new(0, 0, 400, 300), 0xFFFFFF);
        glyph(enc.current_mut(), 30, 40);
        let key = enc.encode(1, true, &p, &[]).unwrap().unwrap();
        let mut canvas = Console::new(400, 300);
        canvas.apply(&key);
        // The same letter typed at (200, 150), the block cursor after it.
        glyph(enc.current_mut(), 200, 150);
        enc.current_mut().fill(Area::new(206, 150, 6, 13), 0x000000);
        enc.mark_dirty(Area::new(200, 150, 12, 13));
        let f = enc.encode(2, false, &p, &[]).unwrap().unwrap();
        canvas.apply(&f);
        assert_eq!(strip(&canvas.px), strip(enc.current()));
        assert_eq!(
            (f.stats.copy, f.stats.solid, f.stats.png, f.stats.palette),
            (1, 1, 0, 0),
            "{:?}",
            f.stats
        );
        assert!(f.stats.bytes < 60, "{:?}", f.stats);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Lossless content (few colours) always arrives exactly, whatever the shapes.
        #[test]
        fn lossless_round_trip(w in 1u32..300, h in 1u32..200,
                               boxes in prop::collection::vec((0u32..300, 0u32..200, 1u32..120,
                                                                1u32..120, 0u32..6), 0..12),
                               scroll in 0i32..40) {
            let palette = [0xFFFFFF, 0x000000, 0x3366CC, 0xCC3333, 0x22AA22, 0x777777];
            // Black and white only in some cases (grey PNGs), colours in others.
            let palette = if boxes.len() % 2 == 0 { palette } else {
                [0xFFFFFF, 0x000000, 0xFFFFFF, 0x000000, 0x000000, 0xFFFFFF]
            };
            let mut enc = FrameEncoder::new(w, h).unwrap();
            let p = EncodeParams::default();
            let mut canvas = Console::new(w, h);
            for (x, y, bw, bh, c) in &boxes {
                enc.current_mut().fill(Area::new(*x as i32, *y as i32, *bw, *bh),
                                       palette[*c as usize]);
            }
            let f = enc.encode(1, true, &p, &[]).unwrap().unwrap();
            canvas.apply(&f);
            prop_assert_eq!(strip(&canvas.px), strip(enc.current()));
            // Scroll everything up and add new boxes, then encode incrementally.
            let before = enc.current().clone();
            let moved = Area::new(0, 0, w, h.saturating_sub(scroll as u32));
            if !moved.is_empty() {
                enc.current_mut().blit(&before, 0, scroll as u32, moved);
            }
            for (x, y, bw, bh, c) in boxes.iter().rev().take(3) {
                enc.current_mut().fill(Area::new(*y as i32, *x as i32, *bh, *bw),
                                       palette[(*c as usize + 1) % 6]);
            }
            enc.mark_all_dirty();
            if let Some(f) = enc.encode(2, false, &p, &[(0, -scroll)]).unwrap() {
                canvas.apply(&f);
            }
            prop_assert_eq!(strip(&canvas.px), strip(enc.current()));
            // Small changes copied from elsewhere on screen (typed glyphs), a cursor next
            // to them, only the damaged area marked.
            for (i, (x, y, _, _, c)) in boxes.iter().enumerate().take(4) {
                let (sx, sy) = (x % w, y % h);
                let dst = Area::new(((x * 7 + 13) % w) as i32, ((y * 3 + 5) % h) as i32, 6, 9);
                let src = enc.current().clone();
                let d = dst.intersect(&Area::new(0, 0, w.saturating_sub(sx).min(6),
                                                h.saturating_sub(sy).min(9)).relative_to(-dst.x, -dst.y));
                if !d.is_empty() {
                    enc.current_mut().blit(&src, sx, sy, d);
                }
                enc.current_mut().fill(Area::new(dst.x + 6, dst.y, 4, 9), palette[(*c as usize + i) % 6]);
                enc.mark_dirty(Area::new(dst.x, dst.y, 10, 9));
            }
            if let Some(f) = enc.encode(3, false, &p, &[]).unwrap() {
                canvas.apply(&f);
            }
            prop_assert_eq!(strip(&canvas.px), strip(enc.current()));
        }
    }
}
