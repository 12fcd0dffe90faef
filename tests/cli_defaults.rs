//! The shipped model and taxonomy work from any folder: the installed binary carries them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{jsonl, model_dir, ok};

fn encoder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(model_dir())
}

fn run_in(dir: &Path, data_home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", data_home)
        .env_remove("SPYGLASS_ENCODER")
        .env_remove("SPYGLASS_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("spyglass runs")
}

#[test]
fn the_shipped_model_and_taxonomy_work_from_any_folder() {
    let elsewhere = tempfile::tempdir().unwrap();
    let data_home = tempfile::tempdir().unwrap();
    let article = elsewhere.path().join("article.txt");
    std::fs::write(
        &article,
        "Intruders broke into the insurer's network and copied the medical records of two million customers.",
    )
    .unwrap();
    let encoder = encoder();
    let args = |article: &Path| {
        vec![
            "label".to_string(),
            "--input".into(),
            article.display().to_string(),
            "--output".into(),
            "-".into(),
            "--no-cache".into(),
            "--encoder".into(),
            encoder.display().to_string(),
        ]
    };
    let away: Vec<String> = args(&article);
    let away: Vec<&str> = away.iter().map(String::as_str).collect();
    let stdout = |run: std::process::Output| {
        ok(&run);
        jsonl(&run.stdout)
    };
    let from_elsewhere = stdout(run_in(elsewhere.path(), data_home.path(), &away));

    // The built-in copy was written once, whole, under the data directory.
    let builtin = data_home.path().join("spyglass/builtin");
    let copies: Vec<_> = std::fs::read_dir(&builtin).unwrap().flatten().collect();
    assert!(!copies.is_empty(), "nothing under `{}`", builtin.display());
    assert!(copies
        .iter()
        .any(|c| c.path().join("manifest.json").is_file()));

    // The same article labelled from the repository root, with its `models/default`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = stdout(run_in(root, data_home.path(), &away));
    assert_eq!(from_elsewhere, here);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("models/default/manifest.json")).unwrap())
            .unwrap();
    let name = format!(
        "{}@{}",
        manifest["name"].as_str().unwrap(),
        manifest["version"].as_str().unwrap()
    );
    assert_eq!(from_elsewhere[0]["model"], name.as_str());
    assert_eq!(from_elsewhere[0]["scores"].as_object().unwrap().len(), 5);

    // `data check` finds the built-in taxonomy too.
    let labelled = elsewhere.path().join("gold.jsonl");
    std::fs::write(
        &labelled,
        r#"{"id":"g1","lang":"en","title":"Breach","text":"Records were stolen.","labels":["data_theft"],"source":"team"}"#,
    )
    .unwrap();
    let check = run_in(
        elsewhere.path(),
        data_home.path(),
        &["data", "check", labelled.to_str().unwrap()],
    );
    assert!(
        check.status.code() != Some(2),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
