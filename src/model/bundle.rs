//! Model bundles (`models/<name>/`): a manifest that pins the encoder, taxonomy, calibration and
//! thresholds, next to the head weights in safetensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encoder::{Pooling, WindowConfig};
use crate::model::head::{
    EnsembleHead, FeatureSet, Head, LexicalHead, LinearHead, Platt, ZeroShotHead,
};
use crate::model::lexical::{NgramConfig, Vectorizer};
use crate::model::probes::Probes;
use crate::model::taxonomy::{sha256_hex, Taxonomy, Topic};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "head.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub created: String,
    /// `linear` (trained) or `zero-shot`.
    pub head: String,
    /// What the linear head reads.
    pub features: String,
    pub encoder: EncoderPin,
    pub taxonomy: TaxonomyPin,
    /// Topic ids in head order.
    pub topics: Vec<String>,
    pub calibration: BTreeMap<String, Platt>,
    pub thresholds: BTreeMap<String, f32>,
    /// SHA-256 of head.safetensors, checked at load.
    pub weights_sha256: String,
    /// SHA-256 binding the weights to what the manifest says they mean: head kind, topic names
    /// in head order, calibration and thresholds (see [`binding_sha256`]), checked at load, so
    /// an edited manifest (topics reordered, a threshold changed) is refused.
    #[serde(default)]
    pub binding_sha256: String,
    /// Probe articles with the embeddings and scores the encoder gave them at training, so
    /// another copy of the encoder is accepted when it reproduces them (bundles from older
    /// spyglass versions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub dev_metrics: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncoderPin {
    pub id: String,
    pub revision: String,
    pub weights_sha256: String,
    pub hidden_size: usize,
    pub prefix: String,
    pub query_prefix: String,
    pub pooling: Pooling,
    pub window: WindowConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaxonomyPin {
    pub version: u32,
    pub sha256: String,
    /// Topic id -> hash of its id, definition and descriptions.
    pub topics: BTreeMap<String, String>,
}

/// The hash of what defines a topic: id, definition and descriptions.
pub fn topic_hash(topic: &Topic) -> String {
    let canonical = serde_json::json!({
        "id": topic.id, "definition": topic.definition, "descriptions": topic.descriptions
    });
    sha256_hex(canonical.to_string().as_bytes())
}

impl TaxonomyPin {
    pub fn of(taxonomy: &Taxonomy) -> Self {
        Self {
            version: taxonomy.version,
            sha256: taxonomy.hash.clone(),
            topics: taxonomy
                .topics
                .iter()
                .map(|t| (t.id.clone(), topic_hash(t)))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("model bundle `{dir}` has no `{file}`; pass `--model` a folder made by `spyglass train` (e.g. models/default)")]
    Missing { dir: PathBuf, file: String },
    #[error("model bundle `{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("model bundle `{dir}` was trained on taxonomy v{bundle_version}, but topic `{topic}` {problem} in `{taxonomy}` (v{current_version}); retrain with `spyglass train`, or pass `--taxonomy` the taxonomy the bundle was trained on")]
    TaxonomyMismatch {
        dir: PathBuf,
        topic: String,
        problem: &'static str,
        taxonomy: PathBuf,
        bundle_version: u32,
        current_version: u32,
    },
    #[error("cannot write model bundle `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The hash of what gives the weights their meaning: head kind, weights hash, topic order,
/// calibration, thresholds, the encoder width and the probes when there are some.
pub fn binding_sha256(m: &Manifest) -> String {
    let mut canonical = serde_json::json!({
        "head": m.head,
        "weights_sha256": m.weights_sha256,
        "topics": m.topics,
        "calibration": m.calibration,
        "thresholds": m.thresholds,
        "hidden_size": m.encoder.hidden_size,
    });
    if let Some(probes) = &m.probes {
        canonical["probes"] = serde_json::to_value(probes).expect("probes serialise");
    }
    sha256_hex(canonical.to_string().as_bytes())
}

/// Checks a manifest whole before anything relies on it: unique topics, each with a finite
/// calibration and a threshold in [0, 1], and the binding hash that ties them to the weights.
fn check_manifest(m: &Manifest) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for topic in &m.topics {
        if !seen.insert(topic) {
            return Err(format!("topic `{topic}` is listed twice"));
        }
        let platt = m
            .calibration
            .get(topic)
            .ok_or_else(|| format!("topic `{topic}` has no calibration"))?;
        if !(platt.a.is_finite() && platt.b.is_finite()) {
            return Err(format!("topic `{topic}` has a non-finite calibration"));
        }
        let threshold = m
            .thresholds
            .get(topic)
            .ok_or_else(|| format!("topic `{topic}` has no threshold"))?;
        if !(0.0..=1.0).contains(threshold) {
            return Err(format!(
                "topic `{topic}` has threshold {threshold}, outside 0-1"
            ));
        }
    }
    if m.topics.is_empty() {
        return Err("it lists no topics".into());
    }
    if m.encoder.hidden_size == 0 {
        return Err("its encoder hidden_size is 0".into());
    }
    if let Some(probes) = &m.probes {
        for (i, probe) in probes.articles.iter().enumerate() {
            if probe.embedding.len() != m.encoder.hidden_size
                || probe.scores.len() != m.topics.len()
                || !probe
                    .embedding
                    .iter()
                    .chain(&probe.scores)
                    .all(|v| v.is_finite())
            {
                return Err(format!(
                    "probe {} does not hold {} finite embedding values and {} finite scores",
                    i + 1,
                    m.encoder.hidden_size,
                    m.topics.len()
                ));
            }
        }
    }
    if m.binding_sha256.is_empty() {
        return Err("it has no binding_sha256 (made by an older spyglass); retrain it with `spyglass train`".into());
    }
    if binding_sha256(m) != m.binding_sha256 {
        return Err("its topics, calibration or thresholds do not match binding_sha256: the manifest was edited after training; retrain or restore the bundle".into());
    }
    Ok(())
}

/// A loaded bundle: its manifest and the head it describes.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub head: Head,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        for path in [&manifest_path, &weights_path] {
            if !path.is_file() {
                return Err(BundleError::Missing {
                    dir: dir.to_path_buf(),
                    file: path.file_name().unwrap().to_string_lossy().into_owned(),
                });
            }
        }
        let invalid = |path: &Path, reason: String| BundleError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| invalid(&manifest_path, e.to_string()))?;
        let manifest: Manifest = serde_json::from_str(crate::io::input::strip_bom_str(&text))
            .map_err(|e| invalid(&manifest_path, e.to_string()))?;
        check_manifest(&manifest).map_err(|reason| invalid(&manifest_path, reason))?;
        let bytes =
            std::fs::read(&weights_path).map_err(|e| invalid(&weights_path, e.to_string()))?;
        if sha256_hex(&bytes) != manifest.weights_sha256 {
            return Err(invalid(
                &weights_path,
                "does not match the weights_sha256 in manifest.json (an interrupted or mixed save?); retrain or restore the bundle".into(),
            ));
        }
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| invalid(&weights_path, e.to_string()))?;
        let raw = |name: &str, dtype: safetensors::Dtype| -> Result<Vec<u8>, BundleError> {
            let view = tensors
                .tensor(name)
                .map_err(|_| invalid(&weights_path, format!("tensor `{name}` is missing")))?;
            if view.dtype() != dtype {
                return Err(invalid(
                    &weights_path,
                    format!("tensor `{name}` is {:?}, expected {dtype:?}", view.dtype()),
                ));
            }
            Ok(view.data().to_vec())
        };
        let get = |name: &str| -> Result<Vec<f32>, BundleError> {
            let values: Vec<f32> = raw(name, safetensors::Dtype::F32)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(invalid(
                    &weights_path,
                    format!("tensor `{name}` holds NaN or infinite values"),
                ));
            }
            Ok(values)
        };
        let topics = manifest.topics.len();
        let hidden = manifest.encoder.hidden_size;
        let linear = || -> Result<LinearHead, BundleError> {
            let feature_mean = get("feature_mean")?;
            let features = match feature_mean.len() {
                w if w == FeatureSet::Mean.width(hidden) => FeatureSet::Mean,
                w if w == FeatureSet::MeanMax.width(hidden) => FeatureSet::MeanMax,
                w => {
                    return Err(invalid(
                        &weights_path,
                        format!("the head reads {w} features, which fits neither the encoder's width {hidden} nor twice it"),
                    ))
                }
            };
            let head = LinearHead {
                weight: get("weight")?,
                bias: get("bias")?,
                feature_std: get("feature_std")?,
                feature_mean,
                features,
            };
            if head.bias.len() != topics
                || head.weight.len() != topics * head.feature_mean.len()
                || head.feature_std.len() != head.feature_mean.len()
            {
                return Err(invalid(
                    &weights_path,
                    "tensor shapes do not match the manifest's topics".into(),
                ));
            }
            Ok(head)
        };
        let head = match manifest.head.as_str() {
            "linear" => Head::Linear(linear()?),
            "ensemble" => {
                let terms_bytes = raw("lexical_terms", safetensors::Dtype::U8)?;
                let terms_text = String::from_utf8(terms_bytes).map_err(|_| {
                    invalid(&weights_path, "tensor `lexical_terms` is not UTF-8".into())
                })?;
                let terms: Vec<String> = if terms_text.is_empty() {
                    Vec::new()
                } else {
                    terms_text.split('\n').map(str::to_string).collect()
                };
                let range = get("lexical_ngram_range")?;
                let ngrams = match range.as_slice() {
                    [lo, hi] if *lo >= 1.0 && hi >= lo && *hi <= 16.0 => NgramConfig {
                        min_n: *lo as usize,
                        max_n: *hi as usize,
                    },
                    _ => {
                        return Err(invalid(
                            &weights_path,
                            "tensor `lexical_ngram_range` must be [min, max] with 1 <= min <= max <= 16".into(),
                        ))
                    }
                };
                let vectorizer = Vectorizer::new(ngrams, terms, get("lexical_idf")?)
                    .map_err(|e| invalid(&weights_path, e.to_string()))?;
                let lexical = LexicalHead {
                    weight: get("lexical_weight")?,
                    bias: get("lexical_bias")?,
                    vectorizer,
                };
                if lexical.bias.len() != topics
                    || lexical.weight.len() != topics * lexical.vectorizer.len()
                {
                    return Err(invalid(
                        &weights_path,
                        "lexical tensor shapes do not match the manifest's topics and vocabulary"
                            .into(),
                    ));
                }
                Head::Ensemble(EnsembleHead {
                    embedding: linear()?,
                    lexical,
                })
            }
            "zero-shot" => {
                let flat = get("prototypes")?;
                if flat.len() != topics * hidden || hidden == 0 {
                    return Err(invalid(
                        &weights_path,
                        "prototype shape does not match the manifest".into(),
                    ));
                }
                Head::ZeroShot(ZeroShotHead {
                    prototypes: flat.chunks_exact(hidden).map(<[f32]>::to_vec).collect(),
                })
            }
            other => {
                return Err(invalid(
                    &manifest_path,
                    format!("unknown head kind `{other}`"),
                ))
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            head,
        })
    }

    /// Checks the bundle against the current taxonomy: every bundle topic must exist with the
    /// same definition and descriptions. Returns the taxonomy's topics the bundle lacks (new
    /// topics, to be scored by the zero-shot fallback).
    pub fn check_taxonomy(&self, taxonomy: &Taxonomy) -> Result<Vec<String>, BundleError> {
        let current = TaxonomyPin::of(taxonomy);
        for topic in &self.manifest.topics {
            let problem = match (
                current.topics.get(topic),
                self.manifest.taxonomy.topics.get(topic),
            ) {
                (None, _) => Some("is missing"),
                (Some(now), Some(then)) if now != then => {
                    Some("has a changed definition or descriptions")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(BundleError::TaxonomyMismatch {
                    dir: self.dir.clone(),
                    topic: topic.clone(),
                    problem,
                    taxonomy: taxonomy.path.clone(),
                    bundle_version: self.manifest.taxonomy.version,
                    current_version: taxonomy.version,
                });
            }
        }
        Ok(taxonomy
            .ids()
            .into_iter()
            .filter(|id| !self.manifest.topics.iter().any(|t| t == id))
            .map(str::to_string)
            .collect())
    }

    /// Writes the weights, then the manifest (which records the weights' hash), each atomically.
    pub fn save(dir: &Path, manifest: &mut Manifest, head: &Head) -> Result<(), BundleError> {
        let write_err = |path: &Path, reason: String| BundleError::Write {
            path: path.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string()))?;
        let mut tensors = NamedTensors::default();
        let linear = |tensors: &mut NamedTensors, h: &LinearHead| {
            let dim = h.feature_mean.len();
            tensors.f32("weight", &h.weight, vec![h.bias.len(), dim]);
            tensors.f32("bias", &h.bias, vec![h.bias.len()]);
            tensors.f32("feature_mean", &h.feature_mean, vec![dim]);
            tensors.f32("feature_std", &h.feature_std, vec![dim]);
        };
        match head {
            Head::Linear(h) => linear(&mut tensors, h),
            Head::Ensemble(h) => {
                linear(&mut tensors, &h.embedding);
                let lex = &h.lexical;
                let vocab = lex.vectorizer.len();
                tensors.f32("lexical_weight", &lex.weight, vec![lex.bias.len(), vocab]);
                tensors.f32("lexical_bias", &lex.bias, vec![lex.bias.len()]);
                tensors.f32("lexical_idf", &lex.vectorizer.idf, vec![vocab]);
                let ngrams = lex.vectorizer.ngrams;
                tensors.f32(
                    "lexical_ngram_range",
                    &[ngrams.min_n as f32, ngrams.max_n as f32],
                    vec![2],
                );
                // n-grams never hold a newline (text is split on whitespace), so one joins them.
                let joined = lex.vectorizer.terms.join("\n").into_bytes();
                let len = joined.len();
                tensors.0.insert(
                    "lexical_terms".into(),
                    (safetensors::Dtype::U8, vec![len], joined),
                );
            }
            Head::ZeroShot(h) => {
                let flat: Vec<f32> = h.prototypes.iter().flatten().copied().collect();
                let dim = h.prototypes.first().map_or(0, Vec::len);
                tensors.f32("prototypes", &flat, vec![h.prototypes.len(), dim]);
            }
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = tensors
            .serialize()
            .map_err(|e| write_err(&weights_path, e))?;
        manifest.weights_sha256 = sha256_hex(&bytes);
        manifest.binding_sha256 = binding_sha256(manifest);
        crate::io::output::write_atomic(&weights_path, &bytes)
            .map_err(|e| write_err(&weights_path, e.to_string()))?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_string_pretty(manifest).expect("serializable") + "\n";
        crate::io::output::write_atomic(&manifest_path, json.as_bytes())
            .map_err(|e| write_err(&manifest_path, e.to_string()))
    }
}

/// Named tensors to save: dtype, shape and little-endian bytes, kept sorted by name so the
/// safetensors bytes (and so the bundle's checksum) are reproducible.
#[derive(Default)]
struct NamedTensors(BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>);

impl NamedTensors {
    fn f32(&mut self, name: &str, values: &[f32], shape: Vec<usize>) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.0
            .insert(name.into(), (safetensors::Dtype::F32, shape, bytes));
    }

    fn serialize(&self) -> Result<Vec<u8>, String> {
        let views = self
            .0
            .iter()
            .map(|(name, (dtype, shape, bytes))| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        safetensors::tensor::serialize(views, None).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{ArticleEmbedding, Span, WindowEmbedding};

    fn manifest(topics: &[&str]) -> Manifest {
        Manifest {
            name: "t".into(),
            version: "0.1.0".into(),
            created: "2026-01-01T00:00:00Z".into(),
            head: "linear".into(),
            features: "f".into(),
            encoder: EncoderPin {
                id: "e".into(),
                revision: "r".into(),
                weights_sha256: "w".into(),
                hidden_size: 2,
                prefix: "passage: ".into(),
                query_prefix: "query: ".into(),
                pooling: Pooling::Mean,
                window: WindowConfig {
                    max_tokens: 512,
                    overlap: 64,
                    max_windows: 32,
                },
            },
            taxonomy: TaxonomyPin {
                version: 1,
                sha256: "x".into(),
                topics: BTreeMap::new(),
            },
            topics: topics.iter().map(|s| s.to_string()).collect(),
            calibration: topics
                .iter()
                .map(|t| (t.to_string(), Platt { a: 2.0, b: -0.5 }))
                .collect(),
            thresholds: topics.iter().map(|t| (t.to_string(), 0.4)).collect(),
            weights_sha256: String::new(),
            binding_sha256: String::new(),
            probes: None,
            training: serde_json::Value::Null,
            dev_metrics: serde_json::Value::Null,
        }
    }

    #[test]
    fn linear_bundle_round_trips_with_identical_scores() {
        let dir = tempfile::tempdir().unwrap();
        let head = Head::Linear(LinearHead {
            weight: vec![0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8],
            bias: vec![0.05, -0.05],
            feature_mean: vec![0.0, 0.1, 0.2, 0.3],
            feature_std: vec![1.0, 0.5, 2.0, 1.5],
            features: FeatureSet::MeanMax,
        });
        let mut m = manifest(&["a", "b"]);
        m.probes = Some(Probes {
            precision: "f32".into(),
            articles: vec![crate::model::probes::ProbeArticle {
                title: "t".into(),
                text: "x".into(),
                embedding: vec![0.6, 0.8],
                scores: vec![0.25, 0.75],
            }],
        });
        Bundle::save(dir.path(), &mut m, &head).unwrap();
        let loaded = Bundle::load(dir.path()).unwrap();
        assert_eq!(loaded.manifest.probes, m.probes);
        let article = ArticleEmbedding {
            embedding: vec![0.6, 0.8],
            windows: vec![WindowEmbedding {
                span: Span { start: 0, end: 4 },
                tokens: 5,
                embedding: vec![0.6, 0.8],
            }],
            truncated: false,
        };
        let doc = crate::encoder::Document {
            title: None,
            text: "text",
        };
        assert_eq!(
            loaded.head.raw_scores(&article, doc),
            head.raw_scores(&article, doc)
        );
        assert_eq!(loaded.manifest.calibration, m.calibration);
        assert_eq!(loaded.manifest.thresholds["b"], 0.4);

        // A manifest edited after training is refused: topics swapped, or a threshold changed.
        let manifest_path = dir.path().join(MANIFEST_FILE);
        let original = std::fs::read_to_string(&manifest_path).unwrap();
        let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
        edited["topics"] = serde_json::json!(["b", "a"]);
        std::fs::write(&manifest_path, edited.to_string()).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("edited after training"), "{err}");
        let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
        edited["thresholds"]["a"] = serde_json::json!(0.1);
        std::fs::write(&manifest_path, edited.to_string()).unwrap();
        assert!(Bundle::load(dir.path()).is_err());
        let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
        edited["thresholds"].as_object_mut().unwrap().remove("b");
        std::fs::write(&manifest_path, edited.to_string()).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("topic `b` has no threshold"), "{err}");
        // Probes are bound too (a copy of another encoder cannot be waved through by editing
        // them), and checked for shape first.
        let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
        edited["probes"]["articles"][0]["scores"] = serde_json::json!([0.5, 0.5]);
        std::fs::write(&manifest_path, edited.to_string()).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("edited after training"), "{err}");
        edited["probes"]["articles"][0]["scores"] = serde_json::json!([0.5]);
        std::fs::write(&manifest_path, edited.to_string()).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("probe 1 does not hold 2 finite embedding values and 2 finite scores"),
            "{err}"
        );
        std::fs::write(&manifest_path, &original).unwrap();
        Bundle::load(dir.path()).unwrap();

        // A tampered weights file is refused.
        let weights = dir.path().join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&weights, bytes).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("weights_sha256"), "{err}");
    }

    #[test]
    fn non_finite_weights_or_calibration_are_refused_with_their_name() {
        let head = |w0: f32| {
            Head::Linear(LinearHead {
                weight: vec![w0, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8],
                bias: vec![0.05, -0.05],
                feature_mean: vec![0.0, 0.1, 0.2, 0.3],
                feature_std: vec![1.0, 0.5, 2.0, 1.5],
                features: FeatureSet::MeanMax,
            })
        };
        for bad in [f32::NAN, f32::INFINITY] {
            let dir = tempfile::tempdir().unwrap();
            Bundle::save(dir.path(), &mut manifest(&["a", "b"]), &head(bad)).unwrap();
            let err = Bundle::load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("tensor `weight` holds NaN or infinite values"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest(&["a", "b"]);
        m.calibration.get_mut("a").unwrap().a = f32::INFINITY;
        // Whatever JSON makes of infinity, loading refuses it rather than scoring with it.
        if Bundle::save(dir.path(), &mut m, &head(0.1)).is_ok() {
            assert!(Bundle::load(dir.path()).is_err());
        }
    }

    #[test]
    fn ensemble_bundle_round_trips_vocabulary_and_scores() {
        let dir = tempfile::tempdir().unwrap();
        let texts = ["spy ring arrested", "spy case closed", "bake sale today"];
        let vectorizer = Vectorizer::fit(&texts, NgramConfig { min_n: 2, max_n: 4 }, 1, 50);
        let vocab = vectorizer.len();
        let head = Head::Ensemble(EnsembleHead {
            embedding: LinearHead {
                weight: vec![0.1, -0.2, 0.3, 0.4],
                bias: vec![0.05, -0.05],
                feature_mean: vec![0.0, 0.1],
                feature_std: vec![1.0, 0.5],
                features: FeatureSet::Mean,
            },
            lexical: LexicalHead {
                weight: (0..2 * vocab).map(|i| (i as f32 * 0.37).sin()).collect(),
                bias: vec![-0.5, 0.25],
                vectorizer,
            },
        });
        let mut m = manifest(&["a", "b"]);
        m.head = "ensemble".into();
        Bundle::save(dir.path(), &mut m, &head).unwrap();
        let loaded = Bundle::load(dir.path()).unwrap();
        let article = ArticleEmbedding {
            embedding: vec![0.6, 0.8],
            windows: vec![WindowEmbedding {
                span: Span { start: 0, end: 9 },
                tokens: 5,
                embedding: vec![0.6, 0.8],
            }],
            truncated: false,
        };
        let doc = crate::encoder::Document {
            title: Some("Spy"),
            text: "spy ring in town",
        };
        let Head::Ensemble(e) = &loaded.head else {
            panic!("loaded {:?}", loaded.head)
        };
        assert_eq!(e.lexical.vectorizer.terms.len(), vocab);
        assert_eq!(e.embedding.features, FeatureSet::Mean);
        assert_eq!(
            loaded.head.raw_scores(&article, doc),
            head.raw_scores(&article, doc)
        );
        assert_eq!(
            loaded.head.window_scores(&article, doc),
            head.window_scores(&article, doc)
        );
    }

    #[test]
    fn head_width_must_fit_the_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let head = Head::Linear(LinearHead {
            weight: vec![0.1; 6],
            bias: vec![0.0, 0.0],
            feature_mean: vec![0.0; 3],
            feature_std: vec![1.0; 3],
            features: FeatureSet::Mean,
        });
        Bundle::save(dir.path(), &mut manifest(&["a", "b"]), &head).unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("encoder's width 2"), "{err}");
    }

    #[test]
    fn missing_bundle_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("`manifest.json`") && err.contains("spyglass train"),
            "{err}"
        );
    }
}
