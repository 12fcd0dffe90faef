//! Scoring predictions against hand labels: per-topic and overall metrics, calibration error,
//! seeded bootstrap confidence intervals, slices, error analysis, and paired comparisons.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub use crate::eval::metrics::pr_curve;
use crate::eval::metrics::{average_precision, column, macro_f1, micro_f1, Confusion};
use crate::model::head::best_f1_threshold;

pub const SCHEMA: &str = "spyglass.eval/1";
/// Slices smaller than this are flagged as unreliable.
pub const MIN_RELIABLE_SLICE: usize = 20;

/// One evaluated article: gold labels and what the system said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArticleResult {
    pub id: String,
    pub lang: String,
    pub source: String,
    /// `short` (fits one 512-token window) or `long`; `unknown` without a tokenizer.
    pub length: String,
    pub gold: Vec<bool>,
    pub predicted: Vec<bool>,
    /// Calibrated probabilities, when the system gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probs: Option<Vec<f32>>,
    /// Evidence excerpt per topic (empty when none).
    #[serde(default)]
    pub excerpts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMetrics {
    pub topic: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub f1_ci95: [f64; 2],
    pub support: usize,
    pub predicted: usize,
    /// Area under the precision-recall curve; None without probabilities.
    pub average_precision: Option<f64>,
    /// The threshold the system used (bundle), if known.
    pub threshold: Option<f32>,
    /// The F1-best threshold on this data and the F1 it reaches (an oracle, for headroom).
    pub best_threshold: Option<f32>,
    pub best_f1: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overall {
    pub articles: usize,
    pub macro_f1: f64,
    pub macro_f1_ci95: [f64; 2],
    pub micro_f1: f64,
    pub subset_accuracy: f64,
    pub hamming_loss: f64,
    pub none_precision: f64,
    pub none_recall: f64,
    /// Bootstrap 95% intervals of the `none` precision and recall (absent in older reports).
    #[serde(default)]
    pub none_precision_ci95: Option<[f64; 2]>,
    #[serde(default)]
    pub none_recall_ci95: Option<[f64; 2]>,
    /// Expected calibration error over every (article, topic) probability, 10 equal bins.
    pub ece: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slice {
    pub kind: String,
    pub value: String,
    pub articles: usize,
    pub macro_f1: f64,
    pub micro_f1: f64,
    pub unreliable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorCase {
    /// `false_positive` or `false_negative`.
    pub kind: String,
    pub id: String,
    pub lang: String,
    pub topic: String,
    pub score: Option<f32>,
    pub excerpt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub path: String,
    pub sha256: String,
    pub articles: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub schema: String,
    pub created: String,
    /// `name@version` of the bundle, `zero-shot`, or the predictions file.
    pub model: String,
    /// SHA-256 of the bundle's manifest.json or of the predictions file.
    pub model_sha256: String,
    pub data: Vec<Provenance>,
    pub taxonomy_version: u32,
    pub seed: u64,
    pub bootstrap_samples: usize,
    pub topics: Vec<String>,
    pub overall: Overall,
    pub per_topic: Vec<TopicMetrics>,
    pub slices: Vec<Slice>,
    pub errors: Vec<ErrorCase>,
    pub articles: Vec<ArticleResult>,
}

impl EvalReport {
    /// Checks a report read from a file is whole: one gold, prediction (and probability, when
    /// given) per topic for every article, probabilities in 0-1. A crafted or truncated report
    /// is an error here instead of a panic in the metrics.
    pub fn check_shapes(&self) -> Result<(), String> {
        let n = self.topics.len();
        if n == 0 {
            return Err("it names no topics".into());
        }
        for (i, a) in self.articles.iter().enumerate() {
            let what = |field: &str, len: usize| {
                format!(
                    "article {} (`{}`) has {len} `{field}` values for {n} topics",
                    i + 1,
                    a.id
                )
            };
            if a.gold.len() != n {
                return Err(what("gold", a.gold.len()));
            }
            if a.predicted.len() != n {
                return Err(what("predicted", a.predicted.len()));
            }
            if let Some(probs) = &a.probs {
                if probs.len() != n {
                    return Err(what("probs", probs.len()));
                }
                if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
                    return Err(format!(
                        "article {} (`{}`) has a probability outside 0-1",
                        i + 1,
                        a.id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Label matrix: articles x topics.
type Labels = Vec<Vec<bool>>;
/// A metric over (predicted, gold) label matrices.
type Metric = Box<dyn Fn(&[Vec<bool>], &[Vec<bool>]) -> f64>;

/// SplitMix64: a small, seedable generator so bootstrap results are reproducible everywhere.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The 2.5th and 97.5th percentiles (nearest rank) of bootstrap statistics.
fn percentile_interval(mut values: Vec<f64>) -> [f64; 2] {
    if values.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    [at(0.025), at(0.975)]
}

/// Resampled index sets: `samples` draws of n articles with replacement.
fn bootstrap_indices(n: usize, samples: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed);
    (0..samples)
        .map(|_| (0..n).map(|_| rng.below(n)).collect())
        .collect()
}

fn pick<T: Clone>(rows: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| rows[i].clone()).collect()
}

/// Expected calibration error with `bins` equal-width bins: the count-weighted mean gap between
/// each bin's mean confidence and its observed frequency.
pub fn expected_calibration_error(probs: &[f32], actual: &[bool], bins: usize) -> f64 {
    let n = probs.len().max(1) as f64;
    reliability_bins(probs, actual, bins)
        .iter()
        .map(|&(confidence, frequency, count)| (count as f64 / n) * (frequency - confidence).abs())
        .sum()
}

/// Reliability-diagram points: (mean confidence, observed frequency, count) per non-empty bin.
pub fn reliability_bins(probs: &[f32], actual: &[bool], bins: usize) -> Vec<(f64, f64, usize)> {
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0f64; bins];
    let mut hits = vec![0usize; bins];
    for (&p, &a) in probs.iter().zip(actual) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p as f64;
        hits[b] += usize::from(a);
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            (
                conf[b] / count[b] as f64,
                hits[b] as f64 / count[b] as f64,
                count[b],
            )
        })
        .collect()
}

/// Slice metrics. Macro-F1 averages only the topics that occur in the slice (gold or
/// predicted): a small slice lacks most topics, and counting those as F1 = 0 would sink it.
fn slice_metrics(kind: &str, value: String, rows: &[&ArticleResult]) -> Slice {
    let topics = rows.first().map_or(0, |r| r.gold.len());
    let present: Vec<usize> = (0..topics)
        .filter(|&t| rows.iter().any(|r| r.gold[t] || r.predicted[t]))
        .collect();
    let keep = |v: &Vec<bool>| present.iter().map(|&t| v[t]).collect::<Vec<bool>>();
    let predicted: Vec<Vec<bool>> = rows.iter().map(|r| keep(&r.predicted)).collect();
    let gold: Vec<Vec<bool>> = rows.iter().map(|r| keep(&r.gold)).collect();
    Slice {
        kind: kind.into(),
        value,
        articles: rows.len(),
        macro_f1: macro_f1(&predicted, &gold),
        micro_f1: micro_f1(&predicted, &gold),
        unreliable: rows.len() < MIN_RELIABLE_SLICE,
    }
}

/// Everything but provenance: metrics, intervals, slices and errors for `articles`.
pub struct Scoring {
    pub overall: Overall,
    pub per_topic: Vec<TopicMetrics>,
    pub slices: Vec<Slice>,
    pub errors: Vec<ErrorCase>,
}

pub fn score(
    topics: &[String],
    articles: &[ArticleResult],
    thresholds: Option<&[f32]>,
    bootstrap_samples: usize,
    seed: u64,
) -> Scoring {
    let n = articles.len();
    let t_count = topics.len();
    let gold: Vec<Vec<bool>> = articles.iter().map(|a| a.gold.clone()).collect();
    let predicted: Vec<Vec<bool>> = articles.iter().map(|a| a.predicted.clone()).collect();
    let has_probs = n > 0 && articles.iter().all(|a| a.probs.is_some());
    let probs: Vec<Vec<f32>> = articles
        .iter()
        .map(|a| a.probs.clone().unwrap_or_default())
        .collect();
    let samples = bootstrap_indices(n, if n == 0 { 0 } else { bootstrap_samples }, seed);
    let resampled: Vec<(Labels, Labels)> = samples
        .iter()
        .map(|idx| (pick(&predicted, idx), pick(&gold, idx)))
        .collect();

    let per_topic = (0..t_count)
        .map(|t| {
            let (p, g) = (column(&predicted, t), column(&gold, t));
            let c = Confusion::from(&p, &g);
            let f1s = resampled
                .iter()
                .map(|(rp, rg)| Confusion::from(&column(rp, t), &column(rg, t)).f1())
                .collect();
            let scores: Option<Vec<f32>> = has_probs.then(|| probs.iter().map(|r| r[t]).collect());
            let best = scores.as_ref().map(|s| best_f1_threshold(s, &g));
            TopicMetrics {
                topic: topics[t].clone(),
                precision: c.precision(),
                recall: c.recall(),
                f1: c.f1(),
                f1_ci95: percentile_interval(f1s),
                support: c.support(),
                predicted: c.tp + c.fp,
                average_precision: scores.as_ref().map(|s| average_precision(s, &g)),
                threshold: thresholds.map(|th| th[t]),
                best_threshold: best.map(|b| b.0),
                best_f1: best.map(|b| b.1),
            }
        })
        .collect();

    let exact = (0..n).filter(|&i| predicted[i] == gold[i]).count();
    let mismatched: usize = (0..n)
        .map(|i| {
            (0..t_count)
                .filter(|&t| predicted[i][t] != gold[i][t])
                .count()
        })
        .sum();
    let pred_none: Vec<bool> = predicted.iter().map(|r| !r.iter().any(|&b| b)).collect();
    let gold_none: Vec<bool> = gold.iter().map(|r| !r.iter().any(|&b| b)).collect();
    let none = Confusion::from(&pred_none, &gold_none);
    let none_of =
        |labels: &Labels| -> Vec<bool> { labels.iter().map(|r| !r.iter().any(|&b| b)).collect() };
    let resampled_none: Vec<Confusion> = resampled
        .iter()
        .map(|(p, g)| Confusion::from(&none_of(p), &none_of(g)))
        .collect();
    let ece = has_probs.then(|| {
        let flat_p: Vec<f32> = probs.iter().flatten().copied().collect();
        let flat_g: Vec<bool> = gold.iter().flatten().copied().collect();
        expected_calibration_error(&flat_p, &flat_g, 10)
    });
    let overall = Overall {
        articles: n,
        macro_f1: macro_f1(&predicted, &gold),
        macro_f1_ci95: percentile_interval(resampled.iter().map(|(p, g)| macro_f1(p, g)).collect()),
        micro_f1: micro_f1(&predicted, &gold),
        subset_accuracy: if n == 0 { 0.0 } else { exact as f64 / n as f64 },
        hamming_loss: if n * t_count == 0 {
            0.0
        } else {
            mismatched as f64 / (n * t_count) as f64
        },
        none_precision: none.precision(),
        none_recall: none.recall(),
        none_precision_ci95: Some(percentile_interval(
            resampled_none.iter().map(Confusion::precision).collect(),
        )),
        none_recall_ci95: Some(percentile_interval(
            resampled_none.iter().map(Confusion::recall).collect(),
        )),
        ece,
    };

    let mut slices = Vec::new();
    for (kind, key) in [("lang", 0), ("length", 1), ("source", 2)] {
        let mut groups: BTreeMap<String, Vec<&ArticleResult>> = BTreeMap::new();
        for a in articles {
            let value = match key {
                0 => a.lang.clone(),
                1 => a.length.clone(),
                _ => a.source.clone(),
            };
            groups.entry(value).or_default().push(a);
        }
        for (value, rows) in groups {
            slices.push(slice_metrics(kind, value, &rows));
        }
    }

    let mut errors = Vec::new();
    for a in articles {
        for t in 0..t_count {
            if a.predicted[t] == a.gold[t] {
                continue;
            }
            errors.push(ErrorCase {
                kind: if a.predicted[t] {
                    "false_positive"
                } else {
                    "false_negative"
                }
                .into(),
                id: a.id.clone(),
                lang: a.lang.clone(),
                topic: topics[t].clone(),
                score: a.probs.as_ref().map(|p| p[t]),
                excerpt: a.excerpts.get(t).cloned().unwrap_or_default(),
            });
        }
    }
    // Worst first: confident false positives and confidently missed positives.
    let badness = |e: &ErrorCase| match (e.kind.as_str(), e.score) {
        ("false_positive", Some(s)) => s as f64,
        (_, Some(s)) => 1.0 - s as f64,
        _ => 0.5,
    };
    errors.sort_by(|a, b| {
        badness(b)
            .total_cmp(&badness(a))
            .then_with(|| a.id.cmp(&b.id))
    });
    Scoring {
        overall,
        per_topic,
        slices,
        errors,
    }
}

/// A paired comparison of two reports on the same articles.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub delta: f64,
    pub delta_ci95: [f64; 2],
    /// Two-sided paired-bootstrap p-value for "no difference".
    pub p_value: f64,
}

/// Paired bootstrap over the articles both reports scored (matched by id): macro-F1 and each
/// topic's F1, B minus A.
pub fn compare(
    a: &EvalReport,
    b: &EvalReport,
    samples: usize,
    seed: u64,
) -> Result<(Vec<Comparison>, usize), String> {
    if a.topics != b.topics {
        return Err(format!(
            "the reports score different topics ({:?} vs {:?})",
            a.topics, b.topics
        ));
    }
    let by_id: BTreeMap<&str, &ArticleResult> =
        b.articles.iter().map(|r| (r.id.as_str(), r)).collect();
    let pairs: Vec<(&ArticleResult, &ArticleResult)> = a
        .articles
        .iter()
        .filter_map(|r| by_id.get(r.id.as_str()).map(|s| (r, *s)))
        .collect();
    if pairs.is_empty() {
        return Err(
            "the reports share no article ids; compare reports made on the same data".into(),
        );
    }
    for (ra, rb) in &pairs {
        if ra.gold != rb.gold {
            return Err(format!("article `{}` has different gold labels in the two reports; they were made on different data", ra.id));
        }
    }
    let gold: Vec<Vec<bool>> = pairs.iter().map(|p| p.0.gold.clone()).collect();
    let pa: Vec<Vec<bool>> = pairs.iter().map(|p| p.0.predicted.clone()).collect();
    let pb: Vec<Vec<bool>> = pairs.iter().map(|p| p.1.predicted.clone()).collect();
    let samples_idx = bootstrap_indices(pairs.len(), samples, seed);
    let mut metrics: Vec<(String, Metric)> = vec![(
        "macro_f1".into(),
        Box::new(|p: &[Vec<bool>], g: &[Vec<bool>]| macro_f1(p, g)),
    )];
    for (t, topic) in a.topics.iter().enumerate() {
        metrics.push((
            format!("f1[{topic}]"),
            Box::new(move |p: &[Vec<bool>], g: &[Vec<bool>]| {
                Confusion::from(&column(p, t), &column(g, t)).f1()
            }),
        ));
    }
    let out = metrics
        .iter()
        .map(|(name, f)| {
            let (va, vb) = (f(&pa, &gold), f(&pb, &gold));
            let deltas: Vec<f64> = samples_idx
                .iter()
                .map(|idx| {
                    let g = pick(&gold, idx);
                    f(&pick(&pb, idx), &g) - f(&pick(&pa, idx), &g)
                })
                .collect();
            let at_or_below = deltas.iter().filter(|&&d| d <= 0.0).count() as f64;
            let at_or_above = deltas.iter().filter(|&&d| d >= 0.0).count() as f64;
            let p = (2.0 * at_or_below.min(at_or_above) / deltas.len().max(1) as f64).min(1.0);
            Comparison {
                metric: name.clone(),
                a: va,
                b: vb,
                delta: vb - va,
                delta_ci95: percentile_interval(deltas),
                p_value: p,
            }
        })
        .collect();
    Ok((out, pairs.len()))
}

/// Articles longer than this many encoder tokens fall in the `long` length slice.
pub const LONG_TOKENS: usize = 512;

/// `long`, `short`, or `unknown` without a tokenizer.
pub fn length_bucket(
    tokenizer: Option<&crate::encoder::ArticleTokenizer>,
    doc: crate::encoder::Document<'_>,
) -> String {
    match tokenizer.and_then(|t| t.count_tokens(doc).ok()) {
        Some(n) if n > LONG_TOKENS => "long".into(),
        Some(_) => "short".into(),
        None => "unknown".into(),
    }
}

fn gold_of(article: &crate::io::data::LabelledArticle, topics: &[String]) -> Vec<bool> {
    topics.iter().map(|t| article.labels.contains(t)).collect()
}

/// Scores embedded hand-labelled articles with a classifier; also returns its thresholds.
pub fn score_labelled(
    classifier: &crate::model::classify::Classifier,
    tokenizer: Option<&crate::encoder::ArticleTokenizer>,
    articles: &[crate::io::data::LabelledArticle],
    embeddings: &[crate::encoder::ArticleEmbedding],
) -> (Vec<ArticleResult>, Option<Vec<f32>>) {
    let mut thresholds = None;
    let results = articles
        .iter()
        .zip(embeddings)
        .map(|(article, embedding)| {
            let p = classifier.predict(embedding, article.document());
            thresholds.get_or_insert_with(|| p.thresholds.clone());
            ArticleResult {
                id: article.id.clone(),
                lang: article.lang.clone(),
                source: article.source.clone(),
                length: length_bucket(tokenizer, article.document()),
                gold: gold_of(article, &classifier.topics),
                predicted: p.assigned.clone(),
                probs: Some(p.probs.clone()),
                excerpts: p
                    .evidence
                    .iter()
                    .map(|e| {
                        e.map(|(_, span)| crate::model::classify::excerpt(&article.text, span, 200))
                            .unwrap_or_default()
                    })
                    .collect(),
            }
        })
        .collect();
    (results, thresholds)
}

/// Results from a predictions file's lines, one per labelled article (each must have one).
pub fn results_from_predictions(
    by_id: &HashMap<String, crate::eval::predictions::ArticlePrediction>,
    articles: &[crate::io::data::LabelledArticle],
    topics: &[String],
    tokenizer: Option<&crate::encoder::ArticleTokenizer>,
) -> Vec<ArticleResult> {
    articles
        .iter()
        .map(|a| {
            let prediction = &by_id[&a.id];
            ArticleResult {
                id: a.id.clone(),
                lang: a.lang.clone(),
                source: a.source.clone(),
                length: length_bucket(tokenizer, a.document()),
                gold: gold_of(a, topics),
                predicted: prediction.predicted.clone(),
                probs: prediction.probs.clone(),
                excerpts: vec![String::new(); topics.len()],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(
        id: &str,
        gold: &[bool],
        predicted: &[bool],
        probs: Option<Vec<f32>>,
    ) -> ArticleResult {
        ArticleResult {
            id: id.into(),
            lang: "en".into(),
            source: "written".into(),
            length: "short".into(),
            gold: gold.to_vec(),
            predicted: predicted.to_vec(),
            probs,
            excerpts: vec![String::new(); gold.len()],
        }
    }

    fn topics() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn overall_metrics_match_hand_computed_values() {
        let rows = vec![
            article("1", &[true, false], &[true, false], Some(vec![0.9, 0.1])),
            article("2", &[false, false], &[false, true], Some(vec![0.2, 0.7])),
            article("3", &[false, true], &[false, false], Some(vec![0.1, 0.4])),
            article("4", &[false, false], &[false, false], Some(vec![0.3, 0.2])),
        ];
        let s = score(&topics(), &rows, Some(&[0.5, 0.5]), 200, 1);
        assert_eq!(s.overall.articles, 4);
        // a: tp1 -> F1 1; b: fp1 fn1 -> F1 0; macro 0.5; micro tp1 fp1 fn1 -> 0.5
        assert!((s.overall.macro_f1 - 0.5).abs() < 1e-12);
        assert!((s.overall.micro_f1 - 0.5).abs() < 1e-12);
        assert!((s.overall.subset_accuracy - 0.5).abs() < 1e-12);
        assert!((s.overall.hamming_loss - 2.0 / 8.0).abs() < 1e-12);
        // predicted none: 3, 4; gold none: 2, 4 -> precision 1/2, recall 1/2
        assert!((s.overall.none_precision - 0.5).abs() < 1e-12);
        assert!((s.overall.none_recall - 0.5).abs() < 1e-12);
        let b = &s.per_topic[1];
        assert_eq!((b.support, b.predicted), (1, 1));
        assert_eq!(s.errors.len(), 2);
        assert_eq!(s.errors[0].kind, "false_positive"); // 0.7 confident FP before FN at 0.4
        assert!(s.slices.iter().any(|sl| sl.kind == "lang" && sl.unreliable));
    }

    #[test]
    fn edge_cases_topic_without_positives_no_predictions_all_none() {
        let rows = vec![
            article("1", &[false, false], &[false, false], None),
            article("2", &[false, false], &[false, false], None),
        ];
        let s = score(&topics(), &rows, None, 50, 3);
        assert_eq!(s.overall.macro_f1, 0.0);
        assert_eq!(s.overall.subset_accuracy, 1.0);
        assert_eq!(s.overall.none_precision, 1.0);
        assert_eq!(s.overall.none_recall, 1.0);
        assert!(s.overall.ece.is_none());
        assert!(s
            .per_topic
            .iter()
            .all(|t| t.f1 == 0.0 && t.average_precision.is_none()));
        let empty = score(&topics(), &[], None, 50, 3);
        assert_eq!(empty.overall.articles, 0);
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        let rows: Vec<ArticleResult> = (0..30)
            .map(|i| {
                article(
                    &i.to_string(),
                    &[i % 3 == 0, i % 2 == 0],
                    &[i % 3 == 0 || i % 7 == 0, i % 2 == 0 && i % 5 != 0],
                    None,
                )
            })
            .collect();
        let a = score(&topics(), &rows, None, 300, 42);
        let b = score(&topics(), &rows, None, 300, 42);
        let c = score(&topics(), &rows, None, 300, 43);
        assert_eq!(a.overall.macro_f1_ci95, b.overall.macro_f1_ci95);
        assert_ne!(a.overall.macro_f1_ci95, c.overall.macro_f1_ci95);
        let [lo, hi] = a.overall.macro_f1_ci95;
        assert!(
            lo <= a.overall.macro_f1 && a.overall.macro_f1 <= hi,
            "{lo} {hi}"
        );
        // The `none` intervals bracket their point estimates and are not degenerate here.
        for (value, interval) in [
            (a.overall.none_precision, a.overall.none_precision_ci95),
            (a.overall.none_recall, a.overall.none_recall_ci95),
        ] {
            let [lo, hi] = interval.expect("computed");
            assert!(lo <= value && value <= hi && lo < hi, "{lo} {value} {hi}");
        }
    }

    #[test]
    fn calibration_error_of_perfectly_calibrated_bins_is_zero() {
        // Bin 0.2: 1 of 5 positive; bin 0.8: 4 of 5 positive.
        let probs = [0.2f32; 5]
            .iter()
            .chain([0.8f32; 5].iter())
            .copied()
            .collect::<Vec<_>>();
        let actual = [
            true, false, false, false, false, true, true, true, true, false,
        ];
        assert!(expected_calibration_error(&probs, &actual, 10) < 1e-6);
        let overconfident = expected_calibration_error(&[0.9; 4], &[true, false, false, false], 10);
        assert!((overconfident - 0.65).abs() < 1e-6);
    }
}
