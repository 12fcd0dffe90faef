//! `spyglass eval` through the binary on a predictions file: metrics, JSON, HTML report,
//! comparison and the quality gate.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn spyglass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(args)
        .args(["--encoder", common::model_dir()])
        .output()
        .unwrap()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn record(id: &str, lang: &str, labels: &[&str]) -> String {
    serde_json::json!({"id": id, "lang": lang, "title": "T", "text": format!("Article {id} text."), "labels": labels, "source": "written"}).to_string()
}

fn prediction(id: &str, cyber: f32, esp: f32) -> String {
    serde_json::json!({"id": id, "scores": {"espionage": esp, "data_theft": 0.01, "national_security_review": 0.01, "tech_decoupling": 0.01, "cyberattack": cyber}}).to_string()
}

#[test]
fn scores_predictions_writes_reports_compares_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write(
        &data,
        &[
            record("a", "en", &["cyberattack"]),
            record("b", "en", &["cyberattack", "espionage"]),
            record("c", "de", &[]),
            record("d", "de", &["espionage"]),
        ],
    );
    // System A: one false positive (c) and one false negative (d).
    let pred_a = dir.path().join("a.jsonl");
    write(
        &pred_a,
        &[
            prediction("a", 0.9, 0.1),
            prediction("b", 0.8, 0.7),
            prediction("c", 0.6, 0.2),
            prediction("d", 0.1, 0.3),
        ],
    );
    // System B: perfect.
    let pred_b = dir.path().join("b.jsonl");
    write(
        &pred_b,
        &[
            prediction("a", 0.9, 0.1),
            prediction("b", 0.8, 0.7),
            prediction("c", 0.2, 0.2),
            prediction("d", 0.1, 0.9),
        ],
    );

    let json_a = dir.path().join("a.json");
    let report = dir.path().join("report");
    let run = spyglass(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        pred_a.to_str().unwrap(),
        "--json",
        json_a.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--fail-under",
        "macro_f1=0.2",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_a).unwrap()).unwrap();
    assert_eq!(a["schema"], "spyglass.eval/1");
    assert_eq!(a["overall"]["articles"], 4);
    // cyberattack: tp 2, fp 1 -> F1 0.8; espionage: tp 1, fn 1 -> F1 2/3; others 0 (no support).
    let f1 = |t: usize| a["per_topic"][t]["f1"].as_f64().unwrap();
    assert!((f1(4) - 0.8).abs() < 1e-9 && (f1(0) - 2.0 / 3.0).abs() < 1e-9);
    assert!((a["overall"]["macro_f1"].as_f64().unwrap() - (0.8 + 2.0 / 3.0) / 5.0).abs() < 1e-9);
    assert_eq!(a["data"][0]["sha256"].as_str().unwrap().len(), 64);
    // Worst first: the positive scored 0.3 (badness 0.7) before the 0.6 false positive.
    assert_eq!(a["errors"][0]["id"], "d");
    assert_eq!(a["errors"][1]["id"], "c");
    assert!(
        stdout.contains("gate macro_f1 >= 0.200: 0.293 ok"),
        "{stdout}"
    );

    // The HTML report is self-contained with its three charts.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for id in ["pr-curves", "reliability", "language-f1"] {
        let at = html
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no {id} chart"));
        let figure = &html[at..at + html[at..].find("</figure>").unwrap()];
        assert!(
            figure.contains("<svg") && figure.trim_end().ends_with("</svg>"),
            "{id}"
        );
        assert!(figure.matches("<text").count() >= 3, "{id} has axis labels");
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(!html.contains("<script") && !html.contains("src=\"http"));
    assert!(
        html.contains("Noto Sans CJK SC"),
        "the report names a CJK-capable font"
    );
    assert!(std::fs::read_to_string(report.join("summary.md"))
        .unwrap()
        .contains("| `cyberattack` |"));

    let json_b = dir.path().join("b.json");
    assert!(spyglass(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        pred_b.to_str().unwrap(),
        "--json",
        json_b.to_str().unwrap()
    ])
    .status
    .success());
    let cmp = spyglass(&[
        "eval",
        "--compare",
        json_a.to_str().unwrap(),
        json_b.to_str().unwrap(),
        "--bootstrap",
        "200",
    ]);
    let out = String::from_utf8_lossy(&cmp.stdout);
    assert!(cmp.status.success(), "{out}");
    assert!(out.contains("paired articles: 4"), "{out}");
    assert!(
        out.contains("| macro_f1 | 0.293 | 0.400 | +0.107 |"),
        "{out}"
    );
}

#[test]
fn gate_failure_exits_1_and_missing_predictions_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write(
        &data,
        &[record("a", "en", &["cyberattack"]), record("b", "en", &[])],
    );
    let pred = dir.path().join("p.jsonl");
    write(
        &pred,
        &[prediction("a", 0.2, 0.1), prediction("b", 0.9, 0.1)],
    );
    let run = spyglass(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        pred.to_str().unwrap(),
        "--fail-under",
        "cyberattack=0.5",
    ]);
    assert_eq!(run.status.code(), Some(1));

    write(&pred, &[prediction("a", 0.2, 0.1)]);
    let run = spyglass(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        pred.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("1 labelled articles have no prediction") && stderr.contains("b"),
        "{stderr}"
    );
}

#[test]
fn nonsense_is_refused_and_json_on_stdout_is_pure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write(
        &data,
        &[record("a", "en", &["cyberattack"]), record("b", "de", &[])],
    );
    let good = dir.path().join("good.jsonl");
    write(
        &good,
        &[prediction("a", 0.9, 0.1), prediction("b", 0.1, 0.1)],
    );
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        spyglass(&args)
    };
    let refused = |extra: &[&str], message: &str| {
        let run = eval(extra);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    };
    let good_arg = good.to_str().unwrap();
    refused(
        &["--predictions", good_arg, "--fail-under", "macro_f1=1.5"],
        "a gate is a score from 0 to 1",
    );
    refused(
        &["--predictions", good_arg, "--fail-under", "macro_f1=NaN"],
        "a gate is a score from 0 to 1",
    );
    refused(
        &["--predictions", good_arg, "--bootstrap", "0"],
        "`--bootstrap 0`",
    );

    // Scores outside 0-1, and the same id predicted twice.
    let bad = dir.path().join("bad.jsonl");
    write(
        &bad,
        &[
            prediction("a", 1.7, 0.1),
            prediction("b", 0.1, 0.1),
            prediction("b", 0.1, 0.1),
            prediction("c", 0.1, -0.2),
        ],
    );
    let run = eval(&["--predictions", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cyberattack=1.7"), "{stderr}");
    assert!(stderr.contains("espionage=-0.2"), "{stderr}");
    assert!(
        stderr.contains("id `b` was already predicted on line 2"),
        "{stderr}"
    );

    // An unknown topic in both scores and labels is named once.
    let unknown = dir.path().join("unknown.jsonl");
    write(
        &unknown,
        &[r#"{"id":"a","scores":{"spying":0.5},"labels":["spying"]}"#.to_string()],
    );
    let run = eval(&["--predictions", unknown.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("\"spying\"").count(), 1, "{stderr}");

    // A malformed gold line is an error, not a smaller test set.
    let holes = dir.path().join("holes.jsonl");
    write(
        &holes,
        &[record("a", "en", &["cyberattack"]), "{not json".into()],
    );
    let run = spyglass(&[
        "eval",
        "--data",
        holes.to_str().unwrap(),
        "--predictions",
        good_arg,
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("1 invalid gold records"), "{stderr}");

    // `--json -`: stdout is one JSON document; the summary and gates go to stderr.
    let run = eval(&[
        "--predictions",
        good_arg,
        "--json",
        "-",
        "--fail-under",
        "macro_f1=0.1",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("stdout is pure JSON");
    assert_eq!(report["schema"], "spyglass.eval/1");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("macro-F1") && stderr.contains("gate macro_f1"),
        "{stderr}"
    );

    // `--compare … --json -` is pure too, and a damaged report is refused, not a panic.
    let report_file = dir.path().join("report.json");
    std::fs::write(&report_file, &run.stdout).unwrap();
    let report_arg = report_file.to_str().unwrap();
    let cmp = spyglass(&["eval", "--compare", report_arg, report_arg, "--json", "-"]);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let compared: serde_json::Value =
        serde_json::from_slice(&cmp.stdout).expect("stdout is pure JSON");
    assert_eq!(compared["paired_articles"], 2);
    assert!(String::from_utf8_lossy(&cmp.stderr).contains("paired articles"));
    let mut damaged = report.clone();
    damaged["articles"][0]["gold"] = serde_json::json!([true]);
    let damaged_file = dir.path().join("damaged.json");
    std::fs::write(&damaged_file, damaged.to_string()).unwrap();
    let cmp = spyglass(&[
        "eval",
        "--compare",
        report_arg,
        damaged_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&cmp.stderr);
    assert_eq!(cmp.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has 1 `gold` values for 5 topics"),
        "{stderr}"
    );
}
