//! `spyglass train`: embeds labelled articles (through the cache), fits a head, calibrates it and
//! tunes thresholds on the dev split, and writes a model bundle.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::json;

use super::model::load_cached_encoder;
use super::Outcome;
use crate::cli::{CalibrationArg, FeatureArg, HeadKind, TrainArgs};
use crate::progress::Progress;
use spyglass::encoder::ArticleEmbedding;
use spyglass::eval::metrics::{column, macro_f1, Confusion};
use spyglass::io::cache::CachedEncoder;
use spyglass::io::data::{load_file, LabelledArticle};
use spyglass::model::bundle::{Bundle, Manifest, TaxonomyPin};
use spyglass::model::classify::zero_shot_head;
use spyglass::model::head::{article_features, document_text, FeatureSet, Head, Platt};
use spyglass::model::load::encoder_pin;
use spyglass::model::taxonomy::Taxonomy;
use spyglass::model::train::{
    calibrate, fit_logistic_head, train_linear, Examples, LexicalConfig, LexicalRequest,
    PenaltyChoice, PenaltySearch, TrainConfig,
};

/// One line per channel and topic: the penalty cross-validation chose, and its out-of-fold
/// average precision.
fn report_penalties(report: &serde_json::Value) {
    let channels = [
        ("embedding", &report["penalty"]),
        ("lexical (for the ensemble)", &report["lexical"]["penalty"]),
    ];
    for (channel, choices) in channels {
        let Ok(choices) = serde_json::from_value::<Vec<PenaltyChoice>>(choices.clone()) else {
            continue;
        };
        for choice in choices {
            let ap = choice
                .cv_average_precision
                .iter()
                .find(|(c, _)| *c == choice.c)
                .map_or(f64::NAN, |(_, ap)| *ap);
            eprintln!(
                "{channel} {}: C = {} (cross-validated average precision {ap:.3})",
                choice.topic, choice.c
            );
        }
    }
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

/// Reads a labelled file, warning about (and skipping) invalid records.
pub fn read_labelled(
    path: &std::path::Path,
    taxonomy: &Taxonomy,
) -> anyhow::Result<Vec<LabelledArticle>> {
    let loaded = load_file(path, taxonomy)?;
    for finding in &loaded.invalid {
        eprintln!("warning: skipped invalid record {finding}");
    }
    if loaded.articles.is_empty() {
        anyhow::bail!("`{}` has no valid labelled articles", path.display());
    }
    Ok(loaded.articles)
}

/// Embeds articles in chunks through the cache, with a progress bar.
pub fn embed_labelled(
    encoder: &mut CachedEncoder,
    articles: &[LabelledArticle],
    what: &str,
) -> anyhow::Result<Vec<ArticleEmbedding>> {
    let progress = Progress::items(articles.len() as u64, what);
    let mut out = Vec::with_capacity(articles.len());
    for chunk in articles.chunks(32) {
        let docs: Vec<_> = chunk.iter().map(LabelledArticle::document).collect();
        out.extend(encoder.embed(&docs).context("embedding failed")?);
        progress.update(out.len() as u64, format!("{what}: {} articles", out.len()));
    }
    progress.finish();
    Ok(out)
}

/// Per-article label vectors in taxonomy order.
pub fn label_matrix(articles: &[LabelledArticle], topics: &[String]) -> Vec<Vec<bool>> {
    articles
        .iter()
        .map(|a| topics.iter().map(|t| a.labels.contains(t)).collect())
        .collect()
}

pub fn run(args: &TrainArgs) -> anyhow::Result<Outcome> {
    // Every flag is checked before anything is read or embedded.
    let validate = |name: &str, grid: &[f64]| -> anyhow::Result<()> {
        if grid.is_empty() || grid.iter().any(|c| !c.is_finite() || *c <= 0.0) {
            anyhow::bail!("`{name}` takes positive numbers, e.g. `{name} 0.1,1,10`");
        }
        Ok(())
    };
    validate("--penalties", &args.penalties)?;
    validate("--lexical-penalties", &args.lexical_penalties)?;
    if args.folds < 2 {
        anyhow::bail!("`--folds` must be at least 2; got {}", args.folds);
    }
    if args.max_features == 0 || args.min_df == 0 {
        anyhow::bail!("`--max-features` and `--min-df` must be at least 1");
    }
    let features = match args.features {
        FeatureArg::Mean => FeatureSet::Mean,
        FeatureArg::MeanMax => FeatureSet::MeanMax,
    };
    let search = |grid: &[f64]| PenaltySearch {
        grid: grid.to_vec(),
        folds: args.folds,
    };
    let calibration_mode = match (args.head, args.calibration) {
        (HeadKind::Linear | HeadKind::ZeroShot, Some(CalibrationArg::CrossValidation)) => {
            anyhow::bail!("`--calibration cross-validation` needs `--head logistic` or `--head ensemble`; the `linear` and `zero-shot` heads calibrate on `--dev`")
        }
        (HeadKind::Linear | HeadKind::ZeroShot, _) => CalibrationArg::Dev,
        (_, mode) => mode.unwrap_or(CalibrationArg::CrossValidation),
    };
    let taxonomy = Taxonomy::load(&args.taxonomy)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    let train = read_labelled(&args.train, &taxonomy)?;
    let dev = read_labelled(&args.dev, &taxonomy)?;
    if args.folds > train.len() {
        anyhow::bail!(
            "`--folds {}` is more than the {} articles in `{}`; pass fewer folds",
            args.folds,
            train.len(),
            args.train.display()
        );
    }
    let mut encoder = load_cached_encoder(
        &args.encoder,
        args.encoder.choice().source(),
        args.encoder.choice().windows,
        &args.cache,
    )?;
    let started = std::time::Instant::now();
    let train_emb = embed_labelled(&mut encoder, &train, "embedding train")?;
    let dev_emb = embed_labelled(&mut encoder, &dev, "embedding dev")?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let y_train = label_matrix(&train, &topics);
    let y_dev = label_matrix(&dev, &topics);

    let fitting = std::time::Instant::now();
    // Logistic heads under cross-validation learn from train and dev together and are
    // calibrated on out-of-fold scores of both; everything else is calibrated on dev.
    let (head, training, held_out_raw, held_out_labels) = match args.head {
        HeadKind::Ensemble | HeadKind::Logistic => {
            let pooled = calibration_mode == CalibrationArg::CrossValidation;
            let mut articles: Vec<&LabelledArticle> = train.iter().collect();
            let mut embeddings: Vec<ArticleEmbedding> = train_emb.clone();
            let mut labels = y_train.clone();
            if pooled {
                articles.extend(dev.iter());
                embeddings.extend(dev_emb.iter().cloned());
                labels.extend(y_dev.iter().cloned());
            }
            let texts: Vec<String> = articles
                .iter()
                .map(|a| document_text(a.document()))
                .collect();
            let lexical_config = LexicalConfig {
                max_features: args.max_features,
                min_df: args.min_df,
                ..LexicalConfig::default()
            };
            let lexical_search = search(&args.lexical_penalties);
            let fitted = fit_logistic_head(
                &embeddings,
                &texts,
                &labels,
                &topics,
                features,
                &search(&args.penalties),
                (args.head == HeadKind::Ensemble).then_some(LexicalRequest {
                    config: &lexical_config,
                    search: &lexical_search,
                }),
            )?;
            report_penalties(&fitted.report);
            let (raw, held_labels) = if pooled {
                (fitted.out_of_fold, labels)
            } else {
                (raw_scores(&fitted.head, &dev_emb, &dev), y_dev.clone())
            };
            (fitted.head, fitted.report, raw, held_labels)
        }
        HeadKind::Linear => {
            let config = TrainConfig {
                learning_rate: args.learning_rate,
                weight_decay: args.weight_decay,
                max_epochs: args.max_epochs,
                patience: args.patience,
                ..TrainConfig::default()
            };
            let x_train: Vec<Vec<f32>> = train_emb.iter().map(article_features).collect();
            let x_dev: Vec<Vec<f32>> = dev_emb.iter().map(article_features).collect();
            let (head, report) = train_linear(
                &Examples {
                    features: &x_train,
                    labels: &y_train,
                },
                &Examples {
                    features: &x_dev,
                    labels: &y_dev,
                },
                &config,
            )?;
            let head = Head::Linear(head);
            let raw = raw_scores(&head, &dev_emb, &dev);
            (
                head,
                json!({"config": config, "report": report}),
                raw,
                y_dev.clone(),
            )
        }
        HeadKind::ZeroShot => {
            let head = Head::ZeroShot(zero_shot_head(&encoder.encoder, &taxonomy, &topics)?);
            let raw = raw_scores(&head, &dev_emb, &dev);
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
    let held_out_macro = macro_f1(&fitted.predicted, &held_out_labels);
    let held_out_name = match calibration_mode {
        CalibrationArg::CrossValidation => "out-of-fold train+dev",
        CalibrationArg::Dev => "dev",
    };

    let hash = |p: &std::path::Path| -> anyhow::Result<String> {
        spyglass::encoder::file_sha256(p).with_context(|| format!("cannot read `{}`", p.display()))
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.output
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
    });
    let mut manifest = Manifest {
        name,
        version: args.version.clone(),
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
        encoder: encoder_pin(&encoder),
        taxonomy: TaxonomyPin::of(&taxonomy),
        topics: topics.clone(),
        calibration,
        thresholds,
        weights_sha256: String::new(),
        binding_sha256: String::new(),
        training: json!({
            "train": {"path": args.train, "sha256": hash(&args.train)?, "articles": train.len()},
            "dev": {"path": args.dev, "sha256": hash(&args.dev)?, "articles": dev.len()},
            "head": training,
            "calibration": held_out_name,
            "command": std::env::args().collect::<Vec<_>>().join(" "),
        }),
        dev_metrics: json!({"scores": held_out_name, "articles": held_out_labels.len(),
            "macro_f1": held_out_macro, "per_topic": per_topic,
            "note": "the same scores chose calibration and thresholds, so these figures are optimistic; see `spyglass eval` on the test split"}),
    };
    Bundle::save(&args.output, &mut manifest, &head)?;
    eprintln!(
        "trained {} head on {} train + {} dev articles: {held_out_name} macro-F1 {:.3} (optimistic: these scores chose the thresholds); embedding {:.1} s ({} cached, {} embedded), fitting {:.1} s; wrote `{}`",
        manifest.head,
        train.len(),
        dev.len(),
        held_out_macro,
        embed_seconds,
        encoder.stats.hits,
        encoder.stats.misses,
        fit_seconds,
        args.output.display()
    );
    super::model::warn_corrupt_cache(&encoder.stats);
    Ok(Outcome::Ok)
}
