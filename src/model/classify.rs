//! Topic assignment: a head's raw scores, calibrated per topic, compared with per-topic
//! thresholds, with the window that drove each assigned topic as evidence.

use crate::encoder::{ArticleEmbedding, Document, Encoder, EncoderError, Span};
pub use crate::io::records::Evidence;
use crate::model::head::{Head, Platt, ZeroShotHead, ZERO_SHOT_DEFAULT};
use crate::model::taxonomy::Taxonomy;

/// A head with its calibration and thresholds, covering some topics of the taxonomy.
#[derive(Debug, Clone)]
pub struct ScoredHead {
    pub head: Head,
    /// Indices into [`Classifier::topics`] of the head's outputs, in head order.
    pub topic_indices: Vec<usize>,
    pub calibration: Vec<Platt>,
    pub thresholds: Vec<f32>,
}

/// Every topic of the taxonomy, scored by one or more heads (a trained head, plus the zero-shot
/// head for topics added to the taxonomy after training).
#[derive(Debug, Clone)]
pub struct Classifier {
    pub topics: Vec<String>,
    pub heads: Vec<ScoredHead>,
}

#[derive(Debug, Clone)]
pub struct Prediction {
    /// Calibrated probability per topic (index as in `Classifier::topics`).
    pub probs: Vec<f32>,
    /// Raw head score per topic.
    pub raw: Vec<f32>,
    /// Whether each topic is over its threshold.
    pub assigned: Vec<bool>,
    /// For each topic, the window whose own score was highest.
    pub evidence: Vec<Option<(usize, Span)>>,
    pub thresholds: Vec<f32>,
}

/// The zero-shot head for the given topics: prototypes from the taxonomy's descriptions.
pub fn zero_shot_head(
    encoder: &Encoder,
    taxonomy: &Taxonomy,
    topic_ids: &[String],
) -> Result<ZeroShotHead, Box<EncoderError>> {
    let mut per_topic = Vec::with_capacity(topic_ids.len());
    for id in topic_ids {
        let topic = &taxonomy.topics[taxonomy.index_of(id).expect("topic id from taxonomy")];
        let descriptions: Vec<&str> = topic
            .descriptions
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        per_topic.push(encoder.embed_queries(&descriptions).map_err(Box::new)?);
    }
    Ok(ZeroShotHead::from_description_embeddings(&per_topic))
}

/// Default zero-shot scoring before any calibration on labelled data.
pub fn uncalibrated_zero_shot(head: ZeroShotHead, topic_indices: Vec<usize>) -> ScoredHead {
    let n = topic_indices.len();
    ScoredHead {
        head: Head::ZeroShot(head),
        topic_indices,
        calibration: vec![ZERO_SHOT_DEFAULT; n],
        thresholds: vec![0.5; n],
    }
}

impl Classifier {
    /// Scores one article: its embedding and the document that was embedded (the lexical
    /// channel reads the text itself).
    pub fn predict(&self, article: &ArticleEmbedding, doc: Document<'_>) -> Prediction {
        let doc = kept_document(article, doc);
        let n = self.topics.len();
        let mut p = Prediction {
            probs: vec![0.0; n],
            raw: vec![0.0; n],
            assigned: vec![false; n],
            evidence: vec![None; n],
            thresholds: vec![0.5; n],
        };
        for scored in &self.heads {
            let raw = scored.head.raw_scores(article, doc);
            let windows = scored.head.window_scores(article, doc);
            for (k, &topic) in scored.topic_indices.iter().enumerate() {
                let prob = scored.calibration[k].prob(raw[k]);
                p.raw[topic] = raw[k];
                p.probs[topic] = prob;
                p.thresholds[topic] = scored.thresholds[k];
                p.assigned[topic] = prob >= scored.thresholds[k];
                p.evidence[topic] = windows
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1[k].total_cmp(&b.1[k]))
                    .map(|(w, _)| (w, article.windows[w].span));
            }
        }
        p
    }
}

/// The part of `doc` the encoder read: all of it, or for an article cut by the window limit
/// the text up to the end of its last window, so every channel of a head (the lexical one
/// reads text) judges the same words, and a huge article costs no more than its kept windows.
pub fn kept_document<'a>(article: &ArticleEmbedding, doc: Document<'a>) -> Document<'a> {
    let Some(last) = article.windows.last().filter(|_| article.truncated) else {
        return doc;
    };
    let end = doc
        .text
        .char_indices()
        .nth(last.span.end)
        .map_or(doc.text.len(), |(byte, _)| byte);
    Document {
        title: doc.title,
        text: &doc.text[..end],
    }
}

/// Probabilities to 4 decimals: more digits would claim a precision calibration does not have.
pub fn round4(p: f32) -> f32 {
    (p * 10_000.0).round() / 10_000.0
}

/// What every front end reports for one article: each shown topic's calibrated score, the topics
/// assigned, and the evidence of each.
#[derive(Debug, Clone, Default)]
pub struct TopicLabels {
    /// Each shown topic's probability, to 4 decimals.
    pub scores: std::collections::BTreeMap<String, f32>,
    /// Shown topics over their threshold and at least the minimum score, in taxonomy order.
    pub labels: Vec<String>,
    /// For each label, the window that drove it and an excerpt of it.
    pub evidence: std::collections::BTreeMap<String, Evidence>,
}

/// Turns a prediction over `topics` for an article whose text is `text` into what is reported:
/// only the topics `shown` (all when `None`), labels only from `min_score` up, and evidence
/// excerpts of at most `excerpt_chars` (the article's opening when the window's own text is
/// blank).
pub fn topic_labels(
    topics: &[String],
    prediction: &Prediction,
    text: &str,
    shown: Option<&[bool]>,
    min_score: f32,
    excerpt_chars: usize,
) -> TopicLabels {
    let whole = Span {
        start: 0,
        end: text.chars().count(),
    };
    let mut out = TopicLabels::default();
    for (t, topic) in topics.iter().enumerate() {
        if shown.is_some_and(|shown| !shown[t]) {
            continue;
        }
        let prob = prediction.probs[t];
        out.scores.insert(topic.clone(), round4(prob));
        if !(prediction.assigned[t] && prob >= min_score) {
            continue;
        }
        out.labels.push(topic.clone());
        if let Some((window, span)) = prediction.evidence[t] {
            let mut text_excerpt = excerpt(text, span, excerpt_chars);
            if text_excerpt.is_empty() {
                text_excerpt = excerpt(text, whole, excerpt_chars);
            }
            out.evidence.insert(
                topic.clone(),
                Evidence {
                    span,
                    window,
                    excerpt: text_excerpt,
                },
            );
        }
    }
    out
}

/// A short excerpt of `text` between character offsets: whitespace collapsed, at most
/// `max_chars` characters, cut at a word boundary with an ellipsis.
pub fn excerpt(text: &str, span: Span, max_chars: usize) -> String {
    let slice: String = text
        .chars()
        .skip(span.start)
        .take(span.end.saturating_sub(span.start))
        .collect();
    let collapsed = slice.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        // A span that stops mid-sentence before the text does is marked as cut, like one cut
        // for length; one that ends a sentence is not.
        let more_follows = text.chars().skip(span.end).any(|c| !c.is_whitespace());
        let ends_sentence = collapsed.ends_with(['.', '!', '?', '。', '！', '？', '"', '”', '»']);
        return if more_follows && !ends_sentence && !collapsed.is_empty() {
            format!("{collapsed}…")
        } else {
            collapsed
        };
    }
    let cut: String = collapsed.chars().take(max_chars).collect();
    let at_word = match cut.rfind(' ') {
        Some(i) if i > max_chars / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::WindowEmbedding;

    #[test]
    fn a_truncated_article_is_judged_on_the_text_its_windows_read() {
        let window = |start, end| WindowEmbedding {
            span: Span { start, end },
            tokens: 3,
            embedding: vec![1.0],
        };
        let doc = Document {
            title: Some("Titel"),
            text: "Ärger über Spionage. Später mehr.",
        };
        let mut article = ArticleEmbedding {
            embedding: vec![1.0],
            windows: vec![window(0, 5), window(4, 20)],
            truncated: true,
        };
        let kept = kept_document(&article, doc);
        assert_eq!(kept.text, "Ärger über Spionage.");
        assert_eq!(kept.title, Some("Titel"));
        article.truncated = false;
        assert_eq!(kept_document(&article, doc).text, doc.text);
    }

    #[test]
    fn topic_labels_filter_shown_topics_and_minimum_scores_with_evidence() {
        let topics: Vec<String> = ["espionage", "data_theft", "cyberattack"]
            .map(String::from)
            .to_vec();
        let text = "Agents copied files.      \n\n   Then a breach.";
        let prediction = Prediction {
            probs: vec![0.91234, 0.6, 0.7],
            raw: vec![0.0; 3],
            assigned: vec![true, true, false],
            // data_theft's window is blank: its excerpt falls back to the article's opening.
            evidence: vec![
                Some((0, Span { start: 0, end: 20 })),
                Some((1, Span { start: 21, end: 26 })),
                Some((2, Span { start: 33, end: 47 })),
            ],
            thresholds: vec![0.5; 3],
        };
        let all = topic_labels(&topics, &prediction, text, None, 0.0, 240);
        assert_eq!(all.labels, ["espionage", "data_theft"]);
        assert_eq!(all.scores["espionage"], 0.9123);
        assert_eq!(all.scores.len(), 3);
        assert_eq!(all.evidence["espionage"].excerpt, "Agents copied files.");
        assert_eq!(
            all.evidence["data_theft"].excerpt,
            "Agents copied files. Then a breach."
        );
        assert!(!all.evidence.contains_key("cyberattack"), "not assigned");

        let strict = topic_labels(&topics, &prediction, text, None, 0.65, 240);
        assert_eq!(strict.labels, ["espionage"]);
        assert_eq!(strict.scores.len(), 3, "scores are kept under the minimum");

        let shown = [false, true, true];
        let some = topic_labels(&topics, &prediction, text, Some(&shown), 0.0, 240);
        assert_eq!(some.labels, ["data_theft"]);
        assert!(!some.scores.contains_key("espionage"));
    }

    #[test]
    fn excerpt_collapses_whitespace_and_cuts_at_words() {
        let text = "Intro.  Police   arrested\nan engineer accused of spying for a foreign state.";
        assert_eq!(
            excerpt(text, Span { start: 8, end: 33 }, 200),
            "Police arrested an engi…"
        );
        assert_eq!(
            excerpt(
                text,
                Span {
                    start: 0,
                    end: text.chars().count()
                },
                30
            ),
            "Intro. Police arrested an…"
        );
        assert_eq!(
            excerpt("データ漏洩が発覚", Span { start: 3, end: 5 }, 10),
            "漏洩…"
        );
        // The whole text, or a span that ends where only whitespace follows, is not marked.
        assert_eq!(
            excerpt("データ漏洩が発覚  ", Span { start: 0, end: 8 }, 10),
            "データ漏洩が発覚"
        );
    }
}
