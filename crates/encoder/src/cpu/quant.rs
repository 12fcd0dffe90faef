//! Int8 dense layers for the CPU: weights quantized to int8 per output channel (symmetric),
//! activations quantized per row at run time to as many bits as int32 accumulation allows
//! (±32767 levels at depth 384, ±11008 at 1536), multiplied as int16 pairs and dequantized into
//! the f32 output, where the layer's epilogue (`sgemm::Affine`) applies. One kernel per
//! instruction-set level: AVX2 `vpmaddwd` + `vpaddd` (16 products per instruction against 8 per
//! f32 FMA, but each needs an add too), AVX-VNNI `vpdpwssd` (the two fused), and both again at
//! 512 bits (`avx512.rs`); a portable copy elsewhere.
//!
//! Only the weights lose precision in a way that matters; the error is measured against f32
//! on the reference fixture (`tests/encoder_reference.rs`).

use rayon::prelude::*;

use super::isa::Isa;
use super::kernels;
// The f32 kernel's tile (16 columns: two registers of eight int32 sums here) and row blocks:
// both kernels finish their tiles with the same `store_tile`.
use super::sgemm::{Affine, Epilogue, Store, MC, MR, NR};

/// Depth pairs per block: 256 pairs x 16 columns x 2 x 2 bytes = 16 KiB panel, half of L1.
const KC_PAIRS: usize = 256;
/// Depth quads per block of the 256-bit byte kernel: 256 x 16 columns x 4 bytes = 16 KiB.
const KC_QUADS: usize = 256;
const WEIGHT_MAX: f32 = 127.0;

/// The int8 micro-kernel a matrix was packed for (panel widths differ between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// Plain Rust over 16-column panels, vectorised by the compiler, rows across the pool.
    Portable,
    /// 6 x 16 tiles, `vpmaddwd` then `vpaddd`.
    Avx2,
    /// 6 x 16 tiles, `vpdpwssd` on 256-bit registers.
    AvxVnni,
    /// 12 x 32 tiles, `vpmaddwd` then `vpaddd` on 512-bit registers.
    Avx512,
    /// 12 x 32 tiles, `vpdpwssd` on 512-bit registers.
    Avx512Vnni,
    /// 6 x 16 tiles, `vpdpbusd` on 256-bit registers: activations as unsigned bytes.
    AvxVnniU8,
    /// 12 x 32 tiles, `vpdpbusd` on 512-bit registers: activations as unsigned bytes.
    Avx512VnniU8,
    /// 32 x 32 passes of AMX `tdpbusd` tiles over the `Avx512VnniU8` layout (which runs the
    /// row and depth tails).
    AmxU8,
}

impl Int8Kernel {
    pub fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Portable => Self::Portable,
            Isa::Avx2 => Self::Avx2,
            Isa::AvxVnni => Self::AvxVnni,
            Isa::Avx512 => Self::Avx512,
            // AMX tiles need u8 x s8 operands; the int16-pair weights run on VNNI there.
            Isa::Avx512Vnni | Isa::Amx => Self::Avx512Vnni,
        }
    }

    /// The kernel for layers whose activations may take 8 bits (`vpdpbusd`: four products per
    /// lane and instruction, twice `vpdpwssd`'s), where the level has one; else `for_isa`.
    /// Measured on the reference fixture and 60 test articles (lowest cosine to f32): 8-bit
    /// activations everywhere 0.99896, everywhere but the QKV product 0.99929, none 0.99982,
    /// so the encoder keeps 15-bit activations for QKV (LayerNorm outputs with outlier
    /// channels) and uses these for the other three products.
    pub fn narrow_for_isa(isa: Isa) -> Self {
        match isa {
            Isa::AvxVnni => Self::AvxVnniU8,
            Isa::Avx512Vnni => Self::Avx512VnniU8,
            Isa::Amx => Self::AmxU8,
            other => Self::for_isa(other),
        }
    }

    /// Whether activations are quantized to unsigned bytes (else to int16 pairs).
    pub fn unsigned_activations(self) -> bool {
        matches!(self, Self::AvxVnniU8 | Self::Avx512VnniU8 | Self::AmxU8)
    }

    /// The lowest instruction-set level that runs the kernel.
    pub fn isa(self) -> Isa {
        match self {
            Self::Portable => Isa::Portable,
            Self::Avx2 => Isa::Avx2,
            Self::AvxVnni => Isa::AvxVnni,
            Self::Avx512 => Isa::Avx512,
            Self::Avx512Vnni | Self::Avx512VnniU8 => Isa::Avx512Vnni,
            Self::AvxVnniU8 => Isa::AvxVnni,
            Self::AmxU8 => Isa::Amx,
        }
    }

    /// Columns per packed panel.
    pub fn panel_width(self) -> usize {
        match self {
            Self::Avx512 | Self::Avx512Vnni | Self::Avx512VnniU8 | Self::AmxU8 => 32,
            _ => NR,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2 vpmaddwd 6x16",
            Self::AvxVnni => "avx-vnni vpdpwssd 6x16",
            Self::Avx512 => "avx512 vpmaddwd 12x32",
            Self::Avx512Vnni => "avx512-vnni vpdpwssd 12x32",
            Self::AvxVnniU8 => "avx-vnni vpdpbusd u8 6x16",
            Self::Avx512VnniU8 => "avx512-vnni vpdpbusd u8 12x32",
            Self::AmxU8 => "amx tdpbusd u8 32x32",
        }
    }
}

/// A weight matrix (outputs x inputs) in int8, packed as int16 pairs for its kernel.
pub struct QuantizedMatrix {
    /// Input depth, and depth rounded up to even (pairs of inputs share one int32 lane).
    k: usize,
    k_even: usize,
    n: usize,
    kernel: Int8Kernel,
    /// Int16-pair kernels: panels of `kernel.panel_width()` columns; per depth pair, each
    /// column's (w[2p], w[2p+1]). Empty for the byte kernels.
    data: Vec<i16>,
    /// Depth quads (byte kernels: four inputs share one int32 lane).
    quads: usize,
    /// Byte kernels: panels as above, per depth quad each column's w[4q..4q + 4]. Else empty.
    bytes: Vec<i8>,
    /// Byte kernels: each column's sum of quantized weights, zero past `n`, for the
    /// activations' zero point: sum (q - zero) w = sum q w - zero * sum w.
    col_sums: Vec<i32>,
    /// Per-column dequantization scale, zero past `n`.
    scales: Vec<f32>,
    /// Largest activation magnitude after quantization: keeps `k * ACT_MAX * 127` < 2^31.
    activation_max: f32,
}

impl QuantizedMatrix {
    /// Quantizes a weight stored (n x k) row-major, as `transformers` saves dense layers,
    /// packed for `kernel`.
    pub fn from_rows(weight: &[f32], n: usize, k: usize, kernel: Int8Kernel) -> Self {
        assert_eq!(weight.len(), n * k);
        let k_even = k + k % 2;
        let pairs = k_even / 2;
        let quads = k.div_ceil(4);
        let nr = kernel.panel_width();
        let panels = n.div_ceil(nr);
        let bytewise = kernel.unsigned_activations();
        let mut data = vec![0i16; if bytewise { 0 } else { panels * pairs * nr * 2 }];
        let mut bytes = vec![0i8; if bytewise { panels * quads * nr * 4 } else { 0 }];
        let mut col_sums = vec![0i32; if bytewise { panels * nr } else { 0 }];
        let mut scales = vec![0f32; panels * nr];
        for (col, row) in weight.chunks_exact(k).enumerate() {
            let max = row.iter().fold(0f32, |m, &w| m.max(w.abs()));
            let scale = if max > 0.0 { max / WEIGHT_MAX } else { 1.0 };
            scales[col] = scale;
            let (panel, lane) = (col / nr, col % nr);
            for (kk, &w) in row.iter().enumerate() {
                let level = (w / scale).round() as i8;
                if bytewise {
                    bytes[((panel * quads + kk / 4) * nr + lane) * 4 + kk % 4] = level;
                    col_sums[col] += level as i32;
                } else {
                    data[((panel * pairs + kk / 2) * nr + lane) * 2 + kk % 2] = level as i16;
                }
            }
        }
        let activation_max = ((i32::MAX as f64 / (k_even as f64 * WEIGHT_MAX as f64)).floor())
            .min(i16::MAX as f64) as f32;
        Self {
            k,
            k_even,
            n,
            kernel,
            data,
            quads,
            bytes,
            col_sums,
            scales,
            activation_max,
        }
    }

    /// `c (m x n) = act(a (m x k) @ W^T + bias [+ c])` as `affine` says, row-major, rows split
    /// across the rayon pool.
    pub fn affine(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine) {
        assert_eq!(a.len(), m * self.k);
        assert_eq!(c.len(), m * self.n);
        assert_eq!(affine.bias.len(), self.n);
        // A matrix packed for a kernel this CPU lacks must not reach its instructions.
        assert!(
            self.kernel.isa().supported(),
            "matrix packed for {:?}, which this CPU lacks",
            self.kernel
        );
        self.affine_on(a, c, affine, false)
    }

    /// `affine`, on the kernel's plain-Rust twin when `portable` (the tests' reference).
    fn affine_on(&self, a: &[f32], c: &mut [f32], affine: Affine, portable: bool) {
        let (k, n) = (self.k, self.n);
        let epilogue = Epilogue::of(&affine);
        if self.kernel.unsigned_activations() {
            let stride = 4 * self.quads;
            return c.par_chunks_mut(MC * n).zip(a.par_chunks(MC * k)).for_each(
                |(c_block, a_block)| {
                    BYTE_ROWS.with_borrow_mut(|(quantized, row_scales, row_zeros)| {
                        let rows = a_block.len() / k;
                        quantized.clear();
                        quantized.resize(rows * stride, 0);
                        row_scales.clear();
                        row_scales.resize(rows, 0.0);
                        row_zeros.clear();
                        row_zeros.resize(rows, 0);
                        kernels::quantize_rows_u8(
                            a_block, k, quantized, stride, row_scales, row_zeros,
                        );
                        let rows = ByteRows {
                            a: quantized,
                            scales: row_scales,
                            zeros: row_zeros,
                            rows,
                        };
                        if portable {
                            self.bytes_portable(&rows, c_block, &affine)
                        } else {
                            self.bytes_block(&rows, c_block, epilogue, &affine)
                        }
                    })
                },
            );
        }
        c.par_chunks_mut(MC * n)
            .zip(a.par_chunks(MC * k))
            .for_each(|(c_block, a_block)| {
                QUANTIZED_ROWS.with_borrow_mut(|(quantized, row_scales)| {
                    let rows = a_block.len() / k;
                    self.quantize_rows(a_block, rows, quantized, row_scales);
                    if portable {
                        self.block_portable(quantized, row_scales, rows, c_block, &affine)
                    } else {
                        self.block(quantized, row_scales, rows, c_block, epilogue, &affine)
                    }
                })
            });
    }

    /// One row block: `rows` quantized rows (`k_even` apart) into `c` (rows x n).
    fn block(
        &self,
        a: &[i16],
        row_scales: &[f32],
        rows: usize,
        c: &mut [f32],
        epilogue: Epilogue,
        affine: &Affine,
    ) {
        assert!(a.len() >= rows * self.k_even && row_scales.len() >= rows);
        assert!(c.len() >= rows * self.n);
        let (pairs, n, lda) = (self.k_even / 2, self.n, self.k_even);
        // SAFETY (each arm): the CPU has the kernel's features (asserted in `affine`); the
        // buffers hold the rows asserted above, the packed data and scales cover every panel
        // (built by `from_rows` for this kernel), and the bias holds n values (asserted in
        // `affine`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use super::avx512;
            let (data, scales) = (&self.data, &self.scales);
            match self.kernel {
                Int8Kernel::Avx2 => return self.block_avx2(a, row_scales, rows, c, epilogue),
                Int8Kernel::AvxVnni => return self.block_vnni(a, row_scales, rows, c, epilogue),
                Int8Kernel::Avx512 => {
                    return avx512::int8_block(
                        data, scales, pairs, n, a, lda, row_scales, rows, c, n, epilogue,
                    )
                }
                Int8Kernel::Avx512Vnni => {
                    return avx512::int8_block_vnni(
                        data, scales, pairs, n, a, lda, row_scales, rows, c, n, epilogue,
                    )
                }
                Int8Kernel::Portable => {}
                Int8Kernel::AvxVnniU8 | Int8Kernel::Avx512VnniU8 | Int8Kernel::AmxU8 => {
                    unreachable!("byte kernels run in `bytes_block`")
                }
            }
        }
        let _ = (pairs, lda, epilogue);
        self.block_portable(a, row_scales, rows, c, affine);
    }

    /// One row block of byte-quantized activations into `c` (rows x n).
    fn bytes_block(&self, rows: &ByteRows, c: &mut [f32], epilogue: Epilogue, affine: &Affine) {
        let stride = 4 * self.quads;
        assert!(rows.a.len() >= rows.rows * stride);
        assert!(rows.scales.len() >= rows.rows && rows.zeros.len() >= rows.rows);
        assert!(c.len() >= rows.rows * self.n);
        // SAFETY (each arm): the CPU has the kernel's features (asserted in `affine`); the
        // buffers hold the rows asserted above, the packed bytes, column sums and scales cover
        // every panel (built by `from_rows` for this kernel), and the bias holds n values
        // (asserted in `affine`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self.kernel {
                Int8Kernel::AvxVnniU8 => return self.block_vnni_u8(rows, c, epilogue),
                Int8Kernel::Avx512VnniU8 | Int8Kernel::AmxU8 => {
                    // The same arguments and layout; AMX tiles where the matrix asks for them.
                    let block = match self.kernel {
                        Int8Kernel::AmxU8 => super::amx::int8_block_amx,
                        _ => super::avx512::int8_block_u8,
                    };
                    return block(
                        &self.bytes,
                        &self.col_sums,
                        &self.scales,
                        self.quads,
                        self.n,
                        rows,
                        c,
                        self.n,
                        epilogue,
                    );
                }
                _ => {}
            }
        }
        let _ = epilogue;
        self.bytes_portable(rows, c, affine);
    }

    /// The byte kernels' arithmetic in plain Rust (the tests' reference).
    fn bytes_portable(&self, rows: &ByteRows, c: &mut [f32], affine: &Affine) {
        let (quads, n, nr) = (self.quads, self.n, self.kernel.panel_width());
        let stride = 4 * quads;
        for r in 0..rows.rows {
            let qa = &rows.a[r * stride..(r + 1) * stride];
            let out = &mut c[r * n..(r + 1) * n];
            for (panel, out) in out.chunks_mut(nr).enumerate() {
                let weights = &self.bytes[panel * quads * nr * 4..(panel + 1) * quads * nr * 4];
                let base = panel * nr;
                let mut sums = [0i32; 32];
                let sums = &mut sums[..nr];
                for (sum, &col_sum) in sums.iter_mut().zip(&self.col_sums[base..base + nr]) {
                    *sum = -rows.zeros[r] * col_sum;
                }
                for (quad, w) in qa.chunks_exact(4).zip(weights.chunks_exact(nr * 4)) {
                    for (sum, w) in sums.iter_mut().zip(w.chunks_exact(4)) {
                        for (&x, &w) in quad.iter().zip(w) {
                            *sum += x as i32 * w as i32;
                        }
                    }
                }
                for (j, value) in out.iter_mut().enumerate() {
                    let product = sums[j] as f32 * rows.scales[r] * self.scales[base + j];
                    let biased = product + affine.bias[base + j];
                    *value = if affine.residual {
                        *value + biased
                    } else {
                        biased
                    };
                }
            }
            if let Some(activation) = affine.activation {
                activation.apply(out);
            }
        }
    }

    /// The 256-bit byte kernel's row block (6 x 16 tiles, `vpdpbusd`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn block_vnni_u8(&self, rows: &ByteRows, c: &mut [f32], epilogue: Epilogue) {
        let (quads, n, lda) = (self.quads, self.n, 4 * self.quads);
        let blocks = quads.div_ceil(KC_QUADS);
        for block in 0..blocks {
            let q0 = block * KC_QUADS;
            let qc = KC_QUADS.min(quads - q0);
            for panel in 0..n.div_ceil(NR) {
                let store = epilogue.for_tile(block, blocks, panel, n);
                let mut r0 = 0;
                while r0 < rows.rows {
                    let tile = ByteTile {
                        quads: qc,
                        a: rows.a.as_ptr().add(r0 * lda + 4 * q0),
                        lda,
                        b: self.bytes.as_ptr().add((panel * quads + q0) * NR * 4),
                        c: c.as_mut_ptr().add(r0 * n + panel * NR),
                        ldc: n,
                        store,
                        row_scales: rows.scales.as_ptr().add(r0),
                        row_zeros: rows.zeros.as_ptr().add(r0),
                        col_scales: self.scales.as_ptr().add(panel * NR),
                        // The zero-point correction goes in once, with the first depth block.
                        col_sums: if block == 0 {
                            self.col_sums.as_ptr().add(panel * NR)
                        } else {
                            std::ptr::null()
                        },
                    };
                    match rows.rows - r0 {
                        1 => kernel_vnni_u8::<1>(tile),
                        2 => kernel_vnni_u8::<2>(tile),
                        3 => kernel_vnni_u8::<3>(tile),
                        4 => kernel_vnni_u8::<4>(tile),
                        5 => kernel_vnni_u8::<5>(tile),
                        _ => kernel_vnni_u8::<MR>(tile),
                    }
                    r0 += MR;
                }
            }
        }
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

    /// The same arithmetic in plain Rust: per row, 16 columns' sums at a time in an array the
    /// compiler vectorises for the build's baseline (and as the tests' reference).
    fn block_portable(
        &self,
        a: &[i16],
        row_scales: &[f32],
        rows: usize,
        c: &mut [f32],
        affine: &Affine,
    ) {
        let (pairs, n, nr) = (self.k_even / 2, self.n, self.kernel.panel_width());
        for r in 0..rows {
            let qa = &a[r * self.k_even..(r + 1) * self.k_even];
            let out = &mut c[r * n..(r + 1) * n];
            for (panel, out) in out.chunks_mut(nr).enumerate() {
                let weights = &self.data[panel * pairs * nr * 2..(panel + 1) * pairs * nr * 2];
                let mut sums = [0i32; 32];
                let sums = &mut sums[..nr];
                for (pair, w) in qa.chunks_exact(2).zip(weights.chunks_exact(nr * 2)) {
                    let (a0, a1) = (pair[0] as i32, pair[1] as i32);
                    for (sum, w) in sums.iter_mut().zip(w.chunks_exact(2)) {
                        *sum += a0 * w[0] as i32 + a1 * w[1] as i32;
                    }
                }
                let base = panel * nr;
                for (j, value) in out.iter_mut().enumerate() {
                    let product = sums[j] as f32 * row_scales[r] * self.scales[base + j];
                    let biased = product + affine.bias[base + j];
                    *value = if affine.residual {
                        *value + biased
                    } else {
                        biased
                    };
                }
            }
            if let Some(activation) = affine.activation {
                activation.apply(out);
            }
        }
    }
}

/// Stamps the AVX2-width row block and micro-kernel for one feature set: `$dot(acc, a, b)`
/// adds the pairwise products of `a` and `b` to the int32 lanes of `acc`.
macro_rules! int8_avx2_kernels {
    ($block:ident, $kernel:ident, $features:literal, $dot:expr) => {
        impl QuantizedMatrix {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            unsafe fn $block(
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
                                1 => $kernel::<1>(args),
                                2 => $kernel::<2>(args),
                                3 => $kernel::<3>(args),
                                4 => $kernel::<4>(args),
                                5 => $kernel::<5>(args),
                                _ => $kernel::<MR>(args),
                            }
                            r0 += MR;
                        }
                    }
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn $kernel<const R: usize>(t: Tile) {
            use std::arch::x86_64::*;
            let mut lo = [_mm256_setzero_si256(); R];
            let mut hi = [_mm256_setzero_si256(); R];
            for p in 0..t.pairs {
                let b0 = _mm256_loadu_si256(t.b.add(p * NR * 2) as *const __m256i);
                let b1 = _mm256_loadu_si256(t.b.add(p * NR * 2 + NR) as *const __m256i);
                for r in 0..R {
                    let pair = (t.a.add(r * t.lda + 2 * p) as *const i32).read_unaligned();
                    let av = _mm256_set1_epi32(pair);
                    lo[r] = $dot(lo[r], av, b0);
                    hi[r] = $dot(hi[r], av, b1);
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
    };
}

int8_avx2_kernels!(block_avx2, kernel_avx2, "avx2,fma", |acc, a, b| {
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
});
int8_avx2_kernels!(block_vnni, kernel_vnni, "avx2,fma,avxvnni", |acc, a, b| {
    _mm256_dpwssd_avx_epi32(acc, a, b)
});

/// `c[R x 16] (+)= dequantize(a[R x 4 quads] . b[4 quads x 16] - zero * col_sums)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
#[inline]
unsafe fn kernel_vnni_u8<const R: usize>(t: ByteTile) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    if !t.col_sums.is_null() {
        let s0 = _mm256_loadu_si256(t.col_sums as *const __m256i);
        let s1 = _mm256_loadu_si256(t.col_sums.add(8) as *const __m256i);
        for r in 0..R {
            let zero = _mm256_set1_epi32(-*t.row_zeros.add(r));
            lo[r] = _mm256_mullo_epi32(zero, s0);
            hi[r] = _mm256_mullo_epi32(zero, s1);
        }
    }
    for q in 0..t.quads {
        let b0 = _mm256_loadu_si256(t.b.add(q * NR * 4) as *const __m256i);
        let b1 = _mm256_loadu_si256(t.b.add(q * NR * 4 + 32) as *const __m256i);
        for r in 0..R {
            let quad = (t.a.add(r * t.lda + 4 * q) as *const i32).read_unaligned();
            let av = _mm256_set1_epi32(quad);
            lo[r] = _mm256_dpbusd_avx_epi32(lo[r], av, b0);
            hi[r] = _mm256_dpbusd_avx_epi32(hi[r], av, b1);
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

/// A row block's activations quantized to bytes, with each row's scale and zero point.
pub(super) struct ByteRows<'a> {
    pub(super) a: &'a [u8],
    pub(super) scales: &'a [f32],
    pub(super) zeros: &'a [i32],
    pub(super) rows: usize,
}

/// One byte micro-kernel call: an R x (16 or 32) output tile over `quads` depth quads.
pub(super) struct ByteTile {
    pub(super) quads: usize,
    pub(super) a: *const u8,
    pub(super) lda: usize,
    pub(super) b: *const i8,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) store: Store,
    pub(super) row_scales: *const f32,
    pub(super) row_zeros: *const i32,
    pub(super) col_scales: *const f32,
    /// The panel's column sums in the first depth block (the zero-point correction), else null.
    pub(super) col_sums: *const i32,
}

thread_local! {
    /// The byte kernels' quantized row block, its scales and zero points, per thread.
    static BYTE_ROWS: std::cell::RefCell<(Vec<u8>, Vec<f32>, Vec<i32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `len` values in [-0.5, 0.5), a pattern set by `mul` and `modulo` (kernel test inputs).
    pub(crate) fn data(len: usize, mul: usize, modulo: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * mul % modulo) as f32 - (modulo / 2) as f32) / modulo as f32)
            .collect()
    }

    /// The kernels this CPU runs, portable first.
    fn kernels_here() -> Vec<Int8Kernel> {
        let mut kernels: Vec<Int8Kernel> = crate::isa::supported_levels()
            .into_iter()
            .map(Int8Kernel::for_isa)
            .collect();
        kernels.dedup();
        kernels
    }

    /// The byte kernels this CPU runs (none below the VNNI levels).
    fn byte_kernels_here() -> Vec<Int8Kernel> {
        let mut kernels: Vec<Int8Kernel> = crate::isa::supported_levels()
            .into_iter()
            .map(Int8Kernel::narrow_for_isa)
            .filter(|k| k.unsigned_activations())
            .collect();
        kernels.dedup();
        kernels
    }

    #[test]
    fn byte_kernels_match_their_portable_twin_and_approximate_f32() {
        // Tails in rows, columns and depth (not a multiple of 4; past one block of quads), and
        // rows with a negative-only, positive-only and all-zero range.
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (97, 40, 600),
            (13, 33, 1537),
            (3, 16, 8),
            // Whole AMX tile passes (32 rows, 96 quads); (97, 40, 600) adds both tails there.
            (64, 48, 384),
        ] {
            let mut a = data(m * k, 7, 13);
            if m >= 3 {
                a[..k].iter_mut().for_each(|x| *x = -x.abs() - 0.01);
                a[k..2 * k].iter_mut().for_each(|x| *x = x.abs());
                a[2 * k..3 * k].fill(0.0);
            }
            let w = data(n * k, 5, 11);
            let bias = vec![0.25f32; n];
            let add = Affine {
                bias: &bias,
                residual: true,
                activation: None,
            };
            for kernel in byte_kernels_here() {
                let q = QuantizedMatrix::from_rows(&w, n, k, kernel);
                let mut want = vec![0.5f32; m * n];
                q.affine_on(&a, &mut want, add, true);
                let mut fast = vec![0.5f32; m * n];
                q.affine(&a, m, &mut fast, add);
                for (i, (&x, &y)) in fast.iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{kernel:?} ({m}, {n}, {k}) at {i}: {x} vs {y}"
                    );
                }
                for (i, &got) in fast.iter().enumerate() {
                    let (row, col) = (i / n, i % n);
                    let exact: f32 = (0..k).map(|kk| a[row * k + kk] * w[col * k + kk]).sum();
                    // Half a weight step (max|w| / 254) per weight, half an activation step
                    // (range / 510) per activation.
                    let wmax = w[col * k..(col + 1) * k]
                        .iter()
                        .fold(0f32, |m, x| m.max(x.abs()));
                    let arow = &a[row * k..(row + 1) * k];
                    let range = arow.iter().fold(0f32, |m, &x| m.max(x))
                        - arow.iter().fold(0f32, |m, &x| m.min(x));
                    let bound = (0..k)
                        .map(|kk| {
                            arow[kk].abs() * wmax / 254.0 + w[col * k + kk].abs() * range / 510.0
                        })
                        .sum::<f32>();
                    assert!(
                        (got - 0.75 - exact).abs() <= bound * 1.01 + 1e-5,
                        "{kernel:?} ({m}, {n}, {k}) at {i}: {} vs {exact}",
                        got - 0.75
                    );
                }
                if m >= 3 {
                    // The all-zero row is exactly bias plus residual.
                    assert!(fast[2 * n..3 * n].iter().all(|&x| x == 0.75), "{kernel:?}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_here_matches_portable_and_approximates_f32() {
        // Shapes with every tail: rows past one 12-row tile and one 96-row block, columns not a
        // multiple of 16 or 32, odd depth, depth past one block of pairs.
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (97, 40, 600),
            (13, 16, 1536),
            (25, 33, 301),
        ] {
            let a = data(m * k, 7, 13);
            let w = data(n * k, 5, 11);
            // Residual 0.5 plus bias 0.25: the product is what exceeds 0.75.
            let bias = vec![0.25f32; n];
            let add = Affine {
                bias: &bias,
                residual: true,
                activation: None,
            };
            let relu = Affine {
                residual: false,
                activation: Some(kernels::Activation::Relu),
                ..add
            };
            let portable = QuantizedMatrix::from_rows(&w, n, k, Int8Kernel::Portable);
            let mut want = vec![0.5f32; m * n];
            portable.affine(&a, m, &mut want, add);
            for kernel in kernels_here() {
                let q = QuantizedMatrix::from_rows(&w, n, k, kernel);
                let mut fast = vec![0.5f32; m * n];
                q.affine(&a, m, &mut fast, add);
                // Integer sums are exact in every kernel; only the dequantizing multiplies
                // may round differently.
                for (i, (&x, &y)) in fast.iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{kernel:?} ({m}, {n}, {k}) at {i}: {x} vs {y}"
                    );
                }
                // Without the residual and through an activation (the old contents ignored).
                let mut fast_relu = vec![f32::NAN; m * n];
                q.affine(&a, m, &mut fast_relu, relu);
                for (i, &x) in fast_relu.iter().enumerate() {
                    let y = (fast[i] - 0.5).max(0.0);
                    assert!(x >= 0.0 && (x - y).abs() <= 1e-5 * (1.0 + y), "relu at {i}");
                }
            }
            for (i, &got) in want.iter().enumerate() {
                let (row, col) = (i / n, i % n);
                let exact: f32 = (0..k).map(|kk| a[row * k + kk] * w[col * k + kk]).sum();
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
                            + w[col * k + kk].abs() * amax / (2.0 * portable.activation_max)
                    })
                    .sum::<f32>();
                assert!(
                    (got - 0.75 - exact).abs() <= bound * 1.01 + 1e-5,
                    "({m}, {n}, {k}) at {i}: {} vs {exact}",
                    got - 0.75
                );
            }
        }
    }
}
