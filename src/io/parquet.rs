//! Parquet archives: articles read from a Parquet file in record batches (columns `id`, `text`,
//! and optional `title`, `lang`, `url`), and label records written to a Parquet file with typed
//! columns, through the same atomic output as JSONL.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;

use crate::io::input::{validate, InputError, InputItem};
use crate::io::output::{Output, OutputError};
use crate::io::records::{Article, LabelLine, RecordError};

/// Rows read per batch: articles can be long, so batches stay small.
const READ_BATCH_ROWS: usize = 256;
/// Rows buffered before a batch is written.
const WRITE_BATCH_ROWS: usize = 1024;

/// Whether a path names a Parquet file (by its extension).
pub fn is_parquet(path: &str) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Articles of a Parquet file, row by row.
pub struct ParquetArticles {
    name: String,
    reader: ParquetRecordBatchReader,
    batch: Option<Columns>,
    row_in_batch: usize,
    /// 1-based number of the next row in the file.
    row: usize,
}

/// One batch's columns, as strings (ids of integer columns by their decimal text).
struct Columns {
    rows: usize,
    id: Vec<Option<(String, bool)>>,
    text: Vec<Option<String>>,
    title: Vec<Option<String>>,
    lang: Vec<Option<String>>,
    url: Vec<Option<String>>,
}

fn bad_input(path: &Path, reason: String) -> InputError {
    InputError::Open {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    }
}

/// A string column's values (Utf8, LargeUtf8 or Utf8View), or why it is not one.
fn strings(column: &dyn Array, name: &str) -> Result<Vec<Option<String>>, String> {
    use arrow_array::cast::AsArray;
    let collect =
        |it: &mut dyn Iterator<Item = Option<&str>>| it.map(|v| v.map(str::to_string)).collect();
    Ok(match column.data_type() {
        DataType::Utf8 => collect(&mut column.as_string::<i32>().iter()),
        DataType::LargeUtf8 => collect(&mut column.as_string::<i64>().iter()),
        DataType::Utf8View => collect(&mut column.as_string_view().iter()),
        DataType::Null => vec![None; column.len()],
        other => return Err(format!("column `{name}` is {other}, not a string column")),
    })
}

/// An integer column's values by their decimal text.
fn decimals<T>(column: &dyn Array) -> Vec<Option<(String, bool)>>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: ToString,
{
    use arrow_array::cast::AsArray;
    column
        .as_primitive::<T>()
        .iter()
        .map(|v| v.map(|n| (n.to_string(), true)))
        .collect()
}

/// Ids: strings as they are, integers by their decimal text (kept as JSON numbers on output).
fn ids(column: &dyn Array) -> Result<Vec<Option<(String, bool)>>, String> {
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    Ok(match column.data_type() {
        DataType::Int64 => decimals::<Int64Type>(column),
        DataType::Int32 => decimals::<Int32Type>(column),
        DataType::UInt64 => decimals::<UInt64Type>(column),
        DataType::UInt32 => decimals::<UInt32Type>(column),
        _ => strings(column, "id")?
            .into_iter()
            .map(|v| v.map(|s| (s, false)))
            .collect(),
    })
}

impl ParquetArticles {
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad_input(path, format!("not a readable Parquet file ({e})")))?;
        let schema = builder.schema().clone();
        for required in ["id", "text"] {
            if schema.field_with_name(required).is_err() {
                return Err(bad_input(
                    path,
                    format!(
                        "the Parquet file has no `{required}` column (it has {}); articles need `id` and `text`, and may have `title`, `lang`, `url`",
                        schema.fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let reader = builder
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| bad_input(path, e.to_string()))?;
        Ok(ParquetArticles {
            name: path.display().to_string(),
            reader,
            batch: None,
            row_in_batch: 0,
            row: 1,
        })
    }

    fn load(&mut self, batch: RecordBatch) -> Result<Columns, String> {
        let column = |name: &str| batch.column_by_name(name).cloned();
        let optional = |name: &str| -> Result<Vec<Option<String>>, String> {
            match column(name) {
                Some(c) => strings(c.as_ref(), name),
                None => Ok(vec![None; batch.num_rows()]),
            }
        };
        Ok(Columns {
            rows: batch.num_rows(),
            id: ids(column("id").expect("checked at open").as_ref())?,
            text: strings(column("text").expect("checked at open").as_ref(), "text")?,
            title: optional("title")?,
            lang: optional("lang")?,
            url: optional("url")?,
        })
    }

    /// The next article or row error; `Err` when the file itself cannot be read on.
    pub fn next_item(&mut self) -> Result<Option<InputItem>, InputError> {
        loop {
            if let Some(columns) = &mut self.batch {
                if self.row_in_batch < columns.rows {
                    let i = self.row_in_batch;
                    self.row_in_batch += 1;
                    let row = self.row;
                    self.row += 1;
                    let source = format!("{}:{row}", self.name);
                    let fail = |id: Option<String>, error: String| RecordError {
                        id,
                        source: source.clone(),
                        line: Some(row),
                        error,
                    };
                    let Some((id, numeric)) = columns.id[i].take() else {
                        return Ok(Some(Err(fail(None, format!("row {row} has no `id`")))));
                    };
                    let raw_id = numeric.then(|| {
                        serde_json::value::RawValue::from_string(id.clone())
                            .expect("an integer is JSON")
                    });
                    let article = Article {
                        id: id.clone(),
                        text: columns.text[i].take().unwrap_or_default(),
                        title: columns.title[i].take(),
                        lang: columns.lang[i].take(),
                        url: columns.url[i].take(),
                        extra: Default::default(),
                        raw_id,
                    };
                    return Ok(Some(
                        validate(article).map_err(|e| fail(Some(id), format!("row {row}: {e}"))),
                    ));
                }
                self.batch = None;
            }
            let Some(batch) = self.reader.next() else {
                return Ok(None);
            };
            let batch = batch.map_err(|e| InputError::Read {
                name: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            let columns = self.load(batch).map_err(|reason| InputError::Read {
                name: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            })?;
            self.batch = Some(columns);
            self.row_in_batch = 0;
        }
    }
}

/// `Output` as the byte sink of a Parquet writer: the file appears whole, atomically, on finish.
struct OutputBytes(Output);

impl std::io::Write for OutputBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.writer().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.writer().flush()
    }
}

/// Label records as a Parquet file. Columns: `id` (the id's text; a non-string id by its JSON
/// text), `error` (set on error rows, which leave the rest null), `labels` (list of topic ids),
/// `scores` (a struct with one float32 field per topic; topics not shown are null), `evidence`
/// (JSON text, as in the JSONL record), `lang`, `model`, `truncated`.
pub struct LabelParquet {
    writer: ArrowWriter<OutputBytes>,
    schema: Arc<Schema>,
    topics: Vec<String>,
    rows: Vec<LabelLine>,
    name: String,
}

impl LabelParquet {
    pub fn create(spec: &str, topics: &[String]) -> Result<Self, OutputError> {
        let output = Output::create(spec)?;
        let score_fields: Fields = topics
            .iter()
            .map(|t| Field::new(t, DataType::Float32, true))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("error", DataType::Utf8, true),
            Field::new(
                "labels",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new("scores", DataType::Struct(score_fields), true),
            Field::new("evidence", DataType::Utf8, true),
            Field::new("lang", DataType::Utf8, true),
            Field::new("model", DataType::Utf8, true),
            Field::new("truncated", DataType::Boolean, true),
        ]));
        let writer =
            ArrowWriter::try_new(OutputBytes(output), schema.clone(), None).map_err(|e| {
                OutputError::Write {
                    path: spec.to_string(),
                    source: std::io::Error::other(e),
                }
            })?;
        Ok(LabelParquet {
            writer,
            schema,
            topics: topics.to_vec(),
            rows: Vec::with_capacity(WRITE_BATCH_ROWS),
            name: spec.to_string(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> OutputError {
        OutputError::Write {
            path: self.name.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    }

    pub fn write(&mut self, line: &LabelLine) -> Result<(), OutputError> {
        self.rows.push(line.clone());
        if self.rows.len() >= WRITE_BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), OutputError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut id = StringBuilder::new();
        let mut error = StringBuilder::new();
        let mut labels = ListBuilder::new(StringBuilder::new());
        let mut scores: Vec<Float32Builder> =
            self.topics.iter().map(|_| Float32Builder::new()).collect();
        let mut evidence = StringBuilder::new();
        let mut lang = StringBuilder::new();
        let mut model = StringBuilder::new();
        let mut truncated = BooleanBuilder::new();
        let mut score_valid = Vec::with_capacity(self.rows.len());
        for line in &self.rows {
            match line {
                LabelLine::Labelled(r) => {
                    id.append_value(
                        serde_json::to_value(&r.id)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| serde_json::to_string(&r.id).unwrap_or_default()),
                    );
                    error.append_null();
                    for l in &r.labels {
                        labels.values().append_value(l);
                    }
                    labels.append(true);
                    for (t, b) in self.topics.iter().zip(scores.iter_mut()) {
                        b.append_option(r.scores.get(t).copied());
                    }
                    score_valid.push(true);
                    evidence.append_value(
                        serde_json::to_string(&r.evidence).map_err(|e| self.error(e))?,
                    );
                    lang.append_value(&r.lang);
                    model.append_value(&r.model);
                    truncated.append_value(r.truncated);
                }
                LabelLine::Error(e) => {
                    id.append_option(e.id.as_deref());
                    error.append_value(format!("{}: {}", e.source, e.error));
                    labels.append_null();
                    for b in scores.iter_mut() {
                        b.append_null();
                    }
                    score_valid.push(false);
                    evidence.append_null();
                    lang.append_null();
                    model.append_null();
                    truncated.append_null();
                }
            }
        }
        let DataType::Struct(score_fields) = self
            .schema
            .field_with_name("scores")
            .expect("schema")
            .data_type()
            .clone()
        else {
            unreachable!("scores is a struct");
        };
        let score_columns: Vec<ArrayRef> = scores
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let scores = StructArray::try_new(score_fields, score_columns, Some(score_valid.into()))
            .map_err(|e| self.error(e))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(error.finish()),
            Arc::new(labels.finish()),
            Arc::new(scores),
            Arc::new(evidence.finish()),
            Arc::new(lang.finish()),
            Arc::new(model.finish()),
            Arc::new(truncated.finish()),
        ];
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.error(e))?;
        self.writer.write(&batch).map_err(|e| self.error(e))?;
        self.rows.clear();
        Ok(())
    }

    /// Writes what is buffered and the footer, then publishes the file.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.flush_rows()?;
        let name = self.name.clone();
        let bytes = self.writer.into_inner().map_err(|e| OutputError::Write {
            path: name,
            source: std::io::Error::other(e.to_string()),
        })?;
        bytes.0.finish()
    }
}

/// Where label records go: JSONL (a file or stdout) or, for a `.parquet` path, Parquet.
pub enum LabelSink {
    Jsonl(Output),
    Parquet(Box<LabelParquet>),
}

impl LabelSink {
    pub fn create(spec: &str, topics: &[String]) -> Result<Self, OutputError> {
        Ok(if spec != "-" && is_parquet(spec) {
            LabelSink::Parquet(Box::new(LabelParquet::create(spec, topics)?))
        } else {
            LabelSink::Jsonl(Output::create(spec)?)
        })
    }

    pub fn write(&mut self, line: &LabelLine) -> Result<(), OutputError> {
        match self {
            LabelSink::Jsonl(output) => output.write_json(line),
            LabelSink::Parquet(parquet) => parquet.write(line),
        }
    }

    pub fn finish(self) -> Result<(), OutputError> {
        match self {
            LabelSink::Jsonl(output) => output.finish(),
            LabelSink::Parquet(parquet) => parquet.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::input::ArticleReader;
    use crate::io::records::{LabelRecord, RecordId};
    use arrow_array::{Int64Array, StringArray};

    fn write_articles(path: &Path, columns: Vec<(&str, ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn articles_come_from_parquet_rows_with_bad_rows_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.parquet");
        write_articles(
            &path,
            vec![
                (
                    "id",
                    Arc::new(Int64Array::from(vec![Some(7), Some(8), None, Some(10)])) as ArrayRef,
                ),
                (
                    "text",
                    Arc::new(StringArray::from(vec![
                        Some("A spy was caught."),
                        None,
                        Some("x"),
                        Some(""),
                    ])) as ArrayRef,
                ),
                (
                    "title",
                    Arc::new(StringArray::from(vec![
                        Some("Spy"),
                        Some("Only a title"),
                        None,
                        None,
                    ])) as ArrayRef,
                ),
            ],
        );
        let mut reader = ArticleReader::open(path.to_str().unwrap()).unwrap();
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        assert_eq!(items.len(), 4);
        let first = items[0].as_ref().unwrap();
        assert_eq!(
            (
                first.id.as_str(),
                first.text.as_str(),
                first.title.as_deref()
            ),
            ("7", "A spy was caught.", Some("Spy"))
        );
        assert_eq!(
            first.raw_id.as_ref().unwrap().get(),
            "7",
            "an integer id stays a number"
        );
        assert_eq!(
            items[1].as_ref().unwrap().title.as_deref(),
            Some("Only a title")
        );
        let missing_id = items[2].as_ref().unwrap_err();
        assert!(
            missing_id.error.contains("row 3 has no `id`"),
            "{missing_id:?}"
        );
        let empty = items[3].as_ref().unwrap_err();
        assert!(
            empty.error.contains("nothing to read") && empty.source.ends_with(":4"),
            "{empty:?}"
        );

        // Without a `text` column the file is refused up front, naming what it has.
        let other = dir.path().join("other.parquet");
        write_articles(
            &other,
            vec![("id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)],
        );
        let err = ArticleReader::open(other.to_str().unwrap())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("no `text` column") && err.contains("`id`"),
            "{err}"
        );
        let not_parquet = dir.path().join("fake.parquet");
        std::fs::write(&not_parquet, "{\"id\":\"a\",\"text\":\"b\"}\n").unwrap();
        let err = ArticleReader::open(not_parquet.to_str().unwrap())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a readable Parquet file"), "{err}");
    }

    #[test]
    fn label_records_are_typed_columns_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let spec = path.to_str().unwrap();
        let topics = vec!["espionage".to_string(), "cyberattack".to_string()];
        let record = LabelRecord {
            id: RecordId::of(&Article {
                id: "a1".into(),
                text: "t".into(),
                title: None,
                lang: None,
                url: None,
                extra: Default::default(),
                raw_id: None,
            }),
            labels: vec!["espionage".into()],
            scores: [("espionage".to_string(), 0.9f32)].into_iter().collect(),
            evidence: Default::default(),
            lang: "en".into(),
            model: "m".into(),
            truncated: false,
        };
        // Dropped before `finish`: nothing appears.
        let mut sink = LabelSink::create(spec, &topics).unwrap();
        sink.write(&LabelLine::Labelled(record.clone())).unwrap();
        drop(sink);
        assert!(!path.exists());

        let mut sink = LabelSink::create(spec, &topics).unwrap();
        sink.write(&LabelLine::Labelled(record)).unwrap();
        sink.write(&LabelLine::Error(RecordError {
            id: Some("b2".into()),
            source: "in.jsonl:2".into(),
            line: Some(2),
            error: "bad".into(),
        }))
        .unwrap();
        sink.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        use arrow_array::cast::AsArray;
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a1", "b2"));
        let scores = batch.column_by_name("scores").unwrap().as_struct();
        let espionage = scores
            .column_by_name("espionage")
            .unwrap()
            .as_primitive::<arrow_array::types::Float32Type>();
        assert!((espionage.value(0) - 0.9).abs() < 1e-6);
        assert!(
            scores.column_by_name("cyberattack").unwrap().is_null(0),
            "a topic not shown is null"
        );
        assert!(scores.is_null(1), "an error row has no scores");
        let errors = batch.column_by_name("error").unwrap().as_string::<i32>();
        assert!(errors.is_null(0));
        assert_eq!(errors.value(1), "in.jsonl:2: bad");
        let labels = batch.column_by_name("labels").unwrap().as_list::<i32>();
        assert_eq!(labels.value(0).as_string::<i32>().value(0), "espionage");
    }
}
