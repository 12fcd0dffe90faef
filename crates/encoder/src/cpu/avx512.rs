//! The 512-bit kernels: the f32 matrix micro-kernel (12 rows x 32 columns, 24 accumulators),
//! the int8 one with and without VNNI (`vpdpwssd` fuses `vpmaddwd` and its add), their shared
//! tile store (bias, residual, activation, masked tail columns), and the element-wise kernels
//! attention and the feed-forward layer need at this width (softmax's exponentials, GELU).
//!
//! Everything here runs only where `isa::Isa::Avx512` or higher was detected; the callers
//! (`sgemm.rs`, `quant.rs`, `kernels.rs`) check that before they call in.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::kernels::{Activation, ERF_DENOMINATOR, ERF_NUMERATOR};
use super::quant::{ByteRows, ByteTile};
use super::sgemm::{Epilogue, Store};

/// Columns of one packed panel: two 16-lane registers.
pub(super) const NR: usize = 32;
/// Rows of the micro-kernels: 24 accumulators, two weight registers and a broadcast of the 32.
pub(super) const MR: usize = 12;
/// Depth of one f32 block: a 128 x 32 panel is 16 KiB, half of a 32 KiB L1.
const KC: usize = 128;
/// Depth pairs of one int8 block: 128 pairs x 32 columns x 2 x 2 bytes = 16 KiB.
pub(super) const KC_PAIRS: usize = 128;

/// `$kernel::<R>(args)` for a tile of R = `$left` rows when fewer than `MR` are left, else of
/// `MR`: the row count is a const parameter, so each tile height compiles to its own unrolled
/// kernel.
macro_rules! call_with_rows {
    ($left:expr, $kernel:ident($($arg:expr),* $(,)?)) => {
        match $left {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            9 => $kernel::<9>($($arg),*),
            10 => $kernel::<10>($($arg),*),
            11 => $kernel::<11>($($arg),*),
            _ => $kernel::<MR>($($arg),*),
        }
    };
}

/// `c = act(a @ packed + bias [+ c])` for `rows` rows of `a` (`lda` apart) into `c` (`ldc`
/// apart), where `packed` holds the (k x n) matrix in panels of 32 columns.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ, AVX2 and FMA; `packed` must hold n.div_ceil(32) x k x
/// 32 values, `a` and `c` their rows, and the epilogue's bias (if any) n values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f32_block(
    packed: &[f32],
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    rows: usize,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
) {
    // Equal depth blocks of at most KC (384 -> 3 x 128, 1536 -> 12 x 128).
    let blocks = k.div_ceil(KC);
    let mut k0 = 0;
    for block in 0..blocks {
        let kc = (k - k0) / (blocks - block);
        for panel in 0..n.div_ceil(NR) {
            let store = epilogue.for_panel(block, blocks, panel, NR, n);
            let b = packed.as_ptr().add((panel * k + k0) * NR);
            let mut r0 = 0;
            while r0 < rows {
                let a_ptr = a.as_ptr().add(r0 * lda + k0);
                let c_ptr = c.as_mut_ptr().add(r0 * ldc + panel * NR);
                call_with_rows!(rows - r0, f32_kernel(kc, a_ptr, lda, b, c_ptr, ldc, store));
                r0 += MR;
            }
        }
        k0 += kc;
    }
}

/// `c[R x cols] (+)= a[R x kc] @ b[kc x 32]` with all 32 columns' sums in registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
unsafe fn f32_kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    store: Store,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
        for (r, sums) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            sums[0] = _mm512_fmadd_ps(av, b0, sums[0]);
            sums[1] = _mm512_fmadd_ps(av, b1, sums[1]);
        }
    }
    store_tile(&acc, c, ldc, store);
}

/// Lanes of the first and second 16-lane half that hold one of `cols` (1..=32) columns.
#[inline(always)]
fn column_masks(cols: usize) -> (__mmask16, __mmask16) {
    let mask = |count: usize| match count {
        0 => 0,
        c if c >= 16 => 0xFFFF,
        c => ((1u32 << c) - 1) as __mmask16,
    };
    (mask(cols.min(16)), mask(cols.saturating_sub(16)))
}

/// Writes the R x 32 tile `acc` (columns 0-15 / 16-31 of each row) to `c` as `store` says,
/// storing only the tile's valid columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
pub(super) unsafe fn store_tile<const R: usize>(
    acc: &[[__m512; 2]; R],
    c: *mut f32,
    ldc: usize,
    store: Store,
) {
    let (m0, m1) = column_masks(store.cols);
    let full = store.cols == NR;
    let load = |ptr: *const f32, mask: __mmask16| match full {
        true => _mm512_loadu_ps(ptr),
        false => _mm512_maskz_loadu_ps(mask, ptr),
    };
    let (bias0, bias1) = match store.bias.is_null() {
        true => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        false => (load(store.bias, m0), load(store.bias.add(16), m1)),
    };
    for (r, sums) in acc.iter().enumerate() {
        let row = c.add(r * ldc);
        let mut v0 = _mm512_add_ps(sums[0], bias0);
        let mut v1 = _mm512_add_ps(sums[1], bias1);
        if store.keep {
            v0 = _mm512_add_ps(load(row, m0), v0);
            v1 = _mm512_add_ps(load(row.add(16), m1), v1);
        }
        if let Some(activation) = store.activation {
            (v0, v1) = match activation {
                Activation::GeluErf => (gelu_erf(v0), gelu_erf(v1)),
                _ => {
                    let mut values = [0f32; NR];
                    _mm512_storeu_ps(values.as_mut_ptr(), v0);
                    _mm512_storeu_ps(values.as_mut_ptr().add(16), v1);
                    activation.apply_inline(&mut values);
                    (
                        _mm512_loadu_ps(values.as_ptr()),
                        _mm512_loadu_ps(values.as_ptr().add(16)),
                    )
                }
            };
        }
        if full {
            _mm512_storeu_ps(row, v0);
            _mm512_storeu_ps(row.add(16), v1);
        } else {
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}

/// Exact (erf) GELU on sixteen lanes: `kernels::gelu_erf_fma` at 512 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
pub(super) unsafe fn gelu_erf(x: __m512) -> __m512 {
    // erf(x / sqrt 2) with x clamped to [-4, 4]; max_ps returns its second operand for NaN.
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
    let z2 = _mm512_mul_ps(z, z);
    let horner = |coefficients: &[f32]| {
        let mut acc = _mm512_set1_ps(coefficients[0]);
        for &c in &coefficients[1..] {
            acc = _mm512_fmadd_ps(acc, z2, _mm512_set1_ps(c));
        }
        acc
    };
    let (p, q) = (horner(&ERF_NUMERATOR), horner(&ERF_DENOMINATOR));
    let erf = _mm512_div_ps(_mm512_mul_ps(z, p), q);
    let half = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
    _mm512_fmadd_ps(half, erf, half)
}

/// Exact GELU in place on sixteen lanes at a time (the `gemm` fallback's separate pass).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(super) unsafe fn gelu_erf_slice(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let y = gelu_erf(_mm512_loadu_ps(chunk.as_ptr()));
        _mm512_storeu_ps(chunk.as_mut_ptr(), y);
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mask = column_masks(tail.len()).0;
        let y = gelu_erf(_mm512_maskz_loadu_ps(mask, tail.as_ptr()));
        _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, y);
    }
}

/// `2^t` on sixteen lanes for t <= 0: `kernels::exp2_nonpositive` at 512 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
unsafe fn exp2_nonpositive(t: __m512) -> __m512 {
    let t = _mm512_max_ps(t, _mm512_set1_ps(-125.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let f = _mm512_sub_ps(t, n);
    let mut p = _mm512_set1_ps(1.327_647_1e-3);
    for c in [
        9.675_542e-3,
        5.550_713e-2,
        2.402_212e-1,
        6.931_469_4e-1,
        1.000_000_1,
    ] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    let shift = _mm512_slli_epi32::<23>(_mm512_cvtps_epi32(n));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), shift))
}

/// `kernels::exp_rows` at 512 bits: `e^(scale * (x - max))` in place for every `width`-long
/// row, each row's sum into `sums`; the row's tail runs masked rather than scalar.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(super) unsafe fn exp_rows(rows: &mut [f32], width: usize, scale: f32, sums: &mut [f32]) {
    let scale2 = scale * std::f32::consts::LOG2_E;
    for (row, sum) in rows.chunks_exact_mut(width).zip(sums.iter_mut()) {
        let max = row_max(row);
        let (vscale, vshift) = (_mm512_set1_ps(scale2), _mm512_set1_ps(-max * scale2));
        let mut acc = _mm512_setzero_ps();
        let mut chunks = row.chunks_exact_mut(16);
        for chunk in &mut chunks {
            let x = _mm512_loadu_ps(chunk.as_ptr());
            let y = exp2_nonpositive(_mm512_fmadd_ps(x, vscale, vshift));
            _mm512_storeu_ps(chunk.as_mut_ptr(), y);
            acc = _mm512_add_ps(acc, y);
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mask = column_masks(tail.len()).0;
            let x = _mm512_maskz_loadu_ps(mask, tail.as_ptr());
            let y = exp2_nonpositive(_mm512_fmadd_ps(x, vscale, vshift));
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, y);
            acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(mask, y));
        }
        *sum = _mm512_reduce_add_ps(acc);
    }
}

/// The largest value of `row` (plain `vmaxps`, NaN-unaware like `kernels::row_max_avx`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
unsafe fn row_max(row: &[f32]) -> f32 {
    let (mut a, mut b) = (
        _mm512_set1_ps(f32::NEG_INFINITY),
        _mm512_set1_ps(f32::NEG_INFINITY),
    );
    let chunks = row.chunks_exact(32);
    let tail = chunks.remainder();
    for chunk in chunks {
        a = _mm512_max_ps(a, _mm512_loadu_ps(chunk.as_ptr()));
        b = _mm512_max_ps(b, _mm512_loadu_ps(chunk.as_ptr().add(16)));
    }
    let max = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
    tail.iter().fold(max, |m, &x| m.max(x))
}

/// One int8 micro-kernel call: an R x 32 output tile over `pairs` depth pairs of int16
/// activations and weights (see `quant.rs` for the layout).
pub(super) struct Int8Tile {
    pub(super) pairs: usize,
    pub(super) a: *const i16,
    pub(super) lda: usize,
    pub(super) b: *const i16,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) store: Store,
    pub(super) row_scales: *const f32,
    pub(super) col_scales: *const f32,
}

/// Stamps an int8 row block and micro-kernel for one feature set: `$dot(acc, a, b)` adds the
/// pairwise products of `a` and `b` to the int32 lanes of `acc`.
macro_rules! int8_kernels {
    ($block:ident, $kernel:ident, $features:literal, $dot:expr) => {
        /// The int8 product of one row block: `rows` rows of quantized activations (`lda`
        /// apart, with their scales) against every panel of the matrix, dequantized into `c`
        /// (`ldc` apart) through the epilogue.
        ///
        /// # Safety
        /// The CPU must have the function's features; `packed` holds panels of 32 columns
        /// over `pairs` depth pairs covering n columns, `a`, `row_scales` and `c` their rows,
        /// `col_scales` n.div_ceil(32) x 32 values, and the epilogue's bias n values.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $block(
            packed: &[i16],
            col_scales: &[f32],
            pairs: usize,
            n: usize,
            a: &[i16],
            lda: usize,
            row_scales: &[f32],
            rows: usize,
            c: &mut [f32],
            ldc: usize,
            epilogue: Epilogue,
        ) {
            let blocks = pairs.div_ceil(KC_PAIRS);
            for block in 0..blocks {
                let p0 = block * KC_PAIRS;
                let pc = KC_PAIRS.min(pairs - p0);
                for panel in 0..n.div_ceil(NR) {
                    let store = epilogue.for_panel(block, blocks, panel, NR, n);
                    let b = packed.as_ptr().add((panel * pairs + p0) * NR * 2);
                    let mut r0 = 0;
                    while r0 < rows {
                        let tile = Int8Tile {
                            pairs: pc,
                            a: a.as_ptr().add(r0 * lda + 2 * p0),
                            lda,
                            b,
                            c: c.as_mut_ptr().add(r0 * ldc + panel * NR),
                            ldc,
                            store,
                            row_scales: row_scales.as_ptr().add(r0),
                            col_scales: col_scales.as_ptr().add(panel * NR),
                        };
                        call_with_rows!(rows - r0, $kernel(tile));
                        r0 += MR;
                    }
                }
            }
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn $kernel<const R: usize>(t: Int8Tile) {
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            for p in 0..t.pairs {
                let b0 = _mm512_loadu_si512(t.b.add(p * NR * 2) as *const _);
                let b1 = _mm512_loadu_si512(t.b.add(p * NR * 2 + NR) as *const _);
                for (r, sums) in acc.iter_mut().enumerate() {
                    let pair = (t.a.add(r * t.lda + 2 * p) as *const i32).read_unaligned();
                    let av = _mm512_set1_epi32(pair);
                    sums[0] = $dot(sums[0], av, b0);
                    sums[1] = $dot(sums[1], av, b1);
                }
            }
            let ws0 = _mm512_loadu_ps(t.col_scales);
            let ws1 = _mm512_loadu_ps(t.col_scales.add(16));
            let mut out = [[_mm512_setzero_ps(); 2]; R];
            for (r, (sums, values)) in acc.iter().zip(out.iter_mut()).enumerate() {
                let s = _mm512_set1_ps(*t.row_scales.add(r));
                values[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(sums[0]), _mm512_mul_ps(ws0, s));
                values[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(sums[1]), _mm512_mul_ps(ws1, s));
            }
            store_tile(&out, t.c, t.ldc, t.store);
        }
    };
}

int8_kernels!(
    int8_block,
    int8_kernel,
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma",
    |acc, a, b| _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
);
int8_kernels!(
    int8_block_vnni,
    int8_kernel_vnni,
    "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma",
    |acc, a, b| _mm512_dpwssd_epi32(acc, a, b)
);

/// Depth quads per block of the byte kernel: 192 quads x 32 columns x 4 bytes = 24 KiB, half
/// of the 48 KiB L1 of Ice Lake and Zen 5 (1536 -> 2 blocks; measured 20% faster there than
/// 128-quad blocks, the same as one 384-quad block).
const KC_QUADS: usize = 192;

/// The byte-activation int8 product of one row block (`vpdpbusd`: unsigned activation bytes
/// times signed weight bytes, four per int32 lane), dequantized into `c` (`ldc` apart) through
/// the epilogue, with each row's zero point taken out through the column sums.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ and VNNI; `packed` holds panels of 32 columns over
/// `quads` depth quads covering n columns, `col_sums` and `col_scales` n.div_ceil(32) x 32
/// values, `rows` its rows (4 x quads bytes apart) with their scales and zero points, `c`
/// its rows, and the epilogue's bias n values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn int8_block_u8(
    packed: &[i8],
    col_sums: &[i32],
    col_scales: &[f32],
    quads: usize,
    n: usize,
    rows: &ByteRows,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
) {
    let lda = 4 * quads;
    let blocks = quads.div_ceil(KC_QUADS);
    for block in 0..blocks {
        let q0 = block * KC_QUADS;
        let qc = KC_QUADS.min(quads - q0);
        for panel in 0..n.div_ceil(NR) {
            let store = epilogue.for_panel(block, blocks, panel, NR, n);
            let mut r0 = 0;
            while r0 < rows.rows {
                let tile = ByteTile {
                    quads: qc,
                    a: rows.a.as_ptr().add(r0 * lda + 4 * q0),
                    lda,
                    b: packed.as_ptr().add((panel * quads + q0) * NR * 4),
                    c: c.as_mut_ptr().add(r0 * ldc + panel * NR),
                    ldc,
                    store,
                    row_scales: rows.scales.as_ptr().add(r0),
                    row_zeros: rows.zeros.as_ptr().add(r0),
                    col_scales: col_scales.as_ptr().add(panel * NR),
                    // The zero-point correction goes in once, with the first depth block.
                    col_sums: if block == 0 {
                        col_sums.as_ptr().add(panel * NR)
                    } else {
                        std::ptr::null()
                    },
                };
                call_with_rows!(rows.rows - r0, int8_kernel_u8(tile));
                r0 += MR;
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")]
#[inline]
unsafe fn int8_kernel_u8<const R: usize>(t: ByteTile) {
    let mut acc = [[_mm512_setzero_si512(); 2]; R];
    if !t.col_sums.is_null() {
        let s0 = _mm512_loadu_si512(t.col_sums as *const _);
        let s1 = _mm512_loadu_si512(t.col_sums.add(16) as *const _);
        for (r, sums) in acc.iter_mut().enumerate() {
            let zero = _mm512_set1_epi32(-*t.row_zeros.add(r));
            sums[0] = _mm512_mullo_epi32(zero, s0);
            sums[1] = _mm512_mullo_epi32(zero, s1);
        }
    }
    for q in 0..t.quads {
        let b0 = _mm512_loadu_si512(t.b.add(q * NR * 4) as *const _);
        let b1 = _mm512_loadu_si512(t.b.add(q * NR * 4 + 64) as *const _);
        for (r, sums) in acc.iter_mut().enumerate() {
            let quad = (t.a.add(r * t.lda + 4 * q) as *const i32).read_unaligned();
            let av = _mm512_set1_epi32(quad);
            sums[0] = _mm512_dpbusd_epi32(sums[0], av, b0);
            sums[1] = _mm512_dpbusd_epi32(sums[1], av, b1);
        }
    }
    let ws0 = _mm512_loadu_ps(t.col_scales);
    let ws1 = _mm512_loadu_ps(t.col_scales.add(16));
    let mut out = [[_mm512_setzero_ps(); 2]; R];
    for (r, (sums, values)) in acc.iter().zip(out.iter_mut()).enumerate() {
        let s = _mm512_set1_ps(*t.row_scales.add(r));
        values[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(sums[0]), _mm512_mul_ps(ws0, s));
        values[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(sums[1]), _mm512_mul_ps(ws1, s));
    }
    store_tile(&out, t.c, t.ldc, t.store);
}

/// Depth pairs of one bf16 block: 128 pairs x 32 columns x 4 bytes = 16 KiB.
const KC_BF16_PAIRS: usize = 128;

/// `c = act(a @ packed + bias [+ c])` in bf16 (`vdpbf16ps`, f32 sums) for `rows` rows of bf16
/// activations (`lda` apart, depth padded to even) against panels of 32 columns of bf16 pairs.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ and BF16; `packed` holds n.div_ceil(32) x `pairs` x
/// 64 values, `a` and `c` their rows, and the epilogue's bias n values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bf16_block(
    packed: &[u16],
    pairs: usize,
    n: usize,
    a: &[u16],
    lda: usize,
    rows: usize,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
) {
    let blocks = pairs.div_ceil(KC_BF16_PAIRS);
    for block in 0..blocks {
        let p0 = block * KC_BF16_PAIRS;
        let pc = KC_BF16_PAIRS.min(pairs - p0);
        for panel in 0..n.div_ceil(NR) {
            let store = epilogue.for_panel(block, blocks, panel, NR, n);
            let b = packed.as_ptr().add((panel * pairs + p0) * NR * 2);
            let mut r0 = 0;
            while r0 < rows {
                let a_ptr = a.as_ptr().add(r0 * lda + 2 * p0);
                let c_ptr = c.as_mut_ptr().add(r0 * ldc + panel * NR);
                call_with_rows!(rows - r0, bf16_kernel(pc, a_ptr, lda, b, c_ptr, ldc, store));
                r0 += MR;
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")]
#[inline]
unsafe fn bf16_kernel<const R: usize>(
    pairs: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    store: Store,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for p in 0..pairs {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR * 2) as *const _));
        let b1: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(b.add(p * NR * 2 + NR) as *const _));
        for (r, sums) in acc.iter_mut().enumerate() {
            let pair = (a.add(r * lda + 2 * p) as *const i32).read_unaligned();
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
            sums[0] = _mm512_dpbf16_ps(sums[0], av, b0);
            sums[1] = _mm512_dpbf16_ps(sums[1], av, b1);
        }
    }
    store_tile(&acc, c, ldc, store);
}
