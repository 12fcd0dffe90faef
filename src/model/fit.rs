//! The training pipeline: labelled train and dev articles, already embedded, into a head, its
//! per-topic calibration and thresholds, and the manifest of a model bundle. Every front end
//! that trains (today `spyglass train`) calls [`train_bundle`] and saves what it returns.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::encoder::{ArticleEmbedding, Document};
use crate::eval::metrics::{column, macro_f1, Confusion};
use crate::io::cache::{CachedEncoder, CachedEncoderError};
use crate::io::data::LabelledArticle;
use crate::model::bundle::{Manifest, TaxonomyPin};
use crate::model::classify::{zero_shot_head, Classifier, ScoredHead};
use crate::model::head::{article_features, document_text, FeatureSet, Head, Platt};
use crate::model::load::encoder_pin;
use crate::model::probes;
use crate::model::taxonomy::Taxonomy;
use crate::model::train::{
    calibrate, fit_logistic_head, train_linear, Examples, LexicalConfig, LexicalRequest,
    PenaltyChoice, PenaltySearch, TrainConfig, TrainError,
};

/// Which head to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Logistic regression on the embedding, averaged with one on character n-gram TF-IDF.
    Ensemble,
    Logistic,
    /// AdamW with early stopping on dev loss.
    Linear,
    /// Prototypes from the taxonomy's descriptions.
    ZeroShot,
}

/// Where calibration and thresholds are fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibrationSource {
    /// Out-of-fold scores of train and dev pooled (logistic heads).
    CrossValidation,
    /// Scores of the dev split, the head fitted on train alone.
    Dev,
}

/// Everything that decides a training run apart from the data.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub head: HeadKind,
    /// `None`: cross-validation for logistic heads, dev for the others.
    pub calibration: Option<CalibrationSource>,
    pub features: FeatureSet,
    /// Candidate `C` values for the embedding channel, and for the lexical channel.
    pub penalties: Vec<f64>,
    pub lexical_penalties: Vec<f64>,
    pub folds: usize,
    pub max_features: usize,
    pub min_df: usize,
    /// Settings of the `linear` head.
    pub linear: TrainConfig,
    pub name: String,
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("`{0}` takes positive numbers, e.g. `{0} 0.1,1,10`")]
    Penalties(&'static str),
    #[error("`--folds` must be at least 2; got {0}")]
    TooFewFolds(usize),
    #[error(
        "`--folds {folds}` is more than the {articles} articles in `{path}`; pass fewer folds"
    )]
    MoreFoldsThanArticles {
        folds: usize,
        articles: usize,
        path: String,
    },
    #[error("`--max-features` and `--min-df` must be at least 1")]
    Lexical,
    #[error("`--calibration cross-validation` needs `--head logistic` or `--head ensemble`; the `linear` and `zero-shot` heads calibrate on `--dev`")]
    CrossValidationNeedsLogistic,
    #[error("{what} has {embeddings} embeddings for {articles} articles")]
    Misaligned {
        what: &'static str,
        embeddings: usize,
        articles: usize,
    },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("cannot embed the taxonomy's descriptions for the zero-shot head")]
    ZeroShot(#[source] Box<crate::encoder::EncoderError>),
    #[error("cannot embed the encoder probes the bundle records")]
    Probes(#[source] Box<crate::encoder::EncoderError>),
    #[error("cannot read `{path}`")]
    Hash {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl TrainPlan {
    /// Checks every setting before anything is read or embedded; returns where calibration
    /// comes from.
    pub fn check(&self) -> Result<CalibrationSource, FitError> {
        let positive =
            |grid: &[f64]| !grid.is_empty() && grid.iter().all(|c| c.is_finite() && *c > 0.0);
        if !positive(&self.penalties) {
            return Err(FitError::Penalties("--penalties"));
        }
        if !positive(&self.lexical_penalties) {
            return Err(FitError::Penalties("--lexical-penalties"));
        }
        if self.folds < 2 {
            return Err(FitError::TooFewFolds(self.folds));
        }
        if self.max_features == 0 || self.min_df == 0 {
            return Err(FitError::Lexical);
        }
        match (self.head, self.calibration) {
            (HeadKind::Linear | HeadKind::ZeroShot, Some(CalibrationSource::CrossValidation)) => {
                Err(FitError::CrossValidationNeedsLogistic)
            }
            (HeadKind::Linear | HeadKind::ZeroShot, _) => Ok(CalibrationSource::Dev),
            (_, source) => Ok(source.unwrap_or(CalibrationSource::CrossValidation)),
        }
    }
}

impl TrainPlan {
    /// Checks the folds fit the training articles; call it before embedding them.
    pub fn check_folds(&self, train_articles: usize, train_path: &Path) -> Result<(), FitError> {
        if self.folds > train_articles {
            return Err(FitError::MoreFoldsThanArticles {
                folds: self.folds,
                articles: train_articles,
                path: train_path.display().to_string(),
            });
        }
        Ok(())
    }
}

/// One split: where it came from, its articles and their embeddings (same order).
pub struct Split<'a> {
    pub path: &'a Path,
    pub articles: &'a [LabelledArticle],
    pub embeddings: &'a [ArticleEmbedding],
}

/// What training reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum FitEvent {
    /// The penalty cross-validation chose for one channel and topic, with its out-of-fold
    /// average precision.
    Penalty {
        channel: &'static str,
        topic: String,
        c: f64,
        average_precision: f64,
    },
}

impl std::fmt::Display for FitEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitEvent::Penalty {
                channel,
                topic,
                c,
                average_precision,
            } => write!(
                f,
                "{channel} {topic}: C = {c} (cross-validated average precision {average_precision:.3})"
            ),
        }
    }
}

/// A trained head and the manifest to save it with.
pub struct Trained {
    pub head: Head,
    pub manifest: Manifest,
    /// Which scores chose calibration and thresholds (`dev` or `out-of-fold train+dev`).
    pub held_out_name: &'static str,
    /// Macro-F1 on those scores: optimistic, as they chose the thresholds.
    pub held_out_macro_f1: f64,
    pub fit_seconds: f64,
}

/// Embeds articles through the cache, `CHUNK` at a time, calling `progress` with the count done.
pub fn embed_labelled(
    encoder: &mut CachedEncoder,
    articles: &[LabelledArticle],
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ArticleEmbedding>, CachedEncoderError> {
    const CHUNK: usize = 32;
    let mut out = Vec::with_capacity(articles.len());
    for chunk in articles.chunks(CHUNK) {
        let docs: Vec<Document> = chunk.iter().map(LabelledArticle::document).collect();
        out.extend(encoder.embed(&docs)?);
        progress(out.len());
    }
    Ok(out)
}

/// Per-article label vectors in taxonomy order.
pub fn label_matrix(articles: &[LabelledArticle], topics: &[String]) -> Vec<Vec<bool>> {
    articles
        .iter()
        .map(|a| topics.iter().map(|t| a.labels.contains(t)).collect())
        .collect()
}

/// Raw head scores of labelled articles (articles x topics).
fn raw_scores(
    head: &Head,
    embeddings: &[ArticleEmbedding],
    articles: &[LabelledArticle],
) -> Vec<Vec<f32>> {
    embeddings
        .iter()
        .zip(articles)
        .map(|(e, a)| head.raw_scores(e, a.document()))
        .collect()
}

fn penalty_events(report: &serde_json::Value, events: &mut dyn FnMut(FitEvent)) {
    let channels = [
        ("embedding", &report["penalty"]),
        ("lexical (for the ensemble)", &report["lexical"]["penalty"]),
    ];
    for (channel, choices) in channels {
        let Ok(choices) = serde_json::from_value::<Vec<PenaltyChoice>>(choices.clone()) else {
            continue;
        };
        for choice in choices {
            let average_precision = choice
                .cv_average_precision
                .iter()
                .find(|(c, _)| *c == choice.c)
                .map_or(f64::NAN, |(_, ap)| *ap);
            events(FitEvent::Penalty {
                channel,
                topic: choice.topic,
                c: choice.c,
                average_precision,
            });
        }
    }
}

/// Fits the head the plan names, calibrates each topic on held-out scores, picks the F1-best
/// threshold per topic, and writes the manifest (`command` is recorded in it).
pub fn train_bundle(
    plan: &TrainPlan,
    taxonomy: &Taxonomy,
    train: &Split<'_>,
    dev: &Split<'_>,
    encoder: &CachedEncoder,
    command: &str,
    events: &mut dyn FnMut(FitEvent),
) -> Result<Trained, FitError> {
    let calibration_source = plan.check()?;
    for (what, split) in [("`--train`", train), ("`--dev`", dev)] {
        if split.embeddings.len() != split.articles.len() {
            return Err(FitError::Misaligned {
                what,
                embeddings: split.embeddings.len(),
                articles: split.articles.len(),
            });
        }
    }
    plan.check_folds(train.articles.len(), train.path)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    let y_train = label_matrix(train.articles, &topics);
    let y_dev = label_matrix(dev.articles, &topics);
    let search = |grid: &[f64]| PenaltySearch {
        grid: grid.to_vec(),
        folds: plan.folds,
    };

    let fitting = std::time::Instant::now();
    // Logistic heads under cross-validation learn from train and dev together and are
    // calibrated on out-of-fold scores of both; everything else is calibrated on dev.
    let (head, training, held_out_raw, held_out_labels) = match plan.head {
        HeadKind::Ensemble | HeadKind::Logistic => {
            let pooled = calibration_source == CalibrationSource::CrossValidation;
            let mut articles: Vec<&LabelledArticle> = train.articles.iter().collect();
            let mut embeddings: Vec<ArticleEmbedding> = train.embeddings.to_vec();
            let mut labels = y_train.clone();
            if pooled {
                articles.extend(dev.articles.iter());
                embeddings.extend(dev.embeddings.iter().cloned());
                labels.extend(y_dev.iter().cloned());
            }
            let texts: Vec<String> = articles
                .iter()
                .map(|a| document_text(a.document()))
                .collect();
            let lexical_config = LexicalConfig {
                max_features: plan.max_features,
                min_df: plan.min_df,
                ..LexicalConfig::default()
            };
            let lexical_search = search(&plan.lexical_penalties);
            let fitted = fit_logistic_head(
                &embeddings,
                &texts,
                &labels,
                &topics,
                plan.features,
                &search(&plan.penalties),
                (plan.head == HeadKind::Ensemble).then_some(LexicalRequest {
                    config: &lexical_config,
                    search: &lexical_search,
                }),
            )?;
            penalty_events(&fitted.report, events);
            let (raw, held_labels) = if pooled {
                (fitted.out_of_fold, labels)
            } else {
                (
                    raw_scores(&fitted.head, dev.embeddings, dev.articles),
                    y_dev.clone(),
                )
            };
            (fitted.head, fitted.report, raw, held_labels)
        }
        HeadKind::Linear => {
            let x_train: Vec<Vec<f32>> = train.embeddings.iter().map(article_features).collect();
            let x_dev: Vec<Vec<f32>> = dev.embeddings.iter().map(article_features).collect();
            let (head, report) = train_linear(
                &Examples {
                    features: &x_train,
                    labels: &y_train,
                },
                &Examples {
                    features: &x_dev,
                    labels: &y_dev,
                },
                &plan.linear,
            )?;
            let head = Head::Linear(head);
            let raw = raw_scores(&head, dev.embeddings, dev.articles);
            (
                head,
                json!({"config": plan.linear, "report": report}),
                raw,
                y_dev.clone(),
            )
        }
        HeadKind::ZeroShot => {
            let head = Head::ZeroShot(
                zero_shot_head(&encoder.encoder, taxonomy, &topics).map_err(FitError::ZeroShot)?,
            );
            let raw = raw_scores(&head, dev.embeddings, dev.articles);
            (
                head,
                json!({"config": "prototypes from taxonomy descriptions; Platt and thresholds fitted on dev"}),
                raw,
                y_dev.clone(),
            )
        }
    };
    let fit_seconds = fitting.elapsed().as_secs_f64();

    // Calibrate each topic on held-out scores, then pick the F1-best threshold on calibrated
    // probabilities.
    let fitted = calibrate(&held_out_raw, &held_out_labels, topics.len());
    let mut per_topic = BTreeMap::new();
    for (t, topic) in topics.iter().enumerate() {
        let c = Confusion::from(&column(&fitted.predicted, t), &column(&held_out_labels, t));
        per_topic.insert(
            topic.clone(),
            json!({"precision": c.precision(), "recall": c.recall(), "f1": c.f1(), "support": c.support()}),
        );
    }
    let calibration: BTreeMap<String, Platt> = topics
        .iter()
        .cloned()
        .zip(fitted.platt.iter().copied())
        .collect();
    let thresholds: BTreeMap<String, f32> = topics
        .iter()
        .cloned()
        .zip(fitted.thresholds.iter().copied())
        .collect();
    let held_out_macro_f1 = macro_f1(&fitted.predicted, &held_out_labels);
    let held_out_name = match calibration_source {
        CalibrationSource::CrossValidation => "out-of-fold train+dev",
        CalibrationSource::Dev => "dev",
    };

    let hash = |p: &Path| -> Result<String, FitError> {
        crate::encoder::file_sha256(p).map_err(|source| FitError::Hash {
            path: p.display().to_string(),
            source,
        })
    };
    let manifest = Manifest {
        name: plan.name.clone(),
        version: plan.version.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        head: match &head {
            Head::Linear(_) => "linear".into(),
            Head::Ensemble(_) => "ensemble".into(),
            Head::ZeroShot(_) => "zero-shot".into(),
        },
        features: match &head {
            Head::Linear(h) => format!("{}; standardised", h.features.describe()),
            Head::Ensemble(h) => format!(
                "{}; standardised; averaged with character {}-{}-gram TF-IDF ({} n-grams)",
                h.embedding.features.describe(),
                h.lexical.vectorizer.ngrams.min_n,
                h.lexical.vectorizer.ngrams.max_n,
                h.lexical.vectorizer.len()
            ),
            Head::ZeroShot(_) => {
                "max over windows and article of cosine to each topic's description prototype"
                    .into()
            }
        },
        encoder: encoder_pin(encoder),
        taxonomy: TaxonomyPin::of(taxonomy),
        topics: topics.clone(),
        calibration,
        thresholds,
        weights_sha256: String::new(),
        binding_sha256: String::new(),
        probes: Some(
            probes::record(
                &encoder.encoder,
                &Classifier {
                    topics: topics.clone(),
                    heads: vec![ScoredHead {
                        head: head.clone(),
                        topic_indices: (0..topics.len()).collect(),
                        calibration: fitted.platt.clone(),
                        thresholds: fitted.thresholds.clone(),
                    }],
                },
                encoder.encoder.precision(),
            )
            .map_err(FitError::Probes)?,
        ),
        training: json!({
            "train": {"path": train.path, "sha256": hash(train.path)?, "articles": train.articles.len()},
            "dev": {"path": dev.path, "sha256": hash(dev.path)?, "articles": dev.articles.len()},
            "head": training,
            "calibration": held_out_name,
            "command": command,
        }),
        dev_metrics: json!({"scores": held_out_name, "articles": held_out_labels.len(),
            "macro_f1": held_out_macro_f1, "per_topic": per_topic,
            "note": "the same scores chose calibration and thresholds, so these figures are optimistic; see `spyglass eval` on the test split"}),
    };
    Ok(Trained {
        head,
        manifest,
        held_out_name,
        held_out_macro_f1,
        fit_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(head: HeadKind, calibration: Option<CalibrationSource>) -> TrainPlan {
        TrainPlan {
            head,
            calibration,
            features: FeatureSet::MeanMax,
            penalties: vec![0.1, 1.0],
            lexical_penalties: vec![1.0],
            folds: 5,
            max_features: 100,
            min_df: 1,
            linear: TrainConfig::default(),
            name: "m".into(),
            version: "1".into(),
        }
    }

    #[test]
    fn calibration_defaults_to_cross_validation_for_logistic_heads_and_dev_otherwise() {
        assert_eq!(
            plan(HeadKind::Ensemble, None).check().unwrap(),
            CalibrationSource::CrossValidation
        );
        assert_eq!(
            plan(HeadKind::Logistic, Some(CalibrationSource::Dev))
                .check()
                .unwrap(),
            CalibrationSource::Dev
        );
        assert_eq!(
            plan(HeadKind::Linear, None).check().unwrap(),
            CalibrationSource::Dev
        );
        assert!(matches!(
            plan(HeadKind::ZeroShot, Some(CalibrationSource::CrossValidation)).check(),
            Err(FitError::CrossValidationNeedsLogistic)
        ));
    }

    #[test]
    fn bad_settings_are_refused_before_any_work() {
        let mut p = plan(HeadKind::Ensemble, None);
        p.penalties = vec![1.0, f64::NAN];
        assert!(matches!(p.check(), Err(FitError::Penalties("--penalties"))));
        let mut p = plan(HeadKind::Ensemble, None);
        p.lexical_penalties = vec![];
        assert!(matches!(
            p.check(),
            Err(FitError::Penalties("--lexical-penalties"))
        ));
        let mut p = plan(HeadKind::Ensemble, None);
        p.folds = 1;
        assert!(matches!(p.check(), Err(FitError::TooFewFolds(1))));
        let mut p = plan(HeadKind::Ensemble, None);
        p.min_df = 0;
        assert!(matches!(p.check(), Err(FitError::Lexical)));
    }

    #[test]
    fn label_matrix_follows_taxonomy_order() {
        let article = |labels: &[&str]| LabelledArticle {
            id: "x".into(),
            lang: "en".into(),
            title: "t".into(),
            text: "x".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            source: "s".into(),
            note: None,
            tags: vec![],
        };
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            label_matrix(&[article(&["b"]), article(&[])], &topics),
            vec![vec![false, true], vec![false, false]]
        );
    }
}
