//! Finding what really changed, and what only moved.
//!
//! * [`changed_blocks`] compares the blocks that damage reports named against the
//!   reference (what the console shows) and keeps those that differ. Applications repaint
//!   far more than they change (a whole terminal line for one glyph, a window on expose, a
//!   blinking caret that comes back), so this drops work and bytes that damage alone would
//!   send.
//! * [`tighten`] shrinks a rectangle to the bounding box of its differing pixels.
//! * [`find_scroll`] looks for vertical scrolling inside a changed rectangle: it hashes a
//!   band of columns of every row of the capture and of the reference, lets each changed
//!   row vote for the offsets at which the same row appears in the reference, and checks
//!   the best offset row by row with exact comparisons. Rows that occur often (blank lines)
//!   do not vote. The matching runs become Copy rectangles.
//! * [`find_moves`] tries one offset (`dx`, `dy`), typically the pointer's motion while a
//!   button is held (a dragged window), on every changed block and turns the blocks whose
//!   content is found at that offset in the reference into Copy rectangles.
//! * [`join_close`] joins changed rectangles whose bounding box is hardly bigger than they
//!   are (each rectangle costs a header and a PNG's fixed structure).
//! * [`find_source`] looks for the exact pixels of a small change anywhere near it in the
//!   reference (a typed letter is usually on screen already), scanning rows by distance
//!   for one distinctive pixel and then comparing; [`column_runs`] cuts a small change into
//!   single-coloured column runs (a text cursor) and the rest, so the rest can be found.
//!
//! Hashes only propose; every copy is verified pixel for pixel, so a hash collision costs
//! time, never a wrong picture.
//!
//! Limits: only vertical scrolling is searched without a hint; sideways scrolling and
//! windows moved by a program or the keyboard are encoded as ordinary changes; a small
//! change's source is searched within 320 rows of it.

use super::blocks::{BLOCK, BlockMap};
use super::pixels::{Area, BPP, Pixels};

/// Content to copy from `(sx, sy)` of the reference to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRect {
    pub dst: Area,
    pub sx: u32,
    pub sy: u32,
}

/// Marks in `changed` every block marked in `dirty` whose pixels differ between `cur` and
/// `reference` (same size).
pub fn changed_blocks(cur: &Pixels, reference: &Pixels, dirty: &BlockMap, changed: &mut BlockMap) {
    changed.clear();
    for (c, r) in dirty.iter() {
        let a = dirty.block_area(c, r);
        if !cur.same(reference, a) {
            changed.set(c, r, true);
        }
    }
}

/// The bounding box of the pixels of `area` that differ between `a` and `b`, if any.
pub fn tighten(a: &Pixels, b: &Pixels, area: Area) -> Option<Area> {
    let (x, w) = (area.x as u32, area.w);
    let rows = area.y as u32..area.y as u32 + area.h;
    let differs = |y: u32| a.row(x, y, w) != b.row(x, y, w);
    let top = rows.clone().find(|&y| differs(y))?;
    let bottom = rows.rev().find(|&y| differs(y))?;
    let mut left = w;
    let mut right = 0;
    for y in top..=bottom {
        let ra = a.row(x, y, w);
        let rb = b.row(x, y, w);
        if ra == rb {
            continue;
        }
        let px = |i: usize| ra[i * BPP..(i + 1) * BPP] != rb[i * BPP..(i + 1) * BPP];
        if let Some(l) = (0..left as usize).find(|&i| px(i)) {
            left = l as u32;
        }
        if let Some(r) = (right as usize..w as usize).rev().find(|&i| px(i)) {
            right = r as u32 + 1;
        }
        if left == 0 && right == w {
            break;
        }
    }
    Some(Area::new(
        (x + left) as i32,
        top as i32,
        right.saturating_sub(left).max(1),
        bottom - top + 1,
    ))
}

/// Pixels a join may add for free (about what a rectangle's own overhead costs in bytes
/// of unchanged text), and the share of the joined pieces it may add beyond that.
const JOIN_SLACK: u64 = 1024;
/// Rectangles larger than this are left alone, and the search stops past this many.
const JOIN_MAX_PIXELS: u64 = 256 * 256;
const JOIN_MAX_RECTS: usize = 64;

/// Joins rectangles whose bounding box is not much bigger than they are together
/// (neighbouring words, a line split across block rows): fewer, slightly bigger
/// rectangles cost fewer bytes. The result may overlap; it still covers every input.
pub fn join_close(rects: &mut Vec<Area>) {
    if rects.len() > JOIN_MAX_RECTS {
        return;
    }
    let mut joined = true;
    while joined {
        joined = false;
        'outer: for i in 0..rects.len() {
            for j in i + 1..rects.len() {
                let (a, b) = (rects[i], rects[j]);
                if a.pixels() > JOIN_MAX_PIXELS || b.pixels() > JOIN_MAX_PIXELS {
                    continue;
                }
                let u = a.union(&b);
                let parts = a.pixels() + b.pixels();
                if u.pixels() <= parts + parts / 4 + JOIN_SLACK {
                    rects[i] = u;
                    rects.swap_remove(j);
                    joined = true;
                    break 'outer;
                }
            }
        }
    }
}

/// A fast, non-cryptographic hash of a byte row.
fn row_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h.rotate_left(5) ^ v).wrapping_mul(K);
    }
    for &t in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(t)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Widest band of columns hashed per row when voting (the check uses whole rows).
const HASH_BAND: u32 = 512;
/// Rows that occur more often than this in the reference band do not vote.
const COMMON_ROW: usize = 6;
/// Shortest run of rows worth a Copy rectangle.
const MIN_RUN: u32 = 4;

/// The vertical offset at which most changed rows of `area` in `cur` are found in
/// `reference` (source row = destination row + offset), if a clear one exists.
pub fn scroll_offset(cur: &Pixels, reference: &Pixels, area: Area) -> Option<i32> {
    if area.h < 2 * MIN_RUN || area.w < 16 {
        return None;
    }
    let band_w = area.w.min(HASH_BAND);
    let band_x = area.x as u32 + (area.w - band_w) / 2;
    let (y0, h) = (area.y as u32, area.h as usize);
    let ref_hashes: Vec<u64> = (y0..y0 + area.h)
        .map(|y| row_hash(reference.row(band_x, y, band_w)))
        .collect();
    // (hash, row) sorted by hash: rows with one content are neighbours.
    let mut sorted: Vec<(u64, u32)> = ref_hashes
        .iter()
        .enumerate()
        .map(|(i, &hh)| (hh, y0 + i as u32))
        .collect();
    sorted.sort_unstable();
    // votes[dy + h] counts rows found dy rows away.
    let mut votes = vec![0u32; 2 * h + 1];
    let mut voters = 0u32;
    for (i, y) in (y0..y0 + area.h).enumerate() {
        let hh = row_hash(cur.row(band_x, y, band_w));
        if hh == ref_hashes[i] {
            continue; // unchanged row (in the band)
        }
        let first = sorted.partition_point(|&(k, _)| k < hh);
        let same = sorted[first..].iter().take_while(|&&(k, _)| k == hh);
        let n = same.clone().count();
        if n == 0 || n > COMMON_ROW {
            continue;
        }
        voters += 1;
        for &(_, src) in same {
            votes[(i64::from(src) - i64::from(y) + h as i64) as usize] += 1;
        }
    }
    let (best, n) = votes
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as i64 - h as i64, n))
        .max_by_key(|&(dy, n)| (n, -dy.abs()))?;
    let dy = best as i32;
    (dy != 0 && n >= MIN_RUN && n * 4 >= voters).then_some(dy)
}

/// Copy rectangles for the rows of `area` that are found `dy` rows away in `reference`
/// (whole rows of the area, checked exactly), skipping runs that would change nothing.
pub fn scroll_copies(cur: &Pixels, reference: &Pixels, area: Area, dy: i32) -> Vec<CopyRect> {
    let (x, w) = (area.x as u32, area.w);
    let top = i64::from(area.y);
    let bottom = area.bottom();
    let mut out = Vec::new();
    let mut run: Option<(u32, bool)> = None; // (first row, changes something)
    let flush = |out: &mut Vec<CopyRect>, start: u32, end: u32, useful: bool| {
        if useful && end - start >= MIN_RUN {
            out.push(CopyRect {
                dst: Area::new(x as i32, start as i32, w, end - start),
                sx: x,
                sy: (i64::from(start) + i64::from(dy)) as u32,
            });
        }
    };
    for y in area.y as u32..area.y as u32 + area.h {
        let src = i64::from(y) + i64::from(dy);
        let row = cur.row(x, y, w);
        let hit = src >= top && src < bottom && row == reference.row(x, src as u32, w);
        if hit {
            let useful = row != reference.row(x, y, w);
            if let Some((_, u)) = &mut run {
                *u |= useful;
            } else {
                run = Some((y, useful));
            }
        } else if let Some((start, useful)) = run.take() {
            flush(&mut out, start, y, useful);
        }
    }
    if let Some((start, useful)) = run {
        flush(&mut out, start, area.y as u32 + area.h, useful);
    }
    out
}

/// Scroll copies for `area`, if it scrolled.
pub fn find_scroll(cur: &Pixels, reference: &Pixels, area: Area) -> Vec<CopyRect> {
    match scroll_offset(cur, reference, area) {
        Some(dy) => scroll_copies(cur, reference, area, dy),
        None => Vec::new(),
    }
}

/// Copy rectangles for the blocks of `changed` (not in `skip`) whose content sits at
/// (x - dx, y - dy) in `reference`.
pub fn find_moves(
    cur: &Pixels,
    reference: &Pixels,
    changed: &BlockMap,
    skip: &BlockMap,
    dx: i32,
    dy: i32,
) -> Vec<CopyRect> {
    if dx == 0 && dy == 0 {
        return Vec::new();
    }
    let bounds = reference.bounds();
    let mut hit = BlockMap::new(cur.width(), cur.height());
    for (c, r) in changed.iter() {
        if skip.get(c, r) {
            continue;
        }
        let a = changed.block_area(c, r);
        let src = Area::new(a.x - dx, a.y - dy, a.w, a.h);
        if src.intersect(&bounds) != src {
            continue;
        }
        let same = (0..a.h).all(|i| {
            cur.row(a.x as u32, a.y as u32 + i, a.w)
                == reference.row(src.x as u32, src.y as u32 + i, a.w)
        });
        if same {
            hit.set(c, r, true);
        }
    }
    if hit.count() < 2 {
        return Vec::new();
    }
    hit.rects()
        .into_iter()
        .map(|d| CopyRect {
            dst: d,
            sx: (d.x - dx) as u32,
            sy: (d.y - dy) as u32,
        })
        .collect()
}

/// How far above and below a small change its copy source is searched.
const SOURCE_ROWS: u32 = 320;

/// A place in `reference` (other than `area` itself) that holds exactly the pixels of
/// `area` in `cur`, searched in the rows near `area` first (text repeats glyphs: a typed
/// letter is usually on screen already). `None` for a single-coloured area.
pub fn find_source(cur: &Pixels, reference: &Pixels, area: Area) -> Option<(u32, u32)> {
    let (x0, y0, w, h) = (area.x as u32, area.y as u32, area.w, area.h);
    let (rw, rh) = (reference.width(), reference.height());
    if w > rw || h > rh {
        return None;
    }
    let px = |p: &Pixels, x: u32, y: u32| {
        let r = p.row(x, y, 1);
        u32::from_le_bytes([r[0], r[1], r[2], r[3]])
    };
    // Anchor: the first pixel unlike the top-left one (so background matches are rare).
    let first = px(cur, x0, y0);
    let (ax, ay) = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .find(|&(x, y)| px(cur, x0 + x, y0 + y) != first)?;
    let anchor = px(cur, x0 + ax, y0 + ay);
    let matches =
        |ox: u32, oy: u32| (0..h).all(|y| cur.row(x0, y0 + y, w) == reference.row(ox, oy + y, w));
    let max_oy = rh - h;
    let lo = y0.saturating_sub(SOURCE_ROWS);
    let hi = (y0 + SOURCE_ROWS).min(max_oy);
    // Origin rows by distance from the area's own row.
    let rows = (0..=SOURCE_ROWS).flat_map(|d| {
        let up = y0.checked_sub(d).filter(|&y| y >= lo && y <= hi);
        let down = (d > 0).then_some(y0 + d).filter(|&y| y <= hi);
        up.into_iter().chain(down)
    });
    for oy in rows {
        let row = reference.row(0, oy + ay, rw);
        for (x, p) in row.chunks_exact(BPP).enumerate() {
            let x = x as u32;
            if x < ax || x - ax + w > rw {
                continue;
            }
            if u32::from_le_bytes([p[0], p[1], p[2], p[3]]) != anchor {
                continue;
            }
            let ox = x - ax;
            if (ox, oy) != (x0, y0) && matches(ox, oy) {
                return Some((ox, oy));
            }
        }
    }
    None
}

/// Splits a small changed area into runs of columns: single-coloured runs at least
/// `MIN_SOLID` wide (a text cursor, a cleared cell) and the rest.
pub fn column_runs(cur: &Pixels, area: Area) -> Vec<(Area, bool)> {
    const MIN_SOLID: u32 = 2;
    let (x0, y0) = (area.x as u32, area.y as u32);
    let solid: Vec<Option<u32>> = (0..area.w)
        .map(|x| {
            let c = cur.rgb(x0 + x, y0);
            (1..area.h)
                .all(|y| cur.rgb(x0 + x, y0 + y) == c)
                .then_some(c)
        })
        .collect();
    let mut runs: Vec<(u32, u32, Option<u32>)> = Vec::new(); // (start, end, colour)
    for (x, s) in solid.iter().enumerate() {
        let x = x as u32;
        match runs.last_mut() {
            Some((_, end, c)) if *c == *s => *end = x + 1,
            _ => runs.push((x, x + 1, *s)),
        }
    }
    // Narrow solid runs join their neighbours.
    let mut out: Vec<(u32, u32, bool)> = Vec::new();
    for (a, b, c) in runs {
        let solid = c.is_some() && b - a >= MIN_SOLID;
        match out.last_mut() {
            Some((_, end, false)) if !solid => *end = b,
            _ => out.push((a, b, solid)),
        }
    }
    out.into_iter()
        .map(|(a, b, s)| (Area::new((x0 + a) as i32, y0 as i32, b - a, area.h), s))
        .collect()
}

/// Applies copies to `reference` as the console does: every source is read from the
/// picture as it was before the first copy.
pub fn apply_copies(reference: &mut Pixels, copies: &[CopyRect]) {
    let saved: Vec<Pixels> = copies
        .iter()
        .map(|c| {
            let mut p = Pixels::new(c.dst.w, c.dst.h);
            p.blit(reference, c.sx, c.sy, p.bounds());
            p
        })
        .collect();
    for (c, p) in copies.iter().zip(&saved) {
        reference.blit(p, 0, 0, c.dst);
    }
}

/// Marks the blocks a set of copies writes to.
pub fn copied_blocks(copies: &[CopyRect], map: &mut BlockMap) {
    for c in copies {
        // Only blocks wholly written by the copy count as settled.
        let x0 = (c.dst.x as u32).div_ceil(BLOCK);
        let y0 = (c.dst.y as u32).div_ceil(BLOCK);
        let x1 = (c.dst.x as u32 + c.dst.w) / BLOCK;
        let y1 = (c.dst.y as u32 + c.dst.h) / BLOCK;
        for r in y0..y1 {
            for col in x0..x1 {
                map.set(col, r, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text-like pattern: distinct rows, a few colours.
    fn lines(w: u32, h: u32, seed: u32) -> Pixels {
        let mut p = Pixels::new(w, h);
        p.fill(p.bounds(), 0xFFFFFF);
        for y in 0..h {
            for x in 0..w {
                let v = (x * 7 + (y + seed) * 13) ^ ((y + seed) * 31 + x / 5);
                if v.is_multiple_of(5) {
                    p.fill(Area::new(x as i32, y as i32, 1, 1), 0x202020);
                }
            }
        }
        p
    }

    #[test]
    fn finds_changes_and_tightens() {
        let a = lines(64, 64, 0);
        let mut b = a.clone();
        b.fill(Area::new(20, 30, 3, 2), 0xFF0000);
        let mut dirty = BlockMap::new(64, 64);
        dirty.set_all();
        let mut changed = BlockMap::new(64, 64);
        changed_blocks(&b, &a, &dirty, &mut changed);
        assert_eq!(changed.iter().collect::<Vec<_>>(), vec![(1, 1)]);
        assert_eq!(
            tighten(&a, &b, Area::new(0, 0, 64, 64)),
            Some(Area::new(20, 30, 3, 2))
        );
        assert_eq!(tighten(&a, &a, a.bounds()), None);
    }

    #[test]
    fn finds_a_glyph_elsewhere() {
        let mut reference = Pixels::new(200, 100);
        reference.fill(reference.bounds(), 0xFFFFFF);
        // A "glyph" at (20, 10).
        reference.fill(Area::new(22, 12, 2, 8), 0x000000);
        reference.fill(Area::new(22, 12, 4, 2), 0x000000);
        let mut cur = reference.clone();
        // Typed again at (150, 60), followed by a block cursor.
        cur.blit(&reference, 20, 10, Area::new(150, 60, 6, 13));
        cur.fill(Area::new(156, 60, 6, 13), 0x000000);
        let area = Area::new(150, 60, 12, 13);
        let runs = column_runs(&cur, area);
        // Blank columns before the glyph, the glyph, the cursor.
        assert_eq!(
            runs,
            vec![
                (Area::new(150, 60, 2, 13), true),
                (Area::new(152, 60, 4, 13), false),
                (Area::new(156, 60, 6, 13), true)
            ]
        );
        assert_eq!(find_source(&cur, &reference, runs[1].0), Some((22, 10)));
        assert_eq!(
            find_source(&cur, &reference, Area::new(150, 60, 6, 13)),
            Some((20, 10))
        );
        // Uniform areas and absent content have no source.
        assert_eq!(find_source(&cur, &reference, runs[2].0), None);
        let mut other = cur.clone();
        other.fill(Area::new(151, 61, 1, 1), 0xFF0000);
        assert_eq!(
            find_source(&other, &reference, Area::new(150, 60, 6, 13)),
            None
        );
    }

    #[test]
    fn joins_close_pieces_only() {
        // A line of text split over two block rows, and a far-away change.
        let mut r = vec![
            Area::new(67, 331, 257, 5),
            Area::new(67, 336, 253, 6),
            Area::new(1500, 900, 10, 10),
        ];
        join_close(&mut r);
        r.sort_by_key(|a| a.x);
        assert_eq!(
            r,
            vec![Area::new(67, 331, 257, 11), Area::new(1500, 900, 10, 10)]
        );
    }

    #[test]
    fn detects_scroll_up() {
        let reference = lines(200, 300, 0);
        // The window scrolled up by 17 rows; new text at the bottom.
        let mut cur = lines(200, 300, 17);
        cur.fill(Area::new(0, 283, 200, 17), 0x00FF00);
        let area = cur.bounds();
        assert_eq!(scroll_offset(&cur, &reference, area), Some(17));
        let copies = scroll_copies(&cur, &reference, area, 17);
        assert_eq!(
            copies,
            vec![CopyRect {
                dst: Area::new(0, 0, 200, 283),
                sx: 0,
                sy: 17
            }]
        );
        let mut r = reference.clone();
        apply_copies(&mut r, &copies);
        assert!(r.same(&cur, Area::new(0, 0, 200, 283)));
    }

    #[test]
    fn detects_moved_block() {
        let mut reference = Pixels::new(128, 128);
        reference.fill(reference.bounds(), 0x333333);
        let win = lines(40, 40, 3);
        reference.blit(&win, 0, 0, Area::new(10, 10, 40, 40));
        let mut cur = Pixels::new(128, 128);
        cur.fill(cur.bounds(), 0x333333);
        cur.blit(&win, 0, 0, Area::new(42, 26, 40, 40));
        let mut dirty = BlockMap::new(128, 128);
        dirty.set_all();
        let mut changed = BlockMap::new(128, 128);
        changed_blocks(&cur, &reference, &dirty, &mut changed);
        let skip = BlockMap::new(128, 128);
        let copies = find_moves(&cur, &reference, &changed, &skip, 32, 16);
        assert!(!copies.is_empty());
        let mut r = reference.clone();
        apply_copies(&mut r, &copies);
        for c in &copies {
            assert!(r.same(&cur, c.dst));
        }
    }
}
