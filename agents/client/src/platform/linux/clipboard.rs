//! Clipboard text on X11 (to be written).
