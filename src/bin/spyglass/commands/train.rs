//! `spyglass train`: embeds labelled articles (through the cache), fits a head, calibrates it and
//! tunes thresholds on the dev split, and writes a model bundle.

use anyhow::Context;

use super::model::load_cached_encoder;
use super::Outcome;
use crate::cli::{CalibrationArg, FeatureArg, HeadKind, TrainArgs};
use crate::progress::Progress;
use spyglass::encoder::ArticleEmbedding;
use spyglass::io::cache::CachedEncoder;
use spyglass::io::data::{load_file, LabelledArticle};
use spyglass::model::bundle::Bundle;
use spyglass::model::fit::{self, CalibrationSource, Split, TrainPlan};
use spyglass::model::head::FeatureSet;
use spyglass::model::taxonomy::Taxonomy;
use spyglass::model::train::TrainConfig;

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
    let out = fit::embed_labelled(encoder, articles, &mut |done| {
        progress.update(done as u64, format!("{what}: {done} articles"))
    })
    .context("embedding failed")?;
    progress.finish();
    Ok(out)
}

/// The library's training plan from the flags.
fn plan(args: &TrainArgs) -> TrainPlan {
    TrainPlan {
        head: match args.head {
            HeadKind::Ensemble => fit::HeadKind::Ensemble,
            HeadKind::Logistic => fit::HeadKind::Logistic,
            HeadKind::Linear => fit::HeadKind::Linear,
            HeadKind::ZeroShot => fit::HeadKind::ZeroShot,
        },
        calibration: args.calibration.map(|c| match c {
            CalibrationArg::CrossValidation => CalibrationSource::CrossValidation,
            CalibrationArg::Dev => CalibrationSource::Dev,
        }),
        features: match args.features {
            FeatureArg::Mean => FeatureSet::Mean,
            FeatureArg::MeanMax => FeatureSet::MeanMax,
        },
        penalties: args.penalties.clone(),
        lexical_penalties: args.lexical_penalties.clone(),
        folds: args.folds,
        max_features: args.max_features,
        min_df: args.min_df,
        linear: TrainConfig {
            learning_rate: args.learning_rate,
            weight_decay: args.weight_decay,
            max_epochs: args.max_epochs,
            patience: args.patience,
            ..TrainConfig::default()
        },
        name: args.name.clone().unwrap_or_else(|| {
            args.output
                .file_name()
                .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
        }),
        version: args.version.clone(),
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<Outcome> {
    // Every flag is checked before anything is read or embedded.
    let plan = plan(args);
    plan.check()?;
    let taxonomy = Taxonomy::load(&spyglass::model::defaults::taxonomy_or(
        args.taxonomy.as_deref(),
    )?)?;
    let train = read_labelled(&args.train, &taxonomy)?;
    let dev = read_labelled(&args.dev, &taxonomy)?;
    plan.check_folds(train.len(), &args.train)?;
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
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut trained = fit::train_bundle(
        &plan,
        &taxonomy,
        &Split {
            path: &args.train,
            articles: &train,
            embeddings: &train_emb,
        },
        &Split {
            path: &args.dev,
            articles: &dev,
            embeddings: &dev_emb,
        },
        &encoder,
        &command,
        &mut |event| eprintln!("{event}"),
    )?;
    Bundle::save(&args.output, &mut trained.manifest, &trained.head)?;
    eprintln!(
        "trained {} head on {} train + {} dev articles: {} macro-F1 {:.3} (optimistic: these scores chose the thresholds); embedding {:.1} s ({} cached, {} embedded), fitting {:.1} s; wrote `{}`",
        trained.manifest.head,
        train.len(),
        dev.len(),
        trained.held_out_name,
        trained.held_out_macro_f1,
        embed_seconds,
        encoder.stats.hits,
        encoder.stats.misses,
        trained.fit_seconds,
        args.output.display()
    );
    super::model::warn_corrupt_cache(&encoder.stats);
    Ok(Outcome::Ok)
}
