//! f32 matrix products against weights packed once at load time, with one micro-kernel per
//! instruction-set level: AVX2+FMA (6 rows x 16 columns, 12 accumulators in registers) and
//! AVX-512 (12 rows x 32 columns, 24 accumulators; `avx512.rs`). Blocked so a weight panel stays
//! in L1 while a block of activation rows streams from L2. Each tile is finished as it is
//! stored: bias, residual and activation (`Affine`). CPUs with neither fall back to the `gemm`
//! crate (in `cpu.rs`).

use rayon::prelude::*;

use super::isa::Isa;
use super::kernels::{self, Activation};

/// Columns of one AVX2 weight panel: two 8-lane registers.
pub(super) const NR: usize = 16;
/// Rows of the AVX2 micro-kernel.
pub(super) const MR: usize = 6;
/// Depth of one block: a 256 x 16 panel is 16 KiB, half of L1.
const KC: usize = 256;
/// Activation rows per block and parallel task (a multiple of every kernel's rows): 96 x 256 x
/// 4 bytes = 96 KiB, inside L2.
pub(super) const MC: usize = 96;

/// The micro-kernel a matrix was packed for: panel widths differ, so packed data and kernel
/// must match, and the matrix records which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Kernel {
    /// 6 x 16 tiles in 256-bit registers.
    Avx2,
    /// 12 x 32 tiles in 512-bit registers, masked tail stores.
    Avx512,
}

impl F32Kernel {
    /// The packed kernel for an instruction-set level; `None` below AVX2 (the `gemm` crate
    /// runs those products).
    pub fn for_isa(isa: Isa) -> Option<Self> {
        match isa {
            isa if isa.has_avx512() => Some(Self::Avx512),
            isa if isa.has_avx2() => Some(Self::Avx2),
            _ => None,
        }
    }

    /// Columns per packed panel.
    pub fn panel_width(self) -> usize {
        match self {
            Self::Avx2 => NR,
            Self::Avx512 => super::avx512::NR,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Avx2 => "avx2 6x16",
            Self::Avx512 => "avx512 12x32",
        }
    }
}

/// A (k x n) right-hand matrix in panels of `nr` columns (the kernel's panel width), each
/// panel k rows of `nr` contiguous values (zero-padded past column n).
pub struct PackedMatrix {
    k: usize,
    n: usize,
    kernel: F32Kernel,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `w^T` for a weight `w` stored (n x k) row-major, as `transformers` saves dense layers.
    pub fn from_transposed(w: &[f32], n: usize, k: usize, kernel: F32Kernel) -> Self {
        assert_eq!(w.len(), n * k);
        let mut packed = Self::empty(kernel);
        packed.repack_transposed(w, n, k, k);
        packed
    }

    /// A matrix to fill with `repack_*`, reusing its buffer across calls.
    pub fn empty(kernel: F32Kernel) -> Self {
        Self {
            k: 0,
            n: 0,
            kernel,
            data: Vec::new(),
        }
    }

    /// The kernel the matrix was packed for.
    pub fn kernel(&self) -> F32Kernel {
        self.kernel
    }

    /// Packs `src^T`, where `src` is n rows of k values, `row_stride` apart (e.g. attention
    /// keys, so that queries @ keys^T is a product with this matrix).
    pub fn repack_transposed(&mut self, src: &[f32], n: usize, k: usize, row_stride: usize) {
        self.reset(n, k);
        assert!(n == 0 || (row_stride >= k && src.len() >= (n - 1) * row_stride + k));
        let nr = self.kernel.panel_width();
        // Whole 8 x 8 blocks by register transposes: element by element, the scattered stores
        // cost attention's key packing 20 us per token, 3% of a long-article run.
        let (blocked_cols, blocked_depth) = match cfg!(target_arch = "x86_64") {
            true => (n / 8 * 8, k / 8 * 8),
            false => (0, 0),
        };
        #[cfg(target_arch = "x86_64")]
        for col in (0..blocked_cols).step_by(8) {
            for kk in (0..blocked_depth).step_by(8) {
                let at = ((col / nr) * k + kk) * nr + col % nr;
                assert!(at + 7 * nr + 8 <= self.data.len());
                // SAFETY: every packed kernel implies AVX2; rows col..col+8 and depths
                // kk..kk+8 lie inside `src` (asserted above) and the destination block
                // inside `data` (asserted here: nr is a multiple of 8).
                unsafe {
                    transpose_8x8(
                        src.as_ptr().add(col * row_stride + kk),
                        row_stride,
                        self.data.as_mut_ptr().add(at),
                        nr,
                    )
                };
            }
        }
        for col in 0..n {
            let depth_start = if col < blocked_cols { blocked_depth } else { 0 };
            let (panel, lane) = (col / nr, col % nr);
            let row = &src[col * row_stride..col * row_stride + k];
            for (kk, &value) in row.iter().enumerate().skip(depth_start) {
                self.data[(panel * k + kk) * nr + lane] = value;
            }
        }
    }

    /// Packs `src` itself: k rows of n values, `row_stride` apart (e.g. attention values).
    pub fn repack_rows(&mut self, src: &[f32], k: usize, n: usize, row_stride: usize) {
        self.reset(n, k);
        let nr = self.kernel.panel_width();
        for kk in 0..k {
            let row = &src[kk * row_stride..kk * row_stride + n];
            for (panel, chunk) in row.chunks(nr).enumerate() {
                let at = (panel * k + kk) * nr;
                self.data[at..at + chunk.len()].copy_from_slice(chunk);
            }
        }
    }

    fn reset(&mut self, n: usize, k: usize) {
        let nr = self.kernel.panel_width();
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n.div_ceil(nr) * k * nr, 0.0);
    }

    /// `c (m x n) = act(a (m x k) @ self + bias [+ c])` as `affine` says, all row-major and
    /// contiguous; rows split across the rayon pool in blocks of `MC`.
    pub fn affine(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine) {
        assert_eq!(a.len(), m * self.k);
        assert_eq!(c.len(), m * self.n);
        assert_eq!(affine.bias.len(), self.n);
        let (k, n) = (self.k, self.n);
        let epilogue = Epilogue::of(&affine);
        c.par_chunks_mut(MC * n)
            .zip(a.par_chunks(MC * k))
            .for_each(|(c_block, a_block)| {
                self.product_strided(a_block, k, a_block.len() / k, c_block, n, epilogue)
            });
    }

    /// `c = a @ self` on the calling thread, for `m` rows of `a` (`lda` apart) into rows of
    /// `c` (`ldc` apart); the old contents of `c` are ignored, so it needs no zeroing first.
    pub fn overwrite_strided(&self, a: &[f32], lda: usize, m: usize, c: &mut [f32], ldc: usize) {
        self.product_strided(a, lda, m, c, ldc, Epilogue::OVERWRITE)
    }

    fn product_strided(
        &self,
        a: &[f32],
        lda: usize,
        m: usize,
        c: &mut [f32],
        ldc: usize,
        epilogue: Epilogue,
    ) {
        if m == 0 {
            return;
        }
        assert!(a.len() >= (m - 1) * lda + self.k && lda >= self.k);
        assert!(c.len() >= (m - 1) * ldc + self.n && ldc >= self.n);
        // A matrix packed for a kernel this CPU lacks (never made by `F32Kernel::for_isa`)
        // must not reach the instructions.
        assert!(
            F32Kernel::for_isa(super::isa::detected()).is_some_and(|best| match self.kernel {
                F32Kernel::Avx2 => true,
                F32Kernel::Avx512 => best == F32Kernel::Avx512,
            }),
            "matrix packed for {:?}, which this CPU lacks",
            self.kernel
        );
        // SAFETY: the CPU has the kernel's features (asserted above); the asserts keep every
        // row inside its slice, and callers give a bias of n values.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self.kernel {
                F32Kernel::Avx2 => self.block(a, lda, m, c, ldc, epilogue),
                F32Kernel::Avx512 => super::avx512::f32_block(
                    &self.data, self.k, self.n, a, lda, m, c, ldc, epilogue,
                ),
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block(
        &self,
        a: &[f32],
        lda: usize,
        rows: usize,
        c: &mut [f32],
        ldc: usize,
        epilogue: Epilogue,
    ) {
        let (k, n) = (self.k, self.n);
        // Equal depth blocks of at most KC (384 -> 2 x 192, not 256 + 128).
        let blocks = k.div_ceil(KC);
        let mut k0 = 0;
        for block in 0..blocks {
            let kc = (k - k0) / (blocks - block);
            for panel in 0..n.div_ceil(NR) {
                let store = epilogue.for_tile(block, blocks, panel, n);
                let b = self.data.as_ptr().add((panel * k + k0) * NR);
                let mut r0 = 0;
                while r0 < rows {
                    let a_ptr = a.as_ptr().add(r0 * lda + k0);
                    let c_ptr = c.as_mut_ptr().add(r0 * ldc + panel * NR);
                    match rows - r0 {
                        1 => kernel::<1>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                        2 => kernel::<2>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                        3 => kernel::<3>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                        4 => kernel::<4>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                        5 => kernel::<5>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                        _ => kernel::<MR>(kc, a_ptr, lda, b, c_ptr, ldc, store),
                    }
                    r0 += MR;
                }
            }
            k0 += kc;
        }
    }
}

/// What a dense layer does around its product `a @ W`: `c = act(a @ W + bias [+ c])`. Doing it
/// as each tile is stored saves passes over the (tokens x width) outputs: the feed-forward
/// activation alone was 3.5% of a long-article run as a pass of its own.
#[derive(Clone, Copy)]
pub struct Affine<'a> {
    /// Added to every row: one value per output column.
    pub bias: &'a [f32],
    /// Whether `c` holds a residual to add to (else its contents are ignored).
    pub residual: bool,
    /// Applied last, to the whole sum.
    pub activation: Option<Activation>,
}

/// [`Affine`] for the kernels: raw bias pointer (null for none).
#[derive(Clone, Copy)]
pub(super) struct Epilogue {
    keep: bool,
    bias: *const f32,
    activation: Option<Activation>,
}

// SAFETY: the bias pointer is only read, and outlives the product that carries it.
unsafe impl Send for Epilogue {}
unsafe impl Sync for Epilogue {}

impl Epilogue {
    const OVERWRITE: Self = Self {
        keep: false,
        bias: std::ptr::null(),
        activation: None,
    };

    pub(super) fn of(affine: &Affine) -> Self {
        Self {
            keep: affine.residual,
            bias: affine.bias.as_ptr(),
            activation: affine.activation,
        }
    }

    /// How the tiles of one 16-column panel store in depth block `block` of `blocks`: the
    /// first block starts from the bias (and the residual), later ones add to what is there,
    /// and the last applies the activation.
    pub(super) fn for_tile(self, block: usize, blocks: usize, panel: usize, n: usize) -> Store {
        self.for_panel(block, blocks, panel, NR, n)
    }

    /// [`Epilogue::for_tile`] for panels `nr` columns wide.
    pub(super) fn for_panel(
        self,
        block: usize,
        blocks: usize,
        panel: usize,
        nr: usize,
        n: usize,
    ) -> Store {
        let first = block == 0;
        Store {
            cols: nr.min(n - panel * nr),
            keep: self.keep || !first,
            bias: match first && !self.bias.is_null() {
                // SAFETY: the bias holds n values, so its panel start is in bounds.
                true => unsafe { self.bias.add(panel * nr) },
                false => std::ptr::null(),
            },
            activation: self.activation.filter(|_| block + 1 == blocks),
        }
    }
}

/// How a micro-kernel writes its tile: the valid columns, whether to add to `c` or replace it,
/// the bias to add (null for none; `cols` values) and the activation to apply after.
#[derive(Clone, Copy)]
pub(super) struct Store {
    pub(super) cols: usize,
    pub(super) keep: bool,
    pub(super) bias: *const f32,
    pub(super) activation: Option<Activation>,
}

/// Writes the R x 16 tile `lo`/`hi` (columns 0-7 / 8-15 of each row) to `c` as `store` says.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn store_tile<const R: usize>(
    lo: &[std::arch::x86_64::__m256; R],
    hi: &[std::arch::x86_64::__m256; R],
    c: *mut f32,
    ldc: usize,
    store: Store,
) {
    use std::arch::x86_64::*;
    let has_bias = !store.bias.is_null();
    for r in 0..R {
        let row = c.add(r * ldc);
        if store.cols == NR {
            let (mut v0, mut v1) = (lo[r], hi[r]);
            if has_bias {
                v0 = _mm256_add_ps(_mm256_loadu_ps(store.bias), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(store.bias.add(8)), v1);
            }
            if store.keep {
                v0 = _mm256_add_ps(_mm256_loadu_ps(row), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(row.add(8)), v1);
            }
            if let Some(activation) = store.activation {
                (v0, v1) = match activation {
                    Activation::GeluErf => (kernels::gelu_erf_fma(v0), kernels::gelu_erf_fma(v1)),
                    _ => {
                        let mut values = [0f32; NR];
                        _mm256_storeu_ps(values.as_mut_ptr(), v0);
                        _mm256_storeu_ps(values.as_mut_ptr().add(8), v1);
                        activation.apply_inline(&mut values);
                        (
                            _mm256_loadu_ps(values.as_ptr()),
                            _mm256_loadu_ps(values.as_ptr().add(8)),
                        )
                    }
                };
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
        } else {
            let mut sums = [0f32; NR];
            _mm256_storeu_ps(sums.as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(sums.as_mut_ptr().add(8), hi[r]);
            for (j, &s) in sums.iter().enumerate().take(store.cols) {
                let mut v = s;
                if has_bias {
                    v += *store.bias.add(j);
                }
                if store.keep {
                    v += *row.add(j);
                }
                *row.add(j) = v;
            }
            if let Some(activation) = store.activation {
                activation.apply_inline(std::slice::from_raw_parts_mut(row, store.cols));
            }
        }
    }
}

/// Writes the transpose of the 8 x 8 block at `src` (rows `src_stride` apart) to `dst` (rows
/// `dst_stride` apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
    // Interleave pairs, then quads, then swap 128-bit halves.
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in out.into_iter().enumerate() {
        _mm256_storeu_ps(dst.add(i * dst_stride), v);
    }
}

/// `c[R x cols] (+)= a[R x kc] @ b[kc x 16]` with the products of all 16 columns in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    store: Store,
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for kk in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*a.add(r * lda + kk));
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    store_tile(&lo, &hi, c, ldc, store);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed kernels this CPU runs.
    fn kernels_here() -> Vec<F32Kernel> {
        let mut kernels: Vec<F32Kernel> = crate::isa::supported_levels()
            .into_iter()
            .filter_map(F32Kernel::for_isa)
            .collect();
        kernels.dedup();
        kernels
    }

    fn naive(a: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| a[i * k + kk] * w[j * k + kk]).sum();
            }
        }
        c
    }

    #[test]
    fn affine_adds_bias_and_residual_then_activates() {
        for kernel in kernels_here() {
            affine_adds_bias_and_residual_then_activates_with(kernel);
        }
    }

    fn affine_adds_bias_and_residual_then_activates_with(kernel: F32Kernel) {
        // Depth 600 spans three blocks: the bias must be added once, the activation applied
        // once at the end; 21 columns leave a partial panel.
        let (m, n, k) = (8, 21, 600);
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 40.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 13) as f32 - 6.0) / 30.0).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1 - 1.0).collect();
        let residual: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let packed = PackedMatrix::from_transposed(&w, n, k, kernel);
        let product = naive(&a, &w, m, n, k);
        for (keep, activation) in [
            (true, None),
            (false, Some(Activation::Relu)),
            (true, Some(Activation::GeluErf)),
        ] {
            let mut c = residual.clone();
            let affine = Affine {
                bias: &bias,
                residual: keep,
                activation,
            };
            packed.affine(&a, m, &mut c, affine);
            for i in 0..m * n {
                let mut want = [product[i] + bias[i % n] + if keep { residual[i] } else { 0.0 }];
                if let Some(activation) = activation {
                    activation.apply_inline(&mut want);
                }
                let want = want[0];
                assert!(
                    (c[i] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{kernel:?} keep {keep} {activation:?} at {i}: {} vs {want}",
                    c[i]
                );
            }
        }
    }

    #[test]
    fn transposed_packing_of_strided_rows_matches_contiguous_rows() {
        // 41 rows of 19 values inside rows of 30: 8 x 8 blocks plus row and depth tails.
        let (n, k, stride) = (41, 19, 30);
        let src: Vec<f32> = (0..n * stride).map(|i| i as f32).collect();
        let dense: Vec<f32> = (0..n)
            .flat_map(|r| src[r * stride..r * stride + k].to_vec())
            .collect();
        // Packing is plain data movement: check both layouts wherever the CPU has AVX2.
        if !crate::isa::Isa::Avx2.supported() {
            return;
        }
        for kernel in [F32Kernel::Avx2, F32Kernel::Avx512] {
            let nr = kernel.panel_width();
            let mut strided = PackedMatrix::empty(kernel);
            strided.repack_transposed(&src, n, k, stride);
            let contiguous = PackedMatrix::from_transposed(&dense, n, k, kernel);
            assert_eq!(strided.data, contiguous.data);
            // Spot-check the layout: depth 3 of output column 33.
            let (panel, lane) = (33 / nr, 33 % nr);
            assert_eq!(
                strided.data[(panel * k + 3) * nr + lane],
                src[33 * stride + 3]
            );
        }
    }

    #[test]
    fn packed_product_matches_naive_on_ragged_shapes() {
        for kernel in kernels_here() {
            packed_product_matches_naive_on_ragged_shapes_with(kernel);
        }
    }

    fn packed_product_matches_naive_on_ragged_shapes_with(kernel: F32Kernel) {
        // Shapes that exercise every tail: rows not a multiple of 6, 12 or of the row block,
        // columns not a multiple of 16 or 32, depth beyond one 256 block.
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (97, 40, 300),
            (13, 16, 513),
            (25, 33, 130),
            (12, 64, 384),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let mut c: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            let start = c.clone();
            let zeros = vec![0f32; n];
            let add = Affine {
                bias: &zeros,
                residual: true,
                activation: None,
            };
            PackedMatrix::from_transposed(&w, n, k, kernel).affine(&a, m, &mut c, add);
            let want = naive(&a, &w, m, n, k);
            // The same product packed from w^T given row by row must agree exactly.
            let mut w_t = vec![0f32; k * n];
            for j in 0..n {
                for kk in 0..k {
                    w_t[kk * n + j] = w[j * k + kk];
                }
            }
            let mut by_rows = PackedMatrix::empty(kernel);
            by_rows.repack_rows(&w_t, k, n, n);
            let mut c2 = start.clone();
            by_rows.affine(&a, m, &mut c2, add);
            assert_eq!(c, c2);
            // Overwriting ignores what was there: the product alone.
            let mut c3 = vec![f32::NAN; m * n];
            by_rows.overwrite_strided(&a, k, m, &mut c3, n);
            for i in 0..m * n {
                assert!((c3[i] - (c[i] - start[i])).abs() <= 1e-4 * (1.0 + c3[i].abs()));
            }
            for i in 0..m * n {
                let got = c[i] - start[i];
                assert!(
                    (got - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()),
                    "{kernel:?} ({m}, {n}, {k}) at {i}: {got} vs {}",
                    want[i]
                );
            }
        }
    }
}
