//! `spyglass embed`: streams articles through the encoder and writes their embeddings as JSONL.

use anyhow::Context;

use crate::cli::EmbedArgs;
use crate::progress::Progress;
use spyglass::encoder::TokenizedArticle;
use spyglass::io::input::RecordError;
use spyglass::io::output::Output;
use spyglass::io::records::{EmbeddedRecord, RecordId, WindowRecord};

use super::{load_encoder, Outcome};

/// Articles embedded together; bounds memory on any input size.
const CHUNK_ARTICLES: usize = 128;

pub fn run(args: &EmbedArgs) -> anyhow::Result<Outcome> {
    spyglass::io::output::refuse_input(&args.output, &args.input.input)?;
    let encoder = load_encoder(&args.encoder)?;
    let mut reader = args.input.open()?;
    let mut output = Output::create(&args.output)?;
    let progress = Progress::new(reader.total_bytes, "embedding");
    let (mut articles, mut errors, mut windows, mut tokens) = (0usize, 0usize, 0usize, 0usize);
    let mut tally = spyglass::io::input::Tally::default();
    loop {
        // Read a chunk; keep record errors in their place so output order matches input order.
        let mut chunk: Vec<Result<(RecordId, TokenizedArticle), RecordError>> = Vec::new();
        while chunk.len() < CHUNK_ARTICLES {
            let Some(item) = reader.next_item()? else {
                break;
            };
            chunk.push(item.and_then(|article| {
                encoder
                    .tokenize(article.document())
                    .map(|t| (RecordId::of(&article), t))
                    .map_err(|e| RecordError {
                        id: Some(article.id.clone()),
                        source: args.input.input.clone(),
                        line: None,
                        error: e.to_string(),
                    })
            }));
        }
        for item in &chunk {
            tally.count_id(item.as_ref().map(|(id, _)| id.as_str()));
        }
        if chunk.is_empty() {
            break;
        }
        let tokenized: Vec<TokenizedArticle> = chunk
            .iter()
            .filter_map(|c| c.as_ref().ok().map(|(_, t)| t.clone()))
            .collect();
        let embedded = encoder
            .embed_tokenized(&tokenized, args.encoder.batch_size)
            .context("embedding failed")?;
        let mut embedded = embedded.iter();
        for item in &chunk {
            match item {
                Ok((id, _)) => {
                    let article = embedded.next().expect("one embedding per article");
                    articles += 1;
                    windows += article.windows.len();
                    tokens += article.windows.iter().map(|w| w.tokens).sum::<usize>();
                    output.write_json(&EmbeddedRecord {
                        id: id.clone(),
                        embedding: &article.embedding,
                        windows: article
                            .windows
                            .iter()
                            .map(|w| WindowRecord {
                                span: w.span,
                                tokens: w.tokens,
                                embedding: (!args.no_window_embeddings)
                                    .then_some(w.embedding.as_slice()),
                            })
                            .collect(),
                        truncated: article.truncated,
                    })?;
                }
                Err(error) => {
                    errors += 1;
                    eprintln!("warning: skipped {}: {}", error.source, error.error);
                    output.write_json(error)?;
                }
            }
        }
        progress.update(
            reader.bytes_read,
            format!("embedded {articles} articles ({windows} windows)"),
        );
    }
    output.finish()?;
    progress.finish();
    let seconds = progress.seconds();
    eprintln!(
        "embedded {articles} articles ({errors} bad records), {windows} windows, {tokens} tokens in {seconds:.1} s: {:.2} articles/s, {:.0} tokens/s ({} encoder)",
        articles as f64 / seconds.max(1e-9),
        tokens as f64 / seconds.max(1e-9),
        encoder.precision().as_str(),
    );
    if let Some(warning) = tally.duplicate_warning() {
        eprintln!("warning: {warning}");
    }
    tally.check_any_good(&args.input.input)?;
    Ok(Outcome::Ok)
}
