//! Command implementations; each takes resolved arguments and returns an exit status.

pub mod data;
pub mod embed;
pub mod eval;
pub mod info;
pub mod label;
pub mod model;
pub mod train;
pub mod triage;

use anyhow::Context;

use crate::cli::EncoderArgs;
use spyglass::encoder::{default_device, Encoder};

/// How a command ended, mapped to the process exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A quality gate or a data check failed (exit 1).
    GateFailed,
}

/// Resolves and loads the encoder the arguments name.
pub fn load_encoder(args: &EncoderArgs) -> anyhow::Result<Encoder> {
    let files = args
        .source()
        .resolve()
        .with_context(|| format!("cannot find encoder `{}`", args.name()))?;
    Encoder::load(files, args.windows(), &default_device(), args.precision())
        .with_context(|| format!("cannot load encoder `{}`", args.name()))
}
