//! The screen channel's deflate stream: what [`FLAG_DEFLATE`] means and both ends of it.
//!
//! A message on [`Channel::Screen`](crate::frame::Channel::Screen) with [`FLAG_DEFLATE`]
//! carries, instead of an update message, the next chunk of one raw deflate stream (RFC 1951:
//! no zlib or gzip wrapper) per screen channel. The chunk is the update message run through
//! the compressor and ended with a *sync flush* (an empty stored block, so every chunk ends
//! with the bytes `00 00 FF FF`): inflated after the chunks before it, it gives exactly one
//! update message ([`crate::screen`]) and nothing more. The compressor's history (a 32 KiB
//! window) lives on across messages, so a glyph, a row of text or an update header seen
//! recently costs a back-reference of a few bits.
//!
//! Rules, for senders and receivers:
//! * the stream starts afresh (no history) at every screen message with
//!   [`FLAG_SUPERSEDES`], deflated or not, which is where a relay lets a new or lagging
//!   viewer in;
//! * a message without [`FLAG_DEFLATE`] is a plain update message and does not touch the
//!   stream (the agent sends JPEG-heavy messages plain: they do not deflate);
//! * screen sequence numbers are consecutive (wrapping); a deflated message continues the
//!   stream only if it directly follows the previous screen message. After a gap (a relay
//!   dropped messages), a chunk that does not inflate, or one that inflates beyond
//!   [`MAX_INFLATED`], the receiver cannot inflate anything more until the next superseding
//!   message: it drops the deflated messages and asks for a key frame (`Refresh`);
//! * a chunk never ends the stream (no final block).
//!
//! [`ScreenDeflater`] is the agent's end (its level may change between messages: small
//! messages can afford a thorough search, large ones need a fast one); [`ScreenInflater`] is
//! the reference receiver, used by tests and tools, which bounds what a chunk may inflate to
//! and never panics (property tests below; the browser console has its own, in
//! `viewer.js`).
//!
//! Limits: the window is deflate's 32 KiB, so only recent content is a back-reference; a
//! lost message costs a key frame, as it did before.

use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use crate::MAX_FRAME_PAYLOAD;
use crate::frame::{FLAG_DEFLATE, FLAG_SUPERSEDES, FrameHeader};

/// Most bytes one deflated chunk may inflate to: one update message, bounded like any frame
/// payload.
pub const MAX_INFLATED: usize = MAX_FRAME_PAYLOAD;
/// The four bytes every chunk ends with (the sync flush's empty stored block).
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// Fastest and most thorough compression levels.
pub const LEVEL_FAST: u8 = 1;
pub const LEVEL_BEST: u8 = 9;

/// Why a deflated screen message could not be turned into an update message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error(
        "no deflate stream to continue (none started, or an earlier message was lost or bad): waiting for a key frame"
    )]
    NoStream,
    #[error("screen message {got} follows message {expected_before}: messages were lost")]
    Gap { expected_before: u32, got: u32 },
    #[error("the deflated chunk does not end with a sync flush")]
    NotFlushed,
    #[error("the deflated chunk is not valid deflate data")]
    Corrupt,
    #[error("the deflated chunk ends the stream")]
    StreamEnd,
    #[error("the deflated chunk inflates to more than {MAX_INFLATED} bytes")]
    TooLarge,
}

/// Why the agent's compressor failed (it should not: this reports a broken invariant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    #[error("the compressor refused its input ({0:?})")]
    Compressor(MZError),
    #[error("the compressor made no progress on a {0}-byte message")]
    Stalled(usize),
}

/// The sending end: one per screen stream, reset at every key frame.
pub struct ScreenDeflater {
    c: Box<CompressorOxide>,
    level: u8,
}

impl std::fmt::Debug for ScreenDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScreenDeflater(level {})", self.level)
    }
}

impl ScreenDeflater {
    /// A compressor with an empty history at `level` (0..=9, clamped).
    pub fn new(level: u8) -> Self {
        let level = level.min(LEVEL_BEST);
        let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
        ScreenDeflater {
            c: Box::new(CompressorOxide::new(flags)),
            level,
        }
    }

    /// Forgets the history: the next chunk starts a new stream (send it, or a plain message
    /// before it, with [`FLAG_SUPERSEDES`]).
    pub fn reset(&mut self) {
        self.c.reset();
    }

    /// Sets the level for the following chunks (the history is kept).
    pub fn set_level(&mut self, level: u8) {
        let level = level.min(LEVEL_BEST);
        if level != self.level {
            self.level = level;
            self.c.set_compression_level_raw(level);
        }
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    /// Appends the chunk for `update` (an update message) to `out`, sync-flushed.
    pub fn deflate(&mut self, update: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        // Stored blocks cost 5 bytes per 64 KiB and the flush about 6: this is room enough
        // in one go; the loop only guards against a surprise.
        let start = out.len();
        out.resize(start + update.len() + update.len() / 64 + 64, 0);
        let (mut read, mut written) = (0usize, start);
        loop {
            let r = miniz_oxide::deflate::stream::deflate(
                &mut self.c,
                &update[read..],
                &mut out[written..],
                MZFlush::Sync,
            );
            let status = r.status.map_err(DeflateError::Compressor)?;
            read += r.bytes_consumed;
            written += r.bytes_written;
            if read == update.len() && written < out.len() && status == MZStatus::Ok {
                break;
            }
            if r.bytes_consumed == 0 && r.bytes_written == 0 && written < out.len() {
                out.truncate(start);
                return Err(DeflateError::Stalled(update.len()));
            }
            let more = out.len() / 2 + 64;
            out.resize(out.len() + more, 0);
        }
        out.truncate(written);
        Ok(())
    }
}

/// The receiving end: turns each screen message's payload into an update message,
/// following the rules above.
pub struct ScreenInflater {
    state: Box<InflateState>,
    /// A stream is running and nothing was lost since it started.
    live: bool,
    /// Sequence number of the last screen message seen.
    last_seq: Option<u32>,
    out: Vec<u8>,
}

impl std::fmt::Debug for ScreenInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScreenInflater(live: {})", self.live)
    }
}

impl Default for ScreenInflater {
    fn default() -> Self {
        Self::new()
    }
}

impl ScreenInflater {
    /// A receiver that has seen nothing: deflated messages wait for a superseding one.
    pub fn new() -> Self {
        ScreenInflater {
            state: InflateState::new_boxed(DataFormat::Raw),
            live: false,
            last_seq: None,
            out: Vec::new(),
        }
    }

    /// Whether deflated messages can be inflated now.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The update message that `payload` (a screen message with `header`) carries: the
    /// payload itself when it is plain, else its inflated chunk. After an error every
    /// deflated message is refused with [`InflateError::NoStream`] until one with
    /// [`FLAG_SUPERSEDES`]; plain messages still pass.
    pub fn message<'a>(
        &'a mut self,
        header: &FrameHeader,
        payload: &'a [u8],
    ) -> Result<&'a [u8], InflateError> {
        let follows = self.last_seq.map(|s| s.wrapping_add(1) == header.seq);
        let previous = self.last_seq;
        self.last_seq = Some(header.seq);
        if header.flags & FLAG_SUPERSEDES != 0 {
            self.state.reset(DataFormat::Raw);
            self.live = true;
        } else if follows == Some(false) && self.live {
            self.live = false;
            if header.flags & FLAG_DEFLATE != 0 {
                return Err(InflateError::Gap {
                    expected_before: previous.unwrap_or(0).wrapping_add(1),
                    got: header.seq,
                });
            }
        }
        if header.flags & FLAG_DEFLATE == 0 {
            return Ok(payload);
        }
        if !self.live {
            return Err(InflateError::NoStream);
        }
        match self.inflate(payload) {
            Ok(()) => Ok(&self.out),
            Err(e) => {
                self.live = false;
                Err(e)
            }
        }
    }

    fn inflate(&mut self, chunk: &[u8]) -> Result<(), InflateError> {
        if !chunk.ends_with(&SYNC_TAIL) {
            return Err(InflateError::NotFlushed);
        }
        self.out.clear();
        // Grow as output comes, up to one byte past the limit (which means "too large").
        let mut read = 0;
        loop {
            let have = self.out.len();
            let room = (have.max(4096) * 2).min(MAX_INFLATED + 1);
            if room <= have {
                return Err(InflateError::TooLarge);
            }
            self.out.resize(room, 0);
            let r = miniz_oxide::inflate::stream::inflate(
                &mut self.state,
                &chunk[read..],
                &mut self.out[have..],
                MZFlush::Sync,
            );
            read += r.bytes_consumed;
            self.out.truncate(have + r.bytes_written);
            match r.status {
                Ok(MZStatus::StreamEnd) => return Err(InflateError::StreamEnd),
                Ok(_) | Err(MZError::Buf) => {}
                Err(_) => return Err(InflateError::Corrupt),
            }
            if self.out.len() > MAX_INFLATED {
                return Err(InflateError::TooLarge);
            }
            let full = self.out.len() == room;
            if read == chunk.len() && !full {
                return Ok(());
            }
            if !full && r.bytes_consumed == 0 && r.bytes_written == 0 {
                // Input left but nothing moves: a chunk that cannot be completed.
                return Err(InflateError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Channel;
    use proptest::prelude::*;

    fn header(seq: u32, flags: u8, len: usize) -> FrameHeader {
        FrameHeader {
            channel: Channel::Screen,
            flags,
            seq,
            len: len as u32,
        }
    }

    #[test]
    fn chunks_inflate_in_order_and_plain_messages_pass() {
        let mut d = ScreenDeflater::new(LEVEL_FAST);
        let mut inf = ScreenInflater::new();
        let msgs: [&[u8]; 3] = [b"hello hello hello", b"hello again", b"hello hello"];
        let mut chunks = Vec::new();
        for m in msgs {
            let mut c = Vec::new();
            d.deflate(m, &mut c).unwrap();
            assert!(c.ends_with(&SYNC_TAIL));
            chunks.push(c);
        }
        // History works: the third message is mostly a back-reference.
        assert!(chunks[2].len() < msgs[2].len(), "{:?}", chunks[2]);
        let flags = |i: usize| FLAG_DEFLATE | if i == 0 { FLAG_SUPERSEDES } else { 0 };
        let got = inf.message(&header(10, flags(0), 0), &chunks[0]).unwrap();
        assert_eq!(got, msgs[0]);
        assert_eq!(inf.message(&header(11, 0, 0), b"plain").unwrap(), b"plain");
        for i in 1..3 {
            let got = inf
                .message(&header(11 + i as u32, flags(i), 0), &chunks[i])
                .unwrap();
            assert_eq!(got, msgs[i]);
        }
    }

    #[test]
    fn waits_for_a_superseding_message_after_a_gap_or_an_error() {
        let mut d = ScreenDeflater::new(6);
        let mut inf = ScreenInflater::new();
        let chunk = |d: &mut ScreenDeflater, m: &[u8]| {
            let mut c = Vec::new();
            d.deflate(m, &mut c).unwrap();
            c
        };
        // Nothing started yet.
        let c0 = chunk(&mut d, b"first");
        assert_eq!(
            inf.message(&header(1, FLAG_DEFLATE, 0), &c0),
            Err(InflateError::NoStream)
        );
        d.reset();
        let c1 = chunk(&mut d, b"key");
        assert_eq!(
            inf.message(&header(2, FLAG_DEFLATE | FLAG_SUPERSEDES, 0), &c1)
                .unwrap(),
            b"key"
        );
        let c2 = chunk(&mut d, b"lost");
        let c3 = chunk(&mut d, b"after");
        let _ = c2; // message 3 was dropped on the way
        assert_eq!(
            inf.message(&header(4, FLAG_DEFLATE, 0), &c3),
            Err(InflateError::Gap {
                expected_before: 3,
                got: 4
            })
        );
        let c4 = chunk(&mut d, b"more");
        assert_eq!(
            inf.message(&header(5, FLAG_DEFLATE, 0), &c4),
            Err(InflateError::NoStream)
        );
        // Plain messages still pass.
        assert_eq!(inf.message(&header(6, 0, 0), b"plain").unwrap(), b"plain");
        d.reset();
        let c5 = chunk(&mut d, b"again");
        assert_eq!(
            inf.message(&header(9, FLAG_DEFLATE | FLAG_SUPERSEDES, 0), &c5)
                .unwrap(),
            b"again"
        );
        // A chunk that does not inflate (a block of the reserved type 3) stops the stream
        // too.
        assert_eq!(
            inf.message(
                &header(10, FLAG_DEFLATE, 0),
                &[0x06, 0x00, 0x00, 0xFF, 0xFF]
            ),
            Err(InflateError::Corrupt)
        );
        let c6 = chunk(&mut d, b"next");
        assert_eq!(
            inf.message(&header(11, FLAG_DEFLATE, 0), &c6),
            Err(InflateError::NoStream)
        );
    }

    #[test]
    fn refuses_a_chunk_that_inflates_too_far_or_ends_the_stream() {
        let mut d = ScreenDeflater::new(LEVEL_BEST);
        let mut c = Vec::new();
        d.deflate(&vec![0u8; MAX_INFLATED + 1], &mut c).unwrap();
        assert!(c.len() < 4096, "{}", c.len());
        let mut inf = ScreenInflater::new();
        let h = header(1, FLAG_DEFLATE | FLAG_SUPERSEDES, c.len());
        assert_eq!(inf.message(&h, &c), Err(InflateError::TooLarge));
        // Exactly the limit is fine.
        let mut d = ScreenDeflater::new(LEVEL_FAST);
        let mut c = Vec::new();
        d.deflate(&vec![7u8; MAX_INFLATED], &mut c).unwrap();
        assert_eq!(inf.message(&h, &c).map(<[u8]>::len), Ok(MAX_INFLATED));
        // A final block ends the stream: refused.
        let mut fin = miniz_oxide::deflate::compress_to_vec(b"abc", 6);
        fin.extend_from_slice(&SYNC_TAIL);
        assert_eq!(inf.message(&h, &fin), Err(InflateError::StreamEnd));
        assert_eq!(inf.message(&h, &c[..10]), Err(InflateError::NotFlushed));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of messages, deflated or plain, with key frames anywhere, at any
        /// levels, comes back byte for byte.
        #[test]
        fn round_trip(msgs in prop::collection::vec(
                          (prop::collection::vec(0u8..4, 0..3000), any::<bool>(), any::<bool>(), 0u8..=9),
                          1..12)) {
            let mut d = ScreenDeflater::new(LEVEL_FAST);
            let mut inf = ScreenInflater::new();
            for (i, (m, deflated, key, level)) in msgs.iter().enumerate() {
                let key = *key || i == 0;
                if key {
                    d.reset();
                }
                d.set_level(*level);
                let mut flags = if key { FLAG_SUPERSEDES } else { 0 };
                let payload = if *deflated {
                    flags |= FLAG_DEFLATE;
                    let mut c = Vec::new();
                    d.deflate(m, &mut c).unwrap();
                    c
                } else {
                    m.clone()
                };
                let got = inf.message(&header(1000 + i as u32, flags, payload.len()), &payload);
                prop_assert_eq!(got, Ok(&m[..]));
            }
        }

        /// Arbitrary or mutated chunks never panic and never give more than the limit.
        #[test]
        fn never_panics(junk in prop::collection::vec(any::<u8>(), 0..600),
                        msg in prop::collection::vec(0u8..3, 0..2000),
                        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
            let mut inf = ScreenInflater::new();
            let h = header(5, FLAG_DEFLATE | FLAG_SUPERSEDES, 0);
            let mut tailed = junk.clone();
            tailed.extend_from_slice(&SYNC_TAIL);
            for j in [&junk, &tailed] {
                if let Ok(out) = inf.message(&h, j) {
                    prop_assert!(out.len() <= MAX_INFLATED);
                }
            }
            let mut d = ScreenDeflater::new(6);
            let mut c = Vec::new();
            d.deflate(&msg, &mut c).unwrap();
            for (at, v) in &flips {
                let i = at.index(c.len());
                c[i] ^= v;
            }
            if let Ok(out) = inf.message(&h, &c) {
                prop_assert!(out.len() <= MAX_INFLATED);
            }
            // And the next message of the same stream.
            let h2 = header(6, FLAG_DEFLATE, 0);
            let _ = inf.message(&h2, &tailed);
        }
    }
}
