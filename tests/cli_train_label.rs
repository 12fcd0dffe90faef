//! `spyglass train` and `spyglass label` through the binary on a small fixture.

use std::path::Path;

mod common;

use common::{label_with_toy, model_dir, ok, read_jsonl, spyglass, toy, toy_label_args};

#[test]
fn train_then_label_in_order_with_cache_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, cache) = toy();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["head"], "ensemble");
    assert_eq!(manifest["encoder"]["id"], "intfloat/multilingual-e5-small");
    assert_eq!(manifest["topics"].as_array().unwrap().len(), 5);
    assert_eq!(manifest["training"]["calibration"], "out-of-fold train+dev");
    // Thresholds come from out-of-fold scores of train and dev pooled: the one topic with
    // positives is tuned, the others (no positives) keep 0.5.
    let cyber = manifest["thresholds"]["cyberattack"].as_f64().unwrap();
    assert!(cyber > 0.0 && cyber < 1.0 && cyber != 0.5, "{cyber}");
    assert_eq!(manifest["thresholds"]["espionage"].as_f64().unwrap(), 0.5);

    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        [
            r#"{"id":"a","text":"Ransomware encrypted the servers of the county council; services are down for a week."}"#,
            r#"{"id":"b","text": broken"#,
            r#"{"id":"c","title":"Fußball","text":"Der Verein gewann am Samstag mit 3:1 gegen den Tabellenführer."}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let args = [
        "label",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--encoder",
        model_dir(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    let stderr = ok(&spyglass(&args));
    assert!(
        stderr.contains("labelled 2 articles (1 bad records)"),
        "{stderr}"
    );
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], "a");
    assert_eq!(rows[1]["line"], 2);
    assert_eq!(rows[2]["id"], "c");
    assert_eq!(rows[0]["labels"], serde_json::json!(["cyberattack"]));
    assert_eq!(rows[2]["labels"], serde_json::json!([]));
    assert_eq!(rows[2]["lang"], "de");
    assert_eq!(rows[0]["model"], "toy-model@1.0.0");
    assert_eq!(rows[0]["scores"].as_object().unwrap().len(), 5);
    let evidence = &rows[0]["evidence"]["cyberattack"];
    assert!(
        evidence["excerpt"]
            .as_str()
            .unwrap()
            .starts_with("Ransomware encrypted"),
        "{evidence}"
    );

    // Second run: every embedding comes from the cache, and the scores are identical.
    let stderr = ok(&spyglass(&args));
    assert!(
        stderr.contains("embeddings: 2 cached, 0 computed"),
        "{stderr}"
    );
    assert_eq!(read_jsonl(&out), rows);

    // --topics and --min-score filter what is reported.
    let filtered = dir.path().join("filtered.jsonl");
    let mut narrow = args.to_vec();
    narrow.splice(4..5, [filtered.to_str().unwrap()]);
    narrow.extend(["--topics", "cyberattack", "--min-score", "0.9999"]);
    ok(&spyglass(&narrow));
    let first = &read_jsonl(&filtered)[0];
    assert_eq!(first["scores"].as_object().unwrap().len(), 1);
    let score = first["scores"]["cyberattack"].as_f64().unwrap();
    let expected = if score >= 0.9999 {
        serde_json::json!(["cyberattack"])
    } else {
        serde_json::json!([])
    };
    assert_eq!(first["labels"], expected, "{first}");
}

#[test]
fn changed_taxonomy_is_refused_and_new_topic_falls_back_to_zero_shot() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, cache) = toy();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        r#"{"id":"a","text":"Hackers took the port's systems offline."}"#,
    )
    .unwrap();
    let shipped = std::fs::read_to_string("labels/taxonomy.toml").unwrap();
    let label = |taxonomy: &Path| {
        spyglass(&[
            "label",
            "--input",
            input.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--encoder",
            model_dir(),
            "--cache",
            cache.to_str().unwrap(),
            "--taxonomy",
            taxonomy.to_str().unwrap(),
        ])
    };

    let changed = dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        shipped.replacen("Spying for a state", "Watching a state", 1),
    )
    .unwrap();
    let run = label(&changed);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("topic `espionage` has a changed definition"),
        "{stderr}"
    );

    let extended = dir.path().join("extended.toml");
    std::fs::write(
        &extended,
        format!("{shipped}\n[[topic]]\nid = \"sanctions\"\nname = \"Sanctions\"\ndefinition = \"Economic sanctions.\"\n[topic.descriptions]\nen = [\"The government imposed sanctions on a foreign bank.\"]\n"),
    )
    .unwrap();
    let run = label(&extended);
    let stderr = ok(&run);
    assert!(
        stderr.contains("topics sanctions are not in bundle"),
        "{stderr}"
    );
    let row: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(row["scores"]["sanctions"].as_f64().is_some(), "{row}");
}

#[test]
fn train_flags_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--train",
            "tests/fixtures/toy_train.jsonl",
            "--dev",
            "tests/fixtures/toy_dev.jsonl",
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = spyglass(&args);
        assert_eq!(run.status.code(), Some(2), "{extra:?}");
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let cases: [(&[&str], &str); 4] = [
        (
            &["--head", "linear", "--calibration", "cross-validation"],
            "`--calibration cross-validation` needs",
        ),
        (
            &["--penalties", "0.1,-1"],
            "`--penalties` takes positive numbers",
        ),
        (&["--lexical-penalties", "NaN"], "`--lexical-penalties`"),
        (&["--folds", "1"], "`--folds` must be at least 2"),
    ];
    for (flags, message) in cases {
        // A missing encoder: a flag error must come first, before anything is loaded.
        let mut extra = vec!["--encoder", "/nonexistent/encoder"];
        extra.extend_from_slice(flags);
        let stderr = train(&extra);
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
    let stderr = train(&["--folds", "50"]);
    assert!(
        stderr.contains("`--folds 50` is more than the 8 articles"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn all_bad_input_exits_2_and_a_text_file_is_one_article() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cache) = toy();
    let label = |input: &Path, out: &Path| {
        label_with_toy(input, out, &["--cache", cache.to_str().unwrap()])
    };
    // Every record bad: exit 2 with a summary; the error lines are still written.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n{\"id\":\"x\"}\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let run = label(&bad, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("all 2 records of"), "{stderr}");
    assert_eq!(read_jsonl(&out).len(), 2);

    // A .txt file is one article, not lines of JSON.
    let txt = dir.path().join("story.txt");
    std::fs::write(
        &txt,
        "Ransomware encrypted the county council's servers.\nServices are down for a week.\n",
    )
    .unwrap();
    let run = label(&txt, &out);
    ok(&run);
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "story");

    // The output is never the input.
    let run = label(&txt, &txt);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("is the input"));
}

/// Ctrl-C or SIGTERM in the middle of a run leaves no `.spyglass-*.partial` file behind.
#[cfg(unix)]
#[test]
fn interrupted_label_removes_its_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.jsonl");
    let lines: Vec<String> = (0..400)
        .map(|i| {
            format!(
                r#"{{"id":"a{i}","text":"Article {i}: the harbour authority met on Tuesday to discuss the ferry timetable, parking charges and the new fish market, which opens in spring."}}"#
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    for signal in ["INT", "TERM"] {
        let out_dir = dir.path().join(signal);
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("out.jsonl");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spyglass"))
            .args(toy_label_args(
                &input,
                &out,
                model_dir(),
                &["--no-cache", "--batch-size", "1"],
            ))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let partials = || -> usize {
            std::fs::read_dir(&out_dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .count()
        };
        let started = std::time::Instant::now();
        while partials() == 0 && started.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(partials(), 1, "the run never started writing");
        std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: {status:?}");
        assert_eq!(partials(), 0, "{signal}: a partial file was left");
        assert!(!out.exists());
    }
}

/// The embedding cache is keyed by the weights, not by how the encoder's path is spelled.
#[test]
fn cache_hits_whatever_the_encoder_path_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.sqlite");
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        r#"{"id":"a","text":"The ferry timetable changes on Monday."}"#,
    )
    .unwrap();
    let spelled = model_dir().replace("models/", "models/./") + "/";
    for (encoder, expected) in [
        (model_dir(), "0 cached, 1 computed"),
        (spelled.as_str(), "1 cached, 0 computed"),
    ] {
        let args = toy_label_args(
            &input,
            &dir.path().join("out.jsonl"),
            encoder,
            &["--cache", cache.to_str().unwrap()],
        );
        let stderr = ok(&spyglass(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert!(stderr.contains(expected), "{encoder}: {stderr}");
    }
}

/// A cached vector changed outside spyglass is recomputed, with one warning, not trusted.
#[test]
fn tampered_cache_entries_are_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.sqlite");
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        r#"{"id":"a","text":"Ransomware encrypted the county council's servers."}"#,
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let label = || {
        ok(&label_with_toy(
            &input,
            &out,
            &["--cache", cache.to_str().unwrap()],
        ))
    };
    label();
    let first = read_jsonl(&out);
    let conn = rusqlite::Connection::open(&cache).unwrap();
    let changed = conn
        .execute(
            "UPDATE embeddings SET article = zeroblob(length(article))",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let stderr = label();
    assert!(stderr.contains("0 cached, 1 computed"), "{stderr}");
    assert!(
        stderr.contains("1 cached embeddings failed their checksum"),
        "{stderr}"
    );
    assert_eq!(read_jsonl(&out), first);
}
