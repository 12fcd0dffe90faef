//! Parquet archives: articles read from a Parquet file in record batches (columns `id`, `text`,
//! and optional `title`, `lang`, `url`), and label records written to a Parquet file with typed
//! columns, through the same atomic output as JSONL.

use std::fs::File;
use std::path::Path;

use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;

use crate::io::arrow;
use crate::io::input::{InputError, InputItem};
use crate::io::output::{Output, OutputError};
use crate::io::records::LabelLine;

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
    batch: std::vec::IntoIter<InputItem>,
    /// 1-based number of the next batch's first row in the file.
    row: usize,
}

fn bad_input(path: &Path, reason: String) -> InputError {
    InputError::Open {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    }
}

impl ParquetArticles {
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad_input(path, format!("not a readable Parquet file ({e})")))?;
        if let Some(missing) = arrow::missing_article_column(builder.schema()) {
            return Err(bad_input(
                path,
                format!("the Parquet file has no article columns: {missing}"),
            ));
        }
        let reader = builder
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| bad_input(path, e.to_string()))?;
        Ok(ParquetArticles {
            name: path.display().to_string(),
            reader,
            batch: Vec::new().into_iter(),
            row: 1,
        })
    }

    /// The next article or row error; `Err` when the file itself cannot be read on.
    pub fn next_item(&mut self) -> Result<Option<InputItem>, InputError> {
        loop {
            if let Some(item) = self.batch.next() {
                return Ok(Some(item));
            }
            let Some(batch) = self.reader.next() else {
                return Ok(None);
            };
            let unreadable = |reason: String| InputError::Read {
                name: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            };
            let batch = batch.map_err(|e| unreadable(e.to_string()))?;
            let items = arrow::batch_articles(&batch, &self.name, self.row).map_err(unreadable)?;
            self.row += items.len();
            self.batch = items.into_iter();
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
    schema: SchemaRef,
    topics: Vec<String>,
    rows: Vec<LabelLine>,
    name: String,
}

impl LabelParquet {
    pub fn create(spec: &str, topics: &[String]) -> Result<Self, OutputError> {
        let output = Output::create(spec)?;
        let schema = arrow::label_schema(topics);
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
        let batch = arrow::label_batch(&self.schema, &self.topics, &self.rows)
            .map_err(|e| self.error(e))?;
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
    use crate::io::records::{Article, RecordError};
    use crate::io::records::{LabelRecord, RecordId};
    use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

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
