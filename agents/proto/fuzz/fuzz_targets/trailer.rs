//! The ticket trailer read from a downloaded file: parsing must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lifeline_proto::ticket::parse_trailer(data);
});
