//! Screen capture on X11 (to be written).
