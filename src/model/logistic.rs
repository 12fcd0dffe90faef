//! L2-regularised logistic regression, one independent binary problem per topic: an exact
//! solver (L-BFGS to a gradient tolerance, not a fixed number of epochs), balanced class
//! weights, and the penalty chosen by stratified k-fold cross-validation.

use crate::model::lexical::SparseVector;

/// Rows of a design matrix, dense or sparse.
pub trait Design: Sync {
    fn rows(&self) -> usize;
    fn dim(&self) -> usize;
    /// Row `i` dotted with `w`.
    fn dot(&self, i: usize, w: &[f64]) -> f64;
    /// `g += alpha * row i`.
    fn axpy(&self, i: usize, alpha: f64, g: &mut [f64]);
}

/// Dense rows of equal length.
pub struct Dense<'a>(pub &'a [Vec<f32>]);

impl Design for Dense<'_> {
    fn rows(&self) -> usize {
        self.0.len()
    }
    fn dim(&self) -> usize {
        self.0.first().map_or(0, Vec::len)
    }
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        self.0[i].iter().zip(w).map(|(&x, &w)| x as f64 * w).sum()
    }
    fn axpy(&self, i: usize, alpha: f64, g: &mut [f64]) {
        for (g, &x) in g.iter_mut().zip(&self.0[i]) {
            *g += alpha * x as f64;
        }
    }
}

/// Sparse rows over `dim` features.
pub struct Sparse<'a> {
    pub rows: &'a [SparseVector],
    pub dim: usize,
}

impl Design for Sparse<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        self.rows[i]
            .iter()
            .map(|&(j, x)| x as f64 * w[j as usize])
            .sum()
    }
    fn axpy(&self, i: usize, alpha: f64, g: &mut [f64]) {
        for &(j, x) in &self.rows[i] {
            g[j as usize] += alpha * x as f64;
        }
    }
}

/// A subset of another design's rows (a cross-validation fold).
struct Subset<'a, D: Design> {
    inner: &'a D,
    rows: &'a [usize],
}

impl<D: Design> Design for Subset<'_, D> {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        self.inner.dot(self.rows[i], w)
    }
    fn axpy(&self, i: usize, alpha: f64, g: &mut [f64]) {
        self.inner.axpy(self.rows[i], alpha, g)
    }
}

/// A fitted binary model: `logit = w . x + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    pub weight: Vec<f32>,
    pub bias: f32,
}

impl Binary {
    pub fn logit<D: Design>(&self, design: &D, i: usize) -> f32 {
        let w: Vec<f64> = self.weight.iter().map(|&v| v as f64).collect();
        (design.dot(i, &w) + self.bias as f64) as f32
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Fits `min 0.5 |w|^2 + C * sum_i s_i * log-loss_i` (the bias unpenalised), where `s_i` weighs
/// each class by `n / (2 * n_class)` ("balanced"), so a rare topic is not drowned by `none`.
/// The objective is divided by `C * sum s_i` (same minimiser) to keep it well scaled.
pub fn fit_binary<D: Design>(design: &D, labels: &[bool], c: f64) -> Binary {
    let n = design.rows();
    let dim = design.dim();
    let positives = labels.iter().filter(|&&l| l).count();
    if n == 0 || positives == 0 || positives == n {
        // One class only: a constant model that predicts it.
        let bias = if positives == 0 { -10.0 } else { 10.0 };
        return Binary {
            weight: vec![0.0; dim],
            bias,
        };
    }
    let weight_of = |l: bool| {
        let count = if l { positives } else { n - positives };
        n as f64 / (2.0 * count as f64)
    };
    let sample: Vec<f64> = labels.iter().map(|&l| weight_of(l)).collect();
    let total: f64 = sample.iter().sum();
    let penalty = 1.0 / (c * total);
    let data_scale = 1.0 / total;
    let objective = |params: &[f64], grad: &mut [f64]| -> f64 {
        let (w, b) = params.split_at(dim);
        let b = b[0];
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        let mut grad_b = 0.0;
        {
            let (grad_w, _) = grad.split_at_mut(dim);
            for i in 0..n {
                let z = design.dot(i, w) + b;
                let y = if labels[i] { 1.0 } else { 0.0 };
                loss += sample[i] * if labels[i] { softplus(-z) } else { softplus(z) };
                let d = sample[i] * (sigmoid(z) - y) * data_scale;
                design.axpy(i, d, grad_w);
                grad_b += d;
            }
            for (g, &wj) in grad_w.iter_mut().zip(w) {
                *g += penalty * wj;
            }
        }
        grad[dim] = grad_b;
        loss * data_scale + 0.5 * penalty * w.iter().map(|v| v * v).sum::<f64>()
    };
    let params = lbfgs(vec![0.0; dim + 1], objective, 2000, 1e-7);
    Binary {
        weight: params[..dim].iter().map(|&v| v as f32).collect(),
        bias: params[dim] as f32,
    }
}

/// Minimises a smooth convex function by L-BFGS (memory 10) with a backtracking Armijo line
/// search, until the largest gradient component is below `tolerance` or `max_iter` steps.
pub fn lbfgs(
    mut x: Vec<f64>,
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    max_iter: usize,
    tolerance: f64,
) -> Vec<f64> {
    const MEMORY: usize = 10;
    let dim = x.len();
    let mut grad = vec![0.0; dim];
    let mut value = f(&x, &mut grad);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut next_grad = vec![0.0; dim];
    for _ in 0..max_iter {
        if grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) < tolerance {
            break;
        }
        // Two-loop recursion: direction = -H * grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * y);
            alphas.push(alpha);
        }
        let gamma = history
            .back()
            .map_or(1.0, |(s, y, _)| dot(s, y) / dot(y, y).max(1e-300));
        q.iter_mut().for_each(|q| *q *= gamma);
        for ((s, y, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(q, s)| *q += (alpha - beta) * s);
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&direction, &grad);
        if slope >= 0.0 {
            // Not a descent direction (curvature noise): restart from steepest descent.
            history.clear();
            direction = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        let mut step = if history.is_empty() {
            1.0 / grad.iter().map(|g| g * g).sum::<f64>().sqrt().max(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..60 {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&direction)
                .map(|(x, d)| x + step * d)
                .collect();
            let candidate_value = f(&candidate, &mut next_grad);
            if candidate_value <= value + 1e-4 * step * slope {
                accepted = Some((candidate, candidate_value));
                break;
            }
            step /= 2.0;
        }
        let Some((candidate, candidate_value)) = accepted else {
            break;
        };
        let s: Vec<f64> = candidate.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let improvement = value - candidate_value;
        x = candidate;
        value = candidate_value;
        std::mem::swap(&mut grad, &mut next_grad);
        if improvement.abs() <= 1e-15 * value.abs().max(1.0) {
            break;
        }
    }
    x
}

/// Stratified folds: positives and negatives each dealt round-robin in row order, so every fold
/// gets its share of a rare topic and the split is deterministic.
pub fn stratified_folds(labels: &[bool], folds: usize) -> Vec<usize> {
    let (mut pos, mut neg) = (0usize, 0usize);
    labels
        .iter()
        .map(|&l| {
            let counter = if l { &mut pos } else { &mut neg };
            *counter += 1;
            (*counter - 1) % folds
        })
        .collect()
}

/// Out-of-fold logits for each candidate penalty: `result[k][i]` is row `i`'s logit from a model
/// fitted on the other folds with `grid[k]`.
pub fn out_of_fold_logits<D: Design>(
    design: &D,
    labels: &[bool],
    grid: &[f64],
    folds: usize,
) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let fold_of = stratified_folds(labels, folds);
    let jobs: Vec<(usize, usize)> = (0..grid.len())
        .flat_map(|k| (0..folds).map(move |f| (k, f)))
        .collect();
    let results: Vec<(usize, Vec<(usize, f32)>)> = jobs
        .par_iter()
        .map(|&(k, fold)| {
            let train: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] != fold).collect();
            let held: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] == fold).collect();
            let subset = Subset {
                inner: design,
                rows: &train,
            };
            let train_labels: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
            let model = fit_binary(&subset, &train_labels, grid[k]);
            let scores = held.iter().map(|&i| (i, model.logit(design, i))).collect();
            (k, scores)
        })
        .collect();
    let mut out = vec![vec![0.0f32; labels.len()]; grid.len()];
    for (k, scores) in results {
        for (i, s) in scores {
            out[k][i] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows on a line, positives to the right with some overlap.
    fn toy() -> (Vec<Vec<f32>>, Vec<bool>) {
        let xs: Vec<Vec<f32>> = (0..60)
            .map(|i| vec![(i as f32 - 30.0) / 10.0, 1.0])
            .collect();
        let ys = (0..60).map(|i| (i > 30) ^ (i % 7 == 0)).collect();
        (xs, ys)
    }

    #[test]
    fn solver_reaches_a_stationary_point() {
        let (xs, ys) = toy();
        let model = fit_binary(&Dense(&xs), &ys, 1.0);
        // Gradient of the unscaled objective at the solution, by central differences, is ~0.
        let objective = |w0: f64, b: f64| -> f64 {
            let pos = ys.iter().filter(|&&y| y).count() as f64;
            let n = ys.len() as f64;
            let mut loss = 0.5 * (w0 * w0 + model.weight[1] as f64 * model.weight[1] as f64);
            for (x, &y) in xs.iter().zip(&ys) {
                let s = if y {
                    n / (2.0 * pos)
                } else {
                    n / (2.0 * (n - pos))
                };
                let z = w0 * x[0] as f64 + model.weight[1] as f64 * x[1] as f64 + b;
                loss += s * if y { softplus(-z) } else { softplus(z) };
            }
            loss
        };
        let (w0, b) = (model.weight[0] as f64, model.bias as f64);
        let h = 1e-4;
        let gw = (objective(w0 + h, b) - objective(w0 - h, b)) / (2.0 * h);
        let gb = (objective(w0, b + h) - objective(w0, b - h)) / (2.0 * h);
        assert!(gw.abs() < 1e-2 && gb.abs() < 1e-2, "gradient {gw} {gb}");
        assert!(model.weight[0] > 0.5, "{model:?}");
    }

    #[test]
    fn stronger_penalty_shrinks_weights() {
        let (xs, ys) = toy();
        let weak = fit_binary(&Dense(&xs), &ys, 100.0);
        let strong = fit_binary(&Dense(&xs), &ys, 0.01);
        assert!(strong.weight[0].abs() < weak.weight[0].abs() / 2.0);
    }

    #[test]
    fn sparse_and_dense_designs_agree() {
        let (xs, ys) = toy();
        let sparse: Vec<SparseVector> = xs
            .iter()
            .map(|r| r.iter().enumerate().map(|(j, &v)| (j as u32, v)).collect())
            .collect();
        let a = fit_binary(&Dense(&xs), &ys, 2.0);
        let b = fit_binary(
            &Sparse {
                rows: &sparse,
                dim: 2,
            },
            &ys,
            2.0,
        );
        for (x, y) in a.weight.iter().zip(&b.weight) {
            assert!((x - y).abs() < 1e-5, "{a:?} {b:?}");
        }
    }

    #[test]
    fn one_class_gives_a_constant_model() {
        let xs = vec![vec![1.0f32], vec![2.0]];
        let m = fit_binary(&Dense(&xs), &[false, false], 1.0);
        assert!(m.weight == vec![0.0] && m.bias < 0.0);
    }

    #[test]
    fn folds_are_stratified() {
        let labels: Vec<bool> = (0..20).map(|i| i % 4 == 0).collect();
        let folds = stratified_folds(&labels, 5);
        for f in 0..5 {
            let pos = (0..20).filter(|&i| folds[i] == f && labels[i]).count();
            assert_eq!(pos, 1, "fold {f}");
        }
    }

    #[test]
    fn out_of_fold_logits_come_from_models_that_never_saw_the_row() {
        // One row labelled against the trend: a model fitted on it would score it positive;
        // out of fold, the row is scored by models that never saw it, so it stays negative.
        let (xs, mut ys) = toy();
        ys[59] = false;
        let oof = out_of_fold_logits(&Dense(&xs), &ys, &[100.0], 5);
        assert_eq!(oof.len(), 1);
        assert!(oof[0][59] > 0.0, "{}", oof[0][59]);
        let full = fit_binary(&Dense(&xs), &ys, 100.0);
        assert!(full.logit(&Dense(&xs), 59) < oof[0][59]);
    }
}
