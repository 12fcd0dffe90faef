//! Command implementations; each takes resolved arguments and returns an exit status.

pub mod data;
pub mod embed;
pub mod eval;
pub mod info;
pub mod label;
pub mod model;
pub mod serve;
pub mod train;
pub mod triage;

use crate::cli::EncoderArgs;
use spyglass::encoder::Encoder;

/// How a command ended, mapped to the process exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A quality gate or a data check failed (exit 1).
    GateFailed,
}

/// Resolves and loads the encoder the arguments name.
pub fn load_encoder(args: &EncoderArgs) -> anyhow::Result<Encoder> {
    let choice = args.choice();
    Ok(spyglass::model::load::load_encoder(
        &choice,
        choice.source(),
        choice.windows,
        None,
    )?)
}
