//! Small helpers every layer shares, written once: SHA-256, XDG paths and HTML escaping.

pub mod html;
