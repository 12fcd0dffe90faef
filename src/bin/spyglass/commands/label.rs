//! `spyglass label`: topics, calibrated scores and evidence for every input article, in order.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;

use super::model::load_model;
use super::Outcome;
use crate::cli::LabelArgs;
use crate::progress::Progress;
use spyglass::io::input::{Article, ArticleReader, RecordError};
use spyglass::io::output::Output;
use spyglass::model::classify::{topic_labels, Evidence};

/// Longest evidence excerpt, in characters.
pub const EXCERPT_CHARS: usize = 240;

#[derive(Serialize)]
pub struct LabelRecord<'a> {
    pub id: &'a str,
    pub labels: Vec<String>,
    pub scores: BTreeMap<String, f32>,
    pub evidence: BTreeMap<String, Evidence>,
    pub lang: String,
    pub model: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Articles labelled together; bounds memory on any input size.
const CHUNK_ARTICLES: usize = 64;

pub fn run(args: &LabelArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.min_score) {
        bail!(
            "`--min-score` must be a probability between 0 and 1, got {}",
            args.min_score
        );
    }
    spyglass::io::output::refuse_input(&args.output, &args.input)?;
    let mut model = load_model(&args.model, &args.encoder, &args.cache)?;
    let shown = model.topic_filter(&args.topics)?;
    let mut reader = ArticleReader::open(&args.input)?;
    for skipped in &reader.skipped {
        eprintln!("warning: skipped {skipped}");
    }
    let mut output = Output::create(&args.output)?;
    let progress = Progress::new(reader.total_bytes, "labelling");
    let (mut labelled, mut errors) = (0usize, 0usize);
    let mut tally = spyglass::io::input::Tally::default();
    let mut per_topic = vec![0usize; model.classifier.topics.len()];
    loop {
        let mut chunk: Vec<Result<Article, RecordError>> = Vec::new();
        while chunk.len() < CHUNK_ARTICLES {
            match reader.next_item()? {
                Some(item) => {
                    tally.count(&item);
                    chunk.push(item);
                }
                None => break,
            }
        }
        if chunk.is_empty() {
            break;
        }
        let docs: Vec<_> = chunk
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(Article::document)
            .collect();
        let embedded = model.encoder.embed(&docs)?;
        let mut embedded = embedded.iter();
        for item in &chunk {
            let article = match item {
                Ok(article) => article,
                Err(error) => {
                    errors += 1;
                    eprintln!("warning: skipped {}: {}", error.source, error.error);
                    output.write_json(error)?;
                    continue;
                }
            };
            let embedding = embedded.next().expect("one embedding per article");
            let prediction = model.classifier.predict(embedding, article.document());
            let topics = &model.classifier.topics;
            let labelled_topics = topic_labels(
                topics,
                &prediction,
                &article.text,
                Some(&shown),
                args.min_score,
                EXCERPT_CHARS,
            );
            for label in &labelled_topics.labels {
                if let Some(t) = topics.iter().position(|topic| topic == label) {
                    per_topic[t] += 1;
                }
            }
            let record = LabelRecord {
                id: &article.id,
                labels: labelled_topics.labels,
                scores: labelled_topics.scores,
                evidence: labelled_topics.evidence,
                lang: article
                    .lang
                    .clone()
                    .unwrap_or_else(|| spyglass::model::lang::detect(&article.text)),
                model: &model.model_name,
                truncated: embedding.truncated,
            };
            output.write_json(&record)?;
            labelled += 1;
        }
        progress.update(reader.bytes_read, format!("labelled {labelled} articles"));
    }
    output.finish()?;
    progress.finish();
    let counts: Vec<String> = model
        .classifier
        .topics
        .iter()
        .zip(&per_topic)
        .filter(|(_, &n)| n > 0)
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let (seconds, stats) = (progress.seconds(), model.encoder.stats);
    eprintln!(
        "labelled {labelled} articles ({errors} bad records) with {} in {seconds:.1} s (encoder {:.1} s, everything else {:.1}%); embeddings: {} cached, {} computed; assigned: {}",
        model.model_name,
        stats.encoder_seconds,
        100.0 * (seconds - stats.encoder_seconds).max(0.0) / seconds.max(1e-9),
        stats.hits,
        stats.misses,
        if counts.is_empty() { "none".into() } else { counts.join(", ") }
    );
    super::model::warn_corrupt_cache(&stats);
    if let Some(warning) = tally.duplicate_warning() {
        eprintln!("warning: {warning}");
    }
    tally.check_any_good(&args.input)?;
    Ok(Outcome::Ok)
}
