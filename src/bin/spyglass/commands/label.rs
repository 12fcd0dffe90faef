//! `spyglass label`: topics, calibrated scores and evidence for every input article, in order.

use anyhow::bail;

use super::model::load_model;
use super::Outcome;
use crate::cli::LabelArgs;
use crate::progress::Progress;
use spyglass::io::parquet::LabelSink;
use spyglass::label::{label_stream, LabelEvent, LabelOptions};

pub fn run(args: &LabelArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.min_score) {
        bail!(
            "`--min-score` must be a probability between 0 and 1, got {}",
            args.min_score
        );
    }
    spyglass::io::output::refuse_input(&args.output, &args.input.input)?;
    let mut model = load_model(&args.model, &args.encoder, &args.cache)?;
    let shown = super::model::topic_filter(&model, &args.topics)?;
    let mut reader = args.input.open()?;
    let mut output = LabelSink::create(&args.output, &model.classifier.topics)?;
    let progress = Progress::new(reader.total_bytes, "labelling");
    let options = LabelOptions {
        shown,
        min_score: args.min_score,
    };
    let summary = label_stream(
        &mut model,
        &mut reader,
        &options,
        &mut |line| output.write(line),
        &mut |event| match event {
            LabelEvent::BadRecord(error) => {
                eprintln!("warning: skipped {}: {}", error.source, error.error)
            }
            LabelEvent::Progress {
                bytes_read,
                labelled,
            } => progress.update(bytes_read, format!("labelled {labelled} articles")),
        },
    )?;
    let (labelled, errors, tally) = (summary.labelled, summary.errors, &summary.tally);
    let per_topic = &summary.per_topic;
    output.finish()?;
    progress.finish();
    let counts: Vec<String> = model
        .classifier
        .topics
        .iter()
        .zip(per_topic)
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
    tally.check_any_good(&args.input.input)?;
    Ok(Outcome::Ok)
}
