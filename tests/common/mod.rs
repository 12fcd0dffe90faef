//! Helpers shared by the integration tests: running the binary and the toy model bundle.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The encoder every test uses (no network here): `SPYGLASS_TEST_ENCODER` (a model folder,
/// e.g. a snapshot in the Hugging Face cache), else the `../shared` copy.
pub fn model_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var("SPYGLASS_TEST_ENCODER")
            .ok()
            .filter(|dir| !dir.trim().is_empty())
            .unwrap_or_else(|| "../shared/models/multilingual-e5-small".into())
    })
}

/// Runs the binary with the given arguments, isolated from the caller's spyglass settings.
pub fn spyglass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(args)
        .env_remove("SPYGLASS_ENCODER")
        .env_remove("SPYGLASS_CACHE")
        .env_remove("SPYGLASS_TRIAGE_STATE")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("spyglass runs")
}

/// Arguments of `spyglass label` of `input` into `output` with the toy bundle and `encoder`,
/// plus `extra` flags (`--cache FILE` or `--no-cache` among them).
pub fn toy_label_args(
    input: &std::path::Path,
    output: &std::path::Path,
    encoder: &str,
    extra: &[&str],
) -> Vec<String> {
    let (bundle, _) = toy();
    let mut args: Vec<String> = [
        "label",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--encoder",
        encoder,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `spyglass label` with the toy bundle and the test encoder (see [`toy_label_args`]).
pub fn label_with_toy(input: &std::path::Path, output: &std::path::Path, extra: &[&str]) -> Output {
    let args = toy_label_args(input, output, model_dir(), extra);
    spyglass(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `spyglass label --no-cache` with the shipped model and the test encoder, from `input` to
/// `output` (`-` for stdout); asserts success and returns stdout.
pub fn label_shipped(input: &std::path::Path, output: &str) -> Vec<u8> {
    let run = spyglass(&[
        "label",
        "--no-cache",
        "--encoder",
        model_dir(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
    ]);
    ok(&run);
    run.stdout
}

/// Asserts the run succeeded and returns its stderr.
pub fn ok(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    stderr
}

pub fn jsonl(text: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The JSON lines of a file.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    jsonl(&std::fs::read(path).unwrap())
}

/// A toy bundle trained on tests/fixtures/toy_*.jsonl (only `cyberattack` has positives) and
/// the embedding cache it filled: trained once per test binary, shared by its tests.
pub fn toy() -> &'static (PathBuf, PathBuf) {
    static TOY: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let bundle = dir.join("toy-model");
        let cache = dir.join("cache.sqlite");
        ok(&spyglass(&[
            "train",
            "--train",
            "tests/fixtures/toy_train.jsonl",
            "--dev",
            "tests/fixtures/toy_dev.jsonl",
            "--output",
            bundle.to_str().unwrap(),
            "--encoder",
            model_dir(),
            "--cache",
            cache.to_str().unwrap(),
            "--max-epochs",
            "300",
        ]));
        (bundle, cache)
    })
}
