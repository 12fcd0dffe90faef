//! Training heads: logistic regression per topic with the penalty chosen by cross-validation
//! (embedding and lexical channels), the legacy AdamW head with early stopping on dev, and the
//! per-topic calibration and thresholds every head gets on the dev split.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::metrics::{average_precision, column};
use crate::model::head::{
    best_f1_threshold, EnsembleHead, FeatureSet, Head, LexicalHead, LinearHead, Platt,
};
use crate::model::lexical::{NgramConfig, SparseVector, Vectorizer};
use crate::model::logistic::{fit_binary, out_of_fold_logits, Dense, Sparse};

/// How the logistic heads choose their penalty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PenaltySearch {
    /// Candidate inverse penalties `C` (larger = weaker penalty).
    pub grid: Vec<f64>,
    /// Cross-validation folds on the training split.
    pub folds: usize,
}

/// The penalty cross-validation chose for one topic, with every candidate's out-of-fold
/// average precision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PenaltyChoice {
    pub topic: String,
    pub c: f64,
    /// (C, out-of-fold average precision) per candidate.
    pub cv_average_precision: Vec<(f64, f64)>,
}

/// Fits one logistic model per topic, each with the `C` its own cross-validation chose, and
/// refits on all rows with it. Topics run in parallel.
///
/// Without `partner`, a candidate `C` is scored by the out-of-fold average precision of its own
/// logits. With `partner` (the other channel's out-of-fold logits per topic, from the same
/// folds), it is scored by the average precision of the two channels combined as the ensemble
/// combines them, so the penalty is chosen for what ships, not for the channel alone.
fn fit_per_topic<D: crate::model::logistic::Design>(
    design: &D,
    labels: &[Vec<bool>],
    topics: &[String],
    search: &PenaltySearch,
    partner: Option<&[Vec<f32>]>,
) -> Channel {
    let fits: Vec<(crate::model::logistic::Binary, PenaltyChoice, Vec<f32>)> = (0..topics.len())
        .into_par_iter()
        .map(|t| {
            let y = column(labels, t);
            let mut oof = out_of_fold_logits(design, &y, &search.grid, search.folds);
            let scores: Vec<f64> = oof
                .iter()
                .map(|own| match partner {
                    Some(p) => average_precision(&EnsembleHead::combine(&p[t], own), &y),
                    None => average_precision(own, &y),
                })
                .collect();
            // Ties go to the first candidate: list the grid from the strongest penalty up.
            let best =
                (0..scores.len()).fold(0, |b, k| if scores[k] > scores[b] + 1e-9 { k } else { b });
            let c = search.grid[best];
            let choice = PenaltyChoice {
                topic: topics[t].clone(),
                c,
                cv_average_precision: search.grid.iter().copied().zip(scores).collect(),
            };
            (fit_binary(design, &y, c), choice, oof.swap_remove(best))
        })
        .collect();
    let mut channel = Channel {
        weight: Vec::new(),
        bias: Vec::new(),
        choices: Vec::new(),
        out_of_fold: Vec::new(),
    };
    for (model, choice, oof) in fits {
        channel.weight.extend(model.weight);
        channel.bias.push(model.bias);
        channel.choices.push(choice);
        channel.out_of_fold.push(oof);
    }
    channel
}

/// One channel's per-topic logistic models, stacked, with how they were chosen.
pub struct Channel {
    /// (topics x features), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub choices: Vec<PenaltyChoice>,
    /// Per topic, the out-of-fold logits of the chosen `C` on the training rows.
    pub out_of_fold: Vec<Vec<f32>>,
}

/// Logistic regression on embedding features (standardised with the training split's mean and
/// deviation, so one penalty suits every dimension).
pub fn train_logistic(
    articles: &[crate::encoder::ArticleEmbedding],
    labels: &[Vec<bool>],
    topics: &[String],
    features: FeatureSet,
    search: &PenaltySearch,
) -> Result<(LinearHead, Channel), TrainError> {
    if articles.is_empty() {
        return Err(TrainError::Empty);
    }
    let raw: Vec<Vec<f32>> = articles.iter().map(|a| features.of(a)).collect();
    let (mean, std) = standardization(&raw);
    let x: Vec<Vec<f32>> = raw
        .iter()
        .map(|row| {
            row.iter()
                .zip(mean.iter().zip(&std))
                .map(|(x, (m, s))| (x - m) / s)
                .collect()
        })
        .collect();
    let channel = fit_per_topic(&Dense(&x), labels, topics, search, None);
    let head = LinearHead {
        weight: channel.weight.clone(),
        bias: channel.bias.clone(),
        feature_mean: mean,
        feature_std: std,
        features,
    };
    Ok((head, channel))
}

/// The lexical vocabulary's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LexicalConfig {
    pub ngrams: NgramConfig,
    /// An n-gram must occur in at least this many training articles.
    pub min_df: usize,
    /// The most frequent n-grams kept.
    pub max_features: usize,
}

impl Default for LexicalConfig {
    fn default() -> Self {
        Self {
            ngrams: NgramConfig::default(),
            min_df: 2,
            max_features: 50_000,
        }
    }
}

/// Logistic regression on character n-gram TF-IDF vectors of the training texts. With
/// `partner` (the embedding channel's out-of-fold logits), each topic's `C` is chosen for the
/// ensemble's combined score.
pub fn train_lexical(
    texts: &[String],
    labels: &[Vec<bool>],
    topics: &[String],
    config: &LexicalConfig,
    search: &PenaltySearch,
    partner: Option<&[Vec<f32>]>,
) -> Result<(LexicalHead, Channel), TrainError> {
    if texts.is_empty() {
        return Err(TrainError::Empty);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectorizer = Vectorizer::fit(&refs, config.ngrams, config.min_df, config.max_features);
    let rows: Vec<SparseVector> = refs.par_iter().map(|t| vectorizer.transform(t)).collect();
    let design = Sparse {
        rows: &rows,
        dim: vectorizer.len(),
    };
    let channel = fit_per_topic(&design, labels, topics, search, partner);
    let head = LexicalHead {
        weight: channel.weight.clone(),
        bias: channel.bias.clone(),
        vectorizer,
    };
    Ok((head, channel))
}

/// The lexical channel of an ensemble: its vocabulary settings and penalty search.
pub struct LexicalRequest<'a> {
    pub config: &'a LexicalConfig,
    pub search: &'a PenaltySearch,
}

/// A fitted logistic or ensemble head, with the out-of-fold raw scores of its training articles
/// (articles x topics) from models that never saw each article.
pub struct FittedHead {
    pub head: Head,
    /// How each channel's penalty was chosen, for the manifest.
    pub report: serde_json::Value,
    pub out_of_fold: Vec<Vec<f32>>,
}

/// Fits the logistic head on embeddings, and with `lexical` the ensemble with the character
/// n-gram channel (its penalty chosen for the combined score).
pub fn fit_logistic_head(
    articles: &[crate::encoder::ArticleEmbedding],
    texts: &[String],
    labels: &[Vec<bool>],
    topics: &[String],
    features: FeatureSet,
    search: &PenaltySearch,
    lexical: Option<LexicalRequest<'_>>,
) -> Result<FittedHead, TrainError> {
    let (linear, channel) = train_logistic(articles, labels, topics, features, search)?;
    let solver = "L-BFGS to max |gradient| < 1e-7, L2 penalty, balanced class weights";
    let Some(lexical) = lexical else {
        return Ok(FittedHead {
            head: Head::Linear(linear),
            report: serde_json::json!({"solver": solver, "penalty": channel.choices}),
            out_of_fold: transpose(&channel.out_of_fold),
        });
    };
    let (lexical_head, lexical_channel) = train_lexical(
        texts,
        labels,
        topics,
        lexical.config,
        lexical.search,
        Some(&channel.out_of_fold),
    )?;
    let combined: Vec<Vec<f32>> = channel
        .out_of_fold
        .iter()
        .zip(&lexical_channel.out_of_fold)
        .map(|(e, l)| EnsembleHead::combine(e, l))
        .collect();
    Ok(FittedHead {
        head: Head::Ensemble(EnsembleHead {
            embedding: linear,
            lexical: lexical_head,
        }),
        report: serde_json::json!({
            "solver": solver,
            "penalty": channel.choices,
            "lexical": {
                "config": lexical.config,
                "penalty": lexical_channel.choices,
                "chosen_by": "out-of-fold average precision of the combined score",
            },
        }),
        out_of_fold: transpose(&combined),
    })
}

/// (topics x articles) to (articles x topics).
fn transpose(per_topic: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let n = per_topic.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| per_topic.iter().map(|t| t[i]).collect())
        .collect()
}

/// Per-dimension mean and standard deviation (floored, so a constant feature divides safely).
fn standardization(rows: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len() as f64;
    let dim = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; dim];
    for row in rows {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x as f64 / n;
        }
    }
    let mut var = vec![0.0f64; dim];
    for row in rows {
        for ((v, &x), m) in var.iter_mut().zip(row).zip(&mean) {
            *v += (x as f64 - m).powi(2) / n;
        }
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect(),
    )
}

/// Per-topic calibration and thresholds fitted on held-out raw scores.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub platt: Vec<Platt>,
    pub thresholds: Vec<f32>,
    /// What the thresholds assign on the held-out data (articles x topics).
    pub predicted: Vec<Vec<bool>>,
}

/// Fits Platt scaling per topic on held-out raw scores, then the F1-best threshold on the
/// calibrated probabilities. Platt scaling is monotone, so it changes no ranking: the
/// threshold alone decides which articles get a topic.
pub fn calibrate(raw: &[Vec<f32>], labels: &[Vec<bool>], topics: usize) -> Calibration {
    let mut calibration = Calibration {
        platt: Vec::with_capacity(topics),
        thresholds: Vec::with_capacity(topics),
        predicted: vec![vec![false; topics]; raw.len()],
    };
    for t in 0..topics {
        let scores: Vec<f32> = raw.iter().map(|r| r[t]).collect();
        let actual = column(labels, t);
        let platt = Platt::fit(&scores, &actual);
        let probs: Vec<f32> = scores.iter().map(|&s| platt.prob(s)).collect();
        let (threshold, _) = best_f1_threshold(&probs, &actual);
        for (row, p) in calibration.predicted.iter_mut().zip(&probs) {
            row[t] = *p >= threshold;
        }
        calibration.platt.push(platt);
        calibration.thresholds.push(threshold);
    }
    calibration
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TrainConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub max_epochs: usize,
    /// Epochs without a lower dev loss before training stops.
    pub patience: usize,
    /// Upper bound on a topic's positive weight (negatives / positives).
    pub max_pos_weight: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 3e-3,
            weight_decay: 0.05,
            max_epochs: 600,
            patience: 50,
            max_pos_weight: 10.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_loss: f32,
    pub dev_loss: f32,
    /// Weight of a positive example per topic in the loss.
    pub pos_weight: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training examples; pass a non-empty `--train` file")]
    Empty,
    #[error("training failed in candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// A design matrix and its multi-label targets.
pub struct Examples<'a> {
    pub features: &'a [Vec<f32>],
    pub labels: &'a [Vec<bool>],
}

fn to_tensors(
    ex: &Examples<'_>,
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = ex.features.len();
    let dim = mean.len();
    let mut xs = Vec::with_capacity(n * dim);
    for row in ex.features {
        xs.extend(
            row.iter()
                .zip(mean.iter().zip(std))
                .map(|(x, (m, s))| (x - m) / s),
        );
    }
    let topics = ex.labels.first().map_or(0, Vec::len);
    let ys: Vec<f32> = ex
        .labels
        .iter()
        .flat_map(|r| r.iter().map(|&b| if b { 1.0 } else { 0.0 }))
        .collect();
    Ok((
        Tensor::from_vec(xs, (n, dim), device)?,
        Tensor::from_vec(ys, (n, topics), device)?,
    ))
}

/// Numerically stable weighted BCE on logits: pos_weight * y * softplus(-z) + (1 - y) * softplus(z).
fn weighted_bce(
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: &Tensor,
) -> candle_core::Result<Tensor> {
    let softplus = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
    };
    let positive = targets
        .broadcast_mul(pos_weight)?
        .mul(&softplus(&logits.neg()?)?)?;
    let negative = (targets.affine(-1.0, 1.0)?).mul(&softplus(logits)?)?;
    (positive + negative)?.mean_all()
}

/// Trains a linear head (zero-initialised, so deterministic: the problem is convex).
pub fn train_linear(
    train: &Examples<'_>,
    dev: &Examples<'_>,
    config: &TrainConfig,
) -> Result<(LinearHead, TrainReport), TrainError> {
    let n = train.features.len();
    if n == 0 {
        return Err(TrainError::Empty);
    }
    let dim = train.features[0].len();
    let topics = train.labels[0].len();
    let mut mean = vec![0.0f32; dim];
    for row in train.features {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / n as f32;
        }
    }
    let mut std = vec![0.0f32; dim];
    for row in train.features {
        for ((s, x), m) in std.iter_mut().zip(row).zip(&mean) {
            *s += (x - m) * (x - m) / n as f32;
        }
    }
    let std: Vec<f32> = std.iter().map(|v| v.sqrt().max(1e-6)).collect();
    let pos_weight: Vec<f32> = (0..topics)
        .map(|t| {
            let pos = train.labels.iter().filter(|r| r[t]).count() as f32;
            ((n as f32 - pos) / pos.max(1.0)).clamp(1.0, config.max_pos_weight)
        })
        .collect();

    let device = Device::Cpu;
    let (x_train, y_train) = to_tensors(train, &mean, &std, &device)?;
    let (x_dev, y_dev) = to_tensors(dev, &mean, &std, &device)?;
    let pos_weight_t = Tensor::from_vec(pos_weight.clone(), (1, topics), &device)?;
    let ones = Tensor::ones((1, topics), DType::F32, &device)?;
    let weight = Var::zeros((topics, dim), DType::F32, &device)?;
    let bias = Var::zeros(topics, DType::F32, &device)?;
    let mut optimizer = AdamW::new(
        vec![weight.clone(), bias.clone()],
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )?;
    let forward = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.matmul(&weight.as_tensor().t()?)?
            .broadcast_add(bias.as_tensor())
    };
    let mut best = (f32::INFINITY, 0usize, 0.0f32);
    let mut best_params = (weight.as_tensor().copy()?, bias.as_tensor().copy()?);
    let mut epochs_run = 0;
    for epoch in 1..=config.max_epochs {
        epochs_run = epoch;
        let loss = weighted_bce(&forward(&x_train)?, &y_train, &pos_weight_t)?;
        optimizer.backward_step(&loss)?;
        let dev_loss = if dev.features.is_empty() {
            loss.to_scalar::<f32>()?
        } else {
            weighted_bce(&forward(&x_dev)?, &y_dev, &ones)?.to_scalar::<f32>()?
        };
        if dev_loss < best.0 {
            best = (dev_loss, epoch, loss.to_scalar::<f32>()?);
            best_params = (weight.as_tensor().copy()?, bias.as_tensor().copy()?);
        } else if epoch - best.1 >= config.patience {
            break;
        }
    }
    let head = LinearHead {
        weight: best_params.0.flatten_all()?.to_vec1()?,
        bias: best_params.1.to_vec1()?,
        feature_mean: mean,
        feature_std: std,
        features: FeatureSet::MeanMax,
    };
    Ok((
        head,
        TrainReport {
            epochs_run,
            best_epoch: best.1,
            train_loss: best.2,
            dev_loss: best.0,
            pos_weight,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_toy_problem() {
        // Topic 0 fires when feature 0 is high; topic 1 when feature 1 is high; independent.
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..80 {
            let a = if i % 2 == 0 { 1.0 } else { -1.0 };
            let b = if (i / 2) % 2 == 0 { 1.0 } else { -1.0 };
            let noise = (i as f32 * 0.37).sin() * 0.1;
            features.push(vec![a + noise, b - noise, noise]);
            labels.push(vec![a > 0.0, b > 0.0]);
        }
        let (train_x, dev_x) = features.split_at(60);
        let (train_y, dev_y) = labels.split_at(60);
        let (head, report) = train_linear(
            &Examples {
                features: train_x,
                labels: train_y,
            },
            &Examples {
                features: dev_x,
                labels: dev_y,
            },
            &TrainConfig::default(),
        )
        .unwrap();
        // Far below the ln 2 = 0.69 of an untrained head; weight decay keeps it above zero.
        assert!(report.dev_loss < 0.3, "{report:?}");
        for (x, y) in dev_x.iter().zip(dev_y) {
            let logits = head.logits(x);
            assert_eq!(logits[0] > 0.0, y[0]);
            assert_eq!(logits[1] > 0.0, y[1]);
        }
    }
}
