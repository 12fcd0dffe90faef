//! `spyglass train`: embeds labelled articles (through the cache), fits a head, calibrates it and
//! tunes thresholds on the dev split, and writes a model bundle.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::json;

use super::model::{encoder_pin, load_cached_encoder};
use super::Outcome;
use crate::bundle::{Bundle, Manifest, TaxonomyPin};
use crate::cache::CachedEncoder;
use crate::classify::zero_shot_head;
use crate::cli::{HeadKind, TrainArgs};
use crate::data::{load_file, LabelledArticle};
use crate::encoder::ArticleEmbedding;
use crate::head::{article_features, best_f1_threshold, Head, Platt};
use crate::metrics::{column, macro_f1, Confusion};
use crate::progress::Progress;
use crate::taxonomy::Taxonomy;
use crate::train::{train_linear, Examples, TrainConfig};

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
    let progress = Progress::new(Some(articles.len() as u64), what);
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
    let taxonomy = Taxonomy::load(&args.taxonomy)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    let train = read_labelled(&args.train, &taxonomy)?;
    let dev = read_labelled(&args.dev, &taxonomy)?;
    let mut encoder = load_cached_encoder(
        &args.encoder,
        args.encoder.source(),
        args.encoder.windows(),
        &args.cache,
    )?;
    let started = std::time::Instant::now();
    let train_emb = embed_labelled(&mut encoder, &train, "embedding train")?;
    let dev_emb = embed_labelled(&mut encoder, &dev, "embedding dev")?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let y_train = label_matrix(&train, &topics);
    let y_dev = label_matrix(&dev, &topics);

    let config = TrainConfig {
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        max_epochs: args.max_epochs,
        patience: args.patience,
        ..TrainConfig::default()
    };
    let (head, training) = match args.head {
        HeadKind::Linear => {
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
            (
                Head::Linear(head),
                json!({"config": config, "report": report}),
            )
        }
        HeadKind::ZeroShot => (
            Head::ZeroShot(zero_shot_head(&encoder.encoder, &taxonomy, &topics)?),
            json!({"config": "prototypes from taxonomy descriptions; Platt and thresholds fitted on dev"}),
        ),
    };

    // Calibrate each topic on dev, then pick the F1-best threshold on calibrated probabilities.
    let dev_raw: Vec<Vec<f32>> = dev_emb.iter().map(|a| head.raw_scores(a)).collect();
    let mut calibration = BTreeMap::new();
    let mut thresholds = BTreeMap::new();
    let mut predicted = vec![vec![false; topics.len()]; dev.len()];
    let mut per_topic = BTreeMap::new();
    for (t, topic) in topics.iter().enumerate() {
        let raw: Vec<f32> = dev_raw.iter().map(|r| r[t]).collect();
        let actual = column(&y_dev, t);
        let platt = Platt::fit(&raw, &actual);
        let probs: Vec<f32> = raw.iter().map(|&s| platt.prob(s)).collect();
        let (threshold, _) = best_f1_threshold(&probs, &actual);
        for (row, p) in predicted.iter_mut().zip(&probs) {
            row[t] = *p >= threshold;
        }
        let c = Confusion::from(&column(&predicted, t), &actual);
        per_topic.insert(
            topic.clone(),
            json!({"precision": c.precision(), "recall": c.recall(), "f1": c.f1(), "support": c.support()}),
        );
        calibration.insert(topic.clone(), platt);
        thresholds.insert(topic.clone(), threshold);
    }
    let dev_macro = macro_f1(&predicted, &y_dev);

    let hash = |p: &std::path::Path| -> anyhow::Result<String> {
        crate::encoder::file_sha256(p).with_context(|| format!("cannot read `{}`", p.display()))
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
        head: match args.head {
            HeadKind::Linear => "linear".into(),
            HeadKind::ZeroShot => "zero-shot".into(),
        },
        features: match args.head {
            HeadKind::Linear => "article embedding (mean of windows) ++ per-dimension max over window embeddings; standardised".into(),
            HeadKind::ZeroShot => "max over windows and article of cosine to each topic's description prototype".into(),
        },
        encoder: encoder_pin(&encoder),
        taxonomy: TaxonomyPin::of(&taxonomy),
        topics: topics.clone(),
        calibration,
        thresholds,
        weights_sha256: String::new(),
        training: json!({
            "train": {"path": args.train, "sha256": hash(&args.train)?, "articles": train.len()},
            "dev": {"path": args.dev, "sha256": hash(&args.dev)?, "articles": dev.len()},
            "head": training,
            "command": std::env::args().collect::<Vec<_>>().join(" "),
        }),
        dev_metrics: json!({"macro_f1": dev_macro, "per_topic": per_topic,
            "note": "dev also chose the early-stopping epoch, calibration and thresholds, so these figures are optimistic; see `spyglass eval` on the test split"}),
    };
    Bundle::save(&args.output, &mut manifest, &head)?;
    eprintln!(
        "trained {} head on {} articles ({} dev): dev macro-F1 {:.3} (optimistic: dev tuned thresholds); embedding {:.1} s ({} cached, {} embedded); wrote `{}`",
        manifest.head,
        train.len(),
        dev.len(),
        dev_macro,
        embed_seconds,
        encoder.stats.hits,
        encoder.stats.misses,
        args.output.display()
    );
    Ok(Outcome::Ok)
}
