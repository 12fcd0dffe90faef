//! `spyglass data check` through the binary: shipped data passes, an invalid record exits 2.

mod common;

use std::process::Command;

fn data_check(files: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["data", "check", "--encoder", common::model_dir()])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn shipped_data_passes_and_meets_coverage() {
    let run = data_check(&[
        "eval/data/train.jsonl",
        "eval/data/dev.jsonl",
        "eval/data/test.jsonl",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("ok: 745 valid records") || stdout.contains("ok: "),
        "{stdout}"
    );
    // The per-language total row: at least 10 languages.
    let all_row = stdout
        .lines()
        .find(|l| l.starts_with("| **all** |"))
        .unwrap();
    assert!(all_row.split('|').count() - 4 >= 10, "{all_row}");
}

#[test]
fn invalid_record_and_cross_file_duplicate_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id":"a","lang":"en","title":"T","text":"Ransomware shut down the hospital's systems for three days while staff used paper.","labels":["cyberattack"],"source":"written"}"#;
    let bad =
        r#"{"id":"b","lang":"en","title":"T","text":"x","labels":["hacking"],"source":"written"}"#;
    let copy = good.replace("\"a\"", "\"c\"");
    let one = dir.path().join("one.jsonl");
    let two = dir.path().join("two.jsonl");
    std::fs::write(&one, format!("{good}\n{bad}\n")).unwrap();
    std::fs::write(&two, format!("{copy}\n")).unwrap();
    let run = data_check(&[one.to_str().unwrap(), two.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("one.jsonl:2 (b): label `hacking`"),
        "{stdout}"
    );
    assert!(stdout.contains("near-duplicate texts (100%"), "{stdout}");
}
