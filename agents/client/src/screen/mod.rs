//! The screen stream: change detection, encoding and pacing (to be written).
