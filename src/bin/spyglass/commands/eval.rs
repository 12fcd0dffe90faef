//! `spyglass eval`: scores a model bundle, the zero-shot head or a predictions file against hand
//! labels; prints a summary, writes JSON and HTML/Markdown reports, compares reports, gates CI.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};

use super::model::load_model;
use super::train::embed_labelled;
use super::Outcome;
use crate::cli::EvalArgs;
use spyglass::encoder::ArticleTokenizer;
use spyglass::eval::evaluate::{self, ArticleResult, EvalReport, Provenance, SCHEMA};
use spyglass::eval::gates::{parse_gates, Gate};
use spyglass::io::data::LabelledArticle;
use spyglass::io::output::Output;
use spyglass::model::taxonomy::{sha256_hex, Taxonomy};

pub fn run(args: &EvalArgs) -> anyhow::Result<Outcome> {
    if !args.compare.is_empty() {
        return compare(args);
    }
    let gates = parse_gates(&args.fail_under)?;
    if !(1..=1_000_000).contains(&args.bootstrap) {
        bail!(
            "`--bootstrap {}`: pass a number of resamples from 1 to 1000000 (1000 is usual)",
            args.bootstrap
        );
    }
    let taxonomy = Taxonomy::load(&spyglass::model::defaults::taxonomy_or(
        args.model.taxonomy.as_deref(),
    )?)?;
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    spyglass::eval::gates::check_metrics(&gates, &topics)?;
    let mut articles: Vec<LabelledArticle> = Vec::new();
    let mut data = Vec::new();
    for path in &args.data {
        // Scores against gold with holes in it would be wrong, not just smaller: refuse.
        let loaded = spyglass::io::data::load_file(path, &taxonomy)?;
        if !loaded.invalid.is_empty() {
            let shown: Vec<String> = loaded
                .invalid
                .iter()
                .take(5)
                .map(|f| f.to_string())
                .collect();
            bail!(
                "{} invalid gold records in `{}`, e.g.\n  {}\nfix them (`spyglass data check` lists them all) before scoring",
                loaded.invalid.len(),
                path.display(),
                shown.join("\n  ")
            );
        }
        if loaded.articles.is_empty() {
            bail!("`{}` has no labelled articles", path.display());
        }
        let file_articles = loaded.articles;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        data.push(Provenance {
            path: path.display().to_string(),
            sha256: sha256_hex(&bytes),
            articles: file_articles.len(),
        });
        articles.extend(file_articles);
    }
    let mut seen = HashSet::new();
    for a in &articles {
        if !seen.insert(a.id.as_str()) {
            bail!("article id `{}` occurs more than once in the `--data` files; ids must be unique (run `spyglass data check`)", a.id);
        }
    }

    let (results, model, model_sha256, thresholds) = match &args.predictions {
        Some(path) => from_predictions(args, path, &topics, &articles)?,
        None => from_model(args, &articles)?,
    };
    let scoring = evaluate::score(
        &topics,
        &results,
        thresholds.as_deref(),
        args.bootstrap,
        args.seed,
    );
    let report = EvalReport {
        schema: SCHEMA.into(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        model,
        model_sha256,
        data,
        taxonomy_version: taxonomy.version,
        seed: args.seed,
        bootstrap_samples: args.bootstrap,
        topics,
        overall: scoring.overall,
        per_topic: scoring.per_topic,
        slices: scoring.slices,
        errors: scoring.errors,
        articles: results,
    };
    // With `--json -` stdout carries the JSON alone; the summary and gate lines go to stderr.
    let json_on_stdout = args.json.as_deref() == Some("-");
    let summary = spyglass::eval::report::terminal_summary(&report, args.show_errors);
    if json_on_stdout {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    if let Some(path) = &args.json {
        let mut out = Output::create(path)?;
        out.write_str(&(serde_json::to_string_pretty(&report)? + "\n"))?;
        out.finish()?;
    }
    if let Some(dir) = &args.report {
        spyglass::eval::report::write_report(dir, &report)
            .with_context(|| format!("cannot write report into `{}`", dir.display()))?;
        eprintln!(
            "wrote {} and {}",
            dir.join("index.html").display(),
            dir.join("summary.md").display()
        );
    }
    check_gates(&gates, &report, json_on_stdout)
}

type Scored = (Vec<ArticleResult>, String, String, Option<Vec<f32>>);

fn from_model(args: &EvalArgs, articles: &[LabelledArticle]) -> anyhow::Result<Scored> {
    let mut model = load_model(&args.model, &args.encoder, &args.cache)?;
    let embeddings = embed_labelled(&mut model.encoder, articles, "embedding")?;
    let (results, thresholds) = evaluate::score_labelled(
        &model.classifier,
        Some(model.encoder.encoder.tokenizer()),
        articles,
        &embeddings,
    );
    let model_sha256 = match &model.bundle_dir {
        Some(dir) => {
            let manifest = dir.join(spyglass::model::bundle::MANIFEST_FILE);
            sha256_hex(
                &std::fs::read(&manifest)
                    .with_context(|| format!("cannot read `{}`", manifest.display()))?,
            )
        }
        None => sha256_hex(format!("zero-shot:{}", model.taxonomy.hash).as_bytes()),
    };
    eprintln!(
        "scored {} articles with {}; embeddings: {} cached, {} computed",
        articles.len(),
        model.model_name,
        model.encoder.stats.hits,
        model.encoder.stats.misses
    );
    super::model::warn_corrupt_cache(&model.encoder.stats);
    Ok((results, model.model_name, model_sha256, thresholds))
}

fn from_predictions(
    args: &EvalArgs,
    path: &Path,
    topics: &[String],
    articles: &[LabelledArticle],
) -> anyhow::Result<Scored> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read predictions `{}`; pass an existing JSONL file",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|e| {
        anyhow::anyhow!("predictions `{}` are not valid UTF-8 ({e})", path.display())
    })?;
    let by_id = spyglass::eval::predictions::parse(&text, &path.display().to_string(), topics)?;
    let missing: Vec<&str> = articles
        .iter()
        .filter(|a| !by_id.contains_key(&a.id))
        .map(|a| a.id.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} labelled articles have no prediction in `{}` (e.g. {}); predict every article of `--data`",
            missing.len(),
            path.display(),
            missing.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        );
    }
    let tokenizer = args
        .encoder
        .choice()
        .source()
        .resolve()
        .ok()
        .and_then(|f| ArticleTokenizer::for_files(&f, args.encoder.choice().windows).ok());
    if tokenizer.is_none() {
        eprintln!(
            "warning: no tokenizer for the length slices (pass `--encoder`); lengths are `unknown`"
        );
    }
    let results = evaluate::results_from_predictions(&by_id, articles, topics, tokenizer.as_ref());
    let extra = by_id.len().saturating_sub(articles.len());
    if extra > 0 {
        eprintln!("note: {extra} predictions have no labelled article and were ignored");
    }
    Ok((
        results,
        path.display().to_string(),
        sha256_hex(&bytes),
        None,
    ))
}

/// Prints each gate's result (to stderr when stdout carries JSON); exit 1 if any failed.
fn check_gates(gates: &[Gate], report: &EvalReport, to_stderr: bool) -> anyhow::Result<Outcome> {
    let results = spyglass::eval::gates::check_gates(gates, report)?;
    for result in &results {
        if to_stderr {
            eprintln!("{result}");
        } else {
            println!("{result}");
        }
    }
    Ok(if results.iter().all(|r| r.passed) {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

fn compare(args: &EvalArgs) -> anyhow::Result<Outcome> {
    let load = |path: &Path| -> anyhow::Result<EvalReport> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read report `{}`", path.display()))?;
        let report: EvalReport = serde_json::from_str(spyglass::io::input::strip_bom_str(&text))
            .with_context(|| {
                format!(
                    "`{}` is not a `spyglass eval --json` report ({SCHEMA})",
                    path.display()
                )
            })?;
        if report.schema != SCHEMA {
            bail!(
                "`{}` has schema `{}`, expected `{SCHEMA}`",
                path.display(),
                report.schema
            );
        }
        report.check_shapes().map_err(|problem| {
            anyhow::anyhow!(
                "report `{}` is damaged: {problem}; write it again with `spyglass eval --json`",
                path.display()
            )
        })?;
        Ok(report)
    };
    let (a, b) = (load(&args.compare[0])?, load(&args.compare[1])?);
    let (rows, paired) =
        evaluate::compare(&a, &b, args.bootstrap, args.seed).map_err(|e| anyhow::anyhow!(e))?;
    let table = spyglass::eval::report::comparison_table(&a.model, &b.model, paired, &rows);
    // With `--json -`, stdout carries the JSON alone.
    if args.json.as_deref() == Some("-") {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &args.json {
        let mut out = Output::create(path)?;
        let value = serde_json::json!({"a": a.model, "b": b.model, "paired_articles": paired,
            "bootstrap_samples": args.bootstrap, "seed": args.seed, "comparisons": rows});
        out.write_str(&(serde_json::to_string_pretty(&value)? + "\n"))?;
        out.finish()?;
    }
    Ok(Outcome::Ok)
}
