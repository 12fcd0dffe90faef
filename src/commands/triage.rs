//! `spyglass triage`: polls news feeds and ranks new articles by topic score.

use super::Outcome;
use crate::cli::TriageArgs;

pub fn run(_args: &TriageArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`spyglass triage` is not implemented yet")
}
