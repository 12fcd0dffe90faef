//! Loading what scores articles: taxonomy, encoder (with cache) and classifier, from a model
//! bundle or the zero-shot head; shared by `label`, `eval` and `triage`.

use anyhow::{bail, Context};

use crate::cli::{CacheArgs, EncoderArgs, ModelArgs};
use spyglass::encoder::resolve::LOCAL_REVISION;
use spyglass::encoder::{default_device, Encoder, EncoderSettings, WindowOverrides};
use spyglass::io::cache::{default_cache_path, CachedEncoder, EmbeddingCache};
use spyglass::model::bundle::{Bundle, EncoderPin, Manifest};
use spyglass::model::classify::{uncalibrated_zero_shot, zero_shot_head, Classifier, ScoredHead};
use spyglass::model::taxonomy::Taxonomy;

pub struct LoadedModel {
    pub encoder: CachedEncoder,
    pub classifier: Classifier,
    pub taxonomy: Taxonomy,
    /// `name@version` of the bundle, or `zero-shot`.
    pub model_name: String,
    pub manifest: Option<Manifest>,
}

impl LoadedModel {
    /// Which topics `--topics` keeps (all when empty), in classifier order; every id must be a
    /// topic of the taxonomy.
    pub fn topic_filter(&self, topics: &[String]) -> anyhow::Result<Vec<bool>> {
        for topic in topics {
            if !self.classifier.topics.contains(topic) {
                bail!(
                    "`--topics` names `{topic}`, which is not in taxonomy `{}`; known: {}",
                    self.taxonomy.path.display(),
                    self.classifier.topics.join(", ")
                );
            }
        }
        Ok(self
            .classifier
            .topics
            .iter()
            .map(|t| topics.is_empty() || topics.contains(t))
            .collect())
    }
}

pub fn open_cache(args: &CacheArgs) -> anyhow::Result<Option<EmbeddingCache>> {
    if args.no_cache {
        return Ok(None);
    }
    let path = args.cache.clone().unwrap_or_else(default_cache_path);
    Ok(Some(EmbeddingCache::open(&path)?))
}

/// Loads an encoder and puts the cache in front of it.
pub fn load_cached_encoder(
    args: &EncoderArgs,
    source: spyglass::encoder::EncoderSource,
    windows: WindowOverrides,
    cache: &CacheArgs,
) -> anyhow::Result<CachedEncoder> {
    let files = source
        .resolve()
        .with_context(|| format!("cannot find encoder `{}`", source.id_or_dir))?;
    let encoder = Encoder::load(files, windows, &default_device(), args.precision())
        .with_context(|| format!("cannot load encoder `{}`", source.id_or_dir))?;
    Ok(CachedEncoder::new(
        encoder,
        open_cache(cache)?,
        args.batch_size,
    )?)
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

/// The pin a bundle records for an encoder: its Hub id when it is a local copy of a known model.
pub fn encoder_pin(encoder: &CachedEncoder) -> EncoderPin {
    let inner = &encoder.encoder;
    let files = inner.files();
    EncoderPin {
        id: EncoderSettings::known_id(files).unwrap_or_else(|| files.id.clone()),
        // A local folder has no Hub revision; the pin then names the Hub's default branch, so the
        // installed bundle finds its encoder in the cache or on the Hub (the weights hash pins
        // the weights themselves).
        revision: if files.revision == LOCAL_REVISION {
            "main".into()
        } else {
            files.revision.clone()
        },
        weights_sha256: encoder.space().weights_sha256.clone(),
        hidden_size: inner.hidden_size(),
        prefix: inner.settings().prefix.clone(),
        query_prefix: inner.settings().query_prefix.clone(),
        pooling: inner.settings().pooling,
        window: inner.window_config(),
    }
}

/// The name reports and labels carry: marked when the encoder runs in int8, so approximate
/// figures are never mistaken for f32 ones.
fn with_precision(name: String, enc: &EncoderArgs) -> String {
    match enc.precision() {
        spyglass::encoder::Precision::F32 => name,
        other => format!("{name} ({} encoder)", other.as_str()),
    }
}

pub fn load_model(
    model: &ModelArgs,
    enc: &EncoderArgs,
    cache: &CacheArgs,
) -> anyhow::Result<LoadedModel> {
    let taxonomy = Taxonomy::load(&model.taxonomy)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    if model.zero_shot {
        let encoder = load_cached_encoder(enc, enc.source(), enc.windows(), cache)?;
        let head = zero_shot_head(&encoder.encoder, &taxonomy, &topics)?;
        let classifier = Classifier {
            heads: vec![uncalibrated_zero_shot(head, (0..topics.len()).collect())],
            topics,
        };
        return Ok(LoadedModel {
            encoder,
            classifier,
            taxonomy,
            model_name: with_precision("zero-shot".into(), enc),
            manifest: None,
        });
    }
    let bundle = Bundle::load(&model.model)?;
    let new_topics = bundle.check_taxonomy(&taxonomy)?;
    let pin = &bundle.manifest.encoder;
    let windows = WindowOverrides {
        max_tokens: enc.max_tokens.or(Some(pin.window.max_tokens)),
        overlap: enc.overlap.or(Some(pin.window.overlap)),
        max_windows: enc.max_windows.or(Some(pin.window.max_windows)),
    };
    let encoder = load_cached_encoder(enc, enc.source_or(&pin.id, &pin.revision), windows, cache)?;
    let got = encoder_pin(&encoder);
    if got.hidden_size != pin.hidden_size {
        bail!(
            "encoder `{}` has hidden size {}, but bundle `{}` was trained on {} ({}); pass `--encoder` the bundle's encoder",
            encoder.encoder.files().id, got.hidden_size, model.model.display(), pin.id, pin.hidden_size
        );
    }
    if got.weights_sha256 != pin.weights_sha256
        || got.prefix != pin.prefix
        || got.pooling != pin.pooling
    {
        let message = format!(
            "encoder `{}` (weights sha256 {}…, prefix {:?}) is not the one bundle `{}` was trained with ({} at {}, weights sha256 {}…, prefix {:?})",
            encoder.encoder.files().id,
            &got.weights_sha256[..12],
            got.prefix,
            model.model.display(),
            pin.id,
            pin.revision,
            &pin.weights_sha256[..12.min(pin.weights_sha256.len())],
            pin.prefix
        );
        if !model.allow_encoder_mismatch {
            bail!("{message}; pass the bundle's encoder with `--encoder`, retrain, or accept shifted scores with `--allow-encoder-mismatch`");
        }
        eprintln!("warning: {message}; scores may be off (--allow-encoder-mismatch)");
    }
    let m = &bundle.manifest;
    let index = |id: &str| {
        topics
            .iter()
            .position(|t| t == id)
            .expect("checked against taxonomy")
    };
    let mut heads = vec![ScoredHead {
        head: bundle.head.clone(),
        topic_indices: m.topics.iter().map(|t| index(t)).collect(),
        calibration: m.topics.iter().map(|t| m.calibration[t]).collect(),
        thresholds: m.topics.iter().map(|t| m.thresholds[t]).collect(),
    }];
    if !new_topics.is_empty() {
        eprintln!(
            "warning: topics {} are not in bundle `{}`; scoring them with the uncalibrated zero-shot head until you retrain",
            new_topics.join(", "),
            model.model.display()
        );
        let head = zero_shot_head(&encoder.encoder, &taxonomy, &new_topics)?;
        heads.push(uncalibrated_zero_shot(
            head,
            new_topics.iter().map(|t| index(t)).collect(),
        ));
    }
    Ok(LoadedModel {
        encoder,
        classifier: Classifier { topics, heads },
        taxonomy,
        model_name: with_precision(format!("{}@{}", m.name, m.version), enc),
        manifest: Some(bundle.manifest),
    })
}
