//! Articles and label records as Arrow record batches: the one conversion that Parquet files,
//! the Python binding (pyarrow tables, Spark and Ray batches) and any other Arrow front end share.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use crate::io::input::{validate, InputItem};
use crate::io::records::{Article, LabelLine, RecordError};

/// Article columns spyglass reads; `id` and `text` are required.
pub const ARTICLE_COLUMNS: [&str; 5] = ["id", "text", "title", "lang", "url"];

/// Why a batch's schema cannot carry articles (a missing `id` or `text` column), naming the
/// columns it has.
pub fn missing_article_column(schema: &Schema) -> Option<String> {
    ["id", "text"]
        .into_iter()
        .find(|required| schema.field_with_name(required).is_err())
        .map(|required| {
            format!(
                "there is no `{required}` column (the columns are {}); articles need `id` and `text`, and may have `title`, `lang`, `url`",
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("`{}`", f.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
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

/// Ids: strings as they are, integers by their decimal text (`true`: kept as JSON numbers on
/// output).
fn ids(column: &dyn Array) -> Result<Vec<Option<(String, bool)>>, String> {
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    Ok(match column.data_type() {
        DataType::Int64 => decimals::<Int64Type>(column),
        DataType::Int32 => decimals::<Int32Type>(column),
        DataType::UInt64 => decimals::<UInt64Type>(column),
        DataType::UInt32 => decimals::<UInt32Type>(column),
        _ => strings(column, "id")
            .map_err(|_| {
                format!(
                    "column `id` is {}, not a string or integer column",
                    column.data_type()
                )
            })?
            .into_iter()
            .map(|v| v.map(|s| (s, false)))
            .collect(),
    })
}

/// The articles of one batch, in row order, a bad row's error in its place. Rows are numbered
/// from `first_row` (1-based) and named `name:row` in errors. `Err` when the batch itself cannot
/// carry articles (no `id` or `text` column, or a column of the wrong type).
pub fn batch_articles(
    batch: &RecordBatch,
    name: &str,
    first_row: usize,
) -> Result<Vec<InputItem>, String> {
    if let Some(missing) = missing_article_column(&batch.schema()) {
        return Err(missing);
    }
    let column = |name: &str| batch.column_by_name(name).cloned();
    let optional = |name: &str| -> Result<Vec<Option<String>>, String> {
        match column(name) {
            Some(c) => strings(c.as_ref(), name),
            None => Ok(vec![None; batch.num_rows()]),
        }
    };
    let ids = ids(column("id").expect("checked").as_ref())?;
    let texts = strings(column("text").expect("checked").as_ref(), "text")?;
    let (titles, langs, urls) = (optional("title")?, optional("lang")?, optional("url")?);
    let rows = ids.into_iter().zip(texts).zip(titles).zip(langs).zip(urls);
    Ok(rows
        .enumerate()
        .map(|(i, ((((id, text), title), lang), url))| {
            let row = first_row + i;
            let fail = |id: Option<String>, error: String| RecordError {
                id,
                source: format!("{name}:{row}"),
                line: Some(row),
                error,
            };
            let Some((id, numeric)) = id else {
                return Err(fail(None, format!("row {row} has no `id`")));
            };
            let raw_id = numeric.then(|| {
                serde_json::value::RawValue::from_string(id.clone()).expect("an integer is JSON")
            });
            let article = Article {
                id: id.clone(),
                text: text.unwrap_or_default(),
                title,
                lang,
                url,
                extra: Default::default(),
                raw_id,
            };
            validate(article).map_err(|e| fail(Some(id), format!("row {row}: {e}")))
        })
        .collect())
}

/// The columns of label records: `id` (the id's text; a non-string id by its JSON text),
/// `error` (set on error rows, which leave the rest null), `labels` (list of topic ids),
/// `scores` (a struct with one float32 field per topic; topics not shown are null), `evidence`
/// (JSON text, as in the JSONL record), `lang`, `model`, `truncated`.
pub fn label_schema(topics: &[String]) -> SchemaRef {
    let score_fields: Fields = topics
        .iter()
        .map(|t| Field::new(t, DataType::Float32, true))
        .collect();
    Arc::new(Schema::new(vec![
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
    ]))
}

/// Label records (and error rows) as one batch of `label_schema(topics)`.
pub fn label_batch(
    schema: &SchemaRef,
    topics: &[String],
    lines: &[LabelLine],
) -> Result<RecordBatch, ArrowError> {
    let mut id = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut labels = ListBuilder::new(StringBuilder::new());
    let mut scores: Vec<Float32Builder> = topics.iter().map(|_| Float32Builder::new()).collect();
    let mut evidence = StringBuilder::new();
    let mut lang = StringBuilder::new();
    let mut model = StringBuilder::new();
    let mut truncated = BooleanBuilder::new();
    let mut score_valid = Vec::with_capacity(lines.len());
    for line in lines {
        match line {
            LabelLine::Labelled(r) => {
                id.append_value(r.id.as_str());
                error.append_null();
                for l in &r.labels {
                    labels.values().append_value(l);
                }
                labels.append(true);
                for (t, b) in topics.iter().zip(scores.iter_mut()) {
                    b.append_option(r.scores.get(t).copied());
                }
                score_valid.push(true);
                evidence.append_value(
                    serde_json::to_string(&r.evidence)
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
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
    let DataType::Struct(score_fields) = schema.field_with_name("scores")?.data_type().clone()
    else {
        return Err(ArrowError::SchemaError("`scores` is not a struct".into()));
    };
    let score_columns: Vec<ArrayRef> = scores
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let scores = StructArray::try_new(score_fields, score_columns, Some(score_valid.into()))?;
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
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{LargeStringArray, StringViewArray, UInt32Array};

    #[test]
    fn every_string_layout_reads_and_rows_are_numbered_from_the_batch_start() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(UInt32Array::from(vec![Some(5), None])) as ArrayRef,
            ),
            (
                "text",
                Arc::new(LargeStringArray::from(vec!["Hackers hit a port.", "x"])) as ArrayRef,
            ),
            (
                "title",
                Arc::new(StringViewArray::from(vec![Some("Port"), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let items = batch_articles(&batch, "table", 65).unwrap();
        let first = items[0].as_ref().unwrap();
        assert_eq!(
            (first.id.as_str(), first.title.as_deref()),
            ("5", Some("Port"))
        );
        assert_eq!(first.raw_id.as_ref().unwrap().get(), "5");
        let second = items[1].as_ref().unwrap_err();
        assert_eq!(
            (second.source.as_str(), second.error.as_str()),
            ("table:66", "row 66 has no `id`")
        );

        let floats = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(arrow_array::Float64Array::from(vec![1.5])) as ArrayRef,
            ),
            (
                "text",
                Arc::new(LargeStringArray::from(vec!["t"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let err = batch_articles(&floats, "table", 1).unwrap_err();
        assert!(err.contains("column `id` is Float64"), "{err}");
        let no_text = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(UInt32Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        let err = batch_articles(&no_text, "table", 1).unwrap_err();
        assert!(
            err.contains("no `text` column") && err.contains("`id`"),
            "{err}"
        );
    }
}
