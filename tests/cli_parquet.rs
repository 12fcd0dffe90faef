//! `spyglass label` on Parquet archives: `--input x.parquet` and `--output y.parquet` give the
//! same records as JSONL on the same articles.

use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

mod common;

#[test]
fn parquet_in_and_out_equal_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let articles: Vec<Value> = std::fs::read_to_string("eval/data/test.jsonl")
        .unwrap()
        .lines()
        .take(12)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let jsonl = tmp.path().join("in.jsonl");
    std::fs::write(
        &jsonl,
        articles
            .iter()
            .map(|a| {
                serde_json::json!({"id": a["id"], "title": a["title"], "text": a["text"], "lang": a["lang"]})
                    .to_string()
                    + "\n"
            })
            .collect::<String>(),
    )
    .unwrap();
    let column = |field: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            articles
                .iter()
                .map(|a| a[field].as_str().map(str::to_string))
                .collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_from_iter(vec![
        ("id", column("id")),
        ("title", column("title")),
        ("text", column("text")),
        ("lang", column("lang")),
    ])
    .unwrap();
    let input = tmp.path().join("in.parquet");
    let mut writer =
        ArrowWriter::try_new(File::create(&input).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let label = |input: &std::path::Path, output: &std::path::Path| {
        common::label_shipped(input, output.to_str().unwrap());
    };
    let expected_path = tmp.path().join("out.jsonl");
    label(&jsonl, &expected_path);
    let expected = common::read_jsonl(&expected_path);
    let output = tmp.path().join("out.parquet");
    label(&input, &output);

    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&output).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, expected.len());
    let batch = &batches[0];
    let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
    let labels = batch.column_by_name("labels").unwrap().as_list::<i32>();
    let scores = batch.column_by_name("scores").unwrap().as_struct();
    let evidence = batch.column_by_name("evidence").unwrap().as_string::<i32>();
    let lang = batch.column_by_name("lang").unwrap().as_string::<i32>();
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(ids.value(i), want["id"].as_str().unwrap());
        let got_labels: Vec<String> = labels
            .value(i)
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect();
        assert_eq!(serde_json::json!(got_labels), want["labels"]);
        for (topic, score) in want["scores"].as_object().unwrap() {
            let column = scores
                .column_by_name(topic)
                .unwrap()
                .as_primitive::<arrow_array::types::Float32Type>();
            // The JSON text of an f32 reads back as the same f32.
            assert_eq!(
                column.value(i),
                score.as_f64().unwrap() as f32,
                "{topic} of {}",
                ids.value(i)
            );
        }
        let got_evidence: Value = serde_json::from_str(evidence.value(i)).unwrap();
        assert_eq!(got_evidence, want["evidence"]);
        assert_eq!(lang.value(i), want["lang"].as_str().unwrap());
    }
}
