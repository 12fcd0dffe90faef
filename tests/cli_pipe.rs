//! `spyglass label` as a streaming filter, as Spark's `RDD.pipe` and `xargs`/GNU parallel use
//! it: JSONL in on stdin, JSONL out on stdout in input order, logs only on stderr, and the same
//! records whether the articles go through one process or are split across several.

use std::io::Write;
use std::process::{Command, Stdio};

mod common;

use common::model_dir;

fn label_stdin(input: &str) -> (Vec<String>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args([
            "label",
            "--no-cache",
            "--encoder",
            model_dir(),
            "--input",
            "-",
            "--output",
            "-",
        ])
        .env_remove("SPYGLASS_ENCODER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    // Fed in small pieces from another thread, as a pipe delivers them.
    let feeder = std::thread::spawn(move || {
        for chunk in input.as_bytes().chunks(997) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        stdout.lines().map(str::to_string).collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(n: usize) -> Vec<String> {
    std::fs::read_to_string("eval/data/test.jsonl")
        .unwrap()
        .lines()
        .take(n)
        .map(str::to_string)
        .collect()
}

#[test]
fn stdin_to_stdout_keeps_order_and_stdout_carries_only_records() {
    let mut lines = sample(20);
    lines.insert(7, "{not json".to_string());
    let (out, stderr) = label_stdin(&(lines.join("\n") + "\n"));
    assert_eq!(out.len(), lines.len(), "one output line per input line");
    for (i, (line, input)) in out.iter().zip(&lines).enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line {i} is not JSON ({e}): {line}"));
        if i == 7 {
            assert!(record["error"].is_string(), "{record}");
            continue;
        }
        let given: serde_json::Value = serde_json::from_str(input).unwrap();
        assert_eq!(record["id"], given["id"], "line {i} answers input line {i}");
    }
    assert!(
        stderr.contains("labelled 20 articles (1 bad records)"),
        "{stderr}"
    );
}

#[test]
fn split_across_processes_as_rdd_pipe_does_the_records_are_the_same() {
    let lines = sample(24);
    let (whole, _) = label_stdin(&(lines.join("\n") + "\n"));
    // Three partitions, three processes at once, outputs joined in partition order.
    let parts: Vec<String> = lines.chunks(8).map(|c| c.join("\n") + "\n").collect();
    let handles: Vec<_> = parts
        .into_iter()
        .map(|p| std::thread::spawn(move || label_stdin(&p).0))
        .collect();
    let joined: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(joined, whole);
}

#[test]
fn xargs_over_files_labels_each_file_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = sample(12);
    for (k, chunk) in lines.chunks(6).enumerate() {
        std::fs::write(
            tmp.path().join(format!("part-{k}.jsonl")),
            chunk.join("\n") + "\n",
        )
        .unwrap();
    }
    let script = format!(
        "ls {dir}/part-*.jsonl | xargs -P 2 -I{{}} {bin} label --no-cache --encoder {enc} --input {{}} --output {{}}.labels",
        dir = tmp.path().display(),
        bin = env!("CARGO_BIN_EXE_spyglass"),
        enc = model_dir(),
    );
    let run = Command::new("sh")
        .args(["-c", &script])
        .env_remove("SPYGLASS_ENCODER")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (whole, _) = label_stdin(&(lines.join("\n") + "\n"));
    let mut joined = Vec::new();
    for k in 0..2 {
        let text =
            std::fs::read_to_string(tmp.path().join(format!("part-{k}.jsonl.labels"))).unwrap();
        joined.extend(text.lines().map(str::to_string));
    }
    assert_eq!(joined, whole);
}
