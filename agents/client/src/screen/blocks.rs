//! A map of 16×16-pixel blocks over the surface, and the rectangles that cover its marked
//! blocks.
//!
//! The pipeline marks blocks from damage reports, compares marked blocks against the
//! reference and marks the ones that really changed in a second map; [`BlockMap::rects`]
//! then turns marked blocks into few, disjoint rectangles (runs along each block row,
//! joined downwards while a run keeps the same columns), clipped to the surface. The cover
//! is exact: every marked block is in exactly one rectangle and no unmarked block is.
//!
//! Limits: a block is the smallest unit of capture and of change; finer bounds are found
//! later by comparing pixels ([`super::detect`]).

use super::pixels::Area;

/// Side of a block in pixels.
pub const BLOCK: u32 = 16;

/// One flag per block of a `width`×`height` surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    width: u32,
    height: u32,
    cols: u32,
    rows: u32,
    bits: Vec<bool>,
    marked: usize,
}

impl BlockMap {
    pub fn new(width: u32, height: u32) -> Self {
        let cols = width.div_ceil(BLOCK);
        let rows = height.div_ceil(BLOCK);
        BlockMap {
            width,
            height,
            cols,
            rows,
            bits: vec![false; cols as usize * rows as usize],
            marked: 0,
        }
    }

    pub fn cols(&self) -> u32 {
        self.cols
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    pub fn clear(&mut self) {
        self.bits.fill(false);
        self.marked = 0;
    }

    pub fn set_all(&mut self) {
        self.bits.fill(true);
        self.marked = self.bits.len();
    }

    /// Whether any block is marked.
    pub fn any(&self) -> bool {
        self.marked > 0
    }

    /// How many blocks are marked.
    pub fn count(&self) -> usize {
        self.marked
    }

    /// How many blocks the map has.
    pub fn len(&self) -> usize {
        self.bits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    #[inline]
    pub fn get(&self, col: u32, row: u32) -> bool {
        col < self.cols && row < self.rows && self.bits[(row * self.cols + col) as usize]
    }

    #[inline]
    pub fn set(&mut self, col: u32, row: u32, on: bool) {
        if col >= self.cols || row >= self.rows {
            return;
        }
        let bit = &mut self.bits[(row * self.cols + col) as usize];
        if *bit != on {
            *bit = on;
            if on {
                self.marked += 1;
            } else {
                self.marked -= 1;
            }
        }
    }

    /// Marks every block that `area` (surface coordinates, clipped) touches.
    pub fn mark(&mut self, area: Area) {
        let a = area.intersect(&Area::new(0, 0, self.width, self.height));
        if a.is_empty() {
            return;
        }
        let (c0, r0) = (a.x as u32 / BLOCK, a.y as u32 / BLOCK);
        let c1 = (a.x as u32 + a.w).div_ceil(BLOCK);
        let r1 = (a.y as u32 + a.h).div_ceil(BLOCK);
        for r in r0..r1 {
            for c in c0..c1 {
                self.set(c, r, true);
            }
        }
    }

    /// Marks every block marked in `other` (same size).
    pub fn merge(&mut self, other: &BlockMap) {
        if other.bits.len() != self.bits.len() {
            return;
        }
        for (i, b) in other.bits.iter().enumerate() {
            if *b && !self.bits[i] {
                self.bits[i] = true;
                self.marked += 1;
            }
        }
    }

    /// The pixels of block (col, row), clipped to the surface.
    pub fn block_area(&self, col: u32, row: u32) -> Area {
        Area::new(
            (col * BLOCK) as i32,
            (row * BLOCK) as i32,
            BLOCK.min(self.width.saturating_sub(col * BLOCK)),
            BLOCK.min(self.height.saturating_sub(row * BLOCK)),
        )
    }

    /// The bounding box (in pixels, clipped) of the marked blocks that `area` touches.
    pub fn bounds_within(&self, area: Area) -> Option<Area> {
        let a = area.intersect(&Area::new(0, 0, self.width, self.height));
        if a.is_empty() {
            return None;
        }
        let (c0, r0) = (a.x as u32 / BLOCK, a.y as u32 / BLOCK);
        let c1 = (a.x as u32 + a.w).div_ceil(BLOCK);
        let r1 = (a.y as u32 + a.h).div_ceil(BLOCK);
        let mut b: Option<(u32, u32, u32, u32)> = None;
        for r in r0..r1 {
            for c in c0..c1 {
                if self.get(c, r) {
                    b = Some(match b {
                        None => (c, r, c, r),
                        Some((x0, y0, x1, y1)) => (x0.min(c), y0.min(r), x1.max(c), y1.max(r)),
                    });
                }
            }
        }
        let (x0, y0, x1, y1) = b?;
        Some(self.to_pixels(x0, y0, x1 - x0 + 1, y1 - y0 + 1))
    }

    /// Iterates over the marked blocks as (col, row).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let cols = self.cols;
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(move |(i, _)| (i as u32 % cols, i as u32 / cols))
    }

    /// Disjoint rectangles (in pixels, clipped to the surface) covering exactly the marked
    /// blocks.
    pub fn rects(&self) -> Vec<Area> {
        self.block_rects()
            .into_iter()
            .map(|(c, r, w, h)| self.to_pixels(c, r, w, h))
            .collect()
    }

    fn to_pixels(&self, c: u32, r: u32, w: u32, h: u32) -> Area {
        let x = c * BLOCK;
        let y = r * BLOCK;
        Area::new(
            x as i32,
            y as i32,
            (w * BLOCK).min(self.width - x),
            (h * BLOCK).min(self.height - y),
        )
    }

    /// The cover in block units: (col, row, cols, rows).
    fn block_rects(&self) -> Vec<(u32, u32, u32, u32)> {
        let mut done = Vec::new();
        // Open rectangles: (c0, c1, r0) still growing downwards.
        let mut open: Vec<(u32, u32, u32)> = Vec::new();
        let mut next: Vec<(u32, u32, u32)> = Vec::new();
        for r in 0..self.rows {
            let line = &self.bits[(r * self.cols) as usize..((r + 1) * self.cols) as usize];
            let mut c = 0u32;
            let mut oi = 0usize;
            next.clear();
            while c < self.cols {
                if !line[c as usize] {
                    c += 1;
                    continue;
                }
                let c0 = c;
                while c < self.cols && line[c as usize] {
                    c += 1;
                }
                // Close every open rectangle that starts left of this run.
                while oi < open.len() && open[oi].0 < c0 {
                    let (o0, o1, or0) = open[oi];
                    done.push((o0, or0, o1 - o0, r - or0));
                    oi += 1;
                }
                if oi < open.len() && open[oi].0 == c0 && open[oi].1 == c {
                    next.push(open[oi]);
                    oi += 1;
                } else {
                    next.push((c0, c, r));
                }
            }
            for &(o0, o1, or0) in &open[oi..] {
                done.push((o0, or0, o1 - o0, r - or0));
            }
            std::mem::swap(&mut open, &mut next);
        }
        for &(o0, o1, or0) in &open {
            done.push((o0, or0, o1 - o0, self.rows - or0));
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mark_and_cover() {
        let mut m = BlockMap::new(100, 40);
        assert_eq!((m.cols(), m.rows()), (7, 3));
        m.mark(Area::new(15, 0, 2, 2));
        assert!(m.get(0, 0) && m.get(1, 0) && !m.get(2, 0));
        assert_eq!(m.count(), 2);
        assert_eq!(m.rects(), vec![Area::new(0, 0, 32, 16)]);
        m.clear();
        m.mark(Area::new(90, 30, 100, 100));
        assert_eq!(m.rects(), vec![Area::new(80, 16, 20, 24)]);
        m.set_all();
        assert_eq!(m.rects(), vec![Area::new(0, 0, 100, 40)]);
        m.clear();
        m.mark(Area::new(20, 0, 1, 1));
        m.mark(Area::new(50, 20, 1, 1));
        assert_eq!(
            m.bounds_within(Area::new(0, 0, 100, 40)),
            Some(Area::new(16, 0, 48, 32))
        );
        assert_eq!(m.bounds_within(Area::new(80, 0, 20, 40)), None);
    }

    proptest! {
        #[test]
        fn cover_is_exact_and_disjoint(w in 1u32..200, h in 1u32..200,
                                       marks in prop::collection::vec(any::<u16>(), 0..300)) {
            let mut m = BlockMap::new(w, h);
            let n = m.len();
            for v in marks {
                let i = usize::from(v) % n;
                m.set(i as u32 % m.cols(), i as u32 / m.cols(), true);
            }
            let rects = m.rects();
            let mut seen = BlockMap::new(w, h);
            for r in &rects {
                prop_assert!(!r.is_empty());
                prop_assert_eq!(r.intersect(&Area::new(0, 0, w, h)), *r);
                let bm = {
                    let mut b = BlockMap::new(w, h);
                    b.mark(*r);
                    b
                };
                for (c, rr) in bm.iter() {
                    prop_assert!(m.get(c, rr), "unmarked block covered");
                    prop_assert!(!seen.get(c, rr), "block covered twice");
                    seen.set(c, rr, true);
                }
            }
            prop_assert_eq!(seen, m);
        }
    }
}
