//! Int8 dense layers for the CPU: weights quantized to int8 per output channel (symmetric),
//! activations quantized per row at run time to as many bits as int32 accumulation allows
//! (±32767 levels at depth 384, ±11008 at 1536), multiplied with AVX2 `vpmaddwd` (16 products per
//! instruction against 8 per f32 FMA, but each needs an add too: measured 1.5x the f32 kernel)
//! and dequantized into the f32 output, where the layer's epilogue (`sgemm::Affine`) applies.
//!
//! Only the weights lose precision in a way that matters; the error is measured against f32
//! on the reference fixture (`tests/encoder_reference.rs`).

use rayon::prelude::*;

use super::kernels;
// The f32 kernel's tile (16 columns: two registers of eight int32 sums here) and row blocks:
// both kernels finish their tiles with the same `store_tile`.
use super::sgemm::{Affine, Epilogue, Store, MC, MR, NR};

/// Depth pairs per block: 256 pairs x 16 columns x 2 x 2 bytes = 16 KiB panel, half of L1.
const KC_PAIRS: usize = 256;
const WEIGHT_MAX: f32 = 127.0;

/// A weight matrix (outputs x inputs) in int8, packed for `vpmaddwd` (as int16 pairs).
pub struct QuantizedMatrix {
    /// Input depth, and depth rounded up to even (pairs of inputs share one int32 lane).
    k: usize,
    k_even: usize,
    n: usize,
    /// Panels of 16 columns: per depth pair, 16 columns x (w[2p], w[2p+1]).
    data: Vec<i16>,
    /// Per-column dequantization scale, zero past `n`.
    scales: Vec<f32>,
    /// Largest activation magnitude after quantization: keeps `k * ACT_MAX * 127` < 2^31.
    activation_max: f32,
}

impl QuantizedMatrix {
    /// Quantizes a weight stored (n x k) row-major, as `transformers` saves dense layers.
    pub fn from_rows(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k);
        let k_even = k + k % 2;
        let pairs = k_even / 2;
        let panels = n.div_ceil(NR);
        let mut data = vec![0i16; panels * pairs * NR * 2];
        let mut scales = vec![0f32; panels * NR];
        for (col, row) in weight.chunks_exact(k).enumerate() {
            let max = row.iter().fold(0f32, |m, &w| m.max(w.abs()));
            let scale = if max > 0.0 { max / WEIGHT_MAX } else { 1.0 };
            scales[col] = scale;
            let (panel, lane) = (col / NR, col % NR);
            for (kk, &w) in row.iter().enumerate() {
                let index = ((panel * pairs + kk / 2) * NR + lane) * 2 + kk % 2;
                data[index] = (w / scale).round() as i16;
            }
        }
        let activation_max = ((i32::MAX as f64 / (k_even as f64 * WEIGHT_MAX as f64)).floor())
            .min(i16::MAX as f64) as f32;
        Self {
            k,
            k_even,
            n,
            data,
            scales,
            activation_max,
        }
    }

    /// Whether this CPU runs the int8 kernel.
    pub fn supported() -> bool {
        kernels::avx2_fma()
    }

    /// `c (m x n) = act(a (m x k) @ W^T + bias [+ c])` as `affine` says, row-major, rows split
    /// across the rayon pool.
    pub fn affine(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine) {
        assert_eq!(a.len(), m * self.k);
        assert_eq!(c.len(), m * self.n);
        assert_eq!(affine.bias.len(), self.n);
        if !Self::supported() {
            self.affine_portable(a, m, c, affine);
            return;
        }
        let (k, n) = (self.k, self.n);
        let epilogue = Epilogue::of(&affine);
        c.par_chunks_mut(MC * n)
            .zip(a.par_chunks(MC * k))
            .for_each(|(c_block, a_block)| {
                QUANTIZED_ROWS.with_borrow_mut(|(quantized, row_scales)| {
                    let rows = a_block.len() / k;
                    self.quantize_rows(a_block, rows, quantized, row_scales);
                    // SAFETY: AVX2 checked above; `quantized` holds rows x k_even values,
                    // `c_block` rows x n, and the bias n (asserted).
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        self.block(quantized, row_scales, rows, c_block, epilogue)
                    };
                })
            });
    }

    /// Per-row symmetric quantization of activations to `activation_max` levels, depth padded
    /// to even with zeros.
    fn quantize_rows(&self, a: &[f32], rows: usize, out: &mut Vec<i16>, scales: &mut Vec<f32>) {
        out.clear();
        out.resize(rows * self.k_even, 0);
        scales.clear();
        scales.resize(rows, 0.0);
        let max = self.activation_max;
        kernels::quantize_rows(a, self.k, out, self.k_even, max, scales);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block(
        &self,
        a: &[i16],
        row_scales: &[f32],
        rows: usize,
        c: &mut [f32],
        epilogue: Epilogue,
    ) {
        let (k2, n) = (self.k_even, self.n);
        let pairs = k2 / 2;
        let blocks = pairs.div_ceil(KC_PAIRS);
        for block in 0..blocks {
            let p0 = block * KC_PAIRS;
            let pc = KC_PAIRS.min(pairs - p0);
            for panel in 0..n.div_ceil(NR) {
                let store = epilogue.for_tile(block, blocks, panel, n);
                let b = self.data.as_ptr().add((panel * pairs + p0) * NR * 2);
                let w_scales = self.scales.as_ptr().add(panel * NR);
                let mut r0 = 0;
                while r0 < rows {
                    let args = Tile {
                        pairs: pc,
                        a: a.as_ptr().add(r0 * k2 + 2 * p0),
                        lda: k2,
                        b,
                        c: c.as_mut_ptr().add(r0 * n + panel * NR),
                        ldc: n,
                        store,
                        row_scales: row_scales.as_ptr().add(r0),
                        col_scales: w_scales,
                    };
                    match rows - r0 {
                        1 => kernel::<1>(args),
                        2 => kernel::<2>(args),
                        3 => kernel::<3>(args),
                        4 => kernel::<4>(args),
                        5 => kernel::<5>(args),
                        _ => kernel::<MR>(args),
                    }
                    r0 += MR;
                }
            }
        }
    }

    /// The same arithmetic without SIMD, for CPUs without AVX2 (and as the tests' reference).
    fn affine_portable(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine) {
        let (mut quantized, mut row_scales) = (Vec::new(), Vec::new());
        self.quantize_rows(a, m, &mut quantized, &mut row_scales);
        let pairs = self.k_even / 2;
        for r in 0..m {
            let qa = &quantized[r * self.k_even..(r + 1) * self.k_even];
            for col in 0..self.n {
                let (panel, lane) = (col / NR, col % NR);
                let mut dot = 0i32;
                for p in 0..pairs {
                    let w = ((panel * pairs + p) * NR + lane) * 2;
                    dot += qa[2 * p] as i32 * self.data[w] as i32
                        + qa[2 * p + 1] as i32 * self.data[w + 1] as i32;
                }
                let out = &mut c[r * self.n + col];
                let value = dot as f32 * row_scales[r] * self.scales[col] + affine.bias[col];
                *out = if affine.residual { *out + value } else { value };
            }
            if let Some(activation) = affine.activation {
                activation.apply(&mut c[r * self.n..(r + 1) * self.n]);
            }
        }
    }
}

thread_local! {
    /// A row block's quantized activations and their scales, per thread, reused across calls
    /// (a fresh 300 KiB buffer per block would fault its pages in every time).
    static QUANTIZED_ROWS: std::cell::RefCell<(Vec<i16>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// One micro-kernel call: an R x 16 output tile over `pairs` depth pairs.
struct Tile {
    pairs: usize,
    a: *const i16,
    lda: usize,
    b: *const i16,
    c: *mut f32,
    ldc: usize,
    store: Store,
    row_scales: *const f32,
    col_scales: *const f32,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel<const R: usize>(t: Tile) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    for p in 0..t.pairs {
        let b0 = _mm256_loadu_si256(t.b.add(p * NR * 2) as *const __m256i);
        let b1 = _mm256_loadu_si256(t.b.add(p * NR * 2 + NR) as *const __m256i);
        for r in 0..R {
            let pair = (t.a.add(r * t.lda + 2 * p) as *const i32).read_unaligned();
            let av = _mm256_set1_epi32(pair);
            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
        }
    }
    let (mut lo_f, mut hi_f) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
    let ws0 = _mm256_loadu_ps(t.col_scales);
    let ws1 = _mm256_loadu_ps(t.col_scales.add(8));
    for r in 0..R {
        let s = _mm256_set1_ps(*t.row_scales.add(r));
        lo_f[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(lo[r]), _mm256_mul_ps(ws0, s));
        hi_f[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(hi[r]), _mm256_mul_ps(ws1, s));
    }
    super::sgemm::store_tile(&lo_f, &hi_f, t.c, t.ldc, t.store);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, mul: usize, modulo: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * mul % modulo) as f32 - (modulo / 2) as f32) / modulo as f32)
            .collect()
    }

    #[test]
    fn simd_and_portable_paths_agree_and_approximate_f32() {
        for &(m, n, k) in &[(1, 1, 1), (7, 17, 5), (97, 40, 600), (13, 16, 1536)] {
            let a = data(m * k, 7, 13);
            let w = data(n * k, 5, 11);
            let q = QuantizedMatrix::from_rows(&w, n, k);
            // Residual 0.5 plus bias 0.25: the product is what exceeds 0.75.
            let bias = vec![0.25f32; n];
            let add = Affine {
                bias: &bias,
                residual: true,
                activation: None,
            };
            let mut fast = vec![0.5f32; m * n];
            let mut portable = fast.clone();
            q.affine(&a, m, &mut fast, add);
            q.affine_portable(&a, m, &mut portable, add);
            // Without the residual and through an activation, both paths still agree.
            let relu = Affine {
                residual: false,
                activation: Some(kernels::Activation::Relu),
                ..add
            };
            let mut fast_relu = vec![f32::NAN; m * n];
            let mut portable_relu = fast_relu.clone();
            q.affine(&a, m, &mut fast_relu, relu);
            q.affine_portable(&a, m, &mut portable_relu, relu);
            for (i, (&x, &y)) in fast_relu.iter().zip(&portable_relu).enumerate() {
                assert!(
                    x >= 0.0 && (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "relu at {i}"
                );
                assert!((x - (fast[i] - 0.5).max(0.0)).abs() <= 1e-5 * (1.0 + x.abs()));
            }
            for i in 0..m * n {
                let (row, col) = (i / n, i % n);
                let exact: f32 = (0..k).map(|kk| a[row * k + kk] * w[col * k + kk]).sum();
                assert!((fast[i] - portable[i]).abs() <= 1e-5 * (1.0 + exact.abs()));
                // Rounding moves each weight by at most half a step (max|w| / 254) and each
                // activation by half of its row's step (max|a| / (2 * activation_max)).
                let wmax = w[col * k..(col + 1) * k]
                    .iter()
                    .fold(0f32, |m, x| m.max(x.abs()));
                let amax = a[row * k..(row + 1) * k]
                    .iter()
                    .fold(0f32, |m, x| m.max(x.abs()));
                let bound = (0..k)
                    .map(|kk| {
                        a[row * k + kk].abs() * wmax / 254.0
                            + w[col * k + kk].abs() * amax / (2.0 * q.activation_max)
                    })
                    .sum::<f32>();
                assert!(
                    (fast[i] - 0.75 - exact).abs() <= bound * 1.01 + 1e-5,
                    "({m}, {n}, {k}) at {i}: {} vs {exact}",
                    fast[i] - 0.75
                );
            }
        }
    }
}
