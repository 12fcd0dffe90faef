//! Every JSONL record spyglass reads or writes, in one place: input articles, hand-labelled
//! articles, error lines, label, embedding and triage records, and predictions lines.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::encoder::{Document, Span};

/// One input article. Unknown fields are kept so labels and notes can travel with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Article {
    pub id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The id's JSON exactly as the input gave it, when it was not a string (a number, say);
    /// output records repeat it token for token.
    #[serde(skip)]
    pub raw_id: Option<Box<RawValue>>,
}

impl Article {
    pub fn document(&self) -> Document<'_> {
        Document {
            title: self.title.as_deref(),
            text: &self.text,
        }
    }
}

/// One hand-labelled article (`eval/data/*.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelledArticle {
    pub id: String,
    pub lang: String,
    pub title: String,
    pub text: String,
    pub labels: Vec<String>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl LabelledArticle {
    pub fn document(&self) -> Document<'_> {
        Document {
            title: Some(&self.title),
            text: &self.text,
        }
    }
}

/// A record that could not be read or processed, with where it came from; written in its place
/// in the output, so output lines match input lines.
#[derive(Debug, Clone, Serialize)]
pub struct RecordError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `file:line` (JSONL) or the file path (folder input).
    pub source: String,
    pub line: Option<usize>,
    pub error: String,
}

/// Why a topic was assigned: the window that drove it and an excerpt of its text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    #[serde(flatten)]
    pub span: Span,
    pub window: usize,
    pub excerpt: String,
}

/// An article's id as output records write it: the input's JSON token when it was not a
/// string (so `7` stays `7` and `1e3` stays `1e3`), else the string.
#[derive(Debug, Clone)]
pub struct RecordId {
    text: String,
    raw: Option<Box<RawValue>>,
}

impl RecordId {
    pub fn of(article: &Article) -> Self {
        RecordId {
            text: article.id.clone(),
            raw: article.raw_id.clone(),
        }
    }

    /// The id as text (a non-string id's JSON token).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for RecordId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.raw.as_deref().map(RawValue::get) == other.raw.as_deref().map(RawValue::get)
    }
}

impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.raw {
            Some(raw) => raw.serialize(serializer),
            None => self.text.serialize(serializer),
        }
    }
}

/// What `spyglass label` (and the server, and the Python binding) writes for one article.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelRecord {
    pub id: RecordId,
    pub labels: Vec<String>,
    pub scores: BTreeMap<String, f32>,
    pub evidence: BTreeMap<String, Evidence>,
    pub lang: String,
    pub model: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One output line of labelling: a record, or the error that took its place.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LabelLine {
    Labelled(LabelRecord),
    Error(RecordError),
}

/// What `spyglass embed` writes for one article.
#[derive(Serialize)]
pub struct EmbeddedRecord<'a> {
    pub id: RecordId,
    pub embedding: &'a [f32],
    pub windows: Vec<WindowRecord<'a>>,
    pub truncated: bool,
}

#[derive(Serialize)]
pub struct WindowRecord<'a> {
    #[serde(flatten)]
    pub span: Span,
    pub tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<&'a [f32]>,
}

/// Where a story was found.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The feed's URL or file.
    pub feed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_title: Option<String>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
}

/// One ranked story.
#[derive(Debug, Clone, Serialize)]
pub struct TriageRecord {
    pub rank: usize,
    pub id: String,
    pub title: String,
    pub link: Option<String>,
    /// Publication time (RFC 3339), else when spyglass first saw it.
    pub time: String,
    /// Highest calibrated probability among the reported topics.
    pub score: f32,
    /// The topic of that score.
    pub top_topic: String,
    /// Topics over their thresholds.
    pub topics: Vec<String>,
    pub scores: BTreeMap<String, f32>,
    /// Evidence excerpt for the top topic.
    pub excerpt: String,
    pub evidence: BTreeMap<String, Evidence>,
    pub lang: String,
    /// `feed` or `article` (page fetched with `--fetch-articles`).
    pub content: &'static str,
    /// Every feed item this story was found as (several for a story syndicated across feeds).
    pub sources: Vec<Source>,
    pub model: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A line of a predictions file (`eval --predictions`): an id with scores or labels.
#[derive(serde::Deserialize)]
pub struct PredictionLine {
    pub id: serde_json::Value,
    #[serde(default)]
    pub scores: Option<HashMap<String, f32>>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}
