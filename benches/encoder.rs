//! Encoder forward-pass throughput at sequence lengths 64/256/512 and batch sizes 1/8/32, on the
//! shared multilingual-e5-small (f32 on CPU). Run: `cargo bench --bench encoder`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spyglass::encoder::{default_device, Encoder, EncoderSource, Precision, WindowOverrides};

const MODEL_DIR: &str = "../shared/models/multilingual-e5-small";

fn load() -> Encoder {
    let files = EncoderSource::local(MODEL_DIR)
        .resolve()
        .expect("the shared encoder folder is next to the repository");
    Encoder::load(
        files,
        WindowOverrides::default(),
        &default_device(),
        Precision::F32,
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
    let encoder = load();
    let mut group = c.benchmark_group("encoder_forward");
    group.sample_size(10);
    for len in [64usize, 256, 512] {
        for batch in [1usize, 8, 32] {
            // 512 x 32 takes about half a minute per iteration on 2 cores: opt in.
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

criterion_group!(benches, forward);
criterion_main!(benches);
