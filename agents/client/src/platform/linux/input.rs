//! Input injection on X11 (to be written).
