//! `spyglass data check`: validates labelled article files and prints their counts.

use super::Outcome;
use crate::cli::DataCheckArgs;

pub fn check(_args: &DataCheckArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`spyglass data check` is not implemented yet")
}
