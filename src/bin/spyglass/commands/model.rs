//! Loading the model for a command: flags into the library's choices, notices printed as
//! warnings.

use crate::cli::{CacheArgs, EncoderArgs, ModelArgs};
use spyglass::encoder::{EncoderSource, WindowOverrides};
use spyglass::io::cache::CachedEncoder;
use spyglass::model::load::{self, LoadedModel};

/// Loads taxonomy, encoder and classifier as the flags say; prints what loading noticed.
pub fn load_model(
    model: &ModelArgs,
    enc: &EncoderArgs,
    cache: &CacheArgs,
) -> anyhow::Result<LoadedModel> {
    let loaded = load::load_model(
        &model.choice(),
        &enc.choice(),
        &cache.choice(),
        &mut |notice| eprintln!("warning: {notice}"),
    )?;
    Ok(loaded)
}

/// Loads an encoder and puts the cache in front of it.
pub fn load_cached_encoder(
    enc: &EncoderArgs,
    source: EncoderSource,
    windows: WindowOverrides,
    cache: &CacheArgs,
) -> anyhow::Result<CachedEncoder> {
    Ok(load::load_cached_encoder(
        &enc.choice(),
        source,
        windows,
        None,
        &cache.choice(),
    )?)
}

/// `--topics` as a filter over the classifier's topics.
pub fn topic_filter(model: &LoadedModel, topics: &[String]) -> anyhow::Result<Vec<bool>> {
    Ok(model.topic_filter(topics)?)
}

/// Says once per run how many cache entries failed their checksum (and were recomputed).
pub fn warn_corrupt_cache(stats: &spyglass::io::cache::CacheStats) {
    if stats.corrupt > 0 {
        eprintln!(
            "warning: {} cached embeddings failed their checksum (changed outside spyglass, or damaged) and were recomputed",
            stats.corrupt
        );
    }
}
