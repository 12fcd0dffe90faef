//! The encoder check of model bundles through the binary: another copy of a bundle's encoder
//! (other bytes, same model) is accepted when it reproduces the bundle's probes, with one line
//! giving the figure; an encoder that does not is refused with the figure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::model_dir;

/// Writes a copy of the test encoder into `dir`: weights as f32 (as the Hub ships them), every
/// matrix moved by uniform noise of `factor` times the rounding error of 4-bit block quantisation
/// (blocks of 32 values, step = the block's largest magnitude / 8, so error up to max/16), and
/// the other files linked. Factor 1 is as far as the original Hub weights can be from a
/// quantised copy, or the other way round.
fn perturbed_copy(dir: &Path, factor: f32, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let shared = std::fs::canonicalize(model_dir()).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::os::unix::fs::symlink(shared.join(file), dir.join(file)).unwrap();
    }
    let bytes = std::fs::read(shared.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut state = seed | 1;
    let mut uniform = move || {
        // xorshift64*: reproducible noise without a dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut named = tensors.tensors();
    // Same seed, same copy: the noise goes to the tensors in name order.
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in named {
        let mut values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            other => panic!("test encoder tensor {name} is {other:?}"),
        };
        if view.shape().len() == 2 {
            for block in values.chunks_mut(32) {
                let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 8.0;
                for v in block.iter_mut() {
                    *v += uniform() * factor * step / 2.0;
                }
            }
        }
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = out
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn label(dir: &Path, encoder: &Path, extra: &[&str]) -> Output {
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"Ransomware encrypted the hospital's servers overnight and surgeries were postponed.\"}\n",
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args([
            "label",
            "--no-cache",
            "--model",
            "models/default",
            "--input",
        ])
        .arg(&input)
        .arg("--encoder")
        .arg(encoder)
        .args(extra)
        .env_remove("SPYGLASS_ENCODER")
        .env_remove("SPYGLASS_CACHE")
        .output()
        .unwrap()
}

/// A Hugging Face cache under `home` whose `intfloat/multilingual-e5-small` snapshot holds the
/// files of `copy`.
fn hub_cache_with(home: &Path, copy: &Path) {
    let repo = home
        .join("hub")
        .join("models--intfloat--multilingual-e5-small");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(
            std::fs::canonicalize(copy.join(file)).unwrap(),
            snapshot.join(file),
        )
        .unwrap();
    }
}

fn probe_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("probes")).collect()
}

#[test]
fn another_copy_of_the_bundles_encoder_is_accepted_by_its_probes_with_the_figure() {
    let tmp = tempfile::tempdir().unwrap();
    // As far from the shipped bundle's weights as the Hub's own f32 weights are from a 4-bit
    // quantised copy.
    let copy = perturbed_copy(&tmp.path().join("e5-download"), 1.0, 7);

    // The Hub's weights in the Hugging Face cache, found offline without `--encoder`.
    let home = tmp.path().join("home");
    hub_cache_with(&home, &copy);
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"Ransomware encrypted the hospital's servers overnight and surgeries were postponed.\"}\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args([
            "label",
            "--offline",
            "--no-cache",
            "--model",
            "models/default",
            "--input",
        ])
        .arg(&input)
        .env_remove("SPYGLASS_ENCODER")
        .env("HF_HOME", &home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let lines = probe_lines(&stderr);
    assert_eq!(lines.len(), 1, "one line says how close it came: {stderr}");
    assert!(
        lines[0].contains("reproduces its probes: lowest cosine 0.9")
            && lines[0].contains("largest topic-score change")
            && lines[0].contains("tolerance: cosine >= 0.97"),
        "{stderr}"
    );
    let rows = common::jsonl(&run.stdout);
    assert_eq!(
        rows[0]["labels"],
        serde_json::json!(["cyberattack"]),
        "{rows:?}"
    );

    // The same copy in a folder of any name: the bundle says how its encoder embeds (prefix,
    // pooling), so the copy is judged by the probes, not refused for a missing prefix.
    let run = label(tmp.path(), &copy, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        probe_lines(&stderr)[0].contains("reproduces its probes"),
        "{stderr}"
    );

    // The same bytes under another model's name are refused: a different encoder.
    let renamed = tmp.path().join("multilingual-e5-base");
    std::fs::rename(&copy, &renamed).unwrap();
    let run = label(tmp.path(), &renamed, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is intfloat/multilingual-e5-base, but the bundle was trained with intfloat/multilingual-e5-small"),
        "{stderr}"
    );
}

#[test]
fn an_encoder_that_misses_the_probes_is_refused_with_the_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let other = perturbed_copy(&tmp.path().join("other-encoder"), 8.0, 11);
    let run = label(tmp.path(), &other, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(run.stdout.is_empty(), "nothing labelled");
    assert!(
        stderr.contains("does not reproduce its probes: lowest cosine 0.")
            && stderr.contains("outside the tolerance (cosine >= 0.97 and score change <= 0.25)")
            && stderr.contains("--allow-encoder-mismatch"),
        "{stderr}"
    );
    let cosine: f32 = stderr
        .split("lowest cosine ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the figure");
    assert!(cosine < 0.9, "a far copy is far: {cosine}");

    let run = label(tmp.path(), &other, &["--allow-encoder-mismatch"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("scores may be off"), "{stderr}");
}

/// Prints how far copies at several noise levels land from the shipped bundle's probes
/// (`cargo test --test cli_encoder_copies -- --ignored --nocapture`): the evidence behind the
/// tolerance in `src/model/probes.rs`.
#[test]
#[ignore = "a measuring tool, not a check: writes seven 470 MB encoder copies and prints figures"]
fn measure_copies_against_the_probes() {
    let tmp = tempfile::tempdir().unwrap();
    for factor in [0.25f32, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0] {
        let copy = perturbed_copy(&tmp.path().join(format!("copy-{factor}")), factor, 7);
        for precision in ["f32", "int8"] {
            let run = label(
                tmp.path(),
                &copy,
                &["--precision", precision, "--allow-encoder-mismatch"],
            );
            let stderr = String::from_utf8_lossy(&run.stderr);
            let line = stderr
                .lines()
                .find(|l| l.contains("probes"))
                .unwrap_or(&stderr);
            println!("factor {factor} {precision}: {line}");
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

/// Writes one perturbed copy for measuring by hand, e.g. `spyglass eval` with it:
/// `SPYGLASS_COPY_DIR=/tmp/copy SPYGLASS_COPY_FACTOR=1 cargo test --test cli_encoder_copies --
/// --ignored write_a_copy`.
#[test]
#[ignore = "a tool for measuring by hand: writes one 470 MB copy where SPYGLASS_COPY_DIR says"]
fn write_a_copy() {
    let dir = std::env::var("SPYGLASS_COPY_DIR").expect("SPYGLASS_COPY_DIR");
    let factor: f32 = std::env::var("SPYGLASS_COPY_FACTOR")
        .expect("SPYGLASS_COPY_FACTOR")
        .parse()
        .unwrap();
    perturbed_copy(Path::new(&dir), factor, 7);
}
