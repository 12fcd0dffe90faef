//! Dense-layer matrix products on their own, at every instruction-set level this CPU supports:
//! the f32 kernels (and the `gemm` crate, the portable path's engine, as the baseline) and the
//! int8 ones, on multilingual-e5-small's four shapes (384 -> 1152 QKV, 384 -> 384 output,
//! 384 -> 1536 and 1536 -> 384 feed-forward) for 2048 token rows. Throughput counts 2 x m x n x k
//! operations, so criterion's "elem/s" reads as FLOP/s (f32) or OP/s (int8). Run:
//! `cargo bench --bench kernels` (threads: `RAYON_NUM_THREADS`, default all cores).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spyglass::encoder::bf16::{self, Bf16Matrix};
use spyglass::encoder::isa;
use spyglass::encoder::quant::{Int8Kernel, QuantizedMatrix};
use spyglass::encoder::sgemm::{Affine, F32Kernel, PackedMatrix};

const ROWS: usize = 2048;
/// (inputs k, outputs n) of each dense layer.
const SHAPES: [(usize, usize); 4] = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];

/// Deterministic values in [-1, 1) (content does not affect speed).
fn values(len: usize, salt: u64) -> Vec<f32> {
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn dense(c: &mut Criterion) {
    let levels = isa::supported_levels();
    let mut f32_kernels: Vec<F32Kernel> = levels
        .iter()
        .filter_map(|l| F32Kernel::for_isa(*l))
        .collect();
    f32_kernels.dedup();
    // Both int8 families: int16-pair activations (QKV) and, with VNNI, byte activations.
    let mut int8_kernels: Vec<Int8Kernel> = Vec::new();
    for level in &levels {
        for kernel in [
            Int8Kernel::for_isa(*level),
            Int8Kernel::narrow_for_isa(*level),
        ] {
            if !int8_kernels.contains(&kernel) {
                int8_kernels.push(kernel);
            }
        }
    }
    let threads = rayon::current_num_threads();
    for (k, n) in SHAPES {
        let a = values(ROWS * k, 1);
        let w = values(n * k, 2);
        let bias = values(n, 3);
        let affine = Affine {
            bias: &bias,
            residual: false,
            activation: None,
        };
        let mut out = vec![0f32; ROWS * n];
        let mut group = c.benchmark_group(format!("dense_{k}x{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((2 * ROWS * n * k) as u64));
        group.bench_function(BenchmarkId::new("f32", "gemm-crate"), |b| {
            b.iter(|| {
                // SAFETY: every pointer spans its matrix with the strides given (row-major a
                // and out, w read as its transpose).
                unsafe {
                    gemm::gemm(
                        ROWS,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        w.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(threads),
                    )
                }
            })
        });
        for kernel in &f32_kernels {
            let packed = PackedMatrix::from_transposed(&w, n, k, *kernel);
            group.bench_function(BenchmarkId::new("f32", kernel.name()), |b| {
                b.iter(|| packed.affine(&a, ROWS, &mut out, affine))
            });
        }
        for kernel in &int8_kernels {
            let quantized = QuantizedMatrix::from_rows(&w, n, k, *kernel);
            group.bench_function(BenchmarkId::new("int8", kernel.name()), |b| {
                b.iter(|| quantized.affine(&a, ROWS, &mut out, affine))
            });
        }
        if bf16::available_at(isa::active()) {
            let rounded = Bf16Matrix::from_rows(&w, n, k);
            group.bench_function(
                BenchmarkId::new("bf16", "avx512-bf16 vdpbf16ps 12x32"),
                |b| b.iter(|| rounded.affine(&a, ROWS, &mut out, affine)),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, dense);
criterion_main!(benches);
