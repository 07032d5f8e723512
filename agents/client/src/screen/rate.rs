//! Pacing and quality: how many frames may be in flight, how often a frame may go, and how
//! hard the encoders compress, from what the acknowledgements tell about the link.
//!
//! Every frame sent is remembered (number, bytes, time) until the relay passes on the
//! console's `FrameAck` for it or a later one. At most [`MAX_IN_FLIGHT`] frames are
//! unacknowledged; the stream sends nothing more until an ack comes, and then captures
//! afresh, so a slow link gets fewer, newer frames and never a queue of stale ones.
//!
//! Measurements, per acknowledged frame:
//! * round-trip time: send → ack; the smallest over the last minute stands for the empty
//!   link, a smoothed average for now; a smoothed RTT well above the smallest means a queue
//!   is building;
//! * delivery rate: the frame's bytes over the time the link spent on it (from the later of
//!   its sending and the previous ack, to its ack). Frames too small to fill the link say
//!   little, so only frames of at least [`RATE_SAMPLE_MIN`] bytes count, and the estimate
//!   is the best of the recent samples (a link is at least as fast as it has proved to be).
//!
//! `Quality::Auto` maps the estimate to a level (JPEG quality, chroma, PNG effort, shortest
//! frame interval, refinement); a building queue steps one level down. Changing pictures go
//! with half-resolution chroma at every `Auto` level (it halves the encoder's work on a
//! full-screen change and the eye hardly sees it on moving photos); the refinement of a
//! still region is always full chroma. `Low` is the lowest
//! level, `Best` the highest, whatever the link (the in-flight limit still protects a slow
//! one).
//!
//! Limits: the estimate needs acknowledged frames of some size; until then `Auto` uses a
//! middle level.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lifeline_proto::remote::Quality;

use super::encode::{Chroma, EncodeParams, PngEffort};

/// Most frames sent and not yet acknowledged.
pub const MAX_IN_FLIGHT: usize = 2;
/// Smallest frame whose delivery says something about the link's rate.
pub const RATE_SAMPLE_MIN: usize = 8 * 1024;
/// Rate samples kept for the estimate.
const RATE_SAMPLES: usize = 8;
/// How long the smallest RTT stands for the empty link.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(60);

/// A level of the quality policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub params: EncodeParams,
    /// Shortest time between two frames.
    pub interval: Duration,
    /// JPEG quality regions are refined to once they stop changing; `None`: no refinement.
    pub refine: Option<u8>,
}

const fn level(q: u8, chroma: Chroma, png: PngEffort, ms: u64, refine: Option<u8>) -> Level {
    Level {
        params: EncodeParams {
            jpeg_quality: q,
            chroma,
            png,
        },
        interval: Duration::from_millis(ms),
        refine,
    }
}

/// From fewest bytes to sharpest. Rates in bytes per second that each level needs.
const LEVELS: [(u64, Level); 6] = [
    (0, level(40, Chroma::Half, PngEffort::Best, 200, None)),
    (
        40_000,
        level(50, Chroma::Half, PngEffort::Best, 100, Some(80)),
    ),
    (
        120_000,
        level(62, Chroma::Half, PngEffort::Default, 50, Some(85)),
    ),
    (
        400_000,
        level(72, Chroma::Half, PngEffort::Default, 33, Some(90)),
    ),
    (
        1_500_000,
        level(80, Chroma::Half, PngEffort::Default, 25, Some(92)),
    ),
    (
        6_000_000,
        level(85, Chroma::Half, PngEffort::Fast, 16, Some(95)),
    ),
];
/// The level `Auto` starts at, before any measurement.
const START_LEVEL: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Sent {
    frame: u32,
    bytes: usize,
    at: Instant,
}

/// In-flight frames and link estimates.
#[derive(Debug)]
pub struct Pacer {
    quality: Quality,
    in_flight: VecDeque<Sent>,
    last_ack: Option<Instant>,
    last_sent: Option<Instant>,
    rates: VecDeque<f64>,
    srtt: Option<Duration>,
    min_rtt: Option<(Duration, Instant)>,
}

impl Pacer {
    pub fn new(quality: Quality) -> Self {
        Pacer {
            quality,
            in_flight: VecDeque::new(),
            last_ack: None,
            last_sent: None,
            rates: VecDeque::new(),
            srtt: None,
            min_rtt: None,
        }
    }

    pub fn set_quality(&mut self, q: Quality) {
        self.quality = q;
    }

    /// Forgets the frames in flight (the viewers start afresh: a key frame follows).
    pub fn forget_in_flight(&mut self) {
        self.in_flight.clear();
        self.last_ack = None;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another frame may be sent now.
    pub fn can_send(&self) -> bool {
        self.in_flight.len() < MAX_IN_FLIGHT
    }

    /// When the next frame may go by the frame interval (`None`: now).
    pub fn next_slot(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + self.level().interval)
    }

    pub fn on_sent(&mut self, frame: u32, bytes: usize, now: Instant) {
        self.in_flight.push_back(Sent {
            frame,
            bytes,
            at: now,
        });
        self.last_sent = Some(now);
    }

    /// Takes an ack of `frame` (and every frame before it). Returns whether it freed a slot.
    pub fn on_ack(&mut self, frame: u32, now: Instant) -> bool {
        let mut freed = false;
        // Frame numbers wrap: "before or equal" is a wrapping distance below half the range.
        while let Some(s) = self.in_flight.front().copied() {
            if frame.wrapping_sub(s.frame) >= 1 << 31 {
                break;
            }
            self.in_flight.pop_front();
            freed = true;
            let rtt = now.saturating_duration_since(s.at);
            self.srtt = Some(match self.srtt {
                Some(old) => (old * 7 + rtt) / 8,
                None => rtt,
            });
            let keep_min = matches!(self.min_rtt, Some((m, at)) if m <= rtt && now.saturating_duration_since(at) < MIN_RTT_WINDOW);
            if !keep_min {
                self.min_rtt = Some((rtt, now));
            }
            if s.bytes >= RATE_SAMPLE_MIN {
                let start = match self.last_ack {
                    Some(a) if a > s.at => a,
                    _ => s.at,
                };
                let busy = now.saturating_duration_since(start).as_secs_f64().max(1e-3);
                self.rates.push_back(s.bytes as f64 / busy);
                if self.rates.len() > RATE_SAMPLES {
                    self.rates.pop_front();
                }
            }
            self.last_ack = Some(now);
        }
        freed
    }

    /// Estimated delivery rate in bytes per second, once measured.
    pub fn rate(&self) -> Option<f64> {
        self.rates.iter().copied().reduce(f64::max)
    }

    /// Smoothed and smallest round-trip time, once measured.
    pub fn rtt(&self) -> Option<(Duration, Duration)> {
        Some((self.srtt?, self.min_rtt?.0))
    }

    /// Whether acks take clearly longer than on the empty link (a queue is building).
    fn queueing(&self) -> bool {
        match self.rtt() {
            Some((s, m)) => s > m * 2 + Duration::from_millis(150),
            None => false,
        }
    }

    /// The level in force.
    pub fn level(&self) -> Level {
        match self.quality {
            Quality::Low => LEVELS[0].1,
            Quality::Best => Level {
                params: EncodeParams {
                    jpeg_quality: 90,
                    chroma: Chroma::Full,
                    png: PngEffort::Default,
                },
                interval: Duration::from_millis(16),
                refine: Some(97),
            },
            Quality::Auto => {
                let mut i = match self.rate() {
                    Some(r) => LEVELS
                        .iter()
                        .rposition(|(need, _)| r >= *need as f64)
                        .unwrap_or(0),
                    None => START_LEVEL,
                };
                if self.queueing() {
                    i = i.saturating_sub(1);
                }
                LEVELS[i].1
            }
        }
    }

    pub fn params(&self) -> EncodeParams {
        self.level().params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_and_acks() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Quality::Auto);
        assert!(p.can_send());
        p.on_sent(1, 100, t0);
        p.on_sent(2, 100, t0);
        assert!(!p.can_send());
        assert!(p.on_ack(1, t0 + Duration::from_millis(10)));
        assert!(p.can_send());
        assert!(!p.on_ack(1, t0 + Duration::from_millis(11)));
        assert!(p.on_ack(2, t0 + Duration::from_millis(12)));
        // Wrapping frame numbers.
        p.on_sent(u32::MAX, 100, t0);
        p.on_sent(0, 100, t0);
        assert_eq!(p.in_flight(), 2);
        assert!(!p.on_ack(u32::MAX - 1, t0 + Duration::from_millis(15)));
        assert!(p.on_ack(0, t0 + Duration::from_millis(20)));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn slow_link_lowers_the_level() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Quality::Auto);
        let start = p.level();
        // 40 KB frames taking a second each: 40 KB/s.
        for i in 0..4u32 {
            let at = t0 + Duration::from_secs(u64::from(i));
            p.on_sent(i, 40_000, at);
            p.on_ack(i, at + Duration::from_secs(1));
        }
        let slow = p.level();
        assert!(slow.params.jpeg_quality < start.params.jpeg_quality);
        assert!(slow.interval > start.interval);
        // A fast link raises it.
        let mut f = Pacer::new(Quality::Auto);
        for i in 0..4u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 10);
            f.on_sent(i, 100_000, at);
            f.on_ack(i, at + Duration::from_millis(5));
        }
        assert!(f.level().params.jpeg_quality > start.params.jpeg_quality);
        assert_eq!(Pacer::new(Quality::Low).level().refine, None);
    }
}
