//! Screen and cursor payloads from a hostile agent: decoding must never panic, and a
//! deflated screen message never inflates beyond its bound.
#![no_main]

use lifeline_proto::deflate::{MAX_INFLATED, ScreenInflater};
use lifeline_proto::frame::{Channel, FLAG_DEFLATE, FLAG_SUPERSEDES, FrameHeader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lifeline_proto::screen::decode_update(data);
    let _ = lifeline_proto::screen::decode_cursor(data);
    let header = FrameHeader {
        channel: Channel::Screen,
        flags: FLAG_DEFLATE | FLAG_SUPERSEDES,
        seq: 1,
        len: data.len() as u32,
    };
    let mut inflater = ScreenInflater::new();
    if let Ok(update) = inflater.message(&header, data) {
        assert!(update.len() <= MAX_INFLATED);
        let _ = lifeline_proto::screen::decode_update(update);
    }
});
