//! Encoding benchmark: full-screen 1080p changes, text-like and photo-like, on one thread.
//!
//! `cargo bench -p lifeline-agent --bench encode` prints `name=value` lines:
//! * `fullscreen_encode_ms_p50_{text,photo}` / `_p99_`: wall time to encode a frame in which
//!   every pixel of a 1920x1080 surface changed (compare + classify + encode + message),
//!   alternating between two pictures so every frame is a full change; the capture is not
//!   timed;
//! * `fullscreen_encode_cpu_ms_mean_...`: the thread's mean CPU time for the same, from the
//!   scheduler's accounting (what to compare on a machine other builds keep busy; its clock
//!   may tick coarsely, hence a mean rather than percentiles);
//! * `bytes_per_frame_{text,photo}`: payload bytes of those frames;
//! * the same for other quality levels and PNG efforts, the CPU cost of comparing a full
//!   screen against the reference and of the scroll search, a 900x968 text window
//!   scrolled by three lines, and bytes
//!   with and without comparison for a repaint that changed one line (what damage alone
//!   would send).
//!
//! The pictures are synthetic and deterministic: text is made of generated 6×13 glyphs in a
//! few colours on light and dark backgrounds (several "windows"); the photo is fractal
//! noise with soft-edged shapes and grain, which compresses like a natural photo. No
//! display is needed.

use std::time::Instant;

use lifeline_agent::screen::blocks::BlockMap;
use lifeline_agent::screen::detect;
use lifeline_agent::screen::encode::{Chroma, EncodeParams, FrameEncoder, PngEffort};
use lifeline_agent::screen::{Area, Pixels};

const W: u32 = 1920;
const H: u32 = 1080;
const ROUNDS: usize = 60;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 95 generated glyphs of 6×13 (bit rows).
fn glyphs(seed: u64) -> Vec<[u8; 13]> {
    let mut r = Rng(seed | 1);
    (0..95)
        .map(|_| {
            let mut g = [0u8; 13];
            for row in g.iter_mut().take(11).skip(2) {
                // Vertical strokes that continue from row to row, like letters.
                *row = (r.next() as u8) & 0b0011_1110;
            }
            g
        })
        .collect()
}

fn text_screen(seed: u64) -> Pixels {
    let mut p = Pixels::new(W, H);
    p.fill(p.bounds(), 0xD8DCE0);
    let g = glyphs(seed);
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9) | 1);
    let windows = [
        (Area::new(20, 20, 900, 1000), 0xFFFFFF, 0x000000),
        (Area::new(940, 20, 960, 500), 0xFDF6E3, 0x586E75),
        (Area::new(940, 540, 960, 480), 0x1E1E1E, 0xD4D4D4),
    ];
    for (a, bg, fg) in windows {
        p.fill(a, bg);
        p.fill(Area::new(a.x, a.y, a.w, 24), 0x3C4650);
        let cols = (a.w - 16) / 6;
        let rows = (a.h - 40) / 15;
        for row in 0..rows {
            let len = (r.next() % u64::from(cols)) as u32;
            let colour = if r.next().is_multiple_of(7) {
                0x2060C0
            } else {
                fg
            };
            for c in 0..len {
                let ch = (r.next() % 95) as usize;
                if ch == 0 {
                    continue; // a space
                }
                let (x0, y0) = (a.x as u32 + 8 + c * 6, a.y as u32 + 32 + row * 15);
                for (gy, bits) in g[ch].iter().enumerate() {
                    for gx in 0..6 {
                        if bits & (0x80 >> gx) != 0 {
                            p.fill(
                                Area::new((x0 + gx) as i32, (y0 + gy as u32) as i32, 1, 1),
                                colour,
                            );
                        }
                    }
                }
            }
        }
    }
    p
}

/// A photo-like picture: fractal value noise (detail at every scale, stronger at coarse
/// ones, as in natural images), a few soft-edged shapes, and sensor-like grain.
fn photo_screen(seed: u64) -> Pixels {
    let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut acc = vec![[0f32; 3]; (W * H) as usize];
    let mut amp = 90f32;
    let mut cell = 512u32;
    while cell >= 2 {
        let gw = W / cell + 2;
        let gh = H / cell + 2;
        let grid: Vec<[f32; 3]> = (0..gw * gh)
            .map(|_| {
                let mut v = [0f32; 3];
                let base = (r.next() % 1000) as f32 / 500.0 - 1.0;
                for c in &mut v {
                    // Channels mostly move together (brightness), a little apart (colour).
                    *c = base * 0.8 + ((r.next() % 1000) as f32 / 500.0 - 1.0) * 0.35;
                }
                v
            })
            .collect();
        for y in 0..H {
            let gy = y / cell;
            let fy = (y % cell) as f32 / cell as f32;
            let sy = fy * fy * (3.0 - 2.0 * fy);
            for x in 0..W {
                let gx = x / cell;
                let fx = (x % cell) as f32 / cell as f32;
                let sx = fx * fx * (3.0 - 2.0 * fx);
                let at = |i: u32, j: u32| grid[((gy + j) * gw + gx + i) as usize];
                let (a, b, c, d) = (at(0, 0), at(1, 0), at(0, 1), at(1, 1));
                let px = &mut acc[(y * W + x) as usize];
                for k in 0..3 {
                    let top = a[k] + (b[k] - a[k]) * sx;
                    let bot = c[k] + (d[k] - c[k]) * sx;
                    px[k] += amp * (top + (bot - top) * sy);
                }
            }
        }
        amp *= 0.62;
        cell /= 2;
    }
    let mut data = Vec::with_capacity((W * H * 4) as usize);
    for (i, px) in acc.iter().enumerate() {
        let (x, y) = ((i as u32 % W) as f32, (i as u32 / W) as f32);
        // Soft discs: objects with edges.
        let disc = |cx: f32, cy: f32, rad: f32| {
            let d = ((x - cx).hypot(y - cy) - rad) / 3.0;
            1.0 / (1.0 + d.exp())
        };
        let obj = 60.0 * disc(600.0, 500.0, 180.0) - 50.0 * disc(1400.0, 300.0, 120.0);
        let grain = (r.next() % 9) as f32 - 4.0;
        let c = |v: f32| v.clamp(0.0, 255.0) as u8;
        let rr = 130.0 + px[0] + obj + grain;
        let gg = 120.0 + px[1] + obj * 0.8 + grain;
        let bb = 110.0 + px[2] + obj * 0.5 + grain;
        data.extend_from_slice(&[c(bb), c(gg), c(rr), 0]);
    }
    Pixels::from_bgrx(W, H, data).expect("size")
}

/// CPU time this thread has used, in milliseconds (from the scheduler's own accounting, so
/// it does not count time other processes on a busy machine took).
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Encodes alternating full-screen changes; prints the figures under `name`.
fn run(name: &str, a: &Pixels, b: &Pixels, params: &EncodeParams) {
    let mut enc = FrameEncoder::new(W, H).expect("encoder");
    enc.current_mut().copy_from(a, a.bounds());
    enc.encode(1, true, params, &[]).expect("key frame");
    let mut times = Vec::with_capacity(ROUNDS);
    let mut cpu = Vec::with_capacity(ROUNDS);
    let mut bytes = Vec::with_capacity(ROUNDS);
    let mut kinds = (0, 0, 0);
    for i in 0..ROUNDS {
        let src = if i % 2 == 0 { b } else { a };
        enc.current_mut().copy_from(src, src.bounds());
        enc.mark_all_dirty();
        let c = thread_cpu_ms();
        let t = Instant::now();
        let f = enc
            .encode(i as u32 + 2, false, params, &[])
            .expect("encode")
            .expect("a change");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        cpu.push(thread_cpu_ms() - c);
        bytes.push(f.stats.bytes);
        kinds = (f.stats.png, f.stats.jpeg, f.stats.solid);
    }
    times.sort_by(f64::total_cmp);
    let cpu_mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    bytes.sort_unstable();
    println!(
        "fullscreen_encode_ms_p50_{name}={:.2}\nfullscreen_encode_ms_p99_{name}={:.2}\nfullscreen_encode_cpu_ms_mean_{name}={cpu_mean:.2}\nbytes_per_frame_{name}={}\nrects_png_jpeg_solid_{name}={}/{}/{}",
        pct(&times, 50),
        pct(&times, 99),
        bytes[bytes.len() / 2],
        kinds.0,
        kinds.1,
        kinds.2
    );
}

fn main() {
    let t1 = text_screen(1);
    let t2 = text_screen(2);
    let p1 = photo_screen(1);
    let p2 = photo_screen(2);

    // The level Auto uses on a good link (Q72 4:2:0 with default PNG effort).
    let auto = EncodeParams {
        jpeg_quality: 72,
        chroma: Chroma::Half,
        png: PngEffort::Default,
    };
    run("text", &t1, &t2, &auto);
    run("photo", &p1, &p2, &auto);
    for (name, png) in [
        ("text_png_fast", PngEffort::Fast),
        ("text_png_best", PngEffort::Best),
    ] {
        run(name, &t1, &t2, &EncodeParams { png, ..auto });
    }
    for (name, q, chroma) in [
        ("photo_q50_420", 50, Chroma::Half),
        ("photo_q80_444", 80, Chroma::Full),
        ("photo_q90_444", 90, Chroma::Full),
    ] {
        run(
            name,
            &p1,
            &p2,
            &EncodeParams {
                jpeg_quality: q,
                chroma,
                ..auto
            },
        );
    }

    // Change detection costs: comparing a whole unchanged screen, and the scroll search
    // over a whole changed one.
    let mut all = BlockMap::new(W, H);
    all.set_all();
    let mut changed = BlockMap::new(W, H);
    let same = t1.clone();
    let (mut times, mut cpu) = (Vec::new(), 0.0);
    for _ in 0..ROUNDS {
        let (c, t) = (thread_cpu_ms(), Instant::now());
        detect::changed_blocks(&t1, &same, &all, &mut changed);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        cpu += thread_cpu_ms() - c;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "detect_compare_fullscreen_ms_p50={:.2}\ndetect_compare_fullscreen_cpu_ms_mean={:.2}",
        pct(&times, 50),
        cpu / ROUNDS as f64
    );
    let (mut times, mut cpu) = (Vec::new(), 0.0);
    for _ in 0..ROUNDS {
        let (c, t) = (thread_cpu_ms(), Instant::now());
        let _ = detect::scroll_offset(&t2, &t1, t1.bounds());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        cpu += thread_cpu_ms() - c;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "detect_scroll_search_fullscreen_ms_p50={:.2}\ndetect_scroll_search_fullscreen_cpu_ms_mean={:.2}",
        pct(&times, 50),
        cpu / ROUNDS as f64
    );

    // The big text window scrolls by 3 lines (45 rows) and shows 3 new lines: bytes and
    // time with Copy.
    let text_area = Area::new(20, 52, 900, 968);
    let mut scrolled = t1.clone();
    scrolled.blit(
        &t1,
        text_area.x as u32,
        text_area.y as u32 + 45,
        Area::new(text_area.x, text_area.y, text_area.w, text_area.h - 45),
    );
    let fresh = Area::new(
        text_area.x,
        text_area.y + text_area.h as i32 - 45,
        text_area.w,
        45,
    );
    scrolled.copy_from(&t2, fresh);
    let mut enc = FrameEncoder::new(W, H).expect("encoder");
    let (mut times, mut bytes, mut copies) = (Vec::new(), 0, 0);
    for i in 0..ROUNDS as u32 {
        enc.current_mut().copy_from(&t1, t1.bounds());
        enc.encode(2 * i + 1, true, &auto, &[]).expect("key");
        enc.current_mut().copy_from(&scrolled, scrolled.bounds());
        enc.mark_all_dirty();
        let t = Instant::now();
        let f = enc
            .encode(2 * i + 2, false, &auto, &[])
            .expect("encode")
            .expect("change");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        (bytes, copies) = (f.stats.bytes, f.stats.copy);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "window_scroll_encode_ms_p50={:.2}\nwindow_scroll_bytes={bytes}\nwindow_scroll_copies={copies}",
        pct(&times, 50)
    );

    // Damage alone vs damage + comparison: an 880x980 text window repainted whole with one
    // line changed.
    let win = Area::new(20, 20, 880, 980);
    let mut one_line = t1.clone();
    one_line.fill(Area::new(28, 500, 400, 13), 0xFFFFFF);
    one_line.copy_from(&t2, Area::new(28, 500, 300, 13));
    let mut enc = FrameEncoder::new(W, H).expect("encoder");
    enc.current_mut().copy_from(&t1, t1.bounds());
    enc.encode(1, true, &auto, &[]).expect("key");
    enc.current_mut().copy_from(&one_line, one_line.bounds());
    enc.mark_dirty(win);
    let compared = enc
        .encode(2, false, &auto, &[])
        .expect("encode")
        .expect("change");
    // What sending the damaged area would cost: the window encoded on its own.
    let mut whole = FrameEncoder::new(win.w, win.h).expect("encoder");
    whole.current_mut().blit(
        &one_line,
        win.x as u32,
        win.y as u32,
        Area::new(0, 0, win.w, win.h),
    );
    let damage_only = whole
        .encode(1, true, &auto, &[])
        .expect("key")
        .expect("frame");
    println!(
        "repaint_one_line_damage_only_bytes={}\nrepaint_one_line_compared_bytes={}",
        damage_only.stats.bytes, compared.stats.bytes
    );
}
