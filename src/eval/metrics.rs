//! Multi-label classification metrics, with the definitions scikit-learn uses.

use serde::Serialize;

/// Counts for one topic at one threshold.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl Confusion {
    pub fn from(predicted: &[bool], actual: &[bool]) -> Self {
        let mut c = Confusion::default();
        for (&p, &a) in predicted.iter().zip(actual) {
            match (p, a) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    pub fn add(&mut self, other: Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }

    /// tp / (tp + fp); 0 when nothing was predicted (scikit-learn's zero_division=0).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// 2tp / (2tp + fp + fn); 0 when the denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    pub fn support(&self) -> usize {
        self.tp + self.fn_
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Column `t` of a row-major (articles x topics) boolean matrix.
pub fn column(rows: &[Vec<bool>], t: usize) -> Vec<bool> {
    rows.iter().map(|r| r[t]).collect()
}

/// Macro-F1: the unweighted mean of per-topic F1 (a topic with no positives and no predictions
/// counts as 0, as scikit-learn's zero_division=0 does).
pub fn macro_f1(predicted: &[Vec<bool>], actual: &[Vec<bool>]) -> f64 {
    let topics = actual.first().map_or(0, Vec::len);
    if topics == 0 {
        return 0.0;
    }
    (0..topics)
        .map(|t| Confusion::from(&column(predicted, t), &column(actual, t)).f1())
        .sum::<f64>()
        / topics as f64
}

/// Micro-F1: F1 of the pooled counts over all topics.
pub fn micro_f1(predicted: &[Vec<bool>], actual: &[Vec<bool>]) -> f64 {
    let topics = actual.first().map_or(0, Vec::len);
    let mut total = Confusion::default();
    for t in 0..topics {
        total.add(Confusion::from(&column(predicted, t), &column(actual, t)));
    }
    total.f1()
}

/// One cut of a ranking: accepting every article scored `score` or higher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    pub score: f32,
    /// The next lower distinct score (0 below the last), for thresholds between the two.
    pub next_score: f32,
    /// Positives and negatives accepted at this cut.
    pub tp: usize,
    pub fp: usize,
}

/// The cuts between distinct scores, highest score first; tied scores form one cut.
pub fn ranked_cuts(scores: &[f32], actual: &[bool]) -> Vec<Cut> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut cuts = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if actual[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let next = order.get(rank + 1).map(|&k| scores[k]);
        if next == Some(scores[i]) {
            continue;
        }
        cuts.push(Cut {
            score: scores[i],
            next_score: next.unwrap_or(0.0),
            tp,
            fp,
        });
    }
    cuts
}

/// Precision-recall curve points (recall, precision), from the highest score down, starting at
/// (0, 1); empty with no positives.
pub fn pr_curve(scores: &[f32], actual: &[bool]) -> Vec<(f64, f64)> {
    let positives = actual.iter().filter(|&&a| a).count();
    if positives == 0 {
        return Vec::new();
    }
    std::iter::once((0.0, 1.0))
        .chain(ranked_cuts(scores, actual).iter().map(|c| {
            (
                c.tp as f64 / positives as f64,
                c.tp as f64 / (c.tp + c.fp) as f64,
            )
        }))
        .collect()
}

/// Average precision (area under the precision-recall curve, step-wise, as scikit-learn's
/// `average_precision_score`): sum over thresholds of (R_n - R_{n-1}) * P_n. 0 with no positives.
pub fn average_precision(scores: &[f32], actual: &[bool]) -> f64 {
    pr_curve(scores, actual)
        .windows(2)
        .map(|pair| (pair[1].0 - pair[0].0) * pair[1].1)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_metrics_match_hand_counts() {
        let c = Confusion::from(
            &[true, true, false, false, true],
            &[true, false, true, false, true],
        );
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert!((c.precision() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.recall() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-12);
        // No predictions and no positives: zero_division=0.
        let empty = Confusion::from(&[false, false], &[false, false]);
        assert_eq!(
            (empty.precision(), empty.recall(), empty.f1()),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn micro_and_macro_f1_match_scikit_learn() {
        // sklearn: f1_score(y_true, y_pred, average='macro') = 0.5833..., 'micro' = 0.6666...
        let actual = vec![
            vec![true, false],
            vec![true, true],
            vec![false, true],
            vec![false, false],
        ];
        let predicted = vec![
            vec![true, true],
            vec![true, false],
            vec![false, true],
            vec![true, false],
        ];
        // topic 0: tp2 fp1 fn0 -> 0.8 ; topic 1: tp1 fp1 fn1 -> 0.5 ; macro 0.65 ; micro tp3 fp2 fn1 -> 6/9
        assert!((macro_f1(&predicted, &actual) - 0.65).abs() < 1e-12);
        assert!((micro_f1(&predicted, &actual) - 6.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn average_precision_matches_scikit_learn_example() {
        // sklearn docs: average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.3, 0.2], &[false, false]), 0.0);
        // Ties form one threshold: both at 0.5, one positive -> AP = 0.5.
        assert!((average_precision(&[0.5, 0.5], &[true, false]) - 0.5).abs() < 1e-12);
    }
}
