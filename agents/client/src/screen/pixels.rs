//! Rectangles and the pixel buffers the pipeline works on.
//!
//! [`Area`] is a rectangle in pixels (desktop or surface coordinates, as the caller says).
//! [`Pixels`] is a tightly packed 32-bit image in the X server's native little-endian
//! `BGRX` layout (byte 0 blue, 1 green, 2 red, 3 padding), so a capture is copied in without
//! conversion and the JPEG encoder reads it in place. The padding byte is carried along as
//! the server delivers it and ignored wherever colours are compared for encoding.
//!
//! Limits: sizes are bounded by the protocol's `MAX_SURFACE` (16384) per side, so a buffer
//! is at most 1 GiB; callers never ask for more.

/// A rectangle: top-left corner and size. Empty when `w` or `h` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Area {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

impl Area {
    pub const fn new(x: i32, y: i32, w: u32, h: u32) -> Self {
        Area { x, y, w, h }
    }

    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// One past the right edge.
    pub fn right(&self) -> i64 {
        i64::from(self.x) + i64::from(self.w)
    }

    /// One past the bottom edge.
    pub fn bottom(&self) -> i64 {
        i64::from(self.y) + i64::from(self.h)
    }

    /// The overlap of two areas (empty when they do not overlap).
    pub fn intersect(&self, o: &Area) -> Area {
        let x0 = i64::from(self.x).max(i64::from(o.x));
        let y0 = i64::from(self.y).max(i64::from(o.y));
        let x1 = self.right().min(o.right());
        let y1 = self.bottom().min(o.bottom());
        if x1 <= x0 || y1 <= y0 {
            return Area::default();
        }
        Area::new(x0 as i32, y0 as i32, (x1 - x0) as u32, (y1 - y0) as u32)
    }

    /// The smallest area holding both (an empty one counts as nothing).
    pub fn union(&self, o: &Area) -> Area {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        let x0 = i64::from(self.x).min(i64::from(o.x));
        let y0 = i64::from(self.y).min(i64::from(o.y));
        let x1 = self.right().max(o.right());
        let y1 = self.bottom().max(o.bottom());
        Area::new(x0 as i32, y0 as i32, (x1 - x0) as u32, (y1 - y0) as u32)
    }

    /// The same area moved by (-dx, -dy): from one coordinate system into one whose origin
    /// is at (dx, dy).
    pub fn relative_to(&self, dx: i32, dy: i32) -> Area {
        Area::new(
            self.x.saturating_sub(dx),
            self.y.saturating_sub(dy),
            self.w,
            self.h,
        )
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }
}

/// Bytes per pixel of [`Pixels`].
pub const BPP: usize = 4;

/// A 32-bit BGRX image with rows packed back to back (stride = width × 4).
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({}x{})", self.width, self.height)
    }
}

impl Pixels {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Pixels {
            width,
            height,
            data: vec![0; width as usize * height as usize * BPP],
        }
    }

    /// Wraps BGRX bytes; `None` when the length does not match.
    pub fn from_bgrx(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        (data.len() == width as usize * height as usize * BPP).then_some(Pixels {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn stride(&self) -> usize {
        self.width as usize * BPP
    }

    pub fn bounds(&self) -> Area {
        Area::new(0, 0, self.width, self.height)
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The bytes of row `y` from column `x`, `w` pixels long. The caller keeps inside the
    /// image (callers clip every area to [`Pixels::bounds`] first).
    #[inline]
    pub fn row(&self, x: u32, y: u32, w: u32) -> &[u8] {
        let at = y as usize * self.stride() + x as usize * BPP;
        &self.data[at..at + w as usize * BPP]
    }

    #[inline]
    pub fn row_mut(&mut self, x: u32, y: u32, w: u32) -> &mut [u8] {
        let at = y as usize * self.stride() + x as usize * BPP;
        let stride = w as usize * BPP;
        &mut self.data[at..at + stride]
    }

    /// The colour at (x, y) as 0x00RRGGBB.
    #[inline]
    pub fn rgb(&self, x: u32, y: u32) -> u32 {
        let at = y as usize * self.stride() + x as usize * BPP;
        u32::from_le_bytes([self.data[at], self.data[at + 1], self.data[at + 2], 0])
    }

    /// Fills `area` (clipped) with 0x00RRGGBB.
    pub fn fill(&mut self, area: Area, rgb: u32) {
        let a = area.intersect(&self.bounds());
        let px = (rgb & 0x00FF_FFFF).to_le_bytes();
        for y in a.y as u32..a.y as u32 + a.h {
            for p in self.row_mut(a.x as u32, y, a.w).chunks_exact_mut(BPP) {
                p.copy_from_slice(&px);
            }
        }
    }

    /// Copies `area` of `src` to the same place in `self` (both clipped to both images).
    pub fn copy_from(&mut self, src: &Pixels, area: Area) {
        let a = area.intersect(&self.bounds()).intersect(&src.bounds());
        for y in a.y as u32..a.y as u32 + a.h {
            self.row_mut(a.x as u32, y, a.w)
                .copy_from_slice(src.row(a.x as u32, y, a.w));
        }
    }

    /// Copies the `w`×`h` rectangle at (sx, sy) of `src` to (dx, dy) of `self`. Both
    /// rectangles must lie inside their images (checked; nothing happens otherwise).
    pub fn blit(&mut self, src: &Pixels, sx: u32, sy: u32, dst: Area) {
        let s = Area::new(sx as i32, sy as i32, dst.w, dst.h);
        if s.intersect(&src.bounds()) != s || dst.intersect(&self.bounds()) != dst {
            return;
        }
        for r in 0..dst.h {
            self.row_mut(dst.x as u32, dst.y as u32 + r, dst.w)
                .copy_from_slice(src.row(sx, sy + r, dst.w));
        }
    }

    /// Whether `area` (inside both) is identical in both images, padding bytes included.
    pub fn same(&self, other: &Pixels, area: Area) -> bool {
        (area.y as u32..area.y as u32 + area.h)
            .all(|y| self.row(area.x as u32, y, area.w) == other.row(area.x as u32, y, area.w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_maths() {
        let a = Area::new(10, 10, 20, 20);
        assert_eq!(
            a.intersect(&Area::new(0, 0, 15, 100)),
            Area::new(10, 10, 5, 20)
        );
        assert!(a.intersect(&Area::new(30, 0, 5, 5)).is_empty());
        assert_eq!(a.union(&Area::new(0, 0, 1, 1)), Area::new(0, 0, 30, 30));
        assert_eq!(a.union(&Area::default()), a);
        assert_eq!(a.relative_to(5, -5), Area::new(5, 15, 20, 20));
    }

    #[test]
    fn fill_copy_blit() {
        let mut p = Pixels::new(8, 8);
        p.fill(Area::new(2, 2, 10, 2), 0x112233);
        assert_eq!(p.rgb(7, 3), 0x112233);
        assert_eq!(p.rgb(1, 3), 0);
        let mut q = Pixels::new(8, 8);
        q.copy_from(&p, Area::new(0, 0, 8, 8));
        assert!(q.same(&p, q.bounds()));
        let mut r = Pixels::new(8, 8);
        r.blit(&p, 2, 2, Area::new(0, 0, 2, 2));
        assert_eq!(r.rgb(1, 1), 0x112233);
        // Out of bounds: ignored.
        r.blit(&p, 7, 7, Area::new(0, 0, 2, 2));
    }
}
