//! Encoder forward-pass throughput at sequence lengths 64/256/512 and batch sizes 1/8/32, on the
//! shared multilingual-e5-small on the CPU, f32 and int8 (reported apart). Run:
//! `cargo bench --bench encoder` (or `--profile dev`, which is optimised too and already built).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spyglass::encoder::{default_device, Encoder, EncoderSource, Precision, WindowOverrides};

/// `SPYGLASS_TEST_ENCODER` (a model folder), else the `../shared` copy.
fn model_dir() -> String {
    std::env::var("SPYGLASS_TEST_ENCODER")
        .ok()
        .filter(|dir| !dir.trim().is_empty())
        .unwrap_or_else(|| "../shared/models/multilingual-e5-small".into())
}

fn load(precision: Precision) -> Encoder {
    let files = EncoderSource::local(model_dir())
        .resolve()
        .expect("the shared encoder folder is next to the repository");
    Encoder::load(
        files,
        WindowOverrides::default(),
        &default_device(),
        precision,
    )
    .expect("encoder loads")
}

/// A window of `len` tokens: CLS, ordinary vocabulary ids, SEP (content does not affect speed).
fn window(len: usize, salt: usize) -> Vec<u32> {
    let mut ids = vec![0u32];
    ids.extend((0..len - 2).map(|i| 1000 + ((i * 7919 + salt * 104_729) % 200_000) as u32));
    ids.push(2);
    ids
}

fn forward(c: &mut Criterion) {
    for precision in [Precision::F32, Precision::Int8] {
        let encoder = load(precision);
        let mut group = c.benchmark_group(format!("encoder_forward_{}", precision.as_str()));
        group.sample_size(10);
        for len in [64usize, 256, 512] {
            for batch in [1usize, 8, 32] {
                // 512 x 32 takes several seconds per iteration on 2 cores: opt in.
                if len * batch > 8192 && std::env::var_os("SPYGLASS_BENCH_FULL").is_none() {
                    continue;
                }
                let windows: Vec<Vec<u32>> = (0..batch).map(|b| window(len, b)).collect();
                let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
                group.throughput(Throughput::Elements((len * batch) as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("len{len}"), batch),
                    &refs,
                    |b, refs| b.iter(|| encoder.embed_windows(refs, batch).unwrap()),
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
