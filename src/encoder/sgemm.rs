//! f32 matrix products against weights packed once at load time, with an AVX2+FMA micro-kernel
//! (6 rows x 16 columns, 12 accumulators in registers), blocked so a weight panel stays in L1
//! while a block of activation rows streams from L2. Falls back to the `gemm` crate elsewhere.

use rayon::prelude::*;

use super::kernels;

/// Columns of one packed weight panel: two 8-lane registers.
const NR: usize = 16;
/// Rows of the micro-kernel.
const MR: usize = 6;
/// Depth of one block: a 256 x 16 panel is 16 KiB, half of L1.
const KC: usize = 256;
/// Activation rows per block (a multiple of MR): 96 x 256 x 4 bytes = 96 KiB, inside L2.
const MC: usize = 96;

/// A (k x n) right-hand matrix in panels of 16 columns, each panel k rows of 16 contiguous
/// values (zero-padded past column n).
pub struct PackedMatrix {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `w^T` for a weight `w` stored (n x k) row-major, as `transformers` saves dense layers.
    pub fn from_transposed(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        let mut packed = Self::empty();
        packed.repack_transposed(w, n, k, k);
        packed
    }

    /// A matrix to fill with `repack_*`, reusing its buffer across calls.
    pub fn empty() -> Self {
        Self {
            k: 0,
            n: 0,
            data: Vec::new(),
        }
    }

    /// Packs `src^T`, where `src` is n rows of k values, `row_stride` apart (e.g. attention
    /// keys, so that queries @ keys^T is a product with this matrix).
    pub fn repack_transposed(&mut self, src: &[f32], n: usize, k: usize, row_stride: usize) {
        self.reset(n, k);
        for col in 0..n {
            let (panel, lane) = (col / NR, col % NR);
            let row = &src[col * row_stride..col * row_stride + k];
            for (kk, &value) in row.iter().enumerate() {
                self.data[(panel * k + kk) * NR + lane] = value;
            }
        }
    }

    /// Packs `src` itself: k rows of n values, `row_stride` apart (e.g. attention values).
    pub fn repack_rows(&mut self, src: &[f32], k: usize, n: usize, row_stride: usize) {
        self.reset(n, k);
        for kk in 0..k {
            let row = &src[kk * row_stride..kk * row_stride + n];
            for (panel, chunk) in row.chunks(NR).enumerate() {
                let at = (panel * k + kk) * NR;
                match <&[f32; NR]>::try_from(chunk) {
                    // A whole panel row: a fixed-size copy the compiler turns into two moves.
                    Ok(full) => self.data[at..at + NR].copy_from_slice(full),
                    Err(_) => self.data[at..at + chunk.len()].copy_from_slice(chunk),
                }
            }
        }
    }

    fn reset(&mut self, n: usize, k: usize) {
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n.div_ceil(NR) * k * NR, 0.0);
    }

    /// Whether this CPU runs the packed kernel (else callers use their own fallback).
    pub fn supported() -> bool {
        kernels::avx2_fma()
    }

    /// `c (m x n) += a (m x k) @ self`, all row-major and contiguous; rows split across the
    /// rayon pool in blocks of `MC`.
    pub fn accumulate(&self, a: &[f32], m: usize, c: &mut [f32]) {
        assert_eq!(a.len(), m * self.k);
        assert_eq!(c.len(), m * self.n);
        let (k, n) = (self.k, self.n);
        c.par_chunks_mut(MC * n)
            .zip(a.par_chunks(MC * k))
            .for_each(|(c_block, a_block)| {
                self.accumulate_strided(a_block, k, a_block.len() / k, c_block, n)
            });
    }

    /// `c += a @ self` on the calling thread, for `m` rows of `a` (`lda` apart) into rows of
    /// `c` (`ldc` apart).
    pub fn accumulate_strided(&self, a: &[f32], lda: usize, m: usize, c: &mut [f32], ldc: usize) {
        self.product_strided(a, lda, m, c, ldc, false)
    }

    /// `c = a @ self` (the old contents of `c` ignored, so it needs no zeroing first).
    pub fn overwrite_strided(&self, a: &[f32], lda: usize, m: usize, c: &mut [f32], ldc: usize) {
        self.product_strided(a, lda, m, c, ldc, true)
    }

    fn product_strided(
        &self,
        a: &[f32],
        lda: usize,
        m: usize,
        c: &mut [f32],
        ldc: usize,
        overwrite: bool,
    ) {
        assert!(Self::supported(), "packed sgemm needs AVX2 and FMA");
        if m == 0 {
            return;
        }
        assert!(a.len() >= (m - 1) * lda + self.k && lda >= self.k);
        assert!(c.len() >= (m - 1) * ldc + self.n && ldc >= self.n);
        // SAFETY: AVX2/FMA checked above; the asserts keep every row inside its slice.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            self.block(a, lda, m, c, ldc, overwrite)
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
        overwrite: bool,
    ) {
        let (k, n) = (self.k, self.n);
        // Equal depth blocks of at most KC (384 -> 2 x 192, not 256 + 128).
        let blocks = k.div_ceil(KC);
        let mut k0 = 0;
        for block in 0..blocks {
            let kc = (k - k0) / (blocks - block);
            // Only the first depth block may overwrite; later ones add to it.
            let store = Store {
                cols: 0,
                overwrite: overwrite && block == 0,
            };
            for panel in 0..n.div_ceil(NR) {
                let store = Store {
                    cols: NR.min(n - panel * NR),
                    ..store
                };
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

/// How a micro-kernel writes its tile: the valid columns, and whether to add to `c` or replace it.
#[derive(Clone, Copy)]
struct Store {
    cols: usize,
    overwrite: bool,
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
    for r in 0..R {
        let row = c.add(r * ldc);
        if store.cols == NR {
            let (mut v0, mut v1) = (lo[r], hi[r]);
            if !store.overwrite {
                v0 = _mm256_add_ps(_mm256_loadu_ps(row), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(row.add(8)), v1);
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
        } else {
            let mut sums = [0f32; NR];
            _mm256_storeu_ps(sums.as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(sums.as_mut_ptr().add(8), hi[r]);
            for (j, s) in sums.iter().enumerate().take(store.cols) {
                *row.add(j) = if store.overwrite { *s } else { *row.add(j) + s };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn packed_product_matches_naive_on_ragged_shapes() {
        if !PackedMatrix::supported() {
            return;
        }
        // Shapes that exercise every tail: rows not a multiple of 6 or of the row block,
        // columns not a multiple of 16, depth beyond one 256 block.
        for &(m, n, k) in &[(1, 1, 1), (7, 17, 5), (97, 40, 300), (13, 16, 513)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let mut c: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            let start = c.clone();
            PackedMatrix::from_transposed(&w, n, k).accumulate(&a, m, &mut c);
            let want = naive(&a, &w, m, n, k);
            // The same product packed from w^T given row by row must agree exactly.
            let mut w_t = vec![0f32; k * n];
            for j in 0..n {
                for kk in 0..k {
                    w_t[kk * n + j] = w[j * k + kk];
                }
            }
            let mut by_rows = PackedMatrix::empty();
            by_rows.repack_rows(&w_t, k, n, n);
            let mut c2 = start.clone();
            by_rows.accumulate(&a, m, &mut c2);
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
                    "({m}, {n}, {k}) at {i}: {got} vs {}",
                    want[i]
                );
            }
        }
    }
}
