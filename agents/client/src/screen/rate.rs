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
//! full-screen change and the eye hardly sees it on moving photos); from 400 kB/s up, a
//! change after a still moment (a new picture, see [`Refiner`]) goes with full chroma, as
//! the refinement of a still region always does. `Low` is the lowest
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
    /// Chroma for a change after a still moment (a new picture that may well stay).
    pub still_chroma: Chroma,
}

/// An `Auto` level: changing pictures with half chroma, new ones with `still`.
const fn level(q: u8, still: Chroma, png: PngEffort, ms: u64, refine: Option<u8>) -> Level {
    Level {
        params: EncodeParams {
            jpeg_quality: q,
            chroma: Chroma::Half,
            png,
        },
        interval: Duration::from_millis(ms),
        refine,
        still_chroma: still,
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
        level(72, Chroma::Full, PngEffort::Default, 33, Some(90)),
    ),
    (
        1_500_000,
        level(80, Chroma::Full, PngEffort::Default, 25, Some(92)),
    ),
    (
        6_000_000,
        level(80, Chroma::Full, PngEffort::Fast, 16, Some(95)),
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
                still_chroma: Chroma::Full,
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

/// How long JPEG-sent content must stay unchanged before it is refined.
pub const REFINE_AFTER: Duration = Duration::from_millis(500);
/// The wait before refining once a refinement proved wasted.
pub const REFINE_AFTER_WASTED: Duration = Duration::from_secs(4);
/// A refinement not overtaken by new JPEG content within this long was worth its bytes.
pub const REFINE_STANDS: Duration = Duration::from_secs(3);

/// When JPEG-sent content is refined, and which changes count as new pictures.
///
/// Content is refined [`REFINE_AFTER`] after the last JPEG change. A refinement overtaken
/// by new JPEG content within [`REFINE_STANDS`] was wasted (a slideshow, a page read in
/// short bursts): the next wait is [`REFINE_AFTER_WASTED`], until a refinement stands
/// again. A JPEG change at least [`REFINE_AFTER`] after the previous one follows a still
/// moment: a new picture that may well stay as it is, worth full chroma at once. The policy
/// is per screen, not per region (a video playing anywhere holds every refinement back).
#[derive(Debug, Clone)]
pub struct Refiner {
    due: Option<Instant>,
    delay: Duration,
    refined_at: Option<Instant>,
    lossy_at: Option<Instant>,
}

impl Default for Refiner {
    fn default() -> Self {
        Refiner {
            due: None,
            delay: REFINE_AFTER,
            refined_at: None,
            lossy_at: None,
        }
    }
}

impl Refiner {
    /// When the next refinement (or slice of one) is due, if anything awaits one.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a change at `now` follows a still moment.
    pub fn after_still(&self, now: Instant) -> bool {
        self.lossy_at
            .is_none_or(|t| now.saturating_duration_since(t) >= REFINE_AFTER)
    }

    /// JPEG content went out at `now`.
    pub fn on_lossy(&mut self, now: Instant) {
        if let Some(t) = self.refined_at.take() {
            self.delay = if now.saturating_duration_since(t) < REFINE_STANDS {
                REFINE_AFTER_WASTED
            } else {
                REFINE_AFTER
            };
        }
        self.lossy_at = Some(now);
        self.due = Some(now + self.delay);
    }

    /// A refinement is being produced: nothing is due until it says otherwise.
    pub fn start(&mut self) {
        self.due = None;
    }

    /// A refinement slice went out at `now`; `more`: content still awaits refining.
    pub fn on_refined(&mut self, now: Instant, more: bool) {
        self.refined_at = Some(now);
        if more {
            self.due = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refinement_waits_longer_after_a_wasted_one() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Refiner::default();
        assert!(r.after_still(t0), "the first change is a new picture");
        r.on_lossy(t0);
        assert_eq!(r.due(), Some(s(500)));
        // Scrolling: changes 100 ms apart are not new pictures and push the refinement on.
        assert!(!r.after_still(s(100)));
        r.on_lossy(s(100));
        assert_eq!(r.due(), Some(s(600)));
        r.start();
        r.on_refined(s(600), true);
        assert_eq!(
            r.due(),
            Some(s(600)),
            "the next slice goes once this one is acked"
        );
        r.start();
        r.on_refined(s(650), false);
        assert_eq!(r.due(), None);
        // A new picture 1.35 s after the refinement: it was wasted; wait longer.
        assert!(r.after_still(s(2000)));
        r.on_lossy(s(2000));
        assert_eq!(r.due(), Some(s(6000)));
        // Slideshow: the next picture comes before the refinement, which never goes.
        r.on_lossy(s(4000));
        assert_eq!(r.due(), Some(s(8000)));
        // Left alone, the picture is refined after all, and a refinement that stands
        // brings the short wait back.
        r.start();
        r.on_refined(s(8000), false);
        r.on_lossy(s(20000));
        assert_eq!(r.due(), Some(s(20500)));
    }

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
