//! Reads articles to process: JSONL files, standard input, or a folder of `.txt`/`.md` files,
//! streamed record by record. A bad record becomes an error item; the stream goes on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub use crate::io::records::{Article, RecordError};

pub type InputItem = Result<Article, RecordError>;

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading UTF-8 byte-order mark. Every reader of user files calls this on the
/// file's first bytes, so a BOM never turns the first record into a bad one.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// `text` without a leading byte-order mark.
pub fn strip_bom_str(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// What a run read: good and bad records and repeated ids, for the closing line and the check
/// that a run labelled something.
#[derive(Debug, Default)]
pub struct Tally {
    pub good: usize,
    pub bad: usize,
    pub duplicate_ids: usize,
    first_error: Option<String>,
    first_duplicate: Option<String>,
    seen: std::collections::HashSet<String>,
}

impl Tally {
    pub fn count(&mut self, item: &InputItem) {
        self.count_id(item.as_ref().map(|a| a.id.as_str()));
    }

    /// Counts a record by its id, or its error.
    pub fn count_id(&mut self, item: Result<&str, &RecordError>) {
        match item {
            Ok(id) => {
                self.good += 1;
                if !self.seen.insert(id.to_string()) {
                    self.duplicate_ids += 1;
                    self.first_duplicate.get_or_insert_with(|| id.to_string());
                }
            }
            Err(error) => {
                self.bad += 1;
                self.first_error
                    .get_or_insert_with(|| format!("{}: {}", error.source, error.error));
            }
        }
    }

    /// A warning when ids repeat (output lines would share an id).
    pub fn duplicate_warning(&self) -> Option<String> {
        self.first_duplicate.as_ref().map(|id| {
            format!(
                "{} records repeat an id seen earlier (first: `{id}`); their output lines share that id, so give each article its own id",
                self.duplicate_ids
            )
        })
    }

    /// An error when there were records and every one was bad.
    pub fn check_any_good(&self, input: &str) -> Result<(), InputError> {
        match &self.first_error {
            Some(first) if self.good == 0 => Err(InputError::AllBad {
                input: input.to_string(),
                bad: self.bad,
                first: first.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("all {bad} records of `{input}` were bad, so nothing was processed (first: {first}); pass JSONL with `id` and `text` on each line, a .txt/.md file, or a folder of them")]
    AllBad {
        input: String,
        bad: usize,
        first: String,
    },
    #[error("cannot open input `{path}`: {source}; pass an existing JSONL file, a .txt/.md file, a folder of them, or `-` for standard input")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read input `{name}`: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
}

/// Articles from `spec`: `-` (JSONL on stdin), a JSONL file, a `.txt`/`.md` file (one article),
/// or a folder of those, walked in name order.
pub struct ArticleReader {
    inner: Inner,
    /// Bytes consumed so far and the total, when known (for progress).
    pub bytes_read: u64,
    pub total_bytes: Option<u64>,
    /// What a folder walk passed over (unreadable folders, files that are not regular files),
    /// for the command to print.
    pub skipped: Vec<String>,
    /// Longest record read: a JSONL line, or a text file of a folder. Longer ones become error
    /// records without being held in memory.
    pub max_record_bytes: u64,
}

/// The default `max_record_bytes`: 16 MiB, far above any news article.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;

/// One JSONL stream: a file, standard input, or a `.jsonl` file inside a folder.
struct JsonlStream {
    name: String,
    reader: Box<dyn BufRead>,
    line: usize,
    buf: Vec<u8>,
}

impl JsonlStream {
    fn new(name: &str, reader: Box<dyn BufRead>) -> Self {
        JsonlStream {
            name: name.to_string(),
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next record (blank lines skipped), counting the bytes read into `bytes_read`. A line
    /// longer than `max_bytes` is skipped unread past the limit and becomes an error record, so
    /// memory stays bounded whatever the input.
    fn next_item(
        &mut self,
        bytes_read: &mut u64,
        max_bytes: u64,
    ) -> Result<Option<InputItem>, InputError> {
        let read_err = |name: &str| {
            let name = name.to_string();
            move |source| InputError::Read { name, source }
        };
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(max_bytes.saturating_add(1))
                .read_until(b'\n', &mut self.buf)
                .map_err(read_err(&self.name))?;
            if n == 0 {
                return Ok(None);
            }
            *bytes_read += n as u64;
            self.line += 1;
            if n as u64 > max_bytes && !self.buf.ends_with(b"\n") {
                // Skip the rest of the line without keeping it.
                loop {
                    let available = self.reader.fill_buf().map_err(read_err(&self.name))?;
                    if available.is_empty() {
                        break;
                    }
                    let (used, done) = match available.iter().position(|&b| b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (available.len(), false),
                    };
                    self.reader.consume(used);
                    *bytes_read += used as u64;
                    if done {
                        break;
                    }
                }
                let line = self.line;
                return Ok(Some(Err(RecordError {
                    id: None,
                    source: format!("{}:{line}", self.name),
                    line: Some(line),
                    error: format!(
                        "line {line} of `{}` is longer than {max_bytes} bytes; split the article, or raise `--max-record-bytes`",
                        self.name
                    ),
                })));
            }
            let record = if self.line == 1 {
                strip_bom(&self.buf)
            } else {
                &self.buf[..]
            };
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(parse_jsonl_record(record, &self.name, self.line)));
        }
    }
}

enum Inner {
    Jsonl(JsonlStream),
    Parquet(Box<crate::io::parquet::ParquetArticles>),
    Folder {
        root: PathBuf,
        files: std::vec::IntoIter<PathBuf>,
        /// The `.jsonl` file of the folder being read, record by record.
        current: Option<JsonlStream>,
    },
}

/// Whether a file of a folder is read as JSONL (records) rather than as one article.
fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl") | Some("ndjson")
    )
}

impl ArticleReader {
    pub fn open(spec: &str) -> Result<Self, InputError> {
        if spec == "-" {
            return Ok(Self::from_reader(
                "<stdin>",
                Box::new(std::io::stdin().lock()),
                None,
            ));
        }
        let path = Path::new(spec);
        let open_err = |source| InputError::Open {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            let mut walk = Walk::default();
            walk.collect(path, true).map_err(open_err)?;
            let Walk {
                mut files, skipped, ..
            } = walk;
            files.sort();
            let total = files
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            return Ok(Self {
                inner: Inner::Folder {
                    root: path.to_path_buf(),
                    files: files.into_iter(),
                    current: None,
                },
                bytes_read: 0,
                total_bytes: Some(total),
                skipped,
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            });
        }
        if crate::io::parquet::is_parquet(spec) {
            let articles = crate::io::parquet::ParquetArticles::open(path)?;
            return Ok(Self {
                inner: Inner::Parquet(Box::new(articles)),
                bytes_read: 0,
                total_bytes: None,
                skipped: Vec::new(),
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            });
        }
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("txt") | Some("md")
        ) {
            // A plain-text file is one article, as each file of a folder is.
            File::open(path).map_err(open_err)?;
            let total = path.metadata().ok().map(|m| m.len());
            let root = path.parent().unwrap_or(Path::new("")).to_path_buf();
            return Ok(Self {
                inner: Inner::Folder {
                    root,
                    files: vec![path.to_path_buf()].into_iter(),
                    current: None,
                },
                bytes_read: 0,
                total_bytes: total,
                skipped: Vec::new(),
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            });
        }
        let file = File::open(path).map_err(open_err)?;
        let total = file.metadata().ok().map(|m| m.len());
        Ok(Self::from_reader(
            spec,
            Box::new(BufReader::with_capacity(1 << 16, file)),
            total,
        ))
    }

    pub fn from_reader(name: &str, reader: Box<dyn BufRead>, total_bytes: Option<u64>) -> Self {
        Self {
            inner: Inner::Jsonl(JsonlStream::new(name, reader)),
            bytes_read: 0,
            total_bytes,
            skipped: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// The next article or record error; `Err` only when the input itself cannot be read.
    pub fn next_item(&mut self) -> Result<Option<InputItem>, InputError> {
        match &mut self.inner {
            Inner::Jsonl(stream) => stream.next_item(&mut self.bytes_read, self.max_record_bytes),
            Inner::Parquet(articles) => articles.next_item(),
            Inner::Folder {
                root,
                files,
                current,
            } => loop {
                if let Some(stream) = current {
                    match stream.next_item(&mut self.bytes_read, self.max_record_bytes) {
                        Ok(Some(item)) => return Ok(Some(item)),
                        Ok(None) => *current = None,
                        // One unreadable file of a folder is one error record, not the end.
                        Err(e) => {
                            let source = stream.name.clone();
                            *current = None;
                            return Ok(Some(Err(RecordError {
                                id: None,
                                source,
                                line: None,
                                error: e.to_string(),
                            })));
                        }
                    }
                }
                let Some(path) = files.next() else {
                    return Ok(None);
                };
                if is_jsonl(&path) {
                    match File::open(&path) {
                        Ok(file) => {
                            *current = Some(JsonlStream::new(
                                &path.display().to_string(),
                                Box::new(BufReader::with_capacity(1 << 16, file)),
                            ));
                            continue;
                        }
                        Err(e) => {
                            return Ok(Some(Err(RecordError {
                                id: None,
                                source: path.display().to_string(),
                                line: None,
                                error: format!("cannot read `{}`: {e}", path.display()),
                            })))
                        }
                    }
                }
                let rel = path.strip_prefix(&*root).unwrap_or(&path);
                let id = rel.with_extension("").to_string_lossy().replace('\\', "/");
                let mut bytes = Vec::new();
                let limit = self.max_record_bytes;
                let read = File::open(&path)
                    .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut bytes));
                self.bytes_read += bytes.len() as u64;
                let source = path.display().to_string();
                let fail = |error: String| RecordError {
                    id: Some(id.clone()),
                    source: source.clone(),
                    line: None,
                    error,
                };
                return Ok(Some(match read {
                    Err(e) => Err(fail(format!("cannot read `{source}`: {e}"))),
                    Ok(n) if n as u64 > limit => Err(fail(format!(
                        "`{source}` is longer than {limit} bytes; split it, or raise `--max-record-bytes`"
                    ))),
                    Ok(_) => match String::from_utf8(strip_bom(&bytes).to_vec()) {
                        Err(e) => Err(fail(format!(
                            "`{source}` is not valid UTF-8 (byte {}); re-save it as UTF-8",
                            e.utf8_error().valid_up_to()
                        ))),
                        Ok(text) => validate(Article {
                            id: id.clone(),
                            text,
                            title: None,
                            lang: None,
                            url: None,
                            extra: Default::default(),
                            raw_id: None,
                        })
                        .map_err(fail),
                    },
                }));
            },
        }
    }
}

impl Iterator for ArticleReader {
    type Item = Result<InputItem, InputError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// A folder walk: `.txt`/`.md` regular files (an article each) and `.jsonl` ones (records), each folder once (a symbolic link back into a
/// folder already walked is not followed again), and what it passed over.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    skipped: Vec<String>,
    visited: std::collections::HashSet<PathBuf>,
}

impl Walk {
    /// Walks `dir`; only the top folder's own errors are errors, the rest are skipped.
    fn collect(&mut self, dir: &Path, top: bool) -> std::io::Result<()> {
        let real = std::fs::canonicalize(dir)?;
        if !self.visited.insert(real) {
            return Ok(()); // reached again through a link: already walked
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if !top => {
                self.skipped
                    .push(format!("folder `{}`: {e}", dir.display()));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    self.skipped
                        .push(format!("an entry of `{}`: {e}", dir.display()));
                    continue;
                }
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                self.skipped
                    .push(format!("`{}`: a link to nothing", path.display()));
                continue;
            };
            if meta.is_dir() {
                if let Err(e) = self.collect(&path, false) {
                    self.skipped
                        .push(format!("folder `{}`: {e}", path.display()));
                }
            } else if is_jsonl(&path)
                || matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("txt") | Some("md")
                )
            {
                if meta.is_file() {
                    self.files.push(path);
                } else {
                    self.skipped
                        .push(format!("`{}`: not a regular file", path.display()));
                }
            }
        }
        Ok(())
    }
}

fn parse_jsonl_record(bytes: &[u8], name: &str, line: usize) -> InputItem {
    let fail = |id: Option<String>, error: String| RecordError {
        id,
        source: format!("{name}:{line}"),
        line: Some(line),
        error,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(
            None,
            format!(
                "line {line} of `{name}` is not valid UTF-8 (byte {}); re-encode the file as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        fail(
            None,
            format!("line {line} of `{name}` is not valid JSON ({e}); each line must be one JSON object"),
        )
    })?;
    // The id token as written, whatever its JSON type: a string is the id itself, any other
    // value (a number, say) is kept token for token and shown by its JSON text.
    #[derive(Deserialize)]
    struct IdToken<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
    }
    let raw_id = serde_json::from_str::<IdToken>(text)
        .ok()
        .and_then(|t| t.id)
        .filter(|raw| raw.get() != "null");
    let id = match value.get("id") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(_) => raw_id.map(|raw| raw.get().to_string()),
    };
    let mut value = value;
    let kept_raw = match (&id, value.get("id")) {
        (Some(id), Some(v)) if !v.is_string() => {
            value["id"] = serde_json::Value::String(id.clone());
            raw_id.map(|raw| raw.to_owned())
        }
        _ => None,
    };
    let mut article: Article = serde_json::from_value(value).map_err(|e| {
        fail(
            id.clone(),
            format!("line {line} of `{name}`: {e}; a record needs fields `id` and `text` (strings; `id` may be any JSON value but null) and optional `title`, `lang`, `url`"),
        )
    })?;
    article.raw_id = kept_raw;
    validate(article).map_err(|e| fail(id, format!("line {line} of `{name}`: {e}")))
}

/// Checks a record a reader produced: a non-empty id, and a text or a title to read.
pub fn validate(article: Article) -> Result<Article, String> {
    if article.id.trim().is_empty() {
        return Err("`id` is empty; give every record a unique id".into());
    }
    let has_title = article
        .title
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty());
    if article.text.trim().is_empty() && !has_title {
        return Err(format!(
            "record `{}` has an empty `text` and no `title`; there is nothing to read",
            article.id
        ));
    }
    Ok(article)
}

/// Entry `index` of a list of articles as JSON values (the server's `inputs`, the Python
/// binding's `records`): a string is an article's text (its id the index), an object has `text`
/// and optional `id`, `title`, `lang`, `url`. A bad entry is its error row, named
/// `list[index]`.
pub fn article_from_value(list: &str, index: usize, value: &Value) -> Result<Article, RecordError> {
    let fail = |id: Option<String>, error: String| RecordError {
        id,
        source: format!("{list}[{index}]"),
        line: None,
        error,
    };
    let (id, raw_id, fields) = match value {
        Value::String(_) => {
            let raw = serde_json::value::RawValue::from_string(index.to_string())
                .expect("a number is JSON");
            (index.to_string(), Some(raw), None)
        }
        Value::Object(map) => {
            let (id, raw) = match map.get("id") {
                None | Some(Value::Null) => (
                    index.to_string(),
                    Some(
                        serde_json::value::RawValue::from_string(index.to_string())
                            .expect("a number is JSON"),
                    ),
                ),
                Some(Value::String(s)) => (s.clone(), None),
                Some(other) => {
                    let text = other.to_string();
                    let raw = serde_json::value::RawValue::from_string(text.clone())
                        .expect("serialised JSON is JSON");
                    (text, Some(raw))
                }
            };
            (id, raw, Some(map))
        }
        _ => {
            return Err(fail(
                None,
                format!("`{list}[{index}]` must be a string or an object with `text`"),
            ))
        }
    };
    let string_field = |name: &str| -> Result<Option<String>, RecordError> {
        match fields.and_then(|m| m.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(fail(
                Some(id.clone()),
                format!("`{list}[{index}].{name}` must be a string"),
            )),
        }
    };
    let text = match value {
        Value::String(text) => text.clone(),
        _ => string_field("text")?.unwrap_or_default(),
    };
    let article = Article {
        id: id.clone(),
        text,
        title: string_field("title")?,
        lang: string_field("lang")?,
        url: string_field("url")?,
        extra: serde_json::Map::new(),
        raw_id,
    };
    validate(article).map_err(|e| fail(Some(id), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Vec<InputItem> {
        let reader = ArticleReader::from_reader(
            "t.jsonl",
            Box::new(std::io::Cursor::new(input.as_bytes().to_vec())),
            None,
        );
        reader.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn a_byte_order_mark_does_not_spoil_the_first_record() {
        let items =
            read_all("\u{feff}{\"id\":\"a\",\"text\":\"one\"}\n{\"id\":\"b\",\"text\":\"two\"}\n");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().id, "a");
        // A folder's text file with a BOM keeps its text without it.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.txt"), "\u{feff}Story text.").unwrap();
        let mut reader = ArticleReader::open(dir.path().to_str().unwrap()).unwrap();
        let article = reader.next_item().unwrap().unwrap().unwrap();
        assert_eq!(article.text, "Story text.");
        // Only a leading BOM is removed.
        assert_eq!(strip_bom(b"\xEF\xBB\xBFa\xEF\xBB\xBF"), b"a\xEF\xBB\xBF");
        assert_eq!(strip_bom_str("x\u{feff}"), "x\u{feff}");
    }

    #[test]
    fn a_text_file_is_one_article_and_a_tally_catches_all_bad_runs_and_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("note.md");
        std::fs::write(&path, "# Heading\nA line that is not JSON.\n").unwrap();
        let items: Vec<InputItem> = ArticleReader::open(path.to_str().unwrap())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(items.len(), 1);
        let article = items[0].as_ref().unwrap();
        assert_eq!(article.id, "note");
        assert!(article.text.starts_with("# Heading"));

        let mut tally = Tally::default();
        for item in read_all("nope\n{\"id\":1}\n") {
            tally.count(&item);
        }
        let err = tally.check_any_good("x.jsonl").unwrap_err().to_string();
        assert!(err.contains("all 2 records of `x.jsonl` were bad"), "{err}");
        let mut tally = Tally::default();
        for item in read_all("{\"id\":\"a\",\"text\":\"1\"}\n{\"id\":\"a\",\"text\":\"2\"}\nbad\n")
        {
            tally.count(&item);
        }
        assert!(tally.check_any_good("x").is_ok());
        assert_eq!(tally.duplicate_ids, 1);
        assert!(tally.duplicate_warning().unwrap().contains("`a`"));
        assert!(Tally::default().check_any_good("empty").is_ok());
    }

    #[test]
    fn ids_are_kept_exactly_whatever_their_json_type() {
        let input = concat!(
            "{\"id\":7,\"text\":\"a\"}\n",
            "{\"id\":1e3,\"text\":\"b\"}\n",
            "{\"id\":18446744073709551616123,\"text\":\"c\"}\n",
            "{\"text\":\"d\",\"id\":{\"desk\":\"x\", \"n\":2}}\n",
            "{\"id\":\"s-1\",\"text\":\"e\"}\n",
            "{\"id\":null,\"text\":\"f\"}\n",
        );
        let reader = ArticleReader::from_reader(
            "in",
            Box::new(std::io::Cursor::new(input.as_bytes().to_vec())),
            None,
        );
        let items: Vec<InputItem> = reader.map(Result::unwrap).collect();
        let written: Vec<String> = items[..5]
            .iter()
            .map(|i| {
                let article = i.as_ref().unwrap();
                serde_json::to_string(&crate::io::records::RecordId::of(article)).unwrap()
            })
            .collect();
        assert_eq!(
            written,
            [
                "7",
                "1e3",
                "18446744073709551616123",
                "{\"desk\":\"x\", \"n\":2}",
                "\"s-1\""
            ]
        );
        assert_eq!(items[1].as_ref().unwrap().id, "1e3");
        assert!(items[5].is_err(), "a null id is no id");
    }

    #[test]
    fn records_past_the_size_cap_are_errors_and_the_next_ones_are_read() {
        let long = format!("{{\"id\":\"big\",\"text\":\"{}\"}}", "x".repeat(500));
        let input = format!(
            "{{\"id\":\"a\",\"text\":\"short\"}}\n{long}\n{{\"id\":\"b\",\"text\":\"also short\"}}"
        );
        let mut reader = ArticleReader::from_reader(
            "in.jsonl",
            Box::new(std::io::Cursor::new(input.clone().into_bytes())),
            None,
        );
        reader.max_record_bytes = 100;
        let items: Vec<InputItem> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().id, "a");
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.error.contains("longer than 100 bytes"), "{}", err.error);
        assert_eq!(items[2].as_ref().unwrap().id, "b");
        assert_eq!(reader.bytes_read, input.len() as u64);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.txt"), "y".repeat(500)).unwrap();
        std::fs::write(dir.path().join("small.txt"), "A short article.").unwrap();
        let mut reader = ArticleReader::open(dir.path().to_str().unwrap()).unwrap();
        reader.max_record_bytes = 100;
        let items: Vec<InputItem> = reader.map(Result::unwrap).collect();
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .error
            .contains("longer than 100 bytes"));
        assert_eq!(items[1].as_ref().unwrap().id, "small");
    }

    #[test]
    fn a_folder_reads_its_jsonl_files_as_records_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "First article.").unwrap();
        std::fs::write(
            dir.path().join("b.jsonl"),
            "{\"id\":\"b1\",\"text\":\"One.\"}\nnot json\n\n{\"id\":\"b2\",\"text\":\"Two.\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("c.md"), "Last article.").unwrap();
        let reader = ArticleReader::open(dir.path().to_str().unwrap()).unwrap();
        let items: Vec<InputItem> = reader.map(Result::unwrap).collect();
        let ids: Vec<String> = items
            .iter()
            .map(|i| match i {
                Ok(a) => a.id.clone(),
                Err(e) => format!("error at {}", e.source),
            })
            .collect();
        let b = dir.path().join("b.jsonl").display().to_string();
        assert_eq!(
            ids,
            vec![
                "a".to_string(),
                "b1".into(),
                format!("error at {b}:2"),
                "b2".into(),
                "c".into()
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn folder_walks_survive_link_loops_and_skip_what_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.txt"), "Story A.").unwrap();
        // A link back to the top folder: following it naively never ends.
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing.txt"), sub.join("dead.txt")).unwrap();
        let fifo = dir.path().join("pipe.txt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let reader = ArticleReader::open(dir.path().to_str().unwrap()).unwrap();
        let skipped = reader.skipped.join("\n");
        let items: Vec<InputItem> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(items.len(), 1, "{skipped}");
        assert_eq!(items[0].as_ref().unwrap().text, "Story A.");
        assert!(skipped.contains("dead.txt"), "{skipped}");
        if made.is_ok_and(|s| s.success()) {
            assert!(
                skipped.contains("pipe.txt`: not a regular file"),
                "{skipped}"
            );
        }
    }

    #[test]
    fn bad_lines_become_errors_with_line_numbers_and_the_rest_are_read() {
        let items = read_all(
            "{\"id\":\"a\",\"text\":\"one\"}\n\nnot json\n{\"id\":7,\"text\":\"two\",\"label\":\"x\"}\n{\"id\":\"c\"}\n{\"id\":\"d\",\"text\":\"  \"}\n",
        );
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].as_ref().unwrap().id, "a");
        let bad = items[1].as_ref().unwrap_err();
        assert_eq!(bad.line, Some(3));
        assert!(bad.error.contains("not valid JSON"), "{}", bad.error);
        let numeric = items[2].as_ref().unwrap();
        assert_eq!(numeric.id, "7");
        assert_eq!(numeric.extra["label"], "x");
        let missing = items[3].as_ref().unwrap_err();
        assert_eq!((missing.line, missing.id.as_deref()), (Some(5), Some("c")));
        assert!(missing.error.contains("`text`"), "{}", missing.error);
        assert!(items[4]
            .as_ref()
            .unwrap_err()
            .error
            .contains("empty `text`"));
    }

    #[test]
    fn invalid_utf8_is_reported_not_fatal() {
        let mut bytes = b"{\"id\":\"a\",\"text\":\"\xff\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"id\":\"b\",\"text\":\"ok\"}\n");
        let reader = ArticleReader::from_reader("t", Box::new(std::io::Cursor::new(bytes)), None);
        let items: Vec<_> = reader.map(|r| r.unwrap()).collect();
        assert!(items[0].as_ref().unwrap_err().error.contains("UTF-8"));
        assert_eq!(items[1].as_ref().unwrap().id, "b");
    }

    #[test]
    fn folder_input_reads_text_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.md"), "# B\nbody").unwrap();
        std::fs::write(dir.path().join("a.txt"), "alpha").unwrap();
        std::fs::write(dir.path().join("sub/c.txt"), "gamma").unwrap();
        std::fs::write(dir.path().join("skip.json"), "{}").unwrap();
        let reader = ArticleReader::open(dir.path().to_str().unwrap()).unwrap();
        let ids: Vec<String> = reader.map(|r| r.unwrap().unwrap().id).collect();
        assert_eq!(ids, ["a", "b", "sub/c"]);
    }
}
