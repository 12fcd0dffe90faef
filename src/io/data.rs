//! Hand-labelled article files: schema validation against the taxonomy, duplicate and
//! near-duplicate detection, and corpus counts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use serde::Serialize;

use crate::encoder::ArticleTokenizer;

pub use crate::io::records::LabelledArticle;
use crate::model::taxonomy::Taxonomy;

/// Tags a labelled article may carry (see labels/GUIDELINES.md).
pub const KNOWN_TAGS: [&str; 3] = ["noise", "hard_negative", "subtle"];
/// Fields a labelled record may have.
const KNOWN_FIELDS: [&str; 8] = [
    "id", "lang", "title", "text", "labels", "source", "note", "tags",
];

/// A problem with one record, located by file and line.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub id: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{}:{} ({id}): {}", self.file, self.line, self.problem),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.problem),
        }
    }
}

/// The valid records of one file, and what was wrong with the others.
#[derive(Debug, Default)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub articles: Vec<LabelledArticle>,
    /// Line number of each article in `articles`.
    pub lines: Vec<usize>,
    pub invalid: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read labelled data `{path}`: {source}; pass existing JSONL files (e.g. eval/data/train.jsonl)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot tokenize `{id}`")]
    Tokenize {
        id: String,
        #[source]
        source: Box<crate::encoder::EncoderError>,
    },
}

/// Articles longer than this many encoder tokens are "long" (they need more than one window).
pub const LONG_TOKENS: usize = 512;

/// Reads and validates one labelled JSONL file; invalid records are reported, not fatal.
pub fn load_file(path: &Path, taxonomy: &Taxonomy) -> Result<LoadedFile, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    let mut loaded = LoadedFile {
        path: path.to_path_buf(),
        ..Default::default()
    };
    for (index, raw) in crate::io::input::strip_bom(&bytes)
        .split(|&b| b == b'\n')
        .enumerate()
    {
        let line = index + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match validate_record(raw, taxonomy) {
            Ok(article) => {
                loaded.articles.push(article);
                loaded.lines.push(line);
            }
            Err((id, problem)) => loaded.invalid.push(Finding {
                file: name.clone(),
                line,
                id,
                problem,
            }),
        }
    }
    Ok(loaded)
}

fn validate_record(
    raw: &[u8],
    taxonomy: &Taxonomy,
) -> Result<LabelledArticle, (Option<String>, String)> {
    let text = std::str::from_utf8(raw)
        .map_err(|e| (None, format!("not valid UTF-8 (byte {})", e.valid_up_to())))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (None, format!("not valid JSON ({e})")))?;
    let id = value.get("id").and_then(|v| v.as_str()).map(str::to_string);
    let fail = |problem: String| (id.clone(), problem);
    let object = value
        .as_object()
        .ok_or_else(|| fail("not a JSON object".into()))?;
    let unknown: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(fail(format!(
            "unknown fields {unknown:?}; allowed: {KNOWN_FIELDS:?}"
        )));
    }
    let article: LabelledArticle = serde_json::from_value(value.clone()).map_err(|e| {
        fail(format!(
            "{e}; required: id, lang, title, text (strings), labels (list of topic ids), source"
        ))
    })?;
    if article.id.trim().is_empty() {
        return Err(fail("`id` is empty".into()));
    }
    if article.text.trim().is_empty() {
        return Err(fail("`text` is empty".into()));
    }
    if article.lang.trim().is_empty() {
        return Err(fail(
            "`lang` is empty; use an ISO 639-1 code such as `en`".into(),
        ));
    }
    if article.source.trim().is_empty() {
        return Err(fail(
            "`source` is empty (hand-written articles use `written`)".into(),
        ));
    }
    let mut seen = HashSet::new();
    for label in &article.labels {
        if taxonomy.index_of(label).is_none() {
            return Err(fail(format!(
                "label `{label}` is not a topic of taxonomy v{} ({}); known: {}",
                taxonomy.version,
                taxonomy.path.display(),
                taxonomy.ids().join(", ")
            )));
        }
        if !seen.insert(label) {
            return Err(fail(format!("label `{label}` is listed twice")));
        }
    }
    for tag in &article.tags {
        if !KNOWN_TAGS.contains(&tag.as_str()) {
            return Err(fail(format!(
                "tag `{tag}` is unknown; known: {KNOWN_TAGS:?}"
            )));
        }
    }
    if article.tags.iter().any(|t| t == "hard_negative") && !article.labels.is_empty() {
        return Err(fail("a `hard_negative` article must have no labels".into()));
    }
    Ok(article)
}

/// Letters and digits only, lower-cased: the text that near-duplicate checks compare.
pub fn normalize_text(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Hashes of the overlapping character 8-grams of normalised text.
fn shingles(normalized: &str) -> HashSet<u64> {
    use std::hash::{Hash, Hasher};
    let chars: Vec<char> = normalized.chars().collect();
    if chars.len() < 8 {
        return HashSet::from([hash_of(&chars)]);
    }
    chars
        .windows(8)
        .map(|w| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect()
}

fn hash_of(chars: &[char]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    chars.hash(&mut h);
    h.finish()
}

/// Articles whose texts are the same or nearly so: one finding per group, however many.
#[derive(Debug, Clone, Serialize)]
pub struct NearDuplicate {
    /// (file, id) of every member, in input order.
    pub members: Vec<(String, String)>,
    /// Lowest Jaccard similarity of character 8-gram sets of normalised text among the pairs
    /// that joined the group (1.0 = identical).
    pub similarity: f64,
}

/// Groups of articles whose normalised texts share at least `threshold` of their 8-grams
/// (linked pairs join one group). Identical texts are grouped by hash first, so a corpus of
/// many copies costs linear time, not a comparison per pair.
pub fn near_duplicates(files: &[LoadedFile], threshold: f64) -> Vec<NearDuplicate> {
    let all: Vec<(usize, &LabelledArticle)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, file)| file.articles.iter().map(move |a| (f, a)))
        .collect();
    let mut parent: Vec<usize> = (0..all.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut lowest: Vec<f64> = vec![1.0; all.len()];
    let join = |parent: &mut Vec<usize>, lowest: &mut Vec<f64>, x: usize, y: usize, sim: f64| {
        let (rx, ry) = (root(parent, x), root(parent, y));
        let low = lowest[rx].min(lowest[ry]).min(sim);
        if rx != ry {
            parent[ry] = rx;
        }
        lowest[rx] = low;
    };
    // Identical normalised texts: one representative each.
    let mut by_text: HashMap<String, usize> = HashMap::new();
    let mut representatives: Vec<(usize, HashSet<u64>)> = Vec::new();
    for (i, (_, article)) in all.iter().enumerate() {
        let text = normalize_text(&article.text);
        match by_text.get(&text) {
            Some(&first) => join(&mut parent, &mut lowest, first, i, 1.0),
            None => {
                by_text.insert(text.clone(), i);
                representatives.push((i, shingles(&text)));
            }
        }
    }
    let mut postings: HashMap<u64, Vec<usize>> = HashMap::new();
    for (r, (_, set)) in representatives.iter().enumerate() {
        for &s in set {
            postings.entry(s).or_default().push(r);
        }
    }
    for (r, (i, set)) in representatives.iter().enumerate() {
        let mut shared: HashMap<usize, usize> = HashMap::new();
        for s in set {
            for &other in &postings[s] {
                if other > r {
                    *shared.entry(other).or_default() += 1;
                }
            }
        }
        for (other, count) in shared {
            let (j, other_set) = &representatives[other];
            let union = set.len() + other_set.len() - count;
            let similarity = count as f64 / union.max(1) as f64;
            if similarity >= threshold {
                join(&mut parent, &mut lowest, *i, *j, similarity);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..all.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut found: Vec<NearDuplicate> = groups
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(r, members)| NearDuplicate {
            similarity: lowest[r],
            members: members
                .into_iter()
                .map(|i| {
                    let (f, article) = all[i];
                    (files[f].path.display().to_string(), article.id.clone())
                })
                .collect(),
        })
        .collect();
    found.sort_by(|x, y| y.similarity.total_cmp(&x.similarity));
    found
}

/// Ids that occur more than once across all files, with every place they occur.
pub fn duplicate_ids(files: &[LoadedFile]) -> Vec<(String, Vec<String>)> {
    let mut places: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for file in files {
        for (article, line) in file.articles.iter().zip(&file.lines) {
            places
                .entry(&article.id)
                .or_default()
                .push(format!("{}:{line}", file.path.display()));
        }
    }
    places
        .into_iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(id, p)| (id.to_string(), p))
        .collect()
}

fn median(values: &mut [usize]) -> usize {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[values.len() / 2]
}

/// Words of a text; CJK scripts count two letters as one word since they use no spaces.
pub fn word_count(text: &str, lang: &str) -> usize {
    if matches!(lang, "ja" | "zh") {
        text.chars().filter(|c| c.is_alphabetic()).count() / 2
    } else {
        text.split_whitespace().count()
    }
}

/// Markdown tables: per-file summary, languages and topics. Token counts need `tokenizer`;
/// without one the long column says `n/a`.
pub fn counts_report(
    files: &[LoadedFile],
    taxonomy: &Taxonomy,
    tokenizer: Option<&ArticleTokenizer>,
) -> Result<String, DataError> {
    // Tokenize first, so the rendering below cannot fail.
    let mut long_counts = Vec::with_capacity(files.len());
    for file in files {
        long_counts.push(match tokenizer {
            Some(t) => {
                let mut n = 0;
                for article in &file.articles {
                    let tokens = t.count_tokens(article.document()).map_err(|source| {
                        DataError::Tokenize {
                            id: article.id.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    n += usize::from(tokens > LONG_TOKENS);
                }
                n.to_string()
            }
            None => "n/a".into(),
        });
    }
    Ok(render_counts(files, taxonomy, &long_counts).expect("formatting into a String cannot fail"))
}

fn render_counts(
    files: &[LoadedFile],
    taxonomy: &Taxonomy,
    long_counts: &[String],
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let name = |f: &LoadedFile| {
        f.path.file_name().map_or_else(
            || f.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    writeln!(out, "\n### Articles per file\n")?;
    writeln!(out, "| file | articles | none | hard negatives | 2+ topics | long (>{LONG_TOKENS} tokens) | page noise | subtle | words min / median / max |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    for (index, file) in files.iter().enumerate() {
        let a = &file.articles;
        let tagged = |tag: &str| a.iter().filter(|x| x.tags.iter().any(|t| t == tag)).count();
        let mut words: Vec<usize> = a.iter().map(|x| word_count(&x.text, &x.lang)).collect();
        let long = &long_counts[index];
        let (min, max) = (
            words.iter().min().copied().unwrap_or(0),
            words.iter().max().copied().unwrap_or(0),
        );
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            name(file),
            a.len(),
            a.iter().filter(|x| x.labels.is_empty()).count(),
            tagged("hard_negative"),
            a.iter().filter(|x| x.labels.len() >= 2).count(),
            long,
            tagged("noise"),
            tagged("subtle"),
            min,
            median(&mut words),
            max
        )?;
    }

    let langs: BTreeSet<&str> = files
        .iter()
        .flat_map(|f| f.articles.iter().map(|a| a.lang.as_str()))
        .collect();
    writeln!(out, "\n### Articles per language\n")?;
    writeln!(
        out,
        "| file | {} | total |",
        langs.iter().copied().collect::<Vec<_>>().join(" | ")
    )?;
    writeln!(out, "|---|{}---|", "---|".repeat(langs.len()))?;
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for file in files {
        let mut row = format!("| {} |", name(file));
        for lang in &langs {
            let n = file.articles.iter().filter(|a| a.lang == *lang).count();
            *totals.entry(lang).or_default() += n;
            write!(row, " {n} |")?;
        }
        writeln!(out, "{row} {} |", file.articles.len())?;
    }
    let all: usize = totals.values().sum();
    writeln!(
        out,
        "| **all** | {} | {all} |",
        langs
            .iter()
            .map(|l| totals[l].to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    )?;

    writeln!(
        out,
        "\n### Positives per topic (languages with at least one positive)\n"
    )?;
    let names: Vec<String> = files.iter().map(name).collect();
    writeln!(out, "| topic | {} | all |", names.join(" | "))?;
    writeln!(out, "|---|{}---|", "---|".repeat(files.len()))?;
    for topic in taxonomy.ids().into_iter().chain(std::iter::once("none")) {
        let mut row = format!("| `{topic}` |");
        let mut total = 0;
        let mut all_langs = BTreeSet::new();
        for file in files {
            let hits: Vec<_> = file
                .articles
                .iter()
                .filter(|a| {
                    if topic == "none" {
                        a.labels.is_empty()
                    } else {
                        a.labels.iter().any(|l| l == topic)
                    }
                })
                .collect();
            let file_langs: BTreeSet<&str> = hits.iter().map(|a| a.lang.as_str()).collect();
            all_langs.extend(file_langs.iter().copied());
            total += hits.len();
            write!(row, " {} ({} langs) |", hits.len(), file_langs.len())?;
        }
        writeln!(out, "{row} {total} ({} langs) |", all_langs.len())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        Taxonomy::parse(
            b"version = 1\n[[topic]]\nid = \"espionage\"\nname = \"E\"\ndefinition = \"d\"\n[topic.descriptions]\nen = [\"x\"]\n",
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn record(id: &str, text: &str, labels: &str) -> String {
        format!(
            r#"{{"id":"{id}","lang":"en","title":"T","text":"{text}","labels":{labels},"source":"written"}}"#
        )
    }

    #[test]
    fn a_byte_order_mark_does_not_spoil_the_first_gold_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.jsonl");
        let text = format!(
            "\u{feff}{}\n",
            record("first", "A story about spies.", r#"["espionage"]"#)
        );
        std::fs::write(&path, text).unwrap();
        let loaded = load_file(&path, &taxonomy()).unwrap();
        assert!(loaded.invalid.is_empty(), "{:?}", loaded.invalid);
        assert_eq!(loaded.articles[0].id, "first");
    }

    #[test]
    fn each_invalid_record_is_found_and_valid_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let lines = [
            record("ok", "A story about spies.", r#"["espionage"]"#),
            record("badlabel", "Text.", r#"["spying"]"#),
            record("twice", "Text.", r#"["espionage","espionage"]"#),
            "{not json".to_string(),
            r#"{"id":"nolang","title":"T","text":"x","labels":[],"source":"written"}"#.to_string(),
            record("empty", "  ", "[]"),
            r#"{"id":"extra","lang":"en","title":"T","text":"x","labels":[],"source":"written","label":"y"}"#.to_string(),
            r#"{"id":"hn","lang":"en","title":"T","text":"x","labels":["espionage"],"source":"written","tags":["hard_negative"]}"#.to_string(),
            r#"{"id":"tag","lang":"en","title":"T","text":"x","labels":[],"source":"written","tags":["loud"]}"#.to_string(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let loaded = load_file(&path, &taxonomy()).unwrap();
        assert_eq!(loaded.articles.len(), 1);
        let problems: Vec<String> = loaded.invalid.iter().map(|f| f.to_string()).collect();
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems[0].contains(":2 (badlabel)") && problems[0].contains("`spying`"));
        assert!(problems[1].contains("listed twice"));
        assert!(problems[2].contains("not valid JSON"));
        assert!(problems[3].contains("missing field `lang`"));
        assert!(problems[4].contains("`text` is empty"));
        assert!(problems[5].contains("unknown fields"));
        assert!(problems[6].contains("hard_negative"));
        assert!(problems[7].contains("tag `loud`"));
    }

    #[test]
    fn finds_duplicate_ids_and_near_duplicates_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let story = "Prosecutors charged two engineers with passing lithography designs to a foreign intelligence service after a two year investigation";
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &a,
            [
                record("x1", story, "[]"),
                record("same", "Unrelated football report from Sunday.", "[]"),
            ]
            .join("\n"),
        )
        .unwrap();
        let reworded = format!("{} , said officials.", story.to_uppercase());
        std::fs::write(
            &b,
            [
                record("y1", &reworded, "[]"),
                record("same", "Weather: rain all week in the north.", "[]"),
            ]
            .join("\n"),
        )
        .unwrap();
        let files = [
            load_file(&a, &taxonomy()).unwrap(),
            load_file(&b, &taxonomy()).unwrap(),
        ];
        let dups = duplicate_ids(&files);
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].0, "same");
        let near = near_duplicates(&files, 0.5);
        assert_eq!(near.len(), 1, "{near:?}");
        let ids: Vec<&str> = near[0].members.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["x1", "y1"]);
        assert!(near[0].similarity > 0.8);
    }

    #[test]
    fn many_copies_of_one_text_are_one_finding() {
        let dir = tempfile::tempdir().unwrap();
        let story = "Prosecutors charged two engineers with passing lithography designs abroad";
        let path = dir.path().join("copies.jsonl");
        let lines: Vec<String> = (0..2000)
            .map(|i| record(&format!("c{i}"), story, "[]"))
            .chain(std::iter::once(record(
                "other",
                "A football report from Sunday afternoon.",
                "[]",
            )))
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let files = [load_file(&path, &taxonomy()).unwrap()];
        let near = near_duplicates(&files, 0.5);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].members.len(), 2000);
        assert_eq!(near[0].similarity, 1.0);
    }
}
