//! The labelling pipeline every front end calls (`spyglass label`, the server, the Python
//! binding): articles are embedded in chunks through the cache, scored, given labels and evidence,
//! and turned into records, in input order, with a bad record's error in its place.

use crate::encoder::ArticleEmbedding;
use crate::io::cache::CachedEncoderError;
use crate::io::input::{ArticleReader, InputError, InputItem, Tally};
use crate::io::output::OutputError;
use crate::io::records::{Article, LabelLine, LabelRecord, RecordError, RecordId};
use crate::model::classify::{topic_labels, Classifier};
use crate::model::load::LoadedModel;

/// Longest evidence excerpt, in characters.
pub const EXCERPT_CHARS: usize = 240;

/// Articles embedded together; bounds memory on any input size.
pub const CHUNK_ARTICLES: usize = 64;

/// What to report for each article.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// Which topics to report, in classifier order (all `true` for every topic).
    pub shown: Vec<bool>,
    /// Labels only from this calibrated probability up (thresholds still apply).
    pub min_score: f32,
}

impl LabelOptions {
    /// Every topic, thresholds alone deciding the labels.
    pub fn all(classifier: &Classifier) -> Self {
        LabelOptions {
            shown: vec![true; classifier.topics.len()],
            min_score: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("`min_score` must be a probability between 0 and 1, got {0}")]
    MinScore(f32),
    #[error("{got} topic flags for a classifier of {expected} topics")]
    Shown { got: usize, expected: usize },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot embed the articles")]
    Embed(#[source] CachedEncoderError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Progress of a streamed run, for a front end to show.
#[derive(Debug, Clone, Copy)]
pub enum LabelEvent<'a> {
    /// A record could not be read; its error line is written in its place.
    BadRecord(&'a RecordError),
    /// A chunk is done.
    Progress { bytes_read: u64, labelled: usize },
}

/// What a streamed run did.
#[derive(Debug, Default)]
pub struct LabelSummary {
    pub labelled: usize,
    pub errors: usize,
    /// Articles given each topic, in classifier order.
    pub per_topic: Vec<usize>,
    /// Good and bad records and repeated ids.
    pub tally: Tally,
}

/// The record for one article, from its embedding, as scored by `classifier` (named
/// `model_name` in the record).
pub fn label_record(
    classifier: &Classifier,
    model_name: &str,
    article: &Article,
    embedding: &ArticleEmbedding,
    options: &LabelOptions,
) -> LabelRecord {
    let prediction = classifier.predict(embedding, article.document());
    let labelled = topic_labels(
        &classifier.topics,
        &prediction,
        &article.text,
        Some(&options.shown),
        options.min_score,
        EXCERPT_CHARS,
    );
    LabelRecord {
        id: RecordId::of(article),
        labels: labelled.labels,
        scores: labelled.scores,
        evidence: labelled.evidence,
        lang: article
            .lang
            .clone()
            .unwrap_or_else(|| crate::model::lang::detect(&article.text)),
        model: model_name.to_string(),
        truncated: embedding.truncated,
    }
}

fn check(model: &LoadedModel, options: &LabelOptions) -> Result<(), LabelError> {
    if !(0.0..=1.0).contains(&options.min_score) {
        return Err(LabelError::MinScore(options.min_score));
    }
    if options.shown.len() != model.classifier.topics.len() {
        return Err(LabelError::Shown {
            got: options.shown.len(),
            expected: model.classifier.topics.len(),
        });
    }
    Ok(())
}

/// Labels articles held in memory, in order (embedding `CHUNK_ARTICLES` at a time).
pub fn label_articles(
    model: &mut LoadedModel,
    articles: &[Article],
    options: &LabelOptions,
) -> Result<Vec<LabelRecord>, LabelError> {
    check(model, options)?;
    let mut records = Vec::with_capacity(articles.len());
    for chunk in articles.chunks(CHUNK_ARTICLES) {
        let docs: Vec<_> = chunk.iter().map(Article::document).collect();
        let embedded = model.encoder.embed(&docs).map_err(LabelError::Embed)?;
        for (article, embedding) in chunk.iter().zip(&embedded) {
            records.push(label_record(
                &model.classifier,
                &model.model_name,
                article,
                embedding,
                options,
            ));
        }
    }
    Ok(records)
}

/// Labels a chunk of read items: a record per good article, the error per bad one, in order.
pub fn label_items(
    model: &mut LoadedModel,
    items: &[InputItem],
    options: &LabelOptions,
) -> Result<Vec<LabelLine>, LabelError> {
    check(model, options)?;
    let docs: Vec<_> = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(Article::document)
        .collect();
    let embedded = model.encoder.embed(&docs).map_err(LabelError::Embed)?;
    let mut embedded = embedded.iter();
    Ok(items
        .iter()
        .map(|item| match item {
            Ok(article) => {
                let embedding = embedded.next().expect("one embedding per good article");
                LabelLine::Labelled(label_record(
                    &model.classifier,
                    &model.model_name,
                    article,
                    embedding,
                    options,
                ))
            }
            Err(error) => LabelLine::Error(error.clone()),
        })
        .collect())
}

/// Streams every item of `reader` through the model into `sink`, one line per record in input
/// order; memory stays bounded by `CHUNK_ARTICLES` whatever the input's size.
pub fn label_stream(
    model: &mut LoadedModel,
    reader: &mut ArticleReader,
    options: &LabelOptions,
    sink: &mut dyn FnMut(&LabelLine) -> Result<(), OutputError>,
    events: &mut dyn FnMut(LabelEvent<'_>),
) -> Result<LabelSummary, LabelError> {
    check(model, options)?;
    let mut summary = LabelSummary {
        per_topic: vec![0; model.classifier.topics.len()],
        ..LabelSummary::default()
    };
    loop {
        let mut chunk: Vec<InputItem> = Vec::new();
        while chunk.len() < CHUNK_ARTICLES {
            match reader.next_item()? {
                Some(item) => {
                    summary.tally.count(&item);
                    chunk.push(item);
                }
                None => break,
            }
        }
        if chunk.is_empty() {
            break;
        }
        for line in label_items(model, &chunk, options)? {
            match &line {
                LabelLine::Labelled(record) => {
                    summary.labelled += 1;
                    for label in &record.labels {
                        if let Some(t) = model.classifier.topics.iter().position(|t| t == label) {
                            summary.per_topic[t] += 1;
                        }
                    }
                }
                LabelLine::Error(error) => {
                    summary.errors += 1;
                    events(LabelEvent::BadRecord(error));
                }
            }
            sink(&line)?;
        }
        events(LabelEvent::Progress {
            bytes_read: reader.bytes_read,
            labelled: summary.labelled,
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{Span, WindowEmbedding};
    use crate::model::classify::uncalibrated_zero_shot;
    use crate::model::head::ZeroShotHead;

    /// Two topics whose prototypes are the first two axes: an article along an axis gets that
    /// topic with probability ~1 and the other ~0.
    fn classifier() -> Classifier {
        let head = ZeroShotHead::from_description_embeddings(&[
            vec![vec![1.0, 0.0, 0.0]],
            vec![vec![0.0, 1.0, 0.0]],
        ]);
        Classifier {
            topics: vec!["espionage".into(), "cyberattack".into()],
            heads: vec![uncalibrated_zero_shot(head, vec![0, 1])],
        }
    }

    fn embedded(vector: [f32; 3], truncated: bool) -> ArticleEmbedding {
        ArticleEmbedding {
            embedding: vector.to_vec(),
            windows: vec![WindowEmbedding {
                span: Span { start: 0, end: 12 },
                tokens: 5,
                embedding: vector.to_vec(),
            }],
            truncated,
        }
    }

    fn article(lang: Option<&str>) -> Article {
        Article {
            id: "a1".into(),
            text: "Agents were arrested for spying on the ministry.".into(),
            title: None,
            lang: lang.map(str::to_string),
            url: None,
            extra: Default::default(),
            raw_id: None,
        }
    }

    #[test]
    fn a_record_carries_labels_scores_evidence_and_the_article_fields() {
        let c = classifier();
        let options = LabelOptions::all(&c);
        let record = label_record(
            &c,
            "m@1",
            &article(Some("xx")),
            &embedded([1.0, 0.0, 0.0], true),
            &options,
        );
        assert_eq!(record.id.as_str(), "a1");
        assert_eq!(record.labels, vec!["espionage".to_string()]);
        assert!(record.scores["espionage"] > 0.99, "{:?}", record.scores);
        assert!(record.scores["cyberattack"] < 0.01, "{:?}", record.scores);
        assert_eq!(
            record.evidence["espionage"].span,
            Span { start: 0, end: 12 }
        );
        assert!(!record.evidence.contains_key("cyberattack"));
        assert_eq!(
            (
                record.lang.as_str(),
                record.model.as_str(),
                record.truncated
            ),
            ("xx", "m@1", true)
        );
    }

    #[test]
    fn hidden_topics_and_the_minimum_score_narrow_what_is_reported() {
        let c = classifier();
        let hide_espionage = LabelOptions {
            shown: vec![false, true],
            min_score: 0.0,
        };
        let record = label_record(
            &c,
            "m",
            &article(None),
            &embedded([1.0, 0.0, 0.0], false),
            &hide_espionage,
        );
        assert!(record.labels.is_empty());
        assert_eq!(
            record.scores.keys().collect::<Vec<_>>(),
            vec!["cyberattack"]
        );
        // Cosine 0.95 to the espionage prototype: probability ~0.992, over the 0.5 threshold
        // but under a minimum score of 0.999.
        let near = [0.95, 0.312, 0.0];
        let strict = LabelOptions {
            shown: vec![true, true],
            min_score: 0.999,
        };
        let loose = LabelOptions::all(&c);
        let record = label_record(&c, "m", &article(None), &embedded(near, false), &strict);
        assert!(record.scores["espionage"] > 0.5 && record.scores["espionage"] < 0.999);
        assert!(record.labels.is_empty(), "{:?}", record.labels);
        let record = label_record(&c, "m", &article(None), &embedded(near, false), &loose);
        assert_eq!(record.labels, vec!["espionage".to_string()]);
    }

    #[test]
    fn an_article_without_a_language_gets_the_detected_one() {
        let c = classifier();
        let record = label_record(
            &c,
            "m",
            &article(None),
            &embedded([0.0, 1.0, 0.0], false),
            &LabelOptions::all(&c),
        );
        assert_eq!(record.lang, "en");
        assert_eq!(record.labels, vec!["cyberattack".to_string()]);
    }
}
