//! Vectorisable element-wise kernels for the CPU forward pass: GELU, softmax, LayerNorm and
//! row-wise bias/residual updates, compiled for each instruction-set level the CPU may have.
//!
//! Each kernel is written once as plain loops that LLVM vectorises; `simd_kernels!` compiles
//! copies with `avx2,fma` and with AVX-512 enabled and picks one by `isa::active()`, so one
//! binary runs everywhere.

use super::isa::{self, Isa};

macro_rules! simd_kernels {
    ($($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block)*) => {$(
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $body
                match isa::active() {
                    // SAFETY: each copy was compiled for features the active level implies.
                    level if level.has_avx512() => return unsafe { avx512($($arg),*) },
                    level if level.has_avx2() => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            $body
        }
    )*};
}

/// Whether the level in use has AVX2 and FMA, the features every hand-vectorised kernel here
/// needs (`isa::active`, so `SPYGLASS_CPU_ISA=portable` turns them off).
pub fn avx2_fma() -> bool {
    isa::active().has_avx2()
}

/// Whether the level in use has the 512-bit kernels (`avx512.rs`).
fn avx512() -> bool {
    cfg!(target_arch = "x86_64") && isa::active() >= Isa::Avx512
}

const LANES: usize = 8;

/// Sum with eight independent accumulators, so the loop vectorises (a single running sum would
/// force strict left-to-right order).
#[inline(always)]
fn lane_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = a.max(x);
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

/// `e^x` for f32 (Cephes `expf`: range reduction by ln 2 in two parts, degree-6 polynomial),
/// branch-free so it vectorises; relative error below 5e-7 on [-87.3, 88], clamped outside
/// (inputs here are at most 0 for softmax, and saturate tanh long before 88).
#[inline(always)]
fn exp(x: f32) -> f32 {
    // max/min rather than clamp: a NaN input becomes -87.3 instead of reaching the conversion.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r2 + r + 1.0;
    // SAFETY: n is an integer in [-126, 127] here, so the conversion cannot overflow; the
    // unchecked form vectorises (vcvttps2dq) where the saturating `as` would not.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    p * f32::from_bits(((n + 127) << 23) as u32)
}

/// Numerator coefficients of [`erf`] in x^2, highest power first (times x: odd in x).
pub(super) const ERF_NUMERATOR: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];
/// Denominator coefficients of [`erf`] in x^2, highest power first.
pub(super) const ERF_DENOMINATOR: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// `erf(x)` as Eigen's `generic_fast_erf_float`: an odd degree-13 over an even degree-8
/// polynomial on x clamped to [-4, 4] (where erf is 1 in f32), absolute error below 5e-7.
/// One division and no `exp`: the feed-forward activation runs on every one of a layer's
/// (tokens x 1536) values, and the `exp`-based form cost 4.4 cycles per value.
#[inline(always)]
fn erf(x: f32) -> f32 {
    // max/min rather than clamp: NaN propagates through clamp but not through this chain
    // (it becomes -4), and the chain vectorises to two instructions.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-4.0).min(4.0);
    let x2 = x * x;
    let horner = |coefficients: &[f32]| coefficients.iter().fold(0.0, |acc, &c| acc * x2 + c);
    x * horner(&ERF_NUMERATOR) / horner(&ERF_DENOMINATOR)
}

/// Exact (erf) GELU, as `transformers`' `gelu`.
#[inline(always)]
fn gelu_erf_value(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
#[inline(always)]
fn gelu_tanh_value(v: f32) -> f32 {
    let inner = 0.797_884_6 * (v + 0.044_715 * v * v * v);
    // tanh(u) = 1 - 2 / (e^{2u} + 1)
    let tanh = 1.0 - 2.0 / (exp(2.0 * inner) + 1.0);
    0.5 * v * (1.0 + tanh)
}

/// The activation of a feed-forward layer, as `hidden_act` in config.json names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    /// From config.json's `hidden_act`; `None` for activations this forward pass lacks.
    pub fn from_config(name: &str) -> Option<Self> {
        match name {
            "gelu" | "gelu_python" => Some(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// Applies the activation in place, with the AVX2+FMA copy where the CPU has it.
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Self::GeluErf => gelu_erf(xs),
            Self::GeluTanh => gelu_tanh(xs),
            Self::Relu => relu(xs),
        }
    }

    /// [`Activation::apply`] as plain loops for inlining into a caller compiled with wider
    /// features (the matrix kernels' epilogue), where they vectorise with those features.
    #[inline(always)]
    pub fn apply_inline(self, xs: &mut [f32]) {
        match self {
            Self::GeluErf => xs.iter_mut().for_each(|x| *x = gelu_erf_value(*x)),
            Self::GeluTanh => xs.iter_mut().for_each(|x| *x = gelu_tanh_value(*x)),
            Self::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
        }
    }
}

simd_kernels! {
    /// Tanh-approximated GELU in place (`gelu_new`, `gelu_pytorch_tanh`).
    pub fn gelu_tanh(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = gelu_tanh_value(*x);
        }
    }

    pub fn relu(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = x.max(0.0);
        }
    }

    /// [`exp_rows`] as plain loops (vectorised by the compiler, but without fused multiply-adds).
    pub fn exp_rows_portable(rows: &mut [f32], width: usize, scale: f32, sums: &mut [f32]) {
        for (row, sum) in rows.chunks_exact_mut(width).zip(sums.iter_mut()) {
            let max = lane_max(row);
            let mut acc = [0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for chunk in &mut chunks {
                for (a, x) in acc.iter_mut().zip(chunk.iter_mut()) {
                    *x = exp((*x - max) * scale);
                    *a += *x;
                }
            }
            let mut tail = 0.0;
            for x in chunks.into_remainder() {
                *x = exp((*x - max) * scale);
                tail += *x;
            }
            *sum = acc.iter().sum::<f32>() + tail;
        }
    }

    /// LayerNorm of every row of `rows` (row width = `gamma.len()`), in place.
    pub fn layer_norm_rows(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let width = gamma.len();
        for row in rows.chunks_exact_mut(width) {
            let mean = lane_sum(row) / width as f32;
            let mut acc = [0f32; LANES];
            for chunk in row.chunks_exact(LANES) {
                for (a, &x) in acc.iter_mut().zip(chunk) {
                    *a += (x - mean) * (x - mean);
                }
            }
            let tail: f32 = row
                .chunks_exact(LANES)
                .remainder()
                .iter()
                .map(|&x| (x - mean) * (x - mean))
                .sum();
            let var = (acc.iter().sum::<f32>() + tail) / width as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *x = (*x - mean) * inv * g + b;
            }
        }
    }

    /// Symmetric per-row quantization for the int8 path: each `width`-long row of `rows` becomes
    /// integers in [-max, max] in the matching `stride`-long row of `out` (the rest of that row
    /// untouched), and its scale (value = integer x scale) goes to `scales`.
    pub fn quantize_rows(rows: &[f32], width: usize, out: &mut [i16], stride: usize, max: f32, scales: &mut [f32]) {
        for ((row, q), scale) in rows.chunks_exact(width).zip(out.chunks_exact_mut(stride)).zip(scales.iter_mut()) {
            let mut acc = [0f32; LANES];
            let chunks = row.chunks_exact(LANES);
            let tail = chunks.remainder().iter().fold(0f32, |m, x| m.max(x.abs()));
            for chunk in chunks {
                for (a, x) in acc.iter_mut().zip(chunk) {
                    *a = a.max(x.abs());
                }
            }
            let amax = acc.iter().fold(tail, |m, &x| m.max(x));
            let inv = if amax > 0.0 { max / amax } else { 0.0 };
            *scale = if amax > 0.0 { amax / max } else { 0.0 };
            for (q, &x) in q.iter_mut().zip(row) {
                // max/min map NaN to -max, keeping the unchecked conversion in range.
                let level = (x * inv).round_ties_even().max(-max).min(max);
                // SAFETY: level is an integer in [-max, max] and max <= 32767.
                *q = unsafe { level.to_int_unchecked::<i32>() } as i16;
            }
        }
    }

    /// Per-row asymmetric quantization to unsigned bytes, for the `vpdpbusd` kernels: each row
    /// of `width` values maps its range (widened to include 0) onto 0..=255, so that
    /// x ~= (q - zero) * scale. Rows with no range (all zero, or non-finite) get scale 0.
    pub fn quantize_rows_u8(
        rows: &[f32],
        width: usize,
        out: &mut [u8],
        stride: usize,
        scales: &mut [f32],
        zeros: &mut [i32],
    ) {
        let rows = rows.chunks_exact(width).zip(out.chunks_exact_mut(stride));
        for ((row, q), (scale, zero)) in rows.zip(scales.iter_mut().zip(zeros.iter_mut())) {
            let (mut lo, mut hi) = ([0f32; LANES], [0f32; LANES]);
            let chunks = row.chunks_exact(LANES);
            let tail = chunks.remainder().iter().fold((0f32, 0f32), |(l, h), &x| (l.min(x), h.max(x)));
            for chunk in chunks {
                for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(chunk) {
                    *l = l.min(x);
                    *h = h.max(x);
                }
            }
            let lo = lo.iter().fold(tail.0, |m, &x| m.min(x));
            let hi = hi.iter().fold(tail.1, |m, &x| m.max(x));
            let range = hi - lo;
            if !(range > 0.0 && range.is_finite()) {
                *scale = 0.0;
                *zero = 0;
                q[..width].fill(0);
                continue;
            }
            let inv = 255.0 / range;
            let zero_point = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
            *scale = range / 255.0;
            *zero = zero_point as i32;
            for (q, &x) in q.iter_mut().zip(row) {
                // max/min map NaN to 0, keeping the unchecked conversion in range (`clamp`
                // would pass NaN through).
                #[allow(clippy::manual_clamp)]
                let level = ((x * inv).round_ties_even() + zero_point).max(0.0).min(255.0);
                // SAFETY: level is an integer in [0, 255].
                *q = unsafe { level.to_int_unchecked::<i32>() } as u8;
            }
        }
    }

    /// Adds `bias` to every row of `rows` (row width = `bias.len()`).
    pub fn add_rows(rows: &mut [f32], bias: &[f32]) {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (x, &b) in row.iter_mut().zip(bias) {
                *x += b;
            }
        }
    }
}

/// Exact (erf) GELU in place, as `transformers`' `gelu`.
pub fn gelu_erf(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the active level has AVX-512 and FMA.
        return unsafe { super::avx512::gelu_erf_slice(xs) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { gelu_erf_lanes(xs) };
    }
    xs.iter_mut().for_each(|x| *x = gelu_erf_value(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_lanes(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        let y = gelu_erf_fma(_mm256_loadu_ps(chunk.as_ptr()));
        _mm256_storeu_ps(chunk.as_mut_ptr(), y);
    }
    for x in chunks.into_remainder() {
        *x = gelu_erf_value(*x);
    }
}

/// The unnormalised half of a softmax of `scale * row`, for every `width`-long row of `rows`:
/// `e^(scale * (x - max))` in place, each row's sum into `sums`. Attention divides its
/// (rows x head) output by the sums instead of the (rows x width) weights (`scale` > 0).
/// With AVX2+FMA an explicit-SIMD copy runs: the compiler will not fuse the polynomial's
/// multiply-adds on its own, and this is the hottest element-wise loop (about 8% of a run).
pub fn exp_rows(rows: &mut [f32], width: usize, scale: f32, sums: &mut [f32]) {
    assert!(rows.len() == width * sums.len() || width == 0);
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the active level has AVX-512 and FMA.
        return unsafe { super::avx512::exp_rows(rows, width, scale, sums) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { exp_rows_fma(rows, width, scale, sums) };
    }
    exp_rows_portable(rows, width, scale, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_rows_fma(rows: &mut [f32], width: usize, scale: f32, sums: &mut [f32]) {
    use std::arch::x86_64::*;
    // e^(scale (x - max)) = 2^t with t = x * scale * log2(e) - max * scale * log2(e): one
    // multiply-add per value instead of a subtraction, a multiply and a range reduction by ln 2.
    let scale2 = scale * std::f32::consts::LOG2_E;
    for (row, sum) in rows.chunks_exact_mut(width).zip(sums.iter_mut()) {
        let max = row_max_avx(row);
        let (vscale, vshift) = (_mm256_set1_ps(scale2), _mm256_set1_ps(-max * scale2));
        let mut acc = _mm256_setzero_ps();
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            let x = _mm256_loadu_ps(chunk.as_ptr());
            let y = exp2_nonpositive(_mm256_fmadd_ps(x, vscale, vshift));
            _mm256_storeu_ps(chunk.as_mut_ptr(), y);
            acc = _mm256_add_ps(acc, y);
        }
        let mut tail = 0.0;
        for x in chunks.into_remainder() {
            *x = exp((*x - max) * scale);
            tail += *x;
        }
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        *sum = lanes.iter().sum::<f32>() + tail;
    }
}

/// The largest value of `row` with plain `vmaxps` (NaN-unaware, unlike `f32::max`, which
/// costs two more instructions per vector; a NaN score then poisons its row either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_max_avx(row: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let chunks = row.chunks_exact(2 * LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    // Two accumulators: a max has a latency of several cycles.
    let (mut a, mut b) = (
        _mm256_set1_ps(f32::NEG_INFINITY),
        _mm256_set1_ps(f32::NEG_INFINITY),
    );
    for chunk in chunks {
        a = _mm256_max_ps(a, _mm256_loadu_ps(chunk.as_ptr()));
        b = _mm256_max_ps(b, _mm256_loadu_ps(chunk.as_ptr().add(LANES)));
    }
    let mut lanes = [0f32; LANES];
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_max_ps(a, b));
    lanes.iter().fold(tail, |m, &x| m.max(x))
}

/// Exact (erf) GELU on eight lanes: [`gelu_erf_value`] with explicit fused multiply-adds (the
/// compiler keeps the polynomials as separate multiplies and adds, and `f32::min`/`max` as
/// three instructions each). The matrix kernels apply it to finished tiles in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn gelu_erf_fma(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // erf(x / sqrt 2) as in `erf`; max_ps returns its second operand for NaN (NaN -> -4).
    let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-4.0)), _mm256_set1_ps(4.0));
    let z2 = _mm256_mul_ps(z, z);
    let horner = |coefficients: &[f32]| {
        let mut acc = _mm256_set1_ps(coefficients[0]);
        for &c in &coefficients[1..] {
            acc = _mm256_fmadd_ps(acc, z2, _mm256_set1_ps(c));
        }
        acc
    };
    let (p, q) = (horner(&ERF_NUMERATOR), horner(&ERF_DENOMINATOR));
    let erf = _mm256_div_ps(_mm256_mul_ps(z, p), q);
    // 0.5 x (1 + erf) = 0.5 x + 0.5 x erf
    let half = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
    _mm256_fmadd_ps(half, erf, half)
}

/// `2^t` on eight lanes for t <= 0 (softmax after subtracting the row maximum): t = n + f with
/// n an integer and |f| <= 1/2, 2^f by a degree-5 polynomial (relative error 2.3e-7, fitted
/// to minimise it on [-1/2, 1/2]), and 2^n added to the result's exponent bits. Below -125
/// (weights under 2e-38 of the largest) the input is held at -125; NaN becomes -125 too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp2_nonpositive(t: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // max_ps returns its second operand when the first is NaN.
    let t = _mm256_max_ps(t, _mm256_set1_ps(-125.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let f = _mm256_sub_ps(t, n);
    let mut p = _mm256_set1_ps(1.327_647_1e-3);
    for c in [
        9.675_542e-3,
        5.550_713e-2,
        2.402_212e-1,
        6.931_469_4e-1,
        1.000_000_1,
    ] {
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
    }
    // p is in [0.7, 1.5], so adding n to its exponent stays a normal number for n >= -125.
    let shift = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), shift))
}

/// Fills every row of `rows` with `bias` (the starting value of an accumulating matrix product).
pub fn fill_rows(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_quantization_round_trips_within_half_a_step_and_survives_nan() {
        // Row 0 mixed signs, row 1 positive only (zero point 0), row 2 all zero, row 3 NaN.
        let width = 11;
        let mut rows: Vec<f32> = (0..4 * width)
            .map(|i| (i as f32 * 0.37).sin() * 3.0)
            .collect();
        rows[width..2 * width].iter_mut().for_each(|x| *x = x.abs());
        rows[2 * width..3 * width].fill(0.0);
        rows[3 * width + 4] = f32::NAN;
        let stride = 12;
        let (mut q, mut scales, mut zeros) = (vec![7u8; 4 * stride], vec![0f32; 4], vec![0; 4]);
        quantize_rows_u8(&rows, width, &mut q, stride, &mut scales, &mut zeros);
        assert_eq!(zeros[1], 0);
        assert_eq!((scales[2], zeros[2]), (0.0, 0));
        for r in [0, 1, 3] {
            assert!(scales[r] > 0.0 && (0..=255).contains(&zeros[r]), "row {r}");
            for i in 0..width {
                let x = rows[r * width + i];
                if x.is_nan() {
                    continue;
                }
                let back = (q[r * stride + i] as i32 - zeros[r]) as f32 * scales[r];
                assert!(
                    (back - x).abs() <= 0.5 * scales[r] * 1.001,
                    "row {r} at {i}: {back} vs {x}"
                );
            }
        }
        assert!(q[2 * stride..2 * stride + width].iter().all(|&b| b == 0));
        // Padding past the width is left as the caller set it.
        assert_eq!(q[stride - 1], 7);
    }

    #[test]
    fn exp_matches_std_in_relative_error() {
        let mut worst = 0f32;
        for i in -8730..=8800 {
            let x = i as f32 / 100.0;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        // Reference erf from its Taylor series / continued fraction is not in std; compare
        // against GELU computed in f64 with a high-accuracy erf (W. J. Cody's rational form
        // is overkill here: the series converges fast for |x| <= 6).
        fn erf64(x: f64) -> f64 {
            if x.abs() > 6.0 {
                return x.signum();
            }
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let xs: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).collect();
        let mut ys = xs.clone();
        gelu_erf(&mut ys);
        // The copy the matrix kernels inline gives the same values.
        let mut inlined = xs.clone();
        Activation::GeluErf.apply_inline(&mut inlined);
        for (&y, &z) in ys.iter().zip(&inlined) {
            assert!((y - z).abs() <= 1e-6, "{y} vs {z}");
        }
        for (&x, &y) in xs.iter().zip(&ys) {
            let x64 = x as f64;
            let want = 0.5 * x64 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
            assert!(
                (y as f64 - want).abs() < 1e-6,
                "gelu({x}) = {y}, want {want}"
            );
        }
    }

    #[test]
    fn exp_rows_give_softmax_after_division() {
        let mut rows = vec![
            1.0, 2.0, 3.0, -1e9, 0.5, 0.5, 0.5, 0.5, 0.0, 100.0, -100.0, 3.0,
        ];
        let mut sums = [0f32; 3];
        exp_rows(&mut rows, 4, 1.0, &mut sums);
        for (row, sum) in rows.chunks_mut(4).zip(sums) {
            row.iter_mut().for_each(|x| *x /= sum);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(rows[2] > rows[1] && rows[1] > rows[0] && rows[3] < 1e-30);
        let want = 1.0 / (1.0 + (-1f32).exp() + (-2f32).exp());
        assert!((rows[2] - want).abs() < 1e-6, "{} vs {want}", rows[2]);
        assert!((rows[4] - 0.25).abs() < 1e-7);
        assert!((rows[9] - 1.0).abs() < 1e-6);
        // A width that is not a multiple of the lane count, with a scale.
        let mut odd: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let mut sum = [0f32; 1];
        exp_rows(&mut odd, 11, 0.5, &mut sum);
        let want: f32 = (0..11).map(|i| ((i as f32 - 10.0) * 0.5).exp()).sum();
        assert!((sum[0] - want).abs() < 1e-5 * want);
    }

    /// Runs `kernel` at every explicit-SIMD level this CPU has (the active one included).
    #[allow(clippy::type_complexity)]
    fn exp_rows_here() -> Vec<(&'static str, fn(&mut [f32], usize, f32, &mut [f32]))> {
        let mut kernels: Vec<(&'static str, fn(&mut [f32], usize, f32, &mut [f32]))> =
            vec![("dispatched", exp_rows)];
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx2.supported() {
                // SAFETY: AVX2 and FMA checked just above.
                kernels.push(("avx2", |r, w, s, o| unsafe { exp_rows_fma(r, w, s, o) }));
            }
            if Isa::Avx512.supported() {
                // SAFETY: AVX-512 checked just above.
                kernels.push(("avx512", |r, w, s, o| unsafe {
                    super::super::avx512::exp_rows(r, w, s, o)
                }));
            }
        }
        kernels
    }

    #[test]
    fn simd_and_portable_exp_rows_agree() {
        // 77: tails of 8 and 16 lanes; 32: none.
        for (name, kernel) in exp_rows_here() {
            for width in [77, 32, 5] {
                simd_and_portable_exp_rows_agree_with(name, kernel, width);
            }
        }
    }

    fn simd_and_portable_exp_rows_agree_with(
        name: &str,
        kernel: fn(&mut [f32], usize, f32, &mut [f32]),
        width: usize,
    ) {
        let data: Vec<f32> = (0..width * 5)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.9)
            .collect();
        let (mut fast, mut portable) = (data.clone(), data);
        let (mut fast_sums, mut portable_sums) = ([0f32; 5], [0f32; 5]);
        kernel(&mut fast, width, 0.3, &mut fast_sums);
        exp_rows_portable(&mut portable, width, 0.3, &mut portable_sums);
        for (a, b) in fast
            .iter()
            .zip(&portable)
            .chain(fast_sums.iter().zip(&portable_sums))
        {
            // Weights are at most 1 (the row maximum's): what a softmax needs is their error
            // against that maximum, not the relative error of weights near e^-27. Sums (>= 1)
            // are held to a relative 1e-6.
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name} width {width}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn gelu_is_the_same_at_every_level() {
        let xs: Vec<f32> = (-700..=700).map(|i| i as f32 / 97.0).collect();
        let mut want = xs.clone();
        want.iter_mut().for_each(|x| *x = gelu_erf_value(*x));
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx2.supported() {
                let mut got = xs.clone();
                // SAFETY: AVX2 and FMA checked just above.
                unsafe { gelu_erf_lanes(&mut got) };
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-6, "avx2 {g} vs {w}");
                }
            }
            if Isa::Avx512.supported() {
                // 1401 values: a masked tail of 9.
                let mut got = xs.clone();
                // SAFETY: AVX-512 checked just above.
                unsafe { super::super::avx512::gelu_erf_slice(&mut got) };
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-6, "avx512 {g} vs {w}");
                }
            }
        }
        let mut dispatched = xs;
        gelu_erf(&mut dispatched);
        for (g, w) in dispatched.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn layer_norm_rows_normalise_each_row() {
        let width = 19; // not a multiple of the lane count, to cover the tail
        let mut rows: Vec<f32> = (0..width * 3)
            .map(|i| (i as f32 * 0.37).sin() * 5.0)
            .collect();
        let gamma = vec![1.0; width];
        let beta = vec![0.0; width];
        layer_norm_rows(&mut rows, &gamma, &beta, 1e-12);
        for row in rows.chunks(width) {
            let mean = row.iter().sum::<f32>() / width as f32;
            let var = row.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / width as f32;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "{mean} {var}"
            );
        }
    }
}
