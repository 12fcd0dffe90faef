//! spyglass: tags news articles in any major language with security topics.

pub mod bundle;
pub mod cache;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod data;
pub mod encoder;
pub mod evaluate;
pub mod head;
pub mod html;
pub mod input;
pub mod lang;
pub mod lexical;
pub mod logistic;
pub mod metrics;
pub mod output;
pub mod predictions;
pub mod progress;
pub mod report;
pub mod taxonomy;
pub mod train;
pub mod triage;
