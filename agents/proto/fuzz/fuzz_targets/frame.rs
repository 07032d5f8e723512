//! Binary frame headers from untrusted peers: decoding must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lifeline_proto::frame::decode(data);
});
