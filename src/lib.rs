//! spyglass: tags news articles in any major language with security topics.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod data;
pub mod encoder;
pub mod input;
pub mod output;
pub mod progress;
pub mod taxonomy;
