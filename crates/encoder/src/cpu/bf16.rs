//! bf16 dense layers for CPUs with AVX-512 BF16 (Intel Cooper Lake and Sapphire Rapids on,
//! AMD Zen 4 on): weights rounded to bf16 once, activations rounded per row block, pairs
//! multiplied by `vdpbf16ps` into f32 sums, which the layer's epilogue (`sgemm::Affine`)
//! finishes as in f32. Twice the multiply-adds of an f32 FMA per instruction, with an 8-bit
//! mantissa on both operands: reported apart from f32, like int8, with its cosine to f32.

use rayon::prelude::*;

use super::sgemm::{Affine, Epilogue, MC};

/// Columns of one packed panel: two registers of 16 f32 sums.
const NR: usize = 32;

/// Whether the bf16 precision runs at instruction-set level `isa` on this CPU.
pub fn available_at(isa: super::isa::Isa) -> bool {
    isa.has_avx512() && super::isa::has_avx512_bf16()
}

/// Why bf16 does not run at level `isa` (where `available_at` is false).
pub fn unavailable_reason(isa: super::isa::Isa) -> String {
    if super::isa::has_avx512_bf16() {
        format!("this run uses level `{isa}` (lowered by `SPYGLASS_CPU_ISA`); unset it")
    } else {
        "this CPU has none".to_string()
    }
}

/// Whether the bf16 products run on AMX tiles (`tdpbf16ps`) at level `isa`.
pub fn on_tiles_at(isa: super::isa::Isa) -> bool {
    isa == super::isa::Isa::Amx && super::isa::has_amx_bf16() && available_at(isa)
}

/// Rounds to the nearest bf16, ties to even (as `vcvtne2ps2bf16`); NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// A weight matrix (outputs x inputs) in bf16, in panels of 32 columns; per depth pair, each
/// column's (w[2p], w[2p+1]).
pub struct Bf16Matrix {
    k: usize,
    k_even: usize,
    n: usize,
    data: Vec<u16>,
}

impl Bf16Matrix {
    /// Rounds a weight stored (n x k) row-major, as `transformers` saves dense layers.
    pub fn from_rows(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k);
        let k_even = k + k % 2;
        let pairs = k_even / 2;
        let mut data = vec![0u16; n.div_ceil(NR) * pairs * NR * 2];
        for (col, row) in weight.chunks_exact(k).enumerate() {
            let (panel, lane) = (col / NR, col % NR);
            for (kk, &w) in row.iter().enumerate() {
                data[((panel * pairs + kk / 2) * NR + lane) * 2 + kk % 2] = to_bf16(w);
            }
        }
        Self { k, k_even, n, data }
    }

    /// `c (m x n) = act(a (m x k) @ W^T + bias [+ c])` as `affine` says, row-major, rows split
    /// across the rayon pool.
    pub fn affine(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine) {
        self.affine_on(a, m, c, affine, false)
    }

    /// `affine`, on plain Rust when `portable` (the tests' reference, and CPUs without
    /// AVX-512 BF16).
    fn affine_on(&self, a: &[f32], m: usize, c: &mut [f32], affine: Affine, portable: bool) {
        assert_eq!(a.len(), m * self.k);
        assert_eq!(c.len(), m * self.n);
        assert_eq!(affine.bias.len(), self.n);
        let (k, n) = (self.k, self.n);
        let epilogue = Epilogue::of(&affine);
        let fast = !portable && available_at(super::isa::active());
        let tiles = fast && on_tiles_at(super::isa::active());
        c.par_chunks_mut(MC * n)
            .zip(a.par_chunks(MC * k))
            .for_each(|(c_block, a_block)| {
                ROWS.with_borrow_mut(|rounded| {
                    let rows = a_block.len() / k;
                    rounded.clear();
                    rounded.resize(rows * self.k_even, 0);
                    for (row, out) in a_block
                        .chunks_exact(k)
                        .zip(rounded.chunks_exact_mut(self.k_even))
                    {
                        for (o, &x) in out.iter_mut().zip(row) {
                            *o = to_bf16(x);
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    if fast {
                        // SAFETY: the CPU has AVX-512 F/BW/VL/DQ and BF16 (`available_at`); the
                        // rows, packed panels and output hold what the asserts above and
                        // `from_rows` give, and the bias n values.
                        // AMX tiles with AMX-BF16 and the tile state granted (`on_tiles_at`);
                        // the same arguments and layout either way.
                        let block = if tiles {
                            super::amx::bf16_block_amx
                        } else {
                            super::avx512::bf16_block
                        };
                        return unsafe {
                            block(
                                &self.data,
                                self.k_even / 2,
                                n,
                                rounded,
                                self.k_even,
                                rows,
                                c_block,
                                n,
                                epilogue,
                            )
                        };
                    }
                    let _ = (fast, tiles, epilogue);
                    self.portable(rounded, rows, c_block, &affine);
                })
            });
    }

    /// The same products in plain Rust, exact f32 sums of the bf16 operands.
    fn portable(&self, a: &[u16], rows: usize, c: &mut [f32], affine: &Affine) {
        let (pairs, n) = (self.k_even / 2, self.n);
        for r in 0..rows {
            let row = &a[r * self.k_even..(r + 1) * self.k_even];
            let out = &mut c[r * n..(r + 1) * n];
            for (panel, out) in out.chunks_mut(NR).enumerate() {
                let weights = &self.data[panel * pairs * NR * 2..(panel + 1) * pairs * NR * 2];
                let mut sums = [0f32; NR];
                for (pair, w) in row.chunks_exact(2).zip(weights.chunks_exact(NR * 2)) {
                    let (a0, a1) = (from_bf16(pair[0]), from_bf16(pair[1]));
                    for (sum, w) in sums.iter_mut().zip(w.chunks_exact(2)) {
                        *sum += a0 * from_bf16(w[0]) + a1 * from_bf16(w[1]);
                    }
                }
                for (j, value) in out.iter_mut().enumerate() {
                    let biased = sums[j] + affine.bias[panel * NR + j];
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

thread_local! {
    /// A row block's activations in bf16, per thread, reused across calls.
    static ROWS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::super::quant::tests::data;
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.0.
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn the_kernel_matches_plain_rust_and_approximates_f32() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (97, 40, 600),
            (13, 33, 301),
            (25, 64, 384),
            // Whole AMX tile passes (32 rows, 16-pair steps); (97, 40, 600) adds both tails.
            (64, 48, 512),
        ] {
            let a = data(m * k, 7, 13);
            let w = data(n * k, 5, 11);
            let bias = vec![0.25f32; n];
            let add = Affine {
                bias: &bias,
                residual: true,
                activation: None,
            };
            let matrix = Bf16Matrix::from_rows(&w, n, k);
            let mut want = vec![0.5f32; m * n];
            matrix.affine_on(&a, m, &mut want, add, true);
            let mut got = vec![0.5f32; m * n];
            matrix.affine(&a, m, &mut got, add);
            for (i, (&x, &y)) in got.iter().zip(&want).enumerate() {
                // The same products of the same bf16 values, summed in another order.
                let magnitude: f32 = (0..k)
                    .map(|kk| (a[(i / n) * k + kk] * w[(i % n) * k + kk]).abs())
                    .sum();
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + magnitude),
                    "({m}, {n}, {k}) at {i}: {x} vs {y}"
                );
                let exact: f32 = (0..k)
                    .map(|kk| a[(i / n) * k + kk] * w[(i % n) * k + kk])
                    .sum();
                // Each operand rounded by at most 2^-9 relative.
                assert!(
                    (x - 0.75 - exact).abs() <= magnitude * 2.0 * 2f32.powi(-9) * 1.01 + 1e-5,
                    "({m}, {n}, {k}) at {i}: {} vs {exact}",
                    x - 0.75
                );
            }
        }
    }
}
