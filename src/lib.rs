//! spyglass: tags news articles in any major language with security topics.
//!
//! The library's layers, each depending only on those above it:
//! - `encoder` (the `spyglass-encoder` crate): text to embeddings;
//! - `model`: taxonomy, heads, training, calibration, bundles, loading, topic assignment;
//! - `io`: articles in, records out, data checks, the embedding cache;
//! - `eval`: metrics, evaluation, reports;
//! - `triage`: feeds, extraction, de-duplication, state, digests.
//!
//! The `spyglass` binary (`src/bin/spyglass/`) parses flags, calls these and prints.

pub use spyglass_encoder as encoder;

pub mod eval;
pub mod io;
pub mod label;
pub mod model;
pub mod serve;
pub mod triage;
pub mod util;
