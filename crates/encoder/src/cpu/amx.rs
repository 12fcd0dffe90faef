//! The AMX tile kernels (Intel Sapphire Rapids and later): int8 byte-activation products with
//! `tdpbusd` and bf16 ones with `tdpbf16ps`, on 16-row x 64-byte tiles, 32 x 32 outputs per
//! pass, over the same packed layouts as the AVX-512 kernels (`avx512::int8_block_u8`,
//! `avx512::bf16_block`), which also take what the tiles cannot: rows past the last full 32,
//! and depth past the last full 64 bytes.
//!
//! Rust's AMX intrinsics are not stable, so the tile instructions are inline `asm!`. They run
//! only where `isa::Isa::Amx` was detected, which includes the kernel's grant of the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); the tile configuration is per thread, so each call
//! loads it and releases the tiles when done.

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::arch::x86_64::*;

use super::avx512::{bf16_block, int8_block_u8, store_tile, NR};
use super::quant::ByteRows;
use super::sgemm::Epilogue;

/// Rows of one tile pass: two 16-row activation tiles.
const MT: usize = 32;
/// Depth quads of one tile step: a 64-byte tile row.
const QT: usize = 16;
/// Bytes from one depth quad of a packed panel to the next (32 columns x 4 bytes).
const PANEL_QUAD_BYTES: usize = NR * 4;

/// `ldtilecfg`'s 64-byte operand: palette 1, eight 16-row x 64-byte tiles (tmm0-3 the 32 x 32
/// int32 sums, tmm4-5 activations, tmm6-7 weights).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    fn eight_full_tiles() -> Self {
        let mut config = Self {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(64);
        config.rows[..8].fill(16);
        config
    }
}

/// The 32 x 32 int32 sums of one tile pass, rows 128 bytes apart.
#[repr(C, align(64))]
struct Sums([[i32; NR]; MT]);

/// The byte-activation product of one row block on AMX tiles, dequantized into `c` through
/// the epilogue exactly as `avx512::int8_block_u8` does (same arguments and layout).
///
/// # Safety
/// The CPU must have AMX-TILE and AMX-INT8 with the tile state granted to this process, and
/// AVX-512 F/BW/VL/DQ and VNNI; the slices as `avx512::int8_block_u8` requires.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn int8_block_amx(
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
    let tile_rows = rows.rows / MT * MT;
    let steps = quads / QT;
    if tile_rows > 0 && steps > 0 {
        let lda = 4 * quads;
        let config = TileConfig::eight_full_tiles();
        asm!("ldtilecfg [{}]", in(reg) &config as *const TileConfig, options(nostack, readonly));
        let mut sums = Sums([[0; NR]; MT]);
        for panel in 0..n.div_ceil(NR) {
            // The whole depth is summed in the tiles: one store per tile, as a single block.
            let store = epilogue.for_panel(0, 1, panel, NR, n);
            let b = packed.as_ptr().add(panel * quads * PANEL_QUAD_BYTES);
            let (s0, s1) = (
                _mm512_loadu_si512(col_sums.as_ptr().add(panel * NR) as *const _),
                _mm512_loadu_si512(col_sums.as_ptr().add(panel * NR + 16) as *const _),
            );
            let ws0 = _mm512_loadu_ps(col_scales.as_ptr().add(panel * NR));
            let ws1 = _mm512_loadu_ps(col_scales.as_ptr().add(panel * NR + 16));
            for r0 in (0..tile_rows).step_by(MT) {
                tile_pass_int8(
                    rows.a.as_ptr().add(r0 * lda),
                    lda,
                    b as *const u8,
                    steps,
                    sums.0.as_mut_ptr() as *mut u8,
                );
                for (r, row_sums) in sums.0.iter().enumerate() {
                    let row = r0 + r;
                    let zero = _mm512_set1_epi32(-rows.zeros[row]);
                    let mut acc0 = _mm512_add_epi32(
                        _mm512_loadu_si512(row_sums.as_ptr() as *const _),
                        _mm512_mullo_epi32(zero, s0),
                    );
                    let mut acc1 = _mm512_add_epi32(
                        _mm512_loadu_si512(row_sums.as_ptr().add(16) as *const _),
                        _mm512_mullo_epi32(zero, s1),
                    );
                    // Depth past the last full tile step, with VNNI.
                    for q in steps * QT..quads {
                        let quad =
                            (rows.a.as_ptr().add(row * lda + 4 * q) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(quad);
                        let w = b.add(q * PANEL_QUAD_BYTES);
                        acc0 = _mm512_dpbusd_epi32(acc0, av, _mm512_loadu_si512(w as *const _));
                        acc1 = _mm512_dpbusd_epi32(
                            acc1,
                            av,
                            _mm512_loadu_si512(w.add(64) as *const _),
                        );
                    }
                    let s = _mm512_set1_ps(rows.scales[row]);
                    let out = [[
                        _mm512_mul_ps(_mm512_cvtepi32_ps(acc0), _mm512_mul_ps(ws0, s)),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(acc1), _mm512_mul_ps(ws1, s)),
                    ]];
                    store_tile::<1>(&out, c.as_mut_ptr().add(row * ldc + panel * NR), ldc, store);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
    let done = if steps > 0 { tile_rows } else { 0 };
    if done < rows.rows {
        let lda = 4 * quads;
        let rest = ByteRows {
            a: &rows.a[done * lda..],
            scales: &rows.scales[done..],
            zeros: &rows.zeros[done..],
            rows: rows.rows - done,
        };
        int8_block_u8(
            packed,
            col_sums,
            col_scales,
            quads,
            n,
            &rest,
            &mut c[done * ldc..],
            ldc,
            epilogue,
        );
    }
}

/// Stamps one tile pass for a tile product instruction: `sums (32 x 32, 4-byte values, 128-byte
/// rows) = a (32 rows, lda bytes apart) . b (one packed panel, 128-byte depth rows)` over
/// `steps` x 64 bytes of depth. tmm4/tmm5 hold rows 0-15/16-31, tmm6/tmm7 columns 0-15/16-31
/// (the two 64-byte halves of each depth row of the panel), tmm0-3 the four 16 x 16 sums. The
/// int8 layout (u8 x s8 quads) and the bf16 one (pairs) are both 4 bytes per column per depth
/// row, so one pass serves both.
macro_rules! tile_pass {
    ($name:ident, $product:literal) => {
        /// # Safety
        /// The tiles must be configured (`ldtilecfg` with `TileConfig::eight_full_tiles`); `a`
        /// must hold 32 rows of at least 64 x `steps` bytes, `b` 16 x `steps` depth rows of 128
        /// bytes, and `sums` 32 x 32 four-byte values; `steps` >= 1.
        #[inline]
        unsafe fn $name(a: *const u8, lda: usize, b: *const u8, steps: usize, sums: *mut u8) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a} + {lda}*1]",
                "tileloadd tmm5, [{a16} + {lda}*1]",
                "tileloadd tmm6, [{b} + {depth_row}*1]",
                "tileloadd tmm7, [{b} + {depth_row}*1 + 64]",
                concat!($product, " tmm0, tmm4, tmm6"),
                concat!($product, " tmm1, tmm4, tmm7"),
                concat!($product, " tmm2, tmm5, tmm6"),
                concat!($product, " tmm3, tmm5, tmm7"),
                "add {a}, 64",
                "add {a16}, 64",
                "add {b}, {step_bytes}",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{sums} + {row_bytes}*1], tmm0",
                "tilestored [{sums} + {row_bytes}*1 + 64], tmm1",
                "tilestored [{sums16} + {row_bytes}*1], tmm2",
                "tilestored [{sums16} + {row_bytes}*1 + 64], tmm3",
                a = inout(reg) a => _,
                a16 = inout(reg) a.add(16 * lda) => _,
                lda = in(reg) lda,
                b = inout(reg) b => _,
                depth_row = in(reg) PANEL_QUAD_BYTES,
                step_bytes = in(reg) QT * PANEL_QUAD_BYTES,
                steps = inout(reg) steps => _,
                sums = in(reg) sums,
                sums16 = in(reg) sums.add(16 * NR * 4),
                row_bytes = in(reg) NR * 4,
                options(nostack),
            );
        }
    };
}

tile_pass!(tile_pass_int8, "tdpbusd");
tile_pass!(tile_pass_bf16, "tdpbf16ps");

/// The 32 x 32 f32 sums of one bf16 tile pass, rows 128 bytes apart.
#[repr(C, align(64))]
struct FloatSums([[f32; NR]; MT]);

/// `c = act(a @ packed + bias [+ c])` in bf16 on AMX tiles (`tdpbf16ps`, f32 sums), with the
/// same arguments and layout as `avx512::bf16_block`, which takes the rows past the last full
/// 32; the depth past the last full 16 pairs goes through `vdpbf16ps`.
///
/// # Safety
/// The CPU must have AMX-TILE and AMX-BF16 with the tile state granted to this process, and
/// AVX-512 F/BW/VL/DQ and BF16; the slices as `avx512::bf16_block` requires.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bf16_block_amx(
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
    let tile_rows = rows / MT * MT;
    // 16 pairs of bf16 fill one 64-byte tile row, as 16 quads of bytes do.
    let steps = pairs / QT;
    if tile_rows > 0 && steps > 0 {
        let config = TileConfig::eight_full_tiles();
        asm!("ldtilecfg [{}]", in(reg) &config as *const TileConfig, options(nostack, readonly));
        let mut sums = FloatSums([[0.0; NR]; MT]);
        for panel in 0..n.div_ceil(NR) {
            let store = epilogue.for_panel(0, 1, panel, NR, n);
            let b = packed.as_ptr().add(panel * pairs * NR * 2);
            for r0 in (0..tile_rows).step_by(MT) {
                tile_pass_bf16(
                    a.as_ptr().add(r0 * lda) as *const u8,
                    2 * lda,
                    b as *const u8,
                    steps,
                    sums.0.as_mut_ptr() as *mut u8,
                );
                for (r, row_sums) in sums.0.iter().enumerate() {
                    let row = r0 + r;
                    let mut acc0 = _mm512_loadu_ps(row_sums.as_ptr());
                    let mut acc1 = _mm512_loadu_ps(row_sums.as_ptr().add(16));
                    for p in steps * QT..pairs {
                        let pair =
                            (a.as_ptr().add(row * lda + 2 * p) as *const i32).read_unaligned();
                        let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        let w = b.add(p * NR * 2);
                        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(w as *const _));
                        let b1: __m512bh =
                            std::mem::transmute(_mm512_loadu_si512(w.add(NR) as *const _));
                        acc0 = _mm512_dpbf16_ps(acc0, av, b0);
                        acc1 = _mm512_dpbf16_ps(acc1, av, b1);
                    }
                    store_tile::<1>(
                        &[[acc0, acc1]],
                        c.as_mut_ptr().add(row * ldc + panel * NR),
                        ldc,
                        store,
                    );
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
    let done = if steps > 0 { tile_rows } else { 0 };
    if done < rows {
        bf16_block(
            packed,
            pairs,
            n,
            &a[done * lda..],
            lda,
            rows - done,
            &mut c[done * ldc..],
            ldc,
            epilogue,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_configuration_has_the_layout_ldtilecfg_reads() {
        // Intel SDM, palette 1: byte 0 palette, 1 start row, 16-47 bytes per row of tiles
        // 0-15 (u16 each), 48-63 rows of tiles 0-15.
        assert_eq!(std::mem::size_of::<TileConfig>(), 64);
        let config = TileConfig::eight_full_tiles();
        // SAFETY: TileConfig is repr(C), 64 bytes of plain integers.
        let bytes: [u8; 64] = unsafe { std::mem::transmute(config) };
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1], 0);
        for tile in 0..16 {
            let width = u16::from_le_bytes([bytes[16 + 2 * tile], bytes[17 + 2 * tile]]);
            let rows = bytes[48 + tile];
            let used = tile < 8;
            assert_eq!(
                (width, rows),
                if used { (64, 16) } else { (0, 0) },
                "tile {tile}"
            );
        }
    }
}
