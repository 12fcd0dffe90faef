//! The encoder against PyTorch `transformers` reference outputs for the shared multilingual-e5-small.

use std::path::Path;

use candle_core::Device;
use spyglass::encoder::isa::{self, Isa};
use spyglass::encoder::{
    default_device, Document, Encoder, EncoderSource, Precision, WindowOverrides,
};

/// `SPYGLASS_TEST_ENCODER` (a model folder), else the `../shared` copy; the reference
/// embeddings always come from `../shared/fixtures`.
fn model_dir() -> String {
    std::env::var("SPYGLASS_TEST_ENCODER")
        .ok()
        .filter(|dir| !dir.trim().is_empty())
        .unwrap_or_else(|| "../shared/models/multilingual-e5-small".into())
}
const FIXTURE: &str = "../shared/fixtures/me5_reference.jsonl";
/// Cosine the f32 path must reach against the f32 PyTorch reference for every entry.
const MIN_COSINE_F32: f32 = 0.9999;
/// Cosine the int8 path must reach against the same reference (issue 7's bound).
const MIN_COSINE_INT8: f32 = 0.995;
/// Cosine the int8 path must reach against the f32 path at the same level (issue 15's bound).
const MIN_COSINE_INT8_TO_F32: f32 = 0.999;

fn load_encoder(precision: Precision) -> Encoder {
    load_encoder_for(precision, isa::active())
}

fn load_encoder_for(precision: Precision, isa: Isa) -> Encoder {
    let files = EncoderSource::local(model_dir())
        .resolve()
        .expect("shared encoder folder resolves");
    Encoder::load_for_isa(
        files,
        WindowOverrides::default(),
        &default_device(),
        precision,
        isa,
    )
    .expect("encoder loads")
}

/// The levels to check: every one this CPU has at or below the active level (so that
/// `SPYGLASS_CPU_ISA=portable` checks the portable path alone).
fn levels() -> Vec<Isa> {
    isa::supported_levels()
        .into_iter()
        .filter(|level| *level <= isa::active())
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn token_ids_and_embeddings_match_pytorch_reference() {
    for level in levels() {
        check_reference(Precision::F32, level, MIN_COSINE_F32);
    }
}

#[test]
fn int8_embeddings_stay_close_to_pytorch_reference_and_to_f32() {
    for level in levels() {
        check_close_to_f32(Precision::Int8, level);
    }
}

#[test]
fn bf16_embeddings_stay_close_to_f32_where_the_cpu_has_avx512_bf16() {
    for level in levels()
        .into_iter()
        .filter(|level| spyglass::encoder::bf16::available_at(*level))
    {
        check_close_to_f32(Precision::Bf16, level);
    }
}

/// An approximate precision at `level`: within the int8 bounds of the reference and of f32.
fn check_close_to_f32(precision: Precision, level: Isa) {
    let approximate = check_reference(precision, level, MIN_COSINE_INT8);
    let f32 = check_reference(Precision::F32, level, MIN_COSINE_F32);
    let worst = approximate
        .iter()
        .zip(&f32)
        .map(|(a, b)| cosine(a, b))
        .fold(f32::MAX, f32::min);
    let name = precision.as_str();
    eprintln!("{level}: {name} to f32, lowest cosine {worst:.6}");
    assert!(
        worst >= MIN_COSINE_INT8_TO_F32,
        "{level}: {name} to f32 cosine {worst} < {MIN_COSINE_INT8_TO_F32}"
    );
}

/// Embeds every fixture input in `precision` with the kernels of `level`, checks token ids
/// and cosine to the reference, and returns the embeddings.
fn check_reference(precision: Precision, level: Isa, min_cosine: f32) -> Vec<Vec<f32>> {
    let dir = model_dir();
    assert!(Path::new(&dir).is_dir(), "missing {dir}");
    let encoder = load_encoder_for(precision, level);
    check_encoder(&encoder, &format!("{precision:?} {level}"), min_cosine).0
}

/// Embeds every fixture input with `encoder`, checks token ids and cosine to the reference,
/// and returns the embeddings and the lowest cosine.
fn check_encoder(encoder: &Encoder, label: &str, min_cosine: f32) -> (Vec<Vec<f32>>, f32) {
    let prefix = encoder.settings().prefix.clone();
    assert_eq!(prefix, "passage: ");
    let mut texts = Vec::new();
    let mut expected = Vec::new();
    for line in std::fs::read_to_string(FIXTURE).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let input = row["input"].as_str().unwrap();
        let text = input
            .strip_prefix(&prefix)
            .expect("fixture inputs carry the prefix");
        let ids: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
        let embedding: Vec<f32> = serde_json::from_value(row["embedding"].clone()).unwrap();
        texts.push(text.to_string());
        expected.push((ids, embedding));
    }
    assert!(texts.len() >= 19);
    // Each reference is the first (truncated) window of its input; embed all in shared batches.
    let windows: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| encoder.reference_ids(t).unwrap())
        .collect();
    let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
    let started = std::time::Instant::now();
    let vectors = encoder.embed_windows(&refs, 4).unwrap();
    let elapsed = started.elapsed();
    let mut worst = f32::MAX;
    for (i, ((ids, reference), (got_ids, got))) in expected
        .iter()
        .zip(windows.iter().zip(&vectors))
        .enumerate()
    {
        assert_eq!(
            got_ids, ids,
            "token ids differ for entry {i}: {:?}",
            texts[i]
        );
        let cos = cosine(got, reference);
        worst = worst.min(cos);
        assert!(
            cos >= min_cosine,
            "{label} entry {i} cosine {cos} < {min_cosine}: {:?}",
            texts[i]
        );
    }
    eprintln!(
        "{label}: {} reference entries, lowest cosine {worst:.6} (1 - cosine {:.1e}), embedded in {elapsed:.2?} (one run)",
        expected.len(),
        1.0 - worst
    );
    (vectors, worst)
}

#[test]
fn candle_path_on_the_cpu_matches_pytorch_reference() {
    // The candle path (what runs on CUDA) on the CPU: the portable reference must reach the
    // same bound as the fused CPU path, or a GPU run would embed differently.
    let dir = model_dir();
    assert!(Path::new(&dir).is_dir(), "missing {dir}");
    let files = EncoderSource::local(dir).resolve().expect("resolves");
    let encoder = Encoder::load_candle(files, WindowOverrides::default(), &Device::Cpu)
        .expect("candle encoder loads");
    assert_eq!(encoder.compute_path(), "candle-f32");
    let (_, worst) = check_encoder(&encoder, "candle f32 (CPU)", MIN_COSINE_F32);
    assert!(worst >= MIN_COSINE_F32);
}

#[test]
fn long_article_windows_cover_text_and_embed_in_input_order() {
    let encoder = load_encoder(Precision::F32);
    let sentence = "Prosecutors say the engineer copied wafer recipes before joining a rival. ";
    let long = sentence.repeat(120); // ~1,800 tokens
    let docs = [
        Document {
            title: Some("Chip secrets case"),
            text: &long,
        },
        Document {
            title: None,
            text: "Short note about football.",
        },
        Document {
            title: None,
            text: &long[..400],
        },
    ];
    let batched = encoder.embed(&docs, 3).unwrap();
    let single: Vec<_> = docs
        .iter()
        .map(|d| encoder.embed(&[*d], 1).unwrap().remove(0))
        .collect();
    for (a, b) in batched.iter().zip(&single) {
        assert!(
            cosine(&a.embedding, &b.embedding) > 0.99999,
            "batching changed a result"
        );
    }
    let windows = &batched[0].windows;
    assert!(windows.len() >= 4, "{} windows", windows.len());
    assert_eq!(windows[0].span.start, 0);
    assert_eq!(windows.last().unwrap().span.end, long.chars().count() - 1); // trailing space trimmed
    for pair in windows.windows(2) {
        assert!(
            pair[1].span.start < pair[0].span.end,
            "windows overlap in text"
        );
    }
    assert!(windows.iter().all(|w| w.tokens <= 512));
    assert_eq!(batched[1].windows.len(), 1);
}

#[test]
fn a_window_limit_tokenizes_only_what_the_kept_windows_need() {
    // A long article cut into slices gives the same kept windows as tokenizing it whole.
    let files = EncoderSource::local(model_dir())
        .resolve()
        .expect("resolves");
    let limited = spyglass::encoder::ArticleTokenizer::for_files(
        &files,
        WindowOverrides {
            max_windows: Some(2),
            ..WindowOverrides::default()
        },
    )
    .unwrap();
    let all = spyglass::encoder::ArticleTokenizer::for_files(
        &files,
        WindowOverrides {
            max_windows: Some(0),
            ..WindowOverrides::default()
        },
    )
    .unwrap();
    let english = "Investigators said the intruders copied design files from the lab's servers before the breach was found. ";
    let japanese = "警察は研究所のサーバーから設計図を持ち出した疑いで元社員を逮捕した。";
    for (unit, repeats) in [(english, 12_000), (japanese, 12_000)] {
        let text = unit.repeat(repeats); // over 1 MB, well past the first slice
        let doc = Document {
            title: Some("Title"),
            text: &text,
        };
        let sliced = limited.tokenize(doc).unwrap();
        let whole = all.tokenize(doc).unwrap();
        assert!(sliced.truncated);
        assert_eq!(sliced.windows.len(), 2);
        for (a, b) in sliced.windows.iter().zip(&whole.windows) {
            assert_eq!(a.ids, b.ids);
            assert_eq!(a.span, b.span);
        }
        assert!(sliced.content_tokens < whole.content_tokens / 10);
    }
}
