//! Screen and cursor payloads from a hostile agent: decoding must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lifeline_proto::screen::decode_update(data);
    let _ = lifeline_proto::screen::decode_cursor(data);
});
