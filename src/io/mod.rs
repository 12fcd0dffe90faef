//! Articles in and records out: input readers, atomic outputs, hand-labelled data files and their
//! checks, and the embedding cache.

pub mod arrow;
pub mod cache;
pub mod data;
pub mod input;
pub mod output;
pub mod parquet;
pub mod records;
