//! Loading what scores articles: the taxonomy, the encoder behind its embedding cache, and the
//! classifier (a model bundle's head, checked against the encoder it pins, or the zero-shot head).
//! Every front end (CLI, server, Python) loads through here.

use std::path::PathBuf;

use crate::encoder::resolve::LOCAL_REVISION;
use crate::encoder::{
    default_device, Encoder, EncoderError, EncoderSettings, EncoderSource, Precision, ResolveError,
    WindowOverrides,
};
use crate::io::cache::{
    default_cache_path, CacheError, CachedEncoder, CachedEncoderError, EmbeddingCache,
};
use crate::model::bundle::{Bundle, BundleError, EncoderPin, Manifest};
use crate::model::classify::{uncalibrated_zero_shot, zero_shot_head, Classifier, ScoredHead};
use crate::model::defaults;
use crate::model::probes;
use crate::model::taxonomy::{Taxonomy, TaxonomyError};

/// The encoder every command uses when neither `--encoder` nor a bundle names one.
pub const DEFAULT_ENCODER: &str = "intfloat/multilingual-e5-small";

/// Which encoder to load and how, as the user asked for it (flags, request fields or arguments).
#[derive(Debug, Clone)]
pub struct EncoderChoice {
    /// A local folder or Hub id; overrides the encoder a bundle pins.
    pub explicit: Option<String>,
    /// Hub revision; overrides the bundle's.
    pub revision: Option<String>,
    /// Only the local Hugging Face cache, never the network.
    pub offline: bool,
    pub windows: WindowOverrides,
    /// Windows per encoder batch.
    pub batch_size: usize,
    pub precision: Precision,
}

impl EncoderChoice {
    /// The encoder the user named, else the default one.
    pub fn source(&self) -> EncoderSource {
        self.source_or(DEFAULT_ENCODER, "main")
    }

    /// The encoder the user named, else `id` at `revision` (e.g. a bundle's encoder).
    pub fn source_or(&self, id: &str, revision: &str) -> EncoderSource {
        let explicit = self.explicit.is_some();
        EncoderSource {
            id_or_dir: self.explicit.clone().unwrap_or_else(|| id.to_string()),
            revision: self.revision.clone().unwrap_or_else(|| {
                // Bundles trained before pins named a Hub revision recorded `local`.
                if explicit || revision == LOCAL_REVISION {
                    "main".into()
                } else {
                    revision.to_string()
                }
            }),
            offline: self.offline,
            cache_dir: EncoderSource::default_cache_dir(),
        }
    }

    /// How messages name the encoder: as given, else the default.
    pub fn name(&self) -> String {
        self.explicit
            .clone()
            .unwrap_or_else(|| DEFAULT_ENCODER.to_string())
    }
}

/// Where embeddings are cached: `None` embeds everything afresh and stores nothing.
#[derive(Debug, Clone)]
pub struct CacheChoice(pub Option<PathBuf>);

impl CacheChoice {
    /// The default cache file, or the one given.
    pub fn at(path: Option<PathBuf>) -> Self {
        CacheChoice(Some(path.unwrap_or_else(default_cache_path)))
    }

    pub fn off() -> Self {
        CacheChoice(None)
    }

    pub fn open(&self) -> Result<Option<EmbeddingCache>, CacheError> {
        self.0.as_deref().map(EmbeddingCache::open).transpose()
    }
}

/// Which bundle scores articles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleChoice {
    /// `models/default` in the working directory, else the one built into spyglass.
    Default,
    /// A bundle folder made by `spyglass train`.
    At(PathBuf),
    /// No bundle: the zero-shot head from the taxonomy's descriptions.
    ZeroShot,
}

/// Which classifier scores articles.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub bundle: BundleChoice,
    /// `None`: `labels/taxonomy.toml` in the working directory, else the built-in one.
    pub taxonomy: Option<PathBuf>,
    /// Use the bundle even if the encoder's weights differ from those it pins.
    pub allow_encoder_mismatch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Defaults(#[from] crate::model::defaults::DefaultsError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    CachedEncoder(#[from] CachedEncoderError),
    #[error("cannot find encoder `{name}`")]
    FindEncoder {
        name: String,
        #[source]
        source: Box<ResolveError>,
    },
    #[error("cannot load encoder `{name}`")]
    LoadEncoder {
        name: String,
        #[source]
        source: Box<EncoderError>,
    },
    #[error("cannot embed the taxonomy's descriptions for the zero-shot head")]
    ZeroShot(#[source] Box<EncoderError>),
    #[error("encoder `{encoder}` has hidden size {got}, but bundle `{bundle}` was trained on {pinned} ({pinned_size}); pass `--encoder` the bundle's encoder")]
    HiddenSize {
        encoder: String,
        got: usize,
        bundle: String,
        pinned: String,
        pinned_size: usize,
    },
    #[error("{0}; pass the bundle's encoder with `--encoder`, retrain, or accept shifted scores with `--allow-encoder-mismatch`")]
    EncoderMismatch(String),
    #[error("`--topics` names `{topic}`, which is not in taxonomy `{taxonomy}`; known: {known}")]
    UnknownTopic {
        topic: String,
        taxonomy: String,
        known: String,
    },
}

/// What loading noticed that a user should hear, without stopping.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadNotice {
    /// `allow_encoder_mismatch` let a different encoder through.
    EncoderMismatchAllowed(String),
    /// Another copy of the bundle's encoder reproduced its probes within the tolerance.
    EncoderReproducesProbes(String),
    /// Taxonomy topics the bundle lacks, scored by the zero-shot head meanwhile.
    TopicsNotInBundle { topics: Vec<String>, bundle: String },
}

impl std::fmt::Display for LoadNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadNotice::EncoderMismatchAllowed(message) => {
                write!(f, "{message}; scores may be off (--allow-encoder-mismatch)")
            }
            LoadNotice::EncoderReproducesProbes(message) => write!(f, "{message}; using it"),
            LoadNotice::TopicsNotInBundle { topics, bundle } => write!(
                f,
                "topics {} are not in bundle `{bundle}`; scoring them with the uncalibrated zero-shot head until you retrain",
                topics.join(", ")
            ),
        }
    }
}

pub struct LoadedModel {
    pub encoder: CachedEncoder,
    pub classifier: Classifier,
    pub taxonomy: Taxonomy,
    /// `name@version` of the bundle, or `zero-shot`; marked when the encoder is not f32.
    pub model_name: String,
    pub manifest: Option<Manifest>,
    /// The bundle folder loaded (`None` for the zero-shot head).
    pub bundle_dir: Option<PathBuf>,
}

impl LoadedModel {
    /// Which of the given topics to show (all when empty), in classifier order; every id must be a
    /// topic of the taxonomy.
    pub fn topic_filter(&self, topics: &[String]) -> Result<Vec<bool>, LoadError> {
        for topic in topics {
            if !self.classifier.topics.contains(topic) {
                return Err(LoadError::UnknownTopic {
                    topic: topic.clone(),
                    taxonomy: self.taxonomy.path.display().to_string(),
                    known: self.classifier.topics.join(", "),
                });
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

/// Resolves and loads an encoder (no cache). `pinned` settings (a bundle's) apply when the
/// encoder's folder and the built-in list do not say how it embeds.
pub fn load_encoder(
    choice: &EncoderChoice,
    source: EncoderSource,
    windows: WindowOverrides,
    pinned: Option<EncoderSettings>,
) -> Result<Encoder, LoadError> {
    let name = source.id_or_dir.clone();
    let mut files = source.resolve().map_err(|source| LoadError::FindEncoder {
        name: name.clone(),
        source: Box::new(source),
    })?;
    files.pinned_settings = pinned;
    Encoder::load(files, windows, &default_device(), choice.precision).map_err(|source| {
        LoadError::LoadEncoder {
            name,
            source: Box::new(source),
        }
    })
}

/// Loads an encoder and puts the cache in front of it.
pub fn load_cached_encoder(
    choice: &EncoderChoice,
    source: EncoderSource,
    windows: WindowOverrides,
    pinned: Option<EncoderSettings>,
    cache: &CacheChoice,
) -> Result<CachedEncoder, LoadError> {
    let encoder = load_encoder(choice, source, windows, pinned)?;
    Ok(CachedEncoder::new(
        encoder,
        cache.open()?,
        choice.batch_size,
    )?)
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

/// The name reports and labels carry: marked when the encoder is not f32, so approximate figures
/// are never mistaken for f32 ones.
fn with_precision(name: String, precision: Precision) -> String {
    match precision {
        Precision::F32 => name,
        other => format!("{name} ({} encoder)", other.as_str()),
    }
}

/// What the encoder check found.
enum EncoderCheck {
    /// The very weights and settings the bundle was trained with.
    Same,
    /// Other weights that reproduce the bundle's probes: the line says how closely.
    Reproduced(String),
    /// Another encoder, other settings, or a copy that misses the probes: the reason, with the
    /// figure where there is one.
    Different(String),
}

/// Checks that `encoder` computes what the bundle's encoder did: the same weights pass; a copy
/// of the same model (other bytes, same id or an unrecognised folder, same prefix and pooling)
/// passes when it reproduces the probes within the tolerance; anything else is different.
fn encoder_problem(
    encoder: &CachedEncoder,
    got: &EncoderPin,
    manifest: &Manifest,
    bundle_classifier: &Classifier,
) -> Result<EncoderCheck, LoadError> {
    let pin = &manifest.encoder;
    let name = &encoder.encoder.files().id;
    let short = |sha: &str| sha[..12.min(sha.len())].to_string();
    if got.prefix != pin.prefix || got.pooling != pin.pooling {
        return Ok(EncoderCheck::Different(format!(
            "encoder `{name}` embeds with prefix {:?} and {:?} pooling, but the bundle's {} used prefix {:?} and {:?} pooling",
            got.prefix, got.pooling, pin.id, pin.prefix, pin.pooling
        )));
    }
    if got.weights_sha256 == pin.weights_sha256 {
        return Ok(EncoderCheck::Same);
    }
    let recognised = EncoderSettings::known_id(encoder.encoder.files()).is_some()
        || !std::path::Path::new(name).exists();
    if recognised && got.id != pin.id {
        return Ok(EncoderCheck::Different(format!(
            "encoder `{name}` is {}, but the bundle was trained with {}",
            got.id, pin.id
        )));
    }
    let Some(probes) = &manifest.probes else {
        return Ok(EncoderCheck::Different(format!(
            "encoder `{name}` (weights sha256 {}…) is not the copy the bundle was trained with ({} at {}, weights sha256 {}…), and the bundle records no probes to compare them by (retrain it with this spyglass to record them)",
            short(&got.weights_sha256), pin.id, pin.revision, short(&pin.weights_sha256)
        )));
    };
    let measured =
        probes::compare(&encoder.encoder, bundle_classifier, probes).map_err(|source| {
            LoadError::LoadEncoder {
                name: name.clone(),
                source,
            }
        })?;
    let tolerance = probes::TOLERANCE;
    let copy = format!(
        "encoder `{name}` (weights sha256 {}…) is not the copy the bundle was trained with ({} at {}, weights sha256 {}…)",
        short(&got.weights_sha256),
        pin.id,
        pin.revision,
        short(&pin.weights_sha256)
    );
    Ok(if measured.within(tolerance) {
        EncoderCheck::Reproduced(format!(
            "{copy}, but reproduces its probes: {measured} (tolerance: {tolerance})"
        ))
    } else {
        EncoderCheck::Different(format!(
            "{copy} and does not reproduce its probes: {measured}, outside the tolerance ({tolerance})"
        ))
    })
}

/// Loads the taxonomy, the encoder (the bundle's, unless one is named) and the classifier.
pub fn load_model(
    model: &ModelChoice,
    enc: &EncoderChoice,
    cache: &CacheChoice,
    notice: &mut dyn FnMut(LoadNotice),
) -> Result<LoadedModel, LoadError> {
    let taxonomy = Taxonomy::load(&defaults::taxonomy_or(model.taxonomy.as_deref())?)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    let bundle_dir = match &model.bundle {
        BundleChoice::At(dir) => Some(dir.clone()),
        BundleChoice::Default => Some(defaults::model_dir()?.0),
        BundleChoice::ZeroShot => None,
    };
    let Some(bundle_dir) = bundle_dir else {
        let encoder = load_cached_encoder(enc, enc.source(), enc.windows, None, cache)?;
        let head =
            zero_shot_head(&encoder.encoder, &taxonomy, &topics).map_err(LoadError::ZeroShot)?;
        let classifier = Classifier {
            heads: vec![uncalibrated_zero_shot(head, (0..topics.len()).collect())],
            topics,
        };
        return Ok(LoadedModel {
            encoder,
            classifier,
            taxonomy,
            model_name: with_precision("zero-shot".into(), enc.precision),
            manifest: None,
            bundle_dir: None,
        });
    };
    let bundle = Bundle::load(&bundle_dir)?;
    let new_topics = bundle.check_taxonomy(&taxonomy)?;
    let pin = &bundle.manifest.encoder;
    let windows = WindowOverrides {
        max_tokens: enc.windows.max_tokens.or(Some(pin.window.max_tokens)),
        overlap: enc.windows.overlap.or(Some(pin.window.overlap)),
        max_windows: enc.windows.max_windows.or(Some(pin.window.max_windows)),
    };
    let pinned = EncoderSettings {
        prefix: pin.prefix.clone(),
        query_prefix: pin.query_prefix.clone(),
        pooling: pin.pooling,
    };
    let encoder = load_cached_encoder(
        enc,
        enc.source_or(&pin.id, &pin.revision),
        windows,
        Some(pinned),
        cache,
    )?;
    let got = encoder_pin(&encoder);
    if got.hidden_size != pin.hidden_size {
        return Err(LoadError::HiddenSize {
            encoder: encoder.encoder.files().id.clone(),
            got: got.hidden_size,
            bundle: bundle_dir.display().to_string(),
            pinned: pin.id.clone(),
            pinned_size: pin.hidden_size,
        });
    }
    let m = &bundle.manifest;
    let index = |id: &str| {
        topics
            .iter()
            .position(|t| t == id)
            .expect("check_taxonomy verified every bundle topic is in the taxonomy")
    };
    let bundle_head = ScoredHead {
        head: bundle.head.clone(),
        topic_indices: (0..m.topics.len()).collect(),
        calibration: m.topics.iter().map(|t| m.calibration[t]).collect(),
        thresholds: m.topics.iter().map(|t| m.thresholds[t]).collect(),
    };
    let problem = encoder_problem(
        &encoder,
        &got,
        m,
        &Classifier {
            topics: m.topics.clone(),
            heads: vec![bundle_head.clone()],
        },
    )?;
    match problem {
        EncoderCheck::Same => {}
        EncoderCheck::Reproduced(line) => notice(LoadNotice::EncoderReproducesProbes(format!(
            "{line}, bundle `{}`",
            bundle_dir.display()
        ))),
        EncoderCheck::Different(reason) => {
            let message = format!("{reason} (bundle `{}`)", bundle_dir.display());
            if !model.allow_encoder_mismatch {
                return Err(LoadError::EncoderMismatch(message));
            }
            notice(LoadNotice::EncoderMismatchAllowed(message));
        }
    }
    let mut heads = vec![ScoredHead {
        topic_indices: m.topics.iter().map(|t| index(t)).collect(),
        ..bundle_head
    }];
    if !new_topics.is_empty() {
        notice(LoadNotice::TopicsNotInBundle {
            topics: new_topics.clone(),
            bundle: bundle_dir.display().to_string(),
        });
        let head = zero_shot_head(&encoder.encoder, &taxonomy, &new_topics)
            .map_err(LoadError::ZeroShot)?;
        heads.push(uncalibrated_zero_shot(
            head,
            new_topics.iter().map(|t| index(t)).collect(),
        ));
    }
    Ok(LoadedModel {
        encoder,
        classifier: Classifier { topics, heads },
        taxonomy,
        model_name: with_precision(format!("{}@{}", m.name, m.version), enc.precision),
        manifest: Some(bundle.manifest),
        bundle_dir: Some(bundle_dir),
    })
}
