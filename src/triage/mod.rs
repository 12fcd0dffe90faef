//! Feed triage: reading news feeds, extracting article text, de-duplicating stories, keeping
//! state between runs and rendering ranked digests (the library side of `spyglass triage`).

pub mod charset;
pub mod cycle;
pub mod dedup;
pub mod extract;
pub mod feeds;
pub mod fetch;
pub mod render;
pub mod state;
pub mod timespec;

pub use timespec::{parse_duration, parse_since, Since};
