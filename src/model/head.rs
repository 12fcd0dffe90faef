//! Classification heads: turn an article's embeddings into one independent calibrated
//! probability per topic (never a softmax across topics), with the window that drove each score.

use serde::{Deserialize, Serialize};

use crate::encoder::{ArticleEmbedding, Document};
use crate::model::lexical::{SparseVector, Vectorizer};

/// Which embedding features a linear head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSet {
    /// The article embedding (the mean of its window embeddings).
    Mean,
    /// The article embedding, then the per-dimension maximum over its windows.
    MeanMax,
}

impl FeatureSet {
    /// The features of an article.
    pub fn of(self, article: &ArticleEmbedding) -> Vec<f32> {
        match self {
            FeatureSet::Mean => article.embedding.clone(),
            FeatureSet::MeanMax => article_features(article),
        }
    }

    /// The feature width for an encoder of `hidden` dimensions.
    pub fn width(self, hidden: usize) -> usize {
        match self {
            FeatureSet::Mean => hidden,
            FeatureSet::MeanMax => 2 * hidden,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FeatureSet::Mean => "article embedding (mean of windows)",
            FeatureSet::MeanMax => {
                "article embedding (mean of windows) ++ per-dimension max over window embeddings"
            }
        }
    }
}

/// The mean-and-max features: the article embedding, then the per-dimension maximum over its
/// windows, so one relevant passage in a long noisy page still counts.
pub fn article_features(article: &ArticleEmbedding) -> Vec<f32> {
    let dim = article.embedding.len();
    let mut max = vec![f32::NEG_INFINITY; dim];
    for window in &article.windows {
        for (m, v) in max.iter_mut().zip(&window.embedding) {
            *m = m.max(*v);
        }
    }
    if article.windows.is_empty() {
        max.copy_from_slice(&article.embedding);
    }
    let mut features = article.embedding.clone();
    features.extend(max);
    features
}

/// Features of one window read as if it were a whole article (for per-window evidence).
fn window_features(embedding: &[f32], set: FeatureSet) -> Vec<f32> {
    let mut features = embedding.to_vec();
    if set == FeatureSet::MeanMax {
        features.extend_from_slice(embedding);
    }
    features
}

/// The text a window covers: its character span of the record's text, or the title for a
/// window over the title alone.
fn window_text<'a>(doc: Document<'a>, span: crate::encoder::Span) -> std::borrow::Cow<'a, str> {
    if span.start == span.end {
        return doc.title.unwrap_or_default().into();
    }
    doc.text
        .chars()
        .skip(span.start)
        .take(span.end - span.start)
        .collect::<String>()
        .into()
}

/// The whole text the lexical channel reads: the title, then the text.
pub fn document_text(doc: Document<'_>) -> String {
    match doc.title {
        Some(title) if !title.trim().is_empty() => format!("{title}\n{}", doc.text),
        _ => doc.text.to_string(),
    }
}

/// Platt scaling: `p = sigmoid(a * score + b)`, fitted per topic on held-out data.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f32,
    pub b: f32,
}

impl Platt {
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    pub fn prob(&self, score: f32) -> f32 {
        sigmoid(self.a * score + self.b)
    }

    /// Fits `a` and `b` by damped Newton steps on the log loss, with Platt's smoothed targets
    /// ((n+ + 1)/(n+ + 2) and 1/(n- + 2)) and a small L2 penalty, so that separable data cannot
    /// drive `a` to infinity.
    pub fn fit(scores: &[f32], labels: &[bool]) -> Platt {
        const L2: f64 = 1e-3;
        let positives = labels.iter().filter(|&&l| l).count() as f64;
        let negatives = labels.len() as f64 - positives;
        if positives == 0.0 || negatives == 0.0 {
            return Platt::IDENTITY;
        }
        let hi = (positives + 1.0) / (positives + 2.0);
        let lo = 1.0 / (negatives + 2.0);
        let targets: Vec<f64> = labels.iter().map(|&l| if l { hi } else { lo }).collect();
        let xs: Vec<f64> = scores.iter().map(|&s| s as f64).collect();
        let loss = |a: f64, b: f64| -> f64 {
            let data: f64 = xs
                .iter()
                .zip(&targets)
                .map(|(&s, &t)| {
                    let z = a * s + b;
                    // t * softplus(-z) + (1 - t) * softplus(z), stably
                    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
                    t * softplus(-z) + (1.0 - t) * softplus(z)
                })
                .sum();
            data + 0.5 * L2 * (a * a + b * b)
        };
        let (mut a, mut b) = (1.0f64, 0.0f64);
        let mut current = loss(a, b);
        for _ in 0..200 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (L2 * a, L2 * b, L2, 0.0, L2);
            for (&s, &t) in xs.iter().zip(&targets) {
                let p = 1.0 / (1.0 + (-(a * s + b)).exp());
                let d = p - t;
                let w = p * (1.0 - p);
                ga += d * s;
                gb += d;
                haa += w * s * s;
                hab += w * s;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-300 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            // Halve the step until the loss goes down.
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-10 {
                let (na, nb) = (a - step * da, b - step * db);
                let candidate = loss(na, nb);
                if candidate <= current {
                    a = na;
                    b = nb;
                    improved = current - candidate > 1e-12;
                    current = candidate;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        Platt {
            a: a as f32,
            b: b as f32,
        }
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The threshold on calibrated probabilities that maximises F1 on held-out data: halfway between
/// the lowest accepted score and the next one below it. 0.5 when the data has no positives.
pub fn best_f1_threshold(probs: &[f32], labels: &[bool]) -> (f32, f64) {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return (0.5, 0.0);
    }
    let (mut best_f1, mut best_threshold) = (-1.0f64, 0.5f32);
    for cut in crate::eval::metrics::ranked_cuts(probs, labels) {
        let f1 = 2.0 * cut.tp as f64 / (cut.tp + cut.fp + positives) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            best_threshold = (cut.score + cut.next_score) / 2.0;
        }
    }
    (best_threshold, best_f1)
}

/// A linear layer over embedding features: one logit per topic, standardised inputs.
#[derive(Debug, Clone)]
pub struct LinearHead {
    /// (topics x features), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub feature_mean: Vec<f32>,
    pub feature_std: Vec<f32>,
    pub features: FeatureSet,
}

impl LinearHead {
    pub fn topics(&self) -> usize {
        self.bias.len()
    }

    pub fn article_logits(&self, article: &ArticleEmbedding) -> Vec<f32> {
        self.logits(&self.features.of(article))
    }

    pub fn window_logits(&self, embedding: &[f32]) -> Vec<f32> {
        self.logits(&window_features(embedding, self.features))
    }

    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        let dim = self.feature_mean.len();
        let standardized: Vec<f32> = features
            .iter()
            .zip(self.feature_mean.iter().zip(&self.feature_std))
            .map(|(x, (m, s))| (x - m) / s)
            .collect();
        self.weight
            .chunks_exact(dim)
            .zip(&self.bias)
            .map(|(row, b)| {
                row.iter()
                    .zip(&standardized)
                    .map(|(w, x)| w * x)
                    .sum::<f32>()
                    + b
            })
            .collect()
    }
}

/// A linear layer over character n-gram TF-IDF features of the text: one logit per topic.
#[derive(Debug, Clone)]
pub struct LexicalHead {
    pub vectorizer: Vectorizer,
    /// (topics x vocabulary), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LexicalHead {
    pub fn logits(&self, text: &str) -> Vec<f32> {
        self.logits_of(&self.vectorizer.transform(text))
    }

    pub fn logits_of(&self, x: &SparseVector) -> Vec<f32> {
        let dim = self.vectorizer.len();
        if dim == 0 {
            return self.bias.clone(); // no vocabulary: every text scores the bias alone
        }
        self.weight
            .chunks_exact(dim)
            .zip(&self.bias)
            .map(|(row, b)| x.iter().map(|&(j, v)| row[j as usize] * v).sum::<f32>() + b)
            .collect()
    }
}

/// The embedding head and the lexical head together: each topic's probabilities from the two
/// are averaged, and the raw score is that average on the logit scale (so calibration and
/// thresholds work on it as on any other head).
#[derive(Debug, Clone)]
pub struct EnsembleHead {
    pub embedding: LinearHead,
    pub lexical: LexicalHead,
}

impl EnsembleHead {
    /// `logit((sigmoid(a) + sigmoid(b)) / 2)`, kept finite.
    pub fn combine(embedding: &[f32], lexical: &[f32]) -> Vec<f32> {
        embedding
            .iter()
            .zip(lexical)
            .map(|(&a, &b)| {
                let p = ((sigmoid(a) + sigmoid(b)) / 2.0).clamp(1e-7, 1.0 - 1e-7);
                (p / (1.0 - p)).ln()
            })
            .collect()
    }
}

/// Scores topics by cosine similarity between the article's windows and each topic's prototype
/// (the normalised mean of its description embeddings in every language).
#[derive(Debug, Clone)]
pub struct ZeroShotHead {
    /// One unit vector per topic.
    pub prototypes: Vec<Vec<f32>>,
}

/// Raw-score calibration of the zero-shot head for topics without labelled data: query-passage
/// cosines of multilingual-e5 sit in a narrow band, so a steep sigmoid around a fixed centre.
/// Slope and centre are the rounded averages of the per-topic Platt fits on the dev split
/// (`spyglass train --head zero-shot`: slopes 52-77, p = 0.5 at cosines 0.869-0.880).
pub const ZERO_SHOT_DEFAULT: Platt = Platt {
    a: 65.0,
    b: -65.0 * 0.875,
};

impl ZeroShotHead {
    pub fn from_description_embeddings(per_topic: &[Vec<Vec<f32>>]) -> Self {
        let prototypes = per_topic
            .iter()
            .map(|rows| crate::encoder::mean_normalized(rows.iter().map(Vec::as_slice)))
            .collect();
        Self { prototypes }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}

/// Any head: raw scores per topic for the article, and per window (for evidence).
#[derive(Debug, Clone)]
pub enum Head {
    Linear(LinearHead),
    ZeroShot(ZeroShotHead),
    Ensemble(EnsembleHead),
}

impl Head {
    pub fn topics(&self) -> usize {
        match self {
            Head::Linear(h) => h.topics(),
            Head::ZeroShot(h) => h.prototypes.len(),
            Head::Ensemble(h) => h.embedding.topics(),
        }
    }

    /// Raw (uncalibrated) article scores, one per topic. `doc` is the text that was embedded.
    pub fn raw_scores(&self, article: &ArticleEmbedding, doc: Document<'_>) -> Vec<f32> {
        match self {
            Head::Linear(h) => h.article_logits(article),
            Head::Ensemble(h) => EnsembleHead::combine(
                &h.embedding.article_logits(article),
                &h.lexical.logits(&document_text(doc)),
            ),
            Head::ZeroShot(h) => h
                .prototypes
                .iter()
                .map(|p| {
                    article
                        .windows
                        .iter()
                        .map(|w| ZeroShotHead::cosine(&w.embedding, p))
                        .chain(std::iter::once(ZeroShotHead::cosine(&article.embedding, p)))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .collect(),
        }
    }

    /// Raw scores of each window alone: (windows x topics).
    pub fn window_scores(&self, article: &ArticleEmbedding, doc: Document<'_>) -> Vec<Vec<f32>> {
        article
            .windows
            .iter()
            .map(|w| match self {
                Head::Linear(h) => h.window_logits(&w.embedding),
                Head::Ensemble(h) => EnsembleHead::combine(
                    &h.embedding.window_logits(&w.embedding),
                    &h.lexical.logits(&window_text(doc, w.span)),
                ),
                Head::ZeroShot(h) => h
                    .prototypes
                    .iter()
                    .map(|p| ZeroShotHead::cosine(&w.embedding, p))
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{Span, WindowEmbedding};

    #[test]
    fn features_are_article_then_window_max() {
        let article = ArticleEmbedding {
            embedding: vec![0.5, 0.5],
            windows: vec![
                WindowEmbedding {
                    span: Span { start: 0, end: 1 },
                    tokens: 3,
                    embedding: vec![1.0, -1.0],
                },
                WindowEmbedding {
                    span: Span { start: 1, end: 2 },
                    tokens: 3,
                    embedding: vec![0.0, 0.2],
                },
            ],
            truncated: false,
        };
        assert_eq!(article_features(&article), vec![0.5, 0.5, 1.0, 0.2]);
    }

    #[test]
    fn best_threshold_separates_and_scores_f1() {
        let probs = [0.9, 0.8, 0.4, 0.3, 0.1];
        let labels = [true, true, false, true, false];
        let (t, f1) = best_f1_threshold(&probs, &labels);
        // Taking the top 4 gives tp=3, fp=1, fn=0: F1 = 6/7, better than top 2 (F1 = 0.8).
        assert!((f1 - 6.0 / 7.0).abs() < 1e-9, "{f1}");
        assert!((t - 0.2).abs() < 1e-6, "{t}");
        assert_eq!(best_f1_threshold(&probs, &[false; 5]).0, 0.5);
    }

    #[test]
    fn platt_fit_orders_and_calibrates() {
        // Scores where higher means more likely positive, 75% positive above 0.
        let scores: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) / 25.0).collect();
        let labels: Vec<bool> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| if s > 0.0 { i % 4 != 0 } else { i % 4 == 0 })
            .collect();
        let platt = Platt::fit(&scores, &labels);
        assert!(platt.a > 0.0);
        let high = platt.prob(3.0);
        let low = platt.prob(-3.0);
        assert!(high > 0.6 && high < 0.95, "{high}");
        assert!(low < 0.4 && low > 0.05, "{low}");
        // Degenerate data keeps identity rather than diverging.
        assert_eq!(Platt::fit(&[1.0, 2.0], &[true, true]), Platt::IDENTITY);
        // Perfectly separable scores stay finite and sensible.
        let sep = Platt::fit(
            &[-3.0, -2.0, -1.0, 1.0, 2.0, 3.0],
            &[false, false, false, true, true, true],
        );
        assert!(sep.a.is_finite() && sep.a > 0.0 && sep.a < 50.0, "{sep:?}");
        assert!(sep.prob(3.0) > 0.7 && sep.prob(-3.0) < 0.3, "{sep:?}");
    }

    #[test]
    fn a_lexical_head_without_vocabulary_scores_its_bias() {
        let head = LexicalHead {
            vectorizer: Vectorizer::new(
                crate::model::lexical::NgramConfig::default(),
                vec![],
                vec![],
            )
            .unwrap(),
            weight: vec![],
            bias: vec![0.5, -1.0],
        };
        assert_eq!(head.logits("any text"), vec![0.5, -1.0]);
    }

    #[test]
    fn linear_head_standardises_then_projects() {
        let head = LinearHead {
            weight: vec![1.0, 0.0, 0.0, 2.0],
            bias: vec![0.5, -1.0],
            feature_mean: vec![1.0, 1.0],
            feature_std: vec![2.0, 0.5],
            features: FeatureSet::Mean,
        };
        assert_eq!(head.logits(&[3.0, 2.0]), vec![1.5, 3.0]);
    }
}
