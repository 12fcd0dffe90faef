//! The `spyglass._spyglass` Python extension: a loaded model that labels lists of dicts or Arrow
//! data (pyarrow, Spark and Ray batches) and embeds texts into NumPy arrays, computing with the
//! GIL released. It only converts Python values; the labelling itself is `spyglass::label`.

use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::Mutex;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{Array, RecordBatch, RecordBatchIterator, StructArray};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyString};
use serde_json::Value;

use spyglass::encoder::{Document, Precision, WindowOverrides};
use spyglass::io::arrow::{batch_articles, label_batch, label_schema};
use spyglass::io::input::{article_from_value, InputItem};
use spyglass::io::records::{LabelLine, RecordError};
use spyglass::label::{label_items, LabelOptions};
use spyglass::model::load::{
    load_model, BundleChoice, CacheChoice, EncoderChoice, LoadNotice, LoadedModel, ModelChoice,
};

create_exception!(
    _spyglass,
    SpyglassError,
    PyException,
    "A model that cannot be loaded, or labelling that cannot go on (the message says why and what to do)."
);

const STREAM: &CStr = c"arrow_array_stream";
const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";

/// An error and its causes on one line, as the command line prints them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn spyglass_error(error: &dyn std::error::Error) -> PyErr {
    SpyglassError::new_err(chain(error))
}

/// A model bundle with its encoder, loaded once and used for many calls.
///
/// Load it with `Model.load(...)`. It is safe to share between threads: calls take turns, and
/// each uses the model's own thread pool with the GIL released.
#[pyclass(frozen, module = "spyglass._spyglass")]
struct Model {
    inner: Mutex<LoadedModel>,
    pool: Option<rayon::ThreadPool>,
    topics: Vec<String>,
    name: String,
    encoder: String,
    precision: &'static str,
    dimension: usize,
}

/// One Python record as the JSON value `article_from_value` reads, or its error row.
fn record_value(index: usize, item: &Bound<'_, PyAny>) -> Result<Value, RecordError> {
    let fail = |id: Option<String>, error: String| RecordError {
        id,
        source: format!("records[{index}]"),
        line: None,
        error,
    };
    let kind = |value: &Bound<'_, PyAny>| {
        value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let text = |value: &Bound<'_, PyAny>, field: &str, id: Option<String>| {
        value.extract::<String>().map_err(|_| {
            fail(
                id,
                format!("`records[{index}]{field}` is not valid Unicode text (a lone surrogate?); clean the string before labelling"),
            )
        })
    };
    if item.is_instance_of::<PyString>() {
        return text(item, "", None).map(Value::String);
    }
    let Ok(dict) = item.cast::<PyDict>() else {
        return Err(fail(
            None,
            format!(
                "`records[{index}]` is {}; give a dict with `text` (and optional `id`, `title`, `lang`, `url`) or a str",
                kind(item)
            ),
        ));
    };
    let mut fields = serde_json::Map::new();
    let mut id_text = None;
    for name in ["id", "text", "title", "lang", "url"] {
        let Ok(Some(value)) = dict.get_item(name) else {
            continue;
        };
        let converted = if value.is_none() {
            Value::Null
        } else if value.is_instance_of::<PyString>() {
            Value::String(text(&value, &format!(".{name}"), id_text.clone())?)
        } else if name == "id" && value.is_instance_of::<pyo3::types::PyBool>() {
            return Err(fail(
                None,
                format!("`records[{index}].id` is a bool; give a str or an int"),
            ));
        } else if name == "id" && value.is_instance_of::<pyo3::types::PyInt>() {
            match (value.extract::<i64>(), value.extract::<u64>()) {
                (Ok(n), _) => Value::from(n),
                (_, Ok(n)) => Value::from(n),
                _ => {
                    return Err(fail(
                        None,
                        format!("`records[{index}].id` is an integer too large for 64 bits; give it as a str"),
                    ))
                }
            }
        } else {
            let what = if name == "id" {
                "a str or an int"
            } else {
                "a str"
            };
            return Err(fail(
                id_text.clone(),
                format!("`records[{index}].{name}` is {}; give {what}", kind(&value)),
            ));
        };
        if name == "id" {
            id_text = match &converted {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
        }
        fields.insert(name.to_string(), converted);
    }
    Ok(Value::Object(fields))
}

/// Refuses one str or one dict where a collection of them belongs: iterating would label each
/// character, or each key, as an article.
fn refuse_single(value: &Bound<'_, PyAny>, name: &str, wanted: &str) -> PyResult<()> {
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyDict>() {
        let kind = if value.is_instance_of::<PyString>() {
            "str"
        } else {
            "dict"
        };
        return Err(PyTypeError::new_err(format!(
            "`{name}` is one {kind}; give {wanted} (wrap a single one in a list)"
        )));
    }
    Ok(())
}

/// Python records (dicts or strs) as input items, a bad one's error in its place.
fn dict_items(records: &Bound<'_, PyAny>) -> PyResult<Vec<InputItem>> {
    refuse_single(records, "records", "a list of dicts or strs")?;
    let iter = records.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "`records` is {}; give a list of dicts (`id`, `text`, `title`, `lang`, `url`), a pyarrow Table or RecordBatch",
            records.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let mut items = Vec::new();
    for (index, item) in iter.enumerate() {
        let item = item?;
        items.push(
            record_value(index, &item)
                .and_then(|value| article_from_value("records", index, &value)),
        );
    }
    Ok(items)
}

/// Arrow data (anything with `__arrow_c_stream__`) as input items, rows numbered from 1.
fn arrow_items(records: &Bound<'_, PyAny>) -> PyResult<Vec<InputItem>> {
    let capsule = records.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>().map_err(PyErr::from)?;
    let pointer = capsule.pointer_checked(Some(STREAM))?;
    // SAFETY: the capsule is named `arrow_array_stream`, so by the Arrow PyCapsule protocol it
    // holds an `ArrowArrayStream`; `from_raw` moves the stream out and leaves a released one
    // behind, which the capsule's destructor then ignores.
    let reader = unsafe { RecordBatchStreamReader::from_raw(pointer.as_ptr().cast()) }
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow data: {e}")))?;
    let mut items = Vec::new();
    for batch in reader {
        let batch =
            batch.map_err(|e| PyValueError::new_err(format!("cannot read the Arrow data: {e}")))?;
        let mut rows = batch_articles(&batch, "table", items.len() + 1)
            .map_err(|e| PyValueError::new_err(format!("`records` cannot be labelled: {e}")))?;
        items.append(&mut rows);
    }
    Ok(items)
}

/// A record batch offered to pyarrow through the Arrow PyCapsule protocol.
#[pyclass(frozen, module = "spyglass._spyglass")]
struct ArrowExport {
    batch: RecordBatch,
}

#[pymethods]
impl ArrowExport {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = RecordBatchIterator::new([Ok(self.batch.clone())], self.batch.schema());
        let stream = FFI_ArrowArrayStream::new(Box::new(batches));
        PyCapsule::new_with_value(py, stream, STREAM)
    }

    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let array = StructArray::from(self.batch.clone());
        let schema = FFI_ArrowSchema::try_from(array.data_type())
            .map_err(|e| SpyglassError::new_err(e.to_string()))?;
        let array = FFI_ArrowArray::new(&array.to_data());
        Ok((
            PyCapsule::new_with_value(py, schema, SCHEMA)?,
            PyCapsule::new_with_value(py, array, ARRAY)?,
        ))
    }
}

fn parse_precision(precision: &str) -> PyResult<Precision> {
    match precision {
        "f32" => Ok(Precision::F32),
        "int8" => Ok(Precision::Int8),
        "bf16" => Ok(Precision::Bf16),
        other => Err(PyValueError::new_err(format!(
            "`precision` is {other:?}; give \"f32\" (matches PyTorch), \"int8\" (faster, approximate) or \"bf16\""
        ))),
    }
}

impl Model {
    /// Runs `work` on the model with the GIL released, in the model's thread pool.
    fn compute<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&mut LoadedModel) -> T + Send,
    ) -> PyResult<T> {
        let run = || {
            let mut model = self.inner.lock().map_err(|_| {
                SpyglassError::new_err("an earlier call panicked; load the model again")
            })?;
            Ok(work(&mut model))
        };
        py.detach(|| match &self.pool {
            Some(pool) => pool.install(run),
            None => run(),
        })
    }

    fn options(&self, topics: Option<Vec<String>>, min_score: f32) -> PyResult<LabelOptions> {
        if !(0.0..=1.0).contains(&min_score) {
            return Err(PyValueError::new_err(format!(
                "`min_score` must be a probability between 0 and 1, got {min_score}"
            )));
        }
        let topics = topics.unwrap_or_default();
        if let Some(unknown) = topics.iter().find(|t| !self.topics.contains(t)) {
            return Err(PyValueError::new_err(format!(
                "`topics` names `{unknown}`, which is not a topic of this model; known: {}",
                self.topics.join(", ")
            )));
        }
        Ok(LabelOptions {
            shown: self
                .topics
                .iter()
                .map(|t| topics.is_empty() || topics.contains(t))
                .collect(),
            min_score,
        })
    }

    fn label_lines(
        &self,
        py: Python<'_>,
        items: Vec<InputItem>,
        options: LabelOptions,
    ) -> PyResult<Vec<LabelLine>> {
        self.compute(py, |model| {
            let mut lines = Vec::with_capacity(items.len());
            for chunk in items.chunks(spyglass::label::CHUNK_ARTICLES) {
                lines.extend(label_items(model, chunk, &options)?);
            }
            Ok::<_, spyglass::label::LabelError>(lines)
        })?
        .map_err(|e| spyglass_error(&e))
    }
}

#[pymethods]
impl Model {
    /// Loads a model bundle and its encoder.
    ///
    /// `model`: a bundle folder made by `spyglass train`; None loads `models/default` in the
    /// working directory, else the model built into spyglass; "zero-shot" scores with the
    /// taxonomy's descriptions instead of a trained head.
    /// `encoder`: a local encoder folder or Hub id; None uses the encoder the bundle pins (from
    /// the Hugging Face cache, or downloaded unless `offline`).
    /// `precision`: "f32" (matches the PyTorch reference), "int8" or "bf16" (faster,
    /// approximate; labels record it in `model`).
    /// `threads`: CPU threads for this model; None uses every core. Give each of several
    /// workers on one machine its share.
    /// `cache`: None or False embeds afresh; True uses spyglass's embedding cache; a path names
    /// a cache file.
    #[staticmethod]
    #[pyo3(signature = (model=None, *, encoder=None, precision="f32", threads=None, offline=false, cache=None, taxonomy=None, allow_encoder_mismatch=false, batch_size=8, max_windows=None))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        model: Option<PathBuf>,
        encoder: Option<PathBuf>,
        precision: &str,
        threads: Option<usize>,
        offline: bool,
        cache: Option<Bound<'_, PyAny>>,
        taxonomy: Option<PathBuf>,
        allow_encoder_mismatch: bool,
        batch_size: usize,
        max_windows: Option<usize>,
    ) -> PyResult<Model> {
        let precision = parse_precision(precision)?;
        if !(1..=4096).contains(&batch_size) {
            return Err(PyValueError::new_err(format!(
                "`batch_size` must be 1 to 4096, got {batch_size}"
            )));
        }
        let pool = match threads {
            None => None,
            Some(n) if (1..=1024).contains(&n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("spyglass-{i}"))
                    .build()
                    .map_err(|e| {
                        SpyglassError::new_err(format!("cannot start {n} threads: {e}"))
                    })?,
            ),
            Some(n) => {
                return Err(PyValueError::new_err(format!(
                    "`threads` must be 1 to 1024, got {n}"
                )))
            }
        };
        let cache = match cache {
            None => CacheChoice::off(),
            Some(value) => match value.extract::<bool>() {
                Ok(false) => CacheChoice::off(),
                Ok(true) => CacheChoice::at(None),
                Err(_) => CacheChoice::at(Some(value.extract::<PathBuf>().map_err(|_| {
                    PyTypeError::new_err("`cache` must be None, a bool or a path")
                })?)),
            },
        };
        let bundle = match &model {
            None => BundleChoice::Default,
            Some(path) if path.as_os_str() == "zero-shot" => BundleChoice::ZeroShot,
            Some(path) => BundleChoice::At(path.clone()),
        };
        let model_choice = ModelChoice {
            bundle,
            taxonomy,
            allow_encoder_mismatch,
        };
        let encoder_choice = EncoderChoice {
            explicit: encoder.map(|p| p.to_string_lossy().into_owned()),
            revision: None,
            offline,
            windows: WindowOverrides {
                max_tokens: None,
                overlap: None,
                max_windows,
            },
            batch_size,
            precision,
        };
        let load = || {
            let mut notices = Vec::new();
            let loaded = load_model(&model_choice, &encoder_choice, &cache, &mut |n| {
                notices.push(n)
            });
            loaded.map(|loaded| (loaded, notices))
        };
        let (loaded, notices) = py
            .detach(|| match &pool {
                Some(pool) => pool.install(load),
                None => load(),
            })
            .map_err(|e| spyglass_error(&e))?;
        let warnings = py.import("warnings")?;
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("spyglass",))?;
        for notice in notices {
            match notice {
                LoadNotice::EncoderReproducesProbes(_) => {
                    logger.call_method1("info", (notice.to_string(),))?;
                }
                _ => {
                    warnings.call_method1("warn", (notice.to_string(),))?;
                }
            }
        }
        Ok(Model {
            topics: loaded.classifier.topics.clone(),
            name: loaded.model_name.clone(),
            encoder: loaded.encoder.encoder.files().id.clone(),
            precision: loaded.encoder.encoder.precision().as_str(),
            dimension: loaded.encoder.encoder.hidden_size(),
            inner: Mutex::new(loaded),
            pool,
        })
    }

    /// Labels articles, in order, with the fields `spyglass label` writes.
    ///
    /// `records`: a list (or any iterable) of dicts with `text` and optional `id`, `title`,
    /// `lang`, `url` (without `id`, and for a plain str, which is a text, the id is the record's
    /// index); or Arrow data with those columns (`id` and `text` required): a pyarrow Table or
    /// RecordBatch, or anything with `__arrow_c_stream__`.
    /// Returns a list of dicts for a list, a pyarrow RecordBatch for a RecordBatch, and a
    /// pyarrow Table for other Arrow data (columns `id`, `error`, `labels`, `scores` (a struct
    /// of float32 per topic), `evidence` (JSON text), `lang`, `model`, `truncated`).
    /// A bad record never raises: it comes back in its place as an error row (`error` says
    /// why), as in the command line's output.
    /// `topics`: report only these topics; `min_score`: labels only from this probability up.
    #[pyo3(signature = (records, *, topics=None, min_score=0.0))]
    fn label<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        topics: Option<Vec<String>>,
        min_score: f32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = self.options(topics, min_score)?;
        if records.hasattr("__arrow_c_stream__")? {
            let items = arrow_items(records)?;
            let lines = self.label_lines(py, items, options)?;
            let schema = label_schema(&self.topics);
            let batch = label_batch(&schema, &self.topics, &lines).map_err(|e| {
                SpyglassError::new_err(format!("cannot build the Arrow result: {e}"))
            })?;
            let pyarrow = py.import("pyarrow")?;
            let export = Bound::new(py, ArrowExport { batch })?;
            let is_batch = records.is_instance(&pyarrow.getattr("RecordBatch")?)?;
            return pyarrow
                .call_method1(if is_batch { "record_batch" } else { "table" }, (export,));
        }
        let items = dict_items(records)?;
        let lines = self.label_lines(py, items, options)?;
        let json = serde_json::to_string(&lines)
            .map_err(|e| SpyglassError::new_err(format!("cannot serialise the records: {e}")))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Article embeddings of `texts` (an iterable of str) as a float32 NumPy array of shape
    /// (len(texts), dimension), L2-normalised; a long text is the mean of its windows' embeddings.
    /// Raises ValueError naming the first text that is not a non-empty str.
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        refuse_single(texts, "texts", "a list of strs")?;
        let mut owned = Vec::new();
        for (index, text) in texts.try_iter()?.enumerate() {
            let text = text?;
            let Ok(text) = text.extract::<String>() else {
                return Err(PyValueError::new_err(format!(
                    "`texts[{index}]` is {}, not valid Unicode text; give str values",
                    text.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                )));
            };
            if text.trim().is_empty() {
                return Err(PyValueError::new_err(format!(
                    "`texts[{index}]` is empty; there is nothing to embed"
                )));
            }
            owned.push(text);
        }
        let dimension = self.dimension;
        let flat = self
            .compute(py, |model| {
                let mut flat = Vec::with_capacity(owned.len() * dimension);
                for chunk in owned.chunks(spyglass::label::CHUNK_ARTICLES) {
                    let docs: Vec<Document<'_>> = chunk
                        .iter()
                        .map(|text| Document { title: None, text })
                        .collect();
                    for embedding in model.encoder.embed(&docs)? {
                        flat.extend_from_slice(&embedding.embedding);
                    }
                }
                Ok::<_, spyglass::io::cache::CachedEncoderError>(flat)
            })?
            .map_err(|e| spyglass_error(&e))?;
        let rows = flat.len() / dimension.max(1);
        Ok(PyArray1::from_vec(py, flat)
            .reshape([rows, dimension])?
            .into_any())
    }

    /// Topic ids, in the order of the `scores` columns.
    #[getter]
    fn topics(&self) -> Vec<String> {
        self.topics.clone()
    }

    /// The model's name as records carry it (`name@version`, marked when not f32).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The encoder loaded: a folder or Hub id.
    #[getter]
    fn encoder(&self) -> &str {
        &self.encoder
    }

    #[getter]
    fn precision(&self) -> &str {
        self.precision
    }

    /// Length of an embedding.
    #[getter]
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(name={:?}, encoder={:?}, precision={:?}, topics={:?})",
            self.name, self.encoder, self.precision, self.topics
        )
    }
}

#[pymodule]
fn _spyglass(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<ArrowExport>()?;
    m.add("SpyglassError", m.py().get_type::<SpyglassError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
