//! Control messages from untrusted peers: decoding must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lifeline_proto::agent::AgentToRelay::decode(text);
        let _ = lifeline_proto::agent::RelayToAgent::decode(text);
        let _ = lifeline_proto::console::RelayToConsole::decode(text);
        let _ = lifeline_proto::viewer::ViewerToRelay::decode(text);
        let _ = lifeline_proto::viewer::RelayToViewer::decode(text);
    }
});
