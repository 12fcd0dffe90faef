//! `spyglass embed` through the binary: output shape and order, bad records, model resolution.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{model_dir, read_jsonl as lines};

fn spyglass(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spyglass"));
    cmd.args(args)
        .env_remove("SPYGLASS_ENCODER")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spyglass runs")
}

#[test]
fn embeds_in_input_order_and_reports_bad_lines_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = "Der Verfassungsschutz warnt vor Industriespionage. ".repeat(90);
    let records = [
        serde_json::json!({"id": "first", "title": "Titel", "text": long}).to_string(),
        "{\"id\": \"broken\", \"text\": ".to_string(),
        serde_json::json!({"id": "second", "text": "Manchester United beat Chelsea 3-1."})
            .to_string(),
        serde_json::json!({"id": "third", "text": "データ漏洩が発覚した。"}).to_string(),
    ];
    std::fs::write(&input, records.join("\n") + "\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let run = spyglass(
        &[
            "embed",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--encoder",
            model_dir(),
            "--batch-size",
            "2",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("embedded 3 articles (1 bad records)"),
        "{stderr}"
    );
    let out = lines(&output);
    let ids: Vec<&str> = out
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids, ["first", "?", "second", "third"]);
    assert_eq!(out[1]["line"], 2);
    assert!(out[1]["error"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(out[0]["embedding"].as_array().unwrap().len(), 384);
    let windows = out[0]["windows"].as_array().unwrap();
    assert!(
        windows.len() >= 2,
        "a ~1000-token article spans several windows"
    );
    assert!(windows.iter().all(|w| w["tokens"].as_u64().unwrap() <= 512));
    assert_eq!(
        windows.last().unwrap()["end"],
        long.trim_end().chars().count()
    );
    assert_eq!(
        out[3]["windows"][0]["end"],
        "データ漏洩が発覚した。".chars().count()
    );
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":\"a\",\"text\":\"x\"}\n").unwrap();
    let run = spyglass(
        &[
            "embed",
            "--input",
            input.to_str().unwrap(),
            "--encoder",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("`tokenizer.json`"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );

    // A missing input names the file and says the OS error once.
    let run = spyglass(
        &[
            "embed",
            "--input",
            "/nonexistent/in.jsonl",
            "--encoder",
            model_dir(),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("`/nonexistent/in.jsonl`"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

/// Builds `hub/models--intfloat--multilingual-e5-small/{refs/main,snapshots/<commit>/...}` with
/// links to the shared model files, the layout `huggingface_hub` writes.
fn fake_hub_cache(root: &Path) -> PathBuf {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = root
        .join("hub")
        .join("models--intfloat--multilingual-e5-small");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    let shared = std::fs::canonicalize(model_dir()).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(shared.join(file), snapshot.join(file)).unwrap();
    }
    snapshot
}

#[test]
fn hub_id_resolves_from_the_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    fake_hub_cache(home.path());
    let input = home.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"Ransomware hits a hospital.\"}\n",
    )
    .unwrap();
    let out = home.path().join("out.jsonl");
    let run = spyglass(
        &[
            "embed",
            "--offline",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        &[("HF_HOME", home.path())],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(lines(&out)[0]["embedding"].as_array().unwrap().len(), 384);

    // A revision that is not cached fails offline (set here the way huggingface_hub users do,
    // HF_HUB_OFFLINE=1), naming the file and the fix.
    let run = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args([
            "embed",
            "--revision",
            "v9",
            "--input",
            input.to_str().unwrap(),
        ])
        .env_remove("SPYGLASS_ENCODER")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`config.json`") && stderr.contains("--offline"),
        "{stderr}"
    );
}

/// The shipped model finds its encoder in the Hugging Face cache by itself (no `--encoder`),
/// offline, from another working directory.
#[test]
fn shipped_model_labels_offline_from_the_hub_cache_without_encoder_flag() {
    let home = tempfile::tempdir().unwrap();
    fake_hub_cache(home.path());
    let input = home.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"Ransomware encrypted the hospital's servers overnight.\"}\n",
    )
    .unwrap();
    let model = std::fs::canonicalize("models/default").unwrap();
    let taxonomy = std::fs::canonicalize("labels/taxonomy.toml").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .current_dir(home.path())
        .args([
            "label",
            "--offline",
            "--no-cache",
            "--input",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--taxonomy",
            taxonomy.to_str().unwrap(),
        ])
        .env_remove("SPYGLASS_ENCODER")
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let rows = common::jsonl(&run.stdout);
    assert_eq!(
        rows[0]["labels"],
        serde_json::json!(["cyberattack"]),
        "{rows:?}"
    );
}
